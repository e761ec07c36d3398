//! Decode arbitrary bytes as one BGP message (RawNlri for the MP NLRI). A
//! message that decodes must re-encode (if it fits) and decode again, and
//! from then on encode/decode must be the identity.
#![no_main]

use bytes::BytesMut;
use evpnd_bgp::codec::{decode, try_encode, CodecOptions};
use evpnd_bgp::{Message, RawNlri};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // First byte picks the session options, the rest is the message.
    let Some((&sel, msg)) = data.split_first() else {
        return;
    };
    let opts = CodecOptions {
        four_octet_as: sel & 1 != 0,
        extended_message: sel & 2 != 0,
    };
    let Ok(m) = decode::<RawNlri>(msg, &opts) else {
        return;
    };
    let mut buf = BytesMut::new();
    if try_encode(&m, &opts, &mut buf).is_err() {
        return;
    }
    let again: Message<RawNlri> = match decode(&buf, &opts) {
        Ok(a) => a,
        Err(e) => panic!("re-encoded message does not decode: {e}: {buf:02x?}"),
    };
    // The first round may normalise (dropped attributes, RFC 6793 path
    // merging); after it, encode/decode is the identity on values.
    let mut buf2 = BytesMut::new();
    if try_encode(&again, &opts, &mut buf2).is_ok() {
        match decode::<RawNlri>(&buf2, &opts) {
            Ok(third) => assert_eq!(again, third, "not a fixpoint: {buf2:02x?}"),
            Err(e) => panic!("second re-encoding does not decode: {e}: {buf2:02x?}"),
        }
    }
});
