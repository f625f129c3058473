/**
 * A Worker that runs one device the way the vNIC actor does (blocking poll, service, bursts)
 * and either echoes every frame the guest sends back to it, or answers as the demo gateway
 * (ARP and ping for 169.254.0.1). Used by the adoption, wake and real-guest tests.
 *
 * In:  { type: "create", socketPath, mac, mode? } | { type: "adopt", handle, mode? }
 *      | { type: "stop" }
 * Out: { type: "ready", handle } | { type: "transition", t } | { type: "stopped", echoed }
 *      (echoed: frames sent back to the guest)
 * @module
 */

import { DeviceEvents, VhostNetDevice } from "../../vhost/device.ts";
import { answerBatch } from "../../vhost/demo.ts";

/** What the device answers: every frame back, or the gateway's replies. */
type Mode = "echo" | "gateway";

type In =
  | { type: "create"; socketPath: string; mac: string; mode?: Mode }
  | { type: "adopt"; handle: number; mode?: Mode }
  | { type: "stop" };

interface Scope {
  postMessage(m: unknown): void;
  onmessage: ((e: MessageEvent<In>) => void) | null;
  close(): void;
}

const scope = globalThis as unknown as Scope;
let stop = false;

async function run(dev: VhostNetDevice, mode: Mode): Promise<void> {
  const batch = dev.frameBuffer(64);
  const replies = dev.frameBuffer(64);
  let echoed = 0;
  scope.postMessage({ type: "ready", handle: dev.handle });
  while (!stop) {
    // Blocks until the guest or the VMM does something, or until the parent wakes us.
    const ev = dev.poll(-1);
    if (ev & DeviceEvents.CONTROL) {
      for (const t of dev.service()) scope.postMessage({ type: "transition", t });
    }
    if (ev & DeviceEvents.TX) {
      const n = dev.receiveBurst(batch);
      if (n > 0 && mode === "echo") echoed += dev.sendBurst(batch);
      if (n > 0 && mode === "gateway" && answerBatch(batch, replies) > 0) {
        echoed += dev.sendBurst(replies);
      }
    }
    // Lets the "stop" message in.
    await new Promise((r) => setTimeout(r, 0));
  }
  scope.postMessage({ type: "stopped", echoed });
}

scope.onmessage = (e) => {
  const m = e.data;
  if (m.type === "stop") {
    stop = true;
    return;
  }
  const dev = m.type === "create"
    ? VhostNetDevice.create({ socketPath: m.socketPath, mac: m.mac })
    : VhostNetDevice.adopt(m.handle);
  run(dev, m.mode ?? "echo");
};
