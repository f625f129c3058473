/**
 * Starts the real daemon (root, api and dataplane processes) for a test, on a free loopback
 * port and in a temporary directory, and tears it down by PID.
 *
 * @example
 * ```ts
 * await using d = await startDaemon();
 * // talk gRPC to d.grpcTarget
 * ```
 * @module
 */

import { unixAccepts, until, withTimeout } from "./wait.ts";
import { Channel } from "../../daemon/ipc.ts";
import type { Request, ResponseByType } from "../../daemon/protocol.ts";

/** Re-exported: tests that start a daemon usually wait for something. */
export { until };

const ROOT = new URL("../../", import.meta.url).pathname;

/** Options of {@link startDaemon}. */
export interface DaemonOptions {
  /** Extra daemon flags. */
  args?: string[];
  /** Extra environment. */
  env?: Record<string, string>;
  /** Reuse a data directory (for restart tests); a new temporary one otherwise. */
  dataDir?: string;
  /** Reuse a socket directory. */
  socketDir?: string;
  /** Time to wait for the gRPC port and both children. */
  readyTimeoutMs?: number;
  /** Wait for the api's gRPC port (default true). */
  waitForGrpc?: boolean;
  /** gRPC listen address (default a free loopback port); a `unix:/path` is waited for too. */
  listen?: string;
  /** A command the daemon runs under, e.g. `["unshare", "-n", "--"]` for its own namespace. */
  wrap?: string[];
  /** Let the daemon create its TUN device (default off: `--no-tun`). */
  tun?: boolean;
}

/** PIDs of the daemon's processes. */
export interface DaemonPids {
  root: number;
  api?: number;
  dataplane?: number;
}

/** A running daemon. */
export interface Daemon extends AsyncDisposable {
  /** `127.0.0.1:PORT` (or the `listen` given) for gRPC clients. */
  grpcTarget: string;
  port: number;
  dataDir: string;
  socketDir: string;
  /** The root's PID. */
  pid: number;
  /** Current PIDs as the root recorded them. */
  pids(): DaemonPids;
  /** Everything the daemon logged so far. */
  log(): string;
  /** Waits until the log matches `re` (counting from `from` characters in). */
  waitForLog(re: RegExp, timeoutMs?: number, from?: number): Promise<string>;
  /** Waits until a child has a PID other than `not`. */
  waitForChild(role: "api" | "dataplane", not?: number, timeoutMs?: number): Promise<number>;
  /** Sends a signal to a child by its recorded PID. */
  kill(role: "api" | "dataplane" | "root", signal?: Deno.Signal): void;
  /** SIGTERM to the root; resolves with its exit code (SIGKILL after `timeoutMs`). */
  stop(timeoutMs?: number): Promise<number>;
  /** Resolves with the root's exit status. */
  status: Promise<Deno.CommandStatus>;
}

/** Finds a free TCP port on loopback. */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** True if the process exists. */
export function alive(pid: number): boolean {
  try {
    Deno.kill(pid, "SIGCONT");
    return true;
  } catch {
    return false;
  }
}

async function portOpen(port: number): Promise<boolean> {
  try {
    const c = await Deno.connect({ hostname: "127.0.0.1", port });
    c.close();
    return true;
  } catch {
    return false;
  }
}

/** Starts the daemon; the caller must dispose of it (`await using`, or `stop()`). */
export async function startDaemon(opts: DaemonOptions = {}): Promise<Daemon> {
  const tmp = await Deno.makeTempDir({ prefix: "mvirt-net-test-" });
  const dataDir = opts.dataDir ?? `${tmp}/data`;
  const socketDir = opts.socketDir ?? `${tmp}/sockets`;
  const port = freePort();
  const args = [
    "run",
    "--no-prompt",
    `--config=${ROOT}deno.json`,
    "-A",
    `${ROOT}daemon/main.ts`,
    `--listen=${opts.listen ?? `127.0.0.1:${port}`}`,
    `--data-dir=${dataDir}`,
    `--socket-dir=${socketDir}`,
    ...(opts.tun ? [] : ["--no-tun"]),
    "--log-level=debug",
    ...(opts.args ?? []),
  ];
  const wrap = opts.wrap ?? [];
  const child = new Deno.Command(wrap.length ? wrap[0] : Deno.execPath(), {
    args: wrap.length ? [...wrap.slice(1), Deno.execPath(), ...args] : args,
    env: { MVIRT_NET_FAULT_INJECTION: "1", ...opts.env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let text = "";
  const decoder = new TextDecoder();
  const pump = async (s: ReadableStream<Uint8Array>) => {
    for await (const chunk of s) text += decoder.decode(chunk, { stream: true });
  };
  const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
  const status = child.status;
  const pidsFile = `${dataDir}/pids.json`;
  const readPids = (): DaemonPids => {
    try {
      return JSON.parse(Deno.readTextFileSync(pidsFile));
    } catch {
      return { root: child.pid };
    }
  };
  let exited: Deno.CommandStatus | null = null;
  status.then((s) => (exited = s));
  const d: Daemon = {
    grpcTarget: opts.listen ?? `127.0.0.1:${port}`,
    port,
    dataDir,
    socketDir,
    pid: child.pid,
    pids: readPids,
    log: () => text,
    async waitForLog(re, timeoutMs = 10_000, from = 0) {
      return await until(
        () => {
          const m = re.exec(text.slice(from));
          return m ? m[0] : null;
        },
        timeoutMs,
        `log ${re}`,
      );
    },
    async waitForChild(role, not, timeoutMs = 10_000) {
      return await until(
        () => {
          const pid = readPids()[role];
          return pid && pid !== not && alive(pid) ? pid : null;
        },
        timeoutMs,
        `${role} process`,
      );
    },
    kill(role, signal = "SIGKILL") {
      const pid = role === "root" ? child.pid : readPids()[role];
      if (!pid) throw new Error(`no ${role} pid recorded`);
      Deno.kill(pid, signal);
    },
    async stop(timeoutMs = 15_000) {
      if (exited) return exited.code;
      const killer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch {
          // Gone already.
        }
      }, timeoutMs);
      try {
        child.kill("SIGTERM");
      } catch {
        // Gone already.
      }
      const st = await status;
      clearTimeout(killer);
      await pumps;
      return st.code;
    },
    status,
    async [Symbol.asyncDispose]() {
      const pids = readPids();
      await d.stop();
      // Whatever the test did, no child outlives it.
      for (const pid of [pids.api, pids.dataplane]) {
        if (pid && alive(pid)) {
          try {
            Deno.kill(pid, "SIGKILL");
          } catch {
            // Raced with its own exit.
          }
        }
      }
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
    },
  };
  try {
    const timeout = opts.readyTimeoutMs ?? 60_000;
    await until(
      () => {
        if (exited) throw new Error(`daemon exited early (code ${exited.code}):\n${text}`);
        const p = readPids();
        return p.api && p.dataplane ? p : null;
      },
      timeout,
      "both children",
    );
    if (opts.waitForGrpc ?? true) {
      const unixPath = opts.listen?.startsWith("unix:") ? opts.listen.slice("unix:".length) : null;
      if (unixPath) await until(() => unixAccepts(unixPath), timeout, `gRPC socket ${unixPath}`);
      else if (!opts.listen) await until(() => portOpen(port), timeout, `gRPC port ${port}`);
    }
  } catch (e) {
    await d[Symbol.asyncDispose]();
    throw new Error(`${(e as Error).message}\n--- daemon log ---\n${text}`);
  }
  return d;
}

/**
 * Sends one request to a running dataplane over its control socket
 * (`<dataDir>/dataplane.sock`) as a `diagnostics` peer, which leaves the api's own connection
 * alone: counters (`GetNicCounters`), `Ping`, and `InjectFault` (the test daemon runs with
 * MVIRT_NET_FAULT_INJECTION=1).
 */
export async function dataplaneRequest<R extends Request>(
  dataDir: string,
  req: R,
  timeoutMs = 10_000,
): Promise<ResponseByType[R["type"]]> {
  const conn = await Deno.connect({ transport: "unix", path: `${dataDir}/dataplane.sock` });
  let ch: Channel | undefined;
  try {
    const opening = Channel.open(conn, { role: "diagnostics", requestTimeoutMs: timeoutMs });
    opening.catch(() => {}); // a late failure after the timeout below is not news
    ch = await withTimeout(opening, timeoutMs, "the dataplane's hello on its control socket");
    return await ch.request(req);
  } finally {
    if (ch) ch.close("diagnostics request done");
    else conn.close();
  }
}
