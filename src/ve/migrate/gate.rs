//! Which connections a listener takes before they have proved the key. Without a
//! bound, anyone who can reach the port holds every slot with connections that never
//! finish the handshake and shuts the real sources out; the handshake's deadline frees
//! a slot within seconds, and no one address may hold more than a few of them, so a
//! source on another address still gets in.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Unproved connections at once, from all peers.
pub const MAX_UNPROVED: usize = 64;
/// Unproved connections at once from one address.
pub const MAX_UNPROVED_PER_PEER: usize = 4;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    #[error("{0} unproved connections open: refusing one more")]
    Full(usize),
    #[error("{peer} has {open} unproved connections open: refusing one more")]
    Peer { peer: IpAddr, open: usize },
}

#[derive(Default)]
pub struct Gate {
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection's slot, given back when it is dropped (the handshake ended,
/// either way).
pub struct Pass {
    gate: Arc<Gate>,
    peer: IpAddr,
}

impl Gate {
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Pass, Refused> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let total: usize = open.values().sum();
        if total >= MAX_UNPROVED {
            return Err(Refused::Full(total));
        }
        let n = open.entry(peer).or_default();
        if *n >= MAX_UNPROVED_PER_PEER {
            return Err(Refused::Peer { peer, open: *n });
        }
        *n += 1;
        Ok(Pass {
            gate: self.clone(),
            peer,
        })
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        let mut open = self.gate.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_cannot_take_every_slot() {
        let g = Arc::new(Gate::default());
        let a: IpAddr = "198.51.100.7".parse().unwrap();
        let b: IpAddr = "198.51.100.8".parse().unwrap();
        let held: Vec<Pass> = (0..MAX_UNPROVED_PER_PEER)
            .map(|_| g.admit(a).unwrap())
            .collect();
        assert_eq!(
            g.admit(a).err(),
            Some(Refused::Peer {
                peer: a,
                open: MAX_UNPROVED_PER_PEER
            })
        );
        let other = g.admit(b).expect("another address still gets in");
        drop(held);
        drop(other);
        assert!(g.open.lock().unwrap().is_empty(), "slots are given back");
        assert!(g.admit(a).is_ok());
    }

    #[test]
    fn the_total_is_bounded_too() {
        let g = Arc::new(Gate::default());
        let held: Vec<Pass> = (0..MAX_UNPROVED)
            .map(|i| {
                let ip = IpAddr::from([203, 0, 113, (i % 250) as u8]);
                g.admit(ip).unwrap()
            })
            .collect();
        assert!(matches!(
            g.admit("2001:db8::1".parse().unwrap()),
            Err(Refused::Full(_))
        ));
        drop(held);
    }
}
