//! `vzrun state`: the runtime-spec state document of one container.

use anyhow::Result;

use crate::cli::GlobalOpts;
use crate::commands::out::out;

#[derive(clap::Args, Debug)]
#[command(about = "Output the state of a container")]
#[command(after_help = "Example:\n  vzrun state web")]
pub struct Args {
    pub id: String,
}

pub fn run(args: Args, global: &GlobalOpts) -> Result<i32> {
    let state = super::runtime(global).state(&args.id)?;
    // runc prints it indented and without a final newline.
    out!("{}", serde_json::to_string_pretty(&state)?)?;
    Ok(0)
}
