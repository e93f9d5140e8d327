//! `ve list` as vzlist: VE IDs as arguments, `-s [-]FIELD` on any field (shown or not),
//! `-1`, `-L`, `-S`, numbers right-aligned, and `-j` with every field of each VE.

mod common;

use common::{Bundle, Runtime};
use serde_json::json;

/// A running application VE with a numproc limit, removed at the end.
fn start(rt: &Runtime, tag: &str, numproc: u32) -> (String, Bundle) {
    let bundle = Bundle::with(&["sleep", "600"], |v| {
        v["annotations"] = json!({"io.vzrun.numproc": numproc.to_string()});
    });
    let id = common::unique_id(tag);
    rt.track(&id);
    let o = rt.run(&["run", "-d", "-b", bundle.p(), &id]);
    assert_eq!(o.code, 0, "{o:?}");
    (id, bundle)
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

#[test]
fn vzlist_flags() {
    require_root!();
    let rt = Runtime::vzrun();
    // IDs sort a before b; the limits the other way round.
    let (a, _ba) = start(&rt, "vzl-a", 44);
    let (b, _bb) = start(&rt, "vzl-b", 33);
    let list = |args: &[&str]| {
        let mut all = vec!["ve", "list"];
        all.extend_from_slice(args);
        let o = rt.run(&all);
        assert_eq!(o.code, 0, "{all:?}: {o:?}");
        o.stdout
    };

    // IDs as arguments pick those VEs; -1 prints only their IDs.
    assert_eq!(lines(&list(&["-1", &b, &a])), [a.as_str(), b.as_str()]);
    // Sorting by a field that is not shown, then in reverse with -FIELD.
    assert_eq!(
        lines(&list(&["-H", "-o", "ctid", "-s", "numproc.l", &a, &b])),
        [b.as_str(), a.as_str()]
    );
    assert_eq!(
        lines(&list(&["-H", "-o", "ctid", "-s", "-ctid", &a, &b])),
        [b.as_str(), a.as_str()]
    );
    assert_eq!(
        lines(&list(&["-H", "-o", "ctid", "-s", "-numproc.l", &a, &b])),
        [a.as_str(), b.as_str()]
    );
    // Numbers right-aligned under their header, words left-aligned.
    let table = list(&["-o", "ctid,numproc.l,status", &a, &b]);
    let rows = lines(&table);
    let head_end = rows[0].find("NUMPROC.L").expect("header") + "NUMPROC.L".len();
    for (row, want) in [(rows[1], "44"), (rows[2], "33")] {
        assert_eq!(&row[head_end - 2..head_end], want, "{table}");
        assert!(row.starts_with(&a) || row.starts_with(&b), "{table}");
    }
    // -S: only VEs that are not running (these two are).
    assert_eq!(list(&["-S", "-H", &a, &b]), "");
    // -L names the fields, -o and -s take them.
    let fields = list(&["-L"]);
    for f in [
        "ctid",
        "hostname",
        "numproc.l",
        "physpages.m",
        "diskinodes.f",
        "numfile.b",
    ] {
        assert!(
            fields
                .lines()
                .any(|l| l.split_whitespace().next() == Some(f)),
            "{f}: {fields}"
        );
    }
    // -j: every field of each VE, whatever -o asks; beancounters as objects.
    let rows = rt.run(&["ve", "list", "-j", "-o", "ctid", &a]).json();
    let row = &rows[0];
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "{rows}");
    for key in ["ctid", "status", "hostname", "ip", "beancounters", "usage"] {
        assert!(row.get(key).is_some(), "{key}: {row}");
    }
    let bc = row["beancounters"].as_object().expect("beancounters");
    let names: Vec<&str> = bc.keys().map(String::as_str).collect();
    for name in [
        "physpages",
        "swappages",
        "kmemsize",
        "numproc",
        "numfile",
        "diskspace",
        "diskinodes",
    ] {
        assert!(names.contains(&name), "{name}: {row}");
        let counter = &bc[name];
        for column in ["held", "maxheld", "barrier", "limit", "failcnt"] {
            assert!(counter.get(column).is_some(), "{name}.{column}: {row}");
        }
    }
    assert_eq!(bc["numproc"]["limit"], 44, "{row}");
    assert!(
        row.as_object().unwrap().keys().all(|k| !k.contains('.')),
        "no flat dotted keys: {row}"
    );
    // Bad fields are named, for -o and -s alike.
    for args in [vec!["-o", "ctid,bogus"], vec!["-s", "-bogus"]] {
        let mut all = vec!["ve", "list"];
        all.extend_from_slice(&args);
        let o = rt.run(&all);
        assert_eq!(o.code, 1, "{o:?}");
        assert!(o.error_msg().contains("unknown field \"bogus\""), "{o:?}");
    }
}

/// The hostname comes from the spec, which is the tenant's: a newline in it printed a
/// forged row of another VE, and an escape sequence reached the administrator's
/// terminal. Both are shown escaped; `-j` keeps the value as it is.
#[test]
fn a_hostname_cannot_forge_rows_or_reach_the_terminal() {
    require_root!();
    let rt = Runtime::vzrun();
    let forged = "h\nvzt-forged       77  running  198.51.100.9  \u{1b}[31mfake";
    let bundle = Bundle::with(&["sleep", "600"], |v| {
        v["hostname"] = json!(forged);
        v["annotations"] = json!({"io.vzrun.numproc": "50"});
    });
    let id = common::unique_id("vzl-host");
    rt.track(&id);
    let o = rt.run(&["run", "-d", "-b", bundle.p(), &id]);
    assert_eq!(o.code, 0, "{o:?}");
    let o = rt.run(&["ve", "list", "-H", "-o", "ctid,hostname", &id]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(lines(&o.stdout).len(), 1, "{:?}", o.stdout);
    assert!(!o.stdout.contains('\u{1b}'), "{:?}", o.stdout);
    assert!(o.stdout.contains("h\\nvzt-forged"), "{:?}", o.stdout);
    let o = rt.run(&["ve", "list", "-j", "-o", "ctid,hostname", &id]);
    assert_eq!(o.json()[0]["hostname"], forged);
}
