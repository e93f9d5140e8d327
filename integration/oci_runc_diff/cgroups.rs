//! cgroup behaviours a caller can tell apart: sub-cgroups at `delete --force`, per-device
//! block I/O weights, a cgroup that already holds processes, OOM events, and the unified
//! hierarchy of a hybrid host.

use super::*;
use std::path::PathBuf;

/// The v1 cgroup directories of a process, one per hierarchy it is in.
fn cgroup_dirs(pid: u64) -> Vec<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrl, path) = (f.next()?, f.next()?, f.next()?);
            let ctrl = ctrl.split(',').next()?.trim_start_matches("name=");
            if ctrl.is_empty() || path == "/" {
                return None;
            }
            Some(PathBuf::from(format!("/sys/fs/cgroup/{ctrl}{path}")))
        })
        .filter(|p| p.is_dir())
        .collect()
}

/// Made under the container's cgroups; removed (deepest first) when dropped.
struct SubCgroups(Vec<PathBuf>);

impl Drop for SubCgroups {
    fn drop(&mut self) {
        for d in self.0.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// `delete --force` of a running container whose cgroups have children: the exit code,
/// whether `list -q` is empty after, and whether any of its cgroups are left.
fn delete_with_sub_cgroups(rt: &Runtime) -> (i32, bool, bool) {
    let bundle = Bundle::busybox(SLEEP);
    let id = common::unique_id("subcg");
    rt.track(&id);
    let run = rt.run(&["run", "-d", "-b", bundle.p(), &id]);
    assert_eq!(run.code, 0, "{}: run -d: {run:?}", rt.name);
    let pid = rt.state(&id)["pid"].as_u64().unwrap();
    let dirs = cgroup_dirs(pid);
    assert!(!dirs.is_empty(), "{}: no cgroups for {pid}", rt.name);
    let mut made = Vec::new();
    for d in &dirs {
        for sub in ["a", "a/b"] {
            let p = d.join(sub);
            if std::fs::create_dir(&p).is_ok() {
                made.push(p);
            }
        }
    }
    let _guard = SubCgroups(made);
    let del = rt.run_deadlined(&["delete", "--force", &id], HANG);
    let listed = rt.run(&["list", "-q"]);
    let left = dirs.iter().any(|d| d.exists());
    (del.code, listed.stdout.trim().is_empty(), left)
}

#[test]
fn cgroups_delete_force_removes_sub_cgroups() {
    require_runc!();
    let want = delete_with_sub_cgroups(&Runtime::runc());
    assert_eq!(want, (0, true, false), "runc");
    let got = delete_with_sub_cgroups(&Runtime::vzrun());
    assert_eq!(got, want, "vzrun differs from runc");
}

/// The major:minor of a disk whose queue offers bfq.
fn bfq_disk() -> Option<(u64, u64)> {
    for e in std::fs::read_dir("/sys/block").ok()?.flatten() {
        let sched = std::fs::read_to_string(e.path().join("queue/scheduler")).unwrap_or_default();
        if !sched.contains("bfq") {
            continue;
        }
        let dev = std::fs::read_to_string(e.path().join("dev")).ok()?;
        let (a, b) = dev.trim().split_once(':')?;
        return Some((a.parse().ok()?, b.parse().ok()?));
    }
    None
}

#[test]
fn cgroups_weight_device_reaches_bfq() {
    require_runc!();
    let Some((major, minor)) = bfq_disk() else {
        eprintln!("SKIP: no disk offers bfq");
        return;
    };
    differential_with(
        "cgroups_weight_device_reaches_bfq",
        &[
            "sh",
            "-c",
            "cat /sys/fs/cgroup/blkio/blkio.bfq.weight_device",
        ],
        move |v| {
            v["linux"]["resources"]["blockIO"] = json!({"weight": 200, "weightDevice": [
                {"major": major, "minor": minor, "weight": 300}]});
        },
        // Refused by the kernel unless the disk's scheduler is bfq right now.
        &[
            worded(
                &["run", "-b", "{b}", "{id}"],
                "operation not supported",
                "operation not supported",
            ),
            s(&["list", "-q"]),
        ],
    );
}

/// A cgroup made by the test in every v1 hierarchy, holding one sleeping process;
/// emptied and removed at drop.
struct BusyCgroup {
    name: String,
    child: std::process::Child,
}

impl BusyCgroup {
    fn new(name: &str) -> Option<BusyCgroup> {
        let child = std::process::Command::new("sleep")
            .arg("300")
            .spawn()
            .ok()?;
        let cg = BusyCgroup {
            name: name.to_string(),
            child,
        };
        for ctrl in [
            "memory", "pids", "cpu", "cpuacct", "devices", "freezer", "blkio", "cpuset",
        ] {
            let d = PathBuf::from(format!("/sys/fs/cgroup/{ctrl}/{name}"));
            std::fs::create_dir(&d).ok()?;
            if ctrl == "cpuset" {
                for f in ["cpuset.cpus", "cpuset.mems"] {
                    let v = std::fs::read_to_string(format!("/sys/fs/cgroup/cpuset/{f}")).ok()?;
                    std::fs::write(d.join(f), v.trim()).ok()?;
                }
            }
            std::fs::write(d.join("cgroup.procs"), cg.child.id().to_string()).ok()?;
        }
        Some(cg)
    }
}

impl Drop for BusyCgroup {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for dir in common::cgroups_named(&self.name) {
            let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            common::wait_until(5, || std::fs::remove_dir(&dir).is_ok() || !dir.exists());
        }
    }
}

/// `run -d` into a cgroup that already has a process: exit code, whether the container
/// runs, the warnings printed on the way (runc 1.1.5 goes on after two) and the error.
fn into_busy_cgroup(rt: &Runtime) -> Option<(i32, bool, Vec<String>, String)> {
    let name = common::unique_id(&format!("busy-{}", rt.name));
    let _cg = BusyCgroup::new(&name)?;
    let path = format!("/{name}");
    let bundle = Bundle::with(SLEEP, |v| v["linux"]["cgroupsPath"] = json!(path));
    let id = common::unique_id("busycg");
    rt.track(&id);
    let o = rt.run_deadlined(&["run", "-d", "-b", bundle.p(), &id], HANG);
    let running = o.code == 0 && rt.status(&id) == "running";
    let _ = rt.run(&["delete", "--force", &id]);
    Some((o.code, running, warnings(&o.stderr), o.error_msg()))
}

#[test]
fn cgroups_run_into_a_non_empty_cgroup() {
    require_runc!();
    let Some(want) = into_busy_cgroup(&Runtime::runc()) else {
        eprintln!("SKIP: cannot make a busy cgroup");
        return;
    };
    assert_eq!(
        want.2,
        [
            "container's cgroup is not empty: 1 process(es) found",
            "DEPRECATED: running container in a non-empty cgroup won't be supported in runc 1.2; https://github.com/opencontainers/runc/issues/3132",
        ],
        "runc"
    );
    // vzrun refuses what runc 1.1.5 only warns about: the cgroup holds somebody else's
    // processes, which "the container's" kill --all and delete --force would kill.
    let got = into_busy_cgroup(&Runtime::vzrun()).expect("busy cgroup");
    assert_eq!(
        (got.0, got.1),
        (1, false),
        "vzrun ran in a busy cgroup: {got:?}"
    );
    assert!(got.2.is_empty(), "vzrun warned: {:?}", got.2);
    assert!(
        got.3.contains("linux.cgroupsPath") && got.3.contains("cgroup is not empty: 1 process"),
        "{}",
        got.3
    );
}

/// What a caller waiting on `events` for an OOM sees: the exit code of an `exec` that
/// allocates past the container's memory limit, and whether `{"type":"oom","id":ID}`
/// arrived on the stream (which runs under a deadline: a stream that never reports it is
/// killed, not waited on for ever).
fn oom_event(rt: &Runtime) -> (i32, bool) {
    const LIMIT: u64 = 32 << 20;
    let bundle = Bundle::with(SLEEP, |v| {
        v["linux"]["resources"]["memory"] = json!({"limit": LIMIT, "swap": LIMIT});
    });
    let id = common::unique_id("oomev");
    rt.track(&id);
    let run = rt.run(&["run", "-d", "-b", bundle.p(), &id]);
    assert_eq!(run.code, 0, "{}: run -d: {run:?}", rt.name);
    let events = rt.start_deadlined(&["events", "--interval", "100ms", &id]);
    // The first line proves the stream is up, and so its watch on the cgroup.
    let streaming = events.stdout_until(HANG, |o| o.contains(r#""type":"stats""#));
    assert!(streaming, "{}: events printed nothing", rt.name);
    // The shell keeps 64 MiB of 'a's in a variable: twice the limit.
    let hog = rt.run_deadlined(
        &[
            "exec",
            &id,
            "sh",
            "-c",
            r#"x=$(head -c 67108864 /dev/zero | tr '\0' a); echo ${#x}"#,
        ],
        HANG,
    );
    let want = format!(r#"{{"type":"oom","id":"{id}"}}"#);
    let seen = events.stdout_until(HANG, |o| o.lines().any(|l| l == want));
    drop(events);
    let del = rt.run(&["delete", "--force", &id]);
    assert_eq!(del.code, 0, "{}: delete: {del:?}", rt.name);
    (hog.code, seen)
}

#[test]
fn cgroups_events_reports_oom() {
    require_runc!();
    let want = oom_event(&Runtime::runc());
    assert_eq!(want, (137, true), "runc");
    let got = oom_event(&Runtime::vzrun());
    assert_eq!(got, want, "vzrun differs from runc");
}

/// One line of `/proc/PID/cgroup` per hierarchy: (controllers, path).
fn cgroup_lines(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrl, path) = (f.next()?, f.next()?, f.next()?);
            Some((ctrl.to_string(), path.to_string()))
        })
        .collect()
}

/// Whether a process's unified (`0::`) path is its `pids` controller's path, as under
/// runc on a hybrid host: the container is in the unified hierarchy at its own path.
fn unified_matches_v1(text: &str) -> bool {
    let lines = cgroup_lines(text);
    let path = |want: &str| {
        lines
            .iter()
            .find(|(c, _)| c == want)
            .map(|(_, p)| p.clone())
    };
    matches!((path(""), path("pids")), (Some(u), Some(p)) if u == p && p != "/")
}

/// On a hybrid host: whether the init and an exec'd process are in the container's
/// unified cgroup, whether its directory exists while the container runs and is gone
/// after `delete`, and what a create that fails after making its cgroups leaves there.
fn unified_membership(rt: &Runtime) -> (bool, bool, bool, bool, i32, Vec<PathBuf>) {
    let bundle = Bundle::busybox(SLEEP);
    let id = common::unique_id("unified");
    rt.track(&id);
    let run = rt.run(&["run", "-d", "-b", bundle.p(), &id]);
    assert_eq!(run.code, 0, "{}: run -d: {run:?}", rt.name);
    let pid = rt.state(&id)["pid"].as_u64().unwrap();
    let init = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let exec = rt.run(&["exec", &id, "cat", "/proc/self/cgroup"]);
    assert_eq!(exec.code, 0, "{}: exec: {exec:?}", rt.name);
    let dir = cgroup_lines(&init)
        .into_iter()
        .find(|(c, _)| c.is_empty())
        .map(|(_, p)| PathBuf::from(format!("/sys/fs/cgroup/unified{p}")));
    let there = dir.as_ref().is_some_and(|d| d.is_dir());
    let del = rt.run(&["delete", "--force", &id]);
    assert_eq!(del.code, 0, "{}: delete: {del:?}", rt.name);
    let gone = dir.as_ref().is_some_and(|d| !d.exists());
    // A pid file in a missing directory fails the create after its cgroups are made.
    let name = common::unique_id(&format!("unifail-{}", rt.name));
    let path = format!("/{name}");
    let failing = Bundle::with(SLEEP, |v| v["linux"]["cgroupsPath"] = json!(path));
    let fid = common::unique_id("unifail");
    rt.track(&fid);
    let create = rt.run(&[
        "create",
        "--pid-file",
        "/nonexistent/dir/pid",
        "-b",
        failing.p(),
        &fid,
    ]);
    let left = common::cgroups_named(&name);
    let _cleanup = SubCgroups(left.clone());
    (
        unified_matches_v1(&init),
        unified_matches_v1(&exec.stdout),
        there,
        gone,
        create.code,
        left,
    )
}

#[test]
fn cgroups_hybrid_host_joins_the_unified_hierarchy() {
    require_runc!();
    if !std::path::Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists() {
        eprintln!("SKIP: not a hybrid cgroup host");
        return;
    }
    let want = unified_membership(&Runtime::runc());
    assert_eq!(want, (true, true, true, true, 1, vec![]), "runc");
    let got = unified_membership(&Runtime::vzrun());
    assert_eq!(got, want, "vzrun differs from runc");
}
