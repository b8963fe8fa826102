//! What a node reads from its data directory when it starts: the member table of an
//! earlier run and its actor id.

use rand_chacha::ChaCha8Rng;

use crate::core::membership::gossip::MemberMeta;
use crate::core::node::{META_ACTOR_KEY, META_CLEAN_STOP_KEY, META_MEMBERS_KEY, NodeError};
use crate::core::object::clock::ActorId;
use crate::storage::{Rmw, Space, Storage};

/// The member table stored by an earlier run (empty for a new data directory).
pub(crate) fn load_members(storage: &dyn Storage) -> Result<Vec<MemberMeta>, NodeError> {
    match storage.get(Space::Meta, META_MEMBERS_KEY)? {
        Some(bytes) => rmp_serde::from_slice(&bytes).map_err(NodeError::BadMembers),
        None => Ok(Vec::new()),
    }
}

/// The node's actor id: the stored one after a clean stop, a fresh one after a crash or
/// on a new data directory.
///
/// Why a crash renews it: the driver sends `Replicate` messages before the persist that
/// covers them (see the commit gate), so dots and counter entries of the old actor may
/// live on other replicas while this disk lost them; under the same actor the node would
/// issue them again for other values, and replicas would take the new write for one they
/// already hold. A fresh actor never reuses them. Clocks then grow by one actor per
/// unclean restart, not per restart.
pub(crate) fn load_or_create_actor(
    storage: &dyn Storage,
    rng: &mut ChaCha8Rng,
) -> Result<ActorId, NodeError> {
    let clean = storage.get(Space::Meta, META_CLEAN_STOP_KEY)?.is_some();
    if let Some(bytes) = storage.get(Space::Meta, META_ACTOR_KEY)? {
        let raw: [u8; 8] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| NodeError::BadActor(bytes.len()))?;
        if clean {
            // The marker must not outlive this run: a crash later is not a clean stop.
            storage.update(Space::Meta, META_CLEAN_STOP_KEY, &mut |_| Rmw::Delete)?;
            storage.persist()?;
            return Ok(ActorId(u64::from_be_bytes(raw)));
        }
    }
    let actor = ActorId::random(rng);
    storage.update(Space::Meta, META_ACTOR_KEY, &mut |_| {
        Rmw::Put(actor.0.to_be_bytes().to_vec())
    })?;
    storage.update(Space::Meta, META_CLEAN_STOP_KEY, &mut |_| Rmw::Delete)?;
    storage.persist()?;
    Ok(actor)
}
