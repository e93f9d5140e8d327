//! `vzrun pause`: freeze every process of a running container.

use anyhow::Result;

use crate::cli::GlobalOpts;

#[derive(clap::Args, Debug)]
#[command(about = "Suspend all processes inside the container")]
#[command(after_help = "Example:\n  vzrun pause web")]
pub struct Args {
    pub id: String,
}

pub fn run(args: Args, global: &GlobalOpts) -> Result<i32> {
    super::runtime(global).pause(&args.id)?;
    Ok(0)
}
