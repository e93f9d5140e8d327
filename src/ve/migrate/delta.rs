//! The rootfs's second pass, with the VE frozen (vzmigrate's second rsync): the first
//! pass copied the tree while the VE ran and remembered what it saw of each entry; this
//! one sends what changed since, so the destination has every byte written before the
//! freeze, with the names deleted, made and renamed meanwhile.
//!
//! On the wire: DELTA frames first, each a flag byte (1: another DELTA follows) and
//! NUL-terminated names (relative, no `..`) the destination removes, directories with
//! what is in them; then the rootfs stream of TAR frames and END with the entries that
//! are new or changed, and the directories above them (so their times come out right
//! after what was made in them).

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::File;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::channel::{kind, Channel, CHUNK};
use super::streams::{
    append_entry, append_top, handle_at, listed, magic, next_entry, recv_tree, unwrap_io,
};
use super::streams::{Pending, TarFrames};
use super::{file_err, MigError};

/// Closer to the moment it was looked at than this, an entry's change time may not
/// tell a later change from this one (timestamps come from a clock that ticks every
/// few ms): such an entry is sent again whatever its times say, as git treats a
/// "racily clean" file.
const RACY: Duration = Duration::from_millis(50);

/// What the first pass saw of one entry: enough that any later change to its contents
/// or metadata shows (the change time moves with every one of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attrs {
    /// The file type bits of the mode.
    pub kind: u32,
    pub ino: u64,
    pub size: u64,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Sent again regardless: it changed while it was read, or too recently to tell.
    pub stale: bool,
}

impl Attrs {
    pub fn of(meta: &std::fs::Metadata) -> Attrs {
        let ctime = (meta.ctime(), meta.ctime_nsec());
        Attrs {
            kind: meta.mode() & libc::S_IFMT,
            ino: meta.ino(),
            size: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            stale: racy(ctime, SystemTime::now()),
        }
    }

    /// The same entry, unchanged (whether either is stale aside).
    pub fn same(&self, o: &Attrs) -> bool {
        Attrs {
            stale: false,
            ..*self
        } == Attrs { stale: false, ..*o }
    }
}

/// Whether a change time of `ctime` is within [`RACY`] of `now` (or after it).
fn racy(ctime: (i64, i64), now: SystemTime) -> bool {
    let Ok(now) = now.duration_since(SystemTime::UNIX_EPOCH) else {
        return true;
    };
    let (Ok(s), Ok(ns)) = (u64::try_from(ctime.0), u32::try_from(ctime.1)) else {
        return true;
    };
    let ctime = Duration::new(s, ns.min(999_999_999));
    now.saturating_sub(ctime) < RACY
}

/// What the first pass saw, by the entry's name in the archive ("." for the top).
/// One record per entry of the tree: its memory is the tree's number of names.
pub type Manifest = HashMap<PathBuf, Attrs>;

/// How an entry compares with what the first pass saw.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    Same,
    /// Sent again: new, stale, or any attribute moved.
    Changed,
    /// Another kind of file under the same name: removed first, then sent.
    Retyped,
}

pub fn compare(before: Option<&Attrs>, now: &Attrs) -> Change {
    match before {
        None => Change::Changed,
        Some(b) if b.kind != now.kind => Change::Retyped,
        Some(b) if b.stale || !b.same(now) => Change::Changed,
        Some(_) => Change::Same,
    }
}

/// What the frozen pass sent.
#[derive(Debug, Default)]
pub struct DeltaSent {
    /// Entries archived (new or changed, and the directories above them).
    pub entries: u64,
    /// Names removed on the destination (before what replaces them is sent).
    pub removed: u64,
    /// The archive's size.
    pub bytes: u64,
}

/// The names `walk` found changed, and those to remove first.
struct Found {
    changed: Vec<PathBuf>,
    remove: Vec<PathBuf>,
}

/// Walks `top` as the first pass did (each name looked up in its directory's handle,
/// no link followed) comparing each entry with `seen`; what is left in `seen` is gone.
fn walk(top: &std::rc::Rc<File>, mut seen: Manifest) -> std::io::Result<Found> {
    use std::os::unix::fs::FileTypeExt;
    let dot = PathBuf::from(".");
    let mut found = Found {
        changed: Vec::new(),
        remove: Vec::new(),
    };
    if compare(seen.remove(&dot).as_ref(), &Attrs::of(&top.metadata()?)) != Change::Same {
        found.changed.push(dot.clone());
    }
    let mut todo: Vec<Pending> = listed(top.clone(), &dot)?.into_iter().rev().collect();
    // The VE is frozen, but another writer of a shared tree may not be: what went since
    // the listing is gone, as if it had gone before.
    while let Some((name, handle)) = next_entry(&mut todo)? {
        let meta = handle.metadata()?;
        if meta.file_type().is_socket() {
            continue;
        }
        let now = Attrs::of(&meta);
        match compare(seen.remove(&name).as_ref(), &now) {
            Change::Same => {}
            Change::Changed if meta.is_dir() => found.changed.push(name.clone()),
            // A file sent again replaces the destination's: removed first, so that a
            // hard link or a node can be made under its name.
            Change::Changed | Change::Retyped => {
                found.remove.push(name.clone());
                found.changed.push(name.clone());
            }
        }
        if meta.is_dir() {
            let d = crate::sys::fs::reopen(
                &handle,
                nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY,
            )?;
            todo.extend(listed(std::rc::Rc::new(d), &name)?.into_iter().rev());
        }
    }
    found.remove.extend(seen.into_keys());
    found.remove = topmost(found.remove);
    Ok(found)
}

/// `names` sorted, without those inside another of them (removed with it).
fn topmost(mut names: Vec<PathBuf>) -> Vec<PathBuf> {
    names.sort();
    names.dedup();
    let mut out: Vec<PathBuf> = Vec::with_capacity(names.len());
    for n in names {
        if out.last().is_some_and(|l| n.starts_with(l)) {
            continue;
        }
        out.push(n);
    }
    out
}

/// The frozen pass over `root` (see the module's description), against what the first
/// pass saw.
pub fn send_delta(ch: &mut Channel, root: &Path, seen: Manifest) -> Result<DeltaSent, MigError> {
    let top = std::rc::Rc::new(File::open(root).map_err(file_err("open", root))?);
    let found = walk(&top, seen).map_err(|e| unwrap_io(e, "compare", root))?;
    let mut sent = DeltaSent {
        removed: found.remove.len() as u64,
        ..Default::default()
    };
    send_removals(ch, &found.remove)?;
    drop(found.remove);

    let mut out = TarFrames::new(ch);
    let mut b = tar::Builder::new(&mut out);
    b.follow_symlinks(false);
    let mut linked = HashMap::new();
    let mut done: HashSet<PathBuf> = HashSet::new();
    let archived = (|| -> std::io::Result<u64> {
        let mut n = 0;
        for name in &found.changed {
            // The directories above first (the walk's order has each after them).
            let mut above: Vec<&Path> = name.ancestors().skip(1).collect();
            above.reverse();
            for p in above.into_iter().chain(std::iter::once(name.as_path())) {
                if p.as_os_str().is_empty() || !done.insert(p.to_path_buf()) {
                    continue;
                }
                n += 1;
                if p == Path::new(".") {
                    append_top(&mut b, &top, None)?;
                    continue;
                }
                let handle = handle_at(&top, p.as_os_str())?;
                append_entry(&mut b, &mut linked, &handle, p)?;
            }
        }
        Ok(n)
    })();
    sent.entries = archived.map_err(|e| unwrap_io(e, "archive", root))?;
    b.into_inner()
        .and_then(|out| out.flush())
        .map_err(|e| unwrap_io(e, "archive", root))?;
    sent.bytes = out.sent;
    ch.send(kind::END, &[])?;
    Ok(sent)
}

/// The names to remove, in DELTA frames of at most a chunk each (at least one frame).
fn send_removals(ch: &mut Channel, names: &[PathBuf]) -> Result<(), MigError> {
    let mut frame = vec![0u8];
    for n in names {
        // The archive's names start with "./"; the destination takes plain relative ones.
        let n = n.strip_prefix(".").unwrap_or(n).as_os_str().as_bytes();
        if frame.len() + n.len() + 1 > CHUNK && frame.len() > 1 {
            frame[0] = 1;
            ch.send(kind::DELTA, &frame)?;
            frame.truncate(1);
            frame[0] = 0;
        }
        frame.extend_from_slice(n);
        frame.push(0);
    }
    ch.send(kind::DELTA, &frame)
}

/// A name to remove, from the peer: relative, each component a plain name.
pub fn removal_name(bytes: &[u8]) -> Result<&Path, MigError> {
    let p = Path::new(OsStr::from_bytes(bytes));
    let plain = p.components().all(|c| matches!(c, Component::Normal(_)));
    if bytes.is_empty() || !plain || p.file_name().is_none() {
        return Err(MigError::Protocol(format!(
            "the rootfs delta names {:?} for removal: not a relative name inside the rootfs",
            String::from_utf8_lossy(bytes)
        )));
    }
    Ok(p)
}

/// Removes `name` under `base` (a handle to the rootfs): each directory on the way
/// looked up beneath the one before, no link followed, so a link the tree holds cannot
/// lead the removal onto the host. A directory goes with what is in it; a name that is
/// not there is fine (the pass may name what the first pass never made).
fn remove_in(base: &File, name: &Path) -> std::io::Result<()> {
    use nix::fcntl::{OFlag, ResolveFlag};
    let (Some(parent), Some(last)) = (name.parent(), name.file_name()) else {
        return Ok(());
    };
    let opened;
    let dir = if parent.as_os_str().is_empty() {
        base
    } else {
        match crate::sys::fs::open_at(
            base,
            parent,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW,
            nix::sys::stat::Mode::empty(),
            ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS,
        ) {
            Ok(d) => {
                opened = d;
                &opened
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
    };
    let meta = match handle_at(dir, last) {
        Ok(h) => h.metadata()?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if meta.is_dir() {
        // std's removal opens the last name without following it and goes on by
        // descriptors; the way there is the directory just opened, by its magic link.
        std::fs::remove_dir_all(magic(dir).join(last))
    } else {
        nix::unistd::unlinkat(
            Some(std::os::fd::AsRawFd::as_raw_fd(dir)),
            last,
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        )
        .map_err(std::io::Error::from)
    }
}

/// The frozen pass into `dest`, from its first DELTA frame `first`: the removals, then
/// the entries (unpacked as the first pass's were: confined, with free space checked).
/// Returns how many names were removed.
pub fn recv_delta(ch: &mut Channel, first: Vec<u8>, dest: &Path) -> Result<u64, MigError> {
    let base = crate::sys::fs::open_dir_nofollow(dest).map_err(file_err("open", dest))?;
    let mut frame = first;
    let mut removed = 0;
    loop {
        let Some((&more, names)) = frame.split_first() else {
            return Err(MigError::Protocol("an empty rootfs delta frame".into()));
        };
        for n in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
            let name = removal_name(n)?;
            remove_in(&base, name).map_err(file_err("remove", &dest.join(name)))?;
            removed += 1;
        }
        if more == 0 {
            break;
        }
        frame = ch.expect(kind::DELTA)?;
    }
    let (k, p) = ch.recv()?;
    if k != kind::TAR {
        return Err(MigError::Protocol(format!(
            "frame {} where the rootfs delta's entries belong",
            kind::name(k)
        )));
    }
    recv_tree(ch, p, dest)?;
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn attrs() -> Attrs {
        Attrs {
            kind: libc::S_IFREG,
            ino: 7,
            size: 100,
            mtime: (1_700_000_000, 5),
            ctime: (1_700_000_000, 5),
            mode: 0o644,
            uid: 0,
            gid: 0,
            stale: false,
        }
    }

    #[test]
    fn any_moved_attribute_is_a_change_and_another_kind_a_retype() {
        let a = attrs();
        assert_eq!(compare(Some(&a), &a), Change::Same);
        assert_eq!(compare(None, &a), Change::Changed);
        // Stale on either side of the comparison only counts for what was seen first.
        assert_eq!(compare(Some(&a), &Attrs { stale: true, ..a }), Change::Same);
        assert_eq!(
            compare(Some(&Attrs { stale: true, ..a }), &a),
            Change::Changed
        );
        for now in [
            Attrs { size: 101, ..a },
            Attrs { ino: 8, ..a },
            Attrs {
                ctime: (1_700_000_000, 6),
                ..a
            },
            Attrs {
                mtime: (1_700_000_001, 5),
                ..a
            },
            Attrs { mode: 0o600, ..a },
            Attrs { uid: 1, ..a },
            Attrs { gid: 1, ..a },
        ] {
            assert_eq!(compare(Some(&a), &now), Change::Changed, "{now:?}");
        }
        let dir = Attrs {
            kind: libc::S_IFDIR,
            ..a
        };
        assert_eq!(compare(Some(&a), &dir), Change::Retyped);
    }

    #[test]
    fn a_change_time_close_to_now_is_racy() {
        let t = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 0);
        assert!(racy((1_700_000_000, 0), t));
        assert!(racy((1_700_000_000, 0), t + Duration::from_millis(10)));
        assert!(racy((1_700_000_001, 0), t), "a time ahead of ours");
        assert!(!racy((1_700_000_000, 0), t + Duration::from_secs(1)));
    }

    #[test]
    fn removals_name_only_what_is_inside() {
        for ok in ["a", "a/b", "etc/passwd", "a b/.hidden"] {
            assert_eq!(removal_name(ok.as_bytes()).unwrap(), Path::new(ok));
        }
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/../../b",
            "/etc",
            "/",
            "./a",
            "a/..",
        ] {
            let e = removal_name(bad.as_bytes()).err().map(|e| e.to_string());
            assert!(
                e.as_deref()
                    .is_some_and(|e| e.contains("not a relative name")),
                "{bad:?}: {e:?}"
            );
        }
    }

    #[test]
    fn only_the_topmost_of_removed_names_is_sent() {
        let names = ["./a/b", "./a", "./c/d", "./a-b", "./c/d/e", "./a"]
            .map(PathBuf::from)
            .to_vec();
        assert_eq!(
            topmost(names),
            ["./a", "./a-b", "./c/d"].map(PathBuf::from).to_vec()
        );
    }

    /// Sends `src` as a move does, through a real channel into `dst`: the first pass,
    /// then `between` (the VE changing its files), then the frozen pass.
    fn two_passes(src: &Path, dst: &Path, between: impl FnOnce()) -> DeltaSent {
        let dst2 = dst.to_path_buf();
        let (mut ch, srv) = crate::ve::migrate::channel::test_pair(move |ch| {
            let first = ch.expect(kind::TAR).unwrap();
            recv_tree(ch, first, &dst2).unwrap();
            let first = ch.expect(kind::DELTA).unwrap();
            let removed = recv_delta(ch, first, &dst2).unwrap();
            assert_eq!(ch.recv().unwrap().0, kind::OK);
            removed
        });
        let mut seen = Manifest::new();
        super::super::streams::send_tree(&mut ch, src, Some(&mut seen)).unwrap();
        between();
        let sent = send_delta(&mut ch, src, seen).unwrap();
        ch.send(kind::OK, &[]).unwrap();
        assert_eq!(srv.join().unwrap(), sent.removed);
        sent
    }

    /// What `tar` of the tree lists: names, kinds, sizes, modes, owners and contents.
    fn listing(root: &Path) -> Vec<String> {
        let o = std::process::Command::new("sh")
            .arg("-c")
            .arg("find . -printf '%p %y %s %m %U %G %l\\n' | sort; find . -type f | sort | xargs md5sum")
            .current_dir(root)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| !l.starts_with(". d"))
            .map(|l| {
                // Directories' sizes are the filesystem's business.
                let f: Vec<&str> = l.split(' ').collect();
                if f.get(1) == Some(&"d") {
                    format!("{} d {}", f[0], f[3..].join(" "))
                } else {
                    l.to_string()
                }
            })
            .collect()
    }

    #[test]
    fn a_frozen_pass_brings_the_destination_up_to_date() {
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
        for d in ["etc", "var/log", "gone/deep", "retyped", "same"] {
            std::fs::create_dir_all(src.join(d)).unwrap();
        }
        std::fs::create_dir_all(&dst).unwrap();
        std::fs::write(src.join("var/log/app.log"), b"1\n2\n").unwrap();
        std::fs::write(src.join("gone/deep/f"), b"x").unwrap();
        std::fs::write(src.join("etc/old-name"), b"renamed").unwrap();
        std::fs::write(src.join("file-to-dir"), b"f").unwrap();
        std::fs::write(src.join("retyped/in"), b"d").unwrap();
        std::fs::write(src.join("same/kept"), b"kept").unwrap();
        std::fs::write(src.join("etc/mode"), b"m").unwrap();
        std::fs::write(src.join("etc/linked"), b"one").unwrap();
        std::fs::hard_link(src.join("etc/linked"), src.join("etc/link2")).unwrap();
        let old = SystemTime::now() - Duration::from_secs(60);
        // Times well before the first pass: nothing is racy but what the test changes.
        for e in walkdir(&src) {
            let _ = std::fs::File::open(&e).and_then(|f| f.set_modified(old));
        }
        std::thread::sleep(RACY * 2);
        let s = src.clone();
        let sent = two_passes(&src, &dst, move || {
            use std::io::Write as _;
            let mut log = std::fs::OpenOptions::new()
                .append(true)
                .open(s.join("var/log/app.log"))
                .unwrap();
            log.write_all(b"3\n").unwrap();
            std::fs::remove_dir_all(s.join("gone")).unwrap();
            std::fs::rename(s.join("etc/old-name"), s.join("etc/new-name")).unwrap();
            std::fs::remove_file(s.join("file-to-dir")).unwrap();
            std::fs::create_dir_all(s.join("file-to-dir/sub")).unwrap();
            std::fs::remove_dir_all(s.join("retyped")).unwrap();
            std::os::unix::fs::symlink("/etc/passwd", s.join("retyped")).unwrap();
            std::fs::set_permissions(s.join("etc/mode"), PermissionsExt::from_mode(0o600)).unwrap();
            std::fs::write(s.join("etc/linked"), b"two").unwrap();
        });
        assert!(listing(&src).len() > 10, "{:?}", listing(&src));
        assert_eq!(listing(&src), listing(&dst));
        assert_eq!(
            std::fs::metadata(dst.join("etc/linked")).unwrap().ino(),
            std::fs::metadata(dst.join("etc/link2")).unwrap().ino()
        );
        assert_eq!(
            std::fs::read(dst.join("var/log/app.log")).unwrap(),
            b"1\n2\n3\n"
        );
        // Removed: gone (whole), old-name, file-to-dir, retyped; and each file sent again.
        assert!(sent.removed >= 4, "{sent:?}");
        // Not the whole tree again: "same" and what is in it stayed.
        assert!(
            sent.entries < listing(&src).len() as u64 / 2 + 8,
            "{sent:?}"
        );
    }

    fn walkdir(root: &Path) -> Vec<PathBuf> {
        let mut out = vec![root.to_path_buf()];
        let mut i = 0;
        while i < out.len() {
            if let Ok(rd) = std::fs::read_dir(&out[i]) {
                out.extend(rd.flatten().map(|e| e.path()));
            }
            i += 1;
        }
        out
    }

    #[test]
    fn removal_stays_beneath_the_tree_and_takes_directories_whole() {
        let host = tempfile::tempdir().unwrap();
        std::fs::write(host.path().join("precious"), b"x").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("d/sub")).unwrap();
        std::fs::write(root.join("d/sub/f"), b"1").unwrap();
        std::fs::write(root.join("f"), b"2").unwrap();
        std::os::unix::fs::symlink(host.path(), root.join("l")).unwrap();
        let base = crate::sys::fs::open_dir_nofollow(root).unwrap();
        // Through a link: refused, nothing on the host goes.
        assert!(remove_in(&base, Path::new("l/precious")).is_err());
        assert!(host.path().join("precious").exists());
        // The link itself goes, not what it points at.
        remove_in(&base, Path::new("l")).unwrap();
        assert!(host.path().join("precious").exists());
        assert!(root.join("l").symlink_metadata().is_err());
        remove_in(&base, Path::new("d")).unwrap();
        remove_in(&base, Path::new("f")).unwrap();
        remove_in(&base, Path::new("never/there")).unwrap();
        assert_eq!(std::fs::read_dir(root).unwrap().count(), 0);
    }
}
