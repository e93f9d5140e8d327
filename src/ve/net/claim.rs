//! Which addresses a VE may claim, judged against the host as it is now. A VE's
//! address is routed to it by the host (venet) or answered for on a LAN (proxy ARP on
//! an uplink, a veth VE on a bridge), so an address the host already uses for something
//! else would take that something's traffic: the host's own addresses, its gateways and
//! name servers, another VE's address, anything the host already routes. These rules
//! bind everyone, the administrator's `ve create`/`ve set` as much as a tenant's spec;
//! the host policy's address pools only narrow them further for tenants.
//!
//! An address inside a subnet connected to the host is how a venet VE on a LAN is meant
//! to work (the host answers ARP/NDP for it on the uplink), so it is allowed on the VE's
//! own uplink, or for a veth VE on its own bridge, and refused on any other link.
//!
//! Which VE holds an address is kept host-wide in [`HELD`], one file per address naming
//! the host end of the VE that holds it: a veth VE's address leaves no route on the host
//! to find, and VEs of every state root (containerd's, podman's, an administrator's)
//! share the host's addresses. A file counts while the link it names exists, up or down:
//! a VE that died without a delete has lost its link (the kernel removes the pair with
//! the VE's namespace) and holds nothing, while a VE frozen for a move or restored by
//! CRIU keeps its address through the time its link is down. A VE takes its addresses as
//! soon as its host end exists, before anything puts them on the wire, under one lock:
//! of two VEs racing for an address, the second fails and is torn down.

use std::net::IpAddr;

use netlink_packet_route::route::RouteType;

use super::setup::is_ve_link;
use super::{Addr, NetError};
use crate::sys::netlink::Netlink;

/// Why an address cannot be a VE's; each reads after the address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("is the unspecified address")]
    Unspecified,
    #[error("is a loopback address")]
    Loopback,
    #[error("is a link-local address")]
    LinkLocal,
    #[error("is a multicast address")]
    Multicast,
    #[error("is a broadcast address")]
    Broadcast,
    #[error("is the host's own address on {dev}")]
    HostAddress { dev: String },
    #[error("is local to the host ({kind} route in its local table)")]
    Local { kind: &'static str },
    #[error("is the host's gateway on {dev}")]
    Gateway { dev: String },
    #[error("is the host's name server (/etc/resolv.conf)")]
    Nameserver,
    #[error("is in {net}, connected to the host on {dev} (allowed only on the VE's own uplink or bridge)")]
    Connected { net: String, dev: String },
    #[error("is already routed on the host ({route})")]
    Routed { route: String },
    #[error("is already held by another VE (on its host link {dev})")]
    OtherVe { dev: String },
}

/// One file per held address, named by the address, holding the name of the host end of
/// the VE that holds it. In /run: nothing in it outlives a reboot, when no VE does.
const HELD: &str = "/run/vzrun-addresses";

fn held_file(ip: IpAddr) -> std::path::PathBuf {
    std::path::Path::new(HELD).join(ip.to_string())
}

/// The VE host end that holds `ip` now, if it is not `me`: the link its file names,
/// when that link exists.
fn live_holder(nl: &mut Netlink, ip: IpAddr, me: Option<&str>) -> Result<Option<String>, NetError> {
    let Ok(name) = std::fs::read_to_string(held_file(ip)) else {
        return Ok(None);
    };
    let name = name.trim();
    if Some(name) == me || !is_ve_link(name) {
        return Ok(None);
    }
    Ok(nl.link_index(name)?.map(|_| name.to_string()))
}

fn held_lock() -> Result<crate::sys::lock::FileLock, NetError> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = std::path::Path::new(HELD);
    if let Err(e) = std::fs::DirBuilder::new().mode(0o700).create(dir) {
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            return Err(NetError::io("create", dir, e));
        }
    }
    let path = dir.join("lock");
    crate::sys::lock::FileLock::exclusive(&path, true).map_err(|e| NetError::io("lock", path, e))
}

/// Makes the VE whose host end is `me` the holder of `ips`: refused, naming
/// the setting `key`, when another VE's live link holds one of them; nothing is taken
/// then.
pub fn take(nl: &mut Netlink, key: &'static str, ips: &[IpAddr], me: &str) -> Result<(), NetError> {
    if ips.is_empty() {
        return Ok(());
    }
    let _lock = held_lock()?;
    for ip in ips {
        if let Some(dev) = live_holder(nl, *ip, Some(me))? {
            return Err(NetError::AddressRefused {
                key,
                ip: *ip,
                why: Refusal::OtherVe { dev },
            });
        }
    }
    for ip in ips {
        let path = held_file(*ip);
        std::fs::write(&path, me).map_err(|e| NetError::io("write", path, e))?;
    }
    Ok(())
}

/// Gives up the addresses `ips` that `me` holds; one another VE has taken over since
/// (a move's destination on this host) stays its. An empty file is one whose [`take`]
/// was killed between making it and writing it (files are written only under the
/// lock held here), so it is the remains of this VE's own take.
pub fn release(ips: &[IpAddr], me: &str) {
    if ips.is_empty() {
        return;
    }
    let Ok(_lock) = held_lock() else { return };
    for ip in ips {
        let path = held_file(*ip);
        if std::fs::read_to_string(&path).is_ok_and(|h| h.trim() == me || h.is_empty()) {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// What an address is by its kind alone, whatever the host.
pub fn special(ip: IpAddr) -> Option<Refusal> {
    match ip {
        IpAddr::V4(v) => {
            if v.is_unspecified() || v.octets()[0] == 0 {
                Some(Refusal::Unspecified)
            } else if v.is_loopback() {
                Some(Refusal::Loopback)
            } else if v.is_link_local() {
                Some(Refusal::LinkLocal)
            } else if v.is_multicast() {
                Some(Refusal::Multicast)
            } else if v.is_broadcast() {
                Some(Refusal::Broadcast)
            } else {
                None
            }
        }
        IpAddr::V6(v) => {
            if v.is_unspecified() {
                Some(Refusal::Unspecified)
            } else if v.is_loopback() {
                Some(Refusal::Loopback)
            } else if v.segments()[0] & 0xffc0 == 0xfe80 {
                Some(Refusal::LinkLocal)
            } else if v.is_multicast() {
                Some(Refusal::Multicast)
            } else {
                None
            }
        }
    }
}

/// The host's name servers, from its /etc/resolv.conf (none when it cannot be read).
fn host_nameservers() -> Vec<IpAddr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|v| v.trim().split('%').next()?.parse().ok())
        .collect()
}

/// Refuses, naming the setting `key`, the first of `ips` that the VE may not claim.
/// `lan` is the host link the VE may share a subnet with: the uplink of a venet VE, the
/// bridge of a veth VE. Reads the host (its addresses, routes and name servers) once.
pub fn check(
    nl: &mut Netlink,
    key: &'static str,
    ips: &[Addr],
    lan: Option<&str>,
) -> Result<(), NetError> {
    if ips.is_empty() {
        return Ok(());
    }
    let refuse = |ip: IpAddr, why: Refusal| NetError::AddressRefused { key, ip, why };
    for a in ips {
        if let Some(why) = special(a.ip) {
            return Err(refuse(a.ip, why));
        }
    }
    let _step = tracing::debug_span!("address check", n = ips.len()).entered();
    let addresses = tracing::debug_span!("list host addresses").in_scope(|| nl.addresses())?;
    let gateways = tracing::debug_span!("list host gateways").in_scope(|| nl.gateways())?;
    let nameservers = host_nameservers();
    let lan = match lan {
        Some(l) => nl.link_index(l)?,
        None => None,
    };
    for a in ips {
        let ip = a.ip;
        // Read without the lock: an early, clear refusal. `take` decides, under it.
        if let Some(dev) = live_holder(nl, ip, None)? {
            return Err(refuse(ip, Refusal::OtherVe { dev }));
        }
        if let Some(h) = addresses.iter().find(|h| h.ip == ip) {
            let dev = name(nl, Some(h.link));
            return Err(refuse(ip, Refusal::HostAddress { dev }));
        }
        if let Some((_, oif)) = gateways.iter().find(|(g, _)| *g == ip) {
            let dev = name(nl, *oif);
            return Err(refuse(ip, Refusal::Gateway { dev }));
        }
        if nameservers.contains(&ip) {
            return Err(refuse(ip, Refusal::Nameserver));
        }
        let Some(route) = nl.route_get(ip)? else {
            continue;
        };
        let dev = name(nl, route.oif);
        let why = match route.kind {
            RouteType::Local => Some(Refusal::Local { kind: "local" }),
            RouteType::Broadcast => Some(Refusal::Local { kind: "broadcast" }),
            RouteType::Anycast => Some(Refusal::Local { kind: "anycast" }),
            RouteType::Multicast => Some(Refusal::Multicast),
            RouteType::Unicast => match route.dst {
                // The default route: not routed anywhere in particular.
                None | Some((_, 0)) => None,
                Some(_) if route.is_host_route(ip) && is_ve_link(&dev) => {
                    Some(Refusal::OtherVe { dev })
                }
                Some((net, len)) if route.gateway.is_none() && !route.is_host_route(ip) => {
                    // A subnet on a link: the VE's own uplink or bridge is its LAN (and a
                    // veth VE's address is never routed by the host at all).
                    let own = route.oif.is_some() && route.oif == lan;
                    (!own).then(|| Refusal::Connected {
                        net: format!("{net}/{len}"),
                        dev,
                    })
                }
                Some((net, len)) => Some(Refusal::Routed {
                    route: match route.gateway {
                        Some(g) => format!("{net}/{len} via {g} dev {dev}"),
                        None => format!("{net}/{len} dev {dev}"),
                    },
                }),
            },
            // Blackhole, unreachable, prohibit: the host sends it nowhere.
            _ => None,
        };
        if let Some(why) = why {
            return Err(refuse(ip, why));
        }
    }
    Ok(())
}

/// A link's name for a message; its index when it has none (it vanished meanwhile).
fn name(nl: &mut Netlink, index: Option<u32>) -> String {
    match index {
        Some(i) => nl
            .link_name(i)
            .ok()
            .flatten()
            .unwrap_or_else(|| format!("link {i}")),
        None => "no link".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_addresses_are_refused_by_kind() {
        for (ip, why) in [
            ("0.0.0.0", Refusal::Unspecified),
            ("::", Refusal::Unspecified),
            ("127.0.0.1", Refusal::Loopback),
            ("127.8.0.1", Refusal::Loopback),
            ("::1", Refusal::Loopback),
            ("169.254.1.1", Refusal::LinkLocal),
            ("fe80::1", Refusal::LinkLocal),
            ("224.0.0.1", Refusal::Multicast),
            ("ff02::1", Refusal::Multicast),
            ("255.255.255.255", Refusal::Broadcast),
        ] {
            assert_eq!(special(ip.parse().unwrap()), Some(why), "{ip}");
        }
        for ip in ["198.51.100.7", "2001:db8::7", "203.0.113.80"] {
            assert_eq!(special(ip.parse().unwrap()), None, "{ip}");
        }
    }
}
