#!/usr/bin/env bash
# Runs the benchmark suite (bench/run.ts): builds the generator, then measures.
# Arguments go to bench/run.ts (e.g. --set pps,sg, --smoke, --runs 5, --help).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
scripts/bench/build.sh
exec scripts/deno run -A bench/run.ts "$@"
