//! Rootfs hardening as runc 1.1.5 has it: /proc and /sys only on ordinary directories,
//! `ro` honoured on a tmpfs /dev and on cgroup mounts in a cgroup namespace.

use super::*;

/// A private copy of the busybox rootfs with `entry` replaced by a symlink to `target`.
fn rootfs_with_link(entry: &str, target: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("vzt-rootfs-")
        .tempdir()
        .unwrap();
    let ok = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", common::rootfs().display()))
        .arg(dir.path())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "copy the rootfs");
    let p = dir.path().join(entry);
    // Another suite's runs may have left mount points in the shared rootfs's /proc.
    let _ = std::fs::remove_dir_all(&p);
    std::os::unix::fs::symlink(target, &p).unwrap();
    dir
}

fn refused_link(name: &str, entry: &str, target: &str) {
    require_runc!();
    let root = rootfs_with_link(entry, target);
    let path = root.path().to_path_buf();
    differential_with(
        name,
        &["true"],
        move |v| v["root"] = json!({"path": path, "readonly": false}),
        &[
            worded(
                &["run", "-b", "{b}", "{id}"],
                "must be mounted on ordinary directory",
                "must be mounted on ordinary directory",
            ),
            s(&["list", "-q"]),
        ],
    );
}

#[test]
fn rootfs_proc_symlink_refused() {
    refused_link("rootfs_proc_symlink_refused", "proc", "tmp");
}

#[test]
fn rootfs_proc_symlink_out_of_rootfs_refused() {
    refused_link(
        "rootfs_proc_symlink_out_of_rootfs_refused",
        "proc",
        "/vzt-outside",
    );
}

#[test]
fn rootfs_sys_symlink_refused() {
    refused_link("rootfs_sys_symlink_refused", "sys", "tmp");
}

fn dev_options(v: &mut Value, extra: &str) {
    for m in v["mounts"].as_array_mut().unwrap() {
        if m["destination"] == "/dev" {
            m["options"].as_array_mut().unwrap().push(json!(extra));
        }
    }
}

diff!(
    rootfs_dev_tmpfs_readonly,
    &[
        "sh",
        "-c",
        "touch /dev/vzt 2>/dev/null; echo touch=$?; ls /dev/null /dev/zero /dev/pts >/dev/null; echo ls=$?; \
         echo x > /dev/null; echo null=$?; grep ' /dev ' /proc/self/mountinfo | cut -d' ' -f6 | cut -d, -f1"
    ],
    |v| dev_options(v, "ro"),
    [s(&["run", "-b", "{b}", "{id}"])]
);
diff!(
    rootfs_dev_tmpfs_writable,
    &["sh", "-c", "touch /dev/vzt; echo touch=$?"],
    none,
    [s(&["run", "-b", "{b}", "{id}"])]
);

fn cgroupns(v: &mut Value) {
    v["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "cgroup"}));
}

const CG_WRITE: &[&str] = &[
    "sh",
    "-c",
    "mkdir /sys/fs/cgroup/pids/vzt-sub 2>/dev/null; echo mkdir=$?; \
     grep ' /sys/fs/cgroup/pids ' /proc/self/mountinfo | cut -d' ' -f6 | cut -d, -f1",
];

diff!(
    rootfs_cgroup_ro_in_cgroup_namespace,
    CG_WRITE,
    cgroupns,
    [s(&["run", "-b", "{b}", "{id}"])]
);
diff!(
    rootfs_cgroup_ro_without_cgroup_namespace,
    CG_WRITE,
    none,
    [s(&["run", "-b", "{b}", "{id}"])]
);
diff!(
    rootfs_cgroup_rw_in_cgroup_namespace_shows_own_cgroup,
    &[
        "sh",
        "-c",
        "grep ' /sys/fs/cgroup/pids ' /proc/self/mountinfo | cut -d' ' -f4,6 | cut -d, -f1; grep -c '^1$' /sys/fs/cgroup/pids/cgroup.procs"
    ],
    |v| {
        cgroupns(v);
        for m in v["mounts"].as_array_mut().unwrap() {
            if m["type"] == "cgroup" {
                m["options"]
                    .as_array_mut()
                    .unwrap()
                    .retain(|o| o != "ro");
            }
        }
    },
    [s(&["run", "-b", "{b}", "{id}"])]
);
diff!(
    rootfs_readonly_root_with_writable_tmpfs,
    &[
        "sh",
        "-c",
        "touch /x 2>/dev/null; echo root=$?; touch /tmp/x; echo tmp=$?"
    ],
    |v| {
        v["root"]["readonly"] = json!(true);
        v["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}));
    },
    [s(&["run", "-b", "{b}", "{id}"])]
);
diff!(
    rootfs_mount_over_proc_subdir_refused,
    &["true"],
    |v| v["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/proc/self/vzt", "type": "tmpfs", "source": "tmpfs"})),
    [code(&["run", "-b", "{b}", "{id}"]), s(&["list", "-q"])]
);
