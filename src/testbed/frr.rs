//! FRR (zebra + bgpd) instances inside a namespace, driven by vtysh.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::error::{Error, Result};
use super::netns::NsHandle;
use super::process::{dump_logs_if_panicking, run_checked, run_unchecked, ChildGuard, RunDir};
use super::wait::{wait_for, wait_until, Poll};

/// Where Debian installs the FRR daemons.
pub const FRR_DIR: &str = "/usr/lib/frr";

/// How long a daemon gets to open its vty socket.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Whether FRR's bgpd and vtysh are installed.
pub fn frr_installed() -> bool {
    Path::new(FRR_DIR).join("bgpd").exists() && Path::new("/usr/bin/vtysh").exists()
}

/// Uid and gid of user `frr` (FRR drops privileges to it).
fn frr_ids() -> Result<(u32, u32)> {
    let passwd =
        std::fs::read_to_string("/etc/passwd").map_err(|e| Error::io("read /etc/passwd", e))?;
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.first() == Some(&"frr") && f.len() > 3 {
                Some((f[2].parse().ok()?, f[3].parse().ok()?))
            } else {
                None
            }
        })
        .ok_or_else(|| Error::MissingTool {
            tool: "user frr".into(),
            hint: "apt-get install frr".into(),
        })
}

/// An FRR configuration and which daemons to run.
#[derive(Debug, Clone)]
pub struct FrrConfig {
    /// bgpd configuration text.
    pub bgpd_conf: String,
    /// Run zebra too (needed for `advertise-all-vni`); without it bgpd
    /// runs with `-Z`, enough for a route reflector.
    pub zebra: bool,
}

/// Parameters of an iBGP route reflector for l2vpn evpn that accepts
/// any client from `listen_range`.
#[derive(Debug, Clone)]
pub struct RrParams {
    pub asn: u32,
    pub router_id: Ipv4Addr,
    pub cluster_id: Ipv4Addr,
    pub listen_range: String,
    /// (keepalive, hold) in seconds.
    pub timers: (u16, u16),
    /// Also run zebra.
    pub zebra: bool,
    /// Configure these clients as static neighbors (in the peer group)
    /// instead of `bgp listen range`. FRR deletes a dynamic neighbor when
    /// its session drops (FRRouting/frr#10310). Either way FRR 8.4 keeps
    /// no graceful-restart stale routes for L2VPN EVPN: its NSF state
    /// covers SAFIs up to MPLS VPN only, so it withdraws a restarting
    /// VTEP's EVPN routes whatever its GR mode (no RR setting changes it).
    pub static_neighbors: Vec<Ipv4Addr>,
}

impl RrParams {
    pub fn new(asn: u32, router_id: Ipv4Addr, listen_range: &str) -> RrParams {
        RrParams {
            asn,
            router_id,
            cluster_id: router_id,
            listen_range: listen_range.to_string(),
            timers: (3, 9),
            zebra: false,
            static_neighbors: Vec::new(),
        }
    }
}

/// Parameters of an FRR VTEP (zebra + bgpd, `advertise-all-vni`).
#[derive(Debug, Clone)]
pub struct VtepParams {
    pub asn: u32,
    pub router_id: Ipv4Addr,
    /// Source address of the BGP sessions (a /32 on `lo`).
    pub update_source: Ipv4Addr,
    pub neighbors: Vec<Ipv4Addr>,
    pub timers: (u16, u16),
}

impl VtepParams {
    pub fn new(asn: u32, router_id: Ipv4Addr, neighbors: &[Ipv4Addr]) -> VtepParams {
        VtepParams {
            asn,
            router_id,
            update_source: router_id,
            neighbors: neighbors.to_vec(),
            timers: (3, 9),
        }
    }
}

impl FrrConfig {
    /// An iBGP route reflector for l2vpn evpn with a dynamic peer group.
    pub fn route_reflector(p: &RrParams) -> FrrConfig {
        let mut c = String::new();
        let _ = writeln!(c, "hostname rr\nlog timestamp precision 3\n!");
        let _ = writeln!(c, "router bgp {}", p.asn);
        let _ = writeln!(c, " bgp router-id {}", p.router_id);
        let _ = writeln!(c, " bgp cluster-id {}", p.cluster_id);
        let _ = writeln!(c, " bgp log-neighbor-changes");
        let _ = writeln!(c, " no bgp default ipv4-unicast");
        let _ = writeln!(c, " timers bgp {} {}", p.timers.0, p.timers.1);
        let _ = writeln!(c, " neighbor VTEPS peer-group");
        let _ = writeln!(c, " neighbor VTEPS remote-as {}", p.asn);
        if p.static_neighbors.is_empty() {
            let _ = writeln!(c, " bgp listen range {} peer-group VTEPS", p.listen_range);
        }
        for n in &p.static_neighbors {
            let _ = writeln!(c, " neighbor {n} peer-group VTEPS");
        }
        let _ = writeln!(c, " !\n address-family l2vpn evpn");
        let _ = writeln!(c, "  neighbor VTEPS activate");
        let _ = writeln!(c, "  neighbor VTEPS route-reflector-client");
        let _ = writeln!(c, " exit-address-family\nexit\n!");
        FrrConfig {
            bgpd_conf: c,
            zebra: p.zebra,
        }
    }

    /// An FRR VTEP advertising all VNIs zebra finds in the namespace.
    pub fn vtep(p: &VtepParams) -> FrrConfig {
        let mut c = String::new();
        let _ = writeln!(c, "hostname vtep\nlog timestamp precision 3\n!");
        let _ = writeln!(c, "router bgp {}", p.asn);
        let _ = writeln!(c, " bgp router-id {}", p.router_id);
        let _ = writeln!(c, " bgp log-neighbor-changes");
        let _ = writeln!(c, " no bgp default ipv4-unicast");
        let _ = writeln!(c, " timers bgp {} {}", p.timers.0, p.timers.1);
        for n in &p.neighbors {
            let _ = writeln!(c, " neighbor {n} remote-as {}", p.asn);
            let _ = writeln!(c, " neighbor {n} update-source {}", p.update_source);
        }
        let _ = writeln!(c, " !\n address-family l2vpn evpn");
        for n in &p.neighbors {
            let _ = writeln!(c, "  neighbor {n} activate");
        }
        let _ = writeln!(c, "  advertise-all-vni");
        let _ = writeln!(c, " exit-address-family\nexit\n!");
        FrrConfig {
            bgpd_conf: c,
            zebra: true,
        }
    }
}

/// One EVPN prefix from `show bgp l2vpn evpn json`.
#[derive(Debug, Clone)]
pub struct EvpnRoute {
    pub rd: String,
    /// FRR's prefix string, e.g. `[3]:[0]:[32]:[10.255.0.2]`.
    pub prefix: String,
    /// EVPN route type (1..=5).
    pub route_type: u8,
    /// The raw path objects (one per path).
    pub paths: Vec<Value>,
}

impl EvpnRoute {
    /// Next hops of all paths.
    pub fn nexthops(&self) -> Vec<String> {
        self.paths
            .iter()
            .filter_map(|p| p.get("nexthops")?.as_array().cloned())
            .flatten()
            .filter_map(|n| n.get("ip")?.as_str().map(str::to_string))
            .collect()
    }
}

/// Route type from an FRR EVPN prefix string `[T]:...`.
fn route_type_of(prefix: &str) -> Option<u8> {
    prefix.strip_prefix('[')?.split(']').next()?.parse().ok()
}

/// Parse `show bgp l2vpn evpn json`: top-level keys that are RDs map to
/// objects whose keys are prefixes with a `paths` list (nested one more
/// level in FRR 8: a list of lists).
pub fn parse_evpn_routes(v: &Value) -> Result<Vec<EvpnRoute>> {
    let obj = v
        .as_object()
        .ok_or_else(|| Error::parse("show bgp l2vpn evpn json", "not an object"))?;
    let mut out = Vec::new();
    for (rd, per_rd) in obj {
        let Some(per_rd) = per_rd.as_object() else {
            continue;
        };
        if !per_rd.contains_key("rd") {
            continue;
        }
        for (prefix, entry) in per_rd {
            let Some(paths) = entry.get("paths").and_then(Value::as_array) else {
                continue;
            };
            let paths: Vec<Value> = paths
                .iter()
                .flat_map(|p| match p.as_array() {
                    Some(inner) => inner.clone(),
                    None => vec![p.clone()],
                })
                .collect();
            let route_type = route_type_of(prefix).ok_or_else(|| {
                Error::parse("show bgp l2vpn evpn json", format!("prefix {prefix}"))
            })?;
            out.push(EvpnRoute {
                rd: rd.clone(),
                prefix: prefix.clone(),
                route_type,
                paths,
            });
        }
    }
    Ok(out)
}

/// Run `vtysh -N NS -c CMD` and return stdout.
pub fn vtysh_ns(ns: &str, cmd: &str) -> Result<String> {
    let out = run_checked(Command::new("vtysh").args(["-N", ns, "-c", cmd]))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A running FRR instance (bgpd, optionally zebra) in a namespace.
/// Dropping it stops the daemons and removes the socket directory.
#[derive(Debug)]
pub struct Frr {
    ns: NsHandle,
    cfg: FrrConfig,
    sockdir: PathBuf,
    dir: RunDir,
    bgpd: Option<ChildGuard>,
    zebra: Option<ChildGuard>,
    detached: bool,
}

impl Frr {
    /// Write the configuration and start the daemons; returns when bgpd
    /// answers on its vty socket.
    pub fn start(ns: &NsHandle, cfg: FrrConfig) -> Result<Frr> {
        if !frr_installed() {
            return Err(Error::MissingTool {
                tool: "FRR".into(),
                hint: "apt-get install frr".into(),
            });
        }
        let (uid, gid) = frr_ids()?;
        let dir = RunDir::new(&format!("frr-{}", ns.name()))?;
        dir.write("bgpd.conf", &cfg.bgpd_conf)?;
        dir.write("zebra.conf", "hostname zebra\n")?;
        dir.chown_all(uid, gid)?;
        // Both daemons use -N NS: vtysh -N NS finds their sockets here.
        // /var/run is a tmpfs: on a fresh boot FRR's own run directory is
        // only made by its service script, which we don't run.
        let rundir = Path::new("/var/run/frr");
        if !rundir.exists() {
            std::fs::create_dir_all(rundir)
                .map_err(|e| Error::io(format!("create {}", rundir.display()), e))?;
            std::os::unix::fs::chown(rundir, Some(uid), Some(gid))
                .map_err(|e| Error::io(format!("chown {}", rundir.display()), e))?;
        }
        let sockdir = rundir.join(ns.name());
        std::fs::create_dir_all(&sockdir)
            .map_err(|e| Error::io(format!("create {}", sockdir.display()), e))?;
        super::process::chown_tree(&sockdir, uid, gid)?;
        let mut frr = Frr {
            ns: ns.clone(),
            cfg,
            sockdir,
            dir,
            bgpd: None,
            zebra: None,
            detached: false,
        };
        if frr.cfg.zebra {
            frr.start_zebra()?;
        }
        frr.start_bgpd()?;
        Ok(frr)
    }

    fn daemon_args(&self, daemon: &str) -> Vec<String> {
        let d = self.dir.path();
        let s = self.sockdir.display();
        vec![
            format!("{FRR_DIR}/{daemon}"),
            "-N".into(),
            self.ns.name().into(),
            "-f".into(),
            d.join(format!("{daemon}.conf")).display().to_string(),
            "-i".into(),
            format!("{s}/{daemon}.pid"),
            "-z".into(),
            format!("{s}/zserv.api"),
            "--vty_socket".into(),
            s.to_string(),
            "-P".into(),
            "0".into(),
            "--log".into(),
            format!("file:{}", d.join(format!("{daemon}.log")).display()),
            "--log-level".into(),
            "debug".into(),
        ]
    }

    fn start_zebra(&mut self) -> Result<()> {
        let args = self.daemon_args("zebra");
        let out = self.dir.path().join("zebra.out");
        self.zebra = Some(self.ns.spawn(&args, "zebra", Some(&out))?);
        let sock = self.sockdir.join("zserv.api");
        let guard = &mut self.zebra;
        wait_until(START_TIMEOUT, "zebra to open zserv.api", || {
            if let Some(g) = guard.as_mut() {
                if !g.is_running() {
                    return Err(Error::parse("zebra", "exited during startup"));
                }
            }
            Ok(sock.exists())
        })
    }

    /// Start bgpd (again, after [`stop_bgpd`](Self::stop_bgpd)).
    pub fn start_bgpd(&mut self) -> Result<()> {
        if self.bgpd.is_some() {
            return Ok(());
        }
        let mut args = self.daemon_args("bgpd");
        if !self.cfg.zebra {
            args.push("-Z".into());
        }
        let out = self.dir.path().join("bgpd.out");
        self.bgpd = Some(self.ns.spawn(&args, "bgpd", Some(&out))?);
        let ns = self.ns.name().to_string();
        let guard = &mut self.bgpd;
        wait_until(
            START_TIMEOUT,
            &format!("bgpd in {ns} to answer vtysh"),
            || {
                if let Some(g) = guard.as_mut() {
                    if !g.is_running() {
                        return Err(Error::parse("bgpd", "exited during startup"));
                    }
                }
                Ok(vtysh_ns(&ns, "show bgp summary json").is_ok())
            },
        )
    }

    /// Stop bgpd with SIGTERM (it sends a Cease NOTIFICATION to its peers).
    pub fn stop_bgpd(&mut self) -> Result<()> {
        if let Some(mut g) = self.bgpd.take() {
            g.stop()?;
        }
        Ok(())
    }

    /// Kill bgpd with SIGKILL: no NOTIFICATION, peers notice via hold timer
    /// (or a TCP reset).
    pub fn kill_bgpd(&mut self) -> Result<()> {
        if let Some(mut g) = self.bgpd.take() {
            g.stop_with(libc::SIGKILL)?;
        }
        Ok(())
    }

    /// Send `sig` to bgpd without waiting (SIGSTOP freezes it: its TCP
    /// sessions stay open but silent, so peers must notice by hold timer).
    pub fn signal_bgpd(&self, sig: libc::c_int) {
        if let Some(g) = self.bgpd.as_ref() {
            g.signal(sig);
        }
    }

    /// `show bgp neighbors ADDR json`: the neighbor's object, `None` if
    /// bgpd does not know it.
    pub fn bgp_neighbor_json(&self, addr: Ipv4Addr) -> Result<Option<Value>> {
        let mut v = self.vtysh_json(&format!("show bgp neighbors {addr} json"))?;
        Ok(v.get_mut(addr.to_string()).map(Value::take))
    }

    /// [`stop_bgpd`](Self::stop_bgpd) (alias used by tests: drop the sessions).
    pub fn stop(&mut self) -> Result<()> {
        self.stop_bgpd()
    }

    /// [`start_bgpd`](Self::start_bgpd) (alias).
    pub fn start_again(&mut self) -> Result<()> {
        self.start_bgpd()
    }

    pub fn ns(&self) -> &NsHandle {
        &self.ns
    }

    /// Pid of bgpd, if running.
    pub fn bgpd_pid(&self) -> Option<u32> {
        self.bgpd.as_ref().and_then(ChildGuard::pid)
    }

    /// Pid of zebra, if running.
    pub fn zebra_pid(&self) -> Option<u32> {
        self.zebra.as_ref().and_then(ChildGuard::pid)
    }

    /// Directory with configs and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Keep daemons and logs after drop (`evpnd-lab --keep`).
    pub fn detach(&mut self) {
        self.detached = true;
        self.dir.keep();
        if let Some(g) = self.bgpd.as_mut() {
            g.detach();
        }
        if let Some(g) = self.zebra.as_mut() {
            g.detach();
        }
    }

    /// `vtysh -N NS -c CMD`.
    pub fn vtysh(&self, cmd: &str) -> Result<String> {
        vtysh_ns(self.ns.name(), cmd)
    }

    /// `vtysh -N NS -c CMD` parsed as JSON (append `json` to CMD yourself).
    pub fn vtysh_json(&self, cmd: &str) -> Result<Value> {
        let text = self.vtysh(cmd)?;
        serde_json::from_str(&text).map_err(|e| Error::parse(format!("`{cmd}` output"), e))
    }

    /// BGP state of a neighbor (`Established`, `Active`, ...), `None` if
    /// bgpd does not know it (yet; dynamic neighbors appear on connect).
    pub fn bgp_neighbor_state(&self, addr: Ipv4Addr) -> Result<Option<String>> {
        let v = self.vtysh_json(&format!("show bgp neighbors {addr} json"))?;
        Ok(v.get(addr.to_string())
            .and_then(|n| n.get("bgpState"))
            .and_then(Value::as_str)
            .map(str::to_string))
    }

    /// Wait until the session with `addr` is Established.
    pub fn wait_established(&self, addr: Ipv4Addr, timeout: Duration) -> Result<()> {
        wait_for(
            timeout,
            &format!("BGP session {} -> {addr} Established", self.ns.name()),
            || {
                let st = self.bgp_neighbor_state(addr)?;
                Ok(match st.as_deref() {
                    Some("Established") => Poll::Ready(()),
                    other => Poll::NotYet(format!("{other:?}")),
                })
            },
        )
    }

    /// All EVPN routes in bgpd's table.
    pub fn evpn_routes(&self) -> Result<Vec<EvpnRoute>> {
        parse_evpn_routes(&self.vtysh_json("show bgp l2vpn evpn json")?)
    }

    /// Number of EVPN routes of `route_type`.
    pub fn evpn_route_count(&self, route_type: u8) -> Result<usize> {
        Ok(self
            .evpn_routes()?
            .iter()
            .filter(|r| r.route_type == route_type)
            .count())
    }

    /// Log files (bgpd, zebra and their stdout/stderr).
    pub fn logs(&self) -> Vec<PathBuf> {
        ["bgpd.log", "bgpd.out", "zebra.log", "zebra.out"]
            .iter()
            .map(|f| self.dir.path().join(f))
            .filter(|p| p.exists())
            .collect()
    }
}

impl Drop for Frr {
    fn drop(&mut self) {
        dump_logs_if_panicking(&format!("FRR in {}", self.ns.name()), &self.logs());
        if self.detached {
            // Detached: leave sockets for vtysh.
            return;
        }
        self.bgpd = None;
        self.zebra = None;
        let _ = std::fs::remove_dir_all(&self.sockdir);
    }
}

/// `bgpd --version` first line, for logs.
pub fn frr_version() -> String {
    run_unchecked(Command::new(format!("{FRR_DIR}/bgpd")).arg("--version"))
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_else(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_types() {
        assert_eq!(route_type_of("[3]:[0]:[32]:[10.0.0.1]"), Some(3));
        assert_eq!(route_type_of("[2]:[0]:[48]:[aa:bb:cc:dd:ee:ff]"), Some(2));
        assert_eq!(route_type_of("x"), None);
    }

    #[test]
    fn rr_config_has_rr_statements() {
        let c = FrrConfig::route_reflector(&RrParams::new(
            65000,
            Ipv4Addr::new(10, 255, 0, 1),
            "10.255.0.0/24",
        ));
        assert!(!c.zebra);
        for s in [
            "bgp listen range 10.255.0.0/24 peer-group VTEPS",
            "neighbor VTEPS route-reflector-client",
            "bgp cluster-id 10.255.0.1",
            "timers bgp 3 9",
        ] {
            assert!(c.bgpd_conf.contains(s), "{s} missing in\n{}", c.bgpd_conf);
        }
    }
}
