//! evpnd's BGP speaker against real peers: FRR 8.4 bgpd as route reflector
//! (keepalives, hold timer, reconnect) and a raw BGP peer written here that
//! sends malformed input (RFC 7606 treat-as-withdraw, RFC 4271 §6.1 header
//! errors).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use evpnd::testbed::fabric::SPINE_IP;
use evpnd::testbed::{
    self, bridge_fdb, cleanup_prefix, frr, links, wait_for, wait_until, Evpnd, EvpndConfig,
    FabricBuilder, HostKind, Netns, Poll, RrKind,
};
use serde_json::Value;

const EVPND: &str = env!("CARGO_BIN_EXE_evpnd");
const TIMEOUT: Duration = Duration::from_secs(60);
/// Negotiated hold time (FRR `timers bgp 3 9`, evpnd `hold_time = 9`).
const HOLD: Duration = Duration::from_secs(9);
/// Slack for polling (100 ms), evpnctl round trips and timer granularity.
const MARGIN: Duration = Duration::from_millis(1500);

fn frr_present() -> bool {
    if !testbed::can_run() {
        return false;
    }
    assert!(
        frr::frr_installed(),
        "FRR is not installed: run .ci/run or apt-get install frr"
    );
    true
}

fn u64_at(v: &Value, path: &[&str]) -> u64 {
    let mut cur = v;
    for k in path {
        cur = &cur[*k];
    }
    cur.as_u64()
        .unwrap_or_else(|| panic!("no number at {path:?} in {v}"))
}

fn str_at<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string `{key}` in {v}"))
}

/// FRR RR (timers 3 9) with evpnd as its client: the session comes up,
/// stays up across keepalives, goes down by hold timer when bgpd freezes,
/// goes down when bgpd dies, and comes back each time.
#[test]
fn frr_rr_session_keepalive_hold_timer_reconnect() {
    if !frr_present() {
        return;
    }
    cleanup_prefix("itbka", false).unwrap();
    let mut fabric = FabricBuilder::new("itbka")
        .host(HostKind::Evpnd)
        .rr(RrKind::Frr)
        .timers(3, 9)
        .vms_per_host(0)
        .evpnd_binary(EVPND)
        .build()
        .unwrap();
    let vtep = fabric.hosts[0].vtep_ip;
    fabric.wait_sessions(TIMEOUT).unwrap();
    let rr = fabric.rr_frr.as_mut().unwrap();
    let evpnd = fabric.hosts[0].evpnd.as_ref().unwrap();

    // Both sides agree on the timers.
    let f0 = rr.bgp_neighbor_json(vtep).unwrap().expect("RR knows evpnd");
    assert_eq!(str_at(&f0, "bgpState"), "Established");
    assert_eq!(u64_at(&f0, &["bgpTimerHoldTimeMsecs"]), 9000, "{f0}");
    assert_eq!(
        u64_at(&f0, &["bgpTimerKeepAliveIntervalMsecs"]),
        3000,
        "{f0}"
    );
    let e0 = evpnd
        .neighbor_json(SPINE_IP)
        .unwrap()
        .expect("evpnd lists the RR");
    assert_eq!(e0["hold_time_secs"], 9, "{e0}");
    assert_eq!(e0["router_id"], SPINE_IP.to_string(), "{e0}");

    // Stays up for three keepalive intervals: FRR's count of keepalives from
    // evpnd rises by 3 while neither side's session resets.
    let ka0 = u64_at(&f0, &["messageStats", "keepalivesRecv"]);
    let conn0 = u64_at(&f0, &["connectionsEstablished"]);
    let epoch0 = u64_at(&f0, &["bgpTimerUpEstablishedEpoch"]);
    let mut last_uptime = u64_at(&e0, &["uptime_secs"]);
    let mut last_up_ms = u64_at(&f0, &["bgpTimerUpMsec"]);
    let in0 = u64_at(&e0, &["messages_in"]);
    let start = Instant::now();
    let ka_end = wait_for(
        Duration::from_secs(20),
        "3 more keepalives from evpnd at FRR",
        || {
            let f = rr.bgp_neighbor_json(vtep)?.expect("RR still knows evpnd");
            assert_eq!(str_at(&f, "bgpState"), "Established", "FRR session reset");
            assert_eq!(u64_at(&f, &["connectionsEstablished"]), conn0, "{f}");
            // FRR computes the epoch as now - uptime: it wobbles by 1 s.
            let epoch = u64_at(&f, &["bgpTimerUpEstablishedEpoch"]);
            assert!(epoch.abs_diff(epoch0) <= 1, "FRR session restarted: {f}");
            let up_ms = u64_at(&f, &["bgpTimerUpMsec"]);
            assert!(up_ms >= last_up_ms, "FRR uptime went back: {f}");
            last_up_ms = up_ms;
            let e = evpnd.neighbor_json(SPINE_IP)?.expect("evpnd lists the RR");
            assert_eq!(str_at(&e, "state"), "established", "evpnd session reset");
            let up = u64_at(&e, &["uptime_secs"]);
            assert!(
                up >= last_uptime,
                "evpnd uptime went back {last_uptime} -> {up}"
            );
            last_uptime = up;
            let ka = u64_at(&f, &["messageStats", "keepalivesRecv"]);
            Ok(if ka >= ka0 + 3 {
                Poll::Ready(ka)
            } else {
                Poll::NotYet(format!("keepalivesRecv {ka} (from {ka0})"))
            })
        },
    )
    .unwrap();
    let took = start.elapsed();
    // Three intervals of 3 s: at least two full intervals passed, and evpnd
    // does not send keepalives faster than every 3 s (RFC 4271 §10: hold/3).
    assert!(took >= Duration::from_secs(5), "3 keepalives in {took:?}");
    let allowed = took.as_secs() / 3 + 2;
    assert!(
        ka_end - ka0 <= allowed,
        "{} keepalives in {took:?}",
        ka_end - ka0
    );
    let e1 = evpnd.neighbor_json(SPINE_IP).unwrap().unwrap();
    assert!(
        u64_at(&e1, &["messages_in"]) >= in0 + 2,
        "evpnd received no keepalives from FRR: {e1}"
    );
    assert!(u64_at(&e1, &["uptime_secs"]) + 1 >= took.as_secs());

    // bgpd frozen (SIGSTOP): the TCP connection stays open but silent, so
    // only evpnd's hold timer can end the session (RFC 4271 §6.5).
    rr.signal_bgpd(libc::SIGSTOP);
    let frozen = Instant::now();
    let res = wait_until(
        HOLD + MARGIN * 2,
        "evpnd to drop the silent session",
        || Ok(!evpnd.is_established(SPINE_IP)?),
    );
    let down_after = frozen.elapsed();
    rr.signal_bgpd(libc::SIGCONT);
    res.unwrap();
    eprintln!("hold timer: session down {down_after:?} after bgpd froze");
    // The last keepalive came at most one interval (3 s) before the freeze.
    assert!(
        down_after <= HOLD + MARGIN,
        "hold timer took {down_after:?}"
    );
    assert!(
        down_after >= Duration::from_secs(5),
        "session dropped after {down_after:?}: not by hold timer"
    );
    let e = evpnd.neighbor_json(SPINE_IP).unwrap().unwrap();
    assert!(
        e["last_error"]
            .as_str()
            .is_some_and(|s| s.contains("hold timer expired")),
        "{e}"
    );
    // evpnd reconnects once bgpd runs again (FRR drops the old session when
    // it reads evpnd's Hold Timer Expired NOTIFICATION).
    evpnd.wait_established(&[SPINE_IP], TIMEOUT).unwrap();
    rr.wait_established(vtep, TIMEOUT).unwrap();

    // bgpd killed: evpnd notices within the hold time (here the kernel
    // closes bgpd's socket, so it is the transport that reports it).
    rr.kill_bgpd().unwrap();
    let killed = Instant::now();
    wait_until(HOLD + MARGIN * 2, "evpnd to notice bgpd is gone", || {
        Ok(!evpnd.is_established(SPINE_IP)?)
    })
    .unwrap();
    let down_after = killed.elapsed();
    eprintln!("session down {down_after:?} after bgpd was killed");
    assert!(
        down_after <= HOLD + MARGIN,
        "session stayed up {down_after:?} after bgpd died"
    );

    // FRR back: evpnd reconnects by itself (the RR only listens).
    rr.start_bgpd().unwrap();
    evpnd.wait_established(&[SPINE_IP], TIMEOUT).unwrap();
    rr.wait_established(vtep, TIMEOUT).unwrap();
    let f = rr.bgp_neighbor_json(vtep).unwrap().unwrap();
    assert_eq!(u64_at(&f, &["connectionsEstablished"]), 1, "{f}");
    // And it carries routes again: evpnd's type-3 route is at the new RR.
    wait_until(TIMEOUT, "evpnd's type-3 route at the restarted RR", || {
        Ok(rr
            .evpn_routes()?
            .iter()
            .any(|r| r.route_type == 3 && r.nexthops().contains(&vtep.to_string())))
    })
    .unwrap();
}

// ---------------------------------------------------------------------
// A raw BGP peer.

const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const EVPND_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const ASN: u32 = 65000;
const MSG_OPEN: u8 = 1;
const MSG_UPDATE: u8 = 2;
const MSG_NOTIFICATION: u8 = 3;
const MSG_KEEPALIVE: u8 = 4;

/// A message with a correct header.
fn message(msg_type: u8, body: &[u8]) -> Vec<u8> {
    let len = u16::try_from(19 + body.len()).expect("message fits");
    let mut m = vec![0xff; 16];
    m.extend_from_slice(&len.to_be_bytes());
    m.push(msg_type);
    m.extend_from_slice(body);
    m
}

/// OPEN: version 4, AS 65000, hold 9, id PEER_IP, capabilities MP
/// L2VPN/EVPN (RFC 4760) and 4-octet AS (RFC 6793), one per parameter.
fn open_message() -> Vec<u8> {
    let mut b = vec![4];
    b.extend_from_slice(&(ASN as u16).to_be_bytes());
    b.extend_from_slice(&9u16.to_be_bytes());
    b.extend_from_slice(&PEER_IP.octets());
    let mp = [2, 6, 1, 4, 0, 25, 0, 70];
    let as4 = [2, 6, 65, 4, 0, 0, 0xfd, 0xe8];
    b.push((mp.len() + as4.len()) as u8);
    b.extend_from_slice(&mp);
    b.extend_from_slice(&as4);
    message(MSG_OPEN, &b)
}

/// One path attribute (extended length when needed).
fn attr(flags: u8, code: u8, value: &[u8]) -> Vec<u8> {
    let mut a = Vec::new();
    if value.len() > 255 || flags & 0x10 != 0 {
        a.push(flags | 0x10);
        a.push(code);
        a.extend_from_slice(&(value.len() as u16).to_be_bytes());
    } else {
        a.push(flags);
        a.push(code);
        a.push(value.len() as u8);
    }
    a.extend_from_slice(value);
    a
}

/// EVPN type-2 NLRI (RFC 7432 §7.2): RD type 1 PEER_IP:100, ESI 0,
/// Ethernet tag 0, MAC, no IP, label = VNI 100 (RFC 8365 §5.1.3).
fn type2_nlri(mac: [u8; 6]) -> Vec<u8> {
    let mut n = vec![2, 33, 0, 1];
    n.extend_from_slice(&PEER_IP.octets());
    n.extend_from_slice(&100u16.to_be_bytes());
    n.extend_from_slice(&[0; 10]); // ESI
    n.extend_from_slice(&[0; 4]); // Ethernet tag
    n.push(48);
    n.extend_from_slice(&mac);
    n.push(0);
    n.extend_from_slice(&[0, 0, 100]);
    n
}

/// RT 65000:100 and Encapsulation VXLAN (type 8).
const RT_65000_100: [u8; 8] = [0x00, 0x02, 0xfd, 0xe8, 0, 0, 0, 100];
const ENCAP_VXLAN: [u8; 8] = [0x03, 0x0c, 0, 0, 0, 0, 0, 8];

/// What to break in [`evpn_update`].
#[derive(Clone, Copy, PartialEq)]
enum Break {
    Nothing,
    /// ORIGIN with length 2 (RFC 7606 §7.1: treat-as-withdraw).
    OriginLength,
    /// Extended communities 15 bytes long (§7.14: treat-as-withdraw).
    ExtCommLength,
}

/// An iBGP UPDATE announcing `nlri` (EVPN, next hop PEER_IP).
fn evpn_update(nlri: &[u8], broken: Break) -> Vec<u8> {
    let mut attrs = Vec::new();
    let origin: &[u8] = if broken == Break::OriginLength {
        &[0, 0]
    } else {
        &[0]
    };
    attrs.extend(attr(0x40, 1, origin));
    attrs.extend(attr(0x40, 2, &[]));
    attrs.extend(attr(0x40, 5, &100u32.to_be_bytes()));
    let mut ec = RT_65000_100.to_vec();
    ec.extend_from_slice(&ENCAP_VXLAN);
    if broken == Break::ExtCommLength {
        ec.pop();
    }
    attrs.extend(attr(0xc0, 16, &ec));
    let mut mp = vec![0, 25, 70, 4];
    mp.extend_from_slice(&PEER_IP.octets());
    mp.push(0);
    mp.extend_from_slice(nlri);
    attrs.extend(attr(0x90, 14, &mp));
    let mut body = vec![0, 0];
    body.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    body.extend_from_slice(&attrs);
    message(MSG_UPDATE, &body)
}

/// What the reader thread saw.
#[derive(Debug)]
enum Rx {
    Msg(u8, Vec<u8>),
    Eof,
    #[allow(dead_code)] // shown by Debug in failure messages
    Error(String),
}

/// Read one message; `Ok(None)` on EOF at a message boundary.
fn read_message(s: &mut TcpStream) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut hdr = [0u8; 19];
    let mut got = 0;
    while got < hdr.len() {
        let n = s.read(&mut hdr[got..])?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(std::io::Error::other("EOF inside a header"));
        }
        got += n;
    }
    assert_eq!(hdr[..16], [0xff; 16], "evpnd sent a bad marker");
    let len = u16::from_be_bytes([hdr[16], hdr[17]]) as usize;
    assert!((19..=4096).contains(&len), "evpnd sent length {len}");
    let mut body = vec![0; len - 19];
    s.read_exact(&mut body)?;
    Ok(Some((hdr[18], body)))
}

/// One session of the raw peer with evpnd, after OPEN/KEEPALIVE.
struct RawSession {
    writer: Arc<Mutex<TcpStream>>,
    rx: mpsc::Receiver<Rx>,
    keepalive_stop: Arc<AtomicBool>,
    /// evpnd's OPEN body.
    evpnd_open: Vec<u8>,
}

impl RawSession {
    /// Accept evpnd's connection on `listener` and do the OPEN exchange.
    fn accept(listener: &TcpListener) -> RawSession {
        listener.set_nonblocking(true).unwrap();
        let mut stream = wait_for(TIMEOUT, "evpnd to connect to the raw peer", || {
            Ok(match listener.accept() {
                Ok((s, _)) => Poll::Ready(s),
                Err(e) => Poll::NotYet(e.to_string()),
            })
        })
        .unwrap();
        stream.set_nonblocking(false).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let (t, evpnd_open) = read_message(&mut stream).unwrap().expect("OPEN");
        assert_eq!(t, MSG_OPEN, "evpnd's first message");
        stream.write_all(&open_message()).unwrap();
        stream.write_all(&message(MSG_KEEPALIVE, &[])).unwrap();
        let (t, body) = read_message(&mut stream).unwrap().expect("KEEPALIVE");
        assert_eq!(t, MSG_KEEPALIVE, "evpnd's answer to our OPEN: {body:?}");

        let writer = Arc::new(Mutex::new(stream.try_clone().unwrap()));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || loop {
            let ev = match read_message(&mut stream) {
                Ok(Some((t, b))) => Rx::Msg(t, b),
                Ok(None) => Rx::Eof,
                Err(e) => Rx::Error(e.to_string()),
            };
            let end = !matches!(ev, Rx::Msg(..));
            if tx.send(ev).is_err() || end {
                return;
            }
        });
        let keepalive_stop = Arc::new(AtomicBool::new(false));
        let (w, stop) = (writer.clone(), keepalive_stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(mut s) = w.lock() {
                    if s.write_all(&message(MSG_KEEPALIVE, &[])).is_err() {
                        return;
                    }
                }
                // Hold time 9: a keepalive every 2 s, stop checked often.
                for _ in 0..20 {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        });
        RawSession {
            writer,
            rx,
            keepalive_stop,
            evpnd_open,
        }
    }

    fn send(&self, bytes: &[u8]) {
        self.writer.lock().unwrap().write_all(bytes).unwrap();
    }

    /// Next message of `msg_type` (others skipped) within `timeout`.
    fn expect_message(&self, msg_type: u8, timeout: Duration) -> Vec<u8> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(Rx::Msg(t, b)) if t == msg_type => return b,
                Ok(Rx::Msg(..)) => {}
                other => panic!("waiting for message type {msg_type}: {other:?}"),
            }
        }
    }

    /// Send a message with a broken header, expect NOTIFICATION
    /// code 1 / `subcode` with `data`, then EOF (evpnd closes).
    fn header_error(self, bytes: &[u8], subcode: u8, data: &[u8]) {
        self.keepalive_stop.store(true, Ordering::Relaxed);
        self.send(bytes);
        let n = self.expect_message(MSG_NOTIFICATION, Duration::from_secs(10));
        assert_eq!(
            (n.first().copied(), n.get(1).copied()),
            (Some(1), Some(subcode)),
            "NOTIFICATION {n:?}"
        );
        assert_eq!(&n[2..], data, "NOTIFICATION data");
        match self.rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Rx::Eof) => {}
            other => panic!("after the NOTIFICATION: {other:?}, want EOF"),
        }
    }
}

impl Drop for RawSession {
    fn drop(&mut self) {
        self.keepalive_stop.store(true, Ordering::Relaxed);
        if let Ok(s) = self.writer.lock() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// The path attributes of an UPDATE body as (type code, value).
fn update_attrs(body: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let wl = u16::from_be_bytes([body[0], body[1]]) as usize;
    let al = u16::from_be_bytes([body[2 + wl], body[3 + wl]]) as usize;
    let mut a = &body[4 + wl..4 + wl + al];
    let mut out = Vec::new();
    while !a.is_empty() {
        let (flags, code) = (a[0], a[1]);
        let (len, hl) = if flags & 0x10 != 0 {
            (u16::from_be_bytes([a[2], a[3]]) as usize, 4)
        } else {
            (a[2] as usize, 3)
        };
        out.push((code, a[hl..hl + len].to_vec()));
        a = &a[hl + len..];
    }
    out
}

fn has_route(e: &Evpnd, mac: &str) -> testbed::Result<bool> {
    Ok(e.routes_json()?.iter().any(|r| {
        r["mac"].as_str() == Some(mac) && r["peer"].as_str() == Some(&PEER_IP.to_string())
    }))
}

fn in_fdb(ns: &Netns, mac: &str) -> testbed::Result<bool> {
    Ok(bridge_fdb(ns)?
        .iter()
        .any(|r| r.mac == mac && r.dst.as_deref() == Some(&PEER_IP.to_string())))
}

/// evpnd's log without ANSI colour sequences.
fn plain_log(e: &Evpnd) -> String {
    let raw = e.log_text().unwrap();
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c2 in chars.by_ref() {
                if c2.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn count_lines(log: &str, all: &[&str]) -> usize {
    log.lines()
        .filter(|l| all.iter().all(|s| l.contains(s)))
        .count()
}

/// A raw peer: evpnd's OPEN and type-3 UPDATE on the wire, RFC 7606
/// treat-as-withdraw for a bad ORIGIN and a bad extended communities
/// length (session stays up), header errors answered with the right
/// NOTIFICATION and a clean close.
#[test]
fn raw_peer_malformed_input() {
    if !testbed::can_run() {
        return;
    }
    cleanup_prefix("itbrp", false).unwrap();
    let ev = Netns::new("itbrp").unwrap();
    let pr = Netns::new("itbrp").unwrap();
    links::veth(&ev, "uplink", &pr, "eth0").unwrap();
    links::addr_add(&ev, "uplink", &format!("{EVPND_IP}/24")).unwrap();
    links::addr_add(&pr, "eth0", &format!("{PEER_IP}/24")).unwrap();
    let listener = pr
        .in_netns(|| TcpListener::bind((PEER_IP, 179)))
        .unwrap()
        .unwrap();

    let cfg = EvpndConfig::new(ASN, EVPND_IP, ev.name())
        .neighbor(PEER_IP)
        .vni(100);
    let mut evpnd = Evpnd::start_with(&ev.handle(), EVPND.as_ref(), &cfg).unwrap();
    evpnd.wait_ready(TIMEOUT).unwrap();

    let s = RawSession::accept(&listener);
    // evpnd's OPEN: version 4, AS 65000 (2-octet field), hold 9, its id,
    // and the capabilities FRR needs: MP L2VPN/EVPN and 4-octet AS.
    let o = &s.evpnd_open;
    assert_eq!(o[0], 4);
    assert_eq!(u16::from_be_bytes([o[1], o[2]]), 65000);
    assert_eq!(u16::from_be_bytes([o[3], o[4]]), 9);
    assert_eq!(o[5..9], EVPND_IP.octets());
    let params = &o[10..];
    let has = |cap: &[u8]| params.windows(cap.len()).any(|w| w == cap);
    assert!(has(&[1, 4, 0, 25, 0, 70]), "no MP L2VPN/EVPN in {params:?}");
    assert!(
        has(&[65, 4, 0, 0, 0xfd, 0xe8]),
        "no 4-octet AS in {params:?}"
    );
    evpnd.wait_established(&[PEER_IP], TIMEOUT).unwrap();

    // evpnd's own type-3 route for VNI 100 on the wire (RFC 8365 §5.1.3,
    // RFC 6514 §5): PMSI ingress replication, label = VNI, tunnel id = its
    // VTEP IP; RT 65000:100 and the VXLAN encapsulation community.
    let deadline = Instant::now() + TIMEOUT;
    let attrs = loop {
        assert!(Instant::now() < deadline, "no type-3 UPDATE from evpnd");
        let body = s.expect_message(MSG_UPDATE, TIMEOUT);
        let attrs = update_attrs(&body);
        let is_t3 = attrs
            .iter()
            .any(|(c, v)| *c == 14 && v.len() > 10 && v[..3] == [0, 25, 70] && v[9] == 3);
        if is_t3 {
            break attrs;
        }
    };
    let get = |code: u8| {
        attrs
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no attribute {code} in {attrs:?}"))
    };
    let mut want_pmsi = vec![0, 6, 0, 0, 100];
    want_pmsi.extend_from_slice(&EVPND_IP.octets());
    assert_eq!(get(22), want_pmsi, "PMSI tunnel attribute");
    let ec = get(16);
    assert!(ec.chunks(8).any(|c| c == RT_65000_100), "RT in {ec:?}");
    assert!(ec.chunks(8).any(|c| c == ENCAP_VXLAN), "ET:8 in {ec:?}");
    let mp = get(14);
    assert_eq!(mp[3], 4, "next hop length");
    assert_eq!(mp[4..8], EVPND_IP.octets(), "next hop");
    // NLRI: type 3, length 17, RD, tag 0, 32, originating IP.
    assert_eq!(mp[9..11], [3, 17]);
    assert_eq!(mp[23..28], [32, 10, 77, 0, 2]);
    assert_eq!(get(1), vec![0], "ORIGIN IGP");
    assert_eq!(get(5).len(), 4, "LOCAL_PREF on iBGP");

    // Two malformed UPDATEs with parseable NLRI: treat-as-withdraw, the
    // session stays up and nothing is installed.
    let mac_a = [0x02, 0x77, 0, 0, 0, 0x0a];
    let mac_b = [0x02, 0x77, 0, 0, 0, 0x0b];
    let (a, b) = ("02:77:00:00:00:0a", "02:77:00:00:00:0b");
    s.send(&evpn_update(&type2_nlri(mac_a), Break::OriginLength));
    s.send(&evpn_update(&type2_nlri(mac_b), Break::ExtCommLength));
    wait_until(TIMEOUT, "evpnd to log both treat-as-withdraws", || {
        let log = plain_log(&evpnd);
        Ok(
            count_lines(&log, &["malformed attribute", "attr=1 ", "TreatAsWithdraw"]) >= 1
                && count_lines(
                    &log,
                    &["malformed attribute", "attr=16 ", "TreatAsWithdraw"],
                ) >= 1
                && count_lines(&log, &["treated as withdraw"]) >= 2,
        )
    })
    .unwrap();
    assert!(evpnd.is_established(PEER_IP).unwrap());
    assert!(!has_route(&evpnd, a).unwrap() && !has_route(&evpnd, b).unwrap());

    // Valid UPDATEs afterwards are accepted: RIB and kernel.
    s.send(&evpn_update(&type2_nlri(mac_a), Break::Nothing));
    s.send(&evpn_update(&type2_nlri(mac_b), Break::Nothing));
    for m in [a, b] {
        wait_until(
            TIMEOUT,
            &format!("route {m} in evpnd's RIB and FDB"),
            || Ok(has_route(&evpnd, m)? && in_fdb(&ev, m)?),
        )
        .unwrap();
    }
    // A malformed UPDATE for the same NLRI withdraws it (RFC 7606 §2).
    s.send(&evpn_update(&type2_nlri(mac_a), Break::OriginLength));
    s.send(&evpn_update(&type2_nlri(mac_b), Break::ExtCommLength));
    for m in [a, b] {
        wait_until(TIMEOUT, &format!("route {m} withdrawn"), || {
            Ok(!has_route(&evpnd, m)? && !in_fdb(&ev, m)?)
        })
        .unwrap();
    }
    let n = evpnd.neighbor_json(PEER_IP).unwrap().unwrap();
    assert_eq!(n["state"], "established", "{n}");
    assert!(n["last_error"].is_null(), "{n}");

    // Header errors (RFC 4271 §6.1): bad marker -> 1/1 without data.
    let mut bad_marker = message(MSG_KEEPALIVE, &[]);
    bad_marker[5] = 0;
    s.header_error(&bad_marker, 1, &[]);
    assert!(evpnd.is_running(), "evpnd died on a bad marker");

    // evpnd reconnects; bad length (beyond 4096 without RFC 8654
    // negotiated) -> 1/2 with the erroneous length field as data.
    let s = RawSession::accept(&listener);
    evpnd.wait_established(&[PEER_IP], TIMEOUT).unwrap();
    let mut too_long = message(MSG_KEEPALIVE, &[]);
    too_long[16..18].copy_from_slice(&4097u16.to_be_bytes());
    s.header_error(&too_long, 2, &[0x10, 0x01]);

    // And shorter than a header: 1/2 with length 18.
    let s = RawSession::accept(&listener);
    evpnd.wait_established(&[PEER_IP], TIMEOUT).unwrap();
    let mut too_short = message(MSG_KEEPALIVE, &[]);
    too_short[16..18].copy_from_slice(&18u16.to_be_bytes());
    s.header_error(&too_short, 2, &[0, 18]);

    assert!(evpnd.is_running(), "evpnd died on header errors");
    let log = plain_log(&evpnd);
    assert!(!log.contains("panicked"), "evpnd panicked:\n{log}");
    // Bridge-port notifications (AF_BRIDGE, no IFLA_LINKINFO) must not make
    // evpnd forget what its own vxlan device is.
    assert!(
        !log.contains("is not a vxlan device"),
        "VNI flapped on a bridge-port notification:\n{log}"
    );
}
