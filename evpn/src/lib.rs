//! EVPN for evpnd (sans-IO): route types and their NLRI codec (`route`,
//! `nlri`), extended communities (`extcomm`), the route-reflector-aware RIB
//! (`rib`), and the dataplane intents it emits (`intent`).

pub mod extcomm;
pub mod intent;
pub mod nlri;
pub mod rib;
pub mod route;
pub mod types;

pub use intent::*;
pub use rib::{Rib, RibConfig, RibInput, RibOutput, VniConfig};
pub use route::{EvpnNlri, RouteKey};
pub use types::*;
