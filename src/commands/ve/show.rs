//! `vzrun ve show`: a VE's settings, network and resources, running or stopped.

use anyhow::Result;
use serde_json::Value;

use crate::commands::out::outln;
use crate::runtime::Runtime;
use crate::ve::keys::{self, Concern};
use crate::ve::view;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  vzrun ve show web\n  vzrun ve show --json web")]
pub struct ShowArgs {
    pub id: String,
    /// Print JSON
    #[arg(short = 'j', long)]
    pub json: bool,
}

pub fn run(rt: &Runtime, args: ShowArgs) -> Result<i32> {
    let v = view::show(rt, &args.id).map_err(|e| super::ve_err(&args.id, e))?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&v)?)?;
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
    // The VE and its network, then each other setting: the resources and the private
    // area always, the rest when set.
    let others = keys::KEYS
        .iter()
        .filter(|k| v.get(k.name).is_some())
        .filter(|k| {
            matches!(k.concern, Concern::Resources)
                || matches!(k.name, "diskspace" | "diskinodes")
                || !v[k.name].is_null()
        })
        .map(|k| k.name);
    for key in [
        "ctid",
        "status",
        "template",
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
    ]
    .into_iter()
    .chain(others)
    {
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
        outln!("{key:<12} {val}")?;
    }
    Ok(0)
}
