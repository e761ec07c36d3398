//! End to end: the real evpnd binary programming the real kernel.
//!
//! Each test builds its own fabric of network namespaces (unique names:
//! prefix + pid + counter; guards tear everything down, also on failure),
//! then asserts on kernel state (`bridge -j fdb show`, `ip neigh`), BGP
//! state at an FRR route reflector (`vtysh ... json`) and real packets
//! (ping between VM namespaces, tcpdump on the vxlan device).
//!
//! Run as root: `cargo test --test e2e_dataplane -- --test-threads=2`.

mod e2e;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use evpnd::testbed::{
    self, bridge_fdb, frr, links, wait_for, wait_until, Fabric, FabricBuilder, FdbRow, HostKind,
    Poll, RrKind, Vm,
};

pub(crate) const TIMEOUT: Duration = Duration::from_secs(45);
pub(crate) const VNI: u32 = 100;
pub(crate) const BR: &str = "br100";
pub(crate) const VX: &str = "vxlan100";

pub(crate) fn evpnd_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_evpnd"))
}

/// Root and FRR present (the test bed asserts FRR: CI installs it).
pub(crate) fn ready() -> bool {
    if !testbed::can_run() {
        return false;
    }
    assert!(
        frr::frr_installed(),
        "FRR is not installed: run .ci/run or apt-get install frr"
    );
    true
}

/// A comparable form of an FDB row: `MAC dst=.. master=.. [flags] state`.
pub(crate) fn row_key(r: &FdbRow) -> String {
    let mut flags = r.flags.clone();
    flags.sort();
    format!(
        "{} dst={} master={} [{}] {}",
        r.mac,
        r.dst.as_deref().unwrap_or("-"),
        r.master.as_deref().unwrap_or("-"),
        flags.join(" "),
        r.state
    )
}

/// The two rows one remote MAC gives (zebra's format): `dst VTEP self
/// extern_learn` and `extern_learn master BR`.
pub(crate) fn remote_mac_rows(mac: &str, vtep: Ipv4Addr) -> [String; 2] {
    [
        format!("{mac} dst={vtep} master=- [extern_learn self] "),
        format!("{mac} dst=- master={BR} [extern_learn] "),
    ]
}

/// A head-end replication row: `00:00:00:00:00:00 dst VTEP self permanent`.
pub(crate) fn flood_row(vtep: Ipv4Addr) -> String {
    format!("00:00:00:00:00:00 dst={vtep} master=- [self] permanent")
}

/// Rows a VTEP daemon could have written: on the vxlan device any row with
/// a destination or `extern_learn`, elsewhere any `extern_learn` row (the
/// device is part of the key). The kernel's own rows (port addresses,
/// multicast addresses: no dst, `permanent`) and the learned local MACs
/// are left out.
pub(crate) fn vxlan_rows(ns: &testbed::NsHandle) -> testbed::Result<BTreeSet<String>> {
    Ok(bridge_fdb(ns)?
        .iter()
        .filter(|r| r.has_flag("extern_learn") || (r.ifname == VX && r.dst.is_some()))
        .map(|r| {
            let k = row_key(r);
            if r.ifname == VX {
                k
            } else {
                format!("{k} on {}", r.ifname)
            }
        })
        .collect())
}

/// Wait until host `ns`'s vxlan rows are exactly `want`; panics with the
/// difference.
pub(crate) fn wait_rows_exact(ns: &testbed::NsHandle, want: &BTreeSet<String>, what: &str) {
    wait_for(TIMEOUT, what, || {
        let got = vxlan_rows(ns)?;
        Ok(if &got == want {
            Poll::Ready(())
        } else {
            let missing: Vec<_> = want.difference(&got).collect();
            let extra: Vec<_> = got.difference(want).collect();
            Poll::NotYet(format!("missing {missing:?}, unexpected {extra:?}"))
        })
    })
    .unwrap();
}

/// Rows host `h` must hold: one flood row per other VTEP and the two rows
/// of every remote VM MAC in `remote_macs` (MAC, its VTEP).
pub(crate) fn expected_rows(
    fabric: &Fabric,
    h: usize,
    remote_macs: &[(String, Ipv4Addr)],
) -> BTreeSet<String> {
    let mut want = BTreeSet::new();
    for (i, other) in fabric.hosts.iter().enumerate() {
        if i != h {
            want.insert(flood_row(other.vtep_ip));
        }
    }
    for (mac, vtep) in remote_macs {
        want.extend(remote_mac_rows(mac, *vtep));
    }
    want
}

/// The remote VMs' MACs as host `h` should see them.
pub(crate) fn remote_vms(fabric: &Fabric, h: usize) -> Vec<(String, Ipv4Addr)> {
    fabric
        .vms
        .iter()
        .filter(|v| v.host != h && v.vni == VNI)
        .map(|v| (v.mac.clone(), fabric.hosts[v.host].vtep_ip))
        .collect()
}

/// Ping every VM pair across hosts (after the first ping succeeded).
pub(crate) fn ping_across(fabric: &Fabric) {
    for (a, b) in cross_pairs(fabric) {
        fabric.wait_ping(a, b, TIMEOUT).unwrap();
    }
    for r in fabric.ping_all(2).unwrap() {
        assert!(r.result.ok(), "{} -> {}: {:?}", r.from, r.to, r.result);
    }
}

pub(crate) fn cross_pairs(fabric: &Fabric) -> Vec<(&Vm, &Vm)> {
    let mut v = Vec::new();
    for a in &fabric.vms {
        for b in &fabric.vms {
            if a.vni == b.vni && a.host != b.host {
                v.push((a, b));
            }
        }
    }
    v
}

/// Type-2 prefixes at the FRR route reflector (`show bgp l2vpn evpn route
/// type macip json`).
pub(crate) fn rr_macip(fabric: &Fabric) -> testbed::Result<Vec<String>> {
    let rr = fabric.rr_frr.as_ref().expect("FRR route reflector");
    let v = rr.vtysh_json("show bgp l2vpn evpn route type macip json")?;
    Ok(frr::parse_evpn_routes(&v)?
        .into_iter()
        .filter(|r| r.route_type == 2)
        .map(|r| r.prefix)
        .collect())
}

pub(crate) fn rr_has_mac(fabric: &Fabric, mac: &str) -> testbed::Result<bool> {
    Ok(rr_macip(fabric)?.iter().any(|p| p.contains(mac)))
}

fn evpnd_fabric_with(
    prefix: &str,
    rr: RrKind,
    vms: usize,
    f: impl FnOnce(FabricBuilder) -> FabricBuilder,
) -> Fabric {
    testbed::cleanup_prefix(prefix, false).unwrap();
    let fabric = f(FabricBuilder::new(prefix))
        .hosts(HostKind::Evpnd, 2)
        .rr(rr)
        .vms_per_host(vms)
        .evpnd_binary(evpnd_bin())
        .build()
        .unwrap();
    fabric.wait_sessions(TIMEOUT).unwrap();
    fabric
}

/// Required 1 + 3 through an FRR route reflector: VMs ping across; each
/// host's vxlan rows are exactly the flood row and the remote VMs' rows;
/// each VM MAC is a type-2 route at the RR; a VM whose port goes is
/// withdrawn (RR and remote FDB), a VM whose MAC ages out too.
#[test]
fn frr_rr_ping_exact_fdb_and_withdraw() {
    if !ready() {
        return;
    }
    // Graceful restart off: the restart at the end checks that End-of-RIB
    // still ends the adoption window (evpnd announces a helper-only GR
    // capability so that FRR sends End-of-RIB at all).
    let mut fabric = evpnd_fabric_with("eedrr", RrKind::Frr, 2, |b| b.evpnd_no_graceful_restart());
    ping_across(&fabric);
    for h in 0..2 {
        let want = expected_rows(&fabric, h, &remote_vms(&fabric, h));
        wait_rows_exact(&fabric.hosts[h].ns.handle(), &want, &format!("h{h} rows"));
    }
    for vm in &fabric.vms {
        wait_until(TIMEOUT, &format!("type-2 {} at the RR", vm.mac), || {
            rr_has_mac(&fabric, &vm.mac)
        })
        .unwrap();
    }

    // Port removal: host 0's VM 0 loses its veth; evpnd withdraws the MAC.
    let gone = fabric.vms_of(0, VNI).next().unwrap();
    let h0 = fabric.hosts[0].ns.handle();
    h0.ip(&["link", "del", &gone.host_if]).unwrap();
    wait_until(
        TIMEOUT,
        &format!("{} withdrawn at the RR", gone.mac),
        || Ok(!rr_has_mac(&fabric, &gone.mac)?),
    )
    .unwrap();
    let mut remaining: Vec<(String, Ipv4Addr)> = remote_vms(&fabric, 1);
    remaining.retain(|(m, _)| *m != gone.mac);
    let want = expected_rows(&fabric, 1, &remaining);
    wait_rows_exact(
        &fabric.hosts[1].ns.handle(),
        &want,
        "h1 rows after port removal",
    );

    // Ageing: a 5 s ageing time on host 0's bridge; host 0's other VM
    // stays quiet, its MAC ages out and is withdrawn.
    let aged = fabric.vms_of(0, VNI).nth(1).unwrap();
    h0.ip(&["link", "set", BR, "type", "bridge", "ageing_time", "500"])
        .unwrap();
    wait_until(
        Duration::from_secs(60),
        &format!("{} aged out and withdrawn at the RR", aged.mac),
        || Ok(!rr_has_mac(&fabric, &aged.mac)?),
    )
    .unwrap();
    let want = expected_rows(&fabric, 1, &[]);
    wait_rows_exact(&fabric.hosts[1].ns.handle(), &want, "h1 rows after ageing");
    // And it comes back with traffic.
    let peer = fabric.vms_of(1, VNI).next().unwrap();
    fabric.wait_ping(aged, peer, TIMEOUT).unwrap();
    wait_until(TIMEOUT, &format!("{} re-advertised", aged.mac), || {
        rr_has_mac(&fabric, &aged.mac)
    })
    .unwrap();

    // Without graceful restart, a restarted evpnd still ends its adoption
    // window on the RR's End-of-RIB (not the 120 s fallback).
    let aged_mac = aged.mac.clone();
    let ev = fabric.hosts[1].evpnd.as_mut().unwrap();
    ev.restart().unwrap();
    ev.wait_ready(TIMEOUT).unwrap();
    let log = ev.log().to_path_buf();
    wait_until(
        TIMEOUT,
        "End-of-RIB sweep after a restart without GR",
        || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let since = text.rsplit("evpnd ready").next().unwrap_or("");
            Ok(since.contains("End-of-RIB from every peer") && since.contains("swept"))
        },
    )
    .unwrap();
    let want = expected_rows(&fabric, 1, &[(aged_mac, fabric.hosts[0].vtep_ip)]);
    wait_rows_exact(&fabric.hosts[1].ns.handle(), &want, "h1 rows after restart");
}

/// Required 1 in a full mesh (no RR), plus 4 (ARP suppression) and 5 (a
/// row deleted by hand comes back; a burst of thousands of MACs ends in
/// an exact table on the other host).
#[test]
fn full_mesh_ping_suppression_restore_and_burst() {
    if !ready() {
        return;
    }
    // Hold time 30 s: the overrun step stops host 1's evpnd for a few
    // seconds (longer on a loaded machine); the session must not expire.
    let fabric = evpnd_fabric_with("eedfm", RrKind::None, 1, |b| b.timers(10, 30));
    ping_across(&fabric);
    for h in 0..2 {
        let want = expected_rows(&fabric, h, &remote_vms(&fabric, h));
        wait_rows_exact(&fabric.hosts[h].ns.handle(), &want, &format!("h{h} rows"));
    }
    e2e::suppression::arp_answered_locally(&fabric);
    e2e::restore::deleted_rows_restored(&fabric);
    e2e::restore::burst_ends_exact(&fabric);
    for h in &fabric.hosts {
        let log = std::fs::read_to_string(h.evpnd.as_ref().unwrap().log()).unwrap();
        assert!(
            !log.contains("session down"),
            "a BGP session of {} went down during the test",
            h.ns.name()
        );
    }
}

/// Required 2: an FRR VTEP (zebra + bgpd, advertise-all-vni) and an evpnd
/// host in one VNI behind an FRR RR: VMs ping both ways and both sides
/// install each other's flood and MAC rows.
#[test]
fn frr_vtep_interop() {
    if !ready() {
        return;
    }
    testbed::cleanup_prefix("eedfv", false).unwrap();
    let fabric = FabricBuilder::new("eedfv")
        .host(HostKind::FrrVtep)
        .host(HostKind::Evpnd)
        .rr(RrKind::Frr)
        .evpnd_binary(evpnd_bin())
        .build()
        .unwrap();
    fabric.wait_sessions(TIMEOUT).unwrap();
    let frr_vm = fabric.vms_of(0, VNI).next().unwrap();
    let ev_vm = fabric.vms_of(1, VNI).next().unwrap();
    fabric.wait_ping(ev_vm, frr_vm, TIMEOUT).unwrap();
    fabric.wait_ping(frr_vm, ev_vm, TIMEOUT).unwrap();
    for (a, b) in [(ev_vm, frr_vm), (frr_vm, ev_vm)] {
        let r = links::ping(&a.ns, IpAddr::V4(b.ip), 3).unwrap();
        assert!(r.ok(), "{} -> {}: {r:?}", a.label(), b.label());
    }
    // evpnd's side exactly; zebra's side has the same two kinds of rows.
    let want = expected_rows(&fabric, 1, &remote_vms(&fabric, 1));
    wait_rows_exact(&fabric.hosts[1].ns.handle(), &want, "evpnd host rows");
    let frr_rows = expected_rows(&fabric, 0, &remote_vms(&fabric, 0));
    wait_until(TIMEOUT, "FRR host has flood and MAC rows", || {
        let got = vxlan_rows(&fabric.hosts[0].ns.handle())?;
        Ok(frr_rows.is_subset(&got))
    })
    .unwrap();
}

/// Required 6: restarting evpnd under a ping flood removes no kernel entry
/// and loses at most 1% of the pings; afterwards the table is exact.
#[test]
fn restart_under_ping_flood_keeps_entries() {
    if !ready() {
        return;
    }
    let fabric = evpnd_fabric_with("eedrs", RrKind::None, 1, |b| b.evpnd_graceful_restart(60));
    ping_across(&fabric);
    let want: Vec<BTreeSet<String>> = (0..2)
        .map(|h| expected_rows(&fabric, h, &remote_vms(&fabric, h)))
        .collect();
    for (h, w) in want.iter().enumerate() {
        wait_rows_exact(&fabric.hosts[h].ns.handle(), w, &format!("h{h} rows"));
    }
    e2e::restart::restart_keeps_entries(fabric, &want);
}

/// Restarting evpnd behind an FRR 8.4 route reflector (static neighbors)
/// under a ping flood: the RR withdraws host 0's routes (FRR keeps no
/// EVPN stale routes), host 1's withdraw hold bridges the gap; no row
/// deleted, at most 1% loss, RR has host 0's routes again, none stale.
#[test]
fn restart_via_frr_rr_under_ping_flood_keeps_entries() {
    restart_via_frr_rr("eedgr", true);
}

/// The same with `bgp listen range` at the RR: FRR deletes a dynamic
/// neighbor (and its routes) when the session drops; the hold covers it
/// the same way.
#[test]
fn restart_via_frr_rr_listen_range_keeps_entries() {
    restart_via_frr_rr("eedgl", false);
}

fn restart_via_frr_rr(prefix: &str, static_neighbors: bool) {
    if !ready() {
        return;
    }
    let fabric = evpnd_fabric_with(prefix, RrKind::Frr, 1, |b| {
        b.evpnd_graceful_restart(60)
            .rr_static_neighbors(static_neighbors)
    });
    ping_across(&fabric);
    let want: Vec<BTreeSet<String>> = (0..2)
        .map(|h| expected_rows(&fabric, h, &remote_vms(&fabric, h)))
        .collect();
    for (h, w) in want.iter().enumerate() {
        wait_rows_exact(&fabric.hosts[h].ns.handle(), w, &format!("h{h} rows"));
    }
    e2e::restart::restart_via_frr_rr_keeps_entries(fabric, &want);
}

/// Required 7a: flood = "static", no BGP at all (no neighbor, listen_port
/// = 0): VMs ping across and the flood rows are exactly the static list.
#[test]
fn static_flood_without_bgp() {
    if !testbed::can_run() {
        return;
    }
    e2e::flood::static_flood("eedst");
}

/// Required 7b: flood = "multicast" with both hosts on one L2 segment: VMs
/// ping across, BUM traffic goes to the group (no head-end rows).
#[test]
fn multicast_flood_without_bgp() {
    if !testbed::can_run() {
        return;
    }
    e2e::flood::multicast_flood("eedmc");
}
