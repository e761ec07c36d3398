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
/// Full mesh: host 1 is the graceful-restart helper itself. Behind an FRR
/// RR see [`restart_via_frr_rr_keeps_entries`].
pub fn restart_keeps_entries(fabric: Fabric, want: &[BTreeSet<String>]) {
    let peer0 = fabric.hosts[0].vtep_ip.to_string();
    restart_core(fabric, want, &|fabric: &Fabric| {
        // Host 1's evpnd sees the session close without a NOTIFICATION
        // and keeps host 0's routes as stale (RFC 4724 §4.2).
        let ev1 = fabric.hosts[1].evpnd.as_ref().unwrap();
        wait_until(TIMEOUT, "host 1 to see host 0's session down", || {
            Ok(!ev1
                .neighbors()?
                .iter()
                .any(|n| n.address == peer0 && n.is_established()))
        })
        .unwrap();
    });
}

/// The same restart behind an FRR 8.4 route reflector (static neighbors):
/// the RR keeps no stale EVPN routes for host 0 (no EVPN graceful-restart
/// helper in FRR 8.4) and withdraws them when the session closes; host 1
/// holds the withdraw (`withdraw_hold_ms`) and host 0's re-advertisement
/// cancels it, so host 1's rows never change. Afterwards the RR has host
/// 0's routes again, none of its paths is stale, and both tables are exact.
pub fn restart_via_frr_rr_keeps_entries(fabric: Fabric, want: &[BTreeSet<String>]) {
    let vtep0 = fabric.hosts[0].vtep_ip;
    let vm0_mac = fabric.vms_of(0, VNI).next().unwrap().mac.clone();
    let log1 = fabric.hosts[1].evpnd.as_ref().unwrap().log().to_path_buf();
    let kept_before = std::fs::read_to_string(&log1)
        .unwrap_or_default()
        .matches(HOLD_KEPT)
        .count();
    let fabric = restart_core(fabric, want, &|fabric: &Fabric| {
        let rr = fabric.rr_frr.as_ref().unwrap();
        wait_until(TIMEOUT, "the RR to see host 0's session down", || {
            Ok(rr.bgp_neighbor_state(vtep0)?.as_deref() != Some("Established"))
        })
        .unwrap();
    });
    let rr = fabric.rr_frr.as_ref().unwrap();
    wait_until(TIMEOUT, "host 0's VM MAC back at the RR", || {
        crate::rr_has_mac(&fabric, &vm0_mac)
    })
    .unwrap();
    let v = rr
        .vtysh_json("show bgp l2vpn evpn json")
        .unwrap()
        .to_string();
    assert!(
        !v.contains("\"stale\":true"),
        "stale paths left at the RR after the restart: {v}"
    );
    // The RR did withdraw (FRR 8.4) and host 1 kept its rows because host
    // 0 came back within the hold: the path this test is about ran.
    let kept_after = std::fs::read_to_string(&log1)
        .unwrap_or_default()
        .matches(HOLD_KEPT)
        .count();
    assert!(
        kept_after > kept_before,
        "host 1 never cancelled a held withdraw: did the RR withdraw at all?"
    );
}

/// What evpnd logs when a re-advertisement cancels a held withdraw.
const HOLD_KEPT: &str = "re-advertised within the withdraw hold";

/// Flood, stop host 0's evpnd, `wait_down` for its peer to notice, check
/// host 1's rows, start it again; then loss, exact rows, the sweep and no
/// deleted row. Gives the fabric back for more checks.
fn restart_core(
    mut fabric: Fabric,
    want: &[BTreeSet<String>],
    wait_down: &dyn Fn(&Fabric),
) -> Fabric {
    let vm0 = fabric.vms_of(0, VNI).next().unwrap();
    let vm1 = fabric.vms_of(1, VNI).next().unwrap();
    // Each monitor's probe row is a local MAC for a moment: the daemons
    // advertise and withdraw it, and the other host holds that withdraw
    // (withdraw_hold_ms). One monitor at a time, each after the other
    // host's table is exact again, so that a probe never meets the held
    // remote row of the same MAC; start the flood from exact tables.
    let mut monitors = Vec::new();
    for h in 0..fabric.hosts.len() {
        let port = &fabric.vms_of(h, VNI).next().unwrap().host_if;
        monitors.push(FdbMonitor::start(&fabric.hosts[h].ns, port).unwrap());
        for (o, w) in want.iter().enumerate() {
            wait_rows_exact(
                &fabric.hosts[o].ns.handle(),
                w,
                &format!("h{o} rows after h{h}'s monitor probe"),
            );
        }
    }

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

    // Stop: the session closes without a NOTIFICATION; host 1's rows stay.
    fabric.hosts[0].evpnd.as_mut().unwrap().stop().unwrap();
    wait_down(&fabric);
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
    fabric
}
