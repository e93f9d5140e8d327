//! Changes to a VE (what `ve set` asks for), read by the same parsers as the
//! annotations, so that a value one path accepts the other accepts too: the addresses
//! as `net.ip` lists them, routes as `net.routes`, name servers as `net.nameserver`,
//! resources as their annotations, disk limits as `diskspace`/`diskinodes`. For a running
//! VE everything is parsed and checked into a [`Plan`] before anything changes, and the
//! runtime applies it step by step; for a stopped system VE [`change_settings`] edits its
//! saved settings. Errors name the [`Setting`]; the command maps a setting to its flag.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::Path;

use serde_json::{json, Value};

use super::disk::{self, Limit};
use super::net::{self, Addr, Mode, NetError, RouteSpec, RuleSpec};
use super::resources::ResourceConfig;
use super::{VeConfig, VeError, VeRecord, PREFIX};

/// One thing `ve set` can change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    IpAdd,
    IpDel,
    RouteAdd,
    RouteDel,
    Hostname,
    Nameserver,
    Searchdomain,
    /// A resource, by its annotation (and vzctl) name.
    Resource(&'static str),
    DiskSpace,
    DiskInodes,
    /// Writing the new values down (`--save`).
    Save,
}

impl std::fmt::Display for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Setting::IpAdd => "address to add",
            Setting::IpDel => "address to remove",
            Setting::RouteAdd => "route to add",
            Setting::RouteDel => "route to remove",
            Setting::Hostname => "hostname",
            Setting::Nameserver => "name servers",
            Setting::Searchdomain => "search domains",
            Setting::Resource(name) => name,
            Setting::DiskSpace => "diskspace",
            Setting::DiskInodes => "diskinodes",
            Setting::Save => "saving the settings",
        };
        f.write_str(s)
    }
}

/// What to change, as the user wrote each value.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    pub ipadd: Vec<String>,
    /// Addresses, or `all`.
    pub ipdel: Vec<String>,
    pub route_add: Vec<String>,
    pub route_del: Vec<String>,
    pub hostname: Option<String>,
    pub nameserver: Vec<String>,
    pub searchdomain: Vec<String>,
    /// `(name, value)` of each resource given, by its annotation name.
    pub resources: Vec<(&'static str, String)>,
    pub diskspace: Option<String>,
    pub diskinodes: Option<String>,
    /// Also write the new values down for the VE's next start.
    pub save: bool,
}

impl Changes {
    fn net_given(&self) -> bool {
        !self.ipadd.is_empty()
            || !self.ipdel.is_empty()
            || !self.route_add.is_empty()
            || !self.route_del.is_empty()
    }
}

/// A bad value or an impossible change, naming its setting.
pub(crate) fn refuse(setting: Setting, problem: impl Into<String>) -> VeError {
    VeError::Setting {
        setting,
        problem: problem.into(),
    }
}

/// A network error of a live change, named by its setting where it is about one.
pub fn net_error(e: NetError) -> VeError {
    match e.setting_problem() {
        Some(("net.ip", problem)) => refuse(Setting::IpAdd, problem),
        _ => e.into(),
    }
}

/// What a running VE has now, for the changes that depend on it.
#[derive(Debug, Clone, Default)]
pub struct Current {
    /// Its settings, as annotations (`io.vzrun.KEY`).
    pub settings: HashMap<String, String>,
    /// The memory limit in force (bytes; `None` or negative: unlimited).
    pub ram: Option<i64>,
    /// OCI's swap in force: memory plus swap (bytes; `None` or negative: unlimited).
    pub memsw: Option<i64>,
    /// The VE's resolv.conf as it is.
    pub resolv_conf: String,
}

/// The changes, parsed and checked against the VE as recorded.
#[derive(Debug, Default)]
pub struct Plan {
    pub add: Vec<Addr>,
    pub del: Vec<IpAddr>,
    pub routes_add: Vec<RouteSpec>,
    pub routes_del: Vec<RouteSpec>,
    pub hostname: Option<String>,
    /// The new resolv.conf, when name servers or search domains change.
    pub resolv_conf: Option<String>,
    /// The resources given (with `ram`, `swap` and `memguarantee` filled in from the VE
    /// where the others need them); `None` when none was.
    pub resources: Option<ResourceConfig>,
    /// The resource names given, in the order the command lists them.
    pub resources_given: Vec<&'static str>,
    pub disk_space: Option<Limit>,
    pub disk_inodes: Option<Limit>,
}

/// Why `ip` cannot go while `routes` and `rules` stay (routes in `leaving` go with it):
/// the kernel drops a route whose source address is removed, and a rule left with no
/// address of the VE to match would route nothing; either way the VE's record would
/// still list them.
fn address_in_use(
    ip: IpAddr,
    remaining: &[IpAddr],
    routes: &[RouteSpec],
    leaving: &[RouteSpec],
    rules: &[RuleSpec],
) -> Result<(), String> {
    for r in routes {
        if r.src == Some(ip) && !leaving.iter().any(|l| l.text == r.text) {
            return Err(format!(
                "{ip} is the source address of the VE's route {:?}: remove that route with it, or first",
                r.text
            ));
        }
    }
    for r in rules {
        let covers = |a: &IpAddr| prefix_covers(&r.from, *a);
        if covers(&ip) && !remaining.iter().any(covers) {
            return Err(format!(
                "{ip} is the VE's only address that its rule \"from {} table {}\" applies to: change {PREFIX}net.rules first",
                r.from, r.table
            ));
        }
    }
    Ok(())
}

/// Whether `a` is inside the prefix `p`.
fn prefix_covers(p: &Addr, a: IpAddr) -> bool {
    match (p.ip, a) {
        (IpAddr::V4(n), IpAddr::V4(x)) => {
            let bits = u32::from(p.prefix.min(32));
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(n) & mask == u32::from(x) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(x)) => {
            let bits = u32::from(p.prefix.min(128));
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(n) & mask == u128::from(x) & mask
        }
        _ => false,
    }
}

/// The addresses of `--ipdel` among `current` (`all` is every one).
fn addresses_to_remove(ipdel: &[String], current: &[IpAddr]) -> Result<Vec<IpAddr>, VeError> {
    let mut del = Vec::new();
    for d in ipdel {
        if d == "all" {
            del.extend(current.iter().copied());
            continue;
        }
        let ip: IpAddr = d
            .split('/')
            .next()
            .unwrap_or_default()
            .parse()
            .map_err(|_| refuse(Setting::IpDel, format!("{d:?} is not an IP address")))?;
        if !current.contains(&ip) {
            return Err(refuse(
                Setting::IpDel,
                format!("{ip} is not an address of this VE"),
            ));
        }
        if !del.contains(&ip) {
            del.push(ip);
        }
    }
    Ok(del)
}

/// Refuses removing addresses that routes or rules staying behind use.
fn check_removals(
    del: &[IpAddr],
    current: &[IpAddr],
    routes: &[RouteSpec],
    routes_del: &[RouteSpec],
    rules: &[RuleSpec],
) -> Result<(), VeError> {
    let remaining: Vec<IpAddr> = current
        .iter()
        .filter(|a| !del.contains(a))
        .copied()
        .collect();
    for ip in del {
        address_in_use(*ip, &remaining, routes, routes_del, rules)
            .map_err(|e| refuse(Setting::IpDel, e))?;
    }
    Ok(())
}

fn parse_routes(texts: &[String], setting: Setting) -> Result<Vec<RouteSpec>, VeError> {
    texts
        .iter()
        .map(|r| net::parse_route(r).map_err(|e| refuse(setting, e)))
        .collect()
}

/// The resources given, each checked alone.
fn parse_resources(c: &Changes) -> Result<Option<ResourceConfig>, VeError> {
    if c.resources.is_empty() {
        return Ok(None);
    }
    let mut res = ResourceConfig::default();
    for (name, value) in &c.resources {
        res.set(name, value)
            .map_err(|e| refuse(Setting::Resource(name), e))?;
    }
    Ok(Some(res))
}

impl Plan {
    pub fn net_changes(&self) -> bool {
        !self.add.is_empty()
            || !self.del.is_empty()
            || !self.routes_add.is_empty()
            || !self.routes_del.is_empty()
    }

    /// Parses `c` for the running VE recorded as `ve`, which has `now`.
    pub fn parse(c: &Changes, ve: &VeRecord, now: &Current) -> Result<Plan, VeError> {
        let mut p = Plan::default();
        let mode = ve.net.as_ref().map(|n| n.mode).unwrap_or_default();
        let current: Vec<IpAddr> = ve
            .net
            .as_ref()
            .map(|n| n.ips.iter().map(|a| a.ip).collect())
            .unwrap_or_default();
        p.add = net::parse_ips(mode, &c.ipadd, &current).map_err(|e| refuse(Setting::IpAdd, e))?;
        p.del = addresses_to_remove(&c.ipdel, &current)?;
        p.routes_add = parse_routes(&c.route_add, Setting::RouteAdd)?;
        p.routes_del = parse_routes(&c.route_del, Setting::RouteDel)?;
        if p.net_changes() && ve.net.is_none() {
            return Err(refuse(
                Setting::IpAdd,
                format!("the VE was created without vzrun networking (set {PREFIX}net.ip)"),
            ));
        }
        if let Some(n) = &ve.net {
            for r in &p.routes_del {
                if !n.routes.iter().any(|x| x.text == r.text) {
                    return Err(refuse(
                        Setting::RouteDel,
                        format!("{:?} is not a route of this VE", r.text),
                    ));
                }
            }
            check_removals(&p.del, &current, &n.routes, &p.routes_del, &n.rules)?;
            net::check_add(n, &p.add).map_err(net_error)?;
        }
        net::check_nameservers(&c.nameserver).map_err(|e| refuse(Setting::Nameserver, e))?;
        net::check_searchdomains(&c.searchdomain).map_err(|e| refuse(Setting::Searchdomain, e))?;
        if !c.nameserver.is_empty() || !c.searchdomain.is_empty() {
            fn given(v: &[String]) -> Option<&[String]> {
                (!v.is_empty()).then_some(v)
            }
            p.resolv_conf = Some(net::update_resolv_conf(
                &now.resolv_conf,
                given(&c.nameserver),
                given(&c.searchdomain),
            ));
        }
        if let Some(h) = &c.hostname {
            check_hostname(h).map_err(|e| refuse(Setting::Hostname, e))?;
            p.hostname = Some(h.clone());
        }
        p.resources_given = c.resources.iter().map(|(n, _)| *n).collect();
        if let Some(mut res) = parse_resources(c)? {
            fill_memory(&mut res, now)?;
            p.resources = Some(res);
        }
        p.disk_space = c
            .diskspace
            .as_deref()
            .map(|v| disk::parse_limit(v, false).map_err(|e| refuse(Setting::DiskSpace, e)))
            .transpose()?;
        p.disk_inodes = c
            .diskinodes
            .as_deref()
            .map(|v| disk::parse_limit(v, true).map_err(|e| refuse(Setting::DiskInodes, e)))
            .transpose()?;
        if p.disk_space.is_some() || p.disk_inodes.is_some() {
            p.check_disk(ve)?;
        }
        Ok(p)
    }

    fn check_disk(&self, ve: &VeRecord) -> Result<(), VeError> {
        let Some(d) = ve.disk.as_ref() else {
            return Err(refuse(
                Setting::DiskSpace,
                format!("the VE has no private area (create it with {PREFIX}diskspace)"),
            ));
        };
        if let Some(l) = self.disk_space {
            if l.hard < d.space.1 {
                return Err(refuse(
                    Setting::DiskSpace,
                    format!(
                        "{} is below the current hard limit {}: a running VE's area can only grow",
                        l.hard, d.space.1
                    ),
                ));
            }
        }
        if let Some(l) = self.disk_inodes {
            let total = disk::usage(d).map(|u| u.3).unwrap_or(0);
            if l.hard != total && Some(l.hard) != d.inodes.map(|i| i.1) {
                return Err(refuse(
                    Setting::DiskInodes,
                    format!(
                        "the inode count is fixed when the image is made ({total} now); it grows with diskspace"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The network part: addresses and routes inside and on the host (the VE of `pid`).
    pub fn apply_net(&self, ve: &mut VeRecord, pid: i32) -> Result<(), VeError> {
        if !self.net_changes() {
            return Ok(());
        }
        let Some(rec) = ve.net.as_mut() else {
            return Ok(());
        };
        let c = net::Changes {
            add: &self.add,
            del: &self.del,
            routes_add: &self.routes_add,
            routes_del: &self.routes_del,
        };
        net::change(rec, pid, c).map_err(net_error)
    }

    /// Puts back what [`Plan::apply_net`] changed: the removed addresses (with their
    /// prefixes, as `removed` recorded them) and routes come back, the added ones go.
    pub fn undo_net(&self, ve: &mut VeRecord, pid: i32, removed: &[Addr]) -> Result<(), VeError> {
        let Some(rec) = ve.net.as_mut() else {
            return Ok(());
        };
        let added: Vec<IpAddr> = self.add.iter().map(|a| a.ip).collect();
        let c = net::Changes {
            add: removed,
            del: &added,
            routes_add: &self.routes_del,
            routes_del: &self.routes_add,
        };
        net::change(rec, pid, c).map_err(net_error)
    }

    /// The private area's new limits.
    pub fn apply_disk(&self, ve: &mut VeRecord) -> Result<(), VeError> {
        if let (Some(l), Some(d)) = (self.disk_space, ve.disk.as_mut()) {
            disk::grow(d, l.hard)?;
            d.space.0 = l.soft;
        }
        if let (Some(l), Some(d)) = (self.disk_inodes, ve.disk.as_mut()) {
            d.inodes = Some((l.soft, l.hard));
        }
        Ok(())
    }

    /// Sets the hostname of the VE of `pid`.
    pub fn apply_hostname(name: &str, ve: &mut VeRecord, pid: i32) -> Result<(), VeError> {
        set_hostname(pid, name)?;
        ve.hostname = Some(name.to_string());
        Ok(())
    }

    /// The VE's resolv.conf as it is now (`None`: it has none).
    /// Either file is the VE's to write (vzrun's own is bound into it read-write), so
    /// only a regular file is read, and only up to [`SMALL_FILE_MAX`].
    pub fn read_resolv_conf(ve: &VeRecord, pid: i32) -> Result<Option<Vec<u8>>, VeError> {
        use crate::sys::fs::{read_at_most, SMALL_FILE_MAX};
        let what = Path::new("/etc/resolv.conf");
        let opened = match vzrun_resolv_conf(ve) {
            Some(host) => std::fs::File::open(host).and_then(|f| {
                if f.metadata()?.is_file() {
                    Ok(f)
                } else {
                    Err(std::io::Error::other("not a regular file"))
                }
            }),
            None => open_resolv_conf_in_ve(pid, false),
        };
        let read = match opened {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            opened => opened.and_then(|f| read_at_most(f, SMALL_FILE_MAX, what)),
        };
        read.map(Some).map_err(|e| {
            refuse(
                Setting::Nameserver,
                format!("read the VE's resolv.conf: {e}"),
            )
        })
    }

    /// Writes the VE's resolv.conf (`None`: removes the one the VE had not had).
    pub fn apply_resolv_conf(text: Option<&[u8]>, ve: &VeRecord, pid: i32) -> Result<(), VeError> {
        use std::io::Write;
        let written = match (vzrun_resolv_conf(ve), text) {
            // Rewritten in place: the VE sees this inode through a bind mount.
            (Some(host), Some(t)) => std::fs::write(host, t),
            (Some(host), None) => std::fs::remove_file(host),
            (None, Some(t)) => open_resolv_conf_in_ve(pid, true).and_then(|mut f| f.write_all(t)),
            (None, None) => remove_resolv_conf_in_ve(pid),
        };
        written.map_err(|e| refuse(Setting::Nameserver, format!("write resolv.conf: {e}")))
    }
}

/// vzrun's own resolv.conf of a VE with vzrun networking, bound over its /etc/resolv.conf.
fn vzrun_resolv_conf(ve: &VeRecord) -> Option<&Path> {
    ve.net.as_ref().and_then(|n| n.resolv_conf.as_deref())
}

/// The VE's own /etc/resolv.conf, resolved inside the VE: a symbolic link the VE made
/// there points within the VE, never onto the host (through /proc/PID/root the host's
/// root would be its target), and only a regular file is opened (a FIFO would hang the
/// command, a device node's driver would be opened by root).
fn open_resolv_conf_in_ve(pid: i32, write: bool) -> std::io::Result<std::fs::File> {
    use nix::fcntl::{OFlag, ResolveFlag};
    let root = std::fs::File::open(format!("/proc/{pid}/root"))?;
    let flags = if write {
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC
    } else {
        OFlag::O_RDONLY
    };
    crate::sys::fs::open_regular_at(
        &root,
        Path::new("etc/resolv.conf"),
        flags,
        nix::sys::stat::Mode::from_bits_truncate(0o644),
        ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS,
    )
}

fn remove_resolv_conf_in_ve(pid: i32) -> std::io::Result<()> {
    use nix::fcntl::{OFlag, ResolveFlag};
    let root = std::fs::File::open(format!("/proc/{pid}/root"))?;
    let etc = crate::sys::fs::open_at(
        &root,
        Path::new("etc"),
        OFlag::O_PATH | OFlag::O_DIRECTORY,
        nix::sys::stat::Mode::empty(),
        ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS,
    )?;
    use std::os::fd::AsRawFd;
    match nix::unistd::unlinkat(
        Some(etc.as_raw_fd()),
        "resolv.conf",
        nix::unistd::UnlinkatFlags::NoRemoveDir,
    ) {
        Ok(()) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// ram, swap and memguarantee belong together: OCI's swap is memory plus swap and the
/// guarantee a share of ram, so a change to one carries the VE's others along (otherwise
/// raising ram alone would leave memory+swap below it, which the kernel refuses).
fn fill_memory(res: &mut ResourceConfig, now: &Current) -> Result<(), VeError> {
    let limited = |v: Option<i64>| v.filter(|b| *b >= 0).map(|b| b as u64);
    if res.ram.is_none() && (res.swap.is_some() || res.memguarantee.is_some()) {
        res.ram = Some(limited(now.ram));
        if res.memguarantee.is_some() && !matches!(res.ram, Some(Some(_))) {
            return Err(refuse(
                Setting::Resource("memguarantee"),
                "needs a limited ram",
            ));
        }
    }
    let Some(ram) = res.ram else {
        return Ok(());
    };
    if res.swap.is_none() && ram.is_some() {
        if let (Some(r), Some(s)) = (limited(now.ram), limited(now.memsw)) {
            res.swap = Some(Some(s.saturating_sub(r)));
        }
    }
    if res.memguarantee.is_none() && ram.is_some() {
        if let Some(g) = now.settings.get(&format!("{PREFIX}memguarantee")) {
            // Checked when it was set; one that no longer parses is left as it is.
            let mut c = ResourceConfig::default();
            if c.set("memguarantee", g).is_ok() {
                res.memguarantee = c.memguarantee;
            }
        }
    }
    Ok(())
}

/// Applies `c` to the saved settings of a stopped system VE (keys without the prefix)
/// and its hostname, checking each value as `ve set` on a running VE does, then all of
/// them together as its next start will; nothing is changed on an error.
pub fn change_settings(
    c: &Changes,
    settings: &mut BTreeMap<String, String>,
    hostname: &mut Option<String>,
) -> Result<(), VeError> {
    let annotations = |s: &BTreeMap<String, String>| -> HashMap<String, String> {
        s.iter()
            .map(|(k, v)| (format!("{PREFIX}{k}"), v.clone()))
            .collect()
    };
    let mut new = settings.clone();
    let old_net = net::NetConfig::parse(&annotations(settings))?;
    let mode = old_net.as_ref().map(|n| n.mode).unwrap_or_default();
    let (ips, routes, rules) = old_net
        .map(|n| (n.ips, n.routes, n.rules))
        .unwrap_or_default();
    let current: Vec<IpAddr> = ips.iter().map(|a| a.ip).collect();
    let add = net::parse_ips(mode, &c.ipadd, &current).map_err(|e| refuse(Setting::IpAdd, e))?;
    let del = addresses_to_remove(&c.ipdel, &current)?;
    let routes_add = parse_routes(&c.route_add, Setting::RouteAdd)?;
    let routes_del = parse_routes(&c.route_del, Setting::RouteDel)?;
    for r in &routes_del {
        if !routes.iter().any(|x| x.text == r.text) {
            return Err(refuse(
                Setting::RouteDel,
                format!("{:?} is not a route of this VE", r.text),
            ));
        }
    }
    check_removals(&del, &current, &routes, &routes_del, &rules)?;
    if c.net_given() {
        let kept = ips.iter().filter(|a| !del.contains(&a.ip));
        let list: Vec<String> = kept
            .chain(add.iter())
            .map(|a| address_text(mode, a))
            .collect();
        put(
            &mut new,
            "net.ip",
            (!list.is_empty()).then(|| list.join(",")),
        );
        let kept = routes
            .iter()
            .filter(|r| !routes_del.iter().any(|d| d.text == r.text));
        let list: Vec<&str> = kept
            .chain(routes_add.iter())
            .map(|r| r.text.as_str())
            .collect();
        put(
            &mut new,
            "net.routes",
            (!list.is_empty()).then(|| list.join("; ")),
        );
    }
    net::check_nameservers(&c.nameserver).map_err(|e| refuse(Setting::Nameserver, e))?;
    net::check_searchdomains(&c.searchdomain).map_err(|e| refuse(Setting::Searchdomain, e))?;
    if let Some(h) = &c.hostname {
        check_hostname(h).map_err(|e| refuse(Setting::Hostname, e))?;
    }
    parse_resources(c)?;
    for (k, v, setting, count) in [
        ("diskspace", &c.diskspace, Setting::DiskSpace, false),
        ("diskinodes", &c.diskinodes, Setting::DiskInodes, true),
    ] {
        if let Some(v) = v {
            disk::parse_limit(v, count).map_err(|e| refuse(setting, e))?;
            new.insert(k.to_string(), v.clone());
        }
    }
    for (k, v) in given_values(c) {
        new.insert(k.to_string(), v);
    }
    // Together, as the next start reads them (swap needs ram, a veth address a bridge…).
    let parsed = VeConfig::parse(&annotations(&new)).map_err(|e| match e {
        VeError::Annotation { key, problem } => match setting_of(c, &key) {
            Some(s) => refuse(s, format!("{key}: {problem}")),
            None => VeError::Annotation { key, problem },
        },
        other => other,
    })?;
    // An address the host could not give the VE is refused now rather than at start.
    if let Some(mut n) = parsed.net.filter(|_| !add.is_empty()) {
        n.ips = add;
        net::preflight(&n).map_err(net_error)?;
    }
    *settings = new;
    if let Some(h) = &c.hostname {
        *hostname = Some(h.clone());
    }
    Ok(())
}

fn put(s: &mut BTreeMap<String, String>, key: &str, value: Option<String>) {
    match value {
        Some(v) => s.insert(key.to_string(), v),
        None => s.remove(key),
    };
}

/// An address as `net.ip` lists it: a venet address alone, a veth one with its prefix.
fn address_text(mode: Mode, a: &Addr) -> String {
    match mode {
        Mode::Venet => a.ip.to_string(),
        Mode::Veth => a.to_string(),
    }
}

/// The setting given by the flag that set the annotation `key`, if one did.
fn setting_of(c: &Changes, key: &str) -> Option<Setting> {
    let name = key.strip_prefix(PREFIX)?;
    if let Some((n, _)) = c.resources.iter().find(|(n, _)| *n == name) {
        return Some(Setting::Resource(n));
    }
    match name {
        "net.ip" if !c.ipadd.is_empty() => Some(Setting::IpAdd),
        "net.ip" if !c.ipdel.is_empty() => Some(Setting::IpDel),
        "net.routes" if !c.route_add.is_empty() => Some(Setting::RouteAdd),
        "net.nameserver" if !c.nameserver.is_empty() => Some(Setting::Nameserver),
        "net.searchdomain" if !c.searchdomain.is_empty() => Some(Setting::Searchdomain),
        "diskspace" if c.diskspace.is_some() => Some(Setting::DiskSpace),
        "diskinodes" if c.diskinodes.is_some() => Some(Setting::DiskInodes),
        _ => None,
    }
}

/// The settings given as values (not addresses and routes), by key without the prefix.
fn given_values(c: &Changes) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if !c.nameserver.is_empty() {
        out.push(("net.nameserver", c.nameserver.join(",")));
    }
    if !c.searchdomain.is_empty() {
        out.push(("net.searchdomain", c.searchdomain.join(",")));
    }
    if let Some(v) = &c.diskspace {
        out.push(("diskspace", v.clone()));
    }
    if let Some(v) = &c.diskinodes {
        out.push(("diskinodes", v.clone()));
    }
    out.extend(c.resources.iter().cloned());
    out
}

/// What `--save` writes after a change to a running VE, by key without the prefix
/// (`None`: remove the key): the values given, and the VE's addresses and routes as they
/// now are when they changed.
pub fn saved_values(c: &Changes, ve: &VeRecord) -> Vec<(String, Option<String>)> {
    let mut out: Vec<(String, Option<String>)> = Vec::new();
    if let (true, Some(n)) = (c.net_given(), &ve.net) {
        let ips: Vec<String> = n.ips.iter().map(|a| address_text(n.mode, a)).collect();
        out.push(("net.ip".into(), Some(ips.join(","))));
        let routes: Vec<&str> = n.routes.iter().map(|r| r.text.as_str()).collect();
        out.push((
            "net.routes".into(),
            (!routes.is_empty()).then(|| routes.join("; ")),
        ));
    }
    out.extend(
        given_values(c)
            .into_iter()
            .map(|(k, v)| (k.to_string(), Some(v))),
    );
    out
}

/// Puts saved values into an annotation map (keys with the prefix).
pub fn put_annotations(
    map: &mut serde_json::Map<String, Value>,
    values: &[(String, Option<String>)],
) {
    for (k, v) in values {
        let key = format!("{PREFIX}{k}");
        match v {
            Some(v) => map.insert(key, json!(v)),
            None => map.remove(&key),
        };
    }
}

/// After a failed step: what was put back and what could not be, each named by `name`.
pub fn undo_summary_with(
    put_back: &[Setting],
    left: &[(Setting, String)],
    name: impl Fn(Setting) -> String,
) -> String {
    let mut out = String::new();
    if put_back.is_empty() && left.is_empty() {
        out.push_str("; nothing had been changed");
    }
    if !put_back.is_empty() {
        let names: Vec<String> = put_back.iter().map(|s| name(*s)).collect();
        out.push_str(&format!("; put back as it was: {}", names.join(", ")));
    }
    for (s, why) in left {
        out.push_str(&format!("; could not put back {}: {why}", name(*s)));
    }
    out
}

pub fn undo_summary(put_back: &[Setting], left: &[(Setting, String)]) -> String {
    undo_summary_with(put_back, left, |s| s.to_string())
}

/// A hostname as a VE may have it.
pub fn check_hostname(h: &str) -> Result<(), String> {
    if h.is_empty()
        || h.len() > 64
        || !h
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return Err(format!("{h:?} is not a valid hostname"));
    }
    Ok(())
}

fn set_hostname(pid: i32, name: &str) -> Result<(), VeError> {
    // A VE in the host's UTS namespace (a spec without one, like a hostNetwork pod) has
    // the host's hostname: `ve set` must not change the host's.
    if !crate::sys::process::own_namespace(pid, "uts") {
        return Err(refuse(
            Setting::Hostname,
            "the VE shares the host's UTS namespace: its hostname is the host's",
        ));
    }
    let path = format!("/proc/{pid}/ns/uts");
    let file = std::fs::File::open(&path)
        .map_err(|e| refuse(Setting::Hostname, format!("open {path}: {e}")))?;
    let name = name.to_string();
    std::thread::spawn(move || -> Result<(), VeError> {
        use std::os::fd::AsFd;
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWUTS).map_err(|e| {
            refuse(
                Setting::Hostname,
                format!("enter the VE's UTS namespace: {e}"),
            )
        })?;
        nix::unistd::sethostname(&name).map_err(|e| refuse(Setting::Hostname, e.to_string()))
    })
    .join()
    .map_err(|_| refuse(Setting::Hostname, "worker panicked"))?
}

/// Writes the changed settings into an application bundle's annotations, so the next
/// create has them.
pub fn save_to_bundle(bundle: &Path, c: &Changes, ve: &VeRecord) -> Result<(), VeError> {
    let path = bundle.join("config.json");
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        refuse(Setting::Save, format!("{what} {}: {e}", path.display()))
    };
    let data = std::fs::read(&path).map_err(|e| fail("read", &e))?;
    let mut spec: Value = serde_json::from_slice(&data).map_err(|e| fail("parse", &e))?;
    let Some(obj) = spec.as_object_mut() else {
        return Err(refuse(Setting::Save, "config.json is not an object"));
    };
    let ann = obj.entry("annotations").or_insert_with(|| json!({}));
    if let Some(map) = ann.as_object_mut() {
        put_annotations(map, &saved_values(c, ve));
    }
    if let Some(h) = &c.hostname {
        spec["hostname"] = json!(h);
    }
    let tmp = path.with_extension("json.vzrun-tmp");
    let text = serde_json::to_vec_pretty(&spec).map_err(|e| fail("serialise", &e))?;
    std::fs::write(&tmp, text).map_err(|e| fail("write", &e))?;
    std::fs::rename(&tmp, &path).map_err(|e| fail("replace", &e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ve set` and the annotations accept and refuse the same addresses.
    #[test]
    fn addresses_parse_as_the_annotation_does() {
        let ve = VeRecord::default();
        let plan = |ips: &[&str]| {
            let c = Changes {
                ipadd: ips.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            };
            Plan::parse(&c, &ve, &Current::default())
        };
        let p = plan(&["198.51.100.5/24"]);
        // No vzrun network on this VE: refused, naming the setting.
        assert!(matches!(
            p,
            Err(VeError::Setting {
                setting: Setting::IpAdd,
                ..
            })
        ));
        for bad in ["banana", "198.51.100.300", "198.51.100.1/33"] {
            let e = plan(&[bad]).unwrap_err().to_string();
            let ann = net::NetConfig::parse(&super::super::test_annotations(&[("net.ip", bad)]))
                .unwrap_err()
                .to_string();
            let problem = ann.split_once(": ").map(|x| x.1).unwrap_or_default();
            assert!(e.ends_with(problem), "{bad}: {e} vs {ann}");
        }
        let twice = plan(&["198.51.100.5", "198.51.100.5"]).unwrap_err();
        assert!(twice.to_string().contains("listed twice"), "{twice}");
    }

    /// Raising ram on a VE with swap carries the swap along (memory+swap first), and
    /// the guarantee follows ram.
    #[test]
    fn ram_carries_swap_and_guarantee() {
        let now = Current {
            ram: Some(256 << 20),
            memsw: Some(384 << 20),
            settings: super::super::test_annotations(&[("memguarantee", "50")]),
            ..Default::default()
        };
        let c = Changes {
            resources: vec![("ram", "512M".into())],
            ..Default::default()
        };
        let p = Plan::parse(&c, &VeRecord::default(), &now).unwrap();
        let m = p.resources.unwrap().to_oci(None).memory().unwrap();
        assert_eq!(m.limit(), Some(512 << 20));
        assert_eq!(m.swap(), Some(640 << 20));
        assert_eq!(m.reservation(), Some(256 << 20));
    }

    fn settings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_stopped_ves_settings_change_as_a_running_ones() {
        let mut s = settings(&[
            ("net.ip", "198.51.100.10,198.51.100.11"),
            ("net.routes", "203.0.113.0/24 src 198.51.100.10"),
            ("ram", "256M"),
        ]);
        let mut host = None;
        let c = Changes {
            ipdel: vec!["198.51.100.11".into()],
            route_add: vec!["203.0.113.128/25 mtu 1400".into()],
            resources: vec![("ram", "512M".into()), ("numproc", "100".into())],
            nameserver: vec!["198.51.100.53".into()],
            hostname: Some("web".into()),
            save: true,
            ..Default::default()
        };
        change_settings(&c, &mut s, &mut host).unwrap();
        assert_eq!(s["net.ip"], "198.51.100.10");
        assert_eq!(
            s["net.routes"],
            "203.0.113.0/24 src 198.51.100.10; 203.0.113.128/25 mtu 1400"
        );
        assert_eq!((s["ram"].as_str(), s["numproc"].as_str()), ("512M", "100"));
        assert_eq!(s["net.nameserver"], "198.51.100.53");
        assert_eq!(host.as_deref(), Some("web"));
        // A routed address, a bad value, a lone swap: refused, nothing changed.
        let before = s.clone();
        for (c, words) in [
            (
                Changes {
                    ipdel: vec!["198.51.100.10".into()],
                    ..Default::default()
                },
                "source address of the VE's route",
            ),
            (
                Changes {
                    resources: vec![("numproc", "100".into()), ("cpuunits", "5".into())],
                    ..Default::default()
                },
                "out of range",
            ),
            (
                Changes {
                    route_del: vec!["192.0.2.0/24".into()],
                    ..Default::default()
                },
                "not a route of this VE",
            ),
        ] {
            let e = change_settings(&c, &mut s, &mut host)
                .unwrap_err()
                .to_string();
            assert!(e.contains(words), "{e}");
            assert_eq!(s, before);
        }
        // Removed with its route, the address may go.
        let c = Changes {
            ipdel: vec!["198.51.100.10".into()],
            route_del: vec!["203.0.113.0/24 src 198.51.100.10".into()],
            ..Default::default()
        };
        change_settings(&c, &mut s, &mut host).unwrap();
        assert!(!s.contains_key("net.ip"), "{s:?}");
        assert_eq!(s["net.routes"], "203.0.113.128/25 mtu 1400");
    }

    #[test]
    fn rules_keep_their_address() {
        let rule = |t: &str| {
            net::NetConfig::parse(&super::super::test_annotations(&[
                ("net.ip", "198.51.100.1"),
                ("net.rules", t),
            ]))
            .unwrap()
            .unwrap()
            .rules
        };
        let a: IpAddr = "198.51.100.10".parse().unwrap();
        let b: IpAddr = "198.51.100.11".parse().unwrap();
        let one = rule("from 198.51.100.10 table 100");
        assert!(address_in_use(a, &[b], &[], &[], &one).is_err());
        assert!(address_in_use(b, &[a], &[], &[], &one).is_ok());
        let net = rule("from 198.51.100.0/24 table 100");
        assert!(
            address_in_use(a, &[b], &[], &[], &net).is_ok(),
            "b still matches"
        );
        assert!(address_in_use(a, &[], &[], &[], &net).is_err());
    }
}
