//! The test bed's guards clean up after themselves: processes, namespaces,
//! leftovers of dead runs. (Fake daemons stand in for evpnd here.)

use std::path::Path;
use std::time::Duration;

use evpnd::testbed::{self, cleanup_prefix, list_namespaces, Evpnd, Netns, NsHandle, RunDir};

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn netns_drop_kills_processes_and_deletes() {
    if !testbed::can_run() {
        return;
    }
    let ns = Netns::new("tbq").unwrap();
    let name = ns.name().to_string();
    let mut child = ns.spawn(&["sleep", "300"], "sleep", None).unwrap();
    let pid = child.pid().unwrap();
    child.detach(); // only the namespace guard is left to kill it
                    // A second process, not ours at all, started by a shell in the ns.
    ns.run(&["sh", "-c", "sleep 300 >/dev/null 2>&1 &"])
        .unwrap();
    assert_eq!(ns.pids().unwrap().len(), 2);
    drop(ns);
    assert!(!list_namespaces().unwrap().contains(&name));
    testbed::wait_until(Duration::from_secs(5), "sleep to be reaped", || {
        // Not our child any more after detach; init reaps it.
        Ok(!alive(pid)
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.contains(") Z "))
                .unwrap_or(true))
    })
    .unwrap();
}

#[test]
fn exec_errors_carry_stderr() {
    if !testbed::can_run() {
        return;
    }
    let ns = Netns::new("tbq").unwrap();
    let err = ns.exec("ip link set nosuchdev up").unwrap_err().to_string();
    assert!(err.contains("ip link set nosuchdev up"), "{err}");
    assert!(err.to_lowercase().contains("nosuchdev"), "{err}");
    assert_eq!(ns.exec("echo hi").unwrap(), "hi\n");
}

#[test]
fn cleanup_removes_only_dead_runs() {
    if !testbed::can_run() {
        return;
    }
    // A pid that is not running: pid_max is at most 2^22.
    let dead = (4_000_000..4_194_304u32)
        .find(|p| !alive(*p))
        .expect("a free pid");
    let stale_name = format!("tbr{dead}-0");
    let mut stale = Netns::with_name(&stale_name).unwrap();
    stale.detach();
    let inside = NsHandle::existing(&stale_name);
    let mut sleeper = inside.spawn(&["sleep", "300"], "sleep", None).unwrap();
    sleeper.detach();
    // A namespace of this (live) run with the same prefix survives.
    let live = Netns::new("tbr").unwrap();

    let removed = cleanup_prefix("tbr", false).unwrap();
    assert_eq!(removed, vec![stale_name.clone()]);
    let names = list_namespaces().unwrap();
    assert!(!names.contains(&stale_name));
    assert!(names.contains(&live.name().to_string()));
}

/// A stand-in for evpnd: creates the control socket path named in its
/// config (as a plain file) and sleeps; records each start.
const FAKE_EVPND: &str = r#"#!/bin/sh
[ "$1" = "--config" ] || exit 64
sock=$(sed -n 's/^socket = "\(.*\)"$/\1/p' "$2")
echo started >> "$(dirname "$2")/starts"
touch "$sock"
exec sleep 300
"#;

#[test]
fn evpnd_guard_start_restart_drop() {
    if !testbed::can_run() {
        return;
    }
    let dir = RunDir::new("fake-evpnd").unwrap();
    let bin = dir.write("evpnd", FAKE_EVPND).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let ns = Netns::new("tbq").unwrap();
    let cfg = testbed::EvpndConfig::new(65000, "10.255.0.2".parse().unwrap(), ns.name())
        .neighbor("10.255.0.1".parse().unwrap())
        .vni(100);
    let mut e = Evpnd::start_with(&ns.handle(), &bin, &cfg).unwrap();
    e.wait_ready(Duration::from_secs(10)).unwrap();
    assert!(e.is_running());
    let pids_before = ns.pids().unwrap();
    assert_eq!(pids_before.len(), 1);

    e.restart().unwrap();
    e.wait_ready(Duration::from_secs(10)).unwrap();
    let pids_after = ns.pids().unwrap();
    assert_eq!(pids_after.len(), 1);
    assert_ne!(pids_before, pids_after);
    assert!(!alive(pids_before[0]));

    let sock = e.socket().to_path_buf();
    drop(e);
    assert!(ns.pids().unwrap().is_empty());
    assert!(!sock.exists(), "control socket left behind");
}
