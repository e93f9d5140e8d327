//! `vzrun ve restart ID`: a clean stop, then a start.

use std::time::Duration;

use anyhow::Result;

use crate::commands::out::outln;
use crate::runtime::Runtime;
use crate::ve::system::lifecycle;

#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  vzrun ve restart --timeout 30 101")]
pub struct RestartArgs {
    pub id: String,
    /// Kill instead of shutting down cleanly
    #[arg(long)]
    pub fast: bool,
    /// Seconds to wait for a clean shutdown before killing
    #[arg(long, default_value_t = super::stop::DEFAULT_TIMEOUT)]
    pub timeout: u64,
}

pub fn run(rt: &Runtime, args: RestartArgs) -> Result<i32> {
    if rt.root.read(&args.id).is_ok() {
        let msg = lifecycle::stop(rt, &args.id, args.fast, Duration::from_secs(args.timeout))?;
        outln!("{msg}").or_else(crate::commands::out::closed_is_ok)?;
    }
    lifecycle::start(rt, &args.id)?;
    outln!("VE {} started", args.id)?;
    Ok(0)
}
