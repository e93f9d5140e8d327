//! `vzrun migrate-listen`: receive VEs from `vzrun migrate` on other hosts
//! (`runtime::migrate`), each connection on its own thread. A peer that cannot prove it holds the key is refused before
//! it can send anything; a migration that fails here leaves nothing behind.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::cli::GlobalOpts;
use crate::commands::out::{self, outln};
use crate::runtime::error::chain;
use crate::runtime::Runtime;
use crate::ve::migrate::gate::Gate;
use crate::ve::migrate::{parse_addr, Key};

#[derive(clap::Args, Debug)]
#[command(about = "Receive VEs from `vzrun migrate`")]
#[command(
    after_help = "Example:\n  vzrun migrate-listen --listen 0.0.0.0:4700 --key-file /etc/vzrun/migrate.key"
)]
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
    /// Post-copy watchdog, in seconds: when no page arrives from the source for this
    /// long, the move ends with what is missing and the VE is stopped here
    #[arg(long = "page-timeout", default_value_t = 30.0)]
    pub page_timeout: f64,
}

pub fn run(args: Args, global: &GlobalOpts) -> Result<i32> {
    let key = Key::load(&args.key_file).map_err(super::migrate::flag_words)?;
    // The setting is named by its flag here: the address error reads "--listen: ...".
    let addr = parse_addr("--listen", &args.listen)?;
    let page_timeout = Duration::try_from_secs_f64(args.page_timeout)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| {
            format!(
                "--page-timeout: {} is not a positive number of seconds",
                args.page_timeout
            )
        })?;
    let rt = super::runtime(global);
    let listener = TcpListener::bind(addr).with_context(|| format!("--listen {addr}"))?;
    // Whoever started the listener may stop reading once it has the address.
    outln!("listening on {}", listener.local_addr()?).or_else(out::closed_is_ok)?;
    // Each connection on its own thread: a peer that connects and says nothing holds
    // only its own thread and one of the few slots its address gets before proving the
    // key (`gate`: a new connection closes the oldest unproved one), until the
    // handshake's deadline drops it. Moves that passed the
    // handshake are bounded, since each restores a VE here.
    let rt = Arc::new(rt);
    let key = Arc::new(key);
    let gate = Arc::new(Gate::default());
    let open = Arc::new(AtomicUsize::new(0));
    // --once: the first peer that proves the key is the move; its outcome is the exit
    // status. A connection that never proves it does not use the listener up.
    let taken = Arc::new(AtomicBool::new(false));
    let (outcome_tx, outcome) = mpsc::channel::<bool>();
    let once = args.once;
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let stream = match conn {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("migrate-listen: accept: {e}");
                    continue;
                }
            };
            if open.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
                eprintln!("migrate-listen: {MAX_CONNECTIONS} connections open: refusing one more");
                continue;
            }
            let Ok(peer) = stream.peer_addr() else {
                continue;
            };
            let (pass, closed) = gate.admit(peer.ip(), &stream);
            for p in closed {
                eprintln!(
                    "migrate-listen: closed an unfinished handshake from {p} (too many open)"
                );
            }
            open.fetch_add(1, Ordering::SeqCst);
            let (rt, key, open, taken) = (rt.clone(), key.clone(), open.clone(), taken.clone());
            let outcome_tx = outcome_tx.clone();
            std::thread::spawn(move || {
                // Reports and gives the slot back however the move ends, a panic too
                // (a --once listener would otherwise wait for ever).
                let done = std::cell::RefCell::new(Served {
                    open,
                    outcome: None,
                    ok: false,
                });
                let proved = || {
                    drop(pass);
                    let mine = !once || !taken.swap(true, Ordering::SeqCst);
                    if once && mine {
                        done.borrow_mut().outcome = Some(outcome_tx);
                    }
                    mine
                };
                let ok = serve(&rt, stream, &key, page_timeout, proved).is_ok();
                done.borrow_mut().ok = ok;
            });
        }
    });
    match outcome.recv() {
        Ok(true) => Ok(0),
        Ok(false) => Ok(1),
        // Serving for good: only the accept loop's end (never) gets here.
        Err(_) => Ok(0),
    }
}

/// One connection's end: its slot given back and, for --once's move, the outcome sent.
struct Served {
    open: Arc<AtomicUsize>,
    outcome: Option<mpsc::Sender<bool>>,
    ok: bool,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
        if let Some(tx) = self.outcome.take() {
            let _ = tx.send(self.ok);
        }
    }
}

/// Connections served at once (most of them, at any time, idle peers on their way out).
const MAX_CONNECTIONS: usize = 256;

/// Receives one VE and reports how it went.
fn serve(
    rt: &Runtime,
    stream: TcpStream,
    key: &Key,
    page_timeout: Duration,
    proved: impl FnOnce() -> bool,
) -> crate::runtime::error::Result<()> {
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    match rt.receive(stream, key, page_timeout, proved) {
        Ok(got) => {
            if let Some((after, status)) = &got.pages {
                eprintln!(
                    "migrate-listen: {}: all pages arrived {:.3} s after restore ({status})",
                    got.id,
                    after.as_secs_f64()
                );
            }
            eprintln!("migrate-listen: {} from {peer} is running here", got.id);
            Ok(())
        }
        Err(e) => {
            eprintln!("migrate-listen: from {peer}: {}", chain(&e));
            Err(e)
        }
    }
}
