//! `vzrun ve start ID`: boot a system VE: create its container from the VE's bundle and
//! start its init, with init's output going to the VE's console log.

use anyhow::Result;

use crate::commands::out::outln;
use crate::runtime::Runtime;
use crate::ve::system::lifecycle;

#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  vzrun ve start 101")]
pub struct StartArgs {
    pub id: String,
}

pub fn run(rt: &Runtime, args: StartArgs) -> Result<i32> {
    lifecycle::start(rt, &args.id)?;
    outln!("VE {} started", args.id)?;
    Ok(0)
}
