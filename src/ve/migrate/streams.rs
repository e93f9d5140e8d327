//! What a migration sends: files in chunks (CRIU's images), the private area's disk image
//! (sparse, and later passes with only the chunks that changed) and the rootfs as a tar
//! stream.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::channel::{kind, Channel, CHUNK};
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

/// FNV-1a over a chunk: enough to tell a changed chunk from an unchanged one between two
/// passes over the same image on the same host.
fn chunk_hash(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
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
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(!header.update)
        .mode(header.mode)
        .open(path)
        .map_err(file_err("create", path))?;
    f.set_len(header.size).map_err(file_err("size", path))?;
    let mut got = 0u64;
    loop {
        let (k, p) = ch.recv()?;
        match k {
            kind::DATA if p.len() >= 8 => {
                let off = u64::from_le_bytes(p[..8].try_into().unwrap_or_default());
                if off + (p.len() - 8) as u64 > header.size {
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

/// Streams a directory tree (the bundle's rootfs) through tar.
pub fn send_tree(ch: &mut Channel, dir: &Path) -> Result<u64, MigError> {
    let mut child = std::process::Command::new("tar")
        .args(["--numeric-owner", "--xattrs", "-C"])
        .arg(dir)
        .args(["-cf", "-", "."])
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut out = child
        .stdout
        .take()
        .ok_or_else(|| MigError::Protocol("tar: no stdout".into()))?;
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = out.read(&mut buf)?;
        if n == 0 {
            break;
        }
        ch.send(kind::TAR, &buf[..n])?;
        total += n as u64;
    }
    let st = child.wait()?;
    if !st.success() {
        return Err(MigError::Protocol(format!(
            "tar of {} failed",
            dir.display()
        )));
    }
    ch.send(kind::END, &[])?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ve::migrate::channel::Key;
    use std::net::TcpStream;

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
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::fs::write(dir.path().join("k"), "the-shared-key-0123456789").unwrap();
        let kp = dir.path().join("k");
        let kp2 = kp.clone();
        let dst2 = dst.clone();
        let srv = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut ch = Channel::server(s, &Key::load(&kp2).unwrap()).unwrap();
            let mut got = vec![];
            for _ in 0..2 {
                let h: FileHeader = ch.expect_json(kind::FILE).unwrap();
                got.push(recv_file(&mut ch, &h, &dst2).unwrap());
            }
            got
        });
        let mut ch =
            Channel::client(TcpStream::connect(addr).unwrap(), &Key::load(&kp).unwrap()).unwrap();
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
}
