//! The task of one peer: its FSM(s), sockets and timers.
//!
//! Normally one connection at a time lives in `main`. An inbound connection
//! that arrives while `main` is past Active goes to `pending` with an FSM of
//! its own; as soon as one of them knows the peer's BGP Identifier the
//! collision is resolved (RFC 4271 §6.8) and the loser is closed with
//! Cease / Connection Collision Resolution. If `main` is Established and the
//! peer negotiated graceful restart, a new OPEN means the peer restarted
//! (RFC 4724 §4.2): the old session goes down with its routes kept stale and
//! the new connection takes over.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout, Instant};
use tracing::{debug, error, info, warn};

use super::events::{event_cost, EventSender};
use super::{lock, md5, ClearKind, PeerCmd, PeerConfig, PeerError, SharedStatus, SpeakerEvent};
use crate::codec::{self, CodecOptions};
use crate::fsm::{
    resolve_collision, Action, DownReason, Event, Fsm, Keep, State, StopReason, TimerKind,
};
use crate::message::{Message, Nlri, Update};

/// Stop reading the socket while this many events, or this many bytes of
/// decoded events (see [`event_cost`]), wait for the daemon's channel. The
/// byte bound matters with the Extended Message capability (RFC 8654): one
/// UPDATE then holds up to ~2,000 decoded routes.
const OUTBOX_HIGH_WATER: usize = 64;
const OUTBOX_HIGH_BYTES: usize = 1 << 20;
/// Take more UPDATEs from the daemon only while less than this many bytes
/// wait for the writer task. (KEEPALIVE and NOTIFICATION are never held
/// back, so the writer queue itself is unbounded; this bounds it.)
const WRITE_HIGH_WATER: usize = 256 * 1024;
/// A single write that takes longer than this means the peer is gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a closing connection may take to flush and see the peer's FIN.
const LINGER: Duration = Duration::from_secs(5);
/// How long a stopping task waits for the daemon to take its last events.
const FINAL_EVENTS_TIMEOUT: Duration = Duration::from_secs(5);
const READ_CHUNK: usize = 16 * 1024;

type ConnectFuture = Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>>;

struct Conn {
    read: OwnedReadHalf,
    rbuf: BytesMut,
    write_tx: mpsc::UnboundedSender<Bytes>,
    /// Bytes handed to the writer and not yet written.
    queued: Arc<AtomicUsize>,
    writer: tokio::task::JoinHandle<()>,
    opts: CodecOptions,
    remote: SocketAddr,
}

impl Conn {
    fn new(stream: TcpStream) -> Self {
        let remote = stream
            .peer_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (read, write) = stream.into_split();
        let (write_tx, write_rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let writer = tokio::spawn(writer_task(write, write_rx, remote, queued.clone()));
        Conn {
            read,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            write_tx,
            queued,
            writer,
            opts: CodecOptions::default(),
            remote,
        }
    }

    /// Close after the queued writes: the writer flushes and sends FIN;
    /// meanwhile keep reading (and discarding) so that unread input does not
    /// make the kernel answer with RST and lose our NOTIFICATION.
    fn close(self) {
        let Conn {
            mut read,
            write_tx,
            writer,
            remote,
            ..
        } = self;
        drop(write_tx);
        tokio::spawn(async move {
            let drain = async {
                let mut sink = [0u8; 4096];
                loop {
                    match read.read(&mut sink).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
            };
            let _ = timeout(LINGER, async {
                let _ = tokio::join!(writer, drain);
            })
            .await;
            debug!(%remote, "bgp connection closed");
        });
    }
}

async fn writer_task(
    mut w: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
    remote: SocketAddr,
    queued: Arc<AtomicUsize>,
) {
    while let Some(buf) = rx.recv().await {
        match timeout(WRITE_TIMEOUT, w.write_all(&buf)).await {
            Ok(Ok(())) => {
                queued.fetch_sub(buf.len(), Ordering::Relaxed);
            }
            Ok(Err(e)) => {
                debug!(%remote, error = %e, "bgp write failed");
                return;
            }
            Err(_) => {
                warn!(%remote, "bgp write stalled; giving up on the connection");
                return;
            }
        }
    }
    let _ = timeout(LINGER, w.shutdown()).await;
}

/// Events decoded and not yet in the daemon's channel, with their costs.
struct Outbox<N: Nlri> {
    q: VecDeque<(SpeakerEvent<N>, usize)>,
    bytes: usize,
}

impl<N: Nlri> Outbox<N> {
    fn new() -> Self {
        Outbox {
            q: VecDeque::new(),
            bytes: 0,
        }
    }

    fn push_back(&mut self, ev: SpeakerEvent<N>) {
        let cost = event_cost(&ev);
        self.bytes += cost;
        self.q.push_back((ev, cost));
    }

    fn pop_front(&mut self) -> Option<SpeakerEvent<N>> {
        let (ev, cost) = self.q.pop_front()?;
        self.bytes -= cost;
        Some(ev)
    }

    fn front_cost(&self) -> usize {
        self.q.front().map_or(0, |(_, c)| *c)
    }

    fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    fn clear(&mut self) {
        self.q.clear();
        self.bytes = 0;
    }

    /// Reading the socket waits until the daemon took some.
    fn full(&self) -> bool {
        self.q.len() >= OUTBOX_HIGH_WATER || self.bytes >= OUTBOX_HIGH_BYTES
    }
}

/// One connection attempt and its FSM.
struct Slot<N: Nlri> {
    fsm: Fsm<N>,
    conn: Option<Conn>,
    connecting: Option<ConnectFuture>,
    timers: [Option<Instant>; 5],
    /// The connection was initiated by the peer.
    inbound: bool,
    /// Encoded messages not yet handed to the writer.
    wbuf: BytesMut,
}

impl<N: Nlri> Slot<N> {
    fn new(fsm: Fsm<N>) -> Self {
        Slot {
            fsm,
            conn: None,
            connecting: None,
            timers: [None; 5],
            inbound: false,
            wbuf: BytesMut::new(),
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.timers.iter().flatten().min().copied()
    }

    fn expired(&mut self, now: Instant) -> Vec<TimerKind> {
        let mut v = Vec::new();
        for k in TimerKind::ALL {
            if let Some(t) = self.timers[k.index()] {
                if t <= now {
                    self.timers[k.index()] = None;
                    v.push(k);
                }
            }
        }
        v
    }

    /// Bytes waiting for the writer task.
    fn write_backlog(&self) -> usize {
        self.conn
            .as_ref()
            .map_or(0, |c| c.queued.load(Ordering::Relaxed))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Main,
    Pending,
}

pub(super) struct PeerTask<N: Nlri> {
    cfg: PeerConfig,
    addr: IpAddr,
    main: Slot<N>,
    pending: Option<Slot<N>>,
    ctrl_rx: mpsc::Receiver<PeerCmd>,
    out_rx: mpsc::Receiver<Vec<Update<N>>>,
    events: EventSender<N>,
    outbox: Outbox<N>,
    status: SharedStatus,
    done: bool,
}

/// RFC 4271 §10: jitter the ConnectRetry, KEEPALIVE and restart timers
/// (factor 0.75..1.0) so that two speakers that lost their session together
/// do not keep colliding in lock step.
fn jitter(kind: TimerKind, d: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    match kind {
        TimerKind::ConnectRetry | TimerKind::Keepalive | TimerKind::IdleHold => {
            // RandomState is seeded randomly; good enough for jitter.
            let r = std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish();
            let factor = 0.75 + (r % 1000) as f64 / 4000.0;
            d.mul_f64(factor)
        }
        TimerKind::Hold | TimerKind::Stable => d,
    }
}

/// Read more bytes into the connection buffer; pends forever without one.
async fn read_some(conn: &mut Option<Conn>) -> io::Result<usize> {
    match conn {
        Some(c) => {
            c.rbuf.reserve(READ_CHUNK);
            c.read.read_buf(&mut c.rbuf).await
        }
        None => std::future::pending().await,
    }
}

async fn connecting(f: &mut Option<ConnectFuture>) -> io::Result<TcpStream> {
    match f {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

async fn sleep_opt(t: Option<Instant>) {
    match t {
        Some(t) => sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Open the TCP connection to the peer: update-source, MD5, no Nagle.
async fn connect(cfg: PeerConfig, addr: IpAddr) -> io::Result<TcpStream> {
    let sock = match addr {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(pw) = &cfg.password {
        if let Err(e) = md5::set_md5(sock.as_raw_fd(), addr.is_ipv6(), addr, Some(pw.as_bytes())) {
            error!(peer = %addr, error = %e, "cannot set TCP MD5 key on the connecting socket; the peer will drop our segments");
        }
    }
    if let Some(local) = cfg.local_address {
        sock.bind(SocketAddr::new(local, 0))?;
    }
    sock.set_nodelay(true)?;
    let stream = sock.connect(SocketAddr::new(addr, cfg.port)).await?;
    Ok(stream)
}

impl<N: Nlri + Send + Sync + 'static> PeerTask<N> {
    pub(super) fn new(
        cfg: PeerConfig,
        addr: IpAddr,
        fsm: Fsm<N>,
        ctrl_rx: mpsc::Receiver<PeerCmd>,
        out_rx: mpsc::Receiver<Vec<Update<N>>>,
        events: EventSender<N>,
        status: SharedStatus,
    ) -> Self {
        PeerTask {
            cfg,
            addr,
            main: Slot::new(fsm),
            pending: None,
            ctrl_rx,
            out_rx,
            events,
            outbox: Outbox::new(),
            status,
            done: false,
        }
    }

    pub(super) async fn run(mut self) {
        self.handle(Which::Main, Event::ManualStart);
        while !self.done {
            let main_deadline = self.main.next_deadline();
            let pend_deadline = self.pending.as_ref().and_then(|p| p.next_deadline());
            let can_read = !self.outbox.full();
            let established = self.main.fsm.state() == State::Established;
            let take_updates = !established || self.main.write_backlog() < WRITE_HIGH_WATER;
            let have_events = !self.outbox.is_empty();
            let front_cost = self.outbox.front_cost();
            let mut no_conn: Option<Conn> = None;
            // A clone, so that the permit does not borrow `self`.
            let events = self.events.clone();
            let pending_conn = match &mut self.pending {
                Some(p) => &mut p.conn,
                None => &mut no_conn,
            };
            tokio::select! {
                cmd = self.ctrl_rx.recv() => match cmd {
                    Some(cmd) => self.command(cmd),
                    None => self.stop(StopReason::AdminShutdown),
                },
                _ = sleep_opt(main_deadline) => self.fire_timers(Which::Main),
                _ = sleep_opt(pend_deadline) => self.fire_timers(Which::Pending),
                res = connecting(&mut self.main.connecting) => self.connected(res),
                res = read_some(&mut self.main.conn), if can_read => self.read(Which::Main, res),
                res = read_some(pending_conn), if can_read => self.read(Which::Pending, res),
                permit = events.reserve(front_cost), if have_events => match permit {
                    Ok(permit) => {
                        if let Some(ev) = self.outbox.pop_front() {
                            permit.send(ev);
                        }
                    }
                    Err(_) => {
                        // Nobody listens any more: the daemon is gone.
                        warn!(peer = %self.addr, "event channel closed; stopping peer");
                        self.outbox.clear();
                        self.stop(StopReason::AdminShutdown);
                    }
                },
                batch = self.out_rx.recv(), if take_updates => match batch {
                    Some(batch) => self.send_updates(batch),
                    None => self.stop(StopReason::AdminShutdown),
                },
            }
        }
        // Hand the last events (Down) to the daemon, bounded in time.
        let _ = timeout(FINAL_EVENTS_TIMEOUT, async {
            while let Some(ev) = self.outbox.pop_front() {
                if self.events.send(ev).await.is_err() {
                    break;
                }
            }
        })
        .await;
    }

    fn slot(&mut self, which: Which) -> Option<&mut Slot<N>> {
        match which {
            Which::Main => Some(&mut self.main),
            Which::Pending => self.pending.as_mut(),
        }
    }

    fn command(&mut self, cmd: PeerCmd) {
        match cmd {
            PeerCmd::Inbound(stream) => self.inbound(stream),
            PeerCmd::Clear(ClearKind::Soft) => {
                let afs = self
                    .main
                    .fsm
                    .negotiated()
                    .map(|n| n.afi_safis.clone())
                    .unwrap_or_default();
                if afs.is_empty() {
                    warn!(peer = %self.addr, "soft clear: session not Established");
                }
                for af in afs {
                    self.handle(Which::Main, Event::SendRouteRefresh(af));
                }
            }
            PeerCmd::Clear(ClearKind::Hard) => {
                info!(peer = %self.addr, "hard clear");
                self.close_pending(StopReason::AdminReset);
                self.handle(Which::Main, Event::ManualStop(StopReason::AdminReset));
            }
            PeerCmd::Stop(reason) => self.stop(reason),
        }
    }

    fn stop(&mut self, reason: StopReason) {
        if self.pending.is_some() {
            self.handle(Which::Pending, Event::ManualStop(reason));
            self.pending = None;
        }
        self.handle(Which::Main, Event::ManualStop(reason));
        self.done = true;
    }

    /// An accepted connection from the peer.
    fn inbound(&mut self, stream: TcpStream) {
        let remote = stream.peer_addr().ok();
        match self.main.fsm.state() {
            State::Idle if !self.main.fsm.auto_start() => {
                // Stopped by the operator: refuse (§8.2.2).
                info!(peer = %self.addr, ?remote, "refusing connection: peer is shut down");
                drop(stream);
            }
            // Idle with a restart pending (see fsm docs), or Active: no
            // attempt of ours in flight, take the peer's connection.
            State::Idle | State::Active => {
                // No attempt of ours in flight: take the peer's connection.
                self.main.connecting = None;
                self.main.inbound = true;
                self.main.conn = Some(Conn::new(stream));
                self.handle(Which::Main, Event::TcpConnectionConfirmed);
            }
            // Our own connect may be about to succeed (and the peer may
            // already hold it): run both, so that §6.8 decides the same way
            // on both ends instead of each side dropping the other's
            // connection in favour of its own.
            State::Connect | State::OpenSent | State::OpenConfirm | State::Established => {
                if self.pending.is_some() {
                    info!(peer = %self.addr, ?remote, "refusing a third connection");
                    drop(stream);
                    return;
                }
                debug!(peer = %self.addr, ?remote, "second connection: collision candidate");
                let mut slot = Slot::new(self.main.fsm.fork_inbound());
                slot.inbound = true;
                slot.conn = Some(Conn::new(stream));
                self.pending = Some(slot);
                self.handle(Which::Pending, Event::TcpConnectionConfirmed);
            }
        }
    }

    fn connected(&mut self, res: io::Result<TcpStream>) {
        self.main.connecting = None;
        match res {
            Ok(stream) => {
                debug!(peer = %self.addr, "connected");
                self.main.inbound = false;
                self.main.conn = Some(Conn::new(stream));
                self.handle(Which::Main, Event::TcpConnectionAcked);
            }
            Err(e) => {
                info!(peer = %self.addr, error = %e, "bgp connect failed");
                lock(&self.status).status.last_error = Some(PeerError::Connect(e.kind()));
                self.handle(Which::Main, Event::TcpConnectionFails);
            }
        }
    }

    fn fire_timers(&mut self, which: Which) {
        let now = Instant::now();
        let kinds = match self.slot(which) {
            Some(s) => s.expired(now),
            None => return,
        };
        let paused = self.outbox.full();
        let addr = self.addr;
        for k in kinds {
            // An earlier timer's actions may have ended this slot.
            let Some(slot) = self.slot(which) else { return };
            if k == TimerKind::Hold && paused {
                // We stopped reading because the daemon is slow; the
                // peer's KEEPALIVEs may be waiting in the socket. Not its
                // fault: look again later (FRR does the same with its input
                // queue).
                let hold = slot
                    .fsm
                    .negotiated()
                    .map_or(crate::fsm::OPEN_SENT_HOLD, |n| {
                        Duration::from_secs(n.hold_time.into())
                    });
                debug!(peer = %addr, "hold timer expired while reading is paused; re-armed");
                slot.timers[k.index()] = Some(now + hold);
                continue;
            }
            self.handle(which, Event::TimerExpired(k));
        }
    }

    fn read(&mut self, which: Which, res: io::Result<usize>) {
        match res {
            Ok(0) => {
                debug!(peer = %self.addr, ?which, "connection closed by peer");
                self.handle(which, Event::TcpConnectionFails);
            }
            Err(e) => {
                debug!(peer = %self.addr, ?which, error = %e, "read failed");
                self.handle(which, Event::TcpConnectionFails);
            }
            Ok(_) => self.parse_frames(which),
        }
    }

    /// Decode every complete message in the buffer, in order, until the
    /// connection goes away.
    fn parse_frames(&mut self, which: Which) {
        loop {
            let Some(slot) = self.slot(which) else { return };
            let Some(conn) = slot.conn.as_mut() else {
                return;
            };
            let event = match codec::frame_len(&conn.rbuf, &conn.opts) {
                Ok(None) => return,
                Ok(Some(len)) => {
                    let frame = conn.rbuf.split_to(len);
                    match codec::decode::<N>(&frame, &conn.opts) {
                        Ok(msg) => {
                            self.count_in(which, &msg);
                            Event::from(msg)
                        }
                        Err(e) => Event::DecodeError(e),
                    }
                }
                Err(e) => {
                    conn.rbuf.clear();
                    Event::DecodeError(e)
                }
            };
            self.handle(which, event);
        }
    }

    fn count_in(&mut self, which: Which, msg: &Message<N>) {
        if which != Which::Main {
            return;
        }
        let mut st = lock(&self.status);
        st.status.messages_in += 1;
        if let Message::Update(u) = msg {
            st.status.updates_in += 1;
            let n = u.nlri.len() + u.mp_reach.as_ref().map_or(0, |r| r.nlri.len());
            st.status.prefixes_received += n as u64;
        }
    }

    fn send_updates(&mut self, batch: Vec<Update<N>>) {
        if self.main.fsm.state() != State::Established {
            warn!(peer = %self.addr, count = batch.len(), "dropping UPDATEs: session not Established");
            return;
        }
        let n = batch.len() as u64;
        // One write buffer for the whole batch: the room checked before
        // taking it is one slot of the writer queue.
        for u in batch {
            let actions = self.main.fsm.handle(Event::SendUpdate(u));
            self.perform(Which::Main, actions);
        }
        self.flush_or_fail(Which::Main);
        lock(&self.status).status.updates_out += n;
    }

    /// Feed one event to a slot's FSM, perform the actions, then settle
    /// the two-connection situation.
    fn handle(&mut self, which: Which, event: Event<N>) {
        if let (Which::Main, Event::NotificationReceived(n)) = (which, &event) {
            lock(&self.status).status.last_error =
                Some(PeerError::Session(DownReason::NotificationReceived {
                    code: n.code,
                    subcode: n.subcode,
                    data: n.data.clone(),
                }));
        }
        let Some(slot) = self.slot(which) else { return };
        let actions = slot.fsm.handle(event);
        self.run_actions(which, actions);
        self.settle();
    }

    fn run_actions(&mut self, which: Which, actions: Vec<Action<N>>) {
        self.perform(which, actions);
        self.flush_or_fail(which);
    }

    /// Hand what was encoded to the writer; a dead writer means a dead
    /// connection.
    fn flush_or_fail(&mut self, which: Which) {
        if let Some(slot) = self.slot(which) {
            if Self::flush(slot) {
                self.handle(which, Event::TcpConnectionFails);
            }
        }
    }

    /// Perform actions; messages are only encoded into the slot's buffer.
    fn perform(&mut self, which: Which, actions: Vec<Action<N>>) {
        let addr = self.addr;
        for action in actions {
            // Field-level borrows so that status and outbox stay usable.
            let slot = match which {
                Which::Main => &mut self.main,
                Which::Pending => match self.pending.as_mut() {
                    Some(p) => p,
                    None => return,
                },
            };
            match action {
                Action::Connect => {
                    slot.conn = None;
                    slot.connecting = Some(Box::pin(connect(self.cfg.clone(), addr)));
                }
                Action::SendMessage(msg) => {
                    if let Some(conn) = &slot.conn {
                        codec::encode(&msg, &conn.opts, &mut slot.wbuf);
                        if which == Which::Main {
                            let mut st = lock(&self.status);
                            st.status.messages_out += 1;
                            if let Message::Notification(n) = &msg {
                                st.status.last_error = Some(PeerError::Session(
                                    if n.code == crate::error::notif::HOLD_TIMER_EXPIRED {
                                        DownReason::HoldTimerExpired
                                    } else {
                                        DownReason::NotificationSent {
                                            code: n.code,
                                            subcode: n.subcode,
                                        }
                                    },
                                ));
                            }
                        }
                    }
                }
                Action::CloseConnection => {
                    let lost = Self::flush(slot);
                    slot.connecting = None;
                    if let Some(c) = slot.conn.take() {
                        if !lost {
                            c.close();
                        }
                    }
                }
                Action::StartTimer(k, d) => {
                    slot.timers[k.index()] = Some(Instant::now() + jitter(k, d))
                }
                Action::StopTimer(k) => slot.timers[k.index()] = None,
                Action::StateChanged { to, .. } => {
                    if which == Which::Main {
                        lock(&self.status).status.state = to;
                        self.outbox.push_back(SpeakerEvent::StateChanged {
                            peer: addr,
                            state: to,
                        });
                    }
                }
                Action::SessionEstablished(info) => {
                    if let Some(c) = slot.conn.as_mut() {
                        // RFC 6793 / RFC 8654: from now on the wire format
                        // depends on what was negotiated.
                        c.opts = CodecOptions {
                            four_octet_as: info.four_octet_as,
                            extended_message: info.extended_message,
                        };
                    }
                    if which == Which::Main {
                        {
                            let mut st = lock(&self.status);
                            st.established_at = Some(Instant::now().into_std());
                            st.status.established_count += 1;
                            st.status.prefixes_received = 0;
                            st.status.negotiated = Some(info.clone());
                        }
                        self.outbox
                            .push_back(SpeakerEvent::Established { peer: addr, info });
                    }
                }
                Action::SessionDown {
                    reason,
                    graceful_restart,
                } => {
                    if which == Which::Main {
                        {
                            let mut st = lock(&self.status);
                            st.established_at = None;
                            st.status.negotiated = None;
                            st.status.last_error = Some(PeerError::Session(reason.clone()));
                        }
                        self.outbox.push_back(SpeakerEvent::Down {
                            peer: addr,
                            reason,
                            graceful_restart,
                        });
                    }
                }
                Action::Deliver(update) => {
                    if which == Which::Main {
                        self.outbox
                            .push_back(SpeakerEvent::Update { peer: addr, update });
                    }
                }
                Action::EndOfRib(afi_safi) => {
                    if which == Which::Main {
                        self.outbox.push_back(SpeakerEvent::EndOfRib {
                            peer: addr,
                            afi_safi,
                        });
                    }
                }
                Action::RouteRefreshRequested(afi_safi) => {
                    if which == Which::Main {
                        self.outbox.push_back(SpeakerEvent::RouteRefresh {
                            peer: addr,
                            afi_safi,
                        });
                    }
                }
            }
        }
    }

    /// Hand the encoded messages to the writer. Returns true if the writer
    /// is gone (connection dead).
    fn flush(slot: &mut Slot<N>) -> bool {
        if slot.wbuf.is_empty() {
            return false;
        }
        let buf = slot.wbuf.split().freeze();
        let Some(conn) = &slot.conn else {
            return false;
        };
        let len = buf.len();
        conn.queued.fetch_add(len, Ordering::Relaxed);
        // Fails only when the writer task ended (write error or timeout).
        conn.write_tx.send(buf).is_err()
    }

    /// After any event: drop a dead pending slot, promote it if main lost
    /// its connection, and resolve collisions (§6.8).
    fn settle(&mut self) {
        let Some(p) = &self.pending else { return };
        let ps = p.fsm.state();
        if !matches!(ps, State::OpenSent | State::OpenConfirm) {
            // The candidate failed: forget it. (It cannot get further than
            // OpenConfirm: collisions are settled when an OPEN arrives.)
            self.pending = None;
            return;
        }
        let ms = self.main.fsm.state();
        match ms {
            State::Idle => {
                if !self.main.fsm.auto_start() {
                    // Stopped on purpose; the candidate goes with it.
                    self.pending = None;
                    return;
                }
                // Main lost its connection: the candidate takes over.
                self.promote();
            }
            State::Connect | State::Active => {
                // Our connect is still in flight while the peer's connection
                // got its OPEN through: that one wins, stop trying.
                if ps == State::OpenConfirm {
                    self.promote();
                }
            }
            State::Established => {
                if ps != State::OpenConfirm {
                    return;
                }
                let gr = self
                    .main
                    .fsm
                    .negotiated()
                    .is_some_and(|n| n.peer_graceful_restart.is_some());
                if gr {
                    // RFC 4724 §4.2: a new OPEN from a GR peer while the old
                    // session is up means it restarted.
                    info!(peer = %self.addr, "peer restarted (new OPEN while Established): replacing the session");
                    let actions = self.main.fsm.handle(Event::TcpConnectionFails);
                    let actions = actions
                        .into_iter()
                        .map(|a| match a {
                            Action::SessionDown {
                                graceful_restart, ..
                            } => Action::SessionDown {
                                reason: DownReason::PeerRestarted,
                                graceful_restart,
                            },
                            a => a,
                        })
                        .collect();
                    self.run_actions(Which::Main, actions);
                    self.promote();
                } else {
                    // §6.8: a collision with an Established session closes
                    // the new connection.
                    info!(peer = %self.addr, "collision with the Established session: closing the new connection");
                    self.close_pending(StopReason::CollisionResolution);
                }
            }
            State::OpenSent | State::OpenConfirm => {
                let known = self
                    .main
                    .fsm
                    .peer_router_id()
                    .zip(self.main.fsm.peer_asn())
                    .or_else(|| p.fsm.peer_router_id().zip(p.fsm.peer_asn()));
                let Some((remote_id, remote_asn)) = known else {
                    return;
                };
                let local = self.main.fsm.config();
                let keep =
                    resolve_collision(local.router_id, local.local_asn, remote_id, remote_asn);
                // The pending slot is always inbound. If main is inbound too
                // (the peer reconnected), the newer connection wins.
                let main_wins = !self.main.inbound && keep == Keep::Outbound;
                info!(
                    peer = %self.addr,
                    %remote_id,
                    keep = ?keep,
                    "connection collision (RFC 4271 §6.8)"
                );
                if main_wins {
                    self.close_pending(StopReason::CollisionResolution);
                } else {
                    if let Some(p) = self.pending.as_mut() {
                        std::mem::swap(&mut self.main, p);
                    }
                    self.close_pending(StopReason::CollisionResolution);
                    let st = self.main.fsm.state();
                    lock(&self.status).status.state = st;
                    self.outbox.push_back(SpeakerEvent::StateChanged {
                        peer: self.addr,
                        state: st,
                    });
                }
            }
        }
    }

    /// Make the pending slot the main one.
    fn promote(&mut self) {
        if let Some(p) = self.pending.take() {
            let old = std::mem::replace(&mut self.main, p);
            if let Some(c) = old.conn {
                c.close();
            }
            let st = self.main.fsm.state();
            lock(&self.status).status.state = st;
            self.outbox.push_back(SpeakerEvent::StateChanged {
                peer: self.addr,
                state: st,
            });
        }
    }

    fn close_pending(&mut self, reason: StopReason) {
        if let Some(p) = self.pending.as_mut() {
            let actions = p.fsm.handle(Event::ManualStop(reason));
            self.run_actions(Which::Pending, actions);
        }
        self.pending = None;
    }
}
