//! File access that must not be led astray by what a container controls (paths resolved
//! with the kernel's openat2 rules: inside a root, beneath a directory, no magic links),
//! and directories only root can enter.

use std::fs::{DirBuilder, File};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

/// Opens `path` relative to `dir` under the resolve rules given (`RESOLVE_IN_ROOT` to
/// treat `dir` as "/", `RESOLVE_BENEATH` to refuse escaping it).
pub fn open_at(
    dir: &File,
    path: &Path,
    flags: OFlag,
    mode: Mode,
    resolve: ResolveFlag,
) -> std::io::Result<File> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .mode(mode)
        .resolve(resolve);
    let fd = openat2(dir.as_raw_fd(), path, how)?;
    // SAFETY: openat2 just returned this descriptor, and nothing else owns it.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Opens the directory at `path` (O_PATH) refusing any symbolic link on the way.
pub fn open_dir_nofollow(path: &Path) -> std::io::Result<File> {
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS);
    let fd = openat2(libc::AT_FDCWD, path, how)?;
    // SAFETY: openat2 just returned this descriptor, and nothing else owns it.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Makes `path` (and missing parents) as a directory only root can enter: 0700 whatever
/// the umask, also when it already existed with a looser mode.
pub fn private_dir(path: &Path) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
}

/// Makes the one directory `path` (its parent must exist), 0700 whatever the umask;
/// fails if it exists (the atomic "this name is taken" step).
pub fn private_dir_new(path: &Path) -> std::io::Result<()> {
    DirBuilder::new().mode(0o700).create(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
}
