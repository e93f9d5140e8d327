//! Host-side guards on a VE's link. In nftables: a netdev ingress chain on the host end
//! drops packets whose source address (and, for veth, source MAC) is not the VE's own,
//! and, for veth, frames that would take over other members' addresses on the bridge
//! (see [`rules`]); ingress on the host end sees every frame the VE sends, before any
//! routing or bridging. On a bridge: the VE's port is isolated from other VEs' unicast
//! and learns no MACs.

use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use super::config::format_mac;
use super::setup::is_ve_link;
use super::{Addr, Mode, NetConfig, NetError};
use crate::sys::netlink::{BridgePortFlags, FdbEntry, Netlink};
use crate::sys::nftables::{self, AddrKind, Base, Batch, Expr, Family, Meta, SetContent};

/// `nft -f -` for guards in tables of their own, which records from before the shared
/// table name; everything else goes through netlink batches.
fn nft(script: &str) -> Result<(), NetError> {
    crate::sys::process::run_with_input(Command::new("nft").args(["-f", "-"]), script.as_bytes())?;
    Ok(())
}

/// The one nftables table that holds every VE's guard: per VE a netdev ingress chain
/// hooked to its host-side link and two sets of its allowed source addresses, all named
/// after the link. One table rather than one per VE because nft and the kernel's commit
/// grow with the number of tables: with 300 VEs a change in a table of its own took
/// about 130 ms, the same change in the shared table about 10 ms.
pub const TABLE: &str = "vzrun";

/// A record's handle for a guard in [`TABLE`]: `vzrun:<host_if>`. Records written before
/// the shared table name a table of their own (`vzrun_<host_if>`), still removed so.
const SHARED: &str = "vzrun:";

struct Names {
    chain: String,
    v4: String,
    v6: String,
}

fn names(host_if: &str) -> Names {
    Names {
        chain: format!("in_{host_if}"),
        v4: format!("v4_{host_if}"),
        v6: format!("v6_{host_if}"),
    }
}

/// One guard rule: its expressions, and its nft text (for errors and the tests).
pub struct Rule {
    pub exprs: Vec<Expr>,
    pub text: String,
}

const ETH_P_IP: [u8; 2] = [0x08, 0x00];
const ETH_P_ARP: [u8; 2] = [0x08, 0x06];
const ETH_P_IPV6: [u8; 2] = [0x86, 0xdd];
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMPV6: u8 = 58;
const IPV6_FRAGMENT: u8 = 44;

fn protocol_is(p: [u8; 2]) -> [Expr; 2] {
    [
        Expr::Meta(Meta::Protocol),
        Expr::Cmp {
            eq: true,
            data: p.to_vec(),
        },
    ]
}

/// The input device is Ethernet (ARPHRD_ETHER, host order): nft's dependency for `ether`.
fn iif_is_ether() -> [Expr; 2] {
    [
        Expr::Meta(Meta::IifType),
        Expr::Cmp {
            eq: true,
            data: 1u16.to_ne_bytes().to_vec(),
        },
    ]
}

/// Loads `len` bytes of a header into the register.
fn load(base: Base, offset: u32, len: u32) -> Expr {
    Expr::Payload { base, offset, len }
}

fn equals(data: &[u8]) -> Expr {
    Expr::Cmp {
        eq: true,
        data: data.to_vec(),
    }
}

fn differs(data: &[u8]) -> Expr {
    Expr::Cmp {
        eq: false,
        data: data.to_vec(),
    }
}

/// fe80::/10 as an address and a mask.
fn link_local() -> ([u8; 16], [u8; 16]) {
    let mut net = [0u8; 16];
    net[..2].copy_from_slice(&[0xfe, 0x80]);
    let mut mask = [0u8; 16];
    mask[..2].copy_from_slice(&[0xff, 0xc0]);
    (net, mask)
}

/// The IPv6 link-local address Linux gives a link with this MAC (addr_gen_mode eui64,
/// the default): fe80:: and the MAC with the universal/local bit flipped and ff:fe in
/// the middle.
fn eui64_link_local(mac: &[u8]) -> std::net::Ipv6Addr {
    let m: [u8; 6] = mac.try_into().unwrap_or([0; 6]);
    let mut a = [0u8; 16];
    a[..2].copy_from_slice(&[0xfe, 0x80]);
    a[8..16].copy_from_slice(&[m[0] ^ 0x02, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]]);
    std::net::Ipv6Addr::from(a)
}

/// IPv4 or IPv6 (`family`) packets of layer 4 protocol `proto` whose first `len` bytes at
/// `offset` into the layer 4 header are `value`.
fn l4_field_is(family: [u8; 2], proto: u8, offset: u32, value: &[u8]) -> Vec<Expr> {
    let mut e = protocol_is(family).to_vec();
    e.extend([
        Expr::Meta(Meta::L4Proto),
        equals(&[proto]),
        load(Base::Transport, offset, value.len() as u32),
        equals(value),
    ]);
    e
}

/// The rules of a VE link's guard, in order: what nft compiles the rule texts below into
/// (`nft --debug=netlink` shows the same expressions). Each drops what matches it; what
/// no rule drops passes.
///
/// The host end of a VE's pair sees every frame the VE sends, so these hold whatever the
/// VE does inside, with CAP_NET_RAW and raw frames: no source MAC but its own (with
/// `mac_filter`), no source address but its own (none at all for a VE given none, but
/// IPv6 link-local and the unspecified address, which neighbour discovery needs), and for
/// veth, nothing that would make the bridge's other members or the host send it traffic
/// meant for someone else:
/// - only IPv4, IPv6 and ARP frames, untagged. A VLAN tag would hide the packet from the
///   address rules: the receiving end moves the outer tag out of the frame (`meta
///   protocol` is then the inner type), and a second, inner tag leaves the IP header
///   unseen, while the bridge forwards the frame on and the other VE's kernel strips
///   tags of VLAN 0. nft rebuilds a moved tag for `ether type`, so it is checked there;
/// - ARP only for IPv4 over Ethernet (other lengths put the addresses elsewhere), with a
///   sender address of the VE's own or 0.0.0.0 (an address probe): an answer in any other
///   name ("the gateway is at my MAC") would move the neighbour entries of the host and
///   of other VEs;
/// - no router advertisement or redirect (ICMPv6 134, 137): the host would take a
///   default route and addresses from it, other VEs their gateway;
/// - a neighbour advertisement (136) only for a target of the VE's own or link-local
///   (its own link-local address is not known in advance: the VE picks how it is made).
///   The target is what a neighbour table binds to the advertised MAC, so another VE's
///   address or the host's global gateway address is refused;
/// - no DHCP or DHCPv6 server answers (UDP from port 67 or 547): they would hand other
///   VEs addresses, gateways and name servers of the VE's choosing.
///
/// venet VEs are routed, not bridged: the host keeps a neighbour table per VE link, has
/// forwarding on there (so it ignores router advertisements and redirects), and answers
/// no DHCP; they get the EtherType rule, which also holds their ARP off.
pub fn rules(host_if: &str, c: &NetConfig, mac: &[u8]) -> Vec<Rule> {
    let n = names(host_if);
    let veth = c.mode == Mode::Veth;
    let mut rules = Vec::new();
    if veth && c.mac_filter {
        let mut e = iif_is_ether().to_vec();
        e.extend([load(Base::Link, 6, 6), differs(mac), Expr::Drop]);
        rules.push(Rule {
            exprs: e,
            text: format!("ether saddr != {} drop", format_mac(mac)),
        });
    }
    // EtherType, 12 bytes into the frame; each test reloads it, so that nft reads the
    // rule back as one test per type.
    let types: &[([u8; 2], &str)] = if veth {
        &[(ETH_P_IP, "ip"), (ETH_P_IPV6, "ip6"), (ETH_P_ARP, "arp")]
    } else {
        &[(ETH_P_IP, "ip"), (ETH_P_IPV6, "ip6")]
    };
    let mut e = iif_is_ether().to_vec();
    let mut text = String::new();
    for (t, name) in types {
        e.extend([load(Base::Link, 12, 2), differs(t)]);
        text.push_str(&format!("ether type != {name} "));
    }
    e.push(Expr::Drop);
    rules.push(Rule {
        exprs: e,
        text: format!("{text}drop"),
    });
    if veth {
        // ptype IPv4, hlen 6, plen 4, 2, 4 and 5 bytes into the ARP header: one rule
        // each, as nft shows a test of all three at once as three tests.
        for (offset, value, text) in [
            (2, &ETH_P_IP[..], "arp ptype != ip drop"),
            (4, &[6][..], "arp hlen != 6 drop"),
            (5, &[4][..], "arp plen != 4 drop"),
        ] {
            let mut e = protocol_is(ETH_P_ARP).to_vec();
            e.extend([
                load(Base::Network, offset, value.len() as u32),
                differs(value),
                Expr::Drop,
            ]);
            rules.push(Rule {
                exprs: e,
                text: text.into(),
            });
        }
        if c.mac_filter {
            let mut e = protocol_is(ETH_P_ARP).to_vec();
            e.extend([load(Base::Network, 8, 6), differs(mac), Expr::Drop]);
            rules.push(Rule {
                exprs: e,
                text: format!("arp saddr ether != {} drop", format_mac(mac)),
            });
        }
        let mut e = protocol_is(ETH_P_ARP).to_vec();
        e.extend([
            load(Base::Network, 14, 4),
            Expr::Lookup {
                set: n.v4.clone(),
                inverted: true,
            },
            load(Base::Network, 14, 4),
            differs(&[0; 4]),
            Expr::Drop,
        ]);
        rules.push(Rule {
            exprs: e,
            text: format!("arp saddr ip != @{} arp saddr ip != 0.0.0.0 drop", n.v4),
        });
    }
    let mut e = protocol_is(ETH_P_IP).to_vec();
    e.extend([
        load(Base::Network, 12, 4),
        Expr::Lookup {
            set: n.v4.clone(),
            inverted: true,
        },
        Expr::Drop,
    ]);
    rules.push(Rule {
        exprs: e,
        text: format!("ip saddr != @{} drop", n.v4),
    });
    // Link-local and the unspecified source stay allowed: neighbour discovery and
    // duplicate address detection use them. A veth VE shares its link with the host,
    // other VEs and the LAN, whose IPv6 gateway is usually a link-local address: it may
    // use only its own, the one the kernel makes from its MAC (EUI-64), or a neighbour
    // solicitation in the gateway's name would move every neighbour's entry for it.
    let (ll, ll_mask) = link_local();
    let own_ll = eui64_link_local(mac);
    let mut e = protocol_is(ETH_P_IPV6).to_vec();
    e.extend([
        load(Base::Network, 8, 16),
        Expr::Lookup {
            set: n.v6.clone(),
            inverted: true,
        },
        load(Base::Network, 8, 16),
    ]);
    let ll_text = if veth {
        e.push(differs(&own_ll.octets()));
        own_ll.to_string()
    } else {
        e.extend([Expr::Mask(ll_mask.to_vec()), differs(&ll)]);
        "fe80::/10".to_string()
    };
    e.extend([load(Base::Network, 8, 16), differs(&[0; 16]), Expr::Drop]);
    rules.push(Rule {
        exprs: e,
        text: format!(
            "ip6 saddr != @{} ip6 saddr != {ll_text} ip6 saddr != :: drop",
            n.v6
        ),
    });
    if veth {
        for (ty, name) in [(134u8, "nd-router-advert"), (137, "nd-redirect")] {
            let mut e = l4_field_is(ETH_P_IPV6, IPPROTO_ICMPV6, 0, &[ty]);
            e.push(Expr::Drop);
            rules.push(Rule {
                exprs: e,
                text: format!("icmpv6 type {name} drop"),
            });
        }
        // The target address, 8 bytes into the advertisement.
        let mut e = l4_field_is(ETH_P_IPV6, IPPROTO_ICMPV6, 0, &[136]);
        e.extend([
            load(Base::Transport, 8, 16),
            Expr::Lookup {
                set: n.v6.clone(),
                inverted: true,
            },
            load(Base::Transport, 8, 16),
            differs(&own_ll.octets()),
            Expr::Drop,
        ]);
        rules.push(Rule {
            exprs: e,
            text: format!(
                "icmpv6 type nd-neighbor-advert icmpv6 taddr != @{} icmpv6 taddr != {own_ll} drop",
                n.v6
            ),
        });
        // Neighbour discovery is never fragmented (RFC 6980); a fragment holds the
        // rules above off, as the type or target is not in its first piece.
        let mut e = protocol_is(ETH_P_IPV6).to_vec();
        e.extend([
            Expr::Meta(Meta::L4Proto),
            equals(&[IPPROTO_ICMPV6]),
            Expr::Ipv6HeaderPresent(IPV6_FRAGMENT),
            equals(&[1]),
            Expr::Drop,
        ]);
        rules.push(Rule {
            exprs: e,
            text: "exthdr frag exists meta l4proto ipv6-icmp drop".into(),
        });
        // DHCP answers, by the server's port and by the client's: a client takes an
        // offer from any source port.
        for (family, offset, port, name, dir) in [
            (ETH_P_IP, 0, 67u16, "ip", "sport"),
            (ETH_P_IP, 2, 68, "ip", "dport"),
            (ETH_P_IPV6, 0, 547, "ip6", "sport"),
            (ETH_P_IPV6, 2, 546, "ip6", "dport"),
        ] {
            let mut e = l4_field_is(family, IPPROTO_UDP, offset, &port.to_be_bytes());
            e.push(Expr::Drop);
            rules.push(Rule {
                exprs: e,
                text: format!("meta protocol {name} udp {dir} {port} drop"),
            });
        }
    }
    rules
}

/// The batch that installs one VE link's guard. Every add is idempotent and each object
/// is flushed after it, so a guard left under the same names by a vzrun that was killed
/// is replaced, not added to; the kernel applies the whole batch or none of it.
fn install_batch(host_if: &str, c: &NetConfig, mac: &[u8]) -> Batch {
    let n = names(host_if);
    let (v6, v4): (Vec<IpAddr>, Vec<IpAddr>) =
        c.ips.iter().map(|a| a.ip).partition(|ip| ip.is_ipv6());
    let mut b = Batch::new(Family::Netdev);
    b.add_table(TABLE)
        .add_set(TABLE, &n.v4, AddrKind::V4)
        .flush_set(TABLE, &n.v4)
        .add_set(TABLE, &n.v6, AddrKind::V6)
        .flush_set(TABLE, &n.v6)
        .add_ingress_chain(TABLE, &n.chain, host_if, -500)
        .flush_chain(TABLE, &n.chain)
        .add_elements(TABLE, &n.v4, &v4)
        .add_elements(TABLE, &n.v6, &v6);
    for r in rules(host_if, c, mac) {
        b.add_rule(TABLE, &n.chain, &r.exprs, &r.text);
    }
    b
}

/// Installs the guard (one netlink batch, no `nft` process: see sys::nftables);
/// returns the handle to keep in the VE's record.
pub fn guard(host_if: &str, c: &NetConfig, mac: &[u8]) -> Result<String, NetError> {
    install_batch(host_if, c, mac).commit()?;
    Ok(handle(host_if))
}

/// The record's handle of the guard of the host end `host_if`.
pub fn handle(host_if: &str) -> String {
    format!("{SHARED}{host_if}")
}

/// Replaces the allowed source addresses after `ve set --ipadd/--ipdel`: one netlink
/// batch that touches only this VE's two sets (no `nft` process: see sys::nftables).
pub fn refresh_addresses(handle: &str, ips: &[Addr]) -> Result<(), NetError> {
    let Some(host_if) = handle.strip_prefix(SHARED) else {
        return refresh_own_table(handle, ips);
    };
    let n = names(host_if);
    let (v6, v4): (Vec<IpAddr>, Vec<IpAddr>) =
        ips.iter().map(|a| a.ip).partition(|ip| ip.is_ipv6());
    nftables::replace_sets(
        Family::Netdev,
        TABLE,
        &[
            SetContent {
                set: &n.v4,
                elements: &v4,
            },
            SetContent {
                set: &n.v6,
                elements: &v6,
            },
        ],
    )?;
    Ok(())
}

/// Adds `ips` to the allowed source addresses (`ve set --ipadd` alone): one batch that
/// only adds elements. Unlike [`refresh_addresses`] it removes nothing, so the kernel has
/// nothing to free behind an RCU grace period, which the socket's close would wait for.
pub fn allow_addresses(handle: &str, ips: &[Addr]) -> Result<(), NetError> {
    let Some(host_if) = handle.strip_prefix(SHARED) else {
        let mut s = String::new();
        for a in ips {
            let set = if a.ip.is_ipv6() { "v6" } else { "v4" };
            s.push_str(&format!(
                "add element netdev {handle} {set} {{ {} }}\n",
                a.ip
            ));
        }
        return nft(&s);
    };
    let n = names(host_if);
    let (v6, v4): (Vec<IpAddr>, Vec<IpAddr>) =
        ips.iter().map(|a| a.ip).partition(|ip| ip.is_ipv6());
    let mut b = Batch::new(Family::Netdev);
    b.add_elements(TABLE, &n.v4, &v4)
        .add_elements(TABLE, &n.v6, &v6);
    b.commit()?;
    Ok(())
}

/// [`refresh_addresses`] for a guard in a table of its own (records from before the
/// shared table).
fn refresh_own_table(table: &str, ips: &[Addr]) -> Result<(), NetError> {
    let mut s = format!("flush set netdev {table} v4\nflush set netdev {table} v6\n");
    for a in ips {
        let set = if a.ip.is_ipv6() { "v6" } else { "v4" };
        s.push_str(&format!(
            "add element netdev {table} {set} {{ {} }}\n",
            a.ip
        ));
    }
    nft(&s)
}

/// Removes a VE's guard. The chain goes first (its rules refer to the sets). A kernel
/// that dropped the chain with its link fails that batch as a whole; the sets are then
/// removed on their own. The shared table itself stays, as an empty table does no work.
pub fn remove(handle: &str) {
    let Some(host_if) = handle.strip_prefix(SHARED) else {
        let _ = nft(&format!("delete table netdev {handle}\n"));
        return;
    };
    let n = names(host_if);
    let sets = |b: &mut Batch| {
        b.delete_set(TABLE, &n.v4).delete_set(TABLE, &n.v6);
    };
    let mut b = Batch::new(Family::Netdev);
    b.delete_chain(TABLE, &n.chain);
    sets(&mut b);
    if b.commit().is_err() {
        let mut b = Batch::new(Family::Netdev);
        sets(&mut b);
        let _ = b.commit();
    }
}

/// On a bridge, a VE's port gets no flooded unknown unicast (nor multicast) and its MAC
/// is pinned to it, so frames for one VE are never copied to another's port; and the
/// bridge learns nothing from it, so no MAC moves to it: what `bridge link set dev PORT
/// flood off mcast_flood off learning off` and `bridge fdb add MAC dev PORT master static
/// sticky` do, through netlink. Without both, one frame from a VE with another's (or a
/// LAN host's) MAC as its source, which a VE with `mac_filter` off may send, moves that
/// MAC's entry to its port and the traffic for it with the entry. The VE's own MAC needs
/// no learning, being pinned; other MACs a VE without `mac_filter` sends from get no
/// unicast.
///
/// The entry is added exclusively, so a MAC that the bridge already forwards to another
/// port (another VE's pinned entry, a host's learned one, a port's or the bridge's own
/// address) is refused and never taken over. The add also fails when the bridge has
/// just learned the MAC from a frame the VE itself sent as its link came up: only an
/// entry on our own port is then replaced, after the other ports were looked at.
pub fn bridge_port_isolation(
    nl: &mut Netlink,
    bridge: u32,
    port: u32,
    mac: &[u8],
) -> Result<(), NetError> {
    nl.set_bridge_port(
        port,
        &BridgePortFlags {
            flood: Some(false),
            mcast_flood: Some(false),
            learning: Some(false),
        },
    )?;
    let entry = FdbEntry { port, mac };
    match nl.add(&entry) {
        Err(e) if e.errno() == Some(libc::EEXIST) => {
            if !mac_free(nl, bridge, mac, Some(port))? {
                return Err(mac_in_use(mac));
            }
            nl.replace(&entry)?;
            Ok(())
        }
        other => Ok(other?),
    }
}

/// Whether the bridge has no entry for `mac` on any port but `own`. An entry on a VE's
/// host end is waited for a moment first: a VE just checkpointed or deleted leaves its
/// pair to the kernel, which removes it, and the entries on it, with the VE's namespace
/// shortly after, and a restore asks for the same MAC at once. A live VE's entry is
/// still there after the wait, and the MAC is refused.
pub(super) fn mac_free(
    nl: &mut Netlink,
    bridge: u32,
    mac: &[u8],
    own: Option<u32>,
) -> Result<bool, NetError> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let mut others = nl
            .fdb_lookup(bridge, mac)?
            .into_iter()
            .map(|f| f.port)
            .filter(|p| Some(*p) != own)
            .peekable();
        if others.peek().is_none() {
            return Ok(true);
        }
        let mut only_ves = true;
        for p in others {
            // A port gone meanwhile counts as a VE's that went.
            if !nl.link_name(p)?.is_none_or(|n| is_ve_link(&n)) {
                only_ves = false;
            }
        }
        if !only_ves || Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The refusal of a MAC that the bridge already forwards somewhere else.
pub(super) fn mac_in_use(mac: &[u8]) -> NetError {
    NetError::setting(
        "net.mac",
        format!(
            "{} is already in use on the bridge (another port's or the bridge's own address)",
            format_mac(mac)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ve::net::config::parse_addr;

    fn texts(r: &[Rule]) -> Vec<&str> {
        r.iter().map(|r| r.text.as_str()).collect()
    }

    #[test]
    fn venet_rules_allow_only_own_sources() {
        let c = NetConfig {
            ips: vec![
                parse_addr("198.51.100.5", None).unwrap(),
                parse_addr("2001:db8::5", None).unwrap(),
            ],
            ..Default::default()
        };
        let r = rules("vz0123456789", &c, &[2, 0, 0, 0, 0, 1]);
        assert_eq!(
            texts(&r),
            [
                "ether type != ip ether type != ip6 drop",
                "ip saddr != @v4_vz0123456789 drop",
                "ip6 saddr != @v6_vz0123456789 ip6 saddr != fe80::/10 ip6 saddr != :: drop",
            ]
        );
        // The IPv4 source (12 bytes into the header) is looked up, inverted, in the set.
        assert_eq!(
            r[1].exprs[2..4],
            [
                load(Base::Network, 12, 4),
                Expr::Lookup {
                    set: "v4_vz0123456789".into(),
                    inverted: true
                }
            ]
        );
        assert!(r.iter().all(|r| r.exprs.last() == Some(&Expr::Drop)));
    }

    #[test]
    fn the_batch_replaces_what_a_killed_vzrun_left() {
        let c = NetConfig {
            ips: vec![parse_addr("198.51.100.5", None).unwrap()],
            ..Default::default()
        };
        let (_, ops) = install_batch("vzx", &c, &[2, 0, 0, 0, 0, 1]).bytes_for_test();
        let at = |op: &str| ops.iter().position(|o| o.starts_with(op)).unwrap();
        // Whatever a killed vzrun left under these names is emptied before it is filled.
        assert!(at("flush set vzrun v4_vzx") < at("add elements to vzrun v4_vzx"));
        assert!(at("flush chain vzrun in_vzx") < at("add rule vzrun in_vzx"));
        assert_eq!(ops[0], "add table vzrun");
    }

    #[test]
    fn veth_rules_filter_macs_arp_nd_dhcp_and_tags() {
        let c = NetConfig {
            mode: Mode::Veth,
            mac_filter: true,
            ips: vec![parse_addr("198.51.100.5", None).unwrap()],
            ..Default::default()
        };
        let r = rules("vzx", &c, &[2, 0, 0, 0, 0, 1]);
        assert_eq!(
            texts(&r),
            [
                "ether saddr != 02:00:00:00:00:01 drop",
                "ether type != ip ether type != ip6 ether type != arp drop",
                "arp ptype != ip drop",
                "arp hlen != 6 drop",
                "arp plen != 4 drop",
                "arp saddr ether != 02:00:00:00:00:01 drop",
                "arp saddr ip != @v4_vzx arp saddr ip != 0.0.0.0 drop",
                "ip saddr != @v4_vzx drop",
                // Its own link-local address only: the one Linux makes from its MAC.
                "ip6 saddr != @v6_vzx ip6 saddr != fe80::ff:fe00:1 ip6 saddr != :: drop",
                "icmpv6 type nd-router-advert drop",
                "icmpv6 type nd-redirect drop",
                "icmpv6 type nd-neighbor-advert icmpv6 taddr != @v6_vzx icmpv6 taddr != fe80::ff:fe00:1 drop",
                "exthdr frag exists meta l4proto ipv6-icmp drop",
                "meta protocol ip udp sport 67 drop",
                "meta protocol ip udp dport 68 drop",
                "meta protocol ip6 udp sport 547 drop",
                "meta protocol ip6 udp dport 546 drop",
            ]
        );
        assert_eq!(
            eui64_link_local(&[0x02, 0x18, 0xd3, 0x9a, 0xae, 0xc0]).to_string(),
            "fe80::18:d3ff:fe9a:aec0"
        );
        // The ARP sender address sits 14 bytes into the ARP header (after hardware
        // address 6 bytes long, which the rule before requires).
        assert_eq!(r[6].exprs[2], load(Base::Network, 14, 4));
        // A neighbour advertisement's target, 8 bytes into the ICMPv6 header.
        assert!(r[11].exprs.contains(&load(Base::Transport, 8, 16)));
        // The DHCP server port, big-endian.
        assert_eq!(r[13].exprs[5], equals(&[0, 67]));
        assert_eq!(r[14].exprs[4], load(Base::Transport, 2, 2));
        assert!(r.iter().all(|r| r.exprs.last() == Some(&Expr::Drop)));
    }

    #[test]
    fn a_veth_ve_without_addresses_or_mac_filter_is_still_filtered() {
        let c = NetConfig {
            mode: Mode::Veth,
            mac_filter: false,
            ..Default::default()
        };
        let t = texts(&rules("vzx", &c, &[2, 0, 0, 0, 0, 1])).join("\n");
        assert!(
            !t.contains("ether saddr") && !t.contains("arp saddr ether"),
            "{t}"
        );
        // Its sets are empty: only 0.0.0.0 ARP probes and link-local or unspecified
        // IPv6 sources pass.
        for rule in ["ip saddr != @v4_vzx drop", "arp saddr ip != @v4_vzx"] {
            assert!(t.contains(rule), "{t}");
        }
    }
}
