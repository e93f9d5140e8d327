//! A terminal for `run` and `exec` when the process asks for one and the caller gave no
//! console socket: vzrun takes the pseudo-terminal master itself, as runc does, and
//! relays it to its own stdio.

use std::fs::File;
use std::io::{IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

/// A terminal step that failed, with the system's reason.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {source}")]
pub struct PtyError {
    step: String,
    source: std::io::Error,
}

type Result<T> = std::result::Result<T, PtyError>;

fn failed(step: impl Into<String>) -> impl FnOnce(std::io::Error) -> PtyError {
    let step = step.into();
    move |source| PtyError { step, source }
}
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use nix::sys::termios::{self, SetArg, Termios};

pub struct ConsoleSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ConsoleSocket {
    pub fn new(dir: &Path) -> Result<Self> {
        let path = dir.join(format!("console-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener =
            UnixListener::bind(&path).map_err(failed(format!("bind {}", path.display())))?;
        Ok(ConsoleSocket { listener, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the master end sent by the container's init.
    pub fn receive_master(&self) -> Result<OwnedFd> {
        let (stream, _) = self
            .listener
            .accept()
            .map_err(failed("accept console connection"))?;
        let mut buf = [0u8; 4096];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::empty(),
        )
        .map_err(|e| failed("receive console master")(e.into()))?;
        for cmsg in msg
            .cmsgs()
            .map_err(|e| failed("console message")(e.into()))?
        {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                if let Some(fd) = fds.first() {
                    // SAFETY: the kernel just installed this descriptor for us.
                    return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
                }
            }
        }
        Err(failed("console socket")(std::io::Error::other(
            "no file descriptor received",
        )))
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Puts our terminal in raw mode while relaying, and restores it afterwards.
struct RawGuard {
    saved: Termios,
}

impl Drop for RawGuard {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin(), SetArg::TCSANOW, &self.saved);
    }
}

/// Gives the terminal behind `master` the window size of vzrun's own terminal (stdin).
/// The kernel then sends SIGWINCH to the process group in the foreground of that
/// terminal, as it does for a window resized on a real one. Does nothing when stdin is no
/// terminal.
pub fn copy_winsize(master: BorrowedFd<'_>) {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ and TIOCSWINSZ on descriptors that are open for the duration of
    // the calls, each with a pointer to a winsize that outlives it (nix has no wrapper
    // for these two requests).
    unsafe {
        if libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws);
        }
    }
}

/// Relays stdin to the master and the master to stdout until the terminal closes
/// (all of the container's writers are gone).
pub fn relay(master: OwnedFd) -> Result<()> {
    let stdin = std::io::stdin();
    let _raw = match termios::tcgetattr(&stdin) {
        Ok(saved) => {
            let mut raw = saved.clone();
            termios::cfmakeraw(&mut raw);
            let _ = termios::tcsetattr(&stdin, SetArg::TCSANOW, &raw);
            copy_winsize(master.as_fd());
            Some(RawGuard { saved })
        }
        Err(_) => None,
    };
    let mut writer = File::from(master.try_clone().map_err(failed("dup console master"))?);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut input = std::io::stdin().lock();
        loop {
            match input.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if writer.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let mut reader = File::from(master);
    let mut out = std::io::stdout().lock();
    let mut buf = [0u8; 8192];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let _ = out.write_all(&buf[..n]);
                let _ = out.flush();
            }
            // EIO is how a pty master reports that the last slave fd closed.
            Err(_) => break,
        }
    }
    Ok(())
}
