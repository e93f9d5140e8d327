//! `vzrun run`: create and start in one step; in the foreground, wait for the init and
//! return its exit status, then delete the container (unless `--keep`).

use anyhow::Result;

use crate::cli::GlobalOpts;
use crate::runtime::run::RunOptions;

use super::create::CreateFlags;

#[derive(clap::Args, Debug)]
#[command(about = "Create and run a container")]
#[command(
    after_help = "Examples:\n  vzrun run --bundle /srv/bundles/web web\n  vzrun run -d --bundle /srv/bundles/web web"
)]
pub struct Args {
    #[command(flatten)]
    pub flags: CreateFlags,
    /// Detach from the container's process
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Do not delete the container after it exits
    #[arg(long)]
    pub keep: bool,
    /// Disable the use of the subreaper used to reap reparented processes
    #[arg(long = "no-subreaper")]
    pub no_subreaper: bool,
    pub id: String,
}

pub fn run(args: Args, global: &GlobalOpts) -> Result<i32> {
    let code = super::runtime(global).run(RunOptions {
        create: args.flags.options(args.id, args.detach),
        keep: args.keep,
    })?;
    Ok(code)
}
