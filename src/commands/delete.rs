//! `vzrun delete`: remove a stopped (or, with --force, any) container and everything the
//! VE layer set up for it.

use anyhow::Result;

use crate::cli::GlobalOpts;

#[derive(clap::Args, Debug)]
#[command(about = "Delete any resources held by the container")]
#[command(after_help = "Examples:\n  vzrun delete web\n  vzrun delete --force web")]
pub struct Args {
    /// Forcibly delete the container if it is still running (uses SIGKILL)
    #[arg(short = 'f', long)]
    pub force: bool,
    pub id: String,
}

pub fn run(args: Args, global: &GlobalOpts) -> Result<i32> {
    super::runtime(global).delete(&args.id, args.force)?;
    Ok(0)
}
