//! A VE's masked directories in a move: left out of the dump, made anew by the restore.
//!
//! libcontainer masks a directory (`/proc/acpi`, `/sys/firmware`, ...) with an empty
//! read-only tmpfs. CRIU dumps every tmpfs as a tar stream and restores it from one: a
//! tar and a gzip started on each end for a mount that holds nothing (about 8 ms each way
//! here, with the VE frozen). A mount that is still an empty read-only tmpfs once the VE
//! is frozen is handed to CRIU as an external mount instead, and the restore binds a new
//! empty read-only tmpfs there. One that is not (a VE that remounted it and wrote to it)
//! is dumped as before.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

/// The list of left-out mount points, beside CRIU's images.
const LIST: &str = "vzrun-masked.json";

/// The VE's masked directories that can be left out of a dump now: read-only tmpfs
/// mounts that are empty. Not for a VE with a user namespace or a mount label, whose
/// tmpfs a host-made one would not match (owner, label).
pub fn leave_out(pid: i32, spec: &Spec) -> Vec<String> {
    let linux = match spec.linux() {
        Some(l) => l,
        None => return Vec::new(),
    };
    let userns = linux
        .namespaces()
        .as_ref()
        .is_some_and(|ns| ns.iter().any(|n| n.typ() == LinuxNamespaceType::User));
    if userns || linux.mount_label().is_some() {
        return Vec::new();
    }
    let Some(masked) = linux.masked_paths() else {
        return Vec::new();
    };
    let Ok(info) = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")) else {
        return Vec::new();
    };
    let mut out: Vec<String> = masked
        .iter()
        .filter(|p| empty_ro_tmpfs(&info, p))
        .filter(|p| is_empty(pid, p))
        .cloned()
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Whether the topmost mount at `point` in a mountinfo text is a read-only tmpfs of its
/// own (its root is the filesystem's root: not a bind of part of another one).
fn empty_ro_tmpfs(info: &str, point: &str) -> bool {
    let top = info
        .lines()
        .rev()
        .find(|l| l.split(' ').nth(4) == Some(point));
    let Some(line) = top else { return false };
    let fields: Vec<&str> = line.split(' ').collect();
    let Some(dash) = fields.iter().position(|f| *f == "-") else {
        return false;
    };
    let root = fields.get(3).copied();
    let opts = fields.get(5).copied().unwrap_or("");
    let fstype = fields.get(dash + 1).copied();
    root == Some("/") && fstype == Some("tmpfs") && opts.split(',').any(|o| o == "ro")
}

fn is_empty(pid: i32, point: &str) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/root{point}")).is_ok_and(|mut rd| rd.next().is_none())
}

/// Checked once the VE is frozen: each left-out directory is still an empty read-only
/// tmpfs (the list was taken while the VE ran).
pub fn still_left_out(pid: i32, points: &[String]) -> Result<(), String> {
    let info = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .map_err(|e| format!("read /proc/{pid}/mountinfo: {e}"))?;
    for p in points {
        if !empty_ro_tmpfs(&info, p) || !is_empty(pid, p) {
            return Err(format!(
                "the masked directory {p} of the VE changed while the move began (it is \
                 no longer an empty read-only tmpfs); move it again"
            ));
        }
    }
    Ok(())
}

pub fn save(image: &Path, points: &[String]) -> std::io::Result<()> {
    let path = image.join(LIST);
    if points.is_empty() {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    std::fs::write(path, serde_json::to_vec(points).unwrap_or_default())
}

/// The left-out directories of the dump in `image` (none in an image from elsewhere).
pub fn load(image: &Path) -> Vec<String> {
    std::fs::read(image.join(LIST))
        .ok()
        .and_then(|d| serde_json::from_slice::<Vec<String>>(&d).ok())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.starts_with('/') && !p.split('/').any(|c| c == ".."))
        .collect()
}

/// The new tmpfs mounts a restore binds at the left-out directories, on the host under
/// the VE's scratch directory; unmounted when dropped (the VE's binds keep them alive).
pub struct Standins {
    dirs: Vec<PathBuf>,
}

impl Standins {
    /// One empty read-only tmpfs per point, and CRIU's external mount map for them.
    pub fn mount(
        scratch: &Path,
        points: &[String],
    ) -> std::io::Result<(Standins, Vec<(String, String)>)> {
        let mut made = Standins { dirs: Vec::new() };
        let mut map = Vec::new();
        for (n, p) in points.iter().enumerate() {
            let dir = scratch.join(format!("masked-{n}"));
            std::fs::create_dir_all(&dir)?;
            mount(
                Some("tmpfs"),
                &dir,
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .map_err(|e| {
                let _ = std::fs::remove_dir(&dir);
                std::io::Error::from(e)
            })?;
            map.push((p.clone(), dir.display().to_string()));
            made.dirs.push(dir);
        }
        Ok((made, map))
    }
}

impl Drop for Standins {
    fn drop(&mut self) {
        for d in &self.dirs {
            let _ = umount2(d, MntFlags::MNT_DETACH);
            let _ = std::fs::remove_dir(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "\
53 74 0:48 / /proc/acpi ro,relatime - tmpfs tmpfs ro,inode64
54 74 0:43 /null /proc/keys rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755
56 74 0:49 / /sys/firmware ro,relatime - tmpfs tmpfs ro
57 74 0:49 / /sys/firmware rw,relatime - tmpfs tmpfs rw
58 74 0:50 / /proc/scsi ro,relatime - proc proc ro";

    #[test]
    fn only_a_read_only_tmpfs_of_its_own_counts() {
        assert!(empty_ro_tmpfs(INFO, "/proc/acpi"));
        // A bind of /dev's null node, not a tmpfs root.
        assert!(!empty_ro_tmpfs(INFO, "/proc/keys"));
        // The topmost mount decides: remounted writable on top.
        assert!(!empty_ro_tmpfs(INFO, "/sys/firmware"));
        assert!(!empty_ro_tmpfs(INFO, "/proc/scsi"));
        assert!(!empty_ro_tmpfs(INFO, "/proc/nothing"));
    }

    #[test]
    fn a_list_from_elsewhere_cannot_point_outside() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join(LIST),
            r#"["/proc/acpi","relative","/sys/../../etc"]"#,
        )
        .unwrap();
        assert_eq!(load(d.path()), vec!["/proc/acpi".to_string()]);
        save(d.path(), &[]).unwrap();
        assert!(load(d.path()).is_empty());
    }
}
