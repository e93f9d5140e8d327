#!/usr/bin/env bash
# Checkpoint/restore benchmark (issue: checkpoint and restore with CRIU). Run by hack/bench.sh, or alone, as root.
# A VE whose process holds 256 MiB of touched memory (busybox awk with a 256 MiB string) is checkpointed and
# restored BENCH_CKPT_ROUNDS times by vzrun and by runc, alternating, with the same CRIU (the first in PATH).
# Each round restores the previous round's image and checkpoints the result again, so every phase works on a
# live 256 MiB VE. Reported per runtime: median wall time of `checkpoint` and of `restore -d`, the part of it
# CRIU itself spent (the last timestamp of its dump.log/restore.log), the rest (the runtime's own work), and
# the image size. hyperfine is not used: the phases are not repeatable commands (each consumes the last
# one's result).
# Environment: VZRUN (default /usr/local/bin/vzrun), RUNC (runc), BENCH_CKPT_ROUNDS (5), BENCH_CKPT_MIB (256).
set -euo pipefail
. "$(dirname "$0")/bench-lib.sh"
rounds=${BENCH_CKPT_ROUNDS:-5}
mib=${BENCH_CKPT_MIB:-256}
bench_require bench-ckpt jq criu "$runc"
criu check >/dev/null 2>&1 || { echo "bench-ckpt: criu check fails (hack/install-criu.sh)" >&2; exit 1; }

tmp=$(mktemp -d /tmp/vzrun-bench-ckpt.XXXXXX)
cleanup() {
  set +e
  "$vz" --root "$tmp/root-vzrun" delete -f bc-vzrun >/dev/null 2>&1
  "$runc" --root "$tmp/root-runc" delete -f bc-runc >/dev/null 2>&1
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

bytes=$((mib * 1048576))
jq --arg rootfs "$here/bundles/busybox/rootfs" --argjson n "$bytes" \
  '.root = {path: $rootfs, readonly: true} | .process.terminal = false
   | .process.args = ["awk", ("BEGIN{s=sprintf(\"%" + ($n|tostring) + "s\",\"\"); print length(s) > \"/dev/null\"; while(1) system(\"sleep 1000\")}")]' \
  "$here/bundles/busybox/config.json" >"$tmp/config.json"

bin() { case $1 in vzrun) echo "$vz" ;; runc) echo "$runc" ;; esac; }
now() { date +%s%N; }
# CRIU's own time: the relative timestamp of the last line of its log, in ms.
criu_ms() { tail -n1 "$1" | sed -n 's/^(\([0-9]*\)\.\([0-9]*\)).*/\1 \2/p' | awk '{printf "%.1f", $1*1000 + $2/1000}'; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR==0) print "-"; else if (NR%2) print a[(NR+1)/2]; else printf "%.1f", (a[NR/2]+a[NR/2+1])/2}'; }

for rt in vzrun runc; do
  b=$(bin $rt)
  mkdir -p "$tmp/$rt"
  (cd "$tmp" && "$b" --root "$tmp/root-$rt" run -d -b "$tmp" "bc-$rt" </dev/null >/dev/null 2>&1)
done
# Let both touch all their memory.
for _ in $(seq 50); do
  done_=1
  for rt in vzrun runc; do
    pid=$("$(bin $rt)" --root "$tmp/root-$rt" state "bc-$rt" | jq -r .pid)
    rss=$(awk '/VmRSS/{print $2}' "/proc/$pid/status")
    [ "$rss" -ge $((mib * 1024)) ] || done_=0
  done
  [ $done_ = 1 ] && break
  sleep 0.2
done

for r in $(seq "$rounds"); do
  for rt in vzrun runc; do
    b=$(bin $rt)
    img=$tmp/$rt/img-$r
    work=$tmp/$rt/work-$r
    t0=$(now)
    "$b" --root "$tmp/root-$rt" checkpoint --image-path "$img" --work-path "$work" "bc-$rt" >/dev/null 2>&1 ||
      { echo "bench-ckpt: $rt checkpoint failed (see $work/dump.log)" >&2; cat "$work/dump.log" | tail -5 >&2; exit 1; }
    t1=$(now)
    echo "$(( (t1 - t0) / 1000 ))" | awk '{printf "%.1f\n", $1/1000}' >>"$tmp/$rt.dump"
    criu_ms "$work/dump.log" >>"$tmp/$rt.dump-criu"; echo >>"$tmp/$rt.dump-criu"
    du -sb "$img" | cut -f1 >>"$tmp/$rt.size"
    t0=$(now)
    (cd "$tmp" && "$b" --root "$tmp/root-$rt" restore -d --image-path "$img" --work-path "$work" -b "$tmp" "bc-$rt" \
      </dev/null >/dev/null 2>&1) ||
      { echo "bench-ckpt: $rt restore failed (see $work/restore.log)" >&2; tail -5 "$work/restore.log" >&2; exit 1; }
    t1=$(now)
    echo "$(( (t1 - t0) / 1000 ))" | awk '{printf "%.1f\n", $1/1000}' >>"$tmp/$rt.restore"
    criu_ms "$work/restore.log" >>"$tmp/$rt.restore-criu"; echo >>"$tmp/$rt.restore-criu"
    rm -rf "$tmp/$rt/img-$((r - 1))" "$tmp/$rt/work-$((r - 1))"
  done
done

m() { grep -v '^$' "$tmp/$1" | median; }
echo "# vzrun checkpoint/restore benchmark"
echo "machine: $(uname -r), $(nproc) CPUs; $(criu --version | head -n1); ${mib} MiB touched; $rounds rounds, medians"
echo
echo "| phase | runc ms | vzrun ms | vzrun/runc | runc: CRIU ms | vzrun: CRIU ms |"
echo "|---|---:|---:|---:|---:|---:|"
for ph in dump restore; do
  a=$(m runc.$ph); b=$(m vzrun.$ph)
  ratio=$(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.2f", b/a}')
  name=$([ $ph = dump ] && echo checkpoint || echo "restore -d")
  echo "| $name | $a | $b | ${ratio}x | $(m runc.$ph-criu) | $(m vzrun.$ph-criu) |"
done
sa=$(m runc.size); sb=$(m vzrun.size)
echo
echo "image size: runc $(awk -v s="$sa" 'BEGIN{printf "%.1f", s/1048576}') MiB, vzrun $(awk -v s="$sb" 'BEGIN{printf "%.1f", s/1048576}') MiB"
