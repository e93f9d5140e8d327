//! A client for CRIU's RPC service (`criu swrk`): one request per CRIU process, the
//! notifications it sends on the way answered by a callback, and the final response.
//!
//! rust-criu's `Criu` drives the same protocol, but it hides the CRIU process (restore
//! must put it into the VE's cgroup before CRIU forks the restored tasks, as runc does)
//! and drops the restore response with the restored pid. Its generated protobuf types are
//! used as they are.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType,
};
use protobuf::Message;
pub use rust_criu::rust_criu_protobuf::rpc;

#[derive(Debug, thiserror::Error)]
pub enum CriuError {
    #[error("criu not found (looked in PATH and /usr/local/sbin, /usr/sbin)")]
    NotFound,
    #[error("start {path}: {source}")]
    Spawn {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("criu rpc: {0}")]
    Rpc(String),
    #[error("criu failed{errno}{msg}", errno = errno_text(*.errno), msg = msg_text(.msg))]
    Failed { errno: i32, msg: String },
    #[error("{0}")]
    Notify(String),
}

fn errno_text(e: i32) -> String {
    if e == 0 {
        String::new()
    } else {
        format!(" (errno {e}: {})", nix::errno::Errno::from_raw(e).desc())
    }
}

fn msg_text(m: &str) -> String {
    if m.is_empty() {
        String::new()
    } else {
        format!(": {m}")
    }
}

/// The CRIU binary: `$VZRUN_CRIU`, then PATH, then the usual sbin directories (a root
/// shell started by a daemon may have a short PATH).
pub fn binary() -> Result<PathBuf, CriuError> {
    if let Some(p) = std::env::var_os("VZRUN_CRIU") {
        return Ok(PathBuf::from(p));
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for d in ["/usr/local/sbin", "/usr/sbin", "/sbin"] {
        dirs.push(PathBuf::from(d));
    }
    dirs.into_iter()
        .map(|d| d.join("criu"))
        .find(|p| is_executable(p))
        .ok_or(CriuError::NotFound)
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// What a notification handler gets: the script name and a
/// descriptor passed along with it (the console master on `orphan-pts-master`).
pub struct Notify<'a> {
    pub script: &'a str,
    pub fd: Option<OwnedFd>,
}

/// One CRIU request. `started` runs with the CRIU pid before the request is sent, while
/// CRIU waits (restore moves it into the VE's cgroup then); `notify` answers each
/// notification, an error aborts the operation.
pub fn call(
    req: rpc::Criu_req,
    keep_fds: &[RawFd],
    started: impl FnOnce(i32) -> Result<(), CriuError>,
    mut notify: impl FnMut(Notify) -> Result<(), CriuError>,
) -> Result<rpc::Criu_resp, CriuError> {
    let bin = binary()?;
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| CriuError::Rpc(format!("socketpair: {e}")))?;
    let their_fd = theirs.as_raw_fd();
    let mut inherit: Vec<RawFd> = keep_fds.to_vec();
    inherit.push(their_fd);
    let mut cmd = Command::new(&bin);
    cmd.arg("swrk")
        .arg(their_fd.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    // SAFETY: only fcntl(2) on descriptors we own, between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            for fd in &inherit {
                let flags = libc::fcntl(*fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(*fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|source| CriuError::Spawn {
        path: bin.clone(),
        source,
    })?;
    drop(theirs);
    let result = converse(&mut child, ours, req, started, &mut notify);
    if result.is_err() {
        let _ = child.kill();
    }
    let _ = child.wait();
    result
}

fn converse(
    child: &mut Child,
    sock: OwnedFd,
    req: rpc::Criu_req,
    started: impl FnOnce(i32) -> Result<(), CriuError>,
    notify: &mut impl FnMut(Notify) -> Result<(), CriuError>,
) -> Result<rpc::Criu_resp, CriuError> {
    started(child.id() as i32)?;
    let want = req.type_();
    let sock = UnixDatagram::from(sock);
    send(&sock, &req)?;
    loop {
        let (resp, fd) = receive(&sock)?;
        if resp.type_() == rpc::Criu_req_type::NOTIFY {
            let n = &resp.notify;
            let outcome = notify(Notify {
                script: n.script(),
                fd,
            });
            let mut ack = rpc::Criu_req::new();
            ack.set_type(rpc::Criu_req_type::NOTIFY);
            ack.set_notify_success(outcome.is_ok());
            send(&sock, &ack)?;
            outcome?;
            continue;
        }
        if !resp.success() {
            return Err(CriuError::Failed {
                errno: resp.cr_errno(),
                msg: resp.cr_errmsg().to_string(),
            });
        }
        if resp.type_() != want {
            return Err(CriuError::Rpc(format!(
                "unexpected response {:?} to {want:?}",
                resp.type_()
            )));
        }
        return Ok(resp);
    }
}

fn send(sock: &UnixDatagram, req: &rpc::Criu_req) -> Result<(), CriuError> {
    let bytes = req
        .write_to_bytes()
        .map_err(|e| CriuError::Rpc(e.to_string()))?;
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(&bytes)],
        &[],
        MsgFlags::empty(),
        None,
    )
    .map_err(|e| CriuError::Rpc(format!("send: {e}")))?;
    Ok(())
}

fn receive(sock: &UnixDatagram) -> Result<(rpc::Criu_resp, Option<OwnedFd>), CriuError> {
    // CRIU's messages are small; 64 KiB leaves room for a long error message.
    let mut buf = vec![0u8; 64 * 1024];
    let mut cmsg = nix::cmsg_space!(RawFd);
    let (len, fd) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| CriuError::Rpc(format!("receive: {e}")))?;
        let mut fd = None;
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmRights(fds) = c {
                    // SAFETY: the kernel just installed these descriptors for us.
                    fd = fds.first().map(|f| unsafe { OwnedFd::from_raw_fd(*f) });
                }
            }
        }
        (msg.bytes, fd)
    };
    if len == 0 {
        return Err(CriuError::Rpc(
            "criu closed the connection (see its log)".into(),
        ));
    }
    let resp = rpc::Criu_resp::parse_from_bytes(&buf[..len])
        .map_err(|e| CriuError::Rpc(format!("parse response: {e}")))?;
    Ok((resp, fd))
}

/// Whether CRIU is installed and `criu check` passes. The answer is cached beside the
/// binary's identity (path, size, mtime), so `features` stays fast and a reinstalled
/// CRIU is checked again.
pub fn available() -> bool {
    let Ok(bin) = binary() else { return false };
    let Ok(meta) = std::fs::metadata(&bin) else {
        return false;
    };
    let stamp = {
        use std::os::unix::fs::MetadataExt;
        format!(
            "{} {} {} {}",
            bin.display(),
            meta.len(),
            meta.mtime(),
            meta.mtime_nsec()
        )
    };
    let cache = cache_file();
    if let Ok(text) = std::fs::read_to_string(&cache) {
        if let Some((s, v)) = text.rsplit_once('\n') {
            if s == stamp {
                return v == "ok";
            }
        }
    }
    let ok = Command::new(&bin)
        .arg("check")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    let tmp = cache.with_extension(format!("tmp{}", std::process::id()));
    let verdict = if ok { "ok" } else { "failed" };
    if std::fs::write(&tmp, format!("{stamp}\n{verdict}")).is_ok() {
        let _ = std::fs::rename(&tmp, &cache);
    }
    ok
}

fn cache_file() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        PathBuf::from("/run/vzrun-criu-check")
    } else {
        std::env::temp_dir().join(format!("vzrun-criu-check-{}", nix::unistd::geteuid()))
    }
}

/// The error to show: CRIU's own message repeats the log's first error line, which the
/// log's tail names better, so it is dropped when there is a tail.
pub fn with_tail(err: CriuError, tail: &str) -> CriuError {
    match err {
        CriuError::Failed { errno, .. } if !tail.is_empty() => CriuError::Failed {
            errno,
            msg: String::new(),
        },
        e => e,
    }
}

/// The last error lines of a CRIU log, to name the cause in vzrun's own error.
pub fn log_tail(log: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(log) else {
        return String::new();
    };
    // CRIU's first error is often its failed attempt to raise RLIMIT_NOFILE (no
    // CAP_SYS_RESOURCE), which it survives: not a cause.
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("Error") && !l.contains("RLIMIT_NOFILE"))
        .collect();
    let picked: Vec<&str> = if errors.is_empty() {
        text.lines()
            .rev()
            .take(3)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect()
    } else {
        errors.iter().rev().take(3).rev().copied().collect()
    };
    picked
        .iter()
        .map(|l| l.trim())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_text_names_errno_and_message() {
        let e = CriuError::Failed {
            errno: libc::EPERM,
            msg: "x".into(),
        };
        assert_eq!(
            e.to_string(),
            "criu failed (errno 1: Operation not permitted): x"
        );
        let e = CriuError::Failed {
            errno: 0,
            msg: String::new(),
        };
        assert_eq!(e.to_string(), "criu failed");
    }

    #[test]
    fn log_tail_prefers_error_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.log");
        std::fs::write(&p, "a\n(00.1) Error (criu/a.c:1): one\nb\nc\n").unwrap();
        assert_eq!(log_tail(&p), "(00.1) Error (criu/a.c:1): one");
        std::fs::write(&p, "a\nb\nc\nd\n").unwrap();
        assert_eq!(log_tail(&p), "b; c; d");
    }
}
