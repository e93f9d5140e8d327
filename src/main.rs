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
    std::process::exit(cli::main());
}
