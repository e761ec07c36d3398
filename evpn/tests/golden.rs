//! EVPN NLRI inside UPDATEs captured from FRR 8.4 (testdata/frr-8.4, see
//! docs/captures.md on the bgp-wire branch): decode, check the fields,
//! re-encode byte for byte. The attribute list is walked here so that these
//! tests do not depend on the bgp codec.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use evpnd_bgp::{AfiSafi, ExtCommunity, Nlri, NlriError, PmsiTunnel};
use evpnd_evpn::extcomm::{EvpnExtCommunity, PmsiView, RouteTarget};
use evpnd_evpn::nlri::encode_evpn_nlri;
use evpnd_evpn::route::EvpnNlri;
use evpnd_evpn::{Label, MacAddress, RouteDistinguisher, Vni};

fn load(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/frr-8.4")
        .join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let hex: String = text.split_whitespace().collect();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// (type code, value) of each path attribute of an UPDATE message.
fn attributes(msg: &[u8]) -> Vec<(u8, Vec<u8>)> {
    assert_eq!(msg[18], 2, "not an UPDATE");
    let body = &msg[19..];
    let wlen = u16::from_be_bytes([body[0], body[1]]) as usize;
    let alen = u16::from_be_bytes([body[2 + wlen], body[3 + wlen]]) as usize;
    let mut attrs = &body[4 + wlen..4 + wlen + alen];
    let mut out = Vec::new();
    while !attrs.is_empty() {
        let flags = attrs[0];
        let code = attrs[1];
        let (len, hdr) = if flags & 0x10 != 0 {
            (u16::from_be_bytes([attrs[2], attrs[3]]) as usize, 4)
        } else {
            (attrs[2] as usize, 3)
        };
        out.push((code, attrs[hdr..hdr + len].to_vec()));
        attrs = &attrs[hdr + len..];
    }
    out
}

/// The NLRI field of MP_REACH_NLRI (skipping AFI, SAFI, next hop,
/// reserved) and the next hop.
fn mp_reach(msg: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let (_, v) = attributes(msg)
        .into_iter()
        .find(|(c, _)| *c == 14)
        .expect("MP_REACH_NLRI");
    assert_eq!(&v[..3], &[0, 25, 70]);
    let nhlen = v[3] as usize;
    (v[5 + nhlen..].to_vec(), v[4..4 + nhlen].to_vec())
}

fn mp_unreach(msg: &[u8]) -> Vec<u8> {
    let (_, v) = attributes(msg)
        .into_iter()
        .find(|(c, _)| *c == 15)
        .expect("MP_UNREACH_NLRI");
    assert_eq!(&v[..3], &[0, 25, 70]);
    v[3..].to_vec()
}

fn ext_communities(msg: &[u8]) -> Vec<EvpnExtCommunity> {
    let (_, v) = attributes(msg)
        .into_iter()
        .find(|(c, _)| *c == 16)
        .expect("EXTENDED_COMMUNITIES");
    v.chunks(8)
        .map(|c| {
            let raw = ExtCommunity(c.try_into().unwrap());
            let typed = EvpnExtCommunity::from(raw);
            assert_eq!(ExtCommunity::from(typed), raw, "ext community round trip");
            typed
        })
        .collect()
}

fn roundtrip(field: &[u8]) -> Vec<EvpnNlri> {
    let routes = EvpnNlri::decode_all(AfiSafi::L2VPN_EVPN, field).expect("decodes");
    assert_eq!(
        &encode_evpn_nlri(&routes)[..],
        field,
        "byte-exact re-encoding"
    );
    assert_eq!(
        routes.iter().map(Nlri::encoded_len).sum::<usize>(),
        field.len()
    );
    routes
}

const VTEP_A: Ipv4Addr = Ipv4Addr::new(10, 199, 0, 1);
const VM_MAC: MacAddress = MacAddress([0x02, 0, 0, 0xaa, 0xbb, 0x01]);

fn frr_rd() -> RouteDistinguisher {
    RouteDistinguisher::Ipv4 {
        addr: VTEP_A,
        number: 2,
    }
}

#[test]
fn frr_type3() {
    let msg = load("update-evpn-type3.hex");
    let (field, nh) = mp_reach(&msg);
    assert_eq!(nh, VTEP_A.octets());
    let routes = roundtrip(&field);
    let [EvpnNlri::InclusiveMulticast(r)] = routes[..] else {
        panic!("{routes:?}")
    };
    assert_eq!(r.rd, frr_rd());
    assert_eq!(r.rd.to_string(), "10.199.0.1:2");
    assert_eq!(r.eth_tag.0, 0);
    assert_eq!(r.originator, IpAddr::V4(VTEP_A));
    assert_eq!(
        routes[0].to_string(),
        "10.199.0.1:2 [3]:[0]:[32]:[10.199.0.1]"
    );

    let ecs = ext_communities(&msg);
    assert!(ecs.contains(&EvpnExtCommunity::Encapsulation(8)));
    let rt = EvpnExtCommunity::RouteTarget(RouteTarget::As2 {
        asn: 65000,
        value: 100,
    });
    assert!(ecs.contains(&rt));
    assert_eq!(rt.to_string(), "RT:65000:100");
    assert_eq!(EvpnExtCommunity::Encapsulation(8).to_string(), "ET:8");

    // PMSI tunnel: ingress replication, label = VNI 100 (whole field),
    // endpoint = VTEP.
    let (_, pmsi) = attributes(&msg)
        .into_iter()
        .find(|(c, _)| *c == 22)
        .expect("PMSI");
    let p = PmsiTunnel {
        flags: pmsi[0],
        tunnel_type: pmsi[1],
        label: u32::from_be_bytes([0, pmsi[2], pmsi[3], pmsi[4]]),
        tunnel_id: Bytes::copy_from_slice(&pmsi[5..]),
    };
    let v = PmsiView::new(&p);
    assert!(v.is_ingress_replication());
    assert_eq!(v.vni(), Vni::new(100).unwrap());
    assert_eq!(v.endpoint, Some(IpAddr::V4(VTEP_A)));
    assert_eq!(
        PmsiView::ingress_replication(Vni::new(100).unwrap(), IpAddr::V4(VTEP_A)),
        p
    );
}

#[test]
fn frr_type2_mac() {
    let msg = load("update-evpn-type2-mac.hex");
    let routes = roundtrip(&mp_reach(&msg).0);
    let [EvpnNlri::MacIp(r)] = routes[..] else {
        panic!("{routes:?}")
    };
    assert_eq!(r.rd, frr_rd());
    assert_eq!(r.mac, VM_MAC);
    assert_eq!(r.ip, None);
    assert_eq!(r.label1, Label::new(100));
    assert_eq!(r.label1.vni().get(), 100);
    assert_eq!(r.label2, None);
    assert_eq!(
        routes[0].to_string(),
        "10.199.0.1:2 [2]:[0]:[48]:[02:00:00:aa:bb:01]"
    );
}

#[test]
fn frr_type2_macip() {
    let msg = load("update-evpn-type2-macip.hex");
    let routes = roundtrip(&mp_reach(&msg).0);
    let [EvpnNlri::MacIp(r)] = routes[..] else {
        panic!("{routes:?}")
    };
    assert_eq!(r.mac, VM_MAC);
    assert_eq!(r.ip, Some(IpAddr::V4(Ipv4Addr::new(192, 168, 100, 10))));
    assert_eq!(r.label1.vni().get(), 100);
}

#[test]
fn frr_type2_both_in_one_update() {
    let msg = load("update-evpn-type2-mac-type2-macip.hex");
    let routes = roundtrip(&mp_reach(&msg).0);
    assert_eq!(routes.len(), 2);
    assert!(routes
        .iter()
        .all(|r| matches!(r, EvpnNlri::MacIp(m) if m.mac == VM_MAC)));
}

#[test]
fn frr_withdraws() {
    for (file, ip) in [
        ("update-evpn-withdraw-type2-mac.hex", None),
        (
            "update-evpn-withdraw-type2-macip.hex",
            Some(IpAddr::V4(Ipv4Addr::new(192, 168, 100, 10))),
        ),
    ] {
        let msg = load(file);
        let routes = roundtrip(&mp_unreach(&msg));
        let [EvpnNlri::MacIp(r)] = routes[..] else {
            panic!("{routes:?}")
        };
        assert_eq!((r.mac, r.ip), (VM_MAC, ip), "{file}");
        // FRR sends label 0 in withdraws: the key ignores labels.
        let announced = EvpnNlri::MacIp(evpnd_evpn::route::MacIpRoute {
            label1: Label::new(100),
            ..r
        });
        assert_eq!(routes[0].key(), announced.key());
    }
}

#[test]
fn frr_eor_has_empty_evpn_unreach() {
    let msg = load("eor-evpn.hex");
    assert!(mp_unreach(&msg).is_empty());
    assert_eq!(roundtrip(&[]), vec![]);
}

// --- Hand-built vectors (RFC 7432 §7, RFC 9136 §3.1) for what FRR does not
// emit here.

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn hand_type1_ethernet_ad() {
    let v = hex("01 19  0000fde800000064  00112233445566778899  ffffffff  000064");
    let routes = roundtrip(&v);
    let [EvpnNlri::EthernetAd(r)] = routes[..] else {
        panic!()
    };
    assert_eq!(
        r.rd,
        RouteDistinguisher::As2 {
            asn: 65000,
            number: 100
        }
    );
    assert_eq!(r.esi.0[9], 0x99);
    assert_eq!(r.eth_tag.0, u32::MAX);
    assert_eq!(r.label.get(), 100);
}

#[test]
fn hand_type4_ethernet_segment_v4_v6() {
    let v = hex("04 17  00020000fde80001  00112233445566778899  20 0a000001");
    let routes = roundtrip(&v);
    let [EvpnNlri::EthernetSegment(r)] = routes[..] else {
        panic!()
    };
    assert_eq!(
        r.rd,
        RouteDistinguisher::As4 {
            asn: 65000,
            number: 1
        }
    );
    assert_eq!(r.originator, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
    let v6 =
        hex("04 23  00010a0000010001  00112233445566778899  80 20010db8000000000000000000000001");
    let routes = roundtrip(&v6);
    assert!(matches!(routes[..], [EvpnNlri::EthernetSegment(r)] if r.originator.is_ipv6()));
}

#[test]
fn hand_type5_ip_prefix_v4_v6() {
    let v = hex(
        "05 22  00010a0000010005  00000000000000000000  00000000  18 c0a80100  00000000  001388",
    );
    let routes = roundtrip(&v);
    let [EvpnNlri::IpPrefix(r)] = routes[..] else {
        panic!()
    };
    assert_eq!(r.prefix.to_string(), "192.168.1.0/24");
    assert_eq!(r.label.get(), 5000);
    let v6 = hex(
        "05 3a  00010a0000010005  00000000000000000000  00000000  40 20010db8000100000000000000000000  00000000000000000000000000000000  001388",
    );
    let routes = roundtrip(&v6);
    assert!(
        matches!(routes[..], [EvpnNlri::IpPrefix(r)] if r.prefix.to_string() == "2001:db8:1::/64")
    );
    // Host bits set in the prefix are kept as received.
    let host = hex(
        "05 22  00010a0000010005  00000000000000000000  00000000  18 c0a80101  00000000  001388",
    );
    roundtrip(&host);
}

#[test]
fn hand_type2_v6_with_label2() {
    let v = hex(
        "02 34  00010a0000010002  00000000000000000000  00000000  30 020000aabb01  80 20010db8000000000000000000000010  000064  001388",
    );
    let routes = roundtrip(&v);
    let [EvpnNlri::MacIp(r)] = routes[..] else {
        panic!()
    };
    assert_eq!(r.label2, Some(Label::new(5000)));
    assert!(r.ip.is_some_and(|ip| ip.is_ipv6()));
}

#[test]
fn unknown_route_type_is_skipped() {
    let t3 = hex("03 11  00010a0000010002  00000000  20 0a000001");
    let mut v = hex("07 03 aabbcc");
    v.extend(&t3);
    v.extend(hex("ff 00"));
    let routes = EvpnNlri::decode_all(AfiSafi::L2VPN_EVPN, &v).unwrap();
    assert_eq!(routes.len(), 1);
    assert_eq!(&encode_evpn_nlri(&routes)[..], &t3[..]);
}

#[test]
fn malformed_lengths_report_offsets() {
    let t3 = hex("03 11  00010a0000010002  00000000  20 0a000001");
    // Route length runs past the buffer.
    let mut v = t3.clone();
    v.extend(hex("02 40 0000"));
    assert_eq!(
        EvpnNlri::decode_all(AfiSafi::L2VPN_EVPN, &v),
        Err(NlriError::BadLength {
            offset: 20,
            len: 64
        })
    );
    // A lone type byte.
    let mut v = t3.clone();
    v.push(2);
    assert_eq!(
        EvpnNlri::decode_all(AfiSafi::L2VPN_EVPN, &v),
        Err(NlriError::Truncated { offset: 19 })
    );
    // Type 3 with an IP length of 24.
    let v = hex("03 10  00010a0000010002  00000000  18 0a0000");
    assert_eq!(
        EvpnNlri::decode_all(AfiSafi::L2VPN_EVPN, &v),
        Err(NlriError::Invalid {
            offset: 14,
            what: "IP address length is not 32 or 128"
        })
    );
    // Type 3 with a trailing byte.
    let v = hex("03 12  00010a0000010002  00000000  20 0a000001 00");
    assert_eq!(
        EvpnNlri::decode_all(AfiSafi::L2VPN_EVPN, &v),
        Err(NlriError::BadLength {
            offset: 19,
            len: 18
        })
    );
    // Type 2 with MAC length 47.
    let v =
        hex("02 21  00010a0000010002  00000000000000000000  00000000  2f 020000aabb01  00  000064");
    assert!(matches!(
        EvpnNlri::decode_all(AfiSafi::L2VPN_EVPN, &v),
        Err(NlriError::Invalid { offset: 24, .. })
    ));
    // Type 2 with IP length 24 (points at the length byte).
    let v = hex("02 24  00010a0000010002  00000000000000000000  00000000  30 020000aabb01  18 c0a801  000064");
    assert_eq!(
        EvpnNlri::decode_all(AfiSafi::L2VPN_EVPN, &v),
        Err(NlriError::Invalid {
            offset: 31,
            what: "IP address length is not 0, 32 or 128"
        })
    );
    // Type 2 cut inside the MAC.
    let v = hex("02 1c  00010a0000010002  00000000000000000000  00000000  30 020000aabb");
    assert_eq!(
        EvpnNlri::decode_all(AfiSafi::L2VPN_EVPN, &v),
        Err(NlriError::Truncated { offset: 25 })
    );
    // Type 5 with prefix length 33 for IPv4.
    let v = hex(
        "05 22  00010a0000010005  00000000000000000000  00000000  21 c0a80100  00000000  001388",
    );
    assert!(matches!(
        EvpnNlri::decode_all(AfiSafi::L2VPN_EVPN, &v),
        Err(NlriError::Invalid { offset: 24, .. })
    ));
    // Wrong AFI/SAFI.
    assert!(matches!(
        EvpnNlri::decode_all(AfiSafi::IPV4_UNICAST, &t3),
        Err(NlriError::UnsupportedAfiSafi { .. })
    ));
}

#[test]
fn encode_appends() {
    let t3 = hex("03 11  00010a0000010002  00000000  20 0a000001");
    let r = EvpnNlri::decode_all(AfiSafi::L2VPN_EVPN, &t3).unwrap();
    let mut buf = BytesMut::from(&b"xy"[..]);
    r[0].encode(&mut buf);
    assert_eq!(&buf[..2], b"xy");
    assert_eq!(&buf[2..], &t3[..]);
}
