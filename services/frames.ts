/**
 * Builds the complete Ethernet frames the gateway sends to a guest. Every frame comes from
 * the gateway MAC; emit errors (a payload too large for its length field) surface as
 * `WireError` so that the handler can drop instead of sending a corrupt frame.
 * @module
 */

import {
  emitEthernet,
  emitIpv4Packet,
  emitIpv6Packet,
  emitUdp,
  ETHERTYPE_IPV4,
  ETHERTYPE_IPV6,
  IP_PROTO_ICMPV6,
  IP_PROTO_UDP,
  type Ipv4Addr,
  type Ipv6Addr,
  type MacAddr,
  WireError,
} from "../wire/mod.ts";

/** TTL / hop limit of packets the gateway originates (other than ND's 255). */
export const GATEWAY_TTL = 64;

/** An IPv4 packet around `payload` inside an Ethernet frame. */
export function ipv4Frame(
  srcMac: MacAddr,
  dstMac: MacAddr,
  src: Ipv4Addr,
  dst: Ipv4Addr,
  protocol: number,
  payload: Uint8Array,
): Uint8Array | WireError {
  const ip = emitIpv4Packet({
    tos: 0,
    identification: 0,
    dontFragment: true,
    moreFragments: false,
    fragmentOffset: 0,
    ttl: GATEWAY_TTL,
    protocol,
    src,
    dst,
    payload,
  });
  if (ip instanceof WireError) return ip;
  return emitEthernet({ dst: dstMac, src: srcMac, ethertype: ETHERTYPE_IPV4, payload: ip });
}

/** A UDP datagram in IPv4 in Ethernet. */
export function ipv4UdpFrame(
  srcMac: MacAddr,
  dstMac: MacAddr,
  src: Ipv4Addr,
  dst: Ipv4Addr,
  srcPort: number,
  dstPort: number,
  payload: Uint8Array,
): Uint8Array | WireError {
  const udp = emitUdp({ srcPort, dstPort, payload }, src, dst);
  if (udp instanceof WireError) return udp;
  return ipv4Frame(srcMac, dstMac, src, dst, IP_PROTO_UDP, udp);
}

/** An IPv6 packet around `payload` inside an Ethernet frame. */
export function ipv6Frame(
  srcMac: MacAddr,
  dstMac: MacAddr,
  src: Ipv6Addr,
  dst: Ipv6Addr,
  nextHeader: number,
  hopLimit: number,
  payload: Uint8Array,
): Uint8Array | WireError {
  const ip = emitIpv6Packet({
    trafficClass: 0,
    flowLabel: 0,
    nextHeader,
    hopLimit,
    src,
    dst,
    payload,
  });
  if (ip instanceof WireError) return ip;
  return emitEthernet({ dst: dstMac, src: srcMac, ethertype: ETHERTYPE_IPV6, payload: ip });
}

/** An ICMPv6 message (already emitted, checksum included) in IPv6 in Ethernet. */
export function icmpv6Frame(
  srcMac: MacAddr,
  dstMac: MacAddr,
  src: Ipv6Addr,
  dst: Ipv6Addr,
  hopLimit: number,
  icmp: Uint8Array,
): Uint8Array | WireError {
  return ipv6Frame(srcMac, dstMac, src, dst, IP_PROTO_ICMPV6, hopLimit, icmp);
}
