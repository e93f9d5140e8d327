#!/usr/bin/env bash
# Writes hack/text-order.txt: the functions of vzrun that the core commands execute, which build.rs hands to the
# linker (--symbol-ordering-file) so that they sit together at the start of the binary's code. The kernel maps
# code 64 KB around each page a process touches; scattered, a start's code mapped most of the 5 MB of text.
#
# How: a release build with the linker's map (VZRUN_LINK_MAP) gives every function's address; a uprobe on the
# entry of each one counts its calls (uprobe_profile) while vzrun runs `run`, `create`, `start`, `state`, `exec`,
# `kill`, `ps`, `list` and `delete` on the busybox bundle. The functions `run` calls come first; then, and within
# them, those called in more of these phases, so the code every command runs (start-up, argument parsing, state
# files) is the most tightly packed.
#
# Usage: hack/text-order.sh        (as root, on a host that can run the integration suites; the order depends only
#                                   on which functions run, so any machine of the supported kind gives the same list)
# Environment:
#   VZRUN=FILE VZRUN_MAP=FILE   use this release binary and its linker map instead of building one
#   TEXT_ORDER_OUT=FILE         where to write the list (default hack/text-order.txt)
# Then rebuild (cargo build --release): build.rs reruns when the list changes. Run it again after a change to
# Cargo.toml or Cargo.lock: the names carry hashes of the crate's version and dependencies, and names that no
# longer exist are skipped in silence (the binary still links, with less of its code in order).
set -euo pipefail

self=$(readlink -f "$0")
repo=$(cd "$(dirname "$self")/.." && pwd)
out=${TEXT_ORDER_OUT:-$repo/hack/text-order.txt}
say() { printf '\033[1m[text-order]\033[0m %s\n' "$*" >&2; }
die() { printf '[text-order] error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"
tmp=$(mktemp -d /tmp/vzrun-text-order.XXXXXX)
tracefs=/sys/kernel/tracing
group=vzrun_order
mounted_tracefs=""
cleanup() {
  set +e
  if [ -d "$tracefs/events/$group" ]; then
    echo 0 >"$tracefs/events/$group/enable"
    # Only this script's probes: the other definitions in uprobe_events are left as they were.
    # The whole group in one write: one by one, each removal of a probe that was enabled waits
    # for an RCU grace period (about 10 per second here).
    echo "-:$group/" >>"$tracefs/uprobe_events"
  fi
  [ -n "${V:-}" ] && [ -n "${root:-}" ] && for id in $("$V" --root "$root" list -q 2>/dev/null); do
    "$V" --root "$root" delete -f "$id" >/dev/null 2>&1
  done
  [ -n "$mounted_tracefs" ] && umount "$tracefs"
  rm -rf "$tmp"
}
trap cleanup EXIT

if [ -z "${VZRUN:-}" ]; then
  say "building the release binary with its linker map"
  (cd "$repo" && VZRUN_LINK_MAP="$tmp/vzrun.map" nice cargo build --release --locked >&2)
  V=$repo/target/release/vzrun map=$tmp/vzrun.map
else
  V=$(readlink -f "$VZRUN") map=${VZRUN_MAP:?VZRUN_MAP names the linker map of VZRUN}
fi
[ -s "$map" ] || die "no linker map at $map"

if [ ! -f "$tracefs/uprobe_events" ]; then
  mount -t tracefs nodev "$tracefs" || die "cannot mount tracefs at $tracefs"
  mounted_tracefs=1
fi
[ -f "$tracefs/uprobe_events" ] || die "the kernel has no uprobe events (CONFIG_UPROBE_EVENTS)"

# Functions: the symbols that lld's map lists under the .text output section (address, name).
awk '
  $1 ~ /^[0-9a-f]+$/ && NF >= 5 {
    if ($5 ~ /^\./ && NF == 5) { out = $5; next }
    if (out == ".text" && NF == 5 && $5 !~ /:\(/) print $1, $5
  }' "$map" | sort -u -k1,1 >"$tmp/functions"
[ -s "$tmp/functions" ] || die "no functions found in the .text of $map"
# Addresses are virtual; a uprobe takes the file offset: the executable LOAD segment's vaddr - offset.
read -r offset vaddr < <(readelf -lW "$V" | awk '$1 == "LOAD" && / R E / { print $2, $3; exit }') \
  || die "no executable LOAD segment in $V"
delta=$((vaddr - offset))

# The commands that start container processes run from the binary's read-only copy (src/sys/sealed.rs), which a
# first `run` makes; the others (state, kill, delete, ...) from the binary itself: the probes go on both files.
# Each probe costs an RCU grace period to enable and again to disable: about 10 minutes for 2 x 8,600 here.
bundle=$tmp/bundle root=$tmp/root
mkdir -p "$bundle" "$root"
rootfs=$repo/bundles/busybox/rootfs
[ -x "$rootfs/bin/busybox" ] || "$repo/hack/mkrootfs.sh" >/dev/null
jq --arg root "$rootfs" '.root.path = $root | .root.readonly = true | .process.args = ["/bin/sleep", "3600"]
  | .process.terminal = false' "$repo/bundles/busybox/config.json" >"$bundle/config.json"
jq '.process.args = ["/bin/true"]' "$bundle/config.json" >"$tmp/true.json"
mkdir -p "$tmp/true" && mv "$tmp/true.json" "$tmp/true/config.json"
"$V" --root "$root" run -b "$tmp/true" warm >/dev/null
copy=""
for src in /run/vzrun-exe/*.src; do
  [ "$(cat "$src" 2>/dev/null)" = "$V" ] && copy=${src%.src}
done
files=("$V")
[ -n "$copy" ] && files+=("$copy")
say "probing $(wc -l <"$tmp/functions") functions in ${files[*]}"

: >"$tmp/probes"
n=0
for f in "${files[@]}"; do
  awk -v g="$group" -v f="$f" -v d="$delta" -v k="$n" '
    function hex(s,  i, v) { v = 0; for (i = 1; i <= length(s); i++) v = v * 16 + index("0123456789abcdef", substr(s, i, 1)) - 1; return v }
    { printf "p:%s/f%d_%d %s:0x%x\n", g, k, NR, f, hex($1) - d }' "$tmp/functions" >>"$tmp/probes"
  n=$((n + 1))
done
# One definition per write: this kernel refuses a write of many (EINVAL) that it takes line by line.
while read -r line; do
  echo "$line" >>"$tracefs/uprobe_events" || die "the kernel refused the probe $line ($tracefs/error_log)"
done <"$tmp/probes"
echo 0 >"$tracefs/tracing_on" # counts only (uprobe_profile): nothing goes to the trace buffer
echo 1 >"$tracefs/events/$group/enable"

# Per phase: the calls of each probe so far.
snapshot() { awk -v g="$group" '$2 ~ "^f" { print $2, $3 }' "$tracefs/uprobe_profile" | sort >"$tmp/count.$1"; }
phase() { # NAME CMD...: runs a vzrun command and records which functions it called
  local name=$1; shift
  "$V" --root "$root" "$@" >/dev/null 2>&1 || true
  snapshot "$name"
}
snapshot begin
phase run run -b "$tmp/true" c1
phase delete1 delete c1
phase create create -b "$bundle" c2
phase state state c2
phase start start c2
phase exec exec c2 /bin/true
phase ps ps c2
phase list list
phase kill kill c2 KILL
sleep 0.5
phase delete delete -f c2
phase state_missing state nosuch
phases=(begin run delete1 create state start exec ps list kill delete state_missing)

# Which phases called each function (a probe's count grew), from the binary or its copy. The functions of `run`
# come first, so that a foreground run, whose parent stays up for the container's life, maps only the code it
# executed (the functions only exec, ps, list or kill call, interleaved with them, had `run`'s parent map
# 0.2 MB more); within each part, those called in more phases first.
for ((i = 1; i < ${#phases[@]}; i++)); do
  join "$tmp/count.${phases[i - 1]}" "$tmp/count.${phases[i]}" \
    | awk -v p="${phases[i]}" '$3 > $2 { sub(/^f[0-9]+_/, "", $1); print $1, (p == "run") }'
done | awk '{ n[$1]++; if ($2) run[$1] = 1 } END { for (f in n) print f, run[f] + 0, n[f] }' \
  | sort -k2,2nr -k3,3nr -k1,1n | awk '{ print $1 }' >"$tmp/hit"
awk 'NR == FNR { name[FNR] = $2; next } { print name[$1] }' "$tmp/functions" "$tmp/hit" >"$out"
say "$(wc -l <"$out") of $(wc -l <"$tmp/functions") functions ran; wrote $out"
