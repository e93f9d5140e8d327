//! Docs a person reads without the source: every command's help with an example, man
//! pages for vzrun and each subcommand, shell completions, and help that prints whatever
//! the host lacks.

mod common;

use std::process::Command;

use common::Out;

fn vzrun(args: &[&str]) -> Out {
    common::output_of(
        {
            let mut c = Command::new(common::VZRUN);
            c.args(args);
            c
        },
        std::process::Stdio::null(),
    )
}

/// The subcommands listed under "Commands:" in a help text.
fn listed_commands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

/// Every command path (`["ve", "set"]`), found by walking the help texts themselves.
fn all_commands() -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut todo = vec![Vec::<String>::new()];
    while let Some(path) = todo.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let o = vzrun(&args);
        assert_eq!(o.code, 0, "vzrun {args:?}: {o:?}");
        for sub in listed_commands(&o.stdout) {
            let mut p = path.clone();
            p.push(sub);
            todo.push(p);
        }
        out.push(path);
    }
    out
}

#[test]
fn every_help_has_an_example_and_global_options_apart() {
    let commands = all_commands();
    assert!(commands.len() > 30, "{commands:?}");
    for path in &commands {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let o = vzrun(&args);
        assert_eq!(o.code, 0, "vzrun {args:?}");
        assert!(
            o.stdout.contains("\nExample:\n  vzrun ") || o.stdout.contains("\nExamples:\n  vzrun "),
            "vzrun {args:?} has no example:\n{}",
            o.stdout
        );
        assert!(
            o.stdout.contains("\nGlobal options:\n"),
            "vzrun {args:?}: global options under their own heading:\n{}",
            o.stdout
        );
    }
}

/// `checkpoint --help` is clap's help, and prints with status 0 where CRIU is missing.
#[test]
fn checkpoint_help_without_criu() {
    let o = common::output_of(
        {
            let mut c = Command::new(common::VZRUN);
            c.env("VZRUN_CRIU", "/nonexistent/criu")
                .env("PATH", "/nonexistent")
                .args(["checkpoint", "--help"]);
            c
        },
        std::process::Stdio::null(),
    );
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout.starts_with("Checkpoint a running container"),
        "{o:?}"
    );
    assert!(o.stdout.contains("--image-path <DIR>"), "{o:?}");
    assert!(o.stdout.contains("Example:"), "{o:?}");
}

#[test]
fn man_pages_for_vzrun_and_every_subcommand() {
    let dir = tempfile::Builder::new()
        .prefix("vzt-man-")
        .tempdir()
        .unwrap();
    let o = vzrun(&["man", dir.path().to_str().unwrap()]);
    assert_eq!(o.code, 0, "{o:?}");
    for path in all_commands() {
        let name = std::iter::once("vzrun".to_string())
            .chain(path.iter().cloned())
            .collect::<Vec<_>>()
            .join("-");
        let page = std::fs::read_to_string(dir.path().join(format!("{name}.1")))
            .unwrap_or_else(|e| panic!("{name}.1: {e}"));
        assert!(
            page.starts_with(".ie") || page.contains(".TH"),
            "{name}.1: {page}"
        );
        assert!(page.contains("Example"), "{name}.1 has no example");
    }
    // A second run writes the same pages again (setup.sh runs it on every install).
    let o = vzrun(&["man", dir.path().to_str().unwrap()]);
    assert_eq!(o.code, 0, "{o:?}");
    if common::have("man") {
        let page = dir.path().join("vzrun-ve-set.1");
        let out = Command::new("man")
            .env("MANWIDTH", "100")
            .arg("-l")
            .arg(&page)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "man -l: {text}");
        assert!(text.contains("vzrun ve set"), "{text}");
        assert!(text.contains("--ram"), "{text}");
    }
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    for (shell, check) in [
        ("bash", Some(("bash", "-n"))),
        ("zsh", Some(("zsh", "-n"))),
        ("fish", Some(("fish", "--no-execute"))),
    ] {
        let o = vzrun(&["completion", shell]);
        assert_eq!(o.code, 0, "{shell}: {o:?}");
        for word in ["checkpoint", "migrate-listen", "ipadd", "image-path"] {
            assert!(o.stdout.contains(word), "{shell} completion lacks {word}");
        }
        // The script is valid for its shell where that shell is installed.
        if let Some((bin, flag)) = check.filter(|(b, _)| common::have(b)) {
            let f = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(f.path(), &o.stdout).unwrap();
            let st = Command::new(bin).arg(flag).arg(f.path()).output().unwrap();
            assert!(
                st.status.success(),
                "{bin} {flag}: {}",
                String::from_utf8_lossy(&st.stderr)
            );
        }
    }
    let o = vzrun(&["completion", "tcsh"]);
    assert_ne!(o.code, 0);
    // bash: the completion function completes subcommands.
    if common::have("bash") {
        let o = vzrun(&["completion", "bash"]);
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), &o.stdout).unwrap();
        let script = format!(
            "source {}; COMP_WORDS=(vzrun ve li); COMP_CWORD=2; COMP_LINE='vzrun ve li'; \
             COMP_POINT=${{#COMP_LINE}}; _vzrun vzrun li ve; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            f.path().display()
        );
        let out = Command::new("bash").args(["-c", &script]).output().unwrap();
        let words = String::from_utf8_lossy(&out.stdout);
        assert!(
            words.lines().any(|w| w == "list"),
            "bash completes `vzrun ve li` to list: {words:?} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `ve keys` lists every `io.vzrun.*` key with type, range and default, from the table the
/// parser checks: every key the README mentions is there, a range it prints is the one
/// the parser enforces, and a misspelt key is answered with the nearest valid one.
#[test]
fn ve_keys_lists_the_keys_the_parser_takes() {
    let o = vzrun(&["ve", "keys", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    let rows = o.json();
    let rows = rows.as_array().expect("an array");
    let row = |key: &str| {
        rows.iter()
            .find(|r| r["key"] == key)
            .unwrap_or_else(|| panic!("{key} missing from ve keys"))
            .clone()
    };
    for r in rows {
        for field in ["key", "type", "range", "default", "description"] {
            assert!(
                r[field].as_str().is_some_and(|s| !s.is_empty()),
                "{field} of {r}"
            );
        }
    }
    assert_eq!(row("io.vzrun.cpuunits")["range"], "8..500000");
    assert_eq!(row("io.vzrun.ram")["type"], "size");
    assert_eq!(row("io.vzrun.net.mode")["default"], "venet");
    assert_eq!(row("io.vzrun.hooks.timeout")["default"], "60");
    // Every key the README documents.
    let readme = std::fs::read_to_string(common::repo().join("README.md")).unwrap();
    let mut documented: Vec<&str> = readme
        .match_indices("io.vzrun.")
        .map(|(i, _)| {
            let rest = &readme[i..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || "._-".contains(c)))
                .unwrap_or(rest.len());
            rest[..end].trim_end_matches(['.', '-'])
        })
        .filter(|k| *k != "io.vzrun" && !k.ends_with(".*"))
        // The README's example of a misspelt key and its error.
        .filter(|k| !readme.contains(&format!("{k}: unknown vzrun annotation")))
        .collect();
    documented.sort();
    documented.dedup();
    assert!(documented.len() > 25, "{documented:?}");
    for key in documented {
        row(key);
    }
    // The table text too.
    let o = vzrun(&["ve", "keys"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.starts_with("KEY "), "{}", o.stdout);
    assert_eq!(o.stdout.lines().count(), rows.len() + 1);
}

#[test]
fn unknown_keys_suggest_the_nearest_and_ranges_match_ve_keys() {
    require_root!();
    let rt = common::Runtime::vzrun();
    for (key, value, want) in [
        (
            "io.vzrun.rma",
            "1G",
            "annotation io.vzrun.rma: unknown vzrun annotation; did you mean io.vzrun.ram?",
        ),
        (
            "io.vzrun.net.nameservers",
            "192.0.2.53",
            "did you mean io.vzrun.net.nameserver?",
        ),
        ("io.vzrun.cpuunits", "5", "5 is out of range (8..500000)"),
    ] {
        let bundle = common::Bundle::with(&["true"], |v| {
            v["annotations"] = serde_json::json!({ key: value });
        });
        let id = common::unique_id("keys");
        rt.track(&id);
        let o = rt.run(&["create", "-b", bundle.p(), &id]);
        assert_eq!(o.code, 1, "{key}: {o:?}");
        assert!(o.error_msg().contains(want), "{key}: {o:?}");
    }
}

/// `ve create --help` offers only what makes sense for a VE that does not exist yet (no
/// removing addresses or routes, no --save), and every ID argument says what it is.
#[test]
fn ve_create_help_offers_only_create_time_flags() {
    let create = vzrun(&["ve", "create", "--help"]).stdout;
    let set = vzrun(&["ve", "set", "--help"]).stdout;
    for flag in ["--ipdel", "--route-del", "--save"] {
        assert!(!create.contains(flag), "ve create offers {flag}:\n{create}");
        assert!(set.contains(flag), "ve set lost {flag}:\n{set}");
    }
    assert!(
        create.contains("--ipadd") && create.contains("--ram"),
        "{create}"
    );
    for help in [&create, &set] {
        let id = help
            .lines()
            .find(|l| l.trim_start().starts_with("<ID>"))
            .unwrap_or_default();
        assert!(
            id.len() > "  <ID>".len() + 5,
            "<ID> is not described:\n{help}"
        );
    }
    // What the help leaves out is still refused by name.
    let o = vzrun(&["ve", "create", "x1", "--template", "busybox", "--save"]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("--save"), "{o:?}");
}
