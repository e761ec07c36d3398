//! dist/evpnd.service: the directives the daemon relies on are there, and
//! `systemd-analyze verify` accepts the unit (when systemd-analyze exists).

use std::process::Command;

const UNIT: &str = include_str!("../dist/evpnd.service");

#[test]
fn unit_has_required_directives() {
    for d in [
        "Type=notify",
        "ExecStart=/usr/local/sbin/evpnd --config /etc/evpnd/evpnd.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "WatchdogSec=30",
        "Restart=on-failure",
        "RuntimeDirectory=evpnd",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_BIND_SERVICE CAP_NET_RAW",
        "AmbientCapabilities=CAP_NET_ADMIN CAP_NET_BIND_SERVICE CAP_NET_RAW",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
    ] {
        assert!(UNIT.lines().any(|l| l.trim() == d), "missing `{d}`");
    }
    // The socket evpnctl looks for lives in the RuntimeDirectory.
    assert!(evpnd::control::DEFAULT_SOCKET.starts_with("/run/evpnd/"));
}

#[test]
fn systemd_analyze_verify() {
    let Ok(out) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze not installed; skipping");
        return;
    };
    assert!(out.status.success());
    // verify insists that ExecStart exists; substitute a binary that does.
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("evpnd.service");
    std::fs::write(&unit, UNIT.replace("/usr/local/sbin/evpnd", "/bin/true")).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("evpnd.service:"),
        "systemd-analyze complained:\n{stderr}"
    );
}
