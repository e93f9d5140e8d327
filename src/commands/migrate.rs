//! `vzrun migrate`: move a running VE to another host running `vzrun migrate-listen`
//! (vzmigrate). The bundle's rootfs and the private disk area go first while the VE runs;
//! then memory: cold (checkpoint, copy, restore), post-copy (CRIU lazy pages: the VE is
//! frozen only for its non-memory state and resumes on the destination at once, its pages
//! follow on demand and in the background) or pre-copy (rounds of CRIU pre-dumps while it
//! runs, then a short final dump). A failure before the destination VE runs leaves the VE
//! running here as it was.

use std::collections::HashMap;
use std::io::Read;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use libcontainer::container::ContainerStatus;
use serde_json::{json, Value};

use crate::cli::GlobalOpts;
use crate::container::Root;
use crate::ve::checkpoint::{self as ckpt, DumpOpts, DumpTarget};
use crate::ve::migrate::{self as mig, kind, Channel, Key, Mode, Progress};

#[derive(clap::Args, Debug)]
#[command(
    about = "Move a running VE to another host (vzmigrate)",
    after_help = "Modes: without --online the VE is checkpointed, copied and restored (cold). With --online, \
pre-copy copies memory in rounds while the VE runs and freezes it only for the last difference; it needs \
the kernel's soft-dirty page tracking. Post-copy freezes the VE only for its non-memory state, resumes it \
on the destination at once and moves its pages on demand and in the background (CRIU lazy pages, \
userfaultfd). --mode auto picks pre-copy where soft-dirty exists, else post-copy.\n\n\
WARNING: in a post-copy move the VE's memory lives on both hosts until the last page has arrived. If the \
source host or the network fails before that, the VE is lost: it cannot run on either side. CRIU's lazy \
migration has the same property."
)]
pub struct Args {
    /// The VE to move
    pub id: String,
    /// The destination's migrate-listen address
    pub destination: String,
    /// File holding the key shared with the destination
    #[arg(long = "key-file")]
    pub key_file: PathBuf,
    /// Move it while it runs (pre-copy or post-copy) rather than stop, copy, restore
    #[arg(long)]
    pub online: bool,
    /// How memory moves with --online: auto, precopy or postcopy
    #[arg(long, default_value = "auto")]
    pub mode: String,
    /// Most pre-copy rounds before the final dump
    #[arg(long = "max-rounds", default_value_t = 8)]
    pub max_rounds: u32,
    /// Keep the source VE (stopped, with its disk area) after a successful move
    #[arg(long = "keep-source")]
    pub keep_source: bool,
}

/// What the destination needs to know before anything is sent.
fn hello(
    id: &str,
    mode: Mode,
    config: &Value,
    disk: Option<&crate::ve::disk::DiskRecord>,
) -> Value {
    json!({
        "id": id,
        "mode": mode,
        "config": config,
        "disk": disk.map(|d| json!({"size": d.space})),
    })
}

pub fn run(args: Args, global: &GlobalOpts) -> Result<i32> {
    let key = Key::load(&args.key_file)?;
    let root = Root::from_opts(global)?;
    let addr: SocketAddr = args
        .destination
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| anyhow!("destination {:?} is not HOST:PORT", args.destination))?;
    let soft_dirty = ckpt_feature("mem_dirty_track");
    let mode = mig::pick_mode(args.online, &args.mode, soft_dirty)?;
    let progress = Progress::new(false);
    progress.line(&match (mode, args.mode.as_str()) {
        (Mode::Cold, _) => "mode: cold (checkpoint, copy, restore)".to_string(),
        (Mode::Postcopy, "auto") => {
            "mode: postcopy (auto: this kernel has no soft-dirty tracking for pre-copy)".into()
        }
        (m, _) => format!("mode: {}", serde_json::to_string(&m)?.trim_matches('"')),
    });

    let (config, disk, rootfs) = {
        let loaded = root.load(&args.id)?;
        if !matches!(loaded.container.status(), ContainerStatus::Running) {
            bail!(
                "container {} is not running: {}",
                args.id,
                crate::state::status_word(loaded.container.status())
            );
        }
        let text = std::fs::read(loaded.record.bundle.join("config.json"))
            .with_context(|| format!("read {}/config.json", loaded.record.bundle.display()))?;
        let config: Value =
            serde_json::from_slice(&text).context("parse the bundle's config.json")?;
        (
            config,
            loaded.record.ve.disk.clone(),
            loaded.record.rootfs.clone(),
        )
    };

    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .with_context(|| format!("connect to {addr}"))?;
    let local_ip = stream.local_addr()?.ip();
    let mut ch = Channel::client(stream, &key)?;
    ch.send_json(kind::HELLO, &hello(&args.id, mode, &config, disk.as_ref()))?;
    ch.expect(kind::OK)?;
    let started = Instant::now();

    // The files first, while the VE runs.
    let n = mig::send_tree(&mut ch, &rootfs)?;
    progress.line(&format!("rootfs: {:.1} MiB sent", n as f64 / 1048576.0));
    let mut hashes = HashMap::new();
    if let Some(d) = &disk {
        let n = mig::send_disk(&mut ch, &d.image, "disk", &mut hashes, &mut |b| {
            progress.update("disk", b, None)
        })?;
        progress.line(&format!(
            "disk pass 1: {:.1} MiB sent",
            n as f64 / 1048576.0
        ));
    }

    let out = crate::ve::data_dir().join("migrate-out").join(&args.id);
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).with_context(|| format!("create {}", out.display()))?;
    let result = match mode {
        Mode::Cold => cold(
            &root,
            &args,
            &mut ch,
            &out,
            disk.as_ref(),
            &mut hashes,
            &progress,
        ),
        Mode::Postcopy => postcopy(
            &root,
            &args,
            &mut ch,
            &out,
            disk.as_ref(),
            &mut hashes,
            &progress,
            local_ip,
        ),
        Mode::Precopy => precopy(
            &root,
            &args,
            &mut ch,
            &out,
            disk.as_ref(),
            &mut hashes,
            &progress,
        ),
    };
    let _ = std::fs::remove_dir_all(&out);
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            ch.fail(&format!("{e:#}"));
            return Err(e);
        }
    };
    progress.line(&format!(
        "migrated {} to {addr}: mode {}, {} pre-copy rounds, {:.1} MiB sent, total {:.3} s, suspended {:.3} s",
        args.id,
        serde_json::to_string(&mode)?.trim_matches('"'),
        report.rounds,
        (ch.bytes_out + report.memory_bytes) as f64 / 1048576.0,
        started.elapsed().as_secs_f64(),
        report.suspended.as_secs_f64(),
    ));
    Ok(0)
}

struct Report {
    rounds: u32,
    suspended: Duration,
    memory_bytes: u64,
}

/// Whether `criu check --feature NAME` passes.
fn ckpt_feature(name: &str) -> bool {
    std::process::Command::new("criu")
        .args(["check", "--feature", name])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Everything dump needs about the VE, read under its lock.
struct Target {
    pid: i32,
    rootfs: PathBuf,
    spec: oci_spec::runtime::Spec,
    cgroup: PathBuf,
    mac: Option<String>,
}

impl Target {
    fn dump(&self, o: &DumpOpts, id: &str) -> Result<()> {
        ckpt::dump(
            &DumpTarget {
                pid: self.pid,
                rootfs: &self.rootfs,
                spec: &self.spec,
                cgroup_path: &self.cgroup,
            },
            o,
        )?;
        // The destination restores under the same ID: it keeps the VE's MAC.
        ckpt::Meta {
            id: Some(id.to_string()),
            mac: self.mac.clone(),
        }
        .save(&o.image)?;
        Ok(())
    }
}

fn target(root: &Root, id: &str) -> Result<Target> {
    let loaded = root.load(id)?;
    let pid = loaded
        .container
        .pid()
        .map(|p| p.as_raw())
        .ok_or_else(|| anyhow!("container {id} has no process"))?;
    let spec = super::create::load_spec(&root.ve_dir(id))?;
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
    Ok(Target {
        pid,
        rootfs,
        spec,
        cgroup,
        mac: loaded.record.ve.net.as_ref().and_then(|n| n.mac.clone()),
    })
}

fn dump_opts(image: &Path) -> DumpOpts {
    DumpOpts {
        image: image.to_path_buf(),
        work: None,
        parent: None,
        leave_running: false,
        tcp_established: true,
        ext_unix_sk: false,
        shell_job: false,
        file_locks: true,
        pre_dump: false,
        manage_cgroups_mode: None,
        empty_ns: vec![],
        page_server: None,
        lazy_pages: false,
        status_fd: None,
        auto_dedup: false,
    }
}

/// The last disk pass with the VE frozen: its filesystem flushed, only changed chunks.
fn final_disk(
    ch: &mut Channel,
    disk: Option<&crate::ve::disk::DiskRecord>,
    hashes: &mut HashMap<u64, u64>,
    progress: &Progress,
) -> Result<()> {
    let Some(d) = disk else { return Ok(()) };
    if let Some(p) = &d.private {
        let f = std::fs::File::open(p).with_context(|| format!("open {}", p.display()))?;
        nix::unistd::syncfs(std::os::fd::AsRawFd::as_raw_fd(&f))
            .with_context(|| format!("sync {}", p.display()))?;
    }
    let n = mig::send_disk(ch, &d.image, "disk", hashes, &mut |_| {})?;
    progress.line(&format!(
        "disk pass 2 (frozen): {:.1} KiB changed",
        n as f64 / 1024.0
    ));
    Ok(())
}

/// Asks the destination to restore and waits for its answer.
fn restore_remote(ch: &mut Channel, req: Value, progress: &Progress) -> Result<Value> {
    ch.send_json(kind::RESTORE, &req)?;
    let done: Value = ch.expect_json(kind::DONE)?;
    progress.line(&format!(
        "restored on the destination in {} ms",
        done["restore_ms"].as_u64().unwrap_or(0)
    ));
    Ok(done)
}

/// After a successful move: the source VE goes (or stays, stopped, with --keep-source).
fn retire_source(root: &Root, id: &str, keep: bool, progress: &Progress) -> Result<()> {
    if keep {
        if let Ok(l) = root.load(id) {
            if let Some(pid) = l.container.pid() {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::SIGKILL);
            }
        }
        progress.line(&format!("source VE {id} kept, stopped (--keep-source)"));
        return Ok(());
    }
    super::delete::delete_container(root, id, true)?;
    Ok(())
}

fn cold(
    root: &Root,
    args: &Args,
    ch: &mut Channel,
    out: &Path,
    disk: Option<&crate::ve::disk::DiskRecord>,
    hashes: &mut HashMap<u64, u64>,
    progress: &Progress,
) -> Result<Report> {
    // Frozen for the whole move, and thawed again if the destination fails: the VE is
    // dumped with leave_running inside a frozen cgroup, which CRIU leaves frozen.
    super::pause::pause_container(root, &args.id)?;
    let frozen = Instant::now();
    let outcome = (|| -> Result<Value> {
        let t = target(root, &args.id)?;
        let mut o = dump_opts(out);
        o.leave_running = true;
        t.dump(&o, &args.id)?;
        progress.line(&format!("checkpoint: {} ms", frozen.elapsed().as_millis()));
        final_disk(ch, disk, hashes, progress)?;
        let n = mig::send_dir(ch, out)?;
        progress.line(&format!("images: {:.1} MiB sent", n as f64 / 1048576.0));
        restore_remote(ch, json!({"lazy": false}), progress)
    })();
    match outcome {
        Ok(_) => {
            let suspended = frozen.elapsed();
            retire_source(root, &args.id, args.keep_source, progress)?;
            Ok(Report {
                rounds: 0,
                suspended,
                memory_bytes: 0,
            })
        }
        Err(e) => {
            let _ = super::resume::resume_container(root, &args.id);
            Err(e.context(format!("the VE {} keeps running here", args.id)))
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn postcopy(
    root: &Root,
    args: &Args,
    ch: &mut Channel,
    out: &Path,
    disk: Option<&crate::ve::disk::DiskRecord>,
    hashes: &mut HashMap<u64, u64>,
    progress: &Progress,
    local_ip: std::net::IpAddr,
) -> Result<Report> {
    let t = target(root, &args.id)?;
    // A port for CRIU's page server on the address the destination already reaches us at.
    let port = std::net::TcpListener::bind((local_ip, 0))?
        .local_addr()?
        .port();
    let ps = SocketAddr::new(local_ip, port).to_string();
    let (status_r, status_w) = nix::unistd::pipe()?;
    let mut o = dump_opts(out);
    o.lazy_pages = true;
    o.page_server = Some(ps.clone());
    o.status_fd = Some(std::os::fd::AsRawFd::as_raw_fd(&status_w));
    let frozen = Instant::now();
    let dumper = {
        let id = args.id.clone();
        std::thread::spawn(move || {
            let r = t.dump(&o, &id);
            drop(status_w);
            r
        })
    };
    // CRIU writes one byte once everything but memory is dumped and its page server
    // listens; an end of file means it failed (the VE is thawed by CRIU then).
    let mut ready = [0u8; 1];
    let got = std::fs::File::from(status_r).read(&mut ready).unwrap_or(0);
    if got == 0 {
        let r = dumper.join().map_err(|_| anyhow!("dump thread panicked"))?;
        r?;
        bail!("CRIU ended before its lazy page server was ready");
    }
    progress.line(&format!(
        "frozen; non-memory state dumped in {} ms, pages served from {ps}",
        frozen.elapsed().as_millis()
    ));
    let outcome = (|| -> Result<Value> {
        final_disk(ch, disk, hashes, progress)?;
        let n = mig::send_dir(ch, out)?;
        progress.line(&format!("images: {:.1} KiB sent", n as f64 / 1024.0));
        restore_remote(ch, json!({"lazy": true, "page_server": ps}), progress)
    })();
    if let Err(e) = outcome {
        // Nothing runs on the destination: stop CRIU, whose failure path thaws the VE.
        mig::kill_criu_children();
        let _ = dumper.join();
        let _ = super::resume::resume_container(root, &args.id);
        return Err(e.context(format!("the VE {} keeps running here", args.id)));
    }
    let suspended = frozen.elapsed();
    progress.line("running on the destination; its pages follow");
    // The dump ends once the destination has every page.
    let r = dumper.join().map_err(|_| anyhow!("dump thread panicked"))?;
    if let Err(e) = r {
        bail!(
            "the VE runs on the destination, but the page transfer reported: {e} \
             (the source VE {} is left as it is)",
            args.id
        );
    }
    let lazy = mig::stats_pages_written(&out.join("stats-dump")).unwrap_or(0);
    progress.line(&format!(
        "all pages moved after {:.3} s",
        frozen.elapsed().as_secs_f64()
    ));
    retire_source(root, &args.id, args.keep_source, progress)?;
    Ok(Report {
        rounds: 0,
        suspended,
        memory_bytes: lazy * 4096,
    })
}

fn precopy(
    root: &Root,
    args: &Args,
    ch: &mut Channel,
    out: &Path,
    disk: Option<&crate::ve::disk::DiskRecord>,
    hashes: &mut HashMap<u64, u64>,
    progress: &Progress,
) -> Result<Report> {
    // Each round's pages go to the destination's CRIU page server straight into its
    // image directory for that round; only the small non-memory images pass through here.
    let mut written: Vec<u64> = Vec::new();
    let mut parent: Option<PathBuf> = None;
    let mut round = 0u32;
    let stop = loop {
        round += 1;
        let dir = out.join(format!("round-{round}"));
        let ps: Value = ch.exchange(
            kind::PROGRESS,
            json!({"page_server_for": format!("round-{round}")}),
        )?;
        let t = target(root, &args.id)?;
        let mut o = dump_opts(&dir);
        o.pre_dump = true;
        o.leave_running = true;
        o.parent = parent.clone();
        o.page_server = ps["address"].as_str().map(String::from);
        t.dump(&o, &args.id)?;
        let pages = mig::stats_pages_written(&dir.join("stats-dump")).unwrap_or(0);
        written.push(pages);
        progress.line(&format!("round {round}: {pages} pages sent"));
        parent = Some(PathBuf::from(format!("../round-{round}")));
        if let Some(s) = mig::precopy_stop(&written, 64, args.max_rounds) {
            break s;
        }
    };
    progress.line(&format!("pre-copy ends after {round} rounds: {stop:?}"));
    super::pause::pause_container(root, &args.id)?;
    let frozen = Instant::now();
    let outcome = (|| -> Result<Value> {
        let dir = out.join("final");
        let ps: Value = ch.exchange(kind::PROGRESS, json!({"page_server_for": "final"}))?;
        let t = target(root, &args.id)?;
        let mut o = dump_opts(&dir);
        o.leave_running = true;
        o.parent = parent.clone();
        o.page_server = ps["address"].as_str().map(String::from);
        t.dump(&o, &args.id)?;
        final_disk(ch, disk, hashes, progress)?;
        mig::send_dir(ch, &dir)?;
        restore_remote(ch, json!({"lazy": false, "dir": "final"}), progress)
    })();
    match outcome {
        Ok(_) => {
            let suspended = frozen.elapsed();
            retire_source(root, &args.id, args.keep_source, progress)?;
            Ok(Report {
                rounds: round,
                suspended,
                memory_bytes: written.iter().sum::<u64>() * 4096,
            })
        }
        Err(e) => {
            let _ = super::resume::resume_container(root, &args.id);
            Err(e.context(format!("the VE {} keeps running here", args.id)))
        }
    }
}
