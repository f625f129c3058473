/**
 * The VM benchmarks: two QEMU guests (TCG) on one backend; TCP throughput with iperf3 (one
 * and four streams) and ping round-trip times (p50, p99) from guest A to guest B. Three
 * backends, set up alike:
 *
 * - `mvirt-net`: our daemon, two vNICs of one network; the guests take their /32 by DHCP
 *   and reach each other through our router.
 * - `dpdk-testpmd`: testpmd io forwarding between two `net_vhost` ports (an L2 wire); the
 *   guests sit on one segment with static addresses of one /24.
 * - `kernel-bridge`: two taps on a Linux bridge inside a network namespace of our own, QEMU
 *   started in it with `vhost=off` (no /dev/vhost-net here); static addresses as above.
 * @module
 */

import type { RunParams } from "./backend.ts";
import { BenchGuest, type GuestNicSpec } from "./guest.ts";
import { MvirtNetBackend } from "./ours.ts";
import { shellQuote } from "./proc.ts";
import { onInterrupt } from "./registry.ts";
import { TestpmdReference } from "./reference.ts";
import { summarize, type Summary } from "./report.ts";

/** The backends of the VM benchmarks, in the order they alternate. */
export const VM_BACKENDS = ["mvirt-net", "dpdk-testpmd", "kernel-bridge"] as const;
/** One of {@link VM_BACKENDS}. */
export type VmBackendName = typeof VM_BACKENDS[number];

/** Static addresses of the L2 references (one /24). */
const L2_IPS: [string, string] = ["10.77.0.1", "10.77.0.2"];
const L2_PREFIX = 24;
/** Guest MACs on the L2 references. */
const L2_MACS: [string, string] = ["52:54:00:77:00:01", "52:54:00:77:00:02"];

/** Options of the VM benchmarks. */
export interface VmOptions {
  /** Rounds: each backend once per round, alternating. */
  rounds: number;
  /** iperf3 seconds per measurement. */
  iperfSeconds: number;
  /** Stream counts measured (iperf3 -P). */
  streams: number[];
  /** Pings per latency measurement, at `pingIntervalS`. */
  pings: number;
  pingIntervalS: number;
  /** Which measurements. */
  tcp: boolean;
  latency: boolean;
  backends: VmBackendName[];
  params: RunParams;
  log: (s: string) => void;
}

/** One backend-round's figures. */
export interface VmRound {
  backend: VmBackendName;
  /** Mbit/s by stream count ("1", "4"), receiver side. */
  tcpMbps: Record<string, number>;
  /** The sender's TCP retransmissions by stream count (iperf3's Retr): frames lost on the way. */
  tcpRetr?: Record<string, number>;
  /** Ours only: our drop counters that grew during each iperf3 run, by stream count. */
  tcpDrops?: Record<string, Record<string, number>>;
  /** RTTs in ms, p50/p99, and how many of the pings were lost. */
  rtt?: { p50: number; p99: number; mean: number; n: number; lost: number };
  bootS: number;
}

/** Summaries per backend. */
export interface VmBackendResult {
  backend: VmBackendName;
  rounds: VmRound[];
  tcp: Record<string, Summary>;
  rttP50?: Summary;
  rttP99?: Summary;
  commands: string[];
  skipped?: string;
}

/** The whole VM part of the report. */
export interface VmReport {
  /** Why nothing was measured (no QEMU or no test guest). */
  skipped?: string;
  options: Omit<VmOptions, "log" | "params" | "backends">;
  backends: VmBackendResult[];
  /** Guest-side commands, the same for every backend. */
  guestCommands: string[];
}

/** A started backend with the NIC specs of its two guests. */
interface VmSetup {
  nics: [GuestNicSpec, GuestNicSpec];
  netns?: string;
  /** How the guests get their address: DHCP (ours) or static /24. */
  dhcp: boolean;
  ips: [string, string];
  commands: string[];
  /** Ours only: the drop counters (name → value, non-zero ones) summed over both vNICs. */
  drops?(): Promise<Record<string, number>>;
  stop(): Promise<void>;
}

async function sh(argv: string[]): Promise<void> {
  const out = await new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdout: "null",
    stderr: "piped",
  })
    .output();
  if (!out.success) {
    throw new Error(`${shellQuote(argv)}: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
}

async function setupOurs(params: RunParams): Promise<VmSetup> {
  const b = new MvirtNetBackend();
  const p = await b.start(params);
  return {
    nics: [0, 1].map((i) => ({ kind: "vhost-user", socket: p.sockets[i], mac: p.portMacs[i] })) as [
      GuestNicSpec,
      GuestNicSpec,
    ],
    dhcp: true,
    ips: p.ips.v4,
    commands: b.commands(),
    drops: async () => {
      const sum: Record<string, number> = {};
      const d = b.daemon;
      if (!d) return sum;
      for (const nic of ["guest-a", "guest-b"]) {
        for (const c of (await d.client.diag("GetNicCounters", { nic })).counters) {
          if (/drop/.test(c.name) && c.value !== 0) sum[c.name] = (sum[c.name] ?? 0) + c.value;
        }
      }
      return sum;
    },
    stop: () => b.stop(),
  };
}

async function setupTestpmd(params: RunParams): Promise<VmSetup> {
  const b = new TestpmdReference();
  const p = await b.start(params);
  return {
    nics: [0, 1].map((i) => ({ kind: "vhost-user", socket: p.sockets[i], mac: L2_MACS[i] })) as [
      GuestNicSpec,
      GuestNicSpec,
    ],
    dhcp: false,
    ips: L2_IPS,
    commands: b.commands(),
    stop: () => b.stop(),
  };
}

let nsCounter = 0;

async function setupKernel(): Promise<VmSetup> {
  const ns = `mvb-k-${Deno.pid}-${++nsCounter}`;
  const steps = [
    ["ip", "netns", "add", ns],
    ["ip", "-n", ns, "link", "set", "lo", "up"],
    ["ip", "-n", ns, "link", "add", "br0", "type", "bridge"],
    ...["tap0", "tap1"].flatMap((t) => [
      ["ip", "-n", ns, "tuntap", "add", "dev", t, "mode", "tap"],
      ["ip", "-n", ns, "link", "set", t, "master", "br0"],
      ["ip", "-n", ns, "link", "set", t, "up"],
    ]),
    ["ip", "-n", ns, "link", "set", "br0", "up"],
  ];
  const remove = async () => {
    await sh(["ip", "netns", "del", ns]).catch(() => {});
  };
  const unregister = onInterrupt(remove);
  try {
    for (const s of steps) await sh(s);
  } catch (e) {
    await remove();
    unregister();
    throw e;
  }
  return {
    nics: [0, 1].map((i) => ({ kind: "tap", ifname: `tap${i}`, mac: L2_MACS[i] })) as [
      GuestNicSpec,
      GuestNicSpec,
    ],
    netns: ns,
    dhcp: false,
    ips: L2_IPS,
    commands: steps.map(shellQuote),
    stop: async () => {
      await remove();
      unregister();
    },
  };
}

function setup(name: VmBackendName, params: RunParams): Promise<VmSetup> {
  switch (name) {
    case "mvirt-net":
      return setupOurs(params);
    case "dpdk-testpmd":
      return setupTestpmd(params);
    case "kernel-bridge":
      return setupKernel();
  }
}

/** The nearest-rank percentile of sorted values. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p / 100 * sorted.length) - 1));
  return sorted[i];
}

/** The receiver's Mbit/s of an `iperf3 -f m` report (the SUM line with several streams). */
export function parseIperf(out: string, streams: number): number {
  const lines = out.split("\n").filter((l) => /receiver\s*$/.test(l));
  const line = streams > 1 ? lines.find((l) => l.startsWith("[SUM]")) : lines.at(-1);
  const m = line && /([\d.]+) Mbits\/sec/.exec(line);
  if (!m) throw new Error(`no receiver figure in iperf3's output:\n${out}`);
  return Number(m[1]);
}

/** The sender's retransmissions of an `iperf3 -f m` report (its Retr column), NaN if absent. */
export function parseRetransmits(out: string, streams: number): number {
  const lines = out.split("\n").filter((l) => /sender\s*$/.test(l));
  const line = streams > 1 ? lines.find((l) => l.startsWith("[SUM]")) : lines.at(-1);
  const m = line && /Mbits\/sec\s+(\d+)\s+sender/.exec(line);
  return m ? Number(m[1]) : NaN;
}

/** What grew between two counter snapshots. */
function grown(before: Record<string, number>, after: Record<string, number>) {
  const d: Record<string, number> = {};
  for (const [k, v] of Object.entries(after)) if (v > (before[k] ?? 0)) d[k] = v - (before[k] ?? 0);
  return d;
}

/** The guest-side commands, for the report. */
function guestCommands(o: VmOptions, peer = "<peer>"): string[] {
  return [
    "ours: mv-dhcp udhcpc eth0   (the /32 and the routes by DHCP); references: ip addr add 10.77.0.{1,2}/24 dev eth0",
    `B: iperf3 -s -D -1`,
    ...o.streams.map((n) => `A: iperf3 -c ${peer} -t ${o.iperfSeconds} -P ${n} -f m`),
    `A: ping -c ${o.pings} -i ${o.pingIntervalS} -W 2 ${peer}   (RTTs from each reply's time=)`,
  ];
}

async function oneRound(name: VmBackendName, o: VmOptions, round: number): Promise<{
  fig: VmRound;
  commands: string[];
}> {
  const s = await setup(name, o.params);
  const guests: BenchGuest[] = [];
  try {
    const t0 = performance.now();
    const booted = await Promise.allSettled(
      [0, 1].map((i) =>
        BenchGuest.boot({
          name: `bench-${name}-${round}-${"ab"[i]}`,
          nic: s.nics[i],
          netns: s.netns,
        })
      ),
    );
    for (const b of booted) if (b.status === "fulfilled") guests.push(b.value);
    const failed = booted.find((b): b is PromiseRejectedResult => b.status === "rejected");
    if (failed) throw failed.reason;
    const bootS = (performance.now() - t0) / 1000;
    const [a, b] = guests;
    await Promise.all(
      guests.map((g, i) =>
        s.dhcp
          ? g.run("mv-dhcp udhcpc eth0", 90_000)
          : g.run(`ip link set eth0 up && ip addr add ${s.ips[i]}/${L2_PREFIX} dev eth0`)
      ),
    );
    const peer = s.ips[1];
    // The first packets resolve ARP and (DPDK) start the forwarding; bounded.
    await a.run(`ping -c 3 -W 5 ${peer}`, 60_000);
    const fig: VmRound = { backend: name, tcpMbps: {}, bootS };
    if (o.tcp) {
      fig.tcpRetr = {};
      if (s.drops) fig.tcpDrops = {};
      for (const n of o.streams) {
        await b.run("iperf3 -s -D -1 && sleep 0.5");
        const before = s.drops ? await s.drops() : {};
        const out = await a.run(
          `iperf3 -c ${peer} -t ${o.iperfSeconds} -P ${n} -f m`,
          (o.iperfSeconds + 60) * 1000,
        );
        const key = String(n);
        fig.tcpMbps[key] = parseIperf(out.output, n);
        fig.tcpRetr[key] = parseRetransmits(out.output, n);
        let drops = "";
        if (s.drops && fig.tcpDrops) {
          fig.tcpDrops[key] = grown(before, await s.drops());
          drops = `, drops ${JSON.stringify(fig.tcpDrops[key])}`;
        }
        o.log(
          `vm ${name} round ${round}: TCP ${n} stream(s) ${fig.tcpMbps[key]} Mbit/s, ` +
            `${fig.tcpRetr[key]} retransmits${drops}`,
        );
      }
    }
    if (o.latency) {
      const out = await a.run(
        `ping -c ${o.pings} -i ${o.pingIntervalS} -W 2 ${peer} > /tmp/ping.txt; ` +
          "grep -o 'time=[0-9.]*' /tmp/ping.txt | cut -d= -f2 | tr '\\n' ' '",
        Math.ceil(o.pings * o.pingIntervalS * 20 + 60) * 1000,
        false,
      );
      const rtts = out.output.trim().split(/\s+/).filter(Boolean).map(Number).sort((x, y) => x - y);
      if (rtts.length === 0) throw new Error(`guest ${a.name}: no ping reply:\n${out.output}`);
      fig.rtt = {
        p50: percentile(rtts, 50),
        p99: percentile(rtts, 99),
        mean: rtts.reduce((x, y) => x + y, 0) / rtts.length,
        n: rtts.length,
        lost: o.pings - rtts.length,
      };
      o.log(
        `vm ${name} round ${round}: RTT p50 ${fig.rtt.p50} ms, p99 ${fig.rtt.p99} ms ` +
          `(${fig.rtt.n} replies)`,
      );
    }
    return { fig, commands: [...s.commands, ...guests.map((g) => g.command)] };
  } finally {
    await Promise.all(guests.map((g) => g.close()));
    await s.stop();
  }
}

/** Runs the VM benchmarks, backends alternating in every round. */
export async function runVmBenchmarks(o: VmOptions): Promise<VmReport> {
  const results = new Map<VmBackendName, VmBackendResult>(
    o.backends.map((b) => [b, { backend: b, rounds: [], tcp: {}, commands: [] }]),
  );
  for (let r = 1; r <= o.rounds; r++) {
    for (const name of o.backends) {
      const res = results.get(name)!;
      if (res.skipped) continue;
      let one;
      try {
        one = await oneRound(name, o, r);
      } catch (e) {
        o.log(`vm ${name} round ${r} failed, retrying once: ${(e as Error).message}`);
        try {
          one = await oneRound(name, o, r);
        } catch (e2) {
          res.skipped = `failed: ${(e2 as Error).message.split("\n")[0]}`;
          o.log(`vm ${name}: ${res.skipped}`);
          continue;
        }
      }
      res.rounds.push(one.fig);
      if (res.commands.length === 0) res.commands = one.commands;
    }
  }
  for (const res of results.values()) {
    for (const n of o.streams) {
      const v = res.rounds.map((x) => x.tcpMbps[String(n)]).filter((x) => x !== undefined);
      if (v.length) res.tcp[String(n)] = summarize(v);
    }
    const rtts = res.rounds.map((x) => x.rtt).filter((x) => x !== undefined);
    if (rtts.length) {
      res.rttP50 = summarize(rtts.map((x) => x.p50));
      res.rttP99 = summarize(rtts.map((x) => x.p99));
    }
  }
  const { log: _log, params: _params, backends: _b, ...options } = o;
  return { options, backends: [...results.values()], guestCommands: guestCommands(o) };
}
