//! `vzrun ve enter ID`: a login shell inside a running VE, on a terminal, through the
//! same path as `vzrun exec -t`.

use anyhow::{bail, Result};
use libcontainer::container::ContainerStatus;

use crate::cli::GlobalOpts;
use crate::commands::exec;
use crate::runtime::root::Root;

#[derive(clap::Args, Debug)]
pub struct EnterArgs {
    pub id: String,
}

/// root's login shell from the VE's own /etc/passwd, read inside the VE.
const LOGIN: &str = "cd /root 2>/dev/null || cd /; \
    s=$(sed -n 's/^root:[^:]*:0:[^:]*:[^:]*:[^:]*://p' /etc/passwd 2>/dev/null); \
    exec \"${s:-/bin/sh}\" -l";

pub fn run(root: &Root, global: &GlobalOpts, args: EnterArgs) -> Result<i32> {
    super::existing_ve(&args.id)?;
    match root.read(&args.id) {
        Ok((c, _)) if c.status() == ContainerStatus::Running => {}
        _ => bail!("VE {} is not running (vzrun ve start {})", args.id, args.id),
    }
    let term = std::env::var("TERM").unwrap_or_else(|_| "linux".to_string());
    exec::run(
        exec::Args {
            console_socket: None,
            cwd: None,
            env: vec![format!("TERM={term}"), "HOME=/root".to_string()],
            tty: true,
            user: None,
            additional_gids: Vec::new(),
            process: None,
            detach: false,
            pid_file: None,
            process_label: None,
            apparmor: None,
            no_new_privs: false,
            cap: Vec::new(),
            preserve_fds: 0,
            ignore_paused: false,
            cgroup: None,
            id: args.id,
            command: vec!["/bin/sh".to_string(), "-c".to_string(), LOGIN.to_string()],
        },
        global,
    )
}
