//! Progress of a migration: one line rewritten in place on a terminal, plain log lines
//! otherwise.

/// Progress on a terminal (one line rewritten in place) or plain log lines otherwise.
pub struct Progress {
    tty: bool,
    start: std::time::Instant,
    quiet: bool,
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        Progress {
            tty: nix::unistd::isatty(2).unwrap_or(false),
            start: std::time::Instant::now(),
            quiet,
        }
    }

    /// One step of a phase: rewritten in place on a terminal, else nothing (the phase's
    /// end is logged by `line`).
    pub fn update(&self, phase: &str, bytes: u64, left: Option<u64>) {
        if self.quiet || !self.tty {
            return;
        }
        let secs = self.start.elapsed().as_secs_f64().max(0.001);
        let left = left
            .map(|l| format!(", {l} pages dirty"))
            .unwrap_or_default();
        eprint!(
            "\r\x1b[K{phase}: {:.1} MiB sent{left}, {:.1} MiB/s",
            bytes as f64 / 1048576.0,
            bytes as f64 / 1048576.0 / secs
        );
    }

    pub fn line(&self, text: &str) {
        if self.quiet {
            return;
        }
        if self.tty {
            eprintln!("\r\x1b[K{text}");
        } else {
            eprintln!(
                "migrate: {:>7.3}s {text}",
                self.start.elapsed().as_secs_f64()
            );
        }
    }
}
