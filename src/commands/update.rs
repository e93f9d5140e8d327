//! `vzrun update`: change the cgroup limits of a running container, from flags or from a
//! LinuxResources document (`--resources FILE`, `-` for stdin).

use std::io::Read;
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxPids, LinuxResources};

use crate::cli::GlobalOpts;
use crate::units::parse_size;

#[derive(clap::Args, Debug)]
#[command(about = "Update container resource constraints")]
#[command(
    after_help = "Examples:\n  vzrun update --memory 536870912 --pids-limit 200 web\n  vzrun update --resources limits.json web"
)]
// -1 means unlimited and runc takes it as a separate argument (`--memory-swap -1`): the
// limits that take it accept negative numbers.
pub struct Args {
    /// Path to a file with the resources to update, or - for stdin
    #[arg(short = 'r', long)]
    pub resources: Option<String>,
    /// Specifies per cgroup weight, range is from 10 to 1000
    #[arg(long = "blkio-weight")]
    pub blkio_weight: Option<u16>,
    /// CPU CFS period to be used for hardcapping (in usecs)
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<u64>,
    /// CPU CFS hardcap limit (in usecs). Allowed cpu time in a given period
    #[arg(long = "cpu-quota", allow_negative_numbers = true)]
    pub cpu_quota: Option<i64>,
    /// CPU shares (relative weight vs. other containers)
    #[arg(long = "cpu-share")]
    pub cpu_share: Option<u64>,
    /// CPU realtime period to be used for hardcapping (in usecs)
    #[arg(long = "cpu-rt-period")]
    pub cpu_rt_period: Option<u64>,
    /// CPU realtime hardcap limit (in usecs)
    #[arg(long = "cpu-rt-runtime", allow_negative_numbers = true)]
    pub cpu_rt_runtime: Option<i64>,
    /// CPU(s) to use
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// Memory node(s) to use
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    /// Memory limit (in bytes, or with a K/M/G suffix)
    #[arg(short = 'm', long, allow_negative_numbers = true)]
    pub memory: Option<String>,
    /// Memory reservation or soft_limit
    #[arg(long = "memory-reservation", allow_negative_numbers = true)]
    pub memory_reservation: Option<String>,
    /// Total memory usage (memory + swap); -1 for unlimited
    #[arg(long = "memory-swap", allow_negative_numbers = true)]
    pub memory_swap: Option<String>,
    /// Maximum number of pids allowed in the container
    #[arg(long = "pids-limit", allow_negative_numbers = true)]
    pub pids_limit: Option<i64>,
    /// Kernel memory limit (accepted, ignored like runc 1.1)
    #[arg(long = "kernel-memory")]
    pub kernel_memory: Option<String>,
    /// Kernel TCP memory limit (accepted, ignored)
    #[arg(long = "kernel-memory-tcp")]
    pub kernel_memory_tcp: Option<String>,
    /// The string of Intel RDT/CAT L3 cache schema
    #[arg(long = "l3-cache-schema")]
    pub l3_cache_schema: Option<String>,
    /// The string of Intel RDT/MBA memory bandwidth schema
    #[arg(long = "mem-bw-schema")]
    pub mem_bw_schema: Option<String>,
    pub id: String,
}

fn size_flag(name: &str, v: &Option<String>) -> Result<Option<i64>> {
    match v {
        None => Ok(None),
        Some(s) => match parse_size(s).map_err(|e| anyhow!("--{name}: {e}"))? {
            None => Ok(Some(-1)),
            Some(n) => Ok(Some(
                i64::try_from(n).map_err(|_| anyhow!("--{name}: {s:?} is too large"))?,
            )),
        },
    }
}

/// The resources to apply: the document, then flags on top.
pub fn resources_from(args: &Args) -> Result<LinuxResources> {
    let mut res = match args.resources.as_deref() {
        Some("-") => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("read resources from stdin")?;
            parse_resources(&buf)?
        }
        Some(path) => parse_resources(
            &std::fs::read(Path::new(path)).with_context(|| format!("read {path}"))?,
        )?,
        None => LinuxResources::default(),
    };
    let memory = size_flag("memory", &args.memory)?;
    let reservation = size_flag("memory-reservation", &args.memory_reservation)?;
    let swap = size_flag("memory-swap", &args.memory_swap)?;
    if memory.is_some() || reservation.is_some() || swap.is_some() {
        let mut m = (*res.memory()).unwrap_or_default();
        if memory.is_some() {
            m.set_limit(memory);
        }
        if reservation.is_some() {
            m.set_reservation(reservation);
        }
        if swap.is_some() {
            m.set_swap(swap);
        }
        res.set_memory(Some(m));
    }
    if args.cpu_period.is_some()
        || args.cpu_quota.is_some()
        || args.cpu_share.is_some()
        || args.cpu_rt_period.is_some()
        || args.cpu_rt_runtime.is_some()
        || args.cpuset_cpus.is_some()
        || args.cpuset_mems.is_some()
    {
        let mut c: LinuxCpu = res.cpu().clone().unwrap_or_default();
        if args.cpu_period.is_some() {
            c.set_period(args.cpu_period);
        }
        if args.cpu_quota.is_some() {
            c.set_quota(args.cpu_quota);
        }
        if args.cpu_share.is_some() {
            c.set_shares(args.cpu_share);
        }
        if args.cpu_rt_period.is_some() {
            c.set_realtime_period(args.cpu_rt_period);
        }
        if args.cpu_rt_runtime.is_some() {
            c.set_realtime_runtime(args.cpu_rt_runtime);
        }
        if args.cpuset_cpus.is_some() {
            c.set_cpus(args.cpuset_cpus.clone());
        }
        if args.cpuset_mems.is_some() {
            c.set_mems(args.cpuset_mems.clone());
        }
        res.set_cpu(Some(c));
    }
    if let Some(limit) = args.pids_limit {
        let mut p = LinuxPids::default();
        p.set_limit(limit);
        res.set_pids(Some(p));
    }
    if let Some(w) = args.blkio_weight {
        let mut b: LinuxBlockIo = res.block_io().clone().unwrap_or_default();
        b.set_weight(Some(w));
        res.set_block_io(Some(b));
    }
    Ok(res)
}

fn parse_resources(data: &[u8]) -> Result<LinuxResources> {
    let de = &mut serde_json::Deserializer::from_slice(data);
    serde_path_to_error::deserialize(de)
        .map_err(|e| anyhow!("resources: {}: {}", e.path(), e.inner()))
}

pub fn run(args: Args, global: &GlobalOpts) -> Result<i32> {
    let rt = super::runtime(global);
    // runc looks the container up before it reads the flags' values.
    drop(rt.root.load(&args.id)?);
    let resources = resources_from(&args)?;
    rt.update(&args.id, &resources)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: Args,
    }

    #[test]
    fn flags_become_resources() {
        let t = T::parse_from([
            "x",
            "--memory",
            "64M",
            "--memory-swap=-1",
            "--cpu-quota",
            "50000",
            "--pids-limit",
            "10",
            "id",
        ]);
        let r = resources_from(&t.a).unwrap();
        assert_eq!(r.memory().as_ref().unwrap().limit(), Some(64 << 20));
        assert_eq!(r.memory().as_ref().unwrap().swap(), Some(-1));
        assert_eq!(r.cpu().as_ref().unwrap().quota(), Some(50000));
        assert_eq!(r.pids().as_ref().unwrap().limit(), 10);
    }

    #[test]
    fn bad_sizes_name_the_flag() {
        let t = T::parse_from(["x", "--memory", "banana", "id"]);
        assert!(resources_from(&t.a)
            .unwrap_err()
            .to_string()
            .starts_with("--memory: "));
    }

    #[test]
    fn resource_documents_name_bad_fields() {
        let err = parse_resources(br#"{"memory":{"limit":"lots"}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("memory.limit"), "{err}");
    }
}
