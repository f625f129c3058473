/**
 * Real QEMU guests on the real daemon: every pairwise combination of the ring features, the
 * dataplane killed, and the whole daemon killed with SIGKILL and started again; the vNIC state
 * seen through the API follows, and guests (QEMU with reconnect=1) get their network back
 * without being restarted. A VMM killed and replaced, reboots, poweroff and memory hot-add are
 * in tests/resilience/guest_lifecycle_test.ts; actor and process crashes under traffic in
 * tests/resilience/guest_crash_test.ts.
 */

import { assert, assertEquals } from "../assert.ts";
import { alive, type Daemon, startDaemon, until } from "../helpers/daemon.ts";
import { bootGuest, bootGuests, type Guest, qemuAvailable } from "../helpers/guest.ts";
import { ok } from "./helpers.ts";
import { connect, type NetClient, serving } from "../api/helpers.ts";

const hasQemu = qemuAvailable();
const MRG_RXBUF = 15;
const INDIRECT_DESC = 28;
const EVENT_IDX = 29;

/** Pings the gateway until it answers (the link may come back a little after reconnect). */
async function gatewayAnswers(g: Guest, timeoutMs: number): Promise<void> {
  await until(
    async () => (await g.run("ping -c 1 -W 1 169.254.0.1", { timeoutMs: 5_000 })).code === 0,
    timeoutMs,
    `${g.name} to reach the gateway`,
  );
}

async function nicState(api: NetClient, id: string): Promise<string> {
  return (await api.call("GetNic", { id })).state as unknown as string;
}

async function waitState(api: NetClient, id: string, state: string, timeoutMs = 20_000) {
  await until(async () => (await nicState(api, id)) === state, timeoutMs, `vNIC ${id} ${state}`);
}

async function network(api: NetClient, name: string) {
  return await api.call("CreateNetwork", {
    name,
    ipv4_enabled: true,
    ipv4_subnet: "10.70.0.0/24",
  });
}

const e2e = { ignore: !hasQemu, sanitizeOps: false, sanitizeResources: false };

Deno.test({
  ...e2e,
  name:
    "pairwise ring features: each guest negotiates what it offered and gets DHCP and the gateway",
  async fn() {
    await using d = await startDaemon();
    await serving(d.grpcTarget, d.log);
    const api = connect(d.grpcTarget);
    try {
      const net = await network(api, "matrix");
      // With all-on (network_test) and all-off (tests/vhost/qemu_test), these three rows cover
      // every pair of values of the three features.
      const rows = [
        { mrg_rxbuf: true, event_idx: false, indirect_desc: false },
        { mrg_rxbuf: false, event_idx: true, indirect_desc: false },
        { mrg_rxbuf: false, event_idx: false, indirect_desc: true },
      ];
      const nics = await Promise.all(
        rows.map((_, i) => api.call("CreateNic", { network_id: net.id, name: `m${i}` })),
      );
      const guests = await bootGuests(nics.map((n, i) => ({
        name: `matrix-${i}`,
        nics: [{ socketPath: n.socket_path, mac: n.mac_address, queueOptions: rows[i] }],
      })));
      try {
        await Promise.all(guests.map(async (g, i) => {
          const bits = (await ok(g, "cat /sys/class/net/eth0/device/features")).trim();
          assertEquals(bits[MRG_RXBUF] === "1", rows[i].mrg_rxbuf, `${g.name} MRG_RXBUF`);
          assertEquals(bits[EVENT_IDX] === "1", rows[i].event_idx, `${g.name} EVENT_IDX`);
          assertEquals(
            bits[INDIRECT_DESC] === "1",
            rows[i].indirect_desc,
            `${g.name} INDIRECT_DESC`,
          );
          const txBefore = Number(await ok(g, "cat /sys/class/net/eth0/statistics/tx_packets"));
          await ok(g, "mv-dhcp udhcpc eth0", 60_000);
          await ok(g, "ping -c 3 -W 5 169.254.0.1");
          const rx = Number(await ok(g, "cat /sys/class/net/eth0/statistics/rx_packets"));
          const tx = Number(await ok(g, "cat /sys/class/net/eth0/statistics/tx_packets"));
          assert(tx >= txBefore + 5 && rx >= 5, `${g.name} statistics moved (tx ${tx}, rx ${rx})`);
          assertEquals(await nicState(api, nics[i].id), "NIC_STATE_ACTIVE");
        }));
        await ok(guests[0], `ping -c 2 -W 5 ${nics[1].ipv4_address}`);
        await ok(guests[2], `ping -c 2 -W 5 ${nics[0].ipv4_address}`);
      } finally {
        await Promise.all(guests.map((g) => g.close()));
      }
    } finally {
      api.close();
    }
  },
});

async function restartInPlace(d: Daemon): Promise<Daemon> {
  const pids = d.pids();
  for (const pid of [pids.root, pids.api, pids.dataplane]) {
    if (pid) Deno.kill(pid, "SIGKILL");
  }
  await until(
    () => ![pids.root, pids.api, pids.dataplane].some((p) => p && alive(p)),
    10_000,
    "all gone",
  );
  return await startDaemon({ dataDir: d.dataDir, socketDir: d.socketDir });
}

Deno.test({
  ...e2e,
  name:
    "dataplane killed, then the whole daemon SIGKILLed: state restored, the guest reconnects by itself",
  async fn() {
    await using d = await startDaemon();
    await serving(d.grpcTarget, d.log);
    let api = connect(d.grpcTarget);
    const net = await network(api, "survive");
    const nic = await api.call("CreateNic", { network_id: net.id, name: "vm" });
    api.close();
    const g = await bootGuest({
      name: "survive",
      nics: [{ socketPath: nic.socket_path, mac: nic.mac_address }],
    });
    let again: Daemon | undefined;
    try {
      await ok(g, "mv-dhcp udhcpc eth0", 60_000);
      await ok(g, "ping -c 2 -W 5 169.254.0.1");
      const bootId = (await ok(g, "cat /proc/sys/kernel/random/boot_id")).trim();

      // The dataplane alone: the root restarts it, the api re-pushes the vNIC, QEMU reconnects.
      const t0 = performance.now();
      d.kill("dataplane", "SIGKILL");
      await gatewayAnswers(g, 30_000);
      console.log(
        `dataplane SIGKILL: gateway answers again after ${(performance.now() - t0).toFixed(0)} ms`,
      );

      // The whole daemon: every process SIGKILLed, then started again on the same directories.
      const t1 = performance.now();
      again = await restartInPlace(d);
      await serving(again.grpcTarget, again.log);
      api = connect(again.grpcTarget);
      const back = await api.call("GetNic", { id: nic.id });
      assertEquals(back.socket_path, nic.socket_path);
      assertEquals(back.ipv4_address, nic.ipv4_address);
      assertEquals(back.mac_address, nic.mac_address);
      assertEquals((await api.call("GetNetwork", { id: net.id })).name, "survive");
      await gatewayAnswers(g, 30_000);
      console.log(
        `daemon SIGKILL + start: gateway answers again after ${
          (performance.now() - t1).toFixed(0)
        } ms`,
      );
      await waitState(api, nic.id, "NIC_STATE_ACTIVE");
      assertEquals(
        (await ok(g, "cat /proc/sys/kernel/random/boot_id")).trim(),
        bootId,
        "the guest was not restarted",
      );
      api.close();
    } finally {
      await g.close();
      if (again) await again[Symbol.asyncDispose]();
    }
  },
});
