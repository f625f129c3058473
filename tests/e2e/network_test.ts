/**
 * End to end: the real daemon, real QEMU guests with real DHCP clients on its vNIC sockets.
 * Three guests in one private network get their addresses by DHCP, install the routes of the
 * design, reach the gateway and each other over IPv4 and IPv6, and move a file over TCP.
 */

import { assert, assertEquals } from "../assert.ts";
import { startDaemon, until } from "../helpers/daemon.ts";
import { bootGuests, qemuAvailable } from "../helpers/guest.ts";
import { ok } from "./helpers.ts";
import { connect, serving } from "../api/helpers.ts";

const hasQemu = qemuAvailable();

Deno.test({
  name:
    "three guests get DHCPv4/DHCPv6 leases, reach the gateway and each other, and move a file over TCP",
  ignore: !hasQemu,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using d = await startDaemon();
    await serving(d.grpcTarget, d.log);
    const api = connect(d.grpcTarget);
    try {
      const net = await api.call("CreateNetwork", {
        name: "e2e",
        ipv4_enabled: true,
        ipv4_subnet: "10.60.0.0/24",
        ipv6_enabled: true,
        ipv6_prefix: "fd00:60::/64",
        dns_servers: ["10.60.0.53", "fd00:60::53"],
      });
      const nics = [];
      for (const name of ["g1", "g2", "g3"]) {
        nics.push(await api.call("CreateNic", { network_id: net.id, name }));
      }
      const guests = await bootGuests(
        nics.map((n) => ({
          name: `e2e-${n.name}`,
          nics: [{ socketPath: n.socket_path, mac: n.mac_address }],
        })),
      );
      try {
        const [a, b, c] = guests;
        // Two independent DHCPv4 clients: busybox udhcpc on two guests, ISC dhclient on one.
        await Promise.all([
          ok(a, "mv-dhcp udhcpc eth0", 60_000),
          ok(b, "mv-dhcp udhcpc eth0", 60_000),
          ok(c, "mv-dhcp dhclient eth0", 60_000),
        ]);
        for (const [g, n] of [[a, nics[0]], [b, nics[1]], [c, nics[2]]] as const) {
          const addr = await ok(g, "ip -4 -o addr show dev eth0");
          assert(
            addr.includes(`${n.ipv4_address}/32`),
            `${g.name} holds ${n.ipv4_address}/32:\n${addr}`,
          );
          const routes = await ok(g, "ip -4 route show");
          assert(/169\.254\.0\.1 dev eth0/.test(routes), `on-link gateway route:\n${routes}`);
          assert(
            /10\.60\.0\.0\/24 via 169\.254\.0\.1/.test(routes),
            `subnet via gateway:\n${routes}`,
          );
          assert(!/^default/m.test(routes), `no default route on a private network:\n${routes}`);
          assert((await ok(g, "cat /etc/resolv.conf")).includes("10.60.0.53"), "DNS arrived");
          await ok(g, "ping -c 2 -W 5 169.254.0.1");
        }
        await ok(a, `ping -c 3 -W 5 ${nics[1].ipv4_address}`);
        await ok(b, `ping -c 3 -W 5 ${nics[2].ipv4_address}`);
        await ok(c, `ping -c 3 -W 5 ${nics[0].ipv4_address}`);

        // IPv6: RA from fe80::1 and a DHCPv6 /128 (dhclient -6; Debian's busybox has no udhcpc6).
        await Promise.all(guests.map((g) => ok(g, "mv-dhcp dhclient6 eth0", 60_000)));
        for (const [g, n] of [[a, nics[0]], [b, nics[1]], [c, nics[2]]] as const) {
          const addr = await ok(g, "ip -6 -o addr show dev eth0 scope global");
          assert(addr.includes(n.ipv6_address), `${g.name} holds ${n.ipv6_address}:\n${addr}`);
          await ok(g, "ping -6 -c 2 -W 5 fe80::1%eth0");
        }
        await ok(a, `ping -6 -c 3 -W 5 ${nics[1].ipv6_address}`);
        await ok(c, `ping -6 -c 3 -W 5 ${nics[0].ipv6_address}`);

        // TCP: b serves a random file over HTTP (busybox httpd daemonizes itself), a fetches
        // it with wget; checksums must match. (busybox nc stalls in these guests after some
        // tens of KB whatever the network; iperf3 below moves megabytes on the same path.)
        await ok(
          b,
          "mkdir -p /tmp/www && head -c 1048576 /dev/urandom > /tmp/www/blob && httpd -p 8080 -h /tmp/www",
        );
        await ok(a, `wget -q -O /tmp/got http://${nics[1].ipv4_address}:8080/blob`, 90_000);
        const want = (await ok(b, "md5sum /tmp/www/blob | cut -d' ' -f1")).trim();
        assertEquals((await ok(a, "wc -c < /tmp/got")).trim(), "1048576", "all bytes arrived");
        const got = (await ok(a, "md5sum /tmp/got | cut -d' ' -f1")).trim();
        assertEquals(got, want, "the file arrived intact");

        // Throughput over TCP for the record (iperf3 daemonizes itself properly).
        await ok(c, "iperf3 -s -D -1 && sleep 0.5");
        const perf = await ok(
          a,
          `iperf3 -c ${nics[2].ipv4_address} -t 2 -f m | grep -E 'sender|receiver'`,
          60_000,
        );
        console.log(`iperf3 guest to guest through mvirt-net (TCG):\n${perf}`);

        const state = await api.call("GetNic", { id: nics[0].id });
        assertEquals(state.state, "NIC_STATE_ACTIVE");
      } finally {
        await Promise.all(guests.map((g) => g.close()));
      }
    } finally {
      api.close();
    }
  },
});

Deno.test({
  name:
    "a public network gives a default route and a router lifetime; DNS changes reach the guest on renew",
  ignore: !hasQemu,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using d = await startDaemon();
    await serving(d.grpcTarget, d.log);
    const api = connect(d.grpcTarget);
    try {
      const net = await api.call("CreateNetwork", {
        name: "pub",
        ipv4_enabled: true,
        ipv4_subnet: "10.62.0.0/24",
        ipv6_enabled: true,
        ipv6_prefix: "fd00:62::/64",
        dns_servers: ["10.62.0.53"],
        is_public: true,
      });
      const nic = await api.call("CreateNic", { network_id: net.id, name: "p1" });
      const [g] = await bootGuests([
        { name: "e2e-pub", nics: [{ socketPath: nic.socket_path, mac: nic.mac_address }] },
      ]);
      try {
        await ok(g, "mv-dhcp udhcpc eth0", 60_000);
        const routes = await ok(g, "ip -4 route show");
        assert(/^default via 169\.254\.0\.1 dev eth0/m.test(routes), `default route:\n${routes}`);
        // The kernel learns fe80::1 as a default router from the periodic/solicited RA.
        const v6 = await until(
          async () => {
            const r = await g.run("ip -6 route show default", { timeoutMs: 5_000 });
            return r.output.includes("via fe80::1") ? r.output : null;
          },
          30_000,
          "an IPv6 default route via fe80::1",
        );
        assert(/proto ra/.test(v6), `learnt from an RA:\n${v6}`);
        assert((await ok(g, "cat /etc/resolv.conf")).includes("10.62.0.53"));

        await api.call("UpdateNetwork", { id: net.id, dns_servers: ["10.62.0.99"] });
        await ok(g, "mv-dhcp udhcpc eth0", 60_000);
        const resolv = await ok(g, "cat /etc/resolv.conf");
        assert(resolv.includes("10.62.0.99") && !resolv.includes("10.62.0.53"), resolv);
      } finally {
        await g.close();
      }
    } finally {
      api.close();
    }
  },
});
