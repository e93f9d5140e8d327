//! `ve.conf`: a system VE's settings in one text file an administrator can read, edit
//! and diff, as vzctl keeps `/etc/vz/conf/ID.conf`. One `KEY="value"` a line: the
//! VE's own facts in capitals (TEMPLATE, SHUTDOWN, CREATED, HOSTNAME), its settings under
//! their `io.vzrun.*` annotation names without the prefix (`ram="512M"`,
//! `net.ip="198.51.100.10"`), so one vocabulary serves the annotations, `ve set` and
//! this file. The bundle's config.json is generated from it ([`VeConf::write_bundle`]) at
//! create, at `ve set --save` and at every start, so a hand edit counts from the next
//! start.
//!
//! VEs made before this file held settings have a JSON `ve.conf` (template, shutdown,
//! created) and their settings in config.json's annotations; [`VeConf::load`] reads that
//! form too, and the next save writes the text form.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::Path;

use serde::Deserialize;
use serde_json::{json, Value};

use super::bundle::{DISK_IMAGE, VE_CONF};
use crate::ve::keys;
use crate::ve::template::Shutdown;
use crate::ve::{VeError, PREFIX};

/// Settings a system VE always has, derived rather than set: written into config.json,
/// never into ve.conf.
const DERIVED: &[&str] = &["sysctl", "disk.image"];

/// A system VE's record and settings.
#[derive(Debug, Clone, PartialEq)]
pub struct VeConf {
    pub template: String,
    pub shutdown: Shutdown,
    pub created: String,
    pub hostname: Option<String>,
    /// `io.vzrun.*` settings by key without the prefix.
    pub settings: BTreeMap<String, String>,
    /// Read from the JSON form of VEs made before ve.conf held settings.
    pub legacy: bool,
}

/// The JSON `ve.conf` of earlier VEs.
#[derive(Deserialize)]
struct Legacy {
    template: String,
    shutdown: Shutdown,
    created: String,
}

fn shutdown_word(s: Shutdown) -> &'static str {
    match s {
        Shutdown::Busybox => "busybox",
        Shutdown::Sysvinit => "sysvinit",
    }
}

/// Whether `key` (without the prefix) may stand in ve.conf.
pub fn settable(key: &str) -> bool {
    keys::find(key).is_some() && !DERIVED.contains(&key)
}

impl VeConf {
    pub fn load(dir: &Path) -> Result<Self, VeError> {
        let path = dir.join(VE_CONF);
        let text = fs::read_to_string(&path)
            .map_err(|e| VeError::io(format!("read {}", path.display()), e))?;
        if text.trim_start().starts_with('{') {
            return Self::load_legacy(dir, &text);
        }
        Self::parse(&text).map_err(|e| VeError::Refused(format!("{}: {e}", path.display())))
    }

    /// The JSON record, with the settings from config.json's annotations.
    fn load_legacy(dir: &Path, text: &str) -> Result<Self, VeError> {
        let conf = dir.join(VE_CONF);
        let old: Legacy = serde_json::from_str(text)
            .map_err(|e| VeError::Refused(format!("{}: {e}", conf.display())))?;
        let path = dir.join("config.json");
        let data =
            fs::read(&path).map_err(|e| VeError::io(format!("read {}", path.display()), e))?;
        let spec: Value = serde_json::from_slice(&data)
            .map_err(|e| VeError::Refused(format!("{}: {e}", path.display())))?;
        let settings = spec["annotations"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.strip_prefix(PREFIX)?, v.as_str()?)))
                    .filter(|(k, _)| !DERIVED.contains(k))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        Ok(VeConf {
            template: old.template,
            shutdown: old.shutdown,
            created: old.created,
            hostname: spec["hostname"].as_str().map(str::to_string),
            settings,
            legacy: true,
        })
    }

    /// The text form; an error names the line.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut template = None;
        let mut shutdown = None;
        let mut created = None;
        let mut hostname = None;
        let mut settings = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = |problem: String| format!("line {}: {problem}", n + 1);
            let (key, raw) = line
                .split_once('=')
                .ok_or_else(|| at(format!("{line:?} is not KEY=\"value\"")))?;
            let key = key.trim();
            let value = unquote(raw.trim()).map_err(|e| at(format!("{key}: {e}")))?;
            match key {
                "TEMPLATE" => template = Some(value),
                "SHUTDOWN" => {
                    shutdown = Some(match value.as_str() {
                        "busybox" => Shutdown::Busybox,
                        "sysvinit" => Shutdown::Sysvinit,
                        other => {
                            return Err(at(format!(
                                "SHUTDOWN: {other:?} is not busybox or sysvinit"
                            )))
                        }
                    })
                }
                "CREATED" => created = Some(value),
                "HOSTNAME" => hostname = Some(value),
                k if settable(k) => {
                    if settings.insert(k.to_string(), value).is_some() {
                        return Err(at(format!("{k} is set twice")));
                    }
                }
                k if DERIVED.contains(&k) => {
                    return Err(at(format!(
                        "{k} is not set here: vzrun derives it for a system VE"
                    )))
                }
                k => {
                    let hint = keys::nearest(k)
                        .map(|s| format!("; did you mean {s}?"))
                        .unwrap_or_default();
                    return Err(at(format!(
                        "{k}: unknown setting (vzrun ve keys lists them){hint}"
                    )));
                }
            }
        }
        Ok(VeConf {
            template: template.ok_or("TEMPLATE is missing")?,
            shutdown: shutdown.ok_or("SHUTDOWN is missing")?,
            created: created.unwrap_or_default(),
            hostname,
            settings,
            legacy: false,
        })
    }

    /// The text form: the VE's facts, then its settings in the order `vzrun ve keys`
    /// lists them, so two files diff line by line.
    pub fn render(&self, id: &str) -> String {
        let mut out = format!(
            "# VE {id}: its settings. `vzrun ve set {id} ... --save` rewrites this file and\n\
             # `vzrun ve start {id}` reads it; a setting is its io.vzrun.* annotation key\n\
             # without the prefix (`vzrun ve keys` lists them, with ranges and defaults).\n"
        );
        let mut line = |k: &str, v: &str| out.push_str(&format!("{k}={}\n", quote(v)));
        line("TEMPLATE", &self.template);
        line("SHUTDOWN", shutdown_word(self.shutdown));
        line("CREATED", &self.created);
        if let Some(h) = &self.hostname {
            line("HOSTNAME", h);
        }
        for k in keys::KEYS {
            if let Some(v) = self.settings.get(k.name) {
                line(k.name, v);
            }
        }
        out
    }

    /// Writes ve.conf whole (a reader sees the old file or the new one).
    pub fn save(&self, dir: &Path) -> Result<(), VeError> {
        let id = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        replace(&dir.join(VE_CONF), self.render(&id).as_bytes())
    }

    /// The settings as the annotations of the VE's config: with the prefix, plus what a
    /// system VE always has (its own sysctls; its private area's image in its directory).
    pub fn annotations(&self, dir: &Path) -> HashMap<String, String> {
        let mut a: HashMap<String, String> = self
            .settings
            .iter()
            .map(|(k, v)| (format!("{PREFIX}{k}"), v.clone()))
            .collect();
        a.insert(format!("{PREFIX}sysctl"), "namespaced".into());
        if self.settings.contains_key("diskspace") {
            a.insert(
                format!("{PREFIX}disk.image"),
                dir.join(DISK_IMAGE).to_string_lossy().into_owned(),
            );
        }
        a
    }

    /// Makes the bundle's config.json carry these settings: its `io.vzrun.*` annotations
    /// replaced, its hostname set; the rest of the config stays as `ve create` wrote it.
    pub fn write_bundle(&self, dir: &Path) -> Result<(), VeError> {
        let path = dir.join("config.json");
        let data =
            fs::read(&path).map_err(|e| VeError::io(format!("read {}", path.display()), e))?;
        let mut spec: Value = serde_json::from_slice(&data)
            .map_err(|e| VeError::Refused(format!("{}: {e}", path.display())))?;
        let Some(obj) = spec.as_object_mut() else {
            return Err(VeError::Refused(format!(
                "{}: not a JSON object",
                path.display()
            )));
        };
        let ann = obj.entry("annotations").or_insert_with(|| json!({}));
        if let Some(map) = ann.as_object_mut() {
            map.retain(|k, _| !k.starts_with(PREFIX));
            for (k, v) in self.annotations(dir) {
                map.insert(k, json!(v));
            }
        }
        if let Some(h) = &self.hostname {
            obj.insert("hostname".into(), json!(h));
        }
        let text = serde_json::to_vec_pretty(&spec)
            .map_err(|e| VeError::io(format!("encode {}", path.display()), e))?;
        replace(&path, &text)
    }
}

/// Writes `path` through a temporary file renamed over it.
fn replace(path: &Path, data: &[u8]) -> Result<(), VeError> {
    let tmp = path.with_extension("vzrun-tmp");
    fs::write(&tmp, data).map_err(|e| VeError::io(format!("write {}", tmp.display()), e))?;
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        VeError::io(format!("replace {}", path.display()), e)
    })
}

/// `"value"` with `"` and `\` escaped.
fn quote(v: &str) -> String {
    let mut s = String::from("\"");
    for c in v.chars() {
        if c == '"' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('"');
    s
}

/// The value of a `KEY="value"` line; a bare word without quotes is taken as it is.
fn unquote(raw: &str) -> Result<String, String> {
    let Some(inner) = raw.strip_prefix('"') else {
        if raw.contains(['"', ' ', '\t']) {
            return Err(format!("{raw:?}: put the value in double quotes"));
        }
        return Ok(raw.to_string());
    };
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('"' | '\\')) => out.push(e),
                _ => return Err(format!("{raw:?}: only \\\" and \\\\ are escapes")),
            },
            '"' => {
                let rest: String = chars.collect();
                if !rest.trim().is_empty() && !rest.trim_start().starts_with('#') {
                    return Err(format!("{raw:?}: text after the closing quote"));
                }
                return Ok(out);
            }
            c => out.push(c),
        }
    }
    Err(format!("{raw:?}: no closing quote"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf() -> VeConf {
        VeConf {
            template: "busybox".into(),
            shutdown: Shutdown::Busybox,
            created: "2026-01-01T00:00:00Z".into(),
            hostname: Some("web".into()),
            settings: [
                ("ram", "512M"),
                ("net.ip", "198.51.100.10"),
                ("net.routes", "203.0.113.0/24 src 198.51.100.10; x \"q\" \\"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            legacy: false,
        }
    }

    #[test]
    fn the_text_form_reads_back_as_written() {
        let c = conf();
        let text = c.render("web");
        assert!(text.contains("\nram=\"512M\"\n"), "{text}");
        assert!(text.contains("\nTEMPLATE=\"busybox\"\n"), "{text}");
        // Settings in the key table's order: the network before the resources.
        assert!(text.find("net.ip=").unwrap() < text.find("ram=").unwrap());
        assert_eq!(VeConf::parse(&text).unwrap(), c);
    }

    #[test]
    fn errors_name_the_line_and_the_key() {
        let base = "TEMPLATE=\"busybox\"\nSHUTDOWN=\"busybox\"\n";
        for (line, words) in [
            ("rma=\"1G\"", "line 3: rma: unknown setting"),
            ("rma=\"1G\"", "did you mean ram?"),
            ("ram=\"1G", "no closing quote"),
            ("ram", "is not KEY=\"value\""),
            ("sysctl=\"namespaced\"", "vzrun derives it"),
            ("ram=\"1G\" x", "text after the closing quote"),
        ] {
            let e = VeConf::parse(&format!("{base}{line}\n")).unwrap_err();
            assert!(e.contains(words), "{line}: {e}");
        }
        let e = VeConf::parse(&format!("{base}ram=\"1G\"\nram=\"2G\"\n")).unwrap_err();
        assert!(e.contains("line 4: ram is set twice"), "{e}");
        assert!(VeConf::parse("SHUTDOWN=\"busybox\"\n")
            .unwrap_err()
            .contains("TEMPLATE"));
        let ok = VeConf::parse(&format!("{base}# a comment\n\nram=1G\n")).unwrap();
        assert_eq!(ok.settings["ram"], "1G");
    }

    #[test]
    fn a_legacy_ve_reads_its_settings_from_the_bundle() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join(VE_CONF),
            r#"{"template":"busybox","shutdown":"busybox","created":"then"}"#,
        )
        .unwrap();
        fs::write(
            dir.path().join("config.json"),
            r#"{"hostname":"old","annotations":{"io.vzrun.ram":"64M","io.vzrun.sysctl":"namespaced","io.vzrun.diskspace":"1G","io.vzrun.disk.image":"/x","other":"y"}}"#,
        )
        .unwrap();
        let c = VeConf::load(dir.path()).unwrap();
        assert!(c.legacy);
        assert_eq!(c.hostname.as_deref(), Some("old"));
        assert_eq!(
            c.settings.keys().collect::<Vec<_>>(),
            ["diskspace", "ram"],
            "derived keys stay out"
        );
        let mut c = c;
        c.settings.insert("ram".into(), "128M".into());
        c.save(dir.path()).unwrap();
        c.write_bundle(dir.path()).unwrap();
        let again = VeConf::load(dir.path()).unwrap();
        assert!(!again.legacy);
        assert_eq!(again.settings["ram"], "128M");
        let spec: Value =
            serde_json::from_slice(&fs::read(dir.path().join("config.json")).unwrap()).unwrap();
        assert_eq!(spec["annotations"]["io.vzrun.ram"], "128M");
        assert_eq!(
            spec["annotations"]["other"], "y",
            "foreign annotations stay"
        );
        assert_eq!(
            spec["annotations"]["io.vzrun.disk.image"],
            dir.path().join(DISK_IMAGE).to_string_lossy().as_ref()
        );
    }
}
