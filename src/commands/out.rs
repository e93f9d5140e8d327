//! Everything a command prints goes through here, so that a reader that stops early
//! (`vzrun events ID | head -1`) ends the command quietly instead of aborting it.
//!
//! Rust ignores SIGPIPE at startup, so a write to a closed pipe fails with EPIPE and
//! `println!` panics on it (exit 134 under `panic = "abort"`). Restoring SIGPIPE's default
//! action instead would make the kernel kill vzrun on *any* closed pipe, including the
//! CRIU, hook and migration pipes and sockets it writes to in the middle of changing a
//! VE, leaving it half made. So SIGPIPE stays ignored, and only stdout's EPIPE is turned
//! into [`StdoutClosed`], which `cli::main` ends with status 0 and no message.

use std::fmt;
use std::io::{self, Write};

/// The reader of stdout went away: not a failure of the command.
#[derive(Debug, thiserror::Error)]
#[error("stdout was closed by its reader")]
pub struct StdoutClosed;

/// Writes `args` to stdout and flushes, so that a closed pipe is seen at this write
/// (and a loop such as `events` stops) rather than at exit.
pub fn write(args: fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    out.write_fmt(args)
        .and_then(|()| out.flush())
        .map_err(|e| match e.kind() {
            io::ErrorKind::BrokenPipe => anyhow::Error::from(StdoutClosed),
            _ => anyhow::Error::from(e).context("write to stdout"),
        })
}

/// Whether `err` is (or wraps) a closed stdout.
pub fn is_closed(err: &anyhow::Error) -> bool {
    err.chain().any(|c| c.is::<StdoutClosed>())
}

/// For a message in the middle of a command (`ve restart` between its stop and its
/// start): a closed stdout must not stop the rest of the work.
pub fn closed_is_ok(err: anyhow::Error) -> anyhow::Result<()> {
    if is_closed(&err) {
        Ok(())
    } else {
        Err(err)
    }
}

/// `print!` that returns [`StdoutClosed`] instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::commands::out::write(format_args!($($arg)*))
    };
}

/// `println!` that returns [`StdoutClosed`] instead of panicking.
macro_rules! outln {
    () => {
        $crate::commands::out::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::commands::out::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

pub(crate) use {out, outln};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_stdout_is_found_through_context() {
        let err = anyhow::Error::from(StdoutClosed).context("printing the table");
        assert!(is_closed(&err));
        assert!(!is_closed(&anyhow::anyhow!("broken pipe")));
        let pipe = anyhow::Error::from(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(!is_closed(&pipe), "only stdout's EPIPE is quiet");
    }
}
