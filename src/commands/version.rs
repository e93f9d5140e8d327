//! `vzrun --version`, in the three lines callers parse.

pub fn print() {
    println!("vzrun version {}", env!("CARGO_PKG_VERSION"));
    println!(
        "commit: {}",
        option_env!("VZRUN_COMMIT").unwrap_or("unknown")
    );
    println!("spec: {}", crate::state::OCI_VERSION);
}
