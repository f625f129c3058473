/**
 * The main-thread handle of one actor running in its own Worker.
 *
 * `cast` posts a message; `call` posts it with a correlation id and waits for the answer or a
 * timeout. The ref notices a crash (the actor's own report, an error event, or a Worker that
 * died) and tells its supervisor through `onExit`.
 * @module
 */

import { loggingSettings } from "../daemon/log.ts";
import type { ActorMessage, FromActor, ToActor } from "./mailbox.ts";
import type { WorkerPool } from "./worker_pool.ts";

/** Why an actor ended. `normal` is a requested stop. */
export type ExitReason = { kind: "normal" } | { kind: "crash"; error: string };

/** A call that got no answer in time. */
export class CallTimeout extends Error {
  override name = "CallTimeout";
}

/** The actor answered a call with an error, or is gone. */
export class CallFailed extends Error {
  override name = "CallFailed";
}

/** How to start one actor Worker. */
export interface SpawnOptions {
  /** Full name, used in every log line of the actor (e.g. `dataplane/net:blue/vnic:web-1`). */
  name: string;
  /** URL of the actor module, which calls `runActor`. */
  module: URL;
  /** Structured-cloneable arguments for the actor's `init`. */
  args: unknown;
  /**
   * Wakes the actor's Worker if it may be blocked in native code (writes its wake eventfd).
   * Called after every message post and on stop, so mail is read even mid-`epoll_wait`.
   */
  wake?: () => void;
  /** Unsolicited events from the actor. */
  onEvent?: (event: unknown) => void;
  /** Time `init` may take. */
  initTimeoutMs?: number;
  /** Pre-started Workers of `module`: the actor starts in a pool Worker when one is there. */
  pool?: WorkerPool;
}

const DEFAULT_CALL_TIMEOUT_MS = 5_000;
const DEFAULT_INIT_TIMEOUT_MS = 10_000;
/** Time a stopping actor gets to release its resources before its Worker is terminated. */
export const STOP_GRACE_MS = 2_000;

interface PendingCall {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

/** A running actor. */
export class ActorRef<M extends ActorMessage> {
  readonly name: string;
  #worker: Worker;
  #opts: SpawnOptions;
  #nextId = 1;
  #calls = new Map<number, PendingCall>();
  #exited = false;
  #exitListeners: Array<(r: ExitReason) => void> = [];
  #stopped = Promise.withResolvers<void>();
  #stopping = false;

  private constructor(opts: SpawnOptions) {
    this.name = opts.name;
    this.#opts = opts;
    if (opts.pool && opts.pool.module.href !== opts.module.href) {
      throw new Error(
        `actor ${opts.name}: pool of ${opts.pool.module.href} cannot start ${opts.module.href}`,
      );
    }
    this.#worker = opts.pool?.take(opts.name) ??
      new Worker(opts.module.href, { type: "module", name: opts.name });
  }

  /** Starts the Worker and waits until the actor's `init` completed. */
  static async spawn<M extends ActorMessage>(opts: SpawnOptions): Promise<ActorRef<M>> {
    const ref = new ActorRef<M>(opts);
    const ready = Promise.withResolvers<void>();
    ref.#worker.onmessage = (e: MessageEvent<FromActor>) => ref.#onMessage(e.data, ready);
    ref.#worker.onerror = (e: ErrorEvent) => {
      // Never let an actor's error propagate to (and kill) the supervising thread.
      e.preventDefault();
      ref.#exit({ kind: "crash", error: e.message || String(e.error) });
      ready.reject(new Error(`actor ${opts.name} failed to start: ${e.message}`));
    };
    ref.#post({ kind: "init", name: opts.name, args: opts.args, log: loggingSettings() });
    const timeoutMs = opts.initTimeoutMs ?? DEFAULT_INIT_TIMEOUT_MS;
    const timer = setTimeout(
      () => ready.reject(new Error(`actor ${opts.name} did not start within ${timeoutMs} ms`)),
      timeoutMs,
    );
    try {
      await ready.promise;
    } catch (e) {
      ref.#terminate();
      throw e;
    } finally {
      clearTimeout(timer);
    }
    return ref;
  }

  /** True once the actor has stopped or crashed. */
  get exited(): boolean {
    return this.#exited;
  }

  /** Registers a listener for the actor's end. */
  onExit(fn: (reason: ExitReason) => void): void {
    this.#exitListeners.push(fn);
  }

  /** Sends a message without waiting. */
  cast(msg: M): void {
    if (this.#exited) return;
    this.#post({ kind: "cast", msg });
  }

  /** Sends a message and waits for the actor's answer. */
  call<R = unknown>(msg: M, timeoutMs = DEFAULT_CALL_TIMEOUT_MS): Promise<R> {
    if (this.#exited) return Promise.reject(new CallFailed(`actor ${this.name} is not running`));
    const id = this.#nextId++;
    return new Promise<R>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#calls.delete(id);
        reject(new CallTimeout(`${this.name}: ${msg.type} got no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#calls.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      this.#post({ kind: "call", id, msg });
    });
  }

  /** Asks the actor to stop, then terminates its Worker if it does not within the grace time. */
  async stop(graceMs = STOP_GRACE_MS): Promise<void> {
    if (this.#exited) return;
    this.#stopping = true;
    this.#post({ kind: "stop" });
    const timer = setTimeout(() => this.#terminate(), graceMs);
    await this.#stopped.promise;
    clearTimeout(timer);
  }

  /** Terminates the Worker at once, as a crash would (used by fault-injection tests). */
  kill(): void {
    this.#terminate({ kind: "crash", error: "killed" });
  }

  #post(m: ToActor<M>): void {
    this.#worker.postMessage(m);
    this.#opts.wake?.();
  }

  #onMessage(m: FromActor, ready: PromiseWithResolvers<void>): void {
    switch (m.kind) {
      case "ready":
        ready.resolve();
        return;
      case "init_failed":
        ready.reject(new Error(`actor ${this.name} failed to start: ${m.error}`));
        return;
      case "reply": {
        const c = this.#calls.get(m.id);
        if (!c) return;
        this.#calls.delete(m.id);
        clearTimeout(c.timer);
        if (m.ok) c.resolve(m.value);
        else c.reject(new CallFailed(m.error));
        return;
      }
      case "event":
        this.#opts.onEvent?.(m.event);
        return;
      case "crashed":
        this.#terminate({ kind: "crash", error: m.error });
        return;
      case "stopped":
        this.#terminate({ kind: "normal" });
        return;
    }
  }

  #terminate(reason?: ExitReason): void {
    this.#opts.wake?.();
    this.#worker.terminate();
    this.#exit(
      reason ?? (this.#stopping ? { kind: "normal" } : { kind: "crash", error: "terminated" }),
    );
  }

  #exit(reason: ExitReason): void {
    if (this.#exited) return;
    this.#exited = true;
    for (const [, c] of this.#calls) {
      clearTimeout(c.timer);
      c.reject(new CallFailed(`actor ${this.name} exited before answering`));
    }
    this.#calls.clear();
    this.#stopped.resolve();
    for (const fn of this.#exitListeners) fn(reason);
  }
}
