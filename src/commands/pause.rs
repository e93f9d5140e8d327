//! `vzrun pause`: freeze every process of a running container.

use anyhow::{anyhow, bail, Result};
use libcontainer::container::ContainerStatus;

use crate::cli::GlobalOpts;
use crate::container::Root;

#[derive(clap::Args, Debug)]
#[command(about = "Suspend all processes inside the container")]
pub struct Args {
    pub id: String,
}

pub fn run(args: Args, global: &GlobalOpts) -> Result<i32> {
    let root = Root::from_opts(global)?;
    let mut loaded = root.load(&args.id)?;
    if loaded.container.status() != ContainerStatus::Running {
        bail!("container not running");
    }
    loaded
        .container
        .pause()
        .map_err(|e| anyhow!("{}", super::create::describe(&e)))?;
    Ok(0)
}
