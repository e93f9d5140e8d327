//! podman drives vzrun end to end (issue #3): podman (through conmon) with vzrun as its OCI
//! runtime, chosen two ways: `--runtime <path to vzrun>`, and a `vzrun` entry in
//! `[engine.runtimes]` of a private containers.conf (`--runtime vzrun`).
//!
//! Everything podman keeps is private to the suite: `--root`, `--runroot`, `--tmpdir`,
//! `--volumepath`, `--network-config-dir` in a temp dir, file locks (not /dev/shm), the
//! cgroupfs manager under a cgroup parent of the suite's own, file events, no network
//! (`netns = "none"`), the vfs storage driver (no mounts of its own). There is no registry:
//! the suite builds an OCI archive of bundles/busybox/rootfs once and `podman load`s it.
//!
//! The checkpoint cases (issue #6) run `podman container checkpoint`/`restore` (with
//! --tcp-established, with a terminal, and --export/--import into a new container) with
//! CRIU; the process counts in its shell and prints to conmon's pipes, so a restore that
//! lost its state or its stdio shows in `podman logs`.
//!
//! podman passes `--log`/`--log-format json` only to runtimes it knows by name, so vzrun runs
//! without them and its errors must reach the user on stderr. Each case runs the same
//! operation with runc and with vzrun and compares what the podman user sees.

mod callers;
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use callers::{cgroup_of, ok, read_trim, run, HostDirTrace, IMAGE};
use common::Out;

// ---------------------------------------------------------------------------------------
// The suite's podman
// ---------------------------------------------------------------------------------------

struct Podman {
    dir: PathBuf,
    conf: PathBuf,
    /// Parent cgroup of every container (and of conmon) the suite starts.
    cgroup_parent: String,
    has_update: bool,
}

static SUITE: OnceLock<Result<Podman, String>> = OnceLock::new();

fn suite() -> Option<&'static Podman> {
    if let Some(why) = callers::missing_tool(&["podman", "conmon", "runc", "tar", "sha256sum"]) {
        eprintln!("SKIP: {why}");
        return None;
    }
    match SUITE.get_or_init(setup) {
        Ok(p) => Some(p),
        Err(e) => panic!("{e}"),
    }
}

macro_rules! suite_or_skip {
    () => {
        match suite() {
            Some(p) => p,
            None => return,
        }
    };
}

fn containers_conf() -> String {
    format!(
        r#"[containers]
# Root here may lack CAP_SYS_RESOURCE: podman's default ulimits (raising hard limits) fail.
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
netns = "none"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
lock_type = "file"

[engine.runtimes]
vzrun = ["{vzrun}"]
"#,
        vzrun = common::VZRUN
    )
}

fn setup() -> Result<Podman, String> {
    callers::sweep_stale("pod", |pid| vec![format!("vzt-pod-{pid}")]);
    let dir = callers::suite_dir("pod");
    let var_lib = HostDirTrace::new("/var/lib/containers");
    var_lib.note_in(&dir, &["cache/blob-info-cache-v1.boltdb"]);
    let p = Podman {
        conf: dir.join("containers.conf"),
        cgroup_parent: format!("/vzt-pod-{}", std::process::id()),
        dir: dir.clone(),
        has_update: false,
    };
    {
        let (dir, cg) = (dir.clone(), p.cgroup_parent.clone());
        let pm = Podman {
            dir: dir.clone(),
            conf: p.conf.clone(),
            cgroup_parent: cg.clone(),
            has_update: false,
        };
        callers::at_exit(move || {
            // Containers first (conmon, runtime state), then what may still hold on.
            callers::run_with_deadline(
                pm.cmd().args(["rm", "--all", "--force", "--time", "0"]),
                None,
                Duration::from_secs(60),
            );
            for proc_line in callers::processes_mentioning(&dir.display().to_string()) {
                if let Some(pid) = proc_line
                    .split(':')
                    .next()
                    .and_then(|x| x.parse::<i32>().ok())
                {
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
            callers::remove_cgroup_tree(&cg);
            callers::remove_suite_dir(&dir);
            var_lib.remove_if_ours(&["cache/blob-info-cache-v1.boltdb"]);
        });
    }
    std::fs::write(&p.conf, containers_conf()).unwrap();
    for sub in ["root", "runroot", "tmp", "volumes", "networks", "export"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let archive = callers::oci_archive(&dir, "image", &[callers::busybox_image()]);
    let o = run(p.cmd().arg("load").arg("-i").arg(&archive));
    if o.code != 0 {
        return Err(format!("podman load: {o:?}"));
    }
    let has_update = run(p.cmd().args(["update", "--help"])).code == 0;
    Ok(Podman { has_update, ..p })
}

impl Podman {
    /// `podman` with the suite's private storage, state, config and cgroup manager.
    fn cmd(&self) -> Command {
        callers::podman_cmd(&self.dir, &self.conf)
    }

    fn out(&self, args: &[&str]) -> Out {
        run(self.cmd().args(args))
    }

    /// `podman run` (or `create`) options common to every case, and the runtime.
    fn run_args(&self, verb: &str, runtime: &str) -> Vec<String> {
        vec![
            verb.to_string(),
            "--pull=never".into(),
            "--cgroup-parent".into(),
            self.cgroup_parent.clone(),
            "--runtime".into(),
            runtime.to_string(),
        ]
    }

    fn run_cmd(&self, runtime: &str, opts: &[&str], args: &[&str]) -> Command {
        let mut c = self.cmd();
        c.args(self.run_args("run", runtime))
            .args(opts)
            .arg(IMAGE)
            .args(args);
        c
    }

    /// `podman run -d --name NAME`; the guard removes the container.
    fn run_detached(&self, runtime: &str, tag: &str, opts: &[&str], args: &[&str]) -> Ctr<'_> {
        let name = common::unique_id(tag);
        let ctr = Ctr {
            pm: self,
            name: name.clone(),
        };
        let mut o = vec!["-d", "--name", &name];
        o.extend_from_slice(opts);
        let out = ok(
            &format!("{runtime}: podman run -d"),
            run(&mut self.run_cmd(runtime, &o, args)),
        );
        assert_eq!(out.stdout.trim().len(), 64, "no container id: {out:?}");
        assert!(
            ctr.wait_status("running"),
            "{runtime}: {name} never ran: {:?}",
            ctr.inspect("{{.State.Status}}")
        );
        ctr
    }
}

/// A named container; removed (forced) when dropped.
struct Ctr<'a> {
    pm: &'a Podman,
    name: String,
}

impl Ctr<'_> {
    fn inspect(&self, format: &str) -> String {
        self.pm
            .out(&["inspect", "--format", format, &self.name])
            .stdout
            .trim()
            .to_string()
    }

    fn status(&self) -> String {
        self.inspect("{{.State.Status}}")
    }

    fn wait_status(&self, want: &str) -> bool {
        common::wait_until(10, || self.status() == want)
    }

    fn id(&self) -> String {
        self.inspect("{{.Id}}")
    }

    fn pid(&self) -> i32 {
        self.inspect("{{.State.Pid}}").parse().unwrap_or(0)
    }

    fn exec(&self, args: &[&str]) -> Out {
        let mut c = self.pm.cmd();
        c.arg("exec").arg(&self.name).args(args);
        run(&mut c)
    }
}

impl Drop for Ctr<'_> {
    fn drop(&mut self) {
        self.pm
            .out(&["rm", "--force", "--time", "0", "--ignore", &self.name]);
    }
}

// ---------------------------------------------------------------------------------------
// Helpers of the cases
// ---------------------------------------------------------------------------------------

/// The runtimes compared: (name, what `--runtime` gets). vzrun goes by its path here; the
/// containers.conf entry has a case of its own.
fn runtimes() -> Vec<(&'static str, String)> {
    callers::runtimes()
}

/// The runtime's default state root, the one podman's runtime calls use (podman passes no
/// `--root`).
fn runtime_root(rt: &str) -> PathBuf {
    PathBuf::from(match rt {
        "vzrun" => "/run/vzrun",
        _ => "/run/runc",
    })
}

/// Waits until nothing of the container `full_id` is left: runtime state, cgroups, mounts,
/// processes (conmon's command line names the id).
fn assert_nothing_left(rt: &str, full_id: &str) {
    let mut left = Vec::new();
    let clean = common::wait_until(10, || {
        left.clear();
        let state = runtime_root(rt).join(full_id);
        if state.exists() {
            left.push(format!("runtime state: {}", state.display()));
        }
        left.extend(callers::traces_of(full_id));
        left.is_empty()
    });
    assert!(clean, "{rt}: left behind by {full_id}: {left:#?}");
}

/// The last line of podman's stderr (its error message), for the failure reports.
fn last_line(s: &str) -> String {
    s.lines().last().unwrap_or("").to_string()
}

// ---------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------

/// `podman run --rm`: what the process sees of itself (identity, environment,
/// capabilities, limits, mounts), its stdout, stderr and exit code, and nothing left after.
#[test]
fn podman_run_rm_matches_runc() {
    let pm = suite_or_skip!();
    let script = r#"hostname; echo to-stdout; echo to-stderr >&2
id; pwd; env | sort
grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status
echo "pid=$$"
awk '{print $5, $9}' /proc/self/mountinfo | sort
ulimit -n; ulimit -u; umask
exit 3"#;
    let mut seen = Vec::new();
    for (rt, bin) in runtimes() {
        let name = common::unique_id("pod-run");
        let o = run(&mut pm.run_cmd(&bin, &["--rm", "--name", &name], &["sh", "-c", script]));
        assert_eq!(o.code, 3, "{rt}: podman run exit code: {o:?}");
        assert!(o.stderr.contains("to-stderr"), "{rt}: {o:?}");
        // The hostname is the container's short id: different per run.
        let host = o.stdout.lines().next().unwrap_or("").to_string();
        assert_eq!(host.len(), 12, "{rt}: hostname: {o:?}");
        let norm = |s: &str| callers::normalize(s, &[(&host, "HOST"), (&name, "NAME")]);
        seen.push((rt, norm(&o.stdout), norm(&o.stderr)));
        assert!(
            pm.out(&["container", "exists", &name]).code != 0,
            "{rt}: --rm kept the container"
        );
        let cgroups = common::cgroups_named(&host);
        assert!(cgroups.is_empty(), "{rt}: cgroups left: {cgroups:?}");
    }
    let (runc, vz) = (&seen[0], &seen[1]);
    assert_eq!(
        vz.1, runc.1,
        "stdout of `podman run` differs (left: vzrun, right: runc)"
    );
    assert_eq!(
        vz.2, runc.2,
        "stderr of `podman run` differs (left: vzrun, right: runc)"
    );
}

/// `--runtime vzrun` resolves through `[engine.runtimes]` in containers.conf: the container
/// records the runtime's name, `podman info` reports vzrun's path and version, and it runs.
#[test]
fn podman_runtime_from_containers_conf() {
    let pm = suite_or_skip!();
    let info = ok(
        "podman info",
        pm.out(&[
            "--runtime",
            "vzrun",
            "info",
            "--format",
            "{{.Host.OCIRuntime.Name}}|{{.Host.OCIRuntime.Path}}|{{.Host.OCIRuntime.Version}}",
        ]),
    );
    let f: Vec<&str> = info.stdout.trim().splitn(3, '|').collect();
    assert_eq!(f[0], "vzrun", "{info:?}");
    assert_eq!(f[1], common::VZRUN, "{info:?}");
    assert!(f[2].starts_with("vzrun version "), "{info:?}");
    let mut seen = Vec::new();
    for rt in ["runc", "vzrun"] {
        let name = common::unique_id("pod-conf");
        let mut c = pm.cmd();
        c.args(pm.run_args("create", rt))
            .args(["--name", &name, IMAGE, "echo", "configured"]);
        let created = ok(&format!("{rt}: podman create"), run(&mut c));
        let ctr = Ctr {
            pm,
            name: name.clone(),
        };
        let id = created.stdout.trim().to_string();
        assert_eq!(ctr.inspect("{{.OCIRuntime}}"), rt);
        let started = pm.out(&["start", "--attach", &name]);
        assert_eq!(started.code, 0, "{rt}: podman start --attach: {started:?}");
        let logs = pm.out(&["logs", &name]);
        seen.push((
            rt,
            started.stdout,
            logs.stdout,
            ctr.inspect("{{.State.ExitCode}}"),
        ));
        drop(ctr);
        assert_nothing_left(rt, &id);
    }
    assert_eq!(seen[0].2, "configured\n", "runc: {seen:?}");
    assert_eq!(
        (&seen[1].1, &seen[1].2, &seen[1].3),
        (&seen[0].1, &seen[0].2, &seen[0].3),
        "start --attach / logs / exit code differ (left: vzrun, right: runc)"
    );
}

/// A detached container through its whole life: ps, logs, exec, pause and unpause, update,
/// stop (the process handles SIGTERM), inspect, rm; then nothing is left.
#[test]
fn podman_detached_lifecycle_matches_runc() {
    let pm = suite_or_skip!();
    let mut seen = Vec::new();
    for (rt, bin) in runtimes() {
        let c = pm.run_detached(
            &bin,
            "pod-life",
            &[],
            &[
                "sh",
                "-c",
                "trap 'echo got-term; exit 3' TERM; echo started; sleep 1000 & wait",
            ],
        );
        let id = c.id();
        let ps = pm.out(&[
            "ps",
            "--filter",
            &format!("name={}", c.name),
            "--format",
            "{{.Names}} {{.Status}}",
        ]);
        assert!(
            ps.stdout.contains(&format!("{} Up", c.name)),
            "{rt}: ps: {ps:?}"
        );
        assert!(
            common::wait_until(5, || pm.out(&["logs", &c.name]).stdout.contains("started")),
            "{rt}: logs"
        );
        let ex = c.exec(&["sh", "-c", "echo in-exec; echo exec-err >&2; exit 5"]);
        assert_eq!(ex.code, 5, "{rt}: exec: {ex:?}");
        let top = pm.out(&["top", &c.name, "args"]);

        let p = pm.out(&["pause", &c.name]);
        assert_eq!(p.code, 0, "{rt}: pause: {p:?}");
        let paused = (
            c.status(),
            pm.out(&[
                "ps",
                "-a",
                "--filter",
                &format!("name={}", c.name),
                "--format",
                "{{.Status}}",
            ])
            .stdout
            .trim()
            .to_string(),
            read_trim(&cgroup_of(c.pid(), "freezer").join("freezer.state")),
        );
        let u = pm.out(&["unpause", &c.name]);
        assert_eq!(u.code, 0, "{rt}: unpause: {u:?}");
        let unpaused = (
            c.status(),
            read_trim(&cgroup_of(c.pid(), "freezer").join("freezer.state")),
        );

        let updated = if pm.has_update {
            let u = pm.out(&["update", "--memory", "64m", "--cpus", "0.5", &c.name]);
            assert_eq!(u.code, 0, "{rt}: podman update: {u:?}");
            let pid = c.pid();
            Some((
                read_trim(&cgroup_of(pid, "memory").join("memory.limit_in_bytes")),
                read_trim(&cgroup_of(pid, "cpu").join("cpu.cfs_quota_us")),
                read_trim(&cgroup_of(pid, "cpu").join("cpu.cfs_period_us")),
            ))
        } else {
            eprintln!("SKIP (partly): this podman has no `podman update`");
            None
        };

        let st = pm.out(&["stop", "--time", "10", &c.name]);
        assert_eq!(st.code, 0, "{rt}: stop: {st:?}");
        let stopped = (
            c.status(),
            c.inspect("{{.State.ExitCode}}"),
            pm.out(&["logs", &c.name]).stdout,
        );
        let rm = pm.out(&["rm", &c.name]);
        assert_eq!(rm.code, 0, "{rt}: rm: {rm:?}");
        assert_nothing_left(rt, &id);
        seen.push((
            rt, ex.stdout, ex.stderr, top.stdout, paused, unpaused, updated, stopped,
        ));
    }
    let (runc, vz) = (&seen[0], &seen[1]);
    assert_eq!(vz.1, runc.1, "exec stdout (left: vzrun, right: runc)");
    assert_eq!(vz.2, runc.2, "exec stderr (left: vzrun, right: runc)");
    assert_eq!(vz.3, runc.3, "podman top (left: vzrun, right: runc)");
    assert_eq!(vz.4 .0, "paused", "vzrun: status after pause: {:?}", vz.4);
    assert_eq!(vz.4, runc.4, "after pause (left: vzrun, right: runc)");
    assert_eq!(vz.5, runc.5, "after unpause (left: vzrun, right: runc)");
    if let Some(u) = &vz.6 {
        assert_eq!(u.0, "67108864", "vzrun: memory limit after podman update");
    }
    assert_eq!(
        vz.6, runc.6,
        "limits after podman update (left: vzrun, right: runc)"
    );
    assert_eq!(
        vz.7,
        (
            "exited".to_string(),
            "3".to_string(),
            "started\ngot-term\n".to_string()
        ),
        "vzrun: after stop"
    );
    assert_eq!(vz.7, runc.7, "after stop (left: vzrun, right: runc)");
}

/// `podman kill` with a signal the process handles and with SIGKILL: exit codes, logs.
#[test]
fn podman_kill_matches_runc() {
    let pm = suite_or_skip!();
    let mut seen = Vec::new();
    for (rt, bin) in runtimes() {
        let c = pm.run_detached(
            &bin,
            "pod-kill",
            &[],
            &[
                "sh",
                "-c",
                "trap 'echo got-usr1; exit 9' USR1; echo ready; while :; do sleep 0.1; done",
            ],
        );
        let id = c.id();
        assert!(common::wait_until(5, || pm
            .out(&["logs", &c.name])
            .stdout
            .contains("ready")));
        let k = pm.out(&["kill", "--signal", "USR1", &c.name]);
        assert_eq!(k.code, 0, "{rt}: kill USR1: {k:?}");
        assert!(c.wait_status("exited"), "{rt}: USR1 did not end it");
        let usr1 = (
            c.inspect("{{.State.ExitCode}}"),
            pm.out(&["logs", &c.name]).stdout,
        );
        // Killing an exited container: podman's own check, whatever the runtime.
        let again = pm.out(&["kill", &c.name]);
        let st = pm.out(&["start", &c.name]);
        assert_eq!(st.code, 0, "{rt}: restart: {st:?}");
        assert!(c.wait_status("running"), "{rt}: not running after start");
        let k9 = pm.out(&["kill", &c.name, "--signal", "9"]);
        assert_eq!(k9.code, 0, "{rt}: kill 9: {k9:?}");
        assert!(c.wait_status("exited"), "{rt}: SIGKILL did not end it");
        let killed = c.inspect("{{.State.ExitCode}}");
        let rm = pm.out(&["rm", &c.name]);
        assert_eq!(rm.code, 0, "{rt}: rm: {rm:?}");
        assert_nothing_left(rt, &id);
        let again_msg = callers::normalize(&again.stderr, &[(&id, "ID"), (&c.name, "NAME")]);
        seen.push((rt, usr1, again.code, again_msg, killed));
    }
    let (runc, vz) = (&seen[0], &seen[1]);
    assert_eq!(vz.1 .0, "9", "vzrun: exit code after USR1: {vz:?}");
    assert_eq!(vz.4, "137", "vzrun: exit code after SIGKILL: {vz:?}");
    assert_eq!(
        (&vz.1, vz.2, &vz.3, &vz.4),
        (&runc.1, runc.2, &runc.3, &runc.4),
        "podman kill differs (left: vzrun, right: runc)"
    );
}

/// `podman run -it` and `podman exec -it` at a terminal: a pty of the caller's size, input
/// typed by a person, the exit code.
#[test]
fn podman_run_it_matches_runc() {
    let pm = suite_or_skip!();
    // podman sizes the container's terminal just after the start: wait for it.
    let wait_size = r#"for i in $(seq 50); do s=$(stty size 2>/dev/null); case "$s" in [1-9]*) break;; esac; sleep 0.1; done; echo "$s""#;
    let script = format!(
        r#"tty; {wait_size}; printf 'name? '; read n; echo "hello $n"; test -t 0 && echo stdin-is-tty; exit 4"#
    );
    let mut seen = Vec::new();
    for (rt, bin) in runtimes() {
        let r = callers::run_in_pty(
            &mut pm.run_cmd(&bin, &["--rm", "-it"], &["sh", "-c", &script]),
            40,
            100,
            &[("name? ", "world\r")],
            Duration::from_secs(60),
        );
        assert!(
            !r.timed_out,
            "{rt}: podman run -it hung; screen: {:?}",
            r.screen
        );
        assert_eq!(
            r.code, 4,
            "{rt}: exit code of podman run -it; screen: {:?}",
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
        let c = pm.run_detached(&bin, "pod-execit", &[], &["sleep", "1000"]);
        let mut e = pm.cmd();
        e.args([
            "exec",
            "-it",
            &c.name,
            "sh",
            "-c",
            &format!("tty; {wait_size}; exit 6"),
        ]);
        let ex = callers::run_in_pty(&mut e, 30, 90, &[], Duration::from_secs(60));
        assert_eq!(
            ex.code, 6,
            "{rt}: exec -it exit code; screen: {:?}",
            ex.screen
        );
        assert!(
            ex.screen.contains("30 90"),
            "{rt}: exec -it terminal: {:?}",
            ex.screen
        );
        seen.push((rt, r.screen, ex.screen));
    }
    let (runc, vz) = (&seen[0], &seen[1]);
    assert_eq!(
        vz.1, runc.1,
        "terminal of `podman run -it` (left: vzrun, right: runc)"
    );
    assert_eq!(
        vz.2, runc.2,
        "terminal of `podman exec -it` (left: vzrun, right: runc)"
    );
}

/// `podman run --annotation io.vzrun.…` puts the annotation in config.json: vzrun refuses an
/// unknown `io.vzrun.` key, and its message reaches the podman user (podman gives vzrun no
/// `--log`, so the message comes from vzrun's stderr). runc ignores the key and runs.
#[test]
fn podman_annotation_reaches_vzrun() {
    let pm = suite_or_skip!();
    let want = "annotation io.vzrun.bogus: unknown vzrun annotation";
    let wdir = tempfile::Builder::new()
        .prefix("vzt-wrap-")
        .tempdir()
        .unwrap();
    let wrapper = callers::recording_wrapper(wdir.path(), "vzrun-rec");
    for (rt, bin) in [
        ("runc", "runc".to_string()),
        ("vzrun", common::VZRUN.to_string()),
        ("vzrun (wrapped)", wrapper.display().to_string()),
    ] {
        let name = common::unique_id("pod-ann");
        let _c = Ctr {
            pm,
            name: name.clone(),
        };
        let o = run(&mut pm.run_cmd(
            &bin,
            &["--rm", "--name", &name, "--annotation", "io.vzrun.bogus=1"],
            &["echo", "ran"],
        ));
        if rt == "runc" {
            assert_eq!((o.code, o.stdout.as_str()), (0, "ran\n"), "runc: {o:?}");
            continue;
        }
        assert_ne!(
            o.code, 0,
            "{rt} ran a container with an unknown io.vzrun. annotation: {o:?}"
        );
        assert!(!o.stdout.contains("ran"), "{rt}: {o:?}");
        assert!(
            o.stderr.contains(want),
            "{rt}: the podman user does not see vzrun's error: {o:?}"
        );
        // Without --log, vzrun prints a logrus-style line on stderr, which podman quotes.
        assert!(
            o.stderr.contains("level=error") && o.stderr.contains(&format!("msg=\"{want}\"")),
            "{rt}: {o:?}"
        );
    }
    let (argv, logs) = callers::wrapper_records(wdir.path(), "vzrun-rec");
    let create = argv
        .iter()
        .find(|a| a.starts_with("create ") || a.contains(" create "))
        .unwrap_or_else(|| panic!("podman never called create: {argv:#?}"));
    assert!(
        !create.contains("--log"),
        "podman passed --log to vzrun: {create}"
    );
    assert!(logs.is_empty(), "{logs:?}");
    // The failed create left nothing in the runtime root.
    let id = create.split_whitespace().last().unwrap();
    assert_nothing_left("vzrun", id);
}

/// A create that fails under every runtime (the command does not exist): podman's exit code
/// (127: command not found) and a message naming the command reach the user. vzrun's error
/// arrives on stderr since podman gives it no `--log`.
#[test]
fn podman_errors_reach_user_without_log() {
    let pm = suite_or_skip!();
    let mut seen = Vec::new();
    for (rt, bin) in runtimes() {
        let name = common::unique_id("pod-nobin");
        let _c = Ctr {
            pm,
            name: name.clone(),
        };
        let o = run(&mut pm.run_cmd(&bin, &["--rm", "--name", &name], &["/no/such/binary"]));
        assert_ne!(o.code, 0, "{rt}: {o:?}");
        assert!(
            o.stderr.contains("/no/such/binary"),
            "{rt}: the podman user does not see which command is missing: {o:?}"
        );
        assert!(
            pm.out(&["container", "exists", &name]).code != 0,
            "{rt}: --rm kept the failed container"
        );
        seen.push((rt, o.code, last_line(&o.stderr)));
    }
    assert_eq!(seen[0].1, 127, "runc: {seen:?}");
    assert_eq!(
        seen[1].1, seen[0].1,
        "exit code of podman run for a missing command (vzrun: {:?})",
        seen[1]
    );
}

// ---------------------------------------------------------------------------------------
// Checkpoint and restore (issue #6)
// ---------------------------------------------------------------------------------------

fn container_status(pm: &Podman, name: &str) -> String {
    pm.out(&["inspect", "--format", "{{.State.Status}}", name])
        .stdout
        .trim()
        .to_string()
}

/// The last number the container printed.
fn last_count(pm: &Podman, name: &str) -> u64 {
    pm.out(&["logs", name])
        .stdout
        .lines()
        .rev()
        .find_map(|l| l.trim().parse().ok())
        .unwrap_or(0)
}

/// Removes containers by name when dropped.
struct Names<'a>(&'a Podman, Vec<String>);

impl Drop for Names<'_> {
    fn drop(&mut self) {
        for n in &self.1 {
            self.0.out(&["rm", "--force", "--time", "0", "--ignore", n]);
        }
    }
}

const COUNTER: &str = "i=0; while true; do i=$((i+1)); echo $i; sleep 0.05; done";

fn wait_count_above(pm: &Podman, name: &str, n: u64) -> u64 {
    let mut last = 0;
    common::wait_until(5, || {
        last = last_count(pm, name);
        last > n
    });
    last
}

/// Every number in the log follows the one before: a process that restarted would
/// begin again at 1.
fn assert_counts_up(pm: &Podman, rt: &str, name: &str) {
    let nums: Vec<u64> = pm
        .out(&["logs", name])
        .stdout
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    for w in nums.windows(2) {
        assert_eq!(w[1], w[0] + 1, "{rt}: {name}'s count jumps: {nums:?}");
    }
}

fn checkpoint_flow(pm: &Podman, rt: &str, bin: &str, tty: bool) {
    let name = common::unique_id(if tty { "podckt" } else { "podck" });
    let name2 = format!("{name}-imported");
    let _guard = Names(pm, vec![name.clone(), name2.clone()]);
    ok(
        &format!("{rt}: podman run"),
        run(pm.cmd().args([
            "run",
            "-d",
            "--pull=never",
            "--cgroup-parent",
            &pm.cgroup_parent,
            "--runtime",
            bin,
            "--name",
            &name,
            if tty { "-t" } else { "--tty=false" },
            IMAGE,
            "sh",
            "-c",
            COUNTER,
        ])),
    );
    let before = wait_count_above(pm, &name, 10);
    assert!(before > 10, "{rt}: the counter does not count: {before}");

    let o = pm.out(&["container", "checkpoint", "--tcp-established", &name]);
    assert_eq!(o.code, 0, "{rt}: podman container checkpoint: {o:?}");
    assert_eq!(container_status(pm, &name), "exited", "{rt}");
    let stopped_at = last_count(pm, &name);
    let o = pm.out(&["container", "restore", "--tcp-established", &name]);
    assert_eq!(o.code, 0, "{rt}: podman container restore: {o:?}");
    assert_eq!(container_status(pm, &name), "running", "{rt}");
    let after = wait_count_above(pm, &name, stopped_at);
    assert!(
        after > stopped_at,
        "{rt}: counter after restore {after}, at checkpoint {stopped_at} (state or stdout lost)"
    );
    assert_counts_up(pm, rt, &name);
    let o = pm.out(&["exec", &name, "echo", "alive"]);
    assert_eq!(o.stdout, "alive\n", "{rt}: exec after restore: {o:?}");

    // Export, remove, import under a new name.
    let archive = pm.dir.join("export").join(format!("{name}.tar.gz"));
    let o = pm.out(&[
        "container",
        "checkpoint",
        "--export",
        archive.to_str().unwrap(),
        &name,
    ]);
    assert_eq!(o.code, 0, "{rt}: checkpoint --export: {o:?}");
    let exported_at = last_count(pm, &name);
    assert_eq!(pm.out(&["rm", &name]).code, 0);
    let o = pm.out(&[
        "container",
        "restore",
        "--import",
        archive.to_str().unwrap(),
        "--name",
        &name2,
    ]);
    assert_eq!(o.code, 0, "{rt}: restore --import: {o:?}");
    assert_eq!(container_status(pm, &name2), "running", "{rt}");
    // podman carries the log over in the archive: the imported process continues it.
    let after = wait_count_above(pm, &name2, exported_at);
    assert!(
        after > exported_at,
        "{rt}: imported counter at {after}, exported at {exported_at}"
    );
    assert_counts_up(pm, rt, &name2);
    let o = pm.out(&["rm", "--force", "--time", "0", &name2]);
    assert_eq!(o.code, 0, "{o:?}");
}

#[test]
fn podman_checkpoint_restore_export_import() {
    let pm = suite_or_skip!();
    if let Some(why) = common::criu_missing() {
        eprintln!("SKIP: {why}");
        return;
    }
    for (rt, bin) in callers::runtimes() {
        checkpoint_flow(pm, rt, &bin, false);
    }
    // vzrun's default root holds nothing of the suite's containers afterwards.
    let left: Vec<_> = common::dir_entries(Path::new("/run/vzrun"))
        .into_iter()
        .filter(|n| n.contains("podck"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// The same with a terminal (`podman run -t`): CRIU hands the restored terminal's master
/// to conmon through the console socket.
#[test]
fn podman_checkpoint_restore_with_a_terminal() {
    let pm = suite_or_skip!();
    if let Some(why) = common::criu_missing() {
        eprintln!("SKIP: {why}");
        return;
    }
    for (rt, bin) in callers::runtimes() {
        checkpoint_flow(pm, rt, &bin, true);
    }
}
