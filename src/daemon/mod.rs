//! The evpnd daemon: wires the BGP speaker, the EVPN RIB and the kernel
//! dataplane together.
//!
//! Data flows one way: the speaker's tasks decode UPDATEs and send them
//! here; one task — the core loop in this module — owns the [`Rib`] and
//! turns batches of inputs into intents for the dataplane task and UPDATEs
//! for the speaker. The dataplane task owns every kernel object and reports
//! locally learned MACs back. Nothing else holds RIB state: `evpnctl`
//! requests are answered by the core loop from its own tables.

mod convert;
mod hold;
mod outbound;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use evpnd_bgp::fsm::StopReason;
use evpnd_bgp::session::{event_channel, ClearKind, EventReceiver, Speaker, SpeakerEvent};
use evpnd_bgp::AfiSafi;
use evpnd_config::Config;
use evpnd_evpn::rib::{Outbound, Rib, RibEvent, RibInput, RibOutput, TimerRequest};
use evpnd_evpn::route::EvpnNlri;
use evpnd_evpn::{Intent, MacAddress, Vni};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};

use crate::control::{self, MacInfo, MacKind, OperState, Request, Response, VniInfo, VtepInfo};
use crate::dataplane::{self, DataplaneConfig, DataplaneHandle, LocalEvent};
use crate::metrics::{self, KernelEntryKind, Metrics};
use crate::systemd;

pub use convert::*;

/// Most routes (NLRI of UPDATEs; other inputs count one) folded into one
/// RIB pass: large enough that a pass's fixed costs are spread thin, small
/// enough that control requests are answered in between and that what a
/// pass holds at once (decoded routes, intents, the dataplane's writes in
/// flight) stays a small fixed size instead of growing with the table. A
/// count of UPDATEs would not do: one UPDATE carries 1 to ~2,000 routes.
const BATCH_ROUTES: usize = 8192;
/// Intents handed to the dataplane per call: a session drop or a VNI
/// removal yields the whole table's removals in one RIB pass, and the
/// dataplane holds a request per intent while it writes them.
const APPLY_CHUNK: usize = 8192;
/// The speaker's event channel: at most this many events, and about this
/// many bytes of decoded routes (with the Extended Message capability one
/// UPDATE holds up to ~2,000 routes, so a count alone could queue most of
/// a table). Two passes' worth keeps the core loop fed.
const EVENT_QUEUE: usize = 1024;
const EVENT_QUEUE_BYTES: usize = 2 << 20;
/// When nothing else says so, how long adopted kernel entries wait for the
/// RIB to refill after a start before unbacked ones are swept.
const DEFAULT_SWEEP_AFTER: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("dataplane: {0}")]
    Dataplane(#[from] dataplane::DataplaneError),
    #[error("BGP listener: {0}")]
    Listen(#[source] std::io::Error),
    #[error("control socket {path}: {source}")]
    Control {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("metrics endpoint {addr}: {source}")]
    Metrics {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("BGP: {0}")]
    Speaker(#[from] evpnd_bgp::session::SpeakerError),
    #[error("signal handler: {0}")]
    Signal(#[source] std::io::Error),
}

/// Run the daemon until SIGTERM/SIGINT.
pub async fn run(config_path: Option<PathBuf>, cfg: Config) -> Result<(), DaemonError> {
    let started = Instant::now();
    let metrics = Arc::new(Metrics::new());

    // Kernel first: adopt what a previous run left (RFC 4724-style restart:
    // forwarding continues while the RIB refills).
    let (local_tx, local_rx) = mpsc::channel::<LocalEvent>(4096);
    let mut dp_cfg =
        DataplaneConfig::new(cfg.vnis.iter().filter_map(|v| vni_spec(&cfg, v)).collect());
    dp_cfg.protocol = cfg.dataplane.protocol;
    if let Some(i) = cfg.dataplane.reconcile_interval {
        dp_cfg.reconcile_interval = i;
    }
    let dp = dataplane::spawn(dp_cfg, local_tx)?;
    let adopted = dp
        .snapshot()
        .await
        .map(|s| s.vnis.iter().map(|v| v.stale).sum::<usize>())?;
    if adopted > 0 {
        info!(
            entries = adopted,
            "adopted kernel entries from a previous run; kept until the RIB refills"
        );
    }

    let (bgp_tx, bgp_rx) = event_channel::<EvpnNlri>(EVENT_QUEUE, EVENT_QUEUE_BYTES);
    let speaker = Speaker::start(speaker_config(&cfg), bgp_tx)
        .await
        .map_err(DaemonError::Listen)?;
    for n in &cfg.bgp.neighbors {
        speaker.add_peer(peer_config(&cfg, n, adopted > 0)).await?;
    }

    let (ctl_tx, ctl_rx) = mpsc::channel(64);
    let listener = control::bind(&cfg.control.socket).map_err(|source| DaemonError::Control {
        path: cfg.control.socket.clone(),
        source,
    })?;
    tokio::spawn(async move {
        if let Err(e) = control::serve_listener(listener, ctl_tx).await {
            error!(error = %e, "control socket stopped");
        }
    });
    if let Some(addr) = cfg.control.metrics {
        let l = metrics::bind(addr)
            .await
            .map_err(|source| DaemonError::Metrics { addr, source })?;
        let m = metrics.clone();
        tokio::spawn(async move {
            if let Err(e) = metrics::serve(l, m).await {
                error!(error = %e, "metrics endpoint stopped");
            }
        });
    }

    let mut core = Core::new(config_path, cfg, speaker, dp, metrics, started);
    core.init().await;
    systemd::notify_ready();
    info!("evpnd ready");
    let res = core.run(bgp_rx, local_rx, ctl_rx).await;
    systemd::notify_stopping();
    core.shutdown().await;
    res
}

/// Per-peer facts the core loop keeps beside the RIB.
#[derive(Debug, Default)]
struct PeerSide {
    established: bool,
    ebgp: bool,
    extended_message: bool,
    four_octet_as: bool,
    /// End-of-RIB received since the session came up.
    eor: bool,
    /// Routes we announced to it (for `show neighbors`).
    sent: u64,
}

struct Core {
    config_path: Option<PathBuf>,
    cfg: Config,
    rib: Rib,
    speaker: Speaker<EvpnNlri>,
    dp: DataplaneHandle,
    metrics: Arc<Metrics>,
    started: Instant,
    peers: HashMap<IpAddr, PeerSide>,
    stale_timers: HashMap<IpAddr, Instant>,
    rd_indexes: RdIndexes,
    /// VNIs whose local MACs / neighbors are not advertised.
    quiet_macs: HashSet<Vni>,
    quiet_neigh: HashSet<Vni>,
    /// Adopted kernel entries wait for this (None once swept).
    sweep_deadline: Option<Instant>,
    vni_up: BTreeMap<Vni, bool>,
    /// Removals of remote entries not yet handed to the dataplane.
    withdraw_hold: hold::WithdrawHold,
    /// Held removals a local learn released: applied before the next pass.
    released: Vec<Intent>,
}

impl Core {
    fn new(
        config_path: Option<PathBuf>,
        cfg: Config,
        speaker: Speaker<EvpnNlri>,
        dp: DataplaneHandle,
        metrics: Arc<Metrics>,
        started: Instant,
    ) -> Core {
        let sweep_after = if cfg.bgp.graceful_restart.enable {
            cfg.bgp.graceful_restart.restart_time
        } else {
            DEFAULT_SWEEP_AFTER
        };
        Core {
            rib: Rib::new(rib_config(&cfg)),
            config_path,
            speaker,
            dp,
            metrics,
            started,
            peers: HashMap::new(),
            stale_timers: HashMap::new(),
            rd_indexes: RdIndexes::default(),
            quiet_macs: HashSet::new(),
            quiet_neigh: HashSet::new(),
            // Even with nothing adopted the dataplane keeps unbacked entries
            // of ours until the sweep; always end the window.
            sweep_deadline: Some(Instant::now() + sweep_after),
            vni_up: BTreeMap::new(),
            withdraw_hold: hold::WithdrawHold::new(cfg.bgp.graceful_restart.withdraw_hold),
            released: Vec::new(),
            cfg,
        }
    }

    async fn init(&mut self) {
        self.rd_indexes.assign(&self.cfg.vnis);
        let inputs = self.vni_inputs();
        self.update_quiet();
        self.feed(inputs).await;
        if self.cfg.bgp.neighbors.is_empty() {
            // Nothing will refill the RIB from the network.
            self.sweep().await;
        }
    }

    fn vni_inputs(&self) -> Vec<RibInput> {
        self.cfg
            .vnis
            .iter()
            .filter_map(|v| rib_vni(&self.cfg, v, self.rd_indexes.get(v.id)))
            .map(RibInput::VniAdd)
            .collect()
    }

    fn update_quiet(&mut self) {
        self.quiet_macs = self
            .cfg
            .vnis
            .iter()
            .filter(|v| !v.advertise_local)
            .filter_map(|v| vni(v.id))
            .collect();
        self.quiet_neigh = self
            .cfg
            .vnis
            .iter()
            .filter(|v| !v.advertise_local || !v.arp_suppress)
            .filter_map(|v| vni(v.id))
            .collect();
    }

    async fn run(
        &mut self,
        mut bgp_rx: EventReceiver<EvpnNlri>,
        mut local_rx: mpsc::Receiver<LocalEvent>,
        mut ctl_rx: mpsc::Receiver<(Request, oneshot::Sender<Response>)>,
    ) -> Result<(), DaemonError> {
        let mut hup = signal(SignalKind::hangup()).map_err(DaemonError::Signal)?;
        let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signal)?;
        let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signal)?;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let watchdog = systemd::watchdog_interval();
        let mut last_watchdog = Instant::now();
        let mut last_metrics = Instant::now();
        loop {
            let mut inputs = Vec::new();
            // Routes in `inputs` (see BATCH_ROUTES).
            let mut routes = 0;
            tokio::select! {
                // Local state first: at start the bridge's MACs must be in
                // the RIB before a session comes up, or we would send
                // End-of-RIB without them and a graceful-restart helper
                // would sweep our routes (RFC 4724 §4.2).
                biased;
                ev = local_rx.recv() => match ev {
                    Some(ev) => {
                        self.local_event(ev, &mut inputs);
                        while inputs.len() < BATCH_ROUTES {
                            match local_rx.try_recv() {
                                Ok(ev) => self.local_event(ev, &mut inputs),
                                Err(_) => break,
                            }
                        }
                    }
                    None => {
                        error!("dataplane task stopped");
                        return Ok(());
                    }
                },
                ev = bgp_rx.recv() => match ev {
                    Some(ev) => {
                        routes += event_routes(&ev);
                        self.speaker_event(ev, &mut inputs);
                        // Fold whatever else is already queued into this pass.
                        while routes < BATCH_ROUTES {
                            match bgp_rx.try_recv() {
                                Ok(ev) => {
                                    routes += event_routes(&ev);
                                    self.speaker_event(ev, &mut inputs);
                                }
                                Err(_) => break,
                            }
                        }
                    }
                    None => {
                        error!("BGP speaker stopped");
                        return Ok(());
                    }
                },
                req = ctl_rx.recv() => {
                    if let Some((req, reply)) = req {
                        let resp = self.control(req).await;
                        let _ = reply.send(resp);
                    }
                }
                _ = tick.tick() => {
                    inputs.push(RibInput::Tick);
                    let now = Instant::now();
                    let expired: Vec<IpAddr> = self
                        .stale_timers
                        .iter()
                        .filter(|(_, at)| **at <= now)
                        .map(|(p, _)| *p)
                        .collect();
                    for peer in expired {
                        self.stale_timers.remove(&peer);
                        info!(%peer, "graceful restart time over: removing its stale routes");
                        inputs.push(RibInput::StaleTimerExpired { peer });
                    }
                    let due = self.withdraw_hold.due(now);
                    if !due.is_empty() {
                        debug!(count = due.len(), "withdraw hold over: removing entries");
                        self.apply_intents(due).await;
                    }
                    if self.sweep_deadline.is_some_and(|d| d <= now) {
                        info!("restart window over before every peer sent End-of-RIB");
                        self.sweep().await;
                    }
                    if let Some(w) = watchdog {
                        if last_watchdog.elapsed() >= w {
                            systemd::notify_watchdog();
                            last_watchdog = Instant::now();
                        }
                    }
                    if last_metrics.elapsed() >= Duration::from_secs(5) {
                        self.refresh_metrics().await;
                        last_metrics = Instant::now();
                    }
                }
                _ = hup.recv() => self.reload().await,
                _ = term.recv() => { info!("SIGTERM: stopping"); return Ok(()); }
                _ = int.recv() => { info!("SIGINT: stopping"); return Ok(()); }
            }
            if !self.released.is_empty() {
                let released = std::mem::take(&mut self.released);
                self.apply_intents(released).await;
            }
            if !inputs.is_empty() {
                self.feed(inputs).await;
            }
        }
    }

    fn speaker_event(&mut self, ev: SpeakerEvent<EvpnNlri>, inputs: &mut Vec<RibInput>) {
        match ev {
            SpeakerEvent::Established { peer, info } => {
                info!(%peer, router_id = %info.peer_router_id, hold = info.hold_time, "session established");
                self.metrics
                    .set_session_state(peer, control::SessionState::Established);
                let side = self.peers.entry(peer).or_default();
                side.established = true;
                side.eor = false;
                side.sent = 0;
                side.ebgp = info.peer_asn.0 != self.cfg.bgp.asn;
                side.extended_message = info.extended_message;
                side.four_octet_as = info.four_octet_as;
                if !info.afi_safis.contains(&AfiSafi::L2VPN_EVPN) {
                    warn!(%peer, "peer did not negotiate L2VPN EVPN: no routes will be exchanged");
                }
                inputs.push(RibInput::PeerUp {
                    peer,
                    router_id: info.peer_router_id,
                    asn: info.peer_asn.0,
                });
            }
            SpeakerEvent::Update { peer, update } => {
                for e in &update.errors {
                    warn!(%peer, attr = e.attr_type, offset = e.offset, action = ?e.action, reason = %e.reason,
                        "malformed attribute (RFC 7606)");
                }
                self.metrics.inc_updates_in(peer);
                inputs.push(RibInput::Update { peer, update });
            }
            SpeakerEvent::EndOfRib { peer, afi_safi } => {
                if afi_safi == AfiSafi::L2VPN_EVPN {
                    debug!(%peer, "End-of-RIB");
                    self.peers.entry(peer).or_default().eor = true;
                    self.stale_timers.remove(&peer);
                    inputs.push(RibInput::EndOfRib { peer });
                }
            }
            SpeakerEvent::RouteRefresh { peer, afi_safi } => {
                if afi_safi == AfiSafi::L2VPN_EVPN {
                    inputs.push(RibInput::RouteRefresh { peer });
                }
            }
            SpeakerEvent::Down {
                peer,
                reason,
                graceful_restart,
            } => {
                let keep = stale_time(graceful_restart.as_ref());
                match keep {
                    Some(t) => {
                        warn!(%peer, %reason, stale_for = ?t, "session down; keeping its routes (graceful restart)")
                    }
                    None => warn!(%peer, %reason, "session down"),
                }
                if let Some(side) = self.peers.get_mut(&peer) {
                    side.established = false;
                    side.eor = false;
                }
                if let Some(t) = keep {
                    self.stale_timers.insert(peer, Instant::now() + t);
                }
                inputs.push(RibInput::PeerDown {
                    peer,
                    graceful_restart: keep,
                });
            }
            SpeakerEvent::StateChanged { peer, state } => {
                self.metrics.set_session_state(peer, session_state(state));
            }
        }
    }

    fn local_event(&mut self, ev: LocalEvent, inputs: &mut Vec<RibInput>) {
        // A remote entry whose removal is held must not fight a local learn
        // of the same MAC or IP: remove it now.
        let released = match ev {
            LocalEvent::MacAdd { vni, mac } => self.withdraw_hold.release_mac(vni, mac),
            LocalEvent::NeighAdd { vni, ip, .. } => self.withdraw_hold.release_neigh(vni, ip),
            _ => None,
        };
        self.released.extend(released);
        match ev {
            LocalEvent::MacAdd { vni, mac } if !self.quiet_macs.contains(&vni) => {
                inputs.push(RibInput::LocalMacAdd { vni, mac })
            }
            LocalEvent::MacRemove { vni, mac } => {
                inputs.push(RibInput::LocalMacRemove { vni, mac })
            }
            LocalEvent::NeighAdd { vni, ip, mac } if !self.quiet_neigh.contains(&vni) => {
                inputs.push(RibInput::LocalNeighAdd { vni, ip, mac })
            }
            LocalEvent::NeighRemove { vni, ip } => {
                inputs.push(RibInput::LocalNeighRemove { vni, ip })
            }
            LocalEvent::VniUp { vni } => {
                info!(%vni, "VNI devices up");
                self.vni_up.insert(vni, true);
            }
            LocalEvent::VniDown { vni } => {
                warn!(%vni, "VNI devices missing or down");
                self.vni_up.insert(vni, false);
            }
            _ => {}
        }
    }

    /// One RIB pass and everything it asks for.
    async fn feed(&mut self, inputs: Vec<RibInput>) {
        let out = self.rib.handle_batch(inputs, Instant::now());
        self.act(out).await;
        self.maybe_sweep().await;
    }

    async fn act(&mut self, out: RibOutput) {
        let RibOutput {
            intents,
            outbound,
            timers,
            events,
        } = out;
        for e in events {
            log_rib_event(&e);
        }
        for t in timers {
            match t {
                TimerRequest::Stale { peer, after } => {
                    self.stale_timers.insert(peer, Instant::now() + after);
                }
            }
        }
        let intents = self.withdraw_hold.filter(intents, Instant::now());
        let kept = self.withdraw_hold.take_cancelled();
        if kept > 0 {
            info!(
                count = kept,
                "re-advertised within the withdraw hold: kernel entries kept"
            );
        }
        self.apply_intents(intents).await;
        for o in outbound {
            self.send(o).await;
        }
    }

    /// Hand intents to the dataplane, at most APPLY_CHUNK per call, in
    /// order (the kernel ends up the same as with one call).
    async fn apply_intents(&mut self, intents: Vec<Intent>) {
        if intents.len() <= APPLY_CHUNK {
            return self.apply_chunk(intents).await;
        }
        let mut it = intents.into_iter();
        loop {
            let chunk: Vec<Intent> = it.by_ref().take(APPLY_CHUNK).collect();
            if chunk.is_empty() {
                return;
            }
            self.apply_chunk(chunk).await;
        }
    }

    async fn apply_chunk(&mut self, intents: Vec<Intent>) {
        if intents.is_empty() {
            return;
        }
        let n = intents.len();
        let t0 = Instant::now();
        if let Err(e) = self.dp.apply(intents).await {
            error!(error = %e, "dataplane did not take {n} intents");
        }
        self.metrics.observe_apply_latency(t0.elapsed());
    }

    fn targets(&self, to: Option<IpAddr>) -> Vec<IpAddr> {
        match to {
            Some(p) => vec![p],
            None => self
                .peers
                .iter()
                .filter(|(_, s)| s.established)
                .map(|(p, _)| *p)
                .collect(),
        }
    }

    async fn send(&mut self, o: Outbound) {
        match o {
            Outbound::Announce { to, routes } => {
                for peer in self.targets(to) {
                    let Some(side) = self.peers.get(&peer) else {
                        continue;
                    };
                    let opts = outbound::codec_options(side.four_octet_as, side.extended_message);
                    let ebgp = side.ebgp.then_some(self.cfg.bgp.asn);
                    let msgs = outbound::announce(&routes, ebgp, &opts);
                    if let Some(side) = self.peers.get_mut(&peer) {
                        side.sent += routes.len() as u64;
                    }
                    self.deliver(peer, msgs).await;
                }
            }
            Outbound::Withdraw { to, routes } => {
                for peer in self.targets(to) {
                    let Some(side) = self.peers.get(&peer) else {
                        continue;
                    };
                    let opts = outbound::codec_options(side.four_octet_as, side.extended_message);
                    let msgs = outbound::withdraw(&routes, &opts);
                    self.deliver(peer, msgs).await;
                }
            }
            Outbound::EndOfRib { to } => {
                self.deliver(to, vec![evpnd_bgp::Update::end_of_rib(AfiSafi::L2VPN_EVPN)])
                    .await;
            }
            Outbound::RouteRefreshRequest { to } => {
                for peer in self.targets(to) {
                    if let Err(e) = self.speaker.clear(peer, ClearKind::Soft).await {
                        debug!(%peer, error = %e, "route refresh request not sent");
                    }
                }
            }
        }
    }

    async fn deliver(&mut self, peer: IpAddr, msgs: Vec<evpnd_bgp::Update<EvpnNlri>>) {
        if msgs.is_empty() {
            return;
        }
        let n = msgs.len();
        match self.speaker.send(peer, msgs).await {
            Ok(()) => {
                for _ in 0..n {
                    self.metrics.inc_updates_out(peer);
                }
            }
            Err(e) => debug!(%peer, error = %e, "UPDATEs not sent"),
        }
    }

    /// After a start, adopted kernel entries are kept until every configured
    /// peer sent End-of-RIB (RFC 4724 §4.2) or the window closes.
    async fn maybe_sweep(&mut self) {
        if self.sweep_deadline.is_none() {
            return;
        }
        let all = self.cfg.bgp.neighbors.iter().all(|n| {
            self.peers
                .get(&n.address)
                .is_some_and(|s| s.established && s.eor)
        });
        if all && !self.cfg.bgp.neighbors.is_empty() {
            info!("End-of-RIB from every peer");
            self.sweep().await;
        }
    }

    async fn sweep(&mut self) {
        self.sweep_deadline = None;
        match self.dp.sweep_stale().await {
            Ok(()) => info!("kernel entries not backed by a route swept"),
            Err(e) => error!(error = %e, "stale sweep failed"),
        }
    }

    async fn reload(&mut self) {
        systemd::notify_reloading();
        let Some(path) = self.config_path.clone() else {
            warn!("SIGHUP ignored: no configuration file");
            systemd::notify_ready();
            return;
        };
        let new = match evpnd_config::load(&path) {
            Ok(c) => c,
            Err(e) => {
                error!("reload rejected, keeping the running configuration:\n{e}");
                self.metrics.inc_config_reloads(false);
                systemd::notify_ready();
                return;
            }
        };
        let diff = Config::diff(&self.cfg, &new);
        for what in &diff.restart_required {
            warn!(change = %what, "changed in the configuration but only applied on restart");
        }
        // The parts that need a restart keep their running values.
        let mut applied = new.clone();
        applied.bgp.asn = self.cfg.bgp.asn;
        applied.bgp.router_id = self.cfg.bgp.router_id;
        applied.bgp.listen_port = self.cfg.bgp.listen_port;
        applied.bgp.graceful_restart = self.cfg.bgp.graceful_restart.clone();
        applied.vtep = self.cfg.vtep.clone();
        applied.control = self.cfg.control.clone();
        applied.dataplane.protocol = self.cfg.dataplane.protocol;

        let removed = diff
            .neighbors_removed
            .iter()
            .map(|n| n.address)
            .chain(diff.neighbors_changed.iter().map(|c| c.old.address));
        let added: Vec<IpAddr> = diff
            .neighbors_added
            .iter()
            .map(|n| n.address)
            .chain(diff.neighbors_changed.iter().map(|c| c.new.address))
            .collect();
        for a in removed.collect::<Vec<_>>().iter() {
            info!(peer = %a, "reload: removing neighbor");
            if let Err(e) = self.speaker.remove_peer(*a).await {
                warn!(peer = %a, error = %e, "remove neighbor");
            }
            self.peers.remove(a);
            self.stale_timers.remove(a);
            self.metrics.remove_peer(*a);
            // Its routes go now: the peer is gone from the configuration.
            let out = self.rib.handle(
                RibInput::PeerDown {
                    peer: *a,
                    graceful_restart: None,
                },
                Instant::now(),
            );
            self.act(out).await;
        }
        for a in added.iter() {
            if let Some(n) = applied.neighbor(*a) {
                info!(peer = %a, "reload: adding neighbor");
                if let Err(e) = self.speaker.add_peer(peer_config(&applied, n, false)).await {
                    error!(peer = %a, error = %e, "add neighbor");
                }
            }
        }

        let old_vnis: Vec<u32> = self.cfg.vnis.iter().map(|v| v.id).collect();
        self.cfg = applied;
        self.update_quiet();
        self.rd_indexes.assign(&self.cfg.vnis);
        let mut inputs = Vec::new();
        for id in diff.vnis_removed.iter().map(|v| &v.id) {
            if let Some(v) = vni(*id) {
                info!(vni = id, "reload: removing VNI");
                inputs.push(RibInput::VniRemove(v));
                self.metrics.remove_vni(*id);
                self.vni_up.remove(&v);
            }
        }
        let touched: Vec<u32> = diff
            .vnis_added
            .iter()
            .map(|v| v.id)
            .chain(diff.vnis_changed.iter().map(|c| c.new.id))
            .collect();
        for id in touched.iter() {
            if let Some(v) = self.cfg.vni(*id) {
                if let Some(rv) = rib_vni(&self.cfg, v, self.rd_indexes.get(*id)) {
                    info!(
                        vni = id,
                        new = !old_vnis.contains(id),
                        "reload: applying VNI"
                    );
                    inputs.push(RibInput::VniAdd(rv));
                }
            }
        }
        // Devices first, so that intents for new VNIs find them.
        let specs = self
            .cfg
            .vnis
            .iter()
            .filter_map(|v| vni_spec(&self.cfg, v))
            .collect();
        if let Err(e) = self.dp.set_vnis(specs).await {
            error!(error = %e, "reload: dataplane refused the VNI list");
        }
        if !inputs.is_empty() {
            self.feed(inputs).await;
        }
        self.metrics.inc_config_reloads(true);
        info!("configuration reloaded");
        systemd::notify_ready();
    }

    async fn refresh_metrics(&mut self) {
        let s = self.dp.stats();
        self.metrics
            .set_kernel_entries(KernelEntryKind::RemoteMac, s.remote_macs);
        self.metrics
            .set_kernel_entries(KernelEntryKind::Flood, s.flood_entries);
        self.metrics
            .set_kernel_entries(KernelEntryKind::Neighbor, s.neighbors);
        self.metrics
            .set_kernel_entries(KernelEntryKind::LocalMac, s.local_macs);
        self.metrics.set_netlink_totals(s.netlink_errors, s.resyncs);
        let c = self.rib.counters();
        // docs/metrics.md: `received` counts paths from all neighbors,
        // `best` the routes with a selected best path.
        for (vni, best) in &c.per_vni {
            let paths = c.paths_per_vni.get(vni).copied().unwrap_or_default();
            for t in [2usize, 3] {
                self.metrics
                    .set_routes(t as u8, vni.get(), paths[t], best[t]);
            }
        }
    }

    async fn control(&mut self, req: Request) -> Response {
        match req {
            Request::ShowNeighbors { neighbor } => {
                let mut out = Vec::new();
                for p in self.speaker.peers().await {
                    if neighbor.is_some_and(|n| n != p.address) {
                        continue;
                    }
                    let sent = self.peers.get(&p.address).map_or(0, |s| s.sent);
                    out.push(neighbor_info(&p, self.cfg.neighbor(p.address), sent));
                }
                if let (Some(n), true) = (neighbor, out.is_empty()) {
                    return Response::error(
                        control::ErrorCode::NotFound,
                        format!("no neighbor {n}"),
                    );
                }
                out.sort_by_key(|n| n.address);
                Response::Neighbors { neighbors: out }
            }
            Request::ShowRoutes {
                vni,
                mac,
                route_type,
                neighbor,
            } => {
                let mac = match parse_mac(mac.as_deref()) {
                    Ok(m) => m,
                    Err(r) => return *r,
                };
                let routes = self
                    .rib
                    .routes()
                    .map(|r| route_info(&r))
                    .filter(|r| vni.is_none_or(|v| r.vni == Some(v)))
                    .filter(|r| route_type.is_none_or(|t| r.route_type == t))
                    .filter(|r| neighbor.is_none_or(|n| r.peer == Some(n)))
                    .filter(|r| {
                        mac.is_none_or(|m| r.mac.as_deref() == Some(m.to_string().as_str()))
                    })
                    .collect();
                Response::Routes { routes }
            }
            Request::ShowVnis { vni: filter } => {
                let snap = self.dp.snapshot().await.unwrap_or_default();
                let mut vnis = Vec::new();
                for v in &self.cfg.vnis {
                    if filter.is_some_and(|f| f != v.id) {
                        continue;
                    }
                    let Some(id) = vni(v.id) else { continue };
                    let ks = snap.vnis.iter().find(|s| s.vni == Some(id));
                    let rv = self.rib.vni_configs().find(|c| c.vni == id);
                    let mut vteps = self.rib.vteps(id);
                    if let evpnd_config::FloodMode::Static { vteps: s } = &v.flood {
                        vteps.extend(s.iter().copied());
                    }
                    vnis.push(VniInfo {
                        vni: v.id,
                        bridge: v.bridge.clone(),
                        vxlan: v.vxlan.clone(),
                        state: if ks.is_some_and(|k| k.up) {
                            OperState::Up
                        } else {
                            OperState::Down
                        },
                        flood: v.flood.name().to_string(),
                        local_macs: ks.map_or(0, |k| k.local_macs.len() as u64),
                        remote_macs: ks.map_or(0, |k| k.remote_macs.len() as u64),
                        vteps,
                        rd: rv.map(|c| c.rd.to_string()).unwrap_or_default(),
                        import_rt: rv
                            .map(|c| c.import_rts.iter().map(|r| r.to_string()).collect())
                            .unwrap_or_default(),
                        export_rt: rv
                            .map(|c| c.export_rts.iter().map(|r| r.to_string()).collect())
                            .unwrap_or_default(),
                    });
                }
                if let (Some(f), true) = (filter, vnis.is_empty()) {
                    return Response::error(control::ErrorCode::NotFound, format!("no VNI {f}"));
                }
                Response::Vnis { vnis }
            }
            Request::ShowMacs { vni: filter, mac } => {
                let mac = match parse_mac(mac.as_deref()) {
                    Ok(m) => m,
                    Err(r) => return *r,
                };
                let snap = self.dp.snapshot().await.unwrap_or_default();
                let mut macs = Vec::new();
                for v in &self.cfg.vnis {
                    if filter.is_some_and(|f| f != v.id) {
                        continue;
                    }
                    let Some(id) = vni(v.id) else { continue };
                    let ks = snap.vnis.iter().find(|s| s.vni == Some(id));
                    for m in self.rib.macs(id) {
                        if mac.is_some_and(|x| x != m.mac) {
                            continue;
                        }
                        let (kind, vtep) = match m.location {
                            Some(evpnd_evpn::rib::MacLocation::Remote(v)) => {
                                (MacKind::Remote, Some(v))
                            }
                            _ => (MacKind::Local, None),
                        };
                        let ips = ks
                            .map(|k| {
                                k.neighbors
                                    .iter()
                                    .chain(k.local_neighbors.iter())
                                    .filter(|(_, mm)| **mm == m.mac)
                                    .map(|(ip, _)| *ip)
                                    .collect()
                            })
                            .unwrap_or_default();
                        macs.push(MacInfo {
                            vni: v.id,
                            mac: m.mac.to_string(),
                            kind,
                            vtep,
                            interface: None,
                            seq: m.seq,
                            sticky: false,
                            duplicate: m.frozen,
                            ips,
                        });
                    }
                }
                Response::Macs { macs }
            }
            Request::ShowVteps { vni: filter } => {
                let mut vteps = Vec::new();
                for v in &self.cfg.vnis {
                    if filter.is_some_and(|f| f != v.id) {
                        continue;
                    }
                    let Some(id) = vni(v.id) else { continue };
                    for t in self.rib.vteps(id) {
                        vteps.push(VtepInfo {
                            vni: v.id,
                            vtep: t,
                            source: control::VtepSource::Evpn,
                        });
                    }
                    if let evpnd_config::FloodMode::Static { vteps: s } = &v.flood {
                        for t in s {
                            vteps.push(VtepInfo {
                                vni: v.id,
                                vtep: *t,
                                source: control::VtepSource::Static,
                            });
                        }
                    }
                }
                Response::Vteps { vteps }
            }
            Request::ClearNeighbor { address, soft } => {
                let kind = if soft {
                    ClearKind::Soft
                } else {
                    ClearKind::Hard
                };
                match self.speaker.clear(address, kind).await {
                    Ok(()) => Response::Cleared { address, soft },
                    Err(e) => Response::error(control::ErrorCode::NotFound, e.to_string()),
                }
            }
            Request::Status => {
                let peers = self.speaker.peers().await;
                let c = self.rib.counters();
                let s = self.dp.stats();
                Response::Status(control::StatusInfo {
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    pid: std::process::id(),
                    uptime_secs: self.started.elapsed().as_secs(),
                    asn: self.cfg.bgp.asn,
                    router_id: self.cfg.bgp.router_id,
                    vtep_ip: self.cfg.vtep.local_ip,
                    config_file: self.config_path.clone(),
                    neighbors_configured: self.cfg.bgp.neighbors.len() as u64,
                    neighbors_established: peers
                        .iter()
                        .filter(|p| p.state == evpnd_bgp::fsm::State::Established)
                        .count() as u64,
                    vnis: self.cfg.vnis.len() as u64,
                    routes: c.routes + c.local_routes,
                    local_macs: s.local_macs,
                    remote_macs: s.remote_macs,
                })
            }
        }
    }

    async fn shutdown(&mut self) {
        // Kernel entries stay: forwarding continues while we are away and the
        // next start adopts them (never flush on restart). With graceful
        // restart the sessions close without a Cease, so the peers keep our
        // routes for the restart time (RFC 4724 §4.2) and the remote VTEPs
        // keep forwarding to us; a Cease would make them withdraw at once.
        let reason = if self.cfg.bgp.graceful_restart.enable {
            StopReason::GracefulRestart
        } else {
            StopReason::AdminShutdown
        };
        self.speaker.shutdown_with(reason).await;
        let _ = std::fs::remove_file(&self.cfg.control.socket);
    }
}

/// How many routes an event brings into a RIB pass: the NLRI of an UPDATE
/// (announced and withdrawn), one for anything else.
fn event_routes(ev: &SpeakerEvent<EvpnNlri>) -> usize {
    match ev {
        SpeakerEvent::Update { update, .. } => {
            let n = update.mp_reach.as_ref().map_or(0, |r| r.nlri.len())
                + update.mp_unreach.as_ref().map_or(0, |u| u.withdrawn.len())
                + update.nlri.len()
                + update.withdrawn.len();
            n.max(1)
        }
        _ => 1,
    }
}

/// A MAC filter from a control request (clients other than evpnctl may
/// send any spelling; an invalid one is a bad request, not a crash).
fn parse_mac(s: Option<&str>) -> Result<Option<MacAddress>, Box<Response>> {
    match s {
        None => Ok(None),
        Some(s) => s.parse().map(Some).map_err(|_| {
            Box::new(Response::error(
                control::ErrorCode::BadRequest,
                format!("invalid MAC address {s:?}"),
            ))
        }),
    }
}

fn log_rib_event(e: &RibEvent) {
    match e {
        RibEvent::MacMoved {
            vni,
            mac,
            from,
            to,
            seq,
        } => info!(%vni, %mac, ?from, ?to, seq, "MAC moved"),
        RibEvent::DuplicateMacFrozen { vni, mac, moves } => {
            warn!(%vni, %mac, moves, "duplicate MAC detected: frozen, no longer advertised or moved")
        }
        RibEvent::DuplicateMacCleared { vni, mac } => info!(%vni, %mac, "duplicate MAC cleared"),
        RibEvent::StalePathsSwept { peer, count } => {
            info!(%peer, count, "stale routes swept after graceful restart")
        }
        RibEvent::TreatedAsWithdraw { peer, count } => {
            warn!(%peer, count, "UPDATE treated as withdraw (RFC 7606)")
        }
        RibEvent::OwnRoutesDropped { peer, count } => {
            debug!(%peer, count, "own routes reflected back, dropped (RFC 4456)")
        }
        RibEvent::NotImported { peer, count } => {
            debug!(%peer, count, "routes imported by no VNI")
        }
        RibEvent::BadNextHop { peer } => warn!(%peer, "route with unusable next hop ignored"),
        RibEvent::UnknownVni { vni } => debug!(%vni, "event for an unknown VNI ignored"),
    }
}

/// Configuration file path helper for the binary.
pub fn default_config_path() -> &'static Path {
    Path::new(evpnd_config::DEFAULT_CONFIG_PATH)
}
