/**
 * Statistics over runs and the shape of the report (written as JSON; rendered to markdown
 * by summary.ts).
 * @module
 */

import type { ControlReport } from "./control.ts";
import type { VmReport } from "./vm.ts";

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
  /** Null for a benchmark of ours alone (the security-group cost). */
  reference: BackendRuns | null;
  /** Security-group rules attached to both vNICs (the cost benchmark). */
  rules?: number;
}

/** The whole report. */
export interface Report {
  /** Start and end of the run. */
  date: string;
  finished: string;
  host: { kernel: string; cpu: string; cpus: number; dpdk: string; commit: string };
  params: {
    /** Runs per backend (a number, or how the defaults split). */
    runs: number | string;
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
  /** TCP throughput and ping latency between two guests, if measured. */
  vm?: VmReport;
  /** Control-plane figures, if measured. */
  control?: ControlReport;
  /** Why a part of the suite failed (the others still ran), by set. */
  failed?: Record<string, string>;
  /** Every PID the harness started (all stopped when it returns). */
  pids: number[];
}
