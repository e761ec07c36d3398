//! FSM unit tests: every transition, timer and NOTIFICATION case.

use super::*;
use crate::message::{MpReach, MpUnreach, NextHop, RawNlri};
use std::net::IpAddr;

type F = Fsm<RawNlri>;
type A = Action<RawNlri>;

const LOCAL_ID: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const PEER_ID: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

fn cfg() -> FsmConfig {
    let mut c = FsmConfig::new(Asn(65000), LOCAL_ID);
    c.hold_time = 9;
    c.graceful_restart = Some(GracefulRestartConfig::default());
    c
}

fn peer_open() -> Open {
    Open {
        version: 4,
        my_as: 65000,
        hold_time: 90,
        bgp_id: PEER_ID,
        capabilities: vec![
            Capability::Multiprotocol(AfiSafi::L2VPN_EVPN),
            Capability::RouteRefresh,
            Capability::FourOctetAs(Asn(65000)),
            Capability::GracefulRestart(GracefulRestartCap {
                restarting: false,
                notification: false,
                restart_time: 120,
                afi_safis: vec![(AfiSafi::L2VPN_EVPN, true), (AfiSafi::IPV4_UNICAST, true)],
            }),
        ],
        other_params: vec![],
    }
}

fn notif_of(actions: &[A]) -> Option<(u8, u8, Bytes)> {
    actions.iter().find_map(|a| match a {
        Action::SendMessage(Message::Notification(n)) => Some((n.code, n.subcode, n.data.clone())),
        _ => None,
    })
}

fn has(actions: &[A], want: &A) -> bool {
    actions.contains(want)
}

fn down_of(actions: &[A]) -> Option<(DownReason, Option<PeerGrInfo>)> {
    actions.iter().find_map(|a| match a {
        Action::SessionDown {
            reason,
            graceful_restart,
        } => Some((reason.clone(), graceful_restart.clone())),
        _ => None,
    })
}

fn idle_hold(actions: &[A]) -> Option<Duration> {
    actions.iter().find_map(|a| match a {
        Action::StartTimer(TimerKind::IdleHold, d) => Some(*d),
        _ => None,
    })
}

fn open_sent(c: FsmConfig) -> F {
    let mut f = F::new(c);
    f.handle(Event::ManualStart);
    f.handle(Event::TcpConnectionAcked);
    assert_eq!(f.state(), State::OpenSent);
    f
}

fn open_confirm(c: FsmConfig) -> F {
    let mut f = open_sent(c);
    f.handle(Event::OpenReceived(peer_open()));
    assert_eq!(f.state(), State::OpenConfirm);
    f
}

fn established(c: FsmConfig) -> F {
    let mut f = open_confirm(c);
    f.handle(Event::KeepaliveReceived);
    assert_eq!(f.state(), State::Established);
    f
}

#[test]
fn idle_manual_start_connects() {
    let mut f = F::new(cfg());
    assert_eq!(f.state(), State::Idle);
    let a = f.handle(Event::ManualStart);
    assert_eq!(f.state(), State::Connect);
    assert!(has(&a, &Action::Connect));
    assert!(has(
        &a,
        &Action::StartTimer(TimerKind::ConnectRetry, Duration::from_secs(30))
    ));
    assert!(has(
        &a,
        &Action::StateChanged {
            from: State::Idle,
            to: State::Connect
        }
    ));
}

#[test]
fn idle_passive_start_goes_active_without_connect() {
    let mut c = cfg();
    c.passive = true;
    let mut f = F::new(c);
    let a = f.handle(Event::ManualStart);
    assert_eq!(f.state(), State::Active);
    assert!(!has(&a, &Action::Connect));
    // Active retry timer: passive stays Active and never connects.
    let a = f.handle(Event::TimerExpired(TimerKind::ConnectRetry));
    assert_eq!(f.state(), State::Active);
    assert!(!has(&a, &Action::Connect));
    // Inbound connection -> OpenSent.
    let a = f.handle(Event::TcpConnectionConfirmed);
    assert_eq!(f.state(), State::OpenSent);
    assert!(matches!(
        a.iter().find(|x| matches!(x, Action::SendMessage(_))),
        Some(Action::SendMessage(Message::Open(_)))
    ));
}

#[test]
fn idle_with_restart_pending_accepts_the_peers_connection() {
    let mut f = established(cfg());
    let a = f.handle(Event::TcpConnectionFails);
    assert!(idle_hold(&a).is_some());
    let a = f.handle(Event::TcpConnectionConfirmed);
    assert_eq!(f.state(), State::OpenSent);
    assert!(has(&a, &Action::StopTimer(TimerKind::IdleHold)));
    assert!(a
        .iter()
        .any(|x| matches!(x, Action::SendMessage(Message::Open(_)))));
    // After a manual stop it is refused.
    f.handle(Event::ManualStop(StopReason::AdminShutdown));
    let a = f.handle(Event::TcpConnectionConfirmed);
    assert_eq!(a, vec![Action::CloseConnection]);
    assert_eq!(f.state(), State::Idle);
}

#[test]
fn idle_refuses_connections_and_ignores_messages() {
    let mut f = F::new(cfg());
    let a = f.handle(Event::TcpConnectionConfirmed);
    assert_eq!(a, vec![Action::CloseConnection]);
    assert!(f.handle(Event::KeepaliveReceived).is_empty());
    assert!(f.handle(Event::TimerExpired(TimerKind::Hold)).is_empty());
    // No automatic start before a manual start.
    assert!(f.handle(Event::AutomaticStart).is_empty());
    assert_eq!(f.state(), State::Idle);
}

#[test]
fn connect_sends_open_on_connection() {
    let mut f = F::new(cfg());
    f.handle(Event::ManualStart);
    let a = f.handle(Event::TcpConnectionAcked);
    assert_eq!(f.state(), State::OpenSent);
    assert!(has(&a, &Action::StopTimer(TimerKind::ConnectRetry)));
    assert!(has(
        &a,
        &Action::StartTimer(TimerKind::Hold, OPEN_SENT_HOLD)
    ));
    let open = a
        .iter()
        .find_map(|x| match x {
            Action::SendMessage(Message::Open(o)) => Some(o.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(open.version, 4);
    assert_eq!(open.my_as, 65000);
    assert_eq!(open.hold_time, 9);
    assert_eq!(open.bgp_id, LOCAL_ID);
    assert!(open
        .capabilities
        .contains(&Capability::Multiprotocol(AfiSafi::L2VPN_EVPN)));
    assert!(open.capabilities.contains(&Capability::RouteRefresh));
    assert!(open
        .capabilities
        .contains(&Capability::FourOctetAs(Asn(65000))));
    assert!(open.capabilities.iter().any(|c| matches!(c, Capability::GracefulRestart(g) if g.restart_time == 120 && g.afi_safis == vec![(AfiSafi::L2VPN_EVPN, true)])));
}

/// The exact GR capability bytes on the wire (RFC 4724 §3), checked
/// against what FRR 8.4 parses: code 64, length 6, flags+time word
/// (R bit 0x8000, 12-bit time), then AFI 25, SAFI 70, F bit 0x80. An
/// FRR 8.4 route reflector reports this peer as "Remote GR Mode: Helper"
/// all the same, as it does an FRR VTEP with `bgp graceful-restart`: it
/// keeps NSF state only for SAFIs up to MPLS VPN, never for EVPN.
#[test]
fn gr_capability_exact_bytes() {
    let encoded = |restarting: bool| {
        let mut c = FsmConfig::new(Asn(65000), LOCAL_ID);
        c.graceful_restart = Some(GracefulRestartConfig {
            restart_time: 60,
            forwarding_state: true,
            restarting,
            helper_only: false,
        });
        let mut buf = bytes::BytesMut::new();
        crate::codec::encode::<RawNlri>(
            &Message::Open(c.open_message()),
            &crate::codec::CodecOptions::default(),
            &mut buf,
        );
        buf.to_vec()
    };
    let find = |msg: &[u8], cap: &[u8]| msg.windows(cap.len()).any(|w| w == cap);
    // Optional parameter 2 (capabilities), length 8, capability 64, length 6.
    let fresh = encoded(false);
    assert!(
        find(&fresh, &[2, 8, 64, 6, 0x00, 0x3c, 0x00, 0x19, 70, 0x80]),
        "{fresh:02x?}"
    );
    let restarted = encoded(true);
    assert!(
        find(&restarted, &[2, 8, 64, 6, 0x80, 0x3c, 0x00, 0x19, 70, 0x80]),
        "{restarted:02x?}"
    );
}

#[test]
fn helper_only_gr_capability_lists_no_afi_safi() {
    let mut c = FsmConfig::new(Asn(65000), LOCAL_ID);
    c.graceful_restart = Some(GracefulRestartConfig {
        restart_time: 0,
        forwarding_state: false,
        restarting: false,
        helper_only: true,
    });
    let o = c.open_message();
    assert!(o.capabilities.iter().any(|c| matches!(c,
        Capability::GracefulRestart(g) if g.afi_safis.is_empty() && !g.restarting)));
}

#[test]
fn open_uses_as_trans_for_wide_asn() {
    let c = FsmConfig::new(Asn(4_200_000_000), LOCAL_ID);
    let o = c.open_message();
    assert_eq!(o.my_as, 23456);
    assert_eq!(o.asn(), Asn(4_200_000_000));
}

#[test]
fn connect_retry_expiry_reconnects() {
    let mut f = F::new(cfg());
    f.handle(Event::ManualStart);
    let a = f.handle(Event::TimerExpired(TimerKind::ConnectRetry));
    assert_eq!(f.state(), State::Connect);
    assert_eq!(
        a,
        vec![
            Action::StartTimer(TimerKind::ConnectRetry, Duration::from_secs(30)),
            Action::CloseConnection,
            Action::Connect
        ]
    );
}

#[test]
fn connect_failure_backs_off_exponentially_to_cap() {
    let mut c = cfg();
    c.idle_hold_max = Duration::from_secs(8);
    let mut f = F::new(c);
    f.handle(Event::ManualStart);
    let mut seen = vec![];
    for _ in 0..6 {
        let a = f.handle(Event::TcpConnectionFails);
        assert_eq!(f.state(), State::Idle);
        assert!(down_of(&a).is_none(), "never Established, no SessionDown");
        seen.push(idle_hold(&a).unwrap().as_secs());
        let a = f.handle(Event::TimerExpired(TimerKind::IdleHold));
        assert_eq!(f.state(), State::Connect);
        assert!(has(&a, &Action::Connect));
    }
    assert_eq!(seen, vec![1, 2, 4, 8, 8, 8]);
}

#[test]
fn stable_session_resets_backoff() {
    let mut f = established(cfg());
    // Flap a few times.
    for _ in 0..3 {
        f.handle(Event::TcpConnectionFails);
        f.handle(Event::TimerExpired(TimerKind::IdleHold));
        f.handle(Event::TcpConnectionAcked);
        f.handle(Event::OpenReceived(peer_open()));
        let a = f.handle(Event::KeepaliveReceived);
        assert!(has(
            &a,
            &Action::StartTimer(TimerKind::Stable, Duration::from_secs(60))
        ));
    }
    assert_eq!(f.backoff(), Duration::from_secs(8));
    // Flap again before stable: damping grows.
    let a = f.handle(Event::TcpConnectionFails);
    assert_eq!(idle_hold(&a), Some(Duration::from_secs(8)));
    f.handle(Event::TimerExpired(TimerKind::IdleHold));
    f.handle(Event::TcpConnectionAcked);
    f.handle(Event::OpenReceived(peer_open()));
    f.handle(Event::KeepaliveReceived);
    // Now stays up long enough.
    f.handle(Event::TimerExpired(TimerKind::Stable));
    assert_eq!(f.backoff(), Duration::from_secs(1));
    let a = f.handle(Event::TcpConnectionFails);
    assert_eq!(idle_hold(&a), Some(Duration::from_secs(1)));
    assert!(has(&a, &Action::StopTimer(TimerKind::Stable)));
}

#[test]
fn open_sent_valid_open_negotiates() {
    let mut f = open_sent(cfg());
    let a = f.handle(Event::OpenReceived(peer_open()));
    assert_eq!(f.state(), State::OpenConfirm);
    assert!(has(&a, &Action::SendMessage(Message::Keepalive)));
    // min(9, 90) = 9; keepalive 3.
    assert!(has(
        &a,
        &Action::StartTimer(TimerKind::Hold, Duration::from_secs(9))
    ));
    assert!(has(
        &a,
        &Action::StartTimer(TimerKind::Keepalive, Duration::from_secs(3))
    ));
    let n = f.negotiated().unwrap();
    assert_eq!(n.peer_asn, Asn(65000));
    assert_eq!(n.peer_router_id, PEER_ID);
    assert_eq!(n.hold_time, 9);
    assert_eq!(n.keepalive, 3);
    assert!(n.four_octet_as);
    assert!(n.route_refresh);
    assert!(!n.extended_message);
    assert_eq!(n.afi_safis, vec![AfiSafi::L2VPN_EVPN]);
    let gr = n.peer_graceful_restart.clone().unwrap();
    assert_eq!(gr.restart_time, Duration::from_secs(120));
    // IPv4 unicast is in the peer's GR cap but not negotiated.
    assert_eq!(gr.afi_safis, vec![(AfiSafi::L2VPN_EVPN, true)]);
    assert_eq!(f.peer_router_id(), Some(PEER_ID));
}

#[test]
fn hold_time_zero_means_no_timers() {
    let mut f = open_sent(cfg());
    let mut o = peer_open();
    o.hold_time = 0;
    let a = f.handle(Event::OpenReceived(o));
    assert_eq!(f.state(), State::OpenConfirm);
    assert!(has(&a, &Action::StopTimer(TimerKind::Hold)));
    assert!(!a.iter().any(|x| matches!(
        x,
        Action::StartTimer(TimerKind::Keepalive | TimerKind::Hold, _)
    )));
    assert_eq!(f.negotiated().unwrap().keepalive, 0);
    let a = f.handle(Event::KeepaliveReceived);
    assert!(!a
        .iter()
        .any(|x| matches!(x, Action::StartTimer(TimerKind::Hold, _))));
    // Sending an UPDATE must not start a keepalive timer either.
    let a = f.handle(Event::SendUpdate(Update::default()));
    assert_eq!(a.len(), 1);
}

#[test]
fn hold_time_smaller_on_peer_side() {
    let mut c = cfg();
    c.hold_time = 180;
    let mut f = open_sent(c);
    let mut o = peer_open();
    o.hold_time = 3;
    let a = f.handle(Event::OpenReceived(o));
    assert!(has(
        &a,
        &Action::StartTimer(TimerKind::Hold, Duration::from_secs(3))
    ));
    assert!(has(
        &a,
        &Action::StartTimer(TimerKind::Keepalive, Duration::from_secs(1))
    ));
}

fn open_error(mutate: impl FnOnce(&mut Open), c: FsmConfig) -> (Vec<A>, F) {
    let mut f = open_sent(c);
    let mut o = peer_open();
    mutate(&mut o);
    let a = f.handle(Event::OpenReceived(o));
    assert_eq!(f.state(), State::Idle);
    assert!(has(&a, &Action::CloseConnection));
    (a, f)
}

#[test]
fn open_bad_version() {
    let (a, _) = open_error(|o| o.version = 3, cfg());
    assert_eq!(notif_of(&a), Some((2, 1, Bytes::from_static(&[0, 4]))));
}

#[test]
fn open_bad_peer_as() {
    let (a, _) = open_error(
        |o| {
            o.my_as = 65001;
            o.capabilities
                .retain(|c| !matches!(c, Capability::FourOctetAs(_)));
        },
        cfg(),
    );
    assert_eq!(notif_of(&a), Some((2, 2, Bytes::new())));
    // The 4-octet capability is what counts.
    let (a, _) = open_error(
        |o| {
            o.capabilities
                .retain(|c| !matches!(c, Capability::FourOctetAs(_)));
            o.capabilities.push(Capability::FourOctetAs(Asn(65001)));
        },
        cfg(),
    );
    assert_eq!(notif_of(&a), Some((2, 2, Bytes::new())));
}

#[test]
fn ebgp_expected_asn() {
    let mut c = cfg();
    c.remote_asn = Asn(4_200_000_001);
    let mut f = open_sent(c);
    let mut o = peer_open();
    o.my_as = 23456;
    o.capabilities
        .retain(|c| !matches!(c, Capability::FourOctetAs(_)));
    o.capabilities
        .push(Capability::FourOctetAs(Asn(4_200_000_001)));
    // eBGP may reuse our router id (RFC 6286).
    o.bgp_id = LOCAL_ID;
    f.handle(Event::OpenReceived(o));
    assert_eq!(f.state(), State::OpenConfirm);
    assert_eq!(f.negotiated().unwrap().peer_asn, Asn(4_200_000_001));
}

#[test]
fn open_bad_bgp_id() {
    let (a, _) = open_error(|o| o.bgp_id = Ipv4Addr::UNSPECIFIED, cfg());
    assert_eq!(notif_of(&a), Some((2, 3, Bytes::new())));
    let (a, _) = open_error(|o| o.bgp_id = LOCAL_ID, cfg());
    assert_eq!(notif_of(&a), Some((2, 3, Bytes::new())));
}

#[test]
fn open_unacceptable_hold_time() {
    for h in [1, 2] {
        let (a, _) = open_error(|o| o.hold_time = h, cfg());
        assert_eq!(notif_of(&a), Some((2, 6, Bytes::new())));
    }
}

#[test]
fn open_unsupported_optional_parameter() {
    let (a, _) = open_error(
        |o| o.other_params.push((9, Bytes::from_static(b"x"))),
        cfg(),
    );
    assert_eq!(notif_of(&a), Some((2, 4, Bytes::new())));
}

#[test]
fn open_no_common_afi_safi() {
    let (a, _) = open_error(
        |o| {
            o.capabilities
                .retain(|c| !matches!(c, Capability::Multiprotocol(_)));
            o.capabilities
                .push(Capability::Multiprotocol(AfiSafi::IPV4_UNICAST));
        },
        cfg(),
    );
    // Unsupported Capability naming our MP capability (25/70).
    assert_eq!(
        notif_of(&a),
        Some((2, 7, Bytes::from_static(&[1, 4, 0, 25, 0, 70])))
    );
}

#[test]
fn open_without_mp_means_ipv4_unicast() {
    let mut c = cfg();
    c.afi_safis = vec![AfiSafi::L2VPN_EVPN, AfiSafi::IPV4_UNICAST];
    let mut f = open_sent(c);
    let mut o = peer_open();
    o.capabilities
        .retain(|c| !matches!(c, Capability::Multiprotocol(_)));
    f.handle(Event::OpenReceived(o));
    assert_eq!(
        f.negotiated().unwrap().afi_safis,
        vec![AfiSafi::IPV4_UNICAST]
    );
}

#[test]
fn negotiates_extended_message_only_if_both() {
    let mut c = cfg();
    c.extended_message = true;
    let mut f = open_sent(c.clone());
    f.handle(Event::OpenReceived(peer_open()));
    assert!(!f.negotiated().unwrap().extended_message);
    let mut f = open_sent(c);
    let mut o = peer_open();
    o.capabilities.push(Capability::ExtendedMessage);
    f.handle(Event::OpenReceived(o));
    assert!(f.negotiated().unwrap().extended_message);
}

#[test]
fn no_gr_info_without_local_gr() {
    let mut c = cfg();
    c.graceful_restart = None;
    let f = open_confirm(c);
    assert!(f.negotiated().unwrap().peer_graceful_restart.is_none());
    assert!(!f
        .config()
        .open_message()
        .has(|c| matches!(c, Capability::GracefulRestart(_))));
}

#[test]
fn open_sent_unexpected_messages_are_fsm_errors() {
    for ev in [
        Event::KeepaliveReceived,
        Event::UpdateReceived(Update::default()),
        Event::RouteRefreshReceived(RouteRefresh {
            afi_safi: AfiSafi::L2VPN_EVPN,
            subtype: 0,
        }),
    ] {
        let mut f = open_sent(cfg());
        let a = f.handle(ev);
        assert_eq!(notif_of(&a), Some((5, 1, Bytes::new())));
        assert_eq!(f.state(), State::Idle);
        assert!(has(&a, &Action::CloseConnection));
    }
}

#[test]
fn open_confirm_unexpected_messages_are_fsm_errors() {
    for ev in [
        Event::OpenReceived(peer_open()),
        Event::UpdateReceived(Update::default()),
        Event::RouteRefreshReceived(RouteRefresh {
            afi_safi: AfiSafi::L2VPN_EVPN,
            subtype: 0,
        }),
    ] {
        let mut f = open_confirm(cfg());
        let a = f.handle(ev);
        assert_eq!(notif_of(&a), Some((5, 2, Bytes::new())));
        assert_eq!(f.state(), State::Idle);
    }
}

#[test]
fn established_open_is_fsm_error() {
    let mut f = established(cfg());
    let a = f.handle(Event::OpenReceived(peer_open()));
    assert_eq!(notif_of(&a), Some((5, 3, Bytes::new())));
    let (reason, gr) = down_of(&a).unwrap();
    assert_eq!(
        reason,
        DownReason::NotificationSent {
            code: 5,
            subcode: 3
        }
    );
    assert!(gr.is_none(), "a NOTIFICATION ends GR eligibility");
}

#[test]
fn hold_timer_expiry_in_every_connected_state() {
    for mk in [open_sent as fn(FsmConfig) -> F, open_confirm, established] {
        let mut f = mk(cfg());
        let was = f.state();
        let a = f.handle(Event::TimerExpired(TimerKind::Hold));
        assert_eq!(notif_of(&a), Some((4, 0, Bytes::new())));
        assert_eq!(f.state(), State::Idle);
        if was == State::Established {
            let (reason, gr) = down_of(&a).unwrap();
            assert_eq!(reason, DownReason::HoldTimerExpired);
            assert!(gr.is_some(), "hold expiry keeps GR routes");
        } else {
            assert!(down_of(&a).is_none());
        }
    }
}

#[test]
fn decode_errors_send_their_notification() {
    let cases = [
        (DecodeError::BadMarker, (1, 1, Bytes::new())),
        (
            DecodeError::BadLength { len: 5000 },
            (1, 2, Bytes::from_static(&[0x13, 0x88])),
        ),
        (
            DecodeError::BadType { msg_type: 9 },
            (1, 3, Bytes::from_static(&[9])),
        ),
        (
            DecodeError::Update {
                offset: 23,
                subcode: 1,
                data: vec![],
            },
            (3, 1, Bytes::new()),
        ),
    ];
    for mk in [open_sent as fn(FsmConfig) -> F, open_confirm, established] {
        for (e, want) in cases.clone() {
            let mut f = mk(cfg());
            let a = f.handle(Event::DecodeError(e));
            assert_eq!(notif_of(&a), Some(want));
            assert_eq!(f.state(), State::Idle);
            assert!(has(&a, &Action::CloseConnection));
        }
    }
}

#[test]
fn notification_received_goes_idle() {
    for mk in [open_sent as fn(FsmConfig) -> F, open_confirm, established] {
        let mut f = mk(cfg());
        let was = f.state();
        let a = f.handle(Event::NotificationReceived(Notification {
            code: 6,
            subcode: 2,
            data: Bytes::new(),
        }));
        assert_eq!(f.state(), State::Idle);
        assert!(notif_of(&a).is_none(), "never answer a NOTIFICATION");
        assert!(has(&a, &Action::CloseConnection));
        assert!(idle_hold(&a).is_some());
        if was == State::Established {
            let (reason, gr) = down_of(&a).unwrap();
            assert!(matches!(
                reason,
                DownReason::NotificationReceived {
                    code: 6,
                    subcode: 2,
                    ..
                }
            ));
            assert!(gr.is_none());
        }
    }
}

#[test]
fn tcp_failure_established_keeps_gr() {
    let mut f = established(cfg());
    let a = f.handle(Event::TcpConnectionFails);
    let (reason, gr) = down_of(&a).unwrap();
    assert_eq!(reason, DownReason::ConnectionLost);
    assert_eq!(gr.unwrap().afi_safis, vec![(AfiSafi::L2VPN_EVPN, true)]);
    assert_eq!(f.state(), State::Idle);
    assert!(f.negotiated().is_none());
}

#[test]
fn tcp_failure_in_open_states() {
    for mk in [open_sent as fn(FsmConfig) -> F, open_confirm] {
        let mut f = mk(cfg());
        let a = f.handle(Event::TcpConnectionFails);
        assert_eq!(f.state(), State::Idle);
        assert!(notif_of(&a).is_none());
        assert!(down_of(&a).is_none());
        assert!(idle_hold(&a).is_some());
    }
}

#[test]
fn open_confirm_keepalive_establishes() {
    let mut f = open_confirm(cfg());
    let a = f.handle(Event::KeepaliveReceived);
    assert_eq!(f.state(), State::Established);
    assert!(has(
        &a,
        &Action::StartTimer(TimerKind::Hold, Duration::from_secs(9))
    ));
    assert!(a
        .iter()
        .any(|x| matches!(x, Action::SessionEstablished(n) if n.peer_router_id == PEER_ID)));
    // Keepalive timer in OpenConfirm sends KEEPALIVE.
    let mut f = open_confirm(cfg());
    let a = f.handle(Event::TimerExpired(TimerKind::Keepalive));
    assert_eq!(
        a,
        vec![
            Action::SendMessage(Message::Keepalive),
            Action::StartTimer(TimerKind::Keepalive, Duration::from_secs(3))
        ]
    );
}

#[test]
fn established_keepalive_timer_and_hold_reset() {
    let mut f = established(cfg());
    let a = f.handle(Event::TimerExpired(TimerKind::Keepalive));
    assert_eq!(
        a,
        vec![
            Action::SendMessage(Message::Keepalive),
            Action::StartTimer(TimerKind::Keepalive, Duration::from_secs(3))
        ]
    );
    let a = f.handle(Event::KeepaliveReceived);
    assert_eq!(
        a,
        vec![Action::StartTimer(TimerKind::Hold, Duration::from_secs(9))]
    );
}

fn evpn_update() -> Update<RawNlri> {
    Update {
        mp_reach: Some(MpReach {
            afi_safi: AfiSafi::L2VPN_EVPN,
            next_hop: NextHop::Ip(IpAddr::V4(PEER_ID)),
            nlri: vec![RawNlri(Bytes::from_static(&[3, 1, 0]))],
        }),
        ..Update::default()
    }
}

#[test]
fn established_delivers_updates_and_resets_hold() {
    let mut f = established(cfg());
    let u = evpn_update();
    let a = f.handle(Event::UpdateReceived(u.clone()));
    assert_eq!(
        a,
        vec![
            Action::StartTimer(TimerKind::Hold, Duration::from_secs(9)),
            Action::Deliver(u)
        ]
    );
}

#[test]
fn end_of_rib_is_its_own_action() {
    let mut f = established(cfg());
    let a = f.handle(Event::UpdateReceived(Update::end_of_rib(
        AfiSafi::L2VPN_EVPN,
    )));
    assert!(has(&a, &Action::EndOfRib(AfiSafi::L2VPN_EVPN)));
    assert!(!a.iter().any(|x| matches!(x, Action::Deliver(_))));
    // IPv4 EoR (empty UPDATE) when IPv4 is not negotiated: nothing.
    let a = f.handle(Event::UpdateReceived(Update::default()));
    assert_eq!(a.len(), 1);
}

#[test]
fn unnegotiated_afi_safi_is_ignored() {
    let mut f = established(cfg());
    let mut u = evpn_update();
    if let Some(r) = &mut u.mp_reach {
        r.afi_safi = AfiSafi::new(2, 1);
    }
    u.nlri.push("10.0.0.0/8".parse().unwrap());
    let a = f.handle(Event::UpdateReceived(u));
    assert!(!a.iter().any(|x| matches!(x, Action::Deliver(_))));
    // Mixed: the negotiated part still comes through.
    let mut u = evpn_update();
    u.mp_unreach = Some(MpUnreach {
        afi_safi: AfiSafi::new(2, 1),
        withdrawn: vec![RawNlri(Bytes::from_static(&[1]))],
    });
    let a = f.handle(Event::UpdateReceived(u));
    let d = a
        .iter()
        .find_map(|x| match x {
            Action::Deliver(u) => Some(u.clone()),
            _ => None,
        })
        .unwrap();
    assert!(d.mp_unreach.is_none());
    assert!(d.mp_reach.is_some());
}

#[test]
fn route_refresh_received() {
    let mut f = established(cfg());
    let a = f.handle(Event::RouteRefreshReceived(RouteRefresh {
        afi_safi: AfiSafi::L2VPN_EVPN,
        subtype: 0,
    }));
    assert!(has(&a, &Action::RouteRefreshRequested(AfiSafi::L2VPN_EVPN)));
    let a = f.handle(Event::RouteRefreshReceived(RouteRefresh {
        afi_safi: AfiSafi::IPV4_UNICAST,
        subtype: 0,
    }));
    assert!(!a
        .iter()
        .any(|x| matches!(x, Action::RouteRefreshRequested(_))));
    let a = f.handle(Event::RouteRefreshReceived(RouteRefresh {
        afi_safi: AfiSafi::L2VPN_EVPN,
        subtype: 1,
    }));
    assert!(!a
        .iter()
        .any(|x| matches!(x, Action::RouteRefreshRequested(_))));
}

#[test]
fn send_update_and_route_refresh() {
    let mut f = established(cfg());
    let u = evpn_update();
    let a = f.handle(Event::SendUpdate(u.clone()));
    assert_eq!(
        a,
        vec![
            Action::SendMessage(Message::Update(u.clone())),
            Action::StartTimer(TimerKind::Keepalive, Duration::from_secs(3))
        ]
    );
    let a = f.handle(Event::SendRouteRefresh(AfiSafi::L2VPN_EVPN));
    assert!(has(
        &a,
        &Action::SendMessage(Message::RouteRefresh(RouteRefresh {
            afi_safi: AfiSafi::L2VPN_EVPN,
            subtype: 0
        }))
    ));
    assert!(f
        .handle(Event::SendRouteRefresh(AfiSafi::IPV4_UNICAST))
        .is_empty());
    // Not Established: dropped.
    let mut f = open_confirm(cfg());
    assert!(f.handle(Event::SendUpdate(u)).is_empty());
}

#[test]
fn route_refresh_not_sent_if_peer_lacks_capability() {
    let mut f = open_sent(cfg());
    let mut o = peer_open();
    o.capabilities
        .retain(|c| !matches!(c, Capability::RouteRefresh));
    f.handle(Event::OpenReceived(o));
    f.handle(Event::KeepaliveReceived);
    assert!(!f.negotiated().unwrap().route_refresh);
    assert!(f
        .handle(Event::SendRouteRefresh(AfiSafi::L2VPN_EVPN))
        .is_empty());
}

#[test]
fn manual_stop_cease_subcodes() {
    for (reason, sub) in [
        (StopReason::AdminShutdown, 2),
        (StopReason::PeerDeconfigured, 3),
        (StopReason::AdminReset, 4),
        (StopReason::ConnectionRejected, 5),
        (StopReason::CollisionResolution, 7),
    ] {
        let mut f = established(cfg());
        let a = f.handle(Event::ManualStop(reason));
        assert_eq!(notif_of(&a), Some((6, sub, Bytes::new())));
        assert_eq!(f.state(), State::Idle);
        let (r, gr) = down_of(&a).unwrap();
        assert_eq!(r, DownReason::Stopped(reason));
        assert!(gr.is_none());
        // Only an admin reset restarts by itself, after the minimum delay.
        if reason == StopReason::AdminReset {
            assert_eq!(idle_hold(&a), Some(Duration::from_secs(1)));
            assert!(f.auto_start());
        } else {
            assert_eq!(idle_hold(&a), None);
            assert!(!f.auto_start());
            assert!(f
                .handle(Event::TimerExpired(TimerKind::IdleHold))
                .is_empty());
        }
    }
}

#[test]
fn graceful_restart_stop_closes_without_notification() {
    let mut f = established(cfg());
    let a = f.handle(Event::ManualStop(StopReason::GracefulRestart));
    assert!(notif_of(&a).is_none(), "{a:?}");
    assert!(has(&a, &Action::CloseConnection));
    assert_eq!(f.state(), State::Idle);
    assert!(!f.auto_start());
}

#[test]
fn manual_stop_before_open_sends_nothing() {
    let mut f = F::new(cfg());
    f.handle(Event::ManualStart);
    let a = f.handle(Event::ManualStop(StopReason::AdminShutdown));
    assert!(notif_of(&a).is_none());
    assert!(has(&a, &Action::CloseConnection));
    assert_eq!(f.state(), State::Idle);
    // In Idle: no close, stops a pending restart.
    let a = f.handle(Event::ManualStop(StopReason::AdminShutdown));
    assert!(!has(&a, &Action::CloseConnection));
    assert!(has(&a, &Action::StopTimer(TimerKind::IdleHold)));
    // Cease in OpenSent too.
    let mut f = open_sent(cfg());
    let a = f.handle(Event::ManualStop(StopReason::AdminShutdown));
    assert_eq!(notif_of(&a), Some((6, 2, Bytes::new())));
}

#[test]
fn manual_start_while_running_is_harmless() {
    let mut f = established(cfg());
    assert!(f.handle(Event::ManualStart).is_empty());
    assert_eq!(f.state(), State::Established);
}

#[test]
fn stray_messages_in_connect_go_idle() {
    let mut f = F::new(cfg());
    f.handle(Event::ManualStart);
    let a = f.handle(Event::KeepaliveReceived);
    assert_eq!(f.state(), State::Idle);
    assert!(has(&a, &Action::CloseConnection));
}

#[test]
fn fork_inbound_is_active_and_shares_backoff() {
    let mut f = F::new(cfg());
    f.handle(Event::ManualStart);
    f.handle(Event::TcpConnectionFails);
    f.handle(Event::TimerExpired(TimerKind::IdleHold));
    f.handle(Event::TcpConnectionAcked);
    let mut g = f.fork_inbound();
    assert_eq!(g.state(), State::Active);
    assert_eq!(g.backoff(), f.backoff());
    let a = g.handle(Event::TcpConnectionConfirmed);
    assert_eq!(g.state(), State::OpenSent);
    assert!(a
        .iter()
        .any(|x| matches!(x, Action::SendMessage(Message::Open(_)))));
}

#[test]
fn collision_decision() {
    let lo = Ipv4Addr::new(1, 1, 1, 1);
    let hi = Ipv4Addr::new(2, 2, 2, 2);
    // Higher local id keeps the connection it initiated.
    assert_eq!(resolve_collision(hi, Asn(1), lo, Asn(1)), Keep::Outbound);
    assert_eq!(resolve_collision(lo, Asn(1), hi, Asn(1)), Keep::Inbound);
    // Numeric, not lexical, comparison of the identifiers.
    assert_eq!(
        resolve_collision(
            Ipv4Addr::new(10, 0, 0, 9),
            Asn(1),
            Ipv4Addr::new(9, 255, 255, 255),
            Asn(1)
        ),
        Keep::Outbound
    );
    // Equal ids (eBGP, RFC 6286 §2.3): the larger AS wins.
    assert_eq!(resolve_collision(lo, Asn(2), lo, Asn(1)), Keep::Outbound);
    assert_eq!(resolve_collision(lo, Asn(1), lo, Asn(2)), Keep::Inbound);
}

#[test]
fn down_reason_gr_applicability() {
    assert!(DownReason::ConnectionLost.graceful_restart_applies());
    assert!(DownReason::HoldTimerExpired.graceful_restart_applies());
    assert!(DownReason::PeerRestarted.graceful_restart_applies());
    assert!(!DownReason::Stopped(StopReason::AdminReset).graceful_restart_applies());
    assert!(!DownReason::NotificationSent {
        code: 3,
        subcode: 1
    }
    .graceful_restart_applies());
}

#[test]
fn helper_only_peer_gr_keeps_nothing() {
    let mut f = open_sent(cfg());
    let mut o = peer_open();
    for c in &mut o.capabilities {
        if let Capability::GracefulRestart(g) = c {
            g.afi_safis.clear();
            g.restarting = true;
        }
    }
    f.handle(Event::OpenReceived(o));
    f.handle(Event::KeepaliveReceived);
    let gr = f
        .negotiated()
        .unwrap()
        .peer_graceful_restart
        .clone()
        .unwrap();
    assert!(gr.restarting && gr.afi_safis.is_empty());
    let a = f.handle(Event::TcpConnectionFails);
    assert_eq!(down_of(&a), Some((DownReason::ConnectionLost, None)));
}
