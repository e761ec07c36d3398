//! Small typed values used on the wire.

use std::fmt;
use std::net::Ipv4Addr;

/// An autonomous system number (4-octet capable, RFC 6793).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Asn(pub u32);

impl Asn {
    /// AS_TRANS (RFC 6793 §9): put in the 2-octet My AS field when ours is wider.
    pub const TRANS: Asn = Asn(23456);
}

impl fmt::Display for Asn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// BGP Identifier / router id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouterId(pub Ipv4Addr);

impl fmt::Display for RouterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Address family identifier (IANA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Afi(pub u16);

impl Afi {
    pub const IPV4: Afi = Afi(1);
    pub const IPV6: Afi = Afi(2);
    pub const L2VPN: Afi = Afi(25);
}

/// Subsequent address family identifier (IANA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Safi(pub u8);

impl Safi {
    pub const UNICAST: Safi = Safi(1);
    pub const EVPN: Safi = Safi(70);
}

/// An AFI/SAFI pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AfiSafi {
    pub afi: Afi,
    pub safi: Safi,
}

impl AfiSafi {
    pub const IPV4_UNICAST: AfiSafi = AfiSafi {
        afi: Afi::IPV4,
        safi: Safi::UNICAST,
    };
    pub const L2VPN_EVPN: AfiSafi = AfiSafi {
        afi: Afi::L2VPN,
        safi: Safi::EVPN,
    };

    pub const fn new(afi: u16, safi: u8) -> Self {
        AfiSafi {
            afi: Afi(afi),
            safi: Safi(safi),
        }
    }
}

impl fmt::Display for AfiSafi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AfiSafi::IPV4_UNICAST => write!(f, "ipv4-unicast"),
            AfiSafi::L2VPN_EVPN => write!(f, "l2vpn-evpn"),
            AfiSafi { afi, safi } => write!(f, "afi{}/safi{}", afi.0, safi.0),
        }
    }
}
