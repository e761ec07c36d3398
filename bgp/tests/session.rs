//! Driver tests over real loopback TCP: two Speakers, and raw sockets
//! playing a misbehaving peer with hand-built bytes.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use evpnd_bgp::fsm::{DownReason, GracefulRestartConfig, State, StopReason};
use evpnd_bgp::session::{ClearKind, PeerConfig, PeerError, Speaker, SpeakerConfig, SpeakerEvent};
use evpnd_bgp::{AfiSafi, AsPath, Asn, MpReach, NextHop, Origin, PathAttributes, RawNlri, Update};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};

type Ev = SpeakerEvent<RawNlri>;
const WAIT: Duration = Duration::from_secs(15);
const ASN: Asn = Asn(65000);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn init_log() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
}

async fn speaker(addr: &str, id: Ipv4Addr) -> (Speaker<RawNlri>, mpsc::Receiver<Ev>) {
    init_log();
    let (tx, rx) = mpsc::channel(64);
    let cfg = SpeakerConfig {
        local_asn: ASN,
        router_id: id,
        listen_addr: Some(SocketAddr::new(ip(addr), 0)),
    };
    (Speaker::start(cfg, tx).await.unwrap(), rx)
}

fn peer_cfg(addr: &str, port: u16, local: &str) -> PeerConfig {
    let mut p = PeerConfig::new(ip(addr), ASN);
    p.port = port;
    p.local_address = Some(ip(local));
    p.hold_time = 3;
    p.connect_retry = Duration::from_secs(2);
    p.graceful_restart = Some(GracefulRestartConfig::default());
    p
}

/// Wait (bounded) for the first event matching `pred`, skipping others.
async fn wait_for(rx: &mut mpsc::Receiver<Ev>, what: &str, pred: impl Fn(&Ev) -> bool) -> Ev {
    let deadline = Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(ev)) if pred(&ev) => return ev,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("event channel closed while waiting for {what}"),
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

fn is_established(ev: &Ev) -> bool {
    matches!(ev, SpeakerEvent::Established { .. })
}

/// Two speakers peered on 127.0.0.A / 127.0.0.B, both Established.
async fn pair(
    a: &str,
    b: &str,
) -> (
    (Speaker<RawNlri>, mpsc::Receiver<Ev>),
    (Speaker<RawNlri>, mpsc::Receiver<Ev>),
) {
    let (sa, mut ra) = speaker(a, Ipv4Addr::new(10, 0, 0, 1)).await;
    let (sb, mut rb) = speaker(b, Ipv4Addr::new(10, 0, 0, 2)).await;
    let pa = sa.listen_addr().unwrap().port();
    let pb = sb.listen_addr().unwrap().port();
    sa.add_peer(peer_cfg(b, pb, a)).await.unwrap();
    sb.add_peer(peer_cfg(a, pa, b)).await.unwrap();
    wait_for(&mut ra, "A established", is_established).await;
    wait_for(&mut rb, "B established", is_established).await;
    ((sa, ra), (sb, rb))
}

fn evpn_update() -> Update<RawNlri> {
    Update {
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::default()),
            local_pref: Some(100),
            ..PathAttributes::default()
        },
        mp_reach: Some(MpReach {
            afi_safi: AfiSafi::L2VPN_EVPN,
            next_hop: NextHop::Ip(ip("192.0.2.1")),
            // Type 3 IMET: RD, eth tag, IP len 32, originating IP.
            nlri: vec![RawNlri(Bytes::from_static(&[
                3, 17, 0, 1, 192, 0, 2, 1, 0, 100, 0, 0, 0, 0, 32, 192, 0, 2, 1,
            ]))],
        }),
        ..Update::default()
    }
}

#[tokio::test]
async fn two_speakers_establish_and_exchange_updates() {
    let ((sa, mut ra), (sb, mut rb)) = pair("127.0.1.1", "127.0.1.2").await;
    let b_addr = ip("127.0.1.2");
    let a_addr = ip("127.0.1.1");

    let st = sa.peer(b_addr).await.unwrap();
    assert_eq!(st.state, State::Established);
    let neg = st.negotiated.unwrap();
    assert_eq!(neg.hold_time, 3);
    assert_eq!(neg.keepalive, 1);
    assert_eq!(neg.afi_safis, vec![AfiSafi::L2VPN_EVPN]);
    assert_eq!(neg.peer_router_id, Ipv4Addr::new(10, 0, 0, 2));
    assert!(neg.peer_graceful_restart.is_some());

    let u = evpn_update();
    sa.send(
        b_addr,
        vec![u.clone(), Update::end_of_rib(AfiSafi::L2VPN_EVPN)],
    )
    .await
    .unwrap();
    let got = wait_for(&mut rb, "UPDATE", |e| {
        matches!(e, SpeakerEvent::Update { .. })
    })
    .await;
    match got {
        SpeakerEvent::Update { peer, update } => {
            assert_eq!(peer, a_addr);
            assert_eq!(update.mp_reach, u.mp_reach);
            assert_eq!(update.attributes.origin, Some(Origin::Igp));
            assert_eq!(update.attributes.local_pref, Some(100));
        }
        _ => unreachable!(),
    }
    let eor = wait_for(&mut rb, "EoR", |e| {
        matches!(e, SpeakerEvent::EndOfRib { .. })
    })
    .await;
    assert_eq!(
        eor,
        SpeakerEvent::EndOfRib {
            peer: a_addr,
            afi_safi: AfiSafi::L2VPN_EVPN
        }
    );
    let st = sb.peer(a_addr).await.unwrap();
    assert_eq!(st.updates_in, 2);
    assert_eq!(st.prefixes_received, 1);

    // Soft clear: B asks A for a refresh.
    sb.clear(a_addr, ClearKind::Soft).await.unwrap();
    let rr = wait_for(&mut ra, "ROUTE-REFRESH", |e| {
        matches!(e, SpeakerEvent::RouteRefresh { .. })
    })
    .await;
    assert_eq!(
        rr,
        SpeakerEvent::RouteRefresh {
            peer: b_addr,
            afi_safi: AfiSafi::L2VPN_EVPN
        }
    );

    // Hard clear: Cease / Administrative Reset on both ends, then back up.
    sa.clear(b_addr, ClearKind::Hard).await.unwrap();
    let down = wait_for(&mut ra, "A down", |e| {
        matches!(e, SpeakerEvent::Down { .. })
    })
    .await;
    assert!(matches!(
        down,
        SpeakerEvent::Down {
            reason: DownReason::Stopped(StopReason::AdminReset),
            graceful_restart: None,
            ..
        }
    ));
    let down = wait_for(&mut rb, "B down", |e| {
        matches!(e, SpeakerEvent::Down { .. })
    })
    .await;
    assert!(matches!(
        down,
        SpeakerEvent::Down {
            reason: DownReason::NotificationReceived {
                code: 6,
                subcode: 4,
                ..
            },
            graceful_restart: None,
            ..
        }
    ));
    wait_for(&mut ra, "A re-established", is_established).await;
    wait_for(&mut rb, "B re-established", is_established).await;

    // Removing the peer sends Cease / Peer De-configured.
    sa.remove_peer(b_addr).await.unwrap();
    let down = wait_for(&mut rb, "B down after remove", |e| {
        matches!(e, SpeakerEvent::Down { .. })
    })
    .await;
    assert!(matches!(
        down,
        SpeakerEvent::Down {
            reason: DownReason::NotificationReceived {
                code: 6,
                subcode: 3,
                ..
            },
            ..
        }
    ));
    assert!(sa.peers().await.is_empty());
    sa.shutdown().await;
    sb.shutdown().await;
}

#[tokio::test]
async fn keepalives_keep_the_session_past_the_hold_time() {
    let ((sa, mut ra), (sb, mut rb)) = pair("127.0.2.1", "127.0.2.2").await;
    let b_addr = ip("127.0.2.2");
    let before = sa.peer(b_addr).await.unwrap().messages_in;
    // Hold time is 3 s: stay up for 3 hold times.
    let quiet = timeout(Duration::from_secs(9), async {
        loop {
            tokio::select! {
                Some(ev) = ra.recv() => if let SpeakerEvent::Down { .. } = ev { return ev },
                Some(ev) = rb.recv() => if let SpeakerEvent::Down { .. } = ev { return ev },
            }
        }
    })
    .await;
    assert!(quiet.is_err(), "session went down: {quiet:?}");
    let st = sa.peer(b_addr).await.unwrap();
    assert_eq!(st.state, State::Established);
    // Keepalive every second.
    assert!(
        st.messages_in >= before + 6,
        "only {} keepalives",
        st.messages_in - before
    );
    sa.shutdown().await;
    sb.shutdown().await;
}

// ---- raw peer helpers: hand-built wire bytes ----

fn msg(ty: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![0xff; 16];
    v.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    v.push(ty);
    v.extend_from_slice(body);
    v
}

fn open_bytes(asn: u16, hold: u16, id: Ipv4Addr) -> Vec<u8> {
    open_bytes_gr(asn, hold, id, None)
}

/// OPEN with, if `gr_restarting` is set, a GR capability (restart time 120,
/// EVPN with the forwarding bit, R bit as given).
fn open_bytes_gr(asn: u16, hold: u16, id: Ipv4Addr, gr_restarting: Option<bool>) -> Vec<u8> {
    let [ah, al] = asn.to_be_bytes();
    // MP L2VPN EVPN; route refresh; 4-octet AS.
    let mut caps: Vec<u8> = vec![1, 4, 0, 25, 0, 70, 2, 0, 65, 4, 0, 0, ah, al];
    if let Some(r) = gr_restarting {
        let flags = if r { 0x80 } else { 0 };
        caps.extend_from_slice(&[64, 6, flags, 120, 0, 25, 70, 0x80]);
    }
    let mut body = vec![4];
    body.extend_from_slice(&asn.to_be_bytes());
    body.extend_from_slice(&hold.to_be_bytes());
    body.extend_from_slice(&id.octets());
    body.push((caps.len() + 2) as u8);
    body.push(2);
    body.push(caps.len() as u8);
    body.extend_from_slice(&caps);
    msg(1, &body)
}

fn keepalive() -> Vec<u8> {
    msg(4, &[])
}

/// Read one message: (type, body). None on EOF.
async fn read_msg(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut hdr = [0u8; 19];
    timeout(WAIT, s.read_exact(&mut hdr))
        .await
        .expect("read timed out")
        .ok()?;
    assert_eq!(&hdr[..16], &[0xff; 16], "bad marker from the speaker");
    let len = u16::from_be_bytes([hdr[16], hdr[17]]) as usize;
    let mut body = vec![0u8; len - 19];
    timeout(WAIT, s.read_exact(&mut body))
        .await
        .expect("read timed out")
        .ok()?;
    Some((hdr[18], body))
}

/// Read until a NOTIFICATION; returns (code, subcode, data). Then expect EOF.
async fn expect_notification_then_eof(s: &mut TcpStream) -> (u8, u8, Vec<u8>) {
    loop {
        match read_msg(s).await {
            Some((3, body)) => {
                let n = (body[0], body[1], body[2..].to_vec());
                let mut rest = Vec::new();
                let r = timeout(WAIT, s.read_to_end(&mut rest))
                    .await
                    .expect("no EOF after NOTIFICATION");
                assert!(
                    r.is_ok() && rest.is_empty(),
                    "data after NOTIFICATION: {rest:?}"
                );
                return n;
            }
            Some(_) => continue,
            None => panic!("connection closed without NOTIFICATION"),
        }
    }
}

async fn connect_from(local: &str, to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(ip(local), 0)).unwrap();
    s.connect(to).await.unwrap()
}

/// A passive speaker on `addr` with a raw peer at `peer`.
async fn passive_speaker(
    addr: &str,
    peer: &str,
) -> (Speaker<RawNlri>, mpsc::Receiver<Ev>, SocketAddr) {
    let (s, r) = speaker(addr, Ipv4Addr::new(10, 0, 0, 1)).await;
    let mut p = peer_cfg(peer, 179, addr);
    p.passive = true;
    s.add_peer(p).await.unwrap();
    let l = s.listen_addr().unwrap();
    (s, r, l)
}

#[tokio::test]
async fn hold_timer_expiry_when_the_peer_goes_silent() {
    let (s, mut r, l) = passive_speaker("127.0.3.1", "127.0.3.2").await;
    let mut raw = connect_from("127.0.3.2", l).await;
    raw.write_all(&open_bytes(65000, 3, Ipv4Addr::new(10, 0, 0, 2)))
        .await
        .unwrap();
    let (ty, body) = read_msg(&mut raw).await.unwrap();
    assert_eq!(ty, 1, "speaker sends OPEN first");
    assert_eq!(&body[3..5], &[0, 3], "our configured hold time");
    raw.write_all(&keepalive()).await.unwrap();
    let info = wait_for(&mut r, "established", is_established).await;
    let t0 = Instant::now();
    if let SpeakerEvent::Established { info, .. } = info {
        assert_eq!(info.hold_time, 3);
    }
    // Now say nothing; the speaker keeps sending keepalives, then 4/0.
    assert_eq!(expect_notification_then_eof(&mut raw).await, (4, 0, vec![]));
    let down = wait_for(&mut r, "down", |e| matches!(e, SpeakerEvent::Down { .. })).await;
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(2500) && waited < Duration::from_secs(6),
        "{waited:?}"
    );
    match down {
        SpeakerEvent::Down {
            reason,
            graceful_restart,
            ..
        } => {
            assert_eq!(reason, DownReason::HoldTimerExpired);
            // The raw peer did not announce GR.
            assert!(graceful_restart.is_none());
        }
        _ => unreachable!(),
    }
    let st = s.peer(ip("127.0.3.2")).await.unwrap();
    assert_eq!(
        st.last_error,
        Some(PeerError::Session(DownReason::HoldTimerExpired))
    );
    s.shutdown().await;
}

#[tokio::test]
async fn connection_from_unconfigured_address_is_refused() {
    let (s, _r, l) = passive_speaker("127.0.4.1", "127.0.4.2").await;
    let mut raw = connect_from("127.0.4.3", l).await;
    let mut buf = Vec::new();
    let n = timeout(WAIT, raw.read_to_end(&mut buf))
        .await
        .expect("not closed");
    // Closed without a word (no OPEN).
    assert!(n.is_err() || buf.is_empty(), "got {buf:?}");
    s.shutdown().await;
}

async fn malformed(local: &str, peer: &str, bytes: Vec<u8>) -> (u8, u8, Vec<u8>) {
    let (s, _r, l) = passive_speaker(local, peer).await;
    let mut raw = connect_from(peer, l).await;
    raw.write_all(&bytes).await.unwrap();
    let n = expect_notification_then_eof(&mut raw).await;
    s.shutdown().await;
    n
}

#[tokio::test]
async fn malformed_header_gets_the_right_notification() {
    let mut bad_marker = msg(4, &[]);
    bad_marker[3] = 0;
    assert_eq!(
        malformed("127.0.5.1", "127.0.5.2", bad_marker).await,
        (1, 1, vec![])
    );
    let mut bad_len = msg(4, &[]);
    bad_len[16..18].copy_from_slice(&5000u16.to_be_bytes());
    assert_eq!(
        malformed("127.0.5.3", "127.0.5.4", bad_len).await,
        (1, 2, vec![0x13, 0x88])
    );
    assert_eq!(
        malformed("127.0.5.5", "127.0.5.6", msg(9, &[])).await,
        (1, 3, vec![9])
    );
    // A KEEPALIVE before the OPEN: FSM error in OpenSent (RFC 6608).
    assert_eq!(
        malformed("127.0.5.7", "127.0.5.8", keepalive()).await,
        (5, 1, vec![])
    );
    // Wrong AS: Bad Peer AS.
    assert_eq!(
        malformed(
            "127.0.5.9",
            "127.0.5.10",
            open_bytes(65001, 3, Ipv4Addr::new(10, 0, 0, 2))
        )
        .await,
        (2, 2, vec![])
    );
}

/// §6.8 with a raw peer holding both connections. Returns (the connection
/// the speaker made, the one the raw peer made), after the raw peer sent its
/// OPEN (with `raw_id`) on the inbound one.
async fn collision(
    local: &str,
    peer: &str,
    raw_id: Ipv4Addr,
) -> (Speaker<RawNlri>, mpsc::Receiver<Ev>, TcpStream, TcpStream) {
    let listener = TcpListener::bind(SocketAddr::new(ip(peer), 0))
        .await
        .unwrap();
    let (s, r) = speaker(local, Ipv4Addr::new(10, 0, 0, 100)).await;
    s.add_peer(peer_cfg(peer, listener.local_addr().unwrap().port(), local))
        .await
        .unwrap();
    let (mut out_conn, _) = timeout(WAIT, listener.accept()).await.unwrap().unwrap();
    assert_eq!(read_msg(&mut out_conn).await.unwrap().0, 1);
    // Speaker is in OpenSent on its own connection; now we connect too.
    let mut in_conn = connect_from(peer, s.listen_addr().unwrap()).await;
    assert_eq!(read_msg(&mut in_conn).await.unwrap().0, 1);
    in_conn
        .write_all(&open_bytes(65000, 3, raw_id))
        .await
        .unwrap();
    (s, r, out_conn, in_conn)
}

#[tokio::test]
async fn collision_higher_remote_id_keeps_the_remote_connection() {
    let (s, mut r, mut out_conn, mut in_conn) =
        collision("127.0.6.1", "127.0.6.2", Ipv4Addr::new(10, 0, 0, 200)).await;
    // Our id (10.0.0.100) is lower: the connection we made is closed.
    assert_eq!(
        expect_notification_then_eof(&mut out_conn).await,
        (6, 7, vec![])
    );
    assert_eq!(read_msg(&mut in_conn).await.unwrap().0, 4);
    in_conn.write_all(&keepalive()).await.unwrap();
    wait_for(&mut r, "established", is_established).await;
    s.shutdown().await;
    assert_eq!(
        expect_notification_then_eof(&mut in_conn).await,
        (6, 2, vec![])
    );
}

#[tokio::test]
async fn collision_lower_remote_id_keeps_our_connection() {
    let (s, mut r, mut out_conn, mut in_conn) =
        collision("127.0.7.1", "127.0.7.2", Ipv4Addr::new(10, 0, 0, 50)).await;
    assert_eq!(
        expect_notification_then_eof(&mut in_conn).await,
        (6, 7, vec![])
    );
    out_conn
        .write_all(&open_bytes(65000, 3, Ipv4Addr::new(10, 0, 0, 50)))
        .await
        .unwrap();
    out_conn.write_all(&keepalive()).await.unwrap();
    assert_eq!(read_msg(&mut out_conn).await.unwrap().0, 4);
    wait_for(&mut r, "established", is_established).await;
    s.shutdown().await;
}

#[tokio::test]
async fn md5_protected_session() {
    let (sa, mut ra) = speaker("127.0.8.1", Ipv4Addr::new(10, 0, 0, 1)).await;
    let (sb, mut rb) = speaker("127.0.8.2", Ipv4Addr::new(10, 0, 0, 2)).await;
    let pa = sa.listen_addr().unwrap().port();
    let pb = sb.listen_addr().unwrap().port();
    let mut ca = peer_cfg("127.0.8.2", pb, "127.0.8.1");
    ca.password = Some("s3cret".into());
    let mut cb = peer_cfg("127.0.8.1", pa, "127.0.8.2");
    cb.password = Some("s3cret".into());
    sa.add_peer(ca).await.unwrap();
    sb.add_peer(cb).await.unwrap();
    wait_for(&mut ra, "A established", is_established).await;
    wait_for(&mut rb, "B established", is_established).await;
    // A socket without the key cannot even complete the handshake: the
    // listener drops its unsigned SYN.
    let raw = TcpSocket::new_v4().unwrap();
    raw.bind(SocketAddr::new(ip("127.0.8.2"), 0)).unwrap();
    let r = timeout(
        Duration::from_secs(1),
        raw.connect(SocketAddr::new(ip("127.0.8.1"), pa)),
    )
    .await;
    assert!(
        r.is_err(),
        "unsigned connection must not be accepted: {r:?}"
    );
    sa.shutdown().await;
    sb.shutdown().await;
}

#[tokio::test]
async fn gr_peer_reconnecting_while_established_replaces_the_session() {
    let (s, mut r, l) = passive_speaker("127.0.9.1", "127.0.9.2").await;
    let id = Ipv4Addr::new(10, 0, 0, 2);
    let mut c1 = connect_from("127.0.9.2", l).await;
    c1.write_all(&open_bytes_gr(65000, 30, id, Some(false)))
        .await
        .unwrap();
    c1.write_all(&keepalive()).await.unwrap();
    wait_for(&mut r, "established", is_established).await;
    // The peer restarted: new connection, OPEN with the R bit.
    let mut c2 = connect_from("127.0.9.2", l).await;
    assert_eq!(read_msg(&mut c2).await.unwrap().0, 1);
    c2.write_all(&open_bytes_gr(65000, 30, id, Some(true)))
        .await
        .unwrap();
    let down = wait_for(&mut r, "down", |e| matches!(e, SpeakerEvent::Down { .. })).await;
    match down {
        SpeakerEvent::Down {
            reason,
            graceful_restart,
            ..
        } => {
            assert_eq!(reason, DownReason::PeerRestarted);
            let gr = graceful_restart.expect("GR info for the RIB");
            assert_eq!(gr.afi_safis, vec![(AfiSafi::L2VPN_EVPN, true)]);
            assert_eq!(gr.restart_time, Duration::from_secs(120));
        }
        _ => unreachable!(),
    }
    // The old connection is closed without a NOTIFICATION.
    let mut rest = Vec::new();
    timeout(WAIT, c1.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(
        !rest
            .windows(19)
            .any(|w| w[..16] == [0xff; 16] && w[18] == 3),
        "NOTIFICATION on the old connection"
    );
    // The new one carries on.
    assert_eq!(read_msg(&mut c2).await.unwrap().0, 4);
    c2.write_all(&keepalive()).await.unwrap();
    wait_for(&mut r, "re-established", is_established).await;
    assert_eq!(s.peer(ip("127.0.9.2")).await.unwrap().established_count, 2);
    s.shutdown().await;
}

#[tokio::test]
async fn non_gr_peer_second_connection_while_established_is_closed() {
    let (s, mut r, l) = passive_speaker("127.0.10.1", "127.0.10.2").await;
    let id = Ipv4Addr::new(10, 0, 0, 2);
    let mut c1 = connect_from("127.0.10.2", l).await;
    c1.write_all(&open_bytes(65000, 30, id)).await.unwrap();
    c1.write_all(&keepalive()).await.unwrap();
    wait_for(&mut r, "established", is_established).await;
    let mut c2 = connect_from("127.0.10.2", l).await;
    c2.write_all(&open_bytes(65000, 30, id)).await.unwrap();
    assert_eq!(expect_notification_then_eof(&mut c2).await, (6, 7, vec![]));
    let st = s.peer(ip("127.0.10.2")).await.unwrap();
    assert_eq!(st.state, State::Established);
    assert_eq!(st.established_count, 1);
    s.shutdown().await;
    assert_eq!(expect_notification_then_eof(&mut c1).await, (6, 2, vec![]));
}

fn numbered_update(i: u32) -> Update<RawNlri> {
    let mut u = evpn_update();
    if let Some(r) = &mut u.mp_reach {
        // Type 3 with the number in the ethernet tag.
        let mut n = vec![3u8, 17, 0, 1, 192, 0, 2, 1, 0, 1];
        n.extend_from_slice(&i.to_be_bytes());
        n.extend_from_slice(&[32, 192, 0, 2, 1]);
        r.nlri = vec![RawNlri(Bytes::from(n))];
    }
    u
}

#[tokio::test]
async fn slow_consumer_slows_reading_but_loses_nothing() {
    const N: u32 = 3000;
    let (sa, mut ra) = speaker("127.0.11.1", Ipv4Addr::new(10, 0, 0, 1)).await;
    // B's daemon takes one event at a time, and not for a while.
    let (tx, mut rb) = mpsc::channel(1);
    let sb = Speaker::<RawNlri>::start(
        SpeakerConfig {
            local_asn: ASN,
            router_id: Ipv4Addr::new(10, 0, 0, 2),
            listen_addr: Some(SocketAddr::new(ip("127.0.11.2"), 0)),
        },
        tx,
    )
    .await
    .unwrap();
    let pa = sa.listen_addr().unwrap().port();
    let pb = sb.listen_addr().unwrap().port();
    sa.add_peer(peer_cfg("127.0.11.2", pb, "127.0.11.1"))
        .await
        .unwrap();
    sb.add_peer(peer_cfg("127.0.11.1", pa, "127.0.11.2"))
        .await
        .unwrap();
    wait_for(&mut ra, "A established", is_established).await;
    wait_for(&mut rb, "B established", is_established).await;
    let b = ip("127.0.11.2");
    let sender = sa.clone();
    let send = tokio::spawn(async move {
        let all: Vec<u32> = (0..N).collect();
        for chunk in all.chunks(100) {
            let batch = chunk.iter().map(|i| numbered_update(*i)).collect();
            sender.send(b, batch).await.unwrap();
        }
    });
    // Do not read for two hold times: B must stop reading, and neither
    // side may drop the session.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let st_b = sb.peer(ip("127.0.11.1")).await.unwrap();
    assert_eq!(st_b.state, State::Established);
    assert!(
        st_b.updates_in < N as u64,
        "B read everything: {}",
        st_b.updates_in
    );
    assert_eq!(sa.peer(b).await.unwrap().state, State::Established);
    // Now consume: all of them, in order.
    let mut next = 0u32;
    while next < N {
        let ev = wait_for(&mut rb, "update", |e| {
            matches!(e, SpeakerEvent::Update { .. } | SpeakerEvent::Down { .. })
        })
        .await;
        match ev {
            SpeakerEvent::Update { update, .. } => {
                let want = numbered_update(next);
                assert_eq!(update.mp_reach, want.mp_reach, "out of order at {next}");
                next += 1;
            }
            other => panic!("session went down: {other:?}"),
        }
    }
    send.await.unwrap();
    sa.shutdown().await;
    sb.shutdown().await;
}

#[tokio::test]
async fn dropping_the_speaker_stops_everything() {
    let (s, _r, l) = passive_speaker("127.0.12.1", "127.0.12.2").await;
    let mut c = connect_from("127.0.12.2", l).await;
    c.write_all(&open_bytes(65000, 30, Ipv4Addr::new(10, 0, 0, 2)))
        .await
        .unwrap();
    c.write_all(&keepalive()).await.unwrap();
    assert_eq!(read_msg(&mut c).await.unwrap().0, 1);
    drop(s);
    assert_eq!(expect_notification_then_eof(&mut c).await, (6, 2, vec![]));
    // The listener is gone too.
    let deadline = Instant::now() + WAIT;
    loop {
        let sock = TcpSocket::new_v4().unwrap();
        sock.bind(SocketAddr::new(ip("127.0.12.2"), 0)).unwrap();
        if sock.connect(l).await.is_err() {
            break;
        }
        assert!(Instant::now() < deadline, "listener still accepting");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn unreachable_peer_is_retried_with_backoff() {
    // A port nobody listens on: connection refused, retried 1 s, 2 s, ...
    let port = {
        let l = std::net::TcpListener::bind("127.0.13.2:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (s, mut r) = speaker("127.0.13.1", Ipv4Addr::new(10, 0, 0, 1)).await;
    s.add_peer(peer_cfg("127.0.13.2", port, "127.0.13.1"))
        .await
        .unwrap();
    let t0 = Instant::now();
    let mut connects = 0;
    while connects < 3 {
        let ev = wait_for(&mut r, "Connect", |e| {
            matches!(
                e,
                SpeakerEvent::StateChanged {
                    state: State::Connect,
                    ..
                }
            )
        })
        .await;
        assert!(matches!(ev, SpeakerEvent::StateChanged { .. }));
        connects += 1;
    }
    // Attempts at 0, ~1 s, ~1 s + 2 s (jitter 0.75..1): at least 2.25 s.
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(2200), "no backoff: {took:?}");
    let st = s.peer(ip("127.0.13.2")).await.unwrap();
    assert_eq!(
        st.last_error,
        Some(PeerError::Connect(std::io::ErrorKind::ConnectionRefused))
    );
    assert_eq!(st.established_count, 0);
    s.shutdown().await;
}
