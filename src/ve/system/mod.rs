//! A VE that is a whole Linux system: its annotation and capabilities (`config`), the
//! bundle that boots a template's init and the VE's record beside it (`bundle`), the
//! namespaced sysctls it may change (`sysctl`), how its init is asked to shut down
//! (`init`), and its verbs on the runtime (`lifecycle`).
//!
//! VE bundles live in the data directory, `DATA/ve/ID/` (config.json, `ve.conf`, the
//! console log and the disk image of its private area); their state while running
//! stays under the runtime root, as for any container.

mod bundle;
mod conf;
pub mod config;
mod init;
pub mod lifecycle;
mod sysctl;

pub use bundle::*;
pub use conf::*;
pub use config::*;
pub use init::*;
pub use sysctl::*;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ve::template::TemplateInfo;
    use crate::ve::template::{Shutdown, Template};
    use oci_spec::runtime::Capability;
    use std::path::PathBuf;

    fn template() -> Template {
        Template {
            info: TemplateInfo {
                name: "t".into(),
                dist: "busybox".into(),
                init: vec!["/sbin/init".into()],
                shutdown: Shutdown::Busybox,
                packages: vec![],
                mirror: None,
                created: "now".into(),
            },
            rootfs: PathBuf::from("/var/lib/vzrun/templates/t/rootfs"),
        }
    }

    #[test]
    fn system_spec_boots_init_with_system_caps() {
        let t = template();
        let caps = vec![
            ("CAP_SYS_ADMIN".to_string(), true),
            ("CAP_MKNOD".to_string(), false),
        ];
        let ann = crate::ve::test_annotations(&[("diskspace", "10G")]);
        let s = spec(&SystemSpec {
            template: &t,
            hostname: "ve1",
            annotations: ann,
            capabilities: &caps,
        })
        .unwrap();
        let p = s.process().as_ref().unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &["/sbin/init".to_string()]);
        assert_eq!(p.terminal(), Some(false));
        let eff = p
            .capabilities()
            .as_ref()
            .unwrap()
            .effective()
            .clone()
            .unwrap();
        assert!(eff.contains(&Capability::NetAdmin));
        assert!(eff.contains(&Capability::SysAdmin), "asked for");
        assert!(!eff.contains(&Capability::Mknod), "switched off");
        assert_eq!(s.hostname().as_deref(), Some("ve1"));
        let ann = s.annotations().clone().unwrap();
        assert_eq!(ann["io.vzrun.sysctl"], "namespaced");
        assert_eq!(ann["io.vzrun.diskspace"], "10G");
        let linux = s.linux().as_ref().unwrap();
        assert!(linux.seccomp().is_some());
        assert!(linux
            .readonly_paths()
            .as_ref()
            .unwrap()
            .contains(&"/proc/sys".to_string()));
        assert_eq!(linux.namespaces().as_ref().unwrap().len(), 5);
    }

    #[test]
    fn capability_flags() {
        assert_eq!(
            parse_capability("sys_admin:on").unwrap(),
            ("CAP_SYS_ADMIN".to_string(), true)
        );
        assert_eq!(
            parse_capability("CAP_NET_ADMIN:off").unwrap(),
            ("CAP_NET_ADMIN".to_string(), false)
        );
        assert!(parse_capability("bogus:on")
            .unwrap_err()
            .contains("not a capability"));
        assert!(parse_capability("sys_admin").is_err());
    }

    #[test]
    fn sysctl_annotation_has_one_value() {
        let ok = crate::ve::test_annotations(&[("sysctl", "namespaced")]);
        assert!(SystemConfig::parse(&ok).unwrap().unwrap().own_sysctls);
        let bad = crate::ve::test_annotations(&[("sysctl", "all")]);
        assert!(SystemConfig::parse(&bad)
            .unwrap_err()
            .to_string()
            .starts_with("annotation io.vzrun.sysctl:"));
    }

    #[test]
    fn initctl_request_layout() {
        let r = initctl_request(b'0');
        assert_eq!(i32::from_ne_bytes(r[0..4].try_into().unwrap()), 0x03091969);
        assert_eq!(i32::from_ne_bytes(r[4..8].try_into().unwrap()), 1);
        assert_eq!(
            i32::from_ne_bytes(r[8..12].try_into().unwrap()),
            b'0' as i32
        );
    }
}
