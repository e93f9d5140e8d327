//! The one place where `io.vzrun.` annotations are read. Each concern lists its keys, so
//! that a misspelt key is an error rather than a setting silently ignored.

use std::collections::HashMap;

use super::actions::{self, Actions};
use super::disk::{self, DiskConfig};
use super::net::{self, NetConfig};
use super::proc_view::{self, ProcConfig};
use super::resources::{self, ResourceConfig};
use super::system::config::{self as system, SystemConfig};
use super::{VeError, PREFIX};

/// Keys vzrun understands, without the prefix.
fn known(name: &str) -> bool {
    net::KEYS.contains(&name)
        || actions::KEYS.contains(&name)
        || resources::KEYS.contains(&name)
        || disk::KEYS.contains(&name)
        || system::KEYS.contains(&name)
        || proc_view::KEYS.contains(&name)
}

#[derive(Debug, Clone, Default)]
pub struct VeConfig {
    pub net: Option<NetConfig>,
    pub resources: Option<ResourceConfig>,
    pub actions: Actions,
    pub system: Option<SystemConfig>,
    pub disk: Option<DiskConfig>,
    pub proc: ProcConfig,
}

impl VeConfig {
    pub fn parse(annotations: &HashMap<String, String>) -> Result<Self, VeError> {
        let mut keys: Vec<&String> = annotations
            .keys()
            .filter(|k| k.starts_with(PREFIX))
            .collect();
        keys.sort();
        for key in keys {
            if !known(&key[PREFIX.len()..]) {
                return Err(VeError::Annotation {
                    key: key.clone(),
                    problem: "unknown vzrun annotation".to_string(),
                });
            }
        }
        Ok(VeConfig {
            net: NetConfig::parse(annotations)?,
            resources: ResourceConfig::parse(annotations)?,
            actions: Actions::parse(annotations)?,
            system: SystemConfig::parse(annotations)?,
            disk: DiskConfig::parse(annotations)?,
            proc: ProcConfig::parse(annotations)?,
        })
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.net.is_none()
            && self.resources.is_none()
            && self.disk.is_none()
            && self.system.is_none()
            && self.actions.is_empty()
            && self.proc.asked.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_vzrun_keys_are_named() {
        let mut a = HashMap::new();
        a.insert("io.vzrun.bogus".to_string(), "1".to_string());
        let err = VeConfig::parse(&a).unwrap_err().to_string();
        assert_eq!(err, "annotation io.vzrun.bogus: unknown vzrun annotation");
    }

    #[test]
    fn other_prefixes_pass_through() {
        let mut a = HashMap::new();
        a.insert(
            "org.opencontainers.image.title".to_string(),
            "x".to_string(),
        );
        a.insert("io.vzrunner".to_string(), "x".to_string());
        assert!(VeConfig::parse(&a).unwrap().is_empty());
    }

    #[test]
    fn network_keys_are_known() {
        let mut a = HashMap::new();
        a.insert("io.vzrun.net.ip".to_string(), "198.51.100.3".to_string());
        assert!(VeConfig::parse(&a).unwrap().net.is_some());
    }
}
