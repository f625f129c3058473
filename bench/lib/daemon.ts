/**
 * Our daemon as the benchmarks run it: `daemon/main.ts` in a temporary data and socket
 * directory, gRPC on a free loopback port, no TUN device; its three processes (root, api,
 * dataplane) found through `<data-dir>/pids.json`, pinned with `taskset` and stopped by PID.
 * @module
 */

import { NetClient, waitServing } from "./client.ts";
import { alive, Proc, shellQuote, sleep, until } from "./proc.ts";
import { noteStarted, onInterrupt, track, untrack } from "./registry.ts";

/**
 * The tree whose daemon is measured: this one, or the directory in
 * `MVIRT_BENCH_DAEMON_ROOT` (a checkout of another commit, its shim built) to compare trees
 * with the same harness.
 */
const DAEMON_ROOT =
  (Deno.env.get("MVIRT_BENCH_DAEMON_ROOT") ?? new URL("../../", import.meta.url).pathname)
    .replace(/\/?$/, "/");

/** Time the daemon gets to start (three Deno processes on a busy 2-core machine). */
const START_TIMEOUT_MS = 60_000;
/** SIGTERM to SIGKILL. */
const STOP_GRACE_MS = 15_000;

/** PIDs the root records. */
export interface DaemonPids {
  root: number;
  api?: number;
  dataplane?: number;
}

/** Options of {@link startOurDaemon}. */
export interface OurDaemonOptions {
  /** Reuse these directories (a restart); new temporary ones otherwise. */
  dataDir?: string;
  socketDir?: string;
  /** Extra daemon flags. */
  args?: string[];
  /** Wait until the api serves (default true). */
  waitServing?: boolean;
}

/** True when a Unix socket at `path` accepts a connection. */
export async function unixAccepts(path: string): Promise<boolean> {
  try {
    const c = await Deno.connect({ transport: "unix", path });
    c.close();
    return true;
  } catch {
    return false;
  }
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** A running daemon of ours. */
export class OurDaemon {
  readonly dataDir: string;
  readonly socketDir: string;
  readonly target: string;
  readonly command: string;
  /** Milliseconds from spawn until the api served (NaN without waiting). */
  startMs = NaN;
  #proc: Proc;
  #tmp: string | null;
  #unregister: () => void;
  #client: NetClient | null = null;

  private constructor(proc: Proc, argv: string[], dirs: {
    dataDir: string;
    socketDir: string;
    target: string;
    tmp: string | null;
  }) {
    this.#proc = proc;
    this.command = shellQuote(argv);
    this.dataDir = dirs.dataDir;
    this.socketDir = dirs.socketDir;
    this.target = dirs.target;
    this.#tmp = dirs.tmp;
    this.#unregister = onInterrupt(() => this.stop());
  }

  /** Starts the daemon and waits for both children (and the api serving, by default). */
  static async start(opts: OurDaemonOptions = {}): Promise<OurDaemon> {
    const tmp = opts.dataDir ? null : await Deno.makeTempDir({ prefix: "mvirt-bench-ours-" });
    const dataDir = opts.dataDir ?? `${tmp}/data`;
    const socketDir = opts.socketDir ?? `${tmp}/sockets`;
    const target = `127.0.0.1:${freePort()}`;
    const argv = [
      Deno.execPath(),
      "run",
      "--no-prompt",
      `--config=${DAEMON_ROOT}deno.json`,
      "-A",
      `${DAEMON_ROOT}daemon/main.ts`,
      `--listen=${target}`,
      `--data-dir=${dataDir}`,
      `--socket-dir=${socketDir}`,
      "--no-tun",
      "--log-level=warn",
      ...(opts.args ?? []),
    ];
    const t0 = performance.now();
    const proc = track(Proc.spawn(argv));
    const d = new OurDaemon(proc, argv, { dataDir, socketDir, target, tmp });
    try {
      await until(
        () => {
          const st = proc.exited();
          if (st) throw new Error(`daemon exited (${st.code}):\n${proc.output().slice(-4000)}`);
          const p = d.pids();
          return p.api && p.dataplane && p.root === proc.pid ? p : null;
        },
        START_TIMEOUT_MS,
        "the daemon's api and dataplane processes",
      );
      const p = d.pids();
      noteStarted(p.api!);
      noteStarted(p.dataplane!);
      if (opts.waitServing ?? true) {
        await waitServing(target, START_TIMEOUT_MS);
        d.startMs = performance.now() - t0;
      }
    } catch (e) {
      await d.stop();
      throw new Error(
        `${(e as Error).message}\n--- daemon output ---\n${proc.output().slice(-3000)}`,
      );
    }
    return d;
  }

  /** The PIDs in `<data-dir>/pids.json` (only the root's before it is written). */
  pids(): DaemonPids {
    try {
      return JSON.parse(Deno.readTextFileSync(`${this.dataDir}/pids.json`));
    } catch {
      return { root: this.#proc.pid };
    }
  }

  /** A client of this daemon's API (one per daemon, closed by stop()). */
  get client(): NetClient {
    this.#client ??= new NetClient(this.target);
    return this.#client;
  }

  /** What the daemon printed (warnings and errors). */
  output(): string {
    return this.#proc.output();
  }

  /**
   * Pins every thread of the dataplane process (its main thread and the Workers of the vNIC,
   * network and TUN actors) to `cpu`; Workers started later inherit the mask of the thread
   * that creates them. Returns the command.
   */
  async pinDataplane(cpu: number): Promise<string> {
    const pid = this.pids().dataplane;
    if (!pid) throw new Error("no dataplane PID in pids.json");
    const argv = ["taskset", "-a", "-p", "-c", String(cpu), String(pid)];
    const out = await new Deno.Command(argv[0], {
      args: argv.slice(1),
      stdout: "null",
      stderr: "piped",
    })
      .output();
    if (!out.success) {
      throw new Error(`${shellQuote(argv)} failed: ${new TextDecoder().decode(out.stderr)}`);
    }
    return shellQuote(["taskset", "-a", "-p", "-c", String(cpu), "<dataplane pid>"]);
  }

  /**
   * Stops the daemon: SIGTERM to the root (it stops its children), SIGKILL after the grace
   * time; then any child still alive is killed by its recorded PID. Removes the temporary
   * directories unless `keepDirs` (a restart reuses them).
   */
  async stop(keepDirs = false): Promise<void> {
    this.#client?.close();
    this.#client = null;
    const pids = this.pids();
    if (!this.#proc.exited()) {
      try {
        Deno.kill(this.#proc.pid, "SIGTERM");
      } catch {
        // Gone already.
      }
      if (!(await this.#proc.wait(STOP_GRACE_MS))) {
        try {
          Deno.kill(this.#proc.pid, "SIGKILL");
        } catch {
          // Gone already.
        }
        await this.#proc.wait(5_000);
      }
    }
    untrack(this.#proc);
    for (const pid of [pids.api, pids.dataplane]) {
      if (pid && alive(pid)) {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch {
          // Raced with its own exit.
        }
      }
    }
    // The children notice the root's end through their stdin; give them a moment.
    for (let i = 0; i < 50 && [pids.api, pids.dataplane].some((p) => p && alive(p)); i++) {
      await sleep(20);
    }
    this.#unregister();
    if (!keepDirs && this.#tmp) {
      await Deno.remove(this.#tmp, { recursive: true }).catch(() => {});
    }
  }
}

/** Starts our daemon; see {@link OurDaemon}. */
export function startOurDaemon(opts: OurDaemonOptions = {}): Promise<OurDaemon> {
  return OurDaemon.start(opts);
}

/** CPU time (user + system) of a process so far, in seconds, from /proc/PID/stat. */
export function cpuSeconds(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  // Fields after the command name, which may contain spaces: it ends at the last ")".
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(f[11]) + Number(f[12]); // utime, stime (fields 14 and 15)
  return ticks / CLOCK_TICKS;
}

/** USER_HZ of Linux on x86_64 (what /proc/PID/stat counts in). */
const CLOCK_TICKS = 100;

/** Resident memory of a process in bytes (VmRSS). */
export function rssBytes(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kb = /VmRSS:\s+(\d+) kB/.exec(status)?.[1];
  if (!kb) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(kb) * 1024;
}
