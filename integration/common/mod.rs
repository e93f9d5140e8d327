//! Helpers shared by the integration suites: runtimes with private state roots, bundles
//! over the busybox rootfs, and guards that clean up even when a test fails.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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

/// Skips a test that compares with runc when it cannot run (no root, or no runc).
#[macro_export]
macro_rules! require_runc {
    () => {
        $crate::require_root!();
        if !$crate::common::have("runc") {
            eprintln!("SKIP: runc is not installed");
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

    /// A runtime under its own name from another program (a wrapper script).
    pub fn named(name: &'static str, bin: &Path) -> Self {
        Self::new(name, bin.to_str().expect("utf-8 path"))
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
        poll(100, Duration::from_millis(50), || {
            let o = self.run(&["state", id]);
            o.code == 0 && o.json()["status"] == want
        })
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

/// A VE started with `run -d` from a VE bundle whose process sleeps; the runtime's
/// tracking deletes it when the test ends, however it ends. Suites add their own
/// methods in `impl common::Ve` blocks.
pub struct Ve<'a> {
    pub rt: &'a Runtime,
    pub id: String,
    /// Kept for the VE's life: its config.json, for a suite that reads it back.
    pub bundle: Bundle,
}

impl<'a> Ve<'a> {
    pub fn start(rt: &'a Runtime, tag: &str, ann: Value) -> Ve<'a> {
        let bundle = Bundle::ve(&["sleep", "600"], ann);
        let id = unique_id(tag);
        rt.track(&id);
        let o = rt.run(&["run", "-d", "-b", bundle.p(), &id]);
        assert_eq!(o.code, 0, "start {id}: {o:?}");
        Ve { rt, id, bundle }
    }

    /// A VE whose root is its own to write (a private area over the bundle's rootfs), its
    /// process asleep: for a test where the tenant changes its files.
    pub fn start_writable(rt: &'a Runtime, tag: &str) -> Ve<'a> {
        let bundle = Bundle::with(&["sleep", "600"], |v| {
            v["root"]["readonly"] = serde_json::json!(false);
            v["annotations"] = serde_json::json!({"io.vzrun.diskspace": "32M"});
        });
        let id = unique_id(tag);
        rt.track(&id);
        let o = rt.run(&["run", "-d", "-b", bundle.p(), &id]);
        assert_eq!(o.code, 0, "start {id}: {o:?}");
        Ve { rt, id, bundle }
    }

    /// `ve show --json`.
    pub fn show(&self) -> Value {
        let o = self.rt.run(&["ve", "show", "--json", &self.id]);
        assert_eq!(o.code, 0, "{o:?}");
        o.json()
    }
}

/// A private data directory (templates and VEs), removed at the end.
pub struct Data {
    dir: tempfile::TempDir,
}

impl Data {
    pub fn new() -> Self {
        Data {
            dir: tempfile::Builder::new()
                .prefix("vzt-data-")
                .tempdir()
                .expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Runs vzrun with a data directory; output through files, since a VE's init could
/// otherwise hold a pipe open.
pub fn vz(rt: &Runtime, data: &Path, args: &[&str], input: Option<&str>) -> Out {
    use std::io::{Seek, Write};
    let stdin = match input {
        Some(text) => {
            let mut f = tempfile::tempfile().unwrap();
            f.write_all(text.as_bytes()).unwrap();
            f.rewind().unwrap();
            Stdio::from(f)
        }
        None => Stdio::null(),
    };
    let mut cmd = rt.command();
    cmd.env("VZRUN_DATA_DIR", data).args(args);
    output_of(cmd, stdin)
}

/// A system VE that is stopped (at once) and destroyed when the test ends, however it ends.
pub struct SysVe<'a> {
    pub rt: &'a Runtime,
    pub data: PathBuf,
    pub id: String,
}

impl<'a> SysVe<'a> {
    pub fn create(rt: &'a Runtime, data: &Path, tag: &str, template: &str, extra: &[&str]) -> Self {
        let id = unique_id(tag);
        rt.track(&id);
        let mut args = vec!["ve", "create", &id, "--template", template];
        args.extend_from_slice(extra);
        let o = vz(rt, data, &args, None);
        assert_eq!(o.code, 0, "ve create {id}: {o:?}");
        SysVe {
            rt,
            data: data.to_path_buf(),
            id,
        }
    }

    pub fn vz(&self, args: &[&str]) -> Out {
        vz(self.rt, &self.data, args, None)
    }

    pub fn ve(&self, verb: &str, extra: &[&str]) -> Out {
        let mut args = vec!["ve", verb, &self.id];
        args.extend_from_slice(extra);
        self.vz(&args)
    }

    pub fn start(&self) {
        let o = self.ve("start", &[]);
        assert_eq!(o.code, 0, "ve start {}: {o:?}", self.id);
    }

    pub fn exec(&self, cmd: &[&str]) -> Out {
        let mut args = vec!["exec", &self.id];
        args.extend_from_slice(cmd);
        self.vz(&args)
    }

    pub fn sh(&self, script: &str) -> String {
        let o = self.exec(&["sh", "-c", script]);
        assert_eq!(o.code, 0, "{script}: {o:?}");
        o.stdout
    }

    pub fn dir(&self) -> PathBuf {
        self.data.join("ve").join(&self.id)
    }
}

impl Drop for SysVe<'_> {
    fn drop(&mut self) {
        let _ = self.ve("stop", &["--fast"]);
        let _ = self.ve("destroy", &[]);
    }
}

/// The Debian template the system and proc_view suites and hack/bench-system.sh share: built once (about half
/// a minute once debootstrap's package cache is warm) and kept in the default data
/// directory, so later runs only boot it.
pub const DEBIAN_DATA: &str = "/var/lib/vzrun";
pub const DEBIAN_TEMPLATE: &str = "vzt-debian-12";
/// Its extra packages: lighttpd for the services test, procps for `free` in the /proc view.
const DEBIAN_PACKAGES: [&str; 2] = ["lighttpd", "procps"];

/// Builds the shared Debian template if it is not cached yet; None (with the reason) when
/// this host cannot.
pub fn debian_template(rt: &Runtime) -> Result<(), String> {
    let data = Path::new(DEBIAN_DATA);
    let meta = data
        .join("templates")
        .join(DEBIAN_TEMPLATE)
        .join("template.json");
    if let Ok(text) = std::fs::read_to_string(&meta) {
        let cached: Value = serde_json::from_str(&text).unwrap_or_default();
        if cached["packages"] == serde_json::json!(DEBIAN_PACKAGES) {
            return Ok(());
        }
        // Cached by an older suite with other packages: build it again.
        let mut rm = rt.command();
        rm.env("VZRUN_DATA_DIR", data)
            .args(["template", "rm", DEBIAN_TEMPLATE]);
        let o = output_of(rm, Stdio::null());
        assert_eq!(o.code, 0, "template rm {DEBIAN_TEMPLATE}: {o:?}");
    }
    if !have("debootstrap") {
        return Err("debootstrap is not installed (hack/setup.sh installs it)".into());
    }
    let Some(mirror) = host_debian_mirror() else {
        return Err("no Debian mirror in the host's apt sources (set DEBIAN_MIRROR)".into());
    };
    let mut cmd = rt.command();
    cmd.env("VZRUN_DATA_DIR", data).args([
        "template",
        "create",
        DEBIAN_TEMPLATE,
        "--dist",
        "debian-12",
        "--mirror",
        &mirror,
        "--packages",
        &DEBIAN_PACKAGES.join(","),
    ]);
    let o = output_of(cmd, Stdio::null());
    if o.code == 0 {
        return Ok(());
    }
    let msg = o.error_msg();
    if msg.contains("Failed getting release")
        || msg.contains("Couldn't download")
        || msg.contains("Temporary failure resolving")
    {
        return Err(format!("the Debian mirror is not reachable: {msg}"));
    }
    panic!("template create {DEBIAN_TEMPLATE}: {o:?}");
}

/// The Debian mirror of this host: `DEBIAN_MIRROR` when set, else the URI its apt sources
/// use for the Debian main archive (as hack/install-criu.sh finds it): the first enabled
/// `deb` source, one-line (sources.list, sources.list.d/*.list) or deb822
/// (sources.list.d/*.sources), whose suites hold the host's codename and whose components
/// hold main. None when there is no such source.
pub fn host_debian_mirror() -> Option<String> {
    if let Some(m) = std::env::var("DEBIAN_MIRROR")
        .ok()
        .filter(|m| !m.is_empty())
    {
        return Some(m);
    }
    let codename = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("VERSION_CODENAME=")
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_default();
    let suite_ok = |s: &str| {
        if codename.is_empty() {
            !s.contains('/')
                && !["-security", "-updates", "-backports"]
                    .iter()
                    .any(|x| s.ends_with(x))
        } else {
            s == codename
        }
    };
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    for ext in ["list", "sources"] {
        let mut more: Vec<PathBuf> = std::fs::read_dir("/etc/apt/sources.list.d")
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        more.retain(|p| p.extension().is_some_and(|e| e == ext));
        more.sort();
        files.extend(more);
    }
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        // (types, URIs, suites, components, enabled) of each source in the file.
        let mut sources: Vec<[String; 5]> = Vec::new();
        if f.extension().is_some_and(|e| e == "sources") {
            let mut cur: [String; 5] = Default::default();
            let mut key = 5;
            for line in text.lines().chain([""]) {
                if line.starts_with('#') {
                    continue;
                }
                if line.trim().is_empty() {
                    if !cur[0].is_empty() {
                        sources.push(std::mem::take(&mut cur));
                    }
                    key = 5;
                } else if line.starts_with([' ', '\t']) {
                    if key < 5 {
                        cur[key] = format!("{} {}", cur[key], line.trim());
                    }
                } else if let Some((k, v)) = line.split_once(':') {
                    key = ["types", "uris", "suites", "components", "enabled"]
                        .iter()
                        .position(|n| n.eq_ignore_ascii_case(k.trim()))
                        .unwrap_or(5);
                    if key < 5 {
                        cur[key] = v.trim().to_string();
                    }
                }
            }
        } else {
            for line in text.lines() {
                let line = line.split('#').next().unwrap_or_default().trim();
                let Some(rest) = line.strip_prefix("deb ").or(line.strip_prefix("deb\t")) else {
                    continue;
                };
                let mut rest = rest.trim_start();
                if rest.starts_with('[') {
                    rest = rest.split_once(']').map_or("", |x| x.1);
                }
                let w: Vec<&str> = rest.split_whitespace().collect();
                if w.len() >= 3 {
                    sources.push([
                        "deb".into(),
                        w[0].into(),
                        w[1].into(),
                        w[2..].join(" "),
                        String::new(),
                    ]);
                }
            }
        }
        for [types, uris, suites, comps, enabled] in sources {
            let has = |list: &str, word: &str| list.split_whitespace().any(|x| x == word);
            if has(&types, "deb")
                && has(&comps, "main")
                && !enabled.eq_ignore_ascii_case("no")
                && suites.split_whitespace().any(suite_ok)
            {
                if let Some(uri) = uris.split_whitespace().next() {
                    return Some(uri.trim_end_matches('/').to_string());
                }
            }
        }
    }
    None
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

/// One beancounter of `vzrun ve stat --json ID`: {held, maxheld, barrier, limit, failcnt}.
pub fn ve_stat_row(rt: &Runtime, id: &str, resource: &str) -> Value {
    let ve = rt.run(&["ve", "stat", "--json", id]).json();
    ve["beancounters"]
        .get(resource)
        .cloned()
        .unwrap_or_else(|| panic!("no {resource} beancounter: {ve}"))
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

/// A command running with its stdout and stderr going to temporary files (see
/// [`output_of`]); the callers' suites wait for it with a deadline.
pub struct Started {
    pub child: std::process::Child,
    out: std::fs::File,
    err: std::fs::File,
}

impl Started {
    pub fn new(cmd: &mut Command) -> Started {
        let out = tempfile::tempfile().expect("tempfile");
        let err = tempfile::tempfile().expect("tempfile");
        let child = cmd
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(err.try_clone().unwrap()))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        Started { child, out, err }
    }

    /// Waits for the command and returns its output.
    fn finish(mut self) -> Out {
        let code = self.child.wait().map_or(-1, |s| s.code().unwrap_or(-1));
        self.output(code)
    }

    /// What the command wrote, with `code` as its exit code (for a caller that waited).
    pub fn output(mut self, code: i32) -> Out {
        Out {
            code,
            stdout: read_back(&mut self.out),
            stderr: read_back(&mut self.err),
        }
    }
}

/// A command in its own process group that must end by a deadline: a hang is a failure,
/// not a stuck suite. The group is killed at the deadline, and when this is dropped while
/// the command still runs (a test that failed midway).
pub struct Deadlined {
    started: Option<Started>,
    desc: String,
}

impl Deadlined {
    pub fn start(cmd: &mut Command) -> Deadlined {
        use std::os::unix::process::CommandExt;
        let desc = format!("{cmd:?}");
        let started = Started::new(cmd.stdin(Stdio::null()).process_group(0));
        Deadlined {
            started: Some(started),
            desc,
        }
    }

    /// Waits up to `limit`; a command still running then is killed with its group and
    /// reported with code -1 and a note on stderr.
    pub fn wait(mut self, limit: Duration) -> Out {
        let mut started = self.started.take().expect("waited once");
        let start = Instant::now();
        loop {
            if let Some(st) = started.child.try_wait().expect("wait") {
                return started.output(st.code().unwrap_or(-1));
            }
            if start.elapsed() > limit {
                kill_group(&mut started.child);
                let mut o = started.output(-1);
                o.stderr
                    .push_str(&format!("\n[test: killed after {limit:?}: {}]", self.desc));
                return o;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Deadlined {
    /// Polls the command's stdout so far until `want` holds of it, for at most `limit`
    /// (a stream such as `events` never ends by itself); whether it held.
    pub fn stdout_until(&self, limit: Duration, want: impl Fn(&str) -> bool) -> bool {
        use std::os::unix::fs::FileExt;
        let Some(started) = self.started.as_ref() else {
            return false;
        };
        let start = Instant::now();
        while start.elapsed() <= limit {
            let mut buf = vec![0; 1 << 20];
            let n = started.out.read_at(&mut buf, 0).unwrap_or(0);
            if want(&String::from_utf8_lossy(&buf[..n])) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Deadlined {
    fn drop(&mut self) {
        if let Some(mut s) = self.started.take() {
            if s.child.try_wait().ok().flatten().is_none() {
                kill_group(&mut s.child);
            }
        }
    }
}

fn kill_group(child: &mut std::process::Child) {
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = child.kill();
    let _ = child.wait();
}

impl Runtime {
    /// Starts a command of this runtime that must end by a deadline ([`Deadlined`]).
    pub fn start_deadlined(&self, args: &[&str]) -> Deadlined {
        let mut cmd = self.command();
        cmd.args(args);
        Deadlined::start(&mut cmd)
    }

    /// Runs a command that must end within `limit` (see [`Deadlined::wait`]).
    pub fn run_deadlined(&self, args: &[&str], limit: Duration) -> Out {
        self.start_deadlined(args).wait(limit)
    }
}

/// All of a temporary output file, from its start (invalid UTF-8 replaced).
fn read_back(f: &mut std::fs::File) -> String {
    use std::io::{Read, Seek};
    let mut buf = Vec::new();
    f.rewind().unwrap();
    f.read_to_end(&mut buf).unwrap();
    String::from_utf8_lossy(&buf).into_owned()
}

/// Calls `f` up to `tries` times, `every` apart, until it returns true; whether it did.
pub fn poll(tries: u32, every: Duration, mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..tries {
        if f() {
            return true;
        }
        std::thread::sleep(every);
    }
    false
}

/// Polls `f` (every 50 ms) for up to `secs` seconds, and once more at the end.
pub fn wait_until(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// A host bridge made by a test, named `PREFIX<pid % 100000>` and up; removed at drop.
pub struct TestBridge(pub String);

impl TestBridge {
    /// None when this host cannot make the bridge.
    pub fn new(prefix: &str) -> Option<TestBridge> {
        let br = TestBridge(format!("{prefix}{}", std::process::id() % 100000));
        let ip = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .status()
                .is_ok_and(|s| s.success())
        };
        (ip(&["link", "add", &br.0, "type", "bridge"]) && ip(&["link", "set", &br.0, "up"]))
            .then_some(br)
    }
}

impl Drop for TestBridge {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).status();
    }
}

/// A command on a new pseudo-terminal of `rows`×`cols` (its stdin, stdout, stderr and
/// controlling terminal), as when a person runs it from a terminal window; the test holds
/// the master end: what the command writes, and the window's size.
pub struct OnPty {
    pub child: std::process::Child,
    master: std::fs::File,
    seen: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

/// A new pty pair whose terminal is `rows` x `cols`.
pub fn openpty(rows: u16, cols: u16) -> nix::pty::OpenptyResult {
    let ws = nix::pty::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    nix::pty::openpty(Some(&ws), None).expect("openpty")
}

impl OnPty {
    pub fn spawn(cmd: &mut Command, rows: u16, cols: u16) -> OnPty {
        use std::os::unix::process::CommandExt;
        let pty = openpty(rows, cols);
        let slave = std::fs::File::from(pty.slave);
        // SAFETY: between fork and exec only async-signal-safe calls (setsid, ioctl) on the
        // child's own descriptors: it gets a session whose controlling terminal is the pty,
        // so the kernel signals it when the window is resized.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let master = std::fs::File::from(pty.master);
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (mut reader, sink) = (master.try_clone().unwrap(), seen.clone());
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 4096];
            // EIO once the last slave descriptor is closed.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        OnPty {
            child,
            master,
            seen,
        }
    }

    /// Types `text` on the terminal.
    pub fn type_text(&mut self, text: &str) {
        use std::io::Write;
        self.master
            .write_all(text.as_bytes())
            .expect("write to pty");
    }

    /// Everything shown on the terminal so far, without carriage returns.
    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).replace('\r', "")
    }

    /// Waits up to `secs` seconds for `needle` to appear on the terminal.
    pub fn wait_for(&self, needle: &str, secs: u64) -> bool {
        wait_until(secs, || self.screen().contains(needle))
    }

    /// Resizes the window, as a terminal emulator does: the kernel sends SIGWINCH to
    /// the command, the foreground of the terminal.
    pub fn resize(&self, rows: u16, cols: u16) {
        use std::os::fd::AsRawFd;
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ on our open master with a pointer to a live winsize.
        let rc = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        assert_eq!(rc, 0, "TIOCSWINSZ: {}", std::io::Error::last_os_error());
    }

    /// The command's exit code once it ends within `secs` seconds; else it is killed and
    /// None is returned.
    pub fn wait(&mut self, secs: u64) -> Option<i32> {
        let mut code = None;
        wait_until(secs, || match self.child.try_wait() {
            Ok(Some(st)) => {
                code = Some(st.code().unwrap_or(-1));
                true
            }
            _ => false,
        });
        if code.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // What the command wrote just before it ended may still be in the pty, not yet
        // read by the reader thread: wait until the screen stops growing.
        let mut shown = self.seen.lock().unwrap().len();
        for _ in 0..20 {
            std::thread::sleep(std::time::Duration::from_millis(100));
            let now = self.seen.lock().unwrap().len();
            if now == shown {
                break;
            }
            shown = now;
        }
        code
    }
}

/// A spawner that keeps a task in its vfork wait: in a loop it writes its round number
/// to the file named by argv[2], then vforks a child that sleeps argv[1] ms before it
/// execs `usleep 200000` (so the parent waits in vfork nearly all the time), and waits
/// for it. glibc's system() and posix_spawn() spawn the same way, for microseconds.
const VFORK_SPAWNER_C: &str = r#"
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
int main(int argc, char **argv) {
    if (argc < 3) return 2;
    long ms = atol(argv[1]);
    for (long n = 1;; n++) {
        FILE *f = fopen(argv[2], "w");
        if (f) { fprintf(f, "%ld\n", n); fclose(f); }
        pid_t p = vfork();
        if (p == 0) {
            struct timespec t = { ms / 1000, (ms % 1000) * 1000000L };
            nanosleep(&t, 0);
            execl("/bin/usleep", "usleep", "200000", (char *)0);
            _exit(127);
        }
        if (p > 0) waitpid(p, 0, 0);
    }
}
"#;

/// The vfork spawner ([`VFORK_SPAWNER_C`]) as a static binary, built once per test run;
/// None when the host has no static C toolchain.
pub fn vfork_spawner() -> Option<&'static PathBuf> {
    static BIN: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let src = dir.join(format!("vzt-vfork-{}.c", std::process::id()));
        let built = dir.join(format!("vzt-vfork-{}", std::process::id()));
        std::fs::write(&src, VFORK_SPAWNER_C).ok()?;
        let ok = Command::new("cc")
            .args(["-static", "-O1", "-o"])
            .arg(&built)
            .arg(&src)
            .status()
            .is_ok_and(|s| s.success());
        let _ = std::fs::remove_file(&src);
        let bin = dir.join("vzt-vfork");
        (ok && std::fs::rename(&built, &bin).is_ok()).then_some(bin)
    })
    .as_ref()
}

/// Copies the vfork spawner into the running VE `id` at `/tmp/vf` (a tmpfs of the VE's,
/// so it travels with a dump), where the VE's own script waits for it.
pub fn put_vfork_spawner(rt: &Runtime, id: &str, bin: &Path) {
    let o = rt
        .command()
        .args([
            "exec",
            id,
            "sh",
            "-c",
            "cat > /tmp/vf.part && chmod 755 /tmp/vf.part && mv /tmp/vf.part /tmp/vf",
        ])
        .stdin(std::fs::File::open(bin).unwrap())
        .output()
        .unwrap();
    assert!(o.status.success(), "copy the spawner into {id}: {o:?}");
}

/// The spawner's round in the VE (0 before its first).
pub fn vfork_round(rt: &Runtime, id: &str) -> u64 {
    let o = rt.run(&["exec", id, "cat", "/tmp/vf-rounds"]);
    o.stdout.trim().parse().unwrap_or(0)
}

/// Waits until the spawner in the VE starts a new round: its parent has just begun a
/// vfork wait of the spawner's window.
pub fn wait_vfork_round(rt: &Runtime, id: &str) -> u64 {
    let mut first = 0;
    assert!(
        wait_until(30, || {
            first = vfork_round(rt, id);
            first > 0
        }),
        "the vfork spawner in {id} never ran"
    );
    let mut now = first;
    assert!(
        wait_until(30, || {
            now = vfork_round(rt, id);
            now > first
        }),
        "the vfork spawner in {id} never began another round"
    );
    now
}
