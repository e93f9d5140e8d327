//! containerd 1.6's checkpoint and restore with vzrun as the runc binary, beside runc:
//! `ctr task checkpoint` (the shim calls `checkpoint --image-path --work-path
//! [--leave-running]`), then `ctr containers checkpoint --rw --task` into a checkpoint image and
//! `ctr containers restore --rw --live` of it after the container is gone (the shim calls
//! `restore ... -no-subreaper --bundle`). The task counts in its shell and prints to the
//! shim's pipes.
//!
//! The daemon is private, as in integration/containerd.rs (own root, state, socket, no
//! CRI plugin), and everything it made goes at exit.

mod callers;
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use callers::{ok, run, HostDirTrace, IMAGE};
use common::Out;

struct Containerd {
    dir: PathBuf,
    sock: PathBuf,
    ns: String,
}

static DAEMON: Mutex<Option<Child>> = Mutex::new(None);
static SUITE: OnceLock<Result<Containerd, String>> = OnceLock::new();

fn suite() -> Option<&'static Containerd> {
    if let Some(why) = common::skip_reason() {
        eprintln!("SKIP: {why}");
        return None;
    }
    for t in [
        "containerd",
        "ctr",
        "containerd-shim-runc-v2",
        "runc",
        "tar",
        "sha256sum",
    ] {
        if !common::have(t) {
            eprintln!("SKIP: {t} is not installed");
            return None;
        }
    }
    let criu = Command::new("criu").arg("check").output();
    if !criu.map(|o| o.status.success()).unwrap_or(false) {
        eprintln!("SKIP: criu is missing or `criu check` fails (hack/install-criu.sh)");
        return None;
    }
    match SUITE.get_or_init(start) {
        Ok(c) => Some(c),
        Err(e) => panic!("{e}"),
    }
}

fn start() -> Result<Containerd, String> {
    callers::sweep_stale("ctdck", |pid| vec![format!("vzt-ctdck-{pid}")]);
    let dir = callers::suite_dir("ctdck");
    let sock = dir.join("containerd.sock");
    let run_containerd = HostDirTrace::new("/run/containerd");
    run_containerd.note_in(&dir, &[]);
    let c = Containerd {
        ns: format!("vzt-ctdck-{}", std::process::id()),
        sock: sock.clone(),
        dir: dir.clone(),
    };
    {
        let (dir, sock, ns) = (dir.clone(), sock.clone(), c.ns.clone());
        callers::at_exit(move || teardown(&dir, &sock, &ns, &run_containerd));
    }
    let d = dir.display();
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\", \"io.containerd.snapshotter.v1.aufs\", \
             \"io.containerd.snapshotter.v1.btrfs\", \"io.containerd.snapshotter.v1.devmapper\", \
             \"io.containerd.snapshotter.v1.zfs\", \"io.containerd.internal.v1.tracing\"]\n\n\
             [grpc]\n  address = \"{s}\"\n\n[ttrpc]\n  address = \"{s}.ttrpc\"\n\n\
             [debug]\n  address = \"\"\n\n[metrics]\n  address = \"\"\n\n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{d}/opt\"\n",
            s = sock.display()
        ),
    )
    .unwrap();
    for sub in ["fifo", "runc-root", "images"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
    let child = Command::new("containerd")
        .arg("--config")
        .arg(dir.join("config.toml"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("start containerd: {e}"))?;
    *DAEMON.lock().unwrap() = Some(child);
    let up = callers::wait_until(30, || {
        callers::run_with_deadline(c.ctr_raw().arg("version"), None, Duration::from_secs(5)).code
            == 0
    });
    if !up {
        return Err(format!(
            "containerd did not come up: {}",
            std::fs::read_to_string(dir.join("containerd.log")).unwrap_or_default()
        ));
    }
    let archive = callers::oci_archive(&dir, "images", &[callers::busybox_image()]);
    let o = run(c.ctr().args(["images", "import"]).arg(&archive));
    if o.code != 0 {
        return Err(format!("ctr images import: {o:?}"));
    }
    Ok(c)
}

fn teardown(dir: &Path, sock: &Path, ns: &str, run_containerd: &HostDirTrace) {
    let ctr = |args: &[&str]| {
        callers::run_with_deadline(
            Command::new("ctr")
                .arg("-a")
                .arg(sock)
                .arg("-n")
                .arg(ns)
                .args(args),
            None,
            Duration::from_secs(20),
        )
    };
    let tasks = ctr(&["tasks", "ls", "-q"]);
    for t in tasks.stdout.split_whitespace() {
        ctr(&["tasks", "kill", "-s", "SIGKILL", t]);
        ctr(&["tasks", "rm", "-f", t]);
    }
    for c in ctr(&["containers", "ls", "-q"]).stdout.split_whitespace() {
        ctr(&["containers", "rm", c]);
    }
    if let Ok(mut d) = DAEMON.lock() {
        if let Some(mut child) = d.take() {
            callers::stop_child(&mut child, Duration::from_secs(10));
        }
    }
    for p in callers::processes_mentioning(&sock.display().to_string()) {
        if let Some(pid) = p.split(':').next().and_then(|x| x.parse::<i32>().ok()) {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    callers::remove_cgroup_tree(ns);
    callers::remove_suite_dir(dir);
    run_containerd.remove_if_ours(&[]);
}

impl Containerd {
    fn ctr_raw(&self) -> Command {
        let mut c = Command::new("ctr");
        c.arg("-a").arg(&self.sock);
        c
    }

    fn ctr(&self) -> Command {
        let mut c = self.ctr_raw();
        c.args(["-n", &self.ns]);
        c
    }

    fn out(&self, args: &[&str]) -> Out {
        run(self.ctr().args(args))
    }

    fn runtime_opts(&self, rt: &str) -> Vec<String> {
        let mut v = vec![
            "--runc-root".to_string(),
            self.dir.join("runc-root").join(rt).display().to_string(),
        ];
        if rt == "vzrun" {
            v.push("--runc-binary".into());
            v.push(common::VZRUN.into());
        }
        v
    }

    fn status(&self, id: &str) -> String {
        self.out(&["tasks", "ls"])
            .stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .and_then(|l| l.split_whitespace().nth(2))
            .unwrap_or("")
            .to_string()
    }
}

/// Removes a task and its container (and a checkpoint image) when dropped.
struct Gone<'a>(&'a Containerd, String, String);

impl Drop for Gone<'_> {
    fn drop(&mut self) {
        let c = self.0;
        c.out(&["tasks", "kill", "-s", "SIGKILL", &self.1]);
        callers::wait_until(5, || c.status(&self.1) != "RUNNING");
        c.out(&["tasks", "rm", "-f", &self.1]);
        c.out(&["containers", "rm", &self.1]);
        c.out(&["images", "rm", &self.2]);
    }
}

const COUNTER: &str =
    "i=0; while true; do i=$((i+1)); echo $i; echo $i > /tmp/count; sleep 0.05; done";

fn count(c: &Containerd, id: &str) -> u64 {
    let o = c.out(&[
        "tasks",
        "exec",
        "--exec-id",
        &format!("x{}", std::process::id()),
        id,
        "cat",
        "/tmp/count",
    ]);
    o.stdout.trim().parse().unwrap_or(0)
}

fn flow(c: &Containerd, rt: &str) {
    let id = format!("{}-{rt}", common::unique_id("ctdck"));
    let reference = format!("vzt.example/ckpt/{id}:1");
    let _gone = Gone(c, id.clone(), reference.clone());
    let mut run_args: Vec<String> = vec!["run".into(), "-d".into()];
    run_args.push("--fifo-dir".into());
    run_args.push(c.dir.join("fifo").display().to_string());
    run_args.extend(c.runtime_opts(rt));
    run_args.extend([
        IMAGE.into(),
        id.clone(),
        "sh".into(),
        "-c".into(),
        COUNTER.into(),
    ]);
    ok(&format!("{rt}: ctr run -d"), run(c.ctr().args(&run_args)));
    assert!(
        callers::wait_until(10, || c.status(&id) == "RUNNING"),
        "{rt}"
    );
    assert!(
        callers::wait_until(5, || count(c, &id) > 5),
        "{rt}: not counting"
    );

    // A checkpoint to a directory that leaves the task running.
    let img = c.dir.join("images").join(&id);
    let o = c.out(&[
        "tasks",
        "checkpoint",
        "--image-path",
        img.to_str().unwrap(),
        &id,
    ]);
    assert_eq!(o.code, 0, "{rt}: ctr task checkpoint: {o:?}");
    assert!(
        img.join("inventory.img").exists(),
        "{rt}: no image in {}",
        img.display()
    );
    assert_eq!(c.status(&id), "RUNNING", "{rt}");
    let n = count(c, &id);
    assert!(
        callers::wait_until(5, || count(c, &id) > n),
        "{rt}: stopped counting"
    );

    // A checkpoint image, then the container gone and restored from it. --rw: the
    // counter's file (which the shell may hold open at the dump) comes back too.
    let o = c.out(&[
        "containers",
        "checkpoint",
        "--rw",
        "--task",
        "--image",
        &id,
        &reference,
    ]);
    assert_eq!(o.code, 0, "{rt}: ctr containers checkpoint: {o:?}");
    let at = count(c, &id);
    c.out(&["tasks", "kill", "-s", "SIGKILL", &id]);
    assert!(
        callers::wait_until(10, || c.status(&id) == "STOPPED"),
        "{rt}"
    );
    assert_eq!(c.out(&["tasks", "rm", &id]).code, 0);
    assert_eq!(c.out(&["containers", "rm", &id]).code, 0);

    // `ctr containers restore --live` stays attached to the task: run it in the background.
    let log = std::fs::File::create(c.dir.join(format!("{id}.restore.log"))).unwrap();
    let mut restore = c
        .ctr()
        .args(["containers", "restore", "--rw", "--live", &id, &reference])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let running = callers::wait_until(20, || c.status(&id) == "RUNNING");
    let restore_log =
        || std::fs::read_to_string(c.dir.join(format!("{id}.restore.log"))).unwrap_or_default();
    assert!(
        running,
        "{rt}: restored task not running: {}",
        restore_log()
    );
    let mut after = 0;
    callers::wait_until(5, || {
        after = count(c, &id);
        after > at
    });
    // The checkpoint image was taken after `at` was read: the count continues from there,
    // where a restarted process would be back near 1.
    assert!(
        after > at,
        "{rt}: count {after} after restore, {at} at checkpoint"
    );
    c.out(&["tasks", "kill", "-s", "SIGKILL", &id]);
    callers::stop_child(&mut restore, Duration::from_secs(10));
}

#[test]
fn ctr_task_checkpoint_and_container_restore() {
    let Some(c) = suite() else { return };
    for (rt, _) in callers::runtimes() {
        flow(c, rt);
    }
}
