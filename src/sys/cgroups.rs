//! cgroups, found and frozen one way: libcgroups' manager for a container's cgroup path,
//! the per-controller directory of a process for reading counters, and a freeze that a
//! dump can wait on without CRIU's fixed 100 ms sleep.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use libcgroups::common::{
    create_cgroup_manager, get_cgroup_setup, AnyCgroupManager, CgroupConfig, CgroupManager,
    CgroupSetup,
};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("open cgroup {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("list processes of cgroup {path}: {reason}")]
    Pids { path: PathBuf, reason: String },
    #[error("write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    /// runc's words for a cgroup file that refused a value.
    #[error("failed to write {line:?}: write {}: {reason}", path.display())]
    WriteLine {
        line: String,
        path: PathBuf,
        reason: String,
    },
    /// runc's words: a create into a frozen cgroup would leave its init frozen.
    #[error("container's cgroup unexpectedly frozen")]
    Frozen,
}

/// Whether the host runs the unified (pure v2) hierarchy.
pub fn unified() -> bool {
    Path::new(CGROUP_ROOT).join("cgroup.controllers").exists()
}

/// libcgroups' manager of the cgroup at `path` (relative to each hierarchy's root).
pub fn manager(path: &Path, id: &str) -> Result<AnyCgroupManager, CgroupError> {
    create_cgroup_manager(CgroupConfig {
        cgroup_path: path.to_path_buf(),
        systemd_cgroup: false,
        container_name: id.to_string(),
    })
    .map_err(|e| CgroupError::Open {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Every process in the cgroup at `path`.
pub fn pids(path: &Path, id: &str) -> Result<Vec<i32>, CgroupError> {
    let pids = manager(path, id)?
        .get_all_pids()
        .map_err(|e| CgroupError::Pids {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    Ok(pids.into_iter().map(|p| p.as_raw()).collect())
}

/// The cgroup directory of `pid` for a v1 controller, or its v2 directory.
pub fn dir_of(pid: i32, controller: &str) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        if ctrls.split(',').any(|c| c == controller) {
            return Some(
                Path::new(CGROUP_ROOT)
                    .join(controller)
                    .join(path.trim_start_matches('/')),
            );
        }
    }
    if !unified() {
        return None;
    }
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|path| Path::new(CGROUP_ROOT).join(path.trim_start_matches('/')))
        .filter(|d| d.join("cgroup.controllers").exists())
}

/// Whether the process `pid` is in the cgroup at `path` (or one below it) in some
/// hierarchy, as its /proc/PID/cgroup says.
pub fn holds(path: &Path, pid: i32) -> bool {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
        return false;
    };
    let want = path.to_string_lossy();
    let want = want.trim_end_matches('/');
    text.lines().any(|l| {
        l.splitn(3, ':').nth(2).is_some_and(|p| {
            p == want
                || p.strip_prefix(want)
                    .is_some_and(|rest| rest.starts_with('/'))
        })
    })
}

/// Starts, on a thread of its own, the RCU grace period that the next move of a process
/// into a cgroup waits for, so that the caller's own move (a restore putting CRIU into
/// the VE's cgroups) finds it passed or under way instead of starting one.
///
/// Every write to a `cgroup.procs` takes the kernel's cgroup_threadgroup_rwsem for
/// writing, a per-CPU rwsem whose writer waits for a grace period unless a writer
/// left less than one grace period ago (rcu_sync; hosts mounted with `favordynmods`
/// skip it). Measured here: the first `cgroup.procs` write of a restore took 12.5 ms,
/// the next seven 0.03 ms each. The write made here moves this process into the
/// cgroup it is in already, which the kernel takes as nothing to move; a failure
/// only means there is nothing to gain.
pub fn prime_attach() {
    let _ = std::thread::Builder::new()
        .name("cgroup-prime".into())
        .spawn(|| {
            let pid = std::process::id() as i32;
            // Any hierarchy will do: the rwsem is one for all of them (and v2's).
            let dir = ["pids", "memory", "freezer"]
                .iter()
                .find_map(|c| dir_of(pid, c));
            if let Some(d) = dir {
                let _ = std::fs::write(d.join("cgroup.procs"), pid.to_string());
            }
        });
}

/// How many processes the cgroup at `path` and its sub-cgroups hold, in every mounted
/// hierarchy; 0 when it does not exist.
pub fn process_count(path: &Path) -> usize {
    // Every hierarchy, not one controller's: a cgroup that exists in one hierarchy only
    // (a host service's memory cgroup) is as much somebody else's as one that has them
    // all, and the container would join it.
    tree_dirs(path)
        .iter()
        .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
        .flat_map(|procs| {
            procs
                .lines()
                .filter_map(|l| l.trim().parse::<i32>().ok())
                .collect::<Vec<_>>()
        })
        // A process is in one cgroup of each hierarchy: counted once.
        .collect::<std::collections::BTreeSet<i32>>()
        .len()
}

/// The v2 hierarchy a hybrid host mounts beside its v1 controllers (it has no
/// controllers: it tracks processes, and systemd reads it); None on a pure v1 or v2 host.
fn hybrid_unified_root() -> Option<PathBuf> {
    if unified() {
        return None;
    }
    let root = Path::new(CGROUP_ROOT).join("unified");
    root.join("cgroup.procs").exists().then_some(root)
}

/// The calling process's place in the hybrid unified hierarchy for as long as it lives:
/// what it forks meanwhile (a container's init, an exec'd process) is born there, which
/// libcontainer 0.7's v1 manager never arranges. Dropping it moves the caller back.
pub struct UnifiedJoin {
    dir: PathBuf,
    back: PathBuf,
    made: bool,
}

/// Joins the cgroup at `path` in a hybrid host's unified hierarchy, making it when
/// `make` is true (runc's create makes it there as in each controller). None where
/// there is no such hierarchy, or (`make` false) no such cgroup.
pub fn join_unified(path: &Path, make: bool) -> Result<Option<UnifiedJoin>, CgroupError> {
    let Some(root) = hybrid_unified_root() else {
        return Ok(None);
    };
    let rel = path.strip_prefix("/").unwrap_or(path);
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let Some(own) = own.lines().find_map(|l| l.strip_prefix("0::")) else {
        return Ok(None);
    };
    let dir = root.join(rel);
    let made = !dir.is_dir();
    if made {
        if !make {
            return Ok(None);
        }
        tracing::debug!(dir = %dir.display(), "cgroup mkdir");
        std::fs::create_dir_all(&dir).map_err(|e| CgroupError::Write {
            path: dir.clone(),
            reason: e.to_string(),
        })?;
    }
    let join = UnifiedJoin {
        back: root.join(own.trim_start_matches('/')),
        dir,
        made,
    };
    let procs = join.dir.join("cgroup.procs");
    tracing::debug!(file = %procs.display(), value = std::process::id(), "cgroup write");
    if let Err(e) = std::fs::write(&procs, std::process::id().to_string()) {
        let made = join.made();
        drop(join);
        if let Some(made) = made {
            remove_made_unified(&made);
        }
        return Err(CgroupError::Write {
            path: procs,
            reason: e.to_string(),
        });
    }
    Ok(Some(join))
}

impl UnifiedJoin {
    /// The cgroup, when this join made it: for the caller to remove with
    /// [`remove_made_unified`] should its create fail after all.
    pub fn made(&self) -> Option<PathBuf> {
        self.made.then(|| self.dir.clone())
    }
}

/// Removes a unified cgroup that a failed create made; its init (killed by then) leaves
/// it only when reaped, a moment later.
pub fn remove_made_unified(dir: &Path) {
    for _ in 0..100 {
        if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Drop for UnifiedJoin {
    fn drop(&mut self) {
        let procs = self.back.join("cgroup.procs");
        tracing::debug!(file = %procs.display(), value = std::process::id(), "cgroup write");
        let _ = std::fs::write(procs, std::process::id().to_string());
    }
}

/// The freezer's directory for the cgroup at `path`: the v2 directory, or the v1 freezer
/// hierarchy's.
pub fn freezer_dir(path: &Path) -> Option<PathBuf> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    match get_cgroup_setup().ok()? {
        CgroupSetup::Unified => Some(Path::new(CGROUP_ROOT).join(rel)),
        // libcgroups' lookup reads the mount table through a checked /proc handle.
        _ => {
            let table = crate::sys::mountinfo::read(None).ok()?;
            Some(v1_mount_of(&table, "freezer")?.point.join(rel))
        }
    }
}

/// Fails when the cgroup at `path` exists and is frozen (or freezing), as runc refuses
/// to create into it: the init would join it frozen and never report back. A cgroup that
/// does not exist yet, or has no freezer, is not frozen.
pub fn refuse_frozen(path: &Path) -> Result<(), CgroupError> {
    let Some(dir) = freezer_dir(path) else {
        return Ok(());
    };
    let frozen = match std::fs::read_to_string(dir.join("freezer.state")) {
        // v1 reports FREEZING while a freeze (of it or of an ancestor) is under way.
        Ok(v1) => v1.trim() != "THAWED",
        Err(_) => std::fs::read_to_string(dir.join("cgroup.freeze")).is_ok_and(|v| v.trim() == "1"),
    };
    if frozen {
        return Err(CgroupError::Frozen);
    }
    Ok(())
}

/// Whether the cgroup at `path` is wholly frozen (not freezing, not thawed).
pub fn is_frozen(path: &Path) -> bool {
    FreezerFiles::of(path).is_some_and(|f| f.is(true))
}

/// Whether resources ask for the OOM killer to be off (`memory.disableOOMKiller`).
pub fn oom_killer_disabled(resources: Option<&oci_spec::runtime::LinuxResources>) -> bool {
    resources
        .and_then(|r| r.memory().as_ref())
        .and_then(|m| m.disable_oom_killer())
        .unwrap_or(false)
}

/// Turns the OOM killer off for the cgroup at `path`: v1's `memory.oom_control` (v2 has
/// no such switch, and runc ignores the setting there). libcontainer's create writes 0
/// whatever the spec says, so this comes after it.
pub fn disable_oom_killer(path: &Path) -> Result<(), CgroupError> {
    let Ok(mp) =
        libcgroups::v1::util::get_subsystem_mount_point(&libcgroups::v1::ControllerType::Memory)
    else {
        return Ok(());
    };
    let file = mp
        .join(path.strip_prefix("/").unwrap_or(path))
        .join("memory.oom_control");
    tracing::debug!(file = %file.display(), value = "1", "cgroup write");
    std::fs::write(&file, "1").map_err(|e| CgroupError::Write {
        path: file,
        reason: e.to_string(),
    })
}

/// Writes each per-device weight of `blkio.weightDevice` (libcgroups 0.7 writes only the
/// default weight): into bfq's file where the kernel has it, as runc does, else CFQ's.
/// A device whose scheduler is not bfq refuses the write, and so does the create, in
/// runc's words.
pub fn set_weight_devices(
    path: &Path,
    blkio: Option<&oci_spec::runtime::LinuxBlockIo>,
) -> Result<(), CgroupError> {
    let Some(devices) = blkio.and_then(|b| b.weight_device().as_ref()) else {
        return Ok(());
    };
    let Ok(mp) =
        libcgroups::v1::util::get_subsystem_mount_point(&libcgroups::v1::ControllerType::Blkio)
    else {
        return Ok(());
    };
    let dir = mp.join(path.strip_prefix("/").unwrap_or(path));
    let file = ["blkio.bfq.weight_device", "blkio.weight_device"]
        .iter()
        .map(|f| dir.join(f))
        .find(|f| f.exists());
    let Some(file) = file else {
        return Ok(());
    };
    for d in devices {
        let Some(weight) = d.weight() else { continue };
        let line = format!("{}:{} {weight}", d.major(), d.minor());
        std::fs::write(&file, &line).map_err(|e| {
            // The C library's words, as Go prints an errno: "operation not supported".
            let text = e.to_string();
            let words = text.split(" (os error").next().unwrap_or_default();
            CgroupError::WriteLine {
                line: line.clone(),
                path: file.clone(),
                reason: words.to_lowercase(),
            }
        })?;
    }
    Ok(())
}

/// The directories a process joining the sub-cgroup `sub` of the cgroup at `path` enters:
/// the v2 directory, or on v1 the one in each controller's hierarchy that holds the
/// container's cgroup, only the `controllers` named when some are.
pub fn sub_cgroup_dirs(path: &Path, sub: &str, controllers: &[&str]) -> Vec<PathBuf> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    let sub = sub.trim_start_matches('/');
    if unified() {
        return vec![Path::new(CGROUP_ROOT).join(rel).join(sub)];
    }
    let Ok(rd) = std::fs::read_dir(CGROUP_ROOT) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = rd
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            // The hybrid host's v2 tree and systemd's named hierarchy hold no controller.
            name != "unified"
                && name != "systemd"
                && (controllers.is_empty() || name.split(',').any(|c| controllers.contains(&c)))
        })
        .map(|e| e.path().join(rel))
        .filter(|d| d.is_dir())
        .map(|d| d.join(sub))
        .collect();
    dirs.sort();
    dirs
}

/// The OOM notifications of a container's memory cgroup, as runc's `events` reads them:
/// on v1 an eventfd registered for `memory.oom_control` through `cgroup.event_control`,
/// on v2 inotify on `memory.events` with its `oom`/`oom_kill` counters compared.
pub struct OomWatch {
    dir: PathBuf,
    source: OomSource,
}

enum OomSource {
    V1 {
        efd: nix::sys::eventfd::EventFd,
        // The registration names this descriptor; it stays open as long as the watch.
        _control: std::fs::File,
    },
    V2 {
        inotify: nix::sys::inotify::Inotify,
        seen: u64,
    },
    /// The cgroup went away (its container was deleted): nothing more will come.
    Gone,
}

/// The sum of v2's `oom` and `oom_kill` counters in `memory.events`.
fn v2_oom_count(events: &str) -> u64 {
    events
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(k, _)| *k == "oom" || *k == "oom_kill")
        .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
        .sum()
}

/// Starts watching the memory cgroup at `path` for OOMs; None when the host has no
/// memory controller for it.
pub fn watch_oom(path: &Path) -> Result<Option<OomWatch>, CgroupError> {
    use nix::sys::eventfd::{EfdFlags, EventFd};
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    use std::os::fd::AsRawFd;
    let rel = path.strip_prefix("/").unwrap_or(path);
    let fail = |path: PathBuf, e: &dyn std::fmt::Display| CgroupError::Open {
        path,
        reason: e.to_string(),
    };
    if unified() {
        let dir = Path::new(CGROUP_ROOT).join(rel);
        let events = dir.join("memory.events");
        let Ok(text) = std::fs::read_to_string(&events) else {
            return Ok(None);
        };
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
            .map_err(|e| fail(events.clone(), &e))?;
        inotify
            .add_watch(&events, AddWatchFlags::IN_MODIFY)
            .map_err(|e| fail(events.clone(), &e))?;
        return Ok(Some(OomWatch {
            dir,
            source: OomSource::V2 {
                inotify,
                seen: v2_oom_count(&text),
            },
        }));
    }
    let Ok(mp) =
        libcgroups::v1::util::get_subsystem_mount_point(&libcgroups::v1::ControllerType::Memory)
    else {
        return Ok(None);
    };
    let dir = mp.join(rel);
    let control_path = dir.join("memory.oom_control");
    let Ok(control) = std::fs::File::open(&control_path) else {
        return Ok(None);
    };
    let efd = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
        .map_err(|e| fail(control_path.clone(), &e))?;
    let register = dir.join("cgroup.event_control");
    std::fs::write(
        &register,
        format!("{} {}", efd.as_fd().as_raw_fd(), control.as_raw_fd()),
    )
    .map_err(|e| CgroupError::Write {
        path: register,
        reason: e.to_string(),
    })?;
    Ok(Some(OomWatch {
        dir,
        source: OomSource::V1 {
            efd,
            _control: control,
        },
    }))
}

impl OomWatch {
    /// Waits up to `limit` for the cgroup's next OOM; true when there was one. It may
    /// return false before `limit` (another counter of `memory.events` changed, a
    /// signal): the caller keeps its own deadline.
    pub fn wait(&mut self, limit: Duration) -> Result<bool, CgroupError> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let fd = match &self.source {
            OomSource::V1 { efd, .. } => efd.as_fd(),
            OomSource::V2 { inotify, .. } => inotify.as_fd(),
            OomSource::Gone => {
                std::thread::sleep(limit);
                return Ok(false);
            }
        };
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        let timeout = PollTimeout::try_from(limit).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, timeout) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => return Ok(false),
            Ok(_) => {}
            Err(e) => {
                return Err(CgroupError::Open {
                    path: self.dir.clone(),
                    reason: format!("wait for OOM events: {e}"),
                })
            }
        }
        let oom = match &mut self.source {
            OomSource::V1 { efd, .. } => {
                let _ = efd.read();
                // The eventfd also fires when the cgroup is removed; runc tells the two
                // apart the same way, by whether the control file is still there.
                self.dir.join("memory.oom_control").exists()
            }
            OomSource::V2 { inotify, seen } => {
                let _ = inotify.read_events();
                let now = std::fs::read_to_string(self.dir.join("memory.events"))
                    .map(|t| v2_oom_count(&t));
                match now {
                    Ok(n) if n > *seen => {
                        *seen = n;
                        true
                    }
                    Ok(_) => false,
                    Err(_) => {
                        self.source = OomSource::Gone;
                        return Ok(false);
                    }
                }
            }
            OomSource::Gone => false,
        };
        if !oom && !self.dir.exists() {
            self.source = OomSource::Gone;
        }
        Ok(oom)
    }
}

/// A cgroup frozen by [`freeze`]; thawed again when dropped.
pub struct Frozen {
    file: PathBuf,
    thawed: &'static str,
}

impl Drop for Frozen {
    fn drop(&mut self) {
        tracing::debug!(file = %self.file.display(), value = self.thawed, "cgroup write");
        let _ = std::fs::write(&self.file, self.thawed);
    }
}

/// The files that freeze a cgroup and tell that it is: v1's `freezer.state` (both), or
/// v2's `cgroup.freeze` and `cgroup.events`.
struct FreezerFiles {
    write: PathBuf,
    state: PathBuf,
    v1: bool,
}

impl FreezerFiles {
    fn of(path: &Path) -> Option<FreezerFiles> {
        let dir = freezer_dir(path)?;
        let v1 = dir.join("freezer.state");
        if v1.exists() {
            return Some(FreezerFiles {
                write: v1.clone(),
                state: v1,
                v1: true,
            });
        }
        let write = dir.join("cgroup.freeze");
        write.exists().then(|| FreezerFiles {
            write,
            state: dir.join("cgroup.events"),
            v1: false,
        })
    }

    fn value(&self, frozen: bool) -> &'static str {
        match (self.v1, frozen) {
            (true, true) => "FROZEN",
            (true, false) => "THAWED",
            (false, true) => "1",
            (false, false) => "0",
        }
    }

    /// Whether the whole cgroup is frozen (or thawed) now; v1's FREEZING is neither.
    fn is(&self, frozen: bool) -> bool {
        std::fs::read_to_string(&self.state).is_ok_and(|v| {
            if self.v1 {
                v.trim() == self.value(frozen)
            } else {
                v.contains(&format!("frozen {}", u8::from(frozen)))
            }
        })
    }

    /// Writes the state and waits (polling every millisecond, at most `limit`) until the
    /// cgroup is there.
    fn set(&self, frozen: bool, limit: Duration) -> bool {
        let value = self.value(frozen);
        tracing::debug!(file = %self.write.display(), value, "cgroup write");
        if std::fs::write(&self.write, value).is_err() {
            return false;
        }
        let start = std::time::Instant::now();
        loop {
            if self.is(frozen) {
                return true;
            }
            if start.elapsed() >= limit {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Freezes the cgroup at `path` and waits (at most `limit`) until every task is frozen.
/// None when it was frozen already (a paused VE stays paused, nobody thaws it), has no
/// freezer, or did not freeze in time (it is thawed again).
pub fn freeze(path: &Path, limit: Duration) -> Option<Frozen> {
    let files = FreezerFiles::of(path)?;
    if files.is(true) {
        return None;
    }
    let thawed = files.value(false);
    let frozen = files.set(true, limit);
    let f = Frozen {
        file: files.write,
        thawed,
    };
    // Dropping `f` thaws it: a freeze that did not finish leaves the caller without one.
    frozen.then_some(f)
}

/// The tasks (threads) of the freezer cgroup at `path` and its sub-cgroups.
pub fn freezer_tasks(path: &Path) -> Vec<i32> {
    let Some(dir) = freezer_dir(path) else {
        return Vec::new();
    };
    // v1 lists threads in `tasks`, v2 in `cgroup.threads`.
    let name = if dir.join("tasks").exists() {
        "tasks"
    } else {
        "cgroup.threads"
    };
    let mut dirs = sub_dirs_deepest_first(&dir);
    dirs.push(dir);
    dirs.iter()
        .filter_map(|d| std::fs::read_to_string(d.join(name)).ok())
        .flat_map(|t| {
            t.lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

/// Freezes (or thaws) the cgroup at `path`, whoever froze it before, and waits (at most
/// `limit`) until it is so. False when it has no freezer or did not get there in time.
pub fn set_frozen(path: &Path, frozen: bool, limit: Duration) -> bool {
    FreezerFiles::of(path).is_some_and(|f| f.set(frozen, limit))
}

/// The directories below `dir`, each before its parent.
fn sub_dirs_deepest_first(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                let p = e.path();
                out.extend(sub_dirs_deepest_first(&p));
                out.push(p);
            }
        }
    }
    out
}

/// The mount point of every cgroup hierarchy in this mount namespace (each v1
/// controller's, named ones such as systemd's, a hybrid host's unified tree, or the one v2
/// tree), from one read of mountinfo. libcgroups' v1 manager reads mountinfo and
/// /proc/self/cgroup through a checked /proc handle once per controller it knows (about
/// 20 system calls a read, 24 reads).
fn hierarchy_roots() -> Vec<PathBuf> {
    cgroup_mount_points(&crate::sys::mountinfo::read(None).unwrap_or_default())
}

/// One mount point per cgroup hierarchy in a mount table. A hierarchy's mounts share the
/// device; a whole-hierarchy mount (root `/`) is taken, the one under /sys/fs/cgroup where
/// there is one. CRIU mounts the hierarchies again under its work directory while it
/// dumps or restores (`.criu.cgyard.*`), and those go away under whoever uses them.
fn cgroup_mount_points(table: &[crate::sys::mountinfo::Mount]) -> Vec<PathBuf> {
    let mut chosen: Vec<(&str, PathBuf)> = Vec::new();
    for m in table {
        if !matches!(m.fstype.as_str(), "cgroup" | "cgroup2") || m.root != Path::new("/") {
            continue;
        }
        match chosen.iter_mut().find(|(dev, _)| *dev == m.dev) {
            Some((_, point)) => {
                if !point.starts_with(CGROUP_ROOT) && m.point.starts_with(CGROUP_ROOT) {
                    *point = m.point.clone();
                }
            }
            None => chosen.push((m.dev.as_str(), m.point.clone())),
        }
    }
    chosen.into_iter().map(|(_, point)| point).collect()
}

/// The cgroup at `path` in each hierarchy that has it, each directory's sub-cgroups
/// before it, deepest first: rmdir of a cgroup with children fails, and runc removes the
/// whole tree.
fn tree_dirs(path: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    for dir in hierarchy_dirs(path) {
        if dir.is_dir() {
            all.extend(sub_dirs_deepest_first(&dir));
            all.push(dir);
        }
    }
    all
}

/// Ends every process in `dir`: thawed first (SIGKILL stays pending in a frozen cgroup),
/// then v2's `cgroup.kill` where the kernel has it, else SIGKILL to each listed process.
fn kill_in(dir: &Path) {
    let _ = std::fs::write(dir.join("freezer.state"), "THAWED");
    let _ = std::fs::write(dir.join("cgroup.freeze"), "0");
    if std::fs::write(dir.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// SIGKILLs every process in the cgroup at `path` and its sub-cgroups, in every
/// hierarchy (a forced delete of a live container, before its poststop hooks, as runc
/// does). Whatever a process forks meanwhile is caught by [`remove_tree`]'s retries.
pub fn kill_tree(path: &Path) {
    for dir in tree_dirs(path) {
        kill_in(&dir);
    }
}

/// Removes the cgroup at `path` with its sub-cgroups from every hierarchy, ending what
/// still runs in them (as libcgroups' remove and runc's delete do, also for a stopped
/// container: without a PID namespace the init's children outlive it). A directory is
/// first simply removed; only one that refuses (EBUSY: processes, or ones still exiting)
/// has its processes killed, and is retried for half a second. Returns the directories
/// that stayed.
pub fn remove_tree(path: &Path) -> Vec<PathBuf> {
    hierarchy_dirs(path)
        .into_iter()
        .filter(|dir| !remove_dir_tree(dir, true))
        .collect()
}

/// The cgroup at `path` in each mounted hierarchy, whether it exists there or not.
fn hierarchy_dirs(path: &Path) -> Vec<PathBuf> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    if rel.as_os_str().is_empty() {
        return Vec::new();
    }
    hierarchy_roots().into_iter().map(|r| r.join(rel)).collect()
}

/// The cgroup at `path` in each mounted hierarchy that has it: where a process joins the
/// container's cgroup, as runc joins every path of its state.
pub fn existing_dirs(path: &Path) -> Vec<PathBuf> {
    hierarchy_dirs(path)
        .into_iter()
        .filter(|d| d.is_dir())
        .collect()
}

/// Removes `dir` with its sub-cgroups; true once it is gone. A plain rmdir first: only a
/// cgroup that refuses is listed for sub-cgroups (removed deepest first: rmdir of a
/// cgroup with children fails) and, with `kill`, has its processes killed.
fn remove_dir_tree(dir: &Path, kill: bool) -> bool {
    match std::fs::remove_dir(dir) {
        Ok(()) => return true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return true,
        Err(_) => {}
    }
    for sub in sub_dirs_deepest_first(dir) {
        remove_or_kill(&sub, kill);
    }
    remove_or_kill(dir, kill)
}

/// rmdir of `dir`, and with `kill` its processes killed between tries; true once it is
/// gone. A killed process leaves its cgroups within a millisecond or so: the waits
/// between tries start at 1 ms and double up to 10 ms, about half a second in all.
fn remove_or_kill(dir: &Path, kill: bool) -> bool {
    let mut wait = Duration::ZERO;
    for _ in 0..60 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return true,
            Err(_) if !kill => return false,
            Err(_) => {}
        }
        kill_in(dir);
        std::thread::sleep(wait);
        wait = (wait * 2).clamp(Duration::from_millis(1), Duration::from_millis(10));
    }
    !dir.exists()
}

/// Removes the cgroup at `path` from every hierarchy it exists in, killing what is left
/// in it first: for what a killed create left halfway (a controller made, the next not
/// yet), where libcgroups' own remove stops at the first hierarchy it cannot handle.
/// With `kill` false, only empty cgroups are removed (a cgroup shared with other
/// processes stays as it is).
pub fn remove_everywhere(path: &Path, kill: bool) {
    for dir in hierarchy_dirs(path) {
        remove_dir_tree(&dir, kill);
    }
}

/// Sets the process limit of the cgroup at `path` alone (`pids.max`; 0 or less is no
/// limit, as libcgroups writes it).
pub fn set_pids_limit(path: &Path, limit: i64) -> Result<(), CgroupError> {
    let file = file_of(path, "pids.max");
    let value = if limit > 0 {
        limit.to_string()
    } else {
        "max".to_string()
    };
    tracing::debug!(file = %file.display(), value, "cgroup write");
    std::fs::write(&file, value).map_err(|e| CgroupError::Write {
        path: file,
        reason: e.to_string(),
    })
}

/// Files of a cgroup as they were, to be written back if a change has to be undone.
#[derive(Debug, Default)]
pub struct Snapshot {
    files: Vec<(PathBuf, String)>,
}

/// The file `name` of the cgroup at `path`: in the v2 directory, or on v1 in the
/// hierarchy of the controller the name starts with (`memory.limit_in_bytes`).
pub fn file_of(path: &Path, name: &str) -> PathBuf {
    let rel = path.strip_prefix("/").unwrap_or(path);
    let root = Path::new(CGROUP_ROOT);
    if unified() {
        return root.join(rel).join(name);
    }
    let controller = name.split('.').next().unwrap_or(name);
    root.join(controller).join(rel).join(name)
}

/// Reads the `names` of the cgroup at `path` that exist (v1 and v2 names may be mixed:
/// only this host's are there).
pub fn snapshot(path: &Path, names: &[&str]) -> Snapshot {
    Snapshot {
        files: names
            .iter()
            .map(|n| file_of(path, n))
            .filter_map(|f| Some((f.clone(), std::fs::read_to_string(&f).ok()?)))
            .collect(),
    }
}

impl Snapshot {
    /// Writes every file back. Limits that depend on each other (v1's memory and
    /// memory+swap, a CPU quota and its period) are refused in one order and accepted
    /// in the other, so what fails is tried once more after the rest.
    pub fn restore(&self) -> Result<(), CgroupError> {
        let mut failed = Vec::new();
        for (file, old) in &self.files {
            if write_back(file, old).is_err() {
                failed.push((file, old));
            }
        }
        for (file, old) in failed {
            write_back(file, old).map_err(|e| CgroupError::Write {
                path: file.clone(),
                reason: e.to_string(),
            })?;
        }
        Ok(())
    }
}

/// Writes a file's old content back. Per-device files (v1 throttles, v2 io.max) take
/// one device a write: each old line again, and a device that has a line only now is
/// set back to no limit.
fn write_back(file: &Path, old: &str) -> std::io::Result<()> {
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let per_device = name.starts_with("blkio.throttle.") || name == "io.max";
    if !per_device {
        return std::fs::write(file, old.trim());
    }
    let device = |l: &str| l.split_whitespace().next().unwrap_or_default().to_string();
    let now = std::fs::read_to_string(file)?;
    for line in now.lines().filter(|l| !l.trim().is_empty()) {
        let dev = device(line);
        if !old.lines().any(|o| device(o) == dev) {
            let none = if name == "io.max" {
                format!("{dev} rbps=max wbps=max riops=max wiops=max")
            } else {
                format!("{dev} 0")
            };
            std::fs::write(file, none)?;
        }
    }
    for line in old.lines().filter(|l| !l.trim().is_empty()) {
        std::fs::write(file, line.trim())?;
    }
    Ok(())
}

/// The v1 controllers libcgroups' manager places a container's processes in, by the
/// name a hierarchy's options give them.
const V1_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "devices",
    "hugetlb",
    "memory",
    "pids",
    "perf_event",
    "blkio",
    "net_prio",
    "net_cls",
    "freezer",
];

/// Whether `resources` asks a v1 host for nothing but device rules: what
/// [`place_v1_init`] does.
fn only_device_rules(resources: Option<&oci_spec::runtime::LinuxResources>) -> bool {
    resources.is_none_or(|r| {
        r.memory().is_none()
            && r.cpu().is_none()
            && r.pids().is_none()
            && r.block_io().is_none()
            && r.hugepage_limits().as_ref().is_none_or(|h| h.is_empty())
            && r.network().is_none()
            && r.rdma().is_none()
            && r.unified().as_ref().is_none_or(|u| u.is_empty())
    })
}

/// The device rules libcgroups' v1 manager writes for a container: the spec's, then
/// the standard nodes every container gets (null, zero, full, tty, urandom, random),
/// then mknod of any node, the console, the pts terminals, ptmx and tun. Kept in its
/// order: a later rule refines an earlier one.
fn v1_device_rules(resources: Option<&oci_spec::runtime::LinuxResources>) -> Vec<(bool, String)> {
    let mut rules: Vec<(bool, String)> = resources
        .and_then(|r| r.devices().as_ref())
        .into_iter()
        .flatten()
        .map(|d| (d.allow(), d.to_string()))
        .collect();
    let standard = [
        "c 1:3 rwm",
        "c 1:5 rwm",
        "c 1:7 rwm",
        "c 5:0 rwm",
        "c 1:9 rwm",
        "c 1:8 rwm",
    ];
    let allowed = [
        "c *:* m",
        "b *:* m",
        "c 5:1 rwm",
        "c 136:* rwm",
        "c 5:2 rwm",
        "c 10:200 rwm",
    ];
    rules.extend(
        standard
            .iter()
            .chain(&allowed)
            .map(|r| (true, r.to_string())),
    );
    rules
}

/// Places the init `pid` of a new container in its cgroup `path` on a v1 or hybrid host,
/// as libcgroups' v1 manager does for a spec whose resources are only device rules: the
/// cgroup made in every controller's hierarchy (an empty cpuset filled from its parent,
/// or the kernel refuses the move), the process moved in, the device rules written.
/// The manager reads the mount table through a checked /proc handle twice per
/// controller (about 600 system calls, 2 ms here); this reads it once. None when the
/// host is pure v2 or the resources ask for more: the caller uses libcgroups then.
pub fn place_v1_init(
    path: &Path,
    pid: i32,
    resources: Option<&oci_spec::runtime::LinuxResources>,
) -> Option<Result<(), CgroupError>> {
    if unified() || !only_device_rules(resources) {
        return None;
    }
    let rel = path.strip_prefix("/").unwrap_or(path);
    if rel.as_os_str().is_empty()
        || rel
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return None;
    }
    let table = crate::sys::mountinfo::read(None).ok()?;
    // One directory per hierarchy, found by the controllers it holds.
    let mut dirs: Vec<(PathBuf, PathBuf, bool, bool)> = Vec::new();
    for c in V1_CONTROLLERS {
        let Some(m) = v1_mount_of(&table, c) else {
            continue;
        };
        let dir = m.point.join(rel);
        match dirs.iter_mut().find(|(d, ..)| *d == dir) {
            Some(entry) => {
                entry.2 |= *c == "cpuset";
                entry.3 |= *c == "devices";
            }
            None => dirs.push((dir, m.point.clone(), *c == "cpuset", *c == "devices")),
        }
    }
    let write = |file: PathBuf, value: &str| {
        std::fs::write(&file, value).map_err(|e| CgroupError::Write {
            path: file,
            reason: e.to_string(),
        })
    };
    let placed = (|| {
        for (dir, mount, cpuset, devices) in &dirs {
            std::fs::create_dir_all(dir).map_err(|e| CgroupError::Write {
                path: dir.clone(),
                reason: e.to_string(),
            })?;
            if *cpuset {
                for file in ["cpuset.cpus", "cpuset.mems"] {
                    fill_from_parent(mount, rel, file)?;
                }
            }
            write(dir.join("cgroup.procs"), &pid.to_string())?;
            if *devices {
                for (allow, rule) in v1_device_rules(resources) {
                    let file = if allow {
                        "devices.allow"
                    } else {
                        "devices.deny"
                    };
                    write(dir.join(file), &rule)?;
                }
            }
        }
        Ok(())
    })();
    Some(placed)
}

/// The whole-hierarchy mount of the v1 `controller`, the one under /sys/fs/cgroup where
/// there are several.
fn v1_mount_of<'a>(
    table: &'a [crate::sys::mountinfo::Mount],
    controller: &str,
) -> Option<&'a crate::sys::mountinfo::Mount> {
    table
        .iter()
        .filter(|m| {
            m.fstype == "cgroup"
                && m.root == Path::new("/")
                && m.super_options.split(',').any(|o| o == controller)
        })
        .min_by_key(|m| !m.point.starts_with(CGROUP_ROOT))
}

/// Copies a cpuset file down from each cgroup to its child along `rel` below `mount`
/// where the child's is empty: a new cpuset cgroup starts with no CPUs and no memory
/// nodes, and takes no process until it has some.
fn fill_from_parent(mount: &Path, rel: &Path, file: &str) -> Result<(), CgroupError> {
    let mut parent = mount.to_path_buf();
    let mut value = read_trimmed(&parent.join(file))?;
    for c in rel.components() {
        let child = parent.join(c);
        let path = child.join(file);
        let own = read_trimmed(&path)?;
        if own.is_empty() {
            std::fs::write(&path, &value).map_err(|e| CgroupError::Write {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        } else {
            value = own;
        }
        parent = child;
    }
    Ok(())
}

fn read_trimmed(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| CgroupError::Open {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v1_controller_is_found_by_its_hierarchys_options() {
        let table = crate::sys::mountinfo::parse(
            "28 25 0:26 / /tmp/w/.criu.cgyard.Ab12/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
             29 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
             30 25 0:27 /x /mnt/part rw - cgroup cgroup rw,memory\n\
             31 25 0:28 / /sys/fs/cgroup/net_cls,net_prio rw - cgroup cgroup rw,net_cls,net_prio\n",
        );
        let point = |c: &str| v1_mount_of(&table, c).map(|m| m.point.clone());
        assert_eq!(
            point("cpuacct"),
            Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"))
        );
        assert_eq!(
            point("net_prio"),
            Some(PathBuf::from("/sys/fs/cgroup/net_cls,net_prio"))
        );
        // A bind of part of a hierarchy is not where its cgroups are; `cpu` is not `cpuset`.
        assert_eq!(point("memory"), None);
        assert_eq!(point("cpuset"), None);
    }

    #[test]
    fn the_own_v1_placement_takes_device_rules_only_and_keeps_libcgroups_order() {
        use oci_spec::runtime::{
            LinuxDeviceCgroupBuilder, LinuxMemoryBuilder, LinuxResourcesBuilder,
        };
        let deny_all = LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()
            .unwrap();
        let r = LinuxResourcesBuilder::default()
            .devices(vec![deny_all])
            .build()
            .unwrap();
        assert!(only_device_rules(Some(&r)) && only_device_rules(None));
        let rules = v1_device_rules(Some(&r));
        assert_eq!(rules[0], (false, "a *:* rwm".to_string()));
        assert_eq!(rules[1], (true, "c 1:3 rwm".to_string()));
        assert_eq!(rules.last(), Some(&(true, "c 10:200 rwm".to_string())));
        assert_eq!(rules.len(), 13);
        let limited = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(1 << 30)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        assert!(
            !only_device_rules(Some(&limited)),
            "a memory limit goes to libcgroups"
        );
    }

    #[test]
    fn hierarchies_are_the_cgroup_mounts_of_mountinfo() {
        let hybrid = "24 1 0:22 / /sys rw,nosuid - sysfs sysfs rw\n\
            25 24 0:23 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n\
            26 25 0:24 / /sys/fs/cgroup/unified rw,nosuid shared:5 - cgroup2 cgroup2 rw\n\
            27 25 0:25 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n\
            28 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
            29 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
            30 25 0:27 / /mnt/odd\\040dir rw - cgroup cgroup rw,pids\n\
            31 40 0:24 / /tmp/w/.criu.cgyard.Ab12/unified rw - cgroup2 cgroup2 rw\n\
            32 40 0:26 / /tmp/w/.criu.cgyard.Ab12/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
            33 40 0:28 /x /mnt/part rw - cgroup cgroup rw,memory\n";
        let want: Vec<PathBuf> = [
            "/sys/fs/cgroup/unified",
            "/sys/fs/cgroup/systemd",
            "/sys/fs/cgroup/cpu,cpuacct",
            "/mnt/odd dir",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(
            cgroup_mount_points(&crate::sys::mountinfo::parse(hybrid)),
            want
        );
        let v2 = "30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            cgroup_mount_points(&crate::sys::mountinfo::parse(v2)),
            vec![PathBuf::from("/sys/fs/cgroup")]
        );
    }

    #[test]
    fn v2_oom_counters_add_up() {
        let events = "low 0\nhigh 4\nmax 9\noom 2\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(v2_oom_count(events), 3);
        assert_eq!(v2_oom_count(""), 0);
    }
}
