import { assert, assertEquals, assertThrows } from "../assert.ts";
import { FrameRing } from "../../routing/ring.ts";

Deno.test("frames come out in order, whole, and a full ring refuses", () => {
  const ring = new FrameRing(FrameRing.allocate(4, 16));
  for (let i = 0; i < 4; i++) assert(ring.push(new Uint8Array(i + 1).fill(i)));
  assertEquals(ring.push(new Uint8Array(1)), false, "full");
  assertEquals(ring.push(new Uint8Array(17)), false, "larger than a slot");
  const got: number[][] = [];
  assertEquals(ring.drain(3, (f) => got.push([...f])), 3);
  assertEquals(got, [[0], [1, 1], [2, 2, 2]]);
  assert(ring.push(new Uint8Array([9])), "a freed slot is reused");
  got.length = 0;
  assertEquals(ring.drain(10, (f) => got.push([...f])), 2);
  assertEquals(got, [[3, 3, 3, 3], [9]]);
  assertEquals(ring.drain(10, () => {}), 0);
  assertThrows(() => FrameRing.allocate(6, 8), RangeError);
});

Deno.test("three producer Workers and one consumer: nothing lost, nothing duplicated, per-producer order kept", async () => {
  const sab = FrameRing.allocate(64, 8);
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
  await Promise.all(done);
  for (const w of workers) w.terminate();
  assertEquals(next, [perProducer, perProducer, perProducer]);
});
