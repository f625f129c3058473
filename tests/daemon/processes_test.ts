/**
 * The root supervises its two children: what dies comes back, what is asked to stop leaves
 * nothing behind. These tests run the real daemon (three processes) on a free loopback port.
 */

import { assert, assertEquals, assertNotEquals } from "../assert.ts";
import { alive, startDaemon, until } from "../helpers/daemon.ts";
import { connect, serving } from "../api/helpers.ts";

function count(text: string, needle: string): number {
  return text.split(needle).length - 1;
}

Deno.test("killing the api leaves the dataplane running; the api comes back and resyncs", async () => {
  await using d = await startDaemon();
  const before = d.pids();
  await d.waitForLog(/dataplane connected and synced/);
  const synced = count(d.log(), "dataplane connected and synced");
  const t0 = performance.now();
  d.kill("api", "SIGKILL");
  const api = await d.waitForChild("api", before.api, 5_000);
  const restartMs = performance.now() - t0;
  assertNotEquals(api, before.api);
  assertEquals(d.pids().dataplane, before.dataplane, "the dataplane was not restarted");
  assert(alive(before.dataplane!), "the dataplane kept running");
  await until(() => count(d.log(), "dataplane connected and synced") > synced, 20_000, "resync");
  assert(restartMs < 1_000, `api restarted after ${restartMs.toFixed(0)} ms`);
  console.log(`api restarted in ${restartMs.toFixed(0)} ms`);
});

Deno.test("killing the dataplane makes the root restart it and the api re-push the state", async () => {
  await using d = await startDaemon();
  const before = d.pids();
  await d.waitForLog(/dataplane connected and synced/);
  const synced = count(d.log(), "dataplane connected and synced");
  d.kill("dataplane", "SIGKILL");
  const dp = await d.waitForChild("dataplane", before.dataplane, 5_000);
  assertNotEquals(dp, before.dataplane);
  assertEquals(d.pids().api, before.api, "the api was not restarted");
  await until(() => count(d.log(), "dataplane connected and synced") > synced, 20_000, "resync");
  await d.waitForLog(new RegExp(`dataplane connected and synced dataplanePid=${dp}\\b`), 5_000);
});

Deno.test("SIGTERM with live vNICs stops every process, removes the sockets and exits 0", async () => {
  await using d = await startDaemon();
  const pids = d.pids();
  await serving(d.grpcTarget, d.log);
  const api = connect(d.grpcTarget);
  const net = await api.call("CreateNetwork", {
    name: "term",
    ipv4_enabled: true,
    ipv4_subnet: "10.80.0.0/24",
  });
  for (const name of ["a", "b"]) await api.call("CreateNic", { network_id: net.id, name });
  api.close();
  assertEquals([...Deno.readDirSync(d.socketDir)].length, 2, "two vNIC sockets listen");
  const t0 = performance.now();
  const code = await d.stop();
  const stopMs = performance.now() - t0;
  assertEquals(code, 0);
  // Each vNIC Worker blocks in epoll_wait (woken by its wake eventfd, bounded by a 100 ms poll).
  assert(stopMs < 5_000, `shutdown took ${stopMs.toFixed(0)} ms`);
  for (const role of ["api", "dataplane"] as const) {
    assert(!alive(pids[role]!), `${role} (pid ${pids[role]}) is gone`);
  }
  const left = [...Deno.readDirSync(d.dataDir)].map((e) => e.name).filter((n) =>
    n.endsWith(".sock")
  );
  assertEquals(left, [], "no control socket left");
  const sockets = [...Deno.readDirSync(d.socketDir)].map((e) => e.name);
  assertEquals(sockets, [], "no vNIC socket left");
  assert(!d.log().includes("did not stop in time"), "children stopped within the grace time");
});

Deno.test("if the root is killed, its children notice and exit by themselves", async () => {
  await using d = await startDaemon();
  const pids = d.pids();
  await d.waitForLog(/dataplane connected and synced/);
  d.kill("root", "SIGKILL");
  await until(() => !alive(pids.api!) && !alive(pids.dataplane!), 10_000, "children to exit");
  assert(/\[dataplane\] stopping why="parent gone"/.test(d.log()), "dataplane saw the root go");
});

Deno.test("bad flags are refused with a message that names them", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("../../daemon/main.ts", import.meta.url).pathname, "--listne", "x"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assertEquals(out.code, 2);
  assertEquals(
    new TextDecoder().decode(out.stderr).trim(),
    'mvirt-net: unknown flag "--listne" (see --help)',
  );
});

Deno.test("a socket no vNIC owns (left by a crash) is removed when the dataplane syncs", async () => {
  const dir = await Deno.makeTempDir({ prefix: "mvirt-net-sockets-" });
  try {
    const stale = `${dir}/0b7c7d6e-dead-4bad-8bad-000000000000.sock`;
    // Deno unlinks a socket it closes; a file of the same name is what a crash leaves.
    Deno.writeTextFileSync(stale, "");
    Deno.writeTextFileSync(`${dir}/keep.txt`, "not a socket of ours");
    await using d = await startDaemon({ socketDir: dir });
    await d.waitForLog(/removed stale vNIC socket/);
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), ["keep.txt"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
