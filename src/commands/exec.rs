//! `vzrun exec`: run another process inside a running container.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{anyhow, Result};
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::ContainerStatus;
use libcontainer::syscall::syscall::SyscallType;

use crate::cli::GlobalOpts;
use crate::container::Root;
use crate::executor::{lend_sys_admin, VzExecutor};
use crate::pty::ConsoleSocket;

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
    let mut env = HashMap::new();
    for kv in &args.env {
        match kv.split_once('=') {
            Some((k, v)) => env.insert(k.to_string(), v.to_string()),
            None => env.insert(kv.clone(), String::new()),
        };
    }
    // The process document is read once (it may be a pipe such as /dev/stdin) and handed
    // to libcontainer as a private copy, with CAP_SYS_ADMIN lent if seccomp needs it.
    let derived = super::create::load_spec(&root.ve_dir(&args.id))?;
    let has_seccomp = derived
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
        .is_some();
    let mut lent = loaded.record.lent_sys_admin;
    let mut terminal = args.tty;
    let mut process_copy = None;
    // libcontainer builds a process from the command line without a terminal, so `-t`
    // on its own is handed over as a process document, as runc builds one.
    let from_flags = if args.process.is_none() && args.tty {
        Some(tty_process(&derived, &args, &env, uid, gid))
    } else {
        None
    };
    let given = match &args.process {
        Some(path) => {
            let data =
                std::fs::read(path).map_err(|e| anyhow!("--process {}: {e}", path.display()))?;
            let de = &mut serde_json::Deserializer::from_slice(&data);
            Some(
                serde_path_to_error::deserialize::<_, oci_spec::runtime::Process>(de)
                    .map_err(|e| anyhow!("--process: {}: {}", e.path(), e.inner()))?,
            )
        }
        None => from_flags,
    };
    if let Some(mut process) = given {
        terminal = terminal || process.terminal().unwrap_or(false);
        lent = lend_sys_admin(has_seccomp, &mut process);
        let copy = TempFile(
            root.ve_dir(&args.id)
                .join(format!("process-{}.json", std::process::id())),
        );
        std::fs::write(&copy.0, serde_json::to_vec(&process)?)
            .map_err(|e| anyhow!("write {}: {e}", copy.0.display()))?;
        process_copy = Some(copy);
    }
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
        .with_cwd(args.cwd.clone())
        .with_env(env)
        .with_container_args(args.command.clone())
        .with_process(process_copy.as_ref().map(|c| c.0.clone()))
        .with_no_new_privs(args.no_new_privs)
        .with_capabilities(args.cap.clone())
        .with_additional_gids(args.additional_gids.clone())
        .with_user(uid)
        .with_group(gid)
        .with_ignore_paused(args.ignore_paused)
        .with_sub_cgroup(args.cgroup.clone())
        .with_process_label(args.process_label.clone())
        .with_apparmor(args.apparmor.clone())
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
    let relay = master.map(|m| std::thread::spawn(move || crate::pty::relay(m)));
    let code = super::wait_exit(pid.as_raw());
    if let Some(t) = relay {
        let _ = t.join();
    }
    Ok(code)
}

/// The process libcontainer would make from the flags, with a terminal.
fn tty_process(
    derived: &oci_spec::runtime::Spec,
    args: &Args,
    env: &HashMap<String, String>,
    uid: Option<u32>,
    gid: Option<u32>,
) -> oci_spec::runtime::Process {
    let init = derived.process().clone().unwrap_or_default();
    let mut p = oci_spec::runtime::Process::default();
    p.set_terminal(Some(true));
    p.set_args(Some(args.command.clone()));
    let mut all: Vec<String> = init
        .env()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| !env.contains_key(e.split('=').next().unwrap_or("")))
        .collect();
    all.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
    p.set_env(Some(all));
    p.set_cwd(args.cwd.clone().unwrap_or_else(|| PathBuf::from("/")));
    let mut user = oci_spec::runtime::User::default();
    user.set_uid(uid.unwrap_or(0));
    user.set_gid(gid.unwrap_or(0));
    if !args.additional_gids.is_empty() {
        user.set_additional_gids(Some(args.additional_gids.clone()));
    }
    p.set_user(user);
    let mut caps = init.capabilities().clone().unwrap_or_default();
    let extra: Vec<oci_spec::runtime::Capability> = args
        .cap
        .iter()
        .filter_map(|c| serde_json::from_value(serde_json::json!(c)).ok())
        .collect();
    if !extra.is_empty() {
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
    }
    p.set_capabilities(Some(caps));
    p.set_no_new_privileges(if args.no_new_privs {
        Some(true)
    } else {
        init.no_new_privileges()
    });
    p.set_apparmor_profile(args.apparmor.clone());
    p.set_rlimits(None);
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
