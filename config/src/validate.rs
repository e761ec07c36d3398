//! Text -> RawConfig -> Config, collecting every problem with its location.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::{Range, RangeInclusive};
use std::path::PathBuf;
use std::time::Duration;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::error::{ConfigError, Problem, ProblemKind, Sink};
use crate::raw::*;
use crate::types::*;
use crate::DEFAULT_SOCKET;

/// Defaults, also quoted in docs/config.md.
pub(crate) const DEFAULT_LISTEN_PORT: u16 = 179;
pub(crate) const DEFAULT_HOLD_TIME: u64 = 90;
pub(crate) const DEFAULT_CONNECT_RETRY: u64 = 30;
pub(crate) const DEFAULT_RESTART_TIME: u64 = 120;
/// Long enough for a restarted peer to reconnect to a route reflector and
/// re-advertise (about 1-2 s measured through FRR 8.4), short enough that
/// a vanished VM's MAC does not linger.
pub(crate) const DEFAULT_WITHDRAW_HOLD: Duration = Duration::from_secs(5);
pub(crate) const DEFAULT_DSTPORT: u16 = 4789;
pub(crate) const DEFAULT_DUP_MAX_MOVES: u32 = 5;
pub(crate) const DEFAULT_DUP_WINDOW: u64 = 180;
pub(crate) const DEFAULT_RECONCILE_INTERVAL: u64 = 300;
pub(crate) const DEFAULT_PROTOCOL: u8 = 245;

/// Linux IFNAMSIZ is 16 including the terminating NUL.
const IFNAME_MAX: usize = 15;
/// sun_path is 108 bytes including the NUL.
const SOCKET_PATH_MAX: usize = 107;
/// TCP_MD5SIG_MAXKEYLEN.
const MD5_KEY_MAX: usize = 80;
const AS_TRANS: i64 = 23456;

pub(crate) fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
    // 1. TOML syntax: report every error the parser can recover from.
    let (doc, syntax_errors) = DeTable::parse_recoverable(text);
    if !syntax_errors.is_empty() {
        let mut sink = Sink::new(file, text);
        for e in syntax_errors {
            let span = e.span().unwrap_or(0..0);
            let key = key_path_at(doc.get_ref(), span.start).unwrap_or_default();
            sink.push(span, key, ProblemKind::Syntax(e.message().to_string()));
        }
        return Err(ConfigError::Invalid {
            problems: sink.problems,
        });
    }

    // 2. Schema: unknown keys and wrong value types.
    let raw: RawConfig = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let key = key_path_at(doc.get_ref(), span.start).unwrap_or_default();
            let mut sink = Sink::new(file, text);
            sink.push(span, key, ProblemKind::Schema(e.message().to_string()));
            return Err(ConfigError::Invalid {
                problems: sink.problems,
            });
        }
    };

    // 3. Semantics: collect everything.
    let mut sink = Sink::new(file, text);
    let config = build(&raw, &mut sink);
    if sink.problems.is_empty() {
        Ok(config)
    } else {
        sink.problems
            .sort_by_key(|p: &Problem| (p.location.line, p.location.column));
        Err(ConfigError::Invalid {
            problems: sink.problems,
        })
    }
}

/// The key path (`vni[1].flood`) of the innermost key or value whose span
/// holds `offset`.
fn key_path_at(table: &DeTable<'_>, offset: usize) -> Option<String> {
    let mut best: Option<(usize, String)> = None;
    walk_table(table, offset, "", &mut best);
    best.map(|(_, p)| p)
}

fn contains(span: &Range<usize>, offset: usize) -> bool {
    span.start <= offset && (offset < span.end || (span.is_empty() && offset == span.start))
}

fn consider(best: &mut Option<(usize, String)>, span: &Range<usize>, offset: usize, path: &str) {
    if contains(span, offset) {
        let width = span.len();
        if best.as_ref().is_none_or(|(w, _)| width <= *w) {
            *best = Some((width, path.to_string()));
        }
    }
}

fn walk_table(
    table: &DeTable<'_>,
    offset: usize,
    prefix: &str,
    best: &mut Option<(usize, String)>,
) {
    for (k, v) in table.iter() {
        let path = if prefix.is_empty() {
            k.get_ref().to_string()
        } else {
            format!("{prefix}.{}", k.get_ref())
        };
        consider(best, &k.span(), offset, &path);
        walk_value(v, offset, &path, best);
    }
}

fn walk_value(
    v: &Spanned<DeValue<'_>>,
    offset: usize,
    path: &str,
    best: &mut Option<(usize, String)>,
) {
    match v.get_ref() {
        DeValue::Table(t) => walk_table(t, offset, path, best),
        DeValue::Array(a) => {
            for (i, item) in a.iter().enumerate() {
                let p = format!("{path}[{i}]");
                consider(best, &item.span(), offset, &p);
                walk_value(item, offset, &p, best);
            }
        }
        _ => consider(best, &v.span(), offset, path),
    }
}

// ---------------------------------------------------------------------------
// Field helpers

fn secs(n: i64) -> Duration {
    Duration::from_secs(u64::try_from(n).unwrap_or(0))
}

/// An integer within `range`, or a problem.
fn int_in(
    sink: &mut Sink<'_>,
    field: &S<i64>,
    key: &str,
    range: RangeInclusive<i64>,
    unit: &str,
) -> Option<i64> {
    let f = field.as_ref()?;
    let v = *f.get_ref();
    if range.contains(&v) {
        Some(v)
    } else {
        sink.invalid(
            f.span(),
            key,
            format!(
                "{v}{unit} is out of range: must be {}..={}{unit}",
                range.start(),
                range.end()
            ),
        );
        None
    }
}

fn required<'r, T>(
    sink: &mut Sink<'_>,
    field: &'r S<T>,
    parent: &Range<usize>,
    key: &str,
) -> Option<&'r Spanned<T>> {
    if field.is_none() {
        sink.push(parent.clone(), key, ProblemKind::Missing);
    }
    field.as_ref()
}

fn parse_ip(sink: &mut Sink<'_>, f: &Spanned<String>, key: &str) -> Option<IpAddr> {
    match f.get_ref().trim().parse::<IpAddr>() {
        Ok(ip) => Some(ip),
        Err(_) => {
            sink.invalid(
                f.span(),
                key,
                format!("`{}` is not an IP address", f.get_ref()),
            );
            None
        }
    }
}

/// A unicast host address usable as a BGP or VXLAN endpoint.
fn unicast_ip(sink: &mut Sink<'_>, f: &Spanned<String>, key: &str) -> Option<IpAddr> {
    let ip = parse_ip(sink, f, key)?;
    if ip.is_unspecified() || ip.is_multicast() || ip == IpAddr::V4(Ipv4Addr::BROADCAST) {
        sink.invalid(f.span(), key, format!("{ip} is not a unicast host address"));
        return None;
    }
    Some(ip)
}

pub(crate) fn check_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("interface name is empty".into());
    }
    if name.len() > IFNAME_MAX {
        return Err(format!(
            "interface name `{name}` is {} bytes long; Linux allows at most {IFNAME_MAX} (IFNAMSIZ)",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("`{name}` is not a valid interface name"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| *c == '/' || *c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "interface name `{name}` contains {c:?}, which Linux does not allow"
        ));
    }
    Ok(())
}

fn ifname(sink: &mut Sink<'_>, f: &Spanned<String>, key: &str) -> Option<String> {
    match check_ifname(f.get_ref()) {
        Ok(()) => Some(f.get_ref().clone()),
        Err(m) => {
            sink.invalid(f.span(), key, m);
            None
        }
    }
}

fn as_number(sink: &mut Sink<'_>, f: &S<i64>, key: &str) -> Option<u32> {
    let f = f.as_ref()?;
    let v = *f.get_ref();
    if v == AS_TRANS {
        sink.invalid(
            f.span(),
            key,
            "23456 is AS_TRANS (RFC 6793), a placeholder, not a real AS number",
        );
        return None;
    }
    let v = int_in(sink, &Some(f.clone()), key, 1..=i64::from(u32::MAX), "")?;
    u32::try_from(v).ok()
}

fn family(ip: &IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

// ---------------------------------------------------------------------------

fn build(raw: &RawConfig, sink: &mut Sink<'_>) -> Config {
    let whole = 0..0;
    let vtep = match required(sink, &raw.vtep, &whole, "vtep") {
        Some(v) => build_vtep(v, sink),
        None => None,
    };
    let bgp = match required(sink, &raw.bgp, &whole, "bgp") {
        Some(b) => build_bgp(b, vtep.as_ref(), sink),
        None => None,
    };
    let vnis = build_vnis(&raw.vni, vtep.as_ref(), sink);
    let control = build_control(raw.control.as_ref(), sink);
    let mac = build_mac(raw.mac.as_ref(), sink);
    let dataplane = build_dataplane(raw.dataplane.as_ref(), sink);
    let log = build_log(raw.log.as_ref(), sink);

    let bgp = bgp.unwrap_or_else(|| BgpConfig {
        asn: 0,
        router_id: Ipv4Addr::UNSPECIFIED,
        local_address: None,
        listen_port: None,
        hold_time: Duration::ZERO,
        keepalive: Duration::ZERO,
        connect_retry: Duration::ZERO,
        graceful_restart: GracefulRestartConfig {
            enable: false,
            restart_time: Duration::ZERO,
            withdraw_hold: Duration::ZERO,
        },
        neighbors: Vec::new(),
    });
    let vtep = vtep.unwrap_or(VtepConfig {
        local_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        dstport: DEFAULT_DSTPORT,
        mtu: None,
    });
    Config {
        bgp,
        vtep,
        vnis,
        control,
        mac,
        dataplane,
        log,
    }
}

fn build_vtep(v: &Spanned<RawVtep>, sink: &mut Sink<'_>) -> Option<VtepConfig> {
    let span = v.span();
    let r = v.get_ref();
    let local_ip = required(sink, &r.local_ip, &span, "vtep.local_ip")
        .and_then(|f| unicast_ip(sink, f, "vtep.local_ip"));
    let dstport = int_in(sink, &r.dstport, "vtep.dstport", 1..=65535, "")
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(DEFAULT_DSTPORT);
    // 68 is the IPv4 minimum MTU (RFC 791); the kernel enforces the same.
    let mtu = int_in(sink, &r.mtu, "vtep.mtu", 68..=65535, "").and_then(|m| u32::try_from(m).ok());
    Some(VtepConfig {
        local_ip: local_ip?,
        dstport,
        mtu,
    })
}

/// hold_time must be 0 or at least 3 seconds (RFC 4271 §4.2).
fn hold_time(sink: &mut Sink<'_>, f: &S<i64>, key: &str) -> Option<i64> {
    let h = int_in(sink, f, key, 0..=65535, " s")?;
    if h == 1 || h == 2 {
        if let Some(f) = f {
            sink.invalid(
                f.span(),
                key,
                format!("{h} s is not allowed: the hold time must be 0 (no keepalives) or at least 3 s (RFC 4271 §4.2)"),
            );
        }
        return None;
    }
    Some(h)
}

fn build_bgp(
    b: &Spanned<RawBgp>,
    vtep: Option<&VtepConfig>,
    sink: &mut Sink<'_>,
) -> Option<BgpConfig> {
    let span = b.span();
    let r = b.get_ref();
    let asn = if required(sink, &r.asn, &span, "bgp.asn").is_some() {
        as_number(sink, &r.asn, "bgp.asn")
    } else {
        None
    };
    let router_id = required(sink, &r.router_id, &span, "bgp.router_id").and_then(|f| {
        match f.get_ref().trim().parse::<Ipv4Addr>() {
            Ok(ip) if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() => {
                sink.invalid(
                    f.span(),
                    "bgp.router_id",
                    format!("{ip} cannot be a BGP identifier (must be a unicast IPv4 address)"),
                );
                None
            }
            Ok(ip) => Some(ip),
            Err(_) => {
                sink.invalid(
                    f.span(),
                    "bgp.router_id",
                    format!(
                        "`{}` is not an IPv4 address; the BGP identifier is 4 bytes (RFC 4271 §4.2), even on IPv6-only hosts",
                        f.get_ref()
                    ),
                );
                None
            }
        }
    });
    let local_address = r
        .local_address
        .as_ref()
        .and_then(|f| unicast_ip(sink, f, "bgp.local_address"));
    let listen_port = int_in(sink, &r.listen_port, "bgp.listen_port", 0..=65535, "")
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(DEFAULT_LISTEN_PORT);
    let hold = hold_time(sink, &r.hold_time, "bgp.hold_time")
        .map(|h| h as u64)
        .unwrap_or(DEFAULT_HOLD_TIME);
    let keepalive = match &r.keepalive {
        None => hold / 3,
        Some(f) => {
            let k = *f.get_ref();
            if hold == 0 && k != 0 {
                sink.invalid(
                    f.span(),
                    "bgp.keepalive",
                    "keepalive must be 0 when bgp.hold_time is 0 (RFC 4271 §4.4)",
                );
                0
            } else if hold != 0 && (k < 1 || k as u64 >= hold) {
                sink.invalid(
                    f.span(),
                    "bgp.keepalive",
                    format!(
                        "{k} s is out of range: must be 1..{hold} s (less than bgp.hold_time; one third of it is usual)"
                    ),
                );
                hold / 3
            } else {
                k as u64
            }
        }
    };
    let connect_retry = int_in(sink, &r.connect_retry, "bgp.connect_retry", 1..=65535, " s")
        .map(|s| s as u64)
        .unwrap_or(DEFAULT_CONNECT_RETRY);
    let graceful_restart = match &r.graceful_restart {
        // On by default: a restart of evpnd (an upgrade) must not make every
        // other VTEP drop this host's MACs (RFC 4724).
        None => GracefulRestartConfig {
            enable: true,
            restart_time: Duration::from_secs(DEFAULT_RESTART_TIME),
            withdraw_hold: DEFAULT_WITHDRAW_HOLD,
        },
        Some(g) => {
            let g = g.get_ref();
            GracefulRestartConfig {
                enable: g.enable.as_ref().map(|e| *e.get_ref()).unwrap_or(true),
                // The capability has a 12-bit restart time (RFC 4724 §3).
                restart_time: secs(
                    int_in(
                        sink,
                        &g.restart_time,
                        "bgp.graceful_restart.restart_time",
                        1..=4095,
                        " s",
                    )
                    .unwrap_or(DEFAULT_RESTART_TIME as i64),
                ),
                withdraw_hold: int_in(
                    sink,
                    &g.withdraw_hold_ms,
                    "bgp.graceful_restart.withdraw_hold_ms",
                    0..=60_000,
                    " ms",
                )
                .map(|ms| Duration::from_millis(ms as u64))
                .unwrap_or(DEFAULT_WITHDRAW_HOLD),
            }
        }
    };

    let defaults = NeighborDefaults {
        asn,
        local_address,
        listen_port,
        hold,
        keepalive,
        connect_retry,
        local_address_field: r.local_address.as_ref(),
        vtep_ip: vtep.map(|v| v.local_ip),
    };
    let mut seen: HashMap<IpAddr, (String, usize)> = HashMap::new();
    let mut neighbors = Vec::new();
    for (i, n) in r.neighbor.iter().enumerate() {
        if let Some(nc) = build_neighbor(i, n, &defaults, &mut seen, sink) {
            neighbors.push(nc);
        }
    }

    Some(BgpConfig {
        asn: asn?,
        router_id: router_id?,
        local_address,
        listen_port: (listen_port != 0).then_some(listen_port),
        hold_time: Duration::from_secs(hold),
        keepalive: Duration::from_secs(keepalive),
        connect_retry: Duration::from_secs(connect_retry),
        graceful_restart,
        neighbors,
    })
}

struct NeighborDefaults<'r> {
    asn: Option<u32>,
    local_address: Option<IpAddr>,
    listen_port: u16,
    hold: u64,
    keepalive: u64,
    connect_retry: u64,
    local_address_field: Option<&'r Spanned<String>>,
    vtep_ip: Option<IpAddr>,
}

fn build_neighbor(
    i: usize,
    n: &Spanned<RawNeighbor>,
    d: &NeighborDefaults<'_>,
    seen: &mut HashMap<IpAddr, (String, usize)>,
    sink: &mut Sink<'_>,
) -> Option<NeighborConfig> {
    let base = format!("bgp.neighbor[{i}]");
    let span = n.span();
    let r = n.get_ref();
    let key = |k: &str| format!("{base}.{k}");

    let address = required(sink, &r.address, &span, &key("address"))
        .and_then(|f| unicast_ip(sink, f, &key("address")).map(|ip| (ip, f.span())));
    if let Some((ip, aspan)) = &address {
        if let Some((first_key, first_line)) = seen.get(ip) {
            sink.push(
                aspan.clone(),
                key("address"),
                ProblemKind::Duplicate {
                    what: format!("neighbor {ip}"),
                    first_key: first_key.clone(),
                    first_line: *first_line,
                },
            );
        } else {
            seen.insert(*ip, (key("address"), sink.line_of(aspan)));
        }
        if Some(*ip) == d.local_address {
            sink.invalid(
                aspan.clone(),
                key("address"),
                format!(
                    "{ip} is this host's own bgp.local_address; a neighbor must be another router"
                ),
            );
        } else if d.local_address.is_none() && Some(*ip) == d.vtep_ip {
            sink.invalid(
                aspan.clone(),
                key("address"),
                format!("{ip} is this host's own vtep.local_ip; a neighbor must be another router"),
            );
        }
        if let (Some(la), Some(laf)) = (d.local_address, d.local_address_field) {
            if la.is_ipv4() != ip.is_ipv4() && la != *ip {
                sink.invalid(
                    aspan.clone(),
                    key("address"),
                    format!(
                        "{} neighbor {ip} cannot be reached from {} bgp.local_address {la} (line {}); drop local_address or use an address of the same family",
                        family(ip),
                        family(&la),
                        sink.line_of(&laf.span())
                    ),
                );
            }
        }
    }

    let remote_asn = if r.remote_asn.is_some() {
        as_number(sink, &r.remote_asn, &key("remote_asn"))
    } else {
        d.asn
    };
    let port = int_in(sink, &r.port, &key("port"), 1..=65535, "")
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(DEFAULT_LISTEN_PORT);
    let passive = r.passive.as_ref().map(|p| *p.get_ref()).unwrap_or(false);
    if passive && d.listen_port == 0 {
        if let Some(p) = &r.passive {
            sink.invalid(
                p.span(),
                key("passive"),
                "a passive neighbor must connect to us, but bgp.listen_port = 0 disables listening",
            );
        }
    }
    let (hold, keepalive) = if r.hold_time.is_some() {
        let h = hold_time(sink, &r.hold_time, &key("hold_time")).map(|h| h as u64);
        let h = h.unwrap_or(d.hold);
        (h, h / 3)
    } else {
        (d.hold, d.keepalive)
    };
    let password = r.password.as_ref().and_then(|p| {
        let len = p.get_ref().len();
        if len == 0 || len > MD5_KEY_MAX {
            sink.invalid(
                p.span(),
                key("password"),
                format!("TCP-MD5 key is {len} bytes; it must be 1..={MD5_KEY_MAX} bytes (TCP_MD5SIG_MAXKEYLEN)"),
            );
            None
        } else {
            Some(p.get_ref().clone())
        }
    });
    let description = r.description.as_ref().map(|d| d.get_ref().clone());
    let address_families = match &r.address_families {
        None => vec![AddressFamily::L2vpnEvpn],
        Some(list) => {
            let mut out = Vec::new();
            if list.get_ref().is_empty() {
                sink.invalid(
                    list.span(),
                    key("address_families"),
                    "the list is empty; a session needs at least one address family (\"l2vpn-evpn\")",
                );
            }
            for (j, af) in list.get_ref().iter().enumerate() {
                let k = format!("{base}.address_families[{j}]");
                match AddressFamily::ALL
                    .iter()
                    .find(|(name, _)| *name == af.get_ref().as_str())
                {
                    Some((_, fam)) if out.contains(fam) => {
                        sink.invalid(af.span(), k, format!("`{}` is listed twice", af.get_ref()))
                    }
                    Some((_, fam)) => out.push(*fam),
                    None => sink.invalid(
                        af.span(),
                        k,
                        format!(
                            "unknown address family `{}`; supported: {}",
                            af.get_ref(),
                            AddressFamily::ALL
                                .iter()
                                .map(|(n, _)| format!("\"{n}\""))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ),
                }
            }
            out
        }
    };

    Some(NeighborConfig {
        address: address?.0,
        remote_asn: remote_asn?,
        port,
        passive,
        hold_time: Duration::from_secs(hold),
        keepalive: Duration::from_secs(keepalive),
        connect_retry: Duration::from_secs(d.connect_retry),
        local_address: d.local_address,
        password,
        description,
        address_families,
    })
}

fn build_vnis(
    vnis: &[Spanned<RawVni>],
    vtep: Option<&VtepConfig>,
    sink: &mut Sink<'_>,
) -> Vec<VniConfig> {
    let mut ids: HashMap<u32, (String, usize)> = HashMap::new();
    // Bridge, vxlan and vrf names share the kernel's one interface namespace.
    let mut names: HashMap<String, (String, usize)> = HashMap::new();
    let mut out = Vec::new();
    for (i, v) in vnis.iter().enumerate() {
        if let Some(vc) = build_vni(i, v, vtep, &mut ids, &mut names, sink) {
            out.push(vc);
        }
    }
    out
}

fn build_vni(
    i: usize,
    v: &Spanned<RawVni>,
    vtep: Option<&VtepConfig>,
    ids: &mut HashMap<u32, (String, usize)>,
    names: &mut HashMap<String, (String, usize)>,
    sink: &mut Sink<'_>,
) -> Option<VniConfig> {
    let base = format!("vni[{i}]");
    let key = |k: &str| format!("{base}.{k}");
    let span = v.span();
    let r = v.get_ref();

    // VNI is a 24-bit field (RFC 7348 §5); 0 is not used by FRR or Linux tools.
    let id = if required(sink, &r.id, &span, &key("id")).is_some() {
        int_in(sink, &r.id, &key("id"), 1..=16_777_215, "").and_then(|x| u32::try_from(x).ok())
    } else {
        None
    };
    if let (Some(id), Some(f)) = (id, &r.id) {
        if let Some((first_key, first_line)) = ids.get(&id) {
            sink.push(
                f.span(),
                key("id"),
                ProblemKind::Duplicate {
                    what: format!("VNI {id}"),
                    first_key: first_key.clone(),
                    first_line: *first_line,
                },
            );
        } else {
            ids.insert(id, (key("id"), sink.line_of(&f.span())));
        }
    }

    let mut claim_name = |sink: &mut Sink<'_>, f: &Spanned<String>, k: String, role: &str| {
        let name = f.get_ref();
        if let Some((first_key, first_line)) = names.get(name) {
            sink.invalid(
                f.span(),
                k,
                format!(
                    "{role} `{name}` is already used by `{first_key}` (line {first_line}); each VNI needs its own bridge and vxlan device, because the bridge's forwarding table is what evpnd keeps in sync with that one VNI (evpnd does not use VLAN-aware bridges)"
                ),
            );
        } else {
            names.insert(name.clone(), (k, sink.line_of(&f.span())));
        }
    };

    let bridge = required(sink, &r.bridge, &span, &key("bridge")).and_then(|f| {
        let n = ifname(sink, f, &key("bridge"))?;
        claim_name(sink, f, key("bridge"), "bridge");
        Some(n)
    });
    let vxlan = match &r.vxlan {
        Some(f) => ifname(sink, f, &key("vxlan")).inspect(|_| {
            claim_name(sink, f, key("vxlan"), "vxlan device");
        }),
        None => id.map(|id| {
            let name = format!("vxlan{id}");
            // Defaulted names still must not collide; point at the VNI id.
            if let Some(f) = &r.id {
                let sp = Spanned::new(f.span(), name.clone());
                claim_name(sink, &sp, key("vxlan"), "default vxlan device");
            }
            name
        }),
    };
    let vrf = r.vrf.as_ref().and_then(|f| ifname(sink, f, &key("vrf")));
    if let (Some(vrf), Some(f)) = (&vrf, &r.vrf) {
        if let Some((first_key, first_line)) = names.get(vrf) {
            if !first_key.ends_with(".vrf") {
                sink.invalid(
                    f.span(),
                    key("vrf"),
                    format!(
                        "VRF name `{vrf}` is already the name of `{first_key}` (line {first_line})"
                    ),
                );
            }
        }
    }

    let create = r.create.as_ref().map(|c| *c.get_ref()).unwrap_or(false);
    let local_ip = vtep.map(|v| v.local_ip);
    let flood = build_flood(&base, r, &span, local_ip, sink);

    let rd = match &r.rd {
        None => Some(RdSetting::Auto),
        Some(f) if f.get_ref() == "auto" => Some(RdSetting::Auto),
        Some(f) => match AdminValue::parse(f.get_ref()) {
            Ok(v) => Some(RdSetting::Explicit(v)),
            Err(m) => {
                sink.invalid(
                    f.span(),
                    key("rd"),
                    format!("{m}; use \"auto\", \"ASN:N\" or \"A.B.C.D:N\""),
                );
                None
            }
        },
    };
    let both = r
        .route_targets
        .as_ref()
        .and_then(|f| rt_setting(sink, f, &key("route_targets")));
    let import_rt = match &r.import_rt {
        Some(f) => rt_setting(sink, f, &key("import_rt")),
        None => Some(both.clone().unwrap_or(RtSetting::Auto)),
    };
    let export_rt = match &r.export_rt {
        Some(f) => rt_setting(sink, f, &key("export_rt")),
        None => Some(both.unwrap_or(RtSetting::Auto)),
    };

    Some(VniConfig {
        id: id?,
        bridge: bridge?,
        vxlan: vxlan?,
        create,
        flood: flood?,
        rd: rd?,
        import_rt: import_rt?,
        export_rt: export_rt?,
        vrf,
        advertise_local: r
            .advertise_local
            .as_ref()
            .map(|b| *b.get_ref())
            .unwrap_or(true),
        arp_suppress: r
            .arp_suppress
            .as_ref()
            .map(|b| *b.get_ref())
            .unwrap_or(true),
    })
}

fn build_flood(
    base: &str,
    r: &RawVni,
    span: &Range<usize>,
    local_ip: Option<IpAddr>,
    sink: &mut Sink<'_>,
) -> Option<FloodMode> {
    let key = |k: &str| format!("{base}.{k}");
    let mode = r.flood.as_ref().map(|f| (f.get_ref().as_str(), f.span()));
    let mode_name = mode
        .as_ref()
        .map(|(m, _)| *m)
        .unwrap_or("ingress-replication");
    let mode_span = mode
        .as_ref()
        .map(|(_, s)| s.clone())
        .unwrap_or(span.clone());

    // Keys that only belong to one mode.
    if mode_name != "static" {
        if let Some(f) = &r.static_vteps {
            sink.invalid(
                f.span(),
                key("static_vteps"),
                format!("static_vteps is only used with flood = \"static\", but flood is \"{mode_name}\""),
            );
        }
    }
    if mode_name != "multicast" {
        for (k, f) in [("group", &r.group), ("group_dev", &r.group_dev)] {
            if let Some(f) = f {
                sink.invalid(
                    f.span(),
                    key(k),
                    format!(
                        "{k} is only used with flood = \"multicast\", but flood is \"{mode_name}\""
                    ),
                );
            }
        }
    }

    match mode_name {
        "ingress-replication" => Some(FloodMode::IngressReplication),
        "static" => {
            let Some(list) = &r.static_vteps else {
                sink.invalid(
                    mode_span,
                    key("flood"),
                    "flood = \"static\" needs static_vteps = [\"IP\", ...], the VTEPs to replicate to",
                );
                return None;
            };
            if list.get_ref().is_empty() {
                sink.invalid(
                    list.span(),
                    key("static_vteps"),
                    "the list is empty; flood = \"static\" needs at least one VTEP",
                );
                return None;
            }
            let mut vteps: Vec<IpAddr> = Vec::new();
            let mut ok = true;
            for (j, f) in list.get_ref().iter().enumerate() {
                let k = format!("{base}.static_vteps[{j}]");
                let Some(ip) = unicast_ip(sink, f, &k) else {
                    ok = false;
                    continue;
                };
                if let Some(l) = local_ip {
                    if ip == l {
                        sink.invalid(
                            f.span(),
                            k,
                            format!("{ip} is this host's own vtep.local_ip"),
                        );
                        ok = false;
                        continue;
                    }
                    if ip.is_ipv4() != l.is_ipv4() {
                        sink.invalid(
                            f.span(),
                            k,
                            format!(
                                "{} VTEP {ip} does not match the {} vtep.local_ip {l}; a vxlan device uses one address family",
                                family(&ip),
                                family(&l)
                            ),
                        );
                        ok = false;
                        continue;
                    }
                }
                if vteps.contains(&ip) {
                    sink.invalid(f.span(), k, format!("{ip} is listed twice"));
                    ok = false;
                    continue;
                }
                vteps.push(ip);
            }
            ok.then_some(FloodMode::Static { vteps })
        }
        "multicast" => {
            let Some(gf) = &r.group else {
                sink.invalid(
                    mode_span,
                    key("flood"),
                    "flood = \"multicast\" needs group = \"<multicast address>\"",
                );
                return None;
            };
            let group = parse_ip(sink, gf, &key("group"))?;
            if !group.is_multicast() {
                sink.invalid(
                    gf.span(),
                    key("group"),
                    format!("{group} is not a multicast address (224.0.0.0/4 or ff00::/8)"),
                );
                return None;
            }
            if let Some(l) = local_ip {
                if l.is_ipv4() != group.is_ipv4() {
                    sink.invalid(
                        gf.span(),
                        key("group"),
                        format!(
                            "{} group {group} does not match the {} vtep.local_ip {l}",
                            family(&group),
                            family(&l)
                        ),
                    );
                    return None;
                }
            }
            let dev = match &r.group_dev {
                Some(f) => Some(ifname(sink, f, &key("group_dev"))?),
                None => None,
            };
            Some(FloodMode::Multicast { group, dev })
        }
        other => {
            sink.invalid(
                mode_span,
                key("flood"),
                format!("unknown flood mode `{other}`; use \"ingress-replication\", \"static\" or \"multicast\""),
            );
            None
        }
    }
}

fn rt_setting(sink: &mut Sink<'_>, f: &Spanned<toml::Value>, key: &str) -> Option<RtSetting> {
    match f.get_ref() {
        toml::Value::String(s) if s == "auto" => Some(RtSetting::Auto),
        toml::Value::String(s) if s == "auto-rfc8365" => Some(RtSetting::AutoRfc8365),
        toml::Value::String(s) => match AdminValue::parse(s) {
            Ok(v) => Some(RtSetting::List(vec![v])),
            Err(m) => {
                sink.invalid(
                    f.span(),
                    key,
                    format!("{m}; use \"auto\", \"auto-rfc8365\" or a list of \"ASN:N\" / \"A.B.C.D:N\""),
                );
                None
            }
        },
        toml::Value::Array(items) => {
            if items.is_empty() {
                sink.invalid(
                    f.span(),
                    key,
                    "the list is empty; give at least one route target or \"auto\"",
                );
                return None;
            }
            let mut out = Vec::new();
            let mut ok = true;
            for (j, item) in items.iter().enumerate() {
                let k = format!("{key}[{j}]");
                match item {
                    toml::Value::String(s) => match AdminValue::parse(s) {
                        Ok(v) if out.contains(&v) => {
                            sink.invalid(f.span(), k, format!("`{s}` is listed twice"));
                            ok = false;
                        }
                        Ok(v) => out.push(v),
                        Err(m) => {
                            let hint = if s.starts_with("auto") {
                                "; \"auto\" stands alone, not inside a list"
                            } else {
                                ""
                            };
                            sink.invalid(f.span(), k, format!("{m}{hint}"));
                            ok = false;
                        }
                    },
                    other => {
                        sink.invalid(
                            f.span(),
                            k,
                            format!(
                                "expected a string like \"65000:100\", found a {}",
                                other.type_str()
                            ),
                        );
                        ok = false;
                    }
                }
            }
            ok.then_some(RtSetting::List(out))
        }
        other => {
            sink.invalid(
                f.span(),
                key,
                format!(
                    "expected \"auto\", \"auto-rfc8365\" or a list of strings, found a {}",
                    other.type_str()
                ),
            );
            None
        }
    }
}

fn build_control(c: Option<&Spanned<RawControl>>, sink: &mut Sink<'_>) -> ControlConfig {
    let r = c.map(|c| c.get_ref());
    let socket = match r.and_then(|r| r.socket.as_ref()) {
        None => PathBuf::from(DEFAULT_SOCKET),
        Some(f) => {
            let p = f.get_ref();
            if !p.starts_with('/') {
                sink.invalid(
                    f.span(),
                    "control.socket",
                    format!("`{p}` must be an absolute path"),
                );
            } else if p.len() > SOCKET_PATH_MAX {
                sink.invalid(
                    f.span(),
                    "control.socket",
                    format!(
                        "path is {} bytes; a Unix socket path can be at most {SOCKET_PATH_MAX} bytes",
                        p.len()
                    ),
                );
            } else if p.ends_with('/') {
                sink.invalid(
                    f.span(),
                    "control.socket",
                    "names a directory, not a socket file",
                );
            }
            PathBuf::from(p)
        }
    };
    let metrics = r.and_then(|r| r.metrics.as_ref()).and_then(|f| {
        match f.get_ref().trim().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                sink.invalid(
                    f.span(),
                    "control.metrics",
                    format!(
                        "`{}` is not an IP:PORT socket address (e.g. \"127.0.0.1:9179\" or \"[::1]:9179\")",
                        f.get_ref()
                    ),
                );
                None
            }
        }
    });
    ControlConfig { socket, metrics }
}

fn build_mac(m: Option<&Spanned<RawMac>>, sink: &mut Sink<'_>) -> MacConfig {
    let r = m.map(|m| m.get_ref());
    let dup_max_moves = r
        .and_then(|r| {
            int_in(
                sink,
                &r.dup_max_moves,
                "mac.dup_max_moves",
                2..=1_000_000,
                "",
            )
        })
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or(DEFAULT_DUP_MAX_MOVES);
    let dup_window = r
        .and_then(|r| int_in(sink, &r.dup_window, "mac.dup_window", 1..=86_400, " s"))
        .map(secs)
        .unwrap_or(Duration::from_secs(DEFAULT_DUP_WINDOW));
    MacConfig {
        dup_max_moves,
        dup_window,
    }
}

fn build_dataplane(d: Option<&Spanned<RawDataplane>>, sink: &mut Sink<'_>) -> DataplaneConfig {
    let r = d.map(|d| d.get_ref());
    let reconcile = r
        .and_then(|r| {
            int_in(
                sink,
                &r.reconcile_interval,
                "dataplane.reconcile_interval",
                0..=86_400,
                " s",
            )
        })
        .map(|v| v as u64)
        .unwrap_or(DEFAULT_RECONCILE_INTERVAL);
    let protocol = match r.and_then(|r| r.protocol.as_ref()) {
        None => DEFAULT_PROTOCOL,
        Some(f) => {
            let v = *f.get_ref();
            if (0..=4).contains(&v) {
                sink.invalid(
                    f.span(),
                    "dataplane.protocol",
                    format!("{v} is reserved by the kernel (unspec/redirect/kernel/boot/static); pick 5..=255 not used by other daemons"),
                );
                DEFAULT_PROTOCOL
            } else {
                int_in(
                    sink,
                    &r.and_then(|r| r.protocol.clone()),
                    "dataplane.protocol",
                    5..=255,
                    "",
                )
                .and_then(|v| u8::try_from(v).ok())
                .unwrap_or(DEFAULT_PROTOCOL)
            }
        }
    };
    DataplaneConfig {
        reconcile_interval: (reconcile != 0).then(|| Duration::from_secs(reconcile)),
        protocol,
    }
}

fn build_log(l: Option<&Spanned<RawLog>>, sink: &mut Sink<'_>) -> LogConfig {
    let r = l.map(|l| l.get_ref());
    let level = match r.and_then(|r| r.level.as_ref()) {
        None => LogLevel::Info,
        Some(f) => match LogLevel::ALL
            .iter()
            .find(|(n, _)| *n == f.get_ref().as_str())
        {
            Some((_, lv)) => *lv,
            None => {
                sink.invalid(
                    f.span(),
                    "log.level",
                    format!(
                        "unknown level `{}`; use one of \"error\", \"warn\", \"info\", \"debug\", \"trace\"",
                        f.get_ref()
                    ),
                );
                LogLevel::Info
            }
        },
    };
    let format = match r.and_then(|r| r.format.as_ref()) {
        None => LogFormat::Text,
        Some(f) => match f.get_ref().as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                sink.invalid(
                    f.span(),
                    "log.format",
                    format!("unknown format `{other}`; use \"text\" or \"json\""),
                );
                LogFormat::Text
            }
        },
    };
    LogConfig { level, format }
}
