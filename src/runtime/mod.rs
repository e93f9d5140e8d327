//! The container lifecycle on libcontainer, as typed operations on one [`Runtime`]:
//! where containers live and how they are locked (`root`), vzrun's record of each
//! (`state`), bundles (`bundle`), create, run, the verbs on an existing container with
//! their state checks (`lifecycle`), exec, update, set (a running VE's settings), the final exec step (`executor`,
//! `seccomp`, and `seccomp_agent` for notify profiles), the state the create hooks read
//! (`hooks`), and a foreground process's signals and exit (`foreground`). Commands turn
//! flags into the options here and print what comes back.

use std::path::PathBuf;
use std::sync::OnceLock;

use crate::ve::policy::Policy;

pub mod bundle;
pub mod checkpoint;
pub mod create;
pub mod create_direct;
pub mod error;
pub mod exec;
pub mod exec_direct;
pub mod executor;
pub mod finish;
pub mod foreground;
pub mod hooks;
pub mod lifecycle;
pub mod migrate;
pub mod observe;
pub mod restore;
pub mod root;
pub mod rootfs;
pub mod run;
pub mod seccomp;
pub mod seccomp_agent;
pub mod set;
pub mod signal;
pub mod state;
pub mod update;

use error::Result;
use root::Root;

/// One runtime invocation's context: the state root, how cgroups are named, and the
/// host policy that bounds what a spec's VE settings may ask for.
pub struct Runtime {
    pub root: Root,
    /// `--systemd-cgroup`: a `slice:prefix:name` cgroupsPath names a systemd scope.
    pub systemd_cgroup: bool,
    /// The host policy file in force (`--policy`, `VZRUN_POLICY` or the default).
    pub policy_path: PathBuf,
    policy: OnceLock<Policy>,
}

impl Runtime {
    pub fn new(root: Option<PathBuf>, systemd_cgroup: bool) -> Self {
        Runtime {
            root: Root::new(root),
            systemd_cgroup,
            policy_path: Policy::path_from(None),
            policy: OnceLock::new(),
        }
    }

    /// The same runtime under the host policy at `path` (`--policy`).
    pub fn with_policy(mut self, path: Option<PathBuf>) -> Self {
        self.policy_path = Policy::path_from(path.as_deref());
        self
    }

    /// The host policy, read on first use (most commands never need it).
    pub fn policy(&self) -> Result<&Policy> {
        if let Some(p) = self.policy.get() {
            return Ok(p);
        }
        let loaded = Policy::load(&self.policy_path)?;
        Ok(self.policy.get_or_init(|| loaded))
    }

    /// Where the administrator's hook programs live (`hooks.d` beside the policy file).
    pub fn hooks_dir(&self) -> PathBuf {
        self.policy_path
            .parent()
            .unwrap_or_else(|| std::path::Path::new("/etc/vzrun"))
            .join("hooks.d")
    }
}
