//! Sans-IO BGP session FSM (RFC 4271 §8).
//!
//! One [`Fsm`] drives one BGP connection attempt after another for one peer:
//! events in ([`Event`]), actions out ([`Action`]). It never touches a socket
//! or a clock; the driver in [`crate::session`] runs the timers it asks for
//! and performs the I/O. Connection collisions (§6.8) involve two
//! connections, so the driver runs one `Fsm` per connection and asks
//! [`resolve_collision`] which to keep.
//!
//! Simplifications from §8 (all allowed by the RFC's optional attributes):
//! - No DelayOpen; OPEN is sent as soon as TCP is up.
//! - A failed session or TCP attempt always goes back to Idle, and the
//!   restart is damped by the IdleHold timer (the optional
//!   DampPeerOscillations attribute, §8.1.1), with an exponential backoff
//!   that resets once a session stayed Established for `stable_time`.
//! - While the automatic restart is pending (Idle, IdleHold running), an
//!   incoming connection is accepted: that is RFC 4271's
//!   AutomaticStart_with_PassiveTcpEstablishment (event 5) followed by
//!   event 17. Refusing it (plain §8.2.2 Idle) makes two damped speakers
//!   keep knocking at each other's door while the other is Idle, forever
//!   (seen in tests); FRR accepts too. The damping restrains our own
//!   connects only. After a manual stop, Idle refuses everything.

use std::net::Ipv4Addr;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tracing::{debug, info, warn};

use crate::error::{notif, DecodeError};
use crate::message::RouteRefresh;
use crate::message::{Capability, GracefulRestartCap, Message, Nlri, Notification, Open, Update};
use crate::types::{AfiSafi, Asn};

/// BGP version spoken (RFC 4271 §4.2).
pub const BGP_VERSION: u8 = 4;
/// Hold timer used in OpenSent before the hold time is negotiated (§8.2.2:
/// "a large value", suggested 4 minutes).
pub const OPEN_SENT_HOLD: Duration = Duration::from_secs(240);

/// Session states (RFC 4271 §8.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            State::Idle => "Idle",
            State::Connect => "Connect",
            State::Active => "Active",
            State::OpenSent => "OpenSent",
            State::OpenConfirm => "OpenConfirm",
            State::Established => "Established",
        };
        f.write_str(s)
    }
}

/// The timers the FSM asks the driver to run. Starting a running timer
/// restarts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimerKind {
    /// §8: TCP connect timeout in Connect; retry period in Active.
    ConnectRetry,
    /// §8: peer must send something within the hold time.
    Hold,
    /// §8: we send KEEPALIVE every hold/3.
    Keepalive,
    /// §8.1.1 IdleHoldTimer: delay before an automatic restart (backoff).
    IdleHold,
    /// Session considered stable after this long Established; resets the
    /// backoff.
    Stable,
}

impl TimerKind {
    pub const ALL: [TimerKind; 5] = [
        TimerKind::ConnectRetry,
        TimerKind::Hold,
        TimerKind::Keepalive,
        TimerKind::IdleHold,
        TimerKind::Stable,
    ];

    /// Dense index, for drivers that keep timers in an array.
    pub fn index(self) -> usize {
        match self {
            TimerKind::ConnectRetry => 0,
            TimerKind::Hold => 1,
            TimerKind::Keepalive => 2,
            TimerKind::IdleHold => 3,
            TimerKind::Stable => 4,
        }
    }
}

/// Why we close a session on purpose; each maps to a Cease subcode
/// (RFC 4486).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StopReason {
    /// Administrative shutdown (subcode 2); no automatic restart.
    AdminShutdown,
    /// Peer removed from the configuration (subcode 3); no restart.
    PeerDeconfigured,
    /// Administrative reset (subcode 4); restarts automatically.
    AdminReset,
    /// Lost a connection collision (subcode 7, §6.8).
    CollisionResolution,
    /// Connection refused by configuration or state (subcode 5).
    ConnectionRejected,
    /// We are about to restart with forwarding state kept (RFC 4724 §4):
    /// the connection is closed without a NOTIFICATION, which would end
    /// graceful restart at the peer and make it withdraw our routes
    /// (RFC 4724 §4.2; RFC 8538 only changes that with the N bit).
    GracefulRestart,
}

impl StopReason {
    pub fn cease_subcode(self) -> u8 {
        match self {
            StopReason::AdminShutdown => notif::CEASE_ADMIN_SHUTDOWN,
            StopReason::PeerDeconfigured => notif::CEASE_PEER_DECONFIGURED,
            StopReason::AdminReset => notif::CEASE_ADMIN_RESET,
            StopReason::CollisionResolution => notif::CEASE_COLLISION_RESOLUTION,
            StopReason::ConnectionRejected => notif::CEASE_CONNECTION_REJECTED,
            // Never sent (see `sends_cease`); what the stop amounts to.
            StopReason::GracefulRestart => notif::CEASE_ADMIN_SHUTDOWN,
        }
    }

    /// Whether stopping an opened session sends a Cease NOTIFICATION.
    pub fn sends_cease(self) -> bool {
        self != StopReason::GracefulRestart
    }

    /// Whether the FSM restarts by itself after this stop.
    fn restarts(self) -> bool {
        matches!(self, StopReason::AdminReset)
    }
}

/// Events fed to [`Fsm::handle`] (RFC 4271 §8.1 names in the docs).
#[derive(Debug, Clone, PartialEq)]
pub enum Event<N: Nlri> {
    /// Event 1: start, and keep restarting automatically.
    ManualStart,
    /// Event 2 (with the Cease subcode to send).
    ManualStop(StopReason),
    /// Event 3: the IdleHold restart; also usable by the driver.
    AutomaticStart,
    /// Event 16 Tcp_CR_Acked: our outgoing connection is up.
    TcpConnectionAcked,
    /// Event 17: an incoming connection from the peer was accepted.
    TcpConnectionConfirmed,
    /// Event 18: the TCP connection failed or was closed by the peer.
    TcpConnectionFails,
    /// Event 19 BGPOpen.
    OpenReceived(Open),
    /// Event 26 KeepAliveMsg.
    KeepaliveReceived,
    /// Event 27 UpdateMsg.
    UpdateReceived(Update<N>),
    /// Events 24/25 NotifMsg.
    NotificationReceived(Notification),
    /// ROUTE-REFRESH (RFC 2918).
    RouteRefreshReceived(RouteRefresh),
    /// Events 21/22/28: a message that could not be decoded.
    DecodeError(DecodeError),
    /// Events 9/10/11/13 and our Stable timer.
    TimerExpired(TimerKind),
    /// Send an UPDATE (only in Established; restarts the keepalive timer,
    /// §8.2.2 "each time the local system sends a KEEPALIVE or UPDATE").
    SendUpdate(Update<N>),
    /// Ask the peer to re-send its routes (RFC 2918).
    SendRouteRefresh(AfiSafi),
}

impl<N: Nlri> From<Message<N>> for Event<N> {
    fn from(m: Message<N>) -> Self {
        match m {
            Message::Open(o) => Event::OpenReceived(o),
            Message::Update(u) => Event::UpdateReceived(u),
            Message::Notification(n) => Event::NotificationReceived(n),
            Message::Keepalive => Event::KeepaliveReceived,
            Message::RouteRefresh(r) => Event::RouteRefreshReceived(r),
        }
    }
}

/// Why an Established session went down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    /// We stopped it on purpose (Cease sent).
    Stopped(StopReason),
    /// We found an error and sent this NOTIFICATION.
    NotificationSent { code: u8, subcode: u8 },
    /// The peer sent a NOTIFICATION.
    NotificationReceived { code: u8, subcode: u8, data: Bytes },
    /// The peer went silent for the hold time (we sent 4/0).
    HoldTimerExpired,
    /// The TCP connection closed or failed without a NOTIFICATION.
    ConnectionLost,
    /// The peer opened a new session while the old one was Established
    /// (RFC 4724 §4.2: it restarted).
    PeerRestarted,
}

impl DownReason {
    /// RFC 4724 §4.2: the receiving speaker keeps the peer's routes (stale)
    /// when the session ends without a NOTIFICATION exchange (we do not
    /// announce the N bit of RFC 8538). Hold timer expiry is included: it is
    /// how a peer that died without a FIN shows up, which is the restart GR
    /// exists for (FRR does the same).
    pub fn graceful_restart_applies(&self) -> bool {
        matches!(
            self,
            DownReason::ConnectionLost | DownReason::HoldTimerExpired | DownReason::PeerRestarted
        )
    }
}

impl std::fmt::Display for DownReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DownReason::Stopped(r) => write!(f, "stopped ({r:?})"),
            DownReason::NotificationSent { code, subcode } => {
                write!(f, "sent NOTIFICATION {code}/{subcode}")
            }
            DownReason::NotificationReceived { code, subcode, .. } => {
                write!(f, "received NOTIFICATION {code}/{subcode}")
            }
            DownReason::HoldTimerExpired => f.write_str("hold timer expired"),
            DownReason::ConnectionLost => f.write_str("connection lost"),
            DownReason::PeerRestarted => f.write_str("peer restarted"),
        }
    }
}

/// Our graceful restart settings (RFC 4724).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GracefulRestartConfig {
    /// Restart Time announced, seconds (12 bits, max 4095).
    pub restart_time: u16,
    /// We keep forwarding state across a restart (F bit on every AFI/SAFI).
    pub forwarding_state: bool,
    /// We are restarting (R bit): set for the first session after a start.
    pub restarting: bool,
    /// Announce the capability without any AFI/SAFI (RFC 4724 §3): we keep
    /// no routes of ours alive across our own restart, but peers learn that
    /// we understand End-of-RIB. FRR sends End-of-RIB only to peers that
    /// announced the capability, and we need it to end a restart window.
    pub helper_only: bool,
}

impl Default for GracefulRestartConfig {
    fn default() -> Self {
        GracefulRestartConfig {
            restart_time: 120,
            forwarding_state: true,
            restarting: false,
            helper_only: false,
        }
    }
}

/// The peer's graceful restart capability, restricted to the negotiated
/// AFI/SAFIs: what the RIB needs to keep stale paths (RFC 4724 §4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerGrInfo {
    pub restart_time: Duration,
    /// The peer said it restarted (R bit).
    pub restarting: bool,
    /// (AFI/SAFI, forwarding state preserved across the restart).
    pub afi_safis: Vec<(AfiSafi, bool)>,
}

/// What both sides agreed in the OPEN exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub peer_asn: Asn,
    pub peer_router_id: Ipv4Addr,
    /// Negotiated hold time in seconds; 0 = no hold timer, no keepalives.
    pub hold_time: u16,
    /// KEEPALIVE interval in seconds (hold/3), 0 when hold time is 0.
    pub keepalive: u16,
    /// Both sides announced 4-octet AS (we always do).
    pub four_octet_as: bool,
    /// The peer accepts ROUTE-REFRESH (we always do).
    pub route_refresh: bool,
    /// Both sides announced Extended Message (RFC 8654).
    pub extended_message: bool,
    /// AFI/SAFIs both sides announced.
    pub afi_safis: Vec<AfiSafi>,
    /// The peer's GR capability, if both sides announced GR.
    pub peer_graceful_restart: Option<PeerGrInfo>,
}

/// Per-peer FSM configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct FsmConfig {
    pub local_asn: Asn,
    /// Expected peer ASN; equal to `local_asn` for iBGP.
    pub remote_asn: Asn,
    pub router_id: Ipv4Addr,
    /// Proposed hold time: 0 or >= 3 (RFC 4271 §4.2).
    pub hold_time: u16,
    /// TCP connect timeout / Active retry period (ConnectRetryTimer).
    pub connect_retry: Duration,
    /// Backoff of the automatic restart: first delay, doubled per failure.
    pub idle_hold_min: Duration,
    /// Backoff ceiling.
    pub idle_hold_max: Duration,
    /// A session Established this long resets the backoff.
    pub stable_time: Duration,
    /// Wait for the peer to connect; never connect out.
    pub passive: bool,
    /// AFI/SAFIs announced with the Multiprotocol capability.
    pub afi_safis: Vec<AfiSafi>,
    pub graceful_restart: Option<GracefulRestartConfig>,
    /// Announce the Extended Message capability (RFC 8654).
    pub extended_message: bool,
}

impl FsmConfig {
    /// Defaults: iBGP, hold 90s, EVPN only, connect timeout 30s, restart
    /// backoff 1s..120s reset after 60s Established.
    pub fn new(local_asn: Asn, router_id: Ipv4Addr) -> Self {
        FsmConfig {
            local_asn,
            remote_asn: local_asn,
            router_id,
            hold_time: 90,
            connect_retry: Duration::from_secs(30),
            idle_hold_min: Duration::from_secs(1),
            idle_hold_max: Duration::from_secs(120),
            stable_time: Duration::from_secs(60),
            passive: false,
            afi_safis: vec![AfiSafi::L2VPN_EVPN],
            graceful_restart: None,
            extended_message: false,
        }
    }

    /// The OPEN we send (RFC 4271 §4.2, RFC 5492 capabilities).
    pub fn open_message(&self) -> Open {
        let my_as = u16::try_from(self.local_asn.0).unwrap_or(Asn::TRANS.0 as u16);
        let mut caps: Vec<Capability> = self
            .afi_safis
            .iter()
            .map(|a| Capability::Multiprotocol(*a))
            .collect();
        caps.push(Capability::RouteRefresh);
        caps.push(Capability::FourOctetAs(self.local_asn));
        if self.extended_message {
            caps.push(Capability::ExtendedMessage);
        }
        if let Some(gr) = &self.graceful_restart {
            caps.push(Capability::GracefulRestart(GracefulRestartCap {
                restarting: gr.restarting,
                notification: false,
                restart_time: gr.restart_time.min(0x0fff),
                afi_safis: if gr.helper_only {
                    Vec::new()
                } else {
                    self.afi_safis
                        .iter()
                        .map(|a| (*a, gr.forwarding_state))
                        .collect()
                },
            }));
        }
        Open {
            version: BGP_VERSION,
            my_as,
            hold_time: self.hold_time,
            bgp_id: self.router_id,
            capabilities: caps,
            other_params: Vec::new(),
        }
    }

    fn is_ibgp(&self) -> bool {
        self.local_asn == self.remote_asn
    }
}

/// What the FSM asks the driver to do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action<N: Nlri> {
    /// Open a TCP connection to the peer (Connect state).
    Connect,
    /// Write this message on the connection.
    SendMessage(Message<N>),
    /// Close the connection after writing what was queued before.
    CloseConnection,
    StartTimer(TimerKind, Duration),
    StopTimer(TimerKind),
    /// The state changed.
    StateChanged {
        from: State,
        to: State,
    },
    SessionEstablished(Negotiated),
    /// An Established session ended. `graceful_restart` is the peer's GR
    /// info when RFC 4724 says keep its routes as stale.
    SessionDown {
        reason: DownReason,
        graceful_restart: Option<PeerGrInfo>,
    },
    /// A route-carrying UPDATE from the peer (End-of-RIB excluded).
    Deliver(Update<N>),
    /// The peer finished its initial table for this AFI/SAFI (RFC 4724 §2).
    EndOfRib(AfiSafi),
    /// The peer asked us to re-send our routes (RFC 2918).
    RouteRefreshRequested(AfiSafi),
}

/// The session FSM of one connection to one peer.
#[derive(Debug, Clone)]
pub struct Fsm<N: Nlri> {
    cfg: FsmConfig,
    state: State,
    /// Restart automatically after a failure (false after a manual stop).
    auto_start: bool,
    /// Next IdleHold delay (exponential backoff).
    backoff: Duration,
    /// Set when the peer's OPEN was accepted.
    negotiated: Option<Negotiated>,
    /// The peer's OPEN (for collision detection, §6.8).
    peer_open: Option<Open>,
    _n: std::marker::PhantomData<N>,
}

/// §6.8 collision resolution: which of two connections to the same peer to
/// keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Keep the connection we initiated.
    Outbound,
    /// Keep the connection the peer initiated.
    Inbound,
}

/// RFC 4271 §6.8: the connection initiated by the speaker with the higher
/// BGP Identifier survives; the other is closed with Cease / Connection
/// Collision Resolution. With equal identifiers (legal for eBGP since
/// RFC 6286 §2.3) the speaker with the larger AS number wins.
pub fn resolve_collision(
    local_id: Ipv4Addr,
    local_asn: Asn,
    remote_id: Ipv4Addr,
    remote_asn: Asn,
) -> Keep {
    let (l, r) = (u32::from(local_id), u32::from(remote_id));
    if l > r || (l == r && local_asn > remote_asn) {
        Keep::Outbound
    } else {
        Keep::Inbound
    }
}

fn notification(code: u8, subcode: u8, data: impl Into<Bytes>) -> Notification {
    Notification {
        code,
        subcode,
        data: data.into(),
    }
}

impl<N: Nlri> Fsm<N> {
    pub fn new(cfg: FsmConfig) -> Self {
        let backoff = cfg.idle_hold_min;
        Fsm {
            cfg,
            state: State::Idle,
            auto_start: false,
            backoff,
            negotiated: None,
            peer_open: None,
            _n: std::marker::PhantomData,
        }
    }

    /// A second FSM for an inbound connection that races this one (§6.8):
    /// same configuration and backoff, in Active, waiting for
    /// [`Event::TcpConnectionConfirmed`].
    pub fn fork_inbound(&self) -> Self {
        Fsm {
            cfg: self.cfg.clone(),
            state: State::Active,
            auto_start: self.auto_start,
            backoff: self.backoff,
            negotiated: None,
            peer_open: None,
            _n: std::marker::PhantomData,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn config(&self) -> &FsmConfig {
        &self.cfg
    }

    /// The negotiated parameters from OpenConfirm on.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// The peer's BGP Identifier once its OPEN was accepted.
    pub fn peer_router_id(&self) -> Option<Ipv4Addr> {
        self.peer_open.as_ref().map(|o| o.bgp_id)
    }

    /// The peer's ASN once its OPEN was accepted.
    pub fn peer_asn(&self) -> Option<Asn> {
        self.peer_open.as_ref().map(|o| o.asn())
    }

    /// Current restart backoff (the next IdleHold delay).
    pub fn backoff(&self) -> Duration {
        self.backoff
    }

    /// Whether the FSM restarts by itself (not manually stopped).
    pub fn auto_start(&self) -> bool {
        self.auto_start
    }

    /// Process one event; returns the actions to perform, in order.
    pub fn handle(&mut self, event: Event<N>) -> Vec<Action<N>> {
        let mut out = Vec::new();
        self.step(event, &mut out);
        out
    }

    fn set_state(&mut self, to: State, out: &mut Vec<Action<N>>) {
        if self.state != to {
            debug!(from = %self.state, %to, "bgp fsm state change");
            out.push(Action::StateChanged {
                from: self.state,
                to,
            });
            self.state = to;
        }
    }

    fn step(&mut self, event: Event<N>, out: &mut Vec<Action<N>>) {
        // Admin events are the same in every state.
        match event {
            Event::ManualStart => {
                self.auto_start = true;
                if self.state == State::Idle {
                    out.push(Action::StopTimer(TimerKind::IdleHold));
                    self.start(out);
                }
                return;
            }
            Event::ManualStop(reason) => {
                self.auto_start = reason.restarts();
                self.stop(reason, out);
                return;
            }
            _ => {}
        }
        match self.state {
            State::Idle => self.idle(event, out),
            State::Connect | State::Active => self.connect_or_active(event, out),
            State::OpenSent => self.open_sent(event, out),
            State::OpenConfirm => self.open_confirm(event, out),
            State::Established => self.established(event, out),
        }
    }

    /// Idle -> Connect (or Active for a passive peer).
    fn start(&mut self, out: &mut Vec<Action<N>>) {
        out.push(Action::StartTimer(
            TimerKind::ConnectRetry,
            self.cfg.connect_retry,
        ));
        if self.cfg.passive {
            self.set_state(State::Active, out);
        } else {
            self.set_state(State::Connect, out);
            out.push(Action::Connect);
        }
    }

    /// Stop on purpose: Cease if an OPEN went out, back to Idle.
    fn stop(&mut self, reason: StopReason, out: &mut Vec<Action<N>>) {
        let was = self.state;
        if reason.sends_cease()
            && matches!(
                was,
                State::OpenSent | State::OpenConfirm | State::Established
            )
        {
            out.push(Action::SendMessage(Message::Notification(notification(
                notif::CEASE,
                reason.cease_subcode(),
                Bytes::new(),
            ))));
        }
        if was != State::Idle {
            out.push(Action::CloseConnection);
        }
        let restart = if reason.restarts() {
            // An operator reset is not a flap: restart after the minimum.
            Some(self.cfg.idle_hold_min)
        } else {
            None
        };
        self.enter_idle(was, DownReason::Stopped(reason), restart, out);
    }

    /// Enter Idle: stop timers, report the session down if it was up, and
    /// schedule the automatic restart (if any) after `restart`.
    fn enter_idle(
        &mut self,
        was: State,
        reason: DownReason,
        restart: Option<Duration>,
        out: &mut Vec<Action<N>>,
    ) {
        for t in [
            TimerKind::ConnectRetry,
            TimerKind::Hold,
            TimerKind::Keepalive,
            TimerKind::Stable,
            TimerKind::IdleHold,
        ] {
            out.push(Action::StopTimer(t));
        }
        self.set_state(State::Idle, out);
        if was == State::Established {
            let graceful_restart = if reason.graceful_restart_applies() {
                // Only AFI/SAFIs in the peer's GR capability keep their
                // routes; with none listed (a helper-only peer, e.g. FRR's
                // default) there is nothing to keep.
                self.negotiated
                    .as_ref()
                    .and_then(|n| n.peer_graceful_restart.clone())
                    .filter(|gr| !gr.afi_safis.is_empty())
            } else {
                None
            };
            info!(%reason, "bgp session down");
            out.push(Action::SessionDown {
                reason,
                graceful_restart,
            });
        }
        self.negotiated = None;
        self.peer_open = None;
        if self.auto_start {
            if let Some(d) = restart {
                out.push(Action::StartTimer(TimerKind::IdleHold, d));
            }
        }
    }

    /// A failure: back to Idle with the backoff doubled (§8.1.1 damping).
    fn fail(&mut self, reason: DownReason, out: &mut Vec<Action<N>>) {
        let was = self.state;
        if was != State::Idle {
            out.push(Action::CloseConnection);
        }
        let delay = self.backoff;
        self.backoff = (self.backoff * 2).min(self.cfg.idle_hold_max);
        self.enter_idle(was, reason, Some(delay), out);
    }

    /// Send a NOTIFICATION, close, fail.
    fn error(&mut self, n: Notification, out: &mut Vec<Action<N>>) {
        warn!(
            state = %self.state,
            code = n.code,
            subcode = n.subcode,
            "bgp: sending NOTIFICATION"
        );
        let reason = if n.code == notif::HOLD_TIMER_EXPIRED {
            DownReason::HoldTimerExpired
        } else {
            DownReason::NotificationSent {
                code: n.code,
                subcode: n.subcode,
            }
        };
        out.push(Action::SendMessage(Message::Notification(n)));
        self.fail(reason, out);
    }

    /// RFC 6608: an event the state does not expect.
    fn fsm_error(&mut self, out: &mut Vec<Action<N>>) {
        let sub = match self.state {
            State::OpenSent => notif::FSM_UNEXPECTED_IN_OPENSENT,
            State::OpenConfirm => notif::FSM_UNEXPECTED_IN_OPENCONFIRM,
            _ => notif::FSM_UNEXPECTED_IN_ESTABLISHED,
        };
        self.error(notification(notif::FSM_ERROR, sub, Bytes::new()), out);
    }

    fn notification_received(&mut self, n: Notification, out: &mut Vec<Action<N>>) {
        warn!(
            state = %self.state,
            code = n.code,
            subcode = n.subcode,
            "bgp: NOTIFICATION received"
        );
        self.fail(
            DownReason::NotificationReceived {
                code: n.code,
                subcode: n.subcode,
                data: n.data,
            },
            out,
        );
    }

    fn decode_error(&mut self, e: DecodeError, out: &mut Vec<Action<N>>) {
        warn!(state = %self.state, error = %e, "bgp: cannot decode message");
        let (code, subcode, data) = e.notification();
        self.error(notification(code, subcode, data), out);
    }

    fn idle(&mut self, event: Event<N>, out: &mut Vec<Action<N>>) {
        match event {
            Event::AutomaticStart | Event::TimerExpired(TimerKind::IdleHold) if self.auto_start => {
                self.start(out)
            }
            // Restart pending: passive start on the peer's connection.
            Event::TcpConnectionConfirmed if self.auto_start => {
                out.push(Action::StopTimer(TimerKind::IdleHold));
                self.open_on_connection(out);
            }
            // Manually stopped (§8.2.2 Idle): refuse.
            Event::TcpConnectionAcked | Event::TcpConnectionConfirmed => {
                out.push(Action::CloseConnection)
            }
            _ => {}
        }
    }

    /// TCP is up: send OPEN, wait for the peer's (§8.2.2 Connect/Active,
    /// events 16/17).
    fn open_on_connection(&mut self, out: &mut Vec<Action<N>>) {
        out.push(Action::StopTimer(TimerKind::ConnectRetry));
        out.push(Action::SendMessage(Message::Open(self.cfg.open_message())));
        out.push(Action::StartTimer(TimerKind::Hold, OPEN_SENT_HOLD));
        self.set_state(State::OpenSent, out);
    }

    /// Connect and Active differ only in whether a connect is in flight.
    fn connect_or_active(&mut self, event: Event<N>, out: &mut Vec<Action<N>>) {
        match event {
            Event::TcpConnectionAcked | Event::TcpConnectionConfirmed => {
                self.open_on_connection(out)
            }
            Event::TimerExpired(TimerKind::ConnectRetry) => {
                out.push(Action::StartTimer(
                    TimerKind::ConnectRetry,
                    self.cfg.connect_retry,
                ));
                if self.cfg.passive {
                    // Keep waiting.
                } else {
                    // §8.2.2 Connect, event 9: drop the attempt, retry.
                    if self.state == State::Connect {
                        out.push(Action::CloseConnection);
                    }
                    self.set_state(State::Connect, out);
                    out.push(Action::Connect);
                }
            }
            Event::TcpConnectionFails => self.fail(DownReason::ConnectionLost, out),
            Event::AutomaticStart | Event::TimerExpired(_) => {}
            Event::SendUpdate(_) | Event::SendRouteRefresh(_) => {}
            // Messages without a connection cannot happen; §8.2.2 "any
            // other event" -> Idle.
            _ => self.fail(DownReason::ConnectionLost, out),
        }
    }

    fn open_sent(&mut self, event: Event<N>, out: &mut Vec<Action<N>>) {
        match event {
            Event::OpenReceived(open) => match self.check_open(&open) {
                Ok(neg) => {
                    out.push(Action::SendMessage(Message::Keepalive));
                    if neg.hold_time > 0 {
                        let hold = Duration::from_secs(neg.hold_time.into());
                        let ka = Duration::from_secs(neg.keepalive.into());
                        out.push(Action::StartTimer(TimerKind::Hold, hold));
                        out.push(Action::StartTimer(TimerKind::Keepalive, ka));
                    } else {
                        out.push(Action::StopTimer(TimerKind::Hold));
                    }
                    self.negotiated = Some(neg);
                    self.peer_open = Some(open);
                    self.set_state(State::OpenConfirm, out);
                }
                Err(n) => self.error(n, out),
            },
            Event::TcpConnectionFails => self.fail(DownReason::ConnectionLost, out),
            Event::NotificationReceived(n) => self.notification_received(n, out),
            Event::DecodeError(e) => self.decode_error(e, out),
            Event::TimerExpired(TimerKind::Hold) => self.error(
                notification(notif::HOLD_TIMER_EXPIRED, 0, Bytes::new()),
                out,
            ),
            Event::TimerExpired(_) | Event::AutomaticStart => {}
            Event::SendUpdate(_) | Event::SendRouteRefresh(_) => {}
            Event::TcpConnectionAcked | Event::TcpConnectionConfirmed => {}
            Event::KeepaliveReceived
            | Event::UpdateReceived(_)
            | Event::RouteRefreshReceived(_) => self.fsm_error(out),
            Event::ManualStart | Event::ManualStop(_) => {}
        }
    }

    fn open_confirm(&mut self, event: Event<N>, out: &mut Vec<Action<N>>) {
        match event {
            Event::KeepaliveReceived => {
                self.restart_hold(out);
                self.set_state(State::Established, out);
                out.push(Action::StartTimer(TimerKind::Stable, self.cfg.stable_time));
                if let Some(n) = &self.negotiated {
                    info!(
                        peer_asn = %n.peer_asn,
                        peer_id = %n.peer_router_id,
                        hold = n.hold_time,
                        "bgp session established"
                    );
                    out.push(Action::SessionEstablished(n.clone()));
                }
            }
            Event::TimerExpired(TimerKind::Keepalive) => self.send_keepalive(out),
            Event::TimerExpired(TimerKind::Hold) => self.error(
                notification(notif::HOLD_TIMER_EXPIRED, 0, Bytes::new()),
                out,
            ),
            Event::TcpConnectionFails => self.fail(DownReason::ConnectionLost, out),
            Event::NotificationReceived(n) => self.notification_received(n, out),
            Event::DecodeError(e) => self.decode_error(e, out),
            Event::TimerExpired(_) | Event::AutomaticStart => {}
            Event::SendUpdate(_) | Event::SendRouteRefresh(_) => {}
            Event::TcpConnectionAcked | Event::TcpConnectionConfirmed => {}
            // A second OPEN on this connection, or routes before the
            // KEEPALIVE: RFC 6608 subcode 2.
            Event::OpenReceived(_) | Event::UpdateReceived(_) | Event::RouteRefreshReceived(_) => {
                self.fsm_error(out)
            }
            Event::ManualStart | Event::ManualStop(_) => {}
        }
    }

    fn established(&mut self, event: Event<N>, out: &mut Vec<Action<N>>) {
        match event {
            Event::KeepaliveReceived => self.restart_hold(out),
            Event::UpdateReceived(u) => {
                self.restart_hold(out);
                self.update_received(u, out);
            }
            Event::RouteRefreshReceived(rr) => {
                self.restart_hold(out);
                let negotiated = self
                    .negotiated
                    .as_ref()
                    .is_some_and(|n| n.afi_safis.contains(&rr.afi_safi));
                // RFC 2918 §4: ignore an AFI/SAFI not announced; RFC 7313
                // BoRR/EoRR (subtypes 1, 2) are markers, not requests.
                if negotiated && rr.subtype == 0 {
                    out.push(Action::RouteRefreshRequested(rr.afi_safi));
                } else {
                    debug!(afi_safi = %rr.afi_safi, subtype = rr.subtype, "ignoring ROUTE-REFRESH");
                }
            }
            Event::SendUpdate(u) => {
                out.push(Action::SendMessage(Message::Update(u)));
                self.restart_keepalive(out);
            }
            Event::SendRouteRefresh(afi_safi) => {
                let ok = self
                    .negotiated
                    .as_ref()
                    .is_some_and(|n| n.route_refresh && n.afi_safis.contains(&afi_safi));
                if ok {
                    out.push(Action::SendMessage(Message::RouteRefresh(RouteRefresh {
                        afi_safi,
                        subtype: 0,
                    })));
                    self.restart_keepalive(out);
                } else {
                    warn!(%afi_safi, "cannot send ROUTE-REFRESH: not negotiated");
                }
            }
            Event::TimerExpired(TimerKind::Keepalive) => self.send_keepalive(out),
            Event::TimerExpired(TimerKind::Hold) => self.error(
                notification(notif::HOLD_TIMER_EXPIRED, 0, Bytes::new()),
                out,
            ),
            Event::TimerExpired(TimerKind::Stable) => {
                // RFC 4271 §8.1.1 damping: a stable session forgives past
                // flaps.
                self.backoff = self.cfg.idle_hold_min;
            }
            Event::TcpConnectionFails => self.fail(DownReason::ConnectionLost, out),
            Event::NotificationReceived(n) => self.notification_received(n, out),
            Event::DecodeError(e) => self.decode_error(e, out),
            Event::OpenReceived(_) => self.fsm_error(out),
            Event::TimerExpired(_) | Event::AutomaticStart => {}
            Event::TcpConnectionAcked | Event::TcpConnectionConfirmed => {}
            Event::ManualStart | Event::ManualStop(_) => {}
        }
    }

    fn update_received(&mut self, mut u: Update<N>, out: &mut Vec<Action<N>>) {
        let Some(neg) = &self.negotiated else {
            return;
        };
        if let Some(afi_safi) = u.is_end_of_rib() {
            if neg.afi_safis.contains(&afi_safi) {
                out.push(Action::EndOfRib(afi_safi));
            }
            return;
        }
        // RFC 4760 §7: ignore MP attributes of AFI/SAFIs not negotiated;
        // likewise the IPv4 fields when IPv4 unicast is not.
        if let Some(r) = &u.mp_reach {
            if !neg.afi_safis.contains(&r.afi_safi) {
                warn!(afi_safi = %r.afi_safi, "ignoring MP_REACH_NLRI for an AFI/SAFI not negotiated");
                u.mp_reach = None;
            }
        }
        if let Some(r) = &u.mp_unreach {
            if !neg.afi_safis.contains(&r.afi_safi) {
                warn!(afi_safi = %r.afi_safi, "ignoring MP_UNREACH_NLRI for an AFI/SAFI not negotiated");
                u.mp_unreach = None;
            }
        }
        if !neg.afi_safis.contains(&AfiSafi::IPV4_UNICAST)
            && (!u.nlri.is_empty() || !u.withdrawn.is_empty())
        {
            warn!("ignoring IPv4 unicast NLRI: not negotiated");
            u.nlri.clear();
            u.withdrawn.clear();
        }
        let empty = u.mp_reach.is_none()
            && u.mp_unreach.is_none()
            && u.nlri.is_empty()
            && u.withdrawn.is_empty();
        if !empty {
            out.push(Action::Deliver(u));
        }
    }

    fn restart_hold(&self, out: &mut Vec<Action<N>>) {
        if let Some(n) = &self.negotiated {
            if n.hold_time > 0 {
                out.push(Action::StartTimer(
                    TimerKind::Hold,
                    Duration::from_secs(n.hold_time.into()),
                ));
            }
        }
    }

    fn restart_keepalive(&self, out: &mut Vec<Action<N>>) {
        if let Some(n) = &self.negotiated {
            if n.keepalive > 0 {
                out.push(Action::StartTimer(
                    TimerKind::Keepalive,
                    Duration::from_secs(n.keepalive.into()),
                ));
            }
        }
    }

    fn send_keepalive(&self, out: &mut Vec<Action<N>>) {
        out.push(Action::SendMessage(Message::Keepalive));
        self.restart_keepalive(out);
    }

    /// RFC 4271 §6.2 OPEN checks, then the capability negotiation.
    fn check_open(&self, open: &Open) -> Result<Negotiated, Notification> {
        if open.version != BGP_VERSION {
            // Data: the largest version we support, 2 octets.
            return Err(notification(
                notif::OPEN_MESSAGE,
                notif::UNSUPPORTED_VERSION,
                Bytes::copy_from_slice(&u16::from(BGP_VERSION).to_be_bytes()),
            ));
        }
        let peer_asn = open.asn();
        if peer_asn != self.cfg.remote_asn {
            warn!(got = %peer_asn, expected = %self.cfg.remote_asn, "bad peer AS");
            return Err(notification(
                notif::OPEN_MESSAGE,
                notif::BAD_PEER_AS,
                Bytes::new(),
            ));
        }
        if open.hold_time == 1 || open.hold_time == 2 {
            return Err(notification(
                notif::OPEN_MESSAGE,
                notif::UNACCEPTABLE_HOLD_TIME,
                Bytes::new(),
            ));
        }
        // RFC 6286 §2.2: non-zero; unique within the AS, so for iBGP it
        // must differ from ours.
        if open.bgp_id.is_unspecified() || (self.cfg.is_ibgp() && open.bgp_id == self.cfg.router_id)
        {
            return Err(notification(
                notif::OPEN_MESSAGE,
                notif::BAD_BGP_ID,
                Bytes::new(),
            ));
        }
        if let Some((ty, _)) = open.other_params.first() {
            warn!(param = ty, "unsupported optional parameter in OPEN");
            return Err(notification(
                notif::OPEN_MESSAGE,
                notif::UNSUPPORTED_OPTIONAL_PARAMETER,
                Bytes::new(),
            ));
        }
        // RFC 4760 §8: a peer without any Multiprotocol capability speaks
        // IPv4 unicast only.
        let mut peer_afs = open.afi_safis();
        if peer_afs.is_empty() {
            peer_afs.push(AfiSafi::IPV4_UNICAST);
        }
        let afi_safis: Vec<AfiSafi> = self
            .cfg
            .afi_safis
            .iter()
            .copied()
            .filter(|a| peer_afs.contains(a))
            .collect();
        if afi_safis.is_empty() {
            // RFC 5492 §3: a capability we need is missing -> OPEN error
            // Unsupported Capability, carrying the capabilities we wanted
            // (our Multiprotocol ones). Cease would not tell the operator
            // why; this is what the peer will log.
            warn!(ours = ?self.cfg.afi_safis, theirs = ?peer_afs, "no common AFI/SAFI");
            let mut data = BytesMut::new();
            for a in &self.cfg.afi_safis {
                data.put_u8(1);
                data.put_u8(4);
                data.put_u16(a.afi.0);
                data.put_u8(0);
                data.put_u8(a.safi.0);
            }
            return Err(notification(
                notif::OPEN_MESSAGE,
                notif::UNSUPPORTED_CAPABILITY,
                data.freeze(),
            ));
        }
        let hold_time = self.cfg.hold_time.min(open.hold_time);
        let keepalive = if hold_time == 0 {
            0
        } else {
            (hold_time / 3).max(1)
        };
        let four_octet_as = open.has(|c| matches!(c, Capability::FourOctetAs(_)));
        let route_refresh = open.has(|c| matches!(c, Capability::RouteRefresh));
        let extended_message =
            self.cfg.extended_message && open.has(|c| matches!(c, Capability::ExtendedMessage));
        let peer_graceful_restart = if self.cfg.graceful_restart.is_some() {
            open.capabilities.iter().find_map(|c| match c {
                Capability::GracefulRestart(gr) => Some(PeerGrInfo {
                    restart_time: Duration::from_secs(gr.restart_time.into()),
                    restarting: gr.restarting,
                    afi_safis: gr
                        .afi_safis
                        .iter()
                        .filter(|(a, _)| afi_safis.contains(a))
                        .copied()
                        .collect(),
                }),
                _ => None,
            })
        } else {
            None
        };
        Ok(Negotiated {
            peer_asn,
            peer_router_id: open.bgp_id,
            hold_time,
            keepalive,
            four_octet_as,
            route_refresh,
            extended_message,
            afi_safis,
            peer_graceful_restart,
        })
    }
}

#[cfg(test)]
mod tests;
