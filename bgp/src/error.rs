//! Typed errors of the wire codec. Each says where (byte offset from the start
//! of the message) and which NOTIFICATION it maps to (RFC 4271 §6, RFC 7606).

use thiserror::Error;

/// NOTIFICATION error codes (RFC 4271 §4.5) and the subcodes evpnd sends.
pub mod notif {
    pub const MESSAGE_HEADER: u8 = 1;
    pub const OPEN_MESSAGE: u8 = 2;
    pub const UPDATE_MESSAGE: u8 = 3;
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    pub const FSM_ERROR: u8 = 5;
    pub const CEASE: u8 = 6;
    pub const ROUTE_REFRESH_MESSAGE: u8 = 7;

    // Message header subcodes (§6.1).
    pub const CONNECTION_NOT_SYNCHRONIZED: u8 = 1;
    pub const BAD_MESSAGE_LENGTH: u8 = 2;
    pub const BAD_MESSAGE_TYPE: u8 = 3;

    // OPEN subcodes (§6.2, RFC 5492). 0 = unspecific (malformed parameter).
    pub const OPEN_UNSPECIFIC: u8 = 0;
    pub const UNSUPPORTED_VERSION: u8 = 1;
    pub const BAD_PEER_AS: u8 = 2;
    pub const BAD_BGP_ID: u8 = 3;
    pub const UNSUPPORTED_OPTIONAL_PARAMETER: u8 = 4;
    pub const UNACCEPTABLE_HOLD_TIME: u8 = 6;
    pub const UNSUPPORTED_CAPABILITY: u8 = 7;

    // UPDATE subcodes (§6.3).
    pub const MALFORMED_ATTRIBUTE_LIST: u8 = 1;
    pub const UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE: u8 = 2;
    pub const MISSING_WELL_KNOWN_ATTRIBUTE: u8 = 3;
    pub const ATTRIBUTE_FLAGS_ERROR: u8 = 4;
    pub const ATTRIBUTE_LENGTH_ERROR: u8 = 5;
    pub const INVALID_ORIGIN_ATTRIBUTE: u8 = 6;
    pub const INVALID_NEXT_HOP_ATTRIBUTE: u8 = 8;
    pub const OPTIONAL_ATTRIBUTE_ERROR: u8 = 9;
    pub const INVALID_NETWORK_FIELD: u8 = 10;
    pub const MALFORMED_AS_PATH: u8 = 11;

    // ROUTE-REFRESH subcodes (RFC 7313 §5).
    pub const RR_INVALID_MESSAGE_LENGTH: u8 = 1;

    // FSM error subcodes (RFC 6608).
    pub const FSM_UNEXPECTED_IN_OPENSENT: u8 = 1;
    pub const FSM_UNEXPECTED_IN_OPENCONFIRM: u8 = 2;
    pub const FSM_UNEXPECTED_IN_ESTABLISHED: u8 = 3;

    // Cease subcodes (RFC 4486).
    pub const CEASE_MAX_PREFIXES: u8 = 1;
    pub const CEASE_ADMIN_SHUTDOWN: u8 = 2;
    pub const CEASE_PEER_DECONFIGURED: u8 = 3;
    pub const CEASE_ADMIN_RESET: u8 = 4;
    pub const CEASE_CONNECTION_REJECTED: u8 = 5;
    pub const CEASE_OTHER_CONFIG_CHANGE: u8 = 6;
    pub const CEASE_COLLISION_RESOLUTION: u8 = 7;
    pub const CEASE_OUT_OF_RESOURCES: u8 = 8;
    pub const CEASE_HARD_RESET: u8 = 9;
}

/// What RFC 7606 §2 says to do about a malformed attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorAction {
    /// Drop the attribute, keep the route (§2 "attribute discard").
    AttributeDiscard,
    /// Handle every NLRI of the UPDATE as withdrawn (§2 "treat-as-withdraw").
    TreatAsWithdraw,
    /// Disable the AFI/SAFI on the session (§2 "AFI/SAFI disable"); evpnd
    /// implements it as a session reset with the NOTIFICATION given.
    AfiSafiDisable,
    /// Send NOTIFICATION and close (§2 "session reset").
    SessionReset,
}

/// One RFC 7606 outcome recorded on an UPDATE that was still decodable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrErrorReport {
    pub attr_type: u8,
    /// Byte offset of the attribute from the start of the message.
    pub offset: usize,
    pub action: ErrorAction,
    pub reason: AttrErrorKind,
}

/// What was wrong with an attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum AttrErrorKind {
    #[error("attribute length {0} is wrong for this attribute")]
    BadLength(usize),
    #[error("attribute flags {0:#04x} are wrong for this attribute")]
    BadFlags(u8),
    #[error("invalid ORIGIN value {0}")]
    BadOrigin(u8),
    #[error("malformed AS_PATH")]
    MalformedAsPath,
    #[error("invalid NEXT_HOP")]
    BadNextHop,
    #[error("attribute appears more than once")]
    Duplicate,
    #[error("missing well-known mandatory attribute {0}")]
    MissingWellKnown(u8),
    #[error("malformed value")]
    Malformed,
    #[error("unrecognized well-known attribute")]
    UnrecognizedWellKnown,
    #[error("AS number 0 (RFC 7607)")]
    ZeroAsn,
}

/// NLRI that cannot be parsed (RFC 7606 §5.3).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NlriError {
    #[error("NLRI truncated at byte {offset}")]
    Truncated { offset: usize },
    #[error("invalid NLRI length {len} at byte {offset}")]
    BadLength { offset: usize, len: usize },
    #[error("invalid NLRI field at byte {offset}: {what}")]
    Invalid { offset: usize, what: &'static str },
    #[error("AFI/SAFI {afi}/{safi} not supported")]
    UnsupportedAfiSafi { afi: u16, safi: u8 },
}

/// A message that cannot be accepted: the session is reset with the
/// NOTIFICATION given by [`DecodeError::notification`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("connection not synchronized: bad marker")]
    BadMarker,
    #[error("bad message length {len}")]
    BadLength { len: u16 },
    #[error("bad message type {msg_type}")]
    BadType { msg_type: u8 },
    #[error("OPEN error at byte {offset}: subcode {subcode}")]
    Open {
        offset: usize,
        subcode: u8,
        data: Vec<u8>,
    },
    #[error("UPDATE error at byte {offset}: subcode {subcode}")]
    Update {
        offset: usize,
        subcode: u8,
        data: Vec<u8>,
    },
    #[error("ROUTE-REFRESH error at byte {offset}")]
    RouteRefresh { offset: usize, subcode: u8 },
    #[error("NLRI error in attribute at byte {offset}: {source}")]
    Nlri { offset: usize, source: NlriError },
    #[error("NOTIFICATION too short")]
    ShortNotification,
}

impl DecodeError {
    /// The NOTIFICATION (code, subcode, data) to send for this error.
    pub fn notification(&self) -> (u8, u8, Vec<u8>) {
        use notif::*;
        match self {
            DecodeError::BadMarker => (MESSAGE_HEADER, CONNECTION_NOT_SYNCHRONIZED, vec![]),
            DecodeError::BadLength { len } => (
                MESSAGE_HEADER,
                BAD_MESSAGE_LENGTH,
                len.to_be_bytes().to_vec(),
            ),
            DecodeError::BadType { msg_type } => {
                (MESSAGE_HEADER, BAD_MESSAGE_TYPE, vec![*msg_type])
            }
            DecodeError::Open { subcode, data, .. } => (OPEN_MESSAGE, *subcode, data.clone()),
            DecodeError::Update { subcode, data, .. } => (UPDATE_MESSAGE, *subcode, data.clone()),
            DecodeError::RouteRefresh { subcode, .. } => (ROUTE_REFRESH_MESSAGE, *subcode, vec![]),
            DecodeError::Nlri { .. } => (UPDATE_MESSAGE, OPTIONAL_ATTRIBUTE_ERROR, vec![]),
            DecodeError::ShortNotification => (MESSAGE_HEADER, BAD_MESSAGE_LENGTH, vec![]),
        }
    }
}

/// A message that cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// Longer than the session allows (RFC 4271 §4.1, RFC 8654).
    #[error("message of {len} bytes exceeds the maximum of {max}")]
    TooLong { len: usize, max: usize },
}
