//! `vzrun ve set`: change a running VE, as `vzctl set` does.

use anyhow::{anyhow, bail, Context, Result};
use libcontainer::container::ContainerStatus;
use serde_json::{json, Value};

use crate::runtime::Runtime;
use crate::ve::disk;
use crate::ve::net::{self, Mode, RouteSpec};
use crate::ve::resources::{self, ResourceConfig};
use crate::ve::PREFIX;
use std::net::IpAddr;
use std::path::Path;

use super::flag_err;

#[derive(clap::Args, Debug)]
pub struct SetArgs {
    pub id: String,
    /// Add an IP address (repeatable)
    #[arg(long = "ipadd")]
    pub ipadd: Vec<String>,
    /// Remove an IP address, or `all` (repeatable)
    #[arg(long = "ipdel")]
    pub ipdel: Vec<String>,
    /// Add a route, in `ip route` words (repeatable)
    #[arg(long = "route-add")]
    pub route_add: Vec<String>,
    /// Remove a route given as it was added (repeatable)
    #[arg(long = "route-del")]
    pub route_del: Vec<String>,
    /// Set the hostname
    #[arg(long)]
    pub hostname: Option<String>,
    /// Set the name servers (repeatable, or `inherit`); replaces the old ones
    #[arg(long)]
    pub nameserver: Vec<String>,
    /// Set the search domains (repeatable, or `inherit`); replaces the old ones
    #[arg(long)]
    pub searchdomain: Vec<String>,
    /// Relative CPU weight (8..500000)
    #[arg(long)]
    pub cpuunits: Option<String>,
    /// CPU limit in percent of one CPU (100 = one CPU)
    #[arg(long)]
    pub cpulimit: Option<String>,
    /// Number of CPUs the VE may use and sees
    #[arg(long)]
    pub cpus: Option<String>,
    /// Memory limit (K/M/G/T or unlimited)
    #[arg(long)]
    pub ram: Option<String>,
    /// Swap on top of ram (K/M/G/T or unlimited)
    #[arg(long)]
    pub swap: Option<String>,
    /// Guaranteed memory, percent of ram
    #[arg(long)]
    pub memguarantee: Option<String>,
    /// Maximum number of processes and threads
    #[arg(long)]
    pub numproc: Option<String>,
    /// Maximum open files per process (lowering works live; raising needs CAP_SYS_RESOURCE)
    #[arg(long)]
    pub numfile: Option<String>,
    /// Disk space of the private area, soft:hard or one size (a running VE can only grow)
    #[arg(long)]
    pub diskspace: Option<String>,
    /// Inodes of the private area, soft:hard or one number (fixed when the image is made)
    #[arg(long)]
    pub diskinodes: Option<String>,
    /// I/O priority 0..7 (higher gets more)
    #[arg(long)]
    pub ioprio: Option<String>,
    /// I/O bandwidth limit in bytes/s, read and write each (K/M/G or unlimited)
    #[arg(long)]
    pub iolimit: Option<String>,
    /// I/O operations per second limit, read and write each (or unlimited)
    #[arg(long)]
    pub iopslimit: Option<String>,
    /// Also write the new values into the bundle's config.json annotations
    #[arg(long)]
    pub save: bool,
}

pub fn run(rt: &Runtime, args: SetArgs) -> Result<i32> {
    let root = &rt.root;
    let mut loaded = root.load(&args.id)?;
    let status = loaded.container.status();
    if !matches!(
        status,
        ContainerStatus::Running | ContainerStatus::Created | ContainerStatus::Paused
    ) {
        bail!("container not running");
    }
    let pid = loaded
        .container
        .pid()
        .map(|p| p.as_raw())
        .ok_or_else(|| anyhow!("container not running"))?;
    // Everything is parsed and checked before anything changes.
    let mode = loaded
        .record
        .ve
        .net
        .as_ref()
        .map(|n| n.mode)
        .unwrap_or_default();
    let mut add = Vec::new();
    for a in &args.ipadd {
        let mut addr = net::parse_addr(
            a,
            if mode == Mode::Veth {
                Some(if a.contains(':') { 64 } else { 24 })
            } else {
                None
            },
        )
        .map_err(|e| flag_err("--ipadd", e))?;
        if mode == Mode::Venet {
            addr.prefix = if addr.ip.is_ipv4() { 32 } else { 128 };
        }
        add.push(addr);
    }
    let current: Vec<IpAddr> = loaded
        .record
        .ve
        .net
        .as_ref()
        .map(|n| n.ips.iter().map(|a| a.ip).collect())
        .unwrap_or_default();
    let mut del = Vec::new();
    for d in &args.ipdel {
        if d == "all" {
            del.extend(current.iter().copied());
            continue;
        }
        let ip: IpAddr = d
            .split('/')
            .next()
            .unwrap_or_default()
            .parse()
            .map_err(|_| flag_err("--ipdel", format!("{d:?} is not an IP address")))?;
        if !current.contains(&ip) {
            return Err(flag_err(
                "--ipdel",
                format!("{ip} is not an address of this VE"),
            ));
        }
        del.push(ip);
    }
    let routes_add: Vec<RouteSpec> = args
        .route_add
        .iter()
        .map(|r| net::parse_route(r).map_err(|e| flag_err("--route-add", e)))
        .collect::<Result<_>>()?;
    let routes_del: Vec<RouteSpec> = args
        .route_del
        .iter()
        .map(|r| net::parse_route(r).map_err(|e| flag_err("--route-del", e)))
        .collect::<Result<_>>()?;
    for n in args.nameserver.iter().filter(|n| *n != "inherit") {
        n.parse::<IpAddr>().map_err(|_| {
            flag_err(
                "--nameserver",
                format!("{n:?} is not an IP address (or inherit)"),
            )
        })?;
    }
    if let Some(h) = &args.hostname {
        check_hostname(h)?;
    }
    let mut res = ResourceConfig::default();
    let mut res_given = false;
    for (name, value) in resource_flags(&args) {
        if let Some(v) = value {
            res.set(name, v)
                .map_err(|e| flag_err(&format!("--{name}"), e))?;
            res_given = true;
        }
    }
    if res_given && (res.swap.is_some() || res.memguarantee.is_some()) && res.ram.is_none() {
        // swap and memguarantee are relative to ram: take the VE's current limit.
        let derived = crate::runtime::bundle::load_spec(&root.ve_dir(&args.id))?;
        let ram = derived
            .linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref())
            .and_then(|r| *r.memory())
            .and_then(|m| m.limit());
        res.ram = Some(ram.filter(|r| *r >= 0).map(|r| r as u64));
        if res.memguarantee.is_some() && !matches!(res.ram, Some(Some(_))) {
            return Err(flag_err("--memguarantee", "needs a limited --ram"));
        }
    }
    let disk_space = args
        .diskspace
        .as_deref()
        .map(|v| disk::parse_limit(v, false).map_err(|e| flag_err("--diskspace", e)))
        .transpose()?;
    let disk_inodes = args
        .diskinodes
        .as_deref()
        .map(|v| disk::parse_limit(v, true).map_err(|e| flag_err("--diskinodes", e)))
        .transpose()?;
    if disk_space.is_some() || disk_inodes.is_some() {
        let Some(d) = loaded.record.ve.disk.as_ref() else {
            return Err(flag_err(
                "--diskspace",
                format!("the VE has no private area (create it with {PREFIX}diskspace)"),
            ));
        };
        if let Some(l) = disk_space {
            if l.hard < d.space.1 {
                return Err(flag_err(
                    "--diskspace",
                    format!(
                        "{} is below the current hard limit {}: a running VE's area can only grow",
                        l.hard, d.space.1
                    ),
                ));
            }
        }
        if let Some(l) = disk_inodes {
            let total = disk::usage(d).map(|u| u.3).unwrap_or(0);
            if l.hard != total && Some(l.hard) != d.inodes.map(|i| i.1) {
                return Err(flag_err(
                    "--diskinodes",
                    format!(
                        "the inode count is fixed when the image is made ({total} now); it grows with --diskspace"
                    ),
                ));
            }
        }
    }
    if res.needs_io_device() && loaded.record.ve.io_dev.is_none() {
        let derived = crate::runtime::bundle::load_spec(&root.ve_dir(&args.id))?;
        loaded.record.ve.io_dev = Some(crate::ve::io_device(&derived, &loaded.record.ve)?);
    }
    let net_change =
        !add.is_empty() || !del.is_empty() || !routes_add.is_empty() || !routes_del.is_empty();
    if net_change {
        let rec = loaded
            .record
            .ve
            .net
            .as_mut()
            .ok_or_else(|| anyhow!("--ipadd/--route-add: the VE was created without vzrun networking (set {PREFIX}net.ip)"))?;
        net::change(rec, pid, &add, &del, &routes_add, &routes_del).map_err(|e| {
            match e.setting_problem() {
                Some(("net.ip", problem)) => flag_err("--ipadd", problem),
                _ => e.into(),
            }
        })?;
    }
    if res_given {
        rt.apply_resources(&loaded.container, &res.to_oci(loaded.record.ve.io_dev))?;
        let pids = crate::runtime::lifecycle::pids(&loaded.container)?;
        if let Some(p) = res.ioprio {
            for &pid in &pids {
                // A process that exited meanwhile is no failure.
                let _ = resources::set_process_ioprio(pid, p);
            }
        }
        if let Some(n) = res.numfile {
            for &pid in &pids {
                resources::set_process_numfile(pid, n).map_err(|e| {
                    flag_err(
                        "--numfile",
                        format!(
                            "process {pid}: {e} (raising the hard limit needs CAP_SYS_RESOURCE)"
                        ),
                    )
                })?;
            }
            loaded.record.ve.numfile = Some(n);
        }
    }
    if let (Some(l), Some(d)) = (disk_space, loaded.record.ve.disk.as_mut()) {
        disk::grow(d, l.hard)?;
        d.space.0 = l.soft;
    }
    if let (Some(l), Some(d)) = (disk_inodes, loaded.record.ve.disk.as_mut()) {
        d.inodes = Some((l.soft, l.hard));
    }
    if let Some(h) = &args.hostname {
        set_hostname(pid, h)?;
        loaded.record.ve.hostname = Some(h.clone());
    }
    if !args.nameserver.is_empty() || !args.searchdomain.is_empty() {
        let cfg = net::NetConfig {
            nameservers: (!args.nameserver.is_empty()).then(|| args.nameserver.clone()),
            searchdomains: (!args.searchdomain.is_empty()).then(|| args.searchdomain.clone()),
            ..Default::default()
        };
        let text = net::resolv_conf(&cfg).unwrap_or_default();
        let target = loaded
            .record
            .ve
            .net
            .as_ref()
            .and_then(|n| n.resolv_conf.clone())
            .unwrap_or_else(|| {
                Path::new(&format!("/proc/{pid}/root/etc/resolv.conf")).to_path_buf()
            });
        // Rewritten in place: the VE sees this inode through a bind mount.
        std::fs::write(&target, text)
            .with_context(|| format!("--nameserver: write {}", target.display()))?;
    }
    loaded.record.save(&root.ve_dir(&args.id))?;
    if args.save {
        save_to_bundle(&loaded.record.bundle, &args, &loaded.record.ve)?;
    }
    Ok(0)
}

pub(super) fn check_hostname(h: &str) -> Result<()> {
    if h.is_empty()
        || h.len() > 64
        || !h
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return Err(flag_err(
            "--hostname",
            format!("{h:?} is not a valid hostname"),
        ));
    }
    Ok(())
}

fn set_hostname(pid: i32, name: &str) -> Result<()> {
    let file = std::fs::File::open(format!("/proc/{pid}/ns/uts"))
        .context("--hostname: open the VE's UTS namespace")?;
    let name = name.to_string();
    std::thread::spawn(move || -> Result<()> {
        use std::os::fd::AsFd;
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWUTS)
            .map_err(|e| anyhow!("--hostname: enter UTS namespace: {e}"))?;
        nix::unistd::sethostname(&name).map_err(|e| anyhow!("--hostname: {e}"))
    })
    .join()
    .map_err(|_| anyhow!("--hostname: worker panicked"))?
}

/// Writes the VE's current settings back into the bundle, so the next create has them.
fn save_to_bundle(bundle: &Path, args: &SetArgs, ve: &crate::ve::VeRecord) -> Result<()> {
    let path = bundle.join("config.json");
    let mut spec: Value = serde_json::from_slice(
        &std::fs::read(&path).with_context(|| format!("--save: read {}", path.display()))?,
    )
    .with_context(|| format!("--save: parse {}", path.display()))?;
    let ann = spec
        .as_object_mut()
        .ok_or_else(|| anyhow!("--save: config.json is not an object"))?
        .entry("annotations")
        .or_insert_with(|| json!({}));
    if let (Some(n), Some(map)) = (&ve.net, ann.as_object_mut()) {
        let ips: Vec<String> = n
            .ips
            .iter()
            .map(|a| {
                if n.mode == Mode::Venet {
                    a.ip.to_string()
                } else {
                    a.to_string()
                }
            })
            .collect();
        map.insert(format!("{PREFIX}net.ip"), json!(ips.join(",")));
        let routes: Vec<&str> = n.routes.iter().map(|r| r.text.as_str()).collect();
        if routes.is_empty() {
            map.remove(&format!("{PREFIX}net.routes"));
        } else {
            map.insert(format!("{PREFIX}net.routes"), json!(routes.join(";")));
        }
    }
    if let Some(map) = ann.as_object_mut() {
        if !args.nameserver.is_empty() {
            map.insert(
                format!("{PREFIX}net.nameserver"),
                json!(args.nameserver.join(",")),
            );
        }
        if !args.searchdomain.is_empty() {
            map.insert(
                format!("{PREFIX}net.searchdomain"),
                json!(args.searchdomain.join(",")),
            );
        }
    }
    if let Some(map) = spec.get_mut("annotations").and_then(|a| a.as_object_mut()) {
        let disk = [
            ("diskspace", &args.diskspace),
            ("diskinodes", &args.diskinodes),
        ];
        for (name, value) in resource_flags(args).into_iter().chain(disk) {
            if let Some(v) = value {
                map.insert(format!("{PREFIX}{name}"), json!(v));
            }
        }
    }
    if let Some(h) = &args.hostname {
        spec["hostname"] = json!(h);
    }
    let tmp = path.with_extension("json.vzrun-tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&spec)?)
        .with_context(|| format!("--save: write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("--save: replace {}", path.display()))?;
    Ok(())
}

pub(super) fn resource_flags(args: &SetArgs) -> [(&'static str, &Option<String>); 11] {
    [
        ("cpuunits", &args.cpuunits),
        ("cpulimit", &args.cpulimit),
        ("cpus", &args.cpus),
        ("ram", &args.ram),
        ("swap", &args.swap),
        ("memguarantee", &args.memguarantee),
        ("numproc", &args.numproc),
        ("numfile", &args.numfile),
        ("ioprio", &args.ioprio),
        ("iolimit", &args.iolimit),
        ("iopslimit", &args.iopslimit),
    ]
}
