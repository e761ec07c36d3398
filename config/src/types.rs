//! The validated, typed configuration.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// A complete, validated evpnd configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub bgp: BgpConfig,
    pub vtep: VtepConfig,
    /// `[[vni]]` entries, in file order.
    pub vnis: Vec<VniConfig>,
    pub control: ControlConfig,
    pub mac: MacConfig,
    pub dataplane: DataplaneConfig,
    pub log: LogConfig,
}

impl Config {
    /// The VNI with this id, if configured.
    pub fn vni(&self, id: u32) -> Option<&VniConfig> {
        self.vnis.iter().find(|v| v.id == id)
    }

    /// The neighbor with this address, if configured.
    pub fn neighbor(&self, address: IpAddr) -> Option<&NeighborConfig> {
        self.bgp.neighbors.iter().find(|n| n.address == address)
    }
}

/// `[bgp]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpConfig {
    /// Local AS number (4-byte capable, RFC 6793).
    pub asn: u32,
    pub router_id: Ipv4Addr,
    /// Source address of outgoing sessions; `None` lets the kernel choose.
    pub local_address: Option<IpAddr>,
    /// TCP port to accept sessions on; `None` when `listen_port = 0`.
    pub listen_port: Option<u16>,
    /// Default hold time offered in OPEN (zero disables keepalives).
    pub hold_time: Duration,
    /// Default keepalive interval (hold_time / 3 unless set).
    pub keepalive: Duration,
    /// Delay between outgoing connection attempts.
    pub connect_retry: Duration,
    pub graceful_restart: GracefulRestartConfig,
    /// `[[bgp.neighbor]]` entries, in file order, with defaults resolved.
    pub neighbors: Vec<NeighborConfig>,
}

/// `[bgp.graceful_restart]` (RFC 4724).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GracefulRestartConfig {
    pub enable: bool,
    /// Restart time advertised in the capability (12 bits, at most 4095 s).
    pub restart_time: Duration,
    /// How long a withdrawn remote entry stays in the kernel before it is
    /// deleted; a re-advertisement in that time keeps it. Covers a peer's
    /// restart behind a route reflector that withdraws on session close
    /// instead of keeping stale routes (FRR 8.4 has no EVPN helper mode).
    /// Zero: delete at once.
    pub withdraw_hold: Duration,
}

/// `[[bgp.neighbor]]`, with every default resolved from `[bgp]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighborConfig {
    pub address: IpAddr,
    /// Remote AS; equals `bgp.asn` (iBGP) unless set.
    pub remote_asn: u32,
    pub port: u16,
    /// Only accept connections, never connect out.
    pub passive: bool,
    pub hold_time: Duration,
    pub keepalive: Duration,
    pub connect_retry: Duration,
    /// Local address to bind outgoing connections to (from `bgp.local_address`).
    pub local_address: Option<IpAddr>,
    /// TCP-MD5 key (RFC 2385).
    pub password: Option<String>,
    pub description: Option<String>,
    pub address_families: Vec<AddressFamily>,
}

impl NeighborConfig {
    /// True when the session is iBGP under local AS `local_asn`.
    pub fn is_ibgp(&self, local_asn: u32) -> bool {
        self.remote_asn == local_asn
    }
}

/// Address families a session can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressFamily {
    /// AFI 25 / SAFI 70 (RFC 7432).
    L2vpnEvpn,
}

impl AddressFamily {
    pub const ALL: &'static [(&'static str, AddressFamily)] =
        &[("l2vpn-evpn", AddressFamily::L2vpnEvpn)];

    pub fn as_str(self) -> &'static str {
        match self {
            AddressFamily::L2vpnEvpn => "l2vpn-evpn",
        }
    }
}

impl fmt::Display for AddressFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[vtep]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VtepConfig {
    /// VXLAN source address, BGP next hop, type-3 originating router IP.
    pub local_ip: IpAddr,
    /// VXLAN UDP destination port.
    pub dstport: u16,
    /// MTU to set on created vxlan devices (`None`: kernel default).
    pub mtu: Option<u32>,
}

/// `[[vni]]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VniConfig {
    /// 24-bit VXLAN network identifier (1..=16777215).
    pub id: u32,
    pub bridge: String,
    pub vxlan: String,
    /// Create the bridge and vxlan device when missing.
    pub create: bool,
    pub flood: FloodMode,
    pub rd: RdSetting,
    pub import_rt: RtSetting,
    pub export_rt: RtSetting,
    /// VRF the bridge is enslaved to, if any.
    pub vrf: Option<String>,
    /// Advertise locally learned MACs (type-2) and this VTEP (type-3).
    pub advertise_local: bool,
    /// Install remote MAC/IP bindings as neighbor entries and turn on
    /// `neigh_suppress` on the vxlan bridge port.
    pub arp_suppress: bool,
}

/// How broadcast, unknown-unicast and multicast traffic reaches other VTEPs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FloodMode {
    /// Head-end replication to the VTEPs learned from type-3 routes.
    IngressReplication,
    /// Head-end replication to a fixed list (type-3 routes are ignored).
    Static { vteps: Vec<IpAddr> },
    /// Underlay multicast group on the vxlan device.
    Multicast { group: IpAddr, dev: Option<String> },
}

impl FloodMode {
    pub fn name(&self) -> &'static str {
        match self {
            FloodMode::IngressReplication => "ingress-replication",
            FloodMode::Static { .. } => "static",
            FloodMode::Multicast { .. } => "multicast",
        }
    }
}

/// Route distinguisher of a VNI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RdSetting {
    /// Type 1 `router_id:N` chosen by the daemon (FRR-style).
    Auto,
    Explicit(AdminValue),
}

/// Route target setting of a VNI (import or export).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtSetting {
    /// FRR-compatible `(ASN & 0xffff):VNI`; import matches `*:VNI`.
    Auto,
    /// RFC 8365 §5.1.2.1 auto-derived form (A=1, type VXLAN, D-ID, VNI).
    AutoRfc8365,
    /// Explicit list.
    List(Vec<AdminValue>),
}

/// The `ADMIN:NUMBER` part of a route distinguisher or route target
/// (RFC 4364 §4.2, RFC 4360 §3). The encoding type follows the form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AdminValue {
    /// Type 0: 2-byte ASN, 4-byte number.
    As2 { asn: u16, number: u32 },
    /// Type 1: IPv4 address, 2-byte number.
    Ipv4 { addr: Ipv4Addr, number: u16 },
    /// Type 2: 4-byte ASN, 2-byte number.
    As4 { asn: u32, number: u16 },
}

impl AdminValue {
    /// Parse `ASN:N` or `A.B.C.D:N`. A 4-byte ASN needs N <= 65535; an ASN
    /// up to 65535 with N <= 65535 is encoded as type 0 (like FRR).
    pub fn parse(s: &str) -> Result<AdminValue, String> {
        let (admin, num) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("`{s}` is not of the form ASN:N or A.B.C.D:N"))?;
        if let Ok(addr) = admin.parse::<Ipv4Addr>() {
            let number = num
                .parse::<u16>()
                .map_err(|_| format!("`{s}`: with an IPv4 address the number must be 0..=65535"))?;
            return Ok(AdminValue::Ipv4 { addr, number });
        }
        let asn = admin.parse::<u32>().map_err(|_| {
            format!("`{s}`: `{admin}` is neither an AS number (0..=4294967295) nor an IPv4 address")
        })?;
        let number = num
            .parse::<u32>()
            .map_err(|_| format!("`{s}`: `{num}` is not a number (0..=4294967295)"))?;
        if let Ok(asn16) = u16::try_from(asn) {
            Ok(AdminValue::As2 { asn: asn16, number })
        } else {
            let number = u16::try_from(number).map_err(|_| {
                format!("`{s}`: with a 4-byte AS number the number must be 0..=65535")
            })?;
            Ok(AdminValue::As4 { asn, number })
        }
    }
}

impl fmt::Display for AdminValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminValue::As2 { asn, number } => write!(f, "{asn}:{number}"),
            AdminValue::Ipv4 { addr, number } => write!(f, "{addr}:{number}"),
            AdminValue::As4 { asn, number } => write!(f, "{asn}:{number}"),
        }
    }
}

/// `[control]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlConfig {
    pub socket: PathBuf,
    /// Prometheus endpoint; `None` disables it.
    pub metrics: Option<SocketAddr>,
}

/// `[mac]`: duplicate-address detection (RFC 7432 §15.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacConfig {
    /// A MAC that moves this many times within `dup_window` is a duplicate.
    pub dup_max_moves: u32,
    pub dup_window: Duration,
}

/// `[dataplane]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataplaneConfig {
    /// Full kernel re-dump and reconcile period (`None` when 0: only on
    /// netlink overrun).
    pub reconcile_interval: Option<Duration>,
    /// Routing protocol number stamped on the kernel entries evpnd writes
    /// (NDA_PROTOCOL), so it can tell its own entries apart.
    pub protocol: u8,
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub level: LogLevel,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub const ALL: &'static [(&'static str, LogLevel)] = &[
        ("error", LogLevel::Error),
        ("warn", LogLevel::Warn),
        ("info", LogLevel::Info),
        ("debug", LogLevel::Debug),
        ("trace", LogLevel::Trace),
    ];

    /// The name as accepted by tracing-subscriber's EnvFilter.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (journald adds timestamps).
    Text,
    /// One JSON object per line.
    Json,
}

impl fmt::Display for RdSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RdSetting::Auto => f.write_str("auto"),
            RdSetting::Explicit(v) => v.fmt(f),
        }
    }
}

impl fmt::Display for RtSetting {
    /// `auto`, `auto-rfc8365`, or the targets separated by spaces.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RtSetting::Auto => f.write_str("auto"),
            RtSetting::AutoRfc8365 => f.write_str("auto-rfc8365"),
            RtSetting::List(l) => {
                for (i, v) in l.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    v.fmt(f)?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for FloodMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
