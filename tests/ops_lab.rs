//! `evpnd-lab` as a user runs it: exits 0, every ping ok, nothing left.

use std::process::Command;

use evpnd::testbed::{self, frr, list_namespaces, netns::pid_in_name};

const LAB: &str = env!("CARGO_BIN_EXE_evpnd-lab");

/// Run the lab with `args`; check the exit code, the summary and that no
/// namespace or control socket of this run is left.
fn run_lab(args: &[&str]) {
    let child = Command::new(LAB)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let all = format!(
        "status {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );

    // Nothing of this run left, whatever happened.
    let leaked: Vec<String> = list_namespaces()
        .unwrap()
        .into_iter()
        .filter(|n| pid_in_name("evlab", n) == Some(pid))
        .collect();
    let sockets: Vec<String> = std::fs::read_dir("/run/evpnd")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&format!("evlab{pid}-")))
                .collect()
        })
        .unwrap_or_default();
    assert!(leaked.is_empty(), "namespaces left: {leaked:?}\n{all}");
    assert!(
        sockets.is_empty(),
        "control sockets left: {sockets:?}\n{all}"
    );

    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(stdout.contains("all BGP sessions Established"), "{all}");
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("pings ok: "))
        .unwrap_or_else(|| panic!("no summary\n{all}"));
    // "pings ok: N, failed: M, time: ..."
    let num = |key: &str| -> u64 {
        summary
            .split(key)
            .nth(1)
            .and_then(|r| r.split(',').next())
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("{key} in {summary:?}"))
    };
    // Default: 2 hosts with 1 VM each: one pair each way.
    assert!(num("pings ok:") >= 2, "{summary}\n{all}");
    assert_eq!(num("failed:"), 0, "{summary}\n{all}");
}

#[test]
fn lab_default_full_mesh() {
    if !testbed::can_run() {
        return;
    }
    run_lab(&[]);
}

#[test]
fn lab_with_frr_route_reflector() {
    if !testbed::can_run() {
        return;
    }
    if !frr::frr_installed() {
        eprintln!("skipping: FRR not installed");
        return;
    }
    run_lab(&["--frr"]);
}
