//! Withdraw hold: removals of remote kernel entries wait a short time
//! before they reach the dataplane, and a new add for the same entry in
//! that time cancels them.
//!
//! Why: RFC 4724 has the route reflector keep a restarting peer's routes
//! as stale. FRR 8.4 does not for L2VPN EVPN (its per-AFI/SAFI NSF state
//! covers only unicast, multicast and MPLS VPN SAFIs), so when a VTEP's
//! evpnd restarts, the RR withdraws all its routes at once and
//! re-advertises them a second or two later. Without a hold every other
//! VTEP deletes that host's MACs and flood entry in between and traffic
//! to it drops. Pure state: the caller passes the clock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use evpnd_evpn::intent::{Intent, IntentKey};
use evpnd_evpn::{MacAddress, Vni};

/// Removals waiting for their deadline.
#[derive(Debug)]
pub struct WithdrawHold {
    hold: Duration,
    held: HashMap<IntentKey, (Intent, Instant)>,
    /// Removals cancelled by a re-add since the last [`Self::take_cancelled`].
    cancelled: u64,
}

impl WithdrawHold {
    pub fn new(hold: Duration) -> WithdrawHold {
        WithdrawHold {
            hold,
            held: HashMap::new(),
            cancelled: 0,
        }
    }

    /// Filter one batch of intents: removals are kept back (a second
    /// removal of a held entry keeps the first deadline), adds pass and
    /// cancel a held removal of the same entry. Order of what passes is
    /// the batch order.
    pub fn filter(&mut self, intents: Vec<Intent>, now: Instant) -> Vec<Intent> {
        if self.hold.is_zero() && self.held.is_empty() {
            return intents;
        }
        let mut out = Vec::with_capacity(intents.len());
        for i in intents {
            let k = i.key();
            if i.is_remove() {
                if self.hold.is_zero() {
                    self.held.remove(&k);
                    out.push(i);
                } else {
                    let at = self.held.get(&k).map_or(now + self.hold, |(_, at)| *at);
                    self.held.insert(k, (i, at));
                }
            } else {
                if self.held.remove(&k).is_some() {
                    self.cancelled += 1;
                }
                out.push(i);
            }
        }
        out
    }

    /// Hand out the held removal of remote MAC `mac` now: the MAC was
    /// learned locally, and a remote entry still wanted by the dataplane
    /// would be written back over the local one by reconciliation.
    pub fn release_mac(&mut self, vni: Vni, mac: MacAddress) -> Option<Intent> {
        self.held
            .remove(&IntentKey::RemoteMac(vni, mac))
            .map(|(i, _)| i)
    }

    /// Same for a neighbor entry whose IP is now a local binding.
    pub fn release_neigh(&mut self, vni: Vni, ip: IpAddr) -> Option<Intent> {
        self.held
            .remove(&IntentKey::Neighbor(vni, ip))
            .map(|(i, _)| i)
    }

    /// Held removals whose time is up, oldest deadline first.
    pub fn due(&mut self, now: Instant) -> Vec<Intent> {
        let mut due: Vec<(Instant, IntentKey)> = self
            .held
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(k, (_, at))| (*at, *k))
            .collect();
        due.sort_by_key(|(at, _)| *at);
        due.into_iter()
            .filter_map(|(_, k)| self.held.remove(&k).map(|(i, _)| i))
            .collect()
    }

    /// Earliest deadline of a held removal.
    #[cfg(test)]
    pub fn next_deadline(&self) -> Option<Instant> {
        self.held.values().map(|(_, at)| *at).min()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn take_cancelled(&mut self) -> u64 {
        std::mem::take(&mut self.cancelled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(n: u8) -> MacAddress {
        MacAddress([2, 0, 0, 0, 0, n])
    }

    #[allow(non_snake_case)]
    fn V() -> Vni {
        Vni::new(100).unwrap()
    }

    fn vtep(n: u8) -> IpAddr {
        IpAddr::from([10, 255, 0, n])
    }

    #[test]
    fn readd_within_hold_cancels_removal() {
        let t0 = Instant::now();
        let mut h = WithdrawHold::new(Duration::from_secs(5));
        let rm = vec![
            Intent::RemoteMacRemove {
                vni: V(),
                mac: mac(1),
            },
            Intent::FloodRemove {
                vni: V(),
                vtep: vtep(2),
            },
        ];
        assert!(h.filter(rm, t0).is_empty());
        assert_eq!(h.len(), 2);
        assert!(h.due(t0 + Duration::from_secs(4)).is_empty());
        let add = Intent::RemoteMacUpsert {
            vni: V(),
            mac: mac(1),
            vtep: vtep(2),
        };
        assert_eq!(h.filter(vec![add], t0 + Duration::from_secs(2)), vec![add]);
        assert_eq!(h.take_cancelled(), 1);
        // The flood entry was not re-added: its removal goes out on time.
        assert_eq!(
            h.due(t0 + Duration::from_secs(5)),
            vec![Intent::FloodRemove {
                vni: V(),
                vtep: vtep(2)
            }]
        );
        assert_eq!(h.len(), 0);
        assert_eq!(h.next_deadline(), None);
    }

    #[test]
    fn local_learn_releases_held_removal_at_once() {
        let t0 = Instant::now();
        let mut h = WithdrawHold::new(Duration::from_secs(5));
        let rm = Intent::RemoteMacRemove {
            vni: V(),
            mac: mac(7),
        };
        h.filter(vec![rm], t0);
        assert_eq!(h.release_mac(V(), mac(8)), None);
        assert_eq!(h.release_mac(V(), mac(7)), Some(rm));
        assert_eq!(h.len(), 0);
    }

    #[test]
    fn repeated_removal_keeps_first_deadline() {
        let t0 = Instant::now();
        let mut h = WithdrawHold::new(Duration::from_secs(5));
        let rm = Intent::NeighborRemove {
            vni: V(),
            ip: vtep(9),
        };
        h.filter(vec![rm], t0);
        h.filter(vec![rm], t0 + Duration::from_secs(3));
        assert_eq!(h.next_deadline(), Some(t0 + Duration::from_secs(5)));
        assert_eq!(h.due(t0 + Duration::from_secs(5)), vec![rm]);
    }

    #[test]
    fn zero_hold_passes_everything_in_order() {
        let t0 = Instant::now();
        let mut h = WithdrawHold::new(Duration::ZERO);
        let v = vec![
            Intent::RemoteMacRemove {
                vni: V(),
                mac: mac(1),
            },
            Intent::RemoteMacUpsert {
                vni: V(),
                mac: mac(2),
                vtep: vtep(3),
            },
        ];
        assert_eq!(h.filter(v.clone(), t0), v);
        assert_eq!(h.len(), 0);
    }
}
