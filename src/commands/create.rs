//! `vzrun create`: prepare the VE on the host, then have libcontainer create the init
//! and leave it waiting for `start`.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;
use oci_spec::runtime::Spec;

use crate::cli::GlobalOpts;
use crate::runtime::executor::{lend_sys_admin, VzExecutor};
use crate::runtime::root::{Lock, Root};
use crate::runtime::state::Record;
use crate::ve;

#[derive(clap::Args, Debug)]
#[command(about = "Create a container")]
pub struct Args {
    /// Path to the root of the bundle directory
    #[arg(short = 'b', long, default_value = ".")]
    pub bundle: PathBuf,
    /// Path to an AF_UNIX socket which will receive the console's pseudoterminal master
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// File to write the process id to
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Do not use pivot root to jail the process inside rootfs
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Do not create a new session keyring for the container
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    /// Pass N additional file descriptors to the container
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: i32,
    pub id: String,
}

/// Everything `create` and `run` share.
pub struct CreateOpts<'a> {
    pub id: &'a str,
    pub bundle: &'a Path,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub no_pivot: bool,
    pub preserve_fds: i32,
    /// False only for a foreground `run` that relays stdio itself.
    pub detach: bool,
    /// The bundle's config, when the caller has already read it (`run` does, to see
    /// whether it needs a terminal): it is parsed once per start.
    pub spec: Option<Spec>,
}

pub fn run(args: Args, global: &GlobalOpts) -> Result<i32> {
    let root = Root::from_opts(global)?;
    create_container(
        &root,
        global,
        CreateOpts {
            id: &args.id,
            bundle: &args.bundle,
            console_socket: args.console_socket,
            pid_file: args.pid_file,
            no_pivot: args.no_pivot,
            preserve_fds: args.preserve_fds,
            detach: true,
            spec: None,
        },
    )?;
    Ok(0)
}

/// Reads a bundle's config.json; a parse error names the JSON path of the bad field.
pub fn load_spec(bundle: &Path) -> Result<Spec> {
    let path = bundle.join("config.json");
    let data = match fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!(
                "JSON specification file config.json not found in {}",
                bundle.display()
            )
        }
        Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
    };
    let de = &mut serde_json::Deserializer::from_slice(&data);
    serde_path_to_error::deserialize::<_, Spec>(de).map_err(|e| {
        let field = e.path().to_string();
        if field == "." {
            anyhow!("config.json: {}", e.inner())
        } else {
            anyhow!("config.json: {field}: {}", e.inner())
        }
    })
}

/// The cgroup path libcontainer gets: the spec's, a systemd `slice:prefix:name` turned
/// into the cgroupfs path systemd would use, or vzrun's own default.
fn cgroup_path(spec: &Spec, id: &str, tag: &str, systemd: bool) -> PathBuf {
    let given = spec.linux().as_ref().and_then(|l| l.cgroups_path().clone());
    match given {
        Some(p) if systemd && p.to_string_lossy().contains(':') => {
            let s = p.to_string_lossy().to_string();
            let parts: Vec<&str> = s.splitn(3, ':').collect();
            let slice = if parts[0].is_empty() {
                "system.slice"
            } else {
                parts[0]
            };
            let unit = match (parts.get(1), parts.get(2)) {
                (Some(prefix), Some(name)) if !prefix.is_empty() => {
                    format!("{prefix}-{name}.scope")
                }
                (_, Some(name)) => format!("{name}.scope"),
                _ => format!("vzrun-{id}.scope"),
            };
            PathBuf::from(format!("/{slice}/{unit}"))
        }
        Some(p) => p,
        None => PathBuf::from(format!("/vzrun-{tag}{id}")),
    }
}

/// Resolves `root.path` against the bundle and checks that it is a directory.
fn rootfs_of(spec: &Spec, bundle: &Path) -> Result<PathBuf> {
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| anyhow!("config.json: root: missing"))?;
    let path = if root.path().is_absolute() {
        root.path().clone()
    } else {
        bundle.join(root.path())
    };
    match fs::metadata(&path) {
        Ok(m) if m.is_dir() => Ok(path),
        Ok(_) => bail!(
            "config.json: root.path: rootfs ({}) is not a directory",
            path.display()
        ),
        Err(_) => bail!(
            "config.json: root.path: rootfs ({}) does not exist",
            path.display()
        ),
    }
}

/// runc creates a missing working directory inside the container; do the same on a
/// writable rootfs before libcontainer chdirs into it.
fn make_cwd(spec: &Spec, rootfs: &Path) {
    let readonly = spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false);
    let Some(cwd) = spec.process().as_ref().map(|p| p.cwd().clone()) else {
        return;
    };
    let safe = cwd.is_absolute()
        && cwd
            .components()
            .all(|c| !matches!(c, std::path::Component::ParentDir));
    if readonly || !safe {
        return;
    }
    let target = rootfs.join(cwd.strip_prefix("/").unwrap_or(&cwd));
    if !target.exists() {
        let _ = fs::create_dir_all(&target);
    }
}

/// A bundle read and checked, before anything exists on the host.
pub struct Loaded {
    pub bundle: PathBuf,
    pub spec: Spec,
    pub rootfs: PathBuf,
    pub ve_config: ve::VeConfig,
    pub lent: bool,
}

/// Reads and checks a bundle the same way for `create`, `run` and `restore`.
pub fn load_bundle(bundle: &Path, spec: Option<Spec>) -> Result<Loaded> {
    let bundle =
        fs::canonicalize(bundle).map_err(|e| anyhow!("bundle {}: {e}", bundle.display()))?;
    let mut spec = match spec {
        Some(s) => s,
        None => load_spec(&bundle)?,
    };
    if spec.process().is_none() {
        bail!("config.json: process: missing");
    }
    let rootfs = rootfs_of(&spec, &bundle)?;
    let ve_config = ve::config_from_spec(&spec)?;
    let has_seccomp = spec
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
        .is_some();
    let mut lent = false;
    if let Some(mut process) = spec.process().clone() {
        lent = lend_sys_admin(has_seccomp, &mut process);
        spec.set_process(Some(process));
    }
    Ok(Loaded {
        bundle,
        spec,
        rootfs,
        ve_config,
        lent,
    })
}

/// A claimed ID with vzrun's record of it.
pub struct Claimed {
    pub lock: Lock,
    pub ve_dir: PathBuf,
    pub record: Record,
}

pub fn claim(root: &Root, id: &str, loaded: &Loaded) -> Result<Claimed> {
    let lock = root.claim(id)?;
    Ok(Claimed {
        lock,
        ve_dir: root.ve_dir(id),
        record: Record {
            bundle: loaded.bundle.clone(),
            rootfs: loaded.rootfs.clone(),
            ve: Default::default(),
            lent_sys_admin: loaded.lent,
        },
    })
}

/// The spec libcontainer (or CRIU) gets: absolute rootfs, vzrun's cgroup path, and what
/// the VE layer prepares on the host; written to `<root>/.vzrun/<id>/config.json`.
pub fn derive_spec(
    root: &Root,
    global: &GlobalOpts,
    id: &str,
    loaded: &mut Loaded,
    claimed: &mut Claimed,
) -> Result<()> {
    let spec = &mut loaded.spec;
    if let Some(r) = spec.root().clone() {
        let mut r = r;
        r.set_path(loaded.rootfs.clone());
        spec.set_root(Some(r));
    }
    if let Some(linux) = spec.linux().clone() {
        let mut linux = linux;
        linux.set_cgroups_path(Some(cgroup_path(
            spec,
            id,
            &root.cgroup_tag(),
            global.systemd_cgroup,
        )));
        spec.set_linux(Some(linux));
    }
    claimed.record.save(&claimed.ve_dir)?;
    let ctx = ve::Ctx {
        root: &root.path,
        id,
        dir: &claimed.ve_dir,
    };
    let prepared = ve::prepare(&ctx, &loaded.ve_config, spec, &mut claimed.record.ve);
    claimed.record.save(&claimed.ve_dir)?;
    prepared?;
    // After prepare: a private area puts an overlay in front of the bundle's rootfs.
    if let Some(r) = spec.root() {
        make_cwd(spec, r.path());
    }
    spec.save(claimed.ve_dir.join("config.json"))
        .map_err(|e| anyhow!("write derived config: {e}"))?;
    Ok(())
}

/// Undoes a failed create or restore: the VE layer's host objects, a libcontainer
/// directory without state, and the claimed ID.
pub fn abandon(root: &Root, id: &str, claimed: Claimed) {
    ve::teardown(&claimed.record.ve);
    // libcontainer removes its directory itself, except when it failed before making
    // it; a stale one would make the ID look taken.
    let cdir = root.container_dir(id);
    if cdir.exists() && !cdir.join("state.json").exists() {
        let _ = fs::remove_dir_all(&cdir);
    }
    root.release(id);
    drop(claimed.lock);
}

/// Creates the container; on any failure nothing stays behind: libcontainer removes its
/// own directory and cgroup, and the VE layer's record drives the rest of the cleanup.
pub fn create_container(
    root: &Root,
    global: &GlobalOpts,
    opts: CreateOpts,
) -> Result<(Container, Lock)> {
    crate::runtime::root::validate_id(opts.id)?;
    let mut loaded = load_bundle(opts.bundle, opts.spec)?;
    let executor = VzExecutor::new(&loaded.spec, loaded.lent)?;
    let mut claimed = claim(root, opts.id, &loaded)?;
    let result = (|| -> Result<Container> {
        derive_spec(root, global, opts.id, &mut loaded, &mut claimed)?;
        let ve_dir = &claimed.ve_dir;
        let ctx = ve::Ctx {
            root: &root.path,
            id: opts.id,
            dir: ve_dir,
        };
        let builder = ContainerBuilder::new(opts.id.to_string(), SyscallType::default())
            .with_root_path(&root.path)
            .map_err(|e| anyhow!("{e}"))?
            .with_pid_file(opts.pid_file.clone())
            .map_err(|e| anyhow!("{e}"))?
            .with_console_socket(opts.console_socket.clone())
            .with_preserved_fds(opts.preserve_fds)
            .with_executor(executor);
        let mut container = builder
            .as_init(ve_dir)
            .with_systemd(false)
            .with_detach(opts.detach)
            .with_no_pivot(opts.no_pivot)
            .build()
            .map_err(|e| anyhow!("{}", describe(&e)))?;
        container.refresh_status().map_err(|e| anyhow!("{e}"))?;
        if let Some(pid) = container.pid() {
            let configured = ve::configure(
                &ctx,
                &loaded.ve_config,
                pid.as_raw(),
                &mut claimed.record.ve,
            );
            claimed.record.save(ve_dir)?;
            if let Err(e) = configured {
                let _ = container.delete(true);
                return Err(e.into());
            }
        }
        crate::logging::debug(&format!(
            "created {} (pid {:?}) from {}",
            opts.id,
            container.pid().map(|p| p.as_raw()),
            loaded.bundle.display()
        ));
        Ok(container)
    })();
    match result {
        Ok(container) => Ok((container, claimed.lock)),
        Err(e) => {
            abandon(root, opts.id, claimed);
            Err(e)
        }
    }
}

/// libcontainer's error chain, joined as runc joins causes.
pub fn describe(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_with_cgroup(path: Option<&str>) -> Spec {
        let mut spec = Spec::default();
        let mut linux = spec.linux().clone().unwrap();
        linux.set_cgroups_path(path.map(PathBuf::from));
        spec.set_linux(Some(linux));
        spec
    }

    #[test]
    fn default_cgroup_is_named_after_vzrun() {
        assert_eq!(
            cgroup_path(&spec_with_cgroup(None), "web1", "", false),
            PathBuf::from("/vzrun-web1")
        );
        assert_eq!(
            cgroup_path(&spec_with_cgroup(Some("/libpod_parent/x")), "x", "", false),
            PathBuf::from("/libpod_parent/x")
        );
    }

    #[test]
    fn systemd_paths_become_scopes() {
        assert_eq!(
            cgroup_path(
                &spec_with_cgroup(Some("system.slice:vzrun:abc")),
                "abc",
                "",
                true
            ),
            PathBuf::from("/system.slice/vzrun-abc.scope")
        );
    }

    #[test]
    fn bad_config_names_the_field() {
        let dir = std::env::temp_dir().join(format!("vzrun-spec-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("config.json"),
            r#"{"ociVersion":"1.0.2","process":{"cwd":"/","user":{"uid":"root","gid":0}}}"#,
        )
        .unwrap();
        let err = load_spec(&dir).unwrap_err().to_string();
        assert!(err.contains("process.user.uid"), "{err}");
        fs::write(dir.join("config.json"), "{").unwrap();
        assert!(load_spec(&dir)
            .unwrap_err()
            .to_string()
            .starts_with("config.json: "));
        fs::remove_file(dir.join("config.json")).unwrap();
        assert!(load_spec(&dir)
            .unwrap_err()
            .to_string()
            .contains("config.json not found"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
