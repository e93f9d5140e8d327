//! `vzrun ve start ID`: boot a system VE: create its container from the VE's bundle and
//! start its init, with init's output going to the VE's console log.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use anyhow::{anyhow, bail, Context, Result};
use libcontainer::container::ContainerStatus;

use crate::cli::GlobalOpts;
use crate::commands::create::{create_container, CreateOpts};
use crate::runtime::root::Root;
use crate::ve::system::{self, VeConf};

#[derive(clap::Args, Debug)]
pub struct StartArgs {
    pub id: String,
}

pub fn run(root: &Root, global: &GlobalOpts, args: StartArgs) -> Result<i32> {
    start(root, global, &args.id)?;
    println!("VE {} started", args.id);
    Ok(0)
}

pub fn start(root: &Root, global: &GlobalOpts, id: &str) -> Result<()> {
    let (dir, _lock) = super::lock_ve(id)?;
    VeConf::load(&dir)?;
    // A VE whose init ended by itself (a `halt` inside) leaves a stopped container.
    if let Ok((container, _)) = root.read(id) {
        match container.status() {
            ContainerStatus::Stopped => crate::commands::delete::delete_container(root, id, true)?,
            _ => bail!("VE {id} is already running"),
        }
    }
    let log_path = dir.join(system::CONSOLE_LOG);
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("open {}", log_path.display()))?;
    let created = {
        let _stdio = StdioTo::log(&log)?;
        create_container(
            root,
            global,
            CreateOpts {
                id,
                bundle: &dir,
                console_socket: None,
                pid_file: None,
                no_pivot: false,
                preserve_fds: 0,
                detach: true,
                spec: None,
            },
        )
    };
    let (mut container, lock) = created?;
    if let Err(e) = crate::commands::start::start_container(&mut container) {
        drop(lock);
        let _ = crate::commands::delete::delete_container(root, id, true);
        return Err(e);
    }
    Ok(())
}

/// Points stdin at /dev/null and stdout/stderr at the console log while the container
/// is created, so its init inherits those; ours come back when dropped.
struct StdioTo {
    saved: Vec<(i32, OwnedFd)>,
}

impl StdioTo {
    fn log(log: &File) -> Result<Self> {
        let null = File::open("/dev/null").context("open /dev/null")?;
        let mut guard = StdioTo { saved: Vec::new() };
        for (fd, target) in [
            (0, null.as_raw_fd()),
            (1, log.as_raw_fd()),
            (2, log.as_raw_fd()),
        ] {
            // SAFETY: dup/dup2 on descriptors we own or that the process was started with.
            let copy = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
            if copy < 0 {
                return Err(anyhow!("save fd {fd}: {}", std::io::Error::last_os_error()));
            }
            guard
                .saved
                .push((fd, unsafe { OwnedFd::from_raw_fd(copy) }));
            if unsafe { libc::dup2(target, fd) } < 0 {
                return Err(anyhow!(
                    "redirect fd {fd}: {}",
                    std::io::Error::last_os_error()
                ));
            }
        }
        Ok(guard)
    }
}

impl Drop for StdioTo {
    fn drop(&mut self) {
        for (fd, copy) in self.saved.drain(..) {
            // SAFETY: restoring a descriptor saved above.
            unsafe {
                libc::dup2(copy.as_raw_fd(), fd);
            }
        }
    }
}
