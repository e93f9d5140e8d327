#!/usr/bin/env bash
# The /proc view (io.vzrun.proc=virtual, LXCFS binds): what the binds add to `run /bin/true`
# (target <= 1 ms), and reading /proc/meminfo inside a VE through LXCFS against the kernel's
# file (the same loop of `cat` in a VE with proc=host), as a ratio.
# Usage: hack/bench-proc.sh (root; LXCFS mounted at /var/lib/lxcfs, hack/setup.sh). BENCH_RUNS=30.
set -euo pipefail
source "$(dirname "$0")/bench-lib.sh"
bench_require bench-proc.sh hyperfine jq
grep -qs ' /var/lib/lxcfs fuse' /proc/self/mounts || { echo "bench-proc.sh: LXCFS is not mounted (hack/setup.sh)" >&2; exit 1; }
runs=${BENCH_RUNS:-30}
tmp=$(mktemp -d /tmp/vzb-proc.XXXXXX)
root=$tmp/root
trap 'for id in vzb-proc-h vzb-proc-v; do "$vz" --root "$root" delete -f $id >/dev/null 2>&1 || true; done; rm -rf "$tmp"' EXIT

bundle() { # DIR MODE ARGS-JSON
  mkdir -p "$1"
  jq --arg r "$here/bundles/busybox/rootfs" --arg m "$2" --argjson a "$3" \
    '.root = {path: $r, readonly: true} | .process.args = $a | .process.terminal = false
     | .annotations = {"io.vzrun.proc": $m, "io.vzrun.ram": "256M"}' \
    "$here/bundles/busybox/config.json" >"$1/config.json"
}
bundle "$tmp/h" host '["true"]'
bundle "$tmp/v" virtual '["true"]'
# Interleaved pairs (host, virtual, host, virtual, ...) rather than one batch after the
# other: a load that changes during the run then hits both alike, and the median of the
# pairs' differences is the binds' cost. $EPOCHREALTIME needs no fork to read the clock.
one() { # BUNDLE ID -> ms
  local t0=$EPOCHREALTIME
  "$vz" --root "$root" run -b "$1" "$2" >/dev/null </dev/null
  awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f\n", (b - a) * 1000 }'
}
for _ in 1 2 3; do one "$tmp/h" vzb-proc-h >/dev/null; one "$tmp/v" vzb-proc-v >/dev/null; done
: >"$tmp/pairs"
# Each pair's order alternates, so that whatever the first run of a pair pays (or the
# second saves) falls on both sides alike.
for i in $(seq "$runs"); do
  if [ $((i % 2)) = 0 ]; then
    echo "$(one "$tmp/h" vzb-proc-h) $(one "$tmp/v" vzb-proc-v)" >>"$tmp/pairs"
  else
    v1=$(one "$tmp/v" vzb-proc-v)
    echo "$(one "$tmp/h" vzb-proc-h) $v1" >>"$tmp/pairs"
  fi
done
median_col() { # COLUMN-EXPRESSION
  awk "{ print $1 }" "$tmp/pairs" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
h=$(median_col '$1') v=$(median_col '$2') d=$(median_col '$2 - $1')

# 1000 reads of /proc/meminfo, each a cat, in one exec; the same with the kernel's file.
loop='i=0; while [ $i -lt 1000 ]; do cat /proc/meminfo >/dev/null; i=$((i+1)); done'
bundle "$tmp/hs" host '["sleep","100000"]'
bundle "$tmp/vs" virtual '["sleep","100000"]'
"$vz" --root "$root" run -d -b "$tmp/hs" vzb-proc-h >/dev/null </dev/null
"$vz" --root "$root" run -d -b "$tmp/vs" vzb-proc-v >/dev/null </dev/null
hyperfine -N --warmup 1 --runs 5 --export-json "$tmp/read.json" \
  -n host "$vz --root $root exec vzb-proc-h sh -c '$loop'" \
  -n virtual "$vz --root $root exec vzb-proc-v sh -c '$loop'" >&2
rh=$(jq -r '.results[] | select(.command == "host") | .median * 1000' "$tmp/read.json")
rv=$(jq -r '.results[] | select(.command == "virtual") | .median * 1000' "$tmp/read.json")
awk -v h="$h" -v v="$v" -v d="$d" -v rh="$rh" -v rv="$rv" 'BEGIN {
  print "| /proc view (LXCFS) | host files | virtual (LXCFS) | difference |"
  print "|---|---:|---:|---:|"
  printf "| run /bin/true, median ms (target <= 1 ms added) | %.2f | %.2f | %+.2f ms |\n", h, v, d
  printf "| 1000 x cat /proc/meminfo in the VE, ms | %.0f | %.0f | ratio %.2f |\n", rh, rv, rv / rh
}'
