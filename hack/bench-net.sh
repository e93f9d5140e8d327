#!/usr/bin/env bash
# Network benchmarks for VEs (issue: VE networking). Run by hack/bench.sh, or alone, as root.
#   1. `run /bin/true` with one venet address against the same without network (hyperfine, one invocation).
#   2. TCP throughput host <-> VE over venet and over veth (bridge), against a plain veth pair set up by
#      hand (iperf3; the server runs in the VE's network namespace through nsenter, as the busybox VE has
#      no iperf3).
#   3. 200 VEs with an address each: time of each `create`; the last ten against the first ten.
# Addresses: 198.51.100.0/24 and 203.0.113.0/24 only; everything is removed on exit.
# Environment: VZRUN (default /usr/local/bin/vzrun), BENCH_RUNS (30), BENCH_VES (200), BENCH_IPERF_SECS (10),
# BENCH_IPERF_RUNS (5: rounds of plain, venet, veth one after the other; median and spread of each).
set -euo pipefail
. "$(dirname "$0")/bench-lib.sh"
runs=${BENCH_RUNS:-30}
nves=${BENCH_VES:-200}
secs=${BENCH_IPERF_SECS:-10}
iperf_runs=${BENCH_IPERF_RUNS:-5}
bench_require bench-net hyperfine iperf3 jq nsenter

tmp=$(mktemp -d /tmp/vzrun-bench-net.XXXXXX)
root=$tmp/root
br=vzbbr$$
plain_ns=vzb-plain-$$
cleanup() {
  set +e
  for id in $("$vz" --root "$root" list -q 2>/dev/null); do "$vz" --root "$root" delete -f "$id" >/dev/null 2>&1; done
  ip link del "$br" 2>/dev/null
  ip link del vzbplain$$ 2>/dev/null
  ip netns del "$plain_ns" 2>/dev/null
  pkill -f "iperf3 -s -p 52" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

mkbundle() { # DIR ARGS_JSON ANNOTATIONS_JSON
  mkdir -p "$1"
  jq --arg rootfs "$here/bundles/busybox/rootfs" --argjson args "$2" --argjson ann "$3" \
    '.root = {path: $rootfs, readonly: true} | .process.args = $args | .annotations = $ann
     | .process.capabilities.bounding += ["CAP_NET_RAW","CAP_NET_ADMIN"]
     | .process.capabilities.effective += ["CAP_NET_RAW","CAP_NET_ADMIN"]
     | .process.capabilities.permitted += ["CAP_NET_RAW","CAP_NET_ADMIN"]' \
    "$here/bundles/busybox/config.json" > "$1/config.json"
}
ms() { jq -r ".results[$1].median * 1000 | . * 100 | round / 100" "$2"; }

echo "# vzrun network benchmarks"
echo "machine: $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo

# 1. run with and without a venet address
mkbundle "$tmp/plain" '["/bin/true"]' '{}'
mkbundle "$tmp/venet" '["/bin/true"]' '{"io.vzrun.net.ip":"198.51.100.250"}'
hyperfine -N --warmup 3 --runs "$runs" --export-json "$tmp/run.json" \
  -n "no network" "$vz --root $root run -b $tmp/plain bn-plain" \
  -n "one venet address" "$vz --root $root run -b $tmp/venet bn-venet" >/dev/null 2>&1
a=$(ms 0 "$tmp/run.json"); b=$(ms 1 "$tmp/run.json")
echo "| run /bin/true | median ms |"
echo "|---|---:|"
echo "| no network | $a |"
echo "| one venet address | $b |"
echo "| added by network setup | $(echo "$b - $a" | bc -l | awk '{printf "%.2f", $1}') |"
echo

# 2. throughput
iperf_to() { # NETNS_PID_OR_NAME ADDR PORT  -> Gbit/s
  local where=$1 addr=$2 port=$3
  if [[ $where =~ ^[0-9]+$ ]]; then nsenter -t "$where" -n iperf3 -s -p "$port" -1 -D >/dev/null 2>&1
  else ip netns exec "$where" iperf3 -s -p "$port" -1 -D >/dev/null 2>&1; fi
  sleep 0.5
  iperf3 -c "$addr" -p "$port" -t "$secs" -J 2>/dev/null | jq -r '.end.sum_received.bits_per_second / 1e9 | . * 100 | round / 100'
}
ip netns add "$plain_ns"
ip link add vzbplain$$ type veth peer name eth0 netns "$plain_ns"
ip addr add 203.0.113.201/32 dev vzbplain$$; ip link set vzbplain$$ up
ip -n "$plain_ns" link set lo up; ip -n "$plain_ns" link set eth0 up
ip -n "$plain_ns" addr add 203.0.113.202/32 dev eth0
ip -n "$plain_ns" route add 203.0.113.201/32 dev eth0
ip route add 203.0.113.202/32 dev vzbplain$$
mkbundle "$tmp/tv" '["sleep","600"]' '{"io.vzrun.net.ip":"198.51.100.249"}'
"$vz" --root "$root" run -d -b "$tmp/tv" bn-tput-venet
ip link add "$br" type bridge; ip addr add 203.0.113.1/24 dev "$br"; ip link set "$br" up
mkbundle "$tmp/tb" '["sleep","600"]' "{\"io.vzrun.net.mode\":\"veth\",\"io.vzrun.net.bridge\":\"$br\",\"io.vzrun.net.ip\":\"203.0.113.20/24\",\"io.vzrun.net.gateway\":\"203.0.113.1\"}"
"$vz" --root "$root" run -d -b "$tmp/tb" bn-tput-veth
venet_pid=$("$vz" --root "$root" state bn-tput-venet | jq .pid)
veth_pid=$("$vz" --root "$root" state bn-tput-veth | jq .pid)
# Rounds, so that a slow stretch of the machine hits all three alike.
for _ in $(seq "$iperf_runs"); do
  iperf_to "$plain_ns" 203.0.113.202 5201 >>"$tmp/tput.plain"
  iperf_to "$venet_pid" 198.51.100.249 5202 >>"$tmp/tput.venet"
  iperf_to "$veth_pid" 203.0.113.20 5203 >>"$tmp/tput.veth"
done
med() { sort -g "$1" | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
spread() { sort -g "$1" | awk 'NR == 1 { lo = $1 } { hi = $1 } END { print lo "-" hi }'; }
plain=$(med "$tmp/tput.plain") venet=$(med "$tmp/tput.venet") veth=$(med "$tmp/tput.veth")
pct() { echo "$1 $2" | awk '{ if ($2 > 0) printf "%.0f%%", 100*$1/$2; else print "n/a" }'; }
echo "| TCP host -> VE (iperf3, $iperf_runs runs of $secs s) | median Gbit/s | spread | median of plain veth (target >= 95%) |"
echo "|---|---:|---:|---:|"
echo "| plain veth pair (by hand) | $plain | $(spread "$tmp/tput.plain") | 100% |"
echo "| venet | $venet | $(spread "$tmp/tput.venet") | $(pct "$venet" "$plain") |"
echo "| veth on a bridge | $veth | $(spread "$tmp/tput.veth") | $(pct "$veth" "$plain") |"
echo
"$vz" --root "$root" delete -f bn-tput-venet; "$vz" --root "$root" delete -f bn-tput-veth

# 3. 200 VEs
mkdir -p "$tmp/many"
for i in $(seq 1 "$nves"); do
  a=$((i / 250)); b=$((i % 250 + 1))
  mkbundle "$tmp/many/$i" '["sleep","600"]' "{\"io.vzrun.net.ip\":\"198.51.$((100 + a)).$b\"}"
done
# Only 198.51.100.0/24 is ours: keep to it.
[ "$nves" -le 240 ] || { echo "BENCH_VES must be <= 240" >&2; exit 1; }
: > "$tmp/times"
for i in $(seq 1 "$nves"); do
  s=$(date +%s%N)
  "$vz" --root "$root" create -b "$tmp/many/$i" "bn-many-$i" >/dev/null
  e=$(date +%s%N)
  echo $(( (e - s) / 1000 )) >> "$tmp/times"
done
first=$(head -n 10 "$tmp/times" | awk '{s+=$1} END {printf "%.2f", s/NR/1000}')
last=$(tail -n 10 "$tmp/times" | awk '{s+=$1} END {printf "%.2f", s/NR/1000}')
echo "| $nves VEs with an address each | ms per create |"
echo "|---|---:|"
echo "| first 10 creates (mean) | $first |"
echo "| last 10 creates (mean) | $last |"
echo "| last / first | $(echo "$last $first" | awk '{printf "%.2f", $1/$2}') |"
