//! Typed views of the extended communities EVPN uses (RFC 4360, RFC 7432
//! §7.5–7.8, RFC 9012, RFC 9135) over the raw [`ExtCommunity`], the PMSI
//! tunnel attribute view (RFC 6514 §5, RFC 8365 §5.1.3), and route-target
//! derivation for VNIs.
//!
//! Every view converts back to the exact 8 bytes it came from: values with
//! non-zero reserved fields are left as [`EvpnExtCommunity::Other`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::Bytes;
use evpnd_bgp::{ExtCommunity, PmsiTunnel};

use crate::types::{Label, MacAddress, Vni};

/// A route target (RFC 4360 §4, RFC 5668): types 0x00, 0x01, 0x02 with
/// subtype 0x02.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteTarget {
    /// 2-octet AS : 4-octet value (type 0x00).
    As2 { asn: u16, value: u32 },
    /// IPv4 : 2-octet value (type 0x01).
    Ipv4 { addr: Ipv4Addr, value: u16 },
    /// 4-octet AS : 2-octet value (type 0x02, RFC 5668).
    As4 { asn: u32, value: u16 },
}

impl RouteTarget {
    /// FRR's automatic RT: `(ASN & 0xffff):VNI`.
    pub fn auto(asn: u32, vni: Vni) -> Self {
        RouteTarget::As2 {
            asn: (asn & 0xffff) as u16,
            value: vni.get(),
        }
    }

    /// The RFC 8365 §5.1.2.1 auto-derived form (what Junos uses): global
    /// admin = 2-octet AS, local admin = A(1) | Type(3) = 1 (VXLAN) |
    /// D-ID(4) | VNI(24). `manual` sets the A bit.
    pub fn rfc8365(asn: u16, domain_id: u8, vni: Vni, manual: bool) -> Self {
        let a = if manual { 1u32 << 31 } else { 0 };
        let value = a | (1 << 28) | (u32::from(domain_id & 0x0f) << 24) | vni.get();
        RouteTarget::As2 { asn, value }
    }
}

impl fmt::Display for RouteTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteTarget::As2 { asn, value } => write!(f, "{asn}:{value}"),
            RouteTarget::Ipv4 { addr, value } => write!(f, "{addr}:{value}"),
            RouteTarget::As4 { asn, value } => write!(f, "{asn}:{value}"),
        }
    }
}

/// What a VNI imports: an exact route target, or FRR's auto matching that
/// takes any route target (2-octet AS, IPv4 or 4-octet AS) whose local
/// administrator equals the value: FRR masks the type and global admin of
/// auto import RTs (bgp_evpn.c `mask_ecom_global_admin`) so that eBGP peers
/// with other ASNs match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImportRt {
    Exact(RouteTarget),
    AnyAs(u32),
}

impl ImportRt {
    /// FRR's "auto" import for a VNI: `*:VNI`.
    pub fn auto(vni: Vni) -> Self {
        ImportRt::AnyAs(vni.get())
    }

    pub fn matches(&self, rt: &RouteTarget) -> bool {
        match (self, rt) {
            (ImportRt::Exact(a), b) => a == b,
            (ImportRt::AnyAs(v), RouteTarget::As2 { value, .. }) => v == value,
            (ImportRt::AnyAs(v), RouteTarget::As4 { value, .. }) => *v == u32::from(*value),
            (ImportRt::AnyAs(v), RouteTarget::Ipv4 { value, .. }) => *v == u32::from(*value),
        }
    }
}

impl fmt::Display for ImportRt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportRt::Exact(rt) => write!(f, "{rt}"),
            ImportRt::AnyAs(v) => write!(f, "*:{v}"),
        }
    }
}

/// MAC Mobility (RFC 7432 §7.7): flags (bit 0 = sticky/static) and the
/// sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacMobility {
    /// The flags octet as received (other bits are kept for re-encoding).
    pub flags: u8,
    pub sequence: u32,
}

impl MacMobility {
    pub const STICKY: u8 = 0x01;

    pub fn new(sequence: u32, sticky: bool) -> Self {
        MacMobility {
            flags: if sticky { Self::STICKY } else { 0 },
            sequence,
        }
    }
    pub fn sticky(&self) -> bool {
        self.flags & Self::STICKY != 0
    }
}

/// Tunnel types of the Encapsulation extended community (RFC 9012 §14.2).
pub mod tunnel_type {
    pub const VXLAN: u16 = 8;
    pub const NVGRE: u16 = 9;
    pub const MPLS: u16 = 10;
    pub const VXLAN_GPE: u16 = 12;
    pub const GENEVE: u16 = 19;
}

/// The extended communities EVPN understands; anything else kept raw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EvpnExtCommunity {
    RouteTarget(RouteTarget),
    /// Encapsulation 0x03/0x0c (RFC 9012 §4.1): tunnel type (8 = VXLAN).
    Encapsulation(u16),
    /// MAC Mobility 0x06/0x00 (RFC 7432 §7.7).
    MacMobility(MacMobility),
    /// Default Gateway 0x03/0x0d (RFC 7432 §7.8).
    DefaultGateway,
    /// Router's MAC 0x06/0x03 (RFC 9135 §8.1).
    RoutersMac(MacAddress),
    Other(ExtCommunity),
}

impl From<ExtCommunity> for EvpnExtCommunity {
    fn from(ec: ExtCommunity) -> Self {
        let b = ec.0;
        let zero = |r: &[u8]| r.iter().all(|&x| x == 0);
        match (b[0], b[1]) {
            (0x00, 0x02) => EvpnExtCommunity::RouteTarget(RouteTarget::As2 {
                asn: u16::from_be_bytes([b[2], b[3]]),
                value: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            }),
            (0x01, 0x02) => EvpnExtCommunity::RouteTarget(RouteTarget::Ipv4 {
                addr: Ipv4Addr::new(b[2], b[3], b[4], b[5]),
                value: u16::from_be_bytes([b[6], b[7]]),
            }),
            (0x02, 0x02) => EvpnExtCommunity::RouteTarget(RouteTarget::As4 {
                asn: u32::from_be_bytes([b[2], b[3], b[4], b[5]]),
                value: u16::from_be_bytes([b[6], b[7]]),
            }),
            (0x03, 0x0c) if zero(&b[2..6]) => {
                EvpnExtCommunity::Encapsulation(u16::from_be_bytes([b[6], b[7]]))
            }
            (0x03, 0x0d) if zero(&b[2..8]) => EvpnExtCommunity::DefaultGateway,
            (0x06, 0x00) if b[3] == 0 => EvpnExtCommunity::MacMobility(MacMobility {
                flags: b[2],
                sequence: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            }),
            (0x06, 0x03) => {
                EvpnExtCommunity::RoutersMac(MacAddress([b[2], b[3], b[4], b[5], b[6], b[7]]))
            }
            _ => EvpnExtCommunity::Other(ec),
        }
    }
}

impl From<EvpnExtCommunity> for ExtCommunity {
    fn from(v: EvpnExtCommunity) -> Self {
        let mut b = [0u8; 8];
        match v {
            EvpnExtCommunity::RouteTarget(RouteTarget::As2 { asn, value }) => {
                b[1] = 0x02;
                b[2..4].copy_from_slice(&asn.to_be_bytes());
                b[4..8].copy_from_slice(&value.to_be_bytes());
            }
            EvpnExtCommunity::RouteTarget(RouteTarget::Ipv4 { addr, value }) => {
                b[0] = 0x01;
                b[1] = 0x02;
                b[2..6].copy_from_slice(&addr.octets());
                b[6..8].copy_from_slice(&value.to_be_bytes());
            }
            EvpnExtCommunity::RouteTarget(RouteTarget::As4 { asn, value }) => {
                b[0] = 0x02;
                b[1] = 0x02;
                b[2..6].copy_from_slice(&asn.to_be_bytes());
                b[6..8].copy_from_slice(&value.to_be_bytes());
            }
            EvpnExtCommunity::Encapsulation(t) => {
                b[0] = 0x03;
                b[1] = 0x0c;
                b[6..8].copy_from_slice(&t.to_be_bytes());
            }
            EvpnExtCommunity::MacMobility(m) => {
                b[0] = 0x06;
                b[2] = m.flags;
                b[4..8].copy_from_slice(&m.sequence.to_be_bytes());
            }
            EvpnExtCommunity::DefaultGateway => {
                b[0] = 0x03;
                b[1] = 0x0d;
            }
            EvpnExtCommunity::RoutersMac(mac) => {
                b[0] = 0x06;
                b[1] = 0x03;
                b[2..8].copy_from_slice(&mac.0);
            }
            EvpnExtCommunity::Other(ec) => return ec,
        }
        ExtCommunity(b)
    }
}

impl From<RouteTarget> for ExtCommunity {
    fn from(rt: RouteTarget) -> Self {
        EvpnExtCommunity::RouteTarget(rt).into()
    }
}

/// FRR's notation (`show bgp l2vpn evpn`).
impl fmt::Display for EvpnExtCommunity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvpnExtCommunity::RouteTarget(rt) => write!(f, "RT:{rt}"),
            EvpnExtCommunity::Encapsulation(t) => write!(f, "ET:{t}"),
            EvpnExtCommunity::MacMobility(m) => {
                write!(f, "MM:{}", m.sequence)?;
                if m.sticky() {
                    f.write_str(", sticky MAC")?;
                }
                Ok(())
            }
            EvpnExtCommunity::DefaultGateway => f.write_str("Default Gateway"),
            EvpnExtCommunity::RoutersMac(mac) => write!(f, "Rmac:{mac}"),
            EvpnExtCommunity::Other(ec) => {
                f.write_str("0x")?;
                for x in ec.0 {
                    write!(f, "{x:02x}")?;
                }
                Ok(())
            }
        }
    }
}

/// What EVPN needs from a route's extended communities, in one pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EvpnCommunities {
    pub route_targets: Vec<RouteTarget>,
    pub encapsulation: Option<u16>,
    pub mac_mobility: Option<MacMobility>,
    pub default_gateway: bool,
    pub routers_mac: Option<MacAddress>,
}

impl EvpnCommunities {
    pub fn parse(ecs: &[ExtCommunity]) -> Self {
        let mut out = EvpnCommunities::default();
        for ec in ecs {
            match EvpnExtCommunity::from(*ec) {
                EvpnExtCommunity::RouteTarget(rt) => out.route_targets.push(rt),
                EvpnExtCommunity::Encapsulation(t) => out.encapsulation = Some(t),
                // RFC 7432 §7.7: a route carries at most one; if several, the
                // first is used (any is as good; be deterministic).
                EvpnExtCommunity::MacMobility(m) => {
                    out.mac_mobility.get_or_insert(m);
                }
                EvpnExtCommunity::DefaultGateway => out.default_gateway = true,
                EvpnExtCommunity::RoutersMac(m) => out.routers_mac = Some(m),
                EvpnExtCommunity::Other(_) => {}
            }
        }
        out
    }
}

/// Only the MAC mobility community (the best-path hot path).
pub fn mac_mobility(ecs: &[ExtCommunity]) -> Option<MacMobility> {
    ecs.iter().find_map(|ec| match EvpnExtCommunity::from(*ec) {
        EvpnExtCommunity::MacMobility(m) => Some(m),
        _ => None,
    })
}

/// The route targets of a route.
pub fn route_targets(ecs: &[ExtCommunity]) -> impl Iterator<Item = RouteTarget> + '_ {
    ecs.iter()
        .filter_map(|ec| match EvpnExtCommunity::from(*ec) {
            EvpnExtCommunity::RouteTarget(rt) => Some(rt),
            _ => None,
        })
}

/// A typed view of the PMSI tunnel attribute for VXLAN (RFC 8365 §5.1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PmsiView {
    pub tunnel_type: u8,
    /// The label field: the VNI for VXLAN.
    pub label: Label,
    /// The tunnel identifier as an IP address when it is 4 or 16 bytes
    /// (ingress replication: the replication endpoint).
    pub endpoint: Option<IpAddr>,
}

impl PmsiView {
    pub fn new(p: &PmsiTunnel) -> Self {
        let endpoint = match p.tunnel_id.len() {
            4 => <[u8; 4]>::try_from(&p.tunnel_id[..])
                .ok()
                .map(|b| IpAddr::V4(Ipv4Addr::from(b))),
            16 => <[u8; 16]>::try_from(&p.tunnel_id[..])
                .ok()
                .map(|b| IpAddr::V6(Ipv6Addr::from(b))),
            _ => None,
        };
        PmsiView {
            tunnel_type: p.tunnel_type,
            label: Label::new(p.label),
            endpoint,
        }
    }

    pub fn is_ingress_replication(&self) -> bool {
        self.tunnel_type == PmsiTunnel::INGRESS_REPLICATION
    }

    pub fn vni(&self) -> Vni {
        self.label.vni()
    }

    /// The attribute an NVE attaches to its type-3 route: ingress
    /// replication, label = VNI, tunnel id = its VTEP address.
    pub fn ingress_replication(vni: Vni, vtep: IpAddr) -> PmsiTunnel {
        let tunnel_id = match vtep {
            IpAddr::V4(a) => Bytes::copy_from_slice(&a.octets()),
            IpAddr::V6(a) => Bytes::copy_from_slice(&a.octets()),
        };
        PmsiTunnel {
            flags: 0,
            tunnel_type: PmsiTunnel::INGRESS_REPLICATION,
            label: vni.get(),
            tunnel_id,
        }
    }
}

impl fmt::Display for PmsiView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_ingress_replication() {
            f.write_str("PMSI: ingress-replication")?;
        } else {
            write!(f, "PMSI: type {}", self.tunnel_type)?;
        }
        write!(f, ", VNI {}", self.label)?;
        if let Some(ep) = self.endpoint {
            write!(f, ", endpoint {ep}")?;
        }
        Ok(())
    }
}
