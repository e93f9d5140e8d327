//! The containerd daemon of the containerd suite (integration/containerd.rs): started once
//! per test process with a private config, root, state dir and socket, its CRI plugin given
//! a `vzrun` runtime handler; `ctr` in the suite's namespace; tasks that clean up after
//! themselves; and the teardown at exit that leaves the host as it was (containers, the
//! daemon, its shims and their sockets, cgroups, the temp dir).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde_json::json;

use super::grpc::{curl_h2, grpc_call};
use super::{ok, run, HostDirTrace, IMAGE};
use crate::common::{self, Out};

/// The CRI's sandbox image: a long sleep.
pub const PAUSE_IMAGE: &str = "docker.io/library/vzt-pause:latest";
/// An image whose config sets no environment at all (no PATH), as some minimal images do.
pub const NOENV_IMAGE: &str = "docker.io/library/vzt-noenv:latest";
/// The containerd namespace the CRI plugin uses.
pub const CRI_NS: &str = "k8s.io";

/// The suite's daemon: its temp dir (config, root, state, logs) and socket.
pub struct Containerd {
    pub dir: PathBuf,
    pub sock: PathBuf,
    /// containerd namespace of the ctr cases; also the parent cgroup ctr gives containers.
    pub ns: String,
    /// Parent cgroup of the CRI pods.
    pub cri_cgroup: String,
    /// Whether curl can speak HTTP/2 over a unix socket (for the gRPC calls ctr lacks).
    pub curl_h2: bool,
}

static DAEMON: Mutex<Option<Child>> = Mutex::new(None);
static SUITE: OnceLock<Result<Containerd, String>> = OnceLock::new();

/// The suite's daemon, started by the first test that needs it; `None` (after printing
/// `SKIP: reason`) when the host lacks root or a tool.
pub fn suite() -> Option<&'static Containerd> {
    let tools = [
        "containerd",
        "ctr",
        "containerd-shim-runc-v2",
        "runc",
        "tar",
        "sha256sum",
    ];
    if let Some(why) = super::missing_tool(&tools) {
        eprintln!("SKIP: {why}");
        return None;
    }
    match SUITE.get_or_init(start_containerd) {
        Ok(c) => Some(c),
        Err(e) => panic!("{e}"),
    }
}

fn config_toml(dir: &Path, sock: &Path) -> String {
    let d = dir.display();
    let cri = r#"plugins."io.containerd.grpc.v1.cri""#;
    format!(
        r#"version = 2
root = "{d}/root"
state = "{d}/state"
# Snapshotters and runtimes this suite does not use, so nothing probes the host for them.
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{sock}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"

[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # Root here may lack CAP_SYS_RESOURCE: a sandbox's oom_score_adj of -998 would fail.
  restrict_oom_score_adj = true
  [{cri}.cni]
    bin_dir = "{d}/cni/bin"
    conf_dir = "{d}/cni/conf"
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        Root = "{d}/cri-root/runc"
    # The handler a Kubernetes RuntimeClass names (`handler: vzrun`).
    [{cri}.containerd.runtimes.vzrun]
      runtime_type = "io.containerd.runc.v2"
      pod_annotations = ["io.vzrun.*"]
      container_annotations = ["io.vzrun.*"]
      [{cri}.containerd.runtimes.vzrun.options]
        BinaryName = "{vzrun}"
        Root = "{d}/cri-root/vzrun"
"#,
        sock = sock.display(),
        vzrun = common::VZRUN,
    )
}

fn start_containerd() -> Result<Containerd, String> {
    // Shims of an earlier run that died before its cleanup (their daemon's socket is in a
    // suite dir whose test process is gone).
    let tmp = std::env::temp_dir().display().to_string();
    kill_shims(|address| {
        address
            .strip_prefix(&format!("{tmp}/vzt-ctd-"))
            .and_then(|r| r.split('-').next())
            .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
    });
    super::sweep_stale("ctd", |pid| {
        vec![format!("vzt-ctd-{pid}"), format!("vzt-cri-{pid}")]
    });
    let dir = super::suite_dir("ctd");
    let sock = dir.join("containerd.sock");
    let run_containerd = HostDirTrace::new("/run/containerd");
    run_containerd.note_in(&dir, &[]);
    let c = Containerd {
        ns: format!("vzt-ctd-{}", std::process::id()),
        cri_cgroup: format!("/vzt-cri-{}", std::process::id()),
        sock: sock.clone(),
        curl_h2: curl_h2(),
        dir: dir.clone(),
    };
    {
        // Registered before anything can fail, so a half-started suite is cleaned too.
        let (dir, sock, ns, cri_cgroup) = (
            dir.clone(),
            sock.clone(),
            c.ns.clone(),
            c.cri_cgroup.clone(),
        );
        super::at_exit(move || teardown(&dir, &sock, &ns, &cri_cgroup, &run_containerd));
    }
    std::fs::write(dir.join("config.toml"), config_toml(&dir, &sock)).unwrap();
    for sub in [
        "cni/bin",
        "cni/conf",
        "fifo",
        "runc-root",
        "cri-root",
        "images",
    ] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
    // Its temporary files (a checkpoint's `ctrd-checkpoint*` work directories, which
    // it leaves behind) go to the suite's directory, removed at teardown.
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).map_err(|e| format!("create {}: {e}", tmp.display()))?;
    let child = Command::new("containerd")
        .env("TMPDIR", &tmp)
        .arg("--config")
        .arg(dir.join("config.toml"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("start containerd: {e}"))?;
    let pid = child.id();
    *DAEMON.lock().unwrap() = Some(child);
    let up = common::wait_until(30, || {
        c.ctr_raw().arg("version").status_quiet()
            && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok()
    });
    if !up {
        return Err(format!(
            "containerd did not come up; its log:\n{}",
            std::fs::read_to_string(dir.join("containerd.log")).unwrap_or_default()
        ));
    }
    // One archive, three images over one layer: busybox for the cases, a "pause" image (a
    // long sleep) for the CRI's pod sandboxes, and one without any Env.
    let archive = super::oci_archive(
        &dir,
        "images",
        &[
            super::busybox_image(),
            super::ImageDef {
                reference: PAUSE_IMAGE,
                config: json!({
                    "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                    "Entrypoint": ["/bin/sleep", "2147483647"],
                }),
            },
            super::ImageDef {
                reference: NOENV_IMAGE,
                config: json!({"Cmd": ["/bin/echo", "no PATH needed"]}),
            },
        ],
    );
    for ns in [c.ns.as_str(), CRI_NS] {
        let o = run(c
            .ctr_raw()
            .args(["-n", ns, "images", "import"])
            .arg(&archive));
        if o.code != 0 {
            return Err(format!("ctr images import: {o:?}"));
        }
    }
    Ok(c)
}

trait Quiet {
    fn status_quiet(&mut self) -> bool;
}

impl Quiet for Command {
    fn status_quiet(&mut self) -> bool {
        super::run_with_deadline(self, None, Duration::from_secs(5)).code == 0
    }
}

/// Runs at exit: every container of the suite's namespaces, the daemon, stray shims of
/// this daemon, mounts, cgroups and the temp dir.
fn teardown(dir: &Path, sock: &Path, ns: &str, cri_cgroup: &str, run_containerd: &HostDirTrace) {
    let ctr = |args: &[&str]| {
        super::run_with_deadline(
            Command::new("ctr").arg("-a").arg(sock).args(args),
            None,
            Duration::from_secs(20),
        )
    };
    let daemon_up = DAEMON
        .lock()
        .map(|mut d| d.as_mut().map(|c| c.try_wait().ok().flatten().is_none()))
        .ok()
        .flatten()
        .unwrap_or(false);
    if daemon_up {
        for n in [ns, CRI_NS] {
            let tasks = ctr(&["-n", n, "tasks", "ls", "-q"]);
            for t in tasks.stdout.split_whitespace() {
                ctr(&["-n", n, "tasks", "kill", "-s", "SIGKILL", t]);
            }
            for t in tasks.stdout.split_whitespace() {
                ctr(&["-n", n, "tasks", "rm", "-f", t]);
            }
            for c in ctr(&["-n", n, "containers", "ls", "-q"])
                .stdout
                .split_whitespace()
            {
                ctr(&["-n", n, "containers", "rm", c]);
            }
        }
    }
    if let Ok(mut d) = DAEMON.lock() {
        if let Some(mut child) = d.take() {
            super::stop_child(&mut child, Duration::from_secs(10));
        }
    }
    // Shims of this daemon (their command line names its socket) outlive it by design.
    kill_shims(|address| Path::new(address) == sock);
    super::remove_cgroup_tree(ns);
    super::remove_cgroup_tree(cri_cgroup);
    super::remove_suite_dir(dir);
    run_containerd.remove_if_ours(&[]);
}

/// Kills the runc v2 shims whose containerd address satisfies `whose`, and removes the
/// socket each had in /run/containerd/s (containerd 1.6 puts it there whatever its config
/// says, named sha256("<address>/<namespace>/<id>"), and a killed shim cannot remove it).
fn kill_shims(whose: impl Fn(&str) -> bool) {
    for p in super::processes_mentioning("containerd-shim-runc-v2") {
        let Some((pid, cmdline)) = p.split_once(": ") else {
            continue;
        };
        let args: Vec<&str> = cmdline.split(' ').collect();
        let arg = |name: &str| {
            args.iter()
                .position(|a| *a == name)
                .and_then(|i| args.get(i + 1))
                .copied()
        };
        let (Some(ns), Some(id), Some(address)) = (arg("-namespace"), arg("-id"), arg("-address"))
        else {
            continue;
        };
        if !whose(address) {
            continue;
        }
        if let Ok(pid) = pid.parse::<i32>() {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let key = format!("{address}/{ns}/{id}");
        let sum = super::run_with_deadline(
            &mut Command::new("sha256sum"),
            Some(key.as_bytes()),
            Duration::from_secs(10),
        );
        if let Some(hex) = sum.stdout.split_whitespace().next() {
            let _ = std::fs::remove_file(Path::new("/run/containerd/s").join(hex));
        }
    }
}

impl Containerd {
    pub fn ctr_raw(&self) -> Command {
        let mut c = Command::new("ctr");
        // As the daemon's: whatever ctr leaves in a temp dir goes with the suite's.
        c.env("TMPDIR", self.dir.join("tmp"))
            .arg("-a")
            .arg(&self.sock);
        c
    }

    /// `ctr` in the suite's namespace.
    pub fn ctr(&self) -> Command {
        let mut c = self.ctr_raw();
        c.args(["-n", &self.ns]);
        c
    }

    pub fn ctr_out(&self, args: &[&str]) -> Out {
        run(self.ctr().args(args))
    }

    pub fn runc_root(&self, rt: &str) -> PathBuf {
        self.dir.join("runc-root").join(rt)
    }

    /// The runtime's state directory for the suite's namespace (what `--root` the shim gives it).
    pub fn state_root(&self, rt: &str) -> PathBuf {
        self.runc_root(rt).join(&self.ns)
    }

    /// `ctr run` options choosing the runtime: vzrun by `--runc-binary`, runc by default.
    pub fn run_opts(&self, rt: &str) -> Vec<String> {
        let mut v = vec![
            "--fifo-dir".to_string(),
            self.dir.join("fifo").display().to_string(),
            "--runc-root".to_string(),
            self.runc_root(rt).display().to_string(),
        ];
        if rt == "vzrun" {
            v.push("--runc-binary".into());
            v.push(common::VZRUN.into());
        }
        v
    }

    /// `ctr run [opts] IMAGE ID args...` (attached unless opts say otherwise).
    pub fn run_cmd(&self, rt: &str, opts: &[&str], id: &str, args: &[&str]) -> Command {
        let mut c = self.ctr();
        c.arg("run").args(self.run_opts(rt)).args(opts);
        c.arg(IMAGE).arg(id).args(args);
        c
    }

    /// Starts `args` detached (`ctr run -d`) and returns a guard that deletes it.
    pub fn run_detached(&self, rt: &str, tag: &str, opts: &[&str], args: &[&str]) -> Task<'_> {
        let id = format!("{}-{rt}", common::unique_id(tag));
        let mut o: Vec<&str> = vec!["-d"];
        o.extend_from_slice(opts);
        let task = Task {
            ctd: self,
            id: id.clone(),
        };
        ok(
            &format!("{rt}: ctr run -d"),
            run(&mut self.run_cmd(rt, &o, &id, args)),
        );
        assert!(
            task.wait_status("RUNNING"),
            "{rt}: task {id} never ran: {:?}",
            self.ctr_out(&["tasks", "ls"])
        );
        task
    }

    /// A unary gRPC call over the daemon's socket; `Err((status, message))` on failure.
    pub fn grpc(
        &self,
        ns: Option<&str>,
        method: &str,
        msg: &[u8],
    ) -> Result<Vec<u8>, (u32, String)> {
        grpc_call(&self.sock, ns, method, msg)
    }
}

/// A task started by a test; killed and deleted (with its container) when dropped.
pub struct Task<'a> {
    pub ctd: &'a Containerd,
    pub id: String,
}

impl Task<'_> {
    pub fn status(&self) -> String {
        let o = self.ctd.ctr_out(&["tasks", "ls"]);
        o.stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(&self.id))
            .and_then(|l| l.split_whitespace().nth(2))
            .unwrap_or("")
            .to_string()
    }

    pub fn wait_status(&self, want: &str) -> bool {
        common::wait_until(10, || self.status() == want)
    }

    pub fn pid(&self) -> i32 {
        let o = self.ctd.ctr_out(&["tasks", "ls"]);
        o.stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(&self.id))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no pid for {}: {o:?}", self.id))
    }

    /// Kills the task with SIGKILL, waits for it to stop, then deletes it and its container.
    pub fn kill_and_delete(&self) -> Out {
        self.ctd
            .ctr_out(&["tasks", "kill", "-s", "SIGKILL", &self.id]);
        assert!(
            self.wait_status("STOPPED"),
            "{}: SIGKILL did not stop the task",
            self.id
        );
        self.delete()
    }

    /// Deletes the task and the container the way a user does; returns `ctr tasks rm`.
    pub fn delete(&self) -> Out {
        let o = self.ctd.ctr_out(&["tasks", "rm", &self.id]);
        self.ctd.ctr_out(&["containers", "rm", &self.id]);
        o
    }
}

impl Drop for Task<'_> {
    fn drop(&mut self) {
        let c = self.ctd;
        if c.ctr_out(&["tasks", "ls", "-q"])
            .stdout
            .split_whitespace()
            .any(|t| t == self.id)
        {
            c.ctr_out(&["tasks", "resume", &self.id]);
            c.ctr_out(&["tasks", "kill", "-a", "-s", "SIGKILL", &self.id]);
            common::wait_until(5, || self.status() == "STOPPED");
            c.ctr_out(&["tasks", "rm", "-f", &self.id]);
        }
        c.ctr_out(&["containers", "rm", &self.id]);
    }
}
