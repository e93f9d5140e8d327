//! VE resource settings on real VEs: the cgroup files of whatever version this host has,
//! the effect inside (a fork bomb stops at numproc, a memory hog at ram, `nproc` shows
//! cpus), live changes with `ve set`, and beancounters checked against the kernel's own
//! counters. Addresses: 198.51.100.131-132 only.

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
    common::ve_stat_row(rt, id, resource)
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
    // -j: every field of each VE, whatever -o says (docs/json.md), beancounters nested.
    let rows = rt
        .run(&["ve", "list", "-o", "ctid,status", "-s", "ctid", "-j", &id])
        .json();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ctid"] == id.as_str())
        .cloned()
        .expect("listed");
    assert_eq!(row["status"], "running");
    let numproc = &row["beancounters"]["numproc"];
    assert_eq!(numproc["limit"], 33, "{row}");
    assert!(numproc["held"].as_u64().unwrap() >= 1, "{row}");
    assert_eq!(numproc["failcnt"], 0, "{row}");
    assert_eq!(
        row["beancounters"]["physpages"]["limit"],
        (48u64 << 20) / 4096,
        "{row}"
    );
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

/// Every number in a JSON value, with its path.
fn numbers(v: &Value, path: String, out: &mut Vec<(String, f64)>) {
    match v {
        Value::Number(n) => out.push((path, n.as_f64().unwrap())),
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                numbers(x, format!("{path}[{i}]"), out);
            }
        }
        Value::Object(m) => {
            for (k, x) in m {
                numbers(x, format!("{path}.{k}"), out);
            }
        }
        _ => {}
    }
}

/// One way to say unlimited: `null` in JSON (never a huge number a JSON reader rounds),
/// `unlimited` in the tables. maxheld is never below held, and numfile counts the open
/// files of the VE's processes as /proc shows them.
#[test]
fn unlimited_is_null_and_counts_are_whole() {
    require_root!();
    let rt = Runtime::vzrun();
    // No ram, swap or kmem limit; a private area; three files held open by the init.
    let bundle = Bundle::with(
        &[
            "sh",
            "-c",
            "exec 3</etc/passwd 4</etc/passwd 5</etc/passwd; exec sleep 600",
        ],
        |v| {
            v["root"]["readonly"] = json!(false);
            v["annotations"] = json!({"io.vzrun.numproc": "20", "io.vzrun.diskspace": "48M"});
        },
    );
    let id = common::unique_id("unlim");
    rt.track(&id);
    let o = rt.run(&["run", "-d", "-b", bundle.p(), &id]);
    assert_eq!(o.code, 0, "{o:?}");
    let stat = rt.run(&["ve", "stat", "--json", &id]).json();
    let listed = rt.run(&["ve", "list", "-j", &id]).json();
    for (what, v) in [("ve stat --json", &stat), ("ve list -j", &listed)] {
        let mut all = Vec::new();
        numbers(v, String::new(), &mut all);
        for (path, n) in &all {
            assert!(
                *n <= (1u64 << 53) as f64,
                "{what}: {path} = {n} is above 2^53, which JSON readers round: {v}"
            );
        }
    }
    assert_eq!(
        listed[0]["beancounters"]["physpages"]["limit"],
        stat["beancounters"]["physpages"]["limit"]
    );
    let bc = &stat["beancounters"];
    for unlimited in ["physpages", "swappages", "kmemsize"] {
        assert!(bc[unlimited]["limit"].is_null(), "{unlimited}: {stat}");
        assert!(bc[unlimited]["barrier"].is_null(), "{unlimited}: {stat}");
    }
    assert_eq!(bc["numproc"]["limit"], 20, "{stat}");
    for (name, row) in bc.as_object().expect("beancounters by name") {
        let (held, maxheld) = (row["held"].as_u64(), row["maxheld"].as_u64());
        assert!(maxheld >= held, "{name}: maxheld below held: {stat}");
    }
    assert!(bc["diskspace"]["held"].as_u64() > Some(0), "{stat}");
    // numfile: the files the init holds, as the kernel lists them.
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count() as u64;
    assert!(open >= 6, "stdio and the three files");
    assert_eq!(bc["numfile"]["held"], open, "{stat}");
    // Tables say "unlimited" for the same values.
    let table = rt.run(&["ve", "stat", &id]).stdout;
    let physpages = table
        .lines()
        .find(|l| l.starts_with("physpages"))
        .unwrap_or_else(|| panic!("{table}"));
    assert_eq!(
        physpages
            .split_whitespace()
            .skip(3)
            .take(2)
            .collect::<Vec<_>>(),
        ["unlimited", "unlimited"],
        "{table}"
    );
    let table = rt
        .run(&[
            "ve",
            "list",
            "-H",
            "-o",
            "ctid,ram.l,swap.b,kmemsize.l",
            &id,
        ])
        .stdout;
    assert_eq!(
        table.split_whitespace().collect::<Vec<_>>(),
        [id.as_str(), "unlimited", "unlimited", "unlimited"],
        "{table}"
    );
}

/// CPU time the VE's cgroup has used, in nanoseconds.
fn cpu_used_ns(pid: &str) -> u64 {
    if v2() {
        let text = read(cgroup(pid, "").join("cpu.stat"));
        let us: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("usage_usec "))
            .and_then(|v| v.trim().parse().ok())
            .expect("usage_usec");
        us * 1000
    } else {
        read(cgroup(pid, "cpuacct").join("cpuacct.usage"))
            .parse()
            .expect("cpuacct.usage")
    }
}

/// CPUs used by each VE over the same window.
fn cpu_share(pids: &[&str], secs: f64) -> Vec<f64> {
    let before: Vec<u64> = pids.iter().map(|p| cpu_used_ns(p)).collect();
    let t = std::time::Instant::now();
    std::thread::sleep(std::time::Duration::from_secs_f64(secs));
    let wall = t.elapsed().as_nanos() as f64;
    pids.iter()
        .zip(before)
        .map(|(p, b)| (cpu_used_ns(p) - b) as f64 / wall)
        .collect()
}

const BUSY: &[&str] = &["sh", "-c", "while :; do :; done"];

#[test]
fn cpulimit_50_holds_a_busy_loop_at_half_a_cpu() {
    require_root!();
    let rt = Runtime::vzrun();
    let (id, _b) = start(&rt, "cpulim", BUSY, json!({"io.vzrun.cpulimit": "50"}));
    let pid = rt.state(&id)["pid"].to_string();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let used = cpu_share(&[&pid], 2.0)[0];
    assert!(
        (0.35..=0.62).contains(&used),
        "cpulimit 50 used {used:.2} CPUs"
    );
    // Raised live: the same loop now gets more.
    assert_eq!(rt.run(&["ve", "set", &id, "--cpulimit", "100"]).code, 0);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let used = cpu_share(&[&pid], 2.0)[0];
    assert!(used > 0.7, "cpulimit 100 used {used:.2} CPUs");
}

#[test]
fn cpuunits_split_one_cpu_about_one_to_three() {
    require_root!();
    let rt = Runtime::vzrun();
    let (a, _ba) = start(
        &rt,
        "units1",
        BUSY,
        json!({"io.vzrun.cpuunits": "1000", "io.vzrun.cpus": "1"}),
    );
    let (b, _bb) = start(
        &rt,
        "units3",
        BUSY,
        json!({"io.vzrun.cpuunits": "3000", "io.vzrun.cpus": "1"}),
    );
    let (pa, pb) = (
        rt.state(&a)["pid"].to_string(),
        rt.state(&b)["pid"].to_string(),
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    let used = cpu_share(&[&pa, &pb], 3.0);
    let ratio = used[1] / used[0].max(0.001);
    assert!(
        (2.0..=4.5).contains(&ratio),
        "cpuunits 3000 vs 1000 on one CPU: {:.2} vs {:.2} CPUs (ratio {ratio:.2})",
        used[1],
        used[0]
    );
}

/// The throttle rule for the VE's device, in whichever cgroup version this host has.
fn write_throttle(pid: &str) -> String {
    if v2() {
        read(cgroup(pid, "").join("io.max"))
    } else {
        read(cgroup(pid, "blkio").join("blkio.throttle.write_bps_device"))
    }
}

fn timed_direct_write(rt: &Runtime, id: &str, name: &str) -> f64 {
    let t = std::time::Instant::now();
    let of = format!("of=/{name}");
    let o = rt.run(&[
        "exec",
        id,
        "dd",
        "if=/dev/zero",
        &of,
        "bs=64k",
        "count=96",
        "oflag=direct",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    t.elapsed().as_secs_f64()
}

/// The open-file limit of the process, from /proc.
fn max_open_files(pid: &str) -> String {
    read(PathBuf::from(format!("/proc/{pid}/limits")))
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .map(|l| l.split_whitespace().nth(3).unwrap_or("").to_string())
        .unwrap_or_default()
}

#[test]
fn numfile_limits_open_files_and_lowers_live() {
    require_root!();
    let rt = Runtime::vzrun();
    let (id, _b) = start(
        &rt,
        "nofile",
        &["sleep", "600"],
        json!({"io.vzrun.numfile": "64"}),
    );
    let pid = rt.state(&id)["pid"].to_string();
    assert_eq!(max_open_files(&pid), "64");
    // Descriptor 70 is past the limit, 40 is within it (the shell's `exec N<` needs N
    // below RLIMIT_NOFILE), also for a process exec'd later.
    let open = |fd: u32| {
        rt.run(&[
            "exec",
            &id,
            "sh",
            "-c",
            &format!("exec {fd}</dev/null && echo opened"),
        ])
        .stdout
        .contains("opened")
    };
    assert!(open(40) && !open(70), "numfile 64 inside");
    let o = rt.run(&["ve", "set", &id, "--numfile", "32"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(max_open_files(&pid), "32", "the running init");
    assert!(!open(40), "numfile 32 for a new process");
    assert_eq!(stat(&rt, &id, "numfile")["limit"], 32);
}

#[test]
fn iolimit_holds_a_direct_writer_and_lifts_live() {
    require_root!();
    let rt = Runtime::vzrun();
    let bundle = Bundle::with(&["sleep", "600"], |v| {
        v["root"]["readonly"] = json!(false);
        v["annotations"] = json!({
            "io.vzrun.diskspace": "64M", "io.vzrun.iolimit": "2M",
            "io.vzrun.iopslimit": "500", "io.vzrun.ioprio": "6",
        });
    });
    let id = common::unique_id("iolim");
    rt.track(&id);
    assert_eq!(rt.run(&["run", "-d", "-b", bundle.p(), &id]).code, 0);
    let pid = rt.state(&id)["pid"].to_string();
    let rule = write_throttle(&pid);
    assert!(rule.contains("2097152"), "write throttle: {rule:?}");
    // 6 MiB at 2 MiB/s: about three seconds, well above what the disk needs.
    let secs = timed_direct_write(&rt, &id, "slow");
    assert!(secs >= 2.0, "6 MiB under iolimit 2M took {secs:.2}s");
    // I/O priority 6 of 0..7: best effort, Linux level 1.
    // SAFETY: ioprio_get with integer arguments.
    let prio = unsafe { libc::syscall(libc::SYS_ioprio_get, 1, pid.parse::<i64>().unwrap()) };
    assert_eq!(prio, (2 << 13) | 1, "ioprio of the init");
    let o = rt.run(&["ve", "set", &id, "--iolimit", "unlimited"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(!write_throttle(&pid).contains("2097152"));
    let secs = timed_direct_write(&rt, &id, "fast");
    assert!(secs < 1.5, "unthrottled 6 MiB took {secs:.2}s");
}

#[test]
fn swap_adds_to_ram_and_holds_a_hog_where_the_host_swaps() {
    require_root!();
    let rt = Runtime::vzrun();
    let (id, _b) = start(
        &rt,
        "swap",
        &["sleep", "600"],
        json!({"io.vzrun.ram": "32M", "io.vzrun.swap": "32M"}),
    );
    let pid = rt.state(&id)["pid"].to_string();
    if v2() {
        assert_eq!(
            read(cgroup(&pid, "").join("memory.swap.max")),
            (32u64 << 20).to_string()
        );
    } else {
        assert_eq!(
            read(cgroup(&pid, "memory").join("memory.memsw.limit_in_bytes")),
            (64u64 << 20).to_string(),
            "v1 memsw is ram + swap"
        );
    }
    assert_eq!(stat(&rt, &id, "swappages")["limit"], (32u64 << 20) / 4096);
    let swaps = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
    if swaps.lines().count() < 2 {
        eprintln!("SKIP (effect part): this host has no swap (/proc/swaps is empty), so a hog cannot spill past ram");
        return;
    }
    let o = rt.run(&[
        "exec",
        &id,
        "dd",
        "if=/dev/zero",
        "of=/tmp/a",
        "bs=1M",
        "count=48",
    ]);
    assert_eq!(o.code, 0, "48M fits in ram+swap: {o:?}");
    assert!(stat(&rt, &id, "swappages")["held"].as_u64().unwrap() > 0);
    let _ = rt.run(&[
        "exec",
        &id,
        "dd",
        "if=/dev/zero",
        "of=/tmp/b",
        "bs=1M",
        "count=48",
    ]);
    assert!(stat(&rt, &id, "physpages")["failcnt"].as_u64().unwrap() > 0);
}

/// `ve stat --all --format prometheus`: every running VE's beancounters in the text
/// exposition format, accepted by Prometheus' own checker (promtool, where installed),
/// with `ve` and `resource` labels and the limits each VE was given.
#[test]
fn ve_stat_all_in_prometheus_format() {
    require_root!();
    let rt = Runtime::vzrun();
    let (a, _ba) = start(
        &rt,
        "prom-a",
        &["sleep", "600"],
        json!({"io.vzrun.numproc": "64", "io.vzrun.net.ip": "198.51.100.131"}),
    );
    // b has a private area (disk usage) and an address a can reach.
    let bb = Bundle::with(&["sleep", "600"], |v| {
        v["root"]["readonly"] = json!(false);
        v["annotations"] = json!({
            "io.vzrun.numproc": "128", "io.vzrun.net.ip": "198.51.100.132",
            "io.vzrun.diskspace": "48M"
        });
    });
    let b = common::unique_id("prom-b");
    rt.track(&b);
    let o = rt.run(&["run", "-d", "-b", bb.p(), &b]);
    assert_eq!(o.code, 0, "{o:?}");
    // Traffic: a connects to a closed port of b; its SYN goes out and b's reset comes back.
    let _ = rt.run(&["exec", &a, "nc", "-w", "2", "198.51.100.132", "9"]);
    let o = rt.run(&["ve", "stat", "--all", "--format", "prometheus"]);
    assert_eq!(o.code, 0, "{o:?}");
    if common::have("promtool") {
        use std::io::{Seek, Write};
        let mut input = tempfile::tempfile().unwrap();
        input.write_all(o.stdout.as_bytes()).unwrap();
        input.rewind().unwrap();
        let check = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(input)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "promtool check metrics: {}{}\n{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr),
            o.stdout
        );
    }
    // Always read back by a Prometheus text-format parser (promtool where installed too).
    let scrape = prometheus_parse::Scrape::parse(o.stdout.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("the exposition does not parse: {e}\n{}", o.stdout));
    let parsed = |family: &str, ve: &str, resource: &str| -> Option<f64> {
        scrape
            .samples
            .iter()
            .find(|s| {
                s.metric == family
                    && s.labels.get("ve") == Some(ve)
                    && s.labels.get("resource") == Some(resource)
            })
            .and_then(|s| match s.value {
                prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Untyped(v) => Some(v),
                _ => None,
            })
    };
    assert_eq!(parsed("vzrun_ve_limit", &a, "numproc"), Some(64.0));
    assert_eq!(parsed("vzrun_ve_limit", &b, "numproc"), Some(128.0));
    assert!(parsed("vzrun_ve_held", &a, "numproc").is_some_and(|v| v >= 1.0));
    // Samples by (family, ve, resource).
    let sample = |family: &str, ve: &str, resource: &str| -> Option<String> {
        let head = format!("{family}{{ve=\"{ve}\",resource=\"{resource}\"}} ");
        o.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&head).map(str::to_string))
    };
    for (ve, limit) in [(&a, "64"), (&b, "128")] {
        assert_eq!(
            sample("vzrun_ve_limit", ve, "numproc").as_deref(),
            Some(limit),
            "{}",
            o.stdout
        );
        let held: u64 = sample("vzrun_ve_held", ve, "numproc")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("held numproc of {ve}: {}", o.stdout));
        assert!(held >= 1, "{}", o.stdout);
        assert!(sample("vzrun_ve_failcnt_total", ve, "numproc").is_some());
    }
    for family in [
        "vzrun_ve_held",
        "vzrun_ve_maxheld",
        "vzrun_ve_barrier",
        "vzrun_ve_limit",
    ] {
        assert!(
            o.stdout.contains(&format!("# TYPE {family} gauge\n")),
            "{}",
            o.stdout
        );
    }
    // Per VE: CPU time, network bytes, and disk usage where the VE has a private area.
    let per_ve = |family: &str, ve: &str| -> Option<f64> {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == family && s.labels.get("ve") == Some(ve))
            .and_then(|s| match s.value {
                prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Untyped(v) => Some(v),
                _ => None,
            })
    };
    for ve in [&a, &b] {
        assert!(
            per_ve("vzrun_ve_cpu_seconds_total", ve).is_some_and(|v| v > 0.0),
            "{}",
            o.stdout
        );
    }
    for family in [
        "vzrun_ve_network_transmit_bytes_total",
        "vzrun_ve_network_receive_bytes_total",
    ] {
        assert!(
            per_ve(family, &a).is_some_and(|v| v > 0.0),
            "{family} of {a}: {}",
            o.stdout
        );
    }
    let used = per_ve("vzrun_ve_disk_used_bytes", &b);
    assert!(used.is_some_and(|v| v > 0.0), "{}", o.stdout);
    let size = per_ve("vzrun_ve_disk_size_bytes", &b).unwrap_or_default();
    assert!(
        (32.0 * 1048576.0..=48.0 * 1048576.0).contains(&size),
        "{}",
        o.stdout
    );
    assert_eq!(
        per_ve("vzrun_ve_disk_used_bytes", &a),
        None,
        "a has no private area"
    );
    for family in [
        "vzrun_ve_cpu_seconds_total",
        "vzrun_ve_network_receive_bytes_total",
        "vzrun_ve_network_transmit_bytes_total",
    ] {
        assert!(
            o.stdout.contains(&format!("# TYPE {family} counter\n")),
            "{}",
            o.stdout
        );
    }
    // --all --json: an array of the objects `ve stat --json ID` prints (docs/json.md).
    let all = rt.run(&["ve", "stat", "--all", "--json"]).json();
    let of = |id: &str| -> Value {
        all.as_array()
            .and_then(|r| r.iter().find(|v| v["ctid"] == id).cloned())
            .unwrap_or_else(|| panic!("{id} in {all}"))
    };
    let keys = |v: &Value| -> Vec<String> {
        v.as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    };
    let one = rt.run(&["ve", "stat", "--json", &a]).json();
    assert_eq!(keys(&of(&a)), keys(&one), "{all}");
    assert_eq!(
        keys(&of(&a)["beancounters"]),
        keys(&one["beancounters"]),
        "{all}"
    );
    assert_eq!(of(&b)["beancounters"]["numproc"]["limit"], 128, "{all}");
    // An ID or --all, not both, not neither.
    assert_ne!(rt.run(&["ve", "stat"]).code, 0);
    assert_ne!(rt.run(&["ve", "stat", "--all", &a]).code, 0);
}
