//! VE resource settings (OpenVZ's vzctl names) mapped onto the OCI `linux.resources`
//! that libcgroups applies on cgroup v1 and v2 alike, plus beancounter-style accounting
//! read back from the kernel's own counters. `config` parses, `spec` maps onto the spec,
//! `live` changes running processes, `beancounters` reads the counts.

mod beancounters;
mod config;
mod live;
mod spec;

pub use beancounters::*;
pub use config::*;
pub use live::*;
pub use spec::*;

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxMemory, LinuxResources, PosixRlimitType, Spec};

    use crate::ve::test_annotations as ann;

    #[test]
    fn vzctl_names_map_to_oci_resources() {
        let c = ResourceConfig::parse(&ann(&[
            ("cpuunits", "2000"),
            ("cpulimit", "50"),
            ("ram", "256M"),
            ("swap", "128M"),
            ("memguarantee", "50"),
            ("numproc", "100"),
        ]))
        .unwrap()
        .unwrap();
        let r = c.to_oci(None);
        let cpu = r.cpu().as_ref().unwrap();
        assert_eq!(cpu.shares(), Some(2048));
        assert_eq!((cpu.quota(), cpu.period()), (Some(50_000), Some(100_000)));
        let m = r.memory().unwrap();
        assert_eq!(m.limit(), Some(256 << 20));
        assert_eq!(m.swap(), Some(384 << 20), "OCI swap is memory+swap");
        assert_eq!(m.reservation(), Some(128 << 20));
        assert_eq!(r.pids().unwrap().limit(), 100);
    }

    #[test]
    fn counts_from_before_a_restore_carry_on() {
        let row = |resource: &str, maxheld, failcnt| Counter {
            resource: resource.into(),
            held: 1,
            maxheld,
            barrier: Some(10),
            limit: Some(10),
            failcnt,
        };
        let mut rows = vec![row("numproc", 3, 0), row("physpages", 50, 2)];
        beancounters::carry_over(
            &mut rows,
            &[
                row("numproc", 10, 4).carried(),
                row("physpages", 20, 1).carried(),
                row("gone", 1, 1).carried(),
            ],
        );
        assert_eq!((rows[0].maxheld, rows[0].failcnt), (10, 4));
        assert_eq!((rows[1].maxheld, rows[1].failcnt), (50, 3));
        assert_eq!(rows[0].held, 1);
    }

    #[test]
    fn cpus_set_a_cpuset_and_a_quota() {
        let c = ResourceConfig::parse(&ann(&[("cpus", "1")]))
            .unwrap()
            .unwrap();
        let r = c.to_oci(None);
        assert_eq!(r.cpu().as_ref().unwrap().cpus().as_deref(), Some("0"));
        assert_eq!(r.cpu().as_ref().unwrap().quota(), Some(100_000));
    }

    #[test]
    fn unlimited_values() {
        let c = ResourceConfig::parse(&ann(&[("ram", "unlimited"), ("numproc", "unlimited")]))
            .unwrap()
            .unwrap();
        let r = c.to_oci(None);
        assert_eq!(r.memory().unwrap().limit(), Some(-1));
        assert_eq!(r.pids().unwrap().limit(), -1);
    }

    #[test]
    fn bad_values_name_field_and_range() {
        for (k, v, words) in [
            (
                "cpuunits",
                "5",
                "io.vzrun.cpuunits: 5 is out of range (8..500000)",
            ),
            ("ram", "banana", "io.vzrun.ram: \"banana\" is not a size"),
            (
                "cpulimit",
                "100000",
                "io.vzrun.cpulimit: 100000 is out of range",
            ),
            ("memguarantee", "150", "io.vzrun.memguarantee"),
            ("ioprio", "9", "io.vzrun.ioprio: 9 is out of range (0..7)"),
            ("iopslimit", "0", "io.vzrun.iopslimit: 0 is out of range"),
        ] {
            let err =
                ResourceConfig::parse(&ann(&[(k, v), ("ram", if k == "ram" { v } else { "64M" })]))
                    .unwrap_err()
                    .to_string();
            assert!(err.contains(words), "{k}={v}: {err}");
        }
        let err = ResourceConfig::parse(&ann(&[("swap", "1G")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs io.vzrun.ram"), "{err}");
    }

    #[test]
    fn disagreement_with_linux_resources_names_both() {
        let mut spec = Spec::default();
        let mut linux = spec.linux().clone().unwrap();
        let mut res = LinuxResources::default();
        let mut m = LinuxMemory::default();
        m.set_limit(Some(128 << 20));
        res.set_memory(Some(m));
        linux.set_resources(Some(res));
        spec.set_linux(Some(linux));
        let c = ResourceConfig::parse(&ann(&[("ram", "64M")]))
            .unwrap()
            .unwrap();
        let err = c.apply_to_spec(&mut spec, None).unwrap_err().to_string();
        assert!(
            err.contains("io.vzrun.ram") && err.contains("linux.resources.memory.limit"),
            "{err}"
        );
        let same = ResourceConfig::parse(&ann(&[("ram", "128M")]))
            .unwrap()
            .unwrap();
        assert!(same.apply_to_spec(&mut spec, None).is_ok());
    }

    #[test]
    fn numfile_sets_the_rlimit() {
        let mut spec = Spec::default();
        let c = ResourceConfig::parse(&ann(&[("numfile", "512")]))
            .unwrap()
            .unwrap();
        c.apply_to_spec(&mut spec, None).unwrap();
        let rl = spec.process().as_ref().unwrap().rlimits().clone().unwrap();
        assert!(rl
            .iter()
            .any(|r| r.typ() == PosixRlimitType::RlimitNofile && r.hard() == 512));
    }
}
