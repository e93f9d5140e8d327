//! The last step inside the container, plugged into libcontainer: install the spec's
//! seccomp filter (compiled before the fork, so a bad profile fails `create` cleanly),
//! then exec the process like libcontainer's default executor.

use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use oci_spec::runtime::Spec;
use seccompiler::BpfProgram;

use crate::seccomp::{self, SeccompError};

#[derive(Clone)]
pub struct VzExecutor {
    seccomp: Vec<BpfProgram>,
}

impl VzExecutor {
    pub fn for_spec(spec: &Spec) -> Result<Self, SeccompError> {
        let seccomp = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
            Some(profile) => seccomp::compile(profile)?,
            None => Vec::new(),
        };
        Ok(VzExecutor { seccomp })
    }
}

impl Executor for VzExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        seccomp::install(&self.seccomp).map_err(|e| ExecutorError::Other(e.to_string()))?;
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }
}
