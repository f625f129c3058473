import { assert, assertEquals } from "../assert.ts";
import { WorkerPool } from "../../actors/worker_pool.ts";
import { ActorRef } from "../../actors/actor_ref.ts";
import { Supervisor } from "../../actors/supervisor.ts";
import { configureLogging, createLogger } from "../../daemon/log.ts";
import type { PoolActorInfo, PoolActorMsg } from "./fixtures/pool_actor.ts";
import { unixAccepts, until } from "../helpers/wait.ts";

const POOL_ACTOR = new URL("./fixtures/pool_actor.ts", import.meta.url);
/** Worker starts under `deno test` include type checking: be generous. */
const START_TIMEOUT_MS = 30_000;
const logLines: string[] = [];
configureLogging({ level: "debug", sink: (l) => logLines.push(l) });

/** Names of the fixture Workers whose socket accepts: the Workers alive. */
async function liveWorkers(dir: string): Promise<string[]> {
  const names = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.endsWith(".sock"));
  const live = await Promise.all(names.map((n) => unixAccepts(`${dir}/${n}`)));
  return names.filter((_, i) => live[i]).map((n) => n.slice(0, -".sock".length)).sort();
}

/** A pool of the fixture actor whose Workers report themselves in a fresh directory. */
function fixturePool(size: number, name: string): { pool: WorkerPool; dir: string } {
  const dir = Deno.makeTempDirSync({ prefix: "mvirt-pool-test-" });
  // Workers share the process environment: each fixture Worker reads it when it loads.
  Deno.env.set("POOL_TEST_DIR", dir);
  const pool = new WorkerPool({ module: POOL_ACTOR, size, name, log: createLogger(name) });
  return { pool, dir };
}

Deno.test("a spawn takes a warm pool Worker; the pool refills, replaces a dead one, and leaks none", async () => {
  const { pool, dir } = fixturePool(2, "p1");
  let ref: ActorRef<PoolActorMsg> | null = null;
  try {
    // The fixture's first pool Worker dies while idle: the pool replaces it.
    await until(
      () => {
        const s = pool.stats();
        return s.lost >= 1 && s.warm === 2;
      },
      START_TIMEOUT_MS,
      "two warm Workers after the first died",
    );
    // The dead Worker's socket closes with its thread, a moment after the pool dropped it.
    await until(
      async () => (await liveWorkers(dir)).join() === "p1#2,p1#3",
      5_000,
      "the dead Worker gone, two live",
    );
    assert(logLines.some((l) => l.includes("pool Worker lost") && l.includes("died while idle")));

    const before = Date.now();
    ref = await ActorRef.spawn<PoolActorMsg>({
      name: "test/a",
      module: POOL_ACTOR,
      args: null,
      pool,
    });
    const info = await ref.call<PoolActorInfo>({ type: "Whoami" });
    assertEquals(info.name, "test/a");
    assert(["p1#2", "p1#3"].includes(info.workerName), `ran in ${info.workerName}`);
    assert(info.loadedAt <= before, "the actor's module was loaded before the spawn");
    assertEquals(pool.stats().takenWarm, 1);

    await until(() => pool.stats().warm === 2, START_TIMEOUT_MS, "the pool refilled");
    assertEquals(pool.stats().started, 4, "one Worker started per Worker lost or taken");
    assertEquals((await liveWorkers(dir)).length, 3, "two idle, one actor");

    await ref.stop();
    pool.stop();
    assertEquals(pool.stats().idle, 0);
    await until(
      async () => (await liveWorkers(dir)).length === 0,
      5_000,
      "every Worker gone after stop",
    );
  } finally {
    await ref?.stop();
    pool.stop();
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("an empty or stopped pool starts Workers on demand", async () => {
  const { pool, dir } = fixturePool(0, "p0");
  try {
    const ref = await ActorRef.spawn<PoolActorMsg>({
      name: "test/b",
      module: POOL_ACTOR,
      args: null,
      pool,
    });
    const info = await ref.call<PoolActorInfo>({ type: "Whoami" });
    assertEquals(info.workerName, "test/b", "a Worker of its own, named after the actor");
    assertEquals(pool.stats().startedOnDemand, 1);
    assertEquals(pool.stats().started, 0, "a pool of size 0 keeps nothing idle");
    assertEquals(await liveWorkers(dir), ["test_b"]);
    await ref.stop();
    await until(
      async () => (await liveWorkers(dir)).length === 0,
      5_000,
      "the actor's Worker gone after stop",
    );
  } finally {
    pool.stop();
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("a supervisor restarts a crashed child in a warm pool Worker", async () => {
  const { pool, dir } = fixturePool(1, "p2");
  const sup = new Supervisor({
    name: "test",
    log: createLogger("test"),
    intensity: 5,
    periodMs: 10_000,
    backoffMs: 10,
    maxBackoffMs: 50,
    onEscalate: () => {},
  });
  try {
    // p2#1 dies idle; p2#2 is the warm one.
    await until(
      () => pool.stats().lost >= 1 && pool.stats().warm === 1,
      START_TIMEOUT_MS,
      "warm",
    );
    const first = await sup.startChild<PoolActorMsg>({
      id: "c",
      restart: "permanent",
      spawn: () => ({ name: "test/c", module: POOL_ACTOR, args: null, pool }),
    });
    assertEquals((await first.call<PoolActorInfo>({ type: "Whoami" })).workerName, "p2#2");
    await until(() => pool.stats().warm === 1, START_TIMEOUT_MS, "refilled");
    first.kill();
    const second = await until(
      () => sup.ref<PoolActorMsg>("c") ?? undefined,
      START_TIMEOUT_MS,
      "the restart",
    );
    const info = await second.call<PoolActorInfo>({ type: "Whoami" });
    assertEquals(info.workerName, "p2#3", "the restart took the refilled pool Worker");
    assertEquals(pool.stats().takenWarm, 2);
  } finally {
    await sup.stop();
    pool.stop();
    await until(async () => (await liveWorkers(dir)).length === 0, 5_000, "all stopped");
    Deno.removeSync(dir, { recursive: true });
  }
});
