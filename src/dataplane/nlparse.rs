//! Allocation-free decoding of netlink neighbour messages (RTM_NEWNEIGH /
//! RTM_DELNEIGH, `struct ndmsg` + `NDA_*` attributes, linux/neighbour.h)
//! straight from the receive buffer into [`FdbRow`] / [`NeighRow`].
//!
//! Every remote MAC evpnd writes comes back as two or three notifications
//! and every reconciliation dumps the whole FDB, so this is the hottest
//! decoder of the dataplane; `netlink_packet_route` allocates a Vec per
//! message and per attribute. Links stay on `netlink_packet_route` (rare).
//! Malformed input is an error with its offset, never a panic.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use evpnd_evpn::MacAddress;
use netlink_packet_route::neighbour::NeighbourFlags;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use super::kernel::{FdbRow, NeighRow, NetlinkError};

/// linux/netlink.h
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLMSG_OVERRUN: u16 = 4;
/// linux/rtnetlink.h
pub const RTM_NEWLINK: u16 = 16;
pub const RTM_DELLINK: u16 = 17;
pub const RTM_NEWNEIGH: u16 = 28;
pub const RTM_DELNEIGH: u16 = 29;
pub const RTM_GETNEIGH: u16 = 30;

pub const AF_INET: u8 = 2;
pub const AF_BRIDGE: u8 = 7;
pub const AF_INET6: u8 = 10;

/// `NTF_SELF`: the row of the device itself (vxlan `dst` row), not the
/// bridge's (linux/neighbour.h).
pub const NTF_SELF: u8 = 0x02;

const NLMSG_HDRLEN: usize = 16;
const NDMSG_LEN: usize = 12;
const NLA_HDRLEN: usize = 4;
/// The top two bits of nla_type are NLA_F_NESTED / NLA_F_NET_BYTEORDER.
const NLA_TYPE_MASK: u16 = 0x3fff;

const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
const NDA_VLAN: u16 = 5;
const NDA_PORT: u16 = 6;
const NDA_VNI: u16 = 7;
const NDA_IFINDEX: u16 = 8;
const NDA_MASTER: u16 = 9;
const NDA_SRC_VNI: u16 = 11;
const NDA_PROTOCOL: u16 = 12;
const NDA_NH_ID: u16 = 13;
const NDA_FLAGS_EXT: u16 = 15;

/// Why a buffer is not a well-formed netlink / neighbour message. Offsets
/// are from the start of the buffer handed to the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("netlink header truncated at offset {offset} ({remaining} bytes left)")]
    ShortHeader { offset: usize, remaining: usize },
    #[error("netlink message at offset {offset} claims {len} bytes, {remaining} left")]
    BadLength {
        offset: usize,
        len: usize,
        remaining: usize,
    },
    #[error("ndmsg truncated: {len} bytes, need 12")]
    ShortNdmsg { len: usize },
    #[error("neighbour attribute at offset {offset} has invalid length {len}")]
    BadAttr { offset: usize, len: usize },
    #[error("neighbour attribute {kind} at offset {offset} is {len} bytes, expected {expected}")]
    AttrSize {
        kind: u16,
        offset: usize,
        len: usize,
        expected: usize,
    },
}

/// One netlink message of a datagram, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Msg<'a> {
    pub kind: u16,
    pub flags: u16,
    pub seq: u32,
    /// The bytes after the 16-byte header, `nlmsg_len - 16` long.
    pub payload: &'a [u8],
    /// The whole message, header included.
    pub raw: &'a [u8],
    /// Offset of the header in the datagram (for error messages).
    pub offset: usize,
}

/// The messages of one datagram. Stops at the first malformed header
/// (yielding its error once): nothing after it can be framed.
pub struct Messages<'a> {
    buf: &'a [u8],
    off: usize,
}

pub fn messages(buf: &[u8]) -> Messages<'_> {
    Messages { buf, off: 0 }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_ne_bytes([*s.first()?, *s.get(1)?]))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_ne_bytes(s))
}

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<Msg<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.buf.get(self.off..)?;
        if rest.is_empty() {
            return None;
        }
        let offset = self.off;
        let stop = |s: &mut Self, e| {
            s.off = s.buf.len();
            Some(Err(e))
        };
        let (Some(len), Some(kind), Some(flags), Some(seq)) = (
            u32_at(rest, 0),
            u16_at(rest, 4),
            u16_at(rest, 6),
            u32_at(rest, 8),
        ) else {
            return stop(
                self,
                ParseError::ShortHeader {
                    offset,
                    remaining: rest.len(),
                },
            );
        };
        let len = len as usize;
        let (Some(payload), Some(raw)) = (
            (len >= NLMSG_HDRLEN)
                .then(|| rest.get(NLMSG_HDRLEN..len))
                .flatten(),
            rest.get(..len),
        ) else {
            return stop(
                self,
                ParseError::BadLength {
                    offset,
                    len,
                    remaining: rest.len(),
                },
            );
        };
        self.off = self.off.saturating_add(align4(len));
        Some(Ok(Msg {
            kind,
            flags,
            seq,
            payload,
            raw,
            offset,
        }))
    }
}

/// The errno of an NLMSG_ERROR payload (0 for an ack).
pub fn error_code(payload: &[u8]) -> Option<i32> {
    u32_at(payload, 0).map(|v| v as i32)
}

/// A decoded neighbour message: `struct ndmsg` and the attributes we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ndmsg {
    pub family: u8,
    pub ifindex: u32,
    pub state: u16,
    pub flags: u8,
    pub ntype: u8,
    /// NDA_LLADDR when it is 6 bytes (Ethernet); other lengths are `None`.
    pub lladdr: Option<MacAddress>,
    /// NDA_DST when it is 4 or 16 bytes (AF_BRIDGE carries raw bytes).
    pub dst: Option<IpAddr>,
    pub master: Option<u32>,
    pub vlan: Option<u16>,
    /// NDA_PORT, host order (the kernel sends it in network order).
    pub port: Option<u16>,
    pub vni: Option<u32>,
    pub src_vni: Option<u32>,
    /// NDA_IFINDEX: the outgoing device of a vxlan row.
    pub via_ifindex: Option<u32>,
    pub protocol: Option<u8>,
    pub nh_id: Option<u32>,
    pub flags_ext: Option<u32>,
}

/// Decode the payload (after the netlink header) of an RTM_*NEIGH message.
pub fn parse_ndmsg(p: &[u8]) -> Result<Ndmsg, ParseError> {
    let hdr = p
        .get(..NDMSG_LEN)
        .ok_or(ParseError::ShortNdmsg { len: p.len() })?;
    let mut m = Ndmsg {
        family: hdr.first().copied().unwrap_or(0),
        ifindex: u32_at(hdr, 4).unwrap_or(0),
        state: u16_at(hdr, 8).unwrap_or(0),
        flags: hdr.get(10).copied().unwrap_or(0),
        ntype: hdr.get(11).copied().unwrap_or(0),
        ..Ndmsg::default()
    };
    let mut off = NDMSG_LEN;
    while off < p.len() {
        let base = NLMSG_HDRLEN + off;
        let (Some(len), Some(kind)) = (u16_at(p, off), u16_at(p, off + 2)) else {
            return Err(ParseError::BadAttr {
                offset: base,
                len: p.len() - off,
            });
        };
        let len = len as usize;
        let Some(v) = (len >= NLA_HDRLEN)
            .then(|| p.get(off + NLA_HDRLEN..off + len))
            .flatten()
        else {
            return Err(ParseError::BadAttr { offset: base, len });
        };
        let kind = kind & NLA_TYPE_MASK;
        let size = |expected: usize| {
            if v.len() == expected {
                Ok(())
            } else {
                Err(ParseError::AttrSize {
                    kind,
                    offset: base,
                    len: v.len(),
                    expected,
                })
            }
        };
        let u32v = || u32_at(v, 0).unwrap_or(0);
        match kind {
            NDA_LLADDR => m.lladdr = <[u8; 6]>::try_from(v).ok().map(MacAddress),
            NDA_DST => {
                m.dst = if let Ok(a) = <[u8; 4]>::try_from(v) {
                    Some(IpAddr::V4(Ipv4Addr::from(a)))
                } else {
                    <[u8; 16]>::try_from(v)
                        .ok()
                        .map(|a| IpAddr::V6(Ipv6Addr::from(a)))
                }
            }
            NDA_MASTER => {
                size(4)?;
                m.master = Some(u32v());
            }
            NDA_VLAN => {
                size(2)?;
                m.vlan = u16_at(v, 0);
            }
            NDA_PORT => {
                size(2)?;
                m.port = u16_at(v, 0).map(u16::from_be);
            }
            NDA_VNI => {
                size(4)?;
                m.vni = Some(u32v());
            }
            NDA_SRC_VNI => {
                size(4)?;
                m.src_vni = Some(u32v());
            }
            NDA_IFINDEX => {
                size(4)?;
                m.via_ifindex = Some(u32v());
            }
            NDA_PROTOCOL => {
                size(1)?;
                m.protocol = v.first().copied();
            }
            NDA_NH_ID => {
                size(4)?;
                m.nh_id = Some(u32v());
            }
            NDA_FLAGS_EXT => {
                size(4)?;
                m.flags_ext = Some(u32v());
            }
            _ => {}
        }
        off = off.saturating_add(align4(len));
    }
    Ok(m)
}

/// A neighbour message as the dataplane sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NeighEvent {
    Fdb(FdbRow),
    Ip(NeighRow),
}

impl Ndmsg {
    /// The FDB row of an AF_BRIDGE message with an Ethernet address.
    pub fn fdb_row(&self) -> Option<FdbRow> {
        if self.family != AF_BRIDGE {
            return None;
        }
        Some(FdbRow {
            ifindex: self.ifindex,
            mac: self.lladdr?,
            dst: self.dst,
            master: self.master,
            vlan: self.vlan,
            state: self.state,
            flags: NeighbourFlags::from_bits_retain(self.flags),
        })
    }

    /// The neighbor row of an AF_INET/AF_INET6 message with an address.
    pub fn neigh_row(&self) -> Option<NeighRow> {
        if self.family != AF_INET && self.family != AF_INET6 {
            return None;
        }
        Some(NeighRow {
            ifindex: self.ifindex,
            ip: self.dst?,
            mac: self.lladdr,
            state: self.state,
            flags: NeighbourFlags::from_bits_retain(self.flags),
            protocol: self.protocol,
        })
    }

    pub fn row(&self) -> Option<NeighEvent> {
        self.fdb_row()
            .map(NeighEvent::Fdb)
            .or_else(|| self.neigh_row().map(NeighEvent::Ip))
    }
}

/// A socket for FDB and neighbor dumps, read with the decoder above:
/// no per-row allocation, one 32 KiB datagram per `recv` (the kernel
/// fills dump replies up to that size when the reader's buffer is large).
/// Blocking: run it off the async runtime.
pub struct DumpSocket {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

const DUMP_TIMEOUT: Duration = Duration::from_secs(10);
const DUMP_BUF: usize = 64 << 10;

impl DumpSocket {
    /// Open in the caller's network namespace.
    pub fn open() -> io::Result<DumpSocket> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        let tv = libc::timeval {
            tv_sec: DUMP_TIMEOUT.as_secs() as libc::time_t,
            tv_usec: 0,
        };
        // SAFETY: valid fd, pointer to a live timeval and its exact length.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(DumpSocket {
            sock,
            seq: 0,
            buf: Vec::with_capacity(DUMP_BUF),
        })
    }

    /// Dump the neighbour table of `family` (AF_BRIDGE: the FDB; 0: IPv4
    /// and IPv6 neighbors in one pass) and hand each decoded message to
    /// `f`. Messages that do not decode are logged and skipped.
    pub fn dump_neigh(
        &mut self,
        family: u8,
        mut f: impl FnMut(&Ndmsg),
    ) -> Result<(), NetlinkError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut req = [0u8; NLMSG_HDRLEN + NDMSG_LEN];
        let len = req.len() as u32;
        let flags = netlink_packet_core::NLM_F_REQUEST | netlink_packet_core::NLM_F_DUMP;
        req[0..4].copy_from_slice(&len.to_ne_bytes());
        req[4..6].copy_from_slice(&RTM_GETNEIGH.to_ne_bytes());
        req[6..8].copy_from_slice(&flags.to_ne_bytes());
        req[8..12].copy_from_slice(&seq.to_ne_bytes());
        req[NLMSG_HDRLEN] = family;
        if let Err(e) = self.sock.send(&req, 0) {
            tracing::warn!(error = %e, "netlink dump request not sent");
            return Err(NetlinkError::Send);
        }
        loop {
            self.buf.clear();
            match self.sock.recv(&mut self.buf, 0) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(NetlinkError::Timeout(DUMP_TIMEOUT))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "netlink dump read failed");
                    return Err(NetlinkError::Unexpected);
                }
            }
            for m in messages(&self.buf) {
                let m = match m {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(error = %e, "malformed netlink dump reply");
                        break;
                    }
                };
                // Left over from an earlier dump that timed out.
                if m.seq != seq {
                    continue;
                }
                match m.kind {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => match error_code(m.payload) {
                        Some(0) | None => {}
                        Some(c) => return Err(NetlinkError::Kernel(-c)),
                    },
                    RTM_NEWNEIGH => match parse_ndmsg(m.payload) {
                        Ok(n) => f(&n),
                        Err(e) => tracing::warn!(error = %e, "malformed neighbour in dump"),
                    },
                    _ => {}
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
    use netlink_packet_route::RouteNetlinkMessage;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len() / 2)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
            .collect()
    }

    // Notifications captured from kernel 6.18 with a raw RTNLGRP_NEIGH socket
    // in a scratch namespace (br0 = 2, vx0 = 3 VNI 100, d0 = 5 a bridge port).
    /// `bridge fdb replace 02:00:00:00:00:01 dev vx0 dst 10.0.0.2 master self
    /// extern_learn`: first the bridge row ...
    pub const REMOTE_MASTER: &str = "4c0000001c00000000000000000000000700000003000000020010000a0002000200000000010000080009000200000008000f00000000001400030000000000000000000000000000000000";
    /// ... then the vxlan `self` row.
    pub const REMOTE_SELF: &str = "440000001c00000000000000000000000700000003000000c00012010a0002000200000000010000080001000a0000021400030000000000000000000000000000000000";
    /// `bridge fdb append 00:00:00:00:00:00 dev vx0 dst 10.0.0.3 self permanent`
    const FLOOD: &str = "440000001c00000000000000000000000700000003000000c00002010a0002000000000000000000080001000a0000031400030000000000000000000000000000000000";
    /// A MAC the bridge learned on d0.
    const LEARNED: &str = "4c0000001c00000000000000000000000700000005000000020000000a0002000230000000010000080009000200000008000f00000000001400030000000000000000000000000000000000";
    /// `ip neigh replace 192.0.2.5 lladdr 02:00:00:00:00:01 dev br0 nud noarp
    /// extern_learn proto 245`
    const NEIGH4: &str = "540000001c00000000000000856a000002000000020000004000100108000100c00002050a00020002000000000100000800040000000000140003000000000000000000000000000100000005000c00f5000000";
    const NEIGH6: &str = "600000001c000000000000008c6a00000a00000002000000400010011400010020010db80000000000000000000000050a00020002000000000100000800040000000000140003000000000000000000000000000100000005000c00f5000000";
    /// `bridge fdb del 02:00:00:00:00:01 dev vx0 master`
    const DEL_MASTER: &str = "4c0000001d00000000000000000000000700000003000000020010000a0002000200000000010000080009000200000008000f00000000001400030000000000780000007800000000000000";
    /// `ip neigh del 192.0.2.5 dev br0` (no lladdr any more)
    const DEL_NEIGH4: &str = "480000001d000000000000000000000002000000020000002000000108000100c00002050800040000000000140003002400000024000000240000000000000005000c00f5000000";

    fn one(h: &str) -> (u16, Ndmsg) {
        let b = hex(h);
        let mut it = messages(&b);
        let m = it.next().unwrap().unwrap();
        assert!(it.next().is_none());
        (m.kind, parse_ndmsg(m.payload).unwrap())
    }

    /// The old decoder, for comparison.
    fn reference(h: &str) -> Option<NeighEvent> {
        let b = hex(h);
        let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&b).unwrap();
        let n = match m.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNeighbour(n))
            | NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelNeighbour(n)) => n,
            _ => return None,
        };
        FdbRow::from_msg(&n)
            .map(NeighEvent::Fdb)
            .or_else(|| NeighRow::from_msg(&n).map(NeighEvent::Ip))
    }

    #[test]
    fn captured_messages_decode_like_netlink_packet_route() {
        for h in [
            REMOTE_MASTER,
            REMOTE_SELF,
            FLOOD,
            LEARNED,
            NEIGH4,
            NEIGH6,
            DEL_MASTER,
            DEL_NEIGH4,
        ] {
            let (_, m) = one(h);
            assert_eq!(m.row(), reference(h), "{h}");
        }
    }

    #[test]
    fn remote_mac_rows() {
        let mac = MacAddress([2, 0, 0, 0, 0, 1]);
        let (kind, m) = one(REMOTE_MASTER);
        assert_eq!(kind, RTM_NEWNEIGH);
        let r = m.fdb_row().unwrap();
        assert_eq!((r.ifindex, r.mac, r.master, r.dst), (3, mac, Some(2), None));
        assert!(r.ext_learned() && !r.is_self());
        assert_eq!(m.flags_ext, Some(0));
        let (_, m) = one(REMOTE_SELF);
        let r = m.fdb_row().unwrap();
        assert_eq!(r.dst, Some("10.0.0.2".parse().unwrap()));
        assert!(r.ext_learned() && r.is_self() && r.master.is_none());
        let (kind, m) = one(DEL_MASTER);
        assert_eq!(kind, RTM_DELNEIGH);
        assert_eq!(m.fdb_row().unwrap().mac, mac);
        let (_, m) = one(FLOOD);
        let r = m.fdb_row().unwrap();
        assert!(r.permanent() && r.mac == MacAddress::ZERO);
        assert_eq!(r.dst, Some("10.0.0.3".parse().unwrap()));
    }

    #[test]
    fn neighbor_rows() {
        let (_, m) = one(NEIGH6);
        let r = m.neigh_row().unwrap();
        assert_eq!(r.ip, "2001:db8::5".parse::<IpAddr>().unwrap());
        assert_eq!(r.protocol, Some(245));
        assert_eq!(r.mac, Some(MacAddress([2, 0, 0, 0, 0, 1])));
        assert!(r.valid());
        let (_, m) = one(DEL_NEIGH4);
        let r = m.neigh_row().unwrap();
        assert_eq!(r.ip, "192.0.2.5".parse::<IpAddr>().unwrap());
        assert_eq!(r.mac, None);
    }

    #[test]
    fn several_messages_in_one_datagram() {
        let mut b = hex(REMOTE_MASTER);
        b.extend(hex(NEIGH4));
        b.extend(hex(REMOTE_SELF));
        let kinds: Vec<_> = messages(&b)
            .map(|m| parse_ndmsg(m.unwrap().payload).unwrap().family)
            .collect();
        assert_eq!(kinds, vec![AF_BRIDGE, AF_INET, AF_BRIDGE]);
    }

    #[test]
    fn malformed_input_is_a_typed_error() {
        let b = hex(REMOTE_MASTER);
        // Header cut short.
        assert_eq!(
            messages(&b[..10]).next(),
            Some(Err(ParseError::ShortHeader {
                offset: 0,
                remaining: 10
            }))
        );
        // Length past the end.
        assert!(matches!(
            messages(&b[..40]).next(),
            Some(Err(ParseError::BadLength { len: 76, .. }))
        ));
        // Length below the header size, and zero: no endless loop.
        let mut z = b.clone();
        z[0] = 0;
        let mut it = messages(&z);
        assert!(matches!(
            it.next(),
            Some(Err(ParseError::BadLength { len: 0, .. }))
        ));
        assert_eq!(it.next(), None);
        // ndmsg cut short.
        assert_eq!(
            parse_ndmsg(&b[16..20]),
            Err(ParseError::ShortNdmsg { len: 4 })
        );
        // NDA_MASTER (at payload offset 24) claiming 5 bytes.
        let mut p = b[16..].to_vec();
        assert_eq!(u16::from_ne_bytes([p[24], p[25]]), 8);
        assert_eq!(u16::from_ne_bytes([p[26], p[27]]), NDA_MASTER);
        p[24] = 5;
        assert!(matches!(
            parse_ndmsg(&p),
            Err(ParseError::AttrSize {
                kind: NDA_MASTER,
                len: 1,
                expected: 4,
                ..
            })
        ));
        // An attribute running past the end.
        p[24] = 200;
        assert!(matches!(
            parse_ndmsg(&p),
            Err(ParseError::BadAttr { len: 200, .. })
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            for m in messages(&b).flatten() {
                if let Ok(n) = parse_ndmsg(m.payload) {
                    let _ = n.row();
                }
            }
            let _ = parse_ndmsg(&b);
        }

        /// Real messages with some bytes flipped or cut: still no panic.
        #[test]
        fn mutated_captures_never_panic(
            which in 0usize..4,
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
            cut in any::<usize>(),
        ) {
            let mut b = hex([REMOTE_MASTER, REMOTE_SELF, NEIGH4, NEIGH6][which]);
            for (at, v) in flips {
                let n = b.len();
                b[at % n] = v;
            }
            let n = b.len();
            b.truncate(cut % (n + 1));
            for m in messages(&b).flatten() {
                if let Ok(n) = parse_ndmsg(m.payload) {
                    let _ = n.row();
                }
            }
        }
    }
    /// Dump 100k remote MACs (200k FDB rows) with the raw socket and with
    /// rtnetlink + netlink_packet_route, and print the time of each.
    /// Slow; run by hand with `--ignored --nocapture`.
    #[test]
    #[ignore]
    fn dump_cost_100k_macs() {
        use netlink_packet_route::neighbour::{NeighbourHeader, NeighbourMessage};
        use netlink_packet_route::AddressFamily;
        use std::time::Instant;
        // SAFETY: geteuid(2) cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let t = std::thread::spawn(|| {
            // SAFETY: unshare(2) affects only the calling thread here.
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
            let sh = |c: &str| {
                let st = std::process::Command::new("sh").arg("-c").arg(c).status();
                assert!(st.is_ok_and(|s| s.success()), "{c}");
            };
            sh("ip link add br0 type bridge && \
                ip link add vx0 type vxlan id 100 local 10.0.0.1 dstport 4789 nolearning && \
                ip link set vx0 master br0 && ip link set br0 up && ip link set vx0 up");
            const N: u32 = 100_000;
            let file = format!("/tmp/evpnd-dump-cost-{}", std::process::id());
            let batch: String = (0..N)
                .map(|i| {
                    format!(
                        "fdb replace 02:30:00:{:02x}:{:02x}:{:02x} dev vx0 dst 10.0.0.2 \
                         master self extern_learn\n",
                        i >> 16,
                        (i >> 8) & 0xff,
                        i & 0xff
                    )
                })
                .collect();
            std::fs::write(&file, batch).unwrap();
            sh(&format!("bridge -batch {file}"));
            let _ = std::fs::remove_file(&file);
            let mut sock = DumpSocket::open().unwrap();
            let cpu = || {
                // SAFETY: getrusage(2) with a valid pointer.
                let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
                unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
                let us = |t: libc::timeval| t.tv_sec * 1_000_000 + t.tv_usec;
                (us(ru.ru_utime), us(ru.ru_stime))
            };
            let (u0, s0) = cpu();
            let w = Instant::now();
            let mut rows = 0;
            sock.dump_neigh(AF_BRIDGE, |n| rows += usize::from(n.fdb_row().is_some()))
                .unwrap();
            let (u1, s1) = cpu();
            eprintln!(
                "raw dump: {rows} rows, {:?} wall, user {} ms sys {} ms",
                w.elapsed(),
                (u1 - u0) / 1000,
                (s1 - s0) / 1000
            );
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let (conn, handle, _) = rtnetlink::new_connection().unwrap();
                tokio::spawn(conn);
                let mut msg = NeighbourMessage::default();
                msg.header = NeighbourHeader {
                    family: AddressFamily::Bridge,
                    ..Default::default()
                };
                let (u0, s0) = cpu();
                let w = Instant::now();
                let old = crate::dataplane::kernel::dump_map(
                    &handle,
                    RouteNetlinkMessage::GetNeighbour(msg),
                    |m| match m {
                        RouteNetlinkMessage::NewNeighbour(n) => FdbRow::from_msg(&n),
                        _ => None,
                    },
                )
                .await
                .unwrap();
                let (u1, s1) = cpu();
                eprintln!(
                    "rtnetlink dump: {} rows, {:?} wall, user {} ms sys {} ms",
                    old.len(),
                    w.elapsed(),
                    (u1 - u0) / 1000,
                    (s1 - s0) / 1000
                );
                assert_eq!(old.len(), rows);
            });
        });
        t.join().unwrap();
    }
}
