//! Turns a spec's `linux.seccomp` into BPF with seccompiler and installs it.
//!
//! The OCI profile gives each syscall rule its own action; a seccompiler filter has one
//! action on match and one on mismatch. The kernel runs every installed filter and keeps
//! the most severe answer (KILL > TRAP > ERRNO > TRACE > LOG > ALLOW), so the profile is
//! split into stacked filters that together answer exactly like a single first-match
//! table:
//! - one "default" filter: any rule whose action is not the default action → ALLOW,
//!   everything else → the default action;
//! - one filter per other non-ALLOW action A: its rules → A, everything else → ALLOW.
//!
//! A syscall that matches a rule of action A gets ALLOW from every filter but A's, which
//! answers A; a syscall that matches no rule gets the default action. Names this
//! architecture lacks are skipped, as libseccomp does.

use std::collections::{BTreeMap, HashMap};

use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

mod table {
    include!(concat!(env!("OUT_DIR"), "/syscalls.rs"));
}

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("linux.seccomp: action {0} is not supported by vzrun")]
    UnsupportedAction(String),
    #[error("linux.seccomp: listenerPath (seccomp user notification) is not supported by vzrun")]
    Listener,
    #[error("linux.seccomp: {syscall}: argument index {index} is out of range (0..5)")]
    ArgIndex { syscall: String, index: usize },
    #[error("linux.seccomp: this architecture is not supported by seccompiler")]
    Arch,
    #[error("linux.seccomp: {0}")]
    Compile(String),
    #[error("install seccomp filter: {0}")]
    Install(std::io::Error),
}

fn syscall_nr(name: &str) -> Option<i64> {
    table::SYSCALLS
        .binary_search_by(|(n, _)| (*n).cmp(name))
        .ok()
        .map(|i| table::SYSCALLS[i].1)
}

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<SeccompAction, SeccompError> {
    Ok(match a {
        LinuxSeccompAction::ScmpActAllow => SeccompAction::Allow,
        LinuxSeccompAction::ScmpActErrno => {
            SeccompAction::Errno(errno.unwrap_or(libc::EPERM as u32))
        }
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            SeccompAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => SeccompAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => SeccompAction::Trap,
        LinuxSeccompAction::ScmpActLog => SeccompAction::Log,
        LinuxSeccompAction::ScmpActTrace => {
            SeccompAction::Trace(errno.unwrap_or(libc::EPERM as u32))
        }
        LinuxSeccompAction::ScmpActNotify => {
            return Err(SeccompError::UnsupportedAction("SCMP_ACT_NOTIFY".into()))
        }
    })
}

/// A key that orders and compares actions including their data (errno values).
fn action_key(a: &SeccompAction) -> u32 {
    u32::from(a.clone())
}

type Rules = BTreeMap<i64, Vec<SeccompRule>>;

/// Adds one rule for `nr`; an empty rule list means "matches unconditionally", which
/// absorbs any conditional rule for the same syscall.
fn add_rule(rules: &mut Rules, nr: i64, rule: Option<SeccompRule>) {
    match rule {
        None => {
            rules.insert(nr, Vec::new());
        }
        Some(r) => match rules.get_mut(&nr) {
            // An existing empty list already matches everything.
            Some(existing) if existing.is_empty() => {}
            Some(existing) => existing.push(r),
            None => {
                rules.insert(nr, vec![r]);
            }
        },
    }
}

fn target_arch() -> Result<TargetArch, SeccompError> {
    TargetArch::try_from(std::env::consts::ARCH).map_err(|_| SeccompError::Arch)
}

/// Compiles the profile into the list of programs to install, in order.
pub fn compile(profile: &LinuxSeccomp) -> Result<Vec<BpfProgram>, SeccompError> {
    if profile.listener_path().is_some() {
        return Err(SeccompError::Listener);
    }
    let arch = target_arch()?;
    let default = action(profile.default_action(), profile.default_errno_ret())?;
    let mut by_action: HashMap<u32, (SeccompAction, Rules)> = HashMap::new();
    let mut not_default: Rules = BTreeMap::new();
    for sc in profile.syscalls().iter().flatten() {
        let act = action(sc.action(), sc.errno_ret())?;
        if act == default {
            continue;
        }
        for name in sc.names() {
            let Some(nr) = syscall_nr(name) else { continue };
            let mut conds = Vec::new();
            for arg in sc.args().iter().flatten() {
                if arg.index() > 5 {
                    return Err(SeccompError::ArgIndex {
                        syscall: name.clone(),
                        index: arg.index(),
                    });
                }
                let (op, value) = match arg.op() {
                    LinuxSeccompOperator::ScmpCmpNe => (SeccompCmpOp::Ne, arg.value()),
                    LinuxSeccompOperator::ScmpCmpLt => (SeccompCmpOp::Lt, arg.value()),
                    LinuxSeccompOperator::ScmpCmpLe => (SeccompCmpOp::Le, arg.value()),
                    LinuxSeccompOperator::ScmpCmpEq => (SeccompCmpOp::Eq, arg.value()),
                    LinuxSeccompOperator::ScmpCmpGe => (SeccompCmpOp::Ge, arg.value()),
                    LinuxSeccompOperator::ScmpCmpGt => (SeccompCmpOp::Gt, arg.value()),
                    // libseccomp: (arg & value) == valueTwo
                    LinuxSeccompOperator::ScmpCmpMaskedEq => (
                        SeccompCmpOp::MaskedEq(arg.value()),
                        arg.value_two().unwrap_or(0),
                    ),
                };
                let cond =
                    SeccompCondition::new(arg.index() as u8, SeccompCmpArgLen::Qword, op, value)
                        .map_err(|e| SeccompError::Compile(format!("{name}: {e}")))?;
                conds.push(cond);
            }
            let rule = if conds.is_empty() {
                None
            } else {
                Some(
                    SeccompRule::new(conds)
                        .map_err(|e| SeccompError::Compile(format!("{name}: {e}")))?,
                )
            };
            add_rule(&mut not_default, nr, rule.clone());
            if act != SeccompAction::Allow {
                let slot = by_action
                    .entry(action_key(&act))
                    .or_insert_with(|| (act.clone(), BTreeMap::new()));
                add_rule(&mut slot.1, nr, rule);
            }
        }
    }
    let mut filters = Vec::new();
    if default != SeccompAction::Allow {
        filters.push(SeccompFilter::new(
            not_default,
            default,
            SeccompAction::Allow,
            arch,
        ));
    }
    let mut others: Vec<_> = by_action.into_values().collect();
    others.sort_by_key(|(a, _)| action_key(a));
    for (act, rules) in others {
        filters.push(SeccompFilter::new(rules, SeccompAction::Allow, act, arch));
    }
    filters
        .into_iter()
        .map(|f| {
            let f = f.map_err(|e| SeccompError::Compile(e.to_string()))?;
            BpfProgram::try_from(f).map_err(|e| SeccompError::Compile(e.to_string()))
        })
        .collect()
}

/// Installs the programs into the calling thread. Without CAP_SYS_ADMIN the kernel only
/// accepts a filter under no_new_privs; libcontainer drops capabilities before the
/// executor runs, so when the spec did not ask for no_new_privs and the process cannot
/// install without it, no_new_privs is set rather than running unfiltered.
pub fn install(programs: &[BpfProgram]) -> Result<(), SeccompError> {
    for prog in programs {
        let fprog = libc::sock_fprog {
            len: prog.len() as u16,
            filter: prog.as_ptr() as *mut libc::sock_filter,
        };
        let set = || {
            // SAFETY: fprog points at a live, correctly sized BPF program.
            unsafe {
                libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER,
                    0,
                    &fprog as *const libc::sock_fprog,
                )
            }
        };
        if set() != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EACCES) {
                return Err(SeccompError::Install(err));
            }
            nix::sys::prctl::set_no_new_privs().map_err(|e| SeccompError::Install(e.into()))?;
            if set() != 0 {
                return Err(SeccompError::Install(std::io::Error::last_os_error()));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(json: &str) -> LinuxSeccomp {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn table_resolves_common_names() {
        assert!(syscall_nr("read").is_some());
        assert!(syscall_nr("mkdirat").is_some());
        assert!(syscall_nr("no_such_syscall").is_none());
    }

    #[test]
    fn allow_list_profile_is_one_filter() {
        let p = profile(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read","write","bogus_call"],"action":"SCMP_ACT_ALLOW"}]}"#,
        );
        assert_eq!(compile(&p).unwrap().len(), 1);
    }

    #[test]
    fn deny_list_profile_skips_the_default_filter() {
        let p = profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":13},{"names":["chmod"],"action":"SCMP_ACT_KILL"}]}"#,
        );
        assert_eq!(compile(&p).unwrap().len(), 2);
    }

    #[test]
    fn conditions_and_masked_eq_compile() {
        let p = profile(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":38,"syscalls":[
              {"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":0,"op":"SCMP_CMP_EQ"}]},
              {"names":["clone"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":2114060288,"valueTwo":0,"op":"SCMP_CMP_MASKED_EQ"}]},
              {"names":["socket"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":16,"op":"SCMP_CMP_EQ"},{"index":2,"value":9,"op":"SCMP_CMP_EQ"}]}
            ]}"#,
        );
        assert_eq!(compile(&p).unwrap().len(), 2);
    }

    #[test]
    fn refuses_what_it_cannot_enforce() {
        let notify = profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_NOTIFY"}]}"#,
        );
        assert!(compile(&notify)
            .unwrap_err()
            .to_string()
            .contains("SCMP_ACT_NOTIFY"));
        let listener = profile(r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/x.sock"}"#);
        assert!(matches!(compile(&listener), Err(SeccompError::Listener)));
        let idx = profile(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","args":[{"index":7,"value":0,"op":"SCMP_CMP_EQ"}]}]}"#,
        );
        assert!(compile(&idx)
            .unwrap_err()
            .to_string()
            .contains("argument index 7"));
    }

    #[test]
    fn unconditional_rule_absorbs_conditional_ones() {
        let mut rules = Rules::new();
        let cond = SeccompRule::new(vec![SeccompCondition::new(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::Eq,
            1,
        )
        .unwrap()])
        .unwrap();
        add_rule(&mut rules, 1, Some(cond.clone()));
        add_rule(&mut rules, 1, None);
        add_rule(&mut rules, 1, Some(cond));
        assert!(rules[&1].is_empty());
    }
}
