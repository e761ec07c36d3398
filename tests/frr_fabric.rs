//! Validates the test bed itself with reference implementations only:
//! FRR VTEPs behind an FRR or a GoBGP route reflector. The evpnd
//! integration tests mirror these with evpnd hosts.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;

use evpnd::testbed::{
    self, brforward_count, bridge_fdb, cleanup_prefix, frr, gobgp, list_namespaces, Fabric,
    FabricBuilder, HostKind, RrKind, Tcpdump,
};

const TIMEOUT: Duration = Duration::from_secs(60);

fn reference_tools_present() -> bool {
    if !testbed::can_run() {
        return false;
    }
    assert!(
        frr::frr_installed(),
        "FRR is not installed: run .ci/run or apt-get install frr"
    );
    true
}

/// Drop the fabric and check nothing of it is left: no namespace, no process.
fn teardown_leaves_nothing(fabric: Fabric) {
    let names = fabric.namespace_names();
    let pids = fabric.pids();
    assert!(
        !pids.is_empty(),
        "daemons should be running before teardown"
    );
    drop(fabric);
    let left: HashSet<String> = list_namespaces().unwrap().into_iter().collect();
    let leaked: Vec<&String> = names.iter().filter(|n| left.contains(*n)).collect();
    assert!(leaked.is_empty(), "namespaces left after drop: {leaked:?}");
    let alive: Vec<u32> = pids
        .iter()
        .copied()
        .filter(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
        .collect();
    assert!(alive.is_empty(), "processes left after drop: {alive:?}");
    for n in &names {
        assert!(
            !std::path::Path::new(&format!("/var/run/frr/{n}")).exists(),
            "FRR socket dir of {n} left"
        );
    }
}

/// Type-3 routes, flood entries and pings in a two-VTEP fabric.
fn check_fabric(fabric: &Fabric) {
    fabric.wait_sessions(TIMEOUT).unwrap();
    let vteps: Vec<String> = fabric.hosts.iter().map(|h| h.vtep_ip.to_string()).collect();

    // Each VTEP imports the other's type-3 route and installs a flood entry.
    for (i, host) in fabric.hosts.iter().enumerate() {
        let other = &vteps[1 - i];
        testbed::wait_until(
            TIMEOUT,
            &format!("flood entry to {other} on {}", host.ns.name()),
            || {
                Ok(bridge_fdb(&host.ns)?
                    .iter()
                    .any(|r| r.is_flood_entry() && r.dst.as_deref() == Some(other.as_str())))
            },
        )
        .unwrap();
        let frr = host.frr.as_ref().unwrap();
        let t3: Vec<String> = frr
            .evpn_routes()
            .unwrap()
            .into_iter()
            .filter(|r| r.route_type == 3)
            .flat_map(|r| r.nexthops())
            .collect();
        assert!(
            t3.contains(other),
            "{} type-3 next hops {t3:?}",
            host.ns.name()
        );
    }

    let vm0 = fabric.vms_of(0, 100).next().unwrap();
    let vm1 = fabric.vms_of(1, 100).next().unwrap();
    fabric.wait_ping(vm0, vm1, TIMEOUT).unwrap();
    for r in fabric.ping_all(3).unwrap() {
        assert!(r.result.ok(), "{} -> {}: {:?}", r.from, r.to, r.result);
    }

    // Real packets: the pings cross the underlay VXLAN-encapsulated.
    let cap = Tcpdump::start(&fabric.hosts[0].ns, "uplink", "udp dst port 4789").unwrap();
    let r = testbed::ping(&vm0.ns, IpAddr::V4(vm1.ip), 3).unwrap();
    assert!(r.ok(), "{r:?}");
    cap.wait_packets(6, TIMEOUT).unwrap();
    let packets = cap.stop().unwrap();
    assert!(
        packets >= 6,
        "expected >= 6 VXLAN packets on h1 uplink, got {packets}"
    );

    // The VM resolved its peer by ARP over the overlay.
    let neigh = testbed::neighbors(&vm0.ns).unwrap();
    assert!(
        neigh
            .iter()
            .any(|n| n.dst == vm1.ip.to_string() && n.lladdr.as_deref() == Some(&vm1.mac)),
        "{neigh:?}"
    );

    // After traffic, each VTEP has the remote VM's MAC as a type-2 route
    // and an extern_learn FDB entry pointing at the remote VTEP.
    for (i, host) in fabric.hosts.iter().enumerate() {
        let remote_vm = fabric.vms_of(1 - i, 100).next().unwrap();
        testbed::wait_until(
            TIMEOUT,
            &format!("remote MAC {} in FDB of {}", remote_vm.mac, host.ns.name()),
            || {
                Ok(bridge_fdb(&host.ns)?.iter().any(|r| {
                    r.mac == remote_vm.mac
                        && r.has_flag("extern_learn")
                        && r.dst.as_deref() == Some(vteps[1 - i].as_str())
                }))
            },
        )
        .unwrap();
        // Local VM MAC, remote VM MAC and the ports' own addresses.
        let n = brforward_count(&host.ns, "br100").unwrap();
        assert!(n >= 2, "{} br100 brforward has {n} entries", host.ns.name());
    }
}

#[test]
fn frr_rr_two_frr_vteps() {
    if !reference_tools_present() {
        return;
    }
    cleanup_prefix("tbf", false).unwrap();
    let fabric = FabricBuilder::new("tbf")
        .hosts(HostKind::FrrVtep, 2)
        .rr(RrKind::Frr)
        .build()
        .unwrap();
    check_fabric(&fabric);

    // The RR holds both VTEPs' type-3 routes and both MACs.
    let rr = fabric.rr_frr.as_ref().unwrap();
    testbed::wait_until(TIMEOUT, "2 type-3 routes at the RR", || {
        Ok(rr.evpn_route_count(3)? == 2)
    })
    .unwrap();
    testbed::wait_until(TIMEOUT, "2 type-2 MAC routes at the RR", || {
        Ok(rr.evpn_route_count(2)? >= 2)
    })
    .unwrap();
    let nh: HashSet<String> = rr
        .evpn_routes()
        .unwrap()
        .iter()
        .filter(|r| r.route_type == 3)
        .flat_map(|r| r.nexthops())
        .collect();
    let want: HashSet<String> = fabric.hosts.iter().map(|h| h.vtep_ip.to_string()).collect();
    assert_eq!(nh, want, "type-3 next hops at the RR");

    teardown_leaves_nothing(fabric);
}

#[test]
fn gobgp_rr_two_frr_vteps() {
    if !reference_tools_present() {
        return;
    }
    assert!(gobgp::gobgp_installed(), "gobgpd is not installed");
    cleanup_prefix("tbg", false).unwrap();
    let fabric = FabricBuilder::new("tbg")
        .hosts(HostKind::FrrVtep, 2)
        .rr(RrKind::GoBgp)
        .build()
        .unwrap();
    check_fabric(&fabric);
    let rr = fabric.rr_gobgp.as_ref().unwrap();
    testbed::wait_until(TIMEOUT, "2 type-3 routes at GoBGP", || {
        Ok(rr.evpn_route_count(3)? == 2)
    })
    .unwrap();
    teardown_leaves_nothing(fabric);
}

/// Whether host `h` has a flood entry towards `vtep`.
fn has_flood_entry(fabric: &Fabric, h: usize, vtep: &str) -> testbed::Result<bool> {
    Ok(bridge_fdb(&fabric.hosts[h].ns)?
        .iter()
        .any(|r| r.is_flood_entry() && r.dst.as_deref() == Some(vtep)))
}

/// Stopping a VTEP's bgpd withdraws its routes everywhere (the RR drops
/// the dynamic neighbor, the other VTEP removes its flood entry); starting
/// it again brings everything back. The evpnd restart tests mirror this.
#[test]
fn frr_vtep_bgpd_stop_start() {
    if !reference_tools_present() {
        return;
    }
    cleanup_prefix("tbs", false).unwrap();
    let mut fabric = FabricBuilder::new("tbs")
        .hosts(HostKind::FrrVtep, 2)
        .rr(RrKind::Frr)
        .build()
        .unwrap();
    fabric.wait_sessions(TIMEOUT).unwrap();
    let h1 = fabric.hosts[0].vtep_ip;
    let h1s = h1.to_string();
    testbed::wait_until(TIMEOUT, "h2 flood entry to h1", || {
        has_flood_entry(&fabric, 1, &h1s)
    })
    .unwrap();

    // Both VTEPs' routes are in before the stop (zebra tells bgpd about the
    // VNI a moment after the session is up).
    let rr = fabric.rr_frr.as_ref().unwrap();
    testbed::wait_until(TIMEOUT, "2 type-3 routes at the RR", || {
        Ok(rr.evpn_route_count(3)? == 2)
    })
    .unwrap();

    fabric.hosts[0].frr.as_mut().unwrap().stop().unwrap();
    let rr = fabric.rr_frr.as_ref().unwrap();
    testbed::wait_until(TIMEOUT, "RR to lose the session with h1", || {
        Ok(rr.bgp_neighbor_state(h1)?.as_deref() != Some("Established"))
    })
    .unwrap();
    testbed::wait_until(TIMEOUT, "h2 flood entry to h1 withdrawn", || {
        Ok(!has_flood_entry(&fabric, 1, &h1s)?)
    })
    .unwrap();
    testbed::wait_until(TIMEOUT, "RR to keep only h2's type-3 route", || {
        Ok(rr.evpn_route_count(3)? == 1)
    })
    .unwrap();

    fabric.hosts[0].frr.as_mut().unwrap().start_again().unwrap();
    fabric.wait_sessions(TIMEOUT).unwrap();
    testbed::wait_until(TIMEOUT, "h2 flood entry to h1 back", || {
        has_flood_entry(&fabric, 1, &h1s)
    })
    .unwrap();
    let vm0 = fabric.vms_of(0, 100).next().unwrap();
    let vm1 = fabric.vms_of(1, 100).next().unwrap();
    fabric.wait_ping(vm1, vm0, TIMEOUT).unwrap();
    teardown_leaves_nothing(fabric);
}

/// Many MACs behind one VTEP reach the other VTEP's bridge: the pattern the
/// scale tests and the benchmark use (count via brforward).
#[test]
fn frr_many_macs_reach_remote_bridge() {
    if !reference_tools_present() {
        return;
    }
    const N: usize = 300;
    cleanup_prefix("tbm", false).unwrap();
    let fabric = FabricBuilder::new("tbm")
        .hosts(HostKind::FrrVtep, 2)
        .rr(RrKind::Frr)
        .build()
        .unwrap();
    fabric.wait_sessions(TIMEOUT).unwrap();
    let before = brforward_count(&fabric.hosts[1].ns, "br100").unwrap();
    let port = fabric.vms_of(0, 100).next().unwrap().host_if.clone();
    let macs: Vec<String> = (0..N as u32).map(|i| testbed::nth_mac(0x42, i)).collect();
    testbed::fdb_add_local_batch(&fabric.hosts[0].ns, &port, &macs).unwrap();
    let h2 = &fabric.hosts[1];
    testbed::wait_for(TIMEOUT, &format!("{N} remote MACs on h2 br100"), || {
        let n = brforward_count(&h2.ns, "br100")?;
        Ok(if n >= before + N {
            testbed::Poll::Ready(())
        } else {
            testbed::Poll::NotYet(format!("{n} entries (had {before})"))
        })
    })
    .unwrap();
    let remote = bridge_fdb(&h2.ns)
        .unwrap()
        .into_iter()
        .filter(|r| r.mac.starts_with("02:42:") && r.dst.as_deref() == Some("10.255.0.2"))
        .count();
    assert_eq!(remote, N);
    let rr = fabric.rr_frr.as_ref().unwrap();
    assert!(rr.evpn_route_count(2).unwrap() >= N);
    let rss = testbed::rss_kib(rr.bgpd_pid().unwrap()).unwrap();
    assert!(rss > 1000, "RR bgpd RSS {rss} KiB");
}
