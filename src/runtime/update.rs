//! Update: new resources for a running container's cgroup, recorded in its derived
//! config so that later reads (`ve stat`, exec, a checkpoint) see them.

use libcgroups::common::{CgroupManager, ControllerOpt};
use libcontainer::container::Container;
use oci_spec::runtime::LinuxResources;

use crate::runtime::bundle::load_spec;
use crate::runtime::error::{Error, Result};
use crate::runtime::Runtime;
use crate::sys::cgroups;
use crate::ve::resources::merge;

impl Runtime {
    pub fn update(&self, id: &str, resources: &LinuxResources) -> Result<()> {
        let loaded = self.root.load(id)?;
        self.apply_resources(&loaded.container, resources)
    }

    /// Applies resources to a container's cgroup and records them in its derived config.
    pub fn apply_resources(&self, container: &Container, resources: &LinuxResources) -> Result<()> {
        let config = container.spec()?;
        cgroups::manager(&config.cgroup_path, container.id())?
            .apply(&ControllerOpt {
                resources,
                disable_oom_killer: false,
                oom_score_adj: None,
                freezer_state: None,
            })
            .map_err(|e| Error::Step(format!("update cgroup: {e}")))?;
        let dir = self.root.ve_dir(container.id());
        let mut spec = load_spec(&dir)?;
        if let Some(mut linux) = spec.linux().clone() {
            let mut current = linux.resources().clone().unwrap_or_default();
            merge(&mut current, resources);
            linux.set_resources(Some(current));
            spec.set_linux(Some(linux));
            spec.save(dir.join("config.json"))
                .map_err(|e| Error::Step(format!("save config: {e}")))?;
        }
        Ok(())
    }
}
