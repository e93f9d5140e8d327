//! A venet VE announced on an uplink: the host answers ARP/NDP there for the VE's
//! addresses (proxy neighbour entries), and for IPv6 the uplink's `proxy_ndp` switch must
//! be on. That switch is one per uplink, shared by every VE announced there, from any
//! state root, and by whatever else the administrator runs.
//!
//! The rule, kept simple: vzrun turns `proxy_ndp` on only when it finds it off, and then
//! leaves a mark (host-wide, under /run, naming the uplink's index). When a VE leaves and
//! no IPv6 proxy entry is left on that uplink, the switch goes back off if, and only if,
//! the mark says vzrun turned it on. A switch the administrator had on stays on. Adding a
//! VE's entries and removing the last ones happen under one host-wide lock, so a VE
//! arriving never sees the switch turned off under its fresh entries.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::NetError;
use crate::sys::lock::FileLock;
use crate::sys::netlink::{self, Netlink, ProxyNeighbour};

/// Host-wide, whatever the state root: the uplinks are the host's.
const DIR: &str = "/run/vzrun-uplinks";

fn lock() -> Result<FileLock, NetError> {
    let dir = Path::new(DIR);
    crate::sys::fs::private_dir(dir).map_err(|e| NetError::io("create", dir, e))?;
    let path = dir.join("lock");
    FileLock::exclusive(&path, true).map_err(|e| NetError::io("lock", path, e))
}

fn mark(uplink: &str) -> PathBuf {
    Path::new(DIR).join(format!("proxy_ndp.{uplink}"))
}

fn proxy_ndp(uplink: &str) -> String {
    format!("net/ipv6/conf/{uplink}/proxy_ndp")
}

/// Adds the proxy entries for `ips` on the uplink `up` (named `uplink`), turning
/// `proxy_ndp` on first when an address is IPv6. The caller records them before.
pub(super) fn proxy(
    nl: &mut Netlink,
    uplink: &str,
    up: u32,
    ips: &[IpAddr],
) -> Result<(), NetError> {
    let _held = lock()?;
    if ips.iter().any(|ip| ip.is_ipv6()) {
        let path = Path::new("/proc/sys").join(proxy_ndp(uplink));
        let on = std::fs::read_to_string(&path)
            .map_err(|e| NetError::io("read", &path, e))?
            .trim()
            != "0";
        if !on {
            netlink::sysctl(&proxy_ndp(uplink), "1")
                .map_err(|e| NetError::io("write", &path, e))?;
            let m = mark(uplink);
            std::fs::write(&m, up.to_string()).map_err(|e| NetError::io("write", m, e))?;
        }
    }
    for ip in ips {
        nl.add(&ProxyNeighbour { link: up, ip: *ip })?;
    }
    Ok(())
}

/// Removes the proxy entries of `ips`; turns `proxy_ndp` back off when vzrun turned it
/// on and no IPv6 entry is left on the uplink. Best effort, as teardown is.
pub(super) fn unproxy(nl: &mut Netlink, uplink: &str, ips: &[IpAddr]) {
    let Ok(Some(up)) = nl.link_index(uplink) else {
        return;
    };
    let held = lock();
    for ip in ips {
        let _ = nl.del(&ProxyNeighbour { link: up, ip: *ip });
    }
    let m = mark(uplink);
    let ours = std::fs::read_to_string(&m)
        .ok()
        .is_some_and(|i| i.trim() == up.to_string());
    // Without the lock a VE could be adding its entries right now: leave the switch.
    // Whether this VE had IPv6 entries does not matter: a create that turned the switch
    // on and then failed to add its first entry has none, and must still turn it off.
    if held.is_ok()
        && ours
        && nl.proxy_neighbours(up, true).is_ok_and(|l| l.is_empty())
        && netlink::sysctl(&proxy_ndp(uplink), "0").is_ok()
    {
        let _ = std::fs::remove_file(&m);
    }
}
