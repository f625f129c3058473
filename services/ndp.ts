/**
 * Neighbor Discovery from the guest: router solicitations get an RA, neighbor solicitations
 * for fe80::1 or for another vNIC's address get a neighbor advertisement from the gateway
 * MAC, so that every packet to those addresses reaches the gateway, which routes it.
 * Validation follows RFC 4861 sections 6.1.1 and 7.1.1.
 * @module
 */

import {
  bytesEqual,
  cidrContains,
  emitIcmpv6,
  formatIpv6,
  IPV6_ALL_NODES,
  ipv6MulticastMac,
  type Ipv6Repr,
  isIpv6Multicast,
  isIpv6Unspecified,
  NDP_HOP_LIMIT,
  type NeighborSolicitRepr,
  type RouterSolicitRepr,
  solicitedNodeMulticast,
} from "../wire/mod.ts";
import { GATEWAY_IPV6, type Verdict, type VnicContext } from "./context.ts";
import { icmpv6Frame } from "./frames.ts";
import { buildRouterAdvert } from "./router_advert.ts";
import { drop, reply } from "./verdict.ts";

/** Answers a router solicitation with an RA, unicast to the solicitor when it has an address. */
export function answerRouterSolicit(
  ctx: VnicContext,
  ip: Ipv6Repr,
  rs: RouterSolicitRepr,
): Verdict {
  if (ip.hopLimit !== NDP_HOP_LIMIT) return drop("ndp_bad_hop_limit");
  const unspecified = isIpv6Unspecified(ip.src);
  if (unspecified && rs.options.sourceLinkAddr) return drop("ndp_invalid");
  if (unspecified) {
    return reply(buildRouterAdvert(ctx, IPV6_ALL_NODES, ipv6MulticastMac(IPV6_ALL_NODES)));
  }
  return reply(buildRouterAdvert(ctx, ip.src, ctx.mac));
}

/** True when the gateway answers for `target`: fe80::1 or another vNIC's address. */
function servesTarget(ctx: VnicContext, target: Uint8Array): boolean {
  if (bytesEqual(target, GATEWAY_IPV6)) return true;
  if (bytesEqual(target, ctx.ipv6) || !cidrContains(ctx.ipv6Prefix, target)) return false;
  return ctx.peerIpv6.has(formatIpv6(target));
}

/**
 * Answers a neighbor solicitation. Duplicate address detection (source ::) gets an
 * unsolicited advertisement to all nodes, which makes the guest give up an address that
 * belongs to the gateway or to another vNIC.
 */
export function answerNeighborSolicit(
  ctx: VnicContext,
  ip: Ipv6Repr,
  ns: NeighborSolicitRepr,
): Verdict {
  if (ip.hopLimit !== NDP_HOP_LIMIT) return drop("ndp_bad_hop_limit");
  if (isIpv6Multicast(ns.target)) return drop("ndp_invalid");
  const dad = isIpv6Unspecified(ip.src);
  if (
    dad && (ns.options.sourceLinkAddr || !bytesEqual(ip.dst, solicitedNodeMulticast(ns.target)))
  ) {
    return drop("ndp_invalid");
  }
  if (!servesTarget(ctx, ns.target)) return drop("ndp_target_not_served");
  const dst = dad ? IPV6_ALL_NODES : ip.src;
  const dstMac = dad ? ipv6MulticastMac(IPV6_ALL_NODES) : ctx.mac;
  const na = emitIcmpv6(
    {
      kind: "neighbor_advert",
      router: true,
      solicited: !dad,
      override: true,
      target: ns.target,
      options: { targetLinkAddr: ctx.gatewayMac },
    },
    GATEWAY_IPV6,
    dst,
  );
  return reply(icmpv6Frame(ctx.gatewayMac, dstMac, GATEWAY_IPV6, dst, NDP_HOP_LIMIT, na));
}
