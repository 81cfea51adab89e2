//! Messages between agents' metadata stores, postcard-encoded over the peer transport.
//!
//! All openraft types carried here (requests, responses, `RaftError`, `InstallSnapshotError`)
//! derive serde with openraft's `serde` feature, use no `deserialize_any`-style attributes, and
//! round-trip through postcard (see the tests), so no mapping to our own forms is needed.

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};
use shared::command::{MetaCommand, MetaResult};
use shared::data::{DataPeerReply, DataPeerRequest};
use shared::model::NodeStatus;

use super::types::{NodeId, Raft, TypeConfig};

/// A request from one agent's metadata store to another's.
#[derive(Debug, Serialize, Deserialize)]
pub enum PeerRequest {
    /// Raft log replication and heartbeat.
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    /// Raft election vote.
    Vote(VoteRequest<NodeId>),
    /// One chunk of a snapshot sent by the leader.
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// A follower forwards a command to the leader.
    ClientWrite(MetaCommand),
    /// A follower asks the leader for a linearizable read index.
    ReadIndex,
    /// A new agent asks to be added to the cluster as a learner.
    Join(JoinRequest),
    /// An agent asks the leader how the cluster records it (was it failed or removed
    /// while it could not hear?).
    NodeRecord(NodeId),
    /// Data plane: forwarded item operations, replication, leases, catch-up.
    Data(DataPeerRequest),
    /// Asks the leader to sign a credential (the caller was authenticated and allowed
    /// to ask for that principal by the agent that forwards this).
    IssueCredential(IssueRequest),
    /// Asks the leader to replace its signing key now.
    RotateKey,
    /// Which cluster, if any, the agent belongs to (asked before creating one).
    ClusterInfo,
    /// Asks the agent to create the cluster (`agent init`), unless it or a seed of its
    /// already belongs to one.
    Init,
    /// A new agent asks to be added to cluster `cluster_id` as a learner (refused by an
    /// agent of another cluster).
    JoinCluster {
        /// The cluster the joining agent is configured for.
        cluster_id: String,
        /// The agent.
        join: JoinRequest,
        /// Whether its data dir is new (or was wiped): its metadata replica is empty and
        /// it holds no partition copy.
        empty: bool,
    },
    /// A stopping leader asks the voter it chose to start an election now (openraft 0.9
    /// has no leadership transfer; see `meta::step_down`).
    Campaign,
}

/// Which cluster an agent belongs to.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ClusterInfo {
    /// Whether its metadata store has a membership (it created or joined a cluster).
    pub initialized: bool,
    /// The cluster's id, once named.
    pub cluster_id: Option<String>,
}

/// Why an agent did not create a cluster.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InitError {
    /// The agent already created or joined one.
    #[error("this agent already belongs to cluster {0}")]
    AlreadyInitialized(String),
    /// A seed already belongs to a cluster: creating another would split the hosts.
    #[error(
        "seed {seed} already belongs to cluster {cluster_id}: join it instead of creating a second cluster"
    )]
    SeedInCluster {
        /// The seed's address.
        seed: String,
        /// Its cluster.
        cluster_id: String,
    },
    /// Seeds did not answer: a cluster may exist there.
    #[error("seeds did not answer ({}): a cluster may already exist there; start them, or remove them from `seeds`", .0.join(", "))]
    SeedsUnreachable(Vec<String>),
    /// Creating it failed.
    #[error("creating the cluster failed: {0}")]
    Failed(String),
}

/// Why an agent was not added to a cluster.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JoinRefusal {
    /// Not the leader, or the leader could not add it now.
    #[error("{0}")]
    Forward(ForwardError),
    /// The agent asked belongs to another cluster.
    #[error("the agent asked belongs to cluster {cluster_id}")]
    WrongCluster {
        /// The cluster it belongs to.
        cluster_id: String,
    },
}

/// A credential request forwarded to the leader.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct IssueRequest {
    /// Table name.
    pub table: String,
    /// Principal ARN.
    pub principal_arn: String,
    /// Lifetime asked for (the leader applies its default and bounds).
    pub ttl_secs: Option<u64>,
    /// Actions asked for (`None`: all).
    pub actions: Option<std::collections::BTreeSet<shared::auth::Action>>,
}

/// Why the leader did not sign a credential or rotate its key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LeaderCallError {
    /// The peer is not the leader.
    #[error("{0}")]
    Forward(ForwardError),
    /// The request is invalid (400).
    #[error("{0}")]
    Invalid(String),
    /// The table or principal does not exist (404, with its error code).
    #[error("{message}")]
    NotFound {
        /// Error code (`TableNotFound`, `PrincipalNotFound`).
        code: String,
        /// Message.
        message: String,
    },
    /// The policies grant none of the actions asked for (403).
    #[error("{0}")]
    Forbidden(String),
    /// The leader cannot sign right now (its key is not published yet...) (503).
    #[error("{0}")]
    Unavailable(String),
}

/// How the leader's metadata records one agent.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct NodeRecord {
    /// Committed status, `None` if the agent is not registered.
    pub status: Option<NodeStatus>,
    /// Registered incarnation (0 if not registered).
    pub incarnation: u64,
    /// Whether the agent is in the Raft membership (voter or learner).
    pub in_membership: bool,
}

/// An agent's request to join the metadata cluster as a learner.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct JoinRequest {
    /// The agent's node id (also its Raft node id).
    pub node_id: NodeId,
    /// QUIC peer address "host:port".
    pub peer_addr: String,
    /// HTTP endpoint.
    pub endpoint: String,
    /// Zone.
    pub zone: String,
    /// Incarnation (boot time or later).
    pub incarnation: u64,
}

impl JoinRequest {
    /// The command recording this agent (and its incarnation) in the metadata.
    pub fn register_command(&self, now_ms: u64) -> MetaCommand {
        MetaCommand::RegisterNode {
            node_id: self.node_id,
            endpoint: self.endpoint.clone(),
            peer_addr: self.peer_addr.clone(),
            zone: self.zone.clone(),
            incarnation: self.incarnation,
            now_ms,
        }
    }
}

/// Why a forwarded request was not served by the peer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    /// The peer is not the leader; it names the leader it knows of, if any.
    #[error("not the leader (leader: {leader_id:?} at {leader_addr:?})")]
    NotLeader {
        /// Known leader id.
        leader_id: Option<NodeId>,
        /// Known leader's peer address.
        leader_addr: Option<String>,
    },
    /// The peer could not serve the request right now.
    #[error("metadata store unavailable: {0}")]
    Unavailable(String),
    /// The leader has heard from no quorum lately: it refused the write, which was not
    /// written (unlike `Unavailable`, after which it may still commit).
    #[error("the leader reaches no quorum: {0}")]
    NoQuorum(String),
}

/// A command committed and applied by the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    /// Its log index: a node that has applied this index reflects the command.
    pub index: u64,
    /// What the state machine returned.
    pub result: MetaResult,
}

/// The answer to a [`PeerRequest`], in the same variant.
#[derive(Debug, Serialize, Deserialize)]
pub enum PeerResponse {
    /// Answer to `AppendEntries`.
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    /// Answer to `Vote`.
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    /// Answer to `InstallSnapshot`.
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    /// Answer to `ClientWrite`: the command's log index and result once committed and applied.
    ClientWrite(Result<Committed, ForwardError>),
    /// Answer to `ReadIndex`: the log index to wait for before reading locally.
    ReadIndex(Result<u64, ForwardError>),
    /// Answer to `Join`.
    Join(Result<(), ForwardError>),
    /// Answer to `NodeRecord`, read linearizably on the leader.
    NodeRecord(Result<NodeRecord, ForwardError>),
    /// Answer to `Data`.
    Data(DataPeerReply),
    /// Answer to `IssueCredential`.
    IssueCredential(Result<shared::api::auth::IssueCredentialResponse, LeaderCallError>),
    /// Answer to `RotateKey`.
    RotateKey(Result<shared::api::auth::RotateKeyResponse, LeaderCallError>),
    /// The request could not be decoded.
    BadRequest(String),
    /// Answer to `ClusterInfo`.
    ClusterInfo(ClusterInfo),
    /// Answer to `Init`: the id of the cluster created.
    Init(Result<String, InitError>),
    /// Answer to `JoinCluster`.
    JoinCluster(Result<(), JoinRefusal>),
    /// Answer to `Campaign`: the election started, or why not.
    Campaign(Result<(), String>),
}

impl PeerRequest {
    /// Encodes the request with postcard.
    pub fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        postcard::to_allocvec(self)
    }

    /// Decodes a request encoded by [`PeerRequest::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

impl PeerResponse {
    /// Encodes the response with postcard.
    pub fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        postcard::to_allocvec(self)
    }

    /// Decodes a response encoded by [`PeerResponse::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

/// Sends `request` to the agent at `addr` and decodes its answer (why not, as text).
pub async fn call_peer(
    peers: &dyn crate::transport::RpcClient,
    addr: &str,
    request: &PeerRequest,
) -> Result<PeerResponse, String> {
    let bytes = request.encode().map_err(|e| e.to_string())?;
    let reply = peers.call(addr, bytes).await.map_err(|e| e.to_string())?;
    PeerResponse::decode(&reply).map_err(|e| format!("undecodable answer from {addr}: {e}"))
}

/// Serves the three Raft RPCs on `raft`; returns `None` for the other (forwarded) requests.
pub async fn handle_raft_request(raft: &Raft, req: PeerRequest) -> Option<PeerResponse> {
    match req {
        PeerRequest::AppendEntries(rpc) => {
            Some(PeerResponse::AppendEntries(raft.append_entries(rpc).await))
        }
        PeerRequest::Vote(rpc) => Some(PeerResponse::Vote(raft.vote(rpc).await)),
        PeerRequest::InstallSnapshot(rpc) => Some(PeerResponse::InstallSnapshot(
            raft.install_snapshot(rpc).await,
        )),
        PeerRequest::ClientWrite(_)
        | PeerRequest::ReadIndex
        | PeerRequest::Join(_)
        | PeerRequest::NodeRecord(_)
        | PeerRequest::Data(_)
        | PeerRequest::IssueCredential(_)
        | PeerRequest::RotateKey
        | PeerRequest::ClusterInfo
        | PeerRequest::Init
        | PeerRequest::JoinCluster { .. }
        | PeerRequest::Campaign => None,
    }
}
