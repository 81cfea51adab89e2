//! A stopping agent's Raft node: shut down, and if it led, leadership handed on as far
//! as openraft 0.9 allows. It has no leadership transfer (no TimeoutNow), and every
//! follower refuses votes while its leader lease (`election_timeout_max`) runs, so no
//! one can be elected before the lease lapses. The leader takes no new write, lets the
//! followers learn the last commit (their replicas would otherwise lag until the next
//! leader commits: a partition handed over just before would refuse its new epoch's
//! writes that long), stops, waits out the lease, and then tells the voter it chose,
//! the most up-to-date one, to campaign: the next leader is elected right when it
//! first can be, not after one more random election timeout.

use std::collections::BTreeMap;
use std::time::Duration;

use super::client::leads;
use super::freshness::MetaFreshness;
use super::rpc::{PeerRequest, PeerResponse, call_peer};
use super::types::{NodeId, Raft};
use crate::transport::RpcClient;

/// Slack after the lease before the successor is told to campaign (timer drift).
const CAMPAIGN_MARGIN: Duration = Duration::from_millis(50);

/// How long a stopping leader waits for its followers to hold its whole log.
const FOLLOWERS_CATCH_UP: Duration = Duration::from_millis(500);

/// Raft timing of the stop.
#[derive(Debug, Clone, Copy)]
pub struct StepDownTiming {
    /// `raft.heartbeat_interval_ms`: a heartbeat carries the commit index.
    pub heartbeat: Duration,
    /// Followers' leader lease (`raft.election_timeout_max_ms`).
    pub lease: Duration,
}

/// Shuts `raft` down; returns the voter told to campaign, if this node led.
pub async fn step_down(
    raft: &Raft,
    freshness: &MetaFreshness,
    peers: &dyn RpcClient,
    timing: StepDownTiming,
) -> Option<NodeId> {
    freshness.stop_taking_writes();
    let successor = if leads(&raft.metrics().borrow()) {
        let _ = tokio::time::timeout(FOLLOWERS_CATCH_UP, followers_hold_log(raft)).await;
        // One more heartbeat, after the last commit, tells every follower of it.
        let _ = raft.trigger().heartbeat().await;
        tokio::time::sleep(timing.heartbeat).await;
        successor(raft)
    } else {
        None
    };
    if let Err(e) = raft.shutdown().await {
        tracing::warn!(error = %e, "stopping the metadata store");
    }
    let (id, addr) = successor?;
    tokio::time::sleep(timing.lease + CAMPAIGN_MARGIN).await;
    match call_peer(peers, &addr, &PeerRequest::Campaign).await {
        Ok(PeerResponse::Campaign(Ok(()))) => {
            tracing::info!(successor = id, "asked the next metadata leader to campaign");
        }
        other => tracing::warn!(successor = id, answer = ?other, "the successor did not campaign"),
    }
    Some(id)
}

/// Returns once every follower's log matches this leader's last entry.
async fn followers_hold_log(raft: &Raft) {
    let mut metrics = raft.metrics();
    loop {
        let done = {
            let m = metrics.borrow_and_update();
            let last = m.last_log_index;
            m.replication
                .as_ref()
                .is_some_and(|r| r.values().all(|matched| matched.map(|l| l.index) >= last))
        };
        if done || metrics.changed().await.is_err() {
            return;
        }
    }
}

/// The voter to campaign next, and its address (see [`pick_successor`]).
fn successor(raft: &Raft) -> Option<(NodeId, String)> {
    let metrics = raft.metrics().borrow().clone();
    let membership = metrics.membership_config.membership();
    let matched: BTreeMap<NodeId, Option<u64>> = metrics
        .replication
        .iter()
        .flatten()
        .map(|(id, log)| (*id, log.map(|l| l.index)))
        .collect();
    let id = pick_successor(metrics.id, membership.voter_ids(), &matched)?;
    Some((id, membership.get_node(&id)?.addr.clone()))
}

/// The voter other than `me` whose log matched furthest (unknown counts as behind), the
/// lowest id among equals.
pub fn pick_successor(
    me: NodeId,
    voters: impl Iterator<Item = NodeId>,
    matched: &BTreeMap<NodeId, Option<u64>>,
) -> Option<NodeId> {
    voters
        .filter(|&v| v != me)
        .max_by_key(|v| (matched.get(v).copied().flatten(), std::cmp::Reverse(*v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_successor_is_the_most_up_to_date_other_voter() {
        let matched = BTreeMap::from([(2, Some(40)), (3, Some(42)), (4, Some(42)), (5, None)]);
        assert_eq!(
            pick_successor(1, [1, 2, 3, 4, 5].into_iter(), &matched),
            Some(3)
        );
        assert_eq!(pick_successor(1, [1, 2, 5].into_iter(), &matched), Some(2));
        assert_eq!(pick_successor(1, [1, 6].into_iter(), &matched), Some(6));
        assert_eq!(pick_successor(1, [1].into_iter(), &matched), None);
    }
}
