#!/usr/bin/env bash
# Installs what the daemon (`runtime`) or the test suite (`test`) needs on a fresh Debian 12
# machine: Debian packages with apt-get when missing, Deno from npm, the npm packages of the
# import map. Safe to run again: it does nothing when everything is there.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
what="${1:-runtime}"

# gcc builds the C shim; iproute2 manages the TUN routes.
runtime_pkgs=(gcc libc6-dev iproute2)
# qemu + kernel + busybox: test guests; dpdk: load generator and reference backend;
# clang + compiler-rt: libFuzzer targets; python3-grpc*: the contract test client;
# isc-dhcp-client: the second DHCP client in guests; tcpdump: fixture captures.
test_pkgs=(qemu-system-x86 busybox-static linux-image-amd64 dpdk dpdk-dev clang
  libclang-rt-14-dev llvm python3-grpcio python3-grpc-tools isc-dhcp-client iperf3
  tcpdump kmod cpio xz-utils zstd dash debianutils util-linux coreutils pkg-config nodejs)

pkgs=("${runtime_pkgs[@]}")
[ "$what" = test ] && pkgs+=("${test_pkgs[@]}")

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: installing Debian packages: ${missing[*]}" >&2
  sudo_cmd=()
  [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# Deno itself (pinned in scripts/deno) and the npm packages of deno.json's import map.
"$root/scripts/deno" install --quiet --frozen=false >&2
