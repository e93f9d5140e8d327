//! `vzrun completion SHELL`: the shell's completion script, generated from the same clap
//! definition the command line is parsed with, so it cannot drift from it.

use anyhow::Result;
use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;
use crate::commands::out::out;

#[derive(clap::Args, Debug)]
#[command(
    about = "Print a shell completion script (bash, zsh, fish, elvish, powershell)",
    after_help = "Examples:\n  vzrun completion bash > /etc/bash_completion.d/vzrun\n  \
                  vzrun completion zsh > \"${fpath[1]}/_vzrun\"\n  \
                  vzrun completion fish > ~/.config/fish/completions/vzrun.fish"
)]
pub struct Args {
    /// The shell to complete for
    pub shell: Shell,
}

pub fn run(args: Args) -> Result<i32> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "vzrun", &mut script);
    out!("{}", String::from_utf8_lossy(&script))?;
    Ok(0)
}
