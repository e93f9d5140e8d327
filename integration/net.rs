//! VE networking with real VEs and real traffic: venet addresses and routes, isolation
//! (no spoofing, no sniffing), a firewall inside, per-route MTU and source, policy rules,
//! caller-owned namespaces, `ve set`, and cleanup. Addresses come from 198.51.100.0/24 and
//! 2001:db8::/32, routed on this machine only; each test uses its own addresses.

mod common;

use std::process::Command;

use common::{Bundle, Runtime, Ve};
use serde_json::{json, Value};

impl Ve<'_> {
    fn pid(&self) -> String {
        self.rt.state(&self.id)["pid"].to_string()
    }

    fn exec(&self, cmd: &[&str]) -> common::Out {
        let mut args = vec!["exec", &self.id];
        args.extend_from_slice(cmd);
        self.rt.run(&args)
    }

    /// Runs a host tool inside the VE's network namespace only (the busybox VE has no
    /// tcpdump, nft or python).
    fn nsenter(&self, cmd: &[&str]) -> common::Out {
        let pid = self.pid();
        Command::new("nsenter")
            .args(["-t", &pid, "-n", "--"])
            .args(cmd)
            .output()
            .unwrap()
            .into()
    }
}

fn host_ping(addr: &str) -> bool {
    Command::new("busybox")
        .args(["ping", "-c", "1", "-W", "2", addr])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn links_named(name: &str) -> bool {
    let out = Command::new("ip").args(["-o", "link"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).contains(&format!(": {name}"))
}

/// The host's guards: vzrun's shared netdev table (a chain and two sets named after each
/// guarded VE's host link), empty when there is none.
fn nft_guards() -> String {
    String::from_utf8_lossy(
        &Command::new("nft")
            .args(["list", "table", "netdev", "vzrun"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned()
}

fn nft_tables() -> String {
    String::from_utf8_lossy(
        &Command::new("nft")
            .args(["list", "tables"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned()
}

macro_rules! require_net {
    () => {
        require_root!();
        for tool in ["nft", "nsenter", "busybox"] {
            if !common::have(tool) {
                eprintln!("SKIP: {tool} is not installed (hack/setup.sh installs it)");
                return;
            }
        }
    };
}

#[test]
fn venet_addresses_routes_and_traffic() {
    require_net!();
    let rt = Runtime::vzrun();
    let a = Ve::start(
        &rt,
        "neta",
        json!({"io.vzrun.net.ip": "198.51.100.31, 2001:db8::31", "io.vzrun.net.nameserver": "198.51.100.53", "io.vzrun.net.searchdomain": "example.test"}),
    );
    let b = Ve::start(
        &rt,
        "netb",
        json!({"io.vzrun.net.ip": "198.51.100.32,2001:db8::32"}),
    );
    let addr = a.exec(&["ip", "addr", "show", "venet0"]).stdout;
    assert!(addr.contains("NOARP"), "venet has no ARP: {addr}");
    assert!(
        addr.contains("198.51.100.31/32") && addr.contains("2001:db8::31/128"),
        "{addr}"
    );
    let routes = a.exec(&["ip", "route"]).stdout;
    assert!(routes.contains("default dev venet0"), "{routes}");
    let resolv = a.exec(&["cat", "/etc/resolv.conf"]).stdout;
    assert!(
        resolv.contains("nameserver 198.51.100.53") && resolv.contains("search example.test"),
        "{resolv}"
    );
    // The VE sees no MAC but its own.
    let neigh = a.exec(&["ip", "neigh"]).stdout;
    assert!(neigh.trim().is_empty(), "no neighbours on venet: {neigh}");
    // host -> VE, v4 and v6
    assert!(host_ping("198.51.100.31"));
    assert!(host_ping("2001:db8::31"));
    // VE -> VE through the host, v4 and v6
    for target in ["198.51.100.32", "2001:db8::32"] {
        let o = a.exec(&["ping", "-c", "1", "-W", "2", target]);
        assert_eq!(o.code, 0, "A -> {target}: {o:?}");
    }
    // TCP host -> VE (busybox nc echo server inside B)
    let _srv =
        b.rt.command()
            .args([
                "exec",
                "-d",
                &b.id,
                "sh",
                "-c",
                "echo hello-from-b | nc -l -p 7001",
            ])
            .status()
            .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let got = Command::new("busybox")
        .args(["nc", "-w", "2", "198.51.100.32", "7001"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "hello-from-b");
    // The host holds one /32 route per address, through the VE's own link.
    let show = a.show();
    let host_if = show["host_if"].as_str().unwrap().to_string();
    let r = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["route", "show", "198.51.100.31"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    assert!(r.contains(&host_if), "{r}");
    // Its guard (it has IPv6, which the kernel's own check does not cover) is a chain
    // of the shared table.
    assert!(
        nft_guards().contains(&format!("chain in_{host_if} ")),
        "{}",
        nft_guards()
    );
    // vzrun writes the guard as netlink messages of its own: nft must read them back
    // as exactly these rules (a wrong byte would show as another rule, or none).
    let guards = nft_guards();
    let chain: Vec<&str> = guards
        .split(&format!("chain in_{host_if} {{"))
        .nth(1)
        .and_then(|r| r.split('}').next())
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(
        chain,
        [
            format!("type filter hook ingress device \"{host_if}\" priority -500; policy accept;"),
            "ether type != ip ether type != ip6 drop".to_string(),
            format!("ip saddr != @v4_{host_if} drop"),
            format!("ip6 saddr != @v6_{host_if} ip6 saddr != fe80::/10 ip6 saddr != :: drop"),
        ],
        "{guards}"
    );
    assert!(
        guards.contains(&format!(
            "set v4_{host_if} {{\n\t\ttype ipv4_addr\n\t\telements = {{ 198.51.100.31"
        )),
        "{guards}"
    );
    assert_eq!(rt.run(&["delete", "-f", &a.id]).code, 0);
    // The pair goes with the VE's namespace, which the kernel tears down right after.
    let gone = common::poll(100, std::time::Duration::from_millis(20), || {
        !links_named(&host_if)
    });
    assert!(gone, "host link left behind");
    assert!(!nft_guards().contains(&host_if), "nft guard left behind");
    let r = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["route", "show", "198.51.100.31"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    assert!(r.trim().is_empty(), "host route left behind: {r}");
}

impl Ve<'_> {
    fn ping(&self, target: &str) -> bool {
        self.exec(&["ping", "-c", "1", "-W", "2", target]).code == 0
    }

    /// The VE owner (CAP_NET_ADMIN inside) adds `forged` and pings `target` from it.
    fn ping_forged(&self, forged: &str, target: &str) -> bool {
        let prefix = if forged.contains(':') { "128" } else { "32" };
        let o = self.exec(&[
            "ip",
            "addr",
            "add",
            &format!("{forged}/{prefix}"),
            "dev",
            "venet0",
        ]);
        assert_eq!(o.code, 0, "{o:?}");
        self.exec(&["ping", "-c", "2", "-W", "1", "-I", forged, target])
            .code
            == 0
    }
}

#[test]
fn spoofed_sources_are_dropped() {
    require_net!();
    let rt = Runtime::vzrun();
    let a = Ve::start(&rt, "spoofa", json!({"io.vzrun.net.ip": "198.51.100.41"}));
    let _b = Ve::start(&rt, "spoofb", json!({"io.vzrun.net.ip": "198.51.100.42"}));
    let _c = Ve::start(&rt, "spoofc", json!({"io.vzrun.net.ip": "198.51.100.43"}));
    assert!(a.ping("198.51.100.42"), "real source passes");
    assert!(
        !a.ping_forged("198.51.100.49", "198.51.100.42"),
        "a foreign address must not get through"
    );
    assert!(
        !a.ping_forged("198.51.100.43", "198.51.100.42"),
        "another VE's address must not get through"
    );
}

#[test]
fn spoofed_ipv6_sources_are_dropped() {
    require_net!();
    let rt = Runtime::vzrun();
    let a = Ve::start(
        &rt,
        "spoof6a",
        json!({"io.vzrun.net.ip": "198.51.100.44,2001:db8::44"}),
    );
    let _b = Ve::start(
        &rt,
        "spoof6b",
        json!({"io.vzrun.net.ip": "198.51.100.45,2001:db8::45"}),
    );
    assert!(a.ping("2001:db8::45"), "real source passes");
    assert!(
        !a.ping_forged("2001:db8::4f", "2001:db8::45"),
        "a forged IPv6 source must not get through"
    );
}

#[test]
fn a_capture_in_one_ve_sees_nothing_of_another() {
    require_net!();
    if !common::have("tcpdump") {
        eprintln!("SKIP: tcpdump is not installed");
        return;
    }
    let rt = Runtime::vzrun();
    let a = Ve::start(&rt, "sniffa", json!({"io.vzrun.net.ip": "198.51.100.51"}));
    let _b = Ve::start(&rt, "sniffb", json!({"io.vzrun.net.ip": "198.51.100.52"}));
    let pid = a.pid();
    let cap = Command::new("timeout")
        .args([
            "3",
            "nsenter",
            "-t",
            &pid,
            "-n",
            "tcpdump",
            "-n",
            "-i",
            "any",
            "-l",
            "host",
            "198.51.100.52",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(800));
    for _ in 0..3 {
        assert!(host_ping("198.51.100.52"));
    }
    let out = cap.wait_with_output().unwrap();
    let seen = String::from_utf8_lossy(&out.stdout);
    assert!(seen.trim().is_empty(), "VE A captured B's traffic: {seen}");
    // The capture itself works: A's own traffic is visible to it.
    let cap = Command::new("timeout")
        .args([
            "3", "nsenter", "-t", &pid, "-n", "tcpdump", "-n", "-i", "any", "-l", "-c", "1", "icmp",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(800));
    assert!(host_ping("198.51.100.51"));
    let out = cap.wait_with_output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("198.51.100.51"),
        "capture works at all"
    );
}

#[test]
fn firewall_inside_takes_effect_and_host_rules_stay_hidden() {
    require_net!();
    let rt = Runtime::vzrun();
    let a = Ve::start(&rt, "fw", json!({"io.vzrun.net.ip": "198.51.100.61"}));
    let serve = |port: &str| {
        rt.command()
            .args([
                "exec",
                "-d",
                &a.id,
                "sh",
                "-c",
                &format!("echo open | nc -l -p {port}"),
            ])
            .status()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
    };
    let connect = |port: &str| {
        let o = Command::new("busybox")
            .args(["nc", "-w", "2", "198.51.100.61", port])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    serve("7101");
    assert_eq!(connect("7101"), "open");
    // The VE's own nftables, in its own namespace.
    let o = a.nsenter(&["nft", "add table inet vefw; add chain inet vefw in { type filter hook input priority 0; }; add rule inet vefw in tcp dport 7102 drop"]);
    assert_eq!(o.code, 0, "{o:?}");
    serve("7102");
    assert_eq!(
        connect("7102"),
        "",
        "port blocked inside must be unreachable"
    );
    let inside = a.nsenter(&["nft", "list", "tables"]).stdout;
    assert!(
        !inside.contains("table netdev vzrun"),
        "host rules visible inside: {inside}"
    );
    assert!(
        !nft_tables().contains("vefw"),
        "VE rules leaked to the host"
    );
}

#[test]
fn routes_have_their_own_mtu_source_and_tables() {
    require_net!();
    if !common::have("python3") {
        eprintln!("SKIP: python3 is not installed");
        return;
    }
    let rt = Runtime::vzrun();
    let _peer = Ve::start(&rt, "mtupeer", json!({"io.vzrun.net.ip": "198.51.100.72"}));
    let a = Ve::start(
        &rt,
        "mtu",
        json!({
            "io.vzrun.net.ip": "198.51.100.71,198.51.100.73",
            "io.vzrun.net.routes": "203.0.113.0/24 src 198.51.100.73 mtu 1300; 203.0.113.128/25 table 100",
            "io.vzrun.net.rules": "from 198.51.100.71 table 100 priority 1000",
        }),
    );
    let routes = a.nsenter(&["ip", "route"]).stdout;
    assert!(
        routes.contains("203.0.113.0/24")
            && routes.contains("mtu 1300")
            && routes.contains("src 198.51.100.73"),
        "{routes}"
    );
    let df_send = |dst: &str| {
        let py = format!(
            "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.setsockopt(socket.IPPROTO_IP,10,2)\ntry:\n  s.sendto(b'x'*1400,('{dst}',9)); print('sent')\nexcept OSError as e: print(e.strerror)"
        );
        a.nsenter(&["python3", "-c", &py]).stdout.trim().to_string()
    };
    assert_eq!(df_send("203.0.113.5"), "Message too long");
    assert_eq!(df_send("198.51.100.72"), "sent");
    let get = a.nsenter(&["ip", "route", "get", "203.0.113.5"]).stdout;
    assert!(
        get.contains("src 198.51.100.73"),
        "source follows the route: {get}"
    );
    let rules = a.nsenter(&["ip", "rule"]).stdout;
    assert!(
        rules.contains("1000:") && rules.contains("from 198.51.100.71 lookup 100"),
        "{rules}"
    );
    let picked = a
        .nsenter(&[
            "ip",
            "route",
            "get",
            "203.0.113.200",
            "from",
            "198.51.100.71",
        ])
        .stdout;
    assert!(
        picked.contains("table 100"),
        "policy rule picks table 100: {picked}"
    );
}

#[test]
fn caller_owned_namespace_is_configured_and_kept() {
    require_net!();
    let rt = Runtime::vzrun();
    let ns = format!("vzt-ns-{}", std::process::id());
    assert!(Command::new("ip")
        .args(["netns", "add", &ns])
        .status()
        .unwrap()
        .success());
    struct Drop_(String);
    impl Drop for Drop_ {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    let _g = Drop_(ns.clone());
    let path = format!("/run/netns/{ns}");
    let bundle = Bundle::with(&["sleep", "600"], |v| {
        for n in v["linux"]["namespaces"].as_array_mut().unwrap() {
            if n["type"] == "network" {
                n["path"] = json!(path);
            }
        }
        v["annotations"] = json!({"io.vzrun.net.ip": "198.51.100.81"});
    });
    let id = common::unique_id("callerns");
    rt.track(&id);
    assert_eq!(rt.run(&["run", "-d", "-b", bundle.p(), &id]).code, 0);
    let addrs = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["-n", &ns, "addr"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    assert!(addrs.contains("198.51.100.81/32"), "{addrs}");
    assert!(host_ping("198.51.100.81"));
    assert_eq!(rt.run(&["delete", "-f", &id]).code, 0);
    let after = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["-n", &ns, "link"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    assert!(
        !after.contains("venet0"),
        "vzrun's link must leave the caller's namespace: {after}"
    );
    assert!(
        Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout
            .windows(ns.len())
            .any(|w| w == ns.as_bytes()),
        "the namespace itself stays"
    );
}

#[test]
fn ve_set_changes_a_running_ve_and_saves() {
    require_net!();
    let rt = Runtime::vzrun();
    let a = Ve::start(&rt, "veset", json!({"io.vzrun.net.ip": "198.51.100.91"}));
    let o = rt.run(&[
        "ve",
        "set",
        &a.id,
        "--ipadd",
        "198.51.100.92",
        "--ipadd",
        "2001:db8::92",
        "--route-add",
        "203.0.113.64/26 mtu 1400",
        "--hostname",
        "renamed",
        "--nameserver",
        "198.51.100.53",
        "--save",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(host_ping("198.51.100.92") && host_ping("2001:db8::92"));
    assert_eq!(a.exec(&["hostname"]).stdout.trim(), "renamed");
    assert!(a
        .exec(&["cat", "/etc/resolv.conf"])
        .stdout
        .contains("198.51.100.53"));
    assert!(a.nsenter(&["ip", "route"]).stdout.contains("mtu 1400"));
    let show = a.show();
    assert_eq!(
        show["ip"],
        json!(["198.51.100.91/32", "198.51.100.92/32", "2001:db8::92/128"])
    );
    assert_eq!(show["hostname"], "renamed");
    let saved: Value =
        serde_json::from_slice(&std::fs::read(a.bundle.path().join("config.json")).unwrap())
            .unwrap();
    assert_eq!(
        saved["annotations"]["io.vzrun.net.ip"],
        "198.51.100.91,198.51.100.92,2001:db8::92"
    );
    assert_eq!(saved["hostname"], "renamed");
    let o = rt.run(&["ve", "set", &a.id, "--ipdel", "198.51.100.91"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(!host_ping("198.51.100.91"));
    // Bad values name the flag and change nothing.
    let before = a.show();
    for (args, words) in [
        (vec!["--ipadd", "banana"], "--ipadd"),
        (vec!["--ipdel", "198.51.100.199"], "--ipdel"),
        (vec!["--route-add", "203.0.113.0/24 mtu 9"], "--route-add"),
        (vec!["--ipadd", "198.51.100.92"], "already"),
    ] {
        let mut full = vec!["ve", "set", a.id.as_str()];
        full.extend(args);
        let o = rt.run(&full);
        assert_ne!(o.code, 0);
        assert!(o.stderr.contains(words), "{words}: {o:?}");
        assert_eq!(a.show(), before, "a failed ve set changed the VE");
    }
    let o = rt.run(&["ve", "set", &a.id, "--ipdel", "all"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(a.show()["ip"], json!([]));
}

#[test]
fn bad_network_input_is_named_and_leaves_nothing() {
    require_net!();
    let rt = Runtime::vzrun();
    let holder = Ve::start(&rt, "holder", json!({"io.vzrun.net.ip": "198.51.100.101"}));
    for (ann, words) in [
        (
            json!({"io.vzrun.net.ip": "198.51.100.999"}),
            "io.vzrun.net.ip",
        ),
        (
            json!({"io.vzrun.net.ip": "198.51.100.101"}),
            "already held by another VE",
        ),
        (
            json!({"io.vzrun.net.mode": "veth", "io.vzrun.net.bridge": "vzt-nobridge", "io.vzrun.net.ip": "198.51.100.102"}),
            "does not exist",
        ),
        (
            json!({"io.vzrun.net.ip": "198.51.100.103", "io.vzrun.net.routes": "203.0.113.0/24 mtu 70000"}),
            "out of range",
        ),
        (
            json!({"io.vzrun.net.ip": "198.51.100.104", "io.vzrun.net.routes": "203.0.113.0/24 table 0"}),
            "io.vzrun.net.routes",
        ),
    ] {
        let bundle = Bundle::ve(&["true"], ann.clone());
        let id = common::unique_id("badnet");
        let o = rt.run(&["run", "-b", bundle.p(), &id]);
        assert_ne!(o.code, 0, "{ann}: {o:?}");
        assert!(
            o.stderr.contains(words),
            "{ann}: expected {words:?} in {}",
            o.stderr
        );
        assert_eq!(
            rt.run(&["list", "-q"]).stdout.trim(),
            holder.id,
            "{ann}: container left"
        );
        let orphans: Vec<String> = nft_guards()
            .lines()
            .filter_map(|l| l.trim().strip_prefix("chain in_"))
            .map(|l| l.trim_end_matches(" {"))
            .filter(|dev| !links_named(dev))
            .map(str::to_string)
            .collect();
        assert!(
            orphans.is_empty(),
            "{ann}: nft guards without a link: {orphans:?}"
        );
        let r = String::from_utf8_lossy(
            &Command::new("ip")
                .args(["route", "show", "198.51.100.0/24"])
                .output()
                .unwrap()
                .stdout,
        )
        .into_owned();
        assert!(
            !r.contains("198.51.100.10") || r.lines().all(|l| l.contains("198.51.100.101")),
            "{ann}: route left: {r}"
        );
    }
}

#[test]
fn veth_on_a_bridge_is_isolated_and_mac_filtered() {
    require_net!();
    if !common::have("tcpdump") || !common::have("bridge") {
        eprintln!("SKIP: tcpdump or bridge (iproute2) is not installed");
        return;
    }
    let Some(br) = common::TestBridge::new("vztbr") else {
        eprintln!("SKIP: cannot create a bridge on this host");
        return;
    };
    let rt = Runtime::vzrun();
    let veth = |ip: &str, mac: &str| json!({"io.vzrun.net.mode": "veth", "io.vzrun.net.bridge": br.0, "io.vzrun.net.ip": ip, "io.vzrun.net.mac": mac});
    let a = Ve::start(&rt, "vetha", veth("203.0.113.11/24", "02:00:5e:00:00:11"));
    let b = Ve::start(&rt, "vethb", veth("203.0.113.12/24", "02:00:5e:00:00:12"));
    let c = Ve::start(&rt, "vethc", veth("203.0.113.13/24", "02:00:5e:00:00:13"));
    let link = a.exec(&["ip", "link", "show", "eth0"]).stdout;
    assert!(link.contains("02:00:5e:00:00:11"), "{link}");
    assert_eq!(
        b.exec(&["ping", "-c", "1", "-W", "2", "203.0.113.13"]).code,
        0,
        "B reaches C over the bridge"
    );
    // A capture in A sees none of B <-> C's unicast traffic.
    let pid = a.pid();
    let cap = Command::new("timeout")
        .args([
            "3", "nsenter", "-t", &pid, "-n", "tcpdump", "-n", "-i", "eth0", "-l", "icmp",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(800));
    assert_eq!(
        b.exec(&["ping", "-c", "3", "-W", "1", "203.0.113.13"]).code,
        0
    );
    let seen = String::from_utf8_lossy(&cap.wait_with_output().unwrap().stdout).into_owned();
    assert!(seen.trim().is_empty(), "A sniffed B <-> C: {seen}");
    // With mac_filter on, frames with another MAC are dropped.
    assert_eq!(
        a.exec(&["ping", "-c", "1", "-W", "2", "203.0.113.12"]).code,
        0
    );
    assert_eq!(
        a.exec(&["ip", "link", "set", "eth0", "address", "02:00:5e:00:00:99"])
            .code,
        0
    );
    assert_ne!(
        a.exec(&["ping", "-c", "2", "-W", "1", "203.0.113.12"]).code,
        0,
        "forged MAC must not get through"
    );
    drop(c);
}

/// A network namespace of the test's own with a bridge (198.51.100.1/24, 2001:db8:1::1/64,
/// a fixed MAC), and a vzrun that runs inside it (`nsenter --net`, which keeps the host's
/// mounts; `ip netns exec` would remount /sys): the VEs' host ends, their guards and the
/// bridge's neighbour table live there and nowhere else. Removed at drop, with everything
/// in it.
struct GuardLan {
    ns: String,
    br: String,
    /// The wrapper script that runs vzrun in the namespace; kept for the runtime's life.
    _dir: tempfile::TempDir,
    wrapper: std::path::PathBuf,
}

const LAN_BR_MAC: &str = "02:00:5e:00:01:01";

impl GuardLan {
    /// `tag` (one character) tells apart the namespaces of tests that run at once.
    fn new(tag: &str) -> GuardLan {
        let id = std::process::id() % 100000;
        let dir = tempfile::Builder::new()
            .prefix("vzt-guard-")
            .tempdir()
            .unwrap();
        let wrapper = dir.path().join("vzrun");
        let lan = GuardLan {
            ns: format!("vzt-guard{tag}-{id}"),
            br: format!("vzbg{tag}{id}"),
            _dir: dir,
            wrapper,
        };
        std::fs::write(
            &lan.wrapper,
            format!(
                "#!/bin/sh\nexec nsenter --net=/run/netns/{} {} \"$@\"\n",
                lan.ns,
                common::VZRUN
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&lan.wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let o = Command::new("ip")
            .args(["netns", "add", &lan.ns])
            .output()
            .unwrap();
        assert!(o.status.success(), "ip netns add: {o:?}");
        let br = &lan.br;
        // locktime 0: the neighbour table takes the newest ARP answer at once.
        let o = lan.sh(&format!(
            "ip link set lo up && ip link add {br} address {LAN_BR_MAC} type bridge && \
             ip addr add 198.51.100.1/24 dev {br} && ip addr add 2001:db8:1::1/64 dev {br} nodad && \
             ip link set {br} up && echo 0 > /proc/sys/net/ipv4/neigh/{br}/locktime"
        ));
        assert_eq!(o.code, 0, "{o:?}");
        lan
    }

    /// A shell command in the namespace.
    fn sh(&self, script: &str) -> common::Out {
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.ns))
            .args(["sh", "-c", script])
            .output()
            .unwrap()
            .into()
    }
}

impl Drop for GuardLan {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// Builds Ethernet frames (each argument is an expression of the helpers below; `me` is
/// the link's own MAC) and sends them from `$IFACE` (default eth0) of the namespace it
/// runs in, pinned to CPU 0; then, with SYNC set,
/// pings SYNC and waits for the answer. Every frame goes through the receiving end's
/// backlog queue of the sending CPU, in order, so once the answer is back the frames sent
/// before it have all been handled (or dropped) by the host and its bridge.
const SEND_FRAMES: &str = r#"
import os, socket, struct, sys
os.sched_setaffinity(0, {0})
def mac(s): return s if isinstance(s, bytes) else bytes.fromhex(s.replace(':', ''))
def a6(s): return socket.inet_pton(socket.AF_INET6, s)
def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
def eth(dst, src, etype, body, tags=()):
    h = mac(dst) + mac(src)
    for tpid, vid in tags: h += struct.pack('!HH', tpid, vid)
    return h + struct.pack('!H', etype) + body
def ip4(src, dst, proto, body):
    h = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(body), 0, 0, 64, proto, 0,
                    socket.inet_aton(src), socket.inet_aton(dst))
    return h[:10] + struct.pack('!H', csum(h)) + h[12:] + body
def udp4(src, dst, sport, dport, data):
    return ip4(src, dst, 17, struct.pack('!HHHH', sport, dport, 8 + len(data), 0) + data)
def ip6(src, dst, nh, body, hlim=64):
    return struct.pack('!IHBB', 0x60000000, len(body), nh, hlim) + a6(src) + a6(dst) + body
def sum6(src, dst, nh, body):
    return csum(a6(src) + a6(dst) + struct.pack('!I3xB', len(body), nh) + body)
def udp6(src, dst, sport, dport, data):
    u = struct.pack('!HHHH', sport, dport, 8 + len(data), 0) + data
    c = sum6(src, dst, 17, u) or 0xffff
    return ip6(src, dst, 17, u[:6] + struct.pack('!H', c) + u[8:])
def icmp6(src, dst, typ, rest):
    m = struct.pack('!BBH', typ, 0, 0) + rest
    m = m[:2] + struct.pack('!H', sum6(src, dst, 58, m)) + m[4:]
    return ip6(src, dst, 58, m, 255)
def arp(op, sha, spa, tha, tpa):
    return (struct.pack('!HHBBH', 1, 0x0800, 6, 4, op) + mac(sha) + socket.inet_aton(spa)
            + mac(tha) + socket.inet_aton(tpa))
def na(target, lladdr):
    # override flag; the target link-layer address option
    return struct.pack('!I', 0x20000000) + a6(target) + bytes([2, 1]) + mac(lladdr)
def ns(target, lladdr):
    # reserved; the source link-layer address option
    return struct.pack('!I', 0) + a6(target) + bytes([1, 1]) + mac(lladdr)
def ra(prefix, lladdr):
    # hop limit 64, router lifetime 1800 s; source link-layer address; a prefix for SLAAC
    return (struct.pack('!BBHII', 64, 0, 1800, 0, 0) + bytes([1, 1]) + mac(lladdr)
            + struct.pack('!BBBBIII', 3, 4, 64, 0xc0, 86400, 14400, 0) + a6(prefix))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((os.environ.get('IFACE', 'eth0'), 0))
me = s.getsockname()[4]
for f in sys.argv[1:]:
    s.send(eval(f))
sync = os.environ.get('SYNC')
if sync:
    p = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    p.settimeout(10)
    echo = struct.pack('!BBHHH', 8, 0, 0, 0x5a5a, 1) + b'sync'
    p.sendto(echo[:2] + struct.pack('!H', csum(echo)) + echo[4:], (sync, 0))
    while True:
        r = p.recv(2048)
        if r[20] == 0 and r[24:26] == b'\x5a\x5a':
            break
"#;

/// Captures every frame on `$IFACE` (default eth0) of its namespace until one carries SYNC-MARK, then
/// prints which of its arguments appeared in any frame before it.
const WATCH_FRAMES: &str = r#"
import os, socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((os.environ.get('IFACE', 'eth0'), 0))
print('ready', flush=True)
seen = []
while True:
    f = s.recv(65535)
    if b'SYNC-MARK' in f:
        break
    seen += [t for t in sys.argv[1:] if t.encode() in f and t not in seen]
print('seen:' + ','.join(seen), flush=True)
"#;

impl Ve<'_> {
    /// The VE's link: eth0 for veth, venet0 for venet.
    fn link(&self) -> &'static str {
        if self.bundle_text().contains("\"veth\"") {
            "eth0"
        } else {
            "venet0"
        }
    }

    fn bundle_text(&self) -> String {
        std::fs::read_to_string(self.bundle.path().join("config.json")).unwrap_or_default()
    }

    /// Starts a capture on the VE's link for frames carrying any of `tags` (see
    /// WATCH_FRAMES), and waits until it runs.
    fn watch_frames(&self, tags: &[&str]) -> common::Deadlined {
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &self.pid(), "-n", "--", "python3", "-c", WATCH_FRAMES])
            .args(tags)
            .env("IFACE", self.link());
        let watch = common::Deadlined::start(&mut cmd);
        assert!(
            watch.stdout_until(std::time::Duration::from_secs(20), |o| o.contains("ready")),
            "the capture in {} did not start",
            self.id
        );
        watch
    }

    /// Sends raw frames from the VE's link (see SEND_FRAMES); with `sync`, waits for a
    /// ping of that address to come back.
    fn send_frames(&self, frames: &[String], sync: Option<&str>) {
        let pid = self.pid();
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &pid, "-n", "--", "python3", "-c", SEND_FRAMES])
            .args(frames)
            .env("IFACE", self.link());
        if let Some(s) = sync {
            cmd.env("SYNC", s);
        }
        let o = common::Deadlined::start(&mut cmd).wait(std::time::Duration::from_secs(30));
        assert_eq!(o.code, 0, "sending frames from {}: {o:?}", self.id);
    }
}

/// The attacks of a VE with CAP_NET_RAW on its bridged neighbours, each as raw frames:
/// ARP answers for another VE's and the gateway's address, an IPv6 neighbour
/// advertisement for another VE's address and a router advertisement, DHCP server
/// answers, VLAN-tagged and non-IP frames, addresses taken by a VE that was given none,
/// and another VE's MAC taken by one whose MAC filter is off. Each must fail.
#[test]
fn bridged_ves_cannot_poison_spoof_or_steal() {
    require_net!();
    if !common::have("python3") || !common::have("bridge") {
        eprintln!("SKIP: python3 or bridge (iproute2) is not installed");
        return;
    }
    let lan = GuardLan::new("b");
    let rt = Runtime::with_binary(&lan.wrapper);
    let br = lan.br.clone();
    let veth = |ip: Option<&str>, mac: &str| {
        let mut a = json!({"io.vzrun.net.mode": "veth", "io.vzrun.net.bridge": br, "io.vzrun.net.mac": mac});
        match ip {
            Some(ip) => a["io.vzrun.net.ip"] = json!(ip),
            None => a["io.vzrun.net.mac_filter"] = json!("off"),
        }
        a
    };
    let (a_mac, b_mac, k_mac) = (
        "02:00:5e:00:01:0a",
        "02:00:5e:00:01:14",
        "02:00:5e:00:01:1e",
    );
    let a = Ve::start(
        &rt,
        "guarda",
        veth(Some("198.51.100.10/24,2001:db8:1::10/64"), a_mac),
    );
    let b = Ve::start(
        &rt,
        "guardb",
        veth(Some("198.51.100.20/24,2001:db8:1::20/64"), b_mac),
    );
    // K: no address and no MAC filter.
    let k = Ve::start(&rt, "guardk", veth(None, k_mac));

    // What must keep working: VE <-> VE, VE <-> host, both families to the host.
    assert!(a.ping("198.51.100.20"), "A reaches B");
    assert!(b.ping("198.51.100.1"), "B reaches its gateway");
    for ip in [
        "198.51.100.10",
        "198.51.100.20",
        "2001:db8:1::10",
        "2001:db8:1::20",
    ] {
        let o = lan.sh(&format!("busybox ping -c 1 -W 2 {ip}"));
        assert_eq!(o.code, 0, "host -> {ip}: {o:?}");
    }

    // Frames B must never get: a capture in B watches for them until A's marker.
    let tags = [
        "DHCP4-OFFER",
        "DHCP4-ODDPORT",
        "DHCP6-REPLY",
        "QINQ-SPOOF",
        "VLAN-OWN",
        "ETHERTYPE-OTHER",
        "NOADDR-V4",
        "NOADDR-V6",
    ];
    let watch = b.watch_frames(&tags);
    let to_b4 = |src: &str, tag: &str, tags: &str| {
        format!("eth('{b_mac}', '{a_mac}', 0x0800, udp4('{src}', '198.51.100.20', 7000, 7000, b'{tag}'), {tags})")
    };
    a.send_frames(
        &[
            // A DHCP server's offer (from port 67), broadcast.
            format!("eth('ff:ff:ff:ff:ff:ff', '{a_mac}', 0x0800, udp4('198.51.100.10', '255.255.255.255', 67, 68, b'DHCP4-OFFER'))"),
            // The same from another port: a client takes an offer by its own port.
            format!("eth('ff:ff:ff:ff:ff:ff', '{a_mac}', 0x0800, udp4('198.51.100.10', '255.255.255.255', 1067, 68, b'DHCP4-ODDPORT'))"),
            // A DHCPv6 server's reply (from port 547).
            format!("eth('{b_mac}', '{a_mac}', 0x86dd, udp6('2001:db8:1::10', '2001:db8:1::20', 547, 546, b'DHCP6-REPLY'))"),
            // 802.1ad + 802.1Q, both VLAN 0 (which B's stack strips), a forged source.
            to_b4("198.51.100.99", "QINQ-SPOOF", "((0x88a8, 0), (0x8100, 0))"),
            // One 802.1Q tag (the receiving end moves it out of the frame: the guard must
            // look at the tag as nft rebuilds it), with A's own source.
            to_b4("198.51.100.10", "VLAN-OWN", "((0x8100, 5),)"),
            // An EtherType that is neither IP nor ARP.
            format!("eth('{b_mac}', '{a_mac}', 0x88b5, b'ETHERTYPE-OTHER')"),
        ],
        None,
    );
    // K, given no address, uses addresses anyway.
    k.send_frames(
        &[
            format!("eth('{b_mac}', '{k_mac}', 0x0800, udp4('198.51.100.99', '198.51.100.20', 7000, 7000, b'NOADDR-V4'))"),
            format!("eth('{b_mac}', '{k_mac}', 0x86dd, udp6('2001:db8:1::99', '2001:db8:1::20', 7000, 7000, b'NOADDR-V6'))"),
        ],
        None,
    );
    a.send_frames(&[to_b4("198.51.100.10", "SYNC-MARK", "()")], None);
    let seen = watch.wait(std::time::Duration::from_secs(20));
    assert!(
        seen.stdout.lines().any(|l| l == "seen:"),
        "frames that must be dropped reached B (or A's marker did not): {seen:?}"
    );

    // Neighbour tables: the host has B's addresses, B has its gateway's.
    let neigh = |o: common::Out| o.stdout.to_lowercase();
    let host_neigh = |ip: &str| neigh(lan.sh(&format!("ip neigh show {ip} dev {br}")));
    for ip in ["198.51.100.20", "2001:db8:1::20"] {
        assert!(
            host_neigh(ip).contains(b_mac),
            "host has B's {ip}: {}",
            host_neigh(ip)
        );
    }
    let b_gw = || neigh(b.nsenter(&["ip", "neigh", "show", "198.51.100.1"]));
    assert!(b_gw().contains(LAN_BR_MAC), "B has its gateway: {}", b_gw());
    // The host knows a LAN router by its link-local address, as IPv6 hosts do.
    let router_mac = "02:00:5e:00:01:63";
    let o = lan.sh(&format!(
        "ip -6 neigh replace fe80::1 lladdr {router_mac} dev {br} nud stale"
    ));
    assert_eq!(o.code, 0, "{o:?}");
    // Link-local addresses as Linux makes them from a MAC (EUI-64).
    let (a_ll, br_ll) = ("fe80::5e:ff:fe00:10a", "fe80::5e:ff:fe00:101");
    a.send_frames(
        &[
            // "198.51.100.20 is-at A", to the host; "198.51.100.1 is-at A", to B: as
            // answers and as gratuitous ARP (sender = target in both address fields),
            // which a neighbour table takes even within its locktime.
            format!("eth('{LAN_BR_MAC}', '{a_mac}', 0x0806, arp(2, '{a_mac}', '198.51.100.20', '{LAN_BR_MAC}', '198.51.100.1'))"),
            format!("eth('{LAN_BR_MAC}', '{a_mac}', 0x0806, arp(2, '{a_mac}', '198.51.100.20', '{a_mac}', '198.51.100.20'))"),
            format!("eth('{b_mac}', '{a_mac}', 0x0806, arp(2, '{a_mac}', '198.51.100.1', '{b_mac}', '198.51.100.20'))"),
            format!("eth('{b_mac}', '{a_mac}', 0x0806, arp(2, '{a_mac}', '198.51.100.1', '{a_mac}', '198.51.100.1'))"),
            // An unsolicited override advertisement: "2001:db8:1::20 is at A".
            format!("eth('{LAN_BR_MAC}', '{a_mac}', 0x86dd, icmp6('2001:db8:1::10', '2001:db8:1::1', 136, na('2001:db8:1::20', '{a_mac}')))"),
            // A router advertisement: a default route and a SLAAC prefix for the host.
            format!("eth('33:33:00:00:00:01', '{a_mac}', 0x86dd, icmp6('fe80::a', 'ff02::1', 134, ra('2001:db8:77::', '{a_mac}')))"),
            // The LAN's IPv6 gateway is a link-local address: "fe80::1 is at A", as an
            // advertisement from A's own link-local address, and as a solicitation in
            // fe80::1's name (which the host answers by taking its source MAC).
            format!("eth('33:33:00:00:00:01', '{a_mac}', 0x86dd, icmp6('{a_ll}', 'ff02::1', 136, na('fe80::1', '{a_mac}')))"),
            format!("eth('{LAN_BR_MAC}', '{a_mac}', 0x86dd, icmp6('fe80::1', '{br_ll}', 135, ns('{br_ll}', '{a_mac}')))"),
        ],
        Some("198.51.100.1"),
    );
    // Looked at as soon as A's ping is back: B's own next ARP request would put a taken
    // entry right again.
    for ip in ["198.51.100.20", "2001:db8:1::20"] {
        let n = host_neigh(ip);
        assert!(
            !n.contains(a_mac),
            "A took B's {ip} in the host's table: {n}"
        );
    }
    assert!(!b_gw().contains(a_mac), "A took B's gateway: {}", b_gw());
    let router = host_neigh("fe80::1");
    assert!(
        router.contains(router_mac) && !router.contains(a_mac),
        "A took the host's link-local gateway: {router}"
    );
    let r = lan.sh("ip -6 route show default && ip -6 addr show | grep inet6");
    assert!(
        !r.stdout.contains("default") && !r.stdout.contains("2001:db8:77:"),
        "A's router advertisement was taken: {r:?}"
    );
    let b_if = b.show()["host_if"].as_str().unwrap_or_default().to_string();
    let b_mac_on_b_port = || {
        let fdb = lan.sh(&format!("bridge fdb show br {br}")).stdout;
        let b_entry: Vec<&str> = fdb.lines().filter(|l| l.starts_with(b_mac)).collect();
        assert!(
            !b_entry.is_empty() && b_entry.iter().all(|l| l.contains(&format!("dev {b_if} "))),
            "K took B's MAC: {fdb}"
        );
    };
    // K sends as B.
    k.send_frames(
        &[format!(
            "eth('ff:ff:ff:ff:ff:ff', '{b_mac}', 0x88b5, b'steal')"
        )],
        None,
    );
    // Looked at at once (B's own next frame would move a stolen entry back), and again
    // once A's ping has come back behind K's frame.
    b_mac_on_b_port();
    a.send_frames(&[], Some("198.51.100.1"));
    b_mac_on_b_port();
    // The host still reaches B.
    assert_eq!(lan.sh("busybox ping -c 1 -W 2 198.51.100.20").code, 0);
    drop((a, b, k));
    drop(rt);
}

/// A venet VE with IPv6 has the nftables guard, not reverse-path filtering: an IPv4 packet
/// with a forged source inside two VLAN tags of VLAN 0 passes the guard's IPv4 test
/// unseen (the host end moves only the outer tag out of the frame) and the host's kernel
/// then strips both tags and routes it on. The guard must drop tagged frames.
#[test]
fn venet_ves_cannot_hide_a_forged_source_in_vlan_tags() {
    require_net!();
    if !common::have("python3") {
        eprintln!("SKIP: python3 is not installed");
        return;
    }
    let lan = GuardLan::new("v");
    let rt = Runtime::with_binary(&lan.wrapper);
    let a = Ve::start(
        &rt,
        "qinqa",
        json!({"io.vzrun.net.ip": "203.0.113.31,2001:db8:2::31"}),
    );
    let b = Ve::start(
        &rt,
        "qinqb",
        json!({"io.vzrun.net.ip": "203.0.113.32,2001:db8:2::32"}),
    );
    assert!(a.ping("203.0.113.32"), "A reaches B");
    let watch = b.watch_frames(&["QINQ-VENET"]);
    // The host end shares the VE end's MAC: frames to it are addressed to `me`.
    let to_b = |src: &str, tag: &str, tags: &str| {
        format!("eth(me, me, 0x0800, udp4('{src}', '203.0.113.32', 7000, 7000, b'{tag}'), {tags})")
    };
    a.send_frames(
        &[
            to_b("203.0.113.99", "QINQ-VENET", "((0x88a8, 0), (0x8100, 0))"),
            to_b("203.0.113.31", "SYNC-MARK", "()"),
        ],
        None,
    );
    let seen = watch.wait(std::time::Duration::from_secs(20));
    assert!(
        seen.stdout.lines().any(|l| l == "seen:"),
        "a forged source reached B inside VLAN tags (or A's marker did not): {seen:?}"
    );
    drop((a, b));
    drop(rt);
}
