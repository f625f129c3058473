/**
 * The vNIC actor: one Worker per vNIC, owning one vhost-user virtio-net device.
 *
 * The Worker runs a loop that blocks in one native call (epoll over the device's socket, kick
 * eventfds and its two own eventfds), services vhost-user messages, and moves frames in bursts.
 * Whoever posts a message also writes the device's wake eventfd, so a blocked loop returns and
 * gives its event loop the turns the mail needs ({@link MailboxPacer}); peers and the TUN actor
 * that push frames into its inbound ring write the inbound eventfd instead, which costs the loop
 * no turn of the event loop. An idle vNIC sleeps until an event or its next periodic RA.
 *
 * The device (connection, memory mappings, ring state) lives in native memory owned by the
 * process, not by this Worker: a restarted actor adopts it by handle and the guest does not
 * notice.
 * @module
 */

import type { DesiredNetwork, DesiredNic, NicCounters, NicStatus } from "../daemon/protocol.ts";
import type { ActorContext } from "./worker_runtime.ts";
import { MailboxPacer, runActor, yieldToMailbox } from "./worker_runtime.ts";
import { faultInjection } from "./network.ts";
import { type RouteEntry, RouteSet } from "../routing/routes.ts";
import { forward, type ForwardContext, type NicRoute, RateLimiter } from "../routing/forward.ts";
import type { RouteTable } from "../routing/table.ts";
import { FrameRing } from "../routing/ring.ts";
import { type FastPeer, FastTable } from "../routing/fast_table.ts";
import {
  buildPeriodicRa,
  DEFAULT_DHCPV4_LEASE_SECS,
  DEFAULT_DHCPV6_PREFERRED_SECS,
  DEFAULT_DHCPV6_VALID_SECS,
  DEFAULT_RA_INTERVALS,
  DropCounters,
  handleGuestFrame,
  nextRaTime,
  type VnicContext,
} from "../services/mod.ts";
import { GATEWAY_MAC } from "../services/context.ts";
import {
  type Cidr,
  formatIpv6,
  IPV4_UNSPECIFIED,
  type Ipv4Addr,
  IPV6_UNSPECIFIED,
  type Ipv6Addr,
  parseCidr,
  parseIpv4,
  parseIpv6,
  parseMac,
} from "../wire/addr.ts";
import { WireError } from "../wire/error.ts";
import { ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6 } from "../wire/ethernet.ts";
import {
  DeviceEvents,
  type DeviceTransition,
  type FrameBatch,
  VhostNetDevice,
} from "../vhost/device.ts";
import { bindFastCalls, META_SIZE, native } from "../ffi/binding.ts";
import { SecurityFilter } from "../secgroup/mod.ts";
import { GuestReceiver } from "../vhost/receive.ts";
import { prepareFromGuest, pushToTun } from "../routing/offload.ts";
import { childSocketGroup, shareSocket } from "../daemon/socket_access.ts";
import { Reclaimer } from "./reclaim.ts";

/** Another vNIC of the same network, as this one routes to it. */
export interface Peer {
  id: string;
  mac: string;
  /** Its IPv6 address ("" if none): the gateway answers neighbor solicitations for it. */
  ipv6: string;
  /** Its native device, or null while it has none (not started, or restarting). */
  handle: number | null;
  /** Its inbound frame ring ({@link FrameRing}): where routed frames for it go. */
  ring: SharedArrayBuffer;
}

/** The network as a vNIC actor routes it: published by the network actor, relayed by the fleet. */
export interface Topology {
  routes: RouteEntry[];
  peers: Peer[];
  /** The TUN actor's inbound ring and wake eventfd, on public networks while it runs. */
  tun: { ring: SharedArrayBuffer; wakeFd: number } | null;
}

/**
 * What changed in a network's topology since the fleet's previous broadcast, each changed key
 * in its current state: applied to a topology at least as recent as that broadcast, it gives
 * the current one. Its size is that of the change, not of the network.
 */
export interface TopologyDelta {
  /** Peers that left, or were replaced by a new vNIC of the same id (then also in `peers`). */
  gone: string[];
  /** Peers that joined or changed (device handle, IPv6 address), as they are now. */
  peers: Peer[];
  /** Routes added or moved to another vNIC. */
  routes: RouteEntry[];
  /** Prefixes no longer routed. */
  unrouted: string[];
  /** The TUN actor's ring, when it changed; absent when it did not. */
  tun?: Topology["tun"];
}

/** Messages the vNIC actor accepts. */
export type VnicMsg =
  | { type: "NicChanged"; nic: DesiredNic }
  /** The whole topology: sent to an actor that missed a delta (it was starting). */
  | { type: "TopologyChanged"; topology: Topology }
  | { type: "TopologyDelta"; delta: TopologyDelta }
  | { type: "NetworkChanged"; network: DesiredNetwork }
  | { type: "GetCounters" }
  | { type: "InjectFault"; reason: string };

/** Arguments of the vNIC actor's start. */
export interface VnicArgs {
  nic: DesiredNic;
  network: DesiredNetwork;
  /**
   * The vNIC's native device, to adopt: made by the fleet before this Worker started (so
   * that its socket accepted without waiting for it), or kept from a previous incarnation.
   */
  handle: number;
  /**
   * The network's topology when the actor was spawned; empty during a burst of starts (a
   * restore), at whose end every actor of the network gets it whole.
   */
  topology: Topology;
  /** This vNIC's inbound ring, owned by the fleet so that it outlives a restart of the actor. */
  ring: SharedArrayBuffer;
}

/** What the vNIC actor reports to its supervisor. */
export type VnicEvent =
  | { type: "DeviceOpened"; handle: number }
  | { type: "DeviceClosed" }
  | { type: "StateChanged"; status: NicStatus };

/** Native device operations the supervising thread needs (any thread may call them). */
export interface NicDeviceControl {
  /**
   * Creates a vNIC's device: its socket accepts from then on (a VMM that connects waits in
   * the socket until the vNIC's actor adopts the device and serves it). Returns its handle;
   * throws if the socket cannot be made or shared.
   */
  open(nic: DesiredNic, mtu: number): number;
  /** Makes a device's poll return, so its Worker reads its mailbox. */
  wake(handle: number): void;
  /** Closes a device whose actor is gone (removes its socket). */
  close(handle: number): void;
}

/** The native implementation of {@link NicDeviceControl}. */
export function nativeDeviceControl(): NicDeviceControl {
  return {
    open: (nic, mtu) => {
      const device = VhostNetDevice.create({ socketPath: nic.socketPath, mac: nic.mac, mtu });
      // Born connectable by the daemon user only (umask); now open it to the VMMs' group.
      try {
        shareSocket(nic.socketPath, childSocketGroup());
      } catch (e) {
        device.close();
        throw e;
      }
      return device.handle;
    },
    wake: (handle) => VhostNetDevice.wake(handle),
    close: (handle) => VhostNetDevice.closeHandle(handle),
  };
}

/**
 * Longest `poll` wait with nothing due. Mail wakes the loop (WAKE), peers' and the TUN's frames
 * too (INBOUND), the guest and the VMM through their fds; the periodic RA and a requested
 * collection (actors/reclaim.ts) set their own timeouts. This bound is only a safety net for a
 * message that reached the Worker after the pacer stopped looking for it (`MailboxPacer`
 * rechecks for about 1 s after a wake): it is then handled within this time. An idle vNIC pays
 * one poll return every so often for it, which costs no measurable CPU.
 */
const IDLE_POLL_MS = 5_000;
/** Frames moved per burst. */
const BURST = 64;
/** ICMP errors a vNIC may provoke: 100 per second, bursts of 20. */
const ICMP_ERROR_RATE = 100;
const ICMP_ERROR_BURST = 20;

/** A route's target as this vNIC sees it: the peer's MAC, device and ring. */
interface PeerRoute extends NicRoute {
  handle: number | null;
  ring: FrameRing;
  /** The ring's native address, for the shim's forwarding table (read once). */
  ringAddr?: bigint;
  /** Its IPv6 address as the services compare it ("" if none, and for this vNIC itself). */
  ipv6: string;
}

interface VnicState {
  nic: DesiredNic;
  network: DesiredNetwork;
  device: VhostNetDevice;
  status: NicStatus;
  loop: Promise<void>;
  stop: boolean;
  ring: FrameRing;
  services: VnicContext;
  forward: ForwardContext;
  drops: DropCounters;
  /** Drops of the router and the rings, by reason. */
  routeDrops: Record<string, number>;
  raSent: number;
  raDue: number;
  /** Collections that release dropped peers' rings, run from the loop (see actors/reclaim.ts). */
  reclaim: Reclaimer;
  /**
   * The network's peers and routes, kept change by change; `forward.routes` is its table, whose
   * values are the peers themselves (a peer that changes is updated in place).
   */
  routes: RouteSet<PeerRoute>;
  /** The peers' IPv6 addresses ({@link PeerRoute.ipv6}), which the services answer for. */
  peerIpv6: Set<string>;
  /** The TUN actor's ring and wake fd as the fleet sent them. */
  tunLink: Topology["tun"];
  /** The TUN actor's ring and wake fd, when this network has one. */
  tun: { ring: FrameRing; wakeFd: number } | null;
  /** The vNIC's security groups; off (and never called) while none is attached. */
  secgroups: SecurityFilter;
  /** The shim's forwarding table for this vNIC's frames to its peers (ffi/fastpath.c). */
  fast: FastTable;
  /** Frames the shim forwarded to peers without TypeScript, of those the frames it delivered
   * straight into the peer's guest, and of those the frames it copied once, from this guest's
   * buffers into the peer's. */
  fastForwarded: number;
  fastDirect: number;
  fastOneCopy: number;
}

function report(state: VnicState, ctx: ActorContext, status: NicStatus): void {
  if (status.state === state.status.state && status.reason === state.status.reason) return;
  state.status = status;
  ctx.log.info("vNIC state", { state: status.state, reason: status.reason ?? "" });
  ctx.emit({ type: "StateChanged", status } satisfies VnicEvent);
}

function applyTransition(state: VnicState, ctx: ActorContext, t: DeviceTransition): void {
  const id = state.nic.id;
  switch (t.kind) {
    case "driver_ok":
      report(state, ctx, { id, state: "ACTIVE" });
      // A guest whose driver just came up gets its first RAs quickly.
      state.raSent = 0;
      state.raDue = Date.now();
      return;
    case "connected":
      ctx.log.info("VMM connected");
      return;
    case "reset":
    case "disconnected":
      report(state, ctx, { id, state: "CREATED", reason: t.reason });
      return;
    case "error":
      report(state, ctx, { id, state: "ERROR", reason: t.reason });
      return;
  }
}

function must<T>(v: T | WireError, what: string): T {
  if (v instanceof WireError) throw new Error(`${what}: ${v}`);
  return v;
}

function addr4(text: string): Ipv4Addr | null {
  return text ? must(parseIpv4(text), "IPv4 address") : null;
}

function addr6(text: string): Ipv6Addr | null {
  return text ? must(parseIpv6(text), "IPv6 address") : null;
}

/** Splits server lists by family: the API keeps one list per kind of server. */
function byFamily(servers: string[]): { v4: Ipv4Addr[]; v6: Ipv6Addr[] } {
  const v4: Ipv4Addr[] = [];
  const v6: Ipv6Addr[] = [];
  for (const s of servers) {
    const a = s.includes(":") ? parseIpv6(s) : parseIpv4(s);
    if (a instanceof WireError) continue;
    (a.length === 4 ? v4 : v6).push(a);
  }
  return { v4, v6 };
}

/**
 * The guest services' view of this vNIC, rebuilt whenever the vNIC, network or peers change;
 * `peerIpv6` is the vNIC's own set, kept up to date in place.
 */
function servicesContext(
  nic: DesiredNic,
  net: DesiredNetwork,
  peerIpv6: ReadonlySet<string>,
): VnicContext {
  const dns = byFamily(net.dnsServers);
  const ntp = byFamily(net.ntpServers);
  const zero4: Cidr = { addr: IPV4_UNSPECIFIED, prefixLen: 32 };
  const zero6: Cidr = { addr: IPV6_UNSPECIFIED, prefixLen: 128 };
  return {
    mac: must(parseMac(nic.mac), "MAC"),
    ipv4: addr4(nic.ipv4) ?? IPV4_UNSPECIFIED,
    ipv6: addr6(nic.ipv6) ?? IPV6_UNSPECIFIED,
    ipv4Subnet: net.ipv4Subnet ? must(parseCidr(net.ipv4Subnet, 4), "subnet") : zero4,
    ipv6Prefix: net.ipv6Prefix ? must(parseCidr(net.ipv6Prefix, 6), "prefix") : zero6,
    dnsServers4: dns.v4,
    dnsServers6: dns.v6,
    ntpServers4: ntp.v4,
    ntpServers6: ntp.v6,
    isPublic: net.isPublic,
    mtu: net.mtu,
    dhcpv4LeaseSecs: DEFAULT_DHCPV4_LEASE_SECS,
    dhcpv6PreferredSecs: DEFAULT_DHCPV6_PREFERRED_SECS,
    dhcpv6ValidSecs: DEFAULT_DHCPV6_VALID_SECS,
    peerIpv6,
    gatewayMac: GATEWAY_MAC,
  };
}

/** This vNIC's peers and routes from a whole topology (at its start, or to catch up). */
function routeTable(
  topology: Topology,
  self: string,
): { routes: RouteSet<PeerRoute>; peerIpv6: Set<string> } {
  const routes = new RouteSet<PeerRoute>();
  const peerIpv6 = new Set<string>();
  for (const p of topology.peers) setPeer(routes, peerIpv6, p, self);
  for (const r of topology.routes) routes.setRoute(r.prefix, r.nicId);
  return { routes, peerIpv6 };
}

/**
 * Adds a peer, or updates a known one in place: it keeps its ring view, and the routes to it
 * (which hold the same object) see the change at once.
 */
function setPeer(routes: RouteSet<PeerRoute>, peerIpv6: Set<string>, p: Peer, self: string): void {
  const ipv6 = p.ipv6 && p.id !== self ? formatIpv6(addr6(p.ipv6)!) : "";
  const known = routes.member(p.id);
  if (!known) {
    const mac = must(parseMac(p.mac), "peer MAC");
    routes.setMember(p.id, { id: p.id, mac, handle: p.handle, ring: new FrameRing(p.ring), ipv6 });
    if (ipv6) peerIpv6.add(ipv6);
    return;
  }
  known.handle = p.handle;
  if (known.ipv6 === ipv6) return;
  if (known.ipv6) peerIpv6.delete(known.ipv6);
  if (ipv6) peerIpv6.add(ipv6);
  known.ipv6 = ipv6;
}

/** Applies a topology delta (see {@link TopologyDelta}); true when a peer, and its ring, left. */
function applyDelta(state: VnicState, delta: TopologyDelta): boolean {
  for (const id of delta.gone) {
    const old = state.routes.removeMember(id);
    if (old?.ipv6) state.peerIpv6.delete(old.ipv6);
  }
  for (const p of delta.peers) setPeer(state.routes, state.peerIpv6, p, state.nic.id);
  for (const r of delta.routes) state.routes.setRoute(r.prefix, r.nicId);
  for (const prefix of delta.unrouted) state.routes.removeRoute(prefix);
  if (delta.tun !== undefined) state.tunLink = delta.tun;
  return delta.gone.length > 0;
}

function routed(nic: DesiredNic): Cidr[] {
  const out: Cidr[] = [];
  for (const p of nic.routedIpv4Prefixes) {
    const c = parseCidr(p, 4);
    if (!(c instanceof WireError)) out.push(c);
  }
  for (const p of nic.routedIpv6Prefixes) {
    const c = parseCidr(p, 6);
    if (!(c instanceof WireError)) out.push(c);
  }
  return out;
}

function forwardContext(
  nic: DesiredNic,
  net: DesiredNetwork,
  routes: RouteTable<PeerRoute>,
  limiter: RateLimiter,
): ForwardContext {
  return {
    nic: {
      id: nic.id,
      mac: must(parseMac(nic.mac), "MAC"),
      ipv4: addr4(nic.ipv4),
      ipv6: addr6(nic.ipv6),
      routed: routed(nic),
    },
    gatewayMac: GATEWAY_MAC,
    isPublic: net.isPublic,
    mtu: net.mtu,
    routes,
    icmpErrors: limiter,
    nowMs: 0,
  };
}

function bump(counts: Record<string, number>, reason: string, n = 1): void {
  counts[reason] = (counts[reason] ?? 0) + n;
}

/** True when the frame is of a family the network does not have: nothing may answer it. */
function familyDisabled(state: VnicState, frame: Uint8Array): boolean {
  if (frame.length < 14) return false;
  const type = (frame[12] << 8) | frame[13];
  if (type === ETHERTYPE_IPV4 || type === ETHERTYPE_ARP) return !state.nic.ipv4;
  if (type === ETHERTYPE_IPV6) return !state.nic.ipv6;
  return false;
}

/** The metadata of the frame {@link handleTx} is handling (one frame at a time). */
const txMeta = new Uint8Array(META_SIZE);

/** Handles one burst of frames the guest sent. */
function handleTx(
  state: VnicState,
  batch: FrameBatch,
  replies: GuestReceiver,
  wake: Set<number>,
  wakeTun: { value: boolean },
): void {
  state.forward.nowMs = performance.now();
  for (let i = 0; i < batch.count; i++) {
    const frame = batch.frame(i);
    // Checked and possibly completed below; travels with the frame to its receiver.
    const meta = batch.copyMeta(i, txMeta);
    if (familyDisabled(state, frame)) {
      bump(state.routeDrops, "family_disabled");
      continue;
    }
    // Bad offload metadata is refused; a partial UDP checksum is completed for the services.
    const badOffload = prepareFromGuest(meta, frame);
    if (badOffload) {
      bump(state.routeDrops, badOffload);
      continue;
    }
    const v = handleGuestFrame(state.services, frame, state.drops);
    if (v.kind === "reply") {
      for (const f of v.frames) if (!replies.push(f)) bump(state.routeDrops, "reply_overflow");
      continue;
    }
    if (v.kind === "drop") continue;
    // Security groups see only what leaves through the router: the gateway's services above
    // (ARP, NDP, DHCP) are never filtered.
    const sg = state.secgroups;
    if (sg.enabled && !sg.filter(frame, "egress", state.forward.nowMs).pass) continue;
    const r = forward(state.forward, frame, meta);
    switch (r.kind) {
      case "deliver": {
        const to = r.to as PeerRoute;
        if (to.id === state.nic.id) {
          replies.push(frame, meta);
        } else if (to.handle === null) {
          bump(state.routeDrops, "peer_down");
        } else if (!to.ring.push(frame, meta)) {
          bump(state.routeDrops, "peer_ring_full");
        } else {
          wake.add(to.handle);
        }
        break;
      }
      case "tun": {
        const why = state.tun ? pushToTun(state.tun.ring, r.packet, meta, frame) : null;
        if (!state.tun) bump(state.routeDrops, "tun_unavailable");
        else if (why) bump(state.routeDrops, why);
        else wakeTun.value = true;
        break;
      }
      case "drop":
        bump(state.routeDrops, r.reason);
        if (r.reply && !replies.push(r.reply)) bump(state.routeDrops, "reply_overflow");
        break;
    }
  }
}

async function runLoop(state: VnicState, ctx: ActorContext): Promise<void> {
  // init() starts the loop; let it return (and the actor report ready) before the first poll
  // blocks the Worker, or CreateNic waits out a whole poll timeout.
  await yieldToMailbox();
  const dev = state.device;
  const tx = dev.frameBuffer(BURST);
  // Frames for the guest, adapted to the offloads it negotiated; a full batch is delivered.
  const out = new GuestReceiver(
    dev,
    dev.frameBuffer(BURST * 2),
    (why) => bump(state.routeDrops, why),
  );
  const wake = new Set<number>();
  const wakeTun = { value: false };
  const toGuest = (f: Uint8Array, meta?: Uint8Array) => {
    out.push(f, meta);
  };
  // What peers and the TUN send passes the security groups; the clock is read once per drain.
  let sgNow = 0;
  const toGuestFiltered = (f: Uint8Array, meta?: Uint8Array) => {
    if (state.secgroups.filter(f, "ingress", sgNow).pass) out.push(f, meta);
  };
  const pacer = new MailboxPacer();
  // [handed to peers, refused by a full peer ring, delivered straight, of those copied once]
  // of one fast-path burst.
  const fastRes = new Uint32Array(4);
  const ringBytes = new Uint8Array(state.ring.buffer);
  while (!state.stop && !ctx.stopping) {
    // Returns at once while the inbound ring holds a frame (a drain takes a burst); peers do
    // not signal a loop that is running, since it drains the ring below on every pass.
    const ready = dev.pollWithRing(pacer.pollTimeout(untilDue(state)), ringBytes);
    if (ready & DeviceEvents.WAKE) pacer.woken();
    if (ready & DeviceEvents.CONTROL) {
      for (const t of dev.service()) applyTransition(state, ctx, t);
    }
    out.begin();
    if (ready & DeviceEvents.TX) {
      tx.clear();
      // Frames to peers go through the shim's fast path unless security groups must see them
      // (the fast path knows no rules); what it leaves is decided here as before.
      if (state.secgroups.enabled || state.fast.count === 0) {
        dev.receiveBurst(tx);
      } else {
        dev.receiveForwarding(tx, state.fast.bytes, fastRes);
        state.fastForwarded += fastRes[0];
        state.fastDirect += fastRes[2];
        state.fastOneCopy += fastRes[3];
        if (fastRes[1]) bump(state.routeDrops, "peer_ring_full", fastRes[1]);
      }
      handleTx(state, tx, out, wake, wakeTun);
      for (const h of wake) VhostNetDevice.notify(h);
      wake.clear();
      if (wakeTun.value && state.tun) native().mvn_eventfd_signal(state.tun.wakeFd);
      wakeTun.value = false;
    }
    if (state.secgroups.enabled) {
      sgNow = state.secgroups.now();
      state.ring.drain(BURST, toGuestFiltered);
    } else {
      // The shim moves frames from the ring to the guest up to the first one with offloads the
      // guest did not negotiate; from there GuestReceiver adapts them (or drops them, with no
      // receive queue). A frame the guest has no buffer for stays in the ring until it adds
      // some (the poll reports the ring then). Frames peers push meanwhile wait for the next
      // pass: drained here, they would find no buffer and be dropped.
      const took = dev.deliverFromRing(ringBytes, BURST);
      if (dev.rxRest) state.ring.drain(BURST - took, toGuest);
    }
    if (state.nic.ipv6 && dev.driverReady && Date.now() >= state.raDue) {
      const ra = buildPeriodicRa(state.services);
      if (!(ra instanceof WireError)) toGuest(ra);
      state.raSent++;
      state.raDue = nextRaTime(Date.now(), state.raSent, DEFAULT_RA_INTERVALS, Math.random());
    }
    out.flush();
    state.reclaim.runDue();
    // Mail and timers get a turn of the event loop when the pacer says so, not per burst.
    const turn = pacer.turn();
    if (turn) await turn;
  }
}

/**
 * How long the loop may wait for events: until the next periodic RA or the requested
 * collection, whichever is first, and at most {@link IDLE_POLL_MS}.
 */
function untilDue(state: VnicState): number {
  const gc = state.reclaim.dueIn();
  let ms = gc < 0 ? IDLE_POLL_MS : Math.min(gc, IDLE_POLL_MS);
  if (state.nic.ipv6 && state.device.driverReady) {
    ms = Math.min(ms, Math.max(0, Math.ceil(state.raDue - Date.now())));
  }
  return ms;
}

/**
 * Rebuilds what derives from the vNIC, its network and its peers, after any change of them.
 * The peers and routes themselves (`state.routes`) are kept, not rebuilt: this costs the same
 * in a network of 2 vNICs as in one of 256.
 */
function refresh(state: VnicState): void {
  state.services = servicesContext(state.nic, state.network, state.peerIpv6);
  state.forward = forwardContext(
    state.nic,
    state.network,
    state.routes.table,
    state.forward.icmpErrors,
  );
  state.tun = tunOf(state.tunLink);
  updateFastPath(state);
}

/**
 * Applies the vNIC's security groups: the filter recompiles its rules and drops the tracked
 * flows they no longer allow (a no-op when nothing changed). Rules it cannot compile allow
 * nothing and are logged.
 */
function applySecurityGroups(state: VnicState, ctx: ActorContext): void {
  // Desired state written before protocol version 2 has neither field.
  const groups = state.nic.securityGroupIds ?? [];
  const r = state.secgroups.update(groups, state.nic.rules ?? []);
  // Peers may deliver straight into the guest only while no rule must see what it receives.
  state.device.setDirectReceive(!state.secgroups.enabled);
  if (!r.changed) return;
  ctx.log.info("security groups applied", {
    groups: groups.length,
    rules: state.nic.rules?.length ?? 0,
    revokedFlows: r.revoked,
  });
  for (const bad of r.rejected) {
    ctx.log.warn("security group rule ignored", { rule: bad.id, error: bad.error });
  }
}

/** True when a peer (and so its ring) known in `before` is not in `after`. */
function droppedPeers(before: RouteSet<PeerRoute>, after: Topology): boolean {
  const now = new Set(after.peers.map((p) => p.id));
  for (const p of before.members()) if (!now.has(p.id)) return true;
  return false;
}

/** The native address of a peer's ring (a SharedArrayBuffer never moves). */
function ringAddr(to: PeerRoute): bigint {
  return to.ringAddr ??= BigInt(
    Deno.UnsafePointer.value(Deno.UnsafePointer.of(new Uint8Array(to.ring.buffer))),
  );
}

/**
 * Rewrites the shim's forwarding table from the route table: every host route (/32, /128) to
 * a running peer, resolved as the router resolves it. The rings it names are held by the route
 * set's members: a peer that leaves is removed from it and this table is rewritten in the same
 * message handler, before the loop calls the shim again. O(routes) per change, without parsing
 * and without a view per ring.
 */
function updateFastPath(state: VnicState): void {
  const peers: FastPeer[] = [];
  const fwd = state.forward;
  for (const r of state.routes.routes()) {
    const c = r.cidr;
    if (c.prefixLen !== c.addr.length * 8) continue;
    const to = fwd.routes.lookup(c.addr) as PeerRoute | undefined;
    if (!to || to.handle === null || to.id === state.nic.id) continue;
    peers.push({
      addr: c.addr,
      mac: to.mac,
      handle: to.handle,
      ringAddr: ringAddr(to),
      ringLen: to.ring.buffer.byteLength,
    });
  }
  state.fast.update({
    mac: fwd.nic.mac,
    gatewayMac: fwd.gatewayMac,
    ipv4: fwd.nic.ipv4,
    ipv6: fwd.nic.ipv6,
    mtu: fwd.mtu,
  }, peers);
}

function tunOf(link: Topology["tun"]): VnicState["tun"] {
  return link ? { ring: new FrameRing(link.ring), wakeFd: link.wakeFd } : null;
}

if (import.meta.main) {
  // Opens the shim and binds the loop's fast calls in this Worker while it loads: a Worker that
  // waits in the pool has then done it before its actor is started.
  bindFastCalls("vnic");
  runActor<VnicMsg, VnicState, VnicArgs>({
    init(args, ctx) {
      // The fleet made the device (nativeDeviceControl().open); a VMM may already be waiting.
      const device = VhostNetDevice.adopt(args.handle);
      ctx.emit({ type: "DeviceOpened", handle: device.handle } satisfies VnicEvent);
      const limiter = new RateLimiter(ICMP_ERROR_RATE, ICMP_ERROR_BURST);
      const { routes, peerIpv6 } = routeTable(args.topology, args.nic.id);
      const state: VnicState = {
        nic: args.nic,
        network: args.network,
        device,
        status: { id: args.nic.id, state: device.driverReady ? "ACTIVE" : "CREATED" },
        loop: Promise.resolve(),
        stop: false,
        ring: new FrameRing(args.ring),
        services: servicesContext(args.nic, args.network, peerIpv6),
        forward: forwardContext(args.nic, args.network, routes.table, limiter),
        drops: new DropCounters(),
        routeDrops: {},
        raSent: 0,
        raDue: Date.now(),
        // The loop sleeps in native code, where a timer would not fire: it runs them itself.
        reclaim: new Reclaimer({ timer: false }),
        routes,
        peerIpv6,
        tunLink: args.topology.tun,
        tun: tunOf(args.topology.tun),
        secgroups: new SecurityFilter(),
        fast: new FastTable(),
        fastForwarded: 0,
        fastDirect: 0,
        fastOneCopy: 0,
      };
      updateFastPath(state);
      applySecurityGroups(state, ctx);
      if (device.connected) ctx.log.info("adopted a connected device", { handle: device.handle });
      state.loop = runLoop(state, ctx);
      return state;
    },
    handle(state, msg, ctx) {
      switch (msg.type) {
        case "NicChanged":
          state.nic = msg.nic;
          refresh(state);
          applySecurityGroups(state, ctx);
          return;
        case "NetworkChanged":
          state.network = msg.network;
          refresh(state);
          return;
        case "TopologyChanged": {
          const gone = droppedPeers(state.routes, msg.topology);
          const fresh = routeTable(msg.topology, state.nic.id);
          state.routes = fresh.routes;
          state.peerIpv6 = fresh.peerIpv6;
          state.tunLink = msg.topology.tun;
          refresh(state);
          if (gone) state.reclaim.request();
          return;
        }
        case "TopologyDelta":
          if (applyDelta(state, msg.delta)) state.reclaim.request();
          refresh(state);
          return;
        case "GetCounters": {
          const counters: NicCounters = { ...state.device.counters() };
          for (const [k, v] of Object.entries(state.drops.counts)) {
            if (v) counters[`service_drop_${k}`] = v;
          }
          for (const [k, v] of Object.entries(state.routeDrops)) counters[`route_drop_${k}`] = v;
          Object.assign(counters, state.secgroups.counters());
          counters.route_fast_forwarded = state.fastForwarded;
          counters.route_fast_direct = state.fastDirect;
          counters.route_fast_one_copy = state.fastOneCopy;
          return counters;
        }
        case "InjectFault":
          faultInjection(ctx.name, msg.reason);
          return;
      }
    },
    async terminate(state, ctx) {
      state.stop = true;
      state.device.wake();
      await state.loop;
      state.device.close();
      ctx.emit({ type: "DeviceClosed" } satisfies VnicEvent);
    },
  });
}
