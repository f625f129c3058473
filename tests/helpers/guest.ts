/**
 * Boots test guests (QEMU, the kernel and initramfs of `scripts/guest/build.sh`) whose NICs
 * are vhost-user virtio-net devices on given Unix sockets, and drives them over the serial
 * console: {@link Guest.run} runs a shell command in the guest and returns its output and
 * exit status.
 *
 * The guests have no other network: no user-mode networking, no tap, nothing of the host.
 * QEMU is a vhost-user socket client, so the backend must already listen on every socket.
 *
 * @example
 * ```ts
 * await using g = await bootGuest({ name: "a", nics: [{ socketPath: "/tmp/x.sock", mac: "52:54:00:00:00:01" }] });
 * const r = await g.run("ip -br link show eth0");
 * ```
 * @module
 */

import { bounded, withTimeout } from "./wait.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
/** Where the guest's kernel and initramfs are built (see scripts/guest/build.sh). */
export const GUEST_BUILD_DIR = `${ROOT}build/guest`;
/** Where serial logs go. */
export const OUT_DIR = `${ROOT}tests/.out`;
const QEMU = "qemu-system-x86_64";

/** Feature switches of one virtio-net device (QEMU's properties of the same names). */
export interface QueueOptions {
  mrg_rxbuf?: boolean;
  event_idx?: boolean;
  indirect_desc?: boolean;
  /** Checksum and segmentation offloads the device offers the guest (off: the guest
   * completes checksums and segments itself, and takes only complete MTU-sized frames). */
  csum?: boolean;
  guest_csum?: boolean;
  host_tso4?: boolean;
  host_tso6?: boolean;
  host_ecn?: boolean;
  guest_tso4?: boolean;
  guest_tso6?: boolean;
  guest_ecn?: boolean;
}

/** One vNIC of a guest; the first is eth0 in the guest, the second eth1, and so on. */
export interface GuestNic {
  /** The vhost-user socket the backend listens on. */
  socketPath: string;
  /** The guest's MAC, `52:54:00:..`. */
  mac: string;
  /** Unset switches are left at QEMU's defaults (all on). */
  queueOptions?: QueueOptions;
}

/** Options of {@link bootGuest}. */
export interface GuestOptions {
  /** Name: the guest's hostname and part of the log file name. `[A-Za-z0-9_-]` only. */
  name: string;
  nics?: GuestNic[];
  /** Guest RAM in MiB (a shared memfd, as vhost-user needs), default 256. */
  memoryMb?: number;
  /** vCPUs, default 1. */
  cpus?: number;
  /** Time from launch to the ready marker, default 60 s (TCG on a busy 2-core machine). */
  timeoutMs?: number;
  /** Accelerator: "auto" (default) probes KVM once per process, see {@link detectAccel}. */
  accel?: "auto" | "kvm" | "tcg";
  /** Extra kernel command line. */
  kernelArgs?: string;
  /** Extra QEMU arguments. */
  qemuArgs?: string[];
  /** QEMU exits instead of rebooting (then {@link Guest.reboot} is refused); default false. */
  noReboot?: boolean;
  /** Wait for the ready marker before returning, default true. */
  waitForReady?: boolean;
  /** Memory hot-plug: DIMM slots and the most RAM in MiB (`-m <memoryMb>M,slots=,maxmem=`). */
  memoryHotplug?: { slots: number; maxMemoryMb: number };
  /** Open a QMP socket, for {@link Guest.qmp}; default false. */
  qmp?: boolean;
}

/** What {@link Guest.run} returns. */
export interface RunResult {
  /** stdout and stderr of the command, `\r` removed. */
  output: string;
  /** Exit status (137 when the guest-side timeout killed it). */
  code: number;
}

/** Options of {@link Guest.run}. */
export interface RunOptions {
  /** Bound on the command, enforced in the guest (SIGKILL) and on the host; default 30 s. */
  timeoutMs?: number;
  /** Throw unless the exit status is 0. */
  check?: boolean;
}

/** A running guest. Dispose it (or call close()) to kill QEMU by PID. */
export interface Guest extends AsyncDisposable {
  readonly name: string;
  /** QEMU's PID. */
  readonly pid: number;
  readonly accel: "kvm" | "tcg";
  /** Everything the serial console printed so far (`\r` kept). */
  readonly serialLog: string;
  /** The file the console (and QEMU's stderr) is written to as it arrives. */
  readonly logPath: string;
  /** QEMU's stderr so far. */
  readonly qemuStderr: string;
  /** Milliseconds from launch to the first ready marker (undefined before it). */
  readonly bootMs: number | undefined;
  /** Resolves when QEMU exits. */
  readonly status: Promise<Deno.CommandStatus>;
  /** True once QEMU has exited. */
  readonly exited: boolean;
  /** Waits for a ready marker printed after offset `from` of serialLog (default: any). */
  waitForReady(timeoutMs?: number, from?: number): Promise<void>;
  /** Runs `cmd` with `sh -c` in the guest. Calls are queued: one command at a time. */
  run(cmd: string, opts?: RunOptions): Promise<RunResult>;
  /** Waits until serialLog from offset `from` matches `re`; returns the match. */
  waitForSerial(re: RegExp, timeoutMs?: number, from?: number): Promise<RegExpMatchArray>;
  /** `reboot -f` in the guest, then waits for the ready marker of the new boot. */
  reboot(timeoutMs?: number): Promise<void>;
  /** `poweroff -f` in the guest; resolves with QEMU's exit code (SIGKILL after timeoutMs). */
  shutdown(timeoutMs?: number): Promise<number>;
  /** Sends a signal to QEMU by PID. */
  kill(signal?: Deno.Signal): void;
  /**
   * Runs one QMP command (`execute` with `arguments`) and returns its `return` value; throws
   * with QMP's error. Only for guests booted with `qmp: true`.
   */
  qmp(execute: string, args?: Record<string, unknown>, timeoutMs?: number): Promise<unknown>;
  /** Kills QEMU by PID if it still runs and waits for it; idempotent. */
  close(): Promise<void>;
}

/** True if QEMU is installed. */
export function qemuAvailable(): boolean {
  return which(QEMU) !== undefined;
}

/** True if scripts/guest/build.sh has built the guest. */
export function guestBuilt(): boolean {
  try {
    return Deno.statSync(`${GUEST_BUILD_DIR}/vmlinux`).size > 0 &&
      Deno.statSync(`${GUEST_BUILD_DIR}/initramfs.cpio.gz`).size > 0;
  } catch {
    return false;
  }
}

/**
 * Runs scripts/guest/build.sh (fast when up to date). Tests call this so that
 * `deno test` alone works on a machine where only the packages are installed.
 */
export async function buildGuest(timeoutMs = 300_000): Promise<void> {
  const cmd = new Deno.Command(`${ROOT}scripts/guest/build.sh`, {
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  });
  const child = cmd.spawn();
  const timer = setTimeout(() => killPid(child.pid, "SIGKILL"), timeoutMs);
  try {
    const out = await child.output();
    if (!out.success) {
      const dec = new TextDecoder();
      throw new Error(
        `scripts/guest/build.sh failed (${out.code}):\n${dec.decode(out.stdout)}${
          dec.decode(out.stderr)
        }`,
      );
    }
  } finally {
    clearTimeout(timer);
  }
}

let accelPromise: Promise<"kvm" | "tcg"> | undefined;

/**
 * The accelerator guests use: "kvm" only if a probe guest actually boots under KVM (the
 * kvm_pvm of these machines offers /dev/kvm, but the Debian kernel dies or crawls under it),
 * else "tcg". Probed once per process; MVIRT_GUEST_ACCEL=kvm|tcg skips the probe.
 */
export function detectAccel(): Promise<"kvm" | "tcg"> {
  accelPromise ??= probeAccel();
  return accelPromise;
}

async function probeAccel(): Promise<"kvm" | "tcg"> {
  const forced = Deno.env.get("MVIRT_GUEST_ACCEL");
  if (forced === "kvm" || forced === "tcg") {
    console.error(`guest: accelerator ${forced} (MVIRT_GUEST_ACCEL)`);
    return forced;
  }
  try {
    Deno.statSync("/dev/kvm");
  } catch {
    console.error("guest: accelerator tcg (no /dev/kvm)");
    return "tcg";
  }
  const t0 = performance.now();
  // A working KVM reaches the ready marker in a second or two; 12 s bounds a crawling one.
  let g: Guest | undefined;
  try {
    g = await launch({ name: "kvm-probe", timeoutMs: 12_000, noReboot: true }, "kvm");
    const r = await g.run("echo probe-ok", { timeoutMs: 5_000 });
    if (r.code === 0 && r.output.includes("probe-ok")) {
      console.error(`guest: accelerator kvm (probe booted in ${Math.round(g.bootMs ?? 0)} ms)`);
      return "kvm";
    }
    throw new Error(`probe command gave ${r.code}: ${r.output}`);
  } catch (e) {
    const why = (g?.qemuStderr.trim().split("\n").at(-1) ?? "") ||
      (e instanceof Error ? e.message.split("\n")[0] : String(e));
    console.error(
      `guest: accelerator tcg (KVM probe failed after ${
        Math.round(performance.now() - t0)
      } ms: ${why})`,
    );
    return "tcg";
  } finally {
    await g?.close();
  }
}

/** Boots a guest; the accelerator comes from {@link detectAccel} unless opts.accel says. */
export async function bootGuest(opts: GuestOptions): Promise<Guest> {
  if (!qemuAvailable()) throw new Error(`${QEMU} is not installed (Debian: qemu-system-x86)`);
  if (!guestBuilt()) await buildGuest();
  const accel = !opts.accel || opts.accel === "auto" ? await detectAccel() : opts.accel;
  const g = await launch(opts, accel, false);
  console.error(`guest ${opts.name}: pid ${g.pid}, ${accel}, log ${g.logPath}`);
  if (opts.waitForReady ?? true) {
    try {
      await g.waitForReady(opts.timeoutMs ?? 60_000);
    } catch (e) {
      await g.close();
      throw e;
    }
  }
  return g;
}

/**
 * Boots several guests at once; if one fails, the others are closed and the first error is
 * thrown. (Concurrent TCG boots share the CPUs: on 2 cores next to a busy-polling backend
 * they take about as long in total as one after the other.)
 */
export async function bootGuests(list: GuestOptions[]): Promise<Guest[]> {
  if (list.length > 0) await detectAccel(); // one probe, not one per guest
  const res = await Promise.allSettled(list.map((o) => bootGuest(o)));
  const failed = res.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) {
    for (const r of res) if (r.status === "fulfilled") await r.value.close();
    throw failed.reason;
  }
  return res.map((r) => (r as PromiseFulfilledResult<Guest>).value);
}

/** PIDs of QEMUs this process started and has not reaped: killed if the process exits. */
const livePids = new Set<number>();
let unloadHooked = false;

function hookUnload(): void {
  if (unloadHooked) return;
  unloadHooked = true;
  globalThis.addEventListener("unload", () => {
    for (const pid of livePids) killPid(pid, "SIGKILL");
  });
}

let seq = 0;

async function launch(
  opts: GuestOptions,
  accel: "kvm" | "tcg",
  waitReady = true,
): Promise<Guest> {
  if (!/^[A-Za-z0-9_-]{1,40}$/.test(opts.name)) throw new Error(`bad guest name ${opts.name}`);
  const mem = opts.memoryMb ?? 256;
  const args = [
    "-name",
    opts.name,
    "-machine",
    `pc,accel=${accel}`,
    // TCG keeps QEMU's default CPU model: "max" measured no faster and emulates more.
    ...(accel === "kvm" ? ["-cpu", "host"] : []),
    "-smp",
    String(opts.cpus ?? 1),
    "-m",
    opts.memoryHotplug
      ? `${mem}M,slots=${opts.memoryHotplug.slots},maxmem=${opts.memoryHotplug.maxMemoryMb}M`
      : `${mem}M`,
    // vhost-user backends map guest RAM: it must be a shared file (memfd).
    "-object",
    `memory-backend-memfd,id=mem,size=${mem}M,share=on`,
    "-numa",
    "node,memdev=mem",
    "-nodefaults",
    "-no-user-config",
    "-display",
    "none",
    "-kernel",
    `${GUEST_BUILD_DIR}/vmlinux`,
    "-initrd",
    `${GUEST_BUILD_DIR}/initramfs.cpio.gz`,
    "-append",
    `console=ttyS0 panic=-1 mv.name=${opts.name} ${opts.kernelArgs ?? ""}`.trim(),
    // The serial port on QEMU's stdin/stdout; signal=off: bytes are never QEMU's signals.
    "-chardev",
    "stdio,id=ser0,signal=off",
    "-serial",
    "chardev:ser0",
  ];
  if (opts.noReboot) args.push("-no-reboot");
  // Numbered like the log file below (seq + 1 is what it takes: nothing awaits in between).
  const qmpPath = opts.qmp ? `${OUT_DIR}/qmp-${Deno.pid}-${seq + 1}.sock` : undefined;
  if (qmpPath) args.push("-qmp", `unix:${qmpPath},server=on,wait=off`);
  (opts.nics ?? []).forEach((nic, i) => {
    if (!/^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$/.test(nic.mac)) {
      throw new Error(`bad MAC ${nic.mac}`);
    }
    const q = nic.queueOptions ?? {};
    const sw = (k: keyof QueueOptions) => q[k] === undefined ? "" : `,${k}=${q[k] ? "on" : "off"}`;
    args.push(
      "-chardev",
      `socket,id=c${i},path=${nic.socketPath},reconnect=1`,
      "-netdev",
      `vhost-user,id=n${i},chardev=c${i}`,
      "-device",
      // Fixed PCI slots keep eth0, eth1, .. in the order of opts.nics. romfile= (none):
      // the iPXE option ROM only costs boot time. vectors=0 under TCG: QEMU 7.2 with TCG,
      // vhost-user and MSI-X segfaults when the guest starts the NIC.
      `virtio-net-pci,netdev=n${i},mac=${nic.mac},addr=0x${(0x10 + i).toString(16)},romfile=` +
        `${sw("mrg_rxbuf")}${sw("event_idx")}${sw("indirect_desc")}` +
        `${sw("csum")}${sw("guest_csum")}${sw("host_tso4")}${sw("host_tso6")}${sw("host_ecn")}` +
        `${sw("guest_tso4")}${sw("guest_tso6")}${sw("guest_ecn")}` +
        (accel === "tcg" ? ",vectors=0" : ""),
    );
  });
  args.push(...(opts.qemuArgs ?? []));

  Deno.mkdirSync(OUT_DIR, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  const logPath = `${OUT_DIR}/guest-${opts.name}-${Deno.pid}-${++seq}-${stamp}.log`;
  const logFile = Deno.openSync(logPath, { write: true, create: true, truncate: true });
  const enc = new TextEncoder();
  const logWrite = (s: string) => {
    try {
      logFile.writeSync(enc.encode(s));
    } catch { /* the log is best effort; the in-memory copy is authoritative */ }
  };
  logWrite(`# ${QEMU} ${args.map((a) => (/[\s,]/.test(a) ? `'${a}'` : a)).join(" ")}\n`);

  const t0 = performance.now();
  // setpriv --pdeathsig: the kernel kills QEMU if this process dies without cleaning up
  // (a crashed or SIGKILLed test runner); it execs QEMU, so the PID is QEMU's.
  const child = new Deno.Command("setpriv", {
    args: ["--pdeathsig", "KILL", QEMU, ...args],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  hookUnload();
  livePids.add(child.pid);
  const pid = child.pid;
  const writer = child.stdin.getWriter();

  let serial = "";
  let stderrText = "";
  let bootMs: number | undefined;
  let exited = false;
  let exitInfo = "";
  const waiters = new Set<() => void>();
  const notify = () => {
    for (const w of [...waiters]) w();
  };

  const pump = async (
    stream: ReadableStream<Uint8Array>,
    onText: (s: string) => void,
  ): Promise<void> => {
    const dec = new TextDecoder();
    try {
      for await (const chunk of stream) onText(dec.decode(chunk, { stream: true }));
    } catch { /* the stream ends with the process */ }
  };
  const stdoutDone = pump(child.stdout, (s) => {
    serial += s;
    logWrite(s);
    if (bootMs === undefined && serial.includes("@@MV-READY ")) bootMs = performance.now() - t0;
    notify();
  });
  const stderrDone = pump(child.stderr, (s) => {
    stderrText += s;
    logWrite(s.split("\n").map((l) => (l ? `[qemu] ${l}` : l)).join("\n"));
    notify();
  });
  const status = child.status.then((st) => {
    exited = true;
    livePids.delete(pid);
    exitInfo = st.signal ? `signal ${st.signal}` : `exit code ${st.code}`;
    notify();
    return st;
  });

  /** Resolves with pred()'s first non-undefined value; rejects on timeout or QEMU's exit. */
  const waitUntil = <T>(pred: () => T | undefined, timeoutMs: number, what: string) =>
    new Promise<T>((resolve, reject) => {
      const check = () => {
        let v: T | undefined;
        try {
          v = pred();
        } catch (e) {
          done();
          reject(e);
          return;
        }
        if (v !== undefined) {
          done();
          resolve(v);
        } else if (exited) {
          done();
          reject(new Error(`guest ${opts.name}: QEMU exited (${exitInfo}) while ${what}${tail()}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`guest ${opts.name}: timed out after ${timeoutMs} ms ${what}${tail()}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        waiters.delete(check);
      };
      waiters.add(check);
      check();
    });
  const tail = () =>
    `\n--- last console lines (${logPath}) ---\n${
      serial.replace(/\r/g, "").split("\n").slice(-25).join("\n")
    }${
      stderrText
        ? `\n--- qemu stderr ---\n${stderrText.trim().split("\n").slice(-5).join("\n")}`
        : ""
    }`;

  const send = async (line: string) => {
    if (exited) throw new Error(`guest ${opts.name}: QEMU has exited (${exitInfo})`);
    // A pipe QEMU stops reading (a hung guest) must not block the test forever.
    await withTimeout(
      writer.write(enc.encode(line + "\n")),
      10_000,
      `guest ${opts.name}: the serial port took no input for 10 s${tail()}`,
    );
  };

  let queue: Promise<unknown> = Promise.resolve();
  let cmdSeq = 0;
  const runNow = async (cmd: string, ro: RunOptions): Promise<RunResult> => {
    const timeoutMs = ro.timeoutMs ?? 30_000;
    const id = `${Deno.pid}x${++cmdSeq}`;
    const b64 = base64(enc.encode(cmd));
    const from = serial.length;
    // Chunks keep each line short; the guest appends them before it decodes.
    const CHUNK = 1024;
    let i = 0;
    for (; b64.length - i > CHUNK; i += CHUNK) {
      await send(`@@MV-ARG ${id} ${b64.slice(i, i + CHUNK)}`);
    }
    await send(`@@MV-CMD ${id} ${Math.max(1, Math.ceil(timeoutMs / 1000))} ${b64.slice(i)}`);
    const begin = `@@MV-BEGIN ${id}@@`;
    const doneRe = new RegExp(`\\r?\\n@@MV-DONE ${id} (\\d+)@@`);
    // Host-side bound: the guest's own timeout plus slack for a slow TCG guest.
    const res = await waitUntil(
      () => {
        const text = serial.slice(from);
        const b = text.indexOf(begin);
        if (b < 0) return undefined;
        const rest = text.slice(b + begin.length);
        const m = rest.match(doneRe);
        if (!m || m.index === undefined) return undefined;
        const output = rest.slice(0, m.index).replace(/\r/g, "").replace(/^\n/, "");
        return { output, code: Number(m[1]) };
      },
      timeoutMs + 15_000,
      `running ${JSON.stringify(cmd.slice(0, 200))}`,
    );
    if (ro.check && res.code !== 0) {
      throw new Error(
        `guest ${opts.name}: ${JSON.stringify(cmd)} exited ${res.code}:\n${res.output}`,
      );
    }
    return res;
  };

  let closed: Promise<void> | undefined;
  const close = () => {
    closed ??= (async () => {
      if (!exited) killPid(pid, "SIGKILL");
      await bounded(status, 10_000);
      try {
        await writer.close();
      } catch { /* already closed with the process */ }
      await bounded(Promise.all([stdoutDone, stderrDone]), 5_000);
      logWrite(`\n# QEMU ${exitInfo || "did not exit"}\n`);
      try {
        logFile.close();
      } catch { /* closed */ }
      if (qmpPath) await Deno.remove(qmpPath).catch(() => {});
    })();
    return closed;
  };

  const readyRe = /@@MV-READY [0-9a-f-]+@@/;
  const guest: Guest = {
    name: opts.name,
    pid,
    accel,
    logPath,
    get serialLog() {
      return serial;
    },
    get qemuStderr() {
      return stderrText;
    },
    get bootMs() {
      return bootMs;
    },
    status,
    get exited() {
      return exited;
    },
    async waitForReady(timeoutMs = 60_000, from = 0) {
      await waitUntil(
        () => (readyRe.test(serial.slice(from)) ? true : undefined),
        timeoutMs,
        "waiting for the ready marker",
      );
    },
    run(cmd: string, ro: RunOptions = {}) {
      const p = queue.then(() => runNow(cmd, ro));
      queue = p.catch(() => {});
      return p;
    },
    waitForSerial(re: RegExp, timeoutMs = 30_000, from = 0) {
      return waitUntil(
        () => serial.slice(from).match(re) ?? undefined,
        timeoutMs,
        `waiting for ${re}`,
      );
    },
    async reboot(timeoutMs = 60_000) {
      if (opts.noReboot) throw new Error(`guest ${opts.name}: started with noReboot`);
      const p = queue.then(async () => {
        const from = serial.length;
        // No end marker comes back: the guest is gone before the shell could print it.
        await send(`@@MV-CMD ${Deno.pid}x${++cmdSeq} 10 ${base64(enc.encode("sync; reboot -f"))}`);
        await guest.waitForReady(timeoutMs, from);
      });
      queue = p.catch(() => {});
      await p;
    },
    async shutdown(timeoutMs = 20_000) {
      if (!exited) {
        try {
          await send(
            `@@MV-CMD ${Deno.pid}x${++cmdSeq} 10 ${base64(enc.encode("sync; poweroff -f"))}`,
          );
        } catch { /* exited meanwhile */ }
        const timer = setTimeout(() => killPid(pid, "SIGKILL"), timeoutMs);
        try {
          await status;
        } finally {
          clearTimeout(timer);
        }
      }
      await close();
      const st = await status;
      return st.signal ? 128 + signalNumber(st.signal) : st.code;
    },
    async qmp(execute: string, qargs?: Record<string, unknown>, timeoutMs = 20_000) {
      if (!qmpPath) throw new Error(`guest ${opts.name}: booted without qmp: true`);
      return await withTimeout(
        qmpCommand(qmpPath, execute, qargs),
        timeoutMs,
        `guest ${opts.name}: QMP ${execute} got no answer within ${timeoutMs} ms`,
      );
    },
    kill(signal: Deno.Signal = "SIGKILL") {
      if (!exited) killPid(pid, signal);
    },
    close,
    [Symbol.asyncDispose]: close,
  };

  if (waitReady) {
    try {
      await guest.waitForReady(opts.timeoutMs ?? 60_000);
    } catch (e) {
      await close();
      throw e;
    }
  }
  return guest;
}

/**
 * One QMP exchange on a fresh connection: greeting, `qmp_capabilities`, the command. Events
 * that arrive in between are skipped.
 */
async function qmpCommand(
  path: string,
  execute: string,
  args?: Record<string, unknown>,
): Promise<unknown> {
  const conn = await Deno.connect({ transport: "unix", path });
  const enc = new TextEncoder();
  const dec = new TextDecoder();
  let buffered = "";
  const buf = new Uint8Array(65536);
  const nextReply = async (): Promise<Record<string, unknown>> => {
    for (;;) {
      const nl = buffered.indexOf("\n");
      if (nl >= 0) {
        const line = buffered.slice(0, nl).trim();
        buffered = buffered.slice(nl + 1);
        if (!line) continue;
        const msg = JSON.parse(line) as Record<string, unknown>;
        if ("event" in msg) continue;
        return msg;
      }
      const n = await conn.read(buf);
      if (n === null) throw new Error(`QMP ${path}: closed by QEMU`);
      buffered += dec.decode(buf.subarray(0, n), { stream: true });
    }
  };
  const exchange = async (cmd: Record<string, unknown>) => {
    await conn.write(enc.encode(JSON.stringify(cmd) + "\n"));
    const r = await nextReply();
    if ("error" in r) throw new Error(`QMP ${cmd.execute}: ${JSON.stringify(r.error)}`);
    return r.return;
  };
  try {
    const greeting = await nextReply();
    if (!("QMP" in greeting)) {
      throw new Error(`QMP ${path}: no greeting: ${JSON.stringify(greeting)}`);
    }
    await exchange({ execute: "qmp_capabilities" });
    return await exchange(args ? { execute, arguments: args } : { execute });
  } finally {
    try {
      conn.close();
    } catch { /* closed by QEMU */ }
  }
}

function killPid(pid: number, signal: Deno.Signal): void {
  try {
    Deno.kill(pid, signal);
  } catch { /* already gone */ }
}

function signalNumber(sig: Deno.Signal): number {
  const n: Partial<Record<Deno.Signal, number>> = {
    SIGHUP: 1,
    SIGINT: 2,
    SIGQUIT: 3,
    SIGABRT: 6,
    SIGKILL: 9,
    SIGSEGV: 11,
    SIGTERM: 15,
  };
  return n[sig] ?? 0;
}

function base64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

function which(cmd: string): string | undefined {
  for (const dir of (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":")) {
    try {
      const p = `${dir}/${cmd}`;
      if (Deno.statSync(p).isFile) return p;
    } catch { /* not here */ }
  }
  return undefined;
}
