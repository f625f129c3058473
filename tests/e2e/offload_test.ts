/**
 * End to end with offloads: the real daemon and three QEMU guests in one network. Guests a and b
 * negotiate every offload QEMU offers (partial checksums, TSO4/6, ECN, both ways); guest c has
 * them all switched off, so whatever a sends it arrives through the software path (checksums
 * completed, GSO frames cut into MSS segments). Prints the iperf3 figures.
 */

import { assert, assertEquals } from "../assert.ts";
import { dataplaneRequest, startDaemon, until } from "../helpers/daemon.ts";
import { bootGuests, type QueueOptions } from "../helpers/guest.ts";
import { qemuAvailable } from "../helpers/guest.ts";
import { ok } from "./helpers.ts";
import { addFarSide, inNs } from "../helpers/netns.ts";
import { connect, serving } from "../api/helpers.ts";

const hasQemu = qemuAvailable();

const NO_OFFLOADS: QueueOptions = {
  csum: false,
  guest_csum: false,
  host_tso4: false,
  host_tso6: false,
  host_ecn: false,
  guest_tso4: false,
  guest_tso6: false,
  guest_ecn: false,
};
const ETH_MTU_FRAME = 1514;
const FILE_BYTES = 4 * 1048576;

/** The Mbit/s of iperf3's receiver line. */
function receiverMbits(out: string): number {
  const m = /([\d.]+) Mbits\/sec.*receiver/.exec(out);
  if (!m) throw new Error(`no receiver figure in iperf3's output:\n${out}`);
  return Number(m[1]);
}

Deno.test({
  name:
    "offloads: DHCPv6 with partial checksums, iperf3 with TSO, and a file to a guest without offloads",
  ignore: !hasQemu,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using d = await startDaemon();
    await serving(d.grpcTarget, d.log);
    const api = connect(d.grpcTarget);
    try {
      const net = await api.call("CreateNetwork", {
        name: "offload",
        ipv4_enabled: true,
        ipv4_subnet: "10.64.0.0/24",
        ipv6_enabled: true,
        ipv6_prefix: "fd00:64::/64",
      });
      const nics = [];
      for (const name of ["a", "b", "c"]) {
        nics.push(await api.call("CreateNic", { network_id: net.id, name }));
      }
      const ids: string[] = nics.map((n) => n.id);
      const guests = await bootGuests(
        nics.map((n) => ({
          name: `offload-${n.name}`,
          nics: [{
            socketPath: n.socket_path,
            mac: n.mac_address,
            queueOptions: n.name === "c" ? NO_OFFLOADS : undefined,
          }],
        })),
      );
      const counters = async (i: number) =>
        (await dataplaneRequest(d.dataDir, { type: "GetNicCounters", id: ids[i] })).counters;
      try {
        const [a, b, c] = guests;
        await Promise.all(guests.map((g) => ok(g, "mv-dhcp udhcpc eth0", 60_000)));
        // dhclient -6 sends from a UDP socket: with CSUM negotiated the kernel leaves the UDP
        // checksum partial, which the gateway must complete before DHCPv6 verifies it.
        await Promise.all([a, c].map((g) => ok(g, "mv-dhcp dhclient6 eth0", 60_000)));
        for (const [g, n] of [[a, nics[0]], [c, nics[2]]] as const) {
          const addr = await ok(g, "ip -6 -o addr show dev eth0 scope global");
          assert(addr.includes(n.ipv6_address), `${g.name} holds ${n.ipv6_address}:\n${addr}`);
        }

        // iperf3 a -> b, both with offloads.
        await ok(b, "iperf3 -s -D -1 && sleep 0.5");
        const before = await counters(0);
        const perf = await ok(
          a,
          `iperf3 -c ${nics[1].ipv4_address} -t 3 -f m | grep -E 'sender|receiver'`,
          90_000,
        );
        const after = await counters(0);
        const mbits = receiverMbits(perf);
        console.log(`iperf3 a -> b with offloads (TCG): ${mbits} Mbit/s\n${perf}`);
        assert(mbits > 0, "iperf3 moved data");
        const txPackets = after.tx_packets - before.tx_packets;
        const txBytes = after.tx_bytes - before.tx_bytes;
        console.log(`a sent ${txPackets} frames, ${(txBytes / txPackets).toFixed(0)} bytes each`);
        const drops = (c: Record<string, number>) =>
          Object.entries(c).filter(([k, v]) => /drop/.test(k) && v > 0).map(([k, v]) => `${k}=${v}`)
            .join(" ") || "none";
        console.log(`drops at a: ${drops(after)}; at b: ${drops(await counters(1))}`);
        assert(
          txBytes / txPackets > ETH_MTU_FRAME,
          `a sent GSO frames larger than the MTU (average ${txBytes / txPackets} bytes)`,
        );
        // Those GSO frames took the shim's fast path, straight into b's guest (it takes TSO).
        const direct = (after.route_fast_direct ?? 0) - (before.route_fast_direct ?? 0);
        assert(direct > txPackets / 2, `${direct} of ${txPackets} frames went straight to b`);

        // A file from a (offloads) to c (none) over IPv4 and IPv6: every GSO frame of a is
        // segmented in software and its checksums completed; md5 must match.
        await ok(
          a,
          `mkdir -p /tmp/www && head -c ${FILE_BYTES} /dev/urandom > /tmp/www/blob && ` +
            "httpd -p 8080 -h /tmp/www",
        );
        const want = (await ok(a, "md5sum /tmp/www/blob | cut -d' ' -f1")).trim();
        const cBefore = await counters(2);
        const aBefore = await counters(0);
        await ok(c, `wget -q -O /tmp/got4 http://${nics[0].ipv4_address}:8080/blob`, 180_000);
        await ok(c, `wget -q -O /tmp/got6 http://[${nics[0].ipv6_address}]:8080/blob`, 180_000);
        const cAfter = await counters(2);
        // a's frames took the fast path into c's ring (c takes no offload: its loop segments).
        const aAfter = await counters(0);
        assert(
          aAfter.route_fast_forwarded - aBefore.route_fast_forwarded > 0,
          "a forwarded by the fast path",
        );
        for (const f of ["/tmp/got4", "/tmp/got6"]) {
          assertEquals((await ok(c, `wc -c < ${f}`)).trim(), String(FILE_BYTES), `${f} size`);
          assertEquals((await ok(c, `md5sum ${f} | cut -d' ' -f1`)).trim(), want, `${f} intact`);
        }
        const rxPackets = cAfter.rx_packets - cBefore.rx_packets;
        const rxBytes = cAfter.rx_bytes - cBefore.rx_bytes;
        assert(rxBytes / rxPackets <= ETH_MTU_FRAME, "c received only MTU-sized frames");
        assertEquals(cAfter.rx_drop_offload ?? 0, 0, "no offload reached c");

        // The reverse: c (no offloads) to b (offloads) also works.
        await ok(b, "iperf3 -s -D -1 && sleep 0.5");
        const back = await ok(
          c,
          `iperf3 -c ${nics[1].ipv4_address} -t 2 -f m | grep -E 'sender|receiver'`,
          90_000,
        );
        console.log(`iperf3 c -> b, c without offloads (TCG): ${receiverMbits(back)} Mbit/s`);
      } finally {
        await Promise.all(guests.map((g) => g.close()));
      }
    } finally {
      api.close();
    }
  },
});

const TUN = "mvofl0";
const FAR_SIDE = "192.0.2.1";

Deno.test({
  name: "offloads: TCP from a guest with TSO through the TUN device and back, in a namespace",
  ignore: !hasQemu,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "mvirt-net-offload-tun-" });
    let server: Deno.ChildProcess | undefined;
    try {
      await using d = await startDaemon({
        wrap: ["unshare", "-n", "--"],
        listen: `unix:${dir}/api.sock`,
        tun: true,
        args: [`--tun-name=${TUN}`],
      });
      await serving(d.grpcTarget, d.log);
      const ns = d.pid;
      await addFarSide(ns, FAR_SIDE);
      const api = connect(d.grpcTarget);
      try {
        const net = await api.call("CreateNetwork", {
          name: "public",
          ipv4_enabled: true,
          ipv4_subnet: "10.91.0.0/24",
          is_public: true,
        });
        const nic = await api.call("CreateNic", { network_id: net.id, name: "p" });
        const [g] = await bootGuests([
          { name: "offload-tun", nics: [{ socketPath: nic.socket_path, mac: nic.mac_address }] },
        ]);
        try {
          await ok(g, "mv-dhcp udhcpc eth0", 60_000);
          // An iperf3 server in the namespace, a child of this test (killed by PID below).
          server = new Deno.Command("nsenter", {
            args: ["-t", String(ns), "-n", "--", "iperf3", "-s", "-B", FAR_SIDE],
            stdout: "null",
            stderr: "null",
          }).spawn();
          await until(
            async () => (await inNs(ns, "ss", "-ltn")).out.includes(`${FAR_SIDE}:5201`),
            10_000,
            "iperf3 listening in the namespace",
          );
          // Guest to kernel: the guest's GSO frames are segmented before the TUN device.
          const up = await ok(g, `iperf3 -c ${FAR_SIDE} -t 3 -f m | grep receiver`, 90_000);
          // Kernel to guest: complete packets from the TUN device.
          const down = await ok(g, `iperf3 -c ${FAR_SIDE} -R -t 3 -f m | grep receiver`, 90_000);
          console.log(
            `iperf3 through the TUN (TCG): guest to kernel ${receiverMbits(up)} Mbit/s, ` +
              `kernel to guest ${receiverMbits(down)} Mbit/s`,
          );
          const c = (await dataplaneRequest(d.dataDir, { type: "GetNicCounters", id: nic.id }))
            .counters;
          assert(c.tx_bytes / c.tx_packets > ETH_MTU_FRAME, "the guest sent GSO frames");
          assert(receiverMbits(up) > 0 && receiverMbits(down) > 0, "both directions moved data");
          const offloadDrops = Object.entries(c).filter(([k, v]) => /offload/.test(k) && v > 0);
          assertEquals(offloadDrops, [], "no frame refused for its offload header");
        } finally {
          await g.close();
        }
      } finally {
        api.close();
      }
    } finally {
      if (server) {
        try {
          server.kill("SIGKILL");
        } catch { /* exited */ }
        await server.status;
      }
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
