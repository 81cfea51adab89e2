//! Serves requests from other agents: Raft RPCs, and on the leader forwarded writes,
//! read-index requests and joins.

use std::sync::Arc;
use std::time::Duration;

use openraft::BasicNode;
use openraft::raft::AppendEntriesResponse;
use shared::command::MetaCommand;

use crate::auth::issuer::CredentialIssuer;
use crate::data::plane::DataPlane;
use crate::meta::client::{leader_route, read_index_on_leader, write_on_leader};
use crate::meta::freshness::MetaFreshness;
use crate::meta::rpc::{
    Committed, ForwardError, JoinRequest, NodeRecord, PeerRequest, PeerResponse,
    handle_raft_request,
};
use crate::meta::types::{NodeId, Raft};
use crate::seam::Clock;
use crate::seam::StateHandle;
use crate::transport::{BoxFuture, RpcHandler};

/// Handles every request arriving on the peer transport.
pub struct PeerHandler {
    raft: Raft,
    state: StateHandle,
    data: Arc<DataPlane>,
    freshness: Arc<MetaFreshness>,
    issuer: Arc<CredentialIssuer>,
    now_ms: Clock,
    write_timeout: Duration,
}

impl PeerHandler {
    /// Creates the handler; `now_ms` is the clock seam; leader-side writes (forwarded
    /// commands, joins) give up after `write_timeout`.
    pub fn new(
        raft: Raft,
        state: StateHandle,
        data: Arc<DataPlane>,
        freshness: Arc<MetaFreshness>,
        issuer: Arc<CredentialIssuer>,
        now_ms: Clock,
        write_timeout: Duration,
    ) -> Self {
        PeerHandler {
            raft,
            state,
            data,
            freshness,
            issuer,
            now_ms,
            write_timeout,
        }
    }

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
        write_on_leader(&self.raft, cmd, self.write_timeout).await
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
