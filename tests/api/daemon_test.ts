/**
 * The api inside the whole daemon (root, api and dataplane processes): restart after a crash,
 * recovery from the store, and the node:http2 abort workaround under real clients.
 */
import { assert, assertEquals } from "../assert.ts";
import { alive, startDaemon, until } from "../helpers/daemon.ts";
import { connect, serving } from "./helpers.ts";

const NODE_CLIENT = new URL("./fixtures/node_client.mjs", import.meta.url).pathname;

async function accepts(path: string): Promise<boolean> {
  try {
    (await Deno.connect({ transport: "unix", path })).close();
    return true;
  } catch {
    return false;
  }
}

Deno.test("daemon: a killed api is back within 1 s, the dataplane untouched, state restored", async () => {
  await using d = await startDaemon();
  await serving(d.grpcTarget, d.log);
  const client = connect(d.grpcTarget);
  try {
    await client.call("CreateNetwork", {
      name: "blue",
      ipv4_enabled: true,
      ipv4_subnet: "10.60.0.0/24",
      ipv6_enabled: true,
      ipv6_prefix: "fd00:60::/64",
    });
    const nic = await client.call("CreateNic", { network_id: "blue", name: "web-1" });
    assert(await accepts(nic.socket_path));
    const { api, dataplane } = d.pids();
    d.kill("api", "SIGKILL");
    const killedAt = performance.now();
    const newApi = await d.waitForChild("api", api, 5000);
    const restartMs = performance.now() - killedAt;
    assert(restartMs < 1000, `api restarted after ${Math.round(restartMs)} ms`);
    assertEquals(d.pids().dataplane, dataplane, "the dataplane was not restarted");
    assert(await accepts(nic.socket_path), "the vNIC socket kept accepting connections");
    const again = await until(
      async () => {
        try {
          return await client.call("GetNic", { name: "web-1" });
        } catch {
          return null;
        }
      },
      10_000,
      "the restarted api to answer",
    );
    assertEquals({ ...again, state: nic.state }, nic, "the vNIC survived the api's death");
    assert(alive(newApi));
  } finally {
    client.close();
  }
});

Deno.test("daemon: five clients closing after 2000 calls each do not bring the api down", async () => {
  await using d = await startDaemon();
  const { api } = d.pids();
  const out = await new Deno.Command("node", {
    args: [NODE_CLIENT, "calls", d.grpcTarget, "5", "2000"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert(out.success, new TextDecoder().decode(out.stderr));
  assertEquals(
    JSON.parse(new TextDecoder().decode(out.stdout)),
    Array(5).fill({ ok: 2000, codes: {} }),
  );
  await new Promise((r) => setTimeout(r, 500));
  assertEquals(d.pids().api, api, `the api was restarted:\n${d.log().slice(-2000)}`);
  assert(alive(api!));
});
