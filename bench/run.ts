/**
 * The benchmark suite of issue 7: our backend (mvirt-net) against DPDK testpmd and the
 * kernel, alternating (A B A B), median and min-max of several runs, ratio ours/reference,
 * and the targets of the issue, met or missed.
 *
 * ```sh
 * scripts/deno task bench                                  # everything (~20 min), BENCHMARKS.md
 * scripts/deno run -A bench/run.ts --set pps,sg            # packet rates and the security-group cost
 * scripts/deno run -A bench/run.ts --only loop-v4-64 --ours reference   # A/A noise check
 * scripts/deno run -A bench/run.ts --smoke                 # every kind once, minimal (smoke test)
 * ```
 *
 * Writes `<out>/latest.md` and `<out>/latest.json` (default out: bench/results; smoke:
 * bench/results/smoke) and, for a run with the default out, BENCHMARKS.md (its hand-written
 * analysis section is kept). Needs root (DPDK without hugepages, network namespaces), the
 * `dpdk`/`dpdk-dev` packages, QEMU and the test guest for the VM benchmarks.
 * @module
 */

import { parseArgs } from "node:util";
import type { Backend, RunParams } from "./lib/backend.ts";
import { type ControlReport, runControlBenchmarks } from "./lib/control.ts";
import { startOurDaemon } from "./lib/daemon.ts";
import { guestAvailable } from "./lib/guest.ts";
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
import { type BackendRuns, type BenchResult, type Report, summarize } from "./lib/report.ts";
import { backendWithRules, securityGroupsMissing } from "./lib/secgroups.ts";
import { evaluateTargets, keptAnalysis, renderReport } from "./lib/summary.ts";
import {
  runVmBenchmarks,
  VM_BACKENDS,
  type VmBackendName,
  type VmOptions,
  type VmReport,
} from "./lib/vm.ts";

const ROOT = new URL("../", import.meta.url).pathname;

/** A packet-rate benchmark of the suite. */
export interface BenchDef {
  id: string;
  title: string;
  frameSize: number;
  /**
   * `loop`: our generator circulating frames between two vNICs, both ways; `oneway`: the
   * generator floods guest A from guest B through the backend (guest RX path);
   * `guest-tx`: testpmd txonly on one vNIC (guest TX path).
   */
  kind: "loop" | "oneway" | "guest-tx";
  family: 4 | 6;
  /** Minimum ratio ours/reference we promise. */
  target?: number;
  /** Security-group rules attached to both of our vNICs (the cost benchmark). */
  rules?: number;
  /** Measured for ours only (the security-group cost compares ours with ours). */
  oursOnly?: boolean;
}

/** Every packet-rate benchmark. */
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
    title: "guest TX path (testpmd txonly → backend), 64 B",
    frameSize: 64,
    kind: "guest-tx",
    family: 4,
  },
  {
    id: "guest-rx-64",
    title: "guest RX path (B floods A through the backend), 64 B",
    frameSize: 64,
    kind: "oneway",
    family: 4,
  },
  {
    id: "guest-tx-1500",
    title: "guest TX path (testpmd txonly → backend), 1500 B",
    frameSize: 1500,
    kind: "guest-tx",
    family: 4,
  },
  {
    id: "guest-rx-1500",
    title: "guest RX path (B floods A through the backend), 1500 B",
    frameSize: 1500,
    kind: "oneway",
    family: 4,
  },
  {
    id: "sg-0",
    title: "loop IPv4 64 B, no security group",
    frameSize: 64,
    kind: "loop",
    family: 4,
    rules: 0,
    oursOnly: true,
  },
  {
    id: "sg-2",
    title: "loop IPv4 64 B, group of 2 rules (1 matching each way)",
    frameSize: 64,
    kind: "loop",
    family: 4,
    rules: 2,
    oursOnly: true,
  },
  {
    id: "sg-50",
    title: "loop IPv4 64 B, group of 50 rules (the 2 matching last)",
    frameSize: 64,
    kind: "loop",
    family: 4,
    rules: 50,
    oursOnly: true,
  },
];

/** Packet-rate benchmarks of each set. */
const PACKET_SETS: Record<string, string[]> = {
  pps: ["loop-v4-64", "loop-v4-1500", "loop-v6-64", "loop-v6-1500"],
  v6: ["loop-v6-64", "loop-v6-1500"],
  single: ["guest-tx-64", "guest-rx-64", "guest-tx-1500", "guest-rx-1500"],
  sg: ["sg-0", "sg-2", "sg-50"],
};

/** The sets `--set` takes (comma-separated); `all` is every one. */
export const SETS = ["pps", "v6", "single", "tcp", "latency", "control", "sg", "all"] as const;
type SetName = typeof SETS[number];

/** What `--smoke` runs: every kind, minimal (1 run of 1 s, 4 vNICs, no VM unless asked). */
const SMOKE_PACKET = ["loop-v4-64", "guest-tx-64", "guest-rx-64", "sg-2"];

const USAGE = `usage: bench/run.ts [options]
  --set NAMES        comma-separated: ${SETS.join(" | ")} (default all)
                     pps: VM↔VM loop IPv4/IPv6 64/1500 B; single: guest TX and RX paths;
                     tcp, latency: two QEMU guests on ours, DPDK and the kernel;
                     control: CreateNic, memory, idle CPU, restart; sg: security-group cost
  --only IDS         packet benchmarks only, comma-separated: ${
  BENCHMARKS.map((b) => b.id).join(", ")
}
  --runs N           runs per backend of each packet benchmark (default 3 for the loops of
                     set pps, 2 for single and sg: the whole suite stays near 20 min)
  --seconds S        measured seconds per packet run (default 5)
  --warmup S         warm-up seconds before each packet measurement (default 1)
  --population N     frames circulating in the loop benchmarks (default 1024)
  --ours NAME        ${Object.keys(OURS).join(" | ")} (default mvirt-net)
  --gen-cpu N        CPU of the load generator (default 0)
  --backend-cpu N    CPU of the backend's forwarding thread(s) (default 1)
  --vm-rounds N      rounds of the VM benchmarks, backends alternating (default 2)
  --vm-backends L    ${VM_BACKENDS.join(",")} (default all three)
  --iperf-seconds S  iperf3 time per TCP measurement (default 5)
  --pings N          pings per latency measurement, 10 ms apart (default 1000)
  --nics N           vNICs of the control-plane benchmark (default 256)
  --idle-nics N      idle vNICs while idle CPU is measured (default 64)
  --idle-seconds S   idle CPU measurement (default 10)
  --out DIR          where latest.md / latest.json go (default bench/results)
  --md PATH          also write the report there (default BENCHMARKS.md for a run with the
                     default --out; "none" for no file)
  --verify           generator checks IPv4 checksums / TTLs on receive
  --quiet-below PCT  before each packet run, wait until the machine (nothing of ours running)
                     is under PCT % busy over 1 s (default 0: do not wait)
  --quiet-wait S     wait at most S seconds for that (default 120)
  --smoke            every kind once, minimal: 1 run of 1 s, 4 vNICs, idle 1 s; with
                     --set tcp/latency: one guest pair per backend, iperf3 1 s, 20 pings;
                     out bench/results/smoke, no BENCHMARKS.md
  --render JSON      measure nothing: write the markdown of an earlier run's latest.json
                     (to --md, default BENCHMARKS.md), keeping its analysis section
  --quiet            no progress on stderr`;

/** Options of a run. */
export interface Options {
  /** Packet-rate benchmark ids. */
  ids: string[];
  tcp: boolean;
  latency: boolean;
  control: boolean;
  /** Runs per backend; null: {@link defaultRuns}. */
  runs: number | null;
  seconds: number;
  warmup: number;
  population: number;
  ours: string;
  genCpu: number;
  backendCpu: number;
  vmRounds: number;
  vmBackends: VmBackendName[];
  iperfSeconds: number;
  pings: number;
  nics: number;
  idleNics: number;
  idleSeconds: number;
  out: string;
  md: string | null;
  /** Re-render this report instead of measuring. */
  render: string | null;
  smoke: boolean;
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
      "vm-rounds": { type: "string" },
      "vm-backends": { type: "string" },
      "iperf-seconds": { type: "string" },
      pings: { type: "string" },
      nics: { type: "string" },
      "idle-nics": { type: "string" },
      "idle-seconds": { type: "string" },
      out: { type: "string" },
      md: { type: "string" },
      render: { type: "string" },
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
  const sets = new Set<SetName>();
  for (
    const name of (values.set ?? (smoke ? "pps,single,control,sg" : "all")).split(",").map((x) =>
      x.trim()
    ).filter(Boolean)
  ) {
    if (!(SETS as readonly string[]).includes(name)) {
      throw new Error(`--set: unknown set ${name} (${SETS.join(", ")})`);
    }
    if (name === "all") {
      ["pps", "single", "tcp", "latency", "control", "sg"].forEach((x) => sets.add(x as SetName));
    } else sets.add(name as SetName);
  }
  let ids: string[];
  if (values.only) {
    ids = values.only.split(",").map((x) => x.trim()).filter(Boolean);
    sets.clear();
  } else if (smoke) {
    // The packet kinds of the sets asked for, one benchmark each.
    ids = SMOKE_PACKET.filter((id) =>
      (sets.has("pps") && id.startsWith("loop")) ||
      (sets.has("single") && id.startsWith("guest")) ||
      (sets.has("sg") && id.startsWith("sg"))
    );
  } else {
    ids = [...new Set([...sets].flatMap((x) => PACKET_SETS[x] ?? []))];
  }
  for (const id of ids) {
    if (!BENCHMARKS.some((b) => b.id === id)) throw new Error(`--only: unknown benchmark ${id}`);
  }
  const ours = values.ours ?? "mvirt-net";
  if (!OURS[ours]) throw new Error(`--ours: unknown backend ${ours}`);
  const vmBackends = (values["vm-backends"] ?? VM_BACKENDS.join(",")).split(",").map((x) =>
    x.trim()
  );
  for (const b of vmBackends) {
    if (!(VM_BACKENDS as readonly string[]).includes(b)) {
      throw new Error(`--vm-backends: unknown backend ${b} (${VM_BACKENDS.join(", ")})`);
    }
  }
  const defaultOut = values.out === undefined;
  const out = values.out ?? `${ROOT}bench/results${smoke ? "/smoke" : ""}`;
  let md: string | null = values.md ??
    ((defaultOut && !smoke) || values.render ? `${ROOT}BENCHMARKS.md` : null);
  if (md === "none") md = null;
  const o: Options = {
    ids,
    tcp: sets.has("tcp"),
    latency: sets.has("latency"),
    control: sets.has("control"),
    runs: values.runs === undefined ? (smoke ? 1 : null) : num(values.runs, "runs", 3, 1, 100),
    seconds: num(values.seconds, "seconds", smoke ? 1 : 5, 0.1, 600),
    warmup: num(values.warmup, "warmup", smoke ? 0.2 : 1, 0, 60),
    population: num(values.population, "population", 1024, 2, 65536),
    ours,
    genCpu: num(values["gen-cpu"], "gen-cpu", 0, 0, 1023),
    backendCpu: num(values["backend-cpu"], "backend-cpu", 1, 0, 1023),
    vmRounds: num(values["vm-rounds"], "vm-rounds", smoke ? 1 : 2, 1, 20),
    vmBackends: vmBackends as VmBackendName[],
    iperfSeconds: num(values["iperf-seconds"], "iperf-seconds", smoke ? 1 : 5, 1, 600),
    pings: num(values.pings, "pings", smoke ? 20 : 1000, 1, 100_000),
    nics: num(values.nics, "nics", smoke ? 4 : 256, 1, 4096),
    idleNics: num(values["idle-nics"], "idle-nics", smoke ? 2 : 64, 1, 4096),
    idleSeconds: num(values["idle-seconds"], "idle-seconds", smoke ? 1 : 10, 0.5, 600),
    out,
    md,
    render: values.render ?? null,
    smoke,
    verify: values.verify ?? false,
    quiet: values.quiet ?? false,
    quietBelow: num(values["quiet-below"], "quiet-below", 0, 0, 100) / 100,
    quietWait: num(values["quiet-wait"], "quiet-wait", 120, 0, 3600),
  };
  if (o.genCpu === o.backendCpu) throw new Error("--gen-cpu and --backend-cpu must differ");
  if (o.idleNics > o.nics) {
    throw new Error(`--idle-nics ${o.idleNics} is more than --nics ${o.nics}`);
  }
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
    if (def.kind === "loop" || def.kind === "oneway") {
      const ports = await backend.start(params);
      const run = await runGenerator(ports, {
        family: def.family,
        frameSize: def.frameSize,
        seconds: o.seconds,
        warmup: o.warmup,
        population: o.population,
        cpu: o.genCpu,
        verify: o.verify,
        oneway: def.kind === "oneway",
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

/** Runs per backend unless --runs says: the loops of set pps carry the targets. */
function defaultRuns(def: BenchDef): number {
  return def.kind === "loop" && def.rules === undefined ? 3 : 2;
}

function emptyRuns(name: string, skipped?: string): BackendRuns {
  return { backend: name, mpps: [], summary: summarize([]), raw: [], commands: [], skipped };
}

/** Whether our daemon serves the security-group RPCs (null) or why not. */
async function probeSecurityGroups(): Promise<string | null> {
  const d = await startOurDaemon();
  try {
    const missing = await securityGroupsMissing(d);
    return missing ? `not available: the daemon answers ${missing}` : null;
  } finally {
    await d.stop();
  }
}

/** The packet-rate benchmarks: each backend in turn, A B A B. */
async function runPacketBenchmarks(o: Options, log: (s: string) => void): Promise<BenchResult[]> {
  if (o.ids.length === 0) return [];
  await buildGenerator();
  const reference = new TestpmdReference();
  const made = OURS[o.ours]();
  const ours = typeof made === "string" ? null : made;
  if (typeof made === "string") log(`ours (${o.ours}): ${made}; measuring the reference only`);
  const sgMissing = o.ids.some((id) => id.startsWith("sg-")) && o.ours === "mvirt-net"
    ? await probeSecurityGroups()
    : null;
  const benchmarks: BenchResult[] = [];
  for (const id of o.ids) {
    const def = BENCHMARKS.find((b) => b.id === id)!;
    const refRuns = def.oursOnly ? null : emptyRuns(reference.name);
    let oursB: Backend | null = ours;
    if (def.rules !== undefined) {
      oursB = o.ours === "mvirt-net" ? backendWithRules(def.rules) : null;
    }
    let ourRuns: BackendRuns | null = oursB ? emptyRuns(oursB.name) : null;
    if (def.rules !== undefined && !oursB) {
      ourRuns = emptyRuns(o.ours, "security groups are ours (--ours mvirt-net)");
    } else if (def.rules && sgMissing) {
      ourRuns = emptyRuns(oursB!.name, sgMissing);
    } else if (!oursB && typeof made === "string") {
      ourRuns = emptyRuns(o.ours, made);
    } else if (oursB && def.kind === "guest-tx" && !oursB.startSingle) {
      ourRuns!.skipped = "no single-direction mode";
    }
    const nRuns = o.runs ?? defaultRuns(def);
    for (let i = 0; i < nRuns; i++) {
      // A B A B: ours first, then the reference, in every round.
      for (const [b, runs] of [[oursB, ourRuns], [reference, refRuns]] as const) {
        if (!b || !runs || runs.skipped) continue;
        const busy = await othersBusy(o.quietBelow, o.quietWait, log);
        const load = loadavg();
        let m;
        try {
          m = await measure(def, b, o);
        } catch (e) {
          // One retry with a fresh backend: a start-up can hang on a busy machine.
          log(
            `${id} run ${i + 1}/${nRuns} ${b.name} failed, retrying once: ${(e as Error).message}`,
          );
          try {
            m = await measure(def, b, o);
          } catch (e2) {
            // The rest of the suite still runs; the report says why this one has no figure.
            runs.skipped = `failed twice: ${(e2 as Error).message.split("\n")[0]}`;
            log(`${id} ${b.name}: ${runs.skipped}`);
            continue;
          }
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
        log(`${id} run ${i + 1}/${nRuns} ${b.name}: ${m.mpps.toFixed(3)} Mpps`);
      }
    }
    for (const r of [refRuns, ourRuns]) if (r && !r.skipped) r.summary = summarize(r.mpps);
    benchmarks.push({
      id,
      title: def.title,
      frameSize: def.frameSize,
      ratio: null,
      target: def.target,
      ours: ourRuns,
      reference: refRuns,
      rules: def.rules,
    });
  }
  // Ratios: ours/reference; for the security-group runs ours/ours without a group.
  const base = benchmarks.find((b) => b.id === "sg-0")?.ours?.summary.median;
  for (const b of benchmarks) {
    const ours = b.ours && !b.ours.skipped ? b.ours.summary.median : NaN;
    const ref = b.rules !== undefined ? base ?? NaN : b.reference?.summary.median ?? NaN;
    b.ratio = Number.isFinite(ours) && Number.isFinite(ref) && ref > 0 ? ours / ref : null;
  }
  return benchmarks;
}

/** Runs the benchmarks and writes the report; returns it. */
export async function runBenchmarks(o: Options, harness: string): Promise<Report> {
  const log = (s: string) => o.quiet || console.error(s);
  const started = new Date().toISOString();
  const benchmarks = await runPacketBenchmarks(o, log);
  // A part that fails does not take the others' figures with it: the report says why.
  const failed: Record<string, string> = {};
  let vm: VmReport | undefined;
  if (o.tcp || o.latency) {
    const missing = guestAvailable();
    if (missing) {
      log(`VM benchmarks skipped: ${missing}`);
      vm = { skipped: missing, backends: [], guestCommands: [], options: vmOptionsOf(o) };
    } else {
      try {
        vm = await runVmBenchmarks({
          ...vmOptionsOf(o),
          backends: o.vmBackends,
          params: { frameSize: 0, cpu: o.backendCpu, otherCpu: o.genCpu },
          log,
        });
      } catch (e) {
        failed.vm = (e as Error).message;
        log(`VM benchmarks failed: ${failed.vm}`);
      }
    }
  }
  let control: ControlReport | undefined;
  if (o.control) {
    try {
      control = await runControlBenchmarks({
        nics: o.nics,
        idleNics: o.idleNics,
        idleSeconds: o.idleSeconds,
        log,
      });
    } catch (e) {
      failed.control = (e as Error).message;
      log(`control-plane benchmarks failed: ${failed.control}`);
    }
  }
  const report: Report = {
    date: started,
    finished: new Date().toISOString(),
    host: await hostInfo(),
    params: {
      runs: o.runs ?? "3 (loops), 2 (single, sg)",
      seconds: o.seconds,
      warmup: o.warmup,
      population: o.population,
      genCpu: o.genCpu,
      backendCpu: o.backendCpu,
      order: `${o.ours}, dpdk-testpmd, ${o.ours}, dpdk-testpmd, …`,
    },
    harness,
    benchmarks,
    vm,
    control,
    failed: Object.keys(failed).length ? failed : undefined,
    pids: startedPids(),
  };
  await Deno.mkdir(o.out, { recursive: true });
  await Deno.writeTextFile(`${o.out}/latest.json`, JSON.stringify(report, null, 2) + "\n");
  const targets = evaluateTargets(report);
  await writeMarkdown(`${o.out}/latest.md`, renderReport(report, targets, null));
  if (o.md) await writeBenchmarksMd(o.md, report, log);
  log(`wrote ${o.out}/latest.md and latest.json`);
  return report;
}

/** Writes the report to `path`, keeping the analysis section of the file there. */
async function writeBenchmarksMd(path: string, report: Report, log: (s: string) => void) {
  const old = await Deno.readTextFile(path).catch(() => "");
  await writeMarkdown(path, renderReport(report, evaluateTargets(report), keptAnalysis(old)));
  log(`wrote ${path}`);
}

function vmOptionsOf(o: Options): Omit<VmOptions, "log" | "params" | "backends"> {
  return {
    rounds: o.vmRounds,
    iperfSeconds: o.iperfSeconds,
    streams: [1, 4],
    pings: o.pings,
    pingIntervalS: 0.01,
    tcp: o.tcp,
    latency: o.latency,
  };
}

/** Writes markdown formatted like the rest of the repository (deno fmt), so it can be committed as is. */
async function writeMarkdown(path: string, text: string): Promise<void> {
  await Deno.writeTextFile(path, text);
  await new Deno.Command(Deno.execPath(), {
    args: ["fmt", "--quiet", `--config=${ROOT}deno.json`, path],
    stdout: "null",
    stderr: "null",
  }).output().catch(() => {});
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
  if (opts.render) {
    const report = JSON.parse(await Deno.readTextFile(opts.render)) as Report;
    await writeBenchmarksMd(opts.md!, report, (s) => console.error(s));
    Deno.exit(0);
  }
  try {
    const rep = await runBenchmarks(opts, harness);
    for (const t of evaluateTargets(rep)) {
      console.log(`${t.what}: ${t.ours} vs ${t.reference} → ${t.verdict}`);
    }
  } catch (e) {
    console.error(`bench: ${(e as Error).stack ?? e}`);
    await stopAll();
    Deno.exit(1);
  }
  Deno.exit(0);
}
