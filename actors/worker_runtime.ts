/**
 * The Worker side of an actor: receives its mailbox, runs its behaviour, answers calls.
 *
 * An actor module calls {@link runActor} once with its behaviour. Any exception escaping a
 * handler, a timer or a promise is a crash: the Worker reports it and the supervisor restarts
 * the actor from its child spec. State lives only inside the actor; the only way in is a
 * message.
 *
 * @example
 * ```ts
 * type CounterMsg = { type: "Add"; n: number } | { type: "Get" };
 * runActor<CounterMsg, { total: number }, null>({
 *   init: () => ({ total: 0 }),
 *   handle: (state, msg) => msg.type === "Add" ? (state.total += msg.n, undefined) : state.total,
 * });
 * ```
 * @module
 */

import { configureLogging, createLogger, type Logger } from "../daemon/log.ts";
import type { ActorMessage, FromActor, ToActor } from "./mailbox.ts";

/** What an actor's handlers can do besides answering. */
export interface ActorContext {
  readonly name: string;
  readonly log: Logger;
  /** Sends an unsolicited event to the supervisor side (for example a state report). */
  emit(event: unknown): void;
  /** True once a stop was requested; long-running loops check it. */
  readonly stopping: boolean;
}

/** How an actor behaves. */
export interface Behaviour<M extends ActorMessage, S, A> {
  /** Builds the state from the child spec's arguments. */
  init(args: A, ctx: ActorContext): S | Promise<S>;
  /** Handles one message; the return value answers a call (ignored for a cast). */
  handle(state: S, msg: M, ctx: ActorContext): unknown | Promise<unknown>;
  /** Releases what the actor holds before a clean stop. */
  terminate?(state: S, ctx: ActorContext): void | Promise<void>;
}

interface WorkerScope {
  postMessage(msg: FromActor): void;
  onmessage: ((e: MessageEvent<ToActor>) => void) | null;
  addEventListener(type: string, fn: (e: Event) => void): void;
  close(): void;
}

/** Runs `behaviour` as this Worker's actor. Call once at the top level of the actor module. */
export function runActor<M extends ActorMessage, S, A>(behaviour: Behaviour<M, S, A>): void {
  const scope = globalThis as unknown as WorkerScope;
  let state: S | undefined;
  let ready = false;
  let stopping = false;
  let ctx: ActorContext | undefined;
  // Messages are handled one at a time, in arrival order, even when handlers are async.
  let queue: Promise<void> = Promise.resolve();

  const crash = (error: unknown) => {
    const text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    ctx?.log.error("actor crashed", { error: text });
    scope.postMessage({ kind: "crashed", error: text });
    scope.close();
  };
  scope.addEventListener("error", (e) => {
    e.preventDefault();
    crash((e as ErrorEvent).error ?? (e as ErrorEvent).message);
  });
  scope.addEventListener("unhandledrejection", (e) => {
    e.preventDefault();
    crash((e as PromiseRejectionEvent).reason);
  });

  const run = (job: () => Promise<void>) => {
    queue = queue.then(job).catch(crash).finally(() => mailPending--);
  };

  scope.onmessage = (e: MessageEvent<ToActor>) => {
    const m = e.data as ToActor<M>;
    mailReceived++;
    mailPending++;
    switch (m.kind) {
      case "init":
        configureLogging(m.log);
        ctx = {
          name: m.name,
          log: createLogger(m.name),
          emit: (event) => scope.postMessage({ kind: "event", event }),
          get stopping() {
            return stopping;
          },
        };
        run(async () => {
          try {
            state = await behaviour.init(m.args as A, ctx!);
          } catch (err) {
            scope.postMessage({
              kind: "init_failed",
              error: (err as Error).message ?? String(err),
            });
            scope.close();
            return;
          }
          ready = true;
          scope.postMessage({ kind: "ready" });
        });
        return;
      case "cast":
        run(async () => {
          if (ready) await behaviour.handle(state as S, m.msg, ctx!);
        });
        return;
      case "call":
        run(async () => {
          if (!ready) {
            scope.postMessage({ kind: "reply", id: m.id, ok: false, error: "actor not ready" });
            return;
          }
          let value: unknown;
          try {
            value = await behaviour.handle(state as S, m.msg, ctx!);
          } catch (err) {
            // A failed call answers the caller; only escapes outside a call are crashes.
            scope.postMessage({ kind: "reply", id: m.id, ok: false, error: errorText(err) });
            return;
          }
          scope.postMessage({ kind: "reply", id: m.id, ok: true, value });
        });
        return;
      case "stop":
        stopping = true;
        run(async () => {
          if (ready) await behaviour.terminate?.(state as S, ctx!);
          scope.postMessage({ kind: "stopped" });
          scope.close();
        });
        return;
    }
  };
}

// Messages the mailbox received, and those whose handling has not finished (MailboxPacer).
let mailReceived = 0;
let mailPending = 0;

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Yields to the event loop so that posted messages and timers run, for actors whose loop
 * blocks in native calls between yields. A MessageChannel message is a macrotask without the
 * 4 ms clamp of nested `setTimeout(0)`, but a stream of them starves the Worker's mailbox; so
 * at least every {@link MAILBOX_YIELD_MS} the loop yields through a timer, which is not
 * clamped either because the port tasks break the timer nesting.
 */
export function yieldToMailbox(): Promise<void> {
  const now = performance.now();
  if (now - lastTimerYield >= MAILBOX_YIELD_MS) {
    lastTimerYield = now;
    return new Promise((r) => setTimeout(r, 0));
  }
  return new Promise((r) => {
    yieldWaiter = r;
    yieldPort().postMessage(null);
  });
}

const MAILBOX_YIELD_MS = 20;
/** Longest a {@link MailboxPacer} loop goes without a timer yield (each costs about 2 ms of
 * sleep here): timers nobody's mail set (none in a vNIC Worker today) wait at most this. */
const TIMER_YIELD_MS = 200;
/** Turns of the event loop a mail wake is given to bring its message: a message is posted before
 * its wake, but Deno may hand a Worker one message per turn. */
const WAKE_TURNS = 4;
/** When a wake brought no message after all its turns (it may have been read already, or not
 * be deliverable yet), the loop looks again after these waits before it blocks for good. */
const RECHECK_MS = [10, 100, 1000];

/**
 * Decides when a loop that blocks in native code gives its event loop a turn, so that it does
 * not pay for one per iteration while it only moves frames. It yields
 * - after its poll reported a mail wake ({@link woken}): MessageChannel turns until no new
 *   message arrived for {@link WAKE_TURNS} turns and every handler finished, then one timer
 *   turn, so that a timer a handler set (a fault injection) runs before the loop blocks again;
 * - at least every {@link MAILBOX_YIELD_MS} (MessageChannel) and {@link TIMER_YIELD_MS}
 *   (timer) while it keeps running: a safety net for timers and a missed wake.
 *
 * @example
 * ```ts
 * const pacer = new MailboxPacer();
 * for (;;) {
 *   const ev = dev.poll(pacer.pollTimeout(-1));
 *   if (ev & DeviceEvents.WAKE) pacer.woken();
 *   // … move frames …
 *   const turn = pacer.turn();
 *   if (turn) await turn;
 * }
 * ```
 */
export class MailboxPacer {
  #turnsOwed = 0;
  #timerOwed = false;
  /** A wake was seen and no message has arrived since. */
  #awaitingMail = false;
  /** Next entry of {@link RECHECK_MS}; its length when no recheck is pending. */
  #recheck = RECHECK_MS.length;
  #seen = mailReceived;
  #lastTurn = performance.now();
  #lastTimer = performance.now();

  /** The loop's poll reported a mail wake: mail was posted before it. */
  woken(): void {
    this.#turnsOwed = WAKE_TURNS;
    this.#timerOwed = true;
    this.#awaitingMail = true;
    this.#recheck = RECHECK_MS.length;
  }

  /** How long the loop's poll may wait, given when the loop itself has something due
   * (`idleMs`, -1: nothing): 0 while mail is on its way or being handled. */
  pollTimeout(idleMs: number): number {
    if (this.#turnsOwed > 0 || this.#timerOwed || mailPending > 0) return 0;
    if (this.#recheck >= RECHECK_MS.length) return idleMs;
    const ms = RECHECK_MS[this.#recheck++];
    this.#timerOwed = true;
    return idleMs < 0 ? ms : Math.min(ms, idleMs);
  }

  /** A turn of the event loop when one is owed or due, else null (no await needed). */
  turn(): Promise<void> | null {
    const now = performance.now();
    if (this.#turnsOwed > 0 || mailPending > 0 || now - this.#lastTurn >= MAILBOX_YIELD_MS) {
      return this.#take(false);
    }
    if (this.#timerOwed || now - this.#lastTimer >= TIMER_YIELD_MS) return this.#take(true);
    return null;
  }

  async #take(timer: boolean): Promise<void> {
    if (timer) {
      this.#timerOwed = false;
      await new Promise((r) => setTimeout(r, 0));
      this.#lastTimer = performance.now();
    } else {
      await new Promise<void>((r) => {
        yieldWaiter = r;
        yieldPort().postMessage(null);
      });
    }
    this.#lastTurn = performance.now();
    if (mailReceived !== this.#seen) {
      // More may follow one per turn; and what the handlers set runs on the timer turn.
      this.#seen = mailReceived;
      this.#turnsOwed = WAKE_TURNS;
      this.#timerOwed = true;
      this.#awaitingMail = false;
      this.#recheck = RECHECK_MS.length;
    } else if (this.#turnsOwed > 0) {
      this.#turnsOwed--;
    } else if (timer && this.#awaitingMail) {
      this.#awaitingMail = false;
      this.#recheck = 0;
    }
  }
}

let yieldChannel: MessageChannel | null = null;
let yieldWaiter: (() => void) | null = null;
let lastTimerYield = 0;

/** Made on first use: an open port would keep any importer's event loop alive. */
function yieldPort(): MessagePort {
  if (!yieldChannel) {
    yieldChannel = new MessageChannel();
    yieldChannel.port1.onmessage = () => {
      const w = yieldWaiter;
      yieldWaiter = null;
      w?.();
    };
  }
  return yieldChannel.port2;
}
