//! A system VE's bundle in the data directory: its OCI config that boots a template's
//! init, beside `ve.conf`, the VE's record and settings (see `conf`).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde_json::json;

use super::conf::VeConf;
use super::config::SYSTEM_CAPS;
use crate::ve::template::Template;
use crate::ve::{VeError, PREFIX};

pub const VE_CONF: &str = "ve.conf";
pub const CONSOLE_LOG: &str = "console.log";
pub const DISK_IMAGE: &str = "private.img";

pub fn ves_dir(data: &Path) -> PathBuf {
    data.join("ve")
}

/// `(VE id, template)` for every VE in the data directory.
pub fn ves(data: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = fs::read_dir(ves_dir(data))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let id = e.file_name().into_string().ok()?;
                    let conf = VeConf::load(&e.path()).ok()?;
                    Some((id, conf.template))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// What `ve create` knows about the VE it makes.
pub struct SystemSpec<'a> {
    pub template: &'a Template,
    pub hostname: &'a str,
    /// `io.vzrun.*` settings, already checked.
    pub annotations: HashMap<String, String>,
    /// Capabilities switched on or off with --capability.
    pub capabilities: &'a [(String, bool)],
}

/// The OCI config of a system VE: runc's defaults for mounts, masked and read-only
/// paths, and namespaces; the template's init as a terminal-less PID 1; a /run of its
/// own; a console; the system capability set; kexec refused by seccomp, since
/// CAP_SYS_BOOT would otherwise allow loading a kernel for the host.
pub fn spec(s: &SystemSpec) -> Result<Spec, VeError> {
    let mut caps: Vec<String> = SYSTEM_CAPS.iter().map(|c| c.to_string()).collect();
    for (cap, on) in s.capabilities {
        caps.retain(|c| c != cap);
        if *on {
            caps.push(cap.clone());
        }
    }
    let mut annotations = s.annotations.clone();
    annotations.insert(format!("{PREFIX}sysctl"), "namespaced".to_string());
    let value = json!({
        "ociVersion": crate::runtime::state::OCI_VERSION,
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": s.template.info.init,
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=linux",
                "container=vzrun"
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps
            },
            "noNewPrivileges": false
        },
        "root": {"path": s.template.rootfs, "readonly": false},
        "hostname": s.hostname,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            // The VE's console: output written there is discarded, as on a server
            // nobody watches; init's own output goes to the console log.
            {"destination": "/dev/console", "type": "bind", "source": "/dev/null",
             "options": ["bind", "rw"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
            {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "nodev", "mode=755", "size=65536k"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                {"type": "uts"}, {"type": "mount"}
            ],
            "seccomp": {
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                "syscalls": [
                    {"names": ["kexec_load", "kexec_file_load"],
                     "action": "SCMP_ACT_ERRNO", "errnoRet": 1}
                ]
            },
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        },
        "annotations": annotations
    });
    serde_json::from_value(value).map_err(|e| VeError::Refused(format!("system VE config: {e}")))
}
