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
