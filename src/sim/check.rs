//! Checkers: what a history and the final state must satisfy.
//!
//! They read only the history (requests, replies, times) and the final value of each
//! key, so they judge a simulated run and a run against a real cluster alike. An update
//! is "guaranteed" when it was acknowledged with more write acks than the run lost disks:
//! each ack is a distinct node that persisted the write, so at least one durable copy
//! survives. Only guaranteed updates may fail a check; LWW's losses are counted, never
//! failed, because losing concurrent writes is what LWW promises.

use std::collections::{BTreeMap, BTreeSet};

use crate::core::object::{MapOp, Op, OpId, Policy, ReadValue};
use crate::proto::{ClientReply, ClientRequest, Key};
use crate::sim::history::{History, OpOutcome, OpRecord};
use crate::sim::settle::ReplicaCopy;
use crate::sim::workload::{MAP_COUNTER_FIELD, MAP_SET_FIELD, WORKLOAD_N, decode_tokens};

/// Relative error allowed between an HLL estimate and the true distinct count.
pub const HLL_TOLERANCE: f64 = 0.05;
/// Most violations listed per key; the count is always exact.
pub const VIOLATIONS_PER_KEY_MAX: usize = 5;
/// W a request gets when it does not say (the node default).
const DEFAULT_W: u8 = 2;

/// What a run did and which rules it broke.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// Workload requests issued.
    pub attempted: u64,
    /// Workload requests answered successfully.
    pub acked: u64,
    pub failed: u64,
    pub timed_out: u64,
    /// Successful updates (writes).
    pub acked_updates: u64,
    /// Acknowledged updates missing from the final state (counter: missing amount).
    pub lost_acked: u64,
    /// Most sibling values any reply or final state showed.
    pub max_siblings: usize,
    /// Writes never acknowledged, whatever the client's retries (one per operation id).
    pub unresolved_writes: u64,
    /// Counters (and map counter fields) whose every increment was acknowledged durably,
    /// so their final value was checked for equality with the sum.
    pub exact_counters: u64,
    /// Broken rules, one line each.
    pub violations: Vec<String>,
}

/// Reads that missed an acknowledged write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Staleness {
    /// Successful counter reads.
    pub reads: u64,
    /// Reads that returned less than the writes acknowledged before they began.
    pub stale: u64,
}

/// What the writes to one key add up to.
#[derive(Default)]
struct KeyLedger {
    policy: Option<Policy>,
    /// (op, guaranteed, acked) of every write.
    writes: Vec<(OpRecord, bool, bool)>,
}

/// Every primary of every key must hold an equal object (equal as a reader sees it;
/// for `hll`, an equal estimate). A tombstone and no copy at all are equal: a reaped key
/// and a deleted one both read as not found, and reaping reaches replicas one by one.
pub fn check_convergence(replicas: &BTreeMap<Key, Vec<ReplicaCopy>>) -> Vec<String> {
    let mut violations = Vec::new();
    for (key, copies) in replicas {
        // (node, what a reader sees or None when absent, whether it reads as not found)
        let mut seen: Vec<(String, Option<ReadValue>, bool)> = Vec::new();
        for (node, copy) in copies {
            match copy {
                Ok(obj) => seen.push((
                    node.to_string(),
                    obj.as_ref().map(|o| o.read()),
                    obj.as_ref().is_none_or(|o| o.is_tombstone()),
                )),
                Err(e) => violations.push(format!("{key}: replica {node} unreadable: {e}")),
            }
        }
        if copies.len() < WORKLOAD_N as usize {
            violations.push(format!(
                "{key}: only {} primaries found, expected {WORKLOAD_N}",
                copies.len()
            ));
        }
        let agree = |a: &(String, Option<ReadValue>, bool),
                     b: &(String, Option<ReadValue>, bool)| {
            a.1 == b.1 || (a.1.is_none() && b.2) || (b.1.is_none() && a.2)
        };
        let differing = seen
            .iter()
            .enumerate()
            .find_map(|(i, a)| seen[i + 1..].iter().find(|b| !agree(a, b)).map(|b| (a, b)));
        if let Some(((first_node, first, _), (node, other, _))) = differing {
            violations.push(format!(
                "{key}: replicas differ after repair: {first_node} holds {first:?}, {node} holds {other:?}"
            ));
        }
    }
    violations
}

/// Checks every rule of every key's policy against its final value.
pub fn check_history(
    history: &History,
    finals: &BTreeMap<Key, ReadValue>,
    disk_losses: u64,
) -> Report {
    let mut report = Report::default();
    let mut ledgers: BTreeMap<Key, KeyLedger> = BTreeMap::new();
    for op in history.workload() {
        report.attempted += 1;
        match &op.outcome {
            OpOutcome::Ok(reply) => {
                report.acked += 1;
                report.max_siblings = report.max_siblings.max(siblings_in(reply));
            }
            OpOutcome::Failed(_) => report.failed += 1,
            OpOutcome::TimedOut => report.timed_out += 1,
            OpOutcome::Pending => {}
        }
        if let ClientRequest::Write { key, op: write, .. } = &op.request {
            let acked = op.outcome.is_ok();
            report.acked_updates += u64::from(acked);
            let w = op
                .opts()
                .w
                .unwrap_or(DEFAULT_W)
                .min(op.opts().n.unwrap_or(WORKLOAD_N));
            let guaranteed = acked && u64::from(w) > disk_losses;
            let ledger = ledgers.entry(key.clone()).or_default();
            ledger.policy = ledger.policy.or(write.policy());
            ledger.writes.push((op.clone(), guaranteed, acked));
        }
    }
    for (key, ledger) in &ledgers {
        let final_value = finals.get(key);
        if let Some(ReadValue::Siblings { values, .. }) = final_value {
            report.max_siblings = report.max_siblings.max(values.len());
        }
        let mut found = Vec::new();
        match ledger.policy {
            Some(Policy::Siblings) => {
                check_values(key, ledger, final_value, true, &mut report, &mut found)
            }
            Some(Policy::Lww) => {
                check_values(key, ledger, final_value, false, &mut report, &mut found)
            }
            Some(Policy::Counter) => {
                let value = match final_value {
                    Some(ReadValue::Counter { value }) => *value,
                    _ => 0,
                };
                check_counter(
                    key,
                    "counter",
                    ledger,
                    value,
                    counter_delta,
                    &mut report,
                    &mut found,
                );
            }
            Some(Policy::Set) => {
                let members = match final_value {
                    Some(ReadValue::Set { members, .. }) => members.iter().cloned().collect(),
                    _ => BTreeSet::new(),
                };
                check_set(key, ledger, &members, set_change, &mut report, &mut found);
            }
            Some(Policy::Map) => {
                let field = match final_value {
                    Some(ReadValue::Map { fields, .. }) => fields.clone(),
                    _ => BTreeMap::new(),
                };
                let counter = field
                    .get(MAP_COUNTER_FIELD)
                    .and_then(|f| f.counter)
                    .unwrap_or(0);
                check_counter(
                    key,
                    "map counter field",
                    ledger,
                    counter,
                    map_delta,
                    &mut report,
                    &mut found,
                );
                let members: BTreeSet<String> = field
                    .get(MAP_SET_FIELD)
                    .map(|f| f.set.iter().cloned().collect())
                    .unwrap_or_default();
                check_set(
                    key,
                    ledger,
                    &members,
                    map_set_change,
                    &mut report,
                    &mut found,
                );
            }
            Some(Policy::Hll) => {
                let estimate = match final_value {
                    Some(ReadValue::Hll { estimate }) => *estimate,
                    _ => 0,
                };
                check_hll(key, ledger, estimate, &mut found);
            }
            None => {}
        }
        if found.len() > VIOLATIONS_PER_KEY_MAX {
            let more = found.len() - VIOLATIONS_PER_KEY_MAX;
            found.truncate(VIOLATIONS_PER_KEY_MAX);
            found.push(format!("{key}: ... and {more} more violations"));
        }
        report.violations.extend(found);
    }
    report
}

/// Counter reads that returned less than the increments acknowledged before they began.
pub fn stale_reads(history: &History) -> Staleness {
    let mut acked: BTreeMap<&Key, Vec<(u64, i64)>> = BTreeMap::new();
    for op in history.workload() {
        if let (
            ClientRequest::Write {
                key,
                op: Op::CounterAdd { delta },
                ..
            },
            Some(done),
        ) = (&op.request, op.completed_ms)
            && op.outcome.is_ok()
        {
            acked.entry(key).or_default().push((done, *delta));
        }
    }
    let mut out = Staleness::default();
    for op in history.workload() {
        let (ClientRequest::Get { key, .. }, OpOutcome::Ok(ClientReply::Read { value, .. })) =
            (&op.request, &op.outcome)
        else {
            continue;
        };
        let read = match value {
            Some(ReadValue::Counter { value }) => *value,
            _ => 0,
        };
        let before: i64 = acked
            .get(key)
            .map(|w| {
                w.iter()
                    .filter(|(done, _)| *done < op.invoked_ms)
                    .map(|(_, d)| d)
                    .sum()
            })
            .unwrap_or(0);
        out.reads += 1;
        out.stale += u64::from(read < before);
    }
    out
}

/// The value at fraction `p` (0..=1) of sorted samples; 0 for none.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((sorted.len() - 1) as f64 * p.clamp(0.0, 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Values a reader saw: the sibling count, 1 for any other present value.
fn siblings_in(reply: &ClientReply) -> usize {
    let value = match reply {
        ClientReply::Read { value, .. } => value.as_ref(),
        ClientReply::Written { value, .. } => Some(value),
        _ => None,
    };
    match value {
        Some(ReadValue::Siblings { values, .. }) => values.len(),
        Some(_) => 1,
        None => 0,
    }
}

/// `siblings` and `lww`: tokens of acknowledged writes in the final values. For
/// siblings every token a guaranteed write carried must survive: a later write could
/// only supersede it through a context read from a state holding it, and clients write
/// back the union of what they read.
fn check_values(
    key: &Key,
    ledger: &KeyLedger,
    final_value: Option<&ReadValue>,
    must_keep: bool,
    report: &mut Report,
    found: &mut Vec<String>,
) {
    let mut final_tokens = BTreeSet::new();
    match final_value {
        Some(ReadValue::Siblings { values, .. }) => {
            for v in values {
                final_tokens.extend(decode_tokens(v).1);
            }
        }
        Some(ReadValue::Lww { value: Some(v), .. }) => final_tokens.extend(decode_tokens(v).1),
        _ => {}
    }
    let mut attempted = BTreeSet::new();
    for (op, guaranteed, acked) in &ledger.writes {
        let value = match &op.request {
            ClientRequest::Write {
                op: Op::Put { value, .. } | Op::PutLww { value },
                ..
            } => value,
            _ => continue,
        };
        let (own, all) = decode_tokens(value);
        if *acked && own.as_ref().is_some_and(|t| !final_tokens.contains(t)) {
            report.lost_acked += 1;
        }
        if must_keep && *guaranteed {
            for t in all.iter().filter(|t| !final_tokens.contains(*t)) {
                found.push(format!(
                    "{key}: token {t} of acknowledged put #{} (client {}, w={:?}, at {} ms) is missing from the final values",
                    op.id, op.client, op.opts().w, op.invoked_ms
                ));
            }
        }
        attempted.extend(all);
    }
    for t in final_tokens.difference(&attempted) {
        found.push(format!(
            "{key}: final value holds token {t} that no client wrote"
        ));
    }
}

fn counter_delta(op: &Op) -> Option<i64> {
    match op {
        Op::CounterAdd { delta } => Some(*delta),
        _ => None,
    }
}

fn map_delta(op: &Op) -> Option<i64> {
    match op {
        Op::Map(MapOp::Increment { field, delta }) if field == MAP_COUNTER_FIELD => Some(*delta),
        _ => None,
    }
}

/// One increment as the client meant it: every try of one operation id counts once.
#[derive(Default)]
struct Increment {
    delta: i64,
    acked: bool,
    guaranteed: bool,
}

/// Final ≥ the guaranteed increments, ≤ everything attempted (increments only). When
/// every increment was acknowledged in the end (clients retry with the same operation
/// id) and every acknowledgement was durable, the final value must be exactly their sum:
/// a retry applied twice, or an acknowledged increment lost, both show.
fn check_counter(
    key: &Key,
    what: &str,
    ledger: &KeyLedger,
    value: i64,
    delta_of: fn(&Op) -> Option<i64>,
    report: &mut Report,
    found: &mut Vec<String>,
) {
    // Tries of one id share an entry; a write without an id is its own.
    let mut increments: BTreeMap<(Option<OpId>, u64), Increment> = BTreeMap::new();
    for (op, g, a) in &ledger.writes {
        let ClientRequest::Write { op: write, id, .. } = &op.request else {
            continue;
        };
        let Some(delta) = delta_of(write) else {
            continue;
        };
        let entry = match id {
            Some(id) => increments.entry((Some(*id), 0)).or_default(),
            None => increments.entry((None, op.id)).or_default(),
        };
        entry.delta = delta;
        entry.acked |= *a;
        entry.guaranteed |= *g;
    }
    let (mut acked, mut guaranteed, mut attempted) = (0i64, 0i64, 0i64);
    let mut unresolved = 0u64;
    for inc in increments.values() {
        attempted += inc.delta;
        acked += if inc.acked { inc.delta } else { 0 };
        guaranteed += if inc.guaranteed { inc.delta } else { 0 };
        unresolved += u64::from(!inc.acked);
    }
    report.unresolved_writes += unresolved;
    report.lost_acked += (acked - value).max(0) as u64;
    if value < guaranteed {
        found.push(format!(
            "{key}: {what} is {value}, below the {guaranteed} of guaranteed acknowledged increments"
        ));
    }
    if value > attempted {
        found.push(format!(
            "{key}: {what} is {value}, above the {attempted} of all attempted increments"
        ));
    }
    if unresolved == 0 && acked == guaranteed {
        report.exact_counters += 1;
        if value != acked {
            found.push(format!(
                "{key}: {what} is {value}, but every one of its {} increments was acknowledged and they add up to {acked}: an increment was applied twice or lost",
                increments.len()
            ));
        }
    }
}

/// A set change: (added, removed) members.
type SetChange = (Vec<String>, Vec<String>);

fn set_change(op: &Op) -> Option<SetChange> {
    match op {
        Op::SetAdd { members } => Some((members.clone(), Vec::new())),
        Op::SetRemove { members, .. } => Some((Vec::new(), members.clone())),
        _ => None,
    }
}

fn map_set_change(op: &Op) -> Option<SetChange> {
    match op {
        Op::Map(MapOp::AddMembers { field, members }) if field == MAP_SET_FIELD => {
            Some((members.clone(), Vec::new()))
        }
        Op::Map(MapOp::RemoveMembers { field, members }) if field == MAP_SET_FIELD => {
            Some((Vec::new(), members.clone()))
        }
        _ => None,
    }
}

/// Every guaranteed add of a member nobody tried to remove is present; every member a
/// guaranteed remove named is absent (members are added once, and a remove's context
/// comes from a read that saw the member, so it covers that one add); nothing appears
/// that nobody added.
fn check_set(
    key: &Key,
    ledger: &KeyLedger,
    members: &BTreeSet<String>,
    change_of: fn(&Op) -> Option<SetChange>,
    report: &mut Report,
    found: &mut Vec<String>,
) {
    let mut removed_ever = BTreeSet::new();
    let mut added_ever = BTreeSet::new();
    for (op, _, _) in &ledger.writes {
        if let ClientRequest::Write { op: write, .. } = &op.request
            && let Some((added, removed)) = change_of(write)
        {
            removed_ever.extend(removed);
            added_ever.extend(added);
        }
    }
    for (op, guaranteed, acked) in &ledger.writes {
        let ClientRequest::Write { op: write, .. } = &op.request else {
            continue;
        };
        let Some((added, removed)) = change_of(write) else {
            continue;
        };
        for m in added
            .iter()
            .filter(|m| !removed_ever.contains(*m) && !members.contains(*m))
        {
            report.lost_acked += u64::from(*acked);
            if *guaranteed {
                found.push(format!(
                    "{key}: member {m} of acknowledged add #{} (client {}, at {} ms) is missing and nobody removed it",
                    op.id, op.client, op.invoked_ms
                ));
            }
        }
        for m in removed
            .iter()
            .filter(|m| *guaranteed && members.contains(*m))
        {
            found.push(format!(
                "{key}: member {m} is still present after acknowledged remove #{} (client {}, at {} ms) that had seen its only add",
                op.id, op.client, op.invoked_ms
            ));
        }
    }
    for m in members.difference(&added_ever) {
        found.push(format!("{key}: member {m} is present but nobody added it"));
    }
}

/// The estimate lies between the guaranteed and the attempted distinct items, within
/// the sketch's error.
fn check_hll(key: &Key, ledger: &KeyLedger, estimate: u64, found: &mut Vec<String>) {
    let (mut guaranteed, mut attempted) = (BTreeSet::new(), BTreeSet::new());
    for (op, g, _) in &ledger.writes {
        if let ClientRequest::Write {
            op: Op::HllAdd { items },
            ..
        } = &op.request
        {
            attempted.extend(items.iter().cloned());
            if *g {
                guaranteed.extend(items.iter().cloned());
            }
        }
    }
    let low = (guaranteed.len() as f64 * (1.0 - HLL_TOLERANCE)).floor() as u64;
    let high = (attempted.len() as f64 * (1.0 + HLL_TOLERANCE)).ceil() as u64 + 1;
    if estimate < low || estimate > high {
        found.push(format!(
            "{key}: hll estimate {estimate} outside {low}..={high} ({} guaranteed, {} attempted distinct items)",
            guaranteed.len(),
            attempted.len()
        ));
    }
}
