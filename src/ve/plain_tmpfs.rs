//! A VE's runtime-made tmpfs mounts in a move that hold nothing of the VE's: left out of
//! the dump, made anew by the restore.
//!
//! libcontainer masks a directory (`/proc/acpi`, `/sys/firmware`, ...) with an empty
//! read-only tmpfs, and on cgroup v1 mounts a tmpfs at /sys/fs/cgroup that holds only
//! the controllers' mount points and is then made read-only. CRIU dumps every tmpfs as a
//! tar stream and restores it from one: a tar and a gzip started on each end for a mount
//! that holds nothing of the VE's (6-16 ms each way here, with the VE frozen). A mount
//! that is still a read-only tmpfs of its own holding only directories and symbolic
//! links once the VE is frozen is handed to CRIU as an external mount instead, and the
//! restore binds a new tmpfs made the same way there (same options, same entries). One
//! that is not (a VE that remounted it writable and wrote to it) is dumped as before.
//! A writable tmpfs of the spec's (/dev, /dev/shm) is left out the same way; the
//! restore's is writable again. Its top level may also hold device nodes, each one a
//! fresh create would make there (libcontainer's defaults, the spec's devices): the
//! restore makes only those, whatever the list from the source says. A file of it that
//! the VE unlinked but holds open or mapped is one of CRIU's ghost files either way (its
//! content in the images, made again in the new mount and unlinked there).

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use serde::{Deserialize, Serialize};

use crate::sys::mountinfo::{self, Mount};

/// The list of left-out mounts, beside CRIU's images.
const LIST: &str = "vzrun-plain-tmpfs.json";
/// The stand-in mounts' names in the VE's directory: this and a number.
const STANDIN: &str = "plain-tmpfs-";

/// Whether `name` in a VE's directory is a stand-in mount's.
pub fn is_standin(name: &std::ffi::OsStr) -> bool {
    name.to_str().is_some_and(|n| {
        n.strip_prefix(STANDIN)
            .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// One read-only tmpfs left out of a dump: enough to make it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plain {
    /// The mount point as the VE sees it (CRIU's key for it).
    pub point: String,
    /// Its filesystem options (`mode=755`), without rw/ro.
    #[serde(default)]
    pub data: String,
    /// The filesystem itself is read-only (not only this mount of it).
    #[serde(default)]
    pub sb_ro: bool,
    /// This mount's flags: nosuid, nodev, noexec, relatime, ...
    #[serde(default)]
    pub flags: Vec<String>,
    /// Its top-level entries: a directory (`None`) or a symbolic link to the target.
    #[serde(default)]
    pub entries: Vec<(String, Option<String>)>,
    /// The VE's mount was writable (one of the spec's); absent in lists of read-only
    /// ones.
    #[serde(default)]
    pub writable: bool,
    /// Its top-level device nodes.
    #[serde(default)]
    pub nodes: Vec<Node>,
}

/// A device node at the top of a left-out tmpfs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    /// A block device (else a character one).
    #[serde(default)]
    pub block: bool,
    pub major: u64,
    pub minor: u64,
    /// Permission bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl Node {
    /// Whether a create from `spec` would make this device: one of libcontainer's
    /// defaults or of the spec's `linux.devices`, of the same kind and numbers.
    fn allowed(&self, spec: &Spec) -> bool {
        use oci_spec::runtime::LinuxDeviceType as T;
        let spec_devices = spec
            .linux()
            .as_ref()
            .and_then(|l| l.devices().clone())
            .unwrap_or_default();
        libcontainer::rootfs::utils::default_devices()
            .iter()
            .chain(spec_devices.iter())
            .any(|d| {
                let kind_ok = match d.typ() {
                    T::B => self.block,
                    T::C | T::U => !self.block,
                    _ => false,
                };
                kind_ok && d.major() as u64 == self.major && d.minor() as u64 == self.minor
            })
    }
}

/// The VE's runtime-made tmpfs mounts that can be left out of a dump now. Not for a VE
/// with a user namespace or a mount label, whose tmpfs a host-made one would not match
/// (owner, label).
pub fn leave_out(pid: i32, spec: &Spec) -> Vec<Plain> {
    let Some(linux) = spec.linux() else {
        return Vec::new();
    };
    let userns = linux
        .namespaces()
        .as_ref()
        .is_some_and(|ns| ns.iter().any(|n| n.typ() == LinuxNamespaceType::User));
    if userns || linux.mount_label().is_some() {
        return Vec::new();
    }
    let Ok(info) = mountinfo::read(Some(pid)) else {
        return Vec::new();
    };
    let mut points: Vec<String> = linux.masked_paths().clone().unwrap_or_default();
    points.extend(
        spec.mounts()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter(|m| matches!(m.typ().as_deref(), Some("cgroup" | "tmpfs")))
            .map(|m| m.destination().display().to_string()),
    );
    points.sort();
    points.dedup();
    points
        .iter()
        .filter_map(|p| plain(pid, &info, p))
        .filter(|p| p.nodes.iter().all(|n| n.allowed(spec)))
        .collect()
}

/// The tmpfs at `point` when it can be made again: the topmost mount there, a tmpfs of
/// its own (its root is the filesystem's root), and either read-only, holding only
/// directories and symbolic links at its top and nothing below them but other mounts, or
/// writable and empty.
fn plain(pid: i32, info: &[Mount], point: &str) -> Option<Plain> {
    let top = mountinfo::top_at(info, Path::new(point))?;
    if top.root != Path::new("/") || top.fstype != "tmpfs" {
        return None;
    }
    let mnt_opts: Vec<&str> = top.options.split(',').collect();
    let writable = !top.has_option("ro");
    let sb: Vec<&str> = top.super_options.split(',').collect();
    let root = PathBuf::from(format!("/proc/{pid}/root{point}"));
    let mut entries = Vec::new();
    let mut nodes = Vec::new();
    for e in std::fs::read_dir(&root).ok()? {
        use std::os::unix::fs::FileTypeExt;
        let e = e.ok()?;
        let name = e.file_name().into_string().ok()?;
        let t = e.file_type().ok()?;
        if t.is_symlink() {
            let target = std::fs::read_link(e.path()).ok()?;
            entries.push((name, Some(target.into_os_string().into_string().ok()?)));
        } else if t.is_dir() {
            // A directory of its own could hold the VE's files; one that another mount
            // covers (a controller's) holds nothing the VE can reach.
            let covered = Path::new(point).join(&name);
            if !info.iter().any(|m| m.point == covered) {
                return None;
            }
            entries.push((name, None));
        } else if t.is_char_device() || t.is_block_device() {
            use std::os::unix::fs::MetadataExt;
            let m = e.metadata().ok()?;
            let rdev = m.rdev();
            nodes.push(Node {
                name,
                block: t.is_block_device(),
                major: nix::sys::stat::major(rdev),
                minor: nix::sys::stat::minor(rdev),
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
            });
        } else {
            return None;
        }
    }
    entries.sort();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    let flags: Vec<String> = mnt_opts
        .iter()
        .filter(|o| !matches!(**o, "rw" | "ro"))
        .map(|o| o.to_string())
        .collect();
    // A flag the restore could not set back keeps the mount in the dump.
    mount_flags(&flags).ok()?;
    Some(Plain {
        point: point.to_string(),
        data: sb
            .iter()
            .filter(|o| !matches!(**o, "rw" | "ro" | "seclabel" | ""))
            .copied()
            .collect::<Vec<_>>()
            .join(","),
        sb_ro: sb.contains(&"ro"),
        flags,
        entries,
        writable,
        nodes,
    })
}

/// Checked once the VE is frozen: each left-out mount is still as it was listed while
/// the VE ran.
pub fn still_left_out(pid: i32, plains: &[Plain]) -> Result<(), String> {
    let info =
        mountinfo::read(Some(pid)).map_err(|e| format!("read /proc/{pid}/mountinfo: {e}"))?;
    for p in plains {
        if plain(pid, &info, &p.point).as_ref() != Some(p) {
            return Err(format!(
                "the VE's tmpfs at {} changed as the move began; move it again",
                p.point
            ));
        }
    }
    Ok(())
}

pub fn save(image: &Path, plains: &[Plain]) -> std::io::Result<()> {
    crate::sys::fs::save_json_list(&image.join(LIST), plains)
}

/// The left-out mounts of the dump in `image` (none in an image from elsewhere); entries
/// that could name anything but a plain name inside the mount are dropped.
pub fn load(image: &Path) -> Vec<Plain> {
    let plain_name = |n: &str| !n.is_empty() && n != "." && n != ".." && !n.contains('/');
    std::fs::read(image.join(LIST))
        .ok()
        .and_then(|d| serde_json::from_slice::<Vec<Plain>>(&d).ok())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.point.starts_with('/') && !p.point.split('/').any(|c| c == ".."))
        .filter(|p| p.entries.iter().all(|(n, _)| plain_name(n)))
        .filter(|p| p.nodes.iter().all(|n| plain_name(&n.name)))
        .collect()
}

/// This mount's flags as mount(2) takes them; unknown words are an error.
fn mount_flags(words: &[String]) -> std::io::Result<MsFlags> {
    let mut f = MsFlags::empty();
    for w in words {
        f |= match w.as_str() {
            "nosuid" => MsFlags::MS_NOSUID,
            "nodev" => MsFlags::MS_NODEV,
            "noexec" => MsFlags::MS_NOEXEC,
            "relatime" => MsFlags::MS_RELATIME,
            "noatime" => MsFlags::MS_NOATIME,
            "nodiratime" => MsFlags::MS_NODIRATIME,
            "strictatime" => MsFlags::MS_STRICTATIME,
            other => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("mount flag {other:?}"),
                ))
            }
        };
    }
    Ok(f)
}

/// The new tmpfs mounts a restore binds at the left-out points, on the host under the
/// VE's scratch directory; unmounted when dropped (the VE's binds keep them alive).
pub struct Standins {
    dirs: Vec<PathBuf>,
}

impl Standins {
    /// One tmpfs per left-out mount, made as the VE's was, and CRIU's external mount
    /// map for them. A device node that a create from `spec` would not make is refused.
    pub fn mount(
        scratch: &Path,
        plains: &[Plain],
        spec: &Spec,
    ) -> std::io::Result<(Standins, Vec<(String, String)>)> {
        let mut made = Standins { dirs: Vec::new() };
        let mut map = Vec::new();
        for (n, p) in plains.iter().enumerate() {
            let dir = scratch.join(format!("{STANDIN}{n}"));
            std::fs::create_dir_all(&dir)?;
            let data = (!p.data.is_empty()).then_some(p.data.as_str());
            if let Err(e) = mount(Some("tmpfs"), &dir, Some("tmpfs"), MsFlags::empty(), data) {
                let _ = std::fs::remove_dir(&dir);
                return Err(e.into());
            }
            made.dirs.push(dir.clone());
            for (name, link) in &p.entries {
                let at = dir.join(name);
                match link {
                    Some(t) => std::os::unix::fs::symlink(t, &at)?,
                    None => {
                        use std::os::unix::fs::DirBuilderExt;
                        std::fs::DirBuilder::new().mode(0o755).create(&at)?
                    }
                }
            }
            for n in &p.nodes {
                make_node(&dir, n, spec)?;
            }
            if p.sb_ro {
                mount(
                    None::<&str>,
                    &dir,
                    None::<&str>,
                    MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                    data,
                )?;
            }
            let ro = if p.writable {
                MsFlags::empty()
            } else {
                MsFlags::MS_RDONLY
            };
            mount(
                None::<&str>,
                &dir,
                None::<&str>,
                MsFlags::MS_REMOUNT | MsFlags::MS_BIND | ro | mount_flags(&p.flags)?,
                None::<&str>,
            )?;
            map.push((p.point.clone(), dir.display().to_string()));
        }
        Ok((made, map))
    }
}

/// Makes the device node `n` in `dir`, with its owner and permissions.
fn make_node(dir: &Path, n: &Node, spec: &Spec) -> std::io::Result<()> {
    use nix::sys::stat::{fchmodat, makedev, mknod, FchmodatFlags, Mode, SFlag};
    if !n.allowed(spec) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "device node {} ({}:{}) in a left-out tmpfs is not one the VE's spec makes",
                n.name, n.major, n.minor
            ),
        ));
    }
    let at = dir.join(&n.name);
    let kind = if n.block {
        SFlag::S_IFBLK
    } else {
        SFlag::S_IFCHR
    };
    let mode = Mode::from_bits_truncate(n.mode);
    mknod(&at, kind, mode, makedev(n.major, n.minor))?;
    // mknod's mode passed through the umask.
    fchmodat(None, &at, mode, FchmodatFlags::FollowSymlink)?;
    std::os::unix::fs::lchown(&at, Some(n.uid), Some(n.gid))
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
57 74 0:51 / /sys/firmware rw,relatime - sysfs sysfs rw
58 74 0:50 / /proc/scsi ro,relatime - proc proc ro";

    #[test]
    fn only_a_read_only_tmpfs_of_its_own_counts() {
        // pid 1's /proc/acpi is not what INFO says it is: only the refusals are checked
        // here, before any directory is read.
        let me = std::process::id() as i32;
        // A bind of /dev's null node, not a tmpfs root.
        let info = mountinfo::parse(INFO);
        assert_eq!(plain(me, &info, "/proc/keys"), None);
        // The topmost mount decides: something else mounted on top.
        assert_eq!(plain(me, &info, "/sys/firmware"), None);
        assert_eq!(plain(me, &info, "/proc/scsi"), None);
        assert_eq!(plain(me, &info, "/proc/nothing"), None);
    }

    #[test]
    fn only_devices_a_create_would_make_are_made_again() {
        let node = |block, major, minor| Node {
            name: "n".into(),
            block,
            major,
            minor,
            mode: 0o666,
            uid: 0,
            gid: 0,
        };
        let mut spec = Spec::default();
        assert!(node(false, 1, 3).allowed(&spec), "/dev/null");
        assert!(node(false, 5, 0).allowed(&spec), "/dev/tty");
        assert!(!node(true, 1, 3).allowed(&spec), "a block device 1:3");
        assert!(
            !node(true, 8, 0).allowed(&spec),
            "a disk the spec does not name"
        );
        let disk = oci_spec::runtime::LinuxDeviceBuilder::default()
            .path("/dev/sda")
            .typ(oci_spec::runtime::LinuxDeviceType::B)
            .major(8)
            .minor(0)
            .build()
            .unwrap();
        let mut linux = spec.linux().clone().unwrap_or_default();
        linux.set_devices(Some(vec![disk]));
        spec.set_linux(Some(linux));
        assert!(node(true, 8, 0).allowed(&spec));
        assert!(
            !node(false, 8, 0).allowed(&spec),
            "same numbers, other kind"
        );
        let d = tempfile::tempdir().unwrap();
        let err = make_node(d.path(), &node(true, 8, 1), &spec).unwrap_err();
        assert!(err.to_string().contains("n (8:1)"), "{err}");
        assert!(!d.path().join("n").exists());
    }

    #[test]
    fn mount_words_become_flags_and_unknown_ones_are_refused() {
        let w = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            mount_flags(&w(&["nosuid", "nodev", "noexec", "relatime"])).unwrap(),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RELATIME
        );
        assert!(mount_flags(&w(&["shared:5"])).is_err());
    }

    #[test]
    fn a_list_from_elsewhere_cannot_point_outside() {
        let d = tempfile::tempdir().unwrap();
        let p = |point: &str, entry: &str| Plain {
            point: point.into(),
            data: String::new(),
            sb_ro: true,
            flags: vec![],
            entries: vec![(entry.into(), None)],
            writable: false,
            nodes: vec![],
        };
        save(
            d.path(),
            &[
                p("/sys/fs/cgroup", "cpu"),
                p("relative", "x"),
                p("/sys/../../etc", "x"),
                p("/proc/acpi", "../../etc"),
            ],
        )
        .unwrap();
        assert_eq!(load(d.path()), vec![p("/sys/fs/cgroup", "cpu")]);
        save(d.path(), &[]).unwrap();
        assert!(load(d.path()).is_empty());
    }
}
