//! `vzrun spec`: write a starting config.json, like runc's.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use oci_spec::runtime::Spec;

use crate::cli::GlobalOpts;

#[derive(clap::Args, Debug)]
#[command(about = "Create a new specification file")]
#[command(after_help = "Example:\n  vzrun spec --bundle /srv/bundles/web")]
pub struct Args {
    /// Path to the root of the bundle directory
    #[arg(short = 'b', long, default_value = ".")]
    pub bundle: PathBuf,
}

pub fn generate(rootless: bool) -> Result<Spec> {
    let mut spec = if rootless {
        Spec::rootless(
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        )
    } else {
        Spec::default()
    };
    if let Some(mut p) = spec.process().clone() {
        p.set_terminal(Some(true));
        p.set_args(Some(vec!["sh".to_string()]));
        spec.set_process(Some(p));
    }
    Ok(spec)
}

/// The config runc 1.1.5 writes, from oci-spec's default (youki's): capabilities sorted
/// and without an inheritable set, the default-deny device rule, no cgroup namespace, no
/// empty annotations, and the rootless /sys bind's `rbind` first. Only the hostname is
/// vzrun's own.
fn shape_like_runc(doc: &mut serde_json::Value) {
    use serde_json::{json, Value};
    doc["hostname"] = json!("vzrun");
    if doc["annotations"].as_object().is_some_and(|a| a.is_empty()) {
        if let Some(m) = doc.as_object_mut() {
            m.remove("annotations");
        }
    }
    if let Some(caps) = doc
        .pointer_mut("/process/capabilities")
        .and_then(Value::as_object_mut)
    {
        caps.remove("inheritable");
        for set in caps.values_mut() {
            if let Some(names) = set.as_array_mut() {
                names.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
            }
        }
    }
    let rootless = doc["linux"]["uidMappings"].is_array();
    if let Some(nss) = doc
        .pointer_mut("/linux/namespaces")
        .and_then(Value::as_array_mut)
    {
        nss.retain(|n| n["type"] != "cgroup");
    }
    if !rootless {
        doc["linux"]["resources"] = json!({"devices": [{"allow": false, "access": "rwm"}]});
    }
    for m in doc["mounts"].as_array_mut().into_iter().flatten() {
        if let Some(opts) = m.get_mut("options").and_then(Value::as_array_mut) {
            if let Some(i) = opts.iter().position(|o| o == "rbind") {
                let rbind = opts.remove(i);
                opts.insert(0, rbind);
            }
        }
    }
}

/// `spec --rootless` shares its name with the global flag; clap parses it as the global.
pub fn run(args: Args, global: &GlobalOpts) -> Result<i32> {
    let rootless = matches!(global.rootless.as_deref(), Some("true") | Some("1"));
    let path = args.bundle.join("config.json");
    if path.exists() {
        bail!("File config.json exists. Remove it first");
    }
    if !args.bundle.is_dir() {
        bail!("bundle {}: not a directory", args.bundle.display());
    }
    let spec = generate(rootless)?;
    let mut doc = serde_json::to_value(&spec).map_err(|e| anyhow!("encode spec: {e}"))?;
    shape_like_runc(&mut doc);
    let text = serde_json::to_string_pretty(&doc).map_err(|e| anyhow!("encode spec: {e}"))?;
    std::fs::write(&path, text + "\n").with_context(|| format!("write {}", path.display()))?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn default_spec_runs_sh_on_a_terminal() {
        let s = super::generate(false).unwrap();
        let p = s.process().as_ref().unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &vec!["sh".to_string()]);
        assert_eq!(p.terminal(), Some(true));
        assert_eq!(s.root().as_ref().unwrap().path().to_str(), Some("rootfs"));
        let r = super::generate(true).unwrap();
        assert!(r.linux().as_ref().unwrap().uid_mappings().is_some());
    }
}
