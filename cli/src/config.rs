//! `ringkv node`'s settings from three layers — a TOML file (`--config FILE`), `RINGKV_*`
//! environment variables, and flags — each overriding the one before.
//!
//! One struct with every key optional serves all three layers: each layer says only what
//! it sets, so the merge is a field-by-field `or`, and a key has the same name in the file,
//! in its variable (`RINGKV_` + the key in capitals) and in the docs. Unknown keys are
//! refused with their name, since a misspelt `vnode = 128` silently ignored would be worse
//! than no file at all. Relative paths in a file are taken from the file's directory, so
//! the files `ringkv dev` writes work from any working directory; relative paths given by
//! a variable or a flag are taken from the working directory, as usual for a command.

use std::fmt::Display;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

use ringkv::storage::SyncMode;

use crate::logging::LogFormat;
use crate::parse::PeerSpec;

/// Prefix of every setting's environment variable: `RINGKV_` + the key in capitals.
pub const ENV_PREFIX: &str = "RINGKV_";
/// Most bytes of a config file read; a node's settings fit in a few hundred.
pub const CONFIG_BYTES_MAX: u64 = 1024 * 1024;
/// Every key of a node's settings, in the order the docs list them (the tests hold the
/// README's table and the struct to it).
#[cfg(test)]
pub const KEYS: [&str; 15] = [
    "name",
    "listen",
    "dir",
    "certs",
    "peers",
    "seeds",
    "vnodes",
    "sync",
    "http",
    "http_insecure",
    "http_read_token_file",
    "n",
    "w",
    "r",
    "log_format",
];

/// One layer of a node's settings: what a file, the environment or the flags set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSettings {
    /// The node's name; it loads CERTS/NAME.pem and CERTS/NAME.key.
    pub name: Option<String>,
    /// UDP address to serve QUIC on.
    pub listen: Option<SocketAddr>,
    /// Data directory.
    pub dir: Option<PathBuf>,
    /// Certificate directory.
    pub certs: Option<PathBuf>,
    /// Static members, `NAME=ADDR`.
    pub peers: Option<Vec<PeerSpec>>,
    /// Members to join through by gossip.
    pub seeds: Option<Vec<SocketAddr>>,
    /// Virtual nodes on the ring.
    pub vnodes: Option<u32>,
    /// When writes reach the disk.
    #[serde(default, deserialize_with = "from_text")]
    pub sync: Option<SyncMode>,
    /// TCP address of the HTTP API.
    pub http: Option<SocketAddr>,
    /// Plain HTTP on a loopback address.
    pub http_insecure: Option<bool>,
    /// A file holding the read-only bearer token of `/`, `/metrics` and `/v1/status`.
    pub http_read_token_file: Option<PathBuf>,
    /// Default replicas of a request that does not say.
    pub n: Option<u8>,
    /// Default write quorum.
    pub w: Option<u8>,
    /// Default read quorum.
    pub r: Option<u8>,
    /// How logs are printed.
    pub log_format: Option<LogFormat>,
}

/// Why settings could not be read. Every variant names where the bad value came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the config file {} is larger than {CONFIG_BYTES_MAX} bytes; is it the right file?", path.display())]
    TooLarge { path: PathBuf },
    /// The file is not TOML, has a key of the wrong type, or an unknown key.
    #[error("config file {}{}: {message}", path.display(), line.map(|l| format!(", line {l}")).unwrap_or_default())]
    Parse {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
    #[error("environment variable {var}={value:?}: {reason}")]
    Env {
        var: String,
        value: String,
        reason: String,
    },
    #[error("cannot write the config file {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ConfigError {
    /// True when the settings given are at fault (exit code 2), not the machine.
    pub fn is_usage(&self) -> bool {
        !matches!(self, ConfigError::Read { .. } | ConfigError::Write { .. })
    }
}

impl NodeSettings {
    /// Reads a config file; relative paths in it are resolved against its directory.
    pub fn load(path: &Path) -> Result<NodeSettings, ConfigError> {
        use std::io::Read;
        let read_err = |source| ConfigError::Read {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_err)?;
        let mut text = String::new();
        file.take(CONFIG_BYTES_MAX + 1)
            .read_to_string(&mut text)
            .map_err(read_err)?;
        if text.len() as u64 > CONFIG_BYTES_MAX {
            return Err(ConfigError::TooLarge {
                path: path.to_owned(),
            });
        }
        let base = path.parent().unwrap_or(Path::new(""));
        Ok(NodeSettings::parse(&text, path)?.relative_to(base))
    }

    /// Parses a config file's text; `path` only names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<NodeSettings, ConfigError> {
        toml::from_str(text).map_err(|e: toml::de::Error| ConfigError::Parse {
            path: path.to_owned(),
            line: e.span().map(|span| {
                let before = &text.as_bytes()[..span.start.min(text.len())];
                before.iter().filter(|b| **b == b'\n').count() + 1
            }),
            message: e.message().trim_end().to_owned(),
        })
    }

    /// The settings of `RINGKV_*` variables, looked up through `var` (the process's
    /// environment in use, a map in tests). Lists are comma-separated.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<NodeSettings, ConfigError> {
        let env = Env { var };
        Ok(NodeSettings {
            name: env.get("name", |t| Ok(t.to_owned()))?,
            listen: env.get("listen", parse_text)?,
            dir: env.get("dir", |t| Ok(PathBuf::from(t)))?,
            certs: env.get("certs", |t| Ok(PathBuf::from(t)))?,
            peers: env.get("peers", parse_list)?,
            seeds: env.get("seeds", parse_list)?,
            vnodes: env.get("vnodes", parse_text)?,
            sync: env.get("sync", parse_text)?,
            http: env.get("http", parse_text)?,
            http_insecure: env.get("http_insecure", parse_bool)?,
            http_read_token_file: env.get("http_read_token_file", |t| Ok(PathBuf::from(t)))?,
            n: env.get("n", parse_text)?,
            w: env.get("w", parse_text)?,
            r: env.get("r", parse_text)?,
            log_format: env.get("log_format", parse_text)?,
        })
    }

    /// `self` where it sets a key, else `lower`: flags over the environment over a file.
    pub fn over(self, lower: NodeSettings) -> NodeSettings {
        NodeSettings {
            name: self.name.or(lower.name),
            listen: self.listen.or(lower.listen),
            dir: self.dir.or(lower.dir),
            certs: self.certs.or(lower.certs),
            peers: self.peers.or(lower.peers),
            seeds: self.seeds.or(lower.seeds),
            vnodes: self.vnodes.or(lower.vnodes),
            sync: self.sync.or(lower.sync),
            http: self.http.or(lower.http),
            http_insecure: self.http_insecure.or(lower.http_insecure),
            http_read_token_file: self.http_read_token_file.or(lower.http_read_token_file),
            n: self.n.or(lower.n),
            w: self.w.or(lower.w),
            r: self.r.or(lower.r),
            log_format: self.log_format.or(lower.log_format),
        }
    }

    /// Relative `dir` and `certs` joined to `base`.
    fn relative_to(mut self, base: &Path) -> NodeSettings {
        for path in [
            &mut self.dir,
            &mut self.certs,
            &mut self.http_read_token_file,
        ]
        .into_iter()
        .flatten()
        {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
        self
    }
}

/// The environment variable of a key: `RINGKV_` + the key in capitals.
pub fn env_var(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.to_ascii_uppercase())
}

/// Looks up and parses one key's variable, naming it in the error.
struct Env<F> {
    var: F,
}

impl<F: Fn(&str) -> Option<String>> Env<F> {
    fn get<T>(
        &self,
        key: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        let var = env_var(key);
        let Some(value) = (self.var)(&var) else {
            return Ok(None);
        };
        parse(&value)
            .map(Some)
            .map_err(|reason| ConfigError::Env { var, value, reason })
    }
}

fn parse_text<T: FromStr<Err: Display>>(text: &str) -> Result<T, String> {
    text.trim().parse().map_err(|e: T::Err| e.to_string())
}

fn parse_list<T: FromStr<Err: Display>>(text: &str) -> Result<Vec<T>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| parse_text(part).map_err(|e| format!("in '{part}': {e}")))
        .collect()
}

fn parse_bool(text: &str) -> Result<bool, String> {
    match text.trim() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(format!("'{other}' is not true or false")),
    }
}

/// A file value written as text and parsed with the type's `FromStr` (the sync mode).
fn from_text<'de, D, T>(de: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr<Err: Display>,
{
    let text: Option<String> = Option::deserialize(de)?;
    text.map(|t| t.parse().map_err(serde::de::Error::custom))
        .transpose()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const EVERY_KEY: &str = r#"
name = "n1"
listen = "127.0.0.1:7101"
dir = "data/n1"
certs = "/etc/ringkv/certs"
peers = ["n1=127.0.0.1:7101", "n2=127.0.0.1:7102"]
seeds = ["127.0.0.1:7102"]
vnodes = 128
sync = "always"
http = "127.0.0.1:8101"
http_insecure = true
http_read_token_file = "/etc/ringkv/read-token"
n = 1
w = 1
r = 1
log_format = "json"
"#;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn a_file_with_every_key_sets_every_key() {
        let s = NodeSettings::parse(EVERY_KEY, Path::new("node.toml")).unwrap();
        assert_eq!(s.name.as_deref(), Some("n1"));
        assert_eq!(s.listen, Some("127.0.0.1:7101".parse().unwrap()));
        assert_eq!(s.dir, Some(PathBuf::from("data/n1")));
        assert_eq!(s.certs, Some(PathBuf::from("/etc/ringkv/certs")));
        assert_eq!(s.peers.as_ref().map(Vec::len), Some(2));
        assert_eq!(s.seeds.as_ref().map(Vec::len), Some(1));
        assert_eq!(s.vnodes, Some(128));
        assert_eq!(s.sync, Some(SyncMode::Always));
        assert_eq!(s.http, Some("127.0.0.1:8101".parse().unwrap()));
        assert_eq!(s.http_insecure, Some(true));
        assert_eq!(
            s.http_read_token_file,
            Some(PathBuf::from("/etc/ringkv/read-token"))
        );
        assert_eq!((s.n, s.w, s.r), (Some(1), Some(1), Some(1)));
        assert_eq!(s.log_format, Some(LogFormat::Json));
        // Every documented key appears in the example, and nothing else.
        let keys: Vec<&str> = EVERY_KEY
            .lines()
            .filter_map(|l| l.split_once(" = ").map(|(k, _)| k))
            .collect();
        assert_eq!(keys, KEYS);
    }

    #[test]
    fn an_unknown_key_is_refused_with_its_name_the_file_and_the_line() {
        let text = "name = \"n1\"\nvnode = 128\n";
        let err = NodeSettings::parse(text, Path::new("conf/node.toml")).unwrap_err();
        let shown = err.to_string();
        assert!(shown.contains("`vnode`"), "{shown}");
        assert!(shown.contains("conf/node.toml"), "{shown}");
        assert!(shown.contains("line 2"), "{shown}");
    }

    #[test]
    fn bad_values_in_a_file_name_the_problem() {
        for (text, expected) in [
            ("sync = \"often\"", "often"),
            ("listen = \"nowhere\"", "line 1"),
            ("peers = [\"n2\"]", "NAME=ADDR"),
            ("vnodes = \"many\"", "line 1"),
            ("log_format = \"yaml\"", "yaml"),
            ("name = ", "line 1"),
        ] {
            let err = NodeSettings::parse(text, Path::new("n.toml")).unwrap_err();
            assert!(err.to_string().contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn relative_paths_in_a_file_are_taken_from_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n1.toml");
        std::fs::write(&path, "dir = \"n1\"\ncerts = \"/abs/certs\"\n").unwrap();
        let s = NodeSettings::load(&path).unwrap();
        assert_eq!(s.dir, Some(dir.path().join("n1")));
        assert_eq!(s.certs, Some(PathBuf::from("/abs/certs")));
        let err = NodeSettings::load(&dir.path().join("missing.toml")).unwrap_err();
        assert!(err.to_string().contains("missing.toml"), "{err}");
    }

    #[test]
    fn every_key_has_a_variable_and_bad_values_name_it() {
        let vars: Vec<String> = KEYS.iter().map(|k| env_var(k)).collect();
        assert_eq!(vars[0], "RINGKV_NAME");
        assert_eq!(vars[9], "RINGKV_HTTP_INSECURE");
        let s = NodeSettings::from_env(env(&[
            ("RINGKV_NAME", "n2"),
            ("RINGKV_LISTEN", "127.0.0.1:7102"),
            ("RINGKV_DIR", "d"),
            ("RINGKV_CERTS", "c"),
            ("RINGKV_PEERS", "n1=127.0.0.1:7101, n2=127.0.0.1:7102"),
            ("RINGKV_SEEDS", "127.0.0.1:7101,127.0.0.1:7103"),
            ("RINGKV_VNODES", "32"),
            ("RINGKV_SYNC", "none"),
            ("RINGKV_HTTP", "0.0.0.0:8080"),
            ("RINGKV_HTTP_INSECURE", "false"),
            ("RINGKV_N", "2"),
            ("RINGKV_W", "1"),
            ("RINGKV_R", "2"),
            ("RINGKV_LOG_FORMAT", "json"),
        ]))
        .unwrap();
        assert_eq!(s.name.as_deref(), Some("n2"));
        assert_eq!(s.peers.as_ref().map(Vec::len), Some(2));
        assert_eq!(s.seeds.as_ref().map(Vec::len), Some(2));
        assert_eq!(s.sync, Some(SyncMode::None));
        assert_eq!(s.http_insecure, Some(false));
        assert_eq!((s.n, s.w, s.r), (Some(2), Some(1), Some(2)));
        assert_eq!(s.log_format, Some(LogFormat::Json));
        assert_eq!(
            NodeSettings::from_env(env(&[])).unwrap(),
            NodeSettings::default()
        );
        for (var, value) in [
            ("RINGKV_VNODES", "lots"),
            ("RINGKV_PEERS", "n2"),
            ("RINGKV_HTTP_INSECURE", "yes"),
            ("RINGKV_N", "300"),
        ] {
            let err = NodeSettings::from_env(env(&[(var, value)])).unwrap_err();
            assert!(err.to_string().contains(var), "{err}");
        }
    }

    #[test]
    fn every_variable_of_the_compose_file_is_one_the_binary_reads() {
        let compose = include_str!("../../deploy/compose.yaml");
        // Read by deploy/entrypoint.sh, and by the client commands.
        let others = ["RINGKV_NODES", "RINGKV_NODE", "RINGKV_CONFIG"];
        let vars: Vec<&str> = compose
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with(ENV_PREFIX) && w.len() > ENV_PREFIX.len())
            .collect();
        assert!(vars.contains(&"RINGKV_LISTEN"), "{vars:?}");
        for var in vars {
            assert!(
                KEYS.iter().any(|k| env_var(k) == var) || others.contains(&var),
                "{var} in deploy/compose.yaml is no setting's variable"
            );
        }
    }

    #[test]
    fn the_readme_lists_every_key_with_its_variable() {
        let readme = include_str!("../../README.md");
        for key in KEYS {
            let row = format!("| `{key}` | `{}`", env_var(key));
            assert!(readme.contains(&row), "README has no row {row}");
        }
    }

    #[test]
    fn flags_override_the_environment_which_overrides_the_file() {
        let file = NodeSettings::parse(EVERY_KEY, Path::new("node.toml")).unwrap();
        let env = NodeSettings::from_env(env(&[
            ("RINGKV_LISTEN", "127.0.0.1:9002"),
            ("RINGKV_VNODES", "16"),
            ("RINGKV_SYNC", "none"),
        ]))
        .unwrap();
        let flags = NodeSettings {
            listen: Some("127.0.0.1:9003".parse().unwrap()),
            ..NodeSettings::default()
        };
        let merged = flags.over(env.over(file.clone()));
        assert_eq!(merged.listen, Some("127.0.0.1:9003".parse().unwrap()));
        assert_eq!(merged.vnodes, Some(16), "the environment over the file");
        assert_eq!(merged.sync, Some(SyncMode::None));
        assert_eq!(merged.name, file.name, "the file where nothing else says");
        assert_eq!(merged.peers, file.peers);
    }
}
