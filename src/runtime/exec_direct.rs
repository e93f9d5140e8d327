//! Exec's own launcher: one fork from vzrun straight into the container, no intermediate
//! process.
//!
//! libcontainer starts an exec'd process the way it starts an init: an intermediate
//! process builds a cgroup manager, joins the cgroups and the PID namespace and forks
//! the process, which then joins the other namespaces. On a v1 or hybrid host the
//! manager alone reads mountinfo through a checked /proc handle once per controller:
//! measured with `strace -f` on `exec ID /bin/true`, the intermediate made 681 of the
//! exec's 1212 system calls (crun's whole exec: 635). Here the process joins what the
//! container's init is in from a pidfd of the init (`setns(2)` takes every namespace in
//! one call, and the pidfd cannot be recycled under us), and the container's cgroup in
//! every hierarchy by writing to `cgroup.procs`.
//!
//! Everything after the namespaces is libcontainer's own code in its own order (ids,
//! capabilities, the fd sweep) and vzrun's executor (seccomp, the lent CAP_SYS_ADMIN,
//! signal dispositions, the PATH lookup and its errors), so a process started here is the
//! process libcontainer's tenant path starts. What this path does not do it leaves to
//! that path: [`Launch::fits`] sends a terminal, a sub-cgroup, an AppArmor or SELinux
//! label, a seccomp agent, a user or time namespace, a personality, I/O priority,
//! scheduler or CPU affinity settings, and a container that is not running there.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{Read, Write};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use libcontainer::capabilities;
use libcontainer::syscall::syscall::create_syscall;
use libcontainer::workload::Executor;
use nix::sched::CloneFlags;
use nix::unistd::{ForkResult, Gid, Pid, Uid};
use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};

use crate::runtime::error::{Error, Result};
use crate::runtime::executor::VzExecutor;

/// An exec this launcher can start.
pub struct Launch<'a> {
    /// The container's init, on the host.
    pub init_pid: i32,
    /// The container's spec (vzrun's derived one), for its namespaces and cgroup.
    pub derived: &'a Spec,
    pub process: &'a Process,
    pub executor: &'a VzExecutor,
    pub preserve_fds: i32,
}

impl Launch<'_> {
    /// Whether this launcher does everything the exec asks for; the caller has already
    /// ruled out a terminal, a sub-cgroup, a label, a seccomp agent and a container that
    /// is not running.
    pub fn fits(derived: &Spec, process: &Process) -> bool {
        let linux = derived.linux().as_ref();
        let own_user_or_time = linux
            .and_then(|l| l.namespaces().as_ref())
            .is_some_and(|ns| {
                ns.iter()
                    .any(|n| matches!(n.typ(), LinuxNamespaceType::User | LinuxNamespaceType::Time))
            });
        !own_user_or_time
            && linux.is_some_and(|l| l.personality().is_none())
            && process.apparmor_profile().is_none()
            && process.selinux_label().is_none()
            && process.io_priority().is_none()
            && process.scheduler().is_none()
            && process.exec_cpu_affinity().is_none()
            && !process.terminal().unwrap_or(false)
            // libcontainer hands LISTEN_FDS sockets on to the process (systemd's socket
            // activation); that path keeps doing it.
            && std::env::var_os("LISTEN_FDS").is_none()
    }

    /// Starts the process; returns its host pid once it has exec'd, or the reason it
    /// could not, in runc's words ("unable to start container process: …").
    pub fn spawn(&self) -> Result<Pid> {
        let plan = self.plan()?;
        let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| Error::Step(format!("exec: error pipe: {e}")))?;
        let own_pid_ns = match plan.pid_ns {
            true => Some(
                std::fs::File::open("/proc/self/ns/pid")
                    .map_err(|e| Error::io("open", "/proc/self/ns/pid", e))?,
            ),
            false => None,
        };
        // The child is in the container's PID namespace from its first instruction, still
        // running vzrun with vzrun's descriptors: not dumpable, so the container's
        // processes cannot ptrace it or open its /proc files (libcontainer does the same
        // before its fork). exec(2) makes the process dumpable again.
        nix::sys::prctl::set_dumpable(false)
            .map_err(|e| Error::Step(format!("exec: prctl(PR_SET_DUMPABLE): {e}")))?;
        // Children are born in the namespace this thread is set to: the container's for
        // the one fork below, vzrun's own again right after it.
        if plan.pid_ns {
            nix::sched::setns(plan.pidfd.as_fd(), CloneFlags::CLONE_NEWPID).map_err(|e| {
                Error::Step(format!(
                    "unable to start container process: join the container's PID namespace: {e}"
                ))
            })?;
        }
        // SAFETY: vzrun has one thread here (this launcher is not used with a seccomp
        // agent, whose relay is a thread), so the child may allocate and take locks.
        let forked = unsafe { nix::unistd::fork() };
        if let Some(own) = &own_pid_ns {
            // Entering the namespace one is already active in is always allowed.
            let _ = nix::sched::setns(own.as_fd(), CloneFlags::CLONE_NEWPID);
        }
        match forked {
            Ok(ForkResult::Child) => {
                drop(read_end);
                let Err(why) = self.in_child(&plan);
                let mut w = std::fs::File::from(write_end);
                let _ = w.write_all(why.as_bytes());
                // SAFETY: ends the forked child without running the parent's exit
                // handlers or flushing buffers it shares with the parent.
                unsafe { libc::_exit(1) }
            }
            Ok(ForkResult::Parent { child }) => {
                drop(write_end);
                let mut why = String::new();
                let _ = std::fs::File::from(read_end).read_to_string(&mut why);
                if why.is_empty() {
                    return Ok(child);
                }
                let _ = nix::sys::wait::waitpid(child, None);
                Err(Error::Step(format!(
                    "unable to start container process: {why}"
                )))
            }
            Err(e) => Err(Error::Step(format!(
                "unable to start container process: fork: {e}"
            ))),
        }
    }

    /// What the child needs, gathered before the fork.
    fn plan(&self) -> Result<Plan> {
        // SAFETY: pidfd_open(2) has no wrapper in nix; it takes a pid and flags and
        // returns a new descriptor (close-on-exec) or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, self.init_pid, 0) };
        if fd < 0 {
            return Err(Error::State("container not running".into()));
        }
        // SAFETY: the descriptor was just returned to us and nothing else owns it.
        let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let types: Vec<LinuxNamespaceType> = self
            .derived
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_ref())
            .map(|ns| ns.iter().map(|n| n.typ()).collect())
            .unwrap_or_default();
        let mut flags = CloneFlags::empty();
        for t in &types {
            flags |= match t {
                LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
                LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
                LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
                LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
                LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
                _ => CloneFlags::empty(),
            };
        }
        let cgroups = self
            .derived
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().as_ref())
            .map(|p| crate::sys::cgroups::existing_dirs(p))
            .unwrap_or_default();
        let mut spec = self.derived.clone();
        spec.set_process(Some(self.process.clone()));
        Ok(Plan {
            pidfd,
            pid_ns: types.contains(&LinuxNamespaceType::Pid),
            flags,
            cgroups,
            envs: libcontainer::utils::parse_env(self.process.env().as_deref().unwrap_or(&[])),
            spec,
        })
    }

    /// The child's steps, in libcontainer's order; returns only with the reason it
    /// stopped.
    fn in_child(&self, plan: &Plan) -> std::result::Result<Infallible, String> {
        let p = self.process;
        let syscall = create_syscall();
        // Still in the host's mount namespace, where the cgroup trees are.
        for dir in &plan.cgroups {
            let procs = dir.join("cgroup.procs");
            std::fs::write(&procs, "0").map_err(|e| {
                format!(
                    "error adding pid {} to cgroups: write {}: {}",
                    std::process::id(),
                    procs.display(),
                    lower(&e)
                )
            })?;
        }
        if let Some(adj) = p.oom_score_adj() {
            std::fs::write("/proc/self/oom_score_adj", adj.to_string())
                .map_err(|e| format!("write /proc/self/oom_score_adj: {}", lower(&e)))?;
        }
        if let Some(rlimits) = p.rlimits() {
            for r in rlimits {
                syscall
                    .set_rlimit(r)
                    .map_err(|e| format!("error setting rlimit type {:?}: {e}", r.typ()))?;
            }
        }
        if !plan.flags.is_empty() {
            nix::sched::setns(plan.pidfd.as_fd(), plan.flags)
                .map_err(|e| format!("join the container's namespaces: {}", e.desc()))?;
        }
        nix::unistd::setsid().map_err(|e| format!("setsid: {e}"))?;
        if p.no_new_privileges() == Some(true) {
            nix::sys::prctl::set_no_new_privs().map_err(|e| format!("no_new_privs: {e}"))?;
        }
        if let Some(umask) = p.user().umask() {
            let mode = nix::sys::stat::Mode::from_bits(umask)
                .ok_or_else(|| format!("invalid umask {umask:o}"))?;
            nix::sys::stat::umask(mode);
        }
        // Before the ids change where it can (root may enter directories the process's
        // user may not), again after them where root was refused.
        let cwd = p.cwd();
        let chdir_later = match nix::unistd::chdir(cwd) {
            Ok(()) => false,
            Err(nix::errno::Errno::EPERM) => true,
            Err(e) => return Err(chdir_error(cwd, e)),
        };
        // runc's: the process has exactly its additional groups, never the caller's.
        let gids: Vec<Gid> = p
            .user()
            .additional_gids()
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .map(|g| Gid::from_raw(*g))
            .collect();
        syscall
            .set_groups(&gids)
            .map_err(|e| format!("setgroups: {e}"))?;
        syscall
            .set_id(Uid::from_raw(p.user().uid()), Gid::from_raw(p.user().gid()))
            .map_err(|e| format!("set uid and gid: {e}"))?;
        syscall
            .close_range(self.preserve_fds)
            .map_err(|e| format!("close file descriptors: {e}"))?;
        capabilities::reset_effective(syscall.as_ref())
            .map_err(|e| format!("reset effective capabilities: {e}"))?;
        if let Some(caps) = p.capabilities() {
            capabilities::drop_privileges(caps, syscall.as_ref())
                .map_err(|e| format!("drop capabilities: {e}"))?;
        }
        if chdir_later {
            nix::unistd::chdir(cwd).map_err(|e| chdir_error(cwd, e))?;
        }
        // A cwd reached through a path outside the mount namespace's root would be
        // unreachable (getcwd fails); the process must start inside the container.
        if !nix::unistd::getcwd().is_ok_and(|d| d.is_absolute()) {
            return Err(OUTSIDE_ROOT.into());
        }
        self.executor
            .validate(&plan.spec)
            .map_err(|e| e.to_string())?;
        self.executor
            .setup_envs(plan.envs.clone())
            .map_err(|e| e.to_string())?;
        self.executor.exec(&plan.spec).map_err(|e| e.to_string())?;
        Err("the executor returned without exec".into())
    }
}

/// runc's words for a cwd outside the container's root.
const OUTSIDE_ROOT: &str = "current working directory is outside of container mount namespace root -- possible container breakout detected";

/// Gathered in vzrun before the fork.
struct Plan {
    pidfd: OwnedFd,
    /// Whether the container has a PID namespace of its own to be born in.
    pid_ns: bool,
    /// The other namespaces the container has of its own.
    flags: CloneFlags,
    /// The container's cgroup in every hierarchy that has it.
    cgroups: Vec<PathBuf>,
    envs: HashMap<String, String>,
    /// The container's spec with this process, for the executor.
    spec: Spec,
}

/// runc's words for a cwd the process cannot enter.
fn chdir_error(cwd: &Path, e: nix::errno::Errno) -> String {
    format!(
        "chdir to cwd ({:?}) set in config.json failed: {}",
        cwd.display().to_string(),
        e.desc().to_lowercase()
    )
}

/// An I/O error as Go prints it: the errno's text in lower case.
fn lower(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).desc().to_lowercase(),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxBuilder, LinuxNamespaceBuilder, ProcessBuilder, SpecBuilder};

    fn spec_with(ns: &[LinuxNamespaceType]) -> Spec {
        let namespaces = ns
            .iter()
            .map(|t| LinuxNamespaceBuilder::default().typ(*t).build().unwrap())
            .collect::<Vec<_>>();
        SpecBuilder::default()
            .linux(
                LinuxBuilder::default()
                    .namespaces(namespaces)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    }

    #[test]
    fn only_what_this_launcher_does_goes_through_it() {
        use LinuxNamespaceType::*;
        let plain = ProcessBuilder::default().build().unwrap();
        assert!(Launch::fits(&spec_with(&[Pid, Mount, Network]), &plain));
        assert!(!Launch::fits(&spec_with(&[Pid, User]), &plain));
        assert!(!Launch::fits(&spec_with(&[Pid, Time]), &plain));
        let tty = ProcessBuilder::default().terminal(true).build().unwrap();
        assert!(!Launch::fits(&spec_with(&[Pid]), &tty));
        let apparmor = ProcessBuilder::default()
            .apparmor_profile("x")
            .build()
            .unwrap();
        assert!(!Launch::fits(&spec_with(&[Pid]), &apparmor));
    }

    #[test]
    fn a_cwd_error_uses_runcs_words() {
        assert_eq!(
            chdir_error(Path::new("/nonexist"), nix::errno::Errno::ENOENT),
            "chdir to cwd (\"/nonexist\") set in config.json failed: no such file or directory"
        );
    }
}
