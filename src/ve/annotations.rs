//! The one place where `io.vzrun.` annotations are read. Each concern's keys are listed
//! here, so that a misspelt key is an error rather than a setting silently ignored.

use std::collections::HashMap;

use super::{VeError, PREFIX};

/// Keys vzrun understands, without the prefix.
const KNOWN: &[&str] = &[];

#[derive(Debug, Clone, Default)]
pub struct VeConfig {}

impl VeConfig {
    pub fn parse(annotations: &HashMap<String, String>) -> Result<Self, VeError> {
        let mut keys: Vec<&String> = annotations
            .keys()
            .filter(|k| k.starts_with(PREFIX))
            .collect();
        keys.sort();
        for key in keys {
            let name = &key[PREFIX.len()..];
            if !KNOWN.contains(&name) {
                return Err(VeError::Annotation {
                    key: key.clone(),
                    problem: "unknown vzrun annotation".to_string(),
                });
            }
        }
        Ok(VeConfig {})
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
        assert!(VeConfig::parse(&a).is_ok());
    }
}
