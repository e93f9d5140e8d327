//! `vzrun ve ...`: read and change Virtual Environments, in the manner of vzctl/vzlist.
//! One file per subcommand.

use anyhow::{anyhow, Result};

use crate::cli::GlobalOpts;

pub mod create;
pub mod destroy;
pub mod enter;
pub mod keys;
pub mod list;
pub mod restart;
pub mod set;
pub mod show;
pub mod start;
pub mod stat;
pub mod stop;

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
    /// Make a system VE from an OS template (vzctl create)
    Create(Box<create::CreateArgs>),
    /// Boot a system VE: its init runs the startup scripts
    Start(start::StartArgs),
    /// Shut a system VE down through its init; kill after a timeout or with --fast
    Stop(stop::StopArgs),
    /// Stop, then start
    Restart(restart::RestartArgs),
    /// A login shell inside a running VE, on a terminal
    Enter(enter::EnterArgs),
    /// Remove a stopped VE and its private area
    Destroy(destroy::DestroyArgs),
    /// Every io.vzrun.* annotation key: type, range, default
    Keys(keys::KeysArgs),
}

pub fn run(cmd: VeCommand, global: &GlobalOpts) -> Result<i32> {
    let rt = super::runtime(global);
    match cmd {
        VeCommand::Set(args) => set::run(&rt, *args),
        VeCommand::Show(args) => show::run(&rt, args),
        VeCommand::Stat(args) => stat::run(&rt, args),
        VeCommand::List(args) => list::run(&rt, args),
        VeCommand::Create(args) => create::run(*args),
        VeCommand::Start(args) => start::run(&rt, args),
        VeCommand::Stop(args) => stop::run(&rt, args),
        VeCommand::Restart(args) => restart::run(&rt, args),
        VeCommand::Enter(args) => enter::run(&rt, args),
        VeCommand::Destroy(args) => destroy::run(&rt, args),
        VeCommand::Keys(args) => keys::run(args),
    }
}

/// An error in the value of a flag, named as the user typed it.
pub(crate) fn flag_err(flag: &str, problem: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("{flag}: {problem}")
}
