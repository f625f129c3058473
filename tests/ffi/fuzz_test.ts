/** Builds the libFuzzer target and runs it for a bounded time: any crash or sanitizer report
 * fails the test (see fuzz/README.md for long runs). */
import { assert, assertEquals } from "../assert.ts";

const root = new URL("../../", import.meta.url).pathname;

Deno.test("fuzz: descriptor walker and address translation survive 20 s of libFuzzer", async () => {
  const build = await new Deno.Command(`${root}fuzz/build.sh`, { stdout: "piped", stderr: "piped" })
    .output();
  assertEquals(build.code, 0, `fuzz/build.sh failed: ${new TextDecoder().decode(build.stderr)}`);
  const corpus = Deno.makeTempDirSync({ prefix: "mvnet-fuzz-" });
  const artifacts = `${corpus}/artifacts/`;
  Deno.mkdirSync(artifacts);
  try {
    const run = await new Deno.Command(`${root}build/fuzz_vring`, {
      args: [
        "-max_total_time=20",
        "-timeout=5",
        "-rss_limit_mb=1024",
        `-artifact_prefix=${artifacts}`,
        corpus,
        `${root}fuzz/corpus`,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const log = new TextDecoder().decode(run.stderr);
    const tail = log.split("\n").slice(-40).join("\n");
    assertEquals(run.code, 0, `the fuzzer found a problem:\n${tail}`);
    assert(/Done \d+ runs/.test(log), `the fuzzer did not finish normally:\n${tail}`);
    assertEquals([...Deno.readDirSync(artifacts)].length, 0, "no crash artifacts");
  } finally {
    Deno.removeSync(corpus, { recursive: true });
  }
});
