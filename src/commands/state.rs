//! `vzrun state`: the runtime-spec state document of one container.

use anyhow::Result;

use crate::cli::GlobalOpts;
use crate::runtime::root::Root;

#[derive(clap::Args, Debug)]
#[command(about = "Output the state of a container")]
pub struct Args {
    pub id: String,
}

pub fn run(args: Args, global: &GlobalOpts) -> Result<i32> {
    let root = Root::from_opts(global)?;
    let loaded = root.load(&args.id)?;
    let state = crate::runtime::state::oci_state(&loaded.container, &loaded.record, false);
    // runc prints it indented and without a final newline.
    print!("{}", serde_json::to_string_pretty(&state)?);
    Ok(0)
}
