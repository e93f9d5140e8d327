//! Asking a VE's init to shut the system down, the way that init expects it.

use std::fs;

use crate::ve::template::Shutdown;
use crate::ve::VeError;

/// Asks the VE's init to shut the system down, the way that init expects it.
pub fn request_shutdown(pid: i32, how: Shutdown) -> Result<(), VeError> {
    match how {
        Shutdown::Busybox => {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGUSR2)
                .map_err(|e| VeError::io("signal init", e))
        }
        Shutdown::Sysvinit => initctl_runlevel(pid, b'0'),
    }
}

/// sysvinit's request record (initreq.h): magic, command, runlevel, sleep time, then
/// 368 bytes of payload; 384 bytes in all.
pub fn initctl_request(runlevel: u8) -> [u8; 384] {
    let mut buf = [0u8; 384];
    buf[0..4].copy_from_slice(&0x0309_1969i32.to_ne_bytes());
    // INIT_CMD_RUNLVL
    buf[4..8].copy_from_slice(&1i32.to_ne_bytes());
    buf[8..12].copy_from_slice(&(runlevel as i32).to_ne_bytes());
    // Seconds between SIGTERM and SIGKILL for processes the new runlevel does not keep.
    buf[12..16].copy_from_slice(&3i32.to_ne_bytes());
    buf
}

/// Writes a runlevel request into the FIFO init reads, /run/initctl inside the VE. The
/// path is resolved with the VE's root as "/" (a VE cannot point it at a host file), and
/// it must be a FIFO: nothing else is ever written to.
fn initctl_runlevel(pid: i32, runlevel: u8) -> Result<(), VeError> {
    use nix::fcntl::{OFlag, ResolveFlag};
    use std::io::Write;
    use std::os::unix::fs::FileTypeExt;
    let err = |what: &str, e: std::io::Error| VeError::io(format!("initctl: {what}"), e);
    let root =
        fs::File::open(format!("/proc/{pid}/root")).map_err(|e| err("open the VE's root", e))?;
    let file = crate::sys::fs::open_at(
        &root,
        std::path::Path::new("run/initctl"),
        OFlag::O_WRONLY | OFlag::O_NONBLOCK,
        nix::sys::stat::Mode::empty(),
        ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS,
    )
    .map_err(|e| err("open /run/initctl (is init sysvinit?)", e))?;
    let meta = file.metadata().map_err(|e| err("stat /run/initctl", e))?;
    if !meta.file_type().is_fifo() {
        return Err(VeError::Refused(
            "initctl: /run/initctl in the VE is not a FIFO".into(),
        ));
    }
    (&file)
        .write_all(&initctl_request(runlevel))
        .map_err(|e| err("write /run/initctl", e))
}
