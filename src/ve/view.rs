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

/// One VE's network settings, as `ve show` prints them (field order is the table's).
pub fn show(rt: &Runtime, id: &str) -> Result<Value> {
    let loaded = load_ve(rt, id)?;
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
    Ok(json!({
        "ctid": id,
        "status": status_word(loaded.container.status()),
        "hostname": ve.hostname,
        "mode": if ve.net.is_some() { Some(n.mode) } else { None },
        "ip": n.ips.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "host_if": n.host_if,
        "ve_if": n.ve_if,
        "mac": n.mac,
        "bridge": n.bridge,
        "routes": n.routes.iter().map(|r| r.text.clone()).collect::<Vec<_>>(),
        "rules": n.rules.iter().map(|r| format!("from {} table {}{}", r.from, r.table, r.priority.map(|p| format!(" priority {p}")).unwrap_or_default())).collect::<Vec<_>>(),
        "nameserver": words("nameserver"),
        "searchdomain": words("search"),
    }))
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
            let v = match (f.as_str(), c.pid()) {
                // Read from the VE's own mount table, so only for a live init.
                ("procview", Some(pid)) if c.status() != ContainerStatus::Stopped => {
                    json!(crate::ve::proc_view::seen_by(pid.as_raw()).word())
                }
                ("procview", _) => Value::Null,
                _ => list_field(f, &id, status, &rec, &counters)?,
            };
            row.insert(f.clone(), v);
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
