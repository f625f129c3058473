/**
 * A supervisor's restart intensity counts restarts per child: many children that each crash
 * once within the period (as many vNIC Workers may during a restore under load) do not
 * escalate, while one child crashing past the intensity does (supervisor_test.ts).
 */
import { assert, assertEquals } from "../assert.ts";
import { Supervisor } from "../../actors/supervisor.ts";
import type { ActorRef } from "../../actors/actor_ref.ts";
import { configureLogging, createLogger } from "../../daemon/log.ts";
import type { ProbeMsg } from "./fixtures/probe_actor.ts";

const PROBE = new URL("./fixtures/probe_actor.ts", import.meta.url);
const CHILDREN = 8;
const INTENSITY = 2;
const START_TIMEOUT_MS = 30_000;
configureLogging({ level: "error", sink: () => {} });

async function waitFor<T>(fn: () => T, timeoutMs: number, what: string): Promise<NonNullable<T>> {
  const end = performance.now() + timeoutMs;
  while (performance.now() < end) {
    const v = fn();
    if (v) return v as NonNullable<T>;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`${what}: not within ${timeoutMs} ms`);
}

Deno.test("children that each crash once within the period do not escalate their supervisor", async () => {
  const escalations: string[] = [];
  const sup = new Supervisor({
    name: "test",
    log: createLogger("test"),
    intensity: INTENSITY,
    periodMs: 60_000,
    backoffMs: 10,
    maxBackoffMs: 50,
    onEscalate: (r) => escalations.push(r),
  });
  try {
    const ids = Array.from({ length: CHILDREN }, (_, i) => `c${i}`);
    const first: ActorRef<ProbeMsg>[] = [];
    for (const id of ids) {
      first.push(
        await sup.startChild<ProbeMsg>({
          id,
          restart: "permanent",
          spawn: () => ({ name: `test/${id}`, module: PROBE, args: { start: 0 } }),
        }),
      );
    }
    for (const ref of first) ref.cast({ type: "ThrowLater", reason: "one crash each" });
    const restarted = await waitFor(
      () => {
        const refs = ids.map((id) => sup.ref<ProbeMsg>(id));
        return refs.every((r, i) => r && r !== first[i] && !r.exited) ? refs : null;
      },
      START_TIMEOUT_MS,
      `all ${CHILDREN} children restarted`,
    );
    for (const r of restarted) assertEquals(await r!.call({ type: "Get" }), 0);
    assertEquals(escalations, [], `${CHILDREN} crashes of ${CHILDREN} children > intensity`);
    assert(!sup.down);
  } finally {
    await sup.stop();
  }
});
