/**
 * The entry point: one frame from the guest in, a verdict out. Decides which gateway
 * service a frame is for, and otherwise whether the router should have it.
 * @module
 */

import {
  bytesEqual,
  DHCPV4_SERVER_PORT,
  DHCPV6_SERVER_PORT,
  EthernetFrame,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  ETHERTYPE_IPV6,
  ICMPV6_ECHO_REQUEST,
  ICMPV6_NEIGHBOR_ADVERT,
  ICMPV6_ROUTER_SOLICIT,
  IP_PROTO_ICMP,
  IP_PROTO_ICMPV6,
  IP_PROTO_UDP,
  IPV4_BROADCAST,
  Ipv4Packet,
  IPV6_ALL_DHCP_SERVERS,
  Ipv6Packet,
  isIpv6LinkLocal,
  isIpv6Multicast,
  MAC_LEN,
  type MacAddr,
  parseIcmpv6,
  parseIpv4Packet,
  parseIpv6Packet,
  parseUdp,
  WireError,
} from "../wire/mod.ts";
import { answerArp } from "./arp.ts";
import { GATEWAY_IPV4, GATEWAY_IPV6, type Verdict, type VnicContext } from "./context.ts";
import type { DropCounters } from "./counters.ts";
import { answerDhcpv4 } from "./dhcpv4.ts";
import { answerDhcpv6 } from "./dhcpv6.ts";
import { answerEcho6, answerIcmpv4, isToGateway6 } from "./echo.ts";
import { answerNeighborSolicit, answerRouterSolicit } from "./ndp.ts";
import { drop, ROUTE } from "./verdict.ts";

/** ICMPv6 redirect (RFC 4861 section 4.5): only routers send it, never a guest. */
const ICMPV6_REDIRECT = 137;

/**
 * Handles one Ethernet frame the guest of `ctx` sent. Drops are counted in `counters` under
 * their reason. Never throws: a fault in a handler is counted as `handler_fault`.
 *
 * @example
 * ```ts
 * const v = handleGuestFrame(ctx, frame, counters);
 * if (v.kind === "reply") for (const f of v.frames) sendToGuest(f);
 * else if (v.kind === "route") router.forward(frame);
 * ```
 */
export function handleGuestFrame(
  ctx: VnicContext,
  frame: Uint8Array,
  counters: DropCounters,
): Verdict {
  let v: Verdict;
  try {
    v = dispatch(ctx, frame);
  } catch {
    v = drop("handler_fault");
  }
  if (v.kind === "drop") counters.bump(v.reason);
  return v;
}

/** True when the frame's source MAC is `mac`: compared in place, as this runs for every frame. */
function isSourceMac(frame: Uint8Array, mac: MacAddr): boolean {
  for (let i = 0; i < MAC_LEN; i++) if (frame[MAC_LEN + i] !== mac[i]) return false;
  return true;
}

function dispatch(ctx: VnicContext, frame: Uint8Array): Verdict {
  const eth = EthernetFrame.checked(frame);
  if (eth instanceof WireError) return drop("eth_malformed");
  // The guest may speak only with the MAC it was given: anything else is spoofing.
  if (!isSourceMac(frame, ctx.mac)) return drop("eth_src_not_vnic");
  switch (eth.ethertype) {
    case ETHERTYPE_ARP:
      return answerArp(ctx, eth.payload);
    case ETHERTYPE_IPV4:
      return onIpv4(ctx, eth.payload);
    case ETHERTYPE_IPV6:
      return onIpv6(ctx, eth.payload);
    default:
      return drop("ethertype_unsupported");
  }
}

function onIpv4(ctx: VnicContext, bytes: Uint8Array): Verdict {
  // Most frames are for the router: they are classified on the checked view, without the
  // repr's copies of the addresses (measured: half the per-frame cost of a routed frame).
  const view = Ipv4Packet.checked(bytes);
  if (view instanceof WireError) return drop("ipv4_malformed");
  const dst = view.dst;
  const toGateway = bytesEqual(dst, GATEWAY_IPV4);
  const broadcast = bytesEqual(dst, IPV4_BROADCAST);
  if (!toGateway && !broadcast) return ROUTE;
  const ip = parseIpv4Packet(bytes);
  if (ip instanceof WireError) return drop("ipv4_malformed");
  if (ip.moreFragments || ip.fragmentOffset !== 0) return drop("ipv4_fragment_to_gateway");
  if (toGateway && ip.protocol === IP_PROTO_ICMP) return answerIcmpv4(ctx, ip);
  if (ip.protocol === IP_PROTO_UDP) {
    const udp = parseUdp(ip.payload, ip.src, ip.dst);
    if (udp instanceof WireError) return drop("udp_malformed");
    if (udp.dstPort === DHCPV4_SERVER_PORT) return answerDhcpv4(ctx, udp.payload);
  }
  return drop(broadcast ? "ipv4_broadcast_unhandled" : "ipv4_to_gateway_unhandled");
}

/** ND messages are answered wherever they are addressed (NUD probes are unicast to peers). */
function isNdp(icmpType: number): boolean {
  return icmpType >= ICMPV6_ROUTER_SOLICIT && icmpType <= ICMPV6_REDIRECT;
}

/** True for a packet no gateway service answers or refuses: the router's, as {@link onIpv6}
 * would decide after its full parse. */
function forRouter6(p: Ipv6Packet): boolean {
  const dst = p.dst;
  if (bytesEqual(dst, GATEWAY_IPV6) || isIpv6Multicast(dst) || isIpv6LinkLocal(dst)) return false;
  if (p.nextHeader !== IP_PROTO_ICMPV6) return true;
  const payload = p.payload;
  return payload.length === 0 || !isNdp(payload[0]);
}

function onIpv6(ctx: VnicContext, bytes: Uint8Array): Verdict {
  // As for IPv4: the router's frames are recognised on the checked view, without copies.
  const view = Ipv6Packet.checked(bytes);
  if (view instanceof WireError) return drop("ipv6_malformed");
  if (forRouter6(view)) return ROUTE;
  const ip = parseIpv6Packet(bytes);
  if (ip instanceof WireError) return drop("ipv6_malformed");
  const toGateway = isToGateway6(ip);
  if (ip.nextHeader === IP_PROTO_ICMPV6 && ip.payload.length > 0) {
    const icmpType = ip.payload[0];
    if (isNdp(icmpType) || (toGateway && icmpType === ICMPV6_ECHO_REQUEST)) {
      if (icmpType > ICMPV6_NEIGHBOR_ADVERT) return drop("ndp_unhandled_type");
      const icmp = parseIcmpv6(ip.payload, ip.src, ip.dst);
      if (icmp instanceof WireError) return drop("icmpv6_malformed");
      switch (icmp.kind) {
        case "router_solicit":
          return answerRouterSolicit(ctx, ip, icmp);
        case "neighbor_solicit":
          return answerNeighborSolicit(ctx, ip, icmp);
        case "echo_request":
          return answerEcho6(ctx, ip, icmp);
        default:
          // Advertisements from a guest: the gateway knows every vNIC's MAC already, and a
          // guest's RA must never reach anyone.
          return drop("ndp_unhandled_type");
      }
    }
  }
  if (ip.nextHeader === IP_PROTO_UDP && (toGateway || bytesEqual(ip.dst, IPV6_ALL_DHCP_SERVERS))) {
    const udp = parseUdp(ip.payload, ip.src, ip.dst);
    if (udp instanceof WireError) return drop("udp_malformed");
    if (udp.dstPort === DHCPV6_SERVER_PORT) return answerDhcpv6(ctx, ip, udp.payload);
  }
  if (toGateway) return drop("ipv6_to_gateway_unhandled");
  if (isIpv6Multicast(ip.dst)) return drop("ipv6_multicast_unhandled");
  if (isIpv6LinkLocal(ip.dst)) return drop("ipv6_link_local_not_gateway");
  return ROUTE;
}
