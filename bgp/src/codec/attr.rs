//! Path attributes (RFC 4271 §4.3, §5) with RFC 7606 error handling and the
//! RFC 6793 2-octet/4-octet AS conversions.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::{BufMut, Bytes, BytesMut};

use super::read::{offset, take, u16_, u8_, PResult};
use super::CodecOptions;
use crate::attr::{
    code, flags, Aggregator, AsPath, AsSegment, ExtCommunity, Origin, PathAttributes, PmsiTunnel,
    RawAttribute,
};
use crate::error::notif::{MALFORMED_ATTRIBUTE_LIST, OPTIONAL_ATTRIBUTE_ERROR};
use crate::error::{AttrErrorKind, AttrErrorReport, DecodeError, ErrorAction};
use crate::message::{MpReach, MpUnreach, NextHop, Nlri};
use crate::types::{AfiSafi, Asn};

const SEG_SET: u8 = 1;
const SEG_SEQUENCE: u8 = 2;
const SEG_CONFED_SEQUENCE: u8 = 3;
const SEG_CONFED_SET: u8 = 4;

/// What the attributes field decoded to.
pub(crate) struct DecodedAttrs<N: Nlri> {
    pub attrs: PathAttributes,
    pub mp_reach: Option<MpReach<N>>,
    pub mp_unreach: Option<MpUnreach<N>>,
    pub errors: Vec<AttrErrorReport>,
    /// Type codes present (even if malformed), for the §3d mandatory check.
    pub present: [bool; 256],
}

/// Attributes this module turns into typed values (everything else is kept
/// as [`RawAttribute`]).
pub(crate) fn is_known(type_code: u8) -> bool {
    matches!(
        type_code,
        code::ORIGIN
            | code::AS_PATH
            | code::NEXT_HOP
            | code::MED
            | code::LOCAL_PREF
            | code::ATOMIC_AGGREGATE
            | code::AGGREGATOR
            | code::COMMUNITIES
            | code::ORIGINATOR_ID
            | code::CLUSTER_LIST
            | code::MP_REACH_NLRI
            | code::MP_UNREACH_NLRI
            | code::EXTENDED_COMMUNITIES
            | code::AS4_PATH
            | code::AS4_AGGREGATOR
            | code::PMSI_TUNNEL
    )
}

/// The Optional and Transitive bits each known attribute must have.
fn expected_flags(type_code: u8) -> Option<u8> {
    const WELL_KNOWN: u8 = flags::TRANSITIVE;
    const OPT_NON_TRANS: u8 = flags::OPTIONAL;
    const OPT_TRANS: u8 = flags::OPTIONAL | flags::TRANSITIVE;
    Some(match type_code {
        code::ORIGIN
        | code::AS_PATH
        | code::NEXT_HOP
        | code::LOCAL_PREF
        | code::ATOMIC_AGGREGATE => WELL_KNOWN,
        code::MED
        | code::ORIGINATOR_ID
        | code::CLUSTER_LIST
        | code::MP_REACH_NLRI
        | code::MP_UNREACH_NLRI => OPT_NON_TRANS,
        code::AGGREGATOR
        | code::COMMUNITIES
        | code::EXTENDED_COMMUNITIES
        | code::AS4_PATH
        | code::AS4_AGGREGATOR
        | code::PMSI_TUNNEL => OPT_TRANS,
        _ => return None,
    })
}

/// One attribute as it sits in the message.
struct Tlv<'a> {
    type_code: u8,
    value: &'a [u8],
    /// Offset of the attribute's flags octet from the start of the message.
    offset: usize,
    /// The whole attribute (header and value), for NOTIFICATION data.
    raw: &'a [u8],
}

fn tlv(i: &[u8]) -> PResult<'_, (u8, u8, &[u8])> {
    let (i, fl) = u8_(i)?;
    let (i, tc) = u8_(i)?;
    let (i, len) = if fl & flags::EXTENDED_LENGTH != 0 {
        u16_(i)?
    } else {
        let (i, l) = u8_(i)?;
        (i, l as u16)
    };
    let (i, value) = take(i, len as usize)?;
    Ok((i, (fl, tc, value)))
}

type Fail = (ErrorAction, AttrErrorKind);

fn taw(kind: AttrErrorKind) -> Fail {
    (ErrorAction::TreatAsWithdraw, kind)
}

fn discard(kind: AttrErrorKind) -> Fail {
    (ErrorAction::AttributeDiscard, kind)
}

fn u32_exact(v: &[u8]) -> Result<u32, Fail> {
    <[u8; 4]>::try_from(v)
        .map(u32::from_be_bytes)
        .map_err(|_| taw(AttrErrorKind::BadLength(v.len())))
}

/// Decode the Path Attributes field. `msg` is the whole message, `field` the
/// attributes slice of it. `nlri_located` says whether the UPDATE carries
/// IPv4 NLRI or withdrawn routes, so a broken attribute list can still be
/// handled as treat-as-withdraw (RFC 7606 §4).
pub(crate) fn decode_attributes<N: Nlri>(
    msg: &[u8],
    field: &[u8],
    opts: &CodecOptions,
    nlri_located: bool,
) -> Result<DecodedAttrs<N>, DecodeError> {
    let mut out = DecodedAttrs {
        attrs: PathAttributes::default(),
        mp_reach: None,
        mp_unreach: None,
        errors: Vec::new(),
        present: [false; 256],
    };
    let mut as_path: Option<Tlv> = None;
    let mut as4_path: Option<Tlv> = None;
    let mut aggregator: Option<Tlv> = None;
    let mut as4_aggregator: Option<Tlv> = None;

    let mut i = field;
    while !i.is_empty() {
        let at = offset(msg, i);
        let (rest, (fl, tc, value)) = match tlv(i) {
            Ok(v) => v,
            Err(_) => {
                // RFC 7606 §4: fewer octets left than the attribute header
                // or its length says. The Total Path Attribute Length still
                // locates the NLRI, so treat-as-withdraw, unless nothing
                // locates the routes at all.
                let type_code = i.get(1).copied().unwrap_or(0);
                if !nlri_located && out.mp_reach.is_none() && out.mp_unreach.is_none() {
                    return Err(DecodeError::Update {
                        offset: at,
                        subcode: MALFORMED_ATTRIBUTE_LIST,
                        data: Vec::new(),
                    });
                }
                out.errors.push(AttrErrorReport {
                    attr_type: type_code,
                    offset: at,
                    action: ErrorAction::TreatAsWithdraw,
                    reason: AttrErrorKind::BadLength(i.len()),
                });
                break;
            }
        };
        let t = Tlv {
            type_code: tc,
            value,
            offset: at,
            raw: &i[..i.len() - rest.len()],
        };
        i = rest;

        // RFC 7606 §3g: MP_REACH/MP_UNREACH twice is a session reset; any
        // other repeat is dropped.
        if out.present[tc as usize] {
            if tc == code::MP_REACH_NLRI || tc == code::MP_UNREACH_NLRI {
                return Err(DecodeError::Update {
                    offset: at,
                    subcode: MALFORMED_ATTRIBUTE_LIST,
                    data: Vec::new(),
                });
            }
            report(&mut out.errors, &t, discard(AttrErrorKind::Duplicate));
            continue;
        }
        out.present[tc as usize] = true;

        // RFC 6793 §4.2.2: AS4_PATH / AS4_AGGREGATOR between NEW speakers
        // are discarded.
        if opts.four_octet_as && (tc == code::AS4_PATH || tc == code::AS4_AGGREGATOR) {
            tracing::debug!(type_code = tc, "AS4 attribute on a 4-octet session ignored");
            continue;
        }

        // RFC 7606 §3c: wrong Optional/Transitive bits -> treat-as-withdraw.
        let flags_ok = match expected_flags(tc) {
            Some(want) => fl & (flags::OPTIONAL | flags::TRANSITIVE) == want,
            None => true,
        };
        if !flags_ok {
            report(&mut out.errors, &t, taw(AttrErrorKind::BadFlags(fl)));
            // The MP attributes are still parsed: the NLRI they carry must
            // be located to be treated as withdrawn.
            if tc != code::MP_REACH_NLRI && tc != code::MP_UNREACH_NLRI {
                continue;
            }
        }

        let result = match tc {
            code::ORIGIN => decode_origin(t.value).map(|o| out.attrs.origin = Some(o)),
            code::AS_PATH => {
                as_path = Some(t);
                continue;
            }
            code::AS4_PATH => {
                as4_path = Some(t);
                continue;
            }
            code::AGGREGATOR => {
                aggregator = Some(t);
                continue;
            }
            code::AS4_AGGREGATOR => {
                as4_aggregator = Some(t);
                continue;
            }
            // RFC 7606 §7.3, §7.4, §7.5, §7.9.
            code::NEXT_HOP => {
                u32_exact(t.value).map(|v| out.attrs.next_hop = Some(Ipv4Addr::from(v)))
            }
            code::MED => u32_exact(t.value).map(|v| out.attrs.med = Some(v)),
            code::LOCAL_PREF => u32_exact(t.value).map(|v| out.attrs.local_pref = Some(v)),
            code::ORIGINATOR_ID => {
                u32_exact(t.value).map(|v| out.attrs.originator_id = Some(Ipv4Addr::from(v)))
            }
            // RFC 7606 §7.6: a non-zero length is attribute discard.
            code::ATOMIC_AGGREGATE => {
                if t.value.is_empty() {
                    out.attrs.atomic_aggregate = true;
                    Ok(())
                } else {
                    Err(discard(AttrErrorKind::BadLength(t.value.len())))
                }
            }
            // RFC 7606 §7.8.
            code::COMMUNITIES => words(t.value, 4).map(|w| {
                out.attrs.communities = w
                    .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                    .collect()
            }),
            // RFC 7606 §7.10.
            code::CLUSTER_LIST => words(t.value, 4).map(|w| {
                out.attrs.cluster_list = w.map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3])).collect()
            }),
            // RFC 7606 §7.14.
            code::EXTENDED_COMMUNITIES => words(t.value, 8).map(|w| {
                out.attrs.ext_communities = w
                    .map(|c| {
                        let mut e = [0u8; 8];
                        e.copy_from_slice(c);
                        ExtCommunity(e)
                    })
                    .collect()
            }),
            code::PMSI_TUNNEL => decode_pmsi(t.value).map(|p| out.attrs.pmsi_tunnel = Some(p)),
            code::MP_REACH_NLRI => {
                out.mp_reach = Some(decode_mp_reach::<N>(msg, &t)?);
                Ok(())
            }
            code::MP_UNREACH_NLRI => {
                out.mp_unreach = Some(decode_mp_unreach::<N>(msg, &t)?);
                Ok(())
            }
            _ => {
                if fl & flags::OPTIONAL == 0 {
                    // An unrecognised well-known attribute (RFC 4271 §6.3).
                    // RFC 7606 prefers treat-as-withdraw over a reset.
                    Err(taw(AttrErrorKind::UnrecognizedWellKnown))
                } else {
                    out.attrs.unknown.push(RawAttribute {
                        flags: fl,
                        type_code: tc,
                        value: Bytes::copy_from_slice(t.value),
                    });
                    Ok(())
                }
            }
        };
        if let Err(fail) = result {
            report(&mut out.errors, &t, fail);
        }
    }

    finish_as_attrs(
        &mut out,
        opts,
        as_path,
        as4_path,
        aggregator,
        as4_aggregator,
    );
    Ok(out)
}

fn report(errors: &mut Vec<AttrErrorReport>, t: &Tlv, (action, reason): Fail) {
    tracing::debug!(
        attr_type = t.type_code,
        offset = t.offset,
        ?action,
        %reason,
        "malformed path attribute (RFC 7606)"
    );
    errors.push(AttrErrorReport {
        attr_type: t.type_code,
        offset: t.offset,
        action,
        reason,
    });
}

/// Split into `n`-byte words; an empty value or a remainder is
/// treat-as-withdraw (RFC 7606 §7.8, §7.10, §7.14).
fn words(v: &[u8], n: usize) -> Result<std::slice::ChunksExact<'_, u8>, Fail> {
    if v.is_empty() || !v.chunks_exact(n).remainder().is_empty() {
        return Err(taw(AttrErrorKind::BadLength(v.len())));
    }
    Ok(v.chunks_exact(n))
}

/// RFC 7606 §7.1: bad length or value is treat-as-withdraw.
fn decode_origin(v: &[u8]) -> Result<Origin, Fail> {
    match v {
        [0] => Ok(Origin::Igp),
        [1] => Ok(Origin::Egp),
        [2] => Ok(Origin::Incomplete),
        [x] => Err(taw(AttrErrorKind::BadOrigin(*x))),
        _ => Err(taw(AttrErrorKind::BadLength(v.len()))),
    }
}

/// PMSI Tunnel (RFC 6514 §5): flags(1) type(1) label(3) tunnel id. RFC 7606
/// does not cover it; a type-3 route without a usable one is useless, so
/// treat-as-withdraw.
fn decode_pmsi(v: &[u8]) -> Result<PmsiTunnel, Fail> {
    if v.len() < 5 {
        return Err(taw(AttrErrorKind::BadLength(v.len())));
    }
    Ok(PmsiTunnel {
        flags: v[0],
        tunnel_type: v[1],
        label: u32::from_be_bytes([0, v[2], v[3], v[4]]),
        tunnel_id: Bytes::copy_from_slice(&v[5..]),
    })
}

/// AS_PATH / AS4_PATH segments with `width`-octet ASNs (RFC 4271 §4.3,
/// RFC 6793). Malformed per RFC 7606 §7.2 (unknown segment type,
/// zero-length segment, overrun or underrun) or holding AS 0 (RFC 7607).
fn decode_as_path(mut v: &[u8], width: usize) -> Result<AsPath, AttrErrorKind> {
    use AttrErrorKind::MalformedAsPath as Bad;
    let mut segments = Vec::new();
    while !v.is_empty() {
        let (&seg_type, rest) = v.split_first().ok_or(Bad)?;
        let (&count, rest) = rest.split_first().ok_or(Bad)?;
        if count == 0 {
            return Err(Bad);
        }
        let bytes = rest.get(..count as usize * width).ok_or(Bad)?;
        let asns: Vec<Asn> = bytes
            .chunks_exact(width)
            .map(|c| {
                Asn(if width == 4 {
                    u32::from_be_bytes([c[0], c[1], c[2], c[3]])
                } else {
                    u16::from_be_bytes([c[0], c[1]]) as u32
                })
            })
            .collect();
        if asns.contains(&Asn(0)) {
            return Err(AttrErrorKind::ZeroAsn);
        }
        segments.push(match seg_type {
            SEG_SET => AsSegment::Set(asns),
            SEG_SEQUENCE => AsSegment::Sequence(asns),
            SEG_CONFED_SEQUENCE => AsSegment::ConfedSequence(asns),
            SEG_CONFED_SET => AsSegment::ConfedSet(asns),
            _ => return Err(Bad),
        });
        v = &rest[count as usize * width..];
    }
    Ok(AsPath { segments })
}

/// AGGREGATOR / AS4_AGGREGATOR: exact length (RFC 7606 §7.7), not AS 0
/// (RFC 7607).
fn decode_aggregator(v: &[u8], width: usize) -> Result<Aggregator, AttrErrorKind> {
    if v.len() != width + 4 {
        return Err(AttrErrorKind::BadLength(v.len()));
    }
    let asn = if width == 4 {
        u32::from_be_bytes([v[0], v[1], v[2], v[3]])
    } else {
        u16::from_be_bytes([v[0], v[1]]) as u32
    };
    if asn == 0 {
        return Err(AttrErrorKind::ZeroAsn);
    }
    let a = &v[width..];
    Ok(Aggregator {
        asn: Asn(asn),
        address: Ipv4Addr::new(a[0], a[1], a[2], a[3]),
    })
}

/// Number of ASNs for the RFC 6793 §4.2.3 comparison: a SET counts 1,
/// confederation segments count 0.
fn as_count(p: &AsPath) -> usize {
    p.path_len()
}

/// AS_PATH / AGGREGATOR, merged with AS4_PATH / AS4_AGGREGATOR on a 2-octet
/// session (RFC 6793 §4.2.3).
fn finish_as_attrs<N: Nlri>(
    out: &mut DecodedAttrs<N>,
    opts: &CodecOptions,
    as_path: Option<Tlv>,
    as4_path: Option<Tlv>,
    aggregator: Option<Tlv>,
    as4_aggregator: Option<Tlv>,
) {
    let width = if opts.four_octet_as { 4 } else { 2 };
    let mut path = None;
    if let Some(t) = &as_path {
        match decode_as_path(t.value, width) {
            Ok(p) => path = Some(p),
            Err(kind) => report(&mut out.errors, t, taw(kind)),
        }
    }
    // RFC 7606 §7.7: a bad AGGREGATOR length is attribute discard.
    let mut aggr = None;
    if let Some(t) = &aggregator {
        match decode_aggregator(t.value, width) {
            Ok(a) => aggr = Some(a),
            Err(kind) => report(&mut out.errors, t, discard(kind)),
        }
    }
    // RFC 6793 §6: malformed AS4_PATH / AS4_AGGREGATOR are discarded.
    let mut path4 = None;
    if let Some(t) = &as4_path {
        match decode_as_path(t.value, 4) {
            Ok(mut p) => {
                // §6: confederation segments have no place in AS4_PATH.
                p.segments.retain(|s| {
                    !matches!(s, AsSegment::ConfedSequence(_) | AsSegment::ConfedSet(_))
                });
                path4 = Some(p)
            }
            Err(kind) => report(&mut out.errors, t, discard(kind)),
        }
    }
    let mut aggr4 = None;
    if let Some(t) = &as4_aggregator {
        match decode_aggregator(t.value, 4) {
            Ok(a) => aggr4 = Some(a),
            Err(kind) => report(&mut out.errors, t, discard(kind)),
        }
    }

    // §4.2.3: an AGGREGATOR that is not AS_TRANS means an old speaker
    // aggregated: AS4_AGGREGATOR and AS4_PATH are stale and ignored.
    let mut use_as4_path = true;
    if let Some(a) = &aggr {
        if a.asn != Asn::TRANS {
            use_as4_path = false;
        } else if let Some(a4) = aggr4 {
            aggr = Some(a4);
        }
    }
    if use_as4_path {
        if let (Some(p), Some(p4)) = (&path, path4) {
            path = Some(merge_as4_path(p, p4));
        }
    }
    out.attrs.as_path = path;
    out.attrs.aggregator = aggr;
}

/// RFC 6793 §4.2.3: if AS4_PATH has more ASNs than AS_PATH it is ignored;
/// otherwise the leading ASNs of AS_PATH that AS4_PATH lacks (with any
/// confederation segments among them) are put in front of AS4_PATH.
fn merge_as4_path(path: &AsPath, path4: AsPath) -> AsPath {
    let n = as_count(path);
    let n4 = as_count(&path4);
    if n < n4 {
        return path.clone();
    }
    let mut need = n - n4;
    // A sequence was cut in the middle: its head continues in AS4_PATH.
    let mut need_glue = false;
    let mut merged: Vec<AsSegment> = Vec::new();
    for seg in &path.segments {
        match seg {
            AsSegment::ConfedSequence(_) | AsSegment::ConfedSet(_) => merged.push(seg.clone()),
            _ if need == 0 => break,
            AsSegment::Set(_) => {
                merged.push(seg.clone());
                need -= 1;
            }
            AsSegment::Sequence(v) => {
                let take = need.min(v.len());
                merged.push(AsSegment::Sequence(v[..take].to_vec()));
                need -= take;
                need_glue = take < v.len();
            }
        }
    }
    let mut rest = path4.segments.into_iter();
    if let Some(first) = rest.next() {
        // Glue the kept head of a sequence to the AS4_PATH sequence it
        // continues (only at the junction).
        match (merged.last_mut(), first) {
            (Some(AsSegment::Sequence(last)), AsSegment::Sequence(next)) if need_glue => {
                last.extend(next)
            }
            (_, first) => merged.push(first),
        }
    }
    merged.extend(rest);
    AsPath { segments: merged }
}

/// MP attribute that cannot be parsed: the NOTIFICATION data is the whole
/// attribute (RFC 4271 §6.3 Optional Attribute Error).
fn mp_err(t: &Tlv) -> DecodeError {
    DecodeError::Update {
        offset: t.offset,
        subcode: OPTIONAL_ATTRIBUTE_ERROR,
        data: t.raw.to_vec(),
    }
}

/// Next hop lengths RFC 4760 allows for the AFI/SAFIs we know; for others
/// any length is kept raw.
fn decode_next_hop(afi_safi: AfiSafi, nh: &[u8]) -> Option<NextHop> {
    let known = matches!(afi_safi.afi.0, 1 | 2 | 25);
    Some(match nh.len() {
        4 => {
            let mut a = [0u8; 4];
            a.copy_from_slice(nh);
            NextHop::Ip(IpAddr::V4(Ipv4Addr::from(a)))
        }
        16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(nh);
            NextHop::Ip(IpAddr::V6(Ipv6Addr::from(a)))
        }
        32 => {
            let mut g = [0u8; 16];
            let mut l = [0u8; 16];
            g.copy_from_slice(&nh[..16]);
            l.copy_from_slice(&nh[16..]);
            NextHop::Ipv6WithLinkLocal(Ipv6Addr::from(g), Ipv6Addr::from(l))
        }
        _ if known => return None,
        _ => NextHop::Raw(Bytes::copy_from_slice(nh)),
    })
}

/// MP_REACH_NLRI (RFC 4760 §3). Any error here is a session reset (or
/// AFI/SAFI disable, RFC 7606 §7.11): the NLRI cannot be located reliably.
fn decode_mp_reach<N: Nlri>(msg: &[u8], t: &Tlv) -> Result<MpReach<N>, DecodeError> {
    let head = |i| -> PResult<'_, (u16, u8, &[u8], u8)> {
        let (i, afi) = u16_(i)?;
        let (i, safi) = u8_(i)?;
        let (i, nh_len) = u8_(i)?;
        let (i, nh) = take(i, nh_len as usize)?;
        let (i, reserved) = u8_(i)?;
        Ok((i, (afi, safi, nh, reserved)))
    };
    let (nlri, (afi, safi, nh, _reserved)) = head(t.value).map_err(|_| mp_err(t))?;
    let afi_safi = AfiSafi::new(afi, safi);
    let next_hop = decode_next_hop(afi_safi, nh).ok_or_else(|| mp_err(t))?;
    let nlri_offset = offset(msg, nlri);
    let nlri = N::decode_all(afi_safi, nlri).map_err(|source| DecodeError::Nlri {
        offset: nlri_offset,
        source,
    })?;
    Ok(MpReach {
        afi_safi,
        next_hop,
        nlri,
    })
}

/// MP_UNREACH_NLRI (RFC 4760 §4).
fn decode_mp_unreach<N: Nlri>(msg: &[u8], t: &Tlv) -> Result<MpUnreach<N>, DecodeError> {
    let head = |i| -> PResult<'_, (u16, u8)> {
        let (i, afi) = u16_(i)?;
        let (i, safi) = u8_(i)?;
        Ok((i, (afi, safi)))
    };
    let (nlri, (afi, safi)) = head(t.value).map_err(|_| mp_err(t))?;
    let afi_safi = AfiSafi::new(afi, safi);
    let nlri_offset = offset(msg, nlri);
    let withdrawn = N::decode_all(afi_safi, nlri).map_err(|source| DecodeError::Nlri {
        offset: nlri_offset,
        source,
    })?;
    Ok(MpUnreach {
        afi_safi,
        withdrawn,
    })
}

// ---------------------------------------------------------------- encoding

/// Write one attribute. The extended-length flag is used when `ext` asks for
/// it (FRR's habit for AS_PATH and the MP attributes) or the value needs it.
fn put_attr(buf: &mut BytesMut, fl: u8, type_code: u8, value: &[u8], ext: bool) {
    if ext || value.len() > 255 || fl & flags::EXTENDED_LENGTH != 0 {
        buf.put_u8(fl | flags::EXTENDED_LENGTH);
        buf.put_u8(type_code);
        buf.put_u16(value.len().min(u16::MAX as usize) as u16);
    } else {
        buf.put_u8(fl);
        buf.put_u8(type_code);
        buf.put_u8(value.len() as u8);
    }
    buf.put_slice(value);
}

const WELL_KNOWN: u8 = flags::TRANSITIVE;
const OPT_NON_TRANS: u8 = flags::OPTIONAL;
const OPT_TRANS: u8 = flags::OPTIONAL | flags::TRANSITIVE;

pub(crate) fn put_next_hop(nh: &NextHop, buf: &mut BytesMut) {
    match nh {
        NextHop::Ip(IpAddr::V4(a)) => buf.put_slice(&a.octets()),
        NextHop::Ip(IpAddr::V6(a)) => buf.put_slice(&a.octets()),
        NextHop::Ipv6WithLinkLocal(g, l) => {
            buf.put_slice(&g.octets());
            buf.put_slice(&l.octets());
        }
        NextHop::Raw(b) => buf.put_slice(b),
    }
}

pub(crate) fn next_hop_len(nh: &NextHop) -> usize {
    match nh {
        NextHop::Ip(IpAddr::V4(_)) => 4,
        NextHop::Ip(IpAddr::V6(_)) => 16,
        NextHop::Ipv6WithLinkLocal(..) => 32,
        NextHop::Raw(b) => b.len(),
    }
}

/// Value of MP_REACH_NLRI.
pub(crate) fn mp_reach_value<N: Nlri>(r: &MpReach<N>, buf: &mut BytesMut) {
    buf.put_u16(r.afi_safi.afi.0);
    buf.put_u8(r.afi_safi.safi.0);
    buf.put_u8(next_hop_len(&r.next_hop).min(255) as u8);
    put_next_hop(&r.next_hop, buf);
    buf.put_u8(0); // reserved (RFC 4760 §3)
    for n in &r.nlri {
        n.encode(buf);
    }
}

pub(crate) fn mp_unreach_value<N: Nlri>(u: &MpUnreach<N>, buf: &mut BytesMut) {
    buf.put_u16(u.afi_safi.afi.0);
    buf.put_u8(u.afi_safi.safi.0);
    for n in &u.withdrawn {
        n.encode(buf);
    }
}

fn as_path_value(p: &AsPath, width: usize, skip_confed: bool, buf: &mut BytesMut) {
    for seg in &p.segments {
        let (t, asns) = match seg {
            AsSegment::Set(v) => (SEG_SET, v),
            AsSegment::Sequence(v) => (SEG_SEQUENCE, v),
            AsSegment::ConfedSequence(v) => (SEG_CONFED_SEQUENCE, v),
            AsSegment::ConfedSet(v) => (SEG_CONFED_SET, v),
        };
        if skip_confed && (t == SEG_CONFED_SEQUENCE || t == SEG_CONFED_SET) {
            continue;
        }
        // A segment holds at most 255 ASNs; longer ones are split. Empty
        // segments are malformed (RFC 7606 §7.2) and not written.
        for chunk in asns.chunks(255) {
            buf.put_u8(t);
            buf.put_u8(chunk.len() as u8);
            for a in chunk {
                if width == 4 {
                    buf.put_u32(a.0);
                } else {
                    buf.put_u16(u16::try_from(a.0).unwrap_or(Asn::TRANS.0 as u16));
                }
            }
        }
    }
}

fn needs_as4(p: &AsPath) -> bool {
    p.segments.iter().any(|s| match s {
        AsSegment::Set(v) | AsSegment::Sequence(v) => v.iter().any(|a| a.0 > 0xffff),
        _ => false,
    })
}

/// Append every path attribute of an UPDATE: MP_REACH, MP_UNREACH, then the
/// rest in type-code order (FRR 8.4's order).
pub(crate) fn encode_attributes<N: Nlri>(
    attrs: &PathAttributes,
    mp_reach: Option<&MpReach<N>>,
    mp_unreach: Option<&MpUnreach<N>>,
    opts: &CodecOptions,
    buf: &mut BytesMut,
) {
    let mut v = BytesMut::new();
    if let Some(r) = mp_reach {
        mp_reach_value(r, &mut v);
        put_attr(buf, OPT_NON_TRANS, code::MP_REACH_NLRI, &v, true);
        v.clear();
    }
    if let Some(u) = mp_unreach {
        mp_unreach_value(u, &mut v);
        // FRR writes End-of-RIB's empty MP_UNREACH with a 1-byte length and
        // real withdraws with the extended length.
        let ext = !u.withdrawn.is_empty();
        put_attr(buf, OPT_NON_TRANS, code::MP_UNREACH_NLRI, &v, ext);
        v.clear();
    }

    // (type code, flags, value, extended length) in type-code order.
    let mut list: Vec<(u8, u8, Bytes, bool)> = Vec::new();
    let mut add = |tc: u8, fl: u8, f: &dyn Fn(&mut BytesMut), ext: bool| {
        let mut b = BytesMut::new();
        f(&mut b);
        list.push((tc, fl, b.freeze(), ext));
    };
    let wide = opts.four_octet_as;
    if let Some(o) = attrs.origin {
        add(code::ORIGIN, WELL_KNOWN, &|b| b.put_u8(o as u8), false);
    }
    if let Some(p) = &attrs.as_path {
        let width = if wide { 4 } else { 2 };
        add(
            code::AS_PATH,
            WELL_KNOWN,
            &|b| as_path_value(p, width, false, b),
            true,
        );
        // RFC 6793 §4.2.2: a 2-octet session gets AS_TRANS in AS_PATH and
        // the real path in AS4_PATH.
        if !wide && needs_as4(p) {
            add(
                code::AS4_PATH,
                OPT_TRANS,
                &|b| as_path_value(p, 4, true, b),
                false,
            );
        }
    }
    if let Some(nh) = attrs.next_hop {
        add(
            code::NEXT_HOP,
            WELL_KNOWN,
            &|b| b.put_slice(&nh.octets()),
            false,
        );
    }
    if let Some(m) = attrs.med {
        add(code::MED, OPT_NON_TRANS, &|b| b.put_u32(m), false);
    }
    if let Some(lp) = attrs.local_pref {
        add(code::LOCAL_PREF, WELL_KNOWN, &|b| b.put_u32(lp), false);
    }
    if attrs.atomic_aggregate {
        add(code::ATOMIC_AGGREGATE, WELL_KNOWN, &|_| {}, false);
    }
    if let Some(a) = &attrs.aggregator {
        if wide {
            add(
                code::AGGREGATOR,
                OPT_TRANS,
                &|b| {
                    b.put_u32(a.asn.0);
                    b.put_slice(&a.address.octets());
                },
                false,
            );
        } else {
            let small = u16::try_from(a.asn.0).ok();
            add(
                code::AGGREGATOR,
                OPT_TRANS,
                &|b| {
                    b.put_u16(small.unwrap_or(Asn::TRANS.0 as u16));
                    b.put_slice(&a.address.octets());
                },
                false,
            );
            if small.is_none() {
                add(
                    code::AS4_AGGREGATOR,
                    OPT_TRANS,
                    &|b| {
                        b.put_u32(a.asn.0);
                        b.put_slice(&a.address.octets());
                    },
                    false,
                );
            }
        }
    }
    if !attrs.communities.is_empty() {
        add(
            code::COMMUNITIES,
            OPT_TRANS,
            &|b| {
                for c in &attrs.communities {
                    b.put_u32(*c);
                }
            },
            false,
        );
    }
    if let Some(o) = attrs.originator_id {
        add(
            code::ORIGINATOR_ID,
            OPT_NON_TRANS,
            &|b| b.put_slice(&o.octets()),
            false,
        );
    }
    if !attrs.cluster_list.is_empty() {
        add(
            code::CLUSTER_LIST,
            OPT_NON_TRANS,
            &|b| {
                for c in &attrs.cluster_list {
                    b.put_slice(&c.octets());
                }
            },
            false,
        );
    }
    if !attrs.ext_communities.is_empty() {
        add(
            code::EXTENDED_COMMUNITIES,
            OPT_TRANS,
            &|b| {
                for c in &attrs.ext_communities {
                    b.put_slice(&c.0);
                }
            },
            false,
        );
    }
    if let Some(p) = &attrs.pmsi_tunnel {
        add(
            code::PMSI_TUNNEL,
            OPT_TRANS,
            &|b| {
                b.put_u8(p.flags);
                b.put_u8(p.tunnel_type);
                b.put_slice(&(p.label & 0x00ff_ffff).to_be_bytes()[1..]);
                b.put_slice(&p.tunnel_id);
            },
            false,
        );
    }
    for r in &attrs.unknown {
        if is_known(r.type_code) {
            tracing::warn!(
                type_code = r.type_code,
                "raw attribute with a typed code not sent"
            );
            continue;
        }
        list.push((r.type_code, r.flags, r.value.clone(), false));
    }
    list.sort_by_key(|(tc, ..)| *tc);
    for (tc, fl, value, ext) in list {
        put_attr(buf, fl, tc, &value, ext);
    }
}

impl PathAttributes {
    /// Wire length of these attributes (no MP attributes) on a session with
    /// `opts`; used to pack UPDATEs.
    pub fn encoded_len(&self, opts: &CodecOptions) -> usize {
        let mut b = BytesMut::new();
        encode_attributes::<crate::message::RawNlri>(self, None, None, opts, &mut b);
        b.len()
    }
}
