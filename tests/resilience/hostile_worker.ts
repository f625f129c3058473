/**
 * A Worker that plays the hostile VMM: it runs {@link hostileRound} back to back against one
 * vNIC socket for a bounded time, so that its blocking socket calls never stall the good
 * peers, which run in the test's own thread.
 *
 * In:  { nic: HostileNic, durationMs }
 * Out: { rounds, tally } once the time is up
 * @module
 */

import { type HostileNic, hostileRound, type RoundTally } from "./hostile_frontend.ts";

interface Scope {
  postMessage(m: unknown): void;
  onmessage: ((e: MessageEvent<{ nic: HostileNic; durationMs: number }>) => void) | null;
}

const scope = globalThis as unknown as Scope;

scope.onmessage = (e) => {
  const { nic, durationMs } = e.data;
  const tally: RoundTally = { sent: {}, refused: {} };
  const end = performance.now() + durationMs;
  let rounds = 0;
  while (performance.now() < end) {
    hostileRound(nic, tally);
    rounds++;
  }
  scope.postMessage({ rounds, tally });
};
