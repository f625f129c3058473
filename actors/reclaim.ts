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

/** Schedules full collections of one isolate: coalesced, delayed and rate-limited. */
export class Reclaimer {
  #pending: ReturnType<typeof setTimeout> | null = null;
  #lastRun = -Infinity;
  /** Collections run so far. */
  runs = 0;

  constructor(
    private readonly collector: () => (() => void) | null = engineCollector,
    private readonly delayMs = RECLAIM_DELAY_MS,
    private readonly minIntervalMs = RECLAIM_MIN_INTERVAL_MS,
  ) {}

  /**
   * Requests a full collection because references to shared buffers were dropped. Returns
   * true when one is (or already was) scheduled, false when there is no collector.
   */
  request(): boolean {
    const gc = this.collector();
    if (!gc) return false;
    if (this.#pending !== null) return true;
    const wait = Math.max(this.delayMs, this.#lastRun + this.minIntervalMs - performance.now());
    this.#pending = setTimeout(() => {
      this.#pending = null;
      this.#lastRun = performance.now();
      this.runs++;
      gc();
    }, wait);
    // A scheduled collection must never keep a stopping Worker or process alive.
    Deno.unrefTimer(this.#pending);
    return true;
  }

  /** True while a collection is scheduled. */
  get pending(): boolean {
    return this.#pending !== null;
  }

  /** Cancels a scheduled collection. */
  cancel(): void {
    if (this.#pending !== null) clearTimeout(this.#pending);
    this.#pending = null;
  }
}

const isolateReclaimer = new Reclaimer();

/** Requests a collection of this isolate (see {@link Reclaimer.request}). */
export function reclaimDroppedBuffers(): boolean {
  return isolateReclaimer.request();
}
