//! Changes to a running VE's network (`ve set`): addresses and routes added and removed
//! inside and on the host, and the guard kept in step.

use std::net::IpAddr;

use super::setup::{
    announce, host_route, kernel_guard_applies, netns_of, recorded_mac, to_route, venet_default,
};
use super::{guard, Addr, Mode, NetConfig, NetError, NetRecord, RouteSpec};
use crate::sys::netlink::{self, in_netns, Address, Netlink};

/// One change made inside the VE, for putting it back.
enum Done {
    RouteDel(netlink::Route),
    AddrAdd(Address),
    AddrDel(Address),
    RouteAdd(netlink::Route),
}

/// Whether a running VE may take the addresses `add`: the same rules as at create (the
/// policy's pools are not checked here: `ve set` is the administrator's own command).
pub fn check_add(rec: &NetRecord, add: &[Addr]) -> Result<(), NetError> {
    for a in add {
        if rec.ips.iter().any(|x| x.ip == a.ip) {
            return Err(NetError::AddressOwned(a.ip));
        }
    }
    if add.is_empty() {
        return Ok(());
    }
    let mut nl = Netlink::new()?;
    let lan = match rec.mode {
        Mode::Venet => rec.uplink.as_deref(),
        Mode::Veth => rec.bridge.as_deref(),
    };
    super::claim::check(&mut nl, "net.ip", add, lan)
}

/// What one `ve set` (or its undo) changes in a running VE's network.
#[derive(Debug, Clone, Copy)]
pub struct Changes<'a> {
    pub add: &'a [Addr],
    pub del: &'a [IpAddr],
    pub routes_add: &'a [RouteSpec],
    pub routes_del: &'a [RouteSpec],
}

/// Adds and removes addresses and routes on a running VE (`ve set`). The caller has
/// checked the addresses to add with [`check_add`] (`ve set` checks every flag before
/// the first step; an undo puts back addresses the VE held a moment ago): the check
/// dumps the host's addresses and routes, which at 500 VEs is most of the work. The VE
/// takes the new addresses first (see `claim`), and gives them back if the change fails.
pub fn change(rec: &mut NetRecord, pid: i32, c: Changes) -> Result<(), NetError> {
    let mut nl = Netlink::new()?;
    let me = rec.host_if.clone();
    let added: Vec<IpAddr> = c.add.iter().map(|a| a.ip).collect();
    if let Some(me) = &me {
        super::claim::take(&mut nl, "net.ip", &added, me)?;
    }
    let result = apply(&mut nl, rec, pid, c);
    if let Some(me) = &me {
        let given_back = if result.is_ok() { c.del } else { &added[..] };
        super::claim::release(given_back, me);
    }
    result
}

fn apply(nl: &mut Netlink, rec: &mut NetRecord, pid: i32, c: Changes) -> Result<(), NetError> {
    let Changes {
        add,
        del,
        routes_add,
        routes_del,
    } = c;
    let ns = netns_of(pid);
    let ve_if = rec.ve_if.clone().ok_or(NetError::Unmanaged)?;
    // The uplink that answers for new addresses is looked up before anything changes: a
    // change that cannot be finished must not begin.
    let uplink = match (rec.mode, &rec.uplink) {
        (Mode::Venet, Some(u)) if !add.is_empty() => Some(nl.link_index(u)?.ok_or_else(|| {
            NetError::setting("net.uplink", format!("device {u:?} does not exist"))
        })?),
        _ => None,
    };
    let (add_v, ra, rd) = (add.to_vec(), routes_add.to_vec(), routes_del.to_vec());
    let added_ips: Vec<IpAddr> = add.iter().map(|a| a.ip).collect();
    let (mode, had_v4, had_v6) = (
        rec.mode,
        rec.ips.iter().any(|a| a.ip.is_ipv4()),
        rec.ips.iter().any(|a| a.ip.is_ipv6()),
    );
    let del_prefixes: Vec<Addr> = rec
        .ips
        .iter()
        .filter(|a| del.contains(&a.ip))
        .cloned()
        .collect();
    in_netns(&ns, move || -> Result<(), NetError> {
        let mut n = Netlink::new()?;
        let idx = n
            .link_index(&ve_if)?
            .ok_or_else(|| NetError::MissingInVe(ve_if.clone()))?;
        let address = |a: &Addr| Address {
            link: idx,
            ip: a.ip,
            prefix: a.prefix,
        };
        // Routes go before the addresses they may name as source, and come after them:
        // the kernel drops a route whose source address goes, and refuses one whose
        // source is not there yet. The same order undoes a change (adds and removes
        // swapped). What one refuses halfway is put back here, so that a failed change
        // leaves the VE as it was.
        let mut done: Vec<Done> = Vec::new();
        let result = (|| -> Result<(), NetError> {
            for r in &rd {
                n.del(&to_route(r, idx))?;
                done.push(Done::RouteDel(to_route(r, idx)));
            }
            for a in &add_v {
                n.add(&address(a))?;
                done.push(Done::AddrAdd(address(a)));
            }
            if mode == Mode::Venet {
                // The first address of a family brings that family's default route.
                for (v6, had) in [(false, had_v4), (true, had_v6)] {
                    if !had && add_v.iter().any(|a| a.ip.is_ipv6() == v6) {
                        let _ = n.add(&venet_default(idx, v6));
                    }
                }
            }
            for a in &del_prefixes {
                n.del(&address(a))?;
                done.push(Done::AddrDel(address(a)));
            }
            for r in &ra {
                n.add(&to_route(r, idx))?;
                done.push(Done::RouteAdd(to_route(r, idx)));
            }
            Ok(())
        })();
        if result.is_err() {
            for d in done.iter().rev() {
                let _ = match d {
                    Done::RouteDel(r) => n.add(r),
                    Done::AddrAdd(a) => n.del(a),
                    Done::AddrDel(a) => n.add(a),
                    Done::RouteAdd(r) => n.del(r),
                };
            }
        }
        result
    })??;
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
            nl.add(&host_route(a, hi))?;
        }
        rec.ips.push(a.clone());
    }
    for ip in del {
        if let Some(pos) = rec.ips.iter().position(|x| x.ip == *ip) {
            let a = rec.ips.remove(pos);
            if let (Mode::Venet, Some(hi)) = (rec.mode, host_idx) {
                let _ = nl.del(&host_route(&a, hi));
            }
        }
    }
    // On an uplink the host answers ARP/NDP for the VE's addresses: for the new ones
    // from now on (and tells the LAN at once, as vzctl does), for the removed ones no
    // longer, or the host would keep drawing their traffic to a VE that dropped them.
    if let (Mode::Venet, Some(u)) = (rec.mode, rec.uplink.clone()) {
        let gone: Vec<IpAddr> = rec
            .proxied
            .iter()
            .filter(|ip| del.contains(ip))
            .copied()
            .collect();
        if !gone.is_empty() {
            super::uplink::unproxy(nl, &u, &gone);
            rec.proxied.retain(|ip| !gone.contains(ip));
        }
        if let (false, Some(up)) = (added_ips.is_empty(), uplink) {
            rec.proxied.extend(&added_ips);
            super::uplink::proxy(nl, &u, up, &added_ips)?;
            announce(rec);
        }
    }
    for r in routes_del {
        rec.routes.retain(|x| x.text != r.text);
    }
    rec.routes.extend(routes_add.iter().cloned());
    if let Some(h) = rec.host_if.clone() {
        match &rec.nft_table {
            // Only adding: the new addresses join the sets. A batch that removes
            // elements costs an RCU grace period when its socket closes (4-16 ms here),
            // one that only adds costs nothing of the kind.
            Some(t) if del.is_empty() => guard::allow_addresses(t, add)?,
            Some(t) => guard::refresh_addresses(t, &rec.ips)?,
            None if !kernel_guard_applies(rec.mode, &rec.ips) => {
                // The first IPv6 address: the kernel guard no longer covers the VE.
                let cfg = NetConfig {
                    mode: rec.mode,
                    ips: rec.ips.clone(),
                    mac_filter: false,
                    ..Default::default()
                };
                rec.nft_table = Some(guard::guard(&h, &cfg, &recorded_mac(rec))?);
            }
            None => {}
        }
    }
    Ok(())
}
