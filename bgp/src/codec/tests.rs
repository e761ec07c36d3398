//! Unit tests: header, OPEN and UPDATE error classes (RFC 4271 §6, RFC 7606)
//! and the RFC 6793 AS conversions.

use std::net::Ipv4Addr;

use bytes::{Bytes, BytesMut};

use super::*;
use crate::attr::{flags, AsPath, AsSegment, Origin, PathAttributes, RawAttribute};
use crate::error::notif::*;
use crate::error::{AttrErrorKind, ErrorAction, NlriError};
use crate::message::{Capability, MpReach, NextHop, Open, RawNlri, Update};
use crate::types::Asn;

pub(super) const OLD: CodecOptions = CodecOptions {
    four_octet_as: false,
    extended_message: false,
};
const NEW: CodecOptions = CodecOptions {
    four_octet_as: true,
    extended_message: false,
};

fn msg(msg_type: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![0xff; 16];
    v.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    v.push(msg_type);
    v.extend_from_slice(body);
    v
}

fn update_body(withdrawn: &[u8], attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&(withdrawn.len() as u16).to_be_bytes());
    b.extend_from_slice(withdrawn);
    b.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    b.extend_from_slice(attrs);
    b.extend_from_slice(nlri);
    b
}

fn attr(fl: u8, tc: u8, value: &[u8]) -> Vec<u8> {
    let mut v = vec![fl, tc];
    if fl & flags::EXTENDED_LENGTH != 0 {
        v.extend_from_slice(&(value.len() as u16).to_be_bytes());
    } else {
        v.push(value.len() as u8);
    }
    v.extend_from_slice(value);
    v
}

const WK: u8 = flags::TRANSITIVE;
const ONT: u8 = flags::OPTIONAL;
const OT: u8 = flags::OPTIONAL | flags::TRANSITIVE;

fn origin() -> Vec<u8> {
    attr(WK, 1, &[0])
}
fn empty_as_path() -> Vec<u8> {
    attr(WK | flags::EXTENDED_LENGTH, 2, &[])
}
fn next_hop() -> Vec<u8> {
    attr(WK, 3, &[10, 0, 0, 1])
}
/// MP_REACH for EVPN with one opaque NLRI.
fn mp_reach() -> Vec<u8> {
    attr(
        ONT | flags::EXTENDED_LENGTH,
        14,
        &[0, 25, 70, 4, 10, 0, 0, 1, 0, 3, 1, 0xaa],
    )
}

/// A well-formed IPv4 unicast UPDATE plus `extra` attributes.
fn ipv4_update(extra: &[u8]) -> Vec<u8> {
    let mut a = [origin(), empty_as_path(), next_hop()].concat();
    a.extend_from_slice(extra);
    msg(2, &update_body(&[], &a, &[24, 192, 0, 2]))
}

fn dec(buf: &[u8], opts: &CodecOptions) -> Result<Message<RawNlri>, DecodeError> {
    decode(buf, opts)
}

fn upd(buf: &[u8], opts: &CodecOptions) -> Update<RawNlri> {
    match dec(buf, opts) {
        Ok(Message::Update(u)) => u,
        other => panic!("expected an UPDATE, got {other:?}"),
    }
}

fn enc(m: &Message<RawNlri>, opts: &CodecOptions) -> Vec<u8> {
    let mut b = BytesMut::new();
    try_encode(m, opts, &mut b).unwrap();
    b.to_vec()
}

/// The single error report of `u`: (type, action, reason).
fn only_error(u: &Update<RawNlri>) -> (u8, ErrorAction, AttrErrorKind) {
    assert_eq!(u.errors.len(), 1, "{:?}", u.errors);
    let e = &u.errors[0];
    (e.attr_type, e.action, e.reason)
}

// ------------------------------------------------------------------ header

#[test]
fn header_errors_map_to_notifications() {
    let mut bad_marker = msg(4, &[]);
    bad_marker[3] = 0;
    assert_eq!(dec(&bad_marker, &NEW), Err(DecodeError::BadMarker));
    assert_eq!(
        DecodeError::BadMarker.notification(),
        (MESSAGE_HEADER, CONNECTION_NOT_SYNCHRONIZED, vec![])
    );

    // KEEPALIVE must be exactly 19 (§6.1); data is the bad length field.
    let long_keepalive = msg(4, &[0]);
    let e = dec(&long_keepalive, &NEW).unwrap_err();
    assert_eq!(e, DecodeError::BadLength { len: 20 });
    assert_eq!(
        e.notification(),
        (MESSAGE_HEADER, BAD_MESSAGE_LENGTH, vec![0, 20])
    );

    // Per-type minimums.
    for (t, body_len, bad) in [(1u8, 9, 28u16), (2, 3, 22), (3, 1, 20), (5, 3, 22)] {
        let m = msg(t, &vec![0; body_len]);
        assert_eq!(
            dec(&m, &NEW),
            Err(DecodeError::BadLength { len: bad }),
            "type {t}"
        );
    }

    // Length field below 19 or above the maximum.
    let mut short = msg(4, &[]);
    short[17] = 18;
    assert_eq!(
        frame_len(&short, &NEW),
        Err(DecodeError::BadLength { len: 18 })
    );
    let big = msg(6, &vec![0; 4200]);
    assert_eq!(
        frame_len(&big, &NEW),
        Err(DecodeError::BadLength { len: 4219 })
    );
    let ext = CodecOptions {
        extended_message: true,
        ..NEW
    };
    assert_eq!(frame_len(&big, &ext), Ok(Some(4219)));

    // Unknown type: data is the type octet.
    let e = dec(&big, &ext).unwrap_err();
    assert_eq!(e, DecodeError::BadType { msg_type: 6 });
    assert_eq!(
        e.notification(),
        (MESSAGE_HEADER, BAD_MESSAGE_TYPE, vec![6])
    );

    // ROUTE-REFRESH longer than 23 (no ORF negotiated): RFC 7313 §5.
    let rr = msg(5, &[0, 25, 0, 70, 1]);
    let e = dec(&rr, &NEW).unwrap_err();
    assert_eq!(e.notification().0, ROUTE_REFRESH_MESSAGE);
    assert_eq!(e.notification().1, RR_INVALID_MESSAGE_LENGTH);
}

#[test]
fn frame_len_waits_for_whole_message() {
    let k = msg(4, &[]);
    assert_eq!(frame_len(&k[..5], &NEW), Ok(None));
    assert_eq!(frame_len(&k[..18], &NEW), Ok(None));
    assert_eq!(frame_len(&k, &NEW), Ok(Some(19)));
    let mut two = k.clone();
    two.extend_from_slice(&k);
    assert_eq!(frame_len(&two, &NEW), Ok(Some(19)));
    assert_eq!(frame_len(&[0xff, 0xfe], &NEW), Err(DecodeError::BadMarker));
    assert_eq!(frame_len(&[], &NEW), Ok(None));
    // decode wants exactly one message
    assert!(dec(&two, &NEW).is_err());
}

// -------------------------------------------------------------------- OPEN

fn open_body(version: u8, hold: u16, id: [u8; 4], params: &[u8]) -> Vec<u8> {
    let mut b = vec![version, 0xfd, 0xe8];
    b.extend_from_slice(&hold.to_be_bytes());
    b.extend_from_slice(&id);
    b.push(params.len() as u8);
    b.extend_from_slice(params);
    b
}

#[test]
fn open_errors() {
    let e = dec(&msg(1, &open_body(3, 90, [1, 1, 1, 1], &[])), &NEW).unwrap_err();
    assert_eq!(
        e.notification(),
        (OPEN_MESSAGE, UNSUPPORTED_VERSION, vec![0, 4])
    );
    for hold in [1, 2] {
        let e = dec(&msg(1, &open_body(4, hold, [1, 1, 1, 1], &[])), &NEW).unwrap_err();
        assert_eq!(
            e.notification(),
            (OPEN_MESSAGE, UNACCEPTABLE_HOLD_TIME, vec![])
        );
    }
    for hold in [0, 3] {
        assert!(dec(&msg(1, &open_body(4, hold, [1, 1, 1, 1], &[])), &NEW).is_ok());
    }
    let e = dec(&msg(1, &open_body(4, 90, [0, 0, 0, 0], &[])), &NEW).unwrap_err();
    assert_eq!(e.notification(), (OPEN_MESSAGE, BAD_BGP_ID, vec![]));

    // Parameter length overruns the message / capability truncated / a known
    // capability with a bad length: malformed (unspecific subcode).
    let mut body = open_body(4, 90, [1, 1, 1, 1], &[2, 6, 1, 4, 0, 25, 0, 70]);
    body[9] = 9; // says 9, has 8
    let e = dec(&msg(1, &body), &NEW).unwrap_err();
    assert!(matches!(
        e,
        DecodeError::Open {
            subcode: OPEN_UNSPECIFIC,
            offset: 28,
            ..
        }
    ));
    for params in [
        &[2u8, 4, 1, 4, 0, 25][..],   // capability longer than its parameter
        &[2, 5, 1, 3, 0, 25, 70][..], // MP capability of length 3
        &[2, 3, 65, 1, 0][..],        // 4-octet AS of length 1
        &[2, 3, 64, 1, 0][..],        // GR shorter than 2
        &[2][..],                     // parameter header cut
    ] {
        let e = dec(&msg(1, &open_body(4, 90, [1, 1, 1, 1], params)), &NEW).unwrap_err();
        assert_eq!(e.notification().0, OPEN_MESSAGE, "{params:?}");
        assert_eq!(e.notification().1, OPEN_UNSPECIFIC, "{params:?}");
    }
}

#[test]
fn open_capabilities_grouped_or_one_per_parameter() {
    // Three capabilities in one parameter, then one in its own, then an
    // unknown parameter type.
    let params = [
        &[2u8, 14, 1, 4, 0, 25, 0, 70, 65, 4, 0, 1, 0, 0, 2, 0][..],
        &[2, 2, 6, 0][..],
        &[9, 2, 0xab, 0xcd][..],
    ]
    .concat();
    let m = dec(&msg(1, &open_body(4, 90, [1, 2, 3, 4], &params)), &NEW).unwrap();
    let Message::Open(o) = &m else { panic!() };
    assert_eq!(
        o.capabilities,
        vec![
            Capability::Multiprotocol(AfiSafi::L2VPN_EVPN),
            Capability::FourOctetAs(Asn(65536)),
            Capability::RouteRefresh,
            Capability::ExtendedMessage,
        ]
    );
    assert_eq!(o.asn(), Asn(65536));
    assert_eq!(o.other_params, vec![(9, Bytes::from_static(&[0xab, 0xcd]))]);
    // Re-encoded one capability per parameter (FRR's way), same meaning.
    let again = dec(&enc(&m, &NEW), &NEW).unwrap();
    assert_eq!(again, m);
}

#[test]
fn open_extended_optional_parameters_rfc9072() {
    let caps: Vec<Capability> = (0..60)
        .map(|i| Capability::Unknown {
            code: 200,
            data: Bytes::from(vec![i as u8; 3]),
        })
        .collect();
    let o = Message::Open(Open {
        version: 4,
        my_as: 65000,
        hold_time: 90,
        bgp_id: Ipv4Addr::new(1, 1, 1, 1),
        capabilities: caps,
        other_params: vec![],
    });
    let b = enc(&o, &NEW);
    assert_eq!(b[28], 255);
    assert_eq!(b[29], 255);
    assert_eq!(u16::from_be_bytes([b[30], b[31]]) as usize, 60 * 8);
    assert_eq!(dec(&b, &NEW).unwrap(), o);
}

// ------------------------------------------------------------------ UPDATE

#[test]
fn well_formed_ipv4_update() {
    let u = upd(&ipv4_update(&[]), &NEW);
    assert!(u.errors.is_empty());
    assert_eq!(u.nlri, vec!["192.0.2.0/24".parse().unwrap()]);
    assert_eq!(u.attributes.origin, Some(Origin::Igp));
    assert_eq!(u.attributes.next_hop, Some(Ipv4Addr::new(10, 0, 0, 1)));
}

#[test]
fn treat_as_withdraw_cases() {
    let cases: Vec<(Vec<u8>, u8, AttrErrorKind)> = vec![
        (attr(WK, 1, &[3]), 1, AttrErrorKind::BadOrigin(3)),
        (attr(WK, 1, &[0, 0]), 1, AttrErrorKind::BadLength(2)),
        (
            attr(WK, 2, &[7, 1, 0, 0, 0, 1]),
            2,
            AttrErrorKind::MalformedAsPath,
        ),
        (attr(WK, 2, &[2, 0]), 2, AttrErrorKind::MalformedAsPath),
        (
            attr(WK, 2, &[2, 2, 0, 0, 0, 1]),
            2,
            AttrErrorKind::MalformedAsPath,
        ),
        (attr(WK, 3, &[1, 2, 3]), 3, AttrErrorKind::BadLength(3)),
        (attr(ONT, 4, &[0, 0, 1]), 4, AttrErrorKind::BadLength(3)),
        (
            attr(WK, 5, &[0, 0, 0, 0, 1]),
            5,
            AttrErrorKind::BadLength(5),
        ),
        (attr(OT, 8, &[]), 8, AttrErrorKind::BadLength(0)),
        (attr(OT, 8, &[0, 0, 1]), 8, AttrErrorKind::BadLength(3)),
        (attr(ONT, 9, &[1, 2, 3]), 9, AttrErrorKind::BadLength(3)),
        (
            attr(ONT, 10, &[1, 2, 3, 4, 5]),
            10,
            AttrErrorKind::BadLength(5),
        ),
        (attr(OT, 16, &[0; 7]), 16, AttrErrorKind::BadLength(7)),
        (attr(OT, 22, &[0, 6, 0, 0]), 22, AttrErrorKind::BadLength(4)),
        // §3c: flags in conflict with the attribute's definition.
        (attr(OT, 5, &[0, 0, 0, 100]), 5, AttrErrorKind::BadFlags(OT)),
        (attr(WK, 9, &[1, 1, 1, 1]), 9, AttrErrorKind::BadFlags(WK)),
        (attr(ONT, 16, &[0; 8]), 16, AttrErrorKind::BadFlags(ONT)),
        // An unrecognised well-known attribute.
        (attr(WK, 99, &[1]), 99, AttrErrorKind::UnrecognizedWellKnown),
    ];
    for (extra, tc, kind) in cases {
        // Replace the well-formed attribute of the same code if any.
        let mut a = Vec::new();
        if tc != 1 {
            a.extend(origin());
        }
        if tc != 2 {
            a.extend(empty_as_path());
        }
        if tc != 3 {
            a.extend(next_hop());
        }
        a.extend_from_slice(&extra);
        let m = msg(2, &update_body(&[], &a, &[24, 192, 0, 2]));
        let u = upd(&m, &NEW);
        assert_eq!(
            only_error(&u),
            (tc, ErrorAction::TreatAsWithdraw, kind),
            "{extra:?}"
        );
        assert!(u.treat_as_withdraw());
        // The routes are still there so they can be withdrawn.
        assert_eq!(u.nlri.len(), 1);
        // Offset points at the attribute's flags octet.
        assert_eq!(m[u.errors[0].offset], extra[0], "{extra:?}");
    }
}

#[test]
fn attribute_discard_cases() {
    for (extra, tc, kind) in [
        (attr(WK, 6, &[1]), 6, AttrErrorKind::BadLength(1)),
        (
            attr(OT, 7, &[0, 1, 1, 1, 1]),
            7,
            AttrErrorKind::BadLength(5),
        ),
        // a duplicate ORIGIN (§3g): the second is dropped
        (attr(WK, 1, &[2]), 1, AttrErrorKind::Duplicate),
    ] {
        let u = upd(&ipv4_update(&extra), &NEW);
        assert_eq!(only_error(&u), (tc, ErrorAction::AttributeDiscard, kind));
        assert!(!u.treat_as_withdraw());
        assert_eq!(u.attributes.origin, Some(Origin::Igp));
        assert!(!u.attributes.atomic_aggregate);
        assert_eq!(u.attributes.aggregator, None);
    }
    // AGGREGATOR of the 2-octet size on a 4-octet session.
    let u = upd(&ipv4_update(&attr(OT, 7, &[0, 1, 1, 1, 1, 1])), &NEW);
    assert_eq!(only_error(&u).1, ErrorAction::AttributeDiscard);
    // ... is right on a 2-octet session.
    let u = upd(&ipv4_update(&attr(OT, 7, &[0, 1, 1, 1, 1, 1])), &OLD);
    assert!(u.errors.is_empty());
    assert_eq!(u.attributes.aggregator.unwrap().asn, Asn(1));
}

#[test]
fn missing_well_known_attributes() {
    // MP_REACH with NLRI but no ORIGIN/AS_PATH: treat-as-withdraw (§3d).
    let m = msg(2, &update_body(&[], &mp_reach(), &[]));
    let u = upd(&m, &NEW);
    let missing: Vec<_> = u.errors.iter().map(|e| (e.attr_type, e.action)).collect();
    assert_eq!(
        missing,
        vec![
            (1, ErrorAction::TreatAsWithdraw),
            (2, ErrorAction::TreatAsWithdraw)
        ]
    );
    assert_eq!(u.mp_reach.unwrap().nlri.len(), 1);
    // IPv4 NLRI without NEXT_HOP.
    let a = [origin(), empty_as_path()].concat();
    let u = upd(&msg(2, &update_body(&[], &a, &[8, 10])), &NEW);
    assert_eq!(
        only_error(&u),
        (
            3,
            ErrorAction::TreatAsWithdraw,
            AttrErrorKind::MissingWellKnown(3)
        )
    );
    // Withdraw-only and End-of-RIB updates need nothing.
    let u = upd(&msg(2, &update_body(&[8, 10], &[], &[])), &NEW);
    assert!(u.errors.is_empty());
    let u = upd(
        &msg(2, &update_body(&[], &attr(ONT, 15, &[0, 25, 70]), &[])),
        &NEW,
    );
    assert!(u.errors.is_empty());
    assert_eq!(u.is_end_of_rib(), Some(AfiSafi::L2VPN_EVPN));
}

#[test]
fn attribute_overrun() {
    // The last attribute claims more bytes than the attribute field has.
    let mut a = [origin(), empty_as_path(), next_hop()].concat();
    a.extend_from_slice(&[OT, 8, 10, 0, 0]);
    // With IPv4 NLRI located by the total length: treat-as-withdraw.
    let u = upd(&msg(2, &update_body(&[], &a, &[24, 192, 0, 2])), &NEW);
    assert_eq!(only_error(&u).1, ErrorAction::TreatAsWithdraw);
    assert_eq!(u.nlri.len(), 1);
    // With MP_REACH parsed before the overrun: treat-as-withdraw too.
    let mut a2 = mp_reach();
    a2.extend_from_slice(&[WK, 1]);
    let u = upd(&msg(2, &update_body(&[], &a2, &[])), &NEW);
    assert!(u.treat_as_withdraw());
    // Nothing locates any NLRI: session reset.
    let e = dec(&msg(2, &update_body(&[], &[WK, 1, 5, 0], &[])), &NEW).unwrap_err();
    assert_eq!(
        e.notification(),
        (UPDATE_MESSAGE, MALFORMED_ATTRIBUTE_LIST, vec![])
    );
}

#[test]
fn session_reset_cases() {
    // MP_REACH twice.
    let a = [origin(), empty_as_path(), mp_reach(), mp_reach()].concat();
    let e = dec(&msg(2, &update_body(&[], &a, &[])), &NEW).unwrap_err();
    assert_eq!(e.notification().1, MALFORMED_ATTRIBUTE_LIST);
    // MP_UNREACH twice.
    let un = attr(ONT, 15, &[0, 25, 70]);
    let e = dec(
        &msg(2, &update_body(&[], &[un.clone(), un].concat(), &[])),
        &NEW,
    )
    .unwrap_err();
    assert_eq!(e.notification().1, MALFORMED_ATTRIBUTE_LIST);
    // EVPN next hop of length 5: the NLRI cannot be located (RFC 7606 §7.11).
    let bad_nh = attr(ONT, 14, &[0, 25, 70, 5, 1, 2, 3, 4, 5, 0, 3, 1, 0]);
    let a = [origin(), empty_as_path(), bad_nh].concat();
    let e = dec(&msg(2, &update_body(&[], &a, &[])), &NEW).unwrap_err();
    assert_eq!(e.notification().1, OPTIONAL_ATTRIBUTE_ERROR);
    assert!(matches!(e, DecodeError::Update { offset: 31, .. }));
    // MP_REACH cut before the reserved octet.
    let short = attr(ONT, 14, &[0, 25, 70, 4, 1, 2, 3, 4]);
    let e = dec(&msg(2, &update_body(&[], &short, &[])), &NEW).unwrap_err();
    assert_eq!(e.notification().1, OPTIONAL_ATTRIBUTE_ERROR);
    // Withdrawn length past the end, prefix longer than 32, cut prefix.
    let mut b = update_body(&[], &[], &[]);
    b[1] = 9;
    let e = dec(&msg(2, &b), &NEW).unwrap_err();
    assert_eq!(e.notification().1, MALFORMED_ATTRIBUTE_LIST);
    let e = dec(&msg(2, &update_body(&[33, 1, 2, 3, 4, 5], &[], &[])), &NEW).unwrap_err();
    assert_eq!(e.notification().1, INVALID_NETWORK_FIELD);
    let e = dec(&msg(2, &update_body(&[], &[], &[24, 10, 0])), &NEW).unwrap_err();
    assert_eq!(e.notification().1, INVALID_NETWORK_FIELD);
}

/// An NLRI codec that rejects everything.
#[derive(Debug, Clone, PartialEq)]
struct Refuse;
impl Nlri for Refuse {
    fn decode_all(_: AfiSafi, _: &[u8]) -> Result<Vec<Self>, NlriError> {
        Err(NlriError::Invalid {
            offset: 1,
            what: "test",
        })
    }
    fn encode(&self, _: &mut BytesMut) {}
    fn encoded_len(&self) -> usize {
        0
    }
}

#[test]
fn unparseable_mp_nlri_is_a_session_reset() {
    let a = [origin(), empty_as_path(), mp_reach()].concat();
    let e = decode::<Refuse>(&msg(2, &update_body(&[], &a, &[])), &NEW).unwrap_err();
    // Offset of the NLRI field inside the message: 23 (header, lengths) +
    // ORIGIN 4 + AS_PATH 4 + MP_REACH header 4 + AFI/SAFI/NH length 4 + NH 4
    // + reserved 1.
    let DecodeError::Nlri { offset, .. } = e else {
        panic!("{e:?}")
    };
    assert_eq!(offset, 23 + 4 + 4 + 4 + 4 + 4 + 1);
    assert_eq!(e.notification().1, OPTIONAL_ATTRIBUTE_ERROR);
}

#[test]
fn unknown_attributes_kept_and_propagated() {
    let trans = attr(OT | flags::PARTIAL, 200, &[1, 2, 3]);
    let non_trans = attr(ONT | flags::EXTENDED_LENGTH, 201, &[4]);
    let m = ipv4_update(&[trans, non_trans].concat());
    let u = upd(&m, &NEW);
    assert!(u.errors.is_empty());
    assert_eq!(
        u.attributes.unknown,
        vec![
            RawAttribute {
                flags: OT | flags::PARTIAL,
                type_code: 200,
                value: Bytes::from_static(&[1, 2, 3]),
            },
            RawAttribute {
                flags: ONT | flags::EXTENDED_LENGTH,
                type_code: 201,
                value: Bytes::from_static(&[4]),
            },
        ]
    );
    // Flags are written as stored: exact round trip.
    assert_eq!(enc(&Message::Update(u.clone()), &NEW), m);
    let p = u.attributes.for_propagation();
    assert_eq!(p.unknown.len(), 1);
    assert_eq!(p.unknown[0].type_code, 200);
    assert_eq!(p.unknown[0].flags, OT | flags::PARTIAL);
    let fresh = PathAttributes {
        unknown: vec![RawAttribute {
            flags: OT,
            type_code: 250,
            value: Bytes::new(),
        }],
        ..Default::default()
    };
    assert_eq!(
        fresh.for_propagation().unknown[0].flags,
        OT | flags::PARTIAL
    );
}

// ---------------------------------------------------------------- RFC 6793

fn seq(v: &[u32]) -> AsSegment {
    AsSegment::Sequence(v.iter().map(|&a| Asn(a)).collect())
}

#[test]
fn as4_path_merge_on_two_octet_session() {
    // An old speaker prepended 100 to a path whose AS4_PATH is [70000 300].
    let as_path = attr(WK, 2, &[2, 3, 0, 100, 0x5b, 0xa0, 1, 0x2c]);
    let as4 = attr(OT, 17, &[2, 2, 0, 1, 0x11, 0x70, 0, 0, 1, 0x2c]);
    let a = [origin(), as_path.clone(), next_hop(), as4.clone()].concat();
    let u = upd(&msg(2, &update_body(&[], &a, &[8, 10])), &OLD);
    assert!(u.errors.is_empty());
    assert_eq!(
        u.attributes.as_path,
        Some(AsPath {
            segments: vec![seq(&[100, 70000, 300])]
        })
    );
    // AS4_PATH longer than AS_PATH: ignored.
    let long4 = attr(
        OT,
        17,
        &[2, 4, 0, 1, 0x11, 0x70, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3],
    );
    let a = [origin(), as_path.clone(), next_hop(), long4].concat();
    let u = upd(&msg(2, &update_body(&[], &a, &[8, 10])), &OLD);
    assert_eq!(
        u.attributes.as_path.unwrap().segments,
        vec![seq(&[100, 23456, 300])]
    );
    // A non-AS_TRANS AGGREGATOR makes AS4_PATH stale (§4.2.3).
    let aggr = attr(OT, 7, &[0, 5, 1, 1, 1, 1]);
    let a = [origin(), as_path.clone(), next_hop(), aggr, as4.clone()].concat();
    let u = upd(&msg(2, &update_body(&[], &a, &[8, 10])), &OLD);
    assert_eq!(
        u.attributes.as_path.unwrap().segments,
        vec![seq(&[100, 23456, 300])]
    );
    // AS_TRANS AGGREGATOR + AS4_AGGREGATOR.
    let aggr = attr(OT, 7, &[0x5b, 0xa0, 1, 1, 1, 1]);
    let aggr4 = attr(OT, 18, &[0, 1, 0x11, 0x70, 1, 1, 1, 1]);
    let a = [origin(), as_path, next_hop(), aggr, as4.clone(), aggr4].concat();
    let u = upd(&msg(2, &update_body(&[], &a, &[8, 10])), &OLD);
    assert_eq!(u.attributes.aggregator.unwrap().asn, Asn(70000));
    assert_eq!(
        u.attributes.as_path.unwrap().segments,
        vec![seq(&[100, 70000, 300])]
    );
    // On a 4-octet session AS4_PATH is ignored.
    let as_path4 = attr(WK, 2, &[2, 1, 0, 0, 0, 100]);
    let a = [origin(), as_path4, next_hop(), as4].concat();
    let u = upd(&msg(2, &update_body(&[], &a, &[8, 10])), &NEW);
    assert!(u.errors.is_empty());
    assert_eq!(u.attributes.as_path.unwrap().segments, vec![seq(&[100])]);
    // A malformed AS4_PATH is discarded.
    let bad4 = attr(OT, 17, &[2, 2, 0, 1]);
    let u = upd(&ipv4_update(&bad4), &OLD);
    assert_eq!(
        only_error(&u),
        (
            17,
            ErrorAction::AttributeDiscard,
            AttrErrorKind::MalformedAsPath
        )
    );
}

#[test]
fn as_trans_and_as4_path_on_encode() {
    let u: Update<RawNlri> = Update {
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath {
                segments: vec![
                    AsSegment::ConfedSequence(vec![Asn(65001)]),
                    seq(&[100, 70000]),
                ],
            }),
            next_hop: Some(Ipv4Addr::new(10, 0, 0, 1)),
            aggregator: Some(crate::attr::Aggregator {
                asn: Asn(80000),
                address: Ipv4Addr::new(1, 1, 1, 1),
            }),
            ..Default::default()
        },
        nlri: vec!["10.0.0.0/8".parse().unwrap()],
        ..Default::default()
    };
    let b = enc(&Message::Update(u.clone()), &OLD);
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    // AS_PATH: confed seq [65001], seq [100, AS_TRANS]
    assert!(hex.contains("5002000a" /* flags, type, ext length 10 */));
    assert!(hex.contains("0301fde90202" /* confed 65001, seq of 2 */));
    assert!(hex.contains("00645ba0"));
    // AS4_PATH without the confederation segment; AGGREGATOR with AS_TRANS.
    assert!(hex.contains("c0110a020200000064" /* seq 100 ... */));
    assert!(hex.contains("c007065ba001010101"));
    assert!(hex.contains("c012080001388001010101"));
    assert_eq!(upd(&b, &OLD), u);
    // 4-octet session: no AS4 attributes at all.
    let b = enc(&Message::Update(u.clone()), &NEW);
    assert!(!b.windows(2).any(|w| w == [0xc0, 0x11] || w == [0xc0, 0x12]));
    assert_eq!(upd(&b, &NEW), u);
}

#[test]
fn too_long_is_not_written() {
    let u: Update<RawNlri> = Update {
        mp_reach: Some(MpReach {
            afi_safi: AfiSafi::L2VPN_EVPN,
            next_hop: NextHop::Ip(Ipv4Addr::new(1, 1, 1, 1).into()),
            nlri: vec![RawNlri(Bytes::from(vec![0; 5000]))],
        }),
        ..Default::default()
    };
    let mut b = BytesMut::from(&b"x"[..]);
    let r = try_encode(&Message::Update(u.clone()), &NEW, &mut b);
    assert!(matches!(r, Err(EncodeError::TooLong { .. })));
    assert_eq!(&b[..], b"x");
    encode(&Message::Update(u.clone()), &NEW, &mut b);
    assert_eq!(&b[..], b"x");
    let ext = CodecOptions {
        extended_message: true,
        ..NEW
    };
    assert!(try_encode(&Message::Update(u), &ext, &mut b).is_ok());
}

#[test]
fn as_zero_rfc7607() {
    // OPEN: My AS 0, or 4-octet AS capability 0 -> Bad Peer AS.
    let mut body = open_body(4, 90, [1, 1, 1, 1], &[]);
    body[1] = 0;
    body[2] = 0;
    let e = dec(&msg(1, &body), &NEW).unwrap_err();
    assert_eq!(e.notification(), (OPEN_MESSAGE, BAD_PEER_AS, vec![]));
    let body = open_body(4, 90, [1, 1, 1, 1], &[2, 6, 65, 4, 0, 0, 0, 0]);
    let e = dec(&msg(1, &body), &NEW).unwrap_err();
    assert_eq!(e.notification(), (OPEN_MESSAGE, BAD_PEER_AS, vec![]));
    // AS_PATH with AS 0: treat-as-withdraw; AGGREGATOR AS 0: discard.
    let a = [origin(), attr(WK, 2, &[2, 1, 0, 0, 0, 0]), next_hop()].concat();
    let u = upd(&msg(2, &update_body(&[], &a, &[8, 10])), &NEW);
    assert_eq!(
        only_error(&u),
        (2, ErrorAction::TreatAsWithdraw, AttrErrorKind::ZeroAsn)
    );
    let u = upd(&ipv4_update(&attr(OT, 7, &[0, 0, 0, 0, 1, 1, 1, 1])), &NEW);
    assert_eq!(
        only_error(&u),
        (7, ErrorAction::AttributeDiscard, AttrErrorKind::ZeroAsn)
    );
    // AS4_PATH with AS 0 on a 2-octet session: discard.
    let u = upd(&ipv4_update(&attr(OT, 17, &[2, 1, 0, 0, 0, 0])), &OLD);
    assert_eq!(
        only_error(&u),
        (17, ErrorAction::AttributeDiscard, AttrErrorKind::ZeroAsn)
    );
}

#[test]
fn graceful_restart_capability_bytes() {
    // R=0 N=1, restart time 300, EVPN with F bit, IPv4 unicast without.
    let gr = [64u8, 10, 0x41, 0x2c, 0, 25, 70, 0x80, 0, 1, 1, 0];
    let mut params = vec![2, gr.len() as u8];
    params.extend_from_slice(&gr);
    let m = msg(1, &open_body(4, 90, [1, 1, 1, 1], &params));
    let Ok(Message::Open(o)) = dec(&m, &NEW) else {
        panic!()
    };
    assert_eq!(
        o.capabilities,
        vec![Capability::GracefulRestart(
            crate::message::GracefulRestartCap {
                restarting: false,
                notification: true,
                restart_time: 300,
                afi_safis: vec![(AfiSafi::L2VPN_EVPN, true), (AfiSafi::IPV4_UNICAST, false)],
            }
        )]
    );
    assert_eq!(enc(&Message::Open(o.clone()), &NEW), m);
    assert_eq!(encoded_len(&Message::<RawNlri>::Open(o), &NEW), m.len());
}
