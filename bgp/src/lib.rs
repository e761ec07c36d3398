//! BGP-4 for evpnd: wire types and codec (`message`, `attr`, `codec`), and
//! the sans-IO session state machine (`fsm`) with its tokio driver
//! (`session`).
//!
//! The NLRI carried in MP_REACH_NLRI / MP_UNREACH_NLRI is decoded by a codec
//! supplied by another crate through the [`Nlri`] trait, so `evpnd-evpn` owns
//! the EVPN NLRI while this crate owns everything else on the wire.

pub mod attr;
pub mod codec;
pub mod error;
pub mod fsm;
pub mod message;
pub mod session;
pub mod types;

pub use attr::*;
pub use error::*;
pub use message::*;
pub use types::*;
