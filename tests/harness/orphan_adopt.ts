/**
 * Run as its own process by tests/vhost/adopt_test.ts, in two roles. As the main module it
 * never loads the shim: it starts a Worker (this same file) that creates a device and ends,
 * so no one holds the library open any more, then a second Worker that adopts the device.
 * That must work (the shim is built never to be unloaded). Prints `adopted <handle>` or
 * `failed <reason>`.
 * @module
 */

interface Reply {
  handle?: number;
  error?: string;
}

async function worker(): Promise<void> {
  const { VhostNetDevice } = await import("../../vhost/device.ts");
  const scope = globalThis as unknown as {
    onmessage: (e: MessageEvent<{ socketPath?: string; handle?: number }>) => void;
    postMessage(m: Reply): void;
  };
  scope.onmessage = (e) => {
    try {
      const dev = e.data.socketPath
        ? VhostNetDevice.create({ socketPath: e.data.socketPath, mac: "52:54:00:00:00:0b" })
        : VhostNetDevice.adopt(e.data.handle!);
      scope.postMessage({ handle: dev.handle });
    } catch (err) {
      scope.postMessage({ error: (err as Error).message });
    }
  };
}

function ask(msg: unknown): Promise<{ w: Worker; reply: Reply }> {
  const w = new Worker(import.meta.url, { type: "module" });
  return new Promise((resolve) => {
    w.onmessage = (e) => resolve({ w, reply: e.data });
    w.postMessage(msg);
  });
}

// import.meta.main is true in a Worker's entry module too; WorkerGlobalScope exists only there.
const inWorker = "WorkerGlobalScope" in globalThis;

if (!inWorker) {
  const a = await ask({ socketPath: Deno.args[0] });
  a.w.terminate();
  // Let the Worker's runtime, and with it its handle on the library, go away.
  await new Promise((r) => setTimeout(r, 300));
  const b = await ask({ handle: a.reply.handle });
  console.log(b.reply.error ? `failed ${b.reply.error}` : `adopted ${b.reply.handle}`);
  b.w.terminate();
} else {
  await worker();
}
