//! CRIU's cache of what it learns about the kernel ("kerndat"). Every CRIU process
//! starts by probing the kernel (it makes a network namespace and a veth pair, parses the
//! vDSO, tries userfaultfd, ...): 20-55 ms here, and in a migration that happens three
//! times while the VE is frozen (the source's dump, the destination's lazy-pages daemon
//! and its restore). CRIU skips the probes when it finds `/run/criu.kdat`, but it writes
//! that file only where /run is a tmpfs (so that a reboot forgets it), and on this kind
//! of host /run is not.
//!
//! vzrun keeps the cache on a small tmpfs of its own mounted at /run/vzrun-criu-kdat,
//! a directory only root can make or write: CRIU itself writes the cache there once (a
//! `criu check` whose /run is that directory, in a mount namespace of its own), and
//! `/run/criu.kdat` becomes a link to it. The file is named after the CRIU binary's
//! identity, so a CRIU upgraded in place makes a new one. A reboot takes the tmpfs away
//! and leaves the link pointing into the empty, root-owned directory under it, which
//! CRIU takes as no cache. (Not /dev/shm: anyone may create a directory there, and after
//! a reboot the link would lead every root CRIU on the host to a cache a user planted.)

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::criu::binary;

/// Where CRIU (running as root) looks for its cache; fixed in CRIU.
const CRIU_KDAT: &str = "/run/criu.kdat";
const DIR: &str = "/run/vzrun-criu-kdat";

/// What [`ensure`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kdat {
    /// CRIU keeps its own cache here (/run is a tmpfs, or the file is someone else's).
    CriusOwn,
    /// vzrun's cache for this CRIU is in place already.
    Linked,
    /// Made now, at this path.
    Made(PathBuf),
    /// No cache: CRIU probes the kernel on each start. Says why.
    Without(String),
}

/// Makes sure CRIU finds a kerndat cache. Never fails: without a cache CRIU only starts
/// slower.
pub fn ensure() -> Kdat {
    if !nix::unistd::geteuid().is_root() {
        return Kdat::Without("not root: CRIU keeps its cache elsewhere".into());
    }
    match nix::sys::statfs::statfs("/run") {
        Ok(s) if s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC => return Kdat::CriusOwn,
        Err(e) => return Kdat::Without(format!("statfs /run: {e}")),
        Ok(_) => {}
    }
    let Ok(bin) = binary() else {
        return Kdat::Without("no CRIU".into());
    };
    let Ok(meta) = std::fs::metadata(&bin) else {
        return Kdat::Without(format!("stat {}", bin.display()));
    };
    let stamp = crate::sys::hash::short(&[
        bin.as_os_str().as_encoded_bytes(),
        &meta.len().to_le_bytes(),
        &meta.mtime().to_le_bytes(),
        &meta.mtime_nsec().to_le_bytes(),
    ]);
    let dir = PathBuf::from(DIR).join(format!("{stamp:016x}"));
    let cache = dir.join("criu.kdat");
    let link = Path::new(CRIU_KDAT);
    match std::fs::symlink_metadata(link) {
        // A real file: CRIU's own (or another tool's); not ours to replace.
        Ok(m) if !m.file_type().is_symlink() => return Kdat::CriusOwn,
        Ok(_) if std::fs::read_link(link).is_ok_and(|t| t == cache) && trusted(&cache) => {
            return Kdat::Linked
        }
        _ => {}
    }
    if let Err(e) = private_dir(Path::new(DIR))
        .and_then(|()| private_tmpfs(Path::new(DIR)))
        .and_then(|()| private_dir(&dir))
    {
        return Kdat::Without(e);
    }
    if !trusted(&cache) {
        // A half-written file of an earlier attempt would make CRIU's O_EXCL create fail.
        let _ = std::fs::remove_file(dir.join("criu.kdat.tmp"));
        let _ = std::fs::remove_file(&cache);
        if let Err(e) = make(&bin, &dir) {
            return Kdat::Without(e);
        }
        if !trusted(&cache) {
            return Kdat::Without(format!("criu check wrote no {}", cache.display()));
        }
    }
    // Swapped in by rename, so a CRIU starting meanwhile sees the old link or the new.
    let tmp = PathBuf::from(format!("{CRIU_KDAT}.vzrun-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    if let Err(e) =
        std::os::unix::fs::symlink(&cache, &tmp).and_then(|()| std::fs::rename(&tmp, link))
    {
        let _ = std::fs::remove_file(&tmp);
        return Kdat::Without(format!("link {CRIU_KDAT}: {e}"));
    }
    // The caches of other CRIU binaries (replaced, or another VZRUN_CRIU) are no longer
    // linked: nothing reads them, and the tmpfs would collect one per binary.
    if let Ok(entries) = std::fs::read_dir(DIR) {
        for e in entries.flatten() {
            if e.path() != dir {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    Kdat::Made(cache)
}

/// A directory only root may write, made if missing; refused when someone else made it
/// (a directory someone else made could hold a cache planted for CRIU).
fn private_dir(dir: &Path) -> Result<(), String> {
    match std::fs::create_dir(dir) {
        Ok(()) => {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| format!("chmod {}: {e}", dir.display()))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("create {}: {e}", dir.display())),
    }
    let m = std::fs::symlink_metadata(dir).map_err(|e| format!("stat {}: {e}", dir.display()))?;
    if !m.is_dir() || m.uid() != 0 || m.mode() & 0o022 != 0 {
        return Err(format!(
            "{} is not a directory that only root can write",
            dir.display()
        ));
    }
    Ok(())
}

/// A tmpfs on `dir`, mounted now unless one is there already: what a reboot forgets.
fn private_tmpfs(dir: &Path) -> Result<(), String> {
    use nix::mount::{mount, MsFlags};
    use nix::sys::statfs::{statfs, TMPFS_MAGIC};
    if statfs(dir).is_ok_and(|s| s.filesystem_type() == TMPFS_MAGIC) {
        return Ok(());
    }
    mount(
        Some("vzrun-criu-kdat"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=0700,size=4m"),
    )
    .map_err(|e| format!("mount a tmpfs on {}: {e}", dir.display()))
}

/// A regular file owned by root that nobody else can write.
fn trusted(p: &Path) -> bool {
    std::fs::symlink_metadata(p)
        .is_ok_and(|m| m.is_file() && m.uid() == 0 && m.mode() & 0o022 == 0 && m.len() > 0)
}

/// Runs `criu check` with `dir` as its /run, in a mount namespace of its own, so that
/// CRIU saves its cache into `dir`.
fn make(bin: &Path, dir: &Path) -> Result<(), String> {
    use nix::mount::{mount, MsFlags};
    let target = dir.to_path_buf();
    let mut cmd = Command::new(bin);
    cmd.arg("check")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: between fork and exec the child only makes syscalls (nix passes these short
    // paths through stack buffers, nothing is allocated); the parent is unaffected.
    unsafe {
        cmd.pre_exec(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
            // The host must not see the bind below.
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_SLAVE,
                None::<&str>,
            )?;
            mount(
                Some(target.as_path()),
                "/run",
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )?;
            Ok(())
        });
    }
    let st = cmd
        .status()
        .map_err(|e| format!("run {} check: {e}", bin.display()))?;
    if !st.success() {
        return Err(format!("{} check: {st}", bin.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cache_others_can_write_is_not_trusted() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("kdat");
        private_dir(&dir).unwrap();
        let cache = dir.join("criu.kdat");
        std::fs::write(&cache, b"kdat").unwrap();
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(trusted(&cache));
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(!trusted(&cache));
        // Made by someone who lets others write: refused, not taken over.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(private_dir(&dir).is_err());
    }
}
