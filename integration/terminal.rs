//! vzrun as a terminal program: output into a pipe whose reader went away, `exec -t` and
//! `ve enter` without a terminal, and window size changes reaching the process inside.

mod common;

use std::process::{Command, Stdio};

use common::{Bundle, Out, Runtime};

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
