/**
 * One vNIC: a vhost-user virtio-net device on a Unix socket. The owner (the vNIC actor's
 * Worker) runs a loop of {@link VhostNetDevice.poll}, {@link VhostNetDevice.service} for
 * control events and the burst calls for frames.
 *
 * States, as the control plane sees them: CREATED (listening, or a frontend is setting up),
 * ACTIVE (DRIVER_OK with both rings ready: transition `driver_ok`), back to CREATED on
 * `reset` (driver reset, rings stopped) or `disconnected`, ERROR on `error` (a malformed or
 * refused message; the frontend is disconnected and the socket accepts the next one with fresh
 * state). The device lives in native memory: {@link VhostNetDevice.adopt} picks it up from a
 * new Worker without the guest noticing.
 *
 * @example
 * ```ts
 * const dev = VhostNetDevice.create({ socketPath: "/run/nic0.sock", mac: "52:54:00:12:34:56" });
 * const batch = new FrameBatch(64);
 * for (;;) {
 *   const ev = dev.poll(100);
 *   if (ev & DeviceEvents.CONTROL) for (const t of dev.service()) console.log(t);
 *   if (ev & DeviceEvents.TX && dev.receiveBurst(batch) > 0) dev.sendBurst(batch); // echo
 * }
 * ```
 * @module
 */

import {
  check,
  COUNTER_NAMES,
  cString,
  DevField,
  errnoName,
  MAX_MSG_FDS,
  native,
  PollEvents,
  ShimError,
  u64,
} from "../ffi/binding.ts";
import { VhostUserBackend } from "./backend.ts";
import { FrameBatch } from "./frame_batch.ts";
import { MAX_MESSAGE_SIZE } from "./protocol.ts";

export { FrameBatch } from "./frame_batch.ts";

/** Bits of {@link VhostNetDevice.poll}'s result. */
export const DeviceEvents = PollEvents;

/** A change of the device's state that {@link VhostNetDevice.service} reports. */
export type DeviceTransition =
  | { kind: "connected" }
  | { kind: "driver_ok" }
  | { kind: "reset"; reason: string }
  | { kind: "disconnected"; reason: string }
  | { kind: "error"; reason: string };

/** How to create a device. */
export interface DeviceOptions {
  /** Where to listen; a stale socket file there is removed. */
  socketPath: string;
  /** "52:54:00:12:34:56" form. */
  mac: string;
  /** Default 1500. */
  mtu?: number;
}

/** Default MTU of the config space. */
export const DEFAULT_MTU = 1500;
/** Messages handled per {@link VhostNetDevice.service} call, so frames keep moving. */
const MESSAGES_PER_SERVICE = 64;
const EPIPE = 32;
/** MVN_FWD_RX_HELD (ffi/mvnet.h): mvn_fwd_rx stopped at a frame without a guest buffer. */
const FWD_RX_HELD = 0x40000000;
/** MVN_FWD_RX_REST: it left the rest of the ring to the caller (offloads to adapt, or no
 * receive queue). */
const FWD_RX_REST = 0x20000000;

/** Parses "52:54:00:12:34:56" into the native 48-bit form. */
export function parseMac(mac: string): bigint {
  const m = /^([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2})$/i
    .exec(mac);
  if (!m) throw new RangeError(`MAC "${mac}" is not of the form 52:54:00:12:34:56`);
  return m.slice(1).reduce((acc, b) => (acc << 8n) | BigInt(parseInt(b, 16)), 0n);
}

/** One vhost-user virtio-net device. */
export class VhostNetDevice {
  readonly #backend: VhostUserBackend;
  readonly #msg = new Uint8Array(MAX_MESSAGE_SIZE);
  readonly #fds = new Int32Array(1 + MAX_MSG_FDS);
  readonly #counters = new BigUint64Array(COUNTER_NAMES.length);
  #sendBatch: FrameBatch | undefined;
  #closed = false;

  private constructor(readonly handle: number) {
    this.#backend = new VhostUserBackend(handle);
  }

  /** Creates a device listening on `socketPath`. */
  static create(opts: DeviceOptions): VhostNetDevice {
    const mtu = opts.mtu ?? DEFAULT_MTU;
    if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535) {
      throw new RangeError(`MTU ${mtu} is outside 68..65535`);
    }
    const rc = native().mvn_dev_create(cString(opts.socketPath), parseMac(opts.mac), mtu);
    if (rc < 0) {
      throw new ShimError(`cannot listen on ${opts.socketPath}: ${errnoName(rc)}`, -rc);
    }
    return new VhostNetDevice(rc);
  }

  /** Takes over a live device (created by another Worker of this process) by handle. */
  static adopt(handle: number): VhostNetDevice {
    if (native().mvn_dev_exists(handle) !== 1) {
      throw new ShimError(`no device with handle ${handle} in this process`, 2);
    }
    return new VhostNetDevice(handle);
  }

  /** Makes the owner's {@link poll} return {@link DeviceEvents.WAKE}: it has mail. Any thread. */
  static wake(handle: number): void {
    native().mvn_dev_wake(handle);
  }

  /** Makes the owner's {@link poll} return {@link DeviceEvents.INBOUND}: frames were pushed into
   * its inbound ring. Cheaper for the owner than {@link wake}: it need not run its event loop.
   * Any thread. */
  static notify(handle: number): void {
    native().mvn_dev_notify(handle);
  }

  /** Destroys a device whose owner is gone: closes it and removes its socket file. */
  static closeHandle(handle: number): void {
    native().mvn_dev_destroy(handle);
  }

  /** DRIVER_OK was seen with both rings ready and nothing reset them since. */
  get driverReady(): boolean {
    return u64(native().mvn_dev_get(this.handle, DevField.ACTIVE)) !== 0n;
  }

  /** The virtio features the driver accepted (0 before SET_FEATURES). */
  get features(): bigint {
    return u64(native().mvn_dev_get(this.handle, DevField.FEATURES));
  }

  /** A frontend (VMM) is connected. */
  get connected(): boolean {
    return this.#backend.connected();
  }

  /** A batch for {@link receiveBurst} / {@link sendBurst} of up to `maxFrames` frames. */
  frameBuffer(maxFrames: number): FrameBatch {
    return new FrameBatch(maxFrames);
  }

  /** Waits up to `timeoutMs` (-1: forever) for events; returns {@link DeviceEvents} bits. */
  poll(timeoutMs: number): number {
    return check(native().mvn_dev_poll(this.handle, timeoutMs), "mvn_dev_poll");
  }

  /**
   * {@link poll} for an owner that drains its inbound ring (`routing/ring.ts`, the whole
   * SharedArrayBuffer as bytes) after every return: INBOUND at once while a frame is ready, and
   * until the next call peers' notifications cost no system call.
   */
  pollWithRing(timeoutMs: number, ring: Uint8Array): number {
    return check(
      native().mvn_dev_poll_ring(this.handle, timeoutMs, ring, ring.length),
      "mvn_dev_poll_ring",
    );
  }

  /** Accepts a frontend and handles its pending messages; returns what changed. */
  service(): DeviceTransition[] {
    const out: DeviceTransition[] = [];
    const n = native();
    if (!this.connected) {
      const rc = n.mvn_dev_accept(this.handle);
      if (rc < 0) return [{ kind: "error", reason: `accept failed: ${errnoName(rc)}` }];
      if (rc === 0) return out;
      out.push({ kind: "connected" });
    }
    for (let i = 0; i < MESSAGES_PER_SERVICE; i++) {
      const len = n.mvn_dev_recv(this.handle, this.#msg, this.#msg.length, this.#fds);
      if (len === 0) break;
      if (len < 0) {
        this.#drop(
          out,
          len === -EPIPE
            ? { kind: "disconnected", reason: "the frontend closed the connection" }
            : { kind: "error", reason: `receiving a message failed: ${errnoName(len)}` },
        );
        break;
      }
      const fds = Array.from(this.#fds.subarray(1, 1 + this.#fds[0]));
      const r = this.#backend.handleMessage(this.#msg.subarray(0, len), fds);
      if (r.reply) {
        const rc = n.mvn_dev_send(this.handle, r.reply, r.reply.length);
        if (rc < 0) {
          this.#drop(out, {
            kind: "error",
            reason: `replying to ${r.request} failed: ${errnoName(rc)}`,
          });
          break;
        }
      }
      if (r.fatal) {
        this.#drop(out, { kind: "error", reason: r.fatal });
        break;
      }
      this.#track(out, r.request);
    }
    return out;
  }

  /** Pops the frames the guest sent into `batch`, each with its virtio-net header as metadata
   * ({@link FrameBatch.meta}). */
  receiveBurst(batch: FrameBatch): number {
    const count = check(
      native().mvn_dev_tx_burst(this.handle, batch.bytes, batch.bytes.length, batch.capacity),
      "mvn_dev_tx_burst",
    );
    batch.index(count);
    return count;
  }

  /**
   * Lets peers' fast paths deliver plain frames straight into this guest (`ffi/direct.h`)
   * instead of through the inbound ring; off while something must see every received frame.
   */
  setDirectReceive(on: boolean): void {
    check(native().mvn_dev_set(this.handle, DevField.DIRECT_RX, on ? 1n : 0n), "mvn_dev_set");
  }

  /**
   * {@link receiveBurst} with the forwarding fast path (`ffi/fastpath.c`): the frames `table`
   * (a `routing/fast_table.ts` encoding) routes to a peer go straight into the peer's ring and
   * only the others land in `batch`. `res` (4 entries) gets [frames handed to peers, frames a
   * full peer ring refused, frames of the first delivered straight into a peer's guest, frames
   * of the third copied once, from the sender's guest buffers into the receiver's]. At most 64
   * frames a call. Returns the frames left in `batch`.
   */
  receiveForwarding(batch: FrameBatch, table: Uint8Array, res: Uint32Array): number {
    if (res.length < 4) throw new RangeError(`res has ${res.length} entries, needs 4`);
    const count = check(
      native().mvn_fwd_tx(
        this.handle,
        batch.bytes,
        batch.bytes.length,
        batch.capacity,
        table,
        table.length,
        res,
      ),
      "mvn_fwd_tx",
    );
    batch.index(count);
    return count;
  }

  /**
   * True when the last {@link deliverFromRing} stopped at a frame the guest had no buffer for:
   * it waits in the ring (the caller must not drain it), and {@link pollWithRing} reports the
   * ring again once the guest adds buffers.
   */
  rxHeld = false;
  /**
   * True when the last {@link deliverFromRing} left the rest of the ring to the caller: a frame
   * with offloads the guest did not negotiate (the caller adapts those, `vhost/receive.ts`), or
   * a receive queue that is not up (the caller drops and counts them).
   */
  rxRest = false;

  /**
   * Delivers up to `max` frames from this device's inbound ring (`routing/ring.ts`, the whole
   * SharedArrayBuffer as bytes) to the guest; see {@link rxHeld} and {@link rxRest} for where
   * it stopped. Returns the frames taken from the ring, delivered or dropped and counted.
   */
  deliverFromRing(ring: Uint8Array, max: number): number {
    const r = check(native().mvn_fwd_rx(this.handle, ring, ring.length, max), "mvn_fwd_rx");
    this.rxHeld = (r & FWD_RX_HELD) !== 0;
    this.rxRest = (r & FWD_RX_REST) !== 0;
    return r & ~(FWD_RX_HELD | FWD_RX_REST);
  }

  /** Delivers frames to the guest, a batch's with their metadata (an array's without offload);
   * those without a receive buffer are dropped and counted. Returns how many were delivered. */
  sendBurst(frames: FrameBatch | readonly Uint8Array[]): number {
    let batch: FrameBatch;
    if (frames instanceof FrameBatch) {
      batch = frames;
    } else {
      batch = this.#sendBatch ??= new FrameBatch(64);
      batch.clear();
      let delivered = 0;
      for (const f of frames) {
        if (!batch.push(f)) {
          delivered += this.sendBurst(batch);
          batch.clear();
          batch.push(f);
        }
      }
      return delivered + (batch.count > 0 ? this.sendBurst(batch) : 0);
    }
    return check(
      native().mvn_dev_rx_burst(this.handle, batch.bytes, batch.used, batch.count),
      "mvn_dev_rx_burst",
    );
  }

  /** The device's counters by name (rx: to the guest, tx: from the guest). */
  counters(): Record<string, number> {
    native().mvn_dev_counters(this.handle, this.#counters, this.#counters.length);
    const out: Record<string, number> = {};
    COUNTER_NAMES.forEach((name, i) => out[name] = Number(this.#counters[i]));
    return out;
  }

  /** Sets the link state in the config space and tells the frontend if it negotiated how. */
  setLinkUp(up: boolean): boolean {
    check(native().mvn_dev_set(this.handle, DevField.LINK_UP, up ? 1n : 0n), "mvn_dev_set");
    return this.#backend.notifyConfigChange();
  }

  /** The virtio-net config space as the guest reads it. */
  config(): Uint8Array {
    return this.#backend.config();
  }

  /** Makes {@link poll} return {@link DeviceEvents.WAKE}. Any thread. */
  wake(): void {
    VhostNetDevice.wake(this.handle);
  }

  /** Destroys the device and removes its socket file. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    native().mvn_dev_destroy(this.handle);
  }

  #drop(out: DeviceTransition[], t: DeviceTransition): void {
    native().mvn_dev_disconnect(this.handle);
    out.push(t);
  }

  /** Reports ACTIVE becoming true or false after a message. */
  #track(out: DeviceTransition[], request: string): void {
    const was = this.driverReady;
    const now = this.#backend.active();
    if (was === now) return;
    native().mvn_dev_set(this.handle, DevField.ACTIVE, now ? 1n : 0n);
    out.push(
      now ? { kind: "driver_ok" } : { kind: "reset", reason: `rings stopped by ${request}` },
    );
  }
}
