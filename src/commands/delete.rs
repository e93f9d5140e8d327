//! `vzrun delete`: remove a stopped (or, with --force, any) container and everything the
//! VE layer set up for it.

use anyhow::{anyhow, bail, Result};
use libcontainer::container::ContainerStatus;

use crate::cli::GlobalOpts;
use crate::runtime::root::{Lock, Root};
use crate::runtime::state::{status_word, Record};
use crate::ve;

#[derive(clap::Args, Debug)]
#[command(about = "Delete any resources held by the container")]
pub struct Args {
    /// Forcibly delete the container if it is still running (uses SIGKILL)
    #[arg(short = 'f', long)]
    pub force: bool,
    pub id: String,
}

pub fn run(args: Args, global: &GlobalOpts) -> Result<i32> {
    let root = Root::from_opts(global)?;
    delete_container(&root, &args.id, args.force)?;
    Ok(0)
}

pub fn delete_container(root: &Root, id: &str, force: bool) -> Result<()> {
    crate::runtime::root::validate_id(id)?;
    let lock = match root.lock(id) {
        Ok(l) => l,
        Err(e) => {
            // runc: --force on an ID that does not exist is not an error.
            if force {
                return Ok(());
            }
            return Err(e);
        }
    };
    delete_locked(root, id, force, lock)
}

/// [`delete_container`] for a caller that already holds the container's lock (a
/// checkpoint that stopped the VE, a restore whose post-restore script failed).
pub fn delete_locked(root: &Root, id: &str, force: bool, lock: Lock) -> Result<()> {
    let ve_dir = root.ve_dir(id);
    let record = Record::load(&ve_dir).unwrap_or_default();
    match root.read(id) {
        Ok((mut container, _)) => {
            let status = container.status();
            if !force && !matches!(status, ContainerStatus::Stopped | ContainerStatus::Created) {
                bail!(
                    "cannot delete container {id} that is not stopped: {}",
                    status_word(status)
                );
            }
            if status == ContainerStatus::Paused {
                // SIGKILL stays pending in a frozen cgroup on v1: thaw first.
                let _ = container.resume();
            }
            container
                .delete(true)
                .map_err(|e| anyhow!("{}", super::create::describe(&e)))?;
        }
        Err(_) => {
            // A create that died between claiming the ID and libcontainer's state file:
            // nothing of libcontainer's exists, only our side needs to go.
        }
    }
    ve::teardown(&record.ve);
    root.release(id);
    drop(lock);
    Ok(())
}
