//! Host-side guards on a VE's link. In nftables: a netdev ingress chain on the host end
//! drops packets whose source address (and, for veth, source MAC) is not the VE's own;
//! ingress on the host end sees every frame the VE sends, before any routing or
//! bridging. On a bridge: the VE's port is isolated from other VEs' unicast.

use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use super::config::format_mac;
use super::setup::is_ve_link;
use super::{Addr, Mode, NetConfig, NetError};
use crate::sys::netlink::{BridgePortFlags, FdbEntry, Netlink};
use crate::sys::nftables::{self, SetContent};

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

/// `add element` lines putting `ips` in the VE's two sets.
fn add_elements(n: &Names, ips: &[Addr]) -> String {
    let mut s = String::new();
    for (set, v6) in [(&n.v4, false), (&n.v6, true)] {
        let v: Vec<String> = ips
            .iter()
            .filter(|a| a.ip.is_ipv6() == v6)
            .map(|a| a.ip.to_string())
            .collect();
        if !v.is_empty() {
            s.push_str(&format!(
                "add element netdev {TABLE} {set} {{ {} }}\n",
                v.join(", ")
            ));
        }
    }
    s
}

/// The batch that installs one VE link's guard. Every `add` is idempotent and each
/// object is flushed after it, so a guard left under the same names by a vzrun that was
/// killed is replaced, not added to; nft applies the whole batch or none of it.
pub fn ruleset(host_if: &str, c: &NetConfig, mac: &[u8]) -> String {
    let n = names(host_if);
    let mut rules = Vec::new();
    if c.mode == Mode::Veth && c.mac_filter {
        rules.push(format!("ether saddr != {} drop", format_mac(mac)));
        rules.push(format!("arp saddr ether != {} drop", format_mac(mac)));
    }
    if c.mode == Mode::Venet {
        // venet has no ARP at all.
        rules.push("meta protocol arp drop".to_string());
    }
    let filter_ip = c.mode == Mode::Venet || !c.ips.is_empty();
    if filter_ip {
        rules.push(format!("meta protocol ip ip saddr != @{} drop", n.v4));
        rules.push(format!(
            "meta protocol ip6 ip6 saddr != @{} ip6 saddr != fe80::/10 ip6 saddr != :: drop",
            n.v6
        ));
    }
    let mut s = format!(
        "add table netdev {TABLE}\n\
         add set netdev {TABLE} {v4} {{ type ipv4_addr; }}\n\
         flush set netdev {TABLE} {v4}\n\
         add set netdev {TABLE} {v6} {{ type ipv6_addr; }}\n\
         flush set netdev {TABLE} {v6}\n\
         add chain netdev {TABLE} {chain} {{ type filter hook ingress device \"{host_if}\" priority -500; policy accept; }}\n\
         flush chain netdev {TABLE} {chain}\n",
        v4 = n.v4,
        v6 = n.v6,
        chain = n.chain,
    );
    s.push_str(&add_elements(&n, &c.ips));
    for r in rules {
        s.push_str(&format!("add rule netdev {TABLE} {} {r}\n", n.chain));
    }
    s
}

/// Installs the guard; returns the handle to keep in the VE's record.
pub fn guard(host_if: &str, c: &NetConfig, mac: &[u8]) -> Result<String, NetError> {
    nft(&ruleset(host_if, c, mac))?;
    Ok(format!("{SHARED}{host_if}"))
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
        nftables::Family::Netdev,
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

/// Removes a VE's guard. The chain goes first (its rules reference the sets). A kernel
/// that dropped the chain with its link fails that batch as a whole; the sets are then
/// removed on their own. The shared table itself stays, as an empty table does no work.
pub fn remove(handle: &str) {
    let Some(host_if) = handle.strip_prefix(SHARED) else {
        let _ = nft(&format!("delete table netdev {handle}\n"));
        return;
    };
    let n = names(host_if);
    let sets = format!(
        "delete set netdev {TABLE} {}\ndelete set netdev {TABLE} {}\n",
        n.v4, n.v6
    );
    if nft(&format!("delete chain netdev {TABLE} {}\n{sets}", n.chain)).is_err() {
        let _ = nft(&sets);
    }
}

/// On a bridge, a VE's port gets no flooded unknown unicast (nor multicast) and its MAC
/// is pinned to it, so frames for one VE are never copied to another's port: what
/// `bridge link set dev PORT flood off mcast_flood off` and `bridge fdb add MAC dev PORT
/// master static` do, through netlink.
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

    #[test]
    fn venet_ruleset_allows_only_own_sources() {
        let c = NetConfig {
            ips: vec![
                parse_addr("198.51.100.5", None).unwrap(),
                parse_addr("2001:db8::5", None).unwrap(),
            ],
            ..Default::default()
        };
        let r = ruleset("vz0123456789", &c, &[2, 0, 0, 0, 0, 1]);
        assert!(r.starts_with("add table netdev vzrun\n"), "{r}");
        assert!(r.contains(
            "add chain netdev vzrun in_vz0123456789 { type filter hook ingress device \"vz0123456789\""
        ));
        assert!(r.contains("add element netdev vzrun v4_vz0123456789 { 198.51.100.5 }"));
        assert!(r.contains("add element netdev vzrun v6_vz0123456789 { 2001:db8::5 }"));
        assert!(r.contains("add rule netdev vzrun in_vz0123456789 meta protocol arp drop"));
        assert!(r.contains("ip saddr != @v4_vz0123456789 drop"));
        assert!(!r.contains("ether saddr"));
        // Whatever a killed vzrun left under these names is emptied first.
        let flush = r.find("flush chain netdev vzrun in_vz0123456789").unwrap();
        assert!(flush < r.find("add rule").unwrap());
    }

    #[test]
    fn veth_ruleset_filters_macs() {
        let c = NetConfig {
            mode: Mode::Veth,
            mac_filter: true,
            ..Default::default()
        };
        let r = ruleset("vzx", &c, &[2, 0, 0, 0, 0, 1]);
        assert!(r.contains("ether saddr != 02:00:00:00:00:01 drop"));
        assert!(
            !r.contains("ip saddr"),
            "no addresses given: the VE may do DHCP"
        );
        assert!(!r.contains("add element"));
    }
}
