#!/usr/bin/env bash
# Runs the whole test suite from a fresh checkout: installs what the tests need, builds the C
# shim (normal and ASan), the test guest, then runs every Deno test. Writes a JUnit report to
# tests/.out/junit.xml and prints one line `tests: N passed, N failed`.
# Extra arguments go to `deno test` (e.g. a path or `--filter NAME`).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/install-deps.sh test
scripts/build-shim.sh
[ -x scripts/guest/build.sh ] && scripts/guest/build.sh
mkdir -p tests/.out
junit="tests/.out/junit.xml"
rm -f "$junit"
set +e
scripts/deno test -A --no-prompt --junit-path="$junit" "${@:-tests/}"
status=$?
set -e
if [ -s "$junit" ]; then
  scripts/deno run --allow-read scripts/junit-summary.ts "$junit" | tee tests/.out/summary.txt
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
else
  echo "tests: 0 passed, 1 failed" | tee tests/.out/summary.txt
  echo "test.sh: no JUnit report was written (deno test exited $status)" >&2
  status=1
fi
exit "$status"
