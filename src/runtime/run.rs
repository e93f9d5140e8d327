//! Run: create and start in one step; in the foreground, wait for the init and return its
//! exit status, then delete the container (unless `keep`). A process that wants a terminal
//! and was given no console socket gets vzrun's own pty relay, as with runc.

use std::io::IsTerminal;
use std::path::PathBuf;

use crate::runtime::bundle;
use crate::runtime::create::CreateOptions;
use crate::runtime::error::{Error, Result};
use crate::runtime::foreground::{become_subreaper, follow, Forwarding};
use crate::runtime::lifecycle::start_loaded;
use crate::runtime::Runtime;
use crate::sys::pty::ConsoleSocket;

pub struct RunOptions {
    pub create: CreateOptions,
    /// Keep the container after a foreground init exits.
    pub keep: bool,
}

/// A terminal problem, with its cause.
pub(crate) fn terminal_err(e: crate::sys::pty::PtyError) -> Error {
    Error::Step(e.to_string())
}

impl Runtime {
    /// Returns the init's exit status in the foreground, 0 when detached.
    pub fn run(&self, mut opts: RunOptions) -> Result<i32> {
        let c = &mut opts.create;
        let detach = c.detach;
        // The init is re-parented to us when libcontainer's intermediate process exits;
        // we must be its reaper to collect its exit status.
        let forwarding = if detach {
            None
        } else {
            become_subreaper()?;
            Some(Forwarding::begin()?)
        };
        // Read once here and handed to create; a config that does not load is reported by
        // create, with the same words as for `vzrun create`.
        c.spec = bundle::load_user_spec(&c.bundle).ok();
        let terminal = c
            .spec
            .as_ref()
            .and_then(|s| s.process().as_ref().and_then(|p| p.terminal()))
            .unwrap_or(false);
        let relayed = !detach && terminal;
        if relayed && c.console_socket.is_none() {
            self.root.ensure()?;
        }
        let (socket, own_console) = console(&self.root.path, c.console_socket.take(), relayed)?;
        c.console_socket = socket;
        c.detach = detach || c.console_socket.is_some();
        let id = c.id.clone();
        let (mut container, lock) = self.create(opts.create)?;
        let master = match &own_console {
            Some(c) => Some(c.receive_master().map_err(terminal_err)?),
            None => None,
        };
        let pid = container.pid().map(|p| p.as_raw()).unwrap_or(0);
        if let Err(e) = start_loaded(&mut container) {
            drop(lock);
            let _ = self.delete(&id, true);
            return Err(e);
        }
        drop(lock);
        let Some(forwarding) = forwarding else {
            return Ok(0);
        };
        let code = follow(pid, master, forwarding)?;
        if !opts.keep {
            self.delete(&id, true)
                .map_err(|e| Error::Step(format!("delete after run: {e}")))?;
        }
        Ok(code)
    }
}

/// The console socket a foreground process with a terminal uses: the caller's, or one
/// vzrun makes under `dir` and relays itself.
pub(crate) fn console(
    dir: &std::path::Path,
    given: Option<PathBuf>,
    wants: bool,
) -> Result<(Option<PathBuf>, Option<ConsoleSocket>)> {
    if given.is_some() || !wants {
        return Ok((given, None));
    }
    // vzrun relays the terminal between the process and its own stdin and stdout. From
    // anything but a terminal the process would wait for input that never ends (no EOF
    // crosses a pty), so this fails before anything is made, as runc does.
    if !std::io::stdin().is_terminal() {
        return Err(Error::Step(
            "the process wants a terminal and stdin is not one: run from a terminal, \
             without -t (or process.terminal), or with --console-socket"
                .into(),
        ));
    }
    let own = ConsoleSocket::new(dir).map_err(terminal_err)?;
    Ok((Some(own.path().to_path_buf()), Some(own)))
}
