/**
 * An OTP-style supervisor for actors (and for other supervisors).
 *
 * Strategy one_for_one: a child that crashes is restarted alone; its siblings do not notice.
 * Restart intensity: more than `intensity` restarts within `periodMs` means the fault is not
 * transient, so the supervisor stops all its children and escalates to its parent (the
 * top-level supervisor's parent is the process: it exits and the root restarts it). Restarts
 * after the first within a period wait a growing backoff.
 *
 * Supervisors run on the main thread of the dataplane; each actor runs in its own Worker.
 * @module
 */

import type { Logger } from "../daemon/log.ts";
import type { ActorMessage } from "./mailbox.ts";
import { ActorRef, type ExitReason, type SpawnOptions } from "./actor_ref.ts";

/** `permanent`: always restarted; `transient`: only after a crash; `temporary`: never. */
export type RestartPolicy = "permanent" | "transient" | "temporary";

/** How to (re)start one actor child. Called again on every restart, so it reads fresh state. */
export interface ActorChildSpec {
  id: string;
  restart: RestartPolicy;
  spawn: () => SpawnOptions;
  /** Told about every (re)start, with the new ref. */
  onStarted?: (ref: ActorRef<ActorMessage>) => void;
}

/** Restart intensity and backoff of a supervisor. */
export interface SupervisorOptions {
  name: string;
  log: Logger;
  /** Restarts allowed within `periodMs` before escalating. */
  intensity: number;
  periodMs: number;
  /** Delay of the second restart within a period; doubles after, up to `maxBackoffMs`. */
  backoffMs: number;
  maxBackoffMs: number;
  /** Called once when the intensity is exceeded, after all children were stopped. */
  onEscalate: (reason: string) => void;
}

/** Defaults: 5 restarts in 10 s, first restart at once, then 50 ms doubling up to 1 s. */
export const DEFAULT_INTENSITY = {
  intensity: 5,
  periodMs: 10_000,
  backoffMs: 50,
  maxBackoffMs: 1_000,
};

interface ChildState {
  spec: ActorChildSpec;
  ref: ActorRef<ActorMessage> | null;
  restarts: number[];
  timer: ReturnType<typeof setTimeout> | null;
}

/** Supervises a dynamic set of actor children, one_for_one. */
export class Supervisor {
  #opts: SupervisorOptions;
  #children = new Map<string, ChildState>();
  #escalated = false;
  #stopping = false;

  constructor(opts: SupervisorOptions) {
    this.#opts = opts;
  }

  get name(): string {
    return this.#opts.name;
  }

  /** True once the supervisor gave up (intensity exceeded) or was stopped. */
  get down(): boolean {
    return this.#escalated || this.#stopping;
  }

  /** The running ref of a child, if any. */
  ref<M extends ActorMessage>(id: string): ActorRef<M> | null {
    return (this.#children.get(id)?.ref as ActorRef<M> | undefined) ?? null;
  }

  /** Child ids. */
  ids(): string[] {
    return [...this.#children.keys()];
  }

  /** Starts a child; fails if its first start fails. */
  async startChild<M extends ActorMessage>(spec: ActorChildSpec): Promise<ActorRef<M>> {
    if (this.down) throw new Error(`supervisor ${this.name} is down`);
    if (this.#children.has(spec.id)) {
      throw new Error(`supervisor ${this.name} already has a child ${spec.id}`);
    }
    const child: ChildState = { spec, ref: null, restarts: [], timer: null };
    this.#children.set(spec.id, child);
    try {
      await this.#start(child);
    } catch (e) {
      this.#children.delete(spec.id);
      throw e;
    }
    return child.ref as unknown as ActorRef<M>;
  }

  /** Stops a child cleanly and forgets it. */
  async stopChild(id: string): Promise<void> {
    const child = this.#children.get(id);
    if (!child) return;
    this.#children.delete(id);
    if (child.timer !== null) clearTimeout(child.timer);
    await child.ref?.stop();
  }

  /** Stops every child (in reverse start order) and the supervisor itself. */
  async stop(): Promise<void> {
    this.#stopping = true;
    const ids = [...this.#children.keys()].reverse();
    for (const id of ids) await this.stopChild(id);
  }

  async #start(child: ChildState): Promise<void> {
    const opts = child.spec.spawn();
    const ref = await ActorRef.spawn(opts);
    child.ref = ref;
    ref.onExit((reason) => this.#onExit(child, ref, reason));
    child.spec.onStarted?.(ref);
  }

  #onExit(child: ChildState, ref: ActorRef<ActorMessage>, reason: ExitReason): void {
    if (child.ref !== ref || this.#children.get(child.spec.id) !== child || this.down) return;
    child.ref = null;
    this.#afterExit(child, reason);
  }

  #afterExit(child: ChildState, reason: ExitReason): void {
    const { log } = this.#opts;
    const policy = child.spec.restart;
    if (policy === "temporary" || (policy === "transient" && reason.kind === "normal")) {
      this.#children.delete(child.spec.id);
      log.info("child ended", { child: child.spec.id, reason: reason.kind });
      return;
    }
    const now = performance.now();
    child.restarts = child.restarts.filter((t) => now - t < this.#opts.periodMs);
    child.restarts.push(now);
    if (child.restarts.length > this.#opts.intensity) {
      this.#escalate(
        `child ${child.spec.id} exceeded ${this.#opts.intensity} restarts in ${this.#opts.periodMs} ms`,
      );
      return;
    }
    const n = child.restarts.length;
    const delay = n <= 1
      ? 0
      : Math.min(this.#opts.maxBackoffMs, this.#opts.backoffMs * 2 ** (n - 2));
    log.warn("child exited, restarting", {
      child: child.spec.id,
      error: reason.kind === "crash" ? reason.error : "normal exit",
      restart: n,
      delayMs: delay,
    });
    child.timer = setTimeout(() => this.#restart(child), delay);
  }

  async #restart(child: ChildState): Promise<void> {
    child.timer = null;
    if (this.#children.get(child.spec.id) !== child || this.down) return;
    try {
      await this.#start(child);
    } catch (e) {
      // A failed restart counts as another crash of the same child.
      this.#afterExit(child, { kind: "crash", error: (e as Error).message });
    }
  }

  #escalate(reason: string): void {
    if (this.#escalated) return;
    this.#escalated = true;
    this.#opts.log.error("restart intensity exceeded, escalating", { reason });
    const stops = [...this.#children.values()].map((c) => {
      if (c.timer !== null) clearTimeout(c.timer);
      return c.ref?.stop();
    });
    this.#children.clear();
    Promise.allSettled(stops).then(() => this.#opts.onEscalate(reason));
  }
}
