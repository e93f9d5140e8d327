//! `vzrun migrate`: move a running VE to another host running `vzrun migrate-listen`
//! (vzmigrate). The bundle's rootfs and the private disk area go first while the VE runs;
//! then memory: cold (checkpoint, copy, restore), post-copy (CRIU lazy pages: the VE is
//! frozen only for its non-memory state and resumes on the destination at once, its pages
//! follow on demand and in the background) or pre-copy (rounds of CRIU pre-dumps while it
//! runs, then a short final dump). A failure before the destination VE runs leaves the VE
//! running here as it was.

use std::collections::HashMap;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use libcontainer::container::ContainerStatus;
use serde_json::{json, Value};

use super::checkpoint::Source;
use crate::cli::GlobalOpts;
use crate::runtime::root::Root;
use crate::runtime::Runtime;
use crate::sys::criu;
use crate::ve::checkpoint::{CriuOpts, DumpOpts};
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
    let root = super::runtime(global).root;
    let addr = mig::parse_addr("destination", &args.destination)?;
    let soft_dirty = criu::supports(criu::Feature::MemTrack);
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
                crate::runtime::state::status_word(loaded.container.status())
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
    let mut mv = Move {
        root: &root,
        args: &args,
        ch,
        out,
        disk,
        hashes,
        progress,
    };
    let result = match mode {
        Mode::Cold => {
            let out = mv.out.clone();
            mv.frozen_final(&out, None, None, 0, 0)
        }
        Mode::Postcopy => mv.postcopy(local_ip),
        Mode::Precopy => mv.precopy(),
    };
    let _ = std::fs::remove_dir_all(&mv.out);
    let (mut ch, progress) = (mv.ch, mv.progress);
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

fn target(root: &Root, id: &str) -> Result<Source> {
    Source::of(root, id, &root.load(id)?)
}

fn dump_opts(image: &Path) -> DumpOpts {
    DumpOpts {
        criu: CriuOpts {
            image: image.to_path_buf(),
            tcp_established: true,
            file_locks: true,
            ..Default::default()
        },
        // A client connecting at the moment of the dump must not fail the move.
        skip_in_flight: true,
        ..Default::default()
    }
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
    Runtime::new(Some(root.path.clone()), false).delete(id, true)?;
    Ok(())
}

/// One move in progress: the channel to the destination and what the source side keeps.
struct Move<'a> {
    root: &'a Root,
    args: &'a Args,
    ch: Channel,
    /// Local directory for CRIU's images (only the non-memory ones where pages go
    /// straight to the destination).
    out: PathBuf,
    disk: Option<crate::ve::disk::DiskRecord>,
    /// Chunk hashes of the disk image as sent, for the pass with the VE frozen.
    hashes: HashMap<u64, u64>,
    progress: Progress,
}

impl Move<'_> {
    /// The last disk pass with the VE frozen: its filesystem flushed, only changed chunks.
    fn final_disk(&mut self) -> Result<()> {
        let Some(d) = &self.disk else { return Ok(()) };
        if let Some(p) = &d.private {
            let f = std::fs::File::open(p).with_context(|| format!("open {}", p.display()))?;
            nix::unistd::syncfs(std::os::fd::AsRawFd::as_raw_fd(&f))
                .with_context(|| format!("sync {}", p.display()))?;
        }
        let n = mig::send_disk(
            &mut self.ch,
            &d.image,
            "disk",
            &mut self.hashes,
            &mut |_| {},
        )?;
        self.progress.line(&format!(
            "disk pass 2 (frozen): {:.1} KiB changed",
            n as f64 / 1024.0
        ));
        Ok(())
    }

    /// Sends the images in `dir` and has the destination restore; waits for its answer.
    fn restore_remote(&mut self, dir: &Path, req: Value) -> Result<()> {
        let n = mig::send_dir(&mut self.ch, dir)?;
        self.progress
            .line(&format!("images: {:.1} KiB sent", n as f64 / 1024.0));
        self.ch.send_json(kind::RESTORE, &req)?;
        let done: Value = self.ch.expect_json(kind::DONE)?;
        self.progress.line(&format!(
            "restored on the destination in {} ms",
            done["restore_ms"].as_u64().unwrap_or(0)
        ));
        Ok(())
    }

    /// The frozen part of a cold move and of pre-copy's last round: the VE stays frozen
    /// (dumped with leave_running inside a frozen cgroup, which CRIU leaves frozen) until
    /// the destination runs it, and is thawed again if anything fails before that.
    fn frozen_final(
        &mut self,
        dir: &Path,
        parent: Option<PathBuf>,
        page_server_for: Option<&str>,
        rounds: u32,
        memory_bytes: u64,
    ) -> Result<Report> {
        let (root, id) = (self.root, self.args.id.clone());
        Runtime::new(Some(root.path.clone()), false).pause(&id)?;
        let frozen = Instant::now();
        // The dump leaves the VE's sockets live (leave_running, for a way back): keep
        // them off the wire until the VE runs on the destination or is thawed here.
        let net = root.load(&id)?.record.ve.net;
        let cut = |up: bool| match &net {
            Some(n) => crate::ve::net::set_host_link(n, up),
            None => Ok(()),
        };
        let outcome = (|| -> Result<()> {
            cut(false)?;
            let mut o = dump_opts(dir);
            o.leave_running = true;
            o.criu.parent = parent;
            if let Some(name) = page_server_for {
                let ps = self
                    .ch
                    .exchange(kind::PROGRESS, json!({ "page_server_for": name }))?;
                o.page_server = ps["address"].as_str().map(String::from);
            }
            target(root, &id)?.dump(&o, &id)?;
            self.progress
                .line(&format!("checkpoint: {} ms", frozen.elapsed().as_millis()));
            self.final_disk()?;
            self.restore_remote(dir, json!({"lazy": false}))
        })();
        if let Err(e) = outcome {
            let _ = cut(true);
            let _ = Runtime::new(Some(root.path.clone()), false).resume(&id);
            return Err(e.context(format!("the VE {id} keeps running here")));
        }
        let suspended = frozen.elapsed();
        retire_source(root, &id, self.args.keep_source, &self.progress)?;
        Ok(Report {
            rounds,
            suspended,
            memory_bytes,
        })
    }

    fn postcopy(&mut self, local_ip: std::net::IpAddr) -> Result<Report> {
        let (root, id) = (self.root, self.args.id.clone());
        let t = target(root, &id)?;
        // A port for CRIU's page server on the address the destination reaches us at.
        let port = std::net::TcpListener::bind((local_ip, 0))?
            .local_addr()?
            .port();
        let ps = SocketAddr::new(local_ip, port).to_string();
        let (status_r, status_w) = nix::unistd::pipe()?;
        let mut o = dump_opts(&self.out);
        let stopper = criu::Stopper::default();
        o.criu.stopper = Some(stopper.clone());
        o.criu.lazy_pages = true;
        o.page_server = Some(ps.clone());
        o.status_fd = Some(std::os::fd::AsRawFd::as_raw_fd(&status_w));
        let frozen = Instant::now();
        let dumper = {
            let id = id.clone();
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
        self.progress.line(&format!(
            "frozen; non-memory state dumped in {} ms, pages served from {ps}",
            frozen.elapsed().as_millis()
        ));
        let out = self.out.clone();
        let outcome = (|| -> Result<()> {
            self.final_disk()?;
            self.restore_remote(&out, json!({"lazy": true, "page_server": ps}))
        })();
        if let Err(e) = outcome {
            // Nothing runs on the destination: stop CRIU, whose failure path thaws the VE.
            stopper.stop();
            let _ = dumper.join();
            let _ = Runtime::new(Some(root.path.clone()), false).resume(&id);
            return Err(e.context(format!("the VE {id} keeps running here")));
        }
        let suspended = frozen.elapsed();
        self.progress
            .line("running on the destination; its pages follow");
        // The dump ends once the destination has every page.
        let r = dumper.join().map_err(|_| anyhow!("dump thread panicked"))?;
        if let Err(e) = r {
            bail!(
                "the VE runs on the destination, but the page transfer reported: {e} \
                 (the source VE {id} is left as it is)"
            );
        }
        let lazy = criu::stats_pages_written(&out.join("stats-dump")).unwrap_or(0);
        self.progress.line(&format!(
            "all pages moved after {:.3} s",
            frozen.elapsed().as_secs_f64()
        ));
        retire_source(root, &id, self.args.keep_source, &self.progress)?;
        Ok(Report {
            rounds: 0,
            suspended,
            memory_bytes: lazy * 4096,
        })
    }

    /// Rounds of pre-dumps while the VE runs, each round's pages going to a CRIU page
    /// server of the destination straight into that round's image directory; then the
    /// frozen final dump of what is still dirty.
    fn precopy(&mut self) -> Result<Report> {
        let (root, id) = (self.root, self.args.id.clone());
        let mut written: Vec<u64> = Vec::new();
        let mut parent: Option<PathBuf> = None;
        let mut round = 0u32;
        let stop = loop {
            round += 1;
            let name = format!("round-{round}");
            let dir = self.out.join(&name);
            let ps = self
                .ch
                .exchange(kind::PROGRESS, json!({ "page_server_for": name }))?;
            let mut o = dump_opts(&dir);
            o.pre_dump = true;
            o.leave_running = true;
            o.criu.parent = parent.clone();
            o.page_server = ps["address"].as_str().map(String::from);
            target(root, &id)?.dump(&o, &id)?;
            let pages = criu::stats_pages_written(&dir.join("stats-dump")).unwrap_or(0);
            written.push(pages);
            self.progress
                .line(&format!("round {round}: {pages} pages sent"));
            parent = Some(PathBuf::from(format!("../{name}")));
            if let Some(s) = mig::precopy_stop(&written, 64, self.args.max_rounds) {
                break s;
            }
        };
        self.progress
            .line(&format!("pre-copy ends after {round} rounds: {stop:?}"));
        let dir = self.out.join("final");
        let sent = written.iter().sum::<u64>() * 4096;
        self.frozen_final(&dir, parent, Some("final"), round, sent)
    }
}
