//! `vzrun ve ...`: read and change Virtual Environments, in the manner of vzctl/vzlist.

use anyhow::Result;

use crate::cli::GlobalOpts;
use crate::container::Root;

#[derive(clap::Subcommand, Debug)]
pub enum VeCommand {
    /// List VEs (vzlist)
    List(ListArgs),
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Print JSON
    #[arg(short = 'j', long)]
    pub json: bool,
    /// Do not print the header
    #[arg(short = 'H', long = "no-header")]
    pub no_header: bool,
}

pub fn run(cmd: VeCommand, global: &GlobalOpts) -> Result<i32> {
    let root = Root::from_opts(global)?;
    match cmd {
        VeCommand::List(args) => list(&root, args),
    }
}

fn list(root: &Root, args: ListArgs) -> Result<i32> {
    let mut rows = Vec::new();
    for id in root.ids() {
        if let Ok((c, _)) = root.read(&id) {
            rows.push((id, crate::state::status_word(c.status()).to_string()));
        }
    }
    if args.json {
        let v: Vec<_> = rows
            .iter()
            .map(|(id, st)| serde_json::json!({"ctid": id, "status": st}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    if !args.no_header {
        println!("{:<16} {:<10}", "CTID", "STATUS");
    }
    for (id, st) in rows {
        println!("{id:<16} {st:<10}");
    }
    Ok(0)
}
