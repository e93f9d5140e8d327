//! `vzrun run`: create and start in one step; in the foreground, wait for the init and
//! return its exit status, then delete the container (unless `--keep`).

use std::path::PathBuf;

use anyhow::Result;

use crate::cli::GlobalOpts;
use crate::runtime::create::CreateOptions;
use crate::runtime::run::RunOptions;

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
    let code = super::runtime(global).run(RunOptions {
        create: CreateOptions {
            id: args.id,
            bundle: args.bundle,
            console_socket: args.console_socket,
            pid_file: args.pid_file,
            no_pivot: args.no_pivot,
            preserve_fds: args.preserve_fds,
            detach: args.detach,
            spec: None,
            trusted: false,
        },
        keep: args.keep,
    })?;
    Ok(code)
}
