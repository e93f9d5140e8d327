//! The channel between `vzrun migrate` and `vzrun migrate-listen`: framed, encrypted and
//! authenticated before anything else is said.
//!
//! The peers run a Noise NNpsk0 handshake (snow) keyed by the shared key file: a peer
//! without the key cannot complete it, and the ephemeral Diffie-Hellman gives each move
//! keys of its own (a key file that leaks later does not open a recorded move). Every
//! frame after that is AES-GCM encrypted under Noise's per-direction counters, so frames
//! cannot be read, forged, replayed or reordered by someone on the path.

use std::io::{BufReader, BufWriter, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{de::DeserializeOwned, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;

use snow::{HandshakeState, StatelessTransportState};

use super::MigError;

/// What the listener says first; also Noise's prologue, so both peers agree on it.
const MAGIC: &[u8; 8] = b"VZMIGv2\0";
const NOISE: &str = "Noise_NNpsk0_25519_AESGCM_SHA256";
/// Largest Noise message, and its authentication tag.
const MSG: usize = 65535;
const TAG: usize = 16;
/// Payload bytes one Noise message carries.
const PIECE: usize = MSG - TAG;
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
    /// Post-copy, destination to source: pages so far ({"demand", "pushed", "total"}),
    /// sent while pages come and once more, with "done": true, when all are there.
    pub const PAGES: u8 = 11;
    /// Source to destination, after DONE: the source gives its copy up. A destination
    /// that does not get it in time stops its own, so the VE never runs on both.
    pub const COMMIT: u8 = 12;
    /// Destination to source: COMMIT arrived; the source may delete its copy.
    pub const COMMITTED: u8 = 13;
    /// Source to destination, with the VE frozen: the rootfs's second pass (names to
    /// remove, then a rootfs stream of what changed; see `delta`). A destination says
    /// it takes it in its answer to HELLO.
    pub const DELTA: u8 = 14;
    /// Source to destination and back, before the freeze: answered once everything
    /// sent before it is applied (offered in the answer to HELLO).
    pub const SYNC: u8 = 15;

    /// A kind's name, for errors: a peer's unknown kind is named as such.
    pub fn name(k: u8) -> String {
        let n = match k {
            HELLO => "HELLO",
            OK => "OK",
            ERR => "ERR",
            FILE => "FILE",
            DATA => "DATA",
            END => "END",
            RESTORE => "RESTORE",
            DONE => "DONE",
            TAR => "TAR",
            PROGRESS => "PROGRESS",
            PAGES => "PAGES",
            COMMIT => "COMMIT",
            COMMITTED => "COMMITTED",
            DELTA => "DELTA",
            SYNC => "SYNC",
            _ => return format!("{k} (a kind this vzrun does not know)"),
        };
        format!("{k} ({n})")
    }
}

/// How long a destination that reported DONE waits for the source's COMMIT before it
/// stops its copy.
pub const COMMIT_WAIT: Duration = Duration::from_secs(30);
/// From the RESTORE request to DONE at most: a restore (with its action scripts)
/// that takes longer is stopped again, well before the source stops waiting
/// ([`FRAME_TIMEOUT`]) and takes its VE back.
pub const RESTORE_DEADLINE: Duration = Duration::from_secs(200);
/// The longest a destination lets an action script run during a restore.
pub const ACTION_LIMIT: Duration = Duration::from_secs(60);

/// The shared secret, read from a file (at least 16 bytes; whitespace at the end, as an
/// editor leaves it, is not part of it), kept as Noise's 32-byte pre-shared key.
#[derive(Clone)]
pub struct Key([u8; 32]);

impl Key {
    pub fn load(path: &Path) -> Result<Key, MigError> {
        let bad = |problem: String| MigError::Key {
            path: path.to_path_buf(),
            problem,
        };
        let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
        {
            use std::os::unix::fs::MetadataExt;
            // A key others can read is a key others hold.
            if meta.mode() & 0o077 != 0 {
                return Err(bad(format!(
                    "mode {:o} lets others read or change it (chmod 600 {})",
                    meta.mode() & 0o777,
                    path.display()
                )));
            }
        }
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
        // A key file of any length (base64 text as often as raw bytes) becomes the 32
        // bytes Noise takes, under a label of vzrun's own.
        let mut h = Sha256::new();
        h.update(b"vzrun migration psk v2\0");
        h.update(&data);
        Ok(Key(h.finalize().into()))
    }

    fn builder(&self) -> Result<snow::Builder<'_>, MigError> {
        let params = NOISE.parse().map_err(noise)?;
        snow::Builder::new(params)
            .psk(0, &self.0)
            .map_err(noise)?
            .prologue(MAGIC)
            .map_err(noise)
    }
}

fn noise(e: snow::Error) -> MigError {
    MigError::Protocol(format!("noise: {e}"))
}

/// One Noise message on the wire: its length (2 bytes, big-endian), then the message.
fn write_msg(w: &mut impl Write, msg: &[u8]) -> std::io::Result<()> {
    // Callers never pass more than MSG bytes: a Noise message cannot be longer.
    w.write_all(&(msg.len() as u16).to_be_bytes())?;
    w.write_all(msg)
}

/// Reads one Noise message into `buf`, returning its length.
fn read_msg(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut len = [0u8; 2];
    r.read_exact(&mut len)?;
    let n = u16::from_be_bytes(len) as usize;
    r.read_exact(&mut buf[..n])?;
    Ok(n)
}

/// The handshake's reads and writes against one deadline for the whole exchange: a
/// per-read timeout alone let a peer that sends a byte every few seconds hold a
/// connection for hours without ever proving the key.
struct ByDeadline<'a> {
    stream: &'a mut TcpStream,
    until: Instant,
}

impl ByDeadline<'_> {
    fn left(&self) -> std::io::Result<Duration> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no handshake within {} s", HANDSHAKE_TIMEOUT.as_secs()),
            ));
        }
        Ok(left)
    }
}

impl Read for ByDeadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.left()?;
        self.stream.set_read_timeout(Some(left))?;
        self.stream.read(buf)
    }
}

impl Write for ByDeadline<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let left = self.left()?;
        self.stream.set_write_timeout(Some(left))?;
        self.stream.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.stream.flush()
    }
}

/// A framed, encrypted and authenticated connection.
pub struct Channel {
    tx: Sealer,
    rx: Opener,
    /// Payload bytes sent, for progress and the summary.
    pub bytes_out: u64,
}

/// The sending half: frames sealed under this direction's key and counter.
pub struct Sealer {
    writer: BufWriter<TcpStream>,
    noise: Arc<StatelessTransportState>,
    next: u64,
    /// One Noise message's worth, for sealing.
    scratch: Vec<u8>,
}

/// The receiving half: frames opened under the other direction's key and counter.
pub struct Opener {
    reader: BufReader<TcpStream>,
    noise: Arc<StatelessTransportState>,
    next: u64,
    scratch: Vec<u8>,
}

/// How long a peer may take over the handshake: a connection that says nothing is
/// dropped rather than holding the listener.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one frame may take once a move runs (a dump of a large VE sends nothing
/// for a while, but never this long).
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(300);

impl Channel {
    fn new(stream: TcpStream, hs: HandshakeState) -> Result<Channel, MigError> {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(FRAME_TIMEOUT))?;
        stream.set_write_timeout(Some(FRAME_TIMEOUT))?;
        // Counters kept here rather than inside snow, so the two directions can be
        // handed to two threads (a tunnel's pumps) without a lock between them.
        let noise = Arc::new(hs.into_stateless_transport_mode().map_err(noise)?);
        Ok(Channel {
            rx: Opener {
                reader: BufReader::with_capacity(CHUNK + 64, stream.try_clone()?),
                noise: noise.clone(),
                next: 0,
                scratch: vec![0u8; MSG],
            },
            tx: Sealer {
                writer: BufWriter::with_capacity(CHUNK + 64, stream),
                noise,
                next: 0,
                scratch: vec![0u8; MSG],
            },
            bytes_out: 0,
        })
    }

    /// The two directions, each for a thread of its own.
    pub fn split(self) -> (Sealer, Opener) {
        (self.tx, self.rx)
    }

    /// The source's side: checks who answered, then runs the handshake as its initiator.
    pub fn client(stream: TcpStream, key: &Key) -> Result<Channel, MigError> {
        Self::by_deadline(stream, key, Self::client_handshake)
    }

    /// Runs one side's handshake within [`HANDSHAKE_TIMEOUT`], then frames.
    fn by_deadline(
        mut stream: TcpStream,
        key: &Key,
        side: fn(&mut ByDeadline, &Key) -> Result<HandshakeState, MigError>,
    ) -> Result<Channel, MigError> {
        let hs = side(
            &mut ByDeadline {
                stream: &mut stream,
                until: Instant::now() + HANDSHAKE_TIMEOUT,
            },
            key,
        )?;
        Channel::new(stream, hs)
    }

    fn client_handshake(stream: &mut ByDeadline, key: &Key) -> Result<HandshakeState, MigError> {
        let mut hello = [0u8; 8];
        stream.read_exact(&mut hello)?;
        if &hello != MAGIC {
            return Err(MigError::Protocol(
                "the peer is not a vzrun migrate-listen of this version".into(),
            ));
        }
        let mut hs = key.builder()?.build_initiator().map_err(noise)?;
        let mut buf = vec![0u8; MSG];
        let n = hs.write_message(&[], &mut buf).map_err(noise)?;
        write_msg(stream, &buf[..n])?;
        let n = read_msg(stream, &mut buf).map_err(|_| {
            MigError::Auth("the listener refused our key (a different key file?)".into())
        })?;
        let mut empty = [0u8; 0];
        hs.read_message(&buf[..n], &mut empty)
            .map_err(|_| MigError::Auth("the listener does not hold our key".into()))?;
        Ok(hs)
    }

    /// The listener's side: refuses the source unless its first message proves the key,
    /// all within [`HANDSHAKE_TIMEOUT`].
    pub fn server(stream: TcpStream, key: &Key) -> Result<Channel, MigError> {
        Self::by_deadline(stream, key, Self::server_handshake)
    }

    fn server_handshake(stream: &mut ByDeadline, key: &Key) -> Result<HandshakeState, MigError> {
        stream.write_all(MAGIC)?;
        let mut hs = key.builder()?.build_responder().map_err(noise)?;
        let mut buf = vec![0u8; MSG];
        let n = read_msg(stream, &mut buf)?;
        let mut empty = [0u8; 0];
        if hs.read_message(&buf[..n], &mut empty).is_err() {
            return Err(MigError::Auth(format!(
                "{} does not hold the key",
                stream
                    .stream
                    .peer_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_else(|_| "the peer".into())
            )));
        }
        let n = hs.write_message(&[], &mut buf).map_err(noise)?;
        write_msg(stream, &buf[..n])?;
        Ok(hs)
    }

    pub fn send(&mut self, kind: u8, payload: &[u8]) -> Result<(), MigError> {
        self.tx.send(kind, payload)?;
        self.bytes_out += payload.len() as u64;
        Ok(())
    }

    pub fn recv(&mut self) -> Result<(u8, Vec<u8>), MigError> {
        self.tx.flush()?;
        self.rx.recv()
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
        let _ = self.tx.flush();
    }

    pub fn flush(&mut self) -> Result<(), MigError> {
        self.tx.flush()
    }

    /// How long a [`Channel::recv`] may wait before it fails: after a post-copy restore a
    /// peer that is gone without a word (host down, cable cut) sends no FIN.
    pub fn set_read_timeout(&self, d: Option<std::time::Duration>) -> Result<(), MigError> {
        Ok(self.tx.writer.get_ref().set_read_timeout(d)?)
    }
}

impl Sealer {
    /// Seals `plain` (at most [`PIECE`] bytes) into one Noise message on the wire.
    fn seal(&mut self, plain: &[u8]) -> Result<(), MigError> {
        let n = self
            .noise
            .write_message(self.next, plain, &mut self.scratch)
            .map_err(noise)?;
        self.next += 1;
        write_msg(&mut self.writer, &self.scratch[..n])?;
        Ok(())
    }

    /// A frame: one message with its kind and length, then its payload in messages of
    /// [`PIECE`] bytes. Everything but bulk data goes out at once: the peer may be
    /// waiting for it.
    pub fn send(&mut self, kind: u8, payload: &[u8]) -> Result<(), MigError> {
        if payload.len() > MAX_FRAME {
            return Err(MigError::Protocol(format!(
                "frame of {} bytes",
                payload.len()
            )));
        }
        let mut head = [0u8; 5];
        head[0] = kind;
        head[1..].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        self.seal(&head)?;
        for piece in payload.chunks(PIECE) {
            self.seal(piece)?;
        }
        if kind != kind::DATA && kind != kind::TAR {
            self.writer.flush()?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> Result<(), MigError> {
        Ok(self.writer.flush()?)
    }

    /// Ends this direction at the TCP level (the peer reads end of file).
    pub fn shutdown(&mut self) {
        let _ = self.writer.flush();
        let _ = self.writer.get_ref().shutdown(std::net::Shutdown::Write);
    }
}

impl Opener {
    /// Opens the next Noise message into `out`, which must be exactly its payload's size.
    fn open(&mut self, out: &mut [u8]) -> Result<(), MigError> {
        let n = read_msg(&mut self.reader, &mut self.scratch)?;
        if n != out.len() + TAG {
            return Err(MigError::Protocol(format!(
                "message of {n} bytes where {} were due",
                out.len() + TAG
            )));
        }
        self.noise
            .read_message(self.next, &self.scratch[..n], out)
            .map_err(|_| MigError::Auth("a frame failed its integrity check".into()))?;
        self.next += 1;
        Ok(())
    }

    /// The next frame; a frame of kind ERR is the peer's error.
    pub fn recv(&mut self) -> Result<(u8, Vec<u8>), MigError> {
        let mut head = [0u8; 5];
        self.open(&mut head)?;
        let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if len > MAX_FRAME {
            return Err(MigError::Protocol(format!("frame of {len} bytes")));
        }
        let mut payload = vec![0u8; len];
        for piece in payload.chunks_mut(PIECE) {
            self.open(piece)?;
        }
        if head[0] == kind::ERR {
            return Err(MigError::Remote(
                String::from_utf8_lossy(&payload).into_owned(),
            ));
        }
        Ok((head[0], payload))
    }
}

/// HOST:PORT (a name or an address), as given for `setting`.
pub fn parse_addr(setting: &'static str, text: &str) -> Result<std::net::SocketAddr, MigError> {
    use std::net::ToSocketAddrs;
    text.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| MigError::Address {
            setting,
            text: text.to_string(),
        })
}

/// A key file as an administrator makes one (0600), for the tests.
#[cfg(test)]
pub(crate) fn write_key(p: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(p, text).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// For the tests: a keyed channel over loopback, its server end given to `serve` on a
/// thread of its own; returns the client end and the thread.
#[cfg(test)]
pub(crate) fn test_pair<T: Send + 'static>(
    serve: impl FnOnce(&mut Channel) -> T + Send + 'static,
) -> (Channel, std::thread::JoinHandle<T>) {
    let dir = tempfile::tempdir().unwrap();
    let kp = dir.path().join("k");
    write_key(&kp, "the-shared-key-0123456789");
    let key = Key::load(&kp).unwrap();
    let key2 = key.clone();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let srv = std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        serve(&mut Channel::server(s, &key2).unwrap())
    });
    let ch = Channel::client(TcpStream::connect(addr).unwrap(), &key).unwrap();
    (ch, srv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn keys_must_be_long_enough_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        write_key(&p, "short\n");
        let e = Key::load(&p).err().unwrap().to_string();
        assert!(e.starts_with("key file") && e.contains("too short"), "{e}");
        write_key(&p, "0123456789abcdef0123\n");
        assert!(Key::load(&p).is_ok());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Key::load(&p).err().unwrap().to_string();
        assert!(e.contains("chmod 600"), "{e}");
    }

    /// A peer on the path: forwards the client's bytes to `to`, keeping a copy, with the
    /// byte at `flip` (counted over the client's stream) inverted.
    fn relay(
        to: std::net::SocketAddr,
        flip: Option<usize>,
    ) -> (std::net::SocketAddr, std::thread::JoinHandle<Vec<u8>>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut s = TcpStream::connect(to).unwrap();
            let (mut c2, mut s2) = (c.try_clone().unwrap(), s.try_clone().unwrap());
            let back = std::thread::spawn(move || {
                let _ = std::io::copy(&mut s2, &mut c2);
                // The server hung up: so does the path, as a real one would.
                let _ = c2.shutdown(std::net::Shutdown::Both);
            });
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = match c.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                for (i, b) in buf[..n].iter_mut().enumerate() {
                    if Some(seen.len() + i) == flip {
                        *b ^= 0xff;
                    }
                }
                seen.extend_from_slice(&buf[..n]);
                if s.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = s.shutdown(std::net::Shutdown::Both);
            let _ = back.join();
            seen
        });
        (addr, t)
    }

    #[test]
    fn frames_are_unreadable_on_the_wire_and_a_changed_byte_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let kp = dir.path().join("k");
        write_key(&kp, "the-shared-key-0123456789");
        let secret = b"root:$6$a-password-hash-from-the-ve:19000:0:99999:7:::".repeat(2000);
        for flip in [None, Some(200)] {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let server_key = Key::load(&kp).unwrap();
            let to = l.local_addr().unwrap();
            let srv = std::thread::spawn(move || {
                let (s, _) = l.accept().unwrap();
                let mut ch = Channel::server(s, &server_key)?;
                let got = ch.expect(kind::DATA)?;
                ch.send(kind::OK, &got[..4])?;
                Ok::<_, MigError>(got)
            });
            let (addr, wire) = relay(to, flip);
            let mut ch =
                Channel::client(TcpStream::connect(addr).unwrap(), &Key::load(&kp).unwrap())
                    .unwrap();
            ch.send(kind::DATA, &secret).unwrap();
            let answer = ch.expect(kind::OK);
            drop(ch);
            let seen = wire.join().unwrap();
            match flip {
                None => {
                    assert_eq!(srv.join().unwrap().unwrap(), secret);
                    assert!(answer.is_ok());
                    assert!(seen.len() > secret.len());
                    assert!(
                        !seen.windows(16).any(|w| w == &secret[..16]),
                        "plaintext on the wire"
                    );
                }
                Some(_) => {
                    let e = srv.join().unwrap().err().unwrap().to_string();
                    assert!(e.contains("integrity"), "{e}");
                    assert!(answer.is_err());
                }
            }
        }
    }

    #[test]
    fn peers_with_the_same_key_talk_and_others_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (k1, k2) = (dir.path().join("a"), dir.path().join("b"));
        write_key(&k1, "the-shared-key-0123456789");
        write_key(&k2, "another-key-abcdefghijklmn");
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
}
