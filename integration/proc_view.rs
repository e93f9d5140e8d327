//! `io.vzrun.proc=virtual`: a VE sees its own memory, CPUs, uptime and load through the
//! host's LXCFS (hack/setup.sh starts it at /var/lib/lxcfs), across `ve set`, checkpoint
//! and restore and a cold migration; without LXCFS the VE fails with the named error; a
//! deleted VE leaves no mount. Skips when LXCFS is not mounted on this host.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Bundle, Runtime};
use serde_json::json;

const LXCFS: &str = "/var/lib/lxcfs";

fn lxcfs_missing() -> Option<String> {
    let mounted = std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(1) == Some(LXCFS) && l.contains("fuse"));
    (!mounted).then(|| format!("LXCFS is not mounted at {LXCFS}: run hack/setup.sh"))
}

macro_rules! require_lxcfs {
    () => {
        require_root!();
        if let Some(why) = lxcfs_missing() {
            eprintln!("SKIP: {why}");
            return;
        }
    };
}

/// A VE asking for the virtual view, its process idle with the VE's own stdio (so CRIU
/// can dump it).
fn bundle() -> Bundle {
    Bundle::ve(
        &["sh", "-c", "exec </dev/null >/dev/null 2>&1; sleep 100000"],
        json!({
            "io.vzrun.proc": "virtual",
            "io.vzrun.ram": "256M",
            "io.vzrun.cpus": "1",
            "io.vzrun.cpulimit": "50",
        }),
    )
}

fn inside(rt: &Runtime, id: &str, args: &[&str]) -> String {
    let mut a = vec!["exec", id];
    a.extend_from_slice(args);
    let o = rt.run(&a);
    assert_eq!(o.code, 0, "exec {args:?}: {o:?}");
    o.stdout
}

/// MemTotal inside in KiB, as procps `free -k` shows it (it reads /proc/meminfo). The
/// busybox rootfs's `free` takes its total from sysinfo(2) instead, which LXCFS cannot
/// virtualize (LXD intercepts that system call; vzrun does not yet).
fn free_total(rt: &Runtime, id: &str) -> u64 {
    let out = inside(rt, id, &["cat", "/proc/meminfo"]);
    out.lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("/proc/meminfo said {out:?}"))
}

fn processors(rt: &Runtime, id: &str) -> usize {
    inside(rt, id, &["cat", "/proc/cpuinfo"])
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count()
}

fn uptime(rt: &Runtime, id: &str) -> f64 {
    let out = inside(rt, id, &["cat", "/proc/uptime"]);
    out.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("/proc/uptime said {out:?}"))
}

fn host_uptime() -> f64 {
    std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// The VE's view as the issue states it: 256 MiB, one CPU, its own uptime and load.
fn assert_ve_view(rt: &Runtime, id: &str, ram_kib: u64) {
    assert_eq!(free_total(rt, id), ram_kib, "free -k total");
    assert_eq!(inside(rt, id, &["nproc"]).trim(), "1", "nproc");
    assert_eq!(processors(rt, id), 1, "/proc/cpuinfo processors");
    assert_eq!(
        inside(rt, id, &["cat", "/sys/devices/system/cpu/online"]).trim(),
        "0"
    );
    let up = uptime(rt, id);
    assert!(
        up < host_uptime() - 1.0 || host_uptime() < 120.0,
        "uptime {up} is the host's"
    );
}

/// LXCFS binds in the host's mount table: files LXCFS serves mounted anywhere but under
/// an LXCFS mount point (the host's daemon, or another test's private one, come and go
/// on their own).
fn lxcfs_mounts() -> usize {
    common::mounts_containing("lxcfs")
        .iter()
        .filter(|l| {
            let point = l.split(' ').nth(4).unwrap_or("");
            ["/meminfo", "/cpuinfo", "/uptime", "/loadavg", "/cpu/online"]
                .iter()
                .any(|f| point.ends_with(f))
        })
        .count()
}

#[test]
fn a_ve_sees_its_own_memory_cpus_uptime_and_load_and_set_is_seen_at_once() {
    require_lxcfs!();
    let before = lxcfs_mounts();
    let rt = Runtime::vzrun();
    let id = common::unique_id("proc");
    let b = bundle();
    rt.track(&id);
    let o = rt.run(&["run", "-d", "-b", b.p(), &id]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_ve_view(&rt, &id, 256 * 1024);
    // Its uptime starts at its start.
    let up = uptime(&rt, &id);
    assert!(up < 10.0, "uptime {up} s right after start");
    // The load average is the VE's (idle), whatever the host runs.
    let load = inside(&rt, &id, &["cat", "/proc/loadavg"]);
    let host = std::fs::read_to_string("/proc/loadavg").unwrap();
    // Its fourth field is running/all tasks: the VE's handful, not the host's hundreds.
    let tasks: u64 = load
        .split_whitespace()
        .nth(3)
        .and_then(|f| f.split('/').nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX);
    assert!(
        tasks < 10,
        "loadavg {load:?} counts the host's tasks (host {host:?})"
    );
    // The binds do not show host paths in the VE's mount table.
    let mounts = inside(&rt, &id, &["cat", "/proc/mounts"]);
    assert!(!mounts.contains(LXCFS), "{mounts}");
    assert!(mounts.contains("/proc/meminfo"), "{mounts}");

    // `ve set` is seen at once: LXCFS reads the cgroup.
    let o = rt.run(&["ve", "set", &id, "--ram", "512M"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(free_total(&rt, &id), 512 * 1024);

    assert_eq!(rt.run(&["delete", "-f", &id]).code, 0);
    assert_eq!(lxcfs_mounts(), before, "a bind stayed behind");
}

#[test]
fn host_is_the_default_for_app_containers() {
    require_lxcfs!();
    let rt = Runtime::vzrun();
    let id = common::unique_id("proch");
    let b = Bundle::ve(
        &["sh", "-c", "exec </dev/null >/dev/null 2>&1; sleep 100000"],
        json!({"io.vzrun.ram": "256M"}),
    );
    rt.track(&id);
    assert_eq!(rt.run(&["run", "-d", "-b", b.p(), &id]).code, 0);
    assert_ne!(free_total(&rt, &id), 256 * 1024);
    assert_eq!(rt.run(&["delete", "-f", &id]).code, 0);
}

#[test]
fn without_lxcfs_the_error_says_how_to_start_it() {
    require_root!();
    let rt = Runtime::vzrun();
    let id = common::unique_id("procx");
    let b = bundle();
    let empty = tempfile::tempdir().unwrap();
    rt.track(&id);
    let o: common::Out = common::output_of(
        {
            let mut c = rt.command();
            c.env("VZRUN_LXCFS", empty.path())
                .args(["run", "-d", "-b", b.p(), &id]);
            c
        },
        Stdio::null(),
    );
    assert_ne!(o.code, 0, "{o:?}");
    let msg = o.error_msg();
    assert!(
        msg.contains("io.vzrun.proc=virtual: LXCFS is not mounted at")
            && msg.contains("lxcfs -l --enable-cfs /var/lib/lxcfs"),
        "{msg}"
    );
    assert_ne!(rt.run(&["state", &id]).code, 0, "the failed VE stays");
}

#[test]
fn checkpoint_and_restore_keep_the_view() {
    require_lxcfs!();
    if let Some(why) = common::criu_missing() {
        eprintln!("SKIP: {why}");
        return;
    }
    let rt = Runtime::vzrun();
    let id = common::unique_id("procc");
    let b = bundle();
    rt.track(&id);
    assert_eq!(rt.run(&["run", "-d", "-b", b.p(), &id]).code, 0);
    let dir = tempfile::Builder::new()
        .prefix("vzt-ckpt-")
        .tempdir()
        .unwrap();
    let (img, work, rwork) = (
        dir.path().join("img"),
        dir.path().join("work"),
        dir.path().join("rwork"),
    );
    let o = rt.run(&[
        "checkpoint",
        "--image-path",
        img.to_str().unwrap(),
        "--work-path",
        work.to_str().unwrap(),
        &id,
    ]);
    assert_eq!(o.code, 0, "checkpoint: {o:?}");
    let o = rt.run(&[
        "restore",
        "-d",
        "--image-path",
        img.to_str().unwrap(),
        "--work-path",
        rwork.to_str().unwrap(),
        "--bundle",
        b.p(),
        &id,
    ]);
    assert_eq!(o.code, 0, "restore: {o:?}");
    assert_ve_view(&rt, &id, 256 * 1024);
    assert_eq!(rt.run(&["delete", "-f", &id]).code, 0);
}

#[test]
fn a_cold_migration_keeps_the_view() {
    require_lxcfs!();
    if let Some(why) = common::criu_missing() {
        eprintln!("SKIP: {why}");
        return;
    }
    let (src, dst) = (Runtime::vzrun(), Runtime::vzrun());
    let id = common::unique_id("procm");
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("k");
    std::fs::write(&key, "vzt-shared-key-0123456789abcdef\n").unwrap();
    // A key file as an administrator keeps one: root's alone.
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let b = bundle();
    src.track(&id);
    dst.track(&id);
    assert_eq!(src.run(&["run", "-d", "-b", b.p(), &id]).code, 0);
    // Two "hosts" as two state roots on this machine; the listener on loopback.
    let mut l = Command::new(common::VZRUN)
        .arg("--root")
        .arg(dst.root.path())
        .args(["migrate-listen", "--listen", "127.0.0.1:0", "--key-file"])
        .arg(&key)
        .arg("--once")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(l.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_default()
        .to_string();
    let o = src.run(&["migrate", &id, &addr, "--key-file", key.to_str().unwrap()]);
    let _ = l.wait();
    let mut log = String::new();
    if let Some(mut e) = l.stderr.take() {
        let _ = e.read_to_string(&mut log);
    }
    // What the destination keeps for the VE goes even when an assertion fails.
    struct Arrived(String);
    impl Drop for Arrived {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _arrived = Arrived(format!("/var/lib/vzrun/migrated/{id}"));
    assert_eq!(o.code, 0, "{o:?}\nlistener: {log}");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(dst.status(&id), "running");
    assert_ve_view(&dst, &id, 256 * 1024);
    assert_eq!(dst.run(&["delete", "-f", &id]).code, 0);
}

/// A Debian system VE gets the view by default, and its own procps `free` (which reads
/// /proc/meminfo) and `nproc` show the VE's limits; `ve set` moves them at once.
#[test]
fn a_debian_system_ves_free_and_nproc_are_its_own() {
    require_lxcfs!();
    let rt = Runtime::vzrun();
    if let Err(why) = common::debian_template(&rt) {
        eprintln!("SKIP: {why}");
        return;
    }
    let ve = common::SysVe::create(
        &rt,
        Path::new(common::DEBIAN_DATA),
        "proc-deb",
        common::DEBIAN_TEMPLATE,
        &["--ram", "256M", "--cpus", "1"],
    );
    ve.start();
    let free_k = |ve: &common::SysVe| -> u64 {
        let out = ve.sh("free -k");
        out.lines()
            .find(|l| l.starts_with("Mem:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("free -k said {out:?}"))
    };
    assert_eq!(free_k(&ve), 256 * 1024, "free -k total");
    assert_eq!(ve.sh("nproc").trim(), "1");
    let o = ve.ve("set", &["--ram", "512M"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(free_k(&ve), 512 * 1024, "free -k total after ve set");
}

/// An LXCFS of the test's own at a temporary mount point, so that killing it touches no
/// other VE; killed and unmounted at the end however the test ends.
struct PrivateLxcfs {
    dir: tempfile::TempDir,
    daemon: std::process::Child,
}

impl PrivateLxcfs {
    fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("vzt-lxcfs-")
            .tempdir()
            .unwrap();
        std::fs::create_dir(dir.path().join("mnt")).unwrap();
        let daemon = Command::new("lxcfs")
            .arg("--pidfile")
            .arg(dir.path().join("pid"))
            .arg(dir.path().join("mnt"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("lxcfs");
        let me = PrivateLxcfs { dir, daemon };
        let meminfo = me.mnt().join("proc/meminfo");
        assert!(
            common::wait_until(10, || std::fs::metadata(&meminfo).is_ok()),
            "lxcfs did not mount {}",
            me.mnt().display()
        );
        me
    }

    fn mnt(&self) -> std::path::PathBuf {
        self.dir.path().join("mnt")
    }

    /// As a crash would: no chance to unmount.
    fn kill(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

impl Drop for PrivateLxcfs {
    fn drop(&mut self) {
        self.kill();
        let _ = nix::mount::umount2(&self.mnt(), nix::mount::MntFlags::MNT_DETACH);
    }
}

/// `ve list -o ctid,procview` of one VE.
fn procview(rt: &Runtime, id: &str) -> String {
    let o = rt.run(&["ve", "list", "-j", "-o", "ctid,procview"]);
    assert_eq!(o.code, 0, "{o:?}");
    let rows = o.json();
    let row = rows
        .as_array()
        .and_then(|r| r.iter().find(|r| r["ctid"] == id))
        .unwrap_or_else(|| panic!("{id} not in {rows}"));
    row["procview"].as_str().unwrap_or_default().to_string()
}

/// When LXCFS dies, its files answer ENOTCONN in every VE that binds them: `ve list`
/// shows which VEs lost their view, and `delete` still leaves nothing.
#[test]
fn ve_list_shows_which_ves_lost_lxcfs() {
    require_lxcfs!();
    if !common::have("lxcfs") {
        eprintln!("SKIP: lxcfs is not installed");
        return;
    }
    let rt = Runtime::vzrun();
    let mut lx = PrivateLxcfs::start();
    let id = common::unique_id("proc-lost");
    let host_id = common::unique_id("proc-host");
    let b = bundle();
    let plain = Bundle::ve(
        &["sh", "-c", "exec </dev/null >/dev/null 2>&1; sleep 100000"],
        json!({"io.vzrun.proc": "host"}),
    );
    rt.track(&id);
    rt.track(&host_id);
    let o = common::output_of(
        {
            let mut c = rt.command();
            c.env("VZRUN_LXCFS", lx.mnt())
                .args(["run", "-d", "-b", b.p(), &id]);
            c
        },
        Stdio::null(),
    );
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(rt.run(&["run", "-d", "-b", plain.p(), &host_id]).code, 0);
    assert_eq!(free_total(&rt, &id), 256 * 1024);
    assert_eq!(procview(&rt, &id), "virtual");
    assert_eq!(procview(&rt, &host_id), "host");

    lx.kill();
    let o = rt.run(&["exec", &id, "cat", "/proc/meminfo"]);
    assert_ne!(o.code, 0, "a dead LXCFS still answered: {o:?}");
    assert_eq!(procview(&rt, &id), "lost");
    assert_eq!(procview(&rt, &host_id), "host");
    // The table says it in words too.
    let o = rt.run(&["ve", "list", "-o", "ctid,procview"]);
    assert!(
        o.stdout
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("lost")),
        "{o:?}"
    );

    for v in [&id, &host_id] {
        assert_eq!(rt.run(&["delete", "-f", v]).code, 0);
    }
    // Only the dead daemon's own mount point is left, for the guard to unmount.
    let mnt = lx.mnt();
    let left = common::mounts_containing(&mnt.to_string_lossy());
    assert!(
        left.iter()
            .all(|m| m.split(' ').nth(4) == Some(&*mnt.to_string_lossy())),
        "a VE's bind stayed behind: {left:?}"
    );
}

/// The attack: a VE with CAP_SYS_ADMIN covers its /proc with a tmpfs holding
/// `meminfo -> <a host FIFO>`; the LXCFS bind stays in its mount table. `ve list -o
/// procview` on the host then opened that path through /proc/PID/root, where an
/// absolute link resolves against the host's root: a host FIFO (here) hung the command,
/// a host device node such as a watchdog would have been opened by root.
#[test]
fn ve_list_never_opens_a_host_file_a_ve_links_its_proc_to() {
    require_lxcfs!();
    let rt = Runtime::vzrun();
    let fifo_dir = tempfile::Builder::new()
        .prefix("vzt-fifo-")
        .tempdir()
        .unwrap();
    let fifo = fifo_dir.path().join("f");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let script = format!(
        "mount -t tmpfs t /proc && ln -s {} /proc/meminfo && echo covered; exec </dev/null >/dev/null 2>&1; sleep 100000",
        fifo.display()
    );
    let b = Bundle::with(&["sh", "-c", &script], |v| {
        let caps = json!(["CAP_SYS_ADMIN", "CAP_KILL"]);
        for set in ["bounding", "effective", "permitted"] {
            v["process"]["capabilities"][set] = caps.clone();
        }
        v["annotations"] = json!({"io.vzrun.proc": "virtual"});
    });
    let id = common::unique_id("proc-link");
    rt.track(&id);
    let o = rt.run(&["run", "-d", "-b", b.p(), &id]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        common::wait_until(10, || {
            std::fs::read_link(format!("/proc/{}/root/proc/meminfo", rt.state(&id)["pid"])).is_ok()
        }),
        "the VE did not cover its /proc"
    );
    let o = rt.run_deadlined(
        &["ve", "list", "-j", "-o", "ctid,procview"],
        Duration::from_secs(20),
    );
    assert_eq!(o.code, 0, "ve list hung on the VE's link or failed: {o:?}");
    assert_eq!(rt.run(&["delete", "-f", &id]).code, 0);
}

/// A VE with CAP_SYS_ADMIN and /dev/fuse can mount a FUSE file system of its own over its
/// /proc, served by a daemon that never answers (here the test holds the FUSE device and
/// leaves even the first request unanswered). `ve list -o procview` on the host looked
/// up and statfs'd the LXCFS file through the VE's root, so it waited on that daemon
/// forever; it must answer from the host's side alone.
#[test]
fn ve_list_is_not_stalled_by_a_fuse_mount_a_ve_puts_over_its_proc() {
    require_lxcfs!();
    let rt = Runtime::vzrun();
    let b = bundle();
    let id = common::unique_id("proc-fuse");
    rt.track(&id);
    let o = rt.run(&["run", "-d", "-b", b.p(), &id]);
    assert_eq!(o.code, 0, "{o:?}");
    let pid = rt.state(&id)["pid"].to_string();
    // The daemon's end: the connection lives while this descriptor is open.
    let fuse = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .unwrap();
    let mounted = Command::new("nsenter")
        .args(["-t", &pid, "-m", "mount", "-t", "fuse"])
        .args([
            "-o",
            "fd=0,rootmode=40000,user_id=0,group_id=0",
            "vzt",
            "/proc",
        ])
        .stdin(fuse.try_clone().unwrap())
        .output()
        .unwrap();
    assert!(
        mounted.status.success(),
        "mount the FUSE /proc: {mounted:?}"
    );
    let o = rt.run_deadlined(
        &["ve", "list", "-j", "-o", "ctid,procview"],
        Duration::from_secs(20),
    );
    // Aborting the connection ends any request still waiting on it.
    drop(fuse);
    let _ = Command::new("nsenter")
        .args(["-t", &pid, "-m", "umount", "-l", "/proc"])
        .status();
    assert_eq!(
        o.code, 0,
        "ve list hung on the VE's FUSE mount or failed: {o:?}"
    );
    let row = o
        .json()
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ctid"] == id.as_str())
        .cloned()
        .unwrap_or_default();
    assert_eq!(row["procview"], "virtual", "{o:?}");
    assert_eq!(rt.run(&["delete", "-f", &id]).code, 0);
}
