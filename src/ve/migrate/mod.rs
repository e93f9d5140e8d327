//! Moving a VE between hosts (vzmigrate), one file per job: the encrypted, framed
//! channel between the two peers (`channel`), CRIU's page traffic carried inside that
//! encryption (`tunnel`), what goes over the channel (`streams`: the rootfs,
//! the private area's image in passes, CRIU's images), the rootfs's frozen second
//! pass (`delta`), the choice between pre-copy and
//! post-copy and the pre-copy stopping rule (`rounds`), and progress output (`progress`).

pub mod channel;
pub mod delta;
pub mod gate;
pub mod progress;
pub mod rounds;
pub mod streams;
pub mod tunnel;

pub use channel::{kind, parse_addr, Channel, Key};
pub use delta::{recv_delta, send_delta, Manifest};
pub use progress::Progress;
pub use rounds::{pick_mode, precopy_stop, Mode, Requested};
pub use streams::{plain_name, recv_file, recv_tree, send_dir, send_disk, send_tree, FileHeader};

use std::path::PathBuf;

/// What goes wrong in a move. Settings are named by what they are (the key file, the
/// mode); the commands map them to their flags.
#[derive(Debug, thiserror::Error)]
pub enum MigError {
    #[error("key file {path}: {problem}")]
    Key { path: PathBuf, problem: String },
    #[error("peer authentication failed: {0}")]
    Auth(String),
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("{op} {path}: {source}")]
    File {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("peer: {0}")]
    Remote(String),
    #[error("{setting}: {text:?} is not HOST:PORT")]
    Address { setting: &'static str, text: String },
    #[error("mode {0:?} is not one of auto, precopy, postcopy")]
    UnknownMode(String),
    #[error(
        "pre-copy: this kernel has no soft-dirty page tracking (criu check --feature \
         mem_dirty_track); use post-copy or auto"
    )]
    NoSoftDirty,
}

/// An I/O error on a file, with what was done to which file.
pub(crate) fn file_err(
    op: &'static str,
    path: &std::path::Path,
) -> impl FnOnce(std::io::Error) -> MigError {
    let path = path.to_path_buf();
    move |source| MigError::File { op, path, source }
}
