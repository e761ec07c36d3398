//! Typed EVPN values.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A 24-bit VXLAN Network Identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct Vni(u32);

impl Vni {
    pub const MAX: u32 = 0x00ff_ffff;

    pub fn new(v: u32) -> Option<Vni> {
        (v <= Self::MAX).then_some(Vni(v))
    }
    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for Vni {
    type Error = String;
    fn try_from(v: u32) -> Result<Self, Self::Error> {
        Vni::new(v).ok_or_else(|| format!("VNI {v} does not fit in 24 bits"))
    }
}

impl From<Vni> for u32 {
    fn from(v: Vni) -> u32 {
        v.0
    }
}

impl fmt::Display for Vni {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddress(pub [u8; 6]);

impl MacAddress {
    pub const ZERO: MacAddress = MacAddress([0; 6]);

    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }
}

impl fmt::Display for MacAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for MacAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseMacError;

impl fmt::Display for ParseMacError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid MAC address (expected xx:xx:xx:xx:xx:xx)")
    }
}

impl std::error::Error for ParseMacError {}

impl FromStr for MacAddress {
    type Err = ParseMacError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for b in out.iter_mut() {
            let p = parts.next().ok_or(ParseMacError)?;
            if p.len() != 2 {
                return Err(ParseMacError);
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| ParseMacError)?;
        }
        if parts.next().is_some() {
            return Err(ParseMacError);
        }
        Ok(MacAddress(out))
    }
}

impl Serialize for MacAddress {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddress {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Route distinguisher (RFC 4364 §4.2): types 0, 1 and 2; others kept raw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteDistinguisher {
    /// Type 0: 2-octet ASN : 4-octet number.
    As2 { asn: u16, number: u32 },
    /// Type 1: IPv4 address : 2-octet number (FRR's auto RD).
    Ipv4 { addr: Ipv4Addr, number: u16 },
    /// Type 2: 4-octet ASN : 2-octet number.
    As4 { asn: u32, number: u16 },
    /// Any other type, the 8 bytes as received.
    Other([u8; 8]),
}

impl fmt::Display for RouteDistinguisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteDistinguisher::As2 { asn, number } => write!(f, "{asn}:{number}"),
            RouteDistinguisher::Ipv4 { addr, number } => write!(f, "{addr}:{number}"),
            RouteDistinguisher::As4 { asn, number } => write!(f, "{asn}:{number}"),
            RouteDistinguisher::Other(b) => {
                for (i, x) in b.iter().enumerate() {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    write!(f, "{x:02x}")?;
                }
                Ok(())
            }
        }
    }
}

/// Ethernet Segment Identifier (RFC 7432 §5), 10 octets. All-zero = single-homed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Esi(pub [u8; 10]);

impl Esi {
    pub const ZERO: Esi = Esi([0; 10]);
}

impl fmt::Display for Esi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, x) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{x:02x}")?;
        }
        Ok(())
    }
}

/// Ethernet Tag ID (RFC 7432 §7); 0 for VLAN-based service (RFC 8365 §5.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EthernetTag(pub u32);

impl RouteDistinguisher {
    /// FRR's automatic RD: type 1, `router-id:index` (RFC 7432 §7.9).
    pub fn auto(router_id: Ipv4Addr, index: u16) -> Self {
        RouteDistinguisher::Ipv4 {
            addr: router_id,
            number: index,
        }
    }

    /// Decode the 8-byte wire form (RFC 4364 §4.2).
    pub fn from_bytes(b: [u8; 8]) -> Self {
        let [t0, t1, a, b2, c, d, e, f] = b;
        match u16::from_be_bytes([t0, t1]) {
            0 => RouteDistinguisher::As2 {
                asn: u16::from_be_bytes([a, b2]),
                number: u32::from_be_bytes([c, d, e, f]),
            },
            1 => RouteDistinguisher::Ipv4 {
                addr: Ipv4Addr::new(a, b2, c, d),
                number: u16::from_be_bytes([e, f]),
            },
            2 => RouteDistinguisher::As4 {
                asn: u32::from_be_bytes([a, b2, c, d]),
                number: u16::from_be_bytes([e, f]),
            },
            _ => RouteDistinguisher::Other(b),
        }
    }

    /// The 8-byte wire form. `Other` is returned as received, so decoding
    /// then encoding is the identity.
    pub fn to_bytes(&self) -> [u8; 8] {
        let mut out = [0u8; 8];
        match *self {
            RouteDistinguisher::As2 { asn, number } => {
                out[2..4].copy_from_slice(&asn.to_be_bytes());
                out[4..8].copy_from_slice(&number.to_be_bytes());
            }
            RouteDistinguisher::Ipv4 { addr, number } => {
                out[1] = 1;
                out[2..6].copy_from_slice(&addr.octets());
                out[6..8].copy_from_slice(&number.to_be_bytes());
            }
            RouteDistinguisher::As4 { asn, number } => {
                out[1] = 2;
                out[2..6].copy_from_slice(&asn.to_be_bytes());
                out[6..8].copy_from_slice(&number.to_be_bytes());
            }
            RouteDistinguisher::Other(b) => out = b,
        }
        out
    }
}

/// A 3-octet MPLS label field as carried in EVPN NLRI and the PMSI tunnel
/// attribute. For VXLAN the whole 24-bit field is the VNI (RFC 8365 §5.1.3),
/// not `label << 4` as for MPLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Label(u32);

impl Label {
    pub const MAX: u32 = 0x00ff_ffff;

    /// The low 24 bits of `v`.
    pub fn new(v: u32) -> Self {
        Label(v & Self::MAX)
    }
    pub fn from_vni(vni: Vni) -> Self {
        Label(vni.get())
    }
    pub fn get(self) -> u32 {
        self.0
    }
    /// The VNI this label carries (RFC 8365: the whole field).
    pub fn vni(self) -> Vni {
        Vni(self.0)
    }
    pub fn from_bytes(b: [u8; 3]) -> Self {
        Label(u32::from_be_bytes([0, b[0], b[1], b[2]]))
    }
    pub fn to_bytes(self) -> [u8; 3] {
        let b = self.0.to_be_bytes();
        [b[1], b[2], b[3]]
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for EthernetTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
