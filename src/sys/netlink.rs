//! A small synchronous rtnetlink client over the netlink crates libcontainer already
//! uses, with just the requests VE networking needs (links, bridge ports, addresses,
//! routes, rules, proxy and FDB neighbour entries), and a way to run code inside another
//! network namespace.
//!
//! Objects that are added and deleted (addresses, routes, rules, neighbour entries) are
//! values implementing [`Object`]: one message builder serves both `add` and `del`.

use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::Path;

use netlink_packet_core::{
    DecodeError, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE,
    NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, LinkAttribute,
    LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteMetric,
    RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::protocols::NETLINK_ROUTE;
use netlink_sys::Socket;

// The io::Errors are fields named `err`, not sources: each message already carries the
// cause, and a chain printed with `{:#}` would say it twice.
#[derive(Debug, thiserror::Error)]
pub enum NlError {
    #[error("netlink: {err}")]
    Io { err: std::io::Error },
    #[error("{op}: {err}")]
    Kernel { op: String, err: std::io::Error },
    #[error("netlink: cannot decode reply: {0}")]
    Decode(DecodeError),
    #[error("enter network namespace {path}: {err}")]
    Netns { path: String, err: std::io::Error },
    #[error("network namespace worker panicked")]
    Panicked,
}

impl From<std::io::Error> for NlError {
    fn from(err: std::io::Error) -> Self {
        NlError::Io { err }
    }
}

impl NlError {
    pub fn errno(&self) -> Option<i32> {
        match self {
            NlError::Kernel { err, .. } => err.raw_os_error(),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, NlError>;

fn family(ip: &IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

/// A veth pair to create; the peer is born inside the namespace `peer_netns`.
#[derive(Debug, Clone, Copy)]
pub struct Veth<'a> {
    pub host: &'a str,
    pub peer: &'a str,
    pub peer_netns: BorrowedFd<'a>,
    pub peer_mac: Option<&'a [u8]>,
}

/// Changes to a link's flags and attributes; `None` leaves a property as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinkChange<'a> {
    pub up: Option<bool>,
    pub noarp: Option<bool>,
    pub mac: Option<&'a [u8]>,
    /// The bridge (or other controller) to enslave the link to.
    pub master: Option<u32>,
    pub mtu: Option<u32>,
}

impl LinkChange<'_> {
    /// Only the link state.
    pub fn up(up: bool) -> Self {
        LinkChange {
            up: Some(up),
            ..Default::default()
        }
    }
}

/// Port flags of a link enslaved to a bridge, as `bridge link set` words them; `None`
/// leaves a flag as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct BridgePortFlags {
    /// `flood`: unknown unicast is flooded to this port.
    pub flood: Option<bool>,
    /// `mcast_flood`: unknown multicast is flooded to this port.
    pub mcast_flood: Option<bool>,
    /// `learning`: the bridge learns source MACs of frames that come in on this port.
    pub learning: Option<bool>,
}

/// A route as vzrun configures it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Route {
    pub dst: Option<(IpAddr, u8)>,
    pub via: Option<IpAddr>,
    pub src: Option<IpAddr>,
    pub oif: Option<u32>,
    pub mtu: Option<u32>,
    pub table: Option<u32>,
    /// Needed for a default route of the right family when `dst` is None.
    pub v6: bool,
    pub onlink_scope: bool,
}

/// An address on a link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Address {
    pub link: u32,
    pub ip: IpAddr,
    pub prefix: u8,
}

/// A policy rule: traffic from `from` looks up `table`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    pub from: (IpAddr, u8),
    pub table: u32,
    pub priority: Option<u32>,
}

/// A proxy ARP/NDP entry: the host answers for `ip` on the link `link`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProxyNeighbour {
    pub link: u32,
    pub ip: IpAddr,
}

/// A static, sticky entry in the forwarding database of the bridge that `port` belongs
/// to, as `bridge fdb ... MAC dev PORT master static sticky` makes: frames for `mac` go
/// to that port only, and the entry never ages out. Sticky because a static entry alone
/// still moves to whichever port a frame from `mac` last came in on, when that port
/// learns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FdbEntry<'a> {
    pub port: u32,
    pub mac: &'a [u8],
}

/// The body of an add or delete request: the same message for both.
pub enum Body {
    Address(AddressMessage),
    Route(RouteMessage),
    Rule(RuleMessage),
    Neighbour(NeighbourMessage),
}

impl Body {
    /// The RTM_NEW* request (`new` true) or the RTM_DEL* one.
    fn request(self, new: bool) -> RouteNetlinkMessage {
        use RouteNetlinkMessage as M;
        match (self, new) {
            (Body::Address(m), true) => M::NewAddress(m),
            (Body::Address(m), false) => M::DelAddress(m),
            (Body::Route(m), true) => M::NewRoute(m),
            (Body::Route(m), false) => M::DelRoute(m),
            (Body::Rule(m), true) => M::NewRule(m),
            (Body::Rule(m), false) => M::DelRule(m),
            (Body::Neighbour(m), true) => M::NewNeighbour(m),
            (Body::Neighbour(m), false) => M::DelNeighbour(m),
        }
    }
}

/// Something `add` and `del` take: one builder makes the message for both.
pub trait Object {
    /// Names the object in an error, after "add " or "delete ".
    fn describe(&self) -> String;
    fn body(&self) -> Body;
    /// Flags of the add: by default an object that exists already is an error.
    fn add_flags(&self) -> u16 {
        NLM_F_CREATE | NLM_F_EXCL
    }
}

impl Object for Address {
    fn describe(&self) -> String {
        format!("address {}/{}", self.ip, self.prefix)
    }

    fn body(&self) -> Body {
        let mut m = AddressMessage::default();
        m.header.family = family(&self.ip);
        m.header.prefix_len = self.prefix;
        m.header.index = self.link;
        m.attributes.push(AddressAttribute::Local(self.ip));
        m.attributes.push(AddressAttribute::Address(self.ip));
        Body::Address(m)
    }
}

impl Object for Route {
    fn describe(&self) -> String {
        format!("route {}", describe_route(self))
    }

    fn body(&self) -> Body {
        let r = self;
        let mut m = RouteMessage::default();
        let v6 = r
            .dst
            .map(|(d, _)| d.is_ipv6())
            .or(r.via.map(|g| g.is_ipv6()))
            .unwrap_or(r.v6);
        m.header.address_family = if v6 {
            AddressFamily::Inet6
        } else {
            AddressFamily::Inet
        };
        m.header.protocol = RouteProtocol::Static;
        m.header.kind = RouteType::Unicast;
        m.header.scope = if r.via.is_none() && !v6 || r.onlink_scope {
            RouteScope::Link
        } else {
            RouteScope::Universe
        };
        let table = r.table.unwrap_or(RouteHeader::RT_TABLE_MAIN as u32);
        if table < 256 {
            m.header.table = table as u8;
        } else {
            m.header.table = 252; // RT_TABLE_COMPAT: the real id is in the attribute
        }
        m.attributes.push(RouteAttribute::Table(table));
        if let Some((dst, len)) = r.dst {
            m.header.destination_prefix_length = len;
            m.attributes
                .push(RouteAttribute::Destination(RouteAddress::from(dst)));
        }
        if let Some(gw) = r.via {
            m.attributes
                .push(RouteAttribute::Gateway(RouteAddress::from(gw)));
        }
        if let Some(src) = r.src {
            m.attributes
                .push(RouteAttribute::PrefSource(RouteAddress::from(src)));
        }
        if let Some(oif) = r.oif {
            m.attributes.push(RouteAttribute::Oif(oif));
        }
        if let Some(mtu) = r.mtu {
            m.attributes
                .push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(mtu)]));
        }
        Body::Route(m)
    }
}

impl Object for Rule {
    fn describe(&self) -> String {
        format!(
            "rule from {}/{} table {}",
            self.from.0, self.from.1, self.table
        )
    }

    fn body(&self) -> Body {
        let mut m = RuleMessage::default();
        m.header.family = family(&self.from.0);
        m.header.src_len = self.from.1;
        m.header.action = RuleAction::ToTable;
        m.header.table = if self.table < 256 {
            self.table as u8
        } else {
            0
        };
        m.attributes.push(RuleAttribute::Table(self.table));
        m.attributes.push(RuleAttribute::Source(self.from.0));
        if let Some(p) = self.priority {
            m.attributes.push(RuleAttribute::Priority(p));
        }
        Body::Rule(m)
    }
}

impl Object for ProxyNeighbour {
    fn describe(&self) -> String {
        format!("neighbour proxy {}", self.ip)
    }

    fn body(&self) -> Body {
        let mut m = NeighbourMessage::default();
        m.header.family = family(&self.ip);
        m.header.ifindex = self.link;
        m.header.flags = NeighbourFlags::Proxy;
        m.attributes
            .push(NeighbourAttribute::Destination(match self.ip {
                IpAddr::V4(a) => NeighbourAddress::Inet(a),
                IpAddr::V6(a) => NeighbourAddress::Inet6(a),
            }));
        Body::Neighbour(m)
    }
}

/// NUD_NOARP | NUD_REACHABLE: what bridge(8) sends for `static`. The kernel makes a
/// static entry of NUD_NOARP; NUD_PERMANENT would make a *local* one instead (frames to
/// the MAC delivered to the bridge itself, not forwarded to the port).
const FDB_STATIC: u16 = 0x40 | 0x02;

impl Object for FdbEntry<'_> {
    fn describe(&self) -> String {
        let mac: Vec<String> = self.mac.iter().map(|b| format!("{b:02x}")).collect();
        format!("fdb entry {} on link {}", mac.join(":"), self.port)
    }

    fn body(&self) -> Body {
        let mut m = NeighbourMessage::default();
        m.header.family = AddressFamily::Bridge;
        m.header.ifindex = self.port;
        m.header.state = NeighbourState::Other(FDB_STATIC);
        // NTF_MASTER: the entry goes into the bridge's database, not the port device's.
        // NTF_STICKY: learning never moves it to another port.
        m.header.flags = NeighbourFlags::Controller | NeighbourFlags::Sticky;
        m.attributes
            .push(NeighbourAttribute::LinkLayerAddress(self.mac.to_vec()));
        Body::Neighbour(m)
    }
}

pub struct Netlink {
    socket: Socket,
    seq: u32,
}

impl Netlink {
    /// A socket in the calling thread's current network namespace.
    pub fn new() -> Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.set_ext_ack(true).ok();
        Ok(Netlink { socket, seq: 0 })
    }

    /// Sends one request with the next sequence number.
    fn send(&mut self, msg: RouteNetlinkMessage, flags: u16) -> Result<()> {
        self.seq += 1;
        let mut header = NetlinkHeader::default();
        header.flags = flags | NLM_F_REQUEST;
        header.sequence_number = self.seq;
        let mut req = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        req.finalize();
        let mut buf = vec![0; req.header.length as usize];
        req.serialize(&mut buf[..]);
        self.socket.send(&buf[..], 0)?;
        Ok(())
    }

    fn request(
        &mut self,
        op: &str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        let mut out = Vec::new();
        self.exchange(op, msg, flags, |_, m| {
            let msg =
                NetlinkMessage::<RouteNetlinkMessage>::deserialize(m).map_err(NlError::Decode)?;
            if let NetlinkPayload::InnerMessage(m) = msg.payload {
                out.push(m);
                // A plain get has one answer and no end marker.
                return Ok(flags & NLM_F_DUMP != NLM_F_DUMP && flags & NLM_F_ACK == 0);
            }
            Ok(false)
        })?;
        Ok(out)
    }

    /// Sends one request and hands each answer (type, whole message) to `each` until the
    /// end of a dump, an acknowledgement, an error, or `each` saying it has what it needs.
    /// Answers are walked in place: decoding them is left to `each`, since decoding
    /// allocates per attribute, which dominates a dump of thousands of routes (2000 IPv6
    /// routes at 500 VEs: 5-7 ms decoded, well under one read in place).
    fn exchange(
        &mut self,
        op: &str,
        msg: RouteNetlinkMessage,
        flags: u16,
        mut each: impl FnMut(u16, &[u8]) -> Result<bool>,
    ) -> Result<()> {
        const NLMSG_ERROR: u16 = 2;
        const NLMSG_DONE: u16 = 3;
        self.send(msg, flags)?;
        let mut rbuf = vec![0u8; 65536];
        loop {
            let n = self.socket.recv(&mut &mut rbuf[..], 0)?;
            let mut off = 0;
            while off + 16 <= n {
                let len =
                    u32::from_ne_bytes([rbuf[off], rbuf[off + 1], rbuf[off + 2], rbuf[off + 3]])
                        as usize;
                let kind = u16::from_ne_bytes([rbuf[off + 4], rbuf[off + 5]]);
                if len < 16 || off + len > n {
                    return Err(NlError::Decode(DecodeError::from(format!(
                        "{op}: a message of {len} bytes at {off} of {n}"
                    ))));
                }
                match kind {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR if len >= 20 => {
                        let code = i32::from_ne_bytes([
                            rbuf[off + 16],
                            rbuf[off + 17],
                            rbuf[off + 18],
                            rbuf[off + 19],
                        ]);
                        if code != 0 {
                            return Err(NlError::Kernel {
                                op: op.to_string(),
                                err: std::io::Error::from_raw_os_error(-code),
                            });
                        }
                        return Ok(());
                    }
                    _ => {
                        if each(kind, &rbuf[off..off + len])? {
                            return Ok(());
                        }
                    }
                }
                off += (len + 3) & !3;
            }
        }
    }

    fn ack(&mut self, op: &str, msg: RouteNetlinkMessage, flags: u16) -> Result<()> {
        let _step = tracing::debug_span!("netlink", op).entered();
        self.request(op, msg, flags | NLM_F_ACK).map(|_| ())
    }

    /// Adds `o`; with the default flags an existing one is an error (EEXIST).
    pub fn add(&mut self, o: &impl Object) -> Result<()> {
        self.ack(
            &format!("add {}", o.describe()),
            o.body().request(true),
            o.add_flags(),
        )
    }

    pub fn del(&mut self, o: &impl Object) -> Result<()> {
        self.ack(
            &format!("delete {}", o.describe()),
            o.body().request(false),
            0,
        )
    }

    /// The kernel's answer to RTM_GETLINK for `m`, if the link exists.
    fn get_link(&mut self, op: &str, m: LinkMessage) -> Result<Option<LinkMessage>> {
        match self.request(op, RouteNetlinkMessage::GetLink(m), NLM_F_ACK) {
            Ok(v) => Ok(v.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l),
                _ => None,
            })),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn link_index(&mut self, name: &str) -> Result<Option<u32>> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        Ok(self
            .get_link(&format!("get link {name}"), m)?
            .map(|l| l.header.index))
    }

    /// Whether the link `name` is administratively up; None when there is no such link.
    pub fn link_is_up(&mut self, name: &str) -> Result<Option<bool>> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        Ok(self
            .get_link(&format!("get link {name}"), m)?
            .map(|l| l.header.flags.contains(LinkFlags::Up)))
    }

    pub fn link_mac(&mut self, index: u32) -> Result<Option<Vec<u8>>> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        Ok(self.get_link("get link", m)?.and_then(|l| {
            l.attributes.into_iter().find_map(|a| match a {
                LinkAttribute::Address(mac) => Some(mac),
                _ => None,
            })
        }))
    }

    pub fn add_veth(&mut self, v: &Veth) -> Result<()> {
        let mut p = LinkMessage::default();
        p.attributes.push(LinkAttribute::IfName(v.peer.to_string()));
        p.attributes
            .push(LinkAttribute::NetNsFd(v.peer_netns.as_raw_fd()));
        if let Some(mac) = v.peer_mac {
            p.attributes.push(LinkAttribute::Address(mac.to_vec()));
        }
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(v.host.to_string()));
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))),
        ]));
        self.ack(
            &format!("create veth {}", v.host),
            RouteNetlinkMessage::NewLink(m),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    pub fn set_link(&mut self, index: u32, c: &LinkChange) -> Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        for (want, flag) in [(c.up, LinkFlags::Up), (c.noarp, LinkFlags::Noarp)] {
            if let Some(on) = want {
                if on {
                    m.header.flags |= flag;
                }
                m.header.change_mask |= flag;
            }
        }
        if let Some(mac) = c.mac {
            m.attributes.push(LinkAttribute::Address(mac.to_vec()));
        }
        if let Some(master) = c.master {
            m.attributes.push(LinkAttribute::Controller(master));
        }
        if let Some(mtu) = c.mtu {
            m.attributes.push(LinkAttribute::Mtu(mtu));
        }
        self.ack("set link", RouteNetlinkMessage::SetLink(m), 0)
    }

    /// Sets bridge port flags of the link `index`, which must be enslaved to a bridge.
    ///
    /// bridge(8) sends these as IFLA_PROTINFO in an AF_BRIDGE RTM_SETLINK; the kernel
    /// parses that attribute as nested only when it carries NLA_F_NESTED, which
    /// netlink-packet-route's `ProtoInfoBridge` does not set (and it holds only raw
    /// attributes). The same IFLA_BRPORT_* attributes as the port's slave data of
    /// IFLA_LINKINFO (RTM_NEWLINK on an existing link, as `ip link set ... type
    /// bridge_slave` does) reach the same kernel function, br_setport(), and are typed
    /// here as `InfoBridgePort`.
    pub fn set_bridge_port(&mut self, index: u32, f: &BridgePortFlags) -> Result<()> {
        let mut port = Vec::new();
        if let Some(on) = f.flood {
            port.push(InfoBridgePort::UnicastFlood(on));
        }
        if let Some(on) = f.mcast_flood {
            port.push(InfoBridgePort::MulticastFlood(on));
        }
        if let Some(on) = f.learning {
            port.push(InfoBridgePort::Learning(on));
        }
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::PortKind(InfoPortKind::Bridge),
            LinkInfo::PortData(InfoPortData::BridgePort(port)),
        ]));
        // Without NLM_F_CREATE, RTM_NEWLINK only changes the existing link.
        self.ack(
            &format!("set bridge port flags of link {index}"),
            RouteNetlinkMessage::NewLink(m),
            0,
        )
    }

    pub fn del_link(&mut self, index: u32) -> Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        self.ack("delete link", RouteNetlinkMessage::DelLink(m), 0)
    }

    /// Whether the host routes `ip` as a single host (/32 or /128) through a link.
    pub fn has_host_route(&mut self, ip: IpAddr) -> Result<bool> {
        Ok(self
            .route_get(ip)?
            .is_some_and(|f| f.kind == RouteType::Unicast && f.is_host_route(ip)))
    }

    /// The routing entry the host uses for `ip`, as `ip route get fibmatch ADDR` shows it:
    /// one FIB lookup through the policy rules (the `local` table first), returning the
    /// matching entry with its real prefix (RTM_F_FIB_MATCH), so the cost does not grow
    /// with the number of routes. `None` when nothing routes `ip`.
    pub fn route_get(&mut self, ip: IpAddr) -> Result<Option<FibEntry>> {
        let full = if ip.is_ipv4() { 32 } else { 128 };
        let mut m = RouteMessage::default();
        m.header.address_family = family(&ip);
        m.header.destination_prefix_length = full;
        m.header.flags = RouteFlags::FibMatch;
        m.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(ip)));
        let found = match self.request("look up route", RouteNetlinkMessage::GetRoute(m), 0) {
            Ok(v) => v,
            // No route at all (EHOSTUNREACH/ENETUNREACH).
            Err(e) if e.errno().is_some() => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(found.into_iter().find_map(|msg| match msg {
            RouteNetlinkMessage::NewRoute(r) => Some(FibEntry::from_message(&r)),
            _ => None,
        }))
    }

    /// Every gateway of every route of the host, in any table (multipath next hops too),
    /// with the link it is reached on. The routes are read in place (see [`Self::exchange`]).
    pub fn gateways(&mut self) -> Result<Vec<(IpAddr, Option<u32>)>> {
        let mut out = Vec::new();
        // Only unicast routes have gateways. With strict checking the kernel filters a
        // dump by route type: the local table's local, broadcast, anycast and multicast
        // routes (two to four per VE host end, most of a dump at 500 VEs) are then
        // skipped in the kernel instead of sent and read. Strict checking also refuses
        // requests with stray header fields, so it is on for these dumps only; a kernel
        // without it (before 4.20) sends everything, which reads the same.
        let strict = self.socket.set_netlink_get_strict_chk(true).is_ok();
        let result = self.unicast_gateways(strict, &mut out);
        if strict {
            self.socket.set_netlink_get_strict_chk(false).ok();
        }
        result.map(|()| out)
    }

    fn unicast_gateways(
        &mut self,
        strict: bool,
        out: &mut Vec<(IpAddr, Option<u32>)>,
    ) -> Result<()> {
        for fam in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut m = RouteMessage::default();
            m.header.address_family = fam;
            if strict {
                m.header.kind = RouteType::Unicast;
            }
            self.exchange(
                "list routes",
                RouteNetlinkMessage::GetRoute(m),
                NLM_F_DUMP,
                |k, m| {
                    if k == RTM_NEWROUTE {
                        raw_route_gateways(&m[16..], out);
                    }
                    Ok(false)
                },
            )?;
        }
        Ok(())
    }

    /// Every address configured on the host's links: (link, address, prefix). Read in
    /// place (see [`Self::exchange`]): each VE's host end has a link-local address.
    pub fn addresses(&mut self) -> Result<Vec<Address>> {
        let mut out = Vec::new();
        self.exchange(
            "list addresses",
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            NLM_F_DUMP,
            |k, m| {
                if k == RTM_NEWADDR {
                    out.extend(raw_address(&m[16..]));
                }
                Ok(false)
            },
        )?;
        Ok(out)
    }

    /// The name of the link `index`, if it exists.
    pub fn link_name(&mut self, index: u32) -> Result<Option<String>> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        Ok(self.get_link("get link", m)?.and_then(|l| {
            l.attributes.into_iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n),
                _ => None,
            })
        }))
    }

    /// The forwarding database entries for `mac` of the bridge `bridge`, learned, static
    /// or local (the bridge's and its ports' own addresses): the links they point to.
    /// One dump of AF_BRIDGE neighbours, filtered here.
    pub fn fdb_lookup(&mut self, bridge: u32, mac: &[u8]) -> Result<Vec<FdbSeen>> {
        Ok(self
            .neighbours(
                "list fdb entries",
                AddressFamily::Bridge,
                NeighbourFlags::empty(),
            )?
            .into_iter()
            .filter(|n| {
                let master = n.attributes.iter().find_map(|a| match a {
                    NeighbourAttribute::Controller(c) => Some(*c),
                    _ => None,
                });
                let same_mac = n
                    .attributes
                    .iter()
                    .any(|a| matches!(a, NeighbourAttribute::LinkLayerAddress(l) if l == mac));
                same_mac && (master == Some(bridge) || n.header.ifindex == bridge)
            })
            .map(|n| FdbSeen {
                port: n.header.ifindex,
            })
            .collect())
    }

    /// One dump of the neighbour table of `family` (with the request's `flags`, e.g.
    /// proxy entries only).
    fn neighbours(
        &mut self,
        what: &str,
        family: AddressFamily,
        flags: NeighbourFlags,
    ) -> Result<Vec<NeighbourMessage>> {
        let mut m = NeighbourMessage::default();
        m.header.family = family;
        m.header.flags = flags;
        let msgs = self.request(what, RouteNetlinkMessage::GetNeighbour(m), NLM_F_DUMP)?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewNeighbour(n) => Some(n),
                _ => None,
            })
            .collect())
    }

    /// Replaces (or creates) `o`: an existing object with the same key is taken over.
    pub fn replace(&mut self, o: &impl Object) -> Result<()> {
        self.ack(
            &format!("replace {}", o.describe()),
            o.body().request(true),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
    }

    /// The proxy neighbour entries (`ip neigh show proxy`) of one family on `link`.
    pub fn proxy_neighbours(&mut self, link: u32, v6: bool) -> Result<Vec<IpAddr>> {
        let family = if v6 {
            AddressFamily::Inet6
        } else {
            AddressFamily::Inet
        };
        Ok(self
            .neighbours("list proxy neighbours", family, NeighbourFlags::Proxy)?
            .into_iter()
            .filter(|n| n.header.ifindex == link && n.header.flags.contains(NeighbourFlags::Proxy))
            .filter_map(|n| {
                n.attributes.iter().find_map(|a| match a {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(v)) => {
                        Some(IpAddr::V4(*v))
                    }
                    NeighbourAttribute::Destination(NeighbourAddress::Inet6(v)) => {
                        Some(IpAddr::V6(*v))
                    }
                    _ => None,
                })
            })
            .collect())
    }
}

/// A routing entry as the FIB holds it (the answer to [`Netlink::route_get`]).
#[derive(Debug, Clone, PartialEq)]
pub struct FibEntry {
    pub kind: RouteType,
    /// The destination prefix, `None` for a default route.
    pub dst: Option<(IpAddr, u8)>,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    pub table: u32,
}

impl FibEntry {
    fn from_message(r: &RouteMessage) -> FibEntry {
        let mut e = FibEntry {
            kind: r.header.kind,
            dst: None,
            gateway: None,
            oif: None,
            table: r.header.table as u32,
        };
        for a in &r.attributes {
            match a {
                RouteAttribute::Destination(d) => {
                    e.dst = route_ip(d).map(|ip| (ip, r.header.destination_prefix_length))
                }
                RouteAttribute::Gateway(g) => e.gateway = route_ip(g),
                RouteAttribute::Oif(o) => e.oif = Some(*o),
                RouteAttribute::Table(t) => e.table = *t,
                _ => {}
            }
        }
        e
    }

    /// A route for `ip` alone (/32, /128).
    pub fn is_host_route(&self, ip: IpAddr) -> bool {
        let full = if ip.is_ipv4() { 32 } else { 128 };
        self.dst == Some((ip, full))
    }
}

/// One forwarding database entry found by [`Netlink::fdb_lookup`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FdbSeen {
    /// The link the entry points to: a port, or the bridge for its own address.
    pub port: u32,
}

/// The message types of the answers to a dump of routes and of addresses.
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;

/// The attributes `(type, value)` in `b`, a run of netlink attributes (`rtattr`s).
fn raw_attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let kind = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            return None;
        }
        let value = &b[4..len];
        b = &b[((len + 3) & !3).min(b.len())..];
        Some((kind, value))
    })
}

/// One RTM_NEWADDR payload (an 8-byte `ifaddrmsg`: the prefix length at 1, the link's
/// index at 4; then attributes): its IFA_LOCAL address, else its IFA_ADDRESS.
fn raw_address(payload: &[u8]) -> Option<Address> {
    const IFA_ADDRESS: u16 = 1;
    const IFA_LOCAL: u16 = 2;
    let head = payload.get(..8)?;
    let (mut local, mut address) = (None, None);
    for (kind, v) in raw_attrs(&payload[8..]) {
        match kind {
            IFA_LOCAL => local = raw_ip(v),
            IFA_ADDRESS => address = raw_ip(v),
            _ => {}
        }
    }
    Some(Address {
        link: u32::from_ne_bytes([head[4], head[5], head[6], head[7]]),
        ip: local.or(address)?,
        prefix: head[1],
    })
}

/// An address attribute's value as an IP address (4 or 16 bytes).
fn raw_ip(v: &[u8]) -> Option<IpAddr> {
    match v.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(v).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(v).ok()?)),
        _ => None,
    }
}

/// The gateways of one RTM_NEWROUTE payload (a 12-byte `rtmsg`, then attributes):
/// RTA_GATEWAY with RTA_OIF, and each next hop of RTA_MULTIPATH (an `rtnexthop` of 8
/// bytes, its interface index at 4, then its own attributes).
fn raw_route_gateways(payload: &[u8], out: &mut Vec<(IpAddr, Option<u32>)>) {
    const RTA_OIF: u16 = 4;
    const RTA_GATEWAY: u16 = 5;
    const RTA_MULTIPATH: u16 = 9;
    let Some(attrs) = payload.get(12..) else {
        return;
    };
    let (mut gateway, mut oif) = (None, None);
    for (kind, v) in raw_attrs(attrs) {
        match kind {
            RTA_GATEWAY => gateway = raw_ip(v),
            RTA_OIF if v.len() == 4 => oif = Some(u32::from_ne_bytes([v[0], v[1], v[2], v[3]])),
            RTA_MULTIPATH => {
                let mut hops = v;
                while hops.len() >= 8 {
                    let len = (u16::from_ne_bytes([hops[0], hops[1]]) as usize).min(hops.len());
                    if len < 8 {
                        break;
                    }
                    let ifindex = u32::from_ne_bytes([hops[4], hops[5], hops[6], hops[7]]);
                    for (k, hv) in raw_attrs(&hops[8..len]) {
                        if let (RTA_GATEWAY, Some(g)) = (k, raw_ip(hv)) {
                            out.push((g, Some(ifindex)));
                        }
                    }
                    hops = &hops[((len + 3) & !3).min(hops.len())..];
                }
            }
            _ => {}
        }
    }
    if let Some(g) = gateway {
        out.push((g, oif));
    }
}

fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v) => Some(IpAddr::V4(*v)),
        RouteAddress::Inet6(v) => Some(IpAddr::V6(*v)),
        _ => None,
    }
}

pub fn describe_route(r: &Route) -> String {
    let mut s = match r.dst {
        Some((d, l)) => format!("{d}/{l}"),
        None => "default".to_string(),
    };
    if let Some(v) = r.via {
        s.push_str(&format!(" via {v}"));
    }
    if let Some(v) = r.src {
        s.push_str(&format!(" src {v}"));
    }
    if let Some(v) = r.mtu {
        s.push_str(&format!(" mtu {v}"));
    }
    if let Some(v) = r.table {
        s.push_str(&format!(" table {v}"));
    }
    s
}

/// Runs `f` on a thread that has entered the network namespace at `ns` (for example
/// `/proc/PID/ns/net`); the caller's own namespace is never changed.
pub fn in_netns<T: Send + 'static>(ns: &Path, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let file = std::fs::File::open(ns).map_err(|err| NlError::Netns {
        path: ns.display().to_string(),
        err,
    })?;
    let path = ns.display().to_string();
    let handle = std::thread::spawn(move || -> Result<T> {
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
            NlError::Netns {
                path,
                err: std::io::Error::from(e),
            }
        })?;
        Ok(f())
    });
    handle.join().map_err(|_| NlError::Panicked)?
}

/// Writes a sysctl of the calling thread's network namespace.
pub fn sysctl(path: &str, value: &str) -> std::io::Result<()> {
    tracing::debug!(path, value, "sysctl");
    std::fs::write(Path::new("/proc/sys").join(path), value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::Emitable;

    #[test]
    fn addresses_read_in_place_match_the_built_message() {
        let a = Address {
            link: 12,
            ip: "2001:db8::7".parse().unwrap(),
            prefix: 64,
        };
        let Body::Address(m) = a.body() else {
            unreachable!()
        };
        let mut b = vec![0u8; m.buffer_len()];
        m.emit(&mut b);
        assert_eq!(raw_address(&b), Some(a));
        assert_eq!(raw_address(&b[..6]), None);
    }

    #[test]
    fn gateways_read_in_place_match_the_decoded_route() {
        use netlink_packet_route::route::RouteNextHop;
        let gw =
            |ip: &str| RouteAttribute::Gateway(RouteAddress::from(ip.parse::<IpAddr>().unwrap()));
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet6;
        m.header.destination_prefix_length = 64;
        m.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(
                "2001:db8:1::".parse::<IpAddr>().unwrap(),
            )));
        m.attributes.push(gw("2001:db8::1"));
        m.attributes.push(RouteAttribute::Oif(7));
        let hop = |i: u32, ip: &str| {
            let mut h = RouteNextHop::default();
            h.interface_index = i;
            h.attributes.push(gw(ip));
            h
        };
        m.attributes.push(RouteAttribute::MultiPath(vec![
            hop(3, "2001:db8::3"),
            hop(4, "2001:db8::4"),
        ]));
        let mut b = vec![0u8; m.buffer_len()];
        m.emit(&mut b);
        let mut raw = Vec::new();
        raw_route_gateways(&b, &mut raw);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            raw,
            vec![
                (ip("2001:db8::3"), Some(3)),
                (ip("2001:db8::4"), Some(4)),
                (ip("2001:db8::1"), Some(7)),
            ]
        );
        // A route without a gateway (a VE's host route) gives none; a cut message, none.
        let mut plain = RouteMessage::default();
        plain.attributes.push(RouteAttribute::Oif(9));
        let mut b = vec![0u8; plain.buffer_len()];
        plain.emit(&mut b);
        let mut none = Vec::new();
        raw_route_gateways(&b, &mut none);
        raw_route_gateways(&b[..5], &mut none);
        assert!(none.is_empty());
    }

    /// The bytes bridge(8) puts after the ndmsg header's family for
    /// `fdb add 02:00:00:00:00:01 dev X master static sticky`: state 0x42, flags
    /// NTF_MASTER | NTF_STICKY.
    #[test]
    fn fdb_entry_is_static_on_the_bridge() {
        let e = FdbEntry {
            port: 7,
            mac: &[2, 0, 0, 0, 0, 1],
        };
        let RouteNetlinkMessage::NewNeighbour(m) = e.body().request(true) else {
            panic!("not a neighbour message");
        };
        let mut buf = vec![0u8; m.buffer_len()];
        m.emit(&mut buf);
        assert_eq!(buf[0], libc::AF_BRIDGE as u8);
        assert_eq!(u32::from_ne_bytes(buf[4..8].try_into().unwrap()), 7);
        assert_eq!(u16::from_ne_bytes(buf[8..10].try_into().unwrap()), 0x42);
        assert_eq!(buf[10], 0x04 | 0x40, "NTF_MASTER | NTF_STICKY");
        assert_eq!(
            e.add_flags(),
            NLM_F_CREATE | NLM_F_EXCL,
            "fdb add: an entry on another port is never taken over"
        );
    }

    #[test]
    fn add_and_delete_share_one_message() {
        let r = Rule {
            from: ("198.51.100.7".parse().unwrap(), 32),
            table: 100,
            priority: Some(1000),
        };
        match (r.body().request(true), r.body().request(false)) {
            (RouteNetlinkMessage::NewRule(a), RouteNetlinkMessage::DelRule(d)) => {
                assert_eq!(a, d)
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(r.describe(), "rule from 198.51.100.7/32 table 100");
    }
}
