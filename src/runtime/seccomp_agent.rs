//! The seccomp agent hand-off of `SCMP_ACT_NOTIFY` profiles, as runc does it: the
//! container process installs its filter with a listener, tells the runtime the
//! listener's fd number, and waits; the runtime takes the fd out of the process
//! (pidfd_getfd), connects to `listenerPath`, sends the container process state with the
//! fd attached (SCM_RIGHTS) and lets the process go on.
//!
//! The process talks to the runtime over a socketpair made before libcontainer forks (its
//! end is inherited, close-on-exec, so it never reaches the container's program). It
//! writes its fd number with write(2), which a notify profile may not notify (runc's rule):
//! a notified read or close of the reply is answered by the agent, which has the fd by
//! then. The runtime end has SO_PASSCRED, so the kernel tells the runtime the writer's pid
//! as the host sees it, which the process itself cannot know inside its pid namespace.

use std::collections::HashMap;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use nix::errno::Errno;
use nix::sys::socket::{self, sockopt, ControlMessage, ControlMessageOwned, MsgFlags};
use serde::Serialize;

/// The reply that lets the process go on; anything else fails it. A failure is said
/// rather than left to a closed channel: the process inherited the runtime's end too, so
/// it would never see the end of the stream.
const GO_ON: u8 = b'K';
const GIVE_UP: u8 = b'E';

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("seccomp agent channel: {0}")]
    Channel(Errno),
    #[error("receive the seccomp fd from the container process: {0}")]
    Receive(String),
    #[error("pidfd_getfd: {0}")]
    GetFd(Errno),
    // runc's words: callers see Go's "dial unix PATH: connect: ERROR".
    #[error(
        "failed to connect with seccomp agent specified in the seccomp profile: dial unix {}: connect: {}",
        path.display(),
        crate::sys::errno::words(*errno)
    )]
    Connect { path: PathBuf, errno: Errno },
    #[error("cannot send seccomp fd to {}: {}", path.display(), crate::sys::errno::words(*errno))]
    Send { path: PathBuf, errno: Errno },
}

/// Who the agent is told about: `ContainerProcessState` of runtime-spec without the pid,
/// which is learnt from the kernel when the process writes.
#[derive(Clone, Default)]
pub struct AgentState {
    pub listener: PathBuf,
    pub metadata: String,
    pub id: String,
    /// `creating` for the init (runc hands the fd over during create), `running` for an
    /// exec'd process.
    pub status: &'static str,
    /// The caller's bundle.
    pub bundle: PathBuf,
    pub annotations: HashMap<String, String>,
    /// The container's init, for an exec'd process; the process itself otherwise.
    pub init_pid: Option<i32>,
}

/// runtime-spec's ContainerProcessState, in runc's field order and with its omissions.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProcessState<'a> {
    oci_version: &'static str,
    fds: [&'static str; 1],
    pid: i32,
    #[serde(skip_serializing_if = "str::is_empty")]
    metadata: &'a str,
    state: State<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct State<'a> {
    oci_version: &'static str,
    id: &'a str,
    status: &'static str,
    pid: i32,
    bundle: &'a Path,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    annotations: &'a HashMap<String, String>,
}

impl AgentState {
    fn message(&self, pid: i32) -> Vec<u8> {
        let doc = ProcessState {
            oci_version: crate::runtime::state::OCI_VERSION,
            fds: ["seccompFd"],
            pid,
            metadata: &self.metadata,
            state: State {
                oci_version: crate::runtime::state::OCI_VERSION,
                id: &self.id,
                status: self.status,
                pid: self.init_pid.unwrap_or(pid),
                bundle: &self.bundle,
                annotations: &self.annotations,
            },
        };
        // Strings, numbers and a map of strings: serialising cannot fail.
        serde_json::to_vec(&doc).unwrap_or_default()
    }
}

/// The runtime's side: a thread that waits for the process's fd and hands it on.
pub struct Relay {
    failed: mpsc::Receiver<AgentError>,
    thread: std::thread::JoinHandle<()>,
}

/// Makes the channel and starts the relay; the returned fd is the process's end.
pub fn start(state: AgentState) -> Result<(Relay, OwnedFd), AgentError> {
    let (ours, theirs) = socket::socketpair(
        socket::AddressFamily::Unix,
        socket::SockType::Stream,
        None,
        socket::SockFlag::SOCK_CLOEXEC,
    )
    .map_err(AgentError::Channel)?;
    socket::setsockopt(&ours, sockopt::PassCred, &true).map_err(AgentError::Channel)?;
    let (tx, failed) = mpsc::channel();
    // libcontainer forks while this thread waits: it allocates nothing of its own until
    // the process has written, after the last fork.
    let space = nix::cmsg_space!(socket::UnixCredentials);
    let thread = std::thread::spawn(move || relay(ours, space, &state, &tx));
    Ok((Relay { failed, thread }, theirs))
}

impl Relay {
    /// What came of the hand-off once libcontainer's build returned. After a successful
    /// build the process has been let go, so the thread is done; after a failed one it may
    /// still wait for a process that never wrote, and is left to end with vzrun. A
    /// failure is reported before the process is told, so it is seen here.
    pub fn finish(self, built: bool) -> Result<(), AgentError> {
        if let Ok(e) = self.failed.try_recv() {
            return Err(e);
        }
        if built {
            let _ = self.thread.join();
        }
        Ok(())
    }
}

fn relay(ours: OwnedFd, space: Vec<u8>, state: &AgentState, failed: &mpsc::Sender<AgentError>) {
    match hand_on(&ours, space, state) {
        // The process ended (or never installed its filter): nobody to answer.
        Ok(false) => {}
        Ok(true) => {
            let _ = nix::unistd::write(&ours, &[GO_ON]);
        }
        Err(e) => {
            let _ = failed.send(e);
            let _ = nix::unistd::write(&ours, &[GIVE_UP]);
        }
    }
}

/// Receives the fd number and the writer's pid, takes the fd and sends it to the agent.
fn hand_on(ours: &OwnedFd, mut space: Vec<u8>, state: &AgentState) -> Result<bool, AgentError> {
    let mut buf = [0u8; 32];
    let (bytes, pid) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = loop {
            match socket::recvmsg::<()>(
                ours.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Err(Errno::EINTR) => continue,
                other => break other,
            }
        }
        .map_err(|e| AgentError::Receive(crate::sys::errno::words(e)))?;
        let pid = msg
            .cmsgs()
            .map_err(|e| AgentError::Receive(crate::sys::errno::words(e)))?
            .find_map(|c| match c {
                ControlMessageOwned::ScmCredentials(cred) => Some(cred.pid()),
                _ => None,
            });
        (msg.bytes, pid)
    };
    if bytes == 0 {
        return Ok(false);
    }
    let pid = pid.ok_or_else(|| AgentError::Receive("no credentials".into()))?;
    let fd_nr: RawFd = std::str::from_utf8(&buf[..bytes])
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .ok_or_else(|| AgentError::Receive(format!("bad fd number {:?}", &buf[..bytes])))?;
    let notify = take_fd(pid, fd_nr)?;
    send(state, pid, notify.as_fd())?;
    Ok(true)
}

/// Duplicates fd `nr` of process `pid` into vzrun (runc does the same).
fn take_fd(pid: i32, nr: RawFd) -> Result<OwnedFd, AgentError> {
    let pidfd = crate::sys::process::pidfd_open(pid).map_err(AgentError::GetFd)?;
    // SAFETY: pidfd_getfd (no nix wrapper) only returns a new fd, taken into an OwnedFd
    // at once.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), nr, 0) };
    if fd < 0 {
        return Err(AgentError::GetFd(Errno::last()));
    }
    // SAFETY: as above.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Connects to the agent (a relative path from where the caller stands, as in runc) and
/// sends the state with the fd; the connection is closed right after, as the spec asks.
fn send(state: &AgentState, pid: i32, notify: BorrowedFd) -> Result<(), AgentError> {
    let path = &state.listener;
    let conn = UnixStream::connect(path).map_err(|e| AgentError::Connect {
        path: path.clone(),
        errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EINVAL)),
    })?;
    let msg = state.message(pid);
    let fds = [notify.as_raw_fd()];
    socket::sendmsg::<()>(
        conn.as_raw_fd(),
        &[IoSlice::new(&msg)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(|errno| AgentError::Send {
        path: path.clone(),
        errno,
    })?;
    Ok(())
}

/// The process's side, after its filter is in force: tells the runtime the listener's fd
/// number and waits until the agent has it. The listener is closed afterwards either way.
pub fn hand_over(theirs: BorrowedFd, listener: OwnedFd) -> Result<(), String> {
    let nr = format!("{}\n", listener.as_raw_fd());
    nix::unistd::write(theirs, nr.as_bytes()).map_err(|e| {
        format!(
            "tell the runtime the seccomp fd: {}",
            crate::sys::errno::words(e)
        )
    })?;
    let mut reply = [0u8; 1];
    let got = loop {
        match nix::unistd::read(theirs.as_raw_fd(), &mut reply) {
            Err(Errno::EINTR) => continue,
            other => break other,
        }
    };
    drop(listener);
    match got {
        Ok(1) if reply[0] == GO_ON => Ok(()),
        _ => Err("the seccomp agent was not handed the notify fd".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_has_runcs_shape() {
        let mut st = AgentState {
            listener: "/a".into(),
            metadata: String::new(),
            id: "c1".into(),
            status: "running",
            bundle: "/b".into(),
            annotations: HashMap::new(),
            init_pid: Some(10),
        };
        let v: serde_json::Value = serde_json::from_slice(&st.message(20)).unwrap();
        assert_eq!(v["pid"], 20);
        assert_eq!(v["state"]["pid"], 10);
        assert_eq!(v["fds"], serde_json::json!(["seccompFd"]));
        assert!(v.get("metadata").is_none());
        assert!(v["state"].get("annotations").is_none());
        st.metadata = "m".into();
        st.init_pid = None;
        let v: serde_json::Value = serde_json::from_slice(&st.message(20)).unwrap();
        assert_eq!(v["metadata"], "m");
        assert_eq!(v["state"]["pid"], 20);
    }
}
