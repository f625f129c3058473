/**
 * Echo replies from the gateway's addresses (ping 169.254.0.1, ping fe80::1).
 * @module
 */

import {
  bytesEqual,
  emitIcmpv4,
  emitIcmpv6,
  IP_PROTO_ICMP,
  IPV4_BROADCAST,
  IPV4_UNSPECIFIED,
  type Ipv4Repr,
  type Ipv6Repr,
  isIpv6Multicast,
  isIpv6Unspecified,
  parseIcmpv4,
  WireError,
} from "../wire/mod.ts";
import type { Icmpv6Echo } from "../wire/mod.ts";
import { GATEWAY_IPV4, GATEWAY_IPV6, type Verdict, type VnicContext } from "./context.ts";
import { GATEWAY_TTL, icmpv6Frame, ipv4Frame } from "./frames.ts";
import { drop, reply } from "./verdict.ts";

/** Answers an ICMPv4 message addressed to 169.254.0.1. */
export function answerIcmpv4(ctx: VnicContext, ip: Ipv4Repr): Verdict {
  const icmp = parseIcmpv4(ip.payload);
  if (icmp instanceof WireError) return drop("icmpv4_malformed");
  if (icmp.kind !== "echo_request") return drop("icmpv4_not_echo_request");
  // A reply to 0.0.0.0 or the broadcast address would be meaningless or a reflection.
  if (bytesEqual(ip.src, IPV4_UNSPECIFIED) || bytesEqual(ip.src, IPV4_BROADCAST)) {
    return drop("icmp_echo_bad_source");
  }
  const answer = emitIcmpv4({
    kind: "echo_reply",
    ident: icmp.ident,
    seq: icmp.seq,
    data: icmp.data,
  });
  return reply(ipv4Frame(ctx.gatewayMac, ctx.mac, GATEWAY_IPV4, ip.src, IP_PROTO_ICMP, answer));
}

/** Answers an ICMPv6 echo request addressed to fe80::1. */
export function answerEcho6(
  ctx: VnicContext,
  ip: Ipv6Repr,
  icmp: Icmpv6Echo,
): Verdict {
  if (isIpv6Unspecified(ip.src) || isIpv6Multicast(ip.src)) return drop("icmp_echo_bad_source");
  const answer = emitIcmpv6(
    { kind: "echo_reply", ident: icmp.ident, seq: icmp.seq, data: icmp.data },
    GATEWAY_IPV6,
    ip.src,
  );
  return reply(icmpv6Frame(ctx.gatewayMac, ctx.mac, GATEWAY_IPV6, ip.src, GATEWAY_TTL, answer));
}

/** True when `ip` is addressed to the gateway's IPv6 address. */
export function isToGateway6(ip: Ipv6Repr): boolean {
  return bytesEqual(ip.dst, GATEWAY_IPV6);
}
