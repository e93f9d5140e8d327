//! An errno in Go's words ("no such file or directory"): the C library's text in lower
//! case, as runc prints every system error. One place for the runtime's messages that
//! callers compare with runc's.

use nix::errno::Errno;

/// `e` as Go prints it.
pub fn words(e: Errno) -> String {
    e.desc().to_lowercase()
}

/// An I/O error as Go prints it: its errno's words, or its own text when it has none.
pub fn io_words(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => words(Errno::from_raw(n)),
        None => e.to_string(),
    }
}
