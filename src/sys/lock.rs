//! Exclusive locks that stay with the process that took them. A POSIX record lock
//! (fcntl F_SETLKW) belongs to the locking process: a child forked afterwards (the
//! container's init, an exec's process, a hook, CRIU) holds the descriptor but not the
//! lock, so a killed vzrun never leaves its lock behind in a process it started. flock(2)
//! locks would travel with the inherited descriptor instead.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Held while it lives; released when dropped or when the process ends.
pub struct FileLock {
    file: File,
}

impl FileLock {
    /// Waits for the exclusive lock on the file at `path`, creating it (0600) if needed
    /// and `create` is set.
    pub fn exclusive(path: &Path, create: bool) -> std::io::Result<FileLock> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .mode(0o600)
            .open(path)?;
        let whole = libc::flock {
            l_type: libc::F_WRLCK as libc::c_short,
            l_whence: libc::SEEK_SET as libc::c_short,
            l_start: 0,
            l_len: 0,
            l_pid: 0,
        };
        loop {
            match fcntl(
                std::os::fd::AsRawFd::as_raw_fd(&file),
                FcntlArg::F_SETLKW(&whole),
            ) {
                Ok(_) => return Ok(FileLock { file }),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Whether the locked file was unlinked meanwhile (its holder removed what it locked).
    pub fn is_gone(&self) -> bool {
        self.file.metadata().map(|m| m.nlink() == 0).unwrap_or(true)
    }
}

/// Kills every other process that has the file at `path` open, until none is left or
/// `limit` has passed. A vzrun killed in the middle of a create leaves its forks running:
/// libcontainer's intermediate process and the container's init, which waits for a start
/// that never comes. They inherited the descriptor of the ID's lock file and hold it until
/// the init execs the container's process, so they are found here even before they joined
/// the container's cgroup (where a sweep of the cgroup alone would miss them).
pub fn kill_holders(path: &Path, limit: Duration) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let target = (meta.dev(), meta.ino());
    let start = Instant::now();
    let mut killed = Vec::new();
    loop {
        let found = holders(target);
        if found.is_empty() || start.elapsed() > limit {
            break;
        }
        for pid in found {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            killed.push(pid);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // A dying process closes its descriptors before it lets go of its namespaces: the
    // init's mount namespace (and with it the private area's mount and loop device) is
    // only gone once the process has finished exiting.
    while killed.iter().any(|&pid| exiting(pid)) && start.elapsed() <= limit {
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Whether `pid` still exists and has not yet become a zombie (or been reaped).
fn exiting(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        // The state follows the command name, which is in parentheses and may hold any
        // character: it is the first field after the last ')'.
        s.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// The processes other than this one with a descriptor open on the file `(dev, ino)`.
fn holders(target: (u64, u64)) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds
            .flatten()
            .any(|fd| std::fs::metadata(fd.path()).is_ok_and(|m| (m.dev(), m.ino()) == target));
        if holds {
            found.push(pid);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_holders_stops_a_process_holding_the_file_and_spares_others() {
        let dir = std::env::temp_dir().join(format!("vzrun-holders-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("lock");
        std::fs::write(&path, b"").unwrap();
        // The holder opens the file itself: a descriptor of this process's would be
        // inherited by whatever the other tests fork meanwhile (until it execs), which
        // would then be holders too, and be killed.
        let mut holder = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("exec sleep 60 < '{}'", path.display()))
            .spawn()
            .unwrap();
        let mut bystander = std::process::Command::new("sleep")
            .arg("60")
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        let target = (meta.dev(), meta.ino());
        let began = Instant::now();
        while holders(target).is_empty() && began.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
        // Not also held by this process here (as delete -f holds the ID's lock, which
        // `holders` leaves out by pid), for the same reason.
        kill_holders(&path, Duration::from_secs(5));
        let st = holder.wait().unwrap();
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&st), Some(9));
        assert!(bystander.try_wait().unwrap().is_none());
        let _ = bystander.kill();
        let _ = bystander.wait();
        let _ = std::fs::remove_dir_all(&dir);
    }
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult};

    /// In a forked child: 0 when nobody holds a write lock on `file`, 1 when one does.
    fn probe_in_child(file: &File) -> i32 {
        let mut probe = libc::flock {
            l_type: libc::F_WRLCK as libc::c_short,
            l_whence: libc::SEEK_SET as libc::c_short,
            l_start: 0,
            l_len: 0,
            l_pid: 0,
        };
        // SAFETY: the child only calls fcntl and _exit, both async-signal-safe.
        match unsafe { fork() }.unwrap() {
            ForkResult::Child => {
                let free = fcntl(
                    std::os::fd::AsRawFd::as_raw_fd(file),
                    FcntlArg::F_GETLK(&mut probe),
                )
                .is_ok()
                    && probe.l_type == libc::F_UNLCK as libc::c_short;
                // SAFETY: leaving the forked child without running the parent's destructors.
                unsafe { libc::_exit(if free { 0 } else { 1 }) }
            }
            ForkResult::Parent { child } => match waitpid(child, None).unwrap() {
                WaitStatus::Exited(_, code) => code,
                other => panic!("probe: {other:?}"),
            },
        }
    }

    #[test]
    fn the_lock_stays_with_the_process_not_with_inherited_descriptors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lock");
        let held = FileLock::exclusive(&p, true).unwrap();
        let look = File::open(&p).unwrap();
        assert_eq!(probe_in_child(&look), 1, "another process sees the lock");
        // A child forked now (as libcontainer forks the init) keeps the descriptor open
        // after we let go; the lock must go with us all the same.
        // SAFETY: the child only sleeps and exits.
        let keeper = match unsafe { fork() }.unwrap() {
            ForkResult::Child => unsafe {
                libc::sleep(5);
                libc::_exit(0)
            },
            ForkResult::Parent { child } => child,
        };
        drop(held);
        assert_eq!(
            probe_in_child(&look),
            0,
            "the lock was left in the forked child"
        );
        let again = FileLock::exclusive(&p, false).unwrap();
        assert!(!again.is_gone());
        std::fs::remove_file(&p).unwrap();
        assert!(again.is_gone());
        let _ = nix::sys::signal::kill(keeper, nix::sys::signal::SIGKILL);
        let _ = waitpid(keeper, None);
    }
}
