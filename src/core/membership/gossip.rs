//! SWIM failure detection and dissemination through foca, kept sans-IO.
//!
//! foca brings no runtime of its own: it asks to send packets, to be woken after a
//! delay, and tells us when members come and go. [`Gossip`] turns those requests into
//! values the core can hand to its driver — datagrams addressed by network address, and
//! deadlines in the same monotonic milliseconds as every other core timer — and draws
//! foca's randomness from the node's seeded RNG, so the simulator replays gossip exactly.
//!
//! Who is alive comes from foca (up, suspect, down). What a member *is* — its address,
//! vnode count and whether it is a normal member, leaving or gone — is a small versioned
//! record ([`MemberMeta`]) that rides foca's custom broadcasts; the node also syncs the
//! whole table over the reliable peer protocol, because broadcasts stop after a bounded
//! number of transmissions and a node that joins later must still learn everything.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::fmt;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foca::{BroadcastHandler, Codec, Foca, Invalidates, Notification, PostcardCodec, Runtime};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::core::placement::ring::NodeId;
use crate::core::timer::{Timer, TimerTable};

/// Largest gossip packet: below QUIC's smallest datagram payload (~1150 B at a 1200 B
/// path MTU), so a packet never needs fragmenting.
pub const GOSSIP_PACKET_BYTES_MAX: usize = 1_100;
/// Default SWIM protocol period (one probe per period).
pub const PROBE_PERIOD_MS_DEFAULT: u64 = 1_000;
/// Most datagrams waiting for the driver; a drain follows every input.
pub const GOSSIP_OUTBOX_MAX: usize = 1 << 16;
/// Most membership events waiting for the node; a drain follows every foca call.
pub const GOSSIP_EVENTS_MAX: usize = 1 << 16;
/// Largest encoded [`MemberMeta`] accepted from a broadcast.
pub const MEMBER_META_BYTES_MAX: usize = 512;

/// A member's identity in SWIM: the network address foca dedupes on, the node name the
/// ring uses, and a generation that grows across restarts so a restarted node wins over
/// its previous incarnation (foca will not let a declared-down identity back in).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GossipId {
    pub name: NodeId,
    pub addr: String,
    pub vnodes: u32,
    pub generation: u64,
}

/// Where a member stands in the ring's life cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum MemberPhase {
    /// Owns partitions.
    Normal,
    /// Handing its partitions to their new owners; no longer in the ring.
    Leaving,
    /// Gone; remembered so stale news cannot bring it back.
    Left,
}

/// What the cluster knows about a member, versioned by the member itself: only a node
/// changes its own record, so the higher version always wins and merges commute.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberMeta {
    pub name: NodeId,
    pub addr: String,
    pub vnodes: u32,
    pub version: u64,
    pub phase: MemberPhase,
}

/// What gossip tells the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GossipEvent {
    /// A member answered probes (or joined).
    Up(GossipId),
    /// A member was declared down (or left).
    Down(GossipId),
    /// A newer member record arrived in a broadcast.
    Meta(MemberMeta),
}

/// Liveness of a member as foca sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GossipState {
    Alive,
    Suspect,
    Down,
}

/// Why a gossip packet's header did not decode.
type PacketError = <PostcardCodec as Codec<GossipId>>::Error;

/// Errors from gossip input. Every variant but [`GossipError::Foca`] is raised before
/// foca sees the input, so the SWIM state is unchanged.
#[derive(Debug, Error)]
pub enum GossipError {
    /// The packet is over [`GOSSIP_PACKET_BYTES_MAX`]; it was dropped unread.
    #[error("gossip packet of {len} bytes is over the {max}-byte limit")]
    TooBig { len: usize, max: usize },
    /// The packet's header does not decode; it was dropped.
    #[error("gossip packet cannot be decoded: {0}")]
    Decode(#[source] PacketError),
    /// The header names another sender than the certificate; the packet was dropped.
    #[error("gossip packet claims to come from '{claimed}' but arrived from '{actual}'")]
    Impostor { claimed: NodeId, actual: NodeId },
    /// foca refused the input. foca may have applied part of it (as its own errors
    /// say); the node only logs this.
    #[error("foca refused the input: {0}")]
    Foca(#[source] foca::Error),
    /// Our own member record is over the broadcast limit; nothing was queued.
    #[error("member record of {len} bytes is over the {max}-byte limit")]
    MetaTooBig { len: usize, max: usize },
    /// A broadcast member record does not decode; it was ignored.
    #[error("member record cannot be decoded: {0}")]
    BadMeta(#[source] rmp_serde::decode::Error),
}

/// The core's seeded ChaCha, adapted to the rand_core 0.10 traits foca 2 asks for.
#[derive(Debug)]
struct GossipRng(ChaCha8Rng);

/// foca's custom-broadcast handler for member records: keeps the newest version seen per
/// member and queues every new one for the node.
#[derive(Debug)]
struct MetaHandler {
    versions: BTreeMap<NodeId, u64>,
    received: Arc<Mutex<VecDeque<MemberMeta>>>,
}

/// Identifies a member record in foca's broadcast backlog.
#[derive(Debug)]
struct MetaKey {
    name: NodeId,
    version: u64,
}

type FocaInstance = Foca<GossipId, PostcardCodec, GossipRng, MetaHandler>;

/// One node's SWIM state machine with its pending timers and datagrams.
pub struct Gossip {
    foca: FocaInstance,
    received: Arc<Mutex<VecDeque<MemberMeta>>>,
    outbox: VecDeque<(String, Vec<u8>)>,
    events: VecDeque<GossipEvent>,
    probe_period_ms: u64,
    cluster_size: u32,
}

/// One of foca's timers, as the node's timer table holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GossipTimer(foca::Timer<GossipId>);

/// The foca runtime for one call: collects what foca asks for, its timers into the
/// node's one timer table.
struct Io<'a> {
    now_ms: u64,
    timers: &'a mut TimerTable,
    outbox: &'a mut VecDeque<(String, Vec<u8>)>,
    events: &'a mut VecDeque<GossipEvent>,
}

impl GossipId {
    /// The placeholder identity used to announce to a seed known only by address: foca
    /// accepts an announce addressed to any identity with its own address.
    pub fn seed(addr: &str) -> GossipId {
        GossipId {
            name: NodeId::new(""),
            addr: addr.to_string(),
            vnodes: 0,
            generation: 0,
        }
    }
}

impl MemberMeta {
    pub fn encode(&self) -> Vec<u8> {
        // invariant: a struct of strings and integers always serializes.
        rmp_serde::to_vec(self).unwrap_or_default()
    }

    pub fn decode(data: &[u8]) -> Result<MemberMeta, GossipError> {
        if data.len() > MEMBER_META_BYTES_MAX {
            return Err(GossipError::MetaTooBig {
                len: data.len(),
                max: MEMBER_META_BYTES_MAX,
            });
        }
        rmp_serde::from_slice(data).map_err(GossipError::BadMeta)
    }

    /// True when `self` should replace `other` (same member, newer version).
    pub fn supersedes(&self, other: &MemberMeta) -> bool {
        self.name == other.name && self.version > other.version
    }
}

impl Gossip {
    /// A SWIM member `id` expecting about `cluster_size` members, seeded by `rng_seed`.
    pub fn new(id: GossipId, cluster_size: u32, rng_seed: u64, probe_period_ms: u64) -> Gossip {
        let received = Arc::new(Mutex::new(VecDeque::new()));
        let handler = MetaHandler {
            versions: BTreeMap::new(),
            received: received.clone(),
        };
        let config = foca_config(cluster_size, probe_period_ms);
        let rng = GossipRng(ChaCha8Rng::seed_from_u64(rng_seed));
        let foca = Foca::with_custom_broadcast(id, config, rng, PostcardCodec, handler);
        Gossip {
            foca,
            received,
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            probe_period_ms,
            cluster_size: cluster_size.max(1),
        }
    }

    #[cfg(test)]
    pub fn identity(&self) -> &GossipId {
        self.foca.identity()
    }

    /// Asks the member listening at `addr` to let us in (join through a seed).
    pub fn announce(
        &mut self,
        now_ms: u64,
        timers: &mut TimerTable,
        addr: &str,
    ) -> Result<(), GossipError> {
        let result = {
            let (foca, mut io) = self.split(now_ms, timers);
            foca.announce(GossipId::seed(addr), &mut io)
        };
        self.after(result)
    }

    /// A datagram arrived from the node whose certificate names it `from`.
    pub fn handle_data(
        &mut self,
        now_ms: u64,
        timers: &mut TimerTable,
        from: &NodeId,
        data: &[u8],
    ) -> Result<(), GossipError> {
        if data.len() > GOSSIP_PACKET_BYTES_MAX {
            return Err(GossipError::TooBig {
                len: data.len(),
                max: GOSSIP_PACKET_BYTES_MAX,
            });
        }
        // A node may speak only for itself: check the header's sender before foca
        // believes anything in the packet.
        let header = Codec::<GossipId>::decode_header(&mut PostcardCodec, data)
            .map_err(GossipError::Decode)?;
        if &header.src.name != from {
            return Err(GossipError::Impostor {
                claimed: header.src.name,
                actual: from.clone(),
            });
        }
        let result = {
            let (foca, mut io) = self.split(now_ms, timers);
            foca.handle_data(data, &mut io)
        };
        self.after(result)
    }

    /// Fires one of foca's timers, due at `now_ms`.
    pub fn handle_timer(
        &mut self,
        now_ms: u64,
        timers: &mut TimerTable,
        timer: GossipTimer,
    ) -> Result<(), GossipError> {
        let result = {
            let (foca, mut io) = self.split(now_ms, timers);
            foca.handle_timer(timer.0, &mut io)
        };
        self.after(result)
    }

    /// Queues our own member record for dissemination.
    pub fn broadcast_meta(&mut self, meta: &MemberMeta) -> Result<(), GossipError> {
        let result = self.foca.add_broadcast(&meta.encode());
        let drained = self.after(result.map(|_| ()));
        // Our own records are not news to us.
        self.events
            .retain(|e| !matches!(e, GossipEvent::Meta(m) if m.name == meta.name));
        drained
    }

    /// Tells the cluster we are leaving for good.
    pub fn leave(&mut self, now_ms: u64, timers: &mut TimerTable) -> Result<(), GossipError> {
        let result = {
            let (foca, mut io) = self.split(now_ms, timers);
            foca.leave_cluster(&mut io)
        };
        self.after(result)
    }

    /// Retunes dissemination and suspicion timeouts for a cluster of `size` members.
    pub fn set_cluster_size(&mut self, size: u32) {
        let size = size.max(1);
        if size == self.cluster_size {
            return;
        }
        self.cluster_size = size;
        if let Err(e) = self
            .foca
            .set_config(foca_config(size, self.probe_period_ms))
        {
            tracing::warn!(error = %e, "foca refused a new configuration");
        }
    }

    pub fn poll_datagram(&mut self) -> Option<(String, Vec<u8>)> {
        self.outbox.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<GossipEvent> {
        self.events.pop_front()
    }

    /// foca's view of `name` (its newest identity), if it knows the member.
    pub fn state_of(&self, name: &NodeId) -> Option<GossipState> {
        self.foca
            .iter_membership_state()
            .filter(|m| &m.id().name == name)
            .max_by_key(|m| m.id().generation)
            .map(|m| match m.state() {
                foca::State::Alive => GossipState::Alive,
                foca::State::Suspect => GossipState::Suspect,
                foca::State::Down => GossipState::Down,
            })
    }

    fn split<'a>(
        &'a mut self,
        now_ms: u64,
        timers: &'a mut TimerTable,
    ) -> (&'a mut FocaInstance, Io<'a>) {
        (
            &mut self.foca,
            Io {
                now_ms,
                timers,
                outbox: &mut self.outbox,
                events: &mut self.events,
            },
        )
    }

    /// Moves broadcast records into the event queue and maps foca's error.
    fn after(&mut self, result: Result<(), foca::Error>) -> Result<(), GossipError> {
        let mut received = self
            .received
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while let Some(meta) = received.pop_front() {
            if self.events.len() < GOSSIP_EVENTS_MAX {
                self.events.push_back(GossipEvent::Meta(meta));
            }
        }
        result.map_err(GossipError::Foca)
    }
}

impl foca::Identity for GossipId {
    type Addr = String;

    fn renew(&self) -> Option<Self> {
        Some(GossipId {
            generation: self.generation + 1,
            ..self.clone()
        })
    }

    fn addr(&self) -> String {
        self.addr.clone()
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        (self.generation, &self.name) > (adversary.generation, &adversary.name)
    }
}

impl rand_core_010::TryRng for GossipRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(rand::RngCore::next_u32(&mut self.0))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(rand::RngCore::next_u64(&mut self.0))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        rand::RngCore::fill_bytes(&mut self.0, dst);
        Ok(())
    }
}

impl BroadcastHandler<GossipId> for MetaHandler {
    type Key = MetaKey;
    type Error = GossipError;

    fn receive_item(
        &mut self,
        data: &[u8],
        _sender: Option<&GossipId>,
    ) -> Result<Option<MetaKey>, GossipError> {
        let meta = MemberMeta::decode(data)?;
        if self
            .versions
            .get(&meta.name)
            .is_some_and(|known| *known >= meta.version)
        {
            return Ok(None);
        }
        self.versions.insert(meta.name.clone(), meta.version);
        let key = MetaKey {
            name: meta.name.clone(),
            version: meta.version,
        };
        let mut received = self
            .received
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if received.len() < GOSSIP_EVENTS_MAX {
            received.push_back(meta);
        }
        Ok(Some(key))
    }
}

impl Invalidates for MetaKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.name == other.name && self.version >= other.version
    }
}

impl Runtime<GossipId> for Io<'_> {
    fn notify(&mut self, notification: Notification<'_, GossipId>) {
        let event = match notification {
            Notification::MemberUp(id) => GossipEvent::Up(id.clone()),
            Notification::MemberDown(id) => GossipEvent::Down(id.clone()),
            Notification::Rename(_, new) => GossipEvent::Up(new.clone()),
            _ => return,
        };
        if self.events.len() < GOSSIP_EVENTS_MAX {
            self.events.push_back(event);
        }
    }

    fn send_to(&mut self, to: GossipId, data: &[u8]) {
        if self.outbox.len() < GOSSIP_OUTBOX_MAX {
            self.outbox.push_back((to.addr, data.to_vec()));
        }
    }

    fn submit_after(&mut self, event: foca::Timer<GossipId>, after: Duration) {
        // foca keeps a handful of timers per member, within the table's reserved room.
        let at = self.now_ms + after.as_millis() as u64;
        self.timers.set(at, Timer::Gossip(GossipTimer(event)));
    }
}

impl fmt::Debug for Gossip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gossip")
            .field("identity", self.foca.identity())
            .field("active_members", &self.foca.num_members())
            .field("outbox", &self.outbox.len())
            .finish()
    }
}

/// foca's LAN settings, with our packet size and protocol period.
fn foca_config(cluster_size: u32, probe_period_ms: u64) -> foca::Config {
    let size = NonZeroU32::new(cluster_size.max(1)).unwrap_or(NonZeroU32::MIN);
    let mut config = foca::Config::new_lan(size);
    let period = Duration::from_millis(probe_period_ms.max(10));
    config.probe_period = period;
    config.probe_rtt = Duration::from_millis((probe_period_ms * 2 / 5).max(5));
    config.max_packet_size =
        NonZeroUsize::new(GOSSIP_PACKET_BYTES_MAX).unwrap_or(NonZeroUsize::MIN);
    // Suspicion lasts a few periods, growing with the log of the cluster size as in
    // memberlist, so detection time stays bounded while loss rarely causes a false down.
    let log = (cluster_size.max(2) as f64).log10().max(1.0);
    config.suspect_to_down_after = period.mul_f64(5.0 * log);
    config.periodic_gossip = Some(foca::PeriodicParams {
        frequency: period / 5,
        num_members: NonZeroUsize::new(3).unwrap_or(NonZeroUsize::MIN),
    });
    config.periodic_announce = Some(foca::PeriodicParams {
        frequency: period * 30,
        num_members: NonZeroUsize::MIN,
    });
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str, generation: u64) -> GossipId {
        GossipId {
            name: NodeId::new(name),
            addr: format!("{name}:1"),
            vnodes: 8,
            generation,
        }
    }

    /// A gossip instance with the timer table a node would lend it.
    struct Member {
        g: Gossip,
        t: TimerTable,
    }

    fn member(name: &str, seed: u64) -> Member {
        Member {
            g: Gossip::new(id(name, 1), 2, seed, 100),
            t: TimerTable::new(),
        }
    }

    /// Delivers every queued datagram between the instances until quiet or `rounds`.
    fn pump(nodes: &mut [Member], now_ms: u64, rounds: usize) {
        for _ in 0..rounds {
            let mut packets = Vec::new();
            for n in nodes.iter_mut() {
                let from = n.g.identity().name.clone();
                while let Some((addr, data)) = n.g.poll_datagram() {
                    packets.push((from.clone(), addr, data));
                }
            }
            if packets.is_empty() {
                return;
            }
            for (from, addr, data) in packets {
                if let Some(dest) = nodes.iter_mut().find(|n| n.g.identity().addr == addr) {
                    dest.g
                        .handle_data(now_ms, &mut dest.t, &from, &data)
                        .unwrap();
                }
            }
        }
    }

    #[test]
    fn a_member_joins_through_a_seed_and_both_see_it_up() {
        let mut nodes = vec![member("a", 1), member("b", 2)];
        let b = &mut nodes[1];
        b.g.announce(0, &mut b.t, "a:1").unwrap();
        pump(&mut nodes, 0, 10);
        assert_eq!(
            nodes[0].g.state_of(&NodeId::new("b")),
            Some(GossipState::Alive)
        );
        assert_eq!(
            nodes[1].g.state_of(&NodeId::new("a")),
            Some(GossipState::Alive)
        );
        let up: Vec<GossipEvent> = std::iter::from_fn(|| nodes[0].g.poll_event()).collect();
        assert!(up.contains(&GossipEvent::Up(id("b", 1))), "{up:?}");
    }

    #[test]
    fn a_packet_claiming_another_sender_is_refused() {
        let Member {
            g: mut a,
            t: mut at,
        } = member("a", 1);
        let Member {
            g: mut b,
            t: mut bt,
        } = member("b", 2);
        b.announce(0, &mut bt, "a:1").unwrap();
        let (_, data) = b.poll_datagram().unwrap();
        let err = a
            .handle_data(0, &mut at, &NodeId::new("mallory"), &data)
            .unwrap_err();
        assert!(matches!(err, GossipError::Impostor { .. }), "{err}");
        assert!(
            a.handle_data(0, &mut at, &NodeId::new("b"), &[0xff; 3])
                .is_err()
        );
        let big = vec![0u8; GOSSIP_PACKET_BYTES_MAX + 1];
        assert!(matches!(
            a.handle_data(0, &mut at, &NodeId::new("b"), &big),
            Err(GossipError::TooBig { .. })
        ));
    }

    #[test]
    fn member_records_spread_once_per_version() {
        let mut nodes = vec![member("a", 1), member("b", 2)];
        let b = &mut nodes[1];
        b.g.announce(0, &mut b.t, "a:1").unwrap();
        pump(&mut nodes, 0, 10);
        while nodes[0].g.poll_event().is_some() {}
        let meta = MemberMeta {
            name: NodeId::new("b"),
            addr: "b:1".into(),
            vnodes: 8,
            version: 3,
            phase: MemberPhase::Leaving,
        };
        nodes[1].g.broadcast_meta(&meta).unwrap();
        // Gossip rides the periodic timers; fire them until the record arrives.
        let mut seen = Vec::new();
        for t in 1..200u64 {
            let now = t * 20;
            for n in nodes.iter_mut() {
                while let Some(timer) = n.t.pop_due_gossip(now) {
                    n.g.handle_timer(now, &mut n.t, timer).unwrap();
                }
            }
            pump(&mut nodes, now, 10);
            seen.extend(std::iter::from_fn(|| nodes[0].g.poll_event()));
            if seen.iter().any(|e| matches!(e, GossipEvent::Meta(_))) {
                break;
            }
        }
        let metas: Vec<&GossipEvent> = seen
            .iter()
            .filter(|e| matches!(e, GossipEvent::Meta(_)))
            .collect();
        assert_eq!(metas, vec![&GossipEvent::Meta(meta)]);
    }

    #[test]
    fn a_later_generation_wins_the_address() {
        use foca::Identity;
        assert!(id("a", 2).win_addr_conflict(&id("a", 1)));
        assert!(!id("a", 1).win_addr_conflict(&id("a", 2)));
        assert_eq!(id("a", 1).renew().map(|i| i.generation), Some(2));
    }
}
