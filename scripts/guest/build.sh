#!/usr/bin/env bash
# Builds the test guest used by tests/helpers/guest.ts from Debian packages:
#   build/guest/vmlinux             uncompressed kernel, extracted from /boot/vmlinuz-*
#   build/guest/initramfs.cpio.gz   busybox-static, virtio-net modules, ISC dhclient, iproute2's
#                                   ip, iperf3, the DHCP client scripts and the serial agent
#   build/guest/manifest            what was built from what (also the up-to-date key)
# Why an uncompressed vmlinux: QEMU boots an ELF vmlinux through its PVH entry point, which
# skips the in-guest decompression; under TCG that makes /init start seconds earlier.
# Idempotent: when the inputs (this directory, the kernel, the package versions) did not
# change it only compares a key and exits. Writes only under build/guest/.
# Environment: GUEST_KVER=<version> picks a kernel (default: the newest in /boot with
# modules), GUEST_FORCE=1 rebuilds, GUEST_NO_INSTALL=1 never runs apt-get.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$root/build/guest"

log() { echo "guest/build: $*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# Debian packages this script reads from. kmod: modprobe --show-depends; cpio + gzip: the
# archive; xz-utils/zstd/...: the kernel's compression (Debian 12 uses xz).
pkgs=(linux-image-amd64 busybox-static dash debianutils isc-dhcp-client iproute2 iperf3 tcpdump
  kmod cpio gzip xz-utils zstd util-linux coreutils)

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

ensure_packages() {
  local missing=() p
  for p in "${pkgs[@]}"; do installed "$p" || missing+=("$p"); done
  [ "${#missing[@]}" -eq 0 ] && return 0
  [ "${GUEST_NO_INSTALL:-0}" = 1 ] && die "missing Debian packages: ${missing[*]}"
  log "installing Debian packages: ${missing[*]}"
  local sudo_cmd=()
  [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
  # The lock timeout makes us wait for a concurrent apt-get instead of failing at once.
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
    install -y -qq --no-install-recommends "${missing[@]}" >&2 || {
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
      update -qq >&2
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
      install -y -qq --no-install-recommends "${missing[@]}" >&2
  }
}

# The newest kernel in /boot that also has its modules installed (sort -V orders versions).
pick_kernel() {
  if [ -n "${GUEST_KVER:-}" ]; then
    echo "$GUEST_KVER"
    return
  fi
  local f v best=""
  for f in /boot/vmlinuz-*; do
    [ -e "$f" ] || continue
    v="${f#/boot/vmlinuz-}"
    [ -d "/lib/modules/$v/kernel" ] || continue
    best="$(printf '%s\n%s\n' "$best" "$v" | sed '/^$/d' | sort -V | tail -1)"
  done
  echo "$best"
}

ensure_packages
kver="$(pick_kernel)"
[ -n "$kver" ] || die "no kernel with modules in /boot and /lib/modules"
vmlinuz="/boot/vmlinuz-$kver"
[ -r "$vmlinuz" ] || die "$vmlinuz is not readable"

# The up-to-date key: everything the outputs depend on.
key="$(
  {
    echo "kernel $kver $(stat -c '%s %Y' "$vmlinuz")"
    for p in "${pkgs[@]}" libc6; do
      dpkg-query -W -f='${Package} ${Version}\n' "$p" 2>/dev/null || true
    done
    find "$here" -type f -print0 | sort -z | xargs -0 sha256sum
  } | sha256sum | cut -d' ' -f1
)"
if [ "${GUEST_FORCE:-0}" != 1 ] && [ -s "$out/vmlinux" ] && [ -s "$out/initramfs.cpio.gz" ] &&
  [ -f "$out/manifest" ] && grep -qx "key $key" "$out/manifest"; then
  log "up to date ($out)"
  exit 0
fi

# Our shell scripts run under dash in the guest: catch syntax errors here, not at boot.
for f in init mv-agent mv-dhcp udhcpc.script udhcpc6.script; do
  dash -n "$here/$f" || die "syntax error in scripts/guest/$f"
done

mkdir -p "$out"
tmp="$(mktemp -d "$out/.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

# ---- kernel: find each compression magic in the bzImage and decompress from there until
# one yields an ELF image. The payload is followed by other data, so the decompressors are
# run in modes that stop at the end of the stream or tolerate trailing bytes.
extract_vmlinux() {
  local src="$1" dst="$2" name magic tool off n
  local -a specs=(
    'xz|\xfd\x37\x7a\x58\x5a\x00|xz -dc --single-stream'
    'zstd|\x28\xb5\x2f\xfd|zstd -dcq'
    'gzip|\x1f\x8b\x08|gzip -dc'
    'lzma|\x5d\x00\x00\x00|xz -dc --format=lzma --single-stream'
    'bzip2|\x42\x5a\x68|bzip2 -dc'
    'lz4|\x02\x21\x4c\x18|lz4 -dc'
    'lzo|\x89\x4c\x5a\x4f|lzop -dc'
  )
  local spec
  for spec in "${specs[@]}"; do
    IFS='|' read -r name magic tool <<<"$spec"
    command -v "${tool%% *}" >/dev/null || continue
    n=0
    # grep -obUaP prints the byte offset of every match of the binary pattern.
    while read -r off; do
      n=$((n + 1))
      [ "$n" -le 8 ] || break # a bound: the real payload is among the first matches
      # shellcheck disable=SC2086 # $tool is a command with its flags
      tail -c "+$((off + 1))" "$src" | $tool >"$dst" 2>/dev/null || true
      if [ "$(head -c 4 "$dst" | od -An -tx1 | tr -d ' \n')" = "7f454c46" ]; then
        log "kernel payload: $name at byte $off"
        return 0
      fi
    done < <(LC_ALL=C grep -obUaP "$magic" "$src" | cut -d: -f1)
  done
  return 1
}
extract_vmlinux "$vmlinuz" "$tmp/vmlinux" || die "no compressed ELF kernel found in $vmlinuz"

# ---- initramfs tree
r="$tmp/root"
mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,run,root,var/lib/dhcp,var/run}
mkdir -p "$r"/lib/x86_64-linux-gnu "$r"/lib64 "$r"/lib/modules "$r"/usr/share/udhcpc
mkdir -p "$r"/etc/dhcp/dhclient-enter-hooks.d "$r"/etc/dhcp/dhclient-exit-hooks.d

# busybox: one static binary, every applet as a symlink at the place busybox itself names.
cp /bin/busybox "$r/bin/busybox"
while read -r applet; do
  [ "$applet" = bin/busybox ] && continue
  mkdir -p "$r/$(dirname "$applet")"
  ln -sf /bin/busybox "$r/$applet"
done < <("$r/bin/busybox" --list-full)

# Copies a dynamically linked program and the libraries ldd resolves for it to the same
# paths in the tree (over a busybox applet of the same name if there is one).
add_prog() {
  local src="$1" dst="${2:-$1}" lib
  [ -x "$src" ] || die "$src is missing"
  # Drop a busybox applet of the same name wherever it is, so PATH finds this program.
  local d
  for d in bin sbin usr/bin usr/sbin; do
    [ -L "$r/$d/$(basename "$dst")" ] && rm -f "$r/$d/$(basename "$dst")"
  done
  rm -f "$r$dst"
  mkdir -p "$r$(dirname "$dst")"
  cp -L "$src" "$r$dst"
  while read -r lib; do
    [ -n "$lib" ] || continue
    mkdir -p "$r$(dirname "$lib")"
    [ -e "$r$lib" ] || cp -L "$lib" "$r$lib"
  done < <(ldd "$src" 2>/dev/null | grep -oE '(^|\s)/[^ ]+' | tr -d ' \t')
}

# dash as /bin/sh: busybox's ash runs its own applets before anything in PATH (standalone
# shell), so under it "ip" would always be busybox's ip, even in dhclient-script.
add_prog /bin/dash /bin/sh
# iproute2's ip: dhclient-script and the tests need what busybox's ip lacks (ip -j, the
# preferred_lft/valid_lft of ip -6 addr replace).
add_prog /sbin/ip /sbin/ip
# ISC dhclient: the second, independent DHCPv4/DHCPv6 client (busybox in Debian has no
# udhcpc6, so dhclient -6 is the DHCPv6 client).
add_prog /sbin/dhclient /sbin/dhclient
cp /sbin/dhclient-script "$r/sbin/dhclient-script"
# dhclient-script lists its hooks with `run-parts --list`, which busybox's run-parts lacks,
# and reads /etc/fstab to see whether / is writable (a missing file aborts the script).
add_prog /bin/run-parts /bin/run-parts
printf 'rootfs / rootfs rw 0 0\n' >"$r/etc/fstab"
cp /etc/dhcp/dhclient-exit-hooks.d/rfc3442-classless-routes "$r/etc/dhcp/dhclient-exit-hooks.d/"
add_prog /usr/bin/iperf3 /usr/bin/iperf3
# tcpdump: to see in the guest what the backend delivered (it shares iperf3's libcrypto).
add_prog /usr/bin/tcpdump /usr/bin/tcpdump

# Our files: /init, the serial agent, the udhcpc scripts, dhclient.conf.
install -m 0755 "$here/init" "$r/init"
install -m 0755 "$here/mv-agent" "$r/bin/mv-agent"
install -m 0755 "$here/mv-dhcp" "$r/bin/mv-dhcp"
install -m 0755 "$here/udhcpc.script" "$r/usr/share/udhcpc/default.script"
install -m 0755 "$here/udhcpc6.script" "$r/usr/share/udhcpc/default6.script"
install -m 0644 "$here/dhclient.conf" "$r/etc/dhcp/dhclient.conf"
# tcpdump drops its privileges to the user tcpdump after opening the capture.
printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'tcpdump:x:101:101::/nonexistent:/bin/false' \
  >"$r/etc/passwd"
printf '%s\n' 'root:x:0:' 'tcpdump:x:101:' >"$r/etc/group"
printf 'hosts: files dns\n' >"$r/etc/nsswitch.conf"
printf '127.0.0.1 localhost\n::1 localhost\n' >"$r/etc/hosts"
# The DHCP scripts rewrite it; dhclient-script copies the owner and mode of the old one.
: >"$r/etc/resolv.conf"
# For tests and debugging: which kernel the initramfs's modules belong to.
echo "$kver" >"$r/etc/mv-kernel"

# Modules: the order modprobe would load them in (dependencies first), without duplicates.
modlist="$(
  for m in virtio_pci virtio_net; do modprobe -S "$kver" --show-depends "$m"; done |
    awk '$1 == "insmod" && !seen[$2]++ { print $2 }'
)"
[ -n "$modlist" ] || die "modprobe found no virtio modules for $kver"
: >"$r/etc/mv-modules"
while read -r ko; do
  base="$(basename "$ko")"
  case "$ko" in
  *.ko) cp "$ko" "$r/lib/modules/$base" ;;
  *.ko.xz) xz -dc "$ko" >"$r/lib/modules/${base%.xz}" && base="${base%.xz}" ;;
  *.ko.zst) zstd -dcq "$ko" >"$r/lib/modules/${base%.zst}" && base="${base%.zst}" ;;
  *.ko.gz) gzip -dc "$ko" >"$r/lib/modules/${base%.gz}" && base="${base%.gz}" ;;
  *) die "unknown module file $ko" ;;
  esac
  echo "$base" >>"$r/etc/mv-modules"
done <<<"$modlist"

# The dynamically linked programs must run from the tree alone (catches a missing library).
if [ "$(id -u)" -eq 0 ]; then
  for check in "/bin/sh -c true" "/bin/run-parts --version" "/sbin/ip -V" \
    "/sbin/dhclient --version" "/usr/bin/iperf3 -v" "/usr/bin/tcpdump --version"; do
    # shellcheck disable=SC2086 # a program and its flags
    chroot "$r" $check >/dev/null 2>&1 </dev/null ||
      die "'$check' does not run inside the initramfs tree"
  done
else
  log "not root: skipping the check that the programs run inside the tree (chroot)"
fi

# newc is the format the kernel unpacks; sorted names and -n make the archive reproducible.
(cd "$r" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) |
  gzip -n -6 >"$tmp/initramfs.cpio.gz"

{
  echo "key $key"
  echo "kernel $kver"
  echo "modules $(tr '\n' ' ' <"$r/etc/mv-modules")"
  echo "vmlinux_bytes $(stat -c %s "$tmp/vmlinux")"
  echo "initramfs_bytes $(stat -c %s "$tmp/initramfs.cpio.gz")"
} >"$tmp/manifest"
mv -f "$tmp/vmlinux" "$out/vmlinux"
mv -f "$tmp/initramfs.cpio.gz" "$out/initramfs.cpio.gz"
mv -f "$tmp/manifest" "$out/manifest"
log "built $out: kernel $kver, initramfs $(stat -c %s "$out/initramfs.cpio.gz") bytes"
