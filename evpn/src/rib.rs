//! RIB
