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
//!
//! `SCMP_ACT_NOTIFY` rules get a filter of their own, as any other action does; seccompiler
//! has no user-notification action, so that filter is compiled with a stand-in action
//! whose return instructions are then rewritten to `SECCOMP_RET_USER_NOTIF`, and it is
//! installed with `SECCOMP_FILTER_FLAG_NEW_LISTENER` (the kernel allows one listener per
//! process): [`install`] returns the listener's fd, which `seccomp_agent` hands to the
//! agent at `listenerPath`.
//!
//! Two libseccomp/runc behaviours are kept: several conditions on the same argument of
//! one rule match when any of them holds (runc then adds each condition as a rule of its
//! own), and a syscall numbered above every syscall the profile names gets ENOSYS rather
//! than the default action, so a program probing for a newer syscall falls back (runc's
//! "-ENOSYS stub", put in front of the default filter when that is not permissive).

use std::collections::{BTreeMap, HashMap};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator};
use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};

mod table {
    include!(concat!(env!("OUT_DIR"), "/syscalls.rs"));
}

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    // runc's words for the three notify profiles it refuses.
    #[error("SCMP_ACT_NOTIFY cannot be used as default action")]
    NotifyDefault,
    #[error("SCMP_ACT_NOTIFY cannot be used for the write syscall")]
    NotifyWrite,
    #[error("listenerPath is not set")]
    NoListenerPath,
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
        // Only in a filter of its own (see [`NOTIFY_STAND_IN`]); refused as the default.
        LinuxSeccompAction::ScmpActNotify => NOTIFY_STAND_IN,
    })
}

/// What the notify filter is compiled with before its returns become
/// `SECCOMP_RET_USER_NOTIF`. Every non-ALLOW return of that filter is this one, so any
/// value would do; the filter is told apart by its key, not by this value.
const NOTIFY_STAND_IN: SeccompAction = SeccompAction::Trace(0);

/// The compiled profile: the programs to install in order, and which of them (if any)
/// answers `SECCOMP_RET_USER_NOTIF` and so is installed with a listener.
#[derive(Clone, Debug, Default)]
pub struct Filters {
    pub programs: Vec<BpfProgram>,
    pub listener: Option<usize>,
}

impl Filters {
    /// Takes the listener's program out, as a set of its own. It answers ALLOW to every
    /// syscall without a notify rule, so it can be installed before the rest: the
    /// stack answers the same once all are in.
    pub fn take_listener(&mut self) -> Option<Filters> {
        let i = self.listener.take()?;
        Some(Filters {
            programs: vec![self.programs.remove(i)],
            listener: Some(0),
        })
    }
}

/// runc's checks on a profile with notify rules, in the order runc meets them (the first
/// two in its init, the last when its parent is handed the fd).
fn check_notify(profile: &LinuxSeccomp) -> Result<bool, SeccompError> {
    if profile.default_action() == LinuxSeccompAction::ScmpActNotify {
        return Err(SeccompError::NotifyDefault);
    }
    let notify: Vec<_> = profile
        .syscalls()
        .iter()
        .flatten()
        .filter(|sc| sc.action() == LinuxSeccompAction::ScmpActNotify)
        .collect();
    // The process hands the fd over with write(2): a notified write would wait for an
    // agent that does not have the fd yet.
    if notify
        .iter()
        .any(|sc| sc.names().iter().any(|n| n == "write"))
    {
        return Err(SeccompError::NotifyWrite);
    }
    let has_listener = profile
        .listener_path()
        .as_ref()
        .is_some_and(|p| !p.as_os_str().is_empty());
    if !notify.is_empty() && !has_listener {
        return Err(SeccompError::NoListenerPath);
    }
    Ok(!notify.is_empty())
}

/// A key that orders and compares actions including their data (errno values); notify
/// rules have a key of their own, whatever their stand-in action is.
fn action_key(a: &SeccompAction, notify: bool) -> (u32, bool) {
    (u32::from(a.clone()), notify)
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

/// Compiles the profile into the programs to install. A `listenerPath` without notify
/// rules is accepted and unused, as in runc.
pub fn compile(profile: &LinuxSeccomp) -> Result<Filters, SeccompError> {
    check_notify(profile)?;
    let arch = target_arch()?;
    let default = action(profile.default_action(), profile.default_errno_ret())?;
    let mut by_action: HashMap<(u32, bool), (SeccompAction, Rules)> = HashMap::new();
    let mut not_default: Rules = BTreeMap::new();
    // The highest syscall the profile names, whatever its rule's action.
    let last = profile
        .syscalls()
        .iter()
        .flatten()
        .flat_map(|sc| sc.names().iter())
        .filter_map(|n| syscall_nr(n))
        .max();
    for sc in profile.syscalls().iter().flatten() {
        let act = action(sc.action(), sc.errno_ret())?;
        let notify = sc.action() == LinuxSeccompAction::ScmpActNotify;
        if act == default && !notify {
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
            let rule = |conds: Vec<SeccompCondition>| {
                SeccompRule::new(conds).map_err(|e| SeccompError::Compile(format!("{name}: {e}")))
            };
            let rules: Vec<Option<SeccompRule>> = if conds.is_empty() {
                vec![None]
            } else if repeats_an_argument(sc.args().iter().flatten().map(|a| a.index())) {
                conds
                    .into_iter()
                    .map(|c| rule(vec![c]).map(Some))
                    .collect::<Result<_, _>>()?
            } else {
                vec![Some(rule(conds)?)]
            };
            for rule in rules {
                add_rule(&mut not_default, nr, rule.clone());
                if act != SeccompAction::Allow {
                    let slot = by_action
                        .entry(action_key(&act, notify))
                        .or_insert_with(|| (act.clone(), BTreeMap::new()));
                    add_rule(&mut slot.1, nr, rule);
                }
            }
        }
    }
    let mut filters = Vec::new();
    let permissive = matches!(default, SeccompAction::Allow | SeccompAction::Log);
    if default != SeccompAction::Allow {
        filters.push(SeccompFilter::new(
            not_default,
            default,
            SeccompAction::Allow,
            arch,
        ));
    }
    let mut others: Vec<_> = by_action.into_iter().collect();
    others.sort_by_key(|(key, _)| *key);
    let mut listener = None;
    for ((_, notify), (act, rules)) in others {
        if notify {
            listener = Some(filters.len());
        }
        filters.push(SeccompFilter::new(rules, SeccompAction::Allow, act, arch));
    }
    let mut programs = filters
        .into_iter()
        .map(|f| {
            let f = f.map_err(|e| SeccompError::Compile(e.to_string()))?;
            BpfProgram::try_from(f).map_err(|e| SeccompError::Compile(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(i) = listener {
        let stand_in = u32::from(NOTIFY_STAND_IN);
        for insn in programs[i].iter_mut() {
            if insn.code == BPF_RET_K && insn.k == stand_in {
                insn.k = libc::SECCOMP_RET_USER_NOTIF;
            }
        }
    }
    // runc leaves the stub out when the default already answers ENOSYS, and (looking
    // only at the profile's listed architectures) when no architecture is listed.
    let default_is_enosys = profile.default_errno_ret() == Some(libc::ENOSYS as u32);
    let lists_arch = profile
        .architectures()
        .as_ref()
        .is_some_and(|a| !a.is_empty());
    if let (false, false, true, Some(last), Some(first)) = (
        permissive,
        default_is_enosys,
        lists_arch,
        last,
        programs.first_mut(),
    ) {
        let mut stub = enosys_stub(arch, last);
        stub.append(first);
        *first = stub;
    }
    Ok(Filters { programs, listener })
}

/// Whether some argument index comes twice among one rule's conditions.
fn repeats_an_argument(indexes: impl Iterator<Item = usize>) -> bool {
    let mut seen = [false; 6];
    indexes
        .filter(|&i| i < 6)
        .any(|i| std::mem::replace(&mut seen[i], true))
}

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_JGT_K: u16 = 0x25;
const BPF_JGE_K: u16 = 0x35;
const BPF_RET_K: u16 = 0x06;
/// Offsets in struct seccomp_data.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;
/// x32 system calls are x86_64 numbers with this bit set; the stub leaves them alone.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

fn audit_arch(arch: TargetArch) -> u32 {
    const LE64: u32 = 0x8000_0000 | 0x4000_0000;
    match arch {
        TargetArch::x86_64 => 62 | LE64,
        TargetArch::aarch64 => 183 | LE64,
        TargetArch::riscv64 => 243 | LE64,
    }
}

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// Instructions that answer ENOSYS for a native syscall numbered above `last` and fall
/// through to the filter behind them for everything else. Jumps are relative, so the
/// filter they are put in front of runs unchanged.
fn enosys_stub(arch: TargetArch, last: i64) -> BpfProgram {
    let last = u32::try_from(last).unwrap_or(u32::MAX);
    vec![
        insn(BPF_LD_W_ABS, 0, 0, DATA_ARCH),
        insn(BPF_JEQ_K, 0, 4, audit_arch(arch)),
        insn(BPF_LD_W_ABS, 0, 0, DATA_NR),
        insn(BPF_JGE_K, 2, 0, X32_SYSCALL_BIT),
        insn(BPF_JGT_K, 0, 1, last),
        insn(
            BPF_RET_K,
            0,
            0,
            libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
        ),
    ]
}

/// Installs the programs into the calling thread; returns the notify listener's fd when
/// the profile has notify rules. Without CAP_SYS_ADMIN the kernel only accepts a filter
/// under no_new_privs; libcontainer drops capabilities before the executor runs, so when
/// the spec did not ask for no_new_privs and the process cannot install without it,
/// no_new_privs is set rather than running unfiltered.
pub fn install(filters: &Filters) -> Result<Option<OwnedFd>, SeccompError> {
    let mut listener = None;
    for (i, prog) in filters.programs.iter().enumerate() {
        let fprog = libc::sock_fprog {
            len: prog.len() as u16,
            filter: prog.as_ptr() as *mut libc::sock_filter,
        };
        let flags = if filters.listener == Some(i) {
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER
        } else {
            0
        };
        let set = || {
            // SAFETY: fprog points at a live, correctly sized BPF program; nix has no
            // seccomp(2) wrapper.
            unsafe {
                libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER,
                    flags,
                    &fprog as *const libc::sock_fprog,
                )
            }
        };
        let mut rc = set();
        if rc < 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EACCES) {
                return Err(SeccompError::Install(err));
            }
            nix::sys::prctl::set_no_new_privs().map_err(|e| SeccompError::Install(e.into()))?;
            rc = set();
            if rc < 0 {
                return Err(SeccompError::Install(std::io::Error::last_os_error()));
            }
        }
        if flags != 0 {
            let fd = RawFd::try_from(rc).map_err(|_| {
                SeccompError::Install(std::io::Error::from_raw_os_error(libc::EBADF))
            })?;
            // SAFETY: with NEW_LISTENER, seccomp(2) returns a new fd that nothing else owns.
            listener = Some(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
    Ok(listener)
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
        assert_eq!(compile(&p).unwrap().programs.len(), 1);
    }

    #[test]
    fn deny_list_profile_skips_the_default_filter() {
        let p = profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":13},{"names":["chmod"],"action":"SCMP_ACT_KILL"}]}"#,
        );
        assert_eq!(compile(&p).unwrap().programs.len(), 2);
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
        assert_eq!(compile(&p).unwrap().programs.len(), 2);
    }

    #[test]
    fn refuses_what_it_cannot_enforce() {
        let idx = profile(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","args":[{"index":7,"value":0,"op":"SCMP_CMP_EQ"}]}]}"#,
        );
        assert!(compile(&idx)
            .unwrap_err()
            .to_string()
            .contains("argument index 7"));
    }

    #[test]
    fn notify_profiles_refused_as_runc_refuses_them() {
        let err = |json: &str| compile(&profile(json)).err().map(|e| e.to_string());
        assert_eq!(
            err(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_NOTIFY"}]}"#)
                .as_deref(),
            Some("listenerPath is not set")
        );
        assert_eq!(
            err(r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/a","syscalls":[{"names":["read","write"],"action":"SCMP_ACT_NOTIFY"}]}"#)
                .as_deref(),
            Some("SCMP_ACT_NOTIFY cannot be used for the write syscall")
        );
        assert_eq!(
            err(r#"{"defaultAction":"SCMP_ACT_NOTIFY","listenerPath":"/a"}"#).as_deref(),
            Some("SCMP_ACT_NOTIFY cannot be used as default action")
        );
        // A listener without notify rules is accepted and unused.
        let unused = compile(&profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/a"}"#,
        ))
        .unwrap();
        assert_eq!(unused.listener, None);
    }

    #[test]
    fn notify_rules_get_a_listener_filter_that_returns_user_notif() {
        // A TRACE rule with the stand-in's value stays a TRACE filter of its own.
        let f = compile(&profile(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","listenerPath":"/a","syscalls":[
              {"names":["read","write","exit_group"],"action":"SCMP_ACT_ALLOW"},
              {"names":["mkdir","mkdirat"],"action":"SCMP_ACT_NOTIFY"},
              {"names":["getpid"],"action":"SCMP_ACT_TRACE","errnoRet":0}]}"#,
        ))
        .unwrap();
        assert_eq!(f.programs.len(), 3);
        let i = f.listener.expect("a listener filter");
        let rets = |p: &BpfProgram| -> Vec<u32> {
            p.iter()
                .filter(|x| x.code == BPF_RET_K)
                .map(|x| x.k)
                .collect()
        };
        let notify = rets(&f.programs[i]);
        assert!(notify.contains(&libc::SECCOMP_RET_USER_NOTIF));
        // Besides ALLOW and USER_NOTIF, only seccompiler's wrong-architecture kill.
        assert!(
            notify.iter().all(|&k| [
                libc::SECCOMP_RET_USER_NOTIF,
                libc::SECCOMP_RET_ALLOW,
                libc::SECCOMP_RET_KILL_PROCESS
            ]
            .contains(&k)),
            "{notify:x?}"
        );
        for (j, p) in f.programs.iter().enumerate() {
            if j != i {
                assert!(
                    !rets(p).contains(&libc::SECCOMP_RET_USER_NOTIF),
                    "program {j}"
                );
            }
        }
    }

    #[test]
    fn repeated_argument_splits_the_rule() {
        assert!(repeats_an_argument([0, 0].into_iter()));
        assert!(!repeats_an_argument([0, 2].into_iter()));
        let p = profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["getpgid"],"action":"SCMP_ACT_ERRNO","args":[
              {"index":0,"value":1,"op":"SCMP_CMP_EQ"},{"index":0,"value":2,"op":"SCMP_CMP_EQ"}]}]}"#,
        );
        assert_eq!(compile(&p).unwrap().programs.len(), 1);
    }

    #[test]
    fn enosys_stub_only_for_a_listed_arch_and_a_strict_default() {
        let strict = r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64"],
            "syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"}]}"#;
        let plain = r#"{"defaultAction":"SCMP_ACT_ERRNO",
            "syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"}]}"#;
        let with = compile(&profile(strict)).unwrap().programs[0].len();
        let without = compile(&profile(plain)).unwrap().programs[0].len();
        assert_eq!(with, without + 6);
        let enosys = r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":38,"architectures":["SCMP_ARCH_X86_64"],
            "syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"}]}"#;
        assert_eq!(
            compile(&profile(enosys)).unwrap().programs[0].len(),
            without
        );
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
