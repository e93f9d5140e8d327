//! `vzrun ve ...`: read and change Virtual Environments, in the manner of vzctl/vzlist.

use std::net::IpAddr;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use libcontainer::container::ContainerStatus;
use serde_json::{json, Value};

use crate::cli::GlobalOpts;
use crate::container::Root;
use crate::ve::net::{self, Mode, RouteSpec};
use crate::ve::resources::{self, ResourceConfig};
use crate::ve::PREFIX;

#[derive(clap::Subcommand, Debug)]
pub enum VeCommand {
    /// Change settings of a running VE (vzctl set)
    Set(Box<SetArgs>),
    /// Print a VE's network settings
    Show(ShowArgs),
    /// Beancounters: held, maxheld, barrier, limit and failcnt per resource
    Stat(StatArgs),
    /// List VEs (vzlist)
    List(ListArgs),
}

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
    /// Also write the new values into the bundle's config.json annotations
    #[arg(long)]
    pub save: bool,
}

#[derive(clap::Args, Debug)]
pub struct StatArgs {
    pub id: String,
    /// Print JSON
    #[arg(short = 'j', long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct ShowArgs {
    pub id: String,
    /// Print JSON
    #[arg(short = 'j', long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Fields to show, comma-separated: ctid, status, ip, hostname, a beancounter
    /// (physpages, ram, swappages, swap, kmemsize, numproc, numfile, diskspace, diskinodes)
    /// for its held value, or with .m .b .l .f for maxheld, barrier, limit, failcnt
    #[arg(short = 'o', long, default_value = "ctid,numproc,status,ip,hostname")]
    pub output: String,
    /// Sort by this field
    #[arg(short = 's', long)]
    pub sort: Option<String>,
    /// Print JSON
    #[arg(short = 'j', long)]
    pub json: bool,
    /// Do not print the header
    #[arg(short = 'H', long = "no-header")]
    pub no_header: bool,
}

pub fn run(cmd: VeCommand, global: &GlobalOpts) -> Result<i32> {
    let root = Root::from_opts(global)?;
    match cmd {
        VeCommand::Set(args) => set(&root, *args),
        VeCommand::Show(args) => show(&root, args),
        VeCommand::Stat(args) => stat(&root, args),
        VeCommand::List(args) => list(&root, args),
    }
}

fn flag_err(flag: &str, problem: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("{flag}: {problem}")
}

fn set(root: &Root, args: SetArgs) -> Result<i32> {
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
        let derived = super::create::load_spec(&root.ve_dir(&args.id))?;
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
    let net_change =
        !add.is_empty() || !del.is_empty() || !routes_add.is_empty() || !routes_del.is_empty();
    if net_change {
        let rec = loaded
            .record
            .ve
            .net
            .as_mut()
            .ok_or_else(|| anyhow!("--ipadd/--route-add: the VE was created without vzrun networking (set {PREFIX}net.ip)"))?;
        net::change(rec, pid, &add, &del, &routes_add, &routes_del)?;
    }
    if res_given {
        super::update::apply(root, &loaded.container, &res.to_oci())?;
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
        for (name, value) in resource_flags(args) {
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

fn show(root: &Root, args: ShowArgs) -> Result<i32> {
    let loaded = root.load(&args.id)?;
    let ve = &loaded.record.ve;
    let n = ve.net.clone().unwrap_or_default();
    let resolv = n
        .resolv_conf
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    let words = |key: &str| -> Vec<String> {
        resolv
            .lines()
            .filter_map(|l| l.strip_prefix(key))
            .flat_map(|r| r.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .collect()
    };
    let v = json!({
        "ctid": args.id,
        "status": crate::state::status_word(loaded.container.status()),
        "hostname": ve.hostname,
        "mode": if ve.net.is_some() { Some(n.mode) } else { None },
        "ip": n.ips.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "host_if": n.host_if,
        "ve_if": n.ve_if,
        "mac": n.mac,
        "bridge": n.bridge,
        "routes": n.routes.iter().map(|r| r.text.clone()).collect::<Vec<_>>(),
        "rules": n.rules.iter().map(|r| format!("from {} table {}{}", r.from, r.table, r.priority.map(|p| format!(" priority {p}")).unwrap_or_default())).collect::<Vec<_>>(),
        "nameserver": words("nameserver"),
        "searchdomain": words("search"),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    let s = |x: &Value| match x {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() => "-".to_string(),
        Value::Array(a) => a
            .iter()
            .map(|e| e.as_str().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    };
    for key in [
        "ctid",
        "status",
        "hostname",
        "mode",
        "ip",
        "host_if",
        "ve_if",
        "mac",
        "bridge",
        "routes",
        "rules",
        "nameserver",
        "searchdomain",
    ] {
        let val = if key == "routes" || key == "rules" {
            v[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|e| e.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| "-".into())
        } else {
            s(&v[key])
        };
        println!("{key:<13}{val}");
    }
    Ok(0)
}

/// The value of one vzlist field for one VE; beancounter fields read the kernel's counters.
fn list_field(
    field: &str,
    id: &str,
    status: &str,
    rec: &crate::state::Record,
    counters: &[resources::Counter],
) -> Result<Value> {
    let ips: Vec<String> = rec
        .ve
        .net
        .as_ref()
        .map(|n| n.ips.iter().map(|a| a.ip.to_string()).collect())
        .unwrap_or_default();
    Ok(match field {
        "ctid" => json!(id),
        "status" => json!(status),
        "ip" => json!(ips),
        "hostname" => json!(rec.ve.hostname),
        other => {
            let (name, suffix) = other.split_once('.').unwrap_or((other, ""));
            let name = match name {
                "ram" => "physpages",
                "swap" => "swappages",
                n => n,
            };
            if ![
                "physpages",
                "swappages",
                "kmemsize",
                "numproc",
                "numfile",
                "diskspace",
                "diskinodes",
            ]
            .contains(&name)
            {
                bail!("-o: unknown field {other:?}");
            }
            let row = counters.iter().find(|c| c.resource == name);
            let v = match (row, suffix) {
                (None, _) => 0,
                (Some(r), "") => r.held,
                (Some(r), "m") => r.maxheld,
                (Some(r), "b") => r.barrier,
                (Some(r), "l") => r.limit,
                (Some(r), "f") => r.failcnt,
                _ => bail!("-o: unknown suffix in {other:?} (use .m .b .l .f)"),
            };
            json!(v)
        }
    })
}

fn list(root: &Root, args: ListArgs) -> Result<i32> {
    let fields: Vec<String> = args
        .output
        .split(',')
        .map(|f| f.trim().to_string())
        .filter(|f| !f.is_empty())
        .collect();
    let mut rows: Vec<serde_json::Map<String, Value>> = Vec::new();
    for id in root.ids() {
        let Ok((c, rec)) = root.read(&id) else {
            continue;
        };
        let status = crate::state::status_word(c.status());
        let counters = match (c.status(), c.pid()) {
            (ContainerStatus::Stopped, _) | (_, None) => Vec::new(),
            (_, Some(pid)) => resources::beancounters(pid.as_raw(), rec.ve.numfile),
        };
        let mut row = serde_json::Map::new();
        for f in &fields {
            row.insert(f.clone(), list_field(f, &id, status, &rec, &counters)?);
        }
        rows.push(row);
    }
    if let Some(key) = &args.sort {
        if !fields.contains(key) {
            bail!("-s: {key:?} is not one of the -o fields");
        }
        rows.sort_by(|a, b| match (&a[key], &b[key]) {
            (Value::Number(x), Value::Number(y)) => x.as_u64().cmp(&y.as_u64()),
            (x, y) => x.to_string().cmp(&y.to_string()),
        });
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    let text = |v: &Value| match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() => "-".to_string(),
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        Value::Number(n) if n.as_u64() >= Some(i64::MAX as u64) => "unlimited".to_string(),
        other => other.to_string(),
    };
    let mut table = Vec::new();
    if !args.no_header {
        table.push(fields.iter().map(|f| f.to_uppercase()).collect::<Vec<_>>());
    }
    for r in &rows {
        table.push(fields.iter().map(|f| text(&r[f])).collect());
    }
    let widths: Vec<usize> = (0..fields.len())
        .map(|i| table.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    for r in table {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    Ok(0)
}

fn resource_flags(args: &SetArgs) -> [(&'static str, &Option<String>); 7] {
    [
        ("cpuunits", &args.cpuunits),
        ("cpulimit", &args.cpulimit),
        ("cpus", &args.cpus),
        ("ram", &args.ram),
        ("swap", &args.swap),
        ("memguarantee", &args.memguarantee),
        ("numproc", &args.numproc),
    ]
}

fn stat(root: &Root, args: StatArgs) -> Result<i32> {
    let loaded = root.load(&args.id)?;
    let pid = match loaded.container.status() {
        ContainerStatus::Stopped => bail!("container not running"),
        _ => loaded
            .container
            .pid()
            .map(|p| p.as_raw())
            .ok_or_else(|| anyhow!("container not running"))?,
    };
    let rows = resources::beancounters(pid, loaded.record.ve.numfile);
    drop(loaded);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    let show = |v: u64| {
        if v >= i64::MAX as u64 {
            "unlimited".to_string()
        } else {
            v.to_string()
        }
    };
    println!(
        "{:<12} {:>12} {:>12} {:>20} {:>20} {:>8}",
        "resource", "held", "maxheld", "barrier", "limit", "failcnt"
    );
    for r in rows {
        println!(
            "{:<12} {:>12} {:>12} {:>20} {:>20} {:>8}",
            r.resource,
            show(r.held),
            show(r.maxheld),
            show(r.barrier),
            show(r.limit),
            r.failcnt
        );
    }
    Ok(0)
}
