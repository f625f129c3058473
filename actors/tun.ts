/**
 * The TUN actor: one Worker owning the TUN device of all public networks.
 *
 * From the kernel: IP packets read from the device are routed (longest prefix over the routes
 * of every public network) to the vNIC that holds the destination, wrapped in an Ethernet
 * header from the gateway, pushed into that vNIC's inbound ring, and the vNIC is notified. To
 * the kernel: vNICs of public networks push IP packets without a local destination into this
 * actor's inbound ring and signal its wake eventfd; the actor writes them to the device. The
 * device is opened without IFF_VNET_HDR: what reaches this ring is complete, MTU-sized packets,
 * because the sending vNIC completes partial checksums and cuts GSO frames first
 * (`routing/offload.ts` `pushToTun`, docs/offloads.md). Packets from the kernel are complete
 * too and travel to the vNICs without offload metadata.
 * Every `reconcileMs` the kernel routes of the public networks' prefixes are repaired.
 * @module
 */

import { cString, native } from "../ffi/binding.ts";
import { type ActorContext, runActor, yieldToMailbox } from "./worker_runtime.ts";
import { faultInjection } from "./network.ts";
import { KernelRoutes, type RoutePlan } from "./tun_routes.ts";
import { buildTable, type RouteEntry } from "../routing/routes.ts";
import { decrementTtl } from "../routing/forward.ts";
import { FrameRing } from "../routing/ring.ts";
import type { RouteTable } from "../routing/table.ts";
import { GATEWAY_MAC } from "../services/context.ts";
import { parseMac } from "../wire/addr.ts";
import { WireError } from "../wire/error.ts";
import { ETHERNET_HEADER_LEN, ETHERTYPE_IPV4, ETHERTYPE_IPV6 } from "../wire/ethernet.ts";
import { Ipv4Packet } from "../wire/ipv4.ts";
import { Ipv6Packet } from "../wire/ipv6.ts";
import { VhostNetDevice } from "../vhost/device.ts";
import { reclaimDroppedBuffers } from "./reclaim.ts";

/** A vNIC of a public network as the TUN actor delivers to it. */
export interface TunPeer {
  id: string;
  mac: string;
  handle: number | null;
  ring: SharedArrayBuffer;
}

/** What the TUN actor routes: the routes and vNICs of every public network. */
export interface TunTopology {
  routes: RouteEntry[];
  peers: TunPeer[];
  /** Subnets and prefixes of the public networks: the kernel routes to the device. */
  prefixes: string[];
}

/** Messages the TUN actor accepts. */
export type TunMsg =
  | { type: "TopologyChanged"; topology: TunTopology }
  | { type: "ReconcileNow" }
  | { type: "GetCounters" }
  | { type: "InjectFault"; reason: string };

/** Arguments of the TUN actor's start. */
export interface TunArgs {
  name: string;
  /** Inbound ring of IP packets from the vNICs (owned by the fleet, kept across restarts). */
  ring: SharedArrayBuffer;
  /** The eventfd that wakes this actor (the fleet owns it). */
  wakeFd: number;
  topology: TunTopology;
  reconcileMs: number;
  /** The device fd of a previous incarnation of this actor, to adopt. */
  adoptFd: number | null;
}

/** What the TUN actor reports: its device fd, so that a restarted actor adopts it. */
export type TunEvent = { type: "TunOpened"; fd: number } | { type: "TunClosed" };

const POLL_TIMEOUT_MS = 100;
const BURST = 64;
const MAX_PACKET = 65535;
const READABLE = 1;

interface PeerTarget {
  mac: Uint8Array;
  handle: number | null;
  ring: FrameRing;
}

interface TunState {
  fd: number;
  wakeFd: number;
  ring: FrameRing;
  routes: RouteTable<PeerTarget>;
  /** The vNICs of the last topology, to notice those that left. */
  peerIds: string[];
  prefixes: string[];
  kernel: KernelRoutes;
  counters: Record<string, number>;
  stop: boolean;
  loop: Promise<void>;
  reconcileTimer: ReturnType<typeof setInterval>;
}

function bump(state: TunState, name: string, n = 1): void {
  state.counters[name] = (state.counters[name] ?? 0) + n;
}

function table(topology: TunTopology): RouteTable<PeerTarget> {
  const peers = new Map<string, PeerTarget>();
  for (const p of topology.peers) {
    const mac = parseMac(p.mac);
    if (mac instanceof WireError) continue;
    peers.set(p.id, { mac, handle: p.handle, ring: new FrameRing(p.ring) });
  }
  return buildTable(topology.routes, (id) => peers.get(id));
}

/** Routes one packet from the kernel to the vNIC holding its destination. */
function toVnic(state: TunState, packet: Uint8Array, frame: Uint8Array, wake: Set<number>): void {
  const version = packet.length > 0 ? packet[0] >> 4 : 0;
  let dst: Uint8Array;
  let ethertype: number;
  if (version === 4) {
    const p = Ipv4Packet.checked(packet);
    if (p instanceof WireError) return bump(state, "from_kernel_malformed");
    if (p.ttl <= 1) return bump(state, "from_kernel_ttl_exceeded");
    decrementTtl(packet);
    dst = p.dst;
    ethertype = ETHERTYPE_IPV4;
  } else if (version === 6) {
    const p = Ipv6Packet.checked(packet);
    if (p instanceof WireError) return bump(state, "from_kernel_malformed");
    if (p.hopLimit <= 1) return bump(state, "from_kernel_ttl_exceeded");
    packet[7] -= 1;
    dst = p.dst;
    ethertype = ETHERTYPE_IPV6;
  } else {
    return bump(state, "from_kernel_not_ip");
  }
  const to = state.routes.lookup(dst);
  if (!to) return bump(state, "from_kernel_no_route");
  if (to.handle === null) return bump(state, "from_kernel_peer_down");
  const len = ETHERNET_HEADER_LEN + packet.length;
  if (len > frame.length) return bump(state, "from_kernel_too_big");
  frame.set(to.mac, 0);
  frame.set(GATEWAY_MAC, 6);
  frame[12] = ethertype >> 8;
  frame[13] = ethertype & 0xff;
  frame.set(packet, ETHERNET_HEADER_LEN);
  if (!to.ring.push(frame.subarray(0, len))) return bump(state, "from_kernel_ring_full");
  bump(state, "from_kernel_packets");
  wake.add(to.handle);
}

async function runLoop(state: TunState, ctx: ActorContext): Promise<void> {
  const lib = native();
  const buf = new Uint8Array(BURST * (MAX_PACKET + 4));
  const view = new DataView(buf.buffer);
  const frame = new Uint8Array(ETHERNET_HEADER_LEN + MAX_PACKET);
  const wake = new Set<number>();
  while (!state.stop && !ctx.stopping) {
    const ready = lib.mvn_tun_wait(state.fd, state.wakeFd, POLL_TIMEOUT_MS);
    if (ready < 0) throw new Error(`waiting on the TUN device failed: errno ${-ready}`);
    if (ready & READABLE) {
      const n = lib.mvn_tun_read_burst(state.fd, buf, buf.length, BURST);
      let off = 0;
      for (let i = 0; i < n; i++) {
        const len = view.getUint32(off, true);
        toVnic(state, buf.subarray(off + 4, off + 4 + len), frame, wake);
        off += 4 + len;
      }
      for (const h of wake) VhostNetDevice.notify(h);
      wake.clear();
    }
    state.ring.drain(BURST, (packet) => {
      const w = lib.mvn_tun_write(state.fd, packet, packet.length);
      bump(state, w < 0 ? "to_kernel_write_failed" : "to_kernel_packets");
    });
    await yieldToMailbox();
  }
}

async function reconcile(state: TunState, ctx: ActorContext): Promise<RoutePlan | null> {
  try {
    const plan = await state.kernel.reconcile(state.prefixes);
    if (plan.add.length || plan.remove.length) ctx.log.info("kernel routes repaired", { ...plan });
    return plan;
  } catch (e) {
    ctx.log.warn("kernel route reconciliation failed", { error: e as Error });
    return null;
  }
}

if (import.meta.main) {
  runActor<TunMsg, TunState, TunArgs>({
    async init(args, ctx) {
      const fd = args.adoptFd ?? native().mvn_tun_open(cString(args.name));
      if (fd < 0) {
        throw new Error(`cannot open TUN device ${args.name}: errno ${-fd} (CAP_NET_ADMIN?)`);
      }
      ctx.emit({ type: "TunOpened", fd } satisfies TunEvent);
      const kernel = new KernelRoutes(args.name);
      const up = await new Deno.Command("ip", {
        args: ["link", "set", args.name, "up"],
        stderr: "piped",
      }).output();
      if (!up.success) {
        native().mvn_fd_close(fd);
        throw new Error(
          `ip link set ${args.name} up: ${new TextDecoder().decode(up.stderr).trim()}`,
        );
      }
      const state: TunState = {
        fd,
        wakeFd: args.wakeFd,
        ring: new FrameRing(args.ring),
        routes: table(args.topology),
        peerIds: args.topology.peers.map((p) => p.id),
        prefixes: args.topology.prefixes,
        kernel,
        counters: {},
        stop: false,
        loop: Promise.resolve(),
        reconcileTimer: setInterval(() => void reconcile(state, ctx), args.reconcileMs),
      };
      await reconcile(state, ctx);
      ctx.log.info("TUN device up", { device: args.name });
      state.loop = runLoop(state, ctx);
      return state;
    },
    async handle(state, msg, ctx) {
      switch (msg.type) {
        case "TopologyChanged":
          // Rebuilt from scratch: the rings of vNICs that left are no longer referenced.
          if (state.peerIds.some((id) => !msg.topology.peers.some((p) => p.id === id))) {
            reclaimDroppedBuffers();
          }
          state.peerIds = msg.topology.peers.map((p) => p.id);
          state.routes = table(msg.topology);
          state.prefixes = msg.topology.prefixes;
          await reconcile(state, ctx);
          return;
        case "ReconcileNow":
          return await reconcile(state, ctx);
        case "GetCounters":
          return { ...state.counters };
        case "InjectFault":
          faultInjection(ctx.name, msg.reason);
          return;
      }
    },
    async terminate(state, ctx) {
      state.stop = true;
      clearInterval(state.reconcileTimer);
      await state.loop;
      // A non-persistent TUN device, and the routes through it, vanish with its last fd.
      native().mvn_fd_close(state.fd);
      ctx.emit({ type: "TunClosed" } satisfies TunEvent);
    },
  });
}
