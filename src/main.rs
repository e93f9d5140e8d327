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
    // Rust starts with SIGPIPE ignored. Restore the default: `vzrun list | head` then ends
    // quietly like any tool, and container processes do not inherit an ignored SIGPIPE
    // (an exec keeps ignored signals ignored).
    // SAFETY: resetting a signal disposition before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    std::process::exit(cli::main());
}
