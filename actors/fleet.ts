/**
 * The dataplane's actor tree and its convergence to the desired state.
 *
 * ```
 * dataplane (top supervisor, this class)
 * ├── net:<id> supervisor ── network actor, vnic actors of that network
 * └── tun actor (issue 5)
 * ```
 *
 * The api pushes the whole desired state on every (re)connect ({@link Fleet.sync}) and single
 * changes in between; the fleet creates what is missing, updates what changed and stops what is
 * no longer wanted. A network supervisor that exceeds its restart intensity escalates here: the
 * whole network subtree is rebuilt from the desired state, and if that happens more often than
 * the top intensity allows, the dataplane process exits so that the root restarts it.
 * @module
 */

import type { Logger } from "../daemon/log.ts";
import type { DesiredNetwork, DesiredNic, NicCounters, NicStatus } from "../daemon/protocol.ts";
import { RemoteError } from "../daemon/ipc.ts";
import type { ActorRef } from "./actor_ref.ts";
import { DEFAULT_INTENSITY, Supervisor } from "./supervisor.ts";
import type { NetworkEvent, NetworkMsg } from "./network.ts";
import type { NicDeviceControl, Peer, Topology, VnicArgs, VnicEvent, VnicMsg } from "./vnic.ts";
import type { RouteEntry } from "../routing/routes.ts";
import { FrameRing } from "../routing/ring.ts";
import { native } from "../ffi/binding.ts";
import type { TunArgs, TunEvent, TunMsg, TunTopology } from "./tun.ts";
import { WorkerPool } from "./worker_pool.ts";
import { reclaimDroppedBuffers } from "./reclaim.ts";

/** What the fleet needs from the process around it. */
export interface FleetOptions {
  log: Logger;
  /** Reports a vNIC state change to the api. */
  onNicStatus: (status: NicStatus) => void;
  /** The top level gave up: the process must exit non-zero. */
  onEscalate: (reason: string) => void;
  /** Native device control shared by every vnic actor (wake, adopt). */
  devices: NicDeviceControl;
  /** Restart intensity of the supervisors (tests shorten it). */
  intensity?: typeof DEFAULT_INTENSITY;
  /** The TUN device of public networks; none when absent (`--no-tun`). */
  tun?: { name: string; reconcileMs: number };
}

/** Packets the TUN actor's inbound ring holds, and their largest size. */
const TUN_RING_SLOTS = 512;
const TUN_RING_SLOT_BYTES = 9216;

interface TunEntry {
  sup: Supervisor;
  ring: SharedArrayBuffer;
  wakeFd: number;
  fd: number | null;
}

interface NetworkEntry {
  desired: DesiredNetwork;
  sup: Supervisor;
  nics: Map<string, NicEntry>;
  /** The routes the network actor published last. */
  routes: RouteEntry[];
  /** A coalesced topology broadcast is due (see {@link topologyDelayMs}). */
  publishTimer: ReturnType<typeof setTimeout> | null;
}

interface NicEntry {
  desired: DesiredNic;
  status: NicStatus;
  /** Native device handle, kept across actor restarts so the new Worker adopts the device. */
  handle: number | null;
  /** Inbound frame ring, kept across actor restarts so that peers keep their copy. */
  ring: SharedArrayBuffer;
}

/**
 * Minimum slots of a vNIC's inbound ring (four bursts of its peers); FrameRing.allocate raises
 * it to at least 1 MiB so that a burst of 64 KiB TSO frames fits.
 */
const RING_SLOTS = 256;
/** Room for an Ethernet header (with a VLAN tag) on top of the network's MTU. */
const RING_FRAME_OVERHEAD = 18;

/** vNIC actors a full sync starts at the same time. */
const SYNC_STARTS = 8;
const NETWORK_ACTOR_ID = "network";
const TUN_ACTOR_ID = "tun";
const TUN_MODULE = new URL("./tun.ts", import.meta.url);
const NETWORK_MODULE = new URL("./network.ts", import.meta.url);
const VNIC_MODULE = new URL("./vnic.ts", import.meta.url);
/**
 * vNIC Workers kept started ahead of need (actors/worker_pool.ts): a CreateNic or a restart
 * then skips the Worker's 50-120 ms start. Each idle one costs about one vNIC's memory (about
 * 12 MiB), so the pool is kept small: two cover a VMM that starts a VM with two NICs, and
 * under a storm of creates the refill rate, not the pool's size, bounds the latency.
 */
const VNIC_POOL_SIZE = 2;

/** Owns every network and vNIC actor of the dataplane. */
export class Fleet {
  #opts: FleetOptions;
  #networks = new Map<string, NetworkEntry>();
  #escalations: number[] = [];
  #down = false;
  #intensity: typeof DEFAULT_INTENSITY;
  #tun: TunEntry | null = null;
  #vnicPool: WorkerPool;
  /** Networks whose topology changed while broadcasts were held (a burst of starts). */
  #held: Set<NetworkEntry> | null = null;
  /** vNICs of the desired state whose start failed, by id: retried until they run. */
  #retries = new Map<string, PendingRetry>();
  // Changes are applied one at a time so that a sync and a single change never interleave.
  #queue: Promise<unknown> = Promise.resolve();

  constructor(opts: FleetOptions) {
    this.#opts = opts;
    this.#intensity = opts.intensity ?? DEFAULT_INTENSITY;
    // Loading the shim pins malloc's mmap threshold (ffi/device.c) before the first inbound
    // ring is allocated, so that rings are resident only where frames wrote them.
    native();
    this.#vnicPool = new WorkerPool({
      module: VNIC_MODULE,
      size: VNIC_POOL_SIZE,
      name: "dataplane/pool:vnic",
      log: opts.log.child("pool:vnic"),
    });
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.#queue.then(fn);
    this.#queue = p.catch(() => {});
    return p;
  }

  /** Converges to exactly `networks` and `nics`. */
  sync(networks: DesiredNetwork[], nics: DesiredNic[]): Promise<NicStatus[]> {
    return this.#serial(async () => {
      const wantNets = new Map(networks.map((n) => [n.id, n]));
      const wantNics = new Map(nics.map((n) => [n.id, n]));
      // This sync starts every wanted vNIC that does not run, including those waiting to retry.
      for (const id of [...this.#retries.keys()]) this.#cancelRetry(id);
      for (const [id, net] of this.#networks) {
        for (const nicId of net.nics.keys()) {
          if (!wantNics.has(nicId) || wantNics.get(nicId)!.networkId !== id) {
            await this.#removeNic(net, nicId);
          }
        }
        if (!wantNets.has(id)) await this.#removeNetwork(id);
      }
      for (const n of networks) await this.#upsertNetwork(n);
      const out: NicStatus[] = new Array(nics.length);
      const failures: string[] = [];
      // Starting a vNIC is mostly its Worker starting up: several at a time use both cores.
      let next = 0;
      const starter = async () => {
        while (next < nics.length) {
          const i = next++;
          try {
            out[i] = await this.#upsertNic(nics[i]);
          } catch (e) {
            // One vNIC that cannot be served must not keep the others from coming back; it
            // stays wanted, so it is tried again until it runs.
            const reason = (e as Error).message;
            failures.push(`${nics[i].id}: ${reason}`);
            out[i] = { id: nics[i].id, state: "ERROR", reason };
            this.#scheduleRetry(nics[i], 1);
          }
        }
      };
      await this.#holdingTopology(() =>
        Promise.all(Array.from({ length: Math.min(SYNC_STARTS, nics.length) }, starter))
      );
      if (failures.length) this.#opts.log.error("vNICs failed to start", { failures });
      return out;
    });
  }

  upsertNetwork(n: DesiredNetwork): Promise<void> {
    return this.#serial(() => this.#upsertNetwork(n));
  }

  removeNetwork(id: string): Promise<void> {
    return this.#serial(async () => {
      for (const [nicId, r] of this.#retries) {
        if (r.nic.networkId === id) this.#cancelRetry(nicId);
      }
      const net = this.#networks.get(id);
      if (!net) return;
      for (const nicId of [...net.nics.keys()]) await this.#removeNic(net, nicId);
      await this.#removeNetwork(id);
    });
  }

  upsertNic(nic: DesiredNic): Promise<NicStatus> {
    return this.#serial(() => {
      this.#cancelRetry(nic.id);
      return this.#upsertNic(nic);
    });
  }

  removeNic(id: string): Promise<void> {
    return this.#serial(async () => {
      this.#cancelRetry(id);
      for (const net of this.#networks.values()) {
        if (net.nics.has(id)) await this.#removeNic(net, id);
      }
    });
  }

  /** The counters of one vNIC. */
  async nicCounters(id: string): Promise<NicCounters> {
    for (const net of this.#networks.values()) {
      if (!net.nics.has(id)) continue;
      const ref = net.sup.ref<VnicMsg>(vnicChildId(id));
      if (!ref) throw new RemoteError("failed", `vNIC ${id} is restarting`);
      return await ref.call<NicCounters>({ type: "GetCounters" });
    }
    throw new RemoteError("not_found", `no vNIC ${id} in the dataplane`);
  }

  /** A running actor by path, for fault-injection tests: `net:<id>`, `vnic:<id>` or `tun`. */
  actor(path: string): ActorRef<{ type: string }> | null {
    const [kind, id] = path.split(":");
    for (const net of this.#networks.values()) {
      if (kind === "net" && net.desired.id === id) return net.sup.ref(NETWORK_ACTOR_ID);
      if (kind === "vnic" && net.nics.has(id)) return net.sup.ref(vnicChildId(id));
    }
    if (kind === "tun") return this.#tun?.sup.ref(TUN_ACTOR_ID) ?? null;
    return null;
  }

  /** Makes one actor (a path of {@link Fleet.actor}) crash outside any handler. */
  async injectFault(path: string, reason: string): Promise<void> {
    const ref = this.actor(path);
    if (!ref) throw new RemoteError("not_found", `no running actor ${path} in the dataplane`);
    const msg: NetworkMsg | VnicMsg | TunMsg = { type: "InjectFault", reason };
    await ref.call(msg);
  }

  /** Stops every actor (vNIC sockets are removed by their actors). */
  async stop(): Promise<void> {
    this.#down = true;
    this.#vnicPool.stop();
    for (const id of [...this.#retries.keys()]) this.#cancelRetry(id);
    await this.#serial(async () => {
      for (const id of [...this.#networks.keys()]) {
        const net = this.#networks.get(id)!;
        if (net.publishTimer !== null) clearTimeout(net.publishTimer);
        net.publishTimer = null;
        await net.sup.stop();
        this.#networks.delete(id);
      }
      const tun = this.#tun;
      this.#tun = null;
      if (tun) {
        await tun.sup.stop();
        // A TUN actor that died mid-stop leaves its fd: the device goes with it.
        if (tun.fd !== null) native().mvn_fd_close(tun.fd);
        native().mvn_fd_close(tun.wakeFd);
      }
    });
  }

  async #upsertNetwork(n: DesiredNetwork): Promise<void> {
    const existing = this.#networks.get(n.id);
    if (existing) {
      existing.desired = n;
      existing.sup.ref<NetworkMsg>(NETWORK_ACTOR_ID)?.cast({ type: "NetworkChanged", network: n });
      for (const nic of existing.nics.values()) {
        existing.sup.ref<VnicMsg>(vnicChildId(nic.desired.id))?.cast({
          type: "NetworkChanged",
          network: n,
        });
      }
      return;
    }
    const entry: NetworkEntry = {
      desired: n,
      sup: this.#networkSupervisor(n),
      nics: new Map(),
      routes: [],
      publishTimer: null,
    };
    this.#networks.set(n.id, entry);
    await entry.sup.startChild({
      id: NETWORK_ACTOR_ID,
      restart: "permanent",
      spawn: () => ({
        name: `dataplane/net:${entry.desired.name}`,
        module: NETWORK_MODULE,
        args: { network: entry.desired, nics: [...entry.nics.values()].map((e) => e.desired) },
        onEvent: (ev) => {
          const e = ev as NetworkEvent;
          if (e.type !== "RoutesChanged") return;
          entry.routes = e.routes;
          this.#publishTopology(entry);
        },
      }),
    });
  }

  /**
   * Starts the TUN actor. A failure (no CAP_NET_ADMIN, say) is reported and the dataplane runs
   * on without it: public networks then reach nothing outside, which the counters show.
   */
  async startTun(): Promise<void> {
    const t = this.#opts.tun;
    if (!t) return;
    const wakeFd = native().mvn_eventfd_new();
    if (wakeFd < 0) throw new Error(`eventfd: errno ${-wakeFd}`);
    const entry: TunEntry = {
      sup: new Supervisor({
        name: "tun",
        log: this.#opts.log.child("tun"),
        ...this.#intensity,
        onEscalate: (reason) => this.#opts.onEscalate(`TUN actor: ${reason}`),
      }),
      ring: FrameRing.allocate(TUN_RING_SLOTS, TUN_RING_SLOT_BYTES),
      wakeFd,
      fd: null,
    };
    try {
      await entry.sup.startChild({
        id: TUN_ACTOR_ID,
        restart: "permanent",
        spawn: () => ({
          name: "dataplane/tun",
          module: TUN_MODULE,
          args: {
            name: t.name,
            ring: entry.ring,
            wakeFd,
            topology: this.#tunTopology(),
            reconcileMs: t.reconcileMs,
            adoptFd: entry.fd,
          } satisfies TunArgs,
          wake: () => native().mvn_eventfd_signal(wakeFd),
          onEvent: (ev) => {
            const e = ev as TunEvent;
            entry.fd = e.type === "TunOpened" ? e.fd : null;
          },
        }),
      });
    } catch (e) {
      native().mvn_fd_close(wakeFd);
      this.#opts.log.error("TUN device unavailable; public networks reach nothing outside", {
        error: e as Error,
      });
      return;
    }
    this.#tun = entry;
    for (const net of this.#networks.values()) this.#publishTopology(net);
  }

  /** The routes, vNICs and prefixes of every public network, for the TUN actor. */
  #tunTopology(): TunTopology {
    const out: TunTopology = { routes: [], peers: [], prefixes: [] };
    for (const net of this.#networks.values()) {
      if (!net.desired.isPublic) continue;
      out.routes.push(...net.routes);
      for (const e of net.nics.values()) {
        out.peers.push({ id: e.desired.id, mac: e.desired.mac, handle: e.handle, ring: e.ring });
      }
      if (net.desired.ipv4Subnet) out.prefixes.push(net.desired.ipv4Subnet);
      if (net.desired.ipv6Prefix) out.prefixes.push(net.desired.ipv6Prefix);
    }
    return out;
  }

  #publishTun(): void {
    this.#tun?.sup.ref<TunMsg>(TUN_ACTOR_ID)?.cast({
      type: "TopologyChanged",
      topology: this.#tunTopology(),
    });
  }

  /** What every vNIC actor of a network routes from: the routes and where each peer is. */
  #topology(net: NetworkEntry): Topology {
    const peers: Peer[] = [...net.nics.values()].map((e) => ({
      id: e.desired.id,
      mac: e.desired.mac,
      ipv6: e.desired.ipv6,
      handle: e.handle,
      ring: e.ring,
    }));
    const tun = net.desired.isPublic && this.#tun
      ? { ring: this.#tun.ring, wakeFd: this.#tun.wakeFd }
      : null;
    return { routes: net.routes, peers, tun };
  }

  /**
   * Schedules a topology broadcast of the network. Every vNIC start changes the topology twice
   * (its device, then its routes) and a broadcast costs one clone per vNIC of a topology that
   * names every vNIC: broadcasting each change made a burst of N starts cost O(N³) and a
   * 256-vNIC restore never finished. Changes within {@link topologyDelayMs} share one
   * broadcast, which also keeps it off the critical path of the CreateNic that caused it.
   */
  #publishTopology(net: NetworkEntry): void {
    if (this.#held) {
      this.#held.add(net);
      return;
    }
    if (net.publishTimer !== null) return;
    net.publishTimer = setTimeout(() => {
      net.publishTimer = null;
      if (this.#networks.get(net.desired.id) === net && !net.sup.down) this.#broadcastTopology(net);
    }, topologyDelayMs(net.nics.size));
  }

  /**
   * Runs a burst of vNIC starts (a sync, a rebuilt network) with topology broadcasts held, then
   * publishes each changed network once: a vNIC started meanwhile gets the topology known at
   * its start in its arguments, and learns the rest with everyone else at the end.
   */
  async #holdingTopology<T>(fn: () => Promise<T>): Promise<T> {
    const held = new Set<NetworkEntry>();
    this.#held = held;
    try {
      return await fn();
    } finally {
      this.#held = null;
      for (const net of held) this.#publishTopology(net);
    }
  }

  /** Sends each vNIC actor of the network its own copy of the topology (shared-nothing). */
  #broadcastTopology(net: NetworkEntry): void {
    const topology = this.#topology(net);
    for (const e of net.nics.values()) {
      net.sup.ref<VnicMsg>(vnicChildId(e.desired.id))?.cast({ type: "TopologyChanged", topology });
    }
    if (net.desired.isPublic) this.#publishTun();
  }

  #networkSupervisor(n: DesiredNetwork): Supervisor {
    const sup: Supervisor = new Supervisor({
      name: `net:${n.name}`,
      log: this.#opts.log.child(`net:${n.name}`),
      ...this.#intensity,
      onEscalate: (reason) => this.#networkEscalated(n.id, sup, reason),
    });
    return sup;
  }

  async #removeNetwork(id: string): Promise<void> {
    const net = this.#networks.get(id);
    if (!net) return;
    this.#networks.delete(id);
    if (net.publishTimer !== null) clearTimeout(net.publishTimer);
    net.publishTimer = null;
    await net.sup.stop();
    reclaimDroppedBuffers();
    if (net.desired.isPublic) this.#publishTun();
  }

  async #upsertNic(nic: DesiredNic): Promise<NicStatus> {
    const net = this.#networks.get(nic.networkId);
    if (!net) {
      throw new RemoteError(
        "invalid",
        `vNIC ${nic.id} names network ${nic.networkId}, which the dataplane does not have`,
      );
    }
    for (const other of this.#networks.values()) {
      if (other !== net && other.nics.has(nic.id)) await this.#removeNic(other, nic.id);
    }
    const existing = net.nics.get(nic.id);
    if (existing) {
      const needsRestart = existing.desired.socketPath !== nic.socketPath ||
        existing.desired.mac !== nic.mac;
      if (!needsRestart) {
        existing.desired = nic;
        net.sup.ref<VnicMsg>(vnicChildId(nic.id))?.cast({ type: "NicChanged", nic });
        net.sup.ref<NetworkMsg>(NETWORK_ACTOR_ID)?.cast({ type: "NicJoined", nic });
        return existing.status;
      }
      await this.#removeNic(net, nic.id);
    }
    const entry: NicEntry = {
      desired: nic,
      status: { id: nic.id, state: "CREATED" },
      handle: null,
      ring: FrameRing.allocate(RING_SLOTS, net.desired.mtu + RING_FRAME_OVERHEAD),
    };
    net.nics.set(nic.id, entry);
    try {
      await net.sup.startChild({
        id: vnicChildId(nic.id),
        restart: "permanent",
        spawn: () => ({
          name: `dataplane/net:${net.desired.name}/vnic:${entry.desired.name || entry.desired.id}`,
          module: VNIC_MODULE,
          pool: this.#vnicPool,
          args: {
            nic: entry.desired,
            network: net.desired,
            adoptHandle: entry.handle,
            topology: this.#topology(net),
            ring: entry.ring,
          } satisfies VnicArgs,
          wake: () => {
            if (entry.handle !== null) this.#opts.devices.wake(entry.handle);
          },
          onEvent: (ev) => this.#onVnicEvent(net, entry, ev as VnicEvent),
        }),
      });
    } catch (e) {
      net.nics.delete(nic.id);
      // A Worker that opened the device and then failed (or ran out of time) was terminated;
      // its device would keep the socket listening with nobody serving it.
      if (entry.handle !== null) {
        this.#opts.devices.close(entry.handle);
        entry.handle = null;
        this.#publishTopology(net);
      }
      throw new RemoteError("failed", `vNIC ${nic.id}: ${(e as Error).message}`);
    }
    net.sup.ref<NetworkMsg>(NETWORK_ACTOR_ID)?.cast({ type: "NicJoined", nic });
    return entry.status;
  }

  #onVnicEvent(net: NetworkEntry, entry: NicEntry, ev: VnicEvent): void {
    switch (ev.type) {
      case "DeviceOpened":
        if (entry.handle === ev.handle) return;
        entry.handle = ev.handle;
        this.#publishTopology(net);
        return;
      case "DeviceClosed":
        entry.handle = null;
        this.#publishTopology(net);
        return;
      case "StateChanged": {
        const s = ev.status;
        if (s.state === entry.status.state && s.reason === entry.status.reason) return;
        entry.status = s;
        this.#opts.onNicStatus(s);
        return;
      }
    }
  }

  async #removeNic(net: NetworkEntry, id: string): Promise<void> {
    const entry = net.nics.get(id);
    if (!entry) return;
    net.nics.delete(id);
    await net.sup.stopChild(vnicChildId(id));
    // A device whose actor died mid-stop is closed here, so its socket never outlives the row.
    if (entry.handle !== null) this.#opts.devices.close(entry.handle);
    entry.handle = null;
    net.sup.ref<NetworkMsg>(NETWORK_ACTOR_ID)?.cast({ type: "NicLeft", id });
    reclaimDroppedBuffers();
  }

  /**
   * Tries a wanted vNIC again after its start failed (a Worker that did not start in time under
   * load, a socket path in use): the desired state says it must run, and nothing else would
   * start it before the api reconnects. Each attempt waits longer, up to {@link RETRY_MAX_MS}.
   * A sync, an upsert or a removal of the vNIC (or of its network) replaces the retry.
   */
  #scheduleRetry(nic: DesiredNic, attempt: number): void {
    if (this.#down) return;
    this.#cancelRetry(nic.id);
    const delay = Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** (attempt - 1));
    const retry: PendingRetry = {
      nic,
      attempt,
      timer: setTimeout(() => {
        void this.#serial(async () => {
          if (this.#retries.get(nic.id) !== retry || this.#down) return;
          this.#retries.delete(nic.id);
          // Its network was removed meanwhile (which cancels its retries): nothing to start.
          if (!this.#networks.has(nic.networkId)) return;
          try {
            const status = await this.#upsertNic(nic);
            this.#opts.log.info("vNIC started on retry", { nic: nic.id, attempt });
            this.#opts.onNicStatus(status);
          } catch (e) {
            this.#opts.onNicStatus({ id: nic.id, state: "ERROR", reason: (e as Error).message });
            this.#scheduleRetry(nic, attempt + 1);
          }
        });
      }, delay),
    };
    this.#retries.set(nic.id, retry);
    this.#opts.log.warn("vNIC failed to start; retrying", { nic: nic.id, attempt, delayMs: delay });
  }

  #cancelRetry(id: string): void {
    const r = this.#retries.get(id);
    if (!r) return;
    clearTimeout(r.timer);
    this.#retries.delete(id);
  }

  #networkEscalated(id: string, sup: Supervisor, reason: string): void {
    if (this.#down) return;
    const now = performance.now();
    this.#escalations = this.#escalations.filter((t) => now - t < this.#intensity.periodMs);
    this.#escalations.push(now);
    if (this.#escalations.length > this.#intensity.intensity) {
      this.#down = true;
      this.#opts.onEscalate(
        `network subtrees escalated ${this.#escalations.length} times: ${reason}`,
      );
      return;
    }
    const net = this.#networks.get(id);
    if (!net || net.sup !== sup) return;
    this.#opts.log.warn("network subtree escalated, rebuilding it", { network: id, reason });
    void this.#serial(async () => {
      const current = this.#networks.get(id);
      if (!current || current.sup !== sup) return;
      this.#networks.delete(id);
      if (current.publishTimer !== null) clearTimeout(current.publishTimer);
      current.publishTimer = null;
      const nics = [...current.nics.values()];
      for (const e of nics) if (e.handle !== null) this.#opts.devices.close(e.handle);
      await this.#upsertNetwork(current.desired);
      await this.#holdingTopology(async () => {
        for (const e of nics) {
          try {
            await this.#upsertNic(e.desired);
          } catch (err) {
            this.#opts.onNicStatus({
              id: e.desired.id,
              state: "ERROR",
              reason: (err as Error).message,
            });
            this.#scheduleRetry(e.desired, 1);
          }
        }
      });
    });
  }
}

/** Topology changes of a network that share one broadcast: see `Fleet.#publishTopology`. */
const TOPOLOGY_DELAY_MIN_MS = 10;
const TOPOLOGY_DELAY_PER_NIC_MS = 1;
const TOPOLOGY_DELAY_MAX_MS = 250;

/**
 * How long topology changes of a network of `nics` vNICs are gathered before one broadcast.
 * A broadcast's cost grows with the square of the network's size; the delay grows with it so
 * that broadcasts take a bounded share of the CPU during a burst of starts.
 */
function topologyDelayMs(nics: number): number {
  return Math.min(
    TOPOLOGY_DELAY_MAX_MS,
    Math.max(TOPOLOGY_DELAY_MIN_MS, nics * TOPOLOGY_DELAY_PER_NIC_MS),
  );
}

/** A wanted vNIC whose start failed, and when it is tried again. */
interface PendingRetry {
  nic: DesiredNic;
  attempt: number;
  timer: ReturnType<typeof setTimeout>;
}

/** Delay before the first retry of a vNIC that failed to start; doubles up to the maximum. */
const RETRY_FIRST_MS = 1_000;
const RETRY_MAX_MS = 30_000;

function vnicChildId(nicId: string): string {
  return `vnic:${nicId}`;
}
