/**
 * IPv4 headers (RFC 791). Options are validated for length and skipped: the repr carries no
 * options and emit writes a 20-byte header.
 * @module
 */

import { IPV4_LEN, type Ipv4Addr } from "./addr.ts";
import { read16, write16 } from "./bytes.ts";
import { internetChecksum } from "./checksum.ts";
import { WireError } from "./error.ts";

/** Length of an IPv4 header without options. */
export const IPV4_HEADER_LEN = 20;
/** Protocol number of ICMP. */
export const IP_PROTO_ICMP = 1;
/** Protocol number of UDP. */
export const IP_PROTO_UDP = 17;
/** Protocol number of TCP. */
export const IP_PROTO_TCP = 6;

const VERSION = 4;
const IHL_UNIT = 4;
const VER_IHL_OFF = 0;
const TOS_OFF = 1;
const TOTAL_LEN_OFF = 2;
const IDENT_OFF = 4;
const FLAGS_FRAG_OFF = 6;
const TTL_OFF = 8;
const PROTO_OFF = 9;
const CHECKSUM_OFF = 10;
const SRC_OFF = 12;
const DST_OFF = 16;
const FLAG_DF = 0x4000;
const FLAG_MF = 0x2000;
const FLAG_RESERVED = 0x8000;
const FRAG_OFFSET_MASK = 0x1fff;

/** Checked view over an IPv4 packet: version, header length, total length and checksum. */
export class Ipv4Packet {
  private constructor(readonly buffer: Uint8Array) {}

  /**
   * Wraps `buf` after checking the version, that the header length is at least 20 and fits,
   * that the total length covers the header and fits the buffer (bytes beyond it are link
   * padding), and the header checksum.
   */
  static checked(buf: Uint8Array): Ipv4Packet | WireError {
    if (buf.length < IPV4_HEADER_LEN) {
      return new WireError("ipv4", "truncated", `${buf.length} bytes, header needs 20`);
    }
    const version = buf[VER_IHL_OFF] >> 4;
    if (version !== VERSION) return new WireError("ipv4", "bad_version", `version ${version}`);
    const headerLen = (buf[VER_IHL_OFF] & 0x0f) * IHL_UNIT;
    if (headerLen < IPV4_HEADER_LEN) {
      return new WireError("ipv4", "malformed", `header length ${headerLen}`);
    }
    const totalLen = read16(buf, TOTAL_LEN_OFF);
    if (totalLen < headerLen) {
      return new WireError("ipv4", "malformed", `total length ${totalLen} < header ${headerLen}`);
    }
    if (totalLen > buf.length) {
      return new WireError("ipv4", "truncated", `total length ${totalLen} > ${buf.length} bytes`);
    }
    if (read16(buf, FLAGS_FRAG_OFF) & FLAG_RESERVED) {
      return new WireError("ipv4", "malformed", "reserved flag set");
    }
    if (internetChecksum(buf.subarray(0, headerLen)) !== 0) {
      return new WireError("ipv4", "bad_checksum", "header checksum");
    }
    return new Ipv4Packet(buf);
  }

  /** Header length in bytes, options included. */
  get headerLen(): number {
    return (this.buffer[VER_IHL_OFF] & 0x0f) * IHL_UNIT;
  }
  /** Total length field. */
  get totalLen(): number {
    return read16(this.buffer, TOTAL_LEN_OFF);
  }
  /** Type of service byte (DSCP and ECN). */
  get tos(): number {
    return this.buffer[TOS_OFF];
  }
  /** Identification. */
  get identification(): number {
    return read16(this.buffer, IDENT_OFF);
  }
  /** Don't Fragment flag. */
  get dontFragment(): boolean {
    return (read16(this.buffer, FLAGS_FRAG_OFF) & FLAG_DF) !== 0;
  }
  /** More Fragments flag. */
  get moreFragments(): boolean {
    return (read16(this.buffer, FLAGS_FRAG_OFF) & FLAG_MF) !== 0;
  }
  /** Fragment offset in 8-byte units. */
  get fragmentOffset(): number {
    return read16(this.buffer, FLAGS_FRAG_OFF) & FRAG_OFFSET_MASK;
  }
  /** Time to live. */
  get ttl(): number {
    return this.buffer[TTL_OFF];
  }
  /** Upper-layer protocol number. */
  get protocol(): number {
    return this.buffer[PROTO_OFF];
  }
  /** Source address (a view). */
  get src(): Ipv4Addr {
    return this.buffer.subarray(SRC_OFF, SRC_OFF + IPV4_LEN);
  }
  /** Destination address (a view). */
  get dst(): Ipv4Addr {
    return this.buffer.subarray(DST_OFF, DST_OFF + IPV4_LEN);
  }
  /** The payload up to the total length (a view, padding excluded). */
  get payload(): Uint8Array {
    return this.buffer.subarray(this.headerLen, this.totalLen);
  }
}

/** An IPv4 packet as plain data (options dropped). */
export interface Ipv4Repr {
  tos: number;
  identification: number;
  dontFragment: boolean;
  moreFragments: boolean;
  /** In 8-byte units, as on the wire. */
  fragmentOffset: number;
  ttl: number;
  protocol: number;
  src: Ipv4Addr;
  dst: Ipv4Addr;
  /** The payload; parse returns a view into the packet. */
  payload: Uint8Array;
}

/** Parses and verifies an IPv4 packet. */
export function parseIpv4Packet(buf: Uint8Array): Ipv4Repr | WireError {
  const p = Ipv4Packet.checked(buf);
  if (p instanceof WireError) return p;
  return {
    tos: p.tos,
    identification: p.identification,
    dontFragment: p.dontFragment,
    moreFragments: p.moreFragments,
    fragmentOffset: p.fragmentOffset,
    ttl: p.ttl,
    protocol: p.protocol,
    src: p.src.slice(),
    dst: p.dst.slice(),
    payload: p.payload,
  };
}

/** Largest payload a 16-bit total length leaves room for. */
export const IPV4_MAX_PAYLOAD = 0xffff - IPV4_HEADER_LEN;

/** Emits a 20-byte header with its checksum, then the payload. */
export function emitIpv4Packet(r: Ipv4Repr): Uint8Array | WireError {
  if (r.payload.length > IPV4_MAX_PAYLOAD) {
    return new WireError("ipv4", "malformed", `payload of ${r.payload.length} bytes`);
  }
  const out = new Uint8Array(IPV4_HEADER_LEN + r.payload.length);
  out[VER_IHL_OFF] = (VERSION << 4) | (IPV4_HEADER_LEN / IHL_UNIT);
  out[TOS_OFF] = r.tos;
  write16(out, TOTAL_LEN_OFF, out.length);
  write16(out, IDENT_OFF, r.identification);
  write16(
    out,
    FLAGS_FRAG_OFF,
    (r.dontFragment ? FLAG_DF : 0) | (r.moreFragments ? FLAG_MF : 0) |
      (r.fragmentOffset & FRAG_OFFSET_MASK),
  );
  out[TTL_OFF] = r.ttl;
  out[PROTO_OFF] = r.protocol;
  out.set(r.src, SRC_OFF);
  out.set(r.dst, DST_OFF);
  write16(out, CHECKSUM_OFF, internetChecksum(out.subarray(0, IPV4_HEADER_LEN)));
  out.set(r.payload, IPV4_HEADER_LEN);
  return out;
}
