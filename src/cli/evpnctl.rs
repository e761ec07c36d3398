//! evpnctl: query and control a running evpnd over its control socket.
//!
//! Exit codes: 0 success, 1 the daemon answered with an error (or an
//! unexpected answer), 2 usage error, 3 the daemon is not reachable.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::control::{
    request_blocking, ClientError, MacInfo, NeighborInfo, Request, Response, RouteInfo,
    SessionState, StatusInfo, VniInfo, VtepInfo, DEFAULT_SOCKET,
};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;

const EXIT_DAEMON_ERROR: u8 = 1;
const EXIT_NOT_RUNNING: u8 = 3;

#[derive(Parser, Debug)]
#[command(
    name = "evpnctl",
    version,
    about = "Query and control the evpnd BGP EVPN agent"
)]
struct Cli {
    /// Control socket of the daemon.
    #[arg(short = 's', long = "socket", global = true, default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// Seconds to wait for the daemon's answer.
    #[arg(long, global = true, default_value_t = 60)]
    timeout: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show daemon state.
    #[command(subcommand)]
    Show(Show),
    /// Reset or refresh things.
    #[command(subcommand)]
    Clear(Clear),
    /// One-screen summary of the daemon.
    Status,
}

#[derive(Subcommand, Debug)]
enum Show {
    /// BGP sessions (like `show bgp summary`); details for one neighbor.
    Neighbors {
        /// Only this neighbor (detailed view).
        #[arg(long)]
        neighbor: Option<IpAddr>,
        #[arg(value_name = "NEIGHBOR", conflicts_with = "neighbor")]
        address: Option<IpAddr>,
    },
    /// EVPN routes (like `show bgp l2vpn evpn`).
    Routes {
        #[command(flatten)]
        f: VniMacFilter,
        /// Only routes of this EVPN type (2 = MAC/IP, 3 = inclusive multicast).
        #[arg(long = "type", value_parser = clap::value_parser!(u8).range(1..=5))]
        route_type: Option<u8>,
        /// Only paths received from this neighbor.
        #[arg(long)]
        neighbor: Option<IpAddr>,
    },
    /// Configured VNIs (like `show evpn vni`); details with --vni.
    Vnis {
        #[arg(long, value_parser = parse_vni)]
        vni: Option<u32>,
    },
    /// Local and remote MACs (like `show evpn mac vni all`).
    Macs {
        #[command(flatten)]
        f: VniMacFilter,
    },
    /// Remote VTEPs in each VNI's flood list.
    Vteps {
        #[arg(long, value_parser = parse_vni)]
        vni: Option<u32>,
    },
}

#[derive(Args, Debug)]
struct VniMacFilter {
    /// Only this VNI.
    #[arg(long, value_parser = parse_vni)]
    vni: Option<u32>,
    /// Only this MAC (aa:bb:cc:dd:ee:ff, aa-bb-..., or aabb.ccdd.eeff).
    #[arg(long, value_parser = parse_mac)]
    mac: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Clear {
    /// Reset a BGP session (--hard) or ask the peer to resend its routes (--soft, default).
    Neighbor {
        address: IpAddr,
        /// Route refresh, keeps the session (default).
        #[arg(long, conflicts_with = "hard")]
        soft: bool,
        /// Close and re-establish the session.
        #[arg(long)]
        hard: bool,
    },
}

fn parse_vni(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(v) if (1..=16_777_215).contains(&v) => Ok(v),
        _ => Err(format!("`{s}` is not a VNI (1..=16777215)")),
    }
}

/// Normalize a MAC address to lower-case `aa:bb:cc:dd:ee:ff`.
fn parse_mac(s: &str) -> Result<String, String> {
    let hex: String = s
        .chars()
        .filter(|c| !matches!(c, ':' | '-' | '.'))
        .collect();
    let separators_ok = s
        .chars()
        .all(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '-' | '.'));
    if hex.len() != 12 || !separators_ok || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "`{s}` is not a MAC address (e.g. aa:bb:cc:dd:ee:ff)"
        ));
    }
    let lower = hex.to_ascii_lowercase();
    let octets: Vec<&str> = (0..6).filter_map(|i| lower.get(i * 2..i * 2 + 2)).collect();
    Ok(octets.join(":"))
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let req = match &cli.command {
        Command::Status => Request::Status,
        Command::Show(Show::Neighbors { neighbor, address }) => Request::ShowNeighbors {
            neighbor: neighbor.or(*address),
        },
        Command::Show(Show::Routes {
            f,
            route_type,
            neighbor,
        }) => Request::ShowRoutes {
            vni: f.vni,
            mac: f.mac.clone(),
            route_type: *route_type,
            neighbor: *neighbor,
        },
        Command::Show(Show::Vnis { vni }) => Request::ShowVnis { vni: *vni },
        Command::Show(Show::Macs { f }) => Request::ShowMacs {
            vni: f.vni,
            mac: f.mac.clone(),
        },
        Command::Show(Show::Vteps { vni }) => Request::ShowVteps { vni: *vni },
        Command::Clear(Clear::Neighbor { address, hard, .. }) => Request::ClearNeighbor {
            address: *address,
            soft: !hard,
        },
    };

    let timeout = Some(Duration::from_secs(cli.timeout.max(1)));
    let resp = match request_blocking(&cli.socket, &req, timeout) {
        Ok(r) => r,
        Err(e) => {
            let code = match e {
                ClientError::NotRunning { .. } => "not_running",
                ClientError::PermissionDenied { .. } => "permission_denied",
                _ => "connection_failed",
            };
            if cli.json {
                print_json(&ErrorJson::new(code, &e.to_string()));
            }
            eprintln!("evpnctl: {e}");
            return ExitCode::from(EXIT_NOT_RUNNING);
        }
    };

    if let Response::Error { code, message } = &resp {
        if cli.json {
            let code = serde_json::to_value(code)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            print_json(&ErrorJson::new(&code, message));
        }
        eprintln!("evpnctl: evpnd: {code}: {message}");
        return ExitCode::from(EXIT_DAEMON_ERROR);
    }

    let out = match (&cli.command, resp) {
        (Command::Show(Show::Neighbors { .. }), Response::Neighbors { neighbors }) => {
            if cli.json {
                json_string(&neighbors)
            } else if matches!(req, Request::ShowNeighbors { neighbor: Some(_) }) {
                neighbors_detail(&neighbors)
            } else {
                neighbors_table(&neighbors)
            }
        }
        (Command::Show(Show::Routes { .. }), Response::Routes { routes }) => {
            if cli.json {
                json_string(&routes)
            } else {
                routes_table(&routes)
            }
        }
        (Command::Show(Show::Vnis { vni }), Response::Vnis { vnis }) => {
            if cli.json {
                json_string(&vnis)
            } else if vni.is_some() {
                vnis_detail(&vnis)
            } else {
                vnis_table(&vnis)
            }
        }
        (Command::Show(Show::Macs { .. }), Response::Macs { macs }) => {
            if cli.json {
                json_string(&macs)
            } else {
                macs_table(&macs)
            }
        }
        (Command::Show(Show::Vteps { .. }), Response::Vteps { vteps }) => {
            if cli.json {
                json_string(&vteps)
            } else {
                vteps_table(&vteps)
            }
        }
        (Command::Clear(_), Response::Cleared { address, soft }) => {
            if cli.json {
                json_string(&serde_json::json!({ "address": address, "soft": soft }))
            } else if soft {
                format!("Neighbor {address}: route refresh requested\n")
            } else {
                format!("Neighbor {address}: session reset\n")
            }
        }
        (Command::Status, Response::Status(s)) => {
            if cli.json {
                json_string(&s)
            } else {
                status_text(&s)
            }
        }
        (_, other) => {
            let msg = format!("unexpected answer from evpnd: {other:?}");
            if cli.json {
                print_json(&ErrorJson::new("unexpected_response", &msg));
            }
            eprintln!("evpnctl: {msg}");
            return ExitCode::from(EXIT_DAEMON_ERROR);
        }
    };
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`evpnctl ... | head`) is not an error worth reporting.
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
    ExitCode::SUCCESS
}

#[derive(Serialize)]
struct ErrorJson<'a> {
    error: ErrorBody<'a>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: &'a str,
}

impl<'a> ErrorJson<'a> {
    fn new(code: &'a str, message: &'a str) -> Self {
        ErrorJson {
            error: ErrorBody { code, message },
        }
    }
}

fn json_string<T: Serialize>(v: &T) -> String {
    match serde_json::to_string_pretty(v) {
        Ok(mut s) => {
            s.push('\n');
            s
        }
        Err(e) => format!("{{\"error\":{{\"code\":\"internal\",\"message\":\"{e}\"}}}}\n"),
    }
}

fn print_json<T: Serialize>(v: &T) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(json_string(v).as_bytes());
}

// ---------------------------------------------------------------------------
// Human output

/// FRR's Up/Down format: hh:mm:ss, then 1d02h03m, then 1w2d03h.
fn fmt_uptime(secs: u64) -> String {
    let (w, d, h, m, s) = (
        secs / 604_800,
        (secs / 86_400) % 7,
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60,
    );
    if secs < 86_400 {
        format!("{h:02}:{m:02}:{s:02}")
    } else if secs < 604_800 {
        format!("{d}d{h:02}h{m:02}m")
    } else {
        format!("{w}w{d}d{h:02}h")
    }
}

/// Left-aligned columns sized to their content.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref()
        .map(|x| x.to_string())
        .unwrap_or_else(|| "-".into())
}

fn neighbors_table(ns: &[NeighborInfo]) -> String {
    if ns.is_empty() {
        return "No BGP neighbors are configured.\n".into();
    }
    let rows: Vec<Vec<String>> = ns
        .iter()
        .map(|n| {
            let state_pfx = if n.state == SessionState::Established {
                n.prefixes_received.to_string()
            } else {
                n.state.to_string()
            };
            let updown = if n.state == SessionState::Established || n.uptime_secs > 0 {
                fmt_uptime(n.uptime_secs)
            } else {
                "never".into()
            };
            vec![
                n.address.to_string(),
                n.remote_asn.to_string(),
                n.messages_in.to_string(),
                n.messages_out.to_string(),
                updown,
                state_pfx,
                n.prefixes_sent.to_string(),
                n.description.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let established = ns
        .iter()
        .filter(|n| n.state == SessionState::Established)
        .count();
    let mut out = table(
        &[
            "Neighbor",
            "AS",
            "MsgRcvd",
            "MsgSent",
            "Up/Down",
            "State/PfxRcd",
            "PfxSnt",
            "Desc",
        ],
        &rows,
    );
    out.push_str(&format!(
        "\nTotal number of neighbors {}, {established} established\n",
        ns.len()
    ));
    out
}

fn neighbors_detail(ns: &[NeighborInfo]) -> String {
    let mut out = String::new();
    for n in ns {
        out.push_str(&format!(
            "BGP neighbor is {}, remote AS {}\n",
            n.address, n.remote_asn
        ));
        if let Some(d) = &n.description {
            out.push_str(&format!("  Description: {d}\n"));
        }
        out.push_str(&format!(
            "  BGP state = {}, {} {}\n",
            n.state,
            if n.state == SessionState::Established {
                "up for"
            } else {
                "for"
            },
            fmt_uptime(n.uptime_secs)
        ));
        out.push_str(&format!(
            "  Remote router ID {}, hold time {}\n",
            opt(&n.router_id),
            n.hold_time_secs
                .map(|h| format!("{h} s"))
                .unwrap_or_else(|| "-".into())
        ));
        out.push_str(&format!(
            "  Messages: received {}, sent {} (updates: received {}, sent {})\n",
            n.messages_in, n.messages_out, n.updates_in, n.updates_out
        ));
        out.push_str(&format!(
            "  Prefixes: received {}, sent {}\n",
            n.prefixes_received, n.prefixes_sent
        ));
        if let Some(e) = &n.last_error {
            out.push_str(&format!("  Last error: {e}\n"));
        }
        out.push('\n');
    }
    if out.is_empty() {
        out.push_str("No such neighbor.\n");
    }
    out
}

fn routes_table(routes: &[RouteInfo]) -> String {
    if routes.is_empty() {
        return "No EVPN routes.\n".into();
    }
    // Group by RD, keeping the daemon's order inside a group.
    let mut by_rd: BTreeMap<&str, Vec<&RouteInfo>> = BTreeMap::new();
    for r in routes {
        by_rd.entry(r.rd.as_str()).or_default().push(r);
    }
    let width = routes
        .iter()
        .map(|r| r.prefix().len())
        .max()
        .unwrap_or(0)
        .max("Network".len());
    let mut out = String::from(
        "Status codes: * valid, > best, l local\n\
         EVPN type-2 prefix: [2]:[EthTag]:[MAClen]:[MAC]:[IPlen]:[IP]\n\
         EVPN type-3 prefix: [3]:[EthTag]:[IPlen]:[OrigIP]\n\n",
    );
    out.push_str(&format!(
        "     {:<width$}  {:<16}  {:<16}  VNI\n",
        "Network", "Next Hop", "Peer"
    ));
    let mut prefixes = std::collections::HashSet::new();
    for (rd, rs) in &by_rd {
        out.push_str(&format!("Route Distinguisher: {rd}\n"));
        for r in rs {
            prefixes.insert((r.rd.as_str(), r.prefix()));
            let code = format!(
                "*{}{}",
                if r.best { ">" } else { " " },
                if r.local { "l" } else { " " }
            );
            out.push_str(&format!(
                " {code} {:<width$}  {:<16}  {:<16}  {}\n",
                r.prefix(),
                opt(&r.next_hop),
                r.peer.map(|p| p.to_string()).unwrap_or_else(|| if r.local {
                    "local".into()
                } else {
                    "-".into()
                }),
                opt(&r.vni),
            ));
            let mut attrs: Vec<String> = r.ext_communities.clone();
            if let Some(seq) = r.seq {
                if !attrs.iter().any(|a| a.starts_with("MM:")) {
                    attrs.push(format!(
                        "MM:{seq}{}",
                        if r.sticky { ", sticky MAC" } else { "" }
                    ));
                }
            }
            if let Some(o) = r.originator_id {
                attrs.push(format!("Originator: {o}"));
            }
            if !r.cluster_list.is_empty() {
                let cl: Vec<String> = r.cluster_list.iter().map(|c| c.to_string()).collect();
                attrs.push(format!("Cluster list: {}", cl.join(" ")));
            }
            if !attrs.is_empty() {
                out.push_str(&format!("      {}\n", attrs.join(" ")));
            }
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "Displayed {} prefixes ({} paths)\n",
        prefixes.len(),
        routes.len()
    ));
    out
}

fn vnis_table(vnis: &[VniInfo]) -> String {
    if vnis.is_empty() {
        return "No VNIs are configured.\n".into();
    }
    let rows: Vec<Vec<String>> = vnis
        .iter()
        .map(|v| {
            vec![
                v.vni.to_string(),
                v.bridge.clone(),
                v.vxlan.clone(),
                v.state.to_string(),
                v.flood.clone(),
                v.local_macs.to_string(),
                v.remote_macs.to_string(),
                v.vteps.len().to_string(),
            ]
        })
        .collect();
    table(
        &[
            "VNI",
            "Bridge",
            "VxLAN IF",
            "State",
            "Flood",
            "# Local MACs",
            "# Remote MACs",
            "# Remote VTEPs",
        ],
        &rows,
    )
}

fn vnis_detail(vnis: &[VniInfo]) -> String {
    let mut out = String::new();
    for v in vnis {
        let vteps: Vec<String> = v.vteps.iter().map(|t| t.to_string()).collect();
        out.push_str(&format!(
            "VNI: {}\n Bridge: {}\n VxLAN interface: {}\n State: {}\n Flood: {}\n RD: {}\n Import RTs: {}\n Export RTs: {}\n Local MACs: {}\n Remote MACs: {}\n Remote VTEPs: {}\n\n",
            v.vni,
            v.bridge,
            v.vxlan,
            v.state,
            v.flood,
            v.rd,
            v.import_rt.join(" "),
            v.export_rt.join(" "),
            v.local_macs,
            v.remote_macs,
            if vteps.is_empty() { "none".into() } else { vteps.join(" ") },
        ));
    }
    if out.is_empty() {
        out.push_str("No such VNI.\n");
    }
    out
}

fn macs_table(macs: &[MacInfo]) -> String {
    if macs.is_empty() {
        return "No MACs.\n".into();
    }
    let mut by_vni: BTreeMap<u32, Vec<&MacInfo>> = BTreeMap::new();
    for m in macs {
        by_vni.entry(m.vni).or_default().push(m);
    }
    let mut out = String::from("Flags: D=duplicate S=sticky\n");
    for (vni, ms) in by_vni {
        out.push_str(&format!(
            "\nVNI {vni}: {} MACs (local and remote)\n",
            ms.len()
        ));
        let rows: Vec<Vec<String>> = ms
            .iter()
            .map(|m| {
                let flags = format!(
                    "{}{}",
                    if m.duplicate { "D" } else { "" },
                    if m.sticky { "S" } else { "" }
                );
                let where_ = match (&m.vtep, &m.interface) {
                    (Some(v), _) => v.to_string(),
                    (None, Some(i)) => i.clone(),
                    (None, None) => "-".into(),
                };
                let ips: Vec<String> = m.ips.iter().map(|i| i.to_string()).collect();
                vec![
                    m.mac.clone(),
                    m.kind.to_string(),
                    flags,
                    where_,
                    m.seq.to_string(),
                    ips.join(","),
                ]
            })
            .collect();
        out.push_str(&table(
            &["MAC", "Type", "Flags", "Intf/Remote VTEP", "Seq", "IPs"],
            &rows,
        ));
    }
    out
}

fn vteps_table(vteps: &[VtepInfo]) -> String {
    if vteps.is_empty() {
        return "No remote VTEPs.\n".into();
    }
    let rows: Vec<Vec<String>> = vteps
        .iter()
        .map(|v| vec![v.vni.to_string(), v.vtep.to_string(), v.source.to_string()])
        .collect();
    table(&["VNI", "Remote VTEP", "Source"], &rows)
}

fn status_text(s: &StatusInfo) -> String {
    let mut out = format!(
        "evpnd {}, pid {}, up {}\n\
         BGP: AS {}, router ID {}, {}/{} neighbors established\n\
         VTEP: {}, {} VNIs\n\
         Routes: {}; MACs: {} local, {} remote\n",
        s.version,
        s.pid,
        fmt_uptime(s.uptime_secs),
        s.asn,
        s.router_id,
        s.neighbors_established,
        s.neighbors_configured,
        s.vtep_ip,
        s.vnis,
        s.routes,
        s.local_macs,
        s.remote_macs,
    );
    if let Some(c) = &s.config_file {
        out.push_str(&format!("Config: {}\n", c.display()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_forms() {
        assert_eq!(parse_mac("AA:BB:cc:dd:ee:ff").unwrap(), "aa:bb:cc:dd:ee:ff");
        assert_eq!(parse_mac("aabb.ccdd.eeff").unwrap(), "aa:bb:cc:dd:ee:ff");
        assert_eq!(parse_mac("aa-bb-cc-dd-ee-ff").unwrap(), "aa:bb:cc:dd:ee:ff");
        assert!(parse_mac("aa:bb:cc:dd:ee").is_err());
        assert!(parse_mac("gg:bb:cc:dd:ee:ff").is_err());
        assert!(parse_mac("é").is_err());
    }

    #[test]
    fn uptime_like_frr() {
        assert_eq!(fmt_uptime(3723), "01:02:03");
        assert_eq!(fmt_uptime(86_400 + 7200 + 180), "1d02h03m");
        assert_eq!(fmt_uptime(2 * 604_800 + 86_400 + 3600), "2w1d01h");
    }
}
