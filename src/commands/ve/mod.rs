//! `vzrun ve ...`: read and change Virtual Environments, in the manner of vzctl/vzlist.
//! One file per subcommand.

use anyhow::{anyhow, Result};

use crate::cli::GlobalOpts;
use crate::runtime::root::Root;

pub mod create;
pub mod destroy;
pub mod enter;
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
}

pub fn run(cmd: VeCommand, global: &GlobalOpts) -> Result<i32> {
    let root = Root::from_opts(global)?;
    match cmd {
        VeCommand::Set(args) => set::run(&root, *args),
        VeCommand::Show(args) => show::run(&root, args),
        VeCommand::Stat(args) => stat::run(&root, args),
        VeCommand::List(args) => list::run(&root, args),
        VeCommand::Create(args) => create::run(&root, *args),
        VeCommand::Start(args) => start::run(&root, global, args),
        VeCommand::Stop(args) => stop::run(&root, args),
        VeCommand::Restart(args) => restart::run(&root, global, args),
        VeCommand::Enter(args) => enter::run(&root, global, args),
        VeCommand::Destroy(args) => destroy::run(&root, args),
    }
}

/// A system VE's directory, locked against other `ve start/stop/destroy` calls on it
/// (flock, released when the returned guard drops).
pub(crate) fn lock_ve(id: &str) -> Result<(std::path::PathBuf, nix::fcntl::Flock<std::fs::File>)> {
    let dir = existing_ve(id)?;
    let file = std::fs::File::open(&dir).map_err(|e| anyhow!("open {}: {e}", dir.display()))?;
    let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| anyhow!("lock {}: {e}", dir.display()))?;
    // The holder before us may have destroyed it.
    existing_ve(id)?;
    Ok((dir, lock))
}

/// The directory of a system VE made by `ve create`, or an error naming the ID.
pub(crate) fn existing_ve(id: &str) -> Result<std::path::PathBuf> {
    crate::runtime::root::validate_id(id)?;
    let dir = crate::ve::system::ves_dir(&crate::ve::template::data_dir()).join(id);
    if !dir.join(crate::ve::system::VE_CONF).exists() {
        return Err(anyhow!("VE {id} does not exist (see vzrun ve create)"));
    }
    Ok(dir)
}

pub(crate) fn flag_err(flag: &str, problem: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("{flag}: {problem}")
}
