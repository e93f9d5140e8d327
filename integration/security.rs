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
    let o = Command::new("sha256sum").arg(p).output().expect("sha256sum");
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
        assert!(o.error_msg().contains(&format!("io.vzrun.hooks.{point}")), "{o:?}");
    }
    // A name is only what the administrator lists.
    let p = Policy::new("[hooks]\nnames = [\"backup\"]\n");
    let b = Bundle::ve(&["sleep", "60"], json!({"io.vzrun.hooks.post-restore": "notify"}));
    let id = common::unique_id("hook");
    rt.track(&id);
    let o = run_with_policy(&rt, &p.path(), &["run", "-d", "-b", b.p(), &id]);
    assert_eq!(o.code, 1, "{o:?}");
    let msg = o.error_msg();
    assert!(msg.contains("io.vzrun.hooks.post-restore=\"notify\""), "{msg}");
    assert!(msg.contains("line 2: hooks.names"), "{msg}");
    assert!(!marker.exists(), "a host command ran");
}

#[test]
fn a_container_cannot_write_the_runtime_binary_through_proc_exe() {
    require_root!();
    // The runtime under attack is a copy: if the attack worked, only the copy breaks.
    let bin_dir = tempfile::Builder::new().prefix("vzt-bin-").tempdir().unwrap();
    let bin = bin_dir.path().join("vzrun");
    std::fs::copy(common::VZRUN, &bin).unwrap();
    let before = file_hash(&bin);
    let rt = Runtime::with_binary(&bin);
    let b = Bundle::busybox(&["sleep", "60"]);
    let id = common::unique_id("exe");
    rt.track(&id);
    // Created, not started: the init waits inside the runtime's code, as an exec'd
    // process does until it runs its program.
    assert_eq!(rt.run(&["create", "-b", b.p(), &id]).code, 0);
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    let exe = PathBuf::from(format!("/proc/{pid}/exe"));
    let target = std::fs::read_link(&exe).unwrap();
    assert!(
        target.to_string_lossy().contains("memfd:vzrun"),
        "the init runs the host binary: {target:?}"
    );
    // The attack: open it now, wait for the runtime to be gone, write through the
    // descriptor.
    let held = std::fs::File::open(&exe).expect("open /proc/PID/exe for reading");
    assert!(std::fs::OpenOptions::new().write(true).open(&exe).is_err());
    assert_eq!(rt.run(&["delete", "-f", &id]).code, 0);
    let via_fd = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&held));
    let wrote = std::fs::OpenOptions::new()
        .write(true)
        .open(&via_fd)
        .and_then(|mut f| f.write_all(b"#!/bin/sh\nid > /tmp/vzt-owned\n"));
    assert!(wrote.is_err(), "the runtime's code was writable");
    assert_eq!(file_hash(&bin), before, "the host binary changed");
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
    let inside = tempfile::Builder::new().prefix("vzt-img-").tempdir().unwrap();
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
        (&not_ext4, "not an ext4 image", "an existing file that is no image"),
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
    let o = run_with_policy(&rt, "/nonexistent/vzt/policy.toml", &["run", "-d", "-b", b.p(), &id]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.error_msg().contains("named images are not allowed"), "{o:?}");
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
    assert!(msg.contains("io.vzrun.net.ip=\"192.0.2.77\": outside the address pools"), "{msg}");
    assert!(msg.contains("net.pools"), "{msg}");
    let routes = Command::new("ip").args(["route", "show", "192.0.2.77"]).output().unwrap();
    assert!(routes.stdout.is_empty(), "routed: {routes:?}");
    // Without a policy no address may be claimed.
    let b = Bundle::ve(&["sleep", "60"], json!({"io.vzrun.net.ip": "198.51.100.77"}));
    let id = common::unique_id("pool");
    rt.track(&id);
    let o = run_with_policy(&rt, "/nonexistent/vzt/policy.toml", &["run", "-d", "-b", b.p(), &id]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.error_msg().contains("no host policy at /nonexistent/vzt/policy.toml"), "{o:?}");
    // A broken policy is an error that names its line, not a fallback.
    let p = Policy::new("[net]\npools = [\"198.51.100.0/24\"\n");
    let o = run_with_policy(&rt, &p.path(), &["run", "-d", "-b", b.p(), &id]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.error_msg().contains("line 2"), "{o:?}");
}

#[test]
fn a_host_user_finds_no_setuid_path_into_a_ve() {
    require_root!();
    if !common::have("setpriv") {
        eprintln!("SKIP: setpriv (util-linux) is missing");
        return;
    }
    let rt = Runtime::vzrun();
    let b = Bundle::with(&["sleep", "600"], |v| {
        v["root"]["readonly"] = json!(false);
        v["annotations"] = json!({"io.vzrun.diskspace": "32M"});
    });
    let id = common::unique_id("suid");
    rt.track(&id);
    assert_eq!(rt.run(&["run", "-d", "-b", b.p(), &id]).code, 0);
    let o = rt.run(&["exec", &id, "sh", "-c", "cp /bin/busybox /suid && chmod 4755 /suid"]);
    assert_eq!(o.code, 0, "{o:?}");
    let ve_dir = rt.root.path().join(".vzrun").join(&id);
    let suid_paths = [ve_dir.join("rootfs/suid"), ve_dir.join("private/upper/suid")];
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
    for d in [rt.root.path().to_path_buf(), rt.root.path().join(".vzrun"), ve_dir.clone()] {
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{d:?}");
    }
    let mounts = common::mounts_containing(&format!("{}/private", ve_dir.display()));
    assert!(
        mounts.iter().all(|m| m.contains("nosuid") && m.contains("nodev")),
        "{mounts:?}"
    );
    for img in common::disk_leftovers(&id) {
        if let Ok(m) = std::fs::metadata(&img) {
            assert_eq!(m.permissions().mode() & 0o077, 0, "{img} is readable by others");
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
                .filter(|n| n["type"] != "uts")
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

#[test]
fn a_cwd_link_in_the_image_never_makes_a_host_directory() {
    require_root!();
    let rt = Runtime::vzrun();
    let host_dir = tempfile::Builder::new().prefix("vzt-hostdir-").tempdir().unwrap();
    let rootfs = tempfile::Builder::new().prefix("vzt-rootfs-").tempdir().unwrap();
    std::fs::create_dir_all(rootfs.path().join("bin")).unwrap();
    std::fs::copy(common::rootfs().join("bin/busybox"), rootfs.path().join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", rootfs.path().join("bin/sh")).unwrap();
    for d in ["proc", "dev", "sys"] {
        std::fs::create_dir(rootfs.path().join(d)).unwrap();
    }
    std::os::unix::fs::symlink(host_dir.path(), rootfs.path().join("work")).unwrap();
    let b = Bundle::with(&["/bin/sh", "-c", "pwd"], |v| {
        v["root"] = json!({"path": rootfs.path(), "readonly": false});
        v["process"]["cwd"] = json!("/work/sub");
    });
    let id = common::unique_id("cwd");
    rt.track(&id);
    let _ = rt.run(&["run", "-b", b.p(), &id]);
    assert!(!host_dir.path().join("sub").exists(), "made a directory on the host");
}

/// Everything of a VE that could outlive a killed create, by its ID and address.
fn remains(rt: &Runtime, id: &str, ip: &str) -> Vec<String> {
    let mut left = Vec::new();
    left.extend(common::cgroups_named(id).iter().map(|p| format!("cgroup {}", p.display())));
    left.extend(common::disk_leftovers(id));
    left.extend(common::mounts_containing(id).into_iter().map(|m| format!("mount {m}")));
    let routes = Command::new("ip").args(["route", "show", ip]).output().unwrap();
    if !routes.stdout.is_empty() {
        left.push(format!("route {}", String::from_utf8_lossy(&routes.stdout).trim()));
    }
    for e in common::dir_entries(&rt.root.path().join(".vzrun")) {
        left.push(format!("state .vzrun/{e}"));
    }
    for e in common::dir_entries(rt.root.path()) {
        if e != ".vzrun" {
            left.push(format!("state {e}"));
        }
    }
    let ps = Command::new("ps").args(["-eo", "pid,args"]).output().unwrap();
    for l in String::from_utf8_lossy(&ps.stdout).lines() {
        if l.contains(id) {
            left.push(format!("process {l}"));
        }
    }
    left
}

#[test]
fn a_create_killed_at_any_point_leaves_nothing_after_delete_force() {
    require_root!();
    let rt = Runtime::vzrun();
    let ip = "198.51.100.211";
    let b = Bundle::with(&["sleep", "600"], |v| {
        v["root"]["readonly"] = json!(false);
        v["annotations"] = json!({"io.vzrun.diskspace": "32M", "io.vzrun.net.ip": ip});
    });
    // How long one create takes here, to spread the kills over it.
    let id = common::unique_id("kill");
    let t = Instant::now();
    assert_eq!(rt.run(&["create", "-b", b.p(), &id]).code, 0);
    let span = t.elapsed();
    assert_eq!(rt.run(&["delete", "-f", &id]).code, 0);
    assert!(remains(&rt, &id, ip).is_empty());
    let deadline = Instant::now() + Duration::from_secs(240);
    for i in 0..30u32 {
        let id = common::unique_id("kill");
        let mut cmd = rt.command();
        cmd.args(["create", "-b", b.p(), &id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        std::thread::sleep(span * i / 25);
        let _ = child.kill();
        let _ = child.wait();
        // delete -f must come back, whatever state the kill left.
        let mut del = rt.command();
        del.args(["delete", "-f", &id]).stdin(Stdio::null());
        let mut del = del.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
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
        let left = remains(&rt, &id, ip);
        assert!(left.is_empty(), "kill {i} after {:?}: {left:?}", span * i / 25);
        assert!(Instant::now() < deadline, "30 kills took too long");
    }
}

#[test]
fn a_full_state_root_is_cleaned_by_delete_force() {
    require_root!();
    let rt = Runtime::vzrun();
    let mnt = rt.root.path();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k,mode=0700", "vzt-full", mnt.to_str().unwrap()])
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
        std::fs::OpenOptions::new().write(true).open(&filler).unwrap().set_len(keep).unwrap();
        let id = common::unique_id("full");
        let _ = rt.run(&["create", "-b", b.p(), &id]);
        std::fs::remove_file(&filler).unwrap();
        let o = rt.run(&["delete", "-f", &id]);
        assert_eq!(o.code, 0, "{pages} pages free: {o:?}");
        let left = remains(&rt, &id, "198.51.100.254");
        assert!(left.is_empty(), "{pages} pages free: {left:?}");
        // And the ID can be used again.
        let o = rt.run(&["create", "-b", b.p(), &id]);
        assert_eq!(o.code, 0, "{pages} pages free, then room: {o:?}");
        assert_eq!(rt.run(&["delete", "-f", &id]).code, 0);
    }
}
