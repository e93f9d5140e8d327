//! Beancounters in OpenVZ's shape (held, maxheld, barrier, limit, failcnt), read back
//! from the kernel's own counters, with the counts carried across a restore.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// One beancounter row. A barrier or limit of `None` is unlimited: `unlimited` in tables,
/// `null` in JSON, `+Inf` in Prometheus. The kernel's own words for it (`max`, or
/// PAGE_COUNTER_MAX times the page size on v1) never leave this module: divided into
/// pages they became numbers above 2^53 that JSON readers round.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Counter {
    #[serde(skip)]
    pub resource: String,
    pub held: u64,
    pub maxheld: u64,
    pub barrier: Option<u64>,
    pub limit: Option<u64>,
    pub failcnt: u64,
}

/// A beancounter's counts that outlive its cgroup (saved in a checkpoint).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Carried {
    pub resource: String,
    pub maxheld: u64,
    pub failcnt: u64,
}

impl Counter {
    pub fn carried(&self) -> Carried {
        Carried {
            resource: self.resource.clone(),
            maxheld: self.maxheld,
            failcnt: self.failcnt,
        }
    }
}

/// Adds counts from before a restore: failures add up, the peak is the higher one.
pub(super) fn carry_over(rows: &mut [Counter], carried: &[Carried]) {
    for c in carried {
        if let Some(r) = rows.iter_mut().find(|r| r.resource == c.resource) {
            r.failcnt += c.failcnt;
            r.maxheld = r.maxheld.max(c.maxheld);
        }
    }
}

/// Limits at or above this are the kernel's "no limit": cgroup v1 shows PAGE_COUNTER_MAX
/// pages in bytes (9223372036854771712), which is below i64::MAX; no host has 4 EiB.
const NO_LIMIT: u64 = 1 << 62;

const PAGE: u64 = 4096;

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A limit file: `None` for `max`, the v1 no-limit value, or no file (nothing limits it).
fn read_limit(path: &Path) -> Option<u64> {
    read_u64(path).filter(|v| *v < NO_LIMIT)
}

fn keyed(path: &Path, key: &str) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|v| v.trim().parse().ok()))
}

fn pages(bytes: Option<u64>) -> Option<u64> {
    bytes.map(|b| b / PAGE)
}

/// The processes of the cgroup `pid` is in (its pids cgroup, else its memory cgroup).
fn cgroup_pids(pid: i32) -> Vec<i32> {
    let dir = crate::sys::cgroups::dir_of(pid, "pids")
        .or_else(|| crate::sys::cgroups::dir_of(pid, "memory"));
    let listed: Vec<i32> = dir
        .and_then(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
        .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default();
    if listed.is_empty() {
        vec![pid]
    } else {
        listed
    }
}

/// Open files of the VE's processes: the entries of each one's /proc/PID/fd. A process
/// that exits while being counted counts nothing.
fn open_files(pid: i32) -> u64 {
    cgroup_pids(pid)
        .iter()
        .filter_map(|p| std::fs::read_dir(format!("/proc/{p}/fd")).ok())
        .map(|d| d.count() as u64)
        .sum()
}

/// RLIMIT_NOFILE of `pid` (soft, hard) from /proc/PID/limits; `None` is unlimited.
fn nofile_limits(pid: i32) -> Option<(Option<u64>, Option<u64>)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let mut words = line["Max open files".len()..].split_whitespace();
    let mut next = || match words.next()? {
        "unlimited" => Some(None),
        n => n.parse().ok().map(Some),
    };
    Some((next()?, next()?))
}

/// Beancounters from the kernel's own counters; what the kernel does not count is 0.
/// Which beancounters to read: each group costs its own reads (the open-file count
/// walks every process's fd table), so a table that shows one column reads one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Groups {
    /// physpages, swappages, kmemsize
    pub memory: bool,
    pub numproc: bool,
    pub numfile: bool,
    /// diskspace, diskinodes
    pub disk: bool,
}

impl Groups {
    pub const ALL: Groups = Groups {
        memory: true,
        numproc: true,
        numfile: true,
        disk: true,
    };
    pub const NONE: Groups = Groups {
        memory: false,
        numproc: false,
        numfile: false,
        disk: false,
    };

    /// Adds the group that holds the beancounter `resource` (a canonical name).
    pub fn with(mut self, resource: &str) -> Groups {
        match resource {
            "physpages" | "swappages" | "kmemsize" => self.memory = true,
            "numproc" => self.numproc = true,
            "numfile" => self.numfile = true,
            "diskspace" | "diskinodes" => self.disk = true,
            _ => {}
        }
        self
    }
}

pub fn beancounters(pid: i32, ve: &crate::ve::VeRecord) -> Vec<Counter> {
    beancounters_of(pid, ve, Groups::ALL)
}

/// The beancounters of `groups` only.
pub fn beancounters_of(pid: i32, ve: &crate::ve::VeRecord, groups: Groups) -> Vec<Counter> {
    let row = |name: &str, held, maxheld, barrier, limit, failcnt| Counter {
        resource: name.to_string(),
        held,
        maxheld,
        barrier,
        limit,
        failcnt,
    };
    let mut rows = Vec::new();
    let v2 = crate::sys::cgroups::unified();
    if let Some(m) = crate::sys::cgroups::dir_of(pid, "memory").filter(|_| groups.memory) {
        let n = |f: &str| read_u64(&m.join(f)).unwrap_or(0);
        if v2 {
            let lim = read_limit(&m.join("memory.max"));
            let low = read_limit(&m.join("memory.low")).filter(|l| *l > 0);
            rows.push(row(
                "physpages",
                n("memory.current") / PAGE,
                n("memory.peak") / PAGE,
                pages(low.or(lim)),
                pages(lim),
                keyed(&m.join("memory.events"), "max ").unwrap_or(0),
            ));
            let sl = pages(read_limit(&m.join("memory.swap.max")));
            rows.push(row(
                "swappages",
                n("memory.swap.current") / PAGE,
                n("memory.swap.peak") / PAGE,
                sl,
                sl,
                keyed(&m.join("memory.swap.events"), "fail ").unwrap_or(0),
            ));
            rows.push(row(
                "kmemsize",
                keyed(&m.join("memory.stat"), "kernel ").unwrap_or(0),
                0,
                None,
                None,
                0,
            ));
        } else {
            let lim = read_limit(&m.join("memory.limit_in_bytes"));
            let soft = read_limit(&m.join("memory.soft_limit_in_bytes"));
            let barrier = match (soft, lim) {
                (Some(s), Some(l)) => Some(s.min(l)),
                (s, l) => s.or(l),
            };
            rows.push(row(
                "physpages",
                n("memory.usage_in_bytes") / PAGE,
                n("memory.max_usage_in_bytes") / PAGE,
                pages(barrier),
                pages(lim),
                // With swap limited too, the kernel charges memory+swap first and a refusal
                // lands in memsw.failcnt; either way an allocation failed at ram.
                // An OOM kill is a refused allocation too, even when the page counters
                // reclaimed their way out of counting one.
                n("memory.failcnt")
                    .max(n("memory.memsw.failcnt"))
                    .max(keyed(&m.join("memory.oom_control"), "oom_kill ").unwrap_or(0)),
            ));
            // memsw limits memory+swap: swap may use what ram does not.
            let swap_lim = read_limit(&m.join("memory.memsw.limit_in_bytes"))
                .map(|msw| msw.saturating_sub(lim.unwrap_or(0).min(msw)));
            let used = n("memory.memsw.usage_in_bytes").saturating_sub(n("memory.usage_in_bytes"));
            rows.push(row(
                "swappages",
                used / PAGE,
                0,
                pages(swap_lim),
                pages(swap_lim),
                n("memory.memsw.failcnt"),
            ));
            let kmem = read_limit(&m.join("memory.kmem.limit_in_bytes"));
            rows.push(row(
                "kmemsize",
                n("memory.kmem.usage_in_bytes"),
                n("memory.kmem.max_usage_in_bytes"),
                kmem,
                kmem,
                n("memory.kmem.failcnt"),
            ));
        }
    }
    if let Some(p) = crate::sys::cgroups::dir_of(pid, "pids").filter(|_| groups.numproc) {
        let lim = read_limit(&p.join("pids.max"));
        rows.push(row(
            "numproc",
            read_u64(&p.join("pids.current")).unwrap_or(0),
            read_u64(&p.join("pids.peak")).unwrap_or(0),
            lim,
            lim,
            keyed(&p.join("pids.events"), "max ").unwrap_or(0),
        ));
    }
    // RLIMIT_NOFILE is per process: the init's soft and hard limits stand for the VE's
    // (io.vzrun.numfile and `ve set --numfile` give every process the same).
    if groups.numfile {
        let (soft, hard) = match ve.numfile {
            Some(n) => (Some(n), Some(n)),
            None => nofile_limits(pid).unwrap_or((None, None)),
        };
        rows.push(row("numfile", open_files(pid), 0, soft, hard, 0));
    }
    // Disk rows in 1K blocks as vzquota shows them. The kernel keeps no count of refused
    // writes (ENOSPC) without quota support, so failcnt stays 0 rather than a guess.
    match ve
        .disk
        .as_ref()
        .filter(|_| groups.disk)
        .and_then(|d| Some((d, crate::ve::disk::usage(d)?)))
    {
        Some((d, (used, total, iused, itotal))) => {
            let soft = d.space.0.min(total);
            rows.push(row(
                "diskspace",
                used / 1024,
                0,
                Some(soft / 1024),
                Some(total / 1024),
                0,
            ));
            let isoft = d.inodes.map(|i| i.0.min(itotal)).unwrap_or(itotal);
            rows.push(row("diskinodes", iused, 0, Some(isoft), Some(itotal), 0));
        }
        None if groups.disk => {
            rows.push(row("diskspace", 0, 0, None, None, 0));
            rows.push(row("diskinodes", 0, 0, None, None, 0));
        }
        None => {}
    }
    carry_over(&mut rows, &ve.carried);
    at_least_held(&mut rows);
    rows
}

/// Where the kernel keeps no peak (disk, open files, v1 swap), the peak seen is what is
/// held now: a maxheld below held reads as a broken counter.
pub(super) fn at_least_held(rows: &mut [Counter]) {
    for r in rows {
        r.maxheld = r.maxheld.max(r.held);
    }
}

/// What a VE used that no beancounter holds: CPU time and network traffic.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Usage {
    /// CPU time of the VE's cgroup, user and system, in seconds.
    pub cpu_seconds: f64,
    /// Bytes the VE received and sent, over all its links but loopback.
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// CPU time and network bytes of the VE whose init is `pid`. Network counts are read in
/// the VE's own namespace (/proc/PID/net/dev), so venet, veth and a namespace the spec
/// named all count the same way, from the VE's side.
pub fn usage(pid: i32) -> Usage {
    let cpu_seconds = if crate::sys::cgroups::unified() {
        crate::sys::cgroups::dir_of(pid, "cpu")
            .and_then(|d| keyed(&d.join("cpu.stat"), "usage_usec "))
            .map(|us| us as f64 / 1e6)
    } else {
        crate::sys::cgroups::dir_of(pid, "cpuacct")
            .and_then(|d| read_u64(&d.join("cpuacct.usage")))
            .map(|ns| ns as f64 / 1e9)
    }
    .unwrap_or(0.0);
    let (rx_bytes, tx_bytes) = std::fs::read_to_string(format!("/proc/{pid}/net/dev"))
        .map(|t| net_dev_bytes(&t))
        .unwrap_or((0, 0));
    Usage {
        cpu_seconds,
        rx_bytes,
        tx_bytes,
    }
}

/// Received and sent bytes summed over the devices of a /proc/net/dev text, but `lo`.
fn net_dev_bytes(text: &str) -> (u64, u64) {
    let mut sum = (0, 0);
    for line in text.lines().skip(2) {
        let Some((dev, counts)) = line.split_once(':') else {
            continue;
        };
        if dev.trim() == "lo" {
            continue;
        }
        let c: Vec<u64> = counts
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        if let (Some(rx), Some(tx)) = (c.first(), c.get(8)) {
            sum.0 += rx;
            sum.1 += tx;
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_dev_sums_links_but_loopback() {
        let text = "Inter-|   Receive                                                |  Transmit\n \
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n\
    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n\
venet0:    2000      10    0    0    0     0          0         0     3000      12    0    0    0     0       0          0\n\
  eth1:      50       1    0    0    0     0          0         0        7       1    0    0    0     0       0          0\n";
        assert_eq!(net_dev_bytes(text), (2050, 3007));
    }

    #[test]
    fn v1_no_limit_is_unlimited() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("memory.limit_in_bytes");
        std::fs::write(&f, "9223372036854771712\n").unwrap();
        assert_eq!(read_limit(&f), None);
        std::fs::write(&f, "max\n").unwrap();
        assert_eq!(read_limit(&f), None);
        std::fs::write(&f, "67108864\n").unwrap();
        assert_eq!(read_limit(&f), Some(67108864));
    }

    #[test]
    fn maxheld_is_never_below_held() {
        let mut rows = vec![Counter {
            resource: "diskspace".into(),
            held: 10,
            maxheld: 0,
            barrier: None,
            limit: None,
            failcnt: 0,
        }];
        at_least_held(&mut rows);
        assert_eq!(rows[0].maxheld, 10);
    }
}
