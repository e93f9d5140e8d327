//! A foreground `run` or `exec`: vzrun stays the parent of the container's process,
//! passes on the signals it receives, and returns the process's exit status the way a
//! shell reports it.

use std::os::fd::{AsFd, OwnedFd};

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use crate::runtime::error::{Error, Result};
use crate::sys::pty;

/// The signals a user sends to a foreground container through vzrun, as with runc.
const FORWARDED: [Signal; 7] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// Makes vzrun the reaper of the container processes it starts in the foreground, so it
/// can wait for them after libcontainer's intermediate process exits.
pub fn become_subreaper() -> Result<()> {
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| Error::Step(format!("set child subreaper: {e}")))
}

/// Signals sent to vzrun from now on go to `pid`. They are blocked and read from a
/// signalfd by one thread, so no handler runs in an arbitrary thread's context. Programs
/// vzrun starts later get a clean mask (std's spawn resets it in the child).
///
/// With `terminal` (the master of a pty vzrun relays), SIGWINCH is not passed on: it
/// means vzrun's own window changed size, and the new size is copied to the process's
/// terminal, whose kernel side then signals the process itself (as runc does).
pub fn forward_signals(pid: i32, terminal: Option<OwnedFd>) -> Result<()> {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(s);
    }
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
        .map_err(|e| Error::Step(format!("block signals: {e}")))?;
    let fd = SignalFd::new(&set).map_err(|e| Error::Step(format!("signalfd: {e}")))?;
    std::thread::spawn(move || {
        while let Ok(Some(info)) = fd.read_signal() {
            match (Signal::try_from(info.ssi_signo as i32), &terminal) {
                (Ok(Signal::SIGWINCH), Some(master)) => pty::copy_winsize(master.as_fd()),
                (Ok(sig), _) => {
                    let _ = nix::sys::signal::kill(Pid::from_raw(pid), sig);
                }
                (Err(_), _) => {}
            }
        }
    });
    Ok(())
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
