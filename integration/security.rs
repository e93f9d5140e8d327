//! Safe to hand to tenants: every test here is an attack a tenant (a pod's annotations, a
//! process inside a VE) or a host user could try, asserting that it fails with a named
//! error and leaves nothing behind.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Bundle, Runtime};
use serde_json::{json, Value};

/// SHA-256 of a file, through sha256sum (the hash a user would compare).
fn file_hash(p: &Path) -> String {
    let o = Command::new("sha256sum")
        .arg(p)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// A policy file of the test's own (and its hooks directory), as an administrator would
/// write one.
struct Policy {
    dir: tempfile::TempDir,
}

impl Policy {
    fn new(text: &str) -> Policy {
        let dir = tempfile::Builder::new()
            .prefix("vzt-policy-")
            .tempdir()
            .unwrap();
        std::fs::write(dir.path().join("policy.toml"), text).unwrap();
        std::fs::create_dir(dir.path().join("hooks.d")).unwrap();
        for d in [dir.path().to_path_buf(), dir.path().join("hooks.d")] {
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Policy { dir }
    }

    fn path(&self) -> String {
        self.dir.path().join("policy.toml").display().to_string()
    }
}

fn run_with_policy(rt: &Runtime, policy: &str, args: &[&str]) -> common::Out {
    let mut a = vec!["--policy", policy];
    a.extend_from_slice(args);
    rt.run(&a)
}

#[test]
fn a_pod_cannot_run_host_commands_through_hook_annotations() {
    require_root!();
    let rt = Runtime::vzrun();
    let marker = std::env::temp_dir().join(format!("vzt-pwned-{}", std::process::id()));
    let attack = format!("/bin/sh -c 'touch {}'", marker.display());
    for (point, value) in [
        ("post-restore", attack.as_str()),
        ("pre-checkpoint", "/usr/bin/id"),
        ("post-checkpoint", "../../bin/sh"),
    ] {
        let b = Bundle::ve(
            &["sleep", "60"],
            json!({ format!("io.vzrun.hooks.{point}"): value }),
        );
        let id = common::unique_id("hook");
        rt.track(&id);
        let o = rt.run(&["run", "-d", "-b", b.p(), &id]);
        assert_eq!(o.code, 1, "{point}={value}: {o:?}");
        assert!(o.error_msg().contains("is not a hook name"), "{o:?}");
        assert!(
            o.error_msg().contains(&format!("io.vzrun.hooks.{point}")),
            "{o:?}"
        );
    }
    // A name is only what the administrator lists.
    let p = Policy::new("[hooks]\nnames = [\"backup\"]\n");
    let b = Bundle::ve(
        &["sleep", "60"],
        json!({"io.vzrun.hooks.post-restore": "notify"}),
    );
    let id = common::unique_id("hook");
    rt.track(&id);
    let o = run_with_policy(&rt, &p.path(), &["run", "-d", "-b", b.p(), &id]);
    assert_eq!(o.code, 1, "{o:?}");
    let msg = o.error_msg();
    assert!(
        msg.contains("io.vzrun.hooks.post-restore=\"notify\""),
        "{msg}"
    );
    assert!(msg.contains("line 2: hooks.names"), "{msg}");
    assert!(!marker.exists(), "a host command ran");
}

/// A read-only copy of a binary under /run/vzrun-exe, unmounted and removed when dropped.
struct SealedCopy(PathBuf);

impl Drop for SealedCopy {
    fn drop(&mut self) {
        if self.0.starts_with("/run/vzrun-exe/") {
            let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
            let _ = std::fs::remove_file(&self.0);
            let mut src = self.0.clone().into_os_string();
            src.push(".src");
            let _ = std::fs::remove_file(src);
        }
    }
}

#[test]
fn a_container_cannot_write_the_runtime_binary_through_proc_exe() {
    require_root!();
    let (_dir, bin) = runtime_copy();
    let target = attack_proc_exe(&bin);
    assert!(
        target.to_string_lossy().contains("memfd:vzrun") || target.starts_with("/run/vzrun-exe"),
        "the init runs an unprotected copy: {target:?}"
    );
}

/// hack/setup.sh installs vzrun on a read-only bind mount of itself, and vzrun then skips
/// the re-exec: the same attack must meet the read-only mount.
#[test]
fn a_container_cannot_write_a_runtime_installed_read_only_through_proc_exe() {
    require_root!();
    let (_dir, bin) = runtime_copy();
    let _mount = ReadOnlyBind::new(&bin);
    let target = attack_proc_exe(&bin);
    assert_eq!(target, bin, "a read-only install is run as it is");
}

/// The runtime under attack is a copy: if the attack worked, only the copy breaks.
fn runtime_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("vzt-bin-")
        .tempdir()
        .unwrap();
    let bin = dir.path().join("vzrun");
    std::fs::copy(common::VZRUN, &bin).unwrap();
    (dir, bin)
}

/// A read-only bind mount of a file onto itself, as hack/setup.sh makes of the installed
/// binary; detached when dropped.
struct ReadOnlyBind(PathBuf);

impl ReadOnlyBind {
    fn new(p: &Path) -> Self {
        use nix::mount::{mount, MsFlags};
        let none: Option<&str> = None;
        mount(Some(p), p, none, MsFlags::MS_BIND, none).unwrap();
        let me = ReadOnlyBind(p.to_path_buf());
        let ro = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        mount(none, p, none, ro, none).unwrap();
        me
    }
}

impl Drop for ReadOnlyBind {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// The CVE-2019-5736 attack on the runtime binary `bin`: while a container's init still
/// runs the runtime's code (created, not started, as an exec'd process does until it runs
/// its program), open its /proc/PID/exe, wait for the runtime to be gone, and write
/// through the descriptor. Asserts that every write fails and `bin` is unchanged; returns
/// what the init ran.
fn attack_proc_exe(bin: &Path) -> PathBuf {
    let before = file_hash(bin);
    let rt = Runtime::with_binary(bin);
    let b = Bundle::busybox(&["sleep", "60"]);
    let id = common::unique_id("exe");
    rt.track(&id);
    assert_eq!(rt.run(&["create", "-b", b.p(), &id]).code, 0);
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    let exe = PathBuf::from(format!("/proc/{pid}/exe"));
    let target = std::fs::read_link(&exe).unwrap();
    // The read-only copy made of this test's binary goes with the test: vzrun sweeps a
    // copy whose binary is gone only when it makes the next one (an upgrade).
    let _copy = SealedCopy(target.clone());
    let held = std::fs::File::open(&exe).expect("open /proc/PID/exe for reading");
    assert!(std::fs::OpenOptions::new().write(true).open(&exe).is_err());
    assert_eq!(rt.run(&["delete", "-f", &id]).code, 0);
    let via_fd = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&held));
    let wrote = std::fs::OpenOptions::new()
        .write(true)
        .open(&via_fd)
        .and_then(|mut f| f.write_all(b"#!/bin/sh\nid > /tmp/vzt-owned\n"));
    assert!(wrote.is_err(), "the runtime's code was writable");
    assert_eq!(file_hash(bin), before, "the host binary changed");
    target
}

/// The attack: a container root with CAP_SYS_PTRACE watches for new processes, stops
/// each, and looks through its /proc/PID/root for a file that exists only on the host; a
/// process seen there still has the host's root, and the attacker writes to the host
/// through it. Every `exec` the operator runs meanwhile must be out of its reach: under
/// runc the process the container can see is already in the container's mounts.
#[test]
fn a_container_cannot_reach_the_host_through_a_process_being_execd() {
    require_root!();
    let host = tempfile::Builder::new()
        .prefix("vzt-execroot-")
        .tempdir()
        .unwrap();
    let marker = host.path().join("only-on-the-host");
    std::fs::write(&marker, "x").unwrap();
    let m = marker.to_str().unwrap().to_string();
    let pwned = host.path().join("pwned");
    let p = pwned.to_str().unwrap().to_string();
    let script = format!(
        "while :; do for d in /proc/[0-9]*; do q=${{d#/proc/}}; \
         [ $q = 1 ] || [ $q = $$ ] && continue; kill -STOP $q 2>/dev/null || continue; \
         if [ -e $d/root{m} ]; then echo from-the-container > $d/root{p}; fi; \
         kill -CONT $q; done; done"
    );
    let b = Bundle::with(&["sh", "-c", &script], |v| {
        for set in ["bounding", "effective", "permitted"] {
            v["process"]["capabilities"][set]
                .as_array_mut()
                .unwrap()
                .push(json!("CAP_SYS_PTRACE"));
        }
    });
    let rt = Runtime::vzrun();
    let id = common::unique_id("execroot");
    rt.track(&id);
    assert_eq!(rt.run(&["run", "-d", "-b", b.p(), &id]).code, 0);
    // `kubectl exec -it` arrives as an exec with a terminal and a console socket.
    let socket = host.path().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        while let Ok((c, _)) = listener.accept() {
            held.push(c);
        }
    });
    let s = socket.to_str().unwrap();
    for i in 0..60 {
        // An exec may fail when the attacker stops it at the wrong moment; what matters
        // is what the attacker could reach.
        let _ = match i % 2 {
            0 => rt.run(&["exec", &id, "/bin/true"]),
            _ => rt.run(&["exec", "-t", "--console-socket", s, &id, "/bin/true"]),
        };
        if pwned.exists() {
            break;
        }
    }
    assert_eq!(rt.run(&["delete", "-f", &id]).code, 0);
    assert!(
        !pwned.exists(),
        "the container wrote {p} on the host through an exec'd process's root"
    );
}

/// The attack, without any capability beyond the default: a tenant stops each new
/// process in its container and reads its /proc status and command line (both readable
/// by anyone). While the operator runs `exec -e` with a secret, no process the tenant
/// sees may hold more capabilities than the container's own processes, nor show the
/// caller's command line.
#[test]
fn a_process_being_execd_shows_the_container_no_more_than_its_own() {
    require_root!();
    let script = "mine=$(grep CapBnd /proc/self/status); \
        while :; do for d in /proc/[0-9]*; do q=${d#/proc/}; \
        [ $q = 1 ] || [ $q = $$ ] && continue; kill -STOP $q 2>/dev/null || continue; \
        b=$(grep CapBnd $d/status 2>/dev/null); \
        [ -n \"$b\" ] && [ \"$b\" != \"$mine\" ] && echo \"$q $b\" >> /dev/shm/seen; \
        tr '\\0' ' ' < $d/cmdline 2>/dev/null | grep -q vzt-secret && echo \"$q cmdline\" >> /dev/shm/seen; \
        kill -CONT $q; done; done";
    let b = Bundle::busybox(&["sh", "-c", script]);
    let rt = Runtime::vzrun();
    let id = common::unique_id("execsee");
    rt.track(&id);
    assert_eq!(rt.run(&["run", "-d", "-b", b.p(), &id]).code, 0);
    for _ in 0..40 {
        let _ = rt.run(&["exec", "-e", "TOKEN=vzt-secret", &id, "/bin/true"]);
    }
    let init = rt.state(&id)["pid"].as_i64().unwrap();
    let seen =
        std::fs::read_to_string(format!("/proc/{init}/root/dev/shm/seen")).unwrap_or_default();
    assert_eq!(rt.run(&["delete", "-f", &id]).code, 0);
    assert!(
        seen.is_empty(),
        "the container saw processes with more than its capabilities or the caller's command line:\n{seen}"
    );
}

/// The attack: a tenant stops every new process in its container, so an operator's
/// `exec` never finishes; the operator's `kill` and `delete` of the container must still
/// go through (runc holds no lock across an exec).
#[test]
fn a_tenant_stopping_an_exec_cannot_hold_up_kill_and_delete() {
    require_root!();
    let script = "while :; do for d in /proc/[0-9]*; do q=${d#/proc/}; \
                  [ $q = 1 ] || [ $q = $$ ] && continue; kill -STOP $q 2>/dev/null; done; done";
    let b = Bundle::busybox(&["sh", "-c", script]);
    let rt = Runtime::vzrun();
    let id = common::unique_id("execstop");
    rt.track(&id);
    assert_eq!(rt.run(&["run", "-d", "-b", b.p(), &id]).code, 0);
    let mut cmd = rt.command();
    cmd.args(["exec", &id, "/bin/echo", "hi"]);
    let exec = common::Deadlined::start(&mut cmd);
    // Long enough for the exec's process to be caught by the loop.
    std::thread::sleep(Duration::from_millis(500));
    let mut kill = rt.command();
    kill.args(["kill", &id, "KILL"]);
    let killed = common::Deadlined::start(&mut kill).wait(Duration::from_secs(10));
    let _ = exec.wait(Duration::from_secs(10));
    let mut del = rt.command();
    del.args(["delete", "-f", &id]);
    let deleted = common::Deadlined::start(&mut del).wait(Duration::from_secs(10));
    assert_eq!(killed.code, 0, "kill was held up by the exec: {killed:?}");
    assert_eq!(
        deleted.code, 0,
        "delete was held up by the exec: {deleted:?}"
    );
}

/// The attack on a stale state: the container's init dies, and another process (here
/// one of the host's) gets its pid. `exec`, `kill` and `state` must not take that
/// process for the container's init: runc says the container is stopped. Also for a
/// container whose record comes from a vzrun that did not keep the init's start time.
#[test]
fn a_reused_init_pid_is_not_taken_for_the_container() {
    require_root!();
    reused_pid(false);
    reused_pid(true);
}

fn reused_pid(old_record: bool) {
    let b = Bundle::busybox(&["sleep", "300"]);
    let rt = Runtime::vzrun();
    let id = common::unique_id("pidreuse");
    rt.track(&id);
    assert_eq!(rt.run(&["run", "-d", "-b", b.p(), &id]).code, 0);
    if old_record {
        let path = rt.root.path().join(".vzrun").join(&id).join("ve.json");
        let mut rec: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert!(rec.as_object_mut().unwrap().remove("init_start").is_some());
        std::fs::write(&path, rec.to_string()).unwrap();
    }
    let init = rt.state(&id)["pid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(init), nix::sys::signal::SIGKILL).unwrap();
    let gone = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(10));
        !Path::new(&format!("/proc/{init}")).exists()
    });
    assert!(gone, "the init {init} did not go");
    // A host process with the init's pid: the kernel hands out the pid after the last one.
    let mut squatter = None;
    for _ in 0..50 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (init - 1).to_string()).unwrap();
        let mut c = Command::new("sleep").arg("300").spawn().unwrap();
        if c.id() as i32 == init {
            squatter = Some(c);
            break;
        }
        let _ = c.kill();
        let _ = c.wait();
    }
    let Some(mut squatter) = squatter else {
        let _ = rt.run(&["delete", "-f", &id]);
        eprintln!("SKIP: could not give a host process the pid {init}");
        return;
    };
    let state = rt.state(&id);
    let exec = rt.run(&["exec", &id, "hostname"]);
    let kill = rt.run(&["kill", &id, "KILL"]);
    let alive = squatter.try_wait().unwrap().is_none();
    let _ = squatter.kill();
    let _ = squatter.wait();
    assert_eq!(rt.run(&["delete", "-f", &id]).code, 0);
    let what = if old_record { " (old record)" } else { "" };
    assert_eq!(state["status"], "stopped", "{state}{what}");
    assert_ne!(
        exec.code, 0,
        "exec ran in the host process's namespaces{what}: {exec:?}"
    );
    assert!(
        exec.error_msg().contains("stopped container"),
        "runc's words{what}: {exec:?}"
    );
    assert_ne!(
        kill.code, 0,
        "kill reached the host process{what}: {kill:?}"
    );
    assert!(
        alive,
        "the host process with the old init's pid was killed{what}"
    );
}

#[test]
fn images_outside_the_policy_are_refused_and_left_as_they_were() {
    require_root!();
    let rt = Runtime::vzrun();
    let outside = tempfile::Builder::new()
        .prefix("vzt-victim-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let victim = outside.path().join("data");
    std::fs::write(&victim, "precious host data\n").unwrap();
    let inside = tempfile::Builder::new()
        .prefix("vzt-img-")
        .tempdir()
        .unwrap();
    let not_ext4 = inside.path().join("notes.txt");
    std::fs::write(&not_ext4, "not an image\n").unwrap();
    let link = inside.path().join("link.img");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let before = (file_hash(&victim), file_hash(&not_ext4));
    let policy = Policy::new(&format!(
        "[disk]\nimages = \"{}\"\n",
        inside.path().display()
    ));
    let cases: [(&Path, &str, &str); 3] = [
        (&victim, "not beneath", "outside the images directory"),
        (
            &not_ext4,
            "not an ext4 image",
            "an existing file that is no image",
        ),
        (&link, "private area", "a link out of the images directory"),
    ];
    for (image, words, what) in cases {
        let b = Bundle::with(&["sleep", "60"], |v| {
            v["root"]["readonly"] = json!(false);
            v["annotations"] = json!({"io.vzrun.diskspace": "32M", "io.vzrun.disk.image": image});
        });
        let id = common::unique_id("img");
        rt.track(&id);
        let o = run_with_policy(&rt, &policy.path(), &["run", "-d", "-b", b.p(), &id]);
        assert_eq!(o.code, 1, "{what}: {o:?}");
        assert!(o.error_msg().contains(words), "{what}: {o:?}");
    }
    assert_eq!((file_hash(&victim), file_hash(&not_ext4)), before);
    assert_eq!(std::fs::metadata(&not_ext4).unwrap().len(), 13);
    // Without a policy no image may be named at all.
    let b = Bundle::with(&["sleep", "60"], |v| {
        v["root"]["readonly"] = json!(false);
        v["annotations"] = json!({"io.vzrun.diskspace": "32M",
            "io.vzrun.disk.image": inside.path().join("new.img")});
    });
    let id = common::unique_id("img");
    rt.track(&id);
    let o = run_with_policy(
        &rt,
        "/nonexistent/vzt/policy.toml",
        &["run", "-d", "-b", b.p(), &id],
    );
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.error_msg().contains("named images are not allowed"),
        "{o:?}"
    );
    assert!(!inside.path().join("new.img").exists());
    // One VE's image in use: a second VE naming it is refused, the first keeps it.
    let shared = inside.path().join("shared.img");
    let named = |id: &str| {
        let b = Bundle::with(&["sleep", "60"], |v| {
            v["root"]["readonly"] = json!(false);
            v["annotations"] = json!({"io.vzrun.diskspace": "32M", "io.vzrun.disk.image": shared});
        });
        let o = run_with_policy(&rt, &policy.path(), &["run", "-d", "-b", b.p(), id]);
        (o, b)
    };
    let (first, second) = (common::unique_id("img"), common::unique_id("img"));
    rt.track(&first);
    rt.track(&second);
    let (o, _b1) = named(&first);
    assert_eq!(o.code, 0, "{o:?}");
    let (o, _b2) = named(&second);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.error_msg().contains("in use"), "{o:?}");
    assert_eq!(rt.status(&first), "running");
}

#[test]
fn addresses_outside_the_pools_are_refused_and_nothing_is_routed() {
    require_root!();
    let rt = Runtime::vzrun();
    // 192.0.2.0/24 is documentation space too, but not in the test policy's pools.
    let b = Bundle::ve(&["sleep", "60"], json!({"io.vzrun.net.ip": "192.0.2.77"}));
    let id = common::unique_id("pool");
    rt.track(&id);
    let o = rt.run(&["run", "-d", "-b", b.p(), &id]);
    assert_eq!(o.code, 1, "{o:?}");
    let msg = o.error_msg();
    assert!(
        msg.contains("io.vzrun.net.ip=\"192.0.2.77\": outside the address pools"),
        "{msg}"
    );
    assert!(msg.contains("net.pools"), "{msg}");
    let routes = Command::new("ip")
        .args(["route", "show", "192.0.2.77"])
        .output()
        .unwrap();
    assert!(routes.stdout.is_empty(), "routed: {routes:?}");
    // Without a policy no address may be claimed.
    let b = Bundle::ve(
        &["sleep", "60"],
        json!({"io.vzrun.net.ip": "198.51.100.77"}),
    );
    let id = common::unique_id("pool");
    rt.track(&id);
    let o = run_with_policy(
        &rt,
        "/nonexistent/vzt/policy.toml",
        &["run", "-d", "-b", b.p(), &id],
    );
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.error_msg()
            .contains("no host policy at /nonexistent/vzt/policy.toml"),
        "{o:?}"
    );
    // A broken policy is an error that names its line, not a fallback.
    let p = Policy::new("[net]\npools = [\"198.51.100.0/33\"]\n");
    let o = run_with_policy(&rt, &p.path(), &["run", "-d", "-b", b.p(), &id]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.error_msg().contains("line 2"), "{o:?}");
}

/// The host's interface towards its default gateway: what a tenant would name to be
/// announced on the host's own LAN.
fn host_uplink() -> String {
    let out = Command::new("ip")
        .args(["route", "show", "default"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .skip_while(|w| *w != "dev")
        .nth(1)
        .unwrap_or("lo")
        .to_string()
}

/// A tenant asks, through annotations, for what only the administrator may grant: the
/// host's uplink, a bridge outside the policy, its MAC filter off, and resources beyond
/// the policy's maxima. Each create is refused naming the key, the value and the policy
/// line, and leaves nothing behind.
#[test]
fn a_tenant_cannot_reach_past_the_host_policy_through_annotations() {
    require_root!();
    let rt = Runtime::vzrun();
    let policy = Policy::new(
        r#"[net]
pools = ["198.51.100.0/24"]
uplinks = ["vzt-up*"]
bridges = ["vzt-br*"]
mac_filter_off = false

[resources]
max_ram = "256M"
max_cpus = 1
max_numproc = 512
max_diskspace = "64M"
memguarantee = false

[proc]
mode = "virtual"
"#,
    );
    // A real bridge of the host's that the policy does not list.
    let br = format!("vzx{}", std::process::id() % 100_000);
    assert!(Command::new("ip")
        .args(["link", "add", &br, "type", "bridge"])
        .status()
        .unwrap()
        .success());
    struct DelLink(String);
    impl Drop for DelLink {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["link", "del", &self.0]).status();
        }
    }
    let _br = DelLink(br.clone());
    let uplink = host_uplink();
    let ip = "198.51.100.64";
    fn veth<'a>(ip: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut a = vec![("io.vzrun.net.mode", "veth"), ("io.vzrun.net.ip", ip)];
        a.extend_from_slice(extra);
        a
    }
    // (annotations, the key refused, its value, the policy rule named)
    type Case<'a> = (Vec<(&'a str, &'a str)>, &'a str, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![("io.vzrun.net.ip", ip), ("io.vzrun.net.uplink", &uplink)],
            "io.vzrun.net.uplink",
            &uplink,
            "net.uplinks",
        ),
        (
            veth(ip, &[("io.vzrun.net.bridge", &br)]),
            "io.vzrun.net.bridge",
            &br,
            "net.bridges",
        ),
        (
            veth(
                ip,
                &[
                    ("io.vzrun.net.bridge", "vzt-br0"),
                    ("io.vzrun.net.mac_filter", "off"),
                ],
            ),
            "io.vzrun.net.mac_filter",
            "off",
            "net.mac_filter_off",
        ),
        (
            vec![("io.vzrun.ram", "1G")],
            "io.vzrun.ram",
            "1G",
            "resources.max_ram",
        ),
        (
            vec![("io.vzrun.cpus", "2")],
            "io.vzrun.cpus",
            "2",
            "resources.max_cpus",
        ),
        (
            vec![("io.vzrun.numproc", "100000")],
            "io.vzrun.numproc",
            "100000",
            "resources.max_numproc",
        ),
        (
            vec![("io.vzrun.diskspace", "1T")],
            "io.vzrun.diskspace",
            "1T",
            "resources.max_diskspace",
        ),
        (
            vec![("io.vzrun.ram", "128M"), ("io.vzrun.memguarantee", "50")],
            "io.vzrun.memguarantee",
            "50",
            "resources.memguarantee",
        ),
        (
            vec![("io.vzrun.proc", "host")],
            "io.vzrun.proc",
            "host",
            "proc.mode",
        ),
    ];
    for (annotations, key, value, rule) in cases {
        let map: serde_json::Map<String, Value> = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let b = Bundle::with(&["sleep", "600"], |v| {
            v["root"]["readonly"] = json!(false);
            v["annotations"] = Value::Object(map);
        });
        let id = common::unique_id("tenant");
        let o = run_with_policy(&rt, &policy.path(), &["run", "-d", "-b", b.p(), &id]);
        let err = o.error_msg();
        assert_ne!(o.code, 0, "{key}={value} was accepted");
        assert!(
            err.contains(key) && err.contains(value) && err.contains(rule),
            "{key}={value}: the error names the key, the value and the rule: {err}"
        );
        let left = remains(&rt, &id, &[ip]);
        assert!(left.is_empty(), "{key}={value} left {left:?}");
    }
}

#[test]
fn a_host_user_finds_no_setuid_path_into_a_ve() {
    require_root!();
    if !common::have("setpriv") {
        eprintln!("SKIP: setpriv (util-linux) is missing");
        return;
    }
    let rt = Runtime::vzrun();
    let ve = common::Ve::start_writable(&rt, "suid");
    let id = ve.id.clone();
    let o = rt.run(&[
        "exec",
        &id,
        "sh",
        "-c",
        "cp /bin/busybox /suid && chmod 4755 /suid",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    let ve_dir = rt.root.path().join(".vzrun").join(&id);
    let suid_paths = [
        ve_dir.join("rootfs/suid"),
        ve_dir.join("private/upper/suid"),
    ];
    for p in &suid_paths {
        assert!(p.exists(), "{p:?}");
        // As nobody on the host: the setuid copy must not be reachable.
        let o = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(p)
            .args(["id", "-u"])
            .output()
            .unwrap();
        assert!(!o.status.success(), "{p:?} ran for nobody: {o:?}");
        assert_ne!(String::from_utf8_lossy(&o.stdout).trim(), "0");
    }
    // The state root may be the caller's (it is here); vzrun's own part of it is 0700.
    for d in [rt.root.path().join(".vzrun"), ve_dir.clone()] {
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{d:?}");
    }
    // The private area's own mount (mountinfo's 5th field is the mount point); the
    // overlay over it is the VE's root and keeps setuid for the VE.
    let private = format!("{}/private", ve_dir.display());
    let mounts: Vec<String> = common::mounts_containing(&private)
        .into_iter()
        .filter(|m| m.split(' ').nth(4) == Some(private.as_str()))
        .collect();
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    let opts = mounts[0].split(' ').nth(5).unwrap_or_default();
    assert!(
        opts.contains("nosuid") && opts.contains("nodev"),
        "{mounts:?}"
    );
    for img in common::disk_leftovers(&id) {
        if let Ok(m) = std::fs::metadata(&img) {
            assert_eq!(
                m.permissions().mode() & 0o077,
                0,
                "{img} is readable by others"
            );
        }
    }
}

#[test]
fn namespaced_sysctls_never_open_the_hosts() {
    require_root!();
    let rt = Runtime::vzrun();
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    // No UTS namespace of its own: the hostname sysctl is the host's.
    let b = Bundle::with(
        &["sh", "-c", "echo pwned > /proc/sys/kernel/hostname; echo 1 > /proc/sys/net/ipv4/ip_forward && cat /proc/sys/net/ipv4/ip_forward"],
        |v| {
            let caps = json!(["CAP_SYS_ADMIN", "CAP_NET_ADMIN"]);
            for set in ["bounding", "effective", "permitted"] {
                v["process"]["capabilities"][set] = caps.clone();
            }
            let nss: Vec<Value> = v["linux"]["namespaces"]
                .as_array()
                .unwrap()
                .iter()
                // The busybox config has a network namespace already: one only (runc
                // refuses a namespace given twice, and so does vzrun).
                .filter(|n| n["type"] != "uts" && n["type"] != "network")
                .cloned()
                .chain([json!({"type": "network"})])
                .collect();
            v["linux"]["namespaces"] = json!(nss);
            v["hostname"] = Value::Null;
            v["annotations"] = json!({"io.vzrun.sysctl": "namespaced"});
        },
    );
    let id = common::unique_id("sysctl");
    rt.track(&id);
    let o = rt.run(&["run", "-b", b.p(), &id]);
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        host_name,
        "the VE renamed the host"
    );
    // Its own network namespace's sysctls it may write.
    assert_eq!(o.stdout.trim(), "1", "{o:?}");
}

/// A host directory an image's links will point at, and a minimal image (busybox, sh,
/// /proc, /dev and /sys) for the links to go in.
fn hostile_image() -> (tempfile::TempDir, tempfile::TempDir) {
    let host_dir = tempfile::Builder::new()
        .prefix("vzt-hostdir-")
        .tempdir()
        .unwrap();
    let rootfs = tempfile::Builder::new()
        .prefix("vzt-rootfs-")
        .tempdir()
        .unwrap();
    let r = rootfs.path();
    std::fs::create_dir_all(r.join("bin")).unwrap();
    std::fs::copy(common::rootfs().join("bin/busybox"), r.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", r.join("bin/sh")).unwrap();
    for d in ["proc", "dev", "sys"] {
        std::fs::create_dir(r.join(d)).unwrap();
    }
    (host_dir, rootfs)
}

#[test]
fn a_cwd_link_in_the_image_never_makes_a_host_directory() {
    require_root!();
    let rt = Runtime::vzrun();
    let (host_dir, rootfs) = hostile_image();
    std::os::unix::fs::symlink(host_dir.path(), rootfs.path().join("work")).unwrap();
    let b = Bundle::with(&["/bin/sh", "-c", "pwd"], |v| {
        v["root"] = json!({"path": rootfs.path(), "readonly": false});
        v["process"]["cwd"] = json!("/work/sub");
    });
    let id = common::unique_id("cwd");
    rt.track(&id);
    let _ = rt.run(&["run", "-b", b.p(), &id]);
    assert!(
        !host_dir.path().join("sub").exists(),
        "made a directory on the host"
    );
}

/// A mount destination reached through a link in the image (absolute, or climbing
/// with `..`) lands inside the rootfs, as under runc: the image cannot make vzrun mount
/// over a host directory. Both runtimes run the same bundle.
#[test]
fn a_mount_target_link_in_the_image_never_mounts_on_the_host() {
    require_root!();
    for rt in [Runtime::vzrun(), Runtime::runc()] {
        let (host_dir, rootfs) = hostile_image();
        let r = rootfs.path();
        std::os::unix::fs::symlink(host_dir.path(), r.join("abs")).unwrap();
        let up = format!("../../../../../..{}", host_dir.path().display());
        std::os::unix::fs::symlink(&up, r.join("up")).unwrap();
        let file = tempfile::NamedTempFile::new().unwrap();
        let b = Bundle::with(
            &["/bin/sh", "-c", "stat -f -c %T /abs/t /up/u; cat /up/f"],
            |v| {
                v["root"] = json!({"path": r, "readonly": false});
                let mounts = v["mounts"].as_array_mut().unwrap();
                mounts.push(json!({"destination": "/abs/t", "type": "tmpfs", "source": "tmpfs"}));
                mounts.push(json!({"destination": "/up/u", "type": "tmpfs", "source": "tmpfs"}));
                mounts.push(json!({"destination": "/up/f", "type": "bind",
                    "source": file.path(), "options": ["bind", "ro"]}));
            },
        );
        std::fs::write(file.path(), "bound\n").unwrap();
        let id = common::unique_id("mntlink");
        rt.track(&id);
        let o = rt.run(&["run", "-b", b.p(), &id]);
        assert_eq!(o.code, 0, "{}: {o:?}", rt.name);
        assert_eq!(o.stdout, "tmpfs\ntmpfs\nbound\n", "{}: {o:?}", rt.name);
        let _ = rt.run(&["delete", "-f", &id]);
        assert!(
            common::dir_entries(host_dir.path()).is_empty(),
            "{}: made {:?} in the host directory",
            rt.name,
            common::dir_entries(host_dir.path())
        );
        let after = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let host = host_dir.path().to_string_lossy().into_owned();
        assert!(
            !after.contains(&format!(" {host}/")),
            "{}: a mount on the host: {after}",
            rt.name
        );
    }
}

/// A created container's init waits for `start` where the container's processes can
/// see it: a process exec'd with CAP_SYS_PTRACE opens whatever the init holds through
/// /proc/1/fd. Besides its stdio, nothing it holds may be a file or directory (the
/// direct create's init held vzrun's lock file on the host, and libraries' cached handle
/// of the host's /proc when one was made before the fork). runc's init holds its fifo.
#[test]
fn a_created_containers_init_holds_no_host_file_for_a_ptracing_exec() {
    require_root!();
    for rt in [Runtime::vzrun(), Runtime::runc()] {
        let b = Bundle::with(&["sleep", "100"], |v| {
            for set in ["bounding", "effective", "permitted"] {
                let caps = v["process"]["capabilities"][set].as_array_mut().unwrap();
                caps.push(json!("CAP_SYS_PTRACE"));
            }
        });
        let id = common::unique_id("initfds");
        rt.track(&id);
        let o = rt.run(&["create", "-b", b.p(), &id]);
        assert_eq!(o.code, 0, "{}: {o:?}", rt.name);
        let probe = "for f in /proc/1/fd/*; do n=${f##*/}; [ $n -le 2 ] && continue; \
                     if [ -f $f ] || [ -d $f ]; then echo \"reached $n $(readlink $f)\"; fi; done; echo done";
        let o = rt.run(&["exec", &id, "sh", "-c", probe]);
        let _ = rt.run(&["delete", "-f", &id]);
        assert_eq!(o.code, 0, "{}: {o:?}", rt.name);
        assert_eq!(o.stdout, "done\n", "{}: the init holds these", rt.name);
    }
}

/// The same attack on a create that goes libcontainer's way (a personality sends it
/// there): its intermediate's cgroup manager made pathrs' cached procfs handle in the
/// host's PID namespace, and the waiting init held it, so the exec'd process listed the
/// host's processes and read their files through /proc/1/fd/N/PID/root. No directory
/// may be reachable (libcontainer's init still holds vzrun's lock file, a regular file).
#[test]
fn a_created_containers_init_from_libcontainer_holds_no_host_directory() {
    require_root!();
    let rt = Runtime::vzrun();
    let b = Bundle::with(&["sleep", "100"], |v| {
        for set in ["bounding", "effective", "permitted"] {
            let caps = v["process"]["capabilities"][set].as_array_mut().unwrap();
            caps.push(json!("CAP_SYS_PTRACE"));
        }
        v["linux"]["personality"] = json!({"domain": "LINUX"});
    });
    let id = common::unique_id("initdirs");
    rt.track(&id);
    let o = rt.run(&["create", "-b", b.p(), &id]);
    assert_eq!(o.code, 0, "{o:?}");
    let probe = "for f in /proc/1/fd/*; do [ -d $f ] && echo \"reached ${f##*/}: $(ls $f | wc -l) entries\"; done; echo done";
    let o = rt.run(&["exec", &id, "sh", "-c", probe]);
    let _ = rt.run(&["delete", "-f", &id]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(o.stdout, "done\n", "the init holds a directory");
}

/// Removes what a cgroupsPath that climbed out of the hierarchies made: directories on
/// the tmpfs that holds them, and the `…-a` ones inside them.
struct CgroupEscape(String);

impl Drop for CgroupEscape {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(Path::new("/sys/fs/cgroup").join(&self.0));
        for p in common::cgroups_named(&self.0) {
            let _ = std::fs::remove_dir(p);
        }
    }
}

#[test]
fn a_cgroups_path_cannot_climb_out_of_the_cgroup_hierarchies() {
    require_root!();
    // `/<id>-a/../../<id>`: joined to a hierarchy's mount point and resolved by the
    // kernel, it is `/sys/fs/cgroup/<id>` on the tmpfs above the hierarchies. runc reads
    // it from `/` and puts the container in `/<id>` of each hierarchy; so must vzrun.
    let mut seen = Vec::new();
    for rt in [Runtime::vzrun(), Runtime::runc()] {
        let id = common::unique_id("cgesc");
        let _guard = CgroupEscape(id.clone());
        rt.track(&id);
        let b = Bundle::with(&["cat", "/proc/self/cgroup"], |v| {
            v["linux"]["cgroupsPath"] = json!(format!("/{id}-a/../../{id}"));
        });
        let out = rt.run(&["run", "-b", b.p(), &id]);
        assert_eq!(out.code, 0, "{}: {}", rt.name, out.stderr);
        assert!(
            !Path::new("/sys/fs/cgroup").join(&id).exists(),
            "{}: made /sys/fs/cgroup/{id} outside the hierarchies",
            rt.name
        );
        let climbed: Vec<PathBuf> = common::cgroups_named(&format!("{id}-a"));
        assert!(climbed.is_empty(), "{}: made {climbed:?}", rt.name);
        let mut lines: Vec<String> = out
            .stdout
            .lines()
            // The unified and name=systemd hierarchies: libcgroups manages neither on a
            // hybrid host (runc does), which is not what this test is about.
            .filter(|l| !l.starts_with("0::") && !l.contains(":name=systemd:"))
            .map(|l| l.replace(&id, "ID"))
            .collect();
        lines.sort();
        assert!(
            lines.iter().any(|l| l.ends_with(":/ID")),
            "{}: {lines:?}",
            rt.name
        );
        seen.push(lines);
    }
    assert_eq!(seen[0], seen[1], "vzrun's cgroups against runc's");

    // A path that is the root itself would put the container in the host's root cgroup,
    // where killing its processes kills the host's: refused, and nothing is left.
    let rt = Runtime::vzrun();
    for root in ["/", "/x/.."] {
        let id = common::unique_id("cgroot");
        rt.track(&id);
        let b = Bundle::with(&["true"], |v| {
            v["linux"]["cgroupsPath"] = json!(root);
        });
        let out = rt.run(&["run", "-b", b.p(), &id]);
        assert_ne!(out.code, 0, "{root}: ran in the root cgroup");
        let msg = out.error_msg();
        assert!(
            msg.contains("linux.cgroupsPath") && msg.contains("root cgroup"),
            "{root}: {msg}"
        );
        assert!(
            common::dir_entries(rt.root.path())
                .iter()
                .all(|e| e == ".vzrun"),
            "{root}: state left: {:?}",
            common::dir_entries(rt.root.path())
        );
        assert!(common::dir_entries(&rt.root.path().join(".vzrun")).is_empty());
    }
}

#[test]
fn a_container_cannot_take_another_ves_cgroup_to_kill_it() {
    require_root!();
    // The victim in a cgroup below a parent of its own; the attacker names the victim's
    // cgroup, then the parent (its processes are in a sub-cgroup), to be killed with it
    // by its own delete --force or failed create.
    let rt = Runtime::vzrun();
    let victim = common::unique_id("cgvictim");
    let parent = format!("/{victim}-p");
    let inner = format!("{parent}/inner");
    rt.track(&victim);
    let b = Bundle::with(&["sleep", "600"], |v| {
        v["linux"]["cgroupsPath"] = json!(inner);
    });
    let o = rt.run(&["run", "-d", "-b", b.p(), &victim]);
    assert_eq!(o.code, 0, "{o:?}");
    for path in [&inner, &parent] {
        let id = common::unique_id("cgthief");
        rt.track(&id);
        let b = Bundle::with(&["sleep", "600"], |v| {
            v["linux"]["cgroupsPath"] = json!(path);
        });
        let o = rt.run(&["run", "-d", "-b", b.p(), &id]);
        assert_ne!(o.code, 0, "{path}: ran in the victim's cgroup");
        assert!(o.error_msg().contains("cgroup is not empty"), "{o:?}");
        let _ = rt.run(&["delete", "--force", &id]);
        assert_eq!(
            rt.status(&victim),
            "running",
            "{path}: the victim was killed"
        );
    }
    assert_eq!(rt.run(&["delete", "--force", &victim]).code, 0);
    for dir in common::cgroups_named(&format!("{victim}-p")) {
        let _ = std::fs::remove_dir(dir.join("inner"));
        let _ = std::fs::remove_dir(dir);
    }
}

/// Everything of a VE that could outlive a killed create, by its ID and address.
fn remains(rt: &Runtime, id: &str, ips: &[&str]) -> Vec<String> {
    let mut left = Vec::new();
    left.extend(
        common::cgroups_named(id)
            .iter()
            .map(|p| format!("cgroup {}", p.display())),
    );
    left.extend(common::disk_leftovers(id));
    left.extend(
        common::mounts_containing(id)
            .into_iter()
            .map(|m| format!("mount {m}")),
    );
    for ip in ips {
        let routes = Command::new("ip")
            .args(["route", "show", ip])
            .output()
            .unwrap();
        if !routes.stdout.is_empty() {
            left.push(format!(
                "route {}",
                String::from_utf8_lossy(&routes.stdout).trim()
            ));
        }
        // Held in the host-wide address registry, whatever link the record names.
        if Path::new("/run/vzrun-addresses").join(ip).exists() {
            left.push(format!("address record /run/vzrun-addresses/{ip}"));
        }
    }
    // A guard chain or set of a host link that is gone (the VE's pair dies with its
    // namespace; its guard must go with its record). A VE of a test running beside this
    // one may be stopped and not yet deleted: its guard outlives its link until its
    // delete, and its address records name that link until then (delete removes the
    // guard first), so a link some record names is not this test's leftover.
    let held: Vec<String> = common::dir_entries(Path::new("/run/vzrun-addresses"))
        .iter()
        .filter_map(|e| std::fs::read_to_string(Path::new("/run/vzrun-addresses").join(e)).ok())
        .map(|h| h.trim().to_string())
        .collect();
    let nft = Command::new("nft")
        .args(["list", "table", "netdev", "vzrun"])
        .output()
        .unwrap();
    for l in String::from_utf8_lossy(&nft.stdout).lines() {
        let l = l.trim();
        let Some(name) = l
            .strip_prefix("chain ")
            .or_else(|| l.strip_prefix("set "))
            .and_then(|r| r.split_whitespace().next())
        else {
            continue;
        };
        let link = name.split_once('_').map_or("", |(_, h)| h);
        if !Path::new("/sys/class/net").join(link).exists() && !held.iter().any(|h| h == link) {
            left.push(format!("guard {name} of a link that is gone"));
        }
    }
    for e in common::dir_entries(&rt.root.path().join(".vzrun")) {
        left.push(format!("state .vzrun/{e}"));
    }
    for e in common::dir_entries(rt.root.path()) {
        if e != ".vzrun" {
            left.push(format!("state {e}"));
        }
    }
    let ps = Command::new("ps")
        .args(["-eo", "pid,args"])
        .output()
        .unwrap();
    for l in String::from_utf8_lossy(&ps.stdout).lines() {
        if l.contains(id) {
            left.push(format!("process {l}"));
        }
    }
    left
}

/// [`remains`] once the kernel has had a moment: it detaches an autoclear loop device in a
/// work item after the last unmount, so one can still be listed just after delete returns.
fn remains_settled(rt: &Runtime, id: &str, ips: &[&str]) -> Vec<String> {
    let mut left = remains(rt, id, ips);
    let _ = common::poll(100, Duration::from_millis(30), || {
        left = remains(rt, id, ips);
        left.is_empty()
    });
    left
}

/// Whether the process `pid` has a child forked by libcontainer (named youki:[…]).
fn has_libcontainer_fork(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().any(|t| {
        std::fs::read_to_string(t.path().join("children"))
            .unwrap_or_default()
            .split_whitespace()
            .any(|c| {
                std::fs::read_to_string(format!("/proc/{c}/comm"))
                    .is_ok_and(|n| n.starts_with("youki:"))
            })
    })
}

#[test]
fn a_create_killed_at_any_point_leaves_nothing_after_delete_force() {
    require_root!();
    let rt = Runtime::vzrun();
    // IPv6 too, so the VE has an nftables guard to leave behind.
    let ips = ["198.51.100.211", "2001:db8::211"];
    let b = Bundle::with(&["sleep", "600"], |v| {
        v["root"]["readonly"] = json!(false);
        v["annotations"] = json!({"io.vzrun.diskspace": "32M", "io.vzrun.net.ip": ips.join(",")});
    });
    // How long one create takes here, to spread the kills over it.
    let id = common::unique_id("kill");
    let t = Instant::now();
    assert_eq!(rt.run(&["create", "-b", b.p(), &id]).code, 0);
    let span = t.elapsed();
    assert_eq!(rt.run(&["delete", "-f", &id]).code, 0);
    let left = remains_settled(&rt, &id, &ips);
    assert!(
        left.is_empty(),
        "a plain create and delete -f left: {left:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(240);
    // 30 kills spread over a create, then 6 at the worst moment: right after libcontainer
    // forked, when its forks go on alone (and the init waits forever for a start) before
    // anything of theirs is recorded; then 6 as soon as the VE holds its address, while
    // its network is half made.
    let held = Path::new("/run/vzrun-addresses").join(ips[0]);
    for i in 0..42u32 {
        let id = common::unique_id("kill");
        let mut cmd = rt.command();
        cmd.args(["create", "-b", b.p(), &id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        let began = Instant::now();
        if i < 30 {
            std::thread::sleep(span * i / 25);
        } else if i < 36 {
            while !has_libcontainer_fork(child.id()) && began.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_micros(200));
            }
        } else {
            while !held.exists() && began.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_micros(100));
            }
        }
        let killed_at = began.elapsed();
        let _ = child.kill();
        let _ = child.wait();
        // delete -f must come back, whatever state the kill left.
        let mut del = rt.command();
        del.args(["delete", "-f", &id]).stdin(Stdio::null());
        let mut del = del
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        loop {
            if let Some(st) = del.try_wait().unwrap() {
                let mut err = String::new();
                let _ = del.stderr.take().unwrap().read_to_string(&mut err);
                assert!(st.success(), "kill {i}: delete -f failed: {err}");
                break;
            }
            if started.elapsed() > Duration::from_secs(20) {
                let _ = del.kill();
                panic!("kill {i}: delete -f hung");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let left = remains_settled(&rt, &id, &ips);
        assert!(left.is_empty(), "kill {i} after {killed_at:?}: {left:?}");
        assert!(Instant::now() < deadline, "42 kills took too long");
    }
}

#[test]
fn a_full_state_root_is_cleaned_by_delete_force() {
    require_root!();
    let rt = Runtime::vzrun();
    let mnt = rt.root.path();
    let mounted = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=256k,mode=0700",
            "vzt-full",
            mnt.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(mounted.success());
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _u = Unmount(mnt.to_path_buf());
    let b = Bundle::busybox(&["sleep", "60"]);
    // Fill the root so that only a few pages are left, then create at several levels
    // of free space: each create may fail at a different step.
    for pages in [0u64, 1, 2, 3, 4, 6] {
        let filler = mnt.join("filler");
        let _ = std::fs::remove_file(&filler);
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        drop(f);
        let size = std::fs::metadata(&filler).unwrap().len();
        let keep = size.saturating_sub(pages * 4096);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&filler)
            .unwrap()
            .set_len(keep)
            .unwrap();
        let id = common::unique_id("full");
        let _ = rt.run(&["create", "-b", b.p(), &id]);
        std::fs::remove_file(&filler).unwrap();
        let o = rt.run(&["delete", "-f", &id]);
        assert_eq!(o.code, 0, "{pages} pages free: {o:?}");
        let left = remains(&rt, &id, &["198.51.100.254"]);
        assert!(left.is_empty(), "{pages} pages free: {left:?}");
        // And the ID can be used again.
        let o = rt.run(&["create", "-b", b.p(), &id]);
        assert_eq!(o.code, 0, "{pages} pages free, then room: {o:?}");
        assert_eq!(rt.run(&["delete", "-f", &id]).code, 0);
    }
}

// ---- #13, the network: addresses, uplinks, MACs and bridges ----
//
// Addresses come from 198.51.100.0/24, 203.0.113.0/24 and 2001:db8::/32 only; the host's
// real interfaces are only read (to find its own address and gateway). Links the tests
// make are named vzt* (the test policy's uplinks and bridges) and removed at drop.

/// A link made by a test in the host's namespace (a bridge: this kernel may lack the
/// dummy module), removed at drop.
struct NetsecLink(String);

impl NetsecLink {
    fn new(tag: &str, kind: &str) -> NetsecLink {
        let name = format!("vzt{tag}{}", std::process::id() % 100_000);
        netsec_sh(&format!(
            "ip link add {name} type {kind} && ip link set {name} up"
        ));
        NetsecLink(name)
    }
}

impl Drop for NetsecLink {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).status();
    }
}

fn netsec_sh(cmd: &str) -> String {
    let o = Command::new("sh").args(["-c", cmd]).output().unwrap();
    assert!(o.status.success(), "{cmd}: {o:?}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn netsec_out(cmd: &str) -> String {
    let o = Command::new("sh").args(["-c", cmd]).output().unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A policy allowing every address, so that only the host's own rules can refuse one.
fn netsec_open_policy() -> Policy {
    Policy::new(
        "[net]\npools = [\"0.0.0.0/0\", \"::/0\"]\nuplinks = [\"vzt*\"]\nbridges = [\"vzt*\"]\n",
    )
}

/// What a refused network setting could have left: the ID's state, a route or a proxy
/// entry for its addresses. (Links, FDB entries and nft tables are host-wide and other
/// tests make and remove theirs concurrently: the tests look at their own bridge.)
fn netsec_leftovers(rt: &Runtime, id: &str, needles: &[&str]) -> Vec<String> {
    let mut left = Vec::new();
    for e in common::dir_entries(&rt.root.path().join(".vzrun")) {
        if e.contains(id) {
            left.push(format!("state .vzrun/{e}"));
        }
    }
    for e in common::dir_entries(rt.root.path()) {
        if e.contains(id) {
            left.push(format!("state {e}"));
        }
    }
    let routes = netsec_out("ip route show; ip -6 route show");
    let proxies = netsec_out("ip neigh show proxy; ip -6 neigh show proxy");
    for n in needles {
        for l in routes.lines().chain(proxies.lines()) {
            // The destination (or proxied address) is the first word of each line.
            let dst = l.split_whitespace().next().unwrap_or_default();
            if dst == *n || dst.starts_with(&format!("{n}/")) {
                left.push(format!("route or proxy entry: {l}"));
            }
        }
    }
    left
}

/// The host's first global IPv4 address and its default gateway, as the host has them.
fn netsec_host_address_and_gateway() -> (Option<String>, Option<String>) {
    let addr = netsec_out("ip -o -4 addr show scope global")
        .lines()
        .filter(|l| !l.contains(" vz"))
        .find_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let i = w.iter().position(|x| *x == "inet")?;
            Some(w.get(i + 1)?.split('/').next()?.to_string())
        });
    let gw = netsec_out("ip -4 route show default")
        .lines()
        .find_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let i = w.iter().position(|x| *x == "via")?;
            Some(w.get(i + 1)?.to_string())
        });
    (addr, gw)
}

#[test]
fn the_hosts_own_gateway_loopback_and_special_addresses_are_refused_for_everyone() {
    require_root!();
    let rt = Runtime::vzrun();
    let open = netsec_open_policy();
    // A subnet connected to the host on a link of the test's own: its address is the
    // host's, the rest of it belongs to that link's LAN.
    let lan = NetsecLink::new("c", "bridge");
    netsec_sh(&format!("ip addr add 203.0.113.185/29 dev {}", lan.0));
    let (host_addr, gateway) = netsec_host_address_and_gateway();
    let mut attacks: Vec<(String, String)> = vec![
        (
            "203.0.113.185".into(),
            format!("is the host's own address on {}", lan.0),
        ),
        (
            "203.0.113.186".into(),
            format!("is in 203.0.113.184/29, connected to the host on {}", lan.0),
        ),
        ("203.0.113.191".into(), "broadcast".into()),
        ("127.0.0.1".into(), "is a loopback address".into()),
        ("169.254.7.7".into(), "is a link-local address".into()),
        ("fe80::7".into(), "is a link-local address".into()),
        ("224.0.0.7".into(), "is a multicast address".into()),
        ("ff02::7".into(), "is a multicast address".into()),
        ("0.0.0.0".into(), "is the unspecified address".into()),
        ("255.255.255.255".into(), "is a broadcast address".into()),
    ];
    if let Some(a) = &host_addr {
        attacks.push((a.clone(), "is the host's own address".into()));
    }
    if let Some(g) = &gateway {
        attacks.push((g.clone(), "is the host's gateway on".into()));
    }
    // A tenant's spec, under a policy that allows any address: the host's rules refuse.
    for (ip, rule) in &attacks {
        let b = Bundle::ve(&["sleep", "60"], json!({"io.vzrun.net.ip": ip}));
        let id = common::unique_id("hostip");
        rt.track(&id);
        let o = run_with_policy(&rt, &open.path(), &["run", "-d", "-b", b.p(), &id]);
        assert_eq!(o.code, 1, "{ip}: {o:?}");
        let msg = o.error_msg();
        assert!(
            msg.contains(&format!("annotation io.vzrun.net.ip: {ip} ")),
            "{ip}: {msg}"
        );
        assert!(
            msg.contains(rule.as_str()),
            "{ip}: expected {rule:?} in {msg}"
        );
        let left = netsec_leftovers(&rt, &id, &[ip]);
        assert!(left.is_empty(), "{ip}: left {left:?}");
    }
    // The VE's own uplink is its LAN: an address there is how venet is meant to work.
    let b = Bundle::ve(
        &["sleep", "60"],
        json!({"io.vzrun.net.ip": "203.0.113.186", "io.vzrun.net.uplink": lan.0}),
    );
    let id = common::unique_id("lanip");
    rt.track(&id);
    let o = rt.run(&["run", "-d", "-b", b.p(), &id]);
    assert_eq!(o.code, 0, "an address on the VE's own uplink: {o:?}");
    assert_eq!(rt.run(&["delete", "-f", &id]).code, 0);
    // `ve set --ipadd` on a running VE is the administrator's: no policy, the same rules.
    let ve = Bundle::ve(
        &["sleep", "600"],
        json!({"io.vzrun.net.ip": "198.51.100.161"}),
    );
    let id = common::unique_id("setip");
    rt.track(&id);
    assert_eq!(rt.run(&["run", "-d", "-b", ve.p(), &id]).code, 0);
    let before = rt.run(&["ve", "show", "--json", &id]).json();
    for (ip, rule) in &attacks {
        let o = rt.run(&["ve", "set", &id, "--ipadd", ip]);
        assert_ne!(o.code, 0, "ve set --ipadd {ip}: {o:?}");
        let msg = o.error_msg();
        // The administrator's command names the VE, then the flag.
        assert!(
            msg.starts_with(&format!("VE {id}: --ipadd: {ip} ")),
            "{ip}: {msg}"
        );
        assert!(
            msg.contains(rule.as_str()),
            "{ip}: expected {rule:?} in {msg}"
        );
        assert_eq!(
            rt.run(&["ve", "show", "--json", &id]).json(),
            before,
            "{ip}"
        );
        let left = netsec_leftovers(&rt, "none-expected", &[ip]);
        assert!(left.is_empty(), "ve set --ipadd {ip}: left {left:?}");
    }
    assert_eq!(rt.run(&["delete", "-f", &id]).code, 0);
}

#[test]
fn another_ves_address_cannot_be_claimed_from_any_state_root() {
    require_root!();
    let owner = Runtime::vzrun();
    let b = Bundle::ve(
        &["sleep", "600"],
        json!({"io.vzrun.net.ip": "198.51.100.171"}),
    );
    let victim = common::unique_id("victim");
    owner.track(&victim);
    assert_eq!(owner.run(&["run", "-d", "-b", b.p(), &victim]).code, 0);
    let route_before = netsec_out("ip route show 198.51.100.171");
    assert!(route_before.contains("dev vz"), "{route_before}");
    // Another state root (another tenant's runtime), by annotation and by ve set.
    let thief = Runtime::vzrun();
    let b2 = Bundle::ve(
        &["sleep", "60"],
        json!({"io.vzrun.net.ip": "198.51.100.171"}),
    );
    let id = common::unique_id("thief");
    thief.track(&id);
    let o = thief.run(&["run", "-d", "-b", b2.p(), &id]);
    assert_eq!(o.code, 1, "{o:?}");
    let msg = o.error_msg();
    assert!(
        msg.contains("annotation io.vzrun.net.ip: 198.51.100.171 is already held by another VE"),
        "{msg}"
    );
    let left = netsec_leftovers(&thief, &id, &["198.51.100.171"]);
    assert_eq!(left.len(), 1, "only the victim's route: {left:?}");
    let b3 = Bundle::ve(
        &["sleep", "600"],
        json!({"io.vzrun.net.ip": "198.51.100.172"}),
    );
    let id = common::unique_id("thief");
    thief.track(&id);
    assert_eq!(thief.run(&["run", "-d", "-b", b3.p(), &id]).code, 0);
    let o = thief.run(&["ve", "set", &id, "--ipadd", "198.51.100.171"]);
    assert_ne!(o.code, 0, "{o:?}");
    assert!(
        o.error_msg()
            .contains("--ipadd: 198.51.100.171 is already held by another VE"),
        "{o:?}"
    );
    // The victim keeps its route and its address.
    assert_eq!(netsec_out("ip route show 198.51.100.171"), route_before);
    let inside = thief.run(&["exec", &id, "ip", "-o", "addr"]).stdout;
    assert!(!inside.contains("198.51.100.171"), "{inside}");
    assert_eq!(thief.run(&["delete", "-f", &id]).code, 0);
    assert_eq!(owner.run(&["delete", "-f", &victim]).code, 0);
}

#[test]
fn a_ve_cannot_take_another_ves_mac_on_a_shared_bridge() {
    require_root!();
    let rt = Runtime::vzrun();
    let br = NetsecLink::new("m", "bridge");
    let veth = |ip: &str, mac: &str| json!({"io.vzrun.net.mode": "veth", "io.vzrun.net.bridge": br.0, "io.vzrun.net.ip": ip, "io.vzrun.net.mac": mac});
    let start = |tag: &str, ann: Value| -> (String, Bundle) {
        let b = Bundle::ve(&["sleep", "600"], ann);
        let id = common::unique_id(tag);
        rt.track(&id);
        let o = rt.run(&["run", "-d", "-b", b.p(), &id]);
        assert_eq!(o.code, 0, "{tag}: {o:?}");
        (id, b)
    };
    let victim_mac = "02:00:5e:00:13:11";
    let (victim, _vb) = start("macv", veth("203.0.113.141/24", victim_mac));
    let (peer, _pb) = start("macp", veth("203.0.113.143/24", "02:00:5e:00:13:13"));
    // The pinned (static) entries: learned ones come and go with the VEs' traffic.
    let fdb = || {
        netsec_out(&format!("bridge fdb show br {}", br.0))
            .lines()
            .filter(|l| l.contains(" static"))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    };
    let fdb_before = fdb();
    let bridge_mac = netsec_out(&format!("cat /sys/class/net/{}/address", br.0));
    for (mac, words) in [
        (victim_mac, "is already in use on the bridge"),
        (bridge_mac.trim(), "is already in use on the bridge"),
        ("00:00:00:00:00:00", "all-zero"),
        ("01:00:5e:00:00:01", "multicast"),
    ] {
        let b = Bundle::ve(&["sleep", "60"], veth("203.0.113.142/24", mac));
        let id = common::unique_id("macthief");
        rt.track(&id);
        let o = rt.run(&["run", "-d", "-b", b.p(), &id]);
        assert_eq!(o.code, 1, "{mac}: {o:?}");
        let msg = o.error_msg();
        assert!(
            msg.contains("io.vzrun.net.mac") && msg.contains(words),
            "{mac}: {msg}"
        );
        let left = netsec_leftovers(&rt, &id, &[]);
        assert!(left.is_empty(), "{mac}: {left:?}");
        assert_eq!(
            fdb(),
            fdb_before,
            "{mac}: the bridge's pinned entries changed"
        );
        let ports = netsec_out(&format!("ip -o link show master {}", br.0));
        assert_eq!(ports.lines().count(), 2, "{mac}: ports {ports}");
    }
    // The victim's MAC is still pinned to one port, and its traffic still reaches it.
    let pinned: Vec<&str> = fdb_before
        .lines()
        .filter(|l| l.starts_with(victim_mac) && l.contains("static"))
        .collect();
    assert_eq!(pinned.len(), 1, "{fdb_before}");
    let o = rt.run(&["exec", &peer, "ping", "-c", "2", "-W", "2", "203.0.113.141"]);
    assert_eq!(
        o.code, 0,
        "the victim no longer receives its traffic: {o:?}"
    );
    for id in [&victim, &peer] {
        assert_eq!(rt.run(&["delete", "-f", id]).code, 0);
    }
}

#[test]
fn an_uplinks_proxy_ndp_is_restored_when_the_ve_is_gone() {
    require_root!();
    let rt = Runtime::vzrun();
    let up = NetsecLink::new("u", "bridge");
    let knob = format!("/proc/sys/net/ipv6/conf/{}/proxy_ndp", up.0);
    let read = || std::fs::read_to_string(&knob).unwrap().trim().to_string();
    assert_eq!(read(), "0");
    let ann =
        json!({"io.vzrun.net.ip": "198.51.100.181,2001:db8::181", "io.vzrun.net.uplink": up.0});
    let b = Bundle::ve(&["sleep", "600"], ann.clone());
    let id = common::unique_id("ndp");
    rt.track(&id);
    assert_eq!(rt.run(&["run", "-d", "-b", b.p(), &id]).code, 0);
    assert_eq!(read(), "1", "IPv6 on the uplink needs proxy_ndp");
    let proxies = netsec_out(&format!("ip -6 neigh show proxy dev {}", up.0));
    assert!(proxies.contains("2001:db8::181"), "{proxies}");
    assert_eq!(rt.run(&["delete", "-f", &id]).code, 0);
    assert_eq!(
        read(),
        "0",
        "vzrun turned it on, and no VE needs it any more"
    );
    let left = netsec_leftovers(&rt, &id, &["198.51.100.181", "2001:db8::181"]);
    assert!(left.is_empty(), "{left:?}");
    // A switch the administrator turned on stays on.
    std::fs::write(&knob, "1").unwrap();
    let id = common::unique_id("ndp");
    rt.track(&id);
    assert_eq!(rt.run(&["run", "-d", "-b", b.p(), &id]).code, 0);
    assert_eq!(rt.run(&["delete", "-f", &id]).code, 0);
    assert_eq!(read(), "1", "the administrator's proxy_ndp was turned off");
}

/// A veth VE's address leaves no route on the host: the attack is a second VE, of either
/// mode and from another state root, given the same address as a veth VE on the bridge.
/// Both guards would then let that source through, and the second VE takes the first's
/// traffic.
#[test]
fn a_veth_ves_address_cannot_be_taken_by_another_ve_of_any_mode() {
    require_root!();
    let owner = Runtime::vzrun();
    let br = NetsecLink::new("dup", "bridge");
    let veth = |ip: &str| json!({"io.vzrun.net.mode": "veth", "io.vzrun.net.bridge": br.0, "io.vzrun.net.ip": ip});
    let b = Bundle::ve(
        &["sleep", "600"],
        veth("203.0.113.151/24,2001:db8:151::1/64"),
    );
    let victim = common::unique_id("dupv");
    owner.track(&victim);
    let o = owner.run(&["run", "-d", "-b", b.p(), &victim]);
    assert_eq!(o.code, 0, "{o:?}");
    let thief = Runtime::vzrun();
    for (tag, ann, ip) in [
        ("dupveth", veth("203.0.113.151/24"), "203.0.113.151"),
        (
            "dupvenet",
            json!({"io.vzrun.net.ip": "2001:db8:151::1"}),
            "2001:db8:151::1",
        ),
    ] {
        let b = Bundle::ve(&["sleep", "60"], ann);
        let id = common::unique_id(tag);
        thief.track(&id);
        let o = thief.run(&["run", "-d", "-b", b.p(), &id]);
        assert_eq!(o.code, 1, "{tag}: {o:?}");
        let msg = o.error_msg();
        assert!(
            msg.contains(&format!(
                "annotation io.vzrun.net.ip: {ip} is already held by another VE"
            )),
            "{tag}: {msg}"
        );
        let left = netsec_leftovers(&thief, &id, &[ip]);
        assert!(left.is_empty(), "{tag}: {left:?}");
    }
    // Nor by ve set on a VE of its own.
    let b = Bundle::ve(&["sleep", "600"], veth("203.0.113.152/24"));
    let id = common::unique_id("dupset");
    thief.track(&id);
    assert_eq!(thief.run(&["run", "-d", "-b", b.p(), &id]).code, 0);
    let o = thief.run(&["ve", "set", &id, "--ipadd", "203.0.113.151/24"]);
    assert_ne!(o.code, 0, "{o:?}");
    assert!(
        o.error_msg()
            .contains("203.0.113.151 is already held by another VE"),
        "{o:?}"
    );
    // Once the owner is gone, the address is free again.
    assert_eq!(owner.run(&["delete", "-f", &victim]).code, 0);
    let o = thief.run(&["ve", "set", &id, "--ipadd", "203.0.113.151/24"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(thief.run(&["delete", "-f", &id]).code, 0);
}

/// While CRIU restores a VE its link is down. The attack is another VE taking the
/// address in that window (the restore is stopped there to make the window wide): it
/// used to succeed, and the restored VE came up silently unrouted. The restoring VE
/// holds its address from the moment its link exists, so the other create is refused
/// and the restore ends with its own route.
#[test]
fn no_ve_takes_an_address_while_its_owner_is_being_restored() {
    require_root!();
    require_criu!();
    let rt = Runtime::vzrun();
    let ann = json!({"io.vzrun.net.ip": "198.51.100.173"});
    let b = Bundle::ve(&["sleep", "600"], ann.clone());
    let id = common::unique_id("rsto");
    rt.track(&id);
    assert_eq!(rt.run(&["run", "-d", "-b", b.p(), &id]).code, 0);
    let dir = tempfile::Builder::new()
        .prefix("vzt-ckpt-")
        .tempdir()
        .unwrap();
    let img = dir.path().join("img");
    let o = rt.run(&["checkpoint", "--image-path", img.to_str().unwrap(), &id]);
    assert_eq!(o.code, 0, "{o:?}");
    let links = || -> Vec<String> {
        common::dir_entries(Path::new("/sys/class/net"))
            .into_iter()
            .filter(|l| l.starts_with("vz") && l.len() == 12)
            .collect()
    };
    let before = links();
    let mut restore = common::Started::new(
        rt.command()
            .args(["restore", "-d", "--image-path", img.to_str().unwrap()])
            .args(["--bundle", b.p(), &id])
            .stdin(Stdio::null()),
    );
    let pid = nix::unistd::Pid::from_raw(restore.child.id() as i32);
    // The restore's host end appears, down, before CRIU starts, and takes the address;
    // stop vzrun there.
    let deadline = Instant::now() + Duration::from_secs(20);
    let held = Path::new("/run/vzrun-addresses/198.51.100.173");
    let link = loop {
        let new = links().into_iter().find(|l| !before.contains(l));
        if let Some(l) = new.filter(|l| std::fs::read_to_string(held).is_ok_and(|h| h == *l)) {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::SIGSTOP);
            break l;
        }
        assert!(
            Instant::now() < deadline,
            "the restore made no host link holding its address"
        );
        std::thread::sleep(Duration::from_millis(1));
    };
    let flags = std::fs::read_to_string(format!("/sys/class/net/{link}/flags")).unwrap_or_default();
    let up = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).unwrap_or(0) & 1 == 1;
    let other = Runtime::vzrun();
    let b2 = Bundle::ve(&["sleep", "600"], ann);
    let taker = common::unique_id("rstt");
    other.track(&taker);
    let took = other.run(&["run", "-d", "-b", b2.p(), &taker]);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::SIGCONT);
    let code = restore.child.wait().map_or(-1, |s| s.code().unwrap_or(-1));
    let o = restore.output(code);
    assert!(
        !up,
        "the restore's link was up already: the window was missed"
    );
    assert_eq!(
        took.code, 1,
        "another VE took the address mid-restore: {took:?}"
    );
    assert!(
        took.error_msg()
            .contains("198.51.100.173 is already held by another VE"),
        "{took:?}"
    );
    let left = netsec_leftovers(&other, &taker, &[]);
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(o.code, 0, "{o:?}");
    let route = netsec_out("ip route show 198.51.100.173");
    assert!(route.contains(&format!("dev {link}")), "{route}");
    assert_eq!(rt.run(&["delete", "-f", &id]).code, 0);
}

/// Two tenant asks a policy without the rule must not get: a whole pool of addresses for
/// one VE (each a host route, a guard element and a claim), and the namespaced sysctls
/// (kernel.shm*, kernel.msg*, net.* limits Kubernetes counts as unsafe). Each is refused
/// by name, with the rule, and leaves nothing.
#[test]
fn a_spec_cannot_take_a_pool_or_open_sysctls_the_policy_does_not_give() {
    require_root!();
    let rt = Runtime::vzrun();
    let open = netsec_open_policy();
    let many: Vec<String> = (1..=17).map(|i| format!("203.0.113.{}", 200 + i)).collect();
    for (tag, ann, key, rule) in [
        (
            "pool",
            json!({"io.vzrun.net.ip": many.join(",")}),
            "io.vzrun.net.ip",
            "17 addresses, above the default maximum 16",
        ),
        (
            "sysctl",
            json!({"io.vzrun.sysctl": "namespaced"}),
            "io.vzrun.sysctl",
            "has no sysctl.namespaced rule",
        ),
    ] {
        let b = Bundle::ve(&["true"], ann);
        let id = common::unique_id(tag);
        rt.track(&id);
        let o = run_with_policy(&rt, &open.path(), &["run", "-b", b.p(), &id]);
        assert_eq!(o.code, 1, "{tag}: {o:?}");
        let msg = o.error_msg();
        assert!(msg.contains(key) && msg.contains(rule), "{tag}: {msg}");
        let left = netsec_leftovers(&rt, &id, &["203.0.113.201"]);
        assert!(left.is_empty(), "{tag}: {left:?}");
    }
}

/// libcontainer looked a missing HOME up with getpwuid_r inside the VE, so glibc
/// followed the VE's nsswitch.conf and loaded the NSS module it named into vzrun (the
/// tenant's code ran in every exec, with vzrun's descriptors and its channel to the
/// host side), and a FIFO as /etc/passwd hung every exec. vzrun reads passwd itself,
/// regular files only.
#[test]
fn a_ves_passwd_or_nss_config_cannot_hang_or_enter_vzrun_exec() {
    require_root!();
    let rt = Runtime::vzrun();
    let ve = home_after(
        &rt,
        "nss",
        "printf 'passwd: files\\n' > /etc/nsswitch.conf && rm /etc/passwd && mkfifo /etc/passwd",
    );
    assert_eq!(rt.run(&["delete", "-f", &ve.id]).code, 0);
}

/// A writable VE whose tenant ran `script`; an exec in it must then come back, with HOME
/// `/` (what runc gives when passwd names nobody).
fn home_after<'a>(rt: &'a Runtime, tag: &str, script: &str) -> common::Ve<'a> {
    let ve = common::Ve::start_writable(rt, tag);
    let o = rt.run(&["exec", &ve.id, "sh", "-c", script]);
    assert_eq!(o.code, 0, "{o:?}");
    let o = rt.run_deadlined(
        &["exec", &ve.id, "sh", "-c", "echo $HOME"],
        Duration::from_secs(20),
    );
    assert_eq!(o.code, 0, "exec hung on the VE's files or failed: {o:?}");
    assert_eq!(o.stdout.trim(), "/");
    ve
}

/// vzrun reads the VE's passwd (for HOME) and resolv.conf as host root: a link from either
/// to the VE's /proc/kmsg, a regular file whose read waits for the kernel's next message,
/// hung exec (and, through its lock, state, kill and delete) and ve set. Only a file on
/// the VE's root filesystem is read.
#[test]
fn a_link_to_the_ves_proc_cannot_hang_exec_or_ve_set() {
    require_root!();
    let rt = Runtime::vzrun();
    let ve = home_after(
        &rt,
        "kmsg",
        "ln -sf /proc/kmsg /etc/passwd && ln -sf /proc/kmsg /etc/resolv.conf",
    );
    let id = ve.id.clone();
    let o = rt.run_deadlined(
        &["ve", "set", &id, "--nameserver", "198.51.100.53"],
        Duration::from_secs(20),
    );
    assert_eq!(o.code, 1, "ve set hung on /proc/kmsg or took it: {o:?}");
    assert!(o.error_msg().contains("another mount"), "{o:?}");
    assert_eq!(rt.run(&["delete", "-f", &id]).code, 0);
}
