//! `vzrun ve stat`: beancounters of a running VE.

use anyhow::{anyhow, bail, Result};
use libcontainer::container::ContainerStatus;

use crate::runtime::root::Root;
use crate::ve::resources;

#[derive(clap::Args, Debug)]
pub struct StatArgs {
    pub id: String,
    /// Print JSON
    #[arg(short = 'j', long)]
    pub json: bool,
}

pub fn run(root: &Root, args: StatArgs) -> Result<i32> {
    let loaded = root.load(&args.id)?;
    let pid = match loaded.container.status() {
        ContainerStatus::Stopped => bail!("container not running"),
        _ => loaded
            .container
            .pid()
            .map(|p| p.as_raw())
            .ok_or_else(|| anyhow!("container not running"))?,
    };
    let rows = resources::beancounters(pid, &loaded.record.ve);
    drop(loaded);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    let show = |v: u64| {
        if v >= i64::MAX as u64 {
            "unlimited".to_string()
        } else {
            v.to_string()
        }
    };
    println!(
        "{:<12} {:>12} {:>12} {:>20} {:>20} {:>8}",
        "resource", "held", "maxheld", "barrier", "limit", "failcnt"
    );
    for r in rows {
        println!(
            "{:<12} {:>12} {:>12} {:>20} {:>20} {:>8}",
            r.resource,
            show(r.held),
            show(r.maxheld),
            show(r.barrier),
            show(r.limit),
            r.failcnt
        );
    }
    Ok(0)
}
