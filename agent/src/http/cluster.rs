//! Cluster inspection endpoints.

use axum::Json;
use axum::extract::{Path, State};
use shared::api::{ClusterResponse, NodeDescription, NodeMetrics, NodesResponse, format_millis};

use crate::http::AppState;
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

/// `GET /clusters/{cluster_id}/nodes`: every node with its status and load.
pub async fn nodes(
    State(app): State<AppState>,
    Path(cluster_id): Path<String>,
) -> Result<Json<NodesResponse>, ApiError> {
    app.meta.linearizable_barrier().await?;
    let metrics = app.meta.raft().metrics().borrow().clone();
    let membership = metrics.membership_config.membership().clone();
    app.state.read(|s| {
        if s.cluster_id() != Some(cluster_id.as_str()) {
            return Err(ApiError::not_found(
                "ClusterNotFound",
                format!("this is not cluster {cluster_id}"),
            ));
        }
        let nodes = s
            .nodes()
            .map(|n| {
                let role = if membership.voter_ids().any(|v| v == n.node_id) {
                    "voter"
                } else if membership.learner_ids().any(|l| l == n.node_id) {
                    "learner"
                } else {
                    "none"
                };
                let primaries = n
                    .partition_ids
                    .iter()
                    .filter(|pid| {
                        s.partition(**pid)
                            .is_some_and(|p| p.primary_node_id == n.node_id)
                    })
                    .count();
                NodeDescription {
                    node_id: n.node_id,
                    endpoint: n.endpoint.clone(),
                    zone: n.zone.clone(),
                    status: n.status,
                    raft_role: role.to_string(),
                    partitions_owned: n.partition_ids.len() as u64,
                    primaries_owned: primaries as u64,
                    incarnation: n.incarnation,
                    last_heartbeat_at: format_millis(n.last_heartbeat_at_ms),
                    metrics: NodeMetrics::default(),
                }
            })
            .collect();
        Ok(Json(NodesResponse { cluster_id, nodes }))
    })
}
