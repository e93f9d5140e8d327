//! `vzrun pause`: freeze every process of a running container.

use anyhow::{anyhow, bail, Result};
use libcontainer::container::ContainerStatus;

use crate::cli::GlobalOpts;
use crate::runtime::root::Root;

#[derive(clap::Args, Debug)]
#[command(about = "Suspend all processes inside the container")]
pub struct Args {
    pub id: String,
}

pub fn run(args: Args, global: &GlobalOpts) -> Result<i32> {
    let root = Root::from_opts(global)?;
    pause_container(&root, &args.id)?;
    Ok(0)
}

pub fn pause_container(root: &Root, id: &str) -> Result<()> {
    let mut loaded = root.load(id)?;
    if loaded.container.status() != ContainerStatus::Running {
        bail!("container not running");
    }
    loaded
        .container
        .pause()
        .map_err(|e| anyhow!("{}", super::create::describe(&e)))?;
    Ok(())
}
