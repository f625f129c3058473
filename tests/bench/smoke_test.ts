/**
 * The benchmark suite itself still runs: the generator's frame logic passes its self-test;
 * the smoke mode of bench/run.ts moves frames through our daemon and through DPDK testpmd
 * in every packet benchmark kind (VM↔VM loop, guest TX path, guest RX path, the
 * security-group loop when the daemon has security groups), runs the control-plane
 * benchmark on 4 vNICs, and (when QEMU and the test guest are there) gets TCP and pings
 * through two guests on each of the three backends. Each leaves no process, socket, DPDK
 * runtime directory or network namespace behind. Not timed: it checks that frames moved,
 * not how fast.
 */

import { assert, assertEquals } from "../assert.ts";
import { alive, exists } from "../../bench/lib/proc.ts";
import { guestAvailable } from "../../bench/lib/guest.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

/** Runs a command with a time limit; SIGTERM (the harness cleans up), then SIGKILL, by PID. */
async function run(
  argv: string[],
  limitMs: number,
): Promise<{ code: number; pid: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const signal = (sig: Deno.Signal) => {
    try {
      child.kill(sig);
    } catch {
      // Gone.
    }
  };
  const term = setTimeout(() => signal("SIGTERM"), limitMs);
  const kill = setTimeout(() => signal("SIGKILL"), limitMs + 15_000);
  try {
    const out = await child.output();
    const dec = new TextDecoder();
    return {
      code: out.code,
      pid: child.pid,
      stdout: dec.decode(out.stdout),
      stderr: dec.decode(out.stderr),
    };
  } finally {
    clearTimeout(term);
    clearTimeout(kill);
  }
}

/** Runs bench/run.ts in smoke mode with `args`; returns the JSON report and the harness PID. */
async function smoke(args: string[], limitMs: number) {
  const out = await Deno.makeTempDir({ prefix: "mvirt-bench-smoke-" });
  try {
    const r = await run(
      [
        Deno.execPath(),
        "run",
        "-A",
        `${ROOT}bench/run.ts`,
        "--smoke",
        "--quiet",
        "--out",
        out,
        ...args,
      ],
      limitMs,
    );
    assertEquals(
      r.code,
      0,
      `bench/run.ts --smoke ${args.join(" ")} failed:\n${r.stdout}\n${r.stderr}`,
    );
    const report = JSON.parse(await Deno.readTextFile(`${out}/latest.json`));
    const md = await Deno.readTextFile(`${out}/latest.md`);
    assert(md.includes("## Targets of issue 7"), md);
    return { report, md, pid: r.pid };
  } finally {
    await Deno.remove(out, { recursive: true });
  }
}

/** Nothing of the harness is left: processes, DPDK runtime directories, namespaces. */
async function assertNothingLeft(report: { pids: number[] }, harnessPid: number): Promise<void> {
  for (const pid of report.pids) assert(!alive(pid), `process ${pid} still runs`);
  const base = Deno.uid() === 0
    ? "/var/run/dpdk"
    : `${Deno.env.get("XDG_RUNTIME_DIR") ?? "/tmp"}/dpdk`;
  const left = exists(base)
    ? [...Deno.readDirSync(base)].map((e) => e.name).filter((n) => n.includes(`-${harnessPid}-`))
    : [];
  assertEquals(left, [], "DPDK runtime directories left");
  const ns = await new Deno.Command("ip", { args: ["netns", "list"], stdout: "piped" }).output();
  const names = new TextDecoder().decode(ns.stdout);
  assert(!names.includes(`mvb-k-${harnessPid}-`), `network namespace left:\n${names}`);
}

type Runs = { raw: Record<string, unknown>[]; skipped?: string; commands: string[] } | null;

function genRuns(r: Runs, what: string): Record<string, unknown> {
  assert(r && !r.skipped, `${what} was not run: ${r?.skipped}`);
  assertEquals(r.raw.length, 1, what);
  return r.raw[0];
}

Deno.test("bench generator: frame turn-around self-test", async () => {
  const build = await run([`${ROOT}scripts/bench/build.sh`], 60_000);
  assertEquals(build.code, 0, `build failed: ${build.stderr}`);
  const r = await run([`${ROOT}build/bench/mvirt-bench-gen`, "--selftest"], 20_000);
  assertEquals(r.code, 0, `selftest failed: ${r.stdout}${r.stderr}`);
  const j = JSON.parse(r.stdout.trim());
  assertEquals(j.selftest, true);
  assert(j.cases > 0 && j.failures === 0, r.stdout);
});

Deno.test({
  name:
    "bench smoke: frames move through ours and DPDK in every packet benchmark; control plane runs",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const { report, md, pid } = await smoke([], 420_000);
    const byId = (id: string) => report.benchmarks.find((b: { id: string }) => b.id === id);
    for (const backend of ["ours", "reference"] as const) {
      const loop = genRuns(byId("loop-v4-64")[backend], `loop ${backend}`);
      assertEquals(loop.tool, "mvirt-bench-gen");
      const ports = loop.ports as { rx: number }[];
      assert(
        ports[0].rx > 0 && ports[1].rx > 0,
        `loop ${backend}: frames both ways: ${JSON.stringify(loop)}`,
      );
      const tx = genRuns(byId("guest-tx-64")[backend], `guest-tx ${backend}`);
      assert(
        (tx.frames as number) > 0,
        `guest-tx ${backend}: the backend took frames: ${JSON.stringify(tx)}`,
      );
      const rx = genRuns(byId("guest-rx-64")[backend], `guest-rx ${backend}`);
      assertEquals(rx.oneway, true);
      const rxPorts = rx.ports as { rx: number }[];
      assert(rxPorts[0].rx > 0, `guest-rx ${backend}: guest A received: ${JSON.stringify(rx)}`);
      assertEquals(rxPorts[1].rx, 0, `guest-rx ${backend}: one way only`);
    }
    assert(/\| VM↔VM loop, IPv4\/UDP, 64 B +\|/.test(md), md);
    // Our backend ran as the daemon with both vNICs, pinned, commands recorded.
    const ourCmds: string[] = byId("loop-v4-64").ours.commands;
    assert(ourCmds.some((c) => c.includes("daemon/main.ts")), ourCmds.join("\n"));
    assert(ourCmds.some((c) => c.startsWith("taskset -a -p -c 1")), ourCmds.join("\n"));
    // The security-group loop: measured, or honestly not available.
    const sg = byId("sg-2").ours;
    if (sg.skipped) assert(/not available/.test(sg.skipped), sg.skipped);
    else assert((genRuns(sg, "sg-2").frames as number) > 0, "frames passed the security group");
    const c = report.control;
    assertEquals(c.createMs.n, 4);
    assert(c.createMs.p50 > 0 && Number.isFinite(c.restart.allSocketsS), JSON.stringify(c));
    assert(c.rss.after.dataplane > 0 && Number.isFinite(c.idle.totalPct), JSON.stringify(c));
    await assertNothingLeft(report, pid);
  },
});

const noGuest = guestAvailable();

Deno.test({
  name: "bench smoke: TCP and pings between two guests on ours, DPDK and the kernel bridge",
  ignore: noGuest !== null,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const { report, pid } = await smoke(["--set", "tcp,latency"], 600_000);
    assert(!report.vm.skipped, report.vm.skipped);
    const names = report.vm.backends.map((b: { backend: string }) => b.backend);
    assertEquals(names, ["mvirt-net", "dpdk-testpmd", "kernel-bridge"]);
    for (const b of report.vm.backends) {
      assert(!b.skipped, `${b.backend}: ${b.skipped}`);
      assertEquals(b.rounds.length, 1, b.backend);
      const r = b.rounds[0];
      assert(
        r.tcpMbps["1"] > 0 && r.tcpMbps["4"] > 0,
        `${b.backend}: TCP moved: ${JSON.stringify(r)}`,
      );
      assert(r.rtt.n > 0 && r.rtt.p50 > 0, `${b.backend}: pings answered: ${JSON.stringify(r)}`);
    }
    await assertNothingLeft(report, pid);
  },
});
