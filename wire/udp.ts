/**
 * UDP (RFC 768) over IPv4 or IPv6; the checksum covers the pseudo-header of the family given
 * by the address length.
 * @module
 */

import { IPV6_LEN } from "./addr.ts";
import { read16, write16 } from "./bytes.ts";
import { checksumAdd, checksumFinish, pseudoHeaderSum } from "./checksum.ts";
import { WireError } from "./error.ts";
import { IP_PROTO_UDP } from "./ipv4.ts";

/** Length of the UDP header. */
export const UDP_HEADER_LEN = 8;
/** Largest UDP payload (16-bit length field). */
export const UDP_MAX_PAYLOAD = 0xffff - UDP_HEADER_LEN;

const SRC_PORT_OFF = 0;
const DST_PORT_OFF = 2;
const LENGTH_OFF = 4;
const CHECKSUM_OFF = 6;
/** A computed checksum of 0 is sent as all ones; 0 on the wire means "none" (IPv4 only). */
const CHECKSUM_NONE = 0;
const CHECKSUM_ZERO_AS = 0xffff;

/** Checked view over a UDP datagram. */
export class UdpPacket {
  private constructor(readonly buffer: Uint8Array) {}

  /**
   * Wraps `buf` (the IP payload) after checking the length field against the buffer and the
   * checksum against the pseudo-header of `src`/`dst`. A zero checksum is accepted over IPv4
   * (RFC 768: not computed) and rejected over IPv6 (RFC 8200 section 8.1).
   */
  static checked(buf: Uint8Array, src: Uint8Array, dst: Uint8Array): UdpPacket | WireError {
    if (buf.length < UDP_HEADER_LEN) {
      return new WireError("udp", "truncated", `${buf.length} bytes, header needs 8`);
    }
    const len = read16(buf, LENGTH_OFF);
    if (len < UDP_HEADER_LEN) return new WireError("udp", "malformed", `length ${len}`);
    if (len > buf.length) {
      return new WireError("udp", "truncated", `length ${len} > ${buf.length} bytes`);
    }
    const wire = read16(buf, CHECKSUM_OFF);
    if (wire === CHECKSUM_NONE) {
      if (src.length === IPV6_LEN) return new WireError("udp", "bad_checksum", "zero over IPv6");
    } else {
      const sum = checksumAdd(pseudoHeaderSum(src, dst, IP_PROTO_UDP, len), buf.subarray(0, len));
      if (checksumFinish(sum) !== 0) return new WireError("udp", "bad_checksum", "checksum");
    }
    return new UdpPacket(buf);
  }

  /** Source port. */
  get srcPort(): number {
    return read16(this.buffer, SRC_PORT_OFF);
  }
  /** Destination port. */
  get dstPort(): number {
    return read16(this.buffer, DST_PORT_OFF);
  }
  /** Length field (header included). */
  get length(): number {
    return read16(this.buffer, LENGTH_OFF);
  }
  /** Payload up to the length field (a view). */
  get payload(): Uint8Array {
    return this.buffer.subarray(UDP_HEADER_LEN, this.length);
  }
}

/** A UDP datagram as plain data. */
export interface UdpRepr {
  srcPort: number;
  dstPort: number;
  /** The payload; parse returns a view. */
  payload: Uint8Array;
}

/** Parses and verifies a datagram carried between `src` and `dst`. */
export function parseUdp(buf: Uint8Array, src: Uint8Array, dst: Uint8Array): UdpRepr | WireError {
  const p = UdpPacket.checked(buf, src, dst);
  if (p instanceof WireError) return p;
  return { srcPort: p.srcPort, dstPort: p.dstPort, payload: p.payload };
}

/** Emits a datagram from `src` to `dst` with its checksum. */
export function emitUdp(r: UdpRepr, src: Uint8Array, dst: Uint8Array): Uint8Array | WireError {
  if (r.payload.length > UDP_MAX_PAYLOAD) {
    return new WireError("udp", "malformed", `payload of ${r.payload.length} bytes`);
  }
  const out = new Uint8Array(UDP_HEADER_LEN + r.payload.length);
  write16(out, SRC_PORT_OFF, r.srcPort);
  write16(out, DST_PORT_OFF, r.dstPort);
  write16(out, LENGTH_OFF, out.length);
  out.set(r.payload, UDP_HEADER_LEN);
  const sum = checksumFinish(
    checksumAdd(pseudoHeaderSum(src, dst, IP_PROTO_UDP, out.length), out),
  );
  write16(out, CHECKSUM_OFF, sum === CHECKSUM_NONE ? CHECKSUM_ZERO_AS : sum);
  return out;
}
