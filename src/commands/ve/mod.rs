//! `vzrun ve ...`: read and change Virtual Environments, in the manner of vzctl/vzlist.
//! One file per subcommand.

use anyhow::{anyhow, Result};

use crate::cli::GlobalOpts;
use crate::container::Root;

pub mod list;
pub mod set;
pub mod show;
pub mod stat;

#[derive(clap::Subcommand, Debug)]
pub enum VeCommand {
    /// Change settings of a running VE (vzctl set)
    Set(Box<set::SetArgs>),
    /// Print a VE's network settings
    Show(show::ShowArgs),
    /// Beancounters: held, maxheld, barrier, limit and failcnt per resource
    Stat(stat::StatArgs),
    /// List VEs (vzlist)
    List(list::ListArgs),
}

pub fn run(cmd: VeCommand, global: &GlobalOpts) -> Result<i32> {
    let root = Root::from_opts(global)?;
    match cmd {
        VeCommand::Set(args) => set::run(&root, *args),
        VeCommand::Show(args) => show::run(&root, args),
        VeCommand::Stat(args) => stat::run(&root, args),
        VeCommand::List(args) => list::run(&root, args),
    }
}

pub(crate) fn flag_err(flag: &str, problem: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("{flag}: {problem}")
}
