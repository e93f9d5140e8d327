//! Argument parsing and dispatch. Callers are strict about runc's command line, so this
//! module also smooths over their quirks (Go-style single-dash long flags) before clap
//! sees the arguments.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::commands;
use crate::logging::{self, LogFormat};

/// The process exit code runc uses for a command-line usage error of an unknown command.
const EXIT_UNKNOWN_COMMAND: i32 = 3;

#[derive(Parser, Debug)]
#[command(
    name = "vzrun",
    about = "An OCI runtime that runs bundles as OpenVZ-style Virtual Environments",
    disable_version_flag = true,
    disable_help_subcommand = true,
    after_help = "Examples:\n  vzrun run -d --bundle /srv/bundles/web web\n  vzrun ve list -a\n  \
                  vzrun exec -t web sh\n\nEach command has a man page (man vzrun-ve-set) and --help."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,
    /// Print the version
    #[arg(short = 'v', long = "version", global = false)]
    pub version: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(clap::Args, Debug, Clone, Default)]
#[command(next_help_heading = "Global options")]
pub struct GlobalOpts {
    /// Root directory for storage of container state
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Set the log file to write runtime logs to (default is stderr)
    #[arg(long, global = true, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Log format: text or json
    #[arg(
        long = "log-format",
        global = true,
        default_value = "text",
        value_name = "FORMAT"
    )]
    pub log_format: LogFormat,
    /// Enable debug logging
    #[arg(long, global = true)]
    pub debug: bool,
    /// Use systemd to manage cgroups (accepted for compatibility; vzrun uses cgroupfs)
    #[arg(long = "systemd-cgroup", global = true)]
    pub systemd_cgroup: bool,
    /// Rootless mode: true, false or auto
    #[arg(long, global = true, value_name = "VALUE", num_args = 0..=1, default_missing_value = "true")]
    pub rootless: Option<String>,
    /// Accepted for runc compatibility and ignored
    #[arg(long, global = true, hide = true, value_name = "PATH")]
    pub criu: Option<String>,
    /// The host policy for VE settings (default: $VZRUN_POLICY, else /etc/vzrun/policy.toml)
    #[arg(long, global = true, value_name = "FILE")]
    pub policy: Option<PathBuf>,
}

// Deferred: a subcommand's arguments are added only when it is the one parsed (or when
// help or the man pages need them all), so a run does not build the arguments of the
// forty-odd commands it is not. A description set on a variant (a doc comment) is there at
// once and must match the one its `Args` set, which is applied when it is built.
#[derive(Subcommand, Debug)]
#[command(defer = true)]
pub enum Command {
    Create(commands::create::Args),
    Start(commands::start::Args),
    Run(commands::run::Args),
    Exec(commands::exec::Args),
    Kill(commands::kill::Args),
    Delete(commands::delete::Args),
    State(commands::state::Args),
    List(commands::list::Args),
    Ps(commands::ps::Args),
    Events(commands::events::Args),
    Pause(commands::pause::Args),
    Resume(commands::resume::Args),
    Update(commands::update::Args),
    Features(commands::features::Args),
    Spec(commands::spec::Args),
    Checkpoint(commands::checkpoint::Args),
    Restore(commands::restore::Args),
    /// Move a running VE to another host (vzmigrate)
    Migrate(commands::migrate::Args),
    /// Receive VEs from `vzrun migrate`
    MigrateListen(commands::migrate_listen::Args),
    /// Read and change Virtual Environments (vzctl/vzlist style)
    #[command(
        subcommand,
        after_help = "Examples:\n  vzrun ve create 101 --template busybox --ipadd 192.0.2.101\n  \
                      vzrun ve start 101\n  vzrun ve list -a"
    )]
    Ve(commands::ve::VeCommand),
    /// OS templates for system VEs (build, list, remove)
    #[command(
        subcommand,
        after_help = "Examples:\n  vzrun template create debian-12 --dist debian-12\n  vzrun template list"
    )]
    Template(commands::template::TemplateCommand),
    Completion(commands::completion::Args),
    #[command(hide = true)]
    Man(commands::man::Args),
}

impl Command {
    /// Commands that work on containers, VEs or templates: namespaces, cgroups, mounts
    /// and the state under /run/vzrun are root's. The rest only print what vzrun knows.
    fn needs_root(&self) -> bool {
        use commands::template::TemplateCommand;
        use commands::ve::VeCommand;
        !matches!(
            self,
            Command::Spec(_)
                | Command::Features(_)
                | Command::Completion(_)
                | Command::Man(_)
                | Command::Ve(VeCommand::Keys(_))
                | Command::Template(TemplateCommand::List(_))
        )
    }

    /// Commands whose process (or a fork of it) becomes a container process.
    fn starts_container_processes(&self) -> bool {
        use commands::ve::VeCommand;
        match self {
            Command::Create(_)
            | Command::Run(_)
            | Command::Exec(_)
            | Command::Restore(_)
            | Command::MigrateListen(_) => true,
            Command::Ve(v) => matches!(
                v,
                VeCommand::Start(_)
                    | VeCommand::Restart(_)
                    | VeCommand::Enter(_)
                    | VeCommand::Exec(_)
                    | VeCommand::Resume(_)
            ),
            _ => false,
        }
    }
}

/// The commands of [`Command::starts_container_processes`] by name: top-level ones, and
/// those under `ve`.
const STARTS_PROCESSES: &[&str] = &["create", "run", "exec", "restore", "migrate-listen"];
const VE_STARTS_PROCESSES: &[&str] = &["start", "restart", "enter", "exec", "resume"];

/// Whether the raw arguments may name a command that starts container processes: read
/// before clap builds its parser (about 1 ms for vzrun's command tree), so that such a run
/// re-executes from the sealed copy at once instead of parsing in both images. A false
/// yes (a container named `run`) costs an exec the command did not need; a command that
/// starts processes always gets a yes, and is checked again after parsing anyway.
fn may_start_container_processes(args: &[OsString]) -> bool {
    let words = || args.iter().skip(1).filter_map(|a| a.to_str());
    words().any(|w| STARTS_PROCESSES.contains(&w))
        || (words().any(|w| w == "ve") && words().any(|w| VE_STARTS_PROCESSES.contains(&w)))
}

/// Go's flag package accepts `-flag` for a long flag and containerd relies on it
/// (`restore -no-subreaper`). Rewrite such tokens to `--flag` when `flag` is a long option
/// the command knows; anything else (short clusters, container arguments) is left alone.
#[cfg(test)]
pub fn normalize_args(args: Vec<OsString>) -> Vec<OsString> {
    normalize_args_for(&Cli::command(), args)
}

/// [`normalize_args`] with the parser already built (it is built once per run).
fn normalize_args_for(cmd: &clap::Command, args: Vec<OsString>) -> Vec<OsString> {
    // Long names, and short ones as one-letter names, with whether they take a value.
    let longs_of = |c: &clap::Command| -> Vec<(String, bool)> {
        let mut v: Vec<(String, bool)> = c
            .get_arguments()
            .filter_map(|a| {
                a.get_long()
                    .map(|l| (l.to_string(), a.get_action().takes_values()))
            })
            .collect();
        v.extend(c.get_arguments().filter_map(|a| {
            a.get_short()
                .map(|ch| (ch.to_string(), a.get_action().takes_values()))
        }));
        v
    };
    let mut longs = longs_of(cmd);
    let mut out = Vec::with_capacity(args.len());
    let mut sub_seen = false;
    let mut positional_seen = false;
    // The previous token was a long flag whose value comes next (`--image-path DIR`): the
    // value is not the container id, and flags after it are still flags.
    let mut value_next = false;
    for (i, arg) in args.into_iter().enumerate() {
        let Some(s) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        if std::mem::take(&mut value_next) && !positional_seen {
            out.push(arg);
            continue;
        }
        if i == 0 || positional_seen || s == "--" {
            if s == "--" {
                positional_seen = true;
            }
            out.push(arg);
            continue;
        }
        if !s.starts_with('-') {
            if !sub_seen {
                if let Some(sub) = cmd.find_subcommand(s) {
                    sub_seen = true;
                    // A subcommand's arguments are added when it is built (deferred, so
                    // that a run builds only its own): a copy is built to read them.
                    let mut sub = sub.clone();
                    sub.build();
                    longs.extend(longs_of(&sub));
                }
            } else {
                // After the container id, everything belongs to the contained command.
                positional_seen = true;
            }
            out.push(arg);
            continue;
        }
        let long = s.strip_prefix("--").or_else(|| s.strip_prefix('-'));
        if let Some(body) = long.filter(|b| !b.is_empty()) {
            let (name, inline) = match body.split_once('=') {
                Some((n, _)) => (n, true),
                None => (body, false),
            };
            if let Some((_, takes)) = longs.iter().find(|(l, _)| l == name) {
                value_next = *takes && !inline;
                if !s.starts_with("--") && name.len() > 1 {
                    let mut fixed = OsString::from("-");
                    fixed.push(s);
                    out.push(fixed);
                    continue;
                }
            }
        }
        out.push(arg);
    }
    out
}

pub fn main() -> i32 {
    let raw: Vec<OsString> = std::env::args_os().collect();
    // Only root's runs can make the read-only copy; anyone else's stop at the root check.
    if may_start_container_processes(&raw) && nix::unistd::geteuid().is_root() {
        // On failure the run goes on, and the check after parsing reports it in the
        // form the caller asked for (--log, --log-format).
        let _ = crate::sys::sealed::ensure();
    }
    let mut cmd = Cli::command();
    let args = normalize_args_for(&cmd, raw);
    let matches = match matches_of(&mut cmd, &args) {
        Ok(m) => m,
        Err(e) => return usage_error(e, &args),
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => return usage_error(e, &args),
    };
    if let Err(e) = logging::init(&cli.global) {
        logging::error(&e.into());
        return 1;
    }
    if cli.version {
        commands::version::print();
        return 0;
    }
    let Some(command) = cli.command else {
        cmd.build();
        let _ = cmd.print_help();
        return 0;
    };
    // Checked first: without root, each command would fail at its first privileged step,
    // with that step's words (a lock file, a cgroup, a mount) rather than the cause.
    if command.needs_root() && !nix::unistd::geteuid().is_root() {
        logging::error(&anyhow::anyhow!(
            "vzrun needs root (user {} is not; run it as root, e.g. with sudo)",
            nix::unistd::geteuid()
        ));
        return 1;
    }
    // Container processes start as forks of vzrun: they must run from a sealed copy, so
    // that none of them can reach a writable host binary through /proc/PID/exe.
    if command.starts_container_processes() {
        if let Err(e) = crate::sys::sealed::ensure() {
            let err = anyhow::Error::from(e);
            logging::error(&err);
            return 1;
        }
        // Nor the caller's supplementary groups: a container process has exactly the
        // additional gids of its spec, as under runc. libcontainer calls setgroups(2)
        // only for a non-empty list, so its forks would keep whatever groups the caller
        // (a shim, a shell) had.
        if let Err(e) = nix::unistd::setgroups(&[]) {
            logging::error(&anyhow::anyhow!(
                "drop the caller's supplementary groups: {e}"
            ));
            return 1;
        }
    }
    // The whole command as one timed step; every step below nests in it.
    let _step = tracing::debug_span!("vzrun", command = %command_name(&matches)).entered();
    tracing::debug!(pid = std::process::id(), "vzrun {}", command_name(&matches));
    match commands::dispatch(command, &cli.global) {
        Ok(code) => code,
        // The reader of our output stopped reading (`| head`): the command is done.
        Err(err) if commands::out::is_closed(&err) => 0,
        Err(err) => {
            logging::error(&err);
            commands::exit_code_for(&err)
        }
    }
}

/// A usage error is said once: the whole message through the log (a logrus line on
/// stderr, or the `--log` file's line that a shim reads plus the bare message on stderr),
/// then clap's usage lines for a person. The message is in runc's words where runc has
/// some, so a caller comparing with runc finds what it expects.
fn usage_error(e: clap::Error, args: &[OsString]) -> i32 {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return 0;
    }
    let _ = logging::init(&logging::sniff_global_opts(args));
    logging::error(&anyhow::anyhow!("{}", runc_words(&e)));
    let usage = usage_lines(&e.render().to_string());
    if !usage.is_empty() {
        eprint!("\n{usage}");
    }
    if e.kind() == ErrorKind::InvalidSubcommand {
        EXIT_UNKNOWN_COMMAND
    } else {
        1
    }
}

/// Parses `args`. Help lists the subcommands with their descriptions, which come with
/// their arguments when a subcommand is built (deferred): for help, all are built and
/// the arguments parsed again.
fn matches_of(cmd: &mut clap::Command, args: &[OsString]) -> Result<clap::ArgMatches, clap::Error> {
    use clap::error::ErrorKind;
    match cmd.try_get_matches_from_mut(args) {
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) =>
        {
            cmd.build();
            cmd.try_get_matches_from_mut(args)
        }
        parsed => parsed,
    }
}

/// The subcommand's words (`exec`, `ve set`), for the debug log.
fn command_name(m: &clap::ArgMatches) -> String {
    let mut words = Vec::new();
    let mut m = m;
    while let Some((name, sub)) = m.subcommand() {
        words.push(name);
        m = sub;
    }
    words.join(" ")
}

/// Go's flag package and urfave/cli word usage errors like this.
fn runc_words(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let ctx = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        Some(ContextValue::Strings(v)) => v.first().cloned(),
        _ => None,
    };
    let go_flag = |f: String| {
        let name = f
            .split(['=', ' '])
            .next()
            .unwrap_or_default()
            .trim_start_matches('-')
            .to_string();
        format!("-{name}")
    };
    let rendered = e.render().to_string();
    let first = message(&rendered);
    match e.kind() {
        ErrorKind::UnknownArgument => match ctx(ContextKind::InvalidArg) {
            Some(a) if a.starts_with('-') => {
                format!("flag provided but not defined: {}", go_flag(a))
            }
            _ => first,
        },
        ErrorKind::InvalidSubcommand => match ctx(ContextKind::InvalidSubcommand) {
            Some(c) => format!("No help topic for '{c}'"),
            None => first,
        },
        _ => match missing_value_flag(&rendered) {
            Some(flag) => format!("flag needs an argument: {}", go_flag(flag)),
            None => first,
        },
    }
}

fn missing_value_flag(rendered: &str) -> Option<String> {
    let rest = rendered
        .trim_start_matches("error: ")
        .strip_prefix("a value is required for '")?;
    Some(rest.split([' ', '\'']).next()?.to_string())
}

/// Where clap's usage lines start in its rendering of an error.
fn usage_start(rendered: &str) -> usize {
    ["\nUsage:", "\nFor more information"]
        .iter()
        .filter_map(|h| rendered.find(h))
        .min()
        .unwrap_or(rendered.len())
}

/// The whole message of a clap error on one line (a log line is one line): its lines
/// joined, paragraphs (a tip, the list of missing arguments) set off by "; ".
fn message(rendered: &str) -> String {
    let text = rendered[..usage_start(rendered)].trim_start_matches("error: ");
    text.split("\n\n")
        .map(|para| {
            para.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// clap's usage lines of an error ("Usage: ...", "For more information ..."), for a person.
fn usage_lines(rendered: &str) -> String {
    rendered[usage_start(rendered)..].trim_start().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_raw_check_says_yes_for_every_command_that_starts_container_processes() {
        let cases: &[&[&str]] = &[
            &["vzrun", "--root", "/r", "run", "-b", "b", "id"],
            &["vzrun", "create", "--bundle", "b", "id"],
            &["vzrun", "exec", "id", "sh"],
            &["vzrun", "restore", "--image-path", "i", "id"],
            &[
                "vzrun",
                "migrate-listen",
                "--listen",
                "127.0.0.1:1",
                "--key-file",
                "k",
            ],
            &["vzrun", "ve", "start", "101"],
            &["vzrun", "ve", "restart", "101"],
            &["vzrun", "ve", "enter", "101"],
            &["vzrun", "ve", "exec", "101", "ls"],
            &["vzrun", "ve", "resume", "101"],
            &["vzrun", "delete", "id"],
            &["vzrun", "state", "id"],
            &["vzrun", "--root", "/r", "list"],
            &["vzrun", "ve", "stop", "101"],
            &["vzrun", "ve", "list"],
            &["vzrun", "kill", "id", "KILL"],
        ];
        for argv in cases {
            let args: Vec<OsString> = argv.iter().map(OsString::from).collect();
            let cli = Cli::try_parse_from(normalize_args(args.clone()))
                .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
            let starts = cli.command.unwrap().starts_container_processes();
            assert!(
                !starts || may_start_container_processes(&args),
                "{argv:?} starts container processes but the raw check says no"
            );
            assert_eq!(may_start_container_processes(&args), starts, "{argv:?}");
        }
    }

    fn norm(v: &[&str]) -> Vec<String> {
        normalize_args(v.iter().map(OsString::from).collect())
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect()
    }

    fn parse(v: &[&str]) -> Cli {
        let args = normalize_args(v.iter().map(OsString::from).collect());
        Cli::try_parse_from(args).expect("parses")
    }

    /// Subcommands are deferred: a description given on a variant shows in the parent's
    /// list, the one its arguments carry in its own help. They must be the same.
    #[test]
    fn deferred_subcommands_describe_themselves_as_their_parent_lists_them() {
        fn check(parent: &clap::Command, path: &str) {
            for sub in parent.get_subcommands() {
                let mut built = sub.clone();
                built.build();
                let at_once = sub.get_about().map(|a| a.to_string());
                let name = format!("{path} {}", sub.get_name());
                if let Some(listed) = at_once {
                    let own = built.get_about().map(|a| a.to_string());
                    assert_eq!(Some(listed), own, "{name}");
                }
                check(sub, &name);
            }
        }
        check(&Cli::command(), "vzrun");
    }

    #[test]
    fn top_level_help_describes_every_command() {
        let args: Vec<OsString> = ["vzrun", "--help"].iter().map(OsString::from).collect();
        let help = matches_of(&mut Cli::command(), &args)
            .unwrap_err()
            .render()
            .to_string();
        for line in ["  create ", "  state ", "  migrate-listen "] {
            let l = help.lines().find(|l| l.starts_with(line)).unwrap_or("");
            assert!(
                l.len() > line.len() + 10,
                "{line:?} has no description:\n{help}"
            );
        }
    }

    #[test]
    fn usage_errors_use_runc_words() {
        let args = normalize_args(
            ["vzrun", "create", "--bogus", "x"]
                .iter()
                .map(OsString::from)
                .collect(),
        );
        assert_eq!(
            runc_words(&Cli::try_parse_from(args).unwrap_err()),
            "flag provided but not defined: -bogus"
        );
        let args = normalize_args(["vzrun", "frobnicate"].iter().map(OsString::from).collect());
        assert_eq!(
            runc_words(&Cli::try_parse_from(args).unwrap_err()),
            "No help topic for 'frobnicate'"
        );
    }

    #[test]
    fn usage_messages_are_whole_and_one_line() {
        let err = |v: &[&str]| {
            Cli::try_parse_from(normalize_args(v.iter().map(OsString::from).collect())).unwrap_err()
        };
        let e = err(&["vzrun", "ve", "stat"]);
        assert_eq!(
            runc_words(&e),
            "the following required arguments were not provided: <ID>"
        );
        assert!(usage_lines(&e.render().to_string()).starts_with("Usage: vzrun ve stat"));
        let e = err(&["vzrun", "ve", "stat", "--format", "xml", "x"]);
        let m = runc_words(&e);
        assert!(
            m.starts_with("invalid value 'xml' for '--format <FORMAT>'")
                && m.contains("[possible values: table, json, prometheus]")
                && !m.contains('\n'),
            "{m}"
        );
        let e = err(&["vzrun", "restore", "--lsm-mount-context"]);
        assert_eq!(runc_words(&e), "flag needs an argument: -lsm-mount-context");
    }

    #[test]
    fn single_dash_long_flags_become_double() {
        fn words(line: &str) -> Vec<&str> {
            line.split(' ').collect()
        }
        for (given, want) in [
            (
                "vzrun restore -no-subreaper --bundle b id",
                "vzrun restore --no-subreaper --bundle b id",
            ),
            // containerd's shim puts flag values before -no-subreaper.
            (
                "vzrun restore --image-path /i -b /b -no-subreaper id",
                "vzrun restore --image-path /i -b /b --no-subreaper id",
            ),
            // The command's own arguments are left alone.
            (
                "vzrun exec c sh -no-subreaper",
                "vzrun exec c sh -no-subreaper",
            ),
            ("vzrun -root /r state x", "vzrun --root /r state x"),
            ("vzrun -root=/r state x", "vzrun --root=/r state x"),
        ] {
            assert_eq!(norm(&words(given)), words(want), "{given}");
        }
    }

    #[test]
    fn container_arguments_are_left_alone() {
        assert_eq!(
            norm(&["vzrun", "exec", "id", "ls", "-all"]),
            ["vzrun", "exec", "id", "ls", "-all"]
        );
        assert_eq!(
            norm(&["vzrun", "ps", "id", "-ef"]),
            ["vzrun", "ps", "id", "-ef"]
        );
        assert_eq!(
            norm(&["vzrun", "exec", "-t", "id", "sh"]),
            ["vzrun", "exec", "-t", "id", "sh"]
        );
    }

    #[test]
    fn containerd_create_argv_parses() {
        let cli = parse(&[
            "vzrun",
            "--root",
            "/run/containerd/runc/default",
            "--log",
            "/b/log.json",
            "--log-format",
            "json",
            "create",
            "--bundle",
            "/b",
            "--pid-file",
            "/b/init.pid",
            "--no-pivot",
            "--no-new-keyring",
            "--preserve-fds",
            "2",
            "abc",
        ]);
        assert_eq!(
            cli.global.root.as_deref(),
            Some(std::path::Path::new("/run/containerd/runc/default"))
        );
        assert_eq!(cli.global.log_format, LogFormat::Json);
        match cli.command {
            Some(Command::Create(a)) => {
                assert_eq!(a.id, "abc");
                assert_eq!(a.flags.preserve_fds, 2);
                assert!(a.flags.no_pivot && a.flags.no_new_keyring);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn equals_and_space_forms_and_trailing_globals() {
        let cli = parse(&[
            "vzrun",
            "--log-format=json",
            "--log=/x",
            "state",
            "id",
            "--root",
            "/r",
        ]);
        assert_eq!(cli.global.log.as_deref(), Some(std::path::Path::new("/x")));
        assert_eq!(cli.global.root.as_deref(), Some(std::path::Path::new("/r")));
        let cli = parse(&["vzrun", "--systemd-cgroup", "update", "--resources=-", "id"]);
        assert!(cli.global.systemd_cgroup);
        match cli.command {
            Some(Command::Update(a)) => assert_eq!(a.resources.as_deref(), Some("-")),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn kill_takes_positional_signal_forms() {
        for sig in ["9", "KILL", "SIGKILL"] {
            match parse(&["vzrun", "kill", "--all", "id", sig]).command {
                Some(Command::Kill(a)) => {
                    assert!(a.all);
                    assert_eq!(a.signal.as_deref(), Some(sig));
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn podman_exec_argv_parses() {
        let cli = parse(&[
            "vzrun",
            "exec",
            "--pid-file",
            "/p",
            "--process",
            "/s.json",
            "--detach",
            "--preserve-fds",
            "1",
            "--console-socket",
            "/c.sock",
            "id",
        ]);
        match cli.command {
            Some(Command::Exec(a)) => {
                assert!(a.detach);
                assert_eq!(a.id, "id");
                assert_eq!(a.preserve_fds, 1);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn restore_lsm_mount_context_needs_a_value() {
        let args = normalize_args(
            ["vzrun", "restore", "--lsm-mount-context"]
                .iter()
                .map(OsString::from)
                .collect(),
        );
        let err = Cli::try_parse_from(args).unwrap_err();
        assert_eq!(
            runc_words(&err),
            "flag needs an argument: -lsm-mount-context"
        );
    }
}
