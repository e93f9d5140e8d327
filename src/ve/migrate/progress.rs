//! Progress of a migration: one line rewritten in place on a terminal (post-copy's pages
//! as an indicatif bar with percentage and time left, since their total is known), plain
//! log lines otherwise.

/// Progress on a terminal (one line rewritten in place) or plain log lines otherwise.
pub struct Progress {
    tty: bool,
    start: std::time::Instant,
    quiet: bool,
    last_line: std::sync::Mutex<std::time::Instant>,
    /// Post-copy's page bar on a terminal, made at the first report.
    bar: std::sync::Mutex<Option<indicatif::ProgressBar>>,
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        Progress {
            tty: nix::unistd::isatty(2).unwrap_or(false),
            start: std::time::Instant::now(),
            quiet,
            last_line: std::sync::Mutex::new(std::time::Instant::now()),
            bar: std::sync::Mutex::new(None),
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
            let mut bar = self.bar.lock().unwrap_or_else(|e| e.into_inner());
            let b = bar.get_or_insert_with(|| {
                let b = indicatif::ProgressBar::with_draw_target(
                    Some(total),
                    indicatif::ProgressDrawTarget::stderr(),
                );
                if let Ok(style) = indicatif::ProgressStyle::with_template(
                    "pages {bar:30} {pos}/{len} ({percent}%), {eta} left",
                ) {
                    b.set_style(style);
                }
                b
            });
            b.set_length(total.max(done));
            b.set_position(done);
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
        if let Some(b) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
            b.finish_and_clear();
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
