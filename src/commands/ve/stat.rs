//! `vzrun ve stat`: beancounters of a running VE.

use anyhow::Result;

use crate::commands::out::outln;
use crate::runtime::Runtime;
use crate::ve::view;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  vzrun ve stat web\n  vzrun ve stat --json web")]
pub struct StatArgs {
    pub id: String,
    /// Print JSON
    #[arg(short = 'j', long)]
    pub json: bool,
}

pub fn run(rt: &Runtime, args: StatArgs) -> Result<i32> {
    let rows = view::stat(rt, &args.id)?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(0);
    }
    let show = |v: u64| {
        if v >= i64::MAX as u64 {
            "unlimited".to_string()
        } else {
            v.to_string()
        }
    };
    outln!(
        "{:<12} {:>12} {:>12} {:>20} {:>20} {:>8}",
        "resource",
        "held",
        "maxheld",
        "barrier",
        "limit",
        "failcnt"
    )?;
    for r in rows {
        outln!(
            "{:<12} {:>12} {:>12} {:>20} {:>20} {:>8}",
            r.resource,
            show(r.held),
            show(r.maxheld),
            show(r.barrier),
            show(r.limit),
            r.failcnt
        )?;
    }
    Ok(0)
}
