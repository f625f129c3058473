#!/usr/bin/env bash
# Builds the JavaScript fuzzing setup into build/fuzz-js:
#  - Jazzer.js 2.1.0 and esbuild from npm (pinned by fuzz/js/package-lock.json), install
#    scripts off: Jazzer's would download a prebuilt addon or a patched LLVM, neither of
#    which can be fetched here;
#  - Jazzer's native addon compiled from its npm sources with clang++ against Debian's stock
#    libFuzzer (libclang-rt-14-dev) and node's headers (nodejs), with compat/ filling the gap
#    to the patched libFuzzer it was written for;
#  - each TypeScript target in fuzz/js/targets bundled to CommonJS with esbuild.
# Rebuilt only when its inputs change.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
out=build/fuzz-js
here=fuzz/js
CXX="${CXX:-clang++}"
libfuzzer="$(ls /usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer_no_main-x86_64.a 2>/dev/null | head -1)"
[ -n "$libfuzzer" ] || { echo "fuzz/js/build.sh: libclang-rt-14-dev is missing" >&2; exit 1; }
[ -f /usr/include/node/node_api.h ] || { echo "fuzz/js/build.sh: node headers missing (nodejs)" >&2; exit 1; }
mkdir -p "$out"

# 1. npm packages.
lock_stamp="$(cat "$here/package.json" "$here/package-lock.json" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$out/npm.stamp" 2>/dev/null)" != "$lock_stamp" ]; then
  echo "fuzz/js/build.sh: installing Jazzer.js and esbuild" >&2
  cp "$here/package.json" "$here/package-lock.json" "$out/"
  (cd "$out" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
  echo "$lock_stamp" >"$out/npm.stamp"
  rm -f "$out/addon.stamp"
fi

# 2. The native addon, where the `bindings` package looks for it.
addon_dir="$out/node_modules/@jazzer.js/fuzzer"
addon="$addon_dir/build/Release/jazzerjs.node"
addon_stamp="$({ cat "$here"/compat/*.cpp "$here"/compat/fuzzer/*.h "$libfuzzer"; "$CXX" --version | head -1; echo "$lock_stamp"; } | sha256sum | cut -d' ' -f1)"
if [ ! -f "$addon" ] || [ "$(cat "$out/addon.stamp" 2>/dev/null)" != "$addon_stamp" ]; then
  echo "fuzz/js/build.sh: compiling the Jazzer.js addon against $libfuzzer" >&2
  mkdir -p "$addon_dir/build/Release"
  "$CXX" -std=c++17 -O2 -fPIC -shared -w -DNAPI_VERSION=4 -DNAPI_CPP_EXCEPTIONS \
    -I/usr/include/node -I"$out/node_modules/node-addon-api" -I"$here/compat" \
    "$addon_dir"/*.cpp "$addon_dir"/shared/*.cpp "$here/compat/stock_libfuzzer.cpp" \
    -Wl,--whole-archive "$libfuzzer" -Wl,--no-whole-archive -lpthread -o "$addon"
  echo "$addon_stamp" >"$out/addon.stamp"
fi

# 3. The targets (esbuild is fast; always rebundle so edits to wire/ are picked up).
mkdir -p "$out/targets"
for t in "$here"/targets/*.ts; do
  name="$(basename "$t" .ts)"
  [ "$name" = common ] && continue
  "$out/node_modules/.bin/esbuild" "$t" --bundle --platform=node --format=cjs \
    --target=node18 --log-level=warning --outfile="$out/targets/$name.js"
done
