//! Medians, ratios and the printed table.

use std::fmt::Write as _;

use serde::Serialize;

use super::{Report, RunResult, Target};

/// The machine the bench ran on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub mem_total_kib: u64,
    pub kernel: String,
    pub frr: String,
}

impl Machine {
    pub fn probe() -> Machine {
        let mem_total_kib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.split_whitespace().next())
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0);
        Machine {
            nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
            mem_total_kib,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            frr: crate::testbed::frr::frr_version(),
        }
    }
}

/// Median of the values (mean of the middle two for an even count).
pub fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Medians of one target at one size over its runs.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub target: Target,
    pub macs: u32,
    pub runs: usize,
    pub complete: usize,
    pub install_s: Option<f64>,
    pub withdraw_s: Option<f64>,
    pub user_s: Option<f64>,
    pub sys_s: Option<f64>,
    pub peak_rss_mib: Option<f64>,
    pub latency_ms: Option<f64>,
    /// Floor only: the FDB rows alone (without the neighbor entries).
    pub install_fdb_s: Option<f64>,
    pub withdraw_fdb_s: Option<f64>,
    /// Worst row count of an incomplete run.
    pub worst_installed: usize,
    /// Runs whose local-MAC latency probe saw no route.
    pub latency_misses: usize,
}

pub fn summarize(results: &[RunResult]) -> Vec<Summary> {
    let mut keys: Vec<(u32, Target)> = Vec::new();
    for r in results {
        if !keys.contains(&(r.macs, r.target)) {
            keys.push((r.macs, r.target));
        }
    }
    keys.iter()
        .map(|&(macs, target)| {
            let rs: Vec<&RunResult> = results
                .iter()
                .filter(|r| r.macs == macs && r.target == target)
                .collect();
            let m = |f: &dyn Fn(&RunResult) -> Option<f64>| {
                median(rs.iter().filter_map(|r| f(r)).collect())
            };
            Summary {
                target,
                macs,
                runs: rs.len(),
                complete: rs.iter().filter(|r| r.complete()).count(),
                install_s: m(&|r| r.install_s),
                withdraw_s: m(&|r| r.withdraw_s),
                install_fdb_s: m(&|r| r.install_fdb_s),
                withdraw_fdb_s: m(&|r| r.withdraw_fdb_s),
                user_s: m(&|r| r.install_s.map(|_| r.install_cpu.0 + r.withdraw_cpu.0)),
                sys_s: m(&|r| r.install_s.map(|_| r.install_cpu.1 + r.withdraw_cpu.1)),
                peak_rss_mib: m(&|r| (r.peak_rss_kib > 0).then(|| r.peak_rss_kib as f64 / 1024.0)),
                latency_ms: median(
                    rs.iter()
                        .flat_map(|r| r.latency_ms.iter().copied())
                        .collect(),
                ),
                worst_installed: rs.iter().map(|r| r.installed).min().unwrap_or(0),
                latency_misses: rs.iter().filter(|r| r.latency_error.is_some()).count(),
            }
        })
        .collect()
}

fn opt(v: Option<f64>, prec: usize) -> String {
    v.map_or("-".into(), |x| format!("{x:.prec$}"))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "-".into(),
    }
}

/// One progress line for a run.
pub fn one_line(r: &RunResult) -> String {
    format!(
        "{:<5} run {} {} MACs: install {} s ({} rows, {} neighbors), withdraw {} s ({} left, {} neighbors), cpu user {:.2}+{:.2} s sys {:.2}+{:.2} s, peak RSS {} MiB, flood {}, latency {} ms, load {:.2}{}",
        r.target.name(),
        r.run,
        r.macs,
        opt(r.install_s, 3),
        r.installed,
        r.neighs_installed,
        opt(r.withdraw_s, 3),
        r.remaining,
        r.neighs_remaining,
        r.install_cpu.0,
        r.withdraw_cpu.0,
        r.install_cpu.1,
        r.withdraw_cpu.1,
        r.peak_rss_kib / 1024,
        r.flood_entries,
        opt(median(r.latency_ms.clone()), 1),
        r.load,
        r.error.as_ref().map_or(String::new(), |e| format!(", ERROR: {e}")),
    ) + &r
        .latency_error
        .as_ref()
        .map_or(String::new(), |e| format!(", LATENCY PROBE: {e}"))
}

/// The table of medians and ratios.
pub fn table(rep: &Report) -> String {
    let sums = summarize(&rep.results);
    let mut o = String::new();
    let m = &rep.machine;
    let _ = writeln!(
        o,
        "machine: {} CPUs, {:.1} GiB, kernel {}, {}",
        m.nproc,
        m.mem_total_kib as f64 / 1048576.0,
        m.kernel,
        m.frr
    );
    let _ = writeln!(
        o,
        "fabric: {} remote VTEPs (type-3), {} VNIs, {} run(s); medians; CPU = install + withdraw\n",
        rep.vteps, rep.vnis, rep.runs
    );
    let _ = writeln!(
        o,
        "| MACs | target | complete | install s | withdraw s | user CPU s | sys CPU s | peak RSS MiB | local MAC latency ms (runs missing a route) |"
    );
    let _ = writeln!(o, "|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for s in &sums {
        let complete = if s.complete == s.runs {
            format!("{}/{}", s.complete, s.runs)
        } else {
            format!("{}/{} (min {} rows)", s.complete, s.runs, s.worst_installed)
        };
        let floor = s.target == Target::Floor;
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            s.macs,
            s.target.name(),
            complete,
            opt(s.install_s, 3),
            opt(s.withdraw_s, 3),
            opt(s.user_s, 2),
            opt(s.sys_s, 2),
            if floor {
                "-".into()
            } else {
                opt(s.peak_rss_mib, 1)
            },
            if floor {
                "-".into()
            } else {
                format!("{} ({})", opt(s.latency_ms, 1), s.latency_misses)
            },
        );
        if floor && s.install_fdb_s.is_some() {
            let _ = writeln!(
                o,
                "| {} | floor, FDB rows only | - | {} | {} | - | - | - | - |",
                s.macs,
                opt(s.install_fdb_s, 3),
                opt(s.withdraw_fdb_s, 3),
            );
        }
    }
    let _ = writeln!(
        o,
        "\n| MACs | install evpnd/FRR | install evpnd/floor | install evpnd/FDB-only floor | withdraw evpnd/FRR | withdraw evpnd/floor | user CPU evpnd/FRR | RSS evpnd/FRR |"
    );
    let _ = writeln!(o, "|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut sizes: Vec<u32> = sums.iter().map(|s| s.macs).collect();
    sizes.dedup();
    for macs in sizes {
        let get = |t: Target| sums.iter().find(|s| s.macs == macs && s.target == t);
        let (e, f, fl) = (get(Target::Evpnd), get(Target::Frr), get(Target::Floor));
        let g = |s: Option<&Summary>, k: fn(&Summary) -> Option<f64>| s.and_then(k);
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            macs,
            ratio(g(e, |s| s.install_s), g(f, |s| s.install_s)),
            ratio(g(e, |s| s.install_s), g(fl, |s| s.install_s)),
            ratio(g(e, |s| s.install_s), g(fl, |s| s.install_fdb_s)),
            ratio(g(e, |s| s.withdraw_s), g(f, |s| s.withdraw_s)),
            ratio(g(e, |s| s.withdraw_s), g(fl, |s| s.withdraw_s)),
            ratio(g(e, |s| s.user_s), g(f, |s| s.user_s)),
            ratio(g(e, |s| s.peak_rss_mib), g(f, |s| s.peak_rss_mib)),
        );
    }
    o
}
