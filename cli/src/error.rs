//! The one error type of the command-line layer, and its exit codes.
//!
//! Every failure ends as one line on stderr that says what happened and what to do next;
//! the exit code separates usage mistakes (2, as clap uses) from failures (1), so scripts
//! can tell "you called it wrong" from "the cluster said no".

use std::path::PathBuf;

use ringkv::client::ClientError;
use ringkv::net::NetError;

/// Exit code of a failed operation.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code of a command line that cannot be run as given (clap uses the same).
pub const EXIT_USAGE: u8 = 2;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Client(#[from] ClientError),
    #[error("{0}")]
    Certs(#[from] Box<NetError>),
    #[error(
        "no certificate directory at {}: start a local cluster with `ringkv dev` (it creates one), or point --certs (or RINGKV_CERTS) at your cluster's certificates",
        dir.display()
    )]
    NoCerts { dir: PathBuf },
    #[error("{0}")]
    Usage(String),
    #[error("cannot write the output: {0}")]
    Output(#[source] std::io::Error),
    /// A node could not start or stopped with an error.
    #[error("{0}")]
    Node(String),
    /// A node's settings (config file, environment) could not be read or written.
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    /// `put -` or `put --file` could not read its value.
    #[error("cannot read the value from {from}: {source}")]
    ReadValue {
        from: String,
        #[source]
        source: std::io::Error,
    },
    /// `get --raw` found no value to write.
    #[error("{0}: not found")]
    NotFound(String),
    /// `ringkv bench` could not run or report.
    #[error("{0}")]
    Bench(#[from] Box<crate::bench::BenchError>),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Config(e) if e.is_usage() => EXIT_USAGE,
            _ => EXIT_FAILURE,
        }
    }
}

impl From<NetError> for CliError {
    fn from(err: NetError) -> Self {
        CliError::Certs(Box::new(err))
    }
}
