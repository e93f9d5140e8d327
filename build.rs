//! Generates the syscall name table that seccomp profiles are resolved against, from the
//! kernel headers of the build host (linux-libc-dev), so that names always match numbers
//! for the target architecture.

use std::env;
use std::fs;
use std::path::Path;

fn main() {
    commit_id();
    pack_relative_relocs();
    text_order();
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let candidates: &[&str] = match arch.as_str() {
        "x86_64" => &[
            "/usr/include/x86_64-linux-gnu/asm/unistd_64.h",
            "/usr/include/asm/unistd_64.h",
        ],
        "aarch64" => &["/usr/include/asm-generic/unistd.h"],
        _ => &[],
    };
    let mut table: Vec<(String, i64)> = Vec::new();
    for path in candidates {
        println!("cargo:rerun-if-changed={path}");
        if let Ok(text) = fs::read_to_string(path) {
            for line in text.lines() {
                let mut parts = line.split_whitespace();
                if parts.next() != Some("#define") {
                    continue;
                }
                let (Some(name), Some(num)) = (parts.next(), parts.next()) else {
                    continue;
                };
                let Some(name) = name.strip_prefix("__NR_") else {
                    continue;
                };
                if let Ok(n) = num.parse::<i64>() {
                    table.push((name.to_string(), n));
                }
            }
            break;
        }
    }
    if table.is_empty() {
        println!(
            "cargo:warning=no kernel syscall header for {arch}: seccomp profiles will be refused"
        );
    }
    table.sort();
    table.dedup_by(|a, b| a.0 == b.0);
    let mut out = String::from("pub static SYSCALLS: &[(&str, i64)] = &[\n");
    for (name, num) in &table {
        out.push_str(&format!("    ({name:?}, {num}),\n"));
    }
    out.push_str("];\n");
    let dest = Path::new(&env::var("OUT_DIR").unwrap_or_default()).join("syscalls.rs");
    if let Err(e) = fs::write(&dest, out) {
        panic!("write {}: {e}", dest.display());
    }
}

/// The binary stays position-independent (ASLR), but its ~16,900 relative relocations
/// (vtables, string tables, panic locations) are stored packed (DT_RELR, a few KB)
/// instead of as 24-byte RELA entries (410 KB), which the loader read in full on every
/// start. Needs binutils >= 2.38 to link (an older ld ignores the option with a warning)
/// and glibc >= 2.36 to run (ld then records GLIBC_ABI_DT_RELR, so an older glibc refuses
/// the binary by name rather than misloading it); Debian bookworm has both.
fn pack_relative_relocs() {
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let abi = env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && abi == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// The functions that `run`, `create`, `start`, `exec`, `delete` and `state` execute are
/// linked next to each other, in the order of hack/text-order.txt (made by
/// hack/text-order.sh). The kernel maps a binary's code 64 KB around each page a process
/// touches (fault_around_bytes), and a start's code, scattered over the 5 MB of text,
/// mapped most of it. The list is mangled symbol names, and a name that no longer exists
/// is skipped in silence: the hash in a name changes with the crate's version and
/// dependencies (adding a dependency to vzrun renames all of vzrun's own functions), so
/// after such a change a stale list still links but gains less until hack/text-order.sh
/// is run again. Passed only when the linker takes it (rust-lld does, and is rustc's
/// default linker for this target; GNU ld refuses the option): a probe links an empty
/// program with the same flags first.
///
/// Every build also has the linker write its map of the binary (`vzrun.map` in this
/// script's OUT_DIR, or `VZRUN_LINK_MAP=FILE`): hack/text-order.sh reads it to place its
/// probes, and hack/text-order-check.sh counts the list's names that are no longer in it
/// (the list's staleness, which the silent skip above hides). Writing it costs the link
/// a few hundred milliseconds.
fn text_order() {
    println!("cargo:rerun-if-env-changed=VZRUN_LINK_MAP");
    let dir = env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let list = Path::new(&dir).join("hack/text-order.txt");
    println!("cargo:rerun-if-changed={}", list.display());
    if env::var("CARGO_CFG_TARGET_OS").unwrap_or_default() != "linux" || !list.is_file() {
        return;
    }
    let map = env::var("VZRUN_LINK_MAP").unwrap_or_else(|_| {
        let out = env::var("OUT_DIR").unwrap_or_default();
        Path::new(&out).join("vzrun.map").display().to_string()
    });
    let args = [
        format!("-Wl,--symbol-ordering-file={}", list.display()),
        "-Wl,--no-warn-symbol-ordering".to_string(),
        format!("-Wl,-Map={map}"),
        // Mangled names, as the ordering file has them.
        "-Wl,--no-demangle".to_string(),
    ];
    if links_with(&args) {
        for a in args {
            println!("cargo:rustc-link-arg-bins={a}");
        }
    }
}

/// Whether rustc links an empty program for the target with these linker arguments, with
/// the linker and flags this build uses.
fn links_with(link_args: &[String]) -> bool {
    let out = Path::new(&env::var("OUT_DIR").unwrap_or_default()).join("link-probe");
    let src = out.with_extension("rs");
    if fs::write(&src, "fn main() {}\n").is_err() {
        return false;
    }
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let mut cmd = std::process::Command::new(rustc);
    cmd.arg("--crate-type=bin").arg("-o").arg(&out).arg(&src);
    if let Ok(target) = env::var("TARGET") {
        cmd.arg("--target").arg(target);
    }
    if let Ok(linker) = env::var("RUSTC_LINKER") {
        cmd.arg(format!("-Clinker={linker}"));
    }
    if let Ok(flags) = env::var("CARGO_ENCODED_RUSTFLAGS") {
        cmd.args(flags.split('\x1f').filter(|f| !f.is_empty()));
    }
    for a in link_args {
        cmd.arg(format!("-Clink-arg={a}"));
    }
    let ok = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let _ = fs::remove_file(&out);
    let _ = fs::remove_file(&src);
    ok
}

/// `vzrun --version` names the commit it was built from.
fn commit_id() {
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=VZRUN_COMMIT={commit}");
}
