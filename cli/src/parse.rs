//! Parsers for command-line values that are more than a number or a path.
//!
//! Each one turns text into a typed value once, at the edge, with an error that shows the
//! expected form by example; clap prints it as a usage error (exit code 2).

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use ringkv::client::SEEDS_MAX;
use ringkv::net::validate_name;
use ringkv::proto::{Key, RequestError};

use crate::error::CliError;

/// A static member given as `--peer NAME=ADDR` (or `peers = ["NAME=ADDR"]` in a config
/// file).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct PeerSpec {
    pub name: String,
    pub addr: SocketAddr,
}

impl FromStr for PeerSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let Some((name, addr)) = text.split_once('=') else {
            return Err(format!(
                "'{text}' is not NAME=ADDR; write it like n2=127.0.0.1:7102"
            ));
        };
        validate_name(name).map_err(|e| format!("in '{text}': {e}"))?;
        let addr = addr.parse().map_err(|_| {
            format!(
                "in '{text}': '{addr}' is not an IP:PORT address; write it like n2=127.0.0.1:7102"
            )
        })?;
        Ok(PeerSpec {
            name: name.to_owned(),
            addr,
        })
    }
}

impl TryFrom<String> for PeerSpec {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl fmt::Display for PeerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.addr)
    }
}

/// `BUCKET/KEY` (the key may contain further slashes).
pub fn parse_key(text: &str) -> Result<Key, String> {
    Key::parse(text).map_err(|e| match e {
        RequestError::BadRequest(reason) => reason,
        other => other.to_string(),
    })
}

/// The `--node` list: comma-separated addresses, each resolved as [`resolve_node`] does,
/// at most [`SEEDS_MAX`].
pub async fn resolve_nodes(text: &str) -> Result<Vec<SocketAddr>, CliError> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    if parts.len() > SEEDS_MAX {
        return Err(CliError::Usage(format!(
            "--node lists {} addresses, more than the limit of {SEEDS_MAX}; a few per cluster are enough",
            parts.len()
        )));
    }
    let mut addrs = Vec::with_capacity(parts.len());
    for part in parts {
        if part.is_empty() {
            return Err(CliError::Usage(format!(
                "--node '{text}' has an empty address; pass HOST:PORT[,HOST:PORT...] like {}",
                crate::DEFAULT_NODE
            )));
        }
        let addr = resolve_node(part).await?;
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    Ok(addrs)
}

/// One `--node` address: `IP:PORT`, or `HOST:PORT` looked up once.
pub async fn resolve_node(text: &str) -> Result<SocketAddr, CliError> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let usage = |why: String| {
        CliError::Usage(format!(
            "--node '{text}' {why}; pass HOST:PORT like {}",
            crate::DEFAULT_NODE
        ))
    };
    let mut addrs = tokio::net::lookup_host(text)
        .await
        .map_err(|e| usage(format!("cannot be resolved ({e})")))?;
    addrs
        .next()
        .ok_or_else(|| usage("resolves to no address".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_from_name_equals_address() {
        let peer: PeerSpec = "n2=127.0.0.1:7102".parse().unwrap();
        assert_eq!(peer.name, "n2");
        assert_eq!(peer.addr, "127.0.0.1:7102".parse::<SocketAddr>().unwrap());
        assert_eq!(peer.to_string(), "n2=127.0.0.1:7102");
        let v6: PeerSpec = "db-7=[::1]:7000".parse().unwrap();
        assert_eq!(v6.addr.port(), 7000);
    }

    #[test]
    fn bad_peers_say_what_form_is_expected() {
        for (text, expected) in [
            ("n2", "is not NAME=ADDR"),
            ("n2:127.0.0.1:7102", "is not NAME=ADDR"),
            ("=127.0.0.1:7102", "invalid name"),
            ("n_2=127.0.0.1:7102", "invalid name"),
            ("ca=127.0.0.1:7102", "reserved"),
            ("n2=localhost", "is not an IP:PORT address"),
            ("n2=127.0.0.1", "is not an IP:PORT address"),
        ] {
            let err = text.parse::<PeerSpec>().expect_err(text);
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn keys_parse_and_bad_keys_show_an_example() {
        assert_eq!(
            parse_key("users/alice").unwrap(),
            Key::new("users", "alice")
        );
        assert_eq!(parse_key("a/b/c").unwrap(), Key::new("a", "b/c"));
        for text in ["alice", "/alice", "users/", ""] {
            let err = parse_key(text).expect_err(text);
            assert!(err.contains("write it like users/alice"), "{text}: {err}");
            assert!(!err.starts_with("bad request"), "{err}");
        }
    }

    #[tokio::test]
    async fn node_addresses_resolve_and_garbage_is_a_usage_error() {
        let addr = resolve_node("127.0.0.1:7101").await.unwrap();
        assert_eq!(addr, "127.0.0.1:7101".parse::<SocketAddr>().unwrap());
        let err = resolve_node("no port here").await.unwrap_err();
        assert_eq!(err.exit_code(), crate::error::EXIT_USAGE);
        assert!(err.to_string().contains("pass HOST:PORT"), "{err}");
    }

    #[tokio::test]
    async fn node_lists_split_on_commas_and_bad_entries_are_usage_errors() {
        let addrs = resolve_nodes("127.0.0.1:7101, 127.0.0.1:7102,127.0.0.1:7101")
            .await
            .unwrap();
        let expected: Vec<SocketAddr> = ["127.0.0.1:7101", "127.0.0.1:7102"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(addrs, expected, "trimmed, duplicates dropped, order kept");
        for text in [
            "127.0.0.1:7101,",
            ",127.0.0.1:7101",
            "127.0.0.1:7101,nonsense",
        ] {
            let err = resolve_nodes(text).await.expect_err(text);
            assert_eq!(err.exit_code(), crate::error::EXIT_USAGE, "{text}: {err}");
        }
        let many = vec!["127.0.0.1:7101"; SEEDS_MAX + 1].join(",");
        let err = resolve_nodes(&many).await.expect_err("too many");
        assert!(err.to_string().contains("more than the limit"), "{err}");
    }
}
