//! Control socket: the daemon's operator interface, used by `evpnctl`.
//!
//! Protocol: a Unix stream socket; each request is one JSON object on one
//! line, each response is one JSON object on one line, in order. A client
//! may send several requests on one connection. Requests longer than
//! [`MAX_REQUEST_LINE`] bytes or that do not parse get an error response
//! (the server never panics on client input).
//!
//! ```text
//! -> {"command":"show_neighbors","neighbor":null}
//! <- {"result":"neighbors","neighbors":[{"address":"10.255.0.1",...}]}
//! ```
//!
//! The daemon side receives `(Request, oneshot::Sender<Response>)` pairs on
//! an mpsc channel, so the task that owns the state answers; this module
//! owns no daemon state.

use std::fmt;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader as TokioBufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, Semaphore};

pub use evpnd_config::DEFAULT_SOCKET;

/// Longest request line the server accepts (requests are tiny).
pub const MAX_REQUEST_LINE: usize = 64 * 1024;
/// Clients served at once; further connections wait in the backlog.
pub const MAX_CLIENTS: usize = 64;
/// A connection with no request for this long is closed.
pub const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest response line a client accepts (a full route dump can be large).
pub const MAX_RESPONSE_LINE: usize = 1024 * 1024 * 1024;

// ---------------------------------------------------------------------------
// Requests

/// A command sent to the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// BGP sessions; one neighbor if `neighbor` is set.
    ShowNeighbors {
        #[serde(default)]
        neighbor: Option<IpAddr>,
    },
    /// EVPN RIB (received and local routes), optionally filtered.
    ShowRoutes {
        #[serde(default)]
        vni: Option<u32>,
        /// Lower-case `aa:bb:cc:dd:ee:ff`.
        #[serde(default)]
        mac: Option<String>,
        /// 2 (MAC/IP) or 3 (inclusive multicast).
        #[serde(default)]
        route_type: Option<u8>,
        /// Only paths received from this peer.
        #[serde(default)]
        neighbor: Option<IpAddr>,
    },
    ShowVnis {
        #[serde(default)]
        vni: Option<u32>,
    },
    ShowMacs {
        #[serde(default)]
        vni: Option<u32>,
        #[serde(default)]
        mac: Option<String>,
    },
    ShowVteps {
        #[serde(default)]
        vni: Option<u32>,
    },
    /// Reset a session (hard) or ask the peer to resend its routes (soft:
    /// ROUTE-REFRESH, RFC 2918, when the peer supports it).
    ClearNeighbor {
        address: IpAddr,
        soft: bool,
    },
    Status,
}

// ---------------------------------------------------------------------------
// Responses

/// The daemon's answer to one [`Request`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Neighbors {
        neighbors: Vec<NeighborInfo>,
    },
    Routes {
        routes: Vec<RouteInfo>,
    },
    Vnis {
        vnis: Vec<VniInfo>,
    },
    Macs {
        macs: Vec<MacInfo>,
    },
    Vteps {
        vteps: Vec<VtepInfo>,
    },
    /// `clear neighbor` was carried out.
    Cleared {
        address: IpAddr,
        soft: bool,
    },
    Status(StatusInfo),
    Error {
        code: ErrorCode,
        message: String,
    },
}

impl Response {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Response {
        Response::Error {
            code,
            message: message.into(),
        }
    }
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request line was not valid JSON or not a known command.
    BadRequest,
    /// The request line exceeded [`MAX_REQUEST_LINE`].
    TooLong,
    /// Asked about a neighbor or VNI that is not configured.
    NotFound,
    /// The daemon is shutting down or the owning task did not answer.
    Unavailable,
    Internal,
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorCode::BadRequest => "bad request",
            ErrorCode::TooLong => "request too long",
            ErrorCode::NotFound => "not found",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal error",
        })
    }
}

/// BGP FSM state (RFC 4271 §8.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Idle => "Idle",
            SessionState::Connect => "Connect",
            SessionState::Active => "Active",
            SessionState::OpenSent => "OpenSent",
            SessionState::OpenConfirm => "OpenConfirm",
            SessionState::Established => "Established",
        }
    }
}

impl fmt::Display for SessionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One BGP session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeighborInfo {
    pub address: IpAddr,
    pub remote_asn: u32,
    #[serde(default)]
    pub description: Option<String>,
    pub state: SessionState,
    /// Seconds in the current state (Established: session uptime).
    pub uptime_secs: u64,
    /// Peer's BGP identifier once OPEN was received.
    #[serde(default)]
    pub router_id: Option<Ipv4Addr>,
    /// Negotiated hold time, once established.
    #[serde(default)]
    pub hold_time_secs: Option<u16>,
    pub prefixes_received: u64,
    pub prefixes_sent: u64,
    pub messages_in: u64,
    pub messages_out: u64,
    pub updates_in: u64,
    pub updates_out: u64,
    /// Last NOTIFICATION or transport error, human-readable.
    #[serde(default)]
    pub last_error: Option<String>,
}

/// One path in the EVPN RIB.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteInfo {
    /// EVPN route type (RFC 7432 §7): 2 MAC/IP, 3 inclusive multicast.
    pub route_type: u8,
    /// Route distinguisher as `ADMIN:N`.
    pub rd: String,
    /// ESI (type 2), `00:...:00` for single-homed.
    #[serde(default)]
    pub esi: Option<String>,
    pub eth_tag: u32,
    #[serde(default)]
    pub mac: Option<String>,
    #[serde(default)]
    pub ip: Option<IpAddr>,
    /// VNI carried in the label field (type 2: label 1; type 3: PMSI label).
    #[serde(default)]
    pub vni: Option<u32>,
    /// Originating router's IP (type 3).
    #[serde(default)]
    pub originator_ip: Option<IpAddr>,
    #[serde(default)]
    pub next_hop: Option<IpAddr>,
    pub best: bool,
    /// Originated by this host (not received).
    pub local: bool,
    /// Neighbor the path was received from (`None` for local routes).
    #[serde(default)]
    pub peer: Option<IpAddr>,
    #[serde(default)]
    pub originator_id: Option<Ipv4Addr>,
    #[serde(default)]
    pub cluster_list: Vec<Ipv4Addr>,
    #[serde(default)]
    pub local_pref: Option<u32>,
    /// Displayed like FRR: `RT:65000:100`, `ET:8`, `MM:5, sticky MAC`.
    #[serde(default)]
    pub ext_communities: Vec<String>,
    /// MAC Mobility sequence number (RFC 7432 §7.7).
    #[serde(default)]
    pub seq: Option<u32>,
    #[serde(default)]
    pub sticky: bool,
}

impl RouteInfo {
    /// The prefix in FRR's display form, e.g.
    /// `[2]:[0]:[48]:[aa:bb:cc:dd:ee:ff]:[32]:[10.0.0.1]` or
    /// `[3]:[0]:[32]:[10.255.0.2]`.
    pub fn prefix(&self) -> String {
        let ip_part = |ip: &IpAddr| {
            let len = if ip.is_ipv4() { 32 } else { 128 };
            format!("[{len}]:[{ip}]")
        };
        match self.route_type {
            2 => {
                let mut s = format!(
                    "[2]:[{}]:[48]:[{}]",
                    self.eth_tag,
                    self.mac.as_deref().unwrap_or("?")
                );
                if let Some(ip) = &self.ip {
                    s.push(':');
                    s.push_str(&ip_part(ip));
                }
                s
            }
            3 => match &self.originator_ip {
                Some(ip) => format!("[3]:[{}]:{}", self.eth_tag, ip_part(ip)),
                None => format!("[3]:[{}]", self.eth_tag),
            },
            t => format!("[{t}]:[{}]", self.eth_tag),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperState {
    Up,
    Down,
}

impl fmt::Display for OperState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OperState::Up => "up",
            OperState::Down => "down",
        })
    }
}

/// One configured VNI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VniInfo {
    pub vni: u32,
    pub bridge: String,
    pub vxlan: String,
    /// Up when both devices exist and are up.
    pub state: OperState,
    /// "ingress-replication", "static" or "multicast".
    pub flood: String,
    pub local_macs: u64,
    pub remote_macs: u64,
    /// Remote VTEPs in the flood list.
    pub vteps: Vec<IpAddr>,
    pub rd: String,
    pub import_rt: Vec<String>,
    pub export_rt: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MacKind {
    /// Learned on a local bridge port.
    Local,
    /// From a type-2 route; points at a remote VTEP.
    Remote,
}

impl fmt::Display for MacKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MacKind::Local => "local",
            MacKind::Remote => "remote",
        })
    }
}

/// One MAC in a VNI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MacInfo {
    pub vni: u32,
    pub mac: String,
    #[serde(rename = "type")]
    pub kind: MacKind,
    /// Remote VTEP (remote MACs).
    #[serde(default)]
    pub vtep: Option<IpAddr>,
    /// Bridge port (local MACs).
    #[serde(default)]
    pub interface: Option<String>,
    /// MAC Mobility sequence number.
    pub seq: u32,
    #[serde(default)]
    pub sticky: bool,
    /// Flagged by duplicate detection (`[mac] dup_max_moves`).
    #[serde(default)]
    pub duplicate: bool,
    #[serde(default)]
    pub ips: Vec<IpAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VtepSource {
    /// Learned from a type-3 (inclusive multicast) route.
    Evpn,
    /// From `static_vteps` in the configuration.
    Static,
}

impl fmt::Display for VtepSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VtepSource::Evpn => "evpn",
            VtepSource::Static => "static",
        })
    }
}

/// One remote VTEP in a VNI's flood list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VtepInfo {
    pub vni: u32,
    pub vtep: IpAddr,
    pub source: VtepSource,
}

/// Daemon summary (`evpnctl status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusInfo {
    pub version: String,
    pub pid: u32,
    pub uptime_secs: u64,
    pub asn: u32,
    pub router_id: Ipv4Addr,
    pub vtep_ip: IpAddr,
    #[serde(default)]
    pub config_file: Option<PathBuf>,
    pub neighbors_configured: u64,
    pub neighbors_established: u64,
    pub vnis: u64,
    pub routes: u64,
    pub local_macs: u64,
    pub remote_macs: u64,
}

// ---------------------------------------------------------------------------
// Server

/// Handler side: the daemon task that answers requests.
pub type RequestSender = mpsc::Sender<(Request, oneshot::Sender<Response>)>;

/// Bind the control socket at `path`: create the parent directory, remove
/// a stale socket left by a dead daemon, refuse to start when another
/// daemon answers on it, and make it mode 0660 (owner and group only).
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)?;
        }
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            // Live if someone accepts a connection; stale otherwise.
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "{} is in use by a running process (another evpnd?)",
                        path.display()
                    ),
                ));
            }
            tracing::info!(path = %path.display(), "removing stale control socket");
            std::fs::remove_file(path)?;
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists and is not a socket; not removing it",
                    path.display()
                ),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}

/// Bind `path` and serve requests forever (see [`bind`], [`serve_listener`]).
pub async fn serve(path: &Path, handler: RequestSender) -> io::Result<()> {
    let listener = bind(path)?;
    serve_listener(listener, handler).await
}

/// Accept clients on `listener`, each served by its own task. Returns when
/// the handler channel is closed (daemon shutting down).
pub async fn serve_listener(listener: UnixListener, handler: RequestSender) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    loop {
        // Wait for a free slot first, so a flood of idle clients cannot
        // exhaust file descriptors or memory.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return Ok(()),
            },
            _ = handler.closed() => return Ok(()),
        };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let h = handler.clone();
                    tokio::spawn(async move {
                        let _permit = permit;
                        if let Err(e) = serve_client(stream, h).await {
                            tracing::debug!(error = %e, "control client connection ended with error");
                        }
                    });
                }
                Err(e) => {
                    // EMFILE/ENFILE and friends are transient: back off, keep serving.
                    tracing::warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = handler.closed() => return Ok(()),
        }
    }
}

async fn serve_client(stream: UnixStream, handler: RequestSender) -> io::Result<()> {
    let (rd, mut wr) = stream.into_split();
    let mut reader = TokioBufReader::new(rd);
    let mut line = Vec::new();
    loop {
        line.clear();
        let limit = (MAX_REQUEST_LINE + 1) as u64;
        let mut limited = (&mut reader).take(limit);
        let read = limited.read_until(b'\n', &mut line);
        let n = match tokio::time::timeout(CLIENT_IDLE_TIMEOUT, read).await {
            Ok(r) => r?,
            Err(_) => return Ok(()),
        };
        if n == 0 {
            return Ok(());
        }
        if line.last() != Some(&b'\n') && line.len() > MAX_REQUEST_LINE {
            let resp = Response::error(
                ErrorCode::TooLong,
                format!("request longer than {MAX_REQUEST_LINE} bytes"),
            );
            write_response(&mut wr, &resp).await?;
            // The rest of the line is unread: the stream is out of sync.
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let resp = match serde_json::from_str::<Request>(text) {
            Err(e) => {
                tracing::debug!(error = %e, "malformed control request");
                Response::error(ErrorCode::BadRequest, format!("cannot parse request: {e}"))
            }
            Ok(req) => dispatch(req, &handler).await,
        };
        write_response(&mut wr, &resp).await?;
    }
}

async fn dispatch(req: Request, handler: &RequestSender) -> Response {
    let (tx, rx) = oneshot::channel();
    if handler.send((req, tx)).await.is_err() {
        return Response::error(ErrorCode::Unavailable, "evpnd is shutting down");
    }
    match rx.await {
        Ok(resp) => resp,
        Err(_) => Response::error(ErrorCode::Unavailable, "the request was dropped unanswered"),
    }
}

async fn write_response<W: AsyncWriteExt + Unpin>(w: &mut W, resp: &Response) -> io::Result<()> {
    let mut buf = serde_json::to_vec(resp).unwrap_or_else(|e| {
        // Serializing our own types cannot fail in practice; never panic.
        let fallback = Response::error(ErrorCode::Internal, format!("cannot encode response: {e}"));
        serde_json::to_vec(&fallback).unwrap_or_default()
    });
    buf.push(b'\n');
    w.write_all(&buf).await?;
    w.flush().await
}

// ---------------------------------------------------------------------------
// Client

/// Why a client request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("evpnd is not running (no socket at {})", path.display())]
    NotRunning { path: PathBuf },
    #[error("permission denied on {} (run as root or as a member of the socket's group)", path.display())]
    PermissionDenied { path: PathBuf },
    #[error("control socket {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("evpnd closed the connection without answering")]
    Closed,
    #[error("cannot decode the daemon's answer: {0}")]
    Decode(#[source] serde_json::Error),
}

fn connect_error(path: &Path, e: io::Error) -> ClientError {
    match e.kind() {
        // ECONNREFUSED: a socket file with nobody listening (daemon died).
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => ClientError::NotRunning {
            path: path.to_path_buf(),
        },
        io::ErrorKind::PermissionDenied => ClientError::PermissionDenied {
            path: path.to_path_buf(),
        },
        _ => ClientError::Io {
            path: path.to_path_buf(),
            source: e,
        },
    }
}

/// Send one request and wait for its answer (blocking; for evpnctl).
/// `timeout` bounds each read and write.
pub fn request_blocking(
    path: &Path,
    req: &Request,
    timeout: Option<Duration>,
) -> Result<Response, ClientError> {
    let io_err = |source| ClientError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut stream =
        std::os::unix::net::UnixStream::connect(path).map_err(|e| connect_error(path, e))?;
    stream.set_read_timeout(timeout).map_err(io_err)?;
    stream.set_write_timeout(timeout).map_err(io_err)?;
    let mut line = serde_json::to_vec(req).map_err(ClientError::Decode)?;
    line.push(b'\n');
    stream.write_all(&line).map_err(io_err)?;
    let mut reader = io::Read::take(BufReader::new(stream), MAX_RESPONSE_LINE as u64);
    let mut buf = Vec::new();
    let n = reader.read_until(b'\n', &mut buf).map_err(io_err)?;
    if n == 0 {
        return Err(ClientError::Closed);
    }
    serde_json::from_slice(&buf).map_err(ClientError::Decode)
}

/// Send one request and wait for its answer (async).
pub async fn request(path: &Path, req: &Request) -> Result<Response, ClientError> {
    let io_err = |source| ClientError::Io {
        path: path.to_path_buf(),
        source,
    };
    let stream = UnixStream::connect(path)
        .await
        .map_err(|e| connect_error(path, e))?;
    let (rd, mut wr) = stream.into_split();
    let mut line = serde_json::to_vec(req).map_err(ClientError::Decode)?;
    line.push(b'\n');
    wr.write_all(&line).await.map_err(io_err)?;
    let mut reader = TokioBufReader::new(rd).take(MAX_RESPONSE_LINE as u64);
    let mut buf = Vec::new();
    let n = reader.read_until(b'\n', &mut buf).await.map_err(io_err)?;
    if n == 0 {
        return Err(ClientError::Closed);
    }
    serde_json::from_slice(&buf).map_err(ClientError::Decode)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_route() -> RouteInfo {
        RouteInfo {
            route_type: 2,
            rd: "10.255.0.1:2".into(),
            esi: None,
            eth_tag: 0,
            mac: Some("aa:bb:cc:dd:ee:ff".into()),
            ip: Some("10.0.0.1".parse().unwrap()),
            vni: Some(100),
            originator_ip: None,
            next_hop: Some("10.255.0.1".parse().unwrap()),
            best: true,
            local: false,
            peer: Some("10.255.0.1".parse().unwrap()),
            originator_id: None,
            cluster_list: vec![],
            local_pref: Some(100),
            ext_communities: vec!["RT:65000:100".into(), "ET:8".into()],
            seq: None,
            sticky: false,
        }
    }

    #[test]
    fn prefix_display_matches_frr() {
        let mut r = sample_route();
        assert_eq!(
            r.prefix(),
            "[2]:[0]:[48]:[aa:bb:cc:dd:ee:ff]:[32]:[10.0.0.1]"
        );
        r.ip = None;
        assert_eq!(r.prefix(), "[2]:[0]:[48]:[aa:bb:cc:dd:ee:ff]");
        r.ip = Some("2001:db8::1".parse().unwrap());
        assert_eq!(
            r.prefix(),
            "[2]:[0]:[48]:[aa:bb:cc:dd:ee:ff]:[128]:[2001:db8::1]"
        );
        r.route_type = 3;
        r.originator_ip = Some("10.255.0.2".parse().unwrap());
        assert_eq!(r.prefix(), "[3]:[0]:[32]:[10.255.0.2]");
    }

    #[test]
    fn request_wire_form() {
        let r = Request::ShowRoutes {
            vni: Some(100),
            mac: None,
            route_type: Some(2),
            neighbor: None,
        };
        let s = serde_json::to_string(&r).unwrap();
        assert_eq!(
            s,
            r#"{"command":"show_routes","vni":100,"mac":null,"route_type":2,"neighbor":null}"#
        );
        // Optional fields may be omitted by hand-written clients (socat, nc).
        let parsed: Request = serde_json::from_str(r#"{"command":"show_vnis"}"#).unwrap();
        assert_eq!(parsed, Request::ShowVnis { vni: None });
        let parsed: Request = serde_json::from_str(r#"{"command":"status"}"#).unwrap();
        assert_eq!(parsed, Request::Status);
    }

    #[tokio::test]
    async fn server_answers_and_survives_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/evpnd.sock");
        let (tx, mut rx) = mpsc::channel::<(Request, oneshot::Sender<Response>)>(8);
        let listener = bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        let server = tokio::spawn(serve_listener(listener, tx));
        tokio::spawn(async move {
            while let Some((req, reply)) = rx.recv().await {
                let resp = match req {
                    Request::ShowRoutes { .. } => Response::Routes {
                        routes: vec![sample_route()],
                    },
                    Request::ClearNeighbor { address, soft } => Response::Cleared { address, soft },
                    _ => Response::error(ErrorCode::NotFound, "nothing"),
                };
                let _ = reply.send(resp);
            }
        });

        // Garbage, an unknown command, then a valid request on one connection.
        let stream = UnixStream::connect(&path).await.unwrap();
        let (rd, mut wr) = stream.into_split();
        let mut lines = TokioBufReader::new(rd).lines();
        wr.write_all(b"not json\n{\"command\":\"reboot\"}\n{\"command\":\"show_routes\"}\n")
            .await
            .unwrap();
        for _ in 0..2 {
            let l = lines.next_line().await.unwrap().unwrap();
            let r: Response = serde_json::from_str(&l).unwrap();
            assert!(
                matches!(
                    r,
                    Response::Error {
                        code: ErrorCode::BadRequest,
                        ..
                    }
                ),
                "{l}"
            );
        }
        let l = lines.next_line().await.unwrap().unwrap();
        let r: Response = serde_json::from_str(&l).unwrap();
        assert_eq!(
            r,
            Response::Routes {
                routes: vec![sample_route()]
            }
        );

        // An over-long line gets an error and the connection is closed.
        let mut s2 = UnixStream::connect(&path).await.unwrap();
        // Exactly one byte over, so the server reads all of it (unread data
        // at close would turn into ECONNRESET for us).
        let big = vec![b'x'; MAX_REQUEST_LINE + 1];
        let _ = s2.write_all(&big).await;
        let mut out = String::new();
        let _ = TokioBufReader::new(&mut s2).read_line(&mut out).await;
        assert!(out.contains("too_long"), "{out}");

        // The async and blocking clients.
        let addr: IpAddr = "10.255.0.1".parse().unwrap();
        let r = request(
            &path,
            &Request::ClearNeighbor {
                address: addr,
                soft: true,
            },
        )
        .await
        .unwrap();
        assert_eq!(
            r,
            Response::Cleared {
                address: addr,
                soft: true
            }
        );
        let p2 = path.clone();
        let r = tokio::task::spawn_blocking(move || {
            request_blocking(&p2, &Request::Status, Some(Duration::from_secs(5)))
        })
        .await
        .unwrap()
        .unwrap();
        assert!(matches!(
            r,
            Response::Error {
                code: ErrorCode::NotFound,
                ..
            }
        ));

        // Many clients at once, each on its own connection.
        let mut tasks = Vec::new();
        for i in 0..(MAX_CLIENTS as u8 + 16) {
            let p = path.clone();
            tasks.push(tokio::spawn(async move {
                let a = IpAddr::from([10, 0, 0, i]);
                let r = request(
                    &p,
                    &Request::ClearNeighbor {
                        address: a,
                        soft: false,
                    },
                )
                .await;
                assert_eq!(
                    r.unwrap(),
                    Response::Cleared {
                        address: a,
                        soft: false
                    }
                );
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }

        // A second daemon must not steal a live socket.
        let err = bind(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        server.abort();
    }

    #[test]
    fn stale_socket_is_replaced_and_missing_daemon_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evpnd.sock");
        let err = request_blocking(&path, &Request::Status, None).unwrap_err();
        assert!(matches!(err, ClientError::NotRunning { .. }));
        assert!(err.to_string().contains("evpnd is not running"));
        // A socket file nobody listens on.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let err = request_blocking(&path, &Request::Status, None).unwrap_err();
        assert!(matches!(err, ClientError::NotRunning { .. }), "{err}");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async { bind(&path).unwrap() });
        // A regular file is never removed.
        let file = dir.path().join("plain");
        std::fs::write(&file, b"x").unwrap();
        let err = rt.block_on(async { bind(&file).unwrap_err() });
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
    }
}
