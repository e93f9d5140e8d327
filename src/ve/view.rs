//! What `ve show`, `ve stat` and `ve list` report about VEs, gathered from the runtime's
//! records and the kernel's counters; the commands only format it.

use std::collections::HashMap;

use libcontainer::container::ContainerStatus;
use serde::Serialize;
use serde_json::{json, Value};

use crate::runtime::error::{Error, Result};
use crate::runtime::root::Loaded;
use crate::runtime::state::{status_word, Record};
use crate::runtime::Runtime;
use crate::ve::resources::{beancounters_of, usage, Counter, Groups, ResourceConfig, Usage};

/// A field of `ve list` that does not exist.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("unknown field {0:?} (vzrun ve list -L lists them)")]
    UnknownField(String),
    #[error("unknown suffix in {0:?} (use .m .b .l .f)")]
    UnknownSuffix(String),
}

/// A VE's container and record, locked, for the `ve` verbs: its absence said in a VE's
/// words, naming it (runc's "container does not exist" is for runc's callers).
pub fn load_ve(rt: &Runtime, id: &str) -> Result<Loaded> {
    rt.root.load(id).map_err(|e| match e {
        Error::NotExist if crate::ve::system::lifecycle::existing(id).is_ok() => not_running(id),
        Error::NotExist => Error::State(format!("VE {id} does not exist")),
        other => other,
    })
}

/// The error for a VE whose container is not running, naming it.
pub fn not_running(id: &str) -> Error {
    Error::State(format!("VE {id} is not running"))
}

/// The `ve show` fields that come from the network; every other `io.vzrun.*` key is a
/// field of its own, named by the key.
const SHOWN_AS_NETWORK: &[&str] = &[
    "net.mode",
    "net.ip",
    "net.mac",
    "net.bridge",
    "net.routes",
    "net.rules",
    "net.nameserver",
    "net.searchdomain",
];

/// One VE's settings, as `ve show` prints them (field order is the table's): the network
/// as it is, for a running VE, and every other setting; for a stopped system VE, what its
/// ve.conf says.
pub fn show(rt: &Runtime, id: &str) -> Result<Value> {
    let system = crate::ve::system::lifecycle::existing(id).ok();
    // A system VE that is down (or whose init halted) shows what its next start uses;
    // any other container what it was made with.
    let loaded = match (load_ve(rt, id), &system) {
        (Ok(l), Some(dir)) if l.container.status() == ContainerStatus::Stopped => {
            drop(l);
            return show_stopped(id, dir);
        }
        (Ok(l), _) => l,
        (Err(_), Some(dir)) => return show_stopped(id, dir),
        (Err(e), None) => return Err(e),
    };
    let ve = &loaded.record.ve;
    let n = ve.net.clone().unwrap_or_default();
    // The VE's to write (bound into it read-write): read up to the same bound as ve set.
    let resolv = n
        .resolv_conf
        .as_ref()
        .and_then(|p| std::fs::File::open(p).ok())
        .and_then(|f| {
            use crate::sys::fs::{read_at_most, SMALL_FILE_MAX};
            read_at_most(f, SMALL_FILE_MAX, std::path::Path::new("/etc/resolv.conf")).ok()
        })
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let words = |key: &str| -> Vec<String> {
        resolv
            .lines()
            .filter_map(|l| l.strip_prefix(key))
            .flat_map(|r| r.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .collect()
    };
    let mut out = json!({
        "ctid": id,
        "status": status_word(loaded.container.status()),
        "template": system.as_ref().and_then(|d| crate::ve::system::VeConf::load(d).ok()).map(|c| c.template),
        "hostname": ve.hostname,
        "mode": if ve.net.is_some() { Some(n.mode) } else { None },
        "ip": n.ips.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "host_if": n.host_if,
        "ve_if": n.ve_if,
        "mac": n.mac,
        "bridge": n.bridge,
        "routes": n.routes.iter().map(|r| r.text.clone()).collect::<Vec<_>>(),
        "rules": n.rules.iter().map(rule_text).collect::<Vec<_>>(),
        "nameserver": words("nameserver"),
        "searchdomain": words("search"),
    });
    // The settings as the VE was made with them and `ve set` changed them since.
    let settings = crate::runtime::bundle::load_spec(&rt.root.ve_dir(id))
        .ok()
        .and_then(|s| s.annotations().clone())
        .unwrap_or_default();
    add_settings(&mut out, &settings);
    Ok(out)
}

fn rule_text(r: &crate::ve::net::RuleSpec) -> String {
    format!(
        "from {} table {}{}",
        r.from,
        r.table,
        r.priority
            .map(|p| format!(" priority {p}"))
            .unwrap_or_default()
    )
}

/// Every `io.vzrun.*` key not shown as network, as a field named by the key (null when
/// unset).
fn add_settings(out: &mut Value, annotations: &std::collections::HashMap<String, String>) {
    for k in crate::ve::keys::KEYS {
        if SHOWN_AS_NETWORK.contains(&k.name) {
            continue;
        }
        out[k.name] = annotations
            .get(&crate::ve::keys::full(k.name))
            .map_or(Value::Null, |v| json!(v));
    }
}

/// A stopped system VE's settings, from its ve.conf.
fn show_stopped(id: &str, dir: &std::path::Path) -> Result<Value> {
    let conf = crate::ve::system::VeConf::load(dir)?;
    let annotations = conf.annotations(dir);
    let n = crate::ve::net::NetConfig::parse(&annotations)?;
    let list = |key: &str| -> Vec<String> {
        conf.settings
            .get(key)
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = json!({
        "ctid": id,
        "status": "stopped",
        "template": conf.template,
        "hostname": conf.hostname,
        "mode": n.as_ref().map(|n| n.mode),
        "ip": n.as_ref().map(|n| n.ips.iter().map(|a| a.to_string()).collect::<Vec<_>>()).unwrap_or_default(),
        "host_if": null,
        "ve_if": null,
        "mac": conf.settings.get("net.mac"),
        "bridge": conf.settings.get("net.bridge"),
        "routes": n.as_ref().map(|n| n.routes.iter().map(|r| r.text.clone()).collect::<Vec<_>>()).unwrap_or_default(),
        "rules": n.as_ref().map(|n| n.rules.iter().map(rule_text).collect::<Vec<_>>()).unwrap_or_default(),
        "nameserver": list("net.nameserver"),
        "searchdomain": list("net.searchdomain"),
    });
    add_settings(&mut out, &annotations);
    Ok(out)
}

/// A limit as every table prints it (`ve stat`, `ve list`, `ve show`): the number, or
/// `unlimited` for `None`. JSON says `null`, Prometheus `+Inf` (docs/json.md).
pub fn limit_text(limit: Option<u64>) -> String {
    limit.map_or_else(|| "unlimited".to_string(), |n| n.to_string())
}

/// The beancounters vzrun keeps, in vzlist's order.
pub const BEANCOUNTERS: [&str; 7] = [
    "physpages",
    "swappages",
    "kmemsize",
    "numproc",
    "numfile",
    "diskspace",
    "diskinodes",
];

/// Fields of `ve list` that are not beancounters, with what they show (for `-L`).
pub const PLAIN_FIELDS: [(&str, &str); 5] = [
    ("ctid", "the VE's ID"),
    ("status", "running, paused, created or stopped"),
    ("ip", "the VE's addresses"),
    ("hostname", "the VE's hostname"),
    (
        "procview",
        "what the VE's /proc shows: host, virtual, or lost when the LXCFS behind it died",
    ),
];

/// Beancounter suffixes (vzlist's) and the column each picks.
pub const SUFFIXES: [(&str, &str); 5] = [
    ("", "held"),
    (".m", "maxheld"),
    (".b", "barrier"),
    (".l", "limit"),
    (".f", "failcnt"),
];

/// vzctl's short names for two beancounters.
fn canonical(name: &str) -> &str {
    match name {
        "ram" => "physpages",
        "swap" => "swappages",
        n => n,
    }
}

/// A VE's beancounters, serialized as an object keyed by resource, in vzlist's order.
#[derive(Debug, Clone, Default)]
pub struct Beancounters(pub Vec<Counter>);

impl Serialize for Beancounters {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for c in &self.0 {
            m.serialize_entry(&c.resource, c)?;
        }
        m.end()
    }
}

/// One VE as `ve list -j`, `ve stat --json` and `ve stat --all --json` print it (the
/// schema is docs/json.md's; the table and Prometheus outputs are drawn from it too).
#[derive(Debug, Clone, Serialize)]
pub struct VeView {
    pub ctid: String,
    pub status: String,
    pub hostname: Option<String>,
    pub ip: Vec<String>,
    /// What the VE's /proc shows (`host`, `virtual`, `lost`); `None` for a stopped VE.
    pub procview: Option<&'static str>,
    pub beancounters: Beancounters,
    pub usage: Usage,
}

impl VeView {
    /// The value of one `ve list` field (`-o`/`-s`): `null` is unlimited (or no hostname).
    pub fn field(&self, field: &str) -> Result<Value, ViewError> {
        Ok(match field {
            "ctid" => json!(self.ctid),
            "status" => json!(self.status),
            "ip" => json!(self.ip),
            "hostname" => json!(self.hostname),
            "procview" => json!(self.procview),
            other => {
                let (name, suffix) = match other.split_once('.') {
                    Some((n, s)) => (n, s),
                    None => (other, ""),
                };
                let name = canonical(name);
                if !BEANCOUNTERS.contains(&name) {
                    return Err(ViewError::UnknownField(other.to_string()));
                }
                let c = self.beancounters.0.iter().find(|c| c.resource == name);
                match (c, suffix) {
                    (_, s) if !["", "m", "b", "l", "f"].contains(&s) => {
                        return Err(ViewError::UnknownSuffix(other.to_string()))
                    }
                    (None, _) => Value::Null,
                    (Some(c), "") => json!(c.held),
                    (Some(c), "m") => json!(c.maxheld),
                    (Some(c), "b") => json!(c.barrier),
                    (Some(c), "l") => json!(c.limit),
                    (Some(c), _) => json!(c.failcnt),
                }
            }
        })
    }
}

/// What a list has to read for each running VE: a table reads what its columns show,
/// JSON everything. With hundreds of VEs the reads a column does not need (every
/// process's fd table for numfile, the private area's statfs, the mount table for
/// procview) are most of a `ve list`'s time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    pub groups: Groups,
    pub usage: bool,
    pub procview: bool,
}

impl Need {
    pub const ALL: Need = Need {
        groups: Groups::ALL,
        usage: true,
        procview: true,
    };

    /// What the `ve list` fields (already checked) need.
    pub fn fields<'a>(fields: impl IntoIterator<Item = &'a str>) -> Need {
        let mut need = Need {
            groups: Groups::NONE,
            usage: false,
            procview: false,
        };
        for f in fields {
            let name = canonical(f.split('.').next().unwrap_or(f));
            need.procview |= name == "procview";
            need.groups = need.groups.with(name);
        }
        need
    }
}

/// Checks that `field` names a `ve list` field.
pub fn check_field(field: &str) -> Result<(), ViewError> {
    VeView {
        ctid: String::new(),
        status: String::new(),
        hostname: None,
        ip: Vec::new(),
        procview: None,
        beancounters: Beancounters::default(),
        usage: Usage::default(),
    }
    .field(field)
    .map(|_| ())
}

fn running_view(id: &str, status: &str, pid: i32, rec: &Record, need: Need) -> VeView {
    VeView {
        ctid: id.to_string(),
        status: status.to_string(),
        hostname: rec.ve.hostname.clone(),
        ip: rec
            .ve
            .net
            .as_ref()
            .map(|n| n.ips.iter().map(|a| a.ip.to_string()).collect())
            .unwrap_or_default(),
        // Read from the VE's own mount table, so only for a live init; against the LXCFS
        // the VE was given.
        procview: need.procview.then(|| {
            let dir = rec.ve.proc_view.as_ref().map(|b| b.dir.clone());
            let dir = dir.unwrap_or_else(crate::ve::proc_view::lxcfs_dir);
            crate::ve::proc_view::seen_by(pid, &dir).word()
        }),
        beancounters: Beancounters(beancounters_of(pid, &rec.ve, need.groups)),
        usage: if need.usage {
            usage(pid)
        } else {
            Usage::default()
        },
    }
}

/// The view of a VE that has not stopped.
pub fn stat(rt: &Runtime, id: &str) -> Result<VeView> {
    let loaded = load_ve(rt, id)?;
    if loaded.container.status() == ContainerStatus::Stopped {
        return Err(not_running(id));
    }
    let pid = loaded.container.pid().ok_or_else(|| not_running(id))?;
    let status = status_word(loaded.container.status());
    Ok(running_view(
        id,
        status,
        pid.as_raw(),
        &loaded.record,
        Need::ALL,
    ))
}

/// The views of every VE under the root that has not stopped, by ID (sorted); VEs that
/// stop or go away while being read are left out.
pub fn stat_all(rt: &Runtime) -> Vec<VeView> {
    let mut out: Vec<VeView> = list(rt, Which::Running, &[], Need::ALL);
    out.sort_by(|a, b| a.ctid.cmp(&b.ctid));
    out
}

/// The limits a stopped VE's config gives it, as beancounters holding nothing: what it
/// would run with, read from the same annotations a start applies.
fn configured(config: &Value) -> Vec<Counter> {
    let annotations: HashMap<String, String> = config["annotations"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let res = ResourceConfig::parse(&annotations)
        .ok()
        .flatten()
        .unwrap_or_default();
    let disk = crate::ve::disk::DiskConfig::parse(&annotations)
        .ok()
        .flatten();
    let row = |name: &str, barrier: Option<u64>, limit: Option<u64>| Counter {
        resource: name.to_string(),
        held: 0,
        maxheld: 0,
        barrier,
        limit,
        failcnt: 0,
    };
    let page = |b: u64| b / 4096;
    let ram = res.ram.flatten();
    let guarantee = match (ram, res.memguarantee) {
        (Some(r), Some(pct)) => Some(r * pct / 100),
        _ => ram,
    };
    let swap = res.swap.flatten().map(page);
    // Without io.vzrun.numfile the spec's own RLIMIT_NOFILE holds.
    let nofile = config["process"]["rlimits"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["type"] == "RLIMIT_NOFILE"))
        .map(|r| (r["soft"].as_u64(), r["hard"].as_u64()));
    let (nf_soft, nf_hard) = match (res.numfile, nofile) {
        (Some(n), _) => (Some(n), Some(n)),
        (None, Some(pair)) => pair,
        (None, None) => (None, None),
    };
    vec![
        row("physpages", guarantee.map(page), ram.map(page)),
        row("swappages", swap, swap),
        row("kmemsize", None, None),
        row("numproc", res.numproc.flatten(), res.numproc.flatten()),
        row("numfile", nf_soft, nf_hard),
        row(
            "diskspace",
            disk.as_ref().map(|d| d.space.soft / 1024),
            disk.as_ref().map(|d| d.space.hard / 1024),
        ),
        row(
            "diskinodes",
            disk.as_ref().and_then(|d| d.inodes).map(|i| i.soft),
            disk.as_ref().and_then(|d| d.inodes).map(|i| i.hard),
        ),
    ]
}

/// A stopped system VE as its config describes it: nothing held, its configured limits.
fn stopped_view(id: &str, dir: &std::path::Path) -> VeView {
    let config: Value = std::fs::read(dir.join("config.json"))
        .ok()
        .and_then(|d| serde_json::from_slice(&d).ok())
        .unwrap_or(Value::Null);
    let ip: Vec<String> = config["annotations"]["io.vzrun.net.ip"]
        .as_str()
        .map(|s| {
            s.split(',')
                .map(|a| a.split('/').next().unwrap_or(a).trim().to_string())
                .filter(|a| !a.is_empty())
                .collect()
        })
        .unwrap_or_default();
    VeView {
        ctid: id.to_string(),
        status: "stopped".to_string(),
        hostname: config["hostname"].as_str().map(str::to_string),
        ip,
        procview: None,
        beancounters: Beancounters(configured(&config)),
        usage: Usage::default(),
    }
}

/// Which VEs `ve list` shows (vzlist: default running, `-a` all, `-S` stopped only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Running,
    All,
    Stopped,
}

/// `ve list`'s VEs: every container under the root that is not stopped, and the system
/// VEs that are not running; `ids`, when given, picks those (in any state `which` allows).
pub fn list(rt: &Runtime, which: Which, ids: &[String], need: Need) -> Vec<VeView> {
    let wanted = |id: &str| ids.is_empty() || ids.iter().any(|i| i == id);
    let mut views = Vec::new();
    let mut stopped_containers = Vec::new();
    for id in rt.root.ids() {
        if !wanted(&id) {
            continue;
        }
        let Ok((c, rec)) = rt.root.read(&id) else {
            continue;
        };
        match (c.status(), c.pid()) {
            (ContainerStatus::Stopped, _) | (_, None) => stopped_containers.push((id, rec)),
            (status, Some(pid)) if which != Which::Stopped => views.push(running_view(
                &id,
                status_word(status),
                pid.as_raw(),
                &rec,
                need,
            )),
            _ => {}
        }
    }
    if which == Which::Running {
        return views;
    }
    // A container whose process has gone: listed as vzlist lists a stopped CT, with the
    // limits it was created with.
    for (id, rec) in stopped_containers {
        let dir = crate::ve::system::ves_dir(&crate::ve::data_dir()).join(&id);
        let mut v = stopped_view(&id, &rec.bundle);
        if dir.join("config.json").exists() {
            v = stopped_view(&id, &dir);
        }
        v.hostname = v.hostname.or(rec.ve.hostname.clone());
        views.push(v);
    }
    let ves = crate::ve::system::ves_dir(&crate::ve::data_dir());
    let mut stopped: Vec<(String, std::path::PathBuf)> = std::fs::read_dir(&ves)
        .map(|rd| {
            rd.flatten()
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                .collect()
        })
        .unwrap_or_default();
    stopped.sort();
    for (id, dir) in stopped {
        if wanted(&id) && !rt.root.container_dir(&id).exists() && dir.join("config.json").exists() {
            views.push(stopped_view(&id, &dir));
        }
    }
    views
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_limits_of_a_stopped_ve() {
        let config = json!({
            "annotations": {
                "io.vzrun.ram": "64M", "io.vzrun.memguarantee": "50",
                "io.vzrun.numproc": "40", "io.vzrun.diskspace": "1G:2G"
            },
            "process": {"rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 4096}]}
        });
        let rows = configured(&config);
        let get = |n: &str| rows.iter().find(|r| r.resource == n).cloned().unwrap();
        assert_eq!(get("physpages").limit, Some(16384));
        assert_eq!(get("physpages").barrier, Some(8192));
        assert_eq!(get("numproc").limit, Some(40));
        assert_eq!(get("numfile").barrier, Some(1024));
        assert_eq!(get("numfile").limit, Some(4096));
        assert_eq!(get("diskspace").limit, Some(2 << 20));
        assert_eq!(get("swappages").limit, None);
    }

    #[test]
    fn fields_and_suffixes() {
        assert!(check_field("ram.l").is_ok());
        assert!(check_field("numfile.f").is_ok());
        assert!(matches!(
            check_field("bogus"),
            Err(ViewError::UnknownField(_))
        ));
        assert!(matches!(
            check_field("numproc.x"),
            Err(ViewError::UnknownSuffix(_))
        ));
    }
}
