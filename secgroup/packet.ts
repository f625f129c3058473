/**
 * Reads what the security-group filter needs from an Ethernet frame: the address family, the
 * transport protocol, both addresses, the ports (or the ICMP type and echo identifier), the TCP
 * flags, and for ICMP errors the header the error quotes.
 *
 * Every frame is read into one reused {@link PacketInfo}: the filter runs per packet, so this
 * module allocates nothing. Bounds are checked before every read; a frame that lies about a
 * length is {@link ParseResult.MALFORMED}, never an exception. L4 checksums are not looked
 * at: with checksum offload the guest leaves them partial.
 * @module
 */

import { read16 } from "../wire/bytes.ts";
import {
  ETHERNET_HEADER_LEN,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  ETHERTYPE_IPV6,
} from "../wire/ethernet.ts";
import {
  ICMPV4_DEST_UNREACHABLE,
  ICMPV4_ECHO_REPLY,
  ICMPV4_ECHO_REQUEST,
  ICMPV4_HEADER_LEN,
  ICMPV4_TIME_EXCEEDED,
} from "../wire/icmpv4.ts";
import {
  ICMPV6_DEST_UNREACHABLE,
  ICMPV6_ECHO_REPLY,
  ICMPV6_ECHO_REQUEST,
  ICMPV6_HEADER_LEN,
  ICMPV6_PACKET_TOO_BIG,
  ICMPV6_TIME_EXCEEDED,
} from "../wire/icmpv6.ts";
import { IP_PROTO_ICMP, IP_PROTO_TCP, IP_PROTO_UDP, IPV4_HEADER_LEN } from "../wire/ipv4.ts";
import { IP_PROTO_ICMPV6, IPV6_HEADER_LEN } from "../wire/ipv6.ts";

/** What {@link parseFrame} found. */
export const ParseResult = {
  /** An IPv4 or IPv6 packet; the {@link PacketInfo} is filled. */
  IP: 0,
  /** An ARP frame. */
  ARP: 1,
  /** Another ethertype (VLAN tags included). */
  OTHER: 2,
  /** A frame whose headers are cut short or contradict their own lengths. */
  MALFORMED: 3,
} as const;
/** One of {@link ParseResult}. */
export type ParseResult = typeof ParseResult[keyof typeof ParseResult];

/** Where the ethertype sits; an 802.1Q tag there reads as another ethertype. */
const ETHERTYPE_OFF = 12;
const IPV4_VER_IHL_OFF = 0;
const IPV4_TOTAL_LEN_OFF = 2;
const IPV4_FRAG_OFF = 6;
const IPV4_PROTO_OFF = 9;
const IPV4_SRC_OFF = 12;
const IPV4_DST_OFF = 16;
const IPV4_FRAG_OFFSET_MASK = 0x1fff;
const IPV6_PAYLOAD_LEN_OFF = 4;
const IPV6_NEXT_HEADER_OFF = 6;
const IPV6_HOP_LIMIT_OFF = 7;
const IPV6_SRC_OFF = 8;
const IPV6_DST_OFF = 24;
/** Extension headers of IPv6 (RFC 8200 section 4) that the walk steps over. */
const IPV6_EXT_HOP_BY_HOP = 0;
const IPV6_EXT_ROUTING = 43;
const IPV6_EXT_FRAGMENT = 44;
const IPV6_EXT_AUTH = 51;
const IPV6_EXT_DEST_OPTS = 60;
const IPV6_FRAGMENT_HEADER_LEN = 8;
const IPV6_FRAG_OFFSET_SHIFT = 3;
/** More extension headers than this is an attack on the walk, not a packet. */
const IPV6_MAX_EXT_HEADERS = 8;
/** TCP's fixed header: the flags sit at byte 13, and a shorter segment is not TCP. */
const TCP_MIN_HEADER_LEN = 20;
const TCP_FLAGS_OFF = 13;
const UDP_HEADER_LEN = 8;
/** Ports (TCP, UDP) and ICMP echo identifiers are the first words of the L4 header. */
const L4_SRC_PORT_OFF = 0;
const L4_DST_PORT_OFF = 2;
const ICMP_TYPE_OFF = 0;
const ICMP_CODE_OFF = 1;
const ICMP_ECHO_ID_OFF = 4;
/** ICMPv4 source quench and parameter problem: errors that quote a packet too (RFC 792). */
const ICMPV4_SOURCE_QUENCH = 4;
const ICMPV4_PARAMETER_PROBLEM = 12;
/** ICMPv6 parameter problem (RFC 4443 section 3.4). */
const ICMPV6_PARAMETER_PROBLEM = 4;
/** An ICMP error quotes the offending IP header and at least 8 bytes of what follows. */
const QUOTED_L4_BYTES = 8;

/** TCP flag bits. */
export const TCP_FIN = 0x01;
/** TCP SYN. */
export const TCP_SYN = 0x02;
/** TCP RST. */
export const TCP_RST = 0x04;
/** TCP ACK. */
export const TCP_ACK = 0x10;

/** The fields of one packet, overwritten by every {@link parseFrame}. */
export class PacketInfo {
  /** 4 or 6. */
  family = 0;
  /** Transport protocol number (after IPv6 extension headers). */
  proto = 0;
  /**
   * Source address as big-endian 32-bit words, read as signed integers (V8 keeps those
   * unboxed); IPv4 uses word 0, the rest stay 0.
   */
  readonly src = new Int32Array(4);
  /** Destination address, like {@link PacketInfo.src}. */
  readonly dst = new Int32Array(4);
  /** True when {@link sport} and {@link dport} were read (TCP or UDP, first fragment). */
  hasPorts = false;
  /** Source port. */
  sport = 0;
  /** Destination port. */
  dport = 0;
  /** TCP flags, 0 for other protocols. */
  tcpFlags = 0;
  /** ICMP or ICMPv6 type, -1 for other protocols. */
  icmpType = -1;
  /** ICMP or ICMPv6 code. */
  icmpCode = 0;
  /** Identifier of an ICMP echo request or reply. */
  icmpId = 0;
  /** IPv6 hop limit (255 on link-local neighbor discovery), 0 for IPv4. */
  hopLimit = 0;
  /** A fragment other than the first: it carries no transport header. */
  laterFragment = false;
  /** An ICMP error whose quoted header was read into the `inner` of {@link parseFrame}. */
  quotesPacket = false;
}

/** True for an ICMPv4 echo request in IPv4 or an ICMPv6 one in IPv6. */
export function isEchoRequest(p: PacketInfo): boolean {
  return p.family === 4
    ? p.proto === IP_PROTO_ICMP && p.icmpType === ICMPV4_ECHO_REQUEST
    : p.proto === IP_PROTO_ICMPV6 && p.icmpType === ICMPV6_ECHO_REQUEST;
}

/** True for an ICMPv4 echo reply in IPv4 or an ICMPv6 one in IPv6. */
export function isEchoReply(p: PacketInfo): boolean {
  return p.family === 4
    ? p.proto === IP_PROTO_ICMP && p.icmpType === ICMPV4_ECHO_REPLY
    : p.proto === IP_PROTO_ICMPV6 && p.icmpType === ICMPV6_ECHO_REPLY;
}

function isIcmpError(family: number, proto: number, type: number): boolean {
  if (family === 4) {
    return proto === IP_PROTO_ICMP &&
      (type === ICMPV4_DEST_UNREACHABLE || type === ICMPV4_SOURCE_QUENCH ||
        type === ICMPV4_TIME_EXCEEDED || type === ICMPV4_PARAMETER_PROBLEM);
  }
  return proto === IP_PROTO_ICMPV6 &&
    (type === ICMPV6_DEST_UNREACHABLE || type === ICMPV6_PACKET_TOO_BIG ||
      type === ICMPV6_TIME_EXCEEDED || type === ICMPV6_PARAMETER_PROBLEM);
}

function clear(p: PacketInfo): void {
  p.hasPorts = false;
  p.sport = 0;
  p.dport = 0;
  p.tcpFlags = 0;
  p.icmpType = -1;
  p.icmpCode = 0;
  p.icmpId = 0;
  p.hopLimit = 0;
  p.laterFragment = false;
  p.quotesPacket = false;
}

/** A big-endian word as a signed 32-bit integer. */
function word(b: Uint8Array, off: number): number {
  return (b[off] << 24) | (b[off + 1] << 16) | (b[off + 2] << 8) | b[off + 3];
}

function readAddr4(b: Uint8Array, off: number, out: Int32Array): void {
  out[0] = word(b, off);
  out[1] = 0;
  out[2] = 0;
  out[3] = 0;
}

function readAddr6(b: Uint8Array, off: number, out: Int32Array): void {
  out[0] = word(b, off);
  out[1] = word(b, off + 4);
  out[2] = word(b, off + 8);
  out[3] = word(b, off + 12);
}

/**
 * Reads the IPv4 header at `off` (bytes up to `end` available). `quoted`: the header an ICMP
 * error quotes, whose total length may exceed what was quoted. Returns the offset of the
 * transport header, or -1.
 */
function ipv4(b: Uint8Array, off: number, end: number, p: PacketInfo, quoted: boolean): number {
  if (end - off < IPV4_HEADER_LEN) return -1;
  const verIhl = b[off + IPV4_VER_IHL_OFF];
  if (verIhl >> 4 !== 4) return -1;
  const headerLen = (verIhl & 0x0f) * 4;
  if (headerLen < IPV4_HEADER_LEN || off + headerLen > end) return -1;
  const totalLen = read16(b, off + IPV4_TOTAL_LEN_OFF);
  if (totalLen < headerLen) return -1;
  p.family = 4;
  p.proto = b[off + IPV4_PROTO_OFF];
  readAddr4(b, off + IPV4_SRC_OFF, p.src);
  readAddr4(b, off + IPV4_DST_OFF, p.dst);
  p.laterFragment = (read16(b, off + IPV4_FRAG_OFF) & IPV4_FRAG_OFFSET_MASK) !== 0;
  if (quoted) return off + headerLen;
  if (off + totalLen > end) return -1;
  return off + headerLen;
}

/** Like {@link ipv4} for IPv6, walking the extension headers. Returns -1 when malformed. */
function ipv6(b: Uint8Array, off: number, end: number, p: PacketInfo, quoted: boolean): number {
  if (end - off < IPV6_HEADER_LEN) return -1;
  if (b[off] >> 4 !== 6) return -1;
  const payloadLen = read16(b, off + IPV6_PAYLOAD_LEN_OFF);
  if (!quoted && off + IPV6_HEADER_LEN + payloadLen > end) return -1;
  p.family = 6;
  p.hopLimit = b[off + IPV6_HOP_LIMIT_OFF];
  readAddr6(b, off + IPV6_SRC_OFF, p.src);
  readAddr6(b, off + IPV6_DST_OFF, p.dst);
  let next = b[off + IPV6_NEXT_HEADER_OFF];
  let at = off + IPV6_HEADER_LEN;
  for (let i = 0; i < IPV6_MAX_EXT_HEADERS; i++) {
    let len: number;
    switch (next) {
      case IPV6_EXT_HOP_BY_HOP:
      case IPV6_EXT_ROUTING:
      case IPV6_EXT_DEST_OPTS:
        if (at + 2 > end) return -1;
        len = (b[at + 1] + 1) * 8;
        break;
      case IPV6_EXT_AUTH:
        if (at + 2 > end) return -1;
        len = (b[at + 1] + 2) * 4;
        break;
      case IPV6_EXT_FRAGMENT:
        if (at + IPV6_FRAGMENT_HEADER_LEN > end) return -1;
        len = IPV6_FRAGMENT_HEADER_LEN;
        if (read16(b, at + 2) >> IPV6_FRAG_OFFSET_SHIFT !== 0) p.laterFragment = true;
        break;
      default:
        p.proto = next;
        return at;
    }
    if (at + len > end) return -1;
    next = b[at];
    at += len;
  }
  return -1;
}

/** Reads the transport header at `at`..`end` into `p`. False when it is cut short. */
function transport(
  b: Uint8Array,
  at: number,
  end: number,
  p: PacketInfo,
  quoted: boolean,
): boolean {
  if (p.laterFragment) return true;
  const avail = end - at;
  switch (p.proto) {
    case IP_PROTO_TCP:
      // A quoted segment may be cut after its first 8 bytes: the ports are there, the flags not.
      if (avail < (quoted ? QUOTED_L4_BYTES : TCP_MIN_HEADER_LEN)) return false;
      if (!quoted) p.tcpFlags = b[at + TCP_FLAGS_OFF];
      break;
    case IP_PROTO_UDP:
      if (avail < UDP_HEADER_LEN) return false;
      break;
    case IP_PROTO_ICMP:
    case IP_PROTO_ICMPV6:
      if ((p.proto === IP_PROTO_ICMP) !== (p.family === 4)) return true;
      if (avail < (p.family === 4 ? ICMPV4_HEADER_LEN : ICMPV6_HEADER_LEN)) return false;
      p.icmpType = b[at + ICMP_TYPE_OFF];
      p.icmpCode = b[at + ICMP_CODE_OFF];
      p.icmpId = read16(b, at + ICMP_ECHO_ID_OFF);
      return true;
    default:
      return true;
  }
  p.hasPorts = true;
  p.sport = read16(b, at + L4_SRC_PORT_OFF);
  p.dport = read16(b, at + L4_DST_PORT_OFF);
  return true;
}

/** Reads an IP packet at `off`; returns the transport header's end or -1 when malformed. */
function packet(b: Uint8Array, off: number, end: number, p: PacketInfo, quoted: boolean): number {
  const family = b[off] >> 4;
  const at = family === 4
    ? ipv4(b, off, end, p, quoted)
    : family === 6
    ? ipv6(b, off, end, p, quoted)
    : -1;
  if (at < 0) return -1;
  // The packet's own end, not the frame's: Ethernet padding must not read as payload.
  const own = quoted
    ? end
    : family === 4
    ? off + read16(b, off + IPV4_TOTAL_LEN_OFF)
    : off + IPV6_HEADER_LEN + read16(b, off + IPV6_PAYLOAD_LEN_OFF);
  if (!transport(b, at, own, p, quoted)) return -1;
  return at;
}

/**
 * Fills `info` from the Ethernet frame. For an ICMP error that quotes a readable packet,
 * `inner` gets the quoted packet and `info.quotesPacket` is set; an unreadable quote leaves
 * the error an ordinary ICMP packet.
 *
 * @example
 * ```ts
 * const info = new PacketInfo();
 * const inner = new PacketInfo();
 * if (parseFrame(frame, info, inner) === ParseResult.IP) console.log(info.proto, info.dport);
 * ```
 */
export function parseFrame(frame: Uint8Array, info: PacketInfo, inner: PacketInfo): ParseResult {
  if (frame.length < ETHERNET_HEADER_LEN) return ParseResult.MALFORMED;
  const ethertype = read16(frame, ETHERTYPE_OFF);
  if (ethertype === ETHERTYPE_ARP) return ParseResult.ARP;
  if (ethertype !== ETHERTYPE_IPV4 && ethertype !== ETHERTYPE_IPV6) return ParseResult.OTHER;
  if (frame.length === ETHERNET_HEADER_LEN) return ParseResult.MALFORMED;
  // The ethertype decides the family: an IPv6 header behind an IPv4 ethertype is a lie.
  if (frame[ETHERNET_HEADER_LEN] >> 4 !== (ethertype === ETHERTYPE_IPV4 ? 4 : 6)) {
    return ParseResult.MALFORMED;
  }
  clear(info);
  const at = packet(frame, ETHERNET_HEADER_LEN, frame.length, info, false);
  if (at < 0) return ParseResult.MALFORMED;
  if (isIcmpError(info.family, info.proto, info.icmpType)) {
    clear(inner);
    const quote = at + (info.family === 4 ? ICMPV4_HEADER_LEN : ICMPV6_HEADER_LEN);
    const end = info.family === 4
      ? ETHERNET_HEADER_LEN + read16(frame, ETHERNET_HEADER_LEN + IPV4_TOTAL_LEN_OFF)
      : ETHERNET_HEADER_LEN + IPV6_HEADER_LEN +
        read16(frame, ETHERNET_HEADER_LEN + IPV6_PAYLOAD_LEN_OFF);
    info.quotesPacket = quote < end && frame[quote] >> 4 === info.family &&
      packet(frame, quote, end, inner, true) >= 0 && !inner.laterFragment;
  }
  return ParseResult.IP;
}
