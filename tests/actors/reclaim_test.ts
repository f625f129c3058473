import { assert, assertEquals } from "../assert.ts";
import { Reclaimer } from "../../actors/reclaim.ts";
import { sleep } from "../helpers/wait.ts";

const DELAY_MS = 20;
const INTERVAL_MS = 200;

Deno.test("reclaim: requests in a burst share one delayed collection", async () => {
  let collections = 0;
  const r = new Reclaimer({
    collector: () => () => collections++,
    delayMs: DELAY_MS,
    minIntervalMs: INTERVAL_MS,
  });
  for (let i = 0; i < 5; i++) assert(r.request(), "a collector exists: scheduled");
  assertEquals(collections, 0, "nothing runs before the delay");
  await sleep(DELAY_MS * 5);
  assertEquals(collections, 1, "one collection for the burst");
  assertEquals(r.runs, 1);
  assertEquals(r.pending, false);
});

Deno.test("reclaim: a second request waits out the minimum interval", async () => {
  const at: number[] = [];
  const r = new Reclaimer({
    collector: () => () => at.push(performance.now()),
    delayMs: DELAY_MS,
    minIntervalMs: INTERVAL_MS,
  });
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

Deno.test("reclaim: without a timer, the loop runs what is due", () => {
  let collections = 0;
  const r = new Reclaimer({
    collector: () => () => collections++,
    delayMs: DELAY_MS,
    minIntervalMs: INTERVAL_MS,
    timer: false,
  });
  assertEquals(r.dueIn(0), -1, "nothing requested: the loop may block");
  r.request(1000);
  assertEquals(r.dueIn(1000), DELAY_MS);
  assertEquals(r.runDue(1000 + DELAY_MS - 1), false, "not before it is due");
  assertEquals(r.runDue(1000 + DELAY_MS), true);
  assertEquals(collections, 1);
  assertEquals(r.dueIn(2000), -1);
  r.request(1000 + DELAY_MS + 1);
  assertEquals(r.dueIn(1000 + DELAY_MS + 1), INTERVAL_MS - 1, "the interval holds it back");
});

Deno.test("reclaim: without a collector nothing is scheduled", () => {
  const r = new Reclaimer({ collector: () => null, delayMs: DELAY_MS });
  assertEquals(r.request(), false);
  assertEquals(r.pending, false);
  assertEquals(r.dueIn(), -1);
});

Deno.test("reclaim: a cancelled collection does not run", async () => {
  let collections = 0;
  const r = new Reclaimer({ collector: () => () => collections++, delayMs: DELAY_MS });
  r.request();
  r.cancel();
  await sleep(DELAY_MS * 4);
  assertEquals(collections, 0);
  assertEquals(r.pending, false);
});
