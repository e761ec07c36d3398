//! The evpnd daemon: kernel dataplane, control socket and the tasks that tie
//! the BGP sessions, the EVPN RIB and the kernel together.

pub mod testbed;
