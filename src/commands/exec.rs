//! `vzrun exec`: run another process inside a running container.

use std::path::PathBuf;

use anyhow::{anyhow, Result};

use crate::cli::GlobalOpts;
use crate::runtime::exec::{ExecOptions, ProcessFlags, ProcessSource};

use super::ExitError;

#[derive(clap::Args, Debug)]
#[command(about = "Execute new process inside the container")]
#[command(after_help = "Examples:\n  vzrun exec web ps\n  vzrun exec -t web sh")]
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

/// runc exits 255 with "exec failed: …" whatever went wrong.
pub fn run(args: Args, global: &GlobalOpts) -> Result<i32> {
    exec(args, global).map_err(|e| fail(format!("{e:#}")))
}

fn exec(args: Args, global: &GlobalOpts) -> Result<i32> {
    let process = match args.process {
        Some(path) => ProcessSource::File(path),
        None => {
            let (uid, gid) = match &args.user {
                Some(u) => {
                    let (u, g) = parse_user(u)?;
                    (Some(u), g)
                }
                None => (None, None),
            };
            ProcessSource::Flags(ProcessFlags {
                command: args.command,
                tty: args.tty,
                env: args.env,
                cwd: args.cwd,
                uid,
                gid,
                additional_gids: args.additional_gids,
                caps: args.cap,
                no_new_privs: args.no_new_privs,
                apparmor: args.apparmor,
                process_label: args.process_label.clone(),
            })
        }
    };
    let code = super::runtime(global).exec(ExecOptions {
        id: args.id,
        process,
        tty: args.tty,
        console_socket: args.console_socket,
        pid_file: args.pid_file,
        detach: args.detach,
        // runc takes a negative count as none; libcontainer would close stdio.
        preserve_fds: args.preserve_fds.max(0),
        ignore_paused: args.ignore_paused,
        cgroup: args.cgroup,
        process_label: args.process_label,
    })?;
    Ok(code)
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
