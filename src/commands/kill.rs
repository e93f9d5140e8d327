//! `vzrun kill`: send a signal to the init (or, with --all, every process).

use anyhow::{anyhow, bail, Result};
use libcontainer::container::ContainerStatus;
use nix::sys::signal::Signal;

use crate::cli::GlobalOpts;
use crate::runtime::root::Root;
use crate::runtime::signal;

#[derive(clap::Args, Debug)]
#[command(about = "Send a signal to the container's init process (default SIGTERM)")]
pub struct Args {
    /// Send the signal to all processes in the container
    #[arg(short = 'a', long)]
    pub all: bool,
    pub id: String,
    /// Signal name or number
    pub signal: Option<String>,
}

pub fn run(args: Args, global: &GlobalOpts) -> Result<i32> {
    let root = Root::from_opts(global)?;
    let mut loaded = root.load(&args.id)?;
    let signo = signal::parse(args.signal.as_deref().unwrap_or("SIGTERM"))?;
    let container = &mut loaded.container;
    if !matches!(
        container.status(),
        ContainerStatus::Created | ContainerStatus::Running | ContainerStatus::Paused
    ) {
        // Without a PID namespace the init's children outlive it; containerd's shim sends
        // `kill --all ID 9` once the init is gone, and runc still signals what is left in
        // the cgroup.
        if args.all {
            kill_raw(container, signo, true)?;
            return Ok(0);
        }
        bail!("container not running");
    }
    // A created container's init waits inside libcontainer as PID 1 of its namespace and
    // has no handlers, so the kernel drops most signals to it; runc's init is a Go
    // program that dies of them. Deliver what the user meant: a signal whose default is
    // to terminate ends a created container.
    let signo = if container.status() == ContainerStatus::Created && terminates_by_default(signo) {
        libc::SIGKILL
    } else {
        signo
    };
    match Signal::try_from(signo) {
        Ok(sig) => container
            .kill(sig, args.all)
            .map_err(|e| anyhow!("{}", super::create::describe(&e)))?,
        Err(_) => kill_raw(container, signo, args.all)?,
    }
    Ok(0)
}

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

/// Real-time signals have no `nix::Signal`, which libcontainer's kill takes.
fn kill_raw(container: &libcontainer::container::Container, signo: i32, all: bool) -> Result<()> {
    let pids = if all {
        super::container_pids(container)?
    } else {
        container
            .pid()
            .map(|p| vec![p.as_raw()])
            .unwrap_or_default()
    };
    for pid in pids {
        // SAFETY: kill(2) with a pid read from the container's cgroup.
        if unsafe { libc::kill(pid, signo) } != 0 {
            let errno = nix::errno::Errno::last();
            if errno != nix::errno::Errno::ESRCH {
                let desc = errno.desc();
                let mut words = desc.chars();
                let first = words
                    .next()
                    .map(|c| c.to_ascii_lowercase())
                    .unwrap_or_default();
                bail!("unable to signal init: {first}{}", words.as_str());
            }
        }
    }
    Ok(())
}
