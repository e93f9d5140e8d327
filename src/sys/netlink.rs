//! A small synchronous rtnetlink client over the netlink crates libcontainer already
//! uses, with just the requests VE networking needs, and a way to run code inside another
//! network namespace.

use std::net::IpAddr;
use std::os::fd::{AsFd, RawFd};
use std::path::Path;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteMetric,
    RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::protocols::NETLINK_ROUTE;
use netlink_sys::Socket;

#[derive(Debug, thiserror::Error)]
pub enum NlError {
    #[error("netlink: {0}")]
    Io(#[from] std::io::Error),
    #[error("{op}: {err}")]
    Kernel { op: String, err: std::io::Error },
    #[error("netlink: cannot decode reply: {0}")]
    Decode(String),
    #[error("enter network namespace {path}: {err}")]
    Netns { path: String, err: std::io::Error },
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

    fn request(
        &mut self,
        op: &str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.seq += 1;
        let mut header = NetlinkHeader::default();
        header.flags = flags | NLM_F_REQUEST;
        header.sequence_number = self.seq;
        let mut req = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        req.finalize();
        let mut buf = vec![0; req.header.length as usize];
        req.serialize(&mut buf[..]);
        self.socket.send(&buf[..], 0)?;
        let mut out = Vec::new();
        let mut rbuf = vec![0u8; 65536];
        loop {
            let n = self.socket.recv(&mut &mut rbuf[..], 0)?;
            let mut offset = 0;
            while offset < n {
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rbuf[offset..n])
                    .map_err(|e| NlError::Decode(e.to_string()))?;
                let len = msg.header.length as usize;
                match msg.payload {
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(out),
                            Some(code) => Err(NlError::Kernel {
                                op: op.to_string(),
                                err: std::io::Error::from_raw_os_error(-code.get()),
                            }),
                        }
                    }
                    NetlinkPayload::InnerMessage(m) => {
                        out.push(m);
                        if flags & NLM_F_DUMP != NLM_F_DUMP && flags & NLM_F_ACK == 0 {
                            return Ok(out);
                        }
                    }
                    _ => {}
                }
                if len == 0 {
                    break;
                }
                offset += len;
            }
        }
    }

    fn ack(&mut self, op: &str, msg: RouteNetlinkMessage, flags: u16) -> Result<()> {
        self.request(op, msg, flags | NLM_F_ACK).map(|_| ())
    }

    pub fn link_index(&mut self, name: &str) -> Result<Option<u32>> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(
            &format!("get link {name}"),
            RouteNetlinkMessage::GetLink(m),
            NLM_F_ACK,
        ) {
            Ok(v) => Ok(v.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l.header.index),
                _ => None,
            })),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn link_mac(&mut self, index: u32) -> Result<Option<Vec<u8>>> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        let v = self.request("get link", RouteNetlinkMessage::GetLink(m), NLM_F_ACK)?;
        Ok(v.into_iter().find_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => l.attributes.into_iter().find_map(|a| match a {
                LinkAttribute::Address(mac) => Some(mac),
                _ => None,
            }),
            _ => None,
        }))
    }

    /// Creates a veth pair whose peer is born inside the namespace `peer_netns`.
    pub fn add_veth(
        &mut self,
        host: &str,
        peer: &str,
        peer_netns: RawFd,
        peer_mac: Option<&[u8]>,
    ) -> Result<()> {
        let mut p = LinkMessage::default();
        p.attributes.push(LinkAttribute::IfName(peer.to_string()));
        p.attributes.push(LinkAttribute::NetNsFd(peer_netns));
        if let Some(mac) = peer_mac {
            p.attributes.push(LinkAttribute::Address(mac.to_vec()));
        }
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(host.to_string()));
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))),
        ]));
        self.ack(
            &format!("create veth {host}"),
            RouteNetlinkMessage::NewLink(m),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// Sets flags and attributes of a link; `None` leaves a property alone.
    pub fn set_link(
        &mut self,
        index: u32,
        up: Option<bool>,
        noarp: Option<bool>,
        mac: Option<&[u8]>,
        master: Option<u32>,
        mtu: Option<u32>,
    ) -> Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        if let Some(up) = up {
            if up {
                m.header.flags |= LinkFlags::Up;
            }
            m.header.change_mask |= LinkFlags::Up;
        }
        if let Some(n) = noarp {
            if n {
                m.header.flags |= LinkFlags::Noarp;
            }
            m.header.change_mask |= LinkFlags::Noarp;
        }
        if let Some(mac) = mac {
            m.attributes.push(LinkAttribute::Address(mac.to_vec()));
        }
        if let Some(master) = master {
            m.attributes.push(LinkAttribute::Controller(master));
        }
        if let Some(mtu) = mtu {
            m.attributes.push(LinkAttribute::Mtu(mtu));
        }
        self.ack("set link", RouteNetlinkMessage::SetLink(m), 0)
    }

    pub fn del_link(&mut self, index: u32) -> Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        self.ack("delete link", RouteNetlinkMessage::DelLink(m), 0)
    }

    fn addr_msg(index: u32, ip: IpAddr, prefix: u8) -> AddressMessage {
        let mut m = AddressMessage::default();
        m.header.family = family(&ip);
        m.header.prefix_len = prefix;
        m.header.index = index;
        m.attributes.push(AddressAttribute::Local(ip));
        m.attributes.push(AddressAttribute::Address(ip));
        m
    }

    pub fn add_addr(&mut self, index: u32, ip: IpAddr, prefix: u8) -> Result<()> {
        self.ack(
            &format!("add address {ip}/{prefix}"),
            RouteNetlinkMessage::NewAddress(Self::addr_msg(index, ip, prefix)),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    pub fn del_addr(&mut self, index: u32, ip: IpAddr, prefix: u8) -> Result<()> {
        self.ack(
            &format!("delete address {ip}/{prefix}"),
            RouteNetlinkMessage::DelAddress(Self::addr_msg(index, ip, prefix)),
            0,
        )
    }

    fn route_msg(r: &Route) -> RouteMessage {
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
        m
    }

    pub fn add_route(&mut self, r: &Route) -> Result<()> {
        self.ack(
            &format!("add route {}", describe_route(r)),
            RouteNetlinkMessage::NewRoute(Self::route_msg(r)),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    pub fn del_route(&mut self, r: &Route) -> Result<()> {
        self.ack(
            &format!("delete route {}", describe_route(r)),
            RouteNetlinkMessage::DelRoute(Self::route_msg(r)),
            0,
        )
    }

    /// Whether the main table holds a host route (/32 or /128) for `ip`. A single FIB
    /// lookup (RTM_F_FIB_MATCH returns the matching entry with its real prefix), so the
    /// cost does not grow with the number of VEs.
    pub fn has_host_route(&mut self, ip: IpAddr) -> Result<bool> {
        let full = if ip.is_ipv4() { 32 } else { 128 };
        let mut m = RouteMessage::default();
        m.header.address_family = family(&ip);
        m.header.destination_prefix_length = full;
        m.header.flags = RouteFlags::FibMatch;
        m.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(ip)));
        let found = match self.request("look up route", RouteNetlinkMessage::GetRoute(m), 0) {
            Ok(v) => v,
            // No route at all (EHOSTUNREACH/ENETUNREACH): certainly no host route.
            Err(e) if e.errno().is_some() => return Ok(false),
            Err(e) => return Err(e),
        };
        Ok(found.into_iter().any(|msg| match msg {
            RouteNetlinkMessage::NewRoute(r) => {
                r.header.destination_prefix_length == full
                    && r.header.kind == RouteType::Unicast
                    && r.attributes.iter().any(
                        |a| matches!(a, RouteAttribute::Destination(d) if route_ip(d) == Some(ip)),
                    )
            }
            _ => false,
        }))
    }

    fn rule_msg(from: (IpAddr, u8), table: u32, priority: Option<u32>) -> RuleMessage {
        let mut m = RuleMessage::default();
        m.header.family = family(&from.0);
        m.header.src_len = from.1;
        m.header.action = RuleAction::ToTable;
        m.header.table = if table < 256 { table as u8 } else { 0 };
        m.attributes.push(RuleAttribute::Table(table));
        m.attributes.push(RuleAttribute::Source(from.0));
        if let Some(p) = priority {
            m.attributes.push(RuleAttribute::Priority(p));
        }
        m
    }

    pub fn add_rule(
        &mut self,
        from: (IpAddr, u8),
        table: u32,
        priority: Option<u32>,
    ) -> Result<()> {
        self.ack(
            &format!("add rule from {}/{} table {table}", from.0, from.1),
            RouteNetlinkMessage::NewRule(Self::rule_msg(from, table, priority)),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    pub fn del_rule(
        &mut self,
        from: (IpAddr, u8),
        table: u32,
        priority: Option<u32>,
    ) -> Result<()> {
        self.ack(
            "delete rule",
            RouteNetlinkMessage::DelRule(Self::rule_msg(from, table, priority)),
            0,
        )
    }

    fn proxy_msg(index: u32, ip: IpAddr) -> NeighbourMessage {
        let mut m = NeighbourMessage::default();
        m.header.family = family(&ip);
        m.header.ifindex = index;
        m.header.flags = NeighbourFlags::Proxy;
        m.attributes.push(NeighbourAttribute::Destination(match ip {
            IpAddr::V4(a) => NeighbourAddress::Inet(a),
            IpAddr::V6(a) => NeighbourAddress::Inet6(a),
        }));
        m
    }

    /// A proxy ARP/NDP entry: the host answers for `ip` on the uplink.
    pub fn add_proxy(&mut self, index: u32, ip: IpAddr) -> Result<()> {
        self.ack(
            &format!("add neighbour proxy {ip}"),
            RouteNetlinkMessage::NewNeighbour(Self::proxy_msg(index, ip)),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    pub fn del_proxy(&mut self, index: u32, ip: IpAddr) -> Result<()> {
        self.ack(
            "delete neighbour proxy",
            RouteNetlinkMessage::DelNeighbour(Self::proxy_msg(index, ip)),
            0,
        )
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
    handle
        .join()
        .map_err(|_| NlError::Decode("network namespace worker panicked".into()))?
}

/// Writes a sysctl of the calling thread's network namespace.
pub fn sysctl(path: &str, value: &str) -> std::io::Result<()> {
    std::fs::write(Path::new("/proc/sys").join(path), value)
}
