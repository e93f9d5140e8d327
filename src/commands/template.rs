//! `vzrun template ...`: OS templates that system VEs boot from (built once, cached in
//! the data directory).

use anyhow::Result;

use crate::cli::GlobalOpts;
use crate::commands::out::outln;
use crate::ve::{system, template};

// Deferred like vzrun's commands (see `cli::Command`): only the parsed one is built.
#[derive(clap::Subcommand, Debug)]
#[command(defer = true)]
pub enum TemplateCommand {
    /// Build an OS template (debootstrap, or busybox from the host)
    Create(CreateArgs),
    /// List the templates
    List(ListArgs),
    /// Remove a template no VE uses
    Rm(RmArgs),
}

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example:\n  vzrun template create debian-12 --dist debian-12 --packages openssh-server"
)]
pub struct CreateArgs {
    pub name: String,
    /// Distribution: debian-11, debian-12, debian-13, or busybox
    #[arg(long)]
    pub dist: String,
    /// Package mirror URL (http://, https://, file:// or a directory)
    #[arg(long)]
    pub mirror: Option<String>,
    /// Extra packages, comma separated
    #[arg(long)]
    pub packages: Option<String>,
}

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  vzrun template list\n  vzrun template list --json")]
pub struct ListArgs {
    /// Print JSON
    #[arg(short = 'j', long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  vzrun template rm debian-12")]
pub struct RmArgs {
    pub name: String,
}

/// A template build's progress on stderr: one line rewritten in place on a terminal
/// (stage and package count), else a line per stage, which a log keeps readably.
struct Shown {
    bar: Option<indicatif::ProgressBar>,
    stage: &'static str,
    start: std::time::Instant,
}

impl Shown {
    fn new() -> Shown {
        let bar = nix::unistd::isatty(2).unwrap_or(false).then(|| {
            let b = indicatif::ProgressBar::with_draw_target(
                None,
                indicatif::ProgressDrawTarget::stderr(),
            );
            if let Ok(style) = indicatif::ProgressStyle::with_template("{elapsed:>4} {msg}") {
                b.set_style(style);
            }
            b
        });
        Shown {
            bar,
            stage: "",
            start: std::time::Instant::now(),
        }
    }

    fn show(&mut self, p: template::Progress) {
        let count = match (p.done, p.total) {
            (0, _) => String::new(),
            (d, 0) => format!(": {d} packages"),
            (d, t) => format!(": {d}/{t} packages"),
        };
        match &self.bar {
            Some(b) => b.set_message(format!("{}{count}", p.stage)),
            None if p.stage != self.stage => {
                let total = match p.total {
                    0 => String::new(),
                    t => format!(" ({t} packages)"),
                };
                eprintln!(
                    "template: {:>6.1}s {}{total}",
                    self.start.elapsed().as_secs_f64(),
                    p.stage
                );
            }
            None => {}
        }
        self.stage = p.stage;
    }

    fn finish(self) {
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
    }
}

/// A template error in the user's words: a bad setting is named by its flag.
fn flagged(e: template::TemplateError) -> anyhow::Error {
    match e.setting() {
        Some(_) => anyhow::anyhow!("--{e}"),
        None => e.into(),
    }
}

pub fn run(cmd: TemplateCommand, global: &GlobalOpts) -> Result<i32> {
    template_cmd(cmd, global).map_err(|e| match e.downcast::<template::TemplateError>() {
        Ok(t) => flagged(t),
        Err(other) => other,
    })
}

fn template_cmd(cmd: TemplateCommand, _global: &GlobalOpts) -> Result<i32> {
    let data = template::data_dir();
    match cmd {
        TemplateCommand::Create(a) => {
            template::check_name(&a.name)?;
            if template::list(&data).iter().any(|t| t.name == a.name) {
                return Err(template::TemplateError::Exists(a.name).into());
            }
            let info = if a.dist == "busybox" {
                if a.mirror.is_some() || a.packages.is_some() {
                    anyhow::bail!("--mirror, --packages: not used by the busybox template");
                }
                template::create_busybox(&data, &a.name)?
            } else {
                let packages = template::parse_packages(a.packages.as_deref().unwrap_or(""))?;
                template::suite_of(&a.dist)?;
                if let Some(m) = &a.mirror {
                    template::mirror_url(m)?;
                }
                eprintln!(
                    "Building template {} ({}) with debootstrap...",
                    a.name, a.dist
                );
                let mut shown = Shown::new();
                let built = template::create_debian(
                    &data,
                    &a.name,
                    &a.dist,
                    a.mirror.as_deref(),
                    &packages,
                    &mut |p| shown.show(p),
                );
                shown.finish();
                built?
            };
            outln!("Template {} created ({})", info.name, info.dist)?;
            Ok(0)
        }
        TemplateCommand::List(a) => {
            let all = template::list(&data);
            if a.json {
                outln!("{}", serde_json::to_string_pretty(&all)?)?;
                return Ok(0);
            }
            outln!("{:<20} {:<10} {:<22} PACKAGES", "NAME", "DIST", "CREATED")?;
            for t in all {
                outln!(
                    "{:<20} {:<10} {:<22} {}",
                    t.name,
                    t.dist,
                    t.created,
                    t.packages.join(",")
                )?;
            }
            Ok(0)
        }
        TemplateCommand::Rm(a) => {
            template::remove(&data, &a.name, &system::ves(&data))?;
            outln!("Template {} removed", a.name)?;
            Ok(0)
        }
    }
}
