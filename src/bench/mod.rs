//! `evpnd-bench`: convergence, CPU, memory and latency of evpnd against
//! FRR (zebra + bgpd) and against the kernel floor (`bridge -batch`), in a
//! namespace fabric. See BENCHMARKS.md for the method and the results.
//!
//! Fabric: an injector namespace linked to two VTEP namespaces (one runs
//! FRR, the other evpnd) with the same VNIs. The injector is an iBGP peer
//! playing the route reflector (routes carry ORIGINATOR_ID/CLUSTER_LIST,
//! next hops are fake remote VTEPs routed to the injector link), so the
//! figures are the VTEP's own work.

pub mod injector;
pub mod kernel;
pub mod report;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::testbed::{self, Evpnd, EvpndConfig, Frr, FrrConfig, Netns, VniConfig, VtepParams};

use injector::{Session, Workload};
use kernel::{BridgeShell, Counts, FdbCounter, VtepNs, LOCAL_PORT};

/// What went wrong in a bench run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Testbed(#[from] testbed::Error),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("BGP: {0}")]
    Bgp(String),
    #[error("timed out waiting for {0}")]
    Timeout(String),
    #[error("invalid {what} `{value}`")]
    Invalid { what: &'static str, value: String },
}

impl BenchError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        BenchError::Io {
            what: what.into(),
            source,
        }
    }
}

/// Which targets to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Floor,
    Evpnd,
    Frr,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Floor => "floor",
            Target::Evpnd => "evpnd",
            Target::Frr => "frr",
        }
    }
}

/// Bench parameters.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Type-2 route counts to run, one size after the other.
    pub macs: Vec<u32>,
    pub vteps: u32,
    pub vnis: u32,
    pub runs: u32,
    /// Only these targets (all when empty).
    pub only: Vec<Target>,
    /// Local-MAC latency samples per run (0 = skip).
    pub latency_samples: u32,
    /// Limit of each timed phase; a run that does not finish is incomplete.
    pub timeout: Duration,
    /// evpnd binary (evpnctl next to it).
    pub evpnd_bin: PathBuf,
    /// Print progress to stderr.
    pub verbose: bool,
}

/// One run of one target at one size.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub target: Target,
    pub macs: u32,
    pub run: u32,
    /// Seconds from the first UPDATE (or batch start) until all `macs`
    /// rows were in the bridges; `None` if that never happened.
    pub install_s: Option<f64>,
    /// Rows the kernel had when install finished or timed out.
    pub installed: usize,
    /// Seconds from the session drop (or delete batch) until no row left.
    pub withdraw_s: Option<f64>,
    /// Rows left when withdraw finished or timed out.
    pub remaining: usize,
    /// Neighbor entries (ARP suppression, one per MAC+IP route) after
    /// install and after withdraw; install and withdraw end only when these
    /// are complete too.
    pub neighs_installed: usize,
    pub neighs_remaining: usize,
    /// Floor only: seconds until the FDB rows alone were written / deleted
    /// (the neighbor entries come after them).
    pub install_fdb_s: Option<f64>,
    pub withdraw_fdb_s: Option<f64>,
    /// Seconds the injector needed to push all UPDATEs into TCP.
    pub send_s: Option<f64>,
    /// CPU of the daemon processes during install / withdraw (user, sys).
    pub install_cpu: (f64, f64),
    pub withdraw_cpu: (f64, f64),
    /// Sum of VmHWM of the daemon processes (KiB).
    pub peak_rss_kib: u64,
    /// Flood entries (00:00:00:00:00:00 rows) after install.
    pub flood_entries: usize,
    /// Local MAC learned -> its route at the injector, per sample (ms).
    pub latency_ms: Vec<f64>,
    /// A latency probe whose route never came (the probes stop there).
    pub latency_error: Option<String>,
    /// Loadavg (1 min) when the run started.
    pub load: f64,
    pub error: Option<String>,
}

impl RunResult {
    fn new(target: Target, macs: u32, run: u32) -> Self {
        RunResult {
            target,
            macs,
            run,
            install_s: None,
            installed: 0,
            withdraw_s: None,
            remaining: 0,
            neighs_installed: 0,
            neighs_remaining: 0,
            install_fdb_s: None,
            withdraw_fdb_s: None,
            send_s: None,
            install_cpu: (0.0, 0.0),
            withdraw_cpu: (0.0, 0.0),
            peak_rss_kib: 0,
            flood_entries: 0,
            latency_ms: Vec::new(),
            latency_error: None,
            load: loadavg(),
            error: None,
        }
    }

    /// All rows in, all rows out, no error (latency probes aside).
    pub fn complete(&self) -> bool {
        self.error.is_none()
            && self.install_s.is_some()
            && self.withdraw_s.is_some()
            && self.installed == self.macs as usize
            && self.remaining == 0
            && self.neighs_installed == (self.macs / 2) as usize
            && self.neighs_remaining == 0
    }
}

fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

/// The fabric: injector namespace and the two VTEP namespaces.
pub struct BenchFabric {
    pub injector: Netns,
    pub frr: VtepNs,
    pub evpnd: VtepNs,
    pub workload: Workload,
}

impl BenchFabric {
    pub fn build(w: Workload) -> Result<BenchFabric, BenchError> {
        let injector = Netns::new("benchinj")?;
        let frr = VtepNs::create(&injector, "tofrr", 1, &w)?;
        let evpnd = VtepNs::create(&injector, "toevpnd", 2, &w)?;
        Ok(BenchFabric {
            injector,
            frr,
            evpnd,
            workload: w,
        })
    }
}

/// A running VTEP daemon.
enum Daemon {
    Frr(Frr),
    Evpnd(Evpnd),
}

impl Daemon {
    fn pids(&self) -> Vec<u32> {
        match self {
            Daemon::Frr(f) => [f.bgpd_pid(), f.zebra_pid()]
                .into_iter()
                .flatten()
                .collect(),
            Daemon::Evpnd(e) => e.pid().into_iter().collect(),
        }
    }
}

fn cpu_of(pids: &[u32]) -> (f64, f64) {
    pids.iter()
        .filter_map(|&p| kernel::proc_cpu(p).ok())
        .fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1))
}

fn sub(a: (f64, f64), b: (f64, f64)) -> (f64, f64) {
    (a.0 - b.0, a.1 - b.1)
}

fn start_daemon(
    target: Target,
    v: &VtepNs,
    w: &Workload,
    opts: &BenchOptions,
) -> Result<Daemon, BenchError> {
    match target {
        Target::Frr => {
            let mut p = VtepParams::new(injector::ASN, v.ip, &[v.injector_ip]);
            p.timers = (30, 90);
            Ok(Daemon::Frr(Frr::start(
                &v.ns.handle(),
                FrrConfig::vtep(&p),
            )?))
        }
        Target::Evpnd => {
            // No withdraw hold: the bench measures how fast withdrawals
            // reach the kernel, not the hold policy (5 s by default).
            let mut cfg = EvpndConfig::new(injector::ASN, v.ip, v.ns.name())
                .hold_time(90)
                .withdraw_hold_ms(0)
                .neighbor(v.injector_ip);
            for k in 0..w.vnis {
                let vni = w.vni(k);
                cfg = cfg.vni_config(VniConfig {
                    bridge: kernel::bridge_name(vni),
                    create: false,
                    ..VniConfig::new(vni)
                });
            }
            let mut e = Evpnd::start_with(&v.ns.handle(), &opts.evpnd_bin, &cfg)?;
            e.wait_ready(Duration::from_secs(60))?;
            Ok(Daemon::Evpnd(e))
        }
        Target::Floor => Err(BenchError::Invalid {
            what: "daemon",
            value: "floor".into(),
        }),
    }
}

fn count_flood(v: &VtepNs) -> usize {
    v.ns.run(&["bridge", "fdb", "show"])
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.starts_with("00:00:00:00:00:00 ") && l.contains(" dst 10.200."))
                .count()
        })
        .unwrap_or(0)
}

/// The kernel floor: the workload's FDB rows written and deleted with
/// `bridge -batch`, then its neighbor entries with `ip -batch`, in the
/// evpnd namespace (no daemon running).
fn run_floor(f: &BenchFabric, run: u32, opts: &BenchOptions) -> Result<RunResult, BenchError> {
    let w = &f.workload;
    let mut r = RunResult::new(Target::Floor, w.macs, run);
    let mut counter = f.evpnd.counter(w)?;
    let b = kernel::floor_batches(w);
    let dir = testbed::RunDir::new("bench-floor")?;
    let fdb_add = dir.write("fdb-add.batch", &b.fdb_add)?;
    let fdb_del = dir.write("fdb-del.batch", &b.fdb_del)?;
    let neigh_add = dir.write("neigh-add.batch", &b.neigh_add)?;
    let neigh_del = dir.write("neigh-del.batch", &b.neigh_del)?;
    let ns = f.evpnd.ns.handle();
    let want = Counts {
        rows: w.macs as usize,
        neighs: w.macip_count(),
    };
    let c0 = kernel::children_cpu();
    let t0 = Instant::now();
    ns.run(&["bridge".as_ref(), "-batch".as_ref(), fdb_add.as_os_str()])?;
    r.install_fdb_s = Some(t0.elapsed().as_secs_f64());
    ns.run(&["ip".as_ref(), "-batch".as_ref(), neigh_add.as_os_str()])?;
    let (c, t) = counter.wait(opts.timeout, want)?;
    r.installed = c.rows;
    r.neighs_installed = c.neighs;
    r.install_s = t.map(|t| (t - t0).as_secs_f64());
    r.install_cpu = sub(kernel::children_cpu(), c0);
    r.flood_entries = count_flood(&f.evpnd);
    let c = counter.counts()?;
    (r.installed, r.neighs_installed) = (c.rows, c.neighs);
    let c1 = kernel::children_cpu();
    let t1 = Instant::now();
    ns.run(&["bridge".as_ref(), "-batch".as_ref(), fdb_del.as_os_str()])?;
    r.withdraw_fdb_s = Some(t1.elapsed().as_secs_f64());
    ns.run(&["ip".as_ref(), "-batch".as_ref(), neigh_del.as_os_str()])?;
    let (c, t) = counter.wait(opts.timeout, Counts { rows: 0, neighs: 0 })?;
    r.remaining = c.rows;
    r.neighs_remaining = c.neighs;
    r.withdraw_s = t.map(|t| (t - t1).as_secs_f64());
    r.withdraw_cpu = sub(kernel::children_cpu(), c1);
    Ok(r)
}

/// One daemon run: fresh daemon, session, bulk send, wait for the kernel,
/// latency samples, session drop, wait for the kernel to empty.
fn run_daemon(
    f: &BenchFabric,
    target: Target,
    run: u32,
    opts: &BenchOptions,
) -> Result<RunResult, BenchError> {
    let w = &f.workload;
    let v = if target == Target::Frr {
        &f.frr
    } else {
        &f.evpnd
    };
    let mut r = RunResult::new(target, w.macs, run);
    let mut counter: FdbCounter = v.counter(w)?;
    let before = counter.count()? + counter.count_neighs()?;
    if before != 0 {
        return Err(BenchError::Bgp(format!(
            "{} namespace has {before} remote rows before the run",
            target.name()
        )));
    }
    let daemon = start_daemon(target, v, w, opts)?;
    let pids = daemon.pids();
    let session = Session::connect(f.injector.name(), v.ip, Duration::from_secs(60))?;
    // The VTEP knows every VNI once it advertised a type-3 route for each.
    if let Err(e) = session.wait_imet(w.vnis as usize, opts.timeout) {
        keep_log(&daemon, opts);
        return Err(e);
    }
    let enc = w.encode(&session.opts)?;
    if opts.verbose {
        eprintln!(
            "  {}: session up, {} UPDATEs / {} bytes pre-encoded",
            target.name(),
            enc.updates,
            enc.bytes.len()
        );
    }
    let c0 = cpu_of(&pids);
    let t0 = Instant::now();
    let (send_res, wait_res) = std::thread::scope(|s| {
        let sender = s.spawn(|| session.send(&enc).map(|()| t0.elapsed()));
        let wait = counter.wait(
            opts.timeout,
            Counts {
                rows: w.macs as usize,
                neighs: w.macip_count(),
            },
        );
        (sender.join(), wait)
    });
    let (c, t) = wait_res?;
    r.installed = c.rows;
    r.neighs_installed = c.neighs;
    r.install_s = t.map(|t| (t - t0).as_secs_f64());
    r.install_cpu = sub(cpu_of(&pids), c0);
    match send_res {
        Ok(Ok(d)) => r.send_s = Some(d.as_secs_f64()),
        Ok(Err(e)) => r.error = Some(e.to_string()),
        Err(_) => r.error = Some("sender thread panicked".into()),
    }
    if r.install_s.is_some() {
        r.flood_entries = count_flood(v);
        // Exactness: nothing more arrived after the count first hit N.
        let c = counter.counts()?;
        (r.installed, r.neighs_installed) = (c.rows, c.neighs);
    }

    // Local MAC learned -> route at the injector.
    if opts.latency_samples > 0 && r.install_s.is_some() {
        let mut sh = BridgeShell::start(&v.ns.handle())?;
        for i in 0..opts.latency_samples {
            let mac = evpnd_evpn::MacAddress([0x02, 0x1a, 0, 0, run as u8, i as u8]);
            let t = Instant::now();
            sh.line(&format!("fdb add {mac} dev {LOCAL_PORT} master static"))?;
            match session.wait_mac(mac, Duration::from_secs(10)) {
                Some(seen) => r
                    .latency_ms
                    .push(seen.saturating_duration_since(t).as_secs_f64() * 1e3),
                None => {
                    r.latency_error = Some(match session.closed() {
                        Some(why) => format!("session ended before local MAC {mac}: {why}"),
                        None => format!("local MAC {mac} not advertised within 10 s"),
                    });
                    // Let the daemon log what it was stuck on.
                    std::thread::sleep(Duration::from_secs(12));
                    keep_log(&daemon, opts);
                    break;
                }
            }
        }
        for i in 0..opts.latency_samples {
            let mac = evpnd_evpn::MacAddress([0x02, 0x1a, 0, 0, run as u8, i as u8]);
            sh.line(&format!("fdb del {mac} dev {LOCAL_PORT} master"))?;
        }
    }
    r.peak_rss_kib = pids
        .iter()
        .filter_map(|&p| kernel::peak_rss_kib(p).ok())
        .sum();
    if let Some(why) = session.closed() {
        r.error.get_or_insert(format!("session went down: {why}"));
    }

    let c1 = cpu_of(&pids);
    let t1 = Instant::now();
    session.close();
    let (c, t) = counter.wait(opts.timeout, Counts { rows: 0, neighs: 0 })?;
    r.remaining = c.rows;
    r.neighs_remaining = c.neighs;
    r.withdraw_s = t.map(|t| (t - t1).as_secs_f64());
    r.withdraw_cpu = sub(cpu_of(&pids), c1);
    drop(daemon);
    // A fresh start next run: no rows may survive an incomplete one.
    if r.remaining != 0 || r.neighs_remaining != 0 {
        clear_rows(v, w)?;
    }
    Ok(r)
}

/// Keep evpnd's log of a failed run (the run directory goes with the guard).
fn keep_log(daemon: &Daemon, opts: &BenchOptions) {
    if let (true, Daemon::Evpnd(e)) = (opts.verbose, daemon) {
        let keep = std::env::temp_dir().join("evpnd-bench-failed.log");
        let _ = std::fs::copy(e.log(), &keep);
        eprintln!("evpnd log kept in {}", keep.display());
    }
}

/// Delete every workload row from a VTEP namespace (after a failed run).
fn clear_rows(v: &VtepNs, w: &Workload) -> Result<(), BenchError> {
    let b = kernel::floor_batches(w);
    let dir = testbed::RunDir::new("bench-clear")?;
    let fdb = dir.write("fdb-del.batch", &b.fdb_del)?;
    let neigh = dir.write("neigh-del.batch", &b.neigh_del)?;
    for (tool, f) in [("bridge", fdb), ("ip", neigh)] {
        let _ = v.ns.run_unchecked(&[
            tool.as_ref(),
            "-force".as_ref(),
            "-batch".as_ref(),
            f.as_os_str(),
        ])?;
    }
    Ok(())
}

/// Everything measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub vteps: u32,
    pub vnis: u32,
    pub runs: u32,
    pub machine: report::Machine,
    pub results: Vec<RunResult>,
}

/// Run the bench: for each size, build a fabric, then `runs` rounds of
/// floor, evpnd and FRR (daemon order alternating per round).
pub fn run(opts: &BenchOptions) -> Result<Report, BenchError> {
    if opts.vnis == 0 || opts.vteps == 0 || opts.vteps > 65000 || opts.vnis > 100_000 {
        return Err(BenchError::Invalid {
            what: "fabric size",
            value: format!("{} VTEPs, {} VNIs", opts.vteps, opts.vnis),
        });
    }
    let want = |t: Target| opts.only.is_empty() || opts.only.contains(&t);
    let mut results = Vec::new();
    for &macs in &opts.macs {
        let w = Workload {
            macs,
            vteps: opts.vteps,
            vnis: opts.vnis,
            vni_base: 100,
        };
        let t = Instant::now();
        let fabric = BenchFabric::build(w)?;
        if opts.verbose {
            eprintln!(
                "{macs} MACs: fabric with {} VNIs built in {:.1} s",
                w.vnis,
                t.elapsed().as_secs_f64()
            );
        }
        for run in 0..opts.runs {
            let mut order = vec![Target::Floor, Target::Evpnd, Target::Frr];
            if run % 2 == 1 {
                order = vec![Target::Floor, Target::Frr, Target::Evpnd];
            }
            for target in order.into_iter().filter(|t| want(*t)) {
                let res = match target {
                    Target::Floor => run_floor(&fabric, run, opts),
                    _ => run_daemon(&fabric, target, run, opts),
                };
                let res = res.unwrap_or_else(|e| {
                    let mut r = RunResult::new(target, macs, run);
                    r.error = Some(e.to_string());
                    r
                });
                if opts.verbose {
                    eprintln!("  {}", report::one_line(&res));
                }
                results.push(res);
            }
        }
    }
    Ok(Report {
        vteps: opts.vteps,
        vnis: opts.vnis,
        runs: opts.runs,
        machine: report::Machine::probe(),
        results,
    })
}

/// Address of the fake remote VTEP `i` (for tests).
pub fn remote_vtep(w: &Workload, i: u32) -> Ipv4Addr {
    w.vtep_ip(i)
}
