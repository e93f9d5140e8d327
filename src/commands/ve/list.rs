//! `vzrun ve list`: the vzlist table.

use anyhow::{anyhow, bail, Result};
use serde_json::Value;

use crate::commands::out::outln;
use crate::runtime::Runtime;
use crate::ve::view;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  vzrun ve list\n  vzrun ve list -a -o ctid,status,ram,ram.l -s ram"
)]
pub struct ListArgs {
    /// Fields to show, comma-separated: ctid, status, ip, hostname, a beancounter
    /// (physpages, ram, swappages, swap, kmemsize, numproc, numfile, diskspace, diskinodes)
    /// for its held value, or with .m .b .l .f for maxheld, barrier, limit, failcnt;
    /// procview: what the VE's /proc shows (host, virtual, or lost when the LXCFS behind
    /// its view died)
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

pub fn run(rt: &Runtime, args: ListArgs) -> Result<i32> {
    let fields: Vec<String> = args
        .output
        .split(',')
        .map(|f| f.trim().to_string())
        .filter(|f| !f.is_empty())
        .collect();
    let mut rows = view::list(rt, &fields, args.all).map_err(|e| anyhow!("-o: {e}"))?;
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
        outln!("{}", serde_json::to_string_pretty(&rows)?)?;
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
        outln!("{}", line.join("  ").trim_end())?;
    }
    Ok(0)
}
