/**
 * The connection table of one vNIC: an open-addressing hash table over typed arrays, so that
 * a lookup on the packet path allocates nothing and the memory is bounded.
 *
 * A flow is stored once, in the orientation of its first packet (the original direction). The
 * hash is symmetric in the two endpoints, so a reply finds the same slot and
 * {@link Conntrack.lookup} says which orientation matched. Deleting shifts the following
 * entries back (no tombstones), so probe chains stay short however many flows come and go.
 * The table starts small and doubles up to twice its entry limit.
 * @module
 */

/** Words of a key: meta (family << 8 | protocol), source (4), destination (4), ports. */
const KEY_WORDS = 10;
const META = 0;
const SRC = 1;
const DST = 5;
const PORTS = 9;
const MIN_SLOTS = 256;
/** The table grows past this load: linear probing degrades quickly beyond one half. */
const MAX_LOAD = 0.5;

/** Bits of an entry's flags. */
const FLAG_ORIGIN_EGRESS = 0x01;
const FLAG_SEEN_REPLY = 0x02;
const STATE_SHIFT = 2;

/** What {@link Conntrack.lookup} returns when the flow is not in the table. */
export const NOT_FOUND = -1;

/** Mixes a word into a hash (Murmur3's constants). */
function mix(h: number, w: number): number {
  h = Math.imul(h ^ w, 0xcc9e2d51);
  return Math.imul((h << 15) | (h >>> 17), 0x1b873593);
}

/** The hash of one endpoint (address words and port). */
function endpoint(seed: number, a: Int32Array, port: number): number {
  return mix(mix(mix(mix(mix(seed, a[0]), a[1]), a[2]), a[3]), port);
}

function finish(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/**
 * A bounded connection table. Entries carry the direction of the flow's first packet, whether
 * a reply was seen, a protocol state (a small number the caller defines) and an expiry time.
 *
 * @example
 * ```ts
 * const ct = new Conntrack(1024);
 * const slot = ct.insert(meta, src, dst, sport, dport, true, 0, now + 30_000);
 * const hit = ct.lookup(meta, dst, src, dport, sport, now); // hit >> 1 === slot, hit & 1: reply
 * ```
 */
export class Conntrack {
  /** Most flows the table holds. */
  readonly maxEntries: number;
  #slots: number;
  #keys: Int32Array;
  #hashes: Int32Array;
  #expires: Float64Array;
  #flags: Uint8Array;
  #count = 0;
  #cursor = 0;
  readonly #seed: number;

  /** `maxEntries` flows at most; `seed` varies the hash (random by default). */
  constructor(maxEntries: number, seed = (Math.random() * 0x100000000) >>> 0) {
    if (!Number.isInteger(maxEntries) || maxEntries < 1) {
      throw new RangeError(`maxEntries ${maxEntries}: need a positive integer`);
    }
    this.maxEntries = maxEntries;
    this.#seed = seed;
    this.#slots = MIN_SLOTS;
    this.#keys = new Int32Array(MIN_SLOTS * KEY_WORDS);
    this.#hashes = new Int32Array(MIN_SLOTS);
    this.#expires = new Float64Array(MIN_SLOTS);
    this.#flags = new Uint8Array(MIN_SLOTS);
  }

  /** Flows in the table (expired ones not yet swept included). */
  get size(): number {
    return this.#count;
  }

  #hash(meta: number, src: Int32Array, dst: Int32Array, sport: number, dport: number): number {
    const h = (endpoint(this.#seed, src, sport) + endpoint(this.#seed, dst, dport)) | 0;
    return finish(mix(h, meta));
  }

  /**
   * Finds a flow. Returns `slot << 1 | reply` (reply: the packet travels against the flow's
   * first packet) or {@link NOT_FOUND}. A flow found expired is removed and not found.
   */
  lookup(
    meta: number,
    src: Int32Array,
    dst: Int32Array,
    sport: number,
    dport: number,
    now: number,
  ): number {
    const keys = this.#keys;
    const mask = this.#slots - 1;
    const ports = (sport << 16) | dport;
    const swapped = (dport << 16) | sport;
    for (let i = this.#hash(meta, src, dst, sport, dport) & mask;; i = (i + 1) & mask) {
      const k = i * KEY_WORDS;
      const m = keys[k + META];
      if (m === 0) return NOT_FOUND;
      if (m !== meta) continue;
      let reply: number;
      if (
        keys[k + PORTS] === ports && keys[k + SRC] === src[0] && keys[k + SRC + 1] === src[1] &&
        keys[k + SRC + 2] === src[2] && keys[k + SRC + 3] === src[3] &&
        keys[k + DST] === dst[0] && keys[k + DST + 1] === dst[1] &&
        keys[k + DST + 2] === dst[2] && keys[k + DST + 3] === dst[3]
      ) {
        reply = 0;
      } else if (
        keys[k + PORTS] === swapped && keys[k + SRC] === dst[0] &&
        keys[k + SRC + 1] === dst[1] && keys[k + SRC + 2] === dst[2] &&
        keys[k + SRC + 3] === dst[3] && keys[k + DST] === src[0] &&
        keys[k + DST + 1] === src[1] && keys[k + DST + 2] === src[2] && keys[k + DST + 3] === src[3]
      ) {
        reply = 1;
      } else {
        continue;
      }
      if (this.#expires[i] <= now) {
        this.#remove(i);
        return NOT_FOUND;
      }
      return (i << 1) | reply;
    }
  }

  /**
   * Adds a flow in the orientation given (it must not be in the table). Returns its slot, or
   * {@link NOT_FOUND} when the table holds {@link maxEntries} flows even after removing the
   * expired ones.
   */
  insert(
    meta: number,
    src: Int32Array,
    dst: Int32Array,
    sport: number,
    dport: number,
    originEgress: boolean,
    state: number,
    expires: number,
    now: number,
  ): number {
    if (this.#count >= this.maxEntries) {
      this.sweep(now, this.#slots);
      if (this.#count >= this.maxEntries) return NOT_FOUND;
    }
    if (this.#count + 1 > this.#slots * MAX_LOAD) this.#grow();
    const hash = this.#hash(meta, src, dst, sport, dport);
    return this.#place(
      hash,
      meta,
      src,
      dst,
      (sport << 16) | dport,
      expires,
      flagsOf(originEgress, false, state),
    );
  }

  #place(
    hash: number,
    meta: number,
    src: ArrayLike<number>,
    dst: ArrayLike<number>,
    ports: number,
    expires: number,
    flags: number,
  ): number {
    const keys = this.#keys;
    const mask = this.#slots - 1;
    let i = hash & mask;
    while (keys[i * KEY_WORDS + META] !== 0) i = (i + 1) & mask;
    const k = i * KEY_WORDS;
    keys[k + META] = meta;
    for (let w = 0; w < 4; w++) {
      keys[k + SRC + w] = src[w];
      keys[k + DST + w] = dst[w];
    }
    keys[k + PORTS] = ports;
    this.#hashes[i] = hash;
    this.#expires[i] = expires;
    this.#flags[i] = flags;
    this.#count++;
    return i;
  }

  #grow(): void {
    const maxSlots = Math.max(MIN_SLOTS, 2 ** Math.ceil(Math.log2(this.maxEntries / MAX_LOAD)));
    if (this.#slots >= maxSlots) return;
    const old = {
      slots: this.#slots,
      keys: this.#keys,
      hashes: this.#hashes,
      expires: this.#expires,
      flags: this.#flags,
    };
    this.#slots *= 2;
    this.#keys = new Int32Array(this.#slots * KEY_WORDS);
    this.#hashes = new Int32Array(this.#slots);
    this.#expires = new Float64Array(this.#slots);
    this.#flags = new Uint8Array(this.#slots);
    this.#count = 0;
    this.#cursor = 0;
    for (let i = 0; i < old.slots; i++) {
      const k = i * KEY_WORDS;
      if (old.keys[k + META] === 0) continue;
      this.#place(
        old.hashes[i],
        old.keys[k + META],
        old.keys.subarray(k + SRC, k + SRC + 4),
        old.keys.subarray(k + DST, k + DST + 4),
        old.keys[k + PORTS],
        old.expires[i],
        old.flags[i],
      );
    }
  }

  /** Removes the entry at `slot`, shifting back the entries whose probe passed over it. */
  #remove(slot: number): void {
    const keys = this.#keys;
    const hashes = this.#hashes;
    const mask = this.#slots - 1;
    let hole = slot;
    for (let j = (slot + 1) & mask; keys[j * KEY_WORDS + META] !== 0; j = (j + 1) & mask) {
      const home = hashes[j] & mask;
      // The entry at j may fill the hole only if the hole lies on its probe path (home..j).
      if (((j - home) & mask) >= ((j - hole) & mask)) {
        keys.copyWithin(hole * KEY_WORDS, j * KEY_WORDS, (j + 1) * KEY_WORDS);
        hashes[hole] = hashes[j];
        this.#expires[hole] = this.#expires[j];
        this.#flags[hole] = this.#flags[j];
        hole = j;
      }
    }
    keys.fill(0, hole * KEY_WORDS, (hole + 1) * KEY_WORDS);
    this.#count--;
  }

  /** Removes the flow at `slot` (from {@link lookup} or {@link insert}). */
  remove(slot: number): void {
    if (this.#keys[slot * KEY_WORDS + META] !== 0) this.#remove(slot);
  }

  /** Looks at up to `budget` slots from where the last sweep stopped and removes expired flows. */
  sweep(now: number, budget: number): void {
    const mask = this.#slots - 1;
    // Only steps count against the budget: a full lap sees every slot however many go.
    // Removals end when the table is empty, so the loop is bounded.
    for (let n = 0; n < budget && this.#count > 0;) {
      const i = this.#cursor;
      if (this.#keys[i * KEY_WORDS + META] !== 0 && this.#expires[i] <= now) {
        // Removal may shift a later entry into this slot: look at it again.
        this.#remove(i);
      } else {
        this.#cursor = (i + 1) & mask;
        n++;
      }
    }
  }

  /** True when the flow at `slot` started with a packet from the VM. */
  originEgress(slot: number): boolean {
    return (this.#flags[slot] & FLAG_ORIGIN_EGRESS) !== 0;
  }

  /** True when a packet against the flow's first packet was seen. */
  seenReply(slot: number): boolean {
    return (this.#flags[slot] & FLAG_SEEN_REPLY) !== 0;
  }

  /** The protocol state of the flow at `slot`. */
  state(slot: number): number {
    return this.#flags[slot] >> STATE_SHIFT;
  }

  /** Sets the state, whether a reply was seen, and the expiry of the flow at `slot`. */
  update(slot: number, state: number, seenReply: boolean, expires: number): void {
    this.#flags[slot] = flagsOf(this.originEgress(slot), seenReply, state);
    this.#expires[slot] = expires;
  }

  /** When the flow at `slot` expires. */
  expires(slot: number): number {
    return this.#expires[slot];
  }

  /**
   * Keeps only the flows `keep` accepts (called with the key in the original orientation and
   * the flow's origin) and returns how many were removed. Not for the packet path.
   */
  retain(
    keep: (
      meta: number,
      src: Int32Array,
      dst: Int32Array,
      sport: number,
      dport: number,
      originEgress: boolean,
    ) => boolean,
  ): number {
    const doomed: number[] = [];
    const keys = this.#keys;
    for (let i = 0; i < this.#slots; i++) {
      const k = i * KEY_WORDS;
      if (keys[k + META] === 0) continue;
      const ports = keys[k + PORTS];
      const ok = keep(
        keys[k + META],
        keys.subarray(k + SRC, k + SRC + 4),
        keys.subarray(k + DST, k + DST + 4),
        ports >>> 16,
        ports & 0xffff,
        this.originEgress(i),
      );
      if (!ok) doomed.push(i);
    }
    if (doomed.length === 0) return 0;
    // Removing shifts entries between slots; rebuild from the survivors instead.
    const dead = new Set(doomed);
    const old = {
      slots: this.#slots,
      keys,
      hashes: this.#hashes,
      expires: this.#expires,
      flags: this.#flags,
    };
    this.#keys = new Int32Array(old.slots * KEY_WORDS);
    this.#hashes = new Int32Array(old.slots);
    this.#expires = new Float64Array(old.slots);
    this.#flags = new Uint8Array(old.slots);
    this.#count = 0;
    this.#cursor = 0;
    for (let i = 0; i < old.slots; i++) {
      const k = i * KEY_WORDS;
      if (old.keys[k + META] === 0 || dead.has(i)) continue;
      this.#place(
        old.hashes[i],
        old.keys[k + META],
        old.keys.subarray(k + SRC, k + SRC + 4),
        old.keys.subarray(k + DST, k + DST + 4),
        old.keys[k + PORTS],
        old.expires[i],
        old.flags[i],
      );
    }
    return doomed.length;
  }

  /** Forgets every flow. */
  clear(): void {
    this.#keys.fill(0);
    this.#count = 0;
    this.#cursor = 0;
  }
}

function flagsOf(originEgress: boolean, seenReply: boolean, state: number): number {
  return (originEgress ? FLAG_ORIGIN_EGRESS : 0) | (seenReply ? FLAG_SEEN_REPLY : 0) |
    (state << STATE_SHIFT);
}
