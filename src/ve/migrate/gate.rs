//! Which connections a listener holds before they have proved the key. Without a
//! bound, anyone who can reach the port holds every slot with connections that never
//! finish the handshake and shuts the real sources out. Here one address holds a few
//! unproved connections and all addresses together a few dozen; a new connection over
//! either bound closes the oldest unproved one (of its address, or of all) instead of
//! being refused. A real source finishes its handshake within milliseconds, so it gets
//! in even beside a flood from its own address; the handshake's deadline ends the rest.

use std::net::{IpAddr, Shutdown, TcpStream};
use std::sync::{Arc, Mutex};

/// Unproved connections at once, from all peers.
pub const MAX_UNPROVED: usize = 64;
/// Unproved connections at once from one address (an IPv6 /64 counts as one).
pub const MAX_UNPROVED_PER_PEER: usize = 4;

#[derive(Default)]
pub struct Gate {
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    next: u64,
    /// Oldest first.
    held: Vec<Held>,
}

struct Held {
    id: u64,
    peer: IpAddr,
    /// Shut down to close the connection under its handshake.
    stream: Option<TcpStream>,
}

/// One admitted connection's slot, given back when it is dropped (the handshake ended,
/// either way).
pub struct Pass {
    gate: Arc<Gate>,
    id: u64,
}

/// Which peers count as one: an IPv4 address, or an IPv6 /64 (what one host or one
/// customer usually holds whole).
fn group(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::from([s[0], s[1], s[2], s[3], 0, 0, 0, 0])
        }
    }
}

impl Gate {
    /// Takes `stream` from `peer`; returns the closed connections' peers, for the log.
    pub fn admit(self: &Arc<Self>, peer: IpAddr, stream: &TcpStream) -> (Pass, Vec<IpAddr>) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let mut closed = Vec::new();
        let g = group(peer);
        let mine = open.held.iter().filter(|h| group(h.peer) == g).count();
        if mine >= MAX_UNPROVED_PER_PEER {
            if let Some(i) = open.held.iter().position(|h| group(h.peer) == g) {
                closed.push(open.evict(i));
            }
        }
        if open.held.len() >= MAX_UNPROVED {
            // The oldest of the group that holds the most: a flood from many addresses
            // loses its own connections before anyone else's.
            let mut counts: std::collections::HashMap<IpAddr, usize> = Default::default();
            for h in &open.held {
                *counts.entry(group(h.peer)).or_default() += 1;
            }
            let most = counts.values().copied().max().unwrap_or(0);
            if let Some(i) = open
                .held
                .iter()
                .position(|h| counts.get(&group(h.peer)) == Some(&most))
            {
                closed.push(open.evict(i));
            }
        }
        let id = open.next;
        open.next += 1;
        open.held.push(Held {
            id,
            peer,
            stream: stream.try_clone().ok(),
        });
        (
            Pass {
                gate: self.clone(),
                id,
            },
            closed,
        )
    }

    #[cfg(test)]
    fn held(&self) -> Vec<IpAddr> {
        let open = self.open.lock().unwrap();
        open.held.iter().map(|h| h.peer).collect()
    }
}

impl Open {
    fn evict(&mut self, i: usize) -> IpAddr {
        let h = self.held.remove(i);
        if let Some(s) = &h.stream {
            let _ = s.shutdown(Shutdown::Both);
        }
        h.peer
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        let mut open = self.gate.open.lock().unwrap_or_else(|p| p.into_inner());
        open.held.retain(|h| h.id != self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    /// A connected pair on loopback: (our end, the peer's end).
    fn pair(l: &TcpListener) -> (TcpStream, TcpStream) {
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        (s, c)
    }

    #[test]
    fn a_flood_from_one_address_closes_its_own_oldest_and_no_one_elses() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let g = Arc::new(Gate::default());
        let (a, b): (IpAddr, IpAddr) = (
            "198.51.100.7".parse().unwrap(),
            "198.51.100.8".parse().unwrap(),
        );
        let (sb, _cb) = pair(&l);
        let _pb = g.admit(b, &sb);
        let mut flood = Vec::new();
        for _ in 0..MAX_UNPROVED_PER_PEER + 2 {
            let (s, c) = pair(&l);
            let (p, closed) = g.admit(a, &s);
            flood.push((p, c, closed));
        }
        let held = g.held();
        assert_eq!(
            held.iter().filter(|&&p| p == a).count(),
            MAX_UNPROVED_PER_PEER
        );
        assert!(held.contains(&b), "another address's connection stays");
        // The two oldest of the flood were closed under their handshake.
        assert_eq!(flood[MAX_UNPROVED_PER_PEER].2, vec![a]);
        let mut buf = [0u8; 1];
        assert_eq!(flood[0].1.read(&mut buf).unwrap(), 0, "closed: end of file");
        drop(flood);
        assert_eq!(g.held(), vec![b], "slots are given back");
    }

    #[test]
    fn the_total_is_bounded_too() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let g = Arc::new(Gate::default());
        let mut held = Vec::new();
        for i in 0..MAX_UNPROVED + 1 {
            let (s, c) = pair(&l);
            let ip = IpAddr::from([203, 0, 113, i as u8]);
            held.push((g.admit(ip, &s), c));
        }
        assert_eq!(g.held().len(), MAX_UNPROVED);
        assert!(
            !g.held().contains(&IpAddr::from([203, 0, 113, 0])),
            "the oldest went"
        );
    }

    #[test]
    fn a_flood_from_many_addresses_loses_its_own_first() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let g = Arc::new(Gate::default());
        let source: IpAddr = "198.51.100.2".parse().unwrap();
        let (s, _c) = pair(&l);
        let _src = g.admit(source, &s);
        // One IPv6 /64 is one peer however many addresses it uses: 4 of them stay.
        let mut held = Vec::new();
        for i in 0..MAX_UNPROVED * 2 {
            let (s, c) = pair(&l);
            let ip = IpAddr::from([0x2001, 0xdb8, 0, 7, 0, 0, 0, i as u16 + 1]);
            held.push((g.admit(ip, &s), c));
        }
        assert_eq!(g.held().len(), 1 + MAX_UNPROVED_PER_PEER);
        // Many IPv4 addresses, two connections each: the source, older but alone, is
        // not the one closed.
        for i in 0..MAX_UNPROVED * 2 {
            let (s, c) = pair(&l);
            let ip = IpAddr::from([203, 0, 113, (i % 50) as u8]);
            held.push((g.admit(ip, &s), c));
        }
        assert_eq!(g.held().len(), MAX_UNPROVED);
        assert!(
            g.held().contains(&source),
            "the source's handshake was closed"
        );
    }
}
