//! `vzrun migrate`: move a running VE to another host running `vzrun migrate-listen`
//! (vzmigrate): cold, pre-copy or post-copy (`runtime::migrate`). A failure before the
//! destination VE runs leaves the VE running here as it was.

use std::path::PathBuf;

use anyhow::{anyhow, Result};

use crate::cli::GlobalOpts;
use crate::runtime::error::Error;
use crate::runtime::migrate::SendOptions;
use crate::ve::migrate::{parse_addr, Key, MigError, Progress, Requested};

#[derive(clap::Args, Debug)]
#[command(
    about = "Move a running VE to another host (vzmigrate)",
    after_help = "Modes: without --online the VE is checkpointed, copied and restored (cold). With --online, \
pre-copy copies memory in rounds while the VE runs and freezes it only for the last difference; it needs \
the kernel's soft-dirty page tracking. Post-copy freezes the VE only for its non-memory state, resumes it \
on the destination at once and moves its pages on demand and in the background (CRIU lazy pages, \
userfaultfd). --mode auto picks pre-copy where soft-dirty exists, else post-copy.\n\n\
WARNING: in a post-copy move the VE's memory lives on both hosts until the last page has arrived. If the \
source host or the network fails before that, the VE is lost: it cannot run on either side. CRIU's lazy \
migration has the same property. The destination's watchdog (migrate-listen --page-timeout) then says \
which pages never arrived and stops the VE there.\n\n\
Post-copy needs fs.pipe-max-size >= 4 MiB when vzrun lacks CAP_SYS_RESOURCE: vzrun raises it on both \
hosts (and says so), or refuses --online where /proc/sys is read-only.\n\n\
Example:\n  vzrun migrate --key-file /etc/vzrun/migrate.key --online web 192.0.2.7:4700"
)]
pub struct Args {
    /// The VE to move
    pub id: String,
    /// The destination's migrate-listen address
    pub destination: String,
    /// File holding the key shared with the destination
    #[arg(long = "key-file")]
    pub key_file: PathBuf,
    /// Move it while it runs (pre-copy or post-copy) rather than stop, copy, restore
    #[arg(long)]
    pub online: bool,
    /// How memory moves with --online: auto, precopy or postcopy
    #[arg(long, default_value = "auto")]
    pub mode: String,
    /// Most pre-copy rounds before the final dump
    #[arg(long = "max-rounds", default_value_t = 8)]
    pub max_rounds: u32,
    /// Keep the source VE (stopped, with its disk area) after a successful move
    #[arg(long = "keep-source")]
    pub keep_source: bool,
}

pub fn run(args: Args, global: &GlobalOpts) -> Result<i32> {
    let opts = SendOptions {
        key: Key::load(&args.key_file).map_err(flag_words)?,
        destination: parse_addr("destination", &args.destination)?,
        mode: args.mode.parse::<Requested>().map_err(flag_words)?,
        id: args.id,
        online: args.online,
        max_rounds: args.max_rounds,
        keep_source: args.keep_source,
    };
    let progress = Progress::new(false);
    let summary = super::runtime(global)
        .migrate(&opts, &progress)
        .map_err(|e| match e {
            Error::Mig(m) => flag_words(m),
            other => other.into(),
        })?;
    progress.line(&summary.to_string());
    Ok(0)
}

/// A migration setting's error in the words of its flag.
pub fn flag_words(e: MigError) -> anyhow::Error {
    match e {
        MigError::Key { path, problem } => anyhow!("--key-file {}: {problem}", path.display()),
        MigError::UnknownMode(m) => {
            anyhow!("--mode: {m:?} is not one of auto, precopy, postcopy")
        }
        MigError::NoSoftDirty => anyhow!(
            "--mode precopy: this kernel has no soft-dirty page tracking (criu check --feature \
             mem_dirty_track); use --mode postcopy or auto"
        ),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setting_errors_name_their_flag() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        std::fs::write(&p, "short\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = flag_words(Key::load(&p).err().unwrap()).to_string();
        assert!(
            e.starts_with("--key-file") && e.contains("too short"),
            "{e}"
        );
        let e = flag_words("fast".parse::<Requested>().unwrap_err()).to_string();
        assert!(e.starts_with("--mode: ") && e.contains("fast"), "{e}");
        let e = flag_words(MigError::NoSoftDirty).to_string();
        assert!(
            e.contains("--mode precopy") && e.contains("soft-dirty"),
            "{e}"
        );
    }
}
