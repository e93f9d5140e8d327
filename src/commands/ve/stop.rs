//! `vzrun ve stop ID [--fast] [--timeout S]`: ask the VE's init to shut the system down
//! (the way that init expects), wait, kill what is left after the timeout, then remove
//! the container. The VE's bundle and private area stay for the next `ve start`.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use libcontainer::container::ContainerStatus;

use crate::runtime::root::Root;
use crate::ve::system::{self, VeConf};

/// vzctl waits two minutes for a container to shut down.
pub const DEFAULT_TIMEOUT: u64 = 120;

#[derive(clap::Args, Debug)]
pub struct StopArgs {
    pub id: String,
    /// Kill at once, without asking init to shut down
    #[arg(long)]
    pub fast: bool,
    /// Seconds to wait for a clean shutdown before killing
    #[arg(long, default_value_t = DEFAULT_TIMEOUT)]
    pub timeout: u64,
}

pub fn run(root: &Root, args: StopArgs) -> Result<i32> {
    let msg = stop(root, &args.id, args.fast, Duration::from_secs(args.timeout))?;
    println!("{msg}");
    Ok(0)
}

/// How a stop ended, in words for the user and the console log.
pub fn stop(root: &Root, id: &str, fast: bool, timeout: Duration) -> Result<String> {
    let (dir, _lock) = super::lock_ve(id)?;
    let conf = VeConf::load(&dir)?;
    let mut loaded = root
        .load(id)
        .map_err(|_| anyhow!("VE {id} is not running"))?;
    let container = &mut loaded.container;
    let msg = match container.status() {
        ContainerStatus::Stopped => format!("VE {id} had already stopped"),
        _ if fast => format!("VE {id} killed (--fast)"),
        status => {
            if status == ContainerStatus::Paused {
                container
                    .resume()
                    .map_err(|e| anyhow!("resume before shutdown: {e}"))?;
            }
            if status == ContainerStatus::Created {
                bail!("VE {id} was created but never started: use --fast");
            }
            let pid = container
                .pid()
                .map(|p| p.as_raw())
                .ok_or_else(|| anyhow!("VE {id} is not running"))?;
            let began = Instant::now();
            // An init that cannot be asked (its FIFO is gone, say) is killed like one
            // that does not answer, rather than left running.
            let asked = system::request_shutdown(pid, conf.shutdown);
            let mut clean = false;
            while asked.is_ok() && began.elapsed() < timeout {
                std::thread::sleep(Duration::from_millis(10));
                if container.refresh_status().is_err()
                    || container.status() == ContainerStatus::Stopped
                {
                    clean = true;
                    break;
                }
            }
            let secs = began.elapsed().as_secs_f64();
            if let Err(e) = asked {
                format!("VE {id} could not ask its init to shut down ({e}): killed")
            } else if clean {
                format!("VE {id} stopped: init shut the system down in {secs:.2} s")
            } else {
                format!(
                    "VE {id} did not shut down within {} s: killed",
                    timeout.as_secs()
                )
            }
        }
    };
    drop(loaded);
    crate::commands::delete::delete_container(root, id, true)?;
    if let Ok(mut log) = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join(system::CONSOLE_LOG))
    {
        let when = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let _ = writeln!(log, "vzrun {when}: {msg}");
    }
    crate::logging::debug(&msg);
    Ok(msg)
}
