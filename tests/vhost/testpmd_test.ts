/** Interoperability with another frontend implementation: DPDK's virtio-user driver
 * (dpdk-testpmd) attaches to the device, which echoes every frame; testpmd in io mode sends
 * them back again, so frames circulate both ways for a few seconds. Skipped without
 * dpdk-testpmd. */
import { assert, assertEquals } from "../assert.ts";
import { VhostNetDevice } from "../../vhost/device.ts";

const WORKER = new URL("../harness/device_worker.ts", import.meta.url);
const RUN_MS = 3000;

function available(): boolean {
  try {
    new Deno.Command("dpdk-testpmd", { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync();
    return true;
  } catch {
    return false;
  }
}

interface WorkerMsg {
  type: string;
  handle?: number;
  echoed?: number;
  t?: { kind: string };
}

Deno.test({
  name: "DPDK virtio-user (testpmd) moves frames both ways through the device",
  ignore: !available(),
  async fn() {
    const dir = Deno.makeTempDirSync({ prefix: "mvnet-testpmd-" });
    const socketPath = `${dir}/nic.sock`;
    const prefix = `mvnet${Deno.pid}`;
    const w = new Worker(WORKER, { type: "module" });
    const msgs: WorkerMsg[] = [];
    w.onmessage = (e) => msgs.push(e.data);
    const waitFor = async (pred: (m: WorkerMsg) => boolean, ms: number, what: string) => {
      const deadline = Date.now() + ms;
      while (Date.now() < deadline) {
        const m = msgs.find(pred);
        if (m) return m;
        await new Promise((r) => setTimeout(r, 20));
      }
      throw new Error(`${what} did not happen within ${ms} ms`);
    };
    w.postMessage({ type: "create", socketPath, mac: "52:54:00:00:00:0a", mode: "echo" });
    const handle = (await waitFor((m) => m.type === "ready", 5000, "device ready")).handle!;
    // setpriv --pdeathsig: testpmd dies with this process even if the test is killed.
    const pmd = new Deno.Command("setpriv", {
      args: [
        "--pdeathsig",
        "KILL",
        "dpdk-testpmd",
        "-l",
        "0,1",
        "--no-pci",
        "--no-huge",
        "-m",
        "256",
        "--file-prefix",
        prefix,
        "--log-level",
        "lib.eal:warning",
        `--vdev=net_virtio_user0,path=${socketPath},queues=1,queue_size=256`,
        "--",
        "--total-num-mbufs",
        "8192",
        "--forward-mode=io",
        "--tx-first",
        "--auto-start",
        // With a stats period testpmd forwards until it is signalled; without one it waits
        // for Enter on stdin and stops forwarding at once when stdin is at its end.
        "--stats-period",
        "1",
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const output = pmd.output();
    let exited = false;
    output.then(() => exited = true);
    const stop = (signal: Deno.Signal) => {
      if (!exited) pmd.kill(signal);
    };
    try {
      await waitFor((m) => m.t?.kind === "driver_ok" || exited, 10_000, "driver_ok from testpmd");
      if (exited) {
        const o = await output;
        const text = new TextDecoder().decode(o.stdout) + new TextDecoder().decode(o.stderr);
        throw new Error(`testpmd exited early:\n${text}`);
      }
      await new Promise((r) => setTimeout(r, RUN_MS));
      const c = VhostNetDevice.adopt(handle).counters();
      stop("SIGINT");
      const timer = setTimeout(() => stop("SIGKILL"), 10_000);
      const out = await output;
      clearTimeout(timer);
      const log = new TextDecoder().decode(out.stdout);
      assert(c.tx_packets > 10_000, `frames from testpmd: ${JSON.stringify(c)}`);
      assert(c.rx_packets > 10_000, `frames to testpmd: ${JSON.stringify(c)}`);
      const bad = Object.entries(c).filter(([k, v]) => k.startsWith("chain_") && v > 0);
      assertEquals(bad, [], "DPDK's driver makes no bad chains");
      const rx = [...log.matchAll(/RX-packets:\s+(\d+)/g)].map((m) => Number(m[1]));
      assert(
        rx.length > 0 && Math.max(...rx) > 10_000,
        `testpmd received the echoes:\n${log.slice(-2000)}`,
      );
      await waitFor((m) => m.t?.kind === "disconnected", 5000, "disconnect after testpmd quit");
    } finally {
      stop("SIGKILL");
      await output;
      w.postMessage({ type: "stop" });
      VhostNetDevice.wake(handle);
      await waitFor((m) => m.type === "stopped", 5000, "Worker stop").catch(() => {});
      w.terminate();
      VhostNetDevice.closeHandle(handle);
      Deno.removeSync(dir, { recursive: true });
      try {
        Deno.removeSync(`/var/run/dpdk/${prefix}`, { recursive: true });
      } catch {
        // testpmd removed it, or never created it.
      }
    }
  },
});
