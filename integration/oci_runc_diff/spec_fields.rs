//! The fields of config.json, each run under both runtimes: what the process sees
//! inside, or the refusal and what is left after it.

use super::*;

const RUN: Step = s(&["run", "-b", "{b}", "{id}"]);
const LIST: Step = s(&["list", "-q"]);

fn push_mount(v: &mut Value, m: Value) {
    v["mounts"].as_array_mut().unwrap().push(m);
}

fn drop_namespace(v: &mut Value, kind: &str) {
    v["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != kind);
}

// --- process -------------------------------------------------------------------------
diff!(
    spec_rlimits_several,
    &["sh", "-c", "ulimit -a"],
    |v| {
        v["process"]["rlimits"] = json!([
            {"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200},
            {"type": "RLIMIT_NPROC", "soft": 500, "hard": 600},
            {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
            {"type": "RLIMIT_STACK", "soft": 4194304, "hard": 8388608},
            {"type": "RLIMIT_MEMLOCK", "soft": 65536, "hard": 65536},
        ]);
    },
    [RUN]
);
diff!(
    spec_rlimit_unknown_type,
    SLEEP,
    |v| v["process"]["rlimits"] = json!([{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]),
    [code(&["run", "-b", "{b}", "{id}"]), LIST]
);
diff!(
    spec_rlimit_soft_over_hard,
    &["sh", "-c", "ulimit -n"],
    |v| v["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 300, "hard": 200}]),
    [code(&["run", "-b", "{b}", "{id}"]), LIST]
);
diff!(
    spec_oom_score_adj_negative,
    &["cat", "/proc/self/oom_score_adj"],
    |v| v["process"]["oomScoreAdj"] = json!(-500),
    // Lowering it needs CAP_SYS_RESOURCE, which neither runtime's init has by then here.
    [code(&["run", "-b", "{b}", "{id}"]), LIST]
);
diff!(
    spec_oom_score_adj_max,
    &["cat", "/proc/self/oom_score_adj"],
    |v| v["process"]["oomScoreAdj"] = json!(1000),
    [RUN]
);
diff!(
    spec_no_new_privileges_false,
    &["grep", "NoNewPrivs", "/proc/self/status"],
    |v| v["process"]["noNewPrivileges"] = json!(false),
    [RUN]
);
diff!(
    spec_capabilities_empty,
    &["grep", "^Cap", "/proc/self/status"],
    |v| v["process"]["capabilities"] = json!({}),
    [RUN]
);
diff!(
    spec_capabilities_split_sets,
    &["grep", "^Cap", "/proc/self/status"],
    |v| {
        v["process"]["capabilities"] = json!({
            "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW", "CAP_SETUID"],
            "effective": ["CAP_CHOWN"],
            "permitted": ["CAP_CHOWN", "CAP_KILL"],
            "inheritable": ["CAP_KILL"],
            "ambient": ["CAP_KILL"],
        });
    },
    [RUN]
);
diff!(
    spec_capabilities_for_a_non_root_user,
    &["grep", "^Cap", "/proc/self/status"],
    |v| {
        v["process"]["user"] = json!({"uid": 1000, "gid": 1000});
        v["process"]["capabilities"] = json!({
            "bounding": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
            "effective": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
            "permitted": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
            "ambient": ["CAP_NET_BIND_SERVICE"],
        });
    },
    [RUN]
);
diff!(
    spec_capability_unknown_name,
    &["grep", "^CapEff", "/proc/self/status"],
    |v| {
        v["process"]["capabilities"]["bounding"] = json!(["CAP_KILL", "CAP_VZT_BOGUS"]);
        v["process"]["capabilities"]["effective"] = json!(["CAP_KILL", "CAP_VZT_BOGUS"]);
    },
    [code(&["run", "-b", "{b}", "{id}"]), LIST]
);
diff!(
    spec_user_and_additional_gids,
    &["id"],
    |v| v["process"]["user"] = json!({"uid": 1000, "gid": 1001, "additionalGids": [5, 6, 7]}),
    [RUN]
);
diff!(
    spec_user_umask,
    &["sh", "-c", "umask; touch /tmp/f; stat -c %a /tmp/f"],
    |v| {
        v["process"]["user"]["umask"] = json!(63);
        push_mount(
            v,
            json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}),
        );
    },
    [RUN]
);
diff!(
    spec_cwd_relative_refused,
    &["pwd"],
    |v| v["process"]["cwd"] = json!("tmp"),
    [code(&["run", "-b", "{b}", "{id}"]), LIST]
);
diff!(
    spec_env_forms,
    &["sh", "-c", "env | sort | grep -v ^PWD= | grep -v ^SHLVL="],
    |v| v["process"]["env"] = json!(["PATH=/bin", "A=1", "A=2", "EMPTY=", "SPACED=a b"]),
    [RUN]
);
diff!(
    spec_args_missing,
    SLEEP,
    |v| v["process"]["args"] = json!([]),
    [code(&["run", "-b", "{b}", "{id}"]), LIST]
);
diff!(
    spec_executable_not_found,
    &["no-such-command-vzt"],
    none,
    [s(&["run", "-b", "{b}", "{id}"]), LIST]
);
diff!(
    spec_executable_is_a_directory,
    &["/etc"],
    none,
    [s(&["run", "-b", "{b}", "{id}"]), LIST]
);
diff!(
    spec_scheduler,
    &["sh", "-c", "chrt -p $$ 2>&1 | sed 's/.*pid [0-9]*//'"],
    |v| v["process"]["scheduler"] = json!({"policy": "SCHED_BATCH", "nice": 0}),
    [RUN]
);

// --- hostname, domainname, sysctl ----------------------------------------------------
diff!(
    spec_hostname_only,
    &["sh", "-c", "hostname; cat /proc/sys/kernel/domainname"],
    |v| v["hostname"] = json!("web"),
    [RUN]
);
diff!(
    spec_hostname_without_uts_namespace,
    &["hostname"],
    |v| {
        v["hostname"] = json!("nouts");
        drop_namespace(v, "uts");
    },
    [code(&["run", "-b", "{b}", "{id}"]), LIST]
);
diff!(
    spec_sysctl_unknown_key,
    &["true"],
    |v| v["linux"]["sysctl"] = json!({"kernel.vzt_no_such_key": "1"}),
    [code(&["run", "-b", "{b}", "{id}"]), LIST]
);
diff!(
    spec_sysctl_net_without_net_namespace,
    &["true"],
    |v| {
        v["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
        drop_namespace(v, "network");
    },
    [code(&["run", "-b", "{b}", "{id}"]), LIST]
);
diff!(
    spec_sysctl_not_namespaced,
    &["true"],
    |v| v["linux"]["sysctl"] = json!({"vm.swappiness": "10"}),
    [code(&["run", "-b", "{b}", "{id}"]), LIST]
);
diff!(
    spec_sysctl_ipc_kernel_keys,
    &[
        "sh",
        "-c",
        "cat /proc/sys/kernel/shmmax /proc/sys/kernel/sem /proc/sys/fs/mqueue/msg_max"
    ],
    |v| {
        v["linux"]["sysctl"] = json!({
            "kernel.shmmax": "1048576",
            "kernel.sem": "250 32000 100 128",
            "fs.mqueue.msg_max": "20",
        });
    },
    [RUN]
);

// --- masked and read-only paths ------------------------------------------------------
diff!(
    spec_masked_paths_file_and_dir,
    &[
        "sh",
        "-c",
        "cat /etc/hostname | wc -c; ls /home | wc -l; touch /home/x 2>/dev/null; echo $?"
    ],
    |v| v["linux"]["maskedPaths"] = json!(["/etc/hostname", "/home", "/vzt/missing"]),
    [RUN]
);
diff!(
    spec_readonly_paths_custom,
    &[
        "sh",
        "-c",
        "touch /tmp/x 2>/dev/null; echo $?; grep ' /tmp ' /proc/self/mountinfo | grep -c ' ro,'"
    ],
    |v| {
        push_mount(
            v,
            json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}),
        );
        v["linux"]["readonlyPaths"] = json!(["/tmp", "/vzt/missing"]);
    },
    [RUN]
);
diff!(
    spec_no_masked_paths,
    &[
        "sh",
        "-c",
        "head -c 1 /proc/kcore 2>/dev/null | wc -c; ls /proc/acpi >/dev/null 2>&1; echo $?"
    ],
    |v| {
        v["linux"]["maskedPaths"] = json!([]);
        v["linux"]["readonlyPaths"] = json!([]);
    },
    [RUN]
);

// --- mounts --------------------------------------------------------------------------
diff!(
    spec_mount_bind_readonly,
    &[
        "sh",
        "-c",
        "ls /home/bin/busybox; touch /home/x 2>/dev/null; echo $?"
    ],
    |v| {
        let src = common::rootfs();
        push_mount(
            v,
            json!({"destination": "/home", "type": "bind", "source": src, "options": ["rbind", "ro"]}),
        );
    },
    [RUN]
);
diff!(
    spec_mount_tmpfs_size_and_mode,
    &[
        "sh",
        "-c",
        "df -k /home | tail -1 | awk '{print $2}'; touch /home/x; echo $?"
    ],
    |v| push_mount(
        v,
        json!({"destination": "/home", "type": "tmpfs", "source": "tmpfs", "options": ["size=2m"]})
    ),
    [RUN]
);
diff!(
    spec_mount_missing_source,
    &["true"],
    |v| push_mount(
        v,
        json!({"destination": "/home", "type": "bind", "source": "/nonexistent-vzt-src", "options": ["bind"]})
    ),
    [code(&["run", "-b", "{b}", "{id}"]), LIST]
);
diff!(
    spec_mount_file_onto_new_path,
    &["sh", "-c", "cat /home/new/dir/passwd | head -1"],
    |v| {
        let src = common::rootfs().join("etc/passwd");
        push_mount(
            v,
            json!({"destination": "/home/new/dir/passwd", "type": "bind", "source": src, "options": ["bind", "ro"]}),
        );
        push_mount(
            v,
            json!({"destination": "/home", "type": "tmpfs", "source": "tmpfs"}),
        );
        // The tmpfs must come first for the file to land on it.
        let ms = v["mounts"].as_array_mut().unwrap();
        let n = ms.len();
        ms.swap(n - 1, n - 2);
    },
    [RUN]
);
diff!(
    spec_mount_relative_destination,
    &["sh", "-c", "grep -c ' /home ' /proc/self/mountinfo"],
    |v| push_mount(
        v,
        json!({"destination": "home", "type": "tmpfs", "source": "tmpfs"})
    ),
    [code(&["run", "-b", "{b}", "{id}"]), LIST]
);
diff!(
    spec_mount_unknown_type,
    &["true"],
    |v| push_mount(
        v,
        json!({"destination": "/home", "type": "vztfs", "source": "none"})
    ),
    [code(&["run", "-b", "{b}", "{id}"]), LIST]
);
diff!(
    spec_mount_flags_seen_inside,
    &[
        "sh",
        "-c",
        "grep ' /home ' /proc/self/mountinfo | cut -d' ' -f6"
    ],
    |v| push_mount(
        v,
        json!({"destination": "/home", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "noexec", "noatime", "ro"]})
    ),
    [RUN]
);
diff!(
    spec_rootfs_propagation_private,
    &[
        "sh",
        "-c",
        "grep ' / / ' /proc/self/mountinfo | grep -o 'shared:\\|master:' | wc -l"
    ],
    |v| v["linux"]["rootfsPropagation"] = json!("private"),
    [RUN]
);
diff!(
    spec_rootfs_propagation_bad,
    &["true"],
    |v| v["linux"]["rootfsPropagation"] = json!("sideways"),
    [code(&["run", "-b", "{b}", "{id}"]), LIST]
);
diff!(
    spec_root_writable,
    &[
        "sh",
        "-c",
        "grep ' / / ' /proc/self/mountinfo | cut -d' ' -f6 | cut -d, -f1"
    ],
    |v| v["root"]["readonly"] = json!(true),
    [RUN]
);

// --- devices -------------------------------------------------------------------------
diff!(
    spec_device_added,
    &[
        "sh",
        "-c",
        "ls -ln /dev/vztnull | cut -c1-10,16-30; echo x > /dev/vztnull; echo $?"
    ],
    |v| {
        v["linux"]["devices"] = json!([{"path": "/dev/vztnull", "type": "c", "major": 1, "minor": 3, "fileMode": 432, "uid": 0, "gid": 0}]);
        v["linux"]["resources"]["devices"] = json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
        ]);
    },
    [RUN]
);
diff!(
    spec_device_cgroup_denies,
    &[
        "sh",
        "-c",
        "head -c 1 /dev/zero >/dev/null 2>&1; echo zero=$?; echo > /dev/null; echo null=$?"
    ],
    |v| {
        v["linux"]["resources"]["devices"] = json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"},
        ]);
    },
    [RUN]
);
diff!(
    spec_device_bad_type,
    &["true"],
    |v| v["linux"]["devices"] =
        json!([{"path": "/dev/vztbad", "type": "x", "major": 1, "minor": 3}]),
    [code(&["run", "-b", "{b}", "{id}"]), LIST]
);

// --- namespaces ----------------------------------------------------------------------
diff!(
    spec_without_pid_namespace,
    &["sh", "-c", "test $$ -ne 1 && echo host-pids"],
    |v| drop_namespace(v, "pid"),
    [RUN]
);
diff!(
    spec_namespace_path_missing,
    &["true"],
    |v| {
        v["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|n| n["type"] != "network");
        v["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "network", "path": "/proc/999999999/ns/net"}));
    },
    [code(&["run", "-b", "{b}", "{id}"]), LIST]
);
diff!(
    spec_namespace_duplicate,
    &["true"],
    |v| v["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "pid"})),
    [code(&["run", "-b", "{b}", "{id}"]), LIST]
);
diff!(
    spec_namespace_unknown_type,
    &["true"],
    |v| v["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "vztns"})),
    [code(&["run", "-b", "{b}", "{id}"]), LIST]
);
diff!(
    spec_cgroup_namespace,
    &["cat", "/proc/self/cgroup"],
    |v| v["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "cgroup"})),
    [RUN]
);
diff!(
    spec_user_namespace_mappings,
    &["sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; id"],
    |v| {
        // The shared rootfs belongs to the host's root, who is unmapped here.
        crate::in_user_namespace(v);
    },
    [RUN]
);
diff!(
    spec_user_namespace_without_mappings,
    &["true"],
    |v| v["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"})),
    [code(&["run", "-b", "{b}", "{id}"]), LIST]
);

// --- resources at create -------------------------------------------------------------
diff!(
    spec_resources_cpu_memory_pids,
    &[
        "sh",
        "-c",
        "cd /sys/fs/cgroup; cat cpu/cpu.shares cpu/cpu.cfs_quota_us memory/memory.limit_in_bytes \
         memory/memory.soft_limit_in_bytes pids/pids.max cpuset/cpuset.cpus"
    ],
    |v| {
        v["linux"]["resources"]["cpu"] =
            json!({"shares": 256, "quota": 20000, "period": 100000, "cpus": "0"});
        v["linux"]["resources"]["memory"] = json!({"limit": 67108864, "reservation": 33554432});
        v["linux"]["resources"]["pids"] = json!({"limit": 40});
    },
    [RUN]
);
diff!(
    spec_resources_memory_swap_below_limit,
    &["true"],
    |v| v["linux"]["resources"]["memory"] = json!({"limit": 67108864, "swap": 33554432}),
    [code(&["run", "-b", "{b}", "{id}"]), LIST]
);
diff!(
    spec_resources_blkio_weight,
    &["cat", "/sys/fs/cgroup/blkio/blkio.bfq.weight"],
    |v| v["linux"]["resources"]["blockIO"] = json!({"weight": 300}),
    [RUN]
);
diff!(
    spec_resources_pids_limit_enforced,
    // The shell's fork at the limit fails and ends it (busybox: exit 2, "can't fork").
    &[
        "sh",
        "-c",
        "echo start; i=0; while [ $i -lt 20 ]; do sleep 30 & i=$((i+1)); done; echo unreachable"
    ],
    |v| v["linux"]["resources"]["pids"] = json!({"limit": 10}),
    [RUN]
);

// --- hooks ---------------------------------------------------------------------------
diff!(
    spec_hook_failing_create_runtime,
    SLEEP,
    |v| v["hooks"] = json!({"createRuntime": [{"path": "/bin/false"}]}),
    [code(&["run", "-d", "-b", "{b}", "{id}"]), LIST]
);
diff!(
    spec_hook_failing_create_container,
    SLEEP,
    |v| v["hooks"] = json!({"createContainer": [{"path": "/bin/false"}]}),
    [code(&["run", "-d", "-b", "{b}", "{id}"]), LIST]
);
diff!(
    spec_hook_failing_start_container,
    SLEEP,
    |v| v["hooks"] = json!({"startContainer": [{"path": "/bin/false"}]}),
    [
        s(&["create", "-b", "{b}", "{id}"]),
        code(&["start", "{id}"]),
        code(&["delete", "-f", "{id}"]),
        LIST,
    ]
);
diff!(
    spec_hook_missing_binary,
    SLEEP,
    |v| v["hooks"] = json!({"prestart": [{"path": "/nonexistent-vzt-hook"}]}),
    [code(&["run", "-d", "-b", "{b}", "{id}"]), LIST]
);

// --- more mounts ---------------------------------------------------------------------
diff!(
    spec_mount_relative_bind_source,
    &["ls", "/home"],
    |v| v["mounts"].as_array_mut().unwrap().push(
        json!({"destination": "/home", "type": "bind", "source": ".", "options": ["rbind", "ro"]})
    ),
    [RUN]
);
diff!(
    spec_mount_propagation_options,
    &["sh", "-c", "grep ' /home ' /proc/self/mountinfo | grep -o 'shared:[0-9]*\\|master:[0-9]*' | cut -d: -f1"],
    |v| v["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/home", "type": "tmpfs", "source": "tmpfs", "options": ["rprivate"]})),
    [RUN]
);
diff!(
    spec_mount_over_a_file_of_the_rootfs,
    &["cat", "/etc/hostname"],
    |v| {
        v["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/etc/hostname", "type": "bind", "source": common::rootfs().join("etc/group"), "options": ["bind", "ro"]}))
    },
    [RUN]
);
diff!(
    spec_process_terminal_false_stdio,
    &[
        "sh",
        "-c",
        "test -t 0; echo tty=$?; ls -l /proc/self/fd/1 | grep -c pipe; true"
    ],
    none,
    [RUN]
);
diff!(
    spec_rlimit_nofile_above_hard_limit_of_host,
    &["sh", "-c", "ulimit -n"],
    |v| v["process"]["rlimits"] =
        json!([{"type": "RLIMIT_NOFILE", "soft": 2097152, "hard": 2097152}]),
    [code(&["run", "-b", "{b}", "{id}"]), LIST]
);
diff!(
    spec_env_without_path,
    &["sh", "-c", "echo ran"],
    |v| v["process"]["env"] = json!(["A=1"]),
    [RUN]
);
