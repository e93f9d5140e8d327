//! Mounts made from the host into a container that already runs: a detached copy of a
//! host file's mount (`open_tree`), made read-only (`mount_setattr`) and attached in the
//! container's mount namespace (`move_mount`), a few system calls a bind. nix 0.29 has no
//! wrapper for these three (Linux 5.2/5.12), hence the raw calls below.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::fcntl::{OFlag, ResolveFlag};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::stat::Mode;

// From <linux/mount.h>; libc 0.2 does not carry them.
const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x04;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
const MOUNT_ATTR_RDONLY: u64 = 0x01;

/// `struct mount_attr` (MOUNT_ATTR_SIZE_VER0, 32 bytes).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn path_cstr(path: &Path) -> io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path has a NUL byte"))
}

/// A detached, read-only copy of the mount at `path` (a bind of that one file or
/// directory), not yet attached anywhere: dropping it unmounts it.
pub fn readonly_clone(path: &Path) -> io::Result<OwnedFd> {
    let c = path_cstr(path)?;
    // SAFETY: open_tree reads the NUL-terminated path and returns a new descriptor (or
    // -1); nothing else owns that descriptor.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor from open_tree, owned from here on.
    let tree = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let empty = c"";
    // SAFETY: mount_setattr reads `attr` (its size passed along) and the empty path; the
    // descriptor is the tree just made.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(tree)
}

/// Attaches a detached tree over `target` (an O_PATH descriptor); the caller must be in
/// the target's mount namespace.
fn attach(tree: &OwnedFd, target: &File) -> io::Result<()> {
    let empty = c"";
    // SAFETY: move_mount takes two descriptors the caller owns and two empty paths.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            target.as_raw_fd(),
            empty.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `f` on a thread of its own that has entered the mount namespace of process
/// `pid`; vzrun's other threads stay where they are.
pub fn in_mount_ns_of<T: Send>(
    pid: i32,
    f: impl FnOnce() -> io::Result<T> + Send,
) -> io::Result<T> {
    let ns = File::open(format!("/proc/{pid}/ns/mnt"))?;
    std::thread::scope(|s| {
        s.spawn(move || {
            // setns(CLONE_NEWNS) refuses a thread that shares its root and cwd.
            unshare(CloneFlags::CLONE_FS)?;
            setns(ns.as_fd(), CloneFlags::CLONE_NEWNS)?;
            f()
        })
        .join()
        .map_err(|_| io::Error::other("the thread in the container's mount namespace panicked"))?
    })
}

/// What [`bind_into`] did with one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    Done,
    /// The host has no such file to bind (an older LXCFS serves fewer).
    NoSource,
    /// The container has no such file to bind over (e.g. no /sys mounted).
    NoTarget,
}

/// Binds each host path of `binds` read-only over its path inside the root of process
/// `pid` (a path as the container sees it). The target is resolved inside that root and
/// no symbolic link is followed, so nothing in the image can point a bind elsewhere.
pub fn bind_into(pid: i32, binds: &[(&Path, &Path)]) -> io::Result<Vec<Bound>> {
    // Taken in the host's namespace, where the sources are; the root through /proc
    // names the container's root whether it pivoted or chrooted (--no-pivot).
    let trees = binds
        .iter()
        .map(|(src, _)| match readonly_clone(src) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        })
        .collect::<io::Result<Vec<_>>>()?;
    let root = File::open(format!("/proc/{pid}/root"))?;
    in_mount_ns_of(pid, move || {
        let mut done = Vec::with_capacity(binds.len());
        for (tree, (_, dest)) in trees.iter().zip(binds) {
            let Some(tree) = tree else {
                done.push(Bound::NoSource);
                continue;
            };
            let target = match crate::sys::fs::open_at(
                &root,
                dest,
                OFlag::O_PATH | OFlag::O_NOFOLLOW,
                Mode::empty(),
                ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_SYMLINKS,
            ) {
                Ok(t) => t,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    done.push(Bound::NoTarget);
                    continue;
                }
                Err(e) => return Err(e),
            };
            attach(tree, &target)?;
            done.push(Bound::Done);
        }
        Ok(done)
    })
}
