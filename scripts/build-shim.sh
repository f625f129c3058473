#!/usr/bin/env bash
# Builds the C shim: build/libmvnet.so (-O2) and build/libmvnet-asan.so (AddressSanitizer +
# UndefinedBehaviorSanitizer, for tests under MVIRT_NET_SHIM=asan). A variant is rebuilt only
# when the hash of the sources, this script and the compiler version changed.
# Usage: scripts/build-shim.sh [normal|asan|all]   (default: all)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
which="${1:-all}"
CC="${CC:-gcc}"
srcs=(ffi/mem.c ffi/vring.c ffi/fring.c ffi/fastpath.c ffi/device.c ffi/tun.c ffi/symbols.c ffi/testfe.c)
hdrs=(ffi/mem.h ffi/vring.h ffi/fring.h ffi/direct.h ffi/mvnet.h ffi/mvnet_test.h)
# -z nodelete: Deno dlcloses the library when the last Worker that opened it ends; unloading it
# would drop the device table (and leak every fd in it) just when a new Worker should adopt.
common=(-std=gnu11 -Wall -Wextra -Werror -fPIC -shared -pthread -Wl,-z,nodelete)
mkdir -p build
stamp_of() {
  { cat "${srcs[@]}" "${hdrs[@]}" "${BASH_SOURCE[0]}"; "$CC" --version | head -1; echo "$1"; } |
    sha256sum | cut -d' ' -f1
}
build() {
  local variant="$1" out="$2"
  shift 2
  local stamp
  stamp="$(stamp_of "$variant")"
  if [ -f "$out" ] && [ "$(cat "$out.stamp" 2>/dev/null)" = "$stamp" ]; then
    return 0
  fi
  echo "build-shim: building $out" >&2
  # Build into a temporary file and rename: a process that has the old .so mapped keeps it.
  "$CC" "${common[@]}" "$@" -o "$out.tmp" "${srcs[@]}"
  mv -f "$out.tmp" "$out"
  echo "$stamp" >"$out.stamp"
}
case "$which" in
normal | all) build normal build/libmvnet.so -O2 ;;&
asan | all) build asan build/libmvnet-asan.so -O1 -g -fsanitize=address,undefined \
  -fno-omit-frame-pointer -fno-sanitize-recover=undefined ;;
normal) ;;
*) echo "usage: scripts/build-shim.sh [normal|asan|all]" >&2; exit 2 ;;
esac
