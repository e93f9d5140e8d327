//! A system VE's annotation (`io.vzrun.sysctl`) and the capabilities a system VE has;
//! read by the annotation parser, so it imports nothing of the lifecycle.

use std::collections::HashMap;

use oci_spec::runtime::Capability;
use serde_json::json;

use crate::ve::{VeError, PREFIX};

/// runc's default capability set for containers, plus what a system needs: network
/// administration and raw sockets (only ever in the VE's own network namespace), and
/// reboot(2), which in a PID namespace only ends that namespace's init.
pub const SYSTEM_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
    "CAP_NET_ADMIN",
    "CAP_SYS_BOOT",
];

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SystemConfig {
    pub own_sysctls: bool,
}

impl SystemConfig {
    pub fn parse(a: &HashMap<String, String>) -> Result<Option<Self>, VeError> {
        let key = format!("{PREFIX}sysctl");
        match a.get(&key).map(String::as_str) {
            None => Ok(None),
            Some("namespaced") => Ok(Some(SystemConfig { own_sysctls: true })),
            Some(other) => Err(VeError::Annotation {
                key,
                problem: format!("{other:?}: the only value is \"namespaced\""),
            }),
        }
    }
}

/// `NAME:on|off` as vzctl's --capability takes it; NAME with or without CAP_.
pub fn parse_capability(text: &str) -> Result<(String, bool), String> {
    let (name, state) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?}: expected NAME:on or NAME:off"))?;
    let on = match state {
        "on" => true,
        "off" => false,
        _ => return Err(format!("{text:?}: expected NAME:on or NAME:off")),
    };
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    serde_json::from_value::<Capability>(json!(full))
        .map_err(|_| format!("{name:?} is not a capability"))?;
    Ok((full, on))
}
