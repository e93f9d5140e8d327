//! Sparse files: where a file's data is (SEEK_DATA/SEEK_HOLE), and a copy that keeps its
//! holes. A private area's disk image is mostly holes: a copy or a migration that read it
//! whole would move gigabytes of zeros.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::unistd::{lseek, Whence};

/// Bytes moved at a time where the kernel cannot copy in place.
const CHUNK: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
#[error("copy {} to {}: {op}: {source}", .from.display(), .to.display())]
pub struct CopyError {
    pub from: PathBuf,
    pub to: PathBuf,
    pub op: &'static str,
    #[source]
    pub source: std::io::Error,
}

/// The data regions of a file of `size` bytes, as (offset, length). A filesystem that
/// does not track holes reports the whole file as data.
pub fn data_regions(f: &File, size: u64) -> Vec<(u64, u64)> {
    let fd = f.as_raw_fd();
    let mut out = Vec::new();
    let mut pos: i64 = 0;
    while (pos as u64) < size {
        // ENXIO: no data after `pos`, the rest is a hole.
        let Ok(data) = lseek(fd, pos, Whence::SeekData) else {
            break;
        };
        let end = lseek(fd, data, Whence::SeekHole).unwrap_or(size as i64);
        out.push((data as u64, (end - data) as u64));
        pos = end;
    }
    out
}

/// Copies `from` to `to` (made, or overwritten), only its data regions: holes stay holes,
/// and where both are on one filesystem that can share extents (btrfs, xfs) the kernel
/// shares them instead of copying. A failed copy leaves no `to` behind.
pub fn copy(from: &Path, to: &Path) -> Result<(), CopyError> {
    let fail = |op: &'static str| {
        move |source| CopyError {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
            op,
            source,
        }
    };
    let src = File::open(from).map_err(fail("open the source"))?;
    let meta = src.metadata().map_err(fail("stat the source"))?;
    let dst = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(meta.permissions().mode() & 0o7777)
        .open(to)
        .map_err(fail("create the copy"))?;
    let copied = (|| {
        dst.set_len(meta.len())?;
        for (off, len) in data_regions(&src, meta.len()) {
            copy_range(&src, &dst, off, off + len)?;
        }
        Ok(())
    })();
    if let Err(e) = copied {
        let _ = std::fs::remove_file(to);
        return Err(fail("write the copy")(e));
    }
    Ok(())
}

/// Copies bytes `start..end` to the same offsets, in the kernel where it can.
fn copy_range(src: &File, dst: &File, start: u64, end: u64) -> std::io::Result<()> {
    let (mut i, mut o) = (start as i64, start as i64);
    while (i as u64) < end {
        let left = (end - i as u64) as usize;
        match nix::fcntl::copy_file_range(src, Some(&mut i), dst, Some(&mut o), left) {
            // The source got shorter since its size was read: the rest stays a hole.
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(Errno::EINTR) => {}
            // Across filesystems, or where the kernel cannot: read and write.
            Err(Errno::EXDEV | Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => {
                return copy_by_reading(src, dst, i as u64, end)
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn copy_by_reading(src: &File, dst: &File, start: u64, end: u64) -> std::io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    let mut off = start;
    while off < end {
        let want = (end - off).min(CHUNK as u64) as usize;
        let n = src.read_at(&mut buf[..want], off)?;
        if n == 0 {
            return Ok(());
        }
        dst.write_all_at(&buf[..n], off)?;
        off += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_keeps_data_and_holes() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let f = File::create(&a).unwrap();
        f.set_len(64 << 20).unwrap();
        f.write_all_at(b"start", 0).unwrap();
        f.write_all_at(b"middle", 40 << 20).unwrap();
        std::fs::write(&b, b"old content, longer than nothing").unwrap();
        copy(&a, &b).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        let copied = File::open(&b).unwrap();
        let data: u64 = data_regions(&copied, 64 << 20).iter().map(|r| r.1).sum();
        assert!(data < 8 << 20, "holes were filled: {data} bytes of data");
    }

    #[test]
    fn a_failed_copy_names_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let e = copy(&dir.path().join("none"), &dir.path().join("b")).unwrap_err();
        assert!(
            e.to_string().contains("none") && e.to_string().contains("open"),
            "{e}"
        );
        assert!(!dir.path().join("b").exists());
    }
}
