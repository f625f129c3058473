/**
 * A bounded, lock-free, multi-producer single-consumer frame ring in a SharedArrayBuffer: how
 * vNIC actors (one Worker each) hand routed frames to a destination vNIC without postMessage.
 *
 * Each slot carries a sequence number (D. Vyukov's bounded queue): a producer claims slots with
 * one compare-and-swap on the tail and publishes them by storing the first slot's sequence, the
 * consumer reads records in order. A record is a frame's 10 bytes of offload metadata (the
 * virtio-net header, see `routing/offload.ts`) followed by the frame, and takes as many
 * consecutive slots as it needs: slots are sized for the network's MTU, while a 64 KiB GSO frame
 * spans several. A record never wraps: a producer that would cross the end first claims the
 * slots up to it as a skip record. A full ring refuses the frame: the caller counts it as a drop at the destination, so a slow
 * guest never stalls the sender.
 *
 * Why a slot is free for a run of slots: the consumer frees slots in position order, so when
 * the last slot of a run is free for its position, every slot before it is too.
 *
 * Layout (Int32 words): [0] tail (next position to claim), [1] head (next to read, consumer's
 * own), then per slot: [seq, len] (len of the frame in a record's first slot, minus the slot
 * count in a skip record's), then the byte area of `slots * slotBytes`, then [slots, slotBytes].
 * @module
 */

/** Bytes of metadata in front of each frame in a record. */
export const RING_META_SIZE = 10;

const TAIL = 0;
const HEAD = 1;
const HEADER_WORDS = 2;
const SLOT_WORDS = 2;
const META_WORDS = 2;
/** Most claim attempts a producer makes before calling the ring full. */
const MAX_SPINS = 64;
const EMPTY_META = new Uint8Array(RING_META_SIZE);
/** Bytes a ring holds at least unless told otherwise (slots are then rounded up to a power of
 * two: 1024 slots of 1528 bytes, 1.5 MiB, 23 GSO frames of 64 KiB, for an MTU of 1500). A TCP
 * sender with TSO sends bursts of such frames, and a ring that held only a few dropped them
 * (measured: 2 of 839 frames refused, 90 TCP retransmissions in 3 s of iperf3). Since frames wait
 * in the ring for a guest out of receive buffers, this size still refuses some (8-18 in 5 s of
 * iperf3 with four streams between two TCG guests, 330-690 retransmissions); 2 MiB refused none
 * (1-3 retransmissions) but made the 256-vNIC restore 1.5-2.5 s slower (11.2-12.2 s against
 * 9.4-10.8 s, `bench --set control`), for a reason not found: with 1 MiB a restore costs the same
 * whether each vNIC holds 15 peers' rings or 255 (docs/performance-control.md §7). Pages never
 * written are not resident, so an idle vNIC does not pay for the ring's size. */
export const DEFAULT_MIN_RING_BYTES = 1 << 20;

/** One end of a frame ring; both ends are built over the same buffer. */
export class FrameRing {
  readonly slots: number;
  readonly slotBytes: number;
  /** The shared buffer (the shim's fast path reads and writes the same ring, ffi/fring.c). */
  readonly buffer: SharedArrayBuffer;
  #ctl: Int32Array;
  #data: Uint8Array;
  readonly #meta = new Uint8Array(RING_META_SIZE);

  /**
   * Allocates a ring of `slots` (a power of two) slots, each holding one frame of up to
   * `frameBytes` with its metadata: `slots` such frames, or fewer larger ones (a frame up to
   * {@link maxFrame} spans consecutive slots). The slot count is doubled until the ring holds
   * `minBytes`. Pages never written are not resident, so the ring costs memory only as far as
   * traffic has filled it.
   */
  static allocate(
    slots: number,
    frameBytes: number,
    minBytes = DEFAULT_MIN_RING_BYTES,
  ): SharedArrayBuffer {
    if (slots < 2 || (slots & (slots - 1)) !== 0) {
      throw new RangeError(`slots must be a power of two, got ${slots}`);
    }
    if (!Number.isInteger(frameBytes) || frameBytes < 1) {
      throw new RangeError(`frameBytes must be a positive integer, got ${frameBytes}`);
    }
    const slotBytes = frameBytes + RING_META_SIZE;
    while (slots * slotBytes < minBytes) slots *= 2;
    const ctlBytes = (HEADER_WORDS + slots * SLOT_WORDS) * 4;
    const dataBytes = Math.ceil((slots * slotBytes) / 4) * 4;
    const sab = new SharedArrayBuffer(ctlBytes + dataBytes + META_WORDS * 4);
    const meta = new Int32Array(sab, sab.byteLength - META_WORDS * 4, META_WORDS);
    meta[0] = slots;
    meta[1] = slotBytes;
    const ctl = new Int32Array(sab, 0, HEADER_WORDS + slots * SLOT_WORDS);
    for (let i = 0; i < slots; i++) ctl[HEADER_WORDS + i * SLOT_WORDS] = i;
    return sab;
  }

  /** Opens a ring made by {@link FrameRing.allocate}. */
  constructor(sab: SharedArrayBuffer) {
    this.buffer = sab;
    const meta = new Int32Array(sab, sab.byteLength - META_WORDS * 4, META_WORDS);
    this.slots = meta[0];
    this.slotBytes = meta[1];
    const ctlWords = HEADER_WORDS + this.slots * SLOT_WORDS;
    this.#ctl = new Int32Array(sab, 0, ctlWords);
    this.#data = new Uint8Array(sab, ctlWords * 4, this.slots * this.slotBytes);
  }

  /** Largest frame a record can hold: one that takes every slot of the ring. */
  get maxFrame(): number {
    return this.slots * this.slotBytes - RING_META_SIZE;
  }

  /**
   * Copies `frame` in with its offload metadata (none: 10 zero bytes); false when the ring is
   * full or the frame larger than the ring.
   */
  push(frame: Uint8Array, meta: Uint8Array = EMPTY_META): boolean {
    const need = Math.ceil((RING_META_SIZE + frame.length) / this.slotBytes);
    if (need > this.slots) return false;
    const ctl = this.#ctl;
    const mask = this.slots - 1;
    for (let spins = 0; spins < MAX_SPINS; spins++) {
      const pos = Atomics.load(ctl, TAIL);
      const idx = pos & mask;
      const skip = idx + need > this.slots ? this.slots - idx : 0;
      const take = skip > 0 ? skip : need;
      const last = (pos + take - 1) | 0;
      const dif = (Atomics.load(ctl, HEADER_WORDS + (last & mask) * SLOT_WORDS) - last) | 0;
      if (dif < 0) return false;
      if (dif > 0) continue;
      if (Atomics.compareExchange(ctl, TAIL, pos, (pos + take) | 0) !== pos) continue;
      const s = HEADER_WORDS + idx * SLOT_WORDS;
      if (skip > 0) {
        // The run up to the end becomes a skip record; the frame goes at slot 0 next round.
        ctl[s + 1] = -skip;
        Atomics.store(ctl, s, (pos + 1) | 0);
        continue;
      }
      const off = idx * this.slotBytes;
      const data = this.#data;
      // Ten bytes: a loop is cheaper than a subarray and a set().
      for (let i = 0; i < RING_META_SIZE; i++) data[off + i] = meta[i];
      data.set(frame, off + RING_META_SIZE);
      ctl[s + 1] = frame.length;
      Atomics.store(ctl, s, (pos + 1) | 0);
      return true;
    }
    // Other producers kept winning the slots: treat as full rather than spin without bound.
    return false;
  }

  /** True when a record is ready to be read (a frame or a skip record). Consumer only. */
  ready(): boolean {
    const pos = this.#ctl[HEAD];
    const s = HEADER_WORDS + (pos & (this.slots - 1)) * SLOT_WORDS;
    return ((Atomics.load(this.#ctl, s) - ((pos + 1) | 0)) | 0) === 0;
  }

  /**
   * Hands each ready frame (a view into the ring) and a copy of its metadata (in an array the
   * ring reuses: a 10-byte copy is cheaper than a second view per frame) to `fn`, up to `max`
   * frames, and frees the slots. Both are valid only during the call and the callee may modify
   * them. Consumer only. Returns the number of frames read.
   */
  drain(max: number, fn: (frame: Uint8Array, meta: Uint8Array) => void): number {
    const ctl = this.#ctl;
    const mask = this.slots - 1;
    let n = 0;
    while (n < max) {
      const pos = ctl[HEAD];
      const idx = pos & mask;
      const s = HEADER_WORDS + idx * SLOT_WORDS;
      if (((Atomics.load(ctl, s) - ((pos + 1) | 0)) | 0) !== 0) break;
      const len = ctl[s + 1];
      let take: number;
      if (len < 0) {
        take = -len;
      } else {
        take = Math.ceil((RING_META_SIZE + len) / this.slotBytes);
        const off = idx * this.slotBytes;
        const data = this.#data;
        const meta = this.#meta;
        for (let i = 0; i < RING_META_SIZE; i++) meta[i] = data[off + i];
        fn(data.subarray(off + RING_META_SIZE, off + RING_META_SIZE + len), meta);
        n++;
      }
      // In position order, the last slot last: producers test a run by its last slot.
      for (let i = 0; i < take; i++) {
        const p = (pos + i) | 0;
        Atomics.store(ctl, HEADER_WORDS + (p & mask) * SLOT_WORDS, (p + this.slots) | 0);
      }
      ctl[HEAD] = (pos + take) | 0;
    }
    return n;
  }
}
