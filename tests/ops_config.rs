//! Operator contract of the configuration: `evpnd check-config` and
//! `evpnd --config` on broken files name file, line and key for each
//! problem; a refused start touches nothing. Also: evpnctl without a daemon.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use evpnd::testbed::{self, Netns};

const EVPND: &str = env!("CARGO_BIN_EXE_evpnd");
const EVPNCTL: &str = env!("CARGO_BIN_EXE_evpnctl");

const GOOD: &str = r#"[bgp]
asn = 65000
router_id = "10.255.0.2"
local_address = "10.255.0.2"

[[bgp.neighbor]]
address = "10.255.0.1"

[vtep]
local_ip = "10.255.0.2"

[[vni]]
id = 100
bridge = "br100"
create = true
"#;

/// One broken variant of [`GOOD`]: the replaced text, its replacement, and
/// the line and key the error must name.
struct Broken {
    name: &'static str,
    from: &'static str,
    to: &'static str,
    line: usize,
    key: &'static str,
}

const BROKEN: &[Broken] = &[
    Broken {
        name: "syntax",
        from: "asn = 65000",
        to: "asn = 65000 x",
        line: 2,
        key: "bgp.asn",
    },
    Broken {
        name: "unknown-key",
        from: "create = true\n",
        to: "create = true\ncolour = 1\n",
        line: 16,
        key: "vni[0].colour",
    },
    Broken {
        name: "wrong-type",
        from: "asn = 65000",
        to: "asn = \"65000\"",
        line: 2,
        key: "bgp.asn",
    },
    Broken {
        name: "bad-vni",
        from: "id = 100",
        to: "id = 16777216",
        line: 13,
        key: "vni[0].id",
    },
    Broken {
        name: "duplicate-neighbor",
        from: "address = \"10.255.0.1\"\n",
        to: "address = \"10.255.0.1\"\n\n[[bgp.neighbor]]\naddress = \"10.255.0.1\"\n",
        line: 10,
        key: "bgp.neighbor[1].address",
    },
    Broken {
        name: "static-flood-without-vteps",
        from: "create = true\n",
        to: "create = true\nflood = \"static\"\n",
        line: 16,
        key: "vni[0].flood",
    },
    Broken {
        name: "neighbor-is-local",
        from: "address = \"10.255.0.1\"",
        to: "address = \"10.255.0.2\"",
        line: 7,
        key: "bgp.neighbor[0].address",
    },
    Broken {
        name: "missing-required",
        from: "local_ip = \"10.255.0.2\"\n",
        to: "dstport = 4789\n",
        line: 9,
        key: "vtep.local_ip",
    },
];

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

fn broken_text(b: &Broken) -> String {
    assert!(GOOD.contains(b.from), "{}: pattern not in GOOD", b.name);
    GOOD.replacen(b.from, b.to, 1)
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn check_config_names_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good", GOOD);
    let o = Command::new(EVPND)
        .arg("check-config")
        .arg(&good)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    // `--check` is the same check.
    let o = Command::new(EVPND)
        .args(["--check", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));

    for b in BROKEN {
        let p = write(dir.path(), b.name, &broken_text(b));
        let o = Command::new(EVPND)
            .arg("check-config")
            .arg(&p)
            .output()
            .unwrap();
        assert!(!o.status.success(), "{} accepted: {}", b.name, text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        let loc = format!("{}:{}:", p.display(), b.line);
        let line = err
            .lines()
            .find(|l| l.starts_with(&loc))
            .unwrap_or_else(|| panic!("{}: no line starting with {loc}: {}", b.name, text(&o)));
        assert!(
            line.contains(&format!("`{}`", b.key)),
            "{}: key `{}` not named in {line:?}",
            b.name,
            b.key
        );
    }
}

#[test]
fn check_config_reports_every_semantic_problem() {
    let dir = tempfile::tempdir().unwrap();
    let t = GOOD.replacen("id = 100", "id = 16777216", 1).replacen(
        "create = true\n",
        "create = true\nflood = \"static\"\n",
        1,
    );
    let p = write(dir.path(), "two", &t);
    let o = Command::new(EVPND)
        .arg("check-config")
        .arg(&p)
        .output()
        .unwrap();
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    let d = p.display().to_string();
    assert!(
        err.contains(&format!("{d}:13:")) && err.contains("`vni[0].id`"),
        "{err}"
    );
    assert!(
        err.contains(&format!("{d}:16:")) && err.contains("`vni[0].flood`"),
        "{err}"
    );
}

#[test]
fn check_config_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("absent.toml");
    let o = Command::new(EVPND)
        .arg("check-config")
        .arg(&p)
        .output()
        .unwrap();
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&p.display().to_string()),
        "{}",
        text(&o)
    );
}

/// Links, addresses and the FDB of a namespace, to compare before/after.
fn ns_state(ns: &Netns) -> String {
    let mut s = String::new();
    for args in [
        &["ip", "-d", "link", "show"][..],
        &["ip", "addr", "show"],
        &["bridge", "fdb", "show"],
    ] {
        let o = ns.run(args).unwrap();
        s.push_str(&String::from_utf8_lossy(&o.stdout));
    }
    s
}

#[test]
fn start_with_bad_config_refuses_and_changes_nothing() {
    if !testbed::can_run() {
        return;
    }
    let ns = Netns::new("opscfg").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("evpnd.sock");
    let before = ns_state(&ns);
    for b in BROKEN {
        // A control socket of our own, so a start that got far would show.
        let t = format!(
            "{}\n[control]\nsocket = \"{}\"\n",
            broken_text(b),
            sock.display()
        );
        let p = write(dir.path(), b.name, &t);
        let check = Command::new(EVPND)
            .arg("check-config")
            .arg(&p)
            .output()
            .unwrap();
        let o = ns
            .run_unchecked(&[
                std::ffi::OsStr::new(EVPND),
                "--config".as_ref(),
                p.as_os_str(),
            ])
            .unwrap();
        assert!(!o.status.success(), "{} started: {}", b.name, text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("invalid configuration, not starting"),
            "{}: {}",
            b.name,
            text(&o)
        );
        // The same diagnostics as check-config, line for line.
        let check_err = String::from_utf8_lossy(&check.stderr);
        for l in check_err.lines() {
            assert!(err.contains(l), "{}: {l:?} missing from {err}", b.name);
        }
        assert!(
            err.contains(&format!("{}:{}:", p.display(), b.line)) && err.contains(b.key),
            "{}: {err}",
            b.name
        );
        assert!(!sock.exists(), "{}: control socket created", b.name);
    }
    assert_eq!(before, ns_state(&ns), "namespace changed by refused starts");
}

#[test]
fn evpnctl_without_daemon_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("nobody.sock");
    for args in [
        &["show", "neighbors"][..],
        &["show", "vnis", "--json"],
        &["status"],
    ] {
        let o = Command::new(EVPNCTL)
            .arg("--socket")
            .arg(&sock)
            .args(args)
            .output()
            .unwrap();
        assert!(!o.status.success(), "{args:?}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        if !args.contains(&"--json") {
            assert!(
                err.contains("evpnd is not running") && err.contains(&sock.display().to_string()),
                "{args:?}: {}",
                text(&o)
            );
        }
    }
    // A path that exists but is no socket: still a clear message, no panic.
    let f = dir.path().join("plain-file");
    std::fs::write(&f, "x").unwrap();
    let o = Command::new(EVPNCTL)
        .arg("--socket")
        .arg(&f)
        .arg("status")
        .output()
        .unwrap();
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains(&f.display().to_string()), "{}", text(&o));
}
