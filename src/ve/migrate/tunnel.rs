//! CRIU's page traffic between the two hosts, carried inside the migration's encryption.
//!
//! An online move has CRIUs talk to each other directly: a pre-copy dump sends pages to a
//! page server on the destination, and a post-copy destination's lazy-pages daemon
//! fetches them from the source's. CRIU's own connection is neither encrypted nor
//! authenticated, so vzrun keeps every CRIU endpoint on the loopback address and puts a
//! tunnel in between: the side with the CRIU server accepts one peer that completes the
//! key's Noise handshake ([`serve`]); the side with the CRIU client gives it a loopback
//! port that leads there ([`forward`]).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::channel::{kind, Channel, Key, Opener, Sealer, FRAME_TIMEOUT, HANDSHAKE_TIMEOUT};
use super::MigError;

/// How long a tunnel's end waits for its one connection (CRIU's, or the peer's).
const WAIT: Duration = FRAME_TIMEOUT;
/// Bytes read from CRIU's socket per frame: one Noise message's payload.
const READ: usize = 65519;

/// A port on the loopback address that is free now, for a CRIU server that only a
/// tunnel reaches.
pub fn loopback_port() -> Result<SocketAddr, MigError> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(l.local_addr()?)
}

/// This host's side of a move's tunnels: the address the peer reaches it at, and the
/// key both ends must prove.
pub struct Ends {
    pub ip: IpAddr,
    pub key: Key,
}

impl Ends {
    /// Listens for the peer's end of a tunnel and joins the first peer that proves the
    /// key to the CRIU server at `local`; peers without the key are refused and the wait
    /// goes on. Returns the address to give the peer.
    pub fn serve(&self, local: SocketAddr) -> Result<SocketAddr, MigError> {
        serve(&self.key, self.ip, local)
    }

    /// A loopback address for a CRIU client, leading to the peer's tunnel end `remote`.
    pub fn forward(&self, remote: SocketAddr) -> Result<SocketAddr, MigError> {
        forward(&self.key, remote)
    }
}

fn serve(key: &Key, public_ip: IpAddr, local: SocketAddr) -> Result<SocketAddr, MigError> {
    let listener = TcpListener::bind((public_ip, 0))?;
    let public = listener.local_addr()?;
    let key = key.clone();
    std::thread::spawn(move || {
        let deadline = Instant::now() + WAIT;
        while let Some(stream) = accept_until(&listener, deadline) {
            let Ok(ch) = Channel::server(stream, &key) else {
                continue;
            };
            if let Ok(criu) = TcpStream::connect(local) {
                pump(ch, criu);
            }
            return;
        }
    });
    Ok(public)
}

fn forward(key: &Key, remote: SocketAddr) -> Result<SocketAddr, MigError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let local = listener.local_addr()?;
    let key = key.clone();
    std::thread::spawn(move || {
        // The peer's end is joined before CRIU connects: a post-copy restore's first
        // page faults wait for the connection otherwise, with the VE frozen (a TCP
        // connect and the key's handshake, tens of ms on a busy host).
        let peer = TcpStream::connect_timeout(&remote, HANDSHAKE_TIMEOUT)
            .map_err(MigError::from)
            .and_then(|s| Channel::client(s, &key));
        let Some(criu) = accept_until(&listener, Instant::now() + WAIT) else {
            return;
        };
        match peer {
            Ok(ch) => pump(ch, criu),
            // CRIU sees its connection end and fails the step with its own message.
            Err(_) => drop(criu),
        }
    });
    Ok(local)
}

/// The next connection on `listener`, or None once `deadline` has passed.
fn accept_until(listener: &TcpListener, deadline: Instant) -> Option<TcpStream> {
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) => continue,
            Ok(_) => return listener.accept().ok().map(|(s, _)| s),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return None,
        }
    }
}

/// Carries bytes both ways between the peer's channel and CRIU's socket until both
/// directions have ended; an end of file travels as an END frame.
fn pump(ch: Channel, criu: TcpStream) {
    let _ = criu.set_nodelay(true);
    let (tx, rx) = ch.split();
    let Ok(criu_in) = criu.try_clone() else {
        return;
    };
    let up = std::thread::spawn(move || to_peer(criu_in, tx));
    from_peer(rx, &criu);
    let _ = up.join();
}

fn to_peer(mut criu: TcpStream, mut tx: Sealer) {
    let mut buf = vec![0u8; READ];
    loop {
        match criu.read(&mut buf) {
            Ok(0) | Err(_) => break,
            // CRIU waits for answers (lazy pages asks for a page and waits for it): each
            // read goes out at once.
            Ok(n) => {
                if tx
                    .send(kind::DATA, &buf[..n])
                    .and_then(|_| tx.flush())
                    .is_err()
                {
                    let _ = criu.shutdown(Shutdown::Both);
                    return;
                }
            }
        }
    }
    let _ = tx.send(kind::END, &[]);
    tx.shutdown();
}

fn from_peer(mut rx: Opener, mut criu: &TcpStream) {
    loop {
        match rx.recv() {
            Ok((kind::DATA, data)) => {
                if criu.write_all(&data).is_err() {
                    break;
                }
            }
            Ok((kind::END, _)) => {
                let _ = criu.shutdown(Shutdown::Write);
                return;
            }
            // A peer that breaks off (or a frame that fails its check) ends both ways.
            _ => break,
        }
    }
    let _ = criu.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ve::migrate::channel::write_key;

    /// An echo server standing in for CRIU's, reached through both tunnel ends; a peer
    /// with another key never gets through to it.
    #[test]
    fn bytes_cross_both_ways_and_only_for_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let (k1, k2) = (dir.path().join("a"), dir.path().join("b"));
        write_key(&k1, "the-shared-key-0123456789");
        write_key(&k2, "another-key-abcdefghijklmn");
        let key = Key::load(&k1).unwrap();
        let echo = TcpListener::bind("127.0.0.1:0").unwrap();
        let echo_addr = echo.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = echo.accept().unwrap();
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                s.write_all(&buf[..n]).unwrap();
            }
            s.shutdown(Shutdown::Write).unwrap();
        });
        let public = serve(&key, "127.0.0.1".parse().unwrap(), echo_addr).unwrap();

        // Someone else on the path, without the key: refused, and the wait goes on.
        let wrong = forward(&Key::load(&k2).unwrap(), public).unwrap();
        let mut w = TcpStream::connect(wrong).unwrap();
        let _ = w.write_all(b"page");
        let mut got = Vec::new();
        let _ = w.read_to_end(&mut got);
        assert!(got.is_empty());

        let local = forward(&key, public).unwrap();
        let mut c = TcpStream::connect(local).unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let writer = {
            let mut c = c.try_clone().unwrap();
            let data = data.clone();
            std::thread::spawn(move || {
                c.write_all(&data).unwrap();
                c.shutdown(Shutdown::Write).unwrap();
            })
        };
        let mut back = Vec::new();
        c.read_to_end(&mut back).unwrap();
        writer.join().unwrap();
        assert_eq!(back.len(), data.len());
        assert!(back == data);
    }
}
