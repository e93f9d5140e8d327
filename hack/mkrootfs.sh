#!/usr/bin/env bash
# Builds bundles/busybox/rootfs from Debian's busybox-static: nothing binary is committed.
# Usage: hack/mkrootfs.sh [DEST]   (default: bundles/busybox/rootfs). Idempotent.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$here/bundles/busybox/rootfs}
bb=/bin/busybox
[ -x "$bb" ] || { echo "mkrootfs: $bb missing (apt-get install busybox-static)" >&2; exit 1; }
file -L "$bb" 2>/dev/null | grep -q 'statically linked' || ldd "$bb" 2>&1 | grep -q 'not a dynamic' \
  || { echo "mkrootfs: $bb is not static (install busybox-static)" >&2; exit 1; }
mkdir -p "$dest"/{bin,sbin,usr/bin,usr/sbin,etc/init.d,proc,sys,dev,tmp,root,var/log,var/run,run,home}
chmod 1777 "$dest/tmp"
install -m 0755 "$bb" "$dest/bin/busybox"
for applet in $("$bb" --list-full); do
  [ "$applet" = bin/busybox ] && continue
  ln -sfn /bin/busybox "$dest/$applet"
done
cat > "$dest/etc/passwd" <<'PW'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PW
cat > "$dest/etc/group" <<'GR'
root:x:0:
daemon:x:1:
nogroup:x:65534:
GR
echo busybox > "$dest/etc/hostname"
: > "$dest/etc/resolv.conf"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' > "$dest/etc/hosts"
# A small system VE: busybox init runs rcS, which starts the services enabled below.
cat > "$dest/etc/inittab" <<'IT'
::sysinit:/etc/init.d/rcS
::respawn:/bin/sh -c 'exec sleep 2147483647'
::ctrlaltdel:/bin/true
::shutdown:/etc/init.d/rcK
IT
cat > "$dest/etc/init.d/rcS" <<'RC'
#!/bin/sh
mkdir -p /var/run /var/log
for s in /etc/rc.d/S*; do [ -x "$s" ] && "$s" start; done
echo "rcS: system started" > /var/log/boot.log
RC
cat > "$dest/etc/init.d/rcK" <<'RK'
#!/bin/sh
for s in /etc/rc.d/S*; do [ -x "$s" ] && "$s" stop; done
echo "rcK: system stopped" >> /var/log/boot.log
RK
chmod 0755 "$dest/etc/init.d/rcS" "$dest/etc/init.d/rcK"
echo "rootfs ready: $dest"
