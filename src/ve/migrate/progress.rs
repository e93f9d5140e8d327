//! Progress of a migration: one line rewritten in place on a terminal, plain log lines
//! otherwise.

/// Progress on a terminal (one line rewritten in place) or plain log lines otherwise.
pub struct Progress {
    tty: bool,
    start: std::time::Instant,
    quiet: bool,
    last_line: std::sync::Mutex<std::time::Instant>,
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        Progress {
            tty: nix::unistd::isatty(2).unwrap_or(false),
            start: std::time::Instant::now(),
            quiet,
            last_line: std::sync::Mutex::new(std::time::Instant::now()),
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

    /// Post-copy's pages: a percentage and the time left on a terminal, where the total
    /// is known; a plain line every few seconds otherwise.
    pub fn pages(&self, done: u64, total: u64, elapsed: std::time::Duration) {
        if self.quiet {
            return;
        }
        let pct = if total > 0 {
            (done as f64 * 100.0 / total as f64).min(100.0)
        } else {
            0.0
        };
        let left = if done > 0 && total > done {
            let rate = done as f64 / elapsed.as_secs_f64().max(0.001);
            format!(", {:.1} s left", (total - done) as f64 / rate)
        } else {
            String::new()
        };
        if self.tty {
            eprint!("\r\x1b[Kpages: {done}/{total} ({pct:.0}%){left}");
        } else {
            let mut last = self.last_line.lock().unwrap_or_else(|e| e.into_inner());
            if last.elapsed() >= std::time::Duration::from_secs(2) {
                *last = std::time::Instant::now();
                drop(last);
                self.line(&format!("pages: {done}/{total} ({pct:.0}%){left}"));
            }
        }
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
