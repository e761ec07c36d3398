//! proptest strategies for every wire type, generating only canonical values
//! (what [`super::encode`] writes, [`super::decode`] gives back unchanged).
//! Enabled in this crate's tests and, for other crates, with the `proptest`
//! feature.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::Bytes;
use ipnet::Ipv4Net;
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;

use super::attr::is_known;
use super::CodecOptions;
use crate::attr::{
    flags, Aggregator, AsPath, AsSegment, ExtCommunity, Origin, PathAttributes, PmsiTunnel,
    RawAttribute,
};
use crate::message::{
    Capability, GracefulRestartCap, Message, MpReach, MpUnreach, NextHop, Notification, Open,
    RawNlri, RouteRefresh, Update,
};
use crate::types::{AfiSafi, Asn};

pub fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..=max).prop_map(Bytes::from)
}

fn nonempty_bytes(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 1..=max).prop_map(Bytes::from)
}

pub fn afi_safi() -> impl Strategy<Value = AfiSafi> {
    prop_oneof![
        Just(AfiSafi::L2VPN_EVPN),
        Just(AfiSafi::IPV4_UNICAST),
        (any::<u16>(), any::<u8>()).prop_map(|(a, s)| AfiSafi::new(a, s)),
    ]
}

pub fn capability() -> impl Strategy<Value = Capability> {
    prop_oneof![
        afi_safi().prop_map(Capability::Multiprotocol),
        Just(Capability::RouteRefresh),
        Just(Capability::ExtendedMessage),
        (1..=u32::MAX).prop_map(|a| Capability::FourOctetAs(Asn(a))),
        (
            any::<bool>(),
            any::<bool>(),
            0u16..=0x0fff,
            vec((afi_safi(), any::<bool>()), 0..6)
        )
            .prop_map(|(restarting, notification, restart_time, afi_safis)| {
                Capability::GracefulRestart(GracefulRestartCap {
                    restarting,
                    notification,
                    restart_time,
                    afi_safis,
                })
            }),
        (
            any::<u8>().prop_filter("known capability", |c| !matches!(c, 1 | 2 | 6 | 64 | 65)),
            bytes(40)
        )
            .prop_map(|(code, data)| Capability::Unknown { code, data }),
    ]
}

pub fn open() -> impl Strategy<Value = Open> {
    (
        1..=u16::MAX,
        any::<u16>().prop_filter("unacceptable hold time", |h| *h != 1 && *h != 2),
        any::<u32>().prop_filter("zero BGP id", |i| *i != 0),
        // Up to 80 capabilities: more than 255 bytes needs RFC 9072.
        prop_oneof![vec(capability(), 0..10), vec(capability(), 60..80)],
        vec((3u8..=254, bytes(20)), 0..3),
    )
        .prop_map(|(my_as, hold_time, id, capabilities, other_params)| Open {
            version: 4,
            my_as,
            hold_time,
            bgp_id: Ipv4Addr::from(id),
            capabilities,
            other_params,
        })
}

pub fn notification() -> impl Strategy<Value = Notification> {
    (any::<u8>(), any::<u8>(), bytes(64)).prop_map(|(code, subcode, data)| Notification {
        code,
        subcode,
        data,
    })
}

pub fn route_refresh() -> impl Strategy<Value = RouteRefresh> {
    (afi_safi(), any::<u8>()).prop_map(|(afi_safi, subtype)| RouteRefresh { afi_safi, subtype })
}

/// A prefix with no bits set past its length (what the wire keeps).
pub fn ipv4_net() -> impl Strategy<Value = Ipv4Net> {
    (any::<u32>(), 0u8..=32).prop_map(|(a, l)| {
        Ipv4Net::new(Ipv4Addr::from(a), l).map_or_else(|_| Ipv4Net::default(), |n| n.trunc())
    })
}

fn asns(small: bool) -> impl Strategy<Value = Vec<Asn>> {
    // AS 0 is malformed (RFC 7607).
    let max = if small { 0xffff } else { u32::MAX };
    vec((1..=max).prop_map(Asn), 1..6)
}

/// An AS_PATH. For a 2-octet session (`wide` false) confederation segments
/// only come first and hold 2-octet ASNs, since AS4_PATH cannot carry them
/// (RFC 6793 §3).
pub fn as_path(wide: bool) -> impl Strategy<Value = AsPath> {
    let any_seg = prop_oneof![
        asns(false).prop_map(AsSegment::Set),
        asns(false).prop_map(AsSegment::Sequence),
        asns(false).prop_map(AsSegment::ConfedSequence),
        asns(false).prop_map(AsSegment::ConfedSet),
    ];
    let confed = prop_oneof![
        asns(true).prop_map(AsSegment::ConfedSequence),
        asns(true).prop_map(AsSegment::ConfedSet),
    ];
    let plain = prop_oneof![
        asns(false).prop_map(AsSegment::Set),
        asns(false).prop_map(AsSegment::Sequence),
    ];
    if wide {
        vec(any_seg, 0..5)
            .prop_map(|segments| AsPath { segments })
            .boxed()
    } else {
        (vec(confed, 0..2), vec(plain, 0..4))
            .prop_map(|(mut segments, rest)| {
                segments.extend(rest);
                AsPath { segments }
            })
            .boxed()
    }
}

pub fn pmsi_tunnel() -> impl Strategy<Value = PmsiTunnel> {
    (any::<u8>(), any::<u8>(), 0u32..(1 << 24), bytes(16)).prop_map(
        |(flags, tunnel_type, label, tunnel_id)| PmsiTunnel {
            flags,
            tunnel_type,
            label,
            tunnel_id,
        },
    )
}

/// Unknown optional attributes, one per type code, in type-code order.
pub fn raw_attributes() -> impl Strategy<Value = Vec<RawAttribute>> {
    btree_map(
        any::<u8>().prop_filter("typed attribute", |c| !is_known(*c)),
        // Optional is required (an unknown well-known one is an error);
        // the other flag bits are kept as received.
        (0u8..0x80, bytes(40)),
        0..3,
    )
    .prop_map(|m: BTreeMap<u8, (u8, Bytes)>| {
        m.into_iter()
            .map(|(type_code, (fl, value))| RawAttribute {
                flags: flags::OPTIONAL | fl,
                type_code,
                value,
            })
            .collect()
    })
}

pub fn path_attributes(wide: bool) -> impl Strategy<Value = PathAttributes> {
    let origin = prop_oneof![
        Just(Origin::Igp),
        Just(Origin::Egp),
        Just(Origin::Incomplete)
    ];
    let ip = any::<u32>().prop_map(Ipv4Addr::from);
    let aggregator = (1..=u32::MAX, any::<u32>()).prop_map(|(a, ip)| Aggregator {
        asn: Asn(a),
        address: Ipv4Addr::from(ip),
    });
    (
        (
            option::of(origin),
            option::of(as_path(wide)),
            option::of(ip.clone()),
            option::of(any::<u32>()),
            option::of(any::<u32>()),
            any::<bool>(),
            option::of(aggregator),
        ),
        (
            vec(any::<u32>(), 0..4),
            option::of(ip.clone()),
            vec(ip, 0..4),
            vec(any::<[u8; 8]>().prop_map(ExtCommunity), 0..4),
            option::of(pmsi_tunnel()),
            raw_attributes(),
        ),
    )
        .prop_map(
            |(
                (origin, as_path, next_hop, med, local_pref, atomic_aggregate, aggregator),
                (communities, originator_id, cluster_list, ext_communities, pmsi_tunnel, unknown),
            )| PathAttributes {
                origin,
                as_path,
                next_hop,
                med,
                local_pref,
                atomic_aggregate,
                aggregator,
                communities,
                originator_id,
                cluster_list,
                ext_communities,
                pmsi_tunnel,
                unknown,
            },
        )
        .prop_filter("stale AS4_PATH", move |a| wide || !as4_path_ignored(a))
}

/// RFC 6793 §4.2.3: on a 2-octet session a real (non-AS_TRANS) AGGREGATOR
/// makes the receiver ignore AS4_PATH, so such a value does not survive.
fn as4_path_ignored(a: &PathAttributes) -> bool {
    let big_path = a.as_path.as_ref().is_some_and(|p| {
        p.segments.iter().any(|s| match s {
            AsSegment::Set(v) | AsSegment::Sequence(v) => v.iter().any(|x| x.0 > 0xffff),
            _ => false,
        })
    });
    let small_aggr = a
        .aggregator
        .as_ref()
        .is_some_and(|g| g.asn.0 <= 0xffff && g.asn != Asn::TRANS);
    big_path && small_aggr
}

pub fn next_hop_for(afi_safi: AfiSafi) -> BoxedStrategy<NextHop> {
    let v4 = any::<u32>().prop_map(|a| NextHop::Ip(IpAddr::V4(Ipv4Addr::from(a))));
    let v6 = any::<u128>().prop_map(|a| NextHop::Ip(IpAddr::V6(Ipv6Addr::from(a))));
    let ll = (any::<u128>(), any::<u128>())
        .prop_map(|(g, l)| NextHop::Ipv6WithLinkLocal(Ipv6Addr::from(g), Ipv6Addr::from(l)));
    if matches!(afi_safi.afi.0, 1 | 2 | 25) {
        prop_oneof![v4, v6, ll].boxed()
    } else {
        let raw = bytes(40)
            .prop_filter("IP-sized", |b| !matches!(b.len(), 4 | 16 | 32))
            .prop_map(NextHop::Raw);
        prop_oneof![v4, v6, ll, raw].boxed()
    }
}

/// [`RawNlri`] as it decodes: the whole field as one blob, or nothing.
pub fn raw_nlri() -> impl Strategy<Value = Vec<RawNlri>> {
    option::of(nonempty_bytes(60).prop_map(RawNlri)).prop_map(|o| o.into_iter().collect())
}

pub fn mp_reach() -> impl Strategy<Value = MpReach<RawNlri>> {
    afi_safi().prop_flat_map(|afi_safi| {
        (next_hop_for(afi_safi), raw_nlri()).prop_map(move |(next_hop, nlri)| MpReach {
            afi_safi,
            next_hop,
            nlri,
        })
    })
}

pub fn mp_unreach() -> impl Strategy<Value = MpUnreach<RawNlri>> {
    (afi_safi(), raw_nlri()).prop_map(|(afi_safi, withdrawn)| MpUnreach {
        afi_safi,
        withdrawn,
    })
}

/// An UPDATE that carries the well-known attributes its routes need
/// (otherwise decoding reports them missing, RFC 7606 §3d).
pub fn update(wide: bool) -> impl Strategy<Value = Update<RawNlri>> {
    (
        vec(ipv4_net(), 0..4),
        path_attributes(wide),
        option::of(mp_reach()),
        option::of(mp_unreach()),
        vec(ipv4_net(), 0..4),
    )
        .prop_map(|(withdrawn, mut attributes, mp_reach, mp_unreach, nlri)| {
            let reach = !nlri.is_empty() || mp_reach.as_ref().is_some_and(|r| !r.nlri.is_empty());
            if reach {
                attributes.origin.get_or_insert(Origin::Igp);
                attributes.as_path.get_or_insert_with(AsPath::default);
            }
            if !nlri.is_empty() {
                attributes
                    .next_hop
                    .get_or_insert(Ipv4Addr::new(192, 0, 2, 1));
            }
            Update {
                withdrawn,
                attributes,
                mp_reach,
                mp_unreach,
                nlri,
                errors: Vec::new(),
            }
        })
}

pub fn message(wide: bool) -> impl Strategy<Value = Message<RawNlri>> {
    prop_oneof![
        open().prop_map(Message::Open),
        update(wide).prop_map(Message::Update),
        notification().prop_map(Message::Notification),
        Just(Message::Keepalive),
        route_refresh().prop_map(Message::RouteRefresh),
    ]
}

/// Session options with the 4-octet AS setting `wide`.
pub fn options(wide: bool) -> impl Strategy<Value = CodecOptions> {
    any::<bool>().prop_map(move |extended_message| CodecOptions {
        four_octet_as: wide,
        extended_message,
    })
}
