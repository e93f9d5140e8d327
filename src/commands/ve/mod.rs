//! `vzrun ve ...`: read and change Virtual Environments, in the manner of vzctl/vzlist.
//! One file per subcommand.

use anyhow::{anyhow, Result};

use crate::cli::GlobalOpts;

pub mod create;
pub mod destroy;
pub mod enter;
pub mod exec;
pub mod keys;
pub mod list;
pub mod restart;
pub mod resume;
pub mod set;
pub mod show;
pub mod start;
pub mod stat;
pub mod status;
pub mod stop;
pub mod suspend;

// Deferred like vzrun's commands (see `cli::Command`): only the parsed one is built.
#[derive(clap::Subcommand, Debug)]
#[command(defer = true)]
pub enum VeCommand {
    /// Change a VE's settings: live, and with --save for its next start (vzctl set)
    Set(Box<set::SetArgs>),
    /// Print a VE's settings: network and resources, running or stopped
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
    /// Checkpoint a running VE into its own directory; it stops (vzctl suspend)
    Suspend(suspend::SuspendArgs),
    /// Bring a suspended VE back from its checkpoint (vzctl resume)
    Resume(resume::ResumeArgs),
    /// Whether a VE exists, is mounted and runs (vzctl status)
    Status(status::StatusArgs),
    /// A login shell (or --exec CMD) inside a running VE, on a terminal
    Enter(enter::EnterArgs),
    /// Run a command line in a running VE and return its exit status (vzctl exec)
    Exec(exec::ExecArgs),
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
        VeCommand::Suspend(args) => suspend::run(&rt, args),
        VeCommand::Resume(args) => resume::run(&rt, args),
        VeCommand::Status(args) => status::run(&rt, args),
        VeCommand::Enter(args) => enter::run(&rt, args),
        VeCommand::Exec(args) => exec::run(&rt, args),
        VeCommand::Destroy(args) => destroy::run(&rt, args),
        VeCommand::Keys(args) => keys::run(args),
    }
}

/// An error in the value of a flag, named as the user typed it.
pub(crate) fn flag_err(flag: &str, problem: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("{flag}: {problem}")
}

/// A runtime error of a verb on one VE, naming the VE unless it already does: an
/// administrator running verbs over many VEs must see which one failed.
pub(crate) fn ve_err(id: &str, e: crate::runtime::error::Error) -> anyhow::Error {
    let text = crate::runtime::error::chain(&e);
    if text.contains(&format!("VE {id} ")) {
        anyhow!(text)
    } else {
        anyhow!("VE {id}: {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::error::Error;

    #[test]
    fn errors_name_the_ve_once() {
        let e = ve_err("web", Error::Step("cgroup write failed".into()));
        assert_eq!(e.to_string(), "VE web: cgroup write failed");
        let e = ve_err("web", Error::State("VE web is not running".into()));
        assert_eq!(e.to_string(), "VE web is not running");
    }
}
