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
