//! OS templates: a root filesystem a system VE boots from, built once and cached under
//! the vzrun data directory (`/var/lib/vzrun`, or `$VZRUN_DATA_DIR`):
//!
//! - `templates/NAME/rootfs/`       the tree, never written by a VE (VEs get an overlay)
//! - `templates/NAME/template.json` what it is and how its init is asked to stop
//! - `cache/debootstrap/`           downloaded packages, so a rebuild is quick
//!
//! `busybox` is built in: it is made from the host's static busybox the first time a VE
//! asks for it. Other templates are made by debootstrap. Every build happens in a
//! temporary directory beside the target and is renamed into place at the end, so a
//! failed or interrupted build never leaves a half template under its name.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

/// The built-in template, made from the host's busybox without any download.
pub const BUSYBOX: &str = "busybox";
const HOST_BUSYBOX: &str = "/bin/busybox";
/// Without an init there is no system to boot; the rest is the caller's choice.
const BASE_PACKAGES: &[&str] = &["sysvinit-core"];

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("template {0:?} does not exist (see `vzrun template list`)")]
    NotFound(String),
    #[error("template {0:?} already exists")]
    Exists(String),
    #[error("template name {0:?}: use letters, digits, '_', '-', '.' (not starting with '.')")]
    BadName(String),
    #[error("dist: unknown distribution {0:?} (known: debian-11, debian-12, debian-13)")]
    BadDist(String),
    #[error("packages: {0:?} is not a Debian package name")]
    BadPackage(String),
    #[error("mirror: {0:?} is not an http://, https:// or file:// URL")]
    BadMirror(String),
    #[error("mirror: none given, and the host's apt sources name no Debian mirror")]
    NoMirror,
    #[error("template {name:?} is used by VE {ve}: destroy it first")]
    InUse { name: String, ve: String },
    #[error("debootstrap is not installed (apt-get install debootstrap)")]
    NoDebootstrap,
    #[error("debootstrap failed ({status}); last lines of its log:\n{tail}")]
    Debootstrap { status: String, tail: String },
    #[error("busybox template: {0}")]
    Busybox(String),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl TemplateError {
    /// The setting a bad value belongs to, for a command to name its flag.
    pub fn setting(&self) -> Option<&'static str> {
        match self {
            TemplateError::BadDist(_) => Some("dist"),
            TemplateError::BadPackage(_) => Some("packages"),
            TemplateError::BadMirror(_) | TemplateError::NoMirror => Some("mirror"),
            _ => None,
        }
    }
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> TemplateError {
    let path = path.to_path_buf();
    move |source| TemplateError::Io { what, path, source }
}

/// How the template's init is asked to shut the system down.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Shutdown {
    /// busybox init: SIGUSR2 runs the shutdown actions, then powers off.
    Busybox,
    /// sysvinit: a runlevel-0 request on /run/initctl, as `telinit 0`/`halt` send it.
    Sysvinit,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TemplateInfo {
    pub name: String,
    pub dist: String,
    pub init: Vec<String>,
    pub shutdown: Shutdown,
    #[serde(default)]
    pub packages: Vec<String>,
    #[serde(default)]
    pub mirror: Option<String>,
    pub created: String,
}

pub struct Template {
    pub info: TemplateInfo,
    pub rootfs: PathBuf,
}

pub use super::data_dir;

fn templates_dir(data: &Path) -> PathBuf {
    data.join("templates")
}

pub fn check_name(name: &str) -> Result<(), TemplateError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(TemplateError::BadName(name.to_string()))
    }
}

/// debootstrap's suite for a `--dist` value.
pub fn suite_of(dist: &str) -> Result<&'static str, TemplateError> {
    match dist {
        "debian-11" | "bullseye" => Ok("bullseye"),
        "debian-12" | "bookworm" => Ok("bookworm"),
        "debian-13" | "trixie" => Ok("trixie"),
        _ => Err(TemplateError::BadDist(dist.to_string())),
    }
}

/// `a,b,c` into names, each checked against Debian's rules for package names.
pub fn parse_packages(list: &str) -> Result<Vec<String>, TemplateError> {
    let mut out = Vec::new();
    for p in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let ok = p.len() >= 2
            && p.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && p.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.')
            });
        if !ok {
            return Err(TemplateError::BadPackage(p.to_string()));
        }
        out.push(p.to_string());
    }
    Ok(out)
}

/// debootstrap takes a URL; a bare directory is taken as a local file mirror.
pub fn mirror_url(mirror: &str) -> Result<String, TemplateError> {
    if mirror.starts_with("http://") || mirror.starts_with("https://") {
        return Ok(mirror.to_string());
    }
    if let Some(path) = mirror.strip_prefix("file://") {
        if path.starts_with('/') {
            return Ok(mirror.to_string());
        }
    } else if mirror.starts_with('/') {
        return Ok(format!("file://{mirror}"));
    }
    Err(TemplateError::BadMirror(mirror.to_string()))
}

/// Opens a template; the built-in busybox one is made on first use.
pub fn open(data: &Path, name: &str) -> Result<Template, TemplateError> {
    check_name(name)?;
    let dir = templates_dir(data).join(name);
    if !dir.join("template.json").exists() {
        if name != BUSYBOX {
            return Err(TemplateError::NotFound(name.to_string()));
        }
        create_busybox(data, name)?;
    }
    read(&dir)
}

/// A busybox system template under any name (`template create NAME --dist busybox`).
pub fn create_busybox(data: &Path, name: &str) -> Result<TemplateInfo, TemplateError> {
    check_name(name)?;
    build(data, name, |tmp| {
        build_busybox(&tmp.join("rootfs"))?;
        Ok(TemplateInfo {
            name: name.to_string(),
            dist: "busybox".to_string(),
            init: vec!["/sbin/init".to_string()],
            shutdown: Shutdown::Busybox,
            packages: Vec::new(),
            mirror: None,
            created: now(),
        })
    })
}

fn read(dir: &Path) -> Result<Template, TemplateError> {
    let path = dir.join("template.json");
    let data = fs::read(&path).map_err(io("read", &path))?;
    let info: TemplateInfo = serde_json::from_slice(&data).map_err(|e| TemplateError::Io {
        what: "parse",
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    Ok(Template {
        info,
        rootfs: dir.join("rootfs"),
    })
}

/// Every template in the data directory, sorted by name.
pub fn list(data: &Path) -> Vec<TemplateInfo> {
    let mut out: Vec<TemplateInfo> = fs::read_dir(templates_dir(data))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .filter_map(|e| read(&e.path()).ok())
                .map(|t| t.info)
                .collect()
        })
        .unwrap_or_default();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Removes a template that no VE uses. `users` names the VEs built on each template.
pub fn remove(data: &Path, name: &str, users: &[(String, String)]) -> Result<(), TemplateError> {
    check_name(name)?;
    let dir = templates_dir(data).join(name);
    if !dir.join("template.json").exists() {
        return Err(TemplateError::NotFound(name.to_string()));
    }
    if let Some((ve, _)) = users.iter().find(|(_, t)| t == name) {
        return Err(TemplateError::InUse {
            name: name.to_string(),
            ve: ve.clone(),
        });
    }
    // Renamed away first: a concurrent `ve create` sees it gone, never half removed.
    let trash = templates_dir(data).join(format!(".{name}.rm-{}", std::process::id()));
    fs::rename(&dir, &trash).map_err(io("remove", &dir))?;
    fs::remove_dir_all(&trash).map_err(io("remove", &trash))
}

/// How far a template build has come, for the caller to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// What the build is doing: "resolving", "downloading", "unpacking"...
    pub stage: &'static str,
    /// Packages done in this stage.
    pub done: usize,
    /// Packages the stage works through; 0 while not known (during the download).
    pub total: usize,
}

/// Turns debootstrap's output, line by line, into stages and package counts. The total
/// is the number of packages it downloaded or validated (each once). Unpacking and
/// configuring happen twice (the required packages, then the base system): their counts
/// go on across both.
#[derive(Default)]
struct DebootstrapLog {
    stage: &'static str,
    done: std::collections::HashMap<&'static str, usize>,
    packages: std::collections::HashSet<String>,
}

impl DebootstrapLog {
    fn line(&mut self, line: &str) -> Option<Progress> {
        let line = line.trim_end();
        let info = line.strip_prefix("I: ");
        let word = |s: &str| s.split([' ', '.']).next().unwrap_or_default().to_string();
        let (stage, package) = if let Some(rest) = info.and_then(|i| {
            i.strip_prefix("Retrieving ")
                .or_else(|| i.strip_prefix("Validating "))
        }) {
            // "Retrieving libc6 2.36-9": a package and its version; the archive's index
            // files ("Retrieving InRelease") have no version.
            if rest.split(' ').count() < 2 {
                ("resolving", None)
            } else {
                let name = word(rest);
                if !self.packages.insert(name) {
                    return None;
                }
                ("downloading", Some(()))
            }
        } else if info.is_some_and(|i| i.starts_with("Extracting ")) {
            ("extracting", Some(()))
        } else if info.is_some_and(|i| i.starts_with("Installing core packages")) {
            ("installing core packages", None)
        } else if info
            .is_some_and(|i| i.starts_with("Resolving dependencies") || i.starts_with("Checking "))
        {
            ("resolving", None)
        } else if info.is_some_and(|i| i.starts_with("Base system installed")) {
            ("installed", None)
        } else if let Some(rest) = info.and_then(|i| i.strip_prefix("Unpacking ")) {
            // "Unpacking required packages..." and "Unpacking the base system..." head
            // the two rounds; "Unpacking libc6..." is one package.
            let round = rest.starts_with("required packages") || rest.starts_with("the base");
            ("unpacking", (!round).then_some(()))
        } else if let Some(rest) = info.and_then(|i| i.strip_prefix("Configuring ")) {
            let round = rest.starts_with("required packages") || rest.starts_with("the base");
            ("configuring", (!round).then_some(()))
        } else {
            return None;
        };
        if stage != self.stage {
            self.stage = stage;
        } else if package.is_none() {
            return None;
        }
        let done = self.done.entry(stage).or_default();
        if package.is_some() {
            *done += 1;
        }
        let done = *done;
        let total = if stage == "downloading" {
            0
        } else {
            self.packages.len()
        };
        Some(Progress { stage, done, total })
    }
}

/// Runs debootstrap with its output going to `log` and, line by line, to `progress`.
fn run_debootstrap(
    cmd: &mut Command,
    log: &mut fs::File,
    progress: &mut dyn FnMut(Progress),
) -> std::io::Result<std::process::ExitStatus> {
    use std::io::BufRead;
    let (reader, writer) = std::io::pipe()?;
    let mut child = cmd.stdout(writer.try_clone()?).stderr(writer).spawn()?;
    // The command holds the only other copies of the write end: EOF comes when
    // debootstrap and its children are done.
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let mut parse = DebootstrapLog::default();
    let mut lines = std::io::BufReader::new(reader);
    let mut line = Vec::new();
    loop {
        line.clear();
        if lines.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        log.write_all(&line)?;
        if let Some(p) = parse.line(&String::from_utf8_lossy(&line)) {
            progress(p);
        }
    }
    child.wait()
}

/// Builds a Debian template with debootstrap (minbase plus sysvinit and `packages`);
/// `progress` hears of each stage and package.
pub fn create_debian(
    data: &Path,
    name: &str,
    dist: &str,
    mirror: Option<&str>,
    packages: &[String],
    progress: &mut dyn FnMut(Progress),
) -> Result<TemplateInfo, TemplateError> {
    check_name(name)?;
    let suite = suite_of(dist)?;
    // Without --mirror: the Debian mirror the host's own apt uses.
    let host_mirror = crate::sys::apt::debian_mirror();
    let url = mirror_url(
        mirror
            .or(host_mirror.as_deref())
            .ok_or(TemplateError::NoMirror)?,
    )?;
    if templates_dir(data).join(name).exists() {
        return Err(TemplateError::Exists(name.to_string()));
    }
    let debootstrap = ["/usr/sbin/debootstrap", "/sbin/debootstrap"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or(TemplateError::NoDebootstrap)?;
    let cache = data.join("cache/debootstrap");
    fs::create_dir_all(&cache).map_err(io("create", &cache))?;
    let mut include: Vec<String> = BASE_PACKAGES.iter().map(|s| s.to_string()).collect();
    include.extend(packages.iter().cloned());
    build(data, name, |tmp| {
        let rootfs = tmp.join("rootfs");
        let log_path = tmp.join("debootstrap.log");
        let mut log = fs::File::create(&log_path).map_err(io("create", &log_path))?;
        let mut cmd = Command::new(&debootstrap);
        cmd.arg("--variant=minbase")
            .arg(format!("--include={}", include.join(",")))
            .arg(format!("--cache-dir={}", cache.display()))
            .arg(suite)
            .arg(&rootfs)
            .arg(&url)
            .stdin(Stdio::null());
        tracing::debug!(args = ?cmd.get_args().collect::<Vec<_>>(), "debootstrap");
        let status =
            run_debootstrap(&mut cmd, &mut log, progress).map_err(io("run", &debootstrap))?;
        if !status.success() {
            let text = fs::read_to_string(&log_path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(15)..].join("\n");
            return Err(TemplateError::Debootstrap {
                status: status.to_string(),
                tail,
            });
        }
        progress(Progress {
            stage: "fitting for a VE",
            done: 0,
            total: 0,
        });
        fit_debian_for_ve(&rootfs)?;
        let _ = fs::remove_file(&log_path);
        Ok(TemplateInfo {
            name: name.to_string(),
            dist: dist.to_string(),
            init: vec!["/sbin/init".to_string()],
            shutdown: Shutdown::Sysvinit,
            packages: packages.to_vec(),
            mirror: Some(url.clone()),
            created: now(),
        })
    })
}

/// Runs `make` in a fresh temporary directory and renames it to the template's name.
/// Whatever fails, the temporary directory goes; a concurrent build of the same
/// template that finished first wins, and this one's result is dropped.
fn build(
    data: &Path,
    name: &str,
    make: impl FnOnce(&Path) -> Result<TemplateInfo, TemplateError>,
) -> Result<TemplateInfo, TemplateError> {
    let parent = templates_dir(data);
    fs::create_dir_all(&parent).map_err(io("create", &parent))?;
    remove_abandoned_builds(&parent, name);
    let tmp = parent.join(format!(".{name}.build-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir(&tmp).map_err(io("create", &tmp))?;
    let result = make(&tmp).and_then(|info| {
        let path = tmp.join("template.json");
        let text = serde_json::to_vec_pretty(&info).map_err(|e| TemplateError::Io {
            what: "encode",
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        fs::write(&path, text).map_err(io("write", &path))?;
        Ok(info)
    });
    let target = parent.join(name);
    match result {
        Ok(info) => match fs::rename(&tmp, &target) {
            Ok(()) => Ok(info),
            Err(_) if target.join("template.json").exists() => {
                let _ = fs::remove_dir_all(&tmp);
                Ok(info)
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                Err(io("rename into", &target)(e))
            }
        },
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

/// Removes build directories of this template left by builds that were killed (their
/// process is gone); a build still running elsewhere keeps its own.
fn remove_abandoned_builds(parent: &Path, name: &str) {
    let prefix = format!(".{name}.build-");
    let Ok(rd) = fs::read_dir(parent) else {
        return;
    };
    for e in rd.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = file
            .strip_prefix(&prefix)
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A VE has no terminals to run gettys on and no hardware to look after: take those out
/// of the boot, so init neither respawns failing gettys nor spends time on them.
fn fit_debian_for_ve(rootfs: &Path) -> Result<(), TemplateError> {
    let inittab = rootfs.join("etc/inittab");
    if let Ok(text) = fs::read_to_string(&inittab) {
        fs::write(&inittab, without_gettys(&text)).map_err(io("write", &inittab))?;
    }
    let hostname = rootfs.join("etc/hostname");
    fs::write(&hostname, "localhost\n").map_err(io("write", &hostname))?;
    let hosts = rootfs.join("etc/hosts");
    fs::write(
        &hosts,
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    )
    .map_err(io("write", &hosts))?;
    for dir in ["etc/rcS.d", "etc/rc0.d", "etc/rc6.d"] {
        if let Ok(rd) = fs::read_dir(rootfs.join(dir)) {
            for e in rd.flatten() {
                if not_for_a_ve(&e.file_name().to_string_lossy()) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
    }
    Ok(())
}

/// Boot scripts that look after hardware or the root filesystem's device, which a VE
/// does not have (vzrun mounts its root and kernel filesystems): the hardware clock,
/// backlight, configfs, and fsck of root and local disks. Links are named like
/// `S03checkroot.sh`.
fn not_for_a_ve(link: &str) -> bool {
    let script = link.get(3..).unwrap_or_default();
    matches!(
        script,
        "hwclock.sh" | "brightness" | "mount-configfs" | "checkroot.sh" | "checkfs.sh"
    )
}

/// Comments out inittab lines that spawn gettys on terminals.
pub fn without_gettys(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let fields: Vec<&str> = line.splitn(4, ':').collect();
        let getty = !line.starts_with('#')
            && fields.len() == 4
            && fields[2] == "respawn"
            && fields[3].contains("getty");
        if getty {
            out.push_str("#vzrun: no terminals in a VE# ");
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Whether an ELF file asks for a program interpreter (is dynamically linked).
fn is_dynamic(path: &Path) -> Result<bool, TemplateError> {
    let data = fs::read(path).map_err(io("read", path))?;
    let bad = || TemplateError::Busybox(format!("{} is not a 64-bit ELF file", path.display()));
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 {
        return Err(bad());
    }
    let u16at = |o: usize| u16::from_le_bytes([data[o], data[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(data[32..40].try_into().map_err(|_| bad())?) as usize;
    let (phentsize, phnum) = (u16at(54), u16at(56));
    for i in 0..phnum {
        let o = phoff + i * phentsize;
        if o + 4 > data.len() {
            return Err(bad());
        }
        // PT_INTERP
        if u32::from_le_bytes([data[o], data[o + 1], data[o + 2], data[o + 3]]) == 3 {
            return Ok(true);
        }
    }
    Ok(false)
}

const BUSYBOX_INITTAB: &str = "\
::sysinit:/etc/init.d/rcS
::shutdown:/etc/init.d/rcK
";

const BUSYBOX_RCS: &str = "\
#!/bin/sh
# Starts every enabled service in /etc/rc.d, in name order.
mkdir -p /var/run /var/log
for s in /etc/rc.d/S*; do [ -x \"$s\" ] && \"$s\" start; done
echo \"rcS: system started\" >> /var/log/boot.log
";

const BUSYBOX_RCK: &str = "\
#!/bin/sh
# Stops the enabled services in reverse order.
for s in $(ls -r /etc/rc.d/S* 2>/dev/null); do [ -x \"$s\" ] && \"$s\" stop; done
echo \"rcK: system stopped\" >> /var/log/boot.log
";

const BUSYBOX_HTTPD: &str = "\
#!/bin/sh
# A small web server on port 80, serving /var/www.
case \"$1\" in
start) httpd -p 80 -h /var/www ;;
stop) killall httpd 2>/dev/null ;;
esac
";

/// The built-in template: the host's static busybox, its applets as links, and an
/// init configuration whose rcS starts the services enabled in /etc/rc.d (a web server).
fn build_busybox(rootfs: &Path) -> Result<(), TemplateError> {
    let host = Path::new(HOST_BUSYBOX);
    if !host.exists() {
        return Err(TemplateError::Busybox(format!(
            "{HOST_BUSYBOX} is missing (apt-get install busybox-static)"
        )));
    }
    if is_dynamic(host)? {
        return Err(TemplateError::Busybox(format!(
            "{HOST_BUSYBOX} is dynamically linked (apt-get install busybox-static)"
        )));
    }
    for d in [
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "etc/init.d",
        "etc/rc.d",
        "proc",
        "sys",
        "dev",
        "tmp",
        "root",
        "var/log",
        "var/run",
        "var/www",
        "run",
        "home",
    ] {
        let p = rootfs.join(d);
        fs::create_dir_all(&p).map_err(io("create", &p))?;
    }
    let tmp = rootfs.join("tmp");
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777)).map_err(io("chmod", &tmp))?;
    let bin = rootfs.join("bin/busybox");
    fs::copy(host, &bin).map_err(io("copy to", &bin))?;
    let out = crate::sys::process::output(Command::new(host).arg("--list-full"))
        .map_err(|e| TemplateError::Busybox(e.to_string()))?;
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet == "bin/busybox" || applet.contains("..") {
            continue;
        }
        let link = rootfs.join(applet);
        let _ = fs::remove_file(&link);
        symlink("/bin/busybox", &link).map_err(io("link", &link))?;
    }
    let files: &[(&str, &str, u32)] = &[
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\n\
             www-data:x:33:33:www-data:/var/www:/bin/false\n\
             nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
            0o644,
        ),
        (
            "etc/group",
            "root:x:0:\ndaemon:x:1:\nwww-data:x:33:\nnogroup:x:65534:\n",
            0o644,
        ),
        ("etc/hostname", "localhost\n", 0o644),
        ("etc/resolv.conf", "", 0o644),
        ("etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n", 0o644),
        ("etc/inittab", BUSYBOX_INITTAB, 0o644),
        ("etc/init.d/rcS", BUSYBOX_RCS, 0o755),
        ("etc/init.d/rcK", BUSYBOX_RCK, 0o755),
        ("etc/rc.d/S50httpd", BUSYBOX_HTTPD, 0o755),
        (
            "var/www/index.html",
            "<html><body>vzrun busybox system VE</body></html>\n",
            0o644,
        ),
    ];
    for (path, text, mode) in files {
        let p = rootfs.join(path);
        let mut f = fs::File::create(&p).map_err(io("write", &p))?;
        f.write_all(text.as_bytes()).map_err(io("write", &p))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).map_err(io("chmod", &p))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for ok in ["busybox", "debian-12", "deb_12.1"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".hidden", "a/b", "..", "a b", "é"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dists_packages_and_mirrors() {
        assert_eq!(suite_of("debian-12").unwrap(), "bookworm");
        assert!(suite_of("ubuntu-24")
            .unwrap_err()
            .to_string()
            .starts_with("dist: unknown distribution \"ubuntu-24\""));
        assert_eq!(
            parse_packages("lighttpd, cron,,libc6").unwrap(),
            ["lighttpd", "cron", "libc6"]
        );
        assert!(parse_packages("ok,Bad;rm -rf")
            .unwrap_err()
            .to_string()
            .contains("\"Bad;rm -rf\""));
        assert_eq!(mirror_url("/srv/m").unwrap(), "file:///srv/m");
        assert_eq!(
            mirror_url("http://mirror.example/debian").unwrap(),
            "http://mirror.example/debian"
        );
        assert!(mirror_url("ftp://x").is_err());
        assert!(mirror_url("file://relative").is_err());
    }

    #[test]
    fn debootstrap_output_becomes_stages_and_package_counts() {
        let out = "I: Retrieving InRelease \nI: Checking Release signature\n\
            I: Retrieving Packages \nI: Validating Packages \n\
            I: Resolving dependencies of required packages...\n\
            I: Checking component main on http://deb.example/debian...\n\
            I: Retrieving libc6 2.36-9\nI: Validating libc6 2.36-9\n\
            I: Validating base-files 12.4\nI: Retrieving dpkg 1.21.22\n\
            I: Validating dpkg 1.21.22\nI: Chosen extractor for .deb packages: dpkg-deb\n\
            I: Extracting libc6...\nI: Extracting dpkg...\n\
            I: Installing core packages...\n\
            I: Unpacking required packages...\nI: Unpacking libc6...\n\
            I: Configuring required packages...\nI: Configuring libc6...\n\
            I: Unpacking the base system...\nI: Unpacking dpkg...\n\
            I: Configuring the base system...\nI: Configuring dpkg...\n\
            I: Base system installed successfully.\n";
        let mut log = DebootstrapLog::default();
        let seen: Vec<(String, usize, usize)> = out
            .lines()
            .filter_map(|l| log.line(l))
            .map(|p| (p.stage.to_string(), p.done, p.total))
            .collect();
        let want: Vec<(String, usize, usize)> = [
            ("resolving", 0, 0),
            ("downloading", 1, 0),
            ("downloading", 2, 0),
            ("downloading", 3, 0),
            ("extracting", 1, 3),
            ("extracting", 2, 3),
            ("installing core packages", 0, 3),
            ("unpacking", 0, 3),
            ("unpacking", 1, 3),
            ("configuring", 0, 3),
            ("configuring", 1, 3),
            ("unpacking", 1, 3),
            ("unpacking", 2, 3),
            ("configuring", 1, 3),
            ("configuring", 2, 3),
            ("installed", 0, 3),
        ]
        .iter()
        .map(|(s, d, t)| (s.to_string(), *d, *t))
        .collect();
        assert_eq!(seen, want);
    }

    #[test]
    fn hardware_scripts_are_left_out() {
        for gone in [
            "S03checkroot.sh",
            "K01hwclock.sh",
            "S08brightness",
            "S04checkfs.sh",
        ] {
            assert!(not_for_a_ve(gone), "{gone}");
        }
        for kept in [
            "S05checkroot-bootclean.sh",
            "S01lighttpd",
            "K06halt",
            "README",
        ] {
            assert!(!not_for_a_ve(kept), "{kept}");
        }
    }

    #[test]
    fn gettys_are_commented_out() {
        let text = "id:2:initdefault:\nsi::sysinit:/etc/init.d/rcS\n\
                    1:2345:respawn:/sbin/getty --noclear 38400 tty1\n\
                    #2:23:respawn:/sbin/getty 38400 tty2\n";
        let out = without_gettys(text);
        assert!(out.contains("si::sysinit:/etc/init.d/rcS\n"));
        assert!(out.contains("#vzrun: no terminals in a VE# 1:2345:respawn"));
        assert!(out.contains("\n#2:23:respawn"));
    }

    #[test]
    fn busybox_template_is_built_once_and_removed() {
        if !Path::new(HOST_BUSYBOX).exists() || is_dynamic(Path::new(HOST_BUSYBOX)).unwrap() {
            eprintln!("SKIP: no static {HOST_BUSYBOX}");
            return;
        }
        let data = tempfile::tempdir().unwrap();
        let t = open(data.path(), BUSYBOX).unwrap();
        assert_eq!(t.info.shutdown, Shutdown::Busybox);
        assert!(t.rootfs.join("sbin/init").is_symlink());
        assert!(t.rootfs.join("etc/rc.d/S50httpd").exists());
        assert_eq!(list(data.path()).len(), 1);
        assert!(matches!(
            open(data.path(), "nope"),
            Err(TemplateError::NotFound(_))
        ));
        let users = vec![("ve1".to_string(), BUSYBOX.to_string())];
        assert!(matches!(
            remove(data.path(), BUSYBOX, &users),
            Err(TemplateError::InUse { .. })
        ));
        remove(data.path(), BUSYBOX, &[]).unwrap();
        // A killed build's directory goes with the next build of that template.
        let stale = data.path().join("templates/.busybox.build-999999999");
        fs::create_dir_all(stale.join("rootfs")).unwrap();
        create_busybox(data.path(), BUSYBOX).unwrap();
        assert!(!stale.exists());
        remove(data.path(), BUSYBOX, &[]).unwrap();
        assert!(list(data.path()).is_empty());
        assert_eq!(
            fs::read_dir(data.path().join("templates")).unwrap().count(),
            0,
            "no build or trash directories left"
        );
    }
}
