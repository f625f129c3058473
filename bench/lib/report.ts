/**
 * Statistics over runs and the report: markdown ready for BENCHMARKS.md, and JSON.
 * @module
 */

/** Median and range of a set of runs. */
export interface Summary {
  n: number;
  median: number;
  min: number;
  max: number;
}

/** Median (mean of the middle two for an even count), min and max. */
export function summarize(values: number[]): Summary {
  if (values.length === 0) return { n: 0, median: NaN, min: NaN, max: NaN };
  const v = [...values].sort((a, b) => a - b);
  const mid = v.length >> 1;
  const median = v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
  return { n: v.length, median, min: v[0], max: v[v.length - 1] };
}

/** One backend's runs of one benchmark. */
export interface BackendRuns {
  backend: string;
  /** Mpps of each run, in the order run. */
  mpps: number[];
  summary: Summary;
  /** The raw JSON of each run (generator or testpmd figures). */
  raw: unknown[];
  /** Exact commands of the first run: backend first, then the load generator. */
  commands: string[];
  /** Why it was not measured, if it was not. */
  skipped?: string;
}

/** One benchmark's outcome. */
export interface BenchResult {
  id: string;
  title: string;
  frameSize: number;
  /** ours / reference of the medians, null without both. */
  ratio: number | null;
  /** The figure we promise (minimum ratio), if any. */
  target?: number;
  ours: BackendRuns | null;
  reference: BackendRuns;
}

/** The whole report. */
export interface Report {
  date: string;
  host: { kernel: string; cpu: string; cpus: number; dpdk: string; commit: string };
  params: {
    runs: number;
    seconds: number;
    warmup: number;
    population: number;
    genCpu: number;
    backendCpu: number;
    order: string;
  };
  /** The harness invocation. */
  harness: string;
  benchmarks: BenchResult[];
  /** Every PID the harness started (all stopped when it returns). */
  pids: number[];
}

function fmt(x: number, digits = 3): string {
  return Number.isFinite(x) ? x.toFixed(digits) : "n/a";
}

function cell(r: BackendRuns | null): string {
  if (!r) return "not run";
  if (r.skipped) return `not run (${r.skipped})`;
  const s = r.summary;
  return `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})`;
}

/** The markdown report. */
export function toMarkdown(rep: Report): string {
  const oursRuns = rep.benchmarks.find((b) => b.ours)?.ours;
  const oursName = oursRuns
    ? (oursRuns.skipped ? `ours: ${oursRuns.backend}` : oursRuns.backend)
    : "ours";
  const refName = rep.benchmarks[0]?.reference.backend ?? "reference";
  const p = rep.params;
  const out: string[] = [];
  out.push(`## Packet rates (${rep.date})`);
  out.push("");
  out.push(
    `${p.runs} run(s) of ${p.seconds} s each (after ${p.warmup} s of warm-up), backends ` +
      `alternating ${p.order}; Mpps as median (min–max). Generator on CPU ${p.genCpu}, the ` +
      `backend's forwarding thread on CPU ${p.backendCpu}. Host: ${rep.host.cpus} × ` +
      `${rep.host.cpu}, Linux ${rep.host.kernel}, DPDK ${rep.host.dpdk}, commit ` +
      `${rep.host.commit}.`,
  );
  out.push("");
  out.push(`| Benchmark | ${oursName} Mpps | ${refName} Mpps | ours / ref | target |`);
  out.push("|---|---:|---:|---:|---:|");
  for (const b of rep.benchmarks) {
    const ratio = b.ratio === null ? "n/a" : fmt(b.ratio, 2);
    const target = b.target ? `≥ ${b.target}` : "";
    out.push(`| ${b.title} | ${cell(b.ours)} | ${cell(b.reference)} | ${ratio} | ${target} |`);
  }
  out.push("");
  out.push(
    "Runs (Mpps, in order; how busy the machine was just before (others' load, of " +
      "all CPUs), the 1-minute load average before→after, how often the generator's " +
      "loop was preempted):",
  );
  out.push("");
  for (const b of rep.benchmarks) {
    for (const r of [b.ours, b.reference]) {
      if (!r || r.skipped) continue;
      const runs = r.mpps.map((x, i) => {
        const raw = r.raw[i] as
          | { loadavg?: number[]; preempted?: number; others_busy_pct?: number }
          | undefined;
        const notes = [];
        if (raw?.others_busy_pct !== undefined) notes.push(`others ${raw.others_busy_pct}%`);
        if (raw?.loadavg) notes.push(`load ${raw.loadavg.map((l) => l.toFixed(1)).join("→")}`);
        if (raw?.preempted !== undefined) notes.push(`preempted ${raw.preempted}×`);
        return notes.length ? `${fmt(x)} (${notes.join(", ")})` : fmt(x);
      });
      out.push(`- ${b.id}, ${r.backend}: ${runs.join("; ")}`);
    }
  }
  out.push("");
  out.push("Commands (of the first run of each; prefixes and socket paths change per run):");
  out.push("");
  out.push("```sh");
  out.push(`# harness\n${rep.harness}`);
  for (const b of rep.benchmarks) {
    for (const r of [b.ours, b.reference]) {
      if (!r || r.skipped || r.commands.length === 0) continue;
      out.push(`# ${b.id}, ${r.backend}`);
      for (const c of r.commands) out.push(c);
    }
  }
  out.push("```");
  out.push("");
  return out.join("\n");
}
