//! The injector: a minimal, fast iBGP speaker that plays the route
//! reflector towards one VTEP. It pre-encodes the whole route set with the
//! `evpnd-bgp` codec and writes it as fast as TCP takes it, keeps the
//! session alive with KEEPALIVEs, and timestamps the UPDATEs the VTEP sends
//! back (local-MAC latency).

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use evpnd_bgp::codec::{self, CodecOptions};
use evpnd_bgp::{
    AfiSafi, AsPath, Asn, Capability, Message, NextHop, Notification, Open, Origin, PathAttributes,
    HEADER_LEN,
};
use evpnd_evpn::extcomm::{tunnel_type, EvpnExtCommunity, PmsiView, RouteTarget};
use evpnd_evpn::route::{EvpnNlri, InclusiveMulticastRoute, MacIpRoute};
use evpnd_evpn::{Esi, EthernetTag, Label, MacAddress, RouteDistinguisher, Vni};

use super::BenchError;

/// ASN of the fabric (iBGP everywhere).
pub const ASN: u32 = 65000;
/// The injector's BGP identifier and cluster id.
pub const INJECTOR_ID: Ipv4Addr = Ipv4Addr::new(10, 99, 9, 9);
/// Hold time we offer; keepalives go out every third of the negotiated one.
const HOLD_TIME: u16 = 90;

/// What to advertise: `macs` type-2 routes (even index MAC-only, odd index
/// MAC+IP, all distinct MACs) and `vteps` type-3 routes spread over `vnis`
/// VNIs starting at `vni_base`. Remote VTEP `i` is 10.200.0.0 + 1 + i and
/// sits in VNI `i mod vnis`; MAC `j` is in VNI `j mod vnis` behind one of
/// that VNI's VTEPs.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    pub macs: u32,
    pub vteps: u32,
    pub vnis: u32,
    pub vni_base: u32,
}

impl Workload {
    pub fn vni(&self, k: u32) -> u32 {
        self.vni_base + k
    }

    pub fn vtep_ip(&self, i: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 200, 0, 0)) + 1 + i)
    }

    /// The remote MAC number `j` (02:be:...).
    pub fn mac(&self, j: u32) -> MacAddress {
        let b = j.to_be_bytes();
        MacAddress([0x02, 0xbe, b[0], b[1], b[2], b[3]])
    }

    /// The IP of MAC `j`: odd MACs are MAC+IP routes (100.64.0.0 + j),
    /// even ones MAC-only.
    pub fn ip(&self, j: u32) -> Option<Ipv4Addr> {
        (j % 2 == 1)
            .then(|| Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 0)).wrapping_add(j)))
    }

    /// How many MAC+IP routes (each a neighbor entry for ARP suppression).
    pub fn macip_count(&self) -> usize {
        (self.macs / 2) as usize
    }

    /// (VNI index, VTEP index) of MAC `j`.
    pub fn slot(&self, j: u32) -> (u32, u32) {
        let k = j % self.vnis;
        if self.vteps > k {
            // VTEPs in VNI k: k, k + vnis, k + 2 vnis, ...
            let in_vni = (self.vteps - k).div_ceil(self.vnis);
            (k, k + self.vnis * ((j / self.vnis) % in_vni))
        } else {
            (k, j % self.vteps.max(1))
        }
    }

    fn rd(&self, vtep: u32, k: u32) -> RouteDistinguisher {
        RouteDistinguisher::auto(self.vtep_ip(vtep), (k + 1) as u16)
    }

    /// The attributes a route reflector passes on for a route of remote
    /// VTEP `vtep` in VNI index `k` (RFC 4456 §8: ORIGINATOR_ID and
    /// CLUSTER_LIST; RFC 8365: RT, encapsulation VXLAN, PMSI on type-3).
    fn attrs(&self, vtep: u32, k: u32, imet: bool) -> Result<PathAttributes, BenchError> {
        let vni = Vni::new(self.vni(k)).ok_or(BenchError::Invalid {
            what: "VNI",
            value: self.vni(k).to_string(),
        })?;
        let ip = self.vtep_ip(vtep);
        Ok(PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::default()),
            local_pref: Some(100),
            originator_id: Some(ip),
            cluster_list: vec![INJECTOR_ID],
            ext_communities: vec![
                EvpnExtCommunity::RouteTarget(RouteTarget::auto(ASN, vni)).into(),
                EvpnExtCommunity::Encapsulation(tunnel_type::VXLAN).into(),
            ],
            pmsi_tunnel: imet.then(|| PmsiView::ingress_replication(vni, IpAddr::V4(ip))),
            ..PathAttributes::default()
        })
    }

    /// Every UPDATE of the workload, encoded for a session with `opts`:
    /// type-3 routes first, then type-2, each group (same VTEP and VNI, so
    /// same attributes) packed into full messages. Returns the bytes and
    /// the offsets where messages start (to interleave KEEPALIVEs).
    pub fn encode(&self, opts: &CodecOptions) -> Result<Encoded, BenchError> {
        let mut groups: BTreeMap<(bool, u32, u32), Vec<EvpnNlri>> = BTreeMap::new();
        for i in 0..self.vteps {
            let k = i % self.vnis;
            groups
                .entry((false, i, k))
                .or_default()
                .push(EvpnNlri::InclusiveMulticast(InclusiveMulticastRoute {
                    rd: self.rd(i, k),
                    eth_tag: EthernetTag(0),
                    originator: IpAddr::V4(self.vtep_ip(i)),
                }));
        }
        for j in 0..self.macs {
            let (k, vtep) = self.slot(j);
            let ip = self.ip(j).map(IpAddr::V4);
            groups
                .entry((true, vtep, k))
                .or_default()
                .push(EvpnNlri::MacIp(MacIpRoute {
                    rd: self.rd(vtep, k),
                    esi: Esi::ZERO,
                    eth_tag: EthernetTag(0),
                    mac: self.mac(j),
                    ip,
                    label1: Label::new(self.vni(k)),
                    label2: None,
                }));
        }
        let mut out = Encoded {
            bytes: Vec::with_capacity(self.macs as usize * 48 + self.vteps as usize * 64),
            starts: Vec::new(),
            updates: 0,
        };
        let mut buf = BytesMut::with_capacity(opts.max_message_len());
        for ((mac, vtep, k), nlri) in groups {
            let attrs = self.attrs(vtep, k, !mac)?;
            let nh = NextHop::Ip(IpAddr::V4(self.vtep_ip(vtep)));
            let updates = codec::pack_reach(AfiSafi::L2VPN_EVPN, &nh, &attrs, &nlri, opts)
                .map_err(|e| BenchError::Bgp(format!("packing UPDATEs: {e}")))?;
            for u in updates {
                buf.clear();
                codec::try_encode(&Message::Update(u), opts, &mut buf)
                    .map_err(|e| BenchError::Bgp(format!("encoding UPDATE: {e}")))?;
                out.starts.push(out.bytes.len());
                out.bytes.extend_from_slice(&buf);
                out.updates += 1;
            }
        }
        Ok(out)
    }
}

/// A pre-encoded stream of UPDATEs.
#[derive(Debug, Default)]
pub struct Encoded {
    pub bytes: Vec<u8>,
    /// Offset of each message in `bytes`.
    pub starts: Vec<usize>,
    pub updates: usize,
}

/// What the reader thread saw from the VTEP.
#[derive(Debug, Default)]
struct Seen {
    /// Type-3 routes the VTEP advertised (one per VNI it serves).
    imet: usize,
    /// First time each MAC showed up in a type-2 route.
    macs: HashMap<MacAddress, Instant>,
    /// The session ended (EOF, error or NOTIFICATION), and why.
    closed: Option<String>,
}

/// An established session with one VTEP.
pub struct Session {
    writer: Arc<Mutex<TcpStream>>,
    pub opts: CodecOptions,
    pub peer_open: Open,
    seen: Arc<(Mutex<Seen>, Condvar)>,
    stop: Arc<AtomicBool>,
    keepalive: Option<JoinHandle<()>>,
    reader: Option<JoinHandle<()>>,
}

/// Run `f` on a thread that has entered network namespace `ns` (sockets it
/// creates live in that namespace).
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> Result<T, BenchError> + Send + 'static,
) -> Result<T, BenchError> {
    let path = format!("/var/run/netns/{ns}");
    let h = std::thread::spawn(move || {
        let file =
            std::fs::File::open(&path).map_err(|e| BenchError::io(format!("open {path}"), e))?;
        // SAFETY: setns(2) on a valid fd; it only changes this thread's
        // network namespace.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            return Err(BenchError::io(
                format!("setns {path}"),
                std::io::Error::last_os_error(),
            ));
        }
        f()
    });
    h.join()
        .map_err(|_| BenchError::Bgp("netns thread panicked".into()))?
}

fn read_message(s: &mut TcpStream, opts: &CodecOptions) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; HEADER_LEN];
    s.read_exact(&mut buf)?;
    let len = match codec::frame_len(&buf, opts) {
        Ok(_) => u16::from_be_bytes([buf[16], buf[17]]) as usize,
        Err(e) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                e.to_string(),
            ))
        }
    };
    buf.resize(len, 0);
    s.read_exact(&mut buf[HEADER_LEN..])?;
    Ok(buf)
}

fn encode_msg(m: &Message<EvpnNlri>, opts: &CodecOptions) -> Vec<u8> {
    let mut b = BytesMut::new();
    codec::encode(m, opts, &mut b);
    b.to_vec()
}

impl Session {
    /// Connect from namespace `ns` to `peer`:179 (retrying until `timeout`
    /// while the daemon starts) and complete the OPEN handshake.
    pub fn connect(ns: &str, peer: Ipv4Addr, timeout: Duration) -> Result<Session, BenchError> {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < deadline {
            let addr = SocketAddr::from((peer, 179));
            let stream = in_netns(ns, move || {
                TcpStream::connect_timeout(&addr, Duration::from_secs(2))
                    .map_err(|e| BenchError::io(format!("connect {addr}"), e))
            });
            match stream.and_then(Self::handshake) {
                Ok(s) => return Ok(s),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(BenchError::Timeout(format!(
            "BGP session to {peer}: {last}"
        )))
    }

    fn handshake(mut s: TcpStream) -> Result<Session, BenchError> {
        let io = |e| BenchError::io("BGP handshake", e);
        s.set_nodelay(true).map_err(io)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(io)?;
        let open = Open {
            version: 4,
            my_as: ASN as u16,
            hold_time: HOLD_TIME,
            bgp_id: INJECTOR_ID,
            capabilities: vec![
                Capability::Multiprotocol(AfiSafi::L2VPN_EVPN),
                Capability::RouteRefresh,
                Capability::FourOctetAs(Asn(ASN)),
                Capability::ExtendedMessage,
            ],
            other_params: Vec::new(),
        };
        let base = CodecOptions::default();
        s.write_all(&encode_msg(&Message::Open(open), &base))
            .map_err(io)?;
        let peer_open = loop {
            let m = read_message(&mut s, &base).map_err(io)?;
            match codec::decode::<EvpnNlri>(&m, &base) {
                Ok(Message::Open(o)) => break o,
                Ok(Message::Notification(n)) => {
                    return Err(BenchError::Bgp(format!(
                        "NOTIFICATION {}/{} during handshake",
                        n.code, n.subcode
                    )))
                }
                Ok(_) => continue,
                Err(e) => return Err(BenchError::Bgp(format!("bad OPEN: {e}"))),
            }
        };
        let opts = CodecOptions {
            four_octet_as: peer_open.has(|c| matches!(c, Capability::FourOctetAs(_))),
            extended_message: peer_open.has(|c| matches!(c, Capability::ExtendedMessage)),
        };
        s.write_all(&encode_msg(&Message::Keepalive, &opts))
            .map_err(io)?;
        loop {
            let m = read_message(&mut s, &opts).map_err(io)?;
            match codec::decode::<EvpnNlri>(&m, &opts) {
                Ok(Message::Keepalive) => break,
                Ok(Message::Notification(n)) => {
                    return Err(BenchError::Bgp(format!(
                        "NOTIFICATION {}/{} during handshake",
                        n.code, n.subcode
                    )))
                }
                _ => continue,
            }
        }
        s.set_read_timeout(None).map_err(io)?;
        let hold = HOLD_TIME.min(peer_open.hold_time);
        let reader_stream = s.try_clone().map_err(io)?;
        let writer = Arc::new(Mutex::new(s));
        let seen = Arc::new((Mutex::new(Seen::default()), Condvar::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let seen = seen.clone();
            std::thread::spawn(move || reader_loop(reader_stream, opts, seen))
        };
        let keepalive = (hold > 0).then(|| {
            let writer = writer.clone();
            let stop = stop.clone();
            let every = Duration::from_secs(u64::from(hold / 3).max(1));
            std::thread::spawn(move || {
                let ka = encode_msg(&Message::Keepalive, &opts);
                let mut next = Instant::now() + every;
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                    if Instant::now() >= next {
                        next += every;
                        if let Ok(mut w) = writer.lock() {
                            if w.write_all(&ka).is_err() {
                                return;
                            }
                        }
                    }
                }
            })
        });
        Ok(Session {
            writer,
            opts,
            peer_open,
            seen,
            stop,
            keepalive,
            reader: Some(reader),
        })
    }

    /// Wait until the VTEP has advertised `n` type-3 routes (it knows all
    /// its VNIs) or the session ended.
    pub fn wait_imet(&self, n: usize, timeout: Duration) -> Result<(), BenchError> {
        let (m, cv) = &*self.seen;
        let deadline = Instant::now() + timeout;
        let mut g = m.lock().map_err(|_| BenchError::Bgp("poisoned".into()))?;
        loop {
            if g.imet >= n {
                return Ok(());
            }
            if let Some(why) = &g.closed {
                return Err(BenchError::Bgp(format!("session closed: {why}")));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(BenchError::Timeout(format!(
                    "VTEP to advertise {n} type-3 routes (has {})",
                    g.imet
                )));
            }
            g = cv
                .wait_timeout(g, deadline - now)
                .map_err(|_| BenchError::Bgp("poisoned".into()))?
                .0;
        }
    }

    /// When a type-2 route for `mac` was first received, waiting up to
    /// `timeout` for it.
    pub fn wait_mac(&self, mac: MacAddress, timeout: Duration) -> Option<Instant> {
        let (m, cv) = &*self.seen;
        let deadline = Instant::now() + timeout;
        let mut g = m.lock().ok()?;
        loop {
            if let Some(t) = g.macs.get(&mac) {
                return Some(*t);
            }
            let now = Instant::now();
            if now >= deadline || g.closed.is_some() {
                return None;
            }
            g = cv.wait_timeout(g, deadline - now).ok()?.0;
        }
    }

    /// Why the session ended, if it did.
    pub fn closed(&self) -> Option<String> {
        self.seen.0.lock().ok().and_then(|g| g.closed.clone())
    }

    /// Write the pre-encoded UPDATEs in chunks of whole messages (so
    /// KEEPALIVEs can go in between).
    pub fn send(&self, enc: &Encoded) -> Result<(), BenchError> {
        const CHUNK: usize = 256 * 1024;
        let write = |range: std::ops::Range<usize>| -> Result<(), BenchError> {
            let mut w = self
                .writer
                .lock()
                .map_err(|_| BenchError::Bgp("poisoned".into()))?;
            w.write_all(&enc.bytes[range])
                .map_err(|e| BenchError::io("send UPDATEs", e))
        };
        let mut from = 0;
        for &start in enc.starts.iter().skip(1) {
            if start - from >= CHUNK {
                write(from..start)?;
                from = start;
            }
        }
        if from < enc.bytes.len() {
            write(from..enc.bytes.len())?;
        }
        Ok(())
    }

    /// End the session like an administrative shutdown: Cease NOTIFICATION
    /// (RFC 4486 subcode 2), then close. Without graceful restart in our
    /// OPEN the VTEP must drop every route at once.
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Ok(mut w) = self.writer.lock() {
            let n = Message::<EvpnNlri>::Notification(Notification {
                code: 6,
                subcode: 2,
                data: Default::default(),
            });
            let _ = w.write_all(&encode_msg(&n, &self.opts));
            let _ = w.shutdown(Shutdown::Both);
        }
        if let Some(h) = self.keepalive.take() {
            let _ = h.join();
        }
        if let Some(h) = self.reader.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn reader_loop(mut s: TcpStream, opts: CodecOptions, seen: Arc<(Mutex<Seen>, Condvar)>) {
    let (m, cv) = &*seen;
    let why = loop {
        let msg = match read_message(&mut s, &opts) {
            Ok(b) => b,
            Err(e) => break format!("read: {e}"),
        };
        let now = Instant::now();
        match codec::decode::<EvpnNlri>(&msg, &opts) {
            Ok(Message::Update(u)) => {
                let Some(r) = u.mp_reach else { continue };
                let Ok(mut g) = m.lock() else { return };
                for n in r.nlri {
                    match n {
                        EvpnNlri::InclusiveMulticast(_) => g.imet += 1,
                        EvpnNlri::MacIp(mr) => {
                            g.macs.entry(mr.mac).or_insert(now);
                        }
                        _ => {}
                    }
                }
                cv.notify_all();
            }
            Ok(Message::Notification(n)) => break format!("NOTIFICATION {}/{}", n.code, n.subcode),
            Ok(_) => {}
            Err(e) => break format!("decode: {e}"),
        }
    };
    if let Ok(mut g) = m.lock() {
        g.closed = Some(why);
    }
    cv.notify_all();
}
