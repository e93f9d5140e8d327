//! `vzrun checkpoint`: dump a running VE with CRIU (vzctl chkpnt), around the
//! pre-checkpoint and post-checkpoint action scripts (`runtime::checkpoint`). Without
//! --leave-running the VE is gone afterwards, as with runc. `checkpoint --help` is clap's
//! and always succeeds, as runc's does: whether CRIU works here is `features`' answer.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};

use crate::cli::GlobalOpts;
use crate::runtime::checkpoint::CheckpointOptions;
use crate::ve::checkpoint::{parse_empty_ns, CgroupsMode, CriuOpts, DumpOpts, PageServerAddr};

#[derive(clap::Args, Debug)]
#[command(
    about = "Checkpoint a running container",
    after_help = "Example:\n  vzrun checkpoint --image-path /var/lib/ckpt/web --tcp-established web"
)]
pub struct Args {
    #[command(flatten)]
    pub criu: CriuFlags,
    /// Leave the process running after checkpointing
    #[arg(long = "leave-running")]
    pub leave_running: bool,
    /// Dump the container's memory only, and leave it running
    #[arg(long = "pre-dump")]
    pub pre_dump: bool,
    /// ADDRESS:PORT of the page server
    #[arg(long = "page-server", value_name = "ADDR:PORT")]
    pub page_server: Option<String>,
    /// CRIU writes a zero byte to this descriptor once lazy-pages is ready
    #[arg(long = "status-fd", value_name = "FD")]
    pub status_fd: Option<i32>,
    /// The container (VE) ID
    pub id: Option<String>,
}

/// The flags checkpoint and restore share, as runc names them.
#[derive(clap::Args, Debug, Default)]
pub struct CriuFlags {
    /// Path to CRIU image files (default ./checkpoint)
    #[arg(long = "image-path", value_name = "DIR")]
    pub image_path: Option<PathBuf>,
    /// Path for CRIU work files and logs
    #[arg(long = "work-path", value_name = "DIR")]
    pub work_path: Option<PathBuf>,
    /// Path for previous CRIU image files (pre-dump)
    #[arg(long = "parent-path", value_name = "DIR")]
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
    #[arg(long = "manage-cgroups-mode", value_name = "MODE")]
    pub manage_cgroups_mode: Option<String>,
    /// Create a namespace, but do not restore its properties
    #[arg(long = "empty-ns", value_name = "NS")]
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

/// `--parent-path` names a previous dump relative to the image directory, which must
/// exist as a directory: checked before CRIU runs, in runc's words.
fn check_parent_path(image: &std::path::Path, parent: &std::path::Path) -> Result<()> {
    if parent.is_absolute() {
        bail!("--parent-path must be relative");
    }
    // Joined and cleaned lexically, as Go's filepath.Join does: the image directory
    // need not exist yet for `../previous`.
    let mut real = PathBuf::new();
    for c in image.join(parent).components() {
        match c {
            std::path::Component::ParentDir => {
                real.pop();
            }
            std::path::Component::CurDir => {}
            other => real.push(other),
        }
    }
    match std::fs::metadata(&real) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => bail!("invalid --parent-path: {}: not a directory", real.display()),
        Err(e) => {
            let errno = nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::ENOENT));
            bail!(
                "invalid --parent-path: stat {}: {}",
                real.display(),
                errno.desc().to_lowercase()
            )
        }
    }
}

fn flag_err(flag: &str, problem: String) -> anyhow::Error {
    anyhow!("{flag}: {problem}")
}

pub fn run(args: Args, global: &GlobalOpts) -> Result<i32> {
    let Some(id) = args.id.clone() else {
        bail!("\"checkpoint\" requires exactly 1 argument(s)");
    };
    let page_server = args
        .page_server
        .as_deref()
        .map(PageServerAddr::parse)
        .transpose()
        .map_err(|e| flag_err("--page-server", e))?;
    let criu = args.criu.opts()?;
    if let Some(parent) = &criu.parent {
        check_parent_path(&criu.image, parent)?;
    }
    let dump = DumpOpts {
        criu,
        leave_running: args.leave_running || args.pre_dump,
        pre_dump: args.pre_dump,
        page_server,
        status_fd: args.status_fd,
        skip_in_flight: false,
        link_cut: false,
        plain_tmpfs_external: false,
    };
    let (start, image, what) = (
        std::time::Instant::now(),
        dump.criu.image.clone(),
        match (dump.pre_dump, dump.leave_running) {
            (true, _) => "Pre-dumped",
            (false, true) => "Checkpointed (left running)",
            (false, false) => "Checkpointed",
        },
    );
    let dumped = super::runtime(global).checkpoint(&CheckpointOptions {
        id: id.clone(),
        dump,
    })?;
    summary(format!(
        "{what} {id} into {}: {}, {} (frozen {})",
        image.display(),
        mib(crate::ve::checkpoint::image_size(&image)),
        crate::logging::human(start.elapsed()),
        crate::logging::human(dumped.frozen)
    ));
    Ok(0)
}

/// A one-line summary of a checkpoint or restore. runc prints nothing when either
/// succeeds and callers (containerd, podman, scripts comparing with runc) read stdout and
/// stderr: the line is shown to a person at a terminal only, and otherwise goes to the
/// --debug log.
pub(super) fn summary(line: String) {
    if nix::unistd::isatty(2).unwrap_or(false) {
        eprintln!("{line}");
    } else {
        tracing::debug!("{line}");
    }
}

pub(super) fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1048576.0)
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
