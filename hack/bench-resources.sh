#!/usr/bin/env bash
# Resource-management benchmarks (issue: VE resources). Run by hack/bench.sh, or alone, as root.
#   1. Overhead: a CPU-bound job and a syscall-heavy job (about a second each) inside a VE with limits set but not reached, against
#      the same busybox binary on the host. The VE figure has `vzrun exec VE true` subtracted, so what remains
#      is the job's own cost under the VE's cgroups and namespaces.
#   2. `ve list` over BENCH_VES running VEs (target < 100 ms) and `ve stat` of one (target < 10 ms), with
#      `runc list` over as many runc containers for scale.
#   3. `run /bin/true` with a private disk area (io.vzrun.diskspace) against without (target: <= 30 ms added).
# Environment: VZRUN (default /usr/local/bin/vzrun), RUNC (runc), BENCH_RUNS (20), BENCH_VES (200).
set -euo pipefail
. "$(dirname "$0")/bench-lib.sh"
runs=${BENCH_RUNS:-20}
nves=${BENCH_VES:-200}
bench_require bench-resources hyperfine jq
rootfs=$here/bundles/busybox/rootfs

tmp=$(mktemp -d /tmp/vzrun-bench-res.XXXXXX)
root=$tmp/root
rroot=$tmp/runc-root
cleanup() {
  set +e
  for id in $("$vz" --root "$root" list -q 2>/dev/null); do "$vz" --root "$root" delete -f "$id" >/dev/null 2>&1; done
  for id in $("$runc" --root "$rroot" list -q 2>/dev/null); do "$runc" --root "$rroot" delete -f "$id" >/dev/null 2>&1; done
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
say() { printf 'bench-resources: %s\n' "$*" >&2; }

mkbundle() { # DIR ARGS_JSON ANNOTATIONS_JSON [READONLY]
  mkdir -p "$1"
  jq --arg rootfs "$rootfs" --argjson args "$2" --argjson ann "$3" --argjson ro "${4:-true}" \
    '.root = {path: $rootfs, readonly: $ro} | .process.args = $args | .process.terminal = false
     | .annotations = $ann' "$here/bundles/busybox/config.json" >"$1/config.json"
}
median() { jq -r --arg c "$2" '.results[] | select(.command == $c) | .median * 1000 | . * 100 | round / 100' "$1"; }
hf() { hyperfine -N --warmup 2 --runs "$runs" --style basic "$@" >&2; }

cpu_job='i=0; while [ $i -lt 1000000 ]; do i=$((i+1)); done'
sys_job='dd if=/dev/zero of=/dev/null bs=1 count=1500000 2>/dev/null'

# 1. Overhead --------------------------------------------------------------------------------------------
limits='{"io.vzrun.cpuunits":"1000","io.vzrun.cpulimit":"'$((100 * $(nproc)))'","io.vzrun.ram":"1G",
         "io.vzrun.numproc":"1000","io.vzrun.numfile":"1024","io.vzrun.diskspace":"1G"}'
mkbundle "$tmp/ovh" '["sleep","3600"]' "$limits" false
"$vz" --root "$root" run -d -b "$tmp/ovh" ovh >/dev/null
say "overhead: jobs on the host and in a VE with limits set"
hf -n host-cpu "$rootfs/bin/busybox sh -c '$cpu_job'" \
  -n ve-cpu "$vz --root $root exec ovh sh -c '$cpu_job'" \
  -n host-sys "$rootfs/bin/busybox sh -c '$sys_job'" \
  -n ve-sys "$vz --root $root exec ovh sh -c '$sys_job'" \
  -n ve-true "$vz --root $root exec ovh true" --export-json "$tmp/ovh.json"
"$vz" --root "$root" delete -f ovh >/dev/null

# 2. ve list / ve stat over many VEs --------------------------------------------------------------------
say "starting $nves VEs and $nves runc containers"
mkbundle "$tmp/many" '["sleep","3600"]' '{"io.vzrun.numproc":"100","io.vzrun.ram":"64M"}'
for i in $(seq 1 "$nves"); do
  "$vz" --root "$root" run -d -b "$tmp/many" "ve$i" >/dev/null
  (cd "$tmp/many" && "$runc" --root "$rroot" run -d "rc$i" >/dev/null 2>&1 </dev/null)
done
hf -n "ve list" "$vz --root $root ve list" \
  -n "ve list -o ctid,numproc,physpages,physpages.l,numproc.f" "$vz --root $root ve list -o ctid,numproc,physpages,physpages.l,numproc.f" \
  -n "ve stat" "$vz --root $root ve stat ve1" \
  -n "vzrun list" "$vz --root $root list" \
  -n "runc list" "$runc --root $rroot list" --export-json "$tmp/list.json"
for i in $(seq 1 "$nves"); do
  "$vz" --root "$root" delete -f "ve$i" >/dev/null 2>&1 || true
  "$runc" --root "$rroot" delete -f "rc$i" >/dev/null 2>&1 || true
done

# 3. run with a private disk area ---------------------------------------------------------------------
mkbundle "$tmp/plain" '["true"]' '{}'
mkbundle "$tmp/disk" '["true"]' '{"io.vzrun.diskspace":"1G"}' false
say "run with and without a private disk area"
hf -n "run" "$vz --root $root run -b $tmp/plain bp" \
  -n "run with diskspace=1G" "$vz --root $root run -b $tmp/disk bd" --export-json "$tmp/disk.json"

# Report ---------------------------------------------------------------------------------------------------
o=$tmp/ovh.json
pct() { awk -v ve="$1" -v t="$2" -v host="$3" 'BEGIN { printf "%+.1f%%", ((ve - t) / host - 1) * 100 }'; }
vt=$(median "$o" ve-true)
echo "### VE resources (hyperfine, $runs runs, medians in ms)"
echo
echo "| job | host | in VE | exec overhead | VE overhead |"
echo "|---|---:|---:|---:|---:|"
for j in cpu sys; do
  h=$(median "$o" host-$j); v=$(median "$o" ve-$j)
  echo "| $j-bound | $h | $v | $vt | $(pct "$v" "$vt" "$h") |"
done
echo
echo "| command ($nves running) | median ms |"
echo "|---|---:|"
for c in "ve list" "ve list -o ctid,numproc,physpages,physpages.l,numproc.f" "ve stat" "vzrun list" "runc list"; do
  echo "| $c | $(median "$tmp/list.json" "$c") |"
done
echo
a=$(median "$tmp/disk.json" run); b=$(median "$tmp/disk.json" "run with diskspace=1G")
echo "| run /bin/true | median ms |"
echo "|---|---:|"
echo "| without private area | $a |"
echo "| with diskspace=1G (image, loop, ext4, overlay) | $b (+$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.1f", b - a }') ms) |"
