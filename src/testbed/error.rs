//! Errors of the test bed: each says which command, file or condition failed.

use std::process::ExitStatus;
use std::time::Duration;

/// Result alias for the test bed.
pub type Result<T> = std::result::Result<T, Error>;

/// What went wrong while building, querying or tearing down a test bed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A program could not be started at all (missing binary, permissions).
    #[error("cannot start `{cmd}`: {source}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    /// A program ran and exited unsuccessfully.
    #[error("`{cmd}` failed ({status})\n--- stderr ---\n{stderr}\n--- stdout ---\n{stdout}")]
    Command {
        cmd: String,
        status: ExitStatus,
        stderr: String,
        stdout: String,
    },
    /// A file system operation failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A polled condition did not become true in time.
    #[error("timed out after {waited:?} waiting for {what}; last observed: {last}")]
    Timeout {
        what: String,
        waited: Duration,
        last: String,
    },
    /// Output of a tool (JSON, ping summary, ...) did not have the expected shape.
    #[error("cannot parse {what}: {detail}")]
    Parse { what: String, detail: String },
    /// The test bed needs root (network namespaces, FRR).
    #[error("the test bed needs root privileges (network namespaces); run with sudo")]
    NotRoot,
    /// A required external tool is not installed.
    #[error("{tool} is not installed ({hint})")]
    MissingTool { tool: String, hint: String },
    /// A name or parameter is unusable (too long for an interface name, ...).
    #[error("invalid {what} `{value}`: {reason}")]
    Invalid {
        what: &'static str,
        value: String,
        reason: String,
    },
}

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn parse(what: impl Into<String>, detail: impl ToString) -> Self {
        Error::Parse {
            what: what.into(),
            detail: detail.to_string(),
        }
    }
}
