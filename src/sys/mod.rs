//! Host plumbing, written once: subprocesses, CRIU, cgroups, netlink, loop devices,
//! terminals and hashing. Nothing here knows about VEs or the command line.

pub mod apt;
pub mod cgroups;
pub mod criu;
pub mod criu_kdat;
pub mod errno;
pub mod fs;
pub mod hash;
pub mod lock;
pub mod loopdev;
pub mod math;
pub mod mount;
pub mod mountinfo;
pub mod netlink;
pub mod nftables;
pub mod passwd;
pub mod process;
pub mod pty;
pub mod sealed;
pub mod sparse;
pub mod vfork;
