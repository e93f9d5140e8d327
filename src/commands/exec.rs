//! `vzrun exec`: run another process inside a running container.

use std::path::PathBuf;

use anyhow::{anyhow, Result};
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::ContainerStatus;
use libcontainer::syscall::syscall::SyscallType;

use crate::cli::GlobalOpts;
use crate::runtime::executor::{lend_sys_admin, VzExecutor};
use crate::runtime::root::Root;
use crate::sys::pty::ConsoleSocket;

use super::ExitError;

#[derive(clap::Args, Debug)]
#[command(about = "Execute new process inside the container")]
pub struct Args {
    /// Path to an AF_UNIX socket which will receive the console's pseudoterminal master
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Current working directory in the container
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Set environment variables (KEY=VALUE)
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub tty: bool,
    /// UID (format: <uid>[:<gid>])
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Additional gids
    #[arg(short = 'g', long = "additional-gids")]
    pub additional_gids: Vec<u32>,
    /// Path to the process.json
    #[arg(short = 'p', long)]
    pub process: Option<PathBuf>,
    /// Detach from the container's process
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// File to write the process id to
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Set the asm process label for the process commonly used with selinux
    #[arg(long = "process-label")]
    pub process_label: Option<String>,
    /// Set the apparmor profile for the process
    #[arg(long)]
    pub apparmor: Option<String>,
    /// Set the no new privileges value for the process
    #[arg(long = "no-new-privs")]
    pub no_new_privs: bool,
    /// Add a capability to the bounding set for the process
    #[arg(short = 'c', long = "cap")]
    pub cap: Vec<String>,
    /// Pass N additional file descriptors to the container
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: i32,
    /// Allow exec in a paused container
    #[arg(long = "ignore-paused")]
    pub ignore_paused: bool,
    /// Execute a process in a sub-cgroup
    #[arg(long = "cgroup")]
    pub cgroup: Option<String>,
    pub id: String,
    /// The command and its arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

fn fail(msg: impl std::fmt::Display) -> anyhow::Error {
    ExitError {
        code: 255,
        msg: format!("exec failed: {msg}"),
    }
    .into()
}

/// Removed when dropped, whatever happens to the exec.
struct TempFile(std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn parse_user(user: &str) -> Result<(u32, Option<u32>)> {
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let uid = u
        .parse::<u32>()
        .map_err(|_| anyhow!("--user: {user:?} is not <uid>[:<gid>]"))?;
    let gid = match g {
        Some(g) => Some(
            g.parse::<u32>()
                .map_err(|_| anyhow!("--user: {user:?} is not <uid>[:<gid>]"))?,
        ),
        None => None,
    };
    Ok((uid, gid))
}

pub fn run(args: Args, global: &GlobalOpts) -> Result<i32> {
    exec(args, global).map_err(|e| {
        if e.downcast_ref::<ExitError>().is_some() {
            e
        } else {
            fail(format!("{e:#}"))
        }
    })
}

fn exec(args: Args, global: &GlobalOpts) -> Result<i32> {
    let root = Root::from_opts(global)?;
    let loaded = root.load(&args.id)?;
    match loaded.container.status() {
        ContainerStatus::Stopped => return Err(fail("cannot exec in a stopped container")),
        ContainerStatus::Paused if !args.ignore_paused => {
            return Err(fail("cannot exec in a paused container"))
        }
        _ => {}
    }
    if args.process.is_none() && args.command.is_empty() {
        return Err(fail("args must not be empty"));
    }
    let (uid, gid) = match &args.user {
        Some(u) => {
            let (u, g) = parse_user(u)?;
            (Some(u), g)
        }
        None => (None, None),
    };
    // The process document is read once (it may be a pipe such as /dev/stdin) and handed
    // to libcontainer as a private copy, with CAP_SYS_ADMIN lent if seccomp needs it.
    let derived = super::create::load_spec(&root.ve_dir(&args.id))?;
    let has_seccomp = derived
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
        .is_some();
    // Without --process the process is built as runc builds it from the flags: the
    // container's own (user, cwd, rlimits such as numfile, capabilities) with the flags'
    // changes. libcontainer would start from defaults (root, /, 1024 open files).
    let mut process = match &args.process {
        Some(path) => {
            let data =
                std::fs::read(path).map_err(|e| anyhow!("--process {}: {e}", path.display()))?;
            let de = &mut serde_json::Deserializer::from_slice(&data);
            serde_path_to_error::deserialize::<_, oci_spec::runtime::Process>(de)
                .map_err(|e| anyhow!("--process: {}: {}", e.path(), e.inner()))?
        }
        None => {
            let mut p = process_from_flags(&derived, &args, uid, gid);
            // `ve set --numfile` changed the VE's processes after the spec was written.
            if let Some(n) = loaded.record.ve.numfile {
                crate::ve::resources::set_numfile(&mut p, n);
            }
            p
        }
    };
    let terminal = args.tty || process.terminal().unwrap_or(false);
    // A process built from the container's carries the init's capabilities, CAP_SYS_ADMIN
    // included where create lent it for seccomp: returned the same way, unless asked for.
    let lent = if args.process.is_none() && loaded.record.lent_sys_admin {
        !args.cap.iter().any(|c| c == "CAP_SYS_ADMIN")
    } else {
        lend_sys_admin(has_seccomp, &mut process)
    };
    let process_copy = TempFile(
        root.ve_dir(&args.id)
            .join(format!("process-{}.json", std::process::id())),
    );
    std::fs::write(&process_copy.0, serde_json::to_vec(&process)?)
        .map_err(|e| anyhow!("write {}: {e}", process_copy.0.display()))?;
    if !args.detach {
        super::become_subreaper()?;
    }
    let own_console = if !args.detach && terminal && args.console_socket.is_none() {
        Some(ConsoleSocket::new(&root.path)?)
    } else {
        None
    };
    let console_socket = args
        .console_socket
        .clone()
        .or_else(|| own_console.as_ref().map(|c| c.path().to_path_buf()));
    let executor = VzExecutor::new(&derived, lent)?;
    let pid = ContainerBuilder::new(args.id.clone(), SyscallType::default())
        .with_root_path(&root.path)
        .map_err(|e| anyhow!("{e}"))?
        .with_pid_file(args.pid_file.clone())
        .map_err(|e| anyhow!("{e}"))?
        .with_console_socket(console_socket.clone())
        .with_preserved_fds(args.preserve_fds)
        .with_executor(executor)
        .as_tenant()
        .with_detach(args.detach || console_socket.is_some())
        .with_process(Some(process_copy.0.clone()))
        .with_ignore_paused(args.ignore_paused)
        .with_sub_cgroup(args.cgroup.clone())
        .with_process_label(args.process_label.clone())
        .build()
        .map_err(|e| fail(super::create::describe(&e)))?;
    drop(loaded);
    if args.detach {
        return Ok(0);
    }
    let master = match &own_console {
        Some(c) => Some(c.receive_master()?),
        None => None,
    };
    super::forward_signals(pid.as_raw());
    let relay = master.map(|m| std::thread::spawn(move || crate::sys::pty::relay(m)));
    let code = super::wait_exit(pid.as_raw());
    if let Some(t) = relay {
        let _ = t.join();
    }
    Ok(code)
}

/// The process `runc exec` makes from its flags: the container's own process with the
/// command, a terminal only with -t, the extra environment (a variable given again
/// replaces the container's), and what --cwd, --user, --additional-gids (added to the
/// container's), --cap,
/// --no-new-privs, --apparmor and --process-label change.
fn process_from_flags(
    derived: &oci_spec::runtime::Spec,
    args: &Args,
    uid: Option<u32>,
    gid: Option<u32>,
) -> oci_spec::runtime::Process {
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
    if let Some(uid) = uid {
        user.set_uid(uid);
    }
    if let Some(gid) = gid {
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
        .cap
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_forms() {
        assert_eq!(parse_user("1000").unwrap(), (1000, None));
        assert_eq!(parse_user("1000:50").unwrap(), (1000, Some(50)));
        assert!(parse_user("bob")
            .unwrap_err()
            .to_string()
            .contains("--user"));
        assert!(parse_user("1:x").is_err());
    }
}
