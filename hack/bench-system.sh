#!/usr/bin/env bash
# System VE benchmarks (issue: a VE is a whole Linux system). Run by hack/bench.sh, or alone, as root.
#   1. `ve start` until the VE's own web server answers (started by its init's scripts, not by vzrun), for the
#      busybox system VE (busybox init, rcS, httpd) and, when the Debian template is cached, for a Debian VE
#      (sysvinit, runlevel 2, lighttpd). Each run begins from a stopped VE (`ve stop --fast` as --prepare).
#   2. Memory of an idle Debian VE: its memory cgroup's usage 10 s after boot (target < 16 MiB), with the
#      anonymous and page-cache parts; the same for the busybox VE for scale.
#   3. A clean `ve stop` (init runs the shutdown scripts) once per VE, wall time.
# Environment: VZRUN (default /usr/local/bin/vzrun), BENCH_SYS_RUNS (10), BENCH_DEB_DATA (/var/lib/vzrun: where
# the integration tests cache the Debian template), BENCH_DEB_TEMPLATE (vzt-debian-12). Addresses: 198.51.100.230-231.
set -euo pipefail

# Inner helper for hyperfine: start a VE, then poll its web server until it answers.
if [ "${1:-}" = __start_wait ]; then
  id=$2 ip=$3
  "$VZRUN" --root "$ROOT" ve start "$id" >/dev/null
  for _ in $(seq 1 6000); do
    if exec 3<>"/dev/tcp/$ip/80" 2>/dev/null; then
      printf 'GET / HTTP/1.0\r\n\r\n' >&3
      if read -r line <&3 && [[ $line == HTTP/* ]]; then exec 3>&-; exit 0; fi
      exec 3>&-
    fi
    sleep 0.005
  done
  echo "no answer from $ip" >&2
  exit 1
fi

. "$(dirname "$0")/bench-lib.sh"
self=$here/hack/bench-system.sh
export VZRUN=$vz
runs=${BENCH_SYS_RUNS:-10}
deb_data=${BENCH_DEB_DATA:-/var/lib/vzrun}
deb_tpl=${BENCH_DEB_TEMPLATE:-vzt-debian-12}
bench_require bench-system hyperfine

tmp=$(mktemp -d /tmp/vzrun-bench-sys.XXXXXX)
export ROOT=$tmp/root
bb_data=$tmp/data
bb=vzb-sys-bb-$$
deb=vzb-sys-deb-$$
cleanup() {
  set +e
  VZRUN_DATA_DIR=$bb_data "$VZRUN" --root "$ROOT" ve stop --fast "$bb" >/dev/null 2>&1
  VZRUN_DATA_DIR=$bb_data "$VZRUN" --root "$ROOT" ve destroy "$bb" >/dev/null 2>&1
  VZRUN_DATA_DIR=$deb_data "$VZRUN" --root "$ROOT" ve stop --fast "$deb" >/dev/null 2>&1
  VZRUN_DATA_DIR=$deb_data "$VZRUN" --root "$ROOT" ve destroy "$deb" >/dev/null 2>&1
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
say() { printf 'bench-system: %s\n' "$*" >&2; }
median() { jq -r '.results[0].median * 1000 | . * 10 | round / 10' "$1"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

# The memory cgroup of a VE's init: usage, anonymous memory, page cache (v1 or v2 names).
memory() { # ID DATA
  local pid dir
  pid=$(VZRUN_DATA_DIR=$2 "$VZRUN" --root "$ROOT" state "$1" | jq -r .pid)
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    dir=/sys/fs/cgroup$(awk -F: '$1 == "0" { print $3 }' "/proc/$pid/cgroup")
    echo "$(cat "$dir/memory.current") $(awk '$1 == "anon" { print $2 }' "$dir/memory.stat") \
$(awk '$1 == "file" { print $2 }' "$dir/memory.stat")"
  else
    dir=/sys/fs/cgroup/memory$(awk -F: '$2 ~ /(^|,)memory(,|$)/ { print $3 }' "/proc/$pid/cgroup")
    echo "$(cat "$dir/memory.usage_in_bytes") $(awk '$1 == "total_rss" { print $2 }' "$dir/memory.stat") \
$(awk '$1 == "total_cache" { print $2 }' "$dir/memory.stat")"
  fi
}

# Sum of the resident sets of the VE's processes (shared pages counted in each: an upper bound).
rss_sum() { # ID DATA
  local pid dir
  pid=$(VZRUN_DATA_DIR=$2 "$VZRUN" --root "$ROOT" state "$1" | jq -r .pid)
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    dir=/sys/fs/cgroup$(awk -F: '$1 == "0" { print $3 }' "/proc/$pid/cgroup")
  else
    dir=/sys/fs/cgroup/pids$(awk -F: '$2 ~ /(^|,)pids(,|$)/ { print $3 }' "/proc/$pid/cgroup")
  fi
  for p in $(cat "$dir/cgroup.procs"); do awk '$1 == "Rss:" { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null; done |
    awk '{ s += $1 } END { print s * 1024 }'
}

stop_time() { # ID DATA: wall ms of a clean stop
  local t0 t1
  t0=$(date +%s%N)
  VZRUN_DATA_DIR=$2 "$VZRUN" --root "$ROOT" ve stop "$1" >&2
  t1=$(date +%s%N)
  echo $(((t1 - t0) / 1000000))
}

bench_ve() { # NAME ID DATA IP
  say "$1: ve start until its web server answers ($runs runs)"
  VZRUN_DATA_DIR=$3 hyperfine -N --runs "$runs" --style basic \
    --prepare "$VZRUN --root $ROOT ve stop --fast $2" \
    -n "$1" "$self __start_wait $2 $4" --export-json "$tmp/$1.json" >&2
}

# busybox ---------------------------------------------------------------------------------------------
VZRUN_DATA_DIR=$bb_data "$VZRUN" --root "$ROOT" ve create "$bb" --template busybox --ipadd 198.51.100.230 >/dev/null
VZRUN_DATA_DIR=$bb_data "$VZRUN" --root "$ROOT" ve start "$bb" >/dev/null
bench_ve busybox "$bb" "$bb_data" 198.51.100.230
sleep 10
read -r bb_use bb_anon bb_cache < <(memory "$bb" "$bb_data")
bb_rss=$(rss_sum "$bb" "$bb_data")
bb_stop=$(stop_time "$bb" "$bb_data")

# Debian ----------------------------------------------------------------------------------------------
have_deb=0
if [ -f "$deb_data/templates/$deb_tpl/template.json" ]; then
  have_deb=1
  VZRUN_DATA_DIR=$deb_data "$VZRUN" --root "$ROOT" ve create "$deb" --template "$deb_tpl" --ipadd 198.51.100.231 >/dev/null
  VZRUN_DATA_DIR=$deb_data "$VZRUN" --root "$ROOT" ve start "$deb" >/dev/null
  bench_ve debian "$deb" "$deb_data" 198.51.100.231
  say "debian: idle for 10 s, then its memory cgroup is read"
  sleep 10
  read -r deb_use deb_anon deb_cache < <(memory "$deb" "$deb_data")
  deb_rss=$(rss_sum "$deb" "$deb_data")
  deb_stop=$(stop_time "$deb" "$deb_data")
else
  say "SKIP debian: template $deb_tpl not cached in $deb_data (cargo test --test system builds it)"
fi

# Report ----------------------------------------------------------------------------------------------
echo "### System VEs (hyperfine, $runs runs, medians)"
echo
echo "| VE | ve start -> service answers | clean ve stop | idle memory (cgroup) | of which anon / page cache | RSS sum of its processes |"
echo "|---|---:|---:|---:|---:|---:|"
echo "| busybox init + httpd | $(median "$tmp/busybox.json") ms | $bb_stop ms | $(mib "$bb_use") MiB | $(mib "$bb_anon") / $(mib "$bb_cache") MiB | $(mib "$bb_rss") MiB |"
if [ "$have_deb" = 1 ]; then
  verdict=$(awk -v b="$deb_use" 'BEGIN { print (b < 16 * 1048576) ? "under" : "OVER" }')
  echo "| Debian 12, sysvinit + lighttpd | $(median "$tmp/debian.json") ms | $deb_stop ms | $(mib "$deb_use") MiB ($verdict the 16 MiB target) | $(mib "$deb_anon") / $(mib "$deb_cache") MiB | $(mib "$deb_rss") MiB |"
fi
echo
echo "The cgroup figure counts the page cache a VE brought in itself; pages of the template's files that"
echo "another VE (or an earlier run) read first are charged there, so VEs on one template share them."
