//! Packing many NLRI into as few UPDATEs as fit the session's maximum
//! message size (RFC 4271 §4.1 / RFC 8654).

use super::attr::next_hop_len;
use super::CodecOptions;
use crate::attr::PathAttributes;
use crate::error::EncodeError;
use crate::message::{MpReach, MpUnreach, NextHop, Nlri, Update, HEADER_LEN};
use crate::types::AfiSafi;

/// Header, withdrawn length, attribute length.
const UPDATE_FIXED: usize = HEADER_LEN + 2 + 2;
/// Flags, type, 2-byte length (the MP attributes always use extended length).
const MP_ATTR_HEADER: usize = 4;

/// Greedy split of `nlri` into chunks whose encoded size fits `room`.
fn chunks<N: Nlri>(nlri: &[N], base: usize, max: usize) -> Result<Vec<Vec<N>>, EncodeError> {
    let room = max.saturating_sub(base);
    let mut out = Vec::new();
    let mut cur: Vec<N> = Vec::new();
    let mut used = 0;
    for n in nlri {
        let len = n.encoded_len();
        if len > room {
            return Err(EncodeError::TooLong {
                len: base + len,
                max,
            });
        }
        if used + len > room {
            out.push(std::mem::take(&mut cur));
            used = 0;
        }
        used += len;
        cur.push(n.clone());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

/// UPDATEs announcing `nlri` with `attrs` in MP_REACH_NLRI, each at most the
/// session's maximum message size, in order. Fails only if one NLRI alone
/// cannot fit next to the attributes.
pub fn pack_reach<N: Nlri>(
    afi_safi: AfiSafi,
    next_hop: &NextHop,
    attrs: &PathAttributes,
    nlri: &[N],
    opts: &CodecOptions,
) -> Result<Vec<Update<N>>, EncodeError> {
    // AFI(2) SAFI(1) NH length(1) NH reserved(1)
    let mp_fixed = MP_ATTR_HEADER + 2 + 1 + 1 + next_hop_len(next_hop) + 1;
    let base = UPDATE_FIXED + attrs.encoded_len(opts) + mp_fixed;
    Ok(chunks(nlri, base, opts.max_message_len())?
        .into_iter()
        .map(|nlri| Update {
            attributes: attrs.clone(),
            mp_reach: Some(MpReach {
                afi_safi,
                next_hop: next_hop.clone(),
                nlri,
            }),
            ..Update::default()
        })
        .collect())
}

/// UPDATEs withdrawing `nlri` with MP_UNREACH_NLRI (no other attributes,
/// RFC 4760 §4), each at most the session's maximum message size.
pub fn pack_unreach<N: Nlri>(
    afi_safi: AfiSafi,
    nlri: &[N],
    opts: &CodecOptions,
) -> Result<Vec<Update<N>>, EncodeError> {
    let base = UPDATE_FIXED + MP_ATTR_HEADER + 3;
    Ok(chunks(nlri, base, opts.max_message_len())?
        .into_iter()
        .map(|withdrawn| Update {
            mp_unreach: Some(MpUnreach {
                afi_safi,
                withdrawn,
            }),
            ..Update::default()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode, try_encode};
    use crate::error::NlriError;
    use crate::message::Message;
    use bytes::{BufMut, BytesMut};
    use std::net::{IpAddr, Ipv4Addr};

    /// A test NLRI of a given size: type(1) length(1) body, like EVPN.
    #[derive(Debug, Clone, PartialEq)]
    struct Sized(Vec<u8>);

    impl Nlri for Sized {
        fn decode_all(_: AfiSafi, mut buf: &[u8]) -> Result<Vec<Self>, NlriError> {
            let mut out = Vec::new();
            while !buf.is_empty() {
                let len = *buf.get(1).ok_or(NlriError::Truncated { offset: 0 })? as usize;
                let item = buf
                    .get(..2 + len)
                    .ok_or(NlriError::Truncated { offset: 0 })?;
                out.push(Sized(item.to_vec()));
                buf = &buf[2 + len..];
            }
            Ok(out)
        }
        fn encode(&self, buf: &mut BytesMut) {
            buf.put_slice(&self.0);
        }
        fn encoded_len(&self) -> usize {
            self.0.len()
        }
    }

    fn nlri(count: usize) -> Vec<Sized> {
        (0..count)
            .map(|i| {
                let body = 20 + i % 40; // varying sizes
                let mut v = vec![2, body as u8];
                v.extend((0..body).map(|j| (i * 7 + j) as u8));
                Sized(v)
            })
            .collect()
    }

    fn attrs() -> PathAttributes {
        PathAttributes {
            origin: Some(crate::attr::Origin::Igp),
            as_path: Some(Default::default()),
            local_pref: Some(100),
            ext_communities: vec![crate::attr::ExtCommunity([3, 12, 0, 0, 0, 0, 0, 8])],
            ..Default::default()
        }
    }

    fn check(opts: CodecOptions, updates: &[Update<Sized>], want: &[Sized], reach: bool) {
        let mut got = Vec::new();
        for u in updates {
            let mut buf = BytesMut::new();
            try_encode(&Message::Update(u.clone()), &opts, &mut buf).expect("fits");
            assert!(buf.len() <= opts.max_message_len());
            let Message::Update(d) = decode::<Sized>(&buf, &opts).expect("decodes") else {
                panic!("not an update");
            };
            assert!(d.errors.is_empty(), "{:?}", d.errors);
            if reach {
                got.extend(d.mp_reach.expect("reach").nlri);
            } else {
                got.extend(d.mp_unreach.expect("unreach").withdrawn);
            }
        }
        assert_eq!(got, want);
    }

    #[test]
    fn reach_fills_messages_and_loses_nothing() {
        let nh = NextHop::Ip(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        for ext in [false, true] {
            let opts = CodecOptions {
                four_octet_as: true,
                extended_message: ext,
            };
            let all = nlri(5000);
            let ups = pack_reach(AfiSafi::L2VPN_EVPN, &nh, &attrs(), &all, &opts).unwrap();
            check(opts, &ups, &all, true);
            // Every message but the last is full: the next NLRI would not fit.
            let mut idx = 0;
            for u in &ups[..ups.len() - 1] {
                let n = u.mp_reach.as_ref().unwrap().nlri.len();
                idx += n;
                let mut buf = BytesMut::new();
                try_encode(&Message::Update(u.clone()), &opts, &mut buf).unwrap();
                assert!(buf.len() + all[idx].encoded_len() > opts.max_message_len());
            }
        }
    }

    #[test]
    fn unreach_fills_messages_and_loses_nothing() {
        for ext in [false, true] {
            let opts = CodecOptions {
                four_octet_as: true,
                extended_message: ext,
            };
            let all = nlri(3000);
            let ups = pack_unreach(AfiSafi::L2VPN_EVPN, &all, &opts).unwrap();
            check(opts, &ups, &all, false);
        }
    }

    #[test]
    fn empty_input_gives_no_updates_and_too_big_nlri_fails() {
        let opts = CodecOptions::default();
        assert!(pack_unreach::<Sized>(AfiSafi::L2VPN_EVPN, &[], &opts)
            .unwrap()
            .is_empty());
        let huge = Sized(vec![0; 5000]);
        assert!(matches!(
            pack_unreach(AfiSafi::L2VPN_EVPN, &[huge], &opts),
            Err(EncodeError::TooLong { .. })
        ));
    }
}
