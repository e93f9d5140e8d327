//! `vzrun features`: what this build and host really support, in the runtime-spec
//! features document.

use anyhow::Result;
use serde_json::json;

use crate::cli::GlobalOpts;
use crate::commands::out::outln;

#[derive(clap::Args, Debug)]
#[command(about = "Show the enabled features")]
#[command(after_help = "Example:\n  vzrun features")]
pub struct Args {}

const MOUNT_OPTIONS: &[&str] = &[
    "acl",
    "async",
    "atime",
    "bind",
    "defaults",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "iversion",
    "lazytime",
    "loud",
    "mand",
    "noacl",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "noiversion",
    "nolazytime",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "nosymfollow",
    "private",
    "rbind",
    "relatime",
    "remount",
    "ro",
    "rprivate",
    "rshared",
    "rslave",
    "runbindable",
    "rw",
    "shared",
    "silent",
    "slave",
    "strictatime",
    "suid",
    "symfollow",
    "sync",
    "unbindable",
];

const CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

pub fn document() -> serde_json::Value {
    let checkpoint = crate::ve::checkpoint_available();
    let seccomp_arch = match std::env::consts::ARCH {
        "x86_64" => vec!["SCMP_ARCH_X86_64"],
        "aarch64" => vec!["SCMP_ARCH_AARCH64"],
        "riscv64" => vec!["SCMP_ARCH_RISCV64"],
        _ => vec![],
    };
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": crate::runtime::state::OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": MOUNT_OPTIONS,
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts", "time"],
            "capabilities": CAPABILITIES,
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": false},
            "seccomp": {
                "enabled": !seccomp_arch.is_empty(),
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                            "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE",
                            "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
                              "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": seccomp_arch,
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false},
            "mountExtensions": {"idmap": {"enabled": false}},
            "netDevices": {"enabled": true},
        },
        "annotations": {
            "io.vzrun.version": env!("CARGO_PKG_VERSION"),
            "org.opencontainers.runc.checkpoint.enabled": checkpoint.to_string(),
        },
        "potentiallyUnsafeConfigAnnotations": [crate::ve::PREFIX],
    })
}

pub fn run(_args: Args, _global: &GlobalOpts) -> Result<i32> {
    outln!("{}", serde_json::to_string_pretty(&document())?)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn features_name_the_vzrun_prefix_and_spec_range() {
        let d = super::document();
        assert_eq!(d["potentiallyUnsafeConfigAnnotations"][0], "io.vzrun.");
        assert_eq!(d["ociVersionMin"], "1.0.0");
        assert!(d["linux"]["cgroup"]["v1"].as_bool().unwrap());
        assert!(d["annotations"]["org.opencontainers.runc.checkpoint.enabled"].is_string());
    }
}
