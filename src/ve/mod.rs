//! Virtual Environment features layered on an OCI container: configuration from
//! `io.vzrun.` annotations, host-side setup before libcontainer starts the init, and the
//! matching teardown. One submodule per concern.
//!
//! Every setup step records what it made in [`VeRecord`] before it makes the next thing,
//! so that [`teardown`] can remove exactly that, whether called by `delete` or by a create
//! that failed halfway.

use std::collections::HashMap;

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

pub mod annotations;

pub use annotations::VeConfig;

/// The reverse-DNS prefix of every VE setting.
pub const PREFIX: &str = "io.vzrun.";

#[derive(Debug, thiserror::Error)]
pub enum VeError {
    #[error("annotation {key}: {problem}")]
    Annotation { key: String, problem: String },
}

/// What the VE layer made on the host for one container.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct VeRecord {}

/// Reads and checks the VE settings of a spec; unknown `io.vzrun.` keys are errors.
pub fn config_from_spec(spec: &Spec) -> Result<VeConfig, VeError> {
    let empty = HashMap::new();
    VeConfig::parse(spec.annotations().as_ref().unwrap_or(&empty))
}

/// Host-side setup before the init exists; adjusts the spec handed to libcontainer.
pub fn setup(
    _id: &str,
    _config: &VeConfig,
    _spec: &mut Spec,
    _record: &mut VeRecord,
) -> Result<(), VeError> {
    Ok(())
}

/// Removes everything `setup` recorded. Safe to call more than once.
pub fn teardown(_record: &VeRecord) {}

/// Whether checkpoint/restore can work on this host (CRIU present and usable).
pub fn checkpoint_available() -> bool {
    false
}
