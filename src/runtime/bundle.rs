//! A bundle read and checked before anything exists on the host: its config.json (a
//! parse error names the JSON path of the bad field), its rootfs, the VE settings of its
//! annotations, and the cgroup path libcontainer will be handed.

use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use crate::runtime::error::{Error, Result};
use crate::runtime::executor::lend_sys_admin;
use crate::ve;

/// The largest config.json read: a spec is some kilobytes; this bounds what a caller can
/// make vzrun read and parse.
const MAX_CONFIG: u64 = 32 << 20;

/// Reads a bundle's config.json; a parse error names the JSON path of the bad field.
pub fn load_spec(bundle: &Path) -> Result<Spec> {
    read_spec(bundle).map(|(spec, _)| spec)
}

/// [`load_spec`] of the caller's bundle at create, run or restore, where runc warns of
/// the capability names it ignores (and goes on).
pub fn load_user_spec(bundle: &Path) -> Result<Spec> {
    let (spec, ignored) = read_spec(bundle)?;
    if !ignored.is_empty() {
        crate::logging::warn(&format!(
            "ignoring unknown or unavailable capabilities: [{}]",
            ignored.join(" ")
        ));
    }
    Ok(spec)
}

/// The spec in `bundle`, and the capability names it gave that are dropped (sorted, each
/// once, as runc lists them).
fn read_spec(bundle: &Path) -> Result<(Spec, Vec<String>)> {
    let path = bundle.join("config.json");
    if let Ok(m) = fs::metadata(&path) {
        if m.len() > MAX_CONFIG {
            return Err(Error::Config(format!(
                "config.json: {} bytes is over the {} MiB a spec may have",
                m.len(),
                MAX_CONFIG >> 20
            )));
        }
    }
    let data = match fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::Config(format!(
                "JSON specification file config.json not found in {}",
                bundle.display()
            )))
        }
        Err(e) => return Err(Error::io("read", path, e)),
    };
    let de = &mut serde_json::Deserializer::from_slice(&data);
    let named = |field: String, inner: String| {
        Error::Config(if field == "." {
            format!("config.json: {inner}")
        } else {
            format!("config.json: {field}: {inner}")
        })
    };
    match serde_path_to_error::deserialize::<_, Spec>(de) {
        Ok(spec) => Ok((spec, Vec::new())),
        // runc ignores capability names it does not know (a newer kernel's, a typo):
        // they are dropped and the spec read again.
        Err(e) if e.path().to_string().starts_with("process.capabilities.") => {
            let mut v: serde_json::Value = serde_json::from_slice(&data)
                .map_err(|_| named(e.path().to_string(), e.inner().to_string()))?;
            let ignored = drop_unknown_capabilities(&mut v);
            let spec = serde_path_to_error::deserialize::<_, Spec>(v)
                .map_err(|e| named(e.path().to_string(), e.inner().to_string()))?;
            Ok((spec, ignored))
        }
        Err(e) => Err(named(e.path().to_string(), e.inner().to_string())),
    }
}

/// Removes from each capability set of `process` the names oci-spec does not know, and
/// returns them sorted, each once.
fn drop_unknown_capabilities(spec: &mut serde_json::Value) -> Vec<String> {
    let mut dropped = std::collections::BTreeSet::new();
    let Some(sets) = spec
        .pointer_mut("/process/capabilities")
        .and_then(|c| c.as_object_mut())
    else {
        return Vec::new();
    };
    for set in sets.values_mut() {
        if let Some(names) = set.as_array_mut() {
            names.retain(|n| {
                let known =
                    serde_json::from_value::<oci_spec::runtime::Capability>(n.clone()).is_ok();
                if !known {
                    dropped.insert(n.as_str().map_or_else(|| n.to_string(), str::to_string));
                }
                known
            });
        }
    }
    dropped.into_iter().collect()
}

/// The cgroup path libcontainer gets: the spec's, a systemd `slice:prefix:name` turned
/// into the cgroupfs path systemd would use, or vzrun's own default; always made clean
/// under the hierarchy's root, as runc does.
/// A path that is the hierarchy's root is refused: the container would share the host's
/// root cgroup, its limits would be the host's, and killing "its" processes (`kill
/// --all`, `delete --force`) would kill every process on the host.
pub(crate) fn cgroup_path(spec: &Spec, id: &str, tag: &str, systemd: bool) -> Result<PathBuf> {
    let path = clean_cgroup_path(&given_cgroup_path(spec, id, tag, systemd));
    if path == Path::new("/") {
        let given = spec
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().as_ref())
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        return Err(Error::Config(format!(
            "linux.cgroupsPath: {given:?} is the root cgroup: a container needs a cgroup of its own"
        )));
    }
    Ok(path)
}

/// A cgroup path read lexically from `/`: `..` stops at the root. libcgroups joins the
/// path to each hierarchy's mount point and lets the kernel resolve it, so
/// `/a/../../x` would make `/sys/fs/cgroup/x` on the tmpfs that holds the hierarchies,
/// write the VE's pid into a plain file there, and kill vzrun itself when a later step
/// failed and "the cgroup's" processes were killed. runc reads it as `/x`.
fn clean_cgroup_path(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

fn given_cgroup_path(spec: &Spec, id: &str, tag: &str, systemd: bool) -> PathBuf {
    let given = spec.linux().as_ref().and_then(|l| l.cgroups_path().clone());
    match given {
        Some(p) if systemd && p.to_string_lossy().contains(':') => {
            let s = p.to_string_lossy().to_string();
            let parts: Vec<&str> = s.splitn(3, ':').collect();
            let slice = if parts[0].is_empty() {
                "system.slice"
            } else {
                parts[0]
            };
            let unit = match (parts.get(1), parts.get(2)) {
                (Some(prefix), Some(name)) if !prefix.is_empty() => {
                    format!("{prefix}-{name}.scope")
                }
                (_, Some(name)) => format!("{name}.scope"),
                _ => format!("vzrun-{id}.scope"),
            };
            PathBuf::from(format!("/{slice}/{unit}"))
        }
        Some(p) => p,
        None => PathBuf::from(format!("/vzrun-{tag}{id}")),
    }
}

/// A relative bind source names a path in the bundle (runc works from the bundle
/// directory): made absolute before libcontainer, which would resolve it against
/// vzrun's own working directory.
pub(crate) fn absolute_bind_sources(spec: &mut Spec, bundle: &Path) {
    let Some(mut mounts) = spec.mounts().clone() else {
        return;
    };
    for m in &mut mounts {
        let bind = m.typ().as_deref() == Some("bind")
            || m.options()
                .as_ref()
                .is_some_and(|o| o.iter().any(|x| x == "bind" || x == "rbind"));
        match m.source() {
            Some(src) if bind && src.is_relative() => {
                let abs = bundle.join(src);
                m.set_source(Some(abs));
            }
            _ => {}
        }
    }
    spec.set_mounts(Some(mounts));
}

/// Resolves `root.path` against the bundle and checks that it is a directory.
fn rootfs_of(spec: &Spec, bundle: &Path) -> Result<PathBuf> {
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| Error::Config("config.json: root: missing".into()))?;
    let path = if root.path().is_absolute() {
        root.path().clone()
    } else {
        bundle.join(root.path())
    };
    match fs::metadata(&path) {
        Ok(m) if m.is_dir() => Ok(path),
        Ok(_) => Err(Error::Config(format!(
            "config.json: root.path: rootfs ({}) is not a directory",
            path.display()
        ))),
        Err(_) => Err(Error::Config(format!(
            "config.json: root.path: rootfs ({}) does not exist",
            path.display()
        ))),
    }
}

/// runc creates a missing working directory inside the container; do the same on a
/// writable rootfs before libcontainer chdirs into it.
pub(crate) fn make_cwd(spec: &Spec, rootfs: &Path) {
    let readonly = spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false);
    let Some(cwd) = spec.process().as_ref().map(|p| p.cwd().clone()) else {
        return;
    };
    if readonly || !cwd.is_absolute() {
        return;
    }
    // Resolved inside the rootfs: a link in the image never makes a directory on the host.
    let _ = crate::sys::fs::mkdir_in_root(rootfs, &cwd);
}

/// Gives the process the HOME its passwd under `root` names when it has none, read by
/// vzrun (see sys::passwd), so that libcontainer never looks it up through the image's
/// NSS. Whether it added one.
pub(crate) fn give_home(p: &mut oci_spec::runtime::Process, root: &Path) -> bool {
    let mut env = p.env().clone().unwrap_or_default();
    let added = crate::sys::passwd::set_home(&mut env, root, p.user().uid());
    if added {
        p.set_env(Some(env));
    }
    added
}

/// A bundle read and checked, before anything exists on the host.
pub struct Bundle {
    pub bundle: PathBuf,
    pub spec: Spec,
    pub rootfs: PathBuf,
    pub ve_config: ve::VeConfig,
    pub lent: bool,
}

/// Reads and checks a bundle the same way for `create`, `run` and `restore`.
/// `linux.resources.unified` names cgroup v2 files: on a v1 or hybrid host runc refuses
/// it (in these words) rather than dropping limits the caller asked for.
fn refuse_unified_on_v1(spec: &Spec) -> Result<()> {
    let unified = spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.unified().as_ref())
        .is_some_and(|u| !u.is_empty());
    if unified && !crate::sys::cgroups::unified() {
        return Err(Error::Config(
            "invalid configuration: cannot use unified on cgroup v1".into(),
        ));
    }
    Ok(())
}

/// What runc refuses in a spec before anything starts: a relative working directory and
/// a namespace type given twice.
fn refuse_malformed(spec: &Spec) -> Result<()> {
    if let Some(p) = spec.process() {
        if !p.cwd().is_absolute() {
            return Err(Error::Config("Cwd must be an absolute path".into()));
        }
    }
    let mut seen = std::collections::HashSet::new();
    for ns in spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .into_iter()
        .flatten()
    {
        if !seen.insert(ns.typ()) {
            let path = ns
                .path()
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            // The spec's name of the type ("network"), not its short form.
            let kind = serde_json::to_value(ns.typ())
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            return Err(Error::Config(format!(
                "malformed spec file: duplicated ns {{\"{kind}\" \"{path}\"}}"
            )));
        }
    }
    Ok(())
}

/// A process label on a host without SELinux (no selinuxfs) cannot be applied: runc
/// refuses it in these words rather than running the process unlabelled.
pub fn refuse_selinux_label(label: Option<&str>) -> Result<()> {
    let enabled = Path::new("/sys/fs/selinux/enforce").exists();
    if label.is_some_and(|l| !l.is_empty()) && !enabled {
        return Err(Error::Config(
            "selinux label is specified in config, but selinux is disabled or not supported".into(),
        ));
    }
    Ok(())
}

/// proc and sysfs go only on a real directory of the rootfs: a symlink there would carry
/// the mount wherever it points (runc's check, in its words).
fn refuse_special_fs_on_links(spec: &Spec, rootfs: &Path) -> Result<()> {
    for m in spec.mounts().iter().flatten() {
        let Some(fs) = m.typ().as_deref().filter(|t| *t == "proc" || *t == "sysfs") else {
            continue;
        };
        let dest = m.destination();
        let on_host = rootfs.join(dest.strip_prefix("/").unwrap_or(dest));
        if let Ok(meta) = fs::symlink_metadata(&on_host) {
            if !meta.is_dir() {
                return Err(Error::Config(format!(
                    "error mounting {fs:?} to rootfs at {:?}: filesystem {fs:?} must be mounted on ordinary directory",
                    dest.display().to_string()
                )));
            }
        }
    }
    Ok(())
}

pub fn load(bundle: &Path, spec: Option<Spec>) -> Result<Bundle> {
    let bundle = fs::canonicalize(bundle).map_err(|e| Error::io("bundle", bundle, e))?;
    let mut spec = match spec {
        Some(s) => s,
        None => load_user_spec(&bundle)?,
    };
    if spec.process().is_none() {
        return Err(Error::Config("config.json: process: missing".into()));
    }
    refuse_unified_on_v1(&spec)?;
    refuse_malformed(&spec)?;
    refuse_selinux_label(
        spec.process()
            .as_ref()
            .and_then(|p| p.selinux_label().as_deref()),
    )?;
    let rootfs = rootfs_of(&spec, &bundle)?;
    refuse_special_fs_on_links(&spec, &rootfs)?;
    let ve_config = ve::config_from_spec(&spec)?;
    let has_seccomp = spec
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
        .is_some();
    let mut lent = false;
    if let Some(mut process) = spec.process().clone() {
        lent = lend_sys_admin(has_seccomp, &mut process);
        spec.set_process(Some(process));
    }
    Ok(Bundle {
        bundle,
        spec,
        rootfs,
        ve_config,
        lent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_capabilities_are_dropped_and_named_once_in_order() {
        let mut v = serde_json::json!({"process": {"capabilities": {
            "bounding": ["CAP_KILL", "CAP_ZZZ", "CAP_BOGUS"],
            "effective": ["CAP_ZZZ", "CAP_KILL"],
        }}});
        assert_eq!(drop_unknown_capabilities(&mut v), ["CAP_BOGUS", "CAP_ZZZ"]);
        assert_eq!(
            v["process"]["capabilities"]["bounding"],
            serde_json::json!(["CAP_KILL"])
        );
        assert_eq!(
            v["process"]["capabilities"]["effective"],
            serde_json::json!(["CAP_KILL"])
        );
    }

    fn spec_with_cgroup(path: Option<&str>) -> Spec {
        let mut spec = Spec::default();
        let mut linux = spec.linux().clone().unwrap();
        linux.set_cgroups_path(path.map(PathBuf::from));
        spec.set_linux(Some(linux));
        spec
    }

    #[test]
    fn default_cgroup_is_named_after_vzrun() {
        assert_eq!(
            cgroup_path(&spec_with_cgroup(None), "web1", "", false).unwrap(),
            PathBuf::from("/vzrun-web1")
        );
        assert_eq!(
            cgroup_path(&spec_with_cgroup(Some("/libpod_parent/x")), "x", "", false).unwrap(),
            PathBuf::from("/libpod_parent/x")
        );
    }

    #[test]
    fn cgroup_paths_stay_under_the_hierarchy_root_as_runc_reads_them() {
        for (given, want) in [
            ("/a/../../vzt-esc", "/vzt-esc"),
            ("../../../sys/x", "/sys/x"),
            ("k8s.io/./abc", "/k8s.io/abc"),
            ("/kubepods//pod1/", "/kubepods/pod1"),
        ] {
            assert_eq!(
                cgroup_path(&spec_with_cgroup(Some(given)), "x", "", false).unwrap(),
                PathBuf::from(want),
                "{given}"
            );
        }
        for root in ["/", "/..", "a/..", "/./"] {
            let err = cgroup_path(&spec_with_cgroup(Some(root)), "x", "", false).unwrap_err();
            assert!(
                err.to_string().contains("linux.cgroupsPath")
                    && err.to_string().contains("root cgroup"),
                "{root}: {err}"
            );
        }
    }

    #[test]
    fn systemd_paths_become_scopes() {
        assert_eq!(
            cgroup_path(
                &spec_with_cgroup(Some("system.slice:vzrun:abc")),
                "abc",
                "",
                true
            )
            .unwrap(),
            PathBuf::from("/system.slice/vzrun-abc.scope")
        );
    }

    #[test]
    fn bad_config_names_the_field() {
        let dir = std::env::temp_dir().join(format!("vzrun-spec-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("config.json"),
            r#"{"ociVersion":"1.0.2","process":{"cwd":"/","user":{"uid":"root","gid":0}}}"#,
        )
        .unwrap();
        let err = load_spec(&dir).unwrap_err().to_string();
        assert!(err.contains("process.user.uid"), "{err}");
        fs::write(dir.join("config.json"), "{").unwrap();
        assert!(load_spec(&dir)
            .unwrap_err()
            .to_string()
            .starts_with("config.json: "));
        fs::remove_file(dir.join("config.json")).unwrap();
        assert!(load_spec(&dir)
            .unwrap_err()
            .to_string()
            .contains("config.json not found"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
