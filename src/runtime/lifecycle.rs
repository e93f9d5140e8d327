//! The verbs on an existing container: start, kill, pause, resume, delete, and the state
//! checks that say which state each may start from, all in one place (runc's words).

use std::time::Duration;

use libcontainer::config::YoukiConfig;
use libcontainer::container::{Container, ContainerStatus};
use libcontainer::error::LibcontainerError;
use nix::sys::signal::Signal;

use crate::runtime::error::{chain, Error, Result};
use crate::runtime::root::{validate_id, Lock};
use crate::runtime::state::{status_word, HookView, Record};
use crate::runtime::Runtime;
use crate::sys::cgroups;
use crate::ve;

/// Which verbs a container's state allows; each failure is runc's sentence.
pub fn can_start(status: ContainerStatus) -> Result<()> {
    let word = match status {
        ContainerStatus::Created => return Ok(()),
        ContainerStatus::Stopped => "cannot start a container that has stopped",
        ContainerStatus::Running => "cannot start an already running container",
        ContainerStatus::Paused => "cannot start a paused container",
        ContainerStatus::Creating => "cannot start a container that is still being created",
    };
    Err(Error::State(word.into()))
}

pub fn can_pause(status: ContainerStatus) -> Result<()> {
    if status != ContainerStatus::Running {
        return Err(Error::State("container not running".into()));
    }
    Ok(())
}

pub fn can_resume(status: ContainerStatus) -> Result<()> {
    if status != ContainerStatus::Paused {
        return Err(Error::State("container not paused".into()));
    }
    Ok(())
}

pub fn can_kill(status: ContainerStatus) -> Result<()> {
    if !matches!(
        status,
        ContainerStatus::Created | ContainerStatus::Running | ContainerStatus::Paused
    ) {
        return Err(Error::State("container not running".into()));
    }
    Ok(())
}

pub fn can_delete(id: &str, status: ContainerStatus, force: bool) -> Result<()> {
    if !force && !matches!(status, ContainerStatus::Stopped | ContainerStatus::Created) {
        return Err(Error::State(format!(
            "cannot delete container {id} that is not stopped: {}",
            status_word(status)
        )));
    }
    Ok(())
}

/// Whether a checkpoint (or a migration's dump) may start: the container must run.
pub fn can_checkpoint(id: &str, status: ContainerStatus) -> Result<()> {
    match status {
        ContainerStatus::Running | ContainerStatus::Paused => Ok(()),
        other => Err(Error::State(format!(
            "container {id} is not running: {}",
            status_word(other)
        ))),
    }
}

/// A migration pauses the VE itself for its last part: it must be running.
pub fn can_migrate(id: &str, status: ContainerStatus) -> Result<()> {
    match status {
        ContainerStatus::Running => Ok(()),
        other => Err(Error::State(format!(
            "container {id} is not running: {}",
            status_word(other)
        ))),
    }
}

pub fn can_exec(status: ContainerStatus, ignore_paused: bool) -> Result<()> {
    match status {
        ContainerStatus::Stopped => Err(Error::State("cannot exec in a stopped container".into())),
        ContainerStatus::Paused if !ignore_paused => Err(Error::State(
            "cannot exec in a paused container (use --ignore-paused to override)".into(),
        )),
        _ => Ok(()),
    }
}

/// A stopped container has no cgroup left to update (runc's words).
pub fn can_update(status: ContainerStatus) -> Result<()> {
    match status {
        ContainerStatus::Stopped => Err(Error::State("container not running".into())),
        _ => Ok(()),
    }
}

/// Signals whose default action does not end a process.
fn terminates_by_default(signo: i32) -> bool {
    !matches!(
        signo,
        libc::SIGCHLD
            | libc::SIGCONT
            | libc::SIGURG
            | libc::SIGWINCH
            | libc::SIGSTOP
            | libc::SIGTSTP
            | libc::SIGTTIN
            | libc::SIGTTOU
    )
}

/// The processes of a container's cgroup.
pub fn pids(container: &Container) -> Result<Vec<i32>> {
    let config = container.spec()?;
    Ok(cgroups::pids(&config.cgroup_path, container.id())?)
}

/// Real-time signals have no `nix::Signal`, which libcontainer's kill takes.
fn kill_raw(container: &Container, signo: i32, all: bool) -> Result<()> {
    let targets = if all {
        pids(container)?
    } else {
        container
            .pid()
            .map(|p| vec![p.as_raw()])
            .unwrap_or_default()
    };
    for pid in targets {
        // SAFETY: kill(2) with a pid read from the container's cgroup and a signal number
        // that nix's Signal cannot name (the real-time range); no memory is involved.
        if unsafe { libc::kill(pid, signo) } != 0 {
            let errno = nix::errno::Errno::last();
            if errno != nix::errno::Errno::ESRCH {
                let desc = errno.desc();
                let mut words = desc.chars();
                let first = words
                    .next()
                    .map(|c| c.to_ascii_lowercase())
                    .unwrap_or_default();
                return Err(Error::Step(format!(
                    "unable to signal init: {first}{}",
                    words.as_str()
                )));
            }
        }
    }
    Ok(())
}

impl Runtime {
    /// Lets a created container's init exec the user's process.
    pub fn start(&self, id: &str) -> Result<()> {
        let mut loaded = self.root.load(id)?;
        start_loaded(&mut loaded.container)
    }

    /// Sends `signal` (a name or number, as `signal::parse` takes it) to the init, or
    /// with `all` to every process; the container is looked up first, as runc does.
    pub fn kill(&self, id: &str, signal: &str, all: bool) -> Result<()> {
        let mut loaded = self.root.load(id)?;
        let signo =
            crate::runtime::signal::parse(signal).map_err(|e| Error::Config(e.to_string()))?;
        let container = &mut loaded.container;
        tracing::debug!(id, signo, all, status = ?container.status(), "kill");
        if let Err(e) = can_kill(container.status()) {
            // Without a PID namespace the init's children outlive it; containerd's shim
            // sends `kill --all ID 9` once the init is gone, and runc still signals what is
            // left in the cgroup.
            if all {
                return kill_raw(container, signo, true);
            }
            return Err(e);
        }
        // A created container's init waits inside libcontainer as PID 1 of its namespace
        // and has no handlers, so the kernel drops most signals to it; runc's init is a Go
        // program that dies of them. Deliver what the user meant: a signal whose default
        // is to terminate ends a created container.
        let signo =
            if container.status() == ContainerStatus::Created && terminates_by_default(signo) {
                libc::SIGKILL
            } else {
                signo
            };
        match Signal::try_from(signo) {
            Ok(sig) => Ok(container.kill(sig, all)?),
            Err(_) => kill_raw(container, signo, all),
        }
    }

    pub fn pause(&self, id: &str) -> Result<()> {
        let mut loaded = self.root.load(id)?;
        can_pause(loaded.container.status())?;
        Ok(loaded.container.pause()?)
    }

    pub fn resume(&self, id: &str) -> Result<()> {
        let mut loaded = self.root.load(id)?;
        can_resume(loaded.container.status())?;
        loaded.container.resume()?;
        // A VE a move left frozen has its host link down too (its copy may have run
        // elsewhere meanwhile): taken back here, it is up and announced again. Any other
        // paused VE has its link up, and costs one netlink request.
        if let Some(n) = &loaded.record.ve.net {
            if crate::ve::net::host_link_down(n)? {
                crate::ve::net::reconnect(n)?;
            }
        }
        Ok(())
    }

    /// Removes a stopped (or, with `force`, any) container and everything the VE layer
    /// set up for it. runc: `--force` on an ID that does not exist is not an error.
    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        validate_id(id)?;
        let lock = match self.root.lock(id) {
            Ok(l) => l,
            Err(_) if force => {
                // No record of vzrun's: only libcontainer's part can be left (a state
                // directory from a create that died before vzrun claimed anything), or
                // the ID's directory of a create killed between claiming it and making
                // its lock file.
                self.remove_orphan(id);
                self.root.release(id);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        self.delete_locked(id, force, lock)
    }

    /// [`Runtime::delete`] for a caller that already holds the container's lock (a
    /// checkpoint that stopped the VE, a restore whose post-restore script failed).
    pub fn delete_locked(&self, id: &str, force: bool, lock: Lock) -> Result<()> {
        let ve_dir = self.root.ve_dir(id);
        let record = Record::load(&ve_dir).unwrap_or_default();
        match self.root.read(id) {
            Ok((mut container, _)) if own_delete_applies(&container) => {
                let status = container.status();
                can_delete(id, status, force)?;
                // libcontainer's kill and delete each build libcgroups' manager, which on a
                // v1 host reads mountinfo and /proc/self/cgroup per controller; the same
                // steps are done here from one read (see `delete_stopped`).
                let config = container.spec().ok();
                let cgroup = match &config {
                    Some(c) => Some(c.cgroup_path.clone()),
                    None => self.derived_cgroup_path(id),
                };
                // runc kills a live container before its poststop hooks, which then see
                // it stopped and without a pid.
                if status != ContainerStatus::Stopped {
                    if let Some(path) = &cgroup {
                        cgroups::kill_tree(path);
                    }
                    container.set_status(ContainerStatus::Stopped);
                }
                // The poststop hooks see the caller's bundle; libcontainer's directory
                // goes with the delete, so nothing needs putting back.
                let _ = HookView::show(&mut container);
                container.state.pid = None;
                match delete_stopped(&container, config.as_ref(), cgroup.as_deref()) {
                    // A started container's create finished, and libcontainer's
                    // intermediate process is reaped before it saves the container
                    // created: no scan of every process's descriptors.
                    Ok(()) => {}
                    Err(e) => self.delete_failed(id, e, force)?,
                }
            }
            Ok((mut container, _)) => {
                let status = container.status();
                can_delete(id, status, force)?;
                if status == ContainerStatus::Paused {
                    // SIGKILL stays pending in a frozen cgroup on v1: thaw first.
                    let _ = container.resume();
                }
                // runc kills a live container before its poststop hooks, which then see
                // it stopped and without a pid; libcontainer would show them the pid of
                // the init it kills on the way. Killed here, libcontainer finds it stopped.
                let live = matches!(
                    status,
                    ContainerStatus::Running | ContainerStatus::Created | ContainerStatus::Paused
                );
                let killed = live && container.kill(Signal::SIGKILL, true).is_ok();
                let _ = HookView::show(&mut container);
                if status == ContainerStatus::Stopped || killed {
                    // runc's poststop state has no pid once the init is gone.
                    container.state.pid = None;
                }
                match container.delete(true) {
                    // A forced delete may follow a create killed halfway: a controller's
                    // cgroup made after libcontainer's state was written is swept too.
                    Ok(()) if force => self.remove_remains(id),
                    // libcgroups leaves a cgroup that has sub-cgroups: runc removes them.
                    Ok(()) => self.remove_cgroup(id, false),
                    Err(e) => self.delete_failed(id, e, force)?,
                }
            }
            // No readable state: a create that died between claiming the ID and
            // libcontainer's state file (or a state file cut short by a full disk).
            Err(Error::NotExist) => self.remove_remains(id),
            Err(e) if !force => return Err(e),
            Err(_) => self.remove_remains(id),
        }
        tracing::debug_span!("ve teardown", id).in_scope(|| ve::teardown(&record.ve));
        self.root.release(id);
        drop(lock);
        Ok(())
    }
}

impl Runtime {
    /// libcontainer's directory for an ID vzrun holds no record of.
    fn remove_orphan(&self, id: &str) {
        let dir = self.root.container_dir(id);
        if !dir.exists() {
            return;
        }
        if let Ok(mut c) = libcontainer::container::Container::load(dir.clone()) {
            let _ = c.delete(true);
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    /// What a container without usable state left: the forks of a create killed halfway
    /// (found by the ID's lock file they inherited), the processes of its cgroup (named in
    /// vzrun's derived config), the cgroup, and libcontainer's directory.
    pub(crate) fn remove_remains(&self, id: &str) {
        crate::sys::lock::kill_holders(&self.root.lock_file(id), Duration::from_secs(5));
        self.remove_cgroup_and_state(id);
    }

    /// The container's cgroup, with whatever still runs in it, and libcontainer's directory.
    fn remove_cgroup_and_state(&self, id: &str) {
        self.remove_cgroup(id, true);
        // A fork of the killed create that no lock named (libcontainer's intermediate
        // process) may have made the cgroup in one hierarchy after this sweep passed it
        // and before the sweep killed it in another; it is dead now, so a second pass
        // finds for good what it made (CI saw a `cpu` cgroup left that way, once).
        self.remove_cgroup(id, true);
        let _ = std::fs::remove_dir_all(self.root.container_dir(id));
    }

    /// The container's cgroup (named in vzrun's derived config) with any sub-cgroups,
    /// and with `kill` whatever still runs in them.
    fn remove_cgroup(&self, id: &str, kill: bool) {
        if let Some(path) = self.derived_cgroup_path(id) {
            // Directly, not through libcgroups' manager: its freeze and remove would
            // make the hierarchies they touch, and stop at the first that fails.
            cgroups::remove_everywhere(&path, kill);
        }
    }

    /// A delete that failed: runc logs a failing poststop hook and carries on (exit 0,
    /// the hooks after it not run): the container is gone by then, and a record kept
    /// would run the hook again on every delete; what is left of it is removed. Any other
    /// failure is the error, unless forced: a state that cannot be finished (a create
    /// killed halfway) is taken down as the derived config says it was made.
    fn delete_failed(&self, id: &str, e: LibcontainerError, force: bool) -> Result<()> {
        match e {
            LibcontainerError::Hook(e) => {
                crate::logging::error_line(&format!("error running poststop hook: {}", chain(&e)));
                self.remove_remains(id);
                Ok(())
            }
            e if !force => Err(e.into()),
            _ => {
                self.remove_remains(id);
                Ok(())
            }
        }
    }

    /// The cgroup path of vzrun's derived config for the container.
    fn derived_cgroup_path(&self, id: &str) -> Option<std::path::PathBuf> {
        let spec = crate::runtime::bundle::load_spec(&self.root.ve_dir(id)).ok()?;
        spec.linux().as_ref().and_then(|l| l.cgroups_path().clone())
    }
}

/// Whether vzrun deletes this container itself rather than through libcontainer: a
/// container that was started (running, paused or stopped), with no Intel RDT directory
/// (whose cleanup stays libcontainer's). A created one goes libcontainer's way and then
/// the sweep of a create killed halfway: a CI run of
/// `security::a_create_killed_at_any_point_leaves_nothing_after_delete_force` found a
/// memory cgroup left after vzrun's own steps for a killed create's container.
fn own_delete_applies(container: &Container) -> bool {
    matches!(
        container.status(),
        ContainerStatus::Running | ContainerStatus::Paused | ContainerStatus::Stopped
    ) && container.intel_rdt_dir().is_none()
        && container.intel_rdt_monitoring_dir().is_none()
        && container.clean_up_intel_rdt_subdirectory() != Some(true)
}

/// libcontainer's delete of a stopped container, in its order: the cgroup (with
/// whatever still runs in it), the poststop hooks, its directory. The cgroup is removed
/// from every mounted hierarchy with its sub-cgroups (runc's way; libcgroups would
/// leave a cgroup with sub-cgroups, and the unified one of a hybrid host).
fn delete_stopped(
    container: &Container,
    config: Option<&YoukiConfig>,
    cgroup: Option<&std::path::Path>,
) -> std::result::Result<(), LibcontainerError> {
    if let Some(path) = cgroup {
        if let Some(dir) = cgroups::remove_tree(path).first() {
            return Err(LibcontainerError::Other(format!(
                "failed to remove cgroup {}: it still has processes",
                dir.display()
            )));
        }
    }
    if let Some(hooks) = config.and_then(|c| c.hooks.as_ref()) {
        libcontainer::hooks::run_hooks(
            hooks.poststop().as_ref(),
            Some(&container.state),
            None,
            None,
            None,
        )?;
    }
    if container.root.exists() {
        std::fs::remove_dir_all(&container.root).map_err(LibcontainerError::OtherIO)?;
    }
    Ok(())
}

/// Starts a container the caller has loaded (and locked).
pub fn start_loaded(container: &mut Container) -> Result<()> {
    can_start(container.status())?;
    let view = HookView::show(container);
    let started = container.start();
    if let Some(v) = view {
        v.hide(container);
    }
    match started {
        Ok(()) => Ok(()),
        // A failing poststart hook (the ones after it do not run): runc stops the
        // container and fails, as runtime-spec now asks. libcontainer has saved the
        // container running by then and would leave it so.
        Err(LibcontainerError::Hook(e)) => {
            let _ = container.kill(Signal::SIGKILL, true);
            Err(Error::Step(format!(
                "error running poststart hook: {}",
                chain(&e)
            )))
        }
        Err(e) => Err(e.into()),
    }
}
