/**
 * Numbered test frames: IPv4/UDP frames from a guest to another guest's address through the
 * gateway, whose payload carries a marker and a sequence number, so that a test can tell which
 * of its frames arrived (and how often) among everything else a guest receives (RAs, replies).
 * @module
 */
import { ipv4UdpFrame } from "../../services/frames.ts";
import { GATEWAY_MAC } from "../../services/context.ts";
import {
  IP_PROTO_UDP,
  type Ipv4Addr,
  type MacAddr,
  parseEthernet,
  parseIpv4Packet,
  parseUdp,
  WireError,
} from "../../wire/mod.ts";

/** Marks a payload as a numbered test frame ("mvnt"). */
const MARKER = 0x6d766e74;
const PAYLOAD_BYTES = 8;

/** A guest's side of a numbered frame: its MAC and IPv4 address. */
export interface NumberedEnd {
  mac: MacAddr;
  ipv4: Ipv4Addr;
}

/** The frame `from` sends to `toIpv4` (UDP `port` to `port`) carrying `seq`. */
export function numberedFrame(
  from: NumberedEnd,
  toIpv4: Ipv4Addr,
  port: number,
  seq: number,
): Uint8Array {
  const payload = new Uint8Array(PAYLOAD_BYTES);
  const v = new DataView(payload.buffer);
  v.setUint32(0, MARKER);
  v.setUint32(4, seq);
  const f = ipv4UdpFrame(from.mac, GATEWAY_MAC, from.ipv4, toIpv4, port, port, payload);
  if (f instanceof WireError) throw new Error(`test frame: ${f}`);
  return f;
}

/** The sequence number of a numbered frame to UDP `port`, or null for any other frame. */
export function numberOf(frame: Uint8Array, port: number): number | null {
  const eth = parseEthernet(frame);
  if (eth instanceof WireError) return null;
  const ip = parseIpv4Packet(eth.payload);
  if (ip instanceof WireError || ip.protocol !== IP_PROTO_UDP) return null;
  const udp = parseUdp(ip.payload, ip.src, ip.dst);
  if (udp instanceof WireError || udp.dstPort !== port || udp.payload.length < PAYLOAD_BYTES) {
    return null;
  }
  const v = new DataView(udp.payload.buffer, udp.payload.byteOffset);
  return v.getUint32(0) === MARKER ? v.getUint32(4) : null;
}
