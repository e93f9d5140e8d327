//! `vzrun checkpoint`: dump a running VE with CRIU (vzctl chkpnt), around the
//! pre-checkpoint and post-checkpoint action scripts (`runtime::checkpoint`). Without
//! --leave-running the VE is gone afterwards, as with runc. `checkpoint --help` succeeds only where CRIU works:
//! podman takes its exit status to mean that the runtime can checkpoint.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};

use crate::cli::GlobalOpts;
use crate::commands::out::out;
use crate::runtime::checkpoint::CheckpointOptions;
use crate::ve::checkpoint::{parse_empty_ns, CgroupsMode, CriuOpts, DumpOpts, PageServerAddr};

#[derive(clap::Args, Debug)]
#[command(about = "Checkpoint a running container", disable_help_flag = true)]
pub struct Args {
    #[arg(short = 'h', long = "help")]
    pub help: bool,
    #[command(flatten)]
    pub criu: CriuFlags,
    #[arg(long = "leave-running")]
    pub leave_running: bool,
    #[arg(long = "pre-dump")]
    pub pre_dump: bool,
    #[arg(long = "page-server")]
    pub page_server: Option<String>,
    #[arg(long = "status-fd")]
    pub status_fd: Option<i32>,
    pub id: Option<String>,
}

/// The flags checkpoint and restore share, as runc names them.
#[derive(clap::Args, Debug, Default)]
pub struct CriuFlags {
    /// Path to CRIU image files (default ./checkpoint)
    #[arg(long = "image-path")]
    pub image_path: Option<PathBuf>,
    /// Path for CRIU work files and logs
    #[arg(long = "work-path")]
    pub work_path: Option<PathBuf>,
    /// Path for previous CRIU image files (pre-dump)
    #[arg(long = "parent-path")]
    pub parent_path: Option<PathBuf>,
    /// Allow open TCP connections
    #[arg(long = "tcp-established")]
    pub tcp_established: bool,
    /// Allow external unix sockets
    #[arg(long = "ext-unix-sk")]
    pub ext_unix_sk: bool,
    /// Allow shell jobs
    #[arg(long = "shell-job")]
    pub shell_job: bool,
    /// Handle file locks, for safety
    #[arg(long = "file-locks")]
    pub file_locks: bool,
    /// Cgroups mode: soft (default), full, strict or ignore
    #[arg(long = "manage-cgroups-mode")]
    pub manage_cgroups_mode: Option<String>,
    /// Create a namespace, but do not restore its properties
    #[arg(long = "empty-ns")]
    pub empty_ns: Vec<String>,
    /// Enable auto deduplication of memory images
    #[arg(long = "auto-dedup")]
    pub auto_dedup: bool,
    /// Use userfaultfd to lazily restore memory pages
    #[arg(long = "lazy-pages")]
    pub lazy_pages: bool,
}

impl CriuFlags {
    /// The options; the image directory defaults to ./checkpoint, as runc's does. A bad
    /// value is named by its flag.
    pub fn opts(&self) -> Result<CriuOpts> {
        let image = match &self.image_path {
            Some(p) => p.clone(),
            None => std::env::current_dir()
                .context("current directory")?
                .join("checkpoint"),
        };
        let mode = self.manage_cgroups_mode.as_deref().unwrap_or_default();
        Ok(CriuOpts {
            image,
            work: self.work_path.clone(),
            parent: self.parent_path.clone(),
            tcp_established: self.tcp_established,
            ext_unix_sk: self.ext_unix_sk,
            shell_job: self.shell_job,
            file_locks: self.file_locks,
            manage_cgroups_mode: CgroupsMode::parse(mode)
                .map_err(|e| flag_err("--manage-cgroups-mode", e))?,
            empty_net_ns: parse_empty_ns(&self.empty_ns).map_err(|e| flag_err("--empty-ns", e))?,
            auto_dedup: self.auto_dedup,
            lazy_pages: self.lazy_pages,
            stopper: None,
        })
    }
}

fn flag_err(flag: &str, problem: String) -> anyhow::Error {
    anyhow!("{flag}: {problem}")
}

const HELP: &str = "Checkpoint a running container

Usage: vzrun checkpoint [OPTIONS] <container-id>

Options:
      --image-path <DIR>           path for saving criu image files (default ./checkpoint)
      --work-path <DIR>            path for saving work files and logs
      --parent-path <DIR>          path for previous criu image files in pre-dump
      --leave-running              leave the process running after checkpointing
      --tcp-established            allow open tcp connections
      --ext-unix-sk                allow external unix sockets
      --shell-job                  allow shell jobs
      --file-locks                 handle file locks, for safety
      --pre-dump                   dump container's memory information only, leave the container running after this
      --manage-cgroups-mode <MODE> cgroups mode: soft (default), full, strict or ignore
      --empty-ns <NS>              create a namespace, but don't restore its properties
      --page-server <ADDR:PORT>    ADDRESS:PORT of the page server
      --lazy-pages                 use userfaultfd to lazily restore memory pages
      --status-fd <FD>             criu writes \\0 to this FD once lazy-pages is ready
      --auto-dedup                 enable auto deduplication of memory images
  -h, --help                       print help

Action scripts (annotations): io.vzrun.hooks.pre-checkpoint, io.vzrun.hooks.post-checkpoint
(a host command, or ve:CMD run inside the VE).
";

pub fn run(args: Args, global: &GlobalOpts) -> Result<i32> {
    if args.help {
        if !crate::ve::checkpoint_available() {
            bail!("checkpoint is not available: criu is missing or `criu check` fails");
        }
        out!("{HELP}")?;
        return Ok(0);
    }
    let Some(id) = args.id.clone() else {
        bail!("\"checkpoint\" requires exactly 1 argument(s)");
    };
    let page_server = args
        .page_server
        .as_deref()
        .map(PageServerAddr::parse)
        .transpose()
        .map_err(|e| flag_err("--page-server", e))?;
    let dump = DumpOpts {
        criu: args.criu.opts()?,
        leave_running: args.leave_running || args.pre_dump,
        pre_dump: args.pre_dump,
        page_server,
        status_fd: args.status_fd,
        skip_in_flight: false,
    };
    super::runtime(global).checkpoint(&CheckpointOptions { id, dump })?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_name_their_flag() {
        let flags = CriuFlags {
            manage_cgroups_mode: Some("hard".into()),
            ..Default::default()
        };
        let err = format!("{:#}", flags.opts().unwrap_err());
        assert!(
            err.starts_with("--manage-cgroups-mode: invalid value \"hard\""),
            "{err}"
        );
        let flags = CriuFlags {
            empty_ns: vec!["pid".into()],
            ..Default::default()
        };
        assert!(format!("{:#}", flags.opts().unwrap_err()).starts_with("--empty-ns: "));
    }
}
