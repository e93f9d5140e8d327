//! `vzrun run`: create and start in one step; in the foreground, wait for the init and
//! return its exit status, then delete the container (unless `--keep`).

use std::path::PathBuf;

use anyhow::{anyhow, Result};

use crate::cli::GlobalOpts;
use crate::runtime::root::Root;
use crate::sys::pty::ConsoleSocket;

use super::create::{create_container, CreateOpts};

#[derive(clap::Args, Debug)]
#[command(about = "Create and run a container")]
pub struct Args {
    /// Path to the root of the bundle directory
    #[arg(short = 'b', long, default_value = ".")]
    pub bundle: PathBuf,
    /// Path to an AF_UNIX socket which will receive the console's pseudoterminal master
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Detach from the container's process
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Do not delete the container after it exits
    #[arg(long)]
    pub keep: bool,
    /// File to write the process id to
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Disable the use of the subreaper used to reap reparented processes
    #[arg(long = "no-subreaper")]
    pub no_subreaper: bool,
    /// Do not use pivot root to jail the process inside rootfs
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Do not create a new session keyring for the container
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    /// Pass N additional file descriptors to the container
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: i32,
    pub id: String,
}

pub fn run(args: Args, global: &GlobalOpts) -> Result<i32> {
    let root = Root::from_opts(global)?;
    // The init is re-parented to us when libcontainer's intermediate process exits; we
    // must be its reaper to collect its exit status.
    if !args.detach {
        super::become_subreaper()?;
    }
    // Read once here and handed to create; a config that does not load is reported by
    // create, with the same words as for `vzrun create`.
    let spec = super::create::load_spec(&args.bundle).ok();
    let terminal = spec
        .as_ref()
        .and_then(|s| s.process().as_ref().and_then(|p| p.terminal()))
        .unwrap_or(false);
    let own_console = if !args.detach && terminal && args.console_socket.is_none() {
        root.ensure()?;
        Some(ConsoleSocket::new(&root.path)?)
    } else {
        None
    };
    let console_socket = args
        .console_socket
        .clone()
        .or_else(|| own_console.as_ref().map(|c| c.path().to_path_buf()));
    let (mut container, lock) = create_container(
        &root,
        global,
        CreateOpts {
            id: &args.id,
            bundle: &args.bundle,
            console_socket: console_socket.clone(),
            pid_file: args.pid_file.clone(),
            no_pivot: args.no_pivot,
            preserve_fds: args.preserve_fds,
            detach: args.detach || console_socket.is_some(),
            spec,
        },
    )?;
    let master = match &own_console {
        Some(c) => Some(c.receive_master()?),
        None => None,
    };
    let pid = container.pid().map(|p| p.as_raw()).unwrap_or(0);
    if let Err(e) = super::start::start_container(&mut container) {
        drop(lock);
        let _ = super::delete::delete_container(&root, &args.id, true);
        return Err(e);
    }
    drop(lock);
    if args.detach {
        return Ok(0);
    }
    super::forward_signals(pid);
    let relay = master.map(|m| std::thread::spawn(move || crate::sys::pty::relay(m)));
    let code = super::wait_exit(pid);
    if let Some(t) = relay {
        let _ = t.join();
    }
    if !args.keep {
        super::delete::delete_container(&root, &args.id, true)
            .map_err(|e| anyhow!("delete after run: {e:#}"))?;
    }
    Ok(code)
}
