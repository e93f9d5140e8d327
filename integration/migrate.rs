//! Moving a VE between two "hosts" on one machine: two vzrun roots, the destination's
//! `migrate-listen` inside a network namespace made here, both hosts and a client
//! namespace on one test LAN (a bridge), the VE's address published on it by proxy ARP.
//! Checks what a user sees: the VE arrives running with its address and its processes'
//! state, a TCP client stays connected, a wrong key is refused, and a listener that dies
//! mid-way leaves the VE running on the source. Addresses: 198.51.100.240/28,
//! 198.51.100.232/29 and 203.0.113.208-239, one /29 per test.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Bundle, Runtime};
use serde_json::{json, Value};

fn sh(cmd: &str) {
    let o = Command::new("sh").args(["-c", cmd]).output().unwrap();
    assert!(o.status.success(), "{cmd}: {o:?}");
}

/// The test LAN: a bridge on the host (the source host's uplink), the destination's
/// namespace with an uplink of the same name, and a client namespace. Removed on drop.
struct Lan {
    tag: String,
    dst: String,
    cli: String,
    /// The test's /29: .1 the source host, .2 the destination, .3 the client, .4 the VE.
    net: (&'static str, u8),
}

impl Lan {
    fn new(n: u8) -> Lan {
        let tag = format!("{}{n}", std::process::id() % 100_000);
        let lan = Lan {
            dst: format!("vzt-mdst-{tag}"),
            cli: format!("vzt-mcli-{tag}"),
            tag,
            net: [
                ("198.51.100", 240),
                ("198.51.100", 248),
                ("203.0.113", 224),
                ("203.0.113", 232),
                ("203.0.113", 216),
                ("198.51.100", 232),
                ("203.0.113", 208),
                ("198.51.100", 224),
            ][n as usize - 1],
        };
        let (a1, a2, a3) = (lan.ip(1), lan.ip(2), lan.ip(3));
        let (br, t) = (lan.uplink(), &lan.tag);
        let (dst, cli) = (&lan.dst, &lan.cli);
        sh(&format!(
            "ip link add {br} type bridge && ip addr add {a1}/29 dev {br} && ip link set {br} up && \
             echo 1 > /proc/sys/net/ipv4/conf/{br}/forwarding && \
             ip netns add {dst} && ip netns add {cli} && \
             ip link add vzmd{t} type veth peer name {br} netns {dst} && ip link set vzmd{t} master {br} up && \
             ip -n {dst} link set lo up && ip -n {dst} addr add {a2}/29 dev {br} && ip -n {dst} link set {br} up && \
             ip netns exec {dst} sh -c 'echo 1 > /proc/sys/net/ipv4/conf/all/forwarding' && \
             ip link add vzmc{t} type veth peer name eth0 netns {cli} && ip link set vzmc{t} master {br} up && \
             ip -n {cli} link set lo up && ip -n {cli} addr add {a3}/29 dev eth0 && ip -n {cli} link set eth0 up"
        ));
        lan
    }

    fn ip(&self, host: u8) -> String {
        format!("{}.{}", self.net.0, self.net.1 + host)
    }

    fn ve_ip(&self) -> String {
        self.ip(4)
    }

    fn uplink(&self) -> String {
        format!("vztmb{}", self.tag)
    }

    fn ns(name: &str) -> PathBuf {
        PathBuf::from(format!("/run/netns/{name}"))
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for cmd in [
            format!("ip link del vzmd{}", self.tag),
            format!("ip link del vzmc{}", self.tag),
            format!("ip link del {}", self.uplink()),
            format!("ip netns del {}", self.dst),
            format!("ip netns del {}", self.cli),
        ] {
            let _ = Command::new("sh").args(["-c", &cmd]).status();
        }
    }
}

/// A `migrate-listen --once` in the destination's namespace; killed on drop.
struct Listener {
    child: Child,
    addr: String,
}

impl Listener {
    fn start(rt: &Runtime, lan: &Lan, key: &Path) -> Listener {
        Listener::start_with(rt, lan, key, &[])
    }

    fn start_with(rt: &Runtime, lan: &Lan, key: &Path, extra: &[&str]) -> Listener {
        Self::spawn(rt, lan, key, true, extra)
    }

    /// A listener that keeps serving (no `--once`).
    fn serving(rt: &Runtime, lan: &Lan, key: &Path) -> Listener {
        Self::spawn(rt, lan, key, false, &[])
    }

    fn spawn(rt: &Runtime, lan: &Lan, key: &Path, once: bool, extra: &[&str]) -> Listener {
        // nsenter, not `ip netns exec`: that remounts /sys, and the cgroup mounts with it.
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", lan.dst))
            .arg(common::VZRUN);
        Self::spawn_cmd(cmd, rt, &lan.ip(2), key, once, extra)
    }

    /// A `--once` listener on the source host's own side of the LAN (its address .1),
    /// keeping what it receives under `data`: a VE coming back to where it started.
    fn on_source_host(rt: &Runtime, lan: &Lan, key: &Path, data: &Path) -> Listener {
        let mut cmd = Command::new(common::VZRUN);
        cmd.env("VZRUN_DATA_DIR", data);
        Self::spawn_cmd(cmd, rt, &lan.ip(1), key, true, &[])
    }

    fn spawn_cmd(
        mut cmd: Command,
        rt: &Runtime,
        ip: &str,
        key: &Path,
        once: bool,
        extra: &[&str],
    ) -> Listener {
        let mut child = cmd
            .arg("--root")
            .arg(rt.root.path())
            .args([
                "migrate-listen",
                "--listen",
                &format!("{ip}:0"),
                "--key-file",
            ])
            .arg(key)
            .args(once.then_some("--once"))
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("listener said {line:?}"))
            .to_string();
        Listener { child, addr }
    }

    fn stderr(&mut self) -> String {
        let _ = self.child.wait();
        let mut s = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What most moves start from: the moves' lock, a LAN, a key both ends hold, a source
/// and a destination runtime, and the VE's ID (tracked on the destination, its received
/// bundle removed at the end). Fields drop in the order written: the runtimes' VEs
/// before the LAN, the moves' lock last.
struct Pair {
    _arrived: Arrived,
    id: String,
    dst: Runtime,
    src: Runtime,
    k: PathBuf,
    _keys: tempfile::TempDir,
    lan: Lan,
    _one: std::sync::MutexGuard<'static, ()>,
}

impl Pair {
    fn new(lan: u8, prefix: &str) -> Pair {
        let one = one_move_at_a_time();
        let lan = Lan::new(lan);
        let keys = tempfile::tempdir().unwrap();
        let k = key(keys.path(), "k", "vzt-shared-key-0123456789abcdef\n");
        let (src, dst) = (Runtime::vzrun(), Runtime::vzrun());
        let id = common::unique_id(prefix);
        dst.track(&id);
        Pair {
            _one: one,
            _arrived: Arrived(id.clone()),
            src,
            dst,
            id,
            k,
            _keys: keys,
            lan,
        }
    }
}

/// Removes what a destination keeps for a VE that arrived (its bundle), even on failure.
struct Arrived(String);

impl Drop for Arrived {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(format!("/var/lib/vzrun/migrated/{}", self.0));
    }
}

/// A key file as an administrator makes one: readable by root alone.
/// Real moves run one at a time: each freezes and dumps a VE with CRIU, which gives up
/// on a task it cannot seize within its timeout, and several at once on two cores (with
/// a memory writer in one of them) made that happen.
static MOVES: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_move_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    MOVES.lock().unwrap_or_else(|e| e.into_inner())
}

fn key(dir: &Path, name: &str, text: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

fn start_ve(rt: &Runtime, lan: &Lan, id: &str) -> Bundle {
    start_ve_with(rt, lan, id, "")
}

/// A writer that keeps dirtying memory (an awk array of 20000 numbers rewritten every
/// 20 ms) and one that holds `mb` MiB written once, for the page transfer to carry.
/// The pace comes from a shell loop through a pipe, not from awk's `system()`, which
/// spawns with vfork: a VE frozen while awk waits for its child's exec must be thawed
/// again first (see `a_ve_frozen_in_a_vfork_wait_still_moves`), which these tests do
/// not measure.
fn dirtier(mb: u32) -> String {
    format!(
        "x=$(head -c {mb}000000 /dev/zero | tr '\\0' a); touch /tmp/ready; \
         (while :; do usleep 20000; echo; done | awk '{{for(i=0;i<20000;i++)a[i]=i+n;n++}}') & "
    )
}

/// Waits until the VE's dirtier holds its memory (CRIU cannot seize a task while it is
/// still in the pipe that fills it).
fn wait_ready(rt: &Runtime, id: &str) {
    let t = Instant::now();
    while rt.run(&["exec", id, "test", "-e", "/tmp/ready"]).code != 0 {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the dirtier never got ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start_ve_with(rt: &Runtime, lan: &Lan, id: &str, extra: &str) -> Bundle {
    start_ve_annotated(rt, lan, id, extra, json!({}))
}

/// [`start_ve_with`] with more annotations.
fn start_ve_annotated(rt: &Runtime, lan: &Lan, id: &str, extra: &str, more: Value) -> Bundle {
    let script = format!(
        "exec </dev/null >/dev/null 2>&1; nc -ll -p 7000 -e cat & {extra}\
         i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.05; done"
    );
    let b = Bundle::with(&["sh", "-c", &script], |v| {
        v["annotations"] =
            json!({"io.vzrun.net.ip": lan.ve_ip(), "io.vzrun.net.uplink": lan.uplink()});
        if let Some(m) = more.as_object() {
            for (k, val) in m {
                v["annotations"][k] = val.clone();
            }
        }
        v["mounts"].as_array_mut().unwrap().push(
                json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]}),
            );
    });
    rt.track(id);
    let o = rt.run(&["run", "-d", "-b", b.p(), id]);
    assert_eq!(o.code, 0, "{o:?}");
    b
}

fn count(rt: &Runtime, id: &str) -> u64 {
    let o = rt.run(&["exec", id, "cat", "/tmp/count"]);
    assert_eq!(o.code, 0, "{o:?}");
    o.stdout.trim().parse().unwrap_or(0)
}

/// What [`client`] saw: the longest gap between two answers, when its first and last
/// answers came, and the first error, if any.
struct Echoes {
    longest: Duration,
    answers: u64,
    first: Option<Instant>,
    last: Option<Instant>,
    err: Option<String>,
}

impl Echoes {
    /// Whether the echoes ran through the whole of `from..to` (the move): a freeze in
    /// between then shows in the longest gap.
    fn bracket(&self, from: Instant, to: Instant) -> bool {
        self.first.is_some_and(|f| f < from) && self.last.is_some_and(|l| l > to)
    }
}

/// A TCP client in the client namespace that echoes a line every 5 ms until stopped,
/// so that a move's freeze falls between two of its answers. Returns once it has had its
/// first answer (or gave up), so that a move started next is bracketed by its echoes.
fn client(lan: &Lan, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Echoes> {
    let ns = std::fs::File::open(Lan::ns(&lan.cli)).unwrap();
    let ve = lan.ve_ip();
    let (first_tx, first_rx) = std::sync::mpsc::channel::<()>();
    let handle = std::thread::spawn(move || {
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let addr = format!("{ve}:7000").parse().unwrap();
        let mut e = Echoes {
            longest: Duration::ZERO,
            answers: 0,
            first: None,
            last: None,
            err: None,
        };
        let mut s = None;
        for _ in 0..50 {
            if let Ok(c) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                s = Some(c);
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let Some(mut s) = s else {
            e.err = Some("could not connect".into());
            let _ = first_tx.send(());
            return e;
        };
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let started = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let n = e.answers + 1;
            let msg = format!("{n:08}\n");
            let mut buf = [0u8; 9];
            if let Err(err) = s
                .write_all(msg.as_bytes())
                .and_then(|_| s.read_exact(&mut buf))
            {
                e.err = Some(format!(
                    "after {} echoes ({:?} in): {err}",
                    e.answers,
                    started.elapsed()
                ));
                return e;
            }
            if buf != msg.as_bytes() {
                e.err = Some(format!("echo {n}: got {:?}", String::from_utf8_lossy(&buf)));
                return e;
            }
            let now = Instant::now();
            if let Some(l) = e.last {
                e.longest = e.longest.max(now - l);
            }
            if e.first.is_none() {
                e.first = Some(now);
                let _ = first_tx.send(());
            }
            e.last = Some(now);
            e.answers = n;
            std::thread::sleep(Duration::from_millis(5));
        }
        e
    });
    // Ends early when the thread does (its error is reported at the join).
    let _ = first_rx.recv();
    handle
}

fn suspended(stderr: &str) -> f64 {
    stderr
        .split("suspended ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no suspended time in: {stderr}"))
}

fn route_in(ns: Option<&str>, ip: &str) -> String {
    let mut c = Command::new("ip");
    if let Some(n) = ns {
        c.args(["-n", n]);
    }
    let o = c.args(["route", "show", ip]).output().unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn cold_migration_moves_the_ve_with_a_tcp_client_connected() {
    require_criu!();
    let p = Pair::new(1, "mig");
    let (lan, k, src, dst, id) = (&p.lan, &p.k, &p.src, &p.dst, &p.id);
    let _b = start_ve(src, lan, id);
    std::thread::sleep(Duration::from_millis(300));
    let stop = Arc::new(AtomicBool::new(false));
    let cl = client(lan, stop.clone());
    std::thread::sleep(Duration::from_millis(500));
    let before = count(src, id);
    assert!(
        !route_in(None, &lan.ve_ip()).is_empty(),
        "the source routes the VE's address"
    );

    let mut l = Listener::start(dst, lan, k);
    let move_began = Instant::now();
    let o = src.run(&["migrate", id, &l.addr, "--key-file", k.to_str().unwrap()]);
    let move_ended = Instant::now();
    let listener_log = l.stderr();
    assert_eq!(o.code, 0, "{o:?}\nlistener: {listener_log}");
    let susp = suspended(&o.stderr);
    assert!(o.stderr.contains("mode: cold"), "{}", o.stderr);

    // Arrived running, with its address and its processes' state.
    assert_eq!(dst.status(id), "running");
    let after = count(dst, id);
    assert!(after >= before, "counter went back: {before} -> {after}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        count(dst, id) > after,
        "the counter runs on the destination"
    );
    let a = dst.run(&[
        "exec", id, "ip", "-o", "-4", "addr", "show", "dev", "venet0",
    ]);
    assert!(a.stdout.contains(&lan.ve_ip()), "{a:?}");
    // /dev/shm was empty: left out of the dump and made anew, writable as before.
    let w = dst.run(&["exec", id, "touch", "/dev/shm/after-the-move"]);
    assert_eq!(w.code, 0, "{w:?}");
    // The address moved: routed on the destination, gone from the source.
    assert!(
        !route_in(Some(&lan.dst), &lan.ve_ip()).is_empty(),
        "destination routes it"
    );
    assert!(
        route_in(None, &lan.ve_ip()).is_empty(),
        "source still routes it"
    );
    assert_ne!(src.run(&["state", id]).code, 0, "the source VE is gone");

    // The client sees a pause, not a reset: its longest gap between answers stays within
    // the suspended time plus TCP's retransmission back-off.
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let echoes = cl.join().unwrap();
    assert_eq!(
        echoes.err, None,
        "the TCP client's connection did not survive the move"
    );
    assert!(
        echoes.bracket(move_began, move_ended),
        "the client's answers did not run through the move"
    );
    let longest = echoes.longest;
    assert!(
        longest.as_secs_f64() <= susp + 1.5,
        "longest client gap {longest:?} vs suspended {susp} s"
    );
    eprintln!(
        "cold move: suspended {susp} s, client's longest gap between answers {longest:?} ({} echoes through the move)",
        echoes.answers
    );
    assert_eq!(dst.run(&["delete", "-f", id]).code, 0);
    // The moved VE's bundle stays on the destination until its owner removes it.
    assert!(Path::new(&format!("/var/lib/vzrun/migrated/{id}/bundle/config.json")).exists());
    // What `Arrived` removes at the end, removed now for the check below.
    let _ = std::fs::remove_dir_all(format!("/var/lib/vzrun/migrated/{id}"));
    assert!(common::disk_leftovers(id).is_empty());
}

/// A VE frozen while one of its tasks waits in vfork for its child's exec: CRIU cannot
/// seize that task, so the dump lets it out first (thaws the VE until the child has
/// exec'd, freezes it again) and the move goes through, the spawner still spawning on
/// the destination.
#[test]
fn a_ve_frozen_in_a_vfork_wait_still_moves() {
    require_criu!();
    let Some(spawner) = common::vfork_spawner() else {
        eprintln!("SKIP: no static C toolchain for the vfork spawner");
        return;
    };
    let p = Pair::new(7, "migvf");
    let (lan, k, src, dst, id) = (&p.lan, &p.k, &p.src, &p.dst, &p.id);
    // Each round's child stays 3 s in the window: a move started as a round begins
    // freezes the VE inside it.
    let _b = start_ve_with(
        src,
        lan,
        id,
        "while [ ! -x /tmp/vf ]; do usleep 10000; done; /tmp/vf 3000 /tmp/vf-rounds & ",
    );
    common::put_vfork_spawner(src, id, spawner);
    let round = common::wait_vfork_round(src, id);
    let l = Listener::start(dst, lan, k);
    let o = src.run(&["migrate", id, &l.addr, "--key-file", k.to_str().unwrap()]);
    drop(l);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stderr.contains("waiting in vfork"), "{}", o.stderr);
    assert_eq!(dst.status(id), "running");
    assert_ne!(src.run(&["state", id]).code, 0, "the source VE is gone");
    // The spawner carries on where it was.
    let mut now = 0;
    assert!(
        common::wait_until(30, || {
            now = common::vfork_round(dst, id);
            now > round
        }),
        "the spawner did not go on after the move: round {round} -> {now}"
    );
    assert_eq!(dst.run(&["delete", "-f", id]).code, 0);
}

#[test]
fn a_wrong_key_is_refused_and_a_dead_listener_leaves_the_ve_running() {
    require_criu!();
    let _one = one_move_at_a_time();
    let lan = Lan::new(2);
    let keys = tempfile::tempdir().unwrap();
    let good = key(keys.path(), "good", "vzt-shared-key-0123456789abcdef");
    let bad = key(keys.path(), "bad", "vzt-another-key-fedcba9876543210");
    let (src, dst) = (Runtime::vzrun(), Runtime::vzrun());
    let id = common::unique_id("migk");
    let _arrived = Arrived(id.clone());
    dst.track(&id);
    let _b = start_ve(&src, &lan, &id);

    let mut l = Listener::start(&dst, &lan, &good);
    let o = src.run(&["migrate", &id, &l.addr, "--key-file", bad.to_str().unwrap()]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("authentication failed"), "{o:?}");
    // A peer without the key does not use a --once listener up.
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        l.child.try_wait().unwrap().is_none(),
        "the listener ended on a peer without the key"
    );
    let _ = l.child.kill();
    let log = l.stderr();
    assert!(log.contains("does not hold the key"), "{log}");
    assert_eq!(src.status(&id), "running");
    assert_ne!(dst.run(&["state", &id]).code, 0);

    // The listener dies while the rootfs is on its way: the VE keeps running here, and
    // its counter goes on.
    let l = Listener::start(&dst, &lan, &good);
    let mut m = src
        .command()
        .args([
            "migrate",
            &id,
            &l.addr,
            "--key-file",
            good.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let staging = PathBuf::from(format!("/var/lib/vzrun/migrated/{id}"));
    let t = Instant::now();
    while !staging.exists() && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(2));
    }
    drop(l);
    let st = m.wait().unwrap();
    let mut err = String::new();
    m.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(!st.success(), "{err}");
    assert_eq!(src.status(&id), "running", "{err}");
    let c = count(&src, &id);
    std::thread::sleep(Duration::from_millis(300));
    assert!(count(&src, &id) > c, "the source VE still runs");
    assert_ne!(
        dst.run(&["state", &id]).code,
        0,
        "nothing runs on the destination"
    );
    assert!(
        !route_in(None, &lan.ve_ip()).is_empty(),
        "the source still routes its address"
    );
}

#[test]
fn online_modes_say_what_this_host_allows() {
    require_criu!();
    let keys = tempfile::tempdir().unwrap();
    let k = key(keys.path(), "k", "vzt-shared-key-0123456789abcdef");
    let src = Runtime::vzrun();
    // Pre-copy needs soft-dirty tracking; where it is missing, it is refused by name
    // before anything moves.
    let soft_dirty = Command::new("criu")
        .args(["check", "--feature", "mem_dirty_track"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    let o = src.run(&[
        "migrate",
        "nope",
        "127.0.0.1:9",
        "--key-file",
        k.to_str().unwrap(),
        "--online",
        "--mode",
        "precopy",
    ]);
    assert_ne!(o.code, 0);
    if soft_dirty {
        assert!(!o.stderr.contains("soft-dirty"), "{o:?}");
        eprintln!("SKIP (pre-copy run): not exercised by this suite yet on soft-dirty kernels");
    } else {
        assert!(
            o.stderr.contains("--mode precopy") && o.stderr.contains("soft-dirty"),
            "{o:?}"
        );
    }
    let o = src.run(&["migrate", "--help"]);
    assert!(
        o.stdout.contains("the VE is lost"),
        "post-copy risk is in --help: {o:?}"
    );
    let o = src.run(&[
        "migrate",
        "x",
        "127.0.0.1:9",
        "--key-file",
        k.to_str().unwrap(),
        "--online",
        "--mode",
        "fast",
    ]);
    assert!(
        o.stderr.contains("--mode: ") && o.stderr.contains("fast"),
        "{o:?}"
    );
}

/// fs.pipe-max-size is the host's: the tests that change it or need it run one at a time,
/// and each puts the host's value back.
static PIPE_MAX: std::sync::Mutex<()> = std::sync::Mutex::new(());
const PIPE_MAX_SIZE: &str = "/proc/sys/fs/pipe-max-size";

struct PipeMaxSize {
    saved: String,
    _one: std::sync::MutexGuard<'static, ()>,
}

impl PipeMaxSize {
    fn hold() -> PipeMaxSize {
        let one = PIPE_MAX.lock().unwrap_or_else(|e| e.into_inner());
        PipeMaxSize {
            saved: std::fs::read_to_string(PIPE_MAX_SIZE).unwrap(),
            _one: one,
        }
    }

    fn set(&self, v: &str) {
        std::fs::write(PIPE_MAX_SIZE, v).unwrap();
    }
}

impl Drop for PipeMaxSize {
    fn drop(&mut self) {
        let _ = std::fs::write(PIPE_MAX_SIZE, self.saved.trim());
    }
}

#[test]
fn online_move_carries_counter_address_and_connection_while_memory_is_dirtied() {
    require_criu!();
    let _one = one_move_at_a_time();
    let pipe = PipeMaxSize::hold();
    // As on a fresh host: the move itself must make room for CRIU's pipe.
    pipe.set("1048576");
    let lan = Lan::new(3);
    let keys = tempfile::tempdir().unwrap();
    let k = key(keys.path(), "k", "vzt-shared-key-0123456789abcdef");
    let (src, dst) = (Runtime::vzrun(), Runtime::vzrun());
    let id = common::unique_id("migp");
    let _arrived = Arrived(id.clone());
    dst.track(&id);
    // The move itself must set up CRIU's kernel-probe cache where /run is no tmpfs: a
    // link of an earlier run's goes first.
    let kdat = Path::new("/run/criu.kdat");
    let run_on_tmpfs = nix::sys::statfs::statfs("/run")
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC);
    if std::fs::read_link(kdat).is_ok_and(|t| t.starts_with("/run/vzrun-criu-kdat")) {
        std::fs::remove_file(kdat).unwrap();
    }
    // The init holds an unlinked file of /dev/shm open: that mount must travel in the
    // dump (its file as one of CRIU's ghost files), not be made anew empty.
    let held = "exec 3<>/dev/shm/held; echo kept-across >&3; rm /dev/shm/held; ";
    let _b = start_ve_with(&src, &lan, &id, &format!("{held}{}", dirtier(64)));
    wait_ready(&src, &id);
    let stop = Arc::new(AtomicBool::new(false));
    let cl = client(&lan, stop.clone());
    std::thread::sleep(Duration::from_millis(500));
    let before = count(&src, &id);
    let mut l = Listener::start(&dst, &lan, &k);
    let move_began = Instant::now();
    let o = src.run(&[
        "migrate",
        &id,
        &l.addr,
        "--key-file",
        k.to_str().unwrap(),
        "--online",
    ]);
    let move_ended = Instant::now();
    let log = l.stderr();
    assert_eq!(o.code, 0, "{o:?}\nlistener: {log}");
    let susp = suspended(&o.stderr);
    assert!(o.stderr.contains("mode: postcopy"), "{}", o.stderr);
    assert!(
        o.stderr
            .contains("raised fs.pipe-max-size from 1048576 to 4194304"),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("pages fetched on demand"), "{}", o.stderr);
    assert!(log.contains("all pages arrived"), "{log}");
    if !run_on_tmpfs {
        // CRIU probed the kernel once, before the freeze, and every CRIU since loads
        // what it found instead of probing again with the VE frozen.
        let to = std::fs::read_link(kdat).expect("/run/criu.kdat made by the move");
        assert!(to.starts_with("/run/vzrun-criu-kdat/"), "{to:?}");
        let d = tempfile::tempdir().unwrap();
        let check_log = d.path().join("check.log");
        let ok = Command::new(std::env::var("VZRUN_CRIU").unwrap_or_else(|_| "criu".into()))
            .args(["check", "-v4", "-o"])
            .arg(&check_log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        let text = std::fs::read_to_string(&check_log).unwrap_or_default();
        assert!(ok.success() && text.contains("Loaded kdat cache"), "{text}");
    }

    assert_eq!(dst.status(&id), "running");
    let after = count(&dst, &id);
    assert!(after >= before, "counter went back: {before} -> {after}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        count(&dst, &id) > after,
        "the counter runs on the destination"
    );
    let a = dst.run(&[
        "exec", &id, "ip", "-o", "-4", "addr", "show", "dev", "venet0",
    ]);
    assert!(a.stdout.contains(&lan.ve_ip()), "{a:?}");
    let h = dst.run(&["exec", &id, "cat", "/proc/1/fd/3"]);
    assert_eq!(h.stdout.trim(), "kept-across", "{h:?}");
    assert!(!route_in(Some(&lan.dst), &lan.ve_ip()).is_empty());
    assert!(route_in(None, &lan.ve_ip()).is_empty());
    assert_ne!(src.run(&["state", &id]).code, 0, "the source VE is gone");

    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let echoes = cl.join().unwrap();
    assert_eq!(
        echoes.err, None,
        "the TCP client's connection did not survive"
    );
    assert!(
        echoes.bracket(move_began, move_ended),
        "the client's answers did not run through the move"
    );
    let longest = echoes.longest;
    eprintln!(
        "online move: suspended {susp} s, client's longest gap between answers {longest:?} \
         ({} echoes through the move)\n{}\nlistener: {log}",
        echoes.answers, o.stderr
    );
    // TCP's first retransmission waits 200 ms or more, doubling: within suspended time
    // plus that back-off.
    assert!(
        longest.as_secs_f64() <= susp + 1.5,
        "longest client gap {longest:?} vs suspended {susp} s"
    );
    assert_eq!(dst.run(&["delete", "-f", &id]).code, 0);
}

/// A post-copy move under way: a dirtying VE on a LAN slowed to about 40 Mbit/s into
/// the destination (so its pages are still moving when the test breaks something), a
/// destination whose watchdog is 4 s, and `migrate --online` in a process group of its
/// own, read up to "its pages follow".
/// Fields drop in this order, after [`Drop::drop`]: the LAN goes last.
struct PagesMoving {
    migrate: Child,
    stderr: BufReader<std::process::ChildStderr>,
    listener: Listener,
    _arrived: Arrived,
    _bundle: Bundle,
    _keys: tempfile::TempDir,
    id: String,
    src: Runtime,
    dst: Runtime,
    lan: Lan,
}

/// The destination's --page-timeout in [`PagesMoving`], in seconds.
const PAGE_TIMEOUT: f64 = 4.0;

impl PagesMoving {
    fn start(n: u8, prefix: &str) -> PagesMoving {
        let lan = Lan::new(n);
        sh(&format!(
            "tc qdisc add dev vzmd{} root tbf rate 40mbit burst 64kb latency 500ms",
            lan.tag
        ));
        let keys = tempfile::tempdir().unwrap();
        let k = key(keys.path(), "k", "vzt-shared-key-0123456789abcdef");
        let (src, dst) = (Runtime::vzrun(), Runtime::vzrun());
        let id = common::unique_id(prefix);
        let arrived = Arrived(id.clone());
        dst.track(&id);
        src.track(&id);
        let bundle = start_ve_with(&src, &lan, &id, &dirtier(96));
        wait_ready(&src, &id);
        let listener = Listener::start_with(&dst, &lan, &k, &["--page-timeout", "4"]);
        let mut migrate = src
            .command()
            .args([
                "migrate",
                &id,
                &listener.addr,
                "--key-file",
                k.to_str().unwrap(),
                "--online",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(migrate.stderr.take().unwrap());
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            if stderr.read_line(&mut line).unwrap() == 0 {
                panic!("the move ended before its pages moved: {seen}");
            }
            seen.push_str(&line);
            if line.contains("its pages follow") {
                break;
            }
        }
        PagesMoving {
            lan,
            src,
            dst,
            id,
            _arrived: arrived,
            _bundle: bundle,
            _keys: keys,
            listener,
            migrate,
            stderr,
        }
    }
}

impl Drop for PagesMoving {
    fn drop(&mut self) {
        let _ = self.migrate.kill();
        let _ = self.dst.run(&["delete", "-f", &self.id]);
        let _ = self.src.run(&["delete", "-f", &self.id]);
        let _ = std::fs::remove_dir_all(format!("/var/lib/vzrun/migrate-out/{}", self.id));
    }
}

#[test]
fn killing_the_source_mid_transfer_is_reported_by_the_destination_watchdog() {
    require_criu!();
    let _one = one_move_at_a_time();
    let _pipe = PipeMaxSize::hold();
    let mut mv = PagesMoving::start(4, "migw");
    // The source host dies: vzrun and its CRIU page server with it.
    let pgid = nix::unistd::Pid::from_raw(-(mv.migrate.id() as i32));
    nix::sys::signal::kill(pgid, nix::sys::signal::SIGKILL).unwrap();
    let killed = Instant::now();
    let _ = mv.migrate.wait();
    let log = mv.listener.stderr();
    let took = killed.elapsed();
    eprintln!("destination after the source died ({took:?}): {log}");
    assert!(
        took.as_secs_f64() <= PAGE_TIMEOUT + 5.0,
        "the destination took {took:?} to give up"
    );
    assert!(log.contains("never arrived"), "{log}");
    assert!(
        log.contains(&format!("VE {} is stopped here", mv.id)),
        "{log}"
    );
    assert_ne!(mv.dst.status(&mv.id), "running");
}

#[test]
fn a_destination_that_vanishes_mid_transfer_is_reported_by_the_source() {
    require_criu!();
    let _one = one_move_at_a_time();
    let _pipe = PipeMaxSize::hold();
    let mut mv = PagesMoving::start(6, "migv");
    // The destination host drops off the network: no FIN, no RST, nothing more.
    sh(&format!("ip link set vzmd{} down", mv.lan.tag));
    let cut = Instant::now();
    let mut rest = String::new();
    let _ = mv.stderr.read_to_string(&mut rest);
    let status = mv.migrate.wait().unwrap();
    let took = cut.elapsed();
    eprintln!("source after the destination went ({took:?}): {rest}");
    assert!(!status.success(), "the move cannot have succeeded: {rest}");
    // The source waits the destination's watchdog time and 2 s more.
    assert!(
        took.as_secs_f64() <= PAGE_TIMEOUT + 2.0 + 5.0,
        "the source took {took:?} to give up"
    );
    assert!(rest.contains("no word from the destination"), "{rest}");
    assert!(
        rest.contains(&format!(
            "the source VE {} is left frozen here with all of its memory",
            mv.id
        )),
        "{rest}"
    );
    assert_eq!(mv.src.status(&mv.id), "paused", "{rest}");
    // The destination's own watchdog stops its copy.
    let log = mv.listener.stderr();
    assert!(
        log.contains(&format!("VE {} is stopped here", mv.id)),
        "{log}"
    );
}

#[test]
fn a_host_whose_pipe_max_size_cannot_be_raised_refuses_online_by_name() {
    require_criu!();
    let pipe = PipeMaxSize::hold();
    pipe.set("1048576");
    let keys = tempfile::tempdir().unwrap();
    let k = key(keys.path(), "k", "vzt-shared-key-0123456789abcdef");
    let src = Runtime::vzrun();
    // /proc/sys read-only in a private mount namespace, as in a container that may not
    // change host sysctls.
    let o = Command::new("unshare")
        .args([
            "-m",
            "sh",
            "-c",
            "mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys && \
             exec \"$@\"",
            "sh",
            common::VZRUN,
            "--root",
        ])
        .arg(src.root.path())
        .args([
            "migrate",
            "nope",
            "127.0.0.1:9",
            "--key-file",
            k.to_str().unwrap(),
            "--online",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("--online (post-copy) refused")
            && err.contains("CAP_SYS_RESOURCE")
            && err.contains("sysctl -w fs.pipe-max-size=4194304"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(PIPE_MAX_SIZE).unwrap().trim(),
        "1048576"
    );
}

/// The attack, from an address on the LAN without the key: 300 connections that each
/// send a byte every two seconds and never finish the handshake (a timeout per read
/// let each live for hours, and 256 of them shut every source out). One address holds
/// a few unproved slots (a new connection closes its oldest), the handshake has one
/// deadline, and the real source moves its VE meanwhile.
#[test]
fn a_slow_handshake_flood_does_not_shut_out_the_source() {
    require_criu!();
    let p = Pair::new(5, "flood");
    let (lan, k, src, dst, id) = (&p.lan, &p.k, &p.src, &p.dst, &p.id);
    let _b = start_ve(src, lan, id);
    let l = Listener::serving(dst, lan, k);

    let stop = Arc::new(AtomicBool::new(false));
    let (addr, cli, halt) = (l.addr.clone(), lan.cli.clone(), stop.clone());
    let flood = std::thread::spawn(move || {
        // This thread alone enters the client's namespace (the test's other threads
        // stay on the host).
        let ns = std::fs::File::open(Lan::ns(&cli)).unwrap();
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let mut held: Vec<std::net::TcpStream> = (0..300)
            .filter_map(|_| std::net::TcpStream::connect(&addr).ok())
            .collect();
        let began = Instant::now();
        let mut dropped_by_deadline = 0;
        while !halt.load(Ordering::Relaxed) && began.elapsed() < Duration::from_secs(40) {
            held.retain_mut(|c| {
                let alive = c.write_all(&[0xff]).is_ok();
                if !alive {
                    dropped_by_deadline += 1;
                }
                alive
            });
            std::thread::sleep(Duration::from_secs(2));
        }
        (began.elapsed(), held.len(), dropped_by_deadline)
    });
    std::thread::sleep(Duration::from_secs(3));
    let o = src.run(&["migrate", id, &l.addr, "--key-file", k.to_str().unwrap()]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(dst.status(id), "running");
    // Keep trickling past the handshake's deadline: the listener closes them all.
    std::thread::sleep(Duration::from_secs(12));
    stop.store(true, Ordering::Relaxed);
    let (ran, left, _) = flood.join().unwrap();
    assert_eq!(left, 0, "{left} slow connections still open after {ran:?}");
}

#[test]
fn idle_connections_do_not_hold_the_listener() {
    require_criu!();
    let p = Pair::new(5, "idle");
    let (lan, k, src, dst, id) = (&p.lan, &p.k, &p.src, &p.dst, &p.id);
    let _b = start_ve(src, lan, id);
    let l = Listener::serving(dst, lan, k);
    // The attack: 50 connections that never say a word.
    let idle: Vec<std::net::TcpStream> = (0..50)
        .map(|_| std::net::TcpStream::connect(&l.addr).expect("connect"))
        .collect();
    let t = Instant::now();
    let o = src.run(&["migrate", id, &l.addr, "--key-file", k.to_str().unwrap()]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(dst.status(id), "running");
    // Served at once, not after the idle peers' handshake timeout ran out.
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    drop(idle);
}

/// A VE that arrived by migration runs from the copy of its bundle the move brought
/// (`/var/lib/vzrun/migrated/ID`). When it moves on, that copy goes with it: left
/// behind, it took disk space for ever and refused the VE's return to this host.
#[test]
fn a_ve_that_moves_on_takes_its_received_bundle_with_it() {
    require_criu!();
    let _one = one_move_at_a_time();
    let lan = Lan::new(8);
    let keys = tempfile::tempdir().unwrap();
    let k = key(keys.path(), "k", "vzt-shared-key-0123456789abcdef\n");
    // Before the runtimes: they delete the VE (which may run from here) before it goes.
    let back = tempfile::tempdir().unwrap();
    let (src, dst) = (Runtime::vzrun(), Runtime::vzrun());
    let id = common::unique_id("back");
    let _arrived = Arrived(id.clone());
    dst.track(&id);
    let _b = start_ve(&src, &lan, &id);
    let received = PathBuf::from(format!("/var/lib/vzrun/migrated/{id}"));

    let mut l = Listener::start(&dst, &lan, &k);
    let o = src.run(&["migrate", &id, &l.addr, "--key-file", k.to_str().unwrap()]);
    assert_eq!(o.code, 0, "{o:?}\nlistener: {}", l.stderr());
    assert_eq!(dst.status(&id), "running");
    assert!(received.join("bundle/config.json").exists());

    // Back to the first host, whose listener keeps what it receives apart (on one test
    // host both ends would otherwise share /var/lib/vzrun).
    let mut l = Listener::on_source_host(&src, &lan, &k, back.path());
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/run/netns/{}", lan.dst))
        .arg(common::VZRUN)
        .arg("--root")
        .arg(dst.root.path())
        .args(["migrate", &id, &l.addr, "--key-file"])
        .arg(&k);
    let o = common::output_of(cmd, Stdio::null());
    assert_eq!(o.code, 0, "{o:?}\nlistener: {}", l.stderr());
    assert_eq!(
        src.status(&id),
        "running",
        "the VE is back on its first host"
    );
    assert_ne!(
        dst.run(&["state", &id]).code,
        0,
        "the VE left the second host"
    );
    assert!(
        !received.exists(),
        "the second host kept the copy the VE ran from: {}",
        received.display()
    );
    assert!(back
        .path()
        .join(format!("migrated/{id}/bundle/config.json"))
        .exists());
    let c = count(&src, &id);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        count(&src, &id) > c,
        "the counter runs again on its first host"
    );
}

/// Runs `args` as the host's `nobody`, as any local user could: through a shell, since
/// setpriv itself still holds root's capabilities when it looks up the program (the
/// kernel drops them at that exec).
fn as_nobody(args: &[&str]) -> std::process::Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(["sh", "-c", "exec \"$@\"", "sh"])
        .args(args)
        .output()
        .unwrap()
}

/// The attack: a host user reaches into what a move brought or sent. The received
/// rootfs keeps the VE's own modes (a tenant's setuid-root file ran as host root from
/// there) and the dumps hold the VE's memory (CRIU writes them 0644): every directory
/// down to them is root's alone, on both ends.
#[test]
fn host_users_cannot_reach_a_moved_ves_files_or_its_dumps() {
    require_criu!();
    let p = Pair::new(8, "reach");
    let (lan, k, src, dst, id) = (&p.lan, &p.k, &p.src, &p.dst, &p.id);
    let _b = start_ve(src, lan, id);
    let mut l = Listener::start(dst, lan, k);
    let o = src.run(&["migrate", id, &l.addr, "--key-file", k.to_str().unwrap()]);
    assert_eq!(o.code, 0, "{o:?}\nlistener: {}", l.stderr());
    assert_eq!(dst.status(id), "running");

    let rootfs = format!("/var/lib/vzrun/migrated/{id}/bundle/rootfs");
    let busybox = format!("{rootfs}/bin/busybox");
    assert!(Path::new(&busybox).exists());
    for args in [
        ["ls", "/var/lib/vzrun/migrated"],
        ["ls", rootfs.as_str()],
        [busybox.as_str(), "true"],
        ["ls", "/var/lib/vzrun/migrate-out"],
    ] {
        let o = as_nobody(&args);
        assert!(
            !o.status.success(),
            "nobody ran {args:?}: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("Permission denied"),
            "{args:?}: {o:?}"
        );
    }
}

/// The attack: a tenant's post-restore action that outlasts the source's wait for the
/// destination. The source then took its VE back while the destination ran it too (the
/// same VE, and its address, live on two hosts). A destination now runs actions for a
/// bounded time, stops any copy it restored when it cannot finish in time or hears no
/// commit, and the source resumes only when the destination said it failed.
#[test]
fn a_post_restore_action_cannot_make_the_ve_run_on_both_hosts() {
    require_criu!();
    let p = Pair::new(6, "twice");
    let (lan, k, src, dst, id) = (&p.lan, &p.k, &p.src, &p.dst, &p.id);
    let _b = start_ve_annotated(
        src,
        lan,
        id,
        "",
        json!({"io.vzrun.hooks.post-restore": "ve:sleep 400", "io.vzrun.hooks.timeout": "1000"}),
    );
    let mut l = Listener::start(dst, lan, k);
    let t = Instant::now();
    let o = src.run(&["migrate", id, &l.addr, "--key-file", k.to_str().unwrap()]);
    let took = t.elapsed();
    let log = l.stderr();
    assert_ne!(o.code, 0, "the move went through after {took:?}: {o:?}");
    assert!(o.stderr.contains("post-restore"), "{o:?}\nlistener: {log}");
    assert!(
        took < Duration::from_secs(200),
        "the source waited {took:?} (the action was not cut short)"
    );
    assert_eq!(src.status(id), "running", "{o:?}");
    assert_ne!(
        dst.run(&["state", id]).code,
        0,
        "the VE also runs on the destination: {log}"
    );
    let c = count(src, id);
    std::thread::sleep(Duration::from_millis(300));
    assert!(count(src, id) > c, "the source VE runs on");
}

/// The attack: a sparse file in the VE's rootfs costs the tenant nothing and used to be
/// written out whole on the destination (a few of them fill the host's disk). A file
/// that would leave the destination's filesystem nearly full is refused at its header;
/// the move fails by name and the VE runs on at the source.
#[test]
fn a_sparse_file_cannot_fill_the_destinations_disk() {
    require_criu!();
    let _one = one_move_at_a_time();
    let lan = Lan::new(7);
    let keys = tempfile::tempdir().unwrap();
    let k = key(keys.path(), "k", "vzt-shared-key-0123456789abcdef\n");
    // A rootfs of the VE's own, with a file far larger than the host's free space.
    let own = tempfile::tempdir().unwrap();
    let rootfs = own.path().join("rootfs");
    sh(&format!(
        "cp -a {} {r} && truncate -s 4T {r}/hole",
        common::rootfs().display(),
        r = rootfs.display()
    ));
    let (src, dst) = (Runtime::vzrun(), Runtime::vzrun());
    let id = common::unique_id("hole");
    let _arrived = Arrived(id.clone());
    dst.track(&id);
    src.track(&id);
    let b = Bundle::with(
        &[
            "sh",
            "-c",
            "nc -ll -p 7000 -e cat & while true; do sleep 1; done",
        ],
        |v| {
            v["annotations"] =
                json!({"io.vzrun.net.ip": lan.ve_ip(), "io.vzrun.net.uplink": lan.uplink()});
            v["root"]["path"] = json!(rootfs);
        },
    );
    assert_eq!(src.run(&["run", "-d", "-b", b.p(), &id]).code, 0);

    let mut l = Listener::start(&dst, &lan, &k);
    let o = src.run(&["migrate", &id, &l.addr, "--key-file", k.to_str().unwrap()]);
    let log = l.stderr();
    assert_ne!(o.code, 0, "the move went through: {o:?}");
    assert!(log.contains("hole") && log.contains("free"), "{log}");
    assert_eq!(src.status(&id), "running", "{o:?}");
    assert_ne!(dst.run(&["state", &id]).code, 0);
    assert!(!Path::new(&format!("/var/lib/vzrun/migrated/{id}")).exists());
}

/// The attack: the destination dies (or its connection is cut) after CRIU restored the
/// VE there, while its post-restore action runs. The source took that as "nothing runs
/// there" and thawed its copy: the VE ran on both hosts, for good when the listener was
/// killed. Once the restore is asked for, only the destination's word that it failed
/// thaws the source; silence leaves the source's copy frozen, saying why.
#[test]
fn a_destination_lost_after_its_restore_does_not_get_the_source_resumed() {
    require_criu!();
    let p = Pair::new(8, "lost");
    let (lan, k, src, dst, id) = (&p.lan, &p.k, &p.src, &p.dst, &p.id);
    let _b = start_ve_annotated(
        src,
        lan,
        id,
        "",
        json!({"io.vzrun.hooks.post-restore": "ve:sleep 20"}),
    );
    let mut l = Listener::start(dst, lan, k);
    let migrate = src
        .command()
        .args(["migrate", id, &l.addr, "--key-file"])
        .arg(k)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Restored there (its action running): the listener dies.
    let t = Instant::now();
    while dst.run(&["state", id]).code != 0 {
        assert!(t.elapsed() < Duration::from_secs(60), "never restored");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = l.child.kill();
    let o = migrate.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("left frozen"), "{err}");
    assert_ne!(
        src.status(id),
        "running",
        "the source resumed while the destination runs the VE: {err}"
    );
    assert_eq!(dst.status(id), "running");
    // Settled as the message says, the other way round: the destination's copy goes
    // (from the destination's namespace, where its host link is: both ends name the
    // link after the same ID) and the source takes the VE back, answering on its LAN.
    let mut del = Command::new("nsenter");
    del.arg(format!("--net=/run/netns/{}", lan.dst))
        .arg(common::VZRUN)
        .arg("--root")
        .arg(dst.root.path())
        .args(["delete", "-f", id]);
    let d = common::output_of(del, Stdio::null());
    assert_eq!(d.code, 0, "{d:?}");
    assert_eq!(src.run(&["resume", id]).code, 0);
    assert_eq!(src.status(id), "running");
    let c = count(src, id);
    std::thread::sleep(Duration::from_millis(300));
    assert!(count(src, id) > c, "the source VE runs again");
    let (cli, at) = (lan.cli.clone(), format!("{}:7000", lan.ve_ip()));
    let reached = std::thread::spawn(move || {
        let ns = std::fs::File::open(Lan::ns(&cli)).unwrap();
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let addr: std::net::SocketAddr = at.parse().unwrap();
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map(|_| ())
    })
    .join()
    .unwrap();
    assert!(
        reached.is_ok(),
        "the VE does not answer after resume: {reached:?}"
    );
}

/// Deletes VE `.1` on `.0` when dropped.
struct StopFirst<'a>(&'a Runtime, &'a str);

impl Drop for StopFirst<'_> {
    fn drop(&mut self) {
        let _ = self.0.run(&["delete", "-f", self.1]);
    }
}

/// The lines of the VE's log on `rt`, as numbers, and whether anything in it failed.
fn churn_log(rt: &Runtime, id: &str) -> (Vec<u64>, String) {
    let o = rt.run(&["exec", id, "cat", "/var/log/app.log"]);
    assert_eq!(o.code, 0, "{o:?}");
    let lines = o
        .stdout
        .lines()
        .map(|l| l.trim().parse().unwrap_or_else(|_| panic!("line {l:?}")))
        .collect();
    let err = rt.run(&["exec", id, "cat", "/var/log/err"]).stdout;
    (lines, err)
}

/// A VE on a rootfs of its own to write (readonly: false, no private area: its files
/// are the rootfs directory's) that, every few ms, appends a numbered line to a log and
/// replaces a file and a directory (with a file in it) by ones under the next number:
/// names deleted and made all through the live copy of the rootfs. Moved cold or
/// online, the move goes through (the first pass copied a log that grew as it was
/// read), and the destination has the log whole (every line up to the freeze, in
/// order, no gap: the VE goes on appending from where its memory says it was), and
/// only the file and directory the VE had at the freeze.
fn a_rootfs_written_during_the_move_arrives_whole(online: bool) {
    let p = Pair::new(1, if online { "churno" } else { "churnc" });
    let _pipe = online.then(PipeMaxSize::hold);
    let (lan, k, src, dst, id) = (&p.lan, &p.k, &p.src, &p.dst, &p.id);
    // Stopped before `Pair` removes its bundle, also when an assertion fails: a VE that
    // still writes its rootfs there makes the removal fail.
    let _stop = StopFirst(dst, id);
    let own = tempfile::tempdir().unwrap();
    let rootfs = own.path().join("rootfs");
    sh(&format!(
        "cp -a {} {r} && mkdir -p {r}/var/log {r}/gen {r}/dirs/0 && echo 0 > {r}/gen/0 && \
         echo 0 > {r}/dirs/0/f",
        common::rootfs().display(),
        r = rootfs.display()
    ));
    let churn = "n=0; while :; do p=$n; n=$((n+1)); echo $n >> /var/log/app.log; \
                 mv /gen/$p /gen/$n || echo mv $n >> /var/log/err; \
                 mkdir /dirs/$n && echo $n > /dirs/$n/f && rm -r /dirs/$p || echo dir $n >> /var/log/err; \
                 usleep 3000; done";
    let script = format!(
        "exec </dev/null >/dev/null 2>&1; nc -ll -p 7000 -e cat & ({churn}) & \
         while true; do sleep 1; done"
    );
    let _b = Bundle::with(&["sh", "-c", &script], |v| {
        v["annotations"] =
            json!({"io.vzrun.net.ip": lan.ve_ip(), "io.vzrun.net.uplink": lan.uplink()});
        v["root"] = json!({"path": rootfs, "readonly": false});
    });
    src.track(id);
    let o = src.run(&["run", "-d", "-b", _b.p(), id]);
    assert_eq!(o.code, 0, "{o:?}");
    std::thread::sleep(Duration::from_millis(500));
    let (before, _) = churn_log(src, id);
    assert!(!before.is_empty(), "the VE writes its log");

    let mut l = Listener::start(dst, lan, k);
    let mut args = vec!["migrate", id, &l.addr, "--key-file", k.to_str().unwrap()];
    if online {
        args.push("--online");
    }
    let o = src.run(&args);
    let log = l.stderr();
    assert_eq!(o.code, 0, "{o:?}\nlistener: {log}");
    eprintln!("{}", o.stderr);
    assert_eq!(dst.status(id), "running");
    assert_ne!(src.run(&["state", id]).code, 0, "the source VE is gone");

    // Every line up to the freeze and the VE's own after it: 1, 2, ... without a gap.
    std::thread::sleep(Duration::from_millis(300));
    let (after, err) = churn_log(dst, id);
    let gap = after.iter().zip(1u64..).find(|(got, want)| **got != *want);
    assert!(gap.is_none(), "log out of order or with a gap at {gap:?}");
    assert_eq!(err, "", "the VE's renames failed on the destination");
    assert!(
        after.len() > before.len(),
        "{} lines on the destination, {} before the move",
        after.len(),
        before.len()
    );
    // Only the names the VE had at the freeze (and renamed since): the first pass's
    // are gone. (The directory's next one is made before the last goes: two at once,
    // then, one after the other.)
    for d in ["gen", "dirs"] {
        let ls = dst.run(&["exec", id, "ls", &format!("/{d}")]);
        let mut names: Vec<u64> = ls.stdout.lines().map(|n| n.parse().unwrap()).collect();
        names.sort();
        let ok = match names[..] {
            [_] => true,
            [a, b] => d == "dirs" && b == a + 1,
            _ => false,
        };
        assert!(
            ok,
            "/{d} holds {names:?}: a name the VE had before the freeze is left"
        );
    }
    // The VE keeps writing on the destination.
    std::thread::sleep(Duration::from_millis(300));
    let (later, err) = churn_log(dst, id);
    assert_eq!(err, "");
    assert!(
        later.len() > after.len(),
        "the log stopped on the destination"
    );
    assert_eq!(dst.run(&["delete", "-f", id]).code, 0);
    // The move says what its frozen pass cost.
    let pass2 = o
        .stderr
        .lines()
        .find(|l| l.contains("rootfs pass 2 (frozen)"))
        .unwrap_or_else(|| panic!("no frozen rootfs pass: {}", o.stderr));
    assert!(!pass2.contains(": 0 entries"), "{pass2}");
}

#[test]
fn a_rootfs_written_during_a_cold_move_arrives_whole() {
    require_criu!();
    a_rootfs_written_during_the_move_arrives_whole(false);
}

#[test]
fn a_rootfs_written_during_an_online_move_arrives_whole() {
    require_criu!();
    a_rootfs_written_during_the_move_arrives_whole(true);
}
