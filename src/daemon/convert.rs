//! Mapping between the configuration, the RIB, the dataplane and the
//! control-socket views. Pure functions, unit-tested below.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use evpnd_bgp::fsm::GracefulRestartConfig;
use evpnd_bgp::session::{PeerConfig, PeerStatus, SpeakerConfig};
use evpnd_bgp::{AfiSafi, Asn};
use evpnd_config::{AdminValue, Config, FloodMode, NeighborConfig, RdSetting, RtSetting};
use evpnd_evpn::extcomm::{EvpnCommunities, EvpnExtCommunity, ImportRt, RouteTarget};
use evpnd_evpn::rib::{DupDetectConfig, FloodSource, RibConfig, RouteView, VniConfig};
use evpnd_evpn::route::EvpnNlri;
use evpnd_evpn::{RouteDistinguisher, Vni};

use crate::control::{NeighborInfo, RouteInfo, SessionState};
use crate::dataplane::{self, VniSpec};

/// A VNI number from the configuration (validated there to fit 24 bits).
pub fn vni(id: u32) -> Option<Vni> {
    Vni::new(id)
}

pub fn rib_config(cfg: &Config) -> RibConfig {
    RibConfig {
        router_id: cfg.bgp.router_id,
        asn: cfg.bgp.asn,
        local_vtep: cfg.vtep.local_ip,
        dup_detect: DupDetectConfig {
            enabled: cfg.mac.dup_max_moves > 0,
            max_moves: cfg.mac.dup_max_moves,
            window: cfg.mac.dup_window,
            freeze: None,
        },
    }
}

fn rt_of(v: &AdminValue) -> RouteTarget {
    match *v {
        AdminValue::As2 { asn, number } => RouteTarget::As2 { asn, value: number },
        AdminValue::Ipv4 { addr, number } => RouteTarget::Ipv4 {
            addr,
            value: number,
        },
        AdminValue::As4 { asn, number } => RouteTarget::As4 { asn, value: number },
    }
}

fn rd_of(v: &AdminValue) -> RouteDistinguisher {
    match *v {
        AdminValue::As2 { asn, number } => RouteDistinguisher::As2 { asn, number },
        AdminValue::Ipv4 { addr, number } => RouteDistinguisher::Ipv4 { addr, number },
        AdminValue::As4 { asn, number } => RouteDistinguisher::As4 { asn, number },
    }
}

/// Import and export route targets of one setting.
fn rts(setting: &RtSetting, asn: u32, vni: Vni) -> (Vec<ImportRt>, Vec<RouteTarget>) {
    match setting {
        RtSetting::Auto => (vec![ImportRt::auto(vni)], vec![RouteTarget::auto(asn, vni)]),
        RtSetting::AutoRfc8365 => {
            // RFC 8365 §5.1.2.1: the global admin is the 2-octet AS.
            let rt = RouteTarget::rfc8365((asn & 0xffff) as u16, 0, vni, false);
            (vec![ImportRt::Exact(rt)], vec![rt])
        }
        RtSetting::List(l) => {
            let v: Vec<RouteTarget> = l.iter().map(rt_of).collect();
            (v.iter().copied().map(ImportRt::Exact).collect(), v)
        }
    }
}

/// The RIB's view of one configured VNI. `rd_index` numbers the auto RD
/// (FRR: `router-id:index`); it must stay stable across reloads.
pub fn rib_vni(cfg: &Config, v: &evpnd_config::VniConfig, rd_index: u16) -> Option<VniConfig> {
    let id = vni(v.id)?;
    let rd = match &v.rd {
        RdSetting::Auto => RouteDistinguisher::auto(cfg.bgp.router_id, rd_index),
        RdSetting::Explicit(a) => rd_of(a),
    };
    let (import_rts, _) = rts(&v.import_rt, cfg.bgp.asn, id);
    let (_, export_rts) = rts(&v.export_rt, cfg.bgp.asn, id);
    Some(VniConfig {
        vni: id,
        rd,
        import_rts,
        export_rts,
        flood: match v.flood {
            FloodMode::IngressReplication => FloodSource::Routes,
            FloodMode::Static { .. } | FloodMode::Multicast { .. } => FloodSource::None,
        },
    })
}

/// Stable auto-RD indexes: a VNI keeps its index across reloads; new VNIs
/// take the lowest free one.
#[derive(Debug, Default)]
pub struct RdIndexes {
    by_vni: BTreeMap<u32, u16>,
}

impl RdIndexes {
    pub fn assign(&mut self, vnis: &[evpnd_config::VniConfig]) {
        self.by_vni.retain(|id, _| vnis.iter().any(|v| v.id == *id));
        let mut sorted: Vec<u32> = vnis.iter().map(|v| v.id).collect();
        sorted.sort_unstable();
        for id in sorted {
            if self.by_vni.contains_key(&id) {
                continue;
            }
            let used: std::collections::BTreeSet<u16> = self.by_vni.values().copied().collect();
            let free = (1..=u16::MAX)
                .find(|i| !used.contains(i))
                .unwrap_or(u16::MAX);
            self.by_vni.insert(id, free);
        }
    }

    pub fn get(&self, id: u32) -> u16 {
        self.by_vni.get(&id).copied().unwrap_or(1)
    }
}

pub fn vni_spec(cfg: &Config, v: &evpnd_config::VniConfig) -> Option<VniSpec> {
    Some(VniSpec {
        vni: vni(v.id)?,
        bridge: v.bridge.clone(),
        vxlan: v.vxlan.clone(),
        create: v.create,
        local_ip: cfg.vtep.local_ip,
        dstport: cfg.vtep.dstport,
        flood: match &v.flood {
            FloodMode::IngressReplication => dataplane::FloodMode::IngressReplication,
            FloodMode::Static { vteps } => dataplane::FloodMode::Static(vteps.clone()),
            FloodMode::Multicast { group, dev } => dataplane::FloodMode::Multicast {
                group: *group,
                dev: dev.clone(),
            },
        },
        vrf: v.vrf.clone(),
        mtu: cfg.vtep.mtu,
    })
}

pub fn speaker_config(cfg: &Config) -> SpeakerConfig {
    let listen_addr = cfg.bgp.listen_port.map(|port| {
        let ip = cfg.bgp.local_address.unwrap_or(match cfg.vtep.local_ip {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        });
        SocketAddr::new(ip, port)
    });
    SpeakerConfig {
        local_asn: Asn(cfg.bgp.asn),
        router_id: cfg.bgp.router_id,
        listen_addr,
    }
}

/// `restarting`: we come back with kernel state kept (R bit, RFC 4724 §3).
pub fn peer_config(cfg: &Config, n: &NeighborConfig, restarting: bool) -> PeerConfig {
    let mut p = PeerConfig::new(n.address, Asn(n.remote_asn));
    p.local_address = n.local_address;
    p.port = n.port;
    p.hold_time = u16::try_from(n.hold_time.as_secs()).unwrap_or(u16::MAX);
    p.connect_retry = n.connect_retry;
    p.passive = n.passive;
    p.password = n.password.clone();
    p.afi_safis = vec![AfiSafi::L2VPN_EVPN];
    // RFC 8654: up to 64 KiB UPDATEs when the peer agrees (FRR does), 16x
    // fewer messages for a full table.
    p.extended_message = true;
    p.graceful_restart = Some(if cfg.bgp.graceful_restart.enable {
        GracefulRestartConfig {
            restart_time: u16::try_from(cfg.bgp.graceful_restart.restart_time.as_secs())
                .unwrap_or(4095)
                .min(4095),
            forwarding_state: true,
            restarting,
            helper_only: false,
        }
    } else {
        // Without graceful restart we still announce the capability with
        // no AFI/SAFI so that peers send End-of-RIB (FRR does not send it
        // otherwise), which ends the adoption window after a start instead
        // of the 120 s fallback.
        GracefulRestartConfig {
            restart_time: 0,
            forwarding_state: false,
            restarting: false,
            helper_only: true,
        }
    });
    p
}

pub fn session_state(s: evpnd_bgp::fsm::State) -> SessionState {
    use evpnd_bgp::fsm::State;
    match s {
        State::Idle => SessionState::Idle,
        State::Connect => SessionState::Connect,
        State::Active => SessionState::Active,
        State::OpenSent => SessionState::OpenSent,
        State::OpenConfirm => SessionState::OpenConfirm,
        State::Established => SessionState::Established,
    }
}

pub fn neighbor_info(p: &PeerStatus, n: Option<&NeighborConfig>, sent: u64) -> NeighborInfo {
    NeighborInfo {
        address: p.address,
        remote_asn: p.remote_asn.0,
        description: n.and_then(|n| n.description.clone()),
        state: session_state(p.state),
        uptime_secs: p.uptime.map_or(0, |d| d.as_secs()),
        router_id: p.negotiated.as_ref().map(|n| n.peer_router_id),
        hold_time_secs: p.negotiated.as_ref().map(|n| n.hold_time),
        prefixes_received: p.prefixes_received,
        prefixes_sent: sent,
        messages_in: p.messages_in,
        messages_out: p.messages_out,
        updates_in: p.updates_in,
        updates_out: p.updates_out,
        last_error: p.last_error.as_ref().map(|e| match e {
            evpnd_bgp::session::PeerError::Session(r) => r.to_string(),
            evpnd_bgp::session::PeerError::Connect(k) => format!("connect: {k}"),
        }),
    }
}

/// The VNI a route belongs to for display: the label of type-2, the PMSI
/// label of type-3, else the first importing VNI.
pub fn route_info(r: &RouteView<'_>) -> RouteInfo {
    let attrs = r.attrs;
    let ecs = EvpnCommunities::parse(&attrs.ext_communities);
    let mut info = RouteInfo {
        route_type: r.nlri.route_type(),
        rd: r.nlri.rd().to_string(),
        esi: None,
        eth_tag: 0,
        mac: None,
        ip: None,
        vni: r.vnis.first().map(|v| v.get()),
        originator_ip: None,
        next_hop: Some(r.next_hop),
        best: r.best,
        local: r.peer.is_none(),
        peer: r.peer,
        originator_id: attrs.originator_id,
        cluster_list: attrs.cluster_list.clone(),
        local_pref: attrs.local_pref,
        ext_communities: attrs
            .ext_communities
            .iter()
            .map(|e| EvpnExtCommunity::from(*e).to_string())
            .collect(),
        seq: ecs.mac_mobility.map(|m| m.sequence),
        sticky: ecs.mac_mobility.is_some_and(|m| m.sticky()),
    };
    match r.nlri {
        EvpnNlri::EthernetAd(x) => {
            info.esi = Some(x.esi.to_string());
            info.eth_tag = x.eth_tag.0;
        }
        EvpnNlri::MacIp(x) => {
            info.esi = (x.esi != evpnd_evpn::Esi::ZERO).then(|| x.esi.to_string());
            info.eth_tag = x.eth_tag.0;
            info.mac = Some(x.mac.to_string());
            info.ip = x.ip;
            info.vni = Some(x.label1.get());
        }
        EvpnNlri::InclusiveMulticast(x) => {
            info.eth_tag = x.eth_tag.0;
            info.originator_ip = Some(x.originator);
        }
        EvpnNlri::EthernetSegment(x) => {
            info.esi = Some(x.esi.to_string());
            info.originator_ip = Some(x.originator);
        }
        EvpnNlri::IpPrefix(x) => {
            info.esi = (x.esi != evpnd_evpn::Esi::ZERO).then(|| x.esi.to_string());
            info.eth_tag = x.eth_tag.0;
            info.ip = Some(x.prefix.addr());
        }
    }
    info
}

/// How long to keep a peer's routes when its session drops: its restart
/// time if it announced graceful restart for L2VPN EVPN (RFC 4724 §4.2).
pub fn stale_time(gr: Option<&evpnd_bgp::fsm::PeerGrInfo>) -> Option<Duration> {
    let gr = gr?;
    gr.afi_safis
        .iter()
        .any(|(a, _)| *a == AfiSafi::L2VPN_EVPN)
        .then_some(gr.restart_time)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vni_cfg(id: u32) -> evpnd_config::VniConfig {
        evpnd_config::VniConfig {
            id,
            bridge: format!("br{id}"),
            vxlan: format!("vxlan{id}"),
            create: false,
            flood: FloodMode::IngressReplication,
            rd: RdSetting::Auto,
            import_rt: RtSetting::Auto,
            export_rt: RtSetting::Auto,
            vrf: None,
            advertise_local: true,
            arp_suppress: true,
        }
    }

    #[test]
    fn gr_capability_always_announced_afis_only_when_enabled() {
        let text = "[bgp]\nasn = 65000\nrouter_id = \"10.0.0.1\"\nlocal_address = \"10.0.0.1\"\n\n[[bgp.neighbor]]\naddress = \"10.0.0.2\"\n\n[vtep]\nlocal_ip = \"10.0.0.1\"\n";
        // On by default; the helper-only capability is for `enable = false`.
        let cfg = evpnd_config::parse(text, "t.toml").unwrap();
        assert!(cfg.bgp.graceful_restart.enable);
        let off = text.replace(
            "local_address = \"10.0.0.1\"\n",
            "local_address = \"10.0.0.1\"\n[bgp.graceful_restart]\nenable = false\n",
        );
        let cfg = evpnd_config::parse(&off, "t.toml").unwrap();
        let n = &cfg.bgp.neighbors[0];
        let gr = peer_config(&cfg, n, false).graceful_restart.unwrap();
        assert!(gr.helper_only && !gr.forwarding_state);
        let text = text.replace(
            "local_address = \"10.0.0.1\"\n",
            "local_address = \"10.0.0.1\"\n[bgp.graceful_restart]\nenable = true\nrestart_time = 90\n",
        );
        let cfg = evpnd_config::parse(&text, "t.toml").unwrap();
        let gr = peer_config(&cfg, &cfg.bgp.neighbors[0], true)
            .graceful_restart
            .unwrap();
        assert!(!gr.helper_only && gr.forwarding_state && gr.restarting);
        assert_eq!(gr.restart_time, 90);
    }

    #[test]
    fn rd_indexes_stay_stable_across_reloads() {
        let mut r = RdIndexes::default();
        r.assign(&[vni_cfg(200), vni_cfg(100)]);
        assert_eq!((r.get(100), r.get(200)), (1, 2));
        // 100 removed, 300 added: 200 keeps 2, 300 takes the free 1.
        r.assign(&[vni_cfg(300), vni_cfg(200)]);
        assert_eq!((r.get(200), r.get(300)), (2, 1));
    }

    #[test]
    fn rt_settings_map_to_rib_targets() {
        let v = Vni::new(100).unwrap();
        let (imp, exp) = rts(&RtSetting::Auto, 4_200_000_000, v);
        assert_eq!(imp, vec![ImportRt::AnyAs(100)]);
        assert_eq!(exp, vec![RouteTarget::auto(4_200_000_000, v)]);
        let (imp, exp) = rts(
            &RtSetting::List(vec![AdminValue::As2 {
                asn: 65000,
                number: 7,
            }]),
            65000,
            v,
        );
        let rt = RouteTarget::As2 {
            asn: 65000,
            value: 7,
        };
        assert_eq!((imp, exp), (vec![ImportRt::Exact(rt)], vec![rt]));
    }
}
