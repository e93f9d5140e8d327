//! `vzrun ve stop ID [--fast] [--timeout S]`: ask the VE's init to shut the system down
//! (the way that init expects), wait, kill what is left after the timeout, then remove
//! the container. The VE's bundle and private area stay for the next `ve start`.

use std::time::Duration;

use anyhow::Result;

use crate::commands::out::outln;
use crate::runtime::Runtime;
use crate::ve::system::lifecycle;

/// vzctl waits two minutes for a container to shut down.
pub const DEFAULT_TIMEOUT: u64 = 120;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  vzrun ve stop 101\n  vzrun ve stop --fast 101")]
pub struct StopArgs {
    pub id: String,
    /// Kill at once, without asking init to shut down
    #[arg(long)]
    pub fast: bool,
    /// Seconds to wait for a clean shutdown before killing
    #[arg(long, default_value_t = DEFAULT_TIMEOUT)]
    pub timeout: u64,
}

pub fn run(rt: &Runtime, args: StopArgs) -> Result<i32> {
    let msg = lifecycle::stop(rt, &args.id, args.fast, Duration::from_secs(args.timeout))?;
    outln!("{msg}")?;
    Ok(0)
}
