/**
 * ICMP for IPv4 (RFC 792): echo, destination unreachable (with the RFC 1191 next-hop MTU) and
 * time exceeded. Other types are `unsupported`.
 * @module
 */

import { read16, write16 } from "./bytes.ts";
import { internetChecksum } from "./checksum.ts";
import { WireError } from "./error.ts";

/** Length of the ICMP header including the 4 type-specific bytes. */
export const ICMPV4_HEADER_LEN = 8;
/** Type: echo reply. */
export const ICMPV4_ECHO_REPLY = 0;
/** Type: destination unreachable. */
export const ICMPV4_DEST_UNREACHABLE = 3;
/** Type: echo request. */
export const ICMPV4_ECHO_REQUEST = 8;
/** Type: time exceeded. */
export const ICMPV4_TIME_EXCEEDED = 11;

const TYPE_OFF = 0;
const CODE_OFF = 1;
const CHECKSUM_OFF = 2;
const IDENT_OFF = 4;
const SEQ_OFF = 6;
const NEXT_HOP_MTU_OFF = 6;

/** Checked view over an ICMPv4 message (length and checksum verified). */
export class Icmpv4Packet {
  private constructor(readonly buffer: Uint8Array) {}

  /** Wraps `buf` (the whole IP payload) after checking its length and checksum. */
  static checked(buf: Uint8Array): Icmpv4Packet | WireError {
    if (buf.length < ICMPV4_HEADER_LEN) {
      return new WireError("icmpv4", "truncated", `${buf.length} bytes, header needs 8`);
    }
    if (internetChecksum(buf) !== 0) return new WireError("icmpv4", "bad_checksum", "checksum");
    return new Icmpv4Packet(buf);
  }

  /** Message type. */
  get msgType(): number {
    return this.buffer[TYPE_OFF];
  }
  /** Code. */
  get code(): number {
    return this.buffer[CODE_OFF];
  }
  /** Echo identifier. */
  get ident(): number {
    return read16(this.buffer, IDENT_OFF);
  }
  /** Echo sequence number. */
  get seq(): number {
    return read16(this.buffer, SEQ_OFF);
  }
  /** Next-hop MTU of a "fragmentation needed" message. */
  get nextHopMtu(): number {
    return read16(this.buffer, NEXT_HOP_MTU_OFF);
  }
  /** Everything after the 8-byte header (a view). */
  get data(): Uint8Array {
    return this.buffer.subarray(ICMPV4_HEADER_LEN);
  }
}

/** An ICMPv4 message as plain data. `data` is a view after parse. */
export type Icmpv4Repr =
  | { kind: "echo_request" | "echo_reply"; ident: number; seq: number; data: Uint8Array }
  | { kind: "dest_unreachable"; code: number; nextHopMtu: number; data: Uint8Array }
  | { kind: "time_exceeded"; code: number; data: Uint8Array };

/** Parses and verifies an ICMPv4 message. */
export function parseIcmpv4(buf: Uint8Array): Icmpv4Repr | WireError {
  const p = Icmpv4Packet.checked(buf);
  if (p instanceof WireError) return p;
  switch (p.msgType) {
    case ICMPV4_ECHO_REQUEST:
    case ICMPV4_ECHO_REPLY:
      if (p.code !== 0) return new WireError("icmpv4", "malformed", `echo code ${p.code}`);
      return {
        kind: p.msgType === ICMPV4_ECHO_REQUEST ? "echo_request" : "echo_reply",
        ident: p.ident,
        seq: p.seq,
        data: p.data,
      };
    case ICMPV4_DEST_UNREACHABLE:
      return { kind: "dest_unreachable", code: p.code, nextHopMtu: p.nextHopMtu, data: p.data };
    case ICMPV4_TIME_EXCEEDED:
      return { kind: "time_exceeded", code: p.code, data: p.data };
    default:
      return new WireError("icmpv4", "unsupported", `type ${p.msgType}`);
  }
}

/** Emits the message with its checksum. */
export function emitIcmpv4(r: Icmpv4Repr): Uint8Array {
  const out = new Uint8Array(ICMPV4_HEADER_LEN + r.data.length);
  switch (r.kind) {
    case "echo_request":
    case "echo_reply":
      out[TYPE_OFF] = r.kind === "echo_request" ? ICMPV4_ECHO_REQUEST : ICMPV4_ECHO_REPLY;
      write16(out, IDENT_OFF, r.ident);
      write16(out, SEQ_OFF, r.seq);
      break;
    case "dest_unreachable":
      out[TYPE_OFF] = ICMPV4_DEST_UNREACHABLE;
      out[CODE_OFF] = r.code;
      write16(out, NEXT_HOP_MTU_OFF, r.nextHopMtu);
      break;
    case "time_exceeded":
      out[TYPE_OFF] = ICMPV4_TIME_EXCEEDED;
      out[CODE_OFF] = r.code;
      break;
  }
  out.set(r.data, ICMPV4_HEADER_LEN);
  write16(out, CHECKSUM_OFF, internetChecksum(out));
  return out;
}
