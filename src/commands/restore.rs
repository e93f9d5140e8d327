//! `vzrun restore`: not available yet; a clear error with exit status 1.

use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::cli::GlobalOpts;

#[derive(clap::Args, Debug)]
#[command(about = "Restore a container from a checkpoint (not supported yet)")]
pub struct Args {
    #[arg(long = "image-path")]
    pub image_path: Option<PathBuf>,
    #[arg(long = "work-path")]
    pub work_path: Option<PathBuf>,
    #[arg(long = "parent-path")]
    pub parent_path: Option<PathBuf>,
    #[arg(short = 'b', long)]
    pub bundle: Option<PathBuf>,
    #[arg(short = 'd', long)]
    pub detach: bool,
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    #[arg(long = "no-subreaper")]
    pub no_subreaper: bool,
    #[arg(long = "tcp-established")]
    pub tcp_established: bool,
    #[arg(long = "tcp-close")]
    pub tcp_close: bool,
    #[arg(long = "ext-unix-sk")]
    pub ext_unix_sk: bool,
    #[arg(long = "shell-job")]
    pub shell_job: bool,
    #[arg(long = "file-locks")]
    pub file_locks: bool,
    #[arg(long = "manage-cgroups-mode")]
    pub manage_cgroups_mode: Option<String>,
    #[arg(long = "empty-ns")]
    pub empty_ns: Vec<String>,
    #[arg(long = "auto-dedup")]
    pub auto_dedup: bool,
    #[arg(long = "lazy-pages")]
    pub lazy_pages: bool,
    #[arg(long = "lsm-profile")]
    pub lsm_profile: Option<String>,
    #[arg(long = "lsm-mount-context")]
    pub lsm_mount_context: Option<String>,
    #[arg(long = "keep-on-hook-failure")]
    pub keep_on_hook_failure: bool,
    pub id: Option<String>,
}

pub fn run(_args: Args, _global: &GlobalOpts) -> Result<i32> {
    bail!("restore is not supported by this version of vzrun")
}
