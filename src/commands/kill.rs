//! `vzrun kill`: send a signal to the init (or, with --all, every process).

use anyhow::Result;

use crate::cli::GlobalOpts;

#[derive(clap::Args, Debug)]
#[command(about = "Send a signal to the container's init process (default SIGTERM)")]
#[command(after_help = "Examples:\n  vzrun kill web\n  vzrun kill --all web KILL")]
pub struct Args {
    /// Send the signal to all processes in the container
    #[arg(short = 'a', long)]
    pub all: bool,
    pub id: String,
    /// Signal name or number
    pub signal: Option<String>,
}

pub fn run(args: Args, global: &GlobalOpts) -> Result<i32> {
    let signal = args.signal.as_deref().unwrap_or("SIGTERM");
    super::runtime(global).kill(&args.id, signal, args.all)?;
    Ok(0)
}
