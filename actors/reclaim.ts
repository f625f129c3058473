/**
 * Returns the memory of deleted vNICs' frame rings to the system.
 *
 * A ring is a SharedArrayBuffer: its memory is freed only once every V8 isolate that holds a
 * view of it (the fleet's, and the Worker of each peer that routed to it) has collected that
 * view in a full garbage collection. A vNIC Worker spends its life blocked in a native poll and
 * allocates little on the JS heap, so V8 never starts a full collection there on its own: the
 * rings of deleted peers stayed mapped for good (measured: the dataplane kept one 1.5 MiB
 * mapping per deleted vNIC under churn, about 33 KiB resident each).
 *
 * So an actor that drops references to rings asks for one full collection, a little later and
 * at most once per {@link RECLAIM_MIN_INTERVAL_MS}: a burst of deletions costs each Worker one
 * collection (a few milliseconds on a heap of a few MiB), not one per deletion. The collector
 * is reachable only when the process was started with `--v8-flags=--expose-gc` (the daemon
 * starts the dataplane so); elsewhere, for example in unit tests, this does nothing.
 * @module
 */

/** Delay from the first request to the collection, so that a burst of changes shares it. */
export const RECLAIM_DELAY_MS = 1_000;
/** Least time between two collections of one isolate. */
export const RECLAIM_MIN_INTERVAL_MS = 10_000;

/** The engine's collector, when the process exposes it. */
function engineCollector(): (() => void) | null {
  const gc = (globalThis as { gc?: unknown }).gc;
  return typeof gc === "function" ? gc as () => void : null;
}

/** Options of a {@link Reclaimer}. */
export interface ReclaimerOptions {
  /** The collector; default: the engine's, when the process exposes it. */
  collector?: () => (() => void) | null;
  delayMs?: number;
  minIntervalMs?: number;
  /**
   * Run a due collection from a timer (default). An actor whose loop blocks in native code,
   * where timers fire only when it takes a turn of its event loop, passes false and calls
   * {@link Reclaimer.runDue} from its loop, waiting at most {@link Reclaimer.dueIn}.
   */
  timer?: boolean;
}

/** Schedules full collections of one isolate: coalesced, delayed and rate-limited. */
export class Reclaimer {
  readonly #collector: () => (() => void) | null;
  readonly #delayMs: number;
  readonly #minIntervalMs: number;
  readonly #useTimer: boolean;
  /** When the requested collection is due (performance.now() time), or null. */
  #dueAt: number | null = null;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #lastRun = -Infinity;
  /** Collections run so far. */
  runs = 0;

  constructor(opts: ReclaimerOptions = {}) {
    this.#collector = opts.collector ?? engineCollector;
    this.#delayMs = opts.delayMs ?? RECLAIM_DELAY_MS;
    this.#minIntervalMs = opts.minIntervalMs ?? RECLAIM_MIN_INTERVAL_MS;
    this.#useTimer = opts.timer ?? true;
  }

  /**
   * Requests a full collection because references to shared buffers were dropped. Returns
   * true when one is (or already was) due, false when there is no collector.
   */
  request(now = performance.now()): boolean {
    if (!this.#collector()) return false;
    if (this.#dueAt !== null) return true;
    this.#dueAt = Math.max(now + this.#delayMs, this.#lastRun + this.#minIntervalMs);
    if (this.#useTimer) {
      // The timer's firing is the due time: a timer may fire a fraction of a millisecond before
      // the clock reaches a fractional due time, and a check against the clock would then
      // leave the request pending with no timer, so that no collection ever ran again.
      this.#timer = setTimeout(() => this.#run(performance.now()), this.#dueAt - now);
      // A scheduled collection must never keep a stopping Worker or process alive.
      Deno.unrefTimer(this.#timer);
    }
    return true;
  }

  /**
   * Milliseconds until the requested collection is due (0: now), or -1 when none is. Called on
   * every loop iteration: the clock is read only while a collection is requested.
   */
  dueIn(now?: number): number {
    if (this.#dueAt === null) return -1;
    return Math.max(0, Math.ceil(this.#dueAt - (now ?? performance.now())));
  }

  /** Runs the requested collection if it is due; true when it ran. Cheap when none is. */
  runDue(now?: number): boolean {
    if (this.#dueAt === null) return false;
    if (now === undefined) now = performance.now();
    if (now < this.#dueAt) return false;
    return this.#run(now);
  }

  #run(now: number): boolean {
    this.cancel();
    const gc = this.#collector();
    if (!gc) return false;
    this.#lastRun = now;
    this.runs++;
    gc();
    return true;
  }

  /** True while a collection is requested and has not run. */
  get pending(): boolean {
    return this.#dueAt !== null;
  }

  /** Forgets a requested collection. */
  cancel(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    this.#dueAt = null;
  }
}

const isolateReclaimer = new Reclaimer();

/**
 * Requests a collection of this isolate from a timer (see {@link Reclaimer.request}): for
 * threads whose event loop runs freely (the fleet, the TUN actor).
 */
export function reclaimDroppedBuffers(): boolean {
  return isolateReclaimer.request();
}
