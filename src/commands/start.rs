//! `vzrun start`: let a created container's init exec the user's process.

use anyhow::{anyhow, bail, Result};
use libcontainer::container::{Container, ContainerStatus};

use crate::cli::GlobalOpts;
use crate::runtime::root::Root;

#[derive(clap::Args, Debug)]
#[command(about = "Execute the user-defined process in a created container")]
pub struct Args {
    pub id: String,
}

pub fn run(args: Args, global: &GlobalOpts) -> Result<i32> {
    let root = Root::from_opts(global)?;
    let mut loaded = root.load(&args.id)?;
    start_container(&mut loaded.container)?;
    Ok(0)
}

pub fn start_container(container: &mut Container) -> Result<()> {
    match container.status() {
        ContainerStatus::Created => {}
        ContainerStatus::Stopped => bail!("cannot start a container that has stopped"),
        ContainerStatus::Running => bail!("cannot start an already running container"),
        ContainerStatus::Paused => bail!("cannot start a paused container"),
        ContainerStatus::Creating => bail!("cannot start a container that is still being created"),
    }
    container
        .start()
        .map_err(|e| anyhow!("{}", super::create::describe(&e)))
}
