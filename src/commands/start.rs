//! `vzrun start`: let a created container's init exec the user's process.

use anyhow::Result;

use crate::cli::GlobalOpts;

#[derive(clap::Args, Debug)]
#[command(about = "Execute the user-defined process in a created container")]
#[command(after_help = "Example:\n  vzrun start web")]
pub struct Args {
    pub id: String,
}

pub fn run(args: Args, global: &GlobalOpts) -> Result<i32> {
    super::runtime(global).start(&args.id)?;
    Ok(0)
}
