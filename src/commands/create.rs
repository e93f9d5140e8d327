//! `vzrun create`: prepare the VE on the host, then have libcontainer create the init
//! and leave it waiting for `start` (`runtime::create`).

use std::path::PathBuf;

use anyhow::Result;

use crate::cli::GlobalOpts;
use crate::runtime::create::CreateOptions;

/// The flags `create` and `run` share, as runc has them.
#[derive(clap::Args, Debug)]
pub struct CreateFlags {
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
}

impl CreateFlags {
    /// The runtime's options for container `id`; `detach` is false only for a
    /// foreground `run`.
    pub fn options(self, id: String, detach: bool) -> CreateOptions {
        CreateOptions {
            id,
            bundle: self.bundle,
            console_socket: self.console_socket,
            pid_file: self.pid_file,
            no_pivot: self.no_pivot,
            // runc takes a negative count as none; libcontainer would close stdio.
            preserve_fds: self.preserve_fds.max(0),
            detach,
            spec: None,
            // A bundle handed to the OCI commands is a tenant's: the host policy applies.
            trusted: false,
        }
    }
}

#[derive(clap::Args, Debug)]
#[command(about = "Create a container")]
#[command(
    after_help = "Examples:\n  vzrun create --bundle /srv/bundles/web web\n  vzrun start web"
)]
pub struct Args {
    #[command(flatten)]
    pub flags: CreateFlags,
    pub id: String,
}

pub fn run(args: Args, global: &GlobalOpts) -> Result<i32> {
    let (_container, _lock) = super::runtime(global).create(args.flags.options(args.id, true))?;
    Ok(0)
}
