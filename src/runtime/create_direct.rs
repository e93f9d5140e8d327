//! Create's own launcher: vzrun clones the container's init itself, in its new
//! namespaces, without libcontainer's intermediate process.
//!
//! libcontainer forks an intermediate process that builds a cgroup manager and joins
//! the cgroups, unshares the PID namespace and forks the init, which then enters the
//! other namespaces and sets up the rootfs through checked /proc handles. Measured with
//! `strace -f` on `run` of /bin/true: 687 system calls in the intermediate and 1565 in
//! the init, about 1400 of them in the rootfs setup (each mount target verified through
//! a fresh /proc handle). Here one clone3(2) makes the init in every new namespace at
//! once (born PID 1 of its PID namespace, so no intermediate is needed), vzrun places
//! it in its cgroups from outside, and the init sets up its rootfs with vzrun's own
//! steps (`rootfs`), resolving every mount target inside the rootfs with openat2(2).
//!
//! The container's state is libcontainer's (its state file, its config and its notify
//! socket in the container's directory), so `start`, `kill`, `delete`, `state` and the
//! exec path work on a container made here exactly as on one libcontainer made. What
//! this launcher does not do it leaves to libcontainer: [`Direct::fits`] sends there a
//! user or time namespace, a namespace path for the PID, mount or cgroup namespace,
//! prestart/createRuntime/createContainer hooks, AppArmor or SELinux labels, a
//! personality, I/O priority, scheduler, memory policy, Intel RDT, network devices, a
//! seccomp agent, LISTEN_FDS, a long console socket path, a spec libcontainer would
//! refuse (so that its words are the ones printed), and any mount `rootfs` does not do.

use std::convert::Infallible;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use libcontainer::config::YoukiConfig;
use libcontainer::container::{Container, ContainerStatus};
use libcontainer::syscall::syscall::create_syscall;
use libcontainer::workload::Executor;
use nix::sched::CloneFlags;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::runtime::error::{Error, Result};
use crate::runtime::exec_direct::{take_credentials, OUTSIDE_ROOT};
use crate::runtime::executor::VzExecutor;
use crate::runtime::rootfs::RootfsPlan;

/// libcontainer's names in the container's directory: `start` connects to the socket.
const NOTIFY_FILE: &str = "notify.sock";

/// A create this launcher does.
pub struct Direct<'a> {
    pub id: &'a str,
    /// The state root (canonical), where the container's directory goes.
    pub root: &'a Path,
    /// What libcontainer's state names as the bundle: vzrun's directory of the VE, with
    /// the derived config.
    pub bundle: &'a Path,
    /// The derived spec, as written to the bundle above.
    pub spec: &'a Spec,
    pub executor: &'a VzExecutor,
    pub console_socket: Option<&'a Path>,
    pub preserve_fds: i32,
    pub no_pivot: bool,
    /// Whether the caller returns at once (a terminal then needs a console socket).
    pub detach: bool,
}

/// What is decided before the fork.
struct Plan {
    rootfs: RootfsPlan,
    /// Namespaces the init is born in.
    clone_flags: u64,
    /// Namespaces it joins by path, opened here; entered in this order.
    join: Vec<(OwnedFd, CloneFlags)>,
    cgroup_ns: bool,
    uts_new: bool,
    console: Option<OwnedFd>,
    envs: std::collections::HashMap<String, String>,
    cgroup_path: PathBuf,
}

impl<'a> Direct<'a> {
    /// The rootfs plan when this launcher does everything the create asks for; None
    /// sends the create to libcontainer.
    fn plan(&self) -> Option<std::result::Result<Plan, Error>> {
        let spec = self.spec;
        let linux = spec.linux().as_ref()?;
        let process = spec.process().as_ref()?;
        // A spec libcontainer refuses goes there, for its words.
        if !spec.version().starts_with("1.")
            || libcontainer::validator::Validator::validate_spec(spec).is_err()
        {
            return None;
        }
        let hooks = spec.hooks().as_ref();
        let create_hooks = hooks.is_some_and(|h| {
            #[allow(deprecated)]
            let prestart = h.prestart().as_ref().is_some_and(|v| !v.is_empty());
            prestart
                || h.create_runtime().as_ref().is_some_and(|v| !v.is_empty())
                || h.create_container().as_ref().is_some_and(|v| !v.is_empty())
        });
        // libcontainer's check of the terminal against the console socket, and its words.
        let terminal = process.terminal() == Some(true);
        if (self.detach && terminal) != self.console_socket.is_some() {
            return None;
        }
        let console_long = self
            .console_socket
            .is_some_and(|p| p.as_os_str().len() >= 100);
        if create_hooks
            || console_long
            || self.executor.has_agent()
            || linux.personality().is_some()
            || linux.intel_rdt().is_some()
            || linux.memory_policy().is_some()
            || linux.net_devices().as_ref().is_some_and(|d| !d.is_empty())
            || linux.mount_label().is_some()
            || process.apparmor_profile().is_some()
            || process.selinux_label().is_some()
            || process.io_priority().is_some()
            || process.scheduler().is_some()
            || process.exec_cpu_affinity().is_some()
            || std::env::var_os("LISTEN_FDS").is_some()
        {
            return None;
        }
        let mut clone_flags = 0u64;
        let mut join = Vec::new();
        let mut cgroup_ns = false;
        let mut uts_new = false;
        let mut mount_ns = false;
        for ns in linux.namespaces().iter().flatten() {
            let (flag, may_join) = match ns.typ() {
                LinuxNamespaceType::Pid => (CloneFlags::CLONE_NEWPID, false),
                LinuxNamespaceType::Mount => (CloneFlags::CLONE_NEWNS, false),
                LinuxNamespaceType::Cgroup => (CloneFlags::CLONE_NEWCGROUP, false),
                LinuxNamespaceType::Network => (CloneFlags::CLONE_NEWNET, true),
                LinuxNamespaceType::Ipc => (CloneFlags::CLONE_NEWIPC, true),
                LinuxNamespaceType::Uts => (CloneFlags::CLONE_NEWUTS, true),
                LinuxNamespaceType::User | LinuxNamespaceType::Time => return None,
            };
            match ns.path() {
                Some(path) if may_join => match std::fs::File::open(path) {
                    Ok(f) => join.push((OwnedFd::from(f), flag)),
                    // libcontainer names the path in its error.
                    Err(_) => return None,
                },
                Some(_) => return None,
                None => {
                    match ns.typ() {
                        // Unshared by the init once it is in its cgroup, so that the
                        // namespace's root is the container's cgroup.
                        LinuxNamespaceType::Cgroup => cgroup_ns = true,
                        LinuxNamespaceType::Mount => {
                            mount_ns = true;
                            clone_flags |= flag.bits() as u64;
                        }
                        LinuxNamespaceType::Uts => {
                            uts_new = true;
                            clone_flags |= flag.bits() as u64;
                        }
                        _ => clone_flags |= flag.bits() as u64,
                    }
                }
            }
        }
        let cgroup_path = libcontainer::utils::get_cgroup_path(linux.cgroups_path(), self.id);
        let rootfs = spec.root().as_ref()?.path();
        let rootfs = match RootfsPlan::plan(
            spec,
            rootfs,
            &cgroup_path,
            mount_ns,
            cgroup_ns,
            self.no_pivot,
        ) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!("create through libcontainer: {e}");
                return None;
            }
        };
        let console = match self.console_socket {
            Some(path) => match std::os::unix::net::UnixStream::connect(path) {
                Ok(s) => Some(OwnedFd::from(s)),
                Err(e) => {
                    return Some(Err(Error::io("connect to the console socket", path, e)));
                }
            },
            None => None,
        };
        Some(Ok(Plan {
            rootfs,
            clone_flags,
            join,
            cgroup_ns,
            uts_new,
            console,
            envs: libcontainer::utils::parse_env(process.env().as_deref().unwrap_or(&[])),
            cgroup_path,
        }))
    }

    /// Creates the container, or returns None when libcontainer is to.
    pub fn create(&self) -> Option<Result<Container>> {
        let plan = match self.plan()? {
            Ok(p) => p,
            Err(e) => return Some(Err(e)),
        };
        Some(self.create_planned(plan))
    }

    fn create_planned(&self, plan: Plan) -> Result<Container> {
        let dir = self.root.join(self.id);
        // libcontainer's own check and words: the directory is the container's.
        if dir.exists() {
            return Err(Error::Exists);
        }
        std::fs::create_dir(&dir).map_err(|e| Error::io("create", &dir, e))?;
        let made = (|| -> Result<(Container, Pid)> {
            let mut container =
                Container::new(self.id, ContainerStatus::Creating, None, self.bundle, &dir)?;
            container
                .set_systemd(false)
                .set_annotations(self.spec.annotations().clone());
            container.save()?;
            YoukiConfig::from_spec(self.spec, self.id)
                .and_then(|c| c.save(&dir))
                .map_err(|e| Error::Libcontainer(e.to_string()))?;
            let pid = self.spawn(&plan, &dir)?;
            container
                .set_status(ContainerStatus::Created)
                .set_creator(nix::unistd::geteuid().as_raw())
                .set_pid(pid.as_raw());
            if let Err(e) = container.save() {
                kill_and_reap(pid);
                return Err(e.into());
            }
            Ok((container, pid))
        })();
        match made {
            Ok((container, _)) => Ok(container),
            Err(e) => {
                if let Ok(m) = crate::sys::cgroups::manager(&plan.cgroup_path, self.id) {
                    use libcgroups::common::CgroupManager;
                    let _ = m.remove();
                }
                let _ = std::fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }

    /// Clones the init, places it in its cgroups and waits until it is ready for
    /// `start`; returns its host pid, or why it is not (the init is gone then).
    fn spawn(&self, plan: &Plan, dir: &Path) -> Result<Pid> {
        let failed = |what: &str, e: &dyn std::fmt::Display| {
            Error::Step(format!("unable to start container process: {what}: {e}"))
        };
        let cloexec = nix::fcntl::OFlag::O_CLOEXEC;
        let (go_read, go_write) = nix::unistd::pipe2(cloexec).map_err(|e| failed("pipe", &e))?;
        let (err_read, err_write) = nix::unistd::pipe2(cloexec).map_err(|e| failed("pipe", &e))?;
        let (ready_read, ready_write) =
            nix::unistd::pipe2(cloexec).map_err(|e| failed("pipe", &e))?;
        let notify = bind_notify(dir).map_err(|e| failed("listen on the notify socket", &e))?;
        // Until it execs, the init runs vzrun with what vzrun holds: not dumpable, so no
        // process of the container can ptrace it or open its /proc files; exec(2) makes
        // it dumpable again (libcontainer does the same before its fork).
        nix::sys::prctl::set_dumpable(false).map_err(|e| failed("prctl(PR_SET_DUMPABLE)", &e))?;
        let hidden = crate::sys::process::hide_args();
        let forked = crate::sys::process::clone3(plan.clone_flags, libc::SIGCHLD as u64);
        if !matches!(forked, Ok(0)) {
            drop(hidden);
        }
        let child = match forked {
            Ok(0) => {
                drop(go_write);
                drop(err_read);
                drop(ready_read);
                let Err(why) = self.init(plan, go_read, &err_write, ready_write, notify);
                let _ = std::fs::File::from(err_write).write_all(why.as_bytes());
                // SAFETY: ends the cloned init without running the parent's exit handlers
                // or flushing buffers it shares with the parent.
                unsafe { libc::_exit(1) }
            }
            Ok(pid) => Pid::from_raw(pid),
            Err(e) => return Err(failed("clone", &e)),
        };
        drop(go_read);
        drop(err_write);
        drop(ready_write);
        drop(notify);
        // In its cgroups before it runs anything of the container's: the init waits for
        // the go below, and the limits apply from its first allocation on.
        let placed = self.place(child, &plan.cgroup_path);
        if let Err(e) = placed {
            kill_and_reap(child);
            return Err(e);
        }
        let _ = std::fs::File::from(go_write).write_all(b"g");
        let mut byte = [0u8; 1];
        let ready = std::fs::File::from(ready_read).read(&mut byte).unwrap_or(0) == 1;
        if ready {
            return Ok(child);
        }
        let mut why = String::new();
        let _ = std::fs::File::from(err_read).read_to_string(&mut why);
        kill_and_reap(child);
        if why.is_empty() {
            why = "the init ended before it was ready".into();
        }
        Err(Error::Step(format!(
            "unable to start container process: {why}"
        )))
    }

    /// libcontainer's cgroup steps for an init: join, then the spec's resources.
    fn place(&self, pid: Pid, cgroup_path: &Path) -> Result<()> {
        use libcgroups::common::{CgroupManager, ControllerOpt};
        let resources = self
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref());
        if let Some(placed) =
            crate::sys::cgroups::place_v1_init(cgroup_path, pid.as_raw(), resources)
        {
            return placed
                .map_err(|e| Error::Step(format!("unable to apply cgroup configuration: {e}")));
        }
        let manager = crate::sys::cgroups::manager(cgroup_path, self.id)?;
        let failed = |e: &dyn std::fmt::Display| {
            Error::Step(format!("unable to apply cgroup configuration: {e}"))
        };
        manager.add_task(pid).map_err(|e| failed(&e))?;
        if let Some(resources) = self
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref())
        {
            manager
                .apply(&ControllerOpt {
                    resources,
                    freezer_state: None,
                    oom_score_adj: None,
                    disable_oom_killer: false,
                })
                .map_err(|e| failed(&e))?;
        }
        Ok(())
    }

    /// The init, from its birth in its namespaces to the exec of the container's
    /// process: libcontainer's init steps in its order. Returns only with the reason it
    /// stopped.
    fn init(
        &self,
        plan: &Plan,
        go: OwnedFd,
        err_write: &OwnedFd,
        ready: OwnedFd,
        notify: UnixListener,
    ) -> std::result::Result<Infallible, String> {
        let spec = self.spec;
        let process = spec.process().as_ref().ok_or("process missing")?;
        let syscall = create_syscall();
        // Nothing until vzrun has placed it in its cgroups: vzrun gone, nothing to do.
        // Everything of vzrun's the init does not need goes at once: it waits for `start`
        // with the container able to see it, and a process exec'd with CAP_SYS_PTRACE
        // opens what it holds through /proc/1/fd (vzrun's lock file on the host, a
        // procfs handle of the host's PID namespace that libraries cache). The caller's
        // stdio and preserved descriptors stay.
        let notify_fd = OwnedFd::from(notify);
        let mut keep: Vec<&OwnedFd> = vec![&go, err_write, &ready, &notify_fd];
        keep.extend(plan.console.as_ref());
        keep.extend(plan.join.iter().map(|(fd, _)| fd));
        crate::sys::process::close_all_but(3 + self.preserve_fds.max(0), &keep)
            .map_err(|e| format!("close file descriptors: {e}"))?;
        let notify = UnixListener::from(notify_fd);
        let mut byte = [0u8; 1];
        if std::fs::File::from(go).read(&mut byte).unwrap_or(0) != 1 {
            return Err("vzrun ended before the init was placed in its cgroups".into());
        }
        nix::unistd::setsid().map_err(|e| format!("setsid: {e}"))?;
        if let Some(adj) = process.oom_score_adj() {
            std::fs::write("/proc/self/oom_score_adj", adj.to_string())
                .map_err(|e| format!("write /proc/self/oom_score_adj: {e}"))?;
        }
        for r in process.rlimits().iter().flatten() {
            syscall
                .set_rlimit(r)
                .map_err(|e| format!("error setting rlimit type {:?}: {e}", r.typ()))?;
        }
        for (fd, flag) in &plan.join {
            nix::sched::setns(fd.as_fd(), *flag)
                .map_err(|e| format!("join namespace {flag:?}: {}", e.desc()))?;
        }
        if plan.cgroup_ns {
            nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP)
                .map_err(|e| format!("unshare the cgroup namespace: {}", e.desc()))?;
        }
        if plan.uts_new {
            if let Some(h) = spec.hostname() {
                syscall
                    .set_hostname(h)
                    .map_err(|e| format!("set hostname {h:?}: {e}"))?;
            }
            if let Some(d) = spec.domainname() {
                syscall
                    .set_domainname(d)
                    .map_err(|e| format!("set domainname {d:?}: {e}"))?;
            }
        }
        if process.no_new_privileges() == Some(true) {
            nix::sys::prctl::set_no_new_privs().map_err(|e| format!("no_new_privs: {e}"))?;
        }
        plan.rootfs.prepare().map_err(|e| e.to_string())?;
        plan.rootfs.enter().map_err(|e| e.to_string())?;
        if let Some(params) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) {
            for (key, value) in params {
                write_sysctl(key, value)?;
            }
        }
        if let Some(console) = &plan.console {
            libcontainer::tty::setup_console(syscall.as_ref(), console.as_raw_fd(), true)
                .map_err(|e| format!("set up the terminal: {e}"))?;
        }
        if let Some(umask) = process.user().umask() {
            let mode = nix::sys::stat::Mode::from_bits(umask)
                .ok_or_else(|| format!("invalid umask {umask:o}"))?;
            nix::sys::stat::umask(mode);
        }
        plan.rootfs.finish().map_err(|e| e.to_string())?;
        take_credentials(process, self.preserve_fds)?;
        if !nix::unistd::getcwd().is_ok_and(|d| d.is_absolute()) {
            return Err(OUTSIDE_ROOT.into());
        }
        self.executor.validate(spec).map_err(|e| e.to_string())?;
        self.executor
            .setup_envs(plan.envs.clone())
            .map_err(|e| e.to_string())?;
        // Ready: vzrun records the container as created and returns.
        std::fs::File::from(ready)
            .write_all(b"r")
            .map_err(|e| format!("tell vzrun the init is ready: {e}"))?;
        wait_for_start(&notify).map_err(|e| format!("wait for start: {e}"))?;
        drop(notify);
        self.executor.exec(spec).map_err(|e| e.to_string())?;
        Err("the executor returned without exec".into())
    }
}

/// Binds libcontainer's notify socket in `dir`, through the directory's descriptor so
/// that a long state root still fits a socket address.
fn bind_notify(dir: &Path) -> std::io::Result<UnixListener> {
    let d = std::fs::File::open(dir)?;
    let path = format!("/proc/self/fd/{}/{NOTIFY_FILE}", d.as_raw_fd());
    UnixListener::bind(path)
}

/// Waits for `start`'s connection and its message (libcontainer's protocol: it writes
/// and closes).
fn wait_for_start(listener: &UnixListener) -> std::io::Result<()> {
    let (mut stream, _) = listener.accept()?;
    let mut msg = String::new();
    stream.read_to_string(&mut msg)?;
    Ok(())
}

/// Writes one of the spec's sysctls in the container's /proc/sys; the key cannot name
/// anything outside it (no `..`, no links followed).
fn write_sysctl(key: &str, value: &str) -> std::result::Result<(), String> {
    let rel = key.replace('.', "/");
    let err = |e: &dyn std::fmt::Display| format!("write sysctl {key:?}: {e}");
    if rel.split('/').any(|c| c.is_empty() || c == "..") {
        return Err(err(&"not a sysctl name"));
    }
    let dir = crate::sys::fs::open_dir_nofollow(Path::new("/proc/sys")).map_err(|e| err(&e))?;
    let fs = nix::sys::statfs::fstatfs(&dir).map_err(|e| err(&e))?;
    if fs.filesystem_type() != nix::sys::statfs::PROC_SUPER_MAGIC {
        return Err(err(&"/proc/sys is not procfs"));
    }
    let mut file = crate::sys::fs::open_at(
        &dir,
        Path::new(&rel),
        nix::fcntl::OFlag::O_WRONLY,
        nix::sys::stat::Mode::empty(),
        nix::fcntl::ResolveFlag::RESOLVE_BENEATH
            | nix::fcntl::ResolveFlag::RESOLVE_NO_SYMLINKS
            | nix::fcntl::ResolveFlag::RESOLVE_NO_MAGICLINKS,
    )
    .map_err(|e| err(&e))?;
    file.write_all(value.as_bytes()).map_err(|e| err(&e))
}

fn kill_and_reap(pid: Pid) {
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(pid, None);
}
