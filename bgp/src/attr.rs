//! Path attributes (RFC 4271 §5 and extensions) as typed values.

use std::net::Ipv4Addr;

use bytes::Bytes;

use crate::types::Asn;

/// Attribute type codes.
pub mod code {
    pub const ORIGIN: u8 = 1;
    pub const AS_PATH: u8 = 2;
    pub const NEXT_HOP: u8 = 3;
    pub const MED: u8 = 4;
    pub const LOCAL_PREF: u8 = 5;
    pub const ATOMIC_AGGREGATE: u8 = 6;
    pub const AGGREGATOR: u8 = 7;
    pub const COMMUNITIES: u8 = 8;
    pub const ORIGINATOR_ID: u8 = 9;
    pub const CLUSTER_LIST: u8 = 10;
    pub const MP_REACH_NLRI: u8 = 14;
    pub const MP_UNREACH_NLRI: u8 = 15;
    pub const EXTENDED_COMMUNITIES: u8 = 16;
    pub const AS4_PATH: u8 = 17;
    pub const AS4_AGGREGATOR: u8 = 18;
    pub const PMSI_TUNNEL: u8 = 22;
}

/// Attribute flag bits (RFC 4271 §4.3).
pub mod flags {
    pub const OPTIONAL: u8 = 0x80;
    pub const TRANSITIVE: u8 = 0x40;
    pub const PARTIAL: u8 = 0x20;
    pub const EXTENDED_LENGTH: u8 = 0x10;
}

/// ORIGIN values (RFC 4271 §5.1.1); order is the best-path preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Origin {
    Igp = 0,
    Egp = 1,
    Incomplete = 2,
}

/// One AS_PATH segment. ASNs are always held as 4-octet values; the codec
/// reads and writes 2-octet paths (with AS4_PATH) when the session is not
/// 4-octet capable (RFC 6793 §4.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AsSegment {
    Set(Vec<Asn>),
    Sequence(Vec<Asn>),
    ConfedSequence(Vec<Asn>),
    ConfedSet(Vec<Asn>),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct AsPath {
    pub segments: Vec<AsSegment>,
}

impl AsPath {
    /// Path length for best-path selection (RFC 4271 §9.1.2.2 a): a SET
    /// counts 1, confederation segments count 0 (RFC 5065 §5.3).
    pub fn path_len(&self) -> usize {
        self.segments
            .iter()
            .map(|s| match s {
                AsSegment::Sequence(v) => v.len(),
                AsSegment::Set(_) => 1,
                AsSegment::ConfedSequence(_) | AsSegment::ConfedSet(_) => 0,
            })
            .sum()
    }

    /// The neighbouring AS: first ASN of the first SEQUENCE.
    pub fn first_as(&self) -> Option<Asn> {
        match self.segments.first() {
            Some(AsSegment::Sequence(v)) => v.first().copied(),
            _ => None,
        }
    }
}

/// AGGREGATOR (RFC 4271 §5.1.7, 4-octet form after RFC 6793).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Aggregator {
    pub asn: Asn,
    pub address: Ipv4Addr,
}

/// A raw 8-byte extended community (RFC 4360). Typed views live in
/// `evpnd-evpn` (route targets, encapsulation, MAC mobility, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExtCommunity(pub [u8; 8]);

impl ExtCommunity {
    pub fn type_high(&self) -> u8 {
        self.0[0]
    }
    pub fn subtype(&self) -> u8 {
        self.0[1]
    }
}

/// PMSI Tunnel attribute (RFC 6514 §5, used by RFC 8365 §5.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PmsiTunnel {
    pub flags: u8,
    /// Tunnel type: 6 = ingress replication.
    pub tunnel_type: u8,
    /// The 3-octet MPLS label field; for VXLAN the VNI (RFC 8365 §5.1.3).
    pub label: u32,
    /// Tunnel identifier; for ingress replication the endpoint IP.
    pub tunnel_id: Bytes,
}

impl PmsiTunnel {
    pub const INGRESS_REPLICATION: u8 = 6;
}

/// An attribute evpnd does not interpret, kept to pass on (RFC 4271 §5:
/// optional transitive ones are re-sent with the Partial bit set).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RawAttribute {
    pub flags: u8,
    pub type_code: u8,
    pub value: Bytes,
}

/// Every path attribute except MP_REACH/MP_UNREACH (held in the UPDATE).
/// Shared by all NLRI of an UPDATE, so it is cheap to put behind an `Arc`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct PathAttributes {
    pub origin: Option<Origin>,
    /// AS_PATH merged with AS4_PATH as RFC 6793 §4.2.3 says.
    pub as_path: Option<AsPath>,
    pub next_hop: Option<Ipv4Addr>,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    pub atomic_aggregate: bool,
    pub aggregator: Option<Aggregator>,
    pub communities: Vec<u32>,
    pub originator_id: Option<Ipv4Addr>,
    pub cluster_list: Vec<Ipv4Addr>,
    pub ext_communities: Vec<ExtCommunity>,
    pub pmsi_tunnel: Option<PmsiTunnel>,
    /// Unrecognised attributes, in received order.
    pub unknown: Vec<RawAttribute>,
}

impl PathAttributes {
    /// True when no attribute at all is present (End-of-RIB detection).
    pub fn is_empty(&self) -> bool {
        *self == PathAttributes::default()
    }
}

impl PathAttributes {
    /// The attributes to pass on to other peers (RFC 4271 §5): unrecognised
    /// optional transitive attributes get the Partial bit, unrecognised
    /// non-transitive ones are dropped. Everything typed is kept as is.
    pub fn for_propagation(&self) -> PathAttributes {
        let mut out = self.clone();
        out.unknown.retain(|a| a.flags & flags::TRANSITIVE != 0);
        for a in &mut out.unknown {
            a.flags |= flags::PARTIAL;
        }
        out
    }
}
