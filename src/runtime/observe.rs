//! What callers read about containers without changing them: the state document, the
//! list, the processes and the cgroup statistics.

use libcgroups::common::CgroupManager;
use libcgroups::stats::Stats;
use libcontainer::container::ContainerStatus;

use crate::runtime::error::{Error, Result};
use crate::runtime::lifecycle::pids;
use crate::runtime::state::{oci_state, OciState};
use crate::runtime::Runtime;
use crate::sys::cgroups;

impl Runtime {
    pub fn state(&self, id: &str) -> Result<OciState> {
        let loaded = self.root.load(id)?;
        Ok(oci_state(&loaded.container, &loaded.record, false))
    }

    /// Every container under the root, read without waiting on busy ones.
    pub fn list(&self) -> Vec<OciState> {
        self.root
            .ids()
            .iter()
            .filter_map(|id| self.root.read(id).ok())
            .map(|(c, r)| oci_state(&c, &r, true))
            .collect()
    }

    pub fn pids(&self, id: &str) -> Result<Vec<i32>> {
        let loaded = self.root.load(id)?;
        pids(&loaded.container)
    }

    /// The cgroup statistics of a container that has not stopped; None once it has
    /// stopped or gone (an events stream ends then).
    pub fn stats(&self, id: &str, first: bool) -> Result<Option<Stats>> {
        let container = if first {
            self.root.load(id)?.container
        } else {
            match self.root.read(id) {
                Ok((c, _)) => c,
                Err(_) => return Ok(None),
            }
        };
        if container.status() == ContainerStatus::Stopped {
            if first {
                return Err(Error::State(format!(
                    "container with id {id} is not running"
                )));
            }
            return Ok(None);
        }
        let config = container.spec()?;
        let stats = cgroups::manager(&config.cgroup_path, id)?
            .stats()
            .map_err(|e| Error::Step(format!("read stats: {e}")))?;
        Ok(Some(stats))
    }

    /// A watch on the OOMs of a container's memory cgroup, for `events` to report them;
    /// None when the container has no memory cgroup to watch.
    pub fn watch_oom(&self, id: &str) -> Result<Option<cgroups::OomWatch>> {
        let (container, _) = self.root.read(id)?;
        let config = container.spec()?;
        Ok(cgroups::watch_oom(&config.cgroup_path)?)
    }
}
