//! tokio driver for BGP sessions: a [`Speaker`] owns the listener and one
//! task per peer; each peer task owns the [`Fsm`]s of its connections, the
//! sockets and the timers, and reports to the daemon through one bounded
//! channel of [`SpeakerEvent`]s ([`event_channel`]: bounded by count and by
//! the bytes the decoded events hold).
//!
//! Backpressure: a peer task stops reading its socket while its events wait
//! for room in the daemon's channel (TCP flow control then slows the peer),
//! and [`Speaker::send`] waits while the socket's write queue is full.
//! Nothing is dropped, except UPDATEs handed to a session that is not
//! Established (they would describe a state the peer will get anew).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use evpnd_bgp::session::*;
//! use evpnd_bgp::{Asn, RawNlri, Update, AfiSafi};
//! // At most 1,024 events and about 4 MiB of decoded routes queued.
//! let (tx, mut rx) = event_channel(1024, 4 << 20);
//! let speaker = Speaker::<RawNlri>::start(
//!     SpeakerConfig {
//!         local_asn: Asn(65000),
//!         router_id: "192.0.2.1".parse().unwrap(),
//!         listen_addr: Some("0.0.0.0:179".parse().unwrap()),
//!     },
//!     tx,
//! )
//! .await?;
//! let rr = "192.0.2.254".parse().unwrap();
//! speaker.add_peer(PeerConfig::new(rr, Asn(65000))).await.ok();
//! while let Some(ev) = rx.recv().await {
//!     if let SpeakerEvent::Established { peer, .. } = ev {
//!         // Send the table, then End-of-RIB.
//!         let eor = Update::end_of_rib(AfiSafi::L2VPN_EVPN);
//!         speaker.send(peer, vec![eor]).await.ok();
//!     }
//! }
//! # Ok(()) }
//! ```

mod events;
mod md5;
mod peer;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::fsm::{
    DownReason, Fsm, FsmConfig, GracefulRestartConfig, Negotiated, PeerGrInfo, State, StopReason,
};
use crate::message::{Nlri, Update};
use crate::types::{AfiSafi, Asn};

pub use events::{event_channel, event_cost, EventReceiver, EventSender};
pub use md5::MAX_KEY_LEN as MD5_MAX_KEY_LEN;

/// Speaker-wide settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeakerConfig {
    pub local_asn: Asn,
    pub router_id: Ipv4Addr,
    /// Where to accept BGP connections; `None`: no listener (every peer
    /// must then be active). Port 0 picks a free port (tests).
    pub listen_addr: Option<SocketAddr>,
}

/// One configured neighbor.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerConfig {
    pub address: IpAddr,
    /// Expected peer ASN (equal to ours for iBGP).
    pub remote_asn: Asn,
    /// Source address of our connections (update-source).
    pub local_address: Option<IpAddr>,
    /// Peer's BGP port (179).
    pub port: u16,
    /// Proposed hold time, 0 or >= 3 seconds.
    pub hold_time: u16,
    /// Ceiling of the reconnect backoff (RFC 4271 ConnectRetryTime); the
    /// backoff starts at 1 s and doubles per failure. Also bounds the TCP
    /// connect timeout (at most 30 s).
    pub connect_retry: Duration,
    /// Never connect; wait for the peer.
    pub passive: bool,
    /// TCP MD5 signature key (RFC 2385).
    pub password: Option<String>,
    /// AFI/SAFIs to announce.
    pub afi_safis: Vec<AfiSafi>,
    pub graceful_restart: Option<GracefulRestartConfig>,
    /// Announce the Extended Message capability (RFC 8654).
    pub extended_message: bool,
}

impl PeerConfig {
    /// Defaults: port 179, hold 90 s, backoff up to 120 s, active, no MD5,
    /// L2VPN EVPN only, no GR.
    pub fn new(address: IpAddr, remote_asn: Asn) -> Self {
        PeerConfig {
            address,
            remote_asn,
            local_address: None,
            port: 179,
            hold_time: 90,
            connect_retry: Duration::from_secs(120),
            passive: false,
            password: None,
            afi_safis: vec![AfiSafi::L2VPN_EVPN],
            graceful_restart: None,
            extended_message: false,
        }
    }

    fn fsm_config(&self, speaker: &SpeakerConfig) -> FsmConfig {
        let mut c = FsmConfig::new(speaker.local_asn, speaker.router_id);
        c.remote_asn = self.remote_asn;
        c.hold_time = self.hold_time;
        let retry = self.connect_retry.max(Duration::from_secs(1));
        c.connect_retry = retry.min(Duration::from_secs(30));
        c.idle_hold_max = retry;
        c.idle_hold_min = c.idle_hold_min.min(retry);
        c.passive = self.passive;
        c.afi_safis = self.afi_safis.clone();
        c.graceful_restart = self.graceful_restart;
        c.extended_message = self.extended_message;
        c
    }
}

/// What the daemon hears from the speaker. Per peer, events come in the
/// order they happened (UPDATEs in wire order).
// UPDATE is the common (and large) event; boxing it costs an allocation each.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum SpeakerEvent<N: Nlri> {
    Established {
        peer: IpAddr,
        info: Negotiated,
    },
    Update {
        peer: IpAddr,
        update: Update<N>,
    },
    EndOfRib {
        peer: IpAddr,
        afi_safi: AfiSafi,
    },
    /// The peer asked for our routes again (RFC 2918).
    RouteRefresh {
        peer: IpAddr,
        afi_safi: AfiSafi,
    },
    /// An Established session ended. `graceful_restart` is set when the
    /// peer's routes should be kept as stale (RFC 4724 §4.2) for its
    /// restart time.
    Down {
        peer: IpAddr,
        reason: DownReason,
        graceful_restart: Option<PeerGrInfo>,
    },
    StateChanged {
        peer: IpAddr,
        state: State,
    },
}

/// What [`Speaker::clear`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClearKind {
    /// Ask the peer to re-send its routes (ROUTE-REFRESH).
    Soft,
    /// Cease / Administrative Reset, then reconnect.
    Hard,
}

/// The last thing that went wrong with a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerError {
    /// A session (or an attempt past OPEN) ended.
    Session(DownReason),
    /// The TCP connection could not be made.
    Connect(io::ErrorKind),
}

/// A snapshot of one peer for `show` commands.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerStatus {
    pub address: IpAddr,
    pub remote_asn: Asn,
    pub state: State,
    /// Time since the session became Established.
    pub uptime: Option<Duration>,
    pub messages_in: u64,
    pub messages_out: u64,
    pub updates_in: u64,
    pub updates_out: u64,
    /// NLRI received in UPDATEs (announcements, not withdrawals) since the
    /// session came up.
    pub prefixes_received: u64,
    /// Sessions that reached Established.
    pub established_count: u64,
    pub last_error: Option<PeerError>,
    pub negotiated: Option<Negotiated>,
}

/// The counters a peer task keeps; `PeerStatus` is made from it.
#[derive(Debug, Clone)]
struct StatusCell {
    status: PeerStatus,
    established_at: Option<Instant>,
}

type SharedStatus = Arc<Mutex<StatusCell>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means another task panicked mid-update of plain
    // counters; they are still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Errors of the [`Speaker`] API.
#[derive(Debug, thiserror::Error)]
pub enum SpeakerError {
    #[error("peer {0} is not configured")]
    UnknownPeer(IpAddr),
    #[error("peer {0} is already configured")]
    DuplicatePeer(IpAddr),
    #[error("invalid peer configuration: {0}")]
    InvalidConfig(&'static str),
    #[error("the speaker is shut down")]
    ShutDown,
}

/// Commands to a peer task.
enum PeerCmd {
    /// The listener accepted a connection from this peer.
    Inbound(tokio::net::TcpStream),
    Clear(ClearKind),
    /// Stop for good (Cease with this subcode) and end the task.
    Stop(StopReason),
}

/// Bounded channel sizes.
const CTRL_QUEUE: usize = 16;
const OUT_QUEUE: usize = 64;

struct PeerHandle<N: Nlri> {
    ctrl: mpsc::Sender<PeerCmd>,
    out: mpsc::Sender<Vec<Update<N>>>,
    status: SharedStatus,
    task: JoinHandle<()>,
    password: Option<String>,
}

struct Shared<N: Nlri> {
    cfg: SpeakerConfig,
    events: EventSender<N>,
    peers: Mutex<HashMap<IpAddr, PeerHandle<N>>>,
    listener: Option<Arc<TcpListener>>,
    listen_addr: Option<SocketAddr>,
    accept_task: Mutex<Option<JoinHandle<()>>>,
    shut_down: std::sync::atomic::AtomicBool,
}

impl<N: Nlri> Drop for Shared<N> {
    /// Last handle gone: stop listening. Peer tasks notice their closed
    /// command channels and stop with Cease / Administrative Shutdown.
    fn drop(&mut self) {
        if let Some(t) = lock(&self.accept_task).take() {
            t.abort();
        }
    }
}

/// A BGP speaker: cheap to clone; every clone drives the same sessions.
pub struct Speaker<N: Nlri> {
    shared: Arc<Shared<N>>,
}

impl<N: Nlri> Clone for Speaker<N> {
    fn clone(&self) -> Self {
        Speaker {
            shared: self.shared.clone(),
        }
    }
}

/// Addresses as configured and as seen on a dual-stack socket compare
/// equal.
fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

impl<N: Nlri + Send + Sync + 'static> Speaker<N> {
    /// Bind the listener (if any) and start accepting. Events for all peers
    /// go to `events`: a plain `mpsc::Sender` (bounded by count) or the
    /// sender of an [`event_channel`] (bounded by count and bytes).
    pub async fn start(cfg: SpeakerConfig, events: impl Into<EventSender<N>>) -> io::Result<Self> {
        let events = events.into();
        let listener = match cfg.listen_addr {
            Some(addr) => {
                let sock = if addr.is_ipv4() {
                    TcpSocket::new_v4()?
                } else {
                    TcpSocket::new_v6()?
                };
                sock.set_reuseaddr(true)?;
                sock.bind(addr)?;
                let l = sock.listen(128)?;
                info!(addr = %l.local_addr()?, "bgp listening");
                Some(Arc::new(l))
            }
            None => None,
        };
        let listen_addr = match &listener {
            Some(l) => Some(l.local_addr()?),
            None => None,
        };
        let shared = Arc::new(Shared {
            cfg,
            events,
            peers: Mutex::new(HashMap::new()),
            listener: listener.clone(),
            listen_addr,
            accept_task: Mutex::new(None),
            shut_down: std::sync::atomic::AtomicBool::new(false),
        });
        if let Some(l) = listener {
            let weak = Arc::downgrade(&shared);
            let task = tokio::spawn(accept_loop(l, weak));
            *lock(&shared.accept_task) = Some(task);
        }
        Ok(Speaker { shared })
    }

    /// The address the listener is bound to (with the real port).
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.shared.listen_addr
    }

    pub fn config(&self) -> &SpeakerConfig {
        &self.shared.cfg
    }

    /// Configure a peer and start its session.
    pub async fn add_peer(&self, cfg: PeerConfig) -> Result<(), SpeakerError> {
        if self
            .shared
            .shut_down
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return Err(SpeakerError::ShutDown);
        }
        if cfg.hold_time == 1 || cfg.hold_time == 2 {
            return Err(SpeakerError::InvalidConfig(
                "hold time must be 0 or at least 3 seconds",
            ));
        }
        if cfg.afi_safis.is_empty() {
            return Err(SpeakerError::InvalidConfig("no AFI/SAFI configured"));
        }
        if cfg
            .password
            .as_ref()
            .is_some_and(|p| p.len() > md5::MAX_KEY_LEN)
        {
            return Err(SpeakerError::InvalidConfig(
                "TCP MD5 password longer than 80 bytes",
            ));
        }
        let addr = canonical(cfg.address);
        let mut peers = lock(&self.shared.peers);
        if peers.contains_key(&addr) {
            return Err(SpeakerError::DuplicatePeer(addr));
        }
        if let (Some(l), Some(pw)) = (&self.shared.listener, &cfg.password) {
            let v6 = self.shared.listen_addr.is_some_and(|a| a.is_ipv6());
            if let Err(e) = md5::set_md5(l.as_raw_fd(), v6, addr, Some(pw.as_bytes())) {
                error!(peer = %addr, error = %e, "cannot set TCP MD5 key on the listener: connections from this peer will fail");
            }
        }
        let status = Arc::new(Mutex::new(StatusCell {
            status: PeerStatus {
                address: addr,
                remote_asn: cfg.remote_asn,
                state: State::Idle,
                uptime: None,
                messages_in: 0,
                messages_out: 0,
                updates_in: 0,
                updates_out: 0,
                prefixes_received: 0,
                established_count: 0,
                last_error: None,
                negotiated: None,
            },
            established_at: None,
        }));
        let (ctrl_tx, ctrl_rx) = mpsc::channel(CTRL_QUEUE);
        let (out_tx, out_rx) = mpsc::channel(OUT_QUEUE);
        let fsm = Fsm::new(cfg.fsm_config(&self.shared.cfg));
        let password = cfg.password.clone();
        let task = peer::PeerTask::new(
            cfg,
            addr,
            fsm,
            ctrl_rx,
            out_rx,
            self.shared.events.clone(),
            status.clone(),
        );
        let task = tokio::spawn(task.run());
        peers.insert(
            addr,
            PeerHandle {
                ctrl: ctrl_tx,
                out: out_tx,
                status,
                task,
                password,
            },
        );
        info!(peer = %addr, "bgp peer added");
        Ok(())
    }

    /// Remove a peer: Cease / Peer De-configured, then forget it.
    pub async fn remove_peer(&self, addr: IpAddr) -> Result<(), SpeakerError> {
        let addr = canonical(addr);
        let handle = lock(&self.shared.peers)
            .remove(&addr)
            .ok_or(SpeakerError::UnknownPeer(addr))?;
        if let (Some(l), Some(_)) = (&self.shared.listener, &handle.password) {
            let v6 = self.shared.listen_addr.is_some_and(|a| a.is_ipv6());
            if let Err(e) = md5::set_md5(l.as_raw_fd(), v6, addr, None) {
                warn!(peer = %addr, error = %e, "cannot remove TCP MD5 key from the listener");
            }
        }
        stop_peer(addr, handle, StopReason::PeerDeconfigured).await;
        info!(peer = %addr, "bgp peer removed");
        Ok(())
    }

    /// Queue UPDATEs for a peer, in order. Waits while the peer's queue is
    /// full. UPDATEs reaching a session that is not Established are dropped
    /// (logged): the daemon sends its table again on `Established`.
    pub async fn send(&self, peer: IpAddr, msgs: Vec<Update<N>>) -> Result<(), SpeakerError> {
        let addr = canonical(peer);
        let tx = lock(&self.shared.peers)
            .get(&addr)
            .map(|h| h.out.clone())
            .ok_or(SpeakerError::UnknownPeer(addr))?;
        tx.send(msgs)
            .await
            .map_err(|_| SpeakerError::UnknownPeer(addr))
    }

    /// Soft: ROUTE-REFRESH for every negotiated AFI/SAFI. Hard: Cease /
    /// Administrative Reset and reconnect.
    pub async fn clear(&self, peer: IpAddr, kind: ClearKind) -> Result<(), SpeakerError> {
        let addr = canonical(peer);
        let tx = lock(&self.shared.peers)
            .get(&addr)
            .map(|h| h.ctrl.clone())
            .ok_or(SpeakerError::UnknownPeer(addr))?;
        tx.send(PeerCmd::Clear(kind))
            .await
            .map_err(|_| SpeakerError::UnknownPeer(addr))
    }

    /// Status of every peer, sorted by address.
    pub async fn peers(&self) -> Vec<PeerStatus> {
        let peers = lock(&self.shared.peers);
        let mut v: Vec<PeerStatus> = peers
            .values()
            .map(|h| {
                let cell = lock(&h.status);
                let mut s = cell.status.clone();
                s.uptime = cell.established_at.map(|t| t.elapsed());
                s
            })
            .collect();
        v.sort_by_key(|s| s.address);
        v
    }

    /// Status of one peer.
    pub async fn peer(&self, peer: IpAddr) -> Option<PeerStatus> {
        let addr = canonical(peer);
        self.peers().await.into_iter().find(|s| s.address == addr)
    }

    /// Cease / Administrative Shutdown to every peer, stop listening, end
    /// all tasks.
    pub async fn shutdown(&self) {
        self.shutdown_with(StopReason::AdminShutdown).await
    }

    /// Stop every session with `reason` (e.g. [`StopReason::GracefulRestart`]
    /// to close them without a NOTIFICATION so that peers keep our routes
    /// while we restart) and stop listening.
    pub async fn shutdown_with(&self, reason: StopReason) {
        self.shared
            .shut_down
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = lock(&self.shared.accept_task).take() {
            t.abort();
        }
        let peers: Vec<(IpAddr, PeerHandle<N>)> = lock(&self.shared.peers).drain().collect();
        // Tell everyone first, then wait: the Ceases go out in parallel.
        for (_, h) in &peers {
            let _ = h.ctrl.send(PeerCmd::Stop(reason)).await;
        }
        for (addr, h) in peers {
            wait_task(addr, h.task).await;
        }
        info!("bgp speaker shut down");
    }
}

/// Ask a peer task to stop and wait for it (bounded: the task itself limits
/// how long it waits for the socket and the event channel).
async fn stop_peer<N: Nlri>(addr: IpAddr, h: PeerHandle<N>, reason: StopReason) {
    if h.ctrl.send(PeerCmd::Stop(reason)).await.is_err() {
        return;
    }
    wait_task(addr, h.task).await;
}

async fn wait_task(addr: IpAddr, mut task: JoinHandle<()>) {
    if tokio::time::timeout(Duration::from_secs(10), &mut task)
        .await
        .is_err()
    {
        warn!(peer = %addr, "bgp peer task did not stop in time; aborting it");
        task.abort();
    }
}

/// Accept connections and hand them to the peer they come from; refuse the
/// rest (close at once, RFC 4271 §8 has nothing to say to strangers).
async fn accept_loop<N: Nlri + Send + Sync + 'static>(
    listener: Arc<TcpListener>,
    shared: std::sync::Weak<Shared<N>>,
) {
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                warn!(error = %e, "bgp accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let ip = canonical(remote.ip());
        let ctrl = lock(&shared.peers).get(&ip).map(|h| h.ctrl.clone());
        match ctrl {
            None => {
                warn!(%remote, "refusing BGP connection from an address that is not a configured peer");
                drop(stream);
            }
            Some(tx) => {
                if let Err(e) = stream.set_nodelay(true) {
                    warn!(%remote, error = %e, "cannot set TCP_NODELAY");
                }
                if tx.try_send(PeerCmd::Inbound(stream)).is_err() {
                    warn!(%remote, "peer task busy or gone; dropping inbound connection");
                }
            }
        }
    }
}
