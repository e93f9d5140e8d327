//! Moving a VE between hosts (vzmigrate), one file per job: the authenticated, framed
//! channel between the two peers (`channel`), what goes over it (`streams`: the rootfs,
//! the private area's image in passes, CRIU's images), the choice between pre-copy and
//! post-copy and the pre-copy stopping rule (`rounds`), and progress output (`progress`).

pub mod channel;
pub mod progress;
pub mod rounds;
pub mod streams;

pub use channel::{kind, parse_addr, Channel, Key};
pub use progress::Progress;
pub use rounds::{pick_mode, precopy_stop, Mode};
pub use streams::{plain_name, recv_file, send_dir, send_disk, send_tree, FileHeader};

#[derive(Debug, thiserror::Error)]
pub enum MigError {
    #[error("--key-file {path}: {problem}")]
    Key { path: String, problem: String },
    #[error("peer authentication failed: {0}")]
    Auth(String),
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("peer: {0}")]
    Remote(String),
    #[error("{0}")]
    Mode(String),
}

/// Kills the CRIU processes this process started (RPC workers, `criu swrk`): the way to
/// abort a dump or restore that waits on a peer that is gone. Best effort.
pub fn kill_criu_children() {
    let me = std::process::id().to_string();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .unwrap_or_default();
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if ppid == me && String::from_utf8_lossy(&cmd).contains("swrk") {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
        }
    }
}
