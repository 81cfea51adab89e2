//! Serves requests from other agents: Raft RPCs, and on the leader forwarded writes,
//! read-index requests and joins.

use std::sync::Arc;
use std::time::Duration;

use std::collections::BTreeSet;

use openraft::raft::AppendEntriesResponse;
use openraft::{BasicNode, ChangeMembers};
use shared::command::MetaCommand;
use shared::lifecycle::{EmptyJoin, empty_join};

use crate::auth::issuer::CredentialIssuer;
use crate::bootstrap::Bootstrap;
use crate::data::plane::DataPlane;
use crate::meta::client::{leader_route, read_index_on_leader, write_on_leader};
use crate::meta::freshness::MetaFreshness;
use crate::meta::rpc::{
    Committed, ForwardError, JoinRefusal, JoinRequest, NodeRecord, PeerRequest, PeerResponse,
    handle_raft_request,
};
use crate::meta::types::{NodeId, Raft};
use crate::seam::Clock;
use crate::seam::StateHandle;
use crate::transport::{BoxFuture, RpcHandler};

/// Handles every request arriving on the peer transport.
pub struct PeerHandler {
    /// The metadata store.
    pub raft: Raft,
    /// The local metadata replica.
    pub state: StateHandle,
    /// The data plane.
    pub data: Arc<DataPlane>,
    /// When this agent last heard from a leader.
    pub freshness: Arc<MetaFreshness>,
    /// The credential issuer (on the leader).
    pub issuer: Arc<CredentialIssuer>,
    /// Creating the cluster.
    pub bootstrap: Arc<Bootstrap>,
    /// The clock seam.
    pub now_ms: Clock,
    /// Leader-side writes (forwarded commands, joins) give up after this long.
    pub write_timeout: Duration,
}

impl PeerHandler {
    async fn dispatch(&self, req: PeerRequest) -> PeerResponse {
        match req {
            PeerRequest::ClientWrite(cmd) => {
                PeerResponse::ClientWrite(self.client_write(cmd).await)
            }
            PeerRequest::ReadIndex => {
                PeerResponse::ReadIndex(read_index_on_leader(&self.raft).await)
            }
            PeerRequest::Join(join) => PeerResponse::Join(self.join(join).await),
            PeerRequest::NodeRecord(node_id) => {
                PeerResponse::NodeRecord(self.node_record(node_id).await)
            }
            PeerRequest::Data(request) => PeerResponse::Data(self.data.handle_peer(request).await),
            PeerRequest::IssueCredential(request) => {
                PeerResponse::IssueCredential(self.issuer.issue_local(request).await)
            }
            PeerRequest::RotateKey => PeerResponse::RotateKey(self.issuer.rotate_local().await),
            PeerRequest::ClusterInfo => PeerResponse::ClusterInfo(self.bootstrap.info().await),
            PeerRequest::Init => PeerResponse::Init(self.bootstrap.init().await),
            PeerRequest::JoinCluster {
                cluster_id,
                join,
                empty,
            } => PeerResponse::JoinCluster(self.join_cluster(&cluster_id, join, empty).await),
            PeerRequest::Campaign => {
                PeerResponse::Campaign(self.raft.trigger().elect().await.map_err(|e| e.to_string()))
            }
            raft_rpc => {
                let response = handle_raft_request(&self.raft, raft_rpc)
                    .await
                    .unwrap_or_else(|| PeerResponse::BadRequest("unhandled request".into()));
                // Accepted (even as a conflict to resolve): it came from a current leader.
                if let PeerResponse::AppendEntries(Ok(r)) = &response
                    && !matches!(r, AppendEntriesResponse::HigherVote(_))
                {
                    self.freshness.heard_from_leader();
                }
                response
            }
        }
    }

    async fn client_write(&self, cmd: MetaCommand) -> Result<Committed, ForwardError> {
        write_on_leader(&self.raft, &self.freshness, cmd, self.write_timeout).await
    }

    /// The leader's linearizable record of `node_id`.
    async fn node_record(&self, node_id: NodeId) -> Result<NodeRecord, ForwardError> {
        let index = read_index_on_leader(&self.raft).await?;
        let mut applied = self.state.subscribe();
        let caught_up = applied.wait_for(|&a| a >= index);
        match tokio::time::timeout(self.write_timeout, caught_up).await {
            Ok(Ok(_)) => {}
            _ => {
                return Err(ForwardError::Unavailable(
                    "leader did not apply in time".into(),
                ));
            }
        }
        let in_membership = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&node_id)
            .is_some();
        Ok(self.state.read(|s| NodeRecord {
            status: s.node(node_id).map(|n| n.status),
            incarnation: s.node(node_id).map_or(0, |n| n.incarnation),
            in_membership,
        }))
    }

    /// [`PeerHandler::join`], for an agent of cluster `cluster_id` only. Any agent of
    /// another cluster refuses it, leader or not.
    async fn join_cluster(
        &self,
        cluster_id: &str,
        join: JoinRequest,
        empty: bool,
    ) -> Result<(), JoinRefusal> {
        let ours = self.state.read(|s| s.cluster_id().map(str::to_string));
        match ours {
            Some(ours) if ours != cluster_id => {
                return Err(JoinRefusal::WrongCluster { cluster_id: ours });
            }
            _ if let Some(redirect) = leader_route(&self.raft).redirect() => {
                return Err(JoinRefusal::Forward(redirect));
            }
            // A cluster being created is joined once it is named.
            None => return Err(unavailable("the cluster is not named yet")),
            Some(_) => {}
        }
        if empty {
            self.take_in_empty(join.node_id).await?;
        }
        self.join(join).await.map_err(JoinRefusal::Forward)
    }

    /// A node back with an empty data dir: out of the Raft membership first (a voter
    /// that lost its log must not count toward a quorum, and is replicated to from
    /// scratch as a learner), and the partition copies it lost replaced before it is
    /// registered again (see [`empty_join`]).
    async fn take_in_empty(&self, node_id: NodeId) -> Result<(), JoinRefusal> {
        let membership = self.raft.metrics().borrow().membership_config.clone();
        let membership = membership.membership();
        let change = if membership.voter_ids().any(|v| v == node_id) {
            Some(ChangeMembers::RemoveVoters(BTreeSet::from([node_id])))
        } else if membership.learner_ids().any(|l| l == node_id) {
            Some(ChangeMembers::RemoveNodes(BTreeSet::from([node_id])))
        } else {
            None
        };
        if let Some(change) = change {
            tracing::warn!(
                node_id,
                "a member came back with an empty data dir: removing it from the metadata membership to add it again as a learner"
            );
            let removed = self.raft.change_membership(change, false);
            match tokio::time::timeout(self.write_timeout, removed).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(unavailable(&e.to_string())),
                Err(_) => return Err(unavailable("removing it from the membership timed out")),
            }
        }
        match self.state.read(|s| empty_join(s, node_id)) {
            EmptyJoin::Admit => Ok(()),
            EmptyJoin::FailFirst { incarnation } => {
                tracing::warn!(
                    node_id,
                    incarnation,
                    "a node came back with an empty data dir: failing its last incarnation so its partitions are recovered"
                );
                let fail = MetaCommand::NodeFailed {
                    node_id,
                    incarnation,
                    now_ms: (self.now_ms)(),
                };
                self.client_write(fail)
                    .await
                    .map_err(JoinRefusal::Forward)?;
                Err(unavailable(
                    "its former partitions are being recovered first",
                ))
            }
            EmptyJoin::WaitForRecovery { partitions } => Err(unavailable(&format!(
                "{partitions} partitions it held are being recovered first (one with no \
                 other copy waits until an operator removes node {node_id})"
            ))),
        }
    }

    /// Adds the joining agent as a learner (if it is not a member yet), then records it
    /// in the metadata with its incarnation.
    async fn join(&self, join: JoinRequest) -> Result<(), ForwardError> {
        if let Some(redirect) = leader_route(&self.raft).redirect() {
            return Err(redirect);
        }
        let member_at_addr = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&join.node_id)
            .is_some_and(|n| n.addr == join.peer_addr);
        if !member_at_addr {
            // blocking = false: the joiner catches up in the background (log or snapshot).
            let node = BasicNode::new(join.peer_addr.clone());
            let added = self.raft.add_learner(join.node_id, node, false);
            match tokio::time::timeout(self.write_timeout, added).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(ForwardError::Unavailable(e.to_string())),
                Err(_) => return Err(ForwardError::Unavailable("add_learner timed out".into())),
            }
        }
        let cmd = join.register_command((self.now_ms)());
        match self.client_write(cmd).await?.result {
            Ok(_) => Ok(()),
            Err(e) => Err(ForwardError::Unavailable(e.to_string())),
        }
    }
}

fn unavailable(why: &str) -> JoinRefusal {
    JoinRefusal::Forward(ForwardError::Unavailable(why.to_string()))
}

impl RpcHandler for PeerHandler {
    fn handle(&self, request: Vec<u8>) -> BoxFuture<'_, Vec<u8>> {
        Box::pin(async move {
            let response = match postcard::from_bytes::<PeerRequest>(&request) {
                Ok(req) => self.dispatch(req).await,
                Err(e) => PeerResponse::BadRequest(e.to_string()),
            };
            // Encoding our own enum cannot fail short of a bug; answer with an empty body then.
            postcard::to_stdvec(&response).unwrap_or_default()
        })
    }
}
