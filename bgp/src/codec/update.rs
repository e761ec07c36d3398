//! UPDATE (RFC 4271 §4.3) framing: withdrawn routes, attributes, NLRI.

use bytes::{BufMut, BytesMut};
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

use super::attr::{decode_attributes, encode_attributes};
use super::read::{offset, take, u16_, PResult};
use super::CodecOptions;
use crate::attr::code;
use crate::error::notif::{INVALID_NETWORK_FIELD, MALFORMED_ATTRIBUTE_LIST};
use crate::error::{AttrErrorKind, AttrErrorReport, DecodeError, ErrorAction};
use crate::message::{Nlri, Update};

/// IPv4 prefixes as in the Withdrawn Routes and NLRI fields (RFC 4271
/// §4.3): length in bits, then just enough octets. On error, the offset of
/// the bad prefix. Bits beyond the length inside the last octet are kept.
pub(crate) fn decode_prefixes(msg: &[u8], mut v: &[u8]) -> Result<Vec<Ipv4Net>, usize> {
    let mut out = Vec::new();
    while let Some((&bits, rest)) = v.split_first() {
        let at = offset(msg, v);
        if bits > 32 {
            return Err(at);
        }
        let n = (bits as usize).div_ceil(8);
        let Some(octets) = rest.get(..n) else {
            return Err(at);
        };
        let mut a = [0u8; 4];
        a[..n].copy_from_slice(octets);
        let net = Ipv4Net::new(Ipv4Addr::from(a), bits).map_err(|_| at)?;
        out.push(net);
        v = &rest[n..];
    }
    Ok(out)
}

pub(crate) fn encode_prefix(p: &Ipv4Net, buf: &mut BytesMut) {
    let n = (p.prefix_len() as usize).div_ceil(8);
    buf.put_u8(p.prefix_len());
    buf.put_slice(&p.addr().octets()[..n]);
}

pub(crate) fn decode_update<N: Nlri>(
    msg: &[u8],
    opts: &CodecOptions,
) -> Result<Update<N>, DecodeError> {
    let body = &msg[19..];
    let malformed_list = |offset| DecodeError::Update {
        offset,
        subcode: MALFORMED_ATTRIBUTE_LIST,
        data: Vec::new(),
    };
    // §6.3: withdrawn or attribute lengths that overrun the message are a
    // Malformed Attribute List.
    let fields = |i| -> PResult<'_, (&[u8], &[u8])> {
        let (i, wlen) = u16_(i)?;
        let (i, withdrawn) = take(i, wlen as usize)?;
        let (i, alen) = u16_(i)?;
        let (i, attrs) = take(i, alen as usize)?;
        Ok((i, (withdrawn, attrs)))
    };
    let (nlri_field, (withdrawn_field, attr_field)) =
        fields(body).map_err(|_| malformed_list(19))?;

    // Both prefix fields must parse, or nothing can be withdrawn: session
    // reset (RFC 7606 §5.3).
    let invalid_network = |offset| DecodeError::Update {
        offset,
        subcode: INVALID_NETWORK_FIELD,
        data: Vec::new(),
    };
    let withdrawn = decode_prefixes(msg, withdrawn_field).map_err(invalid_network)?;
    let nlri = decode_prefixes(msg, nlri_field).map_err(invalid_network)?;

    let located = !withdrawn.is_empty() || !nlri.is_empty();
    let d = decode_attributes::<N>(msg, attr_field, opts, located)?;
    let mut update = Update {
        withdrawn,
        attributes: d.attrs,
        mp_reach: d.mp_reach,
        mp_unreach: d.mp_unreach,
        nlri,
        errors: d.errors,
    };

    // RFC 7606 §3d: missing well-known mandatory attributes when there are
    // routes to install -> treat-as-withdraw. NEXT_HOP only matters for the
    // IPv4 NLRI field (RFC 4760 §3). LOCAL_PREF depends on the session
    // (iBGP) and is checked by the caller.
    let has_reach =
        !update.nlri.is_empty() || update.mp_reach.as_ref().is_some_and(|r| !r.nlri.is_empty());
    if has_reach {
        let mut mandatory = vec![code::ORIGIN, code::AS_PATH];
        if !update.nlri.is_empty() {
            mandatory.push(code::NEXT_HOP);
        }
        let attrs_end = offset(msg, nlri_field);
        for tc in mandatory {
            if !d.present[tc as usize] {
                tracing::debug!(
                    attr_type = tc,
                    "missing well-known attribute (RFC 7606 §3d)"
                );
                update.errors.push(AttrErrorReport {
                    attr_type: tc,
                    offset: attrs_end,
                    action: ErrorAction::TreatAsWithdraw,
                    reason: AttrErrorKind::MissingWellKnown(tc),
                });
            }
        }
    }
    Ok(update)
}

pub(crate) fn encode_update<N: Nlri>(u: &Update<N>, opts: &CodecOptions, buf: &mut BytesMut) {
    let wlen_at = buf.len();
    buf.put_u16(0);
    for p in &u.withdrawn {
        encode_prefix(p, buf);
    }
    let wlen = buf.len() - wlen_at - 2;
    buf[wlen_at..wlen_at + 2].copy_from_slice(&(wlen.min(u16::MAX as usize) as u16).to_be_bytes());

    let alen_at = buf.len();
    buf.put_u16(0);
    encode_attributes(
        &u.attributes,
        u.mp_reach.as_ref(),
        u.mp_unreach.as_ref(),
        opts,
        buf,
    );
    let alen = buf.len() - alen_at - 2;
    buf[alen_at..alen_at + 2].copy_from_slice(&(alen.min(u16::MAX as usize) as u16).to_be_bytes());

    for p in &u.nlri {
        encode_prefix(p, buf);
    }
}
