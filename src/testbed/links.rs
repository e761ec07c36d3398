//! Links and kernel state: veth pairs, bridges, vxlan devices, VM
//! namespaces, and readers for what the kernel holds (FDB, neighbors).
//!
//! Interfaces are created directly inside their namespaces (`ip -n`), so
//! their names only need to be unique per namespace.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use serde::Deserialize;

use super::error::{Error, Result};
use super::netns::NsHandle;
use super::process::{ChildGuard, RunDir};

/// Longest interface name Linux accepts (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;

fn check_ifname(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > IFNAME_MAX || name.contains(['/', ' ', ':']) {
        return Err(Error::Invalid {
            what: "interface name",
            value: name.to_string(),
            reason: format!("1..={IFNAME_MAX} characters without '/', ':' or spaces"),
        });
    }
    Ok(())
}

/// Create a veth pair `a_if` (in `a`) <-> `b_if` (in `b`), both up.
pub fn veth(a: &NsHandle, a_if: &str, b: &NsHandle, b_if: &str) -> Result<()> {
    check_ifname(a_if)?;
    check_ifname(b_if)?;
    a.ip(&[
        "link",
        "add",
        a_if,
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
    ])?;
    link_up(a, a_if)?;
    link_up(b, b_if)?;
    Ok(())
}

/// `ip link set IF up`.
pub fn link_up(ns: &NsHandle, ifname: &str) -> Result<()> {
    ns.ip(&["link", "set", ifname, "up"]).map(drop)
}

/// `ip addr add CIDR dev IF` (e.g. "10.255.0.2/32" on "lo").
pub fn addr_add(ns: &NsHandle, ifname: &str, cidr: &str) -> Result<()> {
    ns.ip(&["addr", "add", cidr, "dev", ifname]).map(drop)
}

/// `ip link set IF address MAC`.
pub fn set_mac(ns: &NsHandle, ifname: &str, mac: &str) -> Result<()> {
    ns.ip(&["link", "set", ifname, "address", mac]).map(drop)
}

/// `ip route add DST via GW`.
pub fn route_add(ns: &NsHandle, dst: &str, via: Ipv4Addr) -> Result<()> {
    ns.ip(&["route", "add", dst, "via", &via.to_string()])
        .map(drop)
}

/// Set a sysctl inside the namespace (e.g. `net.ipv4.ip_forward`, "1").
pub fn sysctl(ns: &NsHandle, key: &str, value: &str) -> Result<()> {
    ns.run(&["sysctl", "-q", "-w", &format!("{key}={value}")])
        .map(drop)
}

/// Create a bridge and bring it up.
pub fn bridge_add(ns: &NsHandle, name: &str) -> Result<()> {
    check_ifname(name)?;
    ns.ip(&["link", "add", "name", name, "type", "bridge"])?;
    link_up(ns, name)
}

/// Parameters of a vxlan device, as the VTEP host setup expects it:
/// one device per VNI, no `remote`, learning off.
#[derive(Debug, Clone)]
pub struct VxlanSpec {
    pub name: String,
    pub vni: u32,
    pub dstport: u16,
    pub local: Ipv4Addr,
    pub learning: bool,
}

impl VxlanSpec {
    /// `vxlan{vni}`, port 4789, `nolearning`.
    pub fn new(vni: u32, local: Ipv4Addr) -> VxlanSpec {
        VxlanSpec {
            name: format!("vxlan{vni}"),
            vni,
            dstport: 4789,
            local,
            learning: false,
        }
    }
}

/// Create a vxlan device (not yet up).
pub fn vxlan_add(ns: &NsHandle, spec: &VxlanSpec) -> Result<()> {
    check_ifname(&spec.name)?;
    let vni = spec.vni.to_string();
    let port = spec.dstport.to_string();
    let local = spec.local.to_string();
    let mut args = vec![
        "link", "add", &spec.name, "type", "vxlan", "id", &vni, "dstport", &port, "local", &local,
    ];
    if !spec.learning {
        args.push("nolearning");
    }
    ns.ip(&args).map(drop)
}

/// `ip link set IF master BRIDGE`.
pub fn enslave(ns: &NsHandle, ifname: &str, bridge: &str) -> Result<()> {
    ns.ip(&["link", "set", ifname, "master", bridge]).map(drop)
}

/// `bridge link set dev IF learning on|off neigh_suppress on|off`.
pub fn bridge_port_flags(
    ns: &NsHandle,
    ifname: &str,
    learning: bool,
    neigh_suppress: bool,
) -> Result<()> {
    let onoff = |b: bool| if b { "on" } else { "off" };
    ns.run(&[
        "bridge",
        "link",
        "set",
        "dev",
        ifname,
        "learning",
        onoff(learning),
        "neigh_suppress",
        onoff(neigh_suppress),
    ])
    .map(drop)
}

/// The full per-VNI VTEP setup FRR's zebra expects: bridge `bridge`,
/// vxlan device (id, dstport 4789, local, nolearning) enslaved with
/// `learning off` and `neigh_suppress on`, everything up.
pub fn vtep_vni(ns: &NsHandle, vni: u32, bridge: &str, local: Ipv4Addr) -> Result<VxlanSpec> {
    bridge_add(ns, bridge)?;
    let spec = VxlanSpec::new(vni, local);
    vxlan_add(ns, &spec)?;
    enslave(ns, &spec.name, bridge)?;
    bridge_port_flags(ns, &spec.name, false, true)?;
    link_up(ns, &spec.name)?;
    Ok(spec)
}

/// Attach a VM namespace to a bridge: veth `host_if` (in `host`, enslaved
/// to `bridge`) <-> `eth0` (in `vm`) with `mac` and `ip_cidr`.
pub fn vm_attach(
    host: &NsHandle,
    bridge: &str,
    host_if: &str,
    vm: &NsHandle,
    mac: &str,
    ip_cidr: &str,
) -> Result<()> {
    veth(host, host_if, vm, "eth0")?;
    vm.ip(&["link", "set", "eth0", "down"])?;
    set_mac(vm, "eth0", mac)?;
    addr_add(vm, "eth0", ip_cidr)?;
    link_up(vm, "eth0")?;
    enslave(host, host_if, bridge)
}

/// Summary of a `ping` run.
#[derive(Debug, Clone, PartialEq)]
pub struct PingResult {
    pub transmitted: u32,
    pub received: u32,
    /// Packet loss in percent, as ping reports it.
    pub loss_percent: f64,
}

impl PingResult {
    /// All packets answered.
    pub fn ok(&self) -> bool {
        self.transmitted > 0 && self.received == self.transmitted
    }
}

/// Parse ping's summary line `N packets transmitted, M received, ... X% packet loss`.
pub fn parse_ping(out: &str) -> Result<PingResult> {
    let line = out
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .ok_or_else(|| Error::parse("ping output", format!("no summary line in {out:?}")))?;
    let mut transmitted = None;
    let mut received = None;
    let mut loss = None;
    for part in line.split(',') {
        let part = part.trim();
        let num = part.split_whitespace().next().unwrap_or("");
        if part.ends_with("packets transmitted") {
            transmitted = num.parse().ok();
        } else if part.ends_with("received") {
            received = num.parse().ok();
        } else if part.ends_with("packet loss") {
            loss = num.trim_end_matches('%').parse().ok();
        }
    }
    match (transmitted, received, loss) {
        (Some(transmitted), Some(received), Some(loss_percent)) => Ok(PingResult {
            transmitted,
            received,
            loss_percent,
        }),
        _ => Err(Error::parse("ping summary", line)),
    }
}

/// Ping `ip` from namespace `from` `count` times (0.2 s apart, 1 s reply
/// timeout). Loss is a result, not an error.
pub fn ping(from: &NsHandle, ip: IpAddr, count: u32) -> Result<PingResult> {
    let out = from.run_unchecked(&[
        "ping",
        "-n",
        "-q",
        "-c",
        &count.max(1).to_string(),
        "-i",
        "0.2",
        "-W",
        "1",
        &ip.to_string(),
    ])?;
    parse_ping(&String::from_utf8_lossy(&out.stdout))
}

/// One row of `bridge -j fdb show`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct FdbRow {
    pub mac: String,
    pub ifname: String,
    #[serde(default)]
    pub dst: Option<String>,
    #[serde(default)]
    pub vlan: Option<u16>,
    #[serde(default)]
    pub vni: Option<u32>,
    #[serde(default)]
    pub master: Option<String>,
    #[serde(default)]
    pub flags: Vec<String>,
    #[serde(default)]
    pub state: String,
}

impl FdbRow {
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// A head-end replication entry (`00:00:00:00:00:00 dst VTEP self`).
    pub fn is_flood_entry(&self) -> bool {
        self.mac == "00:00:00:00:00:00" && self.dst.is_some()
    }
}

/// All FDB rows of the namespace.
pub fn bridge_fdb(ns: &NsHandle) -> Result<Vec<FdbRow>> {
    let out = ns.run(&["bridge", "-j", "fdb", "show"])?;
    serde_json::from_slice(&out.stdout).map_err(|e| Error::parse("bridge -j fdb show", e))
}

/// One row of `ip -j neigh show`.
#[derive(Debug, Clone, PartialEq)]
pub struct NeighRow {
    pub dst: String,
    pub dev: String,
    pub lladdr: Option<String>,
    pub state: Vec<String>,
    /// Keys ip prints as flags with a null value (`extern_learn`, `router`, ...).
    pub flags: Vec<String>,
}

/// Parse `ip -j neigh show` output.
pub fn parse_neighbors(json: &[u8]) -> Result<Vec<NeighRow>> {
    let v: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| Error::parse("ip -j neigh show", e))?;
    let arr = v
        .as_array()
        .ok_or_else(|| Error::parse("ip -j neigh show", "not an array"))?;
    let mut rows = Vec::new();
    for item in arr {
        let obj = item
            .as_object()
            .ok_or_else(|| Error::parse("ip -j neigh show", "row is not an object"))?;
        let s = |k: &str| obj.get(k).and_then(|v| v.as_str()).map(str::to_string);
        rows.push(NeighRow {
            dst: s("dst").unwrap_or_default(),
            dev: s("dev").unwrap_or_default(),
            lladdr: s("lladdr"),
            state: obj
                .get("state")
                .and_then(|v| v.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            flags: obj
                .iter()
                .filter(|(_, v)| v.is_null())
                .map(|(k, _)| k.clone())
                .collect(),
        });
    }
    Ok(rows)
}

/// All neighbor entries (IPv4 and IPv6) of the namespace.
pub fn neighbors(ns: &NsHandle) -> Result<Vec<NeighRow>> {
    let out = ns.run(&["ip", "-j", "neigh", "show"])?;
    parse_neighbors(&out.stdout)
}

/// A locally administered unicast MAC numbered `n` within `space`
/// (`02:SS:NN:NN:NN:NN`), for generating many distinct MACs.
pub fn nth_mac(space: u8, n: u32) -> String {
    let b = n.to_be_bytes();
    format!(
        "02:{space:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[0], b[1], b[2], b[3]
    )
}

/// Add static FDB entries on bridge port `port` (`bridge fdb add MAC dev
/// PORT master static`) in one `bridge -batch` run: the bridge treats them
/// as local MACs behind that port, so a VTEP advertises them (benchmarks).
pub fn fdb_add_local_batch(ns: &NsHandle, port: &str, macs: &[String]) -> Result<()> {
    check_ifname(port)?;
    let dir = RunDir::new(&format!("fdb-{}", ns.name()))?;
    let mut batch = String::with_capacity(macs.len() * 48);
    for m in macs {
        batch.push_str(&format!("fdb add {m} dev {port} master static\n"));
    }
    let file = dir.write("fdb.batch", &batch)?;
    ns.run(&["bridge".as_ref(), "-batch".as_ref(), file.as_os_str()])
        .map(drop)
}

/// Number of forwarding entries of a bridge: /sys/class/net/BR/brforward
/// holds 16 bytes per entry; read from inside the namespace.
pub fn brforward_count(ns: &NsHandle, bridge: &str) -> Result<usize> {
    check_ifname(bridge)?;
    let bytes = ns.read_file(&format!("/sys/class/net/{bridge}/brforward"))?;
    Ok(bytes.len() / 16)
}

/// A running tcpdump. [`stop`](Tcpdump::stop) returns the packet count.
#[derive(Debug)]
pub struct Tcpdump {
    child: ChildGuard,
    out: std::path::PathBuf,
    err: std::path::PathBuf,
    _dir: RunDir,
}

impl Tcpdump {
    /// Start capturing on `ifname` in `ns` with a pcap `filter` (may be
    /// empty); returns once tcpdump reports it is listening.
    pub fn start(ns: &NsHandle, ifname: &str, filter: &str) -> Result<Tcpdump> {
        let dir = RunDir::new(&format!("tcpdump-{}", ns.name()))?;
        let out = dir.path().join("packets.txt");
        let err = dir.path().join("tcpdump.err");
        let mut cmd = ns.command(&[
            "tcpdump",
            "-n",
            "-l",
            "-q",
            "--immediate-mode",
            "-i",
            ifname,
        ]);
        cmd.args(filter.split_whitespace());
        cmd.stdin(std::process::Stdio::null());
        let fo = std::fs::File::create(&out)
            .map_err(|e| Error::io(format!("create {}", out.display()), e))?;
        let fe = std::fs::File::create(&err)
            .map_err(|e| Error::io(format!("create {}", err.display()), e))?;
        cmd.stdout(fo).stderr(fe);
        let child = ChildGuard::spawn_configured(cmd, "tcpdump")?;
        let mut t = Tcpdump {
            child,
            out,
            err,
            _dir: dir,
        };
        let errp = t.err.clone();
        super::wait::wait_until(
            std::time::Duration::from_secs(10),
            &format!("tcpdump on {ifname} in {} to listen", ns.name()),
            || {
                let text = std::fs::read_to_string(&errp).unwrap_or_default();
                if !t.child.is_running() {
                    return Err(Error::parse("tcpdump startup", text));
                }
                Ok(text.contains("listening on"))
            },
        )?;
        Ok(t)
    }

    /// Stop the capture (SIGINT) and return how many packets it captured.
    pub fn stop(mut self) -> Result<usize> {
        self.child.stop_with(libc::SIGINT)?;
        let summary = std::fs::read_to_string(&self.err)
            .map_err(|e| Error::io(format!("read {}", self.err.display()), e))?;
        if let Some(n) = parse_captured(&summary) {
            return Ok(n);
        }
        count_lines(&self.out)
    }

    /// Wait until at least `n` packets were captured.
    pub fn wait_packets(&self, n: usize, timeout: std::time::Duration) -> Result<()> {
        super::wait::wait_for(timeout, &format!("{n} captured packets"), || {
            let got = count_lines(&self.out)?;
            Ok(if got >= n {
                super::wait::Poll::Ready(())
            } else {
                super::wait::Poll::NotYet(format!("{got} packets"))
            })
        })
    }

    /// Lines captured so far (one per packet with `-q`).
    pub fn lines(&self) -> Result<Vec<String>> {
        let text = std::fs::read_to_string(&self.out)
            .map_err(|e| Error::io(format!("read {}", self.out.display()), e))?;
        Ok(text.lines().map(str::to_string).collect())
    }
}

/// A running `bridge monitor fdb` in a namespace: every FDB change (adds
/// and `Deleted ...` lines) while it runs, e.g. to prove a daemon restart
/// removed nothing.
#[derive(Debug)]
pub struct FdbMonitor {
    child: ChildGuard,
    out: std::path::PathBuf,
    _dir: RunDir,
}

impl FdbMonitor {
    /// MAC of the probe entry [`start`](Self::start) adds and deletes on
    /// `probe_dev` (a daemon may advertise and withdraw it meanwhile).
    pub const PROBE_MAC: &'static str = "02:ee:ee:ee:ee:ee";

    /// Start monitoring; returns once the monitor has seen a probe entry
    /// (a static FDB row added and deleted on `probe_dev`), so nothing
    /// that happens afterwards is missed.
    pub fn start(ns: &NsHandle, probe_dev: &str) -> Result<FdbMonitor> {
        check_ifname(probe_dev)?;
        let dir = RunDir::new(&format!("fdbmon-{}", ns.name()))?;
        let out = dir.path().join("monitor.txt");
        let mut cmd = ns.command(&["bridge", "monitor", "fdb"]);
        let fo = std::fs::File::create(&out)
            .map_err(|e| Error::io(format!("create {}", out.display()), e))?;
        let fe = fo
            .try_clone()
            .map_err(|e| Error::io(format!("dup {}", out.display()), e))?;
        cmd.stdin(std::process::Stdio::null()).stdout(fo).stderr(fe);
        let child = ChildGuard::spawn_configured(cmd, "bridge monitor fdb")?;
        let mut m = FdbMonitor {
            child,
            out,
            _dir: dir,
        };
        // A locally administered MAC no VM uses.
        let probe = Self::PROBE_MAC;
        super::wait::wait_until(
            std::time::Duration::from_secs(10),
            &format!("bridge monitor in {} to report a probe entry", ns.name()),
            || {
                if !m.child.is_running() {
                    return Err(Error::parse("bridge monitor", "exited"));
                }
                let _ = ns.run_unchecked(&[
                    "bridge", "fdb", "replace", probe, "dev", probe_dev, "master", "static",
                ]);
                Ok(m.lines()?.iter().any(|l| l.starts_with(probe)))
            },
        )?;
        ns.run(&["bridge", "fdb", "del", probe, "dev", probe_dev, "master"])?;
        Ok(m)
    }

    /// Lines reported so far.
    pub fn lines(&self) -> Result<Vec<String>> {
        let text = std::fs::read_to_string(&self.out)
            .map_err(|e| Error::io(format!("read {}", self.out.display()), e))?;
        Ok(text.lines().map(str::to_string).collect())
    }

    /// Stop monitoring and return every line.
    pub fn stop(mut self) -> Result<Vec<String>> {
        self.child.stop()?;
        self.lines()
    }
}

fn parse_captured(summary: &str) -> Option<usize> {
    summary.lines().find_map(|l| {
        let l = l.trim();
        let n = l.strip_suffix("packets captured")?.trim();
        n.parse().ok()
    })
}

fn count_lines(p: &Path) -> Result<usize> {
    let text =
        std::fs::read_to_string(p).map_err(|e| Error::io(format!("read {}", p.display()), e))?;
    Ok(text.lines().count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_summary() {
        let out = "PING 1.2.3.4 (1.2.3.4) 56(84) bytes of data.\n\n--- 1.2.3.4 ping statistics ---\n3 packets transmitted, 2 received, 33.3333% packet loss, time 401ms\n";
        let r = parse_ping(out).unwrap();
        assert_eq!((r.transmitted, r.received), (3, 2));
        assert!((r.loss_percent - 33.3333).abs() < 1e-6);
        assert!(!r.ok());
        let out = "3 packets transmitted, 0 received, +3 errors, 100% packet loss, time 2ms";
        assert_eq!(parse_ping(out).unwrap().loss_percent, 100.0);
        assert!(parse_ping("nothing").is_err());
    }

    #[test]
    fn neighbor_flags() {
        let j = br#"[{"dst":"10.0.0.9","dev":"br0","lladdr":"02:00:00:00:00:09","extern_learn":null,"state":["NOARP"]}]"#;
        let rows = parse_neighbors(j).unwrap();
        assert_eq!(rows[0].flags, vec!["extern_learn".to_string()]);
        assert_eq!(rows[0].state, vec!["NOARP".to_string()]);
    }

    #[test]
    fn tcpdump_summary() {
        assert_eq!(
            parse_captured("x\n12 packets captured\n14 packets received by filter\n"),
            Some(12)
        );
    }
}
