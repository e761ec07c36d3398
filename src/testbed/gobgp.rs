//! GoBGP (`gobgpd`) as a second, different route reflector.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::error::{Error, Result};
use super::netns::NsHandle;
use super::process::{dump_logs_if_panicking, run_unchecked, ChildGuard, RunDir};
use super::wait::{wait_for, wait_until, Poll};

/// Whether gobgpd and gobgp are installed.
pub fn gobgp_installed() -> bool {
    which("gobgpd") && which("gobgp")
}

fn which(bin: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).exists()))
        .unwrap_or(false)
}

/// gobgpd configuration: an iBGP route reflector for l2vpn-evpn accepting
/// clients from `listen_range` (dynamic neighbors).
#[derive(Debug, Clone)]
pub struct GobgpConfig {
    pub asn: u32,
    pub router_id: Ipv4Addr,
    pub local_address: Ipv4Addr,
    pub listen_port: u16,
    pub cluster_id: Ipv4Addr,
    pub listen_range: String,
    /// (keepalive, hold) in seconds.
    pub timers: (u16, u16),
    /// gRPC API port on 127.0.0.1 inside the namespace.
    pub api_port: u16,
}

impl GobgpConfig {
    pub fn route_reflector(asn: u32, router_id: Ipv4Addr, listen_range: &str) -> GobgpConfig {
        GobgpConfig {
            asn,
            router_id,
            local_address: router_id,
            listen_port: 179,
            cluster_id: router_id,
            listen_range: listen_range.to_string(),
            timers: (3, 9),
            api_port: 50051,
        }
    }

    /// The TOML file gobgpd reads.
    pub fn render(&self) -> String {
        let mut c = String::new();
        let _ = writeln!(c, "[global.config]");
        let _ = writeln!(c, "  as = {}", self.asn);
        let _ = writeln!(c, "  router-id = \"{}\"", self.router_id);
        let _ = writeln!(c, "  port = {}", self.listen_port);
        let _ = writeln!(c, "  local-address-list = [\"{}\"]", self.local_address);
        let _ = writeln!(c);
        let _ = writeln!(c, "[[peer-groups]]");
        let _ = writeln!(c, "  [peer-groups.config]");
        let _ = writeln!(c, "    peer-group-name = \"vteps\"");
        let _ = writeln!(c, "    peer-as = {}", self.asn);
        let _ = writeln!(c, "  [peer-groups.timers.config]");
        let _ = writeln!(c, "    keepalive-interval = {}", self.timers.0);
        let _ = writeln!(c, "    hold-time = {}", self.timers.1);
        let _ = writeln!(c, "  [peer-groups.route-reflector.config]");
        let _ = writeln!(c, "    route-reflector-client = true");
        let _ = writeln!(
            c,
            "    route-reflector-cluster-id = \"{}\"",
            self.cluster_id
        );
        let _ = writeln!(c, "  [[peer-groups.afi-safis]]");
        let _ = writeln!(c, "    [peer-groups.afi-safis.config]");
        let _ = writeln!(c, "      afi-safi-name = \"l2vpn-evpn\"");
        let _ = writeln!(c);
        let _ = writeln!(c, "[[dynamic-neighbors]]");
        let _ = writeln!(c, "  [dynamic-neighbors.config]");
        let _ = writeln!(c, "    prefix = \"{}\"", self.listen_range);
        let _ = writeln!(c, "    peer-group = \"vteps\"");
        c
    }
}

/// A running gobgpd. Dropping it stops the daemon.
#[derive(Debug)]
pub struct GoBgp {
    ns: NsHandle,
    cfg: GobgpConfig,
    dir: RunDir,
    child: Option<ChildGuard>,
}

impl GoBgp {
    /// Start gobgpd and return once its API answers.
    pub fn start(ns: &NsHandle, cfg: GobgpConfig) -> Result<GoBgp> {
        if !gobgp_installed() {
            return Err(Error::MissingTool {
                tool: "gobgpd".into(),
                hint: "apt-get install gobgpd".into(),
            });
        }
        let dir = RunDir::new(&format!("gobgp-{}", ns.name()))?;
        dir.write("gobgpd.toml", &cfg.render())?;
        let mut g = GoBgp {
            ns: ns.clone(),
            cfg,
            dir,
            child: None,
        };
        g.start_again()?;
        Ok(g)
    }

    /// Start gobgpd again after [`stop`](Self::stop).
    pub fn start_again(&mut self) -> Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let conf = self.dir.path().join("gobgpd.toml");
        let log = self.dir.path().join("gobgpd.log");
        let args = vec![
            "gobgpd".to_string(),
            "-f".into(),
            conf.display().to_string(),
            "-t".into(),
            "toml".into(),
            "-p".into(),
            "--pprof-disable".into(),
            format!("--api-hosts=127.0.0.1:{}", self.cfg.api_port),
        ];
        self.child = Some(self.ns.spawn(&args, "gobgpd", Some(&log))?);
        let child = &mut self.child;
        let ns = self.ns.clone();
        let port = self.cfg.api_port;
        wait_until(
            Duration::from_secs(20),
            &format!("gobgpd in {} to answer its API", ns.name()),
            || {
                if let Some(c) = child.as_mut() {
                    if !c.is_running() {
                        return Err(Error::parse("gobgpd", "exited during startup"));
                    }
                }
                Ok(gobgp_cli(&ns, port, &["global", "-j"]).is_ok())
            },
        )
    }

    /// Stop gobgpd (sessions drop).
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            c.stop()?;
        }
        Ok(())
    }

    pub fn ns(&self) -> &NsHandle {
        &self.ns
    }

    /// Keep the daemon after drop.
    pub fn detach(&mut self) {
        self.dir.keep();
        if let Some(c) = self.child.as_mut() {
            c.detach();
        }
    }

    /// Run `gobgp -u 127.0.0.1 -p PORT args...` in the namespace, return stdout.
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        gobgp_cli(&self.ns, self.cfg.api_port, args)
    }

    /// Same with `-j`, parsed.
    pub fn cli_json(&self, args: &[&str]) -> Result<Value> {
        let mut a = args.to_vec();
        a.push("-j");
        let text = self.cli(&a)?;
        serde_json::from_str(&text)
            .map_err(|e| Error::parse(format!("gobgp {} -j", args.join(" ")), e))
    }

    /// `gobgp global rib -a evpn -j`: destinations keyed by prefix string.
    pub fn evpn_rib(&self) -> Result<Value> {
        self.cli_json(&["global", "rib", "-a", "evpn"])
    }

    /// Number of EVPN destinations of `route_type` in the global RIB.
    pub fn evpn_route_count(&self, route_type: u8) -> Result<usize> {
        let rib = self.evpn_rib()?;
        Ok(evpn_prefixes(&rib)
            .iter()
            .filter(|p| gobgp_route_type(p) == Some(route_type))
            .count())
    }

    /// `gobgp neighbor -j`: session state per neighbor address.
    pub fn neighbor_states(&self) -> Result<Vec<(String, String)>> {
        parse_neighbor_states(&self.cli_json(&["neighbor"])?)
    }

    /// Session state of `addr` (`established`, `active`, ...).
    pub fn neighbor_state(&self, addr: Ipv4Addr) -> Result<Option<String>> {
        let a = addr.to_string();
        Ok(self
            .neighbor_states()?
            .into_iter()
            .find(|(n, _)| *n == a)
            .map(|(_, s)| s))
    }

    /// Wait until the session with `addr` is established.
    pub fn wait_established(&self, addr: Ipv4Addr, timeout: Duration) -> Result<()> {
        wait_for(
            timeout,
            &format!("GoBGP session {} -> {addr} established", self.ns.name()),
            || {
                let st = self.neighbor_state(addr)?;
                Ok(match st.as_deref() {
                    Some(s) if s.eq_ignore_ascii_case("established") => Poll::Ready(()),
                    other => Poll::NotYet(format!("{other:?}")),
                })
            },
        )
    }

    pub fn logs(&self) -> Vec<PathBuf> {
        vec![self.dir.path().join("gobgpd.log")]
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for GoBgp {
    fn drop(&mut self) {
        dump_logs_if_panicking(&format!("gobgpd in {}", self.ns.name()), &self.logs());
    }
}

fn gobgp_cli(ns: &NsHandle, port: u16, args: &[&str]) -> Result<String> {
    let port = port.to_string();
    let mut a = vec!["gobgp", "-u", "127.0.0.1", "-p", &port];
    a.extend_from_slice(args);
    let out = ns.run(&a)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Prefix strings of `gobgp global rib -j` (an object keyed by prefix, or
/// a list of destinations with a `prefix` field, depending on version).
pub fn evpn_prefixes(rib: &Value) -> Vec<String> {
    match rib {
        Value::Object(m) => m.keys().cloned().collect(),
        Value::Array(a) => a
            .iter()
            .filter_map(|d| d.get("prefix")?.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// Route type of a GoBGP EVPN prefix string: `[type:multicast]...` = 3,
/// `[type:macadv]...` = 2, `[type:A-D]` = 1, `[type:esi]` = 4, `[type:Prefix]` = 5.
pub fn gobgp_route_type(prefix: &str) -> Option<u8> {
    let t = prefix.strip_prefix("[type:")?.split(']').next()?;
    match t.to_ascii_lowercase().as_str() {
        "a-d" => Some(1),
        "macadv" => Some(2),
        "multicast" => Some(3),
        "esi" => Some(4),
        "prefix" => Some(5),
        _ => None,
    }
}

/// (address, session state) from `gobgp neighbor -j`.
pub fn parse_neighbor_states(v: &Value) -> Result<Vec<(String, String)>> {
    let arr = v
        .as_array()
        .ok_or_else(|| Error::parse("gobgp neighbor -j", "not an array"))?;
    Ok(arr
        .iter()
        .filter_map(|p| {
            let addr = p
                .pointer("/state/neighbor_address")
                .or_else(|| p.pointer("/conf/neighbor_address"))?
                .as_str()?
                .to_string();
            let st = p.pointer("/state/session_state")?;
            let st = match st {
                Value::String(s) => s.to_ascii_lowercase(),
                // gRPC enum number: 6 = ESTABLISHED.
                Value::Number(n) => match n.as_u64() {
                    Some(1) => "idle".into(),
                    Some(2) => "connect".into(),
                    Some(3) => "active".into(),
                    Some(4) => "opensent".into(),
                    Some(5) => "openconfirm".into(),
                    Some(6) => "established".into(),
                    _ => n.to_string(),
                },
                _ => return None,
            };
            Some((addr, st))
        })
        .collect())
}

/// `gobgpd --version` for CI logs.
pub fn gobgp_version() -> String {
    run_unchecked(Command::new("gobgpd").arg("--version"))
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|e| e.to_string())
}
