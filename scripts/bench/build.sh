#!/usr/bin/env bash
# Builds the benchmark's packet generator against Debian's dpdk-dev (DPDK 22.11):
# build/bench/mvirt-bench-gen. Writes nothing outside build/bench/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="$root/build/bench"
mkdir -p "$out"
if ! pkg-config --exists libdpdk; then
  echo "build.sh: libdpdk not found: apt-get install dpdk-dev pkg-config" >&2
  exit 1
fi
src="$root/scripts/bench/gen.c"
bin="$out/mvirt-bench-gen"
# Rebuild only when the source or this script changed.
if [ -x "$bin" ] && [ "$bin" -nt "$src" ] && [ "$bin" -nt "${BASH_SOURCE[0]}" ]; then
  exit 0
fi
# Packet code reads headers through several pointer types (rte_raw_cksum reads uint16_t
# words of a struct written through uint32_t fields): no type-based alias analysis.
# shellcheck disable=SC2046
gcc -O2 -g -Wall -Wextra -Werror -std=gnu11 -D_GNU_SOURCE -fno-strict-aliasing $(pkg-config --cflags libdpdk) \
  -o "$bin.tmp" "$src" $(pkg-config --libs libdpdk)
mv -f "$bin.tmp" "$bin"
echo "built $bin" >&2
