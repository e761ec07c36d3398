//! Wire codec: decode with nom, encode with bytes. (To be implemented.)

use bytes::BytesMut;

use crate::error::DecodeError;
use crate::message::{Message, Nlri};

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

/// If `buf` starts with a complete message, its total length. Checks the
/// marker and length bounds so a framed reader can reject early.
pub fn frame_len(buf: &[u8], opts: &CodecOptions) -> Result<Option<usize>, DecodeError> {
    let _ = (buf, opts);
    todo!()
}

/// Decode one whole message (header included).
pub fn decode<N: Nlri>(buf: &[u8], opts: &CodecOptions) -> Result<Message<N>, DecodeError> {
    let _ = (buf, opts);
    todo!()
}

/// Append the wire form of `msg`.
pub fn encode<N: Nlri>(msg: &Message<N>, opts: &CodecOptions, buf: &mut BytesMut) {
    let _ = (msg, opts, buf);
    todo!()
}
