/**
 * Routing between real guests: a routed prefix receives its traffic, a spoofed source goes
 * nowhere, and two networks with the same subnet never see each other's packets.
 */

import { assert } from "../assert.ts";
import { startDaemon } from "../helpers/daemon.ts";
import { bootGuests, type Guest, qemuAvailable } from "../helpers/guest.ts";
import { ok } from "./helpers.ts";
import { connect, serving } from "../api/helpers.ts";

/** Echo requests the guest's kernel has received (from /proc/net/snmp). */
async function inEchos(g: Guest): Promise<number> {
  const snmp = await ok(g, "grep '^Icmp:' /proc/net/snmp");
  const [names, values] = snmp.trim().split("\n").map((l) => l.split(/\s+/));
  return Number(values[names.indexOf("InEchos")]);
}

Deno.test({
  name: "routed prefix reached, spoofed source dropped, overlapping networks isolated",
  ignore: !qemuAvailable(),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using d = await startDaemon();
    await serving(d.grpcTarget, d.log);
    const api = connect(d.grpcTarget);
    try {
      const subnet = { ipv4_enabled: true, ipv4_subnet: "10.64.0.0/24" };
      const red = await api.call("CreateNetwork", { name: "red", ...subnet });
      const blue = await api.call("CreateNetwork", { name: "blue", ...subnet });
      const r1 = await api.call("CreateNic", { network_id: red.id, name: "r1" });
      const r2 = await api.call("CreateNic", {
        network_id: red.id,
        name: "r2",
        routed_ipv4_prefixes: ["192.168.77.0/24"],
      });
      // Same address in the other network as r2 has in red.
      const b1 = await api.call("CreateNic", {
        network_id: blue.id,
        name: "b1",
        ipv4_address: r2.ipv4_address,
      });
      const [g1, g2, gb] = await bootGuests([r1, r2, b1].map((n) => ({
        name: `rt-${n.name}`,
        nics: [{ socketPath: n.socket_path, mac: n.mac_address }],
      })));
      try {
        await Promise.all([g1, g2, gb].map((g) => ok(g, "mv-dhcp udhcpc eth0", 60_000)));

        // r2 holds 192.168.77.0/24: an address of it on r2's guest answers r1.
        await ok(g2, "ip addr add 192.168.77.1/32 dev lo");
        await ok(g1, "ip route add 192.168.77.0/24 via 169.254.0.1 dev eth0");
        await ok(g1, "ping -c 2 -W 5 192.168.77.1");
        // And r2 may use it as a source.
        await ok(g2, `ping -c 2 -W 5 -I 192.168.77.1 ${r1.ipv4_address}`);

        // r1 claims an address that is not its own: nothing reaches r2.
        const before = await inEchos(g2);
        await ok(g1, "ip addr add 10.64.0.200/32 dev eth0");
        const spoofed = await g1.run(`ping -c 3 -W 1 -I 10.64.0.200 ${r2.ipv4_address}`, {
          timeoutMs: 20_000,
        });
        assert(spoofed.code !== 0, "no answer to a spoofed source");
        assert((await inEchos(g2)) === before, "the spoofed echo requests never reached r2");

        // r1 pings r2's address: red's r2 answers, blue's b1 (same address) never sees it.
        const blueBefore = await inEchos(gb);
        await ok(g1, `ping -c 3 -W 5 ${r2.ipv4_address}`);
        assert((await inEchos(g2)) >= before + 3, "r2 answered");
        assert((await inEchos(gb)) === blueBefore, "nothing crossed into blue");
        // And blue's guest reaches nothing of red: its own address is its only peer there.
        const lonely = await gb.run(`ping -c 2 -W 1 ${r1.ipv4_address}`, { timeoutMs: 20_000 });
        assert(lonely.code !== 0, "blue cannot reach red's r1");
      } finally {
        await Promise.all([g1, g2, gb].map((g) => g.close()));
      }
    } finally {
      api.close();
    }
  },
});
