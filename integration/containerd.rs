//! containerd drives vzrun end to end (issue #3): Debian's containerd, started by this suite
//! with a private config, root, state dir and socket, runs containers through its
//! `io.containerd.runc.v2` shim with vzrun as the runc binary, chosen two ways:
//! - `ctr run --runc-binary <vzrun>` (and `--runc-root` in the suite's temp dir);
//! - a CRI runtime handler `vzrun` in the config (`runtime_type = "io.containerd.runc.v2"`,
//!   `options.BinaryName = "<vzrun>"`), driven over the CRI gRPC API as a kubelet would.
//!
//! The checkpoint case (issue #6) runs `ctr task checkpoint` and `ctr containers
//! checkpoint`/`restore` through the same shim, with CRIU.
//!
//! Every case runs the same operation with runc and with vzrun and compares what the user
//! of the caller sees. There is no registry here: the suite builds an OCI image archive of
//! bundles/busybox/rootfs once and imports it with `ctr images import`.
//!
//! gRPC calls that ctr 1.6 cannot make (`Tasks/Update`, the CRI RuntimeService) go over the
//! daemon's socket with curl (HTTP/2 without TLS) and a few lines of protobuf encoding, so no
//! gRPC crate is needed.
//!
//! The daemon itself (config, start, teardown, tasks) is in callers/containerd.rs, the gRPC
//! and protobuf codec in callers/grpc.rs.

mod callers;
mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use callers::containerd::{suite, Containerd, Task, CRI_NS, NOENV_IMAGE};
use callers::grpc::{Fields, Pb};
use callers::{cgroup_of, ok, read_trim, run, IMAGE};
use serde_json::{json, Value};

macro_rules! suite_or_skip {
    () => {
        match suite() {
            Some(c) => c,
            None => return,
        }
    };
}

// ---------------------------------------------------------------------------------------
// Helpers of the cases
// ---------------------------------------------------------------------------------------

/// Replaces the per-runtime container id by ID, so runc's and vzrun's outputs compare.
fn norm(s: &str, id: &str) -> String {
    callers::normalize(s, &[(id, "ID")])
}

/// What a container may leave behind once deleted: runtime state (in the root the shim gave
/// the runtime), cgroups, mounts and processes that name it.
fn leftovers(state_root: &Path, id: &str) -> Vec<String> {
    let mut left = Vec::new();
    for e in common::dir_entries(state_root) {
        left.push(format!("runtime state: {}/{e}", state_root.display()));
    }
    left.extend(callers::traces_of(id));
    left
}

/// Waits (the shim exits a moment after the delete) until nothing of `id` is left.
fn assert_nothing_left(rt: &str, state_root: &Path, id: &str) {
    let mut left = Vec::new();
    let clean = common::wait_until(10, || {
        left = leftovers(state_root, id);
        left.is_empty()
    });
    assert!(clean, "{rt}: left behind after delete of {id}: {left:#?}");
}

// ---------------------------------------------------------------------------------------
// ctr cases
// ---------------------------------------------------------------------------------------

/// What `ctr run` shows (stdout, stderr, exit code) for a script that prints the process's
/// view of itself: identity, environment, capabilities, namespaces' effects, mounts.
#[test]
fn ctr_run_attached_matches_runc() {
    let ctd = suite_or_skip!();
    let script = r#"echo to-stdout; echo to-stderr >&2
id; pwd; echo "host=$(hostname)"; env | sort
grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status
echo "pid=$$"
awk '{print $5, $9}' /proc/self/mountinfo | sort
ulimit -n; umask
exit 3"#;
    let mut seen = Vec::new();
    for (rt, _) in callers::runtimes() {
        let id = format!("{}-{rt}", common::unique_id("ctd-run"));
        let o = run(&mut ctd.run_cmd(rt, &["--rm"], &id, &["sh", "-c", script]));
        assert_eq!(o.code, 3, "{rt}: ctr run exit code: {o:?}");
        assert!(o.stdout.starts_with("to-stdout\n"), "{rt}: {o:?}");
        assert!(o.stderr.contains("to-stderr"), "{rt}: {o:?}");
        assert_nothing_left(rt, &ctd.state_root(rt), &id);
        seen.push((rt, norm(&o.stdout, &id), norm(&o.stderr, &id)));
    }
    let (runc, vz) = (&seen[0], &seen[1]);
    assert_eq!(
        vz.1, runc.1,
        "stdout of `ctr run` differs (left: vzrun, right: runc)"
    );
    assert_eq!(
        vz.2, runc.2,
        "stderr of `ctr run` differs (left: vzrun, right: runc)"
    );
}

/// `ctr run -t` at a terminal: the container gets a pty of the caller's size, reads what
/// the person types, and its exit code comes back.
#[test]
fn ctr_run_tty_matches_runc() {
    let ctd = suite_or_skip!();
    // ctr sets the size of the container's terminal just after the start: wait for it.
    let script = r#"tty; for i in $(seq 50); do s=$(stty size 2>/dev/null); case "$s" in [1-9]*) break;; esac; sleep 0.1; done; echo "$s"; printf 'name? '; read n; echo "hello $n"; test -t 0 && echo stdin-is-tty; exit 4"#;
    let mut screens = Vec::new();
    for (rt, _) in callers::runtimes() {
        let id = format!("{}-{rt}", common::unique_id("ctd-tty"));
        let r = callers::run_in_pty(
            &mut ctd.run_cmd(rt, &["--rm", "-t"], &id, &["sh", "-c", script]),
            40,
            100,
            &[("name? ", "world\r")],
            Duration::from_secs(60),
        );
        assert!(
            !r.timed_out,
            "{rt}: ctr run -t hung; screen: {:?}",
            r.screen
        );
        assert_eq!(
            r.code, 4,
            "{rt}: exit code of ctr run -t; screen: {:?}",
            r.screen
        );
        for want in [
            "/dev/pts/0",
            "40 100",
            "name? world",
            "hello world",
            "stdin-is-tty",
        ] {
            assert!(
                r.screen.contains(want),
                "{rt}: no {want:?} on the screen: {:?}",
                r.screen
            );
        }
        assert_nothing_left(rt, &ctd.state_root(rt), &id);
        screens.push(r.screen.trim_start_matches('\0').to_string());
    }
    assert_eq!(
        screens[1], screens[0],
        "terminal of `ctr run -t` differs (left: vzrun, right: runc)"
    );
}

/// `ctr tasks exec`: output and exit code of an extra process, with and without a tty, and
/// the error a user gets for a binary that does not exist.
#[test]
fn ctr_exec_matches_runc() {
    let ctd = suite_or_skip!();
    let mut seen = Vec::new();
    for (rt, _) in callers::runtimes() {
        let t = ctd.run_detached(rt, "ctd-exec", &[], &["sleep", "1000"]);
        let fifo = ctd.dir.join("fifo").display().to_string();
        let o = ctd.ctr_out(&[
            "tasks",
            "exec",
            "--fifo-dir",
            &fifo,
            "--exec-id",
            "e1",
            &t.id,
            "sh",
            "-c",
            "echo exec-out; echo exec-err >&2; cat /proc/1/cmdline | tr '\\0' ' '; echo; exit 5",
        ]);
        assert_eq!(o.code, 5, "{rt}: exec exit code: {o:?}");
        let tty = callers::run_in_pty(
            ctd.ctr().args([
                "tasks",
                "exec",
                "-t",
                "--fifo-dir",
                &fifo,
                "--exec-id",
                "e2",
                &t.id,
                "sh",
                "-c",
                "tty; for i in $(seq 50); do s=$(stty size 2>/dev/null); case \"$s\" in [1-9]*) break;; esac; sleep 0.1; done; echo \"$s\"; exit 6",
            ]),
            30,
            90,
            &[],
            Duration::from_secs(60),
        );
        assert_eq!(
            tty.code, 6,
            "{rt}: exec -t exit code; screen: {:?}",
            tty.screen
        );
        assert!(
            tty.screen.contains("/dev/pts/") && tty.screen.contains("30 90"),
            "{rt}: exec -t terminal: {:?}",
            tty.screen
        );
        let missing = ctd.ctr_out(&[
            "tasks",
            "exec",
            "--fifo-dir",
            &fifo,
            "--exec-id",
            "e3",
            &t.id,
            "/no/such/binary",
        ]);
        assert_ne!(
            missing.code, 0,
            "{rt}: exec of a missing binary: {missing:?}"
        );
        assert!(
            missing.stderr.contains("/no/such/binary"),
            "{rt}: the exec error does not name the binary: {missing:?}"
        );
        // The task is unharmed by the failed exec.
        assert_eq!(t.status(), "RUNNING", "{rt}");
        seen.push((rt, o.stdout, o.stderr, tty.screen));
        ok(&format!("{rt}: delete"), t.kill_and_delete());
        assert_nothing_left(rt, &ctd.state_root(rt), &t.id);
    }
    let (runc, vz) = (&seen[0], &seen[1]);
    assert_eq!(
        vz.1, runc.1,
        "exec stdout differs (left: vzrun, right: runc)"
    );
    assert_eq!(
        vz.2, runc.2,
        "exec stderr differs (left: vzrun, right: runc)"
    );
    assert_eq!(
        vz.3.trim_start_matches('\0'),
        runc.3.trim_start_matches('\0'),
        "exec -t terminal differs (left: vzrun, right: runc)"
    );
}

/// `ctr tasks pause` / `resume`: the status the user sees, the freezer state, and a task
/// that carries on afterwards.
#[test]
fn ctr_pause_resume_matches_runc() {
    let ctd = suite_or_skip!();
    let mut seen = Vec::new();
    for (rt, _) in callers::runtimes() {
        let t = ctd.run_detached(
            rt,
            "ctd-pause",
            &[],
            &[
                "sh",
                "-c",
                "i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.05; done",
            ],
        );
        let freezer = cgroup_of(t.pid(), "freezer").join("freezer.state");
        let p = ctd.ctr_out(&["tasks", "pause", &t.id]);
        assert_eq!(p.code, 0, "{rt}: pause: {p:?}");
        let paused = t.status();
        let frozen = read_trim(&freezer);
        let again = ctd.ctr_out(&["tasks", "pause", &t.id]);
        let r = ctd.ctr_out(&["tasks", "resume", &t.id]);
        assert_eq!(r.code, 0, "{rt}: resume: {r:?}");
        let resumed = t.status();
        let thawed = read_trim(&freezer);
        // The loop goes on after resume.
        let fifo = ctd.dir.join("fifo").display().to_string();
        let count = |n: &str| {
            ctd.ctr_out(&[
                "tasks",
                "exec",
                "--fifo-dir",
                &fifo,
                "--exec-id",
                n,
                &t.id,
                "cat",
                "/tmp/count",
            ])
            .stdout
            .trim()
            .parse::<u64>()
            .unwrap_or(0)
        };
        let c1 = count("c1");
        let moved = common::wait_until(5, || count("c2") > c1);
        assert!(moved, "{rt}: the task did not carry on after resume");
        let again_resume = ctd.ctr_out(&["tasks", "resume", &t.id]);
        seen.push((
            rt,
            paused,
            frozen,
            resumed,
            thawed,
            again.code == 0,
            again_resume.code == 0,
        ));
    }
    let (runc, vz) = (&seen[0], &seen[1]);
    let states = |s: &(&str, String, String, String, String, bool, bool)| {
        (s.1.clone(), s.2.clone(), s.3.clone(), s.4.clone())
    };
    assert_eq!(
        states(vz),
        (
            "PAUSED".to_string(),
            "FROZEN".to_string(),
            "RUNNING".to_string(),
            "THAWED".to_string()
        ),
        "vzrun: status and freezer state after pause, then after resume"
    );
    assert_eq!(
        states(vz),
        states(runc),
        "pause/resume differ (left: vzrun, right: runc)"
    );
    assert_eq!(
        (vz.5, vz.6),
        (runc.5, runc.6),
        "pausing a paused task / resuming a running one: success differs (vzrun, runc)"
    );
}

/// `ctr tasks metrics` (containerd reads the cgroup named in /proc/<init>/cgroup) and an
/// update of memory and CPU limits through the Tasks/Update API (`ctr` 1.6 has no
/// `tasks update`; the shim turns it into `<runtime> update --resources=- ID`).
#[test]
fn ctr_metrics_and_update_match_runc() {
    let ctd = suite_or_skip!();
    if !ctd.curl_h2 {
        eprintln!("SKIP: curl with HTTP/2 is needed for the Tasks/Update call");
        return;
    }
    let mut seen = Vec::new();
    for (rt, _) in callers::runtimes() {
        let t = ctd.run_detached(
            rt,
            "ctd-metrics",
            &["--memory-limit", "134217728", "--cpus", "1"],
            &["sleep", "1000"],
        );
        let metrics = |when: &str| -> Value {
            let o = ok(
                &format!("{rt}: ctr tasks metrics ({when})"),
                ctd.ctr_out(&["tasks", "metrics", "--format", "json", &t.id]),
            );
            o.json()
        };
        let before = metrics("before update");
        let limit = |m: &Value| m["memory"]["usage"]["limit"].as_u64().unwrap_or(0);
        assert_eq!(
            limit(&before),
            134217728,
            "{rt}: metrics before update: {before}"
        );
        assert_eq!(before["pids"]["current"], 1, "{rt}: {before}");
        assert!(
            before["cpu"]["usage"]["total"].as_u64().unwrap_or(0) > 0,
            "{rt}: no CPU usage in metrics: {before}"
        );
        let resources = json!({
            "memory": {"limit": 67108864},
            "cpu": {"quota": 50000, "period": 100000, "shares": 512},
            "pids": {"limit": 99},
        });
        let req = Pb::new().str(1, &t.id).msg(
            2,
            Pb::new()
                .str(
                    1,
                    "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources",
                )
                .bytes(2, resources.to_string().as_bytes()),
        );
        let upd = ctd.grpc(
            Some(&ctd.ns),
            "containerd.services.tasks.v1.Tasks/Update",
            &req.0,
        );
        assert!(upd.is_ok(), "{rt}: Tasks/Update: {upd:?}");
        let after = metrics("after update");
        let pid = t.pid();
        let files = (
            limit(&after),
            after["pids"]["limit"].clone(),
            read_trim(&cgroup_of(pid, "memory").join("memory.limit_in_bytes")),
            read_trim(&cgroup_of(pid, "cpu").join("cpu.cfs_quota_us")),
            read_trim(&cgroup_of(pid, "cpu").join("cpu.cfs_period_us")),
            read_trim(&cgroup_of(pid, "cpu").join("cpu.shares")),
            read_trim(&cgroup_of(pid, "pids").join("pids.max")),
        );
        // An update the kernel refuses reaches the user as an error.
        let bad = Pb::new().str(1, &t.id).msg(
            2,
            Pb::new()
                .str(
                    1,
                    "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources",
                )
                .bytes(2, json!({"cpu": {"cpus": "999"}}).to_string().as_bytes()),
        );
        let bad = ctd.grpc(
            Some(&ctd.ns),
            "containerd.services.tasks.v1.Tasks/Update",
            &bad.0,
        );
        let keys = |m: &Value| -> Vec<String> {
            let mut k: Vec<String> = m
                .as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default();
            k.sort();
            k
        };
        seen.push((rt, files, keys(&after), bad));
    }
    let (runc, vz) = (&seen[0], &seen[1]);
    assert_eq!(
        vz.1 .0, 67108864,
        "vzrun: memory limit in metrics after update: {:?}",
        vz.1
    );
    assert_eq!(
        vz.1, runc.1,
        "limits after update differ (left: vzrun, right: runc)"
    );
    assert_eq!(
        vz.2, runc.2,
        "metric groups differ (left: vzrun, right: runc)"
    );
    assert!(runc.3.is_err(), "runc accepted cpuset 999: {:?}", runc.3);
    assert!(vz.3.is_err(), "vzrun accepted cpuset 999: {:?}", vz.3);
}

/// `ctr tasks kill` of a signal the process handles, the exit status `ctr tasks rm`
/// reports, the error for killing a finished task, and nothing left once the task and its
/// container are deleted.
#[test]
fn ctr_kill_delete_matches_runc_and_leaves_nothing() {
    let ctd = suite_or_skip!();
    let mut seen = Vec::new();
    for (rt, _) in callers::runtimes() {
        let t = ctd.run_detached(
            rt,
            "ctd-kill",
            &[],
            &["sh", "-c", "trap 'exit 7' TERM; sleep 1000 & wait"],
        );
        let pid = t.pid();
        let cgroup = cgroup_of(pid, "memory");
        assert!(
            cgroup.to_string_lossy().contains(&t.id),
            "{rt}: init not in a cgroup named after the container: {}",
            cgroup.display()
        );
        // The shell sets its trap before it starts sleep: once sleep runs, a SIGTERM
        // reaches the trap rather than the default action.
        let procs = cgroup.join("cgroup.procs");
        assert!(
            common::wait_until(5, || read_trim(&procs).lines().count() == 2),
            "{rt}: processes: {}",
            read_trim(&procs)
        );
        let k = ctd.ctr_out(&["tasks", "kill", &t.id]);
        assert_eq!(k.code, 0, "{rt}: kill: {k:?}");
        assert!(
            t.wait_status("STOPPED"),
            "{rt}: SIGTERM did not stop the task"
        );
        let finished = ctd.ctr_out(&["tasks", "kill", "-s", "SIGKILL", &t.id]);
        let d = t.delete();
        assert_eq!(d.code, 0, "{rt}: tasks rm: {d:?}");
        assert_nothing_left(rt, &ctd.state_root(rt), &t.id);
        assert!(
            !cgroup.exists(),
            "{rt}: cgroup {} remains",
            cgroup.display()
        );
        seen.push((
            rt,
            norm(&d.stdout, &t.id),
            norm(&d.stderr, &t.id)
                .split("msg=")
                .nth(1)
                .unwrap_or("")
                .to_string(),
            finished.code,
            norm(&finished.stderr, &t.id),
        ));
    }
    let (runc, vz) = (&seen[0], &seen[1]);
    assert!(
        vz.2.contains("exit code 7"),
        "vzrun: exit status not reported: {vz:?}"
    );
    assert_eq!(
        vz.1, runc.1,
        "`ctr tasks rm` stdout differs (left: vzrun, right: runc)"
    );
    assert_eq!(
        vz.2, runc.2,
        "`ctr tasks rm` message differs (left: vzrun, right: runc)"
    );
    assert_eq!(
        (vz.3, &vz.4),
        (runc.3, &runc.4),
        "`ctr tasks kill` of a finished task differs (left: vzrun, right: runc)"
    );
}

/// `ctr tasks kill --all -s SIGKILL` of a running task with several processes: all die and
/// the task stops with status 137.
#[test]
fn ctr_kill_all_matches_runc() {
    let ctd = suite_or_skip!();
    let mut seen = Vec::new();
    for (rt, _) in callers::runtimes() {
        let t = ctd.run_detached(
            rt,
            "ctd-killall",
            &[],
            &["sh", "-c", "trap '' TERM; sleep 1000 & sleep 1001 & wait"],
        );
        let procs = cgroup_of(t.pid(), "pids").join("cgroup.procs");
        assert!(
            common::wait_until(5, || read_trim(&procs).lines().count() == 3),
            "{rt}: processes: {}",
            read_trim(&procs)
        );
        let k = ctd.ctr_out(&["tasks", "kill", "--all", "-s", "SIGKILL", &t.id]);
        assert_eq!(k.code, 0, "{rt}: kill --all: {k:?}");
        assert!(
            t.wait_status("STOPPED"),
            "{rt}: kill --all did not stop the task"
        );
        let d = t.delete();
        assert_eq!(d.code, 0, "{rt}: tasks rm: {d:?}");
        assert_nothing_left(rt, &ctd.state_root(rt), &t.id);
        seen.push(
            norm(&d.stderr, &t.id)
                .split("msg=")
                .nth(1)
                .unwrap_or("")
                .to_string(),
        );
    }
    assert!(seen[1].contains("exit code 137"), "vzrun: {seen:?}");
    assert_eq!(
        seen[1], seen[0],
        "`ctr tasks rm` after kill --all (left: vzrun, right: runc)"
    );
}

/// A container in the host's PID namespace (`--with-ns pid:/proc/1/ns/pid`): when its init
/// exits, the shim kills what the init left in the cgroup with `<runtime> kill --all ID 9`
/// (runc signals the cgroup's processes even though the container has stopped). Nothing
/// may survive the task.
#[test]
fn ctr_host_pid_ns_children_die_with_the_task() {
    let ctd = suite_or_skip!();
    let mut seen = Vec::new();
    for (rt, _) in callers::runtimes() {
        let marker = format!(
            "{}",
            4_000_000 + std::process::id() as u64 * 10 + seen.len() as u64
        );
        let id = format!("{}-{rt}", common::unique_id("ctd-hostpid"));
        let t = Task {
            ctd,
            id: id.clone(),
        };
        let host_pid_ns = format!("pid:/proc/{}/ns/pid", std::process::id());
        // The init leaves an orphan (`sleep <marker>`) behind and exits at once.
        let o = run(&mut ctd.run_cmd(
            rt,
            &["-d", "--with-ns", &host_pid_ns],
            &id,
            &["sh", "-c", &format!("sleep {marker} & echo started")],
        ));
        ok(&format!("{rt}: ctr run -d --with-ns pid"), o);
        assert!(t.wait_status("STOPPED"), "{rt}: init did not exit");
        let survivors = |m: &str| callers::processes_mentioning(&format!("sleep {m}"));
        // The shim's kill --all runs when it sees the init exit; give it a moment.
        common::wait_until(3, || survivors(&marker).is_empty());
        let left_running = survivors(&marker);
        let d = t.delete();
        common::wait_until(3, || survivors(&marker).is_empty());
        let after_delete = survivors(&marker);
        for p in survivors(&marker) {
            if let Some(pid) = p.split(':').next().and_then(|x| x.parse::<i32>().ok()) {
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        seen.push((rt, left_running.is_empty(), after_delete.is_empty(), d.code));
    }
    let (runc, vz) = (&seen[0], &seen[1]);
    assert!(
        runc.1,
        "runc: the orphan survived its stopped task: {seen:?}"
    );
    assert_eq!(
        (vz.1, vz.2, vz.3),
        (runc.1, runc.2, runc.3),
        "vzrun leaves the init's orphans running after the task stopped \
         (orphan gone while stopped, gone after delete, tasks rm status): {seen:?}"
    );
}

/// A create that vzrun refuses (an unknown `io.vzrun.` annotation): vzrun's message reaches
/// the ctr user through the shim, which reads it from the JSON log (`--log <bundle>/log.json
/// --log-format json`); runc, which does not know the prefix, runs the container. A missing
/// binary fails under both runtimes with a message naming it. Nothing is left behind.
#[test]
fn ctr_create_error_reaches_user() {
    let ctd = suite_or_skip!();
    let wdir = tempfile::Builder::new()
        .prefix("vzt-wrap-")
        .tempdir()
        .unwrap();
    let wrapper = callers::recording_wrapper(wdir.path(), "vzrun-rec");
    let want = "annotation io.vzrun.bogus: unknown vzrun annotation";

    // vzrun (through the recording wrapper, so the test sees argv and log.json).
    let id = format!("{}-vzrun", common::unique_id("ctd-err"));
    let root = ctd.runc_root("vzrun");
    let mut c = ctd.ctr();
    c.arg("run")
        .args(["--rm", "--fifo-dir"])
        .arg(ctd.dir.join("fifo"))
        .arg("--runc-root")
        .arg(&root)
        .arg("--runc-binary")
        .arg(&wrapper)
        .args([
            "--annotation",
            "io.vzrun.bogus=1",
            IMAGE,
            &id,
            "echo",
            "ran",
        ]);
    let o = run(&mut c);
    assert_ne!(
        o.code, 0,
        "vzrun ran a container with an unknown io.vzrun. annotation: {o:?}"
    );
    assert!(
        o.stderr.contains(want),
        "the ctr user does not see vzrun's error: {o:?}"
    );
    assert!(!o.stdout.contains("ran"), "{o:?}");
    let (argv, logs) = callers::wrapper_records(wdir.path(), "vzrun-rec");
    let create = argv
        .iter()
        .find(|a| a.contains(" create "))
        .unwrap_or_else(|| panic!("the shim never called create: {argv:#?}"));
    assert!(
        create.contains("--log-format json") && create.contains("/log.json"),
        "create argv: {create}"
    );
    // The log file holds JSON lines with level, msg and time; the error line has the text.
    let mut error_msgs = Vec::new();
    for log in &logs {
        for line in log.lines().filter(|l| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line:?}"));
            for k in ["level", "msg", "time"] {
                assert!(v[k].is_string(), "log line without {k}: {line}");
            }
            assert!(
                chrono::DateTime::parse_from_rfc3339(v["time"].as_str().unwrap()).is_ok(),
                "time is not RFC 3339: {line}"
            );
            if v["level"] == "error" {
                error_msgs.push(v["msg"].as_str().unwrap().to_string());
            }
        }
    }
    assert!(
        error_msgs.iter().any(|m| m == want),
        "no error line with {want:?} in the JSON log: {logs:#?}"
    );
    assert_nothing_left("vzrun", &ctd.state_root("vzrun"), &id);
    assert!(
        !ctd.ctr_out(&["containers", "ls", "-q"])
            .stdout
            .contains(&id),
        "ctr run --rm kept the failed container"
    );

    // runc with the same annotation runs the container.
    let id = format!("{}-runc", common::unique_id("ctd-err"));
    let o = run(&mut ctd.run_cmd(
        "runc",
        &["--rm", "--annotation", "io.vzrun.bogus=1"],
        &id,
        &["echo", "ran"],
    ));
    assert_eq!((o.code, o.stdout.as_str()), (0, "ran\n"), "runc: {o:?}");

    // A missing binary: both fail, both name it.
    let mut seen = Vec::new();
    for (rt, _) in callers::runtimes() {
        let id = format!("{}-{rt}", common::unique_id("ctd-nobin"));
        let o = run(&mut ctd.run_cmd(rt, &["--rm"], &id, &["/no/such/binary"]));
        assert_ne!(o.code, 0, "{rt}: {o:?}");
        assert!(
            o.stderr.contains("OCI runtime create failed") && o.stderr.contains("/no/such/binary"),
            "{rt}: the ctr user does not see which binary is missing: {o:?}"
        );
        assert_nothing_left(rt, &ctd.state_root(rt), &id);
        seen.push(o.code);
    }
    assert_eq!(
        seen[1], seen[0],
        "exit code of ctr for a missing binary (vzrun, runc)"
    );
}

// ---------------------------------------------------------------------------------------
// Checkpoint and restore (issue #6)
// ---------------------------------------------------------------------------------------

/// Counts in the shell, so a restarted process would start again near 1.
const COUNTER: &str =
    "i=0; while true; do i=$((i+1)); echo $i; echo $i > /tmp/count; sleep 0.05; done";

fn count(t: &Task) -> u64 {
    let exec_id = format!("x{}", std::process::id());
    let o = t.ctd.ctr_out(&[
        "tasks",
        "exec",
        "--exec-id",
        &exec_id,
        &t.id,
        "cat",
        "/tmp/count",
    ]);
    o.stdout.trim().parse().unwrap_or(0)
}

/// A checkpoint image in the suite's image store, removed when dropped.
struct CheckpointImage<'a>(&'a Containerd, String);

impl Drop for CheckpointImage<'_> {
    fn drop(&mut self) {
        self.0.ctr_out(&["images", "rm", &self.1]);
    }
}

/// `ctr task checkpoint` (the shim calls `checkpoint --image-path --work-path
/// [--leave-running]`), then `ctr containers checkpoint --rw --task` into a checkpoint
/// image and `ctr containers restore --rw --live` of it once the container is gone (the
/// shim calls `restore ... -no-subreaper --bundle`): the same flow with runc and vzrun.
#[test]
fn ctr_task_checkpoint_and_container_restore() {
    let ctd = suite_or_skip!();
    if let Some(why) = common::criu_missing() {
        eprintln!("SKIP: {why}");
        return;
    }
    for (rt, _) in callers::runtimes() {
        let t = ctd.run_detached(rt, "ctdck", &[], &["sh", "-c", COUNTER]);
        let id = t.id.clone();
        assert!(
            common::wait_until(5, || count(&t) > 5),
            "{rt}: not counting"
        );

        // A checkpoint to a directory that leaves the task running.
        let img = ctd.dir.join("images").join(&id);
        let o = ctd.ctr_out(&[
            "tasks",
            "checkpoint",
            "--image-path",
            img.to_str().unwrap(),
            &id,
        ]);
        assert_eq!(o.code, 0, "{rt}: ctr task checkpoint: {o:?}");
        assert!(
            img.join("inventory.img").exists(),
            "{rt}: no image in {}",
            img.display()
        );
        assert_eq!(t.status(), "RUNNING", "{rt}");
        let n = count(&t);
        assert!(
            common::wait_until(5, || count(&t) > n),
            "{rt}: stopped counting"
        );

        // A checkpoint image, then the container gone and restored from it. --rw: the
        // counter's file (which the shell may hold open at the dump) comes back too.
        let image = CheckpointImage(ctd, format!("vzt.example/ckpt/{id}:1"));
        let o = ctd.ctr_out(&[
            "containers",
            "checkpoint",
            "--rw",
            "--task",
            "--image",
            &id,
            &image.1,
        ]);
        assert_eq!(o.code, 0, "{rt}: ctr containers checkpoint: {o:?}");
        let at = count(&t);
        assert_eq!(t.kill_and_delete().code, 0, "{rt}: tasks rm");

        // `ctr containers restore --live` stays attached to the task: run it aside.
        let log_path = ctd.dir.join(format!("{id}.restore.log"));
        let log = std::fs::File::create(&log_path).unwrap();
        let restore = ctd
            .ctr()
            .args(["containers", "restore", "--rw", "--live", &id, &image.1])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let _restore = Reaped(restore);
        assert!(
            common::wait_until(20, || t.status() == "RUNNING"),
            "{rt}: restored task not running: {}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        let mut after = 0;
        common::wait_until(5, || {
            after = count(&t);
            after > at
        });
        // The image was taken after `at` was read: the count goes on from there.
        assert!(
            after > at,
            "{rt}: count {after} after restore, {at} at checkpoint"
        );
    }
}

/// A child process stopped (TERM, then KILL) when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        callers::stop_child(&mut self.0, Duration::from_secs(10));
    }
}

// ---------------------------------------------------------------------------------------
// CRI cases
// ---------------------------------------------------------------------------------------

const RUNTIME_SVC: &str = "runtime.v1.RuntimeService";

fn cri(ctd: &Containerd, method: &str, msg: Pb) -> Result<Fields, (u32, String)> {
    ctd.grpc(None, &format!("{RUNTIME_SVC}/{method}"), &msg.0)
        .map(|b| Fields::parse(&b))
}

#[track_caller]
fn cri_ok(ctd: &Containerd, method: &str, msg: Pb) -> Fields {
    match cri(ctd, method, msg) {
        Ok(f) => f,
        Err((code, m)) => panic!(
            "CRI {method} failed (grpc status {code}): {m}\ncontainerd log tail:\n{}",
            log_tail(ctd)
        ),
    }
}

fn log_tail(ctd: &Containerd) -> String {
    let s = std::fs::read_to_string(ctd.dir.join("containerd.log")).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// containerd loads the CRI plugin with the `vzrun` handler as configured.
#[test]
fn cri_loads_the_vzrun_handler() {
    let ctd = suite_or_skip!();
    let plugins = ok("ctr plugins ls", run(ctd.ctr_raw().args(["plugins", "ls"])));
    let cri_line = plugins
        .stdout
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("cri"))
        .unwrap_or_else(|| panic!("no cri plugin: {}", plugins.stdout));
    assert!(
        cri_line.trim_end().ends_with("ok"),
        "cri plugin not ok: {cri_line}"
    );
    if !ctd.curl_h2 {
        eprintln!("SKIP (partly): curl with HTTP/2 is needed for the CRI Status call");
        return;
    }
    let v = cri_ok(ctd, "Version", Pb::new().str(1, "v1"));
    assert_eq!(v.string(2), "containerd", "runtime_name");
    let st = cri_ok(ctd, "Status", Pb::new().uint(1, 1));
    // RuntimeReady is true (NetworkReady is false: no CNI config, pods use the host network).
    let conds: Vec<(String, u64)> = st
        .msg(1)
        .all_bytes(1)
        .iter()
        .map(|c| {
            let f = Fields::parse(c);
            (f.string(1), f.uint(2))
        })
        .collect();
    assert!(
        conds.contains(&("RuntimeReady".to_string(), 1)),
        "runtime not ready: {conds:?}"
    );
    let info = st.map(2);
    let config: Value = info
        .iter()
        .find(|(k, _)| k == "config")
        .map(|(_, v)| serde_json::from_str(v).unwrap())
        .unwrap_or_else(|| panic!("no config in the CRI status info: {info:?}"));
    let h = &config["containerd"]["runtimes"]["vzrun"];
    assert_eq!(h["runtimeType"], "io.containerd.runc.v2", "{h}");
    assert_eq!(h["options"]["BinaryName"], common::VZRUN, "{h}");
}

fn pod_config(name: &str, uid: &str, cgroup_parent: &str, log_dir: &Path) -> Pb {
    Pb::new()
        .msg(
            1,
            Pb::new().str(1, name).str(2, uid).str(3, "vzt").uint(4, 0),
        )
        .str(3, &log_dir.display().to_string())
        .msg(
            8,
            Pb::new().str(1, cgroup_parent).msg(
                2,
                // network NODE (no CNI here), pid CONTAINER, ipc POD
                Pb::new().msg(1, Pb::new().uint(1, 2).uint(2, 1).uint(3, 0)),
            ),
        )
}

fn container_config(name: &str, args: &[&str], annotations: &[(&str, &str)]) -> Pb {
    Pb::new()
        .msg(1, Pb::new().str(1, name))
        .msg(2, Pb::new().str(1, IMAGE))
        .strs(3, args)
        .map(10, annotations)
        .str(11, &format!("{name}.log"))
        .msg(15, Pb::new())
}

/// A pod sandbox of the CRI; stopped and removed on drop.
struct Pod<'a> {
    ctd: &'a Containerd,
    id: String,
    config: Pb,
    log_dir: tempfile::TempDir,
}

impl<'a> Pod<'a> {
    fn run(ctd: &'a Containerd, handler: &str, tag: &str) -> Pod<'a> {
        let log_dir = tempfile::Builder::new()
            .prefix("vzt-podlogs-")
            .tempdir()
            .unwrap();
        let name = common::unique_id(tag);
        let config = pod_config(
            &name,
            &format!("uid-{name}"),
            &ctd.cri_cgroup,
            log_dir.path(),
        );
        let r = cri_ok(
            ctd,
            "RunPodSandbox",
            Pb::new().msg(1, config.clone()).str(2, handler),
        );
        Pod {
            ctd,
            id: r.string(1),
            config,
            log_dir,
        }
    }

    fn create(
        &self,
        name: &str,
        args: &[&str],
        annotations: &[(&str, &str)],
    ) -> Result<String, (u32, String)> {
        cri(
            self.ctd,
            "CreateContainer",
            Pb::new()
                .str(1, &self.id)
                .msg(2, container_config(name, args, annotations))
                .msg(3, self.config.clone()),
        )
        .map(|f| f.string(1))
    }

    fn remove(&self) {
        cri_ok(self.ctd, "StopPodSandbox", Pb::new().str(1, &self.id));
        cri_ok(self.ctd, "RemovePodSandbox", Pb::new().str(1, &self.id));
    }
}

impl Drop for Pod<'_> {
    fn drop(&mut self) {
        let _ = cri(self.ctd, "StopPodSandbox", Pb::new().str(1, &self.id));
        let _ = cri(self.ctd, "RemovePodSandbox", Pb::new().str(1, &self.id));
    }
}

/// The state ContainerStatus reports: 0 created, 1 running, 2 exited.
fn cri_state(ctd: &Containerd, id: &str) -> (u64, i64) {
    let s = cri_ok(ctd, "ContainerStatus", Pb::new().str(1, id)).msg(1);
    (s.uint(3), s.uint(7) as i32 as i64)
}

/// A pod as a kubelet runs it, through the CRI: sandbox with the runtime handler, a
/// container, ExecSync, status, logs, stop and removal. Same with the `runc` handler.
#[test]
fn cri_pod_lifecycle_matches_runc() {
    let ctd = suite_or_skip!();
    if !ctd.curl_h2 {
        eprintln!("SKIP: curl with HTTP/2 is needed for the CRI calls");
        return;
    }
    let mut seen = Vec::new();
    for (handler, _) in callers::runtimes() {
        let root = ctd.dir.join("cri-root").join(handler).join(CRI_NS);
        let pod = Pod::run(ctd, handler, "cri-pod");
        // The sandbox's init runs under this handler's runtime.
        assert!(
            common::dir_entries(&root).contains(&pod.id),
            "{handler}: the sandbox is not in {}: {:?}",
            root.display(),
            common::dir_entries(&root)
        );
        let cid = pod
            .create(
                "app",
                &[
                    "sh",
                    "-c",
                    "echo started; echo to-stderr >&2; exec sleep 1000",
                ],
                &[],
            )
            .unwrap_or_else(|e| panic!("{handler}: CreateContainer: {e:?}"));
        assert_eq!(cri_state(ctd, &cid).0, 0, "{handler}: created");
        cri_ok(ctd, "StartContainer", Pb::new().str(1, &cid));
        assert_eq!(cri_state(ctd, &cid).0, 1, "{handler}: running");
        assert!(
            common::dir_entries(&root).contains(&cid),
            "{handler}: container not in its runtime's root"
        );
        let ex = cri_ok(
            ctd,
            "ExecSync",
            Pb::new()
                .str(1, &cid)
                .strs(
                    2,
                    &[
                        "sh",
                        "-c",
                        "echo exec-out; echo exec-err >&2; id; cat /proc/1/cmdline | tr '\\0' ' '; echo; exit 3",
                    ],
                )
                .uint(3, 30),
        );
        let exec = (
            String::from_utf8_lossy(&ex.bytes(1)).into_owned(),
            String::from_utf8_lossy(&ex.bytes(2)).into_owned(),
            ex.uint(3) as i32,
        );
        let log_path = pod.log_dir.path().join("app.log");
        let logged = common::wait_until(5, || {
            std::fs::read_to_string(&log_path)
                .map(|s| s.contains("to-stderr"))
                .unwrap_or(false)
        });
        assert!(
            logged,
            "{handler}: container log: {:?}",
            std::fs::read_to_string(&log_path)
        );
        // CRI log lines: "<time> <stream> <tag> <text>"; keep stream and text.
        let log: Vec<String> = std::fs::read_to_string(&log_path)
            .unwrap()
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.splitn(4, ' ').collect();
                format!("{} {}", f.get(1).unwrap_or(&""), f.get(3).unwrap_or(&""))
            })
            .collect();
        let stop = cri(ctd, "StopContainer", Pb::new().str(1, &cid).uint(2, 1));
        assert!(stop.is_ok(), "{handler}: StopContainer: {stop:?}");
        let (state, code) = cri_state(ctd, &cid);
        cri_ok(ctd, "RemoveContainer", Pb::new().str(1, &cid));
        pod.remove();
        // Nothing of the pod or its container is left.
        assert_nothing_left(handler, &root, &cid);
        assert_nothing_left(handler, &root, &pod.id);
        let mut sorted_log = log.clone();
        sorted_log.sort();
        seen.push((handler, exec, sorted_log, state, code));
    }
    let (runc, vz) = (&seen[0], &seen[1]);
    assert_eq!(vz.1 .2, 3, "vzrun: ExecSync exit code: {:?}", vz.1);
    assert_eq!(vz.1, runc.1, "ExecSync differs (left: vzrun, right: runc)");
    assert_eq!(
        vz.2, runc.2,
        "container log differs (left: vzrun, right: runc)"
    );
    assert_eq!(
        (vz.3, vz.4),
        (runc.3, runc.4),
        "state and exit code after StopContainer differ (vzrun, runc)"
    );
}

/// The `vzrun` handler lets `io.vzrun.` annotations through (`container_annotations`), so a
/// cluster can configure VEs per pod; vzrun refuses an unknown one and its message reaches
/// the CRI client. The `runc` handler passes no such annotation and starts the container.
#[test]
fn cri_vzrun_annotation_error_reaches_client() {
    let ctd = suite_or_skip!();
    if !ctd.curl_h2 {
        eprintln!("SKIP: curl with HTTP/2 is needed for the CRI calls");
        return;
    }
    for (handler, _) in callers::runtimes() {
        let root = ctd.dir.join("cri-root").join(handler).join(CRI_NS);
        let pod = Pod::run(ctd, handler, "cri-ann");
        let cid = pod
            .create("app", &["sleep", "1000"], &[("io.vzrun.bogus", "1")])
            .unwrap_or_else(|e| panic!("{handler}: CreateContainer: {e:?}"));
        let started = cri(ctd, "StartContainer", Pb::new().str(1, &cid));
        if handler == "vzrun" {
            let (_, msg) = started.expect_err("vzrun started a container with io.vzrun.bogus");
            assert!(
                msg.contains("annotation io.vzrun.bogus: unknown vzrun annotation"),
                "the CRI client does not see vzrun's error: {msg}"
            );
        } else {
            assert!(started.is_ok(), "runc: {started:?}");
        }
        let _ = cri(ctd, "StopContainer", Pb::new().str(1, &cid).uint(2, 0));
        cri_ok(ctd, "RemoveContainer", Pb::new().str(1, &cid));
        pod.remove();
        assert_nothing_left(handler, &root, &cid);
        assert_nothing_left(handler, &root, &pod.id);
    }
}

/// A container from an image whose config has no Env, started with the image's own command
/// (an absolute path): the CRI runs it as the image says (it adds a default PATH for
/// containers, not for pod sandboxes).
#[test]
fn cri_image_without_env_matches_runc() {
    let ctd = suite_or_skip!();
    if !ctd.curl_h2 {
        eprintln!("SKIP: curl with HTTP/2 is needed for the CRI calls");
        return;
    }
    let mut seen = Vec::new();
    for (handler, _) in callers::runtimes() {
        let pod = Pod::run(ctd, handler, "cri-noenv");
        let cfg = Pb::new()
            .msg(1, Pb::new().str(1, "noenv"))
            .msg(2, Pb::new().str(1, NOENV_IMAGE))
            .str(11, "noenv.log")
            .msg(15, Pb::new());
        let cid = cri(
            ctd,
            "CreateContainer",
            Pb::new()
                .str(1, &pod.id)
                .msg(2, cfg)
                .msg(3, pod.config.clone()),
        )
        .map(|f| f.string(1));
        let cid = cid.unwrap_or_else(|e| panic!("{handler}: CreateContainer: {e:?}"));
        let started = cri(ctd, "StartContainer", Pb::new().str(1, &cid)).map(|_| ());
        let log_path = pod.log_dir.path().join("noenv.log");
        common::wait_until(5, || cri_state(ctd, &cid).0 == 2);
        let (state, code) = cri_state(ctd, &cid);
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let text: Vec<String> = log
            .lines()
            .map(|l| l.splitn(4, ' ').nth(3).unwrap_or("").to_string())
            .collect();
        let _ = cri(ctd, "RemoveContainer", Pb::new().str(1, &cid));
        pod.remove();
        seen.push((handler, started, state, code, text));
    }
    assert_eq!(
        (&seen[0].1, seen[0].2, seen[0].3, &seen[0].4),
        (&Ok(()), 2, 0, &vec!["no PATH needed".to_string()]),
        "runc: {seen:?}"
    );
    assert_eq!(
        (&seen[1].1, seen[1].2, seen[1].3, &seen[1].4),
        (&seen[0].1, seen[0].2, seen[0].3, &seen[0].4),
        "a container from an image without Env (left: vzrun, right: runc)"
    );
}
