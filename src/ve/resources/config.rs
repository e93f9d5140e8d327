//! The resource settings of a VE in vzctl's names (`io.vzrun.ram`, `cpuunits`, …): their
//! keys, ranges and parsing, shared by the annotations and `ve set`.

use std::collections::HashMap;

use crate::units::parse_size;
use crate::ve::{bad, VeError, PREFIX};

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

pub(super) const PERIOD: u64 = 100_000;

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
}
