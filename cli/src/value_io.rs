//! Values as bytes at the edges of the CLI: `put KEY -` and `put KEY --file PATH` read
//! them, `get KEY --raw` writes them back unchanged.
//!
//! A command-line argument is text, and the human rendering of `get` is text with a
//! newline, so neither can carry an image or a compressed blob. These two doors move bytes
//! instead, bounded by the store's own value limit so a mistaken `put k - < /dev/zero`
//! stops at once with a sentence instead of filling memory.

use std::io::Read;
use std::path::{Path, PathBuf};

use ringkv::client::GetResult;
use ringkv::proto::Key;
use ringkv::{ReadValue, VALUE_BYTES_MAX};

use crate::error::CliError;

/// The positional value that means "read standard input".
pub const STDIN_VALUE: &str = "-";

/// Where `put` takes its value from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueSource {
    /// The argument itself, as UTF-8.
    Arg(String),
    /// Standard input, to its end (`put KEY -`).
    Stdin,
    /// A file's whole content (`put KEY --file PATH`).
    File(PathBuf),
}

impl ValueSource {
    /// The source `put`'s arguments name: `--file`, else `-` for stdin, else the text.
    pub fn of(value: Option<&str>, file: Option<&Path>) -> Result<ValueSource, CliError> {
        match (value, file) {
            (_, Some(path)) => Ok(ValueSource::File(path.to_owned())),
            (Some(STDIN_VALUE), None) => Ok(ValueSource::Stdin),
            (Some(text), None) => Ok(ValueSource::Arg(text.to_owned())),
            (None, None) => Err(CliError::Usage(
                "put needs a VALUE, `-` to read it from stdin, or --file PATH".to_owned(),
            )),
        }
    }

    /// The value's bytes; `stdin` is read only for [`ValueSource::Stdin`].
    pub fn read(&self, stdin: impl Read) -> Result<Vec<u8>, CliError> {
        match self {
            ValueSource::Arg(text) => Ok(text.clone().into_bytes()),
            ValueSource::Stdin => read_bounded(stdin, "stdin"),
            ValueSource::File(path) => {
                let file = std::fs::File::open(path).map_err(|source| CliError::ReadValue {
                    from: path.display().to_string(),
                    source,
                })?;
                read_bounded(file, &path.display().to_string())
            }
        }
    }
}

/// Reads `from` to its end, refusing more than [`VALUE_BYTES_MAX`] bytes.
fn read_bounded(from: impl Read, name: &str) -> Result<Vec<u8>, CliError> {
    let mut bytes = Vec::new();
    // One byte past the limit is enough to know the value is too large.
    let limit = VALUE_BYTES_MAX as u64 + 1;
    from.take(limit)
        .read_to_end(&mut bytes)
        .map_err(|source| CliError::ReadValue {
            from: name.to_owned(),
            source,
        })?;
    if bytes.len() > VALUE_BYTES_MAX {
        return Err(CliError::Usage(format!(
            "the value from {name} is larger than the limit of {VALUE_BYTES_MAX} bytes; store large objects elsewhere and keep a reference in ringkv"
        )));
    }
    Ok(bytes)
}

/// The one value `get --raw` writes: refused when the key is missing, has siblings, or
/// holds a CRDT, since none of those is one sequence of bytes.
pub fn raw_value(key: &Key, result: &GetResult) -> Result<Vec<u8>, CliError> {
    if !result.found {
        return Err(CliError::NotFound(key.to_string()));
    }
    match (&result.value, result.values.as_slice()) {
        (Some(ReadValue::Siblings { .. } | ReadValue::Lww { .. }) | None, [one]) => Ok(one.clone()),
        (Some(ReadValue::Siblings { .. } | ReadValue::Lww { .. }) | None, many) => {
            Err(CliError::Usage(format!(
                "{key} has {} siblings and --raw writes one value; see them with `ringkv get {key} --json`, then resolve them with a put that passes its --context",
                many.len()
            )))
        }
        (Some(other), _) => Err(CliError::Usage(format!(
            "{key} holds a {} and --raw writes plain values only; drop --raw",
            ringkv::client::policy_of(other).name()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_follow_the_arguments() {
        assert_eq!(
            ValueSource::of(Some("hi"), None).unwrap(),
            ValueSource::Arg("hi".into())
        );
        assert_eq!(
            ValueSource::of(Some("-"), None).unwrap(),
            ValueSource::Stdin
        );
        assert_eq!(
            ValueSource::of(None, Some(Path::new("v.bin"))).unwrap(),
            ValueSource::File("v.bin".into())
        );
        let err = ValueSource::of(None, None).unwrap_err();
        assert_eq!(err.exit_code(), crate::error::EXIT_USAGE);
    }

    #[test]
    fn stdin_and_files_carry_any_bytes() {
        let bytes = vec![0xff, 0x00, 0xfe, b'\n', 0x80];
        assert_eq!(ValueSource::Stdin.read(&bytes[..]).unwrap(), bytes);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.bin");
        std::fs::write(&path, &bytes).unwrap();
        let from_file = ValueSource::File(path).read(std::io::empty()).unwrap();
        assert_eq!(from_file, bytes);
    }

    #[test]
    fn oversized_and_missing_inputs_are_clear_errors() {
        let big = vec![7u8; VALUE_BYTES_MAX + 1];
        let err = ValueSource::Stdin.read(&big[..]).unwrap_err();
        assert!(err.to_string().contains("larger than the limit"), "{err}");
        let exact = vec![7u8; VALUE_BYTES_MAX];
        assert_eq!(
            ValueSource::Stdin.read(&exact[..]).unwrap().len(),
            VALUE_BYTES_MAX
        );
        let err = ValueSource::File("/nonexistent/ringkv/v.bin".into())
            .read(std::io::empty())
            .unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/ringkv/v.bin"),
            "{err}"
        );
        assert_eq!(err.exit_code(), crate::error::EXIT_FAILURE);
    }
}
