//! Test bed for integration tests, the lab (`evpnd-lab`) and the benchmark:
//! network namespaces, links, FRR and GoBGP instances and evpnd processes,
//! each behind a guard that tears it down on drop (also when a test panics,
//! in which case the daemons' logs are printed).
//!
//! Everything here shells out to `ip`, `bridge`, `vtysh`, `gobgp`, ... and
//! needs root. It is synchronous: tests call it from plain `#[test]`s.

pub mod agent;
pub mod error;
pub mod fabric;
pub mod frr;
pub mod gobgp;
pub mod links;
pub mod netns;
pub mod process;
pub mod wait;

pub use agent::{Evpnd, EvpndConfig, GrSetting, NeighborStatus, VniConfig};
pub use error::{Error, Result};
pub use fabric::{Fabric, FabricBuilder, Host, HostKind, RrKind, Vm};
pub use frr::{EvpnRoute, Frr, FrrConfig, RrParams, VtepParams};
pub use gobgp::{GoBgp, GobgpConfig};
pub use links::{
    brforward_count, bridge_fdb, fdb_add_local_batch, neighbors, nth_mac, ping, FdbMonitor, FdbRow,
    NeighRow, PingResult, Tcpdump, VxlanSpec,
};
pub use netns::{cleanup_own, cleanup_prefix, list_namespaces, Netns, NsHandle};
pub use process::{rss_kib, ChildGuard, RunDir};
pub use wait::{wait_for, wait_until, Poll};

/// Whether we run as root (namespaces, FRR and tcpdump need it).
pub fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

/// For tests: `true` if the test bed can run here (root, `ip` present);
/// otherwise prints why the test is skipped. CI runs as root, so there
/// the tests always run.
pub fn can_run() -> bool {
    if !is_root() {
        eprintln!("skipping: test bed needs root");
        return false;
    }
    true
}
