//! TCP MD5 signatures (RFC 2385) through `setsockopt(TCP_MD5SIG)`; Linux
//! only. libc has the option number but not `struct tcp_md5sig`, so it is
//! declared here as in `include/uapi/linux/tcp.h`.

use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::os::fd::RawFd;

/// Maximum key length accepted by the kernel (TCP_MD5SIG_MAXKEYLEN).
pub const MAX_KEY_LEN: usize = 80;

#[repr(C)]
struct TcpMd5Sig {
    addr: libc::sockaddr_storage,
    flags: u8,
    prefixlen: u8,
    keylen: u16,
    ifindex: u32,
    key: [u8; MAX_KEY_LEN],
}

/// Install (`Some(key)`) or remove (`None`) the MD5 key for `peer` on the
/// socket `fd`. `v6_socket` says the socket is AF_INET6, in which case IPv4
/// peers are written as v4-mapped addresses (how they appear on such a
/// socket).
pub fn set_md5(fd: RawFd, v6_socket: bool, peer: IpAddr, key: Option<&[u8]>) -> io::Result<()> {
    let key = key.unwrap_or(&[]);
    if key.len() > MAX_KEY_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "TCP MD5 key longer than 80 bytes",
        ));
    }
    // SAFETY: all-zero is a valid value of these plain C structs.
    let mut sig: TcpMd5Sig = unsafe { std::mem::zeroed() };
    let peer = match (peer, v6_socket) {
        (IpAddr::V4(a), true) => IpAddr::V6(a.to_ipv6_mapped()),
        (IpAddr::V6(a), false) => match a.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "IPv6 peer on an IPv4 socket",
                ))
            }
        },
        (p, _) => p,
    };
    match peer {
        IpAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for
            // sockaddr_in.
            let sin = unsafe { &mut *(&mut sig.addr as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_addr.s_addr = u32::from(a).to_be();
        }
        IpAddr::V6(a) => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut sig.addr as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_addr.s6_addr = Ipv6Addr::octets(&a);
        }
    }
    sig.keylen = key.len() as u16;
    sig.key[..key.len()].copy_from_slice(key);
    // SAFETY: fd is a socket owned by the caller; the option value is a
    // properly initialised tcp_md5sig of the size given.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_MD5SIG,
            &sig as *const TcpMd5Sig as *const libc::c_void,
            std::mem::size_of::<TcpMd5Sig>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn struct_matches_kernel_size() {
        // sizeof(struct tcp_md5sig) on Linux.
        assert_eq!(std::mem::size_of::<TcpMd5Sig>(), 216);
    }

    #[test]
    fn set_and_clear_on_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer: IpAddr = "127.0.0.9".parse().unwrap();
        set_md5(l.as_raw_fd(), false, peer, Some(b"secret")).unwrap();
        set_md5(l.as_raw_fd(), false, peer, None).unwrap();
        assert!(set_md5(l.as_raw_fd(), false, peer, Some(&[0u8; 81])).is_err());
    }
}
