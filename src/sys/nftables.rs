//! nf_tables changes sent as netlink batches instead of running `nft`: a VE guard's
//! table, sets, chain and rules at create, its removal at delete, and replacing the
//! elements of its address sets (`ve set --ipadd/--ipdel`). Starting nft costs 10-20 ms
//! here whatever it does, and it first reads every chain and set of the table into a
//! cache, which grows with the number of VEs; a batch costs well under a millisecond and
//! the same at the 500th VE as at the first.
//!
//! The messages are nfnetlink: a 4-byte `nfgenmsg` header after the netlink header, then
//! attributes (kernel `include/uapi/linux/netfilter/nf_tables.h`); numbers in nf_tables
//! attributes are big-endian. A batch is wrapped in NFNL_MSG_BATCH_BEGIN/END, so the
//! kernel applies all of it or none.

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
const NLM_F_APPEND: u16 = 0x800;
const NLM_F_CREATE: u16 = 0x400;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_DELCHAIN: u16 = 5;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_DELRULE: u16 = 8;
const NFT_MSG_NEWSET: u16 = 9;
const NFT_MSG_DELSET: u16 = 11;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_HOOK_DEV: u16 = 3;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_KEY_TYPE: u16 = 4;
const NFTA_SET_KEY_LEN: u16 = 5;
const NFTA_SET_ID: u16 = 10;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_META_DREG: u16 = 1;
const NFTA_META_KEY: u16 = 2;
const NFTA_CMP_SREG: u16 = 1;
const NFTA_CMP_OP: u16 = 2;
const NFTA_CMP_DATA: u16 = 3;
const NFTA_PAYLOAD_DREG: u16 = 1;
const NFTA_PAYLOAD_BASE: u16 = 2;
const NFTA_PAYLOAD_OFFSET: u16 = 3;
const NFTA_PAYLOAD_LEN: u16 = 4;
const NFTA_EXTHDR_DREG: u16 = 1;
const NFTA_EXTHDR_TYPE: u16 = 2;
const NFTA_EXTHDR_OFFSET: u16 = 3;
const NFTA_EXTHDR_LEN: u16 = 4;
const NFTA_EXTHDR_FLAGS: u16 = 5;
const NFTA_EXTHDR_OP: u16 = 6;
/// The register gets 1 when the header is there, 0 when not (a byte).
const NFT_EXTHDR_F_PRESENT: u32 = 1;
const NFT_EXTHDR_OP_IPV6: u32 = 0;
const NFTA_LOOKUP_SET: u16 = 1;
const NFTA_LOOKUP_SREG: u16 = 2;
const NFTA_LOOKUP_FLAGS: u16 = 5;
const NFTA_BITWISE_SREG: u16 = 1;
const NFTA_BITWISE_DREG: u16 = 2;
const NFTA_BITWISE_LEN: u16 = 3;
const NFTA_BITWISE_MASK: u16 = 4;
const NFTA_BITWISE_XOR: u16 = 5;
const NFTA_IMMEDIATE_DREG: u16 = 1;
const NFTA_IMMEDIATE_DATA: u16 = 2;
const NLA_F_NESTED: u16 = 0x8000;
/// The verdict register, and the 16-byte register the expressions load into.
const NFT_REG_VERDICT: u32 = 0;
const NFT_REG_1: u32 = 1;
const NF_DROP: u32 = 0;
const NF_ACCEPT: u32 = 1;
const NF_NETDEV_INGRESS: u32 = 0;
/// nft's datatype numbers for set keys (`nft describe`): ipv4_addr, ipv6_addr.
const TYPE_IPADDR: u32 = 7;
const TYPE_IP6ADDR: u32 = 8;

/// nf_tables' family numbers (NFPROTO_*), as the table was made.
#[derive(Debug, Clone, Copy)]
pub enum Family {
    Netdev = 5,
}

/// One netlink message under construction: header, nfgenmsg, attributes. The sequence
/// number is set when the message joins a [`Batch`].
struct Msg(Vec<u8>);

impl Msg {
    fn new(kind: u16, flags: u16, family: u8, res_id: u16) -> Msg {
        let mut b = Vec::with_capacity(128);
        b.extend_from_slice(&0u32.to_ne_bytes()); // length, set by finish
        b.extend_from_slice(&kind.to_ne_bytes());
        b.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes()); // sequence number, set by the batch
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

    fn u32_attr(&mut self, kind: u16, value: u32) {
        self.attr(kind, &value.to_be_bytes());
    }

    fn str_attr(&mut self, kind: u16, value: &str) {
        let mut v = value.as_bytes().to_vec();
        v.push(0);
        self.attr(kind, &v);
    }

    /// A nested attribute holding one NFTA_DATA_VALUE.
    fn data_attr(&mut self, kind: u16, value: &[u8]) {
        let at = self.begin(kind);
        self.attr(NFTA_DATA_VALUE, value);
        self.end(at);
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

    fn finish(mut self, seq: u32) -> Vec<u8> {
        let len = self.0.len() as u32;
        self.0[0..4].copy_from_slice(&len.to_ne_bytes());
        self.0[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.0
    }
}

/// Where a payload expression reads from (NFT_PAYLOAD_*_HEADER).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    Link = 0,
    Network = 1,
    /// Where the kernel found the layer 4 header (after any IPv6 extension headers);
    /// a load from it fails, and the rule does not match, for a fragment that is not the
    /// first or a packet that is neither IPv4 nor IPv6.
    Transport = 2,
}

/// Packet metadata a rule can load (NFT_META_*).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meta {
    /// skb->protocol, the EtherType in network order (2 bytes).
    Protocol = 1,
    /// The input device's ARPHRD_* type, host order (2 bytes).
    IifType = 8,
    /// The layer 4 protocol number (1 byte), for IPv6 the one after the extension
    /// headers; a load fails, and the rule does not match, for anything but IP.
    L4Proto = 16,
}

/// One expression of a rule; every load goes to register 1, every test reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Meta(Meta),
    Payload {
        base: Base,
        offset: u32,
        len: u32,
    },
    /// Compare register 1 with the bytes: equal (`eq`) or not.
    Cmp {
        eq: bool,
        data: Vec<u8>,
    },
    /// Register 1 = register 1 AND mask.
    Mask(Vec<u8>),
    /// Register 1 = 1 when an IPv6 packet has an extension header of this type
    /// anywhere in its chain, else 0 (`exthdr frag exists`).
    Ipv6HeaderPresent(u8),
    /// Register 1 is not (`inverted`) or is an element of the named set.
    Lookup {
        set: String,
        inverted: bool,
    },
    Drop,
}

impl Expr {
    fn encode(&self, m: &mut Msg) {
        let elem = m.begin(NFTA_LIST_ELEM);
        let name = match self {
            Expr::Meta(_) => "meta",
            Expr::Payload { .. } => "payload",
            Expr::Cmp { .. } => "cmp",
            Expr::Mask(_) => "bitwise",
            Expr::Ipv6HeaderPresent(_) => "exthdr",
            Expr::Lookup { .. } => "lookup",
            Expr::Drop => "immediate",
        };
        m.str_attr(NFTA_EXPR_NAME, name);
        let data = m.begin(NFTA_EXPR_DATA);
        match self {
            Expr::Meta(key) => {
                m.u32_attr(NFTA_META_KEY, *key as u32);
                m.u32_attr(NFTA_META_DREG, NFT_REG_1);
            }
            Expr::Payload { base, offset, len } => {
                m.u32_attr(NFTA_PAYLOAD_DREG, NFT_REG_1);
                m.u32_attr(NFTA_PAYLOAD_BASE, *base as u32);
                m.u32_attr(NFTA_PAYLOAD_OFFSET, *offset);
                m.u32_attr(NFTA_PAYLOAD_LEN, *len);
            }
            Expr::Cmp { eq, data } => {
                m.u32_attr(NFTA_CMP_SREG, NFT_REG_1);
                // NFT_CMP_EQ, NFT_CMP_NEQ
                m.u32_attr(NFTA_CMP_OP, if *eq { 0 } else { 1 });
                m.data_attr(NFTA_CMP_DATA, data);
            }
            Expr::Mask(mask) => {
                m.u32_attr(NFTA_BITWISE_SREG, NFT_REG_1);
                m.u32_attr(NFTA_BITWISE_DREG, NFT_REG_1);
                m.u32_attr(NFTA_BITWISE_LEN, mask.len() as u32);
                m.data_attr(NFTA_BITWISE_MASK, mask);
                m.data_attr(NFTA_BITWISE_XOR, &vec![0; mask.len()]);
            }
            Expr::Ipv6HeaderPresent(kind) => {
                m.u32_attr(NFTA_EXTHDR_DREG, NFT_REG_1);
                m.attr(NFTA_EXTHDR_TYPE, &[*kind]);
                m.u32_attr(NFTA_EXTHDR_OFFSET, 0);
                m.u32_attr(NFTA_EXTHDR_LEN, 1);
                m.u32_attr(NFTA_EXTHDR_FLAGS, NFT_EXTHDR_F_PRESENT);
                m.u32_attr(NFTA_EXTHDR_OP, NFT_EXTHDR_OP_IPV6);
            }
            Expr::Lookup { set, inverted } => {
                m.str_attr(NFTA_LOOKUP_SET, set);
                m.u32_attr(NFTA_LOOKUP_SREG, NFT_REG_1);
                // NFT_LOOKUP_F_INV
                m.u32_attr(NFTA_LOOKUP_FLAGS, u32::from(*inverted));
            }
            Expr::Drop => {
                m.u32_attr(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT);
                let imm = m.begin(NFTA_IMMEDIATE_DATA);
                let verdict = m.begin(NFTA_DATA_VERDICT);
                m.u32_attr(NFTA_VERDICT_CODE, NF_DROP);
                m.end(verdict);
                m.end(imm);
            }
        }
        m.end(data);
        m.end(elem);
    }
}

/// The key type of an address set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrKind {
    V4,
    V6,
}

/// Messages of one transaction, each with what it does (for the error that names it).
pub struct Batch {
    family: Family,
    msgs: Vec<(Msg, String)>,
}

impl Batch {
    pub fn new(family: Family) -> Batch {
        Batch {
            family,
            msgs: Vec::new(),
        }
    }

    fn msg(&mut self, kind: u16, flags: u16, what: String) -> &mut Msg {
        let m = Msg::new(
            (NFNL_SUBSYS_NFTABLES << 8) | kind,
            flags | NLM_F_ACK,
            self.family as u8,
            0,
        );
        self.msgs.push((m, what));
        // Just pushed: the vector is not empty.
        &mut self.msgs.last_mut().expect("pushed").0
    }

    /// A message that only names its object: a table and a set, chain or rule list.
    fn named(&mut self, kind: u16, what: String, names: [(u16, &str); 2]) -> &mut Self {
        let m = self.msg(kind, 0, what);
        for (attr, name) in names {
            m.str_attr(attr, name);
        }
        self
    }

    /// Adds the table unless it exists (`nft add table`).
    pub fn add_table(&mut self, table: &str) -> &mut Self {
        self.msg(NFT_MSG_NEWTABLE, NLM_F_CREATE, format!("add table {table}"))
            .str_attr(NFTA_TABLE_NAME, table);
        self
    }

    /// Adds an address set unless it exists.
    pub fn add_set(&mut self, table: &str, set: &str, kind: AddrKind) -> &mut Self {
        let id = self.msgs.len() as u32 + 1;
        let m = self.msg(
            NFT_MSG_NEWSET,
            NLM_F_CREATE,
            format!("add set {table} {set}"),
        );
        m.str_attr(NFTA_SET_TABLE, table);
        m.str_attr(NFTA_SET_NAME, set);
        let (ty, len) = match kind {
            AddrKind::V4 => (TYPE_IPADDR, 4),
            AddrKind::V6 => (TYPE_IP6ADDR, 16),
        };
        m.u32_attr(NFTA_SET_KEY_TYPE, ty);
        m.u32_attr(NFTA_SET_KEY_LEN, len);
        m.u32_attr(NFTA_SET_ID, id);
        self
    }

    /// Empties a set: a delete of elements that names none (what `nft flush set` sends).
    pub fn flush_set(&mut self, table: &str, set: &str) -> &mut Self {
        self.named(
            NFT_MSG_DELSETELEM,
            format!("flush set {table} {set}"),
            [
                (NFTA_SET_ELEM_LIST_TABLE, table),
                (NFTA_SET_ELEM_LIST_SET, set),
            ],
        )
    }

    /// Puts addresses in a set (nothing is sent for none).
    pub fn add_elements(&mut self, table: &str, set: &str, ips: &[IpAddr]) -> &mut Self {
        if ips.is_empty() {
            return self;
        }
        let m = self.msg(
            NFT_MSG_NEWSETELEM,
            NLM_F_CREATE,
            format!("add elements to {table} {set}"),
        );
        m.str_attr(NFTA_SET_ELEM_LIST_TABLE, table);
        m.str_attr(NFTA_SET_ELEM_LIST_SET, set);
        let list = m.begin(NFTA_SET_ELEM_LIST_ELEMENTS);
        for ip in ips {
            let elem = m.begin(NFTA_LIST_ELEM);
            match ip {
                IpAddr::V4(a) => m.data_attr(NFTA_SET_ELEM_KEY, &a.octets()),
                IpAddr::V6(a) => m.data_attr(NFTA_SET_ELEM_KEY, &a.octets()),
            }
            m.end(elem);
        }
        m.end(list);
        self
    }

    /// Adds a filter chain on a device's ingress hook, policy accept, unless it exists.
    pub fn add_ingress_chain(
        &mut self,
        table: &str,
        chain: &str,
        device: &str,
        priority: i32,
    ) -> &mut Self {
        let m = self.msg(
            NFT_MSG_NEWCHAIN,
            NLM_F_CREATE,
            format!("add chain {table} {chain} on {device}"),
        );
        m.str_attr(NFTA_CHAIN_TABLE, table);
        m.str_attr(NFTA_CHAIN_NAME, chain);
        let hook = m.begin(NFTA_CHAIN_HOOK);
        m.u32_attr(NFTA_HOOK_HOOKNUM, NF_NETDEV_INGRESS);
        m.attr(NFTA_HOOK_PRIORITY, &priority.to_be_bytes());
        m.str_attr(NFTA_HOOK_DEV, device);
        m.end(hook);
        m.u32_attr(NFTA_CHAIN_POLICY, NF_ACCEPT);
        m.str_attr(NFTA_CHAIN_TYPE, "filter");
        self
    }

    /// Removes every rule of a chain (a rule delete that names no rule).
    pub fn flush_chain(&mut self, table: &str, chain: &str) -> &mut Self {
        self.named(
            NFT_MSG_DELRULE,
            format!("flush chain {table} {chain}"),
            [(NFTA_RULE_TABLE, table), (NFTA_RULE_CHAIN, chain)],
        )
    }

    /// Appends a rule to a chain; `text` is its nft form, for errors.
    pub fn add_rule(&mut self, table: &str, chain: &str, exprs: &[Expr], text: &str) -> &mut Self {
        let m = self.msg(
            NFT_MSG_NEWRULE,
            NLM_F_CREATE | NLM_F_APPEND,
            format!("add rule {table} {chain} {text}"),
        );
        m.str_attr(NFTA_RULE_TABLE, table);
        m.str_attr(NFTA_RULE_CHAIN, chain);
        let list = m.begin(NFTA_RULE_EXPRESSIONS);
        for e in exprs {
            e.encode(m);
        }
        m.end(list);
        self
    }

    /// Deletes a chain and its rules.
    pub fn delete_chain(&mut self, table: &str, chain: &str) -> &mut Self {
        self.named(
            NFT_MSG_DELCHAIN,
            format!("delete chain {table} {chain}"),
            [(NFTA_CHAIN_TABLE, table), (NFTA_CHAIN_NAME, chain)],
        )
    }

    /// Deletes a set (no rule may still refer to it).
    pub fn delete_set(&mut self, table: &str, set: &str) -> &mut Self {
        self.named(
            NFT_MSG_DELSET,
            format!("delete set {table} {set}"),
            [(NFTA_SET_TABLE, table), (NFTA_SET_NAME, set)],
        )
    }

    /// The bytes to send: BEGIN, the messages numbered from 2, END.
    fn bytes(self) -> (Vec<u8>, Vec<String>) {
        let marker = |kind, seq| Msg::new(kind, 0, 0, NFNL_SUBSYS_NFTABLES).finish(seq);
        let mut out = marker(NFNL_MSG_BATCH_BEGIN, 1);
        let mut ops = Vec::with_capacity(self.msgs.len());
        for (i, (m, what)) in self.msgs.into_iter().enumerate() {
            out.extend(m.finish(i as u32 + 2));
            ops.push(what);
        }
        out.extend(marker(NFNL_MSG_BATCH_END, ops.len() as u32 + 2));
        (out, ops)
    }

    /// [`Batch::bytes`] for other modules' tests.
    #[cfg(test)]
    pub fn bytes_for_test(self) -> (Vec<u8>, Vec<String>) {
        self.bytes()
    }

    /// Sends the batch and waits for each message's answer; the first error names the
    /// message it answers (the kernel has then rolled the whole batch back).
    pub fn commit(self) -> Result<(), NftError> {
        let (batch, ops) = self.bytes();
        let mut acks = ops.len();
        let mut socket = Socket::new(NETLINK_NETFILTER)?;
        socket.bind_auto()?;
        socket.send(&batch, 0)?;
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
                        // The answered message's header follows the code: its sequence
                        // number says which message failed.
                        let seq = if off + 32 <= n {
                            u32::from_ne_bytes(word(off + 28)) as usize
                        } else {
                            0
                        };
                        let op = seq
                            .checked_sub(2)
                            .and_then(|i| ops.get(i))
                            .cloned()
                            .unwrap_or_else(|| "the batch".to_string());
                        return Err(NftError::Kernel {
                            op,
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
}

/// A set and what it is to hold.
pub struct SetContent<'a> {
    pub set: &'a str,
    pub elements: &'a [IpAddr],
}

/// The batch that empties each set of `table` and fills it with its elements.
fn replace_batch(family: Family, table: &str, sets: &[SetContent]) -> Batch {
    let mut b = Batch::new(family);
    for s in sets {
        b.flush_set(table, s.set)
            .add_elements(table, s.set, s.elements);
    }
    b
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
    replace_batch(family, table, sets).commit()
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
        let (b, ops) = replace_batch(
            Family::Netdev,
            "vzrun",
            &[SetContent {
                set: "v4_vz1",
                elements: &[],
            }],
        )
        .bytes();
        assert_eq!(ops, ["flush set vzrun v4_vz1"]);
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
        let (b, ops) = replace_batch(
            Family::Netdev,
            "vzrun",
            &[SetContent {
                set: "v4_vz1",
                elements: &ips,
            }],
        )
        .bytes();
        assert_eq!(ops.len(), 2);
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
