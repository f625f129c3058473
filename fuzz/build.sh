#!/usr/bin/env bash
# Builds the libFuzzer target build/fuzz_vring (clang, -fsanitize=fuzzer,address,undefined).
# Rebuilt only when its sources change. Needs Debian's clang and libclang-rt-14-dev.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
CLANG="${CLANG:-clang}"
srcs=(fuzz/fuzz_vring.c ffi/mem.c ffi/vring.c)
out=build/fuzz_vring
mkdir -p build
stamp="$({ cat "${srcs[@]}" ffi/mem.h ffi/vring.h "${BASH_SOURCE[0]}"; "$CLANG" --version | head -1; } | sha256sum | cut -d' ' -f1)"
if [ -x "$out" ] && [ "$(cat "$out.stamp" 2>/dev/null)" = "$stamp" ]; then
  exit 0
fi
echo "fuzz/build.sh: building $out" >&2
"$CLANG" -std=gnu11 -g -O1 -Wall -Wextra -Werror -fsanitize=fuzzer,address,undefined \
  -fno-sanitize-recover=undefined -fno-omit-frame-pointer -o "$out" "${srcs[@]}"
echo "$stamp" >"$out.stamp"
