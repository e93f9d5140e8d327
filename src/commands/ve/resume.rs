//! `vzrun ve resume ID`: bring a suspended VE back from its checkpoint (vzctl resume).

use anyhow::Result;

use crate::commands::out::outln;
use crate::runtime::Runtime;
use crate::ve::system::lifecycle;

#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  vzrun ve resume 101")]
pub struct ResumeArgs {
    pub id: String,
}

pub fn run(rt: &Runtime, args: ResumeArgs) -> Result<i32> {
    lifecycle::resume(rt, &args.id)?;
    outln!("VE {} resumed", args.id)?;
    Ok(0)
}
