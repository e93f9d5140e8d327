#!/usr/bin/env bash
# Migration benchmark (issue: live migration). Run by hack/bench.sh, or alone, as root.
# A VE holding 512 MiB of touched memory, 32 MiB of which it keeps rewriting, moves between two vzrun roots on
# this machine (migrate-listen on loopback): cold (`migrate`) against online (`migrate --online`, which is
# post-copy where the kernel lacks soft-dirty tracking), BENCH_MIG_RUNS times each. Reports the suspended time
# and the total time that `migrate` prints, medians. Target: online suspended <= 1/5 of cold and < 150 ms.
# A TCP client echoes 8 bytes off the VE every 5 ms from before each move until after it (its first and last
# answers are checked to bracket the move) and reports its longest gap between two answers; target: within 2x the
# suspended time. As in integration/migrate.rs the destination's listener runs in a network namespace of its own,
# joined to this host by a bridge, with the client in a third namespace on it (198.51.100.208/29).
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
listener= client=
tag=$$ br=vzbmig$$ dstns=vzb-mdst-$$ clins=vzb-mcli-$$
pipe_max=$(cat /proc/sys/fs/pipe-max-size)
cleanup() {
  set +e
  echo "$pipe_max" >/proc/sys/fs/pipe-max-size
  [ -n "$listener" ] && kill "$listener" 2>/dev/null
  [ -n "$client" ] && kill "$client" 2>/dev/null
  for id in $("$vz" --root "$src" list -q 2>/dev/null); do "$vz" --root "$src" delete -f "$id" >/dev/null 2>&1; done
  for id in $("$vz" --root "$dst" list -q 2>/dev/null); do
    nsenter --net="/run/netns/$dstns" "$vz" --root "$dst" delete -f "$id" >/dev/null 2>&1
  done
  ip link del "vzbmd$tag" 2>/dev/null; ip link del "vzbmc$tag" 2>/dev/null; ip link del "$br" 2>/dev/null
  ip netns del "$dstns" 2>/dev/null; ip netns del "$clins" 2>/dev/null
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

# The client: connects to ADDR:PORT, makes the file MARK at its first answer, sends 8 bytes every INTERVAL_US and reads them back until SIGTERM (the echo
# under way is still waited for: after a long freeze TCP's back-off can hold the next answer for seconds), then
# prints its longest gap between two answers (ms), the echoes, and the wall-clock times of its first and last
# answer (s); on a broken connection it says so and exits 1.
cat >"$tmp/echocli.c" <<'C'
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
static volatile sig_atomic_t stop;
static void on_term(int s) { (void)s; stop = 1; }
static double now(clockid_t c) { struct timespec t; clock_gettime(c, &t); return t.tv_sec + t.tv_nsec / 1e9; }
int main(int argc, char **argv) {
  struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
  inet_pton(AF_INET, argv[1], &a.sin_addr);
  useconds_t every = atoi(argv[3]);
  struct sigaction sa = { .sa_handler = on_term, .sa_flags = SA_RESTART };
  sigaction(SIGTERM, &sa, 0);
  int fd = -1;
  for (int i = 0; i < 100 && fd < 0; i++) {
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) { close(fd); fd = -1; usleep(50000); }
  }
  if (fd < 0) { printf("error: could not connect\n"); return 1; }
  struct timeval tmo = { .tv_sec = 30 };
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tmo, sizeof tmo);
  double last = 0, longest = 0, first_wall = 0, last_wall = 0;
  unsigned long n = 0;
  while (!stop) {
    char out[9], in[8];
    snprintf(out, sizeof out, "%08lu", n % 100000000);
    size_t got = 0;
    if (write(fd, out, 8) != 8) { printf("error: write after %lu echoes\n", n); return 1; }
    while (got < 8) {
      ssize_t r = read(fd, in + got, 8 - got);
      if (r > 0) { got += r; continue; }
      if (r < 0 && errno == EINTR) continue;  /* SIGTERM: a socket with a timeout is not restarted */
      printf("error: %s after %lu echoes\n", r ? strerror(errno) : "closed", n); return 1;
    }
    if (memcmp(in, out, 8)) { printf("error: echo %lu came back wrong\n", n); return 1; }
    double t = now(CLOCK_MONOTONIC);
    if (n && t - last > longest) longest = t - last;
    last = t; last_wall = now(CLOCK_REALTIME);
    if (!n++) { first_wall = last_wall; fclose(fopen(argv[4], "w")); }
    usleep(every);
  }
  printf("%.1f %lu %.3f %.3f\n", longest * 1000, n, first_wall, last_wall);
  return 0;
}
C
gcc -O2 -o "$tmp/echocli" "$tmp/echocli.c"

# The LAN: this host (the source) on a bridge, the destination's namespace with an uplink of the bridge's
# name, the client's namespace; the VE's address published on it by proxy ARP.
net=198.51.100 h=$net.209 d=$net.210 c=$net.211 ve=$net.212
ip link add "$br" type bridge && ip addr add "$h/29" dev "$br" && ip link set "$br" up
echo 1 >"/proc/sys/net/ipv4/conf/$br/forwarding"
ip netns add "$dstns" && ip netns add "$clins"
ip link add "vzbmd$tag" type veth peer name "$br" netns "$dstns" && ip link set "vzbmd$tag" master "$br" up
ip -n "$dstns" link set lo up && ip -n "$dstns" addr add "$d/29" dev "$br" && ip -n "$dstns" link set "$br" up
ip netns exec "$dstns" sh -c 'echo 1 >/proc/sys/net/ipv4/conf/all/forwarding'
ip link add "vzbmc$tag" type veth peer name eth0 netns "$clins" && ip link set "vzbmc$tag" master "$br" up
ip -n "$clins" link set lo up && ip -n "$clins" addr add "$c/29" dev eth0 && ip -n "$clins" link set eth0 up
mkdir -p "$tmp/bundle"
cp -a "$here/bundles/busybox/rootfs" "$tmp/bundle/rootfs"
cp "$tmp/touch" "$tmp/bundle/rootfs/bin/touchmem"
jq --argjson args "[\"sh\",\"-c\",\"exec </dev/null >/dev/null 2>&1; nc -ll -p 7000 -e cat & exec touchmem $mb $hot\"]" \
  --arg ip "$ve" --arg br "$br" \
  '.root = {path: "rootfs", readonly: false} | .process.args = $args | .process.terminal = false
   | .annotations = ((.annotations // {}) + {"io.vzrun.net.ip": $ip, "io.vzrun.net.uplink": $br})' \
  "$here/bundles/busybox/config.json" >"$tmp/bundle/config.json"
(umask 077; head -c 32 /dev/urandom | base64 >"$tmp/key")  # vzrun refuses a key others can read

# nsenter, not `ip netns exec`: that remounts /sys, and the cgroup mounts with it.
nsenter --net="/run/netns/$dstns" "$vz" --root "$dst" migrate-listen --listen "$d:0" --key-file "$tmp/key" >"$tmp/listen.out" 2>"$tmp/listen.err" &
listener=$!
for _ in $(seq 100); do [ -s "$tmp/listen.out" ] && break; sleep 0.05; done
addr=$(awk '{ print $3 }' "$tmp/listen.out")

declare -A susp=() total=() gap=() fails=()
for mode in cold online; do
  for i in $(seq 1 "$runs"); do
    id=vzb-mig-$mode-$i
    # The bundle's rootfs is shared by the runs: the marker of the last one must go, or
    # this one moves before its memory is touched.
    rm -f "$tmp/bundle/rootfs/ready"
    "$vz" --root "$src" run -d -b "$tmp/bundle" "$id" >/dev/null
    for _ in $(seq 600); do "$vz" --root "$src" exec "$id" test -e /ready 2>/dev/null && break; sleep 0.1; done
    rm -f "$tmp/client.up"
    ip netns exec "$clins" "$tmp/echocli" "$ve" 7000 5000 "$tmp/client.up" >"$tmp/client.out" &
    client=$!
    for _ in $(seq 200); do [ -e "$tmp/client.up" ] && break; sleep 0.05; done
    sleep 0.2
    flags=(); [ "$mode" = online ] && flags=(--online)
    t0=$EPOCHREALTIME
    if out=$("$vz" --root "$src" migrate "$id" "$addr" --key-file "$tmp/key" "${flags[@]}" 2>&1); then
      t1=$EPOCHREALTIME
      sleep 0.5
      kill -TERM "$client"; wait "$client" || true; client=
      s=$(sed -n 's/.*suspended \([0-9.]*\) s.*/\1/p' <<<"$out")
      susp[$mode]+="$s "
      total[$mode]+="$(sed -n 's/.*total \([0-9.]*\) s.*/\1/p' <<<"$out") "
      read -r g n first last <"$tmp/client.out" || true
      if [ "$g" = error: ]; then
        fails[$mode]="client: $(cat "$tmp/client.out")"
      elif awk -v f="$first" -v l="$last" -v a="$t0" -v b="$t1" 'BEGIN { exit !(f < a && l > b) }'; then
        gap[$mode]+="$(awk -v g="$g" 'BEGIN { printf "%.3f", g / 1000 }') "
        say "$id: suspended $s s, client's longest gap $g ms ($n echoes)"
      else
        fails[$mode]="client's answers did not bracket the move"
      fi
      nsenter --net="/run/netns/$dstns" "$vz" --root "$dst" delete -f "$id" >/dev/null
      rm -rf "/var/lib/vzrun/migrated/$id"
    else
      fails[$mode]=$(grep -o 'level=error msg=.*' <<<"$out" | head -n1 | cut -c1-220)
      kill -TERM "$client" 2>/dev/null; wait "$client" 2>/dev/null; client=
      "$vz" --root "$src" delete -f "$id" >/dev/null 2>&1 || true
      break
    fi
  done
done
med() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -n | awk '{ a[NR] = $1 } END { if (NR) print a[int((NR + 1) / 2)]; else print "n/a" }'; }
echo "### Migration: $mb MiB touched, $hot MiB rewritten ($runs runs, medians, seconds)"
echo
echo "| mode | suspended | total | client's longest gap | note |"
echo "|---|---:|---:|---:|---|"
for mode in cold online; do
  echo "| $mode | $(med "${susp[$mode]:-}") | $(med "${total[$mode]:-}") | $(med "${gap[$mode]:-}") | ${fails[$mode]:-ok} |"
done
c=$(med "${susp[cold]:-}") o=$(med "${susp[online]:-}") g=$(med "${gap[online]:-}")
if [ "$c" != n/a ] && [ "$o" != n/a ]; then
  echo
  awk -v c="$c" -v o="$o" 'BEGIN { printf "online suspended = %.2f of cold (target <= 0.20), %.0f ms (target < 150 ms)\n", o / c, o * 1000 }'
fi
if [ "$o" != n/a ] && [ "$g" != n/a ]; then
  awk -v o="$o" -v g="$g" 'BEGIN { printf "online client gap = %.2f x suspended (target <= 2)\n", g / o }'
fi
echo "per run (suspended / gap): cold ${susp[cold]:-}/ ${gap[cold]:-}; online ${susp[online]:-}/ ${gap[online]:-}" >&2
