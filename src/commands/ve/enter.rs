//! `vzrun ve enter ID`: a login shell inside a running VE, on a terminal, through the
//! same path as `vzrun exec -t`.

use anyhow::Result;

use crate::runtime::Runtime;
use crate::ve::system::lifecycle;

#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  vzrun ve enter 101")]
pub struct EnterArgs {
    pub id: String,
}

pub fn run(rt: &Runtime, args: EnterArgs) -> Result<i32> {
    Ok(lifecycle::enter(rt, &args.id)?)
}
