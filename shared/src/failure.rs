//! Pure failure decisions: what status an agent shows for a node, and which nodes the
//! leader declares FAILED from its gossip observations.
//!
//! Gossip only suspects; the leader decides, once, through `NodeFailed`, which names the
//! incarnation judged dead so a decision made before a restart cannot fail the new one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::command::MetaCommand;
use crate::model::{Node, NodeId, NodeStatus, UnixMillis};
use crate::state::MetaState;

/// Tunables of the failure detector's final decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureConfig {
    /// How long a node must stay silent (no proof of life of any kind) before it is
    /// declared FAILED. It must exceed the read lease, so that a primary cut off from
    /// its replicas has stopped serving reads before another one is promoted.
    pub confirm_window_ms: u64,
    /// How long gossip's suspicion must have held, within that silence, before the node
    /// is declared FAILED: the node's chance to refute it. A suspicion of a node cut off
    /// begins after the cut, whereas the silence may count from a proof of life before
    /// it (a new leader hears a node only through gossip, its status reports come once
    /// a second): so the hold, not the window, is what must exceed the read lease. At
    /// most `confirm_window_ms` (a longer hold counts as the window).
    pub suspicion_hold_ms: u64,
}

/// What gossip currently says about a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum GossipState {
    /// A member answering probes.
    Alive,
    /// Missed probes; not yet refuted.
    Suspect,
    /// Declared down by gossip.
    Down,
    /// Not (or no longer) a gossip member.
    Unknown,
}

/// One agent's view of one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeObservation {
    /// What gossip says now.
    pub gossip: GossipState,
    /// Since when gossip says anything but ALIVE, if known.
    pub suspected_since_ms: Option<UnixMillis>,
    /// Last message of any kind from the node (any incarnation), if any.
    pub last_proof_of_life_ms: Option<UnixMillis>,
    /// When this agent started watching the node (its own start, or the node's join).
    pub watching_since_ms: UnixMillis,
}

/// The status an agent shows for a node: the committed status, except that a committed
/// HEALTHY node is shown SUSPECTED while gossip does not see it ALIVE. A node without an
/// observation (e.g. the agent itself) shows its committed status: no evidence against it.
pub fn view_status(node: &Node, obs: Option<&NodeObservation>) -> NodeStatus {
    match (node.status, obs.map(|o| o.gossip)) {
        (
            NodeStatus::Healthy,
            Some(GossipState::Suspect | GossipState::Down | GossipState::Unknown),
        ) => NodeStatus::Suspected,
        (status, _) => status,
    }
}

/// How long ago the node last gave a proof of life (`None` when never heard from).
pub fn heartbeat_staleness_ms(obs: &NodeObservation, now_ms: UnixMillis) -> Option<u64> {
    obs.last_proof_of_life_ms
        .map(|last| now_ms.saturating_sub(last))
}

/// The `NodeFailed` commands the leader `me` should propose, ordered by node id.
///
/// A node committed HEALTHY or DRAINING (never `me`) is failed when no proof of life
/// arrived for a whole window (`confirm_window_ms`), nor since this agent started
/// watching, and gossip does not see it ALIVE and has not for at least
/// `suspicion_hold_ms` (counted from `watching_since` when the start of the suspicion
/// is unknown). The window measures the silence, from the last proof of life (for a
/// crash, about the crash instant); the suspicion must have held long enough for a live
/// node to refute it, and for a cut-off primary's read lease to lapse (the suspicion
/// starts after the cut, the last proof of life may precede it). So a dead node whose
/// first suspicion comes late is failed `suspicion_hold_ms` after it, not a whole
/// window after it. The node's committed registration (`last_heartbeat_at_ms`) is a proof of life too, and a
/// suspicion never starts before it: a restarted incarnation does not inherit the old
/// one's suspicion. A node without an observation is skipped: never fail what you have
/// not watched. A node that never sent anything is still failed once watched for a
/// window.
///
/// Isolation guard: when more than half of the other nodes in service (HEALTHY or
/// DRAINING, watched), and at least two, gave this leader no proof of life for a whole
/// window or are not seen ALIVE by its gossip, it fails none. (Counting suspicions too
/// matters at the start of a cut: the nodes last heard just before it are suspected
/// already but not yet silent for a window, while one that happened to be quiet a
/// moment longer would be failed alone.) Relayed status reports keep a live node heard from even when it does not talk
/// to the leader directly, so a leader hearing from fewer than half of the nodes is
/// more likely cut off itself (its outgoing traffic lost while its voter quorum still
/// commits: the others then stop gossiping to it) than looking at half of the cluster
/// dead; failing them all would move every partition for nothing. A node that truly
/// died is failed once the rest of the cluster is heard from again, or once the guard
/// has held for [`ISOLATION_GUARD_MAX_WINDOWS`] windows. Losing one zone of three stays
/// below the bar.
pub fn nodes_to_fail(
    state: &MetaState,
    me: NodeId,
    observations: &BTreeMap<NodeId, NodeObservation>,
    now_ms: UnixMillis,
    cfg: &FailureConfig,
) -> Vec<MetaCommand> {
    let decisions = confirmed_failures(state, me, observations, now_ms, cfg);
    if decisions.is_empty() {
        return decisions;
    }
    let watched: Vec<(&Node, &NodeObservation)> = state
        .nodes()
        .filter(|n| n.node_id != me)
        .filter(|n| matches!(n.status, NodeStatus::Healthy | NodeStatus::Draining))
        .filter_map(|n| Some((n, observations.get(&n.node_id)?)))
        .collect();
    let silent: Vec<UnixMillis> = watched
        .iter()
        .filter(|(n, obs)| {
            obs.gossip != GossipState::Alive || silent_for_window(n, obs, now_ms, cfg)
        })
        .map(|(n, obs)| last_heard(n, obs))
        .collect();
    // One silent node is never a sign of this leader's isolation; and the guard holds
    // for a bounded time only, so that a cluster that really lost most of its nodes
    // (with its voter quorum alive) still fails them over, later.
    let held_since = silent.iter().copied().max().unwrap_or(now_ms);
    let bound = cfg
        .confirm_window_ms
        .saturating_mul(ISOLATION_GUARD_MAX_WINDOWS);
    if silent.len() >= 2
        && silent.len() * 2 > watched.len()
        && now_ms.saturating_sub(held_since) < bound
    {
        return Vec::new();
    }
    decisions
}

/// Longest the isolation guard of [`nodes_to_fail`] holds failures back, in
/// confirmation windows (counted from when the last of the silent nodes was heard).
pub const ISOLATION_GUARD_MAX_WINDOWS: u64 = 10;

/// When this agent last had a proof of life of `node` (or started watching it).
fn last_heard(node: &Node, obs: &NodeObservation) -> UnixMillis {
    obs.last_proof_of_life_ms
        .unwrap_or(0)
        .max(obs.watching_since_ms)
        .max(node.last_heartbeat_at_ms)
}

/// No proof of life (direct or relayed, or a committed registration) for a whole window
/// of this agent's watching.
fn silent_for_window(
    node: &Node,
    obs: &NodeObservation,
    now_ms: UnixMillis,
    cfg: &FailureConfig,
) -> bool {
    now_ms.saturating_sub(last_heard(node, obs)) >= cfg.confirm_window_ms
}

/// The nodes the rule of [`nodes_to_fail`] confirms dead, before the mass-failure guard.
fn confirmed_failures(
    state: &MetaState,
    me: NodeId,
    observations: &BTreeMap<NodeId, NodeObservation>,
    now_ms: UnixMillis,
    cfg: &FailureConfig,
) -> Vec<MetaCommand> {
    state
        .nodes()
        .filter(|n| n.node_id != me)
        .filter(|n| matches!(n.status, NodeStatus::Healthy | NodeStatus::Draining))
        .filter(|n| {
            observations
                .get(&n.node_id)
                .is_some_and(|obs| confirmed_dead(n, obs, now_ms, cfg))
        })
        .map(|n| MetaCommand::NodeFailed {
            node_id: n.node_id,
            incarnation: n.incarnation,
            now_ms,
        })
        .collect()
}

/// Whether one observation, with the committed node, is enough to declare it dead.
fn confirmed_dead(
    node: &Node,
    obs: &NodeObservation,
    now_ms: UnixMillis,
    cfg: &FailureConfig,
) -> bool {
    let window = cfg.confirm_window_ms;
    // A registration committed after the suspicion began answers it: a restarted
    // incarnation does not inherit the old one's suspicion, and is heard from.
    let registered = node.last_heartbeat_at_ms;
    let suspected_since = obs
        .suspected_since_ms
        .unwrap_or(obs.watching_since_ms)
        .max(registered);
    // Silence is only evidence for the time this agent was listening.
    let heard_or_watching = obs
        .last_proof_of_life_ms
        .unwrap_or(0)
        .max(obs.watching_since_ms)
        .max(registered);
    obs.gossip != GossipState::Alive
        && now_ms.saturating_sub(suspected_since) >= cfg.suspicion_hold_ms.min(window)
        && now_ms.saturating_sub(heard_or_watching) >= window
}

#[cfg(test)]
mod tests;
