//! The EVPN RIB, sans-IO: BGP updates, session events, local MAC/neighbor
//! learning and VNI configuration in; dataplane intents, outbound routes,
//! timer requests and events out.
//!
//! Structure:
//! - Loc-RIB: one entry per [`RouteKey`] holding every peer's path (the
//!   Adj-RIB-In after import, merged); `paths[0]` is the best path.
//! - The best path of each entry *contributes* to dataplane groups: a type-2
//!   route to its (VNI, MAC) and (VNI, IP) groups, a type-3 route to a
//!   reference count of (VNI, VTEP). Kernel state is derived from the groups,
//!   so it lives while any path supports it, whatever the order of events
//!   (two route reflectors, GR, withdraws).
//! - Intents are computed at the end of a batch by comparing each touched
//!   dataplane key with its value before the batch: no redundant upsert, no
//!   remove of something never added, an add+remove in one batch cancels.
//! - Our own routes (Adj-RIB-Out) are diffed the same way.
//!
//! Decisions:
//! - Routes of type 2/3 that no local VNI imports are not stored (counted in
//!   [`RibCounters::not_imported`]); when a VNI is added while sessions are
//!   up the RIB asks peers for a route refresh to get them. Types 1, 4, 5 are
//!   kept for display whatever their route targets.
//! - [`FloodSource::None`] (static or multicast flooding): no Flood intents
//!   and no type-3 origination, as FRR does with `flooding disable`.
//! - Flood VTEP of a type-3 route: the PMSI tunnel endpoint for ingress
//!   replication (RFC 6514 §5, RFC 8365 §5.1.3), the originating router IP
//!   when the attribute is absent; other tunnel types give no flood entry.
//! - Remote MAC VTEP: the route's next hop (RFC 8365 §5.1.2).
//! - LOCAL_PREF 100 is put on originated routes; the session layer removes
//!   it towards eBGP peers (RFC 4271 §5.1.5).
//! - MAC location (RFC 7432 §15): a sticky MAC never moves; else the higher
//!   sequence wins; equal sequences go to the lower VTEP address (§15.1,
//!   also between our local MAC and a remote one, as FRR). Learning a MAC
//!   that a remote route holds with sequence N advertises N+1.
//! - A move is a change of location to a higher sequence; falling back to
//!   an older path after a withdraw is not one (no false duplicates).
//! - Stale (graceful restart) paths compete normally in best path and keep
//!   the dataplane as it is until End-of-RIB or the stale timer.
//! - Memory: paths of one UPDATE share one `Arc` (peer, next hop,
//!   attributes, importing VNIs); a path is 48 bytes plus the NLRI fields
//!   outside its key, inline in its entry when it is the only one. The
//!   per-route tables are dense (`IndexMap`). `examples/rib_bench.rs`
//!   measures the bench's workload (one RR): ~400 B of heap and ~370-430 B
//!   of RSS per remote MAC at 100k, no allocation per route; 1M MACs with
//!   two RR paths each: ~414 B of RSS per MAC (rib_scenarios' ignored
//!   million test; 613 B before).
//! - [`Rib::counters`] is kept incrementally (O(VNIs) per call).
//! - The daemon must send [`RibInput::LocalMacAdd`] only for MACs the
//!   bridge learned (not for the entries it wrote itself), since a new
//!   local learn of a MAC held remotely counts as a move.

use std::cmp::Ordering;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use smallvec::SmallVec;

use evpnd_bgp::{AfiSafi, AsPath, NextHop, Origin, PathAttributes, Update};

use crate::extcomm::{
    mac_mobility, route_targets, tunnel_type, EvpnExtCommunity, ImportRt, MacMobility, PmsiView,
    RouteTarget,
};
use crate::intent::Intent;
use crate::route::{EvpnNlri, InclusiveMulticastRoute, MacIpRoute, RouteKey};
use crate::types::{Esi, EthernetTag, Label, MacAddress, RouteDistinguisher, Vni};

// foldhash instead of SipHash: hashing was a tenth of the RIB's time. Keys
// come from routes our configured peers send (the fabric's own route
// reflectors), and foldhash's `RandomState` is seeded per process, so
// colliding keys cannot be computed in advance.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
/// The per-route tables: entries in one dense vector, the hash table holds
/// indexes only. A hash map's buckets are the entries themselves, and a
/// table that just doubled is half empty (1M routes sit in 2M buckets);
/// here the empty part is an 8-byte index and untouched vector capacity.
type DenseMap<K, V> = indexmap::IndexMap<K, V, foldhash::fast::RandomState>;

/// A BGP peer, by its address.
pub type PeerId = IpAddr;

/// Duplicate address detection (FRR's `dup-addr-detection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DupDetectConfig {
    pub enabled: bool,
    /// More than this many moves within `window` freezes the MAC.
    pub max_moves: u32,
    pub window: Duration,
    /// How long a MAC stays frozen; `None` = until
    /// [`RibInput::ClearDuplicate`] or until nothing references the MAC.
    pub freeze: Option<Duration>,
}

impl Default for DupDetectConfig {
    fn default() -> Self {
        DupDetectConfig {
            enabled: true,
            max_moves: 5,
            window: Duration::from_secs(180),
            freeze: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RibConfig {
    pub router_id: Ipv4Addr,
    pub asn: u32,
    /// Our VTEP address: next hop and PMSI tunnel endpoint of our routes.
    pub local_vtep: IpAddr,
    pub dup_detect: DupDetectConfig,
}

/// Where BUM traffic of a VNI goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FloodSource {
    /// Head-end replication to the VTEPs of type-3 routes; we originate one.
    #[default]
    Routes,
    /// Flooding configured outside (static list or multicast group): no
    /// Flood intents, no type-3 origination.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VniConfig {
    pub vni: Vni,
    pub rd: RouteDistinguisher,
    pub import_rts: Vec<ImportRt>,
    pub export_rts: Vec<RouteTarget>,
    pub flood: FloodSource,
}

impl VniConfig {
    /// FRR's defaults: RD `router-id:index`, export `(ASN & 0xffff):VNI`,
    /// import `*:VNI`, head-end replication.
    pub fn auto(vni: Vni, asn: u32, router_id: Ipv4Addr, rd_index: u16) -> Self {
        VniConfig {
            vni,
            rd: RouteDistinguisher::auto(router_id, rd_index),
            import_rts: vec![ImportRt::auto(vni)],
            export_rts: vec![RouteTarget::auto(asn, vni)],
            flood: FloodSource::Routes,
        }
    }
}

// Inputs are moved, not stored: boxing the UPDATE would only add an
// allocation per message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum RibInput {
    PeerUp {
        peer: PeerId,
        router_id: Ipv4Addr,
        asn: u32,
    },
    /// Session lost. With `graceful_restart`, the peer's paths are kept
    /// (stale) for that long or until its End-of-RIB (RFC 4724 §4.2).
    PeerDown {
        peer: PeerId,
        graceful_restart: Option<Duration>,
    },
    Update {
        peer: PeerId,
        update: Update<EvpnNlri>,
    },
    EndOfRib {
        peer: PeerId,
    },
    StaleTimerExpired {
        peer: PeerId,
    },
    /// The peer asked for our routes again (RFC 2918).
    RouteRefresh {
        peer: PeerId,
    },
    /// Add a VNI or change its configuration.
    VniAdd(VniConfig),
    VniRemove(Vni),
    LocalMacAdd {
        vni: Vni,
        mac: MacAddress,
    },
    LocalMacRemove {
        vni: Vni,
        mac: MacAddress,
    },
    LocalNeighAdd {
        vni: Vni,
        ip: IpAddr,
        mac: MacAddress,
    },
    LocalNeighRemove {
        vni: Vni,
        ip: IpAddr,
    },
    /// Operator clears a frozen duplicate MAC.
    ClearDuplicate {
        vni: Vni,
        mac: MacAddress,
    },
    /// Periodic (every second or so): freeze expiry.
    Tick,
}

/// A route to send: NLRI, shared attributes, next hop.
pub type OutRoute = (EvpnNlri, Arc<PathAttributes>, IpAddr);

#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    /// `to: None` = every established peer.
    Announce {
        to: Option<PeerId>,
        routes: Vec<OutRoute>,
    },
    Withdraw {
        to: Option<PeerId>,
        routes: Vec<EvpnNlri>,
    },
    EndOfRib {
        to: PeerId,
    },
    /// Ask peers to send their routes again (RFC 2918), e.g. after a VNI was
    /// added whose routes were not imported before.
    RouteRefreshRequest {
        to: Option<PeerId>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerRequest {
    /// Send [`RibInput::StaleTimerExpired`] for `peer` after `after`.
    Stale { peer: PeerId, after: Duration },
}

/// Where a MAC is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MacLocation {
    Local,
    Remote(IpAddr),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RibEvent {
    MacMoved {
        vni: Vni,
        mac: MacAddress,
        from: MacLocation,
        to: MacLocation,
        seq: u32,
    },
    DuplicateMacFrozen {
        vni: Vni,
        mac: MacAddress,
        moves: u32,
    },
    DuplicateMacCleared {
        vni: Vni,
        mac: MacAddress,
    },
    StalePathsSwept {
        peer: PeerId,
        count: usize,
    },
    /// An UPDATE's routes were handled as withdrawn (RFC 7606).
    TreatedAsWithdraw {
        peer: PeerId,
        count: usize,
    },
    /// Routes whose ORIGINATOR_ID is our router id (RFC 4456 §8).
    OwnRoutesDropped {
        peer: PeerId,
        count: usize,
    },
    NotImported {
        peer: PeerId,
        count: usize,
    },
    BadNextHop {
        peer: PeerId,
    },
    UnknownVni {
        vni: Vni,
    },
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RibOutput {
    pub intents: Vec<Intent>,
    pub outbound: Vec<Outbound>,
    pub timers: Vec<TimerRequest>,
    pub events: Vec<RibEvent>,
}

/// Cumulative counters plus a Loc-RIB census.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RibCounters {
    /// Best routes per VNI and route type (index = type, 1..=5).
    pub per_vni: BTreeMap<Vni, [u64; 6]>,
    /// Received paths per VNI and route type (every peer's copy counts:
    /// with two route reflectors a route usually has two paths).
    pub paths_per_vni: BTreeMap<Vni, [u64; 6]>,
    /// Best routes imported by no VNI (types 1, 4, 5 kept for display).
    pub no_vni: [u64; 6],
    pub routes: u64,
    pub paths: u64,
    pub local_routes: u64,
    /// Type-2/3 NLRI dropped because no VNI imports their route targets.
    pub not_imported: u64,
    pub own_dropped: u64,
    pub treated_as_withdraw: u64,
}

/// One path, for display.
#[derive(Debug, Clone)]
pub struct RouteView<'a> {
    pub nlri: EvpnNlri,
    /// `None` for our own routes.
    pub peer: Option<PeerId>,
    pub next_hop: IpAddr,
    pub attrs: &'a Arc<PathAttributes>,
    pub best: bool,
    pub stale: bool,
    pub vnis: &'a [Vni],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacView {
    pub mac: MacAddress,
    pub location: Option<MacLocation>,
    pub seq: u32,
    /// Sequence we hold for the MAC if it is learned here.
    pub local_seq: Option<u32>,
    pub remote_paths: usize,
    pub frozen: bool,
}

// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct PeerState {
    router_id: Ipv4Addr,
    asn: u32,
    established: bool,
    has_stale: bool,
}

/// What every NLRI of one UPDATE shares: stored once per UPDATE.
#[derive(Debug)]
struct PathShared {
    peer: PeerId,
    next_hop: IpAddr,
    attrs: Arc<PathAttributes>,
    /// VNIs importing these routes.
    vnis: Arc<[Vni]>,
}

/// One peer's path for a route: the shared part plus the NLRI fields that
/// are not in the route key (the key is the map's).
#[derive(Debug, Clone)]
struct Path {
    shared: Arc<PathShared>,
    extra: NlriExtra,
    stale: bool,
}

/// The NLRI fields outside the route key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NlriExtra {
    None,
    Label(Label),
    MacIp {
        esi: Esi,
        label1: Label,
        label2: Option<Label>,
    },
    IpPrefix {
        esi: Esi,
        gateway: IpAddr,
        label: Label,
    },
}

fn split_nlri(n: &EvpnNlri) -> (RouteKey, NlriExtra) {
    let extra = match *n {
        EvpnNlri::EthernetAd(r) => NlriExtra::Label(r.label),
        EvpnNlri::MacIp(r) => NlriExtra::MacIp {
            esi: r.esi,
            label1: r.label1,
            label2: r.label2,
        },
        EvpnNlri::InclusiveMulticast(_) | EvpnNlri::EthernetSegment(_) => NlriExtra::None,
        EvpnNlri::IpPrefix(r) => NlriExtra::IpPrefix {
            esi: r.esi,
            gateway: r.gateway,
            label: r.label,
        },
    };
    (n.key(), extra)
}

/// Rebuild the NLRI from its key and the rest (inverse of [`split_nlri`]).
fn join_nlri(key: &RouteKey, extra: &NlriExtra) -> EvpnNlri {
    use crate::route::{EthernetAdRoute, EthernetSegmentRoute, IpPrefixRoute};
    match (*key, *extra) {
        (RouteKey::EthernetAd { rd, esi, eth_tag }, x) => EvpnNlri::EthernetAd(EthernetAdRoute {
            rd,
            esi,
            eth_tag,
            label: match x {
                NlriExtra::Label(l) => l,
                _ => Label::default(),
            },
        }),
        (
            RouteKey::MacIp {
                rd,
                eth_tag,
                mac,
                ip,
            },
            x,
        ) => {
            let (esi, label1, label2) = match x {
                NlriExtra::MacIp {
                    esi,
                    label1,
                    label2,
                } => (esi, label1, label2),
                _ => (Esi::ZERO, Label::default(), None),
            };
            EvpnNlri::MacIp(MacIpRoute {
                rd,
                esi,
                eth_tag,
                mac,
                ip,
                label1,
                label2,
            })
        }
        (
            RouteKey::InclusiveMulticast {
                rd,
                eth_tag,
                originator,
            },
            _,
        ) => EvpnNlri::InclusiveMulticast(InclusiveMulticastRoute {
            rd,
            eth_tag,
            originator,
        }),
        (
            RouteKey::EthernetSegment {
                rd,
                esi,
                originator,
            },
            _,
        ) => EvpnNlri::EthernetSegment(EthernetSegmentRoute {
            rd,
            esi,
            originator,
        }),
        (
            RouteKey::IpPrefix {
                rd,
                eth_tag,
                prefix,
            },
            x,
        ) => {
            let (esi, gateway, label) = match x {
                NlriExtra::IpPrefix {
                    esi,
                    gateway,
                    label,
                } => (esi, gateway, label),
                _ => (Esi::ZERO, prefix.addr(), Label::default()),
            };
            EvpnNlri::IpPrefix(IpPrefixRoute {
                rd,
                esi,
                eth_tag,
                prefix,
                gateway,
                label,
            })
        }
    }
}

#[derive(Debug, Clone, Default)]
struct RouteEntry {
    /// `paths[0]` is the best path. Inline when there is one path (one
    /// session, or one route reflector): no allocation per route.
    paths: SmallVec<[Path; 1]>,
}

/// What the best path of one entry adds to the dataplane groups.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Contrib {
    None,
    Mac {
        vnis: Arc<[Vni]>,
        mac: MacAddress,
        cand: MacCand,
    },
    Flood {
        vnis: Arc<[Vni]>,
        vtep: IpAddr,
    },
}

/// A remote claim on a MAC (one per route key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MacCand {
    rd: RouteDistinguisher,
    eth_tag: EthernetTag,
    ip: Option<IpAddr>,
    seq: u32,
    sticky: bool,
    vtep: IpAddr,
}

impl MacCand {
    fn same_route(&self, o: &MacCand) -> bool {
        self.rd == o.rd && self.eth_tag == o.eth_tag && self.ip == o.ip
    }
}

/// RFC 7432 §15: a sticky (static) MAC does not move (§15.2), then the
/// higher sequence wins, then (§15.1) the lowest VTEP IP. Sticky first is
/// FRR's order too (bgp_path_info_cmp).
fn cand_cmp(a: &MacCand, b: &MacCand) -> Ordering {
    a.sticky
        .cmp(&b.sticky)
        .then(a.seq.cmp(&b.seq))
        .then(b.vtep.cmp(&a.vtep))
        .then(b.rd.cmp(&a.rd))
        .then(b.ip.cmp(&a.ip))
}

#[derive(Debug, Default)]
struct MacState {
    /// Inline when one remote route claims the MAC (the common case).
    remote: SmallVec<[MacCand; 1]>,
    /// Learned here, with the sequence number we advertise.
    local: Option<u32>,
    /// Local neighbor IPs on this MAC (MAC+IP routes we originate).
    local_ips: Vec<IpAddr>,
    winner: Option<(MacLocation, u32)>,
    /// Sequence we currently advertise, if any.
    advertised: Option<u32>,
    /// Duplicate detection state, allocated on the first move only.
    dup: Option<Box<DupState>>,
}

#[derive(Debug, Default)]
struct DupState {
    moves: VecDeque<Instant>,
    frozen: Option<Instant>,
}

impl MacState {
    fn frozen(&self) -> Option<Instant> {
        self.dup.as_ref().and_then(|d| d.frozen)
    }
}

#[derive(Debug, Default)]
struct NeighState {
    /// (mac, candidate) per remote MAC+IP route for this IP.
    remote: SmallVec<[(MacAddress, MacCand); 1]>,
    installed: Option<MacAddress>,
}

#[derive(Debug)]
struct VniState {
    cfg: VniConfig,
    /// Attributes of our type-2 routes with sequence 0 (shared).
    t2_attrs: Arc<PathAttributes>,
}

#[derive(Debug, Clone, PartialEq)]
struct LocalRoute {
    vni: Vni,
    nlri: EvpnNlri,
    attrs: Arc<PathAttributes>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum DpKey {
    Mac(Vni, MacAddress),
    Flood(Vni, IpAddr),
    Neigh(Vni, IpAddr),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DpVal {
    Vtep(IpAddr),
    Present,
    Mac(MacAddress),
}

/// Pending dataplane keys that make [`Rib::handle_batch`] emit the intents so
/// far (~2 MB of bookkeeping; a 1M-route batch would otherwise hold ~130 MB).
const DP_FLUSH_KEYS: usize = 1 << 14;

/// Keys touched in the current batch with their value before it, in the
/// order of their first touch. The value lives next to the key in `order`
/// so that the flush does not look it up again.
#[derive(Debug)]
struct Pending<K, V> {
    seen: HashSet<K>,
    order: Vec<(K, Option<V>)>,
}

impl<K, V> Default for Pending<K, V> {
    fn default() -> Self {
        Pending {
            seen: HashSet::default(),
            order: Vec::new(),
        }
    }
}

impl<K: std::hash::Hash + Eq + Copy, V> Pending<K, V> {
    fn touch(&mut self, k: K, cur: impl FnOnce() -> Option<V>) {
        if self.seen.insert(k) {
            self.order.push((k, cur()));
        }
    }
    /// The touched keys. Memory up to a mid-batch flush's worth is kept
    /// for the next batch (no regrowth every time); more goes back.
    fn take(&mut self) -> Vec<(K, Option<V>)> {
        if self.seen.capacity() > 2 * DP_FLUSH_KEYS {
            self.seen = HashSet::default();
        } else {
            self.seen.clear();
        }
        std::mem::take(&mut self.order)
    }
    /// Hand the emptied list back to keep its capacity.
    fn give_back(&mut self, mut order: Vec<(K, Option<V>)>) {
        if order.capacity() <= 2 * DP_FLUSH_KEYS && self.order.is_empty() {
            order.clear();
            self.order = order;
        }
    }
}

/// The Loc-RIB census behind [`Rib::counters`], kept as entries change so
/// that reading it costs O(VNIs), not a walk over every route (the
/// metrics read it every few seconds). Each change subtracts the entry's
/// share before and adds it after.
#[derive(Debug, Default)]
struct Census {
    /// Best routes per importing VNI and route type.
    best: HashMap<Vni, [u64; 6]>,
    /// Paths per importing VNI and route type.
    paths: HashMap<Vni, [u64; 6]>,
    no_vni: [u64; 6],
    total_paths: u64,
}

impl Census {
    /// Add (`add`) or remove an entry's share. An entry without paths has
    /// none (it is about to leave the Loc-RIB).
    fn count(&mut self, key: &RouteKey, entry: &RouteEntry, add: bool) {
        let Some(best) = entry.paths.first() else {
            return;
        };
        // Wrapping: a bug must not crash the daemon (the tests check that
        // the census always equals a recount).
        let step = |x: &mut u64| {
            *x = if add {
                x.wrapping_add(1)
            } else {
                x.wrapping_sub(1)
            }
        };
        let t = usize::from(key.route_type()).min(5);
        let n = entry.paths.len() as u64;
        self.total_paths = if add {
            self.total_paths.wrapping_add(n)
        } else {
            self.total_paths.wrapping_sub(n)
        };
        for p in &entry.paths {
            for v in p.shared.vnis.iter() {
                step(&mut self.paths.entry(*v).or_default()[t]);
            }
        }
        if best.shared.vnis.is_empty() {
            step(&mut self.no_vni[t]);
        }
        for v in best.shared.vnis.iter() {
            step(&mut self.best.entry(*v).or_default()[t]);
        }
    }
}

/// The EVPN RIB. See the module documentation.
#[derive(Debug)]
pub struct Rib {
    cfg: RibConfig,
    peers: HashMap<PeerId, PeerState>,
    vnis: BTreeMap<Vni, VniState>,
    exact_import: HashMap<RouteTarget, Vec<Vni>>,
    any_global_import: HashMap<u32, Vec<Vni>>,
    routes: DenseMap<RouteKey, RouteEntry>,
    macs: DenseMap<(Vni, MacAddress), MacState>,
    neighs: DenseMap<(Vni, IpAddr), NeighState>,
    flood: HashMap<(Vni, IpAddr), u32>,
    local_neighs: HashMap<(Vni, IpAddr), MacAddress>,
    frozen: HashSet<(Vni, MacAddress)>,
    local_routes: HashMap<RouteKey, LocalRoute>,
    dp: Pending<DpKey, DpVal>,
    out: Pending<RouteKey, LocalRoute>,
    full_table_to: Vec<(PeerId, bool)>,
    counters: RibCounters,
    census: Census,
}

/// RFC 4271 §9.1.2.2 with RFC 4456 §9, preceded by RFC 7432 §15 MAC
/// mobility for type-2 routes. `Greater` = `a` is better.
fn path_cmp(
    a: &Path,
    b: &Path,
    mac_route: bool,
    peers: &HashMap<PeerId, PeerState>,
    our_asn: u32,
) -> Ordering {
    let (sa, sb) = (&a.shared, &b.shared);
    // Stale paths (RFC 4724) compete normally: a stale path with a higher
    // MAC mobility sequence is still the newer information.
    Ordering::Equal
        .then_with(|| {
            if mac_route {
                let ma = mac_mobility(&sa.attrs.ext_communities);
                let mb = mac_mobility(&sb.attrs.ext_communities);
                let sa = ma.map_or(0, |m| m.sequence);
                let sb = mb.map_or(0, |m| m.sequence);
                ma.is_some_and(|m| m.sticky())
                    .cmp(&mb.is_some_and(|m| m.sticky()))
                    .then(sa.cmp(&sb))
            } else {
                Ordering::Equal
            }
        })
        .then_with(|| {
            sa.attrs
                .local_pref
                .unwrap_or(100)
                .cmp(&sb.attrs.local_pref.unwrap_or(100))
        })
        .then_with(|| {
            let la = sa.attrs.as_path.as_ref().map_or(0, AsPath::path_len);
            let lb = sb.attrs.as_path.as_ref().map_or(0, AsPath::path_len);
            lb.cmp(&la)
        })
        .then_with(|| {
            let oa = sa.attrs.origin.unwrap_or(Origin::Incomplete);
            let ob = sb.attrs.origin.unwrap_or(Origin::Incomplete);
            ob.cmp(&oa)
        })
        .then_with(|| {
            // MED only between routes from the same neighbouring AS.
            let na = sa.attrs.as_path.as_ref().and_then(AsPath::first_as);
            let nb = sb.attrs.as_path.as_ref().and_then(AsPath::first_as);
            if na == nb {
                sb.attrs.med.unwrap_or(0).cmp(&sa.attrs.med.unwrap_or(0))
            } else {
                Ordering::Equal
            }
        })
        .then_with(|| {
            let ebgp = |p: &PathShared| peers.get(&p.peer).is_some_and(|s| s.asn != our_asn);
            ebgp(sa).cmp(&ebgp(sb))
        })
        .then_with(|| {
            let id = |p: &PathShared| {
                p.attrs.originator_id.unwrap_or_else(|| {
                    peers
                        .get(&p.peer)
                        .map_or(Ipv4Addr::BROADCAST, |s| s.router_id)
                })
            };
            id(sb).cmp(&id(sa))
        })
        .then_with(|| {
            sb.attrs
                .cluster_list
                .len()
                .cmp(&sa.attrs.cluster_list.len())
        })
        .then_with(|| sb.peer.cmp(&sa.peer))
}

fn select_best(
    key: &RouteKey,
    paths: &mut [Path],
    peers: &HashMap<PeerId, PeerState>,
    our_asn: u32,
) {
    let mac_route = matches!(key, RouteKey::MacIp { .. });
    if paths.len() < 2 {
        return;
    }
    let mut best = 0;
    for i in 1..paths.len() {
        if path_cmp(&paths[i], &paths[best], mac_route, peers, our_asn) == Ordering::Greater {
            best = i;
        }
    }
    paths.swap(0, best);
}

/// What an entry's best path contributes to the dataplane.
fn contrib_of(key: &RouteKey, entry: &RouteEntry, local_vtep: IpAddr) -> Contrib {
    let Some(best) = entry.paths.first().map(|p| &*p.shared) else {
        return Contrib::None;
    };
    if best.vnis.is_empty() {
        return Contrib::None;
    }
    match *key {
        RouteKey::MacIp {
            rd,
            eth_tag,
            mac,
            ip,
        } => {
            // Our own VTEP as next hop is our route come back without
            // ORIGINATOR_ID: never install it as remote.
            if best.next_hop == local_vtep {
                return Contrib::None;
            }
            let mm = mac_mobility(&best.attrs.ext_communities);
            Contrib::Mac {
                vnis: best.vnis.clone(),
                mac,
                cand: MacCand {
                    rd,
                    eth_tag,
                    ip,
                    seq: mm.map_or(0, |m| m.sequence),
                    sticky: mm.is_some_and(|m| m.sticky()),
                    vtep: best.next_hop,
                },
            }
        }
        RouteKey::InclusiveMulticast { originator, .. } => {
            let vtep = match &best.attrs.pmsi_tunnel {
                None => Some(originator),
                Some(p) => {
                    let v = PmsiView::new(p);
                    if v.is_ingress_replication() {
                        v.endpoint.or(Some(originator))
                    } else {
                        None
                    }
                }
            };
            match vtep {
                Some(vtep) if vtep != local_vtep => Contrib::Flood {
                    vnis: best.vnis.clone(),
                    vtep,
                },
                _ => Contrib::None,
            }
        }
        _ => Contrib::None,
    }
}

impl Rib {
    pub fn new(cfg: RibConfig) -> Self {
        Rib {
            cfg,
            peers: HashMap::default(),
            vnis: BTreeMap::new(),
            exact_import: HashMap::default(),
            any_global_import: HashMap::default(),
            routes: DenseMap::default(),
            macs: DenseMap::default(),
            neighs: DenseMap::default(),
            flood: HashMap::default(),
            local_neighs: HashMap::default(),
            frozen: HashSet::default(),
            local_routes: HashMap::default(),
            dp: Pending::default(),
            out: Pending::default(),
            full_table_to: Vec::new(),
            counters: RibCounters::default(),
            census: Census::default(),
        }
    }

    pub fn config(&self) -> &RibConfig {
        &self.cfg
    }

    pub fn handle(&mut self, input: RibInput, now: Instant) -> RibOutput {
        self.handle_batch(std::iter::once(input), now)
    }

    /// Process inputs in order and emit one coalesced output. (A batch that
    /// touches more than 16,384 dataplane keys is coalesced in parts, to
    /// bound its memory; the dataplane ends in the same state.)
    pub fn handle_batch(
        &mut self,
        inputs: impl IntoIterator<Item = RibInput>,
        now: Instant,
    ) -> RibOutput {
        let mut out = RibOutput::default();
        for input in inputs {
            self.process(input, now, &mut out);
            self.flush_dp_if_big(&mut out);
        }
        self.flush(&mut out);
        out
    }

    fn process(&mut self, input: RibInput, now: Instant, out: &mut RibOutput) {
        match input {
            RibInput::PeerUp {
                peer,
                router_id,
                asn,
            } => {
                let st = self.peers.entry(peer).or_insert(PeerState {
                    router_id,
                    asn,
                    established: true,
                    has_stale: false,
                });
                st.router_id = router_id;
                st.asn = asn;
                st.established = true;
                self.full_table_to.push((peer, true));
            }
            RibInput::PeerDown {
                peer,
                graceful_restart,
            } => self.peer_down(peer, graceful_restart, now, out),
            RibInput::Update { peer, update } => self.update(peer, update, now, out),
            RibInput::EndOfRib { peer } | RibInput::StaleTimerExpired { peer } => {
                self.sweep_stale(peer, now, out)
            }
            RibInput::RouteRefresh { peer } => self.full_table_to.push((peer, false)),
            RibInput::VniAdd(cfg) => self.vni_add(cfg, now, out),
            RibInput::VniRemove(vni) => self.vni_remove(vni, now, out),
            RibInput::LocalMacAdd { vni, mac } => self.local_mac_add(vni, mac, now, out),
            RibInput::LocalMacRemove { vni, mac } => {
                if let Some(st) = self.macs.get_mut(&(vni, mac)) {
                    st.local = None;
                    self.resolve_mac(vni, mac, now, out);
                }
            }
            RibInput::LocalNeighAdd { vni, ip, mac } => self.local_neigh_add(vni, ip, mac, out),
            RibInput::LocalNeighRemove { vni, ip } => self.local_neigh_remove(vni, ip, now, out),
            RibInput::ClearDuplicate { vni, mac } => self.unfreeze(vni, mac, now, out),
            RibInput::Tick => {
                if let Some(d) = self.cfg.dup_detect.freeze {
                    let expired: Vec<_> = self
                        .frozen
                        .iter()
                        .filter(|k| {
                            self.macs
                                .get(*k)
                                .and_then(MacState::frozen)
                                .is_some_and(|t| now.saturating_duration_since(t) >= d)
                        })
                        .copied()
                        .collect();
                    for (vni, mac) in expired {
                        self.unfreeze(vni, mac, now, out);
                    }
                }
            }
        }
    }

    // --- BGP side -----------------------------------------------------------

    fn update(
        &mut self,
        peer: PeerId,
        update: Update<EvpnNlri>,
        now: Instant,
        out: &mut RibOutput,
    ) {
        if update.is_end_of_rib() == Some(AfiSafi::L2VPN_EVPN) {
            self.sweep_stale(peer, now, out);
            return;
        }
        let as_withdraw = update.treat_as_withdraw();
        let Update {
            attributes,
            mp_reach,
            mp_unreach,
            ..
        } = update;
        if let Some(un) = mp_unreach {
            if un.afi_safi == AfiSafi::L2VPN_EVPN {
                for n in &un.withdrawn {
                    self.withdraw(peer, &n.key(), now, out);
                }
            }
        }
        let Some(reach) = mp_reach else { return };
        if reach.afi_safi != AfiSafi::L2VPN_EVPN || reach.nlri.is_empty() {
            return;
        }
        let next_hop = match reach.next_hop {
            NextHop::Ip(ip) => Some(ip),
            NextHop::Ipv6WithLinkLocal(g, _) => Some(IpAddr::V6(g)),
            NextHop::Raw(_) => None,
        };
        let drop_reason = if as_withdraw {
            self.counters.treated_as_withdraw += reach.nlri.len() as u64;
            Some(RibEvent::TreatedAsWithdraw {
                peer,
                count: reach.nlri.len(),
            })
        } else if attributes.originator_id == Some(self.cfg.router_id) {
            // RFC 4456 §8: our own route reflected back.
            self.counters.own_dropped += reach.nlri.len() as u64;
            Some(RibEvent::OwnRoutesDropped {
                peer,
                count: reach.nlri.len(),
            })
        } else if next_hop.is_none() {
            Some(RibEvent::BadNextHop { peer })
        } else {
            None
        };
        let (Some(next_hop), None) = (next_hop, &drop_reason) else {
            if let Some(ev) = drop_reason {
                tracing::debug!(?ev, "EVPN routes handled as withdrawn");
                out.events.push(ev);
            }
            // Implicit withdraw of whatever the peer had for these keys.
            for n in &reach.nlri {
                self.withdraw(peer, &n.key(), now, out);
            }
            return;
        };
        let vnis = self.import_vnis(&attributes);
        let shared = Arc::new(PathShared {
            peer,
            next_hop,
            attrs: Arc::new(attributes),
            vnis: vnis.clone(),
        });
        let mut not_imported = 0;
        for nlri in reach.nlri {
            let needs_vni = matches!(nlri, EvpnNlri::MacIp(_) | EvpnNlri::InclusiveMulticast(_));
            if needs_vni && vnis.is_empty() {
                not_imported += 1;
                self.withdraw(peer, &nlri.key(), now, out);
                continue;
            }
            let (key, extra) = split_nlri(&nlri);
            let path = Path {
                shared: shared.clone(),
                extra,
                stale: false,
            };
            self.upsert(key, path, now, out);
        }
        if not_imported > 0 {
            self.counters.not_imported += not_imported as u64;
            tracing::debug!(%peer, count = not_imported, "EVPN routes imported by no VNI");
            out.events.push(RibEvent::NotImported {
                peer,
                count: not_imported,
            });
        }
    }

    fn import_vnis(&self, attrs: &PathAttributes) -> Arc<[Vni]> {
        import_vnis(&self.exact_import, &self.any_global_import, attrs)
    }

    fn rebuild_import_index(&mut self) {
        self.exact_import.clear();
        self.any_global_import.clear();
        for (vni, st) in &self.vnis {
            for irt in &st.cfg.import_rts {
                match irt {
                    ImportRt::Exact(rt) => self.exact_import.entry(*rt).or_default().push(*vni),
                    ImportRt::AnyAs(v) => self.any_global_import.entry(*v).or_default().push(*vni),
                }
            }
        }
    }

    fn upsert(&mut self, key: RouteKey, path: Path, now: Instant, out: &mut RibOutput) {
        let entry = self.routes.entry(key).or_default();
        self.census.count(&key, entry, false);
        let old = contrib_of(&key, entry, self.cfg.local_vtep);
        match entry
            .paths
            .iter_mut()
            .find(|p| p.shared.peer == path.shared.peer)
        {
            Some(p) => *p = path,
            None => {
                // Exact growth: most routes have one or two paths, and Vec's
                // default minimum capacity of 4 would triple the memory.
                entry.paths.reserve_exact(1);
                entry.paths.push(path)
            }
        }
        select_best(&key, &mut entry.paths, &self.peers, self.cfg.asn);
        self.census.count(&key, entry, true);
        let new = contrib_of(&key, entry, self.cfg.local_vtep);
        if old != new {
            self.apply(&old, &new, now, out);
        }
    }

    fn withdraw(&mut self, peer: PeerId, key: &RouteKey, now: Instant, out: &mut RibOutput) {
        let Some(entry) = self.routes.get_mut(key) else {
            return;
        };
        let Some(pos) = entry.paths.iter().position(|p| p.shared.peer == peer) else {
            return;
        };
        self.census.count(key, entry, false);
        let old = contrib_of(key, entry, self.cfg.local_vtep);
        entry.paths.swap_remove(pos);
        select_best(key, &mut entry.paths, &self.peers, self.cfg.asn);
        self.census.count(key, entry, true);
        let new = contrib_of(key, entry, self.cfg.local_vtep);
        if entry.paths.is_empty() {
            self.routes.swap_remove(key);
        }
        if old != new {
            self.apply(&old, &new, now, out);
        }
    }

    /// Remove the paths of `peer` matching `pred` (all of them, or the
    /// stale ones); one pass over the Loc-RIB.
    fn remove_peer_paths(
        &mut self,
        peer: PeerId,
        stale_only: bool,
        now: Instant,
        out: &mut RibOutput,
    ) -> usize {
        let mut removed = 0;
        let local_vtep = self.cfg.local_vtep;
        // The groups are updated as the walk goes (`apply` never reads the
        // Loc-RIB), rather than collecting every change first: a lost
        // session would otherwise hold a copy of every contribution.
        let mut routes = std::mem::take(&mut self.routes);
        routes.retain(|key, entry| {
            if !entry
                .paths
                .iter()
                .any(|p| p.shared.peer == peer && (p.stale || !stale_only))
            {
                return true;
            }
            let before = entry.paths.len();
            self.census.count(key, entry, false);
            let old = contrib_of(key, entry, local_vtep);
            entry
                .paths
                .retain(|p| !(p.shared.peer == peer && (p.stale || !stale_only)));
            if entry.paths.len() != before {
                removed += before - entry.paths.len();
                select_best(key, &mut entry.paths, &self.peers, self.cfg.asn);
                let new = contrib_of(key, entry, local_vtep);
                if old != new {
                    self.apply(&old, &new, now, out);
                    self.flush_dp_if_big(out);
                }
            }
            self.census.count(key, entry, true);
            !entry.paths.is_empty()
        });
        self.routes = routes;
        // Give memory back after a mass removal (a lost session).
        if self.routes.len() * 4 < self.routes.capacity() {
            self.routes.shrink_to_fit();
        }
        if self.macs.len() * 4 < self.macs.capacity() {
            self.macs.shrink_to_fit();
        }
        if self.neighs.len() * 4 < self.neighs.capacity() {
            self.neighs.shrink_to_fit();
        }
        removed
    }

    fn peer_down(&mut self, peer: PeerId, gr: Option<Duration>, now: Instant, out: &mut RibOutput) {
        if let Some(st) = self.peers.get_mut(&peer) {
            st.established = false;
        }
        self.full_table_to.retain(|(p, _)| *p != peer);
        match gr {
            Some(after) => {
                // RFC 4724 §4.2: keep the paths, marked stale, and keep
                // forwarding on them. Staleness only reorders paths among
                // peers; the dataplane changes only if another peer's fresh
                // path now wins.
                let local_vtep = self.cfg.local_vtep;
                let mut any = false;
                // `apply` never reads the Loc-RIB: see remove_peer_paths.
                let mut routes = std::mem::take(&mut self.routes);
                for (key, entry) in routes.iter_mut() {
                    if !entry.paths.iter().any(|p| p.shared.peer == peer) {
                        continue;
                    }
                    any = true;
                    self.census.count(key, entry, false);
                    let old = contrib_of(key, entry, local_vtep);
                    for p in entry.paths.iter_mut().filter(|p| p.shared.peer == peer) {
                        p.stale = true;
                    }
                    select_best(key, &mut entry.paths, &self.peers, self.cfg.asn);
                    self.census.count(key, entry, true);
                    let new = contrib_of(key, entry, local_vtep);
                    if old != new {
                        self.apply(&old, &new, now, out);
                    }
                }
                self.routes = routes;
                if let Some(st) = self.peers.get_mut(&peer) {
                    st.has_stale |= any;
                }
                out.timers.push(TimerRequest::Stale { peer, after });
            }
            None => {
                self.remove_peer_paths(peer, false, now, out);
                if let Some(st) = self.peers.get_mut(&peer) {
                    st.has_stale = false;
                }
            }
        }
    }

    fn sweep_stale(&mut self, peer: PeerId, now: Instant, out: &mut RibOutput) {
        let Some(st) = self.peers.get_mut(&peer) else {
            return;
        };
        if !std::mem::take(&mut st.has_stale) {
            return;
        }
        let count = self.remove_peer_paths(peer, true, now, out);
        if count > 0 {
            tracing::info!(%peer, count, "swept stale EVPN paths");
            out.events.push(RibEvent::StalePathsSwept { peer, count });
        }
    }

    // --- Dataplane groups ----------------------------------------------------

    fn apply(&mut self, old: &Contrib, new: &Contrib, now: Instant, out: &mut RibOutput) {
        // Usually one VNI: no allocation for the keys to resolve.
        let mut mac_keys: SmallVec<[(Vni, MacAddress); 4]> = SmallVec::new();
        let mut neigh_keys: SmallVec<[(Vni, IpAddr); 4]> = SmallVec::new();
        for (c, add) in [(old, false), (new, true)] {
            match c {
                Contrib::None => {}
                Contrib::Mac { vnis, mac, cand } => {
                    for &vni in vnis.iter() {
                        let st = self.macs.entry((vni, *mac)).or_default();
                        if add {
                            st.remote.reserve_exact(1);
                            st.remote.push(*cand);
                        } else if let Some(i) = st.remote.iter().position(|c| c.same_route(cand)) {
                            st.remote.swap_remove(i);
                        }
                        mac_keys.push((vni, *mac));
                        if let Some(ip) = cand.ip {
                            let ns = self.neighs.entry((vni, ip)).or_default();
                            if add {
                                ns.remote.reserve_exact(1);
                                ns.remote.push((*mac, *cand));
                            } else if let Some(i) = ns
                                .remote
                                .iter()
                                .position(|(m, c)| m == mac && c.same_route(cand))
                            {
                                ns.remote.swap_remove(i);
                            }
                            neigh_keys.push((vni, ip));
                        }
                    }
                }
                Contrib::Flood { vnis, vtep } => {
                    for &vni in vnis.iter() {
                        let k = (vni, *vtep);
                        let (flood, vni_states) = (&self.flood, &self.vnis);
                        self.dp.touch(DpKey::Flood(vni, *vtep), || {
                            flood_value(flood, vni_states, vni, *vtep)
                        });
                        if add {
                            *self.flood.entry(k).or_insert(0) += 1;
                        } else if let Entry::Occupied(mut e) = self.flood.entry(k) {
                            *e.get_mut() -= 1;
                            if *e.get() == 0 {
                                e.remove();
                            }
                        }
                    }
                }
            }
        }
        mac_keys.dedup();
        neigh_keys.dedup();
        for (vni, mac) in mac_keys {
            self.resolve_mac(vni, mac, now, out);
        }
        for (vni, ip) in neigh_keys {
            self.resolve_neigh(vni, ip);
        }
    }

    /// Decide where a MAC lives (RFC 7432 §15) and sync the FDB intent and
    /// our own advertisement.
    fn resolve_mac(&mut self, vni: Vni, mac: MacAddress, now: Instant, out: &mut RibOutput) {
        let key = (vni, mac);
        let Some(st) = self.macs.get_mut(&key) else {
            return;
        };
        if st.remote.is_empty() && st.local.is_none() && st.local_ips.is_empty() {
            let winner = st.winner;
            self.dp.touch(DpKey::Mac(vni, mac), || {
                remote_vtep(winner).map(DpVal::Vtep)
            });
            let advertised = st.advertised;
            self.macs.swap_remove(&key);
            if self.frozen.remove(&key) {
                out.events.push(RibEvent::DuplicateMacCleared { vni, mac });
            }
            if advertised.is_some() {
                self.sync_local_routes(vni, mac, None, &[]);
            }
            return;
        }
        if st.frozen().is_some() {
            // Frozen duplicate: neither the FDB nor our advertisement follow.
            return;
        }
        let best = st.remote.iter().max_by(|a, b| cand_cmp(a, b)).copied();
        let local_vtep = self.cfg.local_vtep;
        let new = match (st.local, best) {
            // A higher sequence elsewhere: the MAC moved away. The same
            // sequence: the lower VTEP address wins (§15.1, as FRR). A
            // sticky remote MAC is never taken over by local learning
            // (§15.2).
            (Some(lseq), Some(r))
                if r.sticky || r.seq > lseq || (r.seq == lseq && r.vtep < local_vtep) =>
            {
                Some((MacLocation::Remote(r.vtep), r.seq))
            }
            (Some(lseq), _) => Some((MacLocation::Local, lseq)),
            (None, Some(r)) => Some((MacLocation::Remote(r.vtep), r.seq)),
            (None, None) => None,
        };
        if new != st.winner {
            let old = st.winner;
            self.dp
                .touch(DpKey::Mac(vni, mac), || remote_vtep(old).map(DpVal::Vtep));
            st.winner = new;
            // A move = a new location with a higher sequence; falling back
            // to an older path after a withdraw is not one.
            if let (Some((from, oseq)), Some((to, nseq))) = (old, new) {
                if from != to && nseq > oseq {
                    out.events.push(RibEvent::MacMoved {
                        vni,
                        mac,
                        from,
                        to,
                        seq: nseq,
                    });
                    let dd = self.cfg.dup_detect;
                    if dd.enabled {
                        let d = st.dup.get_or_insert_with(Box::default);
                        d.moves.push_back(now);
                        while d
                            .moves
                            .front()
                            .is_some_and(|t| now.saturating_duration_since(*t) > dd.window)
                        {
                            d.moves.pop_front();
                        }
                        let moves = d.moves.len() as u32;
                        if moves > dd.max_moves {
                            d.frozen = Some(now);
                            self.frozen.insert(key);
                            tracing::warn!(%vni, %mac, moves, "duplicate MAC detected, frozen");
                            out.events
                                .push(RibEvent::DuplicateMacFrozen { vni, mac, moves });
                        }
                    }
                }
            }
        }
        let want = match st.winner {
            Some((MacLocation::Local, seq)) if st.frozen().is_none() => Some(seq),
            _ => None,
        };
        if want != st.advertised {
            st.advertised = want;
            let ips = st.local_ips.clone();
            self.sync_local_routes(vni, mac, want, &ips);
        }
    }

    fn resolve_neigh(&mut self, vni: Vni, ip: IpAddr) {
        let key = (vni, ip);
        let local = self.local_neighs.contains_key(&key);
        let Some(st) = self.neighs.get_mut(&key) else {
            return;
        };
        let want = if local {
            None
        } else {
            st.remote
                .iter()
                .max_by(|a, b| cand_cmp(&a.1, &b.1).then(b.0.cmp(&a.0)))
                .map(|(m, _)| *m)
        };
        if want != st.installed {
            let old = st.installed;
            self.dp.touch(DpKey::Neigh(vni, ip), || old.map(DpVal::Mac));
            st.installed = want;
        }
        if st.remote.is_empty() && st.installed.is_none() {
            self.neighs.swap_remove(&key);
        }
    }

    fn unfreeze(&mut self, vni: Vni, mac: MacAddress, now: Instant, out: &mut RibOutput) {
        if let Some(st) = self.macs.get_mut(&(vni, mac)) {
            if st.dup.take().is_some_and(|d| d.frozen.is_some()) {
                self.frozen.remove(&(vni, mac));
                out.events.push(RibEvent::DuplicateMacCleared { vni, mac });
                self.resolve_mac(vni, mac, now, out);
            }
        }
    }

    // --- Local side ----------------------------------------------------------

    fn local_mac_add(&mut self, vni: Vni, mac: MacAddress, now: Instant, out: &mut RibOutput) {
        if !self.vnis.contains_key(&vni) {
            out.events.push(RibEvent::UnknownVni { vni });
            return;
        }
        let st = self.macs.entry((vni, mac)).or_default();
        if matches!(st.winner, Some((MacLocation::Local, _))) && st.local.is_some() {
            return;
        }
        // RFC 7432 §15: learning a MAC that a remote route holds with
        // sequence N makes us advertise N+1.
        let best = st.remote.iter().max_by(|a, b| cand_cmp(a, b)).copied();
        let prev = st.local.unwrap_or(0);
        st.local = Some(match best {
            Some(r) if !r.sticky => prev.max(r.seq.saturating_add(1)),
            _ => prev,
        });
        self.resolve_mac(vni, mac, now, out);
    }

    fn local_neigh_add(&mut self, vni: Vni, ip: IpAddr, mac: MacAddress, out: &mut RibOutput) {
        if !self.vnis.contains_key(&vni) {
            out.events.push(RibEvent::UnknownVni { vni });
            return;
        }
        match self.local_neighs.insert((vni, ip), mac) {
            Some(old) if old == mac => return,
            Some(old) => self.detach_local_ip(vni, ip, old),
            None => {}
        }
        let st = self.macs.entry((vni, mac)).or_default();
        st.local_ips.push(ip);
        if let Some(seq) = st.advertised {
            self.sync_local_routes(vni, mac, Some(seq), &[ip]);
            // The MAC-only route is already there: sync_local_routes is
            // idempotent for it.
        }
        self.resolve_neigh(vni, ip);
    }

    fn local_neigh_remove(&mut self, vni: Vni, ip: IpAddr, now: Instant, out: &mut RibOutput) {
        if let Some(mac) = self.local_neighs.remove(&(vni, ip)) {
            self.detach_local_ip(vni, ip, mac);
            self.resolve_mac(vni, mac, now, out);
        }
        self.resolve_neigh(vni, ip);
    }

    fn detach_local_ip(&mut self, vni: Vni, ip: IpAddr, mac: MacAddress) {
        if let Some(st) = self.macs.get_mut(&(vni, mac)) {
            st.local_ips.retain(|i| *i != ip);
        }
        if let Some(st) = self.vnis.get(&vni) {
            let key = RouteKey::MacIp {
                rd: st.cfg.rd,
                eth_tag: EthernetTag(0),
                mac,
                ip: Some(ip),
            };
            self.set_local(key, None);
        }
    }

    /// Originate (`Some(seq)`) or withdraw (`None`) our MAC route and the
    /// MAC+IP routes for `ips`.
    fn sync_local_routes(&mut self, vni: Vni, mac: MacAddress, seq: Option<u32>, ips: &[IpAddr]) {
        let Some(vs) = self.vnis.get(&vni) else {
            return;
        };
        let rd = vs.cfg.rd;
        let attrs = seq.map(|s| {
            if s == 0 {
                vs.t2_attrs.clone()
            } else {
                let mut a = (*vs.t2_attrs).clone();
                a.ext_communities
                    .push(EvpnExtCommunity::MacMobility(MacMobility::new(s, false)).into());
                Arc::new(a)
            }
        });
        for ip in std::iter::once(None).chain(ips.iter().copied().map(Some)) {
            let route = MacIpRoute {
                rd,
                esi: Esi::ZERO,
                eth_tag: EthernetTag(0),
                mac,
                ip,
                label1: Label::from_vni(vni),
                label2: None,
            };
            let nlri = EvpnNlri::MacIp(route);
            let lr = attrs.as_ref().map(|a| LocalRoute {
                vni,
                nlri,
                attrs: a.clone(),
            });
            self.set_local(nlri.key(), lr);
        }
    }

    fn set_local(&mut self, key: RouteKey, route: Option<LocalRoute>) {
        let local_routes = &self.local_routes;
        self.out.touch(key, || local_routes.get(&key).cloned());
        match route {
            Some(r) => {
                self.local_routes.insert(key, r);
            }
            None => {
                self.local_routes.remove(&key);
            }
        }
    }

    fn base_attrs(&self, cfg: &VniConfig) -> PathAttributes {
        let mut ecs: Vec<_> = cfg.export_rts.iter().map(|rt| (*rt).into()).collect();
        ecs.push(EvpnExtCommunity::Encapsulation(tunnel_type::VXLAN).into());
        PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::default()),
            local_pref: Some(100),
            ext_communities: ecs,
            ..PathAttributes::default()
        }
    }

    fn type3_route(&self, cfg: &VniConfig) -> (RouteKey, LocalRoute) {
        let mut attrs = self.base_attrs(cfg);
        attrs.pmsi_tunnel = Some(PmsiView::ingress_replication(cfg.vni, self.cfg.local_vtep));
        let nlri = EvpnNlri::InclusiveMulticast(InclusiveMulticastRoute {
            rd: cfg.rd,
            eth_tag: EthernetTag(0),
            originator: self.cfg.local_vtep,
        });
        (
            nlri.key(),
            LocalRoute {
                vni: cfg.vni,
                nlri,
                attrs: Arc::new(attrs),
            },
        )
    }

    // --- VNI configuration ---------------------------------------------------

    /// Recompute the importing VNIs of every path after the import index
    /// changed. Only entries whose best-path contribution changes touch the
    /// dataplane groups, so other VNIs see no churn (no spurious mobility
    /// decisions). One pass over the Loc-RIB.
    fn reimport(&mut self, now: Instant, out: &mut RibOutput) {
        // Old Arc kept alive next to its replacement so that a freed
        // allocation's address cannot be reused by a later key.
        let mut cache: HashMap<*const PathShared, (Arc<PathShared>, Arc<PathShared>)> =
            HashMap::default();
        let mut changes = Vec::new();
        let local_vtep = self.cfg.local_vtep;
        let (peers, asn) = (&self.peers, self.cfg.asn);
        let (exact, any) = (&self.exact_import, &self.any_global_import);
        let census = &mut self.census;
        self.routes.retain(|key, entry| {
            // Out before any path changes, back in as it ends up.
            census.count(key, entry, false);
            let old = contrib_of(key, entry, local_vtep);
            let mut changed = false;
            for p in entry.paths.iter_mut() {
                let (_, new) = cache.entry(Arc::as_ptr(&p.shared)).or_insert_with(|| {
                    let vnis = import_vnis(exact, any, &p.shared.attrs);
                    let new = if vnis == p.shared.vnis {
                        p.shared.clone()
                    } else {
                        Arc::new(PathShared {
                            peer: p.shared.peer,
                            next_hop: p.shared.next_hop,
                            attrs: p.shared.attrs.clone(),
                            vnis,
                        })
                    };
                    (p.shared.clone(), new)
                });
                if !Arc::ptr_eq(new, &p.shared) {
                    p.shared = new.clone();
                    changed = true;
                }
            }
            if !changed {
                census.count(key, entry, true);
                return true;
            }
            if matches!(
                key,
                RouteKey::MacIp { .. } | RouteKey::InclusiveMulticast { .. }
            ) {
                entry.paths.retain(|p| !p.shared.vnis.is_empty());
            }
            select_best(key, &mut entry.paths, peers, asn);
            census.count(key, entry, true);
            let new = contrib_of(key, entry, local_vtep);
            if old != new {
                changes.push((old, new));
            }
            !entry.paths.is_empty()
        });
        for (old, new) in changes {
            self.apply(&old, &new, now, out);
        }
    }

    /// Record the current flood state of a VNI before its flood mode or
    /// existence changes (the value depends on it).
    fn touch_vni_floods(&mut self, vni: Vni) {
        let (flood, vnis) = (&self.flood, &self.vnis);
        for &(v, vtep) in flood.keys().filter(|k| k.0 == vni) {
            self.dp
                .touch(DpKey::Flood(v, vtep), || flood_value(flood, vnis, v, vtep));
        }
    }

    fn vni_add(&mut self, cfg: VniConfig, now: Instant, out: &mut RibOutput) {
        let vni = cfg.vni;
        let prev = self.vnis.get(&vni).map(|s| s.cfg.clone());
        if prev.as_ref() == Some(&cfg) {
            return;
        }
        let import_changed = prev.as_ref().is_none_or(|p| p.import_rts != cfg.import_rts);
        if prev.is_some() {
            // New RD, route targets or flood mode: re-originate below.
            self.withdraw_local_vni(vni);
            self.touch_vni_floods(vni);
        }
        let mut t2 = self.base_attrs(&cfg);
        t2.pmsi_tunnel = None;
        let flood = cfg.flood;
        self.vnis.insert(
            vni,
            VniState {
                cfg: cfg.clone(),
                t2_attrs: Arc::new(t2),
            },
        );
        if import_changed {
            self.rebuild_import_index();
            self.reimport(now, out);
        }
        if flood == FloodSource::Routes {
            let (k, r) = self.type3_route(&cfg);
            self.set_local(k, Some(r));
        }
        if prev.is_some() {
            let macs: Vec<_> = self.macs.keys().filter(|k| k.0 == vni).copied().collect();
            for (v, mac) in macs {
                if let Some(st) = self.macs.get_mut(&(v, mac)) {
                    st.advertised = None;
                }
                self.resolve_mac(v, mac, now, out);
            }
        }
        if import_changed && self.peers.values().any(|p| p.established) {
            out.outbound
                .push(Outbound::RouteRefreshRequest { to: None });
        }
    }

    fn withdraw_local_vni(&mut self, vni: Vni) {
        let keys: Vec<_> = self
            .local_routes
            .iter()
            .filter(|(_, r)| r.vni == vni)
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            self.set_local(k, None);
        }
    }

    fn vni_remove(&mut self, vni: Vni, now: Instant, out: &mut RibOutput) {
        if !self.vnis.contains_key(&vni) {
            return;
        }
        self.withdraw_local_vni(vni);
        self.touch_vni_floods(vni);
        self.vnis.remove(&vni);
        self.rebuild_import_index();
        // Paths lose this VNI (and go if no other VNI imports them).
        self.reimport(now, out);
        // Drop what is left of the VNI's MAC and neighbor state, frozen or
        // not, and its local learning.
        let macs: Vec<_> = self.macs.keys().filter(|k| k.0 == vni).copied().collect();
        for k in macs {
            if let Some(st) = self.macs.swap_remove(&k) {
                let w = st.winner;
                self.dp
                    .touch(DpKey::Mac(k.0, k.1), || remote_vtep(w).map(DpVal::Vtep));
            }
            self.frozen.remove(&k);
        }
        let neighs: Vec<_> = self.neighs.keys().filter(|k| k.0 == vni).copied().collect();
        for k in neighs {
            if let Some(st) = self.neighs.swap_remove(&k) {
                let m = st.installed;
                self.dp.touch(DpKey::Neigh(k.0, k.1), || m.map(DpVal::Mac));
            }
        }
        self.local_neighs.retain(|k, _| k.0 != vni);
        self.flood.retain(|k, _| k.0 != vni);
    }

    // --- Output --------------------------------------------------------------

    fn current_dp(&self, key: &DpKey) -> Option<DpVal> {
        match *key {
            DpKey::Mac(vni, mac) => self
                .macs
                .get(&(vni, mac))
                .and_then(|s| remote_vtep(s.winner))
                .map(DpVal::Vtep),
            DpKey::Flood(vni, vtep) => flood_value(&self.flood, &self.vnis, vni, vtep),
            DpKey::Neigh(vni, ip) => self
                .neighs
                .get(&(vni, ip))
                .and_then(|s| s.installed)
                .map(DpVal::Mac),
        }
    }

    /// Bound the memory of a huge batch (a full table, a lost session):
    /// emit the intents so far once this many keys are pending. The
    /// dataplane ends in the same state; a key changed twice in such a batch
    /// may get two intents instead of one.
    fn flush_dp_if_big(&mut self, out: &mut RibOutput) {
        if self.dp.order.len() >= DP_FLUSH_KEYS {
            self.flush_dp(out);
        }
    }

    fn flush(&mut self, out: &mut RibOutput) {
        self.flush_dp(out);
        self.flush_out(out);
    }

    fn flush_dp(&mut self, out: &mut RibOutput) {
        let mut order = self.dp.take();
        for (key, before) in order.drain(..) {
            let now = self.current_dp(&key);
            if before == now {
                continue;
            }
            let intent = match (key, now) {
                (DpKey::Mac(vni, mac), Some(DpVal::Vtep(vtep))) => {
                    Intent::RemoteMacUpsert { vni, mac, vtep }
                }
                (DpKey::Mac(vni, mac), _) => Intent::RemoteMacRemove { vni, mac },
                (DpKey::Flood(vni, vtep), Some(_)) => Intent::FloodAdd { vni, vtep },
                (DpKey::Flood(vni, vtep), None) => Intent::FloodRemove { vni, vtep },
                (DpKey::Neigh(vni, ip), Some(DpVal::Mac(mac))) => {
                    Intent::NeighborUpsert { vni, ip, mac }
                }
                (DpKey::Neigh(vni, ip), _) => Intent::NeighborRemove { vni, ip },
            };
            out.intents.push(intent);
        }
        self.dp.give_back(order);
    }

    fn flush_out(&mut self, out: &mut RibOutput) {
        let order = self.out.take();
        let any_up = self.peers.values().any(|p| p.established);
        let nh = self.cfg.local_vtep;
        if any_up {
            let mut announce = Vec::new();
            let mut withdraw = Vec::new();
            for (key, before) in &order {
                match (before.as_ref(), self.local_routes.get(key)) {
                    (b, Some(cur)) if b != Some(cur) => {
                        announce.push((cur.nlri, cur.attrs.clone(), nh))
                    }
                    (Some(b), None) => withdraw.push(b.nlri),
                    _ => {}
                }
            }
            if !withdraw.is_empty() {
                out.outbound.push(Outbound::Withdraw {
                    to: None,
                    routes: withdraw,
                });
            }
            if !announce.is_empty() {
                out.outbound.push(Outbound::Announce {
                    to: None,
                    routes: announce,
                });
            }
        }
        let full = std::mem::take(&mut self.full_table_to);
        if !full.is_empty() {
            let mut all: Vec<_> = self.local_routes.iter().collect();
            all.sort_by(|a, b| a.0.cmp(b.0));
            let routes: Vec<OutRoute> = all
                .into_iter()
                .map(|(_, r)| (r.nlri, r.attrs.clone(), nh))
                .collect();
            for (peer, eor) in full {
                if !self.peers.get(&peer).is_some_and(|p| p.established) {
                    continue;
                }
                if !routes.is_empty() {
                    out.outbound.push(Outbound::Announce {
                        to: Some(peer),
                        routes: routes.clone(),
                    });
                }
                if eor {
                    out.outbound.push(Outbound::EndOfRib { to: peer });
                }
            }
        }
    }

    // --- Read-only views -----------------------------------------------------

    /// Every path in the Loc-RIB, then our own routes.
    pub fn routes(&self) -> impl Iterator<Item = RouteView<'_>> {
        let nh = self.cfg.local_vtep;
        let remote = self.routes.iter().flat_map(|(k, e)| {
            e.paths.iter().enumerate().map(move |(i, p)| RouteView {
                nlri: join_nlri(k, &p.extra),
                peer: Some(p.shared.peer),
                next_hop: p.shared.next_hop,
                attrs: &p.shared.attrs,
                best: i == 0,
                stale: p.stale,
                vnis: &p.shared.vnis,
            })
        });
        let local = self.local_routes.values().map(move |r| RouteView {
            nlri: r.nlri,
            peer: None,
            next_hop: nh,
            attrs: &r.attrs,
            best: true,
            stale: false,
            vnis: std::slice::from_ref(&r.vni),
        });
        remote.chain(local)
    }

    /// Remote VTEPs in a VNI's flood list, sorted.
    pub fn vteps(&self, vni: Vni) -> Vec<IpAddr> {
        let mut v: Vec<IpAddr> = self
            .flood
            .keys()
            .filter(|k| k.0 == vni)
            .map(|k| k.1)
            .filter(|vtep| flood_value(&self.flood, &self.vnis, vni, *vtep).is_some())
            .collect();
        v.sort_unstable();
        v
    }

    /// MACs known in a VNI (local and remote), sorted.
    pub fn macs(&self, vni: Vni) -> Vec<MacView> {
        let mut v: Vec<MacView> = self
            .macs
            .iter()
            .filter(|(k, _)| k.0 == vni)
            .map(|(k, s)| MacView {
                mac: k.1,
                location: s.winner.map(|w| w.0),
                seq: s.winner.map_or(0, |w| w.1),
                local_seq: s.local,
                remote_paths: s.remote.len(),
                frozen: s.frozen().is_some(),
            })
            .collect();
        v.sort_by_key(|m| m.mac);
        v
    }

    pub fn vni_configs(&self) -> impl Iterator<Item = &VniConfig> {
        self.vnis.values().map(|s| &s.cfg)
    }

    /// Cumulative counters and the Loc-RIB census: O(VNIs).
    pub fn counters(&self) -> RibCounters {
        let mut c = self.counters.clone();
        let per = |m: &HashMap<Vni, [u64; 6]>| -> BTreeMap<Vni, [u64; 6]> {
            self.vnis
                .keys()
                .map(|v| (*v, m.get(v).copied().unwrap_or_default()))
                .collect()
        };
        c.per_vni = per(&self.census.best);
        c.paths_per_vni = per(&self.census.paths);
        c.no_vni = self.census.no_vni;
        c.routes = self.routes.len() as u64;
        c.paths = self.census.total_paths;
        c.local_routes = self.local_routes.len() as u64;
        c
    }

    /// [`Rib::counters`] by a walk over the whole Loc-RIB (the census it
    /// keeps must always equal this).
    #[cfg(test)]
    fn recount(&self) -> RibCounters {
        let mut c = self.counters.clone();
        c.per_vni = self.vnis.keys().map(|v| (*v, [0; 6])).collect();
        c.paths_per_vni = c.per_vni.clone();
        c.no_vni = [0; 6];
        c.routes = self.routes.len() as u64;
        c.paths = 0;
        for (k, e) in &self.routes {
            c.paths += e.paths.len() as u64;
            let t = k.route_type() as usize;
            for p in &e.paths {
                for v in p.shared.vnis.iter() {
                    if let Some(x) = c.paths_per_vni.get_mut(v) {
                        x[t] += 1;
                    }
                }
            }
            match e.paths.first() {
                Some(b) if !b.shared.vnis.is_empty() => {
                    for v in b.shared.vnis.iter() {
                        if let Some(x) = c.per_vni.get_mut(v) {
                            x[t] += 1;
                        }
                    }
                }
                _ => c.no_vni[t] += 1,
            }
        }
        c.local_routes = self.local_routes.len() as u64;
        c
    }
}

/// The VNIs whose import route targets match a route's (RFC 4364 §4.3.5
/// style import; FRR's auto RTs match on the local admin only).
fn import_vnis(
    exact: &HashMap<RouteTarget, Vec<Vni>>,
    any: &HashMap<u32, Vec<Vni>>,
    attrs: &PathAttributes,
) -> Arc<[Vni]> {
    let mut v: Vec<Vni> = Vec::new();
    for rt in route_targets(&attrs.ext_communities) {
        if let Some(vs) = exact.get(&rt) {
            v.extend(vs);
        }
        let local_admin = match rt {
            RouteTarget::As2 { value, .. } => value,
            RouteTarget::As4 { value, .. } | RouteTarget::Ipv4 { value, .. } => u32::from(value),
        };
        if let Some(vs) = any.get(&local_admin) {
            v.extend(vs);
        }
    }
    v.sort_unstable();
    v.dedup();
    v.into()
}

fn remote_vtep(w: Option<(MacLocation, u32)>) -> Option<IpAddr> {
    match w {
        Some((MacLocation::Remote(v), _)) => Some(v),
        _ => None,
    }
}

fn flood_value(
    flood: &HashMap<(Vni, IpAddr), u32>,
    vnis: &BTreeMap<Vni, VniState>,
    vni: Vni,
    vtep: IpAddr,
) -> Option<DpVal> {
    let on = vnis
        .get(&vni)
        .is_some_and(|s| s.cfg.flood == FloodSource::Routes);
    (on && flood.get(&(vni, vtep)).is_some_and(|c| *c > 0)).then_some(DpVal::Present)
}

#[cfg(test)]
mod size_tests {
    use super::*;

    /// Keep the per-path footprint in check (1M routes must fit).
    #[test]
    fn sizes() {
        assert!(std::mem::size_of::<Path>() <= 48);
        // One path inline, no discriminant (smallvec's `union`).
        assert!(std::mem::size_of::<SmallVec<[Path; 1]>>() <= 56);
        assert!(std::mem::size_of::<RouteKey>() <= 40);
        assert!(std::mem::size_of::<MacCand>() <= 56);
    }
}

#[cfg(test)]
mod census_tests {
    use super::*;
    use crate::route::{EthernetAdRoute, IpPrefixRoute};
    use evpnd_bgp::{MpReach, MpUnreach};

    /// xorshift64: a reproducible stream without another dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn v4(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, last)
    }

    fn vni(v: u32) -> Vni {
        Vni::new(v).unwrap()
    }

    fn nlri(r: &mut Rng) -> EvpnNlri {
        let vtep = v4(10 + r.below(4) as u8);
        let rd = RouteDistinguisher::auto(vtep, 1 + r.below(3) as u16);
        match r.below(10) {
            0..=5 => EvpnNlri::MacIp(MacIpRoute {
                rd,
                esi: Esi::ZERO,
                eth_tag: EthernetTag(0),
                mac: MacAddress([2, 0, 0, 0, 0, r.below(12) as u8]),
                ip: (r.below(2) == 0).then(|| IpAddr::V4(v4(100 + r.below(6) as u8))),
                label1: Label::new(100),
                label2: None,
            }),
            6..=7 => EvpnNlri::InclusiveMulticast(InclusiveMulticastRoute {
                rd,
                eth_tag: EthernetTag(0),
                originator: IpAddr::V4(vtep),
            }),
            8 => EvpnNlri::EthernetAd(EthernetAdRoute {
                rd,
                esi: Esi([1; 10]),
                eth_tag: EthernetTag(0),
                label: Label::new(100),
            }),
            _ => EvpnNlri::IpPrefix(IpPrefixRoute {
                rd,
                esi: Esi::ZERO,
                eth_tag: EthernetTag(0),
                prefix: "10.10.0.0/16".parse().unwrap(),
                gateway: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                label: Label::new(5000),
            }),
        }
    }

    fn update(r: &mut Rng) -> Update<EvpnNlri> {
        let routes: Vec<EvpnNlri> = (0..1 + r.below(5)).map(|_| nlri(r)).collect();
        if r.below(4) == 0 {
            return Update {
                mp_unreach: Some(MpUnreach {
                    afi_safi: AfiSafi::L2VPN_EVPN,
                    withdrawn: routes,
                }),
                ..Default::default()
            };
        }
        // One or two route targets among two configured VNIs and one not.
        let mut ecs: Vec<evpnd_bgp::ExtCommunity> = (0..1 + r.below(2))
            .map(|_| RouteTarget::auto(65000, vni(100 * (1 + r.below(3) as u32))).into())
            .collect();
        if r.below(3) == 0 {
            ecs.push(
                EvpnExtCommunity::MacMobility(MacMobility::new(r.below(3) as u32, false)).into(),
            );
        }
        let nh = v4(10 + r.below(4) as u8);
        Update {
            attributes: PathAttributes {
                origin: Some(Origin::Igp),
                as_path: Some(AsPath::default()),
                local_pref: Some(100 + r.below(2) as u32),
                originator_id: Some(nh),
                ext_communities: ecs,
                ..Default::default()
            },
            mp_reach: Some(MpReach {
                afi_safi: AfiSafi::L2VPN_EVPN,
                next_hop: NextHop::Ip(IpAddr::V4(nh)),
                nlri: routes,
            }),
            ..Default::default()
        }
    }

    /// A batch bigger than DP_FLUSH_KEYS is flushed in parts: every key
    /// still gets exactly one intent when it changes once, on install and
    /// on the lost session.
    #[test]
    fn huge_batch_flushes_in_parts() {
        let now = Instant::now();
        let mut rib = Rib::new(RibConfig {
            router_id: v4(1),
            asn: 65000,
            local_vtep: IpAddr::V4(v4(1)),
            dup_detect: DupDetectConfig::default(),
        });
        rib.handle(
            RibInput::VniAdd(VniConfig::auto(vni(100), 65000, v4(1), 1)),
            now,
        );
        let peer = IpAddr::V4(v4(200));
        let n = DP_FLUSH_KEYS as u32 + 5000;
        let updates = (0..n).collect::<Vec<u32>>();
        let inputs: Vec<RibInput> = std::iter::once(RibInput::PeerUp {
            peer,
            router_id: v4(200),
            asn: 65000,
        })
        .chain(updates.chunks(1000).map(|c| {
            let nlri = c
                .iter()
                .map(|j| {
                    let b = j.to_be_bytes();
                    EvpnNlri::MacIp(MacIpRoute {
                        rd: RouteDistinguisher::auto(v4(10), 1),
                        esi: Esi::ZERO,
                        eth_tag: EthernetTag(0),
                        mac: MacAddress([2, 0, b[0], b[1], b[2], b[3]]),
                        ip: None,
                        label1: Label::new(100),
                        label2: None,
                    })
                })
                .collect();
            RibInput::Update {
                peer,
                update: Update {
                    attributes: PathAttributes {
                        ext_communities: vec![RouteTarget::auto(65000, vni(100)).into()],
                        ..Default::default()
                    },
                    mp_reach: Some(MpReach {
                        afi_safi: AfiSafi::L2VPN_EVPN,
                        next_hop: NextHop::Ip(IpAddr::V4(v4(10))),
                        nlri,
                    }),
                    ..Default::default()
                },
            }
        }))
        .collect();
        let keys = |out: &RibOutput, upsert: bool| {
            let k: Vec<_> = out
                .intents
                .iter()
                .filter(|i| i.is_remove() != upsert)
                .map(Intent::key)
                .collect();
            let distinct: HashSet<_> = k.iter().collect();
            (k.len(), distinct.len())
        };
        let out = rib.handle_batch(inputs, now);
        assert_eq!(keys(&out, true), (n as usize, n as usize));
        assert_eq!(out.intents.len(), n as usize);
        let out = rib.handle(
            RibInput::PeerDown {
                peer,
                graceful_restart: None,
            },
            now,
        );
        assert_eq!(keys(&out, false), (n as usize, n as usize));
        assert_eq!(out.intents.len(), n as usize);
    }

    /// The census kept by `counters()` equals a full recount after every
    /// step of random sessions, updates, withdraws, graceful restarts and
    /// VNI changes.
    #[test]
    fn counters_equal_a_recount() {
        let now = Instant::now();
        for seed in 1..=40u64 {
            let mut r = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let mut rib = Rib::new(RibConfig {
                router_id: v4(1),
                asn: 65000,
                local_vtep: IpAddr::V4(v4(1)),
                dup_detect: DupDetectConfig::default(),
            });
            for v in [100, 200] {
                rib.handle(
                    RibInput::VniAdd(VniConfig::auto(vni(v), 65000, v4(1), 1)),
                    now,
                );
            }
            for step in 0..300 {
                let peer = IpAddr::V4(v4(200 + r.below(2) as u8));
                let input = match r.below(20) {
                    0 => RibInput::PeerUp {
                        peer,
                        router_id: v4(200),
                        asn: 65000,
                    },
                    1 => RibInput::PeerDown {
                        peer,
                        graceful_restart: (r.below(2) == 0).then_some(Duration::from_secs(60)),
                    },
                    2 => RibInput::EndOfRib { peer },
                    3 => RibInput::StaleTimerExpired { peer },
                    4 => {
                        let v = 100 * (1 + r.below(3) as u32);
                        RibInput::VniAdd(VniConfig::auto(vni(v), 65000, v4(1), v as u16 / 100))
                    }
                    5 => RibInput::VniRemove(vni(100 * (1 + r.below(3) as u32))),
                    6 => RibInput::LocalMacAdd {
                        vni: vni(100),
                        mac: MacAddress([2, 0, 0, 0, 0, r.below(12) as u8]),
                    },
                    _ => RibInput::Update {
                        peer,
                        update: update(&mut r),
                    },
                };
                let what = format!("{input:?}");
                rib.handle(input, now);
                assert_eq!(
                    rib.counters(),
                    rib.recount(),
                    "seed {seed} step {step}: {what}"
                );
            }
        }
    }
}
