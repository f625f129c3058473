/**
 * Starts DPDK's `dpdk-testpmd` as a vhost-user backend (the vhost PMD, `net_vhost`) on N
 * Unix sockets: the reference backend that test guests and our own backend are compared
 * with. Ports are numbered in the order of `sockets`; in io forwarding testpmd pairs them
 * (0<->1, 2<->3, ...), so two guests on ports 0 and 1 are on one virtual wire.
 *
 * testpmd runs interactively on a pipe (under `stdbuf -o0` so that its output comes in the
 * order it is printed), which lets tests send commands such as `show port stats all`.
 * It runs without hugepages and without PCI, with its own `--file-prefix`, and is stopped
 * with `quit`, then by PID.
 *
 * @example
 * ```ts
 * await using pmd = await startTestpmd({ sockets: ["/tmp/a.sock", "/tmp/b.sock"] });
 * const stats = await pmd.portStats();
 * ```
 * @module
 */

import { bounded, withTimeout } from "./wait.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const OUT_DIR = `${ROOT}tests/.out`;
const TESTPMD = "dpdk-testpmd";
const PROMPT = "testpmd> ";

/** Options of {@link startTestpmd}. */
export interface TestpmdOptions {
  /** vhost-user socket paths; testpmd creates (listens on) them. Existing files are removed. */
  sockets: string[];
  /** EAL `-l`: the first core runs the main thread, the others forward; default "0,1". */
  cores?: string;
  /** `--forward-mode`, default "io". */
  forwardMode?: string;
  /** Queue pairs per port, default 1. */
  queues?: number;
  /** Extra `net_vhost` devargs, e.g. "client=1" or "dequeue-zero-copy=0". */
  vdevArgs?: string;
  /** `--total-num-mbufs`, default 32768 (fits the 256 MB of `-m 256`). */
  mbufs?: number;
  /** Memory in MB (`-m`, without hugepages), default 256. */
  memoryMb?: number;
  /** Extra EAL arguments (before `--`). */
  ealArgs?: string[];
  /** Extra testpmd arguments (after `--`). */
  appArgs?: string[];
  /** Start forwarding at once (`--auto-start`), default true. */
  autoStart?: boolean;
  /** Time to wait for the sockets and the prompt, default 30 s. */
  readyTimeoutMs?: number;
  /** Name in the log file name, default "testpmd". */
  name?: string;
}

/** Counters of one port, from `show port stats`. */
export interface PortStats {
  port: number;
  rxPackets: number;
  rxMissed: number;
  rxBytes: number;
  rxErrors: number;
  rxNombuf: number;
  txPackets: number;
  txErrors: number;
  txBytes: number;
}

/** A running testpmd. Dispose it (or call close()) to stop it. */
export interface Testpmd extends AsyncDisposable {
  readonly pid: number;
  /** The `--file-prefix`: its runtime directory /var/run/dpdk/PREFIX is removed at close. */
  readonly filePrefix: string;
  readonly sockets: readonly string[];
  /** Everything testpmd printed so far (stdout and stderr). */
  log(): string;
  /** The file the output is written to. */
  readonly logPath: string;
  /** Resolves when testpmd exits. */
  readonly status: Promise<Deno.CommandStatus>;
  /** Runs one interactive command; resolves with its output (up to the next prompt). */
  command(cmd: string, timeoutMs?: number): Promise<string>;
  /** `show port stats all`, parsed. */
  portStats(): Promise<PortStats[]>;
  /** Waits until the log from offset `from` matches `re`. */
  waitForLog(re: RegExp, timeoutMs?: number, from?: number): Promise<RegExpMatchArray>;
  /** `quit`, then SIGTERM, then SIGKILL by PID (each bounded); cleans up; idempotent. */
  close(): Promise<void>;
}

/** True if dpdk-testpmd is installed. */
export function testpmdAvailable(): boolean {
  return which(TESTPMD) !== undefined;
}

let seq = 0;
const livePids = new Set<number>();
let unloadHooked = false;

/** Starts testpmd and waits until every socket listens and the prompt is shown. */
export async function startTestpmd(opts: TestpmdOptions): Promise<Testpmd> {
  if (!testpmdAvailable()) throw new Error(`${TESTPMD} is not installed (Debian package dpdk-dev)`);
  if (opts.sockets.length === 0) throw new Error("startTestpmd: no sockets");
  const name = opts.name ?? "testpmd";
  const filePrefix = `mvtp${Deno.pid}x${++seq}`;
  for (const s of opts.sockets) removeQuietly(s);
  const queues = opts.queues ?? 1;
  const eal = [
    "-l",
    opts.cores ?? "0,1",
    "--no-pci",
    "--no-huge",
    "-m",
    String(opts.memoryMb ?? 256),
    "--file-prefix",
    filePrefix,
    "--log-level",
    "lib.eal:warning",
  ];
  opts.sockets.forEach((s, i) => {
    eal.push(
      "--vdev",
      `net_vhost${i},iface=${s},queues=${queues}${opts.vdevArgs ? "," + opts.vdevArgs : ""}`,
    );
  });
  eal.push(...(opts.ealArgs ?? []));
  const app = [
    "-i",
    "--total-num-mbufs",
    String(opts.mbufs ?? 32768),
    `--forward-mode=${opts.forwardMode ?? "io"}`,
    `--rxq=${queues}`,
    `--txq=${queues}`,
    ...(opts.autoStart ?? true ? ["--auto-start"] : []),
    ...(opts.appArgs ?? []),
  ];
  // stdbuf -o0: testpmd's printf output on a pipe would otherwise be block-buffered while its
  // prompt is not, and command output would arrive after the next prompt. stdbuf execs
  // testpmd, so the PID is testpmd's.
  const args = ["-o0", "-e0", TESTPMD, ...eal, "--", ...app];

  Deno.mkdirSync(OUT_DIR, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  const logPath = `${OUT_DIR}/${name}-${Deno.pid}-${seq}-${stamp}.log`;
  const logFile = Deno.openSync(logPath, { write: true, create: true, truncate: true });
  const enc = new TextEncoder();
  const logWrite = (s: string) => {
    try {
      logFile.writeSync(enc.encode(s));
    } catch { /* best effort */ }
  };
  logWrite(`# setpriv --pdeathsig KILL stdbuf ${args.join(" ")}\n`);

  // setpriv --pdeathsig: the kernel kills testpmd if this process dies without cleaning up;
  // setpriv and stdbuf exec, so the PID is testpmd's.
  const child = new Deno.Command("setpriv", {
    args: ["--pdeathsig", "KILL", "stdbuf", ...args],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const pid = child.pid;
  livePids.add(pid);
  if (!unloadHooked) {
    unloadHooked = true;
    globalThis.addEventListener("unload", () => {
      for (const p of livePids) killPid(p, "SIGKILL");
    });
  }
  const writer = child.stdin.getWriter();

  let text = "";
  let exited = false;
  let exitInfo = "";
  const waiters = new Set<() => void>();
  const notify = () => {
    for (const w of [...waiters]) w();
  };
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    const dec = new TextDecoder();
    try {
      for await (const chunk of stream) {
        const s = dec.decode(chunk, { stream: true });
        text += s;
        logWrite(s);
        notify();
      }
    } catch { /* ends with the process */ }
  };
  const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
  const status = child.status.then((st) => {
    exited = true;
    livePids.delete(pid);
    exitInfo = st.signal ? `signal ${st.signal}` : `exit code ${st.code}`;
    notify();
    return st;
  });

  const waitUntil = <T>(pred: () => T | undefined, timeoutMs: number, what: string) =>
    new Promise<T>((resolve, reject) => {
      const check = () => {
        const v = pred();
        if (v !== undefined) {
          done();
          resolve(v);
        } else if (exited) {
          done();
          reject(new Error(`testpmd exited (${exitInfo}) while ${what}${tail()}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`testpmd: timed out after ${timeoutMs} ms ${what}${tail()}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        waiters.delete(check);
      };
      waiters.add(check);
      check();
    });
  const tail = () => `\n--- last lines (${logPath}) ---\n${text.split("\n").slice(-20).join("\n")}`;

  let queue: Promise<unknown> = Promise.resolve();
  const commandNow = async (cmd: string, timeoutMs: number): Promise<string> => {
    if (exited) throw new Error(`testpmd has exited (${exitInfo})`);
    const from = text.length;
    await withTimeout(
      writer.write(enc.encode(cmd.trim() + "\n")),
      timeoutMs,
      `testpmd took no input for ${timeoutMs} ms`,
    );
    // testpmd echoes the command, prints its output, then a new prompt without a newline.
    const out = await waitUntil(
      () => {
        const t = text.slice(from);
        return t.includes("\n") && t.endsWith(PROMPT) ? t : undefined;
      },
      timeoutMs,
      `running ${JSON.stringify(cmd)}`,
    );
    const firstNl = out.indexOf("\n");
    return out.slice(firstNl + 1, out.length - PROMPT.length);
  };

  let closed: Promise<void> | undefined;
  const close = () => {
    closed ??= (async () => {
      if (!exited) {
        try {
          await withTimeout(writer.write(enc.encode("quit\n")), 5_000, "quit");
        } catch { /* pipe gone or full: the signals below */ }
        await bounded(status, 10_000);
      }
      if (!exited) {
        killPid(pid, "SIGTERM");
        await bounded(status, 5_000);
      }
      if (!exited) killPid(pid, "SIGKILL");
      await bounded(status, 5_000);
      try {
        await writer.close();
      } catch { /* closed with the process */ }
      await bounded(pumps, 5_000);
      logWrite(`\n# testpmd ${exitInfo || "did not exit"}\n`);
      try {
        logFile.close();
      } catch { /* closed */ }
      for (const s of opts.sockets) removeQuietly(s);
      // EAL's runtime directory of this --file-prefix (config, mp socket).
      removeQuietly(`/var/run/dpdk/${filePrefix}`, true);
    })();
    return closed;
  };

  const pmd: Testpmd = {
    pid,
    filePrefix,
    sockets: [...opts.sockets],
    log: () => text,
    logPath,
    status,
    command(cmd: string, timeoutMs = 10_000) {
      const p = queue.then(() => commandNow(cmd, timeoutMs));
      queue = p.catch(() => {});
      return p;
    },
    async portStats() {
      return parsePortStats(await pmd.command("show port stats all"));
    },
    waitForLog(re: RegExp, timeoutMs = 30_000, from = 0) {
      return waitUntil(
        () => text.slice(from).match(re) ?? undefined,
        timeoutMs,
        `waiting for ${re}`,
      );
    },
    close,
    [Symbol.asyncDispose]: close,
  };

  try {
    // Ready: the first prompt, and every socket file exists (testpmd listens on it).
    await waitUntil(
      () => (text.includes(PROMPT) && opts.sockets.every(isSocket) ? true : undefined),
      opts.readyTimeoutMs ?? 30_000,
      "starting",
    );
  } catch (e) {
    await close();
    throw e;
  }
  return pmd;
}

/** Parses the output of `show port stats all` (or of one port). */
export function parsePortStats(out: string): PortStats[] {
  const res: PortStats[] = [];
  const blocks = out.split(/#+ NIC statistics for port (\d+)\s+#+/);
  for (let i = 1; i + 1 < blocks.length; i += 2) {
    const b = blocks[i + 1];
    const num = (label: string) => {
      const m = b.match(new RegExp(`${label}:\\s*(\\d+)`));
      return m ? Number(m[1]) : 0;
    };
    res.push({
      port: Number(blocks[i]),
      rxPackets: num("RX-packets"),
      rxMissed: num("RX-missed"),
      rxBytes: num("RX-bytes"),
      rxErrors: num("RX-errors"),
      rxNombuf: num("RX-nombuf"),
      txPackets: num("TX-packets"),
      txErrors: num("TX-errors"),
      txBytes: num("TX-bytes"),
    });
  }
  return res;
}

function isSocket(path: string): boolean {
  try {
    return Deno.statSync(path).isSocket === true;
  } catch {
    return false;
  }
}

function removeQuietly(path: string, recursive = false): void {
  try {
    Deno.removeSync(path, { recursive });
  } catch { /* not there */ }
}

function killPid(pid: number, signal: Deno.Signal): void {
  try {
    Deno.kill(pid, signal);
  } catch { /* already gone */ }
}

function which(cmd: string): string | undefined {
  for (const dir of (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":")) {
    try {
      if (Deno.statSync(`${dir}/${cmd}`).isFile) return `${dir}/${cmd}`;
    } catch { /* not here */ }
  }
  return undefined;
}
