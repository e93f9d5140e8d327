#!/usr/bin/env bash
# Density: does a VE host stay flat from the 1st VE to the Nth? Run by hack/bench.sh, or alone, as root.
# Starts N idle busybox venet VEs, each with an IPv4 and an IPv6 address (so each has an nftables guard), one after
# the other, and reports:
#   - the median `run -d` time of the first 10 and of the last 10 (target: last within 1.2x of first),
#   - `ve list` with N running (target < 150 ms), `ve stat --all`,
#   - `ve set --ipadd` / `--ipdel` of one VE with N running (target < 10 ms),
#   - host memory per idle VE (MemAvailable before and after, divided by N),
# and, side by side, N idle crun and runc containers (no network: they have no VE networking) for create
# flatness and memory per container.
# Everything runs in a network namespace of its own (nsenter --net, so the mounts stay the host's): the VEs'
# host-side links, /32 routes and the nft guard table live there, never on the host.
# Environment: VZRUN (default /usr/local/bin/vzrun), RUNC (runc), BENCH_DENSITY_N (500), BENCH_DENSITY_PEERS (1:
# also crun and runc).
set -euo pipefail
. "$(dirname "$0")/bench-lib.sh"
n=${BENCH_DENSITY_N:-500}
peers=${BENCH_DENSITY_PEERS:-1}
# crun refuses a cgroup-v1-hybrid host. Its containers are started and removed from a
# private mount namespace with /sys/fs/cgroup/unified covered by a tmpfs, as hack/bench.sh
# does for all three runtimes (64 MiB: crun writes a few KiB per container there); the
# timing loop runs inside it, so crun's figures carry no extra process. vzrun and runc run
# where they are run on such a host, in its own mount namespace.
# Hook mode: bench-density.sh __crun ROOT BUNDLE N start|delete
if [ "${1:-}" = __crun ]; then
  for i in $(seq 1 "$4"); do
    t0=$EPOCHREALTIME
    if [ "$5" = start ]; then
      crun --root "$2" run -d -b "$3" "vzb-d$i" >/dev/null </dev/null
      awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f\n", (b - a) * 1000 }'
    else
      crun --root "$2" delete -f "vzb-d$i" >/dev/null 2>&1 || true
    fi
  done
  exit 0
fi
crun_hook() { # ROOT BUNDLE N start|delete
  if [ "$(findmnt -n -o FSTYPE /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2 ]; then
    unshare -m --propagation private bash -c \
      'umount /sys/fs/cgroup/unified && mount -t tmpfs -o mode=0755,size=64m vzrun-bench /sys/fs/cgroup/unified && exec bash "$0" __crun "$@"' \
      "$0" "$@"
  else
    bash "$0" __crun "$@"
  fi
}
bench_require bench-density jq nsenter
[ "$n" -ge 20 ] && [ "$n" -le 500 ] || { echo "bench-density: BENCH_DENSITY_N must be 20..500" >&2; exit 1; }

tmp=$(mktemp -d /tmp/vzrun-bench-dens.XXXXXX)
ns=vzb-dens-$$
root=$tmp/root
cleanup() {
  set +e
  for id in $("$vz" --root "$root" list -q 2>/dev/null); do "$vz" --root "$root" delete -f "$id" >/dev/null 2>&1; done
  [ -d "$tmp/crun-root" ] && crun_hook "$tmp/crun-root" "$tmp/plain" "$n" delete
  for rt in "$runc"; do
    for id in $("$rt" --root "$tmp/$(basename "$rt")-root" list -q 2>/dev/null); do
      "$rt" --root "$tmp/$(basename "$rt")-root" delete -f "$id" >/dev/null 2>&1
    done
  done
  ip netns del "$ns" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
say() { printf 'bench-density: %s\n' "$*" >&2; }
ip netns add "$ns"
ip -n "$ns" link set lo up
in_ns() { nsenter --net="/run/netns/$ns" "$@"; }

# The i-th VE's addresses: 198.51.100.1-250, then 203.0.113.1-250 (routed only inside $ns), and 2001:db8::d:i.
addr4() { if [ "$1" -le 250 ]; then echo "198.51.100.$1"; else echo "203.0.113.$(($1 - 250))"; fi; }
ms_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f\n", (b - a) * 1000 }'; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (!NR) print "n/a"; else print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
available_kib() { awk '/^MemAvailable:/ { print $2 }' /proc/meminfo; }

# 15 times: add an IPv6 address to VE, then remove it; the times go to TMP/ipadd, TMP/ipdel.
ve_set_times() { # TMP VE CMD...
  local tmp=$1 ve=$2 i t0
  shift 2
  for i in $(seq 15); do
    t0=$EPOCHREALTIME; "$@" ve set "$ve" --ipadd "2001:db8::e:$i" >/dev/null; ms_since "$t0" >>"$tmp/ipadd"
    t0=$EPOCHREALTIME; "$@" ve set "$ve" --ipdel "2001:db8::e:$i" >/dev/null; ms_since "$t0" >>"$tmp/ipdel"
  done
}

bundle() { # DIR ANNOTATIONS-JSON
  mkdir -p "$1"
  jq --arg r "$here/bundles/busybox/rootfs" --argjson a "$2" \
    '.root = {path: $r, readonly: true} | .process.args = ["sleep", "1000000"] | .process.terminal = false
     | .annotations = $a' "$here/bundles/busybox/config.json" >"$1/config.json"
}
bundle "$tmp/plain" '{}'

# N of one runtime, timing each create+start; prints the times (ms), one a line.
start_many() { # NAME CMD-PREFIX...
  local name=$1 i t0
  shift
  for i in $(seq 1 "$n"); do
    [ "$name" = vzrun ] && bundle "$tmp/ve/$i" "{\"io.vzrun.net.ip\": \"$(addr4 "$i"), 2001:db8::d:$i\"}"
    t0=$EPOCHREALTIME
    if [ "$name" = vzrun ]; then
      in_ns "$@" run -d -b "$tmp/ve/$i" "vzb-d$i" >/dev/null </dev/null
    else
      "$@" run -d -b "$tmp/plain" "vzb-d$i" >/dev/null </dev/null
    fi
    ms_since "$t0"
  done
}

declare -A first last mem
# VZRUN_POLICY: set by bench-lib.sh
runtimes=(vzrun)
[ "$peers" = 1 ] && command -v crun >/dev/null && runtimes+=(crun)
[ "$peers" = 1 ] && runtimes+=(runc)
for name in "${runtimes[@]}"; do
  case $name in
    vzrun) cmd=("$vz" --root "$root") ;;
    crun) cmd=(crun --root "$tmp/crun-root") ;;
    runc) cmd=("$runc" --root "$tmp/$(basename "$runc")-root") ;;
  esac
  sync; echo 1 >/proc/sys/vm/drop_caches
  before=$(available_kib)
  say "$name: starting $n containers"
  if [ "$name" = crun ]; then
    crun_hook "$tmp/crun-root" "$tmp/plain" "$n" start >"$tmp/$name.times"
  else
    start_many "$name" "${cmd[@]}" >"$tmp/$name.times"
  fi
  sleep 2
  # Page cache is dropped before both readings: what stays is what the containers hold
  # (their processes, cgroups, namespaces, links and guards), not files read meanwhile.
  sync; echo 1 >/proc/sys/vm/drop_caches
  after=$(available_kib)
  first[$name]=$(head -n 10 "$tmp/$name.times" | median)
  last[$name]=$(tail -n 10 "$tmp/$name.times" | median)
  mem[$name]=$(awk -v b="$before" -v a="$after" -v n="$n" 'BEGIN { printf "%.2f", (b - a) / n / 1024 }')
  if [ "$name" = vzrun ]; then
    say "vzrun: ve list, ve stat --all, ve set with $n running"
    for _ in $(seq 15); do t0=$EPOCHREALTIME; "${cmd[@]}" ve list >/dev/null; ms_since "$t0"; done >"$tmp/list"
    for _ in $(seq 5); do t0=$EPOCHREALTIME; "${cmd[@]}" ve stat --all --json >/dev/null; ms_since "$t0"; done >"$tmp/stat"
    mid=$((n / 2))
    # One shell inside the namespace times every change: each figure is vzrun's, not
    # also nsenter's (an exec more per change).
    in_ns bash -c "$(declare -f ms_since ve_set_times); ve_set_times \"\$@\"" ve-set "$tmp" "vzb-d$mid" "${cmd[@]}"
    guards=$(in_ns nft list table netdev vzrun 2>/dev/null | grep -c '^\s*chain in_' || true)
  fi
  say "$name: removing them"
  if [ "$name" = crun ]; then
    crun_hook "$tmp/crun-root" "$tmp/plain" "$n" delete
  else
    for i in $(seq 1 "$n"); do "${cmd[@]}" delete -f "vzb-d$i" >/dev/null 2>&1 || true; done
  fi
done

echo "### Density: $n idle busybox containers (vzrun: venet VEs with IPv4+IPv6 and an nft guard each)"
echo
echo "| runtime | run -d, first 10 (ms) | last 10 (ms) | last/first (target <= 1.2) | host memory per container (MiB) |"
echo "|---|---:|---:|---:|---:|"
for name in "${runtimes[@]}"; do
  awk -v r="$name" -v f="${first[$name]}" -v l="${last[$name]}" -v m="${mem[$name]}" \
    'BEGIN { printf "| %s | %.1f | %.1f | %.2f | %s |\n", r, f, l, l / f, m }'
done
echo
echo "| vzrun with $n running | median ms | target |"
echo "|---|---:|---|"
echo "| ve list | $(median <"$tmp/list") | < 150 |"
echo "| ve stat --all --json | $(median <"$tmp/stat") | |"
echo "| ve set --ipadd (one IPv6 address) | $(median <"$tmp/ipadd") | < 10 |"
echo "| ve set --ipdel | $(median <"$tmp/ipdel") | < 10 |"
echo
echo "nft guards in the shared table while $n VEs ran: $guards"
