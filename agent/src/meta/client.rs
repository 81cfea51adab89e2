//! Proposing commands and reading linearizably from any agent: on the leader directly,
//! elsewhere forwarded to the leader over the peer transport.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use shared::command::{MetaCommand, MetaResult};
use shared::model::NodeId;
use tokio::time::Instant;

use super::freshness::MetaFreshness;
use super::rpc::{Committed, ForwardError, PeerRequest, PeerResponse};
use super::types::Raft;
use crate::metrics::AgentMetrics;
use crate::seam::{BoxFuture, LeaderRoute, MetaClientError, MetaLog, StateHandle};
use crate::transport::{RpcClient, TransportError};

/// Pause before asking again when no leader is known.
const NO_LEADER_BACKOFF: Duration = Duration::from_millis(50);

impl MetaLog for MetaClient {
    fn node_id(&self) -> NodeId {
        self.node_id
    }

    fn propose(&self, cmd: MetaCommand) -> BoxFuture<'_, Result<MetaResult, MetaClientError>> {
        Box::pin(MetaClient::propose_as_leader(self, cmd))
    }

    fn propose_via_leader(
        &self,
        cmd: MetaCommand,
    ) -> BoxFuture<'_, Result<MetaResult, MetaClientError>> {
        Box::pin(MetaClient::propose(self, cmd))
    }

    fn read_barrier(&self) -> BoxFuture<'_, Result<(), MetaClientError>> {
        Box::pin(self.linearizable_barrier())
    }

    fn metrics(&self) -> &AgentMetrics {
        &self.metrics
    }
}

/// Proposes commands to the metadata store and runs linearizable read barriers.
pub struct MetaClient {
    node_id: NodeId,
    raft: Raft,
    state: StateHandle,
    peers: Arc<dyn RpcClient>,
    leader_wait: Duration,
    metrics: Arc<AgentMetrics>,
    freshness: Arc<MetaFreshness>,
    /// Set when this agent stops: its leader-only controllers take no more steps (a
    /// stopping leader must not place work on itself while it hands work away).
    controllers_paused: std::sync::atomic::AtomicBool,
}

impl MetaClient {
    /// Creates a client for this node.
    pub fn new(
        node_id: NodeId,
        raft: Raft,
        state: StateHandle,
        peers: Arc<dyn RpcClient>,
        leader_wait: Duration,
        metrics: Arc<AgentMetrics>,
        freshness: Arc<MetaFreshness>,
    ) -> Self {
        MetaClient {
            node_id,
            raft,
            state,
            peers,
            leader_wait,
            metrics,
            freshness,
            controllers_paused: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Stops the leader-only controllers of this agent for good (it is stopping).
    pub fn pause_leader_controllers(&self) {
        self.controllers_paused
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Whether this agent's leader-only controllers act: it leads, and is not stopping.
    pub fn controls_as_leader(&self) -> bool {
        !self
            .controllers_paused
            .load(std::sync::atomic::Ordering::Acquire)
            && self.leader() == LeaderRoute::Local
    }

    /// This agent's metrics.
    pub fn metrics(&self) -> &AgentMetrics {
        &self.metrics
    }

    /// The local metadata replica.
    pub fn state(&self) -> &StateHandle {
        &self.state
    }

    /// This node's Raft handle.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The current leader as seen in this node's Raft metrics.
    pub fn leader(&self) -> LeaderRoute {
        leader_route(&self.raft)
    }

    /// Commits `cmd` through the leader and returns the state machine's result, once this
    /// node's replica has applied it too (so what the caller reads next reflects it).
    pub async fn propose(&self, cmd: MetaCommand) -> Result<MetaResult, MetaClientError> {
        self.propose_indexed(cmd).await.map(|(_, result)| result)
    }

    /// Commits `cmd` only on this node and only while it leads: what leader-only
    /// controllers propose. Their decisions come from this leader's view (its gossip, its
    /// replica, its clock), so one is never forwarded to a newer leader, whose own
    /// controllers decide afresh. Forwarding them once let a deposed leader's stale
    /// `NodeFailed` reach the node it named, which, newly elected, committed its own
    /// failure and removed itself from the voters (issue 14's wedge).
    pub async fn propose_as_leader(&self, cmd: MetaCommand) -> Result<MetaResult, MetaClientError> {
        if self.leader() != LeaderRoute::Local {
            return Err(MetaClientError::NoLeader("this node does not lead".into()));
        }
        let start = std::time::Instant::now();
        let result = match write_on_leader(&self.raft, &self.freshness, cmd, self.leader_wait).await
        {
            Ok(committed) => {
                if let Err(e) = self.wait_applied(committed.index).await {
                    tracing::warn!(error = %e, "committed, but the local replica lags");
                }
                Ok(committed.result)
            }
            // The entry may have reached followers before leadership moved.
            Err(ForwardError::NotLeader { .. }) => Err(MetaClientError::Unknown(
                "leadership moved while committing".into(),
            )),
            Err(ForwardError::Unavailable(why)) => Err(MetaClientError::Unknown(why)),
            Err(ForwardError::NoQuorum(why)) => Err(MetaClientError::NoLeader(why)),
        };
        let outcome = match &result {
            Ok(Ok(_)) => "applied",
            Ok(Err(_)) => "rejected",
            Err(_) => "unavailable",
        };
        let committed = result.is_ok().then(|| start.elapsed().as_secs_f64());
        self.metrics.observe_proposal(outcome, committed);
        result
    }

    /// Like [`MetaClient::propose`], also returning the command's log index (another
    /// agent that has applied it reflects the command).
    pub async fn propose_indexed(
        &self,
        cmd: MetaCommand,
    ) -> Result<(u64, MetaResult), MetaClientError> {
        let start = std::time::Instant::now();
        let result = match self.propose_via_leader(cmd).await {
            Ok(committed) => {
                // The command is committed whatever happens here: a lagging local replica
                // only weakens read-your-writes, so it is logged, not reported as a failure.
                if let Err(e) = self.wait_applied(committed.index).await {
                    tracing::warn!(error = %e, "committed, but the local replica lags");
                }
                Ok((committed.index, committed.result))
            }
            Err(e) => Err(e),
        };
        let outcome = match &result {
            Ok((_, Ok(_))) => "applied",
            Ok((_, Err(_))) => "rejected",
            Err(_) => "unavailable",
        };
        let committed = result.is_ok().then(|| start.elapsed().as_secs_f64());
        self.metrics.observe_proposal(outcome, committed);
        result
    }

    async fn propose_via_leader(&self, cmd: MetaCommand) -> Result<Committed, MetaClientError> {
        let cmd = &cmd;
        self.through_leader(|route| async move {
            match route {
                Some(addr) => self.propose_remote(&addr, cmd).await,
                None => self.propose_local(cmd).await,
            }
        })
        .await
    }

    /// Tries `attempt` on the leader (`None`: this node, `Some`: its peer address) until
    /// it ends, or until the leader wait runs out while no leader is known or every
    /// try may be repeated.
    async fn through_leader<T, F, Fut>(&self, mut attempt: F) -> Result<T, MetaClientError>
    where
        F: FnMut(Option<String>) -> Fut,
        Fut: std::future::Future<Output = Attempt<T>>,
    {
        let deadline = Instant::now() + self.leader_wait;
        let mut last = String::from("no leader elected");
        loop {
            let tried = match self.leader() {
                LeaderRoute::Local => attempt(None).await,
                LeaderRoute::Remote(_, addr) => attempt(Some(addr)).await,
                LeaderRoute::Unknown => Attempt::Retry(last.clone()),
            };
            match tried {
                Attempt::Final(result) => return result,
                Attempt::Retry(why) => last = why,
            }
            if Instant::now() >= deadline {
                return Err(MetaClientError::NoLeader(last));
            }
            tokio::time::sleep(NO_LEADER_BACKOFF).await;
        }
    }

    async fn propose_local(&self, cmd: &MetaCommand) -> Attempt<Committed> {
        match write_on_leader(&self.raft, &self.freshness, cmd.clone(), self.leader_wait).await {
            Ok(committed) => Attempt::Final(Ok(committed)),
            Err(ForwardError::NotLeader { leader_id, .. }) => {
                Attempt::Retry(format!("leadership moved to {leader_id:?}"))
            }
            Err(ForwardError::Unavailable(why)) => {
                Attempt::Final(Err(MetaClientError::Unknown(why)))
            }
            // Not written: retried until the leader wait runs out, then 503.
            Err(ForwardError::NoQuorum(why)) => Attempt::Retry(why),
        }
    }

    async fn propose_remote(&self, addr: &str, cmd: &MetaCommand) -> Attempt<Committed> {
        let reply = match self
            .call(addr, &PeerRequest::ClientWrite(cmd.clone()))
            .await
        {
            Ok(reply) => reply,
            Err(CallError::NotDelivered(why)) => return Attempt::Retry(why),
            // Retrying could apply the command twice: the caller learns the outcome is unknown.
            Err(CallError::MaybeDelivered(why)) => {
                return Attempt::Final(Err(MetaClientError::Unknown(why)));
            }
        };
        match reply {
            PeerResponse::ClientWrite(Ok(committed)) => Attempt::Final(Ok(committed)),
            PeerResponse::ClientWrite(Err(ForwardError::NotLeader { .. })) => {
                Attempt::Retry(format!("{addr} is no longer leader"))
            }
            PeerResponse::ClientWrite(Err(ForwardError::Unavailable(why))) => {
                Attempt::Final(Err(MetaClientError::Unknown(why)))
            }
            PeerResponse::ClientWrite(Err(ForwardError::NoQuorum(why))) => Attempt::Retry(why),
            other => Attempt::Final(Err(MetaClientError::Unknown(format!(
                "unexpected reply {}",
                variant_name(&other)
            )))),
        }
    }

    /// The leader's commit index, after the leader confirmed its leadership with a quorum.
    pub async fn read_index(&self) -> Result<u64, MetaClientError> {
        self.through_leader(|route| async move {
            match route {
                Some(addr) => self.read_index_remote(&addr).await,
                None => self.read_index_local().await,
            }
        })
        .await
    }

    async fn read_index_local(&self) -> Attempt<u64> {
        match read_index_on_leader(&self.raft).await {
            Ok(index) => Attempt::Final(Ok(index)),
            Err(e) => Attempt::Retry(e.to_string()),
        }
    }

    async fn read_index_remote(&self, addr: &str) -> Attempt<u64> {
        // Reads are harmless to repeat, whatever happened to the previous attempt.
        match self.call(addr, &PeerRequest::ReadIndex).await {
            Ok(PeerResponse::ReadIndex(Ok(index))) => Attempt::Final(Ok(index)),
            Ok(PeerResponse::ReadIndex(Err(e))) => Attempt::Retry(e.to_string()),
            Ok(other) => Attempt::Retry(format!("unexpected reply {}", variant_name(&other))),
            Err(e) => Attempt::Retry(e.reason()),
        }
    }

    /// Waits until this node's state machine reflects every write committed before the
    /// call (read index through the leader), so a following local read is linearizable.
    pub async fn linearizable_barrier(&self) -> Result<(), MetaClientError> {
        let index = self.read_index().await?;
        self.wait_applied(index).await
    }

    /// Waits until the local state machine has applied `index`.
    pub async fn wait_applied(&self, index: u64) -> Result<(), MetaClientError> {
        let mut rx = self.state.subscribe();
        let waited =
            tokio::time::timeout(self.leader_wait, rx.wait_for(|&applied| applied >= index)).await;
        match waited {
            Ok(Ok(_)) => Ok(()),
            _ => Err(MetaClientError::NoLeader(format!(
                "local replica did not reach index {index} in time"
            ))),
        }
    }

    /// Sends `req` to the peer at `addr` and returns its reply; for requests that are
    /// safe to repeat (the error does not say whether the peer acted on it).
    pub async fn call_idempotent(
        &self,
        addr: &str,
        req: &PeerRequest,
    ) -> Result<PeerResponse, String> {
        self.call(addr, req).await.map_err(|e| e.reason())
    }

    /// How long a caller waits for a leader before giving up (`http.leader_wait_ms`).
    pub fn leader_wait(&self) -> Duration {
        self.leader_wait
    }

    async fn call(&self, addr: &str, req: &PeerRequest) -> Result<PeerResponse, CallError> {
        let bytes = postcard::to_stdvec(req).map_err(|e| CallError::NotDelivered(e.to_string()))?;
        match self.peers.call(addr, bytes).await {
            Ok(reply) => postcard::from_bytes(&reply)
                .map_err(|e| CallError::MaybeDelivered(format!("bad reply from {addr}: {e}"))),
            Err(e @ TransportError::Connect { .. }) => Err(CallError::NotDelivered(e.to_string())),
            Err(e) => Err(CallError::MaybeDelivered(e.to_string())),
        }
    }
}

/// How one try of a proposal or read index through the leader ended.
enum Attempt<T> {
    /// Its outcome: done, or failed in a way trying again cannot fix (a write whose
    /// outcome is unknown is never sent twice).
    Final(Result<T, MetaClientError>),
    /// Certainly not done, for this reason: worth trying again until the deadline.
    Retry(String),
}

impl LeaderRoute {
    /// Unless this node leads, the error that tells a caller where the leader is.
    pub fn redirect(self) -> Option<ForwardError> {
        let (leader_id, leader_addr) = match self {
            LeaderRoute::Local => return None,
            LeaderRoute::Remote(id, addr) => (Some(id), Some(addr)),
            LeaderRoute::Unknown => (None, None),
        };
        Some(ForwardError::NotLeader {
            leader_id,
            leader_addr,
        })
    }
}

/// Whether `metrics` show this node leading: the vote names it leader *and* it runs as
/// leader. openraft derives `current_leader` from the vote alone, and a leader removed
/// from the membership keeps that vote as a follower (it never campaigns again, so no
/// higher vote reaches it): taking the vote for leadership made such a node route every
/// write and read to itself forever (issue 14's wedge).
pub fn leads(metrics: &openraft::RaftMetrics<NodeId, openraft::BasicNode>) -> bool {
    metrics.current_leader == Some(metrics.id) && metrics.state == openraft::ServerState::Leader
}

/// The current leader as `raft`'s metrics show it.
pub fn leader_route(raft: &Raft) -> LeaderRoute {
    let metrics = raft.metrics();
    let metrics = metrics.borrow();
    if leads(&metrics) {
        return LeaderRoute::Local;
    }
    match metrics.current_leader {
        Some(id) if id == metrics.id => LeaderRoute::Unknown,
        Some(id) => match metrics.membership_config.membership().get_node(&id) {
            Some(node) => LeaderRoute::Remote(id, node.addr.clone()),
            None => LeaderRoute::Unknown,
        },
        None => LeaderRoute::Unknown,
    }
}

/// This leader's commit index once a quorum confirmed its leadership (the read index).
pub async fn read_index_on_leader(raft: &Raft) -> Result<u64, ForwardError> {
    match raft.get_read_log_id().await {
        Ok((read, _applied)) => Ok(read.map_or(0, |l| l.index)),
        Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
            Err(ForwardError::NotLeader {
                leader_id: f.leader_id,
                leader_addr: f.leader_node.map(|n| n.addr),
            })
        }
        Err(e) => Err(ForwardError::Unavailable(e.to_string())),
    }
}

/// Commits `cmd` on this node if it leads, within `timeout` (openraft 0.9 keeps a leader
/// that lost its quorum waiting forever; the outcome of a timed-out write is unknown).
pub async fn write_on_leader(
    raft: &Raft,
    freshness: &MetaFreshness,
    cmd: MetaCommand,
    timeout: Duration,
) -> Result<Committed, ForwardError> {
    if freshness.stopping() {
        return Err(ForwardError::NoQuorum(
            "this leader is stopping; not written (the next leader takes it)".into(),
        ));
    }
    if freshness.leads_without_quorum(LEADER_QUORUM_SILENCE) {
        return Err(ForwardError::NoQuorum(format!(
            "no quorum of voters answered within {LEADER_QUORUM_SILENCE:?}; not written"
        )));
    }
    match tokio::time::timeout(timeout, raft.client_write(cmd)).await {
        Ok(Ok(resp)) => Ok(Committed {
            index: resp.log_id.index,
            result: resp.data,
        }),
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
            Err(ForwardError::NotLeader {
                leader_id: f.leader_id,
                leader_addr: f.leader_node.map(|n| n.addr),
            })
        }
        Ok(Err(e)) => Err(ForwardError::Unavailable(e.to_string())),
        Err(_) => Err(ForwardError::Unavailable(format!(
            "no commit within {timeout:?} (quorum lost?)"
        ))),
    }
}

/// A leader that has heard from no quorum for this long takes no new write: it is
/// refused as not written (503), where waiting for a commit that cannot come would end
/// in "outcome unknown" (504). Ten heartbeats: above an election timeout. (A single
/// voter is its own quorum.)
const LEADER_QUORUM_SILENCE: Duration = Duration::from_millis(1_000);

/// How a peer call failed.
enum CallError {
    /// The request never reached the peer.
    NotDelivered(String),
    /// The peer may have acted on the request.
    MaybeDelivered(String),
}

impl CallError {
    fn reason(self) -> String {
        match self {
            CallError::NotDelivered(r) | CallError::MaybeDelivered(r) => r,
        }
    }
}

fn variant_name(resp: &PeerResponse) -> &'static str {
    match resp {
        PeerResponse::AppendEntries(_) => "AppendEntries",
        PeerResponse::Vote(_) => "Vote",
        PeerResponse::InstallSnapshot(_) => "InstallSnapshot",
        PeerResponse::ClientWrite(_) => "ClientWrite",
        PeerResponse::ReadIndex(_) => "ReadIndex",
        PeerResponse::Join(_) => "Join",
        PeerResponse::NodeRecord(_) => "NodeRecord",
        PeerResponse::Data(_) => "Data",
        PeerResponse::IssueCredential(_) => "IssueCredential",
        PeerResponse::RotateKey(_) => "RotateKey",
        PeerResponse::BadRequest(_) => "BadRequest",
        PeerResponse::ClusterInfo(_) => "ClusterInfo",
        PeerResponse::Init(_) => "Init",
        PeerResponse::JoinCluster(_) => "JoinCluster",
        PeerResponse::Campaign(_) => "Campaign",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_leads_only_while_it_runs_as_leader() {
        let mut metrics = openraft::RaftMetrics::<NodeId, openraft::BasicNode>::new_initial(4);
        metrics.current_leader = Some(4);
        metrics.state = openraft::ServerState::Leader;
        assert!(leads(&metrics));
        // Removed from the membership while leading: the vote still names it (issue 14).
        metrics.state = openraft::ServerState::Follower;
        assert!(!leads(&metrics));
        metrics.state = openraft::ServerState::Leader;
        metrics.current_leader = Some(1);
        assert!(!leads(&metrics));
    }
}
