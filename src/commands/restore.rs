//! `vzrun restore`: bring a checkpointed VE back (vzctl restore), prepared as `create`
//! prepares it, between its pre-restore and post-restore action scripts
//! (`runtime::restore`).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::cli::GlobalOpts;
use crate::runtime::restore::RestoreOptions;
use crate::ve::checkpoint::RestoreOpts;

#[derive(clap::Args, Debug)]
#[command(about = "Restore a container from a previous checkpoint")]
#[command(
    after_help = "Example:\n  vzrun restore --image-path /var/lib/ckpt/web --bundle /srv/bundles/web -d web"
)]
pub struct Args {
    #[command(flatten)]
    pub criu: super::checkpoint::CriuFlags,
    /// Path to the bundle (default: the current directory)
    #[arg(short = 'b', long)]
    pub bundle: Option<PathBuf>,
    /// Detach from the container's process
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// File to write the process id to
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the terminal's master
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Do not use pivot_root (accepted for compatibility)
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Do not make vzrun a subreaper (accepted for compatibility)
    #[arg(long = "no-subreaper")]
    pub no_subreaper: bool,
    /// Close restored TCP connections instead of reviving them
    #[arg(long = "tcp-close")]
    pub tcp_close: bool,
    /// LSM profile for the restored processes (TYPE:NAME)
    #[arg(long = "lsm-profile")]
    pub lsm_profile: Option<String>,
    /// SELinux context for mounts of the restored VE
    #[arg(long = "lsm-mount-context")]
    pub lsm_mount_context: Option<String>,
    /// Keep the restored VE running when its post-restore action script fails
    #[arg(long = "keep-on-hook-failure")]
    pub keep_on_hook_failure: bool,
    pub id: Option<String>,
}

pub fn run(args: Args, global: &GlobalOpts) -> Result<i32> {
    let Some(id) = args.id else {
        bail!("\"restore\" requires exactly 1 argument(s)");
    };
    crate::runtime::root::validate_id(&id)?;
    if args.criu.tcp_established && args.tcp_close {
        bail!("--tcp-established and --tcp-close cannot be used together");
    }
    let criu = RestoreOpts {
        criu: args.criu.opts()?,
        tcp_close: args.tcp_close,
        lsm_profile: args.lsm_profile,
        lsm_mount_context: args.lsm_mount_context,
        lazy_daemon: None,
        leave_mounts: None,
    };
    if !criu.criu.image.is_dir() {
        bail!(
            "--image-path: {} is not a directory",
            criu.criu.image.display()
        );
    }
    let bundle = match args.bundle {
        Some(b) => b,
        None => std::env::current_dir().context("current directory")?,
    };
    let (start, image) = (std::time::Instant::now(), criu.criu.image.clone());
    let code = super::runtime(global).restore(RestoreOptions {
        id: id.clone(),
        bundle,
        criu,
        console_socket: args.console_socket,
        pid_file: args.pid_file,
        detach: args.detach,
        keep_on_hook_failure: args.keep_on_hook_failure,
        action_limit: None,
        trusted: false,
    })?;
    // In the foreground the restore returns when the process has ended: too late for it.
    if args.detach {
        super::checkpoint::summary(format!(
            "Restored {id} from {}: {}, {}",
            image.display(),
            super::checkpoint::mib(crate::ve::checkpoint::image_size(&image)),
            crate::logging::human(start.elapsed())
        ));
    }
    Ok(code)
}
