//! Runs the real evpnctl binary against a control socket served by the real
//! server with a handler that returns canned answers.

use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use evpnd::control::*;
use tokio::sync::{mpsc, oneshot};

fn route(rd: &str, mac: &str, ip: Option<&str>, best: bool) -> RouteInfo {
    RouteInfo {
        route_type: 2,
        rd: rd.into(),
        esi: None,
        eth_tag: 0,
        mac: Some(mac.into()),
        ip: ip.map(|i| i.parse().unwrap()),
        vni: Some(100),
        originator_ip: None,
        next_hop: Some("10.255.0.1".parse().unwrap()),
        best,
        local: false,
        peer: Some("10.255.0.11".parse().unwrap()),
        originator_id: Some("10.255.0.1".parse().unwrap()),
        cluster_list: vec!["10.255.0.11".parse().unwrap()],
        local_pref: Some(100),
        ext_communities: vec!["RT:65000:100".into(), "ET:8".into()],
        seq: Some(2),
        sticky: false,
    }
}

fn canned(req: &Request) -> Response {
    match req {
        Request::ShowNeighbors { neighbor } => {
            let n = NeighborInfo {
                address: "10.255.0.1".parse().unwrap(),
                remote_asn: 65000,
                description: Some("rr1".into()),
                state: SessionState::Established,
                uptime_secs: 3723,
                router_id: Some("10.255.0.1".parse().unwrap()),
                hold_time_secs: Some(90),
                prefixes_received: 12,
                prefixes_sent: 3,
                messages_in: 120,
                messages_out: 118,
                updates_in: 20,
                updates_out: 4,
                last_error: None,
            };
            let mut m = n.clone();
            m.address = "10.255.0.3".parse().unwrap();
            m.state = SessionState::Active;
            m.uptime_secs = 0;
            m.last_error = Some("Hold Timer Expired".into());
            match neighbor {
                Some(a) if *a == n.address => Response::Neighbors { neighbors: vec![n] },
                Some(_) => Response::error(ErrorCode::NotFound, "no such neighbor"),
                None => Response::Neighbors {
                    neighbors: vec![n, m],
                },
            }
        }
        Request::ShowRoutes { .. } => Response::Routes {
            routes: vec![
                route("10.255.0.1:2", "aa:bb:cc:dd:ee:ff", Some("10.0.0.1"), true),
                route("10.255.0.1:2", "aa:bb:cc:dd:ee:ff", None, true),
                route("10.255.0.5:2", "aa:bb:cc:dd:ee:01", None, false),
                RouteInfo {
                    route_type: 3,
                    mac: None,
                    originator_ip: Some("10.255.0.2".parse().unwrap()),
                    local: true,
                    peer: None,
                    ..route("10.255.0.2:1", "", None, true)
                },
            ],
        },
        Request::ShowVnis { .. } => Response::Vnis {
            vnis: vec![VniInfo {
                vni: 100,
                bridge: "br100".into(),
                vxlan: "vxlan100".into(),
                state: OperState::Up,
                flood: "ingress-replication".into(),
                local_macs: 3,
                remote_macs: 12,
                vteps: vec!["10.255.0.4".parse().unwrap()],
                rd: "10.255.0.2:1".into(),
                import_rt: vec!["65000:100".into()],
                export_rt: vec!["65000:100".into()],
            }],
        },
        Request::ShowMacs { .. } => Response::Macs {
            macs: vec![
                MacInfo {
                    vni: 100,
                    mac: "aa:bb:cc:dd:ee:ff".into(),
                    kind: MacKind::Remote,
                    vtep: Some("10.255.0.4".parse().unwrap()),
                    interface: None,
                    seq: 2,
                    sticky: true,
                    duplicate: false,
                    ips: vec!["10.0.0.1".parse().unwrap()],
                },
                MacInfo {
                    vni: 100,
                    mac: "52:54:00:00:00:01".into(),
                    kind: MacKind::Local,
                    vtep: None,
                    interface: Some("tap0".into()),
                    seq: 0,
                    sticky: false,
                    duplicate: false,
                    ips: vec![],
                },
            ],
        },
        Request::ShowVteps { .. } => Response::Vteps {
            vteps: vec![VtepInfo {
                vni: 100,
                vtep: "10.255.0.4".parse().unwrap(),
                source: VtepSource::Evpn,
            }],
        },
        Request::ClearNeighbor { address, soft } => Response::Cleared {
            address: *address,
            soft: *soft,
        },
        Request::Status => Response::Status(StatusInfo {
            version: "0.1.0".into(),
            pid: 42,
            uptime_secs: 90_000,
            asn: 65000,
            router_id: "10.255.0.2".parse().unwrap(),
            vtep_ip: "10.255.0.2".parse().unwrap(),
            config_file: Some("/etc/evpnd/evpnd.toml".into()),
            neighbors_configured: 2,
            neighbors_established: 1,
            vnis: 1,
            routes: 4,
            local_macs: 1,
            remote_macs: 1,
        }),
    }
}

struct Daemon {
    _rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
    socket: std::path::PathBuf,
    seen: Arc<Mutex<Vec<Request>>>,
}

fn start() -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("evpnd.sock");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (tx, mut rx) = mpsc::channel::<(Request, oneshot::Sender<Response>)>(8);
    let listener = rt.block_on(async { bind(&socket) }).unwrap();
    rt.spawn(serve_listener(listener, tx));
    let seen2 = seen.clone();
    rt.spawn(async move {
        while let Some((req, reply)) = rx.recv().await {
            let resp = canned(&req);
            seen2.lock().unwrap().push(req);
            let _ = reply.send(resp);
        }
    });
    Daemon {
        _rt: rt,
        _dir: dir,
        socket,
        seen,
    }
}

fn evpnctl(socket: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_evpnctl"))
        .arg("-s")
        .arg(socket)
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn json(socket: &Path, args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.push("--json");
    let out = stdout(&evpnctl(socket, &a));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("invalid JSON ({e}):\n{out}"))
}

#[test]
fn human_output() {
    let d = start();
    let s = d.socket.as_path();

    let out = stdout(&evpnctl(s, &["show", "neighbors"]));
    assert!(out.contains("Neighbor"), "{out}");
    let row = out.lines().find(|l| l.starts_with("10.255.0.1 ")).unwrap();
    for cell in ["65000", "120", "118", "01:02:03", "12", "rr1"] {
        assert!(row.contains(cell), "{row}");
    }
    assert!(out
        .lines()
        .any(|l| l.starts_with("10.255.0.3") && l.contains("Active")));
    assert!(out.contains("Total number of neighbors 2, 1 established"));

    let out = stdout(&evpnctl(s, &["show", "neighbors", "10.255.0.1"]));
    assert!(
        out.contains("BGP neighbor is 10.255.0.1, remote AS 65000"),
        "{out}"
    );
    assert!(
        out.contains("BGP state = Established, up for 01:02:03"),
        "{out}"
    );

    let out = stdout(&evpnctl(s, &["show", "routes"]));
    assert!(out.contains("Route Distinguisher: 10.255.0.1:2"), "{out}");
    assert!(out.contains("Route Distinguisher: 10.255.0.5:2"), "{out}");
    let best = out
        .lines()
        .find(|l| l.contains("[2]:[0]:[48]:[aa:bb:cc:dd:ee:ff]:[32]:[10.0.0.1]"))
        .unwrap();
    assert!(best.starts_with(" *> "), "{best}");
    assert!(best.contains("10.255.0.1"), "{best}");
    let not_best = out
        .lines()
        .find(|l| l.contains("[aa:bb:cc:dd:ee:01]"))
        .unwrap();
    assert!(not_best.starts_with(" *  "), "{not_best}");
    let local = out
        .lines()
        .find(|l| l.contains("[3]:[0]:[32]:[10.255.0.2]"))
        .unwrap();
    assert!(local.starts_with(" *>l"), "{local}");
    assert!(out.contains("RT:65000:100 ET:8 MM:2"), "{out}");
    assert!(out.contains("Displayed 4 prefixes (4 paths)"), "{out}");

    let out = stdout(&evpnctl(s, &["show", "vnis"]));
    let row = out.lines().find(|l| l.starts_with("100 ")).unwrap();
    for cell in [
        "br100",
        "vxlan100",
        "up",
        "ingress-replication",
        "3",
        "12",
        "1",
    ] {
        assert!(row.contains(cell), "{row}");
    }
    let out = stdout(&evpnctl(s, &["show", "vnis", "--vni", "100"]));
    assert!(out.contains("Import RTs: 65000:100"), "{out}");

    let out = stdout(&evpnctl(s, &["show", "macs", "--vni", "100"]));
    let row = out
        .lines()
        .find(|l| l.starts_with("aa:bb:cc:dd:ee:ff"))
        .unwrap();
    for cell in ["remote", "S", "10.255.0.4", "10.0.0.1"] {
        assert!(row.contains(cell), "{row}");
    }
    assert!(out
        .lines()
        .any(|l| l.starts_with("52:54:00:00:00:01") && l.contains("tap0")));

    let out = stdout(&evpnctl(s, &["show", "vteps"]));
    assert!(out
        .lines()
        .any(|l| l.starts_with("100") && l.contains("10.255.0.4") && l.contains("evpn")));

    let out = stdout(&evpnctl(s, &["clear", "neighbor", "10.255.0.1"]));
    assert!(out.contains("route refresh requested"), "{out}");
    let out = stdout(&evpnctl(s, &["clear", "neighbor", "10.255.0.1", "--hard"]));
    assert!(out.contains("session reset"), "{out}");

    let out = stdout(&evpnctl(s, &["status"]));
    assert!(
        out.contains("AS 65000, router ID 10.255.0.2, 1/2 neighbors established"),
        "{out}"
    );
    assert!(out.contains("up 1d01h00m"), "{out}");

    // The daemon's error reaches the user with exit code 1.
    let o = evpnctl(s, &["show", "neighbors", "--neighbor", "10.9.9.9"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no such neighbor"));
}

#[test]
fn json_output_and_requests() {
    let d = start();
    let s = d.socket.as_path();

    let v = json(s, &["show", "neighbors"]);
    assert_eq!(v[0]["address"], "10.255.0.1");
    assert_eq!(v[0]["state"], "established");
    assert_eq!(v[1]["last_error"], "Hold Timer Expired");

    let v = json(
        s,
        &[
            "show",
            "routes",
            "--vni",
            "100",
            "--mac",
            "AA-BB-CC-DD-EE-FF",
            "--type",
            "2",
            "--neighbor",
            "10.255.0.1",
        ],
    );
    assert_eq!(v.as_array().unwrap().len(), 4);
    assert_eq!(v[0]["mac"], "aa:bb:cc:dd:ee:ff");
    assert_eq!(v[0]["best"], true);

    assert_eq!(json(s, &["show", "vnis"])[0]["vxlan"], "vxlan100");
    assert_eq!(json(s, &["show", "macs"])[0]["type"], "remote");
    assert_eq!(
        json(s, &["show", "vteps", "--vni", "100"])[0]["source"],
        "evpn"
    );
    let v = json(s, &["clear", "neighbor", "10.255.0.1", "--soft"]);
    assert_eq!(v["soft"], true);
    let v = json(s, &["status"]);
    assert_eq!(v["neighbors_established"], 1);

    let o = evpnctl(s, &["show", "neighbors", "10.9.9.9", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["error"]["code"], "not_found");

    // The CLI sent what the user asked for, normalized.
    let seen = d.seen.lock().unwrap();
    let addr: IpAddr = "10.255.0.1".parse().unwrap();
    assert!(seen.contains(&Request::ShowRoutes {
        vni: Some(100),
        mac: Some("aa:bb:cc:dd:ee:ff".into()),
        route_type: Some(2),
        neighbor: Some(addr),
    }));
    assert!(seen.contains(&Request::ClearNeighbor {
        address: addr,
        soft: true
    }));
    assert!(seen.contains(&Request::ShowVteps { vni: Some(100) }));
}

#[test]
fn daemon_not_running() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("evpnd.sock");
    let o = evpnctl(&sock, &["status"]);
    assert_eq!(o.status.code(), Some(3));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!(
            "evpnd is not running (no socket at {})",
            sock.display()
        )),
        "{err}"
    );
    let o = evpnctl(&sock, &["show", "routes", "--json"]);
    assert_eq!(o.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["error"]["code"], "not_running");
}

#[test]
fn bad_arguments_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("evpnd.sock");
    for args in [
        &["show", "routes", "--mac", "zz"][..],
        &["show", "vnis", "--vni", "16777216"],
        &["clear", "neighbor", "10.0.0.1", "--soft", "--hard"],
        &["show", "routes", "--type", "9"],
    ] {
        let o = evpnctl(&sock, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
    }
}
