//! Set: changes to a running VE (`ve set`), parsed and checked whole by the VE layer
//! ([`ve::live::Plan`]) before anything changes, then applied: network, resources
//! (through the same cgroup update as `update`), private area, names; the record saved.

use libcontainer::container::ContainerStatus;

use crate::runtime::bundle::load_spec;
use crate::runtime::error::Result;
use crate::runtime::lifecycle::pids;
use crate::runtime::Runtime;
use crate::ve::live::{self, Changes, Plan, Setting};
use crate::ve::{self, resources, view};

impl Runtime {
    pub fn set(&self, id: &str, changes: &Changes) -> Result<()> {
        let mut loaded = view::load_ve(self, id)?;
        let running = matches!(
            loaded.container.status(),
            ContainerStatus::Running | ContainerStatus::Created | ContainerStatus::Paused
        );
        let pid = match loaded.container.pid() {
            Some(p) if running => p.as_raw(),
            _ => return Err(view::not_running(id)),
        };
        let ve_dir = self.root.ve_dir(id);
        let mut current_ram = || -> Result<Option<u64>, ve::VeError> {
            let derived = load_spec(&ve_dir).map_err(|e| {
                live::refuse(Setting::Resource("ram"), format!("the VE's limit: {e}"))
            })?;
            let ram = derived
                .linux()
                .as_ref()
                .and_then(|l| l.resources().as_ref())
                .and_then(|r| *r.memory())
                .and_then(|m| m.limit());
            Ok(ram.filter(|r| *r >= 0).map(|r| r as u64))
        };
        let plan = Plan::parse(changes, &loaded.record.ve, &mut current_ram)?;
        let record = &mut loaded.record;
        if plan.resources.as_ref().is_some_and(|r| r.needs_io_device())
            && record.ve.io_dev.is_none()
        {
            let derived = load_spec(&ve_dir)?;
            record.ve.io_dev = Some(ve::io_device(&derived, &record.ve)?);
        }
        plan.apply_net(&mut record.ve, pid)?;
        if let Some(res) = &plan.resources {
            self.apply_resources(&loaded.container, &res.to_oci(record.ve.io_dev))?;
            let pids = pids(&loaded.container)?;
            if let Some(p) = res.ioprio {
                for &pid in &pids {
                    // A process that exited meanwhile is no failure.
                    let _ = resources::set_process_ioprio(pid, p);
                }
            }
            if let Some(n) = res.numfile {
                for &pid in &pids {
                    resources::set_process_numfile(pid, n).map_err(|e| {
                        live::refuse(
                            Setting::Resource("numfile"),
                            format!(
                                "process {pid}: {e} (raising the hard limit needs CAP_SYS_RESOURCE)"
                            ),
                        )
                    })?;
                }
                record.ve.numfile = Some(n);
            }
        }
        plan.apply_disk(&mut record.ve)?;
        plan.apply_names(&mut record.ve, pid)?;
        record.save(&ve_dir)?;
        if changes.save {
            live::save_to_bundle(&record.bundle, changes, &record.ve)?;
        }
        Ok(())
    }
}
