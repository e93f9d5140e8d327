//! `vzrun ve status ID`: whether a VE exists, is mounted and runs, in vzctl's words.

use anyhow::Result;

use crate::commands::out::outln;
use crate::runtime::Runtime;
use crate::ve::system::lifecycle;

#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  vzrun ve status 101\n  \
                        (prints e.g. \"VEID 101 exist mounted running\")")]
pub struct StatusArgs {
    pub id: String,
}

pub fn run(rt: &Runtime, args: StatusArgs) -> Result<i32> {
    outln!("{}", lifecycle::status(rt, &args.id)?)?;
    Ok(0)
}
