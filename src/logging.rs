//! Runtime log output in the two shapes callers read: logrus-style text lines on stderr
//! (or in the `--log` file), and JSON lines for containerd's shim, which takes the last
//! line whose level is "error" as the failure reason.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

use crate::cli::GlobalOpts;

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

struct Sink {
    file: Option<PathBuf>,
    format: LogFormat,
    debug: bool,
}

static SINK: OnceLock<Sink> = OnceLock::new();

pub fn init(opts: &GlobalOpts) {
    let _ = SINK.set(Sink {
        file: opts.log.clone(),
        format: opts.log_format,
        debug: opts.debug,
    });
}

/// A usage error happens before clap has produced GlobalOpts; pick out `--log` and
/// `--log-format` by hand so the error still lands where the caller looks for it.
pub fn sniff_global_opts(args: &[OsString]) -> GlobalOpts {
    let mut opts = GlobalOpts::default();
    let strs: Vec<&str> = args.iter().filter_map(|a| a.to_str()).collect();
    let mut i = 0;
    while i < strs.len() {
        let (name, inline) = match strs[i].split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (strs[i], None),
        };
        let value = |i: &mut usize| {
            inline.clone().or_else(|| {
                *i += 1;
                strs.get(*i).map(|s| s.to_string())
            })
        };
        match name {
            "--log" | "-log" => opts.log = value(&mut i).map(PathBuf::from),
            "--log-format" | "-log-format" if value(&mut i).as_deref() == Some("json") => {
                opts.log_format = LogFormat::Json;
            }
            _ => {}
        }
        i += 1;
    }
    opts
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn render(format: LogFormat, level: &str, msg: &str) -> String {
    match format {
        LogFormat::Json => {
            let line = serde_json::json!({"level": level, "msg": msg, "time": now()});
            format!("{line}\n")
        }
        LogFormat::Text => format!("time={:?} level={} msg={:?}\n", now(), level, msg),
    }
}

fn write(level: &str, msg: &str, also_stderr: bool) {
    let sink = SINK.get();
    let format = sink.map(|s| s.format).unwrap_or_default();
    match sink.and_then(|s| s.file.as_ref()) {
        Some(path) => {
            let line = render(format, level, msg);
            if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path) {
                let _ = f.write_all(line.as_bytes());
            }
            if also_stderr {
                // runc prints the bare message on stderr as well when a log file takes the
                // structured line; a person or a caller that only keeps stderr still sees it.
                let _ = writeln!(std::io::stderr(), "{msg}");
            }
        }
        None => {
            let _ = std::io::stderr().write_all(render(format, level, msg).as_bytes());
        }
    }
}

/// The error that ends a command: full context chain joined the way runc joins causes.
pub fn error(err: &anyhow::Error) {
    let msg = format!("{err:#}");
    write("error", &msg, true);
}

/// An error that does not end the command (runc logs a failing poststop hook and goes on).
pub fn error_line(msg: &str) {
    write("error", msg, true);
}

pub fn debug(msg: &str) {
    if SINK.get().map(|s| s.debug).unwrap_or(false) {
        write("debug", msg, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_carry_level_msg_and_time() {
        let line = render(LogFormat::Json, "error", "container \"x\" does not exist");
        let v: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "container \"x\" does not exist");
        assert!(chrono::DateTime::parse_from_rfc3339(v["time"].as_str().unwrap()).is_ok());
        assert!(line.ends_with('\n'));
    }

    #[test]
    fn text_lines_look_like_logrus() {
        let line = render(LogFormat::Text, "error", "container does not exist");
        assert!(line.starts_with("time=\""));
        assert!(line.contains(" level=error msg=\"container does not exist\""));
    }

    #[test]
    fn sniffs_log_flags_from_raw_args() {
        let args: Vec<OsString> = ["vzrun", "--log", "/l.json", "--log-format=json", "bogus"]
            .iter()
            .map(OsString::from)
            .collect();
        let o = sniff_global_opts(&args);
        assert_eq!(o.log.as_deref(), Some(std::path::Path::new("/l.json")));
        assert_eq!(o.log_format, LogFormat::Json);
    }
}
