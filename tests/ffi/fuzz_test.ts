/** Builds the fuzz targets and runs each for a bounded time: any crash, sanitizer report or
 * broken parser promise fails the test (see fuzz/README.md for long runs). */
import { assert, assertEquals } from "../assert.ts";

const root = new URL("../../", import.meta.url).pathname;
/** Seconds each JavaScript target runs in the suite; two run at a time (two cores). */
const JS_SECONDS = 5;
const JS_TARGETS = [
  "arp",
  "ipv4",
  "ipv6",
  "dhcpv4",
  "dhcpv6",
  "ndp",
  "gateway",
  "vhost_message",
];
/** Fewer runs than this in JS_SECONDS means the fuzzer did not really run the target. */
const MIN_JS_RUNS = 1000;
const decoder = new TextDecoder();

async function build(script: string): Promise<void> {
  const out = await new Deno.Command(`${root}${script}`, { stdout: "piped", stderr: "piped" })
    .output();
  assertEquals(out.code, 0, `${script} failed: ${decoder.decode(out.stderr)}`);
}

function stat(log: string, name: string): number {
  const m = new RegExp(`^stat::${name}:\\s*(\\d+)`, "m").exec(log);
  return m ? Number(m[1]) : NaN;
}

/** Runs a C libFuzzer target for `seconds` over its seed corpus; any finding fails. */
async function runNative(target: string, seconds: number): Promise<void> {
  await build("fuzz/build.sh");
  const corpus = Deno.makeTempDirSync({ prefix: "mvnet-fuzz-" });
  const artifacts = `${corpus}/artifacts/`;
  Deno.mkdirSync(artifacts);
  try {
    const run = await new Deno.Command(`${root}build/fuzz_${target}`, {
      args: [
        `-max_total_time=${seconds}`,
        "-timeout=5",
        "-rss_limit_mb=1024",
        `-artifact_prefix=${artifacts}`,
        corpus,
        `${root}fuzz/corpus/${target}`,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const log = decoder.decode(run.stderr);
    const tail = log.split("\n").slice(-40).join("\n");
    assertEquals(run.code, 0, `the fuzzer found a problem:\n${tail}`);
    assert(/Done \d+ runs/.test(log), `the fuzzer did not finish normally:\n${tail}`);
    assertEquals([...Deno.readDirSync(artifacts)].length, 0, "no crash artifacts");
  } finally {
    Deno.removeSync(corpus, { recursive: true });
  }
}

Deno.test("fuzz: descriptor walker and address translation survive 20 s of libFuzzer", async () => {
  await runNative("vring", 20);
});

Deno.test("fuzz: the forwarding fast path and its frame ring survive 10 s of libFuzzer", async () => {
  await runNative("fastpath", 10);
});

interface JsRun {
  target: string;
  code: number;
  log: string;
  artifacts: number;
}

async function runJsTarget(target: string, scratch: string): Promise<JsRun> {
  const corpus = `${scratch}/${target}`;
  const artifacts = `${scratch}/${target}-artifacts/`;
  Deno.mkdirSync(corpus);
  Deno.mkdirSync(artifacts);
  const out = await new Deno.Command(`${root}build/fuzz-js/node_modules/.bin/jazzer`, {
    args: [
      `targets/${target}.js`,
      corpus,
      `${root}fuzz/corpus/${target}`,
      "--sync",
      "--",
      `-max_total_time=${JS_SECONDS}`,
      "-timeout=5",
      "-rss_limit_mb=1024",
      "-print_final_stats=1",
      `-artifact_prefix=${artifacts}`,
    ],
    cwd: `${root}build/fuzz-js`,
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout((JS_SECONDS + 60) * 1000),
  }).output();
  const log = decoder.decode(out.stdout) + decoder.decode(out.stderr);
  return { target, code: out.code, log, artifacts: [...Deno.readDirSync(artifacts)].length };
}

Deno.test(
  `fuzz: wire parsers, gateway services and the vhost-user message parser survive ${JS_SECONDS} s each of Jazzer.js (libFuzzer)`,
  async () => {
    await build("fuzz/js/build.sh");
    const scratch = Deno.makeTempDirSync({ prefix: "mvnet-fuzz-js-" });
    try {
      const runs: JsRun[] = [];
      for (let i = 0; i < JS_TARGETS.length; i += 2) {
        runs.push(
          ...await Promise.all(JS_TARGETS.slice(i, i + 2).map((t) => runJsTarget(t, scratch))),
        );
      }
      const rows = runs.map((r) =>
        `${r.target.padEnd(14)} runs=${stat(r.log, "number_of_executed_units")} ` +
        `execs/s=${stat(r.log, "average_exec_per_sec")} ` +
        `new_inputs=${stat(r.log, "new_units_added")}`
      );
      console.log(`Jazzer.js, ${JS_SECONDS} s per target:\n${rows.join("\n")}`);
      for (const r of runs) {
        const tail = r.log.split("\n").filter((l) => !l.startsWith("Transformation error"))
          .slice(-30).join("\n");
        assertEquals(r.code, 0, `${r.target}: the fuzzer found a problem:\n${tail}`);
        assert(/Done \d+ runs/.test(r.log), `${r.target}: did not finish normally:\n${tail}`);
        assertEquals(r.artifacts, 0, `${r.target}: crash artifacts written`);
        const n = stat(r.log, "number_of_executed_units");
        assert(n >= MIN_JS_RUNS, `${r.target}: only ${n} runs in ${JS_SECONDS} s`);
      }
    } finally {
      Deno.removeSync(scratch, { recursive: true });
    }
  },
);
