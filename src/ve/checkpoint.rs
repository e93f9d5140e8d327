//! Checkpoint (dump) and restore of a VE's processes with CRIU, over its RPC service.
//!
//! libcontainer can dump but not restore, and its dump sets CRIU's root to the bundle and
//! cannot treat a VE's own network namespace as external. Both directions are here, with
//! runc's choices: CRIU's root is the rootfs, bind mounts (and the /dev/null used for
//! masked paths, and the host's cgroup v1 mounts) are external mounts named by their
//! destination, and a network namespace that outlives the processes' network setup is
//! external: not dumped, and on restore handed to CRIU as an inherited descriptor.
//!
//! A VE's own network namespace is external too (see [`NetnsSource`]): the restore makes
//! a fresh namespace, configures it exactly as create does (loopback, links, addresses,
//! routes, host-side venet routes or bridge port), and CRIU puts the processes and their
//! sockets back into it.

use std::fs::{DirBuilder, File};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Mount, Spec};
use protobuf::MessageField;

use super::plain_tmpfs;
use crate::sys::cgroups;
use crate::sys::criu::{self, rpc, CriuError};

/// CRIU's name for the external network namespace, as runc and crun name it, so images
/// taken by either runtime can be restored by the other where the rest matches.
pub const NETNS_KEY: &str = "extRootNetNS";
const DUMP_LOG: &str = "dump.log";
const RESTORE_LOG: &str = "restore.log";

#[derive(Debug, thiserror::Error)]
pub enum CkptError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{op} failed: {err}{tail}", tail = tail_text(.log, .tail))]
    Criu {
        op: &'static str,
        err: CriuError,
        log: PathBuf,
        tail: String,
    },
    /// A task of the VE stayed in a vfork wait, which CRIU cannot seize.
    #[error("{op} failed: {why}")]
    Vfork { op: &'static str, why: String },
    /// CRIU could not be started at all: it wrote no log to point at.
    #[error("{op} failed: {err}")]
    NoCriu { op: &'static str, err: CriuError },
    #[error(transparent)]
    Copy(#[from] crate::sys::sparse::CopyError),
    #[error("{0}")]
    Other(String),
}

fn tail_text(log: &Path, tail: &str) -> String {
    if tail.is_empty() {
        format!(" (see {})", log.display())
    } else {
        format!(": {tail} (see {})", log.display())
    }
}

/// What checkpoint and restore both take (runc's flags of the same names).
#[derive(Debug, Clone, Default)]
pub struct CriuOpts {
    pub image: PathBuf,
    pub work: Option<PathBuf>,
    pub parent: Option<PathBuf>,
    pub tcp_established: bool,
    pub ext_unix_sk: bool,
    pub shell_job: bool,
    pub file_locks: bool,
    pub manage_cgroups_mode: Option<CgroupsMode>,
    /// Make the network namespace, but do not restore its properties.
    pub empty_net_ns: bool,
    pub auto_dedup: bool,
    pub lazy_pages: bool,
    /// Ends this call's CRIU from another thread (a migration whose peer is gone).
    pub stopper: Option<criu::Stopper>,
}

/// The dump options callers pass (runc's flag set).
#[derive(Debug, Clone, Default)]
pub struct DumpOpts {
    pub criu: CriuOpts,
    pub leave_running: bool,
    pub pre_dump: bool,
    pub page_server: Option<PageServerAddr>,
    pub status_fd: Option<i32>,
    /// Leave connections still being set up out of the dump (CRIU --skip-in-flight).
    pub skip_in_flight: bool,
    /// The caller has taken the VE's host link down (a migration): for a network
    /// namespace of the VE's own, nothing can reach its sockets, so CRIU need not lock
    /// it with iptables rules (an iptables-restore, about 15 ms with the VE frozen).
    pub link_cut: bool,
    /// Leave the VE's runtime-made read-only tmpfs mounts (masked directories, the
    /// cgroup v1 tmpfs) out of the dump; the restore mounts new ones ([`super::plain_tmpfs`]).
    pub plain_tmpfs_external: bool,
}

/// The restore options callers pass.
#[derive(Debug, Clone, Default)]
pub struct RestoreOpts {
    pub criu: CriuOpts,
    pub tcp_close: bool,
    pub lsm_profile: Option<String>,
    pub lsm_mount_context: Option<String>,
    /// A lazy-pages daemon still starting in this directory (a migration's): CRIU gets
    /// the request once its socket exists.
    pub lazy_daemon: Option<PathBuf>,
    /// Where a successful restore leaves the mounts it made for CRIU (its root, the
    /// stand-in tmpfs mounts) for the caller to take down later; without it they are
    /// taken down before the restore returns. A move's destination answers first.
    pub leave_mounts: Option<LaterMounts>,
}

/// Mounts a restore made for CRIU, kept past its end: taken down by [`LaterMounts::release`]
/// or when the last clone is dropped. Taking them down took 18-32 ms after CRIU was done
/// (one lazy unmount each, on a loaded 2-core host), which a move's destination spent
/// before it told the source that the VE runs; the VE has its own mount namespace by
/// then and needs none of them.
#[derive(Clone, Default)]
pub struct LaterMounts(std::sync::Arc<std::sync::Mutex<Vec<Box<dyn Send>>>>);

impl std::fmt::Debug for LaterMounts {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("LaterMounts")
    }
}

impl LaterMounts {
    fn keep(&self, what: impl Send + 'static) {
        // A poisoned lock still holds a plain list: take it as it is.
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Box::new(what));
    }

    /// Takes down what was kept.
    pub fn release(&self) {
        let _step = tracing::debug_span!("restore unmount").entered();
        let kept = std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()));
        drop(kept);
    }
}

/// A CRIU request being built, with what both directions share already set; the image
/// and work directories go to CRIU as descriptors, open until the request is made.
struct Request {
    opts: rpc::Criu_opts,
    keep: Vec<RawFd>,
    log: PathBuf,
    _dirs: Vec<File>,
}

impl CriuOpts {
    /// A dump makes its image directory (`create_images`); a restore needs one to exist.
    fn request(&self, create_images: bool, log_name: &str) -> Result<Request, CkptError> {
        let image_dir = if create_images {
            make_dir(&self.image)?
        } else {
            open_dir(&self.image)?
        };
        let mut opts = rpc::Criu_opts::new();
        let mut keep = vec![image_dir.as_raw_fd()];
        opts.set_images_dir_fd(image_dir.as_raw_fd());
        let mut dirs = vec![image_dir];
        if let Some(w) = &self.work {
            let w = make_dir(w)?;
            opts.set_work_dir_fd(w.as_raw_fd());
            keep.push(w.as_raw_fd());
            dirs.push(w);
        }
        opts.set_log_file(log_name.into());
        opts.set_log_level(4);
        opts.set_tcp_established(self.tcp_established);
        opts.set_ext_unix_sk(self.ext_unix_sk);
        opts.set_shell_job(self.shell_job);
        opts.set_file_locks(self.file_locks);
        opts.set_auto_dedup(self.auto_dedup);
        if self.lazy_pages {
            opts.set_lazy_pages(true);
        }
        if let Some(p) = &self.parent {
            opts.set_parent_img(p.display().to_string());
        }
        if self.empty_net_ns {
            opts.set_empty_ns(libc::CLONE_NEWNET as u32);
        }
        let log = self.work.as_ref().unwrap_or(&self.image).join(log_name);
        Ok(Request {
            opts,
            keep,
            log,
            _dirs: dirs,
        })
    }
}

/// A failed CRIU call, with the end of its log.
fn criu_failed(op: &'static str, err: CriuError, log: PathBuf) -> CkptError {
    if matches!(err, CriuError::NotFound(_) | CriuError::Spawn { .. }) {
        return CkptError::NoCriu { op, err };
    }
    let tail = criu::log_tail(&log);
    CkptError::Criu {
        op,
        err: criu::with_tail(err, &tail),
        tail,
        log,
    }
}

/// The VE being dumped.
pub struct DumpTarget<'a> {
    pub pid: i32,
    pub rootfs: &'a Path,
    /// The derived spec the VE was created from.
    pub spec: &'a Spec,
    /// The VE's cgroup path (as handed to libcontainer).
    pub cgroup_path: &'a Path,
}

/// Where and how a VE comes back.
pub struct RestoreTarget<'a> {
    pub rootfs: &'a Path,
    pub spec: &'a Spec,
    /// A scratch directory of the VE's own, for CRIU's root mount point.
    pub scratch: &'a Path,
    /// The network namespace to restore into, when it is external.
    pub netns: Option<&'a File>,
    /// Where a restored terminal's master goes.
    pub console_socket: Option<&'a Path>,
}

/// Where a restored VE's network namespace comes from. It is always kept out of the
/// image, as runc does for a namespace it made: CRIU would otherwise replay its links,
/// addresses, routes and firewall by running ip and iptables (tens of ms), and it cannot
/// dump a veth whose peer is on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetnsSource {
    /// The caller's namespace, named by path in the spec (podman).
    Path(PathBuf),
    /// The host's: the spec has no network namespace.
    Host,
    /// A new one, configured like at create (loopback up, vzrun networking if any).
    New,
}

pub fn netns_source(spec: &Spec) -> NetnsSource {
    let ns = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .and_then(|n| {
            n.iter()
                .find(|n| n.typ() == LinuxNamespaceType::Network)
                .cloned()
        });
    match ns {
        None => NetnsSource::Host,
        Some(n) => match n.path() {
            Some(p) => NetnsSource::Path(p.clone()),
            None => NetnsSource::New,
        },
    }
}

/// How CRIU treats the VE's cgroups (runc's words: soft, full, strict, ignore).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupsMode {
    Soft,
    Full,
    Strict,
    Ignore,
}

impl CgroupsMode {
    /// A mode by its name; empty is CRIU's default. The error names the problem only:
    /// the caller knows the setting it came from.
    pub fn parse(text: &str) -> Result<Option<CgroupsMode>, String> {
        Ok(Some(match text {
            "" => return Ok(None),
            "soft" => CgroupsMode::Soft,
            "full" => CgroupsMode::Full,
            "strict" => CgroupsMode::Strict,
            "ignore" => CgroupsMode::Ignore,
            other => {
                return Err(format!(
                    "invalid value {other:?} (want soft, full, strict or ignore)"
                ))
            }
        }))
    }

    fn rpc(self) -> rpc::Criu_cg_mode {
        match self {
            CgroupsMode::Soft => rpc::Criu_cg_mode::SOFT,
            CgroupsMode::Full => rpc::Criu_cg_mode::FULL,
            CgroupsMode::Strict => rpc::Criu_cg_mode::STRICT,
            CgroupsMode::Ignore => rpc::Criu_cg_mode::IGNORE,
        }
    }
}

/// Which namespaces are made empty: only the network namespace can be.
pub fn parse_empty_ns(names: &[String]) -> Result<bool, String> {
    for n in names {
        if !matches!(n.as_str(), "network" | "net") {
            return Err(format!("namespace {n:?} is not supported (only network)"));
        }
    }
    Ok(!names.is_empty())
}

/// Where a dump sends its pages: a CRIU page server's ADDRESS:PORT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageServerAddr {
    pub address: String,
    pub port: i32,
}

impl PageServerAddr {
    pub fn parse(text: &str) -> Result<PageServerAddr, String> {
        let bad = || format!("{text:?} is not ADDRESS:PORT");
        let (addr, port) = text.rsplit_once(':').ok_or_else(bad)?;
        Ok(PageServerAddr {
            address: addr.trim_matches(|c| c == '[' || c == ']').to_string(),
            port: port.parse().map_err(|_| bad())?,
        })
    }

    fn rpc(&self) -> rpc::Criu_page_server_info {
        let mut ps = rpc::Criu_page_server_info::new();
        ps.set_address(self.address.clone());
        ps.set_port(self.port);
        ps
    }
}

fn make_dir(path: &Path) -> Result<File, CkptError> {
    if let Err(e) = DirBuilder::new().recursive(true).mode(0o700).create(path) {
        return Err(CkptError::Io {
            what: "create",
            path: path.to_path_buf(),
            source: e,
        });
    }
    open_dir(path)
}

fn open_dir(path: &Path) -> Result<File, CkptError> {
    File::open(path).map_err(|source| CkptError::Io {
        what: "open",
        path: path.to_path_buf(),
        source,
    })
}

fn is_bind(m: &Mount) -> bool {
    m.typ().as_deref() == Some("bind")
        || m.options()
            .as_ref()
            .is_some_and(|o| o.iter().any(|x| x == "bind" || x == "rbind"))
}

fn has_masked_paths(spec: &Spec) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.masked_paths().as_ref())
        .is_some_and(|m| !m.is_empty())
}

/// External mounts as (key, host path): the bind mounts by destination, /dev/null for
/// masked paths, and on cgroup v1 the host's controller mounts that libcontainer binds.
/// `restore` maps each key to where the source lives now. A destination is named as the
/// mount table inside `rootfs` names it, its links followed (runc's key): a bind onto
/// `/data -> /mnt/data` is the mount at `/mnt/data`, and CRIU knows no other.
fn external_mounts(
    spec: &Spec,
    rootfs: &Path,
    bundle_dir: Option<&Path>,
    restore: bool,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for m in spec.mounts().as_deref().unwrap_or_default() {
        if is_bind(m) {
            let dest = crate::sys::fs::resolve_in_root(rootfs, m.destination())
                .display()
                .to_string();
            let val = if restore {
                match m.source() {
                    Some(s) if s.is_absolute() => s.display().to_string(),
                    Some(s) => bundle_dir
                        .map(|b| b.join(s))
                        .unwrap_or_else(|| s.clone())
                        .display()
                        .to_string(),
                    None => dest.clone(),
                }
            } else {
                dest.clone()
            };
            out.push((dest, val));
        } else if m.typ().as_deref() == Some("cgroup") {
            if let Ok(
                libcgroups::common::CgroupSetup::Legacy | libcgroups::common::CgroupSetup::Hybrid,
            ) = libcgroups::common::get_cgroup_setup()
            {
                for mp in libcgroups::v1::util::list_subsystem_mount_points().unwrap_or_default() {
                    let p = mp.display().to_string();
                    if p.starts_with("/sys/fs/cgroup") {
                        out.push((p.clone(), p));
                    }
                }
            }
        }
    }
    if has_masked_paths(spec) {
        out.push(("/dev/null".into(), "/dev/null".into()));
    }
    out.sort();
    out.dedup();
    out
}

/// Where each of the VE's cgroup v1 mounts is rooted in its hierarchy, beside CRIU's
/// images. libcontainer binds the VE's own cgroup of each hierarchy, not the hierarchy:
/// a restore that bound the host's mount points would show the VE every cgroup on the
/// host (other VEs' names, usage and limits), read-only but readable.
const CGROUP_ROOTS: &str = "vzrun-cgroup-roots.json";

/// (mount point as the VE sees it, root in the hierarchy) of each cgroup v1 mount of the
/// VE whose init is `pid`; `None` for the VE's own cgroup `own` (a restore under another
/// ID has another), a path for the others (the hierarchies libcgroups does not manage,
/// such as name=systemd, which libcontainer binds as the caller had them).
type CgroupRoots = Vec<(String, Option<String>)>;

fn cgroup_roots(pid: i32, own: &Path) -> CgroupRoots {
    crate::sys::mountinfo::read(Some(pid))
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.fstype == "cgroup")
        .map(|m| {
            (
                m.point.to_string_lossy().into_owned(),
                (m.root != own).then(|| m.root.to_string_lossy().into_owned()),
            )
        })
        .collect()
}

fn save_cgroup_roots(image: &Path, roots: &CgroupRoots) -> Result<(), CkptError> {
    let path = image.join(CGROUP_ROOTS);
    crate::sys::fs::save_json_list(&path, roots).map_err(|source| CkptError::Io {
        what: "write",
        path,
        source,
    })
}

/// The cgroup roots of the dump in `image`; a root that is not a clean absolute path is
/// dropped (its mount then stays as the host's mount point binds it).
fn load_cgroup_roots(image: &Path) -> CgroupRoots {
    std::fs::read(image.join(CGROUP_ROOTS))
        .ok()
        .and_then(|d| serde_json::from_slice::<CgroupRoots>(&d).ok())
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, root)| {
            root.as_deref()
                .is_none_or(|r| r.starts_with('/') && !r.split('/').any(|c| c == ".." || c == "."))
        })
        .collect()
}

/// Each external cgroup mount's source made the cgroup the dump had there: the VE's own
/// (`own`, its cgroup path now) or the other one recorded. The restore has made the VE's
/// cgroups (CRIU is in them) before CRIU mounts anything.
fn cgroup_sources(ext: &mut [(String, String)], roots: &CgroupRoots, own: Option<&Path>) {
    for (key, source) in ext.iter_mut() {
        let Some((_, root)) = roots.iter().find(|(point, _)| point == key) else {
            continue;
        };
        let root = match (root, own) {
            (Some(r), _) => Path::new(r.as_str()),
            (None, Some(own)) => own,
            (None, None) => continue,
        };
        let joined = Path::new(source.as_str()).join(root.strip_prefix("/").unwrap_or(root));
        *source = joined.display().to_string();
    }
}

fn ext_mnt(list: Vec<(String, String)>) -> Vec<rpc::Ext_mount_map> {
    list.into_iter()
        .map(|(k, v)| {
            let mut m = rpc::Ext_mount_map::new();
            m.set_key(k);
            m.set_val(v);
            m
        })
        .collect()
}

fn is_terminal(spec: &Spec) -> bool {
    spec.process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false)
}

/// What a dump reports besides its images.
#[derive(Debug, Clone, Copy)]
pub struct Dumped {
    /// From the freeze to CRIU's answer: how long the VE's processes did not run (with
    /// `leave_running`), or ran no more (without).
    pub frozen: std::time::Duration,
    /// How often the VE was thawed to let a task out of a vfork wait ([`settle_vfork`]).
    pub vfork_thaws: u32,
}

/// Most thaws a dump makes to let tasks out of vfork waits before it gives up.
const VFORK_TRIES: u32 = 20;
/// How long in all a dump waits, the VE thawed, for vfork children to exec or exit. A
/// spawn's child normally execs within microseconds; CRIU's own seize gives up after 10 s.
const VFORK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// Makes sure no task of the frozen cgroup at `cgroup` sits in a vfork wait (see
/// [`crate::sys::vfork`]): while one does, the cgroup is thawed until its child has
/// exec'd, then frozen again, a bounded number of times. Returns how many thaws it took;
/// the error names the task. The cgroup is frozen when this returns Ok.
fn settle_vfork(cgroup: &Path) -> Result<u32, String> {
    use crate::sys::vfork;
    let start = std::time::Instant::now();
    let mut thaws = 0;
    loop {
        let waiting = vfork::waiting(&cgroups::freezer_tasks(cgroup));
        let Some(&first) = waiting.first() else {
            return Ok(thaws);
        };
        if thaws >= VFORK_TRIES || start.elapsed() >= VFORK_PATIENCE {
            return Err(format!(
                "task {first} ({}) of the VE waits in vfork for its child to exec (as glibc's \
                 system() and posix_spawn() spawn), and CRIU cannot seize a task in that \
                 wait; it was still so after {thaws} thaws in {:.1} s",
                vfork::name(first),
                start.elapsed().as_secs_f64()
            ));
        }
        thaws += 1;
        tracing::info!(task = first, thaws, "thawing a task out of its vfork wait");
        if !cgroups::set_frozen(cgroup, false, std::time::Duration::from_secs(1)) {
            return Err("could not thaw the VE to let a task out of its vfork wait".into());
        }
        while waiting.iter().any(|&t| vfork::still_waiting(t)) && start.elapsed() < VFORK_PATIENCE {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        if !cgroups::set_frozen(cgroup, true, std::time::Duration::from_secs(10)) {
            return Err("could not freeze the VE again after a vfork wait".into());
        }
    }
}

/// The disk space the files of an image directory take (sparse files count what they
/// hold, as du counts it).
pub fn image_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.blocks() * 512)
                .sum()
        })
        .unwrap_or(0)
}

/// The CRIU configuration file of a container, as runc picks it: the `org.criu.config`
/// annotation names one (empty: none at all), else /etc/criu/runc.conf when it exists.
/// CRIU reads it after the request's options, so it can override them.
fn criu_config_file(spec: &Spec) -> Option<String> {
    match spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get("org.criu.config"))
    {
        Some(path) if path.is_empty() => None,
        Some(path) => Some(path.clone()),
        None => {
            let default = Path::new("/etc/criu/runc.conf");
            default.exists().then(|| default.display().to_string())
        }
    }
}

/// Dumps the VE's process tree into `o.criu.image`. The VE keeps running when CRIU fails,
/// and with `leave_running`; otherwise CRIU has killed its processes on success.
/// `at_freeze` runs once CRIU has started and waits for the request, just before the VE
/// is frozen (a migration freezes it itself there, and takes its link down); an error
/// from it ends the dump before CRIU has done anything.
pub fn dump(
    t: &DumpTarget,
    o: &DumpOpts,
    at_freeze: impl FnOnce() -> Result<(), String>,
) -> Result<Dumped, CkptError> {
    let Request {
        mut opts,
        mut keep,
        log,
        _dirs,
    } = o.criu.request(true, DUMP_LOG)?;
    if let Some(c) = criu_config_file(t.spec) {
        opts.set_config_file(c);
    }
    opts.set_pid(t.pid);
    opts.set_root(t.rootfs.display().to_string());
    opts.set_leave_running(o.leave_running);
    if o.skip_in_flight {
        opts.set_tcp_skip_in_flight(true);
    }
    opts.set_manage_cgroups(true);
    if let Some(m) = o.criu.manage_cgroups_mode {
        opts.set_manage_cgroups_mode(m.rpc());
    }
    if is_terminal(t.spec) {
        opts.set_orphan_pts_master(true);
    }
    if let Some(f) = cgroups::freezer_dir(t.cgroup_path) {
        opts.set_freeze_cgroup(f.display().to_string());
    }
    if let Some(ps) = &o.page_server {
        opts.ps = MessageField::some(ps.rpc());
    }
    if o.link_cut && netns_source(t.spec) == NetnsSource::New {
        opts.set_network_lock(rpc::Criu_network_lock_method::SKIP);
    }
    if let Some(fd) = o.status_fd {
        opts.set_status_fd(fd);
        keep.push(fd);
    }
    let left_out = if o.plain_tmpfs_external {
        plain_tmpfs::leave_out(t.pid, t.spec)
    } else {
        Vec::new()
    };
    plain_tmpfs::save(&o.criu.image, &left_out).map_err(|source| CkptError::Io {
        what: "write the list of left-out tmpfs mounts into",
        path: o.criu.image.clone(),
        source,
    })?;
    save_cgroup_roots(&o.criu.image, &cgroup_roots(t.pid, t.cgroup_path))?;
    let mut ext = external_mounts(t.spec, t.rootfs, None, false);
    ext.extend(left_out.iter().map(|p| (p.point.clone(), p.point.clone())));
    opts.ext_mnt = ext_mnt(ext);
    {
        let ino = std::fs::metadata(format!("/proc/{}/ns/net", t.pid))
            .map_err(|source| CkptError::Io {
                what: "stat",
                path: PathBuf::from(format!("/proc/{}/ns/net", t.pid)),
                source,
            })?
            .ino();
        opts.external.push(format!("net[{ino}]:{NETNS_KEY}"));
    }
    write_descriptors(&o.criu.image, t.pid)?;
    let files = external_stdio(t.pid);
    save_external_stdio(&o.criu.image, &files)?;
    opts.external.extend(files.into_iter().map(|(_, key)| key));
    let mut req = rpc::Criu_req::new();
    if o.pre_dump {
        req.set_type(rpc::Criu_req_type::PRE_DUMP);
        opts.set_track_mem(true);
    } else {
        req.set_type(rpc::Criu_req_type::DUMP);
    }
    req.opts = MessageField::some(opts);
    // Frozen only once CRIU has started (its exec and its read of the request are not
    // the VE's time). CRIU freezes the cgroup itself but then sleeps 100 ms before it
    // looks whether the freeze took; a cgroup found frozen is used as it is (and left
    // frozen).
    let mut frozen_at = None;
    let mut froze = None;
    let mut vfork_thaws = 0;
    let mut vfork_err = None;
    let dumped = criu::call(
        req,
        &keep,
        o.criu.stopper.as_ref(),
        |_| {
            at_freeze().map_err(CriuError::Notify)?;
            frozen_at = Some(std::time::Instant::now());
            froze = cgroups::freeze(t.cgroup_path, std::time::Duration::from_secs(10));
            // Only a frozen VE's tasks hold still to be looked at (CRIU freezes one that
            // did not freeze here itself, and thaws it again).
            if cgroups::is_frozen(t.cgroup_path) {
                vfork_thaws = settle_vfork(t.cgroup_path).map_err(|why| {
                    vfork_err = Some(why.clone());
                    CriuError::Notify(why)
                })?;
                if vfork_thaws > 0 {
                    // The VE ran while it was thawed: its frozen time starts now.
                    frozen_at = Some(std::time::Instant::now());
                }
            }
            if !left_out.is_empty() {
                plain_tmpfs::still_left_out(t.pid, &left_out).map_err(CriuError::Notify)?;
            }
            Ok(())
        },
        |_| Ok(()),
    );
    drop(froze);
    let frozen = frozen_at.map(|t| t.elapsed()).unwrap_or_default();
    let op = if o.pre_dump { "pre-dump" } else { "checkpoint" };
    if let Some(why) = vfork_err {
        return Err(CkptError::Vfork { op, why });
    }
    dumped.map_err(|err| criu_failed(op, err, log))?;
    tracing::debug!(frozen = %crate::logging::human(frozen), "{op} dumped");
    Ok(Dumped {
        frozen,
        vfork_thaws,
    })
}

/// The private area's image inside a checkpoint, for a VE that does not outlive it.
pub const PRIVATE_IMAGE: &str = "vzrun-private.img";

/// Moves a private area's image (renamed, or copied sparse across filesystems).
pub fn move_image(from: &Path, to: &Path) -> Result<(), CkptError> {
    if std::fs::rename(from, to).is_ok() {
        return Ok(());
    }
    copy_image(from, to)?;
    std::fs::remove_file(from).map_err(|source| CkptError::Io {
        what: "remove",
        path: from.to_path_buf(),
        source,
    })
}

/// Copies an image file keeping it sparse (and sharing extents where the filesystem can).
/// In-process rather than `cp --sparse=always`: the same copy the migration uses.
pub fn copy_image(from: &Path, to: &Path) -> Result<(), CkptError> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(|source| CkptError::Io {
            what: "create",
            path: parent.to_path_buf(),
            source,
        })?;
    }
    crate::sys::sparse::copy(from, to)?;
    Ok(())
}

const DESCRIPTORS: &str = "descriptors.json";
const META: &str = "vzrun.json";

/// What vzrun keeps beside CRIU's image: the VE's ID and MAC, so that a veth VE restored
/// under its own ID comes back with the address its neighbours have cached (a new link
/// would get a new one). A restore under another ID is a second VE: it gets its own.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Meta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// The beancounters' maxheld and failcnt at the dump, to carry on after a restore.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub counters: Vec<super::resources::Carried>,
}

impl Meta {
    pub fn save(&self, image: &Path) -> Result<(), CkptError> {
        let path = image.join(META);
        let text = serde_json::to_vec(self).map_err(|e| CkptError::Other(e.to_string()))?;
        std::fs::write(&path, text).map_err(|source| CkptError::Io {
            what: "write",
            path,
            source,
        })
    }

    /// Missing or unreadable (an image from another runtime): nothing to carry over.
    pub fn load(image: &Path) -> Meta {
        std::fs::read(image.join(META))
            .ok()
            .and_then(|d| serde_json::from_slice(&d).ok())
            .unwrap_or_default()
    }

    /// The recorded MAC, if it is one `io.vzrun.net.mac` would take (unicast, not all
    /// zeroes): an image may come from elsewhere, and a multicast or broadcast source
    /// address on the VE's link is what the MAC filter exists to stop.
    pub fn mac_bytes(&self) -> Option<[u8; 6]> {
        super::net::parse_mac(self.mac.as_deref()?).ok()
    }
}

/// What the init's fds 0-2 were (runc's descriptors.json), so a restore can hand CRIU
/// new ends for its stdio pipes.
fn write_descriptors(image: &Path, pid: i32) -> Result<(), CkptError> {
    let list: Vec<String> = (0..3)
        .map(|n| {
            std::fs::read_link(format!("/proc/{pid}/fd/{n}"))
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "/dev/null".into())
        })
        .collect();
    let path = image.join(DESCRIPTORS);
    let text = serde_json::to_string(&list).map_err(|e| CkptError::Other(e.to_string()))?;
    std::fs::write(&path, text).map_err(|source| CkptError::Io {
        what: "write",
        path,
        source,
    })
}

const EXTERNAL_STDIO: &str = "vzrun-stdio.json";

/// The init's fds 0-2 that are regular files on no mount the VE has (a system VE's
/// console log on the host), as CRIU names an external file (`file[MNT_ID:INODE]`, both
/// hex): CRIU cannot reopen such a file by path, so it leaves it out and is handed a new
/// one at restore. A file the VE can see is dumped as usual.
fn external_stdio(pid: i32) -> Vec<(usize, String)> {
    let ve_mounts: Vec<u64> = crate::sys::mountinfo::read(Some(pid))
        .unwrap_or_default()
        .iter()
        .map(|m| m.id)
        .collect();
    (0..3)
        .filter_map(|n| {
            let meta = std::fs::metadata(format!("/proc/{pid}/fd/{n}")).ok()?;
            if !meta.is_file() {
                return None;
            }
            let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{n}")).ok()?;
            let mnt_id: u64 = info
                .lines()
                .find_map(|l| l.strip_prefix("mnt_id:"))?
                .trim()
                .parse()
                .ok()?;
            if ve_mounts.contains(&mnt_id) {
                return None;
            }
            Some((n, format!("file[{mnt_id:x}:{:x}]", meta.ino())))
        })
        .collect()
}

fn save_external_stdio(image: &Path, files: &[(usize, String)]) -> Result<(), CkptError> {
    let path = image.join(EXTERNAL_STDIO);
    if files.is_empty() {
        return Ok(());
    }
    let text = serde_json::to_vec(files).map_err(|e| CkptError::Other(e.to_string()))?;
    std::fs::write(&path, text).map_err(|source| CkptError::Io {
        what: "write",
        path,
        source,
    })
}

fn load_external_stdio(image: &Path) -> Vec<(usize, String)> {
    std::fs::read(image.join(EXTERNAL_STDIO))
        .ok()
        .and_then(|d| serde_json::from_slice::<Vec<(usize, String)>>(&d).ok())
        .unwrap_or_default()
        .into_iter()
        .filter(|(n, _)| *n < 3)
        .collect()
}

fn read_descriptors(image: &Path) -> Vec<String> {
    std::fs::read(image.join(DESCRIPTORS))
        .ok()
        .and_then(|d| serde_json::from_slice(&d).ok())
        .unwrap_or_default()
}

/// Creates the destinations of bind mounts that the rootfs lacks, as create would have:
/// a restore into a fresh rootfs (podman's --import) has none of them, and CRIU mounts
/// onto what is there. A destination that resolves outside the rootfs is left alone.
fn make_mountpoints(rootfs: &Path, spec: &Spec) {
    let Ok(base) = std::fs::canonicalize(rootfs) else {
        return;
    };
    for m in spec.mounts().as_deref().unwrap_or_default() {
        if !is_bind(m) {
            continue;
        }
        // Where create mounted it: the destination's links followed inside the rootfs.
        let dest = crate::sys::fs::resolve_in_root(&base, m.destination());
        let (Some(parent), Some(name)) = (dest.parent(), dest.file_name()) else {
            continue;
        };
        // Made inside the rootfs one component at a time (openat2 in the root), never by
        // a host path walk: the destination and the rootfs's links are the VE's, and a
        // chain of links longer than the kernel follows would lead such a walk out.
        let dir = m
            .source()
            .as_ref()
            .is_some_and(|s| std::fs::metadata(s).is_ok_and(|md| md.is_dir()));
        let _ = if dir {
            crate::sys::fs::mkdir_in_root(&base, &dest)
        } else {
            crate::sys::fs::mkdir_in_root(&base, parent)
                .and_then(|()| crate::sys::fs::touch_in_root(&base, parent, name))
        };
    }
}

/// Where in a VE's directory a restore binds the rootfs as CRIU's root.
const CRIU_ROOT: &str = "criu-root";

/// Detaches what a restore mounted in the VE's directory `scratch` (CRIU's root, the
/// stand-in tmpfs mounts) and a killed vzrun left there. Removing the directory
/// through them would reach into the VE's rootfs by CRIU's root, a bind of it.
pub fn detach_leftover_mounts(scratch: &Path) {
    use nix::mount::{umount2, MntFlags};
    let Ok(entries) = std::fs::read_dir(scratch) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        if name == CRIU_ROOT || plain_tmpfs::is_standin(&name) {
            let p = e.path();
            // Stacked mounts come off one at a time; EINVAL once none is left.
            for _ in 0..8 {
                if umount2(&p, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW).is_err() {
                    break;
                }
            }
        }
    }
}

/// A bind mount of the rootfs that CRIU uses as the restored root; undone on drop.
struct RootMount {
    path: PathBuf,
}

impl RootMount {
    fn new(rootfs: &Path, scratch: &Path) -> Result<Self, CkptError> {
        use nix::mount::{mount, MsFlags};
        let path = scratch.join(CRIU_ROOT);
        std::fs::create_dir_all(&path).map_err(|source| CkptError::Io {
            what: "create",
            path: path.clone(),
            source,
        })?;
        // CRIU wants its root to be a mount point of its own.
        mount(
            Some(rootfs),
            &path,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| CkptError::Io {
            what: "bind-mount rootfs on",
            path: path.clone(),
            source: e.into(),
        })?;
        Ok(RootMount { path })
    }
}

impl Drop for RootMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.path, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// Restores a VE's process tree from `o.image`; returns the pid of its init. `started`
/// gets CRIU's pid before CRIU forks anything (the caller moves it into the VE's cgroup,
/// so every restored process is born there). `sockets_back` runs once CRIU has restored
/// every task and socket, before it lets the tasks run (CRIU's post-restore step): the
/// caller brings the VE's host link up there, so that what the tasks send first is not
/// dropped on a link still down (a restored TCP socket retransmits only after the
/// kernel's initial RTO of 1 s: CRIU restores no RTT state). On error CRIU has killed
/// what it restored.
pub fn restore(
    t: &RestoreTarget,
    o: &RestoreOpts,
    started: impl FnOnce(i32) -> Result<(), String>,
    mut sockets_back: impl FnMut() -> Result<(), String>,
) -> Result<i32, CkptError> {
    let Request {
        mut opts,
        mut keep,
        log,
        _dirs,
    } = o.criu.request(false, RESTORE_LOG)?;
    if let Some(c) = criu_config_file(t.spec) {
        opts.set_config_file(c);
    }
    make_mountpoints(t.rootfs, t.spec);
    let root = RootMount::new(t.rootfs, t.scratch)?;
    opts.set_root(root.path.display().to_string());
    opts.set_rst_sibling(true);
    opts.set_evasive_devices(true);
    opts.set_notify_scripts(true);
    opts.set_tcp_close(o.tcp_close);
    if let Some(p) = &o.lsm_profile {
        opts.set_lsm_profile(p.clone());
    }
    if let Some(c) = &o.lsm_mount_context {
        opts.set_lsm_mount_context(c.clone());
    }
    // The caller has made the VE's cgroup and put CRIU into it; CRIU leaves cgroups alone
    // unless asked, so the limits are the spec's, not the image's.
    match o.criu.manage_cgroups_mode {
        None | Some(CgroupsMode::Ignore) => {
            opts.set_manage_cgroups(false);
            opts.set_manage_cgroups_mode(rpc::Criu_cg_mode::IGNORE);
        }
        Some(m) => {
            opts.set_manage_cgroups(true);
            opts.set_manage_cgroups_mode(m.rpc());
        }
    }
    if is_terminal(t.spec) {
        opts.set_orphan_pts_master(true);
    }
    let mut ext = external_mounts(t.spec, t.rootfs, None, true);
    let own = t
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().as_deref());
    cgroup_sources(&mut ext, &load_cgroup_roots(&o.criu.image), own);
    let points = plain_tmpfs::load(&o.criu.image);
    let standins = if points.is_empty() {
        None
    } else {
        let (s, map) =
            plain_tmpfs::Standins::mount(t.scratch, &points, t.spec).map_err(|source| {
                CkptError::Io {
                    what: "mount a left-out tmpfs in",
                    path: t.scratch.to_path_buf(),
                    source,
                }
            })?;
        ext.extend(map);
        Some(s)
    };
    opts.ext_mnt = ext_mnt(ext);
    // A namespace vzrun makes for the restore is new and its host link stays down until
    // CRIU is done: there is no lock of CRIU's in it to undo (CRIU would run
    // iptables-restore twice, failing, for about 6 ms).
    if netns_source(t.spec) == NetnsSource::New {
        opts.set_network_lock(rpc::Criu_network_lock_method::SKIP);
    }
    if let Some(ns) = t.netns {
        let mut inh = rpc::Inherit_fd::new();
        inh.set_key(NETNS_KEY.into());
        inh.set_fd(ns.as_raw_fd());
        opts.inherit_fd.push(inh);
        keep.push(ns.as_raw_fd());
    }
    // The init's stdio pipes (a shim's or conmon's) died with the old caller: CRIU gets
    // ours instead, as runc does.
    let mut stdio: Vec<OwnedFd> = Vec::new();
    for (n, what) in read_descriptors(&o.criu.image).iter().enumerate().take(3) {
        if !what.starts_with("pipe:") {
            continue;
        }
        let Ok(fd) = dup_stdio(n) else {
            continue;
        };
        let mut inh = rpc::Inherit_fd::new();
        inh.set_key(what.clone());
        inh.set_fd(fd.as_raw_fd());
        opts.inherit_fd.push(inh);
        keep.push(fd.as_raw_fd());
        stdio.push(fd);
    }
    // Host files the init's stdio was (a system VE's console log) were left out of the
    // dump: the same fds of ours stand in for them, as for the pipes.
    for (n, key) in load_external_stdio(&o.criu.image) {
        let Ok(fd) = dup_stdio(n) else {
            continue;
        };
        let mut inh = rpc::Inherit_fd::new();
        inh.set_key(key);
        inh.set_fd(fd.as_raw_fd());
        opts.inherit_fd.push(inh);
        keep.push(fd.as_raw_fd());
        stdio.push(fd);
    }
    let mut req = rpc::Criu_req::new();
    req.set_type(rpc::Criu_req_type::RESTORE);
    req.opts = MessageField::some(opts);
    let console = t.console_socket.map(Path::to_path_buf);
    let resp = criu::call(
        req,
        &keep,
        o.criu.stopper.as_ref(),
        |pid| {
            started(pid).map_err(CriuError::Notify)?;
            match &o.lazy_daemon {
                Some(dir) => criu::lazy_socket_ready(dir),
                None => Ok(()),
            }
        },
        |n| {
            if n.script == "post-restore" {
                sockets_back().map_err(CriuError::Notify)?;
            }
            if n.script == "orphan-pts-master" {
                if let (Some(sock), Some(fd)) = (&console, n.fd) {
                    send_console(sock, fd).map_err(|e| {
                        CriuError::Notify(format!("console socket {}: {e}", sock.display()))
                    })?;
                }
            }
            Ok(())
        },
    )
    .map_err(|err| criu_failed("restore", err, log))?;
    drop(stdio);
    match &o.leave_mounts {
        Some(later) => later.keep((root, standins)),
        None => {
            let _step = tracing::debug_span!("restore unmount").entered();
            drop(standins);
            drop(root);
        }
    }
    let pid = resp.restore.pid();
    if pid <= 0 {
        return Err(CkptError::Other("criu restored no process".into()));
    }
    Ok(pid)
}

/// A copy of this process's stdin, stdout or stderr (`n` = 0, 1, 2).
fn dup_stdio(n: usize) -> std::io::Result<OwnedFd> {
    use std::os::fd::AsFd;
    match n {
        0 => std::io::stdin().as_fd().try_clone_to_owned(),
        1 => std::io::stdout().as_fd().try_clone_to_owned(),
        _ => std::io::stderr().as_fd().try_clone_to_owned(),
    }
}

/// Hands a terminal's master to the console socket, as `create --console-socket` does.
fn send_console(sock: &Path, fd: OwnedFd) -> std::io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let stream = std::os::unix::net::UnixStream::connect(sock)?;
    let fds = [fd.as_raw_fd()];
    let name = b"/dev/ptmx";
    sendmsg::<()>(
        stream.as_raw_fd(),
        &[std::io::IoSlice::new(name)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(std::io::Error::from)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_keeps_the_mac() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Meta::load(dir.path()).mac_bytes().is_none());
        Meta {
            id: Some("a".into()),
            mac: Some("02:18:4d:97:f9:52".into()),
            counters: vec![],
        }
        .save(dir.path())
        .unwrap();
        assert_eq!(
            Meta::load(dir.path()).mac_bytes(),
            Some([2, 0x18, 0x4d, 0x97, 0xf9, 0x52])
        );
        // An image's MAC that would put a broadcast or multicast source on the link, or
        // no address, is not taken.
        for bad in [
            "ff:ff:ff:ff:ff:ff",
            "01:00:5e:00:00:01",
            "00:00:00:00:00:00",
            "2:x",
        ] {
            let m = Meta {
                mac: Some(bad.into()),
                ..Meta::default()
            };
            assert!(m.mac_bytes().is_none(), "{bad}");
        }
    }

    #[test]
    fn cgroup_modes_follow_runc_words() {
        assert!(CgroupsMode::parse("").unwrap().is_none());
        assert_eq!(CgroupsMode::parse("soft").unwrap(), Some(CgroupsMode::Soft));
        assert_eq!(CgroupsMode::Soft.rpc(), rpc::Criu_cg_mode::SOFT);
        let err = CgroupsMode::parse("hard").unwrap_err();
        assert!(err.starts_with("invalid value \"hard\""), "{err}");
    }

    #[test]
    fn page_server_takes_address_and_port() {
        let ps = PageServerAddr::parse("192.0.2.1:27").unwrap().rpc();
        assert_eq!((ps.address(), ps.port()), ("192.0.2.1", 27));
        let ps = PageServerAddr::parse("[2001:db8::1]:27").unwrap();
        assert_eq!(ps.address, "2001:db8::1");
        assert!(PageServerAddr::parse("nope").is_err());
    }

    #[test]
    fn only_the_network_namespace_can_be_empty() {
        assert!(parse_empty_ns(&["network".into()]).unwrap());
        assert!(!parse_empty_ns(&[]).unwrap());
        assert!(parse_empty_ns(&["pid".into()]).is_err());
    }

    #[test]
    fn bind_mounts_are_external_by_destination() {
        let spec: Spec = serde_json::from_str(
            r#"{"ociVersion":"1.0.2","mounts":[
                {"destination":"/etc/resolv.conf","type":"bind","source":"/run/x/resolv.conf","options":["rbind"]},
                {"destination":"/proc","type":"proc","source":"proc"}],
               "linux":{"maskedPaths":["/proc/kcore"]}}"#,
        )
        .unwrap();
        let dump = external_mounts(&spec, Path::new("/nonexistent-vzt"), None, false);
        assert!(dump.contains(&("/etc/resolv.conf".into(), "/etc/resolv.conf".into())));
        assert!(dump.contains(&("/dev/null".into(), "/dev/null".into())));
        assert!(!dump.iter().any(|(k, _)| k == "/proc"));
        let rst = external_mounts(&spec, Path::new("/nonexistent-vzt"), None, true);
        assert!(rst.contains(&("/etc/resolv.conf".into(), "/run/x/resolv.conf".into())));
    }
}
