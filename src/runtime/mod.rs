//! The container lifecycle on libcontainer, as typed operations on one [`Runtime`]:
//! where containers live and how they are locked (`root`), vzrun's record of each
//! (`state`), bundles (`bundle`), create, run, the verbs on an existing container with
//! their state checks (`lifecycle`), exec, update, the final exec step (`executor`,
//! `seccomp`), and a foreground process's signals and exit (`foreground`). Commands
//! turn flags into the options here and print what comes back.

use std::path::PathBuf;

pub mod bundle;
pub mod checkpoint;
pub mod create;
pub mod error;
pub mod exec;
pub mod executor;
pub mod foreground;
pub mod lifecycle;
pub mod migrate;
pub mod observe;
pub mod restore;
pub mod root;
pub mod run;
pub mod seccomp;
pub mod signal;
pub mod state;
pub mod update;

use root::Root;

/// One runtime invocation's context: the state root and how cgroups are named.
pub struct Runtime {
    pub root: Root,
    /// `--systemd-cgroup`: a `slice:prefix:name` cgroupsPath names a systemd scope.
    pub systemd_cgroup: bool,
}

impl Runtime {
    pub fn new(root: Option<PathBuf>, systemd_cgroup: bool) -> Self {
        Runtime {
            root: Root::new(root),
            systemd_cgroup,
        }
    }
}
