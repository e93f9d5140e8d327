//! The container lifecycle on libcontainer: where containers live and how they are
//! locked (`root`), vzrun's record of each (`state`), the final exec step (`executor`,
//! `seccomp`), and the typed operations the commands call.

pub mod executor;
pub mod root;
pub mod seccomp;
pub mod signal;
pub mod state;
