//! Validates the test bed itself with reference implementations only:
//! FRR VTEPs behind an FRR or a GoBGP route reflector. The evpnd
//! integration tests mirror these with evpnd hosts.

use std::collections::HashSet;
use std::time::Duration;

use evpnd::testbed::{
    self, bridge_fdb, cleanup_prefix, frr, gobgp, list_namespaces, Fabric, FabricBuilder, HostKind,
    RrKind,
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
