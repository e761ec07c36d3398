//! The benchmark at a small size as a correctness check (no timing
//! assertions): evpnd and FRR each get exactly the injected remote MACs and
//! flood entries into the kernel, and lose all of them when the injector
//! drops the session; the local-MAC latency probe sees the route.

use std::path::PathBuf;
use std::time::Duration;

use evpnd::bench::{self, BenchOptions, Target};
use evpnd::testbed;

#[test]
fn bench_small_is_exact_for_evpnd_and_frr() {
    if !testbed::can_run() {
        return;
    }
    assert!(
        testbed::frr::frr_installed(),
        "FRR is not installed: run .ci/run or apt-get install frr"
    );
    let opts = BenchOptions {
        macs: vec![2000],
        vteps: 5,
        vnis: 2,
        runs: 1,
        only: Vec::new(),
        latency_samples: 2,
        timeout: Duration::from_secs(30),
        evpnd_bin: PathBuf::from(env!("CARGO_BIN_EXE_evpnd")),
        verbose: true,
    };
    let rep = bench::run(&opts).expect("bench runs");
    eprintln!("{}", bench::report::table(&rep));
    for target in [Target::Floor, Target::Evpnd, Target::Frr] {
        let r = rep
            .results
            .iter()
            .find(|r| r.target == target)
            .unwrap_or_else(|| panic!("no result for {}", target.name()));
        assert_eq!(r.error, None, "{}: {r:?}", target.name());
        assert_eq!(r.installed, 2000, "{}: rows after install", target.name());
        assert_eq!(
            r.neighs_installed,
            1000,
            "{}: a neighbor entry per MAC+IP route",
            target.name()
        );
        assert!(r.install_s.is_some(), "{}: install finished", target.name());
        assert_eq!(
            r.flood_entries,
            5,
            "{}: one flood entry per remote VTEP",
            target.name()
        );
        assert!(
            r.withdraw_s.is_some(),
            "{}: withdraw finished",
            target.name()
        );
        assert_eq!(r.remaining, 0, "{}: rows after the drop", target.name());
        assert_eq!(
            r.neighs_remaining,
            0,
            "{}: neighbors after the drop",
            target.name()
        );
        assert!(r.complete(), "{}", target.name());
        if target != Target::Floor {
            assert_eq!(r.latency_ms.len(), 2, "{}: latency samples", target.name());
            assert!(r.peak_rss_kib > 0, "{}: peak RSS read", target.name());
        }
    }
}
