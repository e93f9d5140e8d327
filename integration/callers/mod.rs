//! Helpers shared by the suites that drive vzrun through real callers (containerd's shim
//! through `ctr` and the CRI, podman through conmon): commands with a deadline, a
//! pseudo-terminal for `-t`/`-it`, an OCI image built from bundles/busybox/rootfs, and the
//! bookkeeping that lets a suite leave the machine as it found it (temp dirs, mounts,
//! cgroups, directories a daemon insists on creating, cleanup at process exit).
#![allow(dead_code)]

use std::io::{Read, Seek, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{self, Out};

pub mod containerd;
pub mod grpc;

/// Longest time any single caller command may take before the test gives up on it.
pub const DEADLINE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------

/// Runs a command with `input` on stdin (closed when None), stdout and stderr captured
/// through files (a daemon the command starts may inherit them and would hold a pipe open),
/// in its own process group, killed with that group after `deadline`.
pub fn run_with_deadline(cmd: &mut Command, input: Option<&[u8]>, deadline: Duration) -> Out {
    let stdin = match input {
        Some(bytes) => {
            let mut f = tempfile::tempfile().expect("tempfile");
            f.write_all(bytes).unwrap();
            f.rewind().unwrap();
            Stdio::from(f)
        }
        None => Stdio::null(),
    };
    let desc = format!("{cmd:?}");
    let mut started = common::Started::new(cmd.stdin(stdin).process_group(0));
    let (code, timed_out) = wait_deadline(&mut started.child, deadline);
    let mut o = started.output(code);
    if timed_out {
        o.stderr
            .push_str(&format!("\n[test: killed after {deadline:?}: {desc}]"));
    }
    o
}

/// Waits for a child (the leader of its own process group); kills the group at the deadline.
/// Returns the exit code (128+signal when killed by a signal) and whether it timed out.
fn wait_deadline(child: &mut Child, deadline: Duration) -> (i32, bool) {
    use std::os::unix::process::ExitStatusExt;
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().expect("wait") {
            return (
                st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0)),
                false,
            );
        }
        if start.elapsed() > deadline {
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.kill();
            let st = child.wait().expect("wait");
            return (st.code().unwrap_or(-1), true);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Why a caller suite cannot run here: no root or bundle, or one of `tools` missing.
pub fn missing_tool(tools: &[&str]) -> Option<String> {
    common::skip_reason().or_else(|| {
        tools
            .iter()
            .find(|t| !common::have(t))
            .map(|t| format!("{t} is not installed"))
    })
}

pub fn run(cmd: &mut Command) -> Out {
    run_with_deadline(cmd, None, DEADLINE)
}

/// Fails the test with the full command output unless the command succeeded.
#[track_caller]
pub fn ok(what: &str, o: Out) -> Out {
    assert_eq!(
        o.code, 0,
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        o.code, o.stdout, o.stderr
    );
    o
}

pub fn sh(script: &str) -> Out {
    run(Command::new("sh").args(["-c", script]))
}

// ---------------------------------------------------------------------------------------
// A pseudo-terminal for `ctr run -t` and `podman run -it`
// ---------------------------------------------------------------------------------------

pub struct PtyRun {
    pub code: i32,
    /// Everything the terminal showed, with `\r` removed.
    pub screen: String,
    pub timed_out: bool,
}

/// Runs `cmd` as the session leader of a new pseudo-terminal of `rows`x`cols` (its
/// controlling terminal, on stdin/stdout/stderr), like a person at a terminal. Each step
/// waits until `expect` has appeared on the screen (after what earlier steps matched) and
/// then types `send`. Ends when the command has exited and the terminal is quiet.
pub fn run_in_pty(
    cmd: &mut Command,
    rows: u16,
    cols: u16,
    steps: &[(&str, &str)],
    deadline: Duration,
) -> PtyRun {
    let pty = common::openpty(rows, cols);
    let slave: OwnedFd = pty.slave;
    let master: OwnedFd = pty.master;
    let mfd = master.as_raw_fd();
    // The child must not inherit the master.
    unsafe { libc::fcntl(mfd, libc::F_SETFD, libc::FD_CLOEXEC) };
    cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave.try_clone().unwrap()));
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let desc = format!("{cmd:?}");
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {desc}: {e}"));
    drop(slave);
    let mut master = std::fs::File::from(master);
    let mut screen: Vec<u8> = Vec::new();
    let mut matched_upto = 0usize;
    let mut step = 0usize;
    let start = Instant::now();
    let mut exited: Option<i32> = None;
    let mut quiet_since: Option<Instant> = None;
    let mut timed_out = false;
    loop {
        let mut pfd = libc::pollfd {
            fd: mfd,
            events: libc::POLLIN,
            revents: 0,
        };
        let n = unsafe { libc::poll(&mut pfd, 1, 50) };
        let mut eof = false;
        if n > 0 {
            let mut buf = [0u8; 4096];
            match master.read(&mut buf) {
                Ok(0) => eof = true,
                Ok(k) => {
                    screen.extend_from_slice(&buf[..k]);
                    quiet_since = None;
                }
                Err(e) if e.raw_os_error() == Some(libc::EIO) => eof = true,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => panic!("read pty: {e}"),
            }
        }
        while step < steps.len() {
            let text = String::from_utf8_lossy(&screen[matched_upto..]).into_owned();
            match text.find(steps[step].0) {
                Some(pos) => {
                    matched_upto += text[..pos + steps[step].0.len()].len();
                    master.write_all(steps[step].1.as_bytes()).expect("type");
                    step += 1;
                }
                None => break,
            }
        }
        if exited.is_none() {
            if let Some(st) = child.try_wait().expect("wait") {
                use std::os::unix::process::ExitStatusExt;
                exited = Some(st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0)));
            }
        }
        if exited.is_some() {
            if eof {
                break;
            }
            let since = *quiet_since.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_millis(300) {
                break;
            }
        } else if eof {
            // Nobody holds the terminal any more; the command is about to exit.
            std::thread::sleep(Duration::from_millis(10));
        }
        if start.elapsed() > deadline {
            timed_out = true;
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.kill();
            let _ = child.wait();
            exited.get_or_insert(-1);
            break;
        }
    }
    let code = match exited {
        Some(c) => c,
        None => child.wait().map(|s| s.code().unwrap_or(-1)).unwrap_or(-1),
    };
    PtyRun {
        code,
        screen: String::from_utf8_lossy(&screen).replace('\r', ""),
        timed_out,
    }
}

// ---------------------------------------------------------------------------------------
// An OCI image of bundles/busybox/rootfs, without a registry
// ---------------------------------------------------------------------------------------

fn sha256_file(p: &Path) -> String {
    let o = ok("sha256sum", run(Command::new("sha256sum").arg(p)));
    o.stdout.split_whitespace().next().unwrap().to_string()
}

/// Stores `path` as a blob of the layout `layout` and returns its descriptor fields.
fn add_blob(layout: &Path, path: &Path) -> (String, u64) {
    let digest = sha256_file(path);
    let size = std::fs::metadata(path).unwrap().len();
    std::fs::rename(path, layout.join("blobs/sha256").join(&digest)).unwrap();
    (format!("sha256:{digest}"), size)
}

fn add_json_blob(layout: &Path, v: &Value) -> (String, u64) {
    let tmp = layout.join("blob.tmp");
    std::fs::write(&tmp, serde_json::to_vec(v).unwrap()).unwrap();
    add_blob(layout, &tmp)
}

/// This machine's architecture as OCI images name it.
fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// One image in an archive: its full reference and the `config` part of its image config
/// (Cmd, Entrypoint, Env ...).
pub struct ImageDef<'a> {
    pub reference: &'a str,
    pub config: Value,
}

pub const IMAGE: &str = "docker.io/library/vzt-busybox:latest";

/// The default image: busybox with `/bin/sh` as its command.
pub fn busybox_image() -> ImageDef<'static> {
    ImageDef {
        reference: IMAGE,
        config: json!({
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"],
            "WorkingDir": "/",
        }),
    }
}

/// Writes an OCI image layout holding `images` (all with one layer: a tar of
/// bundles/busybox/rootfs) as a tar archive `dir/NAME.tar`, the format that both
/// `ctr images import` and `podman load` read. The ref names go in the
/// `org.opencontainers.image.ref.name` annotations of index.json.
pub fn oci_archive(dir: &Path, name: &str, images: &[ImageDef]) -> PathBuf {
    let layout = dir.join(format!("{name}.layout"));
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let layer = dir.join(format!("{name}.layer.tar"));
    ok(
        "tar of the busybox rootfs",
        run(Command::new("tar")
            .arg("--numeric-owner")
            .arg("--owner=0")
            .arg("--group=0")
            .arg("-C")
            .arg(common::rootfs())
            .arg("-cf")
            .arg(&layer)
            .arg(".")),
    );
    let (layer_digest, layer_size) = add_blob(&layout, &layer);
    let mut manifests = Vec::new();
    for img in images {
        let config = json!({
            "architecture": oci_arch(),
            "os": "linux",
            "config": img.config,
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
            "history": [{"created_by": "vzrun integration tests: bundles/busybox/rootfs"}],
        });
        let (cd, cs) = add_json_blob(&layout, &config);
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}],
        });
        let (md, ms) = add_json_blob(&layout, &manifest);
        manifests.push(json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": md,
            "size": ms,
            "annotations": {"org.opencontainers.image.ref.name": img.reference},
            "platform": {"architecture": oci_arch(), "os": "linux"},
        }));
    }
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": manifests})).unwrap(),
    )
    .unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let archive = dir.join(format!("{name}.tar"));
    ok(
        "tar of the OCI layout",
        run(Command::new("tar")
            .arg("-C")
            .arg(&layout)
            .arg("-cf")
            .arg(&archive)
            .args(["oci-layout", "index.json", "blobs"])),
    );
    let _ = std::fs::remove_dir_all(&layout);
    archive
}

// ---------------------------------------------------------------------------------------
// What a test or a suite may leave behind
// ---------------------------------------------------------------------------------------

/// Processes (other than this one) whose command line contains `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.chars().all(|c| c.is_ascii_digit()) || name == me {
            continue;
        }
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push(format!("{name}: {}", cmdline.trim_end()));
        }
    }
    found
}

/// What names `id` on the host: cgroups, mounts and processes, one line each.
pub fn traces_of(id: &str) -> Vec<String> {
    let mut left = Vec::new();
    for c in common::cgroups_named(id) {
        left.push(format!("cgroup: {}", c.display()));
    }
    for m in common::mounts_containing(id) {
        left.push(format!("mount: {m}"));
    }
    for p in processes_mentioning(id) {
        left.push(format!("process: {p}"));
    }
    left
}

/// The cgroup directory of `pid` in the v1 hierarchy `controller`.
pub fn cgroup_of(pid: i32, controller: &str) -> PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let rel = text
        .lines()
        .filter_map(|l| {
            let mut p = l.splitn(3, ':');
            let (_, ctrls, path) = (p.next()?, p.next()?, p.next()?);
            ctrls
                .split(',')
                .any(|c| c == controller)
                .then(|| path.to_string())
        })
        .next()
        .unwrap_or_else(|| panic!("pid {pid} has no {controller} cgroup: {text}"));
    PathBuf::from(format!("/sys/fs/cgroup/{controller}{rel}"))
}

/// A file's text, trimmed; `<path: error>` when it cannot be read.
pub fn read_trim(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| format!("<{}: {e}>", p.display()))
        .trim()
        .to_string()
}

/// Mount points at or below `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let dir = dir.to_string_lossy().into_owned();
    let mut v: Vec<PathBuf> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|m| m == &dir || m.starts_with(&format!("{dir}/")))
        .map(PathBuf::from)
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    v.dedup();
    v
}

fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Detaches every mount at or below `dir` (the last resort before removing it: removing a
/// tree with a live overlay mount would delete files through it).
pub fn unmount_all_under(dir: &Path) {
    for _ in 0..5 {
        let m = mounts_under(dir);
        if m.is_empty() {
            return;
        }
        for p in m {
            let _ = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// Cgroup directories whose path (below a hierarchy's root) starts with `/rel`, deepest first.
pub fn cgroup_dirs(rel: &str) -> Vec<PathBuf> {
    let rel = rel.trim_start_matches('/');
    let mut found = Vec::new();
    let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") else {
        return found;
    };
    for h in rd.flatten() {
        let top = h.path().join(rel);
        if !top.is_dir() {
            continue;
        }
        let mut stack = vec![top];
        while let Some(d) = stack.pop() {
            if let Ok(rd) = std::fs::read_dir(&d) {
                for e in rd.flatten() {
                    if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                        stack.push(e.path());
                    }
                }
            }
            found.push(d);
        }
    }
    found.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    found
}

/// Removes the cgroup subtree `/rel` in every hierarchy, killing what still runs in it.
pub fn remove_cgroup_tree(rel: &str) {
    for _ in 0..20 {
        let dirs = cgroup_dirs(rel);
        if dirs.is_empty() {
            return;
        }
        for d in &dirs {
            if let Ok(procs) = std::fs::read_to_string(d.join("cgroup.procs")) {
                for pid in procs
                    .split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok())
                {
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
            // A frozen cgroup keeps its (killed) processes: thaw it.
            let _ = std::fs::write(d.join("freezer.state"), "THAWED");
            let _ = std::fs::remove_dir(d);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A directory that a daemon creates outside its configured paths (containerd 1.6 puts its
/// shim sockets in /run/containerd/s whatever the config says; podman's image copy writes a
/// cache under /var/lib/containers/cache). Remembered when it did not exist before the suite,
/// and removed at the end if it then holds nothing but what `removable` allows.
pub struct HostDirTrace {
    pub path: PathBuf,
    existed: bool,
}

impl HostDirTrace {
    pub fn new(path: &str) -> Self {
        HostDirTrace {
            path: PathBuf::from(path),
            existed: Path::new(path).exists(),
        }
    }

    /// Notes in the suite dir `dir` that the directory did not exist before the suite, with
    /// the files that may be removed, so that `sweep_stale` can remove it after a run that
    /// died before its cleanup.
    pub fn note_in(&self, dir: &Path, files: &[&str]) {
        if self.existed {
            return;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("host-dirs"))
            .expect("host-dirs");
        let _ = writeln!(f, "{}\t{}", self.path.display(), files.join(","));
    }

    /// Removes the directory if this suite created it: only empty directories and the files
    /// named in `files` (relative paths) are removed, anything else keeps it.
    pub fn remove_if_ours(&self, files: &[&str]) {
        if self.existed || !self.path.exists() {
            return;
        }
        for f in files {
            let _ = std::fs::remove_file(self.path.join(f));
        }
        remove_empty_dirs(&self.path);
    }
}

fn remove_empty_dirs(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_empty_dirs(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

// ---------------------------------------------------------------------------------------
// Cleanup at process exit for suite-wide resources (daemons, image stores)
// ---------------------------------------------------------------------------------------

type Cleanup = Box<dyn FnOnce() + Send>;
static AT_EXIT: Mutex<Vec<Cleanup>> = Mutex::new(Vec::new());

extern "C" fn run_at_exit() {
    let jobs: Vec<Cleanup> = match AT_EXIT.lock() {
        Ok(mut v) => std::mem::take(&mut *v),
        Err(p) => std::mem::take(&mut *p.into_inner()),
    };
    // Last registered, first cleaned.
    for job in jobs.into_iter().rev() {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
    }
}

/// Runs `f` when the test binary exits (the harness returns from main or calls exit after
/// the last test, passed or failed). Suite-wide resources live in statics, which Rust never
/// drops; this is their Drop.
pub fn at_exit(f: impl FnOnce() + Send + 'static) {
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    REGISTERED.call_once(|| unsafe {
        libc::atexit(run_at_exit);
    });
    AT_EXIT.lock().unwrap().push(Box::new(f));
}

/// Stops a daemon: SIGTERM, then SIGKILL after `grace`.
pub fn stop_child(child: &mut Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let start = Instant::now();
    while start.elapsed() < grace {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A per-suite temp dir with the pid in its name (prefix `vzt-`, so the leftover suite
/// notices mounts left in it).
pub fn suite_dir(tag: &str) -> PathBuf {
    let d = tempfile::Builder::new()
        .prefix(&format!("vzt-{tag}-{}-", std::process::id()))
        .tempdir()
        .expect("tempdir");
    d.keep()
}

/// Cleans up after an earlier run of a suite that died before its cleanup at exit (killed,
/// or interrupted with Ctrl-C): temp dirs `vzt-TAG-PID-*` whose PID no longer runs. What
/// still mentions such a dir on its command line (a daemon, shims, conmon) is killed, the
/// cgroup trees `cgroups(PID)` are removed with what runs in them, then the dir itself.
pub fn sweep_stale(tag: &str, cgroups: impl Fn(&str) -> Vec<String>) {
    let prefix = format!("vzt-{tag}-");
    let Ok(rd) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(&prefix)
            .and_then(|r| r.split('-').next())
            .filter(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
            .map(str::to_string)
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let dir = e.path();
        for p in processes_mentioning(&dir.display().to_string()) {
            if let Some(pid) = p.split(':').next().and_then(|x| x.parse::<i32>().ok()) {
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        for cg in cgroups(&pid) {
            remove_cgroup_tree(&cg);
        }
        let noted = std::fs::read_to_string(dir.join("host-dirs")).unwrap_or_default();
        remove_suite_dir(&dir);
        for line in noted.lines() {
            let (path, files) = line.split_once('\t').unwrap_or((line, ""));
            let files: Vec<&str> = files.split(',').filter(|f| !f.is_empty()).collect();
            HostDirTrace {
                path: PathBuf::from(path),
                existed: false,
            }
            .remove_if_ours(&files);
        }
    }
}

/// Removes a suite dir after detaching anything still mounted in it.
pub fn remove_suite_dir(dir: &Path) {
    unmount_all_under(dir);
    if mounts_under(dir).is_empty() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

// ---------------------------------------------------------------------------------------
// Comparing what a caller's user sees
// ---------------------------------------------------------------------------------------

/// Replaces each of `from` by `to` in `s` (container ids, runtime names ...).
pub fn normalize(s: &str, subst: &[(&str, &str)]) -> String {
    let mut s = s.to_string();
    for (a, b) in subst {
        if !a.is_empty() {
            s = s.replace(a, b);
        }
    }
    s
}

/// The runtimes compared in every case: (name, binary).
pub fn runtimes() -> Vec<(&'static str, String)> {
    vec![
        ("runc", "runc".to_string()),
        ("vzrun", common::VZRUN.to_string()),
    ]
}

/// A wrapper script around vzrun that records each argv (one line per call) in `argv_log`
/// and, after each call, keeps a copy of the `--log` file it was given in `log_copies/`, so a
/// test can see what the caller passed and what vzrun wrote where the caller reads it.
pub fn recording_wrapper(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let argv_log = dir.join(format!("{name}.argv"));
    let copies = dir.join(format!("{name}.logs"));
    std::fs::create_dir_all(&copies).unwrap();
    let script = format!(
        r#"#!/bin/sh
printf '%s\n' "$*" >> '{argv}'
"{vzrun}" "$@"
rc=$?
log=""
prev=""
for a in "$@"; do
  case "$prev" in --log|-log) log=$a ;; esac
  case "$a" in --log=*|-log=*) log=${{a#*=}} ;; esac
  prev=$a
done
if [ -n "$log" ] && [ -f "$log" ]; then
  cp "$log" '{copies}'/"$(date +%s%N)-$$.log" 2>/dev/null
fi
exit $rc
"#,
        argv = argv_log.display(),
        vzrun = common::VZRUN,
        copies = copies.display(),
    );
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The argv lines and the copied `--log` files a recording wrapper has collected.
pub fn wrapper_records(dir: &Path, name: &str) -> (Vec<String>, Vec<String>) {
    let argv = std::fs::read_to_string(dir.join(format!("{name}.argv")))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    let mut logs: Vec<(PathBuf, String)> = std::fs::read_dir(dir.join(format!("{name}.logs")))
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    (
                        e.path(),
                        std::fs::read_to_string(e.path()).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    logs.sort();
    (argv, logs.into_iter().map(|(_, s)| s).collect())
}

/// `podman` with a suite's private storage, state, temp and network config under `dir`,
/// its containers.conf, the cgroupfs manager and file events (no systemd here).
pub fn podman_cmd(dir: &Path, conf: &Path) -> Command {
    let mut c = Command::new("podman");
    c.env("CONTAINERS_CONF", conf)
        .env("TMPDIR", dir.join("tmp"))
        .arg("--root")
        .arg(dir.join("root"))
        .arg("--runroot")
        .arg(dir.join("runroot"))
        .arg("--tmpdir")
        .arg(dir.join("tmp"))
        .arg("--volumepath")
        .arg(dir.join("volumes"))
        .arg("--network-config-dir")
        .arg(dir.join("networks"))
        .args([
            "--storage-driver",
            "vfs",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
        ]);
    c
}
