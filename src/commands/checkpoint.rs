//! `vzrun checkpoint`: not available yet. It answers with a clear error and exit status 1
//! even for `--help`, because podman takes a successful `checkpoint --help` to mean that
//! the runtime can checkpoint.

use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::cli::GlobalOpts;

#[derive(clap::Args, Debug)]
#[command(
    about = "Checkpoint a running container (not supported yet)",
    disable_help_flag = true
)]
pub struct Args {
    #[arg(short = 'h', long = "help")]
    pub help: bool,
    #[arg(long = "image-path")]
    pub image_path: Option<PathBuf>,
    #[arg(long = "work-path")]
    pub work_path: Option<PathBuf>,
    #[arg(long = "parent-path")]
    pub parent_path: Option<PathBuf>,
    #[arg(long = "leave-running")]
    pub leave_running: bool,
    #[arg(long = "tcp-established")]
    pub tcp_established: bool,
    #[arg(long = "ext-unix-sk")]
    pub ext_unix_sk: bool,
    #[arg(long = "shell-job")]
    pub shell_job: bool,
    #[arg(long = "file-locks")]
    pub file_locks: bool,
    #[arg(long = "pre-dump")]
    pub pre_dump: bool,
    #[arg(long = "manage-cgroups-mode")]
    pub manage_cgroups_mode: Option<String>,
    #[arg(long = "empty-ns")]
    pub empty_ns: Vec<String>,
    #[arg(long = "page-server")]
    pub page_server: Option<String>,
    #[arg(long = "lazy-pages")]
    pub lazy_pages: bool,
    #[arg(long = "status-fd")]
    pub status_fd: Option<i32>,
    #[arg(long = "auto-dedup")]
    pub auto_dedup: bool,
    pub id: Option<String>,
}

pub fn run(_args: Args, _global: &GlobalOpts) -> Result<i32> {
    bail!("checkpoint is not supported by this version of vzrun")
}
