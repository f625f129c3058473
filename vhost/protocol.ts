/**
 * The vhost-user wire format (QEMU `docs/interop/vhost-user.rst`): a 12-byte header
 * (request u32, flags u32, payload size u32, little-endian) and one payload struct per
 * request. Pure: bytes in, plain objects out and back; no sockets, no state.
 *
 * {@link decodeMessage} checks everything a frontend controls: the version bits, that the
 * request is one we know, that the payload size matches the request exactly, and the number
 * of file descriptors that came with it. Anything else is a {@link ProtocolError}.
 *
 * @example
 * ```ts
 * const bytes = encodeMessage(Request.SET_FEATURES, 0, u64Payload(1n << 32n));
 * const msg = decodeMessage(bytes, 0); // { request: 2, payload: { kind: "u64", value: 4294967296n }, ... }
 * ```
 * @module
 */

/** Size of the message header. */
export const HEADER_SIZE = 12;
/** The protocol version, in the low two bits of flags. */
export const VERSION = 0x1;
const VERSION_MASK = 0x3;
/** Set in flags of a reply. */
export const FLAG_REPLY = 0x4;
/** Set by the frontend when it wants a REPLY_ACK answer. */
export const FLAG_NEED_REPLY = 0x8;
/** Most memory regions SET_MEM_TABLE carries. */
export const MAX_MEM_TABLE_REGIONS = 8;
/** Largest config space GET_CONFIG / SET_CONFIG move. */
export const MAX_CONFIG_SIZE = 256;
/** Largest message the backend accepts; every valid one (at most SET_MEM_TABLE with 8 regions,
 * or GET_CONFIG with 256 bytes) is far smaller, so a bigger one is malformed. */
export const MAX_MESSAGE_SIZE = 4096;
/** In SET_VRING_KICK/CALL/ERR: no fd follows (the ring is polled / not signalled). */
export const VRING_NOFD_FLAG = 0x100;
const VRING_INDEX_MASK = 0xff;

/** Frontend-to-backend requests, by name. */
export const Request = {
  GET_FEATURES: 1,
  SET_FEATURES: 2,
  SET_OWNER: 3,
  RESET_OWNER: 4,
  SET_MEM_TABLE: 5,
  SET_LOG_BASE: 6,
  SET_LOG_FD: 7,
  SET_VRING_NUM: 8,
  SET_VRING_ADDR: 9,
  SET_VRING_BASE: 10,
  GET_VRING_BASE: 11,
  SET_VRING_KICK: 12,
  SET_VRING_CALL: 13,
  SET_VRING_ERR: 14,
  GET_PROTOCOL_FEATURES: 15,
  SET_PROTOCOL_FEATURES: 16,
  GET_QUEUE_NUM: 17,
  SET_VRING_ENABLE: 18,
  SEND_RARP: 19,
  NET_SET_MTU: 20,
  SET_BACKEND_REQ_FD: 21,
  IOTLB_MSG: 22,
  SET_VRING_ENDIAN: 23,
  GET_CONFIG: 24,
  SET_CONFIG: 25,
  RESET_DEVICE: 34,
  GET_MAX_MEM_SLOTS: 36,
  ADD_MEM_REG: 37,
  REM_MEM_REG: 38,
  SET_STATUS: 39,
  GET_STATUS: 40,
} as const;

/** A request's name. */
export type RequestName = keyof typeof Request;

const REQUEST_NAMES = new Map<number, RequestName>(
  Object.entries(Request).map(([k, v]) => [v, k as RequestName]),
);

/** The name of a request code, or `request N` for one we do not know. */
export function requestName(code: number): string {
  return REQUEST_NAMES.get(code) ?? `request ${code}`;
}

/** Backend-to-frontend requests (on the SET_BACKEND_REQ_FD channel). */
export const BackendRequest = { CONFIG_CHANGE_MSG: 2 } as const;

/** vhost-user protocol feature bits. */
export const ProtocolFeature = {
  MQ: 0,
  REPLY_ACK: 3,
  BACKEND_REQ: 5,
  CONFIG: 9,
  RESET_DEVICE: 13,
  CONFIGURE_MEM_SLOTS: 15,
  STATUS: 16,
} as const;

/** Virtio (and vhost-user transport) feature bits the net device deals in. */
export const Feature = {
  /** The driver may send partial checksums (VIRTIO_NET_F_CSUM). */
  NET_CSUM: 0,
  /** The driver takes partial checksums (VIRTIO_NET_F_GUEST_CSUM). */
  NET_GUEST_CSUM: 1,
  NET_MTU: 3,
  NET_MAC: 5,
  /** The driver takes TCP/IPv4, TCP/IPv6 GSO frames, and with the ECN bit. */
  NET_GUEST_TSO4: 7,
  NET_GUEST_TSO6: 8,
  NET_GUEST_ECN: 9,
  /** The driver may send TCP/IPv4, TCP/IPv6 GSO frames, and with the ECN bit. */
  NET_HOST_TSO4: 11,
  NET_HOST_TSO6: 12,
  NET_HOST_ECN: 13,
  NET_MRG_RXBUF: 15,
  NET_STATUS: 16,
  RING_INDIRECT_DESC: 28,
  RING_EVENT_IDX: 29,
  /** VHOST_USER_F_PROTOCOL_FEATURES. */
  PROTOCOL_FEATURES: 30,
  VERSION_1: 32,
} as const;

/** `1n << bit`. */
export function bit(n: number): bigint {
  return 1n << BigInt(n);
}

/** A frontend sent something that is not a valid message. */
export class ProtocolError extends Error {
  override name = "ProtocolError";
}

/** One guest memory region of SET_MEM_TABLE / ADD_MEM_REG / REM_MEM_REG. */
export interface MemoryRegion {
  guestPhysAddr: bigint;
  memorySize: bigint;
  userspaceAddr: bigint;
  mmapOffset: bigint;
}

/** A decoded payload, by shape. */
export type Payload =
  | { kind: "none" }
  | { kind: "u64"; value: bigint }
  | { kind: "vring_state"; index: number; num: number }
  | {
    kind: "vring_addr";
    index: number;
    flags: number;
    desc: bigint;
    used: bigint;
    avail: bigint;
    log: bigint;
  }
  | { kind: "vring_file"; index: number; noFd: boolean }
  | { kind: "mem_table"; regions: MemoryRegion[] }
  | { kind: "mem_region"; region: MemoryRegion }
  | { kind: "config"; offset: number; size: number; flags: number; data: Uint8Array };

/** A decoded message. */
export interface Message {
  request: number;
  flags: number;
  /** The frontend asked for a REPLY_ACK answer. */
  needReply: boolean;
  payload: Payload;
}

type Shape = Payload["kind"];

/** The payload shape of each request we handle. */
const SHAPES: Partial<Record<number, Shape>> = {
  [Request.GET_FEATURES]: "none",
  [Request.SET_FEATURES]: "u64",
  [Request.SET_OWNER]: "none",
  [Request.RESET_OWNER]: "none",
  [Request.SET_MEM_TABLE]: "mem_table",
  [Request.SET_VRING_NUM]: "vring_state",
  [Request.SET_VRING_ADDR]: "vring_addr",
  [Request.SET_VRING_BASE]: "vring_state",
  [Request.GET_VRING_BASE]: "vring_state",
  [Request.SET_VRING_KICK]: "vring_file",
  [Request.SET_VRING_CALL]: "vring_file",
  [Request.SET_VRING_ERR]: "vring_file",
  [Request.GET_PROTOCOL_FEATURES]: "none",
  [Request.SET_PROTOCOL_FEATURES]: "u64",
  [Request.GET_QUEUE_NUM]: "none",
  [Request.SET_VRING_ENABLE]: "vring_state",
  [Request.SET_BACKEND_REQ_FD]: "none",
  [Request.GET_CONFIG]: "config",
  [Request.SET_CONFIG]: "config",
  [Request.RESET_DEVICE]: "none",
  [Request.GET_MAX_MEM_SLOTS]: "none",
  [Request.ADD_MEM_REG]: "mem_region",
  [Request.REM_MEM_REG]: "mem_region",
  [Request.SET_STATUS]: "u64",
  [Request.GET_STATUS]: "none",
};

/** Fixed payload sizes; mem_table and config are checked against their own contents. */
const FIXED_SIZE: Partial<Record<Shape, number>> = {
  none: 0,
  u64: 8,
  vring_state: 8,
  vring_addr: 40,
  vring_file: 8,
  mem_region: 40,
};

/** The header fields of a message. */
export interface Header {
  request: number;
  flags: number;
  size: number;
}

/** Reads a header; throws unless the version is 1. */
export function decodeHeader(bytes: Uint8Array): Header {
  if (bytes.length < HEADER_SIZE) {
    throw new ProtocolError(`message of ${bytes.length} bytes is shorter than its header`);
  }
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const h = {
    request: v.getUint32(0, true),
    flags: v.getUint32(4, true),
    size: v.getUint32(8, true),
  };
  if ((h.flags & VERSION_MASK) !== VERSION) {
    throw new ProtocolError(
      `${requestName(h.request)}: unsupported version ${h.flags & VERSION_MASK}`,
    );
  }
  return h;
}

function readRegion(v: DataView, off: number): MemoryRegion {
  return {
    guestPhysAddr: v.getBigUint64(off, true),
    memorySize: v.getBigUint64(off + 8, true),
    userspaceAddr: v.getBigUint64(off + 16, true),
    mmapOffset: v.getBigUint64(off + 24, true),
  };
}

function expectFds(name: string, got: number, want: number): void {
  if (got !== want) throw new ProtocolError(`${name}: expected ${want} fds, got ${got}`);
}

function decodePayload(name: string, shape: Shape, p: DataView, nfds: number): Payload {
  switch (shape) {
    case "none":
      return { kind: "none" };
    case "u64":
      return { kind: "u64", value: p.getBigUint64(0, true) };
    case "vring_state":
      return { kind: "vring_state", index: p.getUint32(0, true), num: p.getUint32(4, true) };
    case "vring_addr":
      return {
        kind: "vring_addr",
        index: p.getUint32(0, true),
        flags: p.getUint32(4, true),
        desc: p.getBigUint64(8, true),
        used: p.getBigUint64(16, true),
        avail: p.getBigUint64(24, true),
        log: p.getBigUint64(32, true),
      };
    case "vring_file": {
      const u = p.getBigUint64(0, true);
      if (u >> 9n !== 0n) {
        throw new ProtocolError(`${name}: reserved bits set in 0x${u.toString(16)}`);
      }
      const noFd = (Number(u) & VRING_NOFD_FLAG) !== 0;
      expectFds(name, nfds, noFd ? 0 : 1);
      return { kind: "vring_file", index: Number(u) & VRING_INDEX_MASK, noFd };
    }
    case "mem_table": {
      if (p.byteLength < 8) throw new ProtocolError(`${name}: payload of ${p.byteLength} bytes`);
      const n = p.getUint32(0, true);
      if (n > MAX_MEM_TABLE_REGIONS) {
        throw new ProtocolError(`${name}: ${n} regions, at most ${MAX_MEM_TABLE_REGIONS}`);
      }
      if (p.byteLength < 8 + 32 * n) {
        throw new ProtocolError(`${name}: ${n} regions do not fit in ${p.byteLength} bytes`);
      }
      expectFds(name, nfds, n);
      const regions = [];
      for (let i = 0; i < n; i++) regions.push(readRegion(p, 8 + 32 * i));
      return { kind: "mem_table", regions };
    }
    case "mem_region":
      return { kind: "mem_region", region: readRegion(p, 8) };
    case "config": {
      if (p.byteLength < 12) throw new ProtocolError(`${name}: payload of ${p.byteLength} bytes`);
      const size = p.getUint32(4, true);
      if (size > MAX_CONFIG_SIZE || p.byteLength !== 12 + size) {
        throw new ProtocolError(`${name}: config size ${size} in a ${p.byteLength}-byte payload`);
      }
      return {
        kind: "config",
        offset: p.getUint32(0, true),
        size,
        flags: p.getUint32(8, true),
        data: new Uint8Array(p.buffer.slice(p.byteOffset + 12, p.byteOffset + 12 + size)),
      };
    }
  }
}

/** How many fds each request comes with, when that does not depend on its payload. */
function fixedFds(request: number): number | undefined {
  switch (request) {
    case Request.SET_BACKEND_REQ_FD:
    case Request.ADD_MEM_REG:
      return 1;
    case Request.SET_MEM_TABLE:
    case Request.SET_VRING_KICK:
    case Request.SET_VRING_CALL:
    case Request.SET_VRING_ERR:
    case Request.REM_MEM_REG:
      return undefined;
    default:
      return 0;
  }
}

/** Decodes one whole message (header and payload) that arrived with `nfds` descriptors. */
export function decodeMessage(bytes: Uint8Array, nfds: number): Message {
  const h = decodeHeader(bytes);
  const name = requestName(h.request);
  const shape = SHAPES[h.request];
  if (shape === undefined) throw new ProtocolError(`${name} is not supported`);
  if ((h.flags & FLAG_REPLY) !== 0) throw new ProtocolError(`${name}: reply flag on a request`);
  if (bytes.length !== HEADER_SIZE + h.size) {
    throw new ProtocolError(
      `${name}: header says ${h.size} payload bytes, got ${bytes.length - HEADER_SIZE}`,
    );
  }
  const fixed = FIXED_SIZE[shape];
  if (fixed !== undefined && h.size !== fixed) {
    throw new ProtocolError(`${name}: payload of ${h.size} bytes, expected ${fixed}`);
  }
  const fds = fixedFds(h.request);
  if (fds !== undefined) expectFds(name, nfds, fds);
  // REM_MEM_REG: QEMU sends the region's fd along, other frontends do not; both are fine.
  if (h.request === Request.REM_MEM_REG && nfds > 1) expectFds(name, nfds, 1);
  const p = new DataView(bytes.buffer, bytes.byteOffset + HEADER_SIZE, h.size);
  return {
    request: h.request,
    flags: h.flags,
    needReply: (h.flags & FLAG_NEED_REPLY) !== 0,
    payload: decodePayload(name, shape, p, nfds),
  };
}

/** A whole message: header with `flags | VERSION`, then `payload`. */
export function encodeMessage(request: number, flags: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(HEADER_SIZE + payload.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, request, true);
  v.setUint32(4, flags | VERSION, true);
  v.setUint32(8, payload.length, true);
  out.set(payload, HEADER_SIZE);
  return out;
}

/** A reply to `request` carrying `payload`. */
export function encodeReply(request: number, payload: Uint8Array): Uint8Array {
  return encodeMessage(request, FLAG_REPLY, payload);
}

/** A u64 payload. */
export function u64Payload(value: bigint): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, value, true);
  return out;
}

/** A vring state payload (SET_VRING_NUM/BASE, GET_VRING_BASE, SET_VRING_ENABLE). */
export function vringStatePayload(index: number, num: number): Uint8Array {
  const out = new Uint8Array(8);
  const v = new DataView(out.buffer);
  v.setUint32(0, index, true);
  v.setUint32(4, num, true);
  return out;
}

/** A vring address payload (SET_VRING_ADDR); addresses are the frontend's virtual ones. */
export function vringAddrPayload(
  index: number,
  a: { desc: bigint; used: bigint; avail: bigint; log?: bigint; flags?: number },
): Uint8Array {
  const out = new Uint8Array(40);
  const v = new DataView(out.buffer);
  v.setUint32(0, index, true);
  v.setUint32(4, a.flags ?? 0, true);
  v.setBigUint64(8, a.desc, true);
  v.setBigUint64(16, a.used, true);
  v.setBigUint64(24, a.avail, true);
  v.setBigUint64(32, a.log ?? 0n, true);
  return out;
}

/** A vring file payload (SET_VRING_KICK/CALL/ERR). */
export function vringFilePayload(index: number, noFd: boolean): Uint8Array {
  return u64Payload(BigInt(index | (noFd ? VRING_NOFD_FLAG : 0)));
}

function writeRegion(v: DataView, off: number, r: MemoryRegion): void {
  v.setBigUint64(off, r.guestPhysAddr, true);
  v.setBigUint64(off + 8, r.memorySize, true);
  v.setBigUint64(off + 16, r.userspaceAddr, true);
  v.setBigUint64(off + 24, r.mmapOffset, true);
}

/** The regions as the native memory table takes them: 32 bytes each (never an empty buffer,
 * which FFI would pass as a null pointer). */
export function encodeRegions(regions: readonly MemoryRegion[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(32 * Math.max(regions.length, 1));
  const v = new DataView(out.buffer);
  regions.forEach((r, i) => writeRegion(v, 32 * i, r));
  return out;
}

/** A SET_MEM_TABLE payload. */
export function memTablePayload(regions: readonly MemoryRegion[]): Uint8Array {
  const out = new Uint8Array(8 + 32 * regions.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, regions.length, true);
  regions.forEach((r, i) => writeRegion(v, 8 + 32 * i, r));
  return out;
}

/** An ADD_MEM_REG / REM_MEM_REG payload. */
export function memRegionPayload(region: MemoryRegion): Uint8Array {
  const out = new Uint8Array(40);
  writeRegion(new DataView(out.buffer), 8, region);
  return out;
}

/** A GET_CONFIG / SET_CONFIG payload. */
export function configPayload(offset: number, data: Uint8Array, flags = 0): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, offset, true);
  v.setUint32(4, data.length, true);
  v.setUint32(8, flags, true);
  out.set(data, 12);
  return out;
}
