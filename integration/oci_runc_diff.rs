//! Differential tests: the same scenario runs under runc and under vzrun, on the same
//! bundle, and what a caller sees must match: exit codes, stdout (JSON compared by keys
//! and values, with pids and times aside), and the key phrase of each error.
//!
//! Scenarios are split by command and concern as runc's `tests/integration/*.bats` are:
//! this file (lifecycle, exec, kill, hangs, hooks, output) and `oci_runc_diff/` (commands'
//! flag forms, spec fields, seccomp, rootfs hardening, cgroups, checkpoint). One scenario
//! is one `diff!` or one `#[test]` that runs runc and vzrun and compares them:
//! `grep -rcE '^diff!\(|^#\[test\]' integration/oci_runc_diff*` counts them (less the
//! two vzrun-only tests, `version_has_runc_shape` and `events_to_a_closed_pipe_does_not_panic`).

mod common;

use common::{Bundle, Out, Runtime};
use serde_json::{json, Value};
use std::time::Duration;

/// What to compare of a step's stdout.
#[derive(Clone, Copy, PartialEq)]
enum Cmp {
    /// Text (or JSON, normalised) must be equal.
    Same,
    /// `ps` tables: same header, same number of processes.
    PsTable,
    /// Only the exit code and the error phrase.
    CodeOnly,
}

struct Step {
    args: &'static [&'static str],
    cmp: Cmp,
    /// When the runtimes word an error differently on purpose: (runc's phrase, vzrun's).
    phrase: Option<(&'static str, &'static str)>,
    input: Option<&'static str>,
}

const fn s(args: &'static [&'static str]) -> Step {
    Step {
        args,
        cmp: Cmp::Same,
        phrase: None,
        input: None,
    }
}

const fn ps(args: &'static [&'static str]) -> Step {
    Step {
        args,
        cmp: Cmp::PsTable,
        phrase: None,
        input: None,
    }
}

const fn code(args: &'static [&'static str]) -> Step {
    Step {
        args,
        cmp: Cmp::CodeOnly,
        phrase: None,
        input: None,
    }
}

const fn worded(args: &'static [&'static str], runc: &'static str, vzrun: &'static str) -> Step {
    Step {
        args,
        cmp: Cmp::CodeOnly,
        phrase: Some((runc, vzrun)),
        input: None,
    }
}

const fn stdin(args: &'static [&'static str], input: &'static str) -> Step {
    Step {
        args,
        cmp: Cmp::Same,
        phrase: None,
        input: Some(input),
    }
}

/// A pseudo-step that waits for the init to exit.
const WAIT_STOPPED: &[&str] = &["@wait-stopped"];
/// A pseudo-step that waits until the init catches SIGUSR1: a signal sent before the
/// shell has run its `trap` would kill it, under either runtime.
const WAIT_USR1_TRAP: &[&str] = &["@wait-usr1-trap"];

/// Whether the process catches SIGUSR1, from the SigCgt mask in /proc.
fn catches_usr1(pid: u64) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (SIGUSR1 - 1)) != 0)
}

const SIGUSR1: u32 = 10;

/// A pseudo-step that waits until the init has started a child, so `ps` lists a fixed set.
const WAIT_CHILD: &[&str] = &["@wait-child"];

fn has_child(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .is_ok_and(|c| !c.trim().is_empty())
}

/// Keys whose values differ between runs by nature.
fn normalise(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for k in ["pid", "created", "ociVersion", "owner"] {
                m.remove(k);
            }
            if m.get("type").and_then(|t| t.as_str()) == Some("stats") {
                m.remove("data");
            }
            m.values_mut().for_each(normalise);
        }
        Value::Array(a) => {
            if a.iter().all(|x| x.is_number()) {
                *v = Value::from(a.len());
            } else {
                a.iter_mut().for_each(normalise);
            }
        }
        _ => {}
    }
}

fn stdout_view(o: &Out, cmp: Cmp) -> String {
    match cmp {
        Cmp::CodeOnly => String::new(),
        Cmp::PsTable => {
            let mut lines = o.stdout.lines();
            let header: Vec<&str> = lines
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .collect();
            format!("{header:?} + {} rows", lines.count())
        }
        Cmp::Same => match serde_json::from_str::<Value>(&o.stdout) {
            Ok(mut v) if v.is_object() || v.is_array() => {
                normalise(&mut v);
                v.to_string()
            }
            _ => o.stdout.clone(),
        },
    }
}

/// runc prefixes some errors with the command that failed and the step of its init.
fn phrase(mut msg: &str) -> &str {
    for p in [
        "runc run failed: ",
        "runc create failed: ",
        "exec failed: ",
        "unable to start container process: ",
        "error during container init: ",
    ] {
        if let Some(rest) = msg.strip_prefix(p) {
            msg = rest;
        }
    }
    msg
}

fn play(rt: &Runtime, bundle: &Bundle, id: &str, steps: &[Step]) -> Vec<Out> {
    rt.track(id);
    let mut outs = Vec::new();
    for step in steps {
        if step.args.first().is_some_and(|a| a.starts_with('@')) {
            // A pseudo-step: poll until the container reaches the point it names.
            let init = || rt.state(id)["pid"].as_u64().unwrap_or_default();
            let ready = || match step.args {
                WAIT_STOPPED => rt.status(id) == "stopped",
                WAIT_CHILD => has_child(init()),
                WAIT_USR1_TRAP => catches_usr1(init()),
                other => panic!("unknown pseudo-step {other:?}"),
            };
            let seen = (0..300).any(|_| {
                ready() || {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    false
                }
            });
            assert!(seen, "{}: {id} never reached {:?}", rt.name, step.args);
            outs.push(Out {
                code: 0,
                stdout: String::new(),
                stderr: String::new(),
            });
            continue;
        }
        let args: Vec<String> = step
            .args
            .iter()
            .map(|a| a.replace("{id}", id).replace("{b}", bundle.p()))
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = match step.input {
            Some(i) => rt.run_input(&args, i),
            None => rt.run(&args),
        };
        outs.push(out);
    }
    outs
}

fn differential(name: &str, process: &[&str], edit: fn(&mut Value), steps: &[Step]) {
    differential_with(name, process, edit, steps);
}

/// [`differential`] with an edit that carries values of its own (a path made by the test).
fn differential_with(name: &str, process: &[&str], edit: impl FnOnce(&mut Value), steps: &[Step]) {
    require_root!();
    if !common::have("runc") {
        eprintln!("SKIP: runc is not installed (hack/setup.sh installs it)");
        return;
    }
    let bundle = Bundle::with(process, edit);
    let id = common::unique_id(name);
    let runc = Runtime::runc();
    let vz = Runtime::vzrun();
    let a = play(&runc, &bundle, &id, steps);
    let b = play(&vz, &bundle, &id, steps);
    for (i, ((ra, vb), step)) in a.iter().zip(&b).zip(steps).enumerate() {
        let what = format!("{name} step {i} {:?}", step.args);
        assert_eq!(
            ra.code, vb.code,
            "{what}: exit codes differ\nrunc: {ra:?}\nvzrun: {vb:?}"
        );
        assert_eq!(
            stdout_view(ra, step.cmp),
            stdout_view(vb, step.cmp),
            "{what}: stdout differs\nrunc stderr: {}\nvzrun stderr: {}",
            ra.stderr,
            vb.stderr
        );
        if ra.code != 0 && (step.cmp != Cmp::CodeOnly || step.phrase.is_some()) {
            let (want_runc, want_vz) = match step.phrase {
                Some((r, v)) => (r.to_string(), v.to_string()),
                None => {
                    let p = phrase(&ra.error_msg()).to_string();
                    (p.clone(), p)
                }
            };
            assert!(
                ra.error_msg().contains(&want_runc),
                "{what}: runc said {:?}, expected {want_runc:?}",
                ra.stderr
            );
            assert!(
                vb.error_msg().contains(&want_vz),
                "{what}: vzrun said {:?}, runc said {:?}",
                vb.stderr,
                ra.stderr
            );
        }
    }
}

fn none(_: &mut Value) {}

/// The spec in a user namespace mapping container root to host uid/gid 100000, without
/// the mounts the unmapped host root owns (cgroup, sysfs, mqueue).
fn in_user_namespace(v: &mut serde_json::Value) {
    v["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    v["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    v["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    v["mounts"]
        .as_array_mut()
        .unwrap()
        .retain(|m| m["type"] != "cgroup" && m["type"] != "sysfs" && m["type"] != "mqueue");
}

macro_rules! diff {
    ($name:ident, $process:expr, $edit:expr, [$($step:expr),* $(,)?]) => {
        #[test]
        fn $name() {
            differential(stringify!($name), $process, $edit, &[$($step),*]);
        }
    };
}

const SLEEP: &[&str] = &["sleep", "300"];

#[path = "oci_runc_diff/cgroups.rs"]
mod cgroups;
#[path = "oci_runc_diff/checkpoint.rs"]
mod checkpoint;
#[path = "oci_runc_diff/commands.rs"]
mod commands;
#[path = "oci_runc_diff/rootfs.rs"]
mod rootfs;
#[path = "oci_runc_diff/seccomp.rs"]
mod seccomp;
#[path = "oci_runc_diff/spec_fields.rs"]
mod spec_fields;

// --- run: output and exit codes -------------------------------------------------------
diff!(
    run_prints_output,
    &["echo", "hello from a VE"],
    none,
    [s(&["run", "-b", "{b}", "{id}"]), s(&["list", "-q"])]
);
diff!(
    run_returns_exit_code,
    &["sh", "-c", "exit 3"],
    none,
    [s(&["run", "-b", "{b}", "{id}"])]
);
diff!(
    run_reports_signal_death,
    &["sh", "-c", "kill -9 $$"],
    none,
    [s(&["run", "-b", "{b}", "{id}"])]
);
diff!(
    run_passes_stdin,
    &["cat"],
    none,
    [stdin(&["run", "-b", "{b}", "{id}"], "piped text\n")]
);
diff!(
    run_keep_leaves_stopped,
    &["true"],
    none,
    [
        s(&["run", "--keep", "-b", "{b}", "{id}"]),
        s(&["state", "{id}"]),
        s(&["delete", "{id}"]),
        code(&["state", "{id}"]),
    ]
);
diff!(
    run_detached,
    SLEEP,
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        s(&["state", "{id}"]),
        s(&["kill", "{id}", "KILL"]),
        WAIT_STOPPED_STEP,
        s(&["delete", "{id}"]),
    ]
);
const WAIT_STOPPED_STEP: Step = s(WAIT_STOPPED);

// --- lifecycle and state ---------------------------------------------------------------
diff!(
    create_then_state,
    SLEEP,
    none,
    [
        s(&["create", "-b", "{b}", "{id}"]),
        s(&["state", "{id}"]),
        s(&["list", "--format", "json"]),
        s(&["delete", "{id}"]),
    ]
);
diff!(
    start_then_running,
    SLEEP,
    none,
    [
        s(&["create", "--bundle", "{b}", "{id}"]),
        s(&["start", "{id}"]),
        s(&["state", "{id}"]),
        s(&["list", "-q"]),
        s(&["delete", "--force", "{id}"]),
        s(&["list", "--format=json"]),
    ]
);
diff!(
    start_after_exit_fails,
    &["true"],
    none,
    [
        s(&["create", "-b", "{b}", "{id}"]),
        s(&["start", "{id}"]),
        WAIT_STOPPED_STEP,
        s(&["start", "{id}"]),
        s(&["state", "{id}"]),
        s(&["delete", "{id}"]),
    ]
);
diff!(
    start_twice_fails,
    SLEEP,
    none,
    [
        s(&["create", "-b", "{b}", "{id}"]),
        s(&["start", "{id}"]),
        s(&["start", "{id}"]),
        s(&["delete", "-f", "{id}"]),
    ]
);
diff!(
    duplicate_id_fails,
    SLEEP,
    none,
    [
        s(&["create", "-b", "{b}", "{id}"]),
        s(&["create", "-b", "{b}", "{id}"]),
        s(&["state", "{id}"]),
        s(&["delete", "{id}"]),
    ]
);
diff!(
    delete_running_needs_force,
    SLEEP,
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        s(&["delete", "{id}"]),
        s(&["state", "{id}"]),
        s(&["delete", "-f", "{id}"]),
        code(&["state", "{id}"]),
    ]
);
diff!(
    delete_created_without_force,
    SLEEP,
    none,
    [
        s(&["create", "-b", "{b}", "{id}"]),
        s(&["delete", "{id}"]),
        s(&["list", "-q"]),
    ]
);
diff!(
    missing_id_words,
    SLEEP,
    none,
    [
        s(&["state", "{id}"]),
        s(&["start", "{id}"]),
        s(&["kill", "{id}"]),
        s(&["delete", "{id}"]),
        s(&["pause", "{id}"]),
        s(&["resume", "{id}"]),
        s(&["ps", "{id}"]),
        s(&["exec", "{id}", "true"]),
        s(&["events", "--stats", "{id}"]),
        s(&["delete", "--force", "{id}"]),
    ]
);

// --- kill --------------------------------------------------------------------------------
diff!(
    kill_signal_forms,
    &[
        "sh",
        "-c",
        "trap 'echo got' USR1; while :; do sleep 300 & wait; done"
    ],
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        s(WAIT_USR1_TRAP),
        s(&["kill", "{id}", "USR1"]),
        s(&["kill", "{id}", "SIGUSR1"]),
        s(&["kill", "{id}", "10"]),
        s(&["kill", "{id}", "9"]),
        WAIT_STOPPED_STEP,
        s(&["kill", "{id}", "KILL"]),
        s(&["delete", "{id}"]),
    ]
);
diff!(
    kill_unknown_signal,
    SLEEP,
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        s(&["kill", "{id}", "BOGUS"]),
        s(&["kill", "{id}", "99"]),
        s(&["state", "{id}"]),
        s(&["delete", "-f", "{id}"]),
    ]
);
diff!(
    kill_all,
    &["sh", "-c", "sleep 300 & sleep 300 & wait"],
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        s(&["kill", "--all", "{id}", "KILL"]),
        WAIT_STOPPED_STEP,
        s(&["state", "{id}"]),
        s(&["delete", "{id}"]),
    ]
);
diff!(
    kill_default_term_on_created,
    SLEEP,
    none,
    [
        s(&["create", "-b", "{b}", "{id}"]),
        s(&["kill", "{id}"]),
        WAIT_STOPPED_STEP,
        s(&["kill", "{id}", "9"]),
        s(&["delete", "{id}"]),
    ]
);

// --- exec --------------------------------------------------------------------------------
diff!(
    exec_output_and_code,
    SLEEP,
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        s(&["exec", "{id}", "echo", "inside"]),
        s(&["exec", "{id}", "sh", "-c", "exit 4"]),
        s(&["delete", "-f", "{id}"]),
    ]
);
diff!(
    exec_env_cwd_user,
    SLEEP,
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        s(&[
            "exec",
            "--env",
            "GREETING=hi",
            "--env",
            "OTHER=x",
            "{id}",
            "sh",
            "-c",
            "echo $GREETING $OTHER"
        ]),
        s(&["exec", "--cwd", "/etc", "{id}", "pwd"]),
        s(&["exec", "--user", "65534:65534", "{id}", "id"]),
        s(&["delete", "-f", "{id}"]),
    ]
);
/// A process without HOME gets its user's from the container's /etc/passwd (`/` for a
/// user it does not name), at run and at exec as another user, as runc gives it.
fn as_daemon(v: &mut Value) {
    v["process"]["user"] = json!({"uid": 1, "gid": 1});
}
diff!(
    home_comes_from_the_containers_passwd,
    SLEEP,
    as_daemon,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        s(&[
            "exec",
            "{id}",
            "sh",
            "-c",
            "tr '\\0' '\\n' </proc/1/environ | grep ^HOME="
        ]),
        s(&["exec", "{id}", "sh", "-c", "echo $HOME"]),
        s(&["exec", "--user", "0:0", "{id}", "sh", "-c", "echo $HOME"]),
        s(&[
            "exec",
            "--user",
            "65534:65534",
            "{id}",
            "sh",
            "-c",
            "echo $HOME"
        ]),
        s(&[
            "exec",
            "--user",
            "4242:4242",
            "{id}",
            "sh",
            "-c",
            "echo $HOME"
        ]),
        s(&[
            "exec",
            "--env",
            "HOME=/given",
            "{id}",
            "sh",
            "-c",
            "echo $HOME"
        ]),
        s(&["delete", "-f", "{id}"]),
    ]
);
/// The container's process is where a plain exec starts from: its user, cwd, open-file
/// limit and environment, each changed only by a flag.
fn non_root_in_tmp_with_64_files(v: &mut Value) {
    v["process"]["user"] = json!({"uid": 65534, "gid": 65534, "additionalGids": [100]});
    v["process"]["cwd"] = json!("/tmp");
    v["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 64, "hard": 64}]);
    v["process"]["env"]
        .as_array_mut()
        .unwrap()
        .push(json!("GREETING=from-config"));
}
diff!(
    exec_starts_from_the_container_process,
    SLEEP,
    non_root_in_tmp_with_64_files,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        s(&[
            "exec",
            "{id}",
            "sh",
            "-c",
            "id; pwd; ulimit -n; echo $GREETING"
        ]),
        s(&[
            "exec",
            "--user",
            "0",
            "--cwd",
            "/",
            "--env",
            "GREETING=from-flag",
            "{id}",
            "sh",
            "-c",
            "id; pwd; echo $GREETING"
        ]),
        s(&["exec", "-g", "7", "{id}", "id"]),
        s(&["delete", "-f", "{id}"]),
    ]
);
diff!(
    exec_process_file,
    SLEEP,
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        stdin(
            &["exec", "--process", "/dev/stdin", "{id}"],
            r#"{"args":["sh","-c","echo from process.json; exit 5"],"cwd":"/","env":["PATH=/bin"],"user":{"uid":0,"gid":0}}"#
        ),
        s(&["delete", "-f", "{id}"]),
    ]
);
diff!(
    exec_detached_pid_file,
    SLEEP,
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        s(&["exec", "-d", "{id}", "sleep", "1"]),
        s(&["delete", "-f", "{id}"]),
    ]
);
diff!(
    exec_in_stopped_fails,
    &["true"],
    none,
    [
        s(&["run", "--keep", "-b", "{b}", "{id}"]),
        s(&["exec", "{id}", "true"]),
        s(&["delete", "{id}"]),
    ]
);
diff!(
    exec_missing_executable,
    SLEEP,
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        code(&["exec", "{id}", "/no/such/binary"]),
        s(&["delete", "-f", "{id}"]),
    ]
);

// --- pause / resume ---------------------------------------------------------------------
diff!(
    pause_resume,
    SLEEP,
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        s(&["pause", "{id}"]),
        s(&["state", "{id}"]),
        s(&["pause", "{id}"]),
        s(&["resume", "{id}"]),
        s(&["state", "{id}"]),
        s(&["resume", "{id}"]),
        s(&["delete", "-f", "{id}"]),
    ]
);
diff!(
    pause_paused_force_delete,
    SLEEP,
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        s(&["pause", "{id}"]),
        s(&["delete", "{id}"]),
        s(&["delete", "-f", "{id}"]),
        s(&["list", "-q"]),
    ]
);
diff!(
    pause_stopped_fails,
    &["true"],
    none,
    [
        s(&["run", "--keep", "-b", "{b}", "{id}"]),
        s(&["pause", "{id}"]),
        s(&["resume", "{id}"]),
        s(&["delete", "{id}"]),
    ]
);

// --- ps / events / update ----------------------------------------------------------------
diff!(
    ps_formats,
    &["sh", "-c", "sleep 300 & wait"],
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        s(WAIT_CHILD),
        ps(&["ps", "{id}"]),
        s(&["ps", "--format", "json", "{id}"]),
        ps(&["ps", "{id}", "-o", "pid,comm"]),
        s(&["delete", "-f", "{id}"]),
    ]
);
diff!(
    ps_of_stopped,
    &["true"],
    none,
    [
        s(&["run", "--keep", "-b", "{b}", "{id}"]),
        ps(&["ps", "{id}"]),
        s(&["ps", "-f", "json", "{id}"]),
        s(&["delete", "{id}"]),
    ]
);
diff!(
    events_stats,
    SLEEP,
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        s(&["events", "--stats", "{id}"]),
        s(&["delete", "-f", "{id}"]),
        s(&["events", "--stats", "{id}"]),
    ]
);
diff!(
    events_on_stopped,
    &["true"],
    none,
    [
        s(&["run", "--keep", "-b", "{b}", "{id}"]),
        s(&["events", "--stats", "{id}"]),
        s(&["delete", "{id}"]),
    ]
);
diff!(
    update_flags_and_stdin,
    SLEEP,
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        s(&["update", "--memory", "64M", "--pids-limit", "50", "{id}"]),
        stdin(
            &["update", "--resources=-", "{id}"],
            r#"{"memory":{"limit":134217728},"pids":{"limit":60}}"#
        ),
        s(&["delete", "-f", "{id}"]),
    ]
);

// --- bad input ---------------------------------------------------------------------------
diff!(
    bad_id,
    SLEEP,
    none,
    [
        worded(
            &["create", "-b", "{b}", "../escape"],
            "invalid container ID format",
            "invalid container ID format"
        ),
        worded(
            &["create", "-b", "{b}", "a/b"],
            "invalid container ID format",
            "invalid container ID format"
        ),
        s(&["list", "-q"]),
    ]
);
diff!(
    missing_config,
    SLEEP,
    |v| *v = Value::Null,
    [
        worded(
            &["create", "-b", "/nonexistent-vzt-bundle", "{id}"],
            "no such file or directory",
            "No such file or directory"
        ),
        s(&["list", "-q"]),
    ]
);
diff!(
    malformed_config,
    SLEEP,
    |v| {
        v["process"]["user"]["uid"] = Value::from("root");
    },
    [
        worded(
            &["create", "-b", "{b}", "{id}"],
            "cannot unmarshal string",
            "process.user.uid"
        ),
        s(&["list", "-q"]),
    ]
);
diff!(
    missing_rootfs,
    SLEEP,
    |v| {
        v["root"]["path"] = Value::from("/nonexistent-vzt-rootfs");
    },
    [
        worded(
            &["create", "-b", "{b}", "{id}"],
            "/nonexistent-vzt-rootfs",
            "/nonexistent-vzt-rootfs"
        ),
        s(&["list", "-q"]),
    ]
);
diff!(
    failing_prestart_hook,
    SLEEP,
    |v| {
        v["hooks"] = serde_json::json!({"prestart": [{"path": "/bin/false"}]});
    },
    [
        code(&["create", "-b", "{b}", "{id}"]),
        s(&["list", "-q"]),
        code(&["run", "-b", "{b}", "{id}"]),
        s(&["list", "-q"]),
    ]
);
diff!(
    terminal_without_console_socket,
    SLEEP,
    |v| {
        v["process"]["terminal"] = Value::from(true);
    },
    [
        worded(&["create", "-b", "{b}", "{id}"], "console", "console"),
        s(&["list", "-q"]),
    ]
);
diff!(
    unknown_flag,
    SLEEP,
    none,
    [
        worded(
            &["create", "--bogus-flag", "{id}"],
            "bogus-flag",
            "bogus-flag"
        ),
        worded(&["kill", "--nope", "{id}"], "nope", "nope"),
    ]
);
diff!(
    list_empty,
    SLEEP,
    none,
    [
        s(&["list"]),
        s(&["list", "--format", "json"]),
        s(&["list", "-q"])
    ]
);

#[test]
fn unknown_command_exit_code_matches_runc() {
    require_runc!();
    let a = Runtime::runc().run(&["frobnicate"]);
    let b = Runtime::vzrun().run(&["frobnicate"]);
    assert_eq!(a.code, b.code, "runc {a:?} vzrun {b:?}");
    assert!(b.stderr.contains("frobnicate"), "{b:?}");
}

#[test]
fn version_has_runc_shape() {
    let out = Runtime::vzrun().run(&["--version"]);
    assert_eq!(out.code, 0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("vzrun version "), "{lines:?}");
    assert!(lines[1].starts_with("commit: "), "{lines:?}");
    assert!(lines[2].starts_with("spec: 1."), "{lines:?}");
}

// --- isolation defaults: what the process sees inside must be what runc gives it -----------
diff!(
    isolation_status_caps_nnp_seccomp,
    &[
        "grep",
        "-E",
        "^(Cap|NoNewPrivs|Seccomp:)",
        "/proc/self/status"
    ],
    none,
    [s(&["run", "-b", "{b}", "{id}"]),]
);
diff!(isolation_masked_and_readonly_paths, &["sh", "-c",
    "cat /proc/kcore 2>/dev/null | head -c1 | wc -c; ls /proc/acpi 2>/dev/null | wc -l; \
     (echo x > /proc/sys/kernel/domainname) 2>/dev/null; echo sysrw=$?; (touch /rootfs-write) 2>/dev/null; echo rootrw=$?"], none, [
    s(&["run", "-b", "{b}", "{id}"]),
]);
diff!(
    isolation_rlimits_hostname_oom,
    &[
        "sh",
        "-c",
        "ulimit -n; ulimit -Hn; hostname; cat /proc/self/oom_score_adj"
    ],
    |v| {
        v["process"]["oomScoreAdj"] = Value::from(321);
        v["hostname"] = Value::from("diffhost");
    },
    [s(&["run", "-b", "{b}", "{id}"])]
);
diff!(isolation_sysctl_and_namespaces, &["sh", "-c",
    "cat /proc/sys/net/ipv4/ip_forward; cat /proc/sys/kernel/msgmax; ls /sys/class/net; echo $$"], |v| {
    v["linux"]["sysctl"] = serde_json::json!({"net.ipv4.ip_forward": "1", "kernel.msgmax": "12345"});
}, [s(&["run", "-b", "{b}", "{id}"])]);
diff!(
    isolation_devices,
    &[
        "sh",
        "-c",
        "ls /dev | sort | tr '\\n' ' '; echo; head -c 4 /dev/zero | wc -c"
    ],
    none,
    [s(&["run", "-b", "{b}", "{id}"]),]
);
diff!(
    isolation_seccomp_profile_enforced,
    &["sh", "-c", "mkdir /tmp/x && echo made || echo refused"],
    |v| {
        v["mounts"].as_array_mut().unwrap().push(serde_json::json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]}));
        v["linux"]["seccomp"] = serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        });
    },
    [s(&["run", "-b", "{b}", "{id}"])]
);
diff!(
    isolation_seccomp_without_nnp,
    &[
        "sh",
        "-c",
        "mkdir /tmp/x 2>&1; grep -E '^(NoNewPrivs|Seccomp:)' /proc/self/status"
    ],
    |v| {
        v["process"]["noNewPrivileges"] = Value::from(false);
        v["mounts"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}));
        v["linux"]["seccomp"] = serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        });
    },
    [s(&["run", "-b", "{b}", "{id}"])]
);
// Signals 1..32 only: glibc's reserved 32/33 depend on how the test harness was started.
diff!(
    isolation_signal_dispositions,
    &[
        "sh",
        "-c",
        "grep -E '^Sig(Ign|Blk)' /proc/self/status | cut -f2 | cut -c9-"
    ],
    none,
    [s(&["run", "-b", "{b}", "{id}"])]
);

// An absolute command needs no PATH.
diff!(
    run_absolute_command_without_path,
    &["/bin/echo", "no PATH needed"],
    |v| {
        v["process"]["env"] = serde_json::json!([]);
    },
    [s(&["run", "-b", "{b}", "{id}"])]
);

// --- hangs: each scenario runs under a deadline that kills what it started ----------------

/// Long enough for a loaded CI host, short enough that a hang fails the test.
const HANG: Duration = Duration::from_secs(20);

/// What a caller sees of `exec --ignore-paused` into a paused container followed by a
/// `resume`: the resume's exit code, and the exec's exit code and output.
fn exec_ignore_paused_then_resume(rt: &Runtime, bundle: &Bundle, id: &str) -> (i32, i32, String) {
    rt.track(id);
    let run = rt.run(&["run", "-d", "-b", bundle.p(), id]);
    assert_eq!(run.code, 0, "{}: run -d: {run:?}", rt.name);
    let pause = rt.run(&["pause", id]);
    assert_eq!(pause.code, 0, "{}: pause: {pause:?}", rt.name);
    let exec = rt.start_deadlined(&["exec", "--ignore-paused", id, "echo", "after resume"]);
    // The exec's process reaches the frozen cgroup and stops there until the resume.
    std::thread::sleep(Duration::from_millis(500));
    let resume = rt.run_deadlined(&["resume", id], HANG);
    let exec = exec.wait(HANG);
    assert!(
        !exec.stderr.contains("[test: killed"),
        "{}: exec hung: {exec:?}",
        rt.name
    );
    (resume.code, exec.code, exec.stdout)
}

#[test]
fn exec_ignore_paused_then_resume_does_not_hang() {
    require_runc!();
    let bundle = Bundle::busybox(SLEEP);
    let id = common::unique_id("execpaused");
    let runc = Runtime::runc();
    let vz = Runtime::vzrun();
    let want = exec_ignore_paused_then_resume(&runc, &bundle, &id);
    assert_eq!(want, (0, 0, "after resume\n".to_string()), "runc");
    let got = exec_ignore_paused_then_resume(&vz, &bundle, &id);
    assert_eq!(got, want, "vzrun differs from runc");
}

/// A cgroup made and frozen by a test in every hierarchy's freezer; thawed and removed
/// (with whatever a runtime made under its name elsewhere) when dropped.
struct FrozenCgroup(String);

impl FrozenCgroup {
    fn new(name: &str) -> Option<FrozenCgroup> {
        let cg = FrozenCgroup(name.to_string());
        let v1 = std::path::Path::new("/sys/fs/cgroup/freezer").join(name);
        if std::path::Path::new("/sys/fs/cgroup/freezer").is_dir() {
            std::fs::create_dir(&v1).ok()?;
            std::fs::write(v1.join("freezer.state"), "FROZEN").ok()?;
        } else {
            let v2 = std::path::Path::new("/sys/fs/cgroup").join(name);
            std::fs::create_dir(&v2).ok()?;
            std::fs::write(v2.join("cgroup.freeze"), "1").ok()?;
        }
        Some(cg)
    }
}

impl Drop for FrozenCgroup {
    fn drop(&mut self) {
        for dir in common::cgroups_named(&self.0) {
            let _ = std::fs::write(dir.join("freezer.state"), "THAWED");
            let _ = std::fs::write(dir.join("cgroup.freeze"), "0");
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

/// What `run -d` and then `create` into an already frozen cgroup show: each one's exit
/// code and whether it named the frozen cgroup, and what `list -q` shows after.
fn into_frozen_cgroup(rt: &Runtime, tag: &str) -> Option<Vec<(i32, bool)>> {
    let name = common::unique_id(&format!("frozen-{tag}"));
    let _cg = FrozenCgroup::new(&name)?;
    let cgroup = format!("/{name}");
    let bundle = Bundle::with(SLEEP, |v| v["linux"]["cgroupsPath"] = Value::from(cgroup));
    let id = common::unique_id("frozen");
    rt.track(&id);
    let mut seen = Vec::new();
    for args in [
        &["run", "-d", "-b", bundle.p(), &id][..],
        &["create", "-b", bundle.p(), &id][..],
    ] {
        let o = rt.run_deadlined(args, HANG);
        assert!(
            !o.stderr.contains("[test: killed"),
            "{}: {args:?} hung: {o:?}",
            rt.name
        );
        let named = o
            .error_msg()
            .contains("container's cgroup unexpectedly frozen");
        seen.push((o.code, named));
    }
    let list = rt.run(&["list", "-q"]);
    seen.push((list.code, list.stdout.is_empty()));
    Some(seen)
}

#[test]
fn run_into_frozen_cgroup_fails_at_once() {
    require_runc!();
    let runc = Runtime::runc();
    let vz = Runtime::vzrun();
    let Some(want) = into_frozen_cgroup(&runc, "runc") else {
        eprintln!("SKIP: cannot make a frozen cgroup");
        return;
    };
    assert_eq!(want, vec![(1, true), (1, true), (0, true)], "runc");
    let got = into_frozen_cgroup(&vz, "vzrun").expect("frozen cgroup");
    assert_eq!(got, want, "vzrun differs from runc");
}

// --- hooks ---------------------------------------------------------------------------

// A poststop hook that fails: runc logs it, removes the container and exits 0, so the
// record never outlives the container (a kept one re-ran the hook on every delete).
diff!(
    hooks_failing_poststop_still_deletes,
    SLEEP,
    |v| {
        v["hooks"] = json!({"poststop": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 1"]}]});
    },
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        s(&["kill", "{id}", "KILL"]),
        WAIT_STOPPED_STEP,
        s(&["delete", "{id}"]),
        s(&["list", "-q"]),
        code(&["state", "{id}"]),
    ]
);

// --- exec ------------------------------------------------------------------------------
diff!(
    exec_into_created_container,
    SLEEP,
    |v| v["process"]["user"] = json!({"uid": 1, "gid": 1}),
    [
        s(&["create", "-b", "{b}", "{id}"]),
        s(&[
            "exec",
            "{id}",
            "sh",
            "-c",
            "echo in a created container; id"
        ]),
        s(&["state", "{id}"]),
        s(&["start", "{id}"]),
        s(&["state", "{id}"]),
        s(&["delete", "--force", "{id}"]),
    ]
);
diff!(
    exec_pid_file_in_missing_directory,
    SLEEP,
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        s(&[
            "exec",
            "--pid-file",
            "/vzt-no-such-dir/sub/pid",
            "{id}",
            "true"
        ]),
        s(&["delete", "--force", "{id}"]),
    ]
);
diff!(
    exec_process_file_without_user_is_root,
    SLEEP,
    |v| v["process"]["user"] = json!({"uid": 1, "gid": 1}),
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        stdin(
            &["exec", "-p", "/dev/stdin", "{id}"],
            r#"{"args": ["id"], "cwd": "/", "env": ["PATH=/bin:/usr/bin"]}"#
        ),
        s(&["delete", "--force", "{id}"]),
    ]
);
diff!(
    exec_process_file_takes_what_it_leaves_out_from_the_container,
    SLEEP,
    |v| v["process"]["oomScoreAdj"] = json!(100),
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        stdin(
            &["exec", "-p", "/dev/stdin", "{id}"],
            r#"{"user": {"uid": 0, "gid": 0}, "args": ["sh", "-c", "grep -E '^(Cap|NoNewPrivs)' /proc/self/status; cat /proc/self/oom_score_adj"], "cwd": "/", "env": ["PATH=/bin:/usr/bin"]}"#
        ),
        s(&["delete", "--force", "{id}"]),
    ]
);

// --- cgroups ---------------------------------------------------------------------------
diff!(
    update_unlimited_as_separate_argument,
    SLEEP,
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        s(&["update", "--memory", "100M", "--memory-swap", "-1", "{id}"]),
        s(&["update", "--cpu-quota", "-1", "{id}"]),
        s(&[
            "update",
            "--pids-limit",
            "-1",
            "--memory-reservation",
            "-1",
            "{id}"
        ]),
        code(&["update", "--cpu-share", "-1", "{id}"]),
        s(&["delete", "--force", "{id}"]),
    ]
);
diff!(
    cgroup_unified_refused_on_v1,
    SLEEP,
    |v| v["linux"]["resources"]["unified"] = json!({"memory.max": "100000000"}),
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        s(&["create", "-b", "{b}", "{id}"]),
        s(&["list", "-q"]),
    ]
);
diff!(
    cgroup_disable_oom_killer_set_and_kept_by_update,
    SLEEP,
    |v| {
        v["linux"]["resources"]["memory"] = json!({"limit": 100000000, "disableOOMKiller": true});
    },
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        s(&[
            "exec",
            "{id}",
            "grep",
            "oom_kill_disable",
            "/sys/fs/cgroup/memory/memory.oom_control"
        ]),
        s(&["update", "--memory", "200M", "{id}"]),
        s(&[
            "exec",
            "{id}",
            "grep",
            "oom_kill_disable",
            "/sys/fs/cgroup/memory/memory.oom_control"
        ]),
        s(&["delete", "--force", "{id}"]),
    ]
);

/// `exec --cgroup` of a sub-cgroup that does not exist: the exit code, whether the error
/// says so, and whether a cgroup of that name was left behind.
fn exec_into_missing_sub_cgroup(rt: &Runtime, sub_arg: &str, sub: &str) -> (i32, bool, bool) {
    let bundle = Bundle::busybox(SLEEP);
    let id = common::unique_id("execsubcg");
    rt.track(&id);
    let run = rt.run(&["run", "-d", "-b", bundle.p(), &id]);
    assert_eq!(run.code, 0, "{}: run -d: {run:?}", rt.name);
    let o = rt.run_deadlined(&["exec", "--cgroup", sub_arg, &id, "true"], HANG);
    let said = o.error_msg().contains("no such file or directory");
    let left = common::cgroups_named(sub);
    for d in &left {
        let _ = std::fs::remove_dir(d);
    }
    let del = rt.run(&["delete", "--force", &id]);
    assert_eq!(del.code, 0, "{}: delete: {del:?}", rt.name);
    (o.code, said, left.is_empty())
}

#[test]
fn exec_cgroup_missing_sub_cgroup_fails_without_making_it() {
    require_runc!();
    let sub = common::unique_id("nosub");
    for arg in [sub.clone(), format!("memory:{sub}")] {
        let want = exec_into_missing_sub_cgroup(&Runtime::runc(), &arg, &sub);
        assert_eq!(want, (255, true, true), "runc, --cgroup {arg}");
        let got = exec_into_missing_sub_cgroup(&Runtime::vzrun(), &arg, &sub);
        assert_eq!(got, want, "vzrun differs from runc, --cgroup {arg}");
    }
}

// --- output ----------------------------------------------------------------------------

#[test]
fn events_keys_in_runc_order() {
    require_runc!();
    let bundle = Bundle::busybox(SLEEP);
    let id = common::unique_id("evorder");
    let mut heads = Vec::new();
    for rt in [Runtime::runc(), Runtime::vzrun()] {
        rt.track(&id);
        let run = rt.run(&["run", "-d", "-b", bundle.p(), &id]);
        assert_eq!(run.code, 0, "{}: run -d: {run:?}", rt.name);
        let o = rt.run_deadlined(&["events", "--stats", &id], HANG);
        assert_eq!(o.code, 0, "{}: events: {o:?}", rt.name);
        // The envelope's keys, in the order they come.
        let prefix = format!(r#"{{"type":"stats","id":"{id}","data":{{"#);
        heads.push((rt.name, o.stdout.starts_with(&prefix)));
        let del = rt.run(&["delete", "--force", &id]);
        assert_eq!(del.code, 0, "{}: delete: {del:?}", rt.name);
    }
    assert_eq!(heads, vec![("runc", true), ("vzrun", true)]);
}

/// The messages of the warnings in a runtime's stderr, logrus text or JSON lines.
fn warnings(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| {
            if let Ok(v) = serde_json::from_str::<Value>(l) {
                return (v["level"] == "warning").then(|| v["msg"].as_str().unwrap_or("").into());
            }
            let rest = l.split_once(" level=warning msg=")?.1;
            let quoted = rest.split(" time=").next().unwrap_or(rest);
            let mut de = serde_json::Deserializer::from_str(quoted).into_iter::<String>();
            de.next()?.ok()
        })
        .collect()
}

/// Capability names the runtime does not know: the run goes on, with a warning on stderr
/// (text or JSON by `--log-format`) or, with `--log`, only in the log file.
fn unknown_capabilities(rt: &Runtime) -> Vec<(i32, Vec<String>, Vec<String>)> {
    let bundle = Bundle::with(&["true"], |v| {
        for set in ["bounding", "effective", "permitted"] {
            let names = v["process"]["capabilities"][set].as_array_mut().unwrap();
            names.push(json!("CAP_ZZZ"));
            names.push(json!("CAP_BOGUS"));
        }
    });
    let log = tempfile::NamedTempFile::new().unwrap();
    let log_path = log.path().to_str().unwrap();
    let mut seen = Vec::new();
    for global in [&[][..], &["--log-format", "json"], &["--log", log_path]] {
        let id = common::unique_id("unkcaps");
        rt.track(&id);
        let mut args = global.to_vec();
        args.extend(["run", "-b", bundle.p(), &id]);
        let o = rt.run(&args);
        let logged = std::fs::read_to_string(log.path()).unwrap_or_default();
        seen.push((o.code, warnings(&o.stderr), warnings(&logged)));
    }
    seen
}

#[test]
fn unknown_capabilities_warn_and_go_on() {
    require_runc!();
    let want = unknown_capabilities(&Runtime::runc());
    let line = "ignoring unknown or unavailable capabilities: [CAP_BOGUS CAP_ZZZ]".to_string();
    assert_eq!(
        want,
        vec![
            (0, vec![line.clone()], vec![]),
            (0, vec![line.clone()], vec![]),
            (0, vec![], vec![line]),
        ],
        "runc"
    );
    let got = unknown_capabilities(&Runtime::vzrun());
    assert_eq!(got, want, "vzrun differs from runc");
}

#[test]
fn events_to_a_closed_pipe_does_not_panic() {
    require_root!();
    use std::io::BufRead;
    let bundle = Bundle::busybox(SLEEP);
    let id = common::unique_id("evpipe");
    let vz = Runtime::vzrun();
    vz.track(&id);
    let run = vz.run(&["run", "-d", "-b", bundle.p(), &id]);
    assert_eq!(run.code, 0, "run -d: {run:?}");
    let mut cmd = vz.command();
    cmd.args(["events", "--interval", "100ms", &id])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .stdin(std::process::Stdio::null());
    let mut child = cmd.spawn().expect("spawn events");
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    // The reader goes away, as `events | head -1` does.
    drop(out);
    let mut err = String::new();
    let ended = common::wait_until(10, || child.try_wait().ok().flatten().is_some());
    if !ended {
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(ended, "events went on writing to a closed pipe");
    assert!(!err.contains("panicked"), "events panicked: {err}");
    assert_eq!(status.code(), Some(0), "{err}");
}
diff!(
    create_pid_file_in_missing_directory,
    SLEEP,
    none,
    [
        s(&[
            "create",
            "--pid-file",
            "/vzt-no-such-dir/sub/pid",
            "-b",
            "{b}",
            "{id}"
        ]),
        s(&["list", "-q"]),
        s(&[
            "run",
            "-d",
            "--pid-file",
            "/vzt-no-such-dir/sub/pid",
            "-b",
            "{b}",
            "{id}"
        ]),
        s(&["list", "-q"]),
    ]
);

/// A failing poststart hook under `create` then `start`: whether either failed, whether
/// the container runs after, and whether the hook after the failing one ran. runc 1.1.5
/// runs poststart hooks during create (vzrun at start, see the README), so the step
/// that fails differs; what a caller is left with must not.
fn failing_poststart(rt: &Runtime) -> (bool, bool, bool) {
    let marks = tempfile::Builder::new()
        .prefix("vzt-poststart-")
        .tempdir()
        .unwrap();
    let mark = marks.path().join("second-ran");
    let touch = format!("touch {}", mark.display());
    let bundle = Bundle::with(SLEEP, |v| {
        v["hooks"] = json!({"poststart": [
            {"path": "/bin/sh", "args": ["sh", "-c", "exit 1"]},
            {"path": "/bin/sh", "args": ["sh", "-c", touch]},
        ]});
    });
    let id = common::unique_id("poststart");
    rt.track(&id);
    let create = rt.run_deadlined(&["create", "-b", bundle.p(), &id], HANG);
    let start = rt.run_deadlined(&["start", &id], HANG);
    let failed = create.code != 0 || start.code != 0;
    let running = common::wait_until(1, || {
        let st = rt.run(&["state", &id]);
        st.code == 0 && st.json()["status"] == "running"
    });
    let _ = rt.run(&["delete", "--force", &id]);
    (failed, running, mark.exists())
}

#[test]
fn hooks_failing_poststart_stops_the_container() {
    require_runc!();
    let want = failing_poststart(&Runtime::runc());
    assert_eq!(want, (true, false, false), "runc");
    assert_eq!(
        failing_poststart(&Runtime::vzrun()),
        want,
        "vzrun differs from runc"
    );
}

/// What the poststart and poststop hooks read on stdin under a runtime, from a
/// `run -d`, a kill and a `delete`, and the spec version the runtime reports.
fn hook_states(rt: &Runtime) -> (Value, Value, String) {
    let seen = tempfile::Builder::new()
        .prefix("vzt-hookstate-")
        .tempdir()
        .unwrap();
    let dump = |name: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {}/{name}", seen.path().display())]});
    let hooks = json!({"poststart": [dump("poststart")], "poststop": [dump("poststop")]});
    let bundle = Bundle::with(SLEEP, |v| v["hooks"] = hooks);
    let id = common::unique_id("hookstate");
    rt.track(&id);
    let run = rt.run_deadlined(&["run", "-d", "-b", bundle.p(), &id], HANG);
    assert_eq!(run.code, 0, "{}: run -d: {run:?}", rt.name);
    assert_eq!(rt.run(&["kill", &id, "KILL"]).code, 0, "{}: kill", rt.name);
    assert!(
        rt.wait_status(&id, "stopped"),
        "{}: {id} did not stop",
        rt.name
    );
    let del = rt.run_deadlined(&["delete", &id], HANG);
    assert_eq!(del.code, 0, "{}: delete: {del:?}", rt.name);
    let read = |name: &str| -> Value {
        let text = std::fs::read_to_string(seen.path().join(name)).unwrap_or_default();
        let mut v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        // The test's bundle stands for "the caller's bundle" in both.
        if v["bundle"] == bundle.p() {
            v["bundle"] = Value::from("{b}");
        }
        v
    };
    let version = rt.run(&["--version"]);
    let spec = version
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("spec: "))
        .unwrap_or_default()
        .to_string();
    (read("poststart"), read("poststop"), spec)
}

#[test]
fn hooks_state_names_the_callers_bundle_and_the_runtimes_spec_version() {
    require_runc!();
    for rt in [Runtime::runc(), Runtime::vzrun()] {
        let (poststart, poststop, spec) = hook_states(&rt);
        for (hook, state) in [("poststart", &poststart), ("poststop", &poststop)] {
            assert_eq!(state["bundle"], "{b}", "{} {hook}: {state}", rt.name);
            assert_eq!(
                state["ociVersion"],
                spec.as_str(),
                "{} {hook}: {state}",
                rt.name
            );
        }
        // runc 1.1.5 runs poststart hooks during create (see the README).
        let started = if rt.name == "runc" {
            "created"
        } else {
            "running"
        };
        assert_eq!(poststart["status"], started, "{}: {poststart}", rt.name);
        assert!(poststart["pid"].is_number(), "{}: {poststart}", rt.name);
        assert_eq!(poststop["status"], "stopped", "{}: {poststop}", rt.name);
        assert!(poststop.get("pid").is_none(), "{}: {poststop}", rt.name);
    }
}

/// Every hook kind's stdin and working directory under a runtime, from a `run -d` and a
/// `delete --force` of the running container, keyed by kind; and the spec version the
/// runtime reports. The startContainer hook runs inside the container: it writes through
/// a bind of the same directory on /home.
fn every_hook_state(rt: &Runtime) -> (Vec<(&'static str, Value, String)>, String) {
    const KINDS: [&str; 6] = [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ];
    let seen = tempfile::Builder::new()
        .prefix("vzt-hookkinds-")
        .tempdir()
        .unwrap();
    let mut hooks = serde_json::Map::new();
    for kind in KINDS {
        let dir = if kind == "startContainer" {
            "/home".to_string()
        } else {
            seen.path().display().to_string()
        };
        let script = format!("cat > {dir}/{kind}; pwd > {dir}/{kind}.cwd");
        let dump = json!({"path": "/bin/sh", "args": ["sh", "-c", script]});
        hooks.insert(kind.to_string(), json!([dump]));
    }
    let bundle = Bundle::with(SLEEP, |v| {
        v["hooks"] = Value::Object(hooks);
        v["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/home", "type": "bind", "source": seen.path(), "options": ["rbind", "rw"]
        }));
    });
    let id = common::unique_id("hookkinds");
    rt.track(&id);
    let run = rt.run_deadlined(&["run", "-d", "-b", bundle.p(), &id], HANG);
    assert_eq!(run.code, 0, "{}: run -d: {run:?}", rt.name);
    assert_eq!(rt.status(&id), "running", "{}", rt.name);
    let del = rt.run_deadlined(&["delete", "--force", &id], HANG);
    assert_eq!(del.code, 0, "{}: delete --force: {del:?}", rt.name);
    let states = KINDS
        .iter()
        .map(|kind| {
            let text = std::fs::read_to_string(seen.path().join(kind)).unwrap_or_default();
            let mut v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            // The test's bundle stands for "the caller's bundle" in both.
            if v["bundle"] == bundle.p() {
                v["bundle"] = Value::from("{b}");
            }
            let cwd = std::fs::read_to_string(seen.path().join(format!("{kind}.cwd")))
                .unwrap_or_default()
                .trim_end()
                .replace(bundle.p(), "{b}")
                .replace(common::rootfs().to_str().unwrap(), "{rootfs}");
            (*kind, v, cwd)
        })
        .collect();
    let version = rt.run(&["--version"]);
    let spec = version
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("spec: "))
        .unwrap_or_default()
        .to_string();
    (states, spec)
}

#[test]
fn hooks_of_every_kind_read_runcs_state() {
    require_runc!();
    let (want, runc_spec) = every_hook_state(&Runtime::runc());
    let (got, vz_spec) = every_hook_state(&Runtime::vzrun());
    for ((kind, r, r_cwd), (_, v, v_cwd)) in want.iter().zip(&got) {
        assert!(r.is_object(), "runc {kind}: no state read: {r}");
        assert_eq!(v["bundle"], "{b}", "vzrun {kind}: {v}");
        assert_eq!(r["bundle"], "{b}", "runc {kind}: {r}");
        assert_eq!(r["ociVersion"], runc_spec.as_str(), "runc {kind}: {r}");
        assert_eq!(v["ociVersion"], vz_spec.as_str(), "vzrun {kind}: {v}");
        // runc 1.1.5 runs poststart hooks during create (see the README).
        if *kind != "poststart" {
            assert_eq!(v["status"], r["status"], "{kind}: runc {r}, vzrun {v}");
        }
        let keys = |s: &Value| -> Vec<String> {
            s.as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default()
        };
        assert_eq!(keys(v), keys(r), "{kind}: runc {r}, vzrun {v}");
        // The init's pid as the container sees it.
        if *kind == "createContainer" {
            assert_eq!(v["pid"], r["pid"], "{kind}: runc {r}, vzrun {v}");
        }
        // Where the hook starts: runc runs the create hooks from the bundle, and
        // createContainer from the rootfs. Poststart and poststop run from wherever the
        // command was started (run, delete) in vzrun; runc's run works from the bundle.
        if !["poststart", "poststop"].contains(kind) {
            assert_eq!(v_cwd, r_cwd, "{kind}: working directory");
        }
    }
}

/// The createContainer hook's state in a container with its own user namespace, in
/// which the host's root (the owner of the runtime's binary) is unmapped.
fn create_container_state_in_user_ns(rt: &Runtime) -> Value {
    let seen = tempfile::Builder::new()
        .prefix("vzt-hookuserns-")
        .tempdir()
        .unwrap();
    // The hook runs as the container's root, host uid 100000.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(seen.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = seen.path().join("state");
    let bundle = Bundle::with(SLEEP, |v| {
        in_user_namespace(v);
        let script = format!("cat > {}", out.display());
        v["hooks"] =
            json!({"createContainer": [{"path": "/bin/sh", "args": ["sh", "-c", script]}]});
    });
    let id = common::unique_id("hookuserns");
    rt.track(&id);
    let run = rt.run_deadlined(&["run", "-d", "-b", bundle.p(), &id], HANG);
    let _ = rt.run(&["delete", "--force", &id]);
    assert_eq!(run.code, 0, "{}: run -d: {run:?}", rt.name);
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let mut v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if v["bundle"] == bundle.p() {
        v["bundle"] = Value::from("{b}");
    }
    for k in ["id", "ociVersion"] {
        if let Some(o) = v.as_object_mut() {
            o.remove(k);
        }
    }
    v
}

#[test]
fn hooks_create_container_in_a_user_namespace() {
    require_runc!();
    let want = create_container_state_in_user_ns(&Runtime::runc());
    assert_eq!(
        want,
        json!({"status": "creating", "pid": 1, "bundle": "{b}"}),
        "runc"
    );
    let got = create_container_state_in_user_ns(&Runtime::vzrun());
    assert_eq!(got, want, "vzrun differs from runc");
}

// --- --log and --debug on every command ---------------------------------------------------

/// Per command: its exit code and whether its `--log` file exists afterwards (runc opens
/// it before the command runs, so a caller waiting for the file finds it even when nothing
/// was logged).
fn log_files(rt: &Runtime, bundle: &Bundle, id: &str) -> Vec<(String, i32, bool)> {
    rt.track(id);
    let dir = tempfile::Builder::new()
        .prefix("vzt-logs-")
        .tempdir()
        .unwrap();
    let steps: &[&[&str]] = &[
        &["run", "-d", "-b", "{b}", "{id}"],
        &["state", "{id}"],
        &["list"],
        &["list", "-q", "--format", "json"],
        &["ps", "{id}"],
        &["exec", "{id}", "true"],
        &["exec", "{id}", "sh", "-c", "exit 3"],
        &["pause", "{id}"],
        &["resume", "{id}"],
        &["update", "--pids-limit", "100", "{id}"],
        &["events", "--stats", "{id}"],
        &["kill", "{id}", "KILL"],
        &["state", "vzt-no-such-container"],
        &["delete", "--force", "{id}"],
    ];
    let mut seen = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let log = dir.path().join(format!("{i}.log"));
        let mut args = vec!["--log", log.to_str().unwrap()];
        args.extend(step.iter().map(|a| match *a {
            "{id}" => id,
            "{b}" => bundle.p(),
            other => other,
        }));
        let o = rt.run(&args);
        seen.push((step.join(" "), o.code, log.exists()));
    }
    seen
}

#[test]
fn log_file_is_created_by_every_command() {
    require_runc!();
    let bundle = Bundle::busybox(SLEEP);
    let id = common::unique_id("logfiles");
    let want = log_files(&Runtime::runc(), &bundle, &id);
    assert!(want.iter().all(|(_, _, made)| *made), "runc: {want:?}");
    let got = log_files(&Runtime::vzrun(), &bundle, &id);
    assert_eq!(got, want, "vzrun differs from runc");
}

/// Whether `--debug exec` logs anything: on stderr as logrus text, and as JSON lines with
/// level, msg and time in `--log` with `--log-format json`.
fn exec_debug(rt: &Runtime, bundle: &Bundle, id: &str) -> (bool, bool, String) {
    rt.track(id);
    let o = rt.run(&["run", "-d", "-b", bundle.p(), id]);
    assert_eq!(o.code, 0, "{}: {o:?}", rt.name);
    let text = rt.run(&["--debug", "exec", id, "echo", "hi"]);
    let on_stderr = text.stderr.lines().any(|l| l.contains(" level=debug "));
    let dir = tempfile::Builder::new()
        .prefix("vzt-logs-")
        .tempdir()
        .unwrap();
    let log = dir.path().join("log.json");
    let json = rt.run(&[
        "--debug",
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "exec",
        id,
        "true",
    ]);
    assert_eq!(json.code, 0, "{}: {json:?}", rt.name);
    let lines = std::fs::read_to_string(&log).unwrap_or_default();
    let in_log = lines.lines().any(|l| {
        serde_json::from_str::<Value>(l)
            .is_ok_and(|v| v["level"] == "debug" && v["msg"].is_string() && v["time"].is_string())
    });
    assert_eq!(rt.run(&["delete", "--force", id]).code, 0);
    (on_stderr, in_log, text.stdout)
}

#[test]
fn debug_logs_the_steps_of_exec() {
    require_runc!();
    let bundle = Bundle::busybox(SLEEP);
    let id = common::unique_id("execdebug");
    let want = exec_debug(&Runtime::runc(), &bundle, &id);
    assert_eq!(want, (true, true, "hi\n".to_string()), "runc");
    let got = exec_debug(&Runtime::vzrun(), &bundle, &id);
    assert_eq!(got, want, "vzrun differs from runc");
}
