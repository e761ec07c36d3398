//! Netlink encoding and decoding: typed rows out of kernel messages and the
//! typed write operations (encoded and sent by `writer`).

use std::net::IpAddr;
#[cfg(test)]
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use evpnd_evpn::{MacAddress, Vni};
use futures::stream::{StreamExt, TryStreamExt};
use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoVxlan, LinkAttribute, LinkFlags,
    LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::NeighbourFlags;
#[cfg(test)]
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourHeader, NeighbourMessage, NeighbourState,
};
#[cfg(test)]
use netlink_packet_route::AddressFamily;
use netlink_packet_route::RouteNetlinkMessage;

const NUD_INCOMPLETE: u16 = 0x01;
const NUD_FAILED: u16 = 0x20;
const NUD_PERMANENT: u16 = 0x80;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A kernel refusal or a transport failure for one request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetlinkError {
    #[error("kernel refused the request: {}", std::io::Error::from_raw_os_error(*.0))]
    Kernel(i32),
    #[error("netlink request could not be sent")]
    Send,
    #[error("no answer from the kernel within {0:?}")]
    Timeout(Duration),
    #[error("unexpected netlink answer")]
    Unexpected,
}

impl NetlinkError {
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Kernel(e) => Some(*e),
            _ => None,
        }
    }
}

/// One write to the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    MacUpsert {
        vni: Vni,
        vxlan: u32,
        bridge: u32,
        mac: MacAddress,
        vtep: IpAddr,
    },
    /// `master` selects the bridge row, else the vxlan `self` row.
    MacDelete {
        vni: Vni,
        vxlan: u32,
        mac: MacAddress,
        master: bool,
    },
    /// Both rows of a remote MAC in one message (NTF_MASTER | NTF_SELF),
    /// as FRR deletes them: half the messages of two [`Op::MacDelete`]s.
    /// The kernel stops at the bridge row when that one is missing, so
    /// ENOENT is reported (not taken as success) and the caller falls back
    /// to the two single deletes.
    MacDeleteBoth {
        vni: Vni,
        vxlan: u32,
        mac: MacAddress,
    },
    FloodAdd {
        vni: Vni,
        vxlan: u32,
        vtep: IpAddr,
    },
    FloodDelete {
        vni: Vni,
        vxlan: u32,
        vtep: IpAddr,
    },
    NeighUpsert {
        vni: Vni,
        bridge: u32,
        ip: IpAddr,
        mac: MacAddress,
    },
    NeighDelete {
        vni: Vni,
        bridge: u32,
        ip: IpAddr,
    },
}

impl Op {
    /// Deletes whose `ENOENT` means "already gone", i.e. success.
    pub(super) fn is_delete(&self) -> bool {
        matches!(
            self,
            Op::MacDelete { .. } | Op::FloodDelete { .. } | Op::NeighDelete { .. }
        )
    }

    /// The request as netlink-packet-route builds it (with NLM_F_ACK): the
    /// reference the writer's hand encoding is tested against.
    #[cfg(test)]
    pub fn message(&self, protocol: u8) -> NetlinkMessage<RouteNetlinkMessage> {
        use netlink_packet_core::{NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REPLACE};
        use netlink_packet_route::route::RouteProtocol;
        const NUD_REACHABLE: u16 = 0x02;
        const NUD_NOARP: u16 = 0x40;
        let proto = NeighbourAttribute::Protocol(RouteProtocol::from(protocol));
        let (payload, flags) = match *self {
            Op::MacUpsert {
                vxlan,
                bridge,
                mac,
                vtep,
                ..
            } => {
                let msg = neigh(
                    AddressFamily::Bridge,
                    vxlan,
                    NUD_REACHABLE,
                    NeighbourFlags::Controller | NeighbourFlags::Own | NeighbourFlags::ExtLearned,
                    vec![
                        NeighbourAttribute::LinkLayerAddress(mac.0.to_vec()),
                        NeighbourAttribute::Destination(ip_bytes(vtep)),
                        NeighbourAttribute::Controller(bridge),
                        proto,
                    ],
                );
                (
                    RouteNetlinkMessage::NewNeighbour(msg),
                    NLM_F_CREATE | NLM_F_REPLACE,
                )
            }
            Op::MacDeleteBoth { vxlan, mac, .. } => {
                let msg = neigh(
                    AddressFamily::Bridge,
                    vxlan,
                    0,
                    NeighbourFlags::Controller | NeighbourFlags::Own,
                    vec![NeighbourAttribute::LinkLayerAddress(mac.0.to_vec())],
                );
                (RouteNetlinkMessage::DelNeighbour(msg), 0)
            }
            Op::MacDelete {
                vxlan, mac, master, ..
            } => {
                let flags = if master {
                    NeighbourFlags::Controller
                } else {
                    NeighbourFlags::Own
                };
                let msg = neigh(
                    AddressFamily::Bridge,
                    vxlan,
                    0,
                    flags,
                    vec![NeighbourAttribute::LinkLayerAddress(mac.0.to_vec())],
                );
                (RouteNetlinkMessage::DelNeighbour(msg), 0)
            }
            // NLM_F_APPEND adds one more remote to the all-zero entry instead
            // of replacing the existing ones (rtnetlink has no builder for it).
            Op::FloodAdd { vxlan, vtep, .. } => {
                let msg = neigh(
                    AddressFamily::Bridge,
                    vxlan,
                    NUD_NOARP | NUD_PERMANENT,
                    NeighbourFlags::Own,
                    vec![
                        NeighbourAttribute::LinkLayerAddress(MacAddress::ZERO.0.to_vec()),
                        NeighbourAttribute::Destination(ip_bytes(vtep)),
                        proto,
                    ],
                );
                (
                    RouteNetlinkMessage::NewNeighbour(msg),
                    NLM_F_CREATE | NLM_F_APPEND,
                )
            }
            Op::FloodDelete { vxlan, vtep, .. } => {
                let msg = neigh(
                    AddressFamily::Bridge,
                    vxlan,
                    0,
                    NeighbourFlags::Own,
                    vec![
                        NeighbourAttribute::LinkLayerAddress(MacAddress::ZERO.0.to_vec()),
                        NeighbourAttribute::Destination(ip_bytes(vtep)),
                    ],
                );
                (RouteNetlinkMessage::DelNeighbour(msg), 0)
            }
            Op::NeighUpsert {
                bridge, ip, mac, ..
            } => {
                let msg = neigh(
                    family_of(ip),
                    bridge,
                    NUD_NOARP,
                    NeighbourFlags::ExtLearned,
                    vec![
                        NeighbourAttribute::Destination(NeighbourAddress::from(ip)),
                        NeighbourAttribute::LinkLayerAddress(mac.0.to_vec()),
                        proto,
                    ],
                );
                (
                    RouteNetlinkMessage::NewNeighbour(msg),
                    NLM_F_CREATE | NLM_F_REPLACE,
                )
            }
            Op::NeighDelete { bridge, ip, .. } => {
                let msg = neigh(
                    family_of(ip),
                    bridge,
                    0,
                    NeighbourFlags::empty(),
                    vec![NeighbourAttribute::Destination(NeighbourAddress::from(ip))],
                );
                (RouteNetlinkMessage::DelNeighbour(msg), 0)
            }
        };
        let mut req = NetlinkMessage::from(payload);
        req.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        req
    }
}

#[cfg(test)]
fn neigh(
    family: AddressFamily,
    ifindex: u32,
    state: u16,
    flags: NeighbourFlags,
    attributes: Vec<NeighbourAttribute>,
) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header = NeighbourHeader {
        family,
        ifindex,
        state: NeighbourState::from(state),
        flags,
        ..Default::default()
    };
    msg.attributes = attributes;
    msg
}

#[cfg(test)]
fn family_of(ip: IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

/// AF_BRIDGE messages carry NDA_DST as raw bytes.
#[cfg(test)]
fn ip_bytes(ip: IpAddr) -> NeighbourAddress {
    match ip {
        IpAddr::V4(a) => NeighbourAddress::Other(a.octets().to_vec()),
        IpAddr::V6(a) => NeighbourAddress::Other(a.octets().to_vec()),
    }
}

#[cfg(test)]
fn ip_from_neigh_addr(a: &NeighbourAddress) -> Option<IpAddr> {
    match a {
        NeighbourAddress::Inet(v) => Some(IpAddr::V4(*v)),
        NeighbourAddress::Inet6(v) => Some(IpAddr::V6(*v)),
        NeighbourAddress::Other(b) => match b.len() {
            4 => <[u8; 4]>::try_from(b.as_slice())
                .ok()
                .map(|o| IpAddr::V4(Ipv4Addr::from(o))),
            16 => <[u8; 16]>::try_from(b.as_slice())
                .ok()
                .map(|o| IpAddr::V6(Ipv6Addr::from(o))),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
fn mac_from(bytes: &[u8]) -> Option<MacAddress> {
    <[u8; 6]>::try_from(bytes).ok().map(MacAddress)
}

/// One AF_BRIDGE FDB row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdbRow {
    pub ifindex: u32,
    pub mac: MacAddress,
    pub dst: Option<IpAddr>,
    pub master: Option<u32>,
    pub vlan: Option<u16>,
    pub state: u16,
    pub flags: NeighbourFlags,
}

impl FdbRow {
    /// The reference decoding via netlink_packet_route; the dataplane uses
    /// `nlparse` (tests compare the two).
    #[cfg(test)]
    pub fn from_msg(m: &NeighbourMessage) -> Option<FdbRow> {
        if m.header.family != AddressFamily::Bridge {
            return None;
        }
        let mut mac = None;
        let mut dst = None;
        let mut master = None;
        let mut vlan = None;
        for a in &m.attributes {
            match a {
                NeighbourAttribute::LinkLayerAddress(b) => mac = mac_from(b),
                NeighbourAttribute::Destination(d) => dst = ip_from_neigh_addr(d),
                NeighbourAttribute::Controller(i) => master = Some(*i),
                NeighbourAttribute::Vlan(v) => vlan = Some(*v),
                _ => {}
            }
        }
        Some(FdbRow {
            ifindex: m.header.ifindex,
            mac: mac?,
            dst,
            master,
            vlan,
            state: u16::from(m.header.state),
            flags: m.header.flags,
        })
    }

    pub fn ext_learned(&self) -> bool {
        self.flags.contains(NeighbourFlags::ExtLearned)
    }
    pub fn is_self(&self) -> bool {
        self.flags.contains(NeighbourFlags::Own)
    }
    pub fn permanent(&self) -> bool {
        self.state & NUD_PERMANENT != 0
    }
}

/// One IPv4/IPv6 neighbor row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighRow {
    pub ifindex: u32,
    pub ip: IpAddr,
    pub mac: Option<MacAddress>,
    pub state: u16,
    pub flags: NeighbourFlags,
    pub protocol: Option<u8>,
}

impl NeighRow {
    #[cfg(test)]
    pub fn from_msg(m: &NeighbourMessage) -> Option<NeighRow> {
        if !matches!(m.header.family, AddressFamily::Inet | AddressFamily::Inet6) {
            return None;
        }
        let mut ip = None;
        let mut mac = None;
        let mut protocol = None;
        for a in &m.attributes {
            match a {
                NeighbourAttribute::Destination(d) => ip = ip_from_neigh_addr(d),
                NeighbourAttribute::LinkLayerAddress(b) => mac = mac_from(b),
                NeighbourAttribute::Protocol(p) => protocol = Some(u8::from(*p)),
                _ => {}
            }
        }
        Some(NeighRow {
            ifindex: m.header.ifindex,
            ip: ip?,
            mac,
            state: u16::from(m.header.state),
            flags: m.header.flags,
            protocol,
        })
    }

    /// A binding the kernel currently trusts (reachable, stale, delay, probe,
    /// permanent, noarp).
    pub fn valid(&self) -> bool {
        self.state & !(NUD_INCOMPLETE | NUD_FAILED) != 0 && self.mac.is_some()
    }
}

/// What we need to know about a link.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LinkRow {
    pub index: u32,
    pub name: String,
    pub kind: Option<String>,
    pub master: Option<u32>,
    pub admin_up: bool,
    pub oper_up: bool,
    pub alias: Option<String>,
    pub mtu: Option<u32>,
    pub vxlan: Option<VxlanInfo>,
    /// Bridge-port settings when the link is enslaved to a bridge.
    pub port_learning: Option<bool>,
    pub port_neigh_suppress: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VxlanInfo {
    pub vni: Option<u32>,
    pub local: Option<IpAddr>,
    pub port: Option<u16>,
    pub learning: Option<bool>,
    pub group: Option<IpAddr>,
    pub link: Option<u32>,
}

impl LinkRow {
    pub fn from_msg(m: &LinkMessage) -> LinkRow {
        let mut row = LinkRow {
            index: m.header.index,
            admin_up: m.header.flags.contains(LinkFlags::Up),
            oper_up: m.header.flags.contains(LinkFlags::Up)
                && m.header.flags.contains(LinkFlags::LowerUp),
            ..Default::default()
        };
        for a in &m.attributes {
            match a {
                LinkAttribute::IfName(n) => row.name = n.clone(),
                LinkAttribute::Controller(i) => row.master = Some(*i),
                LinkAttribute::IfAlias(s) => row.alias = Some(s.clone()),
                LinkAttribute::Mtu(v) => row.mtu = Some(*v),
                LinkAttribute::LinkInfo(infos) => {
                    for i in infos {
                        match i {
                            LinkInfo::Kind(k) => row.kind = Some(kind_name(k)),
                            LinkInfo::Data(InfoData::Vxlan(v)) => row.vxlan = Some(vxlan_info(v)),
                            LinkInfo::PortData(InfoPortData::BridgePort(p)) => {
                                for x in p {
                                    match x {
                                        InfoBridgePort::Learning(b) => row.port_learning = Some(*b),
                                        InfoBridgePort::NeighSupress(b) => {
                                            row.port_neigh_suppress = Some(*b)
                                        }
                                        _ => {}
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        row
    }

    pub fn is_kind(&self, k: &str) -> bool {
        self.kind.as_deref() == Some(k)
    }
}

fn kind_name(k: &InfoKind) -> String {
    match k {
        InfoKind::Bridge => "bridge".into(),
        InfoKind::Vxlan => "vxlan".into(),
        InfoKind::Vrf => "vrf".into(),
        other => format!("{other}").to_lowercase(),
    }
}

fn vxlan_info(v: &[InfoVxlan]) -> VxlanInfo {
    let mut out = VxlanInfo::default();
    for x in v {
        match x {
            InfoVxlan::Id(id) => out.vni = Some(*id),
            InfoVxlan::Local(a) => out.local = Some(IpAddr::V4(*a)),
            InfoVxlan::Local6(a) => out.local = Some(IpAddr::V6(*a)),
            InfoVxlan::Port(p) => out.port = Some(*p),
            InfoVxlan::Learning(b) => out.learning = Some(*b),
            InfoVxlan::Group(a) if !a.is_unspecified() => out.group = Some(IpAddr::V4(*a)),
            InfoVxlan::Group6(a) if !a.is_unspecified() => out.group = Some(IpAddr::V6(*a)),
            InfoVxlan::Link(l) if *l != 0 => out.link = Some(*l),
            _ => {}
        }
    }
    out
}

/// Raise a socket's receive buffer past `rmem_max` when we may
/// (SO_RCVBUFFORCE needs CAP_NET_ADMIN), else as far as SO_RCVBUF allows.
pub fn set_rcvbuf(fd: &impl AsRawFd, bytes: usize) -> std::io::Result<()> {
    set_buf(fd, bytes, [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF])
}

/// The same for the send buffer (`wmem_max`).
pub fn set_sndbuf(fd: &impl AsRawFd, bytes: usize) -> std::io::Result<()> {
    set_buf(fd, bytes, [libc::SO_SNDBUFFORCE, libc::SO_SNDBUF])
}

fn set_buf(fd: &impl AsRawFd, bytes: usize, opts: [libc::c_int; 2]) -> std::io::Result<()> {
    let val = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    for opt in opts {
        // SAFETY: valid fd, pointer to a live c_int and its exact length.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&val as *const libc::c_int).cast(),
                len,
            )
        };
        if rc == 0 {
            return Ok(());
        }
    }
    Err(std::io::Error::last_os_error())
}

/// Dump a whole table, converting each message as it arrives: only the
/// small rows are kept, never the whole table as decoded netlink messages
/// (a transient of a few hundred bytes per FDB row).
pub async fn dump_map<T>(
    handle: &rtnetlink::Handle,
    msg: RouteNetlinkMessage,
    convert: impl Fn(RouteNetlinkMessage) -> Option<T>,
) -> Result<Vec<T>, NetlinkError> {
    let mut req = NetlinkMessage::from(msg);
    req.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut h = handle.clone();
    let resp = h.request(req).map_err(|_| NetlinkError::Send)?;
    let fut = resp
        .map(|m| match m.payload {
            NetlinkPayload::InnerMessage(i) => Ok(convert(i)),
            NetlinkPayload::Error(e) => match e.code {
                Some(c) => Err(NetlinkError::Kernel(-c.get())),
                None => Ok(None),
            },
            _ => Ok(None),
        })
        .try_filter_map(|x| async move { Ok(x) })
        .try_collect::<Vec<_>>();
    tokio::time::timeout(REQUEST_TIMEOUT, fut)
        .await
        .unwrap_or(Err(NetlinkError::Timeout(REQUEST_TIMEOUT)))
}

/// Every link as a small [`LinkRow`], converted as the dump streams in: a
/// decoded link message is ~13 KiB, so holding them all cost ~26 MB at
/// 2,000 devices (1,000 VNIs).
pub async fn dump_links(handle: &rtnetlink::Handle) -> Result<Vec<LinkRow>, NetlinkError> {
    dump_map(
        handle,
        RouteNetlinkMessage::GetLink(LinkMessage::default()),
        |m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(LinkRow::from_msg(&l)),
            _ => None,
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{Emitable, Parseable, NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE};

    const NUD_NOARP: u16 = 0x40;

    fn vni(v: u32) -> Vni {
        Vni::new(v).unwrap_or_else(|| panic!("bad test vni"))
    }

    #[test]
    fn flood_add_uses_append_and_raw_dst() {
        let op = Op::FloodAdd {
            vni: vni(10),
            vxlan: 7,
            vtep: "10.0.0.2".parse().unwrap(),
        };
        let m = op.message(245);
        assert_eq!(
            m.header.flags,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND
        );
        let RouteNetlinkMessage::NewNeighbour(n) = m.payload_inner() else {
            panic!("not a neighbour")
        };
        assert_eq!(n.header.flags, NeighbourFlags::Own);
        assert_eq!(u16::from(n.header.state), NUD_NOARP | NUD_PERMANENT);
        assert!(n
            .attributes
            .contains(&NeighbourAttribute::Destination(NeighbourAddress::Other(
                vec![10, 0, 0, 2]
            ))));
    }

    #[test]
    fn remote_mac_roundtrips_as_fdb_row() {
        let mac = MacAddress([0x02, 0, 0, 0, 0, 1]);
        let op = Op::MacUpsert {
            vni: vni(10),
            vxlan: 7,
            bridge: 5,
            mac,
            vtep: "10.0.0.2".parse().unwrap(),
        };
        let m = op.message(245);
        let RouteNetlinkMessage::NewNeighbour(n) = m.payload_inner() else {
            panic!()
        };
        let mut buf = vec![0u8; n.buffer_len()];
        n.emit(&mut buf);
        let parsed = NeighbourMessage::parse(&buf[..]).unwrap();
        let row = FdbRow::from_msg(&parsed).unwrap();
        assert_eq!(row.mac, mac);
        assert_eq!(row.dst, Some("10.0.0.2".parse().unwrap()));
        assert_eq!(row.master, Some(5));
        assert!(row.ext_learned() && row.is_self());
    }

    trait Inner {
        fn payload_inner(&self) -> &RouteNetlinkMessage;
    }
    impl Inner for NetlinkMessage<RouteNetlinkMessage> {
        fn payload_inner(&self) -> &RouteNetlinkMessage {
            match &self.payload {
                NetlinkPayload::InnerMessage(m) => m,
                _ => panic!("no inner message"),
            }
        }
    }
}
