//! vzrun runs container code from a sealed copy of itself. libcontainer forks vzrun to
//! make a container's init and each exec'd process, so until they exec the user's
//! program their `/proc/PID/exe` is the vzrun binary; a process inside the container
//! could open it and, once the runtime exits, write to it (CVE-2019-5736). Re-executing
//! from a memfd whose contents are sealed against writing, growing and shrinking leaves
//! nothing writable to reach: the host's file is never what those processes run.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};

#[derive(Debug, thiserror::Error)]
#[error("run from a sealed copy of vzrun: {step}: {source}")]
pub struct SealError {
    step: &'static str,
    source: std::io::Error,
}

fn failed(step: &'static str) -> impl FnOnce(std::io::Error) -> SealError {
    move |source| SealError { step, source }
}

const SEALS: SealFlag = SealFlag::F_SEAL_SEAL
    .union(SealFlag::F_SEAL_SHRINK)
    .union(SealFlag::F_SEAL_GROW)
    .union(SealFlag::F_SEAL_WRITE);

/// Whether `exe` is a sealed copy.
fn sealed(exe: &File) -> bool {
    fcntl(exe.as_raw_fd(), FcntlArg::F_GET_SEALS)
        .is_ok_and(|bits| SealFlag::from_bits_truncate(bits).contains(SEALS))
}

/// Re-executes this process from a sealed memfd copy of its binary, with the same
/// arguments and environment; returns only when it already runs from one.
pub fn ensure() -> Result<(), SealError> {
    let mut exe = File::open("/proc/self/exe").map_err(failed("open /proc/self/exe"))?;
    if sealed(&exe) {
        return Ok(());
    }
    let copy: OwnedFd = memfd_create(
        c"vzrun",
        MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING,
    )
    .map_err(|e| failed("memfd_create")(e.into()))?;
    let mut copy = File::from(copy);
    std::io::copy(&mut exe, &mut copy).map_err(failed("copy the binary"))?;
    fcntl(copy.as_raw_fd(), FcntlArg::F_ADD_SEALS(SEALS))
        .map_err(|e| failed("seal the copy")(e.into()))?;
    let cstr = |b: &[u8]| CString::new(b).map_err(|e| failed("arguments")(e.into()));
    let args = std::env::args_os()
        .map(|a| cstr(a.as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    let env = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            cstr(&kv)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let e = nix::unistd::fexecve(copy.as_raw_fd(), &args, &env).unwrap_err();
    Err(failed("exec the copy")(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_binary_is_not_sealed() {
        // The harness runs from a file on disk; only a re-exec'd vzrun is sealed.
        assert!(!sealed(&File::open("/proc/self/exe").unwrap()));
    }
}
