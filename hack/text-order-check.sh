#!/usr/bin/env bash
# Says whether hack/text-order.txt still matches the code: how many of its names the last release build's linker
# map no longer has. lld skips such names in silence (build.rs asks it to), and each one that the core commands
# still run, under a new hash, lands somewhere in the 5.8 MB of code, where the kernel maps 64 KB around it: on
# 2026-11-30, 22 missing names of 1,310 took `run`'s parent from 1.3 to 2.1 MB of mapped code (peak RSS 4.3 ->
# 5.1 MB). Names change with the code (a function's hash covers its signature; LTO numbers its local copies) and
# with Cargo.lock, so a list goes stale without anyone touching it.
#
# Usage: hack/text-order-check.sh [MAP]   (MAP: a linker map of a release build; default: the one build.rs had
#                                           lld write beside the last `cargo build --release`)
# Environment: TEXT_ORDER_STALE_MAX=N   the most missing names that pass as current (default 5)
# Prints one line. Exit status: 0 current, 1 stale, 2 no map to check against. Callers (hack/setup.sh,
# hack/bench.sh) print the line as a warning and carry on: a stale list costs memory, never correctness.
set -euo pipefail

self=$(readlink -f "$0")
repo=$(cd "$(dirname "$self")/.." && pwd)
list=$repo/hack/text-order.txt
max=${TEXT_ORDER_STALE_MAX:-5}
map=${1:-}
if [ -z "$map" ]; then
  # build.rs writes it into the build script's OUT_DIR; the newest is the last release build's.
  map=$(ls -t "$repo"/target/release/build/vzrun-*/out/vzrun.map 2>/dev/null | head -n 1 || true)
fi
if [ -z "$map" ] || [ ! -s "$map" ]; then
  echo "text-order: no linker map of a release build to check hack/text-order.txt against (cargo build --release)"
  exit 2
fi

# The function names of the map's .text, the way hack/text-order.sh reads them.
missing=$(awk '
  NR == FNR { want[$0] = 1; n++; next }
  $1 ~ /^[0-9a-f]+$/ && NF >= 5 {
    if ($5 ~ /^\./ && NF == 5) { out = $5; next }
    if (out == ".text" && NF == 5 && ($5 in want)) { found[$5] = 1 }
  }
  END { m = 0; for (w in want) if (!(w in found)) m++; print m, n }' "$list" "$map")
read -r miss total <<<"$missing"
if [ "$miss" -gt "$max" ]; then
  echo "text-order: hack/text-order.txt is stale: $miss of its $total names are not in the binary (more than $max); run hack/text-order.sh and rebuild"
  exit 1
fi
echo "text-order: hack/text-order.txt is current ($miss of $total names missing, at most $max pass)"
