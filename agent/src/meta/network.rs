//! Raft network over the agent transport: each Raft RPC is one postcard-encoded
//! [`PeerRequest`] sent with [`RpcClient::call`] to the peer's `BasicNode::addr`.

use std::error::Error;
use std::sync::Arc;

use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use super::rpc::{PeerRequest, PeerResponse};
use super::types::{NodeId, TypeConfig};
use crate::transport::{RpcClient, TransportError};

/// Creates a [`PeerNetwork`] per Raft peer; all of them share one transport client.
#[derive(Clone)]
pub struct PeerNetworkFactory {
    client: Arc<dyn RpcClient>,
}

impl PeerNetworkFactory {
    /// A factory sending Raft RPCs through `client`.
    pub fn new(client: Arc<dyn RpcClient>) -> Self {
        Self { client }
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetworkFactory {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerNetwork {
        PeerNetwork {
            client: self.client.clone(),
            target,
            node: node.clone(),
        }
    }
}

/// The Raft RPC client for one peer.
pub struct PeerNetwork {
    client: Arc<dyn RpcClient>,
    target: NodeId,
    node: BasicNode,
}

/// Why one Raft RPC produced no usable response.
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("cannot encode request: {0}")]
    Encode(postcard::Error),
    #[error("cannot decode response: {0}")]
    Decode(postcard::Error),
    #[error("peer could not decode the request: {0}")]
    BadRequest(String),
    #[error("unexpected response variant to {0}")]
    Unexpected(&'static str),
}

/// The error type of one RPC method, with the remote API error `E`.
type RpcErr<E> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

impl PeerNetwork {
    /// Sends `req` and decodes the response.
    ///
    /// No timeout here: openraft wraps every call in its own `RPCOption::hard_ttl` and turns
    /// expiry into `RPCError::Timeout` (no backoff). Cutting earlier and reporting
    /// `Unreachable` would make a merely slow follower back off for 500 ms.
    async fn call(&self, req: &PeerRequest) -> Result<PeerResponse, CallError> {
        let bytes = req.encode().map_err(CallError::Encode)?;
        let reply = self.client.call(&self.node.addr, bytes).await?;
        match PeerResponse::decode(&reply).map_err(CallError::Decode)? {
            PeerResponse::BadRequest(reason) => Err(CallError::BadRequest(reason)),
            response => Ok(response),
        }
    }

    fn rpc_error<E: Error>(&self, e: CallError) -> RpcErr<E> {
        match e {
            // Unreachable makes openraft back off before the next attempt; a failed encode
            // would fail again at once, so it backs off too.
            CallError::Transport(_) | CallError::Encode(_) => Unreachable::new(&e).into(),
            CallError::Decode(_) | CallError::BadRequest(_) | CallError::Unexpected(_) => {
                NetworkError::new(&e).into()
            }
        }
    }

    fn remote_error<E: Error>(&self, e: RaftError<NodeId, E>) -> RpcErr<E> {
        RemoteError::new_with_node(self.target, self.node.clone(), e).into()
    }
}

impl RaftNetwork<TypeConfig> for PeerNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr<openraft::error::Infallible>> {
        let entries = rpc.entries.len() as u64;
        match self.call(&PeerRequest::AppendEntries(rpc)).await {
            Ok(PeerResponse::AppendEntries(result)) => result.map_err(|e| self.remote_error(e)),
            Ok(_) => Err(self.rpc_error(CallError::Unexpected("AppendEntries"))),
            // Let openraft split the batch; a single oversized entry is reported unreachable.
            Err(CallError::Transport(TransportError::TooLarge)) if entries > 1 => {
                Err(PayloadTooLarge::new_entries_hint(entries / 2).into())
            }
            Err(e) => Err(self.rpc_error(e)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        match self.call(&PeerRequest::InstallSnapshot(rpc)).await {
            Ok(PeerResponse::InstallSnapshot(result)) => result.map_err(|e| self.remote_error(e)),
            Ok(_) => Err(self.rpc_error(CallError::Unexpected("InstallSnapshot"))),
            Err(e) => Err(self.rpc_error(e)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr<openraft::error::Infallible>> {
        match self.call(&PeerRequest::Vote(rpc)).await {
            Ok(PeerResponse::Vote(result)) => result.map_err(|e| self.remote_error(e)),
            Ok(_) => Err(self.rpc_error(CallError::Unexpected("Vote"))),
            Err(e) => Err(self.rpc_error(e)),
        }
    }
}
