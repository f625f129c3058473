/**
 * The gRPC server of the api process: `mvirt.net.NetService`, `mvirt.net.diag.Diagnostics`
 * (counters), `grpc.health.v1.Health` and server reflection, over the {@link Store} and the
 * dataplane link.
 *
 * Every mutation commits to the store first and publishes its Watch event right after the
 * commit, in the same turn of the event loop, so watchers see changes in commit order. vNIC
 * state comes from the dataplane's reports (kept in memory; CREATED until a report says
 * otherwise).
 *
 * Security groups: every change of what a vNIC allows (a rule added or removed, a group
 * attached, detached or deleted) is pushed to the dataplane as an UpsertNic of each affected
 * vNIC, carrying the union of its rules, before the call answers; each push is computed from
 * the store right when it is sent, so pushes of concurrent calls can never apply an older rule
 * set after a newer one.
 *
 * @example
 * ```ts
 * const api = new ApiServer({ store, link, log, socketDir: "/run/mvirt-net", mtu: 1500 });
 * const target = await api.listen({ kind: "tcp", host: "::1", port: 50054 });
 * ```
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { ReflectionService } from "@grpc/reflection";
import { formatListen, type ListenAddress } from "../daemon/config.ts";
import { childSocketGroup, ensureSafeUmask, shareSocket } from "../daemon/socket_access.ts";
import type { Logger } from "../daemon/log.ts";
import type { NicStateName, NicStatus } from "../daemon/protocol.ts";
import { RemoteError } from "../daemon/ipc.ts";
import { type DataplaneLink, DataplaneUnavailable } from "./dataplane_link.ts";
import { ApiError, Status } from "./errors.ts";
import { cryptoRandom, type RandomBytes } from "./allocate.ts";
import { limitStreamsPerConnection } from "./http2_guard.ts";
import { DIAG_SERVICE_NAME, HEALTH_SERVICE_NAME, loadContract, NET_SERVICE_NAME } from "./proto.ts";
import type {
  DiagnosticsHandlers,
  HealthCheckResponse_ServingStatus,
  HealthHandlers,
  NetServiceHandlers,
  Network,
  NetworkEvent,
  Nic,
  NicEvent,
  NicState,
} from "./proto_types.ts";
import { isUniqueViolation, type NicRecord, type Store } from "./store.ts";
import {
  parseDescription,
  parseDnsServers,
  parseName,
  parseNtpServers,
  parseUuid,
  validateNetwork,
  validateNicSpec,
  validateRule,
} from "./validate.ts";
import { WatchHub } from "./watch.ts";
import denoJson from "../deno.json" with { type: "json" };

/** The version GetVersion reports. */
export const VERSION: string = denoJson.version;

/** Where a vNIC's vhost-user socket lives: fixed by its id, so it survives every restart. */
export function nicSocketPath(socketDir: string, nicId: string): string {
  return `${socketDir}/${nicId}.sock`;
}

/** What the server needs of the dataplane link (the real {@link DataplaneLink} in production). */
export type NicLink = Pick<
  DataplaneLink,
  "connected" | "upsertNetwork" | "removeNetwork" | "upsertNic" | "removeNic" | "nicCounters"
>;

/**
 * Prefix of the dataplane counter of one rule: `sg_rule_hit_<rule id>` counts the packets
 * that rule allowed on the vNIC.
 */
export const RULE_HIT_COUNTER_PREFIX = "sg_rule_hit_";

/** Options of {@link ApiServer}. */
export interface ApiServerOptions {
  store: Store;
  link: NicLink;
  log: Logger;
  /** Directory of the vNIC sockets: a vNIC's socket is `<socketDir>/<id>.sock`. */
  socketDir: string;
  /** MTU handed to the dataplane with every network. */
  mtu: number;
  /** Randomness for MACs and IPv6 addresses (tests inject their own). */
  random?: RandomBytes;
  /** Events a watcher may lag behind before it is disconnected. */
  watchQueueLimit?: number;
}

const STATE_NAMES: Record<NicStateName, NicState> = {
  CREATED: "NIC_STATE_CREATED",
  ACTIVE: "NIC_STATE_ACTIVE",
  ERROR: "NIC_STATE_ERROR",
};

/** How often a health Watch re-reads the dataplane link's state. */
const HEALTH_POLL_MS = 500;

/** Time `close()` lets calls in flight finish before it cuts them. */
const SHUTDOWN_GRACE_MS = 2000;

type Handler<Req, Res> = (req: Req, actor: string) => Res | Promise<Res>;

/** The api's gRPC server. */
export class ApiServer {
  #opts: ApiServerOptions;
  #server: grpc.Server;
  #states = new Map<string, NicStatus>();
  #nicWatch: WatchHub<NicEvent>;
  #networkWatch: WatchHub<NetworkEvent>;
  #random: RandomBytes;
  #log: Logger;
  #healthWatches = new Set<() => void>();

  constructor(opts: ApiServerOptions) {
    this.#opts = opts;
    this.#log = opts.log;
    this.#random = opts.random ?? cryptoRandom;
    this.#nicWatch = new WatchHub(opts.watchQueueLimit);
    this.#networkWatch = new WatchHub(opts.watchQueueLimit);
    const contract = loadContract();
    this.#server = new grpc.Server();
    this.#server.addService(contract.NetService.service, this.#netHandlers());
    this.#server.addService(contract.Diagnostics.service, this.#diagHandlers());
    this.#server.addService(contract.Health.service, this.#healthHandlers());
    new ReflectionService(contract.packageDefinition).addToServer(this.#server);
  }

  /** Number of connected Watch streams (nics, networks). */
  get watchers(): { nics: number; networks: number } {
    return { nics: this.#nicWatch.size, networks: this.#networkWatch.size };
  }

  /** Path of a vNIC's vhost-user socket. */
  socketPath(nicId: string): string {
    return nicSocketPath(this.#opts.socketDir, nicId);
  }

  /** Takes a state report from the dataplane; a change is a Watch update of that vNIC. */
  onNicStatus(status: NicStatus): void {
    // Until a report arrives a vNIC reads as CREATED; only a visible change is an event.
    const before = this.#states.get(status.id)?.state ?? "CREATED";
    this.#states.set(status.id, status);
    if (before === status.state) return;
    let rec: NicRecord;
    try {
      rec = this.#opts.store.getNic(status.id);
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      return; // Pending or gone: its create or delete event tells watchers.
    }
    this.#nicWatch.publish({ nic_id: rec.id, timestamp: Date.now(), nic: this.#toNic(rec) });
  }

  /** Binds `addr`; resolves with the bound port (0 for a Unix socket). A Unix socket gets
   * mode 0660 and `socketGroup` (default: the daemon's `--socket-group`). */
  async listen(
    addr: ListenAddress,
    socketGroup: number | null = childSocketGroup(),
  ): Promise<number> {
    if (addr.kind === "unix") {
      ensureSafeUmask();
      await removeStaleSocket(addr.path);
    }
    const target = formatListen(addr);
    const port = await new Promise<number>((resolve, reject) =>
      this.#server.bindAsync(
        target,
        grpc.ServerCredentials.createInsecure(),
        (err, p) => err ? reject(err) : resolve(p),
      )
    );
    // Born connectable by the daemon user only (umask); now open it to the clients' group.
    if (addr.kind === "unix") shareSocket(addr.path, socketGroup);
    limitStreamsPerConnection(this.#server);
    return port;
  }

  /** Ends Watch streams, lets calls in flight finish (bounded), and stops listening. */
  async close(): Promise<void> {
    this.#nicWatch.closeAll();
    this.#networkWatch.closeAll();
    for (const end of [...this.#healthWatches]) end();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.#server.forceShutdown();
        resolve();
      }, SHUTDOWN_GRACE_MS);
      this.#server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  #toNic(rec: NicRecord): Nic {
    const state = this.#states.get(rec.id)?.state ?? "CREATED";
    return { ...rec, socket_path: this.socketPath(rec.id), state: STATE_NAMES[state] };
  }

  #publishNetwork(id: string): void {
    let network: Network | undefined;
    try {
      network = this.#opts.store.getNetwork(id);
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      network = undefined; // Deleted: the event carries no payload.
    }
    this.#networkWatch.publish({
      network_id: id,
      timestamp: Date.now(),
      ...(network ? { network } : {}),
    });
  }

  #publishNic(id: string, rec: NicRecord | null): void {
    this.#nicWatch.publish({
      nic_id: id,
      timestamp: Date.now(),
      ...(rec ? { nic: this.#toNic(rec) } : {}),
    });
  }

  /**
   * Sends each vNIC's current desired state (rules included) to the dataplane and waits for
   * the answers. Failures are logged: the store is the truth and the next sync repairs them.
   */
  async #pushNics(ids: string[], why: string): Promise<void> {
    const { store, link } = this.#opts;
    // Read and send in one synchronous stretch per vNIC, so the frames leave in commit order.
    const pushes = ids.flatMap((id) => {
      let rec: NicRecord;
      try {
        rec = store.getNic(id);
      } catch (e) {
        if (!(e instanceof ApiError)) throw e;
        return []; // Deleted meanwhile: its RemoveNic covers it.
      }
      return [
        link.upsertNic(store.desiredNic(rec, this.socketPath(id))).catch((e) =>
          this.#log.warn(`${why} not pushed to the dataplane; the next sync applies it`, {
            id,
            error: e as Error,
          })
        ),
      ];
    });
    await Promise.all(pushes);
  }

  /** Wraps a handler: peer as audit actor, errors mapped to gRPC statuses. */
  #unary<Req, Res>(name: string, fn: Handler<Req, Res>): grpc.handleUnaryCall<Req, Res> {
    return (call, callback) => {
      const actor = call.getPeer();
      Promise.resolve()
        .then(() => fn(call.request, actor))
        .then(
          (res) => callback(null, res),
          (e) => callback(this.#toStatus(name, e)),
        );
    };
  }

  #toStatus(method: string, e: unknown): Partial<grpc.StatusObject> {
    if (e instanceof ApiError) return { code: e.code, details: e.message };
    if (e instanceof DataplaneUnavailable) {
      return { code: Status.UNAVAILABLE, details: `dataplane unavailable: ${e.message}; retry` };
    }
    if (e instanceof RemoteError) {
      const code = e.code === "invalid"
        ? Status.INVALID_ARGUMENT
        : e.code === "not_found"
        ? Status.NOT_FOUND
        : Status.UNAVAILABLE;
      return { code, details: `dataplane: ${e.message}` };
    }
    if (isUniqueViolation(e)) {
      return { code: Status.ALREADY_EXISTS, details: (e as Error).message };
    }
    this.#log.error("bug in request handler", { method, error: e as Error });
    return { code: Status.INTERNAL, details: `internal error: ${(e as Error).message}` };
  }

  #netHandlers(): NetServiceHandlers {
    const { store, link, mtu } = this.#opts;
    const pushNetwork = async (net: Network) => {
      try {
        await link.upsertNetwork(store.desiredNetwork(net, mtu));
      } catch (e) {
        // The store is the truth; the next sync on reconnect hands it to the dataplane.
        this.#log.warn("network not pushed to the dataplane", { id: net.id, error: e as Error });
      }
    };
    return {
      GetVersion: this.#unary("GetVersion", () => ({ version: VERSION })),

      CreateNetwork: this.#unary("CreateNetwork", async (req, actor) => {
        const net = store.createNetwork(validateNetwork(req), actor);
        this.#publishNetwork(net.id);
        await pushNetwork(net);
        return net;
      }),

      GetNetwork: this.#unary("GetNetwork", (req) => {
        if (req.identifier === "id") return store.getNetwork(req.id ?? "");
        if (req.identifier === "name") return store.getNetworkByName(req.name ?? "");
        throw new ApiError(Status.INVALID_ARGUMENT, "identifier: set id or name");
      }),

      ListNetworks: this.#unary("ListNetworks", () => ({ networks: store.listNetworks() })),

      UpdateNetwork: this.#unary("UpdateNetwork", async (req, actor) => {
        const dns = parseDnsServers("dns_servers", req.dns_servers);
        const ntp = parseNtpServers("ntp_servers", req.ntp_servers);
        const net = store.updateNetwork(parseUuid("id", req.id), dns, ntp, actor);
        this.#publishNetwork(net.id);
        await pushNetwork(net);
        return net;
      }),

      DeleteNetwork: this.#unary("DeleteNetwork", async (req, actor) => {
        const { network, nicIds } = store.deleteNetwork(parseUuid("id", req.id), req.force, actor);
        for (const id of nicIds) {
          this.#states.delete(id);
          this.#publishNic(id, null);
        }
        this.#publishNetwork(network.id);
        try {
          for (const id of nicIds) await link.removeNic(id);
          await link.removeNetwork(network.id);
        } catch (e) {
          this.#log.warn("dataplane not told of a network deletion; the next sync removes it", {
            id: network.id,
            error: e as Error,
          });
        }
        return { deleted: true, nics_deleted: nicIds.length };
      }),

      CreateNic: this.#unary("CreateNic", async (req, actor) => {
        const rec = store.createNic(validateNicSpec(req), actor, this.#random);
        const path = this.socketPath(rec.id);
        let confirmed: NicRecord;
        try {
          await link.upsertNic(store.desiredNic(rec, path));
          confirmed = store.confirmNic(rec.id);
        } catch (e) {
          store.abandonNic(rec.id, actor, (e as Error).message);
          this.#states.delete(rec.id);
          link.removeNic(rec.id).catch(() => {
            // Unreachable dataplane: the next sync on reconnect removes the socket.
          });
          if (e instanceof ApiError && e.code === Status.NOT_FOUND) {
            throw new ApiError(
              Status.ABORTED,
              `network_id: network ${JSON.stringify(req.network_id)} was deleted while the ` +
                "vNIC was being created",
            );
          }
          throw e;
        }
        this.#publishNic(confirmed.id, confirmed);
        this.#publishNetwork(confirmed.network_id);
        return this.#toNic(confirmed);
      }),

      GetNic: this.#unary("GetNic", (req) => {
        if (req.identifier === "id") return this.#toNic(store.getNic(req.id ?? ""));
        if (req.identifier === "name") return this.#toNic(store.getNicByName(req.name ?? ""));
        throw new ApiError(Status.INVALID_ARGUMENT, "identifier: set id or name");
      }),

      ListNics: this.#unary("ListNics", (req) => ({
        nics: store.listNics(req.network_id).map((r) => this.#toNic(r)),
      })),

      UpdateNic: this.#unary("UpdateNic", async (req, actor) => {
        const rec = store.updateNic(
          parseUuid("id", req.id),
          req.routed_ipv4_prefixes,
          req.routed_ipv6_prefixes,
          actor,
        );
        this.#publishNic(rec.id, rec);
        try {
          await link.upsertNic(store.desiredNic(rec, this.socketPath(rec.id)));
        } catch (e) {
          this.#log.warn("routes not pushed to the dataplane; the next sync applies them", {
            id: rec.id,
            error: e as Error,
          });
        }
        return this.#toNic(rec);
      }),

      DeleteNic: this.#unary("DeleteNic", async (req, actor) => {
        const rec = store.deleteNic(parseUuid("id", req.id), actor);
        this.#states.delete(rec.id);
        this.#publishNic(rec.id, null);
        this.#publishNetwork(rec.network_id);
        try {
          await link.removeNic(rec.id);
        } catch (e) {
          this.#log.warn("dataplane not told of a vNIC deletion; the next sync removes it", {
            id: rec.id,
            error: e as Error,
          });
        }
        return { deleted: true };
      }),

      AttachNic: this.#unary("AttachNic", async (req) => {
        const rec = store.getNic(parseUuid("id", req.id));
        const path = this.socketPath(rec.id);
        try {
          const st = await link.upsertNic(store.desiredNic(rec, path));
          const what = st.state === "ACTIVE"
            ? "a VMM is connected and the guest driver is up"
            : st.state === "CREATED"
            ? "no VMM connected yet"
            : `error: ${st.reason ?? "unknown"}`;
          return {
            attached: st.state !== "ERROR",
            message: `socket ${path} is listening; ${what}`,
          };
        } catch (e) {
          if (!(e instanceof DataplaneUnavailable)) throw e;
          return { attached: false, message: `dataplane unavailable (${e.message}); retry` };
        }
      }),

      CreateSecurityGroup: this.#unary(
        "CreateSecurityGroup",
        (req, actor) =>
          store.createSecurityGroup(
            parseName("name", req.name),
            parseDescription("description", req.description),
            actor,
          ),
      ),

      GetSecurityGroup: this.#unary("GetSecurityGroup", (req) => {
        if (req.identifier === "id") return store.getSecurityGroup(req.id ?? "");
        if (req.identifier === "name") return store.getSecurityGroupByName(req.name ?? "");
        throw new ApiError(Status.INVALID_ARGUMENT, "identifier: set id or name");
      }),

      ListSecurityGroups: this.#unary("ListSecurityGroups", () => ({
        security_groups: store.listSecurityGroups(),
      })),

      DeleteSecurityGroup: this.#unary("DeleteSecurityGroup", async (req, actor) => {
        const { nicIds } = store.deleteSecurityGroup(req.id, req.force, actor);
        await this.#pushNics(nicIds, "security group deletion");
        return { deleted: true, nics_detached: nicIds.length };
      }),

      AddSecurityGroupRule: this.#unary("AddSecurityGroupRule", async (req, actor) => {
        const { rule, nicIds } = store.addSecurityGroupRule(validateRule(req), actor);
        await this.#pushNics(nicIds, "new rule");
        return rule;
      }),

      RemoveSecurityGroupRule: this.#unary("RemoveSecurityGroupRule", async (req, actor) => {
        const { nicIds } = store.removeSecurityGroupRule(req.rule_id, actor);
        await this.#pushNics(nicIds, "rule removal");
        return { deleted: true };
      }),

      AttachSecurityGroup: this.#unary("AttachSecurityGroup", async (req, actor) => {
        const r = store.attachSecurityGroup(req.nic_id, req.security_group_id, actor);
        if (r.attached) await this.#pushNics([r.nic.id], "security group attachment");
        return { attached: r.attached };
      }),

      DetachSecurityGroup: this.#unary("DetachSecurityGroup", async (req, actor) => {
        const r = store.detachSecurityGroup(req.nic_id, req.security_group_id, actor);
        if (r.detached) await this.#pushNics([r.nic.id], "security group detachment");
        return { detached: r.detached };
      }),

      WatchNics: (call) => this.#nicWatch.subscribe(call),
      WatchNetworks: (call) => this.#networkWatch.subscribe(call),
    };
  }

  /** Diagnostics: counters read from the dataplane on each call (nothing is cached). */
  #diagHandlers(): DiagnosticsHandlers {
    const { store, link } = this.#opts;
    return {
      GetNicCounters: this.#unary("GetNicCounters", async (req) => {
        const nic = store.resolveNic(req.nic, "nic");
        const counters = await link.nicCounters(nic.id);
        return {
          nic_id: nic.id,
          counters: Object.keys(counters).sort().map((name) => ({
            name,
            value: counters[name],
          })),
        };
      }),

      GetSecurityGroupHits: this.#unary("GetSecurityGroupHits", async (req) => {
        const group = store.resolveSecurityGroup(req.security_group, "security_group");
        const nicIds = store.securityGroupNicIds(group.id);
        const hits = new Map(group.rules.map((r) => [r.id, 0]));
        const missing: string[] = [];
        await Promise.all(nicIds.map(async (id) => {
          let counters: Record<string, number>;
          try {
            counters = await link.nicCounters(id);
          } catch (e) {
            // A vNIC being created or restarting has no counters yet; the others still count.
            if (!(e instanceof RemoteError)) throw e;
            missing.push(id);
            return;
          }
          for (const [ruleId, n] of hits) {
            hits.set(ruleId, n + (counters[`${RULE_HIT_COUNTER_PREFIX}${ruleId}`] ?? 0));
          }
        }));
        return {
          security_group_id: group.id,
          rules: [...hits].map(([rule_id, n]) => ({ rule_id, hits: n })),
          nics_counted: nicIds.length - missing.length,
          nics_missing: missing.sort(),
        };
      }),
    };
  }

  /**
   * Health: the process (service "") serves while it runs; `mvirt.net.NetService` and
   * `mvirt.net.diag.Diagnostics` serve only while the dataplane is connected, because without
   * it no vNIC can be created and no counter read.
   */
  #healthHandlers(): HealthHandlers {
    const status = (service: string): HealthCheckResponse_ServingStatus => {
      if (service === "" || service === HEALTH_SERVICE_NAME) return "SERVING";
      if (service === NET_SERVICE_NAME || service === DIAG_SERVICE_NAME) {
        return this.#opts.link.connected ? "SERVING" : "NOT_SERVING";
      }
      return "SERVICE_UNKNOWN";
    };
    return {
      Check: (call, callback) => {
        const s = status(call.request.service);
        if (s === "SERVICE_UNKNOWN") {
          callback({ code: Status.NOT_FOUND, details: `service ${call.request.service} unknown` });
        } else {
          callback(null, { status: s });
        }
      },
      Watch: (call) => {
        // The link has no change events; polling it is cheap and bounds the delay.
        let last: HealthCheckResponse_ServingStatus | null = null;
        const send = () => {
          const s = status(call.request.service);
          if (s !== last) call.write({ status: s });
          last = s;
        };
        send();
        const timer = setInterval(send, HEALTH_POLL_MS);
        const end = () => {
          clearInterval(timer);
          this.#healthWatches.delete(end);
          if (!call.writableEnded) call.end();
        };
        call.on("cancelled", end);
        call.on("close", end);
        this.#healthWatches.add(end);
      },
    };
  }
}

/** Removes a Unix socket file nobody listens on (left by a crash), refuses a live one. */
async function removeStaleSocket(path: string): Promise<void> {
  try {
    const conn = await Deno.connect({ transport: "unix", path });
    conn.close();
    throw new Error(`another process is serving ${path}; stop it first`);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return;
    if (e instanceof Deno.errors.ConnectionRefused) {
      await Deno.remove(path);
      return;
    }
    throw e;
  }
}
