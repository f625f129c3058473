/**
 * ICMPv6 (RFC 4443) and Neighbor Discovery (RFC 4861): echo, destination unreachable, packet
 * too big, time exceeded, router solicitation/advertisement, neighbor solicitation/
 * advertisement, with the options source/target link-layer address, prefix information,
 * MTU and RDNSS (RFC 8106). Unknown ND options are skipped, as RFC 4861 section 4.6 requires.
 * @module
 */

import { IPV6_LEN, type Ipv6Addr, MAC_LEN, type MacAddr } from "./addr.ts";
import { read16, read32, write16, write32 } from "./bytes.ts";
import { checksumAdd, checksumFinish, pseudoHeaderSum } from "./checksum.ts";
import { WireError } from "./error.ts";
import { IP_PROTO_ICMPV6 } from "./ipv6.ts";

/** Type: destination unreachable. */
export const ICMPV6_DEST_UNREACHABLE = 1;
/** Type: packet too big. */
export const ICMPV6_PACKET_TOO_BIG = 2;
/** Type: time exceeded. */
export const ICMPV6_TIME_EXCEEDED = 3;
/** Type: echo request. */
export const ICMPV6_ECHO_REQUEST = 128;
/** Type: echo reply. */
export const ICMPV6_ECHO_REPLY = 129;
/** Type: router solicitation. */
export const ICMPV6_ROUTER_SOLICIT = 133;
/** Type: router advertisement. */
export const ICMPV6_ROUTER_ADVERT = 134;
/** Type: neighbor solicitation. */
export const ICMPV6_NEIGHBOR_SOLICIT = 135;
/** Type: neighbor advertisement. */
export const ICMPV6_NEIGHBOR_ADVERT = 136;

/** ND option: source link-layer address. */
export const NDP_OPT_SOURCE_LL = 1;
/** ND option: target link-layer address. */
export const NDP_OPT_TARGET_LL = 2;
/** ND option: prefix information. */
export const NDP_OPT_PREFIX_INFO = 3;
/** ND option: MTU. */
export const NDP_OPT_MTU = 5;
/** ND option: recursive DNS servers (RFC 8106). */
export const NDP_OPT_RDNSS = 25;

/** Length of the common ICMPv6 header including the 4 type-specific bytes. */
export const ICMPV6_HEADER_LEN = 8;
/** ND hop limit: messages with another hop limit did not originate on the link. */
export const NDP_HOP_LIMIT = 255;

const TYPE_OFF = 0;
const CODE_OFF = 1;
const CHECKSUM_OFF = 2;
const IDENT_OFF = 4;
const SEQ_OFF = 6;
const MTU_OFF = 4;
const RS_LEN = 8;
const RA_LEN = 16;
const NS_NA_LEN = 24;
const RA_HOP_LIMIT_OFF = 4;
const RA_FLAGS_OFF = 5;
const RA_LIFETIME_OFF = 6;
const RA_REACHABLE_OFF = 8;
const RA_RETRANS_OFF = 12;
const RA_FLAG_MANAGED = 0x80;
const RA_FLAG_OTHER = 0x40;
const NA_FLAGS_OFF = 4;
const NA_FLAG_ROUTER = 0x80;
const NA_FLAG_SOLICITED = 0x40;
const NA_FLAG_OVERRIDE = 0x20;
const TARGET_OFF = 8;
/** ND option lengths count units of 8 bytes. */
const OPT_UNIT = 8;
const LL_OPT_LEN = 8;
const MTU_OPT_LEN = 8;
const PREFIX_OPT_LEN = 32;
const RDNSS_HEADER_LEN = 8;
const PI_PREFIX_LEN_OFF = 2;
const PI_FLAGS_OFF = 3;
const PI_VALID_OFF = 4;
const PI_PREFERRED_OFF = 8;
const PI_PREFIX_OFF = 16;
const PI_FLAG_ONLINK = 0x80;
const PI_FLAG_AUTONOMOUS = 0x40;
const MAX_PREFIX_BITS = 128;
const OPT_MTU_OFF = 4;
const RDNSS_LIFETIME_OFF = 4;

/** Prefix information option. */
export interface PrefixInfo {
  prefixLen: number;
  /** L flag: the prefix is on-link. */
  onLink: boolean;
  /** A flag: hosts may autoconfigure (SLAAC) addresses in it. */
  autonomous: boolean;
  validLifetime: number;
  preferredLifetime: number;
  prefix: Ipv6Addr;
}

/** Recursive DNS server option. */
export interface Rdnss {
  lifetime: number;
  servers: Ipv6Addr[];
}

/** The ND options this module knows; an absent option is an absent key. */
export interface NdpOptions {
  sourceLinkAddr?: MacAddr;
  targetLinkAddr?: MacAddr;
  mtu?: number;
  prefixes?: PrefixInfo[];
  rdnss?: Rdnss[];
}

/** An echo request or reply. */
export interface Icmpv6Echo {
  kind: "echo_request" | "echo_reply";
  ident: number;
  seq: number;
  data: Uint8Array;
}

/** A router solicitation. */
export interface RouterSolicitRepr {
  kind: "router_solicit";
  options: NdpOptions;
}

/** A neighbor solicitation. */
export interface NeighborSolicitRepr {
  kind: "neighbor_solicit";
  target: Ipv6Addr;
  options: NdpOptions;
}

/** An ICMPv6 message as plain data; `data` fields are views after parse. */
export type Icmpv6Repr =
  | Icmpv6Echo
  | { kind: "dest_unreachable" | "time_exceeded"; code: number; data: Uint8Array }
  | { kind: "packet_too_big"; mtu: number; data: Uint8Array }
  | RouterSolicitRepr
  | {
    kind: "router_advert";
    curHopLimit: number;
    managed: boolean;
    other: boolean;
    routerLifetime: number;
    reachableTime: number;
    retransTimer: number;
    options: NdpOptions;
  }
  | NeighborSolicitRepr
  | {
    kind: "neighbor_advert";
    router: boolean;
    solicited: boolean;
    override: boolean;
    target: Ipv6Addr;
    options: NdpOptions;
  };

/** Checked view over an ICMPv6 message: length and checksum verified. */
export class Icmpv6Packet {
  private constructor(readonly buffer: Uint8Array) {}

  /** Wraps `buf` (the IPv6 payload) after verifying the checksum over the pseudo-header. */
  static checked(buf: Uint8Array, src: Ipv6Addr, dst: Ipv6Addr): Icmpv6Packet | WireError {
    if (buf.length < ICMPV6_HEADER_LEN) {
      return new WireError("icmpv6", "truncated", `${buf.length} bytes, header needs 8`);
    }
    const sum = checksumAdd(pseudoHeaderSum(src, dst, IP_PROTO_ICMPV6, buf.length), buf);
    if (checksumFinish(sum) !== 0) return new WireError("icmpv6", "bad_checksum", "checksum");
    return new Icmpv6Packet(buf);
  }

  /** Message type. */
  get msgType(): number {
    return this.buffer[TYPE_OFF];
  }
  /** Code. */
  get code(): number {
    return this.buffer[CODE_OFF];
  }
  /** Everything after the 8-byte header (a view). */
  get body(): Uint8Array {
    return this.buffer.subarray(ICMPV6_HEADER_LEN);
  }
}

/** Parses and verifies an ICMPv6 message sent from `src` to `dst`. */
export function parseIcmpv6(
  buf: Uint8Array,
  src: Ipv6Addr,
  dst: Ipv6Addr,
): Icmpv6Repr | WireError {
  const p = Icmpv6Packet.checked(buf, src, dst);
  if (p instanceof WireError) return p;
  const t = p.msgType;
  const isNdp = t >= ICMPV6_ROUTER_SOLICIT && t <= ICMPV6_NEIGHBOR_ADVERT;
  if (isNdp && p.code !== 0) return new WireError("icmpv6", "malformed", `ND code ${p.code}`);
  switch (t) {
    case ICMPV6_ECHO_REQUEST:
    case ICMPV6_ECHO_REPLY:
      if (p.code !== 0) return new WireError("icmpv6", "malformed", `echo code ${p.code}`);
      return {
        kind: t === ICMPV6_ECHO_REQUEST ? "echo_request" : "echo_reply",
        ident: read16(buf, IDENT_OFF),
        seq: read16(buf, SEQ_OFF),
        data: p.body,
      };
    case ICMPV6_DEST_UNREACHABLE:
      return { kind: "dest_unreachable", code: p.code, data: p.body };
    case ICMPV6_TIME_EXCEEDED:
      return { kind: "time_exceeded", code: p.code, data: p.body };
    case ICMPV6_PACKET_TOO_BIG:
      return { kind: "packet_too_big", mtu: read32(buf, MTU_OFF), data: p.body };
    case ICMPV6_ROUTER_SOLICIT: {
      const options = parseNdpOptions(buf, RS_LEN);
      if (options instanceof WireError) return options;
      return { kind: "router_solicit", options };
    }
    case ICMPV6_ROUTER_ADVERT: {
      if (buf.length < RA_LEN) return ndTruncated("router advertisement", buf.length);
      const options = parseNdpOptions(buf, RA_LEN);
      if (options instanceof WireError) return options;
      return {
        kind: "router_advert",
        curHopLimit: buf[RA_HOP_LIMIT_OFF],
        managed: (buf[RA_FLAGS_OFF] & RA_FLAG_MANAGED) !== 0,
        other: (buf[RA_FLAGS_OFF] & RA_FLAG_OTHER) !== 0,
        routerLifetime: read16(buf, RA_LIFETIME_OFF),
        reachableTime: read32(buf, RA_REACHABLE_OFF),
        retransTimer: read32(buf, RA_RETRANS_OFF),
        options,
      };
    }
    case ICMPV6_NEIGHBOR_SOLICIT:
    case ICMPV6_NEIGHBOR_ADVERT: {
      if (buf.length < NS_NA_LEN) return ndTruncated("neighbor message", buf.length);
      const options = parseNdpOptions(buf, NS_NA_LEN);
      if (options instanceof WireError) return options;
      const target = buf.slice(TARGET_OFF, TARGET_OFF + IPV6_LEN);
      if (t === ICMPV6_NEIGHBOR_SOLICIT) return { kind: "neighbor_solicit", target, options };
      const flags = buf[NA_FLAGS_OFF];
      return {
        kind: "neighbor_advert",
        router: (flags & NA_FLAG_ROUTER) !== 0,
        solicited: (flags & NA_FLAG_SOLICITED) !== 0,
        override: (flags & NA_FLAG_OVERRIDE) !== 0,
        target,
        options,
      };
    }
    default:
      return new WireError("icmpv6", "unsupported", `type ${t}`);
  }
}

function ndTruncated(what: string, len: number): WireError {
  return new WireError("icmpv6", "truncated", `${what} of ${len} bytes`);
}

/** Parses the ND options from `start` to the end of `buf`. */
function parseNdpOptions(buf: Uint8Array, start: number): NdpOptions | WireError {
  const opts: NdpOptions = {};
  let off = start;
  while (off < buf.length) {
    if (buf.length - off < 2) return new WireError("icmpv6", "truncated", "option header");
    const type = buf[off];
    const len = buf[off + 1] * OPT_UNIT;
    // RFC 4861 section 4.6: a zero length would loop forever; the packet must be dropped.
    if (len === 0) return new WireError("icmpv6", "malformed", `option ${type} with length 0`);
    if (off + len > buf.length) {
      return new WireError("icmpv6", "truncated", `option ${type} of ${len} bytes`);
    }
    const o = buf.subarray(off, off + len);
    switch (type) {
      case NDP_OPT_SOURCE_LL:
      case NDP_OPT_TARGET_LL: {
        if (len !== LL_OPT_LEN) return badOptLen(type, len);
        const mac = o.slice(2, 2 + MAC_LEN);
        if (type === NDP_OPT_SOURCE_LL) opts.sourceLinkAddr = mac;
        else opts.targetLinkAddr = mac;
        break;
      }
      case NDP_OPT_MTU:
        if (len !== MTU_OPT_LEN) return badOptLen(type, len);
        opts.mtu = read32(o, OPT_MTU_OFF);
        break;
      case NDP_OPT_PREFIX_INFO: {
        if (len !== PREFIX_OPT_LEN) return badOptLen(type, len);
        const prefixLen = o[PI_PREFIX_LEN_OFF];
        if (prefixLen > MAX_PREFIX_BITS) {
          return new WireError("icmpv6", "malformed", `prefix length ${prefixLen}`);
        }
        (opts.prefixes ??= []).push({
          prefixLen,
          onLink: (o[PI_FLAGS_OFF] & PI_FLAG_ONLINK) !== 0,
          autonomous: (o[PI_FLAGS_OFF] & PI_FLAG_AUTONOMOUS) !== 0,
          validLifetime: read32(o, PI_VALID_OFF),
          preferredLifetime: read32(o, PI_PREFERRED_OFF),
          prefix: o.slice(PI_PREFIX_OFF, PI_PREFIX_OFF + IPV6_LEN),
        });
        break;
      }
      case NDP_OPT_RDNSS: {
        // RFC 8106 section 5.1: header plus at least one address, a whole number of them.
        const body = len - RDNSS_HEADER_LEN;
        if (body < IPV6_LEN || body % IPV6_LEN !== 0) return badOptLen(type, len);
        const servers: Ipv6Addr[] = [];
        for (let a = RDNSS_HEADER_LEN; a < len; a += IPV6_LEN) {
          servers.push(o.slice(a, a + IPV6_LEN));
        }
        (opts.rdnss ??= []).push({ lifetime: read32(o, RDNSS_LIFETIME_OFF), servers });
        break;
      }
    }
    off += len;
  }
  return opts;
}

function badOptLen(type: number, len: number): WireError {
  return new WireError("icmpv6", "malformed", `option ${type} with length ${len}`);
}

function ndpOptionsLen(o: NdpOptions): number {
  let n = 0;
  if (o.sourceLinkAddr) n += LL_OPT_LEN;
  if (o.targetLinkAddr) n += LL_OPT_LEN;
  if (o.mtu !== undefined) n += MTU_OPT_LEN;
  n += (o.prefixes?.length ?? 0) * PREFIX_OPT_LEN;
  for (const r of o.rdnss ?? []) n += RDNSS_HEADER_LEN + r.servers.length * IPV6_LEN;
  return n;
}

function emitNdpOptions(o: NdpOptions, out: Uint8Array, start: number): void {
  let off = start;
  const header = (type: number, len: number) => {
    out[off] = type;
    out[off + 1] = len / OPT_UNIT;
  };
  const linkAddr = (type: number, mac: MacAddr) => {
    header(type, LL_OPT_LEN);
    out.set(mac, off + 2);
    off += LL_OPT_LEN;
  };
  if (o.sourceLinkAddr) linkAddr(NDP_OPT_SOURCE_LL, o.sourceLinkAddr);
  if (o.targetLinkAddr) linkAddr(NDP_OPT_TARGET_LL, o.targetLinkAddr);
  if (o.mtu !== undefined) {
    header(NDP_OPT_MTU, MTU_OPT_LEN);
    write32(out, off + OPT_MTU_OFF, o.mtu);
    off += MTU_OPT_LEN;
  }
  for (const p of o.prefixes ?? []) {
    header(NDP_OPT_PREFIX_INFO, PREFIX_OPT_LEN);
    out[off + PI_PREFIX_LEN_OFF] = p.prefixLen;
    out[off + PI_FLAGS_OFF] = (p.onLink ? PI_FLAG_ONLINK : 0) |
      (p.autonomous ? PI_FLAG_AUTONOMOUS : 0);
    write32(out, off + PI_VALID_OFF, p.validLifetime);
    write32(out, off + PI_PREFERRED_OFF, p.preferredLifetime);
    out.set(p.prefix, off + PI_PREFIX_OFF);
    off += PREFIX_OPT_LEN;
  }
  for (const r of o.rdnss ?? []) {
    const len = RDNSS_HEADER_LEN + r.servers.length * IPV6_LEN;
    header(NDP_OPT_RDNSS, len);
    write32(out, off + RDNSS_LIFETIME_OFF, r.lifetime);
    r.servers.forEach((s, i) => out.set(s, off + RDNSS_HEADER_LEN + i * IPV6_LEN));
    off += len;
  }
}

/** Emits the message from `src` to `dst` with its checksum. */
export function emitIcmpv6(r: Icmpv6Repr, src: Ipv6Addr, dst: Ipv6Addr): Uint8Array {
  let out: Uint8Array;
  switch (r.kind) {
    case "echo_request":
    case "echo_reply":
      out = new Uint8Array(ICMPV6_HEADER_LEN + r.data.length);
      out[TYPE_OFF] = r.kind === "echo_request" ? ICMPV6_ECHO_REQUEST : ICMPV6_ECHO_REPLY;
      write16(out, IDENT_OFF, r.ident);
      write16(out, SEQ_OFF, r.seq);
      out.set(r.data, ICMPV6_HEADER_LEN);
      break;
    case "dest_unreachable":
    case "time_exceeded":
      out = new Uint8Array(ICMPV6_HEADER_LEN + r.data.length);
      out[TYPE_OFF] = r.kind === "dest_unreachable"
        ? ICMPV6_DEST_UNREACHABLE
        : ICMPV6_TIME_EXCEEDED;
      out[CODE_OFF] = r.code;
      out.set(r.data, ICMPV6_HEADER_LEN);
      break;
    case "packet_too_big":
      out = new Uint8Array(ICMPV6_HEADER_LEN + r.data.length);
      out[TYPE_OFF] = ICMPV6_PACKET_TOO_BIG;
      write32(out, MTU_OFF, r.mtu);
      out.set(r.data, ICMPV6_HEADER_LEN);
      break;
    case "router_solicit":
      out = new Uint8Array(RS_LEN + ndpOptionsLen(r.options));
      out[TYPE_OFF] = ICMPV6_ROUTER_SOLICIT;
      emitNdpOptions(r.options, out, RS_LEN);
      break;
    case "router_advert":
      out = new Uint8Array(RA_LEN + ndpOptionsLen(r.options));
      out[TYPE_OFF] = ICMPV6_ROUTER_ADVERT;
      out[RA_HOP_LIMIT_OFF] = r.curHopLimit;
      out[RA_FLAGS_OFF] = (r.managed ? RA_FLAG_MANAGED : 0) | (r.other ? RA_FLAG_OTHER : 0);
      write16(out, RA_LIFETIME_OFF, r.routerLifetime);
      write32(out, RA_REACHABLE_OFF, r.reachableTime);
      write32(out, RA_RETRANS_OFF, r.retransTimer);
      emitNdpOptions(r.options, out, RA_LEN);
      break;
    case "neighbor_solicit":
    case "neighbor_advert":
      out = new Uint8Array(NS_NA_LEN + ndpOptionsLen(r.options));
      if (r.kind === "neighbor_solicit") {
        out[TYPE_OFF] = ICMPV6_NEIGHBOR_SOLICIT;
      } else {
        out[TYPE_OFF] = ICMPV6_NEIGHBOR_ADVERT;
        out[NA_FLAGS_OFF] = (r.router ? NA_FLAG_ROUTER : 0) |
          (r.solicited ? NA_FLAG_SOLICITED : 0) | (r.override ? NA_FLAG_OVERRIDE : 0);
      }
      out.set(r.target, TARGET_OFF);
      emitNdpOptions(r.options, out, NS_NA_LEN);
      break;
  }
  const sum = checksumAdd(pseudoHeaderSum(src, dst, IP_PROTO_ICMPV6, out.length), out);
  write16(out, CHECKSUM_OFF, checksumFinish(sum));
  return out;
}
