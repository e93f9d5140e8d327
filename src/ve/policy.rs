//! The host policy: what the administrator lets a spec's `io.vzrun.*` annotations ask for.
//! Kubernetes users set pod annotations, so every annotation is a tenant's input; what
//! reaches the host (addresses, uplinks, bridges, image files, host programs, limits that
//! size host objects) is bounded here, never by the spec.
//!
//! The file is TOML (`/etc/vzrun/policy.toml`, or `--policy` / `VZRUN_POLICY`). Without
//! it the defaults are safe for tenants: no addresses, uplinks or bridges, no named
//! images, no host hooks, the MAC filter always on. A refusal names the annotation, its
//! value and the policy line (or the missing rule).
//!
//! ```toml
//! [net]
//! pools = ["198.51.100.0/24", "2001:db8:5::/64"]  # addresses a VE may claim
//! uplinks = ["eth0"]                               # proxy ARP/NDP towards these
//! bridges = ["br-ve*"]                             # veth VEs may join these (prefix*)
//! mac_filter_off = false                           # may a VE turn its MAC filter off
//! max_ips = 16                                     # addresses per VE (16 if absent)
//! [resources]
//! max_ram = "8G"
//! max_swap = "1G"
//! max_cpus = 4
//! max_numproc = 4096
//! max_diskspace = "20G"
//! memguarantee = true
//! [disk]
//! images = "/var/lib/vzrun/images"                 # io.vzrun.disk.image only beneath this
//! [hooks]
//! names = ["notify"]                               # programs in <policy dir>/hooks.d/
//! [sysctl]
//! namespaced = true
//! [proc]
//! mode = "tenant"            # io.vzrun.proc decides; "virtual" or "host" force one
//! ```

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::actions::Action;
use super::proc_view::ProcMode;
use super::VeConfig;
use crate::units::parse_size;

/// Where the policy is read from when neither `--policy` nor `VZRUN_POLICY` names one.
pub const DEFAULT_PATH: &str = "/etc/vzrun/policy.toml";

/// Largest policy file read: a policy is a few lines.
const MAX_SIZE: u64 = 1 << 20;

/// Addresses one VE may hold when the policy has no `net.max_ips`: enough for a dual-stack
/// server with a few service addresses, not a whole pool for one tenant (each is a host
/// route, a guard set element and a claim).
pub const DEFAULT_MAX_IPS: u64 = 16;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("host policy {path}: {problem}")]
    File { path: PathBuf, problem: String },
    /// An annotation the policy does not allow: its key, its value and the rule.
    #[error("{key}={value:?}: {why} ({rule})")]
    Refused {
        key: String,
        value: String,
        why: String,
        rule: String,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    #[serde(default)]
    net: NetDoc,
    #[serde(default)]
    resources: ResourceDoc,
    #[serde(default)]
    disk: DiskDoc,
    #[serde(default)]
    hooks: HookDoc,
    #[serde(default)]
    sysctl: SysctlDoc,
    #[serde(default)]
    proc: ProcDoc,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProcDoc {
    mode: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NetDoc {
    pools: Option<Spanned<Vec<String>>>,
    uplinks: Option<Spanned<Vec<String>>>,
    bridges: Option<Spanned<Vec<String>>>,
    mac_filter_off: Option<Spanned<bool>>,
    max_ips: Option<Spanned<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceDoc {
    max_ram: Option<Spanned<String>>,
    max_swap: Option<Spanned<String>>,
    max_cpus: Option<Spanned<u64>>,
    max_numproc: Option<Spanned<u64>>,
    max_diskspace: Option<Spanned<String>>,
    memguarantee: Option<Spanned<bool>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DiskDoc {
    images: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HookDoc {
    names: Option<Spanned<Vec<String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SysctlDoc {
    namespaced: Option<Spanned<bool>>,
}

/// A rule and where it was written, for the error that quotes it.
#[derive(Debug, Clone)]
struct Rule<T> {
    value: T,
    line: usize,
}

/// An address range of a pool.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cidr {
    pub ip: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Option<Cidr> {
        let (ip, prefix) = match text.split_once('/') {
            Some((ip, p)) => (ip.parse::<IpAddr>().ok()?, p.parse::<u8>().ok()?),
            None => {
                let ip = text.parse::<IpAddr>().ok()?;
                (ip, if ip.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if ip.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Cidr { ip, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.ip, ip) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - self.prefix as u32).unwrap_or(0);
                u32::from(net) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - self.prefix as u32).unwrap_or(0);
                u128::from(net) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.ip, self.prefix)
    }
}

/// The administrator's rules, read once per invocation.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    path: PathBuf,
    found: bool,
    pools: Option<Rule<Vec<Cidr>>>,
    uplinks: Option<Rule<Vec<String>>>,
    bridges: Option<Rule<Vec<String>>>,
    mac_filter_off: Option<Rule<bool>>,
    max_ips: Option<Rule<u64>>,
    max_ram: Option<Rule<u64>>,
    max_swap: Option<Rule<u64>>,
    max_cpus: Option<Rule<u64>>,
    max_numproc: Option<Rule<u64>>,
    max_diskspace: Option<Rule<u64>>,
    memguarantee: Option<Rule<bool>>,
    images: Option<Rule<PathBuf>>,
    hook_names: Option<Rule<Vec<String>>>,
    namespaced_sysctl: Option<Rule<bool>>,
    /// `[proc] mode` when it forces one (`tenant`, the default, leaves it to the VE).
    proc_mode: Option<Rule<ProcMode>>,
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

impl Policy {
    /// The policy path in force: the flag's, else `VZRUN_POLICY`, else the default.
    pub fn path_from(flag: Option<&Path>) -> PathBuf {
        if let Some(p) = flag {
            return p.to_path_buf();
        }
        match std::env::var_os("VZRUN_POLICY") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => PathBuf::from(DEFAULT_PATH),
        }
    }

    /// Reads the policy at `path`; a missing file is the safe default, a bad one an error
    /// that names its line.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let bad = |problem: String| PolicyError::File {
            path: path.to_path_buf(),
            problem,
        };
        let text = match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Policy {
                    path: path.to_path_buf(),
                    ..Default::default()
                })
            }
            Err(e) => return Err(bad(e.to_string())),
            Ok(m) if m.len() > MAX_SIZE => {
                return Err(bad(format!(
                    "{} bytes is over the 1 MiB a policy may have",
                    m.len()
                )))
            }
            Ok(_) => std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?,
        };
        let doc: FileDoc = toml::from_str(&text).map_err(|e| {
            let at = e
                .span()
                .map(|s| format!("line {}: ", line_of(&text, s.start)))
                .unwrap_or_default();
            bad(format!("{at}{}", e.message()))
        })?;
        let rule = |span: std::ops::Range<usize>| line_of(&text, span.start);
        let list = |v: &Option<Spanned<Vec<String>>>| {
            v.as_ref().map(|s| Rule {
                value: s.get_ref().clone(),
                line: rule(s.span()),
            })
        };
        let flag = |v: &Option<Spanned<bool>>| {
            v.as_ref().map(|s| Rule {
                value: *s.get_ref(),
                line: rule(s.span()),
            })
        };
        let count = |v: &Option<Spanned<u64>>| {
            v.as_ref().map(|s| Rule {
                value: *s.get_ref(),
                line: rule(s.span()),
            })
        };
        let size =
            |name: &str, v: &Option<Spanned<String>>| -> Result<Option<Rule<u64>>, PolicyError> {
                v.as_ref()
                    .map(|s| {
                        let line = rule(s.span());
                        // "unlimited" as a maximum is no maximum.
                        parse_size(s.get_ref())
                            .map(|value| Rule {
                                value: value.unwrap_or(u64::MAX),
                                line,
                            })
                            .map_err(|e| bad(format!("line {line}: {name}: {e}")))
                    })
                    .transpose()
            };
        let pools = match &doc.net.pools {
            None => None,
            Some(s) => {
                let line = rule(s.span());
                let mut out = Vec::new();
                for p in s.get_ref() {
                    out.push(Cidr::parse(p).ok_or_else(|| {
                        bad(format!(
                            "line {line}: pools: {p:?} is not an address range (ADDR/PREFIX)"
                        ))
                    })?);
                }
                Some(Rule { value: out, line })
            }
        };
        let images = match &doc.disk.images {
            None => None,
            Some(s) => {
                let line = rule(s.span());
                let dir = PathBuf::from(s.get_ref());
                if !dir.is_absolute() || dir.components().any(|c| c == Component::ParentDir) {
                    return Err(bad(format!(
                        "line {line}: images: {:?} must be an absolute path without ..",
                        s.get_ref()
                    )));
                }
                Some(Rule { value: dir, line })
            }
        };
        let hook_names = list(&doc.hooks.names);
        if let Some(r) = &hook_names {
            if let Some(n) = r
                .value
                .iter()
                .find(|n| !valid_hook_name(n.strip_suffix('*').unwrap_or(n)))
            {
                return Err(bad(format!(
                    "line {}: hooks.names: {n:?} is not a hook name (letters, digits, '_', '-', '.')",
                    r.line
                )));
            }
        }
        let proc_mode = match &doc.proc.mode {
            None => None,
            Some(s) if s.get_ref() == "tenant" => None,
            Some(s) => {
                let line = rule(s.span());
                let value = ProcMode::parse(s.get_ref()).ok_or_else(|| {
                    bad(format!(
                        "line {line}: proc.mode: {:?} is not virtual, host or tenant",
                        s.get_ref()
                    ))
                })?;
                Some(Rule { value, line })
            }
        };
        Ok(Policy {
            path: path.to_path_buf(),
            found: true,
            proc_mode,
            pools,
            uplinks: list(&doc.net.uplinks),
            bridges: list(&doc.net.bridges),
            mac_filter_off: flag(&doc.net.mac_filter_off),
            max_ips: count(&doc.net.max_ips),
            max_ram: size("max_ram", &doc.resources.max_ram)?,
            max_swap: size("max_swap", &doc.resources.max_swap)?,
            max_cpus: count(&doc.resources.max_cpus),
            max_numproc: count(&doc.resources.max_numproc),
            max_diskspace: size("max_diskspace", &doc.resources.max_diskspace)?,
            memguarantee: flag(&doc.resources.memguarantee),
            images,
            hook_names,
            namespaced_sysctl: flag(&doc.sysctl.namespaced),
        })
    }

    /// The quoted rule, or why there is none.
    fn cite<T>(&self, rule: &Option<Rule<T>>, name: &str) -> String {
        match rule {
            Some(r) => format!(
                "host policy {} line {}: {name}",
                self.path.display(),
                r.line
            ),
            None if self.found => format!("host policy {} has no {name} rule", self.path.display()),
            None => format!(
                "no host policy at {}, so {name} allows nothing",
                self.path.display()
            ),
        }
    }

    fn refuse<T>(
        &self,
        key: &str,
        value: impl ToString,
        why: impl Into<String>,
        rule: &Option<Rule<T>>,
        name: &str,
    ) -> PolicyError {
        PolicyError::Refused {
            key: format!("{}{key}", super::PREFIX),
            value: value.to_string(),
            why: why.into(),
            rule: self.cite(rule, name),
        }
    }

    /// A VE address: only from the pools.
    pub fn allow_ip(&self, key: &str, ip: IpAddr) -> Result<(), PolicyError> {
        let inside = self
            .pools
            .as_ref()
            .is_some_and(|r| r.value.iter().any(|c| c.contains(ip)));
        if inside {
            return Ok(());
        }
        Err(self.refuse(
            key,
            ip,
            "outside the address pools",
            &self.pools,
            "net.pools",
        ))
    }

    pub fn allow_uplink(&self, name: &str) -> Result<(), PolicyError> {
        let why = "not an uplink the host allows";
        self.allow_listed("net.uplink", name, &self.uplinks, "net.uplinks", why)
    }

    pub fn allow_bridge(&self, name: &str) -> Result<(), PolicyError> {
        let why = "not a bridge the host allows";
        self.allow_listed("net.bridge", name, &self.bridges, "net.bridges", why)
    }

    fn allow_listed(
        &self,
        key: &str,
        name: &str,
        rule: &Option<Rule<Vec<String>>>,
        rule_name: &str,
        why: &str,
    ) -> Result<(), PolicyError> {
        if rule
            .as_ref()
            .is_some_and(|r| r.value.iter().any(|n| matches(n, name)))
        {
            return Ok(());
        }
        Err(self.refuse(key, name, why, rule, rule_name))
    }

    pub fn allow_mac_filter_off(&self) -> Result<(), PolicyError> {
        if self.mac_filter_off.as_ref().is_some_and(|r| r.value) {
            return Ok(());
        }
        Err(self.refuse(
            "net.mac_filter",
            "off",
            "a VE may not turn its MAC filter off",
            &self.mac_filter_off,
            "net.mac_filter_off",
        ))
    }

    /// A limit that sizes host objects: at most the policy's maximum, when it has one.
    fn allow_at_most(
        &self,
        key: &str,
        shown: &str,
        value: u64,
        rule: &Option<Rule<u64>>,
        name: &str,
    ) -> Result<(), PolicyError> {
        match rule {
            Some(r) if value > r.value => Err(self.refuse(
                key,
                shown,
                format!("above the host's maximum {}", r.value),
                rule,
                name,
            )),
            _ => Ok(()),
        }
    }

    /// How many addresses one VE may hold: `net.max_ips`, else [`DEFAULT_MAX_IPS`]. The
    /// pools bound which addresses, this how many of them one tenant takes.
    pub fn allow_ip_count(&self, shown: &str, n: usize) -> Result<(), PolicyError> {
        let max = self.max_ips.as_ref().map_or(DEFAULT_MAX_IPS, |r| r.value);
        if n as u64 <= max {
            return Ok(());
        }
        let why = match self.max_ips {
            Some(_) => format!("{n} addresses, above the host's maximum {max}"),
            None => format!("{n} addresses, above the default maximum {max}"),
        };
        // The list itself can be long: its start is enough to recognise it.
        let shown = match shown.char_indices().nth(60) {
            Some((cut, _)) => format!("{}...", &shown[..cut]),
            None => shown.to_string(),
        };
        Err(self.refuse("net.ip", shown, why, &self.max_ips, "net.max_ips"))
    }

    pub fn allow_ram(&self, shown: &str, bytes: Option<u64>) -> Result<(), PolicyError> {
        // Unlimited is above any maximum.
        let v = bytes.unwrap_or(u64::MAX);
        self.allow_at_most("ram", shown, v, &self.max_ram, "resources.max_ram")
    }

    pub fn allow_swap(&self, shown: &str, bytes: Option<u64>) -> Result<(), PolicyError> {
        let v = bytes.unwrap_or(u64::MAX);
        self.allow_at_most("swap", shown, v, &self.max_swap, "resources.max_swap")
    }

    pub fn allow_cpus(&self, shown: &str, n: u64) -> Result<(), PolicyError> {
        self.allow_at_most("cpus", shown, n, &self.max_cpus, "resources.max_cpus")
    }

    pub fn allow_numproc(&self, shown: &str, n: Option<u64>) -> Result<(), PolicyError> {
        let v = n.unwrap_or(u64::MAX);
        self.allow_at_most(
            "numproc",
            shown,
            v,
            &self.max_numproc,
            "resources.max_numproc",
        )
    }

    pub fn allow_diskspace(&self, shown: &str, bytes: u64) -> Result<(), PolicyError> {
        self.allow_at_most(
            "diskspace",
            shown,
            bytes,
            &self.max_diskspace,
            "resources.max_diskspace",
        )
    }

    pub fn allow_memguarantee(&self, shown: &str) -> Result<(), PolicyError> {
        if self.memguarantee.as_ref().is_none_or(|r| r.value) {
            return Ok(());
        }
        Err(self.refuse(
            "memguarantee",
            shown,
            "the host does not let VEs reserve memory",
            &self.memguarantee,
            "resources.memguarantee",
        ))
    }

    /// `io.vzrun.disk.image`: only an image beneath the policy's directory (checked here
    /// by name; the disk code opens it without following links out of that directory).
    pub fn image_dir(&self, image: &Path) -> Result<PathBuf, PolicyError> {
        let Some(r) = &self.images else {
            return Err(self.refuse(
                "disk.image",
                image.display(),
                "named images are not allowed",
                &self.images,
                "disk.images",
            ));
        };
        let rel = image.strip_prefix(&r.value).ok().filter(|rel| {
            !rel.as_os_str().is_empty()
                && rel.components().all(|c| matches!(c, Component::Normal(_)))
        });
        match rel {
            Some(_) => Ok(r.value.clone()),
            None => Err(self.refuse(
                "disk.image",
                image.display(),
                format!("not beneath {}", r.value.display()),
                &self.images,
                "disk.images",
            )),
        }
    }

    /// `io.vzrun.disk.image`: every directory from the images directory down to the
    /// image's is root's and nobody else may write in it (the images directory itself
    /// may be sticky, as /tmp is), so no other user can swap what the name leads to.
    /// The disk code checks the image file and its own directory again on what it opens.
    pub fn image_dirs_rooted(&self, top: &Path, image: &Path) -> Result<(), PolicyError> {
        super::disk::check_image_dirs(top, image).map_err(|why| {
            self.refuse(
                "disk.image",
                image.display(),
                format!(
                    "{why}; an image's directories must be owned by root and writable by \
                     nobody else"
                ),
                &self.images,
                "disk.images",
            )
        })
    }

    /// A host hook named by an annotation: listed in the policy.
    pub fn allow_hook(&self, key: &str, name: &str) -> Result<(), PolicyError> {
        let why = "not a hook name the host provides";
        self.allow_listed(key, name, &self.hook_names, "hooks.names", why)
    }

    /// Only where the host says so: the namespaced sysctls include ones Kubernetes counts
    /// as unsafe (kernel.shm*, kernel.msg*, kernel.sem, most of net.*), whose limits a VE
    /// could raise to use kernel memory the host never offered.
    pub fn allow_namespaced_sysctl(&self) -> Result<(), PolicyError> {
        if self.namespaced_sysctl.as_ref().is_some_and(|r| r.value) {
            return Ok(());
        }
        Err(self.refuse(
            "sysctl",
            "namespaced",
            "the host does not let VEs write their sysctls",
            &self.namespaced_sysctl,
            "sysctl.namespaced",
        ))
    }
}

impl Policy {
    /// The /proc view the host forces on every VE, if it does.
    pub fn proc_mode(&self) -> Option<ProcMode> {
        self.proc_mode.as_ref().map(|r| r.value)
    }

    /// `io.vzrun.proc` may not ask for the view the host forces against.
    pub fn allow_proc(&self, asked: ProcMode) -> Result<(), PolicyError> {
        match &self.proc_mode {
            Some(r) if r.value != asked => Err(self.refuse(
                "proc",
                asked.name(),
                format!("the host gives every VE the {} view", r.value.name()),
                &self.proc_mode,
                "proc.mode",
            )),
            _ => Ok(()),
        }
    }

    /// Checks every setting of a spec that reaches the host against the policy; the first
    /// one outside it is the error. `annotations` give the values as the user wrote them.
    pub fn check(
        &self,
        config: &VeConfig,
        annotations: &HashMap<String, String>,
    ) -> Result<(), PolicyError> {
        let shown = |key: &str| {
            annotations
                .get(&format!("{}{key}", super::PREFIX))
                .cloned()
                .unwrap_or_default()
        };
        if let Some(n) = &config.net {
            self.allow_ip_count(&shown("net.ip"), n.ips.len())?;
            for a in &n.ips {
                self.allow_ip("net.ip", a.ip)?;
            }
            if let Some(u) = &n.uplink {
                self.allow_uplink(u)?;
            }
            if let Some(b) = &n.bridge {
                self.allow_bridge(b)?;
            }
            if !n.mac_filter {
                self.allow_mac_filter_off()?;
            }
        }
        if let Some(r) = &config.resources {
            if let Some(ram) = r.ram {
                self.allow_ram(&shown("ram"), ram)?;
            }
            if let Some(swap) = r.swap {
                self.allow_swap(&shown("swap"), swap)?;
            }
            if let Some(c) = r.cpus {
                self.allow_cpus(&shown("cpus"), c as u64)?;
            }
            if let Some(n) = r.numproc {
                self.allow_numproc(&shown("numproc"), n)?;
            }
            if r.memguarantee.is_some() {
                self.allow_memguarantee(&shown("memguarantee"))?;
            }
        }
        if let Some(d) = &config.disk {
            self.allow_diskspace(&shown("diskspace"), d.space.hard)?;
            if let Some(img) = &d.image {
                let top = self.image_dir(img)?;
                self.image_dirs_rooted(&top, img)?;
            }
        }
        for (point, action) in config.actions.iter() {
            if let Action::Named(name) = action {
                self.allow_hook(&format!("hooks.{}", point.name()), name)?;
            }
        }
        if config.system.as_ref().is_some_and(|s| s.own_sysctls) {
            self.allow_namespaced_sysctl()?;
        }
        if let Some(m) = config.proc.asked {
            self.allow_proc(m)?;
        }
        Ok(())
    }
}

/// A name in a policy list: exact, or a prefix ending in `*` (`br-ve*`).
fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// A hook's name: a file name in the hooks directory, nothing that walks out of it.
pub fn valid_hook_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(text: &str) -> Result<Policy, PolicyError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("policy.toml");
        std::fs::write(&p, text).unwrap();
        Policy::load(&p)
    }

    #[test]
    fn no_file_allows_nothing_that_reaches_the_host() {
        let p = Policy::load(Path::new("/nonexistent/vzrun/policy.toml")).unwrap();
        let e = p
            .allow_ip("net.ip", "198.51.100.7".parse().unwrap())
            .unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("io.vzrun.net.ip=\"198.51.100.7\": outside the address pools"),
            "{text}"
        );
        assert!(
            text.contains("no host policy at /nonexistent/vzrun/policy.toml"),
            "{text}"
        );
        assert!(p.allow_uplink("eth0").is_err());
        assert!(p.allow_bridge("br0").is_err());
        assert!(p.allow_mac_filter_off().is_err());
        assert!(p.image_dir(Path::new("/var/lib/x.img")).is_err());
        assert!(p.allow_hook("hooks.post-restore", "notify").is_err());
        // Limits that only bound the VE itself stay the spec's without a policy.
        assert!(p.allow_ram("64G", Some(64 << 30)).is_ok());
        assert!(p.allow_namespaced_sysctl().is_err());
    }

    #[test]
    fn one_ve_takes_at_most_max_ips_addresses() {
        let open = policy("[net]\npools = [\"2001:db8::/32\"]\n").unwrap();
        assert!(open.allow_ip_count("", 16).is_ok());
        let e = open.allow_ip_count("x", 17).unwrap_err().to_string();
        assert!(
            e.contains("17 addresses, above the default maximum 16"),
            "{e}"
        );
        assert!(e.contains("no net.max_ips rule"), "{e}");
        let p = policy("[net]\npools = [\"2001:db8::/32\"]\nmax_ips = 2000\n").unwrap();
        assert!(p.allow_ip_count("", 2000).is_ok());
        let e = p.allow_ip_count("x", 2001).unwrap_err().to_string();
        assert!(e.contains("line 3: net.max_ips"), "{e}");
    }

    #[test]
    fn rules_are_quoted_with_their_line() {
        let p = policy("# hosts\n[net]\npools = [\"198.51.100.0/24\", \"2001:db8::/64\"]\n[resources]\nmax_ram = \"1G\"\n").unwrap();
        assert!(p
            .allow_ip("net.ip", "198.51.100.200".parse().unwrap())
            .is_ok());
        assert!(p.allow_ip("net.ip", "2001:db8::5".parse().unwrap()).is_ok());
        let e = p
            .allow_ip("net.ip", "203.0.113.1".parse().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("policy.toml line 3: net.pools"), "{e}");
        let e = p.allow_ram("2G", Some(2 << 30)).unwrap_err().to_string();
        assert!(
            e.starts_with("io.vzrun.ram=\"2G\": above the host's maximum 1073741824"),
            "{e}"
        );
        assert!(e.contains("line 5: resources.max_ram"), "{e}");
        assert!(p.allow_ram("unlimited", None).is_err());
    }

    #[test]
    fn bad_files_name_the_line() {
        let e = policy("[net]\npools = [\"10.0.0.0/33\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2: pools: \"10.0.0.0/33\""), "{e}");
        let e = policy("[net]\nmystery = 1\n").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("mystery"), "{e}");
        let e = policy("[disk]\nimages = \"relative\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("must be an absolute path"), "{e}");
    }

    #[test]
    fn images_only_beneath_the_directory() {
        let p = policy("[disk]\nimages = \"/srv/images\"\n").unwrap();
        assert!(p.image_dir(Path::new("/srv/images/a.img")).is_ok());
        assert!(p.image_dir(Path::new("/srv/images/../etc/passwd")).is_err());
        assert!(p.image_dir(Path::new("/srv/images")).is_err());
        assert!(p.image_dir(Path::new("/srv/other.img")).is_err());
    }

    #[test]
    fn proc_mode_forces_the_view() {
        use crate::ve::proc_view::ProcMode;
        let p = policy("[proc]\nmode = \"virtual\"\n").unwrap();
        assert_eq!(p.proc_mode(), Some(ProcMode::Virtual));
        assert!(p.allow_proc(ProcMode::Virtual).is_ok());
        let e = p.allow_proc(ProcMode::Host).unwrap_err().to_string();
        assert!(e.contains("proc.mode"), "{e}");
        let p = policy("[proc]\nmode = \"tenant\"\n").unwrap();
        assert_eq!(p.proc_mode(), None);
        assert!(p.allow_proc(ProcMode::Host).is_ok());
        assert!(policy("[proc]\nmode = \"lxcfs\"\n").is_err());
    }

    #[test]
    fn lists_take_prefixes() {
        let p =
            policy("[net]\nbridges = [\"br-ve*\", \"lan0\"]\n[hooks]\nnames = [\"backup-*\"]\n")
                .unwrap();
        assert!(p.allow_bridge("br-ve7").is_ok());
        assert!(p.allow_bridge("lan0").is_ok());
        assert!(p.allow_bridge("lan01").is_err());
        assert!(p.allow_hook("hooks.pre-checkpoint", "backup-db").is_ok());
        assert!(p.allow_hook("hooks.pre-checkpoint", "restore").is_err());
    }

    #[test]
    fn cidrs() {
        let c = Cidr::parse("198.51.100.0/24").unwrap();
        assert!(c.contains("198.51.100.255".parse().unwrap()));
        assert!(!c.contains("198.51.101.0".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("1.2.3.4".parse().unwrap()));
        assert!(!Cidr::parse("::/0")
            .unwrap()
            .contains("1.2.3.4".parse().unwrap()));
        assert!(Cidr::parse("x/8").is_none());
    }
}
