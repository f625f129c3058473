#!/usr/bin/env bash
# Starts the mvirt-net daemon with its defaults (or the flags given), installing what it needs.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/install-deps.sh runtime
scripts/build-shim.sh
deno_bin="$("$root/scripts/deno" eval --quiet 'console.log(Deno.execPath())')"
# The root only spawns its two children (each with its own, narrower flags) and manages its
# directories; it loads no native code and opens no network socket.
exec "$root/scripts/deno" run --no-prompt \
  --allow-run="$deno_bin" --allow-read --allow-write --allow-env \
  daemon/main.ts "$@"
