//! Joining the cluster: the bootstrap agent names the cluster; every agent (on every
//! start, with a new incarnation) asks the leader to add it as a learner and record it.

use std::sync::Arc;
use std::time::Duration;

use shared::command::MetaCommand;

use crate::config::Config;
use crate::meta::rpc::{ForwardError, JoinRequest, PeerRequest, PeerResponse};
use crate::node::Clock;
use crate::node::meta_client::{LeaderRoute, MetaClient};
use crate::transport::RpcClient;

/// Redirects followed within one join attempt (seed → leader → new leader ...).
const MAX_REDIRECTS: usize = 4;

/// Registers this agent with the cluster, retrying until it succeeds.
pub async fn register(
    meta: Arc<MetaClient>,
    peers: Arc<dyn RpcClient>,
    config: Config,
    incarnation: u64,
    clock: Clock,
) {
    let retry = Duration::from_millis(config.controllers.join_retry_interval_ms);
    if config.bootstrap {
        let cmd = MetaCommand::InitCluster {
            cluster_id: config.cluster_name.clone(),
        };
        while !matches!(meta.propose(cmd.clone()).await, Ok(Ok(_))) {
            tokio::time::sleep(retry).await;
        }
    }
    let join = JoinRequest {
        node_id: config.node_id,
        peer_addr: config.advertised_peer(),
        endpoint: config.advertised_http(),
        zone: config.zone.clone(),
        incarnation,
    };
    loop {
        match try_join(&meta, peers.as_ref(), &config.seeds, &join, &clock).await {
            Ok(()) => {
                tracing::info!(
                    node_id = join.node_id,
                    incarnation,
                    "registered with the cluster"
                );
                return;
            }
            Err(why) => tracing::debug!(%why, "join attempt failed; retrying"),
        }
        tokio::time::sleep(retry).await;
    }
}

async fn try_join(
    meta: &MetaClient,
    peers: &dyn RpcClient,
    seeds: &[String],
    join: &JoinRequest,
    clock: &Clock,
) -> Result<(), String> {
    let targets: Vec<String> = match meta.leader() {
        // Already a member that leads (the bootstrap agent): record the incarnation directly.
        LeaderRoute::Local => return register_locally(meta, join, clock).await,
        LeaderRoute::Remote(_, addr) => vec![addr],
        LeaderRoute::Unknown => seeds.to_vec(),
    };
    let mut last = String::from("no seed answered");
    for seed in targets {
        let mut addr = seed;
        for _ in 0..MAX_REDIRECTS {
            match send_join(peers, &addr, join).await {
                Ok(()) => return Ok(()),
                Err(Some(leader)) => addr = leader,
                Err(None) => break,
            }
        }
        last = format!("join through {addr} failed");
    }
    Err(last)
}

async fn register_locally(
    meta: &MetaClient,
    join: &JoinRequest,
    clock: &Clock,
) -> Result<(), String> {
    let cmd = join.register_command(clock());
    match meta.propose(cmd).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Sends one join; `Err(Some(addr))` means "ask the leader at addr instead".
async fn send_join(
    peers: &dyn RpcClient,
    addr: &str,
    join: &JoinRequest,
) -> Result<(), Option<String>> {
    let request = postcard::to_stdvec(&PeerRequest::Join(join.clone())).map_err(|_| None)?;
    let reply = peers.call(addr, request).await.map_err(|_| None)?;
    match postcard::from_bytes::<PeerResponse>(&reply) {
        Ok(PeerResponse::Join(Ok(()))) => Ok(()),
        Ok(PeerResponse::Join(Err(ForwardError::NotLeader {
            leader_addr: Some(leader),
            ..
        }))) => Err(Some(leader)),
        _ => Err(None),
    }
}
