#!/usr/bin/env bash
# One entry point that makes a fresh Debian bookworm machine ready for vzrun: the apt
# packages the project and its tests need, CRIU, the release build installed at
# /usr/local/bin/vzrun, and bundles/busybox's rootfs. Idempotent; run as root.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

[ "$(id -u)" = 0 ] || { echo "setup.sh must run as root" >&2; exit 1; }

packages=(
  build-essential pkg-config git linux-libc-dev file procps
  runc crun busybox-static hyperfine jq time strace
  iproute2 iptables nftables tcpdump iperf3 e2fsprogs util-linux kmod
  podman containerd conmon uidmap slirp4netns fuse-overlayfs
  debootstrap dpkg-dev lxcfs
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# CRIU from sid first: on kernels from 6.16 only CRIU >= 4.2 can dump TCP sockets (trixie's 4.1.1 cannot dump
# any inet socket there). sid moves, so trixie's 4.1.1 (the measured recipe) is the fallback.
if [ -x hack/install-criu.sh ]; then
  if ! criu --version 2>/dev/null | grep -q 'Version: 4\.[2-9]'; then
    CRIU_SUITE=${CRIU_SUITE:-sid} CRIU_FORCE=1 hack/install-criu.sh ||
      { say "CRIU from ${CRIU_SUITE:-sid} failed; falling back to trixie"; CRIU_SUITE=trixie CRIU_FORCE=1 hack/install-criu.sh; }
  fi
fi

if ! command -v cargo >/dev/null 2>&1; then
  [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 || { echo "setup.sh: cargo not found (this machine kind ships rustup's toolchain)" >&2; exit 1; }

# LXCFS: one host daemon at Debian's mount point, serving the cgroup-aware /proc files that
# VEs with io.vzrun.proc=virtual bind in. Started here because no init system does on these
# machines (the package's systemd unit never runs); vzrun itself never starts one. -l
# virtualizes /proc/loadavg, --enable-cfs makes the CPU view follow a CFS quota (cpulimit)
# as well as a cpuset. A mount whose daemon died answers ENOTCONN: unmount it and start again.
lxcfs_dir=/var/lib/lxcfs
if ! grep -qs " $lxcfs_dir fuse.lxcfs " /proc/self/mounts || ! stat -t "$lxcfs_dir/proc/meminfo" >/dev/null 2>&1; then
  grep -qs " $lxcfs_dir fuse" /proc/self/mounts && { fusermount -u "$lxcfs_dir" 2>/dev/null || umount -l "$lxcfs_dir"; }
  mkdir -p "$lxcfs_dir"
  say "starting lxcfs at $lxcfs_dir"
  lxcfs -l --enable-cfs --pidfile=/run/lxcfs.pid "$lxcfs_dir" >/var/log/lxcfs.log 2>&1 &
  for _ in $(seq 50); do stat -t "$lxcfs_dir/proc/meminfo" >/dev/null 2>&1 && break; sleep 0.1; done
  stat -t "$lxcfs_dir/proc/meminfo" >/dev/null 2>&1 || { echo "setup.sh: lxcfs did not mount $lxcfs_dir (see /var/log/lxcfs.log)" >&2; exit 1; }
fi

say "building vzrun (release)"
cargo build --release --locked 2>&1 | tail -n 2
install -m 0755 target/release/vzrun /usr/local/bin/vzrun

say "building bundles/busybox/rootfs"
hack/mkrootfs.sh >/dev/null
say "ready: $(vzrun --version | head -n1)"
