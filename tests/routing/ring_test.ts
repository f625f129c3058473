import { assert, assertEquals, assertThrows } from "../assert.ts";
import { FrameRing } from "../../routing/ring.ts";
import { varyingLength } from "./fixtures/ring_producer.ts";

Deno.test("frames come out in order, whole, and a full ring refuses", () => {
  const ring = new FrameRing(FrameRing.allocate(4, 16, 0));
  for (let i = 0; i < 4; i++) assert(ring.push(new Uint8Array(i + 1).fill(i)));
  assertEquals(ring.push(new Uint8Array(1)), false, "full");
  assertEquals(ring.push(new Uint8Array(17)), false, "a frame that needs two slots does not fit");
  const got: number[][] = [];
  assertEquals(ring.drain(3, (f) => got.push([...f])), 3);
  assertEquals(got, [[0], [1, 1], [2, 2, 2]]);
  assert(ring.push(new Uint8Array([9])), "a freed slot is reused");
  got.length = 0;
  assertEquals(ring.drain(10, (f) => got.push([...f])), 2);
  assertEquals(got, [[3, 3, 3, 3], [9]]);
  assertEquals(ring.drain(10, () => {}), 0);
  assertThrows(() => FrameRing.allocate(6, 8, 0), RangeError);
});

Deno.test("ready() tells the consumer whether a drain would find a record", () => {
  const ring = new FrameRing(FrameRing.allocate(8, 16, 0));
  assertEquals(ring.ready(), false, "empty");
  for (let i = 0; i < 6; i++) assert(ring.push(new Uint8Array([i])));
  assertEquals(ring.ready(), true, "frames pushed");
  assertEquals(ring.drain(5, () => {}), 5);
  assertEquals(ring.ready(), true, "a burst left one frame behind");
  assertEquals(ring.drain(5, () => {}), 1);
  assertEquals(ring.ready(), false, "drained");
  // A frame of three slots does not fit the two left before the end: a skip record, then the
  // frame at slot 0. The skip record alone makes the ring ready.
  assert(ring.push(new Uint8Array(60)));
  assertEquals(ring.ready(), true, "a skip record is ready too");
  assertEquals(ring.drain(4, (f) => assertEquals(f.length, 60)), 1);
  assertEquals(ring.ready(), false);
});

Deno.test("three producer Workers and one consumer: nothing lost, nothing duplicated, per-producer order kept", async () => {
  const sab = FrameRing.allocate(64, 8, 0);
  const ring = new FrameRing(sab);
  const perProducer = 20_000;
  const workers = [0, 1, 2].map(() =>
    new Worker(new URL("./fixtures/ring_producer.ts", import.meta.url).href, { type: "module" })
  );
  const done = workers.map((w, id) =>
    new Promise<void>((resolve) => {
      w.onmessage = () => resolve();
      w.postMessage({ sab, id, count: perProducer });
    })
  );
  const next = [0, 0, 0];
  let total = 0;
  let finished = false;
  Promise.all(done).then(() => (finished = true));
  const deadline = performance.now() + 20_000;
  while (total < 3 * perProducer && performance.now() < deadline) {
    total += ring.drain(256, (f) => {
      const v = new DataView(f.buffer, f.byteOffset, f.byteLength);
      const id = v.getUint32(0);
      assertEquals(v.getUint32(4), next[id], `producer ${id} in order`);
      next[id]++;
    });
    if (!finished) await new Promise((r) => setTimeout(r, 0));
  }
  // Producers that did not get all their frames in spin on a full ring: stop them, then check.
  if (total === 3 * perProducer) await Promise.all(done);
  for (const w of workers) w.terminate();
  assertEquals(next, [perProducer, perProducer, perProducer]);
});

Deno.test("metadata travels with each frame; a large frame spans slots; records never wrap", () => {
  const ring = new FrameRing(FrameRing.allocate(8, 100, 0)); // slots of 100 bytes + 10 of metadata
  assertEquals(ring.maxFrame, 8 * 110 - 10);
  assertEquals(ring.push(new Uint8Array(ring.maxFrame + 1)), false, "larger than the ring");
  const meta = (n: number) => new Uint8Array(10).fill(n);
  assert(ring.push(new Uint8Array(100).fill(1), meta(1)), "one slot");
  assert(ring.push(new Uint8Array(300).fill(2), meta(2)), "three slots");
  assertEquals(ring.push(new Uint8Array(500).fill(3), meta(3)), false, "five slots, four free");
  const got: [number, number, number][] = [];
  const take = (f: Uint8Array, m: Uint8Array) => got.push([f.length, f[f.length - 1], m[9]]);
  assertEquals(ring.drain(1, take), 1);
  // Tail at slot 4: a frame of three slots would cross the end, so slots 4..7 are skipped and it
  // goes to slots 0..2 (free since the drain above freed slot 0 and the next one frees 1..3).
  assertEquals(ring.push(new Uint8Array(250).fill(4), meta(4)), false, "slots 1..3 still held");
  assertEquals(ring.drain(10, take), 1);
  assert(ring.push(new Uint8Array(250).fill(4), meta(4)), "placed at slot 0 after a skip");
  assert(ring.push(new Uint8Array(20).fill(5)), "no metadata: zeros");
  assertEquals(ring.drain(10, take), 2);
  assertEquals(got, [[100, 1, 1], [300, 2, 2], [250, 4, 4], [20, 5, 0]]);
  assertEquals(ring.drain(10, take), 0);
  // 64 KiB GSO frames in a ring allocated like a vNIC's (256 slots for an MTU of 1500, raised
  // to the default minimum of 1 MiB: 1024 slots): 23 records of 43 slots fit.
  const big = new FrameRing(FrameRing.allocate(256, 1518));
  assertEquals(big.slots, 1024);
  const frame = new Uint8Array(65553).map((_, i) => i & 0xff);
  for (let i = 0; i < 23; i++) assert(big.push(frame, meta(i)), `large frame ${i}`);
  assertEquals(big.push(frame), false, "the 24th does not fit");
  const sizes: number[] = [];
  big.drain(100, (f, m) => {
    assertEquals(f, frame);
    sizes.push(m[0]);
  });
  assertEquals(sizes, [...Array(23).keys()]);
});

Deno.test("three producer Workers with frames of varying size: nothing lost, order kept", async () => {
  const sab = FrameRing.allocate(64, 256, 0);
  const ring = new FrameRing(sab);
  const perProducer = 5_000;
  const workers = [0, 1, 2].map(() =>
    new Worker(new URL("./fixtures/ring_producer.ts", import.meta.url).href, { type: "module" })
  );
  const done = workers.map((w, id) =>
    new Promise<void>((resolve) => {
      w.onmessage = () => resolve();
      w.postMessage({ sab, id, count: perProducer, varying: true });
    })
  );
  const next = [0, 0, 0];
  let total = 0;
  let finished = false;
  Promise.all(done).then(() => (finished = true));
  const deadline = performance.now() + 20_000;
  while (total < 3 * perProducer && performance.now() < deadline) {
    total += ring.drain(256, (f, m) => {
      const v = new DataView(f.buffer, f.byteOffset, f.byteLength);
      const id = v.getUint32(0);
      const seq = v.getUint32(4);
      assertEquals(seq, next[id], `producer ${id} in order`);
      assertEquals(f.length, varyingLength(seq), "length");
      assertEquals(m[0], id, "metadata");
      assertEquals(f[f.length - 1], seq & 0xff, "last byte");
      next[id]++;
    });
    if (!finished) await new Promise((r) => setTimeout(r, 0));
  }
  // Producers that did not get all their frames in spin on a full ring: stop them, then check.
  if (total === 3 * perProducer) await Promise.all(done);
  for (const w of workers) w.terminate();
  assertEquals(next, [perProducer, perProducer, perProducer]);
});
