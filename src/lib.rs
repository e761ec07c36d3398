//! The evpnd daemon: kernel dataplane, control socket and the tasks that tie
//! the BGP sessions, the EVPN RIB and the kernel together.

pub mod bench;
pub mod cli;
pub mod control;
pub mod daemon;
pub mod dataplane;
pub mod metrics;
pub mod systemd;
pub mod testbed;
