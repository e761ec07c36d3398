//! What changed between two configurations, for SIGHUP reload.

use crate::types::*;

/// A neighbor whose settings changed (the session must be reset to apply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighborChange {
    pub old: NeighborConfig,
    pub new: NeighborConfig,
}

/// A VNI whose settings changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VniChange {
    pub old: VniConfig,
    pub new: VniConfig,
}

/// Differences between a running and a newly loaded configuration.
///
/// Neighbors are matched by address and VNIs by id. Keys listed in
/// `restart_required` cannot be applied to a running daemon; the daemon
/// should log them and keep the old values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigDiff {
    pub neighbors_added: Vec<NeighborConfig>,
    pub neighbors_removed: Vec<NeighborConfig>,
    pub neighbors_changed: Vec<NeighborChange>,
    pub vnis_added: Vec<VniConfig>,
    pub vnis_removed: Vec<VniConfig>,
    pub vnis_changed: Vec<VniChange>,
    /// Changed and applicable live (`mac`, `log`, `dataplane.reconcile_interval`).
    pub live_changes: Vec<&'static str>,
    /// Changed but only applied by a restart (e.g. `bgp.asn`, `vtep.local_ip`).
    pub restart_required: Vec<&'static str>,
}

impl ConfigDiff {
    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        *self == ConfigDiff::default()
    }
}

impl Config {
    /// Compare `old` (running) with `new` (just loaded).
    pub fn diff(old: &Config, new: &Config) -> ConfigDiff {
        let mut d = ConfigDiff::default();

        for n in &new.bgp.neighbors {
            match old.neighbor(n.address) {
                None => d.neighbors_added.push(n.clone()),
                Some(o) if o != n => d.neighbors_changed.push(NeighborChange {
                    old: o.clone(),
                    new: n.clone(),
                }),
                Some(_) => {}
            }
        }
        for o in &old.bgp.neighbors {
            if new.neighbor(o.address).is_none() {
                d.neighbors_removed.push(o.clone());
            }
        }
        for v in &new.vnis {
            match old.vni(v.id) {
                None => d.vnis_added.push(v.clone()),
                Some(o) if o != v => d.vnis_changed.push(VniChange {
                    old: o.clone(),
                    new: v.clone(),
                }),
                Some(_) => {}
            }
        }
        for o in &old.vnis {
            if new.vni(o.id).is_none() {
                d.vnis_removed.push(o.clone());
            }
        }

        let (ob, nb) = (&old.bgp, &new.bgp);
        // Identity and listening socket of the speaker: fixed for its lifetime.
        let restart: [(&'static str, bool); 10] = [
            ("bgp.asn", ob.asn != nb.asn),
            ("bgp.router_id", ob.router_id != nb.router_id),
            ("bgp.listen_port", ob.listen_port != nb.listen_port),
            (
                "bgp.graceful_restart",
                ob.graceful_restart != nb.graceful_restart,
            ),
            ("vtep.local_ip", old.vtep.local_ip != new.vtep.local_ip),
            ("vtep.dstport", old.vtep.dstport != new.vtep.dstport),
            ("vtep.mtu", old.vtep.mtu != new.vtep.mtu),
            ("control.socket", old.control.socket != new.control.socket),
            (
                "control.metrics",
                old.control.metrics != new.control.metrics,
            ),
            (
                "dataplane.protocol",
                old.dataplane.protocol != new.dataplane.protocol,
            ),
        ];
        d.restart_required = restart
            .iter()
            .filter(|(_, c)| *c)
            .map(|(k, _)| *k)
            .collect();
        // bgp.local_address, hold_time, keepalive, connect_retry are resolved
        // into each neighbor and show up as neighbor changes.
        let live: [(&'static str, bool); 4] = [
            ("mac", old.mac != new.mac),
            ("log.level", old.log.level != new.log.level),
            ("log.format", old.log.format != new.log.format),
            (
                "dataplane.reconcile_interval",
                old.dataplane.reconcile_interval != new.dataplane.reconcile_interval,
            ),
        ];
        d.live_changes = live.iter().filter(|(_, c)| *c).map(|(k, _)| *k).collect();
        d
    }
}
