//! What a VE's network is to be, from its `io.vzrun.net.*` annotations: the mode,
//! addresses, bridge and MAC, gateways, routes and rules (in `ip` words), DNS and the
//! uplink. Parsing only: nothing here touches the host.

use std::collections::HashMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::ve::keys::{self, Concern};
use crate::ve::{bad, VeError, PREFIX};

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

pub fn parse_mac(text: &str) -> Result<[u8; 6], String> {
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
    if mac == [0; 6] {
        return Err(format!("{text:?} is the all-zero address"));
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

/// The `WORD VALUE` pairs of a route or rule in `ip` words, in order; a word without
/// its value is an error where it stands, after the words before it were looked at.
fn word_pairs<'a>(
    what: &'static str,
    text: &'a str,
    words: &'a [&'a str],
) -> impl Iterator<Item = Result<(&'a str, &'a str), String>> + 'a {
    words.chunks(2).map(move |c| match *c {
        [word, val] => Ok((word, val)),
        // The last, lone word.
        _ => Err(format!("{what} {text:?}: {} needs a value", c.join(" "))),
    })
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
    for pair in word_pairs("route", text, &words[1..]) {
        let (word, val) = pair?;
        match word {
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

/// `from PREFIX table T [priority N]`.
pub fn parse_rule(text: &str) -> Result<RuleSpec, String> {
    let w: Vec<&str> = text.split_whitespace().collect();
    let mut from = None;
    let mut table = None;
    let mut priority = None;
    for pair in word_pairs("rule", text, &w) {
        let (word, val) = pair?;
        match word {
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

/// A VE's addresses as `net.ip` lists them (and `ve set` adds them): a venet VE routes
/// single addresses whatever prefix was written, a veth VE's address keeps its prefix (by
/// default /24, /64). An address listed twice, or also in `held`, is an error.
pub fn parse_ips<S: AsRef<str>>(
    mode: Mode,
    items: &[S],
    held: &[IpAddr],
) -> Result<Vec<Addr>, String> {
    let mut ips: Vec<Addr> = Vec::new();
    for ip in items {
        let ip = ip.as_ref().trim();
        let default_prefix = match mode {
            Mode::Venet => None,
            Mode::Veth if ip.contains(':') => Some(64),
            Mode::Veth => Some(24),
        };
        let mut addr = parse_addr(ip, default_prefix)?;
        if mode == Mode::Venet {
            addr.prefix = if addr.ip.is_ipv4() { 32 } else { 128 };
        }
        if ips.iter().any(|x| x.ip == addr.ip) {
            return Err(format!("{} is listed twice", addr.ip));
        }
        if held.contains(&addr.ip) {
            return Err(format!("{} is already an address of this VE", addr.ip));
        }
        ips.push(addr);
    }
    Ok(ips)
}

/// Name servers as `net.nameserver` lists them: addresses, or `inherit`.
pub fn check_nameservers<S: AsRef<str>>(items: &[S]) -> Result<(), String> {
    for n in items.iter().map(|n| n.as_ref()).filter(|n| *n != "inherit") {
        n.parse::<IpAddr>()
            .map_err(|_| format!("{n:?} is not an IP address (or inherit)"))?;
    }
    Ok(())
}

/// Search domains as resolv.conf takes them: each `inherit` or a DNS name of letters,
/// digits, `-`, `_` and dots, at most 253 characters. Anything else (a space, a newline)
/// would end the `search` line and start one of the tenant's choosing in the VE's
/// resolv.conf (an `options` or `nameserver` line the name server settings never
/// allowed).
pub fn check_searchdomains<S: AsRef<str>>(items: &[S]) -> Result<(), String> {
    for d in items.iter().map(|d| d.as_ref()).filter(|d| *d != "inherit") {
        let chars_ok = d
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        let labels_ok = d.trim_end_matches('.').split('.').all(|l| !l.is_empty());
        if !chars_ok || !labels_ok || d.len() > 253 {
            return Err(format!(
                "{d:?} is not a domain name (letters, digits, - and _ in dot-separated labels, \
                 at most 253 characters) or inherit"
            ));
        }
    }
    Ok(())
}

impl NetConfig {
    /// `None` when the VE has no network settings at all.
    pub fn parse(a: &HashMap<String, String>) -> Result<Option<NetConfig>, VeError> {
        let get = |k: &str| a.get(&format!("{PREFIX}{k}")).map(|s| s.trim().to_string());
        if keys::of(Concern::Net).all(|k| get(k.name).is_none()) {
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
        let ips = get("net.ip").map(|v| list(&v)).unwrap_or_default();
        c.ips = parse_ips(c.mode, &ips, &[]).map_err(|e| bad("net.ip", e))?;
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
            check_nameservers(ns).map_err(|e| bad("net.nameserver", e))?;
        }
        c.searchdomains = get("net.searchdomain").map(|v| list(&v));
        if let Some(sd) = &c.searchdomains {
            check_searchdomains(sd).map_err(|e| bad("net.searchdomain", e))?;
        }
        c.uplink = get("net.uplink");
        Ok(Some(c))
    }
}

/// A MAC as `ip link` prints it.
pub(super) fn format_mac(m: &[u8]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The bytes of a MAC recorded by [`format_mac`]; what does not parse is left out.
pub(super) fn parse_mac_text(m: &str) -> Vec<u8> {
    m.split(':')
        .filter_map(|b| u8::from_str_radix(b, 16).ok())
        .collect()
}

/// Whether a route is IPv6, from its destination or else its gateway.
pub(super) fn route_is_v6(r: &RouteSpec) -> bool {
    r.dst
        .as_ref()
        .map(|d| d.ip.is_ipv6())
        .or(r.via.map(|v| v.is_ipv6()))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::ve::test_annotations as ann;

    #[test]
    fn a_search_domain_cannot_add_lines_to_resolv_conf() {
        for evil in [
            "a.test\noptions ndots:15",
            "a.test nameserver",
            "a..test",
            ".",
            "",
        ] {
            let err = NetConfig::parse(&ann(&[("net.searchdomain", &format!("ok.test,{evil}"))]));
            // An empty item is dropped by the list split; the rest are refused by name.
            if evil.is_empty() {
                assert!(err.is_ok());
                continue;
            }
            let err = err.unwrap_err().to_string();
            assert!(err.contains("io.vzrun.net.searchdomain"), "{err}");
        }
        let c = NetConfig::parse(&ann(&[(
            "net.searchdomain",
            "example.test., corp_x.test,inherit",
        )]))
        .unwrap()
        .unwrap();
        assert_eq!(c.searchdomains.map(|v| v.len()), Some(3));
        assert!(check_searchdomains(&["a".repeat(254)]).is_err());
    }

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
            ("net.mac", "00:00:00:00:00:00", "all-zero"),
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
    fn a_word_without_its_value_is_named_in_order() {
        let e = parse_route("203.0.113.0/24 via 198.51.100.1 mtu").unwrap_err();
        assert!(e.ends_with("mtu needs a value"), "{e}");
        let e = parse_route("203.0.113.0/24 dev eth9 mtu").unwrap_err();
        assert!(e.contains("unknown word \"dev\""), "{e}");
        let e = parse_rule("from 198.51.100.7 table").unwrap_err();
        assert!(e.ends_with("table needs a value"), "{e}");
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
}
