//! checkpoint and restore: the errors a caller gets before CRIU runs, in runc's words.

use super::*;

diff!(
    checkpoint_parent_path_absolute,
    SLEEP,
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        s(&[
            "checkpoint",
            "--image-path",
            "{b}/img",
            "--parent-path",
            "/vzt-parent",
            "{id}"
        ]),
        s(&["state", "{id}"]),
        s(&["delete", "-f", "{id}"]),
    ]
);
diff!(
    checkpoint_parent_path_missing,
    SLEEP,
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        s(&[
            "checkpoint",
            "--image-path",
            "{b}/img",
            "--parent-path",
            "../no-such-parent",
            "{id}"
        ]),
        s(&["state", "{id}"]),
        s(&["delete", "-f", "{id}"]),
    ]
);
diff!(
    checkpoint_parent_path_is_a_file,
    SLEEP,
    none,
    [
        s(&["run", "-d", "-b", "{b}", "{id}"]),
        // runc's words carry an empty operation ("--parent-path:  PATH").
        worded(
            &[
                "checkpoint",
                "--image-path",
                "{b}",
                "--parent-path",
                "config.json",
                "{id}",
            ],
            "config.json: not a directory",
            "config.json: not a directory",
        ),
        s(&["state", "{id}"]),
        s(&["delete", "-f", "{id}"]),
    ]
);
diff!(
    checkpoint_of_missing_created_and_stopped,
    &["true"],
    none,
    [
        s(&["checkpoint", "--image-path", "{b}/img", "{id}"]),
        s(&["create", "-b", "{b}", "{id}"]),
        code(&["checkpoint", "--image-path", "{b}/img", "{id}"]),
        s(&["start", "{id}"]),
        WAIT_STOPPED_STEP,
        code(&["checkpoint", "--image-path", "{b}/img", "{id}"]),
        s(&["delete", "{id}"]),
    ]
);
diff!(
    restore_from_missing_image,
    SLEEP,
    none,
    [
        code(&[
            "restore",
            "--image-path",
            "/nonexistent-vzt-image",
            "-b",
            "{b}",
            "{id}"
        ]),
        s(&["list", "-q"]),
    ]
);

/// A dump under the `org.criu.config` annotation whose file renames CRIU's log: the
/// checkpoint's exit code and whether the renamed log is where the file says.
fn dump_with_criu_config(rt: &Runtime) -> (i32, bool) {
    let dir = tempfile::Builder::new()
        .prefix("vzt-criuconf-")
        .tempdir()
        .unwrap();
    let conf = dir.path().join("criu.conf");
    std::fs::write(&conf, "log-file vzt-custom.log\n").unwrap();
    let image = dir.path().join("img");
    // Its stdio is /dev/null: the harness's files are the host's, which no runtime dumps.
    let process = &["sh", "-c", "exec </dev/null >/dev/null 2>&1; sleep 300"];
    let bundle = Bundle::with(process, |v| {
        v["annotations"] = json!({"org.criu.config": conf});
    });
    let id = common::unique_id("criuconf");
    rt.track(&id);
    let run = rt.run(&["run", "-d", "-b", bundle.p(), &id]);
    assert_eq!(run.code, 0, "{}: run -d: {run:?}", rt.name);
    let o = rt.run_deadlined(
        &["checkpoint", "--image-path", image.to_str().unwrap(), &id],
        HANG,
    );
    let renamed = image.join("vzt-custom.log").exists();
    let _ = rt.run(&["delete", "--force", &id]);
    (o.code, renamed)
}

#[test]
fn checkpoint_criu_config_annotation() {
    require_criu!();
    if !common::have("runc") {
        eprintln!("SKIP: runc is not installed");
        return;
    }
    let want = dump_with_criu_config(&Runtime::runc());
    assert_eq!(want, (0, true), "runc");
    let got = dump_with_criu_config(&Runtime::vzrun());
    assert_eq!(got, want, "vzrun differs from runc");
}

/// A checkpoint and restore of a container whose bind mount's destination is a symbolic
/// link in its rootfs (`/data -> /mnt/data`): each step's exit code, and what the restored
/// process reads through the bind.
fn bind_onto_a_link(rt: &Runtime) -> (i32, i32, String) {
    let dir = tempfile::Builder::new()
        .prefix("vzt-ckptlink-")
        .tempdir()
        .unwrap();
    // A rootfs of its own: the shared one is read-only and has no such link.
    let rootfs = dir.path().join("rootfs");
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(common::rootfs())
        .arg(&rootfs)
        .status()
        .unwrap();
    assert!(copied.success(), "copy the rootfs");
    std::fs::create_dir_all(rootfs.join("mnt/data")).unwrap();
    std::os::unix::fs::symlink("/mnt/data", rootfs.join("data")).unwrap();
    let source = dir.path().join("source");
    std::fs::create_dir(&source).unwrap();
    std::fs::write(source.join("file"), "through the bind\n").unwrap();
    let process = &["sh", "-c", "exec </dev/null >/dev/null 2>&1; sleep 300"];
    let bundle = Bundle::with(process, |v| {
        v["root"] = json!({"path": rootfs, "readonly": false});
        v["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/data", "type": "bind", "source": source, "options": ["rbind", "rw"]
        }));
    });
    let id = common::unique_id("ckptlink");
    rt.track(&id);
    let run = rt.run(&["run", "-d", "-b", bundle.p(), &id]);
    assert_eq!(run.code, 0, "{}: run -d: {run:?}", rt.name);
    let image = dir.path().join("img");
    let image = image.to_str().unwrap();
    let dump = rt.run_deadlined(&["checkpoint", "--image-path", image, &id], HANG);
    let restore = if dump.code == 0 {
        rt.run_deadlined(
            &[
                "restore",
                "-d",
                "--image-path",
                image,
                "-b",
                bundle.p(),
                &id,
            ],
            HANG,
        )
    } else {
        eprintln!("{}: checkpoint: {}", rt.name, dump.stderr);
        dump.clone()
    };
    let seen = rt.run(&["exec", &id, "cat", "/data/file"]);
    let _ = rt.run(&["delete", "--force", &id]);
    (dump.code, restore.code, seen.stdout)
}

#[test]
fn checkpoint_bind_mount_onto_a_symlink() {
    require_criu!();
    if !common::have("runc") {
        eprintln!("SKIP: runc is not installed");
        return;
    }
    let want = bind_onto_a_link(&Runtime::runc());
    assert_eq!(want, (0, 0, "through the bind\n".to_string()), "runc");
    let got = bind_onto_a_link(&Runtime::vzrun());
    assert_eq!(got, want, "vzrun differs from runc");
}
