//! vzrun: an OCI runtime with a runc-compatible command line that turns bundles into
//! OpenVZ-style Virtual Environments.

mod cli;
mod commands;
mod logging;
mod runtime;
mod sys;
mod units;
mod ve;

fn main() {
    // The hook shim libcontainer runs during create: nothing of the CLI is set up for it.
    if let Some(code) = runtime::hooks::shim() {
        std::process::exit(code);
    }
    std::process::exit(cli::main());
}
