/**
 * Prints `tests: N passed, N failed` (and `, N skipped`) from a JUnit report of `deno test`,
 * and exits 1 when any test failed or none ran.
 * @module
 */

const path = Deno.args[0];
if (!path) {
  console.error("usage: junit-summary.ts REPORT.xml");
  Deno.exit(2);
}
const xml = Deno.readTextFileSync(path);
let passed = 0;
let failed = 0;
let skipped = 0;
// Each <testcase ...> is either self-closing (passed) or has a body with <failure>/<skipped>.
const re = /<testcase\b[^>]*?(\/>|>([\s\S]*?)<\/testcase>)/g;
for (const m of xml.matchAll(re)) {
  const body = m[2] ?? "";
  if (/<failure\b|<error\b/.test(body)) failed++;
  else if (/<skipped\b/.test(body)) skipped++;
  else passed++;
}
// A file that fails to load produces no testcase but counts as a failure of the suite.
const suiteFailures = [...xml.matchAll(/<testsuites\b[^>]*\bfailures="(\d+)"/g)]
  .reduce((n, m) => n + Number(m[1]), 0);
if (suiteFailures > failed) failed = suiteFailures;
console.log(`tests: ${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ""}`);
Deno.exit(failed > 0 || passed === 0 ? 1 : 0);
