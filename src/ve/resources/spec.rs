//! The one place resource settings are mapped onto the OCI spec: `linux.resources` for
//! libcgroups (cgroup v1 and v2 alike), the numfile rlimit, the I/O weight, and the merge
//! of changed values into a derived config (`update` and `ve set` use it too).

use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxPids, LinuxResources, LinuxThrottleDevice,
    LinuxThrottleDeviceBuilder, PosixRlimit, PosixRlimitBuilder, PosixRlimitType, Process, Spec,
};

use crate::ve::{bad, VeError};

use super::config::{ResourceConfig, PERIOD};

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

impl ResourceConfig {
    /// Whether these settings need the VE's block device to be found first.
    pub fn needs_io_device(&self) -> bool {
        self.iolimit.is_some() || self.iopslimit.is_some()
    }

    /// The OCI resources these settings mean; `dev` is the block device I/O limits apply
    /// to (see `needs_io_device`).
    /// The OCI resources these settings mean. cpuunits scale like vzctl's (1000 units =
    /// the default weight, 1024 shares); libcgroups turns shares into cpu.weight on v2.
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
/// The part of a VE's resources one cgroup controller applies, with the cgroup files
/// (v1 and v2 names) it writes: `ve set` applies the parts one at a time, in an order the
/// kernel accepts, and writes the files back if a later step fails.
#[derive(Debug, Clone)]
pub struct Part {
    /// The setting the part is named by in errors: the first one given.
    pub name: &'static str,
    pub config: ResourceConfig,
    pub files: &'static [&'static str],
}

impl ResourceConfig {
    /// The parts these settings touch: processes, CPU, memory, I/O. `given` lists the
    /// settings the user gave, to name each part by one of them.
    pub fn parts(&self, given: &[&'static str]) -> Vec<Part> {
        let mut out = Vec::new();
        let mut part = |members: &[&'static str], config: ResourceConfig, files| {
            if config == ResourceConfig::default() {
                return;
            }
            let name = given
                .iter()
                .find(|g| members.contains(g))
                .copied()
                .unwrap_or(members[0]);
            out.push(Part {
                name,
                config,
                files,
            });
        };
        part(
            &["numproc"],
            ResourceConfig {
                numproc: self.numproc,
                ..Default::default()
            },
            &["pids.max"],
        );
        part(
            &["cpuunits", "cpulimit", "cpus"],
            ResourceConfig {
                cpuunits: self.cpuunits,
                cpulimit: self.cpulimit,
                cpus: self.cpus,
                ..Default::default()
            },
            &[
                "cpuset.cpus",
                "cpu.shares",
                "cpu.cfs_period_us",
                "cpu.cfs_quota_us",
                "cpu.weight",
                "cpu.max",
            ],
        );
        part(
            &["ram", "swap", "memguarantee"],
            ResourceConfig {
                ram: self.ram,
                swap: self.swap,
                memguarantee: self.memguarantee,
                ..Default::default()
            },
            &[
                "memory.memsw.limit_in_bytes",
                "memory.limit_in_bytes",
                "memory.soft_limit_in_bytes",
                "memory.max",
                "memory.swap.max",
                "memory.low",
            ],
        );
        part(
            &["iolimit", "iopslimit", "ioprio"],
            ResourceConfig {
                iolimit: self.iolimit,
                iopslimit: self.iopslimit,
                ioprio: self.ioprio,
                ..Default::default()
            },
            &[
                "blkio.weight",
                "blkio.bfq.weight",
                "blkio.throttle.read_bps_device",
                "blkio.throttle.write_bps_device",
                "blkio.throttle.read_iops_device",
                "blkio.throttle.write_iops_device",
                "io.weight",
                "io.bfq.weight",
                "io.max",
            ],
        );
        out
    }
}
