/**
 * Child processes of the benchmark (DPDK programs): spawned with their output collected
 * (bounded) and stopped by PID, never by name; plus the DPDK runtime directories and
 * temporary socket directories they leave behind.
 * @module
 */

/** Keep at most this many characters of a child's output (the tail). */
const OUTPUT_LIMIT = 256 * 1024;

/** A shell-quoted rendering of a command line, for the report. */
export function shellQuote(argv: readonly string[]): string {
  return argv.map((a) => /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", `'\\''`)}'`)
    .join(" ");
}

/** Sleeps `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Waits until `fn` returns a truthy value, polling every `everyMs`. */
export async function until<T>(
  fn: () => T | Promise<T>,
  timeoutMs: number,
  what: string,
  everyMs = 20,
): Promise<NonNullable<T>> {
  const end = performance.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (performance.now() > end) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    await sleep(everyMs);
  }
}

/** True if a process with this PID exists. */
export function alive(pid: number): boolean {
  try {
    Deno.kill(pid, "SIGCONT");
    return true;
  } catch {
    return false;
  }
}

/** True if `path` exists (any file type, sockets included). */
export function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** A running child process whose stdout+stderr are collected. */
export class Proc {
  readonly pid: number;
  readonly argv: readonly string[];
  readonly status: Promise<Deno.CommandStatus>;
  #child: Deno.ChildProcess;
  #out = "";
  #writer: WritableStreamDefaultWriter<Uint8Array> | null = null;
  #exited: Deno.CommandStatus | null = null;
  #pumps: Promise<void>;
  #waiters: Array<() => void> = [];

  private constructor(argv: readonly string[], child: Deno.ChildProcess, stdin: boolean) {
    this.argv = argv;
    this.#child = child;
    this.pid = child.pid;
    if (stdin) this.#writer = child.stdin.getWriter();
    const decoder = new TextDecoder();
    const pump = async (s: ReadableStream<Uint8Array>) => {
      try {
        for await (const chunk of s) {
          this.#out += decoder.decode(chunk, { stream: true });
          if (this.#out.length > 2 * OUTPUT_LIMIT) this.#out = this.#out.slice(-OUTPUT_LIMIT);
          for (const w of this.#waiters.splice(0)) w();
        }
      } catch {
        // The stream ends with the process.
      }
    };
    this.#pumps = Promise.all([pump(child.stdout), pump(child.stderr)]).then(() => {});
    this.status = child.status.then(async (s) => {
      this.#exited = s;
      await this.#pumps;
      for (const w of this.#waiters.splice(0)) w();
      return s;
    });
  }

  /**
   * Spawns `argv`. With `stdin: true` the child's stdin stays open as a pipe (DPDK's testpmd
   * exits when it closes), else it is /dev/null.
   */
  static spawn(
    argv: readonly string[],
    opts: { stdin?: boolean; env?: Record<string, string> } = {},
  ): Proc {
    const child = new Deno.Command(argv[0], {
      args: argv.slice(1),
      stdin: opts.stdin ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
      env: opts.env,
    }).spawn();
    return new Proc(argv, child, opts.stdin ?? false);
  }

  /** Everything the child printed so far (the last 256-512 KiB). */
  output(): string {
    return this.#out;
  }

  /** The exit status, or null while it runs. */
  exited(): Deno.CommandStatus | null {
    return this.#exited;
  }

  /** Writes to the child's stdin (ignored once it is closed). */
  async write(text: string): Promise<void> {
    if (!this.#writer) return;
    try {
      await this.#writer.write(new TextEncoder().encode(text));
    } catch {
      // The child is gone.
    }
  }

  /** Closes the child's stdin. */
  async closeStdin(): Promise<void> {
    const w = this.#writer;
    this.#writer = null;
    if (!w) return;
    try {
      await w.close();
    } catch {
      // Already closed.
    }
  }

  /** Waits until the output (from character `from` on) matches `re`, or the child exits. */
  async waitFor(re: RegExp, timeoutMs: number, from = 0): Promise<RegExpExecArray> {
    const end = performance.now() + timeoutMs;
    for (;;) {
      const m = re.exec(this.#out.slice(from));
      if (m) return m;
      if (this.#exited) {
        throw new Error(`${this.argv[0]} exited (${this.#exited.code}) before printing ${re}`);
      }
      const left = end - performance.now();
      if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for ${re}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.min(left, 200));
        this.#waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  /** Waits for the exit up to `timeoutMs`; null if it still runs. */
  async wait(timeoutMs: number): Promise<Deno.CommandStatus | null> {
    if (this.#exited) return this.#exited;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const r = await Promise.race([
      this.status,
      new Promise<null>((res) => (timer = setTimeout(() => res(null), timeoutMs))),
    ]);
    clearTimeout(timer);
    return r;
  }

  /**
   * Stops the child: closes stdin (testpmd's own clean exit), then SIGTERM after
   * `graceMs`, then SIGKILL. Always by this child's PID.
   */
  async stop(graceMs = 5_000): Promise<Deno.CommandStatus> {
    await this.closeStdin();
    if (await this.wait(graceMs)) return await this.status;
    this.#signal("SIGTERM");
    if (await this.wait(graceMs)) return await this.status;
    this.#signal("SIGKILL");
    return await this.status;
  }

  #signal(sig: Deno.Signal): void {
    if (this.#exited) return;
    try {
      this.#child.kill(sig);
    } catch {
      // Gone already.
    }
  }
}

/** Where DPDK keeps the runtime files of `--file-prefix prefix` (as its EAL computes it). */
export function dpdkRuntimeDir(prefix: string): string {
  const base = Deno.uid() === 0 ? "/var/run" : (Deno.env.get("XDG_RUNTIME_DIR") ?? "/tmp");
  return `${base}/dpdk/${prefix}`;
}

/** Removes a DPDK runtime directory of ours (by its unique prefix). */
export function removeDpdkRuntimeDir(prefix: string): void {
  if (!/^mvb-[\w-]+$/.test(prefix)) throw new Error(`not a benchmark prefix: ${prefix}`);
  try {
    Deno.removeSync(dpdkRuntimeDir(prefix), { recursive: true });
  } catch {
    // Not created.
  }
}

let prefixCounter = 0;

/** A `--file-prefix` unique to this harness process and call. */
export function uniquePrefix(role: string): string {
  return `mvb-${role}-${Deno.pid}-${++prefixCounter}`;
}
