//! The runtime layer's one error type. Its words are runc's where a caller can see them
//! (containerd's shim and podman match on "container does not exist" and friends), and
//! libcontainer's errors arrive here through one `From`, joined as runc joins causes.

use std::path::PathBuf;

use libcontainer::error::LibcontainerError;

use crate::runtime::state::StateError;
use crate::ve::VeError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("container does not exist")]
    NotExist,
    #[error("container with given ID already exists")]
    Exists,
    #[error("invalid container ID format: {0:?}")]
    InvalidId(String),
    /// The container is in a state the operation cannot start from; the text is runc's.
    #[error("{0}")]
    State(String),
    /// A bad bundle or spec, naming the field (`config.json: process.user.uid: …`).
    #[error("{0}")]
    Config(String),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Libcontainer(String),
    #[error(transparent)]
    Ve(#[from] VeError),
    #[error(transparent)]
    Policy(#[from] crate::ve::policy::PolicyError),
    #[error(transparent)]
    Record(#[from] StateError),
    #[error(transparent)]
    Cgroup(#[from] crate::sys::cgroups::CgroupError),
    #[error(transparent)]
    Tool(#[from] crate::sys::process::ToolError),
    #[error(transparent)]
    Seccomp(#[from] crate::runtime::seccomp::SeccompError),
    #[error(transparent)]
    Agent(#[from] crate::runtime::seccomp_agent::AgentError),
    /// A step that failed with its own explanation (a hook, a CRIU run).
    #[error("{0}")]
    Step(String),
    #[error(transparent)]
    Ckpt(#[from] crate::ve::checkpoint::CkptError),
    #[error(transparent)]
    Mig(#[from] crate::ve::migrate::MigError),
    #[error(transparent)]
    Criu(#[from] crate::sys::criu::CriuError),
    #[error(transparent)]
    Action(#[from] crate::ve::actions::ActionError),
    /// A move that failed before the destination ran the VE: it runs on at the source.
    #[error("the VE {id} keeps running here")]
    KeptRunning {
        id: String,
        #[source]
        source: Box<Error>,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<LibcontainerError> for Error {
    fn from(e: LibcontainerError) -> Self {
        match e {
            // libcontainer names the status in Rust's spelling (`Created`); runc's words
            // and its status names instead. The can_* checks catch most of these first.
            LibcontainerError::IncorrectStatus(status) => Error::State(format!(
                "container is {}",
                crate::runtime::state::status_word(status)
            )),
            other => Error::Libcontainer(chain(&other)),
        }
    }
}

impl From<crate::ve::net::NetError> for Error {
    fn from(e: crate::ve::net::NetError) -> Self {
        Error::Ve(e.into())
    }
}

impl Error {
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// An error and its causes joined with ": ", each cause once, as runc prints them.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use libcontainer::container::ContainerStatus;

    #[test]
    fn libcontainer_status_errors_use_runc_status_names() {
        let e: Error = LibcontainerError::IncorrectStatus(ContainerStatus::Created).into();
        assert_eq!(e.to_string(), "container is created");
    }
}
