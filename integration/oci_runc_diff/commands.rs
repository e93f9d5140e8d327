//! Every command's flag forms and argument errors, as runc's `tests/integration/<cmd>.bats`
//! split them: list, state, kill, pause/resume, ps, exec, run, create, delete, update,
//! events, spec.

use super::*;

// --- list ----------------------------------------------------------------------------
diff!(
    list_forms_with_a_running_container,
    SLEEP,
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        s(&["list", "-q"]),
        s(&["list", "--quiet"]),
        s(&["list", "-f", "json"]),
        s(&["list", "--format=json"]),
        ps(&["list"]),
        ps(&["list", "--format", "table"]),
        s(&["delete", "-f", "{id}"]),
    ]
);
diff!(
    list_bad_format,
    SLEEP,
    none,
    [code(&["list", "--format", "yaml"]), s(&["list", "-q"])]
);
diff!(
    list_shows_each_status,
    SLEEP,
    none,
    [
        s(&["create", "-b", "{b}", "{id}"]),
        s(&["list", "-f", "json"]),
        s(&["start", "{id}"]),
        s(&["pause", "{id}"]),
        s(&["list", "-f", "json"]),
        s(&["resume", "{id}"]),
        s(&["kill", "{id}", "KILL"]),
        WAIT_STOPPED_STEP,
        s(&["list", "-f", "json"]),
        s(&["delete", "{id}"]),
    ]
);

// --- state ---------------------------------------------------------------------------
diff!(
    state_of_paused_and_stopped,
    SLEEP,
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        s(&["pause", "{id}"]),
        s(&["state", "{id}"]),
        s(&["resume", "{id}"]),
        s(&["kill", "{id}", "9"]),
        WAIT_STOPPED_STEP,
        s(&["state", "{id}"]),
        s(&["delete", "{id}"]),
    ]
);
diff!(
    state_argument_count,
    SLEEP,
    none,
    [
        code(&["state"]),
        code(&["state", "{id}", "other"]),
        code(&["delete"]),
        code(&["start"]),
        code(&["pause"]),
        code(&["resume"]),
        code(&["kill"]),
        code(&["ps"]),
    ]
);

// --- kill ----------------------------------------------------------------------------
diff!(
    kill_lowercase_and_prefixed_names,
    &[
        "sh",
        "-c",
        "trap 'echo got' USR1 USR2; while :; do sleep 300 & wait; done"
    ],
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        s(WAIT_USR1_TRAP),
        s(&["kill", "{id}", "usr1"]),
        s(&["kill", "{id}", "sigusr2"]),
        s(&["kill", "{id}", "SIGusr1"]),
        s(&["kill", "{id}", "12"]),
        s(&["kill", "{id}", "KILL"]),
        WAIT_STOPPED_STEP,
        s(&["delete", "{id}"]),
    ]
);
// The init (pid 1 of its namespace) has no handler for TERM: the kernel drops it, under
// either runtime, and KILL ends it.
diff!(
    kill_term_by_number_and_name,
    SLEEP,
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        s(&["kill", "{id}", "SIGTERM"]),
        s(&["kill", "{id}", "15"]),
        s(&["state", "{id}"]),
        s(&["kill", "{id}", "SIGKILL"]),
        WAIT_STOPPED_STEP,
        s(&["state", "{id}"]),
        s(&["delete", "{id}"]),
    ]
);
diff!(
    kill_all_short_flag_on_created,
    SLEEP,
    none,
    [
        s(&["create", "-b", "{b}", "{id}"]),
        s(&["kill", "-a", "{id}", "KILL"]),
        WAIT_STOPPED_STEP,
        s(&["state", "{id}"]),
        s(&["delete", "{id}"]),
    ]
);
diff!(
    kill_paused_container,
    SLEEP,
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        s(&["pause", "{id}"]),
        s(&["kill", "{id}", "KILL"]),
        s(&["resume", "{id}"]),
        WAIT_STOPPED_STEP,
        s(&["delete", "{id}"]),
    ]
);
diff!(
    kill_signal_zero_probes,
    SLEEP,
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        s(&["kill", "{id}", "0"]),
        s(&["state", "{id}"]),
        s(&["delete", "-f", "{id}"]),
    ]
);

// --- pause / resume ------------------------------------------------------------------
// runc 1.1.5 also pauses a created container; vzrun refuses (see the README).
diff!(
    pause_then_resume_after_start,
    SLEEP,
    none,
    [
        s(&["create", "-b", "{b}", "{id}"]),
        s(&["start", "{id}"]),
        s(&["pause", "{id}"]),
        s(&["state", "{id}"]),
        s(&["resume", "{id}"]),
        s(&["state", "{id}"]),
        s(&["delete", "-f", "{id}"]),
    ]
);
diff!(
    resume_running_container,
    SLEEP,
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        s(&["resume", "{id}"]),
        s(&["state", "{id}"]),
        s(&["delete", "-f", "{id}"]),
    ]
);
diff!(
    exec_into_paused_is_refused,
    SLEEP,
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        s(&["pause", "{id}"]),
        s(&["exec", "{id}", "true"]),
        s(&["resume", "{id}"]),
        s(&["exec", "{id}", "echo", "after"]),
        s(&["delete", "-f", "{id}"]),
    ]
);
diff!(
    ps_of_paused,
    &["sh", "-c", "sleep 300 & wait"],
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        s(WAIT_CHILD),
        s(&["pause", "{id}"]),
        ps(&["ps", "{id}"]),
        s(&["ps", "-f", "json", "{id}"]),
        s(&["delete", "-f", "{id}"]),
    ]
);

// --- ps ------------------------------------------------------------------------------
diff!(
    ps_bad_format_and_created,
    SLEEP,
    none,
    [
        s(&["create", "-b", "{b}", "{id}"]),
        ps(&["ps", "{id}"]),
        s(&["ps", "--format", "json", "{id}"]),
        code(&["ps", "--format", "yaml", "{id}"]),
        s(&["delete", "-f", "{id}"]),
    ]
);
diff!(
    ps_passes_ps_arguments,
    SLEEP,
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        ps(&["ps", "{id}", "-ef"]),
        ps(&["ps", "{id}", "-o", "pid,args"]),
        s(&["delete", "-f", "{id}"]),
    ]
);

// --- exec ----------------------------------------------------------------------------
diff!(
    exec_short_flags,
    SLEEP,
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        s(&[
            "exec",
            "-e",
            "A=1",
            "-e",
            "B=2",
            "{id}",
            "sh",
            "-c",
            "echo $A$B"
        ]),
        s(&["exec", "-u", "1:2", "{id}", "id"]),
        s(&["exec", "-u", "1000", "{id}", "id"]),
        s(&["exec", "--user=2:3", "{id}", "id"]),
        s(&["delete", "-f", "{id}"]),
    ]
);
diff!(
    exec_env_overrides_the_containers,
    SLEEP,
    |v| v["process"]["env"]
        .as_array_mut()
        .unwrap()
        .push(json!("GREETING=config")),
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        s(&[
            "exec",
            "-e",
            "GREETING=flag",
            "-e",
            "PATH=/bin",
            "{id}",
            "sh",
            "-c",
            "echo $GREETING $PATH"
        ]),
        s(&[
            "exec",
            "{id}",
            "sh",
            "-c",
            "env | sort | grep -v ^PWD= | grep -v ^SHLVL="
        ]),
        s(&["delete", "-f", "{id}"]),
    ]
);
diff!(
    exec_cwd_missing_and_relative,
    SLEEP,
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        code(&["exec", "--cwd", "/no/such/dir", "{id}", "pwd"]),
        s(&["exec", "--cwd", "/tmp", "{id}", "pwd"]),
        s(&["delete", "-f", "{id}"]),
    ]
);
diff!(
    exec_no_new_privs_flag,
    SLEEP,
    |v| v["process"]["noNewPrivileges"] = json!(false),
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        s(&["exec", "{id}", "grep", "NoNewPrivs", "/proc/self/status"]),
        s(&[
            "exec",
            "--no-new-privs",
            "{id}",
            "grep",
            "NoNewPrivs",
            "/proc/self/status"
        ]),
        s(&["delete", "-f", "{id}"]),
    ]
);
diff!(
    exec_cap_flag_adds_a_capability,
    SLEEP,
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        s(&["exec", "{id}", "grep", "^Cap", "/proc/self/status"]),
        s(&[
            "exec",
            "--cap",
            "CAP_SYS_ADMIN",
            "--cap",
            "CAP_NET_ADMIN",
            "{id}",
            "grep",
            "^Cap",
            "/proc/self/status"
        ]),
        s(&["delete", "-f", "{id}"]),
    ]
);
diff!(
    exec_apparmor_and_label_on_a_host_without_them,
    SLEEP,
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        code(&["exec", "--apparmor", "vzt-profile", "{id}", "true"]),
        code(&[
            "exec",
            "--process-label",
            "system_u:system_r:vzt_t:s0",
            "{id}",
            "true"
        ]),
        s(&["delete", "-f", "{id}"]),
    ]
);
diff!(
    exec_tty_without_a_terminal,
    SLEEP,
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        code(&["exec", "-t", "{id}", "true"]),
        s(&["exec", "{id}", "echo", "still running"]),
        s(&["delete", "-f", "{id}"]),
    ]
);
diff!(
    exec_without_a_command,
    SLEEP,
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        code(&["exec", "{id}"]),
        s(&["delete", "-f", "{id}"]),
    ]
);
diff!(
    exec_process_file_errors,
    SLEEP,
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        code(&["exec", "-p", "/nonexistent-vzt-process.json", "{id}"]),
        // The parser's own words differ (Go's and serde's): the exit code must not.
        Step {
            input: Some("{not json"),
            ..code(&["exec", "-p", "/dev/stdin", "{id}"])
        },
        stdin(
            &["exec", "-p", "/dev/stdin", "{id}"],
            r#"{"args":["sh","-c","echo $X; pwd"],"cwd":"/etc","env":["X=from-file","PATH=/bin"]}"#
        ),
        s(&["delete", "-f", "{id}"]),
    ]
);
diff!(
    exec_detached_then_exit_code_zero,
    SLEEP,
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        s(&["exec", "--detach", "{id}", "sh", "-c", "exit 7"]),
        s(&["exec", "-d", "{id}", "/no/such/binary"]),
        s(&["delete", "-f", "{id}"]),
    ]
);

// --- run / create --------------------------------------------------------------------
diff!(
    run_detach_long_flag_and_no_pivot,
    SLEEP,
    none,
    [
        s(&["run", "--detach", "--no-pivot", "-b", "{b}", "{id}"]),
        s(&["state", "{id}"]),
        s(&["exec", "{id}", "sh", "-c", "ls / | sort | tr '\\n' ' '"]),
        s(&["delete", "-f", "{id}"]),
    ]
);
diff!(
    run_no_new_keyring,
    &["sh", "-c", "echo ran"],
    none,
    [
        s(&["run", "--no-new-keyring", "-b", "{b}", "{id}"]),
        s(&["list", "-q"]),
    ]
);
diff!(
    run_detach_and_keep,
    SLEEP,
    none,
    [
        code(&["run", "-d", "--keep", "-b", "{b}", "{id}"]),
        s(&["list", "-q"]),
        s(&["delete", "-f", "{id}"]),
    ]
);
diff!(
    run_no_subreaper_and_pid_file,
    &["sh", "-c", "echo ok"],
    none,
    [
        s(&["run", "--no-subreaper", "-b", "{b}", "{id}"]),
        s(&["list", "-q"]),
    ]
);
diff!(
    run_bundle_from_relative_config_path,
    &["sh", "-c", "exit 0"],
    none,
    [
        code(&["run", "-b", "/nonexistent-vzt-bundle", "{id}"]),
        s(&["run", "--bundle", "{b}", "{id}"]),
        s(&["list", "-q"]),
    ]
);
diff!(
    create_preserve_fds_zero,
    SLEEP,
    none,
    [
        s(&["create", "--preserve-fds", "0", "-b", "{b}", "{id}"]),
        s(&["start", "{id}"]),
        s(&[
            "exec",
            "{id}",
            "sh",
            "-c",
            "ls /proc/1/fd | sort | tr '\\n' ' '"
        ]),
        s(&["delete", "-f", "{id}"]),
    ]
);
diff!(
    create_preserve_fds_bad_value,
    SLEEP,
    none,
    [
        code(&["create", "--preserve-fds", "many", "-b", "{b}", "{id}"]),
        s(&["list", "-q"]),
    ]
);
diff!(
    exec_preserve_fds_not_open_or_negative,
    SLEEP,
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        // runc: "unable to stat preserved-fd N (of 40)" (vzrun's N differs: runc has
        // descriptors of its own open there).
        code(&["exec", "--preserve-fds", "40", "{id}", "true"]),
        // A negative count is none: stderr stays.
        s(&[
            "exec",
            "--preserve-fds=-1",
            "{id}",
            "sh",
            "-c",
            "echo to-stderr >&2"
        ]),
        s(&["delete", "-f", "{id}"]),
    ]
);
diff!(
    create_console_socket_missing,
    SLEEP,
    |v| v["process"]["terminal"] = json!(true),
    [
        code(&[
            "create",
            "--console-socket",
            "/nonexistent-vzt.sock",
            "-b",
            "{b}",
            "{id}"
        ]),
        s(&["list", "-q"]),
    ]
);
diff!(
    create_start_then_exit_code_via_state,
    &["sh", "-c", "exit 9"],
    none,
    [
        s(&["create", "-b", "{b}", "{id}"]),
        s(&["start", "{id}"]),
        WAIT_STOPPED_STEP,
        s(&["state", "{id}"]),
        s(&["delete", "{id}"]),
        s(&["list", "-q"]),
    ]
);

// --- delete --------------------------------------------------------------------------
diff!(
    delete_stopped_twice,
    &["true"],
    none,
    [
        s(&["run", "--keep", "-b", "{b}", "{id}"]),
        s(&["delete", "{id}"]),
        s(&["delete", "{id}"]),
        s(&["delete", "--force", "{id}"]),
    ]
);
diff!(
    delete_force_paused_long_flag,
    SLEEP,
    none,
    [
        s(&["create", "-b", "{b}", "{id}"]),
        s(&["start", "{id}"]),
        s(&["pause", "{id}"]),
        s(&["delete", "--force", "{id}"]),
        code(&["state", "{id}"]),
    ]
);

// --- update --------------------------------------------------------------------------
/// Reads the container's own cgroup files, as mounted inside it.
const CG_CPU: &[&str] = &[
    "exec",
    "{id}",
    "sh",
    "-c",
    "cd /sys/fs/cgroup/cpu && cat cpu.shares cpu.cfs_period_us cpu.cfs_quota_us",
];
diff!(
    update_cpu_flags,
    SLEEP,
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        s(&[
            "update",
            "--cpu-share",
            "512",
            "--cpu-period",
            "50000",
            "--cpu-quota",
            "25000",
            "{id}"
        ]),
        s(CG_CPU),
        s(&["update", "--cpu-quota", "-1", "{id}"]),
        s(CG_CPU),
        s(&["delete", "-f", "{id}"]),
    ]
);
diff!(
    update_cpuset_flags,
    SLEEP,
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        s(&["update", "--cpuset-cpus", "0", "--cpuset-mems", "0", "{id}"]),
        s(&[
            "exec",
            "{id}",
            "sh",
            "-c",
            "cat /sys/fs/cgroup/cpuset/cpuset.cpus /sys/fs/cgroup/cpuset/cpuset.mems"
        ]),
        code(&["update", "--cpuset-cpus", "9999", "{id}"]),
        s(&["delete", "-f", "{id}"]),
    ]
);
diff!(
    update_memory_flags,
    SLEEP,
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        s(&[
            "update",
            "--memory",
            "256M",
            "--memory-reservation",
            "128M",
            "--memory-swap",
            "512M",
            "{id}"
        ]),
        s(&[
            "exec",
            "{id}",
            "sh",
            "-c",
            "cd /sys/fs/cgroup/memory && cat memory.limit_in_bytes memory.soft_limit_in_bytes"
        ]),
        // Above the swap limit set just before: both refuse (the kernel's EINVAL).
        code(&["update", "--memory", "1g", "{id}"]),
        s(&["update", "--memory", "300M", "{id}"]),
        s(&[
            "exec",
            "{id}",
            "cat",
            "/sys/fs/cgroup/memory/memory.limit_in_bytes"
        ]),
        s(&["delete", "-f", "{id}"]),
    ]
);
diff!(
    update_pids_limit,
    SLEEP,
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        s(&["update", "--pids-limit", "20", "{id}"]),
        s(&["exec", "{id}", "cat", "/sys/fs/cgroup/pids/pids.max"]),
        s(&["update", "--pids-limit", "0", "{id}"]),
        s(&["exec", "{id}", "cat", "/sys/fs/cgroup/pids/pids.max"]),
        s(&["delete", "-f", "{id}"]),
    ]
);
diff!(
    update_bad_values,
    SLEEP,
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        code(&["update", "--memory", "lots", "{id}"]),
        code(&["update", "--cpu-shares", "many", "{id}"]),
        code(&["update", "--pids-limit", "x", "{id}"]),
        Step {
            input: Some("{not json"),
            ..code(&["update", "-r", "-", "{id}"])
        },
        code(&["update", "-r", "/nonexistent-vzt-resources.json", "{id}"]),
        s(&["delete", "-f", "{id}"]),
    ]
);
diff!(
    update_stopped_and_missing,
    &["true"],
    none,
    [
        s(&["update", "--memory", "64M", "{id}"]),
        s(&["run", "--keep", "-b", "{b}", "{id}"]),
        s(&["update", "--memory", "64M", "{id}"]),
        s(&["delete", "{id}"]),
    ]
);
diff!(
    update_resources_file_from_stdin_cpu,
    SLEEP,
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        stdin(
            &["update", "--resources", "-", "{id}"],
            r#"{"cpu":{"shares":300,"quota":30000,"period":100000}}"#
        ),
        s(CG_CPU),
        s(&["delete", "-f", "{id}"]),
    ]
);
diff!(
    update_paused_container,
    SLEEP,
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        s(&["pause", "{id}"]),
        s(&["update", "--pids-limit", "30", "{id}"]),
        s(&["resume", "{id}"]),
        s(&["exec", "{id}", "cat", "/sys/fs/cgroup/pids/pids.max"]),
        s(&["delete", "-f", "{id}"]),
    ]
);

// --- events --------------------------------------------------------------------------
diff!(
    events_stats_of_paused_and_created,
    SLEEP,
    none,
    [
        s(&["create", "-b", "{b}", "{id}"]),
        s(&["events", "--stats", "{id}"]),
        s(&["start", "{id}"]),
        s(&["pause", "{id}"]),
        s(&["events", "--stats", "{id}"]),
        s(&["delete", "-f", "{id}"]),
    ]
);
diff!(
    events_bad_interval,
    SLEEP,
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        code(&["events", "--interval", "soon", "{id}"]),
        s(&["delete", "-f", "{id}"]),
    ]
);

// --- spec ----------------------------------------------------------------------------
diff!(
    spec_refuses_to_overwrite,
    SLEEP,
    none,
    [
        s(&["spec", "-b", "{b}"]),
        s(&["spec", "--rootless", "--bundle", "{b}"]),
    ]
);

/// The config `spec` writes into an empty directory (plain and `--rootless`), and its
/// exit code.
fn spec_written(rt: &Runtime, rootless: bool) -> (i32, Value) {
    let dir = tempfile::Builder::new()
        .prefix("vzt-spec-")
        .tempdir()
        .unwrap();
    let mut args = vec!["spec", "-b", dir.path().to_str().unwrap()];
    if rootless {
        args.push("--rootless");
    }
    let o = rt.run(&args);
    let text = std::fs::read_to_string(dir.path().join("config.json")).unwrap_or_default();
    let mut v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.remove("ociVersion");
        // Each names itself (see the README).
        let own = m.remove("hostname");
        assert_eq!(
            own,
            Some(Value::from(rt.name)),
            "{}: spec's hostname",
            rt.name
        );
    }
    (o.code, v)
}

#[test]
fn spec_writes_runcs_default_config() {
    require_runc!();
    for rootless in [false, true] {
        let want = spec_written(&Runtime::runc(), rootless);
        assert_eq!(want.0, 0, "runc spec (rootless {rootless})");
        let got = spec_written(&Runtime::vzrun(), rootless);
        assert_eq!(
            got, want,
            "spec --rootless={rootless}: vzrun differs from runc"
        );
    }
}

diff!(
    exec_preserve_fds_and_pid_file_relative,
    SLEEP,
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        s(&[
            "exec",
            "--preserve-fds",
            "0",
            "{id}",
            "sh",
            "-c",
            "ls /proc/self/fd | wc -l"
        ]),
        s(&["exec", "--pid-file", "{b}/exec.pid", "{id}", "true"]),
        s(&["delete", "-f", "{id}"]),
    ]
);
diff!(
    run_pid_file_written,
    SLEEP,
    none,
    [
        s(&[
            "run",
            "-d",
            "--pid-file",
            "{b}/run.pid",
            "-b",
            "{b}",
            "{id}"
        ]),
        s(&["exec", "{id}", "true"]),
        s(&["delete", "-f", "{id}"]),
    ]
);
diff!(
    kill_realtime_signals,
    SLEEP,
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        // runc 1.1.5 has no RTMIN+N names (vzrun takes them, see the README).
        s(&["kill", "{id}", "64"]),
        s(&["kill", "{id}", "65"]),
        s(&["delete", "-f", "{id}"]),
    ]
);
diff!(
    list_with_no_root_directory,
    SLEEP,
    none,
    [
        s(&["list", "-q"]),
        s(&["list", "-f", "json"]),
        ps(&["list"])
    ]
);
