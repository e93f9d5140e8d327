//! File access that must not be led astray by what a container controls (paths resolved
//! with the kernel's openat2 rules: inside a root, beneath a directory, no magic links),
//! and directories only root can enter.

use std::fs::{DirBuilder, File};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
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

/// Makes the directory `path` as the container will see it: `path` is resolved inside
/// `root` (a symbolic link in the image points within the image, never onto the host),
/// and missing components are made one at a time, each beneath the one before.
pub fn mkdir_in_root(root: &Path, path: &Path) -> std::io::Result<()> {
    let root_dir = open_dir_nofollow(root)?;
    mkdir_all_in_root(root_dir.as_fd(), path, Mode::from_bits_truncate(0o755)).map(drop)
}

/// The resolve rules of a path inside a container's tree: links and `..` stay in the
/// root, and no /proc magic link (whose target the kernel, not the path, names).
const IN_ROOT: ResolveFlag = ResolveFlag::RESOLVE_IN_ROOT.union(ResolveFlag::RESOLVE_NO_MAGICLINKS);

/// `path` made relative and lexically clean as inside "/": `.` dropped, `..` takes off
/// the name before it and stays at the top (runc cleans a destination so before it
/// resolves it). Empty for the root itself.
pub fn clean_in_root(path: &Path) -> std::path::PathBuf {
    use std::path::Component;
    let mut out = std::path::PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// Opens `path` inside the tree `root` (an O_PATH descriptor of it) as a bare handle
/// (O_PATH, plus `flags` such as O_DIRECTORY or O_NOFOLLOW), links resolved as the
/// container sees them.
pub fn open_in_root(root: BorrowedFd, path: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
    let rel = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path.strip_prefix("/").unwrap_or(path)
    };
    let how = OpenHow::new()
        .flags(flags | OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(IN_ROOT);
    let fd = openat2(root.as_raw_fd(), rel, how)?;
    // SAFETY: openat2 just returned this descriptor, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The directory `path` inside the tree `root` (an O_PATH descriptor of it), as a bare
/// handle: opened in one call when it exists; otherwise the missing directories are made
/// with `mode` one at a time, each in a directory found inside the root, so a link in the
/// image can lead a name elsewhere in the image but never out of it. `..` in `path` is
/// taken lexically ([`clean_in_root`]).
pub fn mkdir_all_in_root(root: BorrowedFd, path: &Path, mode: Mode) -> std::io::Result<OwnedFd> {
    use std::path::Component;
    let path = clean_in_root(path);
    match open_in_root(root, &path, OFlag::O_DIRECTORY) {
        Err(nix::errno::Errno::ENOENT) => {}
        other => return Ok(other?),
    }
    // As runc's securejoin: the names are taken one at a time from a directory reached
    // so far that holds no link (`so_far`); a link in the image is replaced by its
    // target's names (from the top for an absolute one), so a link to a place that does
    // not exist yet has that place made, inside the root, and `..` after it climbs from
    // where the link led.
    let mut rest: std::collections::VecDeque<std::ffi::OsString> =
        path.iter().map(|n| n.to_os_string()).collect();
    let mut so_far = std::path::PathBuf::new();
    let mut links = 0;
    while let Some(name) = rest.pop_front() {
        if name == ".." {
            so_far.pop();
            continue;
        }
        if name == "." || name.is_empty() {
            continue;
        }
        let at = open_in_root(root, &so_far, OFlag::O_DIRECTORY)?;
        if let Ok(target) = nix::fcntl::readlinkat(Some(at.as_raw_fd()), name.as_os_str()) {
            links += 1;
            if links > 255 {
                return Err(nix::errno::Errno::ELOOP.into());
            }
            let target = Path::new(&target);
            if target.is_absolute() {
                so_far.clear();
            }
            for c in target.components().rev() {
                match c {
                    Component::Normal(n) => rest.push_front(n.to_os_string()),
                    Component::ParentDir => rest.push_front("..".into()),
                    _ => {}
                }
            }
            continue;
        }
        match nix::sys::stat::mkdirat(Some(at.as_raw_fd()), name.as_os_str(), mode) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(e.into()),
        }
        so_far.push(&name);
    }
    // What now stands there (made here, or found) must be a directory inside the root.
    Ok(open_in_root(root, &so_far, OFlag::O_DIRECTORY)?)
}

/// What stands at `path` inside the tree `root` (an O_PATH descriptor of it), as a bare
/// handle; when nothing does, an empty file made first (`mode`, never through a link in
/// the last name), its missing parents made as by [`mkdir_all_in_root`]. A link at `path`
/// is followed inside the root.
pub fn file_in_root(root: BorrowedFd, path: &Path, mode: Mode) -> std::io::Result<OwnedFd> {
    let path = clean_in_root(path);
    match open_in_root(root, &path, OFlag::empty()) {
        Err(nix::errno::Errno::ENOENT) => {}
        other => return Ok(other?),
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(nix::errno::Errno::EINVAL.into());
    };
    let parent = mkdir_all_in_root(root, dir, Mode::from_bits_truncate(0o755))?;
    match nix::fcntl::openat(
        Some(parent.as_raw_fd()),
        name,
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        mode,
    ) {
        // SAFETY: openat just returned this descriptor, and nothing else owns it.
        Ok(fd) => drop(unsafe { OwnedFd::from_raw_fd(fd) }),
        Err(nix::errno::Errno::EEXIST) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(open_in_root(root, &path, OFlag::empty())?)
}

/// Makes the empty file `name` in the directory `parent` of the container's tree at
/// `root`, `parent` resolved inside `root` (see [`mkdir_in_root`] for directories);
/// nothing is done when something already stands there.
pub fn touch_in_root(root: &Path, parent: &Path, name: &std::ffi::OsStr) -> std::io::Result<()> {
    let root_dir = open_dir_nofollow(root)?;
    let at = open_at(
        &root_dir,
        &Path::new(".").join(parent.strip_prefix("/").unwrap_or(parent)),
        OFlag::O_PATH | OFlag::O_DIRECTORY,
        Mode::empty(),
        ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS,
    )?;
    let made = nix::fcntl::openat(
        Some(at.as_raw_fd()),
        name,
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )
    // SAFETY: openat just returned this descriptor, and nothing else owns it.
    .map(|fd| drop(unsafe { OwnedFd::from_raw_fd(fd) }));
    match made {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Where `path` lands inside `root` once its symbolic links are followed as the
/// container sees them (an absolute link and `..` never leave `root`); the part that does
/// not exist yet is kept as written. The result is absolute, relative to `root`. This is
/// the name a mount made at `path` has in the container's mount table (runc names CRIU's
/// external bind mounts by it: filepath-securejoin's rules).
pub fn resolve_in_root(root: &Path, path: &Path) -> std::path::PathBuf {
    use std::path::{Component, PathBuf};
    // The components still to walk, last first; a link's target is pushed in front.
    let mut todo: Vec<std::ffi::OsString> = Vec::new();
    let push = |todo: &mut Vec<std::ffi::OsString>, p: &Path| {
        for c in p.components().rev() {
            match c {
                Component::Normal(n) => todo.push(n.to_os_string()),
                Component::ParentDir => todo.push("..".into()),
                _ => {}
            }
        }
    };
    push(&mut todo, path);
    let mut done = PathBuf::from("/");
    // Linux's own bound on links followed in one lookup (ELOOP past it).
    let mut hops = 0;
    while let Some(name) = todo.pop() {
        if name == ".." {
            done.pop();
            continue;
        }
        let next = done.join(&name);
        let on_host = root.join(next.strip_prefix("/").unwrap_or(&next));
        match std::fs::read_link(&on_host) {
            Ok(target) if hops < 40 => {
                hops += 1;
                if target.is_absolute() {
                    done = PathBuf::from("/");
                }
                push(&mut todo, &target);
            }
            _ => done = next,
        }
    }
    done
}

/// The most vzrun reads of a small file someone else writes (a VE's resolv.conf or
/// passwd): far more than such a file holds, little enough to hold in memory.
pub const SMALL_FILE_MAX: u64 = 1 << 20;

/// Opens `path` beneath the directory `dir` (resolved with `resolve`) only if it is a
/// regular file on `dir`'s own mount (links followed within `resolve`'s rules): first
/// as a bare handle (O_PATH), whose mount and type are checked, then opened
/// again through that handle with `flags`. A device node, FIFO or socket put there is
/// never opened, so no driver's open runs and nothing waits for a writer; nor is a file
/// of another filesystem a link leads to, such as the VE's /proc (its kmsg is a regular
/// file whose read, as host root, waits for the kernel's next message and takes it from
/// the host's log reader; its sysrq-trigger takes writes) or a FUSE mount of the VE's,
/// whose daemon may never answer. With O_CREAT in `flags`, a missing file is made
/// (exclusively: whatever appears in its place in the meantime is refused) with `mode`.
pub fn open_regular_at(
    dir: &File,
    path: &Path,
    flags: OFlag,
    mode: Mode,
    resolve: ResolveFlag,
) -> std::io::Result<File> {
    let handle = match open_at(dir, path, OFlag::O_PATH, Mode::empty(), resolve) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) && flags.contains(OFlag::O_CREAT) => {
            let made = open_at(dir, path, flags | OFlag::O_EXCL, mode, resolve)?;
            return Ok(made);
        }
        other => other?,
    };
    // The mount first, from the descriptors' fdinfo: asking the file itself (a stat)
    // would ask a FUSE daemon. The device would not do: overlayfs gives a file the device
    // of the layer it comes from.
    if mount_id(&handle)? != mount_id(dir)? {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "{} is on another mount than the root it was looked up in",
                path.display()
            ),
        ));
    }
    if !handle.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", path.display()),
        ));
    }
    reopen(&handle, flags - OFlag::O_CREAT - OFlag::O_EXCL)
}

/// The inode a bare handle (O_PATH) holds, opened with `flags` (without blocking, and
/// never as a controlling terminal) through the handle's magic link: the name it was
/// found by may have been swapped since, the inode cannot.
pub fn reopen(handle: &File, flags: OFlag) -> std::io::Result<File> {
    let again = format!("/proc/thread-self/fd/{}", handle.as_raw_fd());
    let how = OpenHow::new().flags(flags | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK);
    let fd = openat2(libc::AT_FDCWD, again.as_str(), how)?;
    // SAFETY: openat2 just returned this descriptor, and nothing else owns it.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// The ID of the mount an open descriptor is on, as its fdinfo gives it.
fn mount_id(f: &File) -> std::io::Result<u64> {
    let info = std::fs::read_to_string(format!("/proc/thread-self/fdinfo/{}", f.as_raw_fd()))?;
    info.lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| std::io::Error::other("fdinfo has no mnt_id"))
}

/// Reads all of `file`, refusing one of more than `max` bytes (named `what`) instead of
/// reading on: the file may be another party's to make as large as it likes.
pub fn read_at_most(mut file: File, max: u64, what: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    (&mut file).take(max + 1).read_to_end(&mut out)?;
    if out.len() as u64 > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} is larger than {max} bytes", what.display()),
        ));
    }
    Ok(out)
}

/// Reads a file as the container will see it: `path` resolved inside `root`.
pub fn read_in_root(root: &Path, path: &Path) -> std::io::Result<Vec<u8>> {
    let root_dir = open_dir_nofollow(root)?;
    let f = open_regular_at(
        &root_dir,
        path.strip_prefix("/").unwrap_or(path),
        OFlag::O_RDONLY,
        Mode::empty(),
        ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS,
    )?;
    read_at_most(f, SMALL_FILE_MAX, path)
}

/// Writes `items` as a JSON list to `path` beside a checkpoint's images, or removes an
/// old one when there are none (a directory dumped into again keeps no stale list).
pub fn save_json_list<T: serde::Serialize>(path: &Path, items: &[T]) -> std::io::Result<()> {
    if items.is_empty() {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    let text = serde_json::to_vec(items).map_err(std::io::Error::other)?;
    std::fs::write(path, text)
}

/// A pid file that could not be written, in runc's words (`open DIR/.NAME: no such file
/// or directory`).
#[derive(Debug, thiserror::Error)]
#[error("{op} {path}: {reason}")]
pub struct PidFileError {
    op: &'static str,
    path: std::path::PathBuf,
    reason: String,
}

/// Writes `pid` to `path` as runc does: into `.NAME` beside it, made exclusively, then
/// renamed over `path`, so a reader never sees half a number. `path` should be absolute
/// (runc makes it so before it starts anything).
pub fn write_pid_file(path: &Path, pid: i32) -> Result<(), PidFileError> {
    use std::io::Write;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}"));
    let fail = |op, p: &Path, e: std::io::Error| PidFileError {
        op,
        path: p.to_path_buf(),
        reason: crate::sys::errno::io_words(&e),
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| fail("open", &tmp, e))?;
    let written = f
        .write_all(pid.to_string().as_bytes())
        .and_then(|()| f.sync_all());
    drop(f);
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail("write", path, e));
    }
    Ok(())
}

/// runc's check of `--preserve-fds N`: the N descriptors after stdio are open, in its
/// words when one is not.
pub fn check_preserved_fds(n: i32) -> Result<(), String> {
    for i in 0..n.max(0) {
        let fd = 3 + i;
        if nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).is_err() {
            return Err(format!(
                "unable to stat preserved-fd {i} (of {n}): stat /proc/self/fd/{fd}: no such file or directory"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_resolve_inside_the_root() {
        use std::os::unix::fs::symlink;
        use std::path::PathBuf;
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("mnt/data")).unwrap();
        symlink("/mnt/data", r.join("data")).unwrap();
        symlink("../mnt", r.join("up")).unwrap();
        symlink("../../../../etc", r.join("escape")).unwrap();
        symlink("loop", r.join("loop")).unwrap();
        let at = |p: &str| resolve_in_root(r, Path::new(p));
        assert_eq!(at("/data"), PathBuf::from("/mnt/data"));
        assert_eq!(at("/data/new/x"), PathBuf::from("/mnt/data/new/x"));
        assert_eq!(at("/up/data"), PathBuf::from("/mnt/data"));
        assert_eq!(at("/escape/passwd"), PathBuf::from("/etc/passwd"));
        assert_eq!(at("/plain"), PathBuf::from("/plain"));
        assert_eq!(at("/loop"), PathBuf::from("/loop"));
    }

    #[test]
    fn dirs_and_files_are_made_inside_the_root_from_its_descriptor() {
        use std::os::unix::fs::symlink;
        let root = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        let r = root.path();
        let fd = open_dir_nofollow(r).unwrap();
        let mode = Mode::from_bits_truncate(0o755);
        // `..` is lexical and stays at the top.
        mkdir_all_in_root(fd.as_fd(), Path::new("/../a/../b/c"), mode).unwrap();
        assert!(r.join("b/c").is_dir() && !r.join("a").exists());
        // Through a link inside the image (absolute, and up and out with ..).
        std::fs::create_dir(r.join("real")).unwrap();
        symlink("/real", r.join("abs")).unwrap();
        symlink("../../../../real", r.join("up")).unwrap();
        mkdir_all_in_root(fd.as_fd(), Path::new("abs/x"), mode).unwrap();
        file_in_root(
            fd.as_fd(),
            Path::new("/up/y/file"),
            Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        assert!(r.join("real/x").is_dir() && r.join("real/y/file").is_file());
        // A link to the host leads to the same path inside the image: made there, as
        // runc's securejoin makes it, and nothing on the host.
        symlink(host.path(), r.join("out")).unwrap();
        mkdir_all_in_root(fd.as_fd(), Path::new("out/z"), mode).unwrap();
        file_in_root(fd.as_fd(), Path::new("out/f"), mode).unwrap();
        let inside = r.join(host.path().strip_prefix("/").unwrap());
        assert!(inside.join("z").is_dir() && inside.join("f").is_file());
        assert_eq!(std::fs::read_dir(host.path()).unwrap().count(), 0);
        // A link to itself, or round in a circle, ends.
        symlink("loop2", r.join("loop1")).unwrap();
        symlink("loop1", r.join("loop2")).unwrap();
        assert!(mkdir_all_in_root(fd.as_fd(), Path::new("loop1/x"), mode).is_err());
        // A file where a directory is wanted.
        std::fs::write(r.join("plain"), "").unwrap();
        assert!(mkdir_all_in_root(fd.as_fd(), Path::new("plain/d"), mode).is_err());
    }

    #[test]
    fn pid_file_is_whole_and_its_failure_in_runcs_words() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pid");
        std::fs::write(&path, "stale").unwrap();
        write_pid_file(&path, 42).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "42");
        assert!(
            !dir.path().join(".pid").exists(),
            "the temporary file stayed"
        );
        let missing = dir.path().join("none/pid");
        let err = write_pid_file(&missing, 42).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "open {}: no such file or directory",
                dir.path().join("none/.pid").display()
            )
        );
    }

    #[test]
    fn links_in_an_image_stay_in_the_image() {
        let root = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        // An image whose /work points at an absolute path: inside the root that is
        // root/<host path>, never the host's directory.
        std::os::unix::fs::symlink(host.path(), root.path().join("work")).unwrap();
        // root/<host path> does not exist: made there (as runc makes a cwd), never on
        // the host.
        mkdir_in_root(root.path(), Path::new("/work/sub")).unwrap();
        assert!(!host.path().join("sub").exists(), "made on the host");
        let inside = root.path().join(host.path().strip_prefix("/").unwrap());
        assert!(inside.join("sub").is_dir());
        // Links that stay inside are followed as the container would.
        std::fs::create_dir(root.path().join("a")).unwrap();
        std::os::unix::fs::symlink("/a", root.path().join("link")).unwrap();
        mkdir_in_root(root.path(), Path::new("/link/d/e")).unwrap();
        assert!(root.path().join("a/d/e").is_dir());
        std::fs::write(host.path().join("secret"), "host").unwrap();
        std::os::unix::fs::symlink(host.path().join("secret"), root.path().join("leak")).unwrap();
        assert!(read_in_root(root.path(), Path::new("/leak")).is_err());
        std::fs::write(root.path().join("mine"), "ve").unwrap();
        assert_eq!(
            read_in_root(root.path(), Path::new("/mine")).unwrap(),
            b"ve"
        );
    }
}
