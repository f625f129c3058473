/**
 * The api as its own process: how it starts, stops, and survives clients that trip the
 * node:http2 abort of Deno 2.9.6 (see api/http2_guard.ts).
 */
import { assert, assertEquals } from "../assert.ts";
import { alive, freePort, until } from "../helpers/daemon.ts";
import { connect } from "./helpers.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const NODE_CLIENT = new URL("./fixtures/node_client.mjs", import.meta.url).pathname;

interface ApiProcess extends AsyncDisposable {
  child: Deno.ChildProcess;
  target: string;
  stdin: WritableStreamDefaultWriter<Uint8Array>;
  log(): string;
}

/** Starts `api/main.ts` alone with the permissions the root gives it. */
async function startApiProcess(unixSocket = false): Promise<ApiProcess> {
  const dir = await Deno.makeTempDir({ prefix: "mvirt-net-api-proc-" });
  const target = unixSocket ? `unix:${dir}/api.sock` : `127.0.0.1:${freePort()}`;
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-prompt",
      `--config=${ROOT}deno.json`,
      "--allow-net",
      "--allow-read",
      `--allow-write=${dir}`,
      "--allow-env",
      "--allow-sys",
      `${ROOT}api/main.ts`,
      `--listen=${target}`,
      `--data-dir=${dir}/data`,
      `--socket-dir=${dir}/sockets`,
      "--no-tun",
    ],
    stdin: "piped",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let text = "";
  const pump = (async () => {
    const dec = new TextDecoder();
    for await (const c of child.stderr) text += dec.decode(c, { stream: true });
  })();
  const stdin = child.stdin.getWriter();
  const p: ApiProcess = {
    child,
    target,
    stdin,
    log: () => text,
    async [Symbol.asyncDispose]() {
      if (alive(child.pid)) {
        try {
          child.kill("SIGKILL");
        } catch {
          // Exited meanwhile.
        }
      }
      await child.status;
      await stdin.close().catch(() => {});
      await pump;
      await Deno.remove(dir, { recursive: true });
    },
  };
  await until(() => text.includes("api serving"), 20_000, `api to serve:\n${text}`);
  return p;
}

async function answers(target: string): Promise<boolean> {
  const c = connect(target);
  try {
    return (await c.call("GetVersion", {})).version !== "";
  } finally {
    c.close();
  }
}

Deno.test("api process: exits 0 on SIGTERM", async () => {
  await using api = await startApiProcess();
  assert(await answers(api.target));
  api.child.kill("SIGTERM");
  assertEquals((await api.child.status).code, 0);
  assert(api.log().includes("api stopping"), api.log());
});

Deno.test("api process: serves on a Unix socket", async () => {
  await using api = await startApiProcess(true);
  assert(await answers(api.target));
});

Deno.test("api process: exits 0 when stdin reaches EOF (the root is gone)", async () => {
  await using api = await startApiProcess();
  assert(await answers(api.target));
  await api.stdin.close();
  const status = await api.child.status;
  assertEquals(status.code, 0);
});

async function nodeClients(target: string, clients: number, calls: number) {
  const out = await new Deno.Command("node", {
    args: [NODE_CLIENT, "calls", target, String(clients), String(calls)],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert(out.success, new TextDecoder().decode(out.stderr));
  return JSON.parse(new TextDecoder().decode(out.stdout)) as Array<
    { ok: number; codes: Record<string, number> }
  >;
}

Deno.test("api process survives clients that close connections after many calls", async () => {
  await using api = await startApiProcess();
  // One client, 300 calls, close: without the guard this aborts Deno 2.9.6 every time.
  assertEquals(await nodeClients(api.target, 1, 300), [{ ok: 300, codes: {} }]);
  // The acceptance case: five clients, 2000 calls each on one channel, then close.
  const results = await nodeClients(api.target, 5, 2000);
  assertEquals(results, Array(5).fill({ ok: 2000, codes: {} }));
  await new Promise((r) => setTimeout(r, 500));
  assert(alive(api.child.pid), `api died:\n${api.log()}`);
  assert(await answers(api.target));
  assert(!/free\(\)|Assertion|panicked/.test(api.log()), api.log());
});
