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

/// Empty the socket's queue after an overrun and return how many reads
/// that took. While the queue is not empty the kernel keeps the socket
/// "congested" and drops every new notification without a second ENOBUFS
/// (net/netlink/af_netlink.c: NETLINK_S_CONGESTED is cleared only when a
/// read leaves the queue empty). If we went on forwarding the backlog (and
/// blocked on the channel while the dataplane re-dumps), changes made after
/// the dump were lost for good. What is discarded here is older than the
/// dump the overrun triggers.
fn drain(sock: &TokioSocket, buf: &mut Vec<u8>) -> usize {
    let mut reads = 0;
    loop {
        buf.clear();
        match sock.socket_ref().recv(buf, libc::MSG_DONTWAIT) {
            Ok(_) => reads += 1,
            // Overrun again while draining: keep going, one resync covers it.
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return reads, // EAGAIN: empty.
        }
    }
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
                let dropped = drain(&sock, &mut buf);
                tracing::warn!(
                    discarded = dropped,
                    "netlink notification overrun (ENOBUFS): resyncing"
                );
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::kernel::FdbRow;
    use std::process::Command;
    use std::time::Duration;

    fn sh(cmd: &str) {
        let st = Command::new("sh").arg("-c").arg(cmd).status();
        assert!(st.is_ok_and(|s| s.success()), "{cmd}");
    }

    /// Read until a NEWNEIGH for `mac` arrives (true) or nothing more comes
    /// within `wait` (false).
    async fn sees(sock: &mut TokioSocket, mac: &str, wait: Duration) -> bool {
        let mut buf: Vec<u8> = Vec::with_capacity(RECV_BUF);
        loop {
            buf.clear();
            match tokio::time::timeout(wait, sock.recv_from(&mut buf)).await {
                Err(_) => return false,
                Ok(Err(_)) => continue,
                Ok(Ok(_)) => {}
            }
            let mut off = 0;
            while let Some(rest) = buf.get(off..).filter(|r| !r.is_empty()) {
                let Ok(b) = NetlinkBuffer::new_checked(rest) else {
                    break;
                };
                let len = b.length() as usize;
                if len == 0 {
                    break;
                }
                if let Ok(m) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rest[..len]) {
                    if let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNeighbour(n)) =
                        m.payload
                    {
                        if FdbRow::from_msg(&n).is_some_and(|r| r.mac.to_string() == mac) {
                            return true;
                        }
                    }
                }
                off += (len + 3) & !3;
            }
        }
    }

    /// After an overrun the kernel drops notifications silently until the
    /// queue is empty; `drain` must empty it so that the next change is
    /// delivered (this is what lost local MACs after bulk loads).
    #[test]
    fn notifications_flow_again_after_an_overrun() {
        // SAFETY: geteuid(2) cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let t = std::thread::spawn(|| {
            // A private network namespace for this thread and its children.
            // SAFETY: unshare(2) affects only the calling thread here.
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
            sh(
                "ip link add br0 type bridge && ip link add d0 type veth peer name d1 && \
                ip link set d0 master br0 && ip link set br0 up && ip link set d0 up",
            );
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let mut sock = open(4096).expect("socket");
                let file = format!("/tmp/evpnd-monitor-test-{}", std::process::id());
                let batch: String = (0..600u32)
                    .map(|i| {
                        format!(
                            "fdb add 02:20:00:00:{:02x}:{:02x} dev d0 master static\n",
                            i >> 8,
                            i & 0xff
                        )
                    })
                    .collect();
                std::fs::write(&file, batch).expect("batch file");
                sh(&format!("bridge -batch {file}"));
                let _ = std::fs::remove_file(&file);
                // The first read reports the overrun.
                let mut buf: Vec<u8> = Vec::with_capacity(RECV_BUF);
                let err = sock.socket_ref().recv(&mut buf, libc::MSG_DONTWAIT);
                assert_eq!(
                    err.err().and_then(|e| e.raw_os_error()),
                    Some(libc::ENOBUFS),
                    "600 changes must overrun a 4 KiB buffer"
                );
                drain(&sock, &mut buf);
                sh("bridge fdb add 02:99:00:00:00:01 dev d0 master static");
                assert!(
                    sees(&mut sock, "02:99:00:00:00:01", Duration::from_secs(3)).await,
                    "a change after the overrun was not delivered"
                );
            });
        });
        t.join().expect("test thread");
    }
}
