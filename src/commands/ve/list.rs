//! `vzrun ve list`: the vzlist table.

use anyhow::{bail, Result};
use libcontainer::container::ContainerStatus;
use serde_json::{json, Value};

use crate::runtime::root::Root;
use crate::ve::resources;

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Fields to show, comma-separated: ctid, status, ip, hostname, a beancounter
    /// (physpages, ram, swappages, swap, kmemsize, numproc, numfile, diskspace, diskinodes)
    /// for its held value, or with .m .b .l .f for maxheld, barrier, limit, failcnt
    #[arg(short = 'o', long, default_value = "ctid,numproc,status,ip,hostname")]
    pub output: String,
    /// Sort by this field
    #[arg(short = 's', long)]
    pub sort: Option<String>,
    /// Print JSON
    #[arg(short = 'j', long)]
    pub json: bool,
    /// Do not print the header
    #[arg(short = 'H', long = "no-header")]
    pub no_header: bool,
    /// Also list system VEs that are not running (made with `ve create`)
    #[arg(short = 'a', long)]
    pub all: bool,
}

/// A stopped system VE's row: what its config says; counters are "-" as in vzlist.
fn stopped_row(
    id: &str,
    dir: &std::path::Path,
    fields: &[String],
) -> serde_json::Map<String, Value> {
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
    rec: &crate::runtime::state::Record,
    counters: &[resources::Counter],
) -> Result<Value> {
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
                bail!("-o: unknown field {other:?}");
            }
            let row = counters.iter().find(|c| c.resource == name);
            let v = match (row, suffix) {
                (None, _) => 0,
                (Some(r), "") => r.held,
                (Some(r), "m") => r.maxheld,
                (Some(r), "b") => r.barrier,
                (Some(r), "l") => r.limit,
                (Some(r), "f") => r.failcnt,
                _ => bail!("-o: unknown suffix in {other:?} (use .m .b .l .f)"),
            };
            json!(v)
        }
    })
}

pub fn run(root: &Root, args: ListArgs) -> Result<i32> {
    let fields: Vec<String> = args
        .output
        .split(',')
        .map(|f| f.trim().to_string())
        .filter(|f| !f.is_empty())
        .collect();
    let mut rows: Vec<serde_json::Map<String, Value>> = Vec::new();
    for id in root.ids() {
        let Ok((c, rec)) = root.read(&id) else {
            continue;
        };
        let status = crate::runtime::state::status_word(c.status());
        let counters = match (c.status(), c.pid()) {
            (ContainerStatus::Stopped, _) | (_, None) => Vec::new(),
            (_, Some(pid)) => resources::beancounters(pid.as_raw(), &rec.ve),
        };
        let mut row = serde_json::Map::new();
        for f in &fields {
            row.insert(f.clone(), list_field(f, &id, status, &rec, &counters)?);
        }
        rows.push(row);
    }
    if args.all {
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
            if !root.container_dir(&id).exists() && dir.join("config.json").exists() {
                rows.push(stopped_row(&id, &dir, &fields));
            }
        }
    }
    if let Some(key) = &args.sort {
        if !fields.contains(key) {
            bail!("-s: {key:?} is not one of the -o fields");
        }
        rows.sort_by(|a, b| match (&a[key], &b[key]) {
            (Value::Number(x), Value::Number(y)) => x.as_u64().cmp(&y.as_u64()),
            (x, y) => x.to_string().cmp(&y.to_string()),
        });
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    let text = |v: &Value| match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() => "-".to_string(),
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        Value::Number(n) if n.as_u64() >= Some(i64::MAX as u64) => "unlimited".to_string(),
        other => other.to_string(),
    };
    let mut table = Vec::new();
    if !args.no_header {
        table.push(fields.iter().map(|f| f.to_uppercase()).collect::<Vec<_>>());
    }
    for r in &rows {
        table.push(fields.iter().map(|f| text(&r[f])).collect());
    }
    let widths: Vec<usize> = (0..fields.len())
        .map(|i| table.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    for r in table {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    Ok(0)
}
