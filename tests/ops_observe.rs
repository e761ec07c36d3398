//! What operators look at matches reality: `evpnctl --json` against the
//! kernel and FRR, the metrics endpoint against the kernel and the RIB,
//! JSON logs with structured fields.
//!
//! Fabric: evpnd host h1 (10.255.0.2) and FRR VTEP h2 (10.255.0.3), two
//! VMs each in VNI 100, FRR route reflector on the spine (10.255.0.1) and
//! a second one (10.255.0.200) that is a client of the first: evpnd gets
//! every remote route twice, one path per RR.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use evpnd::testbed::{
    self, bridge_fdb, frr, wait_for, EvpndConfig, FabricBuilder, HostKind, NsHandle, Poll, RrKind,
};
use serde_json::Value;

mod ops_common;
use ops_common::RR2;

const EVPND: &str = env!("CARGO_BIN_EXE_evpnd");
const T: Duration = Duration::from_secs(45);
const SPINE: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 1);
const H1: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 2);
const H2: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 3);
const METRICS: &str = "127.0.0.1:9179";

fn json(e: &testbed::Evpnd, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let out = e.evpnctl_ok(&a).unwrap();
    serde_json::from_str(&out).unwrap_or_else(|err| panic!("evpnctl {args:?}: {err}: {out}"))
}

/// (mac, dst) of the rows of vxlan100 pointing at a remote VTEP, split into
/// MAC rows and flood rows.
fn kernel_rows(ns: &NsHandle) -> (BTreeSet<(String, String)>, BTreeSet<String>) {
    let mut macs = BTreeSet::new();
    let mut flood = BTreeSet::new();
    for r in bridge_fdb(ns).unwrap() {
        if r.ifname != "vxlan100" {
            continue;
        }
        let Some(dst) = r.dst.clone() else { continue };
        if r.mac == "00:00:00:00:00:00" {
            flood.insert(dst);
        } else {
            macs.insert((r.mac.clone(), dst));
        }
    }
    (macs, flood)
}

/// Kernel neighbor entries evpnd installed for ARP suppression on br100.
fn kernel_neighbors(ns: &NsHandle) -> usize {
    let o = ns
        .run(&["ip", "-j", "neigh", "show", "dev", "br100"])
        .unwrap();
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Array(vec![]));
    v.as_array()
        .map(|a| {
            a.iter()
                .filter(|n| {
                    n["state"]
                        .as_array()
                        .is_some_and(|s| s.iter().any(|x| x == "NOARP"))
                })
                .count()
        })
        .unwrap_or(0)
}

/// Value of the sample `name{labels...}` whose labels include all of
/// `want` (`k="v"` strings).
fn sample(text: &str, name: &str, want: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .find(|l| want.iter().all(|w| l.contains(w)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn scrape(ns: &NsHandle) -> String {
    let (status, body) = ops_common::http_get(ns.name(), METRICS, "/metrics").unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

#[test]
fn evpnctl_metrics_and_logs_match_reality() {
    if !testbed::can_run() {
        return;
    }
    assert!(frr::frr_installed(), "FRR is not installed");
    let mut fabric = FabricBuilder::new("opsob")
        .host(HostKind::Evpnd)
        .host(HostKind::FrrVtep)
        .rr(RrKind::Frr)
        .vnis(&[100])
        .vms_per_host(2)
        .evpnd_binary(EVPND)
        .build()
        .unwrap();
    let rr2 = ops_common::start_rr2(&fabric, "opsob", true);
    let rr2 = &rr2.frr;
    // Metrics endpoint and JSON logs: restart-only keys, so restart. The
    // log file is appended to: remember where the new run starts.
    let log_start = {
        let h1 = &mut fabric.hosts[0];
        let ns = h1.ns.name().to_string();
        let e = h1.evpnd.as_mut().unwrap();
        let cfg = EvpndConfig::new(65000, H1, &ns)
            .neighbor(SPINE)
            .neighbor(RR2)
            .hold_time(9)
            .vni(100)
            .render();
        let cfg = format!("{cfg}metrics = \"{METRICS}\"\n\n[log]\nformat = \"json\"\n");
        std::fs::write(e.config_path(), cfg).unwrap();
        e.stop().unwrap();
        let start = std::fs::metadata(e.log()).map(|m| m.len()).unwrap_or(0) as usize;
        e.restart().unwrap();
        e.wait_ready(T).unwrap();
        start
    };
    fabric.wait_sessions(T).unwrap();
    let h1 = &fabric.hosts[0];
    let e = h1.evpnd.as_ref().unwrap();
    e.wait_established(&[SPINE, RR2], T).unwrap();
    rr2.wait_established(H1, T).unwrap();
    let ns = h1.ns.handle();
    let rr = fabric.rr_frr.as_ref().unwrap();
    for a in fabric.vms_of(0, 100) {
        for b in fabric.vms_of(1, 100) {
            fabric.wait_ping(a, b, T).unwrap();
        }
    }
    let remote: BTreeSet<(String, String)> = fabric
        .vms_of(1, 100)
        .map(|v| (v.mac.clone(), H2.to_string()))
        .collect();
    wait_for(T, "h2's VM MACs on vxlan100", || {
        let (m, f) = kernel_rows(&ns);
        Ok(if remote.is_subset(&m) && f.contains(&H2.to_string()) {
            Poll::Ready(())
        } else {
            Poll::NotYet(format!("{m:?} {f:?}"))
        })
    })
    .unwrap();
    let (kmacs, kflood) = kernel_rows(&ns);
    wait_for(T, "two paths (one per RR) for each of h2's routes", || {
        let r = json(e, &["show", "routes", "--vni", "100"]);
        let remote = r
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["local"] == false)
            .count();
        let want = 2 * (kmacs.len() + 1);
        Ok(if remote >= want {
            Poll::Ready(())
        } else {
            Poll::NotYet(format!("{remote} remote paths, want {want}"))
        })
    })
    .unwrap();
    // `--neighbor` keeps one RR's paths: each of them, and half of the lot.
    for rr in [SPINE, RR2] {
        let all = json(e, &["show", "routes", "--vni", "100"]);
        let mine = json(
            e,
            &[
                "show",
                "routes",
                "--vni",
                "100",
                "--neighbor",
                &rr.to_string(),
            ],
        );
        let mine = mine.as_array().unwrap();
        assert!(mine.iter().all(|r| r["peer"] == rr.to_string()), "{mine:?}");
        let remote = all
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["local"] == false)
            .count();
        assert_eq!(mine.len() * 2, remote, "{rr}: {mine:?}");
    }

    // --- evpnctl --json against the kernel and FRR.
    let macs = json(e, &["show", "macs", "--vni", "100"]);
    let ctl_remote: BTreeSet<(String, String)> = macs
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["type"] == "remote")
        .map(|m| {
            (
                m["mac"].as_str().unwrap().to_string(),
                m["vtep"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        ctl_remote, kmacs,
        "evpnctl remote MACs vs bridge fdb dst rows"
    );
    let ctl_local: BTreeSet<String> = macs
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["type"] == "local")
        .map(|m| m["mac"].as_str().unwrap().to_string())
        .collect();
    for v in fabric.vms_of(0, 100) {
        assert!(ctl_local.contains(&v.mac), "local {} not in {macs}", v.mac);
    }

    let vteps = json(e, &["show", "vteps"]);
    let ctl_vteps: BTreeSet<String> = vteps
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["vni"] == 100)
        .map(|v| v["vtep"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ctl_vteps, kflood, "evpnctl VTEPs vs flood rows");

    let vnis = json(e, &["show", "vnis"]);
    let v100 = vnis
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["vni"] == 100)
        .unwrap_or_else(|| panic!("{vnis}"));
    assert_eq!(v100["bridge"], "br100");
    assert_eq!(v100["vxlan"], "vxlan100");
    assert_eq!(v100["state"], "up", "{v100}");
    assert_eq!(
        v100["remote_macs"].as_u64(),
        Some(kmacs.len() as u64),
        "{v100}"
    );
    let vni_vteps: BTreeSet<String> = v100["vteps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    assert_eq!(vni_vteps, kflood);

    let routes = json(e, &["show", "routes", "--vni", "100"]);
    let routes = routes.as_array().unwrap();
    for (mac, _) in &kmacs {
        assert!(
            routes
                .iter()
                .any(|r| r["route_type"] == 2 && r["mac"] == mac.as_str() && r["best"] == true),
            "no best type-2 route for {mac}"
        );
    }
    assert!(routes
        .iter()
        .any(|r| r["route_type"] == 3 && r["originator_ip"] == H2.to_string()));
    assert!(routes
        .iter()
        .any(|r| r["route_type"] == 3 && r["local"] == true));

    // Neighbor states: evpnctl and each RR's vtysh agree.
    let neigh = json(e, &["show", "neighbors"]);
    let neigh = neigh.as_array().unwrap();
    assert_eq!(neigh.len(), 2, "{neigh:?}");
    for (addr, rr) in [(SPINE, rr), (RR2, rr2)] {
        let n = neigh
            .iter()
            .find(|n| n["address"] == addr.to_string())
            .unwrap_or_else(|| panic!("{addr} not in {neigh:?}"));
        let frr_state = rr.bgp_neighbor_state(H1).unwrap();
        assert_eq!(frr_state.as_deref(), Some("Established"), "{addr}");
        assert_eq!(n["state"], "established", "{n}");
    }

    // --- Metrics against the kernel and the RIB (refreshed every 5 s).
    let received = |t: u8| {
        routes
            .iter()
            .filter(|r| r["route_type"] == t && r["local"] == false)
            .count() as f64
    };
    let best = |t: u8| {
        routes
            .iter()
            .filter(|r| r["route_type"] == t && r["local"] == false && r["best"] == true)
            .count() as f64
    };
    let (want_t2, want_t3) = (received(2), received(3));
    let (best_t2, best_t3) = (best(2), best(3));
    assert_eq!((want_t2, want_t3), (2.0 * best_t2, 2.0 * best_t3));
    let want_neigh = kernel_neighbors(&ns) as f64;
    wait_for(T, "metrics to match the kernel", || {
        let m = scrape(&ns);
        let peer = format!("peer=\"{SPINE}\"");
        let peer2 = format!("peer=\"{RR2}\"");
        let got = [
            sample(
                &m,
                "evpnd_bgp_session_state",
                &[&peer, "state=\"Established\""],
            ),
            sample(&m, "evpnd_bgp_session_state", &[&peer, "state=\"Idle\""]),
            sample(&m, "evpnd_kernel_entries", &["kind=\"remote_mac\""]),
            sample(&m, "evpnd_kernel_entries", &["kind=\"flood\""]),
            sample(&m, "evpnd_kernel_entries", &["kind=\"neighbor\""]),
            sample(
                &m,
                "evpnd_evpn_routes_received",
                &["route_type=\"2\"", "vni=\"100\""],
            ),
            sample(
                &m,
                "evpnd_evpn_routes_received",
                &["route_type=\"3\"", "vni=\"100\""],
            ),
            sample(
                &m,
                "evpnd_evpn_routes_best",
                &["route_type=\"2\"", "vni=\"100\""],
            ),
            sample(
                &m,
                "evpnd_evpn_routes_best",
                &["route_type=\"3\"", "vni=\"100\""],
            ),
            sample(
                &m,
                "evpnd_bgp_session_state",
                &[&peer2, "state=\"Established\""],
            ),
        ];
        let want = [
            Some(1.0),
            Some(0.0),
            Some(kmacs.len() as f64),
            Some(kflood.len() as f64),
            Some(want_neigh),
            Some(want_t2),
            Some(want_t3),
            Some(best_t2),
            Some(best_t3),
            Some(1.0),
        ];
        Ok(if got == want {
            Poll::Ready(())
        } else {
            Poll::NotYet(format!("got {got:?} want {want:?}"))
        })
    })
    .unwrap();
    let m = scrape(&ns);
    // Every write the kernel acked: no netlink errors, no warnings.
    assert_eq!(
        sample(&m, "evpnd_netlink_errors_total", &[]),
        Some(0.0),
        "{m}"
    );
    for series in [
        "evpnd_bgp_updates_received_total",
        "evpnd_bgp_updates_sent_total",
        "evpnd_netlink_errors_total",
        "evpnd_netlink_resyncs_total",
        "evpnd_dataplane_apply_seconds_bucket",
        "evpnd_dataplane_apply_seconds_count",
    ] {
        assert!(
            m.lines().any(|l| l.starts_with(series)),
            "{series} missing:\n{m}"
        );
    }
    let (status, _) = ops_common::http_get(ns.name(), METRICS, "/nope").unwrap();
    assert_eq!(status, 404);

    // --- JSON logs: every line an object; peer and vni as fields.
    let log = std::fs::read(e.log()).unwrap();
    let log = String::from_utf8_lossy(log.get(log_start..).unwrap_or_default());
    let mut objs = Vec::new();
    for l in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value =
            serde_json::from_str(l).unwrap_or_else(|err| panic!("not JSON ({err}): {l}"));
        assert!(v["timestamp"].is_string() && v["level"].is_string(), "{l}");
        assert!(
            !l.contains("netlink write failed"),
            "a write failed in a healthy fabric: {l}"
        );
        objs.push(v);
    }
    assert!(
        objs.iter()
            .any(|v| v["fields"]["peer"] == SPINE.to_string()),
        "no line with fields.peer = {SPINE}"
    );
    assert!(
        objs.iter().any(|v| {
            let x = &v["fields"]["vni"];
            x == 100 || x == "100"
        }),
        "no line with fields.vni = 100"
    );
}
