//! podman's checkpoint and restore with vzrun as the runtime, beside runc: `podman
//! container checkpoint` / `restore` (with --tcp-established), and --export / --import
//! into a new container. The VE's process counts in its shell and prints to conmon's
//! pipes, so a restore that lost its state or its stdio shows in `podman logs`.
//!
//! podman's setup follows integration/podman.rs (private storage, state, config, cgroup
//! parent, no network, the busybox OCI archive).

mod callers;
mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use callers::{ok, run, HostDirTrace, IMAGE};
use common::Out;

struct Podman {
    dir: PathBuf,
    conf: PathBuf,
    cgroup_parent: String,
}

static SUITE: OnceLock<Result<Podman, String>> = OnceLock::new();

fn suite() -> Option<&'static Podman> {
    let tools = ["podman", "conmon", "runc", "tar", "sha256sum"];
    if let Some(why) = callers::missing_tool(&tools).or_else(common::criu_missing) {
        eprintln!("SKIP: {why}");
        return None;
    }
    match SUITE.get_or_init(setup) {
        Ok(p) => Some(p),
        Err(e) => panic!("{e}"),
    }
}

fn setup() -> Result<Podman, String> {
    callers::sweep_stale("podck", |pid| vec![format!("vzt-podck-{pid}")]);
    let dir = callers::suite_dir("podck");
    let var_lib = HostDirTrace::new("/var/lib/containers");
    var_lib.note_in(&dir, &["cache/blob-info-cache-v1.boltdb"]);
    let p = Podman {
        conf: dir.join("containers.conf"),
        cgroup_parent: format!("/vzt-podck-{}", std::process::id()),
        dir: dir.clone(),
    };
    {
        let pm = Podman {
            dir: dir.clone(),
            conf: p.conf.clone(),
            cgroup_parent: p.cgroup_parent.clone(),
        };
        callers::at_exit(move || {
            callers::run_with_deadline(
                pm.cmd().args(["rm", "--all", "--force", "--time", "0"]),
                None,
                Duration::from_secs(60),
            );
            for line in callers::processes_mentioning(&pm.dir.display().to_string()) {
                if let Some(pid) = line.split(':').next().and_then(|x| x.parse::<i32>().ok()) {
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
            callers::remove_cgroup_tree(&pm.cgroup_parent);
            callers::remove_suite_dir(&pm.dir);
            var_lib.remove_if_ours(&["cache/blob-info-cache-v1.boltdb"]);
        });
    }
    std::fs::write(
        &p.conf,
        format!(
            "[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n\
             netns = \"none\"\n\n[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
             lock_type = \"file\"\n\n[engine.runtimes]\nvzrun = [\"{}\"]\n",
            common::VZRUN
        ),
    )
    .unwrap();
    for sub in ["root", "runroot", "tmp", "volumes", "networks", "export"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let archive = callers::oci_archive(&dir, "image", &[callers::busybox_image()]);
    let o = run(p.cmd().arg("load").arg("-i").arg(&archive));
    if o.code != 0 {
        return Err(format!("podman load: {o:?}"));
    }
    Ok(p)
}

impl Podman {
    fn cmd(&self) -> Command {
        callers::podman_cmd(&self.dir, &self.conf)
    }

    fn out(&self, args: &[&str]) -> Out {
        run(self.cmd().args(args))
    }

    fn status(&self, name: &str) -> String {
        self.out(&["inspect", "--format", "{{.State.Status}}", name])
            .stdout
            .trim()
            .to_string()
    }

    /// The last number the container printed.
    fn last_count(&self, name: &str) -> u64 {
        let o = self.out(&["logs", name]);
        o.stdout
            .lines()
            .rev()
            .find_map(|l| l.trim().parse().ok())
            .unwrap_or(0)
    }
}

/// Removes containers by name when dropped.
struct Names<'a>(&'a Podman, Vec<String>);

impl Drop for Names<'_> {
    fn drop(&mut self) {
        for n in &self.1 {
            self.0.out(&["rm", "--force", "--time", "0", "--ignore", n]);
        }
    }
}

const COUNTER: &str = "i=0; while true; do i=$((i+1)); echo $i; sleep 0.05; done";

fn wait_count_above(pm: &Podman, name: &str, n: u64) -> u64 {
    let mut last = 0;
    callers::wait_until(5, || {
        last = pm.last_count(name);
        last > n
    });
    last
}

/// Every number in the log follows the one before: a process that restarted would
/// begin again at 1.
fn assert_counts_up(pm: &Podman, rt: &str, name: &str) {
    let nums: Vec<u64> = pm
        .out(&["logs", name])
        .stdout
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    for w in nums.windows(2) {
        assert_eq!(w[1], w[0] + 1, "{rt}: {name}'s count jumps: {nums:?}");
    }
}

fn flow(pm: &Podman, rt: &str, bin: &str, tty: bool) {
    let name = common::unique_id(if tty { "podckt" } else { "podck" });
    let name2 = format!("{name}-imported");
    let _guard = Names(pm, vec![name.clone(), name2.clone()]);
    ok(
        &format!("{rt}: podman run"),
        run(pm.cmd().args([
            "run",
            "-d",
            "--pull=never",
            "--cgroup-parent",
            &pm.cgroup_parent,
            "--runtime",
            bin,
            "--name",
            &name,
            if tty { "-t" } else { "--tty=false" },
            IMAGE,
            "sh",
            "-c",
            COUNTER,
        ])),
    );
    let before = wait_count_above(pm, &name, 10);
    assert!(before > 10, "{rt}: the counter does not count: {before}");

    let o = pm.out(&["container", "checkpoint", "--tcp-established", &name]);
    assert_eq!(o.code, 0, "{rt}: podman container checkpoint: {o:?}");
    assert_eq!(pm.status(&name), "exited", "{rt}");
    let stopped_at = pm.last_count(&name);
    let o = pm.out(&["container", "restore", "--tcp-established", &name]);
    assert_eq!(o.code, 0, "{rt}: podman container restore: {o:?}");
    assert_eq!(pm.status(&name), "running", "{rt}");
    let after = wait_count_above(pm, &name, stopped_at);
    assert!(
        after > stopped_at,
        "{rt}: counter after restore {after}, at checkpoint {stopped_at} (state or stdout lost)"
    );
    assert_counts_up(pm, rt, &name);
    let o = pm.out(&["exec", &name, "echo", "alive"]);
    assert_eq!(o.stdout, "alive\n", "{rt}: exec after restore: {o:?}");

    // Export, remove, import under a new name.
    let archive = pm.dir.join("export").join(format!("{name}.tar.gz"));
    let o = pm.out(&[
        "container",
        "checkpoint",
        "--export",
        archive.to_str().unwrap(),
        &name,
    ]);
    assert_eq!(o.code, 0, "{rt}: checkpoint --export: {o:?}");
    let exported_at = pm.last_count(&name);
    assert_eq!(pm.out(&["rm", &name]).code, 0);
    let o = pm.out(&[
        "container",
        "restore",
        "--import",
        archive.to_str().unwrap(),
        "--name",
        &name2,
    ]);
    assert_eq!(o.code, 0, "{rt}: restore --import: {o:?}");
    assert_eq!(pm.status(&name2), "running", "{rt}");
    // podman carries the log over in the archive: the imported process continues it.
    let after = wait_count_above(pm, &name2, exported_at);
    assert!(
        after > exported_at,
        "{rt}: imported counter at {after}, exported at {exported_at}"
    );
    assert_counts_up(pm, rt, &name2);
    let o = pm.out(&["rm", "--force", "--time", "0", &name2]);
    assert_eq!(o.code, 0, "{o:?}");
}

#[test]
fn podman_checkpoint_restore_export_import() {
    let Some(pm) = suite() else { return };
    for (rt, bin) in callers::runtimes() {
        flow(pm, rt, &bin, false);
    }
    // vzrun's default root holds nothing of the suite's containers afterwards.
    let left: Vec<_> = std::fs::read_dir("/run/vzrun")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.contains("podck"))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

/// The same with a terminal (`podman run -t`): CRIU hands the restored terminal's master
/// to conmon through the console socket.
#[test]
fn podman_checkpoint_restore_with_a_terminal() {
    let Some(pm) = suite() else { return };
    for (rt, bin) in callers::runtimes() {
        flow(pm, rt, &bin, true);
    }
}
