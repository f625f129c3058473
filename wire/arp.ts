/**
 * ARP for IPv4 over Ethernet (RFC 826). Other hardware or protocol types are `unsupported`.
 * @module
 */

import { IPV4_LEN, type Ipv4Addr, MAC_LEN, type MacAddr } from "./addr.ts";
import { read16, write16 } from "./bytes.ts";
import { WireError } from "./error.ts";
import { ETHERTYPE_IPV4 } from "./ethernet.ts";

/** Length of an Ethernet/IPv4 ARP packet. */
export const ARP_LEN = 28;
/** Hardware type Ethernet. */
export const ARP_HTYPE_ETHERNET = 1;
/** ARP request. */
export const ARP_OP_REQUEST = 1;
/** ARP reply. */
export const ARP_OP_REPLY = 2;

const HTYPE_OFF = 0;
const PTYPE_OFF = 2;
const HLEN_OFF = 4;
const PLEN_OFF = 5;
const OP_OFF = 6;
const SHA_OFF = 8;
const SPA_OFF = 14;
const THA_OFF = 18;
const TPA_OFF = 24;

/** Checked view over an Ethernet/IPv4 ARP packet. */
export class ArpPacket {
  private constructor(readonly buffer: Uint8Array) {}

  /** Wraps `buf` after checking length, hardware/protocol types and address lengths. */
  static checked(buf: Uint8Array): ArpPacket | WireError {
    if (buf.length < ARP_LEN) return new WireError("arp", "truncated", `${buf.length} bytes`);
    const htype = read16(buf, HTYPE_OFF);
    const ptype = read16(buf, PTYPE_OFF);
    if (htype !== ARP_HTYPE_ETHERNET || ptype !== ETHERTYPE_IPV4) {
      return new WireError("arp", "unsupported", `htype ${htype} ptype 0x${ptype.toString(16)}`);
    }
    if (buf[HLEN_OFF] !== MAC_LEN || buf[PLEN_OFF] !== IPV4_LEN) {
      return new WireError("arp", "malformed", `hlen ${buf[HLEN_OFF]} plen ${buf[PLEN_OFF]}`);
    }
    const op = read16(buf, OP_OFF);
    if (op !== ARP_OP_REQUEST && op !== ARP_OP_REPLY) {
      return new WireError("arp", "unsupported", `operation ${op}`);
    }
    return new ArpPacket(buf);
  }

  /** Operation: {@link ARP_OP_REQUEST} or {@link ARP_OP_REPLY}. */
  get operation(): number {
    return read16(this.buffer, OP_OFF);
  }
  /** Sender hardware address (a view). */
  get senderMac(): MacAddr {
    return this.buffer.subarray(SHA_OFF, SHA_OFF + MAC_LEN);
  }
  /** Sender protocol address (a view). */
  get senderIp(): Ipv4Addr {
    return this.buffer.subarray(SPA_OFF, SPA_OFF + IPV4_LEN);
  }
  /** Target hardware address (a view). */
  get targetMac(): MacAddr {
    return this.buffer.subarray(THA_OFF, THA_OFF + MAC_LEN);
  }
  /** Target protocol address (a view). */
  get targetIp(): Ipv4Addr {
    return this.buffer.subarray(TPA_OFF, TPA_OFF + IPV4_LEN);
  }
}

/** An Ethernet/IPv4 ARP packet as plain data. */
export interface ArpRepr {
  operation: number;
  senderMac: MacAddr;
  senderIp: Ipv4Addr;
  targetMac: MacAddr;
  targetIp: Ipv4Addr;
}

/** Parses an ARP packet (trailing Ethernet padding is ignored). */
export function parseArp(buf: Uint8Array): ArpRepr | WireError {
  const p = ArpPacket.checked(buf);
  if (p instanceof WireError) return p;
  return {
    operation: p.operation,
    senderMac: p.senderMac.slice(),
    senderIp: p.senderIp.slice(),
    targetMac: p.targetMac.slice(),
    targetIp: p.targetIp.slice(),
  };
}

/** Emits a 28-byte ARP packet. */
export function emitArp(r: ArpRepr): Uint8Array {
  const out = new Uint8Array(ARP_LEN);
  write16(out, HTYPE_OFF, ARP_HTYPE_ETHERNET);
  write16(out, PTYPE_OFF, ETHERTYPE_IPV4);
  out[HLEN_OFF] = MAC_LEN;
  out[PLEN_OFF] = IPV4_LEN;
  write16(out, OP_OFF, r.operation);
  out.set(r.senderMac, SHA_OFF);
  out.set(r.senderIp, SPA_OFF);
  out.set(r.targetMac, THA_OFF);
  out.set(r.targetIp, TPA_OFF);
  return out;
}
