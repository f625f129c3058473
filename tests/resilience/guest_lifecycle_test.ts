/**
 * A guest's life on one vNIC, with QEMU guests on the real daemon: a reboot; a poweroff and a
 * new VM attached to the same vNIC (same address by DHCP); a QEMU SIGKILLed mid-traffic while
 * another guest's traffic to a third goes on untouched, and a new QEMU on the vNIC; memory
 * hot-added over QMP (a shared memfd DIMM): the backend maps the new region (ADD_MEM_REG, as
 * QEMU negotiates CONFIGURE_MEM_SLOTS) and the guest's network keeps working once the memory
 * is online. Figures are printed.
 */

import { assert, assertEquals } from "../assert.ts";
import { type Daemon, dataplaneRequest, startDaemon } from "../helpers/daemon.ts";
import {
  bootGuest,
  bootGuests,
  type Guest,
  type GuestNic,
  qemuAvailable,
} from "../helpers/guest.ts";
import { until } from "../helpers/wait.ts";
import { ok } from "../e2e/helpers.ts";
import { connect, type NetClient, serving } from "../api/helpers.ts";
import { startPing } from "./guest_helpers.ts";

const MIB = 1024 * 1024;
/** Size of the hot-added DIMM; no other memfd mapping of the dataplane has it. */
const HOTPLUG_MIB = 128;
/** Bytes of the file fetched over TCP after the hot-add. */
const FILE_BYTES = 2 * MIB;
const PING_INTERVAL_S = 0.1;
/** Echo requests of the bystander's ping while another QEMU is killed (8 s). */
const BYSTANDER_PINGS = 80;

async function nicState(api: NetClient, id: string): Promise<string> {
  return (await api.call("GetNic", { id })).state as unknown as string;
}

async function waitState(api: NetClient, id: string, state: string, timeoutMs = 30_000) {
  await until(async () => (await nicState(api, id)) === state, timeoutMs, `vNIC ${id} ${state}`);
}

/** Sizes in bytes of the guest-memory (memfd) mappings of a process. */
function memfdMappings(pid: number): number[] {
  const out: number[] = [];
  for (const line of Deno.readTextFileSync(`/proc/${pid}/maps`).split("\n")) {
    if (!line.includes("/memfd:")) continue;
    const [lo, hi] = line.split(" ")[0].split("-").map((h) => parseInt(h, 16));
    out.push(hi - lo);
  }
  return out;
}

/** DHCP, then the address the vNIC holds must be the guest's. */
async function dhcp(g: Guest, want: string): Promise<void> {
  await ok(g, "mv-dhcp udhcpc eth0", 60_000);
  const addr = await ok(g, "ip -4 -o addr show dev eth0");
  assert(addr.includes(`${want}/32`), `${g.name} got ${want} by DHCP:\n${addr}`);
}

async function counters(d: Daemon, id: string): Promise<Record<string, number>> {
  return (await dataplaneRequest(d.dataDir, { type: "GetNicCounters", id })).counters;
}

Deno.test({
  name: "guest lifecycle: reboot, poweroff and a new VM, QEMU SIGKILL mid-traffic, memory hot-add",
  ignore: !qemuAvailable(),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    await using d = await startDaemon();
    await serving(d.grpcTarget, d.log);
    const api = connect(d.grpcTarget);
    const guests: Guest[] = [];
    try {
      const net = await api.call("CreateNetwork", {
        name: "life",
        ipv4_enabled: true,
        ipv4_subnet: "10.72.0.0/24",
      });
      const [nicA, nicB, nicC] = await Promise.all(
        ["a", "b", "c"].map((name) => api.call("CreateNic", { network_id: net.id, name })),
      );
      const slotA: GuestNic[] = [{ socketPath: nicA.socket_path, mac: nicA.mac_address }];
      const [a, b, c] = await bootGuests([
        { name: "life-a", nics: slotA },
        { name: "life-b", nics: [{ socketPath: nicB.socket_path, mac: nicB.mac_address }] },
        { name: "life-c", nics: [{ socketPath: nicC.socket_path, mac: nicC.mac_address }] },
      ]);
      guests.push(a, b, c);
      await Promise.all([
        dhcp(a, nicA.ipv4_address),
        dhcp(b, nicB.ipv4_address),
        dhcp(c, nicC.ipv4_address),
      ]);
      const ipB = nicB.ipv4_address;

      await t.step("reboot: the guest comes back on the same vNIC and address", async () => {
        const before = (await ok(a, "cat /proc/sys/kernel/random/boot_id")).trim();
        const t0 = performance.now();
        await a.reboot();
        await dhcp(a, nicA.ipv4_address);
        await ok(a, `ping -c 2 -W 5 ${ipB}`);
        console.log(
          `reboot: network back ${(performance.now() - t0).toFixed(0)} ms after reboot -f`,
        );
        const after = (await ok(a, "cat /proc/sys/kernel/random/boot_id")).trim();
        assert(after !== before, "the guest really rebooted");
        assertEquals(await nicState(api, nicA.id), "NIC_STATE_ACTIVE");
      });

      let current = a;
      await t.step("poweroff, then a new VM on the same vNIC gets the same address", async () => {
        const code = await a.shutdown();
        console.log(`poweroff: QEMU exited ${code}`);
        await waitState(api, nicA.id, "NIC_STATE_CREATED");
        const t0 = performance.now();
        const a2 = await bootGuest({ name: "life-a2", nics: slotA });
        guests.push(a2);
        current = a2;
        await dhcp(a2, nicA.ipv4_address);
        await ok(a2, `ping -c 2 -W 5 ${ipB}`);
        await ok(b, `ping -c 2 -W 5 ${nicA.ipv4_address}`);
        console.log(
          `new VM on the vNIC: boot to traffic ${(performance.now() - t0).toFixed(0)} ms`,
        );
        await waitState(api, nicA.id, "NIC_STATE_ACTIVE");
      });

      let hot: Guest | undefined;
      await t.step("QEMU SIGKILL mid-traffic: the bystanders lose nothing", async () => {
        const victim = current;
        const rxB0 = (await counters(d, nicB.id)).rx_packets;
        const tFlood = performance.now();
        // The victim floods b with pings in its foreground until it dies.
        const flood = victim.run(`ping -i 0.02 -s 1000 -w 60 ${ipB}`, { timeoutMs: 70_000 });
        flood.catch(() => {});
        const w = startPing(c, ipB, { count: BYSTANDER_PINGS, intervalS: PING_INTERVAL_S });
        await until(() => w.replies.length >= 10, 30_000, "c's pings to b flowing");
        const rxB = (await counters(d, nicB.id)).rx_packets;
        const floodS = (performance.now() - tFlood) / 1000;
        victim.kill("SIGKILL");
        await victim.status;
        await waitState(api, nicA.id, "NIC_STATE_CREATED");
        const s = await w.done;
        console.log(
          `QEMU SIGKILL mid-traffic: b received ${rxB - rxB0} frames in the ${
            floodS.toFixed(1)
          } s before the kill; c->b lost ${s.lost} of ${s.transmitted} pings`,
        );
        assertEquals(s.lost, 0, "the traffic of c to b was not affected");

        // A new QEMU on the vNIC, with hot-pluggable memory and a QMP socket for what follows.
        const t0 = performance.now();
        hot = await bootGuest({
          name: "life-a3",
          nics: slotA,
          memoryMb: 256,
          memoryHotplug: { slots: 4, maxMemoryMb: 1024 },
          qmp: true,
        });
        guests.push(hot);
        await dhcp(hot, nicA.ipv4_address);
        await ok(hot, `ping -c 2 -W 5 ${ipB}`);
        console.log(
          `new QEMU after SIGKILL: boot to traffic ${(performance.now() - t0).toFixed(0)} ms`,
        );
      });

      await t.step("memory hot-add: the backend maps the DIMM, traffic flows", async () => {
        const g = hot!;
        const dp = d.pids().dataplane!;
        const hotBytes = HOTPLUG_MIB * MIB;
        const before = memfdMappings(dp).filter((s) => s === hotBytes).length;
        const memBefore = Number((await ok(g, "grep MemTotal /proc/meminfo")).match(/\d+/)![0]);
        const t0 = performance.now();
        await g.qmp("object-add", {
          "qom-type": "memory-backend-memfd",
          id: "hot1",
          size: hotBytes,
          share: true,
        });
        await g.qmp("device_add", { driver: "pc-dimm", id: "dimm1", memdev: "hot1" });
        // The region reaches the backend as ADD_MEM_REG (or a new SET_MEM_TABLE): either way
        // the dataplane maps the DIMM's memfd.
        await until(
          () => memfdMappings(dp).filter((s) => s === hotBytes).length > before,
          20_000,
          "the dataplane to map the hot-added DIMM",
        );
        const mappedMs = performance.now() - t0;
        // Online the new memory blocks; the zone above 4 GiB is Normal, which the kernel's own
        // allocations (the receive buffers of virtio-net among them) prefer from now on.
        const onlined = await ok(
          g,
          "n=0; for m in /sys/devices/system/memory/memory*; do " +
            '[ "$(cat $m/state)" = offline ] && echo online > $m/state && n=$((n+1)); done; echo $n',
        );
        const memAfter = Number((await ok(g, "grep MemTotal /proc/meminfo")).match(/\d+/)![0]);
        const zoneFree = async () =>
          (await ok(
            g,
            "awk '/^Node .* zone +Normal/{z=1} z&&/nr_free_pages/{print $2; exit}' /proc/zoneinfo",
          ))
            .trim();
        const freeBefore = await zoneFree();

        await ok(
          b,
          `mkdir -p /tmp/www && head -c ${FILE_BYTES} /dev/urandom > /tmp/www/blob && httpd -p 8080 -h /tmp/www`,
        );
        await ok(g, `wget -q -O /tmp/got http://${ipB}:8080/blob`, 120_000);
        const want = (await ok(b, "md5sum /tmp/www/blob | cut -d' ' -f1")).trim();
        const got = (await ok(g, "md5sum /tmp/got | cut -d' ' -f1")).trim();
        await ok(g, `ping -c 3 -W 5 ${ipB}`);
        const freeAfter = await zoneFree();
        const cnt = await counters(d, nicA.id);
        console.log(
          `memory hot-add: ${HOTPLUG_MIB} MiB DIMM mapped by the dataplane ${
            mappedMs.toFixed(0)
          } ms after device_add; ${onlined.trim()} blocks onlined, MemTotal ${memBefore} -> ${memAfter} kB; ` +
            `zone Normal free pages ${freeBefore} -> ${freeAfter} across a ${FILE_BYTES}-byte wget; ` +
            `chain_bad_addr ${cnt.chain_bad_addr}`,
        );
        assert(
          memAfter >= memBefore + (HOTPLUG_MIB * 1024) / 2,
          "the guest onlined the new memory",
        );
        assertEquals(got, want, "the file arrived intact");
        assertEquals(cnt.chain_bad_addr, 0, "no descriptor pointed outside the backend's table");
        assertEquals(await nicState(api, nicA.id), "NIC_STATE_ACTIVE");
      });
    } finally {
      await Promise.all(guests.map((g) => g.close()));
      api.close();
    }
  },
});
