//! `vzrun migrate-listen`: receive VEs from `vzrun migrate` on other hosts, one at a
//! time. A peer that cannot prove it holds the key is refused before it can send
//! anything. A migration that fails here leaves nothing behind: no bundle, image, disk
//! or half-restored VE.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use crate::cli::GlobalOpts;
use crate::runtime::root::Root;
use crate::sys::criu;
use crate::ve::migrate::{self as mig, kind, Channel, FileHeader, Key};

#[derive(clap::Args, Debug)]
#[command(about = "Receive VEs moved here with `vzrun migrate`")]
pub struct Args {
    /// Address to listen on, HOST:PORT (port 0 picks a free one; the address is printed)
    #[arg(long)]
    pub listen: String,
    /// File holding the key shared with the sources
    #[arg(long = "key-file")]
    pub key_file: PathBuf,
    /// Exit after the first migration attempt (its status is the exit status)
    #[arg(long)]
    pub once: bool,
}

pub fn run(args: Args, global: &GlobalOpts) -> Result<i32> {
    let key = Key::load(&args.key_file)?;
    let root = super::runtime(global).root;
    let addr = mig::parse_addr("--listen", &args.listen)?;
    let listener = TcpListener::bind(addr).with_context(|| format!("--listen {addr}"))?;
    println!("listening on {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    for conn in listener.incoming() {
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                eprintln!("migrate-listen: accept: {e}");
                continue;
            }
        };
        let peer = stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let outcome = receive(&root, global, stream, &key);
        match &outcome {
            Ok(id) => eprintln!("migrate-listen: {id} from {peer} is running here"),
            Err(e) => eprintln!("migrate-listen: from {peer}: {e:#}"),
        }
        if args.once {
            return outcome.map(|_| 0);
        }
    }
    Ok(0)
}

/// Everything received for one VE, removed again unless it became a VE.
struct Incoming {
    dir: PathBuf,
    disk: Option<PathBuf>,
    lazy: Option<criu::LazyPages>,
    /// The current pre-copy round's CRIU page server.
    page_server: Option<criu::PageServer>,
    kept: bool,
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

fn receive(root: &Root, global: &GlobalOpts, stream: TcpStream, key: &Key) -> Result<String> {
    let local_ip = stream.local_addr()?.ip();
    let mut ch = Channel::server(stream, key)?;
    let hello: Value = ch.expect_json(kind::HELLO)?;
    let id = hello["id"].as_str().unwrap_or_default().to_string();
    let mut inc = match accept(root, &id) {
        Ok(i) => i,
        Err(e) => {
            ch.fail(&format!("{e:#}"));
            return Err(e);
        }
    };
    ch.send(kind::OK, &[])?;
    match receive_ve(root, global, &mut ch, &hello, &id, &mut inc, local_ip) {
        Ok(()) => {
            inc.kept = true;
            // Post-copy: the pages keep coming after the VE runs; the images go when the
            // lazy-pages daemon has them all.
            if let Some(mut lazy) = inc.lazy.take() {
                let started = Instant::now();
                let st = lazy.wait();
                eprintln!(
                    "migrate-listen: {id}: all pages arrived {:.3} s after restore ({})",
                    started.elapsed().as_secs_f64(),
                    st.map(|s| s.to_string()).unwrap_or_default()
                );
            }
            Ok(id)
        }
        Err(e) => {
            ch.fail(&format!("{e:#}"));
            // A VE that runs must not be torn down by the failure of a later step.
            if root.container_dir(&id).join("state.json").exists() {
                inc.kept = true;
            }
            Err(e)
        }
    }
}

fn accept(root: &Root, id: &str) -> Result<Incoming> {
    crate::runtime::root::validate_id(id)?;
    if root.container_dir(id).exists() {
        bail!("container {id} already exists on the destination");
    }
    let dir = crate::ve::data_dir().join("migrated").join(id);
    if dir.exists() {
        bail!(
            "{} is left from an earlier VE {id} here; remove it to receive this one",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir.join("bundle"))
        .with_context(|| format!("create {}", dir.display()))?;
    std::fs::create_dir_all(dir.join("images"))?;
    Ok(Incoming {
        dir,
        disk: None,
        lazy: None,
        page_server: None,
        kept: false,
    })
}

#[allow(clippy::too_many_arguments)]
fn receive_ve(
    root: &Root,
    global: &GlobalOpts,
    ch: &mut Channel,
    hello: &Value,
    id: &str,
    inc: &mut Incoming,
    local_ip: std::net::IpAddr,
) -> Result<()> {
    let bundle = inc.dir.join("bundle");
    let mut images = inc.dir.join("images");
    let mut tar: Option<Child> = None;
    loop {
        let (k, p) = ch.recv()?;
        match k {
            kind::TAR => {
                if tar.is_none() {
                    std::fs::create_dir_all(bundle.join("rootfs"))?;
                    tar = Some(
                        Command::new("tar")
                            .args(["--numeric-owner", "--xattrs", "-p", "-C"])
                            .arg(bundle.join("rootfs"))
                            .args(["-xf", "-"])
                            .stdin(Stdio::piped())
                            .spawn()
                            .context("tar")?,
                    );
                }
                if let Some(stdin) = tar.as_mut().and_then(|t| t.stdin.as_mut()) {
                    stdin.write_all(&p).context("untar the rootfs")?;
                }
            }
            kind::END if tar.is_some() => {
                if let Some(mut t) = tar.take() {
                    drop(t.stdin.take());
                    if !t.wait()?.success() {
                        bail!("untar the rootfs into {} failed", bundle.display());
                    }
                }
            }
            kind::FILE => {
                let h: FileHeader =
                    serde_json::from_slice(&p).map_err(|e| anyhow!("file header: {e}"))?;
                let path = if h.kind == "disk" {
                    let d = crate::ve::private_image(&root.path, id);
                    if let Some(parent) = d.parent() {
                        std::fs::create_dir_all(parent)?;
                    }
                    if !h.update && d.exists() {
                        bail!("{} exists already on the destination", d.display());
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
                let req: Value = serde_json::from_slice(&p)?;
                let name = mig::plain_name(req["page_server_for"].as_str().unwrap_or(""))?;
                if let Some(ps) = inc.page_server.take() {
                    ps.finish();
                }
                images = inc.dir.join("images").join(name);
                std::fs::create_dir_all(&images)?;
                let port = TcpListener::bind((local_ip, 0))?.local_addr()?.port();
                inc.page_server = Some(criu::PageServer::start(
                    &images,
                    SocketAddr::new(local_ip, port),
                )?);
                ch.send_json(
                    kind::PROGRESS,
                    &json!({"address": SocketAddr::new(local_ip, port).to_string()}),
                )?;
            }
            kind::RESTORE => {
                let req: Value = serde_json::from_slice(&p)?;
                if let Some(ps) = inc.page_server.take() {
                    ps.finish();
                }
                let started = Instant::now();
                write_config(&bundle, &hello["config"], inc.disk.as_deref())?;
                let lazy = req["lazy"].as_bool().unwrap_or(false);
                if lazy {
                    let ps: SocketAddr =
                        req["page_server"]
                            .as_str()
                            .and_then(|s| s.parse().ok())
                            .ok_or_else(|| anyhow!("restore: no page server address"))?;
                    inc.lazy = Some(criu::LazyPages::start(&images, ps)?);
                    lazy_restore(global, id, &bundle, &images, inc)?;
                } else {
                    restore(global, id, &bundle, &images, false)?;
                }
                ch.send_json(
                    kind::DONE,
                    &json!({"restore_ms": started.elapsed().as_millis() as u64}),
                )?;
                return Ok(());
            }
            other => bail!("unexpected frame {other}"),
        }
    }
}

/// The bundle's config as the source had it, with the rootfs that came along and the
/// private area taken over from the image that came along.
fn write_config(bundle: &Path, config: &Value, disk: Option<&Path>) -> Result<()> {
    let mut config = config.clone();
    if !config.is_object() {
        bail!("the source sent no config.json");
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
        crate::ve::disk::hand_over(d)?;
    }
    std::fs::write(
        bundle.join("config.json"),
        serde_json::to_vec_pretty(&config)?,
    )?;
    Ok(())
}

/// A post-copy restore, watched: when the lazy-pages daemon gives up (its page server
/// is gone, or CRIU cannot serve pages on this kernel) the restore would wait for pages
/// for ever, so it is stopped and reported.
fn lazy_restore(
    global: &GlobalOpts,
    id: &str,
    bundle: &Path,
    images: &Path,
    inc: &mut Incoming,
) -> Result<()> {
    let (g, i, b, im) = (
        global.clone(),
        id.to_string(),
        bundle.to_path_buf(),
        images.to_path_buf(),
    );
    let worker = std::thread::spawn(move || restore(&g, &i, &b, &im, true));
    let mut daemon_failed: Option<Instant> = None;
    while !worker.is_finished() {
        std::thread::sleep(std::time::Duration::from_millis(20));
        if let Some(d) = inc.lazy.as_mut() {
            if d.failed() && daemon_failed.is_none() {
                daemon_failed = Some(Instant::now());
            }
        }
        if daemon_failed.is_some_and(|t| t.elapsed() > std::time::Duration::from_secs(2)) {
            mig::kill_criu_children();
        }
    }
    let r = worker
        .join()
        .map_err(|_| anyhow!("restore thread panicked"))?;
    if daemon_failed.is_some() {
        let tail = std::fs::read_to_string(images.join("lazy-pages.log"))
            .unwrap_or_default()
            .lines()
            .rfind(|l| l.contains("Error"))
            .unwrap_or("")
            .to_string();
        r.context(format!("CRIU's lazy-pages daemon failed: {tail}"))?;
        bail!("CRIU's lazy-pages daemon failed: {tail}");
    }
    r
}

fn restore(global: &GlobalOpts, id: &str, bundle: &Path, images: &Path, lazy: bool) -> Result<()> {
    super::restore::run(
        super::restore::Args {
            criu: super::checkpoint::CriuFlags {
                image_path: Some(images.to_path_buf()),
                tcp_established: true,
                file_locks: true,
                lazy_pages: lazy,
                ..Default::default()
            },
            bundle: Some(bundle.to_path_buf()),
            detach: true,
            pid_file: None,
            console_socket: None,
            no_pivot: false,
            no_subreaper: false,
            tcp_close: false,
            lsm_profile: None,
            lsm_mount_context: None,
            keep_on_hook_failure: false,
            id: Some(id.to_string()),
        },
        global,
    )
    .map(|_| ())
}
