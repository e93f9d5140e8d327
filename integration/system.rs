//! System VEs: a VE that boots its template's init, which starts the services enabled
//! in it; graceful and fast stop; `ve enter`; namespaced sysctls; OS templates (the
//! built-in busybox one, and a Debian one made by debootstrap, cached between runs).
//! Addresses: 198.51.100.210-239 only.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{vz, Data, Runtime, SysVe};

/// A plain HTTP GET from the host, so no client tool is needed.
fn http_get(addr: &str) -> Option<String> {
    let mut s =
        TcpStream::connect_timeout(&format!("{addr}:80").parse().ok()?, Duration::from_secs(1))
            .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET / HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

fn wait_http(addr: &str, secs: u64) -> Option<String> {
    let began = Instant::now();
    while began.elapsed() < Duration::from_secs(secs) {
        if let Some(b) = http_get(addr) {
            if b.starts_with("HTTP/") {
                return Some(b);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn sysctl(name: &str) -> String {
    std::fs::read_to_string(format!("/proc/sys/{}", name.replace('.', "/")))
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn busybox_system_ve_boots_its_services_and_shuts_down_cleanly() {
    require_root!();
    let rt = Runtime::vzrun();
    let data = Data::new();
    let ip = "198.51.100.210";
    let ve = SysVe::create(
        &rt,
        data.path(),
        "sys-boot",
        "busybox",
        &[
            "--ipadd",
            ip,
            "--hostname",
            "web.example.test",
            "--nameserver",
            "198.51.100.53",
        ],
    );
    ve.start();
    // rcS started the web server: vzrun only started init.
    let page = wait_http(ip, 10).expect("the VE's web server answers after ve start");
    assert!(page.contains("vzrun busybox system VE"), "{page}");
    let ps = ve.sh("ps -o pid,comm");
    assert!(ps.contains("init") && ps.contains("httpd"), "{ps}");
    // Only the VE's processes: init, httpd and the ps itself.
    let pids: Vec<&str> = ps.lines().skip(1).collect();
    assert!(pids.len() <= 3, "ps sees more than the VE: {ps}");
    assert!(ps.lines().any(|l| l.trim_start().starts_with("1 ")), "{ps}");
    assert_eq!(ve.sh("hostname").trim(), "web.example.test");
    assert!(ve
        .sh("cat /etc/resolv.conf")
        .contains("nameserver 198.51.100.53"));
    // A capability set for a system: network administration in its own namespace,
    // no CAP_SYS_ADMIN.
    let status = ve.sh("grep CapEff /proc/1/status");
    let eff = u64::from_str_radix(status.split_whitespace().nth(1).unwrap(), 16).unwrap();
    assert!(eff & (1 << 12) != 0, "CAP_NET_ADMIN: {status}");
    assert!(eff & (1 << 13) != 0, "CAP_NET_RAW: {status}");
    assert!(eff & (1 << 21) == 0, "no CAP_SYS_ADMIN: {status}");
    assert!(
        ve.exec(&["mount", "-t", "tmpfs", "x", "/mnt"]).code != 0,
        "mount needs CAP_SYS_ADMIN"
    );
    assert!(
        ve.exec(&["ls", "/dev/console", "/dev/null", "/dev/pts/ptmx"])
            .code
            == 0
    );
    // /etc is the VE's to change, and the change survives a stop and a start.
    ve.sh("echo 'edited' > /etc/motd");

    let o = ve.ve("stop", &[]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout.contains("stopped: init shut the system down"),
        "{o:?}"
    );
    assert!(
        common::dir_entries(rt.root.path()).is_empty(),
        "no container after stop"
    );
    // vzlist -a: a stopped system VE is still listed, with its address.
    let rows = ve
        .vz(&["ve", "list", "-a", "-j", "-o", "ctid,status,ip"])
        .json();
    let row = rows
        .as_array()
        .and_then(|r| r.iter().find(|r| r["ctid"] == ve.id.as_str()).cloned())
        .unwrap_or_else(|| panic!("ve list -a: {rows}"));
    assert_eq!(row["status"], "stopped", "{row}");
    assert!(!row["ip"].as_array().is_none_or(|a| a.is_empty()), "{row}");
    // The private area: the VE's image stays for the next start, detached and unmounted;
    // the template itself was never written.
    let image = ve.dir().join("private.img");
    assert!(image.exists(), "the private area's image is kept");
    let loops = std::process::Command::new("losetup")
        .arg("-j")
        .arg(&image)
        .output()
        .unwrap();
    assert!(loops.stdout.is_empty(), "loop device left: {loops:?}");
    assert!(common::mounts_containing(&ve.id).is_empty());
    assert!(!data
        .path()
        .join("templates/busybox/rootfs/etc/motd")
        .exists());
    let log = std::fs::read_to_string(ve.dir().join("console.log")).unwrap();
    assert!(log.contains("stopped: init shut the system down"), "{log}");
    assert_eq!(ve.vz(&["state", &ve.id]).code, 1);

    ve.start();
    wait_http(ip, 10).expect("web server after the second start");
    assert_eq!(ve.sh("cat /etc/motd").trim(), "edited");
    // The first boot's shutdown scripts ran (rcK), then the second boot's rcS.
    let boot = ve.sh("cat /var/log/boot.log");
    assert_eq!(
        boot.lines().collect::<Vec<_>>(),
        [
            "rcS: system started",
            "rcK: system stopped",
            "rcS: system started"
        ],
        "{boot}"
    );
    let o = ve.ve("destroy", &[]);
    assert_ne!(o.code, 0, "destroy of a running VE must be refused");
    assert!(o.error_msg().contains("stop it first"), "{o:?}");
    assert_eq!(ve.ve("stop", &[]).code, 0);
    let o = ve.ve("destroy", &[]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(common::dir_entries(&data.path().join("ve")).is_empty());
    assert!(
        !http_get(ip).unwrap_or_default().contains("vzrun busybox"),
        "the web server is gone with the VE"
    );
}

/// vzctl's status, exec and enter --exec: status in each state with exit 0, a command
/// line's output and exit status, a command on the terminal; errors name the VE.
#[test]
fn status_exec_and_enter_exec_as_vzctl() {
    require_root!();
    let rt = Runtime::vzrun();
    let data = Data::new();
    let ve = SysVe::create(&rt, data.path(), "sys-verbs", "busybox", &[]);
    let status = |want: &str| {
        let o = ve.ve("status", &[]);
        assert_eq!(o.code, 0, "{o:?}");
        assert_eq!(o.stdout, format!("VEID {} {want}\n", ve.id));
    };
    status("exist unmounted down");
    let o = ve.ve("exec", &["true"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.error_msg().contains(&format!(
            "VE {} is not running (vzrun ve start {})",
            ve.id, ve.id
        )),
        "{o:?}"
    );
    ve.start();
    status("exist mounted running");

    // The words are one command line for the VE's shell, as vzctl exec has them.
    let o = ve.ve("exec", &["echo", "$((6*7))", "$(hostname)"]);
    assert_eq!(
        (o.code, o.stdout.as_str()),
        (0, &*format!("42 {}\n", ve.id)),
        "{o:?}"
    );
    let o = ve.ve("exec", &["ls", "-d", "/etc"]);
    assert_eq!(
        (o.code, o.stdout.as_str()),
        (0, "/etc\n"),
        "flags pass: {o:?}"
    );
    let o = ve.ve("exec", &["exit 7"]);
    assert_eq!(o.code, 7, "the command's status: {o:?}");
    // stdin reaches the command.
    let o = vz(
        &rt,
        data.path(),
        &["ve", "exec", &ve.id, "wc", "-l"],
        Some("a\nb\n"),
    );
    assert_eq!(o.stdout.trim(), "2", "{o:?}");

    // enter --exec: the command on a terminal, its words as given, its status returned.
    let mut cmd = rt.command();
    cmd.env("VZRUN_DATA_DIR", data.path()).args([
        "ve",
        "enter",
        &ve.id,
        "--exec",
        "sh",
        "-c",
        "tty; pwd; exit 5",
    ]);
    let mut term = common::OnPty::spawn(&mut cmd, 24, 80);
    assert_eq!(term.wait(20), Some(5), "{:?}", term.screen());
    assert!(
        term.screen().contains("/dev/pts/") && term.screen().contains("/root"),
        "{:?}",
        term.screen()
    );

    assert_eq!(ve.ve("stop", &["--fast"]).code, 0);
    status("exist unmounted down");
    assert_eq!(ve.ve("destroy", &[]).code, 0);
    status("deleted unmounted down");
    let o = ve.vz(&["ve", "status", "no/such"]);
    assert_eq!(o.code, 1, "a malformed ID is an error: {o:?}");
}

/// vzctl suspend/resume: the checkpoint goes into the VE's own directory and the VE
/// stops; resume brings the same processes back (a counter carries on) with init's
/// output on the console log again, and removes the checkpoint.
#[test]
fn suspend_and_resume_from_the_ves_own_directory() {
    require_criu!();
    let rt = Runtime::vzrun();
    let data = Data::new();
    let ve = SysVe::create(&rt, data.path(), "sys-susp", "busybox", &[]);
    let o = ve.ve("suspend", &[]);
    assert!(o.error_msg().contains("is not running"), "{o:?}");
    ve.start();
    let o = ve.ve(
        "exec",
        &[
            "(i=0; while true; do i=$((i+1)); echo $i > /dev/shm/c; sleep 0.05; done) \
           </dev/null >/dev/null 2>&1 &",
        ],
    );
    assert_eq!(o.code, 0, "{o:?}");
    std::thread::sleep(Duration::from_millis(300));
    let count = || -> u64 {
        let o = ve.ve("exec", &["cat /dev/shm/c"]);
        o.stdout.trim().parse().unwrap_or(0)
    };
    let before = count();
    assert!(before > 0);

    let o = ve.ve("suspend", &[]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(o.stdout, format!("VE {} suspended\n", ve.id));
    let o = ve.ve("status", &[]);
    assert_eq!(
        o.stdout,
        format!("VEID {} exist unmounted down suspended\n", ve.id)
    );
    assert!(ve.dir().join("suspend").is_dir());
    assert!(
        common::dir_entries(rt.root.path()).is_empty(),
        "the VE stopped"
    );
    let o = ve.ve("start", &[]);
    assert!(
        o.error_msg()
            .contains(&format!("is suspended: vzrun ve resume {}", ve.id)),
        "{o:?}"
    );

    let o = ve.ve("resume", &[]);
    assert_eq!(o.code, 0, "{o:?}");
    let o = ve.ve("status", &[]);
    assert_eq!(o.stdout, format!("VEID {} exist mounted running\n", ve.id));
    let after = count();
    assert!(
        after >= before,
        "the counter carried on: {before} -> {after}"
    );
    assert!(
        common::wait_until(5, || count() > after),
        "and keeps counting"
    );
    assert!(!ve.dir().join("suspend").exists(), "checkpoint removed");
    let pid = rt.state(&ve.id)["pid"].as_i64().unwrap();
    let out = std::fs::read_link(format!("/proc/{pid}/fd/1")).unwrap();
    assert_eq!(out, ve.dir().join("console.log"));
    let o = ve.ve("resume", &[]);
    assert!(o.error_msg().contains("is not suspended"), "{o:?}");
}

/// vzlist on stopped VEs: `-S` lists only them, an ID names one whatever its state, and
/// a stopped VE shows the limits it is configured with (nothing held).
#[test]
fn ve_list_shows_stopped_ves_with_their_limits() {
    require_root!();
    let rt = Runtime::vzrun();
    let data = Data::new();
    let ve = SysVe::create(
        &rt,
        data.path(),
        "sys-list",
        "busybox",
        &["--ram", "64M", "--numproc", "40", "--diskspace", "1G"],
    );
    let o = ve.vz(&["ve", "list", "-S", "-j"]);
    let rows = o.json();
    let row = rows
        .as_array()
        .and_then(|r| r.iter().find(|r| r["ctid"] == ve.id.as_str()).cloned())
        .unwrap_or_else(|| panic!("ve list -S: {rows}"));
    assert_eq!(row["status"], "stopped", "{row}");
    let bc = &row["beancounters"];
    assert_eq!(bc["numproc"]["limit"], 40, "{row}");
    assert_eq!(bc["physpages"]["limit"], (64u64 << 20) / 4096, "{row}");
    assert_eq!(bc["diskspace"]["limit"], 1u64 << 20, "{row}");
    assert!(bc["kmemsize"]["limit"].is_null(), "{row}");
    assert_eq!(bc["numproc"]["held"], 0, "{row}");
    // Named by ID, a stopped VE is listed without -a.
    let o = ve.vz(&[
        "ve",
        "list",
        "-H",
        "-o",
        "ctid,status,numproc.l,ram.l",
        &ve.id,
    ]);
    assert_eq!(
        o.stdout.split_whitespace().collect::<Vec<_>>(),
        [ve.id.as_str(), "stopped", "40", "16384"],
        "{o:?}"
    );
    assert!(
        ve.vz(&["ve", "list", "-1", "-S"])
            .stdout
            .lines()
            .any(|l| l == ve.id),
        "-1 -S"
    );
    ve.start();
    assert!(
        !ve.vz(&["ve", "list", "-1", "-S"])
            .stdout
            .lines()
            .any(|l| l == ve.id),
        "a running VE is not in -S"
    );
    assert!(
        ve.vz(&["ve", "list", "-1"])
            .stdout
            .lines()
            .any(|l| l == ve.id),
        "a running VE is listed"
    );
}

/// `ve set/show/stat` say which VE an error is about, and `ve enter`/`ve exec` on an
/// application container point to `vzrun exec`.
#[test]
fn ve_errors_name_the_ve() {
    require_root!();
    let rt = Runtime::vzrun();
    let data = Data::new();
    for verb in [
        vec!["set", "--hostname", "x"],
        vec!["show"],
        vec!["stat"],
        vec!["exec", "true"],
    ] {
        let mut args = vec!["ve", verb[0], "vzt-never-made"];
        args.extend_from_slice(&verb[1..]);
        let o = vz(&rt, data.path(), &args, None);
        assert_eq!(o.code, 1, "{verb:?}: {o:?}");
        assert!(
            o.error_msg()
                .starts_with("VE vzt-never-made does not exist"),
            "{verb:?}: {o:?}"
        );
    }
    // A system VE that is down: its counters are not there, and a change to its
    // settings says it needs --save.
    let ve = SysVe::create(&rt, data.path(), "sys-err", "busybox", &[]);
    let o = ve.ve("stat", &[]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.error_msg()
            .starts_with(&format!("VE {} is not running", ve.id)),
        "{o:?}"
    );
    let o = ve.ve("set", &["--hostname", "x"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.error_msg().starts_with(&format!(
            "VE {}: --save: needed: the VE is not running",
            ve.id
        )),
        "{o:?}"
    );
    let o = ve.ve("set", &["--ram", "lots", "--save"]);
    assert!(
        o.error_msg().starts_with(&format!("VE {}: --ram: ", ve.id)),
        "{o:?}"
    );
    // An application container.
    let b = common::Bundle::busybox(&["sleep", "600"]);
    let id = common::unique_id("app");
    rt.track(&id);
    assert_eq!(rt.run(&["run", "-d", "-b", b.p(), &id]).code, 0);
    let o = vz(
        &rt,
        data.path(),
        &["ve", "set", &id, "--hostname", "no way"],
        None,
    );
    assert!(
        o.error_msg().starts_with(&format!("VE {id}: --hostname:")),
        "{o:?}"
    );
    for (args, hint) in [(vec!["enter"], "-t "), (vec!["exec", "true"], "")] {
        let mut full = vec!["ve", args[0], &id];
        full.extend_from_slice(&args[1..]);
        let o = vz(&rt, data.path(), &full, None);
        assert_eq!(o.code, 1, "{o:?}");
        assert!(
            o.error_msg().contains(&format!(
                "{id} is an application container, not a system VE: use vzrun exec {hint}{id} CMD"
            )),
            "{args:?}: {o:?}"
        );
    }
    assert_eq!(rt.run(&["delete", "-f", &id]).code, 0);
}

/// A file of the cgroup v1 `controller` hierarchy of process `pid`.
fn cgroup_v1_file(pid: i64, controller: &str, file: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let rel = text.lines().find_map(|l| {
        let mut p = l.splitn(3, ':');
        let (_, ctrls, path) = (p.next()?, p.next()?, p.next()?);
        ctrls.split(',').any(|c| c == controller).then_some(path)
    })?;
    std::fs::read_to_string(format!("/sys/fs/cgroup/{controller}{rel}/{file}"))
        .ok()
        .map(|v| v.trim().to_string())
}

/// vzctl's workflow on a stopped VE: `ve show` lists its network and resources from its
/// one settings file, `ve set --save` changes that file, and the next start has the new
/// values inside.
#[test]
fn a_stopped_ves_settings_are_shown_changed_and_booted_with() {
    require_root!();
    let rt = Runtime::vzrun();
    let data = Data::new();
    let ve = SysVe::create(
        &rt,
        data.path(),
        "sys-set",
        "busybox",
        &[
            "--ipadd",
            "198.51.100.216",
            "--ram",
            "128M",
            "--hostname",
            "before.example.test",
            "--nameserver",
            "198.51.100.53",
            "--searchdomain",
            "example.test",
        ],
    );
    let show = ve.vz(&["ve", "show", "--json", &ve.id]);
    assert_eq!(show.code, 0, "{show:?}");
    let v = show.json();
    assert_eq!(v["status"], "stopped", "{v}");
    assert_eq!(v["template"], "busybox", "{v}");
    assert_eq!(v["ip"], serde_json::json!(["198.51.100.216/32"]), "{v}");
    assert_eq!(v["nameserver"], serde_json::json!(["198.51.100.53"]), "{v}");
    assert_eq!(v["ram"], "128M", "{v}");
    assert_eq!(v["diskspace"], "10G", "{v}");
    assert!(v["numproc"].is_null(), "{v}");
    let text = ve.ve("show", &[]).stdout;
    for row in [
        "status       stopped",
        "ram          128M",
        "numproc      -",
    ] {
        assert!(text.lines().any(|l| l == row), "{row:?} in:\n{text}");
    }
    // One text file, KEY="value" a line.
    let conf = std::fs::read_to_string(ve.dir().join("ve.conf")).unwrap();
    for line in [
        "TEMPLATE=\"busybox\"",
        "HOSTNAME=\"before.example.test\"",
        "net.ip=\"198.51.100.216\"",
        "ram=\"128M\"",
        "diskspace=\"10G\"",
    ] {
        assert!(conf.lines().any(|l| l == line), "{line} in:\n{conf}");
    }

    let o = ve.ve(
        "set",
        &[
            "--ram",
            "256M",
            "--numproc",
            "150",
            "--hostname",
            "after.example.test",
            "--ipadd",
            "198.51.100.217",
            "--nameserver",
            "198.51.100.54",
            "--save",
        ],
    );
    assert_eq!(o.code, 0, "{o:?}");
    let conf = std::fs::read_to_string(ve.dir().join("ve.conf")).unwrap();
    assert!(conf.contains("\nram=\"256M\"\n"), "{conf}");
    assert!(
        conf.contains("\nnet.ip=\"198.51.100.216,198.51.100.217\"\n"),
        "{conf}"
    );
    let v = ve.vz(&["ve", "show", "--json", &ve.id]).json();
    assert_eq!(
        (v["ram"].as_str(), v["numproc"].as_str()),
        (Some("256M"), Some("150"))
    );
    assert_eq!(v["hostname"], "after.example.test");

    ve.start();
    assert_eq!(ve.sh("hostname").trim(), "after.example.test");
    let addrs = ve.sh("ip -o addr show dev venet0");
    assert!(
        addrs.contains("198.51.100.216") && addrs.contains("198.51.100.217"),
        "{addrs}"
    );
    let resolv = ve.sh("cat /etc/resolv.conf");
    assert!(
        resolv.contains("nameserver 198.51.100.54") && resolv.contains("search example.test"),
        "{resolv}"
    );
    let pid = rt.state(&ve.id)["pid"].as_i64().unwrap();
    if let Some(max) = cgroup_v1_file(pid, "pids", "pids.max") {
        assert_eq!(max, "150");
        let ram = cgroup_v1_file(pid, "memory", "memory.limit_in_bytes").unwrap();
        assert_eq!(ram, (256u64 << 20).to_string());
    }
    let v = ve.vz(&["ve", "show", "--json", &ve.id]).json();
    assert_eq!(v["status"], "running");
    assert_eq!(v["ram"], "256M");
    // --save on the running VE writes the file too.
    let o = ve.ve("set", &["--numproc", "160", "--save"]);
    assert_eq!(o.code, 0, "{o:?}");
    let conf = std::fs::read_to_string(ve.dir().join("ve.conf")).unwrap();
    assert!(conf.contains("\nnumproc=\"160\"\n"), "{conf}");
}

/// A VE made before ve.conf held the settings (a JSON ve.conf, the settings in
/// config.json's annotations) still starts with them, and its ve.conf becomes the
/// text form.
#[test]
fn a_ve_from_before_the_settings_file_starts_and_is_migrated() {
    require_root!();
    let rt = Runtime::vzrun();
    let data = Data::new();
    let ve = SysVe::create(&rt, data.path(), "sys-old", "busybox", &["--ram", "96M"]);
    std::fs::write(
        ve.dir().join("ve.conf"),
        r#"{"template":"busybox","shutdown":"busybox","created":"2026-01-01T00:00:00Z"}"#,
    )
    .unwrap();
    let v = ve.vz(&["ve", "show", "--json", &ve.id]).json();
    assert_eq!(v["ram"], "96M", "{v}");
    ve.start();
    let conf = std::fs::read_to_string(ve.dir().join("ve.conf")).unwrap();
    assert!(conf.contains("\nram=\"96M\"\n"), "{conf}");
    assert!(conf.contains("\nSHUTDOWN=\"busybox\"\n"), "{conf}");
    assert_eq!(
        ve.ve("stop", &[]).code,
        0,
        "stops the way its template says"
    );
}

#[test]
fn sysctls_set_inside_stay_inside() {
    require_root!();
    let rt = Runtime::vzrun();
    let data = Data::new();
    let ve = SysVe::create(&rt, data.path(), "sys-sysctl", "busybox", &[]);
    ve.start();
    let names = [
        ("net.ipv4.ip_default_ttl", "42"),
        ("kernel.hostname", "renamed-inside"),
        ("kernel.shmmax", "123456789"),
        ("kernel.msgmax", "4321"),
        ("fs.mqueue.msg_max", "17"),
    ];
    let before: Vec<String> = names.iter().map(|(n, _)| sysctl(n)).collect();
    for (name, value) in names {
        let o = ve.exec(&["sysctl", "-w", &format!("{name}={value}")]);
        assert_eq!(o.code, 0, "sysctl -w {name} inside: {o:?}");
        let got = ve.sh(&format!("sysctl -n {name}"));
        assert_eq!(got.trim(), value, "{name} inside");
    }
    let after: Vec<String> = names.iter().map(|(n, _)| sysctl(n)).collect();
    assert_eq!(before, after, "the host's values did not change");
    assert_eq!(ve.sh("hostname").trim(), "renamed-inside");
    // The host's own settings stay read-only.
    for host_only in ["kernel.panic", "vm.swappiness"] {
        let o = ve.exec(&["sysctl", "-w", &format!("{host_only}=1")]);
        assert_ne!(o.code, 0, "{host_only} must not be writable: {o:?}");
    }
}

#[test]
fn fast_stop_timeout_kill_and_enter() {
    require_root!();
    let rt = Runtime::vzrun();
    let data = Data::new();
    let ve = SysVe::create(&rt, data.path(), "sys-stop", "busybox", &[]);
    ve.start();
    // ve enter: a login shell inside, on a terminal.
    let mut cmd = rt.command();
    cmd.env("VZRUN_DATA_DIR", data.path())
        .args(["ve", "enter", &ve.id]);
    let mut term = common::OnPty::spawn(&mut cmd, 24, 80);
    term.type_text("tty; echo marker-$((6*7)) $(hostname); exit\n");
    assert_eq!(term.wait(20), Some(0), "{:?}", term.screen());
    assert!(
        term.screen().contains("/dev/pts/"),
        "a terminal: {:?}",
        term.screen()
    );
    assert!(
        term.screen().contains(&format!("marker-42 {}", ve.id)),
        "{:?}",
        term.screen()
    );
    // From a script (stdin not a terminal) it fails at once, saying what to use instead.
    let o = vz(&rt, data.path(), &["ve", "enter", &ve.id], Some("exit\n"));
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.error_msg().contains("stdin is not one")
            && o.error_msg()
                .contains(&format!("vzrun ve exec {} CMD", ve.id)),
        "{o:?}"
    );
    // --fast: no shutdown scripts.
    let o = ve.ve("stop", &["--fast"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("killed (--fast)"), "{o:?}");
    ve.start();
    assert!(
        !ve.sh("cat /var/log/boot.log").contains("rcK"),
        "--fast skips rcK"
    );
    // A shutdown script that hangs: stop kills after the timeout.
    ve.sh("printf '#!/bin/sh\\n[ \"$1\" = stop ] && sleep 600\\n' > /etc/rc.d/S99hang; chmod +x /etc/rc.d/S99hang");
    let began = Instant::now();
    let o = ve.ve("stop", &["--timeout", "1"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout.contains("did not shut down within 1 s: killed"),
        "{o:?}"
    );
    assert!(began.elapsed() < Duration::from_secs(10));
    assert!(common::dir_entries(rt.root.path()).is_empty());
    for verb in ["stop", "enter"] {
        let o = ve.ve(verb, &[]);
        assert_ne!(o.code, 0);
        assert!(o.error_msg().contains("is not running"), "{verb}: {o:?}");
    }
    // restart from stopped just starts.
    let o = ve.ve("restart", &["--timeout", "1"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(rt.status(&ve.id), "running");
}

#[test]
fn bad_input_leaves_no_half_ve() {
    require_root!();
    let rt = Runtime::vzrun();
    let data = Data::new();
    let ves = data.path().join("ve");
    let id = common::unique_id("sys-bad");
    rt.track(&id);
    let o = vz(
        &rt,
        data.path(),
        &["ve", "create", &id, "--template", "nope"],
        None,
    );
    assert_ne!(o.code, 0);
    assert!(
        o.error_msg().contains("template \"nope\" does not exist"),
        "{o:?}"
    );
    assert!(
        common::dir_entries(&ves).is_empty(),
        "{:?}",
        common::dir_entries(&ves)
    );
    for (flag, value) in [
        ("--ram", "lots"),
        ("--ipadd", "300.0.0.1"),
        ("--capability", "sys_bogus:on"),
        ("--diskspace", "big"),
        ("--hostname", "bad name"),
    ] {
        let o = vz(
            &rt,
            data.path(),
            &["ve", "create", &id, "--template", "busybox", flag, value],
            None,
        );
        assert_ne!(o.code, 0, "{flag} {value}");
        assert!(o.error_msg().starts_with(&format!("{flag}: ")), "{o:?}");
        assert!(
            common::dir_entries(&ves).is_empty(),
            "{flag}: {:?}",
            common::dir_entries(&ves)
        );
    }
    let o = vz(
        &rt,
        data.path(),
        &["ve", "create", "a/b", "--template", "busybox"],
        None,
    );
    assert!(
        o.error_msg().contains("invalid container ID format"),
        "{o:?}"
    );

    // A duplicate ID is refused and the first VE is untouched.
    let ve = SysVe::create(&rt, data.path(), "sys-dup", "busybox", &[]);
    let conf = std::fs::read(ve.dir().join("config.json")).unwrap();
    let o = vz(
        &rt,
        data.path(),
        &["ve", "create", &ve.id, "--template", "busybox"],
        None,
    );
    assert_ne!(o.code, 0);
    assert_eq!(o.error_msg(), format!("VE {} already exists", ve.id));
    assert_eq!(std::fs::read(ve.dir().join("config.json")).unwrap(), conf);

    // A start that fails halfway (its address is taken) leaves no container behind.
    let ip = "198.51.100.211";
    let a = SysVe::create(&rt, data.path(), "sys-ipa", "busybox", &["--ipadd", ip]);
    let b = SysVe::create(&rt, data.path(), "sys-ipb", "busybox", &["--ipadd", ip]);
    a.start();
    let o = b.ve("start", &[]);
    assert_ne!(o.code, 0, "{o:?}");
    assert!(o.error_msg().contains(ip), "{o:?}");
    assert_eq!(
        b.vz(&["state", &b.id]).code,
        1,
        "no container left by the failed start"
    );
    assert!(b.dir().join("config.json").exists(), "the VE itself stays");
    let loops = std::process::Command::new("losetup")
        .arg("-j")
        .arg(b.dir().join("private.img"))
        .output()
        .unwrap();
    assert!(loops.stdout.is_empty(), "loop device left: {loops:?}");
    assert!(common::mounts_containing(&b.id).is_empty());
    assert_eq!(a.ve("stop", &["--fast"]).code, 0);
    b.start();
    assert_eq!(rt.status(&b.id), "running");

    // Two starts at once: one boots the VE, the other is told it is running.
    let c = SysVe::create(&rt, data.path(), "sys-twice", "busybox", &[]);
    let outs = common::outputs_of(
        (0..2)
            .map(|_| {
                let mut cmd = rt.command();
                cmd.env("VZRUN_DATA_DIR", data.path())
                    .args(["ve", "start", &c.id]);
                cmd
            })
            .collect(),
    );
    let ok = outs.iter().filter(|o| o.code == 0).count();
    assert_eq!(ok, 1, "{outs:?}");
    let refused = outs.iter().find(|o| o.code != 0).unwrap();
    assert!(
        refused.error_msg().contains("already running"),
        "{refused:?}"
    );
    assert_eq!(rt.status(&c.id), "running");

    for verb in ["start", "stop", "enter", "destroy"] {
        let o = vz(&rt, data.path(), &["ve", verb, "vzt-never-made"], None);
        assert_ne!(o.code, 0, "{verb}");
        assert!(
            o.error_msg().contains("VE vzt-never-made does not exist"),
            "{verb}: {o:?}"
        );
    }

    let o = vz(
        &rt,
        data.path(),
        &["template", "create", "x", "--dist", "plan9"],
        None,
    );
    assert!(
        o.error_msg().starts_with("--dist: unknown distribution"),
        "{o:?}"
    );
    let o = vz(&rt, data.path(), &["template", "rm", "busybox"], None);
    assert!(o.error_msg().contains("is used by VE"), "{o:?}");
    if common::have("debootstrap") {
        // A build that fails (no mirror there) says why and leaves no template.
        let o = vz(
            &rt,
            data.path(),
            &[
                "template",
                "create",
                "broken",
                "--dist",
                "debian-12",
                "--mirror",
                "http://127.0.0.1:9/debian",
            ],
            None,
        );
        assert_ne!(o.code, 0);
        assert!(o.error_msg().contains("debootstrap failed"), "{o:?}");
        let templates = common::dir_entries(&data.path().join("templates"));
        assert_eq!(templates, ["busybox"], "no half template: {templates:?}");
    } else {
        eprintln!("SKIP (template build failure): debootstrap is not installed");
    }
}

/// A tiny package and a flat repository for it, in a tar stream to unpack inside a VE.
fn local_mirror() -> Result<Vec<u8>, String> {
    if !common::have("dpkg-deb") || !common::have("dpkg-scanpackages") {
        return Err("dpkg-deb or dpkg-scanpackages (dpkg-dev) missing".into());
    }
    let t = tempfile::tempdir().unwrap();
    let pkg = t.path().join("pkg");
    let repo = t.path().join("repo");
    std::fs::create_dir_all(pkg.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(pkg.join("usr/share/vzt-hello")).unwrap();
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(
        pkg.join("DEBIAN/control"),
        "Package: vzt-hello\nVersion: 1.0\nArchitecture: all\n\
         Maintainer: vzrun tests <tests@vzrun.invalid>\nDescription: system VE test package\n",
    )
    .unwrap();
    std::fs::write(
        pkg.join("usr/share/vzt-hello/hello"),
        "hello from a package\n",
    )
    .unwrap();
    let ok = std::process::Command::new("dpkg-deb")
        .arg("--build")
        .arg(&pkg)
        .arg(repo.join("vzt-hello_1.0_all.deb"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "dpkg-deb --build");
    let scan = std::process::Command::new("dpkg-scanpackages")
        .arg(".")
        .current_dir(&repo)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    std::fs::write(repo.join("Packages"), &scan.stdout).unwrap();
    let tar = std::process::Command::new("tar")
        .arg("-C")
        .arg(&repo)
        .args(["-cf", "-", "."])
        .output()
        .unwrap();
    assert!(tar.status.success());
    Ok(tar.stdout)
}

#[test]
fn debian_template_boots_sysvinit_installs_a_package_and_halts() {
    require_root!();
    let rt = Runtime::vzrun();
    if let Err(why) = common::debian_template(&rt) {
        eprintln!("SKIP: {why}");
        return;
    }
    let ip = "198.51.100.215";
    let ve = SysVe::create(
        &rt,
        Path::new(common::DEBIAN_DATA),
        "sys-deb",
        common::DEBIAN_TEMPLATE,
        &["--ipadd", ip],
    );
    ve.start();
    // sysvinit ran the runlevel-2 scripts, which started lighttpd.
    let page = wait_http(ip, 30).expect("lighttpd answers after ve start");
    assert!(page.contains("200 OK"), "{page}");
    let cmdline = ve.sh("tr '\\0' ' ' < /proc/1/cmdline");
    assert!(cmdline.starts_with("init"), "PID 1 is sysvinit: {cmdline}");
    assert_eq!(ve.sh("runlevel").trim(), "N 2");
    let procs = ve.sh("for p in /proc/[0-9]*; do cat $p/comm; done");
    assert!(procs.contains("lighttpd"), "{procs}");
    assert!(
        procs.lines().count() <= 4,
        "only the VE's own processes: {procs}"
    );

    // apt-get install from a local file mirror.
    match local_mirror() {
        Ok(tar) => {
            let mut f = tempfile::NamedTempFile::new().unwrap();
            f.write_all(&tar).unwrap();
            let unpack = ve
                .rt
                .command()
                .env("VZRUN_DATA_DIR", common::DEBIAN_DATA)
                .args([
                    "exec",
                    &ve.id,
                    "sh",
                    "-c",
                    "mkdir -p /srv/repo && tar -x -C /srv/repo",
                ])
                .stdin(std::fs::File::open(f.path()).unwrap())
                .status()
                .unwrap();
            assert!(unpack.success());
            let apt = "-o Dir::Etc::sourcelist=/etc/apt/sources.list.d/vzt.list \
                       -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0";
            let o = ve.exec(&[
                "sh",
                "-c",
                &format!(
                    "echo 'deb [trusted=yes] file:/srv/repo ./' > /etc/apt/sources.list.d/vzt.list \
                     && apt-get -q update {apt} && apt-get -q install -y {apt} vzt-hello"
                ),
            ]);
            assert_eq!(o.code, 0, "apt-get install: {o:?}");
            assert_eq!(
                ve.sh("cat /usr/share/vzt-hello/hello").trim(),
                "hello from a package"
            );
            assert!(ve
                .sh("dpkg -s vzt-hello")
                .contains("Status: install ok installed"));
        }
        Err(why) => eprintln!("SKIP (apt-get install): {why}"),
    }

    let o = ve.ve("stop", &["--timeout", "60"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout.contains("stopped: init shut the system down"),
        "{o:?}"
    );
    // The shutdown went through runlevel 0: lighttpd was stopped by its script.
    ve.start();
    wait_http(ip, 30).expect("lighttpd after the second start");
    let log = ve.sh("cat /var/log/lighttpd/error.log");
    assert!(log.contains("server stopped by UID = 0"), "{log}");
    if local_mirror().is_ok() {
        assert!(
            ve.exec(&["dpkg", "-s", "vzt-hello"]).code == 0,
            "the package stays installed"
        );
    }
    // An init that cannot be asked (its FIFO removed) is killed, and the output says so.
    ve.sh("rm /run/initctl");
    let o = ve.ve("stop", &[]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout.contains("could not ask its init to shut down") && o.stdout.contains("killed"),
        "{o:?}"
    );
    assert_eq!(ve.vz(&["state", &ve.id]).code, 1);
}

/// The VE's init writes its console log through its stdout and reaches the host file
/// through /proc/1/fd/1: it can fill it with a program and make it setuid root. The
/// data directory (0700) keeps host users out; the VE's directory and the log are
/// root's alone too, and the log's mode is put back when the VE starts again.
#[test]
fn a_console_log_the_ve_made_setuid_is_put_back_and_out_of_reach() {
    require_root!();
    let rt = Runtime::vzrun();
    let data = Data::new();
    let ve = SysVe::create(&rt, data.path(), "sys-log", "busybox", &[]);
    ve.start();
    ve.sh(": >/proc/1/fd/1; cat /bin/busybox >/proc/1/fd/1; chmod 4755 /proc/1/fd/1");
    let o = ve.ve("stop", &["--fast"]);
    assert_eq!(o.code, 0, "{o:?}");
    ve.start();
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&ve.dir().join("console.log")), 0o600);
    assert_eq!(mode(&ve.dir()), 0o700);
    // Even with the data directory opened up, no host user reaches the file.
    std::fs::set_permissions(data.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let log = ve.dir().join("console.log");
    let nobody = |test: &str| {
        std::process::Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "test",
                test,
            ])
            .arg(&log)
            .status()
            .unwrap()
            .success()
    };
    assert!(!nobody("-r"), "a host user can read the VE's console log");
}
