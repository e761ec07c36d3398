//! Configuration reload (SIGHUP) of a running evpnd: a neighbor and a VNI
//! come and go without disturbing the session and the kernel entries that
//! stay; an invalid file is rejected and changes nothing.
//!
//! Fabric: evpnd host h1 (10.255.0.2) and FRR VTEP h2 (10.255.0.3) behind
//! the FRR route reflector on the spine (10.255.0.1); a second FRR route
//! reflector `rr2` (10.255.0.200) hangs off the spine and is only added to
//! evpnd's configuration by the reload.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use evpnd::testbed::{
    self, bridge_fdb, frr, links, wait_for, wait_until, EvpndConfig, FabricBuilder, Frr, HostKind,
    NsHandle, Poll, RrKind, VniConfig,
};
use serde_json::Value;

mod ops_common;
use ops_common::RR2;

const EVPND: &str = env!("CARGO_BIN_EXE_evpnd");
const METRICS: &str = "127.0.0.1:9179";
const T: Duration = Duration::from_secs(45);
const SPINE: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 1);
const H1: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 2);
const H2: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 3);

/// FRR's view of the session with h1: (connections established, up ms).
fn frr_session(rr: &Frr) -> (u64, u64) {
    let v = rr
        .vtysh_json(&format!("show bgp neighbors {H1} json"))
        .unwrap();
    let n = &v[H1.to_string()];
    assert_eq!(n["bgpState"], "Established", "{n}");
    (
        n["connectionsEstablished"].as_u64().unwrap_or(0),
        n["bgpTimerUpMsec"].as_u64().unwrap_or(0),
    )
}

/// evpnctl's uptime of the session with `peer`.
fn evpnctl_uptime(e: &testbed::Evpnd, peer: Ipv4Addr) -> u64 {
    let out = e.evpnctl_ok(&["show", "neighbors", "--json"]).unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    let n = v
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["address"] == peer.to_string())
        .unwrap_or_else(|| panic!("{peer} not in {out}"))
        .clone();
    assert_eq!(n["state"], "established", "{n}");
    n["uptime_secs"].as_u64().unwrap()
}

fn ifindex(ns: &NsHandle, dev: &str) -> Option<u64> {
    let o = ns
        .run_unchecked(&["ip", "-j", "link", "show", "dev", dev])
        .ok()?;
    if !o.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&o.stdout).ok()?;
    v.get(0)?.get("ifindex")?.as_u64()
}

/// `bridge fdb` rows of `dev` that point at a remote VTEP: (mac, dst).
fn dst_rows(ns: &NsHandle, dev: &str) -> BTreeSet<(String, String)> {
    bridge_fdb(ns)
        .unwrap()
        .into_iter()
        .filter(|r| r.ifname == dev)
        .filter_map(|r| Some((r.mac.clone(), r.dst.clone()?)))
        .collect()
}

/// Paths of type-3 routes at `rr` originated by h1 carrying RT x:`vni`.
fn t3_for_vni(rr: &Frr, vni: u32) -> usize {
    rr.evpn_routes()
        .unwrap()
        .into_iter()
        .filter(|r| r.route_type == 3 && r.prefix.contains(&H1.to_string()))
        .flat_map(|r| r.paths)
        .filter(|p| {
            p.to_string().contains(&format!(":{vni} "))
                || p.to_string().contains(&format!(":{vni}\""))
        })
        .count()
}

fn write_config(e: &testbed::Evpnd, text: &str) {
    // Write then rename: the daemon never reads a half-written file.
    let p = e.config_path();
    let tmp = p.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, p).unwrap();
}

fn config(ns: &str, neighbors: &[Ipv4Addr], vnis: &[u32]) -> String {
    let mut c = EvpndConfig::new(65000, H1, ns).hold_time(9);
    for n in neighbors {
        c = c.neighbor(*n);
    }
    for v in vnis {
        // VNI 300's devices are the operator's (create = false).
        c = if *v == 300 {
            c.vni_config(VniConfig {
                create: false,
                ..VniConfig::new(300)
            })
        } else {
            c.vni(*v)
        };
    }
    // Metrics (a restart-only key) stay the same in every version.
    format!("{}metrics = \"{METRICS}\"\n", c.render())
}

/// `evpnd_config_reloads_total{result}` scraped inside `ns`.
fn reloads(ns: &NsHandle, result: &str) -> Option<u64> {
    let (status, body) = ops_common::http_get(ns.name(), METRICS, "/metrics").ok()?;
    if status != 200 {
        return None;
    }
    let want = format!("result=\"{result}\"");
    body.lines()
        .find(|l| l.starts_with("evpnd_config_reloads_total{") && l.contains(&want))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn log_text(e: &testbed::Evpnd) -> String {
    std::fs::read_to_string(e.log()).unwrap_or_default()
}

#[test]
fn reload_adds_and_removes_neighbor_and_vni() {
    if !testbed::can_run() {
        return;
    }
    assert!(frr::frr_installed(), "FRR is not installed");
    let mut fabric = FabricBuilder::new("opsrl")
        .host(HostKind::Evpnd)
        .host(HostKind::FrrVtep)
        .rr(RrKind::Frr)
        .vnis(&[100])
        .evpnd_binary(EVPND)
        .build()
        .unwrap();

    // Second route reflector, reachable from h1 through the spine.
    let rr2 = ops_common::start_rr2(&fabric, "opsrl", false);
    let rr2 = &rr2.frr;

    // With the metrics endpoint (restart-only), to count reloads.
    {
        let h1 = &mut fabric.hosts[0];
        let ns = h1.ns.name().to_string();
        let e = h1.evpnd.as_mut().unwrap();
        std::fs::write(e.config_path(), config(&ns, &[SPINE], &[100])).unwrap();
        e.restart().unwrap();
        e.wait_ready(T).unwrap();
    }
    fabric.wait_sessions(T).unwrap();
    let h1 = &fabric.hosts[0];
    let e = h1.evpnd.as_ref().unwrap();
    let ns = h1.ns.handle();
    let rr1 = fabric.rr_frr.as_ref().unwrap();
    let vm1 = fabric.vms_of(0, 100).next().unwrap();
    let vm2 = fabric.vms_of(1, 100).next().unwrap();

    // Remote state in VNI 100: h2's VM MAC and its flood entry on vxlan100.
    fabric.wait_ping(vm1, vm2, T).unwrap();
    wait_until(T, "h2's VM MAC and VTEP on vxlan100", || {
        let rows = dst_rows(&ns, "vxlan100");
        Ok(rows.contains(&(vm2.mac.clone(), H2.to_string()))
            && rows.contains(&("00:00:00:00:00:00".into(), H2.to_string())))
    })
    .unwrap();
    let rows_before = dst_rows(&ns, "vxlan100");
    let vx100 = ifindex(&ns, "vxlan100").unwrap();
    let (conns, up_ms) = frr_session(rr1);
    let up_ctl = evpnctl_uptime(e, SPINE);
    assert!(ifindex(&ns, "vxlan200").is_none());

    // --- Reload 1: add rr2 and VNI 200.
    // VNI 300 on devices the operator made: evpnd uses but must not own them.
    links::vtep_vni(&ns, 300, "br300", H1).unwrap();
    let (br300, vx300) = (ifindex(&ns, "br300"), ifindex(&ns, "vxlan300"));
    write_config(e, &config(ns.name(), &[SPINE, RR2], &[100, 200, 300]));
    e.signal(libc::SIGHUP);
    e.wait_established(&[SPINE, RR2], T).unwrap();
    rr2.wait_established(H1, T).unwrap();
    wait_until(T, "br200 and vxlan200 created", || {
        Ok(ifindex(&ns, "br200").is_some() && ifindex(&ns, "vxlan200").is_some())
    })
    .unwrap();
    let master = ns
        .run(&["ip", "-j", "link", "show", "dev", "vxlan200"])
        .unwrap();
    let v: Value = serde_json::from_slice(&master.stdout).unwrap();
    assert_eq!(v[0]["master"], "br200", "{v}");
    wait_for(T, "VNI 200 type-3 of h1 at both RRs", || {
        let (a, b) = (t3_for_vni(rr1, 200), t3_for_vni(rr2, 200));
        Ok(if a > 0 && b > 0 {
            Poll::Ready(())
        } else {
            Poll::NotYet(format!("rr1 {a}, rr2 {b}"))
        })
    })
    .unwrap();
    // The old session was not touched.
    let (conns1, up_ms1) = frr_session(rr1);
    assert_eq!(conns1, conns, "session with rr1 was reset by the reload");
    assert!(up_ms1 >= up_ms, "rr1 uptime went back: {up_ms} -> {up_ms1}");
    assert!(evpnctl_uptime(e, SPINE) >= up_ctl);
    // VNI 100's kernel state untouched.
    assert_eq!(ifindex(&ns, "vxlan100"), Some(vx100), "vxlan100 recreated");
    let rows = dst_rows(&ns, "vxlan100");
    assert!(
        rows_before.is_subset(&rows),
        "vxlan100 lost entries: before {rows_before:?} after {rows:?}"
    );
    assert!(t3_for_vni(rr1, 100) > 0);

    assert_eq!(reloads(&ns, "ok"), Some(1));

    // --- An invalid file: rejected with file:line and key; nothing changes.
    wait_for(T, "VNI 300 type-3 of h1 at rr1", || {
        let n = t3_for_vni(rr1, 300);
        Ok(if n > 0 {
            Poll::Ready(())
        } else {
            Poll::NotYet(format!("{n} paths"))
        })
    })
    .unwrap();
    let good = config(ns.name(), &[SPINE, RR2], &[100, 200, 300]);
    let bad = good.replacen("hold_time = 9", "hold_time = 9\nhold_tme = 3", 1);
    let bad_line = bad.lines().position(|l| l.starts_with("hold_tme")).unwrap() + 1;
    write_config(e, &bad);
    e.signal(libc::SIGHUP);
    let want = format!("{}:{bad_line}:", e.config_path().display());
    wait_until(T, "reload rejection in the log", || {
        let log = log_text(e);
        Ok(log.contains("reload rejected")
            && log
                .lines()
                .any(|l| l.contains(&want) && l.contains("`bgp.hold_tme`")))
    })
    .unwrap();
    // The rejection is logged at the end of the reload: state is final.
    e.wait_established(&[SPINE, RR2], Duration::from_secs(1))
        .unwrap();
    assert_eq!(frr_session(rr1).0, conns, "rr1 session reset by bad reload");
    assert_eq!(ifindex(&ns, "vxlan100"), Some(vx100));
    assert!(ifindex(&ns, "vxlan200").is_some());
    assert!(rows_before.is_subset(&dst_rows(&ns, "vxlan100")));
    rr2.wait_established(H1, Duration::from_secs(1)).unwrap();
    assert_eq!(reloads(&ns, "error"), Some(1));
    assert_eq!(reloads(&ns, "ok"), Some(1));

    // --- Reload 2: back to rr1 and VNI 100 only.
    let rr2_log_before = rr2_log(rr2);
    write_config(e, &config(ns.name(), &[SPINE], &[100]));
    e.signal(libc::SIGHUP);
    wait_for(T, "rr2 gone from evpnd and its session down at rr2", || {
        let ns_list = e.neighbors()?;
        let listed = ns_list.iter().any(|n| n.address == RR2.to_string());
        let st = rr2.bgp_neighbor_state(H1)?;
        Ok(if !listed && st.as_deref() != Some("Established") {
            Poll::Ready(())
        } else {
            Poll::NotYet(format!("evpnd {ns_list:?}, rr2 says {st:?}"))
        })
    })
    .unwrap();
    wait_until(T, "rr2 logs a Cease from h1", || {
        let log = rr2_log(rr2);
        let new = log.get(rr2_log_before.len()..).unwrap_or("");
        Ok(new.contains("Cease"))
    })
    .unwrap();
    wait_for(T, "VNI 200 type-3 withdrawn at rr1", || {
        let n = t3_for_vni(rr1, 200);
        Ok(if n == 0 {
            Poll::Ready(())
        } else {
            Poll::NotYet(format!("{n} paths"))
        })
    })
    .unwrap();
    wait_until(T, "br200 and vxlan200 deleted", || {
        Ok(ifindex(&ns, "br200").is_none() && ifindex(&ns, "vxlan200").is_none())
    })
    .unwrap();
    wait_until(T, "VNI 300 type-3 withdrawn at rr1", || {
        Ok(t3_for_vni(rr1, 300) == 0)
    })
    .unwrap();
    assert_eq!(
        (ifindex(&ns, "br300"), ifindex(&ns, "vxlan300")),
        (br300, vx300),
        "devices evpnd did not create were deleted or recreated"
    );
    let (conns2, up_ms2) = frr_session(rr1);
    assert_eq!(conns2, conns, "session with rr1 reset by the removal");
    assert!(up_ms2 >= up_ms1);
    assert!(evpnctl_uptime(e, SPINE) >= up_ctl);
    assert_eq!(ifindex(&ns, "vxlan100"), Some(vx100));
    assert!(rows_before.is_subset(&dst_rows(&ns, "vxlan100")));
    assert!(t3_for_vni(rr1, 100) > 0, "VNI 100 type-3 lost");
    assert_eq!(reloads(&ns, "ok"), Some(2));
}

fn rr2_log(rr2: &Frr) -> String {
    rr2.logs()
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect()
}
