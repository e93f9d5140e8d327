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
