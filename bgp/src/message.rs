//! BGP messages (RFC 4271 §4) as typed values. Decoding and encoding live in
//! [`crate::codec`].

use std::fmt::Debug;
use std::net::{IpAddr, Ipv4Addr};

use bytes::{Bytes, BytesMut};
use ipnet::Ipv4Net;

use crate::attr::PathAttributes;
use crate::error::{AttrErrorReport, NlriError};
use crate::types::{AfiSafi, Asn};

/// Maximum message size without / with the Extended Message capability
/// (RFC 4271 §4.1, RFC 8654).
pub const MAX_MESSAGE_LEN: usize = 4096;
pub const MAX_EXTENDED_MESSAGE_LEN: usize = 65535;
pub const HEADER_LEN: usize = 19;

/// A codec for the NLRI of one or more AFI/SAFIs carried in MP_REACH_NLRI and
/// MP_UNREACH_NLRI (RFC 4760). Implemented outside this crate (EVPN lives in
/// `evpnd-evpn`); [`RawNlri`] is the fallback that keeps bytes as they are.
pub trait Nlri: Sized + Clone + Debug + PartialEq {
    /// Decode every NLRI in `buf` (the whole NLRI field of the attribute) for
    /// `afi_safi`. An error means the NLRI field cannot be parsed, which per
    /// RFC 7606 §5.3 ends the session (or disables the AFI/SAFI).
    /// Implementations may discard individual NLRI they do not understand
    /// but can skip over (RFC 7606 §5.4 for unknown EVPN route types).
    fn decode_all(afi_safi: AfiSafi, buf: &[u8]) -> Result<Vec<Self>, NlriError>;
    /// Append the wire form of one NLRI.
    fn encode(&self, buf: &mut BytesMut);
    /// Length of [`Nlri::encode`]'s output, used to pack UPDATEs.
    fn encoded_len(&self) -> usize;
}

/// NLRI kept as one opaque blob per attribute: for AFI/SAFIs nobody decodes,
/// and for tests of the bgp crate alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawNlri(pub Bytes);

impl Nlri for RawNlri {
    fn decode_all(_afi_safi: AfiSafi, buf: &[u8]) -> Result<Vec<Self>, NlriError> {
        if buf.is_empty() {
            Ok(Vec::new())
        } else {
            Ok(vec![RawNlri(Bytes::copy_from_slice(buf))])
        }
    }
    fn encode(&self, buf: &mut BytesMut) {
        buf.extend_from_slice(&self.0);
    }
    fn encoded_len(&self) -> usize {
        self.0.len()
    }
}

/// A BGP message, generic over the MP NLRI codec.
// Most messages on a busy session are UPDATEs; boxing them would cost an
// allocation each for no gain.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Message<N: Nlri = RawNlri> {
    Open(Open),
    Update(Update<N>),
    Notification(Notification),
    Keepalive,
    RouteRefresh(RouteRefresh),
}

impl<N: Nlri> Message<N> {
    /// The message type code (RFC 4271 §4.1, RFC 2918).
    pub fn type_code(&self) -> u8 {
        match self {
            Message::Open(_) => 1,
            Message::Update(_) => 2,
            Message::Notification(_) => 3,
            Message::Keepalive => 4,
            Message::RouteRefresh(_) => 5,
        }
    }
}

/// OPEN (RFC 4271 §4.2). `my_as` is the 2-octet field as sent; the real ASN
/// of a 4-octet speaker is in [`Capability::FourOctetAs`] (see [`Open::asn`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    pub version: u8,
    pub my_as: u16,
    pub hold_time: u16,
    pub bgp_id: Ipv4Addr,
    /// Capabilities (RFC 5492), in the order received, across all
    /// Capabilities optional parameters.
    pub capabilities: Vec<Capability>,
    /// Optional parameters other than Capabilities (type 2), kept raw.
    pub other_params: Vec<(u8, Bytes)>,
}

impl Open {
    /// The speaker's ASN: the 4-octet AS capability if present, else `my_as`.
    pub fn asn(&self) -> Asn {
        self.capabilities
            .iter()
            .find_map(|c| match c {
                Capability::FourOctetAs(a) => Some(*a),
                _ => None,
            })
            .unwrap_or(Asn(self.my_as as u32))
    }

    pub fn has(&self, pred: impl Fn(&Capability) -> bool) -> bool {
        self.capabilities.iter().any(pred)
    }

    /// AFI/SAFIs announced with the Multiprotocol capability.
    pub fn afi_safis(&self) -> Vec<AfiSafi> {
        self.capabilities
            .iter()
            .filter_map(|c| match c {
                Capability::Multiprotocol(a) => Some(*a),
                _ => None,
            })
            .collect()
    }
}

/// Capabilities (RFC 5492) evpnd understands; anything else is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capability {
    /// Code 1, RFC 4760.
    Multiprotocol(AfiSafi),
    /// Code 2, RFC 2918.
    RouteRefresh,
    /// Code 6, RFC 8654.
    ExtendedMessage,
    /// Code 64, RFC 4724.
    GracefulRestart(GracefulRestartCap),
    /// Code 65, RFC 6793.
    FourOctetAs(Asn),
    /// Anything else, kept with its code and value.
    Unknown { code: u8, data: Bytes },
}

/// Graceful restart capability value (RFC 4724 §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GracefulRestartCap {
    /// Restart State (R) bit.
    pub restarting: bool,
    /// Graceful Notification (N) bit (RFC 8538); kept for re-encoding.
    pub notification: bool,
    /// Restart Time in seconds (12 bits).
    pub restart_time: u16,
    /// Per AFI/SAFI: (afi_safi, forwarding state preserved).
    pub afi_safis: Vec<(AfiSafi, bool)>,
}

/// UPDATE (RFC 4271 §4.3) with the MP attributes lifted out of the attribute
/// list so that users see the routes directly.
#[derive(Debug, Clone, PartialEq)]
pub struct Update<N: Nlri = RawNlri> {
    /// IPv4 unicast withdrawn routes field.
    pub withdrawn: Vec<Ipv4Net>,
    /// Path attributes other than MP_REACH_NLRI / MP_UNREACH_NLRI.
    pub attributes: PathAttributes,
    /// MP_REACH_NLRI (type 14), if present.
    pub mp_reach: Option<MpReach<N>>,
    /// MP_UNREACH_NLRI (type 15), if present.
    pub mp_unreach: Option<MpUnreach<N>>,
    /// IPv4 unicast NLRI field.
    pub nlri: Vec<Ipv4Net>,
    /// RFC 7606 outcomes found while decoding (attribute discarded, or the
    /// whole update treated as withdraw). Never encoded. When any report has
    /// [`crate::error::ErrorAction::TreatAsWithdraw`], every NLRI of this
    /// UPDATE (reach and unreach) must be handled as withdrawn.
    pub errors: Vec<AttrErrorReport>,
}

impl<N: Nlri> Default for Update<N> {
    fn default() -> Self {
        Update {
            withdrawn: Vec::new(),
            attributes: PathAttributes::default(),
            mp_reach: None,
            mp_unreach: None,
            nlri: Vec::new(),
            errors: Vec::new(),
        }
    }
}

impl<N: Nlri> Update<N> {
    /// End-of-RIB marker (RFC 4724 §2): for IPv4 unicast an empty UPDATE; for
    /// other AFI/SAFIs an UPDATE whose only content is an empty MP_UNREACH.
    pub fn end_of_rib(afi_safi: AfiSafi) -> Self {
        if afi_safi == AfiSafi::IPV4_UNICAST {
            Update::default()
        } else {
            Update {
                mp_unreach: Some(MpUnreach {
                    afi_safi,
                    withdrawn: Vec::new(),
                }),
                ..Update::default()
            }
        }
    }

    /// If this UPDATE is an End-of-RIB marker, for which AFI/SAFI.
    pub fn is_end_of_rib(&self) -> Option<AfiSafi> {
        let empty_rest = self.withdrawn.is_empty()
            && self.nlri.is_empty()
            && self.mp_reach.is_none()
            && self.attributes.is_empty();
        if !empty_rest {
            return None;
        }
        match &self.mp_unreach {
            None => Some(AfiSafi::IPV4_UNICAST),
            Some(u) if u.withdrawn.is_empty() => Some(u.afi_safi),
            Some(_) => None,
        }
    }

    /// True if RFC 7606 says handle every NLRI of this UPDATE as withdrawn.
    pub fn treat_as_withdraw(&self) -> bool {
        self.errors
            .iter()
            .any(|e| e.action == crate::error::ErrorAction::TreatAsWithdraw)
    }
}

/// MP_REACH_NLRI (RFC 4760 §3).
#[derive(Debug, Clone, PartialEq)]
pub struct MpReach<N: Nlri = RawNlri> {
    pub afi_safi: AfiSafi,
    pub next_hop: NextHop,
    pub nlri: Vec<N>,
}

/// MP_UNREACH_NLRI (RFC 4760 §4).
#[derive(Debug, Clone, PartialEq)]
pub struct MpUnreach<N: Nlri = RawNlri> {
    pub afi_safi: AfiSafi,
    pub withdrawn: Vec<N>,
}

/// The next hop of MP_REACH_NLRI: one IPv4 or IPv6 address, or IPv6 global
/// plus link-local (32 bytes); anything else kept raw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextHop {
    Ip(IpAddr),
    Ipv6WithLinkLocal(std::net::Ipv6Addr, std::net::Ipv6Addr),
    Raw(Bytes),
}

/// NOTIFICATION (RFC 4271 §4.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub code: u8,
    pub subcode: u8,
    pub data: Bytes,
}

/// ROUTE-REFRESH (RFC 2918 §3; subtype per RFC 7313 kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRefresh {
    pub afi_safi: AfiSafi,
    pub subtype: u8,
}
