//! vzrun: an OCI runtime with a runc-compatible command line that turns bundles into
//! OpenVZ-style Virtual Environments.

mod cli;
mod commands;
mod container;
mod executor;
mod logging;
mod pty;
mod seccomp;
mod signal;
mod state;
mod units;
mod ve;

fn main() {
    std::process::exit(cli::main());
}
