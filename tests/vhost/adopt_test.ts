/** A device run by a Worker as the vNIC actor runs it: blocking poll woken from another
 * thread, and adoption of the live device by a new Worker without the guest noticing. */
import { assert, assertEquals, assertThrows } from "../assert.ts";
import { ShimError } from "../../ffi/binding.ts";
import { VhostNetDevice } from "../../vhost/device.ts";
import { configPayload, Request } from "../../vhost/protocol.ts";
import { Frontend, RXQ, testFrame } from "../harness/frontend.ts";
import { ALL_FEATURES, ALL_PROTOCOL_FEATURES, TEST_MAC } from "../harness/setup.ts";

const WORKER = new URL("../harness/device_worker.ts", import.meta.url);

interface Out {
  type: string;
  handle?: number;
  echoed?: number;
  t?: { kind: string };
}

/** A Worker and its messages, awaited one kind at a time (bounded). */
function start(first: unknown): { w: Worker; next(type: string): Promise<Out>; seen: Out[] } {
  const w = new Worker(WORKER, { type: "module" });
  const seen: Out[] = [];
  const waiters: { type: string; resolve(o: Out): void }[] = [];
  w.onmessage = (e: MessageEvent<Out>) => {
    seen.push(e.data);
    const i = waiters.findIndex((x) => x.type === e.data.type);
    if (i >= 0) waiters.splice(i, 1)[0].resolve(e.data);
  };
  w.postMessage(first);
  return {
    w,
    seen,
    next(type) {
      const have = seen.find((o) => o.type === type && !(o as { taken?: boolean }).taken);
      if (have) {
        (have as { taken?: boolean }).taken = true;
        return Promise.resolve(have);
      }
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no ${type} from the Worker in 5 s`)),
          5000,
        );
        waiters.push({
          type,
          resolve: (o) => {
            clearTimeout(timer);
            (o as { taken?: boolean }).taken = true;
            resolve(o);
          },
        });
      });
    },
  };
}

/** Sends `n` frames and waits (bounded) until they all came back through RX. */
async function echoRound(fe: Frontend, seed: number, n: number): Promise<void> {
  const frames = Array.from({ length: n }, (_, i) => testFrame(64 + i, seed + i));
  fe.postRx(n, 2048);
  for (const f of frames) fe.sendFrame(f);
  const got: Uint8Array[] = [];
  const deadline = Date.now() + 5000;
  while (got.length < n && Date.now() < deadline) {
    fe.takeCalls(RXQ, 50);
    got.push(...fe.readRx().map((x) => x.frame));
    await new Promise((r) => setTimeout(r, 1));
  }
  assertEquals(got, frames);
}

Deno.test("a Worker blocked in poll(-1) is woken from another thread and stops", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "mvnet-test-" });
  const a = start({ type: "create", socketPath: `${dir}/nic.sock`, mac: TEST_MAC });
  try {
    const { handle } = await a.next("ready");
    await new Promise((r) => setTimeout(r, 50)); // the Worker is now blocked in epoll_wait
    const t0 = performance.now();
    a.w.postMessage({ type: "stop" });
    VhostNetDevice.wake(handle!);
    await a.next("stopped");
    assert(performance.now() - t0 < 1000, "woken promptly");
    VhostNetDevice.closeHandle(handle!);
    assertThrows(() => VhostNetDevice.adopt(handle!), ShimError, "no device");
  } finally {
    a.w.terminate();
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("a new Worker adopts a live device and traffic continues on the same connection", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "mvnet-test-" });
  const socketPath = `${dir}/nic.sock`;
  const a = start({ type: "create", socketPath, mac: TEST_MAC });
  let b: ReturnType<typeof start> | undefined;
  let fe: Frontend | undefined;
  let handle = 0;
  try {
    handle = (await a.next("ready")).handle!;
    fe = Frontend.connect({ socketPath });
    fe.negotiate({ features: ALL_FEATURES, protocolFeatures: ALL_PROTOCOL_FEATURES });
    await echoRound(fe, 1, 5);
    assertEquals((await a.next("transition")).t?.kind, "connected");
    assertEquals((await a.next("transition")).t?.kind, "driver_ok");
    // The actor's Worker dies (killed, no clean-up); the device stays in native memory.
    a.w.terminate();
    VhostNetDevice.wake(handle);
    await new Promise((r) => setTimeout(r, 50));
    b = start({ type: "adopt", handle });
    assertEquals((await b.next("ready")).handle, handle);
    await echoRound(fe, 100, 5);
    // The new owner also answers control messages.
    const cfg = fe.request(Request.GET_CONFIG, configPayload(0, new Uint8Array(6)), {
      reply: true,
    })!;
    assertEquals(Array.from(cfg.subarray(12)), [0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
    const adopted = VhostNetDevice.adopt(handle);
    assertEquals(adopted.driverReady, true);
    assertEquals(adopted.counters().tx_packets, 10);
    assertEquals(adopted.counters().rx_packets, 10);
    assertEquals(
      b.seen.filter((o) => o.type === "transition").length,
      0,
      "the guest saw no reconnect",
    );
    b.w.postMessage({ type: "stop" });
    VhostNetDevice.wake(handle);
    assertEquals((await b.next("stopped")).echoed, 5);
  } finally {
    fe?.close();
    a.w.terminate();
    b?.w.terminate();
    if (handle) VhostNetDevice.closeHandle(handle);
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("adoption works after the only Worker that loaded the shim has ended", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "mvnet-test-" });
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("../harness/orphan_adopt.ts", import.meta.url).pathname,
        `${dir}/nic.sock`,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout).trim();
    assert(/^adopted \d+$/.test(text), `${text}\n${new TextDecoder().decode(out.stderr)}`);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
