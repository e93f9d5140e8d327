//! VE resource settings on real VEs: the cgroup files of whatever version this host has,
//! the effect inside (a fork bomb stops at numproc, a memory hog at ram, `nproc` shows
//! cpus), live changes with `ve set`, and beancounters checked against the kernel's own
//! counters.

mod common;

use std::path::PathBuf;

use common::{Bundle, Runtime};
use serde_json::{json, Value};

fn v2() -> bool {
    std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The cgroup directory of `pid` for a v1 controller, or the v2 directory.
fn cgroup(pid: &str, controller: &str) -> PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for line in text.lines() {
        let parts: Vec<&str> = line.splitn(3, ':').collect();
        if v2() && parts[0] == "0" {
            return PathBuf::from("/sys/fs/cgroup").join(parts[2].trim_start_matches('/'));
        }
        if parts[1].split(',').any(|c| c == controller) {
            return PathBuf::from("/sys/fs/cgroup")
                .join(controller)
                .join(parts[2].trim_start_matches('/'));
        }
    }
    panic!("no {controller} cgroup for {pid}: {text}");
}

fn read(p: PathBuf) -> String {
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

fn start(rt: &Runtime, tag: &str, args: &[&str], ann: Value) -> (String, Bundle) {
    let bundle = Bundle::with(args, |v| {
        v["annotations"] = ann;
        v["mounts"].as_array_mut().unwrap().push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]}));
    });
    let id = common::unique_id(tag);
    rt.track(&id);
    let o = rt.run(&["run", "-d", "-b", bundle.p(), &id]);
    assert_eq!(o.code, 0, "{o:?}");
    (id, bundle)
}

fn stat(rt: &Runtime, id: &str, resource: &str) -> Value {
    let rows = rt.run(&["ve", "stat", "--json", id]).json();
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == resource)
        .cloned()
        .unwrap_or_else(|| panic!("no {resource} row: {rows}"))
}

#[test]
fn settings_land_in_the_cgroup_files() {
    require_root!();
    let rt = Runtime::vzrun();
    let (id, _b) = start(
        &rt,
        "cg",
        &["sleep", "600"],
        json!({
            "io.vzrun.cpuunits": "2000", "io.vzrun.cpulimit": "50", "io.vzrun.ram": "64M",
            "io.vzrun.memguarantee": "50", "io.vzrun.numproc": "40",
        }),
    );
    let pid = rt.state(&id)["pid"].to_string();
    if v2() {
        let d = cgroup(&pid, "");
        assert_eq!(read(d.join("cpu.max")), "50000 100000");
        assert_eq!(read(d.join("memory.max")), (64u64 << 20).to_string());
        assert_eq!(read(d.join("memory.low")), (32u64 << 20).to_string());
        assert_eq!(read(d.join("pids.max")), "40");
        assert_ne!(
            read(d.join("cpu.weight")),
            "100",
            "cpuunits 2000 is above the default weight"
        );
    } else {
        eprintln!("cgroup v1 host: checking the v1 files (the v2 mapping is libcgroups', unit-tested there)");
        assert_eq!(read(cgroup(&pid, "cpu").join("cpu.shares")), "2048");
        assert_eq!(read(cgroup(&pid, "cpu").join("cpu.cfs_quota_us")), "50000");
        assert_eq!(
            read(cgroup(&pid, "memory").join("memory.limit_in_bytes")),
            (64u64 << 20).to_string()
        );
        assert_eq!(
            read(cgroup(&pid, "memory").join("memory.soft_limit_in_bytes")),
            (32u64 << 20).to_string()
        );
        assert_eq!(read(cgroup(&pid, "pids").join("pids.max")), "40");
    }
    // Live change, effective at once and visible in ve stat.
    let o = rt.run(&["ve", "set", &id, "--ram", "96M", "--numproc", "50"]);
    assert_eq!(o.code, 0, "{o:?}");
    let mem = if v2() {
        cgroup(&pid, "").join("memory.max")
    } else {
        cgroup(&pid, "memory").join("memory.limit_in_bytes")
    };
    assert_eq!(read(mem), (96u64 << 20).to_string());
    assert_eq!(stat(&rt, &id, "numproc")["limit"], 50);
    assert_eq!(stat(&rt, &id, "physpages")["limit"], (96u64 << 20) / 4096);
}

#[test]
fn fork_bomb_stops_at_numproc_and_counts_failures() {
    require_root!();
    let rt = Runtime::vzrun();
    let (id, _b) = start(
        &rt,
        "forks",
        &["sleep", "600"],
        json!({"io.vzrun.numproc": "12"}),
    );
    let o = rt.run(&[
        "exec",
        &id,
        "sh",
        "-c",
        "i=0; while [ $i -lt 40 ]; do sleep 30 & i=$((i+1)); done 2>/dev/null; echo done",
    ]);
    assert!(o.stdout.contains("done") || o.code != 0, "{o:?}");
    let row = stat(&rt, &id, "numproc");
    assert!(row["held"].as_u64().unwrap() <= 12, "{row}");
    assert!(
        row["failcnt"].as_u64().unwrap() > 0,
        "failed forks are counted: {row}"
    );
    assert_eq!(row["limit"], 12);
    // The kernel's own counter says the same.
    let pid = rt.state(&id)["pid"].to_string();
    let dir = if v2() {
        cgroup(&pid, "")
    } else {
        cgroup(&pid, "pids")
    };
    let events = read(dir.join("pids.events"));
    assert!(
        events.contains(&format!("max {}", row["failcnt"])),
        "{events} vs {row}"
    );
}

#[test]
fn memory_hog_is_held_at_ram() {
    require_root!();
    let rt = Runtime::vzrun();
    let (id, _b) = start(
        &rt,
        "hog",
        &["sleep", "600"],
        json!({"io.vzrun.ram": "32M", "io.vzrun.swap": "0"}),
    );
    // tmpfs pages are charged to the VE: writing 64M into /tmp cannot succeed.
    let _ = rt.run(&[
        "exec",
        &id,
        "sh",
        "-c",
        "dd if=/dev/zero of=/tmp/fill bs=1M count=64 2>&1; sync",
    ]);
    let row = stat(&rt, &id, "physpages");
    assert!(
        row["held"].as_u64().unwrap() <= (32u64 << 20) / 4096,
        "{row}"
    );
    assert!(row["failcnt"].as_u64().unwrap() > 0, "{row}");
}

#[test]
fn cpus_limit_what_the_ve_sees() {
    require_root!();
    let rt = Runtime::vzrun();
    let (id, _b) = start(
        &rt,
        "cpus",
        &["sleep", "600"],
        json!({"io.vzrun.cpus": "1"}),
    );
    assert_eq!(rt.run(&["exec", &id, "nproc"]).stdout.trim(), "1");
}

#[test]
fn bad_and_conflicting_values_are_named() {
    require_root!();
    let rt = Runtime::vzrun();
    for (ann, edit_res, words) in [
        (
            json!({"io.vzrun.cpuunits": "5"}),
            false,
            "io.vzrun.cpuunits: 5 is out of range (8..500000)",
        ),
        (json!({"io.vzrun.ram": "banana"}), false, "io.vzrun.ram"),
        (
            json!({"io.vzrun.cpulimit": "100000"}),
            false,
            "io.vzrun.cpulimit",
        ),
        (
            json!({"io.vzrun.ram": "64M"}),
            true,
            "linux.resources.memory.limit",
        ),
        (
            json!({"io.vzrun.ioprio": "8"}),
            false,
            "io.vzrun.ioprio: 8 is out of range (0..7)",
        ),
    ] {
        let bundle = Bundle::with(&["true"], |v| {
            v["annotations"] = ann.clone();
            if edit_res {
                v["linux"]["resources"] = json!({"memory": {"limit": 134217728}});
            }
        });
        let id = common::unique_id("badres");
        let o = rt.run(&["run", "-b", bundle.p(), &id]);
        assert_ne!(o.code, 0, "{ann}");
        assert!(o.stderr.contains(words), "{ann}: {}", o.stderr);
        assert!(common::cgroups_named(&id).is_empty());
    }
    let (id, _b) = start(
        &rt,
        "badset",
        &["sleep", "600"],
        json!({"io.vzrun.ram": "64M"}),
    );
    for (flag, value, words) in [
        ("--ram", "banana", "--ram"),
        ("--cpuunits", "5", "--cpuunits: 5 is out of range"),
        ("--cpulimit", "999999", "--cpulimit"),
    ] {
        let o = rt.run(&["ve", "set", &id, flag, value]);
        assert_ne!(o.code, 0);
        assert!(o.stderr.contains(words), "{flag}: {}", o.stderr);
    }
    assert_eq!(
        stat(&rt, &id, "physpages")["limit"],
        (64u64 << 20) / 4096,
        "a refused ve set changes nothing"
    );
}

#[test]
fn ve_list_shows_vzlist_fields_with_suffixes() {
    require_root!();
    let rt = Runtime::vzrun();
    let (id, _b) = start(
        &rt,
        "vzlist",
        &["sleep", "600"],
        json!({"io.vzrun.numproc": "33", "io.vzrun.ram": "48M"}),
    );
    let rows = rt
        .run(&[
            "ve",
            "list",
            "-o",
            "ctid,status,numproc,numproc.l,numproc.f,ram.l",
            "-s",
            "ctid",
            "-j",
        ])
        .json();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ctid"] == id.as_str())
        .cloned()
        .expect("listed");
    assert_eq!(row["status"], "running");
    assert_eq!(row["numproc.l"], 33);
    assert!(row["numproc"].as_u64().unwrap() >= 1);
    assert_eq!(row["numproc.f"], 0);
    assert_eq!(row["ram.l"], (48u64 << 20) / 4096);
    let table = rt.run(&["ve", "list", "-o", "ctid,numproc.l"]).stdout;
    assert!(table.starts_with("CTID"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&id) && l.trim_end().ends_with("33")),
        "{table}"
    );
    let o = rt.run(&["ve", "list", "-o", "ctid,bogus"]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("unknown field"), "{o:?}");
}
