//! Length-prefixed msgpack frames: the only way bytes become messages.
//!
//! A frame is a `u32` big-endian body length followed by that many bytes of msgpack. The
//! length is checked against a limit before anything is allocated, the body buffer grows
//! only with bytes that actually arrived (a lying prefix cannot make us reserve the
//! maximum), and every way the input can be wrong — too long, cut short, not msgpack, an
//! unknown enum variant, bytes left over — is a typed [`NetError`], never a panic. Network
//! input is parsed here, once, not validated later: past this module, messages are typed.
//!
//! Bodies are encoded with field names (`rmp_serde` "named" structs) so that a field added
//! with `#[serde(default)]` in a later protocol version still decodes on older nodes.

use std::fmt;
use std::io::{self, Cursor};

use serde::Serialize;
use serde::de::{DeserializeOwned, Visitor};

use super::error::NetError;

/// Default limit on a frame body, in bytes; large enough for a big value plus its siblings.
pub const FRAME_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Size of the length prefix.
pub const FRAME_HEADER_BYTES: usize = 4;
/// Body bytes reserved up front; beyond this the buffer grows as data arrives.
pub const FRAME_PREALLOC_BYTES_MAX: usize = 64 * 1024;
/// Most bytes a [`FrameReader`] asks the stream for at once beyond the frame it needs.
pub const FRAME_READ_CHUNK_BYTES: usize = 64 * 1024;
/// Bytes reserved for a frame encoded on its own: a typical request or reply (a key, a
/// small value, a context) fits without the buffer regrowing as it is written.
pub const FRAME_ENCODE_PREALLOC_BYTES: usize = 256;
/// Deepest msgpack nesting a frame may hold; bounds the decoder's recursion.
pub const FRAME_NESTING_DEPTH_MAX: usize = 128;

/// The probe of [`decode_body`]'s trailing-bytes check: a visitor that accepts no value,
/// so the deserializer reads a leftover value's marker (and at most its length or scalar
/// bytes) and then fails, without ever descending into an array or a map. The only
/// marker read that can fail is therefore the first one.
struct EndOfBody;

/// Reads many frames off one long-lived stream through one reused buffer.
///
/// A peer stream carries frames back to back and QUIC hands them over in chunks that
/// may hold several frames or part of one; the reader slices bodies out of its buffer
/// instead of allocating one per frame.
#[derive(Debug)]
pub struct FrameReader {
    buf: Vec<u8>,
    start: usize,
    max: usize,
}

/// Encodes `msg` as one frame (prefix + body); refuses a body over `max` bytes.
pub fn encode_frame<T: Serialize + ?Sized>(msg: &T, max: usize) -> Result<Vec<u8>, NetError> {
    let mut buf = Vec::with_capacity(FRAME_ENCODE_PREALLOC_BYTES);
    encode_frame_into(&mut buf, msg, max)?;
    Ok(buf)
}

/// Appends `msg` as one frame to `buf`, so a sender can batch many frames into one
/// reused buffer; on error `buf` is left as it was.
pub fn encode_frame_into<T: Serialize + ?Sized>(
    buf: &mut Vec<u8>,
    msg: &T,
    max: usize,
) -> Result<(), NetError> {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; FRAME_HEADER_BYTES]);
    if let Err(e) = rmp_serde::encode::write_named(buf, msg) {
        buf.truncate(start);
        return Err(NetError::FrameEncode {
            reason: e.to_string(),
        });
    }
    let body_len = buf.len() - start - FRAME_HEADER_BYTES;
    let prefix = match u32::try_from(body_len) {
        Ok(prefix) if body_len <= max => prefix,
        _ => {
            buf.truncate(start);
            return Err(NetError::FrameTooLarge {
                len: body_len as u64,
                max,
            });
        }
    };
    buf[start..start + FRAME_HEADER_BYTES].copy_from_slice(&prefix.to_be_bytes());
    Ok(())
}

/// Decodes exactly one frame from `bytes` (prefix + body, nothing after it).
pub fn decode_frame<T: DeserializeOwned>(bytes: &[u8], max: usize) -> Result<T, NetError> {
    let Some((header, body)) = bytes.split_first_chunk::<FRAME_HEADER_BYTES>() else {
        return Err(NetError::FrameTruncated {
            expected: FRAME_HEADER_BYTES as u64,
            got: bytes.len() as u64,
        });
    };
    let len = body_len(*header, max)?;
    if body.len() < len {
        return Err(NetError::FrameTruncated {
            expected: (FRAME_HEADER_BYTES + len) as u64,
            got: bytes.len() as u64,
        });
    }
    if body.len() > len {
        return Err(NetError::FrameTrailing {
            len: bytes.len(),
            extra: body.len() - len,
        });
    }
    decode_body(body)
}

/// Decodes one msgpack message that must fill `body` exactly.
///
/// Decodes straight from the slice: the reader-based deserializer copies every byte
/// string through an intermediate buffer. The slice deserializer does not report how far
/// it read, so "nothing left over" is checked by asking it for one more value with
/// `EndOfBody`, which reads that value's first byte (its marker) and no further: with
/// no byte left that read fails with end-of-input, and any byte left over is a marker
/// (every byte value is one), so the probe fails some other way.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, NetError> {
    let mut de = rmp_serde::Deserializer::from_read_ref(body);
    de.set_max_depth(FRAME_NESTING_DEPTH_MAX);
    let msg = T::deserialize(&mut de).map_err(|e| NetError::FrameDecode {
        len: body.len(),
        reason: e.to_string(),
    })?;
    match serde::Deserializer::deserialize_any(&mut de, EndOfBody) {
        Err(rmp_serde::decode::Error::InvalidMarkerRead(e))
            if e.kind() == io::ErrorKind::UnexpectedEof =>
        {
            Ok(msg)
        }
        // At least the marker byte the probe read is left over.
        _ => Err(NetError::FrameTrailing {
            len: body.len(),
            extra: body.len().saturating_sub(decoded_len::<T>(body)).max(1),
        }),
    }
}

/// Writes `msg` as one frame; does not finish the stream.
pub async fn write_frame<T: Serialize + ?Sized>(
    send: &mut quinn::SendStream,
    msg: &T,
    max: usize,
) -> Result<(), NetError> {
    let frame = encode_frame(msg, max)?;
    send.write_all(&frame)
        .await
        .map_err(|source| NetError::StreamWrite { source })
}

/// Reads one frame and decodes it; a prefix over `max` is refused before reading the body.
pub async fn read_frame<T: DeserializeOwned>(
    recv: &mut quinn::RecvStream,
    max: usize,
) -> Result<T, NetError> {
    let body = read_frame_body(recv, max).await?;
    decode_body(&body)
}

/// Reads one frame's body bytes without decoding them.
pub async fn read_frame_body(
    recv: &mut quinn::RecvStream,
    max: usize,
) -> Result<Vec<u8>, NetError> {
    let mut header = [0u8; FRAME_HEADER_BYTES];
    recv.read_exact(&mut header).await.map_err(|e| match e {
        quinn::ReadExactError::FinishedEarly(got) => NetError::FrameTruncated {
            expected: FRAME_HEADER_BYTES as u64,
            got: got as u64,
        },
        quinn::ReadExactError::ReadError(source) => NetError::StreamRead { source },
    })?;
    let len = body_len(header, max)?;
    let mut body = Vec::with_capacity(len.min(FRAME_PREALLOC_BYTES_MAX));
    while body.len() < len {
        match recv.read_chunk(len - body.len(), true).await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk.bytes),
            Ok(None) => {
                return Err(NetError::FrameTruncated {
                    expected: (FRAME_HEADER_BYTES + len) as u64,
                    got: (FRAME_HEADER_BYTES + body.len()) as u64,
                });
            }
            Err(source) => return Err(NetError::StreamRead { source }),
        }
    }
    Ok(body)
}

impl FrameReader {
    /// A reader that refuses frames whose body is over `max` bytes.
    pub fn new(max: usize) -> FrameReader {
        FrameReader {
            buf: Vec::new(),
            start: 0,
            max,
        }
    }

    /// The next frame's body, or `None` when the stream finished cleanly between frames.
    ///
    /// A prefix over the limit is refused before its body is read; a stream that ends
    /// inside a frame is [`NetError::FrameTruncated`].
    pub async fn next(&mut self, recv: &mut quinn::RecvStream) -> Result<Option<&[u8]>, NetError> {
        let body = loop {
            let avail = &self.buf[self.start..];
            let wanted = match avail.split_first_chunk::<FRAME_HEADER_BYTES>() {
                Some((header, rest)) => {
                    let len = body_len(*header, self.max)?;
                    if rest.len() >= len {
                        let from = self.start + FRAME_HEADER_BYTES;
                        self.start = from + len;
                        break from..from + len;
                    }
                    len - rest.len()
                }
                None => FRAME_HEADER_BYTES - avail.len(),
            };
            // Keep only the unread tail before reading more, so the buffer stays within
            // one frame plus one read.
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            match recv
                .read_chunk(wanted.max(FRAME_READ_CHUNK_BYTES), true)
                .await
            {
                Ok(Some(chunk)) => self.buf.extend_from_slice(&chunk.bytes),
                Ok(None) if self.buf.is_empty() => return Ok(None),
                Ok(None) => {
                    return Err(NetError::FrameTruncated {
                        expected: (self.buf.len() + wanted) as u64,
                        got: self.buf.len() as u64,
                    });
                }
                Err(source) => return Err(NetError::StreamRead { source }),
            }
        };
        Ok(Some(&self.buf[body]))
    }
}

/// How many bytes of `body` its first message takes, through the reader deserializer that
/// reports its position. Only the trailing-bytes error needs it, so its copies are cheap.
#[cold]
fn decoded_len<T: DeserializeOwned>(body: &[u8]) -> usize {
    let mut de = rmp_serde::Deserializer::new(Cursor::new(body));
    de.set_max_depth(FRAME_NESTING_DEPTH_MAX);
    match T::deserialize(&mut de) {
        Ok(_) => usize::try_from(de.position()).map_or(body.len(), |used| used.min(body.len())),
        // Decoded once already, so this does not fail; the caller still reports the one
        // byte it knows is left over rather than panic.
        Err(_) => body.len(),
    }
}

impl Visitor<'_> for EndOfBody {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the end of the frame body")
    }
}

fn body_len(header: [u8; FRAME_HEADER_BYTES], max: usize) -> Result<usize, NetError> {
    let len = u32::from_be_bytes(header);
    match usize::try_from(len) {
        Ok(len) if len <= max => Ok(len),
        _ => Err(NetError::FrameTooLarge {
            len: u64::from(len),
            max,
        }),
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Msg {
        Ping(u64),
        Put { key: String, value: Vec<u8> },
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum MsgV2 {
        Ping(u64),
        Put { key: String, value: Vec<u8> },
        Frobnicate(String),
    }

    fn put() -> Msg {
        Msg::Put {
            key: "b/k".to_owned(),
            value: vec![1, 2, 3],
        }
    }

    #[test]
    fn roundtrip() -> Result<(), Box<dyn std::error::Error>> {
        for msg in [Msg::Ping(7), put()] {
            let frame = encode_frame(&msg, FRAME_BYTES_MAX)?;
            let len = u32::from_be_bytes(frame[..4].try_into()?) as usize;
            assert_eq!(len + FRAME_HEADER_BYTES, frame.len());
            assert_eq!(decode_frame::<Msg>(&frame, FRAME_BYTES_MAX)?, msg);
        }
        Ok(())
    }

    #[test]
    fn length_over_max_is_refused_before_the_body() {
        // Only the 4-byte prefix is present: the refusal cannot depend on reading the body.
        let frame = u32::MAX.to_be_bytes();
        let err = decode_frame::<Msg>(&frame, FRAME_BYTES_MAX).unwrap_err();
        match err {
            NetError::FrameTooLarge { len, max } => {
                assert_eq!(len, u64::from(u32::MAX));
                assert_eq!(max, FRAME_BYTES_MAX);
            }
            other => panic!("unexpected {other}"),
        }
        let text = decode_frame::<Msg>(&frame, 10).unwrap_err().to_string();
        assert!(
            text.contains("4294967295") && text.contains("10 bytes"),
            "{text}"
        );
    }

    #[test]
    fn encoding_over_max_is_refused() {
        let big = Msg::Put {
            key: "k".to_owned(),
            value: vec![0; 100],
        };
        let err = encode_frame(&big, 50).unwrap_err();
        assert!(
            matches!(err, NetError::FrameTooLarge { max: 50, .. }),
            "{err}"
        );
    }

    #[test]
    fn truncated_input_is_typed() -> Result<(), Box<dyn std::error::Error>> {
        let frame = encode_frame(&put(), FRAME_BYTES_MAX)?;
        for cut in 0..frame.len() {
            let err = decode_frame::<Msg>(&frame[..cut], FRAME_BYTES_MAX).unwrap_err();
            match err {
                NetError::FrameTruncated { expected, got } => {
                    assert_eq!(got, cut as u64);
                    assert!(expected > got);
                }
                other => panic!("cut {cut}: unexpected {other}"),
            }
        }
        Ok(())
    }

    #[test]
    fn trailing_bytes_are_refused() -> Result<(), Box<dyn std::error::Error>> {
        let mut frame = encode_frame(&Msg::Ping(1), FRAME_BYTES_MAX)?;
        frame.push(0);
        let err = decode_frame::<Msg>(&frame, FRAME_BYTES_MAX).unwrap_err();
        assert!(
            matches!(err, NetError::FrameTrailing { extra: 1, .. }),
            "{err}"
        );

        // A prefix that covers two messages: the second one is trailing inside the body.
        let mut body = rmp_serde::to_vec_named(&Msg::Ping(1))?;
        body.extend(rmp_serde::to_vec_named(&Msg::Ping(2))?);
        let err = decode_body::<Msg>(&body).unwrap_err();
        assert!(matches!(err, NetError::FrameTrailing { .. }), "{err}");

        // Left-over bytes that are no complete value, or no valid marker, are trailing
        // bytes too, counted exactly.
        let one = rmp_serde::to_vec_named(&Msg::Ping(1))?;
        let tails: [&[u8]; 6] = [
            &[0xcd],
            &[0xc1],
            &[0xc1, 0x00, 0x07],
            &[0x92, 0x01],
            &[0xa3, b'x'],
            &[0xc4, 0x09],
        ];
        for tail in tails {
            let mut body = one.clone();
            body.extend_from_slice(tail);
            let err = decode_body::<Msg>(&body).unwrap_err();
            assert!(
                matches!(err, NetError::FrameTrailing { extra, .. } if extra == tail.len()),
                "{tail:?}: {err}"
            );
        }
        Ok(())
    }

    #[test]
    fn a_message_ending_in_an_option_decodes_whole() -> Result<(), Box<dyn std::error::Error>> {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Reply {
            id: u64,
            error: Option<String>,
        }
        for msg in [
            Reply { id: 1, error: None },
            Reply {
                id: 2,
                error: Some("disk full".to_owned()),
            },
        ] {
            let body = rmp_serde::to_vec_named(&msg)?;
            assert_eq!(decode_body::<Reply>(&body)?, msg);
        }
        Ok(())
    }

    #[test]
    fn unknown_variant_is_a_decode_error() -> Result<(), Box<dyn std::error::Error>> {
        let frame = encode_frame(&MsgV2::Frobnicate("x".to_owned()), FRAME_BYTES_MAX)?;
        let err = decode_frame::<Msg>(&frame, FRAME_BYTES_MAX).unwrap_err();
        match &err {
            NetError::FrameDecode { reason, .. } => {
                assert!(reason.contains("Frobnicate"), "{reason}")
            }
            other => panic!("unexpected {other}"),
        }
        // The old variants still decode under the newer enum.
        let frame = encode_frame(&put(), FRAME_BYTES_MAX)?;
        let v2: MsgV2 = decode_frame(&frame, FRAME_BYTES_MAX)?;
        assert!(matches!(v2, MsgV2::Put { .. }));
        Ok(())
    }

    #[test]
    fn garbage_never_panics() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x5eed);
        for _ in 0..2_000 {
            let len = rng.random_range(0..64usize);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            // Half of the cases get a consistent prefix so the body decoder sees the garbage.
            if len >= FRAME_HEADER_BYTES && rng.random_bool(0.5) {
                let body = (len - FRAME_HEADER_BYTES) as u32;
                bytes[..4].copy_from_slice(&body.to_be_bytes());
            }
            let _ = decode_frame::<Msg>(&bytes, FRAME_BYTES_MAX);
        }
    }

    #[test]
    fn deep_nesting_is_refused() {
        // 10 000 nested one-element arrays around a nil.
        let mut body = vec![0x91u8; 10_000];
        body.push(0xc0);
        let err = decode_body::<serde_json::Value>(&body).unwrap_err();
        assert!(matches!(err, NetError::FrameDecode { .. }), "{err}");
    }
}
