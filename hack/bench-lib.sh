# The start every hack/bench-*.sh shares; sourced by them, not run.
# Sets here (the repository), vz (VZRUN, default /usr/local/bin/vzrun) and runc (RUNC, default runc).
# bench_require NAME TOOL...: exits with a message unless this runs as root with every TOOL in PATH;
# makes the busybox rootfs when it is missing.
here=$(cd "$(dirname "${BASH_SOURCE[1]}")/.." && pwd)
vz=${VZRUN:-/usr/local/bin/vzrun}
runc=${RUNC:-runc}
# The addresses and limits the VE parts ask for are allowed by the repository's policy
# (as for the tests); a host's own /etc/vzrun/policy.toml may allow nothing.
export VZRUN_POLICY=${VZRUN_POLICY:-$here/hack/policy.toml}

bench_require() {
  local name=$1 t
  shift
  [ "$(id -u)" = 0 ] || { echo "$name must run as root" >&2; exit 1; }
  for t in "$@"; do
    command -v "$t" >/dev/null || { echo "$name: $t missing (hack/setup.sh)" >&2; exit 1; }
  done
  [ -x "$here/bundles/busybox/rootfs/bin/busybox" ] || "$here/hack/mkrootfs.sh" >/dev/null
}
