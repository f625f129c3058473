/**
 * Validates the test-guest recipe (scripts/guest/build.sh + tests/helpers/guest.ts) on the
 * reference backend: two guests on dpdk-testpmd's vhost-user ports 0 and 1, which testpmd
 * joins in io forwarding, as if on one wire. The addresses exist only inside the guests.
 * @module
 */

import { assert, assertEquals } from "../assert.ts";
import { bootGuest, bootGuests, buildGuest, type Guest, qemuAvailable } from "../helpers/guest.ts";
import { startTestpmd, testpmdAvailable } from "../helpers/testpmd.ts";

const haveQemu = qemuAvailable();
const haveTestpmd = testpmdAvailable();
if (!haveQemu) console.error("tests/guest: SKIPPED: qemu-system-x86_64 is not installed");

async function withTwoGuests(fn: (a: Guest, b: Guest) => Promise<void>): Promise<void> {
  if (!haveTestpmd) throw new Error("dpdk-testpmd is not installed (Debian package dpdk-dev)");
  await buildGuest();
  const dir = await Deno.makeTempDir({ prefix: "mv-guest-test-" });
  try {
    const socks = [`${dir}/a.sock`, `${dir}/b.sock`];
    await using _pmd = await startTestpmd({ sockets: socks, name: "testpmd-boot" });
    const [a, b] = await bootGuests([
      { name: "boot-a", nics: [{ socketPath: socks[0], mac: "52:54:00:00:00:0a" }] },
      { name: "boot-b", nics: [{ socketPath: socks[1], mac: "52:54:00:00:00:0b" }] },
    ]);
    await using _a = a;
    await using _b = b;
    await fn(a, b);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

Deno.test({
  name: "guest: two guests on testpmd: carrier, ping, tx_packets, DHCP scripts vs udhcpd",
  ignore: !haveQemu,
  sanitizeResources: true,
  sanitizeOps: true,
  async fn() {
    await withTwoGuests(async (a, b) => {
      for (const [g, ip] of [[a, "10.0.0.1"], [b, "10.0.0.2"]] as const) {
        await g.run(`ip link set eth0 up && ip addr add ${ip}/24 dev eth0`, { check: true });
      }
      for (const g of [a, b]) {
        // Carrier comes when the vhost-user device is started: poll for it, bounded.
        const r = await g.run(
          'i=0; while [ $i -lt 100 ] && [ "$(cat /sys/class/net/eth0/carrier)" != 1 ]; ' +
            "do i=$((i+1)); usleep 100000; done; cat /sys/class/net/eth0/carrier",
          { timeoutMs: 20_000 },
        );
        assertEquals(r.output.trim(), "1", `${g.name}: eth0 carrier`);
        const mac = await g.run("cat /sys/class/net/eth0/address", { check: true });
        assertEquals(mac.output.trim(), g === a ? "52:54:00:00:00:0a" : "52:54:00:00:00:0b");
      }
      const tx0 = Number((await a.run("cat /sys/class/net/eth0/statistics/tx_packets")).output);
      const ping = await a.run("ping -c 3 -W 5 10.0.0.2", { timeoutMs: 30_000 });
      assertEquals(ping.code, 0, `ping a -> b failed:\n${ping.output}`);
      assert(/3 packets received/.test(ping.output), ping.output);
      const back = await b.run("ping -c 2 -W 5 10.0.0.1", { timeoutMs: 30_000 });
      assertEquals(back.code, 0, `ping b -> a failed:\n${back.output}`);
      const tx1 = Number((await a.run("cat /sys/class/net/eth0/statistics/tx_packets")).output);
      const rx1 = Number((await a.run("cat /sys/class/net/eth0/statistics/rx_packets")).output);
      assert(tx1 >= tx0 + 3, `tx_packets moved from ${tx0} to ${tx1}`);
      assert(rx1 >= 3, `rx_packets is ${rx1}`);

      // The DHCP client scripts, against busybox's udhcpd in b: the lease the daemon will
      // serve (a /32, option 121 with an on-link gateway and the subnet via it, DNS).
      await b.run(
        "printf '%s\\n' 'interface eth0' 'start 10.0.0.50' 'end 10.0.0.60' " +
          "'lease_file /run/udhcpd.leases' 'option subnet 255.255.255.255' " +
          "'option dns 10.0.0.53' 'option lease 600' " +
          "'option staticroutes 169.254.0.1/32 0.0.0.0, 10.0.0.0/24 169.254.0.1' " +
          "> /run/udhcpd.conf && touch /run/udhcpd.leases && udhcpd /run/udhcpd.conf",
        { check: true },
      );
      for (const client of ["udhcpc", "dhclient"]) {
        await a.run(
          "dhclient -x eth0 >/dev/null 2>&1; ip -4 route flush dev eth0; " +
            "ip -4 addr flush dev eth0; : > /etc/resolv.conf",
        );
        const r = await a.run(`mv-dhcp ${client} eth0 5`, { timeoutMs: 45_000 });
        assertEquals(r.code, 0, `${client} got no lease:\n${r.output}`);
        const addr = (await a.run("ip -4 -o addr show dev eth0")).output;
        assert(/inet 10\.0\.0\.5\d\/32 /.test(addr), `${client}: address ${addr}`);
        const routes = (await a.run("ip -4 route show dev eth0")).output;
        assert(/^169\.254\.0\.1 /m.test(routes), `${client}: on-link route in\n${routes}`);
        assert(/^10\.0\.0\.0\/24 via 169\.254\.0\.1/m.test(routes), `${client}: routes\n${routes}`);
        const resolv = (await a.run("cat /etc/resolv.conf")).output;
        assert(/^nameserver 10\.0\.0\.53$/m.test(resolv), `${client}: resolv.conf\n${resolv}`);
      }
      await a.run("dhclient -x eth0 >/dev/null 2>&1");
    });
  },
});

Deno.test({
  name: "guest: udhcpc and dhclient start without a server, queue options, reboot, poweroff",
  ignore: !haveQemu,
  async fn() {
    if (!haveTestpmd) throw new Error("dpdk-testpmd is not installed (Debian package dpdk-dev)");
    await buildGuest();
    const dir = await Deno.makeTempDir({ prefix: "mv-guest-test-" });
    try {
      // One port: what the guest sends goes nowhere, which is what "no server" needs.
      const sock = `${dir}/c.sock`;
      await using _pmd = await startTestpmd({ sockets: [sock], name: "testpmd-dhcp" });
      const g = await bootGuest({
        name: "single",
        nics: [{
          socketPath: sock,
          mac: "52:54:00:00:00:0c",
          queueOptions: { mrg_rxbuf: false, event_idx: false, indirect_desc: false },
        }],
      });
      await using _g = g;
      // virtio feature bits as the guest sees them: 15 MRG_RXBUF, 28 INDIRECT_DESC,
      // 29 EVENT_IDX are off; 5 MAC is on.
      const feat = (await g.run("cat /sys/class/net/eth0/device/features", { check: true }))
        .output.trim();
      for (const [bit, on] of [[5, "1"], [15, "0"], [28, "0"], [29, "0"]] as const) {
        assertEquals(feat[bit], on, `feature bit ${bit} of ${feat}`);
      }
      const u = await g.run("mv-dhcp udhcpc eth0 2", { timeoutMs: 20_000 });
      assert(
        /(broadcasting|sending) discover/i.test(u.output),
        `udhcpc did not send:\n${u.output}`,
      );
      assert(u.code !== 0, "udhcpc got a lease without a server?");
      // dhclient -1 would try for the timeout of dhclient.conf (30 s): stop it after 4 s.
      const d = await g.run("timeout 4 dhclient -4 -1 -v -d eth0", { timeoutMs: 20_000 });
      assert(/DHCPDISCOVER on eth0/.test(d.output), `dhclient did not send:\n${d.output}`);
      const v6 = await g.run("dhclient --version", { timeoutMs: 10_000 });
      assert(/isc-dhclient/i.test(v6.output), v6.output);
      const i = await g.run("iperf3 --version", { timeoutMs: 10_000 });
      assert(/iperf 3/.test(i.output), i.output);

      // busybox in Debian has no udhcpc6; its event script is exercised directly.
      const s6 = await g.run(
        "interface=eth0 ipv6=fd00::5 dns='fd00::53 fd00::54' search=example.test " +
          "/usr/share/udhcpc/default6.script bound && ip -6 -o addr show dev eth0 scope global " +
          "&& cat /etc/resolv.conf",
        { check: true },
      );
      assert(/inet6 fd00::5\/128 /.test(s6.output), s6.output);
      assert(/^nameserver fd00::53$/m.test(s6.output), s6.output);
      assert(/^search example\.test$/m.test(s6.output), s6.output);

      const r = await g.run("echo hello; exit 7");
      assertEquals(r, { output: "hello\n", code: 7 });
      const boot1 = (await g.run("cat /proc/sys/kernel/random/boot_id")).output.trim();
      await g.reboot(60_000);
      const boot2 = (await g.run("cat /proc/sys/kernel/random/boot_id")).output.trim();
      assert(boot1 !== boot2 && boot2.length === 36, `boot ids ${boot1} ${boot2}`);
      assertEquals(await g.shutdown(20_000), 0, "QEMU's exit code after poweroff -f");
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
