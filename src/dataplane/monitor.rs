//! The notification socket (RTNLGRP_LINK + RTNLGRP_NEIGH). Our own reader,
//! not netlink-proto's, because netlink-proto swallows ENOBUFS and we must
//! re-dump when notifications were lost.

use netlink_packet_core::{NetlinkBuffer, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, AsyncSocket, AsyncSocketExt, SocketAddr, TokioSocket};
use tokio::sync::mpsc;

use super::kernel::set_rcvbuf;

const RTNLGRP_LINK: u32 = 1;
const RTNLGRP_NEIGH: u32 = 3;
const RECV_BUF: usize = 1 << 18;

pub enum MonitorMsg {
    Msg(RouteNetlinkMessage),
    /// The kernel dropped notifications (ENOBUFS): state must be re-dumped.
    Overrun,
    /// The socket failed for good.
    Closed(std::io::Error),
}

/// Open and bind the socket in the caller's namespace (so errors surface in
/// `spawn`), then hand it to [`run`].
pub fn open(rcvbuf: usize) -> std::io::Result<TokioSocket> {
    let mut sock = TokioSocket::new(NETLINK_ROUTE)?;
    set_rcvbuf(sock.socket_ref(), rcvbuf)?;
    let groups = (1 << (RTNLGRP_LINK - 1)) | (1 << (RTNLGRP_NEIGH - 1));
    sock.socket_mut().bind(&SocketAddr::new(0, groups))?;
    Ok(sock)
}

/// Read notifications until the receiver goes away. Blocks on a full
/// channel on purpose: the kernel buffer then overflows and we resync,
/// instead of growing without bound.
pub async fn run(sock: TokioSocket, tx: mpsc::Sender<MonitorMsg>) {
    let mut buf: Vec<u8> = Vec::with_capacity(RECV_BUF);
    loop {
        buf.clear();
        match sock.recv_from(&mut buf).await {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                tracing::warn!("netlink notification overrun (ENOBUFS): resyncing");
                if tx.send(MonitorMsg::Overrun).await.is_err() {
                    return;
                }
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::error!(error = %e, "netlink notification socket failed");
                let _ = tx.send(MonitorMsg::Closed(e)).await;
                return;
            }
        }
        let mut off = 0usize;
        while off < buf.len() {
            let Some(rest) = buf.get(off..) else { break };
            let len = match NetlinkBuffer::new_checked(rest) {
                Ok(b) => b.length() as usize,
                Err(e) => {
                    tracing::warn!(error = %e, "truncated netlink notification");
                    break;
                }
            };
            if len == 0 {
                break;
            }
            let Some(one) = rest.get(..len) else { break };
            match NetlinkMessage::<RouteNetlinkMessage>::deserialize(one) {
                Ok(m) => {
                    let msg = match m.payload {
                        NetlinkPayload::InnerMessage(i) => MonitorMsg::Msg(i),
                        NetlinkPayload::Overrun(_) => MonitorMsg::Overrun,
                        _ => {
                            off += (len + 3) & !3;
                            continue;
                        }
                    };
                    if tx.send(msg).await.is_err() {
                        return;
                    }
                }
                // Unknown attributes of a message we do not need: skip it.
                Err(e) => tracing::debug!(error = %e, "undecodable netlink notification"),
            }
            off += (len + 3) & !3;
        }
    }
}
