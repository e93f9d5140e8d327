//! vzrun as a terminal program: output into a pipe whose reader went away, `exec -t` and
//! `ve enter` without a terminal, and window size changes reaching the process inside.

mod common;

use std::process::{Command, Stdio};

use common::{Bundle, OnPty, Out, Runtime, Started};

/// Runs `cmd` with stdout a pipe whose read end is already closed, as `CMD | head -0`
/// would leave it once head has exited; kills it after `secs` (a command that keeps
/// writing into nothing never ends by itself).
fn with_closed_stdout(mut cmd: Command, secs: u64) -> Out {
    let (read_end, write_end) = nix::unistd::pipe().expect("pipe");
    drop(read_end);
    let err = tempfile::tempfile().expect("tempfile");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::from(err.try_clone().unwrap()))
        .spawn()
        .expect("spawn");
    let mut code = None;
    common::wait_until(secs, || match child.try_wait() {
        Ok(Some(st)) => {
            // A signal death (SIGABRT from a panic) has no code: show it as 128+N.
            use std::os::unix::process::ExitStatusExt;
            code = Some(st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0)));
            true
        }
        _ => false,
    });
    if code.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let mut err = err;
    let mut stderr = String::new();
    use std::io::{Read, Seek};
    err.rewind().unwrap();
    err.read_to_string(&mut stderr).unwrap();
    Out {
        code: code.unwrap_or(-1),
        stdout: String::new(),
        stderr,
    }
}

/// `vzrun list | head -0`, `vzrun ve list | head -1`, `vzrun events ID | head -1`, ...:
/// each ends at once, with status 0 and nothing on stderr (no panic, no "Broken pipe").
#[test]
fn printing_commands_survive_a_closed_pipe() {
    require_root!();
    let rt = Runtime::vzrun();
    let bundle = Bundle::busybox(&["sleep", "60"]);
    let id = common::unique_id("pipe");
    rt.track(&id);
    let o = rt.run(&["run", "-d", "-b", bundle.p(), &id]);
    assert_eq!(o.code, 0, "{o:?}");
    for args in [
        vec!["list"],
        vec!["list", "-q"],
        vec!["state", &id],
        vec!["ps", &id],
        vec!["ps", "-f", "json", &id],
        vec!["events", "--interval", "1s", &id],
        vec!["events", "--stats", &id],
        vec!["ve", "list", "-a"],
        vec!["ve", "stat", &id],
        vec!["features"],
        vec!["template", "list"],
    ] {
        let mut cmd = rt.command();
        cmd.args(&args);
        let o = with_closed_stdout(cmd, 10);
        assert_eq!(o.code, 0, "vzrun {args:?} into a closed pipe: {o:?}");
        assert!(
            o.stderr.is_empty(),
            "vzrun {args:?} into a closed pipe said: {}",
            o.stderr
        );
    }
    // `--help` and `--version` too.
    for args in [
        vec!["--help"],
        vec!["--version"],
        vec!["ve", "list", "--help"],
    ] {
        let mut cmd = Command::new(common::VZRUN);
        cmd.args(&args);
        let o = with_closed_stdout(cmd, 10);
        assert_eq!(o.code, 0, "vzrun {args:?} into a closed pipe: {o:?}");
    }
    assert_eq!(rt.run(&["delete", "-f", &id]).code, 0);
}

/// Runs `cmd` with stdin from /dev/null; its output once it ends within `secs` seconds,
/// else None (it is killed).
fn finish_within(mut cmd: Command, secs: u64) -> Option<Out> {
    let mut started = Started::new(cmd.stdin(Stdio::null()));
    let mut code = None;
    common::wait_until(secs, || match started.child.try_wait() {
        Ok(Some(st)) => {
            code = Some(st.code().unwrap_or(-1));
            true
        }
        _ => false,
    });
    if code.is_none() {
        let _ = started.child.kill();
        let _ = started.child.wait();
    }
    code.map(|c| started.output(c))
}

/// `exec -t` and `run` of a process with a terminal, from a script (stdin not a
/// terminal): vzrun would relay a terminal no one types on, and the shell inside would
/// wait for ever. Both fail at once, saying why, as runc does, and leave nothing.
#[test]
fn a_terminal_without_a_terminal_fails_at_once() {
    require_root!();
    let rt = Runtime::vzrun();
    let bundle = Bundle::busybox(&["sleep", "60"]);
    let id = common::unique_id("notty");
    rt.track(&id);
    let o = rt.run(&["run", "-d", "-b", bundle.p(), &id]);
    assert_eq!(o.code, 0, "{o:?}");
    let mut cmd = rt.command();
    cmd.args(["exec", "-t", &id, "sh"]);
    let o = finish_within(cmd, 10).expect("exec -t from /dev/null ends at once");
    assert_eq!(o.code, 255, "runc's exec status: {o:?}");
    assert!(
        o.error_msg().starts_with("exec failed: ") && o.error_msg().contains("stdin is not one"),
        "{o:?}"
    );
    assert_eq!(
        rt.run(&["ps", "-f", "json", &id])
            .json()
            .as_array()
            .map(Vec::len),
        Some(1),
        "no process was started"
    );
    assert_eq!(rt.run(&["delete", "-f", &id]).code, 0);

    let tty_bundle = Bundle::with(&["sh"], |v| v["process"]["terminal"] = true.into());
    let id = common::unique_id("notty-run");
    rt.track(&id);
    let mut cmd = rt.command();
    cmd.args(["run", "-b", tty_bundle.p(), &id]);
    let o = finish_within(cmd, 10).expect("run from /dev/null ends at once");
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.error_msg().contains("stdin is not one"), "{o:?}");
    assert!(rt.run(&["list", "-q"]).stdout.is_empty(), "nothing made");
}

/// A window resized while `exec -t` runs: the process inside sees the new size (SIGWINCH
/// to vzrun becomes TIOCSWINSZ on the terminal it relays).
#[test]
fn window_size_changes_reach_the_process() {
    require_root!();
    let rt = Runtime::vzrun();
    let bundle = Bundle::busybox(&["sleep", "60"]);
    let id = common::unique_id("winch");
    rt.track(&id);
    let o = rt.run(&["run", "-d", "-b", bundle.p(), &id]);
    assert_eq!(o.code, 0, "{o:?}");
    let mut cmd = rt.command();
    cmd.args([
        "exec",
        "-t",
        &id,
        "sh",
        "-c",
        "while :; do echo \"size=$(stty size)\"; sleep 0.2; done",
    ]);
    let mut term = OnPty::spawn(&mut cmd, 24, 80);
    assert!(
        term.wait_for("size=24 80", 10),
        "the size at start: {:?}",
        term.screen()
    );
    term.resize(50, 132);
    let resized = term.wait_for("size=50 132", 10);
    // SIGTERM to vzrun is passed on and ends the loop inside, and with it vzrun. (Not
    // Ctrl-C: busybox sh survives a SIGINT that arrives while it waits for `sleep`.)
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(term.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let code = term.wait(10);
    assert!(resized, "the process never saw 50x132: {:?}", term.screen());
    assert_eq!(code, Some(143), "ended by SIGTERM: {:?}", term.screen());
    assert_eq!(rt.run(&["delete", "-f", &id]).code, 0);
}
