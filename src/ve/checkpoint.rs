//! Checkpoint (dump) and restore of a VE's processes with CRIU, over its RPC service.
//!
//! libcontainer can dump but not restore, and its dump sets CRIU's root to the bundle and
//! cannot treat a VE's own network namespace as external. Both directions are here, with
//! runc's choices: CRIU's root is the rootfs, bind mounts (and the /dev/null used for
//! masked paths, and the host's cgroup v1 mounts) are external mounts named by their
//! destination, and a network namespace that outlives the processes' network setup is
//! external: not dumped, and on restore handed to CRIU as an inherited descriptor.
//!
//! A VE with vzrun networking keeps its network namespace external too: the restore makes
//! a fresh namespace, configures it exactly as create does (links, addresses, routes,
//! host-side venet routes or bridge port), and CRIU puts the processes and their sockets
//! back into it. CRIU would otherwise try to dump the veth whose peer is on the host.

use std::fs::{DirBuilder, File};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Mount, Spec};
use protobuf::MessageField;

use super::criu::{self, rpc, CriuError};

/// CRIU's name for the external network namespace, as runc and crun name it, so images
/// taken by either runtime can be restored by the other where the rest matches.
pub const NETNS_KEY: &str = "extRootNetNS";
const DUMP_LOG: &str = "dump.log";
const RESTORE_LOG: &str = "restore.log";

#[derive(Debug, thiserror::Error)]
pub enum CkptError {
    #[error("{flag}: {problem}")]
    Flag { flag: String, problem: String },
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

/// The dump options callers pass (runc's flag set).
#[derive(Debug, Clone, Default)]
pub struct DumpOpts {
    pub image: PathBuf,
    pub work: Option<PathBuf>,
    pub parent: Option<PathBuf>,
    pub leave_running: bool,
    pub tcp_established: bool,
    pub ext_unix_sk: bool,
    pub shell_job: bool,
    pub file_locks: bool,
    pub pre_dump: bool,
    pub manage_cgroups_mode: Option<String>,
    pub empty_ns: Vec<String>,
    pub page_server: Option<String>,
    pub lazy_pages: bool,
    pub status_fd: Option<i32>,
    pub auto_dedup: bool,
}

/// The restore options callers pass.
#[derive(Debug, Clone, Default)]
pub struct RestoreOpts {
    pub image: PathBuf,
    pub work: Option<PathBuf>,
    pub parent: Option<PathBuf>,
    pub tcp_established: bool,
    pub tcp_close: bool,
    pub ext_unix_sk: bool,
    pub shell_job: bool,
    pub file_locks: bool,
    pub manage_cgroups_mode: Option<String>,
    pub empty_ns: Vec<String>,
    pub auto_dedup: bool,
    pub lazy_pages: bool,
    pub lsm_profile: Option<String>,
    pub lsm_mount_context: Option<String>,
}

/// The VE being dumped.
pub struct DumpTarget<'a> {
    pub pid: i32,
    pub rootfs: &'a Path,
    /// The derived spec the VE was created from.
    pub spec: &'a Spec,
    /// The VE's cgroup path (as handed to libcontainer).
    pub cgroup_path: &'a Path,
    /// True when the network namespace must stay out of the image (see the module doc).
    pub external_netns: bool,
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

/// Whether a VE's network namespace is kept out of the image: the caller made it (its
/// path is in the spec), or vzrun configures it.
pub fn netns_is_external(spec: &Spec, vzrun_net: bool) -> bool {
    vzrun_net || spec_netns_path(spec).is_some()
}

pub fn spec_netns_path(spec: &Spec) -> Option<PathBuf> {
    spec.linux()
        .as_ref()?
        .namespaces()
        .as_ref()?
        .iter()
        .find(|n| n.typ() == LinuxNamespaceType::Network)
        .and_then(|n| n.path().clone())
}

fn cg_mode(text: Option<&str>) -> Result<Option<rpc::Criu_cg_mode>, CkptError> {
    Ok(Some(match text {
        None | Some("") => return Ok(None),
        Some("soft") => rpc::Criu_cg_mode::SOFT,
        Some("full") => rpc::Criu_cg_mode::FULL,
        Some("strict") => rpc::Criu_cg_mode::STRICT,
        Some("ignore") => rpc::Criu_cg_mode::IGNORE,
        Some(other) => {
            return Err(CkptError::Flag {
                flag: "--manage-cgroups-mode".into(),
                problem: format!("invalid value {other:?} (want soft, full, strict or ignore)"),
            })
        }
    }))
}

fn empty_ns_flags(names: &[String]) -> Result<u32, CkptError> {
    let mut flags = 0u32;
    for n in names {
        flags |= match n.as_str() {
            "network" | "net" => libc::CLONE_NEWNET as u32,
            other => {
                return Err(CkptError::Flag {
                    flag: "--empty-ns".into(),
                    problem: format!("namespace {other:?} is not supported (only network)"),
                })
            }
        };
    }
    Ok(flags)
}

fn page_server(text: &str) -> Result<rpc::Criu_page_server_info, CkptError> {
    let bad = || CkptError::Flag {
        flag: "--page-server".into(),
        problem: format!("{text:?} is not ADDRESS:PORT"),
    };
    let (addr, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let port: i32 = port.parse().map_err(|_| bad())?;
    let mut ps = rpc::Criu_page_server_info::new();
    ps.set_address(addr.trim_matches(|c| c == '[' || c == ']').to_string());
    ps.set_port(port);
    Ok(ps)
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
/// `restore` maps each key to where the source lives now.
fn external_mounts(spec: &Spec, bundle_dir: Option<&Path>, restore: bool) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for m in spec.mounts().as_deref().unwrap_or_default() {
        let dest = m.destination().display().to_string();
        if is_bind(m) {
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

fn freezer_path(cgroup_path: &Path) -> Option<String> {
    use libcgroups::common::{get_cgroup_setup, CgroupSetup};
    let rel = cgroup_path.strip_prefix("/").unwrap_or(cgroup_path);
    match get_cgroup_setup().ok()? {
        CgroupSetup::Unified => Some(Path::new("/sys/fs/cgroup").join(rel).display().to_string()),
        _ => {
            let mp = libcgroups::v1::util::get_subsystem_mount_point(
                &libcgroups::v1::ControllerType::Freezer,
            )
            .ok()?;
            Some(mp.join(rel).display().to_string())
        }
    }
}

fn is_terminal(spec: &Spec) -> bool {
    spec.process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false)
}

/// Dumps the VE's process tree into `o.image`. The VE keeps running when CRIU fails,
/// and with `leave_running`; otherwise CRIU has killed its processes on success.
pub fn dump(t: &DumpTarget, o: &DumpOpts) -> Result<(), CkptError> {
    let image_dir = make_dir(&o.image)?;
    let work_dir = match &o.work {
        Some(w) => Some(make_dir(w)?),
        None => None,
    };
    let log_dir = o.work.clone().unwrap_or_else(|| o.image.clone());
    let mut opts = rpc::Criu_opts::new();
    let mut keep: Vec<RawFd> = vec![image_dir.as_raw_fd()];
    opts.set_images_dir_fd(image_dir.as_raw_fd());
    if let Some(w) = &work_dir {
        opts.set_work_dir_fd(w.as_raw_fd());
        keep.push(w.as_raw_fd());
    }
    opts.set_log_file(DUMP_LOG.into());
    opts.set_log_level(4);
    opts.set_pid(t.pid);
    opts.set_root(t.rootfs.display().to_string());
    opts.set_leave_running(o.leave_running);
    opts.set_tcp_established(o.tcp_established);
    opts.set_ext_unix_sk(o.ext_unix_sk);
    opts.set_shell_job(o.shell_job);
    opts.set_file_locks(o.file_locks);
    opts.set_auto_dedup(o.auto_dedup);
    opts.set_manage_cgroups(true);
    if let Some(m) = cg_mode(o.manage_cgroups_mode.as_deref())? {
        opts.set_manage_cgroups_mode(m);
    }
    if is_terminal(t.spec) {
        opts.set_orphan_pts_master(true);
    }
    if let Some(f) = freezer_path(t.cgroup_path) {
        opts.set_freeze_cgroup(f);
    }
    let empty = empty_ns_flags(&o.empty_ns)?;
    if empty != 0 {
        opts.set_empty_ns(empty);
    }
    if let Some(p) = &o.parent {
        opts.set_parent_img(p.display().to_string());
    }
    if let Some(ps) = &o.page_server {
        opts.ps = MessageField::some(page_server(ps)?);
    }
    if o.lazy_pages {
        opts.set_lazy_pages(true);
    }
    if let Some(fd) = o.status_fd {
        opts.set_status_fd(fd);
        keep.push(fd);
    }
    opts.ext_mnt = ext_mnt(external_mounts(t.spec, None, false));
    if t.external_netns {
        let ino = std::fs::metadata(format!("/proc/{}/ns/net", t.pid))
            .map_err(|source| CkptError::Io {
                what: "stat",
                path: PathBuf::from(format!("/proc/{}/ns/net", t.pid)),
                source,
            })?
            .ino();
        opts.external.push(format!("net[{ino}]:{NETNS_KEY}"));
    }
    write_descriptors(&o.image, t.pid)?;
    let mut req = rpc::Criu_req::new();
    if o.pre_dump {
        req.set_type(rpc::Criu_req_type::PRE_DUMP);
        opts.set_track_mem(true);
    } else {
        req.set_type(rpc::Criu_req_type::DUMP);
    }
    req.opts = MessageField::some(opts);
    let log = log_dir.join(DUMP_LOG);
    criu::call(req, &keep, |_| Ok(()), |_| Ok(())).map_err(|err| CkptError::Criu {
        op: if o.pre_dump { "pre-dump" } else { "checkpoint" },
        err,
        tail: criu::log_tail(&log),
        log,
    })?;
    Ok(())
}

const DESCRIPTORS: &str = "descriptors.json";

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

fn read_descriptors(image: &Path) -> Vec<String> {
    std::fs::read(image.join(DESCRIPTORS))
        .ok()
        .and_then(|d| serde_json::from_slice(&d).ok())
        .unwrap_or_default()
}

/// A bind mount of the rootfs that CRIU uses as the restored root; undone on drop.
struct RootMount {
    path: PathBuf,
}

impl RootMount {
    fn new(rootfs: &Path, scratch: &Path) -> Result<Self, CkptError> {
        use nix::mount::{mount, MsFlags};
        let path = scratch.join("criu-root");
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
/// so every restored process is born there). On error CRIU has killed what it restored.
pub fn restore(
    t: &RestoreTarget,
    o: &RestoreOpts,
    started: impl FnOnce(i32) -> Result<(), String>,
) -> Result<i32, CkptError> {
    let image_dir = open_dir(&o.image)?;
    let work_dir = match &o.work {
        Some(w) => Some(make_dir(w)?),
        None => None,
    };
    let log_dir = o.work.clone().unwrap_or_else(|| o.image.clone());
    let root = RootMount::new(t.rootfs, t.scratch)?;
    let mut opts = rpc::Criu_opts::new();
    let mut keep: Vec<RawFd> = vec![image_dir.as_raw_fd()];
    opts.set_images_dir_fd(image_dir.as_raw_fd());
    if let Some(w) = &work_dir {
        opts.set_work_dir_fd(w.as_raw_fd());
        keep.push(w.as_raw_fd());
    }
    opts.set_log_file(RESTORE_LOG.into());
    opts.set_log_level(4);
    opts.set_root(root.path.display().to_string());
    opts.set_rst_sibling(true);
    opts.set_evasive_devices(true);
    opts.set_notify_scripts(true);
    opts.set_tcp_established(o.tcp_established);
    opts.set_tcp_close(o.tcp_close);
    opts.set_ext_unix_sk(o.ext_unix_sk);
    opts.set_shell_job(o.shell_job);
    opts.set_file_locks(o.file_locks);
    opts.set_auto_dedup(o.auto_dedup);
    opts.set_lazy_pages(o.lazy_pages);
    if let Some(p) = &o.parent {
        opts.set_parent_img(p.display().to_string());
    }
    if let Some(p) = &o.lsm_profile {
        opts.set_lsm_profile(p.clone());
    }
    if let Some(c) = &o.lsm_mount_context {
        opts.set_lsm_mount_context(c.clone());
    }
    // The caller has made the VE's cgroup and put CRIU into it; CRIU leaves cgroups alone
    // unless asked, so the limits are the spec's, not the image's.
    match cg_mode(o.manage_cgroups_mode.as_deref())? {
        None | Some(rpc::Criu_cg_mode::IGNORE) => {
            opts.set_manage_cgroups(false);
            opts.set_manage_cgroups_mode(rpc::Criu_cg_mode::IGNORE);
        }
        Some(m) => {
            opts.set_manage_cgroups(true);
            opts.set_manage_cgroups_mode(m);
        }
    }
    let empty = empty_ns_flags(&o.empty_ns)?;
    if empty != 0 {
        opts.set_empty_ns(empty);
    }
    if is_terminal(t.spec) {
        opts.set_orphan_pts_master(true);
    }
    opts.ext_mnt = ext_mnt(external_mounts(t.spec, None, true));
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
    for (n, what) in read_descriptors(&o.image).iter().enumerate().take(3) {
        if !what.starts_with("pipe:") {
            continue;
        }
        let Ok(fd) = nix::unistd::dup(n as RawFd) else {
            continue;
        };
        // SAFETY: dup just returned this descriptor to us.
        let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let mut inh = rpc::Inherit_fd::new();
        inh.set_key(what.clone());
        inh.set_fd(fd.as_raw_fd());
        opts.inherit_fd.push(inh);
        keep.push(fd.as_raw_fd());
        stdio.push(fd);
    }
    let mut req = rpc::Criu_req::new();
    req.set_type(rpc::Criu_req_type::RESTORE);
    req.opts = MessageField::some(opts);
    let log = log_dir.join(RESTORE_LOG);
    let console = t.console_socket.map(Path::to_path_buf);
    let resp = criu::call(
        req,
        &keep,
        |pid| started(pid).map_err(CriuError::Notify),
        |n| {
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
    .map_err(|err| CkptError::Criu {
        op: "restore",
        err,
        tail: criu::log_tail(&log),
        log,
    })?;
    drop(root);
    drop(stdio);
    let pid = resp.restore.pid();
    if pid <= 0 {
        return Err(CkptError::Other("criu restored no process".into()));
    }
    Ok(pid)
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
    fn cgroup_modes_follow_runc_words() {
        assert!(cg_mode(None).unwrap().is_none());
        assert_eq!(
            cg_mode(Some("soft")).unwrap(),
            Some(rpc::Criu_cg_mode::SOFT)
        );
        let err = cg_mode(Some("hard")).unwrap_err().to_string();
        assert!(
            err.starts_with("--manage-cgroups-mode: invalid value \"hard\""),
            "{err}"
        );
    }

    #[test]
    fn page_server_takes_address_and_port() {
        let ps = page_server("192.0.2.1:27").unwrap();
        assert_eq!((ps.address(), ps.port()), ("192.0.2.1", 27));
        let ps = page_server("[2001:db8::1]:27").unwrap();
        assert_eq!(ps.address(), "2001:db8::1");
        assert!(page_server("nope").is_err());
    }

    #[test]
    fn only_the_network_namespace_can_be_empty() {
        assert_eq!(
            empty_ns_flags(&["network".into()]).unwrap(),
            libc::CLONE_NEWNET as u32
        );
        assert!(empty_ns_flags(&["pid".into()]).is_err());
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
        let dump = external_mounts(&spec, None, false);
        assert!(dump.contains(&("/etc/resolv.conf".into(), "/etc/resolv.conf".into())));
        assert!(dump.contains(&("/dev/null".into(), "/dev/null".into())));
        assert!(!dump.iter().any(|(k, _)| k == "/proc"));
        let rst = external_mounts(&spec, None, true);
        assert!(rst.contains(&("/etc/resolv.conf".into(), "/run/x/resolv.conf".into())));
    }
}
