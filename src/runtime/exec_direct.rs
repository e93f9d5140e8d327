//! Exec's own launcher: vzrun forks into the container itself, without libcontainer's
//! intermediate process.
//!
//! libcontainer starts an exec'd process the way it starts an init: an intermediate
//! process builds a cgroup manager, joins the cgroups and the PID namespace and forks
//! the process, which then joins the other namespaces. On a v1 or hybrid host the
//! manager alone reads mountinfo through a checked /proc handle once per controller:
//! measured with `strace -f` on `exec ID /bin/true`, the intermediate made 681 of the
//! exec's 1212 system calls (crun's whole exec: 605-635). Here the process joins what
//! the container's init is in from a pidfd of the init (`setns(2)` takes every
//! namespace in one call, and a pidfd taken under the container's lock and checked
//! against the init's start time names that process for good), and the container's
//! cgroup in every hierarchy by writing to `cgroup.procs`.
//!
//! Two steps, as runc's nsexec: everything that needs vzrun's privileges (cgroups,
//! limits, namespaces, then ids and capabilities) happens in a first child that the
//! container cannot see; the process it clones into the container's PID namespace is
//! already in the container's mounts with the container's credentials, and only makes
//! its session and terminal and runs vzrun's executor (seccomp, the lent CAP_SYS_ADMIN,
//! signal dispositions, the PATH lookup and its errors). The steps are libcontainer's
//! own code in its order, so a process started here is the process libcontainer's
//! tenant path starts. What this path does not do it leaves to that path:
//! [`Launch::fits`] sends an AppArmor or SELinux label, a user or time namespace, a
//! personality, I/O priority, scheduler or CPU affinity settings there, and the caller
//! a sub-cgroup, a seccomp agent, a long console socket path and a container that is not
//! running.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
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
    /// When it started, where the record has it: the pidfd must be of that process.
    pub init_start: Option<u64>,
    /// The container's spec (vzrun's derived one), for its namespaces and cgroup.
    pub derived: &'a Spec,
    pub process: &'a Process,
    pub executor: &'a VzExecutor,
    pub preserve_fds: i32,
    /// Where the terminal's master goes (the caller's console socket or vzrun's own),
    /// for a process with a terminal.
    pub console_socket: Option<&'a Path>,
}

impl Launch<'_> {
    /// Whether this launcher does everything the exec asks for; the caller has already
    /// ruled out a sub-cgroup, a label, a seccomp agent, a container that is not running,
    /// and a terminal without a console socket (or the other way round).
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
            // libcontainer hands LISTEN_FDS sockets on to the process (systemd's socket
            // activation); that path keeps doing it.
            && std::env::var_os("LISTEN_FDS").is_none()
    }

    /// Starts the process; returns its host pid once it has exec'd, or the reason it
    /// could not, in runc's words ("unable to start container process: …").
    ///
    /// Two steps, as runc's nsexec takes them. A first child, in vzrun's PID namespace
    /// (no process of the container can see it), joins the cgroups, takes the limits
    /// and enters every other namespace of the init; only then does it fork the process
    /// into the container's PID namespace, already inside the container's mounts. A
    /// process the container can see never has the host's root as its own: with
    /// CAP_SYS_PTRACE a container's root could otherwise stop it and reach the host's
    /// files through its /proc/PID/root. The process is forked with CLONE_PARENT, so it
    /// is vzrun's child, whose exit status vzrun collects.
    pub fn spawn(&self, plan: Prepared) -> Result<Pid> {
        let Prepared(plan) = plan;
        let failed = |what: &str, e: &dyn std::fmt::Display| {
            Error::Step(format!("unable to start container process: {what}: {e}"))
        };
        let (err_read, err_write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| failed("pipe", &e))?;
        let (pid_read, pid_write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| failed("pipe", &e))?;
        // Until it execs, the process runs vzrun with what vzrun holds: not dumpable, so
        // the container's processes without CAP_SYS_PTRACE cannot ptrace it or open its
        // /proc files (libcontainer does the same before its fork). exec(2) makes the
        // process dumpable again.
        nix::sys::prctl::set_dumpable(false).map_err(|e| failed("prctl(PR_SET_DUMPABLE)", &e))?;
        let hidden = crate::sys::process::hide_args();
        // SAFETY: vzrun has one thread here (this launcher is not used with a seccomp
        // agent, whose relay is a thread), so the child may allocate and take locks.
        let forked = unsafe { nix::unistd::fork() };
        if matches!(forked, Ok(ForkResult::Parent { .. }) | Err(_)) {
            drop(hidden);
        }
        match forked {
            Ok(ForkResult::Child) => {
                drop(err_read);
                drop(pid_read);
                let Err(why) = self.first_child(&plan, &err_write, pid_write);
                let _ = std::fs::File::from(err_write).write_all(why.as_bytes());
                // SAFETY: ends the forked child without running the parent's exit
                // handlers or flushing buffers it shares with the parent.
                unsafe { libc::_exit(1) }
            }
            Ok(ForkResult::Parent { child }) => {
                drop(err_write);
                drop(pid_write);
                // The first child exits as soon as it has forked the process.
                let _ = nix::sys::wait::waitpid(child, None);
                let mut raw = Vec::new();
                let _ = std::fs::File::from(pid_read).read_to_end(&mut raw);
                let pid = <[u8; 4]>::try_from(raw.as_slice())
                    .ok()
                    .map(|b| Pid::from_raw(i32::from_ne_bytes(b)));
                let mut why = String::new();
                let _ = std::fs::File::from(err_read).read_to_string(&mut why);
                match (pid, why.is_empty()) {
                    (Some(pid), true) => Ok(pid),
                    (pid, _) => {
                        if let Some(p) = pid {
                            let _ = nix::sys::wait::waitpid(p, None);
                        }
                        if why.is_empty() {
                            why = "the launcher ended before the process started".into();
                        }
                        Err(Error::Step(format!(
                            "unable to start container process: {why}"
                        )))
                    }
                }
            }
            Err(e) => Err(failed("fork", &e)),
        }
    }

    /// What the process needs, gathered before the fork and while the caller still
    /// holds the container's lock: the pidfd taken then names the init for good.
    pub fn prepare(&self) -> Result<Prepared> {
        self.plan().map(Prepared)
    }

    fn plan(&self) -> Result<Plan> {
        let pidfd = crate::sys::process::pidfd_open(self.init_pid)
            .map_err(|_| Error::State("container not running".into()))?;
        // The pid was read from the state before the pidfd was taken: the process must
        // still be the init that started then (a reused pid is another process's).
        if self.init_start.is_some()
            && crate::sys::process::start_time(self.init_pid) != self.init_start
        {
            return Err(Error::State("cannot exec in a stopped container".into()));
        }
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
        let console = match self.console_socket {
            Some(path) => Some(OwnedFd::from(
                std::os::unix::net::UnixStream::connect(path)
                    .map_err(|e| Error::io("connect to the console socket", path, e))?,
            )),
            None => None,
        };
        Ok(Plan {
            console,
            pidfd,
            pid_ns: types.contains(&LinuxNamespaceType::Pid),
            flags,
            cgroups,
            envs: libcontainer::utils::parse_env(self.process.env().as_deref().unwrap_or(&[])),
            spec,
        })
    }

    /// The first child: still in vzrun's PID namespace, where the container cannot see
    /// it. Returns only with the reason it stopped.
    fn first_child(
        &self,
        plan: &Plan,
        err_write: &OwnedFd,
        pid_write: OwnedFd,
    ) -> std::result::Result<Infallible, String> {
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
                    crate::sys::errno::io_words(&e)
                )
            })?;
        }
        if let Some(adj) = p.oom_score_adj() {
            std::fs::write("/proc/self/oom_score_adj", adj.to_string()).map_err(|e| {
                format!(
                    "write /proc/self/oom_score_adj: {}",
                    crate::sys::errno::io_words(&e)
                )
            })?;
        }
        if let Some(rlimits) = p.rlimits() {
            for r in rlimits {
                syscall
                    .set_rlimit(r)
                    .map_err(|e| format!("error setting rlimit type {:?}: {e}", r.typ()))?;
            }
        }
        // Every namespace at once; the PID namespace only for the children.
        let flags = match plan.pid_ns {
            true => plan.flags | CloneFlags::CLONE_NEWPID,
            false => plan.flags,
        };
        if !flags.is_empty() {
            nix::sched::setns(plan.pidfd.as_fd(), flags)
                .map_err(|e| format!("join the container's namespaces: {}", e.desc()))?;
        }
        // The process's credentials, taken here where the container cannot see this
        // process: what it forks is never more privileged than the container's
        // processes (a container root with CAP_SYS_PTRACE could otherwise take over a
        // process holding all of vzrun's capabilities). libcontainer's steps in its order.
        if p.no_new_privileges() == Some(true) {
            nix::sys::prctl::set_no_new_privs().map_err(|e| format!("no_new_privs: {e}"))?;
        }
        if let Some(umask) = p.user().umask() {
            let mode = nix::sys::stat::Mode::from_bits(umask)
                .ok_or_else(|| format!("invalid umask {umask:o}"))?;
            nix::sys::stat::umask(mode);
        }
        take_credentials(p, self.preserve_fds)?;
        // Nothing of vzrun's goes further than it must: the process gets stdio, the
        // preserved descriptors and the error pipe (its own descriptors in the preserved
        // range are close-on-exec, as under libcontainer).
        let mut keep = vec![err_write, &pid_write];
        keep.extend(plan.console.as_ref());
        crate::sys::process::close_all_but(3 + self.preserve_fds.max(0), &keep)
            .map_err(|e| format!("close file descriptors: {e}"))?;
        match crate::sys::process::clone3(libc::CLONE_PARENT as u64, 0)
            .map_err(|e| format!("clone: {e}"))?
        {
            0 => {
                drop(pid_write);
                self.in_child(plan)
            }
            child => {
                let _ = std::fs::File::from(pid_write).write_all(&child.to_ne_bytes());
                // SAFETY: ends this forked helper without running the parent's exit
                // handlers or flushing buffers it shares with the parent.
                unsafe { libc::_exit(0) }
            }
        }
    }

    /// The process, in the container's namespaces and cgroups: the steps from the session
    /// on, in libcontainer's order; returns only with the reason it stopped.
    fn in_child(&self, plan: &Plan) -> std::result::Result<Infallible, String> {
        let syscall = create_syscall();
        nix::unistd::setsid().map_err(|e| format!("setsid: {e}"))?;
        // The terminal comes from the container's own devpts (the process is in its
        // mounts by now), becomes the session's, and its master goes to the socket:
        // libcontainer's step, taken at the same point as in its init.
        if let Some(console) = &plan.console {
            use std::os::fd::AsRawFd;
            libcontainer::tty::setup_console(syscall.as_ref(), console.as_raw_fd(), false)
                .map_err(|e| format!("set up the terminal: {e}"))?;
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

/// The process's cwd, groups, ids and capabilities, libcontainer's steps in its order,
/// for an exec'd process and for an init alike; the caller's stdio and `preserve_fds`
/// descriptors go on to the process, vzrun's own are made close-on-exec.
pub(crate) fn take_credentials(p: &Process, preserve_fds: i32) -> std::result::Result<(), String> {
    let syscall = create_syscall();
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
        .close_range(preserve_fds.max(0))
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
    Ok(())
}

/// runc's words for a cwd outside the container's root.
pub(crate) const OUTSIDE_ROOT: &str = "current working directory is outside of container mount namespace root -- possible container breakout detected";

/// What [`Launch::spawn`] needs, from [`Launch::prepare`].
pub struct Prepared(Plan);

/// Gathered in vzrun before the fork.
struct Plan {
    pidfd: OwnedFd,
    /// Connected to the console socket, for a process with a terminal.
    console: Option<OwnedFd>,
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
pub(crate) fn chdir_error(cwd: &Path, e: nix::errno::Errno) -> String {
    format!(
        "chdir to cwd ({:?}) set in config.json failed: {}",
        cwd.display().to_string(),
        crate::sys::errno::words(e)
    )
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
        let nice = ProcessBuilder::default()
            .io_priority(
                oci_spec::runtime::LinuxIOPriorityBuilder::default()
                    .class(oci_spec::runtime::IOPriorityClass::IoprioClassBe)
                    .priority(4)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        assert!(!Launch::fits(&spec_with(&[Pid]), &nice));
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
