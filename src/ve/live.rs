//! Changes to a running VE (what `ve set` asks for), read by the same parsers as the
//! annotations, so that a value one path accepts the other accepts too: the addresses
//! as `net.ip` lists them, routes as `net.routes`, name servers as `net.nameserver`,
//! resources as their annotations, disk limits as `diskspace`/`diskinodes`. Everything is
//! parsed and checked into a [`Plan`] before anything changes; the runtime applies it.
//! Errors name the [`Setting`]; the command maps a setting to its flag.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::disk::{self, Limit};
use super::net::{self, Addr, Mode, NetError, RouteSpec};
use super::resources::ResourceConfig;
use super::{VeError, VeRecord, PREFIX};

/// One thing `ve set` can change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    IpAdd,
    IpDel,
    RouteAdd,
    RouteDel,
    Hostname,
    Nameserver,
    /// A resource, by its annotation (and vzctl) name.
    Resource(&'static str),
    DiskSpace,
    DiskInodes,
    /// Writing the new values back into the bundle.
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
            Setting::Resource(name) => name,
            Setting::DiskSpace => "diskspace",
            Setting::DiskInodes => "diskinodes",
            Setting::Save => "saving to the bundle",
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
    /// Also write the new values into the bundle's annotations.
    pub save: bool,
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
    /// The resources given (with `ram` filled in from the VE when swap or memguarantee
    /// need it); `None` when none was.
    pub resources: Option<ResourceConfig>,
    pub disk_space: Option<Limit>,
    pub disk_inodes: Option<Limit>,
}

impl Plan {
    pub fn net_changes(&self) -> bool {
        !self.add.is_empty()
            || !self.del.is_empty()
            || !self.routes_add.is_empty()
            || !self.routes_del.is_empty()
    }

    /// Parses `c` for the VE recorded as `ve`; `current_ram` reads the VE's memory limit
    /// (`None`: unlimited), asked only when swap or memguarantee is given without ram.
    pub fn parse(
        c: &Changes,
        ve: &VeRecord,
        current_ram: &mut dyn FnMut() -> Result<Option<u64>, VeError>,
    ) -> Result<Plan, VeError> {
        let mut p = Plan::default();
        let mode = ve.net.as_ref().map(|n| n.mode).unwrap_or_default();
        let current: Vec<IpAddr> = ve
            .net
            .as_ref()
            .map(|n| n.ips.iter().map(|a| a.ip).collect())
            .unwrap_or_default();
        p.add = net::parse_ips(mode, &c.ipadd, &current).map_err(|e| refuse(Setting::IpAdd, e))?;
        for d in &c.ipdel {
            if d == "all" {
                p.del.extend(current.iter().copied());
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
            p.del.push(ip);
        }
        for (texts, out, setting) in [
            (&c.route_add, &mut p.routes_add, Setting::RouteAdd),
            (&c.route_del, &mut p.routes_del, Setting::RouteDel),
        ] {
            for r in texts {
                out.push(net::parse_route(r).map_err(|e| refuse(setting, e))?);
            }
        }
        if p.net_changes() && ve.net.is_none() {
            return Err(refuse(
                Setting::IpAdd,
                format!("the VE was created without vzrun networking (set {PREFIX}net.ip)"),
            ));
        }
        net::check_nameservers(&c.nameserver).map_err(|e| refuse(Setting::Nameserver, e))?;
        if !c.nameserver.is_empty() || !c.searchdomain.is_empty() {
            let cfg = net::NetConfig {
                nameservers: (!c.nameserver.is_empty()).then(|| c.nameserver.clone()),
                searchdomains: (!c.searchdomain.is_empty()).then(|| c.searchdomain.clone()),
                ..Default::default()
            };
            p.resolv_conf = Some(net::resolv_conf(&cfg).unwrap_or_default());
        }
        if let Some(h) = &c.hostname {
            check_hostname(h).map_err(|e| refuse(Setting::Hostname, e))?;
            p.hostname = Some(h.clone());
        }
        if !c.resources.is_empty() {
            let mut res = ResourceConfig::default();
            for (name, value) in &c.resources {
                res.set(name, value)
                    .map_err(|e| refuse(Setting::Resource(name), e))?;
            }
            if (res.swap.is_some() || res.memguarantee.is_some()) && res.ram.is_none() {
                // swap and memguarantee are relative to ram: take the VE's current limit.
                res.ram = Some(current_ram()?);
                if res.memguarantee.is_some() && !matches!(res.ram, Some(Some(_))) {
                    return Err(refuse(
                        Setting::Resource("memguarantee"),
                        "needs a limited ram",
                    ));
                }
            }
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
        net::change(
            rec,
            pid,
            &self.add,
            &self.del,
            &self.routes_add,
            &self.routes_del,
        )
        .map_err(net_error)
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

    /// The hostname and resolv.conf of the VE of `pid`.
    pub fn apply_names(&self, ve: &mut VeRecord, pid: i32) -> Result<(), VeError> {
        if let Some(h) = &self.hostname {
            set_hostname(pid, h)?;
            ve.hostname = Some(h.clone());
        }
        if let Some(text) = &self.resolv_conf {
            let target = ve
                .net
                .as_ref()
                .and_then(|n| n.resolv_conf.clone())
                .unwrap_or_else(|| PathBuf::from(format!("/proc/{pid}/root/etc/resolv.conf")));
            // Rewritten in place: the VE sees this inode through a bind mount.
            std::fs::write(&target, text).map_err(|e| {
                refuse(
                    Setting::Nameserver,
                    format!("write {}: {e}", target.display()),
                )
            })?;
        }
        Ok(())
    }
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

/// Writes the VE's current settings back into the bundle's annotations, so the next
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
        if let Some(n) = &ve.net {
            let ips: Vec<String> = n
                .ips
                .iter()
                .map(|a| {
                    if n.mode == Mode::Venet {
                        a.ip.to_string()
                    } else {
                        a.to_string()
                    }
                })
                .collect();
            map.insert(format!("{PREFIX}net.ip"), json!(ips.join(",")));
            let routes: Vec<&str> = n.routes.iter().map(|r| r.text.as_str()).collect();
            if routes.is_empty() {
                map.remove(&format!("{PREFIX}net.routes"));
            } else {
                map.insert(format!("{PREFIX}net.routes"), json!(routes.join(";")));
            }
        }
        if !c.nameserver.is_empty() {
            map.insert(
                format!("{PREFIX}net.nameserver"),
                json!(c.nameserver.join(",")),
            );
        }
        if !c.searchdomain.is_empty() {
            map.insert(
                format!("{PREFIX}net.searchdomain"),
                json!(c.searchdomain.join(",")),
            );
        }
        let disk = [("diskspace", &c.diskspace), ("diskinodes", &c.diskinodes)];
        let given = disk
            .into_iter()
            .filter_map(|(k, v)| Some((k, v.as_ref()?)))
            .chain(c.resources.iter().map(|(k, v)| (*k, v)));
        for (name, value) in given {
            map.insert(format!("{PREFIX}{name}"), json!(value));
        }
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
        let mut no_ram = || Ok(None);
        let plan = |ips: &[&str], ram: &mut dyn FnMut() -> Result<Option<u64>, VeError>| {
            let c = Changes {
                ipadd: ips.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            };
            Plan::parse(&c, &ve, ram)
        };
        let p = plan(&["198.51.100.5/24"], &mut no_ram);
        // No vzrun network on this VE: refused, naming the setting.
        assert!(matches!(
            p,
            Err(VeError::Setting {
                setting: Setting::IpAdd,
                ..
            })
        ));
        for bad in ["banana", "198.51.100.300", "198.51.100.1/33"] {
            let e = plan(&[bad], &mut no_ram).unwrap_err().to_string();
            let ann = net::NetConfig::parse(&super::super::test_annotations(&[("net.ip", bad)]))
                .unwrap_err()
                .to_string();
            let problem = ann.split_once(": ").map(|x| x.1).unwrap_or_default();
            assert!(e.ends_with(problem), "{bad}: {e} vs {ann}");
        }
        let twice = plan(&["198.51.100.5", "198.51.100.5"], &mut no_ram).unwrap_err();
        assert!(twice.to_string().contains("listed twice"), "{twice}");
    }
}
