/**
 * Frame builders for the security-group tests: Ethernet + IPv4/IPv6 + TCP, UDP, ICMP echo and
 * ICMP errors. L4 checksums are left zero: the filter must not look at them.
 * @module
 */

import type { DesiredRule, RuleDirectionName, RuleProtocolName } from "../../daemon/protocol.ts";
import {
  emitEthernet,
  emitIpv4Packet,
  emitIpv6Packet,
  ETHERTYPE_IPV4,
  ETHERTYPE_IPV6,
  IP_PROTO_ICMP,
  IP_PROTO_ICMPV6,
  IP_PROTO_TCP,
  IP_PROTO_UDP,
  parseIpv4,
  parseIpv6,
  WireError,
} from "../../wire/mod.ts";

/** The guest's MAC: the source of egress frames, the destination of ingress ones. */
export const GUEST_MAC = new Uint8Array([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
/** The gateway's MAC, the other end of every frame. */
export const GW_MAC = new Uint8Array([0x02, 0x6d, 0x76, 0x00, 0x00, 0x01]);

/** TCP flag bits, written by the tests independently of the filter's own constants. */
export const TCP_FIN = 0x01;
/** SYN. */
export const TCP_SYN = 0x02;
/** RST. */
export const TCP_RST = 0x04;
/** ACK. */
export const TCP_ACK = 0x10;

function addr(text: string): Uint8Array {
  const a = text.includes(":") ? parseIpv6(text) : parseIpv4(text);
  if (a instanceof WireError) throw new Error(`test address ${text}: ${a}`);
  return a;
}

function ok(b: Uint8Array | WireError): Uint8Array {
  if (b instanceof WireError) throw new Error(String(b));
  return b;
}

/** Options of an IP packet. */
export interface IpOpts {
  /** IPv6 hop limit / IPv4 TTL. */
  ttl?: number;
  /** IPv4 fragment offset in 8-byte units. */
  fragmentOffset?: number;
}

/** An IP packet (no Ethernet header) from `src` to `dst`; the family follows the addresses. */
export function ipPacket(
  src: string,
  dst: string,
  proto: number,
  l4: Uint8Array,
  opts: IpOpts = {},
): Uint8Array {
  const s = addr(src);
  const d = addr(dst);
  if (s.length === 4) {
    return ok(emitIpv4Packet({
      tos: 0,
      identification: 1,
      dontFragment: false,
      moreFragments: false,
      fragmentOffset: opts.fragmentOffset ?? 0,
      ttl: opts.ttl ?? 64,
      protocol: proto,
      src: s,
      dst: d,
      payload: l4,
    }));
  }
  return ok(emitIpv6Packet({
    trafficClass: 0,
    flowLabel: 0,
    nextHeader: proto,
    hopLimit: opts.ttl ?? 64,
    src: s,
    dst: d,
    payload: l4,
  }));
}

/** Wraps an IP packet in Ethernet, guest to gateway for egress and the other way for ingress. */
export function eth(packet: Uint8Array, dir: "ingress" | "egress"): Uint8Array {
  const v6 = packet[0] >> 4 === 6;
  return emitEthernet({
    dst: dir === "egress" ? GW_MAC : GUEST_MAC,
    src: dir === "egress" ? GUEST_MAC : GW_MAC,
    ethertype: v6 ? ETHERTYPE_IPV6 : ETHERTYPE_IPV4,
    payload: packet,
  });
}

/** A TCP header with `flags` and `payload` bytes of data. */
export function tcpSegment(sport: number, dport: number, flags: number, payload = 0): Uint8Array {
  const out = new Uint8Array(20 + payload);
  new DataView(out.buffer).setUint16(0, sport);
  new DataView(out.buffer).setUint16(2, dport);
  out[12] = 5 << 4;
  out[13] = flags;
  return out;
}

/** A UDP header with `payload` bytes. */
export function udpDatagram(sport: number, dport: number, payload = 4): Uint8Array {
  const out = new Uint8Array(8 + payload);
  const v = new DataView(out.buffer);
  v.setUint16(0, sport);
  v.setUint16(2, dport);
  v.setUint16(4, out.length);
  return out;
}

/** An ICMP or ICMPv6 message of `type` with identifier `id` (echo) and `data`. */
export function icmpMessage(
  type: number,
  id: number,
  data: Uint8Array = new Uint8Array(8),
): Uint8Array {
  const out = new Uint8Array(8 + data.length);
  out[0] = type;
  new DataView(out.buffer).setUint16(4, id);
  out.set(data, 8);
  return out;
}

/** A frame of a TCP segment. */
export function tcp(
  dir: "ingress" | "egress",
  src: string,
  dst: string,
  sport: number,
  dport: number,
  flags: number,
): Uint8Array {
  return eth(ipPacket(src, dst, IP_PROTO_TCP, tcpSegment(sport, dport, flags)), dir);
}

/** A frame of a UDP datagram. */
export function udp(
  dir: "ingress" | "egress",
  src: string,
  dst: string,
  sport: number,
  dport: number,
): Uint8Array {
  return eth(ipPacket(src, dst, IP_PROTO_UDP, udpDatagram(sport, dport)), dir);
}

/** ICMPv4 echo request/reply and error types. */
export const ICMP4 = { ECHO_REPLY: 0, UNREACHABLE: 3, ECHO_REQUEST: 8, TIME_EXCEEDED: 11 };
/** ICMPv6 error and echo types. */
export const ICMP6 = { UNREACHABLE: 1, TOO_BIG: 2, ECHO_REQUEST: 128, ECHO_REPLY: 129 };

/** A frame of an ICMP (IPv4 addresses) or ICMPv6 (IPv6 addresses) echo. */
export function echo(
  dir: "ingress" | "egress",
  src: string,
  dst: string,
  request: boolean,
  id: number,
): Uint8Array {
  const v6 = src.includes(":");
  const type = v6
    ? (request ? ICMP6.ECHO_REQUEST : ICMP6.ECHO_REPLY)
    : (request ? ICMP4.ECHO_REQUEST : ICMP4.ECHO_REPLY);
  return eth(ipPacket(src, dst, v6 ? IP_PROTO_ICMPV6 : IP_PROTO_ICMP, icmpMessage(type, id)), dir);
}

/**
 * An ICMP error from `src` to `dst` quoting `quoted` (an IP packet) cut to its header plus
 * 8 bytes, as routers do.
 */
export function icmpError(
  dir: "ingress" | "egress",
  src: string,
  dst: string,
  type: number,
  quoted: Uint8Array,
): Uint8Array {
  const v6 = src.includes(":");
  const headerLen = v6 ? 40 : (quoted[0] & 0x0f) * 4;
  const cut = quoted.subarray(0, Math.min(quoted.length, headerLen + 8));
  const msg = icmpMessage(type, 0, cut);
  return eth(ipPacket(src, dst, v6 ? IP_PROTO_ICMPV6 : IP_PROTO_ICMP, msg), dir);
}

/** A rule with defaults: any port, any address. */
export function rule(
  id: string,
  direction: RuleDirectionName,
  protocol: RuleProtocolName,
  more: Partial<DesiredRule> = {},
): DesiredRule {
  return {
    id,
    securityGroupId: "sg-1",
    direction,
    protocol,
    portStart: 0,
    portEnd: 0,
    cidr: "",
    ...more,
  };
}
