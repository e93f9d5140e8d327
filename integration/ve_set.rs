//! `ve set` on running VEs as an administrator relies on it: all or nothing (a step
//! the kernel refuses puts back the steps before it and is named), no address taken
//! from under a route, name servers that keep the search domains. Stopped system VEs
//! are in `system.rs`. Addresses: 198.51.100.241-249 and 203.0.113.0/24 routes.

mod common;

use common::{Runtime, Ve};
use serde_json::json;

impl Ve<'_> {
    fn set(&self, flags: &[&str]) -> common::Out {
        let mut args = vec!["ve", "set", self.id.as_str()];
        args.extend_from_slice(flags);
        self.rt.run(&args)
    }

    fn sh(&self, script: &str) -> String {
        let o = self.rt.run(&["exec", &self.id, "sh", "-c", script]);
        assert_eq!(o.code, 0, "{script}: {o:?}");
        o.stdout
    }

    /// A file of the VE's cgroup v1 `controller` hierarchy, read on the host.
    fn cgroup(&self, controller: &str, file: &str) -> String {
        let pid = self.rt.state(&self.id)["pid"].as_i64().unwrap();
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let rel = text
            .lines()
            .find_map(|l| {
                let mut p = l.splitn(3, ':');
                let (_, ctrls, path) = (p.next()?, p.next()?, p.next()?);
                ctrls.split(',').any(|c| c == controller).then_some(path)
            })
            .unwrap_or_else(|| panic!("no {controller} cgroup: {text}"));
        let path = format!("/sys/fs/cgroup/{controller}{rel}/{file}");
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .trim()
            .to_string()
    }
}

fn cgroup_v1() -> bool {
    std::path::Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists()
}

/// A `ve set` whose memory step the kernel refuses (a limit below what the VE's tmpfs
/// holds, with no swap to push it to) after its address and process limit were made:
/// both are put back, and the error names the step that failed and what it undid.
#[test]
fn a_failed_step_puts_back_the_steps_before_it() {
    require_root!();
    if !cgroup_v1() {
        eprintln!("SKIP: the cgroup files read here are cgroup v1's");
        return;
    }
    let rt = Runtime::vzrun();
    let ve = Ve::start(
        &rt,
        "set-undo",
        json!({"io.vzrun.net.ip": "198.51.100.241", "io.vzrun.ram": "64M", "io.vzrun.numproc": "100"}),
    );
    // 24 MiB in the VE's own tmpfs: charged to its cgroup, and nothing can reclaim it.
    ve.sh("dd if=/dev/zero of=/dev/shm/fill bs=1M count=24 2>/dev/null");
    let before = ve.show();
    let o = ve.set(&[
        "--ipadd",
        "198.51.100.242",
        "--numproc",
        "77",
        "--ram",
        "8M",
    ]);
    assert_eq!(o.code, 1, "{o:?}");
    let err = o.error_msg();
    assert!(
        err.starts_with(&format!("VE {}: --ram failed: ", ve.id)),
        "{err}"
    );
    assert!(
        err.contains("put back as it was: --ipadd, --numproc"),
        "{err}"
    );
    assert_eq!(ve.cgroup("pids", "pids.max"), "100", "numproc put back");
    assert_eq!(
        ve.cgroup("memory", "memory.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    let addrs = ve.sh("ip -o addr show dev venet0");
    assert!(!addrs.contains("198.51.100.242"), "{addrs}");
    assert_eq!(ve.show(), before, "ve show after a failed set");
    // The same change within what the VE holds goes through whole.
    let o = ve.set(&[
        "--ipadd",
        "198.51.100.242",
        "--numproc",
        "77",
        "--ram",
        "48M",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(ve.cgroup("pids", "pids.max"), "77");
    let show = ve.show();
    assert_eq!(
        show["ip"],
        json!(["198.51.100.241/32", "198.51.100.242/32"])
    );
    assert_eq!(
        (show["ram"].as_str(), show["numproc"].as_str()),
        (Some("48M"), Some("77"))
    );
}

/// The README's own example on a VE with swap: raising ram needs memory+swap raised
/// first on cgroup v1 (EINVAL otherwise), lowering it the other way round.
#[test]
fn raising_and_lowering_ram_with_swap() {
    require_root!();
    if !std::path::Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists() {
        eprintln!("SKIP: no cgroup v1 swap accounting (memory.memsw)");
        return;
    }
    let rt = Runtime::vzrun();
    let ve = Ve::start(
        &rt,
        "set-swap",
        json!({"io.vzrun.ram": "256M", "io.vzrun.swap": "128M", "io.vzrun.numproc": "200",
               "io.vzrun.diskspace": "1G"}),
    );
    let o = ve.set(&[
        "--ram",
        "512M",
        "--numproc",
        "400",
        "--cpulimit",
        "150",
        "--diskspace",
        "2G",
        "--iolimit",
        "40M",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    let mem = |f: &str| ve.cgroup("memory", f).parse::<u64>().unwrap();
    assert_eq!(mem("memory.limit_in_bytes"), 512 << 20);
    assert_eq!(mem("memory.memsw.limit_in_bytes"), 640 << 20, "swap kept");
    assert_eq!(ve.cgroup("pids", "pids.max"), "400");
    let o = ve.set(&["--ram", "128M"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(mem("memory.limit_in_bytes"), 128 << 20);
    assert_eq!(mem("memory.memsw.limit_in_bytes"), 256 << 20);
    assert_eq!(ve.show()["ram"], "128M");
}

/// Removing an address a route uses as its source is refused, naming the route (the
/// kernel would drop the route and `ve show` still list it); with the route it goes.
#[test]
fn an_address_under_a_route_is_not_removed_alone() {
    require_root!();
    let rt = Runtime::vzrun();
    let route = "203.0.113.0/24 src 198.51.100.243";
    let ve = Ve::start(
        &rt,
        "set-ipdel",
        json!({"io.vzrun.net.ip": "198.51.100.243,198.51.100.244", "io.vzrun.net.routes": route}),
    );
    let o = ve.set(&["--ipdel", "198.51.100.243"]);
    assert_eq!(o.code, 1, "{o:?}");
    let err = o.error_msg();
    assert!(
        err.starts_with(&format!("VE {}: --ipdel: ", ve.id))
            && err.contains("source address of the VE's route")
            && err.contains("remove that route with it"),
        "{err}"
    );
    let routes = ve.sh("ip route show 203.0.113.0/24");
    assert!(routes.contains("src 198.51.100.243"), "{routes}");
    assert_eq!(ve.show()["routes"], json!([route]));
    let o = ve.set(&["--ipdel", "all"]);
    assert!(o.error_msg().contains("--ipdel"), "{o:?}");
    let o = ve.set(&["--ipdel", "198.51.100.243", "--route-del", route]);
    assert_eq!(o.code, 0, "{o:?}");
    let show = ve.show();
    assert_eq!(show["routes"], json!([]));
    assert_eq!(show["ip"], json!(["198.51.100.244/32"]));
    assert!(ve.sh("ip route show 203.0.113.0/24").trim().is_empty());
}

/// `--nameserver` replaces the name servers and keeps the search domains (and the other
/// way round), as the VE's resolv.conf has them.
#[test]
fn name_servers_and_search_domains_change_apart() {
    require_root!();
    let rt = Runtime::vzrun();
    let ve = Ve::start(
        &rt,
        "set-dns",
        json!({"io.vzrun.net.ip": "198.51.100.245", "io.vzrun.net.nameserver": "198.51.100.53",
               "io.vzrun.net.searchdomain": "example.test"}),
    );
    let o = ve.set(&["--nameserver", "198.51.100.54"]);
    assert_eq!(o.code, 0, "{o:?}");
    let conf = ve.sh("cat /etc/resolv.conf");
    assert!(conf.contains("search example.test\n"), "{conf}");
    assert!(
        conf.contains("nameserver 198.51.100.54\n") && !conf.contains("198.51.100.53"),
        "{conf}"
    );
    let o = ve.set(&["--searchdomain", "other.test"]);
    assert_eq!(o.code, 0, "{o:?}");
    let show = ve.show();
    assert_eq!(show["nameserver"], json!(["198.51.100.54"]));
    assert_eq!(show["searchdomain"], json!(["other.test"]));

    // The attack: a search domain with a newline would start a line of its own choosing
    // (a name server the nameserver check never saw) in the VE's resolv.conf.
    let o = ve.set(&["--searchdomain", "a.test\nnameserver 203.0.113.66"]);
    assert_ne!(o.code, 0, "{o:?}");
    assert!(o.stderr.contains("--searchdomain"), "{o:?}");
    let conf = ve.sh("cat /etc/resolv.conf");
    assert!(!conf.contains("203.0.113.66"), "{conf}");
    assert!(conf.contains("search other.test\n"), "{conf}");
}

/// A VE without vzrun networking keeps its own /etc/resolv.conf, which `ve set
/// --nameserver` rewrites. The VE makes it a symbolic link to a host path: the write
/// must land inside the VE, never on the host file of that name.
#[test]
fn a_resolv_conf_link_in_the_ve_never_reaches_a_host_file() {
    require_root!();
    let rt = Runtime::vzrun();
    let host = tempfile::Builder::new()
        .prefix("vzt-victim-")
        .tempdir()
        .unwrap();
    let victim = host.path().join("victim");
    std::fs::write(&victim, b"host data\n").unwrap();
    let script = format!(
        "ln -s {} /etc/resolv.conf && touch /etc/ready && exec sleep 600",
        victim.display()
    );
    let b = common::Bundle::with(&["sh", "-c", &script], |v| {
        let mut mounts = v["mounts"].as_array().cloned().unwrap_or_default();
        mounts.push(json!({"destination": "/etc", "type": "tmpfs", "source": "tmpfs"}));
        v["mounts"] = json!(mounts);
    });
    let id = common::unique_id("set-link");
    rt.track(&id);
    let o = rt.run(&["run", "-d", "-b", b.p(), &id]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        common::wait_until(10, || rt
            .run(&["exec", &id, "test", "-e", "/etc/ready"])
            .code
            == 0),
        "the VE never made its link"
    );
    let o = rt.run(&["ve", "set", &id, "--nameserver", "198.51.100.53"]);
    assert_eq!(
        std::fs::read(&victim).unwrap(),
        b"host data\n",
        "ve set wrote the host's file: {o:?}"
    );
}

/// A VE in the host's UTS namespace has the host's hostname: `ve set --hostname` is
/// refused by name and the hostname stays. (Run in a UTS namespace of the test's own,
/// standing in for the host's, so a failure cannot rename the test host.)
#[test]
fn a_ve_sharing_the_hosts_uts_namespace_cannot_rename_the_host() {
    require_root!();
    let rt = Runtime::vzrun();
    let b = common::Bundle::with(&["sleep", "600"], |v| {
        v.as_object_mut().unwrap().remove("hostname");
        let ns: Vec<serde_json::Value> = v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["type"] != "uts")
            .cloned()
            .collect();
        v["linux"]["namespaces"] = json!(ns);
    });
    let id = common::unique_id("set-uts");
    rt.track(&id);
    let root = rt.root.path().display().to_string();
    let script = format!(
        "hostname vzt-before && {bin} --root {root} run -d -b {b} {id} </dev/null >/dev/null 2>&1 \
         && {bin} --root {root} ve set {id} --hostname vzt-after; echo \"rc=$?\"; hostname",
        bin = common::VZRUN,
        b = b.p(),
    );
    let o = std::process::Command::new("unshare")
        .args(["-u", "sh", "-c", &script])
        .env(
            "VZRUN_POLICY",
            std::env::var("VZRUN_POLICY").unwrap_or_default(),
        )
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        out.trim_end().ends_with("rc=1\nvzt-before"),
        "{out} / {err}"
    );
    assert!(
        err.contains("hostname") && err.contains("UTS namespace"),
        "{err}"
    );
}

/// A LAN on a test uplink: the uplink is one end of a veth pair whose other end is
/// `eth0` of a client namespace at 198.51.100.248/24. Removed on drop.
struct Lan {
    uplink: String,
    client: String,
}

impl Lan {
    fn new() -> Lan {
        let tag = std::process::id() % 100_000;
        let lan = Lan {
            uplink: format!("vztu{tag}"),
            client: format!("vzt-scli-{tag}"),
        };
        let (up, cli) = (&lan.uplink, &lan.client);
        // The route back to the client is one /32 through the test's own uplink.
        let script = format!(
            "ip netns add {cli} && ip link add {up} type veth peer name eth0 netns {cli} && \
             ip link set {up} up && echo 1 > /proc/sys/net/ipv4/conf/{up}/forwarding && \
             ip route add 198.51.100.248/32 dev {up} && \
             ip -n {cli} link set lo up && ip -n {cli} addr add 198.51.100.248/24 dev eth0 && \
             ip -n {cli} link set eth0 up"
        );
        let o = std::process::Command::new("sh")
            .args(["-c", &script])
            .output()
            .unwrap();
        assert!(o.status.success(), "{script}: {o:?}");
        lan
    }

    /// Runs `cmd` in the client's namespace; whether it succeeded.
    fn client(&self, cmd: &str) -> bool {
        std::process::Command::new("ip")
            .args(["netns", "exec", &self.client, "sh", "-c", cmd])
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.uplink])
            .status();
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.client])
            .status();
    }
}

/// vzctl's `--ipadd` on a VE announced on an uplink makes the new address reachable from
/// the LAN (the host answers ARP for it there), and `--ipdel` stops the host answering
/// for an address the VE gave up: else the LAN's traffic for it keeps coming to a host
/// that has nowhere to send it.
#[test]
fn addresses_changed_on_an_uplink_are_answered_on_the_lan_or_no_longer() {
    require_root!();
    let rt = Runtime::vzrun();
    let lan = Lan::new();
    let ve = Ve::start(
        &rt,
        "set-uplink",
        json!({"io.vzrun.net.ip": "198.51.100.246", "io.vzrun.net.uplink": lan.uplink}),
    );
    assert!(
        lan.client("busybox ping -c 1 -W 3 198.51.100.246 >/dev/null"),
        "the VE's first address does not answer from the LAN"
    );
    let o = ve.set(&["--ipadd", "198.51.100.247"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        lan.client("busybox ping -c 1 -W 3 198.51.100.247 >/dev/null"),
        "an address added with ve set does not answer from the LAN"
    );
    let o = ve.set(&["--ipdel", "198.51.100.246"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(lan.client("ip neigh flush dev eth0"));
    assert!(
        !lan.client("busybox arping -q -c 1 -w 3 -I eth0 198.51.100.246"),
        "the host still answers ARP on the LAN for an address the VE gave up"
    );
    assert!(lan.client("busybox ping -c 1 -W 3 198.51.100.247 >/dev/null"));
}

/// An address added while the VE's uplink is gone cannot be answered for on the LAN:
/// the change is refused before anything is made (it left the address inside the VE
/// and routed on the host, while saying nothing had been changed).
#[test]
fn an_address_for_a_vanished_uplink_is_refused_before_anything_changes() {
    require_root!();
    let rt = Runtime::vzrun();
    let uplink = format!("vztg{}", std::process::id() % 100_000);
    let ip = |args: &[&str]| {
        std::process::Command::new("ip")
            .args(args)
            .status()
            .is_ok_and(|s| s.success())
    };
    assert!(ip(&[
        "link",
        "add",
        &uplink,
        "type",
        "veth",
        "peer",
        "name",
        &format!("{uplink}p")
    ]));
    struct Gone(String);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["link", "del", &self.0])
                .status();
        }
    }
    let _gone = Gone(uplink.clone());
    let ve = Ve::start(
        &rt,
        "set-gone-up",
        json!({"io.vzrun.net.ip": "198.51.100.249", "io.vzrun.net.uplink": uplink}),
    );
    assert!(ip(&["link", "del", &uplink]));
    let o = ve.set(&["--ipadd", "198.51.100.239"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.error_msg().contains("does not exist"), "{o:?}");
    assert!(!ve.sh("ip addr").contains("198.51.100.239"));
    let routes = std::process::Command::new("ip")
        .args(["route", "show", "198.51.100.239"])
        .output()
        .unwrap();
    assert!(routes.stdout.is_empty(), "{routes:?}");
    assert_eq!(ve.show()["ip"], json!(["198.51.100.249/32"]));
}

/// The VE's resolv.conf is the tenant's to write, also vzrun's own copy bound over it:
/// a huge (sparse) file is refused by name when a DNS change needs it, and not read at
/// all by a change that does not (vzrun read all of it, for any `ve set`, into memory).
#[test]
fn a_huge_resolv_conf_is_refused_not_read_into_memory() {
    require_root!();
    let rt = Runtime::vzrun();
    let ve = Ve::start(
        &rt,
        "set-huge",
        json!({"io.vzrun.net.nameserver": "198.51.100.53"}),
    );
    ve.sh("truncate -s 64M /etc/resolv.conf");
    let o = ve.set(&["--cpuunits", "1000"]);
    assert_eq!(o.code, 0, "a change without DNS: {o:?}");
    let o = ve.set(&["--nameserver", "198.51.100.54"]);
    assert_eq!(o.code, 1, "{o:?}");
    let err = o.error_msg();
    assert!(
        err.contains("resolv.conf") && err.contains("larger than"),
        "{err}"
    );
}

/// A VE without vzrun's DNS keeps its own /etc/resolv.conf, which `ve set` edits in
/// place: lines it does not manage stay (they were lost: the file was never read), and
/// a FIFO there is never opened by the host (a reader waiting in the VE was woken by the
/// host's open, as a device node's driver would have been opened).
#[test]
fn the_ves_own_resolv_conf_is_edited_in_place_and_only_if_a_regular_file() {
    require_root!();
    let rt = Runtime::vzrun();
    let ve = Ve::start_writable(&rt, "set-own-dns");
    ve.sh("printf 'nameserver 192.0.2.53\\noptions ndots:3\\n' > /etc/resolv.conf");
    let o = ve.set(&["--searchdomain", "example.test"]);
    assert_eq!(o.code, 0, "{o:?}");
    let text = ve.sh("cat /etc/resolv.conf");
    for line in [
        "nameserver 192.0.2.53",
        "options ndots:3",
        "search example.test",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} not in {text:?}");
    }

    ve.sh("rm /etc/resolv.conf && mkfifo /etc/resolv.conf");
    // A reader in the VE: its open returns only once something opens the FIFO to write.
    let o = rt.run(&[
        "exec",
        "-d",
        &ve.id,
        "sh",
        "-c",
        "cat /etc/resolv.conf >/dev/null; touch /tmp/opened",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    let o = ve.set(&["--nameserver", "198.51.100.55"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.error_msg().contains("not a regular file"), "{o:?}");
    // The host's open, had there been one, happened before ve set returned.
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(
        ve.sh("test -e /tmp/opened && echo opened || echo closed")
            .contains("closed"),
        "the host opened the VE's FIFO"
    );
}
