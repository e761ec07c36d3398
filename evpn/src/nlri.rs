//! Wire codec of EVPN NLRI (AFI 25 / SAFI 70): route type (1), length (1),
//! body. Decoding then encoding is byte-exact for every accepted NLRI.
//!
//! Unknown route types are skipped by their length and logged (RFC 7606
//! §5.4). A length that does not fit the buffer or the route type is an
//! [`NlriError`] with the byte offset inside the NLRI field (RFC 7606 §5.3:
//! the caller resets the session or disables the AFI/SAFI).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::{BufMut, BytesMut};
use evpnd_bgp::{AfiSafi, Nlri, NlriError};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::route::{
    route_type, EthernetAdRoute, EthernetSegmentRoute, EvpnNlri, InclusiveMulticastRoute,
    IpPrefixRoute, MacIpRoute,
};
use crate::types::{Esi, EthernetTag, Label, MacAddress, RouteDistinguisher};

/// A bounds-checked reader over one route body; offsets are absolute within
/// the NLRI field so that errors point at the faulty byte.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    fn offset(&self) -> usize {
        self.base + self.pos
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], NlriError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(NlriError::Truncated {
                offset: self.offset(),
            }),
        }
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], NlriError> {
        let s = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, NlriError> {
        Ok(self.array::<1>()?[0])
    }
    fn rd(&mut self) -> Result<RouteDistinguisher, NlriError> {
        Ok(RouteDistinguisher::from_bytes(self.array()?))
    }
    fn esi(&mut self) -> Result<Esi, NlriError> {
        Ok(Esi(self.array()?))
    }
    fn eth_tag(&mut self) -> Result<EthernetTag, NlriError> {
        Ok(EthernetTag(u32::from_be_bytes(self.array()?)))
    }
    fn label(&mut self) -> Result<Label, NlriError> {
        Ok(Label::from_bytes(self.array()?))
    }
    /// A length byte in bits (0 allowed only if `optional`) and the IP
    /// address that follows; errors point at the length byte.
    fn len_and_ip(&mut self, optional: bool) -> Result<Option<IpAddr>, NlriError> {
        let at = self.offset();
        match self.u8()? {
            0 if optional => Ok(None),
            32 => Ok(Some(IpAddr::V4(Ipv4Addr::from(self.array::<4>()?)))),
            128 => Ok(Some(IpAddr::V6(Ipv6Addr::from(self.array::<16>()?)))),
            _ => Err(NlriError::Invalid {
                offset: at,
                what: if optional {
                    "IP address length is not 0, 32 or 128"
                } else {
                    "IP address length is not 32 or 128"
                },
            }),
        }
    }
    fn ip(&mut self) -> Result<IpAddr, NlriError> {
        match self.len_and_ip(false)? {
            Some(ip) => Ok(ip),
            // len_and_ip(false) never returns None.
            None => Err(NlriError::Invalid {
                offset: self.offset(),
                what: "missing IP address",
            }),
        }
    }
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    fn done(&self) -> Result<(), NlriError> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(NlriError::BadLength {
                offset: self.offset(),
                len: self.buf.len(),
            })
        }
    }
}

/// Decode the body of one route of a known type. `base` is the offset of
/// the body in the NLRI field. `Ok(None)` for an unknown type.
fn decode_body(rtype: u8, body: &[u8], base: usize) -> Result<Option<EvpnNlri>, NlriError> {
    let mut r = Reader {
        buf: body,
        pos: 0,
        base,
    };
    let route = match rtype {
        route_type::ETHERNET_AD => EvpnNlri::EthernetAd(EthernetAdRoute {
            rd: r.rd()?,
            esi: r.esi()?,
            eth_tag: r.eth_tag()?,
            label: r.label()?,
        }),
        route_type::MAC_IP => {
            let rd = r.rd()?;
            let esi = r.esi()?;
            let eth_tag = r.eth_tag()?;
            let at = r.offset();
            if r.u8()? != 48 {
                return Err(NlriError::Invalid {
                    offset: at,
                    what: "MAC address length is not 48",
                });
            }
            let mac = MacAddress(r.array()?);
            let ip = r.len_and_ip(true)?;
            let label1 = r.label()?;
            let label2 = match r.remaining() {
                0 => None,
                3 => Some(r.label()?),
                _ => {
                    return Err(NlriError::BadLength {
                        offset: base.saturating_sub(1),
                        len: body.len(),
                    })
                }
            };
            EvpnNlri::MacIp(MacIpRoute {
                rd,
                esi,
                eth_tag,
                mac,
                ip,
                label1,
                label2,
            })
        }
        route_type::INCLUSIVE_MULTICAST => {
            let rd = r.rd()?;
            let eth_tag = r.eth_tag()?;
            EvpnNlri::InclusiveMulticast(InclusiveMulticastRoute {
                rd,
                eth_tag,
                originator: r.ip()?,
            })
        }
        route_type::ETHERNET_SEGMENT => {
            let rd = r.rd()?;
            let esi = r.esi()?;
            EvpnNlri::EthernetSegment(EthernetSegmentRoute {
                rd,
                esi,
                originator: r.ip()?,
            })
        }
        route_type::IP_PREFIX => {
            // RFC 9136 §3.1: the family comes from the route length (34
            // for IPv4, 58 for IPv6), not from the prefix length.
            let v6 = match body.len() {
                34 => false,
                58 => true,
                len => {
                    return Err(NlriError::BadLength {
                        offset: base.saturating_sub(1),
                        len,
                    })
                }
            };
            let rd = r.rd()?;
            let esi = r.esi()?;
            let eth_tag = r.eth_tag()?;
            let at = r.offset();
            let plen = r.u8()?;
            let bad_plen = NlriError::Invalid {
                offset: at,
                what: "IP prefix length too long for the address family",
            };
            let (prefix, gateway) = if v6 {
                let p = Ipv6Addr::from(r.array::<16>()?);
                let gw = Ipv6Addr::from(r.array::<16>()?);
                let net = Ipv6Net::new(p, plen).map_err(|_| bad_plen)?;
                (IpNet::V6(net), IpAddr::V6(gw))
            } else {
                let p = Ipv4Addr::from(r.array::<4>()?);
                let gw = Ipv4Addr::from(r.array::<4>()?);
                let net = Ipv4Net::new(p, plen).map_err(|_| bad_plen)?;
                (IpNet::V4(net), IpAddr::V4(gw))
            };
            EvpnNlri::IpPrefix(IpPrefixRoute {
                rd,
                esi,
                eth_tag,
                prefix,
                gateway,
                label: r.label()?,
            })
        }
        _ => return Ok(None),
    };
    r.done()?;
    Ok(Some(route))
}

/// Decode every EVPN NLRI in an MP_REACH / MP_UNREACH NLRI field.
pub fn decode_evpn_nlri(buf: &[u8]) -> Result<Vec<EvpnNlri>, NlriError> {
    // A type-2 route is at least 35 bytes: a cheap upper bound on the count.
    let mut out = Vec::with_capacity(buf.len() / 35 + 1);
    let mut unknown: Option<(u8, usize, usize)> = None; // (first type, its offset, count)
    let mut pos = 0;
    while pos < buf.len() {
        let (Some(&rtype), Some(&len)) = (buf.get(pos), buf.get(pos + 1)) else {
            return Err(NlriError::Truncated { offset: pos });
        };
        let start = pos + 2;
        let end = start + len as usize;
        let Some(body) = buf.get(start..end) else {
            return Err(NlriError::BadLength {
                offset: pos + 1,
                len: len as usize,
            });
        };
        match decode_body(rtype, body, start)? {
            Some(route) => out.push(route),
            // RFC 7606 §5.4: unknown route type, skip it by its length.
            None => match &mut unknown {
                Some((_, _, n)) => *n += 1,
                None => unknown = Some((rtype, pos, 1)),
            },
        }
        pos = end;
    }
    if let Some((route_type, offset, count)) = unknown {
        // One line per NLRI field, not per route: a peer can send many.
        tracing::warn!(
            route_type,
            offset,
            count,
            "discarded EVPN NLRI of unknown route type"
        );
    }
    Ok(out)
}

fn put_ip(buf: &mut BytesMut, ip: &IpAddr) {
    match ip {
        IpAddr::V4(a) => buf.put_slice(&a.octets()),
        IpAddr::V6(a) => buf.put_slice(&a.octets()),
    }
}

fn ip_bytes(ip: &IpAddr) -> usize {
    match ip {
        IpAddr::V4(_) => 4,
        IpAddr::V6(_) => 16,
    }
}

impl EvpnNlri {
    /// Length of the route body (the NLRI length byte).
    pub fn body_len(&self) -> usize {
        match self {
            EvpnNlri::EthernetAd(_) => 8 + 10 + 4 + 3,
            EvpnNlri::MacIp(r) => {
                8 + 10
                    + 4
                    + 1
                    + 6
                    + 1
                    + r.ip.as_ref().map_or(0, ip_bytes)
                    + 3
                    + if r.label2.is_some() { 3 } else { 0 }
            }
            EvpnNlri::InclusiveMulticast(r) => 8 + 4 + 1 + ip_bytes(&r.originator),
            EvpnNlri::EthernetSegment(r) => 8 + 10 + 1 + ip_bytes(&r.originator),
            EvpnNlri::IpPrefix(r) => match r.prefix {
                IpNet::V4(_) => 34,
                IpNet::V6(_) => 58,
            },
        }
    }

    fn encode_body(&self, buf: &mut BytesMut) {
        match self {
            EvpnNlri::EthernetAd(r) => {
                buf.put_slice(&r.rd.to_bytes());
                buf.put_slice(&r.esi.0);
                buf.put_u32(r.eth_tag.0);
                buf.put_slice(&r.label.to_bytes());
            }
            EvpnNlri::MacIp(r) => {
                buf.put_slice(&r.rd.to_bytes());
                buf.put_slice(&r.esi.0);
                buf.put_u32(r.eth_tag.0);
                buf.put_u8(48);
                buf.put_slice(&r.mac.0);
                match &r.ip {
                    None => buf.put_u8(0),
                    Some(ip) => {
                        buf.put_u8(ip_bytes(ip) as u8 * 8);
                        put_ip(buf, ip);
                    }
                }
                buf.put_slice(&r.label1.to_bytes());
                if let Some(l2) = r.label2 {
                    buf.put_slice(&l2.to_bytes());
                }
            }
            EvpnNlri::InclusiveMulticast(r) => {
                buf.put_slice(&r.rd.to_bytes());
                buf.put_u32(r.eth_tag.0);
                buf.put_u8(ip_bytes(&r.originator) as u8 * 8);
                put_ip(buf, &r.originator);
            }
            EvpnNlri::EthernetSegment(r) => {
                buf.put_slice(&r.rd.to_bytes());
                buf.put_slice(&r.esi.0);
                buf.put_u8(ip_bytes(&r.originator) as u8 * 8);
                put_ip(buf, &r.originator);
            }
            EvpnNlri::IpPrefix(r) => {
                buf.put_slice(&r.rd.to_bytes());
                buf.put_slice(&r.esi.0);
                buf.put_u32(r.eth_tag.0);
                buf.put_u8(r.prefix.prefix_len());
                put_ip(buf, &r.prefix.addr());
                // The gateway has the prefix's family by construction of the
                // decoder; a mismatched one built by hand is written as the
                // prefix's family (zero) so the length byte stays right.
                match (r.prefix, r.gateway) {
                    (IpNet::V4(_), IpAddr::V4(g)) => buf.put_slice(&g.octets()),
                    (IpNet::V6(_), IpAddr::V6(g)) => buf.put_slice(&g.octets()),
                    (IpNet::V4(_), IpAddr::V6(_)) => buf.put_slice(&[0; 4]),
                    (IpNet::V6(_), IpAddr::V4(_)) => buf.put_slice(&[0; 16]),
                }
                buf.put_slice(&r.label.to_bytes());
            }
        }
    }
}

impl Nlri for EvpnNlri {
    fn decode_all(afi_safi: AfiSafi, buf: &[u8]) -> Result<Vec<Self>, NlriError> {
        if afi_safi != AfiSafi::L2VPN_EVPN {
            return Err(NlriError::UnsupportedAfiSafi {
                afi: afi_safi.afi.0,
                safi: afi_safi.safi.0,
            });
        }
        decode_evpn_nlri(buf)
    }

    fn encode(&self, buf: &mut BytesMut) {
        buf.reserve(self.encoded_len());
        buf.put_u8(self.route_type());
        buf.put_u8(self.body_len() as u8);
        self.encode_body(buf);
    }

    fn encoded_len(&self) -> usize {
        2 + self.body_len()
    }
}

/// Encode a list of NLRI back to back (an NLRI field).
pub fn encode_evpn_nlri(routes: &[EvpnNlri]) -> BytesMut {
    let mut buf = BytesMut::with_capacity(routes.iter().map(Nlri::encoded_len).sum());
    for r in routes {
        r.encode(&mut buf);
    }
    buf
}
