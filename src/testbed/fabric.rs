//! A whole fabric: one spine namespace (route reflector, underlay router)
//! connected by veth to N host namespaces (VTEPs: FRR or evpnd), VM
//! namespaces per host per VNI attached to the hosts' bridges.
//!
//! Addressing (host index i from 0):
//! - spine loopback 10.255.0.1/32, host loopback (VTEP, router id,
//!   session source) 10.255.0.{i+2}/32;
//! - link i: spine `h{i}` 10.254.{i}.1/24 <-> host `uplink` 10.254.{i}.2/24;
//!   static routes: host 10.255.0.0/24 via the spine, spine each /32 via
//!   its host; the spine forwards.
//! - VM k of host i in VNI v: namespace of its own, `eth0` with MAC
//!   02:VV:VV:VV:{i+1}:{k+1} and IP 172.{16 + v%16}.{i+1}.{k+1}/16,
//!   attached via `v{v}-{k}` to bridge `br{v}` of the host.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use super::agent::{Evpnd, EvpndConfig, GrSetting, VniConfig};
use super::error::{Error, Result};
use super::frr::{Frr, FrrConfig, RrParams, VtepParams};
use super::gobgp::{GoBgp, GobgpConfig};
use super::links::{self, PingResult};
use super::netns::Netns;
use super::wait::wait_until;

/// Address of the spine / route reflector loopback.
pub const SPINE_IP: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 1);
/// Range every VTEP loopback lies in (RR listen range).
pub const VTEP_RANGE: &str = "10.255.0.0/24";
/// MTU of VM interfaces: 1500 minus VXLAN overhead.
const VM_MTU: &str = "1450";

/// What runs on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKind {
    /// FRR zebra + bgpd with `advertise-all-vni` (the reference VTEP).
    FrrVtep,
    /// evpnd (binary set with [`FabricBuilder::evpnd_binary`]).
    Evpnd,
}

/// What runs on the spine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RrKind {
    /// No route reflector: hosts peer in a full mesh.
    None,
    /// FRR bgpd (without zebra) as route reflector.
    Frr,
    /// gobgpd as route reflector.
    GoBgp,
}

/// Builder for [`Fabric`].
#[derive(Debug, Clone)]
pub struct FabricBuilder {
    prefix: String,
    asn: u32,
    hosts: Vec<HostKind>,
    rr: RrKind,
    vnis: Vec<u32>,
    vms_per_host: usize,
    timers: (u16, u16),
    evpnd_binary: Option<PathBuf>,
    evpnd_creates_devices: bool,
    evpnd_graceful_restart: GrSetting,
    rr_static_neighbors: bool,
    start_timeout: Duration,
}

impl FabricBuilder {
    /// `prefix`: ASCII letters naming every namespace (see [`Netns::new`]).
    pub fn new(prefix: &str) -> FabricBuilder {
        FabricBuilder {
            prefix: prefix.to_string(),
            asn: 65000,
            hosts: Vec::new(),
            rr: RrKind::Frr,
            vnis: vec![100],
            vms_per_host: 1,
            timers: (3, 9),
            evpnd_binary: None,
            evpnd_creates_devices: true,
            evpnd_graceful_restart: GrSetting::Default,
            rr_static_neighbors: false,
            start_timeout: Duration::from_secs(30),
        }
    }

    pub fn host(mut self, kind: HostKind) -> Self {
        self.hosts.push(kind);
        self
    }

    pub fn hosts(mut self, kind: HostKind, n: usize) -> Self {
        self.hosts.extend(std::iter::repeat_n(kind, n));
        self
    }

    pub fn rr(mut self, rr: RrKind) -> Self {
        self.rr = rr;
        self
    }

    /// Replace the VNI list (default: `[100]`).
    pub fn vnis(mut self, vnis: &[u32]) -> Self {
        self.vnis = vnis.to_vec();
        self
    }

    /// VMs per host per VNI (default 1, at most 250).
    pub fn vms_per_host(mut self, n: usize) -> Self {
        self.vms_per_host = n;
        self
    }

    /// BGP (keepalive, hold) timers of FRR / GoBGP; evpnd gets the hold time.
    pub fn timers(mut self, keepalive: u16, hold: u16) -> Self {
        self.timers = (keepalive, hold);
        self
    }

    pub fn asn(mut self, asn: u32) -> Self {
        self.asn = asn;
        self
    }

    /// Path of the evpnd binary (evpnctl next to it).
    pub fn evpnd_binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.evpnd_binary = Some(path.into());
        self
    }

    /// With `false` the test bed creates bridges and vxlan devices for
    /// evpnd hosts and configures `create = false`.
    pub fn evpnd_creates_devices(mut self, yes: bool) -> Self {
        self.evpnd_creates_devices = yes;
        self
    }

    /// evpnd hosts announce graceful restart (RFC 4724) with this
    /// restart time in seconds.
    pub fn evpnd_graceful_restart(mut self, restart_time: u16) -> Self {
        self.evpnd_graceful_restart = GrSetting::On(restart_time);
        self
    }

    /// evpnd hosts run with graceful restart off (the default is on).
    pub fn evpnd_no_graceful_restart(mut self) -> Self {
        self.evpnd_graceful_restart = GrSetting::Off;
        self
    }

    /// The FRR route reflector lists the hosts as static neighbors instead
    /// of a listen range (a dynamic neighbor is deleted when its session
    /// drops; for EVPN FRR 8.4 keeps no stale routes in either case).
    pub fn rr_static_neighbors(mut self, yes: bool) -> Self {
        self.rr_static_neighbors = yes;
        self
    }

    /// Deadline for daemons to come up and create devices.
    pub fn start_timeout(mut self, t: Duration) -> Self {
        self.start_timeout = t;
        self
    }

    /// Build the fabric: namespaces, underlay, devices, VMs, daemons. On
    /// error everything built so far is torn down by the guards.
    pub fn build(self) -> Result<Fabric> {
        if self.hosts.is_empty() || self.hosts.len() > 200 {
            return Err(Error::Invalid {
                what: "host count",
                value: self.hosts.len().to_string(),
                reason: "1..=200 hosts".into(),
            });
        }
        if self.vms_per_host > 250 {
            return Err(Error::Invalid {
                what: "VMs per host",
                value: self.vms_per_host.to_string(),
                reason: "at most 250".into(),
            });
        }
        let spine = Netns::new(&self.prefix)?;
        links::addr_add(&spine, "lo", &format!("{SPINE_IP}/32"))?;
        links::sysctl(&spine, "net.ipv4.ip_forward", "1")?;
        let mut fabric = Fabric {
            rr_frr: None,
            rr_gobgp: None,
            hosts: Vec::new(),
            vms: Vec::new(),
            spine,
            asn: self.asn,
            rr: self.rr,
            vnis: self.vnis.clone(),
        };

        // Underlay.
        for (i, kind) in self.hosts.iter().enumerate() {
            let ns = Netns::new(&self.prefix)?;
            // i <= 200 (checked above): one octet suffices.
            let lo = i as u8;
            let vtep_ip = Ipv4Addr::new(10, 255, 0, lo + 2);
            let spine_side = Ipv4Addr::new(10, 254, lo, 1);
            let host_side = Ipv4Addr::new(10, 254, lo, 2);
            links::veth(&fabric.spine, &format!("h{i}"), &ns, "uplink")?;
            links::addr_add(&fabric.spine, &format!("h{i}"), &format!("{spine_side}/24"))?;
            links::addr_add(&ns, "uplink", &format!("{host_side}/24"))?;
            links::addr_add(&ns, "lo", &format!("{vtep_ip}/32"))?;
            links::route_add(&ns, VTEP_RANGE, spine_side)?;
            links::route_add(&fabric.spine, &format!("{vtep_ip}/32"), host_side)?;
            fabric.hosts.push(Host {
                index: i,
                kind: kind.clone(),
                vtep_ip,
                frr: None,
                evpnd: None,
                ns,
            });
        }

        // Devices and VMs. evpnd hosts that create their own devices get
        // their VM ports enslaved once the bridge shows up.
        let precreate = |k: &HostKind| *k == HostKind::FrrVtep || !self.evpnd_creates_devices;
        for h in 0..fabric.hosts.len() {
            let host = &fabric.hosts[h];
            for &vni in &self.vnis {
                let bridge = format!("br{vni}");
                if precreate(&host.kind) {
                    links::vtep_vni(&host.ns, vni, &bridge, host.vtep_ip)?;
                }
                for k in 0..self.vms_per_host {
                    let vm = Vm::create(&self.prefix, &host.ns, h, vni, k)?;
                    if precreate(&host.kind) {
                        links::enslave(&host.ns, &vm.host_if, &bridge)?;
                    }
                    fabric.vms.push(vm);
                }
            }
        }

        // Route reflector.
        match self.rr {
            RrKind::None => {}
            RrKind::Frr => {
                let mut p = RrParams::new(self.asn, SPINE_IP, VTEP_RANGE);
                p.timers = self.timers;
                if self.rr_static_neighbors {
                    p.static_neighbors = fabric.hosts.iter().map(|h| h.vtep_ip).collect();
                }
                fabric.rr_frr = Some(Frr::start(
                    &fabric.spine.handle(),
                    FrrConfig::route_reflector(&p),
                )?);
            }
            RrKind::GoBgp => {
                let mut c = GobgpConfig::route_reflector(self.asn, SPINE_IP, VTEP_RANGE);
                c.timers = self.timers;
                fabric.rr_gobgp = Some(GoBgp::start(&fabric.spine.handle(), c)?);
            }
        }

        // VTEP daemons.
        let all_vteps: Vec<Ipv4Addr> = fabric.hosts.iter().map(|h| h.vtep_ip).collect();
        for h in 0..fabric.hosts.len() {
            let peers = fabric.peers_of(h, &all_vteps);
            let host = &mut fabric.hosts[h];
            match host.kind {
                HostKind::FrrVtep => {
                    let mut p = VtepParams::new(self.asn, host.vtep_ip, &peers);
                    p.timers = self.timers;
                    host.frr = Some(Frr::start(&host.ns.handle(), FrrConfig::vtep(&p))?);
                }
                HostKind::Evpnd => {
                    let bin = self.evpnd_binary.clone().ok_or_else(|| Error::Invalid {
                        what: "fabric",
                        value: "evpnd host".into(),
                        reason: "no evpnd binary given (FabricBuilder::evpnd_binary)".into(),
                    })?;
                    let mut cfg = EvpndConfig::new(self.asn, host.vtep_ip, host.ns.name())
                        .hold_time(self.timers.1);
                    cfg.neighbors = peers;
                    cfg.graceful_restart = self.evpnd_graceful_restart;
                    for &vni in &self.vnis {
                        let mut v = VniConfig::new(vni);
                        v.create = self.evpnd_creates_devices;
                        cfg = cfg.vni_config(v);
                    }
                    let mut e = Evpnd::start_with(&host.ns.handle(), &bin, &cfg)?;
                    e.wait_ready(self.start_timeout)?;
                    host.evpnd = Some(e);
                    if self.evpnd_creates_devices {
                        for vm in fabric.vms.iter().filter(|v| v.host == h) {
                            let bridge = format!("br{}", vm.vni);
                            let ns = host.ns.handle();
                            wait_until(
                                self.start_timeout,
                                &format!("evpnd to create {bridge} in {}", ns.name()),
                                || Ok(ns.ip(&["link", "show", "dev", &bridge]).is_ok()),
                            )?;
                            links::enslave(&ns, &vm.host_if, &bridge)?;
                        }
                    }
                }
            }
        }
        Ok(fabric)
    }
}

/// One VTEP host.
#[derive(Debug)]
pub struct Host {
    pub index: usize,
    pub kind: HostKind,
    /// Loopback /32: VTEP address, router id and BGP session source.
    pub vtep_ip: Ipv4Addr,
    pub frr: Option<Frr>,
    pub evpnd: Option<Evpnd>,
    /// Declared last: dropped after the daemons.
    pub ns: Netns,
}

/// A VM: a namespace with one interface in a VNI.
#[derive(Debug)]
pub struct Vm {
    pub host: usize,
    pub vni: u32,
    pub index: usize,
    pub ip: Ipv4Addr,
    pub mac: String,
    /// Its port on the host's bridge.
    pub host_if: String,
    pub ns: Netns,
}

impl Vm {
    /// A VM namespace (prefix `prefix`) with `eth0` addressed as described
    /// in the module docs, its peer `v{vni}-{k}` left unattached in
    /// `host_ns`.
    pub fn create(prefix: &str, host_ns: &Netns, host: usize, vni: u32, k: usize) -> Result<Vm> {
        let ns = Netns::new(prefix)?;
        let (h8, k8) = ((host + 1) as u8, (k + 1) as u8);
        let ip = Ipv4Addr::new(172, 16 + (vni % 16) as u8, h8, k8);
        let mac = format!(
            "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            (vni >> 16) & 0xff,
            (vni >> 8) & 0xff,
            vni & 0xff,
            h8,
            k8
        );
        let host_if = format!("v{vni}-{k}");
        links::veth(host_ns, &host_if, &ns, "eth0")?;
        host_ns.ip(&["link", "set", &host_if, "mtu", VM_MTU])?;
        ns.ip(&["link", "set", "eth0", "down"])?;
        links::set_mac(&ns, "eth0", &mac)?;
        ns.ip(&["link", "set", "eth0", "mtu", VM_MTU])?;
        links::addr_add(&ns, "eth0", &format!("{ip}/16"))?;
        links::link_up(&ns, "eth0")?;
        Ok(Vm {
            host,
            vni,
            index: k,
            ip,
            mac,
            host_if,
            ns,
        })
    }

    /// Short label for reports: `h1/vni100/vm0`.
    pub fn label(&self) -> String {
        format!("h{}/vni{}/vm{}", self.host + 1, self.vni, self.index)
    }
}

/// Result of one VM-to-VM ping.
#[derive(Debug, Clone)]
pub struct PingReport {
    pub from: String,
    pub to: String,
    pub to_ip: Ipv4Addr,
    pub result: PingResult,
}

/// A running fabric. Fields drop in order: route reflector, hosts (daemons,
/// then namespaces), VMs, spine.
#[derive(Debug)]
pub struct Fabric {
    pub rr_frr: Option<Frr>,
    pub rr_gobgp: Option<GoBgp>,
    pub hosts: Vec<Host>,
    pub vms: Vec<Vm>,
    pub spine: Netns,
    pub asn: u32,
    pub rr: RrKind,
    pub vnis: Vec<u32>,
}

impl Fabric {
    /// BGP peers of host `h`: the RR, or every other host (full mesh).
    fn peers_of(&self, h: usize, all: &[Ipv4Addr]) -> Vec<Ipv4Addr> {
        match self.rr {
            RrKind::None => all
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != h)
                .map(|(_, a)| *a)
                .collect(),
            _ => vec![SPINE_IP],
        }
    }

    /// Peers host `h` is configured with.
    pub fn peers(&self, h: usize) -> Vec<Ipv4Addr> {
        let all: Vec<Ipv4Addr> = self.hosts.iter().map(|x| x.vtep_ip).collect();
        self.peers_of(h, &all)
    }

    /// Wait until every session is Established, on the hosts and on the RR.
    pub fn wait_sessions(&self, timeout: Duration) -> Result<()> {
        for (h, host) in self.hosts.iter().enumerate() {
            let peers = self.peers(h);
            if let Some(f) = &host.frr {
                for p in &peers {
                    f.wait_established(*p, timeout)?;
                }
            }
            if let Some(e) = &host.evpnd {
                e.wait_established(&peers, timeout)?;
            }
            if let Some(rr) = &self.rr_frr {
                rr.wait_established(host.vtep_ip, timeout)?;
            }
            if let Some(rr) = &self.rr_gobgp {
                rr.wait_established(host.vtep_ip, timeout)?;
            }
        }
        Ok(())
    }

    /// Ping between every ordered pair of VMs in the same VNI on different
    /// hosts, `count` packets each.
    pub fn ping_all(&self, count: u32) -> Result<Vec<PingReport>> {
        let mut out = Vec::new();
        for a in &self.vms {
            for b in &self.vms {
                if a.vni != b.vni || a.host == b.host {
                    continue;
                }
                out.push(PingReport {
                    from: a.label(),
                    to: b.label(),
                    to_ip: b.ip,
                    result: links::ping(&a.ns, IpAddr::V4(b.ip), count)?,
                });
            }
        }
        Ok(out)
    }

    /// Wait until `from` can ping `to` (first packets may be lost while
    /// routes are installed), then return.
    pub fn wait_ping(&self, from: &Vm, to: &Vm, timeout: Duration) -> Result<()> {
        wait_until(
            timeout,
            &format!("{} to reach {} ({})", from.label(), to.label(), to.ip),
            || Ok(links::ping(&from.ns, IpAddr::V4(to.ip), 1)?.ok()),
        )
    }

    /// VMs of host `h` in `vni`.
    pub fn vms_of(&self, h: usize, vni: u32) -> impl Iterator<Item = &Vm> {
        self.vms.iter().filter(move |v| v.host == h && v.vni == vni)
    }

    /// Names of every namespace of the fabric.
    pub fn namespace_names(&self) -> Vec<String> {
        let mut v = vec![self.spine.name().to_string()];
        v.extend(self.hosts.iter().map(|h| h.ns.name().to_string()));
        v.extend(self.vms.iter().map(|m| m.ns.name().to_string()));
        v
    }

    /// Pids of every process inside the fabric's namespaces.
    pub fn pids(&self) -> Vec<u32> {
        let mut v = Vec::new();
        for n in self.namespace_names() {
            v.extend(
                super::netns::NsHandle::existing(&n)
                    .pids()
                    .unwrap_or_default(),
            );
        }
        v
    }

    /// Log files of every daemon, labelled with their namespace.
    pub fn log_files(&self) -> Vec<(String, PathBuf)> {
        let mut v = Vec::new();
        let spine = self.spine.name().to_string();
        if let Some(f) = &self.rr_frr {
            v.extend(f.logs().into_iter().map(|p| (spine.clone(), p)));
        }
        if let Some(g) = &self.rr_gobgp {
            v.extend(g.logs().into_iter().map(|p| (spine.clone(), p)));
        }
        for h in &self.hosts {
            let n = h.ns.name().to_string();
            if let Some(f) = &h.frr {
                v.extend(f.logs().into_iter().map(|p| (n.clone(), p)));
            }
            if let Some(e) = &h.evpnd {
                v.push((n.clone(), e.log().to_path_buf()));
            }
        }
        v
    }

    /// Print the last `lines` lines of every daemon log to stderr.
    pub fn dump_logs(&self, lines: usize) {
        for (ns, log) in self.log_files() {
            eprintln!(
                "===== {ns}: {} =====\n{}",
                log.display(),
                super::process::tail(&log, lines)
            );
        }
    }

    /// Leave everything running after drop (`evpnd-lab --keep`).
    pub fn detach(&mut self) {
        if let Some(f) = self.rr_frr.as_mut() {
            f.detach();
        }
        if let Some(g) = self.rr_gobgp.as_mut() {
            g.detach();
        }
        for h in &mut self.hosts {
            if let Some(f) = h.frr.as_mut() {
                f.detach();
            }
            if let Some(e) = h.evpnd.as_mut() {
                e.detach();
            }
            h.ns.detach();
        }
        for v in &mut self.vms {
            v.ns.detach();
        }
        self.spine.detach();
    }
}

impl Drop for Fabric {
    fn drop(&mut self) {
        // A failing test: show the kernel state next to the daemon logs
        // (printed when the daemon guards drop right after this).
        if !std::thread::panicking() {
            return;
        }
        for h in &self.hosts {
            let fdb =
                h.ns.run(&["bridge", "fdb", "show"])
                    .map(|o| {
                        String::from_utf8_lossy(&o.stdout)
                            .lines()
                            .filter(|l| !(l.starts_with("33:33:") || l.starts_with("01:00:5e:")))
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .unwrap_or_else(|e| e.to_string());
            eprintln!(
                "===== host h{} ({}, VTEP {}): bridge fdb show =====\n{fdb}",
                h.index + 1,
                h.ns.name(),
                h.vtep_ip
            );
        }
    }
}
