//! The channel between `vzrun migrate` and `vzrun migrate-listen`: framed, and
//! authenticated before anything else is said.
//!
//! Both peers prove they hold the shared key (HMAC-SHA256 over both sides' nonces) before
//! anything else is said; every frame after that carries a tag under a key derived from
//! the session's nonces and a sequence number, so frames cannot be forged, replayed or
//! reordered by someone on the path. The stream itself is not encrypted.

use std::io::{BufReader, BufWriter, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::{de::DeserializeOwned, Serialize};
use sha2::Sha256;

use super::MigError;

type HmacSha256 = Hmac<Sha256>;

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
    /// Post-copy, destination to source: pages so far ({"demand", "pushed", "total"}),
    /// sent while pages come and once more, with "done": true, when all are there.
    pub const PAGES: u8 = 11;
}

/// The shared secret, read from a file (at least 16 bytes; whitespace at the end, as an
/// editor leaves it, is not part of it).
pub struct Key(Vec<u8>);

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
    getrandom::fill(&mut n).map_err(|e| MigError::Io(std::io::Error::other(e)))?;
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

/// How long a peer may take over the handshake: a connection that says nothing is
/// dropped rather than holding the listener.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one frame may take once a move runs (a dump of a large VE sends nothing
/// for a while, but never this long).
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(300);

impl Channel {
    fn new(stream: TcpStream, session: [u8; 32]) -> Result<Channel, MigError> {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(FRAME_TIMEOUT))?;
        stream.set_write_timeout(Some(FRAME_TIMEOUT))?;
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
        stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
        stream.set_write_timeout(Some(HANDSHAKE_TIMEOUT))?;
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
            MigError::Auth("the listener refused our key (a different key file?)".into())
        })?;
        if !same(&answer, &key.mac(&[b"listener", &ours, theirs])) {
            return Err(MigError::Auth("the listener does not hold our key".into()));
        }
        let session = key.mac(&[b"session", theirs, &ours]);
        Channel::new(stream, session)
    }

    /// The listener's side: challenges the source and refuses it unless it proves the key.
    pub fn server(mut stream: TcpStream, key: &Key) -> Result<Channel, MigError> {
        stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
        stream.set_write_timeout(Some(HANDSHAKE_TIMEOUT))?;
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

    /// How long a [`Channel::recv`] may wait before it fails: after a post-copy restore a
    /// peer that is gone without a word (host down, cable cut) sends no FIN.
    pub fn set_read_timeout(&self, d: Option<std::time::Duration>) -> Result<(), MigError> {
        Ok(self.writer.get_ref().set_read_timeout(d)?)
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
