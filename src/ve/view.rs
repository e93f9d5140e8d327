//! What `ve show`, `ve stat` and `ve list` report about VEs, gathered from the runtime's
//! records and the kernel's counters; the commands only format it.

use libcontainer::container::ContainerStatus;
use serde_json::{json, Map, Value};

use crate::runtime::error::{Error, Result};
use crate::runtime::root::Loaded;
use crate::runtime::state::{status_word, Record};
use crate::runtime::Runtime;
use crate::ve::resources::{beancounters, Counter};

/// A field of `ve list` that does not exist.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("unknown field {0:?}")]
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
    let resolv = n
        .resolv_conf
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
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

/// The beancounters of a VE that has not stopped.
pub fn stat(rt: &Runtime, id: &str) -> Result<Vec<Counter>> {
    let loaded = load_ve(rt, id)?;
    if loaded.container.status() == ContainerStatus::Stopped {
        return Err(not_running(id));
    }
    let pid = loaded.container.pid().ok_or_else(|| not_running(id))?;
    Ok(beancounters(pid.as_raw(), &loaded.record.ve))
}

/// The beancounters of every running VE under the root, by ID (sorted); VEs that stop
/// or go away while being read are left out.
pub fn stat_all(rt: &Runtime) -> Vec<(String, Vec<Counter>)> {
    let mut out = Vec::new();
    for id in rt.root.ids() {
        let Ok((c, rec)) = rt.root.read(&id) else {
            continue;
        };
        if let (false, Some(pid)) = (c.status() == ContainerStatus::Stopped, c.pid()) {
            out.push((id, beancounters(pid.as_raw(), &rec.ve)));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A stopped system VE's row: what its config says; counters are "-" as in vzlist.
fn stopped_row(id: &str, dir: &std::path::Path, fields: &[String]) -> Map<String, Value> {
    let config: Value = std::fs::read(dir.join("config.json"))
        .ok()
        .and_then(|d| serde_json::from_slice(&d).ok())
        .unwrap_or(Value::Null);
    let ips: Vec<String> = config["annotations"]["io.vzrun.net.ip"]
        .as_str()
        .map(|s| {
            s.split(',')
                .map(|a| a.split('/').next().unwrap_or(a).trim().to_string())
                .filter(|a| !a.is_empty())
                .collect()
        })
        .unwrap_or_default();
    fields
        .iter()
        .map(|f| {
            let v = match f.as_str() {
                "ctid" => json!(id),
                "status" => json!("stopped"),
                "ip" => json!(ips),
                "hostname" => config["hostname"].clone(),
                _ => Value::Null,
            };
            (f.clone(), v)
        })
        .collect()
}

/// The value of one vzlist field for one VE; beancounter fields read the kernel's counters.
fn list_field(
    field: &str,
    id: &str,
    status: &str,
    rec: &Record,
    counters: &[Counter],
) -> Result<Value, ViewError> {
    let ips: Vec<String> = rec
        .ve
        .net
        .as_ref()
        .map(|n| n.ips.iter().map(|a| a.ip.to_string()).collect())
        .unwrap_or_default();
    Ok(match field {
        "ctid" => json!(id),
        "status" => json!(status),
        "ip" => json!(ips),
        "hostname" => json!(rec.ve.hostname),
        other => {
            let (name, suffix) = other.split_once('.').unwrap_or((other, ""));
            let name = match name {
                "ram" => "physpages",
                "swap" => "swappages",
                n => n,
            };
            if ![
                "physpages",
                "swappages",
                "kmemsize",
                "numproc",
                "numfile",
                "diskspace",
                "diskinodes",
            ]
            .contains(&name)
            {
                return Err(ViewError::UnknownField(other.to_string()));
            }
            let row = counters.iter().find(|c| c.resource == name);
            let v = match (row, suffix) {
                (None, _) => 0,
                (Some(r), "") => r.held,
                (Some(r), "m") => r.maxheld,
                (Some(r), "b") => r.barrier,
                (Some(r), "l") => r.limit,
                (Some(r), "f") => r.failcnt,
                _ => return Err(ViewError::UnknownSuffix(other.to_string())),
            };
            json!(v)
        }
    })
}

/// `ve list`'s rows: every container under the root, and with `all` the system VEs that
/// are not running, each with the `fields` asked for.
pub fn list(
    rt: &Runtime,
    fields: &[String],
    all: bool,
) -> Result<Vec<Map<String, Value>>, ViewError> {
    let mut rows: Vec<Map<String, Value>> = Vec::new();
    for id in rt.root.ids() {
        let Ok((c, rec)) = rt.root.read(&id) else {
            continue;
        };
        let status = crate::runtime::state::status_word(c.status());
        let counters = match (c.status(), c.pid()) {
            (ContainerStatus::Stopped, _) | (_, None) => Vec::new(),
            (_, Some(pid)) => beancounters(pid.as_raw(), &rec.ve),
        };
        let mut row = Map::new();
        for f in fields {
            row.insert(f.clone(), list_field(f, &id, status, &rec, &counters)?);
        }
        rows.push(row);
    }
    if all {
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
            if !rt.root.container_dir(&id).exists() && dir.join("config.json").exists() {
                rows.push(stopped_row(&id, &dir, fields));
            }
        }
    }
    Ok(rows)
}
