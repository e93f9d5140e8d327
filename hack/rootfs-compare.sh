#!/usr/bin/env bash
# Compares what a container sees (its mountinfo and `ls -la /dev`) when its rootfs is set
# up by runtime::rootfs (the unit test dump_for_comparison runs plan/prepare/enter/finish
# in new namespaces) and by `vzrun run` (libcontainer), for the busybox bundle and
# variants of it. Mount IDs, device numbers, times, the rootfs path and the cgroup's
# name differ by nature and are masked; every other difference is printed.
# Usage (root): hack/rootfs-compare.sh [VZRUN]   (default: /usr/local/bin/vzrun)
# Exit status: the number of cases that differ.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
vzrun=${1:-/usr/local/bin/vzrun}
export VZRUN_POLICY=${VZRUN_POLICY:-/work/main/hack/policy.toml}
[ -x "$here/bundles/busybox/rootfs/bin/busybox" ] || "$here/hack/mkrootfs.sh" >/dev/null
tmp=$(mktemp -d /tmp/rootfs-compare.XXXXXX)
cleanup() {
  "$vzrun" --root "$tmp/state" list -q 2>/dev/null | while read -r id; do
    "$vzrun" --root "$tmp/state" delete -f "$id" >/dev/null 2>&1 || true
  done
  if [ -d "$tmp/sharedsrc" ]; then umount -R "$tmp/sharedsrc" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
[ -n "${KEEP:-}" ] && trap 'echo kept $tmp' EXIT || trap cleanup EXIT
mkdir -p "$tmp/l1" "$tmp/l2" && echo 1 >"$tmp/l1/one" && echo 2 >"$tmp/l2/two"
mkdir -p "$tmp/hostdir/sub" && echo dir >"$tmp/hostdir/sub/f" && echo file >"$tmp/hostfile"
case " ${CASES:-bindprop} " in *" bindprop "*)
  mkdir -p "$tmp/sharedsrc"
  mount -t tmpfs -o size=1m rfscmp "$tmp/sharedsrc"
  mount --make-shared "$tmp/sharedsrc"
  mkdir -p "$tmp/sharedsrc/sub"
  mount -t tmpfs -o size=1m rfscmpsub "$tmp/sharedsrc/sub"
  ;;
esac

# The busybox spec with `case`'s change, printing what the comparison reads.
make_config() { # case dest
  python3 - "$here/bundles/busybox/config.json" "$1" "$2" "$tmp" <<'PY'
import json, sys
src, case, dest, tmp = sys.argv[1:]
c = json.load(open(src))
c["process"]["args"] = ["sh", "-c", "cat /proc/self/mountinfo; ls -la /dev"]
lx = c["linux"]
if case == "readonly":
    c["root"]["readonly"] = True
elif case in ("shared", "private", "slave", "unbindable"):
    lx["rootfsPropagation"] = case
elif case == "cgroupns":
    lx["namespaces"].append({"type": "cgroup"})
elif case == "binds":
    c["mounts"] += [
        {"destination": "/mnt/hostdir", "type": "bind", "source": tmp + "/hostdir", "options": ["rbind", "ro"]},
        {"destination": "/etc/hostfile", "type": "bind", "source": tmp + "/hostfile", "options": ["bind", "ro"]},
        {"destination": "/new/dir/file", "type": "bind", "source": tmp + "/hostfile", "options": ["bind", "ro", "nosuid"]},
        {"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=755", "size=1m"]},
    ]
elif case == "rprivate":
    # podman's and containerd's way: rprivate on every mount (a no-op for new mounts
    # under the container's slave root, so libcontainer ignoring it shows no difference).
    for m in c["mounts"]:
        m["options"] = m.get("options", []) + ["rprivate"]
elif case == "overlay":
    # A generic filesystem with a source and data options (read-only overlay: two lower layers).
    c["mounts"] += [
        {"destination": "/mnt/ov", "type": "overlay", "source": "overlay",
         "options": ["lowerdir=%s/l1:%s/l2" % (tmp, tmp), "nosuid", "nodev"]},
        {"destination": "/mnt/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["ro", "noexec", "uid=1000", "gid=1000"]},
    ]
elif case == "bindprop":
    # A shared source (made so below): rprivate/rslave change what the copy shows.
    c["mounts"] += [
        {"destination": "/mnt/a", "type": "bind", "source": tmp + "/sharedsrc", "options": ["rbind"]},
        {"destination": "/mnt/b", "type": "bind", "source": tmp + "/sharedsrc", "options": ["rbind", "rprivate"]},
        {"destination": "/mnt/c", "type": "bind", "source": tmp + "/sharedsrc", "options": ["rbind", "rslave"]},
        {"destination": "/mnt/d", "type": "bind", "source": tmp + "/sharedsrc", "options": ["rbind", "rshared"]},
    ]
elif case == "masked":
    # /bin read-only would also be noexec, and sh could not start.
    lx["maskedPaths"] += ["/proc/nonexistent", "/does/not/exist", "/etc/passwd", "/home"]
    lx["readonlyPaths"] += ["/nonexistent", "/etc"]
json.dump(c, open(dest, "w"), indent=1)
PY
}

normalize() { # file rootfs
  python3 - "$1" "$2" <<'PY'
import re, sys
text, rootfs = open(sys.argv[1]).read(), sys.argv[2]
for line in text.splitlines():
    f = line.split(" ")
    if len(f) > 6 and re.fullmatch(r"\d+", f[0]) and re.fullmatch(r"\d+:\d+", f[2]):
        f[0] = f[1] = f[2] = "X"
        if f[3].startswith(rootfs):
            f[3] = "ROOTFS" + f[3][len(rootfs):]
        f[3] = re.sub(r"^/vzrun-[^/ ]*", "/CG", f[3])
        # peer group numbers (shared:N, master:N) are allocated per boot
        f = [re.sub(r"^(shared|master|propagate_from):\d+$", r"\1:N", x) for x in f]
        print(" ".join(f))
    else:
        # ls -la: the date and time column
        print(re.sub(r" [A-Z][a-z]{2} +\d+ +\d\d:\d\d ", " DATE ", line))
PY
}

cases=${CASES:-base readonly shared private cgroupns binds masked nopivot overlay rprivate bindprop}
cargo_test=(nice cargo test --profile ci --locked --bin vzrun -q)
(cd "$here" && "${cargo_test[@]}" --no-run 2>/dev/null)
differ=0
for case in $cases; do
  for side in lc direct; do
    mkdir -p "$tmp/$case/$side"
    cp -a "$here/bundles/busybox/rootfs" "$tmp/$case/$side/rootfs"
    make_config "$case" "$tmp/$case/$side/config.json"
  done
  nopivot=()
  [ "$case" = nopivot ] && nopivot=(--no-pivot)
  "$vzrun" --root "$tmp/state" run "${nopivot[@]}" -b "$tmp/$case/lc" "rfscmp-$case-$$" >"$tmp/$case/lc.out" 2>&1 || true
  (cd "$here" && RFS_NO_PIVOT=${nopivot[*]} RFS_DUMP_BUNDLE="$tmp/$case/direct" RFS_DUMP_OUT="$tmp/$case/direct.out" \
    "${cargo_test[@]}" rootfs::tests::dump_for_comparison -- --exact runtime::rootfs::tests::dump_for_comparison >/dev/null 2>&1) || true
  [ -f "$tmp/$case/direct.out" ] || echo "(no output)" >"$tmp/$case/direct.out"
  normalize "$tmp/$case/lc.out" "$tmp/$case/lc/rootfs" >"$tmp/$case/lc.norm"
  normalize "$tmp/$case/direct.out" "$tmp/$case/direct/rootfs" >"$tmp/$case/direct.norm"
  if diff -u --label "libcontainer/$case" --label "direct/$case" "$tmp/$case/lc.norm" "$tmp/$case/direct.norm"; then
    echo "== $case: same ($(grep -c ' - ' "$tmp/$case/lc.norm") mounts)"
  elif [ "$case" = bindprop ]; then
    # libcontainer 0.7 parses rprivate/rslave/rshared... as flags to clear and so never
    # applies them; runc (and runtime::rootfs) change the copy's propagation as asked.
    echo "== $case: different as expected (libcontainer ignores a mount's propagation options)"
  else
    echo "== $case: DIFFERENT"
    differ=$((differ + 1))
  fi
done
exit "$differ"
