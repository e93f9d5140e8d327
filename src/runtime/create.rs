//! Create: claim the ID, derive the spec libcontainer gets (absolute rootfs, vzrun's
//! cgroup path, what the VE layer prepares on the host), have libcontainer create the init,
//! configure the VE around it. On any failure nothing stays behind: the VE record names
//! what was made, step by step, and [`abandon`] takes exactly that down.

use std::path::PathBuf;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;
use oci_spec::runtime::Spec;

use crate::runtime::bundle::{self, cgroup_path, make_cwd, Bundle};
use crate::runtime::create_direct::Direct;
use crate::runtime::error::{Error, Result};
use crate::runtime::executor::{take_start_container_hooks, HookContext, VzExecutor};
use crate::runtime::hooks;
use crate::runtime::root::{validate_id, Lock, Root};
use crate::runtime::seccomp_agent::AgentState;
use crate::runtime::state::Record;
use crate::runtime::Runtime;
use crate::ve;

/// What `create` and `run` take.
pub struct CreateOptions {
    pub id: String,
    pub bundle: PathBuf,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub no_pivot: bool,
    pub preserve_fds: i32,
    /// False only for a foreground `run` that relays stdio itself.
    pub detach: bool,
    /// The bundle's config, when the caller has already read it (`run` does, to see
    /// whether it needs a terminal): it is parsed once per start.
    pub spec: Option<Spec>,
    /// The administrator made this bundle (`ve create`): its VE settings are not a
    /// tenant's, and the host policy does not bound them.
    pub trusted: bool,
}

/// A claimed ID with vzrun's record of it.
pub struct Claimed {
    pub lock: Lock,
    pub ve_dir: PathBuf,
    pub record: Record,
}

pub fn claim(root: &Root, id: &str, bundle: &Bundle) -> Result<Claimed> {
    let lock = root.claim(id)?;
    Ok(Claimed {
        lock,
        ve_dir: root.ve_dir(id),
        record: Record {
            bundle: bundle.bundle.clone(),
            rootfs: bundle.rootfs.clone(),
            ve: Default::default(),
            lent_sys_admin: bundle.lent,
            home_added: false,
            init_start: None,
        },
    })
}

impl Runtime {
    /// A tenant's bundle asks only for what the host policy allows. Read only when the
    /// spec has VE settings at all, so a plain OCI container never opens the policy.
    pub fn check_policy(&self, bundle: &Bundle) -> Result<()> {
        let Some(annotations) = bundle.spec.annotations() else {
            return Ok(());
        };
        if !annotations.keys().any(|k| k.starts_with(ve::PREFIX)) {
            return Ok(());
        }
        Ok(self.policy()?.check(&bundle.ve_config, annotations)?)
    }

    /// The spec libcontainer (or CRIU) gets: absolute rootfs, vzrun's cgroup path, what
    /// the VE layer prepares on the host, and the create hooks behind the state shim
    /// (runtime::hooks); written to `<root>/.vzrun/<id>/config.json`.
    pub fn derive_spec(&self, id: &str, bundle: &mut Bundle, claimed: &mut Claimed) -> Result<()> {
        let spec = &mut bundle.spec;
        if let Some(mut r) = spec.root().clone() {
            r.set_path(bundle.rootfs.clone());
            spec.set_root(Some(r));
        }
        bundle::absolute_bind_sources(spec, &bundle.bundle);
        if let Some(mut linux) = spec.linux().clone() {
            linux.set_cgroups_path(Some(cgroup_path(
                spec,
                id,
                &self.root.cgroup_tag(),
                self.systemd_cgroup,
            )?));
            spec.set_linux(Some(linux));
        }
        claimed.record.save(&claimed.ve_dir)?;
        let ctx = ve::Ctx {
            root: &self.root.path,
            id,
            dir: &claimed.ve_dir,
        };
        let dir = claimed.ve_dir.clone();
        let mut save = claimed.record.ve_saver(&dir);
        // The host policy may force the /proc view; read only for specs with VE settings
        // (as check_policy), so a plain OCI container keeps the host's files.
        let has_ve = spec
            .annotations()
            .as_ref()
            .is_some_and(|a| a.keys().any(|k| k.starts_with(ve::PREFIX)));
        if has_ve {
            bundle.ve_config.proc.forced = self.policy()?.proc_mode();
        }
        let spec = &mut bundle.spec;
        let step = tracing::debug_span!("ve prepare", id).entered();
        let prepared = ve::prepare(
            &ctx,
            &bundle.ve_config,
            spec,
            &mut claimed.record.ve,
            &mut save,
        );
        drop(step);
        claimed.record.save(&claimed.ve_dir)?;
        prepared?;
        // After prepare: a private area puts an overlay in front of the bundle's rootfs.
        if let Some(r) = spec.root().clone() {
            make_cwd(spec, r.path());
            hooks::wrap_create_hooks(spec, &bundle.bundle, r.path());
            if let Some(p) = spec.process_mut() {
                claimed.record.home_added = bundle::give_home(p, r.path());
            }
        }
        spec.save(claimed.ve_dir.join("config.json"))
            .map_err(|e| Error::Step(format!("write derived config: {e}")))?;
        tracing::debug!(
            config = %claimed.ve_dir.join("config.json").display(),
            rootfs = %spec.root().as_ref().map(|r| r.path().display().to_string()).unwrap_or_default(),
            cgroup = %spec.linux().as_ref().and_then(|l| l.cgroups_path().as_ref()).map(|p| p.display().to_string()).unwrap_or_default(),
            resources = %serde_json::to_string(&spec.linux().as_ref().and_then(|l| l.resources().as_ref())).unwrap_or_default(),
            "derived spec"
        );
        Ok(())
    }

    /// Undoes a failed create or restore: the VE layer's host objects, a libcontainer
    /// directory without state, and the claimed ID.
    pub fn abandon(&self, id: &str, claimed: Claimed) {
        // libcontainer removes its directory and cgroup itself, except when it failed
        // before making them or could not finish its state (a full disk): whatever of it
        // is left belongs to this failed create, and would make the ID look taken.
        if self.root.container_dir(id).exists() {
            self.remove_remains(id);
        }
        tracing::debug!(id, "abandon the failed create");
        ve::teardown(&claimed.record.ve);
        self.root.release(id);
        drop(claimed.lock);
    }

    /// Creates the container and leaves its init waiting for `start`; the lock is held
    /// until the caller drops it.
    pub fn create(&self, opts: CreateOptions) -> Result<(Container, Lock)> {
        let _step = tracing::debug_span!("create", id = %opts.id).entered();
        // Before vzrun opens anything of its own where the caller's descriptors go.
        crate::sys::fs::check_preserved_fds(opts.preserve_fds).map_err(Error::Step)?;
        validate_id(&opts.id)?;
        let id = opts.id.as_str();
        let mut bundle = bundle::load(&opts.bundle, opts.spec)?;
        if !opts.trusted {
            self.check_policy(&bundle)?;
        }
        // Relative to where the caller stands, fixed before anything starts (runc's way).
        let pid_file = match &opts.pid_file {
            Some(p) => {
                Some(std::path::absolute(p).map_err(|e| Error::io("resolve pid file", p, e))?)
            }
            None => None,
        };
        let start_container = take_start_container_hooks(&mut bundle.spec);
        let executor = VzExecutor::new(&bundle.spec, bundle.lent)?.with_start_container(
            start_container,
            HookContext {
                id,
                bundle: &bundle.bundle,
            },
            &bundle.spec,
        );
        // runc tells the agent "creating", with the init as the process.
        let (executor, relay) = executor.with_agent(|| AgentState {
            id: id.to_string(),
            status: "creating",
            bundle: bundle.bundle.clone(),
            annotations: bundle.spec.annotations().clone().unwrap_or_default(),
            init_pid: None,
            ..AgentState::default()
        })?;
        let mut claimed = claim(&self.root, id, &bundle)?;
        // The hybrid unified cgroup this create made: removed again if the create fails.
        let mut made_unified = None;
        let result = (|| -> Result<Container> {
            // Checked before the VE layer makes anything (runc checks before it makes its
            // state directory); the cgroup is the caller's and stays as it is.
            let cgroup = cgroup_path(
                &bundle.spec,
                id,
                &self.root.cgroup_tag(),
                self.systemd_cgroup,
            )?;
            crate::sys::cgroups::refuse_frozen(&cgroup)?;
            // runc 1.1.5 warns and goes on; vzrun refuses (runtime-spec allows it, and
            // runc's issue 3132 says why): the cgroup is somebody else's, and killing
            // "the container's" processes (kill --all, delete --force, a failed create)
            // would kill theirs. Counted in every hierarchy and sub-cgroup.
            let busy = crate::sys::cgroups::process_count(&cgroup);
            if busy > 0 {
                return Err(Error::Config(format!(
                    "linux.cgroupsPath {:?}: container's cgroup is not empty: {busy} process(es) found; a container needs a cgroup of its own",
                    cgroup.display().to_string()
                )));
            }
            self.derive_spec(id, &mut bundle, &mut claimed)?;
            let ve_dir = &claimed.ve_dir;
            // The init is forked by what libcontainer forks from here: born in the unified
            // cgroup too, as under runc.
            let unified = crate::sys::cgroups::join_unified(&cgroup, true)?;
            made_unified = unified.as_ref().and_then(|u| u.made());
            let direct = Direct {
                id,
                root: &self.root.path,
                bundle: ve_dir,
                spec: &bundle.spec,
                executor: &executor,
                console_socket: opts.console_socket.as_deref(),
                preserve_fds: opts.preserve_fds,
                no_pivot: opts.no_pivot,
                detach: opts.detach,
            };
            let made_direct = direct.create();
            // vzrun's own rootfs steps mount `ro` tmpfs and cgroup mounts read-only
            // themselves; libcontainer's leave them writable for finish_create.
            let fix_readonly = made_direct.is_none();
            let built = match made_direct {
                Some(made) => made,
                None => {
                    let _build = tracing::debug_span!("libcontainer create").entered();
                    crate::sys::process::uncache_procfs();
                    ContainerBuilder::new(id.to_string(), SyscallType::default())
                        .with_root_path(&self.root.path)?
                        .with_pid_file(None::<PathBuf>)?
                        .with_console_socket(opts.console_socket.clone())
                        .with_preserved_fds(opts.preserve_fds)
                        .with_executor(executor)
                        .as_init(ve_dir)
                        .with_systemd(false)
                        .with_detach(opts.detach)
                        .with_no_pivot(opts.no_pivot)
                        .build()
                        .map_err(Error::from)
                }
            };
            drop(unified);
            // A failed hand-off fails the init too: the agent's error is the one to tell.
            let relayed = relay.map_or(Ok(()), |r| r.finish(built.is_ok()));
            let mut container = match (built, relayed) {
                (Ok(c), Ok(())) => c,
                (Ok(mut c), Err(e)) => {
                    let _ = c.delete(true);
                    return Err(e.into());
                }
                (Err(_), Err(e)) => return Err(e.into()),
                (Err(e), Ok(())) => return Err(e),
            };
            container.refresh_status()?;
            let resources = bundle
                .spec
                .linux()
                .as_ref()
                .and_then(|l| l.resources().as_ref());
            if crate::sys::cgroups::oom_killer_disabled(resources) {
                let config = container.spec()?;
                if let Err(e) = crate::sys::cgroups::disable_oom_killer(&config.cgroup_path) {
                    let _ = container.delete(true);
                    return Err(e.into());
                }
            }
            if let Some(pid) = container.pid() {
                let fixed = if fix_readonly {
                    crate::runtime::finish::finish_create(pid.as_raw(), &bundle.spec)
                } else {
                    Ok(())
                };
                let finished = fixed
                    .and_then(|()| match &mut claimed.record.ve.proc_view {
                        Some(binds) => binds.bind_into(pid.as_raw()).map_err(|e| {
                            Error::Step(format!(
                                "bind LXCFS's files from {} into the VE: {e}",
                                binds.dir.display()
                            ))
                        }),
                        None => Ok(()),
                    })
                    .and_then(|()| {
                        let config = container.spec()?;
                        Ok(crate::sys::cgroups::set_weight_devices(
                            &config.cgroup_path,
                            resources.and_then(|r| r.block_io().as_ref()),
                        )?)
                    });
                if let Err(e) = finished {
                    let _ = container.delete(true);
                    return Err(e);
                }
            }
            if let Some(pid) = container.pid() {
                let _step = tracing::debug_span!("ve configure", id, pid = pid.as_raw()).entered();
                let ctx = ve::Ctx {
                    root: &self.root.path,
                    id,
                    dir: ve_dir,
                };
                claimed.record.init_start = crate::sys::process::start_time(pid.as_raw());
                let mut save = claimed.record.ve_saver(ve_dir);
                let configured = ve::configure(
                    &ctx,
                    &bundle.ve_config,
                    pid.as_raw(),
                    &mut claimed.record.ve,
                    &mut save,
                );
                claimed.record.save(ve_dir)?;
                if let Err(e) = configured {
                    let _ = container.delete(true);
                    return Err(e.into());
                }
            }
            // Written here rather than by libcontainer, which only warns when it cannot:
            // runc fails the create and takes the container down.
            if let (Some(path), Some(pid)) = (&pid_file, container.pid()) {
                if let Err(e) = crate::sys::fs::write_pid_file(path, pid.as_raw()) {
                    let _ = container.delete(true);
                    return Err(Error::Step(e.to_string()));
                }
            }
            tracing::debug!(
                pid = container.pid().map_or(0, |p| p.as_raw()),
                bundle = %bundle.bundle.display(),
                "created {id}"
            );
            Ok(container)
        })();
        match result {
            Ok(container) => Ok((container, claimed.lock)),
            Err(e) => {
                self.abandon(id, claimed);
                if let Some(dir) = &made_unified {
                    crate::sys::cgroups::remove_made_unified(dir);
                }
                Err(e)
            }
        }
    }
}
