//! VE networking, done by the runtime: addresses, a routed (venet) or bridged (veth)
//! link, routes and policy rules, DNS, and the host-side guards against spoofing and
//! sniffing.
//!
//! venet is a veth pair with ARP off on both ends and the same MAC on both, so the VE
//! sees a point-to-point device with no neighbour but itself; the host routes each VE
//! address (/32, /128) to its end. The host end drops any packet whose source is not one
//! of the VE's addresses (nftables, netdev ingress), so a VE holding CAP_NET_ADMIN can
//! neither add a foreign address nor forge a source.

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod guard;

use super::{bad, VeError, PREFIX};
use crate::sys::netlink::{
    self, in_netns, Address, LinkChange, Netlink, NlError, ProxyNeighbour, Route, Rule, Veth,
};

pub const KEYS: &[&str] = &[
    "net.mode",
    "net.ip",
    "net.bridge",
    "net.mac",
    "net.mac_filter",
    "net.gateway",
    "net.routes",
    "net.rules",
    "net.nameserver",
    "net.searchdomain",
    "net.uplink",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Venet,
    Veth,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Addr {
    pub ip: IpAddr,
    pub prefix: u8,
}

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.ip, self.prefix)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleSpec {
    pub from: Addr,
    pub table: u32,
    pub priority: Option<u32>,
}

/// The network settings of a VE, from its annotations.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetConfig {
    pub mode: Mode,
    pub ips: Vec<Addr>,
    pub bridge: Option<String>,
    pub mac: Option<[u8; 6]>,
    pub mac_filter: bool,
    pub gateways: Vec<IpAddr>,
    pub routes: Vec<RouteSpec>,
    pub rules: Vec<RuleSpec>,
    pub nameservers: Option<Vec<String>>,
    pub searchdomains: Option<Vec<String>>,
    pub uplink: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteSpec {
    pub dst: Option<Addr>,
    pub via: Option<IpAddr>,
    pub src: Option<IpAddr>,
    pub mtu: Option<u32>,
    pub table: Option<u32>,
    pub text: String,
}

/// What networking set up on the host, for teardown and `ve show`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NetRecord {
    pub mode: Mode,
    pub host_if: Option<String>,
    pub ve_if: Option<String>,
    pub ips: Vec<Addr>,
    pub routes: Vec<RouteSpec>,
    pub uplink: Option<String>,
    pub proxied: Vec<IpAddr>,
    pub nft_table: Option<String>,
    /// The namespace belongs to the caller (a netns path in the spec): links and rules we
    /// put into it must be removed explicitly, it will not die with the VE.
    pub caller_netns: Option<PathBuf>,
    pub rules: Vec<RuleSpec>,
    pub bridge: Option<String>,
    pub mac: Option<String>,
    pub resolv_conf: Option<PathBuf>,
}

pub fn parse_addr(text: &str, default_prefix: Option<u8>) -> Result<Addr, String> {
    let (ip, prefix) = match text.split_once('/') {
        Some((ip, p)) => (ip, Some(p)),
        None => (text, None),
    };
    let ip: IpAddr = ip
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not an IP address"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("{text:?}: prefix must be 0..{max}"))?,
        None => default_prefix.map(|d| d.min(max)).unwrap_or(max),
    };
    Ok(Addr { ip, prefix })
}

fn parse_mac(text: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = text.split(':').collect();
    let mut mac = [0u8; 6];
    if parts.len() != 6 {
        return Err(format!("{text:?} is not a MAC address"));
    }
    for (i, p) in parts.iter().enumerate() {
        mac[i] = u8::from_str_radix(p, 16).map_err(|_| format!("{text:?} is not a MAC address"))?;
    }
    if mac[0] & 1 == 1 {
        return Err(format!("{text:?} is a multicast address"));
    }
    Ok(mac)
}

fn parse_table(t: &str) -> Result<u32, String> {
    match t {
        "main" => Ok(254),
        "local" => Ok(255),
        "default" => Ok(253),
        n => n
            .parse::<u32>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("table {t:?} is not a table number or main/local/default")),
    }
}

/// `DEST [via GW] [src ADDR] [mtu N] [table T]`, in `ip route` words.
pub fn parse_route(text: &str) -> Result<RouteSpec, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let Some(first) = words.first() else {
        return Err("empty route".into());
    };
    let dst = if *first == "default" {
        None
    } else {
        Some(parse_addr(first, None)?)
    };
    let mut r = RouteSpec {
        dst,
        via: None,
        src: None,
        mtu: None,
        table: None,
        text: words.join(" "),
    };
    let mut i = 1;
    while i < words.len() {
        let val = words
            .get(i + 1)
            .ok_or_else(|| format!("route {text:?}: {} needs a value", words[i]))?;
        match words[i] {
            "via" => {
                r.via = Some(
                    val.parse()
                        .map_err(|_| format!("route {text:?}: via {val:?} is not an address"))?,
                )
            }
            "src" => {
                r.src = Some(
                    val.parse()
                        .map_err(|_| format!("route {text:?}: src {val:?} is not an address"))?,
                )
            }
            "mtu" => {
                let m: u32 = val
                    .parse()
                    .map_err(|_| format!("route {text:?}: mtu {val:?} is not a number"))?;
                let min = if route_is_v6(&r) { 1280 } else { 68 };
                if !(min..=65535).contains(&m) {
                    return Err(format!(
                        "route {text:?}: mtu {m} is out of range ({min}..65535)"
                    ));
                }
                r.mtu = Some(m);
            }
            "table" => {
                r.table = Some(parse_table(val).map_err(|e| format!("route {text:?}: {e}"))?)
            }
            w => {
                return Err(format!(
                    "route {text:?}: unknown word {w:?} (use via, src, mtu, table)"
                ))
            }
        }
        i += 2;
    }
    let fams: Vec<bool> = [
        r.dst.as_ref().map(|d| d.ip.is_ipv6()),
        r.via.map(|v| v.is_ipv6()),
        r.src.map(|s| s.is_ipv6()),
    ]
    .into_iter()
    .flatten()
    .collect();
    if fams.windows(2).any(|w| w[0] != w[1]) {
        return Err(format!("route {text:?}: mixes IPv4 and IPv6"));
    }
    Ok(r)
}

fn route_is_v6(r: &RouteSpec) -> bool {
    r.dst
        .as_ref()
        .map(|d| d.ip.is_ipv6())
        .or(r.via.map(|v| v.is_ipv6()))
        .unwrap_or(false)
}

/// `from PREFIX table T [priority N]`.
pub fn parse_rule(text: &str) -> Result<RuleSpec, String> {
    let w: Vec<&str> = text.split_whitespace().collect();
    let mut from = None;
    let mut table = None;
    let mut priority = None;
    let mut i = 0;
    while i < w.len() {
        let val = w
            .get(i + 1)
            .ok_or_else(|| format!("rule {text:?}: {} needs a value", w[i]))?;
        match w[i] {
            "from" => from = Some(parse_addr(val, None)?),
            "table" | "lookup" => {
                table = Some(parse_table(val).map_err(|e| format!("rule {text:?}: {e}"))?)
            }
            "priority" | "pref" => {
                priority = Some(
                    val.parse::<u32>()
                        .map_err(|_| format!("rule {text:?}: priority {val:?} is not a number"))?,
                )
            }
            other => {
                return Err(format!(
                    "rule {text:?}: unknown word {other:?} (use from, table, priority)"
                ))
            }
        }
        i += 2;
    }
    Ok(RuleSpec {
        from: from.ok_or_else(|| format!("rule {text:?}: needs from PREFIX"))?,
        table: table.ok_or_else(|| format!("rule {text:?}: needs table T"))?,
        priority,
    })
}

fn semicolon_list(v: &str) -> Vec<String> {
    v.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn list(v: &str) -> Vec<String> {
    v.split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

impl NetConfig {
    /// `None` when the VE has no network settings at all.
    pub fn parse(a: &HashMap<String, String>) -> Result<Option<NetConfig>, VeError> {
        let get = |k: &str| a.get(&format!("{PREFIX}{k}")).map(|s| s.trim().to_string());
        if KEYS.iter().all(|k| get(k).is_none()) {
            return Ok(None);
        }
        let mut c = NetConfig {
            mac_filter: true,
            ..Default::default()
        };
        c.mode = match get("net.mode").as_deref() {
            None | Some("venet") => Mode::Venet,
            Some("veth") => Mode::Veth,
            Some(other) => return Err(bad("net.mode", format!("{other:?} is not venet or veth"))),
        };
        let default_prefix = match c.mode {
            Mode::Venet => None,
            Mode::Veth => Some(24),
        };
        for ip in get("net.ip").map(|v| list(&v)).unwrap_or_default() {
            let mut addr = parse_addr(
                &ip,
                if ip.contains(':') {
                    default_prefix.map(|_| 64)
                } else {
                    default_prefix
                },
            )
            .map_err(|e| bad("net.ip", e))?;
            if c.mode == Mode::Venet {
                // venet routes single addresses, whatever prefix was written.
                addr.prefix = if addr.ip.is_ipv4() { 32 } else { 128 };
            }
            if c.ips.iter().any(|x| x.ip == addr.ip) {
                return Err(bad("net.ip", format!("{} is listed twice", addr.ip)));
            }
            c.ips.push(addr);
        }
        c.bridge = get("net.bridge");
        if c.mode == Mode::Veth && c.bridge.is_none() {
            return Err(bad("net.bridge", "veth mode needs a host bridge to join"));
        }
        if c.mode == Mode::Venet && c.bridge.is_some() {
            return Err(bad("net.bridge", "only used with io.vzrun.net.mode=veth"));
        }
        if let Some(m) = get("net.mac") {
            c.mac = Some(parse_mac(&m).map_err(|e| bad("net.mac", e))?);
        }
        c.mac_filter = match get("net.mac_filter").as_deref() {
            None | Some("on") => true,
            Some("off") => false,
            Some(o) => return Err(bad("net.mac_filter", format!("{o:?} is not on or off"))),
        };
        for g in get("net.gateway").map(|v| list(&v)).unwrap_or_default() {
            c.gateways.push(
                g.parse()
                    .map_err(|_| bad("net.gateway", format!("{g:?} is not an IP address")))?,
            );
        }
        for r in get("net.routes")
            .map(|v| semicolon_list(&v))
            .unwrap_or_default()
        {
            c.routes
                .push(parse_route(&r).map_err(|e| bad("net.routes", e))?);
        }
        for r in get("net.rules")
            .map(|v| semicolon_list(&v))
            .unwrap_or_default()
        {
            c.rules
                .push(parse_rule(&r).map_err(|e| bad("net.rules", e))?);
        }
        c.nameservers = get("net.nameserver").map(|v| list(&v));
        if let Some(ns) = &c.nameservers {
            for n in ns.iter().filter(|n| *n != "inherit") {
                n.parse::<IpAddr>().map_err(|_| {
                    bad(
                        "net.nameserver",
                        format!("{n:?} is not an IP address (or inherit)"),
                    )
                })?;
            }
        }
        c.searchdomains = get("net.searchdomain").map(|v| list(&v));
        c.uplink = get("net.uplink");
        Ok(Some(c))
    }
}

/// Takes the VE's link to the host down (or up again). While a VE is moved its TCP
/// sockets must stay silent here: the kernel would otherwise answer a client's packets
/// (acknowledging data the destination never gets) or, when the VE is removed, close
/// the connections with a FIN. Without a host-side link (a caller's namespace) nothing
/// is done.
pub fn set_host_link(rec: &NetRecord, up: bool) -> Result<(), VeError> {
    let Some(host_if) = &rec.host_if else {
        return Ok(());
    };
    let mut nl = Netlink::new().map_err(nl_err)?;
    let Some(idx) = nl.link_index(host_if).map_err(nl_err)? else {
        return Ok(());
    };
    nl.set_link(idx, &LinkChange::up(up)).map_err(nl_err)?;
    // Taking a link down flushes the routes through it: a venet VE's host routes come
    // back with the link.
    if up && rec.mode == Mode::Venet {
        for a in &rec.ips {
            let r = Route {
                dst: Some((a.ip, a.prefix)),
                oif: Some(idx),
                onlink_scope: true,
                ..Default::default()
            };
            if !nl.has_host_route(a.ip).unwrap_or(false) {
                nl.add(&r).map_err(nl_err)?;
            }
        }
    }
    Ok(())
}

/// Tells the LAN at once that the VE's IPv4 addresses answer on this host's uplink now
/// (a VE that arrived by migration or restore, or an address another host had), as
/// vzctl's arpsend does; neighbours would otherwise wait for their caches to expire.
pub fn announce(rec: &NetRecord) {
    let Some(u) = &rec.uplink else { return };
    let Ok(mut nl) = Netlink::new() else { return };
    let Ok(Some(up)) = nl.link_index(u) else {
        return;
    };
    if let Ok(Some(mac)) = nl.link_mac(up) {
        for ip in &rec.proxied {
            if let IpAddr::V4(v4) = ip {
                let _ = gratuitous_arp(up, &mac, *v4);
            }
        }
    }
}

/// Broadcasts an ARP request for `ip` from `ip` itself on the link `ifindex`, so that
/// neighbours update their caches to `mac`.
fn gratuitous_arp(ifindex: u32, mac: &[u8], ip: std::net::Ipv4Addr) -> std::io::Result<()> {
    use std::os::fd::{FromRawFd, OwnedFd};
    if mac.len() != 6 {
        return Ok(());
    }
    const ETH_P_ARP: u16 = 0x0806;
    let mut frame = Vec::with_capacity(42);
    frame.extend_from_slice(&[0xff; 6]);
    frame.extend_from_slice(mac);
    frame.extend_from_slice(&ETH_P_ARP.to_be_bytes());
    // htype Ethernet, ptype IPv4, hlen 6, plen 4, op request
    frame.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    frame.extend_from_slice(mac);
    frame.extend_from_slice(&ip.octets());
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&ip.octets());
    // SAFETY: plain socket(2); the descriptor is owned below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, ETH_P_ARP.to_be() as i32) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a new descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: all-zero is a valid sockaddr_ll; the fields used are set below.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = ETH_P_ARP.to_be();
    addr.sll_ifindex = ifindex as i32;
    addr.sll_halen = 6;
    addr.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    for _ in 0..2 {
        // SAFETY: frame and addr outlive the call; lengths are theirs.
        let rc = unsafe {
            libc::sendto(
                std::os::fd::AsRawFd::as_raw_fd(&sock),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A name for the host end that fits IFNAMSIZ and is new for every incarnation of a VE:
/// the pair of a VE just deleted may live on for a moment while the kernel tears its
/// namespace down, and a VE created again under the same ID must not wait for it.
pub fn host_ifname(root: &Path, id: &str, salt: u64) -> String {
    let h = crate::sys::hash::fnv(&[
        root.as_os_str().as_encoded_bytes(),
        &[0u8],
        id.as_bytes(),
        &salt.to_le_bytes(),
    ]);
    format!("vz{:010x}", h & 0xff_ffff_ffff)
}

fn incarnation() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    now ^ ((std::process::id() as u64) << 32)
}

/// resolv.conf for the VE, or None when no DNS settings were given.
pub fn resolv_conf(c: &NetConfig) -> Option<String> {
    if c.nameservers.is_none() && c.searchdomains.is_none() {
        return None;
    }
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let host_words = |key: &str| -> Vec<String> {
        host.lines()
            .filter_map(|l| l.strip_prefix(key))
            .flat_map(|rest| {
                rest.split_whitespace()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let expand = |v: &Option<Vec<String>>, key: &str| -> Vec<String> {
        match v {
            Some(v) if v.iter().any(|x| x == "inherit") => host_words(key),
            Some(v) => v.clone(),
            None => Vec::new(),
        }
    };
    let mut out = String::from("# written by vzrun\n");
    let search = expand(&c.searchdomains, "search");
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    for ns in expand(&c.nameservers, "nameserver") {
        out.push_str(&format!("nameserver {ns}\n"));
    }
    Some(out)
}

fn nl_err(e: NlError) -> VeError {
    VeError::Net(e.to_string())
}

fn netns_of(pid: i32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/ns/net"))
}

fn same_netns_as_host(pid: i32) -> bool {
    let a = std::fs::metadata(netns_of(pid));
    let b = std::fs::metadata("/proc/self/ns/net");
    match (a, b) {
        (Ok(a), Ok(b)) => {
            use std::os::unix::fs::MetadataExt;
            a.ino() == b.ino() && a.dev() == b.dev()
        }
        _ => false,
    }
}

/// Checks against the host what can be checked before anything is made: the bridge
/// exists, the uplink exists, and no address is already routed to someone else.
pub fn preflight(c: &NetConfig) -> Result<(), VeError> {
    let mut nl = Netlink::new().map_err(nl_err)?;
    if let Some(b) = &c.bridge {
        if nl.link_index(b).map_err(nl_err)?.is_none() {
            return Err(bad(
                "net.bridge",
                format!("bridge {b:?} does not exist on the host"),
            ));
        }
    }
    if let Some(u) = &c.uplink {
        if nl.link_index(u).map_err(nl_err)?.is_none() {
            return Err(bad(
                "net.uplink",
                format!("device {u:?} does not exist on the host"),
            ));
        }
    }
    if c.mode == Mode::Venet {
        for a in &c.ips {
            if nl.has_host_route(a.ip).map_err(nl_err)? {
                return Err(bad(
                    "net.ip",
                    format!("address {} is already held by another VE", a.ip),
                ));
            }
        }
    }
    Ok(())
}

/// Configures the VE's network namespace (that of `pid`) and the host side. Every host
/// object is written into `rec` as soon as it exists.
pub fn setup(
    c: &NetConfig,
    root: &Path,
    id: &str,
    pid: i32,
    rec: &mut NetRecord,
) -> Result<(), VeError> {
    if same_netns_as_host(pid) {
        return Err(bad(
            "net.ip",
            "the VE shares the host's network namespace (the spec has no network namespace)",
        ));
    }
    setup_at(c, root, id, &netns_of(pid), rec, true)
}

/// [`setup`] for a namespace named by a path (a restore configures the namespace it made
/// before CRIU brings the processes back into it). With `on_wire` false the host end
/// stays down, without host routes and unannounced, until [`set_host_link`] brings it
/// up: a restore must not take packets before CRIU has its sockets back, or the kernel
/// answers a client's segment with a reset.
pub fn setup_at(
    c: &NetConfig,
    root: &Path,
    id: &str,
    ns: &Path,
    rec: &mut NetRecord,
    on_wire: bool,
) -> Result<(), VeError> {
    rec.mode = c.mode;
    rec.uplink = c.uplink.clone();
    rec.bridge = c.bridge.clone();
    let ns = ns.to_path_buf();
    let host_if = host_ifname(root, id, incarnation());
    let ve_if = match c.mode {
        Mode::Venet => "venet0",
        Mode::Veth => "eth0",
    };
    let mut nl = Netlink::new().map_err(nl_err)?;
    let nsfile = std::fs::File::open(&ns)
        .map_err(|e| VeError::Net(format!("open {}: {e}", ns.display())))?;
    let ve_mac = match c.mode {
        Mode::Veth => Some(c.mac.unwrap_or_else(|| generated_mac(&host_if))),
        Mode::Venet => None,
    };
    nl.add_veth(&Veth {
        host: &host_if,
        peer: ve_if,
        peer_netns: nsfile.as_fd(),
        peer_mac: ve_mac.as_ref().map(|m| &m[..]),
    })
    .map_err(nl_err)?;
    rec.host_if = Some(host_if.clone());
    rec.ve_if = Some(ve_if.to_string());
    let host_idx = nl
        .link_index(&host_if)
        .map_err(nl_err)?
        .ok_or_else(|| VeError::Net(format!("{host_if} vanished")))?;

    // Inside the VE.
    let inside = c.clone();
    let ve_if_s = ve_if.to_string();
    let mac = in_netns(&ns, move || configure_inside(&inside, &ve_if_s)).map_err(nl_err)??;
    rec.mac = Some(format_mac(&mac));
    rec.ips = c.ips.clone();
    rec.routes = c.routes.clone();
    rec.rules = c.rules.clone();

    // The host end.
    match c.mode {
        Mode::Venet => {
            nl.set_link(
                host_idx,
                &LinkChange {
                    up: Some(on_wire),
                    noarp: Some(true),
                    mac: Some(&mac),
                    ..Default::default()
                },
            )
            .map_err(nl_err)?;
            let _ = netlink::sysctl(&format!("net/ipv4/conf/{host_if}/forwarding"), "1");
            let _ = netlink::sysctl(&format!("net/ipv6/conf/{host_if}/forwarding"), "1");
            let _ = netlink::sysctl(&format!("net/ipv6/conf/{host_if}/force_forwarding"), "1");
            // A route through a down link is refused; set_host_link adds them with it.
            for a in c.ips.iter().filter(|_| on_wire) {
                nl.add(&Route {
                    dst: Some((a.ip, a.prefix)),
                    oif: Some(host_idx),
                    onlink_scope: true,
                    ..Default::default()
                })
                .map_err(nl_err)?;
            }
            if let Some(u) = &c.uplink {
                let up = nl
                    .link_index(u)
                    .map_err(nl_err)?
                    .ok_or_else(|| bad("net.uplink", format!("device {u:?} does not exist")))?;
                let _ = netlink::sysctl(&format!("net/ipv6/conf/{u}/proxy_ndp"), "1");
                for a in &c.ips {
                    nl.add(&ProxyNeighbour { link: up, ip: a.ip })
                        .map_err(nl_err)?;
                    rec.proxied.push(a.ip);
                }
                if on_wire {
                    announce(rec);
                }
            }
        }
        Mode::Veth => {
            let bridge = c.bridge.as_deref().unwrap_or_default();
            let bidx = nl.link_index(bridge).map_err(nl_err)?.ok_or_else(|| {
                bad(
                    "net.bridge",
                    format!("bridge {bridge:?} does not exist on the host"),
                )
            })?;
            nl.set_link(
                host_idx,
                &LinkChange {
                    up: Some(on_wire),
                    master: Some(bidx),
                    ..Default::default()
                },
            )
            .map_err(nl_err)?;
            // Unknown unicast is not flooded to a VE's port, so one VE never sees frames
            // meant for another; its own MAC is pinned to its port.
            guard::bridge_port_isolation(&mut nl, host_idx, &mac).map_err(nl_err)?;
        }
    }
    if kernel_guard_applies(c.mode, &c.ips) {
        kernel_guard(&host_if);
    } else {
        let table = guard::guard(&host_if, c, &mac).map_err(VeError::Net)?;
        rec.nft_table = Some(table);
    }
    Ok(())
}

/// An IPv4-only venet VE needs no nftables at all: strict reverse-path filtering on the
/// host end drops any source that is not routed back through it (that is, anything but
/// the VE's own /32s), the host end ignores ARP (NOARP), and IPv6 is off on it. This
/// costs nothing per packet, and nothing per VE at create and delete: nft reloads the
/// whole ruleset for every change, so per-VE tables slow down as VEs are added.
fn kernel_guard_applies(mode: Mode, ips: &[Addr]) -> bool {
    let loose = std::fs::read_to_string("/proc/sys/net/ipv4/conf/all/rp_filter")
        .map(|v| v.trim() == "2")
        .unwrap_or(true);
    mode == Mode::Venet && !ips.iter().any(|a| a.ip.is_ipv6()) && !loose
}

fn kernel_guard(host_if: &str) {
    let _ = netlink::sysctl(&format!("net/ipv4/conf/{host_if}/rp_filter"), "1");
    let _ = netlink::sysctl(&format!("net/ipv6/conf/{host_if}/disable_ipv6"), "1");
}

fn parse_mac_text(m: &str) -> Vec<u8> {
    m.split(':')
        .filter_map(|b| u8::from_str_radix(b, 16).ok())
        .collect()
}

fn generated_mac(seed: &str) -> [u8; 6] {
    let mut h: u64 = 0x84222325cbf29ce4;
    for b in seed.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    let b = h.to_be_bytes();
    // Locally administered, unicast: the OpenVZ-style 00:18:51 prefix is a vendor OUI.
    [0x02, 0x18, b[3], b[4], b[5], b[6]]
}

fn format_mac(m: &[u8]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn configure_inside(c: &NetConfig, ve_if: &str) -> Result<Vec<u8>, VeError> {
    let mut nl = Netlink::new().map_err(nl_err)?;
    if let Some(lo) = nl.link_index("lo").map_err(nl_err)? {
        nl.set_link(lo, &LinkChange::up(true)).map_err(nl_err)?;
    }
    let idx = nl
        .link_index(ve_if)
        .map_err(nl_err)?
        .ok_or_else(|| VeError::Net(format!("{ve_if} missing in the VE")))?;
    let _ = netlink::sysctl(&format!("net/ipv6/conf/{ve_if}/accept_dad"), "0");
    let _ = netlink::sysctl(&format!("net/ipv6/conf/{ve_if}/dad_transmits"), "0");
    let venet = c.mode == Mode::Venet;
    nl.set_link(
        idx,
        &LinkChange {
            up: Some(true),
            noarp: Some(venet),
            ..Default::default()
        },
    )
    .map_err(nl_err)?;
    for a in &c.ips {
        nl.add(&Address {
            link: idx,
            ip: a.ip,
            prefix: a.prefix,
        })
        .map_err(nl_err)?;
    }
    if venet {
        if c.ips.iter().any(|a| a.ip.is_ipv4()) {
            nl.add(&Route {
                oif: Some(idx),
                onlink_scope: true,
                ..Default::default()
            })
            .map_err(nl_err)?;
        }
        if c.ips.iter().any(|a| a.ip.is_ipv6()) {
            nl.add(&Route {
                oif: Some(idx),
                v6: true,
                ..Default::default()
            })
            .map_err(nl_err)?;
        }
    } else {
        for g in &c.gateways {
            nl.add(&Route {
                via: Some(*g),
                oif: Some(idx),
                v6: g.is_ipv6(),
                ..Default::default()
            })
            .map_err(nl_err)?;
        }
    }
    for r in &c.routes {
        nl.add(&to_route(r, idx)).map_err(nl_err)?;
    }
    for r in &c.rules {
        nl.add(&to_rule(r)).map_err(nl_err)?;
    }
    Ok(nl.link_mac(idx).map_err(nl_err)?.unwrap_or_default())
}

fn to_rule(r: &RuleSpec) -> Rule {
    Rule {
        from: (r.from.ip, r.from.prefix),
        table: r.table,
        priority: r.priority,
    }
}

fn to_route(r: &RouteSpec, oif: u32) -> Route {
    Route {
        dst: r.dst.as_ref().map(|d| (d.ip, d.prefix)),
        via: r.via,
        src: r.src,
        oif: Some(oif),
        mtu: r.mtu,
        table: r.table,
        v6: route_is_v6(r),
        onlink_scope: r.via.is_none() && !route_is_v6(r),
    }
}

/// Removes what `setup` recorded; every step is attempted whatever failed before.
pub fn teardown(rec: &NetRecord) {
    let Ok(mut nl) = Netlink::new() else { return };
    if let Some(u) = &rec.uplink {
        if let Ok(Some(idx)) = nl.link_index(u) {
            for ip in &rec.proxied {
                let _ = nl.del(&ProxyNeighbour { link: idx, ip: *ip });
            }
        }
    }
    if let Some(ns) = &rec.caller_netns {
        {
            let rules: Vec<Rule> = rec.rules.iter().map(to_rule).collect();
            let _ = in_netns(ns, move || {
                if let Ok(mut inner) = Netlink::new() {
                    for r in &rules {
                        let _ = inner.del(r);
                    }
                }
            });
        }
    }
    // The guard goes before the link, so there is never a table without its link.
    if let Some(t) = &rec.nft_table {
        guard::remove(t);
    }
    // The host routes go now, so the addresses are free at once for another VE.
    if let Some(h) = &rec.host_if {
        if let (Mode::Venet, Ok(Some(idx))) = (rec.mode, nl.link_index(h)) {
            for a in &rec.ips {
                let _ = nl.del(&Route {
                    dst: Some((a.ip, a.prefix)),
                    oif: Some(idx),
                    onlink_scope: true,
                    ..Default::default()
                });
            }
        }
    }
    // A veth pair dies with the VE's own namespace, which the kernel tears down on its
    // own once the init is gone; deleting it here would wait behind that teardown (RCU
    // grace periods, tens of ms). Only a caller-owned namespace outlives the VE.
    if let (Some(h), Some(_)) = (&rec.host_if, &rec.caller_netns) {
        if let Ok(Some(idx)) = nl.link_index(h) {
            let _ = nl.del_link(idx);
        }
    }
}

/// Adds and removes addresses and routes on a running VE (`ve set`).
pub fn change(
    rec: &mut NetRecord,
    pid: i32,
    add: &[Addr],
    del: &[IpAddr],
    routes_add: &[RouteSpec],
    routes_del: &[RouteSpec],
) -> Result<(), VeError> {
    let ns = netns_of(pid);
    let ve_if = rec
        .ve_if
        .clone()
        .ok_or_else(|| VeError::Net("the VE has no vzrun-managed network".into()))?;
    let mut nl = Netlink::new().map_err(nl_err)?;
    for a in add {
        if rec.ips.iter().any(|x| x.ip == a.ip) {
            return Err(VeError::Flag {
                flag: "--ipadd".into(),
                problem: format!("{} is already an address of this VE", a.ip),
            });
        }
        if rec.mode == Mode::Venet && nl.has_host_route(a.ip).map_err(nl_err)? {
            return Err(VeError::Flag {
                flag: "--ipadd".into(),
                problem: format!("address {} is already held by another VE", a.ip),
            });
        }
    }
    let (add_v, del_v, ra, rd) = (
        add.to_vec(),
        del.to_vec(),
        routes_add.to_vec(),
        routes_del.to_vec(),
    );
    let (mode, had_v4, had_v6) = (
        rec.mode,
        rec.ips.iter().any(|a| a.ip.is_ipv4()),
        rec.ips.iter().any(|a| a.ip.is_ipv6()),
    );
    let del_prefixes: Vec<Addr> = rec
        .ips
        .iter()
        .filter(|a| del_v.contains(&a.ip))
        .cloned()
        .collect();
    in_netns(&ns, move || -> Result<(), VeError> {
        let mut n = Netlink::new().map_err(nl_err)?;
        let idx = n
            .link_index(&ve_if)
            .map_err(nl_err)?
            .ok_or_else(|| VeError::Net(format!("{ve_if} missing")))?;
        for a in &add_v {
            n.add(&Address {
                link: idx,
                ip: a.ip,
                prefix: a.prefix,
            })
            .map_err(nl_err)?;
        }
        if mode == Mode::Venet {
            if !had_v4 && add_v.iter().any(|a| a.ip.is_ipv4()) {
                let _ = n.add(&Route {
                    oif: Some(idx),
                    onlink_scope: true,
                    ..Default::default()
                });
            }
            if !had_v6 && add_v.iter().any(|a| a.ip.is_ipv6()) {
                let _ = n.add(&Route {
                    oif: Some(idx),
                    v6: true,
                    ..Default::default()
                });
            }
        }
        for a in &del_prefixes {
            n.del(&Address {
                link: idx,
                ip: a.ip,
                prefix: a.prefix,
            })
            .map_err(nl_err)?;
        }
        for r in &rd {
            n.del(&to_route(r, idx)).map_err(nl_err)?;
        }
        for r in &ra {
            n.add(&to_route(r, idx)).map_err(nl_err)?;
        }
        Ok(())
    })
    .map_err(nl_err)??;
    let host_idx = rec
        .host_if
        .as_deref()
        .and_then(|h| nl.link_index(h).ok().flatten());
    // A kernel-guarded VE has IPv6 off on its host end: turn it on for a first IPv6.
    if let (Some(h), None) = (&rec.host_if, &rec.nft_table) {
        if add.iter().any(|a| a.ip.is_ipv6()) {
            let _ = netlink::sysctl(&format!("net/ipv6/conf/{h}/disable_ipv6"), "0");
            let _ = netlink::sysctl(&format!("net/ipv6/conf/{h}/forwarding"), "1");
            let _ = netlink::sysctl(&format!("net/ipv6/conf/{h}/force_forwarding"), "1");
        }
    }
    for a in add {
        if let (Mode::Venet, Some(hi)) = (rec.mode, host_idx) {
            nl.add(&Route {
                dst: Some((a.ip, a.prefix)),
                oif: Some(hi),
                onlink_scope: true,
                ..Default::default()
            })
            .map_err(nl_err)?;
        }
        rec.ips.push(a.clone());
    }
    for ip in del {
        if let Some(pos) = rec.ips.iter().position(|x| x.ip == *ip) {
            let a = rec.ips.remove(pos);
            if let (Mode::Venet, Some(hi)) = (rec.mode, host_idx) {
                let _ = nl.del(&Route {
                    dst: Some((a.ip, a.prefix)),
                    oif: Some(hi),
                    onlink_scope: true,
                    ..Default::default()
                });
            }
        }
    }
    for r in routes_del {
        rec.routes.retain(|x| x.text != r.text);
    }
    rec.routes.extend(routes_add.iter().cloned());
    if let Some(h) = rec.host_if.clone() {
        match &rec.nft_table {
            Some(t) => guard::refresh_addresses(t, &h, &rec.ips).map_err(VeError::Net)?,
            None if !kernel_guard_applies(rec.mode, &rec.ips) => {
                // The first IPv6 address: the kernel guard no longer covers the VE.
                let cfg = NetConfig {
                    mode: rec.mode,
                    ips: rec.ips.clone(),
                    mac_filter: false,
                    ..Default::default()
                };
                let mac = parse_mac_text(rec.mac.as_deref().unwrap_or_default());
                rec.nft_table = Some(guard::guard(&h, &cfg, &mac).map_err(VeError::Net)?);
            }
            None => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::ve::test_annotations as ann;

    #[test]
    fn venet_addresses_are_single_hosts() {
        let c = NetConfig::parse(&ann(&[("net.ip", "198.51.100.5/24, 2001:db8::5")]))
            .unwrap()
            .unwrap();
        assert_eq!(c.mode, Mode::Venet);
        assert_eq!(c.ips[0].to_string(), "198.51.100.5/32");
        assert_eq!(c.ips[1].to_string(), "2001:db8::5/128");
        assert!(NetConfig::parse(&ann(&[])).unwrap().is_none());
    }

    #[test]
    fn veth_needs_a_bridge_and_keeps_prefixes() {
        let err =
            NetConfig::parse(&ann(&[("net.mode", "veth"), ("net.ip", "203.0.113.2")])).unwrap_err();
        assert!(err.to_string().contains("io.vzrun.net.bridge"), "{err}");
        let c = NetConfig::parse(&ann(&[
            ("net.mode", "veth"),
            ("net.bridge", "br0"),
            ("net.ip", "203.0.113.2"),
            ("net.mac", "02:00:00:00:00:01"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(c.ips[0].to_string(), "203.0.113.2/24");
        assert_eq!(c.mac, Some([2, 0, 0, 0, 0, 1]));
    }

    #[test]
    fn bad_values_name_the_annotation() {
        for (k, v, words) in [
            ("net.ip", "198.51.100.300", "io.vzrun.net.ip"),
            ("net.ip", "198.51.100.1,198.51.100.1", "listed twice"),
            ("net.mode", "bridge", "io.vzrun.net.mode"),
            ("net.mac", "zz:00:00:00:00:00", "io.vzrun.net.mac"),
            ("net.mac", "01:00:00:00:00:00", "multicast"),
            (
                "net.routes",
                "203.0.113.0/24 mtu 20",
                "mtu 20 is out of range",
            ),
            ("net.routes", "203.0.113.0/24 dev eth9", "unknown word"),
            ("net.routes", "203.0.113.0/24 via 2001:db8::1", "mixes"),
            ("net.rules", "table 5", "needs from"),
            ("net.nameserver", "dns.example", "io.vzrun.net.nameserver"),
            ("net.mac_filter", "maybe", "io.vzrun.net.mac_filter"),
        ] {
            let err = NetConfig::parse(&ann(&[
                (k, v),
                ("net.ip", if k == "net.ip" { v } else { "198.51.100.9" }),
            ]))
            .unwrap_err()
            .to_string();
            assert!(err.contains(words), "{k}={v}: {err}");
        }
    }

    #[test]
    fn routes_and_rules_in_ip_words() {
        let r = parse_route("203.0.113.0/24 via 198.51.100.1 src 198.51.100.5 mtu 1300 table 100")
            .unwrap();
        assert_eq!(r.dst.unwrap().to_string(), "203.0.113.0/24");
        assert_eq!((r.mtu, r.table), (Some(1300), Some(100)));
        assert_eq!(parse_route("default via 198.51.100.1").unwrap().dst, None);
        let rule = parse_rule("from 198.51.100.0/24 table 100 priority 1000").unwrap();
        assert_eq!((rule.table, rule.priority), (100, Some(1000)));
        assert_eq!(
            parse_rule("from 198.51.100.7 lookup main").unwrap().table,
            254
        );
    }

    #[test]
    fn dns_words_and_inherit() {
        let c = NetConfig::parse(&ann(&[
            ("net.nameserver", "198.51.100.53,2001:db8::53"),
            ("net.searchdomain", "example.test"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(resolv_conf(&c).unwrap(), "# written by vzrun\nsearch example.test\nnameserver 198.51.100.53\nnameserver 2001:db8::53\n");
    }

    #[test]
    fn host_names_fit_ifnamsiz_and_differ() {
        let a = host_ifname(Path::new("/run/vzrun"), "web1", 1);
        let b = host_ifname(Path::new("/run/vzrun"), "web2", 1);
        let c = host_ifname(Path::new("/tmp/other"), "web1", 1);
        assert_ne!(
            a,
            host_ifname(Path::new("/run/vzrun"), "web1", 2),
            "a new incarnation, a new name"
        );
        assert!(a.len() <= 15 && a.starts_with("vz"));
        assert!(a != b && a != c);
    }
}
