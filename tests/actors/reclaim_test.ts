import { assert, assertEquals } from "../assert.ts";
import { Reclaimer } from "../../actors/reclaim.ts";
import { sleep } from "../helpers/wait.ts";

const DELAY_MS = 20;
const INTERVAL_MS = 200;

Deno.test("reclaim: requests in a burst share one delayed collection", async () => {
  let collections = 0;
  const r = new Reclaimer(() => () => collections++, DELAY_MS, INTERVAL_MS);
  for (let i = 0; i < 5; i++) assert(r.request(), "a collector exists: scheduled");
  assertEquals(collections, 0, "nothing runs before the delay");
  await sleep(DELAY_MS * 5);
  assertEquals(collections, 1, "one collection for the burst");
  assertEquals(r.runs, 1);
});

Deno.test("reclaim: a second request waits out the minimum interval", async () => {
  const at: number[] = [];
  const r = new Reclaimer(() => () => at.push(performance.now()), DELAY_MS, INTERVAL_MS);
  r.request();
  await sleep(DELAY_MS * 4);
  assertEquals(at.length, 1);
  r.request();
  await sleep(DELAY_MS * 4);
  assertEquals(at.length, 1, "not again within the interval");
  const deadline = performance.now() + INTERVAL_MS * 5;
  while (at.length < 2 && performance.now() < deadline) await sleep(10);
  assertEquals(at.length, 2, "the deferred collection ran");
  assert(at[1] - at[0] >= INTERVAL_MS - 1, `collections ${at[1] - at[0]} ms apart`);
});

Deno.test("reclaim: without a collector nothing is scheduled", () => {
  const r = new Reclaimer(() => null, DELAY_MS, INTERVAL_MS);
  assertEquals(r.request(), false);
  assertEquals(r.pending, false);
});

Deno.test("reclaim: a cancelled collection does not run", async () => {
  let collections = 0;
  const r = new Reclaimer(() => () => collections++, DELAY_MS, INTERVAL_MS);
  r.request();
  r.cancel();
  await sleep(DELAY_MS * 4);
  assertEquals(collections, 0);
  assertEquals(r.pending, false);
});
