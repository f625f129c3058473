/**
 * Link-layer and IP addresses.
 *
 * Representation, the same everywhere in `wire/` and `services/`: every address is a
 * `Uint8Array` in network byte order (6 bytes MAC, 4 bytes IPv4, 16 bytes IPv6). Byte arrays
 * are what the packet views hold, so emitting never converts, and one representation for all
 * three keeps comparison and copying uniform. Parsers return copies, never views into the
 * frame, so a repr outlives the buffer it came from.
 *
 * @module
 */

import { WireError } from "./error.ts";

/** A 6-byte Ethernet MAC address. */
export type MacAddr = Uint8Array;
/** A 4-byte IPv4 address, network byte order. */
export type Ipv4Addr = Uint8Array;
/** A 16-byte IPv6 address, network byte order. */
export type Ipv6Addr = Uint8Array;

/** Length of a MAC address in bytes. */
export const MAC_LEN = 6;
/** Length of an IPv4 address in bytes. */
export const IPV4_LEN = 4;
/** Length of an IPv6 address in bytes. */
export const IPV6_LEN = 16;

const IPV4_BITS = 32;
const IPV6_BITS = 128;
const BITS_PER_BYTE = 8;
const IPV6_GROUPS = 8;
const MAX_GROUP = 0xffff;
const MAX_OCTET = 255;
const MULTICAST_MAC_BIT = 0x01;
const IPV6_MULTICAST_PREFIX = 0xff;

/** ff:ff:ff:ff:ff:ff. */
export const MAC_BROADCAST: MacAddr = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
/** 0.0.0.0. */
export const IPV4_UNSPECIFIED: Ipv4Addr = new Uint8Array(IPV4_LEN);
/** 255.255.255.255, the limited broadcast address. */
export const IPV4_BROADCAST: Ipv4Addr = new Uint8Array([255, 255, 255, 255]);
/** ::. */
export const IPV6_UNSPECIFIED: Ipv6Addr = new Uint8Array(IPV6_LEN);
/** ff02::1, all nodes on the link. */
export const IPV6_ALL_NODES: Ipv6Addr = ipv6Literal([0xff02, 0, 0, 0, 0, 0, 0, 1]);
/** ff02::2, all routers on the link. */
export const IPV6_ALL_ROUTERS: Ipv6Addr = ipv6Literal([0xff02, 0, 0, 0, 0, 0, 0, 2]);
/** ff02::1:2, All_DHCP_Relay_Agents_and_Servers (RFC 8415 section 7.1). */
export const IPV6_ALL_DHCP_SERVERS: Ipv6Addr = ipv6Literal([0xff02, 0, 0, 0, 0, 0, 1, 2]);

function ipv6Literal(groups: number[]): Ipv6Addr {
  const a = new Uint8Array(IPV6_LEN);
  for (let i = 0; i < IPV6_GROUPS; i++) {
    a[2 * i] = groups[i] >>> 8;
    a[2 * i + 1] = groups[i] & 0xff;
  }
  return a;
}

/** True when both byte arrays have the same length and contents. */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Orders two addresses of the same family byte by byte (numeric order); a shorter array sorts
 * first. Returns a negative number, 0 or a positive number.
 */
export function compareAddr(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return a.length - b.length;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return 0;
}

/** True for a group (multicast or broadcast) MAC: the I/G bit of the first octet is set. */
export function isMulticastMac(mac: MacAddr): boolean {
  return (mac[0] & MULTICAST_MAC_BIT) !== 0;
}

/** True for ff00::/8. */
export function isIpv6Multicast(a: Ipv6Addr): boolean {
  return a[0] === IPV6_MULTICAST_PREFIX;
}

/** True for fe80::/10. */
export function isIpv6LinkLocal(a: Ipv6Addr): boolean {
  return a[0] === 0xfe && (a[1] & 0xc0) === 0x80;
}

/** True for ::. */
export function isIpv6Unspecified(a: Ipv6Addr): boolean {
  return bytesEqual(a, IPV6_UNSPECIFIED);
}

/** The solicited-node multicast group of `a`: ff02::1:ff00:0/104 + its low 24 bits (RFC 4291). */
export function solicitedNodeMulticast(a: Ipv6Addr): Ipv6Addr {
  const g = ipv6Literal([0xff02, 0, 0, 0, 0, 1, 0xff00, 0]);
  g[13] = a[13];
  g[14] = a[14];
  g[15] = a[15];
  return g;
}

/** The Ethernet group address of IPv6 multicast `group`: 33:33 + its low 32 bits (RFC 2464). */
export function ipv6MulticastMac(group: Ipv6Addr): MacAddr {
  return new Uint8Array([0x33, 0x33, group[12], group[13], group[14], group[15]]);
}

/** Parses `aa:bb:cc:dd:ee:ff` (or with `-`), case-insensitive. */
export function parseMac(text: string): MacAddr | WireError {
  const parts = text.split(/[:-]/);
  if (parts.length !== MAC_LEN) return new WireError("mac", "malformed", `not a MAC: "${text}"`);
  const mac = new Uint8Array(MAC_LEN);
  for (let i = 0; i < MAC_LEN; i++) {
    if (!/^[0-9a-fA-F]{2}$/.test(parts[i])) {
      return new WireError("mac", "malformed", `not a MAC: "${text}"`);
    }
    mac[i] = parseInt(parts[i], 16);
  }
  return mac;
}

/** Formats as lower-case `aa:bb:cc:dd:ee:ff`. */
export function formatMac(mac: MacAddr): string {
  return Array.from(mac, (b) => b.toString(16).padStart(2, "0")).join(":");
}

/** Parses dotted-quad IPv4 text; leading zeros are rejected (they are octal to some parsers). */
export function parseIpv4(text: string): Ipv4Addr | WireError {
  const parts = text.split(".");
  const bad = () => new WireError("ipv4", "malformed", `not an IPv4 address: "${text}"`);
  if (parts.length !== IPV4_LEN) return bad();
  const a = new Uint8Array(IPV4_LEN);
  for (let i = 0; i < IPV4_LEN; i++) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(parts[i])) return bad();
    const v = Number(parts[i]);
    if (v > MAX_OCTET) return bad();
    a[i] = v;
  }
  return a;
}

/** Formats as dotted quad. */
export function formatIpv4(a: Ipv4Addr): string {
  return `${a[0]}.${a[1]}.${a[2]}.${a[3]}`;
}

/** Parses IPv6 text (RFC 4291 section 2.2, including `::` and a dotted IPv4 tail). */
export function parseIpv6(text: string): Ipv6Addr | WireError {
  const bad = () => new WireError("ipv6", "malformed", `not an IPv6 address: "${text}"`);
  const halves = text.split("::");
  if (halves.length > 2) return bad();
  const head = parseGroups(halves[0], halves.length === 1);
  const tail = halves.length === 2 ? parseGroups(halves[1], true) : [];
  if (head === null || tail === null) return bad();
  const total = head.length + tail.length;
  if (halves.length === 1 ? total !== IPV6_GROUPS : total > IPV6_GROUPS - 1) return bad();
  const groups = [...head, ...new Array(IPV6_GROUPS - total).fill(0), ...tail];
  return ipv6Literal(groups);
}

/** Splits `a:b:c` into 16-bit groups; a dotted IPv4 tail counts as two. Null when malformed. */
function parseGroups(text: string, allowV4Tail: boolean): number[] | null {
  if (text === "") return [];
  const parts = text.split(":");
  const groups: number[] = [];
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i];
    if (allowV4Tail && i === parts.length - 1 && p.includes(".")) {
      const v4 = parseIpv4(p);
      if (v4 instanceof WireError) return null;
      groups.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
    } else {
      if (!/^[0-9a-fA-F]{1,4}$/.test(p)) return null;
      const v = parseInt(p, 16);
      if (v > MAX_GROUP) return null;
      groups.push(v);
    }
  }
  return groups;
}

/** Formats in the canonical form of RFC 5952 (lower case, longest zero run as `::`). */
export function formatIpv6(a: Ipv6Addr): string {
  const groups: number[] = [];
  for (let i = 0; i < IPV6_GROUPS; i++) groups.push((a[2 * i] << 8) | a[2 * i + 1]);
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < IPV6_GROUPS;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < IPV6_GROUPS && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (g: number[]) => g.map((v) => v.toString(16)).join(":");
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLen))}`;
}

/** An IPv4 or IPv6 network: the address with host bits cleared, and the prefix length. */
export interface Cidr {
  /** Network address (host bits zero), 4 or 16 bytes. */
  readonly addr: Uint8Array;
  /** Prefix length in bits, 0..32 or 0..128. */
  readonly prefixLen: number;
}

/**
 * Parses `addr/len`: IPv4 when `family` is 4, IPv6 when 6. Host bits must be zero, so that a
 * typo such as `10.0.0.1/24` is reported rather than silently widened.
 */
export function parseCidr(text: string, family: 4 | 6): Cidr | WireError {
  const proto = family === 4 ? "ipv4" : "ipv6";
  const slash = text.indexOf("/");
  const bad = (why: string) => new WireError(proto, "malformed", `${why}: "${text}"`);
  if (slash < 0) return bad("missing /prefix-length");
  const addr = family === 4 ? parseIpv4(text.slice(0, slash)) : parseIpv6(text.slice(0, slash));
  if (addr instanceof WireError) return addr;
  const lenText = text.slice(slash + 1);
  const max = family === 4 ? IPV4_BITS : IPV6_BITS;
  if (!/^(0|[1-9][0-9]{0,2})$/.test(lenText) || Number(lenText) > max) {
    return bad(`prefix length must be 0..${max}`);
  }
  const prefixLen = Number(lenText);
  if (!bytesEqual(maskAddr(addr, prefixLen), addr)) return bad("host bits set");
  return { addr, prefixLen };
}

/** Formats as `addr/len`. */
export function formatCidr(c: Cidr): string {
  const a = c.addr.length === IPV4_LEN ? formatIpv4(c.addr) : formatIpv6(c.addr);
  return `${a}/${c.prefixLen}`;
}

/** `addr` with every bit past `prefixLen` cleared (a copy). */
export function maskAddr(addr: Uint8Array, prefixLen: number): Uint8Array {
  const out = new Uint8Array(addr.length);
  for (let i = 0; i < addr.length; i++) {
    const bitsHere = prefixLen - i * BITS_PER_BYTE;
    if (bitsHere >= BITS_PER_BYTE) out[i] = addr[i];
    else if (bitsHere > 0) out[i] = addr[i] & ((0xff << (BITS_PER_BYTE - bitsHere)) & 0xff);
  }
  return out;
}

/** True when `addr` (same family as the network) lies inside `cidr`. */
export function cidrContains(cidr: Cidr, addr: Uint8Array): boolean {
  if (addr.length !== cidr.addr.length) return false;
  const full = Math.floor(cidr.prefixLen / BITS_PER_BYTE);
  for (let i = 0; i < full; i++) if (addr[i] !== cidr.addr[i]) return false;
  const rest = cidr.prefixLen % BITS_PER_BYTE;
  if (rest === 0) return true;
  const mask = (0xff << (BITS_PER_BYTE - rest)) & 0xff;
  return (addr[full] & mask) === cidr.addr[full];
}
