//! The command-line programs, as library functions so that one executable
//! can also serve as the others (`evpnd-lab` runs its hosts' daemons from
//! its own binary when `evpnd` and `evpnctl` were not built beside it).

pub mod evpnctl;
pub mod evpnd;
