//! `vzrun ve list`: the vzlist table.

use std::cmp::Ordering;

use anyhow::{anyhow, Result};
use serde_json::Value;

use crate::commands::out::outln;
use crate::runtime::Runtime;
use crate::ve::view::{self, VeView, Which};

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  vzrun ve list\n  \
                  vzrun ve list -a -o ctid,status,ram,ram.l -s -ram\n  \
                  vzrun ve list -1 -S\n  vzrun ve list -j web1")]
pub struct ListArgs {
    /// VEs to list (default: all that the other options select)
    pub ids: Vec<String>,
    /// Fields to show, comma-separated (vzrun ve list -L lists them): ctid, status, ip,
    /// hostname, procview (what the VE's /proc shows: host, virtual, or lost when the
    /// LXCFS behind its view died), a beancounter for its held value, or with .m .b .l .f
    /// for maxheld, barrier, limit, failcnt
    #[arg(short = 'o', long, default_value = "ctid,numproc,status,ip,hostname")]
    pub output: String,
    /// Sort by this field (any -L field, shown or not); -FIELD sorts in reverse
    #[arg(short = 's', long, allow_hyphen_values = true, value_name = "[-]FIELD")]
    pub sort: Option<String>,
    /// Print JSON: every field of each VE, whatever -o says (docs/json.md)
    #[arg(short = 'j', long)]
    pub json: bool,
    /// Do not print the header
    #[arg(short = 'H', long = "no-header")]
    pub no_header: bool,
    /// Also list VEs that are not running (system VEs made with `ve create`)
    #[arg(short = 'a', long, conflicts_with = "stopped")]
    pub all: bool,
    /// List only VEs that are not running
    #[arg(short = 'S', long)]
    pub stopped: bool,
    /// Only the VE IDs, one per line (-H -o ctid)
    #[arg(short = '1', conflicts_with_all = ["output", "json"])]
    pub ids_only: bool,
    /// List the fields -o and -s take, and exit
    #[arg(short = 'L', long = "list")]
    pub list_fields: bool,
}

pub fn run(rt: &Runtime, args: ListArgs) -> Result<i32> {
    if args.list_fields {
        return list_fields();
    }
    let fields: Vec<String> = if args.ids_only {
        vec!["ctid".to_string()]
    } else {
        args.output
            .split(',')
            .map(|f| f.trim().to_string())
            .filter(|f| !f.is_empty())
            .collect()
    };
    for f in &fields {
        view::check_field(f).map_err(|e| anyhow!("-o: {e}"))?;
    }
    let sort = match &args.sort {
        Some(s) => {
            let (reverse, key) = match s.strip_prefix('-') {
                Some(k) => (true, k),
                None => (false, s.as_str()),
            };
            view::check_field(key).map_err(|e| anyhow!("-s: {e}"))?;
            Some((key.to_string(), reverse))
        }
        None => None,
    };
    let which = match (args.all, args.stopped) {
        (_, true) => Which::Stopped,
        (true, _) => Which::All,
        // VEs named on the command line are listed whatever their state, as vzlist does.
        _ if !args.ids.is_empty() => Which::All,
        _ => Which::Running,
    };
    // JSON carries every field; a table reads only what its columns and the sort show.
    let need = if args.json {
        view::Need::ALL
    } else {
        view::Need::fields(
            fields
                .iter()
                .map(String::as_str)
                .chain(sort.as_ref().map(|(k, _)| k.as_str())),
        )
    };
    let mut views = view::list(rt, which, &args.ids, need);
    // vzlist's order without -s: by ID.
    views.sort_by(|a, b| a.ctid.cmp(&b.ctid));
    if let Some((key, reverse)) = &sort {
        views.sort_by(|a, b| {
            let o = order(&value(a, key), &value(b, key));
            if *reverse {
                o.reverse()
            } else {
                o
            }
        });
    }
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&views)?)?;
        return Ok(0);
    }
    let mut table: Vec<Vec<String>> = Vec::new();
    if !args.no_header && !args.ids_only {
        table.push(fields.iter().map(|f| f.to_uppercase()).collect());
    }
    for v in &views {
        table.push(
            fields
                .iter()
                .map(|f| match value(v, f) {
                    Value::Null if is_number(f) => view::limit_text(None),
                    other => text(&other),
                })
                .collect(),
        );
    }
    let widths: Vec<usize> = (0..fields.len())
        .map(|i| table.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    // Numbers (and their headers) right-aligned as in vzlist; words left-aligned.
    let numeric: Vec<bool> = fields.iter().map(|f| is_number(f)).collect();
    for r in table {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| match numeric[i] {
                true => format!("{c:>w$}", w = widths[i]),
                false => format!("{c:<w$}", w = widths[i]),
            })
            .collect();
        outln!("{}", line.join("  ").trim_end())?;
    }
    Ok(0)
}

/// Beancounter fields hold numbers; the others words.
fn is_number(field: &str) -> bool {
    !view::PLAIN_FIELDS.iter().any(|(name, _)| *name == field)
}

fn value(v: &VeView, field: &str) -> Value {
    // Fields were checked before listing.
    v.field(field).unwrap_or(Value::Null)
}

/// Sort order of field values: numbers by value with unlimited (null) above every
/// number, text and address lists by their text.
fn order(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_u64()
            .cmp(&y.as_u64())
            .then_with(|| x.to_string().cmp(&y.to_string())),
        (Value::Null, Value::Number(_)) => Ordering::Greater,
        (Value::Number(_), Value::Null) => Ordering::Less,
        (x, y) => text(x).cmp(&text(y)),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".to_string(),
        Value::String(s) => printable(s),
        Value::Array(a) if a.is_empty() => "-".to_string(),
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str())
            .map(printable)
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    }
}

/// A cell as it may reach a terminal: words such as the hostname come from the spec,
/// which is the tenant's, so a newline (a forged row) or an escape sequence is shown
/// escaped rather than acted on.
fn printable(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .map(|c| match c.is_control() {
            true => c.escape_default().collect(),
            false => c.to_string(),
        })
        .collect()
}

fn list_fields() -> Result<i32> {
    for (name, what) in view::PLAIN_FIELDS {
        outln!("{name:<16}{what}")?;
    }
    for bc in view::BEANCOUNTERS {
        for (suffix, column) in view::SUFFIXES {
            let alias = match bc {
                "physpages" => format!(" (or ram{suffix})"),
                "swappages" => format!(" (or swap{suffix})"),
                _ => String::new(),
            };
            outln!("{:<16}{bc}'s {column}{alias}", format!("{bc}{suffix}"))?;
        }
    }
    Ok(0)
}
