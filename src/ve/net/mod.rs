//! VE networking, done by the runtime: addresses, a routed (venet) or bridged (veth)
//! link, routes and policy rules, DNS, and the host-side guards against spoofing and
//! sniffing. By job: `config` (settings from annotations), `claim` (which addresses a
//! VE may take on this host), `setup` (making and removing the network, the host link
//! around a move), `live` (changes by `ve set`), `guard` (nftables and bridge port
//! isolation), `uplink` (proxy ARP/NDP and `proxy_ndp` on an uplink), `dns`
//! (resolv.conf), `error`.
//!
//! venet is a veth pair with ARP off on both ends and the same MAC on both, so the VE
//! sees a point-to-point device with no neighbour but itself; the host routes each VE
//! address (/32, /128) to its end. The host end drops any packet whose source is not one
//! of the VE's addresses (nftables, netdev ingress, or strict reverse-path filtering for
//! an IPv4-only venet VE), so a VE holding CAP_NET_ADMIN can neither add a foreign
//! address nor forge a source.

mod claim;
mod config;
mod dns;
mod error;
mod guard;
mod live;
mod setup;
mod uplink;

pub use config::{
    check_nameservers, check_searchdomains, parse_ips, parse_mac, parse_route, Addr, Mode,
    NetConfig, RouteSpec, RuleSpec,
};
pub use dns::{resolv_conf, update_resolv_conf};
pub use error::NetError;
pub use live::{change, check_add, Changes};
pub use setup::{
    announce, fresh_netns, host_link_down, preflight, reconnect, set_host_link, setup, setup_at,
    teardown, NetRecord,
};
