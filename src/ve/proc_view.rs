//! What a VE sees of "its server" in /proc: with `io.vzrun.proc=virtual` the host's LXCFS
//! files are bound over the container's /proc/{meminfo,cpuinfo,…} and
//! /sys/devices/system/cpu/online, so `free`, `nproc`, `uptime` and the load average are
//! the VE's (LXCFS answers from the reader's cgroup). `host` keeps the kernel's files.
//!
//! One LXCFS daemon serves the whole host (hack/setup.sh starts it); vzrun never starts
//! one. vzrun binds the files into the container's mount namespace once the init waits
//! for `start` ([`Binds::bind_into`]), so they live and die with that namespace (nothing
//! to undo on delete); the VE record keeps them, so that checkpoint declares them
//! external mounts like any other bind (CRIU cannot dump FUSE) and restore binds them
//! again.
//!
//! Default: `host` for app containers, `virtual` for system VEs (`ve create`). A system
//! VE that gets the default on a host without LXCFS starts with a warning; a VE that
//! asked for `virtual` (or whose host policy forces it) fails with [`ProcViewError`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Mount, Spec};

use super::PREFIX;

/// LXCFS's standard mount point (Debian's unit, LXD, Incus).
pub const LXCFS_DIR: &str = "/var/lib/lxcfs";

/// The command that starts the host daemon, for errors and warnings (as hack/setup.sh).
pub const START_HINT: &str =
    "start the host's LXCFS daemon: `mkdir -p /var/lib/lxcfs && setsid -f lxcfs -l --enable-cfs /var/lib/lxcfs` (hack/setup.sh does this)";

/// The files LXCFS virtualizes that VEs get, as paths inside the container; each is
/// bound only when LXCFS serves it (older versions lack some).
pub const FILES: &[&str] = &[
    "/proc/meminfo",
    "/proc/cpuinfo",
    "/proc/stat",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/diskstats",
    "/proc/swaps",
    "/sys/devices/system/cpu/online",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcMode {
    Virtual,
    Host,
}

impl ProcMode {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "virtual" => Some(ProcMode::Virtual),
            "host" => Some(ProcMode::Host),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ProcMode::Virtual => "virtual",
            ProcMode::Host => "host",
        }
    }
}

/// The VE's setting and what the host policy makes of it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcConfig {
    /// `io.vzrun.proc`, when the spec says.
    pub asked: Option<ProcMode>,
    /// The host policy's `[proc] mode`, when it is not `tenant`; set by the runtime
    /// before `prepare` (the policy has already refused a contradicting annotation).
    pub forced: Option<ProcMode>,
}

impl ProcConfig {
    pub fn parse(a: &HashMap<String, String>) -> Result<Self, super::VeError> {
        let key = format!("{PREFIX}proc");
        let asked = match a.get(&key) {
            None => None,
            Some(v) => Some(
                ProcMode::parse(v)
                    .ok_or_else(|| super::bad("proc", format!("{v:?} is not virtual or host")))?,
            ),
        };
        Ok(ProcConfig {
            asked,
            forced: None,
        })
    }
}

/// What prepare does about /proc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Host files.
    Off,
    /// Virtual files, or fail without LXCFS.
    Required,
    /// Virtual files when LXCFS is there, else host files and a warning (system VEs).
    Preferred,
}

pub fn want(c: &ProcConfig, system_ve: bool) -> Want {
    match c.forced.or(c.asked) {
        Some(ProcMode::Virtual) => Want::Required,
        Some(ProcMode::Host) => Want::Off,
        None if system_ve => Want::Preferred,
        None => Want::Off,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProcViewError {
    #[error("{PREFIX}proc=virtual: LXCFS is not mounted at {}; {START_HINT}, or set {PREFIX}proc=host", dir.display())]
    NotMounted { dir: PathBuf },
}

/// Where LXCFS is mounted: `VZRUN_LXCFS` (for tests and hosts that mount it elsewhere),
/// else the standard place.
pub fn lxcfs_dir() -> PathBuf {
    match std::env::var_os("VZRUN_LXCFS") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(LXCFS_DIR),
    }
}

/// The files of [`FILES`] to bind when a live LXCFS is mounted at `dir`; None when none
/// answers there (no FUSE mount at `dir` in our mount table, or one whose daemon died:
/// its statfs fails with ENOTCONN). One statfs is one round trip to the daemon; a
/// listing of its directories cost about 0.7 ms here. A file this LXCFS does not serve
/// is found out when it is bound, and left out then.
pub fn served(dir: &Path) -> Option<Vec<&'static str>> {
    let table = crate::sys::mountinfo::read(None).ok()?;
    let here = table
        .iter()
        .any(|m| m.point == dir && m.fstype.starts_with("fuse"));
    if !here {
        return None;
    }
    nix::sys::statfs::statfs(dir).ok()?;
    Some(FILES.to_vec())
}

/// What a running VE's /proc shows, from its own mount table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The kernel's files.
    Host,
    /// LXCFS's files, and LXCFS answers.
    Virtual,
    /// LXCFS's files bound, but the daemon behind them is gone: reads fail with ENOTCONN
    /// until the VE is restarted (or suspended and resumed) against a running LXCFS.
    Lost,
}

impl Seen {
    pub fn word(self) -> &'static str {
        match self {
            Seen::Host => "host",
            Seen::Virtual => "virtual",
            Seen::Lost => "lost",
        }
    }
}

/// What the VE whose init is `pid` sees: one of [`FILES`] showing LXCFS in its mount
/// table means virtual, and the daemon still answers when that is the filesystem of the
/// host's LXCFS mount at `dir` (the one the VE was given; same device) and that mount
/// answers a statfs. Nothing
/// is looked up or opened under the VE's root: a VE with CAP_SYS_ADMIN and /dev/fuse can
/// put a FUSE mount of its own over its /proc (named `fuse.lxcfs` if it likes) whose
/// daemon never answers, and any lookup there would wait for it. The host's own LXCFS
/// mount point is not one of [`FILES`], so a process in the host's namespace reads as
/// `Host`.
pub fn seen_by(pid: i32, dir: &Path) -> Seen {
    use crate::sys::mountinfo;
    let Ok(table) = mountinfo::read(Some(pid)) else {
        return Seen::Host;
    };
    let bound: Vec<&mountinfo::Mount> = FILES
        .iter()
        .filter_map(|f| mountinfo::visible_at(&table, Path::new(f)))
        .filter(|m| m.fstype == "fuse.lxcfs")
        .collect();
    if bound.is_empty() {
        return Seen::Host;
    }
    let live = live_lxcfs(dir).is_some_and(|dev| bound.iter().all(|m| m.dev == dev));
    if live {
        Seen::Virtual
    } else {
        Seen::Lost
    }
}

/// The device of the host's LXCFS mount at `dir` when its daemon answers, asked once per
/// directory and process: `ve list` asks for every VE, and the answer is the host's.
fn live_lxcfs(dir: &Path) -> Option<String> {
    use std::sync::{Mutex, OnceLock};
    static ASKED: OnceLock<Mutex<HashMap<PathBuf, Option<String>>>> = OnceLock::new();
    let mut asked = ASKED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    asked
        .entry(dir.to_path_buf())
        .or_insert_with(|| {
            let table = crate::sys::mountinfo::read(None).ok()?;
            let dev = crate::sys::mountinfo::top_at(&table, dir)?.dev.clone();
            // A statfs, not a stat: FUSE may answer a stat from its attribute cache after
            // the daemon is gone, a statfs always asks the daemon.
            nix::sys::statfs::statfs(dir).ok()?;
            Some(dev)
        })
        .clone()
}

/// The LXCFS files a VE got: recorded at create, so that checkpoint and restore name
/// them as external mounts (CRIU cannot dump FUSE) and a restore binds them again.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Binds {
    /// Where LXCFS was mounted.
    pub dir: PathBuf,
    /// Of [`FILES`], in that order: the ones LXCFS served.
    pub files: Vec<String>,
}

impl Binds {
    fn source(&self, file: &str) -> PathBuf {
        self.dir.join(file.trim_start_matches('/'))
    }

    /// The binds as spec mounts, for checkpoint and restore.
    pub fn mounts(&self) -> Vec<Mount> {
        self.files
            .iter()
            .map(|f| {
                let mut m = Mount::default();
                m.set_destination(PathBuf::from(f));
                m.set_typ(Some("bind".to_string()));
                m.set_source(Some(self.source(f)));
                // Read-only: nothing inside may write the host daemon's files, and a plain
                // bind (not rbind) since these are single files.
                m.set_options(Some(vec!["bind".to_string(), "ro".to_string()]));
                m
            })
            .collect()
    }

    /// Adds the binds to a spec (after its own mounts, as they were made).
    pub fn add_to(&self, spec: &mut Spec) {
        let add = self.mounts();
        let mut all = spec.mounts().clone().unwrap_or_default();
        all.retain(|m| !add.iter().any(|a| a.destination() == m.destination()));
        all.extend(add);
        spec.set_mounts(Some(all));
    }

    /// Binds the files over the container's own, read-only, into the running init `pid`
    /// (waiting for `start`). vzrun does this itself rather than handing libcontainer
    /// spec mounts: libcontainer checks its /proc handle and the mount target anew for
    /// each mount (some 70 system calls a bind), which made the view cost 1.2-1.6 ms per
    /// `run`; this is a few calls a file. A file the container lacks (no /sys mounted)
    /// is left out rather than made in the image.
    /// Keeps in `files` only those bound, for checkpoint to name.
    pub fn bind_into(&mut self, pid: i32) -> std::io::Result<()> {
        let sources: Vec<PathBuf> = self.files.iter().map(|f| self.source(f)).collect();
        let pairs: Vec<(&Path, &Path)> = sources
            .iter()
            .zip(&self.files)
            .map(|(s, d)| (s.as_path(), Path::new(d)))
            .collect();
        let done = crate::sys::mount::bind_into(pid, &pairs)?;
        let mut bound = done.iter().map(|d| *d == crate::sys::mount::Bound::Done);
        self.files.retain(|_| bound.next().unwrap_or(false));
        Ok(())
    }
}

/// Decides the view when the VE gets virtual files: records the binds for create to
/// make, and drops the spec's own mounts over those paths (the VE's view wins). Returns
/// whether the VE gets them.
pub fn prepare(
    c: &ProcConfig,
    system_ve: bool,
    spec: &mut Spec,
    record: &mut Option<Binds>,
) -> Result<bool, ProcViewError> {
    *record = None;
    let want = want(c, system_ve);
    if want == Want::Off {
        return Ok(false);
    }
    let dir = lxcfs_dir();
    let files = served(&dir).unwrap_or_default();
    if !files.contains(&"/proc/meminfo") {
        if want == Want::Required {
            return Err(ProcViewError::NotMounted { dir });
        }
        // A system VE's vzrun writes to its console log: the warning lands there.
        eprintln!(
            "vzrun: warning: LXCFS is not mounted at {}: this VE sees the host's memory, CPUs, uptime and load; {START_HINT}",
            dir.display()
        );
        return Ok(false);
    }
    if let Some(mut all) = spec.mounts().clone() {
        let before = all.len();
        all.retain(|m| !files.iter().any(|f| m.destination() == Path::new(f)));
        if all.len() != before {
            spec.set_mounts(Some(all));
        }
    }
    *record = Some(Binds {
        dir,
        files: files.iter().map(|f| f.to_string()).collect(),
    });
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ve::test_annotations;

    #[test]
    fn defaults_follow_the_kind_of_ve() {
        let c = ProcConfig::parse(&test_annotations(&[])).unwrap();
        assert_eq!(want(&c, false), Want::Off);
        assert_eq!(want(&c, true), Want::Preferred);
        let c = ProcConfig::parse(&test_annotations(&[("proc", "virtual")])).unwrap();
        assert_eq!(want(&c, false), Want::Required);
        let c = ProcConfig::parse(&test_annotations(&[("proc", "host")])).unwrap();
        assert_eq!(want(&c, true), Want::Off);
    }

    #[test]
    fn policy_wins() {
        let mut c = ProcConfig::parse(&test_annotations(&[])).unwrap();
        c.forced = Some(ProcMode::Virtual);
        assert_eq!(want(&c, false), Want::Required);
        c.forced = Some(ProcMode::Host);
        assert_eq!(want(&c, true), Want::Off);
    }

    #[test]
    fn bad_values_are_named() {
        let e = ProcConfig::parse(&test_annotations(&[("proc", "lxcfs")]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "annotation io.vzrun.proc: \"lxcfs\" is not virtual or host"
        );
    }

    #[test]
    fn not_mounted_says_how_to_start_it() {
        let e = ProcViewError::NotMounted {
            dir: PathBuf::from("/nowhere"),
        }
        .to_string();
        assert!(e.contains("LXCFS is not mounted at /nowhere"), "{e}");
        assert!(e.contains("lxcfs -l --enable-cfs /var/lib/lxcfs"), "{e}");
    }

    #[test]
    fn binds_are_read_only_single_files_from_lxcfs() {
        let d = std::env::temp_dir().join(format!("vzrun-lxcfs-{}", std::process::id()));
        std::fs::create_dir_all(d.join("proc")).unwrap();
        let b = Binds {
            dir: d.clone(),
            files: vec!["/proc/meminfo".into()],
        };
        let m = b.mounts();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].destination(), Path::new("/proc/meminfo"));
        assert_eq!(
            m[0].source().as_deref(),
            Some(d.join("proc/meminfo").as_path())
        );
        assert_eq!(
            m[0].options().as_deref(),
            Some(&["bind".to_string(), "ro".to_string()][..])
        );
        assert!(served(&d).is_none(), "not a FUSE mount: no LXCFS there");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn the_hosts_own_lxcfs_mount_is_not_a_view() {
        // The host's table may hold LXCFS at its mount point, never over /proc/meminfo.
        assert_eq!(seen_by(std::process::id() as i32, &lxcfs_dir()), Seen::Host);
        assert_eq!(seen_by(i32::MAX, &lxcfs_dir()), Seen::Host);
    }
}
