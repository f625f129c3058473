/**
 * Crashes under running QEMU guests, on the whole daemon (root, api, dataplane) run inside a
 * network namespace this test creates (`unshare -n`: its TUN device, routes and veth pair
 * exist only there). Two guests of one public network ping each other, and one pings an
 * address on the far side of the TUN device, while:
 *
 * - a vNIC actor, the network actor and the TUN actor are each crashed by an injected fault
 *   (InjectFault on the dataplane's control socket): each is restarted, the vNIC actor adopts
 *   the live device; pings go on with at most a few losses, the guest sees no link flap;
 * - the dataplane process is SIGKILLed: the root restarts it, QEMU (reconnect=1) reconnects,
 *   the guests get their network back without a reboot (same boot_id);
 * - the api process is SIGKILLed: no ping is lost at all.
 *
 * Every figure (losses, outages, time to the first forwarded packet) is printed.
 */

import { assert, assertEquals } from "../assert.ts";
import { dataplaneRequest, startDaemon } from "../helpers/daemon.ts";
import { bootGuests, type Guest, qemuAvailable } from "../helpers/guest.ts";
import { until } from "../helpers/wait.ts";
import { ok } from "../e2e/helpers.ts";
import { connect, health, serving } from "../api/helpers.ts";
import { RemoteError } from "../../daemon/ipc.ts";
import { longestGapMs, type PingWatch, startPing } from "./guest_helpers.ts";
import { addFarSide, inNs } from "../helpers/netns.ts";

const TUN = "mvres0";
/** An address on a veth inside the daemon's namespace: the far side of the TUN device. */
const FAR_SIDE = "192.0.2.1";
const SUBNET = "10.91.0.0/24";
/** Seconds between echo requests: the resolution of every outage measured here. */
const PING_INTERVAL_S = 0.1;
/** Echo requests of one actor-crash phase (6 s at 0.1 s). */
const ACTOR_PHASE_PINGS = 60;
/** Echo requests of the dataplane-kill phase: room for a slow restart under TCG. */
const DATAPLANE_PHASE_PINGS = 150;
/** Echo requests of the api-kill phase. */
const API_PHASE_PINGS = 80;
/** Replies to see before a fault is injected: traffic is flowing. */
const WARMUP_REPLIES = 5;
/** "At most a few lost packets" of an actor crash. */
const MAX_LOST_ACTOR_CRASH = 5;

async function sys(g: Guest, path: string): Promise<string> {
  return (await ok(g, `cat ${path}`)).trim();
}

/** Waits for `n` replies on a watch (traffic flows) and returns the highest seq seen. */
async function warm(w: PingWatch, n = WARMUP_REPLIES): Promise<number> {
  await until(() => w.replies.length >= n, 30_000, `${n} ping replies before the fault`);
  return Math.max(...w.replies.map((r) => r.seq));
}

Deno.test({
  name:
    "actor and process crashes under live guests: pings go on, no link flap, guests never reboot",
  ignore: !qemuAvailable(),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "mvirt-net-crash-" });
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
      const net = await api.call("CreateNetwork", {
        name: "crash",
        ipv4_enabled: true,
        ipv4_subnet: SUBNET,
        is_public: true,
      });
      const nicA = await api.call("CreateNic", { network_id: net.id, name: "a" });
      const nicB = await api.call("CreateNic", { network_id: net.id, name: "b" });
      const [a, b] = await bootGuests([
        { name: "crash-a", nics: [{ socketPath: nicA.socket_path, mac: nicA.mac_address }] },
        { name: "crash-b", nics: [{ socketPath: nicB.socket_path, mac: nicB.mac_address }] },
      ]);
      try {
        await Promise.all([a, b].map((g) => ok(g, "mv-dhcp udhcpc eth0", 60_000)));
        await ok(a, `ping -c 2 -W 5 ${nicB.ipv4_address}`);
        await ok(a, `ping -c 2 -W 5 ${FAR_SIDE}`);
        const bootIds = await Promise.all(
          [a, b].map((g) => sys(g, "/proc/sys/kernel/random/boot_id")),
        );
        const carrier = () => sys(a, "/sys/class/net/eth0/carrier_changes");

        /**
         * One actor-crash phase: `target` is pinged from guest a while `actor` is crashed;
         * `restarted` is the log line its new incarnation writes.
         */
        const actorPhase = async (
          what: string,
          actor: string,
          target: string,
          restarted: RegExp,
        ) => {
          const flapsBefore = await carrier();
          const w = startPing(a, target, { count: ACTOR_PHASE_PINGS, intervalS: PING_INTERVAL_S });
          await warm(w);
          const from = d.log().length;
          const t0 = performance.now();
          await dataplaneRequest(d.dataDir, { type: "InjectFault", actor, reason: what });
          await d.waitForLog(/actor crashed error="Error: injected fault/, 10_000, from);
          await d.waitForLog(restarted, 10_000, from);
          const restartMs = performance.now() - t0;
          const first = await w.replyAfter(performance.now(), 20_000);
          const s = await w.done;
          console.log(
            `${what}: restarted after ${restartMs.toFixed(0)} ms, first reply ${
              (first.at - t0).toFixed(0)
            } ms after the fault; ${s.lost} of ${s.transmitted} pings lost, longest gap ${
              longestGapMs(s.replies).toFixed(0)
            } ms`,
          );
          assert(
            s.lost <= MAX_LOST_ACTOR_CRASH,
            `${what}: ${s.lost} pings lost (at most ${MAX_LOST_ACTOR_CRASH})`,
          );
          assertEquals(await carrier(), flapsBefore, `${what}: the guest saw no link flap`);
        };

        await t.step("vNIC actor crash: adopted, no link flap, no new DHCP", async () => {
          await actorPhase(
            "vNIC actor crash",
            `vnic:${nicA.id}`,
            nicB.ipv4_address,
            /vnic:a\] adopted a connected device/,
          );
          // The address from the first DHCP exchange is still in place and in use.
          const addr = await ok(a, "ip -4 -o addr show dev eth0");
          assert(addr.includes(`${nicA.ipv4_address}/32`), `address kept:\n${addr}`);
          assertEquals((await api.call("GetNic", { id: nicA.id })).state, "NIC_STATE_ACTIVE");
        });

        await t.step("network actor crash: routes rebuilt, traffic goes on", async () => {
          // The new network actor publishes routes computed from the membership it is
          // started with: had it lost a member, the pings to b would stop with it.
          await actorPhase(
            "network actor crash",
            `net:${net.id}`,
            nicB.ipv4_address,
            /network actor started nics=2/,
          );
        });

        await t.step("TUN actor crash: the device is adopted, routes repaired", async () => {
          await actorPhase("TUN actor crash", "tun", FAR_SIDE, /TUN device up device=mvres0/);
          const routes = await inNs(ns, "ip", "route", "show", "dev", TUN);
          assert(routes.out.includes(SUBNET), `kernel route still there:\n${routes.out}`);
          const back = await inNs(ns, "ping", "-c", "2", "-W", "5", nicA.ipv4_address);
          assert(back.code === 0, `the namespace reaches the guest again:\n${back.out}`);
        });

        await t.step("dataplane SIGKILL: restarted, guests reconnect by themselves", async () => {
          const o = { count: DATAPLANE_PHASE_PINGS, intervalS: PING_INTERVAL_S };
          const wa = startPing(a, nicB.ipv4_address, o);
          const wb = startPing(b, nicA.ipv4_address, o);
          const [lastA, lastB] = [await warm(wa), await warm(wb)];
          const old = d.pids().dataplane!;
          const t0 = performance.now();
          d.kill("dataplane", "SIGKILL");
          const fresh = await d.waitForChild("dataplane", old, 30_000);
          const restartMs = performance.now() - t0;
          // A reply two sequence numbers past the last one seen was sent after the kill.
          const [ra, rb] = await Promise.all([
            wa.replyAfter(t0, 60_000, lastA + 2),
            wb.replyAfter(t0, 60_000, lastB + 2),
          ]);
          const [sa, sb] = await Promise.all([wa.done, wb.done]);
          console.log(
            `dataplane SIGKILL: new dataplane (pid ${fresh}) after ${
              restartMs.toFixed(0)
            } ms; first forwarded guest-to-guest reply a->b after ${
              (ra.at - t0).toFixed(0)
            } ms, b->a after ${
              (rb.at - t0).toFixed(0)
            } ms; pings lost a->b ${sa.lost}/${sa.transmitted}, b->a ${sb.lost}/${sb.transmitted}`,
          );
          const after = await Promise.all(
            [a, b].map((g) => sys(g, "/proc/sys/kernel/random/boot_id")),
          );
          assertEquals(after, bootIds, "no guest was restarted");
          // The TUN device came back with the new dataplane too.
          await ok(a, `ping -c 2 -W 5 ${FAR_SIDE}`);
        });

        await t.step("api SIGKILL: the guests do not notice at all", async () => {
          const o = { count: API_PHASE_PINGS, intervalS: PING_INTERVAL_S };
          const wa = startPing(a, nicB.ipv4_address, o);
          const wb = startPing(b, nicA.ipv4_address, o);
          await Promise.all([warm(wa), warm(wb)]);
          const old = d.pids().api!;
          const t0 = performance.now();
          d.kill("api", "SIGKILL");
          const fresh = await d.waitForChild("api", old, 30_000);
          const restartMs = performance.now() - t0;
          const [sa, sb] = await Promise.all([wa.done, wb.done]);
          console.log(
            `api SIGKILL: new api (pid ${fresh}) after ${
              restartMs.toFixed(0)
            } ms; pings lost a->b ${sa.lost}/${sa.transmitted}, b->a ${sb.lost}/${sb.transmitted}`,
          );
          assertEquals(sa.lost, 0, "a->b lost no ping");
          assertEquals(sb.lost, 0, "b->a lost no ping");
          await serving(d.grpcTarget, d.log);
          assertEquals((await api.call("GetNic", { id: nicB.id })).state, "NIC_STATE_ACTIVE");
          assertEquals(
            await Promise.all([a, b].map((g) => sys(g, "/proc/sys/kernel/random/boot_id"))),
            bootIds,
          );
        });
      } finally {
        await Promise.all([a, b].map((g) => g.close()));
        api.close();
      }
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name:
    "fault injection needs MVIRT_NET_FAULT_INJECTION=1; a diagnostics peer changes no state and leaves the api connected",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using d = await startDaemon({ env: { MVIRT_NET_FAULT_INJECTION: "0" } });
    await serving(d.grpcTarget, d.log);
    const api = connect(d.grpcTarget);
    try {
      const net = await api.call("CreateNetwork", {
        name: "gated",
        ipv4_enabled: true,
        ipv4_subnet: "10.92.0.0/24",
      });
      const refused = await dataplaneRequest(d.dataDir, {
        type: "InjectFault",
        actor: `net:${net.id}`,
        reason: "must be refused",
      }).then(() => null, (e: Error) => e);
      assert(
        refused instanceof RemoteError && refused.message.includes("MVIRT_NET_FAULT_INJECTION=1"),
        `InjectFault refused: ${refused}`,
      );
      const sync = await dataplaneRequest(d.dataDir, { type: "SyncState", networks: [], nics: [] })
        .then(() => null, (e: Error) => e);
      assert(
        sync instanceof RemoteError && sync.message.includes("not for a diagnostics connection"),
        `SyncState refused: ${sync}`,
      );
      // The api kept its connection and the network its actor: nothing was wiped or crashed.
      const nic = await api.call("CreateNic", { network_id: net.id, name: "still-here" });
      assertEquals(nic.state, "NIC_STATE_CREATED");
      assertEquals(await health(d.grpcTarget, "mvirt.net.NetService"), "SERVING");
      for (const bad of [/actor crashed/, /api disconnected/, /injecting a fault/]) {
        assert(!bad.test(d.log()), `nothing in the log matches ${bad}`);
      }
    } finally {
      api.close();
    }
  },
});
