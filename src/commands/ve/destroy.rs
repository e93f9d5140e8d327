//! `vzrun ve destroy ID`: remove a stopped VE: its bundle, record, console log and
//! private area.

use std::fs;

use anyhow::{bail, Context, Result};
use libcontainer::container::ContainerStatus;

use crate::runtime::root::Root;

#[derive(clap::Args, Debug)]
pub struct DestroyArgs {
    pub id: String,
}

pub fn run(root: &Root, args: DestroyArgs) -> Result<i32> {
    let id = &args.id;
    let (dir, _lock) = super::lock_ve(id)?;
    if let Ok((container, _)) = root.read(id) {
        if container.status() != ContainerStatus::Stopped {
            bail!("VE {id} is running: stop it first (vzrun ve stop {id})");
        }
        crate::commands::delete::delete_container(root, id, true)?;
    }
    // Renamed first, so the ID is free at once and a failure never leaves half a VE
    // under its name.
    let trash = dir.with_file_name(format!(".{id}.destroy-{}", std::process::id()));
    fs::rename(&dir, &trash).with_context(|| format!("remove {}", dir.display()))?;
    fs::remove_dir_all(&trash).with_context(|| format!("remove {}", trash.display()))?;
    println!("VE {id} destroyed");
    Ok(0)
}
