//! EVPN routes (RFC 7432 §7, RFC 9136 §3) as typed values, and their route
//! keys: the part of the NLRI that identifies a route for BGP (the rest,
//! ESI and labels for most types, is a route attribute).
//!
//! The wire codec is in [`crate::nlri`].

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::types::{Esi, EthernetTag, Label, MacAddress, RouteDistinguisher};

/// Route type codes (RFC 7432 §7, RFC 9136 §3).
pub mod route_type {
    pub const ETHERNET_AD: u8 = 1;
    pub const MAC_IP: u8 = 2;
    pub const INCLUSIVE_MULTICAST: u8 = 3;
    pub const ETHERNET_SEGMENT: u8 = 4;
    pub const IP_PREFIX: u8 = 5;
}

/// Type 1: Ethernet Auto-Discovery (RFC 7432 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EthernetAdRoute {
    pub rd: RouteDistinguisher,
    pub esi: Esi,
    pub eth_tag: EthernetTag,
    pub label: Label,
}

/// Type 2: MAC/IP Advertisement (RFC 7432 §7.2). `label2` is the L3VNI of
/// symmetric IRB (RFC 9135).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacIpRoute {
    pub rd: RouteDistinguisher,
    pub esi: Esi,
    pub eth_tag: EthernetTag,
    pub mac: MacAddress,
    pub ip: Option<IpAddr>,
    pub label1: Label,
    pub label2: Option<Label>,
}

/// Type 3: Inclusive Multicast Ethernet Tag (RFC 7432 §7.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InclusiveMulticastRoute {
    pub rd: RouteDistinguisher,
    pub eth_tag: EthernetTag,
    pub originator: IpAddr,
}

/// Type 4: Ethernet Segment (RFC 7432 §7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EthernetSegmentRoute {
    pub rd: RouteDistinguisher,
    pub esi: Esi,
    pub originator: IpAddr,
}

/// Type 5: IP Prefix (RFC 9136 §3.1). The prefix is kept as received (host
/// bits included) so that re-encoding is byte-exact; `gateway` has the
/// prefix's address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpPrefixRoute {
    pub rd: RouteDistinguisher,
    pub esi: Esi,
    pub eth_tag: EthernetTag,
    pub prefix: IpNet,
    pub gateway: IpAddr,
    pub label: Label,
}

/// One EVPN NLRI of a known route type. Unknown types are skipped by the
/// decoder (RFC 7606 §5.4) and never appear here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EvpnNlri {
    EthernetAd(EthernetAdRoute),
    MacIp(MacIpRoute),
    InclusiveMulticast(InclusiveMulticastRoute),
    EthernetSegment(EthernetSegmentRoute),
    IpPrefix(IpPrefixRoute),
}

/// What identifies a route for BGP: two NLRI with the same key are the same
/// route (the later replaces the earlier from the same peer; a withdraw
/// matches on it regardless of labels and ESI).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteKey {
    /// RFC 7432 §7.1: ESI and Ethernet Tag (the label is an attribute).
    EthernetAd {
        rd: RouteDistinguisher,
        esi: Esi,
        eth_tag: EthernetTag,
    },
    /// RFC 7432 §7.2: Ethernet Tag, MAC, IP (ESI and labels excluded).
    MacIp {
        rd: RouteDistinguisher,
        eth_tag: EthernetTag,
        mac: MacAddress,
        ip: Option<IpAddr>,
    },
    /// RFC 7432 §7.3: Ethernet Tag and originating router's IP.
    InclusiveMulticast {
        rd: RouteDistinguisher,
        eth_tag: EthernetTag,
        originator: IpAddr,
    },
    /// RFC 7432 §7.4: ESI and originating router's IP.
    EthernetSegment {
        rd: RouteDistinguisher,
        esi: Esi,
        originator: IpAddr,
    },
    /// RFC 9136 §3.1: Ethernet Tag, prefix length and prefix (ESI, gateway
    /// and label excluded).
    IpPrefix {
        rd: RouteDistinguisher,
        eth_tag: EthernetTag,
        prefix: IpNet,
    },
}

impl EvpnNlri {
    /// The route type code.
    pub fn route_type(&self) -> u8 {
        match self {
            EvpnNlri::EthernetAd(_) => route_type::ETHERNET_AD,
            EvpnNlri::MacIp(_) => route_type::MAC_IP,
            EvpnNlri::InclusiveMulticast(_) => route_type::INCLUSIVE_MULTICAST,
            EvpnNlri::EthernetSegment(_) => route_type::ETHERNET_SEGMENT,
            EvpnNlri::IpPrefix(_) => route_type::IP_PREFIX,
        }
    }

    pub fn rd(&self) -> RouteDistinguisher {
        match self {
            EvpnNlri::EthernetAd(r) => r.rd,
            EvpnNlri::MacIp(r) => r.rd,
            EvpnNlri::InclusiveMulticast(r) => r.rd,
            EvpnNlri::EthernetSegment(r) => r.rd,
            EvpnNlri::IpPrefix(r) => r.rd,
        }
    }

    pub fn key(&self) -> RouteKey {
        match *self {
            EvpnNlri::EthernetAd(r) => RouteKey::EthernetAd {
                rd: r.rd,
                esi: r.esi,
                eth_tag: r.eth_tag,
            },
            EvpnNlri::MacIp(r) => RouteKey::MacIp {
                rd: r.rd,
                eth_tag: r.eth_tag,
                mac: r.mac,
                ip: r.ip,
            },
            EvpnNlri::InclusiveMulticast(r) => RouteKey::InclusiveMulticast {
                rd: r.rd,
                eth_tag: r.eth_tag,
                originator: r.originator,
            },
            EvpnNlri::EthernetSegment(r) => RouteKey::EthernetSegment {
                rd: r.rd,
                esi: r.esi,
                originator: r.originator,
            },
            EvpnNlri::IpPrefix(r) => RouteKey::IpPrefix {
                rd: r.rd,
                eth_tag: r.eth_tag,
                prefix: r.prefix,
            },
        }
    }
}

impl RouteKey {
    pub fn route_type(&self) -> u8 {
        match self {
            RouteKey::EthernetAd { .. } => route_type::ETHERNET_AD,
            RouteKey::MacIp { .. } => route_type::MAC_IP,
            RouteKey::InclusiveMulticast { .. } => route_type::INCLUSIVE_MULTICAST,
            RouteKey::EthernetSegment { .. } => route_type::ETHERNET_SEGMENT,
            RouteKey::IpPrefix { .. } => route_type::IP_PREFIX,
        }
    }
}

fn ip_len(ip: &IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// FRR's notation: `[type]:[fields]...` (e.g. `[2]:[0]:[48]:[mac]:[32]:[ip]`),
/// prefixed by the RD.
impl fmt::Display for EvpnNlri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvpnNlri::EthernetAd(r) => {
                write!(f, "{} [1]:[{}]:[{}]", r.rd, r.esi, r.eth_tag)
            }
            EvpnNlri::MacIp(r) => {
                write!(f, "{} [2]:[{}]:[48]:[{}]", r.rd, r.eth_tag, r.mac)?;
                if let Some(ip) = r.ip {
                    write!(f, ":[{}]:[{}]", ip_len(&ip), ip)?;
                }
                Ok(())
            }
            EvpnNlri::InclusiveMulticast(r) => write!(
                f,
                "{} [3]:[{}]:[{}]:[{}]",
                r.rd,
                r.eth_tag,
                ip_len(&r.originator),
                r.originator
            ),
            EvpnNlri::EthernetSegment(r) => write!(
                f,
                "{} [4]:[{}]:[{}]:[{}]",
                r.rd,
                r.esi,
                ip_len(&r.originator),
                r.originator
            ),
            EvpnNlri::IpPrefix(r) => write!(
                f,
                "{} [5]:[{}]:[{}]:[{}]",
                r.rd,
                r.eth_tag,
                r.prefix.prefix_len(),
                r.prefix.addr()
            ),
        }
    }
}
