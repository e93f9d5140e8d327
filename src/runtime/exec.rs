//! Exec: another process in a running container. Without a process document the process
//! is built as runc builds it: the container's own (user, cwd, rlimits such as numfile,
//! capabilities) with the flags' changes; libcontainer would start from defaults (root,
//! `/`, 1024 open files).

use std::path::PathBuf;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::ContainerStatus;
use libcontainer::syscall::syscall::SyscallType;
use oci_spec::runtime::{Process, Spec};

use crate::runtime::bundle::load_spec;
use crate::runtime::error::{Error, Result};
use crate::runtime::exec_direct::Launch;
use crate::runtime::executor::{lend_sys_admin, VzExecutor};
use crate::runtime::foreground::{become_subreaper, follow, Forwarding};
use crate::runtime::lifecycle::can_exec;
use crate::runtime::root::Loaded;
use crate::runtime::run::{console, terminal_err};
use crate::runtime::seccomp_agent::{AgentState, Relay};
use crate::runtime::Runtime;

/// What `runc exec`'s flags change in the container's process.
#[derive(Default)]
pub struct ProcessFlags {
    pub command: Vec<String>,
    pub tty: bool,
    pub env: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub additional_gids: Vec<u32>,
    pub caps: Vec<String>,
    pub no_new_privs: bool,
    pub apparmor: Option<String>,
    pub process_label: Option<String>,
}

/// Where the process comes from: a process document (`-p`), or the flags.
pub enum ProcessSource {
    File(PathBuf),
    Flags(ProcessFlags),
}

pub struct ExecOptions {
    pub id: String,
    pub process: ProcessSource,
    /// A terminal whatever the process document says (`-t`).
    pub tty: bool,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub detach: bool,
    pub preserve_fds: i32,
    pub ignore_paused: bool,
    pub cgroup: Option<String>,
    pub process_label: Option<String>,
}

/// Removed when dropped, whatever happens to the exec.
struct TempFile(PathBuf);

/// A state root of the exec's own, holding a copy of the container's state: libcontainer
/// makes its per-exec sockets (tenant-notify-*, tenant-tty-*) in the container's
/// directory under the root it is given and leaves them there, one more for every exec
/// until the container is deleted; here they go with the view. For a created container
/// the copy says "running": libcontainer execs only into a running (or paused)
/// container, runc also into a created one, whose init waits for `start` with its
/// namespaces made. Inside the ID's own directory, so a delete takes it along even after
/// a killed exec; removed when dropped.
struct ExecView(PathBuf);

impl ExecView {
    fn new(
        state_dir: &std::path::Path,
        ve_dir: &std::path::Path,
        id: &str,
        as_running: bool,
    ) -> Result<Self> {
        let view = ExecView(ve_dir.join(format!("exec-{}", std::process::id())));
        let dir = view.0.join(id);
        crate::sys::fs::private_dir(&dir).map_err(|e| Error::io("create", &dir, e))?;
        let from = state_dir.join("state.json");
        let text = std::fs::read(&from).map_err(|e| Error::io("read", &from, e))?;
        let to = dir.join("state.json");
        let doc = if as_running {
            let mut state: serde_json::Value = serde_json::from_slice(&text)
                .map_err(|e| Error::Step(format!("{}: {e}", from.display())))?;
            state["status"] = serde_json::Value::from("running");
            serde_json::to_vec(&state).map_err(|e| Error::Step(e.to_string()))?
        } else {
            text
        };
        std::fs::write(&to, doc).map_err(|e| Error::io("write", &to, e))?;
        Ok(view)
    }
}

impl Drop for ExecView {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Runtime {
    /// Returns the process's exit status in the foreground, 0 when detached.
    pub fn exec(&self, opts: ExecOptions) -> Result<i32> {
        let _step = tracing::debug_span!("exec", id = %opts.id).entered();
        // Before vzrun opens anything of its own where the caller's descriptors go.
        crate::sys::fs::check_preserved_fds(opts.preserve_fds).map_err(Error::Step)?;
        let loaded = self.root.load(&opts.id)?;
        can_exec(loaded.container.status(), opts.ignore_paused)?;
        // Relative to where the caller stands, fixed before anything starts (runc's way).
        let pid_file = match &opts.pid_file {
            Some(p) => {
                Some(std::path::absolute(p).map_err(|e| Error::io("resolve pid file", p, e))?)
            }
            None => None,
        };
        if let ProcessSource::Flags(f) = &opts.process {
            if f.command.is_empty() {
                return Err(Error::Config("args must not be empty".into()));
            }
        }
        // The process document is read once (it may be a pipe such as /dev/stdin) and
        // handed to libcontainer as a private copy, with CAP_SYS_ADMIN lent if seccomp
        // needs it.
        let ve_dir = self.root.ve_dir(&opts.id);
        let derived = load_spec(&ve_dir)?;
        let has_seccomp = derived
            .linux()
            .as_ref()
            .and_then(|l| l.seccomp().as_ref())
            .is_some();
        let (mut process, from_flags, caps_inherited) = match &opts.process {
            ProcessSource::File(path) => {
                let data = std::fs::read(path)
                    .map_err(|e| Error::Config(format!("--process {}: {e}", path.display())))?;
                let mut p = parse_process(&data)?;
                let caps_inherited = inherit_from_container(&mut p, &derived);
                (p, None, caps_inherited)
            }
            ProcessSource::Flags(f) => {
                let mut p = process_from_flags(&derived, f, loaded.record.home_added);
                // `ve set --numfile` changed the VE's processes after the spec was written.
                if let Some(n) = loaded.record.ve.numfile {
                    crate::ve::resources::set_numfile(&mut p, n);
                }
                (p, Some(f), false)
            }
        };
        // HOME read by vzrun, never by libcontainer through the VE's NSS (sys::passwd).
        if let Some(pid) = loaded.container.pid() {
            let root = PathBuf::from(format!("/proc/{}/root", pid.as_raw()));
            crate::runtime::bundle::give_home(&mut process, &root);
        }
        let label = opts
            .process_label
            .clone()
            .or_else(|| process.selinux_label().clone());
        crate::runtime::bundle::refuse_selinux_label(label.as_deref())?;
        let sub_cgroup = match &opts.cgroup {
            Some(arg) => Some(sub_cgroup(&derived, arg)?),
            None => None,
        };
        let terminal = opts.tty || process.terminal().unwrap_or(false);
        // A process built from the container's carries the init's capabilities,
        // CAP_SYS_ADMIN included where create lent it for seccomp: returned the same way,
        // unless asked for.
        let lent = match from_flags {
            Some(f) if loaded.record.lent_sys_admin => !f.caps.iter().any(|c| c == "CAP_SYS_ADMIN"),
            None if caps_inherited && loaded.record.lent_sys_admin => true,
            _ => lend_sys_admin(has_seccomp, &mut process),
        };
        let forwarding = if opts.detach {
            None
        } else {
            become_subreaper()?;
            Some(Forwarding::begin()?)
        };
        let (console_socket, own_console) = console(
            &self.root.path,
            opts.console_socket.clone(),
            !opts.detach && terminal,
        )?;
        // runc tells the agent "running", with the init's pid in the state.
        let init_pid = loaded.container.pid().map(|p| p.as_raw());
        let (executor, relay) = VzExecutor::new(&derived, lent)?.with_agent(|| AgentState {
            id: opts.id.clone(),
            status: "running",
            bundle: loaded.record.bundle.clone(),
            annotations: derived.annotations().clone().unwrap_or_default(),
            init_pid,
            ..AgentState::default()
        })?;
        let status = loaded.container.status();
        let direct = match init_pid {
            Some(pid)
                if status == ContainerStatus::Running
                    && terminal == console_socket.is_some()
                    // sun_path's limit; libcontainer reaches a longer path through a
                    // link of its own.
                    && console_socket
                        .as_ref()
                        .is_none_or(|p| p.as_os_str().len() < 100)
                    && relay.is_none()
                    && sub_cgroup.is_none()
                    && label.is_none()
                    && Launch::fits(&derived, &process) =>
            {
                Some(pid)
            }
            _ => None,
        };
        let pid = match direct {
            Some(init_pid) => {
                let launch = Launch {
                    init_pid,
                    init_start: loaded.record.init_start,
                    derived: &derived,
                    process: &process,
                    executor: &executor,
                    preserve_fds: opts.preserve_fds,
                    console_socket: console_socket.as_deref(),
                };
                let ready = launch.prepare()?;
                // runc holds no lock across an exec: a process the tenant stops before
                // it execs must not hold up a kill or a delete of its container.
                drop(loaded);
                launch.spawn(ready)?
            }
            None => self.exec_libcontainer(
                &opts,
                loaded,
                &process,
                Tenant {
                    derived: &derived,
                    executor,
                    relay,
                    console_socket,
                    sub_cgroup,
                },
            )?,
        };
        // Written here rather than by libcontainer, which only warns when it cannot: runc
        // fails the exec and ends the process it started.
        if let Some(path) = &pid_file {
            if let Err(e) = crate::sys::fs::write_pid_file(path, pid.as_raw()) {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                return Err(Error::Step(e.to_string()));
            }
        }
        let Some(forwarding) = forwarding else {
            return Ok(0);
        };
        let master = match &own_console {
            Some(c) => Some(c.receive_master().map_err(terminal_err)?),
            None => None,
        };
        let code = follow(pid.as_raw(), master, forwarding)?;
        Ok(code)
    }
}

/// What libcontainer's tenant path is given besides the process.
struct Tenant<'a> {
    derived: &'a Spec,
    executor: VzExecutor,
    relay: Option<Relay>,
    console_socket: Option<PathBuf>,
    sub_cgroup: Option<String>,
}

impl Runtime {
    /// Starts the process through libcontainer's tenant builder: for what vzrun's own
    /// launcher (`exec_direct`) leaves to it.
    fn exec_libcontainer(
        &self,
        opts: &ExecOptions,
        loaded: Loaded,
        process: &Process,
        t: Tenant,
    ) -> Result<nix::unistd::Pid> {
        let ve_dir = self.root.ve_dir(&opts.id);
        let process_copy = TempFile(ve_dir.join(format!("process-{}.json", std::process::id())));
        let doc = serde_json::to_vec(process).map_err(|e| Error::Step(e.to_string()))?;
        std::fs::write(&process_copy.0, doc).map_err(|e| Error::io("write", &process_copy.0, e))?;
        let status = loaded.container.status();
        let view = ExecView::new(
            &self.root.container_dir(&opts.id),
            &ve_dir,
            &opts.id,
            status == ContainerStatus::Created,
        )?;
        let state_root = &view.0;
        // libcontainer reads the view, not the container's state: the lock goes before
        // the build, as under runc. A process the tenant stops before it execs must not
        // hold up a kill or a delete, and into a paused container (--ignore-paused) the
        // process freezes as it joins the cgroup, and libcontainer's build waits for it
        // until a resume, which needs this lock, thaws it.
        drop(loaded);
        // Forked from here, the process is born in the container's unified cgroup, which
        // libcontainer's v1 manager does not join (runc's does).
        let unified = match t
            .derived
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().as_ref())
        {
            Some(path) => crate::sys::cgroups::join_unified(path, false)?,
            None => None,
        };
        // libcontainer's forks are seen by the container before they exec.
        let hidden = crate::sys::process::hide_args();
        let built = ContainerBuilder::new(opts.id.clone(), SyscallType::default())
            .with_root_path(state_root)?
            .with_pid_file(None::<PathBuf>)?
            .with_console_socket(t.console_socket.clone())
            .with_preserved_fds(opts.preserve_fds)
            .with_executor(t.executor)
            .as_tenant()
            .with_detach(opts.detach || t.console_socket.is_some())
            .with_process(Some(process_copy.0.clone()))
            .with_ignore_paused(opts.ignore_paused)
            .with_sub_cgroup(t.sub_cgroup)
            .with_process_label(opts.process_label.clone())
            .build();
        drop(hidden);
        drop(unified);
        // A failed hand-off fails the process too: the agent's error is the one to tell.
        let relayed = t.relay.map_or(Ok(()), |r| r.finish(built.is_ok()));
        let pid = match (built, relayed) {
            (Ok(pid), Ok(())) => pid,
            (Ok(pid), Err(e)) => {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                return Err(e.into());
            }
            (Err(_), Err(e)) => return Err(e.into()),
            (Err(e), Ok(())) => return Err(e.into()),
        };
        drop(view);
        Ok(pid)
    }
}

/// The sub-cgroup of `exec --cgroup [CONTROLLER[,CONTROLLER]:]PATH`, which must exist as
/// in runc: libcontainer would make it (in every hierarchy, a `CONTROLLER:` prefix taken
/// as part of the name) and leave it behind.
fn sub_cgroup(derived: &Spec, arg: &str) -> Result<String> {
    let (controllers, sub) = match arg.split_once(':') {
        Some((c, p)) => (c.split(',').filter(|c| !c.is_empty()).collect(), p),
        None => (Vec::new(), arg),
    };
    let Some(path) = derived
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().clone())
    else {
        return Err(Error::Config(
            "--cgroup: the container has no cgroup path".into(),
        ));
    };
    let dirs = crate::sys::cgroups::sub_cgroup_dirs(&path, sub, &controllers);
    if dirs.is_empty() && !controllers.is_empty() {
        return Err(Error::Config(format!(
            "--cgroup: no such controller: {}",
            controllers.join(",")
        )));
    }
    if let Some(missing) = dirs.iter().find(|d| !d.is_dir()) {
        // runc's words, but for the pid it has by then and this check runs before.
        return Err(Error::Step(format!(
            "unable to start container process: error adding pid to cgroups: open {}: no such file or directory",
            missing.join("cgroup.procs").display()
        )));
    }
    // libcontainer joins the sub-cgroup in every hierarchy: where it is missing outside
    // the controllers named, it would be made and left behind.
    let every = crate::sys::cgroups::sub_cgroup_dirs(&path, sub, &[]);
    if let Some(missing) = every.iter().find(|d| !d.is_dir()) {
        return Err(Error::Config(format!(
            "--cgroup {arg}: vzrun joins a sub-cgroup in every controller, and {} does not exist",
            missing.display()
        )));
    }
    Ok(sub.to_string())
}

/// What a process document leaves out is the container's: capabilities (as runc;
/// libcontainer would keep all of vzrun's), the AppArmor profile and the OOM score (as
/// runc; libcontainer would keep the caller's), and rlimits (runc 1.1.5 keeps the
/// caller's, which may be above what the container was given: the container's limits
/// are the stricter choice); no_new_privileges stays unset, as runc leaves it. Returns
/// whether the capabilities came from the container.
fn inherit_from_container(p: &mut Process, derived: &Spec) -> bool {
    let Some(own) = derived.process().as_ref() else {
        return false;
    };
    let caps = p.capabilities().is_none() && own.capabilities().is_some();
    if caps {
        p.set_capabilities(own.capabilities().clone());
    }
    if p.rlimits().as_ref().is_none_or(|r| r.is_empty()) {
        p.set_rlimits(own.rlimits().clone());
    }
    if p.apparmor_profile().is_none() {
        p.set_apparmor_profile(own.apparmor_profile().clone());
    }
    if p.oom_score_adj().is_none() {
        p.set_oom_score_adj(own.oom_score_adj());
    }
    caps
}

/// A process document (`exec -p`). A missing `user` is root, as in runc (Go's zero
/// value); oci-spec requires the field.
fn parse_process(data: &[u8]) -> Result<Process> {
    let bad = |path: &dyn std::fmt::Display, e: &dyn std::fmt::Display| {
        Error::Config(format!("--process: {path}: {e}"))
    };
    let de = &mut serde_json::Deserializer::from_slice(data);
    let mut doc: serde_json::Value =
        serde_path_to_error::deserialize(de).map_err(|e| bad(e.path(), e.inner()))?;
    if let Some(obj) = doc.as_object_mut() {
        obj.entry("user")
            .or_insert_with(|| serde_json::json!({"uid": 0, "gid": 0}));
    }
    serde_path_to_error::deserialize::<_, Process>(doc).map_err(|e| bad(e.path(), e.inner()))
}

/// The process `runc exec` makes from its flags: the container's own process with the
/// command, a terminal only with -t, the extra environment (a variable given again
/// replaces the container's), and what --cwd, --user, --additional-gids (added to the
/// container's), --cap,
/// --no-new-privs, --apparmor and --process-label change.
fn process_from_flags(derived: &Spec, args: &ProcessFlags, home_added: bool) -> Process {
    let mut p = derived.process().clone().unwrap_or_default();
    p.set_terminal(Some(args.tty));
    p.set_console_size(None);
    p.set_args(Some(args.command.clone()));
    let key = |kv: &str| kv.split('=').next().unwrap_or("").to_string();
    let given: Vec<String> = args
        .env
        .iter()
        .map(|kv| {
            if kv.contains('=') {
                kv.clone()
            } else {
                format!("{kv}=")
            }
        })
        .collect();
    let mut env: Vec<String> = p
        .env()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|kv| !given.iter().any(|g| key(g) == key(kv)))
        // The HOME vzrun gave the init is its user's: this process's user gets its own.
        .filter(|kv| !(home_added && key(kv) == "HOME"))
        .collect();
    for (i, kv) in given.iter().enumerate() {
        // A variable given twice on the command line: the last one counts.
        if !given[i + 1..].iter().any(|g| key(g) == key(kv)) {
            env.push(kv.clone());
        }
    }
    p.set_env(Some(env));
    if let Some(cwd) = &args.cwd {
        p.set_cwd(cwd.clone());
    }
    let mut user = p.user().clone();
    if let Some(uid) = args.uid {
        user.set_uid(uid);
    }
    if let Some(gid) = args.gid {
        user.set_gid(gid);
    }
    if !args.additional_gids.is_empty() {
        // runc adds them to the container's own.
        let mut gids = user.additional_gids().clone().unwrap_or_default();
        gids.extend(&args.additional_gids);
        user.set_additional_gids(Some(gids));
    }
    p.set_user(user);
    let extra: Vec<oci_spec::runtime::Capability> = args
        .caps
        .iter()
        .filter_map(|c| serde_json::from_value(serde_json::json!(c)).ok())
        .collect();
    if !extra.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        let add = |set: &Option<oci_spec::runtime::Capabilities>| {
            let mut set = set.clone().unwrap_or_default();
            set.extend(extra.iter().copied());
            Some(set)
        };
        let (bnd, eff, perm) = (
            add(caps.bounding()),
            add(caps.effective()),
            add(caps.permitted()),
        );
        caps.set_bounding(bnd);
        caps.set_effective(eff);
        caps.set_permitted(perm);
        p.set_capabilities(Some(caps));
    }
    if args.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if let Some(a) = &args.apparmor {
        p.set_apparmor_profile(Some(a.clone()));
    }
    if let Some(l) = &args.process_label {
        p.set_selinux_label(Some(l.clone()));
    }
    p
}
