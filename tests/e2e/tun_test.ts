/**
 * Public networks through the TUN device, inside a network namespace the test creates: the
 * daemon runs under `unshare -n`, so its TUN device and kernel routes exist only there. A guest
 * of a public network reaches an address of that namespace (on a veth) and is reached from it;
 * a kernel route deleted by hand is put back by the reconciliation loop.
 */

import { assert } from "../assert.ts";
import { startDaemon, until } from "../helpers/daemon.ts";
import { bootGuest, qemuAvailable } from "../helpers/guest.ts";
import { ok } from "./helpers.ts";
import { addFarSide, inNs } from "../helpers/netns.ts";
import { connect, serving } from "../api/helpers.ts";

const TUN = "mvtun0";
const FAR_SIDE = "192.0.2.1";

Deno.test({
  name:
    "a public network reaches the far side of the TUN device and back; deleted routes come back",
  ignore: !qemuAvailable(),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "mvirt-net-tun-" });
    try {
      await using d = await startDaemon({
        wrap: ["unshare", "-n", "--"],
        listen: `unix:${dir}/api.sock`,
        tun: true,
        args: [`--tun-name=${TUN}`, "--reconcile-interval=1"],
      });
      await serving(d.grpcTarget, d.log);
      const ns = d.pid;
      await addFarSide(ns, FAR_SIDE);
      const api = connect(d.grpcTarget);
      try {
        const net = await api.call("CreateNetwork", {
          name: "public",
          ipv4_enabled: true,
          ipv4_subnet: "10.90.0.0/24",
          is_public: true,
        });
        const nic = await api.call("CreateNic", { network_id: net.id, name: "p" });
        await until(
          async () =>
            (await inNs(ns, "ip", "route", "show", "dev", TUN)).out.includes("10.90.0.0/24"),
          10_000,
          "the kernel route",
        );
        const g = await bootGuest({
          name: "tun-guest",
          nics: [{ socketPath: nic.socket_path, mac: nic.mac_address }],
        });
        try {
          await ok(g, "mv-dhcp udhcpc eth0", 60_000);
          await ok(g, `ping -c 3 -W 5 ${FAR_SIDE}`);
          const back = await inNs(ns, "ping", "-c", "3", "-W", "5", nic.ipv4_address);
          assert(back.code === 0, `the namespace reaches the guest:\n${back.out}`);

          const del = await inNs(ns, "ip", "route", "del", "10.90.0.0/24", "dev", TUN);
          assert(del.code === 0, del.out);
          await until(
            async () =>
              (await inNs(ns, "ip", "route", "show", "dev", TUN)).out.includes("10.90.0.0/24"),
            10_000,
            "the reconciliation loop to put the route back",
          );
          await ok(g, `ping -c 2 -W 5 ${FAR_SIDE}`);
        } finally {
          await g.close();
        }
      } finally {
        api.close();
      }
      assert(/TUN device up device=mvtun0/.test(d.log()), "the TUN actor started");
      assert(/kernel routes repaired/.test(d.log()), "the repair is logged");
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
