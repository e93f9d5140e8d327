//! Restore: bring a checkpointed VE back (vzctl restore), for `restore` and for a
//! migration's receiving end alike. The bundle is prepared exactly as create prepares it
//! (same derived spec, cgroup, network setup on the host), CRIU restores the processes
//! into it, and libcontainer's state is written so that the VE is an ordinary container
//! afterwards. Action scripts: pre-restore before anything is made, post-restore once the
//! VE runs. A failed restore leaves nothing behind.

use std::fs::File;
use std::path::{Path, PathBuf};

use libcgroups::common::{CgroupManager, ControllerOpt};
use libcontainer::config::YoukiConfig;
use libcontainer::container::{Container, ContainerStatus};
use nix::unistd::Pid;
use oci_spec::runtime::Spec;

use crate::runtime::bundle::{self, Bundle};
use crate::runtime::checkpoint::run_action;
use crate::runtime::create::{claim, Claimed};
use crate::runtime::error::{Error, Result};
use crate::runtime::foreground::wait_exit;
use crate::runtime::root::validate_id;
use crate::runtime::state::{oci_state, OciState, OCI_VERSION};
use crate::runtime::Runtime;
use crate::ve::actions::Point;
use crate::ve::checkpoint::{self, NetnsSource, RestoreOpts, RestoreTarget};

/// What `restore` and a migration's receiving end take.
pub struct RestoreOptions {
    pub id: String,
    pub bundle: PathBuf,
    pub criu: RestoreOpts,
    /// Where a restored terminal's master goes.
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    /// Return once the VE runs instead of waiting for its init to exit.
    pub detach: bool,
    /// Keep the restored VE when its post-restore action script fails.
    pub keep_on_hook_failure: bool,
    /// The longest any action script may run, below the VE's own timeout (a
    /// migration's destination, which its source waits for).
    pub action_limit: Option<std::time::Duration>,
    /// The administrator made this bundle (a system VE resumed in place): the host
    /// policy does not bound it, as at its `ve start`.
    pub trusted: bool,
}

impl Runtime {
    /// Returns the init's exit status in the foreground, 0 when detached.
    pub fn restore(&self, opts: RestoreOptions) -> Result<i32> {
        let id = opts.id.as_str();
        let _step = tracing::debug_span!("restore", id).entered();
        validate_id(id)?;
        let mut loaded = bundle::load(&opts.bundle, None)?;
        if let Some(max) = opts.action_limit {
            loaded.ve_config.actions.cap(max);
        }
        // A restored (or migrated-in) VE asks for the same host resources a created one
        // does: this host's policy decides.
        if !opts.trusted {
            self.check_policy(&loaded)?;
        }
        let terminal = loaded
            .spec
            .process()
            .as_ref()
            .and_then(|p| p.terminal())
            .unwrap_or(false);
        if terminal && opts.console_socket.is_none() {
            return Err(Error::Config(
                "cannot allocate tty if runc will detach without setting console socket".into(),
            ));
        }
        let meta = checkpoint::Meta::load(&opts.criu.criu.image);
        if let Some(net) = loaded.ve_config.net.as_mut() {
            if net.mac.is_none() && meta.id.as_deref() == Some(id) {
                net.mac = meta.mac_bytes();
            }
        }
        let mut claimed = claim(&self.root, id, &loaded)?;
        claimed.record.ve.carried = meta.counters;
        // A private area saved in the checkpoint: a copy goes where the VE's own image
        // lives (the checkpoint can be restored again), handed over for create's prepare
        // to take as the VE's own, as a migrated one is.
        let mut copied: Option<PathBuf> = None;
        let result = self.restore_claimed(&opts, &mut loaded, &mut claimed, &mut copied);
        let pid = match result {
            Ok(pid) => pid,
            Err(e) => {
                // Mounts left for later sit in the VE's directory, which goes now: down
                // first, or its removal would reach through them into the rootfs.
                if let Some(later) = &opts.criu.leave_mounts {
                    later.release();
                }
                self.abandon(id, claimed);
                if let Some(t) = &copied {
                    let _ = std::fs::remove_file(t);
                    let _ = std::fs::remove_file(crate::ve::disk::adopt_marker(t));
                }
                return Err(e);
            }
        };
        drop(claimed.lock);
        tracing::debug!(pid, "restored {id}");

        let state = {
            let l = self.root.load(id)?;
            oci_state(&l.container, &l.record, false)
        };
        let hooked = run_action(
            self,
            id,
            &loaded.ve_config.actions,
            Point::PostRestore,
            &state,
        );
        if let Err(e) = hooked {
            if opts.keep_on_hook_failure {
                return Err(Error::Step(format!(
                    "{e} (the restored VE {id} keeps running: --keep-on-hook-failure)"
                )));
            }
            if let Some(later) = &opts.criu.leave_mounts {
                later.release();
            }
            self.delete(id, true)?;
            return Err(Error::Step(format!(
                "{e} (the restored VE {id} was removed)"
            )));
        }
        if opts.detach {
            return Ok(0);
        }
        Ok(wait_exit(pid))
    }

    /// Everything between claiming the ID and a running VE; the caller undoes it on error.
    fn restore_claimed(
        &self,
        opts: &RestoreOptions,
        loaded: &mut Bundle,
        claimed: &mut Claimed,
        copied: &mut Option<PathBuf>,
    ) -> Result<i32> {
        let id = opts.id.as_str();
        let saved = opts.criu.criu.image.join(checkpoint::PRIVATE_IMAGE);
        if let Some(disk) = loaded.ve_config.disk.as_ref() {
            if disk.image.is_none() && saved.exists() {
                let target = crate::ve::private_image(&self.root.path, id);
                if target.exists() {
                    return Err(Error::Step(format!(
                        "private area {} exists already",
                        target.display()
                    )));
                }
                *copied = Some(target.clone());
                checkpoint::copy_image(&saved, &target)?;
                crate::ve::disk::hand_over(&target).map_err(|e| Error::io("mark", &target, e))?;
            }
        }
        let prepare = tracing::debug_span!("restore prepare", id).entered();
        // CRIU is put into the VE's cgroups below; the grace period that waits for runs
        // meanwhile (once here, and again at CRIU's spawn in case this one is over by then).
        crate::sys::cgroups::prime_attach();
        self.derive_spec(id, loaded, claimed)?;
        // CRIU puts back the /proc view's binds as the external mounts they were dumped as.
        if let Some(binds) = &claimed.record.ve.proc_view {
            binds.add_to(&mut loaded.spec);
        }
        let spec = &loaded.spec;
        let ve_dir = claimed.ve_dir.clone();
        let creating = OciState {
            oci_version: OCI_VERSION.to_string(),
            id: id.to_string(),
            pid: 0,
            status: "creating".into(),
            bundle: loaded.bundle.clone(),
            rootfs: loaded.rootfs.clone(),
            created: crate::runtime::state::format_time(None),
            owner: String::new(),
            annotations: spec.annotations().clone().filter(|a| !a.is_empty()),
        };
        run_action(
            self,
            id,
            &loaded.ve_config.actions,
            Point::PreRestore,
            &creating,
        )?;

        let netns = match checkpoint::netns_source(spec) {
            NetnsSource::Path(p) => {
                File::open(&p).map_err(|e| Error::io("open network namespace", &p, e))?
            }
            NetnsSource::Host => File::open("/proc/self/ns/net")
                .map_err(|e| Error::io("open host network namespace", "/proc/self/ns/net", e))?,
            NetnsSource::New => {
                // Its host end stays down until CRIU has the sockets back.
                let ctx = crate::ve::Ctx {
                    root: &self.root.path,
                    id,
                    dir: &ve_dir,
                };
                let mut save = claimed.record.ve_saver(&ve_dir);
                let made = crate::ve::restore_netns(
                    &ctx,
                    &loaded.ve_config,
                    &mut claimed.record.ve,
                    &mut save,
                );
                claimed.record.save(&ve_dir)?;
                made?
            }
        };

        let linux = spec
            .linux()
            .as_ref()
            .ok_or_else(|| Error::Config("config.json: linux: missing".into()))?;
        let cgroup_path = linux
            .cgroups_path()
            .clone()
            .ok_or_else(|| Error::Config("no cgroup path".into()))?;
        let manager = crate::sys::cgroups::manager(&cgroup_path, id)?;
        let resources = linux.resources().clone().unwrap_or_default();
        // CRIU and its helpers count in the VE's cgroup while they restore: a VE dumped at
        // its numproc limit would not fit back, so that limit comes once CRIU is done.
        let mut while_restoring = resources.clone();
        while_restoring.set_pids(None);
        let disable_oom_killer = crate::sys::cgroups::oom_killer_disabled(Some(&resources));
        let controller = |resources| ControllerOpt {
            resources,
            disable_oom_killer,
            oom_score_adj: spec.process().as_ref().and_then(|p| p.oom_score_adj()),
            freezer_state: None,
        };
        let rootfs = spec
            .root()
            .as_ref()
            .map(|r| r.path().clone())
            .unwrap_or_else(|| loaded.rootfs.clone());
        drop(prepare);
        // The host link comes up once CRIU has the sockets back, before the tasks run
        // (see checkpoint::restore); after the restore only if CRIU never got there.
        let net = claimed.record.ve.net.clone();
        let linked = std::cell::Cell::new(false);
        let link_up = || -> std::result::Result<(), String> {
            if let Some(n) = &net {
                crate::ve::net::reconnect(n).map_err(|e| format!("host link: {e}"))?;
            }
            linked.set(true);
            Ok(())
        };
        crate::sys::cgroups::prime_attach();
        let restored = checkpoint::restore(
            &RestoreTarget {
                rootfs: &rootfs,
                spec,
                scratch: &ve_dir,
                netns: Some(&netns),
                console_socket: opts.console_socket.as_deref(),
            },
            &opts.criu,
            |criu_pid| {
                manager
                    .add_task(Pid::from_raw(criu_pid))
                    .map_err(|e| format!("cgroup: {e}"))?;
                manager
                    .apply(&controller(&while_restoring))
                    .map_err(|e| format!("cgroup limits: {e}"))
            },
            link_up,
        );
        let pid = match restored {
            Ok(pid) => pid,
            Err(e) => {
                let _ = manager.remove();
                return Err(e.into());
            }
        };
        let finish = tracing::debug_span!("restore finish", id).entered();
        // Only the process limit was held back: the rest was applied before CRIU forked
        // (applying all of it again rewrote the device rules, a few ms of a move's
        // frozen window).
        let limited = match resources.pids() {
            Some(p) => crate::sys::cgroups::set_pids_limit(&cgroup_path, p.limit())
                .map_err(|e| Error::Step(format!("cgroup limits: {e}"))),
            None => Ok(()),
        };
        // The link came up with the sockets (CRIU's post-restore step); if CRIU never got
        // there, now. A failure to bring it up (an address this VE no longer holds) ends
        // the restored VE like any other failure here.
        let on_wire = || match &claimed.record.ve.net {
            Some(n) if !linked.get() => Ok(crate::ve::net::reconnect(n)?),
            _ => Ok(()),
        };
        claimed.record.init_start = crate::sys::process::start_time(pid);
        if let Err(e) = limited
            .and_then(|()| Ok(claimed.record.save(&ve_dir)?))
            .and_then(|()| self.write_state(id, &ve_dir, spec, pid))
            .and_then(|()| on_wire())
        {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), None);
            let _ = manager.remove();
            return Err(e);
        }
        drop(finish);
        if let Some(pf) = &opts.pid_file {
            std::fs::write(pf, pid.to_string()).map_err(|e| Error::io("write pid file", pf, e))?;
        }
        Ok(pid)
    }

    /// libcontainer's own state for the restored init, so that every other command loads
    /// it like a created container.
    fn write_state(&self, id: &str, ve_dir: &Path, spec: &Spec, pid: i32) -> Result<()> {
        let cdir = self.root.container_dir(id);
        std::fs::create_dir(&cdir).map_err(|e| Error::io("create", &cdir, e))?;
        YoukiConfig::from_spec(spec, id)
            .map_err(|e| Error::Step(format!("container config: {e}")))?
            .save(&cdir)
            .map_err(|e| Error::Step(format!("save container config: {e}")))?;
        let mut c = Container::new(id, ContainerStatus::Created, Some(pid), ve_dir, &cdir)
            .map_err(|e| Error::Step(format!("container state: {e}")))?;
        c.set_status(ContainerStatus::Created)
            .set_creator(nix::unistd::geteuid().as_raw())
            .set_systemd(false)
            .set_annotations(spec.annotations().clone())
            .set_status(ContainerStatus::Running);
        c.save()
            .map_err(|e| Error::Step(format!("save container state: {e}")))?;
        Ok(())
    }
}
