//! sd_notify(3) as systemd sees it: evpnd runs with NOTIFY_SOCKET pointing
//! at a datagram socket this test binds. READY=1 only once the control
//! socket and the VNI devices exist; WATCHDOG=1 keeps coming with
//! WATCHDOG_USEC; RELOADING=1/READY=1 around SIGHUP; STOPPING=1 on SIGTERM.
//! Also: `--log-format json` gives one JSON object per line.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use evpnd::testbed::{self, links, ChildGuard, Netns, NsHandle};
use serde_json::Value;

const EVPND: &str = env!("CARGO_BIN_EXE_evpnd");

/// Master of `dev`: `None` if there is no such device, `Some("")` if it
/// has none.
fn link_master(ns: &NsHandle, dev: &str) -> Option<String> {
    let o = ns
        .run_unchecked(&["ip", "-j", "link", "show", "dev", dev])
        .ok()?;
    if !o.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&o.stdout).ok()?;
    let l = v.get(0)?;
    Some(
        l.get("master")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
    )
}

/// Next notification within `timeout` (None on timeout).
fn recv(sock: &UnixDatagram, timeout: Duration) -> Option<String> {
    sock.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = [0u8; 4096];
    match sock.recv(&mut buf) {
        Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Err(_) => None,
    }
}

/// Wait for a notification containing `what`; returns it and the ones
/// seen before it.
fn wait_msg(sock: &UnixDatagram, what: &str, timeout: Duration) -> (String, Vec<String>) {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no {what} within {timeout:?}; got {seen:?}"
        );
        if let Some(m) = recv(sock, left) {
            if m.lines().any(|l| l == what) {
                return (m, seen);
            }
            seen.push(m);
        }
    }
}

const CONFIG: &str = r#"[bgp]
asn = 65000
router_id = "10.255.0.2"
local_address = "10.255.0.2"
hold_time = 9
connect_retry = 1

[[bgp.neighbor]]
address = "10.255.0.1"

[vtep]
local_ip = "10.255.0.2"

[[vni]]
id = 100
bridge = "br100"
create = true

[[vni]]
id = 200
bridge = "br200"
create = true
"#;

#[test]
fn notify_ready_watchdog_reload_stop_and_json_logs() {
    if !testbed::can_run() {
        return;
    }
    let ns = Netns::new("opssd").unwrap();
    links::link_up(&ns, "lo").unwrap();
    links::addr_add(&ns, "lo", "10.255.0.2/32").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    let ctl = dir.path().join("evpnd.sock");
    let cfg = dir.path().join("evpnd.toml");
    std::fs::write(
        &cfg,
        format!("{CONFIG}\n[control]\nsocket = \"{}\"\n", ctl.display()),
    )
    .unwrap();
    let log = dir.path().join("evpnd.log");
    let f = std::fs::File::create(&log).unwrap();

    let mut cmd = ns.command(&[EVPND]);
    cmd.arg("--config")
        .arg(&cfg)
        .args(["--log-format", "json", "--log-level", "debug"])
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "2000000")
        .env_remove("WATCHDOG_PID")
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(f.try_clone().unwrap())
        .stderr(f);
    let mut child = ChildGuard::spawn_configured(cmd, "evpnd").unwrap();
    let nsh = ns.handle();

    // READY=1: everything it promises is there at the moment it arrives.
    let (_, before) = wait_msg(&notify, "READY=1", Duration::from_secs(30));
    assert!(ctl.exists(), "READY=1 before the control socket existed");
    for vni in [100, 200] {
        assert_eq!(
            link_master(&nsh, &format!("vxlan{vni}")).as_deref(),
            Some(format!("br{vni}").as_str()),
            "READY=1 before vxlan{vni} was set up"
        );
        assert!(link_master(&nsh, &format!("br{vni}")).is_some());
    }
    assert!(!before.iter().any(|m| m.contains("READY=1")), "{before:?}");

    // Watchdog: WATCHDOG_USEC = 2 s, so at least every second or so.
    let t0 = Instant::now();
    let mut kicks = 0;
    while kicks < 3 {
        assert!(
            t0.elapsed() < Duration::from_secs(8),
            "only {kicks} WATCHDOG=1 in {:?}",
            t0.elapsed()
        );
        if recv(&notify, Duration::from_secs(3)).is_some_and(|m| m.contains("WATCHDOG=1")) {
            kicks += 1;
        }
    }

    // Reload: RELOADING=1, then READY=1 again.
    child.signal(libc::SIGHUP);
    wait_msg(&notify, "RELOADING=1", Duration::from_secs(10));
    wait_msg(&notify, "READY=1", Duration::from_secs(10));

    // Stop: STOPPING=1 and a clean exit.
    child.signal(libc::SIGTERM);
    wait_msg(&notify, "STOPPING=1", Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_status() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "evpnd did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");

    check_json_log(&log);
}

fn check_json_log(log: &Path) {
    let text = std::fs::read_to_string(log).unwrap();
    let mut lines = 0;
    let mut vni = false;
    let mut peer = false;
    for l in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"));
        assert!(v["timestamp"].is_string(), "{l}");
        assert!(v["level"].is_string(), "{l}");
        assert!(v["fields"]["message"].is_string(), "{l}");
        let f = &v["fields"]["vni"];
        vni |= *f == 100 || *f == "100" || *f == 200 || *f == "200";
        peer |= v["fields"]["peer"] == "10.255.0.1";
        lines += 1;
    }
    assert!(lines > 3, "only {lines} log lines:\n{text}");
    assert!(vni, "no line with a vni field:\n{text}");
    assert!(peer, "no line with a peer field:\n{text}");
}
