//! The EVPN NLRI decoder on arbitrary bytes: never panics, and whatever it
//! accepts re-encodes to NLRI that decode to the same routes.
#![no_main]

use evpnd_bgp::{AfiSafi, Nlri};
use evpnd_evpn::nlri::encode_evpn_nlri;
use evpnd_evpn::route::EvpnNlri;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(routes) = EvpnNlri::decode_all(AfiSafi::L2VPN_EVPN, data) {
        let wire = encode_evpn_nlri(&routes);
        assert_eq!(
            wire.len(),
            routes.iter().map(Nlri::encoded_len).sum::<usize>()
        );
        let again = EvpnNlri::decode_all(AfiSafi::L2VPN_EVPN, &wire).expect("re-decodes");
        assert_eq!(again, routes);
        for r in &routes {
            let _ = r.key();
            let _ = r.to_string();
        }
    }
});
