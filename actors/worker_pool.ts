/**
 * A small pool of pre-started actor Workers of one module.
 *
 * Starting a Worker (a V8 isolate, then the actor module's whole graph) takes 50-120 ms here,
 * most of a vNIC's start. `new Worker(url)` does that work in the background, before any
 * message: the pool keeps a few Workers that have loaded their module and not yet received
 * `init`, and {@link WorkerPool.take} hands one out at once. The pool then refills itself one
 * Worker at a time, so that refilling never competes with a burst of starts for more than one
 * core's worth of module loading.
 *
 * A pool Worker is warm once it answered a probe: a `call` posted before `init`, which
 * `runActor` answers with "actor not ready" as soon as the module has run (and not before,
 * since the module installs the mailbox). A pool Worker that dies while idle (its module threw,
 * or it crashed) is dropped and replaced; a refill that keeps failing backs off.
 * @module
 */

import type { Logger } from "../daemon/log.ts";
import type { FromActor, ToActor } from "./mailbox.ts";

/** Options of a {@link WorkerPool}. */
export interface WorkerPoolOptions {
  /** URL of the actor module, which calls `runActor`. */
  module: URL;
  /** Idle Workers kept (warm or loading). */
  size: number;
  /** Prefix of the pool Workers' names (a taken Worker reports its actor's name after `init`). */
  name: string;
  log: Logger;
  /** Time a pool Worker may take to load its module before it is discarded. */
  loadTimeoutMs?: number;
}

/** Counters of a pool, for logs and tests. */
export interface WorkerPoolStats {
  /** Workers the pool started to keep idle. */
  started: number;
  /** Workers handed out that had loaded their module. */
  takenWarm: number;
  /** Workers handed out that were still loading. */
  takenLoading: number;
  /** Workers started on the spot because the pool was empty (or stopped). */
  startedOnDemand: number;
  /** Idle Workers that died, failed to load or loaded too slowly. */
  lost: number;
  /** Idle Workers now held (warm or loading). */
  idle: number;
  /** Idle Workers now held that loaded their module. */
  warm: number;
}

/**
 * Correlation id of the probe call. ActorRef numbers its calls from 1, so a probe answer that
 * reaches the actor's ref (a Worker taken while still loading) matches no call and is ignored.
 */
const PROBE_CALL_ID = 0;
const PROBE_MSG_TYPE = "PoolProbe";
const DEFAULT_LOAD_TIMEOUT_MS = 30_000;
/** Delay of the second refill after a lost Worker; doubles on each further loss. */
const REFILL_BACKOFF_MS = 100;
const REFILL_MAX_BACKOFF_MS = 5_000;

interface Member {
  worker: Worker;
  warm: boolean;
  timer: ReturnType<typeof setTimeout> | null;
}

/** Keeps up to `size` idle Workers of one actor module ready to receive `init`. */
export class WorkerPool {
  #opts: WorkerPoolOptions;
  #members: Member[] = [];
  #seq = 0;
  #stopped = false;
  /** Losses in a row without a Worker that became warm. */
  #failures = 0;
  #refillTimer: ReturnType<typeof setTimeout> | null = null;
  #stats = { started: 0, takenWarm: 0, takenLoading: 0, startedOnDemand: 0, lost: 0 };

  constructor(opts: WorkerPoolOptions) {
    if (!Number.isInteger(opts.size) || opts.size < 0) {
      throw new RangeError(`WorkerPool ${opts.name}: size ${opts.size} is not a count`);
    }
    this.#opts = opts;
    this.#refill();
  }

  /** The actor module this pool starts. */
  get module(): URL {
    return this.#opts.module;
  }

  /** Counters and the current number of idle Workers. */
  stats(): WorkerPoolStats {
    return {
      ...this.#stats,
      idle: this.#members.length,
      warm: this.#members.filter((m) => m.warm).length,
    };
  }

  /**
   * A Worker of the pool's module that has received no message but the probe: a warm one if
   * any, else the one furthest in loading, else a new one named `name`. The caller owns it
   * (its handlers, its `init`, its termination).
   */
  take(name: string): Worker {
    let i = this.#members.findIndex((m) => m.warm);
    if (i < 0 && this.#members.length > 0) i = 0;
    if (i < 0) {
      this.#stats.startedOnDemand++;
      this.#refill();
      return new Worker(this.#opts.module.href, { type: "module", name });
    }
    const [m] = this.#members.splice(i, 1);
    if (m.timer !== null) clearTimeout(m.timer);
    m.worker.onmessage = null;
    m.worker.onerror = null;
    if (m.warm) this.#stats.takenWarm++;
    else this.#stats.takenLoading++;
    this.#refill();
    return m.worker;
  }

  /** Terminates every idle Worker and stops refilling; later takes start Workers on demand. */
  stop(): void {
    this.#stopped = true;
    if (this.#refillTimer !== null) clearTimeout(this.#refillTimer);
    this.#refillTimer = null;
    for (const m of this.#members) this.#discard(m);
    this.#members = [];
  }

  /** Starts one more Worker if the pool is short and none is loading (one at a time). */
  #refill(): void {
    if (this.#stopped || this.#refillTimer !== null) return;
    if (this.#members.length >= this.#opts.size) return;
    if (this.#members.some((m) => !m.warm)) return;
    const delay = this.#failures === 0
      ? 0
      : Math.min(REFILL_MAX_BACKOFF_MS, REFILL_BACKOFF_MS * 2 ** (this.#failures - 1));
    if (delay === 0) {
      this.#startMember();
      return;
    }
    this.#refillTimer = setTimeout(() => {
      this.#refillTimer = null;
      this.#startMember();
    }, delay);
  }

  #startMember(): void {
    if (this.#stopped || this.#members.length >= this.#opts.size) return;
    const name = `${this.#opts.name}#${++this.#seq}`;
    const worker = new Worker(this.#opts.module.href, { type: "module", name });
    const m: Member = { worker, warm: false, timer: null };
    this.#members.push(m);
    this.#stats.started++;
    const loadTimeoutMs = this.#opts.loadTimeoutMs ?? DEFAULT_LOAD_TIMEOUT_MS;
    m.timer = setTimeout(
      () => this.#lose(m, `did not load within ${loadTimeoutMs} ms`),
      loadTimeoutMs,
    );
    worker.onmessage = (e: MessageEvent<FromActor>) => {
      const msg = e.data;
      if (msg.kind === "reply" && msg.id === PROBE_CALL_ID && !m.warm) {
        m.warm = true;
        if (m.timer !== null) clearTimeout(m.timer);
        m.timer = null;
        this.#failures = 0;
        this.#refill();
      } else if (msg.kind === "crashed") {
        this.#lose(m, `crashed while idle: ${msg.error}`);
      }
    };
    worker.onerror = (e: ErrorEvent) => {
      // An idle Worker's error must not reach (and kill) the dataplane's main thread.
      e.preventDefault();
      this.#lose(m, `failed while idle: ${e.message || String(e.error)}`);
    };
    const probe: ToActor = { kind: "call", id: PROBE_CALL_ID, msg: { type: PROBE_MSG_TYPE } };
    worker.postMessage(probe);
  }

  #lose(m: Member, why: string): void {
    const i = this.#members.indexOf(m);
    if (i < 0) return;
    this.#members.splice(i, 1);
    this.#discard(m);
    this.#stats.lost++;
    this.#failures++;
    this.#opts.log.warn("pool Worker lost, replacing it", { pool: this.#opts.name, why });
    this.#refill();
  }

  #discard(m: Member): void {
    if (m.timer !== null) clearTimeout(m.timer);
    m.timer = null;
    m.worker.onmessage = null;
    m.worker.onerror = null;
    m.worker.terminate();
  }
}
