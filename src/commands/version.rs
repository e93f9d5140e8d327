//! `vzrun --version`, in the three lines callers parse.

use std::io::Write;

pub fn print() {
    // Written without println!: `vzrun --version | head -n1` closes the pipe early.
    let _ = write!(
        std::io::stdout(),
        "vzrun version {}\ncommit: {}\nspec: {}\n",
        env!("CARGO_PKG_VERSION"),
        option_env!("VZRUN_COMMIT").unwrap_or("unknown"),
        crate::runtime::state::OCI_VERSION
    );
}
