//! Host-side guards on a VE's link. In nftables: a netdev ingress chain on the host end
//! drops packets whose source address (and, for veth, source MAC) is not the VE's own;
//! ingress on the host end sees every frame the VE sends, before any routing or
//! bridging. On a bridge: the VE's port is isolated from other VEs' unicast.

use std::process::Command;
use std::time::{Duration, Instant};

use super::config::format_mac;
use super::setup::is_ve_link;
use super::{Addr, Mode, NetConfig, NetError};
use crate::sys::netlink::{BridgePortFlags, FdbEntry, Netlink};

fn nft(script: &str) -> Result<(), NetError> {
    crate::sys::process::run_with_input(Command::new("nft").args(["-f", "-"]), script.as_bytes())?;
    Ok(())
}

fn elements(ips: &[Addr], v6: bool) -> String {
    let v: Vec<String> = ips
        .iter()
        .filter(|a| a.ip.is_ipv6() == v6)
        .map(|a| a.ip.to_string())
        .collect();
    if v.is_empty() {
        String::new()
    } else {
        format!("elements = {{ {} }}", v.join(", "))
    }
}

pub fn table_name(host_if: &str) -> String {
    format!("vzrun_{host_if}")
}

/// The ruleset for one VE link.
pub fn ruleset(host_if: &str, c: &NetConfig, mac: &[u8]) -> String {
    let t = table_name(host_if);
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
        rules.push("meta protocol ip ip saddr != @v4 drop".to_string());
        rules.push(
            "meta protocol ip6 ip6 saddr != @v6 ip6 saddr != fe80::/10 ip6 saddr != :: drop"
                .to_string(),
        );
    }
    format!(
        "table netdev {t} {{\n  set v4 {{ type ipv4_addr; {} }}\n  set v6 {{ type ipv6_addr; {} }}\n  chain ingress {{\n    type filter hook ingress device \"{host_if}\" priority -500; policy accept;\n    {}\n  }}\n}}\n",
        elements(&c.ips, false),
        elements(&c.ips, true),
        rules.join("\n    ")
    )
}

/// Installs the guard; returns the table name to remove later.
pub fn guard(host_if: &str, c: &NetConfig, mac: &[u8]) -> Result<String, NetError> {
    nft(&ruleset(host_if, c, mac))?;
    Ok(table_name(host_if))
}

/// Replaces the allowed source addresses after `ve set --ipadd/--ipdel`.
pub fn refresh_addresses(table: &str, ips: &[Addr]) -> Result<(), NetError> {
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

pub fn remove(table: &str) {
    let _ = nft(&format!("delete table netdev {table}\n"));
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
        assert!(r.contains("table netdev vzrun_vz0123456789"));
        assert!(r.contains("device \"vz0123456789\""));
        assert!(r.contains("elements = { 198.51.100.5 }"));
        assert!(r.contains("elements = { 2001:db8::5 }"));
        assert!(r.contains("meta protocol arp drop"));
        assert!(!r.contains("ether saddr"));
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
    }
}
