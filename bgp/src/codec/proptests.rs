//! Round trips: decode(encode(m)) == m for every message type and
//! attribute, on 2-octet and 4-octet sessions; and decoding arbitrary or
//! mutated bytes never panics.

use bytes::BytesMut;
use proptest::prelude::*;

use super::arbitrary::*;
use super::{decode, frame_len, try_encode, CodecOptions};
use crate::message::{Message, RawNlri};

fn round_trip(m: &Message<RawNlri>, opts: &CodecOptions) -> Result<(), TestCaseError> {
    let mut buf = BytesMut::new();
    try_encode(m, opts, &mut buf).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(frame_len(&buf, opts), Ok(Some(buf.len())));
    let back: Message<RawNlri> =
        decode(&buf, opts).map_err(|e| TestCaseError::fail(format!("{e}: {buf:02x?}")))?;
    prop_assert_eq!(&back, m);
    let mut again = BytesMut::new();
    try_encode(&back, opts, &mut again).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(again, buf);
    Ok(())
}

/// Decode; if accepted, the value must re-encode (when it fits) and decode
/// again, and after that first normalising round encode/decode is the
/// identity (the fuzz target checks the same).
pub(crate) fn decode_stable(bytes: &[u8], opts: &CodecOptions) -> Result<(), TestCaseError> {
    let Ok(m) = decode::<RawNlri>(bytes, opts) else {
        return Ok(());
    };
    let mut buf = BytesMut::new();
    if try_encode(&m, opts, &mut buf).is_err() {
        return Ok(());
    }
    let again = decode::<RawNlri>(&buf, opts);
    prop_assert!(again.is_ok(), "{:?} from {:02x?}", again, buf);
    let Ok(again) = again else { return Ok(()) };
    let mut buf2 = BytesMut::new();
    if try_encode(&again, opts, &mut buf2).is_ok() {
        let third = decode::<RawNlri>(&buf2, opts);
        prop_assert_eq!(third, Ok(again));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn message_round_trip_4_octet(m in message(true), opts in options(true)) {
        round_trip(&m, &opts)?;
    }

    #[test]
    fn message_round_trip_2_octet(m in message(false), opts in options(false)) {
        round_trip(&m, &opts)?;
    }

    #[test]
    fn open_round_trip(o in open()) {
        round_trip(&Message::Open(o), &CodecOptions::default())?;
    }

    #[test]
    fn update_round_trip(u in update(true), opts in options(true)) {
        round_trip(&Message::Update(u), &opts)?;
    }

    #[test]
    fn update_round_trip_2_octet(u in update(false), opts in options(false)) {
        // 4-octet ASNs on a 2-octet session go through AS_TRANS + AS4_PATH.
        round_trip(&Message::Update(u), &opts)?;
    }

    #[test]
    fn attributes_round_trip_2_octet(a in path_attributes(false)) {
        let u = crate::message::Update::<RawNlri> { attributes: a, ..Default::default() };
        round_trip(&Message::Update(u), &CodecOptions { four_octet_as: false, extended_message: false })?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..200), t in 1u8..=5, wide in any::<bool>()) {
        let mut m = vec![0xff; 16];
        m.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
        m.push(t);
        m.extend_from_slice(&body);
        let opts = CodecOptions { four_octet_as: wide, extended_message: false };
        decode_stable(&m, &opts)?;
    }

    #[test]
    fn mutated_messages_never_panic(
        m in message(true),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        wide in any::<bool>(),
    ) {
        let opts = CodecOptions { four_octet_as: wide, extended_message: false };
        let mut buf = BytesMut::new();
        if try_encode(&m, &opts, &mut buf).is_ok() {
            let mut bytes = buf.to_vec();
            // keep the header intact so the body parsers get exercised
            for (i, v) in flips {
                if bytes.len() > 19 {
                    let at = 19 + i.index(bytes.len() - 19);
                    bytes[at] = v;
                }
            }
            decode_stable(&bytes, &opts)?;
        }
    }
}
