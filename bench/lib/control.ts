/**
 * Control-plane benchmarks of our daemon: CreateNic latency until the vNIC's socket accepts
 * a connection (p50, p99), resident memory per idle vNIC, CPU use of an idle daemon with
 * 64 idle vNICs, and the time a restarted daemon needs until every vNIC's socket accepts
 * again. No VM and no traffic: these are the costs of vNICs that exist.
 *
 * A vNIC's socket accepts as soon as its device exists, which the dataplane makes before the
 * vNIC's actor (its Worker) runs; a VMM that connects earlier waits in the socket. So both
 * CreateNic and the restart are also measured until the vNIC serves: its actor answered a
 * vhost-user GET_FEATURES, the first message a VMM sends.
 * @module
 */

import { waitServing } from "./client.ts";
import { cpuSeconds, type OurDaemon, rssBytes, startOurDaemon, unixAccepts } from "./daemon.ts";
import { sleep, until } from "./proc.ts";
import { summarize, type Summary } from "./report.ts";
import { percentile } from "./vm.ts";
import { vhostAnswers } from "../../vhost/probe.ts";

/** Options of {@link runControlBenchmarks}. */
export interface ControlOptions {
  /** vNICs created (and restored after the restart). */
  nics: number;
  /** Idle vNICs while the idle CPU is measured (created first). */
  idleNics: number;
  /** Seconds of the idle CPU measurement. */
  idleSeconds: number;
  log: (s: string) => void;
}

/** CPU use of the idle daemon, percent of one core, per process. */
export interface IdleCpu {
  nics: number;
  seconds: number;
  dataplanePct: number;
  apiPct: number;
  rootPct: number;
  totalPct: number;
}

/** The control-plane figures. */
export interface ControlReport {
  options: Omit<ControlOptions, "log">;
  /** CreateNic call to socket accepting, ms. */
  createMs: Summary & { p50: number; p99: number };
  /** The CreateNic call alone (until the API answered), ms. */
  createCallMs: Summary & { p50: number; p99: number };
  /**
   * CreateNic call until the vNIC's actor answered a GET_FEATURES, ms (the next create does
   * not wait for it); vNICs whose answer never came are left out and counted.
   */
  createServeMs?: Summary & { p50: number; p99: number };
  createServeFailures?: number;
  /** CreateNic calls that failed with UNAVAILABLE and were retried (their time counts). */
  createRetries: number;
  idle: IdleCpu;
  rss: {
    /** Bytes before the first vNIC (network created) and after the last, per process. */
    before: { dataplane: number; api: number };
    after: { dataplane: number; api: number };
    /** (after - before) / nics of dataplane + api, MiB. */
    perNicMiB: number;
    dataplanePerNicMiB: number;
  };
  restart: {
    /** Spawn of the new daemon until its api serves, s. */
    servingS: number;
    /** Spawn of the new daemon until every vNIC socket accepts, s. */
    allSocketsS: number;
    /** Spawn of the new daemon until every vNIC's actor answered a GET_FEATURES, s. */
    allServeS?: number;
    /** Why the restart gave no figure, if it did not. */
    failed?: string;
  };
  commands: string[];
}

/** CreateNic attempts per vNIC when the api answers UNAVAILABLE. */
const CREATE_ATTEMPTS = 3;

/** Time a restarted daemon gets to restore every vNIC. */
const RESTORE_TIMEOUT_MS = 600_000;
/** Time a vNIC's actor gets to answer a VMM's first message. */
const SERVE_TIMEOUT_MS = 60_000;

function pctSummary(v: number[]): Summary & { p50: number; p99: number } {
  const s = [...v].sort((a, b) => a - b);
  return { ...summarize(v), p50: percentile(s, 50), p99: percentile(s, 99) };
}

function processCpu(d: OurDaemon): { dataplane: number; api: number; root: number } {
  const p = d.pids();
  return { dataplane: cpuSeconds(p.dataplane!), api: cpuSeconds(p.api!), root: cpuSeconds(p.root) };
}

function processRss(d: OurDaemon): { dataplane: number; api: number } {
  const p = d.pids();
  return { dataplane: rssBytes(p.dataplane!), api: rssBytes(p.api!) };
}

/** Runs the control-plane benchmarks on a daemon of its own. */
export async function runControlBenchmarks(o: ControlOptions): Promise<ControlReport> {
  let d = await startOurDaemon();
  const commands = [d.command];
  try {
    const net = await d.client.call("CreateNetwork", {
      name: "ctl",
      ipv4_enabled: true,
      ipv4_subnet: "10.128.0.0/16",
      ipv6_enabled: true,
      ipv6_prefix: "fd00:128::/64",
    });
    commands.push(
      "scripts/deno task cli --server <addr> network create ctl --ipv4-subnet 10.128.0.0/16 --ipv6-prefix fd00:128::/64",
      `scripts/deno task cli --server <addr> nic create --network ctl --name n<i>   # × ${o.nics}, one at a time; then connect() to its socket until it accepts`,
    );
    // Settled memory before the first vNIC.
    await sleep(1_000);
    const before = processRss(d);
    const total: number[] = [];
    const call: number[] = [];
    // Until each vNIC serves, measured without holding up the next create.
    const serves: Promise<number | null>[] = [];
    const sockets: string[] = [];
    let idle: IdleCpu | null = null;
    let retries = 0;
    for (let i = 0; i < o.nics; i++) {
      const t0 = performance.now();
      let nic;
      for (let attempt = 1;; attempt++) {
        try {
          nic = await d.client.call("CreateNic", { network_id: net.id, name: `n${i}` });
          break;
        } catch (e) {
          // UNAVAILABLE asks for a retry (the dataplane answered too late); the time counts.
          if (attempt >= CREATE_ATTEMPTS || !/UNAVAILABLE/.test((e as Error).message)) {
            throw new Error(`vNIC ${i + 1} of ${o.nics}: ${(e as Error).message}`);
          }
          retries++;
          o.log(`control: vNIC ${i + 1}: ${(e as Error).message}; retrying`);
        }
      }
      const t1 = performance.now();
      await until(() => unixAccepts(nic.socket_path), 10_000, `socket of vNIC n${i}`, 1);
      total.push(performance.now() - t0);
      call.push(t1 - t0);
      sockets.push(nic.socket_path);
      serves.push(
        vhostAnswers(nic.socket_path, SERVE_TIMEOUT_MS).then((ok) =>
          ok ? performance.now() - t0 : null
        ),
      );
      if (i + 1 === o.idleNics) {
        await Promise.all(serves);
        idle = await measureIdle(d, i + 1, o.idleSeconds);
      }
      if ((i + 1) % 64 === 0) o.log(`control: ${i + 1} vNICs`);
    }
    const served = await Promise.all(serves);
    const serveMs = served.filter((x): x is number => x !== null);
    o.log(
      `control: CreateNic until the vNIC serves: p50 ${
        percentile([...serveMs].sort((a, b) => a - b), 50).toFixed(1)
      } ms (${served.length - serveMs.length} never answered)`,
    );
    idle ??= await measureIdle(d, o.nics, o.idleSeconds);
    o.log(`control: idle CPU ${idle.totalPct.toFixed(2)} % of a core with ${idle.nics} vNICs`);
    await sleep(1_000);
    const after = processRss(d);
    const mib = 1024 * 1024;
    const delta = (after.dataplane + after.api - before.dataplane - before.api) / o.nics / mib;
    // Restart: the whole daemon, same data and socket directories.
    const { dataDir, socketDir } = d;
    await d.stop(true);
    // The root removes its pids.json on a clean exit; a stale one would name dead PIDs.
    await Deno.remove(`${dataDir}/pids.json`).catch(() => {});
    // A failed restart keeps the figures above; the report says why.
    let restart: ControlReport["restart"];
    try {
      const t0 = performance.now();
      // The api serves only once the dataplane has taken the whole state: wait for the
      // sockets first, then for serving, both with the restore time limit.
      d = await startOurDaemon({ dataDir, socketDir, waitServing: false });
      // Each probe that reaches a socket is a VMM connecting to that vNIC: polling every
      // socket every 10 ms would load the dataplane being measured with thousands of
      // connections a second. A socket is probed until it accepted once; then all are checked
      // together once more (a rebuilt network re-creates its sockets).
      const accepted = new Set<string>();
      await until(
        async () => {
          const pending = sockets.filter((p) => !accepted.has(p));
          const now = await Promise.all(pending.map(unixAccepts));
          pending.forEach((p, i) => now[i] && accepted.add(p));
          if (accepted.size < sockets.length) return false;
          const all = await Promise.all(sockets.map(unixAccepts));
          sockets.forEach((p, i) => all[i] || accepted.delete(p));
          return all.every(Boolean);
        },
        RESTORE_TIMEOUT_MS,
        `all ${o.nics} vNIC sockets after the restart`,
        10,
      );
      const allSocketsS = (performance.now() - t0) / 1000;
      // Measured beside the probes below; NaN if the api never serves.
      const apiServes = waitServing(d.target, RESTORE_TIMEOUT_MS).then(
        () => (performance.now() - t0) / 1000,
        () => NaN,
      );
      // One VMM-like connection per vNIC, answered once its actor runs; a refused one (a
      // rebuilt network re-creating its socket) is tried again.
      await Promise.all(sockets.map(async (p) => {
        const end = performance.now() + RESTORE_TIMEOUT_MS;
        while (!(await vhostAnswers(p, SERVE_TIMEOUT_MS))) {
          if (performance.now() > end) throw new Error(`vNIC ${p} did not serve after the restart`);
          await sleep(50);
        }
      }));
      const allServeS = (performance.now() - t0) / 1000;
      restart = { allSocketsS, allServeS, servingS: await apiServes };
      o.log(
        `control: restart with ${o.nics} vNICs: all sockets accept after ${
          allSocketsS.toFixed(2)
        } s, all vNICs serve after ${allServeS.toFixed(2)} s`,
      );
    } catch (e) {
      restart = { allSocketsS: NaN, servingS: NaN, failed: (e as Error).message.split("\n")[0] };
      o.log(`control: restart failed: ${restart.failed}`);
    }
    return {
      options: { nics: o.nics, idleNics: o.idleNics, idleSeconds: o.idleSeconds },
      createMs: pctSummary(total),
      createCallMs: pctSummary(call),
      createServeMs: serveMs.length ? pctSummary(serveMs) : undefined,
      createServeFailures: served.length - serveMs.length,
      createRetries: retries,
      idle,
      rss: {
        before,
        after,
        perNicMiB: delta,
        dataplanePerNicMiB: (after.dataplane - before.dataplane) / o.nics / mib,
      },
      restart,
      commands,
    };
  } finally {
    const tmpParent = d.dataDir.replace(/\/data$/, "");
    await d.stop();
    // The restarted daemon reused the first one's directories: remove them here.
    if (tmpParent.includes("mvirt-bench-ours-")) {
      await Deno.remove(tmpParent, { recursive: true }).catch(() => {});
    }
  }
}

async function measureIdle(d: OurDaemon, nics: number, seconds: number): Promise<IdleCpu> {
  // Let the creation settle first: the last vNIC's Worker is still starting.
  await sleep(2_000);
  const a = processCpu(d);
  const t0 = performance.now();
  await sleep(seconds * 1000);
  const b = processCpu(d);
  const s = (performance.now() - t0) / 1000;
  const pct = (x: number) => x / s * 100;
  const r = {
    nics,
    seconds: s,
    dataplanePct: pct(b.dataplane - a.dataplane),
    apiPct: pct(b.api - a.api),
    rootPct: pct(b.root - a.root),
    totalPct: 0,
  };
  r.totalPct = r.dataplanePct + r.apiPct + r.rootPct;
  return r;
}
