/**
 * Shared by the resilience tests with QEMU guests: a ping that runs in the guest's foreground
 * while the host watches its replies arrive on the serial console (so every reply gets a host
 * timestamp, and an outage is measured on the host's clock), and commands in the network
 * namespace a test daemon runs in.
 * @module
 */

import type { Guest } from "../helpers/guest.ts";
import { sleep, until } from "../helpers/wait.ts";

/** One echo reply as the host saw it arrive. */
export interface Reply {
  seq: number;
  /** performance.now() of the host when the line was first seen. */
  at: number;
}

/** What ping printed at its end. */
export interface PingSummary {
  transmitted: number;
  received: number;
  /** transmitted - received. */
  lost: number;
  /** Every reply, in arrival order, with host timestamps. */
  replies: Reply[];
  /** ping's own output. */
  output: string;
}

/** A ping running in the foreground of a guest. */
export interface PingWatch {
  /** Replies seen so far. */
  readonly replies: Reply[];
  /** Resolves when ping has exited. */
  readonly done: Promise<PingSummary>;
  /** Waits until a reply with `seq >= minSeq` (default any) arrived at or after `since`. */
  replyAfter(since: number, timeoutMs: number, minSeq?: number): Promise<Reply>;
}

/** How often the host looks at the serial console for new replies. */
const WATCH_POLL_MS = 10;
const REPLY_RE = /seq=(\d+) ttl=/g;

/** Options of {@link startPing}. */
export interface PingOptions {
  /** Echo requests to send. */
  count: number;
  /** Seconds between them (busybox ping takes fractions). */
  intervalS: number;
  /** ping -6. */
  v6?: boolean;
}

/**
 * Starts `ping -c count -i interval target` in the guest's foreground (the guest runs nothing
 * else until it ends) and timestamps each reply on the host as it arrives.
 */
export function startPing(g: Guest, target: string, o: PingOptions): PingWatch {
  const replies: Reply[] = [];
  const from = g.serialLog.length;
  let finished = false;
  const seen = new Set<number>();
  const scan = () => {
    const text = g.serialLog.slice(from);
    for (const m of text.matchAll(REPLY_RE)) {
      const seq = Number(m[1]);
      if (seen.has(seq)) continue;
      seen.add(seq);
      replies.push({ seq, at: performance.now() });
    }
  };
  const watcher = (async () => {
    while (!finished) {
      scan();
      await sleep(WATCH_POLL_MS);
    }
    scan();
  })();
  const timeoutMs = Math.ceil(o.count * o.intervalS * 1000 * 2) + 30_000;
  const cmd = `ping ${o.v6 ? "-6 " : ""}-c ${o.count} -i ${o.intervalS} -W 3 ${target}`;
  const done = g.run(cmd, { timeoutMs }).then(async (r) => {
    finished = true;
    await watcher;
    const m = r.output.match(/(\d+) packets transmitted, (\d+) packets received/);
    if (!m) {
      throw new Error(`${g.name}: \`${cmd}\` printed no summary (exit ${r.code}):\n${r.output}`);
    }
    const transmitted = Number(m[1]);
    const received = Number(m[2]);
    return { transmitted, received, lost: transmitted - received, replies, output: r.output };
  }, (e) => {
    finished = true;
    throw e;
  });
  return {
    replies,
    done,
    async replyAfter(since: number, timeoutMs: number, minSeq = 0): Promise<Reply> {
      return await until(
        () => {
          const r = replies.find((x) => x.at >= since && x.seq >= minSeq);
          if (r) return r;
          if (finished) throw new Error(`${g.name}: ping to ${target} ended without a reply`);
          return undefined;
        },
        timeoutMs,
        `${g.name}: a ping reply from ${target}`,
      );
    },
  };
}

/** The longest time between two consecutive replies, in ms (0 with fewer than two). */
export function longestGapMs(replies: Reply[]): number {
  let gap = 0;
  for (let i = 1; i < replies.length; i++) gap = Math.max(gap, replies[i].at - replies[i - 1].at);
  return gap;
}
