//! The file as written: every key optional and spanned, unknown keys
//! rejected. Validation (validate.rs) turns this into the typed `Config`.

use serde::Deserialize;
use toml::Spanned;

pub(crate) type S<T> = Option<Spanned<T>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub bgp: S<RawBgp>,
    pub vtep: S<RawVtep>,
    #[serde(default)]
    pub vni: Vec<Spanned<RawVni>>,
    pub control: S<RawControl>,
    pub mac: S<RawMac>,
    pub dataplane: S<RawDataplane>,
    pub log: S<RawLog>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBgp {
    pub asn: S<i64>,
    pub router_id: S<String>,
    pub local_address: S<String>,
    pub listen_port: S<i64>,
    pub hold_time: S<i64>,
    pub keepalive: S<i64>,
    pub connect_retry: S<i64>,
    pub graceful_restart: S<RawGracefulRestart>,
    #[serde(default)]
    pub neighbor: Vec<Spanned<RawNeighbor>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGracefulRestart {
    pub enable: S<bool>,
    pub restart_time: S<i64>,
    pub withdraw_hold_ms: S<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNeighbor {
    pub address: S<String>,
    pub remote_asn: S<i64>,
    pub port: S<i64>,
    pub passive: S<bool>,
    pub hold_time: S<i64>,
    pub password: S<String>,
    pub description: S<String>,
    pub address_families: S<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVtep {
    pub local_ip: S<String>,
    pub dstport: S<i64>,
    pub mtu: S<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVni {
    pub id: S<i64>,
    pub bridge: S<String>,
    pub vxlan: S<String>,
    pub create: S<bool>,
    pub flood: S<String>,
    pub static_vteps: S<Vec<Spanned<String>>>,
    pub group: S<String>,
    pub group_dev: S<String>,
    pub rd: S<String>,
    pub route_targets: S<toml::Value>,
    pub import_rt: S<toml::Value>,
    pub export_rt: S<toml::Value>,
    pub vrf: S<String>,
    pub advertise_local: S<bool>,
    pub arp_suppress: S<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawControl {
    pub socket: S<String>,
    pub metrics: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMac {
    pub dup_max_moves: S<i64>,
    pub dup_window: S<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDataplane {
    pub reconcile_interval: S<i64>,
    pub protocol: S<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLog {
    pub level: S<String>,
    pub format: S<String>,
}
