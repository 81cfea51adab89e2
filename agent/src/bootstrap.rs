//! Creating the cluster, exactly once.
//!
//! A cluster is created by one agent: on `agent init` (the peer request `Init`, sent
//! over mutual TLS by an operator holding a node certificate), or on its first start when
//! its configuration says `bootstrap = true`. Either way it is refused when the agent
//! already belongs to a cluster, and when any seed does or cannot be asked: an agent
//! with a wiped data dir never starts a second cluster beside the one its seeds serve.
//! The creator marks its data dir before initialising Raft, and names the cluster and
//! creates the bootstrap admin from that mark, so a crash in between is finished on
//! restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use openraft::BasicNode;
use shared::command::MetaCommand;

use crate::config::Config;
use crate::meta::client::MetaClient;
use crate::meta::rpc::{ClusterInfo, InitError, PeerRequest, PeerResponse, call_peer};
use crate::meta::types::Raft;
use crate::seam::{Clock, StateHandle};
use crate::transport::RpcClient;

/// File in the data dir marking the agent that created its cluster.
const CREATOR_FILE: &str = "cluster-creator";

/// How long a seed may take to say which cluster it belongs to.
const SEED_ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// A first start with `bootstrap = true` whose seeds do not answer says so once every
/// this many attempts.
const UNREACHABLE_WARN_EVERY: u64 = 10;

/// What creating a cluster needs.
pub struct Bootstrap {
    raft: Raft,
    state: StateHandle,
    peers: Arc<dyn RpcClient>,
    node_id: u64,
    peer_addr: String,
    cluster_id: String,
    seeds: Vec<String>,
    data_dir: PathBuf,
    /// One creation at a time (two `agent init` at once).
    creating: tokio::sync::Mutex<()>,
    /// Woken when this agent created the cluster.
    created: tokio::sync::Notify,
}

impl Bootstrap {
    /// The bootstrap of the agent `config` describes.
    pub fn new(raft: Raft, state: StateHandle, peers: Arc<dyn RpcClient>, config: &Config) -> Self {
        let own = config.advertised_peer();
        Self {
            raft,
            state,
            peers,
            node_id: config.node_id,
            seeds: config
                .seeds
                .iter()
                .filter(|s| **s != own && **s != config.listen.peer.to_string())
                .cloned()
                .collect(),
            peer_addr: own,
            cluster_id: config.cluster_name.clone(),
            data_dir: config.data_dir.clone(),
            creating: tokio::sync::Mutex::new(()),
            created: tokio::sync::Notify::new(),
        }
    }

    /// Which cluster this agent belongs to.
    pub async fn info(&self) -> ClusterInfo {
        ClusterInfo {
            initialized: self.raft.is_initialized().await.unwrap_or(true),
            cluster_id: self.state.read(|s| s.cluster_id().map(str::to_string)),
        }
    }

    /// Creates the cluster with this agent as its single voter, unless this agent or a
    /// seed already belongs to one (or a seed cannot be asked). Returns the cluster id.
    pub async fn init(&self) -> Result<String, InitError> {
        let _one = self.creating.lock().await;
        let mine = self.info().await;
        if mine.initialized {
            return Err(InitError::AlreadyInitialized(
                mine.cluster_id.unwrap_or_else(|| self.cluster_id.clone()),
            ));
        }
        self.check_seeds().await?;
        mark_creator(&self.data_dir).map_err(|e| InitError::Failed(e.to_string()))?;
        let members = BTreeMap::from([(self.node_id, BasicNode::new(self.peer_addr.clone()))]);
        self.raft
            .initialize(members)
            .await
            .map_err(|e| InitError::Failed(e.to_string()))?;
        tracing::info!(cluster = %self.cluster_id, node_id = self.node_id, "created a new cluster");
        self.created.notify_one();
        Ok(self.cluster_id.clone())
    }

    /// `bootstrap = true`: creates the cluster on the first start, waiting for the seeds
    /// to answer. A seed of this same cluster makes this agent join it instead; a seed of
    /// another cluster is an error (a misconfigured host).
    pub async fn init_on_first_start(&self, retry: Duration) -> Result<(), InitError> {
        for attempt in 1u64.. {
            match self.init().await {
                Ok(_) | Err(InitError::AlreadyInitialized(_)) => return Ok(()),
                Err(InitError::SeedInCluster { seed, cluster_id })
                    if cluster_id == self.cluster_id =>
                {
                    tracing::warn!(%seed, cluster = %cluster_id, "a seed serves this cluster already: joining it instead of creating it again (empty data dir?)");
                    return Ok(());
                }
                Err(why @ InitError::SeedsUnreachable(_)) => {
                    if attempt % UNREACHABLE_WARN_EVERY == 1 {
                        tracing::warn!(%why, "not creating the cluster yet");
                    }
                    tokio::time::sleep(retry).await;
                }
                Err(why) => return Err(why),
            }
        }
        unreachable!("the loop returns")
    }

    /// Names the cluster and creates its bootstrap admin once this agent created it (now,
    /// or before a restart); on any other agent it waits for an `agent init` that may
    /// never come.
    pub async fn set_up(&self, meta: &MetaClient, clock: &Clock, retry: Duration) {
        while !created_here(&self.data_dir) {
            self.created.notified().await;
        }
        let name = MetaCommand::InitCluster {
            cluster_id: self.cluster_id.clone(),
        };
        while self.state.read(|s| s.cluster_id().is_none()) {
            if !matches!(meta.propose(name.clone()).await, Ok(Ok(_))) {
                tokio::time::sleep(retry).await;
            }
        }
        crate::auth::admin::ensure_bootstrap_admin(
            meta,
            &self.data_dir,
            &self.cluster_id,
            clock,
            retry,
        )
        .await;
    }

    /// Asks every seed which cluster it belongs to.
    async fn check_seeds(&self) -> Result<(), InitError> {
        let asks = self.seeds.iter().map(|seed| async move {
            let ask = call_peer(self.peers.as_ref(), seed, &PeerRequest::ClusterInfo);
            let info = match tokio::time::timeout(SEED_ANSWER_TIMEOUT, ask).await {
                Ok(Ok(PeerResponse::ClusterInfo(info))) => Some(info),
                _ => None,
            };
            (seed.clone(), info)
        });
        let mut unreachable = Vec::new();
        for (seed, info) in futures::future::join_all(asks).await {
            match info {
                Some(ClusterInfo {
                    initialized: true,
                    cluster_id,
                }) => {
                    return Err(InitError::SeedInCluster {
                        seed,
                        cluster_id: cluster_id.unwrap_or_else(|| "(being created)".into()),
                    });
                }
                Some(_) => {}
                None => unreachable.push(seed),
            }
        }
        if unreachable.is_empty() {
            Ok(())
        } else {
            Err(InitError::SeedsUnreachable(unreachable))
        }
    }
}

/// Why `agent init` did not create the cluster.
#[derive(Debug, thiserror::Error)]
pub enum InitRequestError {
    /// The agent refused.
    #[error("{0}")]
    Refused(#[from] InitError),
    /// The agent could not be asked.
    #[error("cannot reach the agent at {addr}: {reason}")]
    Unreachable {
        /// Its peer address.
        addr: String,
        /// Why.
        reason: String,
    },
}

/// Asks the agent at `addr` to create the cluster (`agent init`); returns its id.
pub async fn request_init(peers: &dyn RpcClient, addr: &str) -> Result<String, InitRequestError> {
    let unreachable = |reason: String| InitRequestError::Unreachable {
        addr: addr.to_string(),
        reason,
    };
    match call_peer(peers, addr, &PeerRequest::Init).await {
        Ok(PeerResponse::Init(answer)) => Ok(answer?),
        Ok(other) => Err(unreachable(format!("unexpected answer {other:?}"))),
        Err(why) => Err(unreachable(why)),
    }
}

/// Whether this data dir's agent created its cluster.
fn created_here(data_dir: &Path) -> bool {
    data_dir.join(CREATOR_FILE).exists()
}

/// Marks the data dir, durably, before Raft is initialised.
fn mark_creator(data_dir: &Path) -> std::io::Result<()> {
    crate::durable::write_private(&data_dir.join(CREATOR_FILE), b"")
}
