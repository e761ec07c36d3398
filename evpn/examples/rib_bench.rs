//! RIB micro-benchmark: the `evpnd-bench` workload fed straight into
//! [`Rib::handle_batch`], without sockets or a kernel, so that the RIB's CPU
//! and heap per route can be measured without the noise of the full bench.
//!
//! ```sh
//! cargo run --release -p evpnd-evpn --example rib_bench -- --macs 100000,1000000
//! ```
//!
//! Workload (as `src/bench/injector.rs`): one peer playing the route
//! reflector (ORIGINATOR_ID = remote VTEP, CLUSTER_LIST = the injector),
//! M type-3 routes (VTEP i in VNI i mod K), N type-2 routes over K VNIs,
//! half MAC-only and half MAC+IP, RT 65000:VNI, encapsulation VXLAN,
//! label = VNI, RD = VTEP:index. The routes are packed into full UPDATEs
//! (extended messages, as negotiated with evpnd) and encoded before the
//! clock starts; each UPDATE is decoded just before it is fed, as the
//! session task does, and UPDATEs are fed `--batch` at a time (the daemon
//! folds up to 8,192 queued events into one pass). Then the peer goes down
//! without graceful restart, which withdraws everything.
//!
//! Printed per size (best of `--runs`): CPU µs per route in `handle_batch`
//! (install, withdraw) and in decoding, heap bytes per route live after
//! the install and at the peak of install and withdraw (counting global
//! allocator, relative to the heap before the RIB was built; the encoded
//! UPDATEs are outside that), allocations per route, and the cost of one
//! `Rib::counters()` call.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use evpnd_bgp::codec::{self, CodecOptions};
use evpnd_bgp::{AfiSafi, AsPath, Message, NextHop, Origin, PathAttributes};
use evpnd_evpn::extcomm::{tunnel_type, EvpnExtCommunity, PmsiView, RouteTarget};
use evpnd_evpn::rib::{DupDetectConfig, RibConfig, RibCounters, RibInput, RibOutput, VniConfig};
use evpnd_evpn::route::{InclusiveMulticastRoute, MacIpRoute};
use evpnd_evpn::{EthernetTag, EvpnNlri, Intent, Label, MacAddress, Rib, RouteDistinguisher, Vni};

/// Counts live heap bytes, their high-water mark and allocations.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static ALLOCS: AtomicU64 = AtomicU64::new(0);

fn grow(n: usize) {
    let now = LIVE.fetch_add(n, Relaxed) + n;
    PEAK.fetch_max(now, Relaxed);
}

// SAFETY: every call is forwarded to `System` with the same arguments; the
// counters are plain atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            grow(l.size());
            ALLOCS.fetch_add(1, Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            grow(l.size());
            ALLOCS.fetch_add(1, Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            LIVE.fetch_sub(l.size(), Relaxed);
            grow(new);
            ALLOCS.fetch_add(1, Relaxed);
        }
        q
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const ASN: u32 = 65000;
const INJECTOR_ID: Ipv4Addr = Ipv4Addr::new(10, 99, 9, 9);
const VNI_BASE: u32 = 100;

#[derive(Debug, Clone, Copy)]
struct Workload {
    macs: u32,
    vteps: u32,
    vnis: u32,
}

impl Workload {
    fn vni(&self, k: u32) -> Vni {
        Vni::new(VNI_BASE + k).expect("VNI fits 24 bits")
    }
    fn vtep_ip(&self, i: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 200, 0, 0)) + 1 + i)
    }
    fn mac(&self, j: u32) -> MacAddress {
        let b = j.to_be_bytes();
        MacAddress([0x02, 0xbe, b[0], b[1], b[2], b[3]])
    }
    /// (VNI index, VTEP) of MAC `j`: one of the VTEPs in that VNI.
    fn slot(&self, j: u32) -> (u32, u32) {
        let k = j % self.vnis;
        if self.vteps > k {
            let in_vni = (self.vteps - k).div_ceil(self.vnis);
            (k, k + self.vnis * ((j / self.vnis) % in_vni))
        } else {
            (k, j % self.vteps.max(1))
        }
    }
    fn rd(&self, vtep: u32, k: u32) -> RouteDistinguisher {
        RouteDistinguisher::auto(self.vtep_ip(vtep), (k + 1) as u16)
    }
    fn attrs(&self, vtep: u32, k: u32, imet: bool) -> PathAttributes {
        let vni = self.vni(k);
        let ip = self.vtep_ip(vtep);
        PathAttributes {
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
        }
    }

    /// The UPDATEs, encoded, type-3 first.
    fn encode(&self, opts: &CodecOptions) -> Vec<Vec<u8>> {
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
            let ip = (j % 2 == 1)
                .then(|| IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 0)) + j)));
            groups
                .entry((true, vtep, k))
                .or_default()
                .push(EvpnNlri::MacIp(MacIpRoute {
                    rd: self.rd(vtep, k),
                    esi: Default::default(),
                    eth_tag: EthernetTag(0),
                    mac: self.mac(j),
                    ip,
                    label1: Label::from_vni(self.vni(k)),
                    label2: None,
                }));
        }
        let mut out = Vec::new();
        let mut buf = BytesMut::with_capacity(opts.max_message_len());
        for ((mac, vtep, k), nlri) in groups {
            let attrs = self.attrs(vtep, k, !mac);
            let nh = NextHop::Ip(IpAddr::V4(self.vtep_ip(vtep)));
            let updates = codec::pack_reach(AfiSafi::L2VPN_EVPN, &nh, &attrs, &nlri, opts)
                .expect("routes fit an UPDATE");
            for u in updates {
                buf.clear();
                codec::try_encode(&Message::Update(u), opts, &mut buf).expect("encodable");
                out.push(buf.to_vec());
            }
        }
        out
    }
}

/// CPU time of this thread (the machine is shared: wall time would count
/// the time other jobs had the CPU).
#[derive(Debug, Clone, Copy)]
struct Cpu(u64);

impl Cpu {
    fn now() -> Cpu {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
        Cpu(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
    }
    fn elapsed(self) -> Duration {
        Cpu::now() - self
    }
}

impl std::ops::Sub for Cpu {
    type Output = Duration;
    fn sub(self, o: Cpu) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(o.0))
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Run {
    install: Duration,
    decode: Duration,
    withdraw: Duration,
    counters: Duration,
    live: usize,
    rss: usize,
    peak_install: usize,
    peak_withdraw: usize,
    left: usize,
    allocs_install: u64,
    allocs_withdraw: u64,
}

fn run(w: &Workload, updates: &[Vec<u8>], opts: &CodecOptions, batch: usize) -> Run {
    let peer = IpAddr::V4(INJECTOR_ID);
    let now = Instant::now();
    let base = LIVE.load(Relaxed);
    let rss0 = rss_bytes();
    PEAK.store(base, Relaxed);
    let router_id = Ipv4Addr::new(10, 99, 1, 2);
    let mut rib = Rib::new(RibConfig {
        router_id,
        asn: ASN,
        local_vtep: IpAddr::V4(router_id),
        dup_detect: DupDetectConfig::default(),
    });
    let mut setup: Vec<RibInput> = (0..w.vnis)
        .map(|k| RibInput::VniAdd(VniConfig::auto(w.vni(k), ASN, router_id, (k + 1) as u16)))
        .collect();
    setup.push(RibInput::PeerUp {
        peer,
        router_id: INJECTOR_ID,
        asn: ASN,
    });
    drop(rib.handle_batch(setup, now));

    let mut counts = [0u64; 3];

    let mut r = Run::default();
    let a0 = ALLOCS.load(Relaxed);
    for chunk in updates.chunks(batch) {
        let t = Cpu::now();
        let inputs: Vec<RibInput> = chunk
            .iter()
            .map(|b| match codec::decode::<EvpnNlri>(b, opts) {
                Ok(Message::Update(update)) => RibInput::Update { peer, update },
                other => panic!("not an UPDATE: {other:?}"),
            })
            .collect();
        let t1 = Cpu::now();
        let out = install(&mut rib, inputs, now);
        r.install += t1.elapsed();
        r.decode += t1 - t;
        count(&out.intents, &mut counts);
    }
    r.allocs_install = ALLOCS.load(Relaxed) - a0;
    r.live = LIVE.load(Relaxed).saturating_sub(base);
    r.rss = rss_bytes().saturating_sub(rss0);
    r.peak_install = PEAK.load(Relaxed).saturating_sub(base);
    let installed = counts;
    assert_eq!(
        installed,
        [u64::from(w.macs), u64::from(w.macs / 2), u64::from(w.vteps)],
        "install: (MAC, neighbor, flood) intents"
    );

    let t = Cpu::now();
    let c = census(&rib);
    r.counters = t.elapsed();
    assert_eq!(c.paths, u64::from(w.macs + w.vteps));
    drop(c);

    PEAK.store(LIVE.load(Relaxed), Relaxed);
    let a0 = ALLOCS.load(Relaxed);
    counts = [0; 3];
    let t = Cpu::now();
    let out = withdraw(&mut rib, peer, now);
    r.withdraw = t.elapsed();
    count(&out.intents, &mut counts);
    drop(out);
    r.allocs_withdraw = ALLOCS.load(Relaxed) - a0;
    r.peak_withdraw = PEAK.load(Relaxed).saturating_sub(base);
    r.left = LIVE.load(Relaxed).saturating_sub(base);
    assert_eq!(counts, installed, "withdraw intents");
    drop(rib);
    r
}

// The three phases are separate functions so that a profiler can tell them
// apart: `valgrind --tool=callgrind` then `callgrind_annotate --inclusive=yes`
// gives deterministic instruction counts for each (the machine is shared,
// CPU times are noisy).
#[inline(never)]
fn install(rib: &mut Rib, inputs: Vec<RibInput>, now: Instant) -> RibOutput {
    std::hint::black_box(rib.handle_batch(inputs, now))
}

#[inline(never)]
fn withdraw(rib: &mut Rib, peer: IpAddr, now: Instant) -> RibOutput {
    let down = RibInput::PeerDown {
        peer,
        graceful_restart: None,
    };
    std::hint::black_box(rib.handle_batch([down], now))
}

#[inline(never)]
fn census(rib: &Rib) -> RibCounters {
    std::hint::black_box(rib.counters())
}

/// Resident memory: the heap figures count capacity, RSS only the pages
/// touched (a vector's unused tail is not). Meaningful for the first size
/// of a run (freed memory is not always given back).
fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let l = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            l.split_whitespace().nth(1)?.parse::<usize>().ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// Intents by kind: [MAC, neighbor, flood].
fn count(intents: &[Intent], c: &mut [u64; 3]) {
    for i in intents {
        match i {
            Intent::RemoteMacUpsert { .. } | Intent::RemoteMacRemove { .. } => c[0] += 1,
            Intent::NeighborUpsert { .. } | Intent::NeighborRemove { .. } => c[1] += 1,
            Intent::FloodAdd { .. } | Intent::FloodRemove { .. } => c[2] += 1,
        }
    }
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("bad value for {name}")))
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let sizes: Vec<u32> = arg(&args, "--macs", "100000".to_string())
        .split(',')
        .map(|s| s.parse().expect("--macs N[,N...]"))
        .collect();
    let vteps = arg(&args, "--vteps", 1000u32);
    let vnis = arg(&args, "--vnis", 10u32);
    let runs = arg(&args, "--runs", 3usize);
    let batch = arg(&args, "--batch", 8192usize);
    let opts = CodecOptions {
        four_octet_as: true,
        extended_message: true,
    };
    println!(
        "{:>8} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}",
        "MACs",
        "batch",
        "inst_us",
        "wdr_us",
        "dec_us",
        "live_B",
        "rss_B",
        "pkI_B",
        "pkW_B",
        "left_B",
        "allocI",
        "allocW",
        "counters"
    );
    for macs in sizes {
        let w = Workload { macs, vteps, vnis };
        let updates = w.encode(&opts);
        let mut best: Option<Run> = None;
        for _ in 0..runs {
            let r = run(&w, &updates, &opts, batch);
            best = Some(match best {
                None => r,
                Some(b) => Run {
                    install: b.install.min(r.install),
                    decode: b.decode.min(r.decode),
                    withdraw: b.withdraw.min(r.withdraw),
                    counters: b.counters.min(r.counters),
                    ..r
                },
            });
        }
        let Some(r) = best else { continue };
        let n = f64::from(macs);
        let us = |d: Duration| d.as_secs_f64() * 1e6 / n;
        let b = |x: usize| x as f64 / n;
        println!(
            "{:>8} {:>6} {:>8.3} {:>8.3} {:>8.3} {:>8.0} {:>8.0} {:>8.0} {:>8.0} {:>8.0} {:>8.2} {:>8.2} {:>7.2}ms",
            macs,
            batch,
            us(r.install),
            us(r.withdraw),
            us(r.decode),
            b(r.live),
            b(r.rss),
            b(r.peak_install),
            b(r.peak_withdraw),
            b(r.left),
            r.allocs_install as f64 / n,
            r.allocs_withdraw as f64 / n,
            r.counters.as_secs_f64() * 1e3,
        );
    }
}
