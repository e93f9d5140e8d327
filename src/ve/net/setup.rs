//! Making a VE's network and removing it: the venet or veth pair, addresses, routes and
//! rules inside, the host end (host routes, proxy ARP/NDP, a bridge port), the guard,
//! taking the host link down and up around a move, and announcing addresses after one.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::config::{format_mac, parse_mac_text, route_is_v6};
use super::{guard, Addr, Mode, NetConfig, NetError, RouteSpec, RuleSpec};
use crate::sys::netlink::{self, in_netns, Address, LinkChange, Netlink, Route, Rule, Veth};

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

/// The host's route to one VE address, through the VE's host end.
pub(super) fn host_route(a: &Addr, oif: u32) -> Route {
    Route {
        dst: Some((a.ip, a.prefix)),
        oif: Some(oif),
        onlink_scope: true,
        ..Default::default()
    }
}

/// A venet VE's default route of one family: straight out of its device, no gateway.
pub(super) fn venet_default(oif: u32, v6: bool) -> Route {
    Route {
        oif: Some(oif),
        v6,
        onlink_scope: !v6,
        ..Default::default()
    }
}

pub(super) fn to_route(r: &RouteSpec, oif: u32) -> Route {
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

fn to_rule(r: &RuleSpec) -> Rule {
    Rule {
        from: (r.from.ip, r.from.prefix),
        table: r.table,
        priority: r.priority,
    }
}

/// Takes the VE's link to the host down (or up again). While a VE is moved its TCP
/// sockets must stay silent here: the kernel would otherwise answer a client's packets
/// (acknowledging data the destination never gets) or, when the VE is removed, close
/// the connections with a FIN. Without a host-side link (a caller's namespace) nothing
/// is done.
pub fn set_host_link(rec: &NetRecord, up: bool) -> Result<(), NetError> {
    let Some(host_if) = &rec.host_if else {
        return Ok(());
    };
    let mut nl = Netlink::new()?;
    let Some(idx) = nl.link_index(host_if)? else {
        return Ok(());
    };
    nl.set_link(idx, &LinkChange::up(up))?;
    if !up {
        return Ok(());
    }
    // The VE held its addresses while the link was down; this is a check that it still
    // does (a record lost or taken over from another network namespace's view).
    if let Err(e) = super::claim::take(&mut nl, "net.ip", &rec_ips(rec), host_if) {
        let _ = nl.set_link(idx, &LinkChange::up(false));
        return Err(e);
    }
    // Taking a link down flushes the routes through it: a venet VE's host routes come
    // back with the link.
    if rec.mode == Mode::Venet {
        for a in &rec.ips {
            if !nl.has_host_route(a.ip).unwrap_or(false) {
                nl.add(&host_route(a, idx))?;
            }
        }
    }
    Ok(())
}

/// Brings the VE's host link up (its host routes and address claims with it, see
/// [`set_host_link`]) and tells the LAN the VE answers here: the way back for a VE whose
/// link a move or restore held down.
pub fn reconnect(rec: &NetRecord) -> Result<(), NetError> {
    set_host_link(rec, true)?;
    announce(rec);
    Ok(())
}

/// Whether the VE's host link exists and is down (a move left it so). Answered by one
/// netlink request, so a caller on a path every VE takes (resume) pays only that.
pub fn host_link_down(rec: &NetRecord) -> Result<bool, NetError> {
    let Some(host_if) = &rec.host_if else {
        return Ok(false);
    };
    Ok(Netlink::new()?.link_is_up(host_if)? == Some(false))
}

fn rec_ips(rec: &NetRecord) -> Vec<IpAddr> {
    rec.ips.iter().map(|a| a.ip).collect()
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
    let Ok(Some(mac)) = nl.link_mac(up) else {
        return;
    };
    let v4: Vec<Ipv4Addr> = rec
        .proxied
        .iter()
        .filter_map(|ip| match ip {
            IpAddr::V4(v4) => Some(*v4),
            IpAddr::V6(_) => None,
        })
        .collect();
    if v4.is_empty() || mac.len() != 6 {
        return;
    }
    let Ok(sock) = packet_socket() else { return };
    for ip in v4 {
        let _ = gratuitous_arp(&sock, up, &mac, ip);
    }
    close_later(sock);
}

/// Closes a packet socket on a thread of its own. The kernel's close of an AF_PACKET
/// socket waits for an RCU grace period (`synchronize_net` in `packet_release`): 10-18 ms
/// measured on a loaded 2-core host, and a move announces the VE inside its frozen
/// window (the link comes up in CRIU's post-restore step, before the tasks run). The
/// frames are sent by then; only the wait moves off the caller's path. A process that
/// ends first closes it in its exit.
fn close_later(sock: std::os::fd::OwnedFd) {
    // Without a thread to be had the socket is closed here, as it always was.
    let _ = std::thread::Builder::new()
        .name("close-packet-sk".into())
        .spawn(move || drop(sock));
}

/// A raw packet socket for sending ARP frames. Protocol 0: it only sends (the frame's
/// type is in its header and in the destination address) and is never handed a copy of
/// incoming frames.
fn packet_socket() -> nix::Result<std::os::fd::OwnedFd> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    socket(
        AddressFamily::Packet,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
}

/// Broadcasts an ARP request for `ip` from `ip` itself on the link `ifindex`, so that
/// neighbours update their caches to `mac` (6 bytes).
fn gratuitous_arp(
    sock: &std::os::fd::OwnedFd,
    ifindex: u32,
    mac: &[u8],
    ip: Ipv4Addr,
) -> nix::Result<()> {
    use nix::sys::socket::{sendto, LinkAddr, MsgFlags, SockaddrLike};
    const ETH_P_ARP: u16 = 0x0806;
    const BROADCAST: [u8; 6] = [0xff; 6];
    let mut frame = Vec::with_capacity(42);
    frame.extend_from_slice(&BROADCAST);
    frame.extend_from_slice(mac);
    frame.extend_from_slice(&ETH_P_ARP.to_be_bytes());
    // htype Ethernet, ptype IPv4, hlen 6, plen 4, op request
    frame.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    frame.extend_from_slice(mac);
    frame.extend_from_slice(&ip.octets());
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&ip.octets());
    let ll = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: ETH_P_ARP.to_be(),
        sll_ifindex: ifindex as i32,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 6,
        sll_addr: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0],
    };
    // SAFETY: `ll` is a fully initialised sockaddr_ll and the length given is its size;
    // nix copies it and offers no safe constructor for a link-layer address.
    let dest = unsafe {
        LinkAddr::from_raw(
            (&ll as *const libc::sockaddr_ll).cast(),
            Some(std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t),
        )
    }
    .ok_or(nix::errno::Errno::EINVAL)?;
    for _ in 0..2 {
        sendto(sock.as_raw_fd(), &frame, &dest, MsgFlags::empty())?;
    }
    Ok(())
}

/// A name for the host end that fits IFNAMSIZ and is new for every incarnation of a VE:
/// the pair of a VE just deleted may live on for a moment while the kernel tears its
/// namespace down, and a VE created again under the same ID must not wait for it.
pub fn host_ifname(root: &Path, id: &str, salt: u64) -> String {
    let h = crate::sys::hash::short(&[
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

pub(super) fn netns_of(pid: i32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/ns/net"))
}

/// Whether a host link is a VE's host end, by the shape [`host_ifname`] gives it.
pub(super) fn is_ve_link(name: &str) -> bool {
    name.len() == 12
        && name
            .strip_prefix("vz")
            .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Checks against the host what can be checked before anything is made: the bridge
/// exists, the uplink exists, every address is one the VE may claim (see `claim`), and
/// a MAC asked for is not in use on the bridge already.
pub fn preflight(c: &NetConfig) -> Result<(), NetError> {
    let mut nl = Netlink::new()?;
    let mut bridge = None;
    if let Some(b) = &c.bridge {
        let Some(idx) = nl.link_index(b)? else {
            return Err(NetError::setting(
                "net.bridge",
                format!("bridge {b:?} does not exist on the host"),
            ));
        };
        bridge = Some(idx);
    }
    if let Some(u) = &c.uplink {
        if nl.link_index(u)?.is_none() {
            return Err(NetError::setting(
                "net.uplink",
                format!("device {u:?} does not exist on the host"),
            ));
        }
    }
    let lan = match c.mode {
        Mode::Venet => c.uplink.as_deref(),
        Mode::Veth => c.bridge.as_deref(),
    };
    super::claim::check(&mut nl, "net.ip", &c.ips, lan)?;
    if let (Some(b), Some(mac)) = (bridge, &c.mac) {
        // No port of ours exists yet: any entry is someone else's. The bridge's own
        // address is a local entry on the bridge, but is looked at directly too.
        if nl.link_mac(b)?.as_deref() == Some(&mac[..]) || !guard::mac_free(&mut nl, b, mac, None)?
        {
            return Err(guard::mac_in_use(mac));
        }
    }
    Ok(())
}

/// For a restore: a new network namespace with its loopback up, held open by the file
/// returned. The calling thread's namespace is not changed.
pub fn fresh_netns() -> Result<File, NetError> {
    std::thread::spawn(|| -> Result<File, NetError> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map_err(NetError::NewNetns)?;
        let mut nl = Netlink::new()?;
        if let Some(lo) = nl.link_index("lo")? {
            nl.set_link(lo, &LinkChange::up(true))?;
        }
        let path = "/proc/thread-self/ns/net";
        File::open(path).map_err(|e| NetError::io("open", path, e))
    })
    .join()
    .map_err(|_| NetError::Panicked)?
}

/// Writes the VE's record where a teardown finds it (its state directory).
pub type Save<'a> = dyn FnMut(&NetRecord) -> Result<(), NetError> + 'a;

/// Configures the VE's network namespace (that of `pid`) and the host side. Every host
/// object is written into `rec`, and `rec` saved, before the step that makes it: a
/// vzrun killed halfway leaves a record from which `delete` removes what was made.
pub fn setup(
    c: &NetConfig,
    root: &Path,
    id: &str,
    pid: i32,
    rec: &mut NetRecord,
    save: &mut Save,
) -> Result<(), NetError> {
    if !crate::sys::process::own_namespace(pid, "net") {
        return Err(NetError::setting(
            "net.ip",
            "the VE shares the host's network namespace (the spec has no network namespace)",
        ));
    }
    setup_at(c, root, id, &netns_of(pid), rec, true, save)
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
    save: &mut Save,
) -> Result<(), NetError> {
    rec.mode = c.mode;
    rec.uplink = c.uplink.clone();
    rec.bridge = c.bridge.clone();
    let ns = ns.to_path_buf();
    let host_if = host_ifname(root, id, incarnation());
    let ve_if = match c.mode {
        Mode::Venet => "venet0",
        Mode::Veth => "eth0",
    };
    let mut nl = Netlink::new()?;
    let nsfile = File::open(&ns).map_err(|e| NetError::io("open", &ns, e))?;
    let ve_mac = match c.mode {
        Mode::Veth => Some(c.mac.unwrap_or_else(|| generated_mac(&host_if))),
        Mode::Venet => None,
    };
    // Recorded with its addresses before the pair exists: a teardown gives back only
    // addresses held in this host end's name and removes only routes through it.
    rec.host_if = Some(host_if.clone());
    rec.ve_if = Some(ve_if.to_string());
    rec.ips = c.ips.clone();
    save(rec)?;
    nl.add_veth(&Veth {
        host: &host_if,
        peer: ve_if,
        peer_netns: nsfile.as_fd(),
        peer_mac: ve_mac.as_ref().map(|m| &m[..]),
    })?;
    // The host end exists: the VE takes its addresses (see `claim`) before anything
    // routes, proxies or announces them.
    super::claim::take(&mut nl, "net.ip", &rec_ips(rec), &host_if)?;
    // The addresses are this VE's now, so proxy entries for them can be no other VE's;
    // the guard's name follows from the host end. Both are recorded before they are
    // made (a teardown of entries or a guard never made does nothing), and the guard's
    // name is dropped again below where the kernel guard serves instead.
    if c.mode == Mode::Venet && c.uplink.is_some() {
        rec.proxied = rec_ips(rec);
    }
    rec.nft_table = Some(guard::handle(&host_if));
    save(rec)?;
    let host_idx = nl
        .link_index(&host_if)?
        .ok_or_else(|| NetError::Vanished(host_if.clone()))?;

    // Inside the VE.
    let inside = c.clone();
    let ve_if_s = ve_if.to_string();
    let mac = in_netns(&ns, move || configure_inside(&inside, &ve_if_s))??;
    rec.mac = Some(format_mac(&mac));
    rec.routes = c.routes.clone();
    rec.rules = c.rules.clone();

    // The host end.
    match c.mode {
        Mode::Venet => {
            // No IPv6 link-local address on the host end: nothing needs one (the link is
            // NOARP both ways, the host routes to the VE through the device, and what it
            // sends there has its source from its other addresses). Each would add a
            // fe80::/64 route and an address to the host's tables, which every create's
            // address check dumps, and the kernel's link-up walks its per-prefix route
            // list: all growing with the number of VEs.
            let _ = netlink::sysctl(&format!("net/ipv6/conf/{host_if}/addr_gen_mode"), "1");
            nl.set_link(
                host_idx,
                &LinkChange {
                    up: Some(on_wire),
                    noarp: Some(true),
                    mac: Some(&mac),
                    ..Default::default()
                },
            )?;
            let _ = netlink::sysctl(&format!("net/ipv4/conf/{host_if}/forwarding"), "1");
            let _ = netlink::sysctl(&format!("net/ipv6/conf/{host_if}/forwarding"), "1");
            let _ = netlink::sysctl(&format!("net/ipv6/conf/{host_if}/force_forwarding"), "1");
            // A route through a down link is refused; set_host_link adds them with it.
            for a in c.ips.iter().filter(|_| on_wire) {
                nl.add(&host_route(a, host_idx))?;
            }
            if let Some(u) = &c.uplink {
                let up = nl.link_index(u)?.ok_or_else(|| {
                    NetError::setting("net.uplink", format!("device {u:?} does not exist"))
                })?;
                let ips: Vec<IpAddr> = c.ips.iter().map(|a| a.ip).collect();
                super::uplink::proxy(&mut nl, u, up, &ips)?;
                if on_wire {
                    announce(rec);
                }
            }
        }
        Mode::Veth => {
            let bridge = c.bridge.as_deref().unwrap_or_default();
            let bidx = nl.link_index(bridge)?.ok_or_else(|| {
                NetError::setting(
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
            )?;
            // Unknown unicast is not flooded to a VE's port, so one VE never sees frames
            // meant for another; its own MAC is pinned to its port.
            guard::bridge_port_isolation(&mut nl, bidx, host_idx, &mac)?;
        }
    }
    // The kernel guard only where its sysctls could be written (a read-only /proc/sys
    // would leave the VE unguarded): else the nftables one.
    if kernel_guard_applies(c.mode, &c.ips) && kernel_guard(&host_if) {
        rec.nft_table = None;
    } else {
        guard::guard(&host_if, c, &mac)?;
    }
    Ok(())
}

/// An IPv4-only venet VE needs no nftables at all: strict reverse-path filtering on the
/// host end drops any source that is not routed back through it (that is, anything but
/// the VE's own /32s), the host end ignores ARP (NOARP), and IPv6 is off on it. This
/// costs nothing per packet, and nothing per VE at create and delete: nft reloads the
/// whole ruleset for every change, so per-VE tables slow down as VEs are added.
pub(super) fn kernel_guard_applies(mode: Mode, ips: &[Addr]) -> bool {
    let loose = std::fs::read_to_string("/proc/sys/net/ipv4/conf/all/rp_filter")
        .map(|v| v.trim() == "2")
        .unwrap_or(true);
    mode == Mode::Venet && !ips.iter().any(|a| a.ip.is_ipv6()) && !loose
}

/// Whether the host end now drops what the VE may not send: strict reverse-path
/// filtering, IPv6 off.
fn kernel_guard(host_if: &str) -> bool {
    netlink::sysctl(&format!("net/ipv4/conf/{host_if}/rp_filter"), "1").is_ok()
        && netlink::sysctl(&format!("net/ipv6/conf/{host_if}/disable_ipv6"), "1").is_ok()
}

/// The recorded MAC of the VE's end, as bytes.
pub(super) fn recorded_mac(rec: &NetRecord) -> Vec<u8> {
    parse_mac_text(rec.mac.as_deref().unwrap_or_default())
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

/// Inside the VE's namespace: loopback and the VE's link up, its addresses, default
/// routes, routes and rules. Returns the MAC of the VE's end.
fn configure_inside(c: &NetConfig, ve_if: &str) -> Result<Vec<u8>, NetError> {
    let mut nl = Netlink::new()?;
    if let Some(lo) = nl.link_index("lo")? {
        nl.set_link(lo, &LinkChange::up(true))?;
    }
    let idx = nl
        .link_index(ve_if)?
        .ok_or_else(|| NetError::MissingInVe(ve_if.to_string()))?;
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
    )?;
    for a in &c.ips {
        nl.add(&Address {
            link: idx,
            ip: a.ip,
            prefix: a.prefix,
        })?;
    }
    if venet {
        for v6 in [false, true] {
            if c.ips.iter().any(|a| a.ip.is_ipv6() == v6) {
                nl.add(&venet_default(idx, v6))?;
            }
        }
    } else {
        for g in &c.gateways {
            nl.add(&Route {
                via: Some(*g),
                oif: Some(idx),
                v6: g.is_ipv6(),
                ..Default::default()
            })?;
        }
    }
    for r in &c.routes {
        nl.add(&to_route(r, idx))?;
    }
    for r in &c.rules {
        nl.add(&to_rule(r))?;
    }
    Ok(nl.link_mac(idx)?.unwrap_or_default())
}

/// Removes what `setup` recorded; every step is attempted whatever failed before.
pub fn teardown(rec: &NetRecord) {
    let Ok(mut nl) = Netlink::new() else { return };
    if let Some(u) = &rec.uplink {
        super::uplink::unproxy(&mut nl, u, &rec.proxied);
    }
    if let Some(ns) = &rec.caller_netns {
        let rules: Vec<Rule> = rec.rules.iter().map(to_rule).collect();
        let _ = in_netns(ns, move || {
            if let Ok(mut inner) = Netlink::new() {
                for r in &rules {
                    let _ = inner.del(r);
                }
            }
        });
    }
    // The guard goes before the link, so there is never a table without its link.
    if let Some(t) = &rec.nft_table {
        guard::remove(t);
    }
    // The host routes go now, so the addresses are free at once for another VE.
    if let Some(h) = &rec.host_if {
        super::claim::release(&rec_ips(rec), h);
        if let (Mode::Venet, Ok(Some(idx))) = (rec.mode, nl.link_index(h)) {
            for a in &rec.ips {
                let _ = nl.del(&host_route(a, idx));
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

#[cfg(test)]
mod tests {
    use super::*;

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
