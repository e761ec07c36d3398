//! The batched kernel writer: one OS thread owning a blocking
//! `NETLINK_ROUTE` socket.
//!
//! Ops are encoded by hand into one buffer, many messages per `sendmsg`,
//! without `NLM_F_ACK`: `netlink_rcv_skb` (net/netlink/af_netlink.c) then
//! answers only the requests that fail, and rtnetlink handles the requests
//! synchronously inside `sendmsg`, so when `sendmsg` returns every error
//! answer for that buffer is already queued on our socket. They are read
//! with `MSG_DONTWAIT` and matched to their op by sequence number. An
//! `ENOBUFS` on the socket means answers were lost: the batch is reported
//! unverified and the actor re-dumps the kernel.
//!
//! The actor hands [`Batch`]es over a small bounded queue (backpressure) and
//! gets each one back as [`Done`] on an unbounded channel, in order.

use std::net::IpAddr;

use evpnd_evpn::Intent;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket};
use tokio::sync::mpsc;

use super::kernel::{NetlinkError, Op};

/// Bytes of requests per `sendmsg`: ~2,000 remote MACs.
const SEND_CHUNK: usize = 128 << 10;
/// Room for the error answers of a whole chunk where every op fails
/// (36 bytes + the kernel's message each).
const RCVBUF: usize = 4 << 20;
const SNDBUF: usize = 1 << 20;
/// Batches queued to the writer before `submit` waits.
pub(super) const QUEUE: usize = 4;

const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x01;
const NLM_F_CAPPED: u16 = 0x100;
const NLM_F_ACK_TLVS: u16 = 0x200;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLMSGERR_ATTR_MSG: u16 = 1;
const RTM_NEWNEIGH: u16 = 28;
const RTM_DELNEIGH: u16 = 29;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
const NDA_MASTER: u16 = 9;
const NDA_PROTOCOL: u16 = 12;
const NTF_SELF: u8 = 0x02;
const NTF_MASTER: u8 = 0x04;
const NTF_EXT_LEARNED: u8 = 0x10;
const NUD_REACHABLE: u16 = 0x02;
const NUD_NOARP: u16 = 0x40;
const NUD_PERMANENT: u16 = 0x80;
const AF_INET: u8 = libc::AF_INET as u8;
const AF_INET6: u8 = libc::AF_INET6 as u8;
const AF_BRIDGE: u8 = libc::AF_BRIDGE as u8;

/// Ops to write, with the intent each one serves (empty for
/// reconciliation writes) and why they are written, for the logs.
pub(super) struct Batch {
    pub ops: Vec<Op>,
    pub intents: Vec<Intent>,
    pub why: &'static str,
}

/// One op the kernel refused (or that could not be sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Failure {
    /// Index into [`Batch::ops`].
    pub index: usize,
    pub error: NetlinkError,
    /// The kernel's extended ack message (`NLMSGERR_ATTR_MSG`), if any.
    pub message: Option<String>,
}

/// A batch written. Deletes of absent entries are not failures (except
/// [`Op::MacDeleteBoth`], whose `ENOENT` the actor answers with two single
/// deletes).
pub(super) struct Done {
    pub batch: Batch,
    pub failures: Vec<Failure>,
    /// Error answers were lost (`ENOBUFS`): some op may have failed unseen.
    pub unverified: bool,
}

/// The actor's end of the writer.
pub(super) struct Writer {
    pub tx: mpsc::Sender<Batch>,
    pub done: mpsc::UnboundedReceiver<Done>,
    /// Batches sent and not yet returned.
    pub in_flight: usize,
}

/// Open the socket here (in the caller's network namespace) and start the
/// writer thread.
pub(super) fn spawn(protocol: u8) -> std::io::Result<Writer> {
    let sock = open()?;
    let (tx, mut rx) = mpsc::channel::<Batch>(QUEUE);
    let (done_tx, done) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("evpnd-nl-writer".into())
        .spawn(move || {
            let mut w = RawWriter::new(sock, protocol);
            while let Some(b) = rx.blocking_recv() {
                if done_tx.send(w.write(b)).is_err() {
                    break;
                }
            }
        })?;
    Ok(Writer {
        tx,
        done,
        in_flight: 0,
    })
}

fn open() -> std::io::Result<Socket> {
    let mut s = Socket::new(NETLINK_ROUTE)?;
    s.bind_auto()?;
    // The kernel's reason in the log; only the failed request's header is
    // echoed back (not its body), so error answers stay small.
    s.set_ext_ack(true)?;
    s.set_cap_ack(true)?;
    if let Err(e) = super::kernel::set_rcvbuf(&s, RCVBUF) {
        tracing::warn!(error = %e, "cannot raise the netlink writer's receive buffer");
    }
    if let Err(e) = super::kernel::set_sndbuf(&s, SNDBUF) {
        tracing::warn!(error = %e, "cannot raise the netlink writer's send buffer");
    }
    Ok(s)
}

/// The socket and its buffers; lives on the writer thread.
pub(super) struct RawWriter {
    sock: Socket,
    protocol: u8,
    seq: u32,
    buf: Vec<u8>,
    rbuf: Vec<u8>,
}

impl RawWriter {
    pub(super) fn new(sock: Socket, protocol: u8) -> RawWriter {
        RawWriter {
            sock,
            protocol,
            seq: 1,
            buf: Vec::with_capacity(SEND_CHUNK + 256),
            rbuf: Vec::with_capacity(64 << 10),
        }
    }

    /// Write every op of the batch; returns what failed.
    pub(super) fn write(&mut self, batch: Batch) -> Done {
        let mut failures = Vec::new();
        let mut unverified = false;
        let mut start = 0;
        while start < batch.ops.len() {
            self.buf.clear();
            let base = self.seq;
            let mut end = start;
            for op in &batch.ops[start..] {
                if self.buf.len() >= SEND_CHUNK {
                    break;
                }
                let seq = base.wrapping_add((end - start) as u32);
                encode(&mut self.buf, op, seq, self.protocol);
                end += 1;
            }
            self.seq = base.wrapping_add((end - start) as u32);
            unverified |= self.send_chunk(&batch.ops, start, end, base, &mut failures);
            start = end;
        }
        Done {
            batch,
            failures,
            unverified,
        }
    }

    /// Send `ops[start..end]` (already in `buf`, first sequence number
    /// `base`) and collect their error answers. Returns true when answers
    /// were lost.
    fn send_chunk(
        &mut self,
        ops: &[Op],
        start: usize,
        end: usize,
        base: u32,
        failures: &mut Vec<Failure>,
    ) -> bool {
        loop {
            match self.sock.send(&self.buf, 0) {
                Ok(_) => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!(error = %e, ops = end - start, "netlink sendmsg failed");
                    failures.extend((start..end).map(|index| Failure {
                        index,
                        error: NetlinkError::Send,
                        message: None,
                    }));
                    return false;
                }
            }
        }
        let mut lost = false;
        loop {
            self.rbuf.clear();
            match self.sock.recv(&mut self.rbuf, libc::MSG_DONTWAIT) {
                Ok(0) => break,
                Ok(_) => {
                    for (seq, errno, message) in parse_errors(&self.rbuf) {
                        let off = seq.wrapping_sub(base) as usize;
                        if off >= end - start {
                            // An answer to an older chunk we already gave up on.
                            tracing::debug!(seq, errno, "netlink answer for no pending request");
                            continue;
                        }
                        let index = start + off;
                        let absent_ok =
                            errno == libc::ENOENT && ops.get(index).is_some_and(|o| o.is_delete());
                        if errno != 0 && !absent_ok {
                            failures.push(Failure {
                                index,
                                error: NetlinkError::Kernel(errno),
                                message,
                            });
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    tracing::warn!("netlink writer socket overrun: error answers lost; reconciliation verifies");
                    lost = true;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "netlink writer receive failed; reconciliation verifies");
                    lost = true;
                    break;
                }
            }
        }
        lost
    }
}

/// `(sequence number, errno, extended ack message)` of every error answer
/// in a datagram. Malformed input ends the walk (never panics).
fn parse_errors(mut b: &[u8]) -> Vec<(u32, i32, Option<String>)> {
    let mut out = Vec::new();
    while b.len() >= NLMSG_HDRLEN {
        let len = u32_at(b, 0) as usize;
        if len < NLMSG_HDRLEN || len > b.len() {
            break;
        }
        let ty = u16_at(b, 4);
        let flags = u16_at(b, 6);
        let msg = &b[NLMSG_HDRLEN..len];
        if ty == NLMSG_ERROR && msg.len() >= 4 + NLMSG_HDRLEN {
            let code = i32::from_ne_bytes([msg[0], msg[1], msg[2], msg[3]]);
            let orig = &msg[4..];
            // Our request's header: its sequence number, and (uncapped) the
            // whole request before the TLVs.
            let seq = u32_at(orig, 8);
            let echoed = if flags & NLM_F_CAPPED != 0 {
                NLMSG_HDRLEN
            } else {
                align4(u32_at(orig, 0) as usize)
            };
            let message = if flags & NLM_F_ACK_TLVS != 0 {
                orig.get(echoed..).and_then(ext_ack_message)
            } else {
                None
            };
            out.push((seq, code.wrapping_neg(), message));
        } else if ty == NLMSG_DONE {
            // Not sent for requests; nothing to match.
        }
        b = b.get(align4(len)..).unwrap_or(&[]);
    }
    out
}

fn ext_ack_message(mut t: &[u8]) -> Option<String> {
    while t.len() >= 4 {
        let len = usize::from(u16_at(t, 0));
        let ty = u16_at(t, 2) & 0x3fff;
        if len < 4 || len > t.len() {
            return None;
        }
        if ty == NLMSGERR_ATTR_MSG {
            let s = &t[4..len];
            let s = s.split(|c| *c == 0).next().unwrap_or(s);
            return Some(String::from_utf8_lossy(s).into_owned());
        }
        t = t.get(align4(len)..).unwrap_or(&[]);
    }
    None
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(&[x, y]) => u16::from_ne_bytes([x, y]),
        _ => 0,
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(&[a, c, d, e]) => u32::from_ne_bytes([a, c, d, e]),
        _ => 0,
    }
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Append one request for `op`: the same bytes as `Op::message` with
/// `NLM_F_ACK` cleared (nlmsghdr + ndmsg + NDA_* attributes, in that order).
pub(super) fn encode(buf: &mut Vec<u8>, op: &Op, seq: u32, protocol: u8) {
    let start = buf.len();
    // nlmsghdr; the length is patched at the end.
    let (ty, flags) = match op {
        Op::MacUpsert { .. } | Op::NeighUpsert { .. } => {
            (RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE)
        }
        // APPEND adds one more remote to the all-zero entry instead of
        // replacing the others.
        Op::FloodAdd { .. } => (RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_APPEND),
        Op::MacDelete { .. }
        | Op::MacDeleteBoth { .. }
        | Op::FloodDelete { .. }
        | Op::NeighDelete { .. } => (RTM_DELNEIGH, 0),
    };
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    match *op {
        Op::MacUpsert {
            vxlan,
            bridge,
            mac,
            vtep,
            ..
        } => {
            ndmsg(
                buf,
                AF_BRIDGE,
                vxlan,
                NUD_REACHABLE,
                NTF_MASTER | NTF_SELF | NTF_EXT_LEARNED,
            );
            attr(buf, NDA_LLADDR, &mac.0);
            ip_attr(buf, vtep);
            attr(buf, NDA_MASTER, &bridge.to_ne_bytes());
            attr(buf, NDA_PROTOCOL, &[protocol]);
        }
        Op::MacDeleteBoth { vxlan, mac, .. } => {
            ndmsg(buf, AF_BRIDGE, vxlan, 0, NTF_MASTER | NTF_SELF);
            attr(buf, NDA_LLADDR, &mac.0);
        }
        Op::MacDelete {
            vxlan, mac, master, ..
        } => {
            let f = if master { NTF_MASTER } else { NTF_SELF };
            ndmsg(buf, AF_BRIDGE, vxlan, 0, f);
            attr(buf, NDA_LLADDR, &mac.0);
        }
        Op::FloodAdd { vxlan, vtep, .. } => {
            ndmsg(buf, AF_BRIDGE, vxlan, NUD_NOARP | NUD_PERMANENT, NTF_SELF);
            attr(buf, NDA_LLADDR, &[0; 6]);
            ip_attr(buf, vtep);
            attr(buf, NDA_PROTOCOL, &[protocol]);
        }
        Op::FloodDelete { vxlan, vtep, .. } => {
            ndmsg(buf, AF_BRIDGE, vxlan, 0, NTF_SELF);
            attr(buf, NDA_LLADDR, &[0; 6]);
            ip_attr(buf, vtep);
        }
        Op::NeighUpsert {
            bridge, ip, mac, ..
        } => {
            ndmsg(buf, family(ip), bridge, NUD_NOARP, NTF_EXT_LEARNED);
            ip_attr(buf, ip);
            attr(buf, NDA_LLADDR, &mac.0);
            attr(buf, NDA_PROTOCOL, &[protocol]);
        }
        Op::NeighDelete { bridge, ip, .. } => {
            ndmsg(buf, family(ip), bridge, 0, 0);
            ip_attr(buf, ip);
        }
    }
    let len = u32::try_from(buf.len() - start).unwrap_or(u32::MAX);
    buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
}

fn family(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => AF_INET,
        IpAddr::V6(_) => AF_INET6,
    }
}

/// `struct ndmsg`: family, 3 bytes pad, ifindex, state, flags, type.
fn ndmsg(buf: &mut Vec<u8>, family: u8, ifindex: u32, state: u16, flags: u8) {
    buf.extend_from_slice(&[family, 0, 0, 0]);
    buf.extend_from_slice(&ifindex.to_ne_bytes());
    buf.extend_from_slice(&state.to_ne_bytes());
    buf.extend_from_slice(&[flags, 0]);
}

fn attr(buf: &mut Vec<u8>, ty: u16, payload: &[u8]) {
    let len = (4 + payload.len()) as u16;
    buf.extend_from_slice(&len.to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(payload);
    buf.resize(align4(buf.len()), 0);
}

fn ip_attr(buf: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => attr(buf, NDA_DST, &a.octets()),
        IpAddr::V6(a) => attr(buf, NDA_DST, &a.octets()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use evpnd_evpn::{MacAddress, Vni};
    use netlink_packet_core::{Emitable, NLM_F_ACK};

    fn vni(v: u32) -> Vni {
        Vni::new(v).unwrap_or_else(|| panic!("bad test vni"))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|_| panic!("bad test ip"))
    }

    fn every_kind() -> Vec<Op> {
        let mac = MacAddress([0x02, 0x11, 0x22, 0x33, 0x44, 0x55]);
        let v = vni(10);
        let mut ops = Vec::new();
        for vtep in [ip("10.0.0.2"), ip("fd00::2")] {
            ops.push(Op::MacUpsert {
                vni: v,
                vxlan: 7,
                bridge: 5,
                mac,
                vtep,
            });
            ops.push(Op::FloodAdd {
                vni: v,
                vxlan: 7,
                vtep,
            });
            ops.push(Op::FloodDelete {
                vni: v,
                vxlan: 7,
                vtep,
            });
        }
        for master in [true, false] {
            ops.push(Op::MacDelete {
                vni: v,
                vxlan: 7,
                mac,
                master,
            });
        }
        ops.push(Op::MacDeleteBoth {
            vni: v,
            vxlan: 7,
            mac,
        });
        for a in [ip("192.168.1.7"), ip("fd00::7")] {
            ops.push(Op::NeighUpsert {
                vni: v,
                bridge: 5,
                ip: a,
                mac,
            });
            ops.push(Op::NeighDelete {
                vni: v,
                bridge: 5,
                ip: a,
            });
        }
        ops
    }

    /// The hand encoding is byte for byte what netlink-packet-route emits
    /// for the same request without NLM_F_ACK.
    #[test]
    fn raw_encoding_matches_netlink_packet_route() {
        for (k, op) in every_kind().iter().enumerate() {
            let seq = 1000 + k as u32;
            let mut m = op.message(245);
            m.header.flags &= !NLM_F_ACK;
            m.header.sequence_number = seq;
            m.finalize();
            let mut want = vec![0u8; m.buffer_len()];
            m.emit(&mut want);
            let mut got = Vec::new();
            encode(&mut got, op, seq, 245);
            assert_eq!(got, want, "{op:?}");
        }
    }

    #[test]
    fn error_answers_parse_with_ext_ack_and_garbage_is_ignored() {
        // nlmsghdr(error, capped|tlvs) + errno + request header + MSG TLV.
        let mut b = Vec::new();
        let msg = b"no such device\0";
        let tlv_len = 4 + msg.len();
        let total = NLMSG_HDRLEN + 4 + NLMSG_HDRLEN + align4(tlv_len);
        b.extend_from_slice(&(total as u32).to_ne_bytes());
        b.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        b.extend_from_slice(&(NLM_F_CAPPED | NLM_F_ACK_TLVS).to_ne_bytes());
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&(-libc::ENODEV).to_ne_bytes());
        let mut req = Vec::new();
        encode(&mut req, &every_kind()[0], 77, 245);
        b.extend_from_slice(&req[..NLMSG_HDRLEN]);
        attr(&mut b, NLMSGERR_ATTR_MSG, msg);
        assert_eq!(b.len(), total);
        assert_eq!(
            parse_errors(&b),
            vec![(77, libc::ENODEV, Some("no such device".to_string()))]
        );
        // Truncated or nonsense input: no panic, nothing matched.
        for cut in 0..b.len() {
            let _ = parse_errors(&b[..cut]);
        }
        assert!(parse_errors(&[0xff; 40]).is_empty());
    }

    /// Against the kernel: a refused op in the middle of a buffer is
    /// reported as exactly that op, with the kernel's reason. Root only;
    /// touches nothing (the devices do not exist).
    #[test]
    fn kernel_refusal_is_reported_per_op() {
        // SAFETY: geteuid(2) cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let sock = open().unwrap_or_else(|e| panic!("socket: {e}"));
        let mut w = RawWriter::new(sock, 245);
        let ops = vec![
            // Deletes of absent entries succeed (ENOENT/ENODEV aside).
            Op::NeighDelete {
                vni: vni(1),
                bridge: 1,
                ip: ip("192.0.2.1"),
            },
            Op::FloodAdd {
                vni: vni(1),
                vxlan: 0x7fff_fff0,
                vtep: ip("10.0.0.2"),
            },
            Op::NeighDelete {
                vni: vni(1),
                bridge: 1,
                ip: ip("192.0.2.2"),
            },
            // rtnl_fdb_add refuses ifindex 0 with an extended ack message.
            Op::FloodAdd {
                vni: vni(1),
                vxlan: 0,
                vtep: ip("10.0.0.2"),
            },
        ];
        let d = w.write(Batch {
            ops,
            intents: Vec::new(),
            why: "test",
        });
        assert!(!d.unverified);
        assert_eq!(d.failures.len(), 2, "{:?}", d.failures);
        assert_eq!(d.failures[0].index, 1);
        assert_eq!(d.failures[0].error, NetlinkError::Kernel(libc::ENODEV));
        assert_eq!(d.failures[1].index, 3);
        assert_eq!(d.failures[1].error, NetlinkError::Kernel(libc::EINVAL));
        assert_eq!(d.failures[1].message.as_deref(), Some("invalid ifindex"));
    }

    /// A network namespace (removed on drop) with one bridge + vxlan pair.
    struct Ns(String);

    impl Ns {
        fn new() -> Ns {
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let ns = Ns(format!("evwr-{}-{n}", std::process::id()));
            ns.ip(&["netns", "add", &ns.0]);
            ns
        }
        fn ip(&self, args: &[&str]) {
            let st = std::process::Command::new("ip").args(args).status();
            assert!(st.is_ok_and(|s| s.success()), "ip {args:?}");
        }
        fn sh(&self, cmd: &str) -> String {
            let out = std::process::Command::new("ip")
                .args(["netns", "exec", &self.0, "sh", "-c", cmd])
                .output()
                .unwrap_or_else(|e| panic!("{cmd}: {e}"));
            assert!(
                out.status.success(),
                "{cmd}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
        fn ifindex(&self, dev: &str) -> u32 {
            self.sh(&format!("cat /sys/class/net/{dev}/ifindex"))
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("ifindex of {dev}"))
        }
    }

    impl Drop for Ns {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &self.0])
                .status();
        }
    }

    /// A batch spanning several `sendmsg` buffers, with an op on a vanished
    /// device in the middle: exactly that op is reported, all others are in
    /// the kernel. Root only; works in its own namespace.
    #[test]
    fn failing_op_mid_batch_is_the_only_failure_and_the_rest_applies() {
        // SAFETY: geteuid(2) cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let ns = Ns::new();
        ns.sh("ip link add br1 type bridge && ip link add vx1 type vxlan id 1 dstport 4789 local 10.0.0.1 nolearning \
               && ip link set vx1 master br1 && ip link set vx1 up && ip link set br1 up \
               && ip link add gone type bridge");
        let (vx, br, gone) = (ns.ifindex("vx1"), ns.ifindex("br1"), ns.ifindex("gone"));
        ns.sh("ip link del gone");
        let path = format!("/run/netns/{}", ns.0);
        let d = std::thread::spawn(move || {
            let f = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            // SAFETY: valid namespace fd; affects only this thread.
            let rc =
                unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            let mut w = RawWriter::new(open().unwrap_or_else(|e| panic!("socket: {e}")), 245);
            let n = 5000u32;
            let mut ops: Vec<Op> = (0..n)
                .map(|i| Op::MacUpsert {
                    vni: vni(1),
                    vxlan: vx,
                    bridge: br,
                    mac: MacAddress([2, 0x30, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8]),
                    vtep: IpAddr::from([10, 0, 1, (i % 200) as u8 + 1]),
                })
                .collect();
            ops.insert(
                3000,
                Op::FloodAdd {
                    vni: vni(1),
                    vxlan: gone,
                    vtep: ip("10.0.0.2"),
                },
            );
            let mut bytes = Vec::new();
            encode(&mut bytes, &ops[0], 0, 245);
            assert!(
                bytes.len() * 3000 > SEND_CHUNK,
                "failing op not in a later buffer"
            );
            w.write(Batch {
                ops,
                intents: Vec::new(),
                why: "test",
            })
        })
        .join()
        .unwrap_or_else(|_| panic!("writer thread panicked"));
        assert!(!d.unverified);
        assert_eq!(
            d.failures
                .iter()
                .map(|f| (f.index, f.error.clone()))
                .collect::<Vec<_>>(),
            vec![(3000, NetlinkError::Kernel(libc::ENODEV))]
        );
        let fdb = ns.sh("bridge fdb show dev vx1");
        let selfrows = fdb
            .lines()
            .filter(|l| l.contains(" dst 10.0.1.") && l.contains("extern_learn"))
            .count();
        let masters = fdb
            .lines()
            .filter(|l| l.contains("master br1") && l.contains("extern_learn"))
            .count();
        assert_eq!((selfrows, masters), (5000, 5000));
    }
}
