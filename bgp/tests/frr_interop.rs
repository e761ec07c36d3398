//! Interop: a real FRR 8.4 bgpd accepts what this codec writes. The test
//! speaks BGP itself (codec only, no FSM) from 127.0.0.2 to a bgpd listening
//! on 127.0.0.1 on a free port, announces EVPN type-3 and type-2 routes
//! built with `pack_reach`, withdraws one with `pack_unreach`, and checks
//! FRR's RIB through `vtysh ... json` each time.
//!
//! Needs root and /usr/lib/frr/bgpd; skipped (with a message) otherwise.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use evpnd_bgp::codec::{decode, encode, frame_len, pack_reach, pack_unreach, CodecOptions};
use evpnd_bgp::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const BGPD: &str = "/usr/lib/frr/bgpd";
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A bgpd in the root namespace bound to 127.0.0.1:port; killed and its
/// files removed on drop, also when the test fails.
struct Frr {
    name: String,
    dir: PathBuf,
    run: PathBuf,
    port: u16,
}

impl Frr {
    fn start() -> Option<Frr> {
        if !std::path::Path::new(BGPD).exists() || current_uid() != 0 {
            eprintln!("skipped: needs root and {BGPD}");
            return None;
        }
        let name = format!(
            "bgpwire{}x{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let dir = std::env::temp_dir().join(&name);
        let run = PathBuf::from("/var/run/frr").join(&name);
        std::fs::create_dir_all(&dir).ok()?;
        std::fs::create_dir_all(&run).ok()?;
        // A free port: bind, read, release.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let conf = dir.join("bgpd.conf");
        std::fs::write(
            &conf,
            format!(
                "hostname {name}\nlog file {log}\n\
                 router bgp 65000\n bgp router-id 10.255.0.1\n no bgp default ipv4-unicast\n\
                 neighbor 127.0.0.2 remote-as 65000\n neighbor 127.0.0.2 passive\n\
                 address-family l2vpn evpn\n  neighbor 127.0.0.2 activate\n exit-address-family\n",
                log = dir.join("bgpd.log").display()
            ),
        )
        .ok()?;
        let frr = Frr {
            name,
            dir,
            run,
            port,
        };
        for p in [&frr.dir, &frr.run] {
            Command::new("chown")
                .args(["-R", "frr:frr"])
                .arg(p)
                .status()
                .ok()?;
        }
        let ok = Command::new(BGPD)
            .args(["-d", "-Z", "-P", "0", "-N", &frr.name])
            .args(["-p", &port.to_string(), "-l", "127.0.0.1"])
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(frr.dir.join("bgpd.pid"))
            .arg("--vty_socket")
            .arg(&frr.run)
            .status()
            .ok()?
            .success();
        assert!(ok, "bgpd did not start");
        Some(frr)
    }

    fn vtysh_json(&self, cmd: &str) -> String {
        let out = Command::new("vtysh")
            .args(["-N", &self.name, "-c", cmd])
            .output()
            .expect("vtysh runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Frr {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("bgpd.pid")) {
            let pid = pid.trim().to_owned();
            let _ = Command::new("kill").arg(&pid).status();
            // Wait (bounded) for it to go so nothing outlives the test.
            let proc_dir = PathBuf::from("/proc").join(&pid);
            let deadline = Instant::now() + Duration::from_secs(5);
            while proc_dir.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = std::fs::remove_dir_all(&self.run);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn current_uid() -> u32 {
    // /proc/self/status "Uid:" line, no libc needed.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .and_then(|u| u.parse().ok())
        .unwrap_or(u32::MAX)
}

/// Poll `f` until it returns true or the deadline passes.
async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timeout waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Connect from 127.0.0.2 (the configured neighbour) to bgpd, retrying
/// until it listens.
async fn connect(frr: &Frr) -> TcpStream {
    let target = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), frr.port);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = TcpSocket::new_v4().unwrap();
        s.bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), 0))
            .unwrap();
        match s.connect(target).await {
            Ok(st) => return st,
            Err(e) => {
                assert!(Instant::now() < deadline, "cannot connect to bgpd: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    opts: CodecOptions,
}

impl Conn {
    async fn send(&mut self, m: &Message<RawNlri>) {
        let mut b = BytesMut::new();
        encode(m, &self.opts, &mut b);
        assert!(!b.is_empty(), "message too long");
        self.stream.write_all(&b).await.unwrap();
    }

    async fn recv(&mut self) -> Message<RawNlri> {
        loop {
            if let Some(len) = frame_len(&self.buf, &self.opts).unwrap() {
                let frame = self.buf.split_to(len);
                return decode(&frame, &self.opts).unwrap();
            }
            let n =
                tokio::time::timeout(Duration::from_secs(30), self.stream.read_buf(&mut self.buf))
                    .await
                    .expect("peer silent")
                    .unwrap();
            assert!(n > 0, "peer closed the connection");
        }
    }
}

const VTEP: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 2);

/// RD type 1 10.255.0.2:1
fn rd() -> [u8; 8] {
    [0, 1, 10, 255, 0, 2, 0, 1]
}

fn type3() -> RawNlri {
    let mut b = BytesMut::new();
    b.put_slice(&[3, 17]);
    b.put_slice(&rd());
    b.put_u32(0); // ethernet tag
    b.put_u8(32);
    b.put_slice(&VTEP.octets());
    RawNlri(b.freeze())
}

fn type2(mac_last: u8) -> RawNlri {
    let mut b = BytesMut::new();
    b.put_slice(&[2, 33]);
    b.put_slice(&rd());
    b.put_slice(&[0; 10]); // ESI
    b.put_u32(0);
    b.put_u8(48);
    b.put_slice(&[2, 0, 0, 0, 0x11, mac_last]);
    b.put_u8(0); // no IP
    b.put_slice(&[0, 0, 100]); // VNI 100
    RawNlri(b.freeze())
}

fn attrs(pmsi: bool) -> PathAttributes {
    PathAttributes {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::default()),
        local_pref: Some(100),
        ext_communities: vec![
            ExtCommunity([0x03, 0x0c, 0, 0, 0, 0, 0, 0x08]),
            ExtCommunity([0x00, 0x02, 0xfd, 0xe8, 0, 0, 0, 100]),
        ],
        pmsi_tunnel: pmsi.then(|| PmsiTunnel {
            flags: 0,
            tunnel_type: PmsiTunnel::INGRESS_REPLICATION,
            label: 100,
            tunnel_id: Bytes::copy_from_slice(&VTEP.octets()),
        }),
        ..Default::default()
    }
}

fn count_routes(json: &str, needle: &str) -> usize {
    json.matches(needle).count()
}

#[tokio::test]
async fn frr_accepts_our_open_and_evpn_updates() {
    let Some(frr) = Frr::start() else { return };
    let stream = connect(&frr).await;
    let mut c = Conn {
        stream,
        buf: BytesMut::new(),
        opts: CodecOptions::default(),
    };
    c.send(&Message::Open(Open {
        version: 4,
        my_as: 65000,
        hold_time: 90,
        bgp_id: Ipv4Addr::new(10, 255, 0, 2),
        capabilities: vec![
            Capability::Multiprotocol(AfiSafi::L2VPN_EVPN),
            Capability::RouteRefresh,
            Capability::FourOctetAs(Asn(65000)),
            Capability::ExtendedMessage,
        ],
        other_params: vec![],
    }))
    .await;
    let Message::Open(theirs) = c.recv().await else {
        panic!("expected OPEN")
    };
    assert_eq!(theirs.asn(), Asn(65000));
    assert!(theirs.has(|cap| *cap == Capability::ExtendedMessage));
    c.opts.extended_message = true;
    c.send(&Message::Keepalive).await;
    // FRR answers with KEEPALIVE; then (possibly) its End-of-RIB.
    assert_eq!(c.recv().await, Message::Keepalive);

    // Announce one type-3 and 300 type-2 routes (several UPDATEs if needed).
    let nh = NextHop::Ip(IpAddr::V4(VTEP));
    let mut ups = pack_reach(AfiSafi::L2VPN_EVPN, &nh, &attrs(true), &[type3()], &c.opts).unwrap();
    let macs: Vec<RawNlri> = (0..=255).map(type2).collect();
    ups.extend(pack_reach(AfiSafi::L2VPN_EVPN, &nh, &attrs(false), &macs, &c.opts).unwrap());
    for u in ups {
        c.send(&Message::Update(u)).await;
    }
    c.send(&Message::Update(Update::end_of_rib(AfiSafi::L2VPN_EVPN)))
        .await;

    let mut reader = c;
    let reader_task = tokio::spawn(async move {
        // Keep reading: any NOTIFICATION from FRR fails the test.
        loop {
            match reader.recv().await {
                Message::Notification(n) => panic!("FRR sent NOTIFICATION {n:?}"),
                Message::Keepalive | Message::Update(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    });

    wait_for("type-3 route in FRR", || {
        let j = frr.vtysh_json("show bgp l2vpn evpn route type multicast json");
        j.contains("10.255.0.2:1") && j.contains("\"ip\":\"10.255.0.2\"")
    })
    .await;
    wait_for("256 type-2 routes in FRR", || {
        let j = frr.vtysh_json("show bgp l2vpn evpn route type macip json");
        count_routes(&j, "\"mac\":\"02:00:00:00:11:") == 256
    })
    .await;
    // FRR understood every attribute we wrote.
    let j = frr.vtysh_json("show bgp l2vpn evpn route detail type multicast json");
    assert!(
        j.contains(r#""pmsi":{"tunnelType":"Ingress Replication","label":100}"#),
        "{j}"
    );
    assert!(
        j.contains(r#""extendedCommunity":{"string":"RT:65000:100 ET:8"}"#),
        "{j}"
    );
    assert!(j.contains(r#""origin":"IGP","locPrf":100"#), "{j}");

    assert!(!reader_task.is_finished(), "session dropped");
    reader_task.abort();
    let _ = reader_task.await;
}

#[tokio::test]
async fn frr_accepts_our_withdraws() {
    let Some(frr) = Frr::start() else { return };
    let stream = connect(&frr).await;
    // A 2-octet-only speaker (no 4-octet AS capability, no extended message)
    // to exercise the other encoding path.
    let mut c = Conn {
        stream,
        buf: BytesMut::new(),
        opts: CodecOptions {
            four_octet_as: false,
            extended_message: false,
        },
    };
    c.send(&Message::Open(Open {
        version: 4,
        my_as: 65000,
        hold_time: 90,
        bgp_id: Ipv4Addr::new(10, 255, 0, 2),
        capabilities: vec![Capability::Multiprotocol(AfiSafi::L2VPN_EVPN)],
        other_params: vec![],
    }))
    .await;
    assert!(matches!(c.recv().await, Message::Open(_)));
    c.send(&Message::Keepalive).await;
    assert_eq!(c.recv().await, Message::Keepalive);

    let nh = NextHop::Ip(IpAddr::V4(VTEP));
    let macs: Vec<RawNlri> = (0..10).map(type2).collect();
    for u in pack_reach(AfiSafi::L2VPN_EVPN, &nh, &attrs(false), &macs, &c.opts).unwrap() {
        c.send(&Message::Update(u)).await;
    }
    let count = |frr: &Frr| {
        count_routes(
            &frr.vtysh_json("show bgp l2vpn evpn route type macip json"),
            "\"mac\":\"02:00:00:00:11:",
        )
    };
    wait_for("10 type-2 routes", || count(&frr) == 10).await;
    // Withdraw 4 of them (label 0, as FRR does).
    let gone: Vec<RawNlri> = (0..4)
        .map(|i| {
            let mut v = type2(i).0.to_vec();
            let n = v.len();
            v[n - 3..].copy_from_slice(&[0, 0, 0]);
            RawNlri(Bytes::from(v))
        })
        .collect();
    for u in pack_unreach(AfiSafi::L2VPN_EVPN, &gone, &c.opts).unwrap() {
        c.send(&Message::Update(u)).await;
    }
    wait_for("6 type-2 routes left", || count(&frr) == 6).await;
}
