/**
 * The benchmark itself still runs: the generator's frame logic passes its self-test, and the
 * smoke mode of bench/run.ts (1 run of 1 s, 64 B, reference only) forwards frames through
 * DPDK testpmd and leaves no process, socket or DPDK runtime directory behind. Not a timed
 * test: it checks that frames moved, not how fast.
 */

import { assert, assertEquals } from "../assert.ts";
import { alive } from "../../bench/lib/proc.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Runs a command with a time limit; kills it by PID when the limit passes. */
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
  const term = setTimeout(() => {
    try {
      child.kill("SIGTERM"); // the harness stops its own children on SIGTERM
    } catch {
      // Gone.
    }
  }, limitMs);
  const kill = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // Gone.
    }
  }, limitMs + 5_000);
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

Deno.test("bench generator: frame turn-around self-test", async () => {
  const build = await run([`${ROOT}scripts/bench/build.sh`], 60_000);
  assertEquals(build.code, 0, `build failed: ${build.stderr}`);
  const r = await run([`${ROOT}build/bench/mvirt-bench-gen`, "--selftest"], 20_000);
  assertEquals(r.code, 0, `selftest failed: ${r.stdout}${r.stderr}`);
  const j = JSON.parse(r.stdout.trim());
  assertEquals(j.selftest, true);
  assert(j.cases > 0 && j.failures === 0, r.stdout);
});

Deno.test("bench smoke: the generator forwards frames through the DPDK reference", async () => {
  const out = await Deno.makeTempDir({ prefix: "mvirt-bench-smoke-" });
  try {
    const r = await run(
      [Deno.execPath(), "run", "-A", `${ROOT}bench/run.ts`, "--smoke", "--quiet", "--out", out],
      45_000,
    );
    assertEquals(r.code, 0, `bench/run.ts --smoke failed:\n${r.stdout}\n${r.stderr}`);
    const report = JSON.parse(await Deno.readTextFile(`${out}/latest.json`));
    const ref = report.benchmarks[0].reference;
    assertEquals(ref.raw.length, 1);
    const gen = ref.raw[0];
    assertEquals(gen.tool, "mvirt-bench-gen", "the generator printed its JSON line");
    assert(gen.frames > 0, `no frame went through the reference: ${JSON.stringify(gen)}`);
    assert(gen.ports[0].rx > 0 && gen.ports[1].rx > 0, "frames went both ways");
    assertEquals(gen.frame_size, 64);
    const md = await Deno.readTextFile(`${out}/latest.md`);
    assert(md.includes("| VM↔VM loop, IPv4/UDP, 64 B |"), md);
    // Nothing left behind: processes, the sockets' directory, DPDK runtime directories.
    assert(report.pids.length >= 2, "the harness reports the PIDs it started");
    for (const pid of report.pids) assert(!alive(pid), `process ${pid} still runs`);
    const sock = /iface=(\S+)\/vnic0\.sock/.exec(ref.commands[0])?.[1];
    assert(sock, ref.commands[0]);
    assert(!exists(sock), `${sock} was not removed`);
    const base = Deno.uid() === 0
      ? "/var/run/dpdk"
      : `${Deno.env.get("XDG_RUNTIME_DIR") ?? "/tmp"}/dpdk`;
    const left = exists(base)
      ? [...Deno.readDirSync(base)].map((e) => e.name).filter((n) => n.includes(`-${r.pid}-`))
      : [];
    assertEquals(left, [], "DPDK runtime directories left");
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});
