//! What the kernel must hold, as emitted by the RIB. The dataplane turns each
//! intent into netlink requests; the RIB guarantees that the stream is not
//! redundant (no upsert of an unchanged value, no remove of an absent key).

use std::net::IpAddr;

use serde::Serialize;

use crate::types::{MacAddress, Vni};

/// One change to kernel state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Intent {
    /// FDB entry `mac dst vtep` on the VNI's vxlan device plus the bridge's
    /// `master` row (replace semantics: a move is one upsert).
    RemoteMacUpsert {
        vni: Vni,
        mac: MacAddress,
        vtep: IpAddr,
    },
    RemoteMacRemove {
        vni: Vni,
        mac: MacAddress,
    },
    /// Head-end replication entry `00:00:00:00:00:00 dst vtep`.
    FloodAdd {
        vni: Vni,
        vtep: IpAddr,
    },
    FloodRemove {
        vni: Vni,
        vtep: IpAddr,
    },
    /// ARP/ND suppression entry on the VNI's bridge (or its upper device).
    NeighborUpsert {
        vni: Vni,
        ip: IpAddr,
        mac: MacAddress,
    },
    NeighborRemove {
        vni: Vni,
        ip: IpAddr,
    },
}

impl Intent {
    pub fn vni(&self) -> Vni {
        match *self {
            Intent::RemoteMacUpsert { vni, .. }
            | Intent::RemoteMacRemove { vni, .. }
            | Intent::FloodAdd { vni, .. }
            | Intent::FloodRemove { vni, .. }
            | Intent::NeighborUpsert { vni, .. }
            | Intent::NeighborRemove { vni, .. } => vni,
        }
    }
}

/// What an intent is about: two intents with the same key are about the same
/// kernel entry, and the later one replaces the earlier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IntentKey {
    RemoteMac(Vni, MacAddress),
    Flood(Vni, IpAddr),
    Neighbor(Vni, IpAddr),
}

impl Intent {
    pub fn key(&self) -> IntentKey {
        match *self {
            Intent::RemoteMacUpsert { vni, mac, .. } | Intent::RemoteMacRemove { vni, mac } => {
                IntentKey::RemoteMac(vni, mac)
            }
            Intent::FloodAdd { vni, vtep } | Intent::FloodRemove { vni, vtep } => {
                IntentKey::Flood(vni, vtep)
            }
            Intent::NeighborUpsert { vni, ip, .. } | Intent::NeighborRemove { vni, ip } => {
                IntentKey::Neighbor(vni, ip)
            }
        }
    }

    /// True for the intents that take an entry out of the kernel.
    pub fn is_remove(&self) -> bool {
        matches!(
            self,
            Intent::RemoteMacRemove { .. }
                | Intent::FloodRemove { .. }
                | Intent::NeighborRemove { .. }
        )
    }
}
