//! How an HTTP write keeps its content type: a small envelope inside the stored value.
//!
//! The core stores values as opaque bytes, and the QUIC client and the CLI read them as
//! such, so the envelope is used only where it is needed: a `PUT` whose `Content-Type` is
//! absent or `application/octet-stream` stores the body as it is (exactly what a QUIC
//! client reads back), and any other content type is stored as
//!
//! ```text
//! MAGIC (8 bytes: 0x00 0xff "rkvct" 0x01) | length (1 byte) | content type | body
//! ```
//!
//! A read strips a well-formed envelope and answers with its content type; a value
//! without one (any value a QUIC client wrote, unless it starts with those exact eight
//! bytes followed by a valid content type) is served as `application/octet-stream`.
//! QUIC clients that read a value written over HTTP with a content type see the envelope
//! and can strip it with [`open`].

use super::limits::CONTENT_TYPE_BYTES_MAX;

/// The first bytes of an enveloped value: a zero and 0xff (no UTF-8 text starts so), a
/// tag and a format version.
pub const MAGIC: &[u8; 8] = b"\x00\xffrkvct\x01";
/// The content type of a value stored without an envelope.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// The bytes to store for `body` written with `content_type`: the body itself for the
/// default content type, else the envelope. The caller has checked the content type
/// ([`valid_content_type`]).
pub fn seal(content_type: Option<&str>, body: &[u8]) -> Vec<u8> {
    match content_type {
        None => body.to_vec(),
        Some(ct) if ct.eq_ignore_ascii_case(DEFAULT_CONTENT_TYPE) => body.to_vec(),
        Some(ct) => {
            let mut out = Vec::with_capacity(MAGIC.len() + 1 + ct.len() + body.len());
            out.extend_from_slice(MAGIC);
            // `valid_content_type` bounds the length by CONTENT_TYPE_BYTES_MAX (255).
            out.push(u8::try_from(ct.len()).unwrap_or(u8::MAX));
            out.extend_from_slice(&ct.as_bytes()[..ct.len().min(CONTENT_TYPE_BYTES_MAX)]);
            out.extend_from_slice(body);
            out
        }
    }
}

/// The content type and body of a stored value; a value that is not a well-formed
/// envelope is its own body, of the default content type.
pub fn open(stored: &[u8]) -> (&str, &[u8]) {
    let plain = (DEFAULT_CONTENT_TYPE, stored);
    let Some(rest) = stored.strip_prefix(MAGIC.as_slice()) else {
        return plain;
    };
    let Some((&len, rest)) = rest.split_first() else {
        return plain;
    };
    let len = usize::from(len);
    if rest.len() < len {
        return plain;
    }
    let (ct, body) = rest.split_at(len);
    match std::str::from_utf8(ct) {
        Ok(ct) if valid_content_type(ct).is_ok() => (ct, body),
        _ => plain,
    }
}

/// Checks a content type for storing: non-empty, at most [`CONTENT_TYPE_BYTES_MAX`]
/// bytes, visible ASCII and spaces only.
pub fn valid_content_type(ct: &str) -> Result<(), String> {
    if ct.is_empty() {
        return Err("the Content-Type header is empty; leave it out or name a type".into());
    }
    if ct.len() > CONTENT_TYPE_BYTES_MAX {
        return Err(format!(
            "the Content-Type is {} bytes, over the limit of {CONTENT_TYPE_BYTES_MAX}",
            ct.len()
        ));
    }
    if !ct
        .bytes()
        .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
    {
        return Err("the Content-Type has bytes other than visible ASCII".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_type_is_stored_bare_and_others_round_trip() {
        assert_eq!(seal(None, b"raw"), b"raw");
        assert_eq!(seal(Some("application/octet-stream"), b"raw"), b"raw");
        let sealed = seal(Some("text/plain; charset=utf-8"), b"hi");
        assert_eq!(open(&sealed), ("text/plain; charset=utf-8", &b"hi"[..]));
        assert_eq!(open(b"raw"), (DEFAULT_CONTENT_TYPE, &b"raw"[..]));
    }

    #[test]
    fn a_truncated_or_odd_envelope_is_read_as_a_plain_value() {
        let mut short = MAGIC.to_vec();
        short.push(10);
        short.extend_from_slice(b"abc");
        assert_eq!(open(&short).0, DEFAULT_CONTENT_TYPE);
        assert_eq!(open(MAGIC).0, DEFAULT_CONTENT_TYPE);
        let mut binary = MAGIC.to_vec();
        binary.extend_from_slice(&[2, 0, 1]);
        assert_eq!(open(&binary), (DEFAULT_CONTENT_TYPE, &binary[..]));
        assert!(valid_content_type(&"a".repeat(256)).is_err());
        assert!(valid_content_type("").is_err());
    }
}
