//! RIB scenarios, no kernel or sockets: each checks the exact intents (and
//! where relevant the outbound routes and events) the RIB emits.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use evpnd_bgp::{
    AfiSafi, AttrErrorKind, AttrErrorReport, ErrorAction, ExtCommunity, MpReach, MpUnreach,
    NextHop, Origin, PathAttributes, Update,
};
use evpnd_evpn::extcomm::{EvpnExtCommunity, MacMobility, PmsiView, RouteTarget};
use evpnd_evpn::rib::*;
use evpnd_evpn::route::{EvpnNlri, InclusiveMulticastRoute, MacIpRoute};
use evpnd_evpn::{Esi, EthernetTag, Intent, Label, MacAddress, RouteDistinguisher, Vni};

const ROUTER_ID: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const ASN: u32 = 65000;

fn ip(d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, d))
}
fn v4(d: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, d)
}
fn vni(v: u32) -> Vni {
    Vni::new(v).unwrap()
}
fn mac(n: u32) -> MacAddress {
    let b = n.to_be_bytes();
    MacAddress([0x02, 0, b[0], b[1], b[2], b[3]])
}
fn host(d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 168, 100, d))
}

const LOCAL: u8 = 1;
const RR1: u8 = 101;
const RR2: u8 = 102;
const B: u8 = 2;
const C: u8 = 3;
const D: u8 = 4;

struct T {
    rib: Rib,
    now: Instant,
}

impl T {
    fn new() -> Self {
        Self::with_dup(DupDetectConfig::default())
    }
    fn with_dup(dup_detect: DupDetectConfig) -> Self {
        let mut t = T {
            rib: Rib::new(RibConfig {
                router_id: ROUTER_ID,
                asn: ASN,
                local_vtep: ip(LOCAL),
                dup_detect,
            }),
            now: Instant::now(),
        };
        t.run(RibInput::VniAdd(VniConfig::auto(
            vni(100),
            ASN,
            ROUTER_ID,
            1,
        )));
        t
    }
    fn run(&mut self, i: RibInput) -> RibOutput {
        self.now += Duration::from_secs(1);
        self.rib.handle(i, self.now)
    }
    fn intents(&mut self, i: RibInput) -> Vec<Intent> {
        self.run(i).intents
    }
    fn peer_up(&mut self, d: u8) -> RibOutput {
        self.run(RibInput::PeerUp {
            peer: ip(d),
            router_id: v4(d),
            asn: ASN,
        })
    }
    fn upd(&mut self, from: u8, u: Update<EvpnNlri>) -> Vec<Intent> {
        self.intents(RibInput::Update {
            peer: ip(from),
            update: u,
        })
    }
}

/// Attributes as a remote VTEP `origin` would send them through an RR.
fn attrs(v: u32, origin: u8, mm: Option<MacMobility>) -> PathAttributes {
    let mut ecs: Vec<ExtCommunity> = vec![
        RouteTarget::auto(ASN, vni(v)).into(),
        EvpnExtCommunity::Encapsulation(8).into(),
    ];
    if let Some(m) = mm {
        ecs.push(EvpnExtCommunity::MacMobility(m).into());
    }
    PathAttributes {
        origin: Some(Origin::Igp),
        as_path: Some(Default::default()),
        local_pref: Some(100),
        originator_id: Some(v4(origin)),
        cluster_list: vec![v4(200)],
        ext_communities: ecs,
        ..Default::default()
    }
}

/// FRR-like auto RD: VTEP:index, index 1 for VNI 100, 2 for VNI 200...
fn rd(origin: u8, v: u32) -> RouteDistinguisher {
    RouteDistinguisher::Ipv4 {
        addr: v4(origin),
        number: (v / 100) as u16,
    }
}

fn t2(origin: u8, v: u32, m: MacAddress, host_ip: Option<IpAddr>) -> EvpnNlri {
    EvpnNlri::MacIp(MacIpRoute {
        rd: rd(origin, v),
        esi: Esi::ZERO,
        eth_tag: EthernetTag(0),
        mac: m,
        ip: host_ip,
        label1: Label::new(v),
        label2: None,
    })
}

fn t3(origin: u8) -> EvpnNlri {
    t3v(origin, 100)
}

fn t3v(origin: u8, v: u32) -> EvpnNlri {
    EvpnNlri::InclusiveMulticast(InclusiveMulticastRoute {
        rd: rd(origin, v),
        eth_tag: EthernetTag(0),
        originator: ip(origin),
    })
}

fn reach(nlri: Vec<EvpnNlri>, next_hop: IpAddr, mut a: PathAttributes) -> Update<EvpnNlri> {
    if nlri
        .iter()
        .any(|n| matches!(n, EvpnNlri::InclusiveMulticast(_)))
    {
        let v = a
            .ext_communities
            .iter()
            .find_map(|e| match EvpnExtCommunity::from(*e) {
                EvpnExtCommunity::RouteTarget(RouteTarget::As2 { value, .. }) => Some(value),
                _ => None,
            })
            .unwrap();
        a.pmsi_tunnel = Some(PmsiView::ingress_replication(vni(v), next_hop));
    }
    Update {
        attributes: a,
        mp_reach: Some(MpReach {
            afi_safi: AfiSafi::L2VPN_EVPN,
            next_hop: NextHop::Ip(next_hop),
            nlri,
        }),
        ..Default::default()
    }
}

/// Routes originated by VTEP `origin` for VNI `v`.
fn from_vtep(origin: u8, v: u32, nlri: Vec<EvpnNlri>, mm: Option<MacMobility>) -> Update<EvpnNlri> {
    reach(nlri, ip(origin), attrs(v, origin, mm))
}

fn withdraw(nlri: Vec<EvpnNlri>) -> Update<EvpnNlri> {
    Update {
        mp_unreach: Some(MpUnreach {
            afi_safi: AfiSafi::L2VPN_EVPN,
            withdrawn: nlri,
        }),
        ..Default::default()
    }
}

fn upsert(v: u32, m: MacAddress, vtep: u8) -> Intent {
    Intent::RemoteMacUpsert {
        vni: vni(v),
        mac: m,
        vtep: ip(vtep),
    }
}
fn mac_rm(v: u32, m: MacAddress) -> Intent {
    Intent::RemoteMacRemove {
        vni: vni(v),
        mac: m,
    }
}
fn flood_add(v: u32, vtep: u8) -> Intent {
    Intent::FloodAdd {
        vni: vni(v),
        vtep: ip(vtep),
    }
}
fn flood_rm(v: u32, vtep: u8) -> Intent {
    Intent::FloodRemove {
        vni: vni(v),
        vtep: ip(vtep),
    }
}

fn announced(out: &RibOutput) -> Vec<EvpnNlri> {
    out.outbound
        .iter()
        .flat_map(|o| match o {
            Outbound::Announce { routes, .. } => routes.iter().map(|r| r.0).collect(),
            _ => vec![],
        })
        .collect()
}
fn withdrawn(out: &RibOutput) -> Vec<EvpnNlri> {
    out.outbound
        .iter()
        .flat_map(|o| match o {
            Outbound::Withdraw { routes, .. } => routes.clone(),
            _ => vec![],
        })
        .collect()
}

fn sorted(mut v: Vec<Intent>) -> Vec<Intent> {
    v.sort_by_key(|i| format!("{i:?}"));
    v
}

fn local_t2(m: MacAddress, host_ip: Option<IpAddr>) -> EvpnNlri {
    t2(LOCAL, 100, m, host_ip)
}

// ---------------------------------------------------------------------------

#[test]
fn two_rrs_same_routes_then_withdraw_one_by_one() {
    let mut t = T::new();
    t.peer_up(RR1);
    t.peer_up(RR2);
    let routes = vec![t3(B), t2(B, 100, mac(1), None)];
    assert_eq!(
        t.upd(RR1, from_vtep(B, 100, routes.clone(), None)),
        vec![flood_add(100, B), upsert(100, mac(1), B)]
    );
    assert_eq!(t.upd(RR2, from_vtep(B, 100, routes.clone(), None)), vec![]);
    // One RR withdraws: the other still has the routes.
    assert_eq!(t.upd(RR1, withdraw(routes.clone())), vec![]);
    assert_eq!(t.rib.vteps(vni(100)), vec![ip(B)]);
    // The other withdraws: gone.
    assert_eq!(
        t.upd(RR2, withdraw(routes)),
        vec![flood_rm(100, B), mac_rm(100, mac(1))]
    );
    assert!(t.rib.vteps(vni(100)).is_empty());
    assert_eq!(t.rib.counters().routes, 0);
}

#[test]
fn rr_session_lost_without_gr_keeps_what_the_other_rr_has() {
    let mut t = T::new();
    t.peer_up(RR1);
    t.peer_up(RR2);
    let routes = vec![t3(B), t2(B, 100, mac(1), Some(host(10)))];
    t.upd(RR1, from_vtep(B, 100, routes.clone(), None));
    t.upd(RR2, from_vtep(B, 100, routes, None));
    // Only RR1 has this one.
    assert_eq!(
        t.upd(RR1, from_vtep(C, 100, vec![t2(C, 100, mac(2), None)], None)),
        vec![upsert(100, mac(2), C)]
    );
    let out = t.run(RibInput::PeerDown {
        peer: ip(RR1),
        graceful_restart: None,
    });
    assert_eq!(out.intents, vec![mac_rm(100, mac(2))]);
    assert!(out.timers.is_empty());
    let out = t.run(RibInput::PeerDown {
        peer: ip(RR2),
        graceful_restart: None,
    });
    let mut got = out.intents;
    got.sort_by_key(|i| format!("{i:?}"));
    let mut want = vec![
        flood_rm(100, B),
        mac_rm(100, mac(1)),
        Intent::NeighborRemove {
            vni: vni(100),
            ip: host(10),
        },
    ];
    want.sort_by_key(|i| format!("{i:?}"));
    assert_eq!(got, want);
}

#[test]
fn own_route_reflected_back_is_dropped() {
    let mut t = T::new();
    t.peer_up(RR1);
    let mut a = attrs(100, LOCAL, None);
    a.originator_id = Some(ROUTER_ID);
    let out = t.run(RibInput::Update {
        peer: ip(RR1),
        update: reach(vec![t3(LOCAL), local_t2(mac(9), None)], ip(LOCAL), a),
    });
    assert_eq!(out.intents, vec![]);
    assert!(out.events.contains(&RibEvent::OwnRoutesDropped {
        peer: ip(RR1),
        count: 2
    }));
    let c = t.rib.counters();
    assert_eq!((c.routes, c.own_dropped), (0, 2));
    // Without ORIGINATOR_ID (e.g. through an eBGP hop), a route whose next
    // hop is our own VTEP never becomes a flood or FDB entry.
    let mut a = attrs(100, LOCAL, None);
    a.originator_id = None;
    assert_eq!(
        t.upd(
            RR1,
            reach(vec![t3(LOCAL), local_t2(mac(9), None)], ip(LOCAL), a)
        ),
        vec![]
    );
}

#[test]
fn route_whose_rt_no_vni_imports_is_not_imported() {
    let mut t = T::new();
    t.peer_up(RR1);
    let out = t.run(RibInput::Update {
        peer: ip(RR1),
        update: from_vtep(B, 999, vec![t3v(B, 999), t2(B, 999, mac(1), None)], None),
    });
    assert_eq!(out.intents, vec![]);
    assert!(out.events.contains(&RibEvent::NotImported {
        peer: ip(RR1),
        count: 2
    }));
    let c = t.rib.counters();
    assert_eq!((c.routes, c.not_imported), (0, 2));
    // Adding the VNI asks the peers for their routes again.
    let out = t.run(RibInput::VniAdd(VniConfig::auto(
        vni(999),
        ASN,
        ROUTER_ID,
        2,
    )));
    assert!(out
        .outbound
        .contains(&Outbound::RouteRefreshRequest { to: None }));
    assert_eq!(
        t.upd(
            RR1,
            from_vtep(B, 999, vec![t3v(B, 999), t2(B, 999, mac(1), None)], None)
        ),
        vec![flood_add(999, B), upsert(999, mac(1), B)]
    );
}

#[test]
fn auto_import_matches_any_asn_and_explicit_rts_work() {
    let mut t = T::new();
    t.peer_up(RR1);
    // Another AS's auto RT for the same VNI (FRR imports *:VNI).
    let mut a = attrs(100, B, None);
    a.ext_communities = vec![RouteTarget::auto(65099, vni(100)).into()];
    assert_eq!(
        t.upd(RR1, reach(vec![t2(B, 100, mac(1), None)], ip(B), a)),
        vec![upsert(100, mac(1), B)]
    );
    // An explicit import RT on another VNI.
    let mut cfg = VniConfig::auto(vni(300), ASN, ROUTER_ID, 3);
    let rt = RouteTarget::Ipv4 {
        addr: v4(77),
        value: 5,
    };
    cfg.import_rts = vec![evpnd_evpn::extcomm::ImportRt::Exact(rt)];
    t.run(RibInput::VniAdd(cfg));
    let mut a = attrs(300, C, None);
    a.ext_communities = vec![rt.into()];
    assert_eq!(
        t.upd(RR1, reach(vec![t2(C, 300, mac(3), None)], ip(C), a)),
        vec![upsert(300, mac(3), C)]
    );
}

#[test]
fn mac_moves_with_increasing_sequence_and_older_sequence_is_ignored() {
    let mut t = T::new();
    t.peer_up(RR1);
    let m = mac(1);
    assert_eq!(
        t.upd(RR1, from_vtep(B, 100, vec![t2(B, 100, m, None)], None)),
        vec![upsert(100, m, B)]
    );
    // Moves to C with sequence 1.
    let out = t.run(RibInput::Update {
        peer: ip(RR1),
        update: from_vtep(
            C,
            100,
            vec![t2(C, 100, m, None)],
            Some(MacMobility::new(1, false)),
        ),
    });
    assert_eq!(out.intents, vec![upsert(100, m, C)]);
    assert!(out.events.contains(&RibEvent::MacMoved {
        vni: vni(100),
        mac: m,
        from: MacLocation::Remote(ip(B)),
        to: MacLocation::Remote(ip(C)),
        seq: 1
    }));
    // B re-advertises its stale sequence 0: ignored.
    assert_eq!(
        t.upd(RR1, from_vtep(B, 100, vec![t2(B, 100, m, None)], None)),
        vec![]
    );
    // D with sequence 2: moves again.
    assert_eq!(
        t.upd(
            RR1,
            from_vtep(
                D,
                100,
                vec![t2(D, 100, m, None)],
                Some(MacMobility::new(2, false))
            )
        ),
        vec![upsert(100, m, D)]
    );
    // B finally withdraws its old route: nothing changes.
    assert_eq!(t.upd(RR1, withdraw(vec![t2(B, 100, m, None)])), vec![]);
    // Same sequence from two VTEPs: the lower VTEP address wins (§15.1).
    assert_eq!(
        t.upd(
            RR1,
            from_vtep(
                C,
                100,
                vec![t2(C, 100, m, None)],
                Some(MacMobility::new(2, false))
            )
        ),
        vec![upsert(100, m, C)]
    );
}

#[test]
fn same_route_from_two_rrs_best_path_uses_mobility_first() {
    // The same route key via two RRs with different sequences (one RR is
    // behind): the higher sequence is the best path.
    let mut t = T::new();
    t.peer_up(RR1);
    t.peer_up(RR2);
    let m = mac(1);
    t.upd(
        RR1,
        from_vtep(
            B,
            100,
            vec![t2(B, 100, m, None)],
            Some(MacMobility::new(3, false)),
        ),
    );
    t.upd(
        RR2,
        from_vtep(
            B,
            100,
            vec![t2(B, 100, m, None)],
            Some(MacMobility::new(2, false)),
        ),
    );
    assert_eq!(t.rib.macs(vni(100))[0].seq, 3);
    let best: Vec<_> = t
        .rib
        .routes()
        .filter(|r| r.best && r.peer.is_some())
        .map(|r| r.peer)
        .collect();
    assert_eq!(best, vec![Some(ip(RR1))]);
}

#[test]
fn sticky_mac_does_not_move() {
    let mut t = T::new();
    t.peer_up(RR1);
    let m = mac(1);
    assert_eq!(
        t.upd(
            RR1,
            from_vtep(
                B,
                100,
                vec![t2(B, 100, m, None)],
                Some(MacMobility::new(0, true))
            )
        ),
        vec![upsert(100, m, B)]
    );
    // A higher sequence elsewhere does not take a sticky MAC.
    assert_eq!(
        t.upd(
            RR1,
            from_vtep(
                C,
                100,
                vec![t2(C, 100, m, None)],
                Some(MacMobility::new(5, false))
            )
        ),
        vec![]
    );
    // Nor does local learning; and we do not advertise it.
    let out = t.run(RibInput::LocalMacAdd {
        vni: vni(100),
        mac: m,
    });
    assert_eq!(out.intents, vec![]);
    assert!(announced(&out).is_empty());
    // The sticky route goes: C (sequence 5) beats the local learning, which
    // took no sequence bump under a sticky MAC (it stayed at 0).
    assert_eq!(
        t.upd(RR1, withdraw(vec![t2(B, 100, m, None)])),
        vec![upsert(100, m, C)]
    );
}

#[test]
fn local_mac_vs_remote_with_sequence_bump() {
    let mut t = T::new();
    t.peer_up(RR1);
    let m = mac(1);
    // Learned here: advertised with no MAC mobility (sequence 0).
    let out = t.run(RibInput::LocalMacAdd {
        vni: vni(100),
        mac: m,
    });
    assert_eq!(out.intents, vec![]);
    assert_eq!(announced(&out), vec![local_t2(m, None)]);
    let Outbound::Announce { to, routes } = &out.outbound[0] else {
        panic!()
    };
    assert_eq!(*to, None);
    assert_eq!(routes[0].2, ip(LOCAL));
    let mm = routes[0].1.ext_communities.iter().find(|e| {
        matches!(
            EvpnExtCommunity::from(**e),
            EvpnExtCommunity::MacMobility(_)
        )
    });
    assert_eq!(mm, None);
    // A remote route with the same sequence: local wins, nothing happens.
    assert_eq!(
        t.upd(RR1, from_vtep(B, 100, vec![t2(B, 100, m, None)], None)),
        vec![]
    );
    // The VM moved to C (sequence 1): install remote, withdraw ours.
    let out = t.run(RibInput::Update {
        peer: ip(RR1),
        update: from_vtep(
            C,
            100,
            vec![t2(C, 100, m, None)],
            Some(MacMobility::new(1, false)),
        ),
    });
    assert_eq!(out.intents, vec![upsert(100, m, C)]);
    assert_eq!(withdrawn(&out), vec![local_t2(m, None)]);
    // It comes back: learned again here, advertised with sequence 2.
    let out = t.run(RibInput::LocalMacAdd {
        vni: vni(100),
        mac: m,
    });
    assert_eq!(out.intents, vec![mac_rm(100, m)]);
    let Outbound::Announce { routes, .. } = &out.outbound[0] else {
        panic!()
    };
    assert_eq!(routes[0].0, local_t2(m, None));
    assert!(routes[0]
        .1
        .ext_communities
        .contains(&EvpnExtCommunity::MacMobility(MacMobility::new(2, false)).into()));
    // With a neighbor: the MAC+IP route carries the same sequence.
    let out = t.run(RibInput::LocalNeighAdd {
        vni: vni(100),
        ip: host(5),
        mac: m,
    });
    let Outbound::Announce { routes, .. } = &out.outbound[0] else {
        panic!()
    };
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].0, local_t2(m, Some(host(5))));
    assert!(routes[0]
        .1
        .ext_communities
        .contains(&EvpnExtCommunity::MacMobility(MacMobility::new(2, false)).into()));
    // Local MAC removed: both routes withdrawn; remaining remote paths (B
    // seq 0, C seq 1) -> C installed again. Not a "move" (lower sequence).
    let out = t.run(RibInput::LocalMacRemove {
        vni: vni(100),
        mac: m,
    });
    assert_eq!(out.intents, vec![upsert(100, m, C)]);
    let mut w = withdrawn(&out);
    w.sort_by_key(|n| n.to_string());
    assert_eq!(w, vec![local_t2(m, None), local_t2(m, Some(host(5)))]);
    assert!(!out
        .events
        .iter()
        .any(|e| matches!(e, RibEvent::MacMoved { .. })));
}

#[test]
fn duplicate_detection_freezes_a_flapping_mac() {
    let mut t = T::with_dup(DupDetectConfig {
        enabled: true,
        max_moves: 3,
        window: Duration::from_secs(180),
        freeze: Some(Duration::from_secs(30)),
    });
    t.peer_up(RR1);
    let m = mac(1);
    t.run(RibInput::LocalMacAdd {
        vni: vni(100),
        mac: m,
    });
    let mut seq = 0;
    // Move 1 (to B), move 2 (back here), move 3 (to B).
    for i in 0..3 {
        if i % 2 == 0 {
            seq += 1;
            assert_eq!(
                t.upd(
                    RR1,
                    from_vtep(
                        B,
                        100,
                        vec![t2(B, 100, m, None)],
                        Some(MacMobility::new(seq, false))
                    )
                ),
                vec![upsert(100, m, B)]
            );
        } else {
            let out = t.run(RibInput::LocalMacAdd {
                vni: vni(100),
                mac: m,
            });
            assert_eq!(out.intents, vec![mac_rm(100, m)]);
            seq += 1;
        }
    }
    // Move 4 (back here) trips the detector: frozen, our route withdrawn.
    let out = t.run(RibInput::LocalMacAdd {
        vni: vni(100),
        mac: m,
    });
    assert!(out.events.contains(&RibEvent::DuplicateMacFrozen {
        vni: vni(100),
        mac: m,
        moves: 4
    }));
    assert!(announced(&out).is_empty());
    assert!(t.rib.macs(vni(100))[0].frozen);
    // Frozen: further updates change nothing.
    let out = t.run(RibInput::Update {
        peer: ip(RR1),
        update: from_vtep(
            B,
            100,
            vec![t2(B, 100, m, None)],
            Some(MacMobility::new(10, false)),
        ),
    });
    assert_eq!(out.intents, vec![]);
    assert!(out.outbound.is_empty());
    // Freeze expires: the MAC follows the best route again (B, seq 10).
    t.now += Duration::from_secs(40);
    let out = t.run(RibInput::Tick);
    assert!(out.events.contains(&RibEvent::DuplicateMacCleared {
        vni: vni(100),
        mac: m
    }));
    assert_eq!(out.intents, vec![upsert(100, m, B)]);
}

#[test]
fn graceful_restart_stale_sweep_at_end_of_rib() {
    let mut t = T::new();
    t.peer_up(RR1);
    let routes = vec![t3(B), t2(B, 100, mac(1), None), t2(B, 100, mac(2), None)];
    t.upd(RR1, from_vtep(B, 100, routes, None));
    let out = t.run(RibInput::PeerDown {
        peer: ip(RR1),
        graceful_restart: Some(Duration::from_secs(120)),
    });
    assert_eq!(out.intents, vec![]);
    assert_eq!(
        out.timers,
        vec![TimerRequest::Stale {
            peer: ip(RR1),
            after: Duration::from_secs(120)
        }]
    );
    assert!(t.rib.routes().filter(|r| r.peer.is_some()).all(|r| r.stale));
    // Re-established: our routes then End-of-RIB to it.
    let out = t.peer_up(RR1);
    assert_eq!(out.intents, vec![]);
    assert!(matches!(out.outbound.last(), Some(Outbound::EndOfRib { to }) if *to == ip(RR1)));
    // It re-advertises the type-3 and one MAC: no change.
    assert_eq!(
        t.upd(
            RR1,
            from_vtep(B, 100, vec![t3(B), t2(B, 100, mac(1), None)], None)
        ),
        vec![]
    );
    // End-of-RIB: the other MAC is swept.
    let out = t.run(RibInput::Update {
        peer: ip(RR1),
        update: Update::end_of_rib(AfiSafi::L2VPN_EVPN),
    });
    assert_eq!(out.intents, vec![mac_rm(100, mac(2))]);
    assert!(out.events.contains(&RibEvent::StalePathsSwept {
        peer: ip(RR1),
        count: 1
    }));
    // The stale timer firing later is harmless.
    assert_eq!(
        t.intents(RibInput::StaleTimerExpired { peer: ip(RR1) }),
        vec![]
    );
}

#[test]
fn graceful_restart_stale_timer_removes_everything() {
    let mut t = T::new();
    t.peer_up(RR1);
    t.upd(
        RR1,
        from_vtep(B, 100, vec![t3(B), t2(B, 100, mac(1), None)], None),
    );
    assert_eq!(
        t.intents(RibInput::PeerDown {
            peer: ip(RR1),
            graceful_restart: Some(Duration::from_secs(120)),
        }),
        vec![]
    );
    // One pass over the RIB: the order among keys is the table's.
    assert_eq!(
        sorted(t.intents(RibInput::StaleTimerExpired { peer: ip(RR1) })),
        sorted(vec![flood_rm(100, B), mac_rm(100, mac(1))])
    );
}

#[test]
fn graceful_restart_other_rr_keeps_forwarding() {
    // RR1 restarts (stale), RR2 still has the route: after RR1's timer
    // nothing is removed.
    let mut t = T::new();
    t.peer_up(RR1);
    t.peer_up(RR2);
    let r = vec![t2(B, 100, mac(1), None)];
    t.upd(RR1, from_vtep(B, 100, r.clone(), None));
    t.upd(RR2, from_vtep(B, 100, r, None));
    t.run(RibInput::PeerDown {
        peer: ip(RR1),
        graceful_restart: Some(Duration::from_secs(60)),
    });
    assert_eq!(
        t.intents(RibInput::StaleTimerExpired { peer: ip(RR1) }),
        vec![]
    );
    assert_eq!(t.rib.counters().paths, 1);
}

#[test]
fn burst_of_100k_routes_gives_exactly_100k_upserts() {
    let mut t = T::new();
    t.peer_up(RR1);
    const N: u32 = 100_000;
    // Split into UPDATEs of 1000 NLRI, all in one batch.
    let updates: Vec<RibInput> = (0..N / 1000)
        .map(|u| RibInput::Update {
            peer: ip(RR1),
            update: from_vtep(
                B,
                100,
                (0..1000)
                    .map(|i| t2(B, 100, mac(u * 1000 + i), None))
                    .collect(),
                None,
            ),
        })
        .collect();
    let start = Instant::now();
    let out = t.rib.handle_batch(updates, t.now);
    eprintln!("100k routes: {:?}", start.elapsed());
    assert_eq!(out.intents.len(), N as usize);
    assert!(out
        .intents
        .iter()
        .all(|i| matches!(i, Intent::RemoteMacUpsert { vtep, .. } if *vtep == ip(B))));
    let distinct: std::collections::HashSet<_> = out.intents.iter().collect();
    assert_eq!(distinct.len(), N as usize);
    // Attributes are shared per UPDATE.
    let attrs: std::collections::HashSet<*const PathAttributes> = t
        .rib
        .routes()
        .filter(|r| r.peer.is_some())
        .map(|r| Arc::as_ptr(r.attrs))
        .collect();
    assert_eq!(attrs.len(), (N / 1000) as usize);
    // Session loss removes them all in one pass.
    let out = t.run(RibInput::PeerDown {
        peer: ip(RR1),
        graceful_restart: None,
    });
    assert_eq!(out.intents.len(), N as usize);
    assert!(out
        .intents
        .iter()
        .all(|i| matches!(i, Intent::RemoteMacRemove { .. })));
}

#[test]
fn vni_removal_removes_its_entries_only() {
    let mut t = T::new();
    t.run(RibInput::VniAdd(VniConfig::auto(
        vni(200),
        ASN,
        ROUTER_ID,
        2,
    )));
    t.peer_up(RR1);
    t.upd(
        RR1,
        from_vtep(
            B,
            100,
            vec![t3(B), t2(B, 100, mac(1), Some(host(10)))],
            None,
        ),
    );
    t.upd(
        RR1,
        from_vtep(B, 200, vec![t3v(B, 200), t2(B, 200, mac(2), None)], None),
    );
    t.run(RibInput::LocalMacAdd {
        vni: vni(100),
        mac: mac(7),
    });
    let out = t.run(RibInput::VniRemove(vni(100)));
    let mut got = out.intents.clone();
    got.sort_by_key(|i| format!("{i:?}"));
    let mut want = vec![
        flood_rm(100, B),
        mac_rm(100, mac(1)),
        Intent::NeighborRemove {
            vni: vni(100),
            ip: host(10),
        },
    ];
    want.sort_by_key(|i| format!("{i:?}"));
    assert_eq!(got, want);
    // Our type-3 and MAC route for VNI 100 are withdrawn.
    let mut w = withdrawn(&out);
    w.sort_by_key(|n| n.to_string());
    let rd100 = RouteDistinguisher::auto(ROUTER_ID, 1);
    assert_eq!(w.len(), 2);
    assert!(w.iter().all(|n| n.rd() == rd100));
    // VNI 200 untouched; the VNI-100 routes are no longer stored.
    assert_eq!(t.rib.vteps(vni(200)), vec![ip(B)]);
    assert_eq!(t.rib.counters().routes, 2);
    assert!(t.rib.macs(vni(100)).is_empty());
}

#[test]
fn flood_entries_follow_the_set_of_type3_paths() {
    let mut t = T::new();
    t.peer_up(RR1);
    // B advertises two type-3 routes (two RDs, e.g. before and after an RD
    // change) plus a MAC.
    let other = EvpnNlri::InclusiveMulticast(InclusiveMulticastRoute {
        rd: RouteDistinguisher::As2 {
            asn: 65000,
            number: 100,
        },
        eth_tag: EthernetTag(0),
        originator: ip(B),
    });
    assert_eq!(
        t.upd(
            RR1,
            from_vtep(B, 100, vec![t3(B), other, t2(B, 100, mac(1), None)], None)
        ),
        vec![flood_add(100, B), upsert(100, mac(1), B)]
    );
    assert_eq!(t.upd(RR1, withdraw(vec![t3(B)])), vec![]);
    // The MAC route does not keep the flood entry alive.
    assert_eq!(t.upd(RR1, withdraw(vec![other])), vec![flood_rm(100, B)]);
    // The flood VTEP is the PMSI tunnel endpoint, not the next hop.
    let mut u = from_vtep(C, 100, vec![t3(C)], None);
    if let Some(r) = u.mp_reach.as_mut() {
        r.next_hop = NextHop::Ip(ip(RR1));
    }
    u.attributes.pmsi_tunnel = Some(PmsiView::ingress_replication(vni(100), ip(C)));
    assert_eq!(t.upd(RR1, u), vec![flood_add(100, C)]);
    // A VNI with flooding configured elsewhere gets no flood entries and
    // no type-3 route of ours.
    let mut cfg = VniConfig::auto(vni(100), ASN, ROUTER_ID, 1);
    cfg.flood = FloodSource::None;
    let out = t.run(RibInput::VniAdd(cfg));
    assert_eq!(out.intents, vec![flood_rm(100, C)]);
    assert!(matches!(
        &withdrawn(&out)[..],
        [EvpnNlri::InclusiveMulticast(_)]
    ));
}

#[test]
fn mac_ip_route_gives_neighbor_and_mac_intents() {
    let mut t = T::new();
    t.peer_up(RR1);
    let m = mac(1);
    assert_eq!(
        t.upd(
            RR1,
            from_vtep(
                B,
                100,
                vec![t2(B, 100, m, None), t2(B, 100, m, Some(host(10)))],
                None
            )
        ),
        vec![
            upsert(100, m, B),
            Intent::NeighborUpsert {
                vni: vni(100),
                ip: host(10),
                mac: m
            }
        ]
    );
    // The MAC+IP route goes, the MAC route stays.
    assert_eq!(
        t.upd(RR1, withdraw(vec![t2(B, 100, m, Some(host(10)))])),
        vec![Intent::NeighborRemove {
            vni: vni(100),
            ip: host(10)
        }]
    );
}

#[test]
fn add_and_remove_in_one_batch_cancel() {
    let mut t = T::new();
    t.peer_up(RR1);
    let r = vec![t3(B), t2(B, 100, mac(1), None)];
    let out = t.rib.handle_batch(
        [
            RibInput::Update {
                peer: ip(RR1),
                update: from_vtep(B, 100, r.clone(), None),
            },
            RibInput::Update {
                peer: ip(RR1),
                update: withdraw(r.clone()),
            },
            RibInput::LocalMacAdd {
                vni: vni(100),
                mac: mac(5),
            },
            RibInput::LocalMacRemove {
                vni: vni(100),
                mac: mac(5),
            },
        ],
        t.now,
    );
    assert_eq!(out.intents, vec![]);
    assert!(out.outbound.is_empty());
    // Remove of something never added: nothing.
    assert_eq!(t.upd(RR1, withdraw(r)), vec![]);
    // Re-sending an unchanged route: nothing.
    t.upd(RR1, from_vtep(B, 100, vec![t2(B, 100, mac(1), None)], None));
    assert_eq!(
        t.upd(RR1, from_vtep(B, 100, vec![t2(B, 100, mac(1), None)], None)),
        vec![]
    );
}

#[test]
fn treat_as_withdraw_removes_the_peers_paths() {
    let mut t = T::new();
    t.peer_up(RR1);
    let r = vec![t2(B, 100, mac(1), None)];
    t.upd(RR1, from_vtep(B, 100, r.clone(), None));
    let mut u = from_vtep(B, 100, r, None);
    u.errors.push(AttrErrorReport {
        attr_type: 1,
        offset: 23,
        action: ErrorAction::TreatAsWithdraw,
        reason: AttrErrorKind::BadOrigin(7),
    });
    assert_eq!(t.upd(RR1, u), vec![mac_rm(100, mac(1))]);
    assert_eq!(t.rib.counters().treated_as_withdraw, 1);
}

#[test]
fn origination_on_peer_up_and_route_refresh() {
    let mut t = T::new();
    t.run(RibInput::LocalMacAdd {
        vni: vni(100),
        mac: mac(1),
    });
    t.run(RibInput::LocalNeighAdd {
        vni: vni(100),
        ip: host(10),
        mac: mac(1),
    });
    let out = t.peer_up(RR1);
    let [Outbound::Announce { to, routes }, Outbound::EndOfRib { to: eor }] = &out.outbound[..]
    else {
        panic!("{:?}", out.outbound)
    };
    assert_eq!((*to, *eor), (Some(ip(RR1)), ip(RR1)));
    let nlri: Vec<_> = routes.iter().map(|r| r.0).collect();
    assert_eq!(nlri.len(), 3);
    assert!(nlri.contains(&local_t2(mac(1), None)));
    assert!(nlri.contains(&local_t2(mac(1), Some(host(10)))));
    let (t3n, t3a, nh) = routes
        .iter()
        .find(|r| matches!(r.0, EvpnNlri::InclusiveMulticast(_)))
        .unwrap();
    assert_eq!(*nh, ip(LOCAL));
    let EvpnNlri::InclusiveMulticast(r3) = t3n else {
        panic!()
    };
    assert_eq!(r3.rd, RouteDistinguisher::auto(ROUTER_ID, 1));
    assert_eq!(r3.originator, ip(LOCAL));
    let p = PmsiView::new(t3a.pmsi_tunnel.as_ref().unwrap());
    assert!(p.is_ingress_replication());
    assert_eq!((p.vni(), p.endpoint), (vni(100), Some(ip(LOCAL))));
    assert_eq!(t3a.origin, Some(Origin::Igp));
    assert_eq!(t3a.local_pref, Some(100));
    assert_eq!(t3a.as_path.as_ref().map(|p| p.segments.len()), Some(0));
    assert!(t3a
        .ext_communities
        .contains(&RouteTarget::auto(ASN, vni(100)).into()));
    assert!(t3a
        .ext_communities
        .contains(&EvpnExtCommunity::Encapsulation(8).into()));
    // Type-2 attributes are shared between the MAC and MAC+IP routes.
    let t2attrs: Vec<_> = routes
        .iter()
        .filter(|r| matches!(r.0, EvpnNlri::MacIp(_)))
        .map(|r| Arc::as_ptr(&r.1))
        .collect();
    assert_eq!(t2attrs[0], t2attrs[1]);
    // Route refresh: everything again, no End-of-RIB.
    let out = t.run(RibInput::RouteRefresh { peer: ip(RR1) });
    assert!(
        matches!(&out.outbound[..], [Outbound::Announce { to: Some(p), routes }] if *p == ip(RR1) && routes.len() == 3)
    );
    // A new MAC goes to every established peer.
    let out = t.run(RibInput::LocalMacAdd {
        vni: vni(100),
        mac: mac(2),
    });
    assert!(
        matches!(&out.outbound[..], [Outbound::Announce { to: None, routes }] if routes.len() == 1)
    );
}

#[test]
fn local_neighbor_suppresses_remote_neighbor_entry() {
    let mut t = T::new();
    t.peer_up(RR1);
    t.run(RibInput::LocalNeighAdd {
        vni: vni(100),
        ip: host(10),
        mac: mac(7),
    });
    assert_eq!(
        t.upd(
            RR1,
            from_vtep(B, 100, vec![t2(B, 100, mac(1), Some(host(10)))], None)
        ),
        vec![upsert(100, mac(1), B)]
    );
    assert_eq!(
        t.intents(RibInput::LocalNeighRemove {
            vni: vni(100),
            ip: host(10)
        }),
        vec![Intent::NeighborUpsert {
            vni: vni(100),
            ip: host(10),
            mac: mac(1)
        }]
    );
}

#[test]
fn best_path_prefers_shorter_cluster_list_then_lower_peer() {
    let mut t = T::new();
    t.peer_up(RR1);
    t.peer_up(RR2);
    let r = vec![t2(B, 100, mac(1), None)];
    let mut long = attrs(100, B, None);
    long.cluster_list = vec![v4(200), v4(201)];
    t.upd(RR1, reach(r.clone(), ip(B), long));
    t.upd(RR2, reach(r.clone(), ip(B), attrs(100, B, None)));
    let best: Vec<_> = t
        .rib
        .routes()
        .filter(|r| r.best && r.peer.is_some())
        .map(|r| r.peer)
        .collect();
    assert_eq!(best, vec![Some(ip(RR2))]);
    // Equal: the lower peer address.
    t.upd(RR1, reach(r, ip(B), attrs(100, B, None)));
    let best: Vec<_> = t
        .rib
        .routes()
        .filter(|r| r.best && r.peer.is_some())
        .map(|r| r.peer)
        .collect();
    assert_eq!(best, vec![Some(ip(RR1))]);
}

fn rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Memory for 1M remote MACs, each from two route reflectors. Run with
/// `cargo test -p evpnd-evpn --release --test rib_scenarios million -- --ignored --nocapture`.
#[test]
#[ignore]
fn million_routes_memory() {
    let mut t = T::new();
    t.peer_up(RR1);
    t.peer_up(RR2);
    let before = rss_kib().unwrap_or(0);
    const N: u32 = 1_000_000;
    for rr in [RR1, RR2] {
        for u in 0..N / 1000 {
            let update = from_vtep(
                B,
                100,
                (0..1000)
                    .map(|i| t2(B, 100, mac(u * 1000 + i), None))
                    .collect(),
                None,
            );
            t.rib.handle(
                RibInput::Update {
                    peer: ip(rr),
                    update,
                },
                t.now,
            );
        }
    }
    let after = rss_kib().unwrap_or(0);
    eprintln!(
        "1M MACs x 2 paths: {} MiB RSS growth, {} bytes/route",
        (after - before) / 1024,
        (after - before) * 1024 / N as u64
    );
    assert_eq!(t.rib.counters().paths, 2 * N as u64);
}

#[test]
fn other_route_types_are_kept_and_shown_without_intents() {
    use evpnd_evpn::route::{EthernetAdRoute, EthernetSegmentRoute, IpPrefixRoute};
    let mut t = T::new();
    t.peer_up(RR1);
    let esi = Esi([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    let routes = vec![
        EvpnNlri::EthernetAd(EthernetAdRoute {
            rd: rd(B, 100),
            esi,
            eth_tag: EthernetTag(0),
            label: Label::new(100),
        }),
        EvpnNlri::EthernetSegment(EthernetSegmentRoute {
            rd: rd(B, 100),
            esi,
            originator: ip(B),
        }),
        EvpnNlri::IpPrefix(IpPrefixRoute {
            rd: rd(B, 100),
            esi: Esi::ZERO,
            eth_tag: EthernetTag(0),
            prefix: "10.10.0.0/16".parse().unwrap(),
            gateway: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            label: Label::new(5000),
        }),
    ];
    // Carried with an RT no VNI imports (e.g. an ES-import RT): still kept.
    let mut a = attrs(100, B, None);
    a.ext_communities = vec![RouteTarget::auto(ASN, vni(4242)).into()];
    assert_eq!(t.upd(RR1, reach(routes.clone(), ip(B), a)), vec![]);
    let mut shown: Vec<EvpnNlri> = t
        .rib
        .routes()
        .filter(|r| r.peer.is_some())
        .map(|r| r.nlri)
        .collect();
    shown.sort_by_key(|n| n.route_type());
    assert_eq!(shown, routes);
    let c = t.rib.counters();
    assert_eq!((c.no_vni[1], c.no_vni[4], c.no_vni[5]), (1, 1, 1));
    assert_eq!(c.not_imported, 0);
}

#[test]
fn per_vni_counters() {
    let mut t = T::new();
    t.peer_up(RR1);
    t.upd(
        RR1,
        from_vtep(
            B,
            100,
            vec![t3(B), t2(B, 100, mac(1), None), t2(B, 100, mac(2), None)],
            None,
        ),
    );
    let c = t.rib.counters();
    assert_eq!(c.per_vni[&vni(100)], [0, 0, 2, 1, 0, 0]);
    assert_eq!(c.paths_per_vni[&vni(100)], [0, 0, 2, 1, 0, 0]);
    assert_eq!((c.routes, c.paths, c.local_routes), (3, 3, 1));

    // The same routes reflected by a second RR: one more path each, the
    // number of routes with a best path unchanged.
    t.peer_up(RR2);
    t.upd(
        RR2,
        from_vtep(
            B,
            100,
            vec![t3(B), t2(B, 100, mac(1), None), t2(B, 100, mac(2), None)],
            None,
        ),
    );
    let c = t.rib.counters();
    assert_eq!(c.per_vni[&vni(100)], [0, 0, 2, 1, 0, 0]);
    assert_eq!(c.paths_per_vni[&vni(100)], [0, 0, 4, 2, 0, 0]);
    assert_eq!((c.routes, c.paths), (3, 6));
}

#[test]
fn vni_rd_change_reoriginates() {
    let mut t = T::new();
    t.peer_up(RR1);
    t.run(RibInput::LocalMacAdd {
        vni: vni(100),
        mac: mac(1),
    });
    let mut cfg = VniConfig::auto(vni(100), ASN, ROUTER_ID, 1);
    cfg.rd = RouteDistinguisher::As2 {
        asn: 65000,
        number: 100,
    };
    let out = t.run(RibInput::VniAdd(cfg.clone()));
    assert_eq!(out.intents, vec![]);
    let w = withdrawn(&out);
    let a = announced(&out);
    assert_eq!((w.len(), a.len()), (2, 2));
    assert!(w
        .iter()
        .all(|n| n.rd() == RouteDistinguisher::auto(ROUTER_ID, 1)));
    assert!(a.iter().all(|n| n.rd() == cfg.rd));
    // Import RTs unchanged: no route refresh request.
    assert!(!out
        .outbound
        .iter()
        .any(|o| matches!(o, Outbound::RouteRefreshRequest { .. })));
    // Same config again: nothing at all.
    assert_eq!(t.run(RibInput::VniAdd(cfg)), RibOutput::default());
}

#[test]
fn local_mac_in_unknown_vni_is_reported_not_advertised() {
    let mut t = T::new();
    t.peer_up(RR1);
    let out = t.run(RibInput::LocalMacAdd {
        vni: vni(555),
        mac: mac(1),
    });
    assert_eq!(out.events, vec![RibEvent::UnknownVni { vni: vni(555) }]);
    assert!(out.outbound.is_empty());
}

#[test]
fn ipv6_next_hop_with_link_local_uses_the_global_address() {
    let mut t = T::new();
    t.peer_up(RR1);
    let g: std::net::Ipv6Addr = "2001:db8::2".parse().unwrap();
    let mut u = from_vtep(B, 100, vec![t2(B, 100, mac(1), None)], None);
    if let Some(r) = u.mp_reach.as_mut() {
        r.next_hop = NextHop::Ipv6WithLinkLocal(g, "fe80::2".parse().unwrap());
    }
    assert_eq!(
        t.upd(RR1, u),
        vec![Intent::RemoteMacUpsert {
            vni: vni(100),
            mac: mac(1),
            vtep: IpAddr::V6(g)
        }]
    );
}

#[test]
fn clear_duplicate_unfreezes() {
    let mut t = T::with_dup(DupDetectConfig {
        enabled: true,
        max_moves: 1,
        window: Duration::from_secs(180),
        freeze: None,
    });
    t.peer_up(RR1);
    let m = mac(1);
    t.upd(RR1, from_vtep(B, 100, vec![t2(B, 100, m, None)], None));
    t.upd(
        RR1,
        from_vtep(
            C,
            100,
            vec![t2(C, 100, m, None)],
            Some(MacMobility::new(1, false)),
        ),
    );
    let out = t.run(RibInput::Update {
        peer: ip(RR1),
        update: from_vtep(
            D,
            100,
            vec![t2(D, 100, m, None)],
            Some(MacMobility::new(2, false)),
        ),
    });
    // The second move is applied, then the MAC freezes there.
    assert_eq!(out.intents, vec![upsert(100, m, D)]);
    assert!(out.events.contains(&RibEvent::DuplicateMacFrozen {
        vni: vni(100),
        mac: m,
        moves: 2
    }));
    assert_eq!(
        t.upd(
            RR1,
            from_vtep(
                C,
                100,
                vec![t2(C, 100, m, None)],
                Some(MacMobility::new(3, false))
            )
        ),
        vec![]
    );
    // Permanent freeze: Tick does nothing; the operator clears it.
    t.now += Duration::from_secs(3600);
    assert_eq!(t.intents(RibInput::Tick), vec![]);
    let out = t.run(RibInput::ClearDuplicate {
        vni: vni(100),
        mac: m,
    });
    assert_eq!(out.intents, vec![upsert(100, m, C)]);
}

#[test]
fn adding_a_vni_does_not_disturb_other_vnis() {
    // A MAC learned here but held remotely with a higher sequence: adding
    // an unrelated VNI must not re-run its mobility decision (no move
    // events, no advertisement flap, no intents).
    let mut t = T::new();
    t.peer_up(RR1);
    let m = mac(1);
    t.run(RibInput::LocalMacAdd {
        vni: vni(100),
        mac: m,
    });
    t.upd(
        RR1,
        from_vtep(
            B,
            100,
            vec![t3(B), t2(B, 100, m, None)],
            Some(MacMobility::new(1, false)),
        ),
    );
    for v in 2..10 {
        let out = t.run(RibInput::VniAdd(VniConfig::auto(
            vni(v * 100),
            ASN,
            ROUTER_ID,
            v as u16,
        )));
        assert_eq!(out.intents, vec![]);
        assert!(out.events.is_empty(), "{:?}", out.events);
        assert!(withdrawn(&out).is_empty());
        assert_eq!(announced(&out).len(), 1, "only the new VNI's type-3");
        let out = t.run(RibInput::VniRemove(vni(v * 100)));
        assert_eq!(out.intents, vec![]);
        assert!(out.events.is_empty(), "{:?}", out.events);
    }
    assert!(!t.rib.macs(vni(100))[0].frozen);
}

#[test]
fn same_sequence_local_vs_remote_lower_vtep_wins() {
    // RFC 7432 §15.1: equal sequence numbers, the lower VTEP IP wins. Our
    // VTEP is 10.0.0.1; a remote at 10.0.0.0 beats us, one at .2 does not.
    let mut t = T::new();
    t.peer_up(RR1);
    let m = mac(1);
    t.run(RibInput::LocalMacAdd {
        vni: vni(100),
        mac: m,
    });
    assert_eq!(
        t.upd(RR1, from_vtep(B, 100, vec![t2(B, 100, m, None)], None)),
        vec![]
    );
    let low = 0u8;
    let out = t.run(RibInput::Update {
        peer: ip(RR1),
        update: from_vtep(low, 100, vec![t2(low, 100, m, None)], None),
    });
    assert_eq!(out.intents, vec![upsert(100, m, low)]);
    assert_eq!(withdrawn(&out), vec![local_t2(m, None)]);
}
