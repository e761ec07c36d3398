//! Shared by the ops_* tests: a second FRR route reflector next to the
//! fabric's spine.

use std::net::Ipv4Addr;

use evpnd::testbed::{links, Fabric, Frr, FrrConfig, Netns, RrParams};

/// Loopback / router id of the second route reflector.
pub const RR2: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 200);

/// The second RR and its namespace (dropped in this order).
pub struct Rr2 {
    pub frr: Frr,
    /// Guard: removes the namespace on drop.
    pub _ns: Netns,
}

/// Start `rr2` in a namespace of its own hanging off the fabric's spine
/// (10.254.200.0/24), accepting clients from 10.255.0.0/24. With
/// `peer_rr1` it also peers with the spine's RR as one of its clients, so
/// that it reflects the other hosts' routes too (a second path for each).
pub fn start_rr2(fabric: &Fabric, prefix: &str, peer_rr1: bool) -> Rr2 {
    let ns = Netns::new(prefix).unwrap();
    links::veth(&fabric.spine, "r2", &ns, "uplink").unwrap();
    links::addr_add(&fabric.spine, "r2", "10.254.200.1/24").unwrap();
    links::addr_add(&ns, "uplink", "10.254.200.2/24").unwrap();
    links::addr_add(&ns, "lo", &format!("{RR2}/32")).unwrap();
    links::route_add(&ns, "10.255.0.0/24", "10.254.200.1".parse().unwrap()).unwrap();
    links::route_add(
        &fabric.spine,
        &format!("{RR2}/32"),
        "10.254.200.2".parse().unwrap(),
    )
    .unwrap();
    let mut cfg = FrrConfig::route_reflector(&RrParams::new(fabric.asn, RR2, "10.255.0.0/24"));
    if peer_rr1 {
        // A plain iBGP neighbor for rr2 (routes from it go to rr2's
        // clients); rr1 sees rr2 in its listen range as a client.
        let rr1 = "10.255.0.1";
        cfg.bgpd_conf = cfg
            .bgpd_conf
            .replacen(
                " !\n address-family l2vpn evpn\n",
                &format!(
                    " neighbor {rr1} remote-as {asn}\n neighbor {rr1} update-source {RR2}\n !\n address-family l2vpn evpn\n  neighbor {rr1} activate\n",
                    asn = fabric.asn
                ),
                1,
            );
    }
    let frr = Frr::start(&ns.handle(), cfg).unwrap();
    Rr2 { frr, _ns: ns }
}

/// `GET path` from `addr` inside namespace `ns`: a thread of our own joins
/// the namespace (setns only moves the calling thread) and speaks plain
/// HTTP/1.0, so the tests need no curl. Returns (status code, body).
pub fn http_get(ns: &str, addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    let ns_path = format!("/run/netns/{ns}");
    let addr = addr.to_string();
    let path = path.to_string();
    std::thread::spawn(move || -> std::io::Result<(u16, String)> {
        let f = std::fs::File::open(&ns_path)?;
        // SAFETY: a valid namespace fd; only this thread changes namespace.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let sa: std::net::SocketAddr = addr
            .parse()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let t = std::time::Duration::from_secs(5);
        let mut s = std::net::TcpStream::connect_timeout(&sa, t)?;
        s.set_read_timeout(Some(t))?;
        s.set_write_timeout(Some(t))?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
        let mut resp = String::new();
        s.read_to_string(&mut resp)?;
        let status = resp
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = resp
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((status, body))
    })
    .join()
    .unwrap_or_else(|_| Err(std::io::Error::other("http_get thread panicked")))
}
