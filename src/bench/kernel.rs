//! Kernel side of the bench: the namespaces and devices, counting bridge
//! rows, the `bridge -batch` floor, and per-process CPU and memory.

use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::FileExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;

use crate::dataplane::DumpSocket;
use crate::testbed::{links, ChildGuard, Netns, NsHandle, RunDir};

use super::injector::Workload;
use super::BenchError;

/// Name of the bridge port that gets the "local" MACs of the
/// latency test (in the first VNI's bridge).
pub const LOCAL_PORT: &str = "lport";

pub fn bridge_name(vni: u32) -> String {
    format!("br{vni}")
}

pub fn vxlan_name(vni: u32) -> String {
    format!("vxlan{vni}")
}

/// One VTEP namespace: uplink to the injector, every VNI's bridge and
/// vxlan device (made with `ip -batch`, as FRR expects them: nolearning,
/// port learning off, neigh_suppress on), a local port (veth), and an
/// anchor process whose mount namespace has this network namespace's
/// sysfs (`ip netns exec` mounts one), so we can open
/// `/proc/ANCHOR/root/sys/class/net/...` from outside.
pub struct VtepNs {
    pub ns: Netns,
    pub ip: Ipv4Addr,
    pub injector_ip: Ipv4Addr,
    anchor: ChildGuard,
}

impl VtepNs {
    /// `subnet` is the third octet of the 10.99.S.0/24 link.
    pub fn create(
        injector: &NsHandle,
        inj_if: &str,
        subnet: u8,
        w: &Workload,
    ) -> Result<VtepNs, BenchError> {
        let ns = Netns::new("bench")?;
        let ip = Ipv4Addr::new(10, 99, subnet, 2);
        let injector_ip = Ipv4Addr::new(10, 99, subnet, 1);
        links::veth(injector, inj_if, &ns, "uplink")?;
        links::addr_add(injector, inj_if, &format!("{injector_ip}/24"))?;
        links::addr_add(&ns, "uplink", &format!("{ip}/24"))?;
        // The fake remote VTEPs must be reachable in the underlay, or FRR
        // treats the next hops as invalid.
        links::route_add(&ns, "10.200.0.0/16", injector_ip)?;
        let dir = RunDir::new(&format!("bench-{}", ns.name()))?;
        let mut ipb = String::new();
        let mut brb = String::new();
        for k in 0..w.vnis {
            let v = w.vni(k);
            let (br, vx) = (bridge_name(v), vxlan_name(v));
            let _ = writeln!(ipb, "link add {br} type bridge");
            let _ = writeln!(ipb, "link set {br} up");
            let _ = writeln!(
                ipb,
                "link add {vx} type vxlan id {v} dstport 4789 local {ip} nolearning"
            );
            let _ = writeln!(ipb, "link set {vx} master {br}");
            let _ = writeln!(ipb, "link set {vx} up");
            let _ = writeln!(brb, "link set dev {vx} learning off neigh_suppress on");
        }
        // A veth pair (no dummy driver on every kernel); its peer stays up
        // so the port is forwarding.
        let _ = writeln!(ipb, "link add {LOCAL_PORT} type veth peer name lpeer");
        let _ = writeln!(ipb, "link set lpeer up");
        let _ = writeln!(
            ipb,
            "link set {LOCAL_PORT} master {}",
            bridge_name(w.vni(0))
        );
        let _ = writeln!(ipb, "link set {LOCAL_PORT} up");
        let f = dir.write("devices.ip", &ipb)?;
        ns.run(&["ip".as_ref(), "-batch".as_ref(), f.as_os_str()])?;
        let f = dir.write("ports.bridge", &brb)?;
        ns.run(&["bridge".as_ref(), "-batch".as_ref(), f.as_os_str()])?;
        let anchor = ns.spawn(&["sleep", "infinity"], "sysfs anchor", None)?;
        // `ip netns exec` mounts the namespace's sysfs before it execs.
        if let Some(pid) = anchor.pid() {
            let probe = format!("/proc/{pid}/root/sys/class/net/uplink");
            crate::testbed::wait_until(Duration::from_secs(10), "sysfs anchor", || {
                Ok(std::path::Path::new(&probe).exists())
            })?;
        }
        Ok(VtepNs {
            ns,
            ip,
            injector_ip,
            anchor,
        })
    }

    /// Path of a sysfs file of this namespace, as seen from outside.
    fn sys(&self, rel: &str) -> Result<String, BenchError> {
        let pid = self
            .anchor
            .pid()
            .ok_or_else(|| BenchError::Bgp("sysfs anchor process is gone".into()))?;
        Ok(format!("/proc/{pid}/root/sys/class/net/{rel}"))
    }

    /// A counter over every VNI's bridge and the namespace's ARP table.
    pub fn counter(&self, w: &Workload) -> Result<FdbCounter, BenchError> {
        let mut bridges = Vec::new();
        for k in 0..w.vnis {
            let v = w.vni(k);
            let path = self.sys(&format!("{}/brforward", bridge_name(v)))?;
            let file = File::open(&path).map_err(|e| BenchError::io(format!("open {path}"), e))?;
            let pn = self.sys(&format!("{}/brport/port_no", vxlan_name(v)))?;
            let text = std::fs::read_to_string(&pn)
                .map_err(|e| BenchError::io(format!("read {pn}"), e))?;
            let port = u16::from_str_radix(text.trim().trim_start_matches("0x"), 16)
                .map_err(|_| BenchError::Bgp(format!("bad port_no {text:?} in {pn}")))?;
            bridges.push((file, port));
        }
        // /proc/net/arp leaves NOARP entries out, so neighbors are counted
        // with a netlink dump on a socket made inside the namespace.
        let neigh = super::injector::in_netns(self.ns.name(), || {
            DumpSocket::open().map_err(|e| BenchError::io("netlink dump socket", e))
        })?;
        Ok(FdbCounter {
            bridges,
            neigh,
            buf: vec![0u8; 1 << 16],
        })
    }
}

/// Counts the bridge rows pointing at the vxlan port (remote MACs) over
/// all bridges by reading `brforward` (16-byte `struct __fdb_entry` per
/// row), and the workload's neighbor entries (ARP suppression, one per
/// MAC+IP route) with an RTM_GETNEIGH dump. Files are opened once; each
/// count re-reads them from offset 0.
pub struct FdbCounter {
    bridges: Vec<(File, u16)>,
    neigh: DumpSocket,
    buf: Vec<u8>,
}

/// What a VTEP holds of the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub rows: usize,
    pub neighs: usize,
}

impl FdbCounter {
    pub fn count(&mut self) -> Result<usize, BenchError> {
        let mut total = 0;
        for (file, port) in &self.bridges {
            let mut off = 0u64;
            loop {
                let n = file
                    .read_at(&mut self.buf, off)
                    .map_err(|e| BenchError::io("read brforward", e))?;
                if n == 0 {
                    break;
                }
                for rec in self.buf[..n - n % 16].chunks_exact(16) {
                    // mac[6] port_no is_local ageing[4] port_hi pad unused[2]
                    let p = u16::from(rec[6]) | (u16::from(rec[12]) << 8);
                    if rec[7] == 0 && p == *port {
                        total += 1;
                    }
                }
                off += (n - n % 16) as u64;
                if n % 16 != 0 {
                    break;
                }
            }
        }
        Ok(total)
    }

    /// Neighbor entries of the workload (IPv4 in 100.64.0.0/10, any
    /// device) in the namespace: an AF_INET RTM_GETNEIGH dump.
    pub fn count_neighs(&mut self) -> Result<usize, BenchError> {
        let workload = Ipv4Net::new(Ipv4Addr::new(100, 64, 0, 0), 10).unwrap_or_default();
        let mut total = 0;
        self.neigh
            .dump_neigh(libc::AF_INET as u8, |n| {
                if matches!(n.dst, Some(IpAddr::V4(ip)) if workload.contains(&ip)) {
                    total += 1;
                }
            })
            .map_err(|e| BenchError::Bgp(format!("neighbor dump: {e}")))?;
        Ok(total)
    }

    pub fn counts(&mut self) -> Result<Counts, BenchError> {
        Ok(Counts {
            rows: self.count()?,
            neighs: self.count_neighs()?,
        })
    }

    /// Poll until the rows, then the neighbor entries, reach `want`, or
    /// `timeout`; returns the last counts and when `want` was reached.
    /// Polls back off with the cost of a count, so the reader takes at
    /// most a fifth of a core. Neighbors are dumped only once the rows are
    /// complete.
    pub fn wait(
        &mut self,
        timeout: Duration,
        want: Counts,
    ) -> Result<(Counts, Option<Instant>), BenchError> {
        let start = Instant::now();
        let mut rows_done = false;
        loop {
            let t = Instant::now();
            let mut c = Counts {
                rows: self.count()?,
                neighs: 0,
            };
            if c.rows == want.rows {
                rows_done = true;
                c.neighs = self.count_neighs()?;
                if c.neighs == want.neighs {
                    return Ok((c, Some(Instant::now())));
                }
            }
            if start.elapsed() > timeout {
                if !rows_done {
                    c.neighs = self.count_neighs()?;
                }
                return Ok((c, None));
            }
            let cost = t.elapsed();
            std::thread::sleep((cost * 4).max(Duration::from_millis(10)));
        }
    }
}

/// The floor's batch files: `bridge -batch` writing (and deleting) the
/// FDB rows as the daemons do — one message per remote MAC with both the
/// bridge row and the vxlan row (`master self extern_learn`), one flood
/// entry per type-3 — and `ip -batch` writing (and deleting) the neighbor
/// entry both daemons install per MAC+IP route for ARP suppression (FRR's
/// zebra: `extern_learn NOARP proto zebra` on the bridge; evpnd the same
/// with its own protocol number).
pub struct FloorBatches {
    pub fdb_add: String,
    pub fdb_del: String,
    pub neigh_add: String,
    pub neigh_del: String,
}

pub fn floor_batches(w: &Workload) -> FloorBatches {
    let mut add = String::with_capacity(w.macs as usize * 80);
    let mut del = String::with_capacity(w.macs as usize * 60);
    let mut nadd = String::with_capacity(w.macs as usize * 40);
    let mut ndel = String::with_capacity(w.macs as usize * 20);
    for i in 0..w.vteps {
        let vx = vxlan_name(w.vni(i % w.vnis));
        let ip = w.vtep_ip(i);
        let _ = writeln!(
            add,
            "fdb append 00:00:00:00:00:00 dev {vx} dst {ip} self permanent"
        );
        let _ = writeln!(del, "fdb del 00:00:00:00:00:00 dev {vx} dst {ip} self");
    }
    for j in 0..w.macs {
        let (k, vtep) = w.slot(j);
        let vx = vxlan_name(w.vni(k));
        let mac = w.mac(j);
        let _ = writeln!(
            add,
            "fdb replace {mac} dev {vx} dst {} master self extern_learn dynamic",
            w.vtep_ip(vtep)
        );
        let _ = writeln!(del, "fdb del {mac} dev {vx} master self");
        if let Some(ip) = w.ip(j) {
            let br = bridge_name(w.vni(k));
            let _ = writeln!(
                nadd,
                "neigh replace {ip} lladdr {mac} dev {br} nud noarp extern_learn proto 245"
            );
            let _ = writeln!(ndel, "neigh del {ip} dev {br}");
        }
    }
    FloorBatches {
        fdb_add: add,
        fdb_del: del,
        neigh_add: nadd,
        neigh_del: ndel,
    }
}

/// CPU time of children reaped so far (user, system) in seconds.
pub fn children_cpu() -> (f64, f64) {
    // SAFETY: getrusage(2) writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    (t(ru.ru_utime), t(ru.ru_stime))
}

/// User and system CPU seconds of a process (/proc/PID/stat fields 14/15).
pub fn proc_cpu(pid: u32) -> Result<(f64, f64), BenchError> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(|e| BenchError::io(path.clone(), e))?;
    // The command name may contain spaces: fields start after the last ')'.
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| BenchError::Bgp(format!("{path}: no ')'")))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let field = |i: usize| -> Result<f64, BenchError> {
        f.get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .map(|v| v as f64 / hz)
            .ok_or_else(|| BenchError::Bgp(format!("{path}: field {}", i + 3)))
    };
    // After ')': state is field 3, utime 14, stime 15.
    Ok((field(11)?, field(12)?))
}

/// Peak resident set size (VmHWM) of a process in KiB.
pub fn peak_rss_kib(pid: u32) -> Result<u64, BenchError> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(|e| BenchError::io(path.clone(), e))?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| BenchError::Bgp(format!("{path}: no VmHWM")))
}

/// A `bridge -force -batch -` process in a namespace, fed line by line: a
/// command runs as soon as its line is written, without a process start
/// in the measured interval.
pub struct BridgeShell {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl BridgeShell {
    pub fn start(ns: &NsHandle) -> Result<BridgeShell, BenchError> {
        let mut cmd: Command = ns.command(&["bridge", "-force", "-batch", "-"]);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd
            .spawn()
            .map_err(|e| BenchError::io("spawn bridge -batch -", e))?;
        let stdin = child.stdin.take();
        Ok(BridgeShell { child, stdin })
    }

    pub fn line(&mut self, cmd: &str) -> Result<(), BenchError> {
        let s = self
            .stdin
            .as_mut()
            .ok_or_else(|| BenchError::Bgp("bridge shell closed".into()))?;
        s.write_all(format!("{cmd}\n").as_bytes())
            .and_then(|()| s.flush())
            .map_err(|e| BenchError::io("write to bridge -batch", e))
    }
}

impl Drop for BridgeShell {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
