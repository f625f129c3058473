/**
 * The load generators: our loop generator (`scripts/bench/gen.c`, two virtio-user ports)
 * and testpmd as a one-port virtio-user frontend in `txonly` / `rxonly` for the
 * single-direction figures.
 * @module
 */

import type { BackendPort, BackendPorts, Direction } from "./backend.ts";
import { ealArgs, QUEUE_SIZE, TESTPMD, TESTPMD_MBUFS, virtioUserVdev } from "./dpdk.ts";
import { Proc, removeDpdkRuntimeDir, shellQuote, sleep, uniquePrefix } from "./proc.ts";
import { onInterrupt, track, untrack } from "./registry.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

/** The generator binary that `scripts/bench/build.sh` writes. */
export const GEN_BIN = `${ROOT}build/bench/mvirt-bench-gen`;

/** Builds the generator if needed (the build script skips an up-to-date binary). */
export async function buildGenerator(): Promise<void> {
  const out = await new Deno.Command(`${ROOT}scripts/bench/build.sh`, {
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`scripts/bench/build.sh failed:\n${new TextDecoder().decode(out.stderr)}`);
  }
}

/** Per-port figures of the generator. */
export interface GenPortResult {
  port: number;
  mac: string;
  rx: number;
  tx: number;
  foreign: number;
  tx_full: number;
  bad_csum?: number;
  bad_ttl?: number;
}

/** The JSON line the generator prints. */
export interface GenResult {
  tool: "mvirt-bench-gen";
  family: 4 | 6;
  frame_size: number;
  population: number;
  burst: number;
  warmup_s: number;
  duration_s: number;
  frames: number;
  mpps: number;
  gbps: number;
  lost: number;
  recovered: number;
  stopped_early: boolean;
  gw_mac: string;
  ips: [string, string];
  ports: [GenPortResult, GenPortResult];
}

/** Options of one generator run. */
export interface GenOptions {
  family: 4 | 6;
  frameSize: number;
  seconds: number;
  warmup: number;
  population: number;
  /** CPU of the generator's only lcore (its forwarding loop). */
  cpu: number;
  /** Check IPv4 checksums and TTLs on receive. */
  verify?: boolean;
  /** Circulate port 1 -> backend -> port 0 only (the guest-rx figure). */
  oneway?: boolean;
}

/** A finished run: the parsed figures and the exact command. */
export interface Run<T> {
  result: T;
  command: string;
}

function lastJsonLine(text: string, tool: string): unknown {
  const lines = text.split("\n").filter((l) => l.startsWith("{") && l.includes(`"${tool}"`));
  if (lines.length === 0) return null;
  return JSON.parse(lines[lines.length - 1]);
}

/** The generator's command line for `ports`. */
export function generatorArgv(ports: BackendPorts, o: GenOptions, prefix: string): string[] {
  const ips = o.family === 4 ? ports.ips.v4 : ports.ips.v6;
  return [
    GEN_BIN,
    ...ealArgs({
      lcores: [o.cpu],
      main: o.cpu,
      prefix,
      vdevs: ports.sockets.map((s, i) => virtioUserVdev(i, s, ports.portMacs[i])),
    }),
    "--",
    `--duration=${o.seconds}`,
    `--warmup=${o.warmup}`,
    `--population=${o.population}`,
    `--size=${o.frameSize}`,
    `--family=${o.family}`,
    `--ip0=${ips[0]}`,
    `--ip1=${ips[1]}`,
    `--mac0=${ports.portMacs[0]}`,
    `--mac1=${ports.portMacs[1]}`,
    `--gw-mac=${ports.gatewayMac}`,
    ...(o.verify ? ["--verify"] : []),
    ...(o.oneway ? ["--oneway"] : []),
  ];
}

/** Runs the loop generator against a started backend. */
export async function runGenerator(ports: BackendPorts, o: GenOptions): Promise<Run<GenResult>> {
  const prefix = uniquePrefix("gen");
  const argv = generatorArgv(ports, o, prefix);
  const unregister = onInterrupt(() => removeDpdkRuntimeDir(prefix));
  const p = track(Proc.spawn(argv));
  try {
    // EAL start-up (a few s), link and path probing (up to 10 s), warm-up, run, drain.
    const budgetMs = (o.seconds + o.warmup + 30) * 1000;
    let status = await p.wait(budgetMs);
    if (!status) status = await p.stop(2_000);
    const result = lastJsonLine(p.output(), "mvirt-bench-gen") as GenResult | null;
    if (!status.success || !result || result.frames === undefined) {
      throw new Error(
        `generator failed (exit ${status.code}):\n${shellQuote(argv)}\n${p.output().slice(-4000)}`,
      );
    }
    return { result, command: shellQuote(argv) };
  } finally {
    await p.stop(2_000);
    untrack(p);
    removeDpdkRuntimeDir(prefix);
    unregister();
  }
}

/** How long the single-direction backend may take to consume its first frames. */
const CONSUME_TIMEOUT_MS = 30_000;

/** What testpmd reports for a single-direction run. */
export interface SingleResult {
  tool: "dpdk-testpmd";
  direction: Direction;
  frame_size: number;
  /** Frames per second over the measured window, by testpmd's own clock. */
  pps: number;
  mpps: number;
  gbps: number;
  /** Packets counted in the window (TX for guest-tx, RX for guest-rx). */
  frames: number;
  duration_s: number;
}

/** Options of a single-direction run. */
export interface SingleOptions {
  direction: Direction;
  frameSize: number;
  seconds: number;
  warmup: number;
  cpu: number;
  otherCpu: number;
}

interface PortStats {
  rxPackets: number;
  txPackets: number;
  rxPps: number;
  txPps: number;
}

function parsePortStats(text: string): PortStats[] {
  const blocks = text.split("NIC statistics for port 0").slice(1);
  return blocks.map((b) => {
    const num = (re: RegExp) => Number(re.exec(b)?.[1] ?? NaN);
    return {
      rxPackets: num(/RX-packets:\s+(\d+)/),
      txPackets: num(/TX-packets:\s+(\d+)/),
      rxPps: num(/Rx-pps:\s+(\d+)/),
      txPps: num(/Tx-pps:\s+(\d+)/),
    };
  });
}

/**
 * Runs testpmd as the guest (one virtio-user port) in `txonly` (guest-tx) against a started
 * single-port backend. The figure is testpmd's own rate over
 * the window between two `show port stats 0`.
 */
export async function runSingle(port: BackendPort, o: SingleOptions): Promise<Run<SingleResult>> {
  const prefix = uniquePrefix("fe");
  const mode = ["--forward-mode=txonly", `--txpkts=${o.frameSize}`];
  const argv = [
    // Line-buffered stdout: the statistics arrive while testpmd runs.
    "stdbuf",
    "-oL",
    TESTPMD,
    ...ealArgs({
      lcores: [o.cpu, o.otherCpu],
      main: o.otherCpu,
      prefix,
      vdevs: [virtioUserVdev(0, port.socket, port.portMac)],
    }),
    "--",
    "-i",
    ...mode,
    "--port-topology=loop",
    "--nb-cores=1",
    `--total-num-mbufs=${TESTPMD_MBUFS}`,
    "--rxd=1024",
    "--txd=1024",
    `--eth-peer=0,${port.gatewayMac}`,
    // From this guest's address to the other vNIC's: a router forwards them (to a vNIC
    // without a guest, which drops them); an L2 reference ignores addresses.
    `--tx-ip=${port.ips.v4},${port.peerIps.v4}`,
  ];
  const script = [
    "start",
    "show port stats 0 (every 100 ms until TX-packets > the ring size)",
    `(${o.warmup} s) show port stats 0`,
    `(${o.seconds} s) show port stats 0`,
    "stop",
    "quit",
  ];
  const unregister = onInterrupt(() => removeDpdkRuntimeDir(prefix));
  const p = track(Proc.spawn(argv, { stdin: true }));
  try {
    // The prompt: "testpmd> ", but other output can land between ">" and " ".
    await p.waitFor(/testpmd>/, 30_000).catch((e) => {
      throw new Error(`${(e as Error).message}\n${shellQuote(argv)}\n${p.output().slice(-3000)}`);
    });
    await p.write("start\n");
    // The ring takes QUEUE_SIZE frames without any backend; more means the backend consumes.
    // A backend that negotiates slowly on a busy machine must not shorten the window.
    const started = performance.now();
    for (;;) {
      const from = p.output().length;
      await p.write("show port stats 0\n");
      await p.waitFor(/NIC statistics for port 0[\s\S]*?Tx-bps/, 10_000, from);
      const [now] = parsePortStats(p.output().slice(from));
      if (now && now.txPackets > QUEUE_SIZE) break;
      if (performance.now() - started > CONSUME_TIMEOUT_MS) {
        throw new Error(`the backend consumed no frame within ${CONSUME_TIMEOUT_MS} ms`);
      }
      await sleep(100);
    }
    await sleep(o.warmup * 1000);
    await p.write("show port stats 0\n");
    const t0 = performance.now();
    await sleep(o.seconds * 1000);
    await p.write("show port stats 0\n");
    const elapsed = (performance.now() - t0) / 1000;
    await p.waitFor(
      /NIC statistics for port 0[\s\S]*NIC statistics for port 0[\s\S]*Tx-bps/,
      10_000,
    );
    await p.write("stop\nquit\n");
    const status = await p.wait(15_000);
    const stats = parsePortStats(p.output());
    if (stats.length < 2) {
      throw new Error(
        `testpmd frontend gave no statistics (exit ${status?.code}):\n${p.output().slice(-4000)}`,
      );
    }
    const [a, b] = stats.slice(-2);
    // txonly's TX rate is what the backend took off the ring: a full ring refuses frames.
    const pps = b.txPps;
    const frames = b.txPackets - a.txPackets;
    const result: SingleResult = {
      tool: "dpdk-testpmd",
      direction: o.direction,
      frame_size: o.frameSize,
      pps,
      mpps: pps / 1e6,
      gbps: pps * o.frameSize * 8 / 1e9,
      frames,
      duration_s: elapsed,
    };
    return { result, command: `${shellQuote(argv)}  # stdin: ${script.join("; ")}` };
  } finally {
    await p.stop(3_000);
    untrack(p);
    removeDpdkRuntimeDir(prefix);
    unregister();
  }
}
