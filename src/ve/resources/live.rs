//! Changes to a running VE's processes that no cgroup file carries: the I/O priority
//! and the open-file limit.

/// Gives a process the best-effort I/O priority matching vzctl's ioprio (higher ioprio,
/// more I/O: Linux levels run the other way). Children inherit it.
pub fn set_process_ioprio(pid: i32, ioprio: u8) -> std::io::Result<()> {
    const IOPRIO_WHO_PROCESS: libc::c_long = 1;
    const IOPRIO_CLASS_BE: libc::c_long = 2;
    let value = (IOPRIO_CLASS_BE << 13) | (7 - ioprio.min(7)) as libc::c_long;
    // SAFETY: plain syscall with integer arguments.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            pid as libc::c_long,
            value,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Sets RLIMIT_NOFILE of a running process, soft and hard.
pub fn set_process_numfile(pid: i32, n: u64) -> std::io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: n,
        rlim_max: n,
    };
    // SAFETY: lim is a valid rlimit; the old value is not asked for.
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &lim, std::ptr::null_mut()) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A running process's hard RLIMIT_NOFILE.
pub fn process_numfile_hard(pid: i32) -> std::io::Result<u64> {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: no new limit is given; `old` is a valid rlimit for the kernel to fill.
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, std::ptr::null(), &mut old) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(old.rlim_max)
}

/// Whether this process may raise hard resource limits (CAP_SYS_RESOURCE in effect).
pub fn may_raise_limits() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0)
}
