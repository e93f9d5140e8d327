//! A foreground `run` or `exec`: vzrun stays the parent of the container's process,
//! passes on the signals it receives, and returns the process's exit status the way a
//! shell reports it.

use std::os::fd::{AsFd, OwnedFd};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
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

/// The caller's signal mask, saved by [`Forwarding::begin`]: the container's process
/// gets it back ([`restore_mask`]), as runc's processes get the mask runc started with.
static CALLER_MASK: std::sync::OnceLock<SigSet> = std::sync::OnceLock::new();

/// The signals a foreground `run` or `exec` passes on to its process, held from before
/// the process starts: blocked and queued on a signalfd, so one that arrives while the
/// container is still being made (a Ctrl-C, a shim's SIGTERM right after `start`) waits
/// for the process instead of killing vzrun halfway, as runc's handler, installed
/// first, does. No handler runs in an arbitrary thread's context.
pub struct Forwarding {
    signals: SignalFd,
}

impl Forwarding {
    pub fn begin() -> Result<Self> {
        let mut set = SigSet::empty();
        for s in FORWARDED {
            set.add(s);
        }
        let mut caller = SigSet::empty();
        nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut caller))
            .map_err(|e| Error::Step(format!("block signals: {e}")))?;
        let _ = CALLER_MASK.set(caller);
        let signals = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(|e| Error::Step(format!("signalfd: {e}")))?;
        Ok(Forwarding { signals })
    }
}

/// In a container's process, just before its exec: the caller's signal mask again, where
/// a foreground `run` or `exec` blocked the forwarded signals before forking it.
pub fn restore_mask() {
    if let Some(mask) = CALLER_MASK.get() {
        let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(mask), None);
    }
}

/// Follows a foreground process until it exits and returns its status the way a shell
/// reports it. What `forwarding` holds and what arrives meanwhile goes to `pid`; with
/// `master` (the master of a pty vzrun relays) the terminal is relayed too, and SIGWINCH
/// is not passed on: it means vzrun's own window changed size, and the new size is
/// copied to the process's terminal, whose kernel side then signals the process itself
/// (as runc does). One `poll` waits for the signals and for the exit (a pidfd turns
/// readable then): no thread but the terminal relay's. Programs vzrun starts later get a
/// clean mask (std's spawn resets it in the child).
pub fn follow(pid: i32, master: Option<OwnedFd>, forwarding: Forwarding) -> Result<i32> {
    let resize = match &master {
        Some(m) => Some(
            m.try_clone()
                .map_err(|e| Error::Step(format!("dup console master: {e}")))?,
        ),
        None => None,
    };
    let relay = master.map(|m| std::thread::spawn(move || pty::relay(m)));
    let code = wait_forwarding(pid, &forwarding.signals, resize.as_ref());
    if let Some(t) = relay {
        let _ = t.join();
    }
    Ok(code)
}

/// Waits for `pid` while passing on what arrives on `signals`.
fn wait_forwarding(pid: i32, signals: &SignalFd, resize: Option<&OwnedFd>) -> i32 {
    // pidfd_open fails only on a kernel before 5.3, where vzrun's create (clone3) and
    // exec (a pidfd of the init) fail first, or out of descriptors: the status still
    // comes back, without forwarding.
    let Ok(exited) = crate::sys::process::pidfd_open(pid) else {
        return wait_exit(pid);
    };
    loop {
        let mut fds = [
            PollFd::new(signals.as_fd(), PollFlags::POLLIN),
            PollFd::new(exited.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return wait_exit(pid),
        }
        if fds[0].any().unwrap_or(false) {
            pass_on(pid, signals, resize);
        }
        if fds[1].any().unwrap_or(false) {
            return wait_exit(pid);
        }
    }
}

/// Passes every pending signal on to `pid` (SIGWINCH to the terminal, when relayed).
fn pass_on(pid: i32, signals: &SignalFd, resize: Option<&OwnedFd>) {
    while let Ok(Some(info)) = signals.read_signal() {
        match (Signal::try_from(info.ssi_signo as i32), resize) {
            (Ok(Signal::SIGWINCH), Some(master)) => pty::copy_winsize(master.as_fd()),
            (Ok(sig), _) => {
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), sig);
            }
            (Err(_), _) => {}
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
