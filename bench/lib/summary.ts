/**
 * The report as markdown (BENCHMARKS.md): the targets of issue 7 met or missed and by how
 * much, every figure of ours next to the references with the ratio, the machine, and the
 * exact commands. The hand-written analysis section of an existing BENCHMARKS.md (between
 * {@link ANALYSIS_BEGIN} and {@link ANALYSIS_END}) is carried over on every run.
 * @module
 */

import type { BackendRuns, BenchResult, Report, Summary } from "./report.ts";
import type { VmBackendResult } from "./vm.ts";

/** Marks the start of the hand-written analysis. */
export const ANALYSIS_BEGIN = "<!-- analysis:begin (hand-written; kept by bench/run.ts) -->";
/** Marks its end. */
export const ANALYSIS_END = "<!-- analysis:end -->";

/** The targets of issue 7. */
export const TARGETS = {
  loopV4_64: 0.5,
  loopV4_1500: 0.7,
  /** ours / reference, at least. */
  tcpVsReference: 1,
  /** ours p50 / DPDK p50, at most. */
  latencyP50VsDpdk: 1.5,
  idleCpuPct: 1,
  idleNics: 64,
  createP50Ms: 20,
  rssPerNicMiB: 12,
  restartNics: 256,
  restartS: 10,
};

/** One target, evaluated. */
export interface Target {
  what: string;
  ours: string;
  reference: string;
  target: string;
  /** "met", "missed", or "not measured (why)". */
  verdict: string;
  /** How far from the target: the factor by which it is missed or met. */
  by: string;
}

function f(x: number | undefined, digits = 3): string {
  return x !== undefined && Number.isFinite(x) ? x.toFixed(digits) : "n/a";
}

function med(r: BackendRuns | null | undefined): number | undefined {
  return r && !r.skipped && r.summary.n > 0 ? r.summary.median : undefined;
}

/**
 * Verdict for a figure that must be at least `t` (`atLeast`), at most `t`, or below `t`
 * (`strict`), and the factor by which it meets or misses it.
 */
function judge(
  value: number | undefined,
  t: number,
  atLeast: boolean,
  strict = false,
): { verdict: string; by: string } {
  if (value === undefined || !Number.isFinite(value)) return { verdict: "not measured", by: "" };
  const met = atLeast ? value >= t : strict ? value < t : value <= t;
  const factor = atLeast ? value / t : t / value;
  if (met) return { verdict: "met", by: `${f(factor, 2)}× the target` };
  const short = atLeast ? t / value : value / t;
  return { verdict: "missed", by: `${f(short, 1)}× short` };
}

function loopTarget(rep: Report, id: string, t: number): Target {
  const b = rep.benchmarks.find((x) => x.id === id);
  const j = judge(b?.ratio ?? undefined, t, true);
  return {
    what: `${b?.title ?? id}: ours / DPDK`,
    ours: b ? `${f(med(b.ours))} Mpps` : "not run",
    reference: b ? `${f(med(b.reference))} Mpps` : "not run",
    target: `ratio ≥ ${t}`,
    verdict: b ? j.verdict : "not measured (set pps)",
    by: b?.ratio != null ? `ratio ${f(b.ratio, 2)}; ${j.by}` : "",
  };
}

function vmBackend(rep: Report, name: string): VmBackendResult | undefined {
  return rep.vm?.backends.find((b) => b.backend === name && !b.skipped && b.rounds.length > 0);
}

/** Evaluates every target of issue 7 the report has figures for. */
export function evaluateTargets(rep: Report): Target[] {
  const out: Target[] = [
    loopTarget(rep, "loop-v4-64", TARGETS.loopV4_64),
    loopTarget(rep, "loop-v4-1500", TARGETS.loopV4_1500),
  ];
  const ours = vmBackend(rep, "mvirt-net");
  for (const streams of ["1", "4"]) {
    for (const ref of ["kernel-bridge", "dpdk-testpmd"]) {
      const r = vmBackend(rep, ref);
      const o = ours?.tcp[streams]?.median;
      const x = r?.tcp[streams]?.median;
      const ratio = o !== undefined && x !== undefined ? o / x : undefined;
      const j = judge(ratio, TARGETS.tcpVsReference, true);
      out.push({
        what: `TCP guest to guest, ${streams} stream(s): ours / ${ref}`,
        ours: o !== undefined ? `${f(o, 0)} Mbit/s` : "not run",
        reference: x !== undefined ? `${f(x, 0)} Mbit/s` : "not run",
        target: "ours ≥ reference",
        verdict: ratio !== undefined ? j.verdict : "not measured (set tcp)",
        by: ratio !== undefined ? `ratio ${f(ratio, 2)}; ${j.by}` : "",
      });
    }
  }
  {
    const o = ours?.rttP50?.median;
    const x = vmBackend(rep, "dpdk-testpmd")?.rttP50?.median;
    const ratio = o !== undefined && x !== undefined ? o / x : undefined;
    const j = judge(ratio, TARGETS.latencyP50VsDpdk, false);
    out.push({
      what: "ping RTT p50 guest to guest: ours / DPDK",
      ours: o !== undefined ? `${f(o)} ms` : "not run",
      reference: x !== undefined ? `${f(x)} ms` : "not run",
      target: `ratio ≤ ${TARGETS.latencyP50VsDpdk}`,
      verdict: ratio !== undefined ? j.verdict : "not measured (set latency)",
      by: ratio !== undefined ? `ratio ${f(ratio, 2)}; ${j.by}` : "",
    });
  }
  const c = rep.control;
  const ctl = (what: string, value: number | undefined, unit: string, t: number, note = "") => {
    const j = judge(value, t, false, true);
    out.push({
      what,
      ours: value !== undefined ? `${f(value, 2)} ${unit}${note}` : "not run",
      reference: "",
      target: `< ${t} ${unit}`,
      verdict: value !== undefined
        ? j.verdict
        : rep.failed?.control
        ? "not measured (control failed, see below)"
        : "not measured (set control)",
      by: j.by,
    });
  };
  ctl(
    `idle CPU, daemon with ${c?.idle.nics ?? TARGETS.idleNics} idle vNICs (all processes)`,
    c?.idle.totalPct,
    "% of a core",
    TARGETS.idleCpuPct,
  );
  ctl(
    "CreateNic p50 until the socket accepts",
    c?.createMs.p50,
    "ms",
    TARGETS.createP50Ms,
    c?.createServeMs ? ` (until the vNIC serves: ${f(c.createServeMs.p50, 2)} ms)` : "",
  );
  ctl(
    `resident memory per idle vNIC (dataplane + api, ${
      c?.options.nics ?? TARGETS.restartNics
    } vNICs)`,
    c?.rss.perNicMiB,
    "MiB",
    TARGETS.rssPerNicMiB,
  );
  // The issue's "ready": every vNIC serves (its socket accepts long before, see the note).
  ctl(
    `restart with ${c?.options.nics ?? TARGETS.restartNics} vNICs until every vNIC serves`,
    c?.restart.allServeS,
    "s",
    TARGETS.restartS,
    (c?.restart.allSocketsS !== undefined
      ? ` (every socket accepts: ${f(c.restart.allSocketsS, 2)} s)`
      : "") +
      (c && c.options.nics !== TARGETS.restartNics
        ? ` (target is for ${TARGETS.restartNics})`
        : ""),
  );
  return out;
}

/** The analysis section of an existing BENCHMARKS.md, or null. */
export function keptAnalysis(old: string): string | null {
  const a = old.indexOf(ANALYSIS_BEGIN);
  const b = old.indexOf(ANALYSIS_END);
  if (a < 0 || b < a) return null;
  return old.slice(a + ANALYSIS_BEGIN.length, b).trim();
}

function summaryCell(s: Summary | undefined, digits = 3): string {
  if (!s || s.n === 0) return "n/a";
  return `${f(s.median, digits)} (${f(s.min, digits)}–${f(s.max, digits)})`;
}

function runsCell(r: BackendRuns | null): string {
  if (!r) return "—";
  if (r.skipped) return `not run: ${r.skipped}`;
  return summaryCell(r.summary);
}

function packetSection(rep: Report): string[] {
  const benches = rep.benchmarks.filter((b) => b.rules === undefined);
  if (benches.length === 0) return [];
  const p = rep.params;
  const out = [
    "## Packet rates, no VM",
    "",
    `${p.runs} run(s) of ${p.seconds} s per backend (after ${p.warmup} s of warm-up), alternating ` +
    `${p.order}; Mpps as median (min–max). Load generator on CPU ${p.genCpu}; the backend's ` +
    `forwarding thread(s) on CPU ${p.backendCpu} (ours: every thread of the dataplane process, ` +
    "`taskset -a`). Loop: a population of 1024 frames circulates guest A → backend → guest B → " +
    "backend → A; the figure is frames delivered per second, both directions summed.",
    "",
    "| Benchmark | mvirt-net Mpps | dpdk-testpmd Mpps | ours / DPDK | target |",
    "|---|---:|---:|---:|---:|",
  ];
  for (const b of benches) {
    out.push(
      `| ${b.title} | ${runsCell(b.ours)} | ${runsCell(b.reference)} | ${
        b.ratio === null ? "n/a" : f(b.ratio, 2)
      } | ${b.target ? `≥ ${b.target}` : ""} |`,
    );
  }
  out.push("", ...runLines(benches), "");
  if (benches.some((b) => b.id.startsWith("guest-"))) {
    out.push(
      "The single-direction figures mean the same for both backends:",
      "",
      "- **guest TX path**: testpmd `txonly` plays the guest on one vNIC, sending IPv4/UDP " +
        "frames to the other vNIC's address. The figure is testpmd's own Tx-pps: a virtio ring " +
        "takes a frame only when the backend has consumed an earlier one, so it is the rate at " +
        "which the backend empties the guest's TX ring. DPDK consumes and frees (`rxonly`); we " +
        "consume, filter and route each frame to the other vNIC, which has no guest and drops " +
        "it (counted as `rx_drop_*`).",
      "- **guest RX path**: our backend produces no frames of its own, so for both backends the " +
        "frames come from another guest: the generator (`--oneway`) floods guest A from guest B " +
        "through the backend and counts what A receives. Both backends take each frame off B's " +
        "TX ring and put it into A's RX ring (DPDK: io forwarding; ours: routing).",
      "",
    );
  }
  return out;
}

function runLines(benches: BenchResult[]): string[] {
  const out = [
    "Runs (Mpps in order; frames the backend lost for good; others' CPU use just before, load " +
    "average before→after, preemptions of the generator's loop):",
    "",
  ];
  for (const b of benches) {
    for (const r of [b.ours, b.reference]) {
      if (!r || r.skipped) continue;
      const runs = r.mpps.map((x, i) => {
        const raw = r.raw[i] as
          | { loadavg?: number[]; preempted?: number; others_busy_pct?: number; lost?: number }
          | undefined;
        const notes = [];
        if (raw?.lost) notes.push(`lost ${raw.lost} of the population`);
        if (raw?.others_busy_pct !== undefined) notes.push(`others ${raw.others_busy_pct}%`);
        if (raw?.loadavg) notes.push(`load ${raw.loadavg.map((l) => l.toFixed(1)).join("→")}`);
        if (raw?.preempted !== undefined) notes.push(`preempted ${raw.preempted}×`);
        return notes.length ? `${f(x)} (${notes.join(", ")})` : f(x);
      });
      out.push(`- ${b.id}, ${r.backend}: ${runs.join("; ")}`);
    }
  }
  return out;
}

function sgSection(rep: Report): string[] {
  const benches = rep.benchmarks.filter((b) => b.rules !== undefined);
  if (benches.length === 0) return [];
  const out = [
    "## Security-group cost",
    "",
    "The IPv4 64 B loop of ours with one security group attached to both vNICs. With a group " +
    "attached a vNIC is default-deny both ways and the loop's frames (UDP 4000 → 4001 either " +
    "way) are not replies of each other, so each vNIC needs a matching ingress and egress rule: " +
    "the smallest group that passes the loop has 2 rules; the large one puts 48 TCP rules that " +
    "never match in front of them. Ratio: against the same loop without a group, in this run.",
    "",
    "| Configuration | mvirt-net Mpps | vs no group |",
    "|---|---:|---:|",
  ];
  for (const b of benches) {
    out.push(`| ${b.title} | ${runsCell(b.ours)} | ${b.ratio === null ? "n/a" : f(b.ratio, 2)} |`);
  }
  out.push("", ...runLines(benches), "");
  return out;
}

function vmSection(rep: Report): string[] {
  const vm = rep.vm;
  if (!vm) return [];
  const out = ["## Two QEMU guests: TCP throughput and ping latency", ""];
  if (vm.skipped) return [...out, `Not measured: ${vm.skipped}.`, ""];
  const o = vm.options;
  out.push(
    `${o.rounds} round(s), each backend once per round (${
      vm.backends.map((b) => b.backend).join(", ")
    }); per round two fresh guests (TCG, 1 vCPU, 256 MiB) boot on the backend. iperf3 ${o.iperfSeconds} s, ` +
      `receiver's Mbit/s; ${o.pings} pings ${
        o.pingIntervalS * 1000
      } ms apart from A to B. Median ` +
      "(min–max) over the rounds. Under TCG these figures measure the emulator as much as the " +
      "backend; they still rank the backends. DPDK and ours poll on CPU 1, so the guests share " +
      "the other core; the kernel bridge needs no core of its own.",
    "",
    "| Backend | TCP 1 stream Mbit/s | TCP 4 streams Mbit/s | RTT p50 ms | RTT p99 ms |",
    "|---|---:|---:|---:|---:|",
  );
  for (const b of vm.backends) {
    if (b.skipped) {
      out.push(`| ${b.backend} | not run: ${b.skipped} | | | |`);
      continue;
    }
    out.push(
      `| ${b.backend} | ${summaryCell(b.tcp["1"], 0)} | ${summaryCell(b.tcp["4"], 0)} | ${
        summaryCell(b.rttP50)
      } | ${summaryCell(b.rttP99)} |`,
    );
  }
  out.push("", "Rounds:", "");
  for (const b of vm.backends) {
    for (const r of b.rounds) {
      const tcp = Object.entries(r.tcpMbps).map(([n, v]) => {
        const retr = r.tcpRetr?.[n];
        const drops = Object.entries(r.tcpDrops?.[n] ?? {}).map(([k, c]) => `${k} ${c}`);
        const extra = [
          retr === undefined || Number.isNaN(retr) ? "" : `${retr} retransmits`,
          ...drops,
        ].filter(Boolean);
        return `${n}×TCP ${v} Mbit/s${extra.length ? ` (${extra.join(", ")})` : ""}`;
      }).join(", ");
      const rtt = r.rtt ? `RTT p50 ${f(r.rtt.p50)} p99 ${f(r.rtt.p99)} ms, ${r.rtt.lost} lost` : "";
      out.push(
        `- ${b.backend}: ${[tcp, rtt, `boot ${f(r.bootS, 1)} s`].filter(Boolean).join("; ")}`,
      );
    }
  }
  out.push("");
  return out;
}

function controlSection(rep: Report): string[] {
  const c = rep.control;
  if (!c) return [];
  const mib = (x: number) => f(x / 1024 / 1024, 1);
  return [
    "## Control plane and idle cost (ours)",
    "",
    `- CreateNic until the vNIC's socket accepts, ${c.createMs.n} creates one after another: ` +
    `p50 ${f(c.createMs.p50, 1)} ms, p99 ${f(c.createMs.p99, 1)} ms (min ${
      f(c.createMs.min, 1)
    }, ` +
    `max ${f(c.createMs.max, 1)}); the RPC alone p50 ${f(c.createCallMs.p50, 1)} ms; ` +
    `${c.createRetries ?? 0} call(s) answered UNAVAILABLE and were retried (their time counts).`,
    ...(c.createServeMs
      ? [
        `- CreateNic until the vNIC serves (its actor answered a VMM's GET_FEATURES; the socket ` +
        `accepts before, and a VMM that connects waits there): p50 ${
          f(c.createServeMs.p50, 1)
        } ms, p99 ${f(c.createServeMs.p99, 1)} ms (max ${f(c.createServeMs.max, 1)}); ` +
        `${c.createServeFailures ?? 0} vNIC(s) never answered.`,
      ]
      : []),
    `- Resident memory: dataplane ${mib(c.rss.before.dataplane)} → ${mib(c.rss.after.dataplane)} ` +
    `MiB, api ${mib(c.rss.before.api)} → ${
      mib(c.rss.after.api)
    } MiB for ${c.options.nics} vNICs: ` +
    `${f(c.rss.perNicMiB, 2)} MiB per vNIC (dataplane alone ${f(c.rss.dataplanePerNicMiB, 2)}).`,
    `- Idle, ${c.idle.nics} idle vNICs, ${f(c.idle.seconds, 1)} s: dataplane ` +
    `${f(c.idle.dataplanePct, 2)} %, api ${f(c.idle.apiPct, 2)} %, root ${
      f(c.idle.rootPct, 2)
    } % ` +
    `of a core (CPU time from /proc/PID/stat, 10 ms resolution).`,
    `- Restart of the whole daemon (SIGTERM, then a new one on the same data directory) with ` +
    (c.restart.failed
      ? `${c.options.nics} vNICs: failed: ${c.restart.failed}.`
      : `${c.options.nics} vNICs: every socket accepts ${f(c.restart.allSocketsS, 2)} s after ` +
        `the new daemon was spawned` +
        (c.restart.allServeS !== undefined
          ? `, every vNIC serves (answered GET_FEATURES) after ${f(c.restart.allServeS, 2)} s`
          : "") +
        `; the api serves after ${f(c.restart.servingS, 2)} s.`),
    "",
  ];
}

function failedSection(rep: Report): string[] {
  if (!rep.failed) return [];
  return [
    "## Failed parts of this run",
    "",
    ...Object.entries(rep.failed).map(([part, why]) => `- ${part}: ${why.split("\n")[0]}`),
    "",
  ];
}

function commandsSection(rep: Report): string[] {
  const out = [
    "## Commands",
    "",
    "Exact commands of the first run of each benchmark (temporary directories, ports and DPDK " +
    "prefixes change per run; `<addr>` is the daemon's --listen).",
    "",
    "```sh",
    `# harness\n${rep.harness}`,
  ];
  for (const b of rep.benchmarks) {
    for (const r of [b.ours, b.reference]) {
      if (!r || r.skipped || r.commands.length === 0) continue;
      out.push(`# ${b.id}, ${r.backend}`, ...r.commands);
    }
  }
  if (rep.vm && !rep.vm.skipped) {
    out.push("# VM benchmarks, in the guests", ...rep.vm.guestCommands.map((c) => `#   ${c}`));
    for (const b of rep.vm.backends) {
      if (b.commands.length) out.push(`# VM benchmarks, ${b.backend}`, ...b.commands);
    }
  }
  if (rep.control) out.push("# control plane", ...rep.control.commands);
  out.push("```", "");
  return out;
}

/** The whole document. `analysis`: the hand-written section to carry over, if any. */
export function renderReport(rep: Report, targets: Target[], analysis: string | null): string {
  const h = rep.host;
  const out = [
    "# Benchmarks",
    "",
    `Measured ${rep.date} to ${rep.finished} by \`${rep.harness}\` (commit ${h.commit}). ` +
    `Machine: ${h.cpus} CPUs (nproc), ${h.cpu}, Linux ${h.kernel}, DPDK ${h.dpdk}. The machine ` +
    "is shared: figures of one run vary by ±50 %, so backends alternate and only ratios of the " +
    "same run are compared. Raw figures: `bench/results/latest.json`; how the benchmarks work: " +
    "`bench/README.md`.",
    "",
    "## Targets of issue 7",
    "",
    "| Figure | ours | reference | target | verdict | by how much |",
    "|---|---:|---:|---|---|---|",
    ...targets.map((t) =>
      `| ${t.what} | ${t.ours} | ${t.reference || "—"} | ${t.target} | ${t.verdict} | ${t.by} |`
    ),
    "",
    ...packetSection(rep),
    ...sgSection(rep),
    ...vmSection(rep),
    ...controlSection(rep),
    ...failedSection(rep),
    "## Analysis of missed targets",
    "",
    ANALYSIS_BEGIN,
    "",
    analysis ?? "(Written by hand after a full run: what a profile shows and the next step.)",
    "",
    ANALYSIS_END,
    "",
    ...commandsSection(rep),
  ];
  return out.join("\n");
}
