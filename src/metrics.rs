//! Prometheus metrics and the `GET /metrics` endpoint (`control.metrics`).
//!
//! [`Metrics`] is shared as `Arc<Metrics>`; every update is lock-free or a
//! short read lock (prometheus-client families). Series are documented in
//! docs/metrics.md.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::control::SessionState;

/// All BGP FSM states, to publish a 0/1 gauge per state.
const STATES: [SessionState; 6] = [
    SessionState::Idle,
    SessionState::Connect,
    SessionState::Active,
    SessionState::OpenSent,
    SessionState::OpenConfirm,
    SessionState::Established,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerStateLabels {
    peer: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route_type: u8,
    vni: u32,
}

/// Kinds of kernel entries evpnd writes or watches (label `kind`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum KernelEntryKind {
    /// Remote MAC: FDB entry pointing at a remote VTEP.
    RemoteMac,
    /// Flood-list entry (00:00:00:00:00:00 dst VTEP).
    Flood,
    /// ARP/ND suppression neighbor entry.
    Neighbor,
    /// MAC learned on a local bridge port.
    LocalMac,
}

impl KernelEntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KernelEntryKind::RemoteMac => "remote_mac",
            KernelEntryKind::Flood => "flood",
            KernelEntryKind::Neighbor => "neighbor",
            KernelEntryKind::LocalMac => "local_mac",
        }
    }
}

impl EncodeLabelValue for KernelEntryKind {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: KernelEntryKind,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// The daemon's metrics. Cheap to update from any task.
pub struct Metrics {
    registry: Registry,
    session_state: Family<PeerStateLabels, Gauge>,
    updates_in: Family<PeerLabels, Counter>,
    updates_out: Family<PeerLabels, Counter>,
    routes_received: Family<RouteLabels, Gauge>,
    routes_best: Family<RouteLabels, Gauge>,
    kernel_entries: Family<KindLabels, Gauge>,
    netlink_errors: Counter,
    netlink_resyncs: Counter,
    apply_latency: Histogram,
    config_reloads: Family<ResultLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("evpnd");
        let session_state = Family::<PeerStateLabels, Gauge>::default();
        registry.register(
            "bgp_session_state",
            "1 for the current FSM state of each BGP neighbor, 0 for the others",
            session_state.clone(),
        );
        let updates_in = Family::<PeerLabels, Counter>::default();
        registry.register(
            "bgp_updates_received",
            "BGP UPDATE messages received per neighbor",
            updates_in.clone(),
        );
        let updates_out = Family::<PeerLabels, Counter>::default();
        registry.register(
            "bgp_updates_sent",
            "BGP UPDATE messages sent per neighbor",
            updates_out.clone(),
        );
        let routes_received = Family::<RouteLabels, Gauge>::default();
        registry.register(
            "evpn_routes_received",
            "EVPN paths received from neighbors, per route type and VNI",
            routes_received.clone(),
        );
        let routes_best = Family::<RouteLabels, Gauge>::default();
        registry.register(
            "evpn_routes_best",
            "EVPN routes with a selected best path, per route type and VNI",
            routes_best.clone(),
        );
        let kernel_entries = Family::<KindLabels, Gauge>::default();
        registry.register(
            "kernel_entries",
            "Kernel FDB/neighbor entries managed or watched by evpnd, per kind",
            kernel_entries.clone(),
        );
        let netlink_errors = Counter::default();
        registry.register(
            "netlink_errors",
            "Netlink requests the kernel rejected",
            netlink_errors.clone(),
        );
        let netlink_resyncs = Counter::default();
        registry.register(
            "netlink_resyncs",
            "Full kernel table re-dumps (periodic or after a lost notification)",
            netlink_resyncs.clone(),
        );
        // 100 µs .. ~3.3 s.
        let apply_latency = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register_with_unit(
            "dataplane_apply",
            "Time for the dataplane to take one batch of intents (queued to the netlink writer; rises when the kernel falls behind)",
            Unit::Seconds,
            apply_latency.clone(),
        );
        let config_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "config_reloads",
            "Configuration reloads (SIGHUP), by result",
            config_reloads.clone(),
        );
        // Both outcomes exist from the start so rate() works on the first one.
        drop(config_reloads.get_or_create(&ResultLabels { result: "ok" }));
        drop(config_reloads.get_or_create(&ResultLabels { result: "error" }));
        Metrics {
            registry,
            session_state,
            updates_in,
            updates_out,
            routes_received,
            routes_best,
            kernel_entries,
            netlink_errors,
            netlink_resyncs,
            apply_latency,
            config_reloads,
        }
    }

    /// Record that `peer`'s session is now in `state`.
    pub fn set_session_state(&self, peer: IpAddr, state: SessionState) {
        let peer = peer.to_string();
        for s in STATES {
            let v = i64::from(s == state);
            self.session_state
                .get_or_create(&PeerStateLabels {
                    peer: peer.clone(),
                    state: s.as_str(),
                })
                .set(v);
        }
    }

    /// Forget a neighbor removed from the configuration.
    pub fn remove_peer(&self, peer: IpAddr) {
        let peer = peer.to_string();
        for s in STATES {
            self.session_state.remove(&PeerStateLabels {
                peer: peer.clone(),
                state: s.as_str(),
            });
        }
        let l = PeerLabels { peer };
        self.updates_in.remove(&l);
        self.updates_out.remove(&l);
    }

    pub fn inc_updates_in(&self, peer: IpAddr) {
        self.updates_in
            .get_or_create(&PeerLabels {
                peer: peer.to_string(),
            })
            .inc();
    }

    pub fn inc_updates_out(&self, peer: IpAddr) {
        self.updates_out
            .get_or_create(&PeerLabels {
                peer: peer.to_string(),
            })
            .inc();
    }

    /// Current RIB counts for one route type in one VNI.
    pub fn set_routes(&self, route_type: u8, vni: u32, received: u64, best: u64) {
        let l = RouteLabels { route_type, vni };
        self.routes_received
            .get_or_create(&l)
            .set(i64::try_from(received).unwrap_or(i64::MAX));
        self.routes_best
            .get_or_create(&l)
            .set(i64::try_from(best).unwrap_or(i64::MAX));
    }

    /// Forget a VNI removed from the configuration.
    pub fn remove_vni(&self, vni: u32) {
        for route_type in [2u8, 3] {
            let l = RouteLabels { route_type, vni };
            self.routes_received.remove(&l);
            self.routes_best.remove(&l);
        }
    }

    pub fn set_kernel_entries(&self, kind: KernelEntryKind, count: u64) {
        self.kernel_entries
            .get_or_create(&KindLabels { kind })
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    pub fn inc_netlink_errors(&self) {
        self.netlink_errors.inc();
    }

    pub fn inc_netlink_resyncs(&self) {
        self.netlink_resyncs.inc();
    }

    /// Bring the netlink counters up to the dataplane's running totals
    /// (counters only move forward).
    pub fn set_netlink_totals(&self, errors: u64, resyncs: u64) {
        let e = self.netlink_errors.get();
        if errors > e {
            self.netlink_errors.inc_by(errors - e);
        }
        let r = self.netlink_resyncs.get();
        if resyncs > r {
            self.netlink_resyncs.inc_by(resyncs - r);
        }
    }

    pub fn observe_apply_latency(&self, d: Duration) {
        self.apply_latency.observe(d.as_secs_f64());
    }

    pub fn inc_config_reloads(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.config_reloads
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        out
    }
}

// ---------------------------------------------------------------------------
// HTTP endpoint

/// Longest request head accepted.
const MAX_HEAD: usize = 8 * 1024;
/// Time a client gets to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Simultaneous scrapes served; more wait in the accept queue.
const MAX_CLIENTS: usize = 16;

/// Bind the metrics endpoint (do this at start-up so a bad address fails early).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serve `GET /metrics` on `listener` forever. Anything else gets 404/405/400;
/// every connection is closed after one response.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    loop {
        let permit = match slots.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => return Ok(()),
        };
        match listener.accept().await {
            Ok((stream, peer)) => {
                let m = metrics.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    if let Err(e) = handle_http(stream, &m).await {
                        tracing::debug!(%peer, error = %e, "metrics client error");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn handle_http(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let head = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(Some(h))) => h,
        Ok(Ok(None)) => {
            return respond(
                &mut stream,
                "400 Bad Request",
                "text/plain",
                b"bad request\n",
                true,
            )
            .await
        }
        Ok(Err(e)) => return Err(e),
        Err(_) => return Ok(()),
    };
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split_whitespace();
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    let (Some(method), Some(target), Some(version)) = (method, target, version) else {
        return respond(
            &mut stream,
            "400 Bad Request",
            "text/plain",
            b"bad request\n",
            true,
        )
        .await;
    };
    if !version.starts_with("HTTP/1.") {
        return respond(
            &mut stream,
            "400 Bad Request",
            "text/plain",
            b"bad request\n",
            true,
        )
        .await;
    }
    let path = target.split('?').next().unwrap_or("");
    if path != "/metrics" {
        return respond(
            &mut stream,
            "404 Not Found",
            "text/plain",
            b"not found; try /metrics\n",
            true,
        )
        .await;
    }
    let with_body = match method {
        "GET" => true,
        "HEAD" => false,
        _ => {
            return respond(
                &mut stream,
                "405 Method Not Allowed",
                "text/plain",
                b"only GET\n",
                true,
            )
            .await
        }
    };
    let body = metrics.encode();
    respond(
        &mut stream,
        "200 OK",
        "text/plain; version=0.0.4; charset=utf-8",
        body.as_bytes(),
        with_body,
    )
    .await
}

/// Read up to the blank line ending the request head. `None` if it is too
/// long, not UTF-8, or the client closed early.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
            return Ok(String::from_utf8(buf).ok());
        }
        if buf.len() > MAX_HEAD {
            return Ok(None);
        }
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
    with_body: bool,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if with_body {
        stream.write_all(body).await?;
    }
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: SocketAddr, raw: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(raw).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
            .await
            .unwrap()
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[tokio::test]
    async fn endpoint_serves_documented_series() {
        let m = Arc::new(Metrics::new());
        let peer: IpAddr = "10.255.0.1".parse().unwrap();
        m.set_session_state(peer, SessionState::Established);
        m.inc_updates_in(peer);
        m.inc_updates_in(peer);
        m.inc_updates_out(peer);
        m.set_routes(2, 100, 7, 5);
        m.set_kernel_entries(KernelEntryKind::RemoteMac, 5);
        m.set_kernel_entries(KernelEntryKind::Flood, 2);
        m.inc_netlink_errors();
        m.inc_netlink_resyncs();
        m.observe_apply_latency(Duration::from_millis(3));
        m.inc_config_reloads(true);

        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener, m.clone()));

        let resp = get(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
        assert!(resp.contains("text/plain; version=0.0.4"));
        let docs = include_str!("../docs/metrics.md");
        for series in [
            "evpnd_bgp_session_state{peer=\"10.255.0.1\",state=\"Established\"} 1",
            "evpnd_bgp_session_state{peer=\"10.255.0.1\",state=\"Idle\"} 0",
            "evpnd_bgp_updates_received_total{peer=\"10.255.0.1\"} 2",
            "evpnd_bgp_updates_sent_total{peer=\"10.255.0.1\"} 1",
            "evpnd_evpn_routes_received{route_type=\"2\",vni=\"100\"} 7",
            "evpnd_evpn_routes_best{route_type=\"2\",vni=\"100\"} 5",
            "evpnd_kernel_entries{kind=\"remote_mac\"} 5",
            "evpnd_kernel_entries{kind=\"flood\"} 2",
            "evpnd_netlink_errors_total 1",
            "evpnd_netlink_resyncs_total 1",
            "evpnd_dataplane_apply_seconds_count 1",
            "evpnd_dataplane_apply_seconds_bucket{le=\"0.0032\"} 1",
            "evpnd_config_reloads_total{result=\"ok\"} 1",
            "evpnd_config_reloads_total{result=\"error\"} 0",
        ] {
            assert!(resp.contains(series), "missing {series} in:\n{resp}");
            let name = series.split(['{', ' ']).next().unwrap();
            let base = name.trim_end_matches("_bucket").trim_end_matches("_count");
            assert!(
                docs.contains(base),
                "{base} not documented in docs/metrics.md"
            );
        }
        // Every series family in the output is documented.
        for line in resp.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split_whitespace().nth(2).unwrap();
            assert!(
                docs.contains(name),
                "{name} not documented in docs/metrics.md"
            );
        }

        let resp = get(addr, b"HEAD /metrics HTTP/1.0\r\n\r\n").await;
        assert!(resp.starts_with("HTTP/1.1 200 OK"));
        assert!(!resp.contains("evpnd_netlink"));
        assert!(get(addr, b"GET / HTTP/1.1\r\n\r\n")
            .await
            .starts_with("HTTP/1.1 404"));
        assert!(get(addr, b"POST /metrics HTTP/1.1\r\n\r\n")
            .await
            .starts_with("HTTP/1.1 405"));
        assert!(get(addr, b"\x00\xff garbage\r\n\r\n")
            .await
            .starts_with("HTTP/1.1 400"));
        // One byte over the limit: the server reads it all before answering.
        let huge = vec![b'A'; MAX_HEAD + 1];
        assert!(get(addr, &huge).await.starts_with("HTTP/1.1 400"));
        // Still serving after all that.
        let resp = get(addr, b"GET /metrics?x=1 HTTP/1.1\r\n\r\n").await;
        assert!(resp.starts_with("HTTP/1.1 200 OK"));

        m.remove_peer(peer);
        assert!(!m.encode().contains("10.255.0.1"));
        server.abort();
    }
}
