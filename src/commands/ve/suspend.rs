//! `vzrun ve suspend ID`: checkpoint a running VE into its own directory; it stops (vzctl suspend).

use anyhow::Result;

use crate::commands::out::outln;
use crate::runtime::Runtime;
use crate::ve::system::lifecycle;

#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  vzrun ve suspend 101")]
pub struct SuspendArgs {
    pub id: String,
}

pub fn run(rt: &Runtime, args: SuspendArgs) -> Result<i32> {
    lifecycle::suspend(rt, &args.id)?;
    outln!("VE {} suspended", args.id)?;
    Ok(0)
}
