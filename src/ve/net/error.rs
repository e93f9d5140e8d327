//! What can go wrong while networking a VE.

use std::net::IpAddr;
use std::path::PathBuf;

use crate::sys::netlink::NlError;
use crate::sys::process::ToolError;
use crate::ve::PREFIX;

/// A networking failure. Each message is complete on its own: the causes are held as
/// fields, not as `source`s, so that an error chain printed with `{:#}` (as vzrun's log
/// does) does not repeat them. `From` is therefore written out for the netlink and tool
/// errors rather than derived with `#[from]`, which would make them sources.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A netlink request failed.
    #[error("network: {0}")]
    Netlink(NlError),
    /// nft failed (the anti-spoofing guard).
    #[error("network: {0}")]
    Nft(ToolError),
    #[error("network: {op} {}: {err}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        err: std::io::Error,
    },
    /// A setting the host cannot satisfy (a bridge or uplink that is not there, an
    /// address another VE holds); worded as an annotation error.
    #[error("annotation {PREFIX}{key}: {problem}")]
    Setting { key: &'static str, problem: String },
    /// An address to add is the VE's already.
    #[error("{0} is already an address of this VE")]
    AddressOwned(IpAddr),
    /// An address to add is routed to another VE.
    #[error("address {0} is already held by another VE")]
    AddressHeld(IpAddr),
    /// A live change to a VE that was created without vzrun networking.
    #[error("network: the VE has no vzrun-managed network")]
    Unmanaged,
    #[error("network: {0} missing in the VE")]
    MissingInVe(String),
    /// The host end of a pair just created is not there.
    #[error("network: {0} vanished")]
    Vanished(String),
    /// unshare(CLONE_NEWNET) failed for a restore's fresh namespace.
    #[error("network: new network namespace: {0}")]
    NewNetns(nix::errno::Errno),
    #[error("network: new network namespace: worker panicked")]
    Panicked,
}

impl From<NlError> for NetError {
    fn from(e: NlError) -> Self {
        NetError::Netlink(e)
    }
}

impl From<ToolError> for NetError {
    fn from(e: ToolError) -> Self {
        NetError::Nft(e)
    }
}

impl NetError {
    pub(super) fn io(op: &'static str, path: impl Into<PathBuf>, err: std::io::Error) -> Self {
        NetError::Io {
            op,
            path: path.into(),
            err,
        }
    }

    pub(super) fn setting(key: &'static str, problem: impl Into<String>) -> Self {
        NetError::Setting {
            key,
            problem: problem.into(),
        }
    }
}
