//! `vzrun checkpoint`: dump a running VE with CRIU (vzctl chkpnt), around the
//! pre-checkpoint and post-checkpoint action scripts. Without --leave-running the VE is
//! gone afterwards, as with runc. `checkpoint --help` succeeds only where CRIU works:
//! podman takes its exit status to mean that the runtime can checkpoint.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};

use crate::cli::GlobalOpts;
use crate::runtime::root::Root;
use crate::runtime::state::oci_state;
use crate::ve::actions::{Action, Point, Runner};
use crate::ve::checkpoint::{self, CriuOpts, DumpOpts, DumpTarget};

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
    /// The options; the image directory defaults to ./checkpoint, as runc's does.
    pub fn opts(&self) -> Result<CriuOpts> {
        let image = match &self.image_path {
            Some(p) => p.clone(),
            None => std::env::current_dir()
                .context("current directory")?
                .join("checkpoint"),
        };
        Ok(CriuOpts {
            image,
            work: self.work_path.clone(),
            parent: self.parent_path.clone(),
            tcp_established: self.tcp_established,
            ext_unix_sk: self.ext_unix_sk,
            shell_job: self.shell_job,
            file_locks: self.file_locks,
            manage_cgroups_mode: self.manage_cgroups_mode.clone(),
            empty_ns: self.empty_ns.clone(),
            auto_dedup: self.auto_dedup,
            lazy_pages: self.lazy_pages,
            stopper: None,
        })
    }
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
        print!("{HELP}");
        return Ok(0);
    }
    let Some(id) = args.id.clone() else {
        bail!("\"checkpoint\" requires exactly 1 argument(s)");
    };
    let rt = super::runtime(global);
    let root = rt.root.clone();
    let opts = DumpOpts {
        criu: args.criu.opts()?,
        leave_running: args.leave_running || args.pre_dump,
        pre_dump: args.pre_dump,
        page_server: args.page_server.clone(),
        status_fd: args.status_fd,
        skip_in_flight: false,
    };

    // The action scripts run without the container's lock: a ve: command is a
    // `vzrun exec`, which takes it.
    let (actions, pid, state) = {
        let loaded = root.load(&id)?;
        crate::runtime::lifecycle::can_checkpoint(&id, loaded.container.status())?;
        let spec = crate::runtime::bundle::load_spec(&root.ve_dir(&id))?;
        let actions = crate::ve::config_from_spec(&spec)?.actions;
        let state = serde_json::to_string(&oci_state(&loaded.container, &loaded.record, false))?;
        (actions, loaded.container.pid().map(|p| p.as_raw()), state)
    };
    if !opts.leave_running && matches!(actions.get(Point::PostCheckpoint), Some(Action::Ve(_))) {
        bail!(
            "annotation io.vzrun.hooks.post-checkpoint: a ve: command needs --leave-running \
             (the VE is gone after the checkpoint)"
        );
    }
    let exe = std::env::current_exe().context("own executable")?;
    actions
        .run(
            Point::PreCheckpoint,
            &Runner {
                vzrun: &exe,
                root: &root.path,
                id: &id,
                state,
            },
        )
        .map_err(|e| anyhow!("{e}: checkpoint aborted, the VE keeps running"))?;

    let loaded = root.load(&id)?;
    crate::runtime::lifecycle::can_checkpoint(&id, loaded.container.status())?;
    let now = loaded.container.pid().map(|p| p.as_raw());
    if now != pid {
        bail!("container {id} changed while its pre-checkpoint script ran");
    }
    Source::of(&root, &id, &loaded)?.dump(&opts, &id)?;
    let mut state = oci_state(&loaded.container, &loaded.record, false);
    if !opts.leave_running {
        // The private area outlives the VE inside the checkpoint: delete keeps the image
        // (marked persistent for it), then it moves into the image directory.
        let private = loaded
            .record
            .ve
            .disk
            .as_ref()
            .filter(|d| !d.persistent && d.image.exists())
            .map(|d| d.image.clone());
        if private.is_some() {
            let mut rec = loaded.record.clone();
            if let Some(d) = rec.ve.disk.as_mut() {
                d.persistent = true;
            }
            rec.save(&root.ve_dir(&id))?;
        }
        // CRIU has killed the processes; what is left is the container's shell.
        let crate::runtime::root::Loaded {
            container,
            _lock: lock,
            ..
        } = loaded;
        drop(container);
        rt.delete_locked(&id, true, lock)?;
        if let Some(img) = private {
            checkpoint::move_image(&img, &opts.criu.image.join(checkpoint::PRIVATE_IMAGE))?;
        }
        state.status = "stopped".into();
        state.pid = 0;
    } else {
        drop(loaded);
        // An area saved by an earlier checkpoint into this directory is not this one's.
        let _ = std::fs::remove_file(opts.criu.image.join(checkpoint::PRIVATE_IMAGE));
    }
    actions.run(
        Point::PostCheckpoint,
        &Runner {
            vzrun: &exe,
            root: &root.path,
            id: &id,
            state: serde_json::to_string(&state)?,
        },
    )?;
    Ok(0)
}

/// What a dump needs of a running VE, read under its lock (`checkpoint`, `migrate`).
pub struct Source {
    pid: i32,
    /// The VE's root as its processes see it: a private area's overlay, else the bundle's.
    rootfs: PathBuf,
    spec: oci_spec::runtime::Spec,
    cgroup: PathBuf,
    mac: Option<String>,
    /// Read before the dump: afterwards the processes may be gone.
    counters: Vec<crate::ve::resources::Carried>,
}

impl Source {
    pub fn of(root: &Root, id: &str, loaded: &crate::runtime::root::Loaded) -> Result<Source> {
        let pid = loaded
            .container
            .pid()
            .map(|p| p.as_raw())
            .ok_or_else(|| anyhow!("container {id} has no process"))?;
        let spec = crate::runtime::bundle::load_spec(&root.ve_dir(id))?;
        let cgroup = loaded
            .container
            .spec()
            .map_err(|e| anyhow!("read container config: {e}"))?
            .cgroup_path;
        let rootfs = spec
            .root()
            .as_ref()
            .map(|r| r.path().clone())
            .unwrap_or_else(|| loaded.record.rootfs.clone());
        Ok(Source {
            pid,
            rootfs,
            spec,
            cgroup,
            mac: loaded.record.ve.net.as_ref().and_then(|n| n.mac.clone()),
            counters: crate::ve::resources::beancounters(pid, &loaded.record.ve)
                .iter()
                .map(|c| c.carried())
                .collect(),
        })
    }

    /// Dumps the VE into `o.image`, with what a restore needs: its MAC (for the same ID)
    /// and its beancounters' counts.
    pub fn dump(&self, o: &DumpOpts, id: &str) -> Result<()> {
        checkpoint::dump(
            &DumpTarget {
                pid: self.pid,
                rootfs: &self.rootfs,
                spec: &self.spec,
                cgroup_path: &self.cgroup,
            },
            o,
        )?;
        checkpoint::Meta {
            id: Some(id.to_string()),
            mac: self.mac.clone(),
            counters: self.counters.clone(),
        }
        .save(&o.criu.image)?;
        Ok(())
    }
}
