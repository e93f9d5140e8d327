//! Checkpoint: dump a running VE with CRIU (vzctl chkpnt) between its pre-checkpoint and
//! post-checkpoint action scripts. Without `leave_running` the VE is gone afterwards, as
//! with runc, and a private area it had moves into the image directory. [`Source`] is what
//! any dump needs of a running VE; a migration's dumps take it from here too.

use std::path::PathBuf;

use oci_spec::runtime::Spec;

use crate::runtime::bundle;
use crate::runtime::error::{Error, Result};
use crate::runtime::lifecycle::can_checkpoint;
use crate::runtime::root::{Loaded, Root};
use crate::runtime::state::{oci_state, OciState};
use crate::runtime::Runtime;
use crate::ve::actions::{Action, Actions, Point, Runner};
use crate::ve::checkpoint::{self, DumpOpts, DumpTarget, Dumped};

/// What `checkpoint` takes.
pub struct CheckpointOptions {
    pub id: String,
    pub dump: DumpOpts,
}

impl Runtime {
    /// Returns what the dump reports (how long the VE was frozen).
    pub fn checkpoint(&self, opts: &CheckpointOptions) -> Result<Dumped> {
        let (id, dump) = (opts.id.as_str(), &opts.dump);
        let _step =
            tracing::debug_span!("checkpoint", id, image = %dump.criu.image.display()).entered();
        let root = &self.root;
        // The action scripts run without the container's lock: a ve: command is a
        // `vzrun exec`, which takes it.
        let (actions, pid, state) = {
            let loaded = root.load(id)?;
            can_checkpoint(id, loaded.container.status())?;
            let spec = bundle::load_spec(&root.ve_dir(id))?;
            let actions = crate::ve::config_from_spec(&spec)?.actions;
            let state = oci_state(&loaded.container, &loaded.record, false);
            (actions, loaded.container.pid().map(|p| p.as_raw()), state)
        };
        if !dump.leave_running && matches!(actions.get(Point::PostCheckpoint), Some(Action::Ve(_)))
        {
            return Err(Error::Config(
                "annotation io.vzrun.hooks.post-checkpoint: a ve: command needs --leave-running \
                 (the VE is gone after the checkpoint)"
                    .into(),
            ));
        }
        run_action(self, id, &actions, Point::PreCheckpoint, &state)
            .map_err(|e| Error::Step(format!("{e}: checkpoint aborted, the VE keeps running")))?;

        let loaded = root.load(id)?;
        can_checkpoint(id, loaded.container.status())?;
        if loaded.container.pid().map(|p| p.as_raw()) != pid {
            return Err(Error::State(format!(
                "container {id} changed while its pre-checkpoint script ran"
            )));
        }
        let dumped = Source::of(root, id, &loaded)?.dump(dump, id)?;
        let mut state = oci_state(&loaded.container, &loaded.record, false);
        if dump.leave_running {
            drop(loaded);
            // An area saved by an earlier checkpoint into this directory is not this one's.
            let _ = std::fs::remove_file(dump.criu.image.join(checkpoint::PRIVATE_IMAGE));
        } else {
            self.retire_dumped(id, loaded, &dump.criu.image)?;
            state.status = "stopped".into();
            state.pid = 0;
        }
        run_action(self, id, &actions, Point::PostCheckpoint, &state)?;
        Ok(dumped)
    }

    /// What is left of a VE that a dump has stopped goes; its private area outlives it
    /// inside the checkpoint: delete keeps the image (marked persistent for it), then it
    /// moves into the image directory.
    fn retire_dumped(&self, id: &str, loaded: Loaded, image: &std::path::Path) -> Result<()> {
        let private = loaded
            .record
            .ve
            .disk
            .as_ref()
            .filter(|d| !d.persistent && d.image.exists())
            .map(|d| d.image.clone());
        if private.is_some() {
            let mut rec = loaded.record.clone();
            if let Some(d) = rec.ve.disk.as_mut() {
                d.persistent = true;
            }
            rec.save(&self.root.ve_dir(id))?;
        }
        // CRIU has killed the processes; what is left is the container's shell.
        let Loaded {
            container,
            _lock: lock,
            ..
        } = loaded;
        drop(container);
        self.delete_locked(id, true, lock)?;
        if let Some(img) = private {
            checkpoint::move_image(&img, &image.join(checkpoint::PRIVATE_IMAGE))?;
        }
        Ok(())
    }

    /// What a dump of the running VE `id` needs, read under its lock.
    pub fn dump_source(&self, id: &str) -> Result<Source> {
        Source::of(&self.root, id, &self.root.load(id)?)
    }
}

/// Runs one action script with the VE's state on its stdin; a `ve:` command calls back
/// into this binary.
pub(crate) fn run_action(
    rt: &Runtime,
    id: &str,
    actions: &Actions,
    point: Point,
    state: &OciState,
) -> Result<()> {
    // Not current_exe(): a sealed vzrun runs from a memfd, which has no path of its own.
    let exe = PathBuf::from("/proc/self/exe");
    let state = serde_json::to_string(state).map_err(|e| Error::Step(format!("state: {e}")))?;
    actions.run(
        point,
        &Runner {
            hooks_dir: &rt.hooks_dir(),
            vzrun: &exe,
            root: &rt.root.path,
            id,
            state,
        },
    )?;
    Ok(())
}

/// What a dump needs of a running VE, read under its lock (checkpoint, migration).
pub struct Source {
    pid: i32,
    /// The VE's root as its processes see it: a private area's overlay, else the bundle's.
    rootfs: PathBuf,
    spec: Spec,
    cgroup: PathBuf,
    mac: Option<String>,
    /// Read before the dump: afterwards the processes may be gone.
    counters: Vec<crate::ve::resources::Carried>,
}

impl Source {
    fn of(root: &Root, id: &str, loaded: &Loaded) -> Result<Source> {
        let pid = loaded
            .container
            .pid()
            .map(|p| p.as_raw())
            .ok_or_else(|| Error::State(format!("container {id} has no process")))?;
        let mut spec = bundle::load_spec(&root.ve_dir(id))?;
        // The /proc view's binds were made by vzrun, not from the spec: CRIU must know
        // them as external mounts.
        if let Some(binds) = &loaded.record.ve.proc_view {
            binds.add_to(&mut spec);
        }
        let cgroup = loaded.container.spec()?.cgroup_path;
        let rootfs = spec
            .root()
            .as_ref()
            .map(|r| r.path().clone())
            .unwrap_or_else(|| loaded.record.rootfs.clone());
        Ok(Source {
            pid,
            rootfs,
            spec,
            cgroup,
            mac: loaded.record.ve.net.as_ref().and_then(|n| n.mac.clone()),
            counters: crate::ve::resources::beancounters(pid, &loaded.record.ve)
                .iter()
                .map(|c| c.carried())
                .collect(),
        })
    }

    /// Dumps the VE into `o.criu.image`, with what a restore needs: its MAC (for the same
    /// ID) and its beancounters' counts.
    pub fn dump(&self, o: &DumpOpts, id: &str) -> Result<Dumped> {
        self.dump_at(o, id, || Ok(()))
    }

    /// [`Source::dump`], running `at_freeze` once CRIU waits for the request, just before
    /// the VE is frozen (see [`checkpoint::dump`]).
    pub fn dump_at(
        &self,
        o: &DumpOpts,
        id: &str,
        at_freeze: impl FnOnce() -> Result<(), String>,
    ) -> Result<Dumped> {
        let dumped = checkpoint::dump(
            &DumpTarget {
                pid: self.pid,
                rootfs: &self.rootfs,
                spec: &self.spec,
                cgroup_path: &self.cgroup,
            },
            o,
            at_freeze,
        )?;
        checkpoint::Meta {
            id: Some(id.to_string()),
            mac: self.mac.clone(),
            counters: self.counters.clone(),
        }
        .save(&o.criu.image)?;
        Ok(dumped)
    }
}
