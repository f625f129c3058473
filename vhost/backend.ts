/**
 * The vhost-user message handler of one virtio-net device: decodes a message, applies it to
 * the device's native state (features, memory table, vrings, config) and produces the reply.
 * Knows the protocol and the native device's setup calls; knows nothing of sockets or
 * packets (the caller moves the bytes, {@link VhostNetDevice} moves the frames).
 *
 * All state lives in native memory (ffi/binding.ts), so a handler built on an adopted handle
 * continues where another Worker's handler stopped.
 * @module
 */

import { check, DevField, errnoName, native, QueueFd, QueueField, u64 } from "../ffi/binding.ts";
import {
  BackendRequest,
  bit,
  configPayload,
  decodeMessage,
  encodeMessage,
  encodeRegions,
  encodeReply,
  Feature,
  type Message,
  type Payload,
  ProtocolError,
  ProtocolFeature,
  Request,
  requestName,
  u64Payload,
  vringStatePayload,
} from "./protocol.ts";

/** The checksum and segmentation offloads the device offers (docs/offloads.md): frames carry
 * their virtio-net header through the router, and a receiver that lacks an offload gets the
 * checksum completed or the segment cut in software. */
export const OFFERED_OFFLOADS = bit(Feature.NET_CSUM) | bit(Feature.NET_GUEST_CSUM) |
  bit(Feature.NET_GUEST_TSO4) | bit(Feature.NET_GUEST_TSO6) | bit(Feature.NET_GUEST_ECN) |
  bit(Feature.NET_HOST_TSO4) | bit(Feature.NET_HOST_TSO6) | bit(Feature.NET_HOST_ECN);

/** Virtio features the device offers; the frontend may accept any subset. */
export const OFFERED_FEATURES = bit(Feature.VERSION_1) | bit(Feature.NET_MRG_RXBUF) |
  bit(Feature.RING_EVENT_IDX) | bit(Feature.RING_INDIRECT_DESC) | bit(Feature.NET_MAC) |
  bit(Feature.NET_STATUS) | bit(Feature.NET_MTU) | bit(Feature.PROTOCOL_FEATURES) |
  OFFERED_OFFLOADS;

/** vhost-user protocol features the device offers. */
export const OFFERED_PROTOCOL_FEATURES = bit(ProtocolFeature.REPLY_ACK) |
  bit(ProtocolFeature.BACKEND_REQ) | bit(ProtocolFeature.CONFIG) |
  bit(ProtocolFeature.RESET_DEVICE) | bit(ProtocolFeature.CONFIGURE_MEM_SLOTS) |
  bit(ProtocolFeature.STATUS);

/** Queues of a single-pair virtio-net device: 0 receiveq, 1 transmitq. */
export const NUM_QUEUES = 2;
/** virtio-net config space: mac[6], status u16, max_virtqueue_pairs u16, mtu u16. */
export const NET_CONFIG_SIZE = 12;
/** VIRTIO_NET_S_LINK_UP in the config's status field. */
const NET_S_LINK_UP = 1;
/** Virtio device status bits. */
const STATUS_DRIVER_OK = 4;
const STATUS_FAILED = 128;

/** Requests that answer with their own reply, so REPLY_ACK does not add one. */
const HAS_REPLY = new Set<number>([
  Request.GET_FEATURES,
  Request.GET_PROTOCOL_FEATURES,
  Request.GET_VRING_BASE,
  Request.GET_QUEUE_NUM,
  Request.GET_CONFIG,
  Request.GET_MAX_MEM_SLOTS,
  Request.GET_STATUS,
]);

/** The frontend asked for something the device cannot do; the connection may continue. */
export class RefusedError extends Error {
  override name = "RefusedError";
}

/** What handling one message produced. */
export interface HandleResult {
  /** The request's name, for logs. */
  request: string;
  /** Bytes to send back, if any. */
  reply?: Uint8Array;
  /** Why the request was refused (answered with a REPLY_ACK failure). */
  refused?: string;
  /** Set when the connection must end: the message was malformed, or a refusal could not be
   * reported because the frontend did not ask for REPLY_ACK. */
  fatal?: string;
}

/** Handles the vhost-user messages of the device behind `handle`. */
export class VhostUserBackend {
  constructor(private readonly handle: number) {}

  /** Handles one message that arrived with `fds`; every fd is consumed or closed. */
  handleMessage(bytes: Uint8Array, fds: number[]): HandleResult {
    const pending = new Set(fds);
    let msg: Message;
    try {
      msg = decodeMessage(bytes, fds.length);
    } catch (e) {
      closeAll(pending);
      if (e instanceof ProtocolError) return { request: "?", fatal: e.message };
      throw e;
    }
    const request = requestName(msg.request);
    try {
      const reply = this.apply(msg, fds, pending);
      if (reply) return { request, reply: encodeReply(msg.request, reply) };
      return { request, reply: this.ack(msg, 0n) };
    } catch (e) {
      if (e instanceof ProtocolError) return { request, fatal: `${request}: ${e.message}` };
      if (!(e instanceof RefusedError)) throw e;
      const reason = `${request}: ${e.message}`;
      const ack = this.ack(msg, 1n);
      return ack ? { request, reply: ack, refused: reason } : { request, fatal: reason };
    } finally {
      closeAll(pending);
    }
  }

  /** True when both rings move packets and the driver said DRIVER_OK (or never uses status). */
  active(): boolean {
    const status = Number(u64(native().mvn_dev_get(this.handle, DevField.STATUS)));
    const driverOk = status === 0 ||
      ((status & STATUS_DRIVER_OK) !== 0 && (status & STATUS_FAILED) === 0);
    if (!driverOk || !this.connected()) return false;
    for (let q = 0; q < NUM_QUEUES; q++) {
      if (u64(native().mvn_queue_get(this.handle, q, QueueField.READY)) === 0n) return false;
    }
    return true;
  }

  /** A frontend is connected. */
  connected(): boolean {
    return this.get(DevField.CONNECTED) !== 0n;
  }

  /** Tells the frontend the config space changed, when it negotiated a way to hear it.
   * Returns whether a notification was sent. */
  notifyConfigChange(): boolean {
    const pf = this.get(DevField.PROTOCOL_FEATURES);
    const need = bit(ProtocolFeature.BACKEND_REQ) | bit(ProtocolFeature.CONFIG);
    if ((pf & need) !== need) return false;
    const msg = encodeMessage(BackendRequest.CONFIG_CHANGE_MSG, 0, new Uint8Array(0));
    return native().mvn_dev_backend_send(this.handle, msg, msg.length) === 0;
  }

  /** The virtio-net config space as the guest reads it. */
  config(): Uint8Array {
    const out = new Uint8Array(NET_CONFIG_SIZE);
    const v = new DataView(out.buffer);
    const mac = this.get(DevField.MAC);
    for (let i = 0; i < 6; i++) out[i] = Number((mac >> BigInt(8 * (5 - i))) & 0xffn);
    v.setUint16(6, this.get(DevField.LINK_UP) !== 0n ? NET_S_LINK_UP : 0, true);
    v.setUint16(8, 1, true);
    v.setUint16(10, Number(this.get(DevField.MTU)), true);
    return out;
  }

  private get(field: number): bigint {
    return u64(native().mvn_dev_get(this.handle, field));
  }

  private set(field: number, value: bigint): void {
    check(native().mvn_dev_set(this.handle, field, value), "mvn_dev_set");
  }

  private ack(msg: Message, value: bigint): Uint8Array | undefined {
    const pf = this.get(DevField.PROTOCOL_FEATURES);
    if (!msg.needReply || (pf & bit(ProtocolFeature.REPLY_ACK)) === 0n) return undefined;
    if (HAS_REPLY.has(msg.request)) return undefined;
    return encodeReply(msg.request, u64Payload(value));
  }

  /** Applies msg; returns the payload of its own reply, if it has one. */
  private apply(msg: Message, fds: number[], pending: Set<number>): Uint8Array | undefined {
    const h = this.handle;
    const n = native();
    const p = msg.payload;
    const take = (i: number): number => {
      pending.delete(fds[i]);
      return fds[i];
    };
    switch (msg.request) {
      case Request.GET_FEATURES:
        return u64Payload(OFFERED_FEATURES);
      case Request.SET_FEATURES: {
        const v = want(p, "u64").value;
        if ((v & ~OFFERED_FEATURES) !== 0n) {
          throw new RefusedError(`features 0x${(v & ~OFFERED_FEATURES).toString(16)} not offered`);
        }
        this.set(DevField.FEATURES, v);
        return;
      }
      case Request.GET_PROTOCOL_FEATURES:
        return u64Payload(OFFERED_PROTOCOL_FEATURES);
      case Request.SET_PROTOCOL_FEATURES: {
        const v = want(p, "u64").value;
        if ((v & ~OFFERED_PROTOCOL_FEATURES) !== 0n) {
          throw new RefusedError(
            `protocol features 0x${(v & ~OFFERED_PROTOCOL_FEATURES).toString(16)} not offered`,
          );
        }
        this.set(DevField.PROTOCOL_FEATURES, v);
        return;
      }
      case Request.SET_OWNER:
        this.set(DevField.OWNER, 1n);
        return;
      case Request.RESET_OWNER:
        this.resetDevice();
        this.set(DevField.OWNER, 0n);
        return;
      case Request.RESET_DEVICE:
        this.resetDevice();
        return;
      case Request.GET_QUEUE_NUM:
        return u64Payload(1n);
      case Request.GET_MAX_MEM_SLOTS:
        return u64Payload(BigInt(n.mvn_mem_max_regions()));
      case Request.SET_MEM_TABLE: {
        const regions = want(p, "mem_table").regions;
        const owned = new Int32Array(fds.map((_, i) => take(i)));
        refuseOn(
          n.mvn_dev_mem_set(h, encodeRegions(regions), regions.length, owned),
          "memory table",
        );
        return;
      }
      case Request.ADD_MEM_REG:
        refuseOn(
          n.mvn_dev_mem_add(h, encodeRegions([want(p, "mem_region").region]), take(0)),
          "region",
        );
        return;
      case Request.REM_MEM_REG:
        refuseOn(n.mvn_dev_mem_remove(h, encodeRegions([want(p, "mem_region").region])), "region");
        return;
      case Request.SET_VRING_NUM: {
        const s = want(p, "vring_state");
        refuseOn(n.mvn_queue_set_num(h, queue(s.index), s.num), `queue size ${s.num}`);
        return;
      }
      case Request.SET_VRING_ADDR: {
        const a = want(p, "vring_addr");
        refuseOn(
          n.mvn_queue_set_addr(h, queue(a.index), a.desc, a.used, a.avail),
          "ring addresses",
        );
        return;
      }
      case Request.SET_VRING_BASE: {
        const s = want(p, "vring_state");
        refuseOn(n.mvn_queue_set_base(h, queue(s.index), s.num), `ring base ${s.num}`);
        return;
      }
      case Request.GET_VRING_BASE: {
        const s = want(p, "vring_state");
        const base = refuseOn(n.mvn_queue_stop(h, queue(s.index)), "stop");
        return vringStatePayload(s.index, base);
      }
      case Request.SET_VRING_KICK:
      case Request.SET_VRING_CALL:
      case Request.SET_VRING_ERR: {
        const f = want(p, "vring_file");
        const which = msg.request === Request.SET_VRING_KICK
          ? QueueFd.KICK
          : msg.request === Request.SET_VRING_CALL
          ? QueueFd.CALL
          : QueueFd.ERR;
        const q = queue(f.index);
        refuseOn(n.mvn_queue_set_fd(h, q, which, f.noFd ? -1 : take(0)), "eventfd");
        return;
      }
      case Request.SET_VRING_ENABLE: {
        const s = want(p, "vring_state");
        refuseOn(n.mvn_queue_set_enable(h, queue(s.index), s.num), "enable");
        return;
      }
      case Request.SET_BACKEND_REQ_FD:
        refuseOn(n.mvn_dev_set_backend_fd(h, take(0)), "backend channel");
        return;
      case Request.GET_CONFIG: {
        const c = want(p, "config");
        if (c.offset + c.size > 256) throw new RefusedError(`config range ${c.offset}+${c.size}`);
        const full = new Uint8Array(256);
        full.set(this.config());
        return configPayload(c.offset, full.subarray(c.offset, c.offset + c.size), c.flags);
      }
      case Request.SET_CONFIG: {
        // Only the MAC is writable (legacy drivers set it this way).
        const c = want(p, "config");
        if (c.offset + c.size > 6) {
          throw new RefusedError(`config bytes ${c.offset}..${c.offset + c.size} are read-only`);
        }
        const mac = this.config().subarray(0, 6);
        mac.set(c.data, c.offset);
        this.set(DevField.MAC, mac.reduce((acc, b) => (acc << 8n) | BigInt(b), 0n));
        return;
      }
      case Request.SET_STATUS: {
        const v = want(p, "u64").value;
        if (v === 0n) {
          // The driver reset the device: stop the rings but keep their indices, which the
          // frontend reads back with GET_VRING_BASE right after.
          for (let q = 0; q < NUM_QUEUES; q++) n.mvn_queue_stop(h, q);
        }
        this.set(DevField.STATUS, v);
        return;
      }
      case Request.GET_STATUS:
        return u64Payload(this.get(DevField.STATUS));
      default:
        throw new RefusedError("not handled");
    }
  }

  private resetDevice(): void {
    check(native().mvn_dev_reset(this.handle), "mvn_dev_reset");
    this.set(DevField.FEATURES, 0n);
  }
}

function want<K extends Payload["kind"]>(p: Payload, kind: K): Extract<Payload, { kind: K }> {
  if (p.kind !== kind) throw new ProtocolError(`payload ${p.kind} where ${kind} was expected`);
  return p as Extract<Payload, { kind: K }>;
}

function queue(index: number): number {
  if (index >= NUM_QUEUES) {
    throw new RefusedError(`queue ${index} does not exist (${NUM_QUEUES} queues)`);
  }
  return index;
}

function refuseOn(rc: number, what: string): number {
  if (rc < 0) throw new RefusedError(`${what} refused: ${errnoName(rc)}`);
  return rc;
}

function closeAll(fds: Set<number>): void {
  for (const fd of fds) native().mvn_fd_close(fd);
  fds.clear();
}
