import { assert, assertEquals, assertRejects } from "../assert.ts";
import { Supervisor } from "../../actors/supervisor.ts";
import { ActorRef, CallFailed } from "../../actors/actor_ref.ts";
import { configureLogging, createLogger } from "../../daemon/log.ts";
import type { ProbeMsg } from "./fixtures/probe_actor.ts";

const PROBE = new URL("./fixtures/probe_actor.ts", import.meta.url);
const logLines: string[] = [];
configureLogging({ level: "debug", sink: (l) => logLines.push(l) });

function supervisor(onEscalate: (r: string) => void = () => {}, intensity = 5): Supervisor {
  return new Supervisor({
    name: "test",
    log: createLogger("test"),
    intensity,
    periodMs: 10_000,
    backoffMs: 10,
    maxBackoffMs: 50,
    onEscalate,
  });
}

function probeSpec(id: string, start = 0) {
  return {
    id,
    restart: "permanent" as const,
    spawn: () => ({ name: `test/${id}`, module: PROBE, args: { start } }),
  };
}

async function waitFor<T>(fn: () => T | null | undefined, timeoutMs: number): Promise<T> {
  const end = performance.now() + timeoutMs;
  while (performance.now() < end) {
    const v = fn();
    if (v) return v;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`condition not met within ${timeoutMs} ms`);
}

Deno.test("an actor answers calls through its mailbox, in order", async () => {
  const sup = supervisor();
  try {
    const ref = await sup.startChild<ProbeMsg>(probeSpec("a", 10));
    ref.cast({ type: "Add", n: 5 });
    assertEquals(await ref.call({ type: "Add", n: 1 }), 16);
    assertEquals(await ref.call({ type: "Get" }), 16);
    await assertRejects(() => ref.call({ type: "FailCall" }), CallFailed, "fails on purpose");
    assertEquals(await ref.call({ type: "Get" }), 16, "a failed call is not a crash");
  } finally {
    await sup.stop();
  }
});

for (const how of ["ThrowLater", "RejectLater"] as const) {
  Deno.test(`a crashed actor (${how}) is restarted within 200 ms; its sibling keeps answering`, async () => {
    const sup = supervisor();
    try {
      const a = await sup.startChild<ProbeMsg>(probeSpec("a"));
      const b = await sup.startChild<ProbeMsg>(probeSpec("b"));
      await b.call({ type: "Add", n: 7 });
      const firstStart = (await a.call<{ startedAt: number }>({ type: "Whoami" })).startedAt;
      const t0 = performance.now();
      a.cast({ type: how, reason: "boom" });
      // The sibling answers while the crashed actor is being replaced.
      const siblingAnswers: number[] = [];
      const restarted = await waitFor(() => {
        const r = sup.ref<ProbeMsg>("a");
        return r && r !== a && !r.exited ? r : null;
      }, 2000);
      const elapsed = performance.now() - t0;
      siblingAnswers.push(await b.call<number>({ type: "Get" }));
      assert(elapsed < 200, `restart took ${elapsed.toFixed(1)} ms`);
      assert(a.exited);
      const who = await restarted.call<{ startedAt: number }>({ type: "Whoami" });
      assert(who.startedAt >= firstStart);
      assertEquals(await restarted.call({ type: "Get" }), 0, "restarted from its child spec");
      assertEquals(siblingAnswers, [7]);
      assertEquals(b.exited, false, "the sibling was not restarted");
      assert(
        logLines.some((l) =>
          l.includes("child exited, restarting") && l.includes("child=a") && l.includes("boom")
        ),
        "the supervisor logs which child crashed and why",
      );
    } finally {
      await sup.stop();
    }
  });
}

Deno.test("crashing more often than the intensity allows escalates once and stops the children", async () => {
  const escalated: string[] = [];
  const sup = supervisor((r) => escalated.push(r), 2);
  try {
    await sup.startChild<ProbeMsg>(probeSpec("flaky"));
    const sibling = await sup.startChild<ProbeMsg>(probeSpec("steady"));
    for (let i = 0; i < 3; i++) {
      const ref = await waitFor(() => {
        const r = sup.ref<ProbeMsg>("flaky");
        return r && !r.exited ? r : null;
      }, 2000);
      ref.cast({ type: "ThrowLater", reason: `crash ${i}` });
      await waitFor(() => ref.exited, 2000);
    }
    await waitFor(() => escalated.length > 0, 2000);
    assertEquals(escalated.length, 1);
    assert(escalated[0].includes("flaky exceeded 2 restarts"), escalated[0]);
    await waitFor(() => sibling.exited, 3000);
    assert(sup.down);
    await assertRejects(() => sup.startChild(probeSpec("late")), Error, "is down");
  } finally {
    await sup.stop();
  }
});

Deno.test("a Worker that does not stop in time is terminated", async () => {
  const ref = await ActorRef.spawn<ProbeMsg>({
    name: "test/hang",
    module: PROBE,
    args: { start: 0 },
  });
  ref.cast({ type: "Hang", ms: 3_000 });
  const t0 = performance.now();
  await ref.stop(200);
  const took = performance.now() - t0;
  assert(ref.exited);
  assert(took < 1_500, `stop took ${took.toFixed(0)} ms`);
});
