#!/usr/bin/env bash
# Runs the fuzz targets for a bounded time each and prints, per target, the runs, execs/s,
# new inputs and the verdict. Exit status 1 if any target found something.
#
#   fuzz/run.sh                  # every target, 60 s each
#   fuzz/run.sh -t 600 dhcpv6    # one target, 10 minutes
#
# Targets: vring and fastpath (C, libFuzzer + ASan/UBSan) and, in JavaScript with Jazzer.js (libFuzzer):
# arp ipv4 ipv6 dhcpv4 dhcpv6 ndp gateway vhost_message. New inputs go to
# build/fuzz-corpus/<target>/, findings to build/fuzz-artifacts/<target>/; the committed seeds
# are fuzz/corpus/<target>/ (merge new inputs in with -merge=1 when they add coverage).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
secs=60
if [ "${1:-}" = "-t" ]; then
  secs="$2"
  shift 2
fi
js_targets=(arp ipv4 ipv6 dhcpv4 dhcpv6 ndp gateway vhost_message)
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(vring fastpath "${js_targets[@]}")

fuzz/build.sh
fuzz/js/build.sh

failed=0
for t in "${targets[@]}"; do
  corpus="build/fuzz-corpus/$t"
  artifacts="$root/build/fuzz-artifacts/$t/"
  log="build/fuzz-artifacts/$t.log"
  mkdir -p "$corpus" "$artifacts"
  [ -d "fuzz/corpus/$t" ] || { echo "fuzz/run.sh: unknown target $t" >&2; exit 2; }
  common=(-max_total_time="$secs" -timeout=5 -rss_limit_mb=2048 -print_final_stats=1
    -artifact_prefix="$artifacts")
  set +e
  if [ "$t" = vring ] || [ "$t" = fastpath ]; then
    "build/fuzz_$t" "${common[@]}" "$corpus" "fuzz/corpus/$t" >"$log" 2>&1
  else
    (cd build/fuzz-js && node_modules/.bin/jazzer "targets/$t.js" "$root/$corpus" \
      "$root/fuzz/corpus/$t" --sync -- "${common[@]}") >"$log" 2>&1
  fi
  code=$?
  set -e
  stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -1; }
  verdict=ok
  if [ "$code" -ne 0 ] || ! grep -q "^Done [0-9]* runs" "$log"; then
    verdict="FINDING (exit $code, see $log and $artifacts)"
    failed=1
  fi
  printf '%-14s runs=%s execs/s=%s new_inputs=%s peak_rss_mb=%s %s\n' "$t" \
    "$(stat number_of_executed_units)" "$(stat average_exec_per_sec)" \
    "$(stat new_units_added)" "$(stat peak_rss_mb)" "$verdict"
done
exit "$failed"
