//! The resource settings of a VE in vzctl's names (`io.vzrun.ram`, `cpuunits`, …): their
//! keys, ranges and parsing, shared by the annotations and `ve set`.

use std::collections::HashMap;

use crate::units::parse_size;
use crate::ve::keys::{self, Concern};
use crate::ve::{bad, VeError, PREFIX};

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

/// A whole number within the range the key table gives `key` on this host.
fn number(key: &str, v: &str) -> Result<u64, String> {
    let (lo, hi) = keys::int_range(key).ok_or_else(|| format!("{key} is not a number setting"))?;
    let n: u64 = v
        .trim()
        .parse()
        .map_err(|_| format!("{v:?} is not a number ({lo}..{hi})"))?;
    if !(lo..=hi).contains(&n) {
        return Err(format!("{n} is out of range ({lo}..{hi})"));
    }
    Ok(n)
}

impl ResourceConfig {
    /// Parses one setting given under its vzctl name; `label` names it in errors.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        match name {
            "cpuunits" => self.cpuunits = Some(number(name, value)?),
            "cpulimit" => self.cpulimit = Some(number(name, value)?),
            "cpus" => self.cpus = Some(number(name, value)? as u32),
            "ram" => self.ram = Some(parse_size(value).map_err(|e| e.to_string())?),
            "swap" => self.swap = Some(parse_size(value).map_err(|e| e.to_string())?),
            "memguarantee" => self.memguarantee = Some(number(name, value)?),
            "numproc" => self.numproc = Some(parse_size(value).map_err(|e| e.to_string())?),
            "numfile" => self.numfile = Some(number(name, value)?),
            "ioprio" => self.ioprio = Some(number(name, value)? as u8),
            "iolimit" => self.iolimit = Some(parse_size(value).map_err(|e| e.to_string())?),
            "iopslimit" => {
                self.iopslimit = Some(if value.trim() == "unlimited" {
                    None
                } else {
                    Some(number(name, value)?)
                })
            }
            other => return Err(format!("unknown resource {other:?}")),
        }
        Ok(())
    }

    pub fn parse(a: &HashMap<String, String>) -> Result<Option<ResourceConfig>, VeError> {
        let mut c = ResourceConfig::default();
        let mut any = false;
        for key in keys::of(Concern::Resources) {
            if let Some(v) = a.get(&format!("{PREFIX}{}", key.name)) {
                c.set(key.name, v).map_err(|e| bad(key.name, e))?;
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
