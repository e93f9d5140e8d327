//! `vzrun ve exec ID CMD…`: a command line in a running VE, without a terminal, as
//! `vzctl exec` runs it; the exit status is the command's.

use anyhow::Result;

use crate::runtime::Runtime;
use crate::ve::system::lifecycle;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  vzrun ve exec 101 ps\n  vzrun ve exec 101 'cat /etc/hostname; uptime'"
)]
pub struct ExecArgs {
    pub id: String,
    /// The command line: its words are joined with spaces and run by the VE's /bin/sh
    #[arg(
        required = true,
        value_name = "CMD",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}

pub fn run(rt: &Runtime, args: ExecArgs) -> Result<i32> {
    Ok(lifecycle::exec(rt, &args.id, &args.command)?)
}
