//! Lifecycle details that a differential table cannot show: hook order (compared with
//! runc), pid files, stdio and terminals, preserved fds, the per-ID lock, cgroup
//! placement, log formats, and cleanup after failures.

mod common;

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{Bundle, Runtime};
use serde_json::{json, Value};

fn hook(log: &str, name: &str) -> Value {
    json!({"path": "/bin/sh", "args": ["sh", "-c", format!("echo {name} >> {log}")]})
}

/// Runs the same create/start/delete under a runtime and returns the hook names in the
/// order they fired.
fn hook_order(rt: &Runtime) -> Vec<String> {
    let logdir = tempfile::Builder::new()
        .prefix("vzt-hooks-")
        .tempdir()
        .unwrap();
    let host_log = logdir.path().join("log");
    let hl = host_log.to_str().unwrap().to_string();
    let ld = logdir.path().to_str().unwrap().to_string();
    let bundle = Bundle::with(&["sh", "-c", "echo process >> /hooklog/log"], |v| {
        v["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/hooklog", "type": "bind", "source": ld, "options": ["rbind", "rw"]
        }));
        v["hooks"] = json!({
            "prestart": [hook(&hl, "prestart")],
            "createRuntime": [hook(&hl, "createRuntime")],
            "createContainer": [hook(&hl, "createContainer")],
            "startContainer": [hook("/hooklog/log", "startContainer")],
            "poststart": [hook(&hl, "poststart")],
            "poststop": [hook(&hl, "poststop")],
        });
    });
    let id = common::unique_id("hooks");
    rt.track(&id);
    assert_eq!(rt.run(&["create", "-b", bundle.p(), &id]).code, 0);
    assert_eq!(rt.run(&["start", &id]).code, 0);
    assert!(rt.wait_status(&id, "stopped"));
    assert_eq!(rt.run(&["delete", &id]).code, 0);
    std::fs::read_to_string(&host_log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn hooks_fire_in_runc_order() {
    require_root!();
    let vz = hook_order(&Runtime::vzrun());
    // The user process and poststart race in every runtime; the rest has one order.
    let fixed = |v: &[String]| -> Vec<String> {
        v.iter()
            .filter(|h| *h != "process" && *h != "poststart")
            .cloned()
            .collect()
    };
    assert_eq!(
        fixed(&vz),
        [
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststop"
        ],
        "{vz:?}"
    );
    assert!(
        vz.contains(&"poststart".to_string()),
        "poststart did not fire: {vz:?}"
    );
    if common::have("runc") {
        let runc = hook_order(&Runtime::runc());
        assert_eq!(fixed(&vz), fixed(&runc), "vzrun {vz:?} runc {runc:?}");
    }
}

#[test]
fn pid_file_names_the_init() {
    require_root!();
    let rt = Runtime::vzrun();
    let bundle = Bundle::busybox(&["sleep", "300"]);
    let id = common::unique_id("pidfile");
    rt.track(&id);
    let pidfile = bundle.path().join("init.pid");
    let o = rt.run(&[
        "create",
        "--bundle",
        bundle.p(),
        "--pid-file",
        pidfile.to_str().unwrap(),
        &id,
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    let pid: i64 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(rt.state(&id)["pid"], pid);
    // The init lives in an ordinary cgroup named after the container, which is where
    // containerd reads its statistics (a private root adds a tag of its own between).
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        cg.lines()
            .any(|l| l.contains("/vzrun-") && l.trim_end().ends_with(&format!("-{id}"))),
        "{cg}"
    );
    assert_eq!(rt.run(&["delete", "-f", &id]).code, 0);
    assert!(common::cgroups_named(&id).is_empty());
}

#[test]
fn run_returns_exit_code_and_cleans_up() {
    require_root!();
    let rt = Runtime::vzrun();
    let bundle = Bundle::busybox(&["sh", "-c", "echo out; echo err >&2; exit 42"]);
    let id = common::unique_id("exit");
    let o = rt.run(&["run", "-b", bundle.p(), &id]);
    assert_eq!(
        (o.code, o.stdout.as_str(), o.stderr.as_str()),
        (42, "out\n", "err\n")
    );
    assert!(common::cgroups_named(&id).is_empty());
}

/// A caller that ignores SIGHUP and SIGQUIT (nohup, a shell's `trap '' …`): runc takes
/// SIGHUP and SIGINT over with its own handler, so its container gets them at their
/// default, while other ignored signals stay ignored. vzrun's container must see the same.
#[test]
fn signals_the_caller_ignored_reach_the_container_as_with_runc() {
    require_root!();
    let bundle = Bundle::busybox(&["sh", "-c", "grep ^SigIgn /proc/self/status"]);
    let mut seen = Vec::new();
    for rt in [Runtime::runc(), Runtime::vzrun()] {
        let id = common::unique_id("sigign");
        rt.track(&id);
        let mut cmd = rt.command();
        cmd.args(["run", "-b", bundle.p(), &id]);
        // SAFETY: only signal(2), async-signal-safe, between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::signal(libc::SIGHUP, libc::SIG_IGN);
                libc::signal(libc::SIGINT, libc::SIG_IGN);
                libc::signal(libc::SIGQUIT, libc::SIG_IGN);
                Ok(())
            });
        }
        let out = common::output_of(cmd, Stdio::null());
        assert_eq!(out.code, 0, "{}: {}", rt.name, out.stderr);
        let mask = out
            .stdout
            .split_whitespace()
            .nth(1)
            .and_then(|m| u64::from_str_radix(m, 16).ok())
            .unwrap_or_else(|| panic!("{}: {:?}", rt.name, out.stdout));
        seen.push((rt.name, mask & 0b111));
    }
    // Bits 0, 1, 2: SIGHUP, SIGINT, SIGQUIT.
    assert_eq!(seen, [("runc", 0b100), ("vzrun", 0b100)]);
}

/// Starts `cmd` (a foreground `run` or `exec` of the script below), waits until its
/// process has set its traps, sends `sig` to the runtime, and returns the exit status.
fn foreground_signal(mut cmd: Command, sig: nix::sys::signal::Signal) -> Option<i32> {
    use std::io::BufRead;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, sig).unwrap();
    child.wait().unwrap().code()
}

/// The script's traps decide its exit status: 7 for SIGTERM, 9 for SIGUSR1. Its sleep
/// lets go of stdout: runc's foreground exec copies it until every holder closes it.
const TRAPS: &str =
    "trap 'exit 7' TERM; trap 'exit 9' USR1; echo ready; sleep 1000 >/dev/null 2>&1 & wait";

/// A signal sent to a foreground `run` or `exec` reaches the container's process, which
/// handles it, and the runtime returns the status the process then exits with, as runc.
#[test]
fn signals_to_a_foreground_run_or_exec_reach_the_process_as_with_runc() {
    require_root!();
    use nix::sys::signal::Signal;
    let mut seen = Vec::new();
    for rt in [Runtime::runc(), Runtime::vzrun()] {
        let bundle = Bundle::busybox(&["sh", "-c", TRAPS]);
        let id = common::unique_id("fgsig");
        rt.track(&id);
        let mut cmd = rt.command();
        cmd.args(["run", "-b", bundle.p(), &id]);
        let run = foreground_signal(cmd, Signal::SIGTERM);
        let sleeper = Bundle::busybox(&["sleep", "1000"]);
        let id = common::unique_id("fgsig");
        rt.track(&id);
        assert_eq!(rt.run(&["run", "-d", "-b", sleeper.p(), &id]).code, 0);
        let mut cmd = rt.command();
        cmd.args(["exec", &id, "sh", "-c", TRAPS]);
        let exec = foreground_signal(cmd, Signal::SIGUSR1);
        assert_eq!(rt.run(&["delete", "-f", &id]).code, 0);
        seen.push((rt.name, run, exec));
    }
    assert_eq!(
        seen,
        [("runc", Some(7), Some(9)), ("vzrun", Some(7), Some(9))]
    );
}

/// A foreground `run` or `exec` holds the signals it passes on blocked from before its
/// process starts; the process itself gets the caller's mask back, as under runc.
#[test]
fn a_foreground_process_blocks_no_signal_as_with_runc() {
    require_root!();
    let status = "grep ^SigBlk /proc/self/status";
    let mut seen = Vec::new();
    for rt in [Runtime::runc(), Runtime::vzrun()] {
        let bundle = Bundle::busybox(&["sh", "-c", status]);
        let id = common::unique_id("sigblk");
        rt.track(&id);
        let run = rt.run(&["run", "-b", bundle.p(), &id]);
        let sleeper = Bundle::busybox(&["sleep", "1000"]);
        let id = common::unique_id("sigblk");
        rt.track(&id);
        assert_eq!(rt.run(&["run", "-d", "-b", sleeper.p(), &id]).code, 0);
        let exec = rt.run(&["exec", &id, "sh", "-c", status]);
        assert_eq!(rt.run(&["delete", "-f", &id]).code, 0);
        seen.push((rt.name, run.stdout, exec.stdout));
    }
    let none = "SigBlk:\t0000000000000000\n".to_string();
    assert_eq!(
        seen,
        [
            ("runc", none.clone(), none.clone()),
            ("vzrun", none.clone(), none)
        ]
    );
}

#[test]
fn preserve_fds_reach_the_process() {
    require_root!();
    let rt = Runtime::vzrun();
    let bundle = Bundle::busybox(&["sh", "-c", "echo through-fd-3 >&3"]);
    let id = common::unique_id("fds");
    let (r, w) = nix::unistd::pipe().unwrap();
    let wfd = w.as_raw_fd();
    let mut cmd = rt.command();
    cmd.args(["run", "--preserve-fds", "1", "-b", bundle.p(), &id])
        .stdin(Stdio::null());
    // SAFETY: dup2 in the child between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(wfd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let status = cmd.status().unwrap();
    drop(w);
    assert!(status.success());
    let mut text = String::new();
    std::fs::File::from(r).read_to_string(&mut text).unwrap();
    assert_eq!(text, "through-fd-3\n");
}

/// A console socket receives the pty master, and the process sees a terminal.
#[test]
fn console_socket_gets_a_terminal() {
    require_root!();
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let rt = Runtime::vzrun();
    let bundle = Bundle::with(&["sh", "-c", "tty; echo cols=$(stty size)"], |v| {
        v["process"]["terminal"] = json!(true);
    });
    let sockdir = tempfile::Builder::new()
        .prefix("vzt-sock-")
        .tempdir()
        .unwrap();
    let sock = sockdir.path().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let id = common::unique_id("tty");
    rt.track(&id);
    let o = rt.run(&[
        "create",
        "-b",
        bundle.p(),
        "--console-socket",
        sock.to_str().unwrap(),
        &id,
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    let (stream, _) = listener.accept().unwrap();
    let mut buf = [0u8; 256];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .unwrap();
    let mut master = None;
    for c in msg.cmsgs().unwrap() {
        if let ControlMessageOwned::ScmRights(fds) = c {
            master = Some(unsafe { OwnedFd::from_raw_fd(fds[0]) });
        }
    }
    let master = master.expect("pty master received");
    assert_eq!(rt.run(&["start", &id]).code, 0);
    let mut f = std::fs::File::from(master);
    let mut out = String::new();
    let mut chunk = [0u8; 1024];
    while let Ok(n) = f.read(&mut chunk) {
        if n == 0 {
            break;
        }
        out.push_str(&String::from_utf8_lossy(&chunk[..n]));
        if out.contains("cols=") && out.ends_with('\n') {
            break;
        }
    }
    assert!(
        out.contains("/dev/pts/"),
        "process saw no terminal: {out:?}"
    );
    assert!(rt.wait_status(&id, "stopped"));
    assert_eq!(rt.run(&["delete", &id]).code, 0);
}

#[test]
fn concurrent_calls_on_one_id_are_serialised() {
    require_root!();
    let rt = Runtime::vzrun();
    let bundle = Bundle::busybox(&["sleep", "300"]);
    let id = common::unique_id("race");
    rt.track(&id);
    // stderr goes to files: the winner's init inherits it and would hold a pipe open.
    let commands = |verbs: &[&str]| -> Vec<Command> {
        verbs
            .iter()
            .map(|verb| {
                let mut cmd = rt.command();
                cmd.arg(verb);
                if *verb == "create" {
                    cmd.args(["-b", bundle.p()]);
                }
                cmd.arg(&id);
                cmd
            })
            .collect()
    };
    let outs = common::outputs_of(commands(&["create"; 8]));
    let ok = outs.iter().filter(|o| o.code == 0).count();
    assert_eq!(ok, 1, "exactly one create wins: {outs:?}");
    for o in outs.iter().filter(|o| o.code != 0) {
        assert!(o.stderr.contains("already exists"), "{o:?}");
    }
    // Starts, states and kills at once: all answer, state stays readable.
    common::outputs_of(commands(&["start", "state", "state", "kill"]));
    let st = rt.state(&id);
    assert!(
        ["running", "stopped"].contains(&st["status"].as_str().unwrap()),
        "{st}"
    );
    assert_eq!(rt.run(&["delete", "-f", &id]).code, 0);
}

#[test]
fn json_log_carries_errors_for_the_shim() {
    require_root!();
    let rt = Runtime::vzrun();
    let dir = tempfile::Builder::new()
        .prefix("vzt-log-")
        .tempdir()
        .unwrap();
    let log = dir.path().join("log.json");
    let o = rt.run(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "state",
        "vzt-nonexistent",
    ]);
    assert_eq!(o.code, 1);
    let text = std::fs::read_to_string(&log).unwrap();
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["level"], "error");
    assert_eq!(last["msg"], "container does not exist");
    assert!(last["time"].as_str().unwrap().ends_with('Z'));
    // A usage error reaches the log too.
    let o = rt.run(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format=json",
        "create",
        "--bogus",
    ]);
    assert_eq!(o.code, 1);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines()
            .last()
            .unwrap()
            .contains("flag provided but not defined: -bogus"),
        "{text}"
    );
    // Without --log (podman's case), the error is on stderr.
    let o = rt.run(&["state", "vzt-nonexistent"]);
    assert!(o.stderr.contains("container does not exist"), "{o:?}");
}

/// A usage error is said once on stderr, and the log line the shim reads carries the
/// whole message (clap words it on several lines: the missing argument is on the second).
#[test]
fn usage_errors_print_once_and_whole() {
    require_root!();
    let rt = Runtime::vzrun();
    let dir = tempfile::Builder::new()
        .prefix("vzt-log-")
        .tempdir()
        .unwrap();
    let log = dir.path().join("log.json");
    let said = "the following required arguments were not provided";
    for args in [
        vec!["ve", "stat"],
        vec![
            "--log",
            log.to_str().unwrap(),
            "--log-format",
            "json",
            "ve",
            "stat",
        ],
    ] {
        let o = rt.run(&args);
        assert_eq!(o.code, 1, "{args:?}: {o:?}");
        assert_eq!(o.stderr.matches(said).count(), 1, "{args:?}: {o:?}");
        assert_eq!(
            o.stderr.matches("<ID>").count(),
            2,
            "message and usage: {o:?}"
        );
        assert!(o.stderr.contains("Usage: vzrun ve stat"), "{o:?}");
    }
    let o = rt.run(&["create", "--bogus", "x"]);
    assert_eq!(o.stderr.matches("bogus").count(), 1, "{o:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["level"], "error");
    assert_eq!(last["msg"], format!("{said}: <ID>"), "{text}");
}

/// The lines of `text` that carry `msg` (logrus text), with their fields.
fn debug_lines<'a>(text: &'a str, msg: &str) -> Vec<&'a str> {
    let quoted = format!("msg={}", serde_json::to_string(msg).unwrap());
    text.lines()
        .filter(|l| l.contains(" level=debug ") && l.contains(&quoted))
        .collect()
}

#[test]
fn debug_traces_the_netlink_and_cgroup_steps_of_a_create() {
    require_root!();
    let rt = Runtime::vzrun();
    let bundle = Bundle::ve(
        &["sleep", "300"],
        json!({"io.vzrun.net.ip": "198.51.100.163", "io.vzrun.ram": "96M"}),
    );
    let id = common::unique_id("debugcreate");
    rt.track(&id);
    let o = rt.run(&["--debug", "create", "-b", bundle.p(), &id]);
    assert_eq!(o.code, 0, "{o:?}");
    let err = &o.stderr;
    // The venet address, as the netlink request that added it, timed.
    let added = debug_lines(err, "netlink");
    assert!(
        added
            .iter()
            .any(|l| l.contains("op=\"add address 198.51.100.163/32\"") && l.contains(" took=")),
        "{err}"
    );
    // The cgroup: the path and limits vzrun derived, and libcgroups applying them.
    let derived = debug_lines(err, "derived spec");
    assert!(
        derived.iter().any(|l| l.contains("cgroup=/vzrun-")
            && l.contains(&id)
            && l.contains("\\\"limit\\\":100663296")),
        "{err}"
    );
    assert!(
        !debug_lines(err, "Apply Memory cgroup config").is_empty(),
        "{err}"
    );
    // The whole command, timed.
    assert!(
        debug_lines(err, "vzrun")
            .iter()
            .any(|l| l.contains("command=create") && l.contains(" took=")),
        "{err}"
    );

    // The same steps as JSON lines in --log, as containerd's shim asks for them.
    let dir = tempfile::Builder::new()
        .prefix("vzt-log-")
        .tempdir()
        .unwrap();
    let log = dir.path().join("log.json");
    let o = rt.run(&[
        "--debug",
        "--log-format",
        "json",
        "--log",
        log.to_str().unwrap(),
        "delete",
        "--force",
        &id,
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stderr.is_empty(), "the log takes the lines: {o:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    for l in &lines {
        assert!(l["level"].is_string() && l["msg"].is_string(), "{l}");
        assert!(l["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{l}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l["msg"] == "ve teardown" && l["took"].is_string()),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["msg"] == "vzrun" && l["command"] == "delete"),
        "{text}"
    );
}

#[test]
fn bad_input_leaves_nothing() {
    require_root!();
    let rt = Runtime::vzrun();
    let cases: Vec<(Bundle, &str)> = vec![
        (
            Bundle::with(&["true"], |v| {
                v["annotations"] = json!({"io.vzrun.bogus": "1"});
            }),
            "io.vzrun.bogus",
        ),
        (
            Bundle::with(&["true"], |v| {
                v["hooks"] = json!({"prestart": [{"path": "/bin/false"}]});
            }),
            "hook",
        ),
        (
            Bundle::with(&["true"], |v| {
                v["hooks"] = json!({"createRuntime": [{"path": "/bin/false"}]});
            }),
            "hook",
        ),
        (
            Bundle::with(&["/no/such/binary"], |_| {}),
            "/no/such/binary",
        ),
        // Fails once the init has installed its filter: no agent listens at /x.
        (
            Bundle::with(&["true"], |v| {
                v["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW",
                    "listenerPath": "/x", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]});
            }),
            "seccomp agent",
        ),
    ];
    for (bundle, words) in &cases {
        let id = common::unique_id("bad");
        let o = rt.run(&["run", "-b", bundle.p(), &id]);
        assert_ne!(o.code, 0, "{words}: {o:?}");
        assert!(
            o.stderr.contains(words),
            "error should mention {words:?}: {}",
            o.stderr
        );
        assert!(
            common::cgroups_named(&id).is_empty(),
            "{words}: cgroup left"
        );
        assert_eq!(
            rt.run(&["list", "-q"]).stdout,
            "",
            "{words}: container left"
        );
        assert!(
            std::fs::read_dir(rt.root.path()).unwrap().next().is_none(),
            "{words}: state left"
        );
    }
}

#[test]
fn checkpoint_probes_answer_like_runc() {
    let rt = Runtime::vzrun();
    // Help always prints and succeeds, as runc's does, CRIU or not (whether this host
    // can checkpoint is `features`' answer): see docs::checkpoint_help_without_criu.
    let help = rt.run(&["checkpoint", "--help"]);
    assert_eq!(help.code, 0, "{help:?}");
    let o = rt.run(&["checkpoint", "--image-path", "/tmp/x", "some-id"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("container does not exist"), "{o:?}");
    // podman probes restore's flags and looks for these words.
    let o = rt.run(&["restore", "--lsm-mount-context"]);
    assert!(o.stderr.contains("flag needs an argument"), "{o:?}");
}

#[test]
fn features_and_spec() {
    let rt = Runtime::vzrun();
    let f = rt.run(&["features"]).json();
    assert_eq!(
        f["potentiallyUnsafeConfigAnnotations"],
        json!(["io.vzrun."])
    );
    assert!(f["linux"]["seccomp"]["enabled"].as_bool().unwrap());
    let dir = tempfile::Builder::new()
        .prefix("vzt-spec-")
        .tempdir()
        .unwrap();
    assert_eq!(
        rt.run(&["spec", "--bundle", dir.path().to_str().unwrap()])
            .code,
        0
    );
    let spec: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(spec["process"]["args"], json!(["sh"]));
    let again = rt.run(&["spec", "-b", dir.path().to_str().unwrap()]);
    assert_eq!(again.code, 1);
    assert!(
        again.stderr.contains("File config.json exists"),
        "{again:?}"
    );
    let rl = tempfile::Builder::new()
        .prefix("vzt-spec-")
        .tempdir()
        .unwrap();
    assert_eq!(
        rt.run(&["spec", "--rootless", "-b", rl.path().to_str().unwrap()])
            .code,
        0
    );
    let spec: Value =
        serde_json::from_slice(&std::fs::read(rl.path().join("config.json")).unwrap()).unwrap();
    assert!(spec["linux"]["uidMappings"].is_array());
}

/// Without a PID namespace the init's children outlive it; containerd's shim then sends
/// `kill --all ID 9`, which must still reach them (runc signals what is left in the cgroup).
#[test]
fn kill_all_reaches_orphans_after_the_init_exits() {
    require_root!();
    let rt = Runtime::vzrun();
    let marker = format!("{}", 4_000_000 + std::process::id());
    let bundle = Bundle::with(
        &["sh", "-c", &format!("sleep {marker} & echo started")],
        |v| {
            for n in v["linux"]["namespaces"].as_array_mut().unwrap() {
                if n["type"] == "pid" {
                    n["path"] = json!(format!("/proc/{}/ns/pid", std::process::id()));
                }
            }
        },
    );
    let id = common::unique_id("orphans");
    rt.track(&id);
    assert_eq!(rt.run(&["create", "-b", bundle.p(), &id]).code, 0);
    assert_eq!(rt.run(&["start", &id]).code, 0);
    assert!(rt.wait_status(&id, "stopped"));
    let alive = || {
        std::process::Command::new("pgrep")
            .args(["-f", &format!("sleep {marker}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    assert!(alive(), "the orphan runs on after its init");
    let o = rt.run(&["kill", "--all", &id, "9"]);
    assert_eq!(o.code, 0, "{o:?}");
    let gone = common::poll(40, std::time::Duration::from_millis(50), || !alive());
    assert!(gone, "kill --all left the orphan running");
    assert_eq!(rt.run(&["delete", &id]).code, 0);
}

/// `exec -t` on a container whose init has no terminal: runc allocates one and relays it
/// (its own stdin must be a terminal, so both run under script(1)); vzrun must too.
#[test]
fn exec_t_gets_a_terminal_like_runc() {
    require_root!();
    if !common::have("script") {
        eprintln!("SKIP: script(1) is not installed");
        return;
    }
    let bundle = Bundle::busybox(&["sleep", "60"]);
    let mut seen = Vec::new();
    for rt in [Runtime::runc(), Runtime::vzrun()] {
        let id = common::unique_id("exect");
        rt.track(&id);
        let o = rt.run(&["run", "-d", "-b", bundle.p(), &id]);
        assert_eq!(o.code, 0, "{}: {o:?}", rt.name);
        let cmd = format!(
            "{} --root {} exec -t {id} sh -c 'tty; echo term=$TERM'",
            rt.bin,
            rt.root.path().display()
        );
        let out = std::process::Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        // The tty echoes a stray NUL as "^@" wherever it lands: not part of the output.
        let text = String::from_utf8_lossy(&out.stdout)
            .replace('\r', "")
            .replace("^@", "");
        assert!(out.status.success(), "{}: {text}", rt.name);
        assert!(text.contains("/dev/pts/0"), "{}: {text}", rt.name);
        // script(1) may put terminal control sequences before a line: take the words.
        let words: Vec<String> = text
            .split(|c: char| c.is_whitespace() || c.is_control())
            .filter(|w| w.starts_with("/dev/") || w.starts_with("term="))
            .map(str::to_string)
            .collect();
        seen.push((words, text.clone()));
        let o = rt.run(&["delete", "-f", &id]);
        assert_eq!(o.code, 0, "{o:?}");
    }
    assert_eq!(
        seen[0].0, seen[1].0,
        "runc vs vzrun: {:?} / {:?}",
        seen[0].1, seen[1].1
    );
}

/// A user other than root is told vzrun needs root, once, with exit 1, rather than the
/// first privileged step's failure; what only prints (help, spec, keys) still works.
#[test]
fn non_root_is_told_vzrun_needs_root() {
    require_root!();
    if !common::have("setpriv") {
        eprintln!("SKIP: setpriv (util-linux) is missing");
        return;
    }
    let rt = Runtime::vzrun();
    let b = Bundle::busybox(&["true"]);
    let nobody = |args: &[&str]| -> common::Out {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&rt.bin)
            .arg("--root")
            .arg(rt.root.path())
            .args(args)
            .current_dir("/")
            .stdin(Stdio::null())
            .output()
            .expect("setpriv");
        out.into()
    };
    for args in [
        vec!["run", "-b", b.p(), "vzt-nobody"],
        vec!["list"],
        vec!["ve", "status", "vzt-nobody"],
        vec!["ve", "start", "vzt-nobody"],
        vec!["checkpoint", "vzt-nobody"],
    ] {
        let o = nobody(&args);
        assert_eq!(o.code, 1, "{args:?}: {o:?}");
        assert!(
            o.error_msg().starts_with("vzrun needs root"),
            "{args:?}: {o:?}"
        );
        assert_eq!(o.stderr.lines().count(), 1, "said once: {o:?}");
    }
    for args in [vec!["--help"], vec!["run", "--help"], vec!["ve", "keys"]] {
        let o = nobody(&args);
        assert_eq!(o.code, 0, "{args:?}: {o:?}");
    }
    assert!(common::dir_entries(rt.root.path()).is_empty());
}

/// A stopped container whose cgroup has sub-cgroups (made by a manager or by the
/// container's own systemd): runc's delete removes the whole tree in every hierarchy, and
/// so must vzrun's (libcgroups' remove gives up on a cgroup with children).
#[test]
fn delete_removes_sub_cgroups_of_a_stopped_container_like_runc() {
    require_root!();
    for rt in [Runtime::vzrun(), Runtime::runc()] {
        let id = common::unique_id("subcg");
        let name = format!("{id}-{}", rt.name);
        let bundle = Bundle::with(&["true"], |v| {
            v["linux"]["cgroupsPath"] = json!(format!("/{name}"));
        });
        rt.track(&id);
        assert_eq!(rt.run(&["create", "-b", bundle.p(), &id]).code, 0);
        let dirs = common::cgroups_named(&name);
        assert!(!dirs.is_empty(), "{}: no cgroup named {name}", rt.name);
        for d in &dirs {
            std::fs::create_dir(d.join("child")).expect("mkdir a sub-cgroup");
        }
        assert_eq!(rt.run(&["start", &id]).code, 0);
        assert!(rt.wait_status(&id, "stopped"));
        let o = rt.run(&["delete", &id]);
        assert_eq!(o.code, 0, "{}: {o:?}", rt.name);
        assert!(
            common::cgroups_named(&name).is_empty(),
            "{} left {:?}",
            rt.name,
            common::cgroups_named(&name)
        );
    }
}

/// runc leaves nothing behind for an exec; libcontainer left a tenant-notify socket in
/// the container's state directory for every one, until the container was deleted.
#[test]
fn exec_leaves_nothing_in_the_state_directories() {
    require_root!();
    let rt = Runtime::vzrun();
    let b = Bundle::busybox(&["sleep", "600"]);
    let id = common::unique_id("exec-left");
    rt.track(&id);
    assert_eq!(rt.run(&["run", "-d", "-b", b.p(), &id]).code, 0);
    let entries = || {
        let mut all = Vec::new();
        for dir in [
            rt.root.path().join(&id),
            rt.root.path().join(".vzrun").join(&id),
        ] {
            all.extend(common::dir_entries(&dir));
        }
        all.sort();
        all
    };
    let before = entries();
    for args in [
        &["exec", &id, "true"][..],
        &["exec", "-d", &id, "true"],
        &["exec", &id, "sh", "-c", "exit 3"],
    ] {
        let _ = rt.run(args);
    }
    assert_eq!(entries(), before);
    assert_eq!(rt.run(&["delete", "-f", &id]).code, 0);
}

/// The credential lines of /proc/PID/status.
fn creds_of(pid: i64) -> Vec<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .filter(|l| {
            ["Uid:", "Gid:", "Groups:", "Cap", "NoNewPrivs:", "Seccomp:"]
                .iter()
                .any(|k| l.starts_with(k))
        })
        .map(str::to_string)
        .collect()
}

/// What the host sees of a container's init and of a detached `exec ID sleep 300` next
/// to it, both started by a caller with supplementary groups 5 and 6: whether the exec
/// is in the init's namespaces and cgroups, its open fds, and the credential lines of
/// both.
struct Seen {
    same_ns: bool,
    same_cgroup: bool,
    fds: Vec<String>,
    exec_creds: Vec<String>,
    init_creds: Vec<String>,
}

fn exec_seen_from_host(name: &'static str, bin: &str) -> Seen {
    let dir = tempfile::Builder::new()
        .prefix("vzt-execjoin-")
        .tempdir()
        .unwrap();
    // The caller's groups, as a shim or a shell may have them.
    let wrapper = dir.path().join(name);
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nexec setpriv --groups 5,6 -- {bin} \"$@\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let rt = Runtime::named(name, &wrapper);
    let bundle = Bundle::busybox(&["sleep", "300"]);
    let id = common::unique_id("execjoin");
    rt.track(&id);
    let pidfile = dir.path().join("pid");
    assert_eq!(rt.run(&["run", "-d", "-b", bundle.p(), &id]).code, 0);
    let init = rt.state(&id)["pid"].as_i64().unwrap();
    let o = rt.run(&[
        "exec",
        "-d",
        "--pid-file",
        pidfile.to_str().unwrap(),
        &id,
        "sleep",
        "300",
    ]);
    assert_eq!(o.code, 0, "{name} exec: {o:?}");
    let pid: i64 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let link = |p: i64, ns: &str| std::fs::read_link(format!("/proc/{p}/ns/{ns}")).unwrap();
    let cgroup = |p: i64| std::fs::read_to_string(format!("/proc/{p}/cgroup")).unwrap();
    let mut fds = common::dir_entries(Path::new(&format!("/proc/{pid}/fd")));
    fds.sort();
    let seen = Seen {
        same_ns: ["mnt", "uts", "ipc", "net", "pid", "cgroup"]
            .iter()
            .all(|ns| link(pid, ns) == link(init, ns)),
        same_cgroup: cgroup(pid) == cgroup(init),
        fds,
        exec_creds: creds_of(pid),
        init_creds: creds_of(init),
    };
    assert_eq!(rt.run(&["delete", "-f", &id]).code, 0);
    seen
}

/// vzrun starts an exec'd process itself (one fork, no intermediate): it must land where
/// runc's does, in every namespace and cgroup of the container's init, with runc's
/// credentials and none of vzrun's open files. Neither it nor the init may carry the
/// caller's supplementary groups (libcontainer's forks kept them).
#[test]
fn an_exec_joins_the_inits_namespaces_and_cgroups_with_runcs_credentials() {
    require_root!();
    if !common::have("runc") || !common::have("setpriv") {
        eprintln!("SKIP: runc or setpriv is not installed (hack/setup.sh installs them)");
        return;
    }
    let vz = exec_seen_from_host("vzrun", common::VZRUN);
    let runc = exec_seen_from_host("runc", "runc");
    assert!(
        vz.same_ns,
        "vzrun's exec is not in all of the init's namespaces"
    );
    assert!(
        vz.same_cgroup,
        "vzrun's exec is not in all of the init's cgroups"
    );
    assert_eq!(
        vz.fds,
        ["0", "1", "2"],
        "vzrun's exec holds more than stdio"
    );
    assert!(
        vz.init_creds.iter().any(|l| l.trim_end() == "Groups:"),
        "the caller's groups reached the init: {:?}",
        vz.init_creds
    );
    assert_eq!(
        (
            vz.same_ns,
            vz.same_cgroup,
            &vz.fds,
            &vz.exec_creds,
            &vz.init_creds
        ),
        (
            runc.same_ns,
            runc.same_cgroup,
            &runc.fds,
            &runc.exec_creds,
            &runc.init_creds
        )
    );
}
