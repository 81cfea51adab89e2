//! Joining the cluster: every agent (on every start, with a new incarnation) asks the
//! leader of the cluster it is configured for to add it as a learner and record it.

use std::sync::Arc;
use std::time::Duration;

use shared::lifecycle::incarnation_failed;
use shared::model::NodeStatus;

use crate::config::Config;
use crate::membership::Membership;
use crate::meta::client::{MetaClient, read_index_on_leader};
use crate::meta::freshness::MetaFreshness;
use crate::meta::rpc::{
    ForwardError, JoinRefusal, JoinRequest, NodeRecord, PeerRequest, PeerResponse, call_peer,
};
use crate::seam::Clock;
use crate::seam::LeaderRoute;
use crate::transport::RpcClient;

/// Redirects followed within one join attempt (seed → leader → new leader ...).
const MAX_REDIRECTS: usize = 4;
/// A failed join attempt is logged as a warning once every this many attempts.
const JOIN_WARN_EVERY: u64 = 20;

/// What registering needs.
#[derive(Clone)]
pub struct Registration {
    /// Proposals through this agent.
    pub meta: Arc<MetaClient>,
    /// Peer transport.
    pub peers: Arc<dyn RpcClient>,
    /// This agent's configuration.
    pub config: Config,
    /// Clock seam.
    pub clock: Clock,
    /// Gossip view (tells when gossip declared this agent down).
    pub membership: Membership,
    /// When this agent last heard from a leader.
    pub freshness: Arc<MetaFreshness>,
    /// Whether this agent started with an empty data dir (its first join says so).
    pub empty: bool,
}

/// Why this agent cannot be part of the cluster its seeds serve: it stops.
#[derive(Debug, thiserror::Error)]
#[error(
    "{seed} belongs to cluster {theirs}, but this agent is configured for cluster {ours} \
     (cluster_name): refusing to join another cluster"
)]
pub struct WrongCluster {
    /// The agent that refused.
    pub seed: String,
    /// Its cluster.
    pub theirs: String,
    /// This agent's.
    pub ours: String,
}

/// Registers this agent with the cluster, retrying until it succeeds; then rejoins with
/// a new incarnation whenever the cluster declared it failed while it kept running (a
/// long pause, a network partition): a failed node comes back as a new incarnation.
/// Fails only when the cluster reached is another one.
pub async fn register(reg: Registration, mut incarnation: u64) -> Result<(), WrongCluster> {
    let retry = Duration::from_millis(reg.config.controllers.join_retry_interval_ms);
    let mut empty = reg.empty;
    loop {
        join_until_registered(&reg, incarnation, empty, retry).await?;
        empty = false;
        wait_until_declared_failed(&reg, incarnation, retry).await;
        if decommissioned(&reg) {
            // An operator removed this node: it stays out, restarted or not.
            tracing::warn!("this agent was removed from the cluster (decommissioned)");
            return Ok(());
        }
        incarnation = (reg.clock)().max(incarnation + 1);
        tracing::warn!(incarnation, "declared failed while running: rejoining");
    }
}

async fn join_until_registered(
    reg: &Registration,
    incarnation: u64,
    empty: bool,
    retry: Duration,
) -> Result<(), WrongCluster> {
    let config = &reg.config;
    let join = JoinRequest {
        node_id: config.node_id,
        peer_addr: config.advertised_peer(),
        endpoint: config.advertised_http(),
        zone: config.zone.clone(),
        incarnation,
    };
    for attempt in 1u64.. {
        match try_join(
            &reg.meta,
            reg.peers.as_ref(),
            config,
            &join,
            empty,
            &reg.clock,
        )
        .await
        {
            Ok(()) => {
                tracing::info!(
                    node_id = join.node_id,
                    incarnation,
                    "registered with the cluster"
                );
                return Ok(());
            }
            Err(JoinFailure::WrongCluster(wrong)) => return Err(wrong),
            // A join that keeps failing is an agent outside its cluster: say so now and then.
            Err(why) if attempt % JOIN_WARN_EVERY == 0 => {
                tracing::warn!(%why, attempt, "still not registered with the cluster; retrying")
            }
            Err(why) => tracing::debug!(%why, "join attempt failed; retrying"),
        }
        tokio::time::sleep(retry).await;
    }
    unreachable!("the loop returns")
}

/// Why a join attempt failed.
#[derive(Debug, thiserror::Error)]
enum JoinFailure {
    /// Worth retrying.
    #[error("{0}")]
    Retry(String),
    /// The agents reached belong to another cluster.
    #[error("{0}")]
    WrongCluster(WrongCluster),
}

/// Returns once this incarnation is known to be failed: the local metadata says so, or
/// the leader confirms the failure (or no longer counts this agent as a member: the local
/// metadata stops advancing then, so it would never learn it). The leader is asked when
/// gossip declared this agent down, and whenever no leader was heard from for
/// [`SILENT_LEADER_ASKS_AFTER`]: a node removed from the membership while cut off hears
/// no leader again, and a gossip "down" can come and go while this agent cannot tell (it
/// once stayed out of its cluster for good). A gossip "down" alone is no failure: foca
/// also renews the identity of members that refuted a suspicion, and re-registering for
/// those would be noise.
async fn wait_until_declared_failed(reg: &Registration, incarnation: u64, poll: Duration) {
    let declared_down = reg.membership.declared_down();
    let me = reg.config.node_id;
    let mut last_asked = tokio::time::Instant::now();
    loop {
        let gossip_down = tokio::select! {
            _ = declared_down.notified() => true,
            _ = tokio::time::sleep(poll) => false,
        };
        let failed_locally = reg
            .meta
            .state()
            .read(|s| incarnation_failed(s, me, incarnation));
        let silent = !reg.freshness.within(SILENT_LEADER_ASKS_AFTER)
            && last_asked.elapsed() >= SILENT_LEADER_ASKS_AFTER;
        if failed_locally || decommissioned(reg) {
            return;
        }
        if gossip_down || silent {
            last_asked = tokio::time::Instant::now();
            if leader_says_failed(reg, incarnation, poll).await {
                return;
            }
        }
    }
}

/// No word from a leader for this long makes an agent ask the leader whether it still
/// counts as a member (above the failure window, so a live member is not asking all the
/// time during an election).
const SILENT_LEADER_ASKS_AFTER: Duration = Duration::from_secs(5);

/// Whether the local metadata says an operator removed this agent.
fn decommissioned(reg: &Registration) -> bool {
    let me = reg.config.node_id;
    reg.meta.state().read(|s| {
        s.node(me)
            .is_some_and(|n| n.status == NodeStatus::Decommissioned)
    })
}

/// Attempts to get the leader's record of this agent after a gossip "down".
const RECORD_ATTEMPTS: usize = 10;

/// Whether the leader records this incarnation as failed, or this agent as outside the
/// membership. If the leader cannot be asked, assume failed: re-registering is harmless.
async fn leader_says_failed(reg: &Registration, incarnation: u64, retry: Duration) -> bool {
    let me = reg.config.node_id;
    for _ in 0..RECORD_ATTEMPTS {
        let record = match reg.meta.leader() {
            // Only a leader a quorum still follows answers for the cluster: a deposed one
            // (cut off, not told yet) would answer from its stale replica.
            LeaderRoute::Local => match read_index_on_leader(reg.meta.raft()).await {
                Ok(_) => Some(reg.meta.state().read(|s| NodeRecord {
                    status: s.node(me).map(|n| n.status),
                    incarnation: s.node(me).map_or(0, |n| n.incarnation),
                    in_membership: true,
                })),
                Err(_) => None,
            },
            _ => {
                let targets = targets(&reg.meta, &reg.config.seeds, me);
                match ask_leader(reg.peers.as_ref(), targets, &PeerRequest::NodeRecord(me)).await {
                    Some((_, PeerResponse::NodeRecord(Ok(record)))) => Some(record),
                    _ => None,
                }
            }
        };
        if let Some(r) = record {
            let failed = r.status == Some(NodeStatus::Failed) && r.incarnation == incarnation;
            let removed = !r.in_membership && r.status != Some(NodeStatus::Decommissioned);
            return failed || removed;
        }
        tokio::time::sleep(retry).await;
    }
    true
}

/// Where to look for the leader: the leader this replica knows of (possibly stale, after
/// a restart), the seeds, then every other agent this replica remembers (the seeds may be
/// gone while other members are alive).
fn targets(meta: &MetaClient, seeds: &[String], me: u64) -> Vec<String> {
    let mut targets = Vec::new();
    if let LeaderRoute::Remote(_, addr) = meta.leader() {
        targets.push(addr);
    }
    for seed in seeds {
        if !targets.contains(seed) {
            targets.push(seed.clone());
        }
    }
    let known: Vec<String> = meta.state().read(|s| {
        s.nodes()
            .filter(|n| n.node_id != me && n.status != NodeStatus::Decommissioned)
            .map(|n| n.peer_addr.clone())
            .collect()
    });
    for addr in known {
        if !targets.contains(&addr) {
            targets.push(addr);
        }
    }
    targets
}

async fn try_join(
    meta: &MetaClient,
    peers: &dyn RpcClient,
    config: &Config,
    join: &JoinRequest,
    empty: bool,
    clock: &Clock,
) -> Result<(), JoinFailure> {
    if meta.leader() == LeaderRoute::Local {
        // Already a member that leads (the creator): record the incarnation directly,
        // once the cluster is named.
        if meta.state().read(|s| s.cluster_id().is_none()) {
            return Err(JoinFailure::Retry("the cluster is not named yet".into()));
        }
        return register_locally(meta, join, clock)
            .await
            .map_err(JoinFailure::Retry);
    }
    let targets = targets(meta, &config.seeds, join.node_id);
    let request = PeerRequest::JoinCluster {
        cluster_id: config.cluster_name.clone(),
        join: join.clone(),
        empty,
    };
    match ask_leader(peers, targets, &request).await {
        Some((_, PeerResponse::JoinCluster(Ok(())))) => Ok(()),
        Some((seed, PeerResponse::JoinCluster(Err(JoinRefusal::WrongCluster { cluster_id })))) => {
            Err(JoinFailure::WrongCluster(WrongCluster {
                seed,
                theirs: cluster_id,
                ours: config.cluster_name.clone(),
            }))
        }
        Some((_, other)) => Err(JoinFailure::Retry(format!("join refused: {other:?}"))),
        None => Err(JoinFailure::Retry(
            "no seed or known member answered".into(),
        )),
    }
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

/// Sends `request` through each target in turn, following "not the leader" redirects,
/// and returns the first answer that is not a redirect, with the agent that gave it.
async fn ask_leader(
    peers: &dyn RpcClient,
    targets: Vec<String>,
    request: &PeerRequest,
) -> Option<(String, PeerResponse)> {
    for target in targets {
        let mut addr = target;
        for _ in 0..MAX_REDIRECTS {
            let Ok(response) = call_peer(peers, &addr, request).await else {
                break;
            };
            match redirect(&response) {
                Some(Some(leader)) => addr = leader,
                Some(None) => break,
                None => return Some((addr, response)),
            }
        }
    }
    None
}

/// For a "not the leader" answer, where the leader is (if known).
fn redirect(response: &PeerResponse) -> Option<Option<String>> {
    match response {
        PeerResponse::Join(Err(ForwardError::NotLeader { leader_addr, .. }))
        | PeerResponse::NodeRecord(Err(ForwardError::NotLeader { leader_addr, .. }))
        | PeerResponse::JoinCluster(Err(JoinRefusal::Forward(ForwardError::NotLeader {
            leader_addr,
            ..
        }))) => Some(leader_addr.clone()),
        _ => None,
    }
}
