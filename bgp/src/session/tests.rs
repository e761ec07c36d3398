//! Driver tests live in bgp/tests/session.rs (they need the codec).
