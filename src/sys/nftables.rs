//! The one nf_tables change that happens while VEs run: replacing the elements of an
//! address set (`ve set --ipadd/--ipdel`), sent as one netlink batch instead of running
//! `nft`. Starting nft costs 10-20 ms here whatever it does (it loads its parser and
//! reads the kernel's ruleset into a cache first); this batch costs well under a
//! millisecond. Making tables, chains and rules stays with `nft -f` (a VE's create or
//! delete, where the parser's checking is worth its cost).
//!
//! The messages are nfnetlink: a 4-byte `nfgenmsg` header after the netlink header, then
//! attributes (kernel `include/uapi/linux/netfilter/nf_tables.h`). The batch is wrapped
//! in NFNL_MSG_BATCH_BEGIN/END, so the kernel applies all of it or none.

use std::net::IpAddr;

use netlink_sys::protocols::NETLINK_NETFILTER;
use netlink_sys::Socket;

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("nf_tables netlink: {0}")]
    Io(#[from] std::io::Error),
    #[error("nf_tables: {op}: {err}")]
    Kernel { op: String, err: std::io::Error },
}

const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_DATA_VALUE: u16 = 1;
const NLA_F_NESTED: u16 = 0x8000;

/// nf_tables' family numbers (NFPROTO_*), as the table was made.
#[derive(Debug, Clone, Copy)]
pub enum Family {
    Netdev = 5,
}

/// One netlink message under construction: header, nfgenmsg, attributes.
struct Msg(Vec<u8>);

impl Msg {
    fn new(kind: u16, flags: u16, seq: u32, family: u8, res_id: u16) -> Msg {
        let mut b = Vec::with_capacity(128);
        b.extend_from_slice(&0u32.to_ne_bytes()); // length, set by finish
        b.extend_from_slice(&kind.to_ne_bytes());
        b.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        b.extend_from_slice(&seq.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
        b.push(family);
        b.push(0); // NFNETLINK_V0
        b.extend_from_slice(&res_id.to_be_bytes());
        Msg(b)
    }

    fn pad(&mut self) {
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
    }

    fn attr(&mut self, kind: u16, value: &[u8]) {
        let len = u16::try_from(4 + value.len()).unwrap_or(u16::MAX);
        self.0.extend_from_slice(&len.to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(value);
        self.pad();
    }

    fn str_attr(&mut self, kind: u16, value: &str) {
        let mut v = value.as_bytes().to_vec();
        v.push(0);
        self.attr(kind, &v);
    }

    /// Opens a nested attribute; [`Msg::end`] sets its length.
    fn begin(&mut self, kind: u16) -> usize {
        let at = self.0.len();
        self.0.extend_from_slice(&0u16.to_ne_bytes());
        self.0
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        at
    }

    fn end(&mut self, at: usize) {
        let len = u16::try_from(self.0.len() - at).unwrap_or(u16::MAX);
        self.0[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn finish(mut self) -> Vec<u8> {
        let len = self.0.len() as u32;
        self.0[0..4].copy_from_slice(&len.to_ne_bytes());
        self.0
    }
}

/// A set and what it is to hold.
pub struct SetContent<'a> {
    pub set: &'a str,
    pub elements: &'a [IpAddr],
}

/// The batch that empties each set of `table` and fills it with its elements; and how
/// many acknowledgements it asks for.
fn replace_batch(family: Family, table: &str, sets: &[SetContent]) -> (Vec<u8>, usize) {
    let batch = |kind, seq| Msg::new(kind, 0, seq, 0, NFNL_SUBSYS_NFTABLES).finish();
    let kind = |msg: u16| (NFNL_SUBSYS_NFTABLES << 8) | msg;
    let mut seq = 1;
    let mut out = batch(NFNL_MSG_BATCH_BEGIN, seq);
    let mut acks = 0;
    for s in sets {
        // A delete without elements flushes the set (what `nft flush set` sends).
        seq += 1;
        let mut flush = Msg::new(kind(NFT_MSG_DELSETELEM), NLM_F_ACK, seq, family as u8, 0);
        flush.str_attr(NFTA_SET_ELEM_LIST_TABLE, table);
        flush.str_attr(NFTA_SET_ELEM_LIST_SET, s.set);
        out.extend(flush.finish());
        acks += 1;
        if s.elements.is_empty() {
            continue;
        }
        seq += 1;
        let mut add = Msg::new(
            kind(NFT_MSG_NEWSETELEM),
            NLM_F_ACK | NLM_F_CREATE,
            seq,
            family as u8,
            0,
        );
        add.str_attr(NFTA_SET_ELEM_LIST_TABLE, table);
        add.str_attr(NFTA_SET_ELEM_LIST_SET, s.set);
        let list = add.begin(NFTA_SET_ELEM_LIST_ELEMENTS);
        for ip in s.elements {
            let elem = add.begin(NFTA_LIST_ELEM);
            let key = add.begin(NFTA_SET_ELEM_KEY);
            match ip {
                IpAddr::V4(a) => add.attr(NFTA_DATA_VALUE, &a.octets()),
                IpAddr::V6(a) => add.attr(NFTA_DATA_VALUE, &a.octets()),
            }
            add.end(key);
            add.end(elem);
        }
        add.end(list);
        out.extend(add.finish());
        acks += 1;
    }
    out.extend(batch(NFNL_MSG_BATCH_END, seq + 1));
    (out, acks)
}

/// Replaces the elements of address sets in one atomic batch: afterwards each set holds
/// exactly its elements (all of the set's address family), or, on an error, nothing
/// changed.
pub fn replace_sets(family: Family, table: &str, sets: &[SetContent]) -> Result<(), NftError> {
    // Each set as name=addr,addr, built only when --debug is on.
    let _step = tracing::debug_span!(
        "nftables",
        table,
        sets = %sets
            .iter()
            .map(|s| {
                let addrs: Vec<String> = s.elements.iter().map(|a| a.to_string()).collect();
                format!("{}={}", s.set, addrs.join(","))
            })
            .collect::<Vec<_>>()
            .join(" ")
    )
    .entered();
    let (batch, mut acks) = replace_batch(family, table, sets);
    let mut socket = Socket::new(NETLINK_NETFILTER)?;
    socket.bind_auto()?;
    socket.send(&batch, 0)?;
    // One acknowledgement per message sent with NLM_F_ACK; the first error is the answer
    // (the kernel has then rolled the whole batch back).
    let mut buf = vec![0u8; 8192];
    while acks > 0 {
        let n = socket.recv(&mut &mut buf[..], 0)?;
        let mut off = 0;
        while off + 20 <= n {
            let word = |at: usize| [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
            let len = u32::from_ne_bytes(word(off)) as usize;
            if u16::from_ne_bytes([buf[off + 4], buf[off + 5]]) == NLMSG_ERROR {
                let code = i32::from_ne_bytes(word(off + 16));
                if code != 0 {
                    let names: Vec<&str> = sets.iter().map(|s| s.set).collect();
                    return Err(NftError::Kernel {
                        op: format!("replace the elements of {table} {}", names.join(", ")),
                        err: std::io::Error::from_raw_os_error(-code),
                    });
                }
                acks -= 1;
            }
            if len < 16 {
                break;
            }
            off += (len + 3) & !3;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_ne_bytes([b[at], b[at + 1]])
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }

    #[test]
    fn a_flush_alone_is_three_messages_in_a_batch() {
        let (b, acks) = replace_batch(
            Family::Netdev,
            "vzrun",
            &[SetContent {
                set: "v4_vz1",
                elements: &[],
            }],
        );
        assert_eq!(acks, 1);
        let first = u32_at(&b, 0) as usize;
        assert_eq!(u16_at(&b, 4), NFNL_MSG_BATCH_BEGIN);
        // nfgenmsg res_id names the subsystem, big-endian.
        assert_eq!(&b[18..20], &NFNL_SUBSYS_NFTABLES.to_be_bytes());
        let second = first + u32_at(&b, first) as usize;
        assert_eq!(u16_at(&b, first + 4), (10 << 8) | NFT_MSG_DELSETELEM);
        assert_eq!(b[first + 16], Family::Netdev as u8);
        // Attributes: "vzrun\0" (len 10, padded to 12), then the set's name.
        assert_eq!(u16_at(&b, first + 20), 10);
        assert_eq!(&b[first + 24..first + 30], b"vzrun\0");
        assert_eq!(u16_at(&b, first + 32), 4 + 7);
        assert_eq!(&b[first + 36..first + 43], b"v4_vz1\0");
        assert_eq!(u16_at(&b, second + 4), NFNL_MSG_BATCH_END);
        assert_eq!(second + u32_at(&b, second) as usize, b.len());
    }

    #[test]
    fn elements_are_nested_keys_in_network_order() {
        let ips: Vec<IpAddr> = vec!["198.51.100.7".parse().unwrap()];
        let (b, acks) = replace_batch(
            Family::Netdev,
            "vzrun",
            &[SetContent {
                set: "v4_vz1",
                elements: &ips,
            }],
        );
        assert_eq!(acks, 2);
        let needle = [198u8, 51, 100, 7];
        let at = b
            .windows(4)
            .position(|w| w == needle)
            .expect("address bytes");
        // DATA_VALUE (len 8) inside KEY (len 12) inside LIST_ELEM (len 16).
        assert_eq!(u16_at(&b, at - 4), 8);
        assert_eq!(u16_at(&b, at - 8), 12);
        assert_eq!(u16_at(&b, at - 6), NFTA_SET_ELEM_KEY | NLA_F_NESTED);
        assert_eq!(u16_at(&b, at - 12), 16);
        assert_eq!(u16_at(&b, at - 10), NFTA_LIST_ELEM | NLA_F_NESTED);
    }
}
