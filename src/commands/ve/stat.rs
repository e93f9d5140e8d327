//! `vzrun ve stat`: beancounters of a running VE, or of all of them, as a table, JSON or
//! the Prometheus text exposition format (for node_exporter's textfile collector).

use std::fmt::Write as _;

use anyhow::{bail, Result};
use serde_json::{Map, Value};

use crate::commands::out::{out, outln};
use crate::runtime::Runtime;
use crate::ve::resources::Counter;
use crate::ve::view;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Prometheus,
}

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  vzrun ve stat web\n  vzrun ve stat --json web\n  \
                  vzrun ve stat --all --format prometheus > /var/lib/node_exporter/vzrun.prom"
)]
pub struct StatArgs {
    /// The VE; or --all
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub id: Option<String>,
    /// Every running VE under the root
    #[arg(long)]
    pub all: bool,
    /// Print JSON (--format json)
    #[arg(short = 'j', long, conflicts_with = "format")]
    pub json: bool,
    /// Output format
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

pub fn run(rt: &Runtime, args: StatArgs) -> Result<i32> {
    let format = if args.json { Format::Json } else { args.format };
    let ves = match &args.id {
        Some(id) => vec![(
            id.clone(),
            view::stat(rt, id).map_err(|e| super::ve_err(id, e))?,
        )],
        None if args.all => view::stat_all(rt),
        None => bail!("ve stat: give a VE ID or --all"),
    };
    match format {
        // One VE: its rows; --all: the same rows under each ID.
        Format::Json if args.id.is_some() => {
            outln!("{}", serde_json::to_string_pretty(&ves[0].1)?)?;
        }
        Format::Json => {
            let mut all = Map::new();
            for (id, rows) in &ves {
                all.insert(id.clone(), serde_json::to_value(rows)?);
            }
            outln!("{}", serde_json::to_string_pretty(&Value::Object(all))?)?;
        }
        Format::Prometheus => out!("{}", prometheus(&ves))?,
        Format::Table => {
            for (id, rows) in &ves {
                if args.all {
                    outln!("VE {id}")?;
                }
                out!("{}", table(rows))?;
            }
        }
    }
    Ok(0)
}

/// vzrun's beancounters keep the kernel's "no limit" (above i64::MAX) for unlimited.
fn unlimited(v: u64) -> bool {
    v >= i64::MAX as u64
}

fn table(rows: &[Counter]) -> String {
    let show = |v: u64| {
        if unlimited(v) {
            "unlimited".to_string()
        } else {
            v.to_string()
        }
    };
    let mut text = format!(
        "{:<12} {:>12} {:>12} {:>20} {:>20} {:>8}\n",
        "resource", "held", "maxheld", "barrier", "limit", "failcnt"
    );
    for r in rows {
        let _ = writeln!(
            text,
            "{:<12} {:>12} {:>12} {:>20} {:>20} {:>8}",
            r.resource,
            show(r.held),
            show(r.maxheld),
            show(r.barrier),
            show(r.limit),
            r.failcnt
        );
    }
    text
}

/// The text exposition format: one family per beancounter column, each sample labelled
/// with the VE and the resource; unlimited barriers and limits are +Inf.
pub fn prometheus(ves: &[(String, Vec<Counter>)]) -> String {
    type Column = fn(&Counter) -> u64;
    let families: [(&str, &str, &str, Column); 5] = [
        (
            "vzrun_ve_held",
            "gauge",
            "Current usage of a VE resource",
            |c| c.held,
        ),
        (
            "vzrun_ve_maxheld",
            "gauge",
            "Highest usage of a VE resource",
            |c| c.maxheld,
        ),
        (
            "vzrun_ve_barrier",
            "gauge",
            "Soft limit of a VE resource",
            |c| c.barrier,
        ),
        (
            "vzrun_ve_limit",
            "gauge",
            "Hard limit of a VE resource",
            |c| c.limit,
        ),
        (
            "vzrun_ve_failcnt_total",
            "counter",
            "Times a VE resource's limit refused an allocation",
            |c| c.failcnt,
        ),
    ];
    let mut text = String::new();
    for (name, kind, help, column) in families {
        let _ = writeln!(text, "# HELP {name} {help}.");
        let _ = writeln!(text, "# TYPE {name} {kind}");
        for (id, rows) in ves {
            for r in rows {
                let v = column(r);
                let value = if unlimited(v) && kind == "gauge" {
                    "+Inf".to_string()
                } else {
                    v.to_string()
                };
                let _ = writeln!(
                    text,
                    "{name}{{ve=\"{}\",resource=\"{}\"}} {value}",
                    label(id),
                    label(&r.resource)
                );
            }
        }
    }
    text
}

/// A label value as the exposition format escapes it.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_labels_and_unlimited() {
        let c = Counter {
            resource: "numproc".into(),
            held: 3,
            maxheld: 5,
            barrier: u64::MAX,
            limit: 100,
            failcnt: 2,
        };
        let text = prometheus(&[("a\"b".into(), vec![c])]);
        assert!(text.contains("vzrun_ve_held{ve=\"a\\\"b\",resource=\"numproc\"} 3\n"));
        assert!(text.contains("vzrun_ve_barrier{ve=\"a\\\"b\",resource=\"numproc\"} +Inf\n"));
        assert!(text.contains("# TYPE vzrun_ve_failcnt_total counter\n"));
        assert!(text.contains("vzrun_ve_failcnt_total{ve=\"a\\\"b\",resource=\"numproc\"} 2\n"));
    }
}
