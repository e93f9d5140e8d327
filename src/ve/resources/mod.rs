//! VE resource settings (OpenVZ's vzctl names) mapped onto the OCI `linux.resources`
//! that libcgroups applies on cgroup v1 and v2 alike, plus beancounter-style accounting
//! read back from the kernel's own counters.

use std::collections::HashMap;

use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxPids, LinuxResources, LinuxThrottleDevice,
    LinuxThrottleDeviceBuilder, PosixRlimit, PosixRlimitBuilder, PosixRlimitType, Process, Spec,
};
use serde::{Deserialize, Serialize};

use super::{bad, VeError, PREFIX};
use crate::units::parse_size;

/// Keys this module reads.
pub const KEYS: &[&str] = &[
    "cpuunits",
    "cpulimit",
    "cpus",
    "ram",
    "swap",
    "memguarantee",
    "numproc",
    "numfile",
    "ioprio",
    "iolimit",
    "iopslimit",
];

const PERIOD: u64 = 100_000;

/// `None` in a size field means "not given"; `Some(None)` means `unlimited`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceConfig {
    pub cpuunits: Option<u64>,
    pub cpulimit: Option<u64>,
    pub cpus: Option<u32>,
    pub ram: Option<Option<u64>>,
    pub swap: Option<Option<u64>>,
    pub memguarantee: Option<u64>,
    pub numproc: Option<Option<u64>>,
    pub numfile: Option<u64>,
    pub ioprio: Option<u8>,
    /// Bytes per second, read and write each; `Some(None)` lifts the limit.
    pub iolimit: Option<Option<u64>>,
    pub iopslimit: Option<Option<u64>>,
}

/// Refuses an annotation whose value disagrees with the same setting given in the spec's
/// `linux.resources.FIELD`; `ours` words the annotation's value for the message.
fn agree<T: PartialEq + std::fmt::Display>(
    key: &str,
    want: Option<T>,
    field: &str,
    have: Option<T>,
    ours: impl FnOnce(&T) -> String,
) -> Result<(), VeError> {
    match (want, have) {
        (Some(a), Some(b)) if a != b => Err(bad(
            key,
            format!("{} disagrees with linux.resources.{field} ({b})", ours(&a)),
        )),
        _ => Ok(()),
    }
}

pub fn host_cpus() -> u64 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u64)
        .unwrap_or(1)
}

fn number(key: &str, v: &str, lo: u64, hi: u64) -> Result<u64, String> {
    let n: u64 = v
        .trim()
        .parse()
        .map_err(|_| format!("{v:?} is not a number ({lo}..{hi})"))?;
    if !(lo..=hi).contains(&n) {
        return Err(format!("{n} is out of range ({lo}..{hi})"));
    }
    let _ = key;
    Ok(n)
}

impl ResourceConfig {
    /// Parses one setting given under its vzctl name; `label` names it in errors.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        let ncpu = host_cpus();
        match name {
            "cpuunits" => self.cpuunits = Some(number(name, value, 8, 500_000)?),
            "cpulimit" => self.cpulimit = Some(number(name, value, 1, 100 * ncpu)?),
            "cpus" => self.cpus = Some(number(name, value, 1, ncpu)? as u32),
            "ram" => self.ram = Some(parse_size(value).map_err(|e| e.to_string())?),
            "swap" => self.swap = Some(parse_size(value).map_err(|e| e.to_string())?),
            "memguarantee" => self.memguarantee = Some(number(name, value, 0, 100)?),
            "numproc" => self.numproc = Some(parse_size(value).map_err(|e| e.to_string())?),
            "numfile" => self.numfile = Some(number(name, value, 16, 1 << 20)?),
            "ioprio" => self.ioprio = Some(number(name, value, 0, 7)? as u8),
            "iolimit" => self.iolimit = Some(parse_size(value).map_err(|e| e.to_string())?),
            "iopslimit" => {
                self.iopslimit = Some(if value.trim() == "unlimited" {
                    None
                } else {
                    Some(number(name, value, 1, u32::MAX as u64)?)
                })
            }
            other => return Err(format!("unknown resource {other:?}")),
        }
        Ok(())
    }

    pub fn parse(a: &HashMap<String, String>) -> Result<Option<ResourceConfig>, VeError> {
        let mut c = ResourceConfig::default();
        let mut any = false;
        for key in KEYS {
            if let Some(v) = a.get(&format!("{PREFIX}{key}")) {
                c.set(key, v).map_err(|e| bad(key, e))?;
                any = true;
            }
        }
        if c.swap.is_some() && c.ram.is_none() {
            return Err(bad("swap", "needs io.vzrun.ram"));
        }
        if c.memguarantee.is_some() && !matches!(c.ram, Some(Some(_))) {
            return Err(bad("memguarantee", "needs a limited io.vzrun.ram"));
        }
        Ok(any.then_some(c))
    }

    /// The OCI resources these settings mean. cpuunits scale like vzctl's (1000 units =
    /// the default weight, 1024 shares); libcgroups turns shares into cpu.weight on v2.
    /// Whether these settings need the VE's block device to be found first.
    pub fn needs_io_device(&self) -> bool {
        self.iolimit.is_some() || self.iopslimit.is_some()
    }

    /// The OCI resources these settings mean; `dev` is the block device I/O limits apply
    /// to (see `needs_io_device`).
    pub fn to_oci(&self, dev: Option<(u64, u64)>) -> LinuxResources {
        let mut r = LinuxResources::default();
        if self.cpuunits.is_some() || self.cpulimit.is_some() || self.cpus.is_some() {
            let mut cpu = LinuxCpu::default();
            if let Some(u) = self.cpuunits {
                cpu.set_shares(Some((u * 1024 / 1000).clamp(2, 262_144)));
            }
            let limit = self.cpulimit.or(self.cpus.map(|n| n as u64 * 100));
            if let Some(pct) = limit {
                cpu.set_quota(Some((pct * PERIOD / 100) as i64));
                cpu.set_period(Some(PERIOD));
            }
            if let Some(n) = self.cpus {
                cpu.set_cpus(Some(if n == 1 {
                    "0".to_string()
                } else {
                    format!("0-{}", n - 1)
                }));
            }
            r.set_cpu(Some(cpu));
        }
        if self.ram.is_some() || self.swap.is_some() {
            let mut m = LinuxMemory::default();
            let ram = self.ram.map(|v| v.map(|b| b as i64).unwrap_or(-1));
            m.set_limit(ram);
            // OCI's swap is memory plus swap.
            match (ram, self.swap) {
                (Some(r), Some(Some(s))) if r >= 0 => {
                    m.set_swap(Some(r + s as i64));
                }
                (_, Some(None)) => {
                    m.set_swap(Some(-1));
                }
                _ => {}
            }
            if let (Some(Some(ram)), Some(pct)) = (self.ram, self.memguarantee) {
                m.set_reservation(Some((ram * pct / 100) as i64));
            }
            r.set_memory(Some(m));
        }
        if let Some(n) = self.numproc {
            let mut p = LinuxPids::default();
            p.set_limit(n.map(|v| v as i64).unwrap_or(-1));
            r.set_pids(Some(p));
        }
        if self.ioprio.is_some() || self.needs_io_device() {
            r.set_block_io(Some(self.block_io(dev)));
        }
        r
    }

    fn block_io(&self, dev: Option<(u64, u64)>) -> LinuxBlockIo {
        let mut b = LinuxBlockIo::default();
        if let Some(p) = self.ioprio {
            if weight_supported() {
                b.set_weight(Some(ioprio_weight(p)));
            }
        }
        let throttle = |rate: Option<u64>| -> Option<Vec<LinuxThrottleDevice>> {
            let (major, minor) = dev?;
            // The kernel's own "no limit" in both versions; 0 would mean something else in v2.
            LinuxThrottleDeviceBuilder::default()
                .major(major as i64)
                .minor(minor as i64)
                .rate(rate.unwrap_or(u64::MAX))
                .build()
                .ok()
                .map(|t| vec![t])
        };
        if let Some(l) = self.iolimit {
            b.set_throttle_read_bps_device(throttle(l));
            b.set_throttle_write_bps_device(throttle(l));
        }
        if let Some(l) = self.iopslimit {
            b.set_throttle_read_iops_device(throttle(l));
            b.set_throttle_write_iops_device(throttle(l));
        }
        b
    }

    /// Folds the settings into the spec, failing when `linux.resources` already says
    /// something else for the same thing.
    pub fn apply_to_spec(&self, spec: &mut Spec, dev: Option<(u64, u64)>) -> Result<(), VeError> {
        let want = self.to_oci(dev);
        let mut linux = spec.linux().clone().unwrap_or_default();
        let mut have = linux.resources().clone().unwrap_or_default();
        if let Some(w) = want.cpu() {
            let mut cpu = have.cpu().clone().unwrap_or_default();
            agree("cpuunits", w.shares(), "cpu.shares", cpu.shares(), |a| {
                format!("{a} shares")
            })?;
            agree("cpulimit", w.quota(), "cpu.quota", cpu.quota(), |a| {
                format!("quota {a}")
            })?;
            agree(
                "cpus",
                w.cpus().as_ref(),
                "cpu.cpus",
                cpu.cpus().as_ref(),
                |a| format!("cpuset {a}"),
            )?;
            if w.shares().is_some() {
                cpu.set_shares(w.shares());
            }
            if w.quota().is_some() {
                cpu.set_quota(w.quota());
                cpu.set_period(w.period());
            }
            if w.cpus().is_some() {
                cpu.set_cpus(w.cpus().clone());
            }
            have.set_cpu(Some(cpu));
        }
        if let Some(w) = want.memory() {
            let mut m = (*have.memory()).unwrap_or_default();
            agree("ram", w.limit(), "memory.limit", m.limit(), |a| {
                a.to_string()
            })?;
            agree("swap", w.swap(), "memory.swap", m.swap(), |a| {
                format!("memory+swap {a}")
            })?;
            if w.limit().is_some() {
                m.set_limit(w.limit());
            }
            if w.swap().is_some() {
                m.set_swap(w.swap());
            }
            if w.reservation().is_some() {
                m.set_reservation(w.reservation());
            }
            have.set_memory(Some(m));
        }
        if let Some(w) = want.pids() {
            let theirs = have.pids().as_ref().map(|p| p.limit());
            agree("numproc", Some(w.limit()), "pids.limit", theirs, |a| {
                a.to_string()
            })?;
            have.set_pids(Some(*w));
        }
        if let Some(w) = want.block_io() {
            let mut b = have.block_io().clone().unwrap_or_default();
            agree("ioprio", w.weight(), "blockIO.weight", b.weight(), |a| {
                format!("weight {a}")
            })?;
            if w.weight().is_some() {
                b.set_weight(w.weight());
            }
            let lists = [
                (
                    w.throttle_read_bps_device(),
                    b.throttle_read_bps_device().is_some(),
                    "iolimit",
                    "throttleReadBpsDevice",
                ),
                (
                    w.throttle_write_bps_device(),
                    b.throttle_write_bps_device().is_some(),
                    "iolimit",
                    "throttleWriteBpsDevice",
                ),
                (
                    w.throttle_read_iops_device(),
                    b.throttle_read_iops_device().is_some(),
                    "iopslimit",
                    "throttleReadIOPSDevice",
                ),
                (
                    w.throttle_write_iops_device(),
                    b.throttle_write_iops_device().is_some(),
                    "iopslimit",
                    "throttleWriteIOPSDevice",
                ),
            ];
            for (ours, theirs, key, field) in lists {
                if ours.is_some() && theirs {
                    return Err(bad(
                        key,
                        format!("linux.resources.blockIO.{field} is set too; give one of them"),
                    ));
                }
            }
            if w.throttle_read_bps_device().is_some() {
                b.set_throttle_read_bps_device(w.throttle_read_bps_device().clone());
                b.set_throttle_write_bps_device(w.throttle_write_bps_device().clone());
            }
            if w.throttle_read_iops_device().is_some() {
                b.set_throttle_read_iops_device(w.throttle_read_iops_device().clone());
                b.set_throttle_write_iops_device(w.throttle_write_iops_device().clone());
            }
            have.set_block_io(Some(b));
        }
        linux.set_resources(Some(have));
        spec.set_linux(Some(linux));
        if let Some(n) = self.numfile {
            if let Some(mut p) = spec.process().clone() {
                set_numfile(&mut p, n);
                spec.set_process(Some(p));
            }
        }
        Ok(())
    }
}

/// numfile is the open-file limit (RLIMIT_NOFILE, soft and hard) of a VE's process.
pub fn set_numfile(p: &mut Process, n: u64) {
    let mut rl: Vec<PosixRlimit> = p.rlimits().clone().unwrap_or_default();
    rl.retain(|r| r.typ() != PosixRlimitType::RlimitNofile);
    if let Ok(l) = PosixRlimitBuilder::default()
        .typ(PosixRlimitType::RlimitNofile)
        .soft(n)
        .hard(n)
        .build()
    {
        rl.push(l);
    }
    p.set_rlimits(Some(rl));
}

/// vzctl's I/O priority 0..7 (4 is the default) as a cgroup weight in OCI's 10..1000
/// range: 0 gets 100 and 7 gets 1000, 4 lands near the default 500.
pub fn ioprio_weight(p: u8) -> u16 {
    100 + (p as u16) * 900 / 7
}

/// Whether this host's block I/O controller has a proportional weight file. It has one
/// only with a scheduler that does weights (bfq); mq-deadline disks have none, and then
/// ioprio acts through the processes' I/O priority alone.
pub fn weight_supported() -> bool {
    let root = std::path::Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        // v2 shows io.weight / io.bfq.weight only below the root.
        return std::fs::read_dir(root)
            .map(|d| {
                d.flatten().any(|e| {
                    e.path().join("io.weight").exists() || e.path().join("io.bfq.weight").exists()
                })
            })
            .unwrap_or(false);
    }
    let b = root.join("blkio");
    b.join("blkio.weight").exists() || b.join("blkio.bfq.weight").exists()
}

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
fn carry_over(rows: &mut [Counter], carried: &[Carried]) {
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
pub fn beancounters(pid: i32, ve: &super::VeRecord) -> Vec<Counter> {
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
        .and_then(|d| Some((d, super::disk::usage(d)?)))
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

/// Folds the applied values into the derived config, so that later reads (and a restore)
/// see the container's limits as they are now.
pub fn merge(into: &mut LinuxResources, new: &LinuxResources) {
    if let Some(n) = new.memory() {
        let mut m: LinuxMemory = (*into.memory()).unwrap_or_default();
        if n.limit().is_some() {
            m.set_limit(n.limit());
        }
        if n.reservation().is_some() {
            m.set_reservation(n.reservation());
        }
        if n.swap().is_some() {
            m.set_swap(n.swap());
        }
        into.set_memory(Some(m));
    }
    if let Some(n) = new.cpu() {
        let mut c = into.cpu().clone().unwrap_or_default();
        if n.shares().is_some() {
            c.set_shares(n.shares());
        }
        if n.quota().is_some() {
            c.set_quota(n.quota());
        }
        if n.period().is_some() {
            c.set_period(n.period());
        }
        if n.cpus().is_some() {
            c.set_cpus(n.cpus().clone());
        }
        if n.mems().is_some() {
            c.set_mems(n.mems().clone());
        }
        into.set_cpu(Some(c));
    }
    if new.pids().is_some() {
        into.set_pids(*new.pids());
    }
    if new.block_io().is_some() {
        into.set_block_io(new.block_io().clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::ve::test_annotations as ann;

    #[test]
    fn vzctl_names_map_to_oci_resources() {
        let c = ResourceConfig::parse(&ann(&[
            ("cpuunits", "2000"),
            ("cpulimit", "50"),
            ("ram", "256M"),
            ("swap", "128M"),
            ("memguarantee", "50"),
            ("numproc", "100"),
        ]))
        .unwrap()
        .unwrap();
        let r = c.to_oci(None);
        let cpu = r.cpu().as_ref().unwrap();
        assert_eq!(cpu.shares(), Some(2048));
        assert_eq!((cpu.quota(), cpu.period()), (Some(50_000), Some(100_000)));
        let m = r.memory().unwrap();
        assert_eq!(m.limit(), Some(256 << 20));
        assert_eq!(m.swap(), Some(384 << 20), "OCI swap is memory+swap");
        assert_eq!(m.reservation(), Some(128 << 20));
        assert_eq!(r.pids().unwrap().limit(), 100);
    }

    #[test]
    fn counts_from_before_a_restore_carry_on() {
        let row = |resource: &str, maxheld, failcnt| Counter {
            resource: resource.into(),
            held: 1,
            maxheld,
            barrier: 10,
            limit: 10,
            failcnt,
        };
        let mut rows = vec![row("numproc", 3, 0), row("physpages", 50, 2)];
        carry_over(
            &mut rows,
            &[
                row("numproc", 10, 4).carried(),
                row("physpages", 20, 1).carried(),
                row("gone", 1, 1).carried(),
            ],
        );
        assert_eq!((rows[0].maxheld, rows[0].failcnt), (10, 4));
        assert_eq!((rows[1].maxheld, rows[1].failcnt), (50, 3));
        assert_eq!(rows[0].held, 1);
    }

    #[test]
    fn cpus_set_a_cpuset_and_a_quota() {
        let c = ResourceConfig::parse(&ann(&[("cpus", "1")]))
            .unwrap()
            .unwrap();
        let r = c.to_oci(None);
        assert_eq!(r.cpu().as_ref().unwrap().cpus().as_deref(), Some("0"));
        assert_eq!(r.cpu().as_ref().unwrap().quota(), Some(100_000));
    }

    #[test]
    fn unlimited_values() {
        let c = ResourceConfig::parse(&ann(&[("ram", "unlimited"), ("numproc", "unlimited")]))
            .unwrap()
            .unwrap();
        let r = c.to_oci(None);
        assert_eq!(r.memory().unwrap().limit(), Some(-1));
        assert_eq!(r.pids().unwrap().limit(), -1);
    }

    #[test]
    fn bad_values_name_field_and_range() {
        for (k, v, words) in [
            (
                "cpuunits",
                "5",
                "io.vzrun.cpuunits: 5 is out of range (8..500000)",
            ),
            ("ram", "banana", "io.vzrun.ram: \"banana\" is not a size"),
            (
                "cpulimit",
                "100000",
                "io.vzrun.cpulimit: 100000 is out of range",
            ),
            ("memguarantee", "150", "io.vzrun.memguarantee"),
            ("ioprio", "9", "io.vzrun.ioprio: 9 is out of range (0..7)"),
            ("iopslimit", "0", "io.vzrun.iopslimit: 0 is out of range"),
        ] {
            let err =
                ResourceConfig::parse(&ann(&[(k, v), ("ram", if k == "ram" { v } else { "64M" })]))
                    .unwrap_err()
                    .to_string();
            assert!(err.contains(words), "{k}={v}: {err}");
        }
        let err = ResourceConfig::parse(&ann(&[("swap", "1G")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs io.vzrun.ram"), "{err}");
    }

    #[test]
    fn disagreement_with_linux_resources_names_both() {
        let mut spec = Spec::default();
        let mut linux = spec.linux().clone().unwrap();
        let mut res = LinuxResources::default();
        let mut m = LinuxMemory::default();
        m.set_limit(Some(128 << 20));
        res.set_memory(Some(m));
        linux.set_resources(Some(res));
        spec.set_linux(Some(linux));
        let c = ResourceConfig::parse(&ann(&[("ram", "64M")]))
            .unwrap()
            .unwrap();
        let err = c.apply_to_spec(&mut spec, None).unwrap_err().to_string();
        assert!(
            err.contains("io.vzrun.ram") && err.contains("linux.resources.memory.limit"),
            "{err}"
        );
        let same = ResourceConfig::parse(&ann(&[("ram", "128M")]))
            .unwrap()
            .unwrap();
        assert!(same.apply_to_spec(&mut spec, None).is_ok());
    }

    #[test]
    fn numfile_sets_the_rlimit() {
        let mut spec = Spec::default();
        let c = ResourceConfig::parse(&ann(&[("numfile", "512")]))
            .unwrap()
            .unwrap();
        c.apply_to_spec(&mut spec, None).unwrap();
        let rl = spec.process().as_ref().unwrap().rlimits().clone().unwrap();
        assert!(rl
            .iter()
            .any(|r| r.typ() == PosixRlimitType::RlimitNofile && r.hard() == 512));
    }
}
