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
        crate::runtime::lifecycle::can_update(loaded.container.status())?;
        // A pids limit of 0 means "leave it as it is" to runc (its cgroup code writes
        // pids.max only for a non-zero limit): `--pids-limit 0` changes nothing.
        let mut resources = resources.clone();
        if resources.pids().as_ref().is_some_and(|p| p.limit() == 0) {
            resources.set_pids(None);
        }
        self.apply_resources(&loaded.container, &resources)
    }

    /// Applies resources to a container's cgroup and records them in its derived config.
    pub fn apply_resources(&self, container: &Container, resources: &LinuxResources) -> Result<()> {
        let config = container.spec()?;
        let dir = self.root.ve_dir(container.id());
        let mut spec = load_spec(&dir)?;
        // libcgroups writes memory.oom_control either way: the container's own setting
        // (or the update's) is kept rather than turning the OOM killer back on.
        let recorded = spec.linux().as_ref().and_then(|l| l.resources().clone());
        let disable_oom_killer = cgroups::oom_killer_disabled(Some(resources))
            || (resources
                .memory()
                .as_ref()
                .and_then(|m| m.disable_oom_killer())
                .is_none()
                && cgroups::oom_killer_disabled(recorded.as_ref()));
        cgroups::manager(&config.cgroup_path, container.id())?
            .apply(&ControllerOpt {
                resources,
                disable_oom_killer,
                oom_score_adj: None,
                freezer_state: None,
            })
            .map_err(|e| Error::Step(format!("update cgroup: {e}")))?;
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
