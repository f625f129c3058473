import { assert, assertEquals, assertThrows } from "../assert.ts";
import { Conntrack, NOT_FOUND } from "../../secgroup/mod.ts";
import { Prng } from "../fixtures/mutate.ts";

const META_UDP4 = (4 << 8) | 17;
const FAR = 1e12;

function a4(x: number): Int32Array {
  return Int32Array.of(x | 0, 0, 0, 0);
}

Deno.test("a flow is found in both orientations and says which", () => {
  const ct = new Conntrack(16, 1);
  const g = a4(0x0a000005);
  const r = a4(0x0a000009);
  const slot = ct.insert(META_UDP4, g, r, 4000, 53, true, 0, FAR, 0);
  assert(slot >= 0);
  assertEquals(ct.lookup(META_UDP4, g, r, 4000, 53, 0), slot << 1);
  assertEquals(ct.lookup(META_UDP4, r, g, 53, 4000, 0), (slot << 1) | 1);
  assertEquals(ct.lookup(META_UDP4, r, g, 4000, 53, 0), NOT_FOUND, "ports not swapped");
  assertEquals(ct.lookup((4 << 8) | 6, g, r, 4000, 53, 0), NOT_FOUND, "other protocol");
  assertEquals(ct.originEgress(slot), true);
});

Deno.test("an expired flow is not found and leaves the table", () => {
  const ct = new Conntrack(16, 1);
  ct.insert(META_UDP4, a4(1), a4(2), 1, 2, false, 0, 100, 0);
  assertEquals(ct.size, 1);
  assert(ct.lookup(META_UDP4, a4(1), a4(2), 1, 2, 99) !== NOT_FOUND);
  assertEquals(ct.lookup(META_UDP4, a4(1), a4(2), 1, 2, 100), NOT_FOUND);
  assertEquals(ct.size, 0);
});

Deno.test("the table refuses past its limit unless expired flows can go", () => {
  assertThrows(() => new Conntrack(0), RangeError);
  const ct = new Conntrack(3, 1);
  for (let i = 0; i < 3; i++) assert(ct.insert(META_UDP4, a4(i), a4(9), 1, 2, true, 0, 50, 0) >= 0);
  assertEquals(ct.insert(META_UDP4, a4(7), a4(9), 1, 2, true, 0, 50, 10), NOT_FOUND);
  assert(ct.insert(META_UDP4, a4(7), a4(9), 1, 2, true, 0, 150, 60) >= 0, "expired swept");
  assertEquals(ct.size, 1);
});

Deno.test("random inserts, lookups, removals and growth agree with a Map", () => {
  const rng = new Prng(7);
  const ct = new Conntrack(5000, 3);
  const model = new Map<string, { src: number; dst: number; sp: number; dp: number }>();
  const key = (s: number, d: number, sp: number, dp: number) => `${s}/${d}/${sp}/${dp}`;
  for (let step = 0; step < 40_000; step++) {
    // Small spaces make collisions and re-inserts common.
    const s = rng.below(64);
    const d = rng.below(64);
    const sp = rng.below(8);
    const dp = rng.below(8);
    const k = key(s, d, sp, dp);
    const back = key(d, s, dp, sp);
    const hit = ct.lookup(META_UDP4, a4(s), a4(d), sp, dp, 0);
    const inModel = model.has(k) || model.has(back);
    assertEquals(hit !== NOT_FOUND, inModel, `step ${step}: ${k}`);
    if (hit === NOT_FOUND) {
      if (model.size < 5000) {
        assert(ct.insert(META_UDP4, a4(s), a4(d), sp, dp, true, 0, FAR, 0) >= 0);
        model.set(k, { src: s, dst: d, sp, dp });
      }
    } else if (rng.below(2) === 0) {
      ct.remove(hit >> 1);
      model.delete(k);
      model.delete(back);
    }
    assertEquals(ct.size, model.size);
  }
  // Every survivor is still reachable after all the shifting.
  for (const f of model.values()) {
    assert(ct.lookup(META_UDP4, a4(f.src), a4(f.dst), f.sp, f.dp, 0) !== NOT_FOUND);
  }
});

Deno.test("retain keeps what the predicate accepts, with keys in the original orientation", () => {
  const ct = new Conntrack(100, 5);
  for (let i = 0; i < 50; i++) {
    ct.insert(META_UDP4, a4(i), a4(1000), 5000 + i, 53, i % 2 === 0, 0, FAR, 0);
  }
  const seen: number[] = [];
  const removed = ct.retain((meta, src, dst, sport, dport, originEgress) => {
    assertEquals(meta, META_UDP4);
    assertEquals(dst[0], 1000);
    assertEquals(dport, 53);
    assertEquals(sport, 5000 + src[0]);
    seen.push(src[0]);
    return originEgress;
  });
  assertEquals(removed, 25);
  assertEquals(seen.length, 50);
  for (let i = 0; i < 50; i++) {
    const hit = ct.lookup(META_UDP4, a4(i), a4(1000), 5000 + i, 53, 0);
    assertEquals(hit !== NOT_FOUND, i % 2 === 0, `flow ${i}`);
  }
});

Deno.test("a full sweep removes every expired flow wherever the cursor stands", () => {
  for (let seed = 1; seed <= 50; seed++) {
    const ct = new Conntrack(8, seed);
    // Move the cursor to a seed-dependent place first.
    ct.insert(META_UDP4, a4(100), a4(200), 1, 1, true, 0, FAR, 0);
    ct.sweep(0, seed * 5);
    for (let i = 0; i < 7; i++) ct.insert(META_UDP4, a4(i), a4(9), 1, 2, true, 0, 50, 0);
    assertEquals(ct.size, 8);
    assert(ct.insert(META_UDP4, a4(50), a4(9), 1, 2, true, 0, 500, 60) >= 0, `seed ${seed}`);
    assertEquals(ct.size, 2, `seed ${seed}: the live flow and the new one`);
  }
});
