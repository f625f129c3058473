/**
 * Every process the harness started: the live ones (stopped by PID when the harness is
 * interrupted) and the PIDs of all of them (reported, so a test can check none is left);
 * plus clean-ups (sockets, DPDK runtime directories) to run on interruption.
 * @module
 */

import type { Proc } from "./proc.ts";

const live = new Set<Proc>();
const started: number[] = [];
const cleanups = new Set<() => void | Promise<void>>();

/** Registers a freshly spawned process. */
export function track(p: Proc): Proc {
  live.add(p);
  started.push(p.pid);
  return p;
}

/** Records the PID of a process started by one of ours (a daemon's children), for the report. */
export function noteStarted(pid: number): void {
  if (!started.includes(pid)) started.push(pid);
}

/** Forgets a process that was stopped. */
export function untrack(p: Proc): void {
  live.delete(p);
}

/** Registers a clean-up for interruption; returns the function that unregisters it. */
export function onInterrupt(fn: () => void | Promise<void>): () => void {
  cleanups.add(fn);
  return () => cleanups.delete(fn);
}

/** PIDs of every process started so far. */
export function startedPids(): number[] {
  return [...started];
}

/** Stops every live process (by PID), then runs the registered clean-ups. */
export async function stopAll(): Promise<void> {
  await Promise.all([...live].map(async (p) => {
    await p.stop(2_000);
    live.delete(p);
  }));
  for (const fn of [...cleanups]) {
    cleanups.delete(fn);
    try {
      await fn();
    } catch {
      // Best effort.
    }
  }
}
