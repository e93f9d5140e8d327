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
hyperfine -N --warmup 3 --runs "$runs" --export-json "$tmp/run.json" \
  -n host "$vz --root $root run -b $tmp/h vzb-proc-h" \
  -n virtual "$vz --root $root run -b $tmp/v vzb-proc-v" >&2
med() { jq -r --arg n "$1" '.results[] | select(.command == $n) | .median * 1000' "$tmp/run.json"; }
h=$(med host) v=$(med virtual)

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
awk -v h="$h" -v v="$v" -v rh="$rh" -v rv="$rv" 'BEGIN {
  print "| /proc view (LXCFS) | host files | virtual (LXCFS) | difference |"
  print "|---|---:|---:|---:|"
  printf "| run /bin/true, median ms (target <= 1 ms added) | %.2f | %.2f | %+.2f ms |\n", h, v, v - h
  printf "| 1000 x cat /proc/meminfo in the VE, ms | %.0f | %.0f | ratio %.2f |\n", rh, rv, rv / rh
}'
