//! Property tests: every route type and extended community survives
//! encode → decode → encode unchanged; the decoder never panics.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use evpnd_bgp::{AfiSafi, ExtCommunity, Nlri};
use evpnd_evpn::extcomm::{EvpnExtCommunity, MacMobility, RouteTarget};
use evpnd_evpn::nlri::{decode_evpn_nlri, encode_evpn_nlri};
use evpnd_evpn::route::*;
use evpnd_evpn::{Esi, EthernetTag, Label, MacAddress, RouteDistinguisher};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use proptest::prelude::*;

fn rd() -> impl Strategy<Value = RouteDistinguisher> {
    prop_oneof![
        (any::<u16>(), any::<u32>())
            .prop_map(|(asn, number)| RouteDistinguisher::As2 { asn, number }),
        (any::<u32>(), any::<u16>()).prop_map(|(a, number)| RouteDistinguisher::Ipv4 {
            addr: Ipv4Addr::from(a),
            number
        }),
        (any::<u32>(), any::<u16>())
            .prop_map(|(asn, number)| RouteDistinguisher::As4 { asn, number }),
        (3u16.., any::<[u8; 6]>()).prop_map(|(t, rest)| {
            let mut b = [0u8; 8];
            b[..2].copy_from_slice(&t.to_be_bytes());
            b[2..].copy_from_slice(&rest);
            RouteDistinguisher::Other(b)
        }),
    ]
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
        any::<u128>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
    ]
}

fn label() -> impl Strategy<Value = Label> {
    (0u32..=Label::MAX).prop_map(Label::new)
}

fn esi() -> impl Strategy<Value = Esi> {
    any::<[u8; 10]>().prop_map(Esi)
}

fn route() -> impl Strategy<Value = EvpnNlri> {
    prop_oneof![
        (rd(), esi(), any::<u32>(), label()).prop_map(|(rd, esi, t, label)| {
            EvpnNlri::EthernetAd(EthernetAdRoute {
                rd,
                esi,
                eth_tag: EthernetTag(t),
                label,
            })
        }),
        (
            rd(),
            esi(),
            any::<u32>(),
            any::<[u8; 6]>(),
            proptest::option::of(ip()),
            label(),
            proptest::option::of(label())
        )
            .prop_map(|(rd, esi, t, mac, ip, label1, label2)| {
                EvpnNlri::MacIp(MacIpRoute {
                    rd,
                    esi,
                    eth_tag: EthernetTag(t),
                    mac: MacAddress(mac),
                    ip,
                    label1,
                    label2,
                })
            }),
        (rd(), any::<u32>(), ip()).prop_map(|(rd, t, originator)| {
            EvpnNlri::InclusiveMulticast(InclusiveMulticastRoute {
                rd,
                eth_tag: EthernetTag(t),
                originator,
            })
        }),
        (rd(), esi(), ip()).prop_map(|(rd, esi, originator)| {
            EvpnNlri::EthernetSegment(EthernetSegmentRoute {
                rd,
                esi,
                originator,
            })
        }),
        (
            rd(),
            esi(),
            any::<u32>(),
            any::<bool>(),
            any::<u128>(),
            any::<u128>(),
            0u8..=128,
            label()
        )
            .prop_map(|(rd, esi, t, v6, p, g, len, label)| {
                let (prefix, gateway) = if v6 {
                    (
                        IpNet::V6(Ipv6Net::new(Ipv6Addr::from(p), len).unwrap()),
                        IpAddr::V6(Ipv6Addr::from(g)),
                    )
                } else {
                    (
                        IpNet::V4(Ipv4Net::new(Ipv4Addr::from(p as u32), len % 33).unwrap()),
                        IpAddr::V4(Ipv4Addr::from(g as u32)),
                    )
                };
                EvpnNlri::IpPrefix(IpPrefixRoute {
                    rd,
                    esi,
                    eth_tag: EthernetTag(t),
                    prefix,
                    gateway,
                    label,
                })
            }),
    ]
}

fn ext_community() -> impl Strategy<Value = EvpnExtCommunity> {
    prop_oneof![
        (any::<u16>(), any::<u32>()).prop_map(|(asn, value)| EvpnExtCommunity::RouteTarget(
            RouteTarget::As2 { asn, value }
        )),
        (any::<u32>(), any::<u16>()).prop_map(|(a, value)| EvpnExtCommunity::RouteTarget(
            RouteTarget::Ipv4 {
                addr: Ipv4Addr::from(a),
                value
            }
        )),
        (any::<u32>(), any::<u16>()).prop_map(|(asn, value)| EvpnExtCommunity::RouteTarget(
            RouteTarget::As4 { asn, value }
        )),
        any::<u16>().prop_map(EvpnExtCommunity::Encapsulation),
        (any::<u8>(), any::<u32>()).prop_map(|(flags, sequence)| EvpnExtCommunity::MacMobility(
            MacMobility { flags, sequence }
        )),
        Just(EvpnExtCommunity::DefaultGateway),
        any::<[u8; 6]>().prop_map(|m| EvpnExtCommunity::RoutersMac(MacAddress(m))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn route_roundtrip(routes in proptest::collection::vec(route(), 1..8)) {
        let wire = encode_evpn_nlri(&routes);
        prop_assert_eq!(wire.len(), routes.iter().map(Nlri::encoded_len).sum::<usize>());
        let back = EvpnNlri::decode_all(AfiSafi::L2VPN_EVPN, &wire).unwrap();
        prop_assert_eq!(&back, &routes);
        prop_assert_eq!(&encode_evpn_nlri(&back)[..], &wire[..]);
        for r in &routes {
            prop_assert_eq!(r.key().route_type(), r.route_type());
        }
    }

    #[test]
    fn decoder_never_panics_and_reencodes_what_it_accepts(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(routes) = decode_evpn_nlri(&bytes) {
            // What was accepted re-encodes to the input minus skipped
            // unknown types: each accepted route re-decodes to itself.
            let wire = encode_evpn_nlri(&routes);
            prop_assert_eq!(decode_evpn_nlri(&wire).unwrap(), routes);
        }
    }

    #[test]
    fn typed_ext_community_roundtrip(ec in ext_community()) {
        let raw = ExtCommunity::from(ec);
        prop_assert_eq!(EvpnExtCommunity::from(raw), ec);
    }

    #[test]
    fn raw_ext_community_roundtrip(b in any::<[u8; 8]>()) {
        let raw = ExtCommunity(b);
        prop_assert_eq!(ExtCommunity::from(EvpnExtCommunity::from(raw)), raw);
    }

    #[test]
    fn rd_roundtrip(b in any::<[u8; 8]>()) {
        prop_assert_eq!(RouteDistinguisher::from_bytes(b).to_bytes(), b);
    }
}

#[test]
fn ext_community_display() {
    assert_eq!(
        EvpnExtCommunity::MacMobility(MacMobility::new(5, true)).to_string(),
        "MM:5, sticky MAC"
    );
    assert_eq!(
        EvpnExtCommunity::MacMobility(MacMobility::new(5, false)).to_string(),
        "MM:5"
    );
    assert_eq!(
        EvpnExtCommunity::RouteTarget(RouteTarget::Ipv4 {
            addr: Ipv4Addr::new(10, 0, 0, 1),
            value: 7
        })
        .to_string(),
        "RT:10.0.0.1:7"
    );
    assert_eq!(
        EvpnExtCommunity::RoutersMac(MacAddress([2, 0, 0, 0, 0, 1])).to_string(),
        "Rmac:02:00:00:00:00:01"
    );
}

#[test]
fn route_target_derivations() {
    use evpnd_evpn::extcomm::ImportRt;
    use evpnd_evpn::Vni;
    let vni = Vni::new(10100).unwrap();
    // FRR auto: (ASN & 0xffff):VNI, even for a 4-octet ASN.
    assert_eq!(
        RouteTarget::auto(4_200_000_001, vni),
        RouteTarget::As2 {
            asn: (4_200_000_001u32 & 0xffff) as u16,
            value: 10100
        }
    );
    // FRR imports *:VNI: any ASN.
    let imp = ImportRt::auto(vni);
    assert!(imp.matches(&RouteTarget::As2 {
        asn: 65001,
        value: 10100
    }));
    assert!(imp.matches(&RouteTarget::As4 {
        asn: 4_200_000_001,
        value: 10100
    }));
    assert!(!imp.matches(&RouteTarget::As2 {
        asn: 65001,
        value: 10101
    }));
    // FRR masks the type too: an IPv4-type RT with the VNI matches.
    assert!(imp.matches(&RouteTarget::Ipv4 {
        addr: Ipv4Addr::new(1, 2, 3, 4),
        value: 10100
    }));
    // RFC 8365 §5.1.2.1: A=0, type 1 (VXLAN), D-ID, VNI.
    let rt = RouteTarget::rfc8365(65000, 2, vni, false);
    assert_eq!(
        ExtCommunity::from(rt).0,
        [0x00, 0x02, 0xfd, 0xe8, 0x12, 0x00, 0x27, 0x74]
    );
    let rt = RouteTarget::rfc8365(65000, 0, vni, true);
    assert_eq!(ExtCommunity::from(rt).0[4], 0x90);
}
