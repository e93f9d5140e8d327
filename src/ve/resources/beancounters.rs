//! Beancounters in OpenVZ's shape (held, maxheld, barrier, limit, failcnt), read back
//! from the kernel's own counters, with the counts carried across a restore.

use serde::{Deserialize, Serialize};

/// One beancounter row.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Counter {
    pub resource: String,
    pub held: u64,
    pub maxheld: u64,
    pub barrier: u64,
    pub limit: u64,
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

const UNLIMITED: u64 = i64::MAX as u64;

fn read_u64(path: &std::path::Path) -> Option<u64> {
    let s = std::fs::read_to_string(path).ok()?;
    let s = s.trim();
    if s == "max" {
        return Some(UNLIMITED);
    }
    s.parse().ok()
}

fn keyed(path: &std::path::Path, key: &str) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|v| v.trim().parse().ok()))
}

/// Beancounters from the kernel's own counters; what the kernel does not count is 0.
pub fn beancounters(pid: i32, ve: &crate::ve::VeRecord) -> Vec<Counter> {
    let numfile = ve.numfile;
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
    let page = 4096;
    if let Some(m) = crate::sys::cgroups::dir_of(pid, "memory") {
        if v2 {
            let lim = read_u64(&m.join("memory.max")).unwrap_or(UNLIMITED);
            let low = read_u64(&m.join("memory.low")).unwrap_or(0);
            rows.push(row(
                "physpages",
                read_u64(&m.join("memory.current")).unwrap_or(0) / page,
                read_u64(&m.join("memory.peak")).unwrap_or(0) / page,
                if low == 0 { lim / page } else { low / page },
                lim / page,
                keyed(&m.join("memory.events"), "max ").unwrap_or(0),
            ));
            let sl = read_u64(&m.join("memory.swap.max")).unwrap_or(0);
            rows.push(row(
                "swappages",
                read_u64(&m.join("memory.swap.current")).unwrap_or(0) / page,
                read_u64(&m.join("memory.swap.peak")).unwrap_or(0) / page,
                sl / page,
                sl / page,
                keyed(&m.join("memory.swap.events"), "fail ").unwrap_or(0),
            ));
            rows.push(row(
                "kmemsize",
                keyed(&m.join("memory.stat"), "kernel ").unwrap_or(0),
                0,
                UNLIMITED,
                UNLIMITED,
                0,
            ));
        } else {
            let lim = read_u64(&m.join("memory.limit_in_bytes")).unwrap_or(UNLIMITED);
            let soft = read_u64(&m.join("memory.soft_limit_in_bytes")).unwrap_or(lim);
            rows.push(row(
                "physpages",
                read_u64(&m.join("memory.usage_in_bytes")).unwrap_or(0) / page,
                read_u64(&m.join("memory.max_usage_in_bytes")).unwrap_or(0) / page,
                soft.min(lim) / page,
                lim / page,
                // With swap limited too, the kernel charges memory+swap first and a refusal
                // lands in memsw.failcnt; either way an allocation failed at ram.
                // An OOM kill is a refused allocation too, even when the page counters
                // reclaimed their way out of counting one.
                read_u64(&m.join("memory.failcnt"))
                    .unwrap_or(0)
                    .max(read_u64(&m.join("memory.memsw.failcnt")).unwrap_or(0))
                    .max(keyed(&m.join("memory.oom_control"), "oom_kill ").unwrap_or(0)),
            ));
            let msw = read_u64(&m.join("memory.memsw.limit_in_bytes")).unwrap_or(UNLIMITED);
            let swap_lim = msw.saturating_sub(lim.min(msw));
            let used = read_u64(&m.join("memory.memsw.usage_in_bytes"))
                .unwrap_or(0)
                .saturating_sub(read_u64(&m.join("memory.usage_in_bytes")).unwrap_or(0));
            rows.push(row(
                "swappages",
                used / page,
                0,
                swap_lim / page,
                swap_lim / page,
                read_u64(&m.join("memory.memsw.failcnt")).unwrap_or(0),
            ));
            rows.push(row(
                "kmemsize",
                read_u64(&m.join("memory.kmem.usage_in_bytes")).unwrap_or(0),
                read_u64(&m.join("memory.kmem.max_usage_in_bytes")).unwrap_or(0),
                read_u64(&m.join("memory.kmem.limit_in_bytes")).unwrap_or(UNLIMITED),
                read_u64(&m.join("memory.kmem.limit_in_bytes")).unwrap_or(UNLIMITED),
                read_u64(&m.join("memory.kmem.failcnt")).unwrap_or(0),
            ));
        }
    }
    if let Some(p) = crate::sys::cgroups::dir_of(pid, "pids") {
        let lim = read_u64(&p.join("pids.max")).unwrap_or(UNLIMITED);
        rows.push(row(
            "numproc",
            read_u64(&p.join("pids.current")).unwrap_or(0),
            read_u64(&p.join("pids.peak")).unwrap_or(0),
            lim,
            lim,
            keyed(&p.join("pids.events"), "max ").unwrap_or(0),
        ));
    }
    let nf = numfile.unwrap_or(UNLIMITED);
    rows.push(row("numfile", 0, 0, nf, nf, 0));
    // Disk rows in 1K blocks as vzquota shows them. The kernel keeps no count of refused
    // writes (ENOSPC) without quota support, so failcnt stays 0 rather than a guess.
    match ve
        .disk
        .as_ref()
        .and_then(|d| Some((d, crate::ve::disk::usage(d)?)))
    {
        Some((d, (used, total, iused, itotal))) => {
            let soft = d.space.0.min(total);
            rows.push(row(
                "diskspace",
                used / 1024,
                0,
                soft / 1024,
                total / 1024,
                0,
            ));
            let isoft = d.inodes.map(|i| i.0.min(itotal)).unwrap_or(itotal);
            rows.push(row("diskinodes", iused, 0, isoft, itotal, 0));
        }
        None => {
            rows.push(row("diskspace", 0, 0, UNLIMITED, UNLIMITED, 0));
            rows.push(row("diskinodes", 0, 0, UNLIMITED, UNLIMITED, 0));
        }
    }
    carry_over(&mut rows, &ve.carried);
    rows
}
