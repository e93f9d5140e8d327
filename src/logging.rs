//! Runtime log output in the two shapes callers read: logrus-style text lines on stderr
//! (or in the `--log` file), and JSON lines for containerd's shim, which takes the last
//! line whose level is "error" as the failure reason. With `--debug`, [`trace`] adds the
//! steps of the command (vzrun's and libcontainer's `tracing` events) in the same shape.

mod trace;

pub use trace::human;

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsFd;
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
    file: Option<File>,
    format: LogFormat,
}

static SINK: OnceLock<Sink> = OnceLock::new();

/// `--log` could not be opened; runc stops there, before the command runs.
#[derive(Debug, thiserror::Error)]
#[error("open {}: {}", .path.display(), crate::sys::errno::io_words(.err))]
pub struct LogError {
    path: PathBuf,
    err: std::io::Error,
}

/// Opens the `--log` file (runc creates it for every command, even one that logs
/// nothing: a caller may wait for it) and, with `--debug`, starts tracing into it or into
/// stderr.
pub fn init(opts: &GlobalOpts) -> Result<(), LogError> {
    let file = match &opts.log {
        Some(path) => Some(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|err| LogError {
                    path: path.clone(),
                    err,
                })?,
        ),
        None => None,
    };
    if opts.debug {
        // A descriptor of its own (close-on-exec): the init's fd 2 becomes the
        // container's stderr before libcontainer has finished logging in it.
        let out = match &file {
            Some(f) => f.try_clone(),
            None => std::io::stderr()
                .as_fd()
                .try_clone_to_owned()
                .map(File::from),
        };
        if let Ok(out) = out {
            trace::install(out, opts.log_format);
        }
    }
    let _ = SINK.set(Sink {
        file,
        format: opts.log_format,
    });
    Ok(())
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
    render_with(format, level, msg, &[])
}

/// One line as logrus writes it: in JSON the fields are keys beside level, msg and time
/// (sorted, as Go's encoder sorts a map); in text they follow the message as key=value.
fn render_with(
    format: LogFormat,
    level: &str,
    msg: &str,
    fields: &[(&str, serde_json::Value)],
) -> String {
    match format {
        LogFormat::Json => {
            let mut m = serde_json::Map::new();
            for (k, v) in fields {
                m.insert(k.to_string(), v.clone());
            }
            m.insert("level".into(), level.into());
            m.insert("msg".into(), msg.into());
            m.insert("time".into(), now().into());
            format!("{}\n", serde_json::Value::Object(m))
        }
        LogFormat::Text => {
            let mut line = format!("time={:?} level={} msg={:?}", now(), level, msg);
            for (k, v) in fields {
                line.push(' ');
                line.push_str(k);
                line.push('=');
                match v {
                    serde_json::Value::String(s) => line.push_str(&text_value(s)),
                    other => line.push_str(&other.to_string()),
                }
            }
            line.push('\n');
            line
        }
    }
}

/// logrus quotes a text value unless it is made only of these characters.
fn text_value(s: &str) -> String {
    let bare = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._/@^+".contains(c));
    if bare {
        s.to_string()
    } else {
        format!("{s:?}")
    }
}

fn write(level: &str, msg: &str, also_stderr: bool) {
    let sink = SINK.get();
    let format = sink.map(|s| s.format).unwrap_or_default();
    match sink.and_then(|s| s.file.as_ref()) {
        Some(mut f) => {
            let line = render(format, level, msg);
            let _ = f.write_all(line.as_bytes());
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

/// A warning the command goes on after, at logrus's `warning` level: on stderr, or only
/// in the `--log` file when there is one (runc prints it nowhere else then).
pub fn warn(msg: &str) {
    write("warning", msg, false);
}

/// An error that does not end the command (runc logs a failing poststop hook and goes on).
pub fn error_line(msg: &str) {
    write("error", msg, true);
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
    fn fields_follow_logrus() {
        let fields = [
            ("op", serde_json::Value::from("add address 198.51.100.7/32")),
            ("took", serde_json::Value::from("1.2ms")),
            ("pid", serde_json::Value::from(42)),
        ];
        let line = render_with(LogFormat::Text, "debug", "netlink", &fields);
        assert!(
            line.ends_with(
                " level=debug msg=\"netlink\" op=\"add address 198.51.100.7/32\" took=1.2ms pid=42\n"
            ),
            "{line}"
        );
        let line = render_with(LogFormat::Json, "debug", "netlink", &fields);
        let v: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(v["op"], "add address 198.51.100.7/32");
        assert_eq!(v["pid"], 42);
        assert_eq!(v["msg"], "netlink");
        let keys: Vec<&str> = line.split('"').skip(1).step_by(4).take(3).collect();
        assert_eq!(keys, ["level", "msg", "op"], "sorted as Go sorts: {line}");
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
