//! A process's mount table, `/proc/PID/mountinfo`, read in one place. Finishing a create,
//! delete's cgroup walk, a checkpoint's cgroup roots and stdio, a move's left-out tmpfs
//! and the /proc view all ask it something different; each used to split the lines its
//! own way, and only some undid the kernel's escapes.

use std::io;
use std::path::{Path, PathBuf};

/// One line of mountinfo, its paths with the kernel's escapes undone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The mount's ID (field 1), as fdinfo's `mnt_id` names it.
    pub id: u64,
    /// The device of the filesystem (field 3, `major:minor`): the same for every mount
    /// of one filesystem, in every mount namespace, and not a name anyone can choose.
    pub dev: String,
    /// The directory of the filesystem this mount shows (field 4): `/` for a whole
    /// filesystem, a sub-directory or file for a bind.
    pub root: PathBuf,
    /// Where it is mounted, as the process sees it (field 5).
    pub point: PathBuf,
    /// This mount's own options (field 6): `ro`, `nosuid` and the like.
    pub options: String,
    /// The filesystem type (the first field after ` - `).
    pub fstype: String,
    /// The filesystem's own options (the last field): `size=`, `mode=`, a v1 cgroup's
    /// controllers.
    pub super_options: String,
}

impl Mount {
    /// Whether the mount's own options hold `word`.
    pub fn has_option(&self, word: &str) -> bool {
        self.options.split(',').any(|o| o == word)
    }
}

/// The mount table of `pid`, or of this process for `None`.
pub fn read(pid: Option<i32>) -> io::Result<Vec<Mount>> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/mountinfo"),
        None => "/proc/self/mountinfo".to_string(),
    };
    // /proc reports a size of 0, so read_to_string would start from a 32-byte probe and
    // double up (8 reads for this host's 2.5 KB table); one buffer takes it in two.
    let mut text = String::with_capacity(16 * 1024);
    std::io::Read::read_to_string(&mut std::fs::File::open(path)?, &mut text)?;
    Ok(parse(&text))
}

/// Each well-formed line of a mountinfo text, in the kernel's order (a later mount at
/// the same point is on top of an earlier one); a line the kernel would not write is
/// skipped.
pub fn parse(text: &str) -> Vec<Mount> {
    text.lines().filter_map(line).collect()
}

fn line(l: &str) -> Option<Mount> {
    // Spaces inside paths are escaped (\040), so splitting on them is exact. Optional
    // fields (shared:N, master:N) come before the lone "-".
    let (head, tail) = l.split_once(" - ")?;
    let head: Vec<&str> = head.split(' ').collect();
    let mut tail = tail.split(' ');
    Some(Mount {
        id: head.first()?.parse().ok()?,
        dev: head.get(2)?.to_string(),
        root: PathBuf::from(unescape(head.get(3)?)),
        point: PathBuf::from(unescape(head.get(4)?)),
        options: head.get(5)?.to_string(),
        fstype: tail.next()?.to_string(),
        super_options: tail.nth(1).unwrap_or_default().to_string(),
    })
}

/// The topmost mount at `point` in `table`.
pub fn top_at<'a>(table: &'a [Mount], point: &Path) -> Option<&'a Mount> {
    table.iter().rev().find(|m| m.point == point)
}

/// The mount a process sees at `point`: the topmost one there, unless a mount made after
/// it (later in the kernel's order) is at a directory above `point` and so covers it.
pub fn visible_at<'a>(table: &'a [Mount], point: &Path) -> Option<&'a Mount> {
    let (i, top) = table
        .iter()
        .enumerate()
        .rev()
        .find(|(_, m)| m.point == point)?;
    let covered = table[i + 1..]
        .iter()
        .any(|later| point.starts_with(&later.point));
    (!covered).then_some(top)
}

/// A mountinfo path with the kernel's octal escapes (`\040` for a space, and the like
/// for tab, newline and backslash) undone.
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|s| u8::from_str_radix(s, 8).ok())
        });
        match (b[i], oct) {
            (b'\\', Some(c)) => {
                out.push(c);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_come_out_unescaped_with_optional_fields_skipped() {
        let t = parse(
            "26 25 0:24 / /sys/fs/cgroup/unified rw,nosuid shared:5 master:1 - cgroup2 cgroup2 rw\n\
             30 25 0:27 /a\\134b /mnt/odd\\040dir ro,nodev - cgroup cgroup rw,pids\n\
             garbage line\n\
             31 25 0:28 / /x rw - tmpfs\n",
        );
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].point, PathBuf::from("/sys/fs/cgroup/unified"));
        assert_eq!(
            (t[0].fstype.as_str(), t[0].super_options.as_str()),
            ("cgroup2", "rw")
        );
        assert_eq!(t[1].id, 30);
        assert_eq!(t[1].root, PathBuf::from("/a\\b"));
        assert_eq!(t[1].point, PathBuf::from("/mnt/odd dir"));
        assert!(t[1].has_option("ro") && !t[1].has_option("rw"));
        assert_eq!(t[1].super_options, "rw,pids");
        assert_eq!(t[2].super_options, "");
    }

    #[test]
    fn the_last_mount_at_a_point_is_on_top() {
        let t = parse(
            "56 74 0:49 / /sys/firmware ro - tmpfs tmpfs ro\n\
             57 74 0:51 / /sys/firmware rw - sysfs sysfs rw\n",
        );
        assert_eq!(
            top_at(&t, Path::new("/sys/firmware")).map(|m| m.id),
            Some(57)
        );
        assert!(top_at(&t, Path::new("/sys")).is_none());
    }

    #[test]
    fn a_mount_made_later_above_a_file_covers_it() {
        let t = parse(
            "60 50 0:5 / /proc rw - proc proc rw\n\
             61 60 0:40 /proc/meminfo /proc/meminfo ro - fuse.lxcfs lxcfs rw\n\
             62 60 0:41 / /proc/sys ro - proc proc rw\n",
        );
        let seen = visible_at(&t, Path::new("/proc/meminfo"));
        assert_eq!(seen.map(|m| (m.id, m.dev.as_str())), Some((61, "0:40")));
        let mut covered = t.clone();
        covered.extend(parse("63 60 0:42 / /proc rw - fuse fuse rw\n"));
        assert!(visible_at(&covered, Path::new("/proc/meminfo")).is_none());
        assert_eq!(
            visible_at(&covered, Path::new("/proc")).map(|m| m.id),
            Some(63)
        );
    }

    #[test]
    fn a_backslash_without_three_octal_digits_stays() {
        assert_eq!(unescape("/a\\04"), "/a\\04");
        assert_eq!(unescape("/a\\011b"), "/a\tb");
    }
}
