//! Checkpoint and restore with real CRIU: a counter that continues, the VE an ordinary
//! container afterwards (also under a new ID), a TCP connection from a client namespace
//! that survives with --tcp-established, addresses/routes/limits equal before and after,
//! action scripts in order with their state, failing scripts, a failed restore that
//! leaves nothing, and runc doing the same where it can. Addresses: 203.0.113.160-191.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Bundle, Runtime};
use serde_json::json;

/// A shell loop whose counter lives in the shell (a restarted process would count from
/// 1 again), written to tmpfs so the test can read it. Its stdio is the VE's own
/// /dev/null: the test harness hands it host files, which no runtime can checkpoint.
const COUNTER: &str = "exec </dev/null >/dev/null 2>&1; i=0; \
     while true; do i=$((i+1)); echo $i > /dev/shm/count; sleep 0.05; done";

fn count(rt: &Runtime, id: &str) -> u64 {
    let o = rt.run(&["exec", id, "cat", "/dev/shm/count"]);
    assert_eq!(o.code, 0, "{} exec {id}: {o:?}", rt.name);
    o.stdout.trim().parse().unwrap_or(0)
}

fn images() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("vzt-ckpt-")
        .tempdir()
        .unwrap()
}

fn checkpoint(rt: &Runtime, id: &str, dir: &Path, extra: &[&str]) -> common::Out {
    let img = dir.join("img");
    let work = dir.join("work");
    let mut args = vec![
        "checkpoint",
        "--image-path",
        img.to_str().unwrap(),
        "--work-path",
        work.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args.push(id);
    rt.run(&args)
}

fn restore(rt: &Runtime, id: &str, b: &Bundle, dir: &Path, extra: &[&str]) -> common::Out {
    let img = dir.join("img");
    let work = dir.join("rwork");
    let mut args = vec![
        "restore",
        "-d",
        "--image-path",
        img.to_str().unwrap(),
        "--work-path",
        work.to_str().unwrap(),
        "--bundle",
        b.p(),
    ];
    args.extend_from_slice(extra);
    args.push(id);
    rt.track(id);
    rt.run(&args)
}

/// Checkpoint, restore and what a user does afterwards, the same with runc and vzrun.
fn counter_round_trip(rt: &Runtime) {
    let b = Bundle::ve(&["sh", "-c", COUNTER], json!({}));
    let id = common::unique_id("cnt");
    rt.track(&id);
    let o = rt.run(&["run", "-d", "-b", b.p(), &id]);
    assert_eq!(o.code, 0, "{o:?}");
    std::thread::sleep(Duration::from_millis(800));
    let cgroups = cgroup_mounts(rt, &id);
    let dir = images();
    let o = checkpoint(rt, &id, dir.path(), &[]);
    assert_eq!(o.code, 0, "{} checkpoint: {o:?}", rt.name);
    assert_ne!(rt.run(&["state", &id]).code, 0, "{}: still there", rt.name);
    let before = count_in_image(dir.path());
    let o = restore(rt, &id, &b, dir.path(), &[]);
    assert_eq!(o.code, 0, "{} restore: {o:?}", rt.name);
    assert_eq!(rt.status(&id), "running");
    // Its own cgroup of each hierarchy again, not the host's whole hierarchies, which
    // would show it every cgroup on the host. runc 1.1.5 binds the host's mount points
    // after a restore: a difference kept on purpose.
    let restored = cgroup_mounts(rt, &id);
    assert_eq!(
        restored == cgroups,
        rt.name == "vzrun" || cgroups.is_empty(),
        "{}: cgroup mounts {restored:?} against {cgroups:?} before",
        rt.name
    );
    std::thread::sleep(Duration::from_millis(300));
    let after = count(rt, &id);
    assert!(
        after > before && before > 3,
        "{}: counter went from {before} to {after}",
        rt.name
    );

    // Its own network namespace with loopback up, as after create. (runc 1.1.5 restores
    // into an empty namespace and leaves loopback down: a difference kept on purpose.)
    let o = rt.run(&["exec", &id, "ip", "-o", "link", "show", "lo"]);
    assert_eq!(
        o.stdout.contains(",UP"),
        rt.name == "vzrun",
        "{}: {o:?}",
        rt.name
    );

    // An ordinary container again.
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    let ps = rt.run(&["ps", "--format", "json", &id]).json();
    assert!(ps.as_array().unwrap().contains(&json!(pid)), "{ps}");
    assert_eq!(rt.run(&["pause", &id]).code, 0);
    assert_eq!(rt.status(&id), "paused");
    assert_eq!(rt.run(&["resume", &id]).code, 0);
    assert_eq!(rt.run(&["update", "--pids-limit", "50", &id]).code, 0);
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(cg.contains(&id), "{}: not in its cgroup: {cg}", rt.name);

    // --leave-running, then the same image under a new ID beside the original.
    let dir2 = images();
    let o = checkpoint(rt, &id, dir2.path(), &["--leave-running"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(rt.status(&id), "running");
    let c1 = count(rt, &id);
    assert!(
        common::poll(100, Duration::from_millis(50), || count(rt, &id) > c1),
        "{}: left frozen",
        rt.name
    );
    let id2 = common::unique_id("cnt2");
    let o = restore(rt, &id2, &b, dir2.path(), &[]);
    assert_eq!(o.code, 0, "{} restore as new ID: {o:?}", rt.name);
    assert_eq!(rt.status(&id2), "running");
    assert_ne!(rt.state(&id2)["pid"], rt.state(&id)["pid"]);
    // Under its new ID it sees its own cgroups, not those of the VE it was dumped from.
    if rt.name == "vzrun" {
        let own: Vec<String> = cgroups.iter().map(|m| m.replace(&id, &id2)).collect();
        assert_eq!(cgroup_mounts(rt, &id2), own, "cgroup mounts under a new ID");
    }
    for i in [&id, &id2] {
        assert_eq!(rt.run(&["kill", i, "KILL"]).code, 0);
        assert!(rt.wait_status(i, "stopped"), "{} {i}", rt.name);
        assert_eq!(rt.run(&["delete", i]).code, 0);
    }
}

/// The VE's cgroup v1 mounts as "mount point, root in the hierarchy", as the VE sees them
/// (none on a pure cgroup v2 host).
fn cgroup_mounts(rt: &Runtime, id: &str) -> Vec<String> {
    let o = rt.run(&["exec", id, "cat", "/proc/self/mountinfo"]);
    assert_eq!(o.code, 0, "{} exec {id}: {o:?}", rt.name);
    o.stdout
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let dash = f.iter().position(|x| *x == "-")?;
            (f.get(dash + 1) == Some(&"cgroup")).then(|| format!("{} {}", f[4], f[3]))
        })
        .collect()
}

/// The counter value the image holds (the tmpfs file as CRIU saved it).
fn count_in_image(dir: &Path) -> u64 {
    // The tmpfs contents are a tar inside the image; the number is its only text.
    let mut best = 0;
    for e in std::fs::read_dir(dir.join("img")).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.starts_with("tmpfs-dev") {
            continue;
        }
        let out = Command::new("tar")
            .args(["-xzOf", e.path().to_str().unwrap(), "./count"])
            .output()
            .unwrap();
        if let Ok(n) = String::from_utf8_lossy(&out.stdout).trim().parse::<u64>() {
            best = best.max(n);
        }
    }
    best
}

#[test]
fn counter_continues_and_the_restored_ve_is_ordinary() {
    require_criu!();
    counter_round_trip(&Runtime::vzrun());
}

#[test]
fn runc_does_the_same_with_the_same_criu() {
    require_criu!();
    counter_round_trip(&Runtime::runc());
}

fn cgroup_file(pid: i64, controller: &str, file: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for line in text.lines() {
        let parts: Vec<&str> = line.splitn(3, ':').collect();
        if parts[1].split(',').any(|c| c == controller) || (parts[0] == "0" && parts[1].is_empty())
        {
            let base = if parts[0] == "0" {
                PathBuf::from("/sys/fs/cgroup")
            } else {
                PathBuf::from("/sys/fs/cgroup").join(controller)
            };
            let p = base.join(parts[2].trim_start_matches('/')).join(file);
            if let Ok(v) = std::fs::read_to_string(&p) {
                return v.trim().to_string();
            }
        }
    }
    String::new()
}

/// A network namespace made by the test, wired to the host by a veth pair, as a client
/// host would be. Removed on drop.
struct ClientNs {
    name: String,
    host_if: String,
}

impl ClientNs {
    fn new(addr: &str, tag: &str) -> ClientNs {
        let name = format!("vztc-{tag}-{}", std::process::id());
        let host_if = format!("vztc{tag}{}", std::process::id() % 100000);
        let ns = ClientNs {
            name: name.clone(),
            host_if: host_if.clone(),
        };
        let sh = |cmd: String| {
            let o = Command::new("sh").args(["-c", &cmd]).output().unwrap();
            assert!(o.status.success(), "{cmd}: {o:?}");
        };
        sh(format!("ip netns add {name}"));
        sh(format!(
            "ip link add {host_if} type veth peer name eth0 netns {name} && ip link set {host_if} up"
        ));
        sh(format!(
            "ip -n {name} link set lo up && ip -n {name} link set eth0 up && \
             ip -n {name} addr add {addr}/32 dev eth0 && \
             ip -n {name} route add 169.254.0.1 dev eth0 && \
             ip -n {name} route add default via 169.254.0.1 dev eth0 onlink"
        ));
        sh(format!(
            "ip route add {addr}/32 dev {host_if} && \
             echo 1 > /proc/sys/net/ipv4/conf/{host_if}/proxy_arp && \
             echo 1 > /proc/sys/net/ipv4/conf/{host_if}/forwarding"
        ));
        ns
    }

    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.name))
    }
}

impl Drop for ClientNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A TCP connection made from a thread inside `ns`.
fn connect_in(ns: &Path, addr: &str) -> std::net::TcpStream {
    let f = std::fs::File::open(ns).unwrap();
    let addr = addr.to_string();
    std::thread::spawn(move || {
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let mut last = None;
        for _ in 0..50 {
            match std::net::TcpStream::connect_timeout(
                &addr.parse().unwrap(),
                Duration::from_secs(2),
            ) {
                Ok(s) => return s,
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("connect {addr}: {last:?}");
    })
    .join()
    .unwrap()
}

fn echo(s: &mut std::net::TcpStream, msg: &str) -> String {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(msg.as_bytes()).unwrap();
    let mut buf = vec![0u8; msg.len()];
    s.read_exact(&mut buf)
        .unwrap_or_else(|e| panic!("echo {msg:?}: {e}"));
    String::from_utf8_lossy(&buf).into_owned()
}

fn ve_net(rt: &Runtime, id: &str) -> (String, String) {
    let a = rt.run(&["exec", id, "ip", "-o", "addr", "show", "dev", "venet0"]);
    let r = rt.run(&["exec", id, "ip", "route"]);
    assert_eq!(a.code, 0, "{a:?}");
    assert_eq!(r.code, 0, "{r:?}");
    // The interface index may differ in a new namespace; the rest must not.
    // The link-local address follows the new link's random MAC; a venet has no use for it.
    let addrs = a
        .stdout
        .lines()
        .filter(|l| !l.contains("fe80:"))
        .map(|l| l.split_once(": ").map(|x| x.1).unwrap_or(l).to_string())
        .collect::<Vec<_>>()
        .join("\n");
    (addrs, r.stdout)
}

fn host_route(addr: &str) -> String {
    let o = Command::new("ip")
        .args(["route", "show", addr])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn tcp_connection_addresses_routes_and_limits_survive() {
    require_criu!();
    let rt = Runtime::vzrun();
    let client = ClientNs::new("203.0.113.161", "t");
    let b = Bundle::ve(
        &[
            "sh",
            "-c",
            "exec </dev/null >/dev/null 2>&1; nc -l -p 5000 -e cat",
        ],
        json!({
            "io.vzrun.net.ip": "203.0.113.160",
            "io.vzrun.net.routes": "203.0.113.176/28",
            "io.vzrun.ram": "96M",
            "io.vzrun.numproc": "60",
        }),
    );
    let id = common::unique_id("tcp");
    rt.track(&id);
    let o = rt.run(&["run", "-d", "-b", b.p(), &id]);
    assert_eq!(o.code, 0, "{o:?}");
    let mut s = connect_in(&client.path(), "203.0.113.160:5000");
    assert_eq!(echo(&mut s, "before"), "before");
    let net_before = ve_net(&rt, &id);
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    let limits = |pid| {
        (
            cgroup_file(pid, "memory", "memory.limit_in_bytes")
                + &cgroup_file(pid, "", "memory.max"),
            cgroup_file(pid, "pids", "pids.max"),
        )
    };
    let limits_before = limits(pid);
    assert_eq!(limits_before.1, "60");
    assert!(host_route("203.0.113.160").contains("203.0.113.160"));

    let dir = images();
    let o = checkpoint(&rt, &id, dir.path(), &["--tcp-established"]);
    if o.code != 0 && o.stderr.contains("sockets: Can't get 1:") {
        // Kernels from 6.16 refuse SO_PASSCRED on inet sockets; CRIU before 4.2 asks for
        // it on every socket and so cannot dump any TCP socket (runc fails the same way).
        eprintln!(
            "SKIP: this CRIU cannot dump inet sockets on this kernel (SO_PASSCRED: \
             EOPNOTSUPP); CRIU >= 4.2 can (hack/install-criu.sh with CRIU_SUITE=sid)"
        );
        return;
    }
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        host_route("203.0.113.160").trim().is_empty(),
        "host route stays while checkpointed"
    );
    let o = restore(&rt, &id, &b, dir.path(), &["--tcp-established"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(echo(&mut s, "after"), "after", "connection lost");
    assert_eq!(ve_net(&rt, &id), net_before);
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    assert_eq!(limits(pid), limits_before);
    assert!(host_route("203.0.113.160").contains("203.0.113.160"));
    drop(s);
    assert_eq!(rt.run(&["delete", "-f", &id]).code, 0);
    assert!(host_route("203.0.113.160").trim().is_empty());
}

#[test]
fn action_scripts_fire_in_order_with_their_state() {
    require_criu!();
    let rt = Runtime::vzrun();
    // Host hooks are the administrator's programs, named by the annotations: hack/hooks.d's
    // vzt-log writes each action and the VE's status into hooks.log in the bundle.
    let b = Bundle::ve(
        &["sh", "-c", COUNTER],
        json!({
            "io.vzrun.hooks.pre-checkpoint": "ve: echo flushed > /dev/shm/flushed",
            "io.vzrun.hooks.post-checkpoint": "vzt-log",
            "io.vzrun.hooks.pre-restore": "vzt-log",
            "io.vzrun.hooks.post-restore": "vzt-log",
        }),
    );
    let log = b.path().join("hooks.log");
    let id = common::unique_id("act");
    rt.track(&id);
    assert_eq!(rt.run(&["run", "-d", "-b", b.p(), &id]).code, 0);
    std::fs::write(&log, "").unwrap();
    let dir = images();
    let o = checkpoint(&rt, &id, dir.path(), &[]);
    assert_eq!(o.code, 0, "{o:?}");
    let o = restore(&rt, &id, &b, dir.path(), &[]);
    assert_eq!(o.code, 0, "{o:?}");
    // The pre-checkpoint script ran inside, before the dump: its file is in the image.
    let o = rt.run(&["exec", &id, "cat", "/dev/shm/flushed"]);
    assert_eq!(o.stdout.trim(), "flushed", "{o:?}");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "post-checkpoint \"status\":\"stopped\"\n\
         pre-restore \"status\":\"creating\"\n\
         post-restore \"status\":\"running\"\n"
    );
}

#[test]
fn failing_pre_checkpoint_aborts_and_leaves_the_ve_running() {
    require_criu!();
    let rt = Runtime::vzrun();
    let b = Bundle::ve(
        &["sh", "-c", COUNTER],
        json!({"io.vzrun.hooks.pre-checkpoint": "vzt-exit-4"}),
    );
    let id = common::unique_id("pre");
    rt.track(&id);
    assert_eq!(rt.run(&["run", "-d", "-b", b.p(), &id]).code, 0);
    let pid = rt.state(&id)["pid"].clone();
    let dir = images();
    let o = checkpoint(&rt, &id, dir.path(), &[]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.error_msg().contains("pre-checkpoint"), "{o:?}");
    assert_eq!(rt.status(&id), "running");
    assert_eq!(rt.state(&id)["pid"], pid);
    assert!(!dir.path().join("img/inventory.img").exists());
    let c1 = count(&rt, &id);
    std::thread::sleep(Duration::from_millis(200));
    assert!(count(&rt, &id) > c1, "the VE stopped counting");
}

/// The state an action script gets on stdin carries the spec's annotations, which are
/// the tenant's: one larger than a pipe, given to a script that never reads it, held
/// the checkpoint before its timeout began to count, for ever.
#[test]
fn a_script_that_never_reads_a_large_state_still_times_out() {
    require_criu!();
    let rt = Runtime::vzrun();
    let b = Bundle::ve(
        &["sh", "-c", COUNTER],
        json!({
            "io.vzrun.hooks.pre-checkpoint": "ve: sleep 100000",
            "io.vzrun.hooks.timeout": "3",
            "org.example.padding": "A".repeat(300_000),
        }),
    );
    let id = common::unique_id("pre-big");
    rt.track(&id);
    assert_eq!(rt.run(&["run", "-d", "-b", b.p(), &id]).code, 0);
    let dir = images();
    let img = dir.path().join("img");
    let o = rt.run_deadlined(
        &["checkpoint", "--image-path", img.to_str().unwrap(), &id],
        Duration::from_secs(40),
    );
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.error_msg().contains("timed out after 3s"), "{o:?}");
    assert_eq!(rt.status(&id), "running");
}

#[test]
fn failing_post_restore_keeps_or_removes_the_ve() {
    require_criu!();
    let rt = Runtime::vzrun();
    let b = Bundle::ve(
        &["sh", "-c", COUNTER],
        json!({"io.vzrun.hooks.post-restore": "vzt-exit-5"}),
    );
    let id = common::unique_id("post");
    rt.track(&id);
    assert_eq!(rt.run(&["run", "-d", "-b", b.p(), &id]).code, 0);
    let dir = images();
    assert_eq!(
        checkpoint(&rt, &id, dir.path(), &["--leave-running"]).code,
        0
    );
    assert_eq!(rt.run(&["delete", "-f", &id]).code, 0);

    let o = restore(&rt, &id, &b, dir.path(), &[]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.error_msg().contains("post-restore"), "{o:?}");
    assert!(o.error_msg().contains("removed"), "{o:?}");
    assert_ne!(rt.run(&["state", &id]).code, 0, "VE kept without the flag");
    assert!(common::cgroups_named(&id).is_empty());

    let o = restore(&rt, &id, &b, dir.path(), &["--keep-on-hook-failure"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.error_msg().contains("keeps running"), "{o:?}");
    assert_eq!(rt.status(&id), "running");
}

#[test]
fn failed_restore_leaves_nothing_behind() {
    require_criu!();
    let rt = Runtime::vzrun();
    let b = Bundle::ve(
        &["sh", "-c", COUNTER],
        json!({"io.vzrun.net.ip": "203.0.113.162", "io.vzrun.ram": "64M"}),
    );
    let id = common::unique_id("bad");
    // An image directory without an image in it.
    let dir = images();
    std::fs::create_dir_all(dir.path().join("img")).unwrap();
    let o = restore(&rt, &id, &b, dir.path(), &[]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.error_msg().contains("restore failed"), "{o:?}");
    assert_ne!(rt.run(&["state", &id]).code, 0);
    assert!(common::cgroups_named(&id).is_empty(), "cgroup left");
    assert!(host_route("203.0.113.162").trim().is_empty(), "route left");
    assert!(common::mounts_containing(&id).is_empty(), "mount left");
    let left: Vec<_> = std::fs::read_dir(rt.root.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // A bad flag value is named and changes nothing either.
    let o = rt.run(&[
        "restore",
        "--image-path",
        dir.path().join("img").to_str().unwrap(),
        "--manage-cgroups-mode",
        "sideways",
        "-b",
        b.p(),
        &id,
    ]);
    assert_eq!(o.code, 1);
    assert!(o.error_msg().contains("--manage-cgroups-mode"), "{o:?}");
    assert_ne!(rt.run(&["state", &id]).code, 0);
}

fn bridge_ports(br: &str) -> usize {
    let o = Command::new("ip")
        .args(["-o", "link", "show", "master", br])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).lines().count()
}

#[test]
fn veth_ve_comes_back_on_its_bridge_with_its_mac() {
    require_criu!();
    let rt = Runtime::vzrun();
    let made = common::TestBridge::new("vztck");
    assert!(made.is_some());
    let br = made.unwrap();
    let b = Bundle::ve(
        &["sh", "-c", COUNTER],
        json!({
            "io.vzrun.net.mode": "veth",
            "io.vzrun.net.bridge": br.0,
            "io.vzrun.net.ip": "203.0.113.171/27",
        }),
    );
    let id = common::unique_id("veth");
    rt.track(&id);
    assert_eq!(rt.run(&["run", "-d", "-b", b.p(), &id]).code, 0);
    let mac = |rt: &Runtime| {
        let o = rt.run(&["exec", &id, "cat", "/sys/class/net/eth0/address"]);
        assert_eq!(o.code, 0, "{o:?}");
        o.stdout
    };
    let before = mac(&rt);
    assert_eq!(bridge_ports(&br.0), 1);
    let dir = images();
    let o = checkpoint(&rt, &id, dir.path(), &[]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        common::poll(100, Duration::from_millis(50), || bridge_ports(&br.0) == 0),
        "host end stays on the bridge"
    );
    let o = restore(&rt, &id, &b, dir.path(), &[]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(mac(&rt), before, "the VE's MAC changed");
    assert_eq!(bridge_ports(&br.0), 1);
    let o = rt.run(&["exec", &id, "ip", "-o", "addr", "show", "dev", "eth0"]);
    assert!(o.stdout.contains("203.0.113.171/27"), "{o:?}");
}

#[test]
fn failed_checkpoint_leaves_the_ve_running_as_before() {
    require_criu!();
    let rt = Runtime::vzrun();
    let b = Bundle::ve(&["sh", "-c", COUNTER], json!({"io.vzrun.ram": "64M"}));
    let id = common::unique_id("fail");
    rt.track(&id);
    assert_eq!(rt.run(&["run", "-d", "-b", b.p(), &id]).code, 0);
    let pid = rt.state(&id)["pid"].clone();
    let dir = images();
    // Nothing listens there: CRIU fails once it has frozen the VE and starts sending pages.
    let o = checkpoint(&rt, &id, dir.path(), &["--page-server", "127.0.0.1:1"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.error_msg().contains("checkpoint failed"), "{o:?}");
    assert_eq!(rt.status(&id), "running");
    assert_eq!(rt.state(&id)["pid"], pid);
    let c1 = count(&rt, &id);
    std::thread::sleep(Duration::from_millis(200));
    assert!(count(&rt, &id) > c1, "the VE is left frozen");
    let freezer = cgroup_file(pid.as_i64().unwrap(), "freezer", "freezer.state");
    assert!(freezer.is_empty() || freezer == "THAWED", "{freezer}");
}

/// A restored VE is in a new cgroup whose counters start at zero; `ve stat` carries the
/// maxheld and failcnt saved at the checkpoint on, as a VE's beancounters would.
#[test]
fn beancounter_counts_carry_on_after_a_restore() {
    require_criu!();
    let rt = Runtime::vzrun();
    // A subshell forks until numproc refuses (the failure ends only the subshell), the
    // sleeps it started end, then the counter runs well under the limit.
    let b = Bundle::ve(
        &[
            "sh",
            "-c",
            &format!(
                "(for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 1 & done); sleep 2; {COUNTER}"
            ),
        ],
        json!({"io.vzrun.numproc": "6"}),
    );
    let id = common::unique_id("bc");
    rt.track(&id);
    assert_eq!(rt.run(&["run", "-d", "-b", b.p(), &id]).code, 0);
    // Read from the host: an exec would take one of the VE's six processes and could
    // make the shell's own fork fail.
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    let count_file = PathBuf::from(format!("/proc/{pid}/root/dev/shm/count"));
    assert!(
        common::poll(100, Duration::from_millis(50), || count_file.exists()),
        "the counter never started: {:?}",
        rt.state(&id)
    );
    let before = common::ve_stat_row(&rt, &id, "numproc");
    assert_eq!(before["maxheld"], 6, "{before}");
    assert!(before["failcnt"].as_u64() > Some(0), "{before}");
    let dir = images();
    let o = checkpoint(&rt, &id, dir.path(), &[]);
    assert_eq!(o.code, 0, "{o:?}");
    let o = restore(&rt, &id, &b, dir.path(), &[]);
    assert_eq!(o.code, 0, "{o:?}");
    let after = common::ve_stat_row(&rt, &id, "numproc");
    assert_eq!(
        (&after["maxheld"], &after["failcnt"], &after["limit"]),
        (&before["maxheld"], &before["failcnt"], &before["limit"]),
        "numproc's counts after the restore"
    );
    assert!(after["held"].as_u64() < Some(6), "{after}");
}

/// CRIU counts in the VE's cgroup while it restores: a VE dumped with as many processes
/// as numproc allows still comes back, under the same limit.
#[test]
fn a_ve_at_its_numproc_limit_comes_back() {
    require_criu!();
    let rt = Runtime::vzrun();
    let b = Bundle::ve(
        &[
            "sh",
            "-c",
            "exec </dev/null >/dev/null 2>&1; sleep 1000 & sleep 1000 & wait",
        ],
        json!({"io.vzrun.numproc": "3"}),
    );
    let id = common::unique_id("atlim");
    rt.track(&id);
    assert_eq!(rt.run(&["run", "-d", "-b", b.p(), &id]).code, 0);
    assert!(common::poll(
        100,
        Duration::from_millis(50),
        || common::ve_stat_row(&rt, &id, "numproc")["held"] == 3
    ));
    let dir = images();
    let o = checkpoint(&rt, &id, dir.path(), &[]);
    assert_eq!(o.code, 0, "{o:?}");
    let o = restore(&rt, &id, &b, dir.path(), &[]);
    assert_eq!(o.code, 0, "{o:?}");
    let row = common::ve_stat_row(&rt, &id, "numproc");
    assert_eq!(
        (&row["held"], &row["limit"]),
        (&json!(3), &json!(3)),
        "{row}"
    );
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    assert_eq!(cgroup_file(pid, "pids", "pids.max"), "3");
}

#[test]
fn private_area_comes_back_with_the_ve() {
    require_criu!();
    let rt = Runtime::vzrun();
    let b = Bundle::with(
        &["sh", "-c", &format!("echo private > /root/f; {COUNTER}")],
        |v| {
            v["root"]["readonly"] = json!(false);
            v["annotations"] = json!({"io.vzrun.diskspace": "64M"});
        },
    );
    let id = common::unique_id("disk");
    rt.track(&id);
    let o = rt.run(&["run", "-d", "-b", b.p(), &id]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(common::poll(100, Duration::from_millis(50), || rt
        .run(&["exec", &id, "cat", "/root/f"])
        .stdout
        .contains("private")));
    let o = rt.run(&["exec", &id, "sh", "-c", "echo later >> /root/f"]);
    assert_eq!(o.code, 0, "{o:?}");
    let images_of = |id: &str| -> Vec<String> {
        common::dir_entries(Path::new("/var/lib/vzrun/private"))
            .into_iter()
            .filter(|n| n.starts_with(&format!("{id}-")))
            .collect()
    };
    assert_eq!(images_of(&id).len(), 1);

    let dir = images();
    let o = checkpoint(&rt, &id, dir.path(), &[]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(dir.path().join("img/vzrun-private.img").exists());
    assert!(images_of(&id).is_empty(), "the VE's image stayed behind");
    let o = restore(&rt, &id, &b, dir.path(), &[]);
    assert_eq!(o.code, 0, "{o:?}");
    let o = rt.run(&["exec", &id, "cat", "/root/f"]);
    assert_eq!(o.stdout, "private\nlater\n", "{o:?}");
    assert!(
        !common::rootfs().join("root/f").exists(),
        "wrote the bundle"
    );
    // Restored again under a new ID from the same checkpoint: its own copy.
    let id2 = common::unique_id("disk2");
    let o = restore(&rt, &id2, &b, dir.path(), &[]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(images_of(&id2).len(), 1);
    for i in [&id, &id2] {
        assert_eq!(rt.run(&["delete", "-f", i]).code, 0);
        assert!(images_of(i).is_empty(), "{i}: image left");
        assert!(common::mounts_containing(i).is_empty(), "{i}: mount left");
    }
}

/// The server's namespace made by the test and named in the spec by path, as podman
/// with netavark does; the same flow under runc and vzrun.
fn tcp_in_caller_namespace(rt: &Runtime, addr: &str, tag: &str, client: &ClientNs) {
    let server = ClientNs::new(addr, tag);
    let b = Bundle::with(
        &[
            "sh",
            "-c",
            "exec </dev/null >/dev/null 2>&1; nc -l -p 5000 -e cat",
        ],
        |v| {
            for ns in v["linux"]["namespaces"].as_array_mut().unwrap() {
                if ns["type"] == "network" {
                    ns["path"] = json!(server.path());
                }
            }
        },
    );
    let id = common::unique_id(tag);
    rt.track(&id);
    let o = rt.run(&["run", "-d", "-b", b.p(), &id]);
    assert_eq!(o.code, 0, "{}: {o:?}", rt.name);
    let mut s = connect_in(&client.path(), &format!("{addr}:5000"));
    assert_eq!(echo(&mut s, "before"), "before");
    let dir = images();
    let o = checkpoint(rt, &id, dir.path(), &["--tcp-established"]);
    assert_eq!(o.code, 0, "{}: {o:?}", rt.name);
    let o = restore(rt, &id, &b, dir.path(), &["--tcp-established"]);
    assert_eq!(o.code, 0, "{}: {o:?}", rt.name);
    assert_eq!(
        echo(&mut s, "after"),
        "after",
        "{}: connection lost",
        rt.name
    );
    drop(s);
    assert_eq!(rt.run(&["delete", "-f", &id]).code, 0);
    // The caller's namespace is the caller's: it is still there.
    assert!(server.path().exists(), "{}", rt.name);
}

#[test]
fn tcp_in_a_caller_namespace_like_runc() {
    require_criu!();
    if !criu_dumps_inet_sockets() {
        eprintln!(
            "SKIP: this CRIU cannot dump inet sockets on this kernel (SO_PASSCRED: \
             EOPNOTSUPP); CRIU >= 4.2 can (hack/install-criu.sh with CRIU_SUITE=sid)"
        );
        return;
    }
    let client = ClientNs::new("203.0.113.165", "c");
    tcp_in_caller_namespace(&Runtime::runc(), "203.0.113.166", "r", &client);
    tcp_in_caller_namespace(&Runtime::vzrun(), "203.0.113.167", "v", &client);
}

/// CRIU before 4.2 fails on every inet socket on kernels from 6.16: `criu --version`
/// tells which one the runtimes will use (runc the one in PATH, vzrun `$VZRUN_CRIU` when
/// set).
fn criu_dumps_inet_sockets() -> bool {
    let version = |bin: &str| -> Vec<u32> {
        let out = Command::new(bin).arg("--version").output();
        let text = out
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default();
        text.split_whitespace()
            .nth(1)
            .unwrap_or("0")
            .split('.')
            .filter_map(|x| x.parse().ok())
            .collect()
    };
    let mut bins = vec!["criu".to_string()];
    bins.extend(std::env::var("VZRUN_CRIU").ok());
    if bins.iter().all(|b| version(b) >= vec![4, 2]) {
        return true;
    }
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().to_string())
        .unwrap_or_default();
    let k: Vec<u32> = release
        .split(|c: char| !c.is_ascii_digit())
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    k < vec![6, 16]
}

/// With no CRIU to run, checkpoint says which binary it looked for (here the one
/// VZRUN_CRIU names), points at no log CRIU never wrote, and the container runs on.
#[test]
fn missing_criu_names_the_binary() {
    require_root!();
    let rt = Runtime::vzrun();
    let b = Bundle::busybox(&["sleep", "600"]);
    let id = common::unique_id("nocriu");
    rt.track(&id);
    assert_eq!(rt.run(&["run", "-d", "-b", b.p(), &id]).code, 0);
    let dir = images();
    let img = dir.path().join("img");
    let o = common::output_of(
        {
            let mut c = rt.command();
            c.env("VZRUN_CRIU", "/nonexistent/criu").args([
                "checkpoint",
                "--image-path",
                img.to_str().unwrap(),
                &id,
            ]);
            c
        },
        std::process::Stdio::null(),
    );
    assert_eq!(o.code, 1, "{o:?}");
    let msg = o.error_msg();
    assert!(
        msg.contains("criu not found") && msg.contains("/nonexistent/criu"),
        "{o:?}"
    );
    assert!(!msg.contains(".log"), "CRIU never ran, so no log: {o:?}");
    assert_eq!(rt.status(&id), "running");
    assert_eq!(rt.run(&["delete", "-f", &id]).code, 0);
}

/// runc prints nothing when a checkpoint or restore succeeds, and callers compare: the
/// one-line summary (image size, time, how long the VE was frozen) is for a person at a
/// terminal, and in the --debug log with CRIU's request timed.
#[test]
fn summary_on_a_terminal_and_in_the_debug_log_only() {
    require_criu!();
    let rt = Runtime::vzrun();
    let b = Bundle::ve(&["sh", "-c", COUNTER], json!({}));
    let id = common::unique_id("ckptsum");
    rt.track(&id);
    let o = rt.run(&["run", "-d", "-b", b.p(), &id]);
    assert_eq!(o.code, 0, "{o:?}");
    let dir = images();
    let log = dir.path().join("log.json");
    let img = dir.path().join("img");
    let o = rt.run(&[
        "--debug",
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "checkpoint",
        "--leave-running",
        "--image-path",
        img.to_str().unwrap(),
        &id,
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        (o.stdout.as_str(), o.stderr.as_str()),
        ("", ""),
        "as runc: nothing"
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let said = |start: &str| {
        lines
            .iter()
            .filter_map(|l| l["msg"].as_str())
            .find(|m| m.starts_with(start))
            .map(str::to_string)
    };
    let summary = said(&format!("Checkpointed (left running) {id} into ")).unwrap_or_default();
    assert!(
        summary.contains(" MiB, ") && summary.contains("(frozen "),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["msg"] == "criu" && l["request"] == "DUMP" && l["took"].is_string()),
        "{lines:?}"
    );

    // At a terminal the same line is shown, and restore -d has its own.
    let pty_run = |args: &[&str]| {
        let mut cmd = rt.command();
        cmd.args(args);
        let mut t = common::OnPty::spawn(&mut cmd, 24, 120);
        let code = t.wait(60);
        (code, t.screen())
    };
    let img2 = dir.path().join("img2");
    let (code, screen) = pty_run(&["checkpoint", "--image-path", img2.to_str().unwrap(), &id]);
    assert_eq!(code, Some(0), "{screen}");
    assert!(
        screen.contains(&format!("Checkpointed {id} into {}: ", img2.display())),
        "{screen}"
    );
    rt.track(&id);
    let (code, screen) = pty_run(&[
        "restore",
        "-d",
        "--image-path",
        img2.to_str().unwrap(),
        "--bundle",
        b.p(),
        &id,
    ]);
    assert_eq!(code, Some(0), "{screen}");
    assert!(screen.contains(&format!("Restored {id} from ")), "{screen}");
    assert_eq!(rt.run(&["delete", "-f", &id]).code, 0);
}

/// A restore makes the mount points of the spec's binds in the rootfs before CRIU runs.
/// The rootfs's links are the image's: a chain longer than the kernel follows, ending in
/// a link to a host directory, must not lead that making onto the host.
#[test]
fn a_restore_never_makes_mount_points_outside_the_rootfs() {
    require_root!();
    let rt = Runtime::vzrun();
    let dir = images();
    let host = tempfile::Builder::new()
        .prefix("vzt-hostdir-")
        .tempdir()
        .unwrap();
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("c41")).unwrap();
    for i in 0..41 {
        std::os::unix::fs::symlink(format!("c{}", i + 1), rootfs.join(format!("c{i}"))).unwrap();
    }
    std::os::unix::fs::symlink(host.path(), rootfs.join("c41/esc")).unwrap();
    std::fs::create_dir_all(dir.path().join("img")).unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let b = Bundle::with(&["true"], |v| {
        v["root"] = json!({"path": rootfs, "readonly": false});
        let mut mounts = v["mounts"].as_array().cloned().unwrap_or_default();
        mounts.push(json!({"destination": "/c0/esc/made/f", "type": "bind",
                           "source": src, "options": ["bind"]}));
        v["mounts"] = json!(mounts);
    });
    let id = common::unique_id("rst-esc");
    let o = restore(&rt, &id, &b, dir.path(), &[]);
    assert_ne!(o.code, 0, "restored from an empty image: {o:?}");
    assert!(
        common::dir_entries(host.path()).is_empty(),
        "made {:?} on the host",
        common::dir_entries(host.path())
    );
}

/// A running VE whose process spawns with vfork in rounds from /tmp (a tmpfs of its own,
/// dumped with it), each child staying `hold_ms` in the vfork window before its exec.
fn vfork_ve(rt: &Runtime, tag: &str, hold_ms: u32, spawner: &Path) -> (String, Bundle) {
    let script = format!(
        "exec </dev/null >/dev/null 2>&1; \
         while [ ! -x /tmp/vf ]; do usleep 10000; done; exec /tmp/vf {hold_ms} /tmp/vf-rounds"
    );
    let b = Bundle::with(&["sh", "-c", &script], |v| {
        v["mounts"].as_array_mut().unwrap().push(
            json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]}),
        );
    });
    let id = common::unique_id(tag);
    rt.track(&id);
    assert_eq!(rt.run(&["run", "-d", "-b", b.p(), &id]).code, 0);
    common::put_vfork_spawner(rt, &id, spawner);
    (id, b)
}

/// A VE whose task waits in vfork for its child's exec when it is frozen: CRIU cannot
/// seize that task, so the dump lets it out first (thaws the VE until the child has
/// exec'd, freezes it again) and the checkpoint succeeds; the VE runs on.
#[test]
fn a_ve_frozen_in_a_vfork_wait_is_checkpointed() {
    require_criu!();
    let Some(spawner) = common::vfork_spawner() else {
        eprintln!("SKIP: no static C toolchain for the vfork spawner");
        return;
    };
    let rt = Runtime::vzrun();
    let (id, _b) = vfork_ve(&rt, "ckvf", 3000, spawner);
    // Each round's child stays 3 s in the window: a checkpoint taken as a round begins
    // freezes the VE inside it.
    let round = common::wait_vfork_round(&rt, &id);
    let dir = images();
    let o = checkpoint(&rt, &id, dir.path(), &["--leave-running"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(rt.status(&id), "running");
    let mut now = 0;
    assert!(
        common::wait_until(30, || {
            now = common::vfork_round(&rt, &id);
            now > round
        }),
        "the spawner did not go on after the checkpoint: round {round} -> {now}"
    );
}

/// A task that stays in its vfork wait (its child never execs while the dump waits) is
/// named in the error, and the VE is left running as it was.
#[test]
fn a_vfork_wait_that_never_ends_is_named_and_the_ve_runs_on() {
    require_criu!();
    let Some(spawner) = common::vfork_spawner() else {
        eprintln!("SKIP: no static C toolchain for the vfork spawner");
        return;
    };
    let rt = Runtime::vzrun();
    // The child stays in the window for 10 minutes: longer than any dump waits.
    let (id, _b) = vfork_ve(&rt, "ckvn", 600_000, spawner);
    assert!(
        common::wait_until(30, || common::vfork_round(&rt, &id) > 0),
        "the spawner never ran"
    );
    let pid = rt.state(&id)["pid"].clone();
    let dir = images();
    let o = checkpoint(&rt, &id, dir.path(), &["--leave-running"]);
    assert_eq!(o.code, 1, "{o:?}");
    let msg = o.error_msg();
    assert!(
        msg.contains("checkpoint failed") && msg.contains("(vf) of the VE waits in vfork"),
        "{o:?}"
    );
    assert_eq!(rt.status(&id), "running");
    assert_eq!(rt.state(&id)["pid"], pid);
    let freezer = cgroup_file(pid.as_i64().unwrap(), "freezer", "freezer.state");
    assert!(freezer.is_empty() || freezer == "THAWED", "{freezer}");
}
