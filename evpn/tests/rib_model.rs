//! Model-based property test of the RIB: random batches of announcements,
//! withdraws and session losses from two route reflectors. The intent
//! stream is applied to a simulated kernel that rejects redundant intents
//! (upsert of an unchanged value, remove of an absent entry, flood add of a
//! present entry); after every batch the kernel must equal what a naive
//! model computes from the set of paths.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use evpnd_bgp::{
    AfiSafi, ExtCommunity, MpReach, MpUnreach, NextHop, Origin, PathAttributes, Update,
};
use evpnd_evpn::extcomm::{EvpnExtCommunity, MacMobility, PmsiView, RouteTarget};
use evpnd_evpn::rib::{DupDetectConfig, Outbound, Rib, RibConfig, RibInput, VniConfig};
use evpnd_evpn::route::{InclusiveMulticastRoute, MacIpRoute};
use evpnd_evpn::{
    Esi, EthernetTag, EvpnNlri, Intent, Label, MacAddress, RouteDistinguisher, RouteKey, Vni,
};
use proptest::prelude::*;

const ASN: u32 = 65000;
const PEERS: [u8; 2] = [101, 102];
const VTEPS: [u8; 3] = [2, 3, 4];
const MACS: u8 = 3;

fn ip(d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, d))
}
fn vni() -> Vni {
    Vni::new(100).unwrap()
}
fn mac(n: u8) -> MacAddress {
    MacAddress([2, 0, 0, 0, 0, n])
}
fn rd(vtep: u8) -> RouteDistinguisher {
    RouteDistinguisher::Ipv4 {
        addr: Ipv4Addr::new(10, 0, 0, vtep),
        number: 1,
    }
}

#[derive(Debug, Clone)]
enum Action {
    /// `peer` reflects VTEP `vtep`'s type-2 for `mac` with `seq` (and the
    /// MAC+IP route when `with_ip`).
    Mac {
        peer: usize,
        vtep: usize,
        mac: u8,
        seq: u32,
        with_ip: bool,
    },
    MacWithdraw {
        peer: usize,
        vtep: usize,
        mac: u8,
    },
    Imet {
        peer: usize,
        vtep: usize,
    },
    ImetWithdraw {
        peer: usize,
        vtep: usize,
    },
    /// Session lost (non-GR) and re-established.
    Flap {
        peer: usize,
    },
    /// Session lost with graceful restart and re-established: its paths
    /// stay (stale) until its End-of-RIB.
    GrFlap {
        peer: usize,
    },
    EndOfRib {
        peer: usize,
    },
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => (0..2usize, 0..3usize, 0..MACS, 0..4u32, any::<bool>()).prop_map(
            |(peer, vtep, mac, seq, with_ip)| Action::Mac { peer, vtep, mac, seq, with_ip }
        ),
        2 => (0..2usize, 0..3usize, 0..MACS)
            .prop_map(|(peer, vtep, mac)| Action::MacWithdraw { peer, vtep, mac }),
        2 => (0..2usize, 0..3usize).prop_map(|(peer, vtep)| Action::Imet { peer, vtep }),
        1 => (0..2usize, 0..3usize).prop_map(|(peer, vtep)| Action::ImetWithdraw { peer, vtep }),
        1 => (0..2usize).prop_map(|peer| Action::Flap { peer }),
        1 => (0..2usize).prop_map(|peer| Action::GrFlap { peer }),
        1 => (0..2usize).prop_map(|peer| Action::EndOfRib { peer }),
    ]
}

fn host(m: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 168, 0, m))
}

fn t2(vtep: u8, m: u8, with_ip: bool) -> EvpnNlri {
    EvpnNlri::MacIp(MacIpRoute {
        rd: rd(vtep),
        esi: Esi::ZERO,
        eth_tag: EthernetTag(0),
        mac: mac(m),
        ip: with_ip.then(|| host(m)),
        label1: Label::new(100),
        label2: None,
    })
}

fn t3(vtep: u8) -> EvpnNlri {
    EvpnNlri::InclusiveMulticast(InclusiveMulticastRoute {
        rd: rd(vtep),
        eth_tag: EthernetTag(0),
        originator: ip(vtep),
    })
}

fn reach(vtep: u8, nlri: Vec<EvpnNlri>, seq: u32) -> Update<EvpnNlri> {
    let mut ecs: Vec<ExtCommunity> = vec![RouteTarget::auto(ASN, vni()).into()];
    if seq > 0 {
        ecs.push(EvpnExtCommunity::MacMobility(MacMobility::new(seq, false)).into());
    }
    let imet = matches!(nlri[0], EvpnNlri::InclusiveMulticast(_));
    Update {
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(Default::default()),
            local_pref: Some(100),
            originator_id: Some(Ipv4Addr::new(10, 0, 0, vtep)),
            cluster_list: vec![Ipv4Addr::new(10, 0, 0, 200)],
            ext_communities: ecs,
            pmsi_tunnel: imet.then(|| PmsiView::ingress_replication(vni(), ip(vtep))),
            ..Default::default()
        },
        mp_reach: Some(MpReach {
            afi_safi: AfiSafi::L2VPN_EVPN,
            next_hop: NextHop::Ip(ip(vtep)),
            nlri,
        }),
        ..Default::default()
    }
}

fn unreach(nlri: Vec<EvpnNlri>) -> Update<EvpnNlri> {
    Update {
        mp_unreach: Some(MpUnreach {
            afi_safi: AfiSafi::L2VPN_EVPN,
            withdrawn: nlri,
        }),
        ..Default::default()
    }
}

/// What each peer currently advertises.
#[derive(Default, Clone)]
struct Model {
    /// (peer, vtep, mac, with_ip) -> seq
    macs: BTreeMap<(usize, usize, u8, bool), u32>,
    imets: BTreeSet<(usize, usize)>,
    /// Stale entries after a GR session loss, by peer: (vtep, mac, with_ip)
    /// and type-3 vteps.
    stale_macs: BTreeSet<(usize, usize, u8, bool)>,
    stale_imets: BTreeSet<(usize, usize)>,
}

#[derive(Default, Debug, PartialEq)]
struct Kernel {
    macs: BTreeMap<MacAddress, IpAddr>,
    neighs: BTreeMap<IpAddr, MacAddress>,
    flood: BTreeSet<IpAddr>,
}

impl Kernel {
    fn apply(&mut self, i: &Intent) -> Result<(), String> {
        match *i {
            Intent::RemoteMacUpsert { mac, vtep, .. } => {
                if self.macs.insert(mac, vtep) == Some(vtep) {
                    return Err(format!("redundant {i:?}"));
                }
            }
            Intent::RemoteMacRemove { mac, .. } => {
                if self.macs.remove(&mac).is_none() {
                    return Err(format!("remove of absent {i:?}"));
                }
            }
            Intent::FloodAdd { vtep, .. } => {
                if !self.flood.insert(vtep) {
                    return Err(format!("redundant {i:?}"));
                }
            }
            Intent::FloodRemove { vtep, .. } => {
                if !self.flood.remove(&vtep) {
                    return Err(format!("remove of absent {i:?}"));
                }
            }
            Intent::NeighborUpsert { ip, mac, .. } => {
                if self.neighs.insert(ip, mac) == Some(mac) {
                    return Err(format!("redundant {i:?}"));
                }
            }
            Intent::NeighborRemove { ip, .. } => {
                if self.neighs.remove(&ip).is_none() {
                    return Err(format!("remove of absent {i:?}"));
                }
            }
        }
        Ok(())
    }
}

impl Model {
    /// RFC 7432 §15: per MAC, the highest sequence over every route (the
    /// best path of a route key is its highest-sequence path), ties to the
    /// lowest VTEP address.
    fn expected(&self) -> Kernel {
        let mut k = Kernel::default();
        let mut best: BTreeMap<u8, (u32, u8)> = BTreeMap::new();
        let mut best_ip: BTreeMap<u8, (u32, u8)> = BTreeMap::new();
        for (&(_, vtep, m, with_ip), &seq) in &self.macs {
            let v = VTEPS[vtep];
            let better = |cur: Option<&(u32, u8)>| {
                cur.is_none_or(|&(s, cv)| seq > s || (seq == s && v < cv))
            };
            if better(best.get(&m)) {
                best.insert(m, (seq, v));
            }
            if with_ip && better(best_ip.get(&m)) {
                best_ip.insert(m, (seq, v));
            }
        }
        for (m, (_, v)) in best {
            k.macs.insert(mac(m), ip(v));
        }
        for m in best_ip.keys() {
            k.neighs.insert(host(*m), mac(*m));
        }
        k.flood = self.imets.iter().map(|&(_, v)| ip(VTEPS[v])).collect();
        k
    }

    fn input(&mut self, a: &Action) -> Vec<RibInput> {
        let p = |peer: usize| ip(PEERS[peer]);
        match *a {
            Action::Mac {
                peer,
                vtep,
                mac: m,
                seq,
                with_ip,
            } => {
                self.macs.insert((peer, vtep, m, with_ip), seq);
                self.stale_macs.remove(&(peer, vtep, m, with_ip));
                vec![RibInput::Update {
                    peer: p(peer),
                    update: reach(VTEPS[vtep], vec![t2(VTEPS[vtep], m, with_ip)], seq),
                }]
            }
            Action::MacWithdraw { peer, vtep, mac: m } => {
                for w in [false, true] {
                    self.macs.remove(&(peer, vtep, m, w));
                    self.stale_macs.remove(&(peer, vtep, m, w));
                }
                vec![RibInput::Update {
                    peer: p(peer),
                    update: unreach(vec![t2(VTEPS[vtep], m, false), t2(VTEPS[vtep], m, true)]),
                }]
            }
            Action::Imet { peer, vtep } => {
                self.imets.insert((peer, vtep));
                self.stale_imets.remove(&(peer, vtep));
                vec![RibInput::Update {
                    peer: p(peer),
                    update: reach(VTEPS[vtep], vec![t3(VTEPS[vtep])], 0),
                }]
            }
            Action::ImetWithdraw { peer, vtep } => {
                self.imets.remove(&(peer, vtep));
                self.stale_imets.remove(&(peer, vtep));
                vec![RibInput::Update {
                    peer: p(peer),
                    update: unreach(vec![t3(VTEPS[vtep])]),
                }]
            }
            Action::GrFlap { peer } => {
                self.stale_macs
                    .extend(self.macs.keys().filter(|k| k.0 == peer).copied());
                self.stale_imets
                    .extend(self.imets.iter().filter(|k| k.0 == peer).copied());
                vec![
                    RibInput::PeerDown {
                        peer: p(peer),
                        graceful_restart: Some(std::time::Duration::from_secs(120)),
                    },
                    RibInput::PeerUp {
                        peer: p(peer),
                        router_id: Ipv4Addr::new(10, 0, 0, PEERS[peer]),
                        asn: ASN,
                    },
                ]
            }
            Action::EndOfRib { peer } => {
                let stale_macs = std::mem::take(&mut self.stale_macs);
                for k in &stale_macs {
                    if k.0 == peer {
                        self.macs.remove(k);
                    } else {
                        self.stale_macs.insert(*k);
                    }
                }
                let stale_imets = std::mem::take(&mut self.stale_imets);
                for k in &stale_imets {
                    if k.0 == peer {
                        self.imets.remove(k);
                    } else {
                        self.stale_imets.insert(*k);
                    }
                }
                vec![RibInput::EndOfRib { peer: p(peer) }]
            }
            Action::Flap { peer } => {
                self.macs.retain(|k, _| k.0 != peer);
                self.imets.retain(|k| k.0 != peer);
                self.stale_macs.retain(|k| k.0 != peer);
                self.stale_imets.retain(|k| k.0 != peer);
                vec![
                    RibInput::PeerDown {
                        peer: p(peer),
                        graceful_restart: None,
                    },
                    RibInput::PeerUp {
                        peer: p(peer),
                        router_id: Ipv4Addr::new(10, 0, 0, PEERS[peer]),
                        asn: ASN,
                    },
                ]
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn intents_are_minimal_and_match_the_model(
        batches in proptest::collection::vec(proptest::collection::vec(action(), 1..6), 1..25)
    ) {
        let local = Ipv4Addr::new(10, 0, 0, 1);
        let mut rib = Rib::new(RibConfig {
            router_id: local,
            asn: ASN,
            local_vtep: IpAddr::V4(local),
            dup_detect: DupDetectConfig { enabled: false, ..Default::default() },
        });
        let now = Instant::now();
        rib.handle(RibInput::VniAdd(VniConfig::auto(vni(), ASN, local, 1)), now);
        for (i, peer) in PEERS.iter().enumerate() {
            rib.handle(RibInput::PeerUp { peer: ip(*peer), router_id: Ipv4Addr::new(10, 0, 0, PEERS[i]), asn: ASN }, now);
        }
        let mut model = Model::default();
        let mut kernel = Kernel::default();
        for batch in &batches {
            let inputs: Vec<RibInput> = batch.iter().flat_map(|a| model.input(a)).collect();
            let out = rib.handle_batch(inputs, now);
            for intent in &out.intents {
                if let Err(e) = kernel.apply(intent) {
                    prop_assert!(false, "{} in batch {:?}", e, batch);
                }
            }
            prop_assert_eq!(&kernel, &model.expected(), "after batch {:?}", batch);
        }
    }
}

#[derive(Debug, Clone)]
enum Mixed {
    Remote(Action),
    LocalAdd(u8),
    LocalRemove(u8),
    NeighAdd(u8),
    NeighRemove(u8),
    Tick,
}

fn mixed() -> impl Strategy<Value = Mixed> {
    prop_oneof![
        6 => action().prop_map(Mixed::Remote),
        2 => (0..MACS).prop_map(Mixed::LocalAdd),
        1 => (0..MACS).prop_map(Mixed::LocalRemove),
        1 => (0..MACS).prop_map(Mixed::NeighAdd),
        1 => (0..MACS).prop_map(Mixed::NeighRemove),
        1 => Just(Mixed::Tick),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// With local learning, mobility and duplicate detection in play: the
    /// intent stream is never redundant, and the kernel always matches the
    /// RIB's own view of where each MAC is.
    #[test]
    fn intents_stay_consistent_with_local_learning(
        batches in proptest::collection::vec(proptest::collection::vec(mixed(), 1..6), 1..25)
    ) {
        let local = Ipv4Addr::new(10, 0, 0, 1);
        let mut rib = Rib::new(RibConfig {
            router_id: local,
            asn: ASN,
            local_vtep: IpAddr::V4(local),
            dup_detect: DupDetectConfig {
                enabled: true,
                max_moves: 3,
                window: std::time::Duration::from_secs(60),
                freeze: Some(std::time::Duration::from_secs(5)),
            },
        });
        let mut now = Instant::now();
        rib.handle(RibInput::VniAdd(VniConfig::auto(vni(), ASN, local, 1)), now);
        for peer in PEERS {
            rib.handle(RibInput::PeerUp { peer: ip(peer), router_id: Ipv4Addr::new(10, 0, 0, peer), asn: ASN }, now);
        }
        let mut model = Model::default();
        let mut kernel = Kernel::default();
        // Our type-3 was announced when the peers came up (full table).
        let mut advertised: BTreeMap<RouteKey, (EvpnNlri, PathAttributes)> = rib
            .routes()
            .filter(|r| r.peer.is_none())
            .map(|r| (r.nlri.key(), (r.nlri, (**r.attrs).clone())))
            .collect();
        for batch in &batches {
            now += std::time::Duration::from_secs(2);
            let inputs: Vec<RibInput> = batch
                .iter()
                .flat_map(|m| match m {
                    Mixed::Remote(a) => model.input(a),
                    Mixed::LocalAdd(m) => vec![RibInput::LocalMacAdd { vni: vni(), mac: mac(*m) }],
                    Mixed::LocalRemove(m) => vec![RibInput::LocalMacRemove { vni: vni(), mac: mac(*m) }],
                    Mixed::NeighAdd(m) => vec![RibInput::LocalNeighAdd { vni: vni(), ip: host(*m), mac: mac(*m) }],
                    Mixed::NeighRemove(m) => vec![RibInput::LocalNeighRemove { vni: vni(), ip: host(*m) }],
                    Mixed::Tick => vec![RibInput::Tick],
                })
                .collect();
            let out = rib.handle_batch(inputs, now);
            for intent in &out.intents {
                if let Err(e) = kernel.apply(intent) {
                    prop_assert!(false, "{} in batch {:?}", e, batch);
                }
            }
            // What the peers hold from us: never a redundant announce or a
            // withdraw of something not announced.
            for o in &out.outbound {
                match o {
                    Outbound::Announce { to: None, routes } => {
                        for (n, a, _) in routes {
                            let prev = advertised.insert(n.key(), (*n, (**a).clone()));
                            prop_assert!(prev != Some((*n, (**a).clone())), "redundant announce {}", n);
                        }
                    }
                    Outbound::Withdraw { to: None, routes } => {
                        for n in routes {
                            prop_assert!(advertised.remove(&n.key()).is_some(), "withdraw of unannounced {}", n);
                        }
                    }
                    _ => {}
                }
            }
            let ours: BTreeMap<RouteKey, (EvpnNlri, PathAttributes)> = rib
                .routes()
                .filter(|r| r.peer.is_none())
                .map(|r| (r.nlri.key(), (r.nlri, (**r.attrs).clone())))
                .collect();
            prop_assert_eq!(&advertised, &ours);
            let view: BTreeMap<MacAddress, IpAddr> = rib
                .macs(vni())
                .into_iter()
                .filter_map(|m| match m.location {
                    Some(evpnd_evpn::rib::MacLocation::Remote(v)) => Some((m.mac, v)),
                    _ => None,
                })
                .collect();
            prop_assert_eq!(&kernel.macs, &view, "after batch {:?}", batch);
            prop_assert_eq!(kernel.flood.clone(), model.expected().flood);
        }
    }
}
