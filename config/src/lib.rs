//! evpnd configuration: TOML schema and validation. (To be implemented.)
