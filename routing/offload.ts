/**
 * Checksum and segmentation offloads (virtio 1.x section 5.1.6): the virtio-net header that
 * travels with each frame, its validation, and the software fallbacks for a receiver that
 * cannot take what the sender offloaded: checksum completion for TCP and UDP, and TCP
 * segmentation (TSO) for IPv4 and IPv6. Pure: bytes in, bytes out, no I/O.
 *
 * A frame's metadata is the 10-byte header the guest wrote (num_buffers left out):
 * flags u8, gso_type u8, hdr_len u16, gso_size u16, csum_start u16, csum_offset u16,
 * little-endian.
 *
 * @example
 * ```ts
 * const caps = capsFromFeatures(0n); // a receiver without offloads
 * adaptForReceiver(caps, meta, frame, (m, f) => batch.push(f, m), new Uint8Array(MAX_SEGMENT));
 * ```
 * @module
 */

import { read16, read32, write16, write32 } from "../wire/bytes.ts";
import { checksumAdd, checksumFinish, pseudoHeaderSum } from "../wire/checksum.ts";
import { ETHERNET_HEADER_LEN, ETHERTYPE_IPV4, ETHERTYPE_IPV6 } from "../wire/ethernet.ts";
import { IP_PROTO_TCP, IP_PROTO_UDP, IPV4_HEADER_LEN } from "../wire/ipv4.ts";
import { IPV6_HEADER_LEN } from "../wire/ipv6.ts";
import type { FrameRing } from "./ring.ts";

/** Bytes of metadata per frame (the virtio-net header without num_buffers). */
export const META_SIZE = 10;
/** flags: the L4 checksum is partial; complete it from csum_start, store at +csum_offset. */
export const HDR_F_NEEDS_CSUM = 1;
/** flags: the checksum was verified (device to driver only). */
export const HDR_F_DATA_VALID = 2;
/** gso_type values; {@link GSO_ECN} is a bit on top of the type. */
export const GSO_NONE = 0;
/** TCP over IPv4 segmentation. */
export const GSO_TCPV4 = 1;
/** UDP fragmentation offload (UFO): never offered, so never accepted. */
export const GSO_UDP = 3;
/** TCP over IPv6 segmentation. */
export const GSO_TCPV6 = 4;
/** The TCP CWR flag may be set: it stays on the first segment only (RFC 3168). */
export const GSO_ECN = 0x80;

/** Virtio-net feature bits of the offloads. */
export const OffloadFeature = {
  CSUM: 0,
  GUEST_CSUM: 1,
  GUEST_TSO4: 7,
  GUEST_TSO6: 8,
  GUEST_ECN: 9,
  HOST_TSO4: 11,
  HOST_TSO6: 12,
  HOST_ECN: 13,
} as const;

const FLAGS_OFF = 0;
const GSO_TYPE_OFF = 1;
const HDR_LEN_OFF = 2;
const GSO_SIZE_OFF = 4;
const CSUM_START_OFF = 6;
const CSUM_OFFSET_OFF = 8;

const ETHERTYPE_OFF = 12;
const IPV4_TOTAL_LEN_OFF = 2;
const IPV4_ID_OFF = 4;
const IPV4_PROTO_OFF = 9;
const IPV4_CHECKSUM_OFF = 10;
const IPV4_SRC_OFF = 12;
const IPV4_ADDR_LEN = 4;
const IPV6_PAYLOAD_LEN_OFF = 4;
const IPV6_NEXT_HEADER_OFF = 6;
const IPV6_SRC_OFF = 8;
const IPV6_ADDR_LEN = 16;
const TCP_SEQ_OFF = 4;
const TCP_DATA_OFFSET_OFF = 12;
const TCP_FLAGS_OFF = 13;
const TCP_CHECKSUM_OFF = 16;
const TCP_MIN_HEADER_LEN = 20;
const UDP_CHECKSUM_OFF = 6;
const TCP_FIN = 0x01;
const TCP_PSH = 0x08;
const TCP_CWR = 0x80;
const IPV4_ID_MASK = 0xffff;

/** The largest segment {@link adaptForReceiver} builds: an IP packet of at most 65535 bytes
 * behind an Ethernet header, so a scratch buffer of this size always suffices. */
export const MAX_SEGMENT = ETHERNET_HEADER_LEN + 0xffff;

/** The metadata of a frame without offloads (all zero). */
export const NO_OFFLOAD: Uint8Array = new Uint8Array(META_SIZE);

/** The virtio-net header fields, decoded. */
export interface NetHeader {
  flags: number;
  gsoType: number;
  hdrLen: number;
  gsoSize: number;
  csumStart: number;
  csumOffset: number;
}

/** Decodes 10 bytes of metadata. */
export function readNetHeader(meta: Uint8Array): NetHeader {
  return {
    flags: meta[FLAGS_OFF],
    gsoType: meta[GSO_TYPE_OFF],
    hdrLen: le16(meta, HDR_LEN_OFF),
    gsoSize: le16(meta, GSO_SIZE_OFF),
    csumStart: le16(meta, CSUM_START_OFF),
    csumOffset: le16(meta, CSUM_OFFSET_OFF),
  };
}

/** Encodes a header into 10 bytes of metadata. */
export function writeNetHeader(meta: Uint8Array, h: NetHeader): void {
  meta[FLAGS_OFF] = h.flags;
  meta[GSO_TYPE_OFF] = h.gsoType;
  setLe16(meta, HDR_LEN_OFF, h.hdrLen);
  setLe16(meta, GSO_SIZE_OFF, h.gsoSize);
  setLe16(meta, CSUM_START_OFF, h.csumStart);
  setLe16(meta, CSUM_OFFSET_OFF, h.csumOffset);
}

/** True when the frame carries a partial checksum or is a GSO frame. */
export function hasOffload(meta: Uint8Array): boolean {
  return (meta[FLAGS_OFF] & HDR_F_NEEDS_CSUM) !== 0 || meta[GSO_TYPE_OFF] !== GSO_NONE;
}

/** The GSO segment size, 0 for a frame that is not a GSO frame. */
export function gsoSize(meta: Uint8Array): number {
  return meta[GSO_TYPE_OFF] === GSO_NONE ? 0 : le16(meta, GSO_SIZE_OFF);
}

/** What a receiver takes as it is. */
export interface OffloadCaps {
  /** Partial checksums (VIRTIO_NET_F_GUEST_CSUM). */
  csum: boolean;
  /** TCP/IPv4 GSO frames (GUEST_TSO4). */
  tso4: boolean;
  /** TCP/IPv6 GSO frames (GUEST_TSO6). */
  tso6: boolean;
  /** GSO frames with the ECN bit (GUEST_ECN). */
  ecn: boolean;
}

/** A receiver that takes no offload (the TUN device, a guest without GUEST_*). */
export const NO_CAPS: OffloadCaps = { csum: false, tso4: false, tso6: false, ecn: false };

/** The receive-side offloads a guest negotiated. */
export function capsFromFeatures(features: bigint): OffloadCaps {
  const has = (b: number) => ((features >> BigInt(b)) & 1n) === 1n;
  const csum = has(OffloadFeature.GUEST_CSUM);
  // The spec makes GUEST_TSO*/ECN depend on GUEST_CSUM: without it they mean nothing.
  return {
    csum,
    tso4: csum && has(OffloadFeature.GUEST_TSO4),
    tso6: csum && has(OffloadFeature.GUEST_TSO6),
    ecn: csum && has(OffloadFeature.GUEST_ECN),
  };
}

/** Where a TCP or UDP packet's headers sit in an Ethernet frame. */
interface L4Layout {
  ipv6: boolean;
  /** Offset of the IP header. */
  l3: number;
  /** Offset of the L4 header. */
  l4: number;
  /** End of the IP packet (frame bytes past it are padding). */
  end: number;
  protocol: number;
}

/** Parses Ethernet + IPv4 (with options) or IPv6 (no extension headers) far enough to find the
 * L4 header; null when the frame is neither or is malformed. */
function layout(frame: Uint8Array): L4Layout | null {
  const l3 = ETHERNET_HEADER_LEN;
  if (frame.length < l3) return null;
  const ethertype = read16(frame, ETHERTYPE_OFF);
  if (ethertype === ETHERTYPE_IPV4) {
    if (frame.length < l3 + IPV4_HEADER_LEN || frame[l3] >> 4 !== 4) return null;
    const ihl = (frame[l3] & 0x0f) * 4;
    const total = read16(frame, l3 + IPV4_TOTAL_LEN_OFF);
    if (ihl < IPV4_HEADER_LEN || total < ihl || l3 + total > frame.length) return null;
    return { ipv6: false, l3, l4: l3 + ihl, end: l3 + total, protocol: frame[l3 + IPV4_PROTO_OFF] };
  }
  if (ethertype === ETHERTYPE_IPV6) {
    if (frame.length < l3 + IPV6_HEADER_LEN || frame[l3] >> 4 !== 6) return null;
    const end = l3 + IPV6_HEADER_LEN + read16(frame, l3 + IPV6_PAYLOAD_LEN_OFF);
    if (end > frame.length) return null;
    const protocol = frame[l3 + IPV6_NEXT_HEADER_OFF];
    return { ipv6: true, l3, l4: l3 + IPV6_HEADER_LEN, end, protocol };
  }
  return null;
}

/** Why a frame's offload metadata was refused; each is a counter. */
export type OffloadError =
  | "offload_bad_flags"
  | "offload_bad_csum"
  | "offload_gso_unsupported"
  | "offload_gso_malformed";

/**
 * Checks the metadata a guest sent with `frame`: only NEEDS_CSUM among the flags, a checksum
 * range inside the frame, and a GSO type we offered (TCP over IPv4 or IPv6, with ECN or not)
 * on a frame of that kind with a segment size. Returns null when the frame may be forwarded.
 */
export function checkOffload(meta: Uint8Array, frame: Uint8Array): OffloadError | null {
  const flags = meta[FLAGS_OFF];
  // DATA_VALID is meaningless from a driver (virtio 1.x 5.1.6.2.2): ignored, like Linux does.
  if ((flags & ~(HDR_F_NEEDS_CSUM | HDR_F_DATA_VALID)) !== 0) return "offload_bad_flags";
  if ((flags & HDR_F_NEEDS_CSUM) !== 0) {
    const start = le16(meta, CSUM_START_OFF);
    const at = start + le16(meta, CSUM_OFFSET_OFF);
    if (start < ETHERNET_HEADER_LEN || at + 2 > frame.length) return "offload_bad_csum";
  }
  const gso = meta[GSO_TYPE_OFF];
  if (gso === GSO_NONE) return null;
  const type = gso & ~GSO_ECN;
  if (type !== GSO_TCPV4 && type !== GSO_TCPV6) return "offload_gso_unsupported";
  const l = layout(frame);
  if (
    !l || l.protocol !== IP_PROTO_TCP || l.ipv6 !== (type === GSO_TCPV6) ||
    le16(meta, GSO_SIZE_OFF) === 0 || (flags & HDR_F_NEEDS_CSUM) === 0 ||
    le16(meta, CSUM_START_OFF) !== l.l4 || l.l4 + TCP_MIN_HEADER_LEN > l.end
  ) {
    return "offload_gso_malformed";
  }
  const tcpLen = (frame[l.l4 + TCP_DATA_OFFSET_OFF] >> 4) * 4;
  if (tcpLen < TCP_MIN_HEADER_LEN || l.l4 + tcpLen > l.end) return "offload_gso_malformed";
  return null;
}

/** The IP packet length of the largest segment a GSO frame becomes (headers plus gso_size), or
 * null when `frame` is not a well-formed TCP GSO frame. What an MTU check compares. */
export function gsoSegmentIpLen(meta: Uint8Array, frame: Uint8Array): number | null {
  const size = gsoSize(meta);
  const l = layout(frame);
  if (size === 0 || !l || l.protocol !== IP_PROTO_TCP || l.l4 + TCP_MIN_HEADER_LEN > l.end) {
    return null;
  }
  const headers = l.l4 - l.l3 + (frame[l.l4 + TCP_DATA_OFFSET_OFF] >> 4) * 4;
  return Math.min(headers + size, l.end - l.l3);
}

/**
 * Completes a partial checksum in place: the one's complement sum from csum_start to the end of
 * the IP packet, stored at csum_start + csum_offset (where the sender left the pseudo-header
 * sum), and clears NEEDS_CSUM. A UDP checksum that comes out 0 is sent as 0xffff (RFC 768).
 * Returns false (nothing changed) when the range does not lie in the frame.
 */
export function completeChecksum(meta: Uint8Array, frame: Uint8Array): boolean {
  if ((meta[FLAGS_OFF] & HDR_F_NEEDS_CSUM) === 0) return true;
  const start = le16(meta, CSUM_START_OFF);
  const at = start + le16(meta, CSUM_OFFSET_OFF);
  const l = layout(frame);
  const end = l ? l.end : frame.length;
  if (start < ETHERNET_HEADER_LEN || at + 2 > end) return false;
  let sum = checksumFinish(checksumAdd(0, frame.subarray(start, end)));
  if (sum === 0 && l?.protocol === IP_PROTO_UDP && at === l.l4 + UDP_CHECKSUM_OFF) sum = 0xffff;
  write16(frame, at, sum);
  meta[FLAGS_OFF] &= ~HDR_F_NEEDS_CSUM;
  return true;
}

/** What {@link adaptForReceiver} did with a frame. */
export type AdaptResult =
  | { kind: "passed" }
  | { kind: "completed" }
  | { kind: "segmented"; segments: number }
  | { kind: "dropped"; reason: OffloadError | "receiver_full" };

/**
 * Hands `frame` to `sink` in a form the receiver with `caps` takes: unchanged when it accepts
 * every offload the frame uses; with its checksum completed when it cannot take a partial
 * checksum; cut into TCP segments of gso_size when it cannot take the GSO type. `scratch`
 * (at least {@link MAX_SEGMENT} bytes) holds each segment while `sink` copies it. `sink`
 * returns false when it cannot take more (the rest is dropped).
 */
export function adaptForReceiver(
  caps: OffloadCaps,
  meta: Uint8Array,
  frame: Uint8Array,
  sink: (meta: Uint8Array, frame: Uint8Array) => boolean,
  scratch: Uint8Array,
): AdaptResult {
  const gso = meta[GSO_TYPE_OFF];
  if (gso !== GSO_NONE) {
    const type = gso & ~GSO_ECN;
    const takes = (type === GSO_TCPV4 ? caps.tso4 : type === GSO_TCPV6 && caps.tso6) &&
      ((gso & GSO_ECN) === 0 || caps.ecn);
    if (takes) return pass(sink, meta, frame);
    const bad = checkOffload(meta, frame);
    if (bad) return { kind: "dropped", reason: bad };
    return segmentTcp(meta, frame, sink, scratch);
  }
  if ((meta[FLAGS_OFF] & HDR_F_NEEDS_CSUM) === 0 || caps.csum) return pass(sink, meta, frame);
  if (!completeChecksum(meta, frame)) return { kind: "dropped", reason: "offload_bad_csum" };
  return sink(meta, frame) ? { kind: "completed" } : { kind: "dropped", reason: "receiver_full" };
}

function pass(
  sink: (meta: Uint8Array, frame: Uint8Array) => boolean,
  meta: Uint8Array,
  frame: Uint8Array,
): AdaptResult {
  return sink(meta, frame) ? { kind: "passed" } : { kind: "dropped", reason: "receiver_full" };
}

const segMeta = new Uint8Array(META_SIZE);

/**
 * Cuts a TCP GSO frame (checked by {@link checkOffload}) into segments of at most gso_size
 * payload bytes, each a complete frame with no offload left: IPv4 total length, identification
 * (the first segment's plus its index) and header checksum, or the IPv6 payload length; the TCP
 * sequence number advanced by the payload before it; FIN and PSH only on the last segment, CWR
 * only on the first; the TCP checksum computed.
 */
export function segmentTcp(
  meta: Uint8Array,
  frame: Uint8Array,
  sink: (meta: Uint8Array, frame: Uint8Array) => boolean,
  scratch: Uint8Array,
): AdaptResult {
  const l = layout(frame)!;
  const tcpLen = (frame[l.l4 + TCP_DATA_OFFSET_OFF] >> 4) * 4;
  const hdrEnd = l.l4 + tcpLen;
  const payload = l.end - hdrEnd;
  const mss = le16(meta, GSO_SIZE_OFF);
  const count = Math.max(1, Math.ceil(payload / mss));
  if (hdrEnd + Math.min(mss, payload) > scratch.length) {
    return { kind: "dropped", reason: "offload_gso_malformed" };
  }
  const seq0 = read32(frame, l.l4 + TCP_SEQ_OFF);
  const flags0 = frame[l.l4 + TCP_FLAGS_OFF];
  const id0 = l.ipv6 ? 0 : read16(frame, l.l3 + IPV4_ID_OFF);
  const addrOff = l.l3 + (l.ipv6 ? IPV6_SRC_OFF : IPV4_SRC_OFF);
  const addrLen = l.ipv6 ? IPV6_ADDR_LEN : IPV4_ADDR_LEN;
  const src = frame.subarray(addrOff, addrOff + addrLen);
  const dst = frame.subarray(addrOff + addrLen, addrOff + 2 * addrLen);
  segMeta.fill(0);
  for (let i = 0; i < count; i++) {
    const from = hdrEnd + i * mss;
    const len = Math.min(mss, l.end - from);
    const segEnd = hdrEnd + len;
    scratch.set(frame.subarray(0, hdrEnd), 0);
    scratch.set(frame.subarray(from, from + len), hdrEnd);
    if (l.ipv6) {
      write16(scratch, l.l3 + IPV6_PAYLOAD_LEN_OFF, segEnd - l.l3 - IPV6_HEADER_LEN);
    } else {
      write16(scratch, l.l3 + IPV4_TOTAL_LEN_OFF, segEnd - l.l3);
      write16(scratch, l.l3 + IPV4_ID_OFF, (id0 + i) & IPV4_ID_MASK);
      write16(scratch, l.l3 + IPV4_CHECKSUM_OFF, 0);
      write16(
        scratch,
        l.l3 + IPV4_CHECKSUM_OFF,
        checksumFinish(checksumAdd(0, scratch.subarray(l.l3, l.l4))),
      );
    }
    write32(scratch, l.l4 + TCP_SEQ_OFF, (seq0 + i * mss) >>> 0);
    let flags = flags0;
    if (i !== count - 1) flags &= ~(TCP_FIN | TCP_PSH);
    if (i !== 0) flags &= ~TCP_CWR;
    scratch[l.l4 + TCP_FLAGS_OFF] = flags;
    write16(scratch, l.l4 + TCP_CHECKSUM_OFF, 0);
    const tcpBytes = segEnd - l.l4;
    const sum = checksumAdd(
      pseudoHeaderSum(src, dst, IP_PROTO_TCP, tcpBytes),
      scratch.subarray(l.l4, segEnd),
    );
    write16(scratch, l.l4 + TCP_CHECKSUM_OFF, checksumFinish(sum));
    if (!sink(segMeta, scratch.subarray(0, segEnd))) {
      return { kind: "dropped", reason: "receiver_full" };
    }
  }
  return { kind: "segmented", segments: count };
}

/**
 * Prepares a frame a guest sent for the gateway's own services and the router: refuses bad
 * metadata, and completes a partial checksum of a non-GSO UDP datagram (Linux sends DHCP that
 * way once CSUM is negotiated), because the services verify checksums. TCP keeps its partial
 * checksum: the receiver completes it, or takes it as it is.
 */
export function prepareFromGuest(meta: Uint8Array, frame: Uint8Array): OffloadError | null {
  if (!hasOffload(meta)) return null;
  const bad = checkOffload(meta, frame);
  if (bad) return bad;
  if (meta[GSO_TYPE_OFF] !== GSO_NONE || (meta[FLAGS_OFF] & HDR_F_NEEDS_CSUM) === 0) return null;
  const l = layout(frame);
  if (l && l.protocol === IP_PROTO_UDP && !completeChecksum(meta, frame)) return "offload_bad_csum";
  return null;
}

let tunScratch: Uint8Array | undefined;

/**
 * Pushes the IP packet of a routed frame into the TUN actor's ring: `packet` itself when the
 * frame carries no offload, else each packet the software path makes of it (checksum completed,
 * or TCP segments), since the TUN device is opened without a virtio-net header and takes only
 * complete packets. Returns null, or why (some of) the frame was dropped.
 */
export function pushToTun(
  ring: FrameRing,
  packet: Uint8Array,
  meta: Uint8Array,
  frame: Uint8Array,
): OffloadError | "tun_ring_full" | null {
  if (!hasOffload(meta)) return ring.push(packet) ? null : "tun_ring_full";
  tunScratch ??= new Uint8Array(MAX_SEGMENT);
  const r = adaptForReceiver(
    NO_CAPS,
    meta,
    frame,
    (_, f) => ring.push(f === frame ? packet : f.subarray(ETHERNET_HEADER_LEN)),
    tunScratch,
  );
  if (r.kind !== "dropped") return null;
  return r.reason === "receiver_full" ? "tun_ring_full" : r.reason;
}

function le16(b: Uint8Array, off: number): number {
  return b[off] | (b[off + 1] << 8);
}

function setLe16(b: Uint8Array, off: number, v: number): void {
  b[off] = v & 0xff;
  b[off + 1] = (v >>> 8) & 0xff;
}
