//! The state the hooks libcontainer runs during `create` read on stdin. libcontainer
//! hands prestart, createRuntime and createContainer hooks its own state: its bundle (the
//! directory of the derived config.json vzrun gives it, see [`Runtime::derive_spec`]) and
//! its spec version, and createContainer no pid. runc's hooks read the caller's bundle,
//! the runtime's version and, in createContainer, the init's pid as the container sees it.
//!
//! libcontainer takes the config from its bundle directory and names that directory in
//! the state, so the derived config cannot be handed over under the caller's name.
//! Instead each such hook is wrapped: libcontainer runs vzrun's own binary
//! (`/proc/self/exe`, whichever copy runs, sealed or not, and in whatever mount
//! namespace) with [`SHIM`] and the real hook as arguments, the hook's env and timeout
//! unchanged. The shim corrects the state read from stdin and execs the real hook in
//! its place with the corrected state on a new stdin, so libcontainer's timeout still
//! kills the hook itself and its exit status is the hook's own. It also starts the hook
//! where runc does: prestart and createRuntime in the bundle (runc works from there),
//! createContainer in the rootfs (runc's init is there by then); libcontainer leaves
//! them in vzrun's working directory.
//!
//! [`Runtime::derive_spec`]: crate::runtime::Runtime::derive_spec

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{ContainerState, Hook, Spec, State};

use crate::runtime::state::OCI_VERSION;

/// argv[1] of the shim: a word no vzrun command line starts with.
const SHIM: &str = "--vzrun-internal-hook-state";

/// The hooks libcontainer runs while the container is being created.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// prestart and createRuntime: run by vzrun, in the runtime's namespaces.
    Runtime,
    /// createContainer: run by the container's init, in its namespaces, before
    /// pivot_root.
    Container,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Runtime => "runtime",
            Kind::Container => "container",
        }
    }

    fn parse(w: &OsStr) -> Option<Kind> {
        match w.as_bytes() {
            b"runtime" => Some(Kind::Runtime),
            b"container" => Some(Kind::Container),
            _ => None,
        }
    }
}

/// Replaces the spec's prestart, createRuntime and createContainer hooks with the shim
/// around each, which gives the hook `bundle` (the caller's) in its state; `rootfs` is
/// where the init's mounts are made (the spec's root once the VE layer prepared it).
pub fn wrap_create_hooks(spec: &mut Spec, bundle: &Path, rootfs: &Path) {
    let Some(mut hooks) = spec.hooks().clone() else {
        return;
    };
    let wrap = |list: &Option<Vec<Hook>>, kind: Kind| {
        let dir = match kind {
            Kind::Runtime => bundle,
            Kind::Container => rootfs,
        };
        list.as_ref()
            .map(|l| l.iter().map(|h| wrapped(h, kind, bundle, dir)).collect())
    };
    #[allow(deprecated)]
    let prestart = wrap(hooks.prestart(), Kind::Runtime);
    #[allow(deprecated)]
    hooks.set_prestart(prestart);
    hooks.set_create_runtime(wrap(hooks.create_runtime(), Kind::Runtime));
    hooks.set_create_container(wrap(hooks.create_container(), Kind::Container));
    spec.set_hooks(Some(hooks));
}

/// One hook behind the shim: `/proc/self/exe SHIM KIND BUNDLE DIR PATH [ARGV0 ARGS...]`,
/// DIR being where it starts.
fn wrapped(hook: &Hook, kind: Kind, bundle: &Path, dir: &Path) -> Hook {
    let mut args: Vec<String> = vec![
        "vzrun-hook".into(),
        SHIM.into(),
        kind.word().into(),
        bundle.to_string_lossy().into_owned(),
        dir.to_string_lossy().into_owned(),
        hook.path().to_string_lossy().into_owned(),
    ];
    args.extend(hook.args().iter().flatten().cloned());
    let mut w = hook.clone();
    w.set_path(PathBuf::from("/proc/self/exe"));
    w.set_args(Some(args));
    w
}

/// The state a hook of `kind` reads, as runc gives it: the caller's bundle, the runtime's
/// spec version, `creating`, and in createContainer the init's pid (the shim's parent:
/// the init runs it) as the container sees it. Annotations appear only when there are
/// some. Input that is not a state passes unchanged.
fn corrected(input: &[u8], kind: Kind, bundle: &Path, parent: i32) -> Vec<u8> {
    let Ok(mut state) = serde_json::from_slice::<State>(input) else {
        return input.to_vec();
    };
    state.set_version(OCI_VERSION.to_string());
    state.set_bundle(bundle.to_path_buf());
    state.set_status(ContainerState::Creating);
    if kind == Kind::Container && state.pid().is_none() {
        state.set_pid(Some(parent));
    }
    if state.annotations().as_ref().is_some_and(|a| a.is_empty()) {
        state.set_annotations(None);
    }
    serde_json::to_vec(&state).unwrap_or_else(|_| input.to_vec())
}

/// A pipe holding `data` whole, its write end closed: the hook's stdin.
fn pipe_with(data: &[u8]) -> std::io::Result<std::os::fd::OwnedFd> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    if data.len() > 65536 {
        // Written before the hook runs: the pipe must hold all of it.
        nix::fcntl::fcntl(
            std::os::fd::AsRawFd::as_raw_fd(&w),
            nix::fcntl::FcntlArg::F_SETPIPE_SZ(data.len() as libc::c_int),
        )?;
    }
    std::fs::File::from(w).write_all(data)?;
    Ok(r)
}

/// When this process was started as the shim, runs it: execs the real hook and returns
/// only the exit status for a hook that could not be started.
pub fn shim() -> Option<i32> {
    let mut argv = std::env::args_os().skip(1);
    if argv.next().as_deref() != Some(OsStr::new(SHIM)) {
        return None;
    }
    let (Some(kind), Some(bundle), Some(dir), Some(path)) = (
        argv.next().as_deref().and_then(Kind::parse),
        argv.next().map(PathBuf::from),
        argv.next(),
        argv.next(),
    ) else {
        eprintln!("vzrun: {SHIM}: KIND BUNDLE DIR PATH [ARGS...] expected");
        return Some(2);
    };
    let rest: Vec<OsString> = argv.collect();
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        eprintln!(
            "vzrun: hook {}: read the state: {e}",
            path.to_string_lossy()
        );
        return Some(1);
    }
    let parent = nix::unistd::getppid().as_raw();
    let stdin = match pipe_with(&corrected(&input, kind, &bundle, parent)) {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!(
                "vzrun: hook {}: pass the state: {e}",
                path.to_string_lossy()
            );
            return Some(1);
        }
    };
    let mut cmd = std::process::Command::new(&path);
    // Without args the hook's argv[0] is its path, as libcontainer and runc give it.
    match rest.split_first() {
        Some((argv0, args)) => cmd.arg0(argv0).args(args),
        None => cmd.arg0(&path),
    };
    // The environment is the one libcontainer gave the shim.
    let e = cmd.current_dir(dir).stdin(stdin).exec();
    eprintln!("vzrun: hook {}: {e}", path.to_string_lossy());
    // A shell's status for a command it could not run.
    Some(127)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_hook_keeps_env_timeout_and_args() {
        let hook: Hook = serde_json::from_value(serde_json::json!({
            "path": "/bin/sh", "args": ["sh", "-c", "cat"], "env": ["A=1"], "timeout": 5
        }))
        .unwrap();
        let w = wrapped(&hook, Kind::Container, Path::new("/b"), Path::new("/r"));
        assert_eq!(w.path(), Path::new("/proc/self/exe"));
        assert_eq!(w.env(), hook.env());
        assert_eq!(w.timeout(), Some(5));
        assert_eq!(
            w.args().as_deref().unwrap()[1..],
            [SHIM, "container", "/b", "/r", "/bin/sh", "sh", "-c", "cat"]
        );
    }

    #[test]
    fn state_names_the_callers_bundle_and_vzruns_version() {
        let libcontainer = br#"{"ociVersion":"1.1.0","id":"x","status":"creating","bundle":"/run/vzrun/.vzrun/x","annotations":{}}"#;
        let out = corrected(libcontainer, Kind::Container, Path::new("/b"), 1);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"ociVersion": OCI_VERSION, "id": "x", "status": "creating", "pid": 1, "bundle": "/b"})
        );
        let out = corrected(libcontainer, Kind::Runtime, Path::new("/b"), 1);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(v.get("pid").is_none(), "{v}");
        assert_eq!(
            corrected(b"not json", Kind::Runtime, Path::new("/b"), 1),
            b"not json"
        );
    }
}
