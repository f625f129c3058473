/**
 * The L3 forwarding decision for one frame a guest sent that is not for the gateway's own
 * services: pure, no I/O, and no allocation on the path that delivers to another vNIC.
 *
 * Checks in order: the frame is IPv4 or IPv6 and well formed; the source address is the vNIC's
 * own or inside one of its routed prefixes (anti-spoofing); the packet fits the network's MTU;
 * its TTL or hop limit allows another hop. Then the destination is looked up (longest prefix):
 * a vNIC of this network gets the frame with its MACs rewritten and the TTL decremented in
 * place; a public network sends what no vNIC holds to the TUN device; a private network answers
 * Destination Unreachable. ICMP errors go back to the sender, rate-limited per vNIC.
 * @module
 */

import {
  bytesEqual,
  type Cidr,
  cidrContains,
  isIpv6LinkLocal,
  isIpv6Multicast,
  MAC_LEN,
  type MacAddr,
} from "../wire/addr.ts";
import { ETHERNET_HEADER_LEN, ETHERTYPE_IPV4, ETHERTYPE_IPV6 } from "../wire/ethernet.ts";
import { emitIpv4Packet, IP_PROTO_ICMP, IPV4_HEADER_LEN, Ipv4Packet } from "../wire/ipv4.ts";
import { emitIpv6Packet, IP_PROTO_ICMPV6, IPV6_HEADER_LEN, Ipv6Packet } from "../wire/ipv6.ts";
import { emitIcmpv4, ICMPV4_DEST_UNREACHABLE, ICMPV4_TIME_EXCEEDED } from "../wire/icmpv4.ts";
import { emitIcmpv6 } from "../wire/icmpv6.ts";
import { read16, write16 } from "../wire/bytes.ts";
import { WireError } from "../wire/error.ts";
import type { RouteTable } from "./table.ts";
import { gsoSegmentIpLen, gsoSize, NO_OFFLOAD } from "./offload.ts";
import { GATEWAY_IPV4, GATEWAY_IPV6 } from "../services/context.ts";

const ETHERTYPE_OFF = 12;
const IPV4_TTL_OFF = 8;
const IPV4_CHECKSUM_OFF = 10;
const IPV4_SRC_OFF = 12;
const IPV6_HOP_LIMIT_OFF = 7;
/** TTL and hop limit given to the ICMP errors we originate. */
const ICMP_ERROR_TTL = 64;
/** RFC 1812 4.3.2.3: quote as much of the original as fits a 576-byte IPv4 datagram. */
const ICMPV4_ERROR_MAX = 576;
/** RFC 4443 2.4(c): an ICMPv6 error must not exceed the minimum IPv6 MTU. */
const ICMPV6_ERROR_MAX = 1280;
const ICMPV4_CODE_HOST_UNREACHABLE = 1;
const ICMPV4_CODE_FRAG_NEEDED = 4;
const ICMPV4_CODE_TTL_EXCEEDED = 0;
const ICMPV6_CODE_ADDRESS_UNREACHABLE = 3;
const ICMPV6_CODE_HOP_LIMIT_EXCEEDED = 0;
/** ICMPv4 types that are errors (RFC 1122 3.2.2: never answer an error with an error). */
const ICMPV4_ERROR_TYPES = new Set([3, 4, 5, 11, 12]);
/** ICMPv6 types below 128 are errors (RFC 4443 2.1). */
const ICMPV6_FIRST_INFO_TYPE = 128;

/** Where a destination vNIC is: enough to rewrite the frame for it. */
export interface NicRoute {
  id: string;
  mac: MacAddr;
}

/** The vNIC that sent the frame. */
export interface SourceNic {
  id: string;
  mac: MacAddr;
  ipv4: Uint8Array | null;
  ipv6: Uint8Array | null;
  /** Routed prefixes of both families; sources inside them are the vNIC's own. */
  routed: Cidr[];
}

/** A token bucket; `take` is given the time so that the module stays pure. */
export class RateLimiter {
  #tokens: number;
  #last = 0;

  /** `ratePerSec` tokens per second, at most `burst` saved up. */
  constructor(readonly ratePerSec: number, readonly burst: number) {
    this.#tokens = burst;
  }

  /** Takes one token if there is one. `nowMs` must not go backwards. */
  take(nowMs: number): boolean {
    this.#tokens = Math.min(
      this.burst,
      this.#tokens + ((nowMs - this.#last) * this.ratePerSec) / 1000,
    );
    this.#last = nowMs;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
}

/** What forwarding needs to know. */
export interface ForwardContext {
  nic: SourceNic;
  gatewayMac: MacAddr;
  isPublic: boolean;
  /** Largest IP packet (the network's MTU). */
  mtu: number;
  routes: RouteTable<NicRoute>;
  icmpErrors: RateLimiter;
  nowMs: number;
}

/** Why a frame was dropped; each is a counter. */
export type DropReason =
  | "not_ip"
  | "malformed_ipv4"
  | "malformed_ipv6"
  | "spoofed_source"
  | "link_local_source"
  | "multicast_destination"
  | "ttl_exceeded"
  | "too_big"
  | "no_route"
  | "icmp_rate_limited";

/** The outcome for one frame. */
export type Verdict =
  /** Deliver the frame (rewritten in place) to the vNIC `to`. */
  | { kind: "deliver"; to: NicRoute }
  /** Send this IP packet (a view into the frame, TTL decremented) to the TUN device. */
  | { kind: "tun"; packet: Uint8Array }
  /** Drop the frame; send `reply` (an ICMP error) back to the sender if there is one. */
  | { kind: "drop"; reason: DropReason; reply?: Uint8Array };

/**
 * Decides what happens to `frame`, a whole Ethernet frame from `ctx.nic` with its offload
 * metadata `meta` (`routing/offload.ts`; none: a plain frame). May rewrite it. A GSO frame
 * passes the MTU check when the segments it stands for fit (headers plus gso_size); its
 * partial checksum is unaffected by the TTL or hop limit, which no pseudo-header covers.
 */
export function forward(
  ctx: ForwardContext,
  frame: Uint8Array,
  meta: Uint8Array = NO_OFFLOAD,
): Verdict {
  if (frame.length < ETHERNET_HEADER_LEN) return { kind: "drop", reason: "not_ip" };
  const ethertype = read16(frame, ETHERTYPE_OFF);
  const ip = frame.subarray(ETHERNET_HEADER_LEN);
  if (ethertype === ETHERTYPE_IPV4) return forwardIpv4(ctx, frame, ip, meta);
  if (ethertype === ETHERTYPE_IPV6) return forwardIpv6(ctx, frame, ip, meta);
  return { kind: "drop", reason: "not_ip" };
}

/** The size of the largest IP packet `frame` puts on a link: itself, or its GSO segments. */
function wireIpLen(frame: Uint8Array, meta: Uint8Array, ipLen: number): number {
  if (gsoSize(meta) === 0) return ipLen;
  // A GSO frame the offload check has not refused; a malformed one is measured as it is.
  return gsoSegmentIpLen(meta, frame) ?? ipLen;
}

/** True when the bytes of `buf` at `off` are `addr`, without a view. */
function equalAt(buf: Uint8Array, off: number, addr: Uint8Array): boolean {
  for (let i = 0; i < addr.length; i++) if (buf[off + i] !== addr[i]) return false;
  return true;
}

function ownsSource(nic: SourceNic, own: Uint8Array | null, src: Uint8Array): boolean {
  if (own && bytesEqual(own, src)) return true;
  for (const c of nic.routed) if (cidrContains(c, src)) return true;
  return false;
}

function forwardIpv4(
  ctx: ForwardContext,
  frame: Uint8Array,
  ip: Uint8Array,
  meta: Uint8Array,
): Verdict {
  const p = Ipv4Packet.checked(ip);
  if (p instanceof WireError) return { kind: "drop", reason: "malformed_ipv4" };
  // The vNIC's own address is compared in place (every frame); other sources need the view.
  const own = ctx.nic.ipv4 !== null && equalAt(ip, IPV4_SRC_OFF, ctx.nic.ipv4);
  if (!own && !ownsSource(ctx.nic, null, p.src)) return { kind: "drop", reason: "spoofed_source" };
  const dst = p.dst;
  if (dst[0] >= 224) return { kind: "drop", reason: "multicast_destination" };
  if (wireIpLen(frame, meta, p.totalLen) > ctx.mtu) {
    return icmpv4Error(
      ctx,
      frame,
      p,
      "too_big",
      ICMPV4_DEST_UNREACHABLE,
      ICMPV4_CODE_FRAG_NEEDED,
      ctx.mtu,
    );
  }
  if (p.ttl <= 1) {
    return icmpv4Error(
      ctx,
      frame,
      p,
      "ttl_exceeded",
      ICMPV4_TIME_EXCEEDED,
      ICMPV4_CODE_TTL_EXCEEDED,
      0,
    );
  }
  const to = ctx.routes.lookup(dst);
  if (to) {
    decrementTtl(ip);
    rewriteMacs(frame, to.mac, ctx.gatewayMac);
    return { kind: "deliver", to };
  }
  if (ctx.isPublic) {
    decrementTtl(ip);
    return { kind: "tun", packet: ip.subarray(0, p.totalLen) };
  }
  return icmpv4Error(
    ctx,
    frame,
    p,
    "no_route",
    ICMPV4_DEST_UNREACHABLE,
    ICMPV4_CODE_HOST_UNREACHABLE,
    0,
  );
}

function forwardIpv6(
  ctx: ForwardContext,
  frame: Uint8Array,
  ip: Uint8Array,
  meta: Uint8Array,
): Verdict {
  const p = Ipv6Packet.checked(ip);
  if (p instanceof WireError) return { kind: "drop", reason: "malformed_ipv6" };
  const src = p.src;
  // RFC 4291 2.5.6: a router must not forward packets with a link-local source.
  if (isIpv6LinkLocal(src)) return { kind: "drop", reason: "link_local_source" };
  if (!ownsSource(ctx.nic, ctx.nic.ipv6, src)) return { kind: "drop", reason: "spoofed_source" };
  if (isIpv6Multicast(p.dst)) return { kind: "drop", reason: "multicast_destination" };
  const total = IPV6_HEADER_LEN + p.payloadLen;
  if (wireIpLen(frame, meta, total) > ctx.mtu) {
    return icmpv6Error(ctx, frame, p, "too_big", { kind: "packet_too_big", mtu: ctx.mtu });
  }
  if (p.hopLimit <= 1) {
    return icmpv6Error(ctx, frame, p, "ttl_exceeded", {
      kind: "time_exceeded",
      code: ICMPV6_CODE_HOP_LIMIT_EXCEEDED,
    });
  }
  const to = ctx.routes.lookup(p.dst);
  if (to) {
    ip[IPV6_HOP_LIMIT_OFF] -= 1;
    rewriteMacs(frame, to.mac, ctx.gatewayMac);
    return { kind: "deliver", to };
  }
  if (ctx.isPublic) {
    ip[IPV6_HOP_LIMIT_OFF] -= 1;
    return { kind: "tun", packet: ip.subarray(0, total) };
  }
  return icmpv6Error(ctx, frame, p, "no_route", {
    kind: "dest_unreachable",
    code: ICMPV6_CODE_ADDRESS_UNREACHABLE,
  });
}

/** Decrements the IPv4 TTL and patches the header checksum (RFC 1624, equation 3). */
export function decrementTtl(ip: Uint8Array): void {
  const oldWord = read16(ip, IPV4_TTL_OFF);
  ip[IPV4_TTL_OFF] -= 1;
  const newWord = read16(ip, IPV4_TTL_OFF);
  let sum = (~read16(ip, IPV4_CHECKSUM_OFF) & 0xffff) + (~oldWord & 0xffff) + newWord;
  sum = (sum & 0xffff) + (sum >>> 16);
  sum = (sum & 0xffff) + (sum >>> 16);
  write16(ip, IPV4_CHECKSUM_OFF, ~sum & 0xffff);
}

function rewriteMacs(frame: Uint8Array, dst: MacAddr, src: MacAddr): void {
  // Six bytes each: a loop is cheaper than set() on every frame.
  for (let i = 0; i < MAC_LEN; i++) {
    frame[i] = dst[i];
    frame[MAC_LEN + i] = src[i];
  }
}

function isIcmpv4Error(p: Ipv4Packet): boolean {
  if (p.protocol !== IP_PROTO_ICMP || p.fragmentOffset !== 0) return false;
  const payload = p.payload;
  return payload.length > 0 && ICMPV4_ERROR_TYPES.has(payload[0]);
}

function isIcmpv6Error(p: Ipv6Packet): boolean {
  if (p.nextHeader !== IP_PROTO_ICMPV6) return false;
  const payload = p.payload;
  return payload.length > 0 && payload[0] < ICMPV6_FIRST_INFO_TYPE;
}

/** An Ethernet frame from the gateway to the sender of `frame`. */
function ethernetReply(
  frame: Uint8Array,
  gatewayMac: MacAddr,
  ethertype: number,
  ip: Uint8Array,
): Uint8Array {
  const out = new Uint8Array(ETHERNET_HEADER_LEN + ip.length);
  out.set(frame.subarray(MAC_LEN, 2 * MAC_LEN), 0);
  out.set(gatewayMac, MAC_LEN);
  write16(out, ETHERTYPE_OFF, ethertype);
  out.set(ip, ETHERNET_HEADER_LEN);
  return out;
}

function icmpv4Error(
  ctx: ForwardContext,
  frame: Uint8Array,
  p: Ipv4Packet,
  reason: DropReason,
  type: number,
  code: number,
  nextHopMtu: number,
): Verdict {
  if (isIcmpv4Error(p)) return { kind: "drop", reason };
  if (!ctx.icmpErrors.take(ctx.nowMs)) return { kind: "drop", reason };
  const quoteMax = ICMPV4_ERROR_MAX - IPV4_HEADER_LEN - 8;
  const data = p.buffer.subarray(0, Math.min(p.totalLen, quoteMax));
  const icmp = type === ICMPV4_DEST_UNREACHABLE
    ? emitIcmpv4({ kind: "dest_unreachable", code, nextHopMtu, data })
    : emitIcmpv4({ kind: "time_exceeded", code, data });
  // The quote is capped above, so the payload is far below the emitter's limit: no error.
  const ip = emitIpv4Packet({
    tos: 0,
    identification: 0,
    dontFragment: false,
    moreFragments: false,
    fragmentOffset: 0,
    ttl: ICMP_ERROR_TTL,
    protocol: IP_PROTO_ICMP,
    src: GATEWAY_IPV4,
    dst: p.src.slice(),
    payload: icmp,
  }) as Uint8Array;
  return { kind: "drop", reason, reply: ethernetReply(frame, ctx.gatewayMac, ETHERTYPE_IPV4, ip) };
}

function icmpv6Error(
  ctx: ForwardContext,
  frame: Uint8Array,
  p: Ipv6Packet,
  reason: DropReason,
  body:
    | { kind: "packet_too_big"; mtu: number }
    | { kind: "time_exceeded" | "dest_unreachable"; code: number },
): Verdict {
  if (isIcmpv6Error(p)) return { kind: "drop", reason };
  if (!ctx.icmpErrors.take(ctx.nowMs)) return { kind: "drop", reason };
  const quoteMax = ICMPV6_ERROR_MAX - IPV6_HEADER_LEN - 8;
  const data = p.buffer.subarray(0, Math.min(IPV6_HEADER_LEN + p.payloadLen, quoteMax));
  const icmp = emitIcmpv6({ ...body, data }, GATEWAY_IPV6, p.src);
  // The quote is capped at the IPv6 minimum MTU: no error.
  const ip = emitIpv6Packet({
    trafficClass: 0,
    flowLabel: 0,
    nextHeader: IP_PROTO_ICMPV6,
    hopLimit: ICMP_ERROR_TTL,
    src: GATEWAY_IPV6,
    dst: p.src.slice(),
    payload: icmp,
  }) as Uint8Array;
  return { kind: "drop", reason, reply: ethernetReply(frame, ctx.gatewayMac, ETHERTYPE_IPV6, ip) };
}
