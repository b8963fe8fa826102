//! Causal contexts as clients see them: opaque tokens.
//!
//! A client reads a key, gets a token, and hands it back with its next write so the
//! write supersedes exactly what the client saw. The token is base64 (URL-safe, no
//! padding) of the msgpack of a version vector. Clients must not look inside it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use crdts::VClock;
use serde::{Deserialize, Serialize};

use super::ObjectError;
use crate::core::object::clock::ActorId;

/// Most actors one context may name; more means a corrupt or hostile token.
pub const CONTEXT_ACTORS_MAX: usize = 4096;
/// Longest token text accepted.
pub const CONTEXT_TOKEN_BYTES_MAX: usize = 256 * 1024;

/// A version vector over actors, carried between reads and writes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Context(pub VClock<ActorId>);

impl Context {
    /// The context that has seen nothing: a write with it supersedes no value (a blind
    /// write).
    pub fn empty() -> Context {
        Context::default()
    }

    /// True for the empty context, which names no actor.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The opaque token handed to clients.
    pub fn to_token(&self) -> String {
        // Encoding a BTreeMap of integers cannot fail; an empty token still decodes.
        let bytes = rmp_serde::to_vec(&self.0).unwrap_or_default();
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Parses a client's token. The empty string is the empty context.
    pub fn from_token(token: &str) -> Result<Context, ObjectError> {
        if token.is_empty() {
            return Ok(Context::empty());
        }
        if token.len() > CONTEXT_TOKEN_BYTES_MAX {
            return Err(ObjectError::BadContext(format!(
                "token is {} bytes, over the limit of {CONTEXT_TOKEN_BYTES_MAX}",
                token.len()
            )));
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(token.trim())
            .map_err(|e| ObjectError::BadContext(format!("not base64: {e}")))?;
        let clock: VClock<ActorId> = rmp_serde::from_slice(&bytes)
            .map_err(|e| ObjectError::BadContext(format!("not a version vector: {e}")))?;
        if clock.dots.len() > CONTEXT_ACTORS_MAX {
            return Err(ObjectError::BadContext(format!(
                "names {} actors, over the limit of {CONTEXT_ACTORS_MAX}",
                clock.dots.len()
            )));
        }
        Ok(Context(clock))
    }

    /// True when this context has seen the dot `(actor, counter)`.
    pub fn covers(&self, actor: &ActorId, counter: u64) -> bool {
        self.0.get(actor) >= counter
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crdts::{CmRDT, Dot};

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        let mut ctx = Context::empty();
        ctx.0.apply(Dot::new(ActorId(7), 3));
        ctx.0.apply(Dot::new(ActorId(9), 1));
        let token = ctx.to_token();
        assert_eq!(Context::from_token(&token).unwrap(), ctx);
        assert_eq!(Context::from_token("").unwrap(), Context::empty());
        assert!(matches!(
            Context::from_token("!!!"),
            Err(ObjectError::BadContext(_))
        ));
        assert!(matches!(
            Context::from_token("AAAA"),
            Err(ObjectError::BadContext(_))
        ));
    }
}
