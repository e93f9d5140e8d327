//! The last step inside the container, plugged into libcontainer: install the spec's
//! seccomp filter (compiled before the fork, so a bad profile fails `create` cleanly),
//! then exec the process like libcontainer's default executor.
//!
//! The filter of a profile's `SCMP_ACT_NOTIFY` rules is installed earlier, when
//! libcontainer sets up the environment (still before the process reports ready): runc
//! hands the listener to the agent during `create`, and that needs the process to be
//! waiting on the vzrun that created it (see `seccomp_agent`). That filter allows every
//! other syscall, so libcontainer's own steps until `start` are not refused by an
//! allow-list profile; the rest of the profile comes at exec as for any profile.
//!
//! The kernel accepts a seccomp filter only from a task with CAP_SYS_ADMIN or under
//! no_new_privs. runc installs it before dropping capabilities; libcontainer drops them
//! before the executor runs. So when the process has neither, vzrun lends it
//! CAP_SYS_ADMIN in its effective and permitted sets (never in the bounding set), and
//! the executor hands it back right after installing the filter, before exec. The
//! process starts with exactly the capabilities and no_new_privs value of its spec.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{
    Executor, ExecutorError, ExecutorSetEnvsError, ExecutorValidationError,
};
use oci_spec::runtime::{Capability, Hook, Process, Spec};

use crate::runtime::seccomp::{self, Filters, SeccompError};
use crate::runtime::seccomp_agent::{self, AgentError, AgentState, Relay};

#[derive(Clone)]
pub struct VzExecutor {
    seccomp: Filters,
    /// The notify rules' filter, taken out of `seccomp`.
    notify: Option<Filters>,
    return_sys_admin: bool,
    /// The profile's `listenerPath` and `listenerMetadata`, when it has notify rules.
    listener: Option<(std::path::PathBuf, String)>,
    /// The process's end of the channel to the relay (see `seccomp_agent`).
    agent: Option<Arc<OwnedFd>>,
    /// The spec's startContainer hooks, run here rather than by libcontainer: runc runs
    /// them after the seccomp filter is in force, so they are filtered as the process is.
    start_container: Vec<Hook>,
    /// The state those hooks read on stdin, without the pid (known only in the init).
    hook_state: serde_json::Value,
}

/// What the startContainer hooks of a container are told: its ID, the caller's bundle
/// and its annotations, as `state` reports them.
pub struct HookContext<'a> {
    pub id: &'a str,
    pub bundle: &'a Path,
}

/// Takes the startContainer hooks out of a spec (libcontainer would run them before the
/// executor, outside the filter) for [`VzExecutor::with_start_container`].
pub fn take_start_container_hooks(spec: &mut Spec) -> Vec<Hook> {
    let Some(mut hooks) = spec.hooks().clone() else {
        return Vec::new();
    };
    let taken = hooks.start_container().clone().unwrap_or_default();
    hooks.set_start_container(None);
    spec.set_hooks(Some(hooks));
    taken
}

/// Adds CAP_SYS_ADMIN to a process's effective and permitted sets when installing a
/// seccomp filter will need it; returns whether it did.
pub fn lend_sys_admin(spec_has_seccomp: bool, process: &mut Process) -> bool {
    if !spec_has_seccomp || process.no_new_privileges() == Some(true) {
        return false;
    }
    let mut caps = process.capabilities().clone().unwrap_or_default();
    let has = caps
        .effective()
        .as_ref()
        .is_some_and(|e| e.contains(&Capability::SysAdmin));
    if has {
        return false;
    }
    let mut eff = caps.effective().clone().unwrap_or_default();
    eff.insert(Capability::SysAdmin);
    caps.set_effective(Some(eff));
    let mut perm = caps.permitted().clone().unwrap_or_default();
    perm.insert(Capability::SysAdmin);
    caps.set_permitted(Some(perm));
    process.set_capabilities(Some(caps));
    true
}

impl VzExecutor {
    pub fn new(spec: &Spec, return_sys_admin: bool) -> Result<Self, SeccompError> {
        let profile = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
        let mut seccomp = match profile {
            Some(profile) => seccomp::compile(profile)?,
            None => Filters::default(),
        };
        let notify = seccomp.take_listener();
        let listener = match (profile, &notify) {
            (Some(p), Some(_)) => p
                .listener_path()
                .clone()
                .map(|path| (path, p.listener_metadata().clone().unwrap_or_default())),
            _ => None,
        };
        Ok(VzExecutor {
            seccomp,
            notify,
            return_sys_admin,
            listener,
            agent: None,
            start_container: Vec::new(),
            hook_state: serde_json::Value::Null,
        })
    }

    /// Runs `hooks` in the init after the filter is installed, with the state of `ctx`.
    pub fn with_start_container(mut self, hooks: Vec<Hook>, ctx: HookContext, spec: &Spec) -> Self {
        self.hook_state = serde_json::json!({
            "ociVersion": crate::runtime::state::OCI_VERSION,
            "id": ctx.id,
            "status": "created",
            "bundle": ctx.bundle,
        });
        // runc leaves out annotations when there are none.
        if let Some(a) = spec.annotations().as_ref().filter(|a| !a.is_empty()) {
            self.hook_state["annotations"] = serde_json::json!(a);
        }
        self.start_container = hooks;
        self
    }

    /// For a profile with notify rules, starts the relay that hands the listener to the
    /// agent; `state` is what the agent is told (its listener fields are filled here).
    /// Must be called before libcontainer forks; the relay's outcome is read with
    /// [`Relay::finish`] once the build returns.
    pub fn with_agent(
        mut self,
        state: impl FnOnce() -> AgentState,
    ) -> Result<(Self, Option<Relay>), AgentError> {
        let Some((listener, metadata)) = self.listener.clone() else {
            return Ok((self, None));
        };
        let state = AgentState {
            listener,
            metadata,
            ..state()
        };
        let (relay, theirs) = seccomp_agent::start(state)?;
        self.agent = Some(Arc::new(theirs));
        Ok((self, Some(relay)))
    }

    /// Whether the profile hands a listener to a seccomp agent.
    pub fn has_agent(&self) -> bool {
        self.listener.is_some()
    }

    fn run_start_container_hooks(&self) -> Result<(), ExecutorError> {
        let mut state = self.hook_state.clone();
        state["pid"] = serde_json::Value::from(std::process::id());
        let input = state.to_string();
        for (i, hook) in self.start_container.iter().enumerate() {
            run_hook(hook, input.as_bytes()).map_err(|e| {
                ExecutorError::Other(format!("error running startContainer hook #{i}: {e}"))
            })?;
        }
        Ok(())
    }
}

/// Runs one hook with `input` on its stdin, within its timeout.
fn run_hook(hook: &Hook, input: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(hook.path());
    let args = hook.args().clone().unwrap_or_default();
    if let Some((argv0, rest)) = args.split_first() {
        cmd.arg0(argv0).args(rest);
    }
    cmd.env_clear();
    for kv in hook.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(std::process::Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("{}: {e}", hook.path().display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its state closes the pipe: not an error.
        let _ = stdin.write_all(input);
    }
    let limit = hook
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| std::time::Duration::from_secs(t as u64));
    let start = std::time::Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(st)) if st.success() => return Ok(()),
            Ok(Some(st)) => return Err(st.to_string()),
            Ok(None) => {}
            Err(e) => return Err(e.to_string()),
        }
        if limit.is_some_and(|l| start.elapsed() > l) {
            let _ = child.kill();
            let _ = child.wait();
            return Err("timeout".into());
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

fn give_back_sys_admin() -> Result<(), caps::errors::CapsError> {
    use caps::{CapSet, Capability as C};
    for set in [CapSet::Effective, CapSet::Inheritable, CapSet::Permitted] {
        caps::drop(None, set, C::CAP_SYS_ADMIN)?;
    }
    Ok(())
}

impl Executor for VzExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        seccomp::install(&self.seccomp).map_err(|e| ExecutorError::Other(e.to_string()))?;
        if self.return_sys_admin {
            give_back_sys_admin().map_err(|e| {
                ExecutorError::Other(format!("drop CAP_SYS_ADMIN lent for seccomp: {e}"))
            })?;
        }
        self.run_start_container_hooks()?;
        // Rust runs vzrun with SIGPIPE ignored (hooks that close their stdin early must
        // not kill it), and an exec keeps ignored signals ignored: give the container
        // process the default, as every other runtime does.
        // runc's signal handler takes SIGHUP and SIGINT over even when its caller ignored
        // them (nohup), so its containers get them at their default too; any other
        // signal the caller ignored stays ignored, as in runc.
        // A foreground run or exec blocked the signals it passes on before it forked.
        crate::runtime::foreground::restore_mask();
        // SAFETY: resetting signal dispositions in a single-threaded process.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            libc::signal(libc::SIGHUP, libc::SIG_DFL);
            libc::signal(libc::SIGINT, libc::SIG_DFL);
        }
        DefaultExecutor {}.exec(spec)
    }

    fn setup_envs(&self, envs: HashMap<String, String>) -> Result<(), ExecutorSetEnvsError> {
        DefaultExecutor {}.setup_envs(envs)?;
        let (Some(agent), Some(notify)) = (&self.agent, &self.notify) else {
            return Ok(());
        };
        // A CAP_SYS_ADMIN lent for the filters is kept for the rest, installed at exec.
        let listener =
            seccomp::install(notify).map_err(|e| ExecutorSetEnvsError::Other(e.to_string()))?;
        if let Some(listener) = listener {
            seccomp_agent::hand_over(agent.as_fd(), listener)
                .map_err(ExecutorSetEnvsError::Other)?;
        }
        Ok(())
    }

    /// An absolute or relative path needs no PATH (runc runs `/bin/echo` with an empty
    /// environment); a bare name is looked up as libcontainer does. Errors use runc's words.
    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        let arg0 = spec
            .process()
            .as_ref()
            .and_then(|p| p.args().as_ref())
            .and_then(|a| a.first())
            .cloned()
            .unwrap_or_default();
        if arg0.contains('/') {
            let p = Path::new(&arg0);
            return match std::fs::metadata(p) {
                // execve(2) of a directory fails with EACCES: runc reports just that.
                Ok(m) if m.is_dir() => Err(ExecutorValidationError::ArgValidationError(format!(
                    "exec: {arg0:?}: permission denied"
                ))),
                Ok(_) => Ok(()),
                Err(e) => Err(ExecutorValidationError::ArgValidationError(format!(
                    "exec: {arg0:?}: stat {arg0}: {}",
                    nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::ENOENT))
                        .desc()
                        .to_lowercase()
                ))),
            };
        }
        DefaultExecutor {}.validate(spec).map_err(|e| match e {
            // Without PATH runc looks nowhere and finds nothing: the same words.
            ExecutorValidationError::ArgValidationError(m)
                if m.contains("not found in $PATH") || m.contains("PATH environment") =>
            {
                ExecutorValidationError::ArgValidationError(format!(
                    "exec: {arg0:?}: executable file not found in $PATH"
                ))
            }
            other => other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(nnp: Option<bool>, eff: &[Capability]) -> Process {
        let mut p = Process::default();
        p.set_no_new_privileges(nnp);
        let mut caps = p.capabilities().clone().unwrap_or_default();
        caps.set_effective(Some(eff.iter().copied().collect()));
        caps.set_permitted(Some(eff.iter().copied().collect()));
        caps.set_bounding(Some(eff.iter().copied().collect()));
        p.set_capabilities(Some(caps));
        p
    }

    #[test]
    fn lends_only_when_needed_and_never_in_bounding() {
        let mut p = process(None, &[Capability::Kill]);
        assert!(lend_sys_admin(true, &mut p));
        let c = p.capabilities().as_ref().unwrap();
        assert!(c
            .effective()
            .as_ref()
            .unwrap()
            .contains(&Capability::SysAdmin));
        assert!(c
            .permitted()
            .as_ref()
            .unwrap()
            .contains(&Capability::SysAdmin));
        assert!(!c
            .bounding()
            .as_ref()
            .unwrap()
            .contains(&Capability::SysAdmin));
        assert!(
            !lend_sys_admin(true, &mut process(Some(true), &[])),
            "no_new_privs suffices"
        );
        assert!(
            !lend_sys_admin(false, &mut process(None, &[])),
            "no seccomp, nothing to lend"
        );
        assert!(
            !lend_sys_admin(true, &mut process(None, &[Capability::SysAdmin])),
            "already has it"
        );
    }
}
