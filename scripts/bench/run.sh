#!/usr/bin/env bash
# Runs the packet-rate benchmarks (bench/run.ts): builds the generator, then measures.
# Arguments go to bench/run.ts (e.g. --smoke, --set all, --runs 5, --ours reference).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
scripts/bench/build.sh
exec scripts/deno run -A bench/run.ts "$@"
