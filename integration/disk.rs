//! The VE's private area: an ext4 image on a loop device under an overlay. Checked from
//! inside a real VE (df, ENOSPC on writes and on inodes), live growth with `ve set`,
//! persistence of a named image, and that every way out (delete, a failed create, bad
//! values) leaves no image, loop device or mount behind.

mod common;

use common::{Bundle, Runtime};
use serde_json::{json, Value};

fn disk_bundle(args: &[&str], ann: Value) -> Bundle {
    Bundle::with(args, |v| {
        v["root"]["readonly"] = json!(false);
        v["annotations"] = ann;
    })
}

fn stat_row(rt: &Runtime, id: &str, resource: &str) -> Value {
    common::ve_stat_row(rt, id, resource)
}

/// `df -k /` inside: (used, available) in KiB.
fn df(rt: &Runtime, id: &str) -> (u64, u64) {
    let o = rt.run(&["exec", id, "df", "-k", "/"]);
    assert_eq!(o.code, 0, "{o:?}");
    let line = o.stdout.lines().last().unwrap_or_default().to_string();
    let f: Vec<u64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    assert!(f.len() >= 3, "df: {}", o.stdout);
    (f[1], f[2])
}

fn near(v: u64, want: u64, pct: u64) -> bool {
    v.abs_diff(want) * 100 <= want * pct
}

fn assert_gone(id: &str) {
    let left = common::disk_leftovers(id);
    assert!(left.is_empty(), "private area left behind: {left:?}");
    let mounts = common::mounts_containing(id);
    assert!(mounts.is_empty(), "mounts left behind: {mounts:?}");
}

#[test]
fn diskspace_and_diskinodes_hold_inside_and_grow_live() {
    require_root!();
    let rt = Runtime::vzrun();
    let id = common::unique_id("disk");
    rt.track(&id);
    let b = disk_bundle(
        &["sleep", "600"],
        json!({"io.vzrun.diskspace": "48M:64M", "io.vzrun.diskinodes": "1000"}),
    );
    let o = rt.run(&["run", "-d", "-b", b.p(), &id]);
    assert_eq!(o.code, 0, "{o:?}");

    // The VE sees its own size, not the host disk's.
    let (used, avail) = df(&rt, &id);
    assert!(
        near(used + avail, 64 << 10, 5),
        "df: used {used} avail {avail}"
    );
    let space = stat_row(&rt, &id, "diskspace");
    assert_eq!(space["barrier"], 48 << 10, "{space}");
    assert!(
        near(space["limit"].as_u64().unwrap(), 64 << 10, 5),
        "{space}"
    );

    // Writing past the hard limit fails with ENOSPC, and the beancounter shows it full.
    let o = rt.run(&[
        "exec",
        &id,
        "sh",
        "-c",
        "dd if=/dev/zero of=/fill bs=1M count=100",
    ]);
    assert_ne!(o.code, 0, "{o:?}");
    assert!(o.stderr.contains("No space left on device"), "{o:?}");
    let space = stat_row(&rt, &id, "diskspace");
    assert!(
        near(
            space["held"].as_u64().unwrap(),
            space["limit"].as_u64().unwrap(),
            2
        ),
        "{space}"
    );

    // Grown while running: the new room is usable at once.
    let o = rt.run(&["ve", "set", &id, "--diskspace", "96M"]);
    assert_eq!(o.code, 0, "{o:?}");
    let (used2, avail2) = df(&rt, &id);
    assert!(
        near(used2 + avail2, 96 << 10, 5),
        "df after grow: {used2} + {avail2}"
    );
    let o = rt.run(&[
        "exec",
        &id,
        "dd",
        "if=/dev/zero",
        "of=/more",
        "bs=1M",
        "count=20",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(near(
        stat_row(&rt, &id, "diskspace")["limit"].as_u64().unwrap(),
        96 << 10,
        5
    ));

    // Shrinking a mounted area is refused and changes nothing.
    let o = rt.run(&["ve", "set", &id, "--diskspace", "32M"]);
    assert_ne!(o.code, 0);
    assert!(
        o.stderr.contains("--diskspace") && o.stderr.contains("can only grow"),
        "{o:?}"
    );
    assert!(near(
        stat_row(&rt, &id, "diskspace")["limit"].as_u64().unwrap(),
        96 << 10,
        5
    ));

    // Inodes run out at diskinodes (mkfs rounds up to whole groups).
    let o = rt.run(&[
        "exec",
        &id,
        "sh",
        "-c",
        "i=0; while touch /f$i 2>/tmp/err; do i=$((i+1)); done; echo $i; cat /tmp/err",
    ]);
    let made: u64 = o
        .stdout
        .lines()
        .next()
        .unwrap_or("0")
        .trim()
        .parse()
        .unwrap_or(0);
    assert!((900..=1100).contains(&made), "{o:?}");
    assert!(o.stdout.contains("No space left on device"), "{o:?}");
    let inodes = stat_row(&rt, &id, "diskinodes");
    assert_eq!(inodes["held"], inodes["limit"], "{inodes}");

    let o = rt.run(&["delete", "-f", &id]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_gone(&id);
}

#[test]
fn a_named_image_survives_delete_and_comes_back() {
    require_root!();
    let rt = Runtime::vzrun();
    let keep = tempfile::Builder::new()
        .prefix("vzt-img-")
        .tempdir()
        .unwrap();
    let image = keep.path().join("private.img");
    let b = disk_bundle(
        &["sleep", "600"],
        json!({"io.vzrun.diskspace": "32M", "io.vzrun.disk.image": image}),
    );
    let id = common::unique_id("pimg");
    rt.track(&id);
    assert_eq!(rt.run(&["run", "-d", "-b", b.p(), &id]).code, 0);
    let o = rt.run(&["exec", &id, "sh", "-c", "echo kept > /etc/motd-vzt"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(rt.run(&["delete", "-f", &id]).code, 0);
    assert!(image.exists(), "a named image stays after delete");
    let left = common::disk_leftovers("private.img");
    assert!(
        !left
            .iter()
            .any(|l| l.contains(keep.path().to_str().unwrap())),
        "its loop device went: {left:?}"
    );
    // Same image, bigger size: reused and grown before the VE starts.
    let b2 = disk_bundle(
        &["sleep", "600"],
        json!({"io.vzrun.diskspace": "48M", "io.vzrun.disk.image": image}),
    );
    assert_eq!(rt.run(&["run", "-d", "-b", b2.p(), &id]).code, 0);
    let o = rt.run(&["exec", &id, "cat", "/etc/motd-vzt"]);
    assert_eq!(o.stdout.trim(), "kept", "{o:?}");
    let (used, avail) = df(&rt, &id);
    assert!(near(used + avail, 48 << 10, 6), "df: {used} + {avail}");
    assert!(
        !std::path::Path::new(&common::rootfs())
            .join("etc/motd-vzt")
            .exists(),
        "the bundle's rootfs is never written"
    );
    assert_eq!(rt.run(&["delete", "-f", &id]).code, 0);
    assert_gone(&id);
}

#[test]
fn bad_values_and_failed_creates_leave_nothing() {
    require_root!();
    let rt = Runtime::vzrun();
    for (ann, words) in [
        (
            json!({"io.vzrun.diskspace": "2G:1G"}),
            "io.vzrun.diskspace: soft limit 2147483648 is above the hard limit 1073741824",
        ),
        (json!({"io.vzrun.diskspace": "banana"}), "is not a size"),
        (
            json!({"io.vzrun.diskinodes": "5000"}),
            "io.vzrun.diskinodes: needs io.vzrun.diskspace",
        ),
        (
            json!({"io.vzrun.diskspace": "1M"}),
            "below the smallest private area",
        ),
    ] {
        let b = disk_bundle(&["true"], ann.clone());
        let id = common::unique_id("baddisk");
        let o = rt.run(&["run", "-b", b.p(), &id]);
        assert_ne!(o.code, 0, "{ann}");
        assert!(o.stderr.contains(words), "{ann}: {}", o.stderr);
        assert_gone(&id);
    }
    // A create that fails after the area is mounted (a failing hook) takes it down too.
    let b = Bundle::with(&["true"], |v| {
        v["root"]["readonly"] = json!(false);
        v["annotations"] = json!({"io.vzrun.diskspace": "32M"});
        v["hooks"] = json!({"createRuntime": [{"path": "/bin/false"}]});
    });
    let id = common::unique_id("hookdisk");
    let o = rt.run(&["create", "-b", b.p(), &id]);
    assert_ne!(o.code, 0, "{o:?}");
    assert_gone(&id);
    assert!(common::cgroups_named(&id).is_empty());
}
