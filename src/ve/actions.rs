//! Action scripts around checkpoint and restore (vzctl's `*.chkpnt`/`*.restore` scripts):
//! `io.vzrun.hooks.{pre,post}-{checkpoint,restore}`. A value is a host command, run like
//! an OCI hook (state JSON on stdin, a cleared environment, a timeout), or `ve:CMD`, run
//! inside the VE through `vzrun exec`.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{VeError, PREFIX};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Point {
    PreCheckpoint,
    PostCheckpoint,
    PreRestore,
    PostRestore,
}

impl Point {
    pub fn name(self) -> &'static str {
        match self {
            Point::PreCheckpoint => "pre-checkpoint",
            Point::PostCheckpoint => "post-checkpoint",
            Point::PreRestore => "pre-restore",
            Point::PostRestore => "post-restore",
        }
    }

    const ALL: [Point; 4] = [
        Point::PreCheckpoint,
        Point::PostCheckpoint,
        Point::PreRestore,
        Point::PostRestore,
    ];
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// An administrator's program, `<hooks dir>/NAME`: annotations never carry a host
    /// command line, only the name of a program the host provides.
    Named(String),
    /// Run inside the VE.
    Ve(String),
}

#[derive(Debug, Clone, Default)]
pub struct Actions {
    map: HashMap<Point, Action>,
    timeout: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("action script {point}: {problem}")]
    Failed {
        point: &'static str,
        problem: String,
    },
}

/// Where and how to run one action.
pub struct Runner<'a> {
    /// The administrator's hook programs (`hooks.d` beside the host policy).
    pub hooks_dir: &'a Path,
    /// The vzrun binary and global flags, for `ve:` commands (`vzrun --root R exec ID`).
    pub vzrun: &'a Path,
    pub root: &'a Path,
    pub id: &'a str,
    /// The OCI state document the script reads on stdin.
    pub state: String,
}

impl Actions {
    pub fn parse(a: &HashMap<String, String>) -> Result<Self, VeError> {
        let mut out = Actions::default();
        for p in Point::ALL {
            let key = format!("{PREFIX}hooks.{}", p.name());
            let Some(v) = a.get(&key) else { continue };
            let bad = |problem: &str| VeError::Annotation {
                key: key.clone(),
                problem: problem.to_string(),
            };
            let v = v.trim();
            let action = match v.strip_prefix("ve:") {
                Some(cmd) if cmd.trim().is_empty() => return Err(bad("empty command after ve:")),
                Some(_) if p == Point::PreRestore => {
                    return Err(bad(
                        "a ve: command cannot run before restore (the VE does not exist yet)",
                    ))
                }
                Some(cmd) => Action::Ve(cmd.trim().to_string()),
                None if v.is_empty() => return Err(bad("empty command")),
                None if !super::policy::valid_hook_name(v) => {
                    return Err(bad(&format!(
                        "{v:?} is not a hook name: an annotation runs ve:CMD inside the VE, or names a program the host provides in its hooks directory"
                    )))
                }
                None => Action::Named(v.to_string()),
            };
            out.map.insert(p, action);
        }
        let tkey = format!("{PREFIX}hooks.timeout");
        if let Some(t) = a.get(&tkey) {
            let (lo, hi) = super::keys::int_range("hooks.timeout").unwrap_or((1, 86_400));
            let secs: u64 = t
                .trim()
                .parse()
                .ok()
                .filter(|s| (lo..=hi).contains(s))
                .ok_or_else(|| VeError::Annotation {
                    key: tkey.clone(),
                    problem: format!("{t:?} is not a number of seconds in {lo}..{hi}"),
                })?;
            out.timeout = Some(Duration::from_secs(secs));
        }
        Ok(out)
    }

    /// Every action there is, with its point.
    pub fn iter(&self) -> impl Iterator<Item = (Point, &Action)> {
        self.map.iter().map(|(p, a)| (*p, a))
    }

    pub fn get(&self, p: Point) -> Option<&Action> {
        self.map.get(&p)
    }

    /// At most `max` for each action, whatever the VE's own timeout says: a migration's
    /// destination must answer its source within a bound the VE does not set.
    pub fn cap(&mut self, max: Duration) {
        self.timeout = Some(self.timeout.unwrap_or(DEFAULT_TIMEOUT).min(max));
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Runs the action for `p`, if any; an exit status other than 0, a signal or the
    /// timeout is an error naming the point.
    pub fn run(&self, p: Point, r: &Runner) -> Result<(), ActionError> {
        let Some(action) = self.map.get(&p) else {
            return Ok(());
        };
        let _step = tracing::debug_span!("action script", point = p.name(), id = r.id).entered();
        let fail = |problem: String| ActionError::Failed {
            point: p.name(),
            problem,
        };
        let mut cmd = match action {
            Action::Named(name) => {
                let prog = r.hooks_dir.join(name);
                check_hook(&prog).map_err(fail)?;
                Command::new(prog)
            }
            Action::Ve(c) => {
                let mut cmd = Command::new(r.vzrun);
                cmd.arg("--root")
                    .arg(r.root)
                    .arg("exec")
                    .arg(r.id)
                    .arg("/bin/sh")
                    .arg("-c")
                    .arg(c);
                cmd
            }
        };
        cmd.env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("VZRUN_ACTION", p.name())
            .env("VZRUN_ID", r.id)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().map_err(|e| fail(format!("start: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            // Written beside the wait, not before it: the state carries the tenant's
            // annotations, and a state larger than the pipe would otherwise block here,
            // before the timeout counts, for a script that never reads. The write ends
            // with the script (a broken pipe); a script that does not read is fine.
            let state = r.state.to_string();
            std::thread::spawn(move || {
                let _ = stdin.write_all(state.as_bytes());
            });
        }
        let limit = self.timeout.unwrap_or(DEFAULT_TIMEOUT);
        let start = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(st)) if st.success() => return Ok(()),
                Ok(Some(st)) => return Err(fail(format!("failed: {st}"))),
                Ok(None) if start.elapsed() >= limit => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(fail(format!("timed out after {}s", limit.as_secs())));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(fail(format!("wait: {e}"))),
            }
        }
    }
}

/// A hook program runs as root on the host: it must be a regular executable file that
/// only root can change, in a directory only root can change. Checked before every run,
/// so a file swapped in after create is refused.
fn check_hook(prog: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let owned_by_root = |p: &Path, what: &str| -> Result<std::fs::Metadata, String> {
        let m = std::fs::symlink_metadata(p).map_err(|e| format!("hook {}: {e}", p.display()))?;
        if m.uid() != 0 || m.mode() & 0o022 != 0 {
            return Err(format!(
                "hook {}: the {what} must be owned by root and not writable by group or others",
                p.display()
            ));
        }
        Ok(m)
    };
    if let Some(dir) = prog.parent() {
        owned_by_root(dir, "directory")?;
    }
    let m = owned_by_root(prog, "program")?;
    if !m.file_type().is_file() || m.mode() & 0o111 == 0 {
        return Err(format!(
            "hook {}: not an executable regular file",
            prog.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ve::test_annotations;

    #[test]
    fn hook_names_and_ve_commands() {
        let a = Actions::parse(&test_annotations(&[
            ("hooks.pre-checkpoint", "ve: sync"),
            ("hooks.post-restore", "notify"),
        ]))
        .unwrap();
        assert_eq!(
            a.get(Point::PreCheckpoint),
            Some(&Action::Ve("sync".into()))
        );
        assert_eq!(
            a.get(Point::PostRestore),
            Some(&Action::Named("notify".into()))
        );
        assert!(a.get(Point::PreRestore).is_none());
    }

    #[test]
    fn bad_values_name_the_key() {
        let err = Actions::parse(&test_annotations(&[("hooks.pre-restore", "ve:x")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("annotation io.vzrun.hooks.pre-restore:"),
            "{err}"
        );
        let err = Actions::parse(&test_annotations(&[("hooks.timeout", "0")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("io.vzrun.hooks.timeout"), "{err}");
        assert!(Actions::parse(&test_annotations(&[("hooks.post-checkpoint", " ")])).is_err());
    }

    #[test]
    fn host_commands_are_refused() {
        for v in [
            "/bin/sh -c 'id > /tmp/x'",
            "../../bin/sh",
            "/usr/bin/id",
            ".hidden",
        ] {
            let err = Actions::parse(&test_annotations(&[("hooks.post-restore", v)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains("is not a hook name"), "{v}: {err}");
        }
    }

    #[test]
    fn scripts_get_state_and_fail_with_their_status() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let hooks = dir.path().join("hooks.d");
        std::fs::create_dir(&hooks).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&hooks, std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = dir.path().join("out");
        let script = |name: &str, body: &str| {
            let p = hooks.join(name);
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        script(
            "record",
            &format!(
                "cat > {} && echo $VZRUN_ACTION >> {}",
                out.display(),
                out.display()
            ),
        );
        script("fail", "exit 3");
        script("slow", "sleep 5");
        script("loose", "true");
        std::fs::set_permissions(hooks.join("loose"), std::fs::Permissions::from_mode(0o777))
            .unwrap();
        let a = Actions::parse(&test_annotations(&[
            ("hooks.pre-checkpoint", "record"),
            ("hooks.post-checkpoint", "fail"),
            ("hooks.timeout", "1"),
            ("hooks.pre-restore", "slow"),
            ("hooks.post-restore", "loose"),
        ]))
        .unwrap();
        let r = Runner {
            hooks_dir: &hooks,
            vzrun: Path::new("/bin/false"),
            root: Path::new("/nonexistent"),
            id: "x",
            state: "{\"id\":\"x\"}".into(),
        };
        a.run(Point::PreCheckpoint, &r).unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "{\"id\":\"x\"}pre-checkpoint\n"
        );
        let err = a.run(Point::PostCheckpoint, &r).unwrap_err().to_string();
        assert!(
            err.contains("post-checkpoint") && err.contains("3"),
            "{err}"
        );
        let err = a.run(Point::PreRestore, &r).unwrap_err().to_string();
        assert!(err.contains("timed out"), "{err}");
        let err = a.run(Point::PostRestore, &r).unwrap_err().to_string();
        assert!(err.contains("not writable by group or others"), "{err}");
    }
}
