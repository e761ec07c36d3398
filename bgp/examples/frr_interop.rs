//! Throwaway interop check: peer one Speaker with a BGP speaker (FRR) and
//! print what happens. See docs/interop-frr.md for the FRR side.
//!
//! Usage: frr_interop LOCAL_ADDR PEER_ADDR ASN ROUTER_ID [SECONDS]
//! Listens on LOCAL_ADDR:179, connects to PEER_ADDR:179 from LOCAL_ADDR,
//! announces one EVPN type-3 route (raw NLRI) and End-of-RIB once
//! Established, then runs for SECONDS (default 20) and exits 0 if the
//! session was Established and still is.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use evpnd_bgp::fsm::State;
use evpnd_bgp::session::{PeerConfig, Speaker, SpeakerConfig, SpeakerEvent};
use evpnd_bgp::{
    AfiSafi, AsPath, Asn, ExtCommunity, MpReach, NextHop, Origin, PathAttributes, PmsiTunnel,
    RawNlri, Update,
};
use tokio::sync::mpsc;

fn imet(rd_ip: Ipv4Addr, vni: u32, vtep: Ipv4Addr) -> Update<RawNlri> {
    // Type 3: RD type 1 (ip:1), ethernet tag 0, IP length 32, originator.
    let mut n = vec![3u8, 17, 0, 1];
    n.extend_from_slice(&rd_ip.octets());
    n.extend_from_slice(&[0, 1, 0, 0, 0, 0, 32]);
    n.extend_from_slice(&vtep.octets());
    let mut rt = [0u8; 8];
    rt[1] = 0x02; // 2-octet AS route target
    rt[2..4].copy_from_slice(&65000u16.to_be_bytes());
    rt[4..8].copy_from_slice(&vni.to_be_bytes());
    let encap = ExtCommunity([0x03, 0x0c, 0, 0, 0, 0, 0, 8]); // VXLAN
    Update {
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::default()),
            local_pref: Some(100),
            ext_communities: vec![ExtCommunity(rt), encap],
            pmsi_tunnel: Some(PmsiTunnel {
                flags: 0,
                tunnel_type: PmsiTunnel::INGRESS_REPLICATION,
                label: vni,
                tunnel_id: Bytes::copy_from_slice(&vtep.octets()),
            }),
            ..PathAttributes::default()
        },
        mp_reach: Some(MpReach {
            afi_safi: AfiSafi::L2VPN_EVPN,
            next_hop: NextHop::Ip(IpAddr::V4(vtep)),
            nlri: vec![RawNlri(Bytes::from(n))],
        }),
        ..Update::default()
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!(
            "usage: {} LOCAL_ADDR PEER_ADDR ASN ROUTER_ID [SECONDS]",
            args[0]
        );
        std::process::exit(2);
    }
    let parse_err =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, what.to_string());
    let local: Ipv4Addr = args[1].parse().map_err(|_| parse_err("LOCAL_ADDR"))?;
    let peer: IpAddr = args[2].parse().map_err(|_| parse_err("PEER_ADDR"))?;
    let asn: u32 = args[3].parse().map_err(|_| parse_err("ASN"))?;
    let id: Ipv4Addr = args[4].parse().map_err(|_| parse_err("ROUTER_ID"))?;
    let secs: u64 = args.get(5).and_then(|s| s.parse().ok()).unwrap_or(20);

    let (tx, mut rx) = mpsc::channel(256);
    let speaker = Speaker::<RawNlri>::start(
        SpeakerConfig {
            local_asn: Asn(asn),
            router_id: id,
            listen_addr: Some(SocketAddr::new(IpAddr::V4(local), 179)),
        },
        tx,
    )
    .await?;
    let mut pc = PeerConfig::new(peer, Asn(asn));
    pc.local_address = Some(IpAddr::V4(local));
    pc.hold_time = 9;
    pc.connect_retry = Duration::from_secs(5);
    pc.graceful_restart = Some(Default::default());
    speaker
        .add_peer(pc)
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut established = false;
    loop {
        let ev = match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(ev)) => ev,
            _ => break,
        };
        println!("event: {ev:?}");
        if let SpeakerEvent::Established { peer, .. } = &ev {
            established = true;
            let s = speaker.clone();
            let peer = *peer;
            tokio::spawn(async move {
                let _ = s
                    .send(
                        peer,
                        vec![imet(id, 100, id), Update::end_of_rib(AfiSafi::L2VPN_EVPN)],
                    )
                    .await;
            });
        }
    }
    let st = speaker.peers().await;
    println!("status: {st:?}");
    let up = st.first().is_some_and(|p| p.state == State::Established);
    speaker.shutdown().await;
    if established && up {
        println!("INTEROP OK");
        Ok(())
    } else {
        println!("INTEROP FAILED");
        std::process::exit(1);
    }
}
