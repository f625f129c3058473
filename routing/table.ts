/**
 * A longest-prefix-match routing table for IPv4 and IPv6, pure and allocation-free on lookup.
 *
 * One hash map per prefix length present, probed from the longest length down. A network's
 * table holds few distinct lengths (the /32 and /128 of every vNIC, plus routed prefixes), so a
 * lookup is a handful of map probes, however many routes there are.
 *
 * @example
 * ```ts
 * const t = new RouteTable<string>();
 * t.insert(parseCidr("10.0.0.5/32", 4) as Cidr, "nic-a");
 * t.lookup(parseIpv4("10.0.0.5") as Uint8Array); // "nic-a"
 * ```
 * @module
 */

import { type Cidr, IPV4_LEN, IPV6_LEN } from "../wire/addr.ts";

const BITS_PER_WORD = 32;

/** Reads 32 bits at `off` as an unsigned number. */
function word(a: Uint8Array, off: number): number {
  return ((a[off] << 24) | (a[off + 1] << 16) | (a[off + 2] << 8) | a[off + 3]) >>> 0;
}

/** The mask of the first `bits` bits of a 32-bit word (0..32). */
function wordMask(bits: number): number {
  if (bits <= 0) return 0;
  if (bits >= BITS_PER_WORD) return 0xffffffff;
  return (0xffffffff << (BITS_PER_WORD - bits)) >>> 0;
}

/** Key of `addr` masked to `len` bits: a number for IPv4, a string of four words for IPv6. */
function keyOf(addr: Uint8Array, len: number): number | string {
  if (addr.length === IPV4_LEN) return (word(addr, 0) & wordMask(len)) >>> 0;
  let key = "";
  for (let w = 0; w < IPV6_LEN / 4; w++) {
    const v = (word(addr, w * 4) & wordMask(len - w * BITS_PER_WORD)) >>> 0;
    key += w === 0 ? v.toString(16) : ":" + v.toString(16);
  }
  return key;
}

class FamilyTable<T> {
  #byLen = new Map<number, Map<number | string, T>>();
  /** Prefix lengths present, longest first. */
  #lens: number[] = [];

  insert(c: Cidr, value: T): void {
    let m = this.#byLen.get(c.prefixLen);
    if (!m) {
      m = new Map();
      this.#byLen.set(c.prefixLen, m);
      this.#lens = [...this.#byLen.keys()].sort((a, b) => b - a);
    }
    m.set(keyOf(c.addr, c.prefixLen), value);
  }

  remove(c: Cidr): boolean {
    const m = this.#byLen.get(c.prefixLen);
    if (!m) return false;
    const removed = m.delete(keyOf(c.addr, c.prefixLen));
    if (m.size === 0) {
      this.#byLen.delete(c.prefixLen);
      this.#lens = this.#lens.filter((l) => l !== c.prefixLen);
    }
    return removed;
  }

  get(c: Cidr): T | undefined {
    return this.#byLen.get(c.prefixLen)?.get(keyOf(c.addr, c.prefixLen));
  }

  lookup(addr: Uint8Array): T | undefined {
    for (const len of this.#lens) {
      const v = this.#byLen.get(len)!.get(keyOf(addr, len));
      if (v !== undefined) return v;
    }
    return undefined;
  }

  get size(): number {
    let n = 0;
    for (const m of this.#byLen.values()) n += m.size;
    return n;
  }
}

/** Routes of both families; the value is whatever the caller routes to (a vNIC id). */
export class RouteTable<T> {
  #v4 = new FamilyTable<T>();
  #v6 = new FamilyTable<T>();

  #family(len: number): FamilyTable<T> {
    if (len === IPV4_LEN) return this.#v4;
    if (len === IPV6_LEN) return this.#v6;
    throw new RangeError(`address of ${len} bytes is neither IPv4 nor IPv6`);
  }

  /** Adds or replaces the route of `cidr`. */
  insert(cidr: Cidr, value: T): void {
    this.#family(cidr.addr.length).insert(cidr, value);
  }

  /** Removes the route of exactly `cidr`; true if there was one. */
  remove(cidr: Cidr): boolean {
    return this.#family(cidr.addr.length).remove(cidr);
  }

  /** The value of exactly `cidr`. */
  get(cidr: Cidr): T | undefined {
    return this.#family(cidr.addr.length).get(cidr);
  }

  /** The value of the longest prefix containing `addr` (4 or 16 bytes). */
  lookup(addr: Uint8Array): T | undefined {
    if (addr.length === IPV4_LEN) return this.#v4.lookup(addr);
    if (addr.length === IPV6_LEN) return this.#v6.lookup(addr);
    return undefined;
  }

  /** Number of routes. */
  get size(): number {
    return this.#v4.size + this.#v6.size;
  }
}
