//! Loop devices: attach an image to a free one that detaches itself when its last user
//! lets go, tell the kernel an image grew, and tell whether a file backs a device.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

// Loop device ioctls and structures (linux/loop.h).
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LOOP_SET_CAPACITY: libc::c_ulong = 0x4C07;
const LO_FLAGS_AUTOCLEAR: u32 = 4;
const LOOP_MAJOR: u64 = 7;

#[repr(C)]
struct LoopInfo64 {
    device: u64,
    inode: u64,
    rdevice: u64,
    offset: u64,
    sizelimit: u64,
    number: u32,
    encrypt_type: u32,
    encrypt_key_size: u32,
    flags: u32,
    file_name: [u8; 64],
    crypt_name: [u8; 64],
    encrypt_key: [u8; 32],
    init: [u64; 2],
}

#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    #[error("{step} {path}: {source}")]
    Io {
        step: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("attach a loop device: every free device was taken first")]
    Busy,
}

fn io(step: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> LoopError {
    let path = path.into();
    move |source| LoopError::Io { step, path, source }
}

/// Binds `image` to a free loop device with autoclear, so a crash between attach and
/// mount cannot leak it; returns the device's path and an open handle that keeps it
/// attached until the caller has mounted it.
pub fn attach(image: &File) -> Result<(PathBuf, File), LoopError> {
    let ctl_path = Path::new("/dev/loop-control");
    let ctl = OpenOptions::new()
        .read(true)
        .write(true)
        .open(ctl_path)
        .map_err(io("open", ctl_path))?;
    // Another process may take the device between GET_FREE and CONFIGURE; try again.
    for _ in 0..16 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number; nix
        // has no wrapper for the loop ioctls.
        let n = unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE) };
        if n < 0 {
            return Err(io("find a free loop device via", ctl_path)(
                std::io::Error::last_os_error(),
            ));
        }
        let path = PathBuf::from(format!("/dev/loop{n}"));
        if !path.exists() {
            // A host without devtmpfs entries for new loop devices (a container's /dev).
            nix::sys::stat::mknod(
                &path,
                nix::sys::stat::SFlag::S_IFBLK,
                nix::sys::stat::Mode::from_bits_truncate(0o660),
                nix::sys::stat::makedev(LOOP_MAJOR, n as u64),
            )
            .map_err(|e| io("create", &path)(e.into()))?;
        }
        let dev = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io("open", &path))?;
        // SAFETY: all-zero is a valid loop_config; the fields we need are set below.
        let mut cfg: LoopConfig = unsafe { std::mem::zeroed() };
        cfg.fd = image.as_raw_fd() as u32;
        cfg.info.flags = LO_FLAGS_AUTOCLEAR;
        // SAFETY: cfg outlives the call and has the kernel's layout.
        let rc = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CONFIGURE, &cfg as *const LoopConfig) };
        if rc == 0 {
            tracing::debug!(dev = %path.display(), "loop device attached");
            return Ok((path, dev));
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EBUSY) {
            return Err(io("attach", &path)(err));
        }
    }
    Err(LoopError::Busy)
}

/// Tells the kernel that the image behind `dev` has grown.
pub fn set_capacity(dev: &Path) -> Result<(), LoopError> {
    let d = OpenOptions::new()
        .read(true)
        .write(true)
        .open(dev)
        .map_err(io("open", dev))?;
    // SAFETY: LOOP_SET_CAPACITY takes no argument.
    if unsafe { libc::ioctl(d.as_raw_fd(), LOOP_SET_CAPACITY, 0) } < 0 {
        return Err(io("resize", dev)(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Whether a loop device uses the file `meta` describes now.
pub fn is_backing(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return false;
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("loop"))
        .filter_map(|e| std::fs::read_to_string(e.path().join("loop/backing_file")).ok())
        .filter_map(|p| std::fs::metadata(p.trim_end_matches('\n')).ok())
        .any(|m| m.dev() == meta.dev() && m.ino() == meta.ino())
}
