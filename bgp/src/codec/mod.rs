//! Wire codec: decode with nom, encode with bytes.
//!
//! - [`frame_len`] tells a framed reader whether a whole message is buffered.
//! - [`decode`] turns one whole message into a [`Message`]; errors that end
//!   the session come back as [`DecodeError`] (with the NOTIFICATION to send),
//!   RFC 7606 outcomes that keep it up are in [`Update::errors`].
//! - [`encode`] / [`try_encode`] write a message. Encoding follows FRR 8.4's
//!   choices so that FRR's messages re-encode byte for byte (see
//!   `docs/captures.md`): one capability per optional parameter; MP_REACH,
//!   MP_UNREACH, then the other attributes in type-code order; the
//!   extended-length flag on AS_PATH, MP_REACH_NLRI, a non-empty
//!   MP_UNREACH_NLRI (not on End-of-RIB's empty one) and on anything longer
//!   than 255 bytes.
//! - [`pack_reach`] / [`pack_unreach`] split many NLRI into UPDATEs that fit.
//!
//! [`Update::errors`]: crate::message::Update::errors

use bytes::{BufMut, BytesMut};

use crate::error::{DecodeError, EncodeError};
use crate::message::{
    Message, Nlri, Notification, RouteRefresh, HEADER_LEN, MAX_EXTENDED_MESSAGE_LEN,
    MAX_MESSAGE_LEN,
};
use crate::types::AfiSafi;

mod attr;
mod open;
mod pack;
mod read;
mod update;

#[cfg(any(test, feature = "proptest"))]
pub mod arbitrary;

#[cfg(test)]
mod golden_tests;
#[cfg(test)]
mod proptests;

pub use pack::{pack_reach, pack_unreach};

/// Message type codes (RFC 4271 §4.1, RFC 2918 §3).
pub mod msg_type {
    pub const OPEN: u8 = 1;
    pub const UPDATE: u8 = 2;
    pub const NOTIFICATION: u8 = 3;
    pub const KEEPALIVE: u8 = 4;
    pub const ROUTE_REFRESH: u8 = 5;
}

/// Per-session parameters that change how messages are read and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodecOptions {
    /// Both sides announced the 4-octet AS capability (RFC 6793).
    pub four_octet_as: bool,
    /// Both sides announced the Extended Message capability (RFC 8654).
    pub extended_message: bool,
}

impl Default for CodecOptions {
    fn default() -> Self {
        CodecOptions {
            four_octet_as: true,
            extended_message: false,
        }
    }
}

impl CodecOptions {
    /// Largest message allowed on this session (RFC 4271 §4.1, RFC 8654 §4).
    pub fn max_message_len(&self) -> usize {
        if self.extended_message {
            MAX_EXTENDED_MESSAGE_LEN
        } else {
            MAX_MESSAGE_LEN
        }
    }
}

const MARKER: [u8; 16] = [0xff; 16];

/// If `buf` starts with a complete message, its total length; `Ok(None)` if
/// more bytes are needed. Checks the marker and the length bounds (RFC 4271
/// §6.1) so a framed reader can reject a bad stream before buffering it.
pub fn frame_len(buf: &[u8], opts: &CodecOptions) -> Result<Option<usize>, DecodeError> {
    let marker_seen = buf.len().min(MARKER.len());
    if buf[..marker_seen].iter().any(|&b| b != 0xff) {
        return Err(DecodeError::BadMarker);
    }
    let Some(len_bytes) = buf.get(16..18) else {
        return Ok(None);
    };
    let len = u16::from_be_bytes([len_bytes[0], len_bytes[1]]);
    if (len as usize) < HEADER_LEN || len as usize > opts.max_message_len() {
        return Err(DecodeError::BadLength { len });
    }
    if buf.len() < len as usize {
        Ok(None)
    } else {
        Ok(Some(len as usize))
    }
}

/// Decode one whole message (header included). `buf` must hold exactly one
/// message.
pub fn decode<N: Nlri>(buf: &[u8], opts: &CodecOptions) -> Result<Message<N>, DecodeError> {
    let result = decode_inner(buf, opts);
    if let Err(e) = &result {
        tracing::debug!(error = %e, len = buf.len(), "BGP message rejected");
    }
    result
}

fn decode_inner<N: Nlri>(buf: &[u8], opts: &CodecOptions) -> Result<Message<N>, DecodeError> {
    if buf.len() < HEADER_LEN {
        if buf.iter().take(16).any(|&b| b != 0xff) {
            return Err(DecodeError::BadMarker);
        }
        return Err(DecodeError::BadLength {
            len: buf.len() as u16,
        });
    }
    if buf[..16] != MARKER {
        return Err(DecodeError::BadMarker);
    }
    let len = u16::from_be_bytes([buf[16], buf[17]]);
    let msg_type = buf[18];
    if (len as usize) < HEADER_LEN || len as usize > opts.max_message_len() {
        return Err(DecodeError::BadLength { len });
    }
    // A buffer that disagrees with the length field is a framing bug or a
    // lying length: both are a bad length (§6.1).
    if len as usize != buf.len() {
        return Err(DecodeError::BadLength { len });
    }
    // Per-type length rules (§6.1, RFC 2918 §3).
    let len_ok = match msg_type {
        msg_type::OPEN => len >= 29,
        msg_type::UPDATE => len >= 23,
        msg_type::NOTIFICATION => len >= 21,
        msg_type::KEEPALIVE => len == 19,
        msg_type::ROUTE_REFRESH => len >= 23,
        _ => return Err(DecodeError::BadType { msg_type }),
    };
    if !len_ok {
        return Err(DecodeError::BadLength { len });
    }
    match msg_type {
        msg_type::OPEN => open::decode_open(buf).map(Message::Open),
        msg_type::UPDATE => update::decode_update(buf, opts).map(Message::Update),
        msg_type::NOTIFICATION => Ok(Message::Notification(Notification {
            code: buf[19],
            subcode: buf[20],
            data: bytes::Bytes::copy_from_slice(&buf[21..]),
        })),
        msg_type::KEEPALIVE => Ok(Message::Keepalive),
        _ => decode_route_refresh(buf).map(Message::RouteRefresh),
    }
}

/// ROUTE-REFRESH (RFC 2918 §3, RFC 7313 §3). We announce no ORF (RFC 5291),
/// so anything after the AFI/SAFI is an invalid length (RFC 7313 §5).
fn decode_route_refresh(buf: &[u8]) -> Result<RouteRefresh, DecodeError> {
    if buf.len() != 23 {
        return Err(DecodeError::RouteRefresh {
            offset: 16,
            subcode: crate::error::notif::RR_INVALID_MESSAGE_LENGTH,
        });
    }
    Ok(RouteRefresh {
        afi_safi: AfiSafi::new(u16::from_be_bytes([buf[19], buf[20]]), buf[22]),
        subtype: buf[21],
    })
}

/// Append the wire form of `msg`. A message that does not fit the session's
/// maximum size is not written (logged as an error): use [`try_encode`] to
/// see that, and [`pack_reach`] / [`pack_unreach`] to build UPDATEs that fit.
pub fn encode<N: Nlri>(msg: &Message<N>, opts: &CodecOptions, buf: &mut BytesMut) {
    if let Err(e) = try_encode(msg, opts, buf) {
        tracing::error!(error = %e, msg_type = msg.type_code(), "BGP message not sent");
    }
}

/// Append the wire form of `msg`, or fail without writing anything if it
/// would exceed the session's maximum message size.
pub fn try_encode<N: Nlri>(
    msg: &Message<N>,
    opts: &CodecOptions,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    let start = buf.len();
    buf.put_slice(&MARKER);
    buf.put_u16(0); // length, patched below
    buf.put_u8(msg.type_code());
    match msg {
        Message::Open(o) => open::encode_open(o, buf),
        Message::Update(u) => update::encode_update(u, opts, buf),
        Message::Notification(n) => {
            buf.put_u8(n.code);
            buf.put_u8(n.subcode);
            buf.put_slice(&n.data);
        }
        Message::Keepalive => {}
        Message::RouteRefresh(r) => {
            buf.put_u16(r.afi_safi.afi.0);
            buf.put_u8(r.subtype);
            buf.put_u8(r.afi_safi.safi.0);
        }
    }
    let len = buf.len() - start;
    if len > opts.max_message_len() {
        buf.truncate(start);
        return Err(EncodeError::TooLong {
            len,
            max: opts.max_message_len(),
        });
    }
    buf[start + 16..start + 18].copy_from_slice(&(len as u16).to_be_bytes());
    Ok(())
}

/// Wire length of `msg` on a session with `opts` (header included).
pub fn encoded_len<N: Nlri>(msg: &Message<N>, opts: &CodecOptions) -> usize {
    let mut buf = BytesMut::new();
    let permissive = CodecOptions {
        extended_message: true,
        ..*opts
    };
    match try_encode(msg, &permissive, &mut buf) {
        Ok(()) => buf.len(),
        Err(EncodeError::TooLong { len, .. }) => len,
    }
}

#[cfg(test)]
mod tests;
