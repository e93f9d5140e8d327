//! linux.seccomp as libseccomp builds it for runc: conditions, unknown names and numbers,
//! default errno, and when the filter takes effect. A small static helper (built here
//! with the host's C compiler) makes exactly the system call a scenario names.

use super::*;
use std::path::PathBuf;
use std::sync::OnceLock;

const HELPER_C: &str = r#"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/syscall.h>
/* vzt-sys NR [ARG...]: one raw system call per group of arguments separated by "--";
   prints "rc errno" for each. */
int main(int argc, char **argv) {
    int i = 1;
    while (i < argc) {
        long a[7] = {0};
        int n = 0;
        for (; i < argc && argv[i][0] != '-'; i++) a[n < 7 ? n++ : 6] = strtol(argv[i], 0, 0);
        i++;
        errno = 0;
        long rc = syscall(a[0], a[1], a[2], a[3], a[4], a[5], a[6]);
        printf("%ld %d\n", rc < 0 ? -1L : 0L, rc < 0 ? errno : 0);
    }
    return 0;
}
"#;

/// The helper binary, built once per test run; None when the host has no static C
/// toolchain.
fn helper() -> Option<&'static PathBuf> {
    static HELPER: OnceLock<Option<PathBuf>> = OnceLock::new();
    HELPER
        .get_or_init(|| {
            let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
            let src = dir.join(format!("vzt-sys-{}.c", std::process::id()));
            let built = dir.join(format!("vzt-sys-{}", std::process::id()));
            std::fs::write(&src, HELPER_C).ok()?;
            let ok = std::process::Command::new("cc")
                .args(["-static", "-O1", "-o"])
                .arg(&built)
                .arg(&src)
                .status()
                .is_ok_and(|s| s.success());
            let _ = std::fs::remove_file(&src);
            // One name for every run (a rename is atomic): runs do not pile up copies.
            let bin = dir.join("vzt-sys");
            (ok && std::fs::rename(&built, &bin).is_ok()).then_some(bin)
        })
        .as_ref()
}

/// A scenario whose process is the helper, bind-mounted read-only at /tmp/vzt-sys (on a
/// tmpfs, so no mount point is made in the shared rootfs).
fn seccomp_diff(name: &str, calls: &[&str], profile: Value) {
    require_runc!();
    let Some(bin) = helper() else {
        eprintln!("SKIP: no static C toolchain for the syscall helper");
        return;
    };
    let mut process = vec!["/tmp/vzt-sys"];
    process.extend_from_slice(calls);
    let bin = bin.clone();
    let edit = move |v: &mut Value| {
        let mounts = v["mounts"].as_array_mut().unwrap();
        mounts.push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}));
        mounts.push(json!({
            "destination": "/tmp/vzt-sys", "type": "bind", "source": bin, "options": ["bind", "ro"]
        }));
        v["linux"]["seccomp"] = profile;
    };
    differential_with(name, &process, edit, &[s(&["run", "-b", "{b}", "{id}"])]);
}

/// Everything the runtimes' init and a static binary need, as in an allow-list profile.
const BASE_ALLOW: &[&str] = &[
    "read",
    "write",
    "close",
    "fstat",
    "newfstatat",
    "mmap",
    "munmap",
    "mprotect",
    "brk",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "ioctl",
    "execve",
    "exit",
    "exit_group",
    "arch_prctl",
    "set_tid_address",
    "set_robust_list",
    "rseq",
    "prlimit64",
    "readlinkat",
    "getrandom",
    "futex",
    "getpid",
    "gettid",
    "tgkill",
    "openat",
    "fcntl",
    "getdents64",
    "nanosleep",
    "sched_yield",
    "sigaltstack",
    "madvise",
    "clone",
    "uname",
    "epoll_pwait",
    "epoll_ctl",
    "epoll_create1",
    "capget",
    "capset",
    "prctl",
    "dup3",
    "setgroups",
    "setuid",
    "setgid",
    "setresuid",
    "setresgid",
    "getppid",
    "wait4",
    "chdir",
    "fchdir",
    "lseek",
    "access",
    "pread64",
    "close_range",
    "mount",
    "umount2",
    "fstatfs",
    "statfs",
];

fn allow_list(extra: Value) -> Value {
    let mut syscalls = vec![json!({"names": BASE_ALLOW, "action": "SCMP_ACT_ALLOW"})];
    if let Value::Array(more) = extra {
        syscalls.extend(more);
    }
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": syscalls,
    })
}

// getpgid (121 on x86_64) of pids 11, 22 and 33: 33 matches no condition.
#[test]
fn seccomp_conditions_on_one_argument_are_ored() {
    seccomp_diff(
        "seccomp_conditions_on_one_argument_are_ored",
        &["121", "11", "--", "121", "22", "--", "121", "33"],
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getpgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13, "args": [
                {"index": 0, "value": 11, "op": "SCMP_CMP_EQ"},
                {"index": 0, "value": 22, "op": "SCMP_CMP_EQ"},
            ]}],
        }),
    );
}

// Conditions on different arguments of one rule must all hold.
#[test]
fn seccomp_conditions_on_two_arguments_are_anded() {
    seccomp_diff(
        "seccomp_conditions_on_two_arguments_are_anded",
        // setpriority(which, who, prio): 141 on x86_64.
        &[
            "141", "0", "0", "5", "--", "141", "0", "0", "6", "--", "141", "1", "0", "5",
        ],
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["setpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13, "args": [
                {"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                {"index": 2, "value": 5, "op": "SCMP_CMP_EQ"},
            ]}],
        }),
    );
}

#[test]
fn seccomp_masked_eq_and_comparisons() {
    seccomp_diff(
        "seccomp_masked_eq_and_comparisons",
        &[
            "121", "0x13", "--", "121", "0x24", "--", "95", "2", "--", "95", "9",
        ],
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["getpgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13, "args": [
                    {"index": 0, "value": 15, "valueTwo": 3, "op": "SCMP_CMP_MASKED_EQ"}]},
                // umask (95): ERRNO only for masks above 4.
                {"names": ["umask"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22, "args": [
                    {"index": 0, "value": 4, "op": "SCMP_CMP_GT"}]},
            ],
        }),
    );
}

// A number no syscall has, one the kernel has but the profile names none as high, and one
// below the highest named: runc answers ENOSYS (38) above the highest named syscall.
#[test]
fn seccomp_unknown_syscall_number_gets_enosys() {
    seccomp_diff(
        "seccomp_unknown_syscall_number_gets_enosys",
        &["1000", "--", "450", "--", "100"],
        allow_list(json!([])),
    );
}

#[test]
fn seccomp_default_errno_ret() {
    seccomp_diff("seccomp_default_errno_ret", &["100", "--", "1000"], {
        let mut p = allow_list(json!([]));
        p["defaultErrnoRet"] = json!(95);
        p
    });
}

#[test]
fn seccomp_unknown_names_are_ignored() {
    seccomp_diff(
        "seccomp_unknown_names_are_ignored",
        &["121", "0"],
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["vzt_no_such_syscall", "getpgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}],
        }),
    );
}

#[test]
fn seccomp_rule_errno_default_is_eperm() {
    seccomp_diff(
        "seccomp_rule_errno_default_is_eperm",
        &["121", "0", "--", "39"],
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getpgid"], "action": "SCMP_ACT_ERRNO"}],
        }),
    );
}

#[test]
fn seccomp_kill_process_action() {
    seccomp_diff(
        "seccomp_kill_process_action",
        &["39", "--", "121", "0", "--", "39"],
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getpgid"], "action": "SCMP_ACT_KILL_PROCESS"}],
        }),
    );
}

#[test]
fn seccomp_later_rule_for_same_syscall() {
    seccomp_diff(
        "seccomp_later_rule_for_same_syscall",
        &["121", "0", "--", "121", "5"],
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["getpgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13, "args": [
                    {"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
                {"names": ["getpgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22, "args": [
                    {"index": 0, "value": 5, "op": "SCMP_CMP_EQ"}]},
            ],
        }),
    );
}

diff!(
    seccomp_bad_action_refused,
    &["true"],
    |v| v["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_BOGUS"}),
    [code(&["run", "-b", "{b}", "{id}"]), s(&["list", "-q"])]
);
diff!(
    seccomp_bad_operator_refused,
    &["true"],
    |v| v["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["getpgid"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_BOGUS"}]}]}),
    [code(&["run", "-b", "{b}", "{id}"]), s(&["list", "-q"])]
);
diff!(
    seccomp_errno_default_action_applies_to_exec,
    &["sh", "-c", "mkdir /tmp/x 2>&1 | sed 's/.*: //'; ls /tmp"],
    |v| {
        v["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}));
        v["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 30}]});
    },
    [s(&["run", "-b", "{b}", "{id}"])]
);
diff!(
    seccomp_applies_to_exec_processes,
    SLEEP,
    |v| {
        v["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}));
        v["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]});
    },
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        s(&[
            "exec",
            "{id}",
            "sh",
            "-c",
            "mkdir /tmp/x 2>&1 | sed 's/.*: //'"
        ]),
        s(&["exec", "{id}", "grep", "^Seccomp:", "/proc/self/status"]),
        s(&["delete", "-f", "{id}"]),
    ]
);
// runc installs the filter before the startContainer hooks run in the container: a hook's
// mkdir is refused as the process's is.
diff!(
    seccomp_in_force_for_start_container_hook,
    &["cat", "/tmp/hook-said"],
    |v| {
        v["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}));
        v["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]});
        v["hooks"] = json!({"startContainer": [{"path": "/bin/sh", "args": [
            "sh", "-c", "mkdir /tmp/by-hook 2>/dev/null; echo $? > /tmp/hook-said"]}]});
    },
    [s(&["run", "-b", "{b}", "{id}"])]
);

// --- SCMP_ACT_NOTIFY: the seccomp agent at listenerPath ---------------------------------

/// How the test's agent answers every notified system call.
#[derive(Clone, Copy)]
enum Answer {
    Errno(i32),
    /// Success with return value 0, without the kernel doing anything.
    FakeSuccess,
}

/// A seccomp agent: a unix socket that takes runc's message (the container process state
/// with the listener fd as SCM_RIGHTS) and answers the notifications on each fd it gets.
struct Agent {
    dir: tempfile::TempDir,
    /// Each message received: the state document and how many fds came with it.
    got: std::sync::Arc<std::sync::Mutex<Vec<(Value, usize)>>>,
    /// How many notifications were received, over all fds.
    answered: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Agent {
    fn start(answer: Answer) -> Agent {
        use std::sync::atomic::Ordering;
        let dir = tempfile::Builder::new()
            .prefix("vzt-agent-")
            .tempdir()
            .unwrap();
        let listener = std::os::unix::net::UnixListener::bind(dir.path().join("agent.sock"))
            .expect("bind the agent's socket");
        let agent = Agent {
            dir,
            got: Default::default(),
            answered: Default::default(),
            stop: Default::default(),
        };
        let (got, answered, stop) = (
            agent.got.clone(),
            agent.answered.clone(),
            agent.stop.clone(),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (doc, fds) = receive_state(&conn);
                // Recorded before any notification is answered: once the process has
                // seen an answer, the message is here.
                got.lock().unwrap().push((doc, fds.len()));
                for fd in fds {
                    let answered = answered.clone();
                    std::thread::spawn(move || serve_notifications(fd, answer, &answered));
                }
            }
        });
        agent
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("agent.sock")
    }

    fn messages(&self) -> Vec<(Value, usize)> {
        self.got.lock().unwrap().clone()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // Wakes the accepting thread, which then sees the flag and ends.
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = std::os::unix::net::UnixStream::connect(self.path());
    }
}

/// One message from a runtime: the JSON and the fds passed with it.
fn receive_state(conn: &std::os::unix::net::UnixStream) -> (Value, Vec<std::os::fd::OwnedFd>) {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    let mut buf = vec![0u8; 1 << 16];
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let Ok(msg) = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    ) else {
        return (Value::Null, Vec::new());
    };
    let bytes = msg.bytes;
    let mut fds = Vec::new();
    for c in msg.cmsgs().into_iter().flatten() {
        if let ControlMessageOwned::ScmRights(raw) = c {
            // SAFETY: SCM_RIGHTS fds are new in this process and owned by nobody else.
            fds.extend(raw.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }));
        }
    }
    let doc = serde_json::from_slice(&buf[..bytes]).unwrap_or(Value::Null);
    (doc, fds)
}

/// Answers the notifications of one listener until its processes are gone (the kernel
/// then fails the receive).
fn serve_notifications(
    fd: std::os::fd::OwnedFd,
    answer: Answer,
    answered: &std::sync::atomic::AtomicUsize,
) {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: the kernel wants a zeroed seccomp_notif, a plain C struct.
        let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        // SAFETY: the ioctl fills `req`, which is of the size its number encodes.
        if unsafe { libc::ioctl(fd.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_RECV, &mut req) } != 0 {
            return;
        }
        let error = match answer {
            Answer::Errno(e) => -e,
            Answer::FakeSuccess => 0,
        };
        let mut resp = libc::seccomp_notif_resp {
            id: req.id,
            val: 0,
            error,
            flags: 0,
        };
        // Counted before the answer lets the process go on.
        answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        // SAFETY: as above, for the response.
        unsafe { libc::ioctl(fd.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_SEND, &mut resp) };
    }
}

/// The spec version a runtime reports, which its state documents carry.
fn spec_version(rt: &Runtime) -> String {
    rt.run(&["--version"])
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("spec: "))
        .unwrap_or_default()
        .to_string()
}

/// An agent's messages as a caller compares them: the bundle as "{b}", pids as "init"
/// (the container's init) or "process" (another), each document's spec version checked
/// against the runtime's and taken out, and the number of fds that came with it.
fn agent_view(rt: &Runtime, agent: &Agent, bundle: &Bundle, init: u64) -> Vec<Value> {
    let version = spec_version(rt);
    let pid = |v: &Value| match v.as_u64() {
        Some(p) if p == init => Value::from("init"),
        Some(p) if p > 0 => Value::from("process"),
        _ => v.clone(),
    };
    agent
        .messages()
        .into_iter()
        .map(|(mut doc, fds)| {
            let mut state = doc["state"].take();
            for d in [&mut doc, &mut state] {
                assert_eq!(d["ociVersion"], version.as_str(), "{}: {d}", rt.name);
                if let Some(m) = d.as_object_mut() {
                    m.remove("ociVersion");
                }
                d["pid"] = pid(&d["pid"]);
            }
            doc["state"] = state;
            if doc["state"]["bundle"] == bundle.p() {
                doc["state"]["bundle"] = Value::from("{b}");
            }
            json!({"message": doc, "fds": fds})
        })
        .collect()
}

/// mkdir and mkdirat go to the agent; the container's annotations and the listener's
/// metadata are what the agent must be told.
fn notify_mkdir(v: &mut Value, agent: &Agent) {
    v["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}));
    v["annotations"] = json!({"org.example.agent": "vzt"});
    v["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": agent.path(),
        "listenerMetadata": "vzt-metadata",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}],
    });
}

/// `run` in the foreground with the agent answering `answer`: the run's output, what the
/// agent was sent, and how many notifications it received.
fn notify_run(rt: &Runtime, answer: Answer) -> (Out, Vec<Value>, usize) {
    let agent = Agent::start(answer);
    let script = "mkdir /tmp/x 2>&1 | sed 's/.*: //'; ls /tmp; echo done";
    let bundle = Bundle::with(&["sh", "-c", script], |v| notify_mkdir(v, &agent));
    let id = common::unique_id("notifyrun");
    rt.track(&id);
    let out = rt.run_deadlined(&["run", "-b", bundle.p(), &id], HANG);
    // A foreground run's init is gone: its pid is the one the message names twice.
    let init = agent
        .messages()
        .first()
        .and_then(|(d, _)| d["state"]["pid"].as_u64())
        .unwrap_or_default();
    let answered = agent.answered.load(std::sync::atomic::Ordering::SeqCst);
    let mut view = agent_view(rt, &agent, &bundle, init);
    for m in &mut view {
        assert_eq!(m["message"]["state"]["id"], id.as_str(), "{}", rt.name);
        m["message"]["state"]["id"] = Value::from("{id}");
    }
    (out, view, answered)
}

#[test]
fn seccomp_notify_agent_answers_the_process() {
    require_runc!();
    let (out, view, answered) = notify_run(&Runtime::runc(), Answer::Errno(libc::EROFS));
    assert_eq!(out.code, 0, "runc: {out:?}");
    assert_eq!(out.stdout, "Read-only file system\ndone\n", "runc");
    assert_eq!(
        view,
        vec![json!({"fds": 1, "message": {
            "fds": ["seccompFd"], "pid": "init", "metadata": "vzt-metadata",
            "state": {"id": "{id}", "status": "creating", "pid": "init",
                      "bundle": "{b}", "annotations": {"org.example.agent": "vzt"}}}})],
        "runc"
    );
    assert!(answered >= 1, "runc: no notification reached the agent");
    let (vout, vview, vanswered) = notify_run(&Runtime::vzrun(), Answer::Errno(libc::EROFS));
    assert_eq!(
        (vout.code, &vout.stdout),
        (out.code, &out.stdout),
        "vzrun: {vout:?}"
    );
    assert_eq!(vview, view, "vzrun's agent was told otherwise");
    assert_eq!(vanswered, answered, "notifications received");
}

/// `run -d` then an exec whose mkdir the agent fakes: what the exec printed, and what the
/// agent was sent (the init at create, the exec'd process with the init in its state).
fn notify_exec(rt: &Runtime) -> (Out, Vec<Value>) {
    let agent = Agent::start(Answer::FakeSuccess);
    let bundle = Bundle::with(SLEEP, |v| {
        notify_mkdir(v, &agent);
        // Installed before the capabilities are dropped (a lent CAP_SYS_ADMIN in vzrun).
        v["process"]["noNewPrivileges"] = json!(false);
    });
    let id = common::unique_id("notifyexec");
    rt.track(&id);
    let run = rt.run_deadlined(&["run", "-d", "-b", bundle.p(), &id], HANG);
    assert_eq!(run.code, 0, "{}: run -d: {run:?}", rt.name);
    let init = rt.state(&id)["pid"].as_u64().unwrap_or_default();
    let exec = rt.run_deadlined(
        &[
            "exec",
            &id,
            "sh",
            "-c",
            "mkdir /tmp/y && echo made; ls /tmp; echo done",
        ],
        HANG,
    );
    let del = rt.run_deadlined(&["delete", "-f", &id], HANG);
    assert_eq!(del.code, 0, "{}: delete: {del:?}", rt.name);
    let mut view = agent_view(rt, &agent, &bundle, init);
    for m in &mut view {
        assert_eq!(m["message"]["state"]["id"], id.as_str(), "{}", rt.name);
        m["message"]["state"]["id"] = Value::from("{id}");
    }
    (exec, view)
}

#[test]
fn seccomp_notify_agent_gets_exec_processes_too() {
    require_runc!();
    let (exec, view) = notify_exec(&Runtime::runc());
    assert_eq!(
        (exec.code, exec.stdout.as_str()),
        (0, "made\ndone\n"),
        "runc: {exec:?}"
    );
    let state = |status: &str, pid: &str| {
        json!({"fds": 1, "message": {
            "fds": ["seccompFd"], "pid": pid, "metadata": "vzt-metadata",
            "state": {"id": "{id}", "status": status, "pid": "init", "bundle": "{b}",
                      "annotations": {"org.example.agent": "vzt"}}}})
    };
    assert_eq!(
        view,
        vec![state("creating", "init"), state("running", "process")],
        "runc"
    );
    let (vexec, vview) = notify_exec(&Runtime::vzrun());
    assert_eq!(
        (vexec.code, &vexec.stdout),
        (exec.code, &exec.stdout),
        "vzrun: {vexec:?}"
    );
    assert_eq!(vview, view, "vzrun's agent was told otherwise");
}

// runc's refusals, in its words; nothing is left behind.
diff!(
    seccomp_notify_without_listener_path_refused,
    &["true"],
    |v| v["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]}),
    [s(&["run", "-b", "{b}", "{id}"]), s(&["list", "-q"])]
);
diff!(
    seccomp_notify_on_write_refused,
    &["true"],
    |v| v["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": "/run/vzt-no-agent.sock", "syscalls": [
        {"names": ["mkdir", "write"], "action": "SCMP_ACT_NOTIFY"}]}),
    [
        worded(
            &["run", "-b", "{b}", "{id}"],
            "SCMP_ACT_NOTIFY cannot be used for the write syscall",
            "SCMP_ACT_NOTIFY cannot be used for the write syscall"
        ),
        s(&["list", "-q"])
    ]
);
diff!(
    seccomp_notify_default_action_refused,
    &["true"],
    |v| v["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_NOTIFY",
        "listenerPath": "/run/vzt-no-agent.sock"}),
    [
        worded(
            &["run", "-b", "{b}", "{id}"],
            "SCMP_ACT_NOTIFY cannot be used as default action",
            "SCMP_ACT_NOTIFY cannot be used as default action"
        ),
        s(&["list", "-q"])
    ]
);
// No agent listens there: the create fails with runc's words and takes the container down.
diff!(
    seccomp_notify_unreachable_agent_fails_create,
    &["true"],
    |v| v["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": "/run/vzt-no-agent.sock", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]}),
    [s(&["run", "-b", "{b}", "{id}"]), s(&["list", "-q"])]
);
// runc 1.1.5 accepts a listenerPath without notify rules, and never connects to it.
diff!(
    seccomp_listener_path_without_notify_rules_is_unused,
    &["sh", "-c", "mkdir /tmp/x 2>&1 | sed 's/.*: //'"],
    |v| {
        v["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}));
        v["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": "/run/vzt-no-agent.sock", "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 30}]});
    },
    [s(&["run", "-b", "{b}", "{id}"]), s(&["list", "-q"])]
);

/// An allow-list profile (default ERRNO) whose mkdir goes to the agent, run on the
/// syscall helper: the agent answers EROFS, everything unlisted is refused.
fn notify_allow_list(rt: &Runtime, bin: &std::path::Path) -> (Out, Vec<Value>) {
    let agent = Agent::start(Answer::Errno(libc::EROFS));
    // mkdir(NULL): the agent answers before the kernel reads the path; getpgid is unlisted.
    let process = ["/tmp/vzt-sys", "83", "0", "--", "121", "0"];
    let bundle = Bundle::with(&process, |v| {
        let mounts = v["mounts"].as_array_mut().unwrap();
        mounts.push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}));
        mounts.push(json!({
            "destination": "/tmp/vzt-sys", "type": "bind", "source": bin, "options": ["bind", "ro"]
        }));
        let mut profile = allow_list(json!([
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}
        ]));
        profile["listenerPath"] = json!(agent.path());
        v["linux"]["seccomp"] = profile;
    });
    let id = common::unique_id("notifylist");
    rt.track(&id);
    let out = rt.run_deadlined(&["run", "-b", bundle.p(), &id], HANG);
    let init = agent
        .messages()
        .first()
        .and_then(|(d, _)| d["state"]["pid"].as_u64())
        .unwrap_or_default();
    let mut view = agent_view(rt, &agent, &bundle, init);
    for m in &mut view {
        m["message"]["state"]["id"] = Value::from("{id}");
    }
    (out, view)
}

// The filter's refusals do not stop the runtime handing the fd over.
#[test]
fn seccomp_notify_in_an_allow_list_profile() {
    require_runc!();
    let Some(bin) = helper() else {
        eprintln!("SKIP: no static C toolchain for the syscall helper");
        return;
    };
    let (out, view) = notify_allow_list(&Runtime::runc(), bin);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "-1 30\n-1 1\n"),
        "runc: {out:?}"
    );
    assert_eq!(view.len(), 1, "runc: {view:?}");
    let (vout, vview) = notify_allow_list(&Runtime::vzrun(), bin);
    assert_eq!(
        (vout.code, &vout.stdout),
        (out.code, &out.stdout),
        "vzrun: {vout:?}"
    );
    assert_eq!(vview, view, "vzrun's agent was told otherwise");
}
