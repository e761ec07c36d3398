//! The dataplane task: owns desired state, the view of the devices and the
//! learned local state, and converges the kernel on what the RIB wants.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use evpnd_evpn::{Intent, IntentKey, MacAddress, Vni};
use netlink_packet_route::link::LinkMessage;
use netlink_sys::AsyncSocket;
use rtnetlink::{LinkBridge, LinkBridgePort, LinkUnspec, LinkVxlan};
use tokio::sync::mpsc;

use super::kernel::{self, FdbRow, LinkRow, NeighRow, NetlinkError, Op};
use super::monitor::{self, MonitorMsg, Notification};
use super::nlparse::{DumpSocket, AF_BRIDGE};
use super::writer::{self, Batch, Done};
use super::{
    Command, DataplaneConfig, DataplaneError, FloodMode, KernelSnapshot, LocalEvent, StatsCell,
    VniSnapshot, VniSpec, CREATED_ALIAS_PREFIX,
};

/// Writes at or above this count are verified by a dump (bulk FDB inserts
/// racing a hash-table resize have been dropped silently by some kernels,
/// with no error for us to see).
const VERIFY_BULK: usize = 64;
/// Verification waits until bulk writes pause this long, so that a stream
/// of batches costs one dump (a dump mid-stream also stalls the writer)...
const VERIFY_DELAY: Duration = Duration::from_millis(300);
/// ...but no longer than this after the first unverified bulk write. Each
/// dump costs the kernel O(rows²/page) (the bridge re-walks its table for
/// every page), so at a million rows a dump every few seconds would cost
/// more than the load itself; a minute still bounds how long a silent drop
/// can go unrepaired under endless churn.
const VERIFY_MAX: Duration = Duration::from_secs(60);
/// Delay between a change that needs a reconcile and the reconcile, so that
/// bursts of link/neigh notifications cost one dump.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// Batches of notifications (up to [`monitor::SLOTS`] each) queued for
/// the actor.
const MONITOR_QUEUE: usize = 4096;

pub(super) fn validate_specs(specs: &[VniSpec]) -> Result<(), DataplaneError> {
    let mut vnis = HashSet::new();
    let mut names: HashMap<&str, Vni> = HashMap::new();
    for s in specs {
        if !vnis.insert(s.vni) {
            return Err(DataplaneError::DuplicateVni(s.vni));
        }
        // A bridge per VNI: the bridge identifies the VNI of learned MACs.
        for n in [s.bridge.as_str(), s.vxlan.as_str()] {
            if names.insert(n, s.vni).is_some() || s.bridge == s.vxlan {
                return Err(DataplaneError::DuplicateDevice {
                    vni: s.vni,
                    name: n.to_string(),
                });
            }
        }
    }
    Ok(())
}

pub(super) fn start(
    cfg: DataplaneConfig,
    events: mpsc::Sender<LocalEvent>,
    cmds: mpsc::Receiver<Command>,
    stats: Arc<StatsCell>,
) -> Result<(), DataplaneError> {
    // Notifications first, so nothing falls between them and the first dump.
    let mon_sock = monitor::open(cfg.monitor_rcvbuf).map_err(DataplaneError::Socket)?;
    let (mut conn, handle, _) = rtnetlink::new_connection().map_err(DataplaneError::Socket)?;
    // Dump answers land here.
    if let Err(e) = kernel::set_rcvbuf(conn.socket_mut().socket_mut(), 8 << 20) {
        tracing::warn!(error = %e, "cannot raise the netlink dump socket's receive buffer");
    }
    // Opened here, so that it belongs to the caller's network namespace.
    let writer = writer::spawn(cfg.protocol).map_err(DataplaneError::Socket)?;
    tokio::spawn(conn);
    let dump_sock = DumpSocket::open().map_err(DataplaneError::Socket)?;
    let (mon_tx, mon_rx) = mpsc::channel(MONITOR_QUEUE);
    monitor::spawn(mon_sock, mon_tx).map_err(DataplaneError::Socket)?;
    // Events are queued without bound and forwarded by their own task, so the
    // actor never waits on the RIB (which may be waiting on us in `apply`).
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<LocalEvent>();
    let fwd_stats = stats.clone();
    tokio::spawn(async move {
        while let Some(e) = ev_rx.recv().await {
            if events.send(e).await.is_err() {
                break;
            }
            fwd_stats.events_emitted.fetch_add(1, Ordering::Relaxed);
        }
    });
    let mut actor = Actor {
        handle,
        writer,
        dump_sock: Arc::new(std::sync::Mutex::new(dump_sock)),
        protocol: cfg.protocol,
        vnis: BTreeMap::new(),
        desired: HashMap::new(),
        links: HashMap::new(),
        by_bridge: HashMap::new(),
        by_vxlan: HashMap::new(),
        adopting: true,
        events: ev_tx,
        stats,
        reconcile_at: None,
        verify: None,
    };
    for s in cfg.vnis {
        actor.vnis.insert(s.vni, VniState::new(s));
    }
    tokio::spawn(async move {
        actor.run(cmds, mon_rx, cfg.reconcile_interval).await;
    });
    Ok(())
}

/// What the RIB wants in one VNI.
#[derive(Default)]
struct Desired {
    remote: HashMap<MacAddress, IpAddr>,
    flood: BTreeSet<IpAddr>,
    neighs: HashMap<IpAddr, MacAddress>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Devs {
    vxlan: u32,
    bridge: u32,
    /// The device's own multicast group: the kernel keeps a zero-MAC entry
    /// for it that is never ours.
    group: Option<IpAddr>,
}

struct VniState {
    spec: VniSpec,
    devs: Option<Devs>,
    up: bool,
    /// Last reason the VNI is not usable, logged once per change.
    problem: Option<String>,
    /// Configuration warnings already logged (VRF missing, port flags).
    warned: BTreeSet<String>,
    stale_macs: HashSet<MacAddress>,
    stale_flood: BTreeSet<IpAddr>,
    stale_neighs: HashSet<IpAddr>,
    /// Flood entries we wrote: the only zero-MAC rows we may remove.
    written_flood: BTreeSet<IpAddr>,
    local_macs: BTreeSet<MacAddress>,
    local_neighs: BTreeMap<IpAddr, MacAddress>,
}

impl VniState {
    fn new(spec: VniSpec) -> VniState {
        VniState {
            spec,
            devs: None,
            up: false,
            problem: None,
            warned: BTreeSet::new(),
            stale_macs: HashSet::new(),
            stale_flood: BTreeSet::new(),
            stale_neighs: HashSet::new(),
            written_flood: BTreeSet::new(),
            local_macs: BTreeSet::new(),
            local_neighs: BTreeMap::new(),
        }
    }

    fn want_flood(&self, d: Option<&Desired>) -> BTreeSet<IpAddr> {
        match &self.spec.flood {
            FloodMode::IngressReplication => d.map(|d| d.flood.clone()).unwrap_or_default(),
            FloodMode::Static(l) => l.iter().copied().collect(),
            FloodMode::Multicast { .. } => BTreeSet::new(),
        }
    }

    fn stale_count(&self) -> usize {
        self.stale_macs.len() + self.stale_flood.len() + self.stale_neighs.len()
    }
}

/// Keep the last intent per key, in first-seen order.
fn coalesce(intents: Vec<Intent>) -> Vec<Intent> {
    let mut order = Vec::new();
    let mut last: HashMap<IntentKey, Intent> = HashMap::new();
    for i in intents {
        let k = i.key();
        if last.insert(k, i).is_none() {
            order.push(k);
        }
    }
    order.into_iter().filter_map(|k| last.remove(&k)).collect()
}

/// Addresses that are never advertised as local bindings.
fn skip_local_ip(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.is_multicast() || a.is_unspecified() || a.is_broadcast(),
        IpAddr::V6(a) => {
            a.is_multicast() || a.is_unspecified() || (a.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

fn alias_for(vni: Vni) -> String {
    format!("{CREATED_ALIAS_PREFIX}{vni}")
}

struct Actor {
    /// Dumps and device changes.
    handle: rtnetlink::Handle,
    /// FDB and neighbor writes.
    writer: writer::Writer,
    /// FDB/neighbor dumps (blocking; used from the blocking pool).
    dump_sock: Arc<std::sync::Mutex<DumpSocket>>,
    protocol: u8,
    vnis: BTreeMap<Vni, VniState>,
    desired: HashMap<Vni, Desired>,
    links: HashMap<u32, LinkRow>,
    by_bridge: HashMap<u32, Vni>,
    by_vxlan: HashMap<u32, Vni>,
    /// Until `sweep_stale`: entries of ours nothing backs are kept as stale.
    adopting: bool,
    events: mpsc::UnboundedSender<LocalEvent>,
    stats: Arc<StatsCell>,
    reconcile_at: Option<tokio::time::Instant>,
    /// Pending verification of bulk writes: (first unverified write, when).
    verify: Option<(tokio::time::Instant, tokio::time::Instant)>,
}

impl Actor {
    async fn run(
        &mut self,
        mut cmds: mpsc::Receiver<Command>,
        mut mon: mpsc::Receiver<MonitorMsg>,
        interval: Duration,
    ) {
        self.reconcile("start").await;
        let mut tick = tokio::time::interval(interval.max(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut mon_open = true;
        loop {
            let debounce = match (self.reconcile_at, self.verify.map(|v| v.1)) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    Some(c) => self.command(c).await,
                    None => break,
                },
                m = mon.recv(), if mon_open => match m {
                    Some(m) => {
                        self.monitor(m, &mut mon).await;
                        // Take what else is queued before doing anything slow.
                        for _ in 0..4096 {
                            match mon.try_recv() {
                                Ok(m) => self.monitor(m, &mut mon).await,
                                Err(_) => break,
                            }
                        }
                    }
                    None => {
                        // Keep serving commands; reconcile covers for the lost stream.
                        tracing::error!("netlink notifications stopped; relying on periodic reconciliation");
                        mon_open = false;
                    }
                },
                d = self.writer.done.recv(), if self.writer.in_flight > 0 => match d {
                    Some(d) => self.finished(d).await,
                    None => {
                        tracing::error!("netlink writer thread is gone");
                        self.writer.in_flight = 0;
                    }
                },
                _ = tick.tick() => self.reconcile("periodic").await,
                _ = tokio::time::sleep_until(debounce.unwrap_or_else(tokio::time::Instant::now)), if debounce.is_some() => {
                    self.reconcile("change").await;
                }
            }
        }
        tracing::info!("dataplane task stopped: all handles dropped");
    }

    fn emit(&mut self, ev: LocalEvent) {
        tracing::debug!(?ev, "local event");
        // Fails only when the receiver is gone (daemon shutting down).
        let _ = self.events.send(ev);
    }

    fn schedule_reconcile(&mut self) {
        self.schedule_reconcile_in(DEBOUNCE);
    }

    /// Keeps the earliest pending time, so a steady stream of triggers cannot
    /// postpone the pass forever.
    fn schedule_reconcile_in(&mut self, delay: Duration) {
        let at = tokio::time::Instant::now() + delay;
        if self.reconcile_at.is_none_or(|t| t > at) {
            self.reconcile_at = Some(at);
        }
    }

    /// Only `Apply` answers with writes still queued (the pipelining the
    /// daemon relies on); every other command answers with them done.
    async fn command(&mut self, c: Command) {
        match c {
            Command::Apply(intents, done) => {
                self.apply(intents).await;
                let _ = done.send(());
            }
            Command::SetVnis(specs, done) => {
                let r = self.set_vnis(specs).await;
                self.flush().await;
                let _ = done.send(r);
            }
            Command::SweepStale(done) => {
                self.sweep().await;
                self.flush().await;
                let _ = done.send(());
            }
            Command::Snapshot(done) => {
                let s = self.snapshot().await;
                let _ = done.send(s);
            }
            Command::Reconcile(done) => {
                self.reconcile("requested").await;
                self.flush().await;
                let _ = done.send(());
            }
            Command::Flush(done) => {
                self.flush().await;
                let _ = done.send(());
            }
        }
    }

    // ---- intents -------------------------------------------------------

    async fn apply(&mut self, intents: Vec<Intent>) {
        let started = Instant::now();
        let mut ops = Vec::new();
        let mut origin = Vec::new();
        for i in coalesce(intents) {
            let vni = i.vni();
            let d = self.desired.entry(vni).or_default();
            let st = self.vnis.get_mut(&vni);
            let devs = st.as_ref().and_then(|s| s.devs);
            let ir = st
                .as_ref()
                .map(|s| s.spec.flood == FloodMode::IngressReplication)
                .unwrap_or(false);
            let before = ops.len();
            match i {
                Intent::RemoteMacUpsert { mac, vtep, .. } => {
                    d.remote.insert(mac, vtep);
                    if let Some(s) = st {
                        s.stale_macs.remove(&mac);
                    }
                    if let Some(v) = devs {
                        ops.push(Op::MacUpsert {
                            vni,
                            vxlan: v.vxlan,
                            bridge: v.bridge,
                            mac,
                            vtep,
                        });
                    }
                }
                Intent::RemoteMacRemove { mac, .. } => {
                    d.remote.remove(&mac);
                    if let Some(s) = st {
                        s.stale_macs.remove(&mac);
                    }
                    if let Some(v) = devs {
                        ops.push(Op::MacDeleteBoth {
                            vni,
                            vxlan: v.vxlan,
                            mac,
                        });
                    }
                }
                Intent::FloodAdd { vtep, .. } => {
                    d.flood.insert(vtep);
                    if let Some(s) = st {
                        s.stale_flood.remove(&vtep);
                        if ir {
                            s.written_flood.insert(vtep);
                        }
                    }
                    match devs {
                        Some(v) if ir => ops.push(Op::FloodAdd {
                            vni,
                            vxlan: v.vxlan,
                            vtep,
                        }),
                        _ => {}
                    }
                }
                Intent::FloodRemove { vtep, .. } => {
                    d.flood.remove(&vtep);
                    if let Some(s) = st {
                        s.stale_flood.remove(&vtep);
                        if ir {
                            s.written_flood.remove(&vtep);
                        }
                    }
                    match devs {
                        Some(v) if ir => ops.push(Op::FloodDelete {
                            vni,
                            vxlan: v.vxlan,
                            vtep,
                        }),
                        _ => {}
                    }
                }
                Intent::NeighborUpsert { ip, mac, .. } => {
                    d.neighs.insert(ip, mac);
                    if let Some(s) = st {
                        s.stale_neighs.remove(&ip);
                    }
                    if let Some(v) = devs {
                        ops.push(Op::NeighUpsert {
                            vni,
                            bridge: v.bridge,
                            ip,
                            mac,
                        });
                    }
                }
                Intent::NeighborRemove { ip, .. } => {
                    d.neighs.remove(&ip);
                    if let Some(s) = st {
                        s.stale_neighs.remove(&ip);
                    }
                    if let Some(v) = devs {
                        ops.push(Op::NeighDelete {
                            vni,
                            bridge: v.bridge,
                            ip,
                        });
                    }
                }
            }
            origin.extend(std::iter::repeat_n(i, ops.len() - before));
        }
        let n = ops.len();
        self.write(ops, origin, "apply").await;
        if n >= VERIFY_BULK {
            let now = tokio::time::Instant::now();
            let first = self.verify.map_or(now, |v| v.0);
            self.verify = Some((first, (now + VERIFY_DELAY).min(first + VERIFY_MAX)));
        }
        self.update_gauges();
        let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.stats.last_apply_micros.store(us, Ordering::Relaxed);
        self.stats.max_apply_micros.fetch_max(us, Ordering::Relaxed);
    }

    /// Queue writes to the writer thread; waits only while its queue is
    /// full. Results come back through [`Actor::finished`].
    async fn write(&mut self, ops: Vec<Op>, intents: Vec<Intent>, why: &'static str) {
        if ops.is_empty() {
            return;
        }
        self.stats
            .netlink_writes
            .fetch_add(ops.len() as u64, Ordering::Relaxed);
        let n = ops.len();
        let batch = Batch { ops, intents, why };
        if self.writer.tx.send(batch).await.is_err() {
            // Only if the writer thread died: nothing can be written.
            self.stats
                .netlink_errors
                .fetch_add(n as u64, Ordering::Relaxed);
            tracing::error!(
                ops = n,
                why,
                "netlink writer thread is gone; writes dropped"
            );
            return;
        }
        self.writer.in_flight += 1;
    }

    /// Wait until every queued write is done and its result handled, so
    /// that what we read from the kernel next is not half written.
    async fn flush(&mut self) {
        while self.writer.in_flight > 0 {
            match self.writer.done.recv().await {
                Some(d) => self.finished(d).await,
                None => {
                    self.writer.in_flight = 0;
                    tracing::error!("netlink writer thread is gone");
                }
            }
        }
    }

    /// A batch came back from the writer: log each failure with what it was
    /// for, split combined deletes the kernel stopped at a missing bridge
    /// row, and have reconciliation repair the rest.
    async fn finished(&mut self, d: Done) {
        self.writer.in_flight = self.writer.in_flight.saturating_sub(1);
        let Done {
            batch,
            failures,
            unverified,
        } = d;
        let mut split = Vec::new();
        let mut split_origin = Vec::new();
        let mut errors = 0u64;
        for f in &failures {
            let op = batch.ops.get(f.index);
            let intent = batch.intents.get(f.index);
            if let (
                NetlinkError::Kernel(libc::ENOENT),
                Some(Op::MacDeleteBoth { vni, vxlan, mac }),
            ) = (&f.error, op)
            {
                // Later batches may have re-added the MAC since: the split
                // deletes go after them, so only when it is still unwanted.
                let wanted = self
                    .desired
                    .get(vni)
                    .is_some_and(|d| d.remote.contains_key(mac));
                if !wanted {
                    for master in [true, false] {
                        split.push(Op::MacDelete {
                            vni: *vni,
                            vxlan: *vxlan,
                            mac: *mac,
                            master,
                        });
                        split_origin.extend(intent.cloned());
                    }
                }
                continue;
            }
            errors += 1;
            tracing::warn!(error = %f.error, kernel_says = f.message.as_deref(), op = ?op, intent = ?intent, why = batch.why, "netlink write failed; reconciliation retries");
        }
        if errors > 0 {
            self.stats
                .netlink_errors
                .fetch_add(errors, Ordering::Relaxed);
        }
        if unverified {
            tracing::warn!(
                ops = batch.ops.len(),
                why = batch.why,
                "netlink error answers lost; verifying by reconciliation"
            );
        }
        if errors > 0 || unverified {
            self.schedule_reconcile_in(VERIFY_DELAY);
        }
        if !split.is_empty() {
            // Keep the intents aligned with the ops only when each split op has one.
            if split_origin.len() != split.len() {
                split_origin.clear();
            }
            self.write(split, split_origin, batch.why).await;
        }
    }

    fn update_gauges(&self) {
        let (mut r, mut f, mut n) = (0u64, 0u64, 0u64);
        for (vni, d) in &self.desired {
            r += d.remote.len() as u64;
            n += d.neighs.len() as u64;
            if let Some(s) = self.vnis.get(vni) {
                if s.spec.flood == FloodMode::IngressReplication {
                    f += d.flood.len() as u64;
                }
            }
        }
        let (mut lm, mut ln, mut st) = (0u64, 0u64, 0u64);
        for s in self.vnis.values() {
            if let FloodMode::Static(l) = &s.spec.flood {
                f += l.len() as u64;
            }
            lm += s.local_macs.len() as u64;
            ln += s.local_neighs.len() as u64;
            st += s.stale_count() as u64;
        }
        let o = Ordering::Relaxed;
        self.stats.remote_macs.store(r, o);
        self.stats.flood_entries.store(f, o);
        self.stats.neighbors.store(n, o);
        self.stats.local_macs.store(lm, o);
        self.stats.local_neighbors.store(ln, o);
        self.stats.stale_entries.store(st, o);
    }

    // ---- devices -------------------------------------------------------

    async fn refresh_links(&mut self) -> Result<(), NetlinkError> {
        let rows = kernel::dump_links(&self.handle).await?;
        self.links = rows.into_iter().map(|r| (r.index, r)).collect();
        Ok(())
    }

    fn link_by_name(&self, name: &str) -> Option<&LinkRow> {
        self.links.values().find(|l| l.name == name)
    }

    /// Create or fix what `create` VNIs need. Returns whether anything
    /// changed (links must be re-read).
    async fn ensure_devices(&mut self) -> bool {
        let specs: Vec<VniSpec> = self.vnis.values().map(|s| s.spec.clone()).collect();
        let mut changed = false;
        for spec in specs {
            match self.ensure_one(&spec).await {
                Ok(c) => changed |= c,
                Err(e) => {
                    self.stats.netlink_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(vni = %spec.vni, error = %e, "cannot set up the VNI's devices");
                }
            }
            if changed {
                if let Err(e) = self.refresh_links().await {
                    tracing::warn!(error = %e, "link dump failed");
                }
            }
        }
        changed
    }

    async fn ensure_one(&mut self, spec: &VniSpec) -> Result<bool, DeviceError> {
        let mut changed = false;
        let link = self.handle.link();
        let vrf_idx = match &spec.vrf {
            Some(v) => match self.link_by_name(v) {
                Some(l) if l.is_kind("vrf") => Some(l.index),
                _ => {
                    self.warn_once(
                        spec.vni,
                        format!("VRF device {v:?} not present (kernel without VRF support?); bridge stays in the default VRF"),
                    );
                    None
                }
            },
            None => None,
        };
        if !spec.create {
            if let Some(vx) = self.link_by_name(&spec.vxlan) {
                if vx.port_learning == Some(true) || vx.port_neigh_suppress == Some(false) {
                    self.warn_once(
                        spec.vni,
                        format!(
                            "bridge port {} should have learning off and neigh_suppress on",
                            spec.vxlan
                        ),
                    );
                }
            }
            return Ok(false);
        }
        let alias = alias_for(spec.vni);
        let (mut created_br, mut created_vx) = (false, false);
        if self.link_by_name(&spec.bridge).is_none() {
            let mut b = LinkBridge::new(&spec.bridge);
            if let Some(m) = spec.mtu {
                b = b.mtu(m);
            }
            link.add(b.build())
                .execute()
                .await
                .map_err(|e| DeviceError::new("create bridge", &spec.bridge, e))?;
            tracing::info!(vni = %spec.vni, dev = %spec.bridge, "created bridge");
            created_br = true;
            changed = true;
        }
        // A vxlan device we created whose settings no longer match the
        // configuration (reload changed local IP, port or group) is
        // re-created: the kernel cannot change these on a live device.
        if let Some(vx) = self.link_by_name(&spec.vxlan).cloned() {
            let info = vx.vxlan.clone().unwrap_or_default();
            let group = match &spec.flood {
                FloodMode::Multicast { group, .. } => Some(*group),
                _ => None,
            };
            let stale = info.local != Some(spec.local_ip)
                || info.port != Some(spec.dstport)
                || info.vni != Some(spec.vni.get())
                || info.group != group;
            if stale && vx.alias.as_deref() == Some(alias.as_str()) {
                tracing::info!(vni = %spec.vni, dev = %vx.name, "re-creating vxlan device with the new settings");
                link.del(vx.index)
                    .execute()
                    .await
                    .map_err(|e| DeviceError::new("delete outdated vxlan", &vx.name, e))?;
                self.links.remove(&vx.index);
            }
        }
        if self.link_by_name(&spec.vxlan).is_none() {
            let mut v = LinkVxlan::new(&spec.vxlan, spec.vni.get())
                .port(spec.dstport)
                .learning(false);
            v = match spec.local_ip {
                IpAddr::V4(a) => v.local(a),
                IpAddr::V6(a) => v.local6(a),
            };
            if let FloodMode::Multicast { group, dev } = &spec.flood {
                v = match group {
                    IpAddr::V4(a) => v.group(*a),
                    IpAddr::V6(a) => v.group6(*a),
                };
                if let Some(d) = dev {
                    let idx = self
                        .link_by_name(d)
                        .map(|l| l.index)
                        .ok_or_else(|| DeviceError::missing("multicast underlay device", d))?;
                    v = v.dev(idx);
                }
            }
            if let Some(m) = spec.mtu {
                v = v.mtu(m);
            }
            link.add(v.build())
                .execute()
                .await
                .map_err(|e| DeviceError::new("create vxlan", &spec.vxlan, e))?;
            tracing::info!(vni = %spec.vni, dev = %spec.vxlan, "created vxlan device");
            created_vx = true;
            changed = true;
        }
        if changed {
            self.refresh_links()
                .await
                .map_err(|e| DeviceError::dump(&spec.vxlan, e))?;
        }
        let br = self
            .link_by_name(&spec.bridge)
            .cloned()
            .ok_or_else(|| DeviceError::missing("bridge", &spec.bridge))?;
        let vx = self
            .link_by_name(&spec.vxlan)
            .cloned()
            .ok_or_else(|| DeviceError::missing("vxlan", &spec.vxlan))?;
        if !br.is_kind("bridge") || !vx.is_kind("vxlan") {
            return Err(DeviceError::missing(
                "bridge/vxlan of the right kind",
                &spec.bridge,
            ));
        }
        // Mark what we created (or re-created) so that only these are deleted.
        for (l, created) in [(&br, created_br), (&vx, created_vx)] {
            if created && l.alias.is_none() {
                let m = LinkUnspec::new_with_index(l.index)
                    .alias(alias.clone())
                    .build();
                link.set(m)
                    .execute()
                    .await
                    .map_err(|e| DeviceError::new("set alias", &l.name, e))?;
            }
        }
        if vx.master != Some(br.index) {
            let m = LinkUnspec::new_with_index(vx.index)
                .controller(br.index)
                .build();
            link.set(m)
                .execute()
                .await
                .map_err(|e| DeviceError::new("enslave", &vx.name, e))?;
            changed = true;
        }
        if vx.port_learning != Some(false) || vx.port_neigh_suppress != Some(true) {
            let m = LinkBridgePort::new(vx.index)
                .learning(false)
                .neigh_suppress(true)
                .build();
            link.set_port(m)
                .execute()
                .await
                .map_err(|e| DeviceError::new("set bridge port flags", &vx.name, e))?;
            changed = true;
        }
        if let Some(v) = vrf_idx {
            if br.master != Some(v) {
                let m = LinkUnspec::new_with_index(br.index).controller(v).build();
                link.set(m)
                    .execute()
                    .await
                    .map_err(|e| DeviceError::new("enslave to VRF", &br.name, e))?;
                changed = true;
            }
        }
        for l in [&br, &vx] {
            if !l.admin_up {
                let m = LinkUnspec::new_with_index(l.index).up().build();
                link.set(m)
                    .execute()
                    .await
                    .map_err(|e| DeviceError::new("set up", &l.name, e))?;
                changed = true;
            }
        }
        Ok(changed)
    }

    fn warn_once(&mut self, vni: Vni, p: String) {
        if let Some(s) = self.vnis.get_mut(&vni) {
            if !s.warned.contains(&p) {
                tracing::warn!(%vni, problem = %p, "VNI configuration problem");
                s.warned.insert(p);
            }
        }
    }

    fn note_problem(&mut self, vni: Vni, p: String) {
        if let Some(s) = self.vnis.get_mut(&vni) {
            if s.problem.as_deref() != Some(p.as_str()) {
                tracing::warn!(%vni, problem = %p, "VNI device problem");
                s.problem = Some(p);
            }
        }
    }

    /// Map each VNI to its devices; emits VniUp/VniDown on changes. Returns
    /// the VNIs that gained (or changed) devices.
    fn resolve_all(&mut self) -> Vec<Vni> {
        let mut gained = Vec::new();
        let mut problems = Vec::new();
        let mut ups = Vec::new();
        let by_name: HashMap<&str, &LinkRow> =
            self.links.values().map(|l| (l.name.as_str(), l)).collect();
        self.by_bridge.clear();
        self.by_vxlan.clear();
        for (vni, s) in self.vnis.iter_mut() {
            let vx = by_name.get(s.spec.vxlan.as_str());
            let br = by_name.get(s.spec.bridge.as_str());
            let res = match (vx, br) {
                (None, _) => Err(format!("vxlan device {} missing", s.spec.vxlan)),
                (_, None) => Err(format!("bridge {} missing", s.spec.bridge)),
                (Some(vx), Some(br)) => {
                    if !vx.is_kind("vxlan") {
                        Err(format!("{} is not a vxlan device", vx.name))
                    } else if !br.is_kind("bridge") {
                        Err(format!("{} is not a bridge", br.name))
                    } else if vx.vxlan.as_ref().and_then(|x| x.vni) != Some(vni.get()) {
                        Err(format!("{} does not carry VNI {vni}", vx.name))
                    } else if vx.master != Some(br.index) {
                        Err(format!("{} is not enslaved to {}", vx.name, br.name))
                    } else {
                        Ok((
                            Devs {
                                vxlan: vx.index,
                                bridge: br.index,
                                group: vx.vxlan.as_ref().and_then(|x| x.group),
                            },
                            vx.admin_up && br.admin_up,
                        ))
                    }
                }
            };
            match res {
                Ok((d, up)) => {
                    if s.devs != Some(d) {
                        gained.push(*vni);
                    }
                    s.devs = Some(d);
                    self.by_bridge.insert(d.bridge, *vni);
                    self.by_vxlan.insert(d.vxlan, *vni);
                    if s.problem.take().is_some() {
                        tracing::info!(%vni, "VNI devices ready");
                    }
                    if up != s.up {
                        s.up = up;
                        ups.push(if up {
                            LocalEvent::VniUp { vni: *vni }
                        } else {
                            LocalEvent::VniDown { vni: *vni }
                        });
                    }
                }
                Err(p) => {
                    s.devs = None;
                    problems.push((*vni, p));
                    if s.up {
                        s.up = false;
                        ups.push(LocalEvent::VniDown { vni: *vni });
                    }
                }
            }
        }
        for (vni, p) in problems {
            self.note_problem(vni, p);
        }
        for e in ups {
            self.emit(e);
        }
        gained
    }

    // ---- reconciliation ------------------------------------------------

    async fn reconcile(&mut self, why: &'static str) {
        // Never "repair" what is still queued, nor read a half-written state.
        self.flush().await;
        let started = Instant::now();
        self.reconcile_at = None;
        self.verify = None;
        self.stats.reconciles.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.refresh_links().await {
            self.stats.netlink_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, why, "link dump failed; reconcile postponed");
            return;
        }
        self.ensure_devices().await;
        self.resolve_all();
        let tables = match self.dump_tables().await {
            Ok(x) => x,
            Err(e) => {
                self.stats.netlink_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, why, "fdb/neighbor dump failed; reconcile postponed");
                return;
            }
        };
        let vnis: Vec<Vni> = self.vnis.keys().copied().collect();
        let mut ops = Vec::new();
        for vni in vnis {
            ops.extend(self.diff_vni(vni, &tables, false));
            self.sync_local(vni, &tables);
        }
        if !ops.is_empty() {
            tracing::info!(
                why,
                writes = ops.len(),
                "reconcile: converging kernel state"
            );
            self.stats
                .repairs
                .fetch_add(ops.len() as u64, Ordering::Relaxed);
            self.write(ops, Vec::new(), why).await;
        }
        self.update_gauges();
        tracing::debug!(
            why,
            fdb_rows = tables.fdb_rows(),
            neighbors = tables.neigh_rows(),
            micros = started.elapsed().as_micros() as u64,
            "reconciled"
        );
    }

    /// Dump the FDB and the neighbors (IPv4 and IPv6 in one pass) on the
    /// blocking pool, keeping only the rows of resolved VNIs' devices.
    async fn dump_tables(&mut self) -> Result<Tables, NetlinkError> {
        let vxlans: HashSet<u32> = self.by_vxlan.keys().copied().collect();
        let bridges: HashSet<u32> = self.by_bridge.keys().copied().collect();
        let sock = self.dump_sock.clone();
        tokio::task::spawn_blocking(move || {
            let mut sock = sock.lock().unwrap_or_else(|p| p.into_inner());
            Tables::dump(&mut sock, vxlans, bridges)
        })
        .await
        .unwrap_or(Err(NetlinkError::Unexpected))
    }

    /// Writes that bring one VNI to its desired state. With `purge` the
    /// desired state is taken as empty and nothing is adopted.
    fn diff_vni(&mut self, vni: Vni, t: &Tables, purge: bool) -> Vec<Op> {
        let mut ops = Vec::new();
        let adopting = self.adopting && !purge;
        let empty = Desired::default();
        let d = if purge {
            &empty
        } else {
            self.desired.get(&vni).unwrap_or(&empty)
        };
        let Some(s) = self.vnis.get_mut(&vni) else {
            return ops;
        };
        let Some(dv) = s.devs else { return ops };
        let want_flood = if purge {
            BTreeSet::new()
        } else {
            s.want_flood(Some(d))
        };

        let mut self_rows: HashMap<MacAddress, (Option<IpAddr>, bool)> = HashMap::new();
        let mut master_rows: HashMap<MacAddress, bool> = HashMap::new();
        let mut flood_rows: BTreeSet<IpAddr> = BTreeSet::new();
        for r in t.fdb_on(dv.vxlan) {
            if r.is_self() {
                if r.mac == MacAddress::ZERO {
                    if let Some(dst) = r.dst.filter(|d| Some(*d) != dv.group) {
                        flood_rows.insert(dst);
                    }
                } else {
                    self_rows.insert(r.mac, (r.dst, r.ext_learned()));
                }
            } else if r.master == Some(dv.bridge) {
                master_rows.insert(r.mac, r.ext_learned());
            }
        }
        // Remote MACs. One the bridge has since learned on a local port took
        // over the entry (a VM moved here): the RIB decides on the move
        // (RFC 7432 §15) from our MacAdd, so reconciliation must not steal
        // it back; an explicit upsert from the RIB still does.
        let learned_here: HashSet<MacAddress> = t
            .fdb_master(dv.bridge)
            .filter(|r| is_local_mac(r, dv))
            .map(|r| r.mac)
            .collect();
        for (mac, vtep) in &d.remote {
            let ok = self_rows.get(mac) == Some(&(Some(*vtep), true))
                && master_rows.get(mac) == Some(&true);
            if !ok && learned_here.contains(mac) {
                tracing::debug!(%vni, %mac, "remote MAC now learned locally; left to the RIB");
                continue;
            }
            if !ok {
                ops.push(Op::MacUpsert {
                    vni,
                    vxlan: dv.vxlan,
                    bridge: dv.bridge,
                    mac: *mac,
                    vtep: *vtep,
                });
            }
        }
        let ours: BTreeSet<MacAddress> = self_rows
            .iter()
            .filter(|(_, (_, ext))| *ext)
            .map(|(m, _)| *m)
            .chain(master_rows.iter().filter(|(_, ext)| **ext).map(|(m, _)| *m))
            .collect();
        s.stale_macs
            .retain(|m| ours.contains(m) && !d.remote.contains_key(m));
        for mac in ours {
            if d.remote.contains_key(&mac) {
                continue;
            }
            if adopting {
                s.stale_macs.insert(mac);
                continue;
            }
            if master_rows.get(&mac) == Some(&true) {
                ops.push(Op::MacDelete {
                    vni,
                    vxlan: dv.vxlan,
                    mac,
                    master: true,
                });
            }
            if matches!(self_rows.get(&mac), Some((_, true))) {
                ops.push(Op::MacDelete {
                    vni,
                    vxlan: dv.vxlan,
                    mac,
                    master: false,
                });
            }
        }
        // Flood list.
        for vtep in want_flood.difference(&flood_rows) {
            s.written_flood.insert(*vtep);
            ops.push(Op::FloodAdd {
                vni,
                vxlan: dv.vxlan,
                vtep: *vtep,
            });
        }
        s.stale_flood
            .retain(|v| flood_rows.contains(v) && !want_flood.contains(v));
        for vtep in flood_rows.difference(&want_flood) {
            if adopting {
                if !s.written_flood.contains(vtep) {
                    s.stale_flood.insert(*vtep);
                }
                continue;
            }
            if s.written_flood.remove(vtep) || s.stale_flood.remove(vtep) {
                ops.push(Op::FloodDelete {
                    vni,
                    vxlan: dv.vxlan,
                    vtep: *vtep,
                });
            }
        }
        // Suppression neighbors.
        let mut our_neighs: HashMap<IpAddr, (Option<MacAddress>, u16)> = HashMap::new();
        for r in t
            .neigh_on(dv.bridge)
            .filter(|r| r.protocol == Some(self.protocol))
        {
            our_neighs.insert(r.ip, (r.mac, r.state));
        }
        for (ip, mac) in &d.neighs {
            let ok =
                matches!(our_neighs.get(ip), Some((Some(m), st)) if m == mac && st & 0x40 != 0);
            if !ok {
                ops.push(Op::NeighUpsert {
                    vni,
                    bridge: dv.bridge,
                    ip: *ip,
                    mac: *mac,
                });
            }
        }
        s.stale_neighs
            .retain(|ip| our_neighs.contains_key(ip) && !d.neighs.contains_key(ip));
        for ip in our_neighs.keys() {
            if d.neighs.contains_key(ip) {
                continue;
            }
            if adopting {
                s.stale_neighs.insert(*ip);
            } else {
                ops.push(Op::NeighDelete {
                    vni,
                    bridge: dv.bridge,
                    ip: *ip,
                });
            }
        }
        ops
    }

    /// Bring the learned local state in line with a dump (start, resync).
    fn sync_local(&mut self, vni: Vni, t: &Tables) {
        let proto = self.protocol;
        let Some(s) = self.vnis.get_mut(&vni) else {
            return;
        };
        let mut evs = Vec::new();
        let (macs, binds) = match s.devs {
            Some(dv) => (
                t.fdb_master(dv.bridge)
                    .filter(|r| is_local_mac(r, dv))
                    .map(|r| r.mac)
                    .collect::<BTreeSet<_>>(),
                t.neigh_on(dv.bridge)
                    .filter(|r| is_local_neigh(r, dv, proto))
                    .filter_map(|r| r.mac.map(|m| (r.ip, m)))
                    .collect::<BTreeMap<_, _>>(),
            ),
            None => Default::default(),
        };
        for m in s.local_macs.difference(&macs) {
            evs.push(LocalEvent::MacRemove { vni, mac: *m });
        }
        for m in macs.difference(&s.local_macs) {
            evs.push(LocalEvent::MacAdd { vni, mac: *m });
        }
        for ip in s.local_neighs.keys().filter(|ip| !binds.contains_key(ip)) {
            evs.push(LocalEvent::NeighRemove { vni, ip: *ip });
        }
        for (ip, mac) in &binds {
            if s.local_neighs.get(ip) != Some(mac) {
                evs.push(LocalEvent::NeighAdd {
                    vni,
                    ip: *ip,
                    mac: *mac,
                });
            }
        }
        s.local_macs = macs;
        s.local_neighs = binds;
        for e in evs {
            self.emit(e);
        }
    }

    async fn sweep(&mut self) {
        let stale: usize = self.vnis.values().map(|s| s.stale_count()).sum();
        tracing::info!(stale, "sweeping stale entries not re-asserted since start");
        self.adopting = false;
        self.reconcile("sweep").await;
        for s in self.vnis.values_mut() {
            s.stale_macs.clear();
            s.stale_flood.clear();
            s.stale_neighs.clear();
        }
        self.update_gauges();
    }

    // ---- reload --------------------------------------------------------

    async fn set_vnis(&mut self, specs: Vec<VniSpec>) -> Result<(), DataplaneError> {
        validate_specs(&specs)?;
        let new: BTreeMap<Vni, VniSpec> = specs.into_iter().map(|s| (s.vni, s)).collect();
        let mut removed: Vec<Vni> = Vec::new();
        for (vni, s) in &self.vnis {
            match new.get(vni) {
                None => removed.push(*vni),
                // Other devices: the old ones go, the new ones are set up.
                Some(n) if n.bridge != s.spec.bridge || n.vxlan != s.spec.vxlan => {
                    removed.push(*vni)
                }
                Some(_) => {}
            }
        }
        if !removed.is_empty() {
            self.flush().await;
            if let Err(e) = self.refresh_links().await {
                tracing::warn!(error = %e, "link dump failed");
            }
            self.resolve_all();
            match self.dump_tables().await {
                Ok(tables) => {
                    let mut ops = Vec::new();
                    for vni in &removed {
                        ops.extend(self.diff_vni(*vni, &tables, true));
                    }
                    self.write(ops, Vec::new(), "VNI removed by reload").await;
                    // Our entries go before the devices we created.
                    self.flush().await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "dump failed; removed VNIs keep their entries")
                }
            }
            for vni in &removed {
                if let Some(mut s) = self.vnis.remove(vni) {
                    self.delete_created(&s).await;
                    let mut evs: Vec<LocalEvent> = s
                        .local_macs
                        .iter()
                        .map(|m| LocalEvent::MacRemove { vni: *vni, mac: *m })
                        .collect();
                    evs.extend(
                        s.local_neighs
                            .keys()
                            .map(|ip| LocalEvent::NeighRemove { vni: *vni, ip: *ip }),
                    );
                    if s.up {
                        evs.push(LocalEvent::VniDown { vni: *vni });
                    }
                    s.local_macs.clear();
                    for e in evs {
                        self.emit(e);
                    }
                }
            }
        }
        for (vni, spec) in new {
            match self.vnis.get_mut(&vni) {
                Some(s) => {
                    if s.spec.flood != spec.flood {
                        // Flood entries written for the old mode are ours to remove.
                        tracing::info!(%vni, "flood mode changed");
                    }
                    s.warned.clear();
                    s.spec = spec;
                }
                None => {
                    self.vnis.insert(vni, VniState::new(spec));
                }
            }
        }
        self.reconcile("reload").await;
        Ok(())
    }

    async fn delete_created(&mut self, s: &VniState) {
        let alias = alias_for(s.spec.vni);
        for name in [&s.spec.vxlan, &s.spec.bridge] {
            let Some(l) = self.link_by_name(name).cloned() else {
                continue;
            };
            if l.alias.as_deref() != Some(alias.as_str()) {
                continue;
            }
            match self.handle.link().del(l.index).execute().await {
                Ok(()) => {
                    tracing::info!(dev = %name, vni = %s.spec.vni, "deleted device we created")
                }
                Err(e) => {
                    tracing::warn!(dev = %name, error = %e, "cannot delete device we created")
                }
            }
        }
    }

    // ---- notifications -------------------------------------------------

    async fn monitor(&mut self, m: MonitorMsg, mon: &mut mpsc::Receiver<MonitorMsg>) {
        match m {
            MonitorMsg::Batch(batch) => {
                for n in batch {
                    self.notification(n);
                }
            }
            MonitorMsg::Overrun => {
                self.stats.resyncs.fetch_add(1, Ordering::Relaxed);
                // Whatever is queued predates the dump we are about to take.
                while mon.try_recv().is_ok() {}
                self.reconcile("overrun").await;
            }
            MonitorMsg::Closed(e) => {
                tracing::error!(error = %e, "notification socket closed; periodic reconciliation only");
            }
        }
    }

    fn notification(&mut self, n: Notification) {
        match n {
            Notification::Link { msg, add } => self.link_event(&msg, add),
            Notification::Fdb { row, add } => self.fdb_event(row, add),
            Notification::Neigh { row, add } => self.neigh_event(row, add),
            // Something changed that we could not read: look at the tables.
            Notification::Lost => self.schedule_reconcile(),
        }
    }

    /// Link notifications only trigger a (debounced) re-dump: they can be
    /// older than our last dump, and the bridge's AF_BRIDGE port
    /// notifications carry only part of a link, so applying them directly
    /// would make a VNI flap.
    fn link_event(&mut self, l: &LinkMessage, add: bool) {
        if l.header.interface_family == netlink_packet_route::AddressFamily::Bridge {
            return;
        }
        let row = LinkRow::from_msg(l);
        let relevant = self.by_bridge.contains_key(&row.index)
            || self.by_vxlan.contains_key(&row.index)
            || self.vnis.values().any(|s| {
                s.spec.bridge == row.name
                    || s.spec.vxlan == row.name
                    || s.spec.vrf.as_deref() == Some(row.name.as_str())
            });
        if !relevant {
            return;
        }
        let changed = !add
            || self.links.get(&row.index).is_none_or(|b| {
                b.admin_up != row.admin_up
                    || b.master != row.master
                    || b.name != row.name
                    || (row.kind.is_some() && b.kind != row.kind)
            });
        if changed {
            self.schedule_reconcile();
        }
    }

    fn fdb_event(&mut self, r: FdbRow, add: bool) {
        if let Some(vni) = self.by_vxlan.get(&r.ifindex).copied() {
            let d = self.desired.get(&vni);
            if r.mac == MacAddress::ZERO {
                let want = self
                    .vnis
                    .get(&vni)
                    .map(|s| s.want_flood(d))
                    .unwrap_or_default();
                if !add && r.dst.is_some_and(|v| want.contains(&v)) {
                    self.schedule_reconcile();
                }
                return;
            }
            if !add && d.is_some_and(|d| d.remote.contains_key(&r.mac)) {
                // One of ours vanished (by hand, or a flush): put it back.
                self.schedule_reconcile();
            }
            if add && !r.is_self() {
                // The bridge now sends this MAC to the tunnel: no longer local.
                if let Some(s) = self.vnis.get_mut(&vni) {
                    if s.local_macs.remove(&r.mac) {
                        self.emit(LocalEvent::MacRemove { vni, mac: r.mac });
                    }
                }
            }
            return;
        }
        let Some(master) = r.master else { return };
        let Some(vni) = self.by_bridge.get(&master).copied() else {
            return;
        };
        let Some(s) = self.vnis.get_mut(&vni) else {
            return;
        };
        let Some(dv) = s.devs else { return };
        if !is_local_mac(&r, dv) {
            return;
        }
        let ev = if add {
            s.local_macs
                .insert(r.mac)
                .then_some(LocalEvent::MacAdd { vni, mac: r.mac })
        } else {
            s.local_macs
                .remove(&r.mac)
                .then_some(LocalEvent::MacRemove { vni, mac: r.mac })
        };
        if let Some(e) = ev {
            self.emit(e);
        }
    }

    fn neigh_event(&mut self, r: NeighRow, add: bool) {
        let Some(vni) = self.by_bridge.get(&r.ifindex).copied() else {
            return;
        };
        let proto = self.protocol;
        // One of ours vanished: put it back.
        if r.protocol == Some(proto)
            && !add
            && self
                .desired
                .get(&vni)
                .is_some_and(|d| d.neighs.contains_key(&r.ip))
        {
            self.schedule_reconcile();
        }
        let Some(s) = self.vnis.get_mut(&vni) else {
            return;
        };
        let Some(dv) = s.devs else { return };
        let ev = if add && is_local_neigh(&r, dv, proto) {
            match r.mac {
                Some(m) if s.local_neighs.insert(r.ip, m) != Some(m) => {
                    Some(LocalEvent::NeighAdd {
                        vni,
                        ip: r.ip,
                        mac: m,
                    })
                }
                _ => None,
            }
        } else {
            s.local_neighs
                .remove(&r.ip)
                .map(|_| LocalEvent::NeighRemove { vni, ip: r.ip })
        };
        if let Some(e) = ev {
            self.emit(e);
        }
    }

    // ---- snapshot ------------------------------------------------------

    async fn snapshot(&mut self) -> KernelSnapshot {
        self.flush().await;
        if let Err(e) = self.refresh_links().await {
            tracing::warn!(error = %e, "link dump failed");
        }
        let t = self.dump_tables().await.unwrap_or_default();
        let mut out = KernelSnapshot {
            vnis: Vec::new(),
            adopting: self.adopting,
        };
        for (vni, s) in &self.vnis {
            let d = self.desired.get(vni);
            let mut v = VniSnapshot {
                vni: Some(*vni),
                bridge: s.spec.bridge.clone(),
                vxlan: s.spec.vxlan.clone(),
                up: s.up,
                local_macs: s.local_macs.iter().copied().collect(),
                local_neighbors: s.local_neighs.clone(),
                desired_remote_macs: d.map(|d| d.remote.len()).unwrap_or(0),
                desired_flood: s.want_flood(d).len(),
                desired_neighbors: d.map(|d| d.neighs.len()).unwrap_or(0),
                stale: s.stale_count(),
                ..Default::default()
            };
            let alias = alias_for(*vni);
            for name in [&s.spec.bridge, &s.spec.vxlan] {
                if let Some(l) = self.link_by_name(name) {
                    if l.alias.as_deref() == Some(alias.as_str()) {
                        v.created.push(l.name.clone());
                    }
                }
            }
            v.problem = s.problem.clone();
            if let Some(vx) = self.link_by_name(&s.spec.vxlan) {
                let info = vx.vxlan.clone().unwrap_or_default();
                v.vxlan_local = info.local;
                v.dstport = info.port;
                v.vxlan_learning = info.learning;
                v.port_learning = vx.port_learning;
                v.neigh_suppress = vx.port_neigh_suppress;
            }
            if let Some(dv) = s.devs {
                v.bridge_ifindex = Some(dv.bridge);
                v.vxlan_ifindex = Some(dv.vxlan);
                let mut masters = HashSet::new();
                for r in t.fdb_on(dv.vxlan) {
                    if r.is_self() && r.mac == MacAddress::ZERO {
                        if let Some(dst) = r.dst.filter(|d| Some(*d) != dv.group) {
                            v.flood.push(dst);
                        }
                    } else if r.is_self() && r.ext_learned() {
                        if let Some(dst) = r.dst {
                            v.remote_macs.insert(r.mac, dst);
                        }
                    } else if r.ext_learned() && r.master == Some(dv.bridge) {
                        masters.insert(r.mac);
                    }
                }
                v.remote_macs_without_master = v
                    .remote_macs
                    .keys()
                    .filter(|m| !masters.contains(*m))
                    .copied()
                    .collect();
                for r in t
                    .neigh_on(dv.bridge)
                    .filter(|r| r.protocol == Some(self.protocol))
                {
                    if let Some(m) = r.mac {
                        v.neighbors.insert(r.ip, m);
                    }
                }
            }
            out.vnis.push(v);
        }
        out
    }
}

/// One dump of the FDB and the neighbor tables, indexed so that each VNI
/// only looks at its own devices. Only rows of managed devices are kept.
#[derive(Default)]
struct Tables {
    /// All rows on managed vxlan devices (self and bridge rows).
    fdb_by_if: HashMap<u32, Vec<FdbRow>>,
    /// Bridge rows (`master`, not `self`) of the other ports of managed
    /// bridges, by bridge ifindex. Rows on vxlan devices are only in
    /// `fdb_by_if`: every reader of this map looks for local MACs.
    fdb_by_master: HashMap<u32, Vec<FdbRow>>,
    /// Neighbors on managed bridges.
    neigh_by_if: HashMap<u32, Vec<NeighRow>>,
}

impl Tables {
    fn dump(
        sock: &mut DumpSocket,
        vxlans: HashSet<u32>,
        bridges: HashSet<u32>,
    ) -> Result<Tables, NetlinkError> {
        let mut t = Tables::default();
        // Rows come grouped by device: remember the last vector pushed to.
        let mut last: Option<(u32, bool)> = None;
        let mut cur: Vec<FdbRow> = Vec::new();
        let flush = |t: &mut Tables, key: Option<(u32, bool)>, cur: &mut Vec<FdbRow>| {
            if let Some((k, on_vxlan)) = key {
                let map = if on_vxlan {
                    &mut t.fdb_by_if
                } else {
                    &mut t.fdb_by_master
                };
                map.entry(k).or_default().append(cur);
            }
        };
        sock.dump_neigh(AF_BRIDGE, |n| {
            let key = if vxlans.contains(&n.ifindex) {
                (n.ifindex, true)
            } else {
                match n.master {
                    Some(m) if n.flags & super::nlparse::NTF_SELF == 0 && bridges.contains(&m) => {
                        (m, false)
                    }
                    _ => return,
                }
            };
            let Some(row) = n.fdb_row() else { return };
            if last != Some(key) {
                flush(&mut t, last, &mut cur);
                last = Some(key);
            }
            cur.push(row);
        })?;
        flush(&mut t, last, &mut cur);
        sock.dump_neigh(0, |n| {
            if !bridges.contains(&n.ifindex) {
                return;
            }
            if let Some(r) = n.neigh_row() {
                t.neigh_by_if.entry(r.ifindex).or_default().push(r);
            }
        })?;
        Ok(t)
    }
    fn fdb_rows(&self) -> usize {
        let n = |m: &HashMap<u32, Vec<FdbRow>>| m.values().map(Vec::len).sum::<usize>();
        n(&self.fdb_by_if) + n(&self.fdb_by_master)
    }
    fn neigh_rows(&self) -> usize {
        self.neigh_by_if.values().map(Vec::len).sum()
    }
    fn fdb_on(&self, ifindex: u32) -> impl Iterator<Item = &FdbRow> {
        self.fdb_by_if.get(&ifindex).into_iter().flatten()
    }
    fn fdb_master(&self, bridge: u32) -> impl Iterator<Item = &FdbRow> {
        self.fdb_by_master.get(&bridge).into_iter().flatten()
    }
    fn neigh_on(&self, ifindex: u32) -> impl Iterator<Item = &NeighRow> {
        self.neigh_by_if.get(&ifindex).into_iter().flatten()
    }
}

fn is_local_mac(r: &FdbRow, dv: Devs) -> bool {
    r.master == Some(dv.bridge)
        && !r.is_self()
        && r.ifindex != dv.vxlan
        && r.ifindex != dv.bridge
        && !r.permanent()
        && !r.ext_learned()
        && !r.mac.is_multicast()
        && r.mac != MacAddress::ZERO
}

fn is_local_neigh(r: &NeighRow, dv: Devs, proto: u8) -> bool {
    r.ifindex == dv.bridge
        && r.protocol != Some(proto)
        && !r
            .flags
            .contains(netlink_packet_route::neighbour::NeighbourFlags::ExtLearned)
        && r.valid()
        && !skip_local_ip(&r.ip)
}

/// A device operation that failed, with the device and the step.
#[derive(Debug, thiserror::Error)]
enum DeviceError {
    #[error("{step} {dev}: {source}")]
    Netlink {
        step: &'static str,
        dev: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("{what} {dev} not found")]
    Missing { what: &'static str, dev: String },
    #[error("link dump after creating {dev}: {source}")]
    Dump { dev: String, source: NetlinkError },
}

impl DeviceError {
    fn new(step: &'static str, dev: &str, source: rtnetlink::Error) -> DeviceError {
        DeviceError::Netlink {
            step,
            dev: dev.to_string(),
            source,
        }
    }
    fn missing(what: &'static str, dev: &str) -> DeviceError {
        DeviceError::Missing {
            what,
            dev: dev.to_string(),
        }
    }
    fn dump(dev: &str, source: NetlinkError) -> DeviceError {
        DeviceError::Dump {
            dev: dev.to_string(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vni(v: u32) -> Vni {
        Vni::new(v).unwrap_or_else(|| panic!("bad vni"))
    }

    #[test]
    fn coalesce_keeps_last_per_key_in_first_seen_order() {
        let m1 = MacAddress([2, 0, 0, 0, 0, 1]);
        let m2 = MacAddress([2, 0, 0, 0, 0, 2]);
        let a: IpAddr = "10.0.0.1".parse().unwrap_or_else(|_| panic!());
        let b: IpAddr = "10.0.0.2".parse().unwrap_or_else(|_| panic!());
        let out = coalesce(vec![
            Intent::RemoteMacUpsert {
                vni: vni(1),
                mac: m1,
                vtep: a,
            },
            Intent::RemoteMacUpsert {
                vni: vni(1),
                mac: m2,
                vtep: a,
            },
            Intent::RemoteMacUpsert {
                vni: vni(1),
                mac: m1,
                vtep: b,
            },
            Intent::FloodAdd {
                vni: vni(1),
                vtep: a,
            },
            Intent::FloodRemove {
                vni: vni(1),
                vtep: a,
            },
            Intent::RemoteMacRemove {
                vni: vni(2),
                mac: m1,
            },
        ]);
        assert_eq!(
            out,
            vec![
                Intent::RemoteMacUpsert {
                    vni: vni(1),
                    mac: m1,
                    vtep: b
                },
                Intent::RemoteMacUpsert {
                    vni: vni(1),
                    mac: m2,
                    vtep: a
                },
                Intent::FloodRemove {
                    vni: vni(1),
                    vtep: a
                },
                Intent::RemoteMacRemove {
                    vni: vni(2),
                    mac: m1
                },
            ]
        );
    }
}
