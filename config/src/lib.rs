//! evpnd configuration: TOML schema and validation.
//!
//! The whole file is checked before the daemon starts anything. Every
//! problem names the file, line, column and key path (`vni[1].flood`) and
//! says what is wrong; all semantic problems are reported at once.
//! The keys are documented in docs/config.md.

mod diff;
mod error;
mod raw;
mod types;
mod validate;

use std::path::Path;

pub use diff::{ConfigDiff, NeighborChange, VniChange};
pub use error::{ConfigError, Location, Problem, ProblemKind};
pub use types::*;

/// Default control socket path (also evpnctl's default).
pub const DEFAULT_SOCKET: &str = "/run/evpnd/evpnd.sock";
/// Default configuration file path.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/evpnd/evpnd.toml";

/// Read and validate the configuration file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Validate configuration `text`; `file_name` is used in error messages.
pub fn parse(text: &str, file_name: &str) -> Result<Config, ConfigError> {
    validate::parse(text, file_name)
}

#[cfg(test)]
mod tests;
