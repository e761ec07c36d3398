//! Restarting evpnd under traffic.

use std::collections::BTreeSet;
use std::time::Duration;

use evpnd::testbed::{self, links, wait_until, ChildGuard, Fabric, FdbMonitor, RunDir};

use crate::{wait_rows_exact, TIMEOUT, VNI, VX};

const PINGS: u32 = 500;

/// Restart host 0's evpnd (graceful restart on, full mesh) while VM 0 pings
/// VM 1 every 10 ms: neither host reports a deleted vxlan row (`bridge
/// monitor fdb`), at most 1% of the pings are lost, and both tables end
/// exact once the sessions are back and the End-of-RIB sweep ran.
///
/// Full mesh, not an FRR RR: FRR 8.4 keeps no graceful-restart state for
/// L2VPN EVPN (it shows evpnd's capability as "Remote GR Mode: Helper" and
/// withdraws on session close), so behind it the remote host's rows
/// survive only when the withdraw and re-advertisement happen to coalesce.
pub fn restart_keeps_entries(mut fabric: Fabric, want: &[BTreeSet<String>]) {
    let vm0 = fabric.vms_of(0, VNI).next().unwrap();
    let vm1 = fabric.vms_of(1, VNI).next().unwrap();
    let monitors: Vec<FdbMonitor> = fabric
        .hosts
        .iter()
        .enumerate()
        .map(|(h, host)| {
            let port = &fabric.vms_of(h, VNI).next().unwrap().host_if;
            FdbMonitor::start(&host.ns, port).unwrap()
        })
        .collect();

    let dir = RunDir::new(&format!("pingflood-{}", vm0.ns.name())).unwrap();
    let out = dir.path().join("ping.txt");
    let mut cmd = vm0.ns.command(&["ping", "-q", "-i", "0.01", "-W", "1"]);
    cmd.args(["-c", &PINGS.to_string(), &vm1.ip.to_string()]);
    let mut ping = ChildGuard::spawn(cmd, "ping flood", Some(&out)).unwrap();
    // The flood is under way once VM 0 has sent some of it.
    let tx = |ns: &testbed::NsHandle| -> testbed::Result<u64> {
        let b = ns.read_file("/sys/class/net/eth0/statistics/tx_packets")?;
        Ok(String::from_utf8_lossy(&b).trim().parse().unwrap_or(0))
    };
    let tx0 = tx(&vm0.ns).unwrap();
    wait_until(TIMEOUT, "ping flood under way", || {
        Ok(tx(&vm0.ns)? >= tx0 + 50)
    })
    .unwrap();

    // Stop. Host 1's evpnd sees the session close without a NOTIFICATION
    // and keeps host 0's routes as stale (RFC 4724 §4.2): its rows stay.
    fabric.hosts[0].evpnd.as_mut().unwrap().stop().unwrap();
    let peer0 = fabric.hosts[0].vtep_ip.to_string();
    let ev1 = fabric.hosts[1].evpnd.as_ref().unwrap();
    wait_until(TIMEOUT, "host 1 to see host 0's session down", || {
        Ok(!ev1
            .neighbors()?
            .iter()
            .any(|n| n.address == peer0 && n.is_established()))
    })
    .unwrap();
    assert_eq!(
        crate::vxlan_rows(&fabric.hosts[1].ns.handle()).unwrap(),
        want[1],
        "host 1 rows while host 0's evpnd is down"
    );
    let ev = fabric.hosts[0].evpnd.as_mut().unwrap();
    ev.start_again().unwrap();
    ev.wait_ready(TIMEOUT).unwrap();
    assert!(
        ping.is_running(),
        "the ping flood ended before evpnd was back: restart not covered"
    );
    wait_until(Duration::from_secs(30), "ping flood to end", || {
        Ok(ping.try_status().is_some())
    })
    .unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    let r = links::parse_ping(&text).unwrap();
    assert_eq!(r.transmitted, PINGS, "{text}");
    assert!(
        r.loss_percent <= 1.0,
        "lost {}% of pings across the restart: {text}",
        r.loss_percent
    );

    fabric.wait_sessions(TIMEOUT).unwrap();
    for (h, w) in want.iter().enumerate() {
        wait_rows_exact(
            &fabric.hosts[h].ns.handle(),
            w,
            &format!("h{h} rows after the restart"),
        );
    }
    // The restarted daemon ends its restart window on End-of-RIB (not on
    // the 120 s fallback) and its sweep deletes nothing that is backed.
    let ev = fabric.hosts[0].evpnd.as_ref().unwrap();
    let swept = wait_until(TIMEOUT, "restarted evpnd to sweep after End-of-RIB", || {
        let log = std::fs::read_to_string(ev.log()).unwrap_or_default();
        let since_restart = log.rsplit("evpnd ready").next().unwrap_or("");
        Ok(since_restart.contains("End-of-RIB from every peer") && since_restart.contains("swept"))
    });
    for (h, w) in want.iter().enumerate() {
        let got = crate::vxlan_rows(&fabric.hosts[h].ns.handle()).unwrap();
        assert_eq!(&got, w, "h{h} rows after the sweep");
    }
    for (h, m) in monitors.into_iter().enumerate() {
        let lines = m.stop().unwrap();
        let deleted: Vec<&String> = lines
            .iter()
            .filter(|l| {
                l.starts_with("Deleted")
                    && l.contains(&format!("dev {VX} "))
                    && !l.contains(FdbMonitor::PROBE_MAC)
            })
            .collect();
        assert!(
            deleted.is_empty(),
            "host {h}: rows deleted during the restart: {deleted:?}"
        );
    }
    swept.unwrap();
}
