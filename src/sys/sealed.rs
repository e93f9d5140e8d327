//! vzrun runs container code from a copy of itself that nothing can write. libcontainer
//! forks vzrun to make a container's init and each exec'd process, so until they exec
//! the user's program their `/proc/PID/exe` is the vzrun binary; a process inside the
//! container could open it and, once the runtime exits, write to it (CVE-2019-5736).
//!
//! The copy is made once per installed binary under /run/vzrun-exe and bind-mounted
//! read-only onto itself in the host's mount namespace: opening it for writing fails
//! with EROFS whichever way a process reaches it, and later runs re-execute it for the
//! price of one exec (the page cache is shared). Where no such mount can be made, the
//! copy is a memfd sealed against writing, growing and shrinking, made per run (a copy
//! of the binary each time: about 10 ms here).

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};

#[derive(Debug, thiserror::Error)]
#[error("run from a sealed copy of vzrun: {step}: {source}")]
pub struct SealError {
    step: &'static str,
    source: std::io::Error,
}

fn failed(step: &'static str) -> impl FnOnce(std::io::Error) -> SealError {
    move |source| SealError { step, source }
}

const SEALS: SealFlag = SealFlag::F_SEAL_SEAL
    .union(SealFlag::F_SEAL_SHRINK)
    .union(SealFlag::F_SEAL_GROW)
    .union(SealFlag::F_SEAL_WRITE);

/// Whether `exe` is a sealed copy.
fn sealed(exe: &File) -> bool {
    fcntl(exe.as_raw_fd(), FcntlArg::F_GET_SEALS)
        .is_ok_and(|bits| SealFlag::from_bits_truncate(bits).contains(SEALS))
}

/// Where the read-only copies live (a tmpfs on usual hosts: gone at reboot).
const COPIES: &str = "/run/vzrun-exe";

/// Whether `f` lies on a read-only mount.
fn read_only(f: &File) -> bool {
    nix::sys::statvfs::fstatvfs(f)
        .is_ok_and(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
}

/// The read-only copy of the binary `exe` is, made on first use: its name carries the
/// binary's identity (device, inode, size, change time), so a new install gets a new one.
fn read_only_copy(exe: &mut File) -> std::io::Result<PathBuf> {
    use nix::mount::{mount, MsFlags};
    use std::os::unix::fs::OpenOptionsExt;
    let m = exe.metadata()?;
    let name = copy_name(&m);
    let dir = Path::new(COPIES);
    let path = dir.join(&name);
    let ready = |p: &Path| {
        File::open(p).is_ok_and(|f| read_only(&f) && f.metadata().is_ok_and(|c| c.len() == m.len()))
    };
    if ready(&path) {
        return Ok(path);
    }
    crate::sys::fs::private_dir(dir)?;
    let _lock = crate::sys::lock::FileLock::exclusive(&dir.join(".lock"), true)?;
    if ready(&path) {
        return Ok(path);
    }
    let tmp = dir.join(format!(".{name}.{}", std::process::id()));
    // Executable by all, as the installed binary is: the create hooks run it through
    // /proc/self/exe from inside a container whose user namespace does not map the host's
    // root (see runtime::hooks). Nobody reaches it by path (its directory is root's).
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o555)
        .open(&tmp)?;
    std::io::copy(exe, &mut out)?;
    drop(out);
    std::fs::rename(&tmp, &path)?;
    let none: Option<&str> = None;
    mount(Some(&path), &path, none, MsFlags::MS_BIND, none)?;
    let ro = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    if let Err(e) = mount(none, &path, none, ro, none) {
        let _ = nix::mount::umount(&path);
        let _ = std::fs::remove_file(&path);
        return Err(e.into());
    }
    // Which binary this is a copy of, so that a later sweep can tell a stale copy.
    if let Ok(src) = std::fs::read_link("/proc/self/exe") {
        let _ = std::fs::write(dir.join(format!("{name}.src")), src.as_os_str().as_bytes());
    }
    remove_stale_copies(dir, &name);
    Ok(path)
}

/// A copy's name: the binary's identity (device, inode, size, change time).
fn copy_name(m: &std::fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    format!(
        "vzrun-{:x}-{:x}-{:x}-{:x}.{:x}",
        m.dev(),
        m.ino(),
        m.size(),
        m.ctime(),
        m.ctime_nsec()
    )
}

/// Removes the copies of binaries that are gone or were replaced (a rebuild, an upgrade,
/// a deleted test copy), so copies and mounts do not pile up; copies of binaries still
/// installed stay. A process still running a removed copy keeps it: the mount is
/// detached lazily (still read-only for whoever holds it). Called with the lock held.
fn remove_stale_copies(dir: &Path, keep: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy().into_owned();
        if name == keep || !name.starts_with("vzrun-") || name.ends_with(".src") {
            continue;
        }
        let src = dir.join(format!("{name}.src"));
        let current = std::fs::read(&src)
            .ok()
            .and_then(|p| std::fs::metadata(std::ffi::OsStr::from_bytes(&p)).ok())
            .is_some_and(|m| copy_name(&m) == name);
        if current {
            continue;
        }
        let p = e.path();
        let _ = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_file(&p);
        let _ = std::fs::remove_file(&src);
    }
}

/// This process's arguments and environment, for the exec.
fn argv_envp() -> Result<(Vec<CString>, Vec<CString>), SealError> {
    let cstr = |b: &[u8]| CString::new(b).map_err(|e| failed("arguments")(e.into()));
    let args = std::env::args_os()
        .map(|a| cstr(a.as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    let env = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            cstr(&kv)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((args, env))
}

/// Re-executes this process from a copy of its binary that cannot be written, with the
/// same arguments and environment; returns only when it already runs from one.
pub fn ensure() -> Result<(), SealError> {
    let mut exe = File::open("/proc/self/exe").map_err(failed("open /proc/self/exe"))?;
    if sealed(&exe) || read_only(&exe) {
        return Ok(());
    }
    if let Ok(path) = read_only_copy(&mut exe) {
        let (args, env) = argv_envp()?;
        let target = CString::new(path.as_os_str().as_bytes())
            .map_err(|e| failed("copy's path")(e.into()))?;
        // Fails only when a newer binary's run removed this copy between the check and
        // the exec: the sealed memfd below serves this run instead.
        let _ = nix::unistd::execve(&target, &args, &env);
    }
    use std::io::Seek;
    exe.rewind().map_err(failed("read /proc/self/exe"))?;
    let copy: OwnedFd = memfd_create(
        c"vzrun",
        MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING,
    )
    .map_err(|e| failed("memfd_create")(e.into()))?;
    let mut copy = File::from(copy);
    std::io::copy(&mut exe, &mut copy).map_err(failed("copy the binary"))?;
    fcntl(copy.as_raw_fd(), FcntlArg::F_ADD_SEALS(SEALS))
        .map_err(|e| failed("seal the copy")(e.into()))?;
    let (args, env) = argv_envp()?;
    let e = nix::unistd::fexecve(copy.as_raw_fd(), &args, &env).unwrap_err();
    Err(failed("exec the copy")(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_binary_is_not_sealed() {
        // The harness runs from a file on disk; only a re-exec'd vzrun is sealed.
        assert!(!sealed(&File::open("/proc/self/exe").unwrap()));
    }
}
