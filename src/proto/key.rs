//! The key every data request names: a bucket and a key, both byte strings.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::proto::RequestError;

/// A bucket and a key, both byte strings.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Key {
    /// The bucket: a namespace for keys, non-empty, at most `BUCKET_BYTES_MAX` (255) bytes,
    /// and free of zero bytes.
    #[serde(with = "serde_bytes")]
    pub bucket: Vec<u8>,
    /// The key within the bucket, at most `KEY_BYTES_MAX` bytes: the storage engine's key
    /// limit less room for the ring position and the longest bucket.
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
}

impl Key {
    /// A key from its bucket and key bytes; nothing is checked until a node receives it.
    pub fn new(bucket: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Key {
        Key {
            bucket: bucket.into(),
            key: key.into(),
        }
    }

    /// Parses `bucket/key` (the key may contain further slashes).
    pub fn parse(text: &str) -> Result<Key, RequestError> {
        match text.split_once('/') {
            Some((b, k)) if !b.is_empty() && !k.is_empty() => Ok(Key::new(b, k)),
            _ => Err(RequestError::BadRequest(format!(
                "'{text}' is not BUCKET/KEY; write it like users/alice"
            ))),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}",
            String::from_utf8_lossy(&self.bucket),
            String::from_utf8_lossy(&self.key)
        )
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_from_bucket_slash_key() {
        assert_eq!(Key::parse("a/b/c").unwrap(), Key::new("a", "b/c"));
        assert!(Key::parse("nokey").is_err());
        assert!(Key::parse("/k").is_err());
    }
}
