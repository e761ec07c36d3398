//! End to end without sockets: the UPDATEs FRR 8.4 sent (testdata/frr-8.4,
//! in wire order), decoded by the bgp codec with the EVPN NLRI codec,
//! re-encoded byte for byte, then fed to the RIB: exact intents.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Instant;

use bytes::BytesMut;
use evpnd_bgp::codec::{decode, encode, CodecOptions};
use evpnd_bgp::Message;
use evpnd_evpn::rib::{DupDetectConfig, Rib, RibConfig, RibInput, VniConfig};
use evpnd_evpn::{EvpnNlri, Intent, MacAddress, Vni};

/// What FRR negotiated in the capture: 4-octet AS, extended message.
const OPTS: CodecOptions = CodecOptions {
    four_octet_as: true,
    extended_message: true,
};

fn load(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/frr-8.4")
        .join(format!("{name}.hex"));
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let hex: String = text.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

fn update(name: &str) -> evpnd_bgp::Update<EvpnNlri> {
    let bytes = load(name);
    let msg: Message<EvpnNlri> = decode(&bytes, &OPTS).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut again = BytesMut::new();
    encode(&msg, &OPTS, &mut again);
    assert_eq!(&again[..], &bytes[..], "{name}: byte-exact re-encoding");
    match msg {
        Message::Update(u) => u,
        other => panic!("{name}: not an UPDATE: {other:?}"),
    }
}

#[test]
fn frr_capture_drives_the_expected_intents() {
    let vtep_a = IpAddr::V4(Ipv4Addr::new(10, 199, 0, 1));
    let peer = vtep_a; // the capture is a direct iBGP session with A
    let vni = Vni::new(100).unwrap();
    let mac = MacAddress([0x02, 0, 0, 0xaa, 0xbb, 0x01]);
    let host = IpAddr::V4(Ipv4Addr::new(192, 168, 100, 10));
    // We play B (10.199.0.2) in AS 65000 with FRR's auto RTs.
    let router_id = Ipv4Addr::new(10, 199, 0, 2);
    let mut rib = Rib::new(RibConfig {
        router_id,
        asn: 65000,
        local_vtep: IpAddr::V4(router_id),
        dup_detect: DupDetectConfig::default(),
    });
    let now = Instant::now();
    let mut run = |i: RibInput| rib.handle(i, now).intents;
    run(RibInput::VniAdd(VniConfig::auto(vni, 65000, router_id, 1)));
    run(RibInput::PeerUp {
        peer,
        router_id: Ipv4Addr::new(10, 199, 0, 1),
        asn: 65000,
    });
    let up = |name: &str| RibInput::Update {
        peer,
        update: update(name),
    };
    assert_eq!(
        run(up("update-evpn-type3")),
        vec![Intent::FloodAdd { vni, vtep: vtep_a }]
    );
    assert_eq!(run(up("eor-evpn")), vec![]);
    assert_eq!(
        run(up("update-evpn-type2-mac")),
        vec![Intent::RemoteMacUpsert {
            vni,
            mac,
            vtep: vtep_a
        }]
    );
    assert_eq!(
        run(up("update-evpn-type2-macip")),
        vec![Intent::NeighborUpsert { vni, ip: host, mac }]
    );
    // After a route refresh FRR re-sends both and the type-3: no change.
    assert_eq!(run(up("update-evpn-type2-mac-type2-macip")), vec![]);
    assert_eq!(run(up("update-evpn-type3")), vec![]);
    assert_eq!(
        run(up("update-evpn-withdraw-type2-macip")),
        vec![Intent::NeighborRemove { vni, ip: host }]
    );
    assert_eq!(
        run(up("update-evpn-withdraw-type2-mac")),
        vec![Intent::RemoteMacRemove { vni, mac }]
    );
    // Session lost without graceful restart: the flood entry goes.
    assert_eq!(
        run(RibInput::PeerDown {
            peer,
            graceful_restart: None
        }),
        vec![Intent::FloodRemove { vni, vtep: vtep_a }]
    );
}
