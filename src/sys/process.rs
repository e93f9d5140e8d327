//! One way to run an external program (mkfs, nft, debootstrap, criu's helpers, tar, ps):
//! its failure names the tool, its arguments, how it ended and the end of what it said on
//! stderr, so an error message tells the user what to look at.

use std::ffi::OsStr;
use std::process::{Command, Output, Stdio};

/// How much of a failing tool's stderr an error carries.
const STDERR_TAIL: usize = 600;

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("{tool}: cannot run it: {source}")]
    Spawn {
        tool: String,
        source: std::io::Error,
    },
    #[error("{tool} {args} failed ({status}){}", tail_text(.stderr))]
    Failed {
        tool: String,
        args: String,
        status: String,
        stderr: String,
    },
}

fn tail_text(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    }
}

fn name_of(cmd: &Command) -> String {
    cmd.get_program().to_string_lossy().into_owned()
}

fn args_of(cmd: &Command) -> String {
    cmd.get_args()
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last lines of a tool's stderr, trimmed to a few hundred characters.
fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    let start = text
        .char_indices()
        .rev()
        .nth(STDERR_TAIL)
        .map(|(i, _)| i)
        .unwrap_or(0);
    text[start..].to_string()
}

/// Runs `cmd` to its end with stdin closed; its output is returned when it exits 0.
pub fn output(cmd: &mut Command) -> Result<Output, ToolError> {
    let _step = tracing::debug_span!("run", tool = %name_of(cmd), args = %args_of(cmd)).entered();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| ToolError::Spawn {
            tool: name_of(cmd),
            source,
        })?;
    checked(cmd, out)
}

/// The output of a tool that exited 0, or the failure that names it.
fn checked(cmd: &Command, out: Output) -> Result<Output, ToolError> {
    if out.status.success() {
        return Ok(out);
    }
    Err(ToolError::Failed {
        tool: name_of(cmd),
        args: args_of(cmd),
        status: out.status.to_string(),
        stderr: tail(&out.stderr),
    })
}

/// Runs `cmd` to its end; only success or the typed failure matters.
pub fn run(cmd: &mut Command) -> Result<(), ToolError> {
    output(cmd.stdout(Stdio::null())).map(|_| ())
}

/// Runs `cmd` with `input` on its stdin (nft reads rule batches so).
pub fn run_with_input(cmd: &mut Command, input: &[u8]) -> Result<Output, ToolError> {
    let _step = tracing::debug_span!("run", tool = %name_of(cmd), args = %args_of(cmd), input = %String::from_utf8_lossy(input)).entered();
    use std::io::Write;
    let spawn_err = |cmd: &Command, source| ToolError::Spawn {
        tool: name_of(cmd),
        source,
    };
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| spawn_err(cmd, e))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A tool that exits early closes its end: its status tells what went wrong.
        let _ = stdin.write_all(input);
    }
    let out = child.wait_with_output().map_err(|e| spawn_err(cmd, e))?;
    checked(cmd, out)
}

/// Whether the process `pid` is in a namespace of its own of this kind, not vzrun's
/// (the host's): a VE that shares the host's UTS namespace must not get the host's
/// hostname to write.
pub fn own_namespace(pid: i32, kind: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    let ino = |p: String| std::fs::metadata(p).map(|m| (m.dev(), m.ino())).ok();
    match (
        ino(format!("/proc/{pid}/ns/{kind}")),
        ino(format!("/proc/self/ns/{kind}")),
    ) {
        (Some(theirs), Some(ours)) => theirs != ours,
        _ => false,
    }
}

/// This process's command line past the program's name, zeroed where the kernel shows it
/// (/proc/PID/cmdline, readable by every process that sees the pid); put back when
/// dropped. A fork taken meanwhile keeps it hidden: the processes vzrun forks into a
/// container are seen by the container's users before they exec, and `exec -e
/// PASSWORD=…` must not be shown to them (runc's show `runc init`).
pub struct HiddenArgs {
    start: usize,
    saved: Vec<u8>,
}

/// Hides the arguments (see [`HiddenArgs`]); None where /proc does not say where they
/// are.
pub fn hide_args() -> Option<HiddenArgs> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let (start, end) = arg_area(&stat)?;
    // SAFETY: [arg_start, arg_end) is this process's own argument area, which the kernel
    // mapped readable and writable on its stack at exec and never unmaps; arg_area
    // bounds its length.
    let area = unsafe { std::slice::from_raw_parts_mut(start as *mut u8, end - start) };
    // The program's name and its NUL stay.
    let keep = area.iter().position(|&b| b == 0)? + 1;
    let saved = area[keep..].to_vec();
    area[keep..].fill(0);
    Some(HiddenArgs {
        start: start + keep,
        saved,
    })
}

impl Drop for HiddenArgs {
    fn drop(&mut self) {
        // SAFETY: the same bytes of the argument area that hide_args zeroed.
        let area =
            unsafe { std::slice::from_raw_parts_mut(self.start as *mut u8, self.saved.len()) };
        area.copy_from_slice(&self.saved);
    }
}

/// arg_start and arg_end (fields 48 and 49 of a /proc/PID/stat line), when they make a
/// plausible area.
fn arg_area(stat: &str) -> Option<(usize, usize)> {
    let start: usize = stat_field(stat, 48)?.parse().ok()?;
    let end: usize = stat_field(stat, 49)?.parse().ok()?;
    (start > 0 && end > start && end - start <= 1 << 21).then_some((start, end))
}

/// Field `n` (counted from 1, as proc(5) does) of a /proc/PID/stat line. The command
/// name (field 2) may hold spaces and parentheses, so the fields after it are counted
/// from its last ')'.
fn stat_field(stat: &str, n: usize) -> Option<&str> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(n.checked_sub(3)?)
}

/// When the process `pid` started (clock ticks after boot, field 22 of /proc/PID/stat):
/// with the pid, what names one process for good, since pids are reused.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    start_time_in(&stat)
}

/// The start time in a /proc/PID/stat line.
fn start_time_in(stat: &str) -> Option<u64> {
    stat_field(stat, 22)?.parse().ok()
}

/// clone3(2) without a new stack: a fork with `flags` (namespaces, CLONE_PARENT) whose
/// end sends `exit_signal` to the parent (0 with CLONE_PARENT: the kernel takes the
/// caller's). Returns 0 in the new process and its pid in the caller. The caller must
/// have one thread, as for fork(2).
pub fn clone3(flags: u64, exit_signal: u64) -> Result<i32, nix::errno::Errno> {
    // struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal, stack,
    // stack_size, tls.
    let args: [u64; 8] = [flags, 0, 0, 0, exit_signal, 0, 0, 0];
    // SAFETY: clone3 without CLONE_VM gives the child its own copy of the address space
    // (as fork does); the arguments are a valid clone_args of the size passed, and the
    // caller has one thread.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            args.as_ptr(),
            std::mem::size_of_val(&args),
        )
    };
    nix::errno::Errno::result(r).map(|pid| pid as i32)
}

/// A pidfd of process `pid` (close-on-exec): it names that process for good, and turns
/// readable when it exits.
pub fn pidfd_open(pid: i32) -> Result<std::os::fd::OwnedFd, nix::errno::Errno> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open(2) has no wrapper in nix; it takes a pid and flags and returns a
    // new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = nix::errno::Errno::result(fd)?;
    // SAFETY: the descriptor was just returned to us and nothing else owns it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

/// Closes every descriptor from `from` up, but those in `keep`.
pub fn close_all_but(from: i32, keep: &[&std::os::fd::OwnedFd]) -> Result<(), nix::errno::Errno> {
    use std::os::fd::AsRawFd;
    let mut kept: Vec<i32> = keep
        .iter()
        .map(|f| f.as_raw_fd())
        .filter(|&f| f >= from)
        .collect();
    kept.sort_unstable();
    let mut lo = from;
    for k in kept.into_iter().chain(std::iter::once(i32::MAX)) {
        if k > lo {
            // SAFETY: close_range(2) on a range of this process's own descriptors, none
            // of which is used afterwards but those kept.
            let r = unsafe { libc::syscall(libc::SYS_close_range, lo as u32, (k - 1) as u32, 0) };
            nix::errno::Errno::result(r)?;
        }
        lo = k.saturating_add(1);
    }
    Ok(())
}

/// Stops pathrs caching its procfs handle, in this process and in every process forked
/// from it afterwards. pathrs keeps one handle per process for good, made by the first
/// user: in a create that goes libcontainer's way that is the intermediate's cgroup
/// manager, in the host's PID namespace, and the init it forks keeps the descriptor while
/// it waits for `start`, where a process exec'd into the container with CAP_SYS_PTRACE
/// reads the host's processes and files through /proc/1/fd. pathrs marks its cache bad
/// for good when the cached descriptor is no longer a procfs (its documented fallback for
/// callers that close descriptors, as runc does) and from then on makes and drops a
/// handle per use; the descriptor is made /dev/null here and then closed.
pub fn uncache_procfs() {
    use std::os::fd::{AsFd, AsRawFd};
    let Ok(handle) = pathrs::procfs::ProcfsHandleBuilder::new().build() else {
        return;
    };
    let fd = handle.as_fd().as_raw_fd();
    drop(handle);
    let Ok(null) = std::fs::File::open("/dev/null") else {
        return;
    };
    if nix::unistd::dup2(null.as_raw_fd(), fd).is_ok() {
        // Sees the cached descriptor is no procfs: the cache is bad from now on.
        drop(pathrs::procfs::ProcfsHandleBuilder::new().build());
        let _ = nix::unistd::close(fd);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_arguments_come_back() {
        let before = std::fs::read("/proc/self/cmdline").unwrap();
        let hidden = hide_args().expect("this process's argument area");
        let during = std::fs::read("/proc/self/cmdline").unwrap();
        drop(hidden);
        let after = std::fs::read("/proc/self/cmdline").unwrap();
        let name = before.split(|&b| b == 0).next().unwrap();
        assert!(during.starts_with(name));
        assert!(during[name.len()..].iter().all(|&b| b == 0), "{during:?}");
        assert_eq!(after, before);
    }

    #[test]
    fn the_start_time_is_field_22_whatever_the_name() {
        let line =
            "305 (a b) c)) S 1 305 305 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10";
        assert_eq!(start_time_in(line), Some(98765));
        assert_eq!(start_time_in("305 (x) S 1"), None);
        assert!(start_time(std::process::id() as i32).is_some());
    }

    #[test]
    fn failure_names_tool_args_status_and_stderr() {
        let err = run(Command::new("sh").args(["-c", "echo nope >&2; exit 3"])).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("sh -c echo nope >&2; exit 3 failed"),
            "{text}"
        );
        assert!(text.contains("exit status: 3"), "{text}");
        assert!(text.ends_with(": nope"), "{text}");
    }

    #[test]
    fn a_missing_tool_says_it_cannot_run() {
        let err = run(&mut Command::new("/nonexistent/tool")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("/nonexistent/tool: cannot run it"),
            "{text}"
        );
    }

    #[test]
    fn input_reaches_the_tool() {
        let out = run_with_input(&mut Command::new("cat"), b"abc").unwrap();
        assert_eq!(out.stdout, b"abc");
    }
}
