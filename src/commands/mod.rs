//! One file per command. Each holds its clap arguments and a thin `run`: flags to typed
//! options, one call into `crate::runtime` (or a VE concern), print. A command never calls
//! another command.

use anyhow::Result;

use crate::cli::{Command, GlobalOpts};
use crate::runtime::Runtime;

pub mod checkpoint;
pub mod completion;
pub mod create;
pub mod delete;
pub mod events;
pub mod exec;
pub mod features;
pub mod kill;
pub mod list;
pub mod man;
pub mod migrate;
pub mod migrate_listen;
pub mod out;
pub mod pause;
pub mod ps;
pub mod restore;
pub mod resume;
pub mod run;
pub mod spec;
pub mod start;
pub mod state;
pub mod template;
pub mod update;
pub mod ve;
pub mod version;

/// An error that ends the process with a specific status, as `exec` does with 255.
#[derive(Debug, thiserror::Error)]
#[error("{msg}")]
pub struct ExitError {
    pub code: i32,
    pub msg: String,
}

pub fn exit_code_for(err: &anyhow::Error) -> i32 {
    err.downcast_ref::<ExitError>().map(|e| e.code).unwrap_or(1)
}

pub fn dispatch(command: Command, global: &GlobalOpts) -> Result<i32> {
    match command {
        Command::Create(a) => create::run(a, global),
        Command::Start(a) => start::run(a, global),
        Command::Run(a) => run::run(a, global),
        Command::Exec(a) => exec::run(a, global),
        Command::Kill(a) => kill::run(a, global),
        Command::Delete(a) => delete::run(a, global),
        Command::State(a) => state::run(a, global),
        Command::List(a) => list::run(a, global),
        Command::Ps(a) => ps::run(a, global),
        Command::Events(a) => events::run(a, global),
        Command::Pause(a) => pause::run(a, global),
        Command::Resume(a) => resume::run(a, global),
        Command::Update(a) => update::run(a, global),
        Command::Features(a) => features::run(a, global),
        Command::Spec(a) => spec::run(a, global),
        Command::Checkpoint(a) => checkpoint::run(a, global),
        Command::Migrate(a) => migrate::run(a, global),
        Command::MigrateListen(a) => migrate_listen::run(a, global),
        Command::Restore(a) => restore::run(a, global),
        Command::Ve(c) => ve::run(c, global),
        Command::Template(c) => template::run(c, global),
        Command::Completion(a) => completion::run(a),
        Command::Man(a) => man::run(a),
    }
}

/// The runtime context of this invocation, from the global flags.
pub fn runtime(global: &GlobalOpts) -> Runtime {
    Runtime::new(global.root.clone(), global.systemd_cgroup).with_policy(global.policy.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::anyhow;

    #[test]
    fn exit_errors_carry_their_code() {
        let e: anyhow::Error = ExitError {
            code: 255,
            msg: "exec failed: x".into(),
        }
        .into();
        assert_eq!(exit_code_for(&e), 255);
        assert_eq!(exit_code_for(&anyhow!("plain")), 1);
    }
}
