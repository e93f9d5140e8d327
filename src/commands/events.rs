//! `vzrun events`: container statistics in runc's event envelope, once (`--stats`) or
//! every interval.

use std::time::{Duration, Instant};

use anyhow::Result;
use libcgroups::stats::{BlkioDeviceStat, MemoryData, Stats};
use serde_json::{json, Value};

use crate::cli::GlobalOpts;
use crate::commands::out::outln;

#[derive(clap::Args, Debug)]
#[command(
    about = "Display container events such as OOM notifications, cpu, memory, and IO usage statistics"
)]
#[command(after_help = "Examples:\n  vzrun events --stats web\n  vzrun events --interval 10s web")]
pub struct Args {
    /// Set the stats collection interval
    #[arg(long, default_value = "5s", value_parser = parse_interval)]
    pub interval: Duration,
    /// Display the container's stats then exit
    #[arg(long)]
    pub stats: bool,
    pub id: String,
}

/// Go duration words as runc takes them (`5s`, `500ms`, `1m30s`; humantime reads them),
/// or plain seconds.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = match s.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => Duration::from_secs_f64(secs),
        Ok(_) => return Err(format!("invalid duration {s:?}")),
        Err(_) => humantime::parse_duration(s).map_err(|_| format!("invalid duration {s:?}"))?,
    };
    if d.is_zero() {
        return Err("duration interval must be greater than 0".to_string());
    }
    Ok(d)
}

fn mem(d: &MemoryData) -> Value {
    json!({"limit": d.limit, "usage": d.usage, "max": d.max_usage, "failcnt": d.fail_count})
}

fn blkio(v: &[BlkioDeviceStat]) -> Value {
    Value::Array(
        v.iter()
            .map(|s| json!({"major": s.major, "minor": s.minor, "op": s.op_type.clone().unwrap_or_default(), "value": s.value}))
            .collect(),
    )
}

/// libcgroups' statistics in the field names of runc's `types.Stats`.
pub fn runc_stats(s: &Stats) -> Value {
    json!({
        "cpu": {
            "usage": {
                "total": s.cpu.usage.usage_total,
                "percpu": s.cpu.usage.per_core_usage_total,
                "percpu_kernel": s.cpu.usage.per_core_usage_kernel,
                "percpu_user": s.cpu.usage.per_core_usage_user,
                "kernel": s.cpu.usage.usage_kernel,
                "user": s.cpu.usage.usage_user,
            },
            "throttling": {
                "periods": s.cpu.throttling.periods,
                "throttledPeriods": s.cpu.throttling.throttled_periods,
                "throttledTime": s.cpu.throttling.throttled_time,
            },
        },
        "memory": {
            "cache": s.memory.cache,
            "usage": mem(&s.memory.memory),
            "swap": mem(&s.memory.memswap),
            "kernel": mem(&s.memory.kernel),
            "kernelTCP": mem(&s.memory.kernel_tcp),
            "raw": s.memory.stats,
        },
        "pids": {"current": s.pids.current, "limit": s.pids.limit},
        "blkio": {
            "ioServiceBytesRecursive": blkio(&s.blkio.service_bytes),
            "ioServicedRecursive": blkio(&s.blkio.serviced),
            "ioQueueRecursive": blkio(&s.blkio.queued),
            "ioServiceTimeRecursive": blkio(&s.blkio.service_time),
            "ioWaitTimeRecursive": blkio(&s.blkio.wait_time),
            "ioMergedRecursive": blkio(&s.blkio.merged),
            "ioTimeRecursive": blkio(&s.blkio.time),
            "sectorsRecursive": blkio(&s.blkio.sectors),
        },
        "hugetlb": s.hugetlb.iter().map(|(k, v)| (k.clone(), json!({"usage": v.usage, "max": v.max_usage, "failcnt": v.fail_count}))).collect::<serde_json::Map<_, _>>(),
    })
}

/// runc's event envelope, its keys in runc's order (a JSON map would sort them).
#[derive(serde::Serialize)]
struct Event<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    id: &'a str,
    #[serde(skip_serializing_if = "Value::is_null")]
    data: Value,
}

pub fn run(args: Args, global: &GlobalOpts) -> Result<i32> {
    let rt = super::runtime(global);
    let mut first = true;
    let mut oom = None;
    while let Some(stats) = rt.stats(&args.id, first)? {
        if first && !args.stats {
            // Watched from before the first line, so a caller that waits for that line
            // and then drives the container into an OOM sees it reported.
            oom = rt.watch_oom(&args.id)?;
        }
        first = false;
        print_event("stats", &args.id, runc_stats(&stats))?;
        if args.stats {
            break;
        }
        let next = Instant::now() + args.interval;
        loop {
            let left = next.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match oom.as_mut() {
                Some(w) => {
                    if w.wait(left)? {
                        print_event("oom", &args.id, Value::Null)?;
                    }
                }
                None => std::thread::sleep(left),
            }
        }
    }
    // An OOM that stopped the container while its last stats were read.
    if let Some(w) = oom.as_mut() {
        if w.wait(Duration::ZERO)? {
            print_event("oom", &args.id, Value::Null)?;
        }
    }
    Ok(0)
}

/// One line of the stream; runc leaves `data` out when an event has none (`oom`).
fn print_event(kind: &str, id: &str, data: Value) -> Result<()> {
    let line = serde_json::to_string(&Event { kind, id, data })?;
    outln!("{line}")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_interval("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_interval("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_interval("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_interval("0s").is_err());
        assert!(parse_interval("fast").is_err());
    }

    #[test]
    fn event_keys_in_runc_order() {
        let e = Event {
            kind: "stats",
            id: "c1",
            data: json!({"b": 1, "a": 2}),
        };
        let line = serde_json::to_string(&e).unwrap();
        assert!(
            line.starts_with(r#"{"type":"stats","id":"c1","data":{"#),
            "{line}"
        );
    }

    #[test]
    fn oom_event_has_no_data() {
        let e = Event {
            kind: "oom",
            id: "c1",
            data: Value::Null,
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"type":"oom","id":"c1"}"#
        );
    }

    #[test]
    fn stats_use_runc_field_names() {
        let v = runc_stats(&Stats::default());
        assert!(v["cpu"]["usage"]["total"].is_u64());
        assert!(v["memory"]["usage"]["failcnt"].is_u64());
        assert!(v["pids"]["current"].is_u64());
    }
}
