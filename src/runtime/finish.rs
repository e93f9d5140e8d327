//! What runc does at create and libcontainer 0.7 leaves out, done from the host once the
//! init waits for `start`: `ro` on tmpfs and cgroup mounts (libcontainer mounts them
//! writable whatever the spec says; a writable cgroup mount inside a cgroup namespace is
//! runc advisory GHSA-m8cg-xc2p-r3fc).

use std::path::PathBuf;

use nix::mount::{mount, MsFlags};
use oci_spec::runtime::Spec;

use crate::runtime::error::{Error, Result};
use crate::sys::mountinfo::{self, Mount};

/// A tmpfs or cgroup mount of the spec with `ro`: libcontainer leaves those writable.
fn wants_readonly(m: &oci_spec::runtime::Mount) -> bool {
    let ro = m
        .options()
        .as_ref()
        .is_some_and(|o| o.iter().any(|x| x == "ro"));
    ro && matches!(
        m.typ().as_deref().unwrap_or_default(),
        "tmpfs" | "cgroup" | "cgroup2"
    )
}

/// The mount points (as the init sees them) that must end read-only: each tmpfs or
/// cgroup mount of the spec with `ro`, and for cgroup mounts every mount below it (v1
/// has one per hierarchy under a tmpfs).
fn readonly_targets(spec: &Spec, table: &[Mount]) -> Vec<PathBuf> {
    let mut targets = Vec::new();
    for m in spec.mounts().iter().flatten().filter(|m| wants_readonly(m)) {
        let kind = m.typ().as_deref().unwrap_or_default();
        let dest = m.destination();
        for point in table.iter().map(|t| &t.point) {
            let below = kind != "tmpfs" && point.starts_with(dest);
            if (point == dest || below) && !targets.contains(point) {
                targets.push(point.clone());
            }
        }
    }
    targets
}

/// Completes the create of the container whose init is `pid`.
pub fn finish_create(pid: i32, spec: &Spec) -> Result<()> {
    // A spec with no read-only tmpfs or cgroup mount needs nothing: no mountinfo read.
    if !spec.mounts().iter().flatten().any(wants_readonly) {
        return Ok(());
    }
    let table = mountinfo::read(Some(pid))
        .map_err(|e| Error::io("read", format!("/proc/{pid}/mountinfo"), e))?;
    let targets = readonly_targets(spec, &table);
    if targets.is_empty() {
        return Ok(());
    }
    crate::sys::mount::in_mount_ns_of(pid, || {
        for t in &targets {
            let flags = MsFlags::MS_REMOUNT
                | MsFlags::MS_BIND
                | MsFlags::MS_RDONLY
                | crate::runtime::rootfs::kept_flags(t).unwrap_or(MsFlags::empty());
            mount(None::<&str>, t, None::<&str>, flags, None::<&str>).map_err(|e| {
                std::io::Error::other(format!("remount {} read-only: {e}", t.display()))
            })?;
        }
        Ok(())
    })
    .map_err(|e| {
        Error::Step(format!(
            "finish create in the container's mount namespace: {e}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readonly_targets_take_cgroup_submounts_and_ro_tmpfs_only() {
        let spec: Spec = serde_json::from_str(
            r#"{"ociVersion":"1.0.2","root":{"path":"r"},"mounts":[
              {"destination":"/dev","type":"tmpfs","source":"tmpfs","options":["nosuid","ro"]},
              {"destination":"/tmp","type":"tmpfs","source":"tmpfs"},
              {"destination":"/sys/fs/cgroup","type":"cgroup","source":"cgroup","options":["ro"]}]}"#,
        )
        .unwrap();
        let info = "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n\
                    2 1 0:5 / /dev rw - tmpfs tmpfs rw\n\
                    3 2 0:6 / /dev/pts rw - devpts devpts rw\n\
                    4 1 0:7 / /tmp rw - tmpfs tmpfs rw\n\
                    5 1 0:8 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n\
                    6 5 0:9 / /sys/fs/cgroup/pids rw - cgroup cgroup rw\n\
                    7 1 0:10 / /with\\040space rw - tmpfs tmpfs rw\n";
        let table = mountinfo::parse(info);
        let got = readonly_targets(&spec, &table);
        let want: Vec<PathBuf> = ["/dev", "/sys/fs/cgroup", "/sys/fs/cgroup/pids"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(got, want);
    }
}
