//! File access that must not be led astray by what a container controls: paths resolved
//! with the kernel's openat2 rules (inside a root, beneath a directory, no magic links).

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
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
