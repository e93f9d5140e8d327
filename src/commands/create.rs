//! `vzrun create`: prepare the VE on the host, then have libcontainer create the init
//! and leave it waiting for `start` (`runtime::create`).

use std::path::PathBuf;

use anyhow::Result;

use crate::cli::GlobalOpts;
use crate::runtime::create::CreateOptions;

#[derive(clap::Args, Debug)]
#[command(about = "Create a container")]
pub struct Args {
    /// Path to the root of the bundle directory
    #[arg(short = 'b', long, default_value = ".")]
    pub bundle: PathBuf,
    /// Path to an AF_UNIX socket which will receive the console's pseudoterminal master
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// File to write the process id to
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
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
    let (_container, _lock) = super::runtime(global).create(CreateOptions {
        id: args.id,
        bundle: args.bundle,
        console_socket: args.console_socket,
        pid_file: args.pid_file,
        no_pivot: args.no_pivot,
        preserve_fds: args.preserve_fds,
        detach: true,
        spec: None,
        trusted: false,
    })?;
    Ok(0)
}
