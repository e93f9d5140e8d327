//! `vzrun ve destroy ID`: remove a stopped VE: its bundle, record, console log and
//! private area.

use anyhow::Result;

use crate::commands::out::outln;
use crate::runtime::Runtime;
use crate::ve::system::lifecycle;

#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  vzrun ve stop 101 && vzrun ve destroy 101")]
pub struct DestroyArgs {
    pub id: String,
}

pub fn run(rt: &Runtime, args: DestroyArgs) -> Result<i32> {
    lifecycle::destroy(rt, &args.id)?;
    outln!("VE {} destroyed", args.id)?;
    Ok(0)
}
