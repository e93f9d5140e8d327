//! The container's root filesystem set up by vzrun's own init, without libcontainer: the
//! same mounts, devices and links as libcontainer 0.7's `prepare_rootfs`, pivot and
//! `readonlyPaths`/`maskedPaths` (plus the `ro` that vzrun's `finish` adds for tmpfs and
//! cgroup mounts), in a handful of system calls a mount.
//!
//! Everything that can be decided before the fork is decided in [`RootfsPlan::plan`]:
//! option words become mount attributes and `fsconfig` strings, destinations become
//! NUL-terminated relative paths, the host's cgroup mounts are listed. A spec asking for
//! something this module does not do gets [`RootfsError::Unsupported`] there, and the
//! caller uses libcontainer instead.
//!
//! Why it is safe against a hostile image: every destination is looked up from an O_PATH
//! descriptor of the rootfs with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, so a
//! symbolic link (absolute or `..`) in the image resolves inside the image; missing
//! directories are made one at a time beneath a directory found that way; and the mount
//! is attached to the descriptor itself (`move_mount` with `MOVE_MOUNT_T_EMPTY_PATH`), so
//! what was checked is what is mounted on. New filesystems are made with the new mount
//! API (`fsopen`/`fsconfig`/`fsmount`) and binds with `open_tree`, as libcontainer 0.7
//! does, so that the mount table reads the same (a mount's attributes, not its
//! superblock, carry `ro`).
//!
//! Where it parts from libcontainer 0.7 on purpose (hack/rootfs-compare.sh shows the
//! rest reads the same): a mount's propagation words (`rprivate`, `rslave`, `rshared`...)
//! are applied after the mount as runc does (libcontainer parses them as flags to clear
//! and never applies them); `ro` on tmpfs and cgroup mounts is set at the mount, where
//! vzrun's `finish` otherwise adds it afterwards; a device node or /dev link that already
//! exists is left as runc leaves it (libcontainer fails); the kcore link is runc's
//! /dev/core; a stdio descriptor that is closed is skipped when /dev/null is reopened.

// Until create_direct calls it, the binary has no user of this module but its tests.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::{Mode, SFlag};

use crate::sys::fs::{self, open_in_root as open_in};
use oci_spec::runtime::{LinuxDeviceType, LinuxNamespaceType, Spec};

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// The spec asks for something this module does not do: the caller falls back to
    /// libcontainer. Built only in `plan`.
    #[error("not supported by the direct path: {0}")]
    Unsupported(String),
    /// A step failed in the init; the message names the mount/path and the errno, like
    /// runc's error words where practical.
    #[error("{0}")]
    Step(String),
}

type Result<T> = std::result::Result<T, RootfsError>;

// From <linux/mount.h> and <linux/fcntl.h>; libc 0.2 does not carry all of them.
const FSOPEN_CLOEXEC: libc::c_uint = 0x1;
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 0x1;
const OPEN_TREE_CLONE: libc::c_uint = 0x1;
const AT_EMPTY_PATH: libc::c_uint = 0x1000;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x04;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;
const MOUNT_ATTR_ATIME: u64 = 0x70;
const MOUNT_ATTR_RELATIME: u64 = 0x0;
const MOUNT_ATTR_NOATIME: u64 = 0x10;
const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;
// Propagation types as mount_setattr's `propagation` takes them (the MS_* values).
const PROP_UNBINDABLE: u64 = 1 << 17;
const PROP_PRIVATE: u64 = 1 << 18;
const PROP_SLAVE: u64 = 1 << 19;
const PROP_SHARED: u64 = 1 << 20;
const PROC_SUPER_MAGIC: i64 = 0x9fa0;
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The entries under /proc a mount may cover (what lxcfs emulates): libcontainer's and
/// runc's list.
const PROC_MOUNTS_ALLOWED: &[&str] = &[
    "/proc/cpuinfo",
    "/proc/diskstats",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/slabinfo",
    "/proc/sys/kernel/ns_last_pid",
    "/proc/sys/crypto/fips_enabled",
];

/// `struct mount_attr` (MOUNT_ATTR_SIZE_VER0).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

impl MountAttr {
    fn is_empty(&self) -> bool {
        self.attr_set == 0 && self.attr_clr == 0 && self.propagation == 0
    }
}

/// A path inside the container, made clean in `plan`.
#[derive(Debug, Clone)]
struct Target {
    /// As the container names it (`/dev/pts`), for messages.
    shown: String,
    /// Relative to the root (`dev/pts`), for lookups from the rootfs descriptor.
    rel: PathBuf,
}

impl Target {
    /// `path` made lexically clean inside "/" (`..` at the top stays at the top, as
    /// runc's filepath.Clean of an absolute path); `None` for the root itself.
    fn new(path: &Path) -> Option<Target> {
        let rel = fs::clean_in_root(path);
        if rel.as_os_str().is_empty() {
            return None;
        }
        Some(Target {
            shown: format!("/{}", rel.display()),
            rel,
        })
    }

    /// The directory it is in, and its name there.
    fn split(&self) -> (&Path, &std::ffi::OsStr) {
        (
            self.rel.parent().unwrap_or(Path::new("")),
            self.rel.file_name().unwrap_or_default(),
        )
    }
}

/// One `fsconfig` setting: `key=value` or a bare flag.
#[derive(Debug, Clone)]
struct FsOpt(CString, Option<CString>);

/// A new filesystem instance: `fsopen(fstype)`, `source`, the data options.
#[derive(Debug, Clone)]
struct Fresh {
    fstype: CString,
    source: CString,
    data: Vec<FsOpt>,
}

/// One v1 hierarchy as the container's cgroup mount shows it.
#[derive(Debug, Clone)]
struct V1Hierarchy {
    /// Its directory name under /sys/fs/cgroup (`cpu`, `cpu,cpuacct`, `systemd`).
    name: CString,
    /// Its controllers as /proc/PID/cgroup names them (`name=systemd` for a named one).
    key: String,
    /// The host's mount point of the hierarchy.
    host_mount: PathBuf,
    /// Host pid 1's cgroup in it, stripped from the init's own (libcontainer's rule for
    /// a runtime that itself runs in a container).
    pid1_path: String,
    /// With a cgroup namespace: the v1 filesystem mounted anew.
    ns_fs: Fresh,
    /// Where it is mounted in the container, for messages.
    shown: String,
    /// The co-mounted controllers (`cpu`, `cpuacct` of `cpu,cpuacct`): links to `name`.
    comounts: Vec<CString>,
}

#[derive(Debug, Clone)]
enum What {
    Bind {
        source: CString,
        recursive: bool,
        dir: bool,
    },
    Fresh {
        fs: Fresh,
        /// proc or sysfs: the destination must be a real directory (runc
        /// GHSA-fh74-hm69-rqjw).
        ordinary_dir: bool,
    },
    /// cgroup v1 (legacy or hybrid host): a tmpfs with one mount per hierarchy.
    CgroupV1 {
        /// The tmpfs (mode=755) the hierarchies are mounted in.
        tmpfs: Fresh,
        hierarchies: Vec<V1Hierarchy>,
        namespaced: bool,
        ro: bool,
    },
    /// cgroup v2: a cgroup2 mount, or a bind of the init's cgroup when that fails.
    Cgroup2 { fs: Fresh, host_unified: PathBuf },
}

#[derive(Debug, Clone)]
struct Step {
    dest: Target,
    source_shown: String,
    what: What,
    /// Attributes of the mount itself.
    attr: MountAttr,
    /// Attributes for the whole tree (`rro`, `rnosuid`...).
    rec: Option<MountAttr>,
    /// Propagation words in order (runc applies them after the mount): flag, recursive.
    propagation: Vec<(u64, bool)>,
    /// Destination lexically under /proc and on the allow list.
    proc_allowed: bool,
}

#[derive(Debug, Clone)]
struct Dev {
    target: Target,
    kind: SFlag,
    mode: u32,
    rdev: libc::dev_t,
    uid: Option<u32>,
    gid: Option<u32>,
}

/// Everything the init needs to set up the rootfs, decided before the fork.
#[derive(Debug)]
pub struct RootfsPlan {
    rootfs: CString,
    rootfs_shown: String,
    /// MS_REC | MS_SLAVE/SHARED/PRIVATE for "/" (rootfsPropagation).
    root_propagation: MsFlags,
    /// The mount holding the rootfs, made private before the rootfs bind when
    /// rootfsPropagation is shared (pivot_root refuses a shared parent).
    parent_private: Option<CString>,
    steps: Vec<Step>,
    devices: Vec<Dev>,
    kcore: bool,
    no_pivot: bool,
    /// After pivot: MS_SHARED or MS_UNBINDABLE on "/".
    adjust: Option<MsFlags>,
    readonly_root: bool,
    /// The spec's /dev mount is `ro`: it is made writable for the devices and links,
    /// and remounted read-only in `finish`, as runc's finalizeRootfs does.
    readonly_dev: bool,
    readonly_paths: Vec<Target>,
    masked_paths: Vec<Target>,
    /// `/dev`, where the links and devices go.
    dev_dir: Target,
    /// The read-only tmpfs laid over a masked directory.
    masked_tmpfs: Fresh,
}

fn unsupported(what: impl Into<String>) -> RootfsError {
    RootfsError::Unsupported(what.into())
}

fn step_err(what: impl std::fmt::Display, e: Errno) -> RootfsError {
    RootfsError::Step(format!("{what}: {}", crate::sys::errno::words(e)))
}

fn cstring(b: &[u8], what: &str) -> Result<CString> {
    CString::new(b).map_err(|_| unsupported(format!("{what} has a NUL byte")))
}

/// The option words of a mount, sorted as libcontainer 0.7 sorts them.
#[derive(Debug)]
struct Options {
    flags: MsFlags,
    rec: Option<MountAttr>,
    propagation: Vec<(u64, bool)>,
    data: Vec<String>,
    bind: bool,
    recursive: bool,
}

fn parse_options(words: &[String]) -> Result<Options> {
    let mut o = Options {
        flags: MsFlags::empty(),
        rec: None,
        propagation: Vec::new(),
        data: Vec::new(),
        bind: false,
        recursive: false,
    };
    for w in words {
        let rec = match w.as_str() {
            "rro" => Some((false, MOUNT_ATTR_RDONLY)),
            "rrw" => Some((true, MOUNT_ATTR_RDONLY)),
            "rnosuid" => Some((false, MOUNT_ATTR_NOSUID)),
            "rsuid" => Some((true, MOUNT_ATTR_NOSUID)),
            "rnodev" => Some((false, MOUNT_ATTR_NODEV)),
            "rdev" => Some((true, MOUNT_ATTR_NODEV)),
            "rnoexec" => Some((false, MOUNT_ATTR_NOEXEC)),
            "rexec" => Some((true, MOUNT_ATTR_NOEXEC)),
            "rnodiratime" => Some((false, MOUNT_ATTR_NODIRATIME)),
            "rdiratime" => Some((true, MOUNT_ATTR_NODIRATIME)),
            "rrelatime" => Some((false, MOUNT_ATTR_RELATIME)),
            "rnorelatime" => Some((true, MOUNT_ATTR_RELATIME)),
            "rnoatime" => Some((false, MOUNT_ATTR_NOATIME)),
            "ratime" => Some((true, MOUNT_ATTR_NOATIME)),
            "rstrictatime" => Some((false, MOUNT_ATTR_STRICTATIME)),
            "rnostrictatime" => Some((true, MOUNT_ATTR_STRICTATIME)),
            "rnosymfollow" => Some((false, MOUNT_ATTR_NOSYMFOLLOW)),
            "rsymfollow" => Some((true, MOUNT_ATTR_NOSYMFOLLOW)),
            _ => None,
        };
        if let Some((clear, flag)) = rec {
            let a = o.rec.get_or_insert_with(MountAttr::default);
            if clear {
                a.attr_clr |= flag;
            } else {
                a.attr_set |= flag;
            }
            // An access-time setting replaces the whole field (mount_setattr(2)).
            if flag & MOUNT_ATTR_ATIME == flag {
                a.attr_clr |= MOUNT_ATTR_ATIME;
            }
            continue;
        }
        let flag = match w.as_str() {
            "defaults" => Some((false, MsFlags::empty())),
            "ro" => Some((false, MsFlags::MS_RDONLY)),
            "rw" => Some((true, MsFlags::MS_RDONLY)),
            "suid" => Some((true, MsFlags::MS_NOSUID)),
            "nosuid" => Some((false, MsFlags::MS_NOSUID)),
            "dev" => Some((true, MsFlags::MS_NODEV)),
            "nodev" => Some((false, MsFlags::MS_NODEV)),
            "exec" => Some((true, MsFlags::MS_NOEXEC)),
            "noexec" => Some((false, MsFlags::MS_NOEXEC)),
            "atime" => Some((true, MsFlags::MS_NOATIME)),
            "noatime" => Some((false, MsFlags::MS_NOATIME)),
            "diratime" => Some((true, MsFlags::MS_NODIRATIME)),
            "nodiratime" => Some((false, MsFlags::MS_NODIRATIME)),
            "relatime" => Some((false, MsFlags::MS_RELATIME)),
            "norelatime" => Some((true, MsFlags::MS_RELATIME)),
            "strictatime" => Some((false, MsFlags::MS_STRICTATIME)),
            "nostrictatime" => Some((true, MsFlags::MS_STRICTATIME)),
            // Neither the new mount API nor libcontainer's mount_setattr carries these;
            // a spec that asks for them goes the old way.
            "sync" | "async" | "dirsync" | "mand" | "nomand" | "remount" => {
                return Err(unsupported(format!("mount option {w}")))
            }
            _ => None,
        };
        if let Some((clear, f)) = flag {
            if clear {
                o.flags &= !f;
            } else {
                o.flags |= f;
            }
            continue;
        }
        let prop = match w.as_str() {
            "bind" => {
                o.bind = true;
                continue;
            }
            "rbind" => {
                o.bind = true;
                o.recursive = true;
                continue;
            }
            "private" => (PROP_PRIVATE, false),
            "rprivate" => (PROP_PRIVATE, true),
            "shared" => (PROP_SHARED, false),
            "rshared" => (PROP_SHARED, true),
            "slave" => (PROP_SLAVE, false),
            "rslave" => (PROP_SLAVE, true),
            "unbindable" => (PROP_UNBINDABLE, false),
            "runbindable" => (PROP_UNBINDABLE, true),
            "idmap" | "ridmap" => return Err(unsupported("idmapped mounts")),
            _ => {
                o.data.push(w.clone());
                continue;
            }
        };
        o.propagation.push(prop);
    }
    Ok(o)
}

/// The attributes `mount_setattr`/`fsmount` take for MS_* flags, with libcontainer's
/// access-time rule (strictatime over noatime over relatime).
fn attr_of(flags: MsFlags) -> MountAttr {
    let mut a = MountAttr::default();
    for (ms, attr) in [
        (MsFlags::MS_RDONLY, MOUNT_ATTR_RDONLY),
        (MsFlags::MS_NOSUID, MOUNT_ATTR_NOSUID),
        (MsFlags::MS_NODEV, MOUNT_ATTR_NODEV),
        (MsFlags::MS_NOEXEC, MOUNT_ATTR_NOEXEC),
        (MsFlags::MS_NODIRATIME, MOUNT_ATTR_NODIRATIME),
    ] {
        if flags.contains(ms) {
            a.attr_set |= attr;
        }
    }
    let atime = if flags.contains(MsFlags::MS_STRICTATIME) {
        Some(MOUNT_ATTR_STRICTATIME)
    } else if flags.contains(MsFlags::MS_NOATIME) {
        Some(MOUNT_ATTR_NOATIME)
    } else if flags.contains(MsFlags::MS_RELATIME) {
        Some(MOUNT_ATTR_RELATIME)
    } else {
        None
    };
    if let Some(t) = atime {
        a.attr_clr |= MOUNT_ATTR_ATIME;
        a.attr_set |= t;
    }
    a
}

fn fs_opts(data: &[String], what: &str) -> Result<Vec<FsOpt>> {
    data.iter()
        .filter(|s| !s.is_empty())
        .map(|s| match s.split_once('=') {
            Some((k, v)) => Ok(FsOpt(
                cstring(k.as_bytes(), what)?,
                Some(cstring(v.as_bytes(), what)?),
            )),
            None => Ok(FsOpt(cstring(s.as_bytes(), what)?, None)),
        })
        .collect()
}

/// How the host's cgroups are mounted (libcgroups' rule: /sys/fs/cgroup a cgroup2 mount,
/// or a tmpfs with or without a cgroup2 `unified` beneath).
enum CgroupSetup {
    Unified,
    V1,
}

fn cgroup_setup() -> Result<CgroupSetup> {
    use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC, TMPFS_MAGIC};
    let st = statfs(CGROUP_ROOT).map_err(|e| unsupported(format!("statfs {CGROUP_ROOT}: {e}")))?;
    if st.filesystem_type() == CGROUP2_SUPER_MAGIC {
        Ok(CgroupSetup::Unified)
    } else if st.filesystem_type() == TMPFS_MAGIC {
        Ok(CgroupSetup::V1)
    } else {
        Err(unsupported("an unknown cgroup setup"))
    }
}

/// `/proc/PID/cgroup` as controllers -> path (`name=systemd` for named hierarchies, ""
/// for the unified one).
fn parse_proc_cgroup(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let _id = f.next()?;
            let controllers = f.next()?;
            let path = f.next()?;
            Some((controllers.to_string(), path.to_string()))
        })
        .collect()
}

fn cgroup_v1_plan(dest: &Target, namespaced: bool, ro: bool) -> Result<What> {
    let table = crate::sys::mountinfo::read(None)
        .map_err(|e| unsupported(format!("read mountinfo: {e}")))?;
    let pid1 = std::fs::read_to_string("/proc/1/cgroup")
        .map(|t| parse_proc_cgroup(&t))
        .unwrap_or_default();
    let mut hierarchies = Vec::new();
    for m in table
        .iter()
        .filter(|m| m.fstype == "cgroup" && m.point.starts_with(CGROUP_ROOT))
    {
        let Some(name) = m.point.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let named = name == "systemd";
        let key = if named {
            format!("name={name}")
        } else {
            name.to_string()
        };
        let ns_data = if named {
            vec![FsOpt(
                c"name".into(),
                Some(cstring(name.as_bytes(), "cgroup")?),
            )]
        } else {
            name.split(',')
                .map(|c| Ok(FsOpt(cstring(c.as_bytes(), "cgroup")?, None)))
                .collect::<Result<_>>()?
        };
        let comounts = if name.contains(',') {
            name.split(',')
                .filter(|c| !c.is_empty())
                .map(|c| cstring(c.as_bytes(), "cgroup"))
                .collect::<Result<_>>()?
        } else {
            Vec::new()
        };
        let pid1_path = pid1
            .iter()
            .find(|(c, _)| *c == key)
            .map(|(_, p)| p.clone())
            .unwrap_or_default();
        hierarchies.push(V1Hierarchy {
            name: cstring(name.as_bytes(), "cgroup")?,
            key,
            host_mount: m.point.clone(),
            pid1_path,
            ns_fs: Fresh {
                fstype: c"cgroup".into(),
                source: c"cgroup".into(),
                data: ns_data,
            },
            shown: format!("{}/{name}", dest.shown),
            comounts,
        });
    }
    Ok(What::CgroupV1 {
        tmpfs: Fresh {
            fstype: c"tmpfs".into(),
            source: c"tmpfs".into(),
            data: vec![FsOpt(c"mode".into(), Some(c"755".into()))],
        },
        hierarchies,
        namespaced,
        ro,
    })
}

impl RootfsPlan {
    /// In the parent, before the fork: parse and decide everything (option strings to
    /// flags/data, which devices, host cgroup mounts for a cgroup mount, etc.). `rootfs`
    /// is the absolute (canonical) rootfs path; `cgroup_path` is the container's cgroup
    /// path as libcontainer uses it (relative to each hierarchy root, e.g.
    /// "/vzrun-xyz/id"); `mount_ns` whether the init has its own mount namespace;
    /// `cgroup_ns` whether a new cgroup namespace (the init unshares it before
    /// `prepare`, after being placed in its cgroup).
    pub fn plan(
        spec: &Spec,
        rootfs: &Path,
        cgroup_path: &Path,
        mount_ns: bool,
        cgroup_ns: bool,
        no_pivot: bool,
    ) -> Result<Self> {
        // The init reads its own cgroups (the source of a v1 bind is where it really is,
        // named hierarchies included); the path is only checked here.
        let _ = cgroup_path;
        let linux = spec
            .linux()
            .as_ref()
            .ok_or_else(|| unsupported("a spec without linux"))?;
        if !mount_ns {
            // libcontainer would set up the rootfs in the host's mount namespace
            // (making "/" a slave there): not something to copy.
            return Err(unsupported("no mount namespace"));
        }
        if !rootfs.is_absolute() {
            return Err(unsupported("a relative rootfs path"));
        }
        if linux
            .namespaces()
            .iter()
            .flatten()
            .any(|n| n.typ() == LinuxNamespaceType::User)
        {
            return Err(unsupported("a user namespace"));
        }
        if linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
            || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        {
            return Err(unsupported("uid/gid mappings"));
        }
        if linux.mount_label().as_ref().is_some_and(|l| !l.is_empty()) {
            return Err(unsupported("mountLabel (SELinux)"));
        }
        let (root_propagation, adjust) = match linux.rootfs_propagation().as_deref() {
            Some("shared") => (MsFlags::MS_SHARED, Some(MsFlags::MS_SHARED)),
            Some("private") => (MsFlags::MS_PRIVATE, None),
            Some("slave") | None | Some("") => (MsFlags::MS_SLAVE, None),
            Some("unbindable") => (MsFlags::MS_SLAVE, Some(MsFlags::MS_UNBINDABLE)),
            Some(other) => return Err(unsupported(format!("rootfsPropagation {other}"))),
        };
        let parent_private = if root_propagation == MsFlags::MS_SHARED {
            let table = crate::sys::mountinfo::read(None)
                .map_err(|e| unsupported(format!("read mountinfo: {e}")))?;
            let parent = table
                .iter()
                .filter(|m| rootfs.starts_with(&m.point))
                .max_by_key(|m| m.point.as_os_str().len())
                .ok_or_else(|| unsupported("no mount holds the rootfs"))?;
            Some(cstring(parent.point.as_os_str().as_bytes(), "mount point")?)
        } else {
            None
        };

        let mut steps = Vec::new();
        for m in spec.mounts().iter().flatten() {
            steps.push(plan_mount(m, cgroup_ns)?);
        }

        let mut devices = Vec::new();
        let given = linux.devices().clone().unwrap_or_default();
        for d in &given {
            devices.push(plan_device(
                d.path(),
                d.typ(),
                d.major(),
                d.minor(),
                d.file_mode(),
                d.uid(),
                d.gid(),
            )?);
        }
        for (path, major, minor) in [
            ("/dev/null", 1, 3),
            ("/dev/zero", 1, 5),
            ("/dev/full", 1, 7),
            ("/dev/tty", 5, 0),
            ("/dev/urandom", 1, 9),
            ("/dev/random", 1, 8),
        ] {
            if given.iter().any(|d| d.path() == Path::new(path)) {
                continue;
            }
            devices.push(plan_device(
                Path::new(path),
                LinuxDeviceType::C,
                major,
                minor,
                Some(0o666),
                None,
                None,
            )?);
        }

        let targets = |list: &Option<Vec<String>>| -> Vec<Target> {
            list.iter()
                .flatten()
                .filter_map(|p| Target::new(Path::new(p)))
                .collect()
        };
        Ok(RootfsPlan {
            rootfs: cstring(rootfs.as_os_str().as_bytes(), "rootfs")?,
            rootfs_shown: rootfs.display().to_string(),
            root_propagation: MsFlags::MS_REC | root_propagation,
            parent_private,
            steps,
            devices,
            kcore: Path::new("/proc/kcore").exists(),
            no_pivot,
            adjust,
            readonly_root: spec.root().as_ref().and_then(|r| r.readonly()) == Some(true),
            readonly_dev: spec.mounts().iter().flatten().any(|m| {
                Target::new(m.destination()).is_some_and(|t| t.shown == "/dev")
                    && m.options().iter().flatten().any(|o| o == "ro")
            }),
            readonly_paths: targets(linux.readonly_paths()),
            masked_paths: targets(linux.masked_paths()),
            dev_dir: Target::new(Path::new("/dev")).ok_or_else(|| unsupported("/dev"))?,
            masked_tmpfs: Fresh {
                fstype: c"tmpfs".into(),
                source: c"tmpfs".into(),
                data: vec![FsOpt(c"ro".into(), None)],
            },
        })
    }
}

fn plan_device(
    path: &Path,
    typ: LinuxDeviceType,
    major: i64,
    minor: i64,
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
) -> Result<Dev> {
    // libcontainer refuses a device outside /dev (runc too); let it say so. Checked on
    // the clean path: libcontainer's own check is lexical on the raw one, and lets
    // /dev/../etc/x through.
    let target = Target::new(path)
        .filter(|t| t.rel.starts_with("dev") && t.rel.components().count() >= 2)
        .ok_or_else(|| unsupported(format!("device {} outside /dev", path.display())))?;
    let kind = match typ {
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        LinuxDeviceType::A => return Err(unsupported("a device of type a")),
    };
    let (Ok(major), Ok(minor)) = (u32::try_from(major), u32::try_from(minor)) else {
        return Err(unsupported(format!("device numbers of {}", path.display())));
    };
    Ok(Dev {
        target,
        kind,
        mode: mode.unwrap_or(0o666) & 0o7777,
        rdev: libc::makedev(major, minor),
        uid,
        gid,
    })
}

fn plan_mount(m: &oci_spec::runtime::Mount, cgroup_ns: bool) -> Result<Step> {
    if m.uid_mappings().as_ref().is_some_and(|v| !v.is_empty())
        || m.gid_mappings().as_ref().is_some_and(|v| !v.is_empty())
    {
        return Err(unsupported("idmapped mounts"));
    }
    let words = m.options().clone().unwrap_or_default();
    let mut o = parse_options(&words)?;
    let typ = m.typ().as_deref();
    let dest_path = m.destination();
    let dest = Target::new(dest_path)
        .ok_or_else(|| unsupported(format!("a mount on {}", dest_path.display())))?;
    let shown_src = m
        .source()
        .as_ref()
        .map(|s| s.display().to_string())
        .unwrap_or_default();
    let is_bind = typ == Some("bind") || o.bind;
    let ro = o.flags.contains(MsFlags::MS_RDONLY);

    // libcontainer's check_proc_mount, on the clean destination: /proc takes only proc,
    // and below /proc only the lxcfs files.
    let under_proc = dest.shown.starts_with("/proc/");
    let proc_allowed = under_proc && PROC_MOUNTS_ALLOWED.contains(&dest.shown.as_str());
    if dest.shown == "/proc" && typ != Some("proc") {
        return Err(unsupported(format!(
            "{} of type {} on /proc",
            shown_src,
            typ.unwrap_or("")
        )));
    }
    if under_proc && !proc_allowed {
        return Err(unsupported(format!(
            "{} is not a valid mount under /proc",
            dest.shown
        )));
    }

    let what = if typ == Some("cgroup") {
        if is_bind {
            return Err(unsupported("a bind mount of type cgroup"));
        }
        match cgroup_setup()? {
            CgroupSetup::V1 => cgroup_v1_plan(&dest, cgroup_ns, ro)?,
            CgroupSetup::Unified => {
                let table = crate::sys::mountinfo::read(None)
                    .map_err(|e| unsupported(format!("read mountinfo: {e}")))?;
                let host_unified = table
                    .iter()
                    .find(|m| m.fstype == "cgroup2")
                    .map(|m| m.point.clone())
                    .ok_or_else(|| unsupported("no cgroup2 mount on the host"))?;
                What::Cgroup2 {
                    fs: Fresh {
                        fstype: c"cgroup2".into(),
                        source: c"cgroup".into(),
                        data: fs_opts(&o.data, "cgroup option")?,
                    },
                    host_unified,
                }
            }
        }
    } else if is_bind {
        let source = m
            .source()
            .as_ref()
            .ok_or_else(|| unsupported("a bind mount without a source"))?;
        let canon = std::fs::canonicalize(source)
            .map_err(|e| unsupported(format!("bind source {}: {e}", source.display())))?;
        What::Bind {
            dir: canon.is_dir(),
            source: cstring(canon.as_os_str().as_bytes(), "bind source")?,
            recursive: o.recursive,
        }
    } else {
        let Some(t) = typ.filter(|t| !t.is_empty()) else {
            return Err(unsupported(format!(
                "a mount on {} without a type",
                dest.shown
            )));
        };
        let source = m
            .source()
            .as_ref()
            .ok_or_else(|| unsupported(format!("a {t} mount without a source")))?;
        What::Fresh {
            fs: Fresh {
                fstype: cstring(t.as_bytes(), "mount type")?,
                source: cstring(source.as_os_str().as_bytes(), "mount source")?,
                data: fs_opts(&o.data, "mount option")?,
            },
            ordinary_dir: matches!(t, "proc" | "sysfs"),
        }
    };
    // libcontainer never makes /dev read-only (the devices are made in it).
    if dest.shown == "/dev" {
        o.flags &= !MsFlags::MS_RDONLY;
    }
    Ok(Step {
        dest,
        source_shown: shown_src,
        what,
        attr: attr_of(o.flags),
        rec: o.rec,
        propagation: o.propagation,
        proc_allowed,
    })
}

// ---- system calls nix 0.29 has no wrapper for (Linux 5.2 / 5.12) ----

fn owned(ret: libc::c_long) -> std::result::Result<OwnedFd, Errno> {
    if ret < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the call just returned this new descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
}

fn fsopen(fstype: &CStr) -> std::result::Result<OwnedFd, Errno> {
    // SAFETY: fsopen reads the NUL-terminated name and returns a new descriptor or -1.
    owned(unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) })
}

fn fsconfig(
    fd: BorrowedFd,
    cmd: libc::c_uint,
    key: Option<&CStr>,
    value: Option<&CStr>,
) -> std::result::Result<(), Errno> {
    let p = |c: Option<&CStr>| c.map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: key and value are NUL-terminated strings (or NULL where the command takes
    // none) that outlive the call; fd is an fs context descriptor.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fd.as_raw_fd(),
            cmd,
            p(key),
            p(value),
            0 as libc::c_int,
        )
    };
    Errno::result(r).map(drop)
}

fn fsmount(fd: BorrowedFd, attrs: u64) -> std::result::Result<OwnedFd, Errno> {
    // SAFETY: fsmount takes an fs context descriptor and flags, returns a new descriptor.
    owned(unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fd.as_raw_fd(),
            FSMOUNT_CLOEXEC,
            attrs as libc::c_uint,
        )
    })
}

fn open_tree(
    dir: RawFd,
    path: &CStr,
    recursive: bool,
    empty: bool,
) -> std::result::Result<OwnedFd, Errno> {
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    if empty {
        flags |= AT_EMPTY_PATH;
    }
    // SAFETY: open_tree reads the NUL-terminated path and returns a new descriptor.
    owned(unsafe { libc::syscall(libc::SYS_open_tree, dir, path.as_ptr(), flags) })
}

fn mount_setattr(
    fd: BorrowedFd,
    recursive: bool,
    attr: &MountAttr,
) -> std::result::Result<(), Errno> {
    let mut flags = AT_EMPTY_PATH;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    // SAFETY: attr points at a live struct mount_attr of the size passed; the path is "".
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    Errno::result(r).map(drop)
}

/// Attaches the detached mount `from` onto the very inode `to` was opened on.
fn move_mount(from: BorrowedFd, to: BorrowedFd) -> std::result::Result<(), Errno> {
    // SAFETY: both paths are "" with the EMPTY_PATH flags; both descriptors are live.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from.as_raw_fd(),
            c"".as_ptr(),
            to.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    Errno::result(r).map(drop)
}

fn openat2_raw(
    dir: BorrowedFd,
    path: &CStr,
    flags: OFlag,
    mode: u32,
    resolve: ResolveFlag,
) -> std::result::Result<OwnedFd, Errno> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .mode(Mode::from_bits_truncate(mode))
        .resolve(resolve);
    let fd = nix::fcntl::openat2(dir.as_raw_fd(), path, how)?;
    // SAFETY: openat2 just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn io_errno(e: &std::io::Error) -> Errno {
    e.raw_os_error().map_or(Errno::EIO, Errno::from_raw)
}

/// The directory `t` inside `root`, made (0755) where missing.
fn ensure_dir(root: BorrowedFd, t: &Target) -> Result<OwnedFd> {
    fs::mkdir_all_in_root(root, &t.rel, Mode::from_bits_truncate(0o755))
        .map_err(|e| step_err(format!("mkdir {}", t.shown), io_errno(&e)))
}

/// The file `t` inside `root`: made empty (0644) when nothing stands there, whatever
/// stands there otherwise (a link followed inside the root).
fn ensure_file(root: BorrowedFd, t: &Target) -> Result<OwnedFd> {
    fs::file_in_root(root, &t.rel, Mode::from_bits_truncate(0o644))
        .map_err(|e| step_err(format!("create {}", t.shown), io_errno(&e)))
}

/// A new filesystem instance as a detached mount with `attrs`.
fn make_fs(fs: &Fresh, attrs: u64) -> std::result::Result<OwnedFd, (&'static str, Errno)> {
    let ctx = fsopen(&fs.fstype).map_err(|e| ("fsopen", e))?;
    fsconfig(
        ctx.as_fd(),
        FSCONFIG_SET_STRING,
        Some(c"source"),
        Some(&fs.source),
    )
    .map_err(|e| ("fsconfig source", e))?;
    for FsOpt(k, v) in &fs.data {
        let cmd = if v.is_some() {
            FSCONFIG_SET_STRING
        } else {
            FSCONFIG_SET_FLAG
        };
        fsconfig(ctx.as_fd(), cmd, Some(k), v.as_deref()).map_err(|e| ("fsconfig", e))?;
    }
    fsconfig(ctx.as_fd(), FSCONFIG_CMD_CREATE, None, None).map_err(|e| ("fsconfig create", e))?;
    fsmount(ctx.as_fd(), attrs).map_err(|e| ("fsmount", e))
}

fn mounting(step: &Step, src: &str, what: &str, e: Errno) -> RootfsError {
    RootfsError::Step(format!(
        "error mounting {src:?} to rootfs at {:?}: {what}: {}",
        step.dest.shown,
        crate::sys::errno::words(e)
    ))
}

impl RootfsPlan {
    /// In the init (root, full caps, in its new mount ns and new pid ns, net/ipc/uts
    /// already entered): rootfs propagation, bind the rootfs onto itself, every spec
    /// mount in order, default + spec devices, /dev symlinks (fd, stdin, stdout, stderr,
    /// core if /proc/kcore exists), /dev/ptmx -> pts/ptmx — what libcontainer's
    /// RootFS::prepare_rootfs does.
    pub fn prepare(&self) -> Result<()> {
        use nix::mount::mount;
        let none: Option<&str> = None;
        mount(none, "/", none, self.root_propagation, none)
            .map_err(|e| step_err("change the mount propagation of the root", e))?;
        if let Some(parent) = &self.parent_private {
            mount(none, parent.as_c_str(), none, MsFlags::MS_PRIVATE, none)
                .map_err(|e| step_err(format!("make {parent:?} private"), e))?;
        }
        mount(
            Some(self.rootfs.as_c_str()),
            self.rootfs.as_c_str(),
            none,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            none,
        )
        .map_err(|e| step_err(format!("bind mount the rootfs {}", self.rootfs_shown), e))?;
        // Opened after the bind, so that lookups (and the mounts made on what they find)
        // are in the bind, the tree that becomes "/".
        let root = nix::fcntl::open(
            self.rootfs.as_c_str(),
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
            Mode::empty(),
        )
        // SAFETY: open just returned this descriptor; nothing else owns it.
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .map_err(|e| step_err(format!("open the rootfs {}", self.rootfs_shown), e))?;
        let mut own_cgroups: Option<Vec<(String, String)>> = None;
        for step in &self.steps {
            self.mount_step(root.as_fd(), step, &mut own_cgroups)?;
        }
        self.devices_and_links(root.as_fd())
    }

    fn mount_step(
        &self,
        root: BorrowedFd,
        step: &Step,
        own_cgroups: &mut Option<Vec<(String, String)>>,
    ) -> Result<()> {
        let src = step.source_shown.as_str();
        let target = match &step.what {
            What::Bind { dir: false, .. } => ensure_file(root, &step.dest)?,
            What::Fresh {
                ordinary_dir: true,
                fs,
            } => {
                match open_in(root, &step.dest.rel, OFlag::O_NOFOLLOW) {
                    Ok(fd) => {
                        let st = nix::sys::stat::fstat(fd.as_raw_fd())
                            .map_err(|e| step_err(format!("stat {}", step.dest.shown), e))?;
                        if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
                            return Err(RootfsError::Step(format!(
                                "filesystem {:?} must be mounted on ordinary directory",
                                fs.fstype
                            )));
                        }
                    }
                    Err(Errno::ENOENT) => {}
                    Err(e) => return Err(step_err(format!("open {}", step.dest.shown), e)),
                }
                ensure_dir(root, &step.dest)?
            }
            _ => ensure_dir(root, &step.dest)?,
        };
        // A link in the image may lead a destination into the container's /proc,
        // mounted by an earlier step: only proc itself and the lxcfs files go there.
        let is_proc =
            matches!(&step.what, What::Fresh { fs, .. } if fs.fstype.as_bytes() == b"proc");
        if !is_proc && !step.proc_allowed {
            let st = nix::sys::statfs::fstatfs(&target)
                .map_err(|e| step_err(format!("statfs {}", step.dest.shown), e))?;
            if st.filesystem_type().0 as i64 == PROC_SUPER_MAGIC {
                return Err(RootfsError::Step(format!(
                    "{} is not a valid mount under /proc",
                    step.dest.shown
                )));
            }
        }
        let mnt = match &step.what {
            What::Bind {
                source, recursive, ..
            } => {
                let tree = open_tree(libc::AT_FDCWD, source, *recursive, false)
                    .map_err(|e| mounting(step, src, "open_tree", e))?;
                if !step.attr.is_empty() {
                    mount_setattr(tree.as_fd(), false, &step.attr)
                        .map_err(|e| mounting(step, src, "mount_setattr", e))?;
                }
                tree
            }
            What::Fresh { fs, .. } => {
                make_fs(fs, step.attr.attr_set).map_err(|(what, e)| mounting(step, src, what, e))?
            }
            What::Cgroup2 { fs, host_unified } => match make_fs(fs, step.attr.attr_set) {
                Ok(m) => m,
                Err(_) => {
                    // libcontainer's fallback: a bind of the init's own cgroup.
                    let mine = own_cgroup(own_cgroups, "")?;
                    let path = host_unified.join(mine.trim_start_matches('/'));
                    let c = cstring(path.as_os_str().as_bytes(), "cgroup path")
                        .map_err(|e| RootfsError::Step(e.to_string()))?;
                    let tree = open_tree(libc::AT_FDCWD, &c, false, false)
                        .map_err(|e| mounting(step, src, "open_tree", e))?;
                    if !step.attr.is_empty() {
                        mount_setattr(tree.as_fd(), false, &step.attr)
                            .map_err(|e| mounting(step, src, "mount_setattr", e))?;
                    }
                    tree
                }
            },
            What::CgroupV1 {
                tmpfs,
                hierarchies,
                namespaced,
                ro,
            } => {
                let v1 = V1Mount {
                    tmpfs,
                    hierarchies,
                    namespaced: *namespaced,
                    ro: *ro,
                };
                return v1.mount(step, target, own_cgroups);
            }
        };
        if let Some(rec) = &step.rec {
            mount_setattr(mnt.as_fd(), true, rec)
                .map_err(|e| mounting(step, src, "mount_setattr", e))?;
        }
        move_mount(mnt.as_fd(), target.as_fd())
            .map_err(|e| mounting(step, src, "move_mount", e))?;
        set_propagation(mnt.as_fd(), &step.propagation)
            .map_err(|e| mounting(step, src, "change propagation", e))
    }

    fn devices_and_links(&self, root: BorrowedFd) -> Result<()> {
        let dev = ensure_dir(root, &self.dev_dir)?;
        let link = |target: &CStr, name: &CStr| -> Result<()> {
            match nix::unistd::symlinkat(target, Some(dev.as_raw_fd()), name) {
                Ok(()) | Err(Errno::EEXIST) => Ok(()),
                Err(e) => Err(step_err(format!("symlink {target:?} /dev/{name:?}"), e)),
            }
        };
        // runc's name for it (libcontainer 0.7 names it /dev/kcore).
        if self.kcore {
            link(c"/proc/kcore", c"core")?;
        }
        link(c"/proc/self/fd", c"fd")?;
        link(c"/proc/self/fd/0", c"stdin")?;
        link(c"/proc/self/fd/1", c"stdout")?;
        link(c"/proc/self/fd/2", c"stderr")?;

        // The spec's modes as given, not as the umask would cut them.
        let old = nix::sys::stat::umask(Mode::empty());
        let made = self.devices.iter().try_for_each(|d| make_device(root, d));
        nix::sys::stat::umask(old);
        made?;

        match nix::unistd::unlinkat(
            Some(dev.as_raw_fd()),
            c"ptmx",
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        ) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(step_err("remove /dev/ptmx", e)),
        }
        link(c"pts/ptmx", c"ptmx")
    }
}

/// A v1 cgroup mount being made (the parts of `What::CgroupV1`).
struct V1Mount<'a> {
    tmpfs: &'a Fresh,
    hierarchies: &'a [V1Hierarchy],
    namespaced: bool,
    ro: bool,
}

impl V1Mount<'_> {
    /// libcontainer's v1 cgroup mount: a tmpfs (noexec, nosuid, nodev, mode=755), in it
    /// one mount per host hierarchy (the init's own cgroup bound from the host, or with
    /// a cgroup namespace the hierarchy mounted anew) and links for co-mounted
    /// controllers; with `ro` all of it read-only at the end (what vzrun's finish does
    /// after libcontainer, and runc at create). The mount's propagation words apply to
    /// the tmpfs and to each hierarchy, as runc applies them.
    fn mount(
        &self,
        step: &Step,
        target: OwnedFd,
        own_cgroups: &mut Option<Vec<(String, String)>>,
    ) -> Result<()> {
        let src = "tmpfs";
        let base = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
        let dir = make_fs(self.tmpfs, base).map_err(|(what, e)| mounting(step, src, what, e))?;
        move_mount(dir.as_fd(), target.as_fd())
            .map_err(|e| mounting(step, src, "move_mount", e))?;
        set_propagation(dir.as_fd(), &step.propagation)
            .map_err(|e| mounting(step, src, "change propagation", e))?;
        let ro_attr = MountAttr {
            attr_set: MOUNT_ATTR_RDONLY,
            ..MountAttr::default()
        };
        for h in self.hierarchies {
            let fail = |what: &str, e: Errno| {
                RootfsError::Step(format!(
                    "error mounting cgroup hierarchy to rootfs at {:?}: {what}: {}",
                    h.shown,
                    crate::sys::errno::words(e)
                ))
            };
            let mnt = if self.namespaced {
                let attrs = base | if self.ro { MOUNT_ATTR_RDONLY } else { 0 };
                Some(make_fs(&h.ns_fs, attrs).map_err(|(what, e)| fail(what, e))?)
            } else if let Some(mine) = own_cgroups_lookup(own_cgroups, &h.key)? {
                let rel = mine.strip_prefix(h.pid1_path.as_str()).unwrap_or(&mine);
                let path = h.host_mount.join(rel.trim_start_matches('/'));
                let c = CString::new(path.as_os_str().as_bytes())
                    .map_err(|_| fail("cgroup path", Errno::EINVAL))?;
                let tree =
                    open_tree(libc::AT_FDCWD, &c, true, false).map_err(|e| fail("open_tree", e))?;
                if self.ro {
                    mount_setattr(tree.as_fd(), false, &ro_attr)
                        .map_err(|e| fail("mount_setattr", e))?;
                }
                Some(tree)
            } else {
                // libcontainer skips (with a warning) a hierarchy the init is not in,
                // and still links its co-mounted controllers.
                None
            };
            if let Some(mnt) = mnt {
                attach(dir.as_fd(), h, mnt, &step.propagation)
                    .map_err(|(what, e)| fail(what, e))?;
            }
            for c in &h.comounts {
                match nix::unistd::symlinkat(h.name.as_c_str(), Some(dir.as_raw_fd()), c.as_c_str())
                {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(fail("symlink", e)),
                }
            }
        }
        if self.ro {
            mount_setattr(dir.as_fd(), false, &ro_attr)
                .map_err(|e| mounting(step, src, "mount_setattr", e))?;
        }
        Ok(())
    }
}

/// Mounts one hierarchy's detached mount on its directory (made here) in the tmpfs.
fn attach(
    dir: BorrowedFd,
    h: &V1Hierarchy,
    mnt: OwnedFd,
    propagation: &[(u64, bool)],
) -> std::result::Result<(), (&'static str, Errno)> {
    match nix::sys::stat::mkdirat(
        Some(dir.as_raw_fd()),
        h.name.as_c_str(),
        Mode::from_bits_truncate(0o755),
    ) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(("mkdir", e)),
    }
    // The tmpfs is this init's own, just made: nothing in it is a link.
    let at = openat2_raw(
        dir,
        &h.name,
        OFlag::O_PATH | OFlag::O_DIRECTORY,
        0,
        ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS,
    )
    .map_err(|e| ("open", e))?;
    move_mount(mnt.as_fd(), at.as_fd()).map_err(|e| ("move_mount", e))?;
    set_propagation(mnt.as_fd(), propagation).map_err(|e| ("change propagation", e))
}

/// Applies a mount's propagation words in order (runc's way: after the mount).
fn set_propagation(mnt: BorrowedFd, words: &[(u64, bool)]) -> std::result::Result<(), Errno> {
    for (flag, recursive) in words {
        let attr = MountAttr {
            propagation: *flag,
            ..MountAttr::default()
        };
        mount_setattr(mnt, *recursive, &attr)?;
    }
    Ok(())
}

fn make_device(root: BorrowedFd, d: &Dev) -> Result<()> {
    let (dir, name) = d.target.split();
    let parent = fs::mkdir_all_in_root(root, dir, Mode::from_bits_truncate(0o755))
        .map_err(|e| step_err(format!("mkdir {}", dir.display()), io_errno(&e)))?;
    match nix::sys::stat::mknodat(
        Some(parent.as_raw_fd()),
        name,
        d.kind,
        Mode::from_bits_truncate(d.mode),
        d.rdev,
    ) {
        Ok(()) => {}
        // runc leaves a node that is already there (an image's own /dev).
        Err(Errno::EEXIST) => return Ok(()),
        Err(e) => return Err(step_err(format!("mknod {}", d.target.shown), e)),
    }
    if d.uid.is_some() || d.gid.is_some() {
        nix::unistd::fchownat(
            Some(parent.as_raw_fd()),
            name,
            d.uid.map(nix::unistd::Uid::from_raw),
            d.gid.map(nix::unistd::Gid::from_raw),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| step_err(format!("chown {}", d.target.shown), e))?;
    }
    Ok(())
}

/// The init's own cgroup in the hierarchy named `key`, `/proc/self/cgroup` read once.
fn own_cgroups_lookup(
    cache: &mut Option<Vec<(String, String)>>,
    key: &str,
) -> Result<Option<String>> {
    if cache.is_none() {
        let text = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| RootfsError::Step(format!("read /proc/self/cgroup: {e}")))?;
        *cache = Some(parse_proc_cgroup(&text));
    }
    Ok(cache
        .iter()
        .flatten()
        .find(|(c, _)| c == key)
        .map(|(_, p)| p.clone()))
}

fn own_cgroup(cache: &mut Option<Vec<(String, String)>>, key: &str) -> Result<String> {
    own_cgroups_lookup(cache, key)?
        .ok_or_else(|| RootfsError::Step("failed to find unified process cgroup".into()))
}

impl RootfsPlan {
    /// pivot_root into the rootfs and detach the old root (MS_MOVE + chroot when
    /// no_pivot), then the root mount propagation adjustment and re-opening /dev/null
    /// for stdio fds 0-2 that point at the host's /dev/null — what libcontainer does
    /// from do_pivot_root through reopen_dev_null.
    pub fn enter(&self) -> Result<()> {
        use nix::mount::{mount, umount2};
        use nix::unistd::{chdir, chroot, fchdir};
        let none: Option<&str> = None;
        if self.no_pivot {
            chdir(self.rootfs.as_c_str()).map_err(|e| step_err("chdir to the rootfs", e))?;
            // Nothing of the host's /proc and /sys may stay reachable (crun's rule).
            for p in [c"/sys", c"/proc"] {
                match umount2(p, MntFlags::MNT_DETACH) {
                    Ok(()) => {}
                    Err(Errno::EINVAL) => {
                        mount(none, p, Some("tmpfs"), MsFlags::MS_RDONLY, Some("size=0k"))
                            .map_err(|e| step_err(format!("hide {p:?}"), e))?
                    }
                    Err(e) => return Err(step_err(format!("unmount {p:?}"), e)),
                }
            }
            mount(
                Some(self.rootfs.as_c_str()),
                "/",
                none,
                MsFlags::MS_MOVE,
                none,
            )
            .map_err(|e| step_err("move the rootfs to /", e))?;
            chroot(".").map_err(|e| step_err("chroot", e))?;
            chdir("/").map_err(|e| step_err("chdir /", e))?;
        } else {
            let open_dir = |p: &CStr| {
                nix::fcntl::open(
                    p,
                    OFlag::O_DIRECTORY | OFlag::O_PATH | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                // SAFETY: open just returned this descriptor; nothing else owns it.
                .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
            };
            let old = open_dir(c"/").map_err(|e| step_err("open the old root", e))?;
            let new = open_dir(&self.rootfs).map_err(|e| step_err("open the new root", e))?;
            fchdir(new.as_raw_fd()).map_err(|e| step_err("fchdir to the new root", e))?;
            // Both "." : the old root ends stacked on the new one, then is detached, so
            // no directory for it is needed in the image.
            nix::unistd::pivot_root(".", ".").map_err(|e| step_err("pivot_root", e))?;
            fchdir(old.as_raw_fd()).map_err(|e| step_err("fchdir to the old root", e))?;
            // A slave first, so that the detach does not propagate to the host.
            mount(none, ".", none, MsFlags::MS_SLAVE | MsFlags::MS_REC, none)
                .map_err(|e| step_err("make the old root rslave", e))?;
            umount2(".", MntFlags::MNT_DETACH).map_err(|e| step_err("unmount the old root", e))?;
            chdir("/").map_err(|e| step_err("chdir /", e))?;
        }
        if let Some(flag) = self.adjust {
            mount(none, "/", none, flag, none)
                .map_err(|e| step_err("adjust the mount propagation of the root", e))?;
        }
        reopen_dev_null()
    }

    /// After sysctls and the console (done by the caller): readonly root remount,
    /// readonlyPaths, maskedPaths — as libcontainer.
    pub fn finish(&self) -> Result<()> {
        use nix::mount::mount;
        let none: Option<&str> = None;
        // /dev before the root, as runc: its devices and links are made by now.
        for (ro, path, what) in [
            (
                self.readonly_dev,
                Path::new("/dev"),
                "remount /dev read-only",
            ),
            (self.readonly_root, Path::new("/"), "remount root read-only"),
        ] {
            if !ro {
                continue;
            }
            let kept = kept_flags(path).map_err(|e| step_err(what, e))?;
            mount(
                none,
                path,
                none,
                MsFlags::MS_RDONLY | MsFlags::MS_REMOUNT | MsFlags::MS_BIND | kept,
                none,
            )
            .map_err(|e| step_err(what, e))?;
        }
        if self.readonly_paths.is_empty() && self.masked_paths.is_empty() {
            return Ok(());
        }
        let root = nix::fcntl::open(
            "/",
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        // SAFETY: open just returned this descriptor; nothing else owns it.
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .map_err(|e| step_err("open /", e))?;
        let ro = MountAttr {
            attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
            ..MountAttr::default()
        };
        for t in &self.readonly_paths {
            let at = match open_in(root.as_fd(), &t.rel, OFlag::empty()) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => continue,
                Err(e) => return Err(step_err(format!("open readonly path {}", t.shown), e)),
            };
            let fail = |e| step_err(format!("mount readonly path {}", t.shown), e);
            let tree = open_tree(at.as_raw_fd(), c"", true, true).map_err(fail)?;
            mount_setattr(tree.as_fd(), false, &ro).map_err(fail)?;
            move_mount(tree.as_fd(), at.as_fd()).map_err(fail)?;
        }
        if self.masked_paths.is_empty() {
            return Ok(());
        }
        let null = open_in(root.as_fd(), Path::new("dev/null"), OFlag::O_NOFOLLOW)
            .map_err(|e| step_err("open /dev/null", e))?;
        check_dev_null(null.as_fd())?;
        for t in &self.masked_paths {
            let at = match open_in(root.as_fd(), &t.rel, OFlag::empty()) {
                Ok(fd) => fd,
                Err(Errno::ENOENT | Errno::ENOTDIR) => continue,
                Err(e) => return Err(step_err(format!("open masked path {}", t.shown), e)),
            };
            let st = nix::sys::stat::fstat(at.as_raw_fd())
                .map_err(|e| step_err(format!("stat masked path {}", t.shown), e))?;
            let fail = |e| step_err(format!("mount masked path {}", t.shown), e);
            let mnt = if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                // A directory: an empty read-only tmpfs over it.
                make_fs(&self.masked_tmpfs, MOUNT_ATTR_RDONLY).map_err(|(_, e)| fail(e))?
            } else {
                // Anything else: the container's /dev/null over it.
                open_tree(null.as_raw_fd(), c"", false, true).map_err(fail)?
            };
            move_mount(mnt.as_fd(), at.as_fd()).map_err(fail)?;
        }
        Ok(())
    }
}

fn check_dev_null(fd: BorrowedFd) -> Result<()> {
    let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(|e| step_err("stat /dev/null", e))?;
    let is_null = st.st_mode & libc::S_IFMT == libc::S_IFCHR
        && libc::major(st.st_rdev) == 1
        && libc::minor(st.st_rdev) == 3;
    if !is_null {
        return Err(RootfsError::Step(
            "/dev/null in the container is not the null device".into(),
        ));
    }
    Ok(())
}

/// Stdio descriptors that are the host's /dev/null become the container's (a
/// descriptor of the host's mount would let the container reach it).
fn reopen_dev_null() -> Result<()> {
    let null = nix::fcntl::open(
        c"/dev/null",
        OFlag::O_RDWR | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    // SAFETY: open just returned this descriptor; nothing else owns it.
    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
    .map_err(|e| step_err("open /dev/null inside the container", e))?;
    check_dev_null(null.as_fd())?;
    let want = nix::sys::stat::fstat(null.as_raw_fd())
        .map_err(|e| step_err("stat /dev/null", e))?
        .st_rdev;
    for fd in 0..3 {
        let st = match nix::sys::stat::fstat(fd) {
            Ok(st) => st,
            Err(Errno::EBADF) => continue,
            Err(e) => return Err(step_err(format!("stat fd {fd}"), e)),
        };
        if st.st_rdev == want {
            nix::unistd::dup2(null.as_raw_fd(), fd)
                .map_err(|e| step_err(format!("dup2 /dev/null to fd {fd}"), e))?;
        }
    }
    Ok(())
}

/// The flags a mount at `path` already has that a read-only bind remount must name again
/// (it sets them all anew, and dropping a locked one fails); named one by one, since
/// ST_* and MS_* part ways above ST_NODIRATIME.
pub(crate) fn kept_flags(path: &Path) -> nix::Result<MsFlags> {
    use nix::sys::statvfs::FsFlags;
    let st = nix::sys::statvfs::statvfs(path)?;
    let mut kept = MsFlags::empty();
    for (st_flag, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_SYNCHRONOUS, MsFlags::MS_SYNCHRONOUS),
        (FsFlags::ST_MANDLOCK, MsFlags::MS_MANDLOCK),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if st.flags().contains(st_flag) {
            kept |= ms;
        }
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::symlink;

    fn spec_of(json: &str) -> Spec {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn options_sort_as_libcontainer_does() {
        let w = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let o = parse_options(&w(&["nosuid", "strictatime", "mode=755", "size=65536k"])).unwrap();
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(o.data, ["mode=755", "size=65536k"]);
        let a = attr_of(o.flags);
        assert_eq!(a.attr_set, MOUNT_ATTR_NOSUID | MOUNT_ATTR_STRICTATIME);
        assert_eq!(a.attr_clr, MOUNT_ATTR_ATIME);
        let o = parse_options(&w(&["rbind", "ro", "rprivate", "rnosuid"])).unwrap();
        assert!(o.bind && o.recursive);
        assert_eq!(attr_of(o.flags).attr_set, MOUNT_ATTR_RDONLY);
        assert_eq!(o.propagation, [(PROP_PRIVATE, true)]);
        assert_eq!(o.rec.unwrap().attr_set, MOUNT_ATTR_NOSUID);
        assert!(o.data.is_empty());
        // ro then rw: the last word wins.
        let o = parse_options(&w(&["ro", "rw"])).unwrap();
        assert!(!o.flags.contains(MsFlags::MS_RDONLY));
        assert!(matches!(
            parse_options(&w(&["idmap"])),
            Err(RootfsError::Unsupported(_))
        ));
    }

    #[test]
    fn destinations_are_clean_and_relative() {
        let t = Target::new(Path::new("/dev/../../proc/./sys")).unwrap();
        assert_eq!(t.shown, "/proc/sys");
        assert_eq!(t.rel, Path::new("proc/sys"));
        assert_eq!(t.split(), (Path::new("proc"), std::ffi::OsStr::new("sys")));
        assert_eq!(Target::new(Path::new("dev/shm")).unwrap().shown, "/dev/shm");
        assert!(Target::new(Path::new("/..")).is_none());
    }

    #[test]
    fn plan_refuses_what_it_does_not_do() {
        let base = |linux: &str, mounts: &str| {
            spec_of(&format!(
                r#"{{"ociVersion":"1.0.2","root":{{"path":"r"}},"mounts":[{mounts}],"linux":{{{linux}}}}}"#
            ))
        };
        let plan =
            |s: &Spec| RootfsPlan::plan(s, Path::new("/r"), Path::new("/c"), true, false, false);
        let unsupported = |s: &Spec| matches!(plan(s), Err(RootfsError::Unsupported(_)));
        assert!(unsupported(&base(r#""namespaces":[{"type":"user"}]"#, "")));
        assert!(unsupported(&base(
            r#""mountLabel":"system_u:object_r:x""#,
            ""
        )));
        assert!(unsupported(&base(r#""rootfsPropagation":"odd""#, "")));
        for path in ["/etc/x", "/dev/../etc/x", "/dev", "/devices/x"] {
            let devices =
                format!(r#""devices":[{{"path":"{path}","type":"c","major":1,"minor":3}}]"#);
            assert!(unsupported(&base(&devices, "")), "{path}");
        }
        assert!(unsupported(&base(
            "",
            r#"{"destination":"/mnt","type":"bind","source":"/tmp","options":["rbind","idmap"]}"#
        )));
        assert!(unsupported(&base(
            "",
            r#"{"destination":"/proc","type":"bind","source":"/tmp","options":["rbind"]}"#
        )));
        assert!(unsupported(&base(
            "",
            r#"{"destination":"/proc/self","type":"tmpfs","source":"tmpfs"}"#
        )));
        assert!(plan(&base(
            "",
            r#"{"destination":"/proc/meminfo","type":"bind","source":"/proc/meminfo","options":["bind"]}"#
        ))
        .is_ok());
        assert!(matches!(
            RootfsPlan::plan(
                &base("", ""),
                Path::new("/r"),
                Path::new("/c"),
                false,
                false,
                false
            ),
            Err(RootfsError::Unsupported(_))
        ));
    }

    // ---- running a plan in a child of its own: new mount, pid, net, ipc, uts ns ----

    fn here() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    /// Why a test that needs root and the busybox rootfs cannot run here, if it cannot.
    fn cannot_run() -> Option<&'static str> {
        if !nix::unistd::geteuid().is_root() {
            return Some("not root");
        }
        if !here().join("bundles/busybox/rootfs/bin/busybox").exists() {
            return Some("no bundles/busybox/rootfs (hack/mkrootfs.sh)");
        }
        None
    }

    /// The busybox spec's plan for `rootfs`, with a test cgroup named after `tag`.
    fn busybox_plan(rootfs: &Path, tag: &str) -> (TestCgroup, RootfsPlan) {
        let name = format!("vzrun-rfs{tag}-{}", std::process::id());
        let cg = TestCgroup::new(&name);
        let plan = RootfsPlan::plan(
            &busybox_spec(),
            rootfs,
            Path::new(&format!("/{name}")),
            true,
            false,
            false,
        )
        .unwrap();
        (cg, plan)
    }

    /// A copy of the busybox rootfs in a temporary directory, or None (said) where the
    /// tests cannot run.
    fn test_rootfs() -> Option<(tempfile::TempDir, PathBuf)> {
        if let Some(why) = cannot_run() {
            eprintln!("skipped: {why}");
            return None;
        }
        let tmp = tempfile::tempdir().unwrap();
        let rootfs = tmp.path().join("rootfs");
        copy_rootfs(&rootfs);
        Some((tmp, rootfs))
    }

    fn copy_rootfs(to: &Path) {
        let ok = std::process::Command::new("cp")
            .arg("-a")
            .arg(here().join("bundles/busybox/rootfs"))
            .arg(to)
            .status()
            .unwrap()
            .success();
        assert!(ok, "cp -a rootfs");
    }

    /// The v1 hierarchies (but the named ones) get a cgroup for the test, as vzrun's
    /// cgroup manager makes one; on a v2 host one cgroup. Removed on drop.
    struct TestCgroup {
        dirs: Vec<PathBuf>,
    }

    impl TestCgroup {
        fn new(name: &str) -> TestCgroup {
            let mut dirs = Vec::new();
            let table = crate::sys::mountinfo::read(None).unwrap();
            for m in &table {
                let v1 = m.fstype == "cgroup" && !m.super_options.contains("name=");
                let v2 = m.fstype == "cgroup2" && m.point == Path::new(CGROUP_ROOT);
                if !(v1 || v2) || !m.point.starts_with(CGROUP_ROOT) {
                    continue;
                }
                let d = m.point.join(name);
                std::fs::create_dir_all(&d).unwrap();
                if m.super_options.split(',').any(|o| o == "cpuset") {
                    for f in ["cpuset.cpus", "cpuset.mems"] {
                        let v = std::fs::read_to_string(m.point.join(f)).unwrap();
                        std::fs::write(d.join(f), v.trim()).unwrap();
                    }
                }
                dirs.push(d);
            }
            TestCgroup { dirs }
        }
    }

    impl Drop for TestCgroup {
        fn drop(&mut self) {
            for d in &self.dirs {
                let _ = std::fs::remove_dir(d);
            }
        }
    }

    /// Runs `plan` (prepare, enter, finish) in pid 1 of new namespaces, in the cgroup
    /// `cg`, then `sh -c script` of the container; returns what it printed and whether
    /// it succeeded.
    fn run_plan(
        plan: &RootfsPlan,
        cg: &TestCgroup,
        cgroup_ns: bool,
        script: &str,
    ) -> (bool, String) {
        use nix::sched::{unshare, CloneFlags};
        use nix::sys::wait::{waitpid, WaitStatus};
        use nix::unistd::{fork, ForkResult};
        let out = tempfile::tempfile().unwrap();
        let procs: Vec<PathBuf> = cg.dirs.iter().map(|d| d.join("cgroup.procs")).collect();
        let sh = CString::new("/bin/sh").unwrap();
        let argv = [
            CString::new("sh").unwrap(),
            CString::new("-c").unwrap(),
            CString::new(script).unwrap(),
        ];
        let env = [CString::new("PATH=/bin:/sbin:/usr/bin:/usr/sbin").unwrap()];
        // SAFETY: the child only runs this test's code and then _exits or execs; glibc
        // keeps malloc usable after fork.
        match unsafe { fork() }.unwrap() {
            ForkResult::Parent { child } => {
                let ok = matches!(waitpid(child, None), Ok(WaitStatus::Exited(_, 0)));
                let mut text = String::new();
                let mut f = out;
                use std::io::Seek;
                f.rewind().unwrap();
                f.read_to_string(&mut text).unwrap();
                (ok, text)
            }
            ForkResult::Child => {
                let fail = |msg: String| -> ! {
                    let _ = nix::unistd::write(&out, msg.as_bytes());
                    // SAFETY: leaving the forked child without running the parent's
                    // destructors or the test harness.
                    unsafe { libc::_exit(1) }
                };
                let flags = CloneFlags::CLONE_NEWNS
                    | CloneFlags::CLONE_NEWPID
                    | CloneFlags::CLONE_NEWNET
                    | CloneFlags::CLONE_NEWIPC
                    | CloneFlags::CLONE_NEWUTS;
                if let Err(e) = unshare(flags) {
                    fail(format!("unshare: {e}"));
                }
                // SAFETY: as above; the grandchild is pid 1 of the new pid namespace.
                match unsafe { fork() } {
                    Err(e) => fail(format!("fork: {e}")),
                    Ok(ForkResult::Parent { child }) => {
                        let code = match waitpid(child, None) {
                            Ok(WaitStatus::Exited(_, c)) => c,
                            _ => 2,
                        };
                        // SAFETY: as above.
                        unsafe { libc::_exit(code) }
                    }
                    Ok(ForkResult::Child) => {}
                }
                for p in &procs {
                    if let Err(e) = std::fs::write(p, "0") {
                        fail(format!("join {}: {e}", p.display()));
                    }
                }
                if cgroup_ns {
                    if let Err(e) = unshare(CloneFlags::CLONE_NEWCGROUP) {
                        fail(format!("unshare cgroup: {e}"));
                    }
                }
                if let Err(e) = plan.prepare() {
                    fail(format!("prepare: {e}\n"));
                }
                if let Err(e) = plan.enter() {
                    fail(format!("enter: {e}\n"));
                }
                if let Err(e) = plan.finish() {
                    fail(format!("finish: {e}\n"));
                }
                let _ = nix::unistd::dup2(out.as_raw_fd(), 1);
                let _ = nix::unistd::dup2(out.as_raw_fd(), 2);
                let e = nix::unistd::execve(&sh, &argv, &env);
                fail(format!("exec: {e:?}\n"))
            }
        }
    }

    const SCRIPT: &str = "cat /proc/self/mountinfo; ls -la /dev";

    /// With RFS_DUMP_BUNDLE set (hack/rootfs-compare.sh): applies that bundle's spec to
    /// its rootfs and writes what the container sees to RFS_DUMP_OUT, for a comparison
    /// with `vzrun run` of the same bundle.
    #[test]
    fn dump_for_comparison() {
        let (Ok(bundle), Ok(out)) = (
            std::env::var("RFS_DUMP_BUNDLE"),
            std::env::var("RFS_DUMP_OUT"),
        ) else {
            return;
        };
        let bundle = PathBuf::from(bundle);
        let spec: Spec =
            serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
        let rootfs = std::fs::canonicalize(bundle.join("rootfs")).unwrap();
        let cgroup_ns = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_ref())
            .is_some_and(|n| n.iter().any(|n| n.typ() == LinuxNamespaceType::Cgroup));
        let name = format!("vzrun-rfsdump-{}", std::process::id());
        let cg = TestCgroup::new(&name);
        let no_pivot = std::env::var_os("RFS_NO_PIVOT").is_some_and(|v| !v.is_empty());
        let plan = RootfsPlan::plan(
            &spec,
            &rootfs,
            Path::new(&format!("/{name}")),
            true,
            cgroup_ns,
            no_pivot,
        )
        .unwrap();
        let (ok, text) = run_plan(&plan, &cg, cgroup_ns, SCRIPT);
        std::fs::write(out, &text).unwrap();
        assert!(ok, "{text}");
    }

    fn busybox_spec() -> Spec {
        serde_json::from_slice(&std::fs::read(here().join("bundles/busybox/config.json")).unwrap())
            .unwrap()
    }

    /// The host's mounts at or below `places` (the test's own directories: other tests
    /// mount elsewhere on the host at the same time), to compare before and after.
    fn host_mounts(places: &[&Path]) -> Vec<String> {
        let mut v: Vec<String> = crate::sys::mountinfo::read(None)
            .unwrap()
            .into_iter()
            .filter(|m| places.iter().any(|p| m.point.starts_with(p)))
            .map(|m| format!("{} {} {}", m.point.display(), m.fstype, m.root.display()))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn busybox_spec_sets_up_the_container() {
        let Some((tmp, rootfs)) = test_rootfs() else {
            return;
        };
        let before = host_mounts(&[tmp.path()]);
        let (cg, plan) = busybox_plan(&rootfs, "test");
        let (ok, text) = run_plan(&plan, &cg, false, SCRIPT);
        assert!(ok, "{text}");
        assert_eq!(
            before,
            host_mounts(&[tmp.path()]),
            "the host's mounts changed"
        );
        let has = |needle: &str| assert!(text.contains(needle), "no {needle:?} in:\n{text}");
        has(" / /proc rw,relatime - proc proc rw");
        has(" / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755");
        has(" / /dev/pts rw,nosuid,noexec,relatime - devpts devpts rw,gid=5,mode=620,ptmxmode=666");
        has(" / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs rw");
        has(" / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw,mode=755");
        has(" /sys /proc/sys ro,nosuid,nodev,noexec,relatime - proc proc rw");
        has(" /null /proc/keys rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755");
        has(" / /sys/firmware ro,relatime - tmpfs tmpfs ro");
        has("ptmx -> pts/ptmx");
        has("stdin -> /proc/self/fd/0");
        assert!(
            text.lines()
                .any(|l| l.starts_with("crw-rw-rw-") && l.ends_with(" null")),
            "{text}"
        );
        // Nothing stayed in the host's copy beyond the made directories and files.
        assert!(!rootfs.join("dev/null").exists());
    }

    /// An image whose /dev, a bind mount's destination and a masked path are links to
    /// the host (absolute) or up and out (`../../..`): every mount lands inside.
    #[test]
    fn hostile_links_stay_inside_the_rootfs() {
        let Some((tmp, rootfs)) = test_rootfs() else {
            return;
        };
        // Bait on the host: directories the links name.
        let bait = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(bait.path().join("dev")).unwrap();
        std::fs::create_dir_all(bait.path().join("data")).unwrap();
        std::fs::create_dir_all(bait.path().join("data2")).unwrap();
        std::fs::write(bait.path().join("secret"), "host").unwrap();
        // The same names inside the image, where the links really lead.
        let mirror = rootfs.join(bait.path().strip_prefix("/").unwrap());
        std::fs::create_dir_all(mirror.join("dev")).unwrap();
        std::fs::create_dir_all(mirror.join("data")).unwrap();
        std::fs::create_dir_all(mirror.join("data2")).unwrap();
        std::fs::write(mirror.join("secret"), "image").unwrap();
        std::fs::write(mirror.join("secret2"), "image").unwrap();
        std::fs::write(bait.path().join("secret2"), "host").unwrap();
        symlink(bait.path().join("secret2"), rootfs.join("etc/evil")).unwrap();
        std::fs::remove_dir_all(rootfs.join("dev")).unwrap();
        symlink(bait.path().join("dev"), rootfs.join("dev")).unwrap();
        symlink("../../../../../../../..", rootfs.join("mnt")).unwrap();
        symlink(bait.path().join("data2"), rootfs.join("data")).unwrap();
        symlink(bait.path().join("secret"), rootfs.join("etc/masked")).unwrap();
        symlink(
            format!("../../../../..{}", bait.path().display()),
            rootfs.join("up"),
        )
        .unwrap();
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("file"), "from host").unwrap();
        let mut spec = busybox_spec();
        let mut mounts = spec.mounts().clone().unwrap();
        let extra: Vec<oci_spec::runtime::Mount> = serde_json::from_str(&format!(
            r#"[{{"destination":"/mnt{bait}/data","type":"bind","source":"{src}","options":["rbind","ro"]}},
                {{"destination":"/data/x","type":"tmpfs","source":"tmpfs"}},
                {{"destination":"/up/file","type":"bind","source":"{src}/file","options":["bind"]}},
                {{"destination":"/etc/evil","type":"bind","source":"{src}/file","options":["bind","ro"]}}]"#,
            bait = bait.path().display(),
            src = src.path().display()
        ))
        .unwrap();
        mounts.extend(extra);
        spec.set_mounts(Some(mounts));
        let mut linux = spec.linux().clone().unwrap();
        let mut masked = linux.masked_paths().clone().unwrap();
        masked.push("/etc/masked".into());
        masked.push("/up/secret".into());
        linux.set_masked_paths(Some(masked));
        spec.set_linux(Some(linux));
        let before = host_mounts(&[tmp.path(), bait.path(), src.path()]);
        let name = format!("vzrun-rfsattack-{}", std::process::id());
        let cg = TestCgroup::new(&name);
        let plan = RootfsPlan::plan(
            &spec,
            &rootfs,
            Path::new(&format!("/{name}")),
            true,
            false,
            false,
        )
        .unwrap();
        let script = format!(
            "cat /proc/self/mountinfo; echo; cat {bait}/file /up/file; echo; cat /etc/evil; echo; ls {bait}/dev",
            bait = bait.path().display()
        );
        let (ok, text) = run_plan(&plan, &cg, false, &script);
        assert!(ok, "{text}");
        assert_eq!(
            before,
            host_mounts(&[tmp.path(), bait.path(), src.path()]),
            "the host's mounts changed"
        );
        // Nothing was made on the host through the links.
        assert_eq!(
            std::fs::read_dir(bait.path().join("dev")).unwrap().count(),
            0
        );
        assert_eq!(
            std::fs::read_dir(bait.path().join("data")).unwrap().count(),
            0
        );
        assert_eq!(
            std::fs::read_to_string(bait.path().join("secret")).unwrap(),
            "host"
        );
        // Inside, the links resolved within the rootfs: /dev is <rootfs>/<bait>/dev.
        let inside = |p: &str| format!(" {}{p} ", bait.path().display());
        assert!(text.contains(&inside("/dev")), "{text}");
        assert!(text.contains(&inside("/data")), "{text}");
        assert!(text.contains(&inside("/data2/x")), "{text}");
        assert_eq!(
            std::fs::read_dir(bait.path().join("data2"))
                .unwrap()
                .count(),
            0
        );
        assert!(text.contains(&inside("/file")), "{text}");
        assert!(text.contains("from hostfrom host\nfrom host\n"), "{text}");
        assert!(text.contains(&inside("/secret2")), "{text}");
        assert_eq!(
            std::fs::read_to_string(bait.path().join("secret2")).unwrap(),
            "host"
        );
        assert!(text.contains("null"), "{text}");
        // The masked link led to the image's file, and it was masked there.
        assert!(text.contains(&inside("/secret")), "{text}");
    }

    /// A link to a directory the image does not have: made inside the image, as runc's
    /// securejoin does, and nothing on the host.
    #[test]
    fn a_dangling_link_is_followed_inside_the_rootfs() {
        let Some((tmp, rootfs)) = test_rootfs() else {
            return;
        };
        let bait = tempfile::tempdir().unwrap();
        std::fs::remove_dir_all(rootfs.join("dev")).unwrap();
        symlink(bait.path(), rootfs.join("dev")).unwrap();
        let before = host_mounts(&[tmp.path(), bait.path()]);
        let (cg, plan) = busybox_plan(&rootfs, "dangle");
        let (ok, text) = run_plan(&plan, &cg, false, SCRIPT);
        // runc's securejoin makes the link's target inside the rootfs and mounts there.
        assert!(ok, "{text}");
        assert_eq!(before, host_mounts(&[tmp.path(), bait.path()]));
        assert_eq!(std::fs::read_dir(bait.path()).unwrap().count(), 0);
        let inside = rootfs.join(bait.path().strip_prefix("/").unwrap());
        assert!(inside.is_dir(), "{} was not made", inside.display());
    }

    /// /proc and /sys must be real directories: an image's link there is refused.
    #[test]
    fn proc_on_a_link_is_refused() {
        let Some((tmp, rootfs)) = test_rootfs() else {
            return;
        };
        // The bundle's /proc may hold the /proc view's mount targets from earlier runs.
        std::fs::remove_dir_all(rootfs.join("proc")).unwrap();
        symlink("/tmp", rootfs.join("proc")).unwrap();
        let before = host_mounts(&[tmp.path()]);
        let (cg, plan) = busybox_plan(&rootfs, "proc");
        let (ok, text) = run_plan(&plan, &cg, false, SCRIPT);
        assert!(!ok, "{text}");
        assert!(
            text.contains("must be mounted on ordinary directory"),
            "{text}"
        );
        assert_eq!(before, host_mounts(&[tmp.path()]));
        let table = crate::sys::mountinfo::read(None).unwrap();
        assert!(!table
            .iter()
            .any(|m| m.point == Path::new("/tmp") && m.fstype == "proc"));
    }
}
