/** The device with a real VMM: QEMU (TCG) boots the test guest with a vhost-user
 * virtio-net NIC on our socket, and the guest pings the demo gateway through the device:
 * with QEMU's default features, also after a reboot (driver reset), and with every optional
 * ring feature switched off. Skipped when QEMU or the guest image is missing. */
import { assert, assertEquals } from "../assert.ts";
import { DevField, native, u64 } from "../../ffi/binding.ts";
import { VhostNetDevice } from "../../vhost/device.ts";
import { bit, Feature } from "../../vhost/protocol.ts";
import {
  bootGuest,
  type Guest,
  guestBuilt,
  qemuAvailable,
  type QueueOptions,
} from "../helpers/guest.ts";

const WORKER = new URL("../harness/device_worker.ts", import.meta.url);
const MAC = "52:54:00:aa:00:02";
const RING_FEATURES = [Feature.NET_MRG_RXBUF, Feature.RING_EVENT_IDX, Feature.RING_INDIRECT_DESC];

interface WorkerMsg {
  type: string;
  handle?: number;
  t?: { kind: string };
}

/** A device Worker in gateway mode and a guest on it; runs `body`, then cleans up. */
async function withGuest(
  queueOptions: QueueOptions | undefined,
  body: (g: Guest, handle: number, kinds: () => string[]) => Promise<void>,
): Promise<void> {
  const dir = Deno.makeTempDirSync({ prefix: "mvnet-qemu-" });
  const socketPath = `${dir}/nic.sock`;
  const w = new Worker(WORKER, { type: "module" });
  const msgs: WorkerMsg[] = [];
  w.onmessage = (e) => msgs.push(e.data);
  const waitFor = async (type: string, ms: number): Promise<WorkerMsg> => {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      const m = msgs.find((x) => x.type === type);
      if (m) return m;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`no ${type} from the device Worker within ${ms} ms`);
  };
  w.postMessage({ type: "create", socketPath, mac: MAC, mode: "gateway" });
  const handle = (await waitFor("ready", 5000)).handle!;
  let g: Guest | undefined;
  try {
    g = await bootGuest({
      name: "vhost-dev",
      nics: [{ socketPath, mac: MAC, queueOptions }],
      accel: "tcg",
    });
    await body(g, handle, () => msgs.filter((m) => m.type === "transition").map((m) => m.t!.kind));
  } finally {
    await g?.close();
    w.postMessage({ type: "stop" });
    VhostNetDevice.wake(handle);
    await waitFor("stopped", 5000).catch(() => {});
    w.terminate();
    VhostNetDevice.closeHandle(handle);
    Deno.removeSync(dir, { recursive: true });
  }
}

async function ping(g: Guest): Promise<void> {
  const r = await g.run(
    "ip addr add 169.254.0.2/16 dev eth0 2>/dev/null; ip link set eth0 up && ping -c 3 -W 2 169.254.0.1",
    { timeoutMs: 20_000 },
  );
  assert(/3 packets received/.test(r.output), `ping through the device:\n${r.output}`);
}

function negotiated(handle: number): bigint {
  return u64(native().mvn_dev_get(handle, DevField.FEATURES));
}

const ignore = !qemuAvailable() || !guestBuilt();

Deno.test({
  name: "real QEMU guest pings through the device, before and after a reboot",
  ignore,
  async fn() {
    await withGuest(undefined, async (g, handle, kinds) => {
      await ping(g);
      // QEMU's defaults: the guest driver runs with every ring feature we offer.
      for (const f of [Feature.VERSION_1, ...RING_FEATURES]) {
        assert((negotiated(handle) & bit(f)) !== 0n, `feature bit ${f} negotiated`);
      }
      assert(kinds().includes("driver_ok"), JSON.stringify(kinds()));
      await g.reboot(60_000);
      await ping(g);
      assert(
        kinds().filter((k) => k === "driver_ok").length >= 2,
        `re-activated after reboot: ${kinds()}`,
      );
      const c = VhostNetDevice.adopt(handle).counters();
      assert(c.tx_packets >= 8 && c.rx_packets >= 8, JSON.stringify(c));
      assertEquals(
        c.chain_bad_addr + c.chain_loop + c.chain_bad_index,
        0,
        "a real driver makes no bad chains",
      );
    });
  },
});

Deno.test({
  name: "real QEMU guest without MRG_RXBUF, EVENT_IDX and INDIRECT_DESC",
  ignore,
  async fn() {
    await withGuest(
      { mrg_rxbuf: false, event_idx: false, indirect_desc: false },
      async (g, handle) => {
        await ping(g);
        for (const f of RING_FEATURES) {
          assertEquals(negotiated(handle) & bit(f), 0n, `feature bit ${f} off`);
        }
      },
    );
  },
});
