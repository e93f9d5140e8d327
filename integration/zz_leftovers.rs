//! Runs after the other suites (cargo orders test binaries by name): whatever they did,
//! no test container may have left state, cgroups or mounts on the machine.

mod common;

#[test]
fn nothing_left_behind_by_the_suite() {
    require_root!();
    let cgroups = common::cgroups_named(common::TEST_PREFIX);
    assert!(cgroups.is_empty(), "cgroups left behind: {cgroups:?}");
    let disks = common::disk_leftovers(common::TEST_PREFIX);
    assert!(
        disks.is_empty(),
        "disk images or loop devices left behind: {disks:?}"
    );
    let mounts = common::mounts_containing("vzt-");
    assert!(mounts.is_empty(), "mounts left behind: {mounts:?}");
    let default_root = std::path::Path::new("/run/vzrun");
    let left = common::dir_entries(default_root);
    let ours: Vec<&String> = left
        .iter()
        .filter(|n| n.starts_with(common::TEST_PREFIX))
        .collect();
    assert!(ours.is_empty(), "state left in /run/vzrun: {ours:?}");
    // Every VE gives its addresses back at delete, also one whose create was killed (its
    // record names its host end before the addresses are taken); the tests use only
    // these ranges. A file naming a link that is gone holds nothing, but is still a
    // file left behind.
    let dir = std::path::Path::new("/run/vzrun-addresses");
    let held: Vec<String> = common::dir_entries(dir)
        .into_iter()
        .filter(|a| {
            ["198.51.100.", "203.0.113.", "2001:db8:"]
                .iter()
                .any(|r| a.starts_with(r))
        })
        .map(|a| {
            let link = std::fs::read_to_string(dir.join(&a)).unwrap_or_default();
            format!("{a} (held for {:?})", link.trim())
        })
        .collect();
    assert!(held.is_empty(), "address records left: {held:?}");
    // The per-test checks skip a guard whose link a record still names (a VE of a test
    // running beside them); with nothing running now, a guard of a link that is gone is
    // one a delete left behind.
    let nft = std::process::Command::new("nft")
        .args(["list", "table", "netdev", "vzrun"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let guards: Vec<&str> = nft
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            l.strip_prefix("chain ")
                .or_else(|| l.strip_prefix("set "))
                .and_then(|r| r.split_whitespace().next())
        })
        .filter(|name| {
            let link = name.split_once('_').map_or("", |(_, h)| h);
            !std::path::Path::new("/sys/class/net").join(link).exists()
        })
        .collect();
    assert!(
        guards.is_empty(),
        "guards of links that are gone: {guards:?}"
    );
    // Private state roots, and the work directories containerd's checkpoints leave in
    // the temp dir of whoever runs them (the suites give containerd and ctr their own).
    let roots: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    let name = p.to_string_lossy();
                    name.contains("vzt-root-") || name.contains("ctrd-checkpoint")
                })
                .collect()
        })
        .unwrap_or_default();
    assert!(
        roots.is_empty(),
        "private state roots or checkpoint work directories left behind: {roots:?}"
    );
}
