//! A system VE's lifecycle on the runtime: boot it from its bundle with init's output in
//! the console log, stop it the way its init expects, destroy it, enter it. The VE's
//! directory holds its bundle, `ve.conf` and console log; its flock serialises the verbs.

use std::fs::{self, File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use libcontainer::container::ContainerStatus;

use super::{request_shutdown, ves_dir, VeConf, CONSOLE_LOG, VE_CONF};
use crate::runtime::checkpoint::CheckpointOptions;
use crate::runtime::create::CreateOptions;
use crate::runtime::error::{Error, Result};
use crate::runtime::exec::{ExecOptions, ProcessFlags, ProcessSource};
use crate::runtime::lifecycle::start_loaded;
use crate::runtime::restore::RestoreOptions;
use crate::runtime::root::validate_id;
use crate::runtime::Runtime;
use crate::sys::lock::FileLock;
use crate::ve::checkpoint::{CriuOpts, DumpOpts, RestoreOpts};

/// Where `ve suspend` leaves a VE's checkpoint: in the VE's own directory, as vzctl
/// keeps its dump file, until `ve resume` brings the VE back from it.
pub const SUSPEND_DIR: &str = "suspend";

/// root's login shell from the VE's own /etc/passwd, read inside the VE.
const LOGIN: &str = "cd /root 2>/dev/null || cd /; \
    s=$(sed -n 's/^root:[^:]*:0:[^:]*:[^:]*:[^:]*://p' /etc/passwd 2>/dev/null); \
    exec \"${s:-/bin/sh}\" -l";

/// The directory of an existing system VE.
pub fn existing(id: &str) -> Result<PathBuf> {
    validate_id(id)?;
    let dir = ves_dir(&crate::ve::data_dir()).join(id);
    if !dir.join(VE_CONF).exists() {
        return Err(Error::State(format!(
            "VE {id} does not exist (see vzrun ve create)"
        )));
    }
    Ok(dir)
}

/// Locks an existing system VE for one verb (a record lock: the VE's init, started
/// while it is held, does not inherit it).
pub fn lock(id: &str) -> Result<(PathBuf, FileLock)> {
    let dir = existing(id)?;
    let path = dir.join(".lock");
    let lock = FileLock::exclusive(&path, true).map_err(|e| Error::io("lock", &path, e))?;
    // The holder before us may have destroyed it.
    existing(id)?;
    Ok((dir, lock))
}

/// Boots a system VE: its container from the VE's bundle, init started.
pub fn start(rt: &Runtime, id: &str) -> Result<()> {
    let (dir, _lock) = lock(id)?;
    let conf = VeConf::load(&dir)?;
    // Booting afresh would run on a disk the checkpoint's processes left mid-use, and
    // the checkpoint would then be stale.
    if dir.join(SUSPEND_DIR).exists() {
        return Err(Error::State(format!(
            "VE {id} is suspended: vzrun ve resume {id}"
        )));
    }
    let log = clear_to_run(rt, id, &dir)?;
    // ve.conf is what the VE boots with, hand edits included; a VE from before it held
    // the settings gets the text form now.
    if conf.legacy {
        conf.save(&dir)?;
    }
    conf.write_bundle(&dir)?;
    let created = {
        let _stdio = StdioTo::log(&log)?;
        rt.create(CreateOptions {
            id: id.to_string(),
            bundle: dir.clone(),
            console_socket: None,
            pid_file: None,
            no_pivot: false,
            preserve_fds: 0,
            detach: true,
            spec: None,
            trusted: true,
        })
    };
    let (mut container, lock) = created?;
    if let Err(e) = start_loaded(&mut container) {
        drop(lock);
        let _ = rt.delete(id, true);
        return Err(e);
    }
    Ok(())
}

/// Asks the VE's init to shut the system down, waits, kills what is left after
/// `timeout`, then removes the container; the bundle and private area stay. Returns
/// what happened, for the user and the console log.
pub fn stop(rt: &Runtime, id: &str, fast: bool, timeout: Duration) -> Result<String> {
    let (dir, _lock) = lock(id)?;
    let conf = VeConf::load(&dir)?;
    let not_running = || Error::State(format!("VE {id} is not running"));
    let mut loaded = rt.root.load(id).map_err(|_| not_running())?;
    let container = &mut loaded.container;
    let msg = match container.status() {
        ContainerStatus::Stopped => format!("VE {id} had already stopped"),
        _ if fast => format!("VE {id} killed (--fast)"),
        status => {
            if status == ContainerStatus::Paused {
                container
                    .resume()
                    .map_err(|e| Error::Step(format!("resume before shutdown: {e}")))?;
            }
            if status == ContainerStatus::Created {
                return Err(Error::State(format!(
                    "VE {id} was created but never started: use --fast"
                )));
            }
            let pid = container
                .pid()
                .map(|p| p.as_raw())
                .ok_or_else(not_running)?;
            let began = Instant::now();
            // An init that cannot be asked (its FIFO is gone, say) is killed like one
            // that does not answer, rather than left running.
            let asked = request_shutdown(pid, conf.shutdown);
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
    rt.delete(id, true)?;
    if let Ok(mut log) = OpenOptions::new().append(true).open(dir.join(CONSOLE_LOG)) {
        let when = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let _ = writeln!(log, "vzrun {when}: {msg}");
    }
    tracing::debug!("{msg}");
    Ok(msg)
}

/// Removes a stopped VE: its bundle, record, console log and private area.
pub fn destroy(rt: &Runtime, id: &str) -> Result<()> {
    let (dir, _lock) = lock(id)?;
    if let Ok((container, _)) = rt.root.read(id) {
        if container.status() != ContainerStatus::Stopped {
            return Err(Error::State(format!(
                "VE {id} is running: stop it first (vzrun ve stop {id})"
            )));
        }
        rt.delete(id, true)?;
    }
    // Renamed first, so the ID is free at once and a failure never leaves half a VE
    // under its name.
    let trash = dir.with_file_name(format!(".{id}.destroy-{}", std::process::id()));
    fs::rename(&dir, &trash).map_err(|e| Error::io("remove", &dir, e))?;
    fs::remove_dir_all(&trash).map_err(|e| Error::io("remove", &trash, e))?;
    Ok(())
}

/// `vzctl suspend`: checkpoints a running system VE into its own directory; the VE
/// stops. A failed dump leaves the VE running and no checkpoint behind.
pub fn suspend(rt: &Runtime, id: &str) -> Result<()> {
    let (dir, _lock) = lock(id)?;
    match rt.root.read(id) {
        Ok((c, _)) if c.status() == ContainerStatus::Running => {}
        _ => {
            return Err(Error::State(format!(
                "VE {id} is not running (vzrun ve start {id})"
            )))
        }
    }
    let image = dir.join(SUSPEND_DIR);
    // Left by a suspend whose VE was started afresh since: the running VE is newer.
    if image.exists() {
        fs::remove_dir_all(&image).map_err(|e| Error::io("remove", &image, e))?;
    }
    let dumped = rt.checkpoint(&CheckpointOptions {
        id: id.to_string(),
        dump: DumpOpts {
            criu: CriuOpts {
                image: image.clone(),
                ..Default::default()
            },
            ..Default::default()
        },
    });
    if let Err(e) = dumped {
        let _ = fs::remove_dir_all(&image);
        return Err(e);
    }
    Ok(())
}

/// `vzctl resume`: restores a suspended system VE from its own directory, init's output
/// going to the console log again; the checkpoint is removed once the VE runs. A failed
/// restore keeps the checkpoint for another try.
pub fn resume(rt: &Runtime, id: &str) -> Result<()> {
    let (dir, _lock) = lock(id)?;
    let image = dir.join(SUSPEND_DIR);
    if !image.exists() {
        return Err(Error::State(format!(
            "VE {id} is not suspended (vzrun ve suspend {id})"
        )));
    }
    let log = clear_to_run(rt, id, &dir)?;
    {
        // CRIU hands the restored init our stdio in place of the console log it had.
        let _stdio = StdioTo::log(&log)?;
        rt.restore(RestoreOptions {
            id: id.to_string(),
            bundle: dir.clone(),
            criu: RestoreOpts {
                criu: CriuOpts {
                    image: image.clone(),
                    ..Default::default()
                },
                ..Default::default()
            },
            console_socket: None,
            pid_file: None,
            detach: true,
            keep_on_hook_failure: false,
            action_limit: None,
            trusted: true,
        })?;
    }
    fs::remove_dir_all(&image).map_err(|e| Error::io("remove", &image, e))?;
    Ok(())
}

/// What `ve status` reports, in vzctl's three words: whether the VE exists, whether
/// its root is mounted (its container made), and whether it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub id: String,
    pub exists: bool,
    pub mounted: bool,
    /// vzctl's word: `running` or `down`; vzrun also says `paused`.
    pub state: &'static str,
    /// A `ve suspend` checkpoint waits for `ve resume`.
    pub suspended: bool,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "VEID {} {} {} {}",
            self.id,
            if self.exists { "exist" } else { "deleted" },
            if self.mounted { "mounted" } else { "unmounted" },
            self.state
        )?;
        if self.suspended {
            f.write_str(" suspended")?;
        }
        Ok(())
    }
}

/// A VE's status: a system VE, or any container under the root (a VE made from an
/// application bundle). An ID that is neither is `deleted`, not an error, as vzctl has it.
pub fn status(rt: &Runtime, id: &str) -> Result<Status> {
    validate_id(id)?;
    let system = existing(id);
    let container = rt.root.read(id).ok().map(|(c, _)| c.status());
    let (mounted, state) = match container {
        None | Some(ContainerStatus::Stopped) => (false, "down"),
        Some(ContainerStatus::Running) => (true, "running"),
        Some(ContainerStatus::Paused) => (true, "paused"),
        // Created (init waiting for start), or in the middle of being made or removed.
        Some(_) => (true, "down"),
    };
    Ok(Status {
        id: id.to_string(),
        exists: system.is_ok() || container.is_some(),
        mounted,
        state,
        suspended: system.is_ok_and(|d| d.join(SUSPEND_DIR).exists()),
    })
}

/// Checks that `id` is a system VE whose container runs, with errors that name it and
/// say what to do; `exec_flags` are the `vzrun exec` flags to suggest for an
/// application container.
fn running_system_ve(rt: &Runtime, id: &str, exec_flags: &str) -> Result<()> {
    if let Err(e) = existing(id) {
        // A container that is not a system VE has no init or login to enter through.
        if rt.root.read(id).is_ok() {
            return Err(Error::State(format!(
                "{id} is an application container, not a system VE: use vzrun exec {exec_flags}{id} CMD"
            )));
        }
        return Err(e);
    }
    match rt.root.read(id) {
        Ok((c, _)) if c.status() == ContainerStatus::Running => Ok(()),
        _ => Err(Error::State(format!(
            "VE {id} is not running (vzrun ve start {id})"
        ))),
    }
}

/// A login shell inside a running VE, on a terminal, through the same path as
/// `vzrun exec -t`; with `command`, that command on the terminal instead of the shell.
/// Returns the exit status of what ran.
pub fn enter(rt: &Runtime, id: &str, command: &[String]) -> Result<i32> {
    running_system_ve(rt, id, "-t ")?;
    // A login shell on a terminal fed from a file or a pipe would wait for ever.
    if !std::io::stdin().is_terminal() {
        return Err(Error::Step(format!(
            "VE {id}: entering needs a terminal, and stdin is not one; \
             to run a command without one: vzrun ve exec {id} CMD"
        )));
    }
    let mut argv = vec!["/bin/sh".to_string(), "-c".to_string()];
    if command.is_empty() {
        argv.push(LOGIN.to_string());
    } else {
        // The command's words reach it as they were given, in root's home as a login
        // would start there.
        argv.push("cd /root 2>/dev/null || cd /; exec \"$@\"".to_string());
        argv.push("sh".to_string());
        argv.extend(command.iter().cloned());
    }
    let term = std::env::var("TERM").unwrap_or_else(|_| "linux".to_string());
    rt.exec(in_ve(
        id,
        argv,
        true,
        vec![format!("TERM={term}"), "HOME=/root".to_string()],
    ))
}

/// `vzctl exec`: a command line run by the VE's shell, without a terminal, with vzrun's
/// stdin, stdout and stderr; returns its exit status. The words are joined with spaces
/// as vzctl joins them, so `ve exec 101 'echo $HOME'` expands inside the VE.
pub fn exec(rt: &Runtime, id: &str, command: &[String]) -> Result<i32> {
    if command.is_empty() {
        return Err(Error::Config(format!("VE {id}: no command to run")));
    }
    running_system_ve(rt, id, "")?;
    let line = command.join(" ");
    rt.exec(in_ve(
        id,
        vec!["/bin/sh".to_string(), "-c".to_string(), line],
        false,
        vec!["HOME=/root".to_string()],
    ))
}

/// An exec into a VE's container, in the foreground, with the container's own process
/// settings apart from `command`, `tty` and `env`.
fn in_ve(id: &str, command: Vec<String>, tty: bool, env: Vec<String>) -> ExecOptions {
    ExecOptions {
        id: id.to_string(),
        process: ProcessSource::Flags(ProcessFlags {
            command,
            tty,
            env,
            ..Default::default()
        }),
        tty,
        console_socket: None,
        pid_file: None,
        detach: false,
        preserve_fds: 0,
        ignore_paused: false,
        cgroup: None,
        process_label: None,
    }
}

/// vzrun's own stdin, stdout and stderr pointed at the console log (stdin at /dev/null)
/// while libcontainer creates the init, which inherits them; put back when dropped.
struct StdioTo {
    saved: Vec<(i32, OwnedFd)>,
}

impl StdioTo {
    fn log(log: &File) -> Result<Self> {
        let null = File::open("/dev/null").map_err(|e| Error::io("open", "/dev/null", e))?;
        let mut guard = StdioTo { saved: Vec::new() };
        let own = [
            std::io::stdin().as_fd().try_clone_to_owned(),
            std::io::stdout().as_fd().try_clone_to_owned(),
            std::io::stderr().as_fd().try_clone_to_owned(),
        ];
        for ((fd, target), copy) in [
            (0, null.as_raw_fd()),
            (1, log.as_raw_fd()),
            (2, log.as_raw_fd()),
        ]
        .into_iter()
        .zip(own)
        {
            let copy = copy.map_err(|e| Error::io("save", format!("fd {fd}"), e))?;
            guard.saved.push((fd, copy));
            nix::unistd::dup2(target, fd)
                .map_err(|e| Error::io("redirect", format!("fd {fd}"), e.into()))?;
        }
        Ok(guard)
    }
}

impl Drop for StdioTo {
    fn drop(&mut self) {
        for (fd, copy) in self.saved.drain(..) {
            let _ = nix::unistd::dup2(copy.as_raw_fd(), fd);
        }
    }
}

/// Before a VE's init runs again (start or resume): a container its init left stopped
/// (a `halt` inside) is removed, a running one refused; the console log is opened.
fn clear_to_run(rt: &Runtime, id: &str, dir: &std::path::Path) -> Result<fs::File> {
    if let Ok((container, _)) = rt.root.read(id) {
        match container.status() {
            ContainerStatus::Stopped => rt.delete(id, true)?,
            _ => return Err(Error::State(format!("VE {id} is already running"))),
        }
    }
    // The init writes the log through its stdout, and can reach the file itself through
    // /proc/1/fd/1: write any content, chmod it (a setuid copy of a program). The VE's
    // directory is root's alone, so nobody else on the host reaches the file; the mode
    // is put back at every start.
    // No O_NOFOLLOW: the directory is root's alone, and the flag would stay with the
    // open file, which CRIU reopens through /proc/self/fd at a resume (ELOOP).
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io("chmod", dir, e))?;
    let log_path = dir.join(CONSOLE_LOG);
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log_path)
        .map_err(|e| Error::io("open", &log_path, e))?;
    log.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io("chmod", &log_path, e))?;
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// vzctl's words, in vzctl's order.
    #[test]
    fn status_reads_as_vzctl_prints_it() {
        let s = |exists, mounted, state| {
            Status {
                id: "101".into(),
                exists,
                mounted,
                state,
                suspended: false,
            }
            .to_string()
        };
        assert_eq!(s(true, true, "running"), "VEID 101 exist mounted running");
        assert_eq!(s(true, false, "down"), "VEID 101 exist unmounted down");
        assert_eq!(s(false, false, "down"), "VEID 101 deleted unmounted down");
    }
}
