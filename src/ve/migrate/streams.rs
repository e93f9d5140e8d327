//! What a migration sends: files in chunks (CRIU's images), the private area's disk image
//! (sparse, and later passes with only the chunks that changed) and the rootfs as a tar
//! stream.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::channel::{kind, Channel, CHUNK};
use super::delta::{Attrs, Manifest};
use super::{file_err, MigError};
use crate::sys::sparse;

/// The header of a file sent in chunks.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FileHeader {
    /// Which file: a name in the receiver's directory for this kind.
    pub name: String,
    /// "image" (checkpoint images) or "disk" (the private area's image).
    pub kind: String,
    pub size: u64,
    pub mode: u32,
    /// For disk: a later pass over a file the receiver already has.
    #[serde(default)]
    pub update: bool,
}

/// A chunk's content hash (SHA-256, the project's one content hash, cut to 64 bits): a
/// changed chunk is told from an unchanged one between two passes over the same image.
fn chunk_hash(data: &[u8]) -> u64 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(data);
    u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// Sends a disk image: on the first pass every data chunk (holes stay holes), on later
/// passes only chunks whose hash changed. `hashes` keeps what was sent, per chunk index.
pub fn send_disk(
    ch: &mut Channel,
    path: &Path,
    name: &str,
    hashes: &mut std::collections::HashMap<u64, u64>,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, MigError> {
    let f = File::open(path).map_err(file_err("open", path))?;
    let size = f.metadata().map_err(file_err("stat", path))?.len();
    let update = !hashes.is_empty();
    ch.send_json(
        kind::FILE,
        &FileHeader {
            name: name.into(),
            kind: "disk".into(),
            size,
            mode: 0o600,
            update,
        },
    )?;
    let mut sent = 0u64;
    let mut buf = vec![0u8; CHUNK];
    let mut seen = std::collections::HashSet::new();
    for (start, len) in sparse::data_regions(&f, size) {
        let first = start / CHUNK as u64;
        let last = (start + len).div_ceil(CHUNK as u64);
        for idx in first..last {
            if !seen.insert(idx) {
                continue;
            }
            let off = idx * CHUNK as u64;
            let n = (size - off).min(CHUNK as u64) as usize;
            f.read_exact_at(&mut buf[..n], off)
                .map_err(file_err("read", path))?;
            let h = chunk_hash(&buf[..n]);
            let unchanged = hashes.get(&idx) == Some(&h);
            let zero_first = !update && buf[..n].iter().all(|&b| b == 0);
            hashes.insert(idx, h);
            if unchanged || zero_first {
                continue;
            }
            let mut frame = Vec::with_capacity(8 + n);
            frame.extend_from_slice(&off.to_le_bytes());
            frame.extend_from_slice(&buf[..n]);
            ch.send(kind::DATA, &frame)?;
            sent += n as u64;
            progress(sent);
        }
    }
    // A chunk that was data before and is a hole now must read as zeros there too.
    if update {
        let gone: Vec<u64> = hashes
            .keys()
            .copied()
            .filter(|i| !seen.contains(i))
            .collect();
        for idx in gone {
            let off = idx * CHUNK as u64;
            if off >= size {
                continue;
            }
            let n = (size - off).min(CHUNK as u64) as usize;
            let zero = vec![0u8; n];
            if hashes.get(&idx) == Some(&chunk_hash(&zero)) {
                continue;
            }
            hashes.insert(idx, chunk_hash(&zero));
            let mut frame = off.to_le_bytes().to_vec();
            frame.extend_from_slice(&zero);
            ch.send(kind::DATA, &frame)?;
            sent += n as u64;
        }
    }
    ch.send(kind::END, &[])?;
    Ok(sent)
}

/// Sends every regular file of a flat directory (CRIU's images).
pub fn send_dir(ch: &mut Channel, dir: &Path) -> Result<u64, MigError> {
    use std::os::unix::fs::PermissionsExt;
    let mut total = 0;
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map_err(file_err("list", dir))?
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .collect();
    names.sort_by_key(|e| e.file_name());
    for e in names {
        let path = e.path();
        let mut f = File::open(&path).map_err(file_err("open", &path))?;
        let meta = f.metadata().map_err(file_err("stat", &path))?;
        ch.send_json(
            kind::FILE,
            &FileHeader {
                name: e.file_name().to_string_lossy().into_owned(),
                kind: "image".into(),
                size: meta.len(),
                mode: meta.permissions().mode() & 0o777,
                update: false,
            },
        )?;
        let mut buf = vec![0u8; CHUNK];
        let mut off = 0u64;
        loop {
            let n = f.read(&mut buf).map_err(file_err("read", &path))?;
            if n == 0 {
                break;
            }
            let mut frame = off.to_le_bytes().to_vec();
            frame.extend_from_slice(&buf[..n]);
            ch.send(kind::DATA, &frame)?;
            off += n as u64;
        }
        ch.send(kind::END, &[])?;
        total += off;
    }
    ch.flush()?;
    Ok(total)
}

/// Receives one file announced by `header` into `dir` (its name must be a plain name).
pub fn recv_file(ch: &mut Channel, header: &FileHeader, path: &Path) -> Result<u64, MigError> {
    use std::os::unix::fs::OpenOptionsExt;
    // Images and pages are the VE's memory, written out whole: bounded like the rootfs.
    // (A private area's image arrives with its holes, within the size the host's
    // policy gave it.)
    if header.kind != "disk" {
        if let Some(dir) = path.parent() {
            room_for(dir, header.size, Path::new(&header.name))
                .map_err(file_err("receive", path))?;
        }
    }
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(!header.update)
        // Images and the private area hold the VE's memory and files: root's alone,
        // whatever mode the source's copy had (CRIU writes its images 0644).
        .mode(header.mode & 0o700)
        .open(path)
        .map_err(file_err("create", path))?;
    f.set_len(header.size).map_err(file_err("size", path))?;
    let mut got = 0u64;
    loop {
        let (k, p) = ch.recv()?;
        match k {
            kind::DATA if p.len() >= 8 => {
                let off = u64::from_le_bytes(p[..8].try_into().unwrap_or_default());
                if off
                    .checked_add((p.len() - 8) as u64)
                    .is_none_or(|end| end > header.size)
                {
                    return Err(MigError::Protocol(format!(
                        "{}: data beyond its size",
                        header.name
                    )));
                }
                f.write_all_at(&p[8..], off)
                    .map_err(file_err("write", path))?;
                got += (p.len() - 8) as u64;
            }
            kind::END => break,
            other => {
                return Err(MigError::Protocol(format!(
                    "{}: unexpected frame {other} in a file",
                    header.name
                )))
            }
        }
    }
    Ok(got)
}

/// A file name from the peer: one plain component, nothing that climbs out.
pub fn plain_name(name: &str) -> Result<&str, MigError> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(MigError::Protocol(format!("bad file name {name:?}")));
    }
    Ok(name)
}

/// Frames of the rootfs stream: what the tar builder writes goes out as TAR frames.
pub(super) struct TarFrames<'a> {
    pub(super) ch: &'a mut Channel,
    pub(super) buf: Vec<u8>,
    pub(super) sent: u64,
}

impl<'a> TarFrames<'a> {
    /// An archive's frames on `ch`, nothing sent yet.
    pub(super) fn new(ch: &'a mut Channel) -> Self {
        TarFrames {
            ch,
            buf: Vec::with_capacity(CHUNK),
            sent: 0,
        }
    }
}

impl TarFrames<'_> {
    fn send_buffered(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.ch
            .send(kind::TAR, &self.buf)
            .map_err(std::io::Error::other)?;
        self.sent += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }
}

impl Write for TarFrames<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send_buffered()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send_buffered()
    }
}

/// The channel's own error back out of the I/O error a tar builder or archive carries it
/// in; any other I/O error names what was done to which tree.
pub(super) fn unwrap_io(e: std::io::Error, what: &'static str, path: &Path) -> MigError {
    if e.get_ref().is_some_and(|i| i.is::<MigError>()) {
        if let Some(Ok(m)) = e.into_inner().map(|i| i.downcast::<MigError>()) {
            return *m;
        }
        return MigError::Protocol(format!("{what} {}", path.display()));
    }
    file_err(what, path)(e)
}

/// Streams a directory tree (the bundle's rootfs) as a tar archive in TAR frames, then
/// END; returns the archive's size. Owners are numbers; hard links stay links; sockets
/// are left out, and of the extended attributes the user.* ones go along: what
/// `tar --numeric-owner --xattrs` piped into its own extraction kept.
///
/// With `seen`, what each entry was found to be goes there, for [`super::delta`]'s
/// frozen pass.
pub fn send_tree(
    ch: &mut Channel,
    dir: &Path,
    seen: Option<&mut Manifest>,
) -> Result<u64, MigError> {
    let mut out = TarFrames::new(ch);
    let mut b = tar::Builder::new(&mut out);
    b.follow_symlinks(false);
    append_tree(&mut b, dir, seen).map_err(|e| unwrap_io(e, "archive", dir))?;
    b.into_inner()
        .and_then(|out| out.flush())
        .map_err(|e| unwrap_io(e, "archive", dir))?;
    let sent = out.sent;
    ch.send(kind::END, &[])?;
    Ok(sent)
}

/// One name met in the walk: looked up in the directory handle it was listed from, never
/// by a path from the top. The tree is the VE's and is walked while the VE runs, so a
/// directory it swaps for a link to `/` after it was listed would otherwise lead the
/// walk, and the archive, into the host's files.
pub(super) struct Pending {
    pub(super) dir: std::rc::Rc<File>,
    pub(super) child: std::ffi::OsString,
    /// The directory's name in the archive, shared by its entries: a full name per
    /// waiting entry let a tenant's wide, deeply named tree cost the source's vzrun
    /// hundreds of MB.
    pub(super) parent: std::rc::Rc<PathBuf>,
}

/// `name` in the directory `dir`, as a bare handle to whatever it is (a link is not
/// followed).
pub(super) fn handle_at(dir: &File, name: &std::ffi::OsStr) -> std::io::Result<File> {
    use nix::fcntl::{OFlag, ResolveFlag};
    crate::sys::fs::open_at(
        dir,
        Path::new(name),
        OFlag::O_PATH | OFlag::O_NOFOLLOW,
        nix::sys::stat::Mode::empty(),
        ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS,
    )
}

pub(super) fn magic(f: &File) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd()))
}

/// The next entry of a walk (its name in the tree and a bare handle to it), taking the
/// walk's pending names in order. A name gone since its directory was listed (the VE
/// runs and may remove it) is passed over as if it had gone before: a later pass brings
/// what happened since.
pub(super) fn next_entry(todo: &mut Vec<Pending>) -> std::io::Result<Option<(PathBuf, File)>> {
    while let Some(Pending { dir, child, parent }) = todo.pop() {
        let name = parent.join(&child);
        drop(parent);
        match handle_at(&dir, &child) {
            Ok(h) => return Ok(Some((name, h))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// The names in an opened directory, sorted, each to be looked up in it.
pub(super) fn listed(dir: std::rc::Rc<File>, name: &Path) -> std::io::Result<Vec<Pending>> {
    let mut children = std::fs::read_dir(magic(&dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<Vec<_>>>()?;
    children.sort();
    // As deep as a path may be (PATH_MAX), as the walk by paths stopped before: one open
    // directory per level is held while its entries wait.
    if name.as_os_str().len() >= libc::PATH_MAX as usize {
        return Err(std::io::Error::other(format!(
            "{}: the tree is nested deeper than a path can name",
            name.display()
        )));
    }
    let parent = std::rc::Rc::new(name.to_path_buf());
    Ok(children
        .into_iter()
        .map(|child| Pending {
            dir: dir.clone(),
            parent: parent.clone(),
            child,
        })
        .collect())
}

fn append_tree<W: Write>(
    b: &mut tar::Builder<W>,
    root: &Path,
    mut seen: Option<&mut Manifest>,
) -> std::io::Result<()> {
    // The first name each file with several links was archived under.
    let mut linked: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let top = std::rc::Rc::new(File::open(root)?);
    let dot = PathBuf::from(".");
    append_top(b, &top, seen.as_deref_mut())?;
    // Sorted in the archive: popped from the end, so pushed in reverse.
    let mut todo: Vec<Pending> = listed(top, &dot)?.into_iter().rev().collect();
    while let Some((name, handle)) = next_entry(&mut todo)? {
        let Some((attrs, opened_dir)) = append_entry(b, &mut linked, &handle, &name)? else {
            continue;
        };
        if let Some(m) = seen.as_deref_mut() {
            m.insert(name.clone(), attrs);
        }
        if let Some(d) = opened_dir {
            todo.extend(listed(std::rc::Rc::new(d), &name)?.into_iter().rev());
        }
    }
    Ok(())
}

/// The tree's top as the archive's "." entry.
pub(super) fn append_top<W: Write>(
    b: &mut tar::Builder<W>,
    top: &File,
    seen: Option<&mut Manifest>,
) -> std::io::Result<()> {
    let meta = top.metadata()?;
    let mut header = tar::Header::new_gnu();
    header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
    let xattrs = user_xattrs(top)?;
    if !xattrs.is_empty() {
        b.append_pax_extensions(xattrs.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
    }
    let dot = PathBuf::from(".");
    if let Some(m) = seen {
        m.insert(dot.clone(), Attrs::of(&meta));
    }
    b.append_data(&mut header, &dot, std::io::empty())
}

/// Archives the entry `name`, found as the bare handle `handle`; returns what was seen of
/// it (the attributes as stat'ed before it was read) and, for a directory, the directory
/// opened to list. None for what is left out (sockets).
///
/// A regular file is archived at the size it had when stat'ed: one that grows while it
/// is read (a log) gives the prefix it had then, one that shrinks is padded with zeros.
/// Either is marked stale, as is one changed too recently for its times to tell (see
/// [`Attrs::racy`]), so that a later pass with the VE frozen sends it again.
pub(super) fn append_entry<W: Write>(
    b: &mut tar::Builder<W>,
    linked: &mut HashMap<(u64, u64), PathBuf>,
    handle: &File,
    name: &Path,
) -> std::io::Result<Option<(Attrs, Option<File>)>> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = handle.metadata()?;
    let mut attrs = Attrs::of(&meta);
    let ft = meta.file_type();
    if ft.is_socket() {
        return Ok(None);
    }
    let mut header = tar::Header::new_gnu();
    header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
    // Opened once, through the handle: what is archived is what was looked at.
    use nix::fcntl::OFlag;
    let opened = match (ft.is_dir(), ft.is_file()) {
        (true, _) => Some(crate::sys::fs::reopen(
            handle,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
        )?),
        (_, true) => Some(crate::sys::fs::reopen(handle, OFlag::O_RDONLY)?),
        _ => None,
    };
    // user.* attributes exist only on files and directories.
    if let Some(f) = &opened {
        let xattrs = user_xattrs(f)?;
        if !xattrs.is_empty() {
            b.append_pax_extensions(xattrs.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
        }
    }
    if ft.is_file() && meta.nlink() > 1 {
        if let Some(first) = linked.get(&(meta.dev(), meta.ino())) {
            header.set_entry_type(tar::EntryType::Link);
            header.set_size(0);
            b.append_link(&mut header, name, first)?;
            return Ok(Some((attrs, None)));
        }
        linked.insert((meta.dev(), meta.ino()), name.to_path_buf());
    }
    match opened {
        Some(d) if ft.is_dir() => {
            b.append_data(&mut header, name, std::io::empty())?;
            return Ok(Some((attrs, Some(d))));
        }
        Some(f) => {
            let size = meta.len();
            let mut data = Exactly {
                f: (&f).take(size),
                left: size,
                padded: false,
            };
            b.append_data(&mut header, name, &mut data)?;
            let now = f.metadata()?;
            if data.padded || Attrs::of(&now) != attrs {
                attrs.stale = true;
            }
        }
        None if ft.is_symlink() => {
            let target = nix::fcntl::readlinkat(
                Some(std::os::fd::AsRawFd::as_raw_fd(handle)),
                Path::new(""),
            )
            .map_err(std::io::Error::from)?;
            b.append_link(&mut header, name, PathBuf::from(target))?;
        }
        None => {
            // Devices and FIFOs: the header says it all, once it has the device's
            // numbers.
            if ft.is_char_device() || ft.is_block_device() {
                header.set_device_major(nix::sys::stat::major(meta.rdev()) as u32)?;
                header.set_device_minor(nix::sys::stat::minor(meta.rdev()) as u32)?;
            }
            b.append_data(&mut header, name, std::io::empty())?;
        }
    }
    Ok(Some((attrs, None)))
}

/// A file's contents, exactly as long as its header said: a file that shrank while it
/// was read is padded with zeros (and `padded` set), not a corrupt archive.
struct Exactly<R> {
    f: R,
    left: u64,
    padded: bool,
}

impl<R: Read> Read for Exactly<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.f.read(buf)?;
        if n == 0 && self.left > 0 {
            let n = buf.len().min(self.left as usize);
            buf[..n].fill(0);
            self.padded = true;
            self.left -= n as u64;
            return Ok(n);
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// A file's user.* extended attributes as PAX records (GNU tar's and libarchive's names).
fn user_xattrs(f: &File) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    use xattr::FileExt;
    let mut out = Vec::new();
    let names = match f.list_xattr() {
        Ok(n) => n,
        // A filesystem without extended attributes has none to keep.
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return Ok(out),
        Err(e) => return Err(e),
    };
    for name in names {
        let Some(text) = name.to_str().filter(|n| n.starts_with("user.")) else {
            continue;
        };
        if let Some(value) = f.get_xattr(&name)? {
            out.push((format!("SCHILY.xattr.{text}"), value));
        }
    }
    Ok(out)
}

/// The rootfs stream into `dest`, starting with the TAR frame `first` already received
/// and ending with END. Owners, permissions, times, hard links, devices and the user.*
/// extended attributes come back; a name that would land outside `dest` is refused.
pub fn recv_tree(ch: &mut Channel, first: Vec<u8>, dest: &Path) -> Result<(), MigError> {
    let mut frames = FramesIn {
        ch,
        buf: first,
        pos: 0,
        ended: false,
    };
    unpack(&mut frames, dest).map_err(|e| unwrap_io(e, "unpack the rootfs into", dest))?;
    // The archive's end leaves the rest of its last frame and the END.
    std::io::copy(&mut frames, &mut std::io::sink())
        .map_err(|e| unwrap_io(e, "unpack the rootfs into", dest))?;
    Ok(())
}

/// The TAR frames of the rootfs stream as one reader, up to END.
struct FramesIn<'a> {
    ch: &'a mut Channel,
    buf: Vec<u8>,
    pos: usize,
    ended: bool,
}

impl Read for FramesIn<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            if self.ended {
                return Ok(0);
            }
            let (k, p) = self.ch.recv().map_err(std::io::Error::other)?;
            match k {
                kind::TAR => (self.buf, self.pos) = (p, 0),
                kind::END => self.ended = true,
                other => {
                    return Err(std::io::Error::other(MigError::Protocol(format!(
                        "unexpected frame {other} in the rootfs stream"
                    ))))
                }
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn unpack(input: impl Read, dest: &Path) -> std::io::Result<()> {
    let mut ar = tar::Archive::new(input);
    ar.set_preserve_permissions(true);
    ar.set_preserve_ownerships(true);
    ar.set_preserve_mtime(true);
    ar.set_unpack_xattrs(true);
    ar.set_overwrite(true);
    let base = std::fs::canonicalize(dest)?;
    // Directories get their times once their subtree is done (what is made inside one
    // changes them). The archive lists each directory's subtree right after it, so only
    // the directories on the way to the current entry wait: memory bounded by depth,
    // not by the number of directories a tenant makes.
    let mut dirs: Vec<(PathBuf, u64)> = Vec::new();
    let finish = |dirs: &mut Vec<(PathBuf, u64)>, upto: Option<&Path>| -> std::io::Result<()> {
        while let Some((d, _)) = dirs.last() {
            if upto.is_some_and(|n| n.starts_with(d)) {
                break;
            }
            if let Some((d, mtime)) = dirs.pop() {
                if let Some(path) = inside(&base, &d)? {
                    set_mtime(&path, mtime);
                }
            }
        }
        Ok(())
    };
    for entry in ar.entries()? {
        let mut e = entry?;
        let kind = e.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo
        ) {
            make_node(&e, &base)?;
            continue;
        }
        let name = e.path()?.into_owned();
        if name.components().all(|c| c == std::path::Component::CurDir) {
            // tar's unpacking leaves the top directory alone; the rootfs takes its
            // owner and permissions from the source's, as GNU tar's did.
            set_attrs(&base, e.header())?;
            continue;
        }
        finish(&mut dirs, Some(&name))?;
        if kind.is_dir() {
            dirs.push((name.clone(), e.header().mtime()?));
        }
        // Every entry with data, by the size tar will write (a PAX record may override
        // the header's; an unknown type is unpacked as a regular file).
        if e.size() > 0 {
            room_for(&base, e.size(), &name)?;
        }
        e.unpack_in(&base)?;
    }
    finish(&mut dirs, None)
}

/// What a received rootfs leaves free besides the blocks the filesystem keeps for root.
const KEEP_FREE: u64 = 256 << 20;

/// Refuses a file of `size` bytes that would leave less than [`KEEP_FREE`] of what the
/// destination's filesystem has for non-root users. The tenant chooses the files: a
/// sparse one costs nothing on the source and is written out whole here, so without
/// this a VE could fill the destination host's disk.
pub(crate) fn room_for(base: &Path, size: u64, name: &Path) -> std::io::Result<()> {
    let st = nix::sys::statvfs::statvfs(base)?;
    let free = (st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64);
    if size.saturating_add(KEEP_FREE) > free {
        return Err(std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            format!(
                "{}: {size} bytes would leave less than {} MiB free on the destination \
                 ({free} bytes available); sparse files are sent whole",
                name.display(),
                KEEP_FREE >> 20
            ),
        ));
    }
    Ok(())
}

/// Whether `name` stays below where it is unpacked: no `..`, not absolute.
fn plain_path(name: &Path) -> bool {
    use std::path::Component;
    name.components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// `name` under `base`, or None when it would climb out of it (`..`, an absolute name,
/// or a parent that is a link leading elsewhere).
fn inside(base: &Path, name: &Path) -> std::io::Result<Option<PathBuf>> {
    if !plain_path(name) {
        return Ok(None);
    }
    let path = base.join(name);
    let parent = match path.parent() {
        Some(p) => std::fs::canonicalize(p)?,
        None => return Ok(None),
    };
    Ok(parent.starts_with(base).then_some(path))
}

/// Owner, permissions and time of an unpacked node, as its header says.
fn set_attrs(path: &Path, h: &tar::Header) -> std::io::Result<()> {
    use nix::fcntl::AtFlags;
    use nix::unistd::{fchownat, Gid, Uid};
    fchownat(
        None,
        path,
        Some(Uid::from_raw(h.uid()? as u32)),
        Some(Gid::from_raw(h.gid()? as u32)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )?;
    // Set after the owner: chown clears set-id bits.
    std::fs::set_permissions(path, PermissionsExt::from_mode(h.mode()? & 0o7777))?;
    set_mtime(path, h.mtime()?);
    Ok(())
}

fn set_mtime(path: &Path, mtime: u64) {
    use nix::sys::stat::{utimensat, UtimensatFlags};
    let t = nix::sys::time::TimeSpec::new(mtime as i64, 0);
    // Best effort, as tar's own unpacking treats times.
    let _ = utimensat(None, path, &t, &t, UtimensatFlags::NoFollowSymlink);
}

/// A device node or FIFO, which tar's own unpacking would turn into an empty file.
fn make_node<R: Read>(e: &tar::Entry<R>, base: &Path) -> std::io::Result<()> {
    use nix::sys::stat::{makedev, mknod, Mode, SFlag};
    let h = e.header();
    let name = e.path()?;
    if !plain_path(&name) {
        return Ok(());
    }
    // Missing parents are made inside `base` (openat2 in the root, one component at a
    // time): the stream's earlier entries may have made a parent a link to a host
    // directory, which a host path walk would follow and fill. A parent that cannot be
    // made there leaves the node out, as one that leads out of `base` is.
    if let Some(parent) = name.parent().filter(|p| !p.as_os_str().is_empty()) {
        if crate::sys::fs::mkdir_in_root(base, parent).is_err() {
            return Ok(());
        }
    }
    // The parent is made inside `base` even where a link leads it (as a container sees
    // it); the node, made by path on the host, goes only where that path stays inside.
    let Some(path) = inside(base, &name).ok().flatten() else {
        return Ok(());
    };
    let kind = match h.entry_type() {
        tar::EntryType::Char => SFlag::S_IFCHR,
        tar::EntryType::Block => SFlag::S_IFBLK,
        _ => SFlag::S_IFIFO,
    };
    let dev = makedev(
        h.device_major()?.unwrap_or(0).into(),
        h.device_minor()?.unwrap_or(0).into(),
    );
    let _ = std::fs::remove_file(&path);
    mknod(&path, kind, Mode::from_bits_truncate(0o600), dev)?;
    set_attrs(&path, h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_under_a_link_to_the_host_makes_nothing_there() {
        let host = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        std::os::unix::fs::symlink(host.path(), base.join("l")).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Fifo);
        h.set_size(0);
        h.set_mode(0o600);
        b.append_data(&mut h, "l/sub/fifo", std::io::empty())
            .unwrap();
        let data = b.into_inner().unwrap();
        let mut archive = tar::Archive::new(&data[..]);
        for e in archive.entries().unwrap() {
            make_node(&e.unwrap(), &base).unwrap();
        }
        assert!(
            std::fs::read_dir(host.path()).unwrap().next().is_none(),
            "made something in the host directory"
        );
    }

    #[test]
    fn a_file_read_at_its_stat_size_pads_a_shrink_and_stops_at_growth() {
        let mut short = Exactly {
            f: &b"abc"[..],
            left: 5,
            padded: false,
        };
        let mut got = Vec::new();
        short.read_to_end(&mut got).unwrap();
        assert_eq!((got.as_slice(), short.padded), (&b"abc\0\0"[..], true));
        // A file that grew past its stat'ed size: the prefix it had, not marked padded.
        let mut long = Exactly {
            f: (&b"abcdef"[..]).take(4),
            left: 4,
            padded: false,
        };
        let mut got = Vec::new();
        long.read_to_end(&mut got).unwrap();
        assert_eq!((got.as_slice(), long.padded), (&b"abcd"[..], false));
    }

    #[test]
    fn names_from_the_peer_stay_in_their_directory() {
        assert!(plain_name("pages-1.img").is_ok());
        for bad in ["", ".", "..", "../x", "a/b"] {
            assert!(plain_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn disk_passes_send_only_changes_and_keep_holes() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.img");
        let dst = dir.path().join("dst.img");
        let f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&src)
            .unwrap();
        f.set_len(8 * CHUNK as u64).unwrap();
        f.write_all_at(&[1u8; 100], 0).unwrap();
        f.write_all_at(&[2u8; 100], 5 * CHUNK as u64).unwrap();
        let dst2 = dst.clone();
        let (mut ch, srv) = super::super::channel::test_pair(move |ch| {
            let mut got = vec![];
            for _ in 0..2 {
                let h: FileHeader = ch.expect_json(kind::FILE).unwrap();
                got.push(recv_file(ch, &h, &dst2).unwrap());
            }
            got
        });
        let mut hashes = Default::default();
        let first = send_disk(&mut ch, &src, "d", &mut hashes, &mut |_| {}).unwrap();
        f.write_all_at(&[3u8; 10], 5 * CHUNK as u64).unwrap();
        let second = send_disk(&mut ch, &src, "d", &mut hashes, &mut |_| {}).unwrap();
        let got = srv.join().unwrap();
        assert_eq!(first, 2 * CHUNK as u64, "two data chunks, holes skipped");
        assert_eq!(second, CHUNK as u64, "only the changed chunk");
        assert_eq!(got, vec![first, second]);
        assert_eq!(std::fs::read(&src).unwrap(), std::fs::read(&dst).unwrap());
    }

    /// Sends `src` through a real channel and unpacks it into `dst`.
    fn move_tree(src: &Path, dst: &Path) -> u64 {
        let dst2 = dst.to_path_buf();
        let (mut ch, srv) = super::super::channel::test_pair(move |ch| {
            let (k, first) = ch.recv().unwrap();
            assert_eq!(k, kind::TAR);
            recv_tree(ch, first, &dst2).unwrap();
            // The stream ended at its END: the next frame is the sender's.
            assert_eq!(ch.recv().unwrap().0, kind::OK);
        });
        let n = send_tree(&mut ch, src, None).unwrap();
        ch.send(kind::OK, &[]).unwrap();
        srv.join().unwrap();
        n
    }

    #[test]
    fn a_tree_arrives_with_owners_links_devices_and_user_attributes() {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
        std::fs::create_dir_all(src.join("etc/deep")).unwrap();
        std::fs::create_dir_all(&dst).unwrap();
        std::fs::write(src.join("etc/deep/file"), vec![7u8; 3 * CHUNK + 5]).unwrap();
        std::fs::hard_link(src.join("etc/deep/file"), src.join("etc/hard")).unwrap();
        std::os::unix::fs::symlink("deep/file", src.join("etc/soft")).unwrap();
        std::fs::set_permissions(src.join("etc/deep"), PermissionsExt::from_mode(0o750)).unwrap();
        nix::unistd::chown(
            &src.join("etc/deep/file"),
            Some(nix::unistd::Uid::from_raw(1234)),
            Some(nix::unistd::Gid::from_raw(5678)),
        )
        .unwrap();
        let _ = xattr::set(
            src.join("etc/soft").parent().unwrap().join("hard"),
            "user.kept",
            b"yes",
        );
        let _ = xattr::set(src.join("etc/hard"), "trusted.dropped", b"no");
        let _sock = std::os::unix::net::UnixListener::bind(src.join("sock")).unwrap();
        let made_devices = nix::unistd::geteuid().is_root();
        if made_devices {
            use nix::sys::stat::{makedev, mknod, Mode, SFlag};
            mknod(
                &src.join("null"),
                SFlag::S_IFCHR,
                Mode::from_bits_truncate(0o666),
                makedev(1, 3),
            )
            .unwrap();
            mknod(
                &src.join("fifo"),
                SFlag::S_IFIFO,
                Mode::from_bits_truncate(0o640),
                0,
            )
            .unwrap();
            // mknod's mode went through the umask.
            std::fs::set_permissions(src.join("null"), PermissionsExt::from_mode(0o666)).unwrap();
        }
        // Old times on the directories, which making their entries on the destination
        // would change unless each is set once its whole subtree is there.
        for (d, t) in [("etc", 1_000_000_000), ("etc/deep", 1_100_000_000)] {
            set_mtime(&src.join(d), t);
        }
        let n = move_tree(&src, &dst);
        assert!(n > 3 * CHUNK as u64, "{n}");
        for (d, t) in [("etc", 1_000_000_000), ("etc/deep", 1_100_000_000)] {
            assert_eq!(std::fs::metadata(dst.join(d)).unwrap().mtime(), t, "{d}");
        }

        let file = std::fs::metadata(dst.join("etc/deep/file")).unwrap();
        assert_eq!(
            std::fs::read(dst.join("etc/deep/file")).unwrap(),
            vec![7u8; 3 * CHUNK + 5]
        );
        assert_eq!((file.uid(), file.gid()), (1234, 5678));
        assert_eq!(
            std::fs::metadata(dst.join("etc/hard")).unwrap().ino(),
            file.ino()
        );
        assert_eq!(
            std::fs::read_link(dst.join("etc/soft")).unwrap(),
            Path::new("deep/file")
        );
        let deep = std::fs::metadata(dst.join("etc/deep")).unwrap();
        assert_eq!(deep.mode() & 0o7777, 0o750);
        assert_eq!(
            deep.mtime(),
            std::fs::metadata(src.join("etc/deep")).unwrap().mtime()
        );
        assert!(!dst.join("sock").exists(), "sockets are left out");
        if xattr::get(src.join("etc/hard"), "user.kept")
            .ok()
            .flatten()
            .is_some()
        {
            assert_eq!(
                xattr::get(dst.join("etc/hard"), "user.kept").unwrap(),
                Some(b"yes".to_vec())
            );
            assert_eq!(
                xattr::get(dst.join("etc/hard"), "trusted.dropped").unwrap(),
                None
            );
        }
        if made_devices {
            let null = std::fs::metadata(dst.join("null")).unwrap();
            assert!(null.file_type().is_char_device());
            assert_eq!(
                (null.rdev(), null.mode() & 0o7777),
                (nix::sys::stat::makedev(1, 3), 0o666)
            );
            let fifo = std::fs::metadata(dst.join("fifo")).unwrap();
            assert_eq!(
                std::fs::metadata(src.join("fifo")).unwrap().mode() & 0o7777,
                0o640
            );
            assert!(fifo.file_type().is_fifo());
            assert_eq!(fifo.mode() & 0o7777, 0o640);
        }
    }
}
