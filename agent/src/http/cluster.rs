//! Cluster inspection and node management endpoints.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use shared::api::{
    ClusterResponse, DrainNodeResponse, MetadataReplicaResponse, NodeDescription, NodeMetrics,
    NodesResponse, format_millis,
};
use shared::backup::MetaBackup;
use shared::command::MetaCommand;
use shared::model::{Node, NodeId, NodeStatus};
use shared::recovery::{RecoveryConfig, drain_blockers};
use shared::state::MetaState;

use crate::auth::authn::Caller;
use crate::http::AppState;
use crate::http::access::{require_admin_or_credential, require_cluster_admin};
use crate::http::error::ApiError;

/// `GET /cluster`: leader, voters, learners, term and commit index.
pub async fn cluster(State(app): State<AppState>) -> Result<Json<ClusterResponse>, ApiError> {
    // The commit index comes from the leader's read index, which also proves a leader exists.
    let commit_index = app.meta.read_index().await?;
    let metrics = app.meta.raft().metrics().borrow().clone();
    let membership = metrics.membership_config.membership();
    let leader_id = metrics.current_leader;
    let (cluster_id, leader_endpoint) = app.state.read(|s| {
        let endpoint = leader_id
            .and_then(|id| s.node(id))
            .map(|n| n.endpoint.clone());
        (s.cluster_id().map(str::to_string), endpoint)
    });
    Ok(Json(ClusterResponse {
        cluster_id,
        node_id: app.meta.node_id(),
        leader_id,
        leader_endpoint,
        voters: membership.voter_ids().collect(),
        learners: membership.learner_ids().collect(),
        term: metrics.current_term,
        commit_index,
        applied_index: app.state.applied_index(),
    }))
}

/// `GET /cluster/metadata` (cluster admins): this agent's own replica of the metadata,
/// read locally without asking the leader: its applied index, whether its invariants
/// hold, and a digest to compare replicas by.
pub async fn metadata(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<MetadataReplicaResponse>, ApiError> {
    use sha2::Digest;
    require_cluster_admin(&caller)?;
    let (applied_index, (violation, encoded)) = read_at_one_index(&app, |s| {
        (s.check_invariants().err(), postcard::to_allocvec(s))
    })?;
    let encoded = encoded.map_err(|e| ApiError::internal(format!("encoding the state: {e}")))?;
    let digest = sha2::Sha256::digest(&encoded);
    Ok(Json(MetadataReplicaResponse {
        node_id: app.meta.node_id(),
        applied_index,
        invariant_violation: violation,
        digest: digest.iter().map(|b| format!("{b:02x}")).collect(),
    }))
}

/// `GET /cluster/snapshot` (cluster admins): a backup of the whole metadata at a
/// committed index (`shared::backup`: checksummed), read on this agent after it applied
/// everything committed before the request, as `application/octet-stream`.
pub async fn snapshot(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    require_cluster_admin(&caller)?;
    app.meta.linearizable_barrier().await?;
    let (applied_index, state) = read_at_one_index(&app, MetaState::clone)?;
    let backup = MetaBackup {
        cluster_id: state.cluster_id().map(str::to_string),
        applied_index,
        taken_by: app.meta.node_id(),
        taken_at_ms: (app.clock)(),
        state,
    };
    // Encoding a large state takes a while: off the async workers.
    let bytes = tokio::task::spawn_blocking(move || backup.encode())
        .await
        .map_err(|e| ApiError::internal(format!("encoding the backup: {e}")))?
        .map_err(|e| ApiError::internal(format!("encoding the backup: {e}")))?;
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/octet-stream".to_string(),
            ),
            (
                axum::http::HeaderName::from_static(SNAPSHOT_INDEX_HEADER),
                applied_index.to_string(),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// The response header of `GET /cluster/snapshot` naming the backup's index.
pub const SNAPSHOT_INDEX_HEADER: &str = "x-snapshot-index";

/// Reads of the state [`read_at_one_index`] tries before giving up because entries kept
/// being applied during each.
const READ_AT_ONE_INDEX_ATTEMPTS: usize = 20;

/// `read` of this agent's replica with the index it is of: the index is read on both
/// sides of the state, so the result is of the state at exactly that index.
fn read_at_one_index<T>(
    app: &AppState,
    read: impl Fn(&MetaState) -> T,
) -> Result<(u64, T), ApiError> {
    for _ in 0..READ_AT_ONE_INDEX_ATTEMPTS {
        let before = app.state.applied_index();
        let value = app.state.read(&read);
        if app.state.applied_index() == before {
            return Ok((before, value));
        }
    }
    Err(ApiError::unavailable(
        "the metadata changed during every read: try again",
    ))
}

/// 404 unless `cluster_id` names this cluster.
fn check_cluster(s: &MetaState, cluster_id: &str) -> Result<(), ApiError> {
    if s.cluster_id() == Some(cluster_id) {
        Ok(())
    } else {
        Err(ApiError::not_found(
            "ClusterNotFound",
            format!("this is not cluster {cluster_id}"),
        ))
    }
}

/// `GET /clusters/{cluster_id}/nodes` (cluster admins, and clients routing with a
/// credential): every node with its status (this agent's gossip view refines the
/// committed one), heartbeat staleness and gossiped load.
pub async fn nodes(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(cluster_id): Path<String>,
) -> Result<Json<NodesResponse>, ApiError> {
    require_admin_or_credential(&caller)?;
    app.meta.linearizable_barrier().await?;
    let metrics = app.meta.raft().metrics().borrow().clone();
    let membership = metrics.membership_config.membership().clone();
    let now = (app.clock)();
    app.state.read(|s| {
        check_cluster(s, &cluster_id)?;
        let nodes = s
            .nodes()
            .map(|n| {
                let is_voter = membership.voter_ids().any(|v| v == n.node_id);
                let role = if is_voter {
                    "voter"
                } else if membership.learner_ids().any(|l| l == n.node_id) {
                    "learner"
                } else {
                    "none"
                };
                describe_node(&app, s, n, is_voter, role, now)
            })
            .collect();
        Ok(Json(NodesResponse { cluster_id, nodes }))
    })
}

fn describe_node(
    app: &AppState,
    s: &MetaState,
    n: &Node,
    is_voter: bool,
    role: &str,
    now: u64,
) -> NodeDescription {
    let primaries = n
        .partition_ids
        .iter()
        .filter(|pid| {
            s.partition(**pid)
                .is_some_and(|p| p.primary_node_id == n.node_id)
        })
        .count();
    let health = app.health.node(n, now);
    let metrics = app
        .health
        .membership()
        .report(n.node_id)
        .map(|r| NodeMetrics {
            cpu_pct: f64::from(r.load.cpu_pct),
            disk_pct: f64::from(r.load.disk_pct),
            ops_per_sec: f64::from(r.load.ops_per_sec),
            replication_lag_ms: r.load.replication_lag_ms,
        })
        .unwrap_or_default();
    NodeDescription {
        node_id: n.node_id,
        endpoint: n.endpoint.clone(),
        zone: n.zone.clone(),
        status: health.status,
        is_voter,
        raft_role: role.to_string(),
        partitions_owned: n.partition_ids.len() as u64,
        primaries_owned: primaries as u64,
        incarnation: n.incarnation,
        last_heartbeat_at: format_millis(
            health.last_heartbeat_ms.unwrap_or(n.last_heartbeat_at_ms),
        ),
        heartbeat_staleness_ms: health.staleness_ms,
        metrics,
        // Planned only for a draining node (a HEALTHY one's would copy the state).
        drain_blocked: if n.status == NodeStatus::Draining {
            let unreachable = app.health.membership().not_alive();
            drain_blockers(s, n.node_id, &recovery_config(app), &unreachable)
        } else {
            Vec::new()
        },
    }
}

fn recovery_config(app: &AppState) -> RecoveryConfig {
    RecoveryConfig {
        replication_factor: app.replication_factor,
    }
}

/// `POST /clusters/{cluster_id}/nodes/{node_id}/drain`: no new work for the node, and its
/// partitions are moved off by the recovery coordinator. 202.
pub async fn drain(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((cluster_id, node_id)): Path<(String, String)>,
) -> Result<(StatusCode, Json<DrainNodeResponse>), ApiError> {
    require_cluster_admin(&caller)?;
    request_drain(app, cluster_id, node_id, false).await
}

/// `DELETE /clusters/{cluster_id}/nodes/{node_id}`: drain, then decommission once the node
/// holds nothing (it also leaves the Raft membership). 202.
pub async fn remove(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((cluster_id, node_id)): Path<(String, String)>,
) -> Result<(StatusCode, Json<DrainNodeResponse>), ApiError> {
    require_cluster_admin(&caller)?;
    request_drain(app, cluster_id, node_id, true).await
}

/// `DELETE /clusters/{cluster_id}/nodes/{node_id}/drain`: cancels a drain or removal
/// (a DRAINING node takes new work again; partitions already moved stay). 200.
pub async fn cancel_drain(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((cluster_id, node_id)): Path<(String, String)>,
) -> Result<Json<DrainNodeResponse>, ApiError> {
    require_cluster_admin(&caller)?;
    let node_id = parse_node_id(&node_id)?;
    app.meta.linearizable_barrier().await?;
    app.state.read(|s| {
        check_cluster(s, &cluster_id)?;
        s.node(node_id)
            .map(|_| ())
            .ok_or_else(|| node_not_found(node_id))
    })?;
    let cmd = MetaCommand::CancelDrain {
        node_id,
        now_ms: (app.clock)(),
    };
    app.meta.propose(cmd).await??;
    Ok(Json(drain_response(&app, node_id)?))
}

fn parse_node_id(text: &str) -> Result<NodeId, ApiError> {
    text.parse()
        .map_err(|_| ApiError::bad_request("InvalidRequest", format!("{text:?} is not a node id")))
}

fn node_not_found(node_id: NodeId) -> ApiError {
    ApiError::not_found("NodeNotFound", format!("node {node_id} is not registered"))
}

/// The node's drain state as committed now.
fn drain_response(app: &AppState, node_id: NodeId) -> Result<DrainNodeResponse, ApiError> {
    app.state
        .read(|s| {
            s.node(node_id).map(|n| DrainNodeResponse {
                node_id,
                status: n.status,
                remove_when_drained: n.remove_when_drained,
                partitions_owned: n.partition_ids.len() as u64,
            })
        })
        .ok_or_else(|| node_not_found(node_id))
}

/// Most partition ids named in a refused drain's message.
const BLOCKED_IDS_SHOWN: usize = 10;

async fn request_drain(
    app: AppState,
    cluster_id: String,
    node_id: String,
    remove: bool,
) -> Result<(StatusCode, Json<DrainNodeResponse>), ApiError> {
    let node_id = parse_node_id(&node_id)?;
    app.meta.linearizable_barrier().await?;
    let recovery = recovery_config(&app);
    app.state.read(|s| {
        check_cluster(s, &cluster_id)?;
        let node = s.node(node_id).ok_or_else(|| node_not_found(node_id))?;
        if node.status != NodeStatus::Healthy {
            return Ok(());
        }
        // Refused with the reason rather than accepted and left DRAINING for good.
        // Whether it can ever finish: every node counts, reachable now or not.
        let blocked = drain_blockers(s, node_id, &recovery, &BTreeSet::new());
        if blocked.is_empty() {
            return Ok(());
        }
        let shown = &blocked[..blocked.len().min(BLOCKED_IDS_SHOWN)];
        Err(ApiError::conflict(
            "DrainBlocked",
            format!(
                "node {node_id} cannot be drained: no other node can take a replica of {} \
                 of its partitions (e.g. {shown:?}) at replication factor {}; add a node \
                 first",
                blocked.len(),
                app.replication_factor
            ),
        ))
    })?;
    let cmd = MetaCommand::DrainNode {
        node_id,
        remove,
        now_ms: (app.clock)(),
    };
    app.meta.propose(cmd).await??;
    Ok((StatusCode::ACCEPTED, Json(drain_response(&app, node_id)?)))
}
