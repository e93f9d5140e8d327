//! The one place where `io.vzrun.` annotations are read. Every key must be in the key
//! table (`keys.rs`), so that a misspelt key is an error, with the nearest valid key,
//! rather than a setting silently ignored.

use std::collections::HashMap;

use super::actions::Actions;
use super::disk::DiskConfig;
use super::keys;
use super::net::NetConfig;
use super::proc_view::ProcConfig;
use super::resources::ResourceConfig;
use super::system::config::SystemConfig;
use super::{VeError, PREFIX};

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
        let mut given: Vec<&String> = annotations
            .keys()
            .filter(|k| k.starts_with(PREFIX))
            .collect();
        given.sort();
        for key in given {
            let name = &key[PREFIX.len()..];
            if keys::find(name).is_none() {
                // The message without a hint stays as containerd and podman users see it.
                let hint = keys::nearest(name)
                    .map(|k| format!("; did you mean {}?", keys::full(k)))
                    .unwrap_or_default();
                return Err(VeError::Annotation {
                    key: key.clone(),
                    problem: format!("unknown vzrun annotation{hint}"),
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
        a.clear();
        a.insert("io.vzrun.rma".to_string(), "1G".to_string());
        let err = VeConfig::parse(&a).unwrap_err().to_string();
        assert_eq!(
            err,
            "annotation io.vzrun.rma: unknown vzrun annotation; did you mean io.vzrun.ram?"
        );
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
