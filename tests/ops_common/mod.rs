//! Shared by the ops_* tests: a second FRR route reflector next to the
//! fabric's spine.

use std::net::Ipv4Addr;

use evpnd::testbed::{links, Fabric, Frr, FrrConfig, Netns, RrParams};

/// Loopback / router id of the second route reflector.
pub const RR2: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 200);

/// The second RR and its namespace (dropped in this order).
pub struct Rr2 {
    pub frr: Frr,
    /// Guard: removes the namespace on drop.
    pub _ns: Netns,
}

/// Start `rr2` in a namespace of its own hanging off the fabric's spine
/// (10.254.200.0/24), accepting clients from 10.255.0.0/24. With
/// `peer_rr1` it also peers with the spine's RR as one of its clients, so
/// that it reflects the other hosts' routes too (a second path for each).
pub fn start_rr2(fabric: &Fabric, prefix: &str, peer_rr1: bool) -> Rr2 {
    let ns = Netns::new(prefix).unwrap();
    links::veth(&fabric.spine, "r2", &ns, "uplink").unwrap();
    links::addr_add(&fabric.spine, "r2", "10.254.200.1/24").unwrap();
    links::addr_add(&ns, "uplink", "10.254.200.2/24").unwrap();
    links::addr_add(&ns, "lo", &format!("{RR2}/32")).unwrap();
    links::route_add(&ns, "10.255.0.0/24", "10.254.200.1".parse().unwrap()).unwrap();
    links::route_add(
        &fabric.spine,
        &format!("{RR2}/32"),
        "10.254.200.2".parse().unwrap(),
    )
    .unwrap();
    let mut cfg = FrrConfig::route_reflector(&RrParams::new(fabric.asn, RR2, "10.255.0.0/24"));
    if peer_rr1 {
        // A plain iBGP neighbor for rr2 (routes from it go to rr2's
        // clients); rr1 sees rr2 in its listen range as a client.
        let rr1 = "10.255.0.1";
        cfg.bgpd_conf = cfg
            .bgpd_conf
            .replacen(
                " !\n address-family l2vpn evpn\n",
                &format!(
                    " neighbor {rr1} remote-as {asn}\n neighbor {rr1} update-source {RR2}\n !\n address-family l2vpn evpn\n  neighbor {rr1} activate\n",
                    asn = fabric.asn
                ),
                1,
            );
    }
    let frr = Frr::start(&ns.handle(), cfg).unwrap();
    Rr2 { frr, _ns: ns }
}
