//! Tasks waiting in vfork for their child's exec or exit (glibc's `system()` and
//! `posix_spawn` spawn with `CLONE_VM|CLONE_VFORK`, busybox with `vfork()`).
//!
//! Such a parent sleeps killable-only until its child execs or exits. CRIU seizes every
//! task of a frozen cgroup, thaws it and waits for each task's ptrace stop; the child
//! stops, never execs, and the parent never wakes to stop: CRIU gives up after its
//! timeout ("Unseizable non-zombie … state D"). A frozen task's system call is stable,
//! so it can be read from /proc before CRIU is asked.

use std::os::unix::fs::FileExt;

/// `CLONE_VFORK` in clone(2)'s and clone3(2)'s flags.
const CLONE_VFORK: u64 = 0x4000;

/// What `/proc/TID/syscall` shows of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    /// In vfork, or clone/clone3 with CLONE_VFORK (or clone3 whose flags could not be read).
    Vfork,
    Other,
    Running,
}

/// Parses `/proc/TID/syscall` ("NR ARG1 … SP PC", "-1 SP PC" or "running"); `clone3_flags`
/// reads clone3's flags from the task's memory at the address of its first argument.
fn call_of(text: &str, clone3_flags: impl FnOnce(u64) -> Option<u64>) -> Call {
    let mut f = text.split_whitespace();
    let Some(nr) = f.next() else {
        return Call::Other;
    };
    if nr == "running" {
        return Call::Running;
    }
    let Ok(nr) = nr.parse::<i64>() else {
        return Call::Other;
    };
    let arg1 = f
        .next()
        .and_then(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).ok());
    #[cfg(target_arch = "x86_64")]
    if nr == libc::SYS_vfork {
        return Call::Vfork;
    }
    if nr == libc::SYS_clone && arg1.is_some_and(|flags| flags & CLONE_VFORK != 0) {
        return Call::Vfork;
    }
    if nr == libc::SYS_clone3 {
        // A flags word that cannot be read counts as vfork: a needless thaw costs a few
        // milliseconds, a missed vfork wait costs CRIU's whole timeout.
        return match arg1.and_then(clone3_flags) {
            Some(flags) if flags & CLONE_VFORK == 0 => Call::Other,
            _ => Call::Vfork,
        };
    }
    Call::Other
}

fn call(tid: i32) -> Call {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{tid}/syscall")) else {
        // Gone: it waits for nothing any more.
        return Call::Other;
    };
    call_of(&text, |addr| {
        // struct clone_args begins with its 64-bit flags.
        let mem = std::fs::File::open(format!("/proc/{tid}/mem")).ok()?;
        let mut b = [0u8; 8];
        mem.read_exact_at(&mut b, addr).ok()?;
        Some(u64::from_ne_bytes(b))
    })
}

/// Of the frozen tasks `tids`, those in a vfork system call: waiting for their child's
/// exec, or (rarely) frozen on their way back from it, which a thaw ends at once.
pub fn waiting(tids: &[i32]) -> Vec<i32> {
    tids.iter()
        .copied()
        .filter(|&t| call(t) == Call::Vfork)
        .collect()
}

/// Whether the running task `tid` is still in a vfork system call.
pub fn still_waiting(tid: i32) -> bool {
    call(tid) == Call::Vfork
}

/// `comm` of a task, for messages.
pub fn name(tid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{tid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vfork_calls_are_told_from_others() {
        let none = |_| None;
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            call_of("58 0x401630 0xbb8 0x0 0x0 0x0 0x0 0x7fff 0x4303", none),
            Call::Vfork
        );
        let clone = libc::SYS_clone;
        // posix_spawn's clone: CLONE_VM|CLONE_VFORK|SIGCHLD.
        assert_eq!(
            call_of(
                &format!("{clone} 0x4111 0x7f00 0x0 0x0 0x0 0x0 0x1 0x2"),
                none
            ),
            Call::Vfork
        );
        // fork(): CLONE_CHILD_SETTID|CLONE_CHILD_CLEARTID|SIGCHLD.
        assert_eq!(
            call_of(
                &format!("{clone} 0x1200011 0x0 0x0 0x0 0x0 0x0 0x1 0x2"),
                none
            ),
            Call::Other
        );
        let clone3 = libc::SYS_clone3;
        let c3 = format!("{clone3} 0x7ffd1000 0x58 0x0 0x0 0x0 0x0 0x1 0x2");
        assert_eq!(
            call_of(&c3, |a| (a == 0x7ffd1000).then_some(0x4100)),
            Call::Vfork
        );
        // pthread_create's clone3 has no CLONE_VFORK.
        assert_eq!(call_of(&c3, |_| Some(0x3d0f00)), Call::Other);
        assert_eq!(call_of(&c3, none), Call::Vfork);
        assert_eq!(call_of("270 0xfb 0x7ffc 0x0", none), Call::Other);
        assert_eq!(call_of("-1 0x7ffc 0x4000", none), Call::Other);
        assert_eq!(call_of("running", none), Call::Running);
        assert_eq!(call_of("", none), Call::Other);
    }

    #[test]
    fn this_thread_is_in_no_vfork() {
        let me = nix::unistd::gettid().as_raw();
        assert!(!still_waiting(me));
        assert!(waiting(&[me]).is_empty());
    }
}
