//! Moving a VE between hosts (vzmigrate): an authenticated, framed channel between
//! `vzrun migrate` and `vzrun migrate-listen`, file and disk-image streaming (sparse, and
//! a second pass that sends only what changed), the choice between pre-copy and
//! post-copy, the pre-copy stopping rule, and progress output.
//!
//! Both peers prove they hold the shared key (HMAC-SHA256 over both sides' nonces) before
//! anything else is said; every frame after that carries a tag under a key derived from
//! the session's nonces and a sequence number, so frames cannot be forged, replayed or
//! reordered by someone on the path. The stream itself is not encrypted.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::FileExt;
use std::path::Path;

use hmac::{Hmac, Mac};
use serde::{de::DeserializeOwned, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, thiserror::Error)]
pub enum MigError {
    #[error("--key-file {path}: {problem}")]
    Key { path: String, problem: String },
    #[error("peer authentication failed: {0}")]
    Auth(String),
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("peer: {0}")]
    Remote(String),
    #[error("{0}")]
    Mode(String),
}

const MAGIC: &[u8; 8] = b"VZMIGv1\0";
const NONCE: usize = 32;
const TAG: usize = 16;
/// Largest frame payload; disk chunks are 1 MiB.
const MAX_FRAME: usize = 4 << 20;
pub const CHUNK: usize = 1 << 20;

/// Frame kinds.
pub mod kind {
    pub const HELLO: u8 = 1;
    pub const OK: u8 = 2;
    pub const ERR: u8 = 3;
    pub const FILE: u8 = 4;
    pub const DATA: u8 = 5;
    pub const END: u8 = 6;
    pub const RESTORE: u8 = 7;
    pub const DONE: u8 = 8;
    pub const TAR: u8 = 9;
    pub const PROGRESS: u8 = 10;
}

/// The shared secret, read from a file (at least 16 bytes; whitespace at the end, as an
/// editor leaves it, is not part of it).
pub struct Key(Vec<u8>);

impl Key {
    pub fn load(path: &Path) -> Result<Key, MigError> {
        let bad = |problem: String| MigError::Key {
            path: path.display().to_string(),
            problem,
        };
        let mut data = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        while data.last().is_some_and(|b| b.is_ascii_whitespace()) {
            data.pop();
        }
        if data.len() < 16 {
            return Err(bad(format!(
                "{} bytes is too short a key (at least 16; e.g. head -c 32 /dev/urandom | base64 > FILE)",
                data.len()
            )));
        }
        Ok(Key(data))
    }

    fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        mac_with(&self.0, parts)
    }
}

fn mac_with(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC takes a key of any length.
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

fn nonce() -> Result<[u8; NONCE], MigError> {
    let mut n = [0u8; NONCE];
    File::open("/dev/urandom")?.read_exact(&mut n)?;
    Ok(n)
}

/// Compares in time independent of where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A framed, authenticated connection.
pub struct Channel {
    reader: BufReader<TcpStream>,
    writer: BufWriter<TcpStream>,
    session: [u8; 32],
    sent: u64,
    received: u64,
    /// Payload bytes sent, for progress and the summary.
    pub bytes_out: u64,
}

impl Channel {
    fn new(stream: TcpStream, session: [u8; 32]) -> Result<Channel, MigError> {
        stream.set_nodelay(true)?;
        Ok(Channel {
            reader: BufReader::with_capacity(CHUNK + 64, stream.try_clone()?),
            writer: BufWriter::with_capacity(CHUNK + 64, stream),
            session,
            sent: 0,
            received: 0,
            bytes_out: 0,
        })
    }

    /// The source's side: answers the listener's challenge, then checks its proof.
    pub fn client(mut stream: TcpStream, key: &Key) -> Result<Channel, MigError> {
        let mut hello = [0u8; 8 + NONCE];
        stream.read_exact(&mut hello)?;
        if &hello[..8] != MAGIC {
            return Err(MigError::Protocol(
                "the peer is not a vzrun migrate-listen".into(),
            ));
        }
        let theirs = &hello[8..];
        let ours = nonce()?;
        let proof = key.mac(&[b"source", theirs, &ours]);
        stream.write_all(&ours)?;
        stream.write_all(&proof)?;
        let mut answer = [0u8; 32];
        stream.read_exact(&mut answer).map_err(|_| {
            MigError::Auth("the listener refused our key (different --key-file?)".into())
        })?;
        if !same(&answer, &key.mac(&[b"listener", &ours, theirs])) {
            return Err(MigError::Auth("the listener does not hold our key".into()));
        }
        let session = key.mac(&[b"session", theirs, &ours]);
        Channel::new(stream, session)
    }

    /// The listener's side: challenges the source and refuses it unless it proves the key.
    pub fn server(mut stream: TcpStream, key: &Key) -> Result<Channel, MigError> {
        let ours = nonce()?;
        stream.write_all(MAGIC)?;
        stream.write_all(&ours)?;
        let mut reply = [0u8; NONCE + 32];
        stream.read_exact(&mut reply)?;
        let (theirs, proof) = reply.split_at(NONCE);
        if !same(proof, &key.mac(&[b"source", &ours, theirs])) {
            return Err(MigError::Auth(format!(
                "{} does not hold the key",
                stream
                    .peer_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_else(|_| "the peer".into())
            )));
        }
        stream.write_all(&key.mac(&[b"listener", theirs, &ours]))?;
        let session = key.mac(&[b"session", &ours, theirs]);
        Channel::new(stream, session)
    }

    fn tag(&self, seq: u64, kind: u8, payload: &[u8]) -> [u8; 32] {
        mac_with(
            &self.session,
            &[
                &seq.to_le_bytes(),
                &[kind],
                &(payload.len() as u32).to_le_bytes(),
                payload,
            ],
        )
    }

    pub fn send(&mut self, kind: u8, payload: &[u8]) -> Result<(), MigError> {
        if payload.len() > MAX_FRAME {
            return Err(MigError::Protocol(format!(
                "frame of {} bytes",
                payload.len()
            )));
        }
        let tag = self.tag(self.sent, kind, payload);
        self.sent += 1;
        self.writer.write_all(&[kind])?;
        self.writer
            .write_all(&(payload.len() as u32).to_le_bytes())?;
        self.writer.write_all(payload)?;
        self.writer.write_all(&tag[..TAG])?;
        self.bytes_out += payload.len() as u64;
        // Everything but bulk data goes out at once: the peer may be waiting for it.
        if kind != kind::DATA && kind != kind::TAR {
            self.writer.flush()?;
        }
        Ok(())
    }

    pub fn recv(&mut self) -> Result<(u8, Vec<u8>), MigError> {
        self.writer.flush()?;
        let mut head = [0u8; 5];
        self.reader.read_exact(&mut head)?;
        let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if len > MAX_FRAME {
            return Err(MigError::Protocol(format!("frame of {len} bytes")));
        }
        let mut payload = vec![0u8; len];
        self.reader.read_exact(&mut payload)?;
        let mut tag = [0u8; TAG];
        self.reader.read_exact(&mut tag)?;
        if !same(&tag, &self.tag(self.received, head[0], &payload)[..TAG]) {
            return Err(MigError::Auth("a frame failed its integrity check".into()));
        }
        self.received += 1;
        if head[0] == kind::ERR {
            return Err(MigError::Remote(
                String::from_utf8_lossy(&payload).into_owned(),
            ));
        }
        Ok((head[0], payload))
    }

    /// Receives a frame that must be of `want`.
    pub fn expect(&mut self, want: u8) -> Result<Vec<u8>, MigError> {
        let (k, p) = self.recv()?;
        if k != want {
            return Err(MigError::Protocol(format!(
                "expected frame {want}, got {k}"
            )));
        }
        Ok(p)
    }

    pub fn send_json<T: Serialize>(&mut self, kind: u8, v: &T) -> Result<(), MigError> {
        let data = serde_json::to_vec(v).map_err(|e| MigError::Protocol(e.to_string()))?;
        self.send(kind, &data)
    }

    pub fn expect_json<T: DeserializeOwned>(&mut self, want: u8) -> Result<T, MigError> {
        let p = self.expect(want)?;
        serde_json::from_slice(&p).map_err(|e| MigError::Protocol(e.to_string()))
    }

    /// Sends a request and waits for the answer of the same kind.
    pub fn exchange(
        &mut self,
        kind: u8,
        v: serde_json::Value,
    ) -> Result<serde_json::Value, MigError> {
        self.send_json(kind, &v)?;
        self.expect_json(kind)
    }

    /// Tells the peer why this side gives up (best effort: it may be gone already).
    pub fn fail(&mut self, why: &str) {
        let _ = self.send(kind::ERR, why.as_bytes());
        let _ = self.writer.flush();
    }

    pub fn flush(&mut self) -> Result<(), MigError> {
        Ok(self.writer.flush()?)
    }
}

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

/// Data regions of a sparse file, as (offset, length), by SEEK_DATA/SEEK_HOLE.
fn data_regions(f: &File, size: u64) -> Vec<(u64, u64)> {
    use std::os::fd::AsRawFd;
    let fd = f.as_raw_fd();
    let mut out = Vec::new();
    let mut pos: i64 = 0;
    while (pos as u64) < size {
        // SAFETY: lseek on an open descriptor.
        let data = unsafe { libc::lseek(fd, pos, libc::SEEK_DATA) };
        if data < 0 {
            break;
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        let end = if hole < 0 { size as i64 } else { hole };
        out.push((data as u64, (end - data) as u64));
        pos = end;
    }
    out
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
    let f = File::open(path)?;
    let size = f.metadata()?.len();
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
    for (start, len) in data_regions(&f, size) {
        let first = start / CHUNK as u64;
        let last = (start + len).div_ceil(CHUNK as u64);
        for idx in first..last {
            if !seen.insert(idx) {
                continue;
            }
            let off = idx * CHUNK as u64;
            let n = (size - off).min(CHUNK as u64) as usize;
            f.read_exact_at(&mut buf[..n], off)?;
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
    let mut names: Vec<_> = std::fs::read_dir(dir)?
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .collect();
    names.sort_by_key(|e| e.file_name());
    for e in names {
        let mut f = File::open(e.path())?;
        let meta = f.metadata()?;
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
            let n = f.read(&mut buf)?;
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
        .open(path)?;
    f.set_len(header.size)?;
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
                f.write_all_at(&p[8..], off)?;
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

/// How memory moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Checkpoint, copy, restore: the VE is down for all of it.
    Cold,
    /// Rounds of pre-dumps while the VE runs, then a final dump of what is still dirty.
    Precopy,
    /// Dump all but memory, restore at once, pages follow on demand (CRIU lazy pages).
    Postcopy,
}

/// `--mode auto` takes pre-copy where the kernel tracks dirty pages, else post-copy.
pub fn pick_mode(online: bool, requested: &str, soft_dirty: bool) -> Result<Mode, MigError> {
    if !online {
        return Ok(Mode::Cold);
    }
    match requested {
        "auto" if soft_dirty => Ok(Mode::Precopy),
        "auto" => Ok(Mode::Postcopy),
        "precopy" if soft_dirty => Ok(Mode::Precopy),
        "precopy" => Err(MigError::Mode(
            "--mode precopy: this kernel has no soft-dirty page tracking (criu check --feature mem_dirty_track); use --mode postcopy or auto".into(),
        )),
        "postcopy" => Ok(Mode::Postcopy),
        other => Err(MigError::Mode(format!(
            "--mode: {other:?} is not one of auto, precopy, postcopy"
        ))),
    }
}

/// Why the pre-copy rounds end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Few pages are still dirty: the final dump will be short.
    FewDirty,
    /// A round sent about as much as the one before: the VE dirties memory as fast as it
    /// is copied, more rounds would not shorten the final one.
    NotShrinking,
    MaxRounds,
}

/// The pre-copy rule, given the pages each round wrote (CRIU's `pages_written` from
/// stats-dump): stop when the last round wrote at most `few` pages, when it wrote more than
/// 90% of the round before, or after `max_rounds`.
pub fn precopy_stop(written: &[u64], few: u64, max_rounds: u32) -> Option<Stop> {
    let last = *written.last()?;
    if last <= few {
        return Some(Stop::FewDirty);
    }
    if written.len() >= 2 {
        let prev = written[written.len() - 2];
        if last * 10 > prev * 9 {
            return Some(Stop::NotShrinking);
        }
    }
    if written.len() as u32 >= max_rounds {
        return Some(Stop::MaxRounds);
    }
    None
}

/// `pages_written` from a CRIU `stats-dump` image: a 4-byte magic, then size-prefixed
/// StatsEntry messages whose field 1 is DumpStatsEntry with pages_written as field 7.
pub fn stats_pages_written(path: &Path) -> Option<u64> {
    let data = std::fs::read(path).ok()?;
    // Images start with one or two 32-bit magics (the second for "service" images).
    for skip in [4usize, 8] {
        if data.len() < skip + 4 {
            continue;
        }
        let len = u32::from_le_bytes(data[skip..skip + 4].try_into().ok()?) as usize;
        let Some(msg) = data.get(skip + 4..skip + 4 + len) else {
            continue;
        };
        if let Some(dump) = proto_field(msg, 1).and_then(|f| f.bytes()) {
            if let Some(v) = proto_field(dump, 7).and_then(|f| f.varint()) {
                return Some(v);
            }
        }
    }
    None
}

enum ProtoValue<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

impl<'a> ProtoValue<'a> {
    fn varint(&self) -> Option<u64> {
        match self {
            ProtoValue::Varint(v) => Some(*v),
            _ => None,
        }
    }
    fn bytes(&self) -> Option<&'a [u8]> {
        match self {
            ProtoValue::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

fn varint(data: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *data.get(*pos)?;
        *pos += 1;
        v |= ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// The first occurrence of field `want` in a protobuf message (wire types 0, 1, 2, 5).
fn proto_field(data: &[u8], want: u64) -> Option<ProtoValue<'_>> {
    let mut pos = 0;
    while pos < data.len() {
        let key = varint(data, &mut pos)?;
        let (field, wire) = (key >> 3, key & 7);
        let value = match wire {
            0 => ProtoValue::Varint(varint(data, &mut pos)?),
            1 => {
                pos += 8;
                ProtoValue::Varint(0)
            }
            2 => {
                let len = varint(data, &mut pos)? as usize;
                let b = data.get(pos..pos + len)?;
                pos += len;
                ProtoValue::Bytes(b)
            }
            5 => {
                pos += 4;
                ProtoValue::Varint(0)
            }
            _ => return None,
        };
        if field == want {
            return Some(value);
        }
    }
    None
}

/// HOST:PORT (a name or an address) as given to `flag`.
pub fn parse_addr(flag: &str, text: &str) -> Result<std::net::SocketAddr, MigError> {
    use std::net::ToSocketAddrs;
    text.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| MigError::Mode(format!("{flag}: {text:?} is not HOST:PORT")))
}

/// Kills the CRIU processes this process started (RPC workers, `criu swrk`): the way to
/// abort a dump or restore that waits on a peer that is gone. Best effort.
pub fn kill_criu_children() {
    let me = std::process::id().to_string();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .unwrap_or_default();
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if ppid == me && String::from_utf8_lossy(&cmd).contains("swrk") {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
        }
    }
}

/// Progress on a terminal (one line rewritten in place) or plain log lines otherwise.
pub struct Progress {
    tty: bool,
    start: std::time::Instant,
    quiet: bool,
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        Progress {
            tty: nix::unistd::isatty(2).unwrap_or(false),
            start: std::time::Instant::now(),
            quiet,
        }
    }

    /// One step of a phase: rewritten in place on a terminal, else nothing (the phase's
    /// end is logged by `line`).
    pub fn update(&self, phase: &str, bytes: u64, left: Option<u64>) {
        if self.quiet || !self.tty {
            return;
        }
        let secs = self.start.elapsed().as_secs_f64().max(0.001);
        let left = left
            .map(|l| format!(", {l} pages dirty"))
            .unwrap_or_default();
        eprint!(
            "\r\x1b[K{phase}: {:.1} MiB sent{left}, {:.1} MiB/s",
            bytes as f64 / 1048576.0,
            bytes as f64 / 1048576.0 / secs
        );
    }

    pub fn line(&self, text: &str) {
        if self.quiet {
            return;
        }
        if self.tty {
            eprintln!("\r\x1b[K{text}");
        } else {
            eprintln!(
                "migrate: {:>7.3}s {text}",
                self.start.elapsed().as_secs_f64()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precopy_rounds_stop_for_the_right_reason() {
        // Recorded pages_written of pre-copy runs (a writer rewriting 32 MiB of 512 MiB
        // touched, and an idle VE), and a VE that dirties memory faster than it moves.
        let busy = [131_072, 8_390, 8_211];
        assert_eq!(precopy_stop(&busy[..1], 64, 8), None);
        assert_eq!(precopy_stop(&busy[..2], 64, 8), None);
        assert_eq!(precopy_stop(&busy, 64, 8), Some(Stop::NotShrinking));
        let idle = [24_500, 310, 12];
        assert_eq!(precopy_stop(&idle[..2], 64, 8), None);
        assert_eq!(precopy_stop(&idle, 64, 8), Some(Stop::FewDirty));
        let shrinking = [100_000, 50_000, 25_000, 12_000];
        assert_eq!(precopy_stop(&shrinking, 64, 4), Some(Stop::MaxRounds));
        assert_eq!(precopy_stop(&shrinking, 64, 8), None);
        assert_eq!(precopy_stop(&[], 64, 8), None);
    }

    #[test]
    fn modes() {
        assert_eq!(pick_mode(false, "auto", true).unwrap(), Mode::Cold);
        assert_eq!(pick_mode(true, "auto", true).unwrap(), Mode::Precopy);
        assert_eq!(pick_mode(true, "auto", false).unwrap(), Mode::Postcopy);
        let e = pick_mode(true, "precopy", false).unwrap_err().to_string();
        assert!(e.contains("soft-dirty"), "{e}");
        assert!(pick_mode(true, "fast", true).is_err());
    }

    #[test]
    fn stats_image_is_read() {
        // magic, size, StatsEntry{ dump: DumpStatsEntry{ freezing_time: 5, pages_written: 300 } }
        let dump = [0x08, 5, 0x38, 0xac, 0x02];
        let mut entry = vec![0x0a, dump.len() as u8];
        entry.extend_from_slice(&dump);
        let mut img = 0x5709_3306u32.to_le_bytes().to_vec();
        img.extend_from_slice(&(entry.len() as u32).to_le_bytes());
        img.extend_from_slice(&entry);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("stats-dump");
        std::fs::write(&p, &img).unwrap();
        assert_eq!(stats_pages_written(&p), Some(300));
    }

    #[test]
    fn names_from_the_peer_stay_in_their_directory() {
        assert!(plain_name("pages-1.img").is_ok());
        for bad in ["", ".", "..", "../x", "a/b"] {
            assert!(plain_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_must_be_long_enough() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        std::fs::write(&p, "short\n").unwrap();
        let e = Key::load(&p).err().unwrap().to_string();
        assert!(
            e.starts_with("--key-file") && e.contains("too short"),
            "{e}"
        );
        std::fs::write(&p, "0123456789abcdef0123\n").unwrap();
        assert!(Key::load(&p).is_ok());
    }

    #[test]
    fn peers_with_the_same_key_talk_and_others_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (k1, k2) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&k1, "the-shared-key-0123456789").unwrap();
        std::fs::write(&k2, "another-key-abcdefghijklmn").unwrap();
        for (client_key, ok) in [(&k1, true), (&k2, false)] {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = l.local_addr().unwrap();
            let server_key = Key::load(&k1).unwrap();
            let srv = std::thread::spawn(move || {
                let (s, _) = l.accept().unwrap();
                let mut ch = Channel::server(s, &server_key)?;
                let got = ch.expect(kind::HELLO)?;
                ch.send(kind::OK, &got)?;
                Ok::<_, MigError>(())
            });
            let key = Key::load(client_key).unwrap();
            let client = Channel::client(TcpStream::connect(addr).unwrap(), &key);
            if ok {
                let mut ch = client.unwrap();
                ch.send(kind::HELLO, b"hi").unwrap();
                assert_eq!(ch.expect(kind::OK).unwrap(), b"hi");
                srv.join().unwrap().unwrap();
            } else {
                assert!(client.is_err());
                let e = srv.join().unwrap().err().unwrap().to_string();
                assert!(e.contains("does not hold the key"), "{e}");
            }
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
