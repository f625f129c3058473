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
import type {
  NicDeviceControl,
  Peer,
  Topology,
  TopologyDelta,
  VnicArgs,
  VnicEvent,
  VnicMsg,
} from "./vnic.ts";
import type { RouteEntry } from "../routing/routes.ts";
import { FrameRing } from "../routing/ring.ts";
import { native } from "../ffi/binding.ts";
import type { TunArgs, TunEvent, TunMsg, TunTopology } from "./tun.ts";
import { WorkerPool, type WorkerPoolStats } from "./worker_pool.ts";
import { reclaimDroppedBuffers } from "./reclaim.ts";

/** What the fleet needs from the process around it. */
export interface FleetOptions {
  log: Logger;
  /** Reports a vNIC state change to the api. */
  onNicStatus: (status: NicStatus) => void;
  /** The top level gave up: the process must exit non-zero. */
  onEscalate: (reason: string) => void;
  /** Native device control of the vNICs: the fleet makes each device before its actor starts. */
  devices: NicDeviceControl;
  /** The vNIC actor's module; tests replace it (default `actors/vnic.ts`). */
  vnicModule?: URL;
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
  /** The routes the network actor published last: prefix → vNIC id. */
  routes: Map<string, string>;
  /** A coalesced topology broadcast is due (see {@link topologyDelayMs}). */
  publishTimer: ReturnType<typeof setTimeout> | null;
  /** Topology broadcasts sent so far. */
  epoch: number;
  /** What changed since the last broadcast: the next one sends only that. */
  pending: PendingChanges;
}

/** Changes of a network's topology since its last broadcast, by key (see {@link TopologyDelta}). */
interface PendingChanges {
  /** vNICs that left or were replaced by a new vNIC of the same id (new ring). */
  gone: Set<string>;
  /** vNICs that joined or changed (device handle, IPv6 address). */
  peers: Set<string>;
  /** Prefixes whose route was added, moved or removed. */
  prefixes: Set<string>;
  /** The TUN actor's ring appeared. */
  tun: boolean;
}

function noChanges(): PendingChanges {
  return { gone: new Set(), peers: new Set(), prefixes: new Set(), tun: false };
}

interface NicEntry {
  desired: DesiredNic;
  status: NicStatus;
  /**
   * Native device handle: made by the fleet before the actor's first start, kept across actor
   * restarts so that each new Worker adopts the device; null once closed.
   */
  handle: number | null;
  /** Inbound frame ring, kept across actor restarts so that peers keep their copy. */
  ring: SharedArrayBuffer;
  /** The actor's first start (see `Fleet.#startNic`); resolves, never rejects, when it ended. */
  starting: Promise<void>;
  /** The vNIC was removed: a start that has not begun is skipped. */
  removed: boolean;
  /** What the actor's current incarnation was started with, to catch it up after its start. */
  spawned: { nic: DesiredNic; network: DesiredNetwork } | null;
  /**
   * The topology broadcast (`NetworkEntry.epoch`) the running actor is up to date with: it gets
   * the next broadcast as a delta if it has this one, else the whole topology. Null: it has no
   * topology to build on (started during a burst, see `Fleet.#holdingTopology`).
   */
  seen: number | null;
}

/**
 * Minimum slots of a vNIC's inbound ring (four bursts of its peers); FrameRing.allocate raises
 * it to at least 1 MiB so that bursts of 64 KiB TSO frames fit (DEFAULT_MIN_RING_BYTES).
 */
const RING_SLOTS = 256;
/** Room for an Ethernet header (with a VLAN tag) on top of the network's MTU. */
const RING_FRAME_OVERHEAD = 18;

/**
 * vNIC actors a sync (a restore) starts at the same time: starting one is mostly its Worker
 * starting up, so several at a time use both cores; more would only share them.
 */
const SYNC_STARTS = 8;
/**
 * vNIC actors started at the same time after a CreateNic answered (its socket accepts). One:
 * a burst of creates then leaves the api and this thread a core, so that each create answers
 * at once instead of sharing the CPU with a backlog of Worker starts; the actors come up one
 * after another behind them.
 */
const CREATE_STARTS = 1;
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
  #vnicModule: URL;
  #vnicPool: WorkerPool;
  #syncStarts = new Slots(SYNC_STARTS);
  #createStarts = new Slots(CREATE_STARTS);
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
    this.#vnicModule = opts.vnicModule ?? VNIC_MODULE;
    opts.log.info("vNIC actor module", { module: this.#vnicModule.href });
    this.#vnicPool = new WorkerPool({
      module: this.#vnicModule,
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
      const failed = (i: number, e: unknown) => {
        // One vNIC that cannot be served must not keep the others from coming back; it stays
        // wanted, so it is tried again until it runs.
        const reason = (e as Error).message;
        failures.push(`${nics[i].id}: ${reason}`);
        out[i] = { id: nics[i].id, state: "ERROR", reason };
        this.#scheduleRetry(nics[i], 1);
      };
      await this.#holdingTopology(async () => {
        // Every device first (about 1 ms each): all sockets accept, and VMMs reconnect and wait
        // there, while the Workers start SYNC_STARTS at a time.
        const starts: Promise<void>[] = [];
        for (let i = 0; i < nics.length; i++) {
          let opened;
          try {
            opened = await this.#openNic(nics[i]);
          } catch (e) {
            failed(i, e);
            continue;
          }
          if (!("entry" in opened)) {
            out[i] = opened.status;
            continue;
          }
          const { net, entry } = opened;
          starts.push(
            this.#startNic(net, entry, this.#syncStarts).then(() => {
              out[i] = entry.status;
            }, (e) => failed(i, e)),
          );
        }
        await Promise.all(starts);
      });
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

  /**
   * Creates or updates a vNIC. A new vNIC's device is made (its socket accepts) before this
   * returns; its actor starts afterwards, and serves a VMM that connected meanwhile once it
   * runs. A start that fails then closes the device, reports the vNIC ERROR and is retried.
   */
  upsertNic(nic: DesiredNic): Promise<NicStatus> {
    return this.#serial(async () => {
      this.#cancelRetry(nic.id);
      const opened = await this.#openNic(nic);
      if (!("entry" in opened)) return opened.status;
      const { net, entry } = opened;
      // The actor starts once this answer has left: taking a Worker from the pool starts
      // another one, and `new Worker` blocks this thread while V8 makes the isolate (14-24 ms
      // here), which the caller need not wait for (the socket accepts already).
      const start = afterReply().then(() => this.#startNic(net, entry, this.#createStarts));
      entry.starting = start.catch(() => {});
      start.catch((e) => {
        if (entry.removed || this.#down) return;
        const reason = (e as Error).message;
        this.#opts.onNicStatus({ id: nic.id, state: "ERROR", reason });
        this.#scheduleRetry(entry.desired, 1);
      });
      return entry.status;
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

  /** The counters of one vNIC (once its actor started). */
  async nicCounters(id: string): Promise<NicCounters> {
    for (const net of this.#networks.values()) {
      const entry = net.nics.get(id);
      if (!entry) continue;
      await entry.starting;
      const ref = net.sup.ref<VnicMsg>(vnicChildId(id));
      if (!ref) throw new RemoteError("failed", `vNIC ${id} is restarting`);
      return await ref.call<NicCounters>({ type: "GetCounters" });
    }
    throw new RemoteError("not_found", `no vNIC ${id} in the dataplane`);
  }

  /** The counters of the pool of vNIC Workers, for tests and diagnostics. */
  vnicPoolStats(): WorkerPoolStats {
    return this.#vnicPool.stats();
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
    const [kind, id] = path.split(":");
    if (kind === "vnic") {
      for (const net of this.#networks.values()) await net.nics.get(id)?.starting;
    }
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
        // A start under way would leave a Worker its supervisor no longer knows; one that
        // has not begun is skipped (the fleet is down) and closes its device.
        await Promise.all([...net.nics.values()].map((e) => e.starting));
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
      routes: new Map(),
      publishTimer: null,
      epoch: 0,
      pending: noChanges(),
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
          this.#routesChanged(entry, e.routes);
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
    for (const net of this.#networks.values()) {
      if (!net.desired.isPublic) continue;
      net.pending.tun = true;
      this.#publishTopology(net);
    }
  }

  /** The routes, vNICs and prefixes of every public network, for the TUN actor. */
  #tunTopology(): TunTopology {
    const out: TunTopology = { routes: [], peers: [], prefixes: [] };
    for (const net of this.#networks.values()) {
      if (!net.desired.isPublic) continue;
      for (const [prefix, nicId] of net.routes) out.routes.push({ prefix, nicId });
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
    const routes: RouteEntry[] = [];
    for (const [prefix, nicId] of net.routes) routes.push({ prefix, nicId });
    return { routes, peers: [...net.nics.values()].map(peerOf), tun: this.#tunLink(net) };
  }

  #tunLink(net: NetworkEntry): Topology["tun"] {
    return net.desired.isPublic && this.#tun
      ? { ring: this.#tun.ring, wakeFd: this.#tun.wakeFd }
      : null;
  }

  /** What changed since the network's last broadcast, each key in its current state. */
  #delta(net: NetworkEntry, changes: PendingChanges): TopologyDelta {
    const delta: TopologyDelta = { gone: [...changes.gone], peers: [], routes: [], unrouted: [] };
    for (const id of changes.peers) {
      const e = net.nics.get(id);
      if (e) delta.peers.push(peerOf(e));
    }
    for (const prefix of changes.prefixes) {
      const nicId = net.routes.get(prefix);
      if (nicId === undefined) delta.unrouted.push(prefix);
      else delta.routes.push({ prefix, nicId });
    }
    if (changes.tun) delta.tun = this.#tunLink(net);
    return delta;
  }

  /** Takes the network actor's routes: the prefixes that changed go into the next broadcast. */
  #routesChanged(net: NetworkEntry, routes: RouteEntry[]): void {
    const next = new Map(routes.map((r) => [r.prefix, r.nicId]));
    for (const [prefix, nicId] of next) {
      if (net.routes.get(prefix) !== nicId) net.pending.prefixes.add(prefix);
    }
    for (const prefix of net.routes.keys()) {
      if (!next.has(prefix)) net.pending.prefixes.add(prefix);
    }
    net.routes = next;
    this.#publishTopology(net);
  }

  /** A vNIC of the network joined or changed (its device, its IPv6 address). */
  #peerChanged(net: NetworkEntry, id: string): void {
    net.pending.peers.add(id);
    this.#publishTopology(net);
  }

  /** A vNIC of the network left (or is replaced by a new one of the same id). */
  #peerGone(net: NetworkEntry, id: string): void {
    net.pending.gone.add(id);
    this.#publishTopology(net);
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

  /**
   * Sends each running vNIC actor of the network what changed since the last broadcast: a delta
   * of the changed peers and routes, whose cost grows with the change and not with the network.
   * An actor that missed the last broadcast (it was starting or restarting) gets the whole
   * topology instead; the delta, which names each changed key in its current state, is right
   * for any actor that has everything up to the last broadcast, including changes after it.
   */
  #broadcastTopology(net: NetworkEntry): void {
    const changes = net.pending;
    let delta: TopologyDelta | null = null;
    if (changes.gone.size || changes.peers.size || changes.prefixes.size || changes.tun) {
      net.pending = noChanges();
      delta = this.#delta(net, changes);
      net.epoch++;
    }
    let full: Topology | null = null;
    for (const e of net.nics.values()) {
      if (e.seen === net.epoch) continue;
      const ref = net.sup.ref<VnicMsg>(vnicChildId(e.desired.id));
      if (!ref) continue;
      if (delta && e.seen === net.epoch - 1) ref.cast({ type: "TopologyDelta", delta });
      else ref.cast({ type: "TopologyChanged", topology: full ??= this.#topology(net) });
      e.seen = net.epoch;
    }
    if (delta && net.desired.isPublic) this.#publishTun();
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

  /** Creates or updates a vNIC and, for a new one, waits until its actor runs. */
  async #upsertNic(nic: DesiredNic): Promise<NicStatus> {
    const opened = await this.#openNic(nic);
    if (!("entry" in opened)) return opened.status;
    await this.#startNic(opened.net, opened.entry, this.#syncStarts);
    return opened.entry.status;
  }

  /**
   * The first half of a vNIC's start: updates an existing vNIC (its status is the answer), or
   * makes a new one's entry and device, whose socket accepts from then on. Throws, with nothing
   * left behind, when the device cannot be made (a socket path in use, say).
   */
  async #openNic(
    nic: DesiredNic,
  ): Promise<{ status: NicStatus } | { net: NetworkEntry; entry: NicEntry }> {
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
        const ipv6Changed = existing.desired.ipv6 !== nic.ipv6;
        existing.desired = nic;
        if (ipv6Changed) this.#peerChanged(net, nic.id);
        // An actor still starting has no ref yet: it is caught up once it runs.
        net.sup.ref<VnicMsg>(vnicChildId(nic.id))?.cast({ type: "NicChanged", nic });
        net.sup.ref<NetworkMsg>(NETWORK_ACTOR_ID)?.cast({ type: "NicJoined", nic });
        return { status: existing.status };
      }
      await this.#removeNic(net, nic.id);
    }
    let handle: number;
    try {
      handle = this.#opts.devices.open(nic, net.desired.mtu);
    } catch (e) {
      throw new RemoteError("failed", `vNIC ${nic.id}: ${(e as Error).message}`);
    }
    const entry: NicEntry = {
      desired: nic,
      status: { id: nic.id, state: "CREATED" },
      handle,
      ring: FrameRing.allocate(RING_SLOTS, net.desired.mtu + RING_FRAME_OVERHEAD),
      starting: Promise.resolve(),
      removed: false,
      spawned: null,
      seen: null,
    };
    net.nics.set(nic.id, entry);
    // Peers may route to it at once: their frames wait in its ring until its actor runs.
    this.#peerChanged(net, nic.id);
    net.sup.ref<NetworkMsg>(NETWORK_ACTOR_ID)?.cast({ type: "NicJoined", nic });
    return { net, entry };
  }

  /**
   * The second half of a vNIC's start: its actor, in a Worker (as many at a time as `slots`
   * allows), adopts the device {@link Fleet.#openNic} made. If the start fails, the vNIC is
   * forgotten and its device closed (its socket removed), and the error is thrown. A vNIC
   * removed before its turn is not started.
   */
  #startNic(net: NetworkEntry, entry: NicEntry, slots: Slots): Promise<void> {
    const id = entry.desired.id;
    const start = slots.run(async () => {
      if (entry.removed) return;
      if (this.#down) throw new Error("the dataplane is stopping");
      await net.sup.startChild({
        id: vnicChildId(id),
        restart: "permanent",
        spawn: () => {
          entry.spawned = { nic: entry.desired, network: net.desired };
          // In a burst of starts (a restore) an actor starts without the topology, which every
          // actor of the network then gets once at the burst's end: building it (a ring view
          // per peer, a route per address) at every start made each start cost O(N).
          const held = this.#held !== null;
          entry.seen = held ? null : net.epoch;
          return {
            name: `dataplane/net:${net.desired.name}/vnic:${entry.desired.name || id}`,
            module: this.#vnicModule,
            pool: this.#vnicPool,
            args: {
              nic: entry.desired,
              network: net.desired,
              handle: entry.handle!,
              topology: held
                ? { routes: [], peers: [], tun: this.#tunLink(net) }
                : this.#topology(net),
              ring: entry.ring,
            } satisfies VnicArgs,
            wake: () => {
              if (entry.handle !== null) this.#opts.devices.wake(entry.handle);
            },
            onEvent: (ev) => this.#onVnicEvent(net, entry, ev as VnicEvent),
          };
        },
        onStarted: (ref) => this.#catchUp(net, entry, ref as ActorRef<VnicMsg>),
      });
    }).catch((e) => {
      if (net.nics.get(id) === entry) {
        net.nics.delete(id);
        net.sup.ref<NetworkMsg>(NETWORK_ACTOR_ID)?.cast({ type: "NicLeft", id });
        this.#peerGone(net, id);
      }
      // The Worker was terminated; its device would keep the socket accepting with nobody to
      // serve it.
      if (entry.handle !== null) {
        this.#opts.devices.close(entry.handle);
        entry.handle = null;
      }
      throw new RemoteError("failed", `vNIC ${id}: ${(e as Error).message}`);
    });
    entry.starting = start.catch(() => {});
    return start;
  }

  /**
   * Sends an actor that just (re)started what changed while it was starting: messages to a
   * vNIC whose actor has no ref yet are not sent, and its arguments were taken at its spawn.
   */
  #catchUp(net: NetworkEntry, entry: NicEntry, ref: ActorRef<VnicMsg>): void {
    const was = entry.spawned;
    if (!was) return;
    if (was.nic !== entry.desired) ref.cast({ type: "NicChanged", nic: entry.desired });
    if (was.network !== net.desired) ref.cast({ type: "NetworkChanged", network: net.desired });
    if (entry.seen === net.epoch) return;
    if (this.#held) {
      // The burst's end brings it (see the actor's spawn).
      this.#held.add(net);
      return;
    }
    ref.cast({ type: "TopologyChanged", topology: this.#topology(net) });
    entry.seen = net.epoch;
  }

  #onVnicEvent(net: NetworkEntry, entry: NicEntry, ev: VnicEvent): void {
    switch (ev.type) {
      case "DeviceOpened":
        if (entry.handle === ev.handle) return;
        entry.handle = ev.handle;
        if (net.nics.get(entry.desired.id) === entry) this.#peerChanged(net, entry.desired.id);
        return;
      case "DeviceClosed":
        entry.handle = null;
        if (net.nics.get(entry.desired.id) === entry) this.#peerChanged(net, entry.desired.id);
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
    entry.removed = true;
    this.#peerGone(net, id);
    // A start under way ends first: the supervisor stops only a child that has started.
    await entry.starting;
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
      await Promise.all(nics.map((e) => e.starting));
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

/** A vNIC as its peers route to it. */
function peerOf(e: NicEntry): Peer {
  return {
    id: e.desired.id,
    mac: e.desired.mac,
    ipv6: e.desired.ipv6,
    handle: e.handle,
    ring: e.ring,
  };
}

/** Resolves in a later macrotask, after the microtasks of this one (which write the answer). */
function afterReply(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

function vnicChildId(nicId: string): string {
  return `vnic:${nicId}`;
}

/** Runs at most `count` tasks at a time; the others wait for a slot in arrival order. */
class Slots {
  #free: number;
  #waiting: Array<() => void> = [];

  constructor(count: number) {
    this.#free = count;
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.#free > 0) this.#free--;
    else await new Promise<void>((resolve) => this.#waiting.push(resolve));
    try {
      return await task();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#free++;
    }
  }
}
