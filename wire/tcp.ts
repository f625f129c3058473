/**
 * TCP headers (RFC 9293), as far as the offload path and its tests need them: a checked view
 * with one accessor per field and checksum verification against the IPv4 or IPv6
 * pseudo-header. Options are length-checked and skipped.
 * @module
 */

import { read16, read32 } from "./bytes.ts";
import { checksumAdd, checksumFinish, pseudoHeaderSum } from "./checksum.ts";
import { WireError } from "./error.ts";
import { IP_PROTO_TCP } from "./ipv4.ts";

/** Length of a TCP header without options. */
export const TCP_HEADER_LEN = 20;

/** TCP flag bits (the low byte of the flags field). */
export const TcpFlag = {
  FIN: 0x01,
  SYN: 0x02,
  RST: 0x04,
  PSH: 0x08,
  ACK: 0x10,
  URG: 0x20,
  ECE: 0x40,
  CWR: 0x80,
} as const;

const SRC_PORT_OFF = 0;
const DST_PORT_OFF = 2;
const SEQ_OFF = 4;
const ACK_OFF = 8;
const DATA_OFFSET_OFF = 12;
const FLAGS_OFF = 13;
const WINDOW_OFF = 14;
const CHECKSUM_OFF = 16;
const URGENT_OFF = 18;

/** Checked view over a TCP segment (header and payload). */
export class TcpSegment {
  private constructor(readonly buffer: Uint8Array) {}

  /**
   * Wraps `buf` (the whole segment: the IP payload) after checking that the header with its
   * options fits, and, when `src` and `dst` are given, the checksum over their pseudo-header.
   */
  static checked(buf: Uint8Array, src?: Uint8Array, dst?: Uint8Array): TcpSegment | WireError {
    if (buf.length < TCP_HEADER_LEN) {
      return new WireError("tcp", "truncated", `${buf.length} bytes, header needs 20`);
    }
    const headerLen = (buf[DATA_OFFSET_OFF] >> 4) * 4;
    if (headerLen < TCP_HEADER_LEN || headerLen > buf.length) {
      return new WireError("tcp", "malformed", `data offset ${headerLen} in ${buf.length} bytes`);
    }
    if (src && dst) {
      const sum = checksumAdd(pseudoHeaderSum(src, dst, IP_PROTO_TCP, buf.length), buf);
      if (checksumFinish(sum) !== 0) return new WireError("tcp", "bad_checksum", "checksum");
    }
    return new TcpSegment(buf);
  }

  /** Source port. */
  get srcPort(): number {
    return read16(this.buffer, SRC_PORT_OFF);
  }
  /** Destination port. */
  get dstPort(): number {
    return read16(this.buffer, DST_PORT_OFF);
  }
  /** Sequence number. */
  get seq(): number {
    return read32(this.buffer, SEQ_OFF);
  }
  /** Acknowledgment number. */
  get ack(): number {
    return read32(this.buffer, ACK_OFF);
  }
  /** Header length in bytes, options included. */
  get headerLen(): number {
    return (this.buffer[DATA_OFFSET_OFF] >> 4) * 4;
  }
  /** Flag bits ({@link TcpFlag}). */
  get flags(): number {
    return this.buffer[FLAGS_OFF];
  }
  /** Window. */
  get window(): number {
    return read16(this.buffer, WINDOW_OFF);
  }
  /** Checksum field. */
  get checksum(): number {
    return read16(this.buffer, CHECKSUM_OFF);
  }
  /** Urgent pointer. */
  get urgent(): number {
    return read16(this.buffer, URGENT_OFF);
  }
  /** Options (a view). */
  get options(): Uint8Array {
    return this.buffer.subarray(TCP_HEADER_LEN, this.headerLen);
  }
  /** Payload (a view). */
  get payload(): Uint8Array {
    return this.buffer.subarray(this.headerLen);
  }
}
