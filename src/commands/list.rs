//! `vzrun list`: every container under the root, as runc's table, JSON or IDs.

use anyhow::Result;

use crate::cli::GlobalOpts;
use crate::commands::out::{out, outln};

#[derive(clap::Args, Debug)]
#[command(about = "Lists containers started by vzrun with the given root")]
#[command(after_help = "Examples:\n  vzrun list\n  vzrun list -q\n  vzrun list --format json")]
pub struct Args {
    /// Select one of: table or json
    #[arg(short = 'f', long, default_value = "table")]
    pub format: Format,
    /// Display only container IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

pub fn run(args: Args, global: &GlobalOpts) -> Result<i32> {
    let states = super::runtime(global).list();
    if args.quiet {
        for s in &states {
            outln!("{}", s.id)?;
        }
        return Ok(0);
    }
    match args.format {
        Format::Json => {
            // runc encodes a nil slice, so an empty listing is `null`.
            if states.is_empty() {
                outln!("null")?;
            } else {
                outln!("{}", serde_json::to_string(&states)?)?;
            }
        }
        Format::Table => {
            let mut rows = vec![["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
                .map(String::from)
                .to_vec()];
            for s in &states {
                rows.push(vec![
                    s.id.clone(),
                    s.pid.to_string(),
                    s.status.clone(),
                    s.bundle.display().to_string(),
                    s.created.clone(),
                    s.owner.clone(),
                ]);
            }
            out!("{}", table(&rows))?;
        }
    }
    Ok(0)
}

/// Go's tabwriter as runc configures it: cells padded by 3, at least 12 wide, the last
/// column unpadded.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max((c.chars().count() + 3).max(12));
        }
    }
    let mut out = String::new();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}", w = widths[i]));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_runc_spacing() {
        let rows = vec![
            ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
                .map(String::from)
                .to_vec(),
            [
                "t2",
                "5108",
                "created",
                "/tmp/rb",
                "2026-11-25T21:32:26.528541851Z",
                "root",
            ]
            .map(String::from)
            .to_vec(),
        ];
        assert_eq!(
            table(&rows),
            "ID          PID         STATUS      BUNDLE      CREATED                          OWNER\n\
             t2          5108        created     /tmp/rb     2026-11-25T21:32:26.528541851Z   root\n"
        );
    }
}
