#!/usr/bin/env bash
# Benchmarks vzrun against crun and runc on bundles/busybox, side by side: one hyperfine invocation per scenario
# (the three runtimes are measured under the same conditions), then a markdown table of medians and ratios, and
# the peak RSS of `run` measured with /usr/bin/time -v.
#
# Usage: hack/bench.sh            (as root; hyperfine's own output goes to stderr, the report to stdout)
# Environment:
#   VZRUN=/usr/local/bin/vzrun  CRUN=crun  RUNC=runc   runtime binaries
#   BENCH_RUNS=30          timed runs per command (after --warmup 3)
#   BENCH_RSS_RUNS=5       /usr/bin/time -v runs per runtime for the peak-RSS table (the median is shown)
#   BENCH_SCENARIOS="run create start delete exec podman ctr"   subset/order of the scenarios (podman and ctr:
#                          `run --rm` through podman/conmon and containerd's shim; skipped when not installed)
#   BENCH_OUT=DIR          also write DIR/bench-results.md and the hyperfine JSON files (default: print only)
#   BENCH_HYPERFINE_ARGS   extra arguments for every hyperfine call (word-split), e.g. "--style basic"
#   BENCH_NET=0 BENCH_RES=0 BENCH_SYS=0 BENCH_CKPT=0 BENCH_MIG=0 BENCH_PROC=0 BENCH_DENS=0   skip a VE part (see the end of this script)
#
# Host quirk handled here: crun 1.8 refuses every container on a cgroup v1 "hybrid" host ("cgroups in hybrid
# mode not supported") when /sys/fs/cgroup/unified holds a controller. So the script re-executes itself once in
# a private mount namespace (unshare -m) and, only on a hybrid host, unmounts /sys/fs/cgroup/unified there and
# covers the directory with a throw-away tmpfs (crun still writes <id>/cgroup.procs under it, which would
# otherwise land in the host's /sys/fs/cgroup tmpfs). All three runtimes run the same way, for fairness. On a
# pure cgroup v2 or v1 host nothing is unmounted.
#
# Adding a scenario: write a function scenario_NAME that calls
#   bench_scenario NAME CMD_VZRUN CMD_CRUN CMD_RUNC [extra hyperfine args...]
# and add NAME to the default of BENCH_SCENARIOS. Commands run without a shell (hyperfine -N). Helpers:
#   rt RUNTIME              the runtime's command prefix: its binary and its own --root (a temp dir)
#   cid SCENARIO RUNTIME    a container id unique to this bench run, scenario and runtime
#   hook ACTION RT ID [B]   a command line for --prepare: reset (delete -f if present), created (fresh `create`),
#                           stopped (fresh create + start, then wait until the process has exited)
# Per-runtime --prepare options are given three times, in the order vzrun, crun, runc. Containers left at the end
# of a scenario are deleted by `reset_all SCENARIO`; whatever a runtime still lists after that is reported.
set -euo pipefail

self=$(readlink -f "$0")
repo=$(cd "$(dirname "$self")/.." && pwd)
runtimes=(vzrun crun runc)

# ---------------------------------------------------------------------------------------------------------
# Helpers shared by the main script and the hook mode (which hyperfine runs as --prepare commands).
# ---------------------------------------------------------------------------------------------------------
rt_bin() {
  case "$1" in
    vzrun) printf '%s' "${VZRUN:-/usr/local/bin/vzrun}" ;;
    crun) printf '%s' "${CRUN:-crun}" ;;
    runc) printf '%s' "${RUNC:-runc}" ;;
    *) echo "unknown runtime $1" >&2; return 1 ;;
  esac
}
# Runs RUNTIME with its private --root.
rtx() { local r=$1; shift; "$(rt_bin "$r")" --root "$BENCH_TMP/root/$r" "$@"; }

rt_status() { rtx "$1" state "$2" 2>/dev/null | jq -r '.status // empty' 2>/dev/null || true; }

# Deletes a container whatever its state; silent when it does not exist.
rt_reset() {
  local r=$1 id=$2
  [ -n "$(rt_status "$r" "$id")" ] || return 0
  rtx "$r" delete -f "$id" >/dev/null 2>&1 || true
  if [ -n "$(rt_status "$r" "$id")" ]; then
    echo "bench: '$r delete -f $id' left the container behind" >&2
    return 1
  fi
}

wait_status() { # RUNTIME ID STATUS: polls for up to 10 s
  local i
  for ((i = 0; i < 1000; i++)); do
    [ "$(rt_status "$1" "$2")" = "$3" ] && return 0
    sleep 0.01
  done
  echo "bench: $1 container $2 never reached status $3 (now: $(rt_status "$1" "$2"))" >&2
  return 1
}

run_hook() {
  local action=$1 r=$2 id=$3 bundle=${4:-}
  case "$action" in
    reset) rt_reset "$r" "$id" ;;
    created) # a container in state "created" (its init waits for start)
      rt_reset "$r" "$id"
      rtx "$r" create -b "$bundle" "$id" </dev/null >/dev/null
      ;;
    stopped) # a container that was started and whose process has exited
      rt_reset "$r" "$id"
      rtx "$r" create -b "$bundle" "$id" </dev/null >/dev/null
      rtx "$r" start "$id" </dev/null >/dev/null
      wait_status "$r" "$id" stopped
      ;;
    *) echo "bench: unknown hook $action" >&2; return 2 ;;
  esac
}

if [ "${1:-}" = __hook ]; then
  shift
  run_hook "$@"
  exit
fi

# ---------------------------------------------------------------------------------------------------------
# Main script: checks, private mount namespace, temp dir and cleanup
# ---------------------------------------------------------------------------------------------------------
say() { printf '\033[1m[bench]\033[0m %s\n' "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }
trap 'printf "[bench] error: command failed (status %s) at line %s\n" "$?" "$LINENO" >&2' ERR

[ "$(id -u)" = 0 ] || die "must run as root"
for tool in hyperfine jq unshare findmnt /usr/bin/time "$(rt_bin vzrun)" "$(rt_bin crun)" "$(rt_bin runc)"; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found"
done

cgroup_mode() {
  if [ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)" = cgroup2fs ]; then
    echo "v2 (unified)"
  elif [ "$(findmnt -n -o FSTYPE /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2 ]; then
    echo "v1 hybrid (cgroup2 at /sys/fs/cgroup/unified)"
  else
    echo "v1 (legacy)"
  fi
}

if [ -z "${BENCH_IN_NS:-}" ]; then
  BENCH_HOST_CGROUPS=$(cgroup_mode)
  export BENCH_HOST_CGROUPS BENCH_IN_NS=1
  exec unshare -m --propagation private bash "$self" "$@"
fi
case "$BENCH_HOST_CGROUPS" in
  "v1 hybrid"*)
    umount /sys/fs/cgroup/unified || die "cannot unmount /sys/fs/cgroup/unified in the private mount namespace"
    mount -t tmpfs -o mode=0755,size=64m vzrun-bench /sys/fs/cgroup/unified \
      || die "cannot cover /sys/fs/cgroup/unified with a tmpfs"
    ns_note="a private mount namespace with /sys/fs/cgroup/unified unmounted (crun refuses hybrid mode)"
    ;;
  *) ns_note="a private mount namespace (nothing unmounted)" ;;
esac

# The peak RSS below depends on hack/text-order.txt matching the code: a stale list is said, not fatal (it checks
# the repository's last release build, which is what hack/setup.sh installs).
order=$("$repo/hack/text-order-check.sh") || say "warning: $order"

runs=${BENCH_RUNS:-30}
rss_runs=${BENCH_RSS_RUNS:-5}
read -r -a scenarios <<<"${BENCH_SCENARIOS:-run create start delete exec podman ctr}"
read -r -a hf_extra <<<"${BENCH_HYPERFINE_ARGS:-}"
VZRUN=$(rt_bin vzrun) CRUN=$(rt_bin crun) RUNC=$(rt_bin runc)
BENCH_ID=vzb$$ # in every container id: finds what a runtime leaves behind
BENCH_TMP=$(mktemp -d /tmp/vzrun-bench.XXXXXX)
export VZRUN CRUN RUNC BENCH_TMP

problems=()
hf_pid="" # the running hyperfine, stopped by cleanup
# Paths outside the runtimes' --root dirs that carry this run's ids (cgroups, /run/<runtime>, netns, ...).
leftover_paths() {
  find /sys/fs/cgroup /run /dev/shm -maxdepth 6 -name "*$BENCH_ID*" \
    -not -path '/sys/fs/cgroup/unified/*' -print 2>/dev/null || true
}

cleanup() {
  local rc=$? r id p
  trap - EXIT INT TERM ERR
  if [ -n "$hf_pid" ]; then
    kill -TERM "$hf_pid" 2>/dev/null || true
    wait "$hf_pid" 2>/dev/null || true
  fi
  for r in "${runtimes[@]}"; do
    [ -d "$BENCH_TMP/root/$r" ] || continue
    for id in $(rtx "$r" list -q 2>/dev/null); do
      rtx "$r" delete -f "$id" >/dev/null 2>&1 || say "warning: cleanup: '$r delete -f $id' failed"
    done
  done
  # Last resort for cgroups a runtime leaked: kill what is still in them (only this run's containers can be, the
  # names carry $BENCH_ID), then remove them deepest first.
  while read -r p; do
    [ -d "$p" ] || continue
    [ ! -f "$p/cgroup.procs" ] || xargs -r kill -KILL <"$p/cgroup.procs" 2>/dev/null || true
    rmdir "$p" 2>/dev/null || say "warning: cleanup: cannot remove $p"
  done < <(leftover_paths | grep '^/sys/fs/cgroup/' | awk '{ print length, $0 }' | sort -rn | cut -d' ' -f2-)
  rm -rf "$BENCH_TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Private bundles: the committed config.json with an absolute, read-only rootfs and another process.
rootfs=$repo/bundles/busybox/rootfs
if [ ! -x "$rootfs/bin/busybox" ]; then
  say "building $rootfs"
  "$repo/hack/mkrootfs.sh" >/dev/null
fi
make_bundle() { # NAME ARGS_JSON
  mkdir -p "$BENCH_TMP/$1"
  jq --arg root "$rootfs" --argjson args "$2" \
    '.root.path = $root | .root.readonly = true | .process.args = $args | .process.terminal = false' \
    "$repo/bundles/busybox/config.json" >"$BENCH_TMP/$1/config.json"
}
make_bundle true '["/bin/true"]'
make_bundle sleep '["/bin/sleep", "3600"]'
B_TRUE=$BENCH_TMP/true
B_SLEEP=$BENCH_TMP/sleep
mkdir -p "$BENCH_TMP/root/vzrun" "$BENCH_TMP/root/crun" "$BENCH_TMP/root/runc" "$BENCH_TMP/json"

# ---------------------------------------------------------------------------------------------------------
# Scenario machinery
# ---------------------------------------------------------------------------------------------------------
# Command prefix of a runtime as one string for hyperfine (temp paths contain no spaces).
rt() { printf '%q --root %q' "$(rt_bin "$1")" "$BENCH_TMP/root/$1"; }
cid() { printf '%s-%s-%s' "$BENCH_ID" "$1" "$2"; }
hook() { printf 'bash %q __hook' "$self"; printf ' %q' "$@"; }
reset_all() { # SCENARIO: deletes each runtime's container of that scenario
  local r
  for r in "${runtimes[@]}"; do
    rt_reset "$r" "$(cid "$1" "$r")" || problems+=("$1: '$r delete -f $(cid "$1" "$r")' did not delete it")
  done
}

# bench_scenario NAME CMD_VZRUN CMD_CRUN CMD_RUNC [extra hyperfine args]
# One hyperfine invocation for the three commands; results in $BENCH_TMP/json/NAME.json. A failing scenario is
# recorded and diagnosed but does not stop the others.
done_scenarios=()
failed_scenarios=()
bench_scenario() {
  local name=$1 cv=$2 cc=$3 cr=$4
  shift 4
  say "scenario $name"
  # In the background and waited for, so that an INT/TERM trap runs at once (bash defers traps while a
  # foreground child runs, and skips them when the child exits normally after a Ctrl-C). `trap - INT` undoes
  # the SIGINT-ignoring bash applies to background commands, so hyperfine and the runtimes get default handling.
  (
    trap - INT QUIT
    exec hyperfine -N --warmup 3 --runs "$runs" "${hf_extra[@]}" "$@" \
      --export-json "$BENCH_TMP/json/$name.json" \
      -n vzrun "$cv" -n crun "$cc" -n runc "$cr" >&2
  ) &
  hf_pid=$!
  if wait "$hf_pid"; then
    hf_pid=""
    done_scenarios+=("$name")
  else
    hf_pid=""
    failed_scenarios+=("$name")
    say "scenario $name FAILED; running each command once with its output shown:"
    diagnose "$cv" "$cc" "$cr" "$@"
  fi
}

# Runs each command once after its --prepare (if any), showing output and exit status.
diagnose() {
  local cmds=("$1" "$2" "$3") prep=() i p
  shift 3
  while [ $# -gt 0 ]; do
    case "$1" in
      --prepare | -p) prep+=("$2"); shift 2 ;;
      *) shift ;;
    esac
  done
  for i in 0 1 2; do
    p=""
    if [ ${#prep[@]} -eq 3 ]; then p=${prep[$i]}; elif [ ${#prep[@]} -ge 1 ]; then p=${prep[0]}; fi
    if [ -n "$p" ] && ! sh -c "$p" </dev/null >&2; then
      say "  ${runtimes[$i]}: prepare failed: $p"
    fi
    if sh -c "${cmds[$i]}" </dev/null >&2; then
      say "  ${runtimes[$i]}: ok"
    else
      say "  ${runtimes[$i]}: status $?: ${cmds[$i]}"
    fi
  done
}

# After a scenario: containers a runtime still lists are reported, then deleted.
check_leftovers() {
  local r id
  for r in "${runtimes[@]}"; do
    for id in $(rtx "$r" list -q 2>/dev/null || true); do
      problems+=("after $1: $r still lists container $id (status: $(rt_status "$r" "$id"))")
      rtx "$r" delete -f "$id" >/dev/null 2>&1 || problems+=("after $1: '$r delete -f $id' failed")
    done
  done
}

# ---------------------------------------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------------------------------------
# No --prepare here: `run` deletes its container at exit, so runs go back to back (a container left behind makes
# the next run fail, and check_leftovers reports it). A --prepare step (an idle gap) makes the next command
# measurably slower on some machines (CPU idle states, caches): compare runtimes within one scenario only.
scenario_run() { # create + start + wait + delete of /bin/true, in one foreground `run` (which deletes at exit)
  local c=() r
  for r in "${runtimes[@]}"; do
    c+=("$(rt "$r") run -b $B_TRUE $(cid run "$r")")
  done
  bench_scenario run "${c[@]}"
}

scenario_create() { # create of a /bin/true container; each run first deletes the previous one
  local c=() p=() r
  for r in "${runtimes[@]}"; do
    c+=("$(rt "$r") create -b $B_TRUE $(cid create "$r")")
    p+=(--prepare "$(hook reset "$r" "$(cid create "$r")")")
  done
  bench_scenario create "${c[@]}" "${p[@]}"
  reset_all create
}

scenario_start() { # start of a created container whose process is /bin/true
  local c=() p=() r
  for r in "${runtimes[@]}"; do
    c+=("$(rt "$r") start $(cid start "$r")")
    p+=(--prepare "$(hook created "$r" "$(cid start "$r")" "$B_TRUE")")
  done
  bench_scenario start "${c[@]}" "${p[@]}"
  reset_all start
}

scenario_delete() { # delete of a stopped container (started, its /bin/true has exited)
  local c=() p=() r
  for r in "${runtimes[@]}"; do
    c+=("$(rt "$r") delete $(cid delete "$r")")
    p+=(--prepare "$(hook stopped "$r" "$(cid delete "$r")" "$B_TRUE")")
  done
  bench_scenario delete "${c[@]}" "${p[@]}"
  reset_all delete
}

scenario_exec() { # exec of /bin/true into a running container (sleep 3600), created once before
  local c=() r ok=1 id
  for r in "${runtimes[@]}"; do
    id=$(cid exec "$r")
    if ! { rtx "$r" create -b "$B_SLEEP" "$id" </dev/null >/dev/null && rtx "$r" start "$id" &&
      wait_status "$r" "$id" running; }; then
      say "exec: could not start a 'sleep 3600' container with $r"
      ok=0
    fi
    c+=("$(rt "$r") exec $id /bin/true")
  done
  if [ "$ok" = 1 ]; then
    bench_scenario exec "${c[@]}"
  else
    failed_scenarios+=(exec)
  fi
  reset_all exec
}

# Peak RSS (KB) of `RUNTIME run` of /bin/true: median of BENCH_RSS_RUNS runs of /usr/bin/time -v, which reports
# the largest maximum RSS among the runtime's process and the children it waited for.
peak_rss() {
  local r=$1 i out id kb=()
  id=$(cid rss "$r")
  for ((i = 0; i < rss_runs; i++)); do
    if ! out=$(/usr/bin/time -v "$(rt_bin "$r")" --root "$BENCH_TMP/root/$r" run -b "$B_TRUE" "$id" \
      </dev/null 2>&1 >/dev/null); then
      say "rss: $r run failed: $out"
      rt_reset "$r" "$id" || true
      return 1
    fi
    kb+=("$(sed -n 's/^[[:space:]]*Maximum resident set size (kbytes): //p' <<<"$out")")
  done
  printf '%s\n' "${kb[@]}" | sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# ---------------------------------------------------------------------------------------------------------
# Scenarios through real callers: podman (conmon) and containerd (ctr and its runc v2 shim)
# ---------------------------------------------------------------------------------------------------------
# The same `run --rm` of /bin/true with the runtime set to vzrun, crun and runc; the callers' own work (podman's
# setup, conmon, containerd's shim) is part of every measurement, so the ratios are smaller than for `run`.
# Everything a caller keeps is private under $BENCH_TMP (podman: --root, --runroot, --tmpdir, ... and its own
# CONTAINERS_CONF; containerd: its own config, root, state and socket, started and stopped here). Containers'
# cgroups go under a parent named with $BENCH_ID (so the cleanup's last resort finds them). Host directories a
# caller creates whatever its config says (/run/containerd/s for shim sockets, /var/lib/containers/cache for
# podman's blob-info cache) are removed again when they did not exist before. caller_teardown stops what a
# scenario started; the EXIT trap runs it too, before the main cleanup.
caller_hooks=() # shell commands, run last first by caller_teardown
caller_teardown() {
  local i
  for ((i = ${#caller_hooks[@]} - 1; i >= 0; i--)); do
    eval "${caller_hooks[$i]}" || true
  done
  caller_hooks=()
}
# Stops a running hyperfine and waits for the command it was timing (a podman or ctr that would otherwise go on
# creating state while the teardown removes it).
stop_hyperfine() {
  [ -n "$hf_pid" ] || return 0
  local kids k i alive
  kids=$(pgrep -P "$hf_pid" || true)
  kill -TERM "$hf_pid" 2>/dev/null || true
  wait "$hf_pid" 2>/dev/null || true
  hf_pid=""
  for ((i = 0; i < 100; i++)); do
    alive=0
    for k in $kids; do
      if kill -0 "$k" 2>/dev/null; then alive=1; fi
    done
    [ "$alive" = 1 ] || break
    sleep 0.1
  done
}
exit_status() { return "$1"; }
# cleanup takes the script's exit status from $? (set again here, without tripping `set -e`) and exits with it.
trap 'caller_rc=$?; stop_hyperfine; caller_teardown; exit_status "$caller_rc" || cleanup; cleanup' EXIT

# Remembers DIR when it does not exist yet: caller_teardown then removes FILES in it and its empty directories.
host_dir_trace() { # DIR [FILE...]
  [ ! -e "$1" ] || return 0
  caller_hooks+=("remove_host_dir $(printf '%q ' "$@")")
}
remove_host_dir() {
  local d=$1 f
  shift
  for f in "$@"; do rm -f "$d/$f"; done
  [ ! -d "$d" ] || find "$d" -depth -type d -empty -delete 2>/dev/null || true
}

# Removes the cgroup subtree /REL in every hierarchy (killing what still runs there), deepest first.
remove_cgroup_tree() { # REL
  local p
  while read -r p; do
    [ ! -f "$p/cgroup.procs" ] || xargs -r kill -KILL <"$p/cgroup.procs" 2>/dev/null || true
    rmdir "$p" 2>/dev/null || true
  done < <(find /sys/fs/cgroup/*/"$1" -depth -type d 2>/dev/null || true)
}

# Stops a daemon started by this script: SIGTERM, SIGKILL after 10 s.
stop_pid() { # PID
  local i
  kill -TERM "$1" 2>/dev/null || return 0
  for ((i = 0; i < 100; i++)); do
    kill -0 "$1" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# Kills processes whose command line contains NEEDLE (a path private to this run), then detaches mounts below DIR.
# conmon starts podman's cleanup command when a container exits, so keep at it until nothing shows up for a while.
release_dir() { # DIR NEEDLE
  local pid m i quiet=0
  for ((i = 0; i < 100 && quiet < 5; i++)); do
    quiet=$((quiet + 1))
    for pid in $(pgrep -f -- "$2" || true); do
      [ "$pid" = "$$" ] || { kill -KILL "$pid" 2>/dev/null && quiet=0; } || true
    done
    sleep 0.1
  done
  while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done < <(awk -v d="$1/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
}

# An OCI image layout tarball of $rootfs (one layer, command /bin/sh) named REF, which both `ctr images import`
# and `podman load` read: there is no registry to pull from.
bench_oci_archive() { # OUT REF
  local out=$1 ref=$2 d arch l ls c cs m ms
  d=$(mktemp -d "$BENCH_TMP/oci.XXXXXX")
  case "$(uname -m)" in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; *) arch=$(uname -m) ;; esac
  mkdir -p "$d/blobs/sha256"
  tar --numeric-owner --owner=0 --group=0 -C "$rootfs" -cf "$d/blob" .
  l=$(sha256sum "$d/blob" | cut -d' ' -f1) ls=$(stat -c %s "$d/blob")
  mv "$d/blob" "$d/blobs/sha256/$l"
  jq -cn --arg a "$arch" --arg l "sha256:$l" '{architecture: $a, os: "linux", config: {Env:
    ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], Cmd: ["/bin/sh"]},
    rootfs: {type: "layers", diff_ids: [$l]}}' >"$d/blob"
  c=$(sha256sum "$d/blob" | cut -d' ' -f1) cs=$(stat -c %s "$d/blob")
  mv "$d/blob" "$d/blobs/sha256/$c"
  jq -cn --arg c "sha256:$c" --argjson cs "$cs" --arg l "sha256:$l" --argjson ls "$ls" '{schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $c, size: $cs},
    layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar", digest: $l, size: $ls}]}' >"$d/blob"
  m=$(sha256sum "$d/blob" | cut -d' ' -f1) ms=$(stat -c %s "$d/blob")
  mv "$d/blob" "$d/blobs/sha256/$m"
  jq -cn --arg m "sha256:$m" --argjson ms "$ms" --arg ref "$ref" '{schemaVersion: 2, manifests: [{mediaType:
    "application/vnd.oci.image.manifest.v1+json", digest: $m, size: $ms,
    annotations: {"org.opencontainers.image.ref.name": $ref}}]}' >"$d/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$d/oci-layout"
  tar -C "$d" -cf "$out" oci-layout index.json blobs
  rm -rf "$d"
}

# A caller scenario that cannot run here is dropped from the report (not counted as a failure).
skip_scenario() { # NAME REASON
  say "scenario $1 skipped: $2"
  local s kept=()
  for s in "${scenarios[@]}"; do [ "$s" = "$1" ] || kept+=("$s"); done
  scenarios=("${kept[@]}")
}

bench_image=docker.io/library/vzb-busybox:latest

scenario_podman() { # podman run --rm of /bin/true with --runtime set to each runtime (podman + conmon + runtime)
  local t
  for t in podman conmon; do
    command -v "$t" >/dev/null 2>&1 || { skip_scenario podman "$t not installed"; return 0; }
  done
  local d=$BENCH_TMP/podman c=() r pm left
  mkdir -p "$d/root" "$d/runroot" "$d/tmp" "$d/volumes" "$d/networks"
  # Root may lack CAP_SYS_RESOURCE (podman's default ulimits raise hard limits); no network, file locks.
  cat >"$d/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
netns = "none"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
lock_type = "file"
EOF
  export CONTAINERS_CONF=$d/containers.conf
  pm="podman --root $d/root --runroot $d/runroot --tmpdir $d/tmp --volumepath $d/volumes"
  pm+=" --network-config-dir $d/networks --storage-driver vfs --cgroup-manager cgroupfs --events-backend file"
  host_dir_trace /var/lib/containers cache/blob-info-cache-v1.boltdb
  caller_hooks+=("remove_cgroup_tree $BENCH_ID-podman")
  caller_hooks+=("release_dir $d $d/")
  caller_hooks+=("$pm rm --all --force --time 0 >/dev/null 2>&1")
  bench_oci_archive "$d/image.tar" "$bench_image"
  if ! TMPDIR=$d/tmp $pm load -i "$d/image.tar" >/dev/null 2>&1; then
    say "podman: podman load failed"
    failed_scenarios+=(podman)
    caller_teardown
    return 0
  fi
  for r in "${runtimes[@]}"; do
    c+=("$pm run --rm --pull=never --cgroup-parent /$BENCH_ID-podman --runtime $(rt_bin "$r") $bench_image /bin/true")
  done
  bench_scenario podman "${c[@]}"
  left=$($pm ps --all --quiet 2>/dev/null || true)
  [ -z "$left" ] || problems+=("after podman: podman still lists containers: $(echo $left)")
  caller_teardown
  unset CONTAINERS_CONF
}

scenario_ctr() { # ctr run --rm of /bin/true through containerd's runc v2 shim with --runc-binary set to each runtime
  local t
  for t in containerd ctr containerd-shim-runc-v2; do
    command -v "$t" >/dev/null 2>&1 || { skip_scenario ctr "$t not installed"; return 0; }
  done
  local d=$BENCH_TMP/ctr ns=$BENCH_ID-ctr c=() r i pid left
  local sock=$d/containerd.sock
  mkdir -p "$d/fifo" "$d/opt"
  cat >"$d/config.toml" <<EOF
version = 2
root = "$d/root"
state = "$d/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$d/opt"
EOF
  host_dir_trace /run/containerd
  caller_hooks+=("remove_cgroup_tree $ns")
  caller_hooks+=("release_dir $d $sock")
  containerd --config "$d/config.toml" </dev/null >"$d/containerd.log" 2>&1 &
  pid=$!
  caller_hooks+=("stop_pid $pid")
  for ((i = 0; i < 300; i++)); do
    ctr -a "$sock" version >/dev/null 2>&1 && break
    sleep 0.1
  done
  bench_oci_archive "$d/image.tar" "$bench_image"
  if ! ctr -a "$sock" -n "$ns" images import "$d/image.tar" >/dev/null 2>&1; then
    say "ctr: containerd did not start or the image did not import; its log:"
    tail -n 20 "$d/containerd.log" >&2 || true
    failed_scenarios+=(ctr)
    caller_teardown
    return 0
  fi
  for r in "${runtimes[@]}"; do
    c+=("ctr -a $sock -n $ns run --rm --fifo-dir $d/fifo --runc-root $d/rt-$r --runc-binary $(rt_bin "$r") $bench_image $(cid ctr "$r") /bin/true")
  done
  bench_scenario ctr "${c[@]}"
  left=$(ctr -a "$sock" -n "$ns" containers ls -q 2>/dev/null || true)
  [ -z "$left" ] || problems+=("after ctr: containerd still lists containers: $(echo $left)")
  for r in "${runtimes[@]}"; do
    left=$(ls -A "$d/rt-$r/$ns" 2>/dev/null || true)
    [ -z "$left" ] || problems+=("after ctr: $r left state in its root: $(echo $left)")
  done
  caller_teardown
}

# ---------------------------------------------------------------------------------------------------------
# Run
# ---------------------------------------------------------------------------------------------------------
cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
[ -n "$cpu_model" ] || cpu_model=unknown
mem_gib=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
header=$(
  cat <<EOF
## vzrun benchmark ($(date -u +%Y-%m-%dT%H:%MZ))

- machine: kernel $(uname -r) ($(uname -m)), $(nproc) CPUs ($cpu_model), $mem_gib memory
- cgroups: $BENCH_HOST_CGROUPS; all runtimes run in $ns_note
- vzrun: $("$VZRUN" --version 2>&1 | head -n1) ($VZRUN)
- crun: $("$CRUN" --version 2>&1 | head -n1)
- runc: $("$RUNC" --version 2>&1 | head -n1)
- hyperfine $(hyperfine --version | awk '{ print $2 }') -N --warmup 3 --runs $runs; bundle: bundles/busybox with a read-only rootfs
EOF
)
printf '%s\n\n' "$header"

for s in "${scenarios[@]}"; do
  declare -F "scenario_$s" >/dev/null || die "unknown scenario $s (have: $(declare -F | sed -n 's/.* scenario_//p' | tr '\n' ' '))"
  "scenario_$s"
  check_leftovers "$s"
done

say "peak RSS of run (/usr/bin/time -v, $rss_runs runs each)"
declare -A rss=()
for r in "${runtimes[@]}"; do
  rss[$r]=$(peak_rss "$r") || { rss[$r]=""; problems+=("peak RSS: $r run failed"); }
done
check_leftovers rss

# Anything carrying this run's ids outside the --root dirs (cgroups, /run/<runtime>, netns, /dev/shm)?
while read -r l; do
  problems+=("left behind: $l")
done < <(leftover_paths | sort)

# ---------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "n/a"; else printf "%.2f", a / b }'; }
mb() { if [ -n "$1" ]; then awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; else printf 'n/a'; fi; }

declare -A med=()
table=$(
  echo "| scenario (median ms) | vzrun | crun | runc | vzrun/crun | vzrun/runc |"
  echo "|---|---:|---:|---:|---:|---:|"
  for s in "${scenarios[@]}"; do
    f=$BENCH_TMP/json/$s.json
    if [[ " ${done_scenarios[*]} " != *" $s "* ]] || [ ! -s "$f" ]; then
      echo "| $s | failed | | | | |"
      continue
    fi
    for r in "${runtimes[@]}"; do
      med[$r]=$(jq -r --arg r "$r" '.results[] | select(.command == $r) | .median * 1000 | . * 100 | round / 100' "$f")
    done
    echo "| $s | ${med[vzrun]} | ${med[crun]} | ${med[runc]} | $(ratio "${med[vzrun]}" "${med[crun]}") | $(ratio "${med[vzrun]}" "${med[runc]}") |"
  done
)
rss_table=$(
  echo "| peak RSS (MB) | vzrun | crun | runc | vzrun/crun | vzrun/runc |"
  echo "|---|---:|---:|---:|---:|---:|"
  echo "| run /bin/true (median of $rss_runs) | $(mb "${rss[vzrun]}") | $(mb "${rss[crun]}") | $(mb "${rss[runc]}") | $(ratio "${rss[vzrun]}" "${rss[crun]}") | $(ratio "${rss[vzrun]}" "${rss[runc]}") |"
)
notes=$(
  if [ ${#failed_scenarios[@]} -gt 0 ] || [ ${#problems[@]} -gt 0 ]; then
    echo "Problems:"
    [ ${#failed_scenarios[@]} -eq 0 ] || echo "- failed scenarios: ${failed_scenarios[*]}"
    [ ${#problems[@]} -eq 0 ] || printf -- '- %s\n' "${problems[@]}"
  fi
)

printf '%s\n\n%s\n' "$table" "$rss_table"
[ -z "$notes" ] || printf '\n%s\n' "$notes"
if [ -n "${BENCH_OUT:-}" ]; then
  mkdir -p "$BENCH_OUT"
  printf '%s\n\n%s\n\n%s\n' "$header" "$table" "$rss_table" >"$BENCH_OUT/bench-results.md"
  [ -z "$notes" ] || printf '\n%s\n' "$notes" >>"$BENCH_OUT/bench-results.md"
  cp "$BENCH_TMP"/json/*.json "$BENCH_OUT/" 2>/dev/null || true
  say "wrote $BENCH_OUT/bench-results.md"
fi

if [ -n "$notes" ]; then
  say "finished with problems (see above)"
  exit 1
fi

# The VE parts, one script each (each also runs alone):
#   NET   hack/bench-net.sh        added start-up time of a venet address, throughput against plain veth, 200 VEs
#   RES   hack/bench-resources.sh  overhead of a VE with limits, ve list/stat over 200 VEs, run with a disk area
#   SYS   hack/bench-system.sh     ve start until the VE's own service answers, idle Debian VE memory, clean stop
#   CKPT  hack/bench-ckpt.sh       checkpoint/restore of a VE with 256 MiB touched against runc, same CRIU
#   MIG   hack/bench-migrate.sh    suspended and total time of a cold and an online move of a 512 MiB VE
#   PROC  hack/bench-proc.sh       what the LXCFS binds add to run, a /proc/meminfo read in a VE against the host's
#   DENS  hack/bench-density.sh    500 idle VEs: create flatness, ve list/stat/set with 500 running, memory per VE
# BENCH_<NAME>=0 skips one.
for part in NET:net RES:resources SYS:system CKPT:ckpt MIG:migrate PROC:proc DENS:density; do
  var=BENCH_${part%%:*}
  [ "${!var:-1}" = 1 ] || continue
  echo
  VZRUN="$(rt_bin vzrun)" RUNC="$(rt_bin runc)" "$repo/hack/bench-${part#*:}.sh"
done
