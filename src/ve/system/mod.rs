//! A VE that is a whole Linux system: the OCI config that boots a template's init, the
//! VE's own record beside it, the namespaced sysctls it may change, and how its init is
//! asked to shut down.
//!
//! VE bundles live in the data directory, `DATA/ve/ID/` (config.json, `ve.conf`, the
//! console log and the disk image of its private area); their state while running
//! stays under the runtime root, as for any container.

use std::collections::HashMap;
use std::fs;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Capability, Spec};
use serde::{Deserialize, Serialize};
use serde_json::json;

pub mod lifecycle;

use super::template::{Shutdown, Template};
use super::{VeError, PREFIX};

/// `io.vzrun.sysctl=namespaced`: /proc/sys stays read-only except the parts the VE owns
/// through its namespaces (net.*, the UTS names, the IPC limits, POSIX mqueues).
pub const KEYS: &[&str] = &["sysctl"];

/// What a system VE may write under /proc/sys; everything else there stays read-only,
/// since it is the host's.
const OWN_SYSCTLS: &[&str] = &[
    "net",
    "kernel/hostname",
    "kernel/domainname",
    "kernel/shmmax",
    "kernel/shmall",
    "kernel/shmmni",
    "kernel/shm_rmid_forced",
    "kernel/msgmax",
    "kernel/msgmnb",
    "kernel/msgmni",
    "kernel/sem",
    "fs/mqueue",
];

/// runc's default capability set for containers, plus what a system needs: network
/// administration and raw sockets (only ever in the VE's own network namespace), and
/// reboot(2), which in a PID namespace only ends that namespace's init.
pub const SYSTEM_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
    "CAP_NET_ADMIN",
    "CAP_SYS_BOOT",
];

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SystemConfig {
    pub own_sysctls: bool,
}

impl SystemConfig {
    pub fn parse(a: &HashMap<String, String>) -> Result<Option<Self>, VeError> {
        let key = format!("{PREFIX}sysctl");
        match a.get(&key).map(String::as_str) {
            None => Ok(None),
            Some("namespaced") => Ok(Some(SystemConfig { own_sysctls: true })),
            Some(other) => Err(VeError::Annotation {
                key,
                problem: format!("{other:?}: the only value is \"namespaced\""),
            }),
        }
    }
}

/// Makes the VE's own sysctls writable in its mount namespace, once libcontainer has
/// made /proc/sys read-only and before init runs. Done from a thread of ours that
/// enters only that mount namespace, so paths resolve inside the VE.
pub fn configure(pid: i32, cfg: &SystemConfig) -> Result<(), VeError> {
    if !cfg.own_sysctls {
        return Ok(());
    }
    use nix::sched::CloneFlags;
    // The IPC sysctls are a table per IPC namespace: the entries to bind are the ones the
    // VE sees, so the worker joins that namespace as well as the mount namespace.
    let mut nss = Vec::new();
    for (name, flag) in [
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("mnt", CloneFlags::CLONE_NEWNS),
    ] {
        let f = fs::File::open(format!("/proc/{pid}/ns/{name}"))
            .map_err(|e| VeError::Io(format!("sysctl: open the VE's {name} namespace: {e}")))?;
        nss.push((name, flag, f));
    }
    std::thread::spawn(move || -> Result<(), VeError> {
        use nix::mount::{mount, MsFlags};
        use nix::sched::{setns, unshare};
        // setns(CLONE_NEWNS) refuses a thread that shares its root and cwd.
        unshare(CloneFlags::CLONE_FS)
            .map_err(|e| VeError::Io(format!("sysctl: unshare fs: {e}")))?;
        for (name, flag, f) in &nss {
            setns(f.as_fd(), *flag).map_err(|e| {
                VeError::Io(format!("sysctl: enter the VE's {name} namespace: {e}"))
            })?;
        }
        for rel in OWN_SYSCTLS {
            let p = Path::new("/proc/sys").join(rel);
            if !p.exists() {
                continue;
            }
            let none: Option<&str> = None;
            mount(Some(&p), &p, none, MsFlags::MS_BIND | MsFlags::MS_REC, none)
                .map_err(|e| VeError::Io(format!("sysctl: bind {}: {e}", p.display())))?;
            mount(
                none,
                &p,
                none,
                MsFlags::MS_BIND
                    | MsFlags::MS_REMOUNT
                    | MsFlags::MS_NOSUID
                    | MsFlags::MS_NODEV
                    | MsFlags::MS_NOEXEC,
                none,
            )
            .map_err(|e| VeError::Io(format!("sysctl: make {} writable: {e}", p.display())))?;
        }
        Ok(())
    })
    .join()
    .map_err(|_| VeError::Io("sysctl: worker panicked".into()))?
}

/// `NAME:on|off` as vzctl's --capability takes it; NAME with or without CAP_.
pub fn parse_capability(text: &str) -> Result<(String, bool), String> {
    let (name, state) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?}: expected NAME:on or NAME:off"))?;
    let on = match state {
        "on" => true,
        "off" => false,
        _ => return Err(format!("{text:?}: expected NAME:on or NAME:off")),
    };
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    serde_json::from_value::<Capability>(json!(full))
        .map_err(|_| format!("{name:?} is not a capability"))?;
    Ok((full, on))
}

/// The VE's record beside its bundle: which template it boots and how it stops.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VeConf {
    pub template: String,
    pub shutdown: Shutdown,
    pub created: String,
}

pub const VE_CONF: &str = "ve.conf";
pub const CONSOLE_LOG: &str = "console.log";
pub const DISK_IMAGE: &str = "private.img";

pub fn ves_dir(data: &Path) -> PathBuf {
    data.join("ve")
}

impl VeConf {
    pub fn load(dir: &Path) -> Result<Self, VeError> {
        let path = dir.join(VE_CONF);
        let data = fs::read(&path).map_err(|e| VeError::Io(format!("{}: {e}", path.display())))?;
        serde_json::from_slice(&data).map_err(|e| VeError::Io(format!("{}: {e}", path.display())))
    }

    pub fn save(&self, dir: &Path) -> Result<(), VeError> {
        let path = dir.join(VE_CONF);
        let text = serde_json::to_vec_pretty(self).map_err(|e| VeError::Io(e.to_string()))?;
        fs::write(&path, text).map_err(|e| VeError::Io(format!("{}: {e}", path.display())))
    }
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
    serde_json::from_value(value).map_err(|e| VeError::Io(format!("system VE config: {e}")))
}

/// Asks the VE's init to shut the system down, the way that init expects it.
pub fn request_shutdown(pid: i32, how: Shutdown) -> Result<(), VeError> {
    match how {
        Shutdown::Busybox => {
            // SAFETY: kill(2) on the VE's init, whose pid we just read from its state.
            if unsafe { libc::kill(pid, libc::SIGUSR2) } != 0 {
                return Err(VeError::Io(format!(
                    "signal init: {}",
                    std::io::Error::last_os_error()
                )));
            }
            Ok(())
        }
        Shutdown::Sysvinit => initctl_runlevel(pid, b'0'),
    }
}

/// sysvinit's request record (initreq.h): magic, command, runlevel, sleep time, then
/// 368 bytes of payload; 384 bytes in all.
pub fn initctl_request(runlevel: u8) -> [u8; 384] {
    let mut buf = [0u8; 384];
    buf[0..4].copy_from_slice(&0x0309_1969i32.to_ne_bytes());
    // INIT_CMD_RUNLVL
    buf[4..8].copy_from_slice(&1i32.to_ne_bytes());
    buf[8..12].copy_from_slice(&(runlevel as i32).to_ne_bytes());
    // Seconds between SIGTERM and SIGKILL for processes the new runlevel does not keep.
    buf[12..16].copy_from_slice(&3i32.to_ne_bytes());
    buf
}

/// Writes a runlevel request into the FIFO init reads, /run/initctl inside the VE. The
/// path is resolved with the VE's root as "/" (a VE cannot point it at a host file), and
/// it must be a FIFO: nothing else is ever written to.
fn initctl_runlevel(pid: i32, runlevel: u8) -> Result<(), VeError> {
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::fs::FileTypeExt;
    let err = |what: &str, e: std::io::Error| VeError::Io(format!("initctl: {what}: {e}"));
    let root =
        fs::File::open(format!("/proc/{pid}/root")).map_err(|e| err("open the VE's root", e))?;
    // struct open_how from openat2(2); libc's is non-exhaustive.
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let how = OpenHow {
        flags: (libc::O_WRONLY | libc::O_NONBLOCK | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    };
    let path = c"run/initctl";
    // SAFETY: openat2 with a valid dirfd, a NUL-terminated path and a sized open_how.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            std::os::fd::AsRawFd::as_raw_fd(&root),
            path.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(err(
            "open /run/initctl (is init sysvinit?)",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: the kernel just returned this descriptor to us.
    let file = fs::File::from(unsafe { OwnedFd::from_raw_fd(fd as i32) });
    let meta = file.metadata().map_err(|e| err("stat /run/initctl", e))?;
    if !meta.file_type().is_fifo() {
        return Err(VeError::Io(
            "initctl: /run/initctl in the VE is not a FIFO".into(),
        ));
    }
    use std::io::Write;
    (&file)
        .write_all(&initctl_request(runlevel))
        .map_err(|e| err("write /run/initctl", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ve::template::TemplateInfo;

    fn template() -> Template {
        Template {
            info: TemplateInfo {
                name: "t".into(),
                dist: "busybox".into(),
                init: vec!["/sbin/init".into()],
                shutdown: Shutdown::Busybox,
                packages: vec![],
                mirror: None,
                created: "now".into(),
            },
            rootfs: PathBuf::from("/var/lib/vzrun/templates/t/rootfs"),
        }
    }

    #[test]
    fn system_spec_boots_init_with_system_caps() {
        let t = template();
        let caps = vec![
            ("CAP_SYS_ADMIN".to_string(), true),
            ("CAP_MKNOD".to_string(), false),
        ];
        let ann = crate::ve::test_annotations(&[("diskspace", "10G")]);
        let s = spec(&SystemSpec {
            template: &t,
            hostname: "ve1",
            annotations: ann,
            capabilities: &caps,
        })
        .unwrap();
        let p = s.process().as_ref().unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &["/sbin/init".to_string()]);
        assert_eq!(p.terminal(), Some(false));
        let eff = p
            .capabilities()
            .as_ref()
            .unwrap()
            .effective()
            .clone()
            .unwrap();
        assert!(eff.contains(&Capability::NetAdmin));
        assert!(eff.contains(&Capability::SysAdmin), "asked for");
        assert!(!eff.contains(&Capability::Mknod), "switched off");
        assert_eq!(s.hostname().as_deref(), Some("ve1"));
        let ann = s.annotations().clone().unwrap();
        assert_eq!(ann["io.vzrun.sysctl"], "namespaced");
        assert_eq!(ann["io.vzrun.diskspace"], "10G");
        let linux = s.linux().as_ref().unwrap();
        assert!(linux.seccomp().is_some());
        assert!(linux
            .readonly_paths()
            .as_ref()
            .unwrap()
            .contains(&"/proc/sys".to_string()));
        assert_eq!(linux.namespaces().as_ref().unwrap().len(), 5);
    }

    #[test]
    fn capability_flags() {
        assert_eq!(
            parse_capability("sys_admin:on").unwrap(),
            ("CAP_SYS_ADMIN".to_string(), true)
        );
        assert_eq!(
            parse_capability("CAP_NET_ADMIN:off").unwrap(),
            ("CAP_NET_ADMIN".to_string(), false)
        );
        assert!(parse_capability("bogus:on")
            .unwrap_err()
            .contains("not a capability"));
        assert!(parse_capability("sys_admin").is_err());
    }

    #[test]
    fn sysctl_annotation_has_one_value() {
        let ok = crate::ve::test_annotations(&[("sysctl", "namespaced")]);
        assert!(SystemConfig::parse(&ok).unwrap().unwrap().own_sysctls);
        let bad = crate::ve::test_annotations(&[("sysctl", "all")]);
        assert!(SystemConfig::parse(&bad)
            .unwrap_err()
            .to_string()
            .starts_with("annotation io.vzrun.sysctl:"));
    }

    #[test]
    fn initctl_request_layout() {
        let r = initctl_request(b'0');
        assert_eq!(i32::from_ne_bytes(r[0..4].try_into().unwrap()), 0x03091969);
        assert_eq!(i32::from_ne_bytes(r[4..8].try_into().unwrap()), 1);
        assert_eq!(
            i32::from_ne_bytes(r[8..12].try_into().unwrap()),
            b'0' as i32
        );
    }
}
