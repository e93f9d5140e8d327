//! `vzrun resume`: thaw a paused container.

use anyhow::{anyhow, bail, Result};
use libcontainer::container::ContainerStatus;

use crate::cli::GlobalOpts;
use crate::runtime::root::Root;

#[derive(clap::Args, Debug)]
#[command(about = "Resume all processes that have been previously paused")]
pub struct Args {
    pub id: String,
}

pub fn run(args: Args, global: &GlobalOpts) -> Result<i32> {
    let root = Root::from_opts(global)?;
    resume_container(&root, &args.id)?;
    Ok(0)
}

pub fn resume_container(root: &Root, id: &str) -> Result<()> {
    let mut loaded = root.load(id)?;
    if loaded.container.status() != ContainerStatus::Paused {
        bail!("container not paused");
    }
    loaded
        .container
        .resume()
        .map_err(|e| anyhow!("{}", super::create::describe(&e)))?;
    Ok(())
}
