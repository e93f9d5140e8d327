//! `vzrun ve set`: change a VE, as `vzctl set` does: a running one live (and with
//! `--save` for its next start too), a stopped system VE's saved settings with `--save`.
//! Flags become [`Changes`], the runtime applies them, and an error about a setting, or
//! a step that failed and what was put back, is named here by the flag that gave it.

use anyhow::{anyhow, Result};

use crate::runtime::error::Error;
use crate::runtime::Runtime;
use crate::ve::live::{undo_summary_with, Changes, Setting};
use crate::ve::VeError;

use super::{flag_err, ve_err};

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  vzrun ve set web --ram 1G --swap 512M --numproc 400\n  vzrun ve set web --ipadd 192.0.2.10 --save\n  vzrun ve set web --ram 2G --save    # a stopped VE: for its next start"
)]
pub struct SetArgs {
    /// The VE's ID (its container ID: `vzrun list` and `vzrun ve list` show them)
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
    /// Also keep the new values for the next start: a system VE's ve.conf, else the
    /// bundle's config.json annotations. A stopped system VE changes only with --save
    #[arg(long)]
    pub save: bool,
}

pub fn run(rt: &Runtime, args: SetArgs) -> Result<i32> {
    let changes = Changes {
        ipadd: args.ipadd.clone(),
        ipdel: args.ipdel.clone(),
        route_add: args.route_add.clone(),
        route_del: args.route_del.clone(),
        hostname: args.hostname.clone(),
        nameserver: args.nameserver.clone(),
        searchdomain: args.searchdomain.clone(),
        resources: resource_flags(&args)
            .into_iter()
            .filter_map(|(name, v)| Some((name, v.clone()?)))
            .collect(),
        diskspace: args.diskspace.clone(),
        diskinodes: args.diskinodes.clone(),
        save: args.save,
    };
    match rt.set(&args.id, &changes) {
        Ok(()) => Ok(0),
        Err(Error::Ve(VeError::Setting { setting, problem })) => Err(flag_err(
            &format!("VE {}: {}", args.id, flag(setting)),
            problem,
        )),
        Err(Error::Ve(VeError::Failed {
            step,
            problem,
            put_back,
            left,
        })) => Err(anyhow!(
            "VE {}: {} failed: {problem}{}",
            args.id,
            flag(step),
            undo_summary_with(&put_back, &left, flag)
        )),
        Err(e) => Err(ve_err(&args.id, e)),
    }
}

/// The flag that gives a setting.
pub(super) fn flag(s: Setting) -> String {
    match s {
        Setting::IpAdd => "--ipadd".into(),
        Setting::IpDel => "--ipdel".into(),
        Setting::RouteAdd => "--route-add".into(),
        Setting::RouteDel => "--route-del".into(),
        Setting::Hostname => "--hostname".into(),
        Setting::Nameserver => "--nameserver".into(),
        Setting::Searchdomain => "--searchdomain".into(),
        Setting::Resource(name) => format!("--{name}"),
        Setting::DiskSpace => "--diskspace".into(),
        Setting::DiskInodes => "--diskinodes".into(),
        Setting::Save => "--save".into(),
    }
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
