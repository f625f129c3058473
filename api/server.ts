/**
 * The gRPC server of the api process: `mvirt.net.NetService`, `grpc.health.v1.Health` and
 * server reflection, over the {@link Store} and the dataplane link.
 *
 * Every mutation commits to the store first and publishes its Watch event right after the
 * commit, in the same turn of the event loop, so watchers see changes in commit order. vNIC
 * state comes from the dataplane's reports (kept in memory; CREATED until a report says
 * otherwise).
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
import type { Logger } from "../daemon/log.ts";
import type { NicStateName, NicStatus } from "../daemon/protocol.ts";
import { RemoteError } from "../daemon/ipc.ts";
import { type DataplaneLink, DataplaneUnavailable } from "./dataplane_link.ts";
import { ApiError, Status } from "./errors.ts";
import { cryptoRandom, type RandomBytes } from "./allocate.ts";
import { limitStreamsPerConnection } from "./http2_guard.ts";
import { HEALTH_SERVICE_NAME, loadContract, NET_SERVICE_NAME } from "./proto.ts";
import type {
  HealthCheckResponse_ServingStatus,
  HealthHandlers,
  NetServiceHandlers,
  Network,
  NetworkEvent,
  Nic,
  NicEvent,
  NicState,
} from "./proto_types.ts";
import { desiredNic, isUniqueViolation, type NicRecord, type Store } from "./store.ts";
import {
  parseDnsServers,
  parseNtpServers,
  parseUuid,
  validateNetwork,
  validateNicSpec,
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
  "connected" | "upsertNetwork" | "removeNetwork" | "upsertNic" | "removeNic"
>;

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

  /** Binds `addr`; resolves with the bound port (0 for a Unix socket). */
  async listen(addr: ListenAddress): Promise<number> {
    if (addr.kind === "unix") await removeStaleSocket(addr.path);
    const target = formatListen(addr);
    const port = await new Promise<number>((resolve, reject) =>
      this.#server.bindAsync(
        target,
        grpc.ServerCredentials.createInsecure(),
        (err, p) => err ? reject(err) : resolve(p),
      )
    );
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
    const unimplemented = (name: string) =>
      this.#unary(name, () => {
        throw new ApiError(
          Status.UNIMPLEMENTED,
          `${name}: security groups are not implemented yet by this mvirt-net`,
        );
      });
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
          await link.upsertNic(desiredNic(rec, path));
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
          await link.upsertNic(desiredNic(rec, this.socketPath(rec.id)));
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
          const st = await link.upsertNic(desiredNic(rec, path));
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

      CreateSecurityGroup: unimplemented("CreateSecurityGroup"),
      GetSecurityGroup: unimplemented("GetSecurityGroup"),
      ListSecurityGroups: unimplemented("ListSecurityGroups"),
      DeleteSecurityGroup: unimplemented("DeleteSecurityGroup"),
      AddSecurityGroupRule: unimplemented("AddSecurityGroupRule"),
      RemoveSecurityGroupRule: unimplemented("RemoveSecurityGroupRule"),
      AttachSecurityGroup: unimplemented("AttachSecurityGroup"),
      DetachSecurityGroup: unimplemented("DetachSecurityGroup"),

      WatchNics: (call) => this.#nicWatch.subscribe(call),
      WatchNetworks: (call) => this.#networkWatch.subscribe(call),
    };
  }

  /**
   * Health: the process (service "") serves while it runs; `mvirt.net.NetService` serves only
   * while the dataplane is connected, because without it no vNIC can be created.
   */
  #healthHandlers(): HealthHandlers {
    const status = (service: string): HealthCheckResponse_ServingStatus => {
      if (service === "" || service === HEALTH_SERVICE_NAME) return "SERVING";
      if (service === NET_SERVICE_NAME) {
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
