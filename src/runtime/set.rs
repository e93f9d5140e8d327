//! Set: changes to a VE (`ve set`). A stopped system VE's saved settings (its `ve.conf`)
//! change for its next start. A running VE's changes are parsed and checked whole by the
//! VE layer ([`ve::live::Plan`]) before anything changes, then applied one step at a
//! time in an order the kernel accepts: network, resources by controller (processes, CPU,
//! memory, I/O), names, `--save`, private area, per-process limits. When a step fails,
//! the steps before it are put back in reverse order and the error names the step.

use std::path::{Path, PathBuf};

use libcontainer::container::ContainerStatus;
use oci_spec::runtime::Spec;

use crate::runtime::bundle::load_spec;
use crate::runtime::error::{Error, Result};
use crate::runtime::lifecycle::pids;
use crate::runtime::root::Loaded;
use crate::runtime::Runtime;
use crate::sys::cgroups;
use crate::ve::live::{self, refuse, Changes, Current, Plan, Setting};
use crate::ve::net::Addr;
use crate::ve::system::{lifecycle, VeConf, DISK_IMAGE, VE_CONF};
use crate::ve::{self, resources, view, VeError, VeRecord, PREFIX};

/// How to put one applied step back.
enum Undo {
    /// The addresses the step removed (with their prefixes); the rest is in the plan.
    Net(Vec<Addr>),
    Cgroup(cgroups::Snapshot),
    Hostname(String),
    /// A file and its content before (`None`: it did not exist).
    Files(Vec<(PathBuf, Option<Vec<u8>>)>),
    /// The VE's resolv.conf before (`None`: it had none).
    ResolvConf(Option<Vec<u8>>),
}

impl Runtime {
    pub fn set(&self, id: &str, changes: &Changes) -> Result<()> {
        if lifecycle::existing(id).is_ok() {
            let (dir, _lock) = lifecycle::lock(id)?;
            let running = matches!(
                self.root.read(id),
                Ok((c, _)) if c.status() != ContainerStatus::Stopped
            );
            if !running {
                return set_stopped(id, &dir, changes);
            }
            return self.set_running(id, changes, Some(&dir));
        }
        self.set_running(id, changes, None)
    }

    /// `system`: the directory of a system VE, whose `ve.conf` `--save` writes.
    fn set_running(&self, id: &str, changes: &Changes, system: Option<&Path>) -> Result<()> {
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
        let derived = load_spec(&ve_dir)?;
        let dns = !changes.nameserver.is_empty() || !changes.searchdomain.is_empty();
        let now = current(&derived, &loaded.record.ve, pid, dns)?;
        let plan = Plan::parse(changes, &loaded.record.ve, &now)?;
        let conf = match (changes.save, system) {
            (true, Some(dir)) => Some(VeConf::load(dir)?),
            _ => None,
        };
        let res = plan.resources.clone().unwrap_or_default();
        // The VE's processes only for the settings that go to each of them: listing them
        // builds a cgroup manager, which reads the mount table once per controller.
        let procs = if res.numfile.is_some() || res.ioprio.is_some() {
            pids(&loaded.container)?
        } else {
            Vec::new()
        };
        if let Some(n) = res.numfile {
            check_numfile(&procs, n)?;
        }
        if res.needs_io_device() && loaded.record.ve.io_dev.is_none() {
            loaded.record.ve.io_dev = Some(ve::io_device(&derived, &loaded.record.ve)?);
        }
        let derived_file = ve_dir.join("config.json");
        let derived_before = std::fs::read(&derived_file).ok();
        let mut undo: Vec<(Setting, Undo)> = Vec::new();
        let applied = self.apply_steps(&mut loaded, pid, &plan, changes, conf, system, &mut undo);
        if let Err((step, e)) = applied {
            let (put_back, left) = self.undo(&mut loaded, pid, &plan, undo);
            if let Some(old) = derived_before {
                let _ = std::fs::write(&derived_file, old);
            }
            // The record says what is there now, for teardown, even if some of it could
            // not be put back.
            loaded.record.save(&ve_dir)?;
            return Err(VeError::Failed {
                step,
                problem: e,
                put_back,
                left,
            }
            .into());
        }
        // What processes have no file for, once nothing after it can fail: a hard limit
        // lowered cannot be raised back without CAP_SYS_RESOURCE.
        if let Some(p) = res.ioprio {
            for &pid in &procs {
                // A process that exited meanwhile is no failure.
                let _ = resources::set_process_ioprio(pid, p);
            }
        }
        if let Some(n) = res.numfile {
            for &pid in &procs {
                match resources::set_process_numfile(pid, n) {
                    Err(e) if e.raw_os_error() != Some(libc::ESRCH) => {
                        return Err(refuse(
                            Setting::Resource("numfile"),
                            format!("process {pid}: {e}; the other settings are in place"),
                        )
                        .into())
                    }
                    _ => {}
                }
            }
            loaded.record.ve.numfile = Some(n);
        }
        loaded.record.save(&ve_dir)?;
        record_settings(&ve_dir, changes, &loaded.record.ve)?;
        Ok(())
    }

    /// Applies the plan step by step, noting in `undo` how to put each back; an error
    /// names its step.
    #[allow(clippy::too_many_arguments)]
    fn apply_steps(
        &self,
        loaded: &mut Loaded,
        pid: i32,
        plan: &Plan,
        changes: &Changes,
        conf: Option<VeConf>,
        system: Option<&Path>,
        undo: &mut Vec<(Setting, Undo)>,
    ) -> std::result::Result<(), (Setting, String)> {
        let ve_err = |e: Error| match e {
            Error::Ve(v) => v,
            other => VeError::Refused(crate::runtime::error::chain(&other)),
        };
        if plan.net_changes() {
            let step = net_step(plan);
            let removed: Vec<Addr> = loaded
                .record
                .ve
                .net
                .as_ref()
                .map(|n| {
                    n.ips
                        .iter()
                        .filter(|a| plan.del.contains(&a.ip))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            plan.apply_net(&mut loaded.record.ve, pid)
                .map_err(|e| (step, problem(e)))?;
            undo.push((step, Undo::Net(removed)));
        }
        if let Some(res) = &plan.resources {
            let cgroup = loaded
                .container
                .spec()
                .map(|c| c.cgroup_path)
                .map_err(|e| (Setting::Resource("ram"), problem(ve_err(e.into()))))?;
            for part in res.parts(&plan.resources_given) {
                let step = Setting::Resource(part.name);
                let before = cgroups::snapshot(&cgroup, part.files);
                let oci = part.config.to_oci(loaded.record.ve.io_dev);
                if let Err(e) = self.apply_resources(&loaded.container, &oci) {
                    // Part of a controller's files may have been written.
                    let _ = before.restore();
                    return Err((step, problem(ve_err(e))));
                }
                undo.push((step, Undo::Cgroup(before)));
            }
        }
        if let Some(h) = &plan.hostname {
            let old = loaded.record.ve.hostname.clone();
            Plan::apply_hostname(h, &mut loaded.record.ve, pid)
                .map_err(|e| (Setting::Hostname, problem(e)))?;
            if let Some(old) = old {
                undo.push((Setting::Hostname, Undo::Hostname(old)));
            }
        }
        if let Some(text) = &plan.resolv_conf {
            let step = if changes.nameserver.is_empty() {
                Setting::Searchdomain
            } else {
                Setting::Nameserver
            };
            let old =
                Plan::read_resolv_conf(&loaded.record.ve, pid).map_err(|e| (step, problem(e)))?;
            Plan::apply_resolv_conf(Some(text.as_bytes()), &loaded.record.ve, pid)
                .map_err(|e| (step, problem(e)))?;
            undo.push((step, Undo::ResolvConf(old)));
        }
        if changes.save {
            let target = system.zip(conf);
            let files = match &target {
                Some((dir, _)) => vec![dir.join(VE_CONF), dir.join("config.json")],
                None => vec![loaded.record.bundle.join("config.json")],
            };
            let before: Vec<(PathBuf, Option<Vec<u8>>)> = files
                .into_iter()
                .map(|f| {
                    let old = std::fs::read(&f).ok();
                    (f, old)
                })
                .collect();
            if let Err(e) = save(changes, &loaded.record, target) {
                let _ = restore_files(before);
                return Err((Setting::Save, problem(e)));
            }
            undo.push((Setting::Save, Undo::Files(before)));
        }
        // Last of what can fail: a private area that grew cannot shrink back while
        // mounted.
        plan.apply_disk(&mut loaded.record.ve)
            .map_err(|e| (Setting::DiskSpace, problem(e)))?;
        Ok(())
    }

    /// Puts back the steps in `undo`, last first; returns the settings put back and
    /// those that could not be, with why.
    fn undo(
        &self,
        loaded: &mut Loaded,
        pid: i32,
        plan: &Plan,
        undo: Vec<(Setting, Undo)>,
    ) -> (Vec<Setting>, Vec<(Setting, String)>) {
        let mut put_back = Vec::new();
        let mut left = Vec::new();
        for (step, u) in undo.into_iter().rev() {
            let result: std::result::Result<(), String> = match u {
                Undo::Net(removed) => plan
                    .undo_net(&mut loaded.record.ve, pid, &removed)
                    .map_err(|e| e.to_string()),
                Undo::Cgroup(snap) => snap.restore().map_err(|e| e.to_string()),
                Undo::Hostname(old) => Plan::apply_hostname(&old, &mut loaded.record.ve, pid)
                    .map_err(|e| e.to_string()),
                Undo::Files(files) => restore_files(files).map_err(|e| e.to_string()),
                Undo::ResolvConf(old) => {
                    Plan::apply_resolv_conf(old.as_deref(), &loaded.record.ve, pid)
                        .map_err(|e| e.to_string())
                }
            };
            match result {
                Ok(()) => put_back.push(step),
                Err(why) => left.push((step, why)),
            }
        }
        put_back.reverse();
        (put_back, left)
    }
}

/// What went wrong in a step, without the setting's name (the step names it).
fn problem(e: VeError) -> String {
    match e {
        VeError::Setting { problem, .. } => problem,
        other => other.to_string(),
    }
}

/// Writes files back as they were (`None`: removes one that did not exist).
fn restore_files(files: Vec<(PathBuf, Option<Vec<u8>>)>) -> std::io::Result<()> {
    for (path, old) in files {
        match old {
            Some(data) => std::fs::write(&path, data)?,
            None => match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            },
        }
    }
    Ok(())
}

/// A stopped system VE: the change goes into its `ve.conf` (and the config.json made
/// from it), for its next start.
fn set_stopped(id: &str, dir: &Path, changes: &Changes) -> Result<()> {
    if dir.join(lifecycle::SUSPEND_DIR).exists() {
        return Err(Error::State(format!(
            "VE {id} is suspended: it comes back with the settings of its checkpoint; \
             change them once it runs again (vzrun ve resume {id})"
        )));
    }
    if !changes.save {
        return Err(refuse(
            Setting::Save,
            "needed: the VE is not running, so a change is for its next start",
        )
        .into());
    }
    if changes.diskinodes.is_some() && dir.join(DISK_IMAGE).exists() {
        return Err(refuse(
            Setting::DiskInodes,
            "the inode count is fixed when the image is made; it grows with diskspace",
        )
        .into());
    }
    let mut conf = VeConf::load(dir)?;
    live::change_settings(changes, &mut conf.settings, &mut conf.hostname)?;
    conf.save(dir)?;
    conf.write_bundle(dir)?;
    Ok(())
}

/// What the running VE has now: its settings as recorded in its derived config, the
/// memory limits in force, its resolv.conf (read only for a change to `dns`: the VE can
/// make the file unreadable, which must not stop its other settings from changing).
fn current(derived: &Spec, ve: &VeRecord, pid: i32, dns: bool) -> Result<Current> {
    let memory = derived
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| *r.memory());
    let resolv_conf = if dns {
        Plan::read_resolv_conf(ve, pid)?
    } else {
        None
    };
    Ok(Current {
        settings: derived
            .annotations()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| k.starts_with(PREFIX))
            .collect(),
        ram: memory.and_then(|m| m.limit()),
        memsw: memory.and_then(|m| m.swap()),
        resolv_conf: resolv_conf
            .map(|d| String::from_utf8_lossy(&d).into_owned())
            .unwrap_or_default(),
    })
}

/// The setting a network step is named by: a route the kernel refuses is the likeliest
/// failure once the addresses were checked.
fn net_step(plan: &Plan) -> Setting {
    if !plan.routes_add.is_empty() {
        Setting::RouteAdd
    } else if !plan.add.is_empty() {
        Setting::IpAdd
    } else if !plan.del.is_empty() {
        Setting::IpDel
    } else {
        Setting::RouteDel
    }
}

/// Refuses a numfile above a process's hard limit when vzrun may not raise hard limits:
/// found out halfway, the change could not be taken back from the processes already
/// lowered.
fn check_numfile(procs: &[i32], n: u64) -> Result<()> {
    if resources::may_raise_limits() {
        return Ok(());
    }
    for &pid in procs {
        if let Ok(hard) = resources::process_numfile_hard(pid) {
            if n > hard {
                return Err(refuse(
                    Setting::Resource("numfile"),
                    format!(
                        "{n} is above the hard limit {hard} of process {pid}: raising it needs CAP_SYS_RESOURCE, which vzrun does not have here"
                    ),
                )
                .into());
            }
        }
    }
    Ok(())
}

/// `--save` of a running VE: a system VE's ve.conf (and the config.json made from it),
/// else the bundle's annotations.
fn save(
    changes: &Changes,
    record: &crate::runtime::state::Record,
    system: Option<(&Path, VeConf)>,
) -> std::result::Result<(), VeError> {
    let Some((dir, mut conf)) = system else {
        return live::save_to_bundle(&record.bundle, changes, &record.ve);
    };
    for (k, v) in live::saved_values(changes, &record.ve) {
        match v {
            Some(v) => conf.settings.insert(k, v),
            None => conf.settings.remove(&k),
        };
    }
    if let Some(h) = &changes.hostname {
        conf.hostname = Some(h.clone());
    }
    conf.save(dir)?;
    conf.write_bundle(dir)
}

/// Notes the new values in the VE's derived config, which `ve show` reads as the VE's
/// settings while it runs.
fn record_settings(ve_dir: &Path, changes: &Changes, ve: &VeRecord) -> Result<()> {
    let mut spec = load_spec(ve_dir)?;
    let mut map: serde_json::Map<String, serde_json::Value> = spec
        .annotations()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    live::put_annotations(&mut map, &live::saved_values(changes, ve));
    spec.set_annotations(Some(
        map.into_iter()
            .filter_map(|(k, v)| Some((k, v.as_str()?.to_string())))
            .collect(),
    ));
    if let Some(h) = &changes.hostname {
        spec.set_hostname(Some(h.clone()));
    }
    spec.save(ve_dir.join("config.json"))
        .map_err(|e| Error::Step(format!("save config: {e}")))
}
