//! `vzrun ve stat`: beancounters of a running VE, or of all of them, as a table, JSON or
//! the Prometheus text exposition format (for node_exporter's textfile collector).

use std::fmt::Write as _;

use anyhow::{bail, Result};

use crate::commands::out::{out, outln};
use crate::runtime::Runtime;
use crate::ve::resources::Counter;
use crate::ve::view::{self, VeView};

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
        Some(id) => vec![view::stat(rt, id).map_err(|e| super::ve_err(id, e))?],
        None if args.all => view::stat_all(rt),
        None => bail!("ve stat: give a VE ID or --all"),
    };
    match format {
        // One VE: its object; --all: the same objects in an array (docs/json.md).
        Format::Json if args.id.is_some() => {
            outln!("{}", serde_json::to_string_pretty(&ves[0])?)?;
        }
        Format::Json => outln!("{}", serde_json::to_string_pretty(&ves)?)?,
        Format::Prometheus => out!("{}", prometheus(&ves))?,
        Format::Table => {
            for v in &ves {
                if args.all {
                    outln!("VE {}", v.ctid)?;
                }
                out!("{}", table(&v.beancounters.0))?;
            }
        }
    }
    Ok(0)
}

fn table(rows: &[Counter]) -> String {
    let mut text = format!(
        "{:<12} {:>12} {:>12} {:>12} {:>12} {:>8}\n",
        "resource", "held", "maxheld", "barrier", "limit", "failcnt"
    );
    for r in rows {
        let _ = writeln!(
            text,
            "{:<12} {:>12} {:>12} {:>12} {:>12} {:>8}",
            r.resource,
            r.held,
            r.maxheld,
            view::limit_text(r.barrier),
            view::limit_text(r.limit),
            r.failcnt
        );
    }
    text
}

/// A sample's value: `None` is no limit, +Inf in the exposition format.
fn number(v: Option<f64>) -> String {
    match v {
        None => "+Inf".to_string(),
        Some(n) => n.to_string(),
    }
}

/// The text exposition format: one family per beancounter column, each sample labelled
/// with the VE and the resource (unlimited barriers and limits are +Inf); then each VE's
/// CPU time, network bytes and, for VEs with a private area, its disk usage.
pub fn prometheus(ves: &[VeView]) -> String {
    type Column = fn(&Counter) -> Option<f64>;
    let families: [(&str, &str, &str, Column); 5] = [
        (
            "vzrun_ve_held",
            "gauge",
            "Current usage of a VE resource",
            |c| Some(c.held as f64),
        ),
        (
            "vzrun_ve_maxheld",
            "gauge",
            "Highest usage of a VE resource",
            |c| Some(c.maxheld as f64),
        ),
        (
            "vzrun_ve_barrier",
            "gauge",
            "Soft limit of a VE resource",
            |c| c.barrier.map(|v| v as f64),
        ),
        (
            "vzrun_ve_limit",
            "gauge",
            "Hard limit of a VE resource",
            |c| c.limit.map(|v| v as f64),
        ),
        (
            "vzrun_ve_failcnt_total",
            "counter",
            "Times a VE resource's limit refused an allocation",
            |c| Some(c.failcnt as f64),
        ),
    ];
    let mut text = String::new();
    let head = |text: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(text, "# HELP {name} {help}.");
        let _ = writeln!(text, "# TYPE {name} {kind}");
    };
    for (name, kind, help, column) in families {
        head(&mut text, name, kind, help);
        for v in ves {
            for r in &v.beancounters.0 {
                let _ = writeln!(
                    text,
                    "{name}{{ve=\"{}\",resource=\"{}\"}} {}",
                    label(&v.ctid),
                    label(&r.resource),
                    number(column(r))
                );
            }
        }
    }
    type PerVe = fn(&VeView) -> Option<f64>;
    let per_ve: [(&str, &str, &str, PerVe); 5] = [
        (
            "vzrun_ve_cpu_seconds_total",
            "counter",
            "CPU time the processes of a VE used, user and system",
            |v| Some(v.usage.cpu_seconds),
        ),
        (
            "vzrun_ve_network_receive_bytes_total",
            "counter",
            "Bytes a VE received on its links (loopback aside)",
            |v| Some(v.usage.rx_bytes as f64),
        ),
        (
            "vzrun_ve_network_transmit_bytes_total",
            "counter",
            "Bytes a VE sent on its links (loopback aside)",
            |v| Some(v.usage.tx_bytes as f64),
        ),
        (
            "vzrun_ve_disk_used_bytes",
            "gauge",
            "Bytes used in a VE's private area",
            |v| disk(v, |c| Some(c.held)),
        ),
        (
            "vzrun_ve_disk_size_bytes",
            "gauge",
            "Bytes a VE's private area can hold (its hard limit)",
            |v| disk(v, |c| c.limit),
        ),
    ];
    for (name, kind, help, value) in per_ve {
        head(&mut text, name, kind, help);
        for v in ves {
            // A VE without a private area has no disk of its own to measure.
            if let Some(x) = value(v) {
                let _ = writeln!(text, "{name}{{ve=\"{}\"}} {x}", label(&v.ctid));
            }
        }
    }
    text
}

/// A column of a VE's diskspace row in bytes, when the VE has a private area.
fn disk(v: &VeView, column: fn(&Counter) -> Option<u64>) -> Option<f64> {
    v.beancounters
        .0
        .iter()
        .find(|c| c.resource == "diskspace" && c.limit.is_some())
        .and_then(column)
        .map(|k| (k * 1024) as f64)
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
            barrier: None,
            limit: Some(100),
            failcnt: 2,
        };
        let ve = VeView {
            ctid: "a\"b".into(),
            status: "running".into(),
            hostname: None,
            ip: vec![],
            procview: None,
            beancounters: view::Beancounters(vec![c]),
            usage: crate::ve::resources::Usage {
                cpu_seconds: 1.5,
                rx_bytes: 10,
                tx_bytes: 20,
            },
        };
        let text = prometheus(&[ve]);
        assert!(text.contains("vzrun_ve_limit{ve=\"a\\\"b\",resource=\"numproc\"} 100\n"));
        assert!(text.contains("vzrun_ve_cpu_seconds_total{ve=\"a\\\"b\"} 1.5\n"));
        assert!(text.contains("vzrun_ve_network_transmit_bytes_total{ve=\"a\\\"b\"} 20\n"));
        assert!(
            !text.contains("vzrun_ve_disk_used_bytes{"),
            "no private area"
        );
        assert!(text.contains("vzrun_ve_held{ve=\"a\\\"b\",resource=\"numproc\"} 3\n"));
        assert!(text.contains("vzrun_ve_barrier{ve=\"a\\\"b\",resource=\"numproc\"} +Inf\n"));
        assert!(text.contains("# TYPE vzrun_ve_failcnt_total counter\n"));
        assert!(text.contains("vzrun_ve_failcnt_total{ve=\"a\\\"b\",resource=\"numproc\"} 2\n"));
    }
}
