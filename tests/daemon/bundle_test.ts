/**
 * The root bundles the vNIC actor at start (daemon/bundle.ts) and the dataplane's vNIC Workers
 * run the bundle; when no bundle can be made the vNICs run the TypeScript modules and still serve.
 */

import { assert, assertEquals } from "../assert.ts";
import { startDaemon } from "../helpers/daemon.ts";
import { connect, serving } from "../api/helpers.ts";
import { vhostAnswers } from "../../vhost/probe.ts";
import { vnicBundlePath } from "../../daemon/bundle.ts";

/** Creates a vNIC and checks that its actor answers a VMM's GET_FEATURES. */
async function createdNicServes(target: string): Promise<void> {
  const api = connect(target);
  try {
    await api.call("CreateNetwork", { name: "b", ipv4_enabled: true, ipv4_subnet: "10.66.0.0/24" });
    const nic = await api.call("CreateNic", { network_id: "b", name: "a" });
    assertEquals(await vhostAnswers(nic.socket_path, 20_000), true, "the vNIC's actor answers");
  } finally {
    api.close();
  }
}

Deno.test("the root bundles the vNIC actor and the vNIC Workers run the bundle", async () => {
  await using d = await startDaemon();
  await serving(d.grpcTarget, d.log);
  const path = vnicBundlePath(d.dataDir);
  const code = Deno.readTextFileSync(path);
  // One file holding the actor and what it imports, linked to its source map.
  assert(code.includes("runActor("), "the bundle holds the actor runtime");
  assert(code.includes("function libraryPath("), "the bundle holds the shim binding");
  assert(code.trimEnd().endsWith("//# sourceMappingURL=vnic.js.map"), "source map linked");
  const map = JSON.parse(Deno.readTextFileSync(`${path}.map`)) as { sources: string[] };
  assert(map.sources.some((s) => s.endsWith("actors/vnic.ts")), "the map names vnic.ts");
  await d.waitForLog(/vNIC actor module module=file:\/\/\S+\/bundle\/vnic\.js/);
  await createdNicServes(d.grpcTarget);
  assert(!/cannot bundle|bundle missing/.test(d.log()), "no fallback was taken");
});

Deno.test("without a bundle the vNICs run the TypeScript modules and still serve", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "mvirt-net-bundle-" });
  // A file where the bundle's directory would go: the bundle cannot be written.
  Deno.writeTextFileSync(`${dataDir}/bundle`, "");
  try {
    await using d = await startDaemon({ dataDir });
    await serving(d.grpcTarget, d.log);
    await d.waitForLog(/WARN\s+\[root\] cannot bundle the vNIC actor/);
    await d.waitForLog(/vNIC actor module module=file:\/\/\S+\/actors\/vnic\.ts/);
    await createdNicServes(d.grpcTarget);
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});
