//! Where the `ringkv` binary's logs go and how they look.
//!
//! Logs are for operators, so they follow the conventions their tools expect: the filter
//! comes from `RUST_LOG` (or `RINGKV_LOG`, the older name, which wins when both are set),
//! defaulting to warnings only, and `--log-format json` prints one JSON object per event
//! for log collectors. Logs always go to stderr: stdout carries results (`--json`).

use serde::Deserialize;
use tracing_subscriber::EnvFilter;

/// The log filter used when neither variable is set.
pub const LOG_FILTER_DEFAULT: &str = "warn";
/// The filter variable that wins over `RUST_LOG`.
pub const LOG_ENV: &str = "RINGKV_LOG";

/// How each log event is printed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, target, fields).
    Json,
}

impl LogFormat {
    /// The name used in flags, files and variables.
    pub fn name(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("'{other}' is not a log format; use text or json")),
        }
    }
}

/// Installs the process's subscriber; call once, before anything logs.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_env(LOG_ENV)
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new(LOG_FILTER_DEFAULT));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_by_name_and_refuse_others() {
        for format in [LogFormat::Text, LogFormat::Json] {
            assert_eq!(format.name().parse::<LogFormat>(), Ok(format));
        }
        let err = "yaml".parse::<LogFormat>().unwrap_err();
        assert!(err.contains("text or json"), "{err}");
    }
}
