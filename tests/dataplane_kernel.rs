//! Dataplane against the real kernel: each test makes its own network
//! namespaces, runs the dataplane inside one (on a dedicated thread that
//! `setns`es into it) and checks the kernel with `bridge`/`ip` JSON output.
//! Needs root (CAP_NET_ADMIN / CAP_SYS_ADMIN); skipped with a message
//! otherwise.

use std::future::Future;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use evpnd::dataplane::{self, DataplaneConfig, DataplaneHandle, FloodMode, LocalEvent, VniSpec};
use evpnd_evpn::{Intent, MacAddress, Vni};
use serde_json::Value;
use tokio::sync::mpsc;

static COUNTER: AtomicUsize = AtomicUsize::new(0);
const DEADLINE: Duration = Duration::from_secs(15);

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipped: needs root for network namespaces");
            return;
        }
    };
}

/// A network namespace removed on drop (also when the test panics).
struct Netns {
    name: String,
    children: Vec<Child>,
    /// Views (for use inside the namespace thread) do not delete it.
    owner: bool,
    files: Vec<PathBuf>,
}

impl Netns {
    fn view(&self) -> Netns {
        Netns {
            name: self.name.clone(),
            children: Vec::new(),
            owner: false,
            files: Vec::new(),
        }
    }

    fn new(tag: &str) -> Netns {
        let name = format!(
            "evdp-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let st = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("run ip");
        assert!(st.success(), "ip netns add {name}");
        let ns = Netns {
            name,
            children: Vec::new(),
            owner: true,
            files: Vec::new(),
        };
        ns.sh("ip link set lo up");
        ns
    }

    /// Run a shell command inside the namespace; panics on failure.
    fn sh(&self, cmd: &str) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "sh", "-c", cmd])
            .output()
            .expect("spawn ip netns exec");
        assert!(
            out.status.success(),
            "`{cmd}` in {} failed: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn try_sh(&self, cmd: &str) -> bool {
        Command::new("ip")
            .args(["netns", "exec", &self.name, "sh", "-c", cmd])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    fn json(&self, cmd: &str) -> Vec<Value> {
        let out = self.sh(cmd);
        if out.trim().is_empty() {
            return Vec::new();
        }
        match serde_json::from_str::<Value>(&out) {
            Ok(Value::Array(a)) => a,
            other => panic!("`{cmd}`: not a JSON array: {other:?} ({out})"),
        }
    }

    /// Run `cmd` in the background with stdout and stderr in files (removed
    /// on drop); returns their paths.
    fn capture(&mut self, cmd: &str) -> (PathBuf, PathBuf) {
        let n = self.files.len();
        let out = std::env::temp_dir().join(format!("{}-{n}.out", self.name));
        let err = std::env::temp_dir().join(format!("{}-{n}.err", self.name));
        let c = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.name,
                "sh",
                "-c",
                &format!("exec {cmd}"),
            ])
            .stdout(std::fs::File::create(&out).expect("capture file"))
            .stderr(std::fs::File::create(&err).expect("capture file"))
            .spawn()
            .expect("spawn background command");
        self.children.push(c);
        self.files.push(out.clone());
        self.files.push(err.clone());
        (out, err)
    }

    fn stop_children(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.children.clear();
    }

    fn fdb(&self, dev: &str) -> Vec<Value> {
        self.json(&format!("bridge -j fdb show dev {dev}"))
    }

    fn fdb_rows_for(&self, dev: &str, mac: &str) -> Vec<Value> {
        self.fdb(dev)
            .into_iter()
            .filter(|r| r["mac"] == mac)
            .collect()
    }

    fn neighs(&self, dev: &str) -> Vec<Value> {
        self.json(&format!("ip -j neigh show dev {dev}"))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.stop_children();
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
        if self.owner {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.name])
                .status();
        }
    }
}

/// Run `f` on a fresh thread inside `ns`, on a current-thread runtime.
fn run_in<F, Fut>(ns: &Netns, f: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let path = format!("/run/netns/{}", ns.name);
    let t = std::thread::spawn(move || {
        enter(&path);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(f());
    });
    if let Err(p) = t.join() {
        std::panic::resume_unwind(p);
    }
}

fn enter(path: &str) {
    let file = std::fs::File::open(path).expect("open netns file");
    // SAFETY: valid namespace fd; affects only the calling thread.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if f() {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_event(
    rx: &mut mpsc::Receiver<LocalEvent>,
    what: &str,
    mut pred: impl FnMut(&LocalEvent) -> bool,
) -> LocalEvent {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(e)) if pred(&e) => return e,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("event channel closed while waiting for {what}"),
            Err(_) => panic!("timed out waiting for event {what}"),
        }
    }
}

fn vni(v: u32) -> Vni {
    Vni::new(v).expect("vni")
}

fn mac(s: &str) -> MacAddress {
    s.parse().expect("mac")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn spec(v: u32, create: bool, flood: FloodMode) -> VniSpec {
    VniSpec {
        vni: vni(v),
        bridge: format!("br{v}"),
        vxlan: format!("vx{v}"),
        create,
        local_ip: ip("10.0.0.1"),
        dstport: 4789,
        flood,
        vrf: None,
        mtu: None,
    }
}

fn config(vnis: Vec<VniSpec>) -> DataplaneConfig {
    let mut c = DataplaneConfig::new(vnis);
    // Long enough that the tests see the change-triggered repair, not the timer.
    c.reconcile_interval = Duration::from_secs(60);
    c
}

fn start(cfg: DataplaneConfig) -> (DataplaneHandle, mpsc::Receiver<LocalEvent>) {
    // RUST_LOG=evpnd=debug shows the dataplane's logs with the test output.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let (tx, rx) = mpsc::channel(100_000);
    let h = dataplane::spawn(cfg, tx).expect("spawn dataplane");
    (h, rx)
}

fn flags(r: &Value) -> Vec<String> {
    r["flags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The two rows one remote MAC must have: `dst VTEP self extern_learn` and
/// `extern_learn master BR`.
fn assert_remote_mac(ns: &Netns, dev: &str, br: &str, m: &str, vtep: &str) {
    let rows = ns.fdb_rows_for(dev, m);
    assert_eq!(rows.len(), 2, "rows for {m}: {rows:?}");
    let selfrow = rows
        .iter()
        .find(|r| flags(r).contains(&"self".to_string()))
        .expect("self row");
    assert_eq!(selfrow["dst"], vtep, "{rows:?}");
    assert!(
        flags(selfrow).contains(&"extern_learn".to_string()),
        "{rows:?}"
    );
    let master = rows.iter().find(|r| r["master"] == br).expect("master row");
    assert!(
        flags(master).contains(&"extern_learn".to_string()),
        "{rows:?}"
    );
}

fn flood_dsts(ns: &Netns, dev: &str) -> Vec<String> {
    let mut v: Vec<String> = ns
        .fdb_rows_for(dev, "00:00:00:00:00:00")
        .iter()
        .filter_map(|r| r["dst"].as_str().map(String::from))
        .collect();
    v.sort();
    v
}

#[test]
fn create_devices_reload_and_vrf_degrades() {
    require_root!();
    let ns = Netns::new("create");
    // A hand-made VNI that evpnd must never delete.
    ns.sh("ip link add br102 type bridge && ip link add vx102 type vxlan id 102 dstport 4789 local 10.0.0.1 nolearning \
           && ip link set vx102 master br102 && ip link set vx102 up && ip link set br102 up");
    let nsn = ns.view();
    run_in(&ns, move || async move {
        let ns = nsn;
        let mut with_vrf = spec(101, true, FloodMode::IngressReplication);
        with_vrf.vrf = Some("vrf-red".into());
        with_vrf.mtu = Some(1450);
        let specs = vec![
            spec(100, true, FloodMode::IngressReplication),
            with_vrf,
            spec(102, false, FloodMode::IngressReplication),
        ];
        let (h, mut rx) = start(config(specs));
        for v in [100, 101, 102] {
            wait_event(&mut rx, "VniUp", |e| {
                *e == LocalEvent::VniUp { vni: vni(v) }
            })
            .await;
        }
        let link = ns.json("ip -d -j link show vx100");
        let info = &link[0]["linkinfo"]["info_data"];
        assert_eq!(info["id"], 100);
        assert_eq!(info["port"], 4789);
        assert_eq!(info["local"], "10.0.0.1");
        assert_eq!(info["learning"], false);
        assert_eq!(link[0]["master"], "br100");
        assert!(link[0]["flags"]
            .as_array()
            .is_some_and(|f| f.contains(&Value::from("UP"))));
        let port = ns.json("bridge -d -j link show dev vx100");
        assert_eq!(port[0]["learning"], false, "{port:?}");
        assert_eq!(port[0]["neigh_suppress"], true, "{port:?}");
        assert_eq!(
            ns.json("ip -j link show br100")[0]["flags"]
                .as_array()
                .map(|f| f.contains(&Value::from("UP"))),
            Some(true)
        );
        assert_eq!(ns.json("ip -j link show vx101")[0]["mtu"], 1450);
        // No VRF on this kernel: the bridge works without one.
        assert!(ns.json("ip -d -j link show br101")[0]
            .get("master")
            .is_none());

        let snap = h.snapshot().await.expect("snapshot");
        let s100 = snap
            .vnis
            .iter()
            .find(|v| v.vni == Some(vni(100)))
            .expect("vni 100");
        assert!(s100.up);
        assert_eq!(s100.created.len(), 2);
        assert_eq!(
            (s100.port_learning, s100.neigh_suppress, s100.vxlan_learning),
            (Some(false), Some(true), Some(false))
        );
        assert_eq!(
            (s100.vxlan_local, s100.dstport),
            (Some(ip("10.0.0.1")), Some(4789))
        );

        // Reload: 101 goes (its created devices with it), 100 stays untouched,
        // 102 goes but its hand-made devices stay.
        let ifindex_before = ns.json("ip -j link show vx100")[0]["ifindex"].clone();
        h.set_vnis(vec![spec(100, true, FloodMode::IngressReplication)])
            .await
            .expect("reload");
        assert!(
            !ns.try_sh("ip link show vx101"),
            "created vx101 must be deleted"
        );
        assert!(
            !ns.try_sh("ip link show br101"),
            "created br101 must be deleted"
        );
        assert!(
            ns.try_sh("ip link show vx102") && ns.try_sh("ip link show br102"),
            "hand-made devices must stay"
        );
        assert_eq!(
            ns.json("ip -j link show vx100")[0]["ifindex"],
            ifindex_before
        );
        wait_event(&mut rx, "VniDown 102", |e| {
            *e == LocalEvent::VniDown { vni: vni(102) }
        })
        .await;

        // A reload that changes the local address re-creates the device
        // evpnd made (the kernel cannot change it on a live device).
        let mut moved = spec(100, true, FloodMode::IngressReplication);
        moved.local_ip = ip("10.0.0.9");
        h.set_vnis(vec![moved]).await.expect("reload");
        let info = ns.json("ip -d -j link show vx100");
        assert_eq!(info[0]["linkinfo"]["info_data"]["local"], "10.0.0.9");
        assert_eq!(info[0]["master"], "br100");

        // A created device deleted by hand comes back.
        ns.sh("ip link del vx100");
        eventually("vx100 re-created", || {
            ns.try_sh("ip link show vx100 | grep -q master")
        })
        .await;
    });
}

#[test]
fn remote_mac_flood_and_neighbor_programming() {
    require_root!();
    let ns = Netns::new("program");
    let nsn = ns.view();
    run_in(&ns, move || async move {
        let ns = nsn;
        let (h, mut rx) = start(config(vec![spec(100, true, FloodMode::IngressReplication)]));
        wait_event(&mut rx, "VniUp", |e| matches!(e, LocalEvent::VniUp { .. })).await;
        h.sweep_stale().await.expect("sweep");
        let v = vni(100);
        let m1 = "02:00:00:00:01:01";
        h.apply(vec![Intent::RemoteMacUpsert {
            vni: v,
            mac: mac(m1),
            vtep: ip("10.0.0.2"),
        }])
        .await
        .expect("apply");
        h.flush().await.expect("flush");
        assert_remote_mac(&ns, "vx100", "br100", m1, "10.0.0.2");
        // Move = replace, still exactly two rows.
        h.apply(vec![Intent::RemoteMacUpsert {
            vni: v,
            mac: mac(m1),
            vtep: ip("10.0.0.3"),
        }])
        .await
        .expect("apply");
        h.flush().await.expect("flush");
        assert_remote_mac(&ns, "vx100", "br100", m1, "10.0.0.3");
        // Every write was acknowledged as such (not merely repaired later).
        let st = h.stats();
        assert!(st.netlink_writes >= 2, "{st:?}");
        assert_eq!(st.netlink_errors, 0, "writes reported as failed: {st:?}");
        // Coalescing inside a batch: the last intent wins.
        h.apply(vec![
            Intent::RemoteMacRemove {
                vni: v,
                mac: mac(m1),
            },
            Intent::RemoteMacUpsert {
                vni: v,
                mac: mac(m1),
                vtep: ip("10.0.0.4"),
            },
        ])
        .await
        .expect("apply");
        h.flush().await.expect("flush");
        assert_remote_mac(&ns, "vx100", "br100", m1, "10.0.0.4");
        h.apply(vec![Intent::RemoteMacRemove {
            vni: v,
            mac: mac(m1),
        }])
        .await
        .expect("apply");
        h.flush().await.expect("flush");
        assert!(
            ns.fdb_rows_for("vx100", m1).is_empty(),
            "{:?}",
            ns.fdb("vx100")
        );

        // Flood list.
        h.apply(vec![
            Intent::FloodAdd {
                vni: v,
                vtep: ip("10.0.0.2"),
            },
            Intent::FloodAdd {
                vni: v,
                vtep: ip("10.0.0.3"),
            },
        ])
        .await
        .expect("apply");
        h.flush().await.expect("flush");
        assert_eq!(flood_dsts(&ns, "vx100"), vec!["10.0.0.2", "10.0.0.3"]);
        let row = ns.fdb_rows_for("vx100", "00:00:00:00:00:00").remove(0);
        assert_eq!(row["state"], "permanent");
        assert!(flags(&row).contains(&"self".to_string()));
        h.apply(vec![Intent::FloodRemove {
            vni: v,
            vtep: ip("10.0.0.2"),
        }])
        .await
        .expect("apply");
        h.flush().await.expect("flush");
        assert_eq!(flood_dsts(&ns, "vx100"), vec!["10.0.0.3"]);

        // Suppression neighbors, IPv4 and IPv6, on the bridge.
        let m2 = "02:00:00:00:01:02";
        h.apply(vec![
            Intent::NeighborUpsert {
                vni: v,
                ip: ip("192.168.10.7"),
                mac: mac(m2),
            },
            Intent::NeighborUpsert {
                vni: v,
                ip: ip("fd00::7"),
                mac: mac(m2),
            },
        ])
        .await
        .expect("apply");
        h.flush().await.expect("flush");
        let n = ns.neighs("br100");
        for a in ["192.168.10.7", "fd00::7"] {
            let e = n
                .iter()
                .find(|x| x["dst"] == a)
                .unwrap_or_else(|| panic!("neighbor {a}: {n:?}"));
            assert_eq!(e["lladdr"], m2);
            assert_eq!(e["state"], serde_json::json!(["NOARP"]));
            assert_eq!(e["protocol"], "245");
            assert!(e.get("extern_learn").is_some(), "{e:?}");
        }

        // Hand-deleted entries come back (notification-triggered repair).
        h.apply(vec![Intent::RemoteMacUpsert {
            vni: v,
            mac: mac(m1),
            vtep: ip("10.0.0.2"),
        }])
        .await
        .expect("apply");
        h.flush().await.expect("flush");
        ns.sh(&format!("bridge fdb del {m1} dev vx100 master; bridge fdb del {m1} dev vx100 self; \
                        bridge fdb del 00:00:00:00:00:00 dev vx100 dst 10.0.0.3 self; ip neigh del 192.168.10.7 dev br100"));
        eventually("hand-deleted entries restored", || {
            ns.fdb_rows_for("vx100", m1).len() == 2
                && flood_dsts(&ns, "vx100") == vec!["10.0.0.3"]
                && ns
                    .neighs("br100")
                    .iter()
                    .any(|x| x["dst"] == "192.168.10.7")
        })
        .await;
        assert_remote_mac(&ns, "vx100", "br100", m1, "10.0.0.2");

        // Foreign entries are left alone; an entry of ours nothing backs goes.
        ns.sh(
            "bridge fdb add 02:00:00:00:0f:01 dev vx100 dst 10.9.9.9 self permanent; \
               bridge fdb append 00:00:00:00:00:00 dev vx100 dst 10.9.9.8 self permanent; \
               ip neigh add 192.168.10.99 lladdr 02:00:00:00:0f:02 dev br100 nud permanent; \
               bridge fdb add 02:00:00:00:0e:01 dev vx100 dst 10.9.9.7 self extern_learn",
        );
        h.reconcile().await.expect("reconcile");
        assert_eq!(ns.fdb_rows_for("vx100", "02:00:00:00:0f:01").len(), 1);
        assert_eq!(flood_dsts(&ns, "vx100"), vec!["10.0.0.3", "10.9.9.8"]);
        assert!(ns
            .neighs("br100")
            .iter()
            .any(|x| x["dst"] == "192.168.10.99"));
        assert!(
            ns.fdb_rows_for("vx100", "02:00:00:00:0e:01").is_empty(),
            "unbacked extern_learn entry must go"
        );
        assert_remote_mac(&ns, "vx100", "br100", m1, "10.0.0.2");

        let st = h.stats();
        assert_eq!(st.remote_macs, 1);
        assert_eq!(st.flood_entries, 1);
        assert_eq!(st.neighbors, 2);
        assert!(st.repairs >= 4, "{st:?}");
    });
}

#[test]
fn restart_adopts_stale_entries_and_sweeps() {
    require_root!();
    let ns = Netns::new("adopt");
    let nsn = ns.view();
    run_in(&ns, move || async move {
        let ns = nsn;
        let v = vni(100);
        let (a, b) = ("02:00:00:00:02:01", "02:00:00:00:02:02");
        {
            let (h, mut rx) = start(config(vec![spec(100, true, FloodMode::IngressReplication)]));
            wait_event(&mut rx, "VniUp", |e| matches!(e, LocalEvent::VniUp { .. })).await;
            h.apply(vec![
                Intent::RemoteMacUpsert {
                    vni: v,
                    mac: mac(a),
                    vtep: ip("10.0.0.2"),
                },
                Intent::RemoteMacUpsert {
                    vni: v,
                    mac: mac(b),
                    vtep: ip("10.0.0.3"),
                },
                Intent::FloodAdd {
                    vni: v,
                    vtep: ip("10.0.0.2"),
                },
                Intent::FloodAdd {
                    vni: v,
                    vtep: ip("10.0.0.3"),
                },
                Intent::NeighborUpsert {
                    vni: v,
                    ip: ip("192.168.10.1"),
                    mac: mac(a),
                },
                Intent::NeighborUpsert {
                    vni: v,
                    ip: ip("192.168.10.2"),
                    mac: mac(b),
                },
            ])
            .await
            .expect("apply");
            h.flush().await.expect("flush");
            // Acked writes are no errors (netlink-proto swallows the acks).
            let st = h.stats();
            assert_eq!((st.netlink_writes, st.netlink_errors), (6, 0), "{st:?}");
        } // the first instance goes away with its handle

        let (h, mut rx) = start(config(vec![spec(100, true, FloodMode::IngressReplication)]));
        wait_event(&mut rx, "VniUp", |e| matches!(e, LocalEvent::VniUp { .. })).await;
        let snap = h.snapshot().await.expect("snapshot");
        assert!(snap.adopting);
        assert_eq!(snap.vnis[0].stale, 6, "{snap:?}");
        // Nothing was flushed by the restart.
        assert_remote_mac(&ns, "vx100", "br100", a, "10.0.0.2");
        assert_remote_mac(&ns, "vx100", "br100", b, "10.0.0.3");
        assert_eq!(flood_dsts(&ns, "vx100"), vec!["10.0.0.2", "10.0.0.3"]);
        // The periodic pass must not remove stale entries either.
        h.reconcile().await.expect("reconcile");
        assert_eq!(ns.neighs("br100").len(), 2);

        // The RIB refills only part of it.
        h.apply(vec![
            Intent::RemoteMacUpsert {
                vni: v,
                mac: mac(a),
                vtep: ip("10.0.0.2"),
            },
            Intent::FloodAdd {
                vni: v,
                vtep: ip("10.0.0.2"),
            },
            Intent::NeighborUpsert {
                vni: v,
                ip: ip("192.168.10.1"),
                mac: mac(a),
            },
        ])
        .await
        .expect("apply");
        h.flush().await.expect("flush");
        // Rewriting an adopted entry is no error.
        assert_eq!(h.stats().netlink_errors, 0, "{:?}", h.stats());
        h.sweep_stale().await.expect("sweep");
        assert_remote_mac(&ns, "vx100", "br100", a, "10.0.0.2");
        assert!(
            ns.fdb_rows_for("vx100", b).is_empty(),
            "{:?}",
            ns.fdb("vx100")
        );
        assert_eq!(flood_dsts(&ns, "vx100"), vec!["10.0.0.2"]);
        let n = ns.neighs("br100");
        assert_eq!(n.len(), 1, "{n:?}");
        assert_eq!(n[0]["dst"], "192.168.10.1");
        let snap = h.snapshot().await.expect("snapshot");
        assert!(!snap.adopting);
        assert_eq!(snap.vnis[0].stale, 0);
    });
}

/// A VM namespace with a veth whose other end is a port of `br`.
fn add_vm(host: &Netns, vm: &Netns, port: &str, br: &str, addr: &str) -> String {
    host.sh(&format!("ip link add {port} type veth peer name eth0 netns {} && ip link set {port} master {br} && ip link set {port} up", vm.name));
    vm.sh(&format!(
        "ip addr add {addr} dev eth0 && ip link set eth0 up"
    ));
    vm.json("ip -j link show eth0")[0]["address"]
        .as_str()
        .expect("vm mac")
        .to_string()
}

#[test]
fn local_macs_and_neighbors_are_learned() {
    require_root!();
    let ns = Netns::new("learn");
    let vm = Netns::new("learnvm");
    let nsn = ns.view();
    let vmn = vm.view();
    run_in(&ns, move || async move {
        let ns = nsn;
        let vm = vmn;
        let (h, mut rx) = start(config(vec![spec(100, true, FloodMode::IngressReplication)]));
        wait_event(&mut rx, "VniUp", |e| matches!(e, LocalEvent::VniUp { .. })).await;
        let v = vni(100);
        ns.sh("ip addr add 192.168.10.1/24 dev br100");
        let vm_mac = add_vm(&ns, &vm, "vm1", "br100", "192.168.10.5/24");
        // A real frame: the bridge learns the VM's MAC, the bridge's ARP
        // gives a neighbor binding.
        vm.sh("ping -c 2 -W 2 192.168.10.1 >/dev/null");
        let vmm = mac(&vm_mac);
        wait_event(&mut rx, "MacAdd for the VM", |e| {
            *e == LocalEvent::MacAdd { vni: v, mac: vmm }
        })
        .await;
        wait_event(&mut rx, "NeighAdd for the VM", |e| {
            *e == LocalEvent::NeighAdd {
                vni: v,
                ip: ip("192.168.10.5"),
                mac: vmm,
            }
        })
        .await;
        // A static/dynamic entry added by hand on a local port counts too.
        let m = "02:00:00:00:03:01";
        ns.sh(&format!("bridge fdb add {m} dev vm1 master dynamic"));
        wait_event(&mut rx, "MacAdd", |e| {
            *e == LocalEvent::MacAdd {
                vni: v,
                mac: mac(m),
            }
        })
        .await;
        ns.sh(&format!("bridge fdb del {m} dev vm1 master"));
        wait_event(&mut rx, "MacRemove", |e| {
            *e == LocalEvent::MacRemove {
                vni: v,
                mac: mac(m),
            }
        })
        .await;
        ns.sh("ip neigh del 192.168.10.5 dev br100");
        wait_event(&mut rx, "NeighRemove", |e| {
            *e == LocalEvent::NeighRemove {
                vni: v,
                ip: ip("192.168.10.5"),
            }
        })
        .await;
        // Our own remote entries are not local MACs.
        let r = "02:00:00:00:03:02";
        h.apply(vec![Intent::RemoteMacUpsert {
            vni: v,
            mac: mac(r),
            vtep: ip("10.0.0.2"),
        }])
        .await
        .expect("apply");
        h.flush().await.expect("flush");
        // The VM's MAC moving behind the tunnel is a local removal.
        h.apply(vec![Intent::RemoteMacUpsert {
            vni: v,
            mac: vmm,
            vtep: ip("10.0.0.2"),
        }])
        .await
        .expect("apply");
        h.flush().await.expect("flush");
        wait_event(&mut rx, "MacRemove after move", |e| {
            *e == LocalEvent::MacRemove { vni: v, mac: vmm }
        })
        .await;
        let snap = h.snapshot().await.expect("snapshot");
        assert!(!snap.vnis[0].local_macs.contains(&mac(r)), "{snap:?}");
        // The VM speaks again: the bridge takes the entry over from the
        // tunnel; that is a MacAdd, and reconciliation does not steal it back.
        vm.sh("ping -c 1 -W 2 192.168.10.1 >/dev/null");
        wait_event(&mut rx, "MacAdd after moving back", |e| {
            *e == LocalEvent::MacAdd { vni: v, mac: vmm }
        })
        .await;
        h.reconcile().await.expect("reconcile");
        let rows = ns.fdb_rows_for("vm1", &vm_mac);
        assert!(rows.iter().any(|r| r["master"] == "br100"), "{rows:?}");
        assert!(!ns
            .fdb_rows_for("vx100", &vm_mac)
            .iter()
            .any(|r| r["master"] == "br100"));
    });
}

#[test]
fn arp_and_nd_are_answered_by_the_bridge_and_not_flooded() {
    require_root!();
    let ns = Netns::new("arp");
    let vm = Netns::new("arpvm");
    let nsn = ns.view();
    let vmn = vm.view();
    run_in(&ns, move || async move {
        let mut ns = nsn;
        let vm = vmn;
        let (h, mut rx) = start(config(vec![spec(100, true, FloodMode::IngressReplication)]));
        wait_event(&mut rx, "VniUp", |e| matches!(e, LocalEvent::VniUp { .. })).await;
        let v = vni(100);
        add_vm(&ns, &vm, "vm1", "br100", "192.168.10.5/24");
        vm.sh("ip -6 addr add fd00::5/64 dev eth0 nodad");
        let remote = "02:00:00:00:04:01";
        h.apply(vec![
            Intent::FloodAdd {
                vni: v,
                vtep: ip("10.0.0.2"),
            },
            Intent::RemoteMacUpsert {
                vni: v,
                mac: mac(remote),
                vtep: ip("10.0.0.2"),
            },
            Intent::NeighborUpsert {
                vni: v,
                ip: ip("192.168.10.77"),
                mac: mac(remote),
            },
            Intent::NeighborUpsert {
                vni: v,
                ip: ip("fd00::77"),
                mac: mac(remote),
            },
        ])
        .await
        .expect("apply");
        h.flush().await.expect("flush");
        let cap = ns.capture("tcpdump -l -n -i vx100 arp or icmp6");
        eventually("tcpdump ready", || {
            std::fs::read_to_string(&cap.1).is_ok_and(|e| e.contains("listening on"))
        })
        .await;
        // Requests are answered locally (the echoes themselves go nowhere).
        vm.try_sh("ping -c 1 -W 1 192.168.10.77");
        vm.try_sh("ping -6 -c 1 -W 1 fd00::77");
        for a in ["192.168.10.77", "fd00::77"] {
            let n = vm.json(&format!("ip -j neigh show {a} dev eth0"));
            assert_eq!(
                n.first().map(|x| x["lladdr"].clone()),
                Some(Value::from(remote)),
                "{a}: {n:?}"
            );
        }
        // Control: addresses without a suppression entry are flooded. They
        // go out after the suppressed ones, so once they show up in the
        // capture, anything for .77 would have shown up too.
        vm.try_sh("ping -c 1 -W 1 192.168.10.78");
        vm.try_sh("ping -6 -c 1 -W 1 fd00::78");
        eventually("control ARP and NS captured", || {
            std::fs::read_to_string(&cap.0)
                .is_ok_and(|o| o.contains("192.168.10.78") && o.contains("who has fd00::78"))
        })
        .await;
        let out = std::fs::read_to_string(&cap.0).unwrap_or_default();
        assert!(
            !out.contains("192.168.10.77"),
            "ARP for a suppressed address left via vxlan: {out}"
        );
        assert!(
            !out.contains("who has fd00::77"),
            "NS for a suppressed address left via vxlan: {out}"
        );
        ns.stop_children();
    });
}

#[test]
fn overrun_resyncs_and_bulk_write_rate() {
    require_root!();
    let ns = Netns::new("bulk");
    let nsn = ns.view();
    run_in(&ns, move || async move {
        let ns = nsn;
        let mut cfg = config(vec![spec(100, true, FloodMode::IngressReplication)]);
        // Tiny notification buffer: thousands of changes must overrun it.
        cfg.monitor_rcvbuf = 4096;
        let (h, mut rx) = start(cfg);
        wait_event(&mut rx, "VniUp", |e| matches!(e, LocalEvent::VniUp { .. })).await;
        h.sweep_stale().await.expect("sweep");
        ns.sh("ip link add vm1 type veth peer name vm1p && ip link set vm1 master br100 && ip link set vm1 up && ip link set vm1p up");
        // Let the re-dump that the new port triggers happen first, so that
        // only the overrun path can recover what the tiny buffer loses.
        let r0 = h.stats().reconciles;
        eventually("port-triggered reconcile", || h.stats().reconciles > r0).await;
        let (r1, s1) = (h.stats().reconciles, h.stats().resyncs);
        let batch: String = (0..3000u32)
            .map(|i| {
                format!(
                    "fdb add 02:10:00:00:{:02x}:{:02x} dev vm1 master static\n",
                    i >> 8,
                    i & 0xff
                )
            })
            .collect();
        std::fs::write(format!("/tmp/{}.batch", ns.name), &batch).expect("write batch");
        ns.sh(&format!("bridge -batch /tmp/{}.batch", ns.name));
        let dels: String = (0..1000u32)
            .map(|i| {
                format!(
                    "fdb del 02:10:00:00:{:02x}:{:02x} dev vm1 master\n",
                    i >> 8,
                    i & 0xff
                )
            })
            .collect();
        std::fs::write(format!("/tmp/{}.batch", ns.name), &dels).expect("write batch");
        ns.sh(&format!("bridge -batch /tmp/{}.batch", ns.name));
        let _ = std::fs::remove_file(format!("/tmp/{}.batch", ns.name));

        // The event stream, folded, must equal the kernel's table.
        let mut local = std::collections::BTreeSet::new();
        let deadline = tokio::time::Instant::now() + DEADLINE;
        // (vm1p's own MAC may be learned too: it sends IPv6 ND on its own.)
        let ours = |m: &MacAddress| m.0[..2] == [0x02, 0x10];
        while local.iter().filter(|m| ours(m)).count() != 2000 {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(LocalEvent::MacAdd { mac, .. })) => {
                    local.insert(mac);
                }
                Ok(Some(LocalEvent::MacRemove { mac, .. })) => {
                    local.remove(&mac);
                }
                Ok(Some(_)) => {}
                _ => panic!(
                    "local MACs did not converge: {} events-state, stats {:?}",
                    local.len(),
                    h.stats()
                ),
            }
        }
        let kernel: std::collections::BTreeSet<MacAddress> = ns
            .fdb("vm1")
            .iter()
            .filter(|r| r["master"] == "br100" && r["state"] != "permanent")
            .filter_map(|r| r["mac"].as_str().and_then(|m| m.parse().ok()))
            .collect();
        let snap = h.snapshot().await.expect("snapshot");
        let reported: std::collections::BTreeSet<MacAddress> = snap.vnis[0]
            .local_macs
            .iter()
            .copied()
            .filter(|m| ours(m))
            .collect();
        let kernel: std::collections::BTreeSet<MacAddress> =
            kernel.into_iter().filter(|m| ours(m)).collect();
        let local: std::collections::BTreeSet<MacAddress> =
            local.into_iter().filter(|m| ours(m)).collect();
        assert_eq!(kernel.len(), 2000);
        assert!(
            reported == kernel,
            "snapshot differs: {:?}",
            reported
                .symmetric_difference(&kernel)
                .take(5)
                .collect::<Vec<_>>()
        );
        assert!(
            local == kernel,
            "events differ: {:?}",
            local
                .symmetric_difference(&kernel)
                .take(5)
                .collect::<Vec<_>>()
        );
        assert!(
            local
                .iter()
                .all(|m| (u32::from(m.0[4]) << 8 | u32::from(m.0[5])) >= 1000),
            "removed MACs still reported"
        );
        assert!(
            h.stats().resyncs >= 1,
            "no overrun was induced: {:?}",
            h.stats()
        );
        assert!(
            h.stats().resyncs > s1,
            "no overrun during the batches: {:?}",
            h.stats()
        );
        assert_eq!(
            h.stats().reconciles - r1,
            h.stats().resyncs - s1,
            "only overrun resyncs may have re-dumped"
        );

        // 10k remote MACs in one batch: rate and completeness.
        let n = 10_000u32;
        let intents: Vec<Intent> = (0..n)
            .map(|i| Intent::RemoteMacUpsert {
                vni: vni(100),
                mac: MacAddress([0x02, 0x20, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8]),
                vtep: IpAddr::from([10, 0, 1, (i % 200) as u8 + 1]),
            })
            .collect();
        let t = Instant::now();
        h.apply(intents).await.expect("apply");
        h.flush().await.expect("flush");
        let written = t.elapsed();
        let complete = |ns: &Netns| {
            let fdb = ns.fdb("vx100");
            let ext = |r: &&Value| flags(r).contains(&"extern_learn".to_string());
            let selfrows = fdb
                .iter()
                .filter(|r| ext(r) && r["dst"].is_string())
                .count();
            let masters = fdb
                .iter()
                .filter(|r| ext(r) && r["master"] == "br100")
                .count();
            (selfrows, masters) == (n as usize, n as usize)
        };
        // `flush` returned: every row is in the kernel now, none failed.
        assert!(complete(&ns), "not all 10k remote MACs have both rows");
        assert_eq!(h.stats().netlink_errors, 0, "{:?}", h.stats());
        let verified = t.elapsed();
        eprintln!(
            "10k remote MACs: written in {written:?} ({:.0} entries/s), all present after {verified:?}",
            f64::from(n) / written.as_secs_f64()
        );
        let snap = h.snapshot().await.expect("snapshot");
        assert_eq!(snap.vnis[0].remote_macs.len(), n as usize);
        assert!(snap.vnis[0].remote_macs_without_master.is_empty());
    });
}

#[test]
fn multicast_mode_creates_group_device_and_no_flood_entries() {
    require_root!();
    let ns = Netns::new("mcast");
    ns.sh("ip link add ul0 type veth peer name ul0p && ip addr add 10.0.0.1/24 dev ul0 && ip link set ul0 up && ip link set ul0p up");
    let nsn = ns.view();
    run_in(&ns, move || async move {
        let ns = nsn;
        let flood = FloodMode::Multicast {
            group: ip("239.1.1.1"),
            dev: Some("ul0".into()),
        };
        let (h, mut rx) = start(config(vec![spec(200, true, flood)]));
        wait_event(&mut rx, "VniUp", |e| matches!(e, LocalEvent::VniUp { .. })).await;
        let link = ns.json("ip -d -j link show vx200");
        let info = &link[0]["linkinfo"]["info_data"];
        assert_eq!(info["group"], "239.1.1.1", "{info:?}");
        assert_eq!(info["link"], "ul0", "{info:?}");
        h.apply(vec![Intent::FloodAdd {
            vni: vni(200),
            vtep: ip("10.0.0.2"),
        }])
        .await
        .expect("apply");
        h.flush().await.expect("flush");
        // The kernel's own entry for the group is not ours: a sweep keeps it.
        h.sweep_stale().await.expect("sweep");
        assert_eq!(
            flood_dsts(&ns, "vx200"),
            vec!["239.1.1.1"],
            "multicast mode must not get flood entries"
        );
    });
}

/// Two hypervisors (namespaces joined by a veth underlay), each with a VM
/// namespace: the VMs ping over VXLAN, first with a static flood list, then
/// (after a reload to ingress replication without flood entries) with only
/// remote MAC and suppression entries.
#[test]
fn two_hosts_ping_over_vxlan() {
    require_root!();
    let (a, b) = (Netns::new("hosta"), Netns::new("hostb"));
    let (va, vb) = (Netns::new("vma"), Netns::new("vmb"));
    a.sh(&format!(
        "ip link add ul type veth peer name ul netns {} && ip addr add 10.0.0.1/24 dev ul && ip link set ul up",
        b.name
    ));
    b.sh("ip addr add 10.0.0.2/24 dev ul && ip link set ul up");
    let (an, bn, van, vbn) = (a.view(), b.view(), va.view(), vb.view());
    run_in(&a, move || async move {
        let (a, b, va, vb) = (an, bn, van, vbn);
        let mk = |local: &str, other: &str, flood: bool| {
            let mut s = spec(
                300,
                true,
                if flood {
                    FloodMode::Static(vec![ip(other)])
                } else {
                    FloodMode::IngressReplication
                },
            );
            s.local_ip = ip(local);
            s
        };
        // Sockets belong to the namespace they were opened in, so one
        // thread can run both dataplanes.
        let (ha, mut rxa) = start(config(vec![mk("10.0.0.1", "10.0.0.2", true)]));
        enter(&format!("/run/netns/{}", b.name));
        let (hb, mut rxb) = start(config(vec![mk("10.0.0.2", "10.0.0.1", true)]));
        wait_event(&mut rxa, "VniUp A", |e| {
            matches!(e, LocalEvent::VniUp { .. })
        })
        .await;
        wait_event(&mut rxb, "VniUp B", |e| {
            matches!(e, LocalEvent::VniUp { .. })
        })
        .await;
        ha.sweep_stale().await.expect("sweep");
        hb.sweep_stale().await.expect("sweep");
        let mac_a = mac(&add_vm(&a, &va, "vm1", "br300", "192.168.30.1/24"));
        let mac_b = mac(&add_vm(&b, &vb, "vm1", "br300", "192.168.30.2/24"));
        assert_eq!(flood_dsts(&a, "vx300"), vec!["10.0.0.2"]);
        assert!(
            va.try_sh("ping -c 3 -i 0.2 -W 2 192.168.30.2"),
            "ping with static flood list failed"
        );

        // Reload both to ingress replication: the static flood entries go.
        ha.set_vnis(vec![mk("10.0.0.1", "10.0.0.2", false)])
            .await
            .expect("reload");
        hb.set_vnis(vec![mk("10.0.0.2", "10.0.0.1", false)])
            .await
            .expect("reload");
        assert!(flood_dsts(&a, "vx300").is_empty(), "{:?}", a.fdb("vx300"));
        assert!(flood_dsts(&b, "vx300").is_empty());
        va.sh("ip neigh flush dev eth0");
        vb.sh("ip neigh flush dev eth0");
        // Without any entry the VMs cannot reach each other...
        assert!(
            !va.try_sh("ping -c 1 -W 1 192.168.30.2"),
            "ping must fail without flood or MAC entries"
        );
        // ...with the EVPN type-2 state they can, ARP answered locally.
        let v = vni(300);
        ha.apply(vec![
            Intent::RemoteMacUpsert {
                vni: v,
                mac: mac_b,
                vtep: ip("10.0.0.2"),
            },
            Intent::NeighborUpsert {
                vni: v,
                ip: ip("192.168.30.2"),
                mac: mac_b,
            },
        ])
        .await
        .expect("apply A");
        ha.flush().await.expect("flush");
        hb.apply(vec![
            Intent::RemoteMacUpsert {
                vni: v,
                mac: mac_a,
                vtep: ip("10.0.0.1"),
            },
            Intent::NeighborUpsert {
                vni: v,
                ip: ip("192.168.30.1"),
                mac: mac_a,
            },
        ])
        .await
        .expect("apply B");
        hb.flush().await.expect("flush");
        va.sh("ip neigh flush dev eth0");
        vb.sh("ip neigh flush dev eth0");
        assert!(
            va.try_sh("ping -c 3 -i 0.2 -W 2 192.168.30.2"),
            "ping with remote MAC entries failed"
        );
    });
}

/// A VNI whose devices appear after start (create = false) starts working
/// without a restart: desired state recorded earlier is written then.
#[test]
fn devices_appearing_later_get_the_desired_state() {
    require_root!();
    let ns = Netns::new("late");
    let nsn = ns.view();
    run_in(&ns, move || async move {
        let ns = nsn;
        let (h, mut rx) = start(config(vec![spec(
            400,
            false,
            FloodMode::IngressReplication,
        )]));
        h.sweep_stale().await.expect("sweep");
        let v = vni(400);
        let m = "02:00:00:00:05:01";
        h.apply(vec![
            Intent::RemoteMacUpsert {
                vni: v,
                mac: mac(m),
                vtep: ip("10.0.0.2"),
            },
            Intent::FloodAdd {
                vni: v,
                vtep: ip("10.0.0.2"),
            },
        ])
        .await
        .expect("apply");
        h.flush().await.expect("flush");
        assert_eq!(
            h.snapshot().await.expect("snapshot").vnis[0].vxlan_ifindex,
            None
        );
        ns.sh("ip link add br400 type bridge && ip link add vx400 type vxlan id 400 dstport 4789 local 10.0.0.1 nolearning \
               && ip link set vx400 master br400 && bridge link set dev vx400 learning off neigh_suppress on \
               && ip link set vx400 up && ip link set br400 up");
        wait_event(&mut rx, "VniUp", |e| *e == LocalEvent::VniUp { vni: v }).await;
        eventually("entries written once the devices exist", || {
            ns.fdb_rows_for("vx400", m).len() == 2 && flood_dsts(&ns, "vx400") == vec!["10.0.0.2"]
        })
        .await;
        assert_remote_mac(&ns, "vx400", "br400", m, "10.0.0.2");
        // The VNI goes down with its device and nothing evpnd did not create is deleted.
        ns.sh("ip link set vx400 nomaster");
        wait_event(&mut rx, "VniDown", |e| *e == LocalEvent::VniDown { vni: v }).await;
        h.set_vnis(vec![]).await.expect("reload");
        assert!(ns.try_sh("ip link show vx400") && ns.try_sh("ip link show br400"));
    });
}
