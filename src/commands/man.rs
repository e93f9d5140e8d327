//! `vzrun man DIR` (hidden; `hack/setup.sh` runs it): a man page for vzrun and one for
//! every subcommand (`vzrun-ve-list.1`), generated from the clap definition, so they say
//! what `--help` says.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::Cli;
use crate::commands::out::outln;

#[derive(clap::Args, Debug)]
#[command(
    about = "Write the man pages (section 1) into a directory",
    after_help = "Example:\n  vzrun man /usr/local/share/man/man1 && man vzrun-ve-set"
)]
pub struct Args {
    /// Where to write vzrun.1 and vzrun-<COMMAND>.1 (made if missing)
    pub dir: PathBuf,
}

pub fn run(args: Args) -> Result<i32> {
    std::fs::create_dir_all(&args.dir).with_context(|| format!("{}", args.dir.display()))?;
    let mut cmd = Cli::command();
    // Global options reach the subcommands' definitions only once the command is built.
    cmd.build();
    let written = write_pages(&cmd, "vzrun", &args.dir)?;
    outln!("{written} man pages written to {}", args.dir.display())?;
    Ok(0)
}

/// Writes `NAME.1` for `cmd`, invoked as `bin`, and, recursively, `NAME-SUB.1` for each
/// visible subcommand; returns how many pages were written.
fn write_pages(cmd: &clap::Command, bin: &str, dir: &Path) -> Result<usize> {
    let name = bin.replace(' ', "-");
    let page = cmd.clone().name(name.clone()).bin_name(bin.to_string());
    let mut text = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut text)
        .with_context(|| format!("render {name}.1"))?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
    let mut written = 1;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        written += write_pages(sub, &format!("{bin} {}", sub.get_name()), dir)?;
    }
    Ok(written)
}
