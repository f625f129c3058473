/**
 * Soak: 8 QEMU guests in two networks (4 each, IPv4 and IPv6) under mixed traffic for
 * MVIRT_SOAK_SECS seconds (default 120 in the suite; 1800 by hand), while the API churns
 * (vNICs created and deleted, a network's DNS servers updated). In each network:
 *
 *   g0 -> g1  ping (IPv4)          g1 -> g2  ping -6 (DHCPv6 addresses)
 *   g2 -> g3  iperf3, rate-limited g3 <- g0  wget of a file in a loop, md5 checked each time
 *
 * Afterwards: no process and no actor restarted (PIDs unchanged, no crash in the log), the
 * dataplane's private memory grew less than {@link RSS_ANON_GROWTH_BOUND_KIB}, and the counters
 * agree: per vNIC, the frames the guest's driver counts as sent and received match what the
 * backend counts as taken from and put into its rings, and every ping the guests lost is
 * matched by drops the dataplane counted with a reason. Every figure is printed.
 */

import { assert, assertEquals } from "../assert.ts";
import { dataplaneRequest, startDaemon } from "../helpers/daemon.ts";
import { bootGuests, type Guest, qemuAvailable } from "../helpers/guest.ts";
import { sleep } from "../helpers/wait.ts";
import { ok } from "../e2e/helpers.ts";
import { connect, serving } from "../api/helpers.ts";
import { statusKib } from "../helpers/proc.ts";

/** Soak duration in seconds: MVIRT_SOAK_SECS, default 120 (the suite's 2-minute mode). */
const SOAK_SECS = Number(Deno.env.get("MVIRT_SOAK_SECS") ?? "120");
const GUESTS_PER_NETWORK = 4;
const PING_INTERVAL_S = 0.2;
/** iperf3's target rate: enough to keep a TCP flow busy without starving 8 TCG guests. */
const IPERF_RATE = "2M";
const FILE_BYTES = 256 * 1024;
/** API churn: one create+delete and one DNS update per period. */
const CHURN_PERIOD_MS = 1_000;
/** Dataplane RSS samples during the soak. */
const RSS_SAMPLE_MS = 10_000;
/** Bound on the growth of the dataplane's private (anonymous) memory after the warm-up. */
const RSS_ANON_GROWTH_BOUND_KIB = 32 * 1024;
/** The first seconds of traffic fill JIT code, heaps and rings: the baseline comes after. */
const RSS_WARMUP_S = 20;
/** Boot time of one guest among eight on a busy 2-core machine under TCG. */
const BOOT_TIMEOUT_MS = 240_000;
/** Frames a guest's driver may not yet have reclaimed from its TX ring when counters are read. */
const TX_RECLAIM_SLACK = 64;

/** Counters that are drops, each with its reason in the name. */
function isDrop(name: string): boolean {
  return /^(rx_drop_|route_drop_|service_drop_|chain_|avail_jump|sg_drop_)/.test(name);
}

async function guestStats(g: Guest): Promise<Record<string, number>> {
  const out = await ok(
    g,
    "cd /sys/class/net/eth0/statistics && for f in tx_packets rx_packets rx_dropped tx_dropped; do echo $f $(cat $f); done",
  );
  const s: Record<string, number> = {};
  for (const line of out.trim().split("\n")) {
    const [k, v] = line.trim().split(" ");
    s[k] = Number(v);
  }
  return s;
}

function pingLost(out: string): { sent: number; lost: number } {
  const m = out.match(/(\d+) packets transmitted, (\d+) packets received/);
  if (!m) throw new Error(`no ping summary in:\n${out}`);
  return { sent: Number(m[1]), lost: Number(m[1]) - Number(m[2]) };
}

Deno.test({
  name: `soak: 8 guests, mixed traffic and API churn for ${SOAK_SECS} s without a crash or a leak`,
  ignore: !qemuAvailable(),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    assert(SOAK_SECS >= 10, `MVIRT_SOAK_SECS=${SOAK_SECS}: at least 10`);
    await using d = await startDaemon();
    await serving(d.grpcTarget, d.log);
    const api = connect(d.grpcTarget);
    const guests: Guest[] = [];
    try {
      const nets = await Promise.all([0, 1].map((i) =>
        api.call("CreateNetwork", {
          name: `soak${i}`,
          ipv4_enabled: true,
          ipv4_subnet: `10.8${i}.0.0/24`,
          ipv6_enabled: true,
          ipv6_prefix: `fd00:8${i}::/64`,
          dns_servers: [`10.8${i}.0.53`],
        })
      ));
      const nics = [];
      for (const net of nets) {
        for (let i = 0; i < GUESTS_PER_NETWORK; i++) {
          nics.push(await api.call("CreateNic", { network_id: net.id, name: `${net.name}-g${i}` }));
        }
      }
      const tBoot = performance.now();
      guests.push(
        ...await bootGuests(nics.map((n) => ({
          name: `soak-${n.name}`,
          nics: [{ socketPath: n.socket_path, mac: n.mac_address }],
          timeoutMs: BOOT_TIMEOUT_MS,
        }))),
      );
      await Promise.all(guests.map(async (g) => {
        await ok(g, "mv-dhcp udhcpc eth0", 120_000);
        await ok(g, "mv-dhcp dhclient6 eth0", 120_000);
      }));
      console.log(
        `soak: 8 guests booted with IPv4 and IPv6 leases in ${
          ((performance.now() - tBoot) / 1000).toFixed(1)
        } s`,
      );
      const pids = d.pids();
      const logFrom = d.log().length;

      // Servers first: httpd on g0 (daemonizes), iperf3 on g3 (-D).
      for (let n = 0; n < nets.length; n++) {
        const base = n * GUESTS_PER_NETWORK;
        await ok(
          guests[base],
          `mkdir -p /tmp/www && head -c ${FILE_BYTES} /dev/urandom > /tmp/www/blob && httpd -p 8080 -h /tmp/www`,
        );
        await ok(guests[base + 3], "iperf3 -s -D && sleep 0.5");
      }
      const md5s = await Promise.all(
        nets.map((_, n) =>
          ok(guests[n * GUESTS_PER_NETWORK], "md5sum /tmp/www/blob | cut -d' ' -f1")
        ),
      );

      const runMs = SOAK_SECS * 1000 + 90_000;
      const pingCount = Math.floor(SOAK_SECS / PING_INTERVAL_S);
      const t0 = performance.now();
      const work: Promise<{ what: string; out: string }>[] = [];
      for (let n = 0; n < nets.length; n++) {
        const [g0, g1, g2, g3] = guests.slice(n * GUESTS_PER_NETWORK, (n + 1) * GUESTS_PER_NETWORK);
        const [n0, n1, n2, n3] = nics.slice(n * GUESTS_PER_NETWORK, (n + 1) * GUESTS_PER_NETWORK);
        const job = (g: Guest, what: string, cmd: string) =>
          work.push(ok(g, cmd, runMs).then((out) => ({ what: `${g.name} ${what}`, out })));
        job(g0, "ping v4", `ping -c ${pingCount} -i ${PING_INTERVAL_S} -W 5 -q ${n1.ipv4_address}`);
        job(
          g1,
          "ping v6",
          `ping -6 -c ${pingCount} -i ${PING_INTERVAL_S} -W 5 -q ${n2.ipv6_address}`,
        );
        job(
          g2,
          "iperf3",
          `iperf3 -c ${n3.ipv4_address} -t ${SOAK_SECS} -b ${IPERF_RATE} -f k | grep -E 'sender|receiver'`,
        );
        job(
          g3,
          "wget",
          `end=$(($(date +%s) + ${SOAK_SECS})); good=0; bad=0; ` +
            `while [ "$(date +%s)" -lt "$end" ]; do ` +
            `if timeout 30 wget -q -O /tmp/got http://${n0.ipv4_address}:8080/blob && ` +
            `[ "$(md5sum /tmp/got | cut -d' ' -f1)" = "${
              md5s[n].trim()
            }" ]; then good=$((good+1)); ` +
            `else bad=$((bad+1)); fi; done; echo "good=$good bad=$bad"`,
        );
      }

      // API churn and RSS samples on the host while the guests work.
      const dp = pids.dataplane!;
      const rss: { s: number; rss: number; anon: number }[] = [];
      let churned = 0;
      let dnsUpdates = 0;
      const churnNet = nets[0];
      const dnsNet = nets[1];
      let nextSample = 0;
      while (performance.now() - t0 < SOAK_SECS * 1000) {
        const el = performance.now() - t0;
        if (el >= nextSample) {
          rss.push({
            s: Math.round(el / 1000),
            rss: statusKib(dp, "VmRSS"),
            anon: statusKib(dp, "RssAnon"),
          });
          nextSample += RSS_SAMPLE_MS;
        }
        const extra = await api.call("CreateNic", {
          network_id: churnNet.id,
          name: `churn-${churned}`,
        });
        await api.call("DeleteNic", { id: extra.id });
        churned++;
        await api.call("UpdateNetwork", {
          id: dnsNet.id,
          dns_servers: [`10.81.0.${53 + (dnsUpdates % 2)}`],
        });
        dnsUpdates++;
        await sleep(CHURN_PERIOD_MS);
      }
      const results = await Promise.all(work);
      const soakS = (performance.now() - t0) / 1000;
      rss.push({
        s: Math.round(soakS),
        rss: statusKib(dp, "VmRSS"),
        anon: statusKib(dp, "RssAnon"),
      });

      // Figures of the traffic.
      let pingsSent = 0;
      let pingsLost = 0;
      for (const r of results) {
        if (r.what.includes("ping")) {
          const p = pingLost(r.out);
          pingsSent += p.sent;
          pingsLost += p.lost;
          console.log(`${r.what}: ${p.lost} of ${p.sent} lost`);
        } else {
          console.log(`${r.what}: ${r.out.trim().replace(/\s+/g, " ")}`);
        }
        if (r.what.endsWith("wget")) {
          const m = r.out.match(/good=(\d+) bad=(\d+)/);
          assert(m && Number(m[1]) > 0, `${r.what}: some fetches succeeded: ${r.out}`);
          assertEquals(Number(m![2]), 0, `${r.what}: every fetched file was intact`);
        }
      }
      console.log(
        `API churn: ${churned} vNICs created and deleted, ${dnsUpdates} DNS updates in ${
          soakS.toFixed(0)
        } s`,
      );

      // Zero crashes.
      assertEquals(d.pids(), pids, "root, api and dataplane kept their PIDs");
      const log = d.log().slice(logFrom);
      for (const bad of [/actor crashed/, /child exited/, /escalat/, /restart intensity/]) {
        const line = log.split("\n").find((l) => bad.test(l));
        assert(!line, `no crash or restart in the log, found: ${line}`);
      }

      // Memory: the baseline is the first sample after the warm-up, with all traffic running.
      const first = rss.find((r) => r.s >= Math.min(RSS_WARMUP_S, SOAK_SECS / 2)) ?? rss[0];
      const last = rss[rss.length - 1];
      console.log(
        `dataplane RSS (KiB, total/anon) by second: ${
          rss.map((r) => `${r.s}s ${r.rss}/${r.anon}`).join(", ")
        }; anon growth after ${first.s} s: ${
          last.anon - first.anon
        } KiB (bound ${RSS_ANON_GROWTH_BOUND_KIB})`,
      );

      // Counters: let in-flight frames settle, then compare each guest with its backend.
      await sleep(2_000);
      let drops = 0;
      const reasons: Record<string, number> = {};
      for (let i = 0; i < guests.length; i++) {
        const id = nics[i].id;
        const before = (await dataplaneRequest(d.dataDir, { type: "GetNicCounters", id }))
          .counters;
        const g = await guestStats(guests[i]);
        const after = (await dataplaneRequest(d.dataDir, { type: "GetNicCounters", id }))
          .counters;
        const chainDrops = Object.entries(after).filter(([k]) => k.startsWith("chain_"))
          .reduce((s, [, v]) => s + v, 0);
        for (const [k, v] of Object.entries(after)) {
          if (!isDrop(k) || !v) continue;
          drops += v;
          reasons[k] = (reasons[k] ?? 0) + v;
        }
        console.log(
          `${
            guests[i].name
          }: guest tx ${g.tx_packets} rx ${g.rx_packets} (rx_dropped ${g.rx_dropped}); ` +
            `backend took ${after.tx_packets} (+${chainDrops} bad chains), delivered ${after.rx_packets}`,
        );
        // Every frame the backend put into the RX ring reached the guest's driver.
        const guestRx = g.rx_packets + g.rx_dropped;
        assert(
          guestRx >= before.rx_packets && guestRx <= after.rx_packets,
          `${
            guests[i].name
          }: guest received ${guestRx}, backend delivered ${before.rx_packets}..${after.rx_packets}`,
        );
        // Every frame the guest's driver saw completed was taken by the backend; the driver
        // reclaims completed TX buffers lazily, so it may lag by a few.
        const taken = after.tx_packets + chainDrops;
        assert(
          g.tx_packets <= taken && g.tx_packets >= before.tx_packets - TX_RECLAIM_SLACK,
          `${
            guests[i].name
          }: guest sent ${g.tx_packets}, backend took ${before.tx_packets}..${taken}`,
        );
      }
      console.log(
        `pings: ${pingsLost} of ${pingsSent} lost; dataplane drops by reason: ${
          JSON.stringify(reasons)
        }`,
      );
      assert(
        pingsLost <= drops,
        `${pingsLost} pings lost but only ${drops} drops counted: a packet vanished uncounted`,
      );
      // Last, so that a long run reports every other figure before it.
      assert(
        last.anon - first.anon < RSS_ANON_GROWTH_BOUND_KIB,
        `dataplane private memory grew ${last.anon - first.anon} KiB after ${first.s} s`,
      );
    } finally {
      await Promise.all(guests.map((g) => g.close()));
      api.close();
    }
  },
});
