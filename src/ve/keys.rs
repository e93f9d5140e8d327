//! The one table of `io.vzrun.*` annotation keys: name, concern, type, range and default.
//! `annotations` rejects keys not in it (suggesting the nearest one), each concern's
//! parser finds its keys here and the resource parser takes its numeric ranges from it,
//! and `vzrun ve keys` prints it, so the documentation cannot drift from the parser.

use super::PREFIX;

/// Which parser reads a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concern {
    Net,
    Resources,
    Disk,
    Actions,
    System,
    Proc,
}

impl Concern {
    pub fn name(self) -> &'static str {
        match self {
            Concern::Net => "net",
            Concern::Resources => "resources",
            Concern::Disk => "disk",
            Concern::Actions => "actions",
            Concern::System => "system",
            Concern::Proc => "proc",
        }
    }
}

/// The upper end of a whole-number range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Max {
    Fixed(u64),
    /// This many per CPU of the host (`cpulimit`: 100 per CPU).
    PerHostCpu(u64),
}

/// What a key's value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A whole number in `min..=max`; `unlimited` too when `unlimited` is set.
    Int { min: u64, max: Max, unlimited: bool },
    /// A size with an optional K/M/G/T suffix, or `unlimited`.
    Size,
    /// One of these words.
    Choice(&'static [&'static str]),
    /// Free-form, checked by the concern's parser; the string says what it takes.
    Text(&'static str),
}

#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// Without the `io.vzrun.` prefix.
    pub name: &'static str,
    pub concern: Concern,
    pub kind: Kind,
    /// What holds when the key is absent.
    pub default: &'static str,
    pub about: &'static str,
}

const fn int(min: u64, max: u64) -> Kind {
    Kind::Int {
        min,
        max: Max::Fixed(max),
        unlimited: false,
    }
}

const UNSET: &str = "unset: the spec's value";

pub const KEYS: &[Key] = &[
    Key {
        name: "net.mode",
        concern: Concern::Net,
        kind: Kind::Choice(&["venet", "veth"]),
        default: "venet",
        about: "routed venet0 link, or eth0 on a host bridge",
    },
    Key {
        name: "net.ip",
        concern: Concern::Net,
        kind: Kind::Text("IPv4/IPv6 addresses, comma-separated (veth: with /prefix)"),
        default: "none: no network set up",
        about: "the VE's addresses, from the policy's pools",
    },
    Key {
        name: "net.bridge",
        concern: Concern::Net,
        kind: Kind::Text("interface name"),
        default: "none (veth needs one)",
        about: "host bridge of a veth VE, as the policy allows",
    },
    Key {
        name: "net.mac",
        concern: Concern::Net,
        kind: Kind::Text("MAC address, unicast"),
        default: "generated",
        about: "eth0's MAC (veth)",
    },
    Key {
        name: "net.mac_filter",
        concern: Concern::Net,
        kind: Kind::Choice(&["on", "off"]),
        default: "on",
        about: "drop frames with another source MAC (veth)",
    },
    Key {
        name: "net.gateway",
        concern: Concern::Net,
        kind: Kind::Text("IP address"),
        default: "none",
        about: "default gateway (veth)",
    },
    Key {
        name: "net.routes",
        concern: Concern::Net,
        kind: Kind::Text("`ip route` words, ;-separated"),
        default: "none",
        about: "extra routes inside the VE",
    },
    Key {
        name: "net.rules",
        concern: Concern::Net,
        kind: Kind::Text("`ip rule` words, ;-separated"),
        default: "none",
        about: "policy routing rules inside the VE",
    },
    Key {
        name: "net.nameserver",
        concern: Concern::Net,
        kind: Kind::Text("IP addresses, comma-separated, or inherit"),
        default: "the image's resolv.conf",
        about: "name servers in the VE's resolv.conf",
    },
    Key {
        name: "net.searchdomain",
        concern: Concern::Net,
        kind: Kind::Text("domains, comma-separated, or inherit"),
        default: "the image's resolv.conf",
        about: "search domains in the VE's resolv.conf",
    },
    Key {
        name: "net.uplink",
        concern: Concern::Net,
        kind: Kind::Text("interface name"),
        default: "none: no proxy ARP/NDP",
        about: "host device that answers ARP/NDP for a venet VE's addresses",
    },
    Key {
        name: "cpuunits",
        concern: Concern::Resources,
        kind: int(8, 500_000),
        default: UNSET,
        about: "relative CPU weight",
    },
    Key {
        name: "cpulimit",
        concern: Concern::Resources,
        kind: Kind::Int {
            min: 1,
            max: Max::PerHostCpu(100),
            unlimited: false,
        },
        default: UNSET,
        about: "CPU limit in percent of one CPU",
    },
    Key {
        name: "cpus",
        concern: Concern::Resources,
        kind: Kind::Int {
            min: 1,
            max: Max::PerHostCpu(1),
            unlimited: false,
        },
        default: UNSET,
        about: "CPUs the VE may use and sees",
    },
    Key {
        name: "ram",
        concern: Concern::Resources,
        kind: Kind::Size,
        default: UNSET,
        about: "memory limit",
    },
    Key {
        name: "swap",
        concern: Concern::Resources,
        kind: Kind::Size,
        default: UNSET,
        about: "swap on top of ram (needs ram)",
    },
    Key {
        name: "memguarantee",
        concern: Concern::Resources,
        kind: int(0, 100),
        default: UNSET,
        about: "guaranteed memory, percent of a limited ram",
    },
    Key {
        name: "numproc",
        concern: Concern::Resources,
        kind: Kind::Size,
        default: UNSET,
        about: "processes and threads",
    },
    Key {
        name: "numfile",
        concern: Concern::Resources,
        kind: int(16, 1 << 20),
        default: UNSET,
        about: "open files per process",
    },
    Key {
        name: "ioprio",
        concern: Concern::Resources,
        kind: int(0, 7),
        default: UNSET,
        about: "I/O priority (higher gets more)",
    },
    Key {
        name: "iolimit",
        concern: Concern::Resources,
        kind: Kind::Size,
        default: "unlimited",
        about: "I/O bytes per second, read and write each",
    },
    Key {
        name: "iopslimit",
        concern: Concern::Resources,
        kind: Kind::Int {
            min: 1,
            max: Max::Fixed(u32::MAX as u64),
            unlimited: true,
        },
        default: "unlimited",
        about: "I/O operations per second, read and write each",
    },
    Key {
        name: "diskspace",
        concern: Concern::Disk,
        kind: Kind::Text("size, or soft:hard sizes (at least 16M)"),
        default: "none: no private area",
        about: "size of the VE's private area",
    },
    Key {
        name: "diskinodes",
        concern: Concern::Disk,
        kind: Kind::Text("number, or soft:hard numbers (up to 2^32; needs diskspace)"),
        default: "the filesystem's own",
        about: "inodes of the private area",
    },
    Key {
        name: "disk.image",
        concern: Concern::Disk,
        kind: Kind::Text("absolute path under the policy's images directory"),
        default: "a private image removed with the VE",
        about: "a named image that outlives the VE (needs diskspace)",
    },
    Key {
        name: "hooks.pre-checkpoint",
        concern: Concern::Actions,
        kind: Kind::Text("NAME of a program in hooks.d/, or ve:CMD"),
        default: "none",
        about: "action script before a checkpoint",
    },
    Key {
        name: "hooks.post-checkpoint",
        concern: Concern::Actions,
        kind: Kind::Text("NAME of a program in hooks.d/, or ve:CMD"),
        default: "none",
        about: "action script after a checkpoint",
    },
    Key {
        name: "hooks.pre-restore",
        concern: Concern::Actions,
        kind: Kind::Text("NAME of a program in hooks.d/, or ve:CMD"),
        default: "none",
        about: "action script before a restore",
    },
    Key {
        name: "hooks.post-restore",
        concern: Concern::Actions,
        kind: Kind::Text("NAME of a program in hooks.d/, or ve:CMD"),
        default: "none",
        about: "action script after a restore",
    },
    Key {
        name: "hooks.timeout",
        concern: Concern::Actions,
        kind: int(1, 86_400),
        default: "60",
        about: "seconds an action script may run",
    },
    Key {
        name: "sysctl",
        concern: Concern::System,
        kind: Kind::Choice(&["namespaced"]),
        default: "unset: /proc/sys read-only",
        about: "writable sysctls of the VE's own namespaces",
    },
    Key {
        name: "proc",
        concern: Concern::Proc,
        kind: Kind::Choice(&["virtual", "host"]),
        default: "host (system VEs: virtual)",
        about: "/proc files from LXCFS, or the host's",
    },
];

/// The key named `name` (without the prefix).
pub fn find(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

/// The keys one concern reads.
pub fn of(concern: Concern) -> impl Iterator<Item = &'static Key> {
    KEYS.iter().filter(move |k| k.concern == concern)
}

/// The whole-number range of `name` on this host, for its parser.
pub fn int_range(name: &str) -> Option<(u64, u64)> {
    match find(name)?.kind {
        Kind::Int { min, max, .. } => Some((min, resolve(max))),
        _ => None,
    }
}

fn resolve(max: Max) -> u64 {
    match max {
        Max::Fixed(n) => n,
        Max::PerHostCpu(n) => n * super::resources::host_cpus(),
    }
}

impl Kind {
    /// The type column of `ve keys`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Kind::Int { .. } => "integer",
            Kind::Size => "size",
            Kind::Choice(_) => "choice",
            Kind::Text(_) => "text",
        }
    }

    /// The range column of `ve keys`, with this host's CPU count filled in.
    pub fn range(&self) -> String {
        match self {
            Kind::Int {
                min,
                max,
                unlimited,
            } => {
                let per_cpu = match max {
                    Max::PerHostCpu(n) if *n > 1 => format!(" ({n} per host CPU)"),
                    Max::PerHostCpu(_) => " (host CPUs)".to_string(),
                    Max::Fixed(_) => String::new(),
                };
                let unl = if *unlimited { " or unlimited" } else { "" };
                format!("{min}..{}{per_cpu}{unl}", resolve(*max))
            }
            Kind::Size => "number with K/M/G/T, or unlimited".to_string(),
            Kind::Choice(words) => words.join(" | "),
            Kind::Text(what) => what.to_string(),
        }
    }
}

/// The known key nearest to an unknown `name` (both without the prefix), when one is
/// close enough to be a likely misspelling: at most a third of its letters edited, or
/// `name` is a known key's last dotted part (`ip` for `net.ip`).
pub fn nearest(name: &str) -> Option<&'static str> {
    if let Some(k) = KEYS
        .iter()
        .find(|k| k.name.rsplit('.').next() == Some(name) && k.name != name)
    {
        return Some(k.name);
    }
    KEYS.iter()
        .map(|k| (edit_distance(name, k.name), k.name))
        .filter(|(d, k)| *d > 0 && *d <= (k.len().max(name.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Edits between two names: insertions, deletions, substitutions and swaps of two
/// neighbouring letters (`rma` is one edit from `ram`), the optimal string alignment
/// distance.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    // d[i][j]: edits between the first i letters of a and the first j of b.
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// `io.vzrun.NAME`, as users write it.
pub fn full(name: &str) -> String {
    format!("{PREFIX}{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_ranges_sane() {
        for (i, k) in KEYS.iter().enumerate() {
            assert!(
                KEYS[i + 1..].iter().all(|o| o.name != k.name),
                "{} twice",
                k.name
            );
            if let Some((lo, hi)) = int_range(k.name) {
                assert!(lo <= hi, "{}", k.name);
            }
        }
    }

    #[test]
    fn misspellings_find_their_key() {
        assert_eq!(nearest("rma"), Some("ram"));
        assert_eq!(nearest("cpuunit"), Some("cpuunits"));
        assert_eq!(nearest("net.nameservers"), Some("net.nameserver"));
        assert_eq!(nearest("ip"), Some("net.ip"));
        assert_eq!(nearest("hooks.precheckpoint"), Some("hooks.pre-checkpoint"));
        assert_eq!(nearest("bogus"), None);
        assert_eq!(nearest("completely.unrelated.words"), None);
    }

    #[test]
    fn ranges_read_as_documented() {
        assert_eq!(find("cpuunits").unwrap().kind.range(), "8..500000");
        assert_eq!(
            find("iopslimit").unwrap().kind.range(),
            "1..4294967295 or unlimited"
        );
    }
}
