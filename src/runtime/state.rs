//! What vzrun keeps beside libcontainer's own state for each container, and the
//! runc-shaped state document that `state` and `list` print.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use libcontainer::container::{Container, ContainerStatus};
use serde::{Deserialize, Serialize};

use crate::ve::VeRecord;

/// The spec version vzrun implements, reported by `state`, `--version` and `features`.
pub const OCI_VERSION: &str = "1.2.1";

const RECORD_FILE: &str = "ve.json";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parse {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// Facts about a container that libcontainer does not keep: the bundle the user named
/// (libcontainer is handed a derived copy of the spec), and everything the VE layer set up
/// on the host, so that delete can take exactly that down again.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Record {
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    #[serde(default)]
    pub ve: VeRecord,
    /// CAP_SYS_ADMIN was lent to the process so it can install its seccomp filter.
    #[serde(default)]
    pub lent_sys_admin: bool,
    /// The process had no HOME and vzrun gave it the one its passwd names (see
    /// sys::passwd): an exec as another user gets that user's, as under runc.
    #[serde(default)]
    pub home_added: bool,
    /// When the container's init started ([`crate::sys::process::start_time`]): a pid
    /// in the state whose process started at another time is another process, and the
    /// container has stopped (runc keeps the same in its state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_start: Option<u64>,
}

impl Record {
    pub fn load(dir: &Path) -> Result<Self, StateError> {
        let path = dir.join(RECORD_FILE);
        let data = fs::read(&path).map_err(|source| StateError::Read {
            path: path.clone(),
            source,
        })?;
        serde_json::from_slice(&data).map_err(|source| StateError::Parse { path, source })
    }

    /// For the VE layer, which saves its part before each host object it makes: saves
    /// this record (as it is now) with the VE part it is given, in `dir`.
    pub fn ve_saver<'a>(
        &self,
        dir: &'a Path,
    ) -> impl FnMut(&VeRecord) -> Result<(), crate::ve::VeError> + 'a {
        let mut base = self.clone();
        move |ve| {
            base.ve = ve.clone();
            base.save(dir)
                .map_err(|e| crate::ve::VeError::Refused(format!("save the VE record: {e}")))
        }
    }

    /// Written to a temporary name and renamed, so a reader never sees half a record.
    pub fn save(&self, dir: &Path) -> Result<(), StateError> {
        let path = dir.join(RECORD_FILE);
        let tmp = dir.join(".ve.json.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&serde_json::to_vec(self).map_err(std::io::Error::other)?)?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|source| StateError::Write { path, source })
    }
}

/// The state document of the runtime spec, in runc's field order.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OciState {
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    pub status: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<HashMap<String, String>>,
}

pub fn status_word(status: ContainerStatus) -> &'static str {
    match status {
        ContainerStatus::Creating => "creating",
        ContainerStatus::Created => "created",
        ContainerStatus::Running => "running",
        ContainerStatus::Paused => "paused",
        ContainerStatus::Stopped => "stopped",
    }
}

/// RFC 3339 with nanoseconds, as Go's time.Time marshals it.
pub fn format_time(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
        .unwrap_or_else(|| "0001-01-01T00:00:00Z".to_string())
}

fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(uid.into())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| format!("#{uid}"))
}

/// libcontainer runs the poststart and poststop hooks in vzrun's process and hands them
/// its own state: the derived bundle directory (its bundle) and its spec version. While
/// a hook view is shown they carry what `state` reports instead, the caller's bundle and
/// vzrun's spec version; [`HookView::hide`] puts libcontainer's back, which it needs to
/// find the derived config.
pub struct HookView {
    derived: PathBuf,
    version: String,
}

impl HookView {
    /// None when vzrun has no record beside libcontainer's bundle (nothing to show).
    pub fn show(container: &mut Container) -> Option<HookView> {
        let record = Record::load(&container.state.bundle).ok()?;
        // runc leaves out annotations when there are none, as `state` does.
        if container
            .state
            .annotations
            .as_ref()
            .is_some_and(|a| a.is_empty())
        {
            container.state.annotations = None;
        }
        Some(HookView {
            derived: std::mem::replace(&mut container.state.bundle, record.bundle),
            version: std::mem::replace(&mut container.state.oci_version, OCI_VERSION.into()),
        })
    }

    /// Puts libcontainer's state back, on disk too: it saved the shown one meanwhile.
    pub fn hide(self, container: &mut Container) {
        container.state.bundle = self.derived;
        container.state.oci_version = self.version;
        let _ = container.save();
    }
}

/// `owner` is empty in `state` and the creator's name in `list`, as in runc.
pub fn oci_state(container: &Container, record: &Record, with_owner: bool) -> OciState {
    let status = container.status();
    let pid = match status {
        ContainerStatus::Stopped => 0,
        _ => container.pid().map(|p| p.as_raw()).unwrap_or(0),
    };
    OciState {
        oci_version: OCI_VERSION.to_string(),
        id: container.id().to_string(),
        pid,
        status: status_word(status).to_string(),
        bundle: record.bundle.clone(),
        rootfs: record.rootfs.clone(),
        created: format_time(container.created()),
        owner: if with_owner {
            container.state.creator.map(user_name).unwrap_or_default()
        } else {
            String::new()
        },
        annotations: container
            .state
            .annotations
            .clone()
            .filter(|a| !a.is_empty()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_replaces_atomically() {
        let dir = std::env::temp_dir().join(format!("vzrun-state-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let rec = Record {
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            ve: VeRecord::default(),
            lent_sys_admin: false,
            home_added: false,
            init_start: Some(42),
        };
        rec.save(&dir).unwrap();
        let back = Record::load(&dir).unwrap();
        assert_eq!(back.bundle, PathBuf::from("/b"));
        assert_eq!(back.init_start, Some(42));
        assert!(!dir.join(".ve.json.tmp").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_record_names_the_file() {
        let err = Record::load(Path::new("/nonexistent-vzrun")).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent-vzrun/ve.json"),
            "{err}"
        );
    }

    #[test]
    fn times_have_nanoseconds_and_zulu() {
        let t = DateTime::parse_from_rfc3339("2026-11-25T21:32:26.528541851Z")
            .unwrap()
            .to_utc();
        assert_eq!(format_time(Some(t)), "2026-11-25T21:32:26.528541851Z");
    }

    #[test]
    fn state_keys_follow_runc_order() {
        let s = OciState {
            oci_version: OCI_VERSION.into(),
            id: "a".into(),
            pid: 1,
            status: "running".into(),
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: "x".into(),
            owner: String::new(),
            annotations: None,
        };
        let text = serde_json::to_string(&s).unwrap();
        assert!(text.starts_with("{\"ociVersion\":"));
        assert!(!text.contains("annotations"));
        let keys: Vec<&str> = [
            "ociVersion",
            "id",
            "pid",
            "status",
            "bundle",
            "rootfs",
            "created",
            "owner",
        ]
        .to_vec();
        let mut last = 0;
        for k in keys {
            let at = text.find(&format!("\"{k}\"")).unwrap();
            assert!(at >= last);
            last = at;
        }
    }
}
