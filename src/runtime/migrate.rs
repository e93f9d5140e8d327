//! Migration (vzmigrate): sending a running VE to a host that receives it, and receiving
//! one. The source sends the rootfs and the private area's image while the VE runs, then
//! its memory: cold (checkpoint, copy, restore), post-copy (CRIU lazy pages: the VE is
//! frozen only for its non-memory state and resumes on the destination at once, its pages
//! follow on demand and in the background) or pre-copy (rounds of CRIU pre-dumps while it
//! runs, then a short final dump). A failure before the destination VE runs leaves the VE
//! running at the source as it was; a failed receive leaves nothing behind: no bundle,
//! image, disk or half-restored VE.

use std::collections::HashMap;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::runtime::checkpoint::Source;
use crate::runtime::error::{chain, Error, Result};
use crate::runtime::lifecycle::can_migrate;
use crate::runtime::restore::RestoreOptions;
use crate::runtime::Runtime;
use crate::sys::criu::{self, Feature, LazyPages, PageServer, Stopper};
use crate::sys::criu_kdat::{self, Kdat};
use crate::ve::checkpoint::{
    CgroupsMode, CriuOpts, DumpOpts, LaterMounts, PageServerAddr, RestoreOpts,
};
use crate::ve::disk::DiskRecord;
use crate::ve::migrate::{
    self as mig, channel, kind, tunnel, Channel, FileHeader, Key, Mode, Progress, Requested,
};

/// What a destination that takes the rootfs's frozen pass says in its answer to HELLO.
const TAKES_DELTA: &str = "delta";
/// What a destination that answers SYNC says in its answer to HELLO.
const TAKES_SYNC: &str = "sync";

/// Whether the destination's answer to HELLO says it takes `what` (an older vzrun's
/// says nothing).
fn takes(ok: &[u8], what: &str) -> bool {
    serde_json::from_slice::<Value>(ok).is_ok_and(|v| {
        v["takes"]
            .as_array()
            .is_some_and(|t| t.iter().any(|x| x.as_str() == Some(what)))
    })
}

/// Pre-copy stops once a round wrote no more pages than this.
const FEW_DIRTY_PAGES: u64 = 64;
const PAGE: u64 = 4096;

/// What `migrate` takes.
pub struct SendOptions {
    pub id: String,
    pub destination: SocketAddr,
    pub key: Key,
    /// Move it while it runs (pre-copy or post-copy) rather than stop, copy, restore.
    pub online: bool,
    pub mode: Requested,
    /// Most pre-copy rounds before the final dump.
    pub max_rounds: u32,
    /// Keep the source VE (stopped, with its disk area) after a successful move.
    pub keep_source: bool,
}

/// How a move went.
pub struct Summary {
    pub id: String,
    pub destination: SocketAddr,
    pub mode: Mode,
    pub rounds: u32,
    pub bytes: u64,
    pub total: Duration,
    pub suspended: Duration,
    /// Post-copy: pages fetched on demand and pushed in the background.
    pub pages: Option<criu::LazyCounts>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "migrated {} to {}: mode {}, {} pre-copy rounds, {:.1} MiB sent, total {:.3} s, \
             suspended {:.3} s",
            self.id,
            self.destination,
            self.mode.name(),
            self.rounds,
            self.bytes as f64 / 1048576.0,
            self.total.as_secs_f64(),
            self.suspended.as_secs_f64(),
        )?;
        if let Some(p) = self.pages {
            write!(
                f,
                ", {} pages fetched on demand, {} pushed in the background",
                p.demand, p.pushed
            )?;
        }
        Ok(())
    }
}

/// A VE received by [`Runtime::receive`].
pub struct Received {
    pub id: String,
    /// Post-copy: how long after the restore its last page arrived, and how the
    /// lazy-pages daemon ended.
    pub pages: Option<(Duration, String)>,
}

fn io(op: &'static str, what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.to_string();
    move |e| Error::io(op, what, e)
}

impl Runtime {
    /// Moves the running VE `opts.id` to the host listening at `opts.destination`.
    pub fn migrate(&self, opts: &SendOptions, progress: &Progress) -> Result<Summary> {
        let soft_dirty = criu::supports(Feature::MemTrack);
        let mode = mig::pick_mode(opts.online, opts.mode, soft_dirty)?;
        progress.line(&match (mode, opts.mode) {
            (Mode::Cold, _) => "mode: cold (checkpoint, copy, restore)".to_string(),
            (Mode::Postcopy, Requested::Auto) => {
                "mode: postcopy (auto: this kernel has no soft-dirty tracking for pre-copy)".into()
            }
            (m, _) => format!("mode: {}", m.name()),
        });
        // Checked before anything moves: a lazy transfer that fails only after the VE is
        // frozen costs it a freeze for nothing.
        if mode == Mode::Postcopy {
            lazy_pipe_ready(|l| progress.line(l))?;
        }
        kdat_ready(|l| progress.line(l));
        let id = opts.id.as_str();
        let (config, disk, rootfs) = {
            let loaded = self.root.load(id)?;
            can_migrate(id, loaded.container.status())?;
            let path = loaded.record.bundle.join("config.json");
            let text = std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
            let config: Value = serde_json::from_slice(&text)
                .map_err(|e| Error::Config(format!("parse the bundle's config.json: {e}")))?;
            (
                config,
                loaded.record.ve.disk.clone(),
                loaded.record.rootfs.clone(),
            )
        };

        let addr = opts.destination;
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .map_err(io("connect to", addr))?;
        let local_ip = stream
            .local_addr()
            .map_err(io("local address of", addr))?
            .ip();
        let mut ch = Channel::client(stream, &opts.key)?;
        let hello = json!({
            "id": id,
            "mode": mode,
            "config": config,
            "disk": disk.as_ref().map(|d| json!({"size": d.space})),
        });
        ch.send_json(kind::HELLO, &hello)?;
        let ok = ch.expect(kind::OK)?;
        let started = Instant::now();
        // A rootfs the VE can write changes while it is copied: what changed goes again
        // with the VE frozen (DELTA), which the destination must take. One that does
        // not (an older vzrun answers HELLO with nothing) is refused before anything
        // moves rather than handed a rootfs older than the VE's memory. With a private
        // area the VE's writes land in its image (the rootfs is the overlay's lower
        // layer), whose own frozen pass carries them.
        let writable = config["root"]["readonly"].as_bool() != Some(true) && disk.is_none();
        if writable && !takes(&ok, TAKES_DELTA) {
            let e = Error::Step(format!(
                "the destination's vzrun does not take the rootfs's frozen pass (frame kind \
                 {}), which a VE with a writable rootfs needs; upgrade it",
                kind::name(kind::DELTA)
            ));
            ch.fail(&chain(&e));
            return Err(e);
        }
        let mut tree = writable.then(|| (rootfs.clone(), mig::Manifest::new()));

        // The files first, while the VE runs.
        let mut hashes = HashMap::new();
        let sent = (|| -> Result<()> {
            let n = mig::send_tree(&mut ch, &rootfs, tree.as_mut().map(|(_, m)| m))?;
            progress.line(&format!("rootfs: {:.1} MiB sent", n as f64 / 1048576.0));
            if let Some(d) = &disk {
                let n = mig::send_disk(&mut ch, &d.image, "disk", &mut hashes, &mut |b| {
                    progress.update("disk", b, None)
                })?;
                progress.line(&format!(
                    "disk pass 1: {:.1} MiB sent",
                    n as f64 / 1048576.0
                ));
            }
            // The first passes are out once written to the socket, not once the
            // destination has unpacked them: a large tree can keep it busy for seconds
            // after, and a freeze now would last until it caught up.
            if takes(&ok, TAKES_SYNC) {
                let t = Instant::now();
                ch.send(kind::SYNC, &[])?;
                ch.expect(kind::SYNC)?;
                progress.line(&format!(
                    "the destination applied the first passes {} ms after they were sent",
                    t.elapsed().as_millis()
                ));
            }
            Ok(())
        })();
        if let Err(e) = sent {
            // The destination says why, rather than that the stream broke off.
            ch.fail(&chain(&e));
            return Err(e);
        }

        // The dumps hold the VE's memory: every directory down to them is root's alone.
        let outs = crate::ve::data_dir().join("migrate-out");
        crate::sys::fs::private_dir(&outs).map_err(|e| Error::io("create", &outs, e))?;
        let out = outs.join(id);
        let _ = std::fs::remove_dir_all(&out);
        crate::sys::fs::private_dir_new(&out).map_err(|e| Error::io("create", &out, e))?;
        let mut mv = Move {
            rt: self,
            opts,
            ch,
            out,
            disk,
            hashes,
            tree,
            progress,
            ends: tunnel::Ends {
                ip: local_ip,
                key: opts.key.clone(),
            },
        };
        let result = match mode {
            Mode::Cold => {
                let out = mv.out.clone();
                mv.frozen_final(&out, None, None, 0, 0)
            }
            Mode::Postcopy => mv.postcopy(),
            Mode::Precopy => mv.precopy(),
        };
        let _ = std::fs::remove_dir_all(&mv.out);
        let mut ch = mv.ch;
        let report = match result {
            Ok(r) => r,
            Err(e) => {
                ch.fail(&chain(&e));
                return Err(e);
            }
        };
        Ok(Summary {
            id: id.to_string(),
            destination: addr,
            mode,
            rounds: report.rounds,
            bytes: ch.bytes_out + report.memory_bytes,
            total: started.elapsed(),
            suspended: report.suspended,
            pages: report.pages,
        })
    }

    /// Receives one VE from a `migrate` that connected as `stream`, and runs it here.
    ///
    /// `page_timeout`: post-copy's watchdog; when no page arrives for that long the
    /// receive ends with what is missing instead of waiting for ever.
    /// `proved` is called once the peer has proved the key; answering false turns the
    /// move away (a `--once` listener that already took one).
    pub fn receive(
        &self,
        stream: TcpStream,
        key: &Key,
        page_timeout: Duration,
        proved: impl FnOnce() -> bool,
    ) -> Result<Received> {
        let local_ip = stream
            .local_addr()
            .map_err(io("local address of", "the connection"))?
            .ip();
        let mut ch = Channel::server(stream, key)?;
        if !proved() {
            let e = Error::Step("this listener takes one move (--once) and has one".into());
            ch.fail(&chain(&e));
            return Err(e);
        }
        let hello: Value = ch.expect_json(kind::HELLO)?;
        let id = hello["id"].as_str().unwrap_or_default().to_string();
        let mut inc = match Incoming::accept(self, &id) {
            Ok(i) => i,
            Err(e) => {
                ch.fail(&chain(&e));
                return Err(e);
            }
        };
        // This end's lazy-pages daemon needs the same pipe size as the source's page
        // server: refused here, before the files come, if it cannot be had.
        if hello["mode"].as_str() == Some(Mode::Postcopy.name()) {
            if let Err(e) = lazy_pipe_ready(|l| eprintln!("migrate-listen: {l}")) {
                ch.fail(&chain(&e));
                return Err(e);
            }
        }
        kdat_ready(|l| eprintln!("migrate-listen: {l}"));
        ch.send_json(kind::OK, &json!({ "takes": [TAKES_DELTA, TAKES_SYNC] }))?;
        let ends = tunnel::Ends {
            ip: local_ip,
            key: key.clone(),
        };
        match self.receive_ve(&mut ch, &hello, &id, &mut inc, &ends, page_timeout) {
            Ok(()) => {
                inc.kept = true;
                // Beside the page watch, not before it: post-copy's progress reports (and
                // the source's end of the move) would otherwise wait out the second.
                let announcer = self.announce_after_source(&id);
                // Post-copy: the pages keep coming after the VE runs; the images go when
                // the lazy-pages daemon has them all.
                let pages = match inc.lazy.take() {
                    None => None,
                    Some(lazy) => {
                        let images = inc.dir.join("images");
                        Some(self.watch_pages(&mut ch, lazy, &images, &id, page_timeout))
                    }
                };
                let _ = announcer.join();
                Ok(Received {
                    id,
                    pages: pages.transpose()?,
                })
            }
            Err(e) => {
                // Not committed: the source takes its VE back on the failure it is told
                // of, so any copy restored here stops before it is told. A copy that
                // cannot be stopped stays, and the source hears nothing (which leaves
                // its own copy frozen).
                let restored = self.root.container_dir(&id).join("state.json").exists();
                if restored && self.delete(&id, true).is_err() {
                    inc.kept = true;
                    return Err(Error::Step(format!(
                        "{}; the copy restored here could not be stopped and still runs \
                         (the source was not told, so its copy stays frozen)",
                        chain(&e)
                    )));
                }
                ch.fail(&chain(&e));
                if restored {
                    return Err(Error::Step(format!(
                        "{} (the copy restored here was stopped again)",
                        chain(&e)
                    )));
                }
                Err(e)
            }
        }
    }

    /// Announces the arrived VE's addresses again once the source has had time to delete
    /// its copy: until then the source's proxy ARP still answers for them, and a
    /// neighbour that asked in between keeps the source's MAC until its cache entry
    /// fails (a TCP client of the VE then stalls for half a minute or more).
    /// Waits a second in all, so a `--once` listener does not end first.
    /// Runs on a thread of its own; the caller joins it before it returns.
    fn announce_after_source(&self, id: &str) -> std::thread::JoinHandle<()> {
        let dir = self.root.ve_dir(id);
        std::thread::spawn(move || {
            for ms in [200u64, 800] {
                std::thread::sleep(Duration::from_millis(ms));
                match crate::runtime::state::Record::load(&dir) {
                    Ok(rec) => {
                        if let Some(n) = &rec.ve.net {
                            crate::ve::net::announce(n);
                        }
                    }
                    Err(_) => return,
                }
            }
        })
    }

    fn receive_ve(
        &self,
        ch: &mut Channel,
        hello: &Value,
        id: &str,
        inc: &mut Incoming,
        ends: &tunnel::Ends,
        page_timeout: Duration,
    ) -> Result<()> {
        let bundle = inc.dir.join("bundle");
        let mut images = inc.dir.join("images");
        loop {
            let (k, p) = ch.recv()?;
            match k {
                kind::TAR => {
                    let rootfs = bundle.join("rootfs");
                    std::fs::create_dir_all(&rootfs)
                        .map_err(|e| Error::io("create", &rootfs, e))?;
                    mig::recv_tree(ch, p, &rootfs)?;
                }
                kind::DELTA => {
                    let rootfs = bundle.join("rootfs");
                    mig::recv_delta(ch, p, &rootfs)?;
                }
                // Everything before it is applied: frames are handled in order.
                kind::SYNC => ch.send(kind::SYNC, &[])?,
                kind::FILE => {
                    let h: FileHeader = serde_json::from_slice(&p)
                        .map_err(|e| mig::MigError::Protocol(format!("file header: {e}")))?;
                    let path = if h.kind == "disk" {
                        let d = crate::ve::private_image(&self.root.path, id);
                        if let Some(parent) = d.parent() {
                            std::fs::create_dir_all(parent)
                                .map_err(|e| Error::io("create", parent, e))?;
                        }
                        if !h.update && d.exists() {
                            return Err(Error::Step(format!(
                                "{} exists already on the destination",
                                d.display()
                            )));
                        }
                        inc.disk = Some(d.clone());
                        d
                    } else {
                        images.join(mig::plain_name(&h.name)?)
                    };
                    mig::recv_file(ch, &h, &path)?;
                }
                kind::PROGRESS => {
                    // Pre-copy: a page server for the next round, writing into its own
                    // directory next to the ones before.
                    let req: Value = json_of(&p)?;
                    let name = mig::plain_name(req["page_server_for"].as_str().unwrap_or(""))?;
                    if let Some(ps) = inc.page_server.take() {
                        ps.finish();
                    }
                    images = inc.dir.join("images").join(name);
                    std::fs::create_dir_all(&images)
                        .map_err(|e| Error::io("create", &images, e))?;
                    // CRIU's page server on loopback, reached only through the tunnel.
                    let local = tunnel::loopback_port()?;
                    inc.page_server = Some(PageServer::start(&images, local)?);
                    let addr = ends.serve(local)?;
                    ch.send_json(kind::PROGRESS, &json!({"address": addr.to_string()}))?;
                }
                kind::RESTORE => {
                    let req: Value = json_of(&p)?;
                    if let Some(ps) = inc.page_server.take() {
                        ps.finish();
                    }
                    let started = Instant::now();
                    // The restore's own mounts come down once the source has its answer.
                    let later = LaterMounts::default();
                    write_config(&bundle, &hello["config"], inc.disk.as_deref())?;
                    let lazy = req["lazy"].as_bool().unwrap_or(false);
                    if lazy {
                        let ps: SocketAddr = req["page_server"]
                            .as_str()
                            .and_then(|s| s.parse().ok())
                            .ok_or_else(|| {
                                mig::MigError::Protocol("restore: no page server address".into())
                            })?;
                        let _step = tracing::debug_span!("lazy-pages start").entered();
                        inc.lazy = Some(LazyPages::start(&images, ends.forward(ps)?)?);
                        drop(_step);
                        self.lazy_restore(id, &bundle, &images, inc, &later)?;
                    } else {
                        self.restore(received(id, &bundle, &images, false, None, &later))?;
                    }
                    // The source takes its VE back when it has waited FRAME_TIMEOUT: a
                    // restore this late is undone here (by `receive`) first.
                    if started.elapsed() > channel::RESTORE_DEADLINE {
                        return Err(Error::Step(format!(
                            "the restore took {:.0} s, past the {} s a source waits for it",
                            started.elapsed().as_secs_f64(),
                            channel::RESTORE_DEADLINE.as_secs()
                        )));
                    }
                    ch.send_json(
                        kind::DONE,
                        &json!({
                            "restore_ms": started.elapsed().as_millis() as u64,
                            "page_timeout_ms": page_timeout.as_millis() as u64,
                        }),
                    )?;
                    // Ours only once the source has given its copy up.
                    ch.set_read_timeout(Some(channel::COMMIT_WAIT))?;
                    let (k, _) = ch.recv().map_err(|e| {
                        Error::Step(format!(
                            "no word from the source within {} s of the restore ({e})",
                            channel::COMMIT_WAIT.as_secs()
                        ))
                    })?;
                    if k != kind::COMMIT {
                        return Err(mig::MigError::Protocol(format!(
                            "frame {k} where the source's commit belongs"
                        ))
                        .into());
                    }
                    ch.set_read_timeout(Some(channel::FRAME_TIMEOUT))?;
                    inc.kept = true;
                    // Lost on the way, the source leaves its copy frozen and says so.
                    let _ = ch.send(kind::COMMITTED, &[]);
                    // The restore's mounts for CRIU come down once the answers are out
                    // (on an error return above, `later` takes them down as it goes).
                    later.release();
                    return Ok(());
                }
                other => {
                    return Err(mig::MigError::Protocol(format!(
                        "unexpected frame {}",
                        kind::name(other)
                    ))
                    .into())
                }
            }
        }
    }

    /// Post-copy after the restore: waits until CRIU's lazy-pages daemon has every page,
    /// telling the source how far it got. The VE runs meanwhile; a task touching a page
    /// that has not arrived waits for it. A watchdog ends the wait when no page has moved
    /// for `timeout` (counted from the daemon's log), or the daemon fails: the VE is
    /// then stopped here, since once the daemon is gone its missing pages would read as
    /// zeroes instead of blocking.
    fn watch_pages(
        &self,
        ch: &mut Channel,
        mut lazy: LazyPages,
        images: &Path,
        id: &str,
        timeout: Duration,
    ) -> Result<(Duration, String)> {
        let started = Instant::now();
        let total = criu::lazy_pages_in(images);
        let log = images.join("lazy-pages.log");
        let (mut got, mut moved) = (0u64, Instant::now());
        let mut told = Instant::now();
        let failure = loop {
            let counts = criu::lazy_counts(&log);
            let pages = |done: bool, ok: bool| {
                json!({"demand": counts.demand, "pushed": counts.pushed, "total": total,
                       "done": done, "ok": ok})
            };
            match lazy.try_wait() {
                Ok(Some(st)) if st.success() => {
                    let _ = ch.send_json(kind::PAGES, &pages(true, true));
                    let _ = ch.flush();
                    return Ok((
                        started.elapsed(),
                        format!(
                            "{st}; {} pages on demand, {} pushed in the background",
                            counts.demand, counts.pushed
                        ),
                    ));
                }
                Ok(Some(st)) => {
                    break format!(
                        "CRIU's lazy-pages daemon ended ({st}): {}",
                        criu::log_tail(&log)
                    )
                }
                Ok(None) => {}
                Err(e) => break format!("CRIU's lazy-pages daemon: {e}"),
            }
            // Progress is pages moved, not the log's growth: a daemon whose source is gone
            // logs the same unanswered page fault over and over.
            let now = counts.copied;
            if now != got {
                (got, moved) = (now, Instant::now());
            } else if moved.elapsed() >= timeout {
                break format!(
                    "post-copy watchdog: no page from the source for {:.1} s (--page-timeout)",
                    moved.elapsed().as_secs_f64()
                );
            }
            if told.elapsed() >= Duration::from_millis(500) {
                // A source that is gone cannot be told: the watchdog decides then.
                let _ = ch.send_json(kind::PAGES, &pages(false, true));
                let _ = ch.flush();
                told = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let counts = criu::lazy_counts(&log);
        let missing = total.saturating_sub(counts.demand + counts.pushed);
        let stopped = self.kill(id, "KILL", true).is_ok();
        drop(lazy);
        let msg = format!(
            "{failure}; {missing} of {total} pages ({:.1} MiB) of VE {id} never arrived \
             ({} fetched on demand, {} pushed); {} (post-copy: the VE's memory was split \
             between the hosts, only the source can still hold the rest)",
            (missing * PAGE) as f64 / 1048576.0,
            counts.demand,
            counts.pushed,
            if stopped {
                format!("VE {id} is stopped here, its bundle kept")
            } else {
                format!("VE {id} could not be stopped here: its tasks wait on the missing pages")
            }
        );
        ch.fail(&msg);
        Err(Error::Step(msg))
    }

    /// A post-copy restore, watched: when the lazy-pages daemon gives up (its page server
    /// is gone, or CRIU cannot serve pages on this kernel) the restore would wait for
    /// pages for ever, so it is stopped and reported.
    fn lazy_restore(
        &self,
        id: &str,
        bundle: &Path,
        images: &Path,
        inc: &mut Incoming,
        later: &LaterMounts,
    ) -> Result<()> {
        let stopper = Stopper::default();
        let opts = received(id, bundle, images, true, Some(stopper.clone()), later);
        let mut daemon_failed: Option<Instant> = None;
        let r = std::thread::scope(|s| {
            // The restore's end is heard at once (it is part of the VE's suspended time);
            // the daemon is looked at every 20 ms meanwhile.
            let (done_tx, done_rx) = std::sync::mpsc::channel();
            let worker = s.spawn(move || {
                let r = self.restore(opts);
                let _ = done_tx.send(());
                r
            });
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                done_rx.recv_timeout(Duration::from_millis(20))
            {
                if let Some(d) = inc.lazy.as_mut() {
                    if d.failed() && daemon_failed.is_none() {
                        daemon_failed = Some(Instant::now());
                    }
                }
                if daemon_failed.is_some_and(|t| t.elapsed() > Duration::from_secs(2)) {
                    stopper.stop();
                }
            }
            worker
                .join()
                .map_err(|_| Error::Step("restore thread panicked".into()))
        })?;
        if daemon_failed.is_some() {
            let tail = std::fs::read_to_string(images.join("lazy-pages.log"))
                .unwrap_or_default()
                .lines()
                .rfind(|l| l.contains("Error"))
                .unwrap_or("")
                .to_string();
            let why = format!("CRIU's lazy-pages daemon failed: {tail}");
            return Err(match r {
                Err(e) => Error::Step(format!("{why}: {}", chain(&e))),
                Ok(_) => Error::Step(why),
            });
        }
        r.map(|_| ())
    }
}

/// One line when the dump had to thaw the VE (its link still down) to let a task out of
/// a vfork wait, which the suspended time includes.
fn say_vfork_thaws(progress: &Progress, thaws: u32) {
    if thaws > 0 {
        progress.line(&format!(
            "a task was frozen waiting in vfork for its child's exec: the VE was thawed \
             {thaws} time(s) until the child had exec'd, then frozen again"
        ));
    }
}

/// [`criu_kdat::ensure`] before anything is frozen, saying in one line when it made
/// CRIU's cache.
fn kdat_ready(say: impl FnOnce(&str)) {
    match criu_kdat::ensure() {
        Kdat::Made(at) => say(&format!(
            "made CRIU's kernel-probe cache at {} (linked from /run/criu.kdat): CRIU skips \
             its probes on each start, which otherwise run while the VE is frozen",
            at.display()
        )),
        Kdat::Without(why) => tracing::debug!(why, "no CRIU kerndat cache"),
        Kdat::CriusOwn | Kdat::Linked => {}
    }
}

/// [`criu::prepare_lazy_pages`], saying in one line when it raised the sysctl.
fn lazy_pipe_ready(say: impl FnOnce(&str)) -> Result<()> {
    if let criu::PipePrep::Raised(from, to) = criu::prepare_lazy_pages()? {
        say(&format!(
            "raised fs.pipe-max-size from {from} to {to}: CRIU's lazy page transfer needs a \
             pipe that large and this process lacks CAP_SYS_RESOURCE"
        ));
    }
    Ok(())
}

/// The VE's host link, taken down while a dump of a move has the VE frozen: the dump
/// leaves its sockets live (for a way back), and CRIU does not lock the network itself
/// then (see [`DumpOpts::link_cut`](crate::ve::checkpoint::DumpOpts)).
struct HostLink<'a>(Option<&'a crate::ve::net::NetRecord>);

impl HostLink<'_> {
    fn set(&self, up: bool) -> Result<()> {
        let Some(n) = self.0 else { return Ok(()) };
        if up {
            // Up again only on the way back: a destination whose restore failed late may
            // have announced the VE's addresses already (its link comes up with the
            // sockets, before the restore ends), so neighbours learn this host again.
            crate::ve::net::reconnect(n)?;
        } else {
            crate::ve::net::set_host_link(n, false)?;
        }
        Ok(())
    }
}

/// What a move's dump runs once CRIU waits for its request: the VE is frozen (as a
/// paused container, so that a failure can resume it) and its host link goes down; the
/// moment is kept as the start of its suspended time.
fn freeze_and_cut(
    rt: &Runtime,
    id: &str,
    links: &HostLink,
    frozen: &std::sync::OnceLock<Instant>,
) -> std::result::Result<(), String> {
    rt.pause(id).map_err(|e| chain(&e))?;
    let _ = frozen.set(Instant::now());
    links.set(false).map_err(|e| chain(&e))
}

fn json_of(p: &[u8]) -> Result<Value> {
    serde_json::from_slice(p).map_err(|e| mig::MigError::Protocol(e.to_string()).into())
}

/// The options for restoring a received VE: detached, with the options every move's
/// dump was taken with; the restore's mounts for CRIU are left to `later`.
fn received(
    id: &str,
    bundle: &Path,
    images: &Path,
    lazy: bool,
    stopper: Option<Stopper>,
    later: &LaterMounts,
) -> RestoreOptions {
    RestoreOptions {
        id: id.to_string(),
        bundle: bundle.to_path_buf(),
        criu: RestoreOpts {
            criu: CriuOpts {
                image: images.to_path_buf(),
                tcp_established: true,
                file_locks: true,
                lazy_pages: lazy,
                stopper,
                ..Default::default()
            },
            // The lazy-pages daemon starts beside the restore's own preparations.
            lazy_daemon: lazy.then(|| images.to_path_buf()),
            leave_mounts: Some(later.clone()),
            ..Default::default()
        },
        console_socket: None,
        pid_file: None,
        detach: true,
        keep_on_hook_failure: false,
        action_limit: Some(channel::ACTION_LIMIT),
        trusted: false,
    }
}

/// The bundle's config as the source had it, with the rootfs that came along and the
/// private area taken over from the image that came along.
fn write_config(bundle: &Path, config: &Value, disk: Option<&Path>) -> Result<()> {
    let mut config = config.clone();
    if !config.is_object() {
        return Err(mig::MigError::Protocol("the source sent no config.json".into()).into());
    }
    config["root"]["path"] = json!("rootfs");
    if let Some(a) = config
        .get_mut("annotations")
        .and_then(|a| a.as_object_mut())
    {
        // The image lives at this host's own place for the VE now.
        a.remove("io.vzrun.disk.image");
    }
    if let Some(d) = disk {
        crate::ve::disk::hand_over(d).map_err(|e| Error::io("mark", d, e))?;
    }
    let path = bundle.join("config.json");
    let text =
        serde_json::to_vec_pretty(&config).map_err(|e| Error::Step(format!("config.json: {e}")))?;
    std::fs::write(&path, text).map_err(|e| Error::io("write", &path, e))
}

/// Where a destination keeps what it received for VE `id`: the bundle it runs from
/// and, during the move, the images.
fn received_dir(id: &str) -> PathBuf {
    crate::ve::data_dir().join("migrated").join(id)
}

/// The directory a VE received by migration runs from, when `bundle` (its state's) is
/// that VE's received bundle. It stays with a delete (runc leaves a bundle alone, and
/// this rootfs holds the VE's files) and goes when the VE moves on.
fn received_dir_of(id: &str, bundle: &Path) -> Option<PathBuf> {
    let dir = received_dir(id);
    // The record's bundle is canonical; the data directory's name may not be.
    let canonical = std::fs::canonicalize(dir.join("bundle")).ok()?;
    (bundle == canonical).then_some(dir)
}

/// Everything received for one VE, removed again unless it became a VE.
struct Incoming {
    dir: PathBuf,
    disk: Option<PathBuf>,
    lazy: Option<LazyPages>,
    /// The current pre-copy round's CRIU page server.
    page_server: Option<PageServer>,
    kept: bool,
}

impl Incoming {
    fn accept(rt: &Runtime, id: &str) -> Result<Incoming> {
        crate::runtime::root::validate_id(id)?;
        if rt.root.container_dir(id).exists() {
            return Err(Error::Step(format!(
                "container {id} already exists on the destination"
            )));
        }
        let dir = received_dir(id);
        // Root's alone all the way down: the rootfs arrives with the VE's own modes and
        // setuid files, the images with its memory, and the VE runs from here.
        if let Some(parent) = dir.parent() {
            crate::sys::fs::private_dir(parent).map_err(|e| Error::io("create", parent, e))?;
        }
        // Made in one step, so of two moves of one ID the second is refused here.
        match crate::sys::fs::private_dir_new(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::Step(format!(
                    "{} is left from an earlier VE {id} here; remove it to receive this one",
                    dir.display()
                )));
            }
            Err(e) => return Err(Error::io("create", &dir, e)),
        }
        // From here on, dropping it removes the directory again.
        let inc = Incoming {
            dir,
            disk: None,
            lazy: None,
            page_server: None,
            kept: false,
        };
        for d in [inc.dir.join("bundle"), inc.dir.join("images")] {
            crate::sys::fs::private_dir_new(&d).map_err(|e| Error::io("create", &d, e))?;
        }
        Ok(inc)
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        drop(self.lazy.take());
        if let Some(ps) = self.page_server.take() {
            ps.finish();
        }
        if self.kept {
            let _ = std::fs::remove_dir_all(self.dir.join("images"));
            return;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(d) = &self.disk {
            let _ = std::fs::remove_file(d);
            let _ = std::fs::remove_file(crate::ve::disk::adopt_marker(d));
        }
    }
}

struct Report {
    rounds: u32,
    suspended: Duration,
    memory_bytes: u64,
    /// Post-copy: pages fetched on demand and pushed in the background.
    pages: Option<criu::LazyCounts>,
}

/// How every dump of a move is taken.
fn dump_opts(image: &Path) -> DumpOpts {
    DumpOpts {
        criu: CriuOpts {
            image: image.to_path_buf(),
            tcp_established: true,
            file_locks: true,
            // The destination restores into cgroups made from the spec and never reads
            // the image's (see `received`): CRIU need not mount every v1 hierarchy and
            // read the VE's cgroup properties with the VE frozen (about 20 ms here).
            manage_cgroups_mode: Some(CgroupsMode::Ignore),
            ..Default::default()
        },
        // A client connecting at the moment of the dump must not fail the move.
        skip_in_flight: true,
        // Every frozen dump of a move takes the VE's host link down first.
        link_cut: true,
        plain_tmpfs_external: true,
        ..Default::default()
    }
}

/// Whether the destination confirmed it keeps the VE.
enum Committed {
    Yes,
    /// The commit was sent but no confirmation came: the destination runs the VE if
    /// the commit reached it, and stops its copy if not.
    Unconfirmed(String),
    /// The restore was asked for and neither an answer nor a failure came: the
    /// destination may run the VE (it does from the restore on), or may have died first.
    Unanswered(String),
}

impl Committed {
    /// Why the source's copy stays frozen, for the cases where nobody can say which
    /// host runs the VE; None when the destination has it.
    fn unknown(&self, id: &str) -> Option<String> {
        let what = match self {
            Committed::Yes => return None,
            Committed::Unconfirmed(why) => {
                format!("the destination restored {id} but did not confirm the commit ({why})")
            }
            Committed::Unanswered(why) => {
                format!("the destination did not answer the restore of {id} ({why})")
            }
        };
        // Resumed here, it might run twice; deleted, it might run nowhere.
        Some(format!(
            "{what}: it may run there (a destination without the commit stops its copy \
             within {} s). The source VE {id} is left frozen here, its host link down: \
             once the destination is checked, `vzrun delete -f {id}` here if it runs \
             there, or `vzrun resume {id}` if it runs nowhere",
            channel::COMMIT_WAIT.as_secs()
        ))
    }
}

/// One move in progress: the channel to the destination and what the source side keeps.
struct Move<'a> {
    rt: &'a Runtime,
    opts: &'a SendOptions,
    ch: Channel,
    /// Local directory for CRIU's images (only the non-memory ones where pages go
    /// straight to the destination).
    out: PathBuf,
    disk: Option<DiskRecord>,
    /// Chunk hashes of the disk image as sent, for the pass with the VE frozen.
    hashes: HashMap<u64, u64>,
    /// A writable rootfs and what its first pass saw, for the pass with the VE frozen.
    tree: Option<(PathBuf, mig::Manifest)>,
    progress: &'a Progress,
    /// Where CRIU's page traffic enters and leaves the encrypted tunnels.
    ends: tunnel::Ends,
}

impl Move<'_> {
    fn id(&self) -> &str {
        &self.opts.id
    }

    fn kept_running(&self, e: Error) -> Error {
        Error::KeptRunning {
            id: self.opts.id.clone(),
            source: Box::new(e),
        }
    }

    /// After a successful move: the source VE goes (or stays, stopped, with keep_source).
    fn retire_source(&self) -> Result<()> {
        let id = self.id();
        if self.opts.keep_source {
            if let Ok(l) = self.rt.root.load(id) {
                // Only a live init: a pid the state still names may be another
                // process's by now (Root::read says stopped then).
                if let (Some(pid), false) = (
                    l.container.pid(),
                    l.container.status() == libcontainer::container::ContainerStatus::Stopped,
                ) {
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::SIGKILL);
                }
            }
            self.progress
                .line(&format!("source VE {id} kept, stopped (--keep-source)"));
            return Ok(());
        }
        let received = self
            .rt
            .root
            .read(id)
            .ok()
            .and_then(|(_, r)| received_dir_of(id, &r.bundle));
        self.rt.delete(id, true)?;
        // A VE that came here by migration ran from the copy the move brought; its files
        // live on the destination now, and a stale copy left here would refuse the VE's
        // return to this host.
        if let Some(dir) = received {
            std::fs::remove_dir_all(&dir).map_err(|e| Error::io("remove", &dir, e))?;
        }
        Ok(())
    }

    /// Asks the destination for a page server for the dump into image directory `name`.
    fn remote_page_server(&mut self, name: &str) -> Result<Option<PageServerAddr>> {
        let ps = self
            .ch
            .exchange(kind::PROGRESS, json!({ "page_server_for": name }))?;
        let Some(text) = ps["address"].as_str() else {
            return Ok(None);
        };
        let remote: SocketAddr = text.parse().map_err(|_| {
            mig::MigError::Protocol(format!("page server address {text:?} is not ADDRESS:PORT"))
        })?;
        // The dump sends its pages to a loopback port: the tunnel carries them.
        let local = self.ends.forward(remote)?;
        Ok(Some(PageServerAddr {
            address: local.ip().to_string(),
            port: local.port().into(),
        }))
    }

    /// The last passes over the VE's files, with the VE frozen: the rootfs's, then the
    /// private area's.
    fn final_files(&mut self) -> Result<()> {
        self.final_tree()?;
        self.final_disk()
    }

    /// The rootfs's pass with the VE frozen (a writable one only): what changed since the
    /// first pass, and the names gone since.
    fn final_tree(&mut self) -> Result<()> {
        let Some((rootfs, seen)) = self.tree.take() else {
            return Ok(());
        };
        let t = Instant::now();
        let sent = mig::send_delta(&mut self.ch, &rootfs, seen)?;
        self.progress.line(&format!(
            "rootfs pass 2 (frozen): {} entries sent ({:.1} KiB), {} names removed, {} ms",
            sent.entries,
            sent.bytes as f64 / 1024.0,
            sent.removed,
            t.elapsed().as_millis()
        ));
        Ok(())
    }

    /// The last disk pass with the VE frozen: its filesystem flushed, only changed chunks.
    fn final_disk(&mut self) -> Result<()> {
        let Some(d) = &self.disk else { return Ok(()) };
        if let Some(p) = &d.private {
            let f = std::fs::File::open(p).map_err(|e| Error::io("open", p, e))?;
            nix::unistd::syncfs(std::os::fd::AsRawFd::as_raw_fd(&f))
                .map_err(|e| Error::io("sync", p, e.into()))?;
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

    /// Sends the images in `dir` and has the destination restore; waits for its answer,
    /// then gives the source's copy up (COMMIT). An error means the destination does not
    /// run the VE: the request never went out, or the destination said it failed (it
    /// stops any copy it made before it says so). Once the request is out, silence is
    /// no such answer ([`Committed::Unanswered`]): a destination runs the VE from the
    /// moment CRIU restores it, before it can answer.
    fn restore_remote(&mut self, dir: &Path, req: Value) -> Result<(Value, Committed, Instant)> {
        let n = mig::send_dir(&mut self.ch, dir)?;
        self.progress
            .line(&format!("images: {:.1} KiB sent", n as f64 / 1024.0));
        self.ch.send_json(kind::RESTORE, &req)?;
        let done: Value = match self.ch.expect_json(kind::DONE) {
            Ok(d) => d,
            Err(e @ mig::MigError::Remote(_)) => return Err(e.into()),
            Err(e) => {
                return Ok((
                    Value::Null,
                    Committed::Unanswered(e.to_string()),
                    Instant::now(),
                ))
            }
        };
        // The VE runs on the destination from here: the commit's round trip is not
        // part of its suspended time.
        let running = Instant::now();
        self.progress.line(&format!(
            "restored on the destination in {} ms",
            done["restore_ms"].as_u64().unwrap_or(0)
        ));
        let confirmed = self.ch.send(kind::COMMIT, &[]).and_then(|()| {
            self.ch.set_read_timeout(Some(channel::COMMIT_WAIT))?;
            let (k, _) = self.ch.recv()?;
            self.ch.set_read_timeout(Some(channel::FRAME_TIMEOUT))?;
            match k {
                kind::COMMITTED => Ok(()),
                k => Err(mig::MigError::Protocol(format!(
                    "frame {k} where the destination's commit belongs"
                ))),
            }
        });
        Ok(match confirmed {
            Ok(()) => (done, Committed::Yes, running),
            Err(e) => (done, Committed::Unconfirmed(e.to_string()), running),
        })
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
        let (rt, id) = (self.rt, self.opts.id.clone());
        let net = rt.root.load(&id)?.record.ve.net;
        let links = HostLink(net.as_ref());
        let frozen = std::sync::OnceLock::new();
        let outcome = (|| -> Result<(Committed, Instant)> {
            let mut o = dump_opts(dir);
            o.leave_running = true;
            o.criu.parent = parent;
            if let Some(name) = page_server_for {
                o.page_server = self.remote_page_server(name)?;
            }
            let dumped = rt
                .dump_source(&id)?
                .dump_at(&o, &id, || freeze_and_cut(rt, &id, &links, &frozen))?;
            say_vfork_thaws(self.progress, dumped.vfork_thaws);
            let since = frozen.get().copied().unwrap_or_else(Instant::now);
            self.progress
                .line(&format!("checkpoint: {} ms", since.elapsed().as_millis()));
            self.final_files()?;
            self.restore_remote(dir, json!({"lazy": false}))
                .map(|(_, committed, at)| (committed, at))
        })();
        let running = match outcome {
            Ok((c, at)) => {
                if let Some(why) = c.unknown(&id) {
                    return Err(Error::Step(why));
                }
                at
            }
            Err(e) => {
                let _ = links.set(true);
                let _ = rt.resume(&id);
                return Err(self.kept_running(e));
            }
        };
        let suspended = frozen
            .get()
            .map(|t| running.saturating_duration_since(*t))
            .unwrap_or_default();
        self.retire_source()?;
        Ok(Report {
            rounds,
            suspended,
            memory_bytes,
            pages: None,
        })
    }

    fn postcopy(&mut self) -> Result<Report> {
        let (rt, id) = (self.rt, self.opts.id.clone());
        let t: Source = rt.dump_source(&id)?;
        let net = rt.root.load(&id)?.record.ve.net;
        let links = HostLink(net.as_ref());
        // CRIU's page server on loopback; the destination reaches it through a tunnel.
        let ps = tunnel::loopback_port()?;
        let public = self.ends.serve(ps)?;
        let (status_r, status_w) =
            nix::unistd::pipe().map_err(|e| Error::io("make", "a status pipe", e.into()))?;
        let mut o = dump_opts(&self.out);
        let stopper = Stopper::default();
        o.criu.stopper = Some(stopper.clone());
        o.criu.lazy_pages = true;
        o.page_server = Some(PageServerAddr {
            address: ps.ip().to_string(),
            port: ps.port().into(),
        });
        o.status_fd = Some(std::os::fd::AsRawFd::as_raw_fd(&status_w));
        let frozen = std::sync::OnceLock::new();
        // Until the destination runs the VE the way back is the source as it was.
        let back = |e: Error| {
            let _ = links.set(true);
            let _ = rt.resume(&id);
            Error::KeptRunning {
                id: id.clone(),
                source: Box::new(e),
            }
        };
        std::thread::scope(|s| {
            let dumper = s.spawn(|| {
                let r = t
                    .dump_at(&o, &id, || freeze_and_cut(rt, &id, &links, &frozen))
                    .map(|d| d.vfork_thaws);
                drop(status_w);
                r
            });
            let join = |dumper: std::thread::ScopedJoinHandle<Result<u32>>| {
                dumper
                    .join()
                    .map_err(|_| Error::Step("dump thread panicked".into()))?
            };
            // CRIU writes one byte once everything but memory is dumped and its page
            // server listens; an end of file means it failed.
            let mut ready = [0u8; 1];
            let got = std::fs::File::from(status_r).read(&mut ready).unwrap_or(0);
            if got == 0 {
                let e = join(dumper).err().unwrap_or_else(|| {
                    Error::Step("CRIU ended before its lazy page server was ready".into())
                });
                return Err(back(e));
            }
            let frozen = frozen.get().copied().unwrap_or_else(Instant::now);
            self.progress.line(&format!(
                "frozen; non-memory state dumped in {} ms, pages served from {public}",
                frozen.elapsed().as_millis()
            ));
            let out = self.out.clone();
            let outcome = (|| -> Result<(Value, Committed, Instant)> {
                self.final_files()?;
                self.restore_remote(
                    &out,
                    json!({"lazy": true, "page_server": public.to_string()}),
                )
            })();
            let (done, running) = match outcome {
                Ok((d, Committed::Yes, at)) => (d, at),
                // A destination that got the commit pulls its pages; one that did not
                // stops its copy, and then its page reports stop too.
                Ok((d, Committed::Unconfirmed(why), at)) => {
                    self.progress.line(&format!(
                        "the destination did not confirm the commit ({why}); following its pages"
                    ));
                    (d, at)
                }
                // No word at all: nothing to follow. CRIU stops serving pages (a copy
                // the destination runs stops when its watchdog finds none coming) and
                // the source keeps all of the VE's memory, frozen.
                Ok((_, c @ Committed::Unanswered(_), _)) => {
                    stopper.stop();
                    let _ = dumper.join();
                    return Err(Error::Step(c.unknown(&id).unwrap_or_default()));
                }
                Err(e) => {
                    // Nothing runs on the destination: stop CRIU, then thaw the VE.
                    stopper.stop();
                    let _ = dumper.join();
                    return Err(back(e));
                }
            };
            let suspended = running.saturating_duration_since(frozen);
            self.progress
                .line("running on the destination; its pages follow");
            let pages = match self.follow_pages(&done) {
                Ok(p) => p,
                Err(why) => {
                    // The destination is gone or gave up: what it lacks exists only in
                    // the source's tasks, which stay frozen (as they are since the dump)
                    // rather than be killed by CRIU's end.
                    stopper.stop();
                    let _ = dumper.join();
                    return Err(Error::Step(format!(
                        "post-copy of {id} broke off after the destination had started it: \
                         {why}; the source VE {id} is left frozen here with all of its \
                         memory, its host link down (post-copy: the VE is lost unless the \
                         source's copy is resumed here and the destination's is gone)"
                    )));
                }
            };
            // The dump ends once the destination has every page.
            match join(dumper) {
                Ok(thaws) => say_vfork_thaws(self.progress, thaws),
                Err(e) => {
                    return Err(Error::Step(format!(
                        "the VE runs on the destination, but the page transfer reported: {} \
                         (the source VE {id} is left as it is)",
                        chain(&e)
                    )))
                }
            }
            // CRIU has killed the source's tasks; in the cgroup frozen for the dump they
            // die once thawed.
            let _ = rt.resume(&id);
            let lazy = criu::stats_pages_written(&out.join("stats-dump")).unwrap_or(0);
            self.progress.line(&format!(
                "all pages moved after {:.3} s",
                frozen.elapsed().as_secs_f64()
            ));
            self.retire_source()?;
            Ok(Report {
                rounds: 0,
                suspended,
                memory_bytes: lazy.max(pages.demand + pages.pushed) * PAGE,
                pages: Some(pages),
            })
        })
    }

    /// Post-copy after the destination runs the VE: its reports of the pages that arrived,
    /// until it has them all. It reports twice a second; when nothing comes for its
    /// watchdog's time (and a little) it is taken as gone, since a host that died sends no
    /// FIN. The error says why.
    fn follow_pages(&mut self, done: &Value) -> std::result::Result<criu::LazyCounts, String> {
        let wait = Duration::from_millis(done["page_timeout_ms"].as_u64().unwrap_or(30_000))
            + Duration::from_secs(2);
        self.ch
            .set_read_timeout(Some(wait))
            .map_err(|e| e.to_string())?;
        let mut got = criu::LazyCounts::default();
        let mut total = 0;
        let started = Instant::now();
        loop {
            let v: Value = match self.ch.recv() {
                Ok((kind::PAGES, p)) => serde_json::from_slice(&p).map_err(|e| e.to_string())?,
                Ok((k, _)) => return Err(format!("unexpected frame {k} from the destination")),
                Err(mig::MigError::Remote(why)) => {
                    return Err(format!("the destination reported: {why}"))
                }
                Err(e) => {
                    let so_far = if total == 0 {
                        "before it reported a page".to_string()
                    } else {
                        format!("after {} of {total} pages", got.demand + got.pushed)
                    };
                    // A read that timed out says "Resource temporarily unavailable".
                    let how = match &e {
                        mig::MigError::Io(io)
                            if matches!(
                                io.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) =>
                        {
                            "silence".to_string()
                        }
                        other => other.to_string(),
                    };
                    return Err(format!(
                        "no word from the destination for {:.1} s {so_far} ({how})",
                        wait.as_secs_f64()
                    ));
                }
            };
            got = criu::LazyCounts {
                demand: v["demand"].as_u64().unwrap_or(0),
                pushed: v["pushed"].as_u64().unwrap_or(0),
                ..Default::default()
            };
            total = v["total"].as_u64().unwrap_or(0);
            self.progress
                .pages(got.demand + got.pushed, total, started.elapsed());
            if v["done"].as_bool().unwrap_or(false) {
                let _ = self.ch.set_read_timeout(None);
                self.progress.line(&format!(
                    "all pages moved: {} on demand, {} pushed in the background",
                    got.demand, got.pushed
                ));
                return Ok(got);
            }
        }
    }

    /// Rounds of pre-dumps while the VE runs, each round's pages going to a CRIU page
    /// server of the destination straight into that round's image directory; then the
    /// frozen final dump of what is still dirty.
    fn precopy(&mut self) -> Result<Report> {
        let (rt, id) = (self.rt, self.opts.id.clone());
        let mut written: Vec<u64> = Vec::new();
        let mut parent: Option<PathBuf> = None;
        let mut round = 0u32;
        let stop = loop {
            round += 1;
            let name = format!("round-{round}");
            let dir = self.out.join(&name);
            let mut o = dump_opts(&dir);
            o.pre_dump = true;
            o.leave_running = true;
            o.criu.parent = parent.clone();
            o.page_server = self.remote_page_server(&name)?;
            rt.dump_source(&id)?.dump(&o, &id)?;
            let pages = criu::stats_pages_written(&dir.join("stats-dump")).unwrap_or(0);
            written.push(pages);
            self.progress
                .line(&format!("round {round}: {pages} pages sent"));
            parent = Some(PathBuf::from(format!("../{name}")));
            if let Some(s) = mig::precopy_stop(&written, FEW_DIRTY_PAGES, self.opts.max_rounds) {
                break s;
            }
        };
        self.progress
            .line(&format!("pre-copy ends after {round} rounds: {stop}"));
        let dir = self.out.join("final");
        let sent = written.iter().sum::<u64>() * PAGE;
        self.frozen_final(&dir, parent, Some("final"), round, sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_destination_that_says_so_takes_the_frozen_rootfs_pass_or_sync() {
        // An older destination answers HELLO with an empty OK.
        assert!(!takes(b"", TAKES_DELTA));
        assert!(!takes(br#"{"takes": []}"#, TAKES_DELTA));
        assert!(!takes(br#"{"takes": "delta"}"#, TAKES_DELTA));
        assert!(takes(br#"{"takes": ["delta"]}"#, TAKES_DELTA));
        assert!(!takes(br#"{"takes": ["delta"]}"#, TAKES_SYNC));
        assert_eq!(kind::name(kind::DELTA), "14 (DELTA)");
        assert!(kind::name(99).contains("does not know"));
    }
}
