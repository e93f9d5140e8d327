//! The sysctls a system VE owns through its namespaces, made writable inside it.

use std::fs;
use std::os::fd::AsFd;
use std::path::Path;

use super::config::SystemConfig;
use crate::ve::VeError;

/// What a system VE may write under /proc/sys, with the namespace that makes each its
/// own; everything else there stays read-only, since it is the host's.
const OWN_SYSCTLS: &[(&str, &str)] = &[
    ("net", "net"),
    ("kernel/hostname", "uts"),
    ("kernel/domainname", "uts"),
    ("kernel/shmmax", "ipc"),
    ("kernel/shmall", "ipc"),
    ("kernel/shmmni", "ipc"),
    ("kernel/shm_rmid_forced", "ipc"),
    ("kernel/msgmax", "ipc"),
    ("kernel/msgmnb", "ipc"),
    ("kernel/msgmni", "ipc"),
    ("kernel/sem", "ipc"),
    ("fs/mqueue", "ipc"),
];

/// Makes the VE's own sysctls writable in its mount namespace, once libcontainer has
/// made /proc/sys read-only and before init runs. Done from a thread of ours that
/// enters only that mount namespace, so paths resolve inside the VE.
pub fn configure(pid: i32, cfg: &SystemConfig) -> Result<(), VeError> {
    if !cfg.own_sysctls {
        return Ok(());
    }
    let own: Vec<&'static str> = OWN_SYSCTLS
        .iter()
        .filter(|(_, ns)| crate::sys::process::own_namespace(pid, ns))
        .map(|(path, _)| *path)
        .collect();
    use nix::sched::CloneFlags;
    // The IPC sysctls are a table per IPC namespace: the entries to bind are the ones the
    // VE sees, so the worker joins that namespace as well as the mount namespace.
    let mut nss = Vec::new();
    for (name, flag) in [
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("mnt", CloneFlags::CLONE_NEWNS),
    ] {
        let f = fs::File::open(format!("/proc/{pid}/ns/{name}"))
            .map_err(|e| VeError::io(format!("sysctl: open the VE's {name} namespace"), e))?;
        nss.push((name, flag, f));
    }
    std::thread::spawn(move || -> Result<(), VeError> {
        use nix::mount::{mount, MsFlags};
        use nix::sched::{setns, unshare};
        // setns(CLONE_NEWNS) refuses a thread that shares its root and cwd.
        unshare(CloneFlags::CLONE_FS).map_err(|e| VeError::io("sysctl: unshare fs", e))?;
        for (name, flag, f) in &nss {
            setns(f.as_fd(), *flag)
                .map_err(|e| VeError::io(format!("sysctl: enter the VE's {name} namespace"), e))?;
        }
        for rel in own {
            let p = Path::new("/proc/sys").join(rel);
            if !p.exists() {
                continue;
            }
            let none: Option<&str> = None;
            mount(Some(&p), &p, none, MsFlags::MS_BIND | MsFlags::MS_REC, none)
                .map_err(|e| VeError::io(format!("sysctl: bind {}", p.display()), e))?;
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
            .map_err(|e| VeError::io(format!("sysctl: make {} writable", p.display()), e))?;
        }
        Ok(())
    })
    .join()
    .map_err(|_| VeError::Refused("sysctl: worker panicked".into()))?
}
