#!/usr/bin/env bash
# Builds the libFuzzer targets build/fuzz_vring and build/fuzz_fastpath (clang,
# -fsanitize=fuzzer,address,undefined). Each is rebuilt only when its sources change. Needs
# Debian's clang and libclang-rt-14-dev.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
CLANG="${CLANG:-clang}"
mkdir -p build
# build OUT SOURCE... : the sources and the shim's headers decide whether OUT is rebuilt.
build() {
  local out="$1"
  shift
  local stamp
  stamp="$({ cat "$@" ffi/*.h fuzz/input.h ffi/fastpath.c ffi/fring.c "${BASH_SOURCE[0]}"; "$CLANG" --version | head -1; } |
    sha256sum | cut -d' ' -f1)"
  if [ -x "$out" ] && [ "$(cat "$out.stamp" 2>/dev/null)" = "$stamp" ]; then
    return 0
  fi
  echo "fuzz/build.sh: building $out" >&2
  "$CLANG" -std=gnu11 -g -O1 -Wall -Wextra -Werror -fsanitize=fuzzer,address,undefined \
    -fno-sanitize-recover=undefined -fno-omit-frame-pointer -o "$out" "$@"
  echo "$stamp" >"$out.stamp"
}
build build/fuzz_vring fuzz/fuzz_vring.c ffi/mem.c ffi/vring.c
# fastpath.c is included by the target (its classification is static); fring.c is linked, and
# vring.c (mvn_frame_src_fill) with mem.c.
build build/fuzz_fastpath fuzz/fuzz_fastpath.c ffi/fring.c ffi/vring.c ffi/mem.c
