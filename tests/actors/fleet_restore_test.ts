/**
 * A restore that cannot start every vNIC at once still converges: the dataplane keeps trying
 * each wanted vNIC whose start failed (a Worker that did not start in time under load, a
 * socket path in use) until it runs, without disturbing the ones that did start.
 */
import { assert, assertEquals } from "../assert.ts";
import { dataplaneRequest, startDaemon } from "../helpers/daemon.ts";
import { unixAccepts, until } from "../helpers/wait.ts";
import { connect, serving } from "../api/helpers.ts";

const NICS = 4;
/** The dataplane's restart, its sync and a first retry or two (1 s, then 2 s) fit in this. */
const RESTORE_TIMEOUT_MS = 30_000;

Deno.test("restore: a vNIC whose start fails is retried until it runs; its siblings are untouched", async () => {
  await using d = await startDaemon();
  await serving(d.grpcTarget, d.log);
  const client = connect(d.grpcTarget);
  let squatter: Deno.UnixListener | null = null;
  try {
    await client.call("CreateNetwork", {
      name: "retry",
      ipv4_enabled: true,
      ipv4_subnet: "10.61.0.0/24",
      ipv6_enabled: true,
      ipv6_prefix: "fd00:61::/64",
    });
    const nics: { id: string; socket_path: string }[] = [];
    for (let i = 0; i < NICS; i++) {
      nics.push(await client.call("CreateNic", { network_id: "retry", name: `r${i}` }));
    }
    const [blocked, ...others] = nics;
    const oldDataplane = d.pids().dataplane;

    // The dataplane dies; before its successor restores the state, something else holds the
    // first vNIC's socket path, so that vNIC's start fails.
    d.kill("dataplane", "SIGKILL");
    Deno.removeSync(blocked.socket_path);
    squatter = Deno.listen({ transport: "unix", path: blocked.socket_path });
    await d.waitForChild("dataplane", oldDataplane, 10_000);

    await until(
      async () => (await Promise.all(others.map((n) => unixAccepts(n.socket_path)))).every(Boolean),
      RESTORE_TIMEOUT_MS,
      "the other vNICs restored",
    );
    await until(
      async () => (await client.call("GetNic", { id: blocked.id })).state === "NIC_STATE_ERROR",
      RESTORE_TIMEOUT_MS,
      "the blocked vNIC reported ERROR",
    );

    // The obstacle goes away (its stale socket file stays): the next retry starts the vNIC.
    squatter.close();
    squatter = null;
    await until(
      async () => (await client.call("GetNic", { id: blocked.id })).state === "NIC_STATE_CREATED",
      RESTORE_TIMEOUT_MS,
      "the blocked vNIC reported CREATED after a retry",
    );
    assert(await unixAccepts(blocked.socket_path), "its socket accepts");
    const counters = await dataplaneRequest(d.dataDir, { type: "GetNicCounters", id: blocked.id });
    assertEquals(counters.type, "Counters", "the dataplane runs the vNIC's actor");
    for (const n of others) assert(await unixAccepts(n.socket_path), `${n.id} still accepts`);
  } finally {
    squatter?.close();
    client.close();
  }
});
