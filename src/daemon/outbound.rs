//! Turning the RIB's outbound routes into UPDATE messages for one peer.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use evpnd_bgp::codec::{pack_reach, pack_unreach, CodecOptions};
use evpnd_bgp::{AfiSafi, AsPath, AsSegment, Asn, NextHop, PathAttributes, Update};
use evpnd_evpn::rib::OutRoute;
use evpnd_evpn::route::EvpnNlri;
use tracing::error;

pub fn codec_options(four_octet_as: bool, extended_message: bool) -> CodecOptions {
    CodecOptions {
        four_octet_as,
        extended_message,
    }
}

/// Attributes as sent to an eBGP peer: our AS prepended, no LOCAL_PREF
/// (RFC 4271 §5.1.2, §5.1.5).
fn for_ebgp(a: &PathAttributes, asn: u32) -> PathAttributes {
    let mut a = a.clone();
    let mut path = a.as_path.take().unwrap_or_default();
    match path.segments.first_mut() {
        Some(AsSegment::Sequence(v)) if v.len() < 255 => v.insert(0, Asn(asn)),
        _ => path.segments.insert(0, AsSegment::Sequence(vec![Asn(asn)])),
    }
    a.as_path = Some(AsPath {
        segments: path.segments,
    });
    a.local_pref = None;
    a
}

/// Pack routes sharing attributes and next hop into as few UPDATEs as fit.
pub fn announce(
    routes: &[OutRoute],
    ebgp: Option<u32>,
    opts: &CodecOptions,
) -> Vec<Update<EvpnNlri>> {
    let mut groups: HashMap<(Arc<PathAttributes>, IpAddr), Vec<EvpnNlri>> = HashMap::new();
    let mut order = Vec::new();
    for (nlri, attrs, nh) in routes {
        let key = (attrs.clone(), *nh);
        let g = groups.entry(key.clone()).or_default();
        if g.is_empty() {
            order.push(key);
        }
        g.push(*nlri);
    }
    let mut out = Vec::new();
    for key in order {
        let Some(nlri) = groups.remove(&key) else {
            continue;
        };
        let (attrs, nh) = key;
        let attrs = match ebgp {
            Some(asn) => for_ebgp(&attrs, asn),
            None => (*attrs).clone(),
        };
        match pack_reach(AfiSafi::L2VPN_EVPN, &NextHop::Ip(nh), &attrs, &nlri, opts) {
            Ok(mut m) => out.append(&mut m),
            Err(e) => error!(error = %e, routes = nlri.len(), "cannot encode routes"),
        }
    }
    out
}

pub fn withdraw(routes: &[EvpnNlri], opts: &CodecOptions) -> Vec<Update<EvpnNlri>> {
    match pack_unreach(AfiSafi::L2VPN_EVPN, routes, opts) {
        Ok(m) => m,
        Err(e) => {
            error!(error = %e, routes = routes.len(), "cannot encode withdrawals");
            Vec::new()
        }
    }
}
