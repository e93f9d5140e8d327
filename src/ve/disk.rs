//! The VE's private area: an ext4 filesystem in an image file on a loop device, holding
//! the VE's writes over the bundle's rootfs through an overlay, much as OpenVZ's ploop
//! holds a container's files. Its size is the diskspace hard limit and its inode count
//! the diskinodes hard limit, so the kernel enforces both with ENOSPC and `df` inside
//! shows them; the host needs no quota support.
//!
//! The image lives in vzrun's data directory (or where the user named a persistent one);
//! under the VE's state directory are `private/` (the image's mount: `upper/`, `work/`)
//! and `rootfs/` (the overlay the container uses as its root).
//!
//! Growing a mounted ext4 needs CAP_SYS_RESOURCE. Where vzrun lacks it (some hosts take it
//! from root's bounding set), the filesystem is made `HEADROOM` times the hard limit with
//! the excess held back as reserved blocks owned by nobody: the VE, which has no
//! CAP_SYS_RESOURCE either, stops at the hard limit, and growing is a change of the
//! reserved count. `df` then shows the larger size, with the right space available.

use std::fs::{self, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use serde::{Deserialize, Serialize};

use super::{bad, VeError, PREFIX};
use crate::units::parse_size;

/// Smallest image that holds an ext4 journal and a useful upper layer.
const MIN_SPACE: u64 = 16 << 20;
/// ext4 counts inodes in 32 bits: mkfs takes at most 2^32-1.
const MAX_INODES: u64 = u32::MAX as u64;
/// mke2fs's smallest bytes-per-inode ratio (`-i`): more inodes than one per KiB of the
/// area leave no room for the files (and mkfs refuses well before 2^32).
const MIN_BYTES_PER_INODE: u64 = 1024;
const BLOCK: u64 = 4096;
/// How far an area can grow live where online resize is not allowed.
pub const HEADROOM: u64 = 4;
/// Owner of the reserved blocks: nobody, so that uid 0 inside the VE cannot use them.
const RESERVED_OWNER: u32 = 65534;

/// Whether this process may resize a mounted ext4 (CAP_SYS_RESOURCE in its effective set).
fn can_resize_online() -> bool {
    caps::has_cap(
        None,
        caps::CapSet::Effective,
        caps::Capability::CAP_SYS_RESOURCE,
    )
    .unwrap_or(false)
}

/// Reserves `blocks` of the filesystem for nobody, by editing the ext4 superblock in
/// place (tune2fs refuses to reserve more than half, and a helper process per create
/// costs more than the edit). On a mounted filesystem the write goes through the same
/// block-device cache the kernel keeps its superblock in, and the kernel reads the count
/// at each allocation; the owner it reads only at mount.
fn set_reserved(target: &Path, blocks: u64) -> Result<(), VeError> {
    use std::os::unix::fs::FileExt;
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(target)
        .map_err(|e| io(target.display(), e))?;
    let mut sb = [0u8; 1024];
    f.read_exact_at(&mut sb, 1024)
        .map_err(|e| io(format!("read the superblock of {}", target.display()), e))?;
    edit_superblock(&mut sb, blocks, RESERVED_OWNER as u16)
        .map_err(|e| VeError::Refused(format!("private area: {}: {e}", target.display())))?;
    f.write_all_at(&sb, 1024)
        .map_err(|e| io(format!("write the superblock of {}", target.display()), e))
}

// ext4 superblock offsets (fs/ext4/ext4.h).
const SB_R_BLOCKS_LO: usize = 0x08;
const SB_MAGIC: usize = 0x38;
const SB_DEF_RESUID: usize = 0x50;
const SB_DEF_RESGID: usize = 0x52;
const SB_FEATURE_INCOMPAT: usize = 0x60;
const SB_FEATURE_RO_COMPAT: usize = 0x64;
const SB_R_BLOCKS_HI: usize = 0x154;
const SB_CHECKSUM: usize = 0x3FC;
const INCOMPAT_64BIT: u32 = 0x80;
const RO_COMPAT_METADATA_CSUM: u32 = 0x400;

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn edit_superblock(sb: &mut [u8; 1024], blocks: u64, owner: u16) -> Result<(), String> {
    if u16::from_le_bytes([sb[SB_MAGIC], sb[SB_MAGIC + 1]]) != 0xEF53 {
        return Err("not an ext4 filesystem".into());
    }
    if blocks > u32::MAX as u64 && le32(sb, SB_FEATURE_INCOMPAT) & INCOMPAT_64BIT == 0 {
        return Err(format!("{blocks} reserved blocks do not fit a 32-bit ext4"));
    }
    sb[SB_R_BLOCKS_LO..SB_R_BLOCKS_LO + 4].copy_from_slice(&(blocks as u32).to_le_bytes());
    if le32(sb, SB_FEATURE_INCOMPAT) & INCOMPAT_64BIT != 0 {
        sb[SB_R_BLOCKS_HI..SB_R_BLOCKS_HI + 4]
            .copy_from_slice(&((blocks >> 32) as u32).to_le_bytes());
    }
    sb[SB_DEF_RESUID..SB_DEF_RESUID + 2].copy_from_slice(&owner.to_le_bytes());
    sb[SB_DEF_RESGID..SB_DEF_RESGID + 2].copy_from_slice(&owner.to_le_bytes());
    if le32(sb, SB_FEATURE_RO_COMPAT) & RO_COMPAT_METADATA_CSUM != 0 {
        let c = crc32c(!0, &sb[..SB_CHECKSUM]);
        sb[SB_CHECKSUM..].copy_from_slice(&c.to_le_bytes());
    }
    Ok(())
}

/// CRC-32C (Castagnoli), as ext4's metadata checksums use it: no final inversion.
fn crc32c(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0x82F6_3B78 & (crc & 1).wrapping_neg());
        }
    }
    crc
}

/// A `soft:hard` pair as vzctl takes it; one value means both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub soft: u64,
    pub hard: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DiskConfig {
    pub space: Limit,
    pub inodes: Option<Limit>,
    /// A persistent image the user named: reused when it exists, kept after delete.
    pub image: Option<PathBuf>,
}

/// What prepare made, in the order it made it; teardown undoes exactly this.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct DiskRecord {
    pub image: PathBuf,
    pub persistent: bool,
    /// The image file was made by this create (removed on failure even if persistent).
    #[serde(default)]
    pub created: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loop_dev: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<PathBuf>,
    pub space: (u64, u64),
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inodes: Option<(u64, u64)>,
    /// Size of the filesystem in the image. Above the hard limit when the area was made
    /// with headroom held back as reserved blocks.
    #[serde(default)]
    pub fs_size: u64,
    /// Blocks currently held back for nobody.
    #[serde(default)]
    pub reserved: u64,
}

fn io(what: impl std::fmt::Display, e: impl Into<std::io::Error>) -> VeError {
    VeError::Io {
        step: format!("private area: {what}"),
        source: e.into(),
    }
}

/// Parses `soft:hard` or one value; `count` takes plain numbers (inodes), else sizes.
pub fn parse_limit(value: &str, count: bool) -> Result<Limit, String> {
    let one = |s: &str| -> Result<u64, String> {
        if count {
            return s
                .trim()
                .parse::<u64>()
                .map_err(|_| format!("{s:?} is not a number"));
        }
        parse_size(s).map_err(|e| e.to_string())?.ok_or_else(|| {
            "unlimited is not possible: the private area is an image of this size".to_string()
        })
    };
    let (soft, hard) = match value.split_once(':') {
        Some((s, h)) => (one(s)?, one(h)?),
        None => {
            let v = one(value)?;
            (v, v)
        }
    };
    if soft > hard {
        return Err(format!("soft limit {soft} is above the hard limit {hard}"));
    }
    if count {
        if !(64..=MAX_INODES).contains(&hard) {
            return Err(format!("{hard} is out of range (64..{MAX_INODES})"));
        }
    } else if hard < MIN_SPACE {
        return Err(format!(
            "{hard} bytes is below the smallest private area ({}M)",
            MIN_SPACE >> 20
        ));
    }
    Ok(Limit { soft, hard })
}

impl DiskConfig {
    pub fn parse(
        a: &std::collections::HashMap<String, String>,
    ) -> Result<Option<DiskConfig>, VeError> {
        let get = |k: &str| a.get(&format!("{PREFIX}{k}"));
        let space = match get("diskspace") {
            Some(v) => Some(parse_limit(v, false).map_err(|e| bad("diskspace", e))?),
            None => None,
        };
        let inodes = match get("diskinodes") {
            Some(v) => Some(parse_limit(v, true).map_err(|e| bad("diskinodes", e))?),
            None => None,
        };
        let image = get("disk.image").map(PathBuf::from);
        if let Some(p) = &image {
            if !p.is_absolute() {
                return Err(bad(
                    "disk.image",
                    format!("{} is not an absolute path", p.display()),
                ));
            }
        }
        let Some(space) = space else {
            if inodes.is_some() {
                return Err(bad("diskinodes", "needs io.vzrun.diskspace"));
            }
            if image.is_some() {
                return Err(bad("disk.image", "needs io.vzrun.diskspace"));
            }
            return Ok(None);
        };
        if let Some(i) = inodes {
            let most = space.hard / MIN_BYTES_PER_INODE;
            if i.hard > most {
                return Err(bad(
                    "diskinodes",
                    format!(
                        "{} is more than one inode per {MIN_BYTES_PER_INODE} bytes of \
                         io.vzrun.diskspace ({} bytes allow at most {most})",
                        i.hard, space.hard
                    ),
                ));
            }
        }
        Ok(Some(DiskConfig {
            space,
            inodes,
            image,
        }))
    }
}

fn run_tool(cmd: &mut Command) -> Result<(), VeError> {
    Ok(crate::sys::process::run(cmd)?)
}

fn mkfs(image: &Path, inodes: Option<u64>) -> Result<(), VeError> {
    let mut cmd = Command::new("mkfs.ext4");
    // No root reserve: the VE owns the whole area. Lazy init keeps mkfs at a few ms.
    cmd.args(["-q", "-F", "-m", "0", "-b", "4096", "-E"])
        .arg("lazy_itable_init=1,lazy_journal_init=1,nodiscard");
    if let Some(n) = inodes {
        cmd.arg("-N").arg(n.to_string());
    }
    cmd.arg(image);
    run_tool(&mut cmd)
}

/// ext4's magic number in its superblock (1024 bytes in, at 0x38).
const EXT4_MAGIC: u16 = 0xEF53;

/// Opens the image at `path` for reading and writing without following a link in its
/// name or directory, making it (0600, in a 0700 directory for vzrun's own images) when
/// it does not exist; returns whether it existed. An image that a loop device already
/// uses is refused: it belongs to a running VE (or to the host). A `named` image (the
/// user's path) must sit in a directory only root can write and, when it exists, be
/// root's alone: whoever else can write the file behind a mounted ext4 can crash the
/// kernel, and whoever can read it reads the VE's files. Both are checked on the opened
/// descriptors, so a name swapped meanwhile changes nothing.
fn open_image(path: &Path, named: bool) -> Result<(fs::File, bool), VeError> {
    use nix::fcntl::{OFlag, ResolveFlag};
    use nix::sys::stat::Mode;
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(VeError::Refused(format!(
            "private area: {} is not a file path",
            path.display()
        )));
    };
    if !named {
        crate::sys::fs::private_dir(parent).map_err(|e| io(parent.display(), e))?;
    }
    let dir = crate::sys::fs::open_dir_nofollow(parent).map_err(|e| {
        io(
            format!("open {} (without following links)", parent.display()),
            e,
        )
    })?;
    if named {
        let m = dir.metadata().map_err(|e| io(parent.display(), e))?;
        if let Some(why) = unsafe_dir(&m, false) {
            return Err(refuse_named(
                path,
                format!("its directory {}", parent.display()),
                why,
            ));
        }
    }
    let beneath = ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS;
    let name = Path::new(name);
    let rw = OFlag::O_RDWR | OFlag::O_NOFOLLOW;
    let (file, existed) = match crate::sys::fs::open_at(&dir, name, rw, Mode::empty(), beneath) {
        Ok(f) => (f, true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
            crate::sys::fs::open_at(
                &dir,
                name,
                rw | OFlag::O_CREAT | OFlag::O_EXCL,
                Mode::from_bits_truncate(0o600),
                beneath,
            )
            .map_err(|e| io(format!("create {}", path.display()), e))?,
            false,
        ),
        Err(e) if named && e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(refuse_named(
                path,
                "it",
                "is a symbolic link; a private area image is a regular file".into(),
            ))
        }
        Err(e) => return Err(io(format!("open {}", path.display()), e)),
    };
    let meta = file.metadata().map_err(|e| io(path.display(), e))?;
    if !meta.file_type().is_file() {
        return Err(VeError::Refused(format!(
            "private area: {} is not a regular file",
            path.display()
        )));
    }
    if existed && crate::sys::loopdev::is_backing(&meta) {
        return Err(VeError::Refused(format!(
            "private area: {} is in use by a loop device (another VE's or the host's)",
            path.display()
        )));
    }
    if named && existed {
        // What is no image at all is named as such, before who owns it.
        check_ext4(&file, path)?;
        use std::os::unix::fs::MetadataExt;
        let why = if meta.uid() != 0 {
            Some(format!("is owned by uid {}, not root", meta.uid()))
        } else if meta.mode() & 0o077 != 0 {
            Some(format!(
                "has mode {:04o}: group or others may use it",
                meta.mode() & 0o7777
            ))
        } else {
            None
        };
        if let Some(why) = why {
            return Err(refuse_named(path, "it", why));
        }
    }
    Ok((file, existed))
}

/// The rule a named image and its directories are held to, for the refusals.
const NAMED_RULE: &str = "an existing image must be a regular file owned by root that no \
    group or other may use (0600), in directories owned by root that no group or other may \
    write; the image is left as it is";

fn refuse_named(path: &Path, what: impl std::fmt::Display, why: String) -> VeError {
    bad(
        "disk.image",
        format!("{}: {what} {why} ({NAMED_RULE})", path.display()),
    )
}

/// Why a directory on the way to a named image is not root's alone, if it is not. The
/// top one (the host policy's images directory, which the administrator chose) may be
/// writable by others when it is sticky, as /tmp is: there nobody but root can rename
/// or remove what root made in it, and what others put there is not root's, so it is
/// refused. Beneath it, nobody but root may write at all.
fn unsafe_dir(m: &fs::Metadata, top: bool) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let mode = m.mode() & 0o7777;
    if !m.is_dir() {
        return Some("is not a directory".into());
    }
    if m.uid() != 0 {
        return Some(format!("is owned by uid {}, not root", m.uid()));
    }
    let sticky = mode & 0o1000 != 0;
    if mode & 0o022 != 0 && !(top && sticky) {
        return Some(format!(
            "has mode {mode:04o}: group or others may write in it"
        ));
    }
    None
}

/// Checks every directory from `top` (the host policy's images directory) down to the
/// one holding `image`, one beneath the other on open descriptors without following
/// links; `image` is beneath `top` (the policy checked its name). Returns why not.
pub fn check_image_dirs(top: &Path, image: &Path) -> Result<(), String> {
    use nix::fcntl::{OFlag, ResolveFlag};
    use nix::sys::stat::Mode;
    let fail = |d: &Path, e: std::io::Error| match e.raw_os_error() {
        Some(libc::ENOENT) => format!("{} does not exist", d.display()),
        Some(libc::ELOOP) => format!("{} is a symbolic link", d.display()),
        Some(libc::ENOTDIR) => format!("{} is not a directory", d.display()),
        _ => format!("{}: {e}", d.display()),
    };
    let mut dir = crate::sys::fs::open_dir_nofollow(top).map_err(|e| fail(top, e))?;
    let mut at = top.to_path_buf();
    let check = |dir: &fs::File, at: &Path, top: bool| -> Result<(), String> {
        let m = dir.metadata().map_err(|e| fail(at, e))?;
        match unsafe_dir(&m, top) {
            Some(why) => Err(format!("{} {why}", at.display())),
            None => Ok(()),
        }
    };
    check(&dir, &at, true)?;
    let rel = image
        .parent()
        .and_then(|p| p.strip_prefix(top).ok())
        .unwrap_or(Path::new(""));
    for c in rel.components() {
        let std::path::Component::Normal(name) = c else {
            return Err(format!("{} is not a plain path", image.display()));
        };
        at.push(name);
        dir = crate::sys::fs::open_at(
            &dir,
            Path::new(name),
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW,
            Mode::empty(),
            ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS,
        )
        .map_err(|e| fail(&at, e))?;
        check(&dir, &at, false)?;
    }
    Ok(())
}

/// Refuses an existing file that is not an ext4 image, before anything writes to it.
fn check_ext4(image: &fs::File, path: &Path) -> Result<(), VeError> {
    use std::os::unix::fs::FileExt;
    let mut magic = [0u8; 2];
    let ok = image
        .read_exact_at(&mut magic, 1024 + SB_MAGIC as u64)
        .is_ok()
        && u16::from_le_bytes(magic) == EXT4_MAGIC;
    if !ok {
        return Err(VeError::Refused(format!(
            "private area: {} exists and is not an ext4 image; it is left as it is",
            path.display()
        )));
    }
    Ok(())
}

/// Makes (or reuses) the image at `default_image` (or the user's persistent path), mounts
/// it and the overlay over `lower`; returns the new root. What a step will make lands in
/// `rec`, and `save` writes it down, before the step runs: a vzrun killed at any point
/// leaves a record that names everything teardown has to remove.
pub fn prepare(
    cfg: &DiskConfig,
    dir: &Path,
    default_image: &Path,
    lower: &Path,
    rec: &mut DiskRecord,
    save: &mut dyn FnMut(&DiskRecord) -> Result<(), VeError>,
) -> Result<PathBuf, VeError> {
    rec.persistent = cfg.image.is_some();
    rec.image = cfg
        .image
        .clone()
        .unwrap_or_else(|| default_image.to_path_buf());
    rec.space = (cfg.space.soft, cfg.space.hard);
    rec.inodes = cfg.inodes.map(|l| (l.soft, l.hard));
    let hard = cfg.space.hard / BLOCK * BLOCK;
    // vzrun's own image path is the VE's alone: recorded before it is made. A user's
    // named image is recorded as made only once this create has made it.
    save(rec)?;
    // The image is opened once, without following links, and every later step works on
    // that descriptor (tools get its /proc path): a name swapped for a link meanwhile
    // changes nothing. An existing file must already be an ext4 image, unused by any
    // loop device, before anything is written to it.
    let (image, existed) = open_image(&rec.image, rec.persistent)?;
    let exists = existed;
    // An image handed over by a restore or a migration is this VE's, though not
    // user-named.
    let adopt = exists && !rec.persistent && fs::remove_file(adopt_marker(&rec.image)).is_ok();
    let image = if exists && !rec.persistent && !adopt {
        // A stale image under a fresh VE's name is a leftover, not the user's data.
        drop(image);
        fs::remove_file(&rec.image).map_err(|e| io(rec.image.display(), e))?;
        open_image(&rec.image, false)?.0
    } else {
        image
    };
    let fd_path = PathBuf::from(format!(
        "/proc/{}/fd/{}",
        std::process::id(),
        image.as_raw_fd()
    ));
    if !(exists && (rec.persistent || adopt)) {
        rec.created = true;
        save(rec)?;
        rec.fs_size = if can_resize_online() {
            hard
        } else {
            hard.saturating_mul(HEADROOM)
        };
        image
            .set_len(rec.fs_size)
            .map_err(|e| io(rec.image.display(), e))?;
        mkfs(&fd_path, cfg.inodes.map(|l| l.hard))?;
    } else {
        check_ext4(&image, &rec.image)?;
        // A persistent image from an earlier run, or one a migration brought: grow it
        // offline if asked for more, then hold back whatever is above the hard limit.
        rec.fs_size = image
            .metadata()
            .map_err(|e| io(rec.image.display(), e))?
            .len();
        if hard > rec.fs_size {
            image
                .set_len(hard)
                .map_err(|e| io(rec.image.display(), e))?;
            run_tool(Command::new("e2fsck").args(["-f", "-p"]).arg(&fd_path))?;
            run_tool(Command::new("resize2fs").arg(&fd_path))?;
            rec.fs_size = hard;
        }
    }
    // The kernel reads the reserve's owner only at mount; the count it reads live.
    set_reserved(&fd_path, rec.reserved)?;
    // Locked for as long as a loop device holds this open file (the lock belongs to the
    // open file the device keeps): a second VE cannot mount the same image. nix's
    // `Flock` would unlock when our handle drops, which is exactly what must not happen.
    #[allow(deprecated)]
    nix::fcntl::flock(
        image.as_raw_fd(),
        nix::fcntl::FlockArg::LockExclusiveNonblock,
    )
    .map_err(|_| {
        VeError::Refused(format!(
            "private area: {} is in use by another VE",
            rec.image.display()
        ))
    })?;
    let private = dir.join("private");
    rec.private = Some(private.clone());
    save(rec)?;
    let (dev, dev_file) = crate::sys::loopdev::attach(&image)?;
    rec.loop_dev = Some(dev.clone());
    crate::sys::fs::private_dir(&private).map_err(|e| io(private.display(), e))?;
    // The host never runs or opens devices from a VE's files here: the VE sees them
    // through the overlay, whose own mount decides what it may run.
    tracing::debug!(dev = %dev.display(), at = %private.display(), "mount ext4");
    mount(
        Some(&dev),
        &private,
        Some("ext4"),
        MsFlags::MS_NOATIME | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        None::<&str>,
    )
    .map_err(|e| {
        io(
            format!(
                "mount {} (ext4 from {})",
                dev.display(),
                rec.image.display()
            ),
            e,
        )
    })?;
    save(rec)?;
    // The mount now holds the device; with autoclear set, dropping our handles lets the
    // device detach itself at unmount.
    drop(dev_file);
    drop(image);
    fit_reserve(rec, hard)?;
    let upper = private.join("upper");
    let work = private.join("work");
    for d in [&upper, &work] {
        fs::create_dir_all(d).map_err(|e| io(d.display(), e))?;
    }
    let rootfs = dir.join("rootfs");
    rec.rootfs = Some(rootfs.clone());
    save(rec)?;
    crate::sys::fs::private_dir(&rootfs).map_err(|e| io(rootfs.display(), e))?;
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        escape(lower),
        escape(&upper),
        escape(&work)
    );
    tracing::debug!(at = %rootfs.display(), options = %opts, "mount overlay");
    mount(
        Some("overlay"),
        &rootfs,
        Some("overlay"),
        MsFlags::empty(),
        Some(opts.as_str()),
    )
    .map_err(|e| io(format!("overlay over {}", lower.display()), e))?;
    Ok(rootfs)
}

/// Marks an image put at a VE's own image path (by a restore or `migrate-listen`) as
/// that VE's: the next prepare takes it over instead of removing it as a leftover, and
/// the VE owns it like one it made (removed with the VE).
pub fn hand_over(image: &Path) -> std::io::Result<()> {
    fs::write(adopt_marker(image), b"")
}

pub fn adopt_marker(image: &Path) -> PathBuf {
    let mut p = image.as_os_str().to_owned();
    p.push(".adopt");
    PathBuf::from(p)
}

/// overlayfs splits its options at commas and lowerdir at colons.
fn escape(p: &Path) -> String {
    p.to_string_lossy()
        .replace('\\', "\\\\")
        .replace(',', "\\,")
        .replace(':', "\\:")
}

fn unmount(p: &Path) {
    tracing::debug!(at = %p.display(), "unmount");
    if umount2(p, MntFlags::empty()).is_err() {
        // Busy (a process still holds it) or already gone: detach lazily so the loop
        // device still clears once the last user lets go.
        let _ = umount2(p, MntFlags::MNT_DETACH);
    }
    let _ = fs::remove_dir(p);
}

/// Undoes `prepare`. Safe to call more than once and on a half-made record.
pub fn teardown(rec: &DiskRecord) {
    if let Some(r) = &rec.rootfs {
        unmount(r);
    }
    if let Some(p) = &rec.private {
        unmount(p);
    }
    if !rec.image.as_os_str().is_empty() && (!rec.persistent || rec.created_and_failed()) {
        let _ = fs::remove_file(&rec.image);
    }
}

impl DiskRecord {
    /// A persistent image this create made but that never got mounted holds nothing of
    /// the user's: remove it with the failed create.
    fn created_and_failed(&self) -> bool {
        self.created && self.rootfs.is_none()
    }
}

/// Sets the reserve of a mounted area so that the files in it can take `hard` bytes in
/// all. ext4's statfs leaves its own metadata out of the block count, so "used" here is
/// what the VE's files take, as `df` shows it.
fn fit_reserve(rec: &mut DiskRecord, hard: u64) -> Result<(), VeError> {
    let (Some(private), Some(dev)) = (rec.private.clone(), rec.loop_dev.clone()) else {
        return Ok(());
    };
    if rec.fs_size <= hard {
        rec.reserved = 0;
        return set_reserved(&dev, 0);
    }
    let st = nix::sys::statvfs::statvfs(&private).map_err(|e| io(private.display(), e))?;
    let (total, free, avail) = (
        st.blocks() as u64,
        st.blocks_free() as u64,
        st.blocks_available() as u64,
    );
    let used = total.saturating_sub(free);
    // ext4 also keeps a small reserve of its own out of "available": leave it in place.
    let want_avail = (hard / BLOCK).saturating_sub(used);
    let reserve = (avail + rec.reserved).saturating_sub(want_avail);
    set_reserved(&dev, reserve)?;
    rec.reserved = reserve;
    Ok(())
}

/// Raises the hard limit of a mounted area: within the headroom by releasing reserved
/// blocks, beyond it by growing the image and the filesystem online (ext4 resize).
pub fn grow(rec: &mut DiskRecord, hard: u64) -> Result<(), VeError> {
    let hard = hard / BLOCK * BLOCK;
    let dev = rec.loop_dev.clone().ok_or_else(|| {
        VeError::Refused("private area: grow: the private area is not attached".into())
    })?;
    if hard < rec.space.1 / BLOCK * BLOCK {
        return Err(VeError::Setting {
            setting: super::live::Setting::DiskSpace,
            problem: format!(
                "{hard} is below the current limit {}: a mounted private area can only grow",
                rec.space.1
            ),
        });
    }
    if hard > rec.fs_size {
        if !can_resize_online() {
            return Err(VeError::Setting {
                setting: super::live::Setting::DiskSpace,
                problem: format!(
                    "{hard} is above what this area can reach while running ({} bytes): \
                     growing a mounted ext4 further needs CAP_SYS_RESOURCE, which vzrun \
                     lacks on this host; stop the VE and start it with the new size",
                    rec.fs_size
                ),
            });
        }
        OpenOptions::new()
            .write(true)
            .open(&rec.image)
            .and_then(|f| f.set_len(hard))
            .map_err(|e| io(rec.image.display(), e))?;
        crate::sys::loopdev::set_capacity(&dev)?;
        run_tool(Command::new("resize2fs").arg(&dev))?;
        rec.fs_size = hard;
    }
    fit_reserve(rec, hard)?;
    rec.space.1 = hard;
    Ok(())
}

/// Blocks and inodes of the area: (bytes used, bytes total, inodes used, inodes total).
pub fn usage(rec: &DiskRecord) -> Option<(u64, u64, u64, u64)> {
    let p = rec.private.as_ref()?;
    let s = nix::sys::statvfs::statvfs(p).ok()?;
    let f = s.fragment_size() as u64;
    let used = (s.blocks() as u64).saturating_sub(s.blocks_free() as u64) * f;
    // What the VE can reach: reserved blocks (the headroom) are not its.
    let total = used + s.blocks_available() as u64 * f;
    Some((
        used,
        total,
        (s.files() as u64).saturating_sub(s.files_free() as u64),
        s.files() as u64,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ve::test_annotations as ann;

    #[test]
    fn soft_and_hard() {
        assert_eq!(
            parse_limit("1G:2G", false).unwrap(),
            Limit {
                soft: 1 << 30,
                hard: 2 << 30
            }
        );
        assert_eq!(parse_limit("100M", false).unwrap().soft, 100 << 20);
        assert_eq!(parse_limit("1000:2000", true).unwrap().hard, 2000);
    }

    #[test]
    fn bad_limits_say_why() {
        let e = parse_limit("2G:1G", false).unwrap_err();
        assert!(e.contains("above the hard limit"), "{e}");
        let e = parse_limit("1M", false).unwrap_err();
        assert!(e.contains("smallest private area"), "{e}");
        let e = parse_limit("unlimited", false).unwrap_err();
        assert!(e.contains("unlimited"), "{e}");
        let e = parse_limit("lots", true).unwrap_err();
        assert!(e.contains("not a number"), "{e}");
    }

    #[test]
    fn annotations() {
        let c = DiskConfig::parse(&ann(&[
            ("diskspace", "1G"),
            ("diskinodes", "5000"),
            ("disk.image", "/var/lib/x.img"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(c.space.hard, 1 << 30);
        assert_eq!(c.inodes.unwrap().hard, 5000);
        assert_eq!(c.image.as_deref(), Some(Path::new("/var/lib/x.img")));
        let e = DiskConfig::parse(&ann(&[("diskinodes", "5000")]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "annotation io.vzrun.diskinodes: needs io.vzrun.diskspace"
        );
        let e = DiskConfig::parse(&ann(&[("diskspace", "1G"), ("disk.image", "rel.img")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("io.vzrun.disk.image: rel.img is not an absolute path"),
            "{e}"
        );
        assert!(DiskConfig::parse(&ann(&[])).unwrap().is_none());
    }

    #[test]
    fn inodes_fit_ext4_and_the_area() {
        assert_eq!(
            parse_limit("4294967295", true).unwrap().hard,
            u32::MAX as u64
        );
        let e = parse_limit("4294967296", true).unwrap_err();
        assert_eq!(e, "4294967296 is out of range (64..4294967295)");
        let ok = DiskConfig::parse(&ann(&[("diskspace", "32M"), ("diskinodes", "32768")]));
        assert_eq!(ok.unwrap().unwrap().inodes.unwrap().hard, 32768);
        let e = DiskConfig::parse(&ann(&[("diskspace", "32M"), ("diskinodes", "100:32769")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("annotation io.vzrun.diskinodes: 32769 is more than one inode per 1024")
                && e.contains("at most 32768"),
            "{e}"
        );
    }

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        // The CRC-32C check value of "123456789" is 0xE3069283 (with the final inversion).
        assert_eq!(!crc32c(!0, b"123456789"), 0xE306_9283);
    }

    #[test]
    fn superblock_edit_needs_ext4_and_sets_the_fields() {
        let mut sb = [0u8; 1024];
        assert!(edit_superblock(&mut sb, 1, 65534).is_err());
        sb[SB_MAGIC..SB_MAGIC + 2].copy_from_slice(&0xEF53u16.to_le_bytes());
        sb[SB_FEATURE_RO_COMPAT..SB_FEATURE_RO_COMPAT + 4]
            .copy_from_slice(&RO_COMPAT_METADATA_CSUM.to_le_bytes());
        edit_superblock(&mut sb, 5000, 65534).unwrap();
        assert_eq!(le32(&sb, SB_R_BLOCKS_LO), 5000);
        assert_eq!(
            u16::from_le_bytes([sb[SB_DEF_RESUID], sb[SB_DEF_RESUID + 1]]),
            65534
        );
        assert_eq!(le32(&sb, SB_CHECKSUM), crc32c(!0, &sb[..SB_CHECKSUM]));
        assert!(edit_superblock(&mut sb, 1 << 33, 0).is_err(), "32-bit fs");
    }

    #[test]
    fn overlay_options_are_escaped() {
        assert_eq!(escape(Path::new("/a,b:c")), "/a\\,b\\:c");
    }

    #[test]
    fn teardown_of_an_empty_record_is_harmless() {
        teardown(&DiskRecord::default());
    }
}
