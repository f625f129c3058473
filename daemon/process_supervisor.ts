/**
 * Supervision of the root's child processes (api and dataplane).
 *
 * Each child is a `deno run` of its own module with its own permission flags. A child that
 * exits while the daemon runs is restarted one_for_one after a backoff (100 ms, doubling up to
 * 5 s, reset after the child stayed up for a while); past the restart intensity the root gives
 * up and exits non-zero, so the init system sees a daemon that cannot run.
 *
 * Every child gets a pipe as stdin whose other end only the root holds. If the root dies,
 * even by SIGKILL, the children read EOF and shut themselves down: no orphan keeps a vNIC
 * socket or the TUN device.
 * @module
 */

import type { Logger } from "./log.ts";

/** How to start one child process. */
export interface ProcessSpec {
  /** `api` or `dataplane`. */
  role: string;
  /** Arguments after the Deno executable: `run`, permission flags, module, flags. */
  args: string[];
  env: Record<string, string>;
}

/** Restart limits of {@link ProcessSupervisor}. */
export interface ProcessLimits {
  intensity: number;
  periodMs: number;
  backoffMs: number;
  maxBackoffMs: number;
  /** A child that ran this long resets its backoff. */
  stableMs: number;
  /** Time children get after SIGTERM before SIGKILL. */
  shutdownGraceMs: number;
}

/** Defaults: 10 restarts in 60 s; 100 ms backoff doubling to 5 s. */
export const DEFAULT_PROCESS_LIMITS: ProcessLimits = {
  intensity: 10,
  periodMs: 60_000,
  backoffMs: 100,
  maxBackoffMs: 5_000,
  stableMs: 10_000,
  shutdownGraceMs: 10_000,
};

interface Running {
  spec: ProcessSpec;
  child: Deno.ChildProcess | null;
  stdin: WritableStreamDefaultWriter<Uint8Array> | null;
  startedAt: number;
  restarts: number[];
  consecutive: number;
  timer: ReturnType<typeof setTimeout> | null;
}

/** Starts, watches and restarts the daemon's child processes. */
export class ProcessSupervisor {
  #log: Logger;
  #limits: ProcessLimits;
  #running = new Map<string, Running>();
  #shuttingDown = false;
  #onGiveUp: (reason: string) => void;
  #onStarted: (role: string, pid: number) => void;

  constructor(opts: {
    log: Logger;
    limits?: Partial<ProcessLimits>;
    onGiveUp: (reason: string) => void;
    onStarted?: (role: string, pid: number) => void;
  }) {
    this.#log = opts.log;
    this.#limits = { ...DEFAULT_PROCESS_LIMITS, ...opts.limits };
    this.#onGiveUp = opts.onGiveUp;
    this.#onStarted = opts.onStarted ?? (() => {});
  }

  /** PIDs of the children now running, by role. */
  pids(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [role, r] of this.#running) if (r.child) out[role] = r.child.pid;
    return out;
  }

  /** Starts a child and keeps it running. */
  start(spec: ProcessSpec): void {
    const r: Running = {
      spec,
      child: null,
      stdin: null,
      startedAt: 0,
      restarts: [],
      consecutive: 0,
      timer: null,
    };
    this.#running.set(spec.role, r);
    this.#spawn(r);
  }

  #spawn(r: Running): void {
    r.timer = null;
    if (this.#shuttingDown) return;
    const cmd = new Deno.Command(Deno.execPath(), {
      args: r.spec.args,
      env: r.spec.env,
      stdin: "piped",
      stdout: "inherit",
      stderr: "inherit",
    });
    let child: Deno.ChildProcess;
    try {
      child = cmd.spawn();
    } catch (e) {
      this.#log.error("cannot start child", { role: r.spec.role, error: e as Error });
      this.#exited(r, -1);
      return;
    }
    r.child = child;
    r.stdin = child.stdin.getWriter();
    r.startedAt = performance.now();
    this.#log.info("child started", { role: r.spec.role, pid: child.pid });
    this.#onStarted(r.spec.role, child.pid);
    child.status.then((st) => {
      if (r.child !== child) return;
      r.child = null;
      r.stdin?.releaseLock();
      r.stdin = null;
      this.#exited(r, st.code, st.signal ?? undefined);
    });
  }

  #exited(r: Running, code: number, signal?: string): void {
    if (this.#shuttingDown) return;
    const now = performance.now();
    const ranMs = r.startedAt ? now - r.startedAt : 0;
    if (ranMs >= this.#limits.stableMs) r.consecutive = 0;
    r.restarts = r.restarts.filter((t) => now - t < this.#limits.periodMs);
    r.restarts.push(now);
    if (r.restarts.length > this.#limits.intensity) {
      const reason =
        `${r.spec.role} exited ${r.restarts.length} times within ${this.#limits.periodMs} ms`;
      this.#log.error("restart intensity exceeded, giving up", { reason });
      this.#onGiveUp(reason);
      return;
    }
    const delay = Math.min(this.#limits.maxBackoffMs, this.#limits.backoffMs * 2 ** r.consecutive);
    r.consecutive++;
    this.#log.warn("child exited, restarting", {
      role: r.spec.role,
      code,
      signal: signal ?? "",
      ranMs: Math.round(ranMs),
      delayMs: delay,
    });
    r.timer = setTimeout(() => this.#spawn(r), delay);
  }

  /**
   * Stops every child: SIGTERM, then SIGKILL after the grace time. Children are stopped in the
   * reverse order of their start (the api before the dataplane), so nothing is asked of a
   * dataplane that is already gone.
   */
  async shutdown(): Promise<void> {
    this.#shuttingDown = true;
    const order = [...this.#running.values()].reverse();
    for (const r of order) {
      if (r.timer !== null) clearTimeout(r.timer);
      const child = r.child;
      if (!child) continue;
      try {
        child.kill("SIGTERM");
      } catch {
        // Exited meanwhile.
      }
      const timer = setTimeout(() => {
        this.#log.warn("child did not stop in time, killing", {
          role: r.spec.role,
          pid: child.pid,
        });
        try {
          child.kill("SIGKILL");
        } catch {
          // Exited meanwhile.
        }
      }, this.#limits.shutdownGraceMs);
      const st = await child.status;
      clearTimeout(timer);
      try {
        await r.stdin?.close();
      } catch {
        // The child closed its end first.
      }
      this.#log.info("child stopped", {
        role: r.spec.role,
        code: st.code,
        signal: st.signal ?? "",
      });
    }
  }
}

/**
 * Resolves when the parent process goes away: the child's stdin (a pipe only the root writes)
 * reaches EOF. Children call this and shut down when it resolves.
 */
export async function parentGone(): Promise<void> {
  const buf = new Uint8Array(256);
  try {
    while ((await Deno.stdin.read(buf)) !== null) {
      // The root never writes; anything read is ignored.
    }
  } catch {
    // A broken stdin means the same thing as EOF.
  }
}
