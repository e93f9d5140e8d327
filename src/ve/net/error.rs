//! What can go wrong while networking a VE.

use std::net::IpAddr;
use std::path::PathBuf;

use crate::sys::netlink::NlError;
use crate::sys::nftables::NftError;
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
    /// A guard's address sets could not be changed over netlink.
    #[error("network: {0}")]
    NftSets(NftError),
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
    /// An address the VE may not claim, with the rule it breaks.
    #[error("annotation {PREFIX}{key}: {ip} {why}")]
    AddressRefused {
        key: &'static str,
        ip: IpAddr,
        why: super::claim::Refusal,
    },
    /// An address to add is the VE's already.
    #[error("{0} is already an address of this VE")]
    AddressOwned(IpAddr),
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
    /// The VE's record, which must name a host object before it is made, could not be
    /// saved.
    #[error("network: {0}")]
    Record(String),
}

impl From<NlError> for NetError {
    fn from(e: NlError) -> Self {
        NetError::Netlink(e)
    }
}

impl From<NftError> for NetError {
    fn from(e: NftError) -> Self {
        NetError::NftSets(e)
    }
}

impl From<ToolError> for NetError {
    fn from(e: ToolError) -> Self {
        NetError::Nft(e)
    }
}

impl NetError {
    /// The setting (annotation key without its prefix) a refusal is about, and the
    /// problem in words without the key: for a caller that names the setting its own way
    /// (`ve set` by its flag).
    pub fn setting_problem(&self) -> Option<(&'static str, String)> {
        match self {
            NetError::Setting { key, problem } => Some((*key, problem.clone())),
            NetError::AddressRefused { key, ip, why } => Some((*key, format!("{ip} {why}"))),
            NetError::AddressOwned(_) => Some(("net.ip", self.to_string())),
            _ => None,
        }
    }

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
