//! `vzrun ve keys`: every `io.vzrun.*` annotation key with its type, range and default,
//! printed from the table the annotation parser checks keys against.

use anyhow::Result;
use serde_json::json;

use crate::commands::out::{out, outln};
use crate::ve::keys::{self, KEYS};

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  vzrun ve keys\n  vzrun ve keys --json | jq '.[].key'")]
pub struct KeysArgs {
    /// Print JSON: one object per key
    #[arg(short = 'j', long)]
    pub json: bool,
}

pub fn run(args: KeysArgs) -> Result<i32> {
    if args.json {
        let rows: Vec<_> = KEYS
            .iter()
            .map(|k| {
                json!({
                    "key": keys::full(k.name),
                    "concern": k.concern.name(),
                    "type": k.kind.type_name(),
                    "range": k.kind.range(),
                    "default": k.default,
                    "description": k.about,
                })
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(0);
    }
    let mut rows = vec![["KEY", "TYPE", "RANGE", "DEFAULT", "DESCRIPTION"].map(String::from)];
    rows.extend(KEYS.iter().map(|k| {
        [
            keys::full(k.name),
            k.kind.type_name().to_string(),
            k.kind.range(),
            k.default.to_string(),
            k.about.to_string(),
        ]
    }));
    let widths: Vec<usize> = (0..5)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut text = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        text.push_str(line.join("  ").trim_end());
        text.push('\n');
    }
    out!("{text}")?;
    Ok(0)
}
