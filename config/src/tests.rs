use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crate::*;

const BASE: &str = r#"[bgp]
asn = 65000
router_id = "10.255.0.2"
local_address = "10.255.0.2"

[[bgp.neighbor]]
address = "10.255.0.1"

[vtep]
local_ip = "10.255.0.2"

[[vni]]
id = 100
bridge = "br100"
"#;

fn problems(text: &str) -> Vec<Problem> {
    match parse(text, "test.toml") {
        Ok(c) => panic!("expected an error, got {c:#?}"),
        Err(e) => {
            // The rendered message carries every problem.
            let s = e.to_string();
            for p in e.problems() {
                assert!(s.contains(&p.to_string()), "{s}");
            }
            e.problems().to_vec()
        }
    }
}

/// Asserts that some problem is at `line` about `key` and mentions `needle`,
/// and that the rendered text names file, line and key.
#[track_caller]
fn assert_problem(text: &str, line: usize, key: &str, needle: &str) {
    let ps = problems(text);
    let hit = ps
        .iter()
        .find(|p| p.location.line == line && p.key == key && p.to_string().contains(needle));
    match hit {
        Some(p) => {
            let s = p.to_string();
            assert!(s.starts_with(&format!("test.toml:{line}:")), "{s}");
            assert!(s.contains(&format!("`{key}`")), "{s}");
        }
        None => panic!(
            "no problem at line {line} key `{key}` containing {needle:?}; got:\n{}",
            ps.iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

fn with(extra: &str) -> String {
    format!("{BASE}{extra}")
}

/// BASE has 14 lines; text appended with `with` starts at line 15.
const NEXT: usize = 15;

#[test]
fn base_parses_with_defaults() {
    let c = parse(BASE, "test.toml").unwrap();
    assert_eq!(c.bgp.asn, 65000);
    assert_eq!(c.bgp.router_id, Ipv4Addr::new(10, 255, 0, 2));
    assert_eq!(c.bgp.listen_port, Some(179));
    assert_eq!(c.bgp.hold_time, Duration::from_secs(90));
    assert_eq!(c.bgp.keepalive, Duration::from_secs(30));
    let n = &c.bgp.neighbors[0];
    assert_eq!(n.remote_asn, 65000);
    assert!(n.is_ibgp(c.bgp.asn));
    assert_eq!(n.port, 179);
    assert_eq!(n.local_address, Some("10.255.0.2".parse().unwrap()));
    assert_eq!(n.address_families, vec![AddressFamily::L2vpnEvpn]);
    assert_eq!(c.vtep.dstport, 4789);
    let v = &c.vnis[0];
    assert_eq!(v.vxlan, "vxlan100");
    assert_eq!(v.flood, FloodMode::IngressReplication);
    assert_eq!(v.rd, RdSetting::Auto);
    assert_eq!(v.import_rt, RtSetting::Auto);
    assert!(v.advertise_local && v.arp_suppress && !v.create);
    assert_eq!(c.control.socket.to_str(), Some(DEFAULT_SOCKET));
    assert_eq!(c.control.metrics, None);
    assert_eq!(c.mac.dup_max_moves, 5);
    assert_eq!(c.mac.dup_window, Duration::from_secs(180));
    assert_eq!(c.log.level, LogLevel::Info);
}

#[test]
fn example_config_parses() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/evpnd.toml");
    let c = load(std::path::Path::new(path)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.bgp.neighbors.len(), 2);
    assert_eq!(c.vnis.len(), 3);
    assert!(c.bgp.graceful_restart.enable);
    assert_eq!(
        c.vnis[1].flood,
        FloodMode::Static {
            vteps: vec!["10.255.0.4".parse().unwrap(), "10.255.0.5".parse().unwrap()]
        }
    );
    assert_eq!(c.vnis[1].vxlan, "vxlan200");
    assert_eq!(
        c.vnis[2].flood,
        FloodMode::Multicast {
            group: "239.1.1.1".parse().unwrap(),
            dev: Some("eth0".into())
        }
    );
    assert_eq!(c.control.metrics, Some("127.0.0.1:9179".parse().unwrap()));
}

#[test]
fn load_missing_file_names_path() {
    let e = load(std::path::Path::new("/nonexistent/evpnd.toml")).unwrap_err();
    assert!(matches!(e, ConfigError::Io { .. }));
    assert!(e.to_string().contains("/nonexistent/evpnd.toml"));
}

// --- syntax and schema -----------------------------------------------------

#[test]
fn syntax_error_has_line() {
    let ps = problems("[bgp]\nasn = 65000\nrouter_id = \"10.0.0.1\n");
    assert!(matches!(ps[0].kind, ProblemKind::Syntax(_)));
    assert_eq!(ps[0].location.line, 3);
    assert!(ps[0].to_string().starts_with("test.toml:3:"));
}

#[test]
fn unknown_top_level_key() {
    assert_problem(&with("[foo]\nx = 1\n"), NEXT, "foo", "unknown field `foo`");
}

#[test]
fn unknown_key_in_vni() {
    let t = with("flod = \"static\"\n");
    assert_problem(&t, NEXT, "vni[0].flod", "unknown field `flod`");
}

#[test]
fn unknown_key_in_second_neighbor() {
    let t = BASE.replace(
        "[vtep]",
        "[[bgp.neighbor]]\naddress = \"10.255.0.9\"\nremote_as = 65001\n\n[vtep]",
    );
    assert_problem(
        &t,
        11,
        "bgp.neighbor[1].remote_as",
        "unknown field `remote_as`",
    );
}

#[test]
fn wrong_type() {
    let t = BASE.replace("asn = 65000", "asn = \"65000\"");
    assert_problem(&t, 2, "bgp.asn", "invalid type");
}

#[test]
fn wrong_type_bool() {
    assert_problem(
        &with("create = \"yes\"\n"),
        NEXT,
        "vni[0].create",
        "invalid type",
    );
}

// --- [bgp] -------------------------------------------------------------------

#[test]
fn missing_sections_and_keys_all_reported() {
    let ps = problems("[bgp]\nasn = 1\n");
    let keys: Vec<_> = ps.iter().map(|p| p.key.as_str()).collect();
    assert!(keys.contains(&"vtep"), "{keys:?}");
    assert!(keys.contains(&"bgp.router_id"), "{keys:?}");
    assert!(ps.iter().all(|p| p.kind == ProblemKind::Missing));
}

#[test]
fn router_id_must_be_ipv4() {
    let t = BASE.replace("router_id = \"10.255.0.2\"", "router_id = \"2001:db8::1\"");
    assert_problem(&t, 3, "bgp.router_id", "not an IPv4 address");
}

#[test]
fn router_id_not_zero() {
    let t = BASE.replace("router_id = \"10.255.0.2\"", "router_id = \"0.0.0.0\"");
    assert_problem(&t, 3, "bgp.router_id", "cannot be a BGP identifier");
}

#[test]
fn asn_zero_and_as_trans() {
    let t = BASE.replace("asn = 65000", "asn = 0");
    assert_problem(&t, 2, "bgp.asn", "out of range");
    let t = BASE.replace("asn = 65000", "asn = 23456");
    assert_problem(&t, 2, "bgp.asn", "AS_TRANS");
    let t = BASE.replace("asn = 65000", "asn = 4294967296");
    assert_problem(&t, 2, "bgp.asn", "out of range");
}

#[test]
fn hold_time_rules() {
    let t = BASE.replace("asn = 65000", "asn = 65000\nhold_time = 2");
    assert_problem(&t, 3, "bgp.hold_time", "at least 3 s");
    let t = BASE.replace("asn = 65000", "asn = 65000\nhold_time = 70000");
    assert_problem(&t, 3, "bgp.hold_time", "out of range");
    let t = BASE.replace("asn = 65000", "asn = 65000\nhold_time = 0");
    assert_eq!(parse(&t, "t").unwrap().bgp.keepalive, Duration::ZERO);
}

#[test]
fn keepalive_must_be_below_hold_time() {
    let t = BASE.replace("asn = 65000", "asn = 65000\nhold_time = 9\nkeepalive = 9");
    assert_problem(&t, 4, "bgp.keepalive", "less than bgp.hold_time");
    let t = BASE.replace("asn = 65000", "asn = 65000\nhold_time = 0\nkeepalive = 5");
    assert_problem(&t, 4, "bgp.keepalive", "must be 0");
}

#[test]
fn graceful_restart_time_is_12_bits() {
    let t = with("[bgp.graceful_restart]\nenable = true\nrestart_time = 5000\n");
    assert_problem(
        &t,
        NEXT + 2,
        "bgp.graceful_restart.restart_time",
        "1..=4095",
    );
}

#[test]
fn withdraw_hold_default_set_and_range() {
    let c = parse(BASE, "t").unwrap();
    assert_eq!(c.bgp.graceful_restart.withdraw_hold, Duration::from_secs(5));
    let t = with("[bgp.graceful_restart]\nwithdraw_hold_ms = 0\n");
    assert_eq!(
        parse(&t, "t").unwrap().bgp.graceful_restart.withdraw_hold,
        Duration::ZERO
    );
    let t = with("[bgp.graceful_restart]\nwithdraw_hold_ms = 60001\n");
    assert_problem(
        &t,
        NEXT + 1,
        "bgp.graceful_restart.withdraw_hold_ms",
        "0..=60000",
    );
}

#[test]
fn duplicate_neighbor() {
    let t = BASE.replace(
        "[vtep]",
        "[[bgp.neighbor]]\naddress = \"10.255.0.1\"\n\n[vtep]",
    );
    assert_problem(
        &t,
        10,
        "bgp.neighbor[1].address",
        "already used by `bgp.neighbor[0].address` (line 7)",
    );
}

#[test]
fn neighbor_equal_to_local_address() {
    let t = BASE.replace("address = \"10.255.0.1\"", "address = \"10.255.0.2\"");
    assert_problem(&t, 7, "bgp.neighbor[0].address", "own bgp.local_address");
}

#[test]
fn neighbor_family_must_match_local_address() {
    let t = BASE.replace("address = \"10.255.0.1\"", "address = \"2001:db8::1\"");
    assert_problem(
        &t,
        7,
        "bgp.neighbor[0].address",
        "IPv6 neighbor 2001:db8::1 cannot be reached from IPv4",
    );
}

#[test]
fn ipv6_neighbor_with_ipv4_vtep_is_fine() {
    let t = BASE
        .replace("local_address = \"10.255.0.2\"\n", "")
        .replace("address = \"10.255.0.1\"", "address = \"2001:db8::1\"");
    let c = parse(&t, "t").unwrap();
    assert_eq!(
        c.bgp.neighbors[0].address,
        "2001:db8::1".parse::<IpAddr>().unwrap()
    );
}

#[test]
fn neighbor_bad_address_and_asn_and_af() {
    let t = BASE.replace(
        "address = \"10.255.0.1\"",
        "address = \"rr1\"\nremote_asn = 23456\naddress_families = [\"ipv4-unicast\"]",
    );
    assert_problem(&t, 7, "bgp.neighbor[0].address", "not an IP address");
    assert_problem(&t, 8, "bgp.neighbor[0].remote_asn", "AS_TRANS");
    assert_problem(
        &t,
        9,
        "bgp.neighbor[0].address_families[0]",
        "unknown address family",
    );
}

#[test]
fn neighbor_missing_address() {
    let t = BASE.replace("address = \"10.255.0.1\"", "description = \"x\"");
    assert_problem(&t, 6, "bgp.neighbor[0].address", "required key is missing");
}

#[test]
fn passive_needs_listening() {
    let t = BASE
        .replace("asn = 65000", "asn = 65000\nlisten_port = 0")
        .replace(
            "address = \"10.255.0.1\"",
            "address = \"10.255.0.1\"\npassive = true",
        );
    assert_problem(&t, 9, "bgp.neighbor[0].passive", "listen_port = 0");
}

#[test]
fn neighbor_overrides() {
    let t = BASE.replace(
        "address = \"10.255.0.1\"",
        "address = \"10.255.0.1\"\nremote_asn = 65001\nport = 1179\nhold_time = 30\npassive = true\npassword = \"k\"",
    );
    let c = parse(&t, "t").unwrap();
    let n = &c.bgp.neighbors[0];
    assert_eq!((n.remote_asn, n.port, n.passive), (65001, 1179, true));
    assert!(!n.is_ibgp(c.bgp.asn));
    assert_eq!(n.hold_time, Duration::from_secs(30));
    assert_eq!(n.keepalive, Duration::from_secs(10));
    assert_eq!(n.password.as_deref(), Some("k"));
}

#[test]
fn password_too_long() {
    let long = "x".repeat(81);
    let t = BASE.replace(
        "address = \"10.255.0.1\"",
        &format!("address = \"10.255.0.1\"\npassword = \"{long}\""),
    );
    assert_problem(&t, 8, "bgp.neighbor[0].password", "1..=80 bytes");
}

// --- [vtep] ------------------------------------------------------------------

#[test]
fn vtep_local_ip_must_be_unicast() {
    let t = BASE.replace("local_ip = \"10.255.0.2\"", "local_ip = \"239.0.0.1\"");
    assert_problem(&t, 10, "vtep.local_ip", "not a unicast host address");
}

#[test]
fn vtep_port_and_mtu_ranges() {
    let t = BASE.replace(
        "local_ip = \"10.255.0.2\"",
        "local_ip = \"10.255.0.2\"\ndstport = 0\nmtu = 20",
    );
    assert_problem(&t, 11, "vtep.dstport", "out of range");
    assert_problem(&t, 12, "vtep.mtu", "68..=65535");
}

// --- [[vni]] -----------------------------------------------------------------

#[test]
fn vni_out_of_range() {
    let t = BASE.replace("id = 100", "id = 16777216");
    assert_problem(&t, 13, "vni[0].id", "1..=16777215");
}

#[test]
fn duplicate_vni() {
    let t = with("\n[[vni]]\nid = 100\nbridge = \"br101\"\n");
    assert_problem(
        &t,
        NEXT + 2,
        "vni[1].id",
        "VNI 100 is already used by `vni[0].id` (line 13)",
    );
}

#[test]
fn shared_bridge_is_explained() {
    let t = with("\n[[vni]]\nid = 101\nbridge = \"br100\"\n");
    assert_problem(
        &t,
        NEXT + 3,
        "vni[1].bridge",
        "each VNI needs its own bridge",
    );
    assert_problem(&t, NEXT + 3, "vni[1].bridge", "`vni[0].bridge` (line 14)");
}

#[test]
fn shared_vxlan_device_even_by_default() {
    let t = with("\n[[vni]]\nid = 101\nbridge = \"br101\"\nvxlan = \"vxlan100\"\n");
    assert_problem(
        &t,
        NEXT + 4,
        "vni[1].vxlan",
        "already used by `vni[0].vxlan`",
    );
}

#[test]
fn bridge_equal_to_vxlan_name() {
    let t = BASE.replace("bridge = \"br100\"", "bridge = \"vxlan100\"");
    assert_problem(&t, 13, "vni[0].vxlan", "already used by `vni[0].bridge`");
}

#[test]
fn interface_name_too_long() {
    let t = BASE.replace("bridge = \"br100\"", "bridge = \"bridge-for-vni-100\"");
    assert_problem(&t, 14, "vni[0].bridge", "at most 15");
    let t = with("vrf = \"a/b\"\n");
    assert_problem(&t, NEXT, "vni[0].vrf", "does not allow");
}

#[test]
fn static_flood_needs_vteps() {
    let t = with("flood = \"static\"\n");
    assert_problem(&t, NEXT, "vni[0].flood", "needs static_vteps");
    let t = with("flood = \"static\"\nstatic_vteps = []\n");
    assert_problem(&t, NEXT + 1, "vni[0].static_vteps", "empty");
}

#[test]
fn static_vteps_with_other_mode() {
    let t = with("static_vteps = [\"10.0.0.9\"]\n");
    assert_problem(
        &t,
        NEXT,
        "vni[0].static_vteps",
        "only used with flood = \"static\"",
    );
}

#[test]
fn static_vteps_checked() {
    let t = with(
        "flood = \"static\"\nstatic_vteps = [\n  \"10.0.0.9\",\n  \"10.0.0.9\",\n  \"2001:db8::9\",\n  \"10.255.0.2\",\n  \"nope\",\n]\n",
    );
    assert_problem(&t, NEXT + 3, "vni[0].static_vteps[1]", "listed twice");
    assert_problem(&t, NEXT + 4, "vni[0].static_vteps[2]", "one address family");
    assert_problem(&t, NEXT + 5, "vni[0].static_vteps[3]", "own vtep.local_ip");
    assert_problem(&t, NEXT + 6, "vni[0].static_vteps[4]", "not an IP address");
}

#[test]
fn multicast_group() {
    let t = with("flood = \"multicast\"\n");
    assert_problem(&t, NEXT, "vni[0].flood", "needs group");
    let t = with("flood = \"multicast\"\ngroup = \"10.1.1.1\"\n");
    assert_problem(&t, NEXT + 1, "vni[0].group", "not a multicast address");
    let t = with("flood = \"multicast\"\ngroup = \"ff05::1\"\n");
    assert_problem(
        &t,
        NEXT + 1,
        "vni[0].group",
        "does not match the IPv4 vtep.local_ip",
    );
    let t = with("group = \"239.1.1.1\"\ngroup_dev = \"eth0\"\n");
    assert_problem(
        &t,
        NEXT,
        "vni[0].group",
        "only used with flood = \"multicast\"",
    );
    assert_problem(
        &t,
        NEXT + 1,
        "vni[0].group_dev",
        "only used with flood = \"multicast\"",
    );
}

#[test]
fn unknown_flood_mode() {
    let t = with("flood = \"broadcast\"\n");
    assert_problem(&t, NEXT, "vni[0].flood", "unknown flood mode `broadcast`");
}

#[test]
fn rd_and_rt_forms() {
    let t = with(
        "rd = \"10.255.0.2:100\"\nimport_rt = [\"65000:100\", \"4200000000:7\"]\nexport_rt = \"auto-rfc8365\"\n",
    );
    let c = parse(&t, "t").unwrap();
    let v = &c.vnis[0];
    assert_eq!(
        v.rd,
        RdSetting::Explicit(AdminValue::Ipv4 {
            addr: Ipv4Addr::new(10, 255, 0, 2),
            number: 100
        })
    );
    assert_eq!(
        v.import_rt,
        RtSetting::List(vec![
            AdminValue::As2 {
                asn: 65000,
                number: 100
            },
            AdminValue::As4 {
                asn: 4_200_000_000,
                number: 7
            },
        ])
    );
    assert_eq!(v.export_rt, RtSetting::AutoRfc8365);
    assert_eq!(
        AdminValue::As4 {
            asn: 4_200_000_000,
            number: 7
        }
        .to_string(),
        "4200000000:7"
    );

    let t = with("route_targets = [\"65000:100\"]\nexport_rt = \"auto\"\n");
    let c = parse(&t, "t").unwrap();
    assert_eq!(
        c.vnis[0].import_rt,
        RtSetting::List(vec![AdminValue::As2 {
            asn: 65000,
            number: 100
        }])
    );
    assert_eq!(c.vnis[0].export_rt, RtSetting::Auto);
}

#[test]
fn bad_rd_and_rt() {
    let t = with("rd = \"65000\"\nroute_targets = [\"auto\"]\nimport_rt = 5\nexport_rt = [\"4200000000:70000\"]\n");
    assert_problem(&t, NEXT, "vni[0].rd", "not of the form");
    assert_problem(&t, NEXT + 1, "vni[0].route_targets[0]", "stands alone");
    assert_problem(&t, NEXT + 2, "vni[0].import_rt", "found a integer");
    assert_problem(&t, NEXT + 3, "vni[0].export_rt[0]", "4-byte AS number");
}

// --- other sections ----------------------------------------------------------

#[test]
fn control_checks() {
    let t = with("[control]\nsocket = \"evpnd.sock\"\nmetrics = \"localhost\"\n");
    assert_problem(&t, NEXT + 1, "control.socket", "absolute path");
    assert_problem(&t, NEXT + 2, "control.metrics", "IP:PORT");
}

#[test]
fn mac_dataplane_log_checks() {
    let t = with(
        "[mac]\ndup_max_moves = 1\ndup_window = 0\n[dataplane]\nprotocol = 2\nreconcile_interval = -1\n[log]\nlevel = \"verbose\"\nformat = \"xml\"\n",
    );
    assert_problem(&t, NEXT + 1, "mac.dup_max_moves", "out of range");
    assert_problem(&t, NEXT + 2, "mac.dup_window", "out of range");
    assert_problem(&t, NEXT + 4, "dataplane.protocol", "reserved by the kernel");
    assert_problem(&t, NEXT + 5, "dataplane.reconcile_interval", "out of range");
    assert_problem(&t, NEXT + 7, "log.level", "unknown level");
    assert_problem(&t, NEXT + 8, "log.format", "unknown format");
}

#[test]
fn all_semantic_errors_are_collected_in_line_order() {
    let t = BASE
        .replace("asn = 65000", "asn = 0")
        .replace("id = 100", "id = 0")
        .replace("bridge = \"br100\"", "bridge = \"this-name-is-too-long\"");
    let ps = problems(&t);
    let lines: Vec<_> = ps.iter().map(|p| p.location.line).collect();
    assert_eq!(lines, vec![2, 13, 14], "{ps:#?}");
    let text = parse(&t, "test.toml").unwrap_err().to_string();
    assert!(text.contains("3 problems"), "{text}");
}

// --- diff --------------------------------------------------------------------

#[test]
fn diff_reports_neighbors_vnis_and_restart_keys() {
    let old = parse(BASE, "t").unwrap();
    assert!(Config::diff(&old, &old).is_empty());

    let new_text = BASE
        .replace("router_id = \"10.255.0.2\"", "router_id = \"10.255.0.9\"")
        .replace("address = \"10.255.0.1\"", "address = \"10.255.0.7\"")
        .replace(
            "bridge = \"br100\"",
            "bridge = \"br100\"\narp_suppress = false",
        )
        + "\n[[vni]]\nid = 200\nbridge = \"br200\"\n[log]\nlevel = \"debug\"\n";
    let new = parse(&new_text, "t").unwrap();
    let d = Config::diff(&old, &new);
    assert_eq!(d.neighbors_added.len(), 1);
    assert_eq!(
        d.neighbors_added[0].address,
        "10.255.0.7".parse::<IpAddr>().unwrap()
    );
    assert_eq!(
        d.neighbors_removed[0].address,
        "10.255.0.1".parse::<IpAddr>().unwrap()
    );
    assert!(d.neighbors_changed.is_empty());
    assert_eq!(d.vnis_added.len(), 1);
    assert_eq!(d.vnis_changed.len(), 1);
    assert!(!d.vnis_changed[0].new.arp_suppress);
    assert!(d.vnis_removed.is_empty());
    assert_eq!(d.restart_required, vec!["bgp.router_id"]);
    assert_eq!(d.live_changes, vec!["log.level"]);

    // A global timer change shows up as a change of every neighbor.
    let t = BASE.replace("asn = 65000", "asn = 65000\nhold_time = 30");
    let d = Config::diff(&old, &parse(&t, "t").unwrap());
    assert_eq!(d.neighbors_changed.len(), 1);
    assert!(d.restart_required.is_empty());
}

// --- documentation ---------------------------------------------------------

/// Every key the schema accepts is documented in docs/config.md, in the
/// section of its table. The key list comes from the decoder's own
/// "expected one of" message, so a new key without docs fails here.
#[test]
fn every_key_is_documented() {
    let docs = include_str!("../../docs/config.md");
    let tables = [
        ("", ""),
        ("[bgp]\n", "## `[bgp]`"),
        ("[bgp.graceful_restart]\n", "### `[bgp.graceful_restart]`"),
        ("[[bgp.neighbor]]\n", "### `[[bgp.neighbor]]`"),
        ("[vtep]\n", "## `[vtep]`"),
        ("[[vni]]\n", "## `[[vni]]`"),
        ("[control]\n", "## `[control]`"),
        ("[mac]\n", "## `[mac]`"),
        ("[dataplane]\n", "## `[dataplane]`"),
        ("[log]\n", "## `[log]`"),
    ];
    for (header, heading) in tables {
        let text = format!("{header}zzz_not_a_key = 1\n");
        let ps = problems(&text);
        let msg = ps[0].to_string();
        // serde: "expected one of `a`, `b`, `c`" or "expected `a` or `b`".
        let expected = msg
            .split("expected one of ")
            .nth(1)
            .or_else(|| msg.split("expected ").nth(1))
            .unwrap_or_else(|| panic!("{msg}"))
            .replace(" or ", ", ");
        let section = if heading.is_empty() {
            docs
        } else {
            let start = docs.find(heading).unwrap_or_else(|| panic!("no {heading}"));
            let rest = &docs[start + heading.len()..];
            let end = rest.find("\n#").unwrap_or(rest.len());
            &rest[..end]
        };
        for key in expected.split(", ") {
            let key = key.trim_matches('`');
            if heading.is_empty() {
                let h = format!("`[{key}]`");
                let h2 = format!("`[[{key}]]`");
                assert!(
                    docs.contains(&h) || docs.contains(&h2),
                    "section {key} not documented"
                );
            } else if key != "neighbor" && key != "graceful_restart" {
                assert!(
                    section.contains(&format!("| `{key}` |")),
                    "{header}{key} not documented under {heading}"
                );
            }
        }
    }
}

#[test]
fn documented_error_example_is_real() {
    let t = BASE.replace("router_id = \"10.255.0.2\"", "router_id = \"2001:db8::1\"");
    let e = parse(&t, "/etc/evpnd/evpnd.toml").unwrap_err().to_string();
    let line = e.lines().next().unwrap();
    assert!(
        include_str!("../../docs/config.md").contains(line),
        "{line}"
    );
}

#[test]
fn settings_display() {
    assert_eq!(RdSetting::Auto.to_string(), "auto");
    let v = AdminValue::parse("10.0.0.1:7").unwrap();
    assert_eq!(RdSetting::Explicit(v).to_string(), "10.0.0.1:7");
    let l = RtSetting::List(vec![
        AdminValue::parse("65000:100").unwrap(),
        AdminValue::parse("65000:200").unwrap(),
    ]);
    assert_eq!(l.to_string(), "65000:100 65000:200");
    assert_eq!(RtSetting::AutoRfc8365.to_string(), "auto-rfc8365");
    assert_eq!(
        FloodMode::IngressReplication.to_string(),
        "ingress-replication"
    );
}
