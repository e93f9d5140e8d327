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
            "meta protocol arp drop".to_string(),
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
