//! `vzrun ps`: the processes of a container, as `ps` lines or a JSON array of pids.

use anyhow::{anyhow, Result};

use crate::cli::GlobalOpts;
use crate::commands::out::{out, outln};

#[derive(clap::Args, Debug)]
#[command(about = "ps displays the processes running inside a container")]
#[command(after_help = "Examples:\n  vzrun ps web\n  vzrun ps --format json web")]
pub struct Args {
    /// Select one of: table or json
    #[arg(short = 'f', long, default_value = "table")]
    pub format: super::list::Format,
    pub id: String,
    /// Options passed to ps (default -ef)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

pub fn run(args: Args, global: &GlobalOpts) -> Result<i32> {
    let pids = super::runtime(global).pids(&args.id)?;
    if args.format == super::list::Format::Json {
        // runc encodes a nil slice: no processes is `null`.
        if pids.is_empty() {
            outln!("null")?;
        } else {
            outln!("{}", serde_json::to_string(&pids)?)?;
        }
        return Ok(0);
    }
    let ps_args = if args.ps_args.is_empty() {
        vec!["-ef".to_string()]
    } else {
        args.ps_args
    };
    let output = crate::sys::process::output(std::process::Command::new("ps").args(&ps_args))?;
    let text = String::from_utf8_lossy(&output.stdout);
    out!("{}", filter_ps(&text, &pids)?)?;
    Ok(0)
}

/// Keeps the header and the lines whose PID column names a container process.
pub fn filter_ps(text: &str, pids: &[i32]) -> Result<String> {
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| anyhow!("couldn't find PID field in ps output"))?;
    let mut out = format!("{header}\n");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(col)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_container_pids() {
        let text = "UID PID PPID C STIME TTY TIME CMD\nroot 1 0 0 10:00 ? 00:00:00 init\nroot 42 1 0 10:00 ? 00:00:00 sleep 9\n";
        let out = filter_ps(text, &[42]).unwrap();
        assert_eq!(
            out,
            "UID PID PPID C STIME TTY TIME CMD\nroot 42 1 0 10:00 ? 00:00:00 sleep 9\n"
        );
        assert!(filter_ps("USER X\n", &[1]).is_err());
    }
}
