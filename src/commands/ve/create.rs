//! `vzrun ve create ID --template NAME [ve set flags]`: a system VE's bundle in the data
//! directory, booting the template's init, with the settings in its `ve.conf` (and, made
//! from it, as `io.vzrun.` annotations of its config.json).

use std::collections::HashMap;
use std::fs;

use anyhow::{anyhow, bail, Context, Result};

use crate::runtime::root::validate_id;
use crate::ve::system::{self, SystemSpec, VeConf};
use crate::ve::{template, VeConfig, VeError, PREFIX};

use super::flag_err;
use super::set::{resource_flags, SetArgs};
use crate::commands::out::outln;

// Removing addresses or routes, or saving, means nothing for a VE that does not exist
// yet: its help leaves those `ve set` flags out (create refuses them by name). Hidden here
// rather than on `VeCommand::Create`: the subcommand's arguments are added only when it is
// parsed (deferred), after which a variant's `mut_arg` would find none.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example:\n  vzrun ve create 101 --template debian-12 --ipadd 192.0.2.101 --ram 1G",
    mut_arg("ipdel", |a| a.hide(true)),
    mut_arg("route_del", |a| a.hide(true)),
    mut_arg("save", |a| a.hide(true))
)]
pub struct CreateArgs {
    /// The OS template to boot (`busybox` is built in)
    #[arg(long)]
    pub template: String,
    /// Switch a capability on or off: NAME:on|off (repeatable)
    #[arg(long = "capability")]
    pub capability: Vec<String>,
    /// The VE's ID and any `ve set` setting
    #[command(flatten)]
    pub set: SetArgs,
}

pub const DEFAULT_DISKSPACE: &str = "10G";

pub fn run(args: CreateArgs) -> Result<i32> {
    let id = args.set.id.clone();
    validate_id(&id)?;
    for (flag, given) in [
        ("--ipdel", !args.set.ipdel.is_empty()),
        ("--route-del", !args.set.route_del.is_empty()),
        ("--save", args.set.save),
    ] {
        if given {
            return Err(flag_err(flag, "not used by ve create"));
        }
    }
    let caps = args
        .capability
        .iter()
        .map(|c| system::parse_capability(c).map_err(|e| flag_err("--capability", e)))
        .collect::<Result<Vec<_>>>()?;
    let mut annotations = annotations_from(&args.set)?;
    check_host(&args.set, &annotations)?;
    let hostname = match &args.set.hostname {
        Some(h) => {
            crate::ve::live::check_hostname(h).map_err(|e| flag_err("--hostname", e))?;
            h.clone()
        }
        None => id.clone(),
    };
    let data = template::data_dir();
    let tpl = template::open(&data, &args.template).map_err(|e| flag_err("--template", e))?;

    let ves = system::ves_dir(&data);
    fs::create_dir_all(&ves).with_context(|| format!("create {}", ves.display()))?;
    let dir = ves.join(&id);
    // Root's alone: the VE's console log in it is the VE's to write (see ve start).
    match crate::sys::fs::private_dir_new(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            bail!("VE {id} already exists")
        }
        Err(e) => return Err(e).with_context(|| format!("create {}", dir.display())),
    }
    let made = (|| -> Result<()> {
        // The private area: an image in the VE's directory, holding the VE's writes over
        // the template through an overlay; it survives stop/start and goes with destroy.
        annotations
            .entry(format!("{PREFIX}diskspace"))
            .or_insert_with(|| DEFAULT_DISKSPACE.to_string());
        annotations.insert(
            format!("{PREFIX}disk.image"),
            dir.join(system::DISK_IMAGE).to_string_lossy().into_owned(),
        );
        let settings = annotations
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(PREFIX)?, v)))
            .filter(|(k, _)| system::settable(k))
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let spec = system::spec(&SystemSpec {
            template: &tpl,
            hostname: &hostname,
            annotations,
            capabilities: &caps,
        })?;
        spec.save(dir.join("config.json"))
            .map_err(|e| anyhow!("write {}/config.json: {e}", dir.display()))?;
        // The settings' one home; config.json is made from it again at every start.
        VeConf {
            template: tpl.info.name.clone(),
            shutdown: tpl.info.shutdown,
            created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            hostname: Some(hostname.clone()),
            settings,
            legacy: false,
        }
        .save(&dir)?;
        Ok(())
    })();
    if let Err(e) = made {
        let _ = fs::remove_dir_all(&dir);
        return Err(e);
    }
    outln!("VE {id} created from template {}", tpl.info.name)?;
    Ok(0)
}

/// The `ve set` flags as the annotations a VE's config carries, checked by the same
/// parsers `create` uses; an error names the flag.
pub fn annotations_from(set: &SetArgs) -> Result<HashMap<String, String>> {
    let mut a = HashMap::new();
    let mut origin: HashMap<String, String> = HashMap::new();
    let mut put = |key: &str, value: String, flag: &str| {
        a.insert(format!("{PREFIX}{key}"), value);
        origin.insert(format!("{PREFIX}{key}"), flag.to_string());
    };
    if !set.ipadd.is_empty() {
        put("net.ip", set.ipadd.join(","), "--ipadd");
    }
    if !set.route_add.is_empty() {
        put("net.routes", set.route_add.join(";"), "--route-add");
    }
    if !set.nameserver.is_empty() {
        put("net.nameserver", set.nameserver.join(","), "--nameserver");
    }
    if !set.searchdomain.is_empty() {
        put(
            "net.searchdomain",
            set.searchdomain.join(","),
            "--searchdomain",
        );
    }
    let disk = [
        ("diskspace", &set.diskspace),
        ("diskinodes", &set.diskinodes),
    ];
    for (name, value) in resource_flags(set).into_iter().chain(disk) {
        if let Some(v) = value {
            a.insert(format!("{PREFIX}{name}"), v.clone());
            origin.insert(format!("{PREFIX}{name}"), format!("--{name}"));
        }
    }
    let named = |key: String, problem: String| match origin.get(&key) {
        Some(flag) => flag_err(flag, problem),
        None => anyhow!("annotation {key}: {problem}"),
    };
    VeConfig::parse(&a).map_err(|e| match e {
        VeError::Annotation { key, problem } => named(key, problem),
        other => other.into(),
    })?;
    Ok(a)
}

/// Refuses now, rather than at the first start (which checks again: the host may change
/// meanwhile), what the host cannot give the VE: its own, gateway, loopback, … addresses,
/// a bridge or uplink that is not there.
fn check_host(set: &SetArgs, annotations: &HashMap<String, String>) -> Result<()> {
    let Some(net) = VeConfig::parse(annotations)?.net else {
        return Ok(());
    };
    crate::ve::net::preflight(&net).map_err(|e| match e.setting_problem() {
        Some(("net.ip", problem)) if !set.ipadd.is_empty() => flag_err("--ipadd", problem),
        _ => e.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct P {
        #[command(flatten)]
        c: CreateArgs,
    }

    fn parse(args: &[&str]) -> CreateArgs {
        let mut v = vec!["x"];
        v.extend_from_slice(args);
        P::try_parse_from(v).unwrap().c
    }

    #[test]
    fn set_flags_become_annotations() {
        let c = parse(&[
            "ve1",
            "--template",
            "busybox",
            "--ipadd",
            "198.51.100.210",
            "--ram",
            "256M",
            "--nameserver",
            "198.51.100.53",
        ]);
        assert_eq!(c.set.id, "ve1");
        let a = annotations_from(&c.set).unwrap();
        assert_eq!(a["io.vzrun.net.ip"], "198.51.100.210");
        assert_eq!(a["io.vzrun.ram"], "256M");
        assert_eq!(a["io.vzrun.net.nameserver"], "198.51.100.53");
    }

    #[test]
    fn bad_values_name_the_flag() {
        let c = parse(&["ve1", "--template", "busybox", "--ram", "lots"]);
        let err = annotations_from(&c.set).unwrap_err().to_string();
        assert!(err.starts_with("--ram: "), "{err}");
        let c = parse(&["ve1", "--template", "busybox", "--ipadd", "300.1.1.1"]);
        let err = annotations_from(&c.set).unwrap_err().to_string();
        assert!(err.starts_with("--ipadd: "), "{err}");
        let c = parse(&["ve1", "--template", "busybox", "--diskspace", "big"]);
        let err = annotations_from(&c.set).unwrap_err().to_string();
        assert!(err.starts_with("--diskspace: "), "{err}");
    }
}
