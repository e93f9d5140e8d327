//! `vzrun ve enter ID [--exec CMD…]`: a login shell inside a running VE, or one command,
//! on a terminal, through the same path as `vzrun exec -t`.

use anyhow::Result;

use crate::runtime::Runtime;
use crate::ve::system::lifecycle;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  vzrun ve enter 101\n  vzrun ve enter 101 --exec top -d 5")]
pub struct EnterArgs {
    pub id: String,
    /// Run this command on the terminal instead of a login shell (everything after it is
    /// its arguments); the exit status is the command's
    #[arg(
        long = "exec",
        value_name = "CMD",
        num_args = 1..,
        allow_hyphen_values = true
    )]
    pub exec: Vec<String>,
}

pub fn run(rt: &Runtime, args: EnterArgs) -> Result<i32> {
    Ok(lifecycle::enter(rt, &args.id, &args.exec)?)
}
