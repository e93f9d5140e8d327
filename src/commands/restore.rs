//! `vzrun restore`: bring a checkpointed VE back (vzctl restore). The bundle is
//! prepared exactly as `create` prepares it (same derived spec, cgroup, network setup on
//! the host), CRIU restores the processes into it, and libcontainer's state is written so
//! that the VE is an ordinary container afterwards. Action scripts: pre-restore before
//! anything is made, post-restore once the VE runs.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use libcgroups::common::{CgroupManager, ControllerOpt};
use libcontainer::config::YoukiConfig;
use libcontainer::container::{Container, ContainerStatus};
use nix::unistd::Pid;

use crate::cli::GlobalOpts;
use crate::runtime::root::Root;
use crate::runtime::state::{oci_state, OciState, OCI_VERSION};
use crate::ve::actions::{Point, Runner};
use crate::ve::checkpoint::{self, RestoreOpts, RestoreTarget};

#[derive(clap::Args, Debug)]
#[command(about = "Restore a container from a previous checkpoint")]
pub struct Args {
    #[command(flatten)]
    pub criu: super::checkpoint::CriuFlags,
    /// Path to the bundle (default: the current directory)
    #[arg(short = 'b', long)]
    pub bundle: Option<PathBuf>,
    /// Detach from the container's process
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// File to write the process id to
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the terminal's master
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Do not use pivot_root (accepted for compatibility)
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Do not make vzrun a subreaper (accepted for compatibility)
    #[arg(long = "no-subreaper")]
    pub no_subreaper: bool,
    /// Close restored TCP connections instead of reviving them
    #[arg(long = "tcp-close")]
    pub tcp_close: bool,
    /// LSM profile for the restored processes (TYPE:NAME)
    #[arg(long = "lsm-profile")]
    pub lsm_profile: Option<String>,
    /// SELinux context for mounts of the restored VE
    #[arg(long = "lsm-mount-context")]
    pub lsm_mount_context: Option<String>,
    /// Keep the restored VE running when its post-restore action script fails
    #[arg(long = "keep-on-hook-failure")]
    pub keep_on_hook_failure: bool,
    pub id: Option<String>,
}

pub fn run(args: Args, global: &GlobalOpts) -> Result<i32> {
    let Some(id) = args.id.clone() else {
        bail!("\"restore\" requires exactly 1 argument(s)");
    };
    crate::runtime::root::validate_id(&id)?;
    if args.criu.tcp_established && args.tcp_close {
        bail!("--tcp-established and --tcp-close cannot be used together");
    }
    let rt = super::runtime(global);
    let root = rt.root.clone();
    let cwd = std::env::current_dir().context("current directory")?;
    let opts = RestoreOpts {
        criu: args.criu.opts()?,
        tcp_close: args.tcp_close,
        lsm_profile: args.lsm_profile.clone(),
        lsm_mount_context: args.lsm_mount_context.clone(),
    };
    if !opts.criu.image.is_dir() {
        bail!(
            "--image-path: {} is not a directory",
            opts.criu.image.display()
        );
    }
    let bundle = args.bundle.clone().unwrap_or(cwd);
    let mut loaded = crate::runtime::bundle::load(&bundle, None)?;
    let terminal = loaded
        .spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    if terminal && args.console_socket.is_none() {
        bail!("cannot allocate tty if runc will detach without setting console socket");
    }
    // Not current_exe(): a sealed vzrun runs from a memfd, which has no path of its own.
    let exe = std::path::PathBuf::from("/proc/self/exe");
    let meta = checkpoint::Meta::load(&opts.criu.image);
    if let Some(net) = loaded.ve_config.net.as_mut() {
        if net.mac.is_none() && meta.id.as_deref() == Some(id.as_str()) {
            net.mac = meta.mac_bytes();
        }
    }
    let mut claimed = crate::runtime::create::claim(&root, &id, &loaded)?;
    claimed.record.ve.carried = meta.counters;
    // A private area saved in the checkpoint: a copy goes where the VE's own image lives
    // (the checkpoint can be restored again), handed over for create's prepare to take
    // as the VE's own, as a migrated one is.
    let mut copied: Option<std::path::PathBuf> = None;
    let result = (|| -> Result<i32> {
        let saved = opts.criu.image.join(checkpoint::PRIVATE_IMAGE);
        if let Some(disk) = loaded.ve_config.disk.as_ref() {
            if disk.image.is_none() && saved.exists() {
                let target = crate::ve::private_image(&root.path, &id);
                if target.exists() {
                    bail!("private area {} exists already", target.display());
                }
                copied = Some(target.clone());
                checkpoint::copy_image(&saved, &target)?;
                crate::ve::disk::hand_over(&target)
                    .with_context(|| format!("mark {}", target.display()))?;
            }
        }
        rt.derive_spec(&id, &mut loaded, &mut claimed)?;
        let spec = &loaded.spec;
        let ve_dir = claimed.ve_dir.clone();
        let ctx = crate::ve::Ctx {
            root: &root.path,
            id: &id,
            dir: &ve_dir,
        };
        let creating = OciState {
            oci_version: OCI_VERSION.to_string(),
            id: id.clone(),
            pid: 0,
            status: "creating".into(),
            bundle: loaded.bundle.clone(),
            rootfs: loaded.rootfs.clone(),
            created: crate::runtime::state::format_time(None),
            owner: String::new(),
            annotations: spec.annotations().clone().filter(|a| !a.is_empty()),
        };
        loaded.ve_config.actions.run(
            Point::PreRestore,
            &Runner {
                hooks_dir: &rt.hooks_dir(),
                vzrun: &exe,
                root: &root.path,
                id: &id,
                state: serde_json::to_string(&creating)?,
            },
        )?;

        let netns = match checkpoint::netns_source(spec) {
            checkpoint::NetnsSource::Path(p) => std::fs::File::open(&p)
                .with_context(|| format!("open network namespace {}", p.display()))?,
            checkpoint::NetnsSource::Host => {
                std::fs::File::open("/proc/self/ns/net").context("open host network namespace")?
            }
            checkpoint::NetnsSource::New => {
                // Its host end stays down until CRIU has the sockets back.
                let made =
                    crate::ve::restore_netns(&ctx, &loaded.ve_config, &mut claimed.record.ve);
                claimed.record.save(&ve_dir)?;
                made?
            }
        };

        let linux = spec
            .linux()
            .as_ref()
            .ok_or_else(|| anyhow!("config.json: linux: missing"))?;
        let cgroup_path = linux
            .cgroups_path()
            .clone()
            .ok_or_else(|| anyhow!("no cgroup path"))?;
        let manager = crate::sys::cgroups::manager(&cgroup_path, &id)?;
        let resources = linux.resources().clone().unwrap_or_default();
        // CRIU and its helpers count in the VE's cgroup while they restore: a VE dumped at
        // its numproc limit would not fit back, so that limit comes once CRIU is done.
        let mut while_restoring = resources.clone();
        while_restoring.set_pids(None);
        let controller = |resources| ControllerOpt {
            resources,
            disable_oom_killer: false,
            oom_score_adj: spec.process().as_ref().and_then(|p| p.oom_score_adj()),
            freezer_state: None,
        };
        let rootfs = spec
            .root()
            .as_ref()
            .map(|r| r.path().clone())
            .unwrap_or_else(|| loaded.rootfs.clone());
        let restored = checkpoint::restore(
            &RestoreTarget {
                rootfs: &rootfs,
                spec,
                scratch: &ve_dir,
                netns: Some(&netns),
                console_socket: args.console_socket.as_deref(),
            },
            &opts,
            |criu_pid| {
                manager
                    .add_task(Pid::from_raw(criu_pid))
                    .map_err(|e| format!("cgroup: {e}"))?;
                manager
                    .apply(&controller(&while_restoring))
                    .map_err(|e| format!("cgroup limits: {e}"))
            },
        );
        let pid = match restored {
            Ok(pid) => pid,
            Err(e) => {
                let _ = manager.remove();
                return Err(e.into());
            }
        };
        let limited = manager
            .apply(&controller(&resources))
            .map_err(|e| anyhow!("cgroup limits: {e}"));
        if let Err(e) = limited.and_then(|()| write_state(&root, &id, &ve_dir, spec, pid)) {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), None);
            let _ = manager.remove();
            return Err(e);
        }
        if let Some(n) = &claimed.record.ve.net {
            crate::ve::net::set_host_link(n, true)?;
            crate::ve::net::announce(n);
        }
        if let Some(pf) = &args.pid_file {
            std::fs::write(pf, pid.to_string())
                .with_context(|| format!("write pid file {}", pf.display()))?;
        }
        Ok(pid)
    })();
    let pid = match result {
        Ok(pid) => pid,
        Err(e) => {
            rt.abandon(&id, claimed);
            if let Some(t) = &copied {
                let _ = std::fs::remove_file(t);
                let _ = std::fs::remove_file(crate::ve::disk::adopt_marker(t));
            }
            return Err(e);
        }
    };
    drop(claimed.lock);
    crate::logging::debug(&format!("restored {id} (pid {pid})"));

    let state = {
        let l = root.load(&id)?;
        serde_json::to_string(&oci_state(&l.container, &l.record, false))?
    };
    let hooked = loaded.ve_config.actions.run(
        Point::PostRestore,
        &Runner {
            hooks_dir: &rt.hooks_dir(),
            vzrun: &exe,
            root: &root.path,
            id: &id,
            state,
        },
    );
    if let Err(e) = hooked {
        if args.keep_on_hook_failure {
            bail!("{e} (the restored VE {id} keeps running: --keep-on-hook-failure)");
        }
        rt.delete(&id, true)?;
        bail!("{e} (the restored VE {id} was removed)");
    }
    if args.detach {
        return Ok(0);
    }
    Ok(crate::runtime::foreground::wait_exit(pid))
}

/// libcontainer's own state for the restored init, so that every other command loads
/// it like a created container.
fn write_state(
    root: &Root,
    id: &str,
    ve_dir: &std::path::Path,
    spec: &oci_spec::runtime::Spec,
    pid: i32,
) -> Result<()> {
    let cdir = root.container_dir(id);
    std::fs::create_dir(&cdir).with_context(|| format!("create {}", cdir.display()))?;
    YoukiConfig::from_spec(spec, id)
        .map_err(|e| anyhow!("container config: {e}"))?
        .save(&cdir)
        .map_err(|e| anyhow!("save container config: {e}"))?;
    let mut c = Container::new(id, ContainerStatus::Created, Some(pid), ve_dir, &cdir)
        .map_err(|e| anyhow!("container state: {e}"))?;
    c.set_status(ContainerStatus::Created)
        .set_creator(nix::unistd::geteuid().as_raw())
        .set_systemd(false)
        .set_annotations(spec.annotations().clone())
        .set_status(ContainerStatus::Running);
    c.save().map_err(|e| anyhow!("save container state: {e}"))?;
    Ok(())
}
