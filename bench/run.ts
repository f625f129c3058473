/**
 * The packet-rate benchmarks (issue 7): ours against the DPDK reference, alternating
 * (A B A B), several runs each, median and min-max, ratio ours/reference.
 *
 * ```sh
 * scripts/deno run -A bench/run.ts                      # set "pps": IPv4 loop, 64 and 1500 B
 * scripts/deno run -A bench/run.ts --set all --runs 5   # + IPv6 loop + single-direction
 * scripts/deno run -A bench/run.ts --only loop-v4-64 --ours reference   # A/A noise check
 * scripts/deno run -A bench/run.ts --smoke              # 1 run, 1 s, 64 B, reference only
 * ```
 *
 * Writes `<out>/latest.md` (ready for BENCHMARKS.md) and `<out>/latest.json` (default
 * out: bench/results; in smoke mode bench/results/smoke). Needs root or the rights DPDK
 * needs without hugepages, and the `dpdk`/`dpdk-dev` packages.
 * @module
 */

import { parseArgs } from "node:util";
import type { Backend, Direction, RunParams } from "./lib/backend.ts";
import {
  buildGenerator,
  type GenResult,
  runGenerator,
  runSingle,
  type SingleResult,
} from "./lib/loadgen.ts";
import { OURS } from "./lib/ours.ts";
import { shellQuote, sleep } from "./lib/proc.ts";
import { TestpmdReference } from "./lib/reference.ts";
import { startedPids, stopAll } from "./lib/registry.ts";
import {
  type BackendRuns,
  type BenchResult,
  type Report,
  summarize,
  toMarkdown,
} from "./lib/report.ts";

const ROOT = new URL("../", import.meta.url).pathname;

/** A benchmark of the suite. */
export interface BenchDef {
  id: string;
  title: string;
  frameSize: number;
  /** `loop`: our generator circulating frames between two vNICs; else one direction. */
  kind: "loop" | Direction;
  family: 4 | 6;
  /** Minimum ratio ours/reference we promise. */
  target?: number;
}

/** Every benchmark. */
export const BENCHMARKS: BenchDef[] = [
  {
    id: "loop-v4-64",
    title: "VM↔VM loop, IPv4/UDP, 64 B",
    frameSize: 64,
    kind: "loop",
    family: 4,
    target: 0.5,
  },
  {
    id: "loop-v4-1500",
    title: "VM↔VM loop, IPv4/UDP, 1500 B",
    frameSize: 1500,
    kind: "loop",
    family: 4,
    target: 0.7,
  },
  { id: "loop-v6-64", title: "VM↔VM loop, IPv6/UDP, 64 B", frameSize: 64, kind: "loop", family: 6 },
  {
    id: "loop-v6-1500",
    title: "VM↔VM loop, IPv6/UDP, 1500 B",
    frameSize: 1500,
    kind: "loop",
    family: 6,
  },
  {
    id: "guest-tx-64",
    title: "guest TX only (testpmd txonly), 64 B",
    frameSize: 64,
    kind: "guest-tx",
    family: 4,
  },
  {
    id: "guest-rx-64",
    title: "guest RX only (testpmd rxonly), 64 B",
    frameSize: 64,
    kind: "guest-rx",
    family: 4,
  },
  {
    id: "guest-tx-1500",
    title: "guest TX only (testpmd txonly), 1500 B",
    frameSize: 1500,
    kind: "guest-tx",
    family: 4,
  },
  {
    id: "guest-rx-1500",
    title: "guest RX only (testpmd rxonly), 1500 B",
    frameSize: 1500,
    kind: "guest-rx",
    family: 4,
  },
];

/** Named sets. */
export const SETS: Record<string, string[]> = {
  pps: ["loop-v4-64", "loop-v4-1500"],
  v6: ["loop-v6-64", "loop-v6-1500"],
  single: ["guest-tx-64", "guest-rx-64", "guest-tx-1500", "guest-rx-1500"],
  all: BENCHMARKS.map((b) => b.id),
  smoke: ["loop-v4-64"],
};

const USAGE = `usage: bench/run.ts [options]
  --set NAME         ${Object.keys(SETS).join(" | ")} (default pps)
  --only IDS         comma-separated benchmark ids (overrides --set): ${
  BENCHMARKS.map((b) => b.id).join(", ")
}
  --runs N           runs per backend (default 3)
  --seconds S        measured seconds per run (default 10)
  --warmup S         warm-up seconds before each measurement (default 1)
  --population N     frames circulating in the loop benchmarks (default 1024)
  --ours NAME        ${Object.keys(OURS).join(" | ")} (default mvirt-net)
  --gen-cpu N        CPU of the load generator (default 0)
  --backend-cpu N    CPU of the backend's forwarding thread (default 1)
  --out DIR          where latest.md / latest.json go (default bench/results)
  --verify           generator checks IPv4 checksums / TTLs on receive
  --quiet-below PCT  before each run, wait until the machine (nothing of ours running) is
                     under PCT % busy over 1 s (default 0: do not wait; the figure is
                     recorded anyway)
  --quiet-wait S     wait at most S seconds for that (default 120)
  --smoke            1 run of 1 s, loop-v4-64, reference only, out bench/results/smoke
  --quiet            no progress on stderr`;

interface Options {
  ids: string[];
  runs: number;
  seconds: number;
  warmup: number;
  population: number;
  ours: string;
  genCpu: number;
  backendCpu: number;
  out: string;
  verify: boolean;
  quiet: boolean;
  quietBelow: number;
  quietWait: number;
}

function num(v: string | undefined, name: string, def: number, min: number, max: number): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isFinite(n) || n < min || n > max) {
    throw new Error(`--${name}: ${v} is not in ${min}..${max}`);
  }
  return n;
}

function parseOptions(args: string[]): Options {
  const { values } = parseArgs({
    args,
    options: {
      set: { type: "string" },
      only: { type: "string" },
      runs: { type: "string" },
      seconds: { type: "string" },
      warmup: { type: "string" },
      population: { type: "string" },
      ours: { type: "string" },
      "gen-cpu": { type: "string" },
      "backend-cpu": { type: "string" },
      out: { type: "string" },
      verify: { type: "boolean" },
      smoke: { type: "boolean" },
      quiet: { type: "boolean" },
      "quiet-below": { type: "string" },
      "quiet-wait": { type: "string" },
      help: { type: "boolean" },
    },
  });
  if (values.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  const smoke = values.smoke ?? false;
  let ids: string[];
  if (values.only) ids = values.only.split(",").map((s) => s.trim()).filter(Boolean);
  else {
    const set = values.set ?? (smoke ? "smoke" : "pps");
    if (!SETS[set]) throw new Error(`unknown set ${set}`);
    ids = SETS[set];
  }
  for (const id of ids) {
    if (!BENCHMARKS.some((b) => b.id === id)) throw new Error(`unknown benchmark ${id}`);
  }
  const ours = values.ours ?? (smoke ? "none" : "mvirt-net");
  if (!OURS[ours]) throw new Error(`unknown --ours ${ours}`);
  const o: Options = {
    ids,
    runs: num(values.runs, "runs", smoke ? 1 : 3, 1, 100),
    seconds: num(values.seconds, "seconds", smoke ? 1 : 10, 0.1, 600),
    warmup: num(values.warmup, "warmup", smoke ? 0.2 : 1, 0, 60),
    population: num(values.population, "population", 1024, 2, 65536),
    ours,
    genCpu: num(values["gen-cpu"], "gen-cpu", 0, 0, 1023),
    backendCpu: num(values["backend-cpu"], "backend-cpu", 1, 0, 1023),
    out: values.out ?? `${ROOT}bench/results${smoke ? "/smoke" : ""}`,
    verify: values.verify ?? false,
    quiet: values.quiet ?? false,
    quietBelow: num(values["quiet-below"], "quiet-below", 0, 0, 100) / 100,
    quietWait: num(values["quiet-wait"], "quiet-wait", 120, 0, 3600),
  };
  if (o.genCpu === o.backendCpu) throw new Error("--gen-cpu and --backend-cpu must differ");
  return o;
}

async function text(cmd: string[]): Promise<string> {
  try {
    const out = await new Deno.Command(cmd[0], {
      args: cmd.slice(1),
      stdout: "piped",
      stderr: "null",
    })
      .output();
    return new TextDecoder().decode(out.stdout).trim();
  } catch {
    return "unknown";
  }
}

async function hostInfo(): Promise<Report["host"]> {
  const cpuinfo = await Deno.readTextFile("/proc/cpuinfo").catch(() => "");
  return {
    kernel: await text(["uname", "-r"]),
    cpu: /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1] ?? "unknown",
    cpus: navigator.hardwareConcurrency,
    dpdk: await text(["pkg-config", "--modversion", "libdpdk"]),
    commit: await text(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]),
  };
}

/** One measured run of `def` against `backend`; returns Mpps, raw figures and commands. */
/** Fraction (0..1) of all CPUs busy over `ms`, from /proc/stat. */
async function busyFraction(ms: number): Promise<number> {
  const read = () => {
    const f = Deno.readTextFileSync("/proc/stat").split("\n")[0].trim().split(/\s+/).slice(1)
      .map(Number);
    return { idle: f[3] + (f[4] ?? 0), total: f.reduce((a, b) => a + b, 0) };
  };
  const a = read();
  await sleep(ms);
  const b = read();
  return 1 - (b.idle - a.idle) / Math.max(1, b.total - a.total);
}

/**
 * How busy the machine is while none of our processes run (the others' load), waiting up
 * to `waitS` for it to drop under `below` (0..1; 0 = do not wait).
 */
async function othersBusy(below: number, waitS: number, log: (s: string) => void): Promise<number> {
  const end = performance.now() + waitS * 1000;
  let busy = await busyFraction(1000);
  let said = false;
  while (below > 0 && busy >= below && performance.now() < end) {
    if (!said) log(`machine ${(busy * 100).toFixed(0)}% busy; waiting up to ${waitS} s`);
    said = true;
    busy = await busyFraction(1000);
  }
  return busy;
}

function loadavg(): number {
  try {
    return Number(Deno.readTextFileSync("/proc/loadavg").split(" ")[0]);
  } catch {
    return NaN;
  }
}

async function measure(
  def: BenchDef,
  backend: Backend,
  o: Options,
): Promise<{ mpps: number; raw: GenResult | SingleResult; commands: string[] }> {
  const params: RunParams = { frameSize: def.frameSize, cpu: o.backendCpu, otherCpu: o.genCpu };
  try {
    if (def.kind === "loop") {
      const ports = await backend.start(params);
      const run = await runGenerator(ports, {
        family: def.family,
        frameSize: def.frameSize,
        seconds: o.seconds,
        warmup: o.warmup,
        population: o.population,
        cpu: o.genCpu,
        verify: o.verify,
      });
      return {
        mpps: run.result.mpps,
        raw: run.result,
        commands: [...backend.commands(), run.command],
      };
    }
    if (!backend.startSingle) throw new Error(`${backend.name} has no single-direction mode`);
    const port = await backend.startSingle(def.kind, params);
    const run = await runSingle(port, {
      direction: def.kind,
      frameSize: def.frameSize,
      seconds: o.seconds,
      warmup: o.warmup,
      cpu: o.genCpu,
      otherCpu: o.backendCpu,
    });
    return {
      mpps: run.result.mpps,
      raw: run.result,
      commands: [...backend.commands(), run.command],
    };
  } finally {
    await backend.stop();
  }
}

function emptyRuns(name: string, skipped?: string): BackendRuns {
  return { backend: name, mpps: [], summary: summarize([]), raw: [], commands: [], skipped };
}

/** Runs the benchmarks and writes the report; returns it. */
export async function runBenchmarks(o: Options, harness: string): Promise<Report> {
  const log = (s: string) => o.quiet || console.error(s);
  await buildGenerator();
  const reference = new TestpmdReference();
  const made = OURS[o.ours]();
  const ours = typeof made === "string" ? null : made;
  if (typeof made === "string") log(`ours (${o.ours}): ${made}; measuring the reference only`);
  const benchmarks: BenchResult[] = [];
  for (const id of o.ids) {
    const def = BENCHMARKS.find((b) => b.id === id)!;
    const refRuns = emptyRuns(reference.name);
    const ourRuns = ours ? emptyRuns(ours.name) : null;
    if (ours && def.kind !== "loop" && !ours.startSingle) {
      ourRuns!.skipped = "no single-direction mode";
    }
    for (let i = 0; i < o.runs; i++) {
      // A B A B: ours first, then the reference, in every round.
      for (const [b, runs] of [[ours, ourRuns], [reference, refRuns]] as const) {
        if (!b || !runs || runs.skipped) continue;
        const busy = await othersBusy(o.quietBelow, o.quietWait, log);
        const load = loadavg();
        let m;
        try {
          m = await measure(def, b, o);
        } catch (e) {
          // One retry with a fresh backend: a start-up can hang on a busy machine.
          log(
            `${id} run ${i + 1}/${o.runs} ${b.name} failed, retrying once: ${(e as Error).message}`,
          );
          m = await measure(def, b, o);
        }
        runs.mpps.push(m.mpps);
        // The others' CPU use just before, the 1-minute load average before and after:
        // runs on a busy machine stand out.
        runs.raw.push({
          ...m.raw,
          others_busy_pct: Math.round(busy * 100),
          loadavg: [load, loadavg()],
        });
        if (runs.commands.length === 0) runs.commands = m.commands;
        log(`${id} run ${i + 1}/${o.runs} ${b.name}: ${m.mpps.toFixed(3)} Mpps`);
      }
    }
    for (const r of [refRuns, ourRuns]) if (r && !r.skipped) r.summary = summarize(r.mpps);
    const ratio = ourRuns && !ourRuns.skipped && refRuns.summary.median > 0
      ? ourRuns.summary.median / refRuns.summary.median
      : null;
    benchmarks.push({
      id,
      title: def.title,
      frameSize: def.frameSize,
      ratio,
      target: def.target,
      ours: ourRuns ?? (typeof made === "string" ? emptyRuns(o.ours, made) : null),
      reference: refRuns,
    });
  }
  const report: Report = {
    date: new Date().toISOString(),
    host: await hostInfo(),
    params: {
      runs: o.runs,
      seconds: o.seconds,
      warmup: o.warmup,
      population: o.population,
      genCpu: o.genCpu,
      backendCpu: o.backendCpu,
      order: ours
        ? `${ours.name}, ${reference.name}, ${ours.name}, ${reference.name}, …`
        : reference.name,
    },
    harness,
    benchmarks,
    pids: startedPids(),
  };
  await Deno.mkdir(o.out, { recursive: true });
  await Deno.writeTextFile(`${o.out}/latest.json`, JSON.stringify(report, null, 2) + "\n");
  await Deno.writeTextFile(`${o.out}/latest.md`, toMarkdown(report));
  // Formatted like the rest of the repository, so it can be pasted or committed as is.
  await new Deno.Command(Deno.execPath(), {
    args: ["fmt", "--quiet", `--config=${ROOT}deno.json`, `${o.out}/latest.md`],
    stdout: "null",
    stderr: "null",
  }).output().catch(() => {});
  log(`wrote ${o.out}/latest.md and latest.json`);
  return report;
}

if (import.meta.main) {
  let opts: Options;
  try {
    opts = parseOptions(Deno.args);
  } catch (e) {
    console.error(`${(e as Error).message}\n${USAGE}`);
    Deno.exit(2);
  }
  let stopping = false;
  const onSignal = async () => {
    if (stopping) return;
    stopping = true;
    console.error("interrupted: stopping the benchmark's processes");
    await stopAll();
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  const harness = shellQuote(["scripts/deno", "run", "-A", "bench/run.ts", ...Deno.args]);
  try {
    const rep = await runBenchmarks(opts, harness);
    for (const b of rep.benchmarks) {
      const r = b.reference.summary;
      const ours = b.ours && !b.ours.skipped ? b.ours.summary.median.toFixed(3) : "n/a";
      console.log(
        `${b.id}: reference ${r.median.toFixed(3)} Mpps (${r.min.toFixed(3)}–${
          r.max.toFixed(3)
        }), ` +
          `ours ${ours}, ratio ${b.ratio === null ? "n/a" : b.ratio.toFixed(2)}`,
      );
    }
  } catch (e) {
    console.error(`bench: ${(e as Error).stack ?? e}`);
    await stopAll();
    Deno.exit(1);
  }
  Deno.exit(0);
}
