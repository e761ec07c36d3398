//! EVPN interoperability with FRR 8.4: an FRR route reflector, an FRR VTEP
//! (zebra + bgpd, `advertise-all-vni`) and an evpnd VTEP in VNI 100, one VM
//! each. Routes are checked where FRR shows them (vtysh JSON), where evpnd
//! shows them (evpnctl --json) and where they end up (kernel FDB), and the
//! VMs must reach each other.

use std::net::IpAddr;
use std::time::Duration;

use evpnd::testbed::fabric;
use evpnd::testbed::frr::EvpnRoute;
use evpnd::testbed::{
    self, bridge_fdb, cleanup_prefix, frr, links, wait_for, wait_until, FabricBuilder, Frr,
    HostKind, Poll, RrKind,
};
use serde_json::Value;

const EVPND: &str = env!("CARGO_BIN_EXE_evpnd");
const TIMEOUT: Duration = Duration::from_secs(60);

/// evpnd's type-3 route as `show bgp l2vpn evpn route detail type multicast
/// json` shows it on `frr`: originating IP and next hop = evpnd's VTEP,
/// PMSI ingress replication with label (VNI) 100, RT 65000:100 and ET:8.
fn evpnd_type3_at(frr: &Frr, vtep: &str) -> testbed::Result<Poll<Value>> {
    let v = frr.vtysh_json("show bgp l2vpn evpn route detail type multicast json")?;
    let routes = frr::parse_evpn_routes(&v)?;
    let prefix = format!("[3]:[0]:[32]:[{vtep}]");
    let found: Vec<&EvpnRoute> = routes.iter().filter(|r| r.prefix == prefix).collect();
    Ok(match found.first() {
        Some(r) if r.nexthops().iter().any(|n| n == vtep) => match r.paths.first() {
            Some(p) => Poll::Ready(p.clone()),
            None => Poll::NotYet(format!("{prefix} without paths")),
        },
        _ => Poll::NotYet(format!(
            "type-3 prefixes: {:?}",
            routes.iter().map(|r| &r.prefix).collect::<Vec<_>>()
        )),
    })
}

fn assert_evpnd_type3_attrs(path: &Value, at: &str) {
    assert_eq!(
        path["pmsi"]["tunnelType"], "Ingress Replication",
        "PMSI tunnel type at {at}: {path}"
    );
    assert_eq!(path["pmsi"]["label"], 100, "PMSI label at {at}: {path}");
    let ec = path["extendedCommunity"]["string"].as_str().unwrap_or("");
    let parts: Vec<&str> = ec.split_whitespace().collect();
    assert!(parts.contains(&"RT:65000:100"), "RT at {at}: {ec:?}");
    assert!(parts.contains(&"ET:8"), "encapsulation at {at}: {ec:?}");
    assert_eq!(path["origin"], "IGP", "{at}: {path}");
}

/// Remote VTEPs of VNI 100 in `show evpn vni 100 json`. FRR 8.4 puts the
/// list under `numRemoteVteps` (a list of addresses); later versions use
/// `remoteVteps` (objects with `ip`).
fn frr_remote_vteps(frr: &Frr) -> testbed::Result<Vec<String>> {
    let v = frr.vtysh_json("show evpn vni 100 json")?;
    let list = v
        .get("remoteVteps")
        .or_else(|| v.get("numRemoteVteps"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    Ok(list
        .iter()
        .filter_map(|e| {
            e.as_str()
                .or_else(|| e.get("ip").and_then(Value::as_str))
                .map(str::to_string)
        })
        .collect())
}

/// A route in evpnd's RIB (`evpnctl show routes --json`) matching `f`.
fn evpnd_route(e: &testbed::Evpnd, f: impl Fn(&Value) -> bool) -> testbed::Result<Poll<Value>> {
    let routes = e.routes_json()?;
    Ok(match routes.iter().find(|r| f(r)) {
        Some(r) => Poll::Ready(r.clone()),
        None => Poll::NotYet(format!("{routes:?}")),
    })
}

#[test]
fn frr_rr_frr_vtep_and_evpnd_vtep_exchange_routes_and_ping() {
    if !testbed::can_run() {
        return;
    }
    assert!(
        frr::frr_installed(),
        "FRR is not installed: run .ci/run or apt-get install frr"
    );
    cleanup_prefix("itevp", false).unwrap();
    let fabric = FabricBuilder::new("itevp")
        .host(HostKind::FrrVtep)
        .host(HostKind::Evpnd)
        .rr(RrKind::Frr)
        .evpnd_binary(EVPND)
        .build()
        .unwrap();
    fabric.wait_sessions(TIMEOUT).unwrap();
    let rr = fabric.rr_frr.as_ref().unwrap();
    let frr_host = &fabric.hosts[0];
    let ev_host = &fabric.hosts[1];
    let frr = frr_host.frr.as_ref().unwrap();
    let evpnd = ev_host.evpnd.as_ref().unwrap();
    let (frr_ip, ev_ip) = (frr_host.vtep_ip.to_string(), ev_host.vtep_ip.to_string());
    let frr_vm = fabric.vms_of(0, 100).next().unwrap();
    let ev_vm = fabric.vms_of(1, 100).next().unwrap();

    // evpnd's type-3 at the route reflector and, reflected, at the FRR VTEP.
    let at_rr = wait_for(TIMEOUT, "evpnd's type-3 route at the RR", || {
        evpnd_type3_at(rr, &ev_ip)
    })
    .unwrap();
    assert_evpnd_type3_attrs(&at_rr, "RR");
    assert_eq!(at_rr["peer"]["peerId"], ev_ip.as_str(), "{at_rr}");
    let at_vtep = wait_for(TIMEOUT, "evpnd's type-3 route at the FRR VTEP", || {
        evpnd_type3_at(frr, &ev_ip)
    })
    .unwrap();
    assert_evpnd_type3_attrs(&at_vtep, "FRR VTEP");
    // Reflected (RFC 4456): ORIGINATOR_ID = evpnd, CLUSTER_LIST = the RR.
    assert_eq!(at_vtep["originatorId"], ev_ip.as_str(), "{at_vtep}");
    assert_eq!(
        at_vtep["clusterList"]["list"],
        serde_json::json!([fabric::SPINE_IP.to_string()]),
        "{at_vtep}"
    );

    // zebra on the FRR VTEP floods VNI 100 to evpnd (head-end replication):
    // in its VNI and in the kernel.
    wait_until(TIMEOUT, "evpnd's VTEP in FRR's VNI 100 flood list", || {
        Ok(frr_remote_vteps(frr)?.contains(&ev_ip))
    })
    .unwrap();
    wait_until(TIMEOUT, "flood entry to evpnd on the FRR VTEP", || {
        Ok(bridge_fdb(&frr_host.ns)?
            .iter()
            .any(|r| r.is_flood_entry() && r.dst.as_deref() == Some(ev_ip.as_str())))
    })
    .unwrap();

    // The FRR VTEP's type-3 in evpnd's RIB and its flood entry in the kernel.
    let t3 = wait_for(TIMEOUT, "FRR VTEP's type-3 in evpnd's RIB", || {
        evpnd_route(evpnd, |r| {
            r["route_type"] == 3 && r["originator_ip"].as_str() == Some(frr_ip.as_str())
        })
    })
    .unwrap();
    assert_eq!(t3["next_hop"], frr_ip.as_str(), "{t3}");
    assert_eq!(t3["vni"], 100, "{t3}");
    assert_eq!(t3["local"], false, "{t3}");
    assert_eq!(t3["originator_id"], frr_ip.as_str(), "{t3}");
    let ecs: Vec<&str> = t3["ext_communities"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(
        ecs.contains(&"RT:65000:100") && ecs.contains(&"ET:8"),
        "{t3}"
    );
    wait_until(
        TIMEOUT,
        "flood entry to the FRR VTEP in evpnd's kernel",
        || {
            Ok(bridge_fdb(&ev_host.ns)?.iter().any(|r| {
                r.mac == "00:00:00:00:00:00"
                    && r.ifname == "vxlan100"
                    && r.dst.as_deref() == Some(frr_ip.as_str())
            }))
        },
    )
    .unwrap();

    // First traffic goes through the flood entries; then each side learns
    // the other's VM MAC (type-2).
    fabric.wait_ping(frr_vm, ev_vm, TIMEOUT).unwrap();
    fabric.wait_ping(ev_vm, frr_vm, TIMEOUT).unwrap();

    let t2 = wait_for(TIMEOUT, "FRR VM's MAC (type-2) in evpnd's RIB", || {
        evpnd_route(evpnd, |r| {
            r["route_type"] == 2 && r["mac"].as_str() == Some(frr_vm.mac.as_str())
        })
    })
    .unwrap();
    assert_eq!(t2["next_hop"], frr_ip.as_str(), "{t2}");
    assert_eq!(t2["vni"], 100, "{t2}");
    assert_eq!(t2["best"], true, "{t2}");
    wait_until(TIMEOUT, "FRR VM's MAC in evpnd's kernel FDB", || {
        let fdb = bridge_fdb(&ev_host.ns)?;
        let vxlan_row = fdb.iter().any(|r| {
            r.mac == frr_vm.mac
                && r.ifname == "vxlan100"
                && r.dst.as_deref() == Some(frr_ip.as_str())
                && r.has_flag("extern_learn")
        });
        // The bridge's own row: without it the bridge floods to that MAC.
        let bridge_row = fdb.iter().any(|r| {
            r.mac == frr_vm.mac && r.ifname == "vxlan100" && r.master.as_deref() == Some("br100")
        });
        Ok(vxlan_row && bridge_row)
    })
    .unwrap();

    // And the other way: evpnd's VM MAC at the FRR VTEP (BGP, zebra, kernel).
    let t2_at_frr = wait_for(TIMEOUT, "evpnd VM's MAC as type-2 at the FRR VTEP", || {
        let v = frr.vtysh_json("show bgp l2vpn evpn route detail type macip json")?;
        let routes = frr::parse_evpn_routes(&v)?;
        let found = routes
            .iter()
            .find(|r| r.prefix.contains(&ev_vm.mac) && r.nexthops().contains(&ev_ip));
        Ok(match found {
            Some(r) => Poll::Ready(r.paths.first().cloned().unwrap_or_default()),
            None => Poll::NotYet(format!(
                "{:?}",
                routes.iter().map(|r| &r.prefix).collect::<Vec<_>>()
            )),
        })
    })
    .unwrap();
    // Label 1 = VNI 100 (RFC 8365 §5.1.3), RT and encapsulation as FRR's own.
    assert_eq!(t2_at_frr["vni"], "100", "{t2_at_frr}");
    let ec = t2_at_frr["extendedCommunity"]["string"]
        .as_str()
        .unwrap_or("");
    assert!(
        ec.split_whitespace().any(|c| c == "RT:65000:100")
            && ec.split_whitespace().any(|c| c == "ET:8"),
        "{t2_at_frr}"
    );
    wait_until(TIMEOUT, "zebra to hold evpnd VM's MAC as remote", || {
        let v = frr.vtysh_json("show evpn mac vni 100 json")?;
        let m = &v["macs"][ev_vm.mac.as_str()];
        Ok(m["type"] == "remote" && m["remoteVtep"] == ev_ip.as_str())
    })
    .unwrap();
    wait_until(
        TIMEOUT,
        "evpnd VM's MAC in the FRR VTEP's kernel FDB",
        || {
            Ok(bridge_fdb(&frr_host.ns)?.iter().any(|r| {
                r.mac == ev_vm.mac
                    && r.ifname == "vxlan100"
                    && r.dst.as_deref() == Some(ev_ip.as_str())
            }))
        },
    )
    .unwrap();

    // The VMs reach each other both ways, every packet answered.
    for (from, to) in [(frr_vm, ev_vm), (ev_vm, frr_vm)] {
        let r = links::ping(&from.ns, IpAddr::V4(to.ip), 5).unwrap();
        assert!(r.ok(), "{} -> {}: {r:?}", from.label(), to.label());
    }

    // FRR does not show the PMSI tunnel identifier: read it off the wire.
    // Capture what evpnd sends (not what the RR reflects back to it: FRR
    // re-encodes the attribute) on the spine, reset the session from evpnd
    // (evpnctl clear --hard) so that it sends its routes again, and look
    // for PMSI type 22: flags 0, ingress replication (6), label 100,
    // tunnel id = evpnd's VTEP.
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("bgp.pcap");
    let err = dir.path().join("tcpdump.err");
    let ev_if = format!("h{}", ev_host.index);
    let mut tcpdump = fabric
        .spine
        .spawn(
            &[
                "tcpdump",
                "-n",
                "-U",
                "-i",
                ev_if.as_str(),
                "-w",
                pcap.to_str().unwrap(),
                "src",
                "host",
                ev_ip.as_str(),
                "and",
                "tcp",
                "port",
                "179",
            ],
            "tcpdump",
            Some(&err),
        )
        .unwrap();
    wait_until(Duration::from_secs(10), "tcpdump to listen", || {
        Ok(std::fs::read_to_string(&err)
            .unwrap_or_default()
            .contains("listening on"))
    })
    .unwrap();
    evpnd
        .evpnctl_ok(&["clear", "neighbor", &fabric::SPINE_IP.to_string(), "--hard"])
        .unwrap();
    let mut pmsi = vec![0, 6, 0, 0, 100];
    pmsi.extend_from_slice(&ev_host.vtep_ip.octets());
    let short: Vec<u8> = [22, 9].iter().chain(&pmsi).copied().collect();
    let long: Vec<u8> = [22, 0, 9].iter().chain(&pmsi).copied().collect();
    let found = wait_until(TIMEOUT, "evpnd's PMSI tunnel attribute on the wire", || {
        let bytes = std::fs::read(&pcap).unwrap_or_default();
        let has = |p: &[u8]| bytes.windows(p.len()).any(|w| w == p);
        Ok(has(&short) || has(&long))
    });
    tcpdump.stop_with(libc::SIGINT).unwrap();
    found.unwrap();
    // The reset session comes back on both sides.
    fabric.wait_sessions(TIMEOUT).unwrap();
}

/// evpnd stopping and starting again, seen from FRR: its session going
/// down withdraws its routes at the FRR VTEP (flood list, kernel flood
/// entry); after the restart they come back and the VMs reach each other.
#[test]
fn evpnd_restart_is_seen_by_frr_vtep() {
    if !testbed::can_run() {
        return;
    }
    assert!(frr::frr_installed(), "FRR is not installed");
    cleanup_prefix("itevr", false).unwrap();
    let mut fabric = FabricBuilder::new("itevr")
        .host(HostKind::FrrVtep)
        .host(HostKind::Evpnd)
        .rr(RrKind::Frr)
        .evpnd_binary(EVPND)
        .build()
        .unwrap();
    fabric.wait_sessions(TIMEOUT).unwrap();
    let ev_ip = fabric.hosts[1].vtep_ip.to_string();
    let flood_to_evpnd = |f: &fabric::Fabric| -> testbed::Result<bool> {
        Ok(bridge_fdb(&f.hosts[0].ns)?
            .iter()
            .any(|r| r.is_flood_entry() && r.dst.as_deref() == Some(ev_ip.as_str())))
    };
    {
        let frr = fabric.hosts[0].frr.as_ref().unwrap();
        wait_until(TIMEOUT, "evpnd's VTEP in FRR's flood list", || {
            Ok(frr_remote_vteps(frr)?.contains(&ev_ip) && flood_to_evpnd(&fabric)?)
        })
        .unwrap();
        let a = fabric.vms_of(0, 100).next().unwrap();
        let b = fabric.vms_of(1, 100).next().unwrap();
        fabric.wait_ping(b, a, TIMEOUT).unwrap();
    }

    // SIGTERM: evpnd closes its session (Cease), FRR withdraws its routes.
    fabric.hosts[1].evpnd.as_mut().unwrap().stop().unwrap();
    {
        let frr = fabric.hosts[0].frr.as_ref().unwrap();
        wait_until(TIMEOUT, "FRR VTEP to forget evpnd's VTEP", || {
            Ok(!frr_remote_vteps(frr)?.contains(&ev_ip) && !flood_to_evpnd(&fabric)?)
        })
        .unwrap();
    }

    // Back again: session, routes and traffic.
    let peers = fabric.peers(1);
    let evpnd = fabric.hosts[1].evpnd.as_mut().unwrap();
    evpnd.restart().unwrap();
    evpnd.wait_ready(TIMEOUT).unwrap();
    evpnd.wait_established(&peers, TIMEOUT).unwrap();
    let frr = fabric.hosts[0].frr.as_ref().unwrap();
    wait_until(TIMEOUT, "evpnd's VTEP back in FRR's flood list", || {
        Ok(frr_remote_vteps(frr)?.contains(&ev_ip) && flood_to_evpnd(&fabric)?)
    })
    .unwrap();
    let a = fabric.vms_of(0, 100).next().unwrap();
    let b = fabric.vms_of(1, 100).next().unwrap();
    fabric.wait_ping(a, b, TIMEOUT).unwrap();
    fabric.wait_ping(b, a, TIMEOUT).unwrap();
}
