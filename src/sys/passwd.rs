//! A user's home directory from a container's /etc/passwd, read by vzrun itself.
//!
//! libcontainer fills in a missing HOME with getpwuid_r inside the container, after it
//! has entered the container's root: glibc then follows the container's nsswitch.conf
//! and loads whatever NSS module the container's image names, so the image's code runs
//! inside vzrun, holding vzrun's descriptors and its channel to the host side (and a
//! FIFO as /etc/passwd hangs the exec). runc and crun parse /etc/passwd themselves; so
//! does vzrun, and hands libcontainer a process that already has HOME.

use std::fs::File;
use std::path::Path;

use nix::fcntl::{OFlag, ResolveFlag};
use nix::sys::stat::Mode;

/// runc's home for a user its passwd does not name (or when there is no passwd).
const DEFAULT_HOME: &str = "/";

/// The home of `uid` in the passwd file under `root` (a directory handle: the
/// container's root), resolved inside it; `/` when the file is missing, not a regular
/// file, too large, or does not name the user.
pub fn home_in(root: &File, uid: u32) -> String {
    let text = crate::sys::fs::open_regular_at(
        root,
        Path::new("etc/passwd"),
        OFlag::O_RDONLY,
        Mode::empty(),
        ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS,
    )
    .and_then(|f| {
        crate::sys::fs::read_at_most(f, crate::sys::fs::SMALL_FILE_MAX, Path::new("/etc/passwd"))
    });
    match text {
        Ok(t) => home_of(&String::from_utf8_lossy(&t), uid),
        Err(_) => DEFAULT_HOME.to_string(),
    }
}

/// The home field of the first entry for `uid` in a passwd text (name:password:uid:gid:
/// gecos:home:shell), `/` when there is none or it is empty.
fn home_of(passwd: &str, uid: u32) -> String {
    passwd
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 6 && f[2].trim().parse::<u32>() == Ok(uid))
        .map(|f| f[5].to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| DEFAULT_HOME.to_string())
}

/// Gives `env` a HOME from the passwd under the directory `root` for `uid` unless it has a
/// non-empty one (what runc does, and what libcontainer would otherwise do through NSS);
/// whether it added one. The root is opened only when HOME is missing.
pub fn set_home(env: &mut Vec<String>, root: &Path, uid: u32) -> bool {
    let has = env
        .iter()
        .any(|kv| kv.strip_prefix("HOME=").is_some_and(|v| !v.is_empty()));
    if has {
        return false;
    }
    let home = File::open(root).map_or_else(|_| DEFAULT_HOME.to_string(), |r| home_in(&r, uid));
    env.retain(|kv| kv != "HOME=");
    env.push(format!("HOME={home}"));
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_entry_for_the_uid_gives_the_home() {
        let p = "# comment\nroot:x:0:0:root:/root:/bin/sh\nbad line\nu:x:1000:1000::/home/u:/bin/sh\nv:x:1000:1000::/home/v:/bin/sh\nn:x:7:7:::\n";
        assert_eq!(home_of(p, 0), "/root");
        assert_eq!(home_of(p, 1000), "/home/u");
        assert_eq!(home_of(p, 7), "/");
        assert_eq!(home_of(p, 4242), "/");
        assert_eq!(home_of("", 0), "/");
    }

    #[test]
    fn a_home_given_stays_and_an_empty_one_is_filled() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        let mut env = vec!["HOME=/mine".to_string()];
        assert!(!set_home(&mut env, dir.path(), 0));
        assert_eq!(env, ["HOME=/mine"]);
        let mut env = vec!["HOME=".to_string(), "A=b".to_string()];
        assert!(set_home(&mut env, dir.path(), 0));
        assert_eq!(env, ["A=b", "HOME=/root"]);
    }

    #[test]
    fn a_fifo_as_passwd_is_not_opened() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        nix::unistd::mkfifo(
            &dir.path().join("etc/passwd"),
            Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let root = File::open(dir.path()).unwrap();
        assert_eq!(home_in(&root, 0), "/");
    }
}
