//! Where containers live on disk, how their IDs are checked, and the per-ID lock that
//! keeps two calls on the same container from interleaving.
//!
//! Layout under the root (default /run/vzrun):
//! - `<id>/`           libcontainer's state (state.json, its config copy, notify socket)
//! - `.vzrun/<id>/`    vzrun's own: the derived config.json handed to libcontainer and
//!   `ve.json`, the record of everything the VE layer set up.
//!
//! The `.vzrun/<id>` directory is made first with mkdir(2), which is the atomic "this ID
//! is taken" step, and its flock is the per-ID lock.

use std::fs;
use std::path::{Path, PathBuf};

use libcontainer::container::{Container, ContainerStatus};

use crate::runtime::error::{Error, Result};
use crate::runtime::state::Record;
use crate::sys::fs::{private_dir, private_dir_new};
use crate::sys::lock::FileLock;

const VE_DIR: &str = ".vzrun";
/// The per-ID lock file inside `.vzrun/<id>`.
const LOCK_FILE: &str = "lock";

#[derive(Debug, Clone)]
pub struct Root {
    pub path: PathBuf,
}

/// Held for as long as a command works on one container.
pub struct Lock {
    lock: FileLock,
}

pub struct Loaded {
    pub container: Container,
    pub record: Record,
    pub _lock: Lock,
}

/// runc's rule: letters, digits, `_ + - .`, and not a path of its own.
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id != VE_DIR
        && id.len() <= 1024
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.'));
    if !ok {
        return Err(Error::InvalidId(id.to_string()));
    }
    Ok(())
}

impl Root {
    /// The state root at `path`, or the default one (runc's rule: /run/vzrun for root,
    /// the user's runtime directory otherwise).
    pub fn new(path: Option<PathBuf>) -> Self {
        Root {
            path: path.unwrap_or_else(default_root),
        }
    }

    /// The name part vzrun's default cgroup path carries for this root: nothing for the
    /// default root, a short hash of the path otherwise, so that two roots on one host
    /// (two "hosts" of a migration test, a private test root) never share a cgroup.
    pub fn cgroup_tag(&self) -> String {
        if self.path == default_root() {
            return String::new();
        }
        let h = crate::sys::hash::short(&[self.path.as_os_str().as_encoded_bytes()]);
        format!("{:08x}-", h & 0xffff_ffff)
    }

    pub fn ensure(&self) -> Result<()> {
        // runc's rule: the state root is root's alone (0700), and so is vzrun's part of it.
        let dir = self.path.join(VE_DIR);
        if !self.path.exists() {
            private_dir(&self.path).map_err(|e| Error::io("create state root", &self.path, e))?;
        }
        private_dir(&dir).map_err(|e| Error::io("create state root", dir, e))
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.path.join(id)
    }

    pub fn ve_dir(&self, id: &str) -> PathBuf {
        self.path.join(VE_DIR).join(id)
    }

    /// The ID's lock file: every fork of the create that claimed the ID holds it open.
    pub fn lock_file(&self, id: &str) -> PathBuf {
        self.ve_dir(id).join(LOCK_FILE)
    }

    /// Claims a new ID: fails with runc's words when it is taken.
    pub fn claim(&self, id: &str) -> Result<Lock> {
        validate_id(id)?;
        self.ensure()?;
        let dir = self.ve_dir(id);
        if self.container_dir(id).exists() {
            return Err(Error::Exists);
        }
        match private_dir_new(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(Error::Exists),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // A concurrent delete of the last container removed `.vzrun` between our
                // create_dir_all and mkdir: make it again once.
                self.ensure()?;
                private_dir_new(&dir).map_err(|e| Error::io("create", &dir, e))?;
            }
            Err(e) => return Err(Error::io("create", dir, e)),
        }
        lock_dir(&dir, true)
    }

    /// Locks an existing container, waiting for any other call on it to finish.
    pub fn lock(&self, id: &str) -> Result<Lock> {
        validate_id(id)?;
        let dir = self.ve_dir(id);
        let lock = lock_dir(&dir, false).map_err(|_| Error::NotExist)?;
        // The holder before us may have been a delete: the directory is then unlinked.
        if lock.lock.is_gone() {
            return Err(Error::NotExist);
        }
        Ok(lock)
    }

    pub fn load(&self, id: &str) -> Result<Loaded> {
        let lock = self.lock(id)?;
        let (mut container, record) = self.read(id)?;
        // A vzrun killed while a poststart hook ran left the state the hook saw (see
        // HookView): libcontainer's bundle is put back before anything uses it.
        if container.state.bundle == record.bundle {
            if let Ok(derived) = fs::canonicalize(self.ve_dir(id)) {
                container.state.bundle = derived;
                container.save()?;
            }
        }
        Ok(Loaded {
            container,
            record,
            _lock: lock,
        })
    }

    /// Reads without locking; for listings, which must not wait on a busy container.
    pub fn read(&self, id: &str) -> Result<(Container, Record)> {
        let cdir = self.container_dir(id);
        if !cdir.join("state.json").exists() {
            return Err(Error::NotExist);
        }
        let mut container = Container::load(cdir)?;
        let record = Record::load(&self.ve_dir(id))?;
        // libcontainer takes any live process with the init's pid for the init; once
        // the init is gone its pid may be another process's (a kill, an exec, a delete
        // would reach that one). runc compares start times too.
        if let (Some(pid), true) = (
            container.pid(),
            container.status() != ContainerStatus::Stopped,
        ) {
            let same = match record.init_start {
                Some(start) => crate::sys::process::start_time(pid.as_raw()) == Some(start),
                // A record from before vzrun kept the start time: the init is at least
                // in the container's cgroup, where a process that took over its pid is
                // not.
                None => container
                    .spec()
                    .is_ok_and(|c| crate::sys::cgroups::holds(&c.cgroup_path, pid.as_raw())),
            };
            if !same {
                container.set_status(ContainerStatus::Stopped);
            }
        }
        Ok((container, record))
    }

    /// IDs of every container under this root, sorted.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = match fs::read_dir(self.path.join(VE_DIR)) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| self.container_dir(n).join("state.json").exists())
                .collect(),
            Err(_) => Vec::new(),
        };
        ids.sort();
        ids
    }

    /// Removes vzrun's directory for an ID, and `.vzrun` itself when it is the last one,
    /// so a host without containers keeps an empty root.
    pub fn release(&self, id: &str) {
        let dir = self.ve_dir(id);
        crate::ve::checkpoint::detach_leftover_mounts(&dir);
        let _ = fs::remove_dir_all(dir);
        let _ = fs::remove_dir(self.path.join(VE_DIR));
    }
}

fn default_root() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/run/vzrun");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => Path::new(&d).join("vzrun"),
        _ => PathBuf::from(format!("/run/user/{}/vzrun", nix::unistd::geteuid())),
    }
}

/// The ID's lock: a record lock on `lock` in its directory, so that nothing vzrun starts
/// (the init waiting for `start`, an exec, a hook) inherits it.
fn lock_dir(dir: &Path, create: bool) -> Result<Lock> {
    let path = dir.join(LOCK_FILE);
    let lock = FileLock::exclusive(&path, create).map_err(|e| Error::io("lock", &path, e))?;
    Ok(Lock { lock })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_runc_rules() {
        for ok in ["a", "web1", "A_b+c-d.e", "x.y"] {
            assert!(validate_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "../x", "a b", ".vzrun", "é"] {
            let err = validate_id(bad).unwrap_err().to_string();
            assert!(err.contains("invalid container ID format"), "{bad}: {err}");
        }
    }

    #[test]
    fn claim_is_exclusive_and_release_leaves_nothing() {
        let tmp = std::env::temp_dir().join(format!("vzrun-root-test-{}", std::process::id()));
        let root = Root { path: tmp.clone() };
        let lock = root.claim("c1").unwrap();
        let err = root.claim("c1").err().unwrap().to_string();
        assert!(err.contains("already exists"), "{err}");
        drop(lock);
        root.release("c1");
        assert!(!tmp.join(VE_DIR).exists());
        assert!(root.lock("c1").is_err());
        fs::remove_dir_all(&tmp).unwrap();
    }
}
