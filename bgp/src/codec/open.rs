//! OPEN (RFC 4271 §4.2) with capabilities (RFC 5492) and extended optional
//! parameters length (RFC 9072).

use bytes::{BufMut, Bytes, BytesMut};
use std::net::Ipv4Addr;

use super::read::{offset, take, u16_, u32_, u8_, PResult};
use crate::error::notif::{
    BAD_BGP_ID, BAD_PEER_AS, OPEN_UNSPECIFIC, UNACCEPTABLE_HOLD_TIME, UNSUPPORTED_VERSION,
};
use crate::error::DecodeError;
use crate::message::{Capability, GracefulRestartCap, Open};
use crate::types::{AfiSafi, Asn};

/// Optional parameter type Capabilities (RFC 5492 §4).
const PARAM_CAPABILITIES: u8 = 2;
/// RFC 9072 §2: a non-extended parameter type of 255 marks the extended form.
const PARAM_EXTENDED_LENGTH: u8 = 255;

pub(crate) mod cap_code {
    pub const MULTIPROTOCOL: u8 = 1;
    pub const ROUTE_REFRESH: u8 = 2;
    pub const EXTENDED_MESSAGE: u8 = 6;
    pub const GRACEFUL_RESTART: u8 = 64;
    pub const FOUR_OCTET_AS: u8 = 65;
}

fn open_err(offset: usize, subcode: u8, data: Vec<u8>) -> DecodeError {
    DecodeError::Open {
        offset,
        subcode,
        data,
    }
}

fn malformed(offset: usize) -> DecodeError {
    open_err(offset, OPEN_UNSPECIFIC, Vec::new())
}

/// `msg` is the whole message; its length was checked (>= 29).
pub(crate) fn decode_open(msg: &[u8]) -> Result<Open, DecodeError> {
    let fixed = |i| -> PResult<'_, (u8, u16, u16, u32, u8)> {
        let (i, version) = u8_(i)?;
        let (i, my_as) = u16_(i)?;
        let (i, hold_time) = u16_(i)?;
        let (i, bgp_id) = u32_(i)?;
        let (i, opt_len) = u8_(i)?;
        Ok((i, (version, my_as, hold_time, bgp_id, opt_len)))
    };
    let (rest, (version, my_as, hold_time, bgp_id, opt_len)) =
        fixed(&msg[19..]).map_err(|_| malformed(19))?;
    // §6.2: the data of Unsupported Version Number is the largest version we
    // support, as two octets.
    if version != 4 {
        return Err(open_err(
            19,
            UNSUPPORTED_VERSION,
            4u16.to_be_bytes().to_vec(),
        ));
    }
    // RFC 7607 §2: AS 0 is a Bad Peer AS (also in the 4-octet AS
    // capability, checked below).
    if my_as == 0 {
        return Err(open_err(20, BAD_PEER_AS, Vec::new()));
    }
    if hold_time == 1 || hold_time == 2 {
        return Err(open_err(22, UNACCEPTABLE_HOLD_TIME, Vec::new()));
    }
    let bgp_id = Ipv4Addr::from(bgp_id);
    if bgp_id.is_unspecified() {
        return Err(open_err(24, BAD_BGP_ID, Vec::new()));
    }

    // RFC 9072 §2: length 255 followed by parameter type 255 means a 2-byte
    // length follows and every parameter has a 2-byte length.
    let extended = opt_len == 255 && rest.first() == Some(&PARAM_EXTENDED_LENGTH);
    let (params, ext) = if extended {
        let (r, _) = u8_(rest).map_err(|_| malformed(29))?;
        let (r, len) = u16_(r).map_err(|_| malformed(30))?;
        if r.len() != len as usize {
            return Err(malformed(30));
        }
        (r, true)
    } else {
        if rest.len() != opt_len as usize {
            return Err(malformed(28));
        }
        (rest, false)
    };

    let mut open = Open {
        version,
        my_as,
        hold_time,
        bgp_id,
        capabilities: Vec::new(),
        other_params: Vec::new(),
    };
    let mut i = params;
    while !i.is_empty() {
        let at = offset(msg, i);
        let param = |i| -> PResult<'_, (u8, &[u8])> {
            let (i, ptype) = u8_(i)?;
            let (i, plen) = if ext {
                u16_(i)?
            } else {
                let (i, l) = u8_(i)?;
                (i, l as u16)
            };
            let (i, value) = take(i, plen as usize)?;
            Ok((i, (ptype, value)))
        };
        let (r, (ptype, value)) = param(i).map_err(|_| malformed(at))?;
        if ptype == PARAM_CAPABILITIES {
            decode_capabilities(msg, value, &mut open.capabilities)?;
        } else {
            // Kept: the session decides whether it is unsupported (§6.2
            // subcode 4).
            open.other_params
                .push((ptype, Bytes::copy_from_slice(value)));
        }
        i = r;
    }
    if open.asn() == Asn(0) {
        return Err(open_err(20, BAD_PEER_AS, Vec::new()));
    }
    Ok(open)
}

/// Every capability in one Capabilities parameter (RFC 5492 §4: a parameter
/// may carry one or several).
fn decode_capabilities(
    msg: &[u8],
    mut i: &[u8],
    out: &mut Vec<Capability>,
) -> Result<(), DecodeError> {
    while !i.is_empty() {
        let at = offset(msg, i);
        let tlv = |i| -> PResult<'_, (u8, &[u8])> {
            let (i, code) = u8_(i)?;
            let (i, len) = u8_(i)?;
            let (i, value) = take(i, len as usize)?;
            Ok((i, (code, value)))
        };
        let (r, (code, value)) = tlv(i).map_err(|_| malformed(at))?;
        out.push(decode_capability(code, value).ok_or_else(|| malformed(at))?);
        i = r;
    }
    Ok(())
}

/// One capability value; `None` if a known capability has a malformed value.
fn decode_capability(code: u8, v: &[u8]) -> Option<Capability> {
    use cap_code::*;
    Some(match code {
        // RFC 4760 §8: AFI(2) reserved(1) SAFI(1); the reserved octet is
        // ignored on receipt.
        MULTIPROTOCOL => match v {
            [a0, a1, _res, safi] => {
                Capability::Multiprotocol(AfiSafi::new(u16::from_be_bytes([*a0, *a1]), *safi))
            }
            _ => return None,
        },
        ROUTE_REFRESH if v.is_empty() => Capability::RouteRefresh,
        EXTENDED_MESSAGE if v.is_empty() => Capability::ExtendedMessage,
        ROUTE_REFRESH | EXTENDED_MESSAGE => return None,
        FOUR_OCTET_AS => match v {
            [a, b, c, d] => Capability::FourOctetAs(Asn(u32::from_be_bytes([*a, *b, *c, *d]))),
            _ => return None,
        },
        GRACEFUL_RESTART => {
            // RFC 4724 §3: flags(4 bits) restart time(12 bits), then
            // AFI(2) SAFI(1) flags(1) per AFI/SAFI.
            if v.len() < 2 || !v[2..].chunks_exact(4).remainder().is_empty() {
                return None;
            }
            let word = u16::from_be_bytes([v[0], v[1]]);
            let afi_safis = v[2..]
                .chunks_exact(4)
                .map(|c| {
                    (
                        AfiSafi::new(u16::from_be_bytes([c[0], c[1]]), c[2]),
                        c[3] & 0x80 != 0,
                    )
                })
                .collect();
            Capability::GracefulRestart(GracefulRestartCap {
                restarting: word & 0x8000 != 0,
                notification: word & 0x4000 != 0,
                restart_time: word & 0x0fff,
                afi_safis,
            })
        }
        _ => Capability::Unknown {
            code,
            data: Bytes::copy_from_slice(v),
        },
    })
}

/// Value bytes of one capability (without code and length).
fn capability_value(c: &Capability, out: &mut Vec<u8>) -> u8 {
    use cap_code::*;
    match c {
        Capability::Multiprotocol(a) => {
            out.extend_from_slice(&a.afi.0.to_be_bytes());
            out.push(0);
            out.push(a.safi.0);
            MULTIPROTOCOL
        }
        Capability::RouteRefresh => ROUTE_REFRESH,
        Capability::ExtendedMessage => EXTENDED_MESSAGE,
        Capability::FourOctetAs(a) => {
            out.extend_from_slice(&a.0.to_be_bytes());
            FOUR_OCTET_AS
        }
        Capability::GracefulRestart(g) => {
            let mut word = g.restart_time & 0x0fff;
            if g.restarting {
                word |= 0x8000;
            }
            if g.notification {
                word |= 0x4000;
            }
            out.extend_from_slice(&word.to_be_bytes());
            for (a, fwd) in &g.afi_safis {
                out.extend_from_slice(&a.afi.0.to_be_bytes());
                out.push(a.safi.0);
                out.push(if *fwd { 0x80 } else { 0 });
            }
            GRACEFUL_RESTART
        }
        Capability::Unknown { code, data } => {
            out.extend_from_slice(data);
            *code
        }
    }
}

/// Body of an OPEN after the header. Like FRR, every capability goes in its
/// own Capabilities parameter. A capability value longer than 255 bytes
/// cannot be written (its length field is one octet) and is left out.
pub(crate) fn encode_open(o: &Open, buf: &mut BytesMut) {
    buf.put_u8(o.version);
    buf.put_u16(o.my_as);
    buf.put_u16(o.hold_time);
    buf.put_u32(u32::from(o.bgp_id));

    // (type, value) of every parameter, in order.
    let mut params: Vec<(u8, Vec<u8>)> = Vec::with_capacity(o.capabilities.len());
    for c in &o.capabilities {
        let mut value = Vec::new();
        let code = capability_value(c, &mut value);
        let Ok(len) = u8::try_from(value.len()) else {
            tracing::warn!(
                code,
                len = value.len(),
                "capability too long to send, left out"
            );
            continue;
        };
        let mut p = Vec::with_capacity(2 + value.len());
        p.push(code);
        p.push(len);
        p.extend_from_slice(&value);
        params.push((PARAM_CAPABILITIES, p));
    }
    for (t, v) in &o.other_params {
        params.push((*t, v.to_vec()));
    }

    let short_len: usize = params.iter().map(|(_, v)| 2 + v.len()).sum();
    // The extended form is needed for long parameters, and when the short
    // form would read as the extended one (length 255, first type 255).
    let need_ext = short_len > 255
        || params.iter().any(|(_, v)| v.len() > 255)
        || (short_len == 255 && params.first().map(|p| p.0) == Some(PARAM_EXTENDED_LENGTH));
    if need_ext {
        // RFC 9072 §2.
        let long_len: usize = params.iter().map(|(_, v)| 3 + v.len()).sum();
        buf.put_u8(255);
        buf.put_u8(PARAM_EXTENDED_LENGTH);
        buf.put_u16(long_len.min(u16::MAX as usize) as u16);
        for (t, v) in &params {
            buf.put_u8(*t);
            buf.put_u16(v.len().min(u16::MAX as usize) as u16);
            buf.put_slice(v);
        }
    } else {
        buf.put_u8(short_len as u8);
        for (t, v) in &params {
            buf.put_u8(*t);
            buf.put_u8(v.len() as u8);
            buf.put_slice(v);
        }
    }
}
