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
    require_root!();
    if !common::have("runc") {
        eprintln!("SKIP: runc is not installed");
        return;
    }
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
