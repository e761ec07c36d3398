//! ARP suppression end to end.
//!
//! evpnd learns a local VM's IP from the neighbor table of the bridge, as
//! zebra does from the SVI: the bridge needs an address in the VMs' subnet
//! (an SVI) for the kernel to hold neighbor entries there. The test gives
//! both bridges one and makes host 1 resolve its VM, so evpnd on host 1
//! advertises MAC+IP and evpnd on host 0 installs the suppression neighbor.

use std::net::IpAddr;

use evpnd::testbed::{self, links, neighbors, wait_until, Fabric, Tcpdump};

use crate::{BR, TIMEOUT, VNI, VX};

pub fn arp_answered_locally(fabric: &Fabric) {
    let vm0 = fabric.vms_of(0, VNI).next().unwrap();
    let vm1 = fabric.vms_of(1, VNI).next().unwrap();
    let h0 = fabric.hosts[0].ns.handle();
    let h1 = fabric.hosts[1].ns.handle();
    // SVIs: 172.20.250.{h+1}/16 (the VMs are 172.20.{h+1}.{k+1}/16).
    for (h, ns) in [&h0, &h1].into_iter().enumerate() {
        links::addr_add(ns, BR, &format!("172.20.250.{}/16", h + 1)).unwrap();
    }
    // Host 1 resolves its VM: a neighbor entry on br100 that evpnd learns.
    let r = links::ping(&h1, IpAddr::V4(vm1.ip), 1).unwrap();
    assert!(r.ok(), "host 1 -> its VM: {r:?}");

    // Host 0 gets the suppression neighbor from the MAC+IP route.
    let ip1 = vm1.ip.to_string();
    wait_until(
        TIMEOUT,
        &format!("suppression neighbor {ip1} on {BR} of host 0"),
        || {
            Ok(neighbors(&h0)?.iter().any(|n| {
                n.dst == ip1
                    && n.dev == BR
                    && n.lladdr.as_deref() == Some(vm1.mac.as_str())
                    && n.flags.iter().any(|f| f == "extern_learn")
                    && n.state.iter().any(|s| s == "NOARP")
            }))
        },
    )
    .unwrap();

    // VM 0 forgets VM 1 and asks again: its broadcast request reaches the
    // bridge (seen on its port), is answered there, and no ARP request for
    // VM 1 leaves through the vxlan device.
    vm0.ns
        .ip(&["neigh", "flush", "dev", "eth0", "to", &ip1])
        .unwrap();
    let on_vxlan = Tcpdump::start(&h0, VX, "arp").unwrap();
    let on_port = Tcpdump::start(&h0, &vm0.host_if, "arp").unwrap();
    let r = links::ping(&vm0.ns, IpAddr::V4(vm1.ip), 1).unwrap();
    assert!(r.ok(), "VM 0 -> VM 1 after neigh flush: {r:?}");
    let who_has = format!("who-has {ip1} ");
    testbed::wait_until(TIMEOUT, "ARP request and reply on VM 0's port", || {
        let l = on_port.lines()?;
        Ok(l.iter().any(|l| l.contains(&who_has))
            && l.iter().any(|l| l.contains(&format!("Reply {ip1} is-at"))))
    })
    .unwrap();
    let port_lines = on_port.lines().unwrap();
    let vx_lines = on_vxlan.lines().unwrap();
    drop(on_port);
    drop(on_vxlan);
    let leaked: Vec<&String> = vx_lines.iter().filter(|l| l.contains(&who_has)).collect();
    assert!(
        leaked.is_empty(),
        "ARP requests for {ip1} left through {VX}: {leaked:?} (port saw {port_lines:?})"
    );
    let n = neighbors(&vm0.ns).unwrap();
    assert!(
        n.iter()
            .any(|n| n.dst == ip1 && n.lladdr.as_deref() == Some(vm1.mac.as_str())),
        "VM 0 resolved {ip1} to {}: {n:?}",
        vm1.mac
    );
}
