//! Static and multicast flood modes without any BGP peer.
//!
//! Two hosts on one L2 segment (a direct veth `uplink`, 10.254.0.{1,2}/24,
//! which also carries multicast), one VM each, evpnd with no neighbor and
//! `listen_port = 0`.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use evpnd::testbed::{self, links, wait_until, Evpnd, EvpndConfig, Netns, Tcpdump, Vm, VniConfig};

use crate::{evpnd_bin, flood_row, vxlan_rows, wait_rows_exact, BR, TIMEOUT, VNI, VX};

const GROUP: Ipv4Addr = Ipv4Addr::new(239, 1, 1, 1);

struct Pair {
    // Drop order: daemons, VMs, hosts.
    evpnd: Vec<Evpnd>,
    vms: Vec<Vm>,
    hosts: Vec<Netns>,
    ips: [Ipv4Addr; 2],
}

fn build(prefix: &str, vni_for: impl Fn(usize, Ipv4Addr) -> VniConfig) -> Pair {
    testbed::cleanup_prefix(prefix, false).unwrap();
    let ips = [Ipv4Addr::new(10, 254, 0, 1), Ipv4Addr::new(10, 254, 0, 2)];
    let hosts = vec![Netns::new(prefix).unwrap(), Netns::new(prefix).unwrap()];
    links::veth(&hosts[0], "uplink", &hosts[1], "uplink").unwrap();
    let mut vms = Vec::new();
    for (h, ns) in hosts.iter().enumerate() {
        links::addr_add(ns, "uplink", &format!("{}/24", ips[h])).unwrap();
        vms.push(Vm::create(prefix, ns, h, VNI, 0).unwrap());
    }
    let mut pair = Pair {
        evpnd: Vec::new(),
        vms,
        hosts,
        ips,
    };
    for h in 0..2 {
        let ns = pair.hosts[h].handle();
        let cfg = EvpndConfig::new(65000, ips[h], ns.name())
            .listen_port(0)
            .vni_config(vni_for(h, ips[1 - h]));
        let mut e = Evpnd::start_with(&ns, &evpnd_bin(), &cfg).unwrap();
        e.wait_ready(TIMEOUT).unwrap();
        pair.evpnd.push(e);
        wait_until(TIMEOUT, &format!("evpnd to create {BR}"), || {
            Ok(ns.ip(&["link", "show", "dev", BR]).is_ok())
        })
        .unwrap();
        links::enslave(&ns, &pair.vms[h].host_if, BR).unwrap();
    }
    pair
}

impl Pair {
    fn ping_both_ways(&self) {
        for (a, b) in [(&self.vms[0], &self.vms[1]), (&self.vms[1], &self.vms[0])] {
            wait_until(TIMEOUT, &format!("{} -> {}", a.label(), b.label()), || {
                Ok(links::ping(&a.ns, IpAddr::V4(b.ip), 1)?.ok())
            })
            .unwrap();
            let r = links::ping(&a.ns, IpAddr::V4(b.ip), 3).unwrap();
            assert!(r.ok(), "{} -> {}: {r:?}", a.label(), b.label());
        }
    }

    /// No BGP: nothing listens on a TCP port and the daemons still run.
    fn no_bgp(&mut self) {
        for (h, ns) in self.hosts.iter().enumerate() {
            let out = ns.run(&["ss", "-Hltn"]).unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.trim().is_empty(), "host {h} listens: {text}");
        }
        for e in &mut self.evpnd {
            assert!(e.is_running());
        }
    }
}

pub fn static_flood(prefix: &str) {
    let mut p = build(prefix, |_, other| {
        VniConfig::new(VNI).static_flood(&[other])
    });
    p.ping_both_ways();
    for h in 0..2 {
        let want: BTreeSet<String> = [flood_row(p.ips[1 - h])].into();
        wait_rows_exact(
            &p.hosts[h],
            &want,
            &format!("host {h}: only the static flood row"),
        );
    }
    p.no_bgp();
}

pub fn multicast_flood(prefix: &str) {
    let mut p = build(prefix, |_, _| {
        VniConfig::new(VNI).multicast(GROUP, "uplink")
    });
    // BUM traffic (VM 0's ARP request) goes to the group on the underlay.
    let cap = Tcpdump::start(
        &p.hosts[0],
        "uplink",
        &format!("udp port 4789 and dst host {GROUP}"),
    )
    .unwrap();
    p.ping_both_ways();
    cap.wait_packets(1, TIMEOUT).unwrap();
    drop(cap);
    for h in 0..2 {
        let rows = vxlan_rows(&p.hosts[h]).unwrap();
        // The kernel's default destination (the group) only; no head-end
        // replication rows of ours.
        assert!(
            !rows.is_empty() && rows.iter().all(|r| r.contains(&format!("dst={GROUP}"))),
            "host {h} {VX} rows: {rows:?}"
        );
    }
    p.no_bgp();
}
