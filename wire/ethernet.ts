/**
 * Ethernet II frames (no 802.1Q tag handling: a tagged frame parses with ethertype 0x8100).
 * @module
 */

import { MAC_LEN, type MacAddr } from "./addr.ts";
import { read16, write16 } from "./bytes.ts";
import { WireError } from "./error.ts";

/** Length of the Ethernet II header. */
export const ETHERNET_HEADER_LEN = 14;
/** EtherType of IPv4. */
export const ETHERTYPE_IPV4 = 0x0800;
/** EtherType of ARP. */
export const ETHERTYPE_ARP = 0x0806;
/** EtherType of IPv6. */
export const ETHERTYPE_IPV6 = 0x86dd;
/** Smallest EtherType value; below it the field is an 802.3 length. */
export const ETHERTYPE_MIN = 0x0600;

const DST_OFF = 0;
const SRC_OFF = 6;
const TYPE_OFF = 12;

/** Checked view over an Ethernet II frame. */
export class EthernetFrame {
  private constructor(readonly buffer: Uint8Array) {}

  /** Wraps `buf` after checking it holds a full header and an EtherType, not a length. */
  static checked(buf: Uint8Array): EthernetFrame | WireError {
    if (buf.length < ETHERNET_HEADER_LEN) {
      return new WireError("ethernet", "truncated", `frame of ${buf.length} bytes`);
    }
    const type = read16(buf, TYPE_OFF);
    if (type < ETHERTYPE_MIN) {
      return new WireError("ethernet", "unsupported", `802.3 length field ${type}`);
    }
    return new EthernetFrame(buf);
  }

  /** Destination MAC (a view). */
  get dst(): MacAddr {
    return this.buffer.subarray(DST_OFF, DST_OFF + MAC_LEN);
  }
  /** Source MAC (a view). */
  get src(): MacAddr {
    return this.buffer.subarray(SRC_OFF, SRC_OFF + MAC_LEN);
  }
  /** EtherType. */
  get ethertype(): number {
    return read16(this.buffer, TYPE_OFF);
  }
  /** Everything after the header (a view; may include Ethernet padding). */
  get payload(): Uint8Array {
    return this.buffer.subarray(ETHERNET_HEADER_LEN);
  }
}

/** An Ethernet II frame as plain data. */
export interface EthernetRepr {
  dst: MacAddr;
  src: MacAddr;
  ethertype: number;
  /** The payload; parse returns a view into the frame, not a copy. */
  payload: Uint8Array;
}

/** Parses a frame. MACs are copied; the payload is a view. */
export function parseEthernet(buf: Uint8Array): EthernetRepr | WireError {
  const f = EthernetFrame.checked(buf);
  if (f instanceof WireError) return f;
  return { dst: f.dst.slice(), src: f.src.slice(), ethertype: f.ethertype, payload: f.payload };
}

/** Emits header and payload into a new buffer. */
export function emitEthernet(r: EthernetRepr): Uint8Array {
  const out = new Uint8Array(ETHERNET_HEADER_LEN + r.payload.length);
  out.set(r.dst, DST_OFF);
  out.set(r.src, SRC_OFF);
  write16(out, TYPE_OFF, r.ethertype);
  out.set(r.payload, ETHERNET_HEADER_LEN);
  return out;
}
