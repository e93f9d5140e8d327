//! One file per command. Each holds its clap arguments and a thin `run` that works through
//! libcontainer (container mechanics) and `crate::ve` (VE features).

use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};

use anyhow::{anyhow, Result};
use libcgroups::common::{AnyCgroupManager, CgroupConfig, CgroupManager};
use libcontainer::container::Container;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use crate::cli::{Command, GlobalOpts};

pub mod checkpoint;
pub mod create;
pub mod delete;
pub mod events;
pub mod exec;
pub mod features;
pub mod kill;
pub mod list;
pub mod migrate;
pub mod migrate_listen;
pub mod pause;
pub mod ps;
pub mod restore;
pub mod resume;
pub mod run;
pub mod spec;
pub mod start;
pub mod state;
pub mod template;
pub mod update;
pub mod ve;
pub mod version;

/// An error that ends the process with a specific status, as `exec` does with 255.
#[derive(Debug, thiserror::Error)]
#[error("{msg}")]
pub struct ExitError {
    pub code: i32,
    pub msg: String,
}

pub fn exit_code_for(err: &anyhow::Error) -> i32 {
    err.downcast_ref::<ExitError>().map(|e| e.code).unwrap_or(1)
}

pub fn dispatch(command: Command, global: &GlobalOpts) -> Result<i32> {
    match command {
        Command::Create(a) => create::run(a, global),
        Command::Start(a) => start::run(a, global),
        Command::Run(a) => run::run(a, global),
        Command::Exec(a) => exec::run(a, global),
        Command::Kill(a) => kill::run(a, global),
        Command::Delete(a) => delete::run(a, global),
        Command::State(a) => state::run(a, global),
        Command::List(a) => list::run(a, global),
        Command::Ps(a) => ps::run(a, global),
        Command::Events(a) => events::run(a, global),
        Command::Pause(a) => pause::run(a, global),
        Command::Resume(a) => resume::run(a, global),
        Command::Update(a) => update::run(a, global),
        Command::Features(a) => features::run(a, global),
        Command::Spec(a) => spec::run(a, global),
        Command::Checkpoint(a) => checkpoint::run(a, global),
        Command::Migrate(a) => migrate::run(a, global),
        Command::MigrateListen(a) => migrate_listen::run(a, global),
        Command::Restore(a) => restore::run(a, global),
        Command::Ve(c) => ve::run(c, global),
        Command::Template(c) => template::run(c, global),
    }
}

/// The cgroup libcontainer created for this container.
pub fn cgroup_manager(container: &Container) -> Result<AnyCgroupManager> {
    let config = container
        .spec()
        .map_err(|e| anyhow!("read container config: {e}"))?;
    cgroup_manager_at(config.cgroup_path, container.id())
}

pub fn cgroup_manager_at(path: PathBuf, id: &str) -> Result<AnyCgroupManager> {
    libcgroups::common::create_cgroup_manager(CgroupConfig {
        cgroup_path: path,
        systemd_cgroup: false,
        container_name: id.to_string(),
    })
    .map_err(|e| anyhow!("open cgroup: {e}"))
}

pub fn container_pids(container: &Container) -> Result<Vec<i32>> {
    let manager = cgroup_manager(container)?;
    let pids = manager
        .get_all_pids()
        .map_err(|e| anyhow!("list processes: {e}"))?;
    Ok(pids.into_iter().map(|p| p.as_raw()).collect())
}

/// Makes vzrun the reaper of the container processes it starts in the foreground, so it
/// can wait for them after libcontainer's intermediate process exits.
pub fn become_subreaper() -> Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(anyhow!(
            "set child subreaper: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

static FORWARD_TO: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = FORWARD_TO.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Signals sent to a foreground `run`/`exec` go to the container process, as with runc.
pub fn forward_signals(pid: i32) {
    FORWARD_TO.store(pid, Ordering::Relaxed);
    for sig in [
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGWINCH,
    ] {
        // SAFETY: the handler only reads an atomic and calls kill.
        unsafe {
            libc::signal(sig, forward as *const () as libc::sighandler_t);
        }
    }
}

/// Waits for `pid` and returns its exit status the way a shell reports it; other
/// children that exit meanwhile (re-parented daemons of the container) are reaped.
pub fn wait_exit(pid: i32) -> i32 {
    loop {
        match waitpid(Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 255,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_errors_carry_their_code() {
        let e: anyhow::Error = ExitError {
            code: 255,
            msg: "exec failed: x".into(),
        }
        .into();
        assert_eq!(exit_code_for(&e), 255);
        assert_eq!(exit_code_for(&anyhow!("plain")), 1);
    }

    #[test]
    #[allow(clippy::zombie_processes)] // reaped by wait_exit's waitpid
    fn wait_reports_exit_codes_and_signals() {
        let child = std::process::Command::new("sh")
            .args(["-c", "exit 7"])
            .spawn()
            .unwrap();
        assert_eq!(wait_exit(child.id() as i32), 7);
        let child = std::process::Command::new("sh")
            .args(["-c", "kill -9 $$"])
            .spawn()
            .unwrap();
        assert_eq!(wait_exit(child.id() as i32), 137);
    }
}
