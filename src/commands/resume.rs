//! `vzrun resume`: thaw a paused container.

use anyhow::Result;

use crate::cli::GlobalOpts;

#[derive(clap::Args, Debug)]
#[command(about = "Resume all processes that have been previously paused")]
#[command(after_help = "Example:\n  vzrun resume web")]
pub struct Args {
    pub id: String,
}

pub fn run(args: Args, global: &GlobalOpts) -> Result<i32> {
    super::runtime(global).resume(&args.id)?;
    Ok(0)
}
