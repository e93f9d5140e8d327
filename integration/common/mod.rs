//! Helpers shared by the integration suites: runtimes with private state roots, bundles
//! over the busybox rootfs, and guards that clean up even when a test fails.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

pub const VZRUN: &str = env!("CARGO_BIN_EXE_vzrun");

/// Every test ID starts with this, so leftovers are recognisable.
pub const TEST_PREFIX: &str = "vzt";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub fn unique_id(tag: &str) -> String {
    format!(
        "{TEST_PREFIX}-{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn rootfs() -> PathBuf {
    repo().join("bundles/busybox/rootfs")
}

/// Returns a reason to skip when the host cannot run real containers.
pub fn skip_reason() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("integration tests need root".into());
    }
    if !rootfs().join("bin/busybox").exists() {
        return Some("bundles/busybox/rootfs is missing: run hack/setup.sh".into());
    }
    None
}

#[macro_export]
macro_rules! require_root {
    () => {
        if let Some(why) = $crate::common::skip_reason() {
            eprintln!("SKIP: {why}");
            return;
        }
    };
}

/// Returns a reason to skip a checkpoint test: no CRIU, or `criu check` fails.
pub fn criu_missing() -> Option<String> {
    let ok = Command::new("criu")
        .arg("check")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    (!ok).then(|| "criu is missing or `criu check` fails (hack/install-criu.sh)".into())
}

#[macro_export]
macro_rules! require_criu {
    () => {
        $crate::require_root!();
        if let Some(why) = $crate::common::criu_missing() {
            eprintln!("SKIP: {why}");
            return;
        }
    };
}

pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[derive(Debug, Clone)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Out {
    fn from(o: Output) -> Self {
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Out {
    /// The message of the last logrus-style error line, or the last stderr line.
    pub fn error_msg(&self) -> String {
        for line in self.stderr.lines().rev() {
            if let Some(rest) = line.split_once("msg=").map(|x| x.1) {
                return serde_json::from_str::<String>(rest.split(" time=").next().unwrap_or(rest))
                    .unwrap_or_else(|_| rest.trim_matches('"').to_string());
            }
        }
        self.stderr.lines().last().unwrap_or_default().to_string()
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {:?} / stderr {:?}",
                self.stdout, self.stderr
            )
        })
    }
}

/// One runtime binary with its own state root, so tests never see each other.
pub struct Runtime {
    pub name: &'static str,
    pub bin: String,
    pub root: tempfile::TempDir,
    pub ids: std::cell::RefCell<Vec<String>>,
}

impl Runtime {
    pub fn vzrun() -> Self {
        Self::new("vzrun", VZRUN)
    }

    pub fn runc() -> Self {
        Self::new("runc", "runc")
    }

    /// vzrun from another copy of its binary (an attack on the binary hits the copy).
    pub fn with_binary(bin: &Path) -> Self {
        Self::new("vzrun", bin.to_str().expect("utf-8 path"))
    }

    fn new(name: &'static str, bin: &str) -> Self {
        Runtime {
            name,
            bin: bin.to_string(),
            root: tempfile::Builder::new()
                .prefix("vzt-root-")
                .tempdir()
                .expect("tempdir"),
            ids: Default::default(),
        }
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root").arg(self.root.path());
        c
    }

    /// Runs with stdin closed. Output goes through files rather than pipes: a container
    /// started by the command inherits its stdio and would hold a pipe open for ever.
    pub fn run(&self, args: &[&str]) -> Out {
        self.run_with(args, Stdio::null())
    }

    pub fn run_input(&self, args: &[&str], input: &str) -> Out {
        let mut f = tempfile::tempfile().expect("tempfile");
        use std::io::{Seek, Write};
        f.write_all(input.as_bytes()).unwrap();
        f.rewind().unwrap();
        self.run_with(args, Stdio::from(f))
    }

    fn run_with(&self, args: &[&str], stdin: Stdio) -> Out {
        let mut cmd = self.command();
        cmd.args(args);
        output_of(cmd, stdin)
    }

    /// Remembers an ID for the cleanup at drop.
    pub fn track(&self, id: &str) {
        self.ids.borrow_mut().push(id.to_string());
    }

    pub fn state(&self, id: &str) -> Value {
        let o = self.run(&["state", id]);
        assert_eq!(o.code, 0, "{} state {id}: {}", self.name, o.stderr);
        o.json()
    }

    pub fn status(&self, id: &str) -> String {
        self.state(id)["status"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Polls until the container reaches `want` or a few seconds pass.
    pub fn wait_status(&self, id: &str, want: &str) -> bool {
        for _ in 0..100 {
            let o = self.run(&["state", id]);
            if o.code == 0 && o.json()["status"] == want {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        for id in self.ids.borrow().iter() {
            let _ = self
                .command()
                .args(["delete", "--force", id])
                .stderr(Stdio::null())
                .output();
        }
        if self.name == "vzrun" && !std::thread::panicking() {
            let left = dir_entries(self.root.path());
            assert!(
                left.is_empty(),
                "vzrun left state behind in its root: {left:?}"
            );
        }
    }
}

/// A bundle over the shared busybox rootfs (read-only), with a config edited per test.
pub struct Bundle {
    pub dir: tempfile::TempDir,
}

impl Bundle {
    pub fn busybox(args: &[&str]) -> Self {
        Self::with(args, |_| {})
    }

    /// A VE bundle with `annotations`, whose process holds the network capabilities a
    /// VE's owner has.
    pub fn ve(args: &[&str], annotations: Value) -> Self {
        Self::with(args, |v| {
            let caps = serde_json::json!([
                "CAP_NET_ADMIN",
                "CAP_NET_RAW",
                "CAP_NET_BIND_SERVICE",
                "CAP_KILL",
                "CAP_AUDIT_WRITE"
            ]);
            for set in ["bounding", "effective", "permitted"] {
                v["process"]["capabilities"][set] = caps.clone();
            }
            v["annotations"] = annotations;
        })
    }

    pub fn with(args: &[&str], edit: impl FnOnce(&mut Value)) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("vzt-bundle-")
            .tempdir()
            .expect("tempdir");
        let text =
            std::fs::read_to_string(repo().join("bundles/busybox/config.json")).expect("config");
        let mut spec: Value = serde_json::from_str(&text).expect("json");
        spec["root"] = serde_json::json!({"path": rootfs(), "readonly": true});
        spec["process"]["args"] = serde_json::json!(args);
        edit(&mut spec);
        std::fs::write(
            dir.path().join("config.json"),
            serde_json::to_vec_pretty(&spec).unwrap(),
        )
        .unwrap();
        Bundle { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn p(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }
}

/// Cgroup directories (any hierarchy) whose name contains `needle`.
pub fn cgroups_named(needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![(PathBuf::from("/sys/fs/cgroup"), 0)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                if e.file_name().to_string_lossy().contains(needle) {
                    found.push(p.clone());
                }
                if depth < 3 {
                    stack.push((p, depth + 1));
                }
            }
        }
    }
    found
}

pub fn mounts_containing(needle: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

/// Disk images and migrated bundles in vzrun's data directory, and loop devices whose
/// backing file names contain `needle`: what a VE had on the host must go with it.
pub fn disk_leftovers(needle: &str) -> Vec<String> {
    // Private area images, and what a migration's destination keeps for a VE.
    let mut left: Vec<String> = ["/var/lib/vzrun/private", "/var/lib/vzrun/migrated"]
        .iter()
        .flat_map(|d| {
            std::fs::read_dir(d)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.path().to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
        .filter(|p| p.rsplit('/').next().is_some_and(|n| n.contains(needle)))
        .collect();
    if let Ok(rd) = std::fs::read_dir("/sys/block") {
        for e in rd.flatten() {
            let f = e.path().join("loop/backing_file");
            if let Ok(b) = std::fs::read_to_string(&f) {
                if b.contains(needle) {
                    left.push(format!("{}: {}", e.file_name().to_string_lossy(), b.trim()));
                }
            }
        }
    }
    left
}

/// One row of `vzrun ve stat --json ID`.
pub fn ve_stat_row(rt: &Runtime, id: &str, resource: &str) -> Value {
    let rows = rt.run(&["ve", "stat", "--json", id]).json();
    rows.as_array()
        .and_then(|a| a.iter().find(|r| r["resource"] == resource).cloned())
        .unwrap_or_else(|| panic!("no {resource} row: {rows}"))
}

/// The names in a directory; none when it does not exist.
pub fn dir_entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Runs a command to its end with output through files rather than pipes: a container
/// started by the command inherits its stdio and would hold a pipe open for ever.
pub fn output_of(mut cmd: Command, stdin: Stdio) -> Out {
    cmd.stdin(stdin);
    Started::new(&mut cmd).finish()
}

/// Starts all the commands at once (stdin closed, output through files as in
/// [`output_of`]), then waits for each: for races between commands.
pub fn outputs_of(cmds: Vec<Command>) -> Vec<Out> {
    let started: Vec<Started> = cmds
        .into_iter()
        .map(|mut cmd| Started::new(cmd.stdin(Stdio::null())))
        .collect();
    started.into_iter().map(Started::finish).collect()
}

/// A command running with its stdout and stderr going to temporary files.
struct Started {
    child: std::process::Child,
    out: std::fs::File,
    err: std::fs::File,
}

impl Started {
    fn new(cmd: &mut Command) -> Started {
        let out = tempfile::tempfile().expect("tempfile");
        let err = tempfile::tempfile().expect("tempfile");
        let child = cmd
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(err.try_clone().unwrap()))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {:?}: {e}", cmd.get_program()));
        Started { child, out, err }
    }

    fn finish(mut self) -> Out {
        use std::io::{Read, Seek};
        let read = |f: &mut std::fs::File| {
            let mut s = String::new();
            f.rewind().unwrap();
            f.read_to_string(&mut s).unwrap();
            s
        };
        Out {
            code: self.child.wait().map_or(-1, |s| s.code().unwrap_or(-1)),
            stdout: read(&mut self.out),
            stderr: read(&mut self.err),
        }
    }
}
