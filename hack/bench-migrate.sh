#!/usr/bin/env bash
# Migration benchmark (issue: live migration). Run by hack/bench.sh, or alone, as root.
# A VE holding 512 MiB of touched memory, 32 MiB of which it keeps rewriting, moves between two vzrun roots on
# this machine (migrate-listen on loopback): cold (`migrate`) against online (`migrate --online`, which is
# post-copy where the kernel lacks soft-dirty tracking), BENCH_MIG_RUNS times each. Reports the suspended time
# and the total time that `migrate` prints, medians. Target: online suspended <= 1/5 of cold and < 150 ms.
# Post-copy raises fs.pipe-max-size to 4 MiB where the process lacks CAP_SYS_RESOURCE; the host's value is put
# back at the end.
# Environment: VZRUN (default /usr/local/bin/vzrun), BENCH_MIG_RUNS (3), BENCH_MIG_MB (512), BENCH_MIG_HOT_MB (32).
set -euo pipefail
. "$(dirname "$0")/bench-lib.sh"
runs=${BENCH_MIG_RUNS:-3}
mb=${BENCH_MIG_MB:-512}
hot=${BENCH_MIG_HOT_MB:-32}
bench_require bench-migrate gcc
criu check >/dev/null 2>&1 || { echo "bench-migrate: criu check fails; skipped" >&2; exit 0; }

tmp=$(mktemp -d /tmp/vzrun-bench-mig.XXXXXX)
src=$tmp/src-root dst=$tmp/dst-root
listener=
pipe_max=$(cat /proc/sys/fs/pipe-max-size)
cleanup() {
  set +e
  echo "$pipe_max" >/proc/sys/fs/pipe-max-size
  [ -n "$listener" ] && kill "$listener" 2>/dev/null
  for r in "$src" "$dst"; do
    for id in $("$vz" --root "$r" list -q 2>/dev/null); do "$vz" --root "$r" delete -f "$id" >/dev/null 2>&1; done
  done
  rm -rf /var/lib/vzrun/migrated/vzb-mig-* "$tmp"
}
trap cleanup EXIT INT TERM
say() { printf 'bench-migrate: %s\n' "$*" >&2; }

# A static toucher: allocates MB MiB, touches every page, then rewrites the first HOT MiB for ever.
cat >"$tmp/touch.c" <<'C'
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <unistd.h>
int main(int argc, char **argv) {
  size_t mb = strtoul(argv[1], 0, 10), hot = strtoul(argv[2], 0, 10);
  char *p = malloc(mb << 20);
  if (!p) return 1;
  for (size_t i = 0; i < (mb << 20); i += 4096) p[i] = (char)i;
  FILE *f = fopen("/ready", "w"); if (f) fclose(f);
  for (unsigned long n = 0;; n++) {
    for (size_t i = 0; i < (hot << 20); i += 4096) p[i] = (char)n;
    usleep(10000);
  }
}
C
gcc -O2 -static -o "$tmp/touch" "$tmp/touch.c"
mkdir -p "$tmp/bundle"
cp -a "$here/bundles/busybox/rootfs" "$tmp/bundle/rootfs"
cp "$tmp/touch" "$tmp/bundle/rootfs/bin/touchmem"
jq --argjson args "[\"sh\",\"-c\",\"exec </dev/null >/dev/null 2>&1; exec touchmem $mb $hot\"]" \
  '.root = {path: "rootfs", readonly: false} | .process.args = $args | .process.terminal = false' \
  "$here/bundles/busybox/config.json" >"$tmp/bundle/config.json"
(umask 077; head -c 32 /dev/urandom | base64 >"$tmp/key")  # vzrun refuses a key others can read

"$vz" --root "$dst" migrate-listen --listen 127.0.0.1:0 --key-file "$tmp/key" >"$tmp/listen.out" 2>"$tmp/listen.err" &
listener=$!
for _ in $(seq 100); do [ -s "$tmp/listen.out" ] && break; sleep 0.05; done
addr=$(awk '{ print $3 }' "$tmp/listen.out")

declare -A susp=() total=() fails=()
for mode in cold online; do
  for i in $(seq 1 "$runs"); do
    id=vzb-mig-$mode-$i
    # The bundle's rootfs is shared by the runs: the marker of the last one must go, or
    # this one moves before its memory is touched.
    rm -f "$tmp/bundle/rootfs/ready"
    "$vz" --root "$src" run -d -b "$tmp/bundle" "$id" >/dev/null
    for _ in $(seq 600); do "$vz" --root "$src" exec "$id" test -e /ready 2>/dev/null && break; sleep 0.1; done
    flags=(); [ "$mode" = online ] && flags=(--online)
    if out=$("$vz" --root "$src" migrate "$id" "$addr" --key-file "$tmp/key" "${flags[@]}" 2>&1); then
      susp[$mode]+="$(sed -n 's/.*suspended \([0-9.]*\) s.*/\1/p' <<<"$out") "
      total[$mode]+="$(sed -n 's/.*total \([0-9.]*\) s.*/\1/p' <<<"$out") "
      "$vz" --root "$dst" delete -f "$id" >/dev/null
      rm -rf "/var/lib/vzrun/migrated/$id"
    else
      fails[$mode]=$(grep -o 'level=error msg=.*' <<<"$out" | head -n1 | cut -c1-220)
      "$vz" --root "$src" delete -f "$id" >/dev/null 2>&1 || true
      break
    fi
  done
done
med() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -n | awk '{ a[NR] = $1 } END { if (NR) print a[int((NR + 1) / 2)]; else print "n/a" }'; }
echo "### Migration: $mb MiB touched, $hot MiB rewritten ($runs runs, medians, seconds)"
echo
echo "| mode | suspended | total | note |"
echo "|---|---:|---:|---|"
for mode in cold online; do
  echo "| $mode | $(med "${susp[$mode]:-}") | $(med "${total[$mode]:-}") | ${fails[$mode]:-ok} |"
done
c=$(med "${susp[cold]:-}") o=$(med "${susp[online]:-}")
if [ "$c" != n/a ] && [ "$o" != n/a ]; then
  echo
  awk -v c="$c" -v o="$o" 'BEGIN { printf "online suspended = %.2f of cold (target <= 0.20), %.0f ms (target < 150 ms)\n", o / c, o * 1000 }'
fi
