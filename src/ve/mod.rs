//! Virtual Environment features layered on an OCI container: configuration from
//! `io.vzrun.` annotations, host-side setup around libcontainer's create, and the
//! matching teardown. One submodule per concern.
//!
//! Every setup step records what it made in [`VeRecord`] before it makes the next thing,
//! so that [`teardown`] can remove exactly that, whether called by `delete` or by a create
//! that failed halfway.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType, Mount, Spec};
use serde::{Deserialize, Serialize};

pub mod actions;
pub mod annotations;
pub mod checkpoint;
pub mod disk;
pub mod keys;
pub mod live;
pub mod migrate;
pub mod net;
pub mod plain_tmpfs;
pub mod policy;
pub mod proc_view;
pub mod resources;
pub mod system;
pub mod template;
pub mod view;

pub use annotations::VeConfig;

/// The reverse-DNS prefix of every VE setting.
pub const PREFIX: &str = "io.vzrun.";

#[derive(Debug, thiserror::Error)]
pub enum VeError {
    #[error("annotation {key}: {problem}")]
    Annotation { key: String, problem: String },
    /// A change to a running VE that cannot be made, naming its setting.
    #[error("{setting}: {problem}")]
    Setting {
        setting: live::Setting,
        problem: String,
    },
    /// A step of `ve set` that failed after others had been made: `put_back` names the
    /// settings undone, `left` those that could not be (with why).
    #[error("{step} failed: {problem}{}", live::undo_summary(put_back, left))]
    Failed {
        step: live::Setting,
        problem: String,
        put_back: Vec<live::Setting>,
        left: Vec<(live::Setting, String)>,
    },
    #[error(transparent)]
    Net(#[from] net::NetError),
    /// A system call or file operation of the VE layer failed; `step` says which.
    #[error("{step}: {source}")]
    Io {
        step: String,
        source: std::io::Error,
    },
    /// Something the VE layer will not do in the state it found (not a setting's value).
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    ProcView(#[from] proc_view::ProcViewError),
    #[error(transparent)]
    Loop(#[from] crate::sys::loopdev::LoopError),
    #[error(transparent)]
    Tool(#[from] crate::sys::process::ToolError),
}

impl VeError {
    /// The failure of `step`, from an I/O error or an errno.
    pub fn io(step: impl Into<String>, source: impl Into<std::io::Error>) -> Self {
        VeError::Io {
            step: step.into(),
            source: source.into(),
        }
    }
}

/// A bad value of the annotation `io.vzrun.KEY`.
pub(crate) fn bad(key: &str, problem: impl Into<String>) -> VeError {
    VeError::Annotation {
        key: format!("{PREFIX}{key}"),
        problem: problem.into(),
    }
}

/// What the VE layer made on the host for one container.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct VeRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<net::NetRecord>,
    /// The hostname the VE was given (OCI `hostname`, or `ve set --hostname`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// RLIMIT_NOFILE from io.vzrun.numfile, shown as numfile's barrier by `ve stat`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numfile: Option<u64>,
    /// The private area (image, loop device, mounts), when io.vzrun.diskspace asked for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<disk::DiskRecord>,
    /// Beancounters' maxheld and failcnt from before a restore (or a migration): the new
    /// cgroup counts from zero, and `ve stat` adds these so the counts carry on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub carried: Vec<resources::Carried>,
    /// The block device (major, minor) that I/O limits apply to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_dev: Option<(u64, u64)>,
    /// The LXCFS files bound over the VE's /proc (io.vzrun.proc=virtual).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proc_view: Option<proc_view::Binds>,
}

/// vzrun's data directory: VE disk images (and OS templates) live here, on disk rather
/// than under the state root, which is often a tmpfs.
pub fn data_dir() -> PathBuf {
    match std::env::var_os("VZRUN_DATA_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from("/var/lib/vzrun"),
    }
}

/// Where a VE's private area image lives unless the user named one: per state root and
/// ID, so two roots on one host never share an image, and named with a host secret, so
/// that nobody without root on the host can guess (and so name) another VE's image.
/// The same VE gets the same name on this host (a restore and a migration put the image
/// there before the VE exists).
pub fn private_image(root: &Path, id: &str) -> PathBuf {
    let key = host_key();
    let h = crate::sys::hash::short(&[&key, root.as_os_str().as_encoded_bytes(), id.as_bytes()]);
    data_dir()
        .join("private")
        .join(format!("{id}-{h:016x}.img"))
}

/// 32 random bytes kept in the data directory (0600): made once per host, written whole
/// under a temporary name and linked into place, so a concurrent reader sees all or none.
fn host_key() -> Vec<u8> {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let dir = data_dir();
    let path = dir.join(".key");
    let read = || std::fs::read(&path).ok().filter(|k| k.len() == 32);
    if let Some(k) = read() {
        return k;
    }
    let mut key = vec![0u8; 32];
    let tmp = dir.join(format!(".key.{}", std::process::id()));
    let _ = std::fs::File::open("/dev/urandom")
        .and_then(|mut r| r.read_exact(&mut key))
        .and_then(|_| crate::sys::fs::private_dir(&dir))
        .and_then(|_| {
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
        })
        .and_then(|mut f| f.write_all(&key))
        // Fails when another vzrun linked its key first: that one counts.
        .and_then(|_| std::fs::hard_link(&tmp, &path));
    let _ = std::fs::remove_file(&tmp);
    read().unwrap_or(key)
}

/// Where a VE lives on the host.
pub struct Ctx<'a> {
    pub root: &'a Path,
    pub id: &'a str,
    pub dir: &'a Path,
}

/// Reads and checks the VE settings of a spec; unknown `io.vzrun.` keys are errors.
pub fn config_from_spec(spec: &Spec) -> Result<VeConfig, VeError> {
    let empty = HashMap::new();
    VeConfig::parse(spec.annotations().as_ref().unwrap_or(&empty))
}

fn netns_path(spec: &Spec) -> Option<PathBuf> {
    spec.linux()
        .as_ref()?
        .namespaces()
        .as_ref()?
        .iter()
        .find(|n| n.typ() == LinuxNamespaceType::Network)
        .and_then(|n| n.path().clone())
}

/// Host-side work before libcontainer creates the init; adjusts the spec it is handed.
/// `save` writes the record down; it is called before each step that makes something.
pub fn prepare(
    ctx: &Ctx,
    config: &VeConfig,
    spec: &mut Spec,
    record: &mut VeRecord,
    save: &mut dyn FnMut(&VeRecord) -> Result<(), VeError>,
) -> Result<(), VeError> {
    record.hostname = spec.hostname().clone();
    // What the host must allow is checked before anything is made, so that a refused
    // address, bridge or MAC leaves nothing to tear down.
    if let Some(netc) = &config.net {
        net::preflight(netc)?;
    }
    if let Some(d) = &config.disk {
        let Some(mut root) = spec.root().clone() else {
            return Err(VeError::Refused(
                "private area: the spec has no root".into(),
            ));
        };
        let mut snapshot = record.clone();
        let rec = record.disk.insert(disk::DiskRecord::default());
        let image = private_image(ctx.root, ctx.id);
        let mut step = |d: &disk::DiskRecord| {
            snapshot.disk = Some(d.clone());
            save(&snapshot)
        };
        let rootfs = disk::prepare(d, ctx.dir, &image, root.path(), rec, &mut step)?;
        root.set_path(rootfs);
        spec.set_root(Some(root));
    }
    // A system VE is a bundle of `ve create`, which always sets io.vzrun.sysctl.
    proc_view::prepare(
        &config.proc,
        config.system.is_some(),
        spec,
        &mut record.proc_view,
    )?;
    if let Some(r) = &config.resources {
        if r.needs_io_device() {
            record.io_dev = Some(io_device(spec, record)?);
        }
        r.apply_to_spec(spec, record.io_dev)?;
        record.numfile = r.numfile;
    }
    let Some(netc) = &config.net else {
        return Ok(());
    };
    let mut nrec = net::NetRecord {
        caller_netns: netns_path(spec),
        ..Default::default()
    };
    if let Some(mut linux) = spec.linux().clone() {
        let mut nss = linux.namespaces().clone().unwrap_or_default();
        if !nss.iter().any(|n| n.typ() == LinuxNamespaceType::Network) {
            let mut ns = LinuxNamespace::default();
            ns.set_typ(LinuxNamespaceType::Network);
            nss.push(ns);
            linux.set_namespaces(Some(nss));
            spec.set_linux(Some(linux));
        }
    }
    // The VE always gets its own resolv.conf, so that `ve set --nameserver` can change it
    // later even on a read-only or shared rootfs; without DNS settings it starts as a
    // copy of the rootfs's file.
    let own = spec.root().as_ref().map(|r| r.path().clone());
    let text = net::resolv_conf(netc)
        .or_else(|| {
            // The image's own file, read as the VE sees it (a link in the image must
            // not make vzrun copy a host file into the VE).
            own.and_then(|root| {
                crate::sys::fs::read_in_root(&root, Path::new("/etc/resolv.conf")).ok()
            })
            .map(|b| String::from_utf8_lossy(&b).into_owned())
        })
        .unwrap_or_default();
    {
        let path = ctx.dir.join("resolv.conf");
        std::fs::write(&path, text)
            .map_err(|e| VeError::io(format!("write {}", path.display()), e))?;
        let mut m = Mount::default();
        m.set_destination(PathBuf::from("/etc/resolv.conf"));
        m.set_typ(Some("bind".to_string()));
        m.set_source(Some(path.clone()));
        m.set_options(Some(vec!["rbind".to_string(), "rw".to_string()]));
        let mut mounts = spec.mounts().clone().unwrap_or_default();
        mounts.retain(|x| x.destination() != Path::new("/etc/resolv.conf"));
        mounts.push(m);
        spec.set_mounts(Some(mounts));
        nrec.resolv_conf = Some(path);
    }
    record.net = Some(nrec);
    Ok(())
}

/// Host-side work once the init exists and waits for `start`: its namespaces are there
/// to configure, and the user's process has not run yet.
pub fn configure(
    ctx: &Ctx,
    config: &VeConfig,
    pid: i32,
    record: &mut VeRecord,
    save: &mut dyn FnMut(&VeRecord) -> Result<(), VeError>,
) -> Result<(), VeError> {
    // What the network step saves: the record as it is, with the network part as it grows
    // (cloned only for a VE with a network).
    let mut snapshot = record.net.is_some().then(|| record.clone());
    if let (Some(netc), Some(nrec), Some(snap)) =
        (&config.net, record.net.as_mut(), snapshot.as_mut())
    {
        net::setup(netc, ctx.root, ctx.id, pid, nrec, &mut net_step(snap, save))?;
    }
    if let Some(p) = config.resources.as_ref().and_then(|r| r.ioprio) {
        resources::set_process_ioprio(pid, p)
            .map_err(|e| VeError::io(format!("{PREFIX}ioprio: set the init's I/O priority"), e))?;
    }
    if let Some(sys) = &config.system {
        system::configure(pid, sys)?;
    }
    Ok(())
}

/// Saves `snapshot` with the network record it is given: the network setup's way to
/// record each host object before it makes it.
fn net_step<'a>(
    snapshot: &'a mut VeRecord,
    save: &'a mut dyn FnMut(&VeRecord) -> Result<(), VeError>,
) -> impl FnMut(&net::NetRecord) -> Result<(), net::NetError> + 'a {
    move |n| {
        snapshot.net = Some(n.clone());
        save(snapshot).map_err(|e| net::NetError::Record(e.to_string()))
    }
}

/// Removes everything the record names. Safe to call more than once.
pub fn teardown(record: &VeRecord) {
    if let Some(n) = &record.net {
        net::teardown(n);
    }
    if let Some(d) = &record.disk {
        disk::teardown(d);
    }
}

/// The whole-disk device under the VE's files: its private area's loop device, else the
/// disk holding the bundle's rootfs. I/O limits are per device in both cgroup versions.
pub fn io_device(spec: &Spec, record: &VeRecord) -> Result<(u64, u64), VeError> {
    use nix::sys::stat::{major, minor, stat};
    if let Some(dev) = record.disk.as_ref().and_then(|d| d.loop_dev.as_ref()) {
        let st =
            stat(dev.as_path()).map_err(|e| VeError::io(format!("stat {}", dev.display()), e))?;
        return Ok((major(st.st_rdev), minor(st.st_rdev)));
    }
    let root = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .unwrap_or_default();
    let st =
        stat(root.as_path()).map_err(|e| VeError::io(format!("stat {}", root.display()), e))?;
    let (ma, mi) = (major(st.st_dev), minor(st.st_dev));
    // A partition's limits belong on its disk: /sys/dev/block/M:m/partition marks one.
    let sys = PathBuf::from(format!("/sys/dev/block/{ma}:{mi}"));
    if !sys.exists() {
        return Err(bad(
            "iolimit",
            format!(
                "the rootfs {} is not on a block device (device {ma}:{mi}); give the VE a private area with io.vzrun.diskspace",
                root.display()
            ),
        ));
    }
    if sys.join("partition").exists() {
        if let Ok(parent) = std::fs::read_to_string(sys.join("../dev")) {
            if let Some((a, b)) = parent.trim().split_once(':') {
                if let (Ok(a), Ok(b)) = (a.parse(), b.parse()) {
                    return Ok((a, b));
                }
            }
        }
    }
    Ok((ma, mi))
}

/// Whether checkpoint/restore can work on this host (CRIU present and `criu check`
/// passing; the answer is cached).
pub fn checkpoint_available() -> bool {
    crate::sys::criu::available()
}

/// For a restore: a new network namespace for the VE, configured before CRIU puts the
/// processes back into it (create configures it once the init exists instead): loopback
/// up, and the VE's networking when it has any, with its host end down until the caller
/// calls [`net::set_host_link`] once the sockets are back.
pub fn restore_netns(
    ctx: &Ctx,
    config: &VeConfig,
    record: &mut VeRecord,
    save: &mut dyn FnMut(&VeRecord) -> Result<(), VeError>,
) -> Result<std::fs::File, VeError> {
    let ns = net::fresh_netns()?;
    let mut snapshot = record.clone();
    if let (Some(netc), Some(nrec)) = (&config.net, record.net.as_mut()) {
        let path = PathBuf::from(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&ns)
        ));
        let mut step = net_step(&mut snapshot, save);
        net::setup_at(netc, ctx.root, ctx.id, &path, nrec, false, &mut step)?;
    }
    Ok(ns)
}

/// Annotations from `(key without prefix, value)` pairs, for the concerns' unit tests.
#[cfg(test)]
pub fn test_annotations(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (format!("{PREFIX}{k}"), v.to_string()))
        .collect()
}
