//! `vzrun ve show`: a VE's network settings.

use anyhow::Result;
use serde_json::{json, Value};

use crate::runtime::root::Root;

#[derive(clap::Args, Debug)]
pub struct ShowArgs {
    pub id: String,
    /// Print JSON
    #[arg(short = 'j', long)]
    pub json: bool,
}

pub fn run(root: &Root, args: ShowArgs) -> Result<i32> {
    let loaded = root.load(&args.id)?;
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
    let v = json!({
        "ctid": args.id,
        "status": crate::runtime::state::status_word(loaded.container.status()),
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
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    let s = |x: &Value| match x {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() => "-".to_string(),
        Value::Array(a) => a
            .iter()
            .map(|e| e.as_str().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    };
    for key in [
        "ctid",
        "status",
        "hostname",
        "mode",
        "ip",
        "host_if",
        "ve_if",
        "mac",
        "bridge",
        "routes",
        "rules",
        "nameserver",
        "searchdomain",
    ] {
        let val = if key == "routes" || key == "rules" {
            v[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|e| e.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| "-".into())
        } else {
            s(&v[key])
        };
        println!("{key:<13}{val}");
    }
    Ok(0)
}
