/**
 * Daemon restart under load: 200 parallel CreateNic/DeleteNic calls against the real daemon,
 * the whole daemon (root, api, dataplane) killed with SIGKILL half-way, started again on the
 * same directories. Afterwards the store is consistent (no leaked or duplicate address, no
 * half-created vNIC, every socket file matches a vNIC and every vNIC's socket accepts) and
 * every create acknowledged before the kill is there unless its delete was acknowledged too.
 */
import { DatabaseSync } from "node:sqlite";
import { assert, assertEquals } from "../assert.ts";
import { alive, startDaemon } from "../helpers/daemon.ts";
import { sleep, unixAccepts, until, withTimeout } from "../helpers/wait.ts";
import { connect, healthClient, retryUnavailable, serving } from "../api/helpers.ts";

/** Parallel create (and, for every other one, delete) operations. */
const OPERATIONS = 200;
/** The kill comes once this many creates were acknowledged (or after KILL_AFTER_MS). */
const KILL_AFTER_ACKS = OPERATIONS / 4;
const KILL_AFTER_MS = 20_000;
/** Bound of the whole load phase. */
const LOAD_TIMEOUT_MS = 60_000;
/** A call still unanswered this long after the kill is given up on. */
const CALL_DEADLINE_MS = 30_000;

interface Op {
  name: string;
  createdId?: string;
  /** A DeleteNic was sent (its answer may have been cut off by the kill). */
  deleteSent?: boolean;
  /** The DeleteNic was acknowledged. */
  deleted?: boolean;
  /** How the op ended: "done", or the status of the call that failed. */
  outcome?: string;
}

Deno.test("restart under load: SIGKILL of the whole daemon during 200 parallel CreateNic/DeleteNic", async () => {
  await using first = await startDaemon();
  let ops: Op[] = [];
  let killedAt = 0;
  {
    await serving(first.grpcTarget, first.log);
    const client = connect(first.grpcTarget);
    try {
      await client.call("CreateNetwork", {
        name: "load",
        ipv4_enabled: true,
        ipv4_subnet: "10.88.0.0/22",
        ipv6_enabled: true,
        ipv6_prefix: "fd00:88::/64",
      });
      ops = Array.from({ length: OPERATIONS }, (_, i) => ({ name: `n${i}` }));
      let acks = 0;
      const acked = Promise.withResolvers<void>();
      const deadline = () => ({ deadline: Date.now() + CALL_DEADLINE_MS });
      const run = async (op: Op, i: number) => {
        try {
          const nic = await new Promise<{ id: string }>((resolve, reject) =>
            (client.raw.CreateNic as (
              r: unknown,
              o: unknown,
              cb: (e: Error | null, v: { id: string }) => void,
            ) => void).call(
              client.raw,
              { network_id: "load", name: op.name },
              deadline(),
              (e, v) => e ? reject(e) : resolve(v),
            )
          );
          op.createdId = nic.id;
          if (++acks >= KILL_AFTER_ACKS) acked.resolve();
          if (i % 2 === 1) {
            op.deleteSent = true;
            await client.call("DeleteNic", { id: nic.id });
            op.deleted = true;
          }
          op.outcome = "done";
        } catch (e) {
          op.outcome = (e as { code?: number }).code !== undefined
            ? `grpc ${(e as { code: number }).code}`
            : String(e);
        }
      };
      const all = Promise.all(ops.map(run));
      const started = performance.now();
      await Promise.race([acked.promise, sleep(KILL_AFTER_MS)]);
      const pids = first.pids();
      assert(pids.api && pids.dataplane, `pids.json lists both children: ${JSON.stringify(pids)}`);
      for (const pid of [pids.root, pids.api, pids.dataplane]) {
        try {
          Deno.kill(pid!, "SIGKILL");
        } catch {
          // Already gone (a child dies with its parent's pipe).
        }
      }
      killedAt = performance.now() - started;
      await withTimeout(first.status, 10_000, "the root to die");
      await until(
        () => ![pids.api!, pids.dataplane!].some(alive),
        10_000,
        "the children to die",
      );
      await withTimeout(all, LOAD_TIMEOUT_MS, "every call to end after the kill");
    } finally {
      client.close();
    }
  }
  const ackedCreates = ops.filter((o) => o.createdId);
  const ackedDeletes = ops.filter((o) => o.deleted);
  const unanswered = ops.filter((o) => o.outcome !== "done");
  console.log(
    `killed after ${Math.round(killedAt)} ms: ${ackedCreates.length} creates and ` +
      `${ackedDeletes.length} deletes acknowledged, ${unanswered.length} calls cut off`,
  );
  assert(ackedCreates.length >= 1, "some creates were acknowledged before the kill");
  assert(unanswered.length >= 1, "the kill came while calls were in flight");

  const restartStart = performance.now();
  await using second = await startDaemon({
    dataDir: first.dataDir,
    socketDir: first.socketDir,
  });
  // Open until the end: see healthClient.
  const health = healthClient(second.grpcTarget);
  await serving(second.grpcTarget, second.log, health);
  const client = connect(second.grpcTarget);
  try {
    await checkAfterRestart();
  } catch (e) {
    // The daemon's own account is what explains a failure here (an api restart, say).
    const log = second.log().split("\n").filter((l) => !l.includes("removed stale")).join("\n");
    throw new Error(
      `${(e as Error).message}\n--- log after the restart (end) ---\n${log.slice(-4000)}`,
      { cause: e },
    );
  } finally {
    client.close();
    health.close();
  }

  async function checkAfterRestart() {
    console.log(
      `serving again ${Math.round(performance.now() - restartStart)} ms after the restart`,
    );
    // Reads retry UNAVAILABLE: an api restart (see retryUnavailable) is not what this test is
    // about.
    const { nics } = await retryUnavailable(() => client.call("ListNics", {}));
    const byId = new Map(nics.map((n) => [n.id, n]));
    // Every acknowledged create is there unless a delete was sent for it; no acknowledged
    // delete came back. A delete cut off by the kill may or may not have been committed.
    for (const op of ackedCreates) {
      if (op.deleted) assert(!byId.has(op.createdId!), `${op.name} deleted, yet back`);
      else if (!op.deleteSent) assert(byId.has(op.createdId!), `${op.name} created, yet gone`);
    }
    // Nothing that was never asked for.
    const names = new Set(ops.map((o) => o.name));
    for (const n of nics) assert(names.has(n.name), `unexpected vNIC ${n.name}`);
    // No duplicate addresses among the vNICs.
    for (const fam of ["ipv4_address", "ipv6_address"] as const) {
      const addrs = nics.map((n) => n[fam]);
      assertEquals(new Set(addrs).size, addrs.length, `duplicate ${fam}`);
      assert(addrs.every((a) => a !== ""), `a vNIC without ${fam}`);
    }
    // The store itself: no pending (half-created) vNIC, no address without a listed vNIC.
    const db = new DatabaseSync(`${second.dataDir}/mvirt-net.db`, { readOnly: true });
    try {
      const pending = db.prepare("SELECT id FROM nics WHERE pending = 1").all();
      assertEquals(pending, [], "half-created vNICs left in the store");
      const addresses = db.prepare("SELECT family, address, nic_id FROM addresses").all() as {
        family: number;
        address: string;
        nic_id: string;
      }[];
      const leaked = addresses.filter((a) => !byId.has(a.nic_id));
      assertEquals(leaked, [], "addresses held by no listed vNIC");
      assertEquals(addresses.length, 2 * nics.length, "one IPv4 and one IPv6 per vNIC");
    } finally {
      db.close();
    }
    // Every socket file is a listed vNIC's, and every listed vNIC's socket accepts.
    const files = [...Deno.readDirSync(second.socketDir)].map((e) =>
      `${second.socketDir}/${e.name}`
    )
      .sort();
    assertEquals(files, nics.map((n) => n.socket_path).sort(), "socket files = vNIC rows");
    for (const n of nics) {
      assertEquals(await unixAccepts(n.socket_path), true, `${n.name}: socket accepts`);
    }
    // And the store keeps working: a new vNIC gets an address nobody holds (once the api
    // serves, should it have restarted meanwhile).
    await serving(second.grpcTarget, second.log, health);
    const fresh = await client.call("CreateNic", { network_id: "load", name: "after-restart" });
    assert(!nics.some((n) => n.ipv4_address === fresh.ipv4_address), "fresh IPv4 is free");
    assert(!nics.some((n) => n.ipv6_address === fresh.ipv6_address), "fresh IPv6 is free");
    const apiRestarts = second.log().match(/child exited, restarting role=api/g)?.length ?? 0;
    console.log(
      `after restart: ${nics.length} vNICs, ${files.length} sockets, all consistent ` +
        `(api restarts meanwhile: ${apiRestarts})`,
    );
  }
});
