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

/// What a test can see of a file: contents' hash, owner, mode and size.
fn fingerprint(p: &std::path::Path) -> (String, u32, u32, u64) {
    use std::os::unix::fs::MetadataExt;
    let o = std::process::Command::new("sha256sum")
        .arg(p)
        .output()
        .expect("sha256sum");
    let m = std::fs::symlink_metadata(p).unwrap();
    (
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string(),
        m.uid(),
        m.mode(),
        m.len(),
    )
}

/// A real ext4 image at `p`, as a tenant's accomplice on the host would make one.
fn ext4_image(p: &std::path::Path, uid: u32, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::File::create(p).unwrap().set_len(32 << 20).unwrap();
    let o = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(p)
        .output()
        .unwrap();
    assert!(o.status.success(), "mkfs: {o:?}");
    std::os::unix::fs::chown(p, Some(uid), None).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn make_dir(p: &std::path::Path, uid: u32, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir(p).unwrap();
    std::os::unix::fs::chown(p, Some(uid), None).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `losetup -a`: no loop device is left on anything under `dir`.
fn assert_no_loop_under(dir: &std::path::Path) {
    let o = std::process::Command::new("losetup")
        .arg("-a")
        .output()
        .expect("losetup");
    let all = String::from_utf8_lossy(&o.stdout);
    let d = dir.to_string_lossy();
    assert!(!all.contains(d.as_ref()), "loop devices left: {all}");
}

/// Tries to run a VE on `image`; it must be refused naming io.vzrun.disk.image, the
/// image, and each of `words`, and leave no VE, cgroup, mount or loop device.
fn assert_image_refused(rt: &Runtime, image: &std::path::Path, words: &[&str], what: &str) {
    let b = disk_bundle(
        &["sleep", "600"],
        json!({"io.vzrun.diskspace": "32M", "io.vzrun.disk.image": image}),
    );
    let id = common::unique_id("atkimg");
    rt.track(&id);
    let o = rt.run(&["run", "-d", "-b", b.p(), &id]);
    assert_ne!(o.code, 0, "{what}: accepted: {o:?}");
    let msg = o.error_msg();
    assert!(msg.contains("io.vzrun.disk.image"), "{what}: {msg}");
    assert!(msg.contains(image.to_str().unwrap()), "{what}: {msg}");
    for w in words {
        assert!(msg.contains(w), "{what}: {w:?} not in {msg}");
    }
    assert_ne!(rt.run(&["state", &id]).code, 0, "{what}: a VE is left");
    assert_gone(&id);
    assert!(common::cgroups_named(&id).is_empty(), "{what}: cgroup left");
    assert_no_loop_under(image.parent().unwrap());
}

/// The attack: someone else on the host owns, or may write or read, the image a tenant
/// names. Mounted, its owner could read the VE's files or rewrite the ext4 under the
/// kernel. Each is refused, and the file is left exactly as it was.
#[test]
fn a_named_image_that_is_not_roots_alone_is_refused_and_left_as_it_was() {
    require_root!();
    let rt = Runtime::vzrun();
    // A directory only root may write, under the test policy's images directory (/tmp).
    let dir = tempfile::Builder::new()
        .prefix("vzt-atkimg-")
        .tempdir()
        .unwrap();
    for (uid, mode, words, what) in [
        (65534, 0o600, "owned by uid 65534", "an image nobody owns"),
        (0, 0o666, "mode 0666", "a world-writable image of root's"),
        (65534, 0o666, "owned by uid 65534", "the reported one"),
        (0, 0o640, "mode 0640", "an image its group may read"),
    ] {
        let image = dir.path().join(format!("x-{uid}-{mode:o}.img"));
        ext4_image(&image, uid, mode);
        let before = fingerprint(&image);
        assert_image_refused(&rt, &image, &[words], what);
        assert_eq!(fingerprint(&image), before, "{what}: the image was changed");
    }
    // Root's own 0600 image in the same directory is taken, and kept so.
    let good = dir.path().join("good.img");
    ext4_image(&good, 0, 0o600);
    let b = disk_bundle(
        &["sleep", "600"],
        json!({"io.vzrun.diskspace": "32M", "io.vzrun.disk.image": good}),
    );
    let id = common::unique_id("goodimg");
    rt.track(&id);
    let o = rt.run(&["run", "-d", "-b", b.p(), &id]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(rt.run(&["delete", "-f", &id]).code, 0);
    assert_gone(&id);
    assert_no_loop_under(dir.path());
}

/// The attack through the directory: an image (or the name of a new one) in a directory
/// others may write, or that is not root's, could be swapped or read by them. Refused for
/// the image's own directory and for one further up, below the images directory;
/// nothing is made in it.
#[test]
fn an_image_directory_others_may_write_is_refused() {
    require_root!();
    let rt = Runtime::vzrun();
    let top = tempfile::Builder::new()
        .prefix("vzt-atkdir-")
        .tempdir()
        .unwrap();
    // (directory owner, mode, an image of root's in it?, words, what)
    let cases = [
        (
            0,
            0o1777,
            true,
            "mode 1777",
            "the reported sticky world-writable directory",
        ),
        (0, 0o777, true, "mode 0777", "a world-writable directory"),
        (
            0,
            0o770,
            false,
            "mode 0770",
            "a group-writable directory, new image",
        ),
        (
            65534,
            0o700,
            true,
            "owned by uid 65534",
            "a directory nobody owns",
        ),
    ];
    for (i, (uid, mode, existing, words, what)) in cases.into_iter().enumerate() {
        let d = top.path().join(format!("d{i}"));
        make_dir(&d, uid, mode);
        let image = d.join("x.img");
        if existing {
            ext4_image(&image, 0, 0o600);
        }
        let before = existing.then(|| fingerprint(&image));
        assert_image_refused(&rt, &image, &[words], what);
        assert_eq!(existing.then(|| fingerprint(&image)), before, "{what}");
        assert_eq!(image.exists(), existing, "{what}: nothing is made");
    }
    // A directory others may write further up, with a 0700 one of root's beneath it.
    let open = top.path().join("open");
    make_dir(&open, 0, 0o777);
    let inner = open.join("inner");
    make_dir(&inner, 0, 0o700);
    let image = inner.join("x.img");
    ext4_image(&image, 0, 0o600);
    let before = fingerprint(&image);
    assert_image_refused(
        &rt,
        &image,
        &[open.to_str().unwrap(), "mode 0777"],
        "an open directory above",
    );
    assert_eq!(fingerprint(&image), before);
}

/// More inodes than ext4 can count (2^32), or than one per KiB of the area, are refused
/// by name before anything is made (mkfs used to fail with its own words instead).
#[test]
fn too_many_diskinodes_are_refused_by_name() {
    require_root!();
    let rt = Runtime::vzrun();
    for (space, inodes, words) in [
        (
            "32M",
            "4294967296",
            "4294967296 is out of range (64..4294967295)",
        ),
        (
            "4G",
            "4294967296",
            "4294967296 is out of range (64..4294967295)",
        ),
        (
            "32M",
            "40000",
            "40000 is more than one inode per 1024 bytes",
        ),
        (
            "32M",
            "1000:40000",
            "40000 is more than one inode per 1024 bytes",
        ),
    ] {
        let b = disk_bundle(
            &["sleep", "600"],
            json!({"io.vzrun.diskspace": space, "io.vzrun.diskinodes": inodes}),
        );
        let id = common::unique_id("inodes");
        rt.track(&id);
        let o = rt.run(&["run", "-d", "-b", b.p(), &id]);
        assert_ne!(o.code, 0, "{space} {inodes}: accepted: {o:?}");
        assert!(
            o.stderr.contains(&format!("io.vzrun.diskinodes: {words}")),
            "{space} {inodes}: {}",
            o.stderr
        );
        assert_ne!(rt.run(&["state", &id]).code, 0);
        assert_gone(&id);
        assert!(common::cgroups_named(&id).is_empty());
    }
}
