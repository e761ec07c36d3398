//! Kernel dataplane: the single owner of evpnd's kernel state.
//!
//! [`spawn`] starts one task that owns every netlink socket and every piece
//! of kernel-facing state. The rest of the daemon talks to it through a
//! [`DataplaneHandle`]:
//!
//! * [`DataplaneHandle::apply`] takes the RIB's [`Intent`]s (remote MACs,
//!   flood list, ARP/ND suppression entries). Intents for the same key inside
//!   one batch are coalesced (last one wins). Desired state is recorded and
//!   the writes are queued to a writer thread, which sends them many per
//!   `sendmsg` without acks (the kernel answers only failures, matched to
//!   their op by sequence number); `apply` returns once the batch is queued,
//!   so the RIB computes the next batch while the kernel takes this one.
//!   The queue is small: when it is full `apply` waits (backpressure up to
//!   BGP). A failed write is never lost: it is logged, counted and
//!   reconciliation retries it. [`DataplaneHandle::flush`] waits until
//!   everything queued is written; reconciliation, `snapshot`, `sweep_stale`
//!   and `set_vnis` do that first, so they never read a half-written state.
//! * [`DataplaneHandle::set_vnis`] reloads the VNI list: new VNIs are
//!   resolved (and created when `create` is set), removed ones lose our
//!   entries and the devices evpnd created; untouched VNIs are not disturbed.
//! * [`DataplaneHandle::sweep_stale`] ends the restart window (see below).
//! * [`DataplaneHandle::snapshot`] dumps what the kernel holds, per VNI, for
//!   `evpnctl`; [`DataplaneHandle::stats`] reads counters without a round trip.
//!
//! Local events ([`LocalEvent`]) go to the RIB through the `events` channel;
//! when the channel is full they are queued inside the task (never dropped,
//! never blocking the task, so the RIB may call `apply` while we hold events).
//!
//! # Kernel objects (what FRR's zebra writes)
//! * Remote MAC: one `RTM_NEWNEIGH` `AF_BRIDGE` on the vxlan device,
//!   `NTF_MASTER|NTF_SELF|NTF_EXT_LEARNED`, `NUD_REACHABLE`, `NDA_LLADDR`,
//!   `NDA_DST`, `NDA_MASTER`, `NDA_PROTOCOL`, `NLM_F_CREATE|NLM_F_REPLACE`:
//!   the kernel makes both the `dst VTEP self extern_learn` row and the
//!   `extern_learn master br` row.
//! * Flood entry: `00:00:00:00:00:00`, `NTF_SELF`,
//!   `NUD_NOARP|NUD_PERMANENT`, `NDA_DST`, `NLM_F_CREATE|NLM_F_APPEND`.
//! * Suppression neighbor: on the bridge device, `NTF_EXT_LEARNED`,
//!   `NUD_NOARP`, our `NDA_PROTOCOL`. The bridge answers ARP/NS itself only
//!   when the target MAC has an FDB entry on a `neigh_suppress` port, so a
//!   neighbor needs the matching remote MAC to be useful.
//!
//! # Ownership
//! The kernel keeps no protocol number on FDB entries, so "ours" is:
//! remote MAC rows with `extern_learn` on a managed vxlan device; flood rows
//! that we wrote (or adopted at start); neighbors whose protocol is
//! [`DataplaneConfig::protocol`]. Everything else (hand-made static entries,
//! other daemons' neighbors) is left alone.
//!
//! # Restart and reconciliation
//! Until [`DataplaneHandle::sweep_stale`] is called, entries of ours that no
//! intent backs are adopted as *stale* and kept (forwarding survives a
//! daemon restart). `sweep_stale` removes the stale entries not re-asserted
//! by then. Reconciliation is level-triggered: at start, every
//! `reconcile_interval`, after a monitor overrun (`ENOBUFS`), after a bulk
//! write (the kernel can drop bulk FDB inserts silently) and shortly after a
//! device or one of our entries changes, the task dumps links, FDB and
//! neighbors and converges the kernel on the desired state.
//!
//! # Devices
//! Devices are followed through `RTNLGRP_LINK`: a VNI whose vxlan device or
//! bridge appears later starts working without a restart. With `create` the
//! task makes the vxlan device (`id`, `dstport`, `local`, `nolearning`,
//! `group`/`dev` in multicast mode), the bridge, enslaves it, sets the port
//! `learning off` / `neigh_suppress on` and brings both up. Created devices
//! carry the alias [`CREATED_ALIAS_PREFIX`]`<vni>`; only those are ever
//! deleted (when their VNI is removed by a reload). A VRF that is absent
//! (kernels without VRF support) is logged and ignored.
//! A reload that changes the local IP, port or group of a device we created
//! re-creates it.
//!
//! # Local state
//! MACs the bridge learns on its non-vxlan ports (not permanent, not
//! `extern_learn`) become [`LocalEvent::MacAdd`]/[`LocalEvent::MacRemove`]
//! (deletion and ageing alike); IPv4/IPv6 neighbors on the bridge that are
//! not ours become `NeighAdd`/`NeighRemove`. A remote MAC that the bridge
//! re-learns on a local port (the VM moved here) yields a `MacAdd`, and
//! reconciliation leaves that entry to the RIB instead of stealing it back.
//!
//! IP bindings come from the neighbor table of the bridge, as zebra's come
//! from the SVI: the bridge needs an address in the VMs' subnet for the
//! kernel to keep neighbor entries there (ARP/ND from the host itself, or
//! `arp_accept`/gratuitous ARP). A bridge without one yields MAC-only
//! routes: VMs still reach each other, but remote VTEPs cannot suppress
//! ARP for them (the requests are flooded). The e2e tests give the bridge
//! an SVI address for the suppression test.
//!
//! # Use
//! ```no_run
//! # async fn demo(vnis: Vec<evpnd::dataplane::VniSpec>) -> Result<(), evpnd::dataplane::DataplaneError> {
//! use evpnd::dataplane::{spawn, DataplaneConfig};
//! let (tx, mut local_events) = tokio::sync::mpsc::channel(1024);
//! // Inside a tokio runtime; sockets belong to the caller's network namespace.
//! let dp = spawn(DataplaneConfig::new(vnis), tx)?;
//! // RIB intents in, local events out:
//! dp.apply(vec![/* Intent::RemoteMacUpsert { .. }, .. */]).await?;
//! // After End-of-RIB from the peers:
//! dp.sweep_stale().await?;
//! # let _ = local_events.recv().await;
//! # Ok(()) }
//! ```
//!
//! # Limitations
//! One bridge per VNI (no VLAN-aware bridge with many VNIs); suppression
//! neighbors go on the bridge itself, not on an SVI above it; a device that
//! evpnd did not create is never changed beyond enslaving/flags when
//! `create` is set, and only warned about otherwise.

mod actor;
mod kernel;
mod monitor;
mod nlparse;
mod writer;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use evpnd_evpn::{Intent, MacAddress, Vni};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

pub use kernel::NetlinkError;
pub use nlparse::DumpSocket;

/// Alias written on devices evpnd creates; followed by the VNI.
pub const CREATED_ALIAS_PREFIX: &str = "evpnd:vni=";

/// Default `NDA_PROTOCOL` value for our entries. Not in iproute2's
/// `rt_protos` (zebra uses 11, bird 12, bgp 186).
pub const DEFAULT_PROTOCOL: u8 = 245;

/// Default receive buffer of the notification socket (`SO_RCVBUFFORCE`).
pub const DEFAULT_MONITOR_RCVBUF: usize = 32 << 20;

/// How BUM traffic of a VNI reaches the other VTEPs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum FloodMode {
    /// Head-end replication to the VTEPs learned from type-3 routes
    /// (`FloodAdd`/`FloodRemove` intents).
    IngressReplication,
    /// Head-end replication to a fixed list, written by the dataplane itself;
    /// flood intents are ignored for this VNI.
    Static(Vec<IpAddr>),
    /// Underlay multicast: no flood entries at all.
    Multicast { group: IpAddr, dev: Option<String> },
}

/// One VNI and the devices that carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VniSpec {
    pub vni: Vni,
    pub bridge: String,
    pub vxlan: String,
    /// Create the devices when they are missing (and delete them when the
    /// VNI is removed).
    pub create: bool,
    pub local_ip: IpAddr,
    /// UDP destination port, 4789 per RFC 7348.
    pub dstport: u16,
    pub flood: FloodMode,
    /// VRF device to enslave the bridge to, when the kernel has VRF.
    pub vrf: Option<String>,
    pub mtu: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct DataplaneConfig {
    pub vnis: Vec<VniSpec>,
    /// `NDA_PROTOCOL` of our neighbor entries (and sent on FDB entries too).
    pub protocol: u8,
    pub reconcile_interval: Duration,
    /// Receive buffer of the notification socket in bytes. Tests shrink it
    /// to force overruns.
    pub monitor_rcvbuf: usize,
}

impl DataplaneConfig {
    pub fn new(vnis: Vec<VniSpec>) -> DataplaneConfig {
        DataplaneConfig {
            vnis,
            protocol: DEFAULT_PROTOCOL,
            reconcile_interval: Duration::from_secs(15),
            monitor_rcvbuf: DEFAULT_MONITOR_RCVBUF,
        }
    }
}

/// What the dataplane tells the RIB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LocalEvent {
    /// The bridge learned `mac` on one of its local (non-vxlan) ports.
    MacAdd {
        vni: Vni,
        mac: MacAddress,
    },
    MacRemove {
        vni: Vni,
        mac: MacAddress,
    },
    /// A local IP↔MAC binding on the VNI's bridge.
    NeighAdd {
        vni: Vni,
        ip: IpAddr,
        mac: MacAddress,
    },
    NeighRemove {
        vni: Vni,
        ip: IpAddr,
    },
    /// The VNI's vxlan device and bridge exist, are wired and up.
    VniUp {
        vni: Vni,
    },
    VniDown {
        vni: Vni,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("cannot open netlink socket: {0}")]
    Socket(#[source] std::io::Error),
    #[error("duplicate VNI {0} in configuration")]
    DuplicateVni(Vni),
    #[error("VNI {vni}: device name {name:?} is used by another VNI")]
    DuplicateDevice { vni: Vni, name: String },
    #[error("the dataplane task has stopped")]
    Stopped,
}

/// Per-VNI view of the kernel, for `evpnctl`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VniSnapshot {
    pub vni: Option<Vni>,
    pub bridge: String,
    pub vxlan: String,
    pub bridge_ifindex: Option<u32>,
    pub vxlan_ifindex: Option<u32>,
    pub up: bool,
    /// Why the VNI is not usable, when it is not.
    pub problem: Option<String>,
    /// Settings of the vxlan device and its bridge port, as the kernel has them.
    pub vxlan_local: Option<IpAddr>,
    pub dstport: Option<u16>,
    pub vxlan_learning: Option<bool>,
    pub port_learning: Option<bool>,
    pub neigh_suppress: Option<bool>,
    /// Devices evpnd created (carry our alias).
    pub created: Vec<String>,
    /// Remote MACs of ours on the vxlan device: MAC → VTEP.
    pub remote_macs: BTreeMap<MacAddress, IpAddr>,
    /// Remote MACs whose bridge `master` row is missing.
    pub remote_macs_without_master: Vec<MacAddress>,
    pub flood: Vec<IpAddr>,
    /// Suppression neighbors of ours on the bridge: IP → MAC.
    pub neighbors: BTreeMap<IpAddr, MacAddress>,
    pub local_macs: Vec<MacAddress>,
    pub local_neighbors: BTreeMap<IpAddr, MacAddress>,
    /// Desired entries (from intents and static config).
    pub desired_remote_macs: usize,
    pub desired_flood: usize,
    pub desired_neighbors: usize,
    /// Adopted entries not yet re-asserted or swept.
    pub stale: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct KernelSnapshot {
    pub vnis: Vec<VniSnapshot>,
    /// True until `sweep_stale` ran.
    pub adopting: bool,
}

/// Counters, readable without a round trip to the task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DataplaneStats {
    /// Desired entries per kind.
    pub remote_macs: u64,
    pub flood_entries: u64,
    pub neighbors: u64,
    /// Learned local state.
    pub local_macs: u64,
    pub local_neighbors: u64,
    pub stale_entries: u64,
    /// Netlink requests sent / refused by the kernel.
    pub netlink_writes: u64,
    pub netlink_errors: u64,
    /// Full re-dumps after a notification overrun (ENOBUFS).
    pub resyncs: u64,
    pub reconciles: u64,
    /// Entries reconciliation had to (re)write or remove.
    pub repairs: u64,
    pub events_emitted: u64,
    pub last_apply_micros: u64,
    pub max_apply_micros: u64,
}

#[derive(Default)]
pub(crate) struct StatsCell {
    pub remote_macs: AtomicU64,
    pub flood_entries: AtomicU64,
    pub neighbors: AtomicU64,
    pub local_macs: AtomicU64,
    pub local_neighbors: AtomicU64,
    pub stale_entries: AtomicU64,
    pub netlink_writes: AtomicU64,
    pub netlink_errors: AtomicU64,
    pub resyncs: AtomicU64,
    pub reconciles: AtomicU64,
    pub repairs: AtomicU64,
    pub events_emitted: AtomicU64,
    pub last_apply_micros: AtomicU64,
    pub max_apply_micros: AtomicU64,
}

impl StatsCell {
    fn read(&self) -> DataplaneStats {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DataplaneStats {
            remote_macs: r(&self.remote_macs),
            flood_entries: r(&self.flood_entries),
            neighbors: r(&self.neighbors),
            local_macs: r(&self.local_macs),
            local_neighbors: r(&self.local_neighbors),
            stale_entries: r(&self.stale_entries),
            netlink_writes: r(&self.netlink_writes),
            netlink_errors: r(&self.netlink_errors),
            resyncs: r(&self.resyncs),
            reconciles: r(&self.reconciles),
            repairs: r(&self.repairs),
            events_emitted: r(&self.events_emitted),
            last_apply_micros: r(&self.last_apply_micros),
            max_apply_micros: r(&self.max_apply_micros),
        }
    }
}

pub(crate) enum Command {
    Apply(Vec<Intent>, oneshot::Sender<()>),
    SetVnis(Vec<VniSpec>, oneshot::Sender<Result<(), DataplaneError>>),
    SweepStale(oneshot::Sender<()>),
    Snapshot(oneshot::Sender<KernelSnapshot>),
    Reconcile(oneshot::Sender<()>),
    Flush(oneshot::Sender<()>),
}

/// Cheap to clone; all clones talk to the same task.
#[derive(Clone)]
pub struct DataplaneHandle {
    tx: mpsc::Sender<Command>,
    stats: Arc<StatsCell>,
}

impl DataplaneHandle {
    /// Record the intents as desired state and queue their writes. Returns
    /// once the dataplane took the batch, not when the kernel has it (see
    /// [`DataplaneHandle::flush`]); failures are logged, counted and retried
    /// by reconciliation.
    pub async fn apply(&self, intents: Vec<Intent>) -> Result<(), DataplaneError> {
        let (tx, rx) = oneshot::channel();
        self.call(Command::Apply(intents, tx), rx).await
    }

    /// Replace the VNI list (configuration reload).
    pub async fn set_vnis(&self, vnis: Vec<VniSpec>) -> Result<(), DataplaneError> {
        let (tx, rx) = oneshot::channel();
        self.call(Command::SetVnis(vnis, tx), rx).await?
    }

    /// Remove the adopted entries that were not re-asserted (call after the
    /// RIB refilled, e.g. End-of-RIB from every peer, RFC 4724 §4.2).
    pub async fn sweep_stale(&self) -> Result<(), DataplaneError> {
        let (tx, rx) = oneshot::channel();
        self.call(Command::SweepStale(tx), rx).await
    }

    pub async fn snapshot(&self) -> Result<KernelSnapshot, DataplaneError> {
        let (tx, rx) = oneshot::channel();
        self.call(Command::Snapshot(tx), rx).await
    }

    /// Run one reconciliation pass now (also runs periodically by itself).
    pub async fn reconcile(&self) -> Result<(), DataplaneError> {
        let (tx, rx) = oneshot::channel();
        self.call(Command::Reconcile(tx), rx).await
    }

    /// Wait until every write queued so far reached the kernel and its
    /// result was handled (failed deletes split, failures logged).
    pub async fn flush(&self) -> Result<(), DataplaneError> {
        let (tx, rx) = oneshot::channel();
        self.call(Command::Flush(tx), rx).await
    }

    pub fn stats(&self) -> DataplaneStats {
        self.stats.read()
    }

    async fn call<T>(&self, cmd: Command, rx: oneshot::Receiver<T>) -> Result<T, DataplaneError> {
        self.tx
            .send(cmd)
            .await
            .map_err(|_| DataplaneError::Stopped)?;
        rx.await.map_err(|_| DataplaneError::Stopped)
    }
}

/// Open the netlink sockets in the caller's network namespace and start the
/// dataplane task on the current tokio runtime.
pub fn spawn(
    cfg: DataplaneConfig,
    events: mpsc::Sender<LocalEvent>,
) -> Result<DataplaneHandle, DataplaneError> {
    actor::validate_specs(&cfg.vnis)?;
    let stats = Arc::new(StatsCell::default());
    let (tx, rx) = mpsc::channel(64);
    actor::start(cfg, events, rx, stats.clone())?;
    Ok(DataplaneHandle { tx, stats })
}
