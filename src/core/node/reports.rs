//! What `ringkv status` and `ringkv ring` show, and the topology clients route by,
//! assembled from the subsystems' state.

use crate::core::membership::gossip::MemberPhase;
use crate::core::membership::{Liveness, Membership};
use crate::core::node::NodeConfig;
use crate::core::replica::Replica;
use crate::proto::{
    MemberStatus, RingInfo, RingNode, StatusInfo, TopologyInfo, TopologyMember, TransferInfo,
};

/// Membership as this node sees it at `now_ms` (a member suspected here after a failed
/// RPC shows as "suspect"), with hints held per member and transfers.
pub(crate) fn status(
    config: &NodeConfig,
    now_ms: u64,
    members: &Membership,
    replica: &Replica,
    transfers: TransferInfo,
) -> StatusInfo {
    let ring = members.ring();
    let list = members
        .members()
        .map(|m| MemberStatus {
            name: m.name.clone(),
            addr: m.addr.clone(),
            state: if m.name == config.name {
                "up".to_string()
            } else if m.state == Liveness::Up && members.is_suspected_here(&m.name, now_ms) {
                Liveness::Suspect.to_string()
            } else {
                m.state.to_string()
            },
            share: ring.replica_share(&m.name, config.n as usize),
            hints: replica.hints().for_primary(&m.name),
            phase: match m.phase {
                MemberPhase::Normal => "normal",
                MemberPhase::Leaving => "leaving",
                MemberPhase::Left => "left",
            }
            .to_string(),
        })
        .collect();
    StatusInfo {
        node: config.name.clone(),
        members: list,
        transfers,
    }
}

/// The ring's members, their shares and its balance.
pub(crate) fn ring_info(config: &NodeConfig, members: &Membership) -> RingInfo {
    let ring = members.ring();
    let counts = ring.primary_counts();
    let n = config.n;
    RingInfo {
        partitions: ring.partitions(),
        n,
        nodes: ring
            .members()
            .iter()
            .map(|m| RingNode {
                name: m.name.clone(),
                vnodes: m.vnodes,
                primary_partitions: counts.get(&m.name).copied().unwrap_or(0) as u32,
                replica_share: ring.replica_share(&m.name, n as usize),
            })
            .collect(),
        balance: ring.balance(),
    }
}

/// The view a client routes by: no shares or hints, so it stays cheap to answer at a
/// client's refresh rate.
pub(crate) fn topology(config: &NodeConfig, members: &Membership) -> TopologyInfo {
    TopologyInfo {
        node: config.name.clone(),
        partitions: members.ring().partitions(),
        n: config.n,
        members: members
            .members()
            .map(|m| TopologyMember {
                name: m.name.clone(),
                addr: m.addr.clone(),
                vnodes: m.vnodes,
                in_ring: m.phase == MemberPhase::Normal,
                state: if m.name == config.name {
                    "up".to_string()
                } else {
                    m.state.to_string()
                },
            })
            .collect(),
    }
}
