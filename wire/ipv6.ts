/**
 * IPv6 fixed headers (RFC 8200). Extension headers are not walked: `nextHeader` is whatever
 * the fixed header says, and the payload starts right after it.
 * @module
 */

import { IPV6_LEN, type Ipv6Addr } from "./addr.ts";
import { read16, read32, write16, write32 } from "./bytes.ts";
import { WireError } from "./error.ts";

/** Length of the IPv6 fixed header. */
export const IPV6_HEADER_LEN = 40;
/** Next-header number of ICMPv6. */
export const IP_PROTO_ICMPV6 = 58;
/** Largest payload length field. */
export const IPV6_MAX_PAYLOAD = 0xffff;

const VERSION = 6;
const VTF_OFF = 0;
const PAYLOAD_LEN_OFF = 4;
const NEXT_HEADER_OFF = 6;
const HOP_LIMIT_OFF = 7;
const SRC_OFF = 8;
const DST_OFF = 24;
const FLOW_LABEL_MASK = 0xfffff;
const TRAFFIC_CLASS_SHIFT = 20;
const VERSION_SHIFT = 28;

/** Checked view over an IPv6 packet. */
export class Ipv6Packet {
  private constructor(readonly buffer: Uint8Array) {}

  /**
   * Wraps `buf` after checking the version and that the payload length fits the buffer
   * (bytes past it are link padding). A zero payload length with a Jumbo option is not
   * supported, as jumbograms cannot occur on an Ethernet link.
   */
  static checked(buf: Uint8Array): Ipv6Packet | WireError {
    if (buf.length < IPV6_HEADER_LEN) {
      return new WireError("ipv6", "truncated", `${buf.length} bytes, header needs 40`);
    }
    const version = buf[VTF_OFF] >> 4;
    if (version !== VERSION) return new WireError("ipv6", "bad_version", `version ${version}`);
    const payloadLen = read16(buf, PAYLOAD_LEN_OFF);
    if (IPV6_HEADER_LEN + payloadLen > buf.length) {
      return new WireError(
        "ipv6",
        "truncated",
        `payload length ${payloadLen} > ${buf.length - IPV6_HEADER_LEN} bytes`,
      );
    }
    return new Ipv6Packet(buf);
  }

  /** Traffic class. */
  get trafficClass(): number {
    return (read32(this.buffer, VTF_OFF) >>> TRAFFIC_CLASS_SHIFT) & 0xff;
  }
  /** Flow label. */
  get flowLabel(): number {
    return read32(this.buffer, VTF_OFF) & FLOW_LABEL_MASK;
  }
  /** Payload length field. */
  get payloadLen(): number {
    return read16(this.buffer, PAYLOAD_LEN_OFF);
  }
  /** Next header. */
  get nextHeader(): number {
    return this.buffer[NEXT_HEADER_OFF];
  }
  /** Hop limit. */
  get hopLimit(): number {
    return this.buffer[HOP_LIMIT_OFF];
  }
  /** Source address (a view). */
  get src(): Ipv6Addr {
    return this.buffer.subarray(SRC_OFF, SRC_OFF + IPV6_LEN);
  }
  /** Destination address (a view). */
  get dst(): Ipv6Addr {
    return this.buffer.subarray(DST_OFF, DST_OFF + IPV6_LEN);
  }
  /** Payload up to the payload length (a view). */
  get payload(): Uint8Array {
    return this.buffer.subarray(IPV6_HEADER_LEN, IPV6_HEADER_LEN + this.payloadLen);
  }
}

/** An IPv6 packet as plain data. */
export interface Ipv6Repr {
  trafficClass: number;
  flowLabel: number;
  nextHeader: number;
  hopLimit: number;
  src: Ipv6Addr;
  dst: Ipv6Addr;
  /** The payload; parse returns a view into the packet. */
  payload: Uint8Array;
}

/** Parses an IPv6 packet. */
export function parseIpv6Packet(buf: Uint8Array): Ipv6Repr | WireError {
  const p = Ipv6Packet.checked(buf);
  if (p instanceof WireError) return p;
  return {
    trafficClass: p.trafficClass,
    flowLabel: p.flowLabel,
    nextHeader: p.nextHeader,
    hopLimit: p.hopLimit,
    src: p.src.slice(),
    dst: p.dst.slice(),
    payload: p.payload,
  };
}

/** Emits the fixed header and the payload. */
export function emitIpv6Packet(r: Ipv6Repr): Uint8Array | WireError {
  if (r.payload.length > IPV6_MAX_PAYLOAD) {
    return new WireError("ipv6", "malformed", `payload of ${r.payload.length} bytes`);
  }
  const out = new Uint8Array(IPV6_HEADER_LEN + r.payload.length);
  write32(
    out,
    VTF_OFF,
    ((VERSION << VERSION_SHIFT) | ((r.trafficClass & 0xff) << TRAFFIC_CLASS_SHIFT) |
      (r.flowLabel & FLOW_LABEL_MASK)) >>> 0,
  );
  write16(out, PAYLOAD_LEN_OFF, r.payload.length);
  out[NEXT_HEADER_OFF] = r.nextHeader;
  out[HOP_LIMIT_OFF] = r.hopLimit;
  out.set(r.src, SRC_OFF);
  out.set(r.dst, DST_OFF);
  out.set(r.payload, IPV6_HEADER_LEN);
  return out;
}
