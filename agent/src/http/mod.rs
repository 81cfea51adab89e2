//! The HTTP API (axum): table lifecycle, cluster inspection, health.

mod cluster;
pub mod error;
mod tables;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use serde::de::DeserializeOwned;

use crate::http::error::ApiError;
use crate::meta::state_machine::StateHandle;
use crate::node::Clock;
use crate::node::meta_client::MetaClient;

/// What every handler needs.
#[derive(Clone)]
pub struct AppState {
    /// Proposals and read barriers.
    pub meta: Arc<MetaClient>,
    /// The local metadata replica.
    pub state: StateHandle,
    /// Set once the local replica has caught up with the leader at start-up.
    pub caught_up: Arc<AtomicBool>,
    /// Clock seam.
    pub clock: Clock,
    /// Partition count and placement settings (for estimates).
    pub placement: shared::placement::PlacementConfig,
}

/// Builds the router.
pub fn router(app: AppState, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/tables", get(tables::list).post(tables::create))
        .route(
            "/tables/{name}",
            get(tables::describe).delete(tables::delete),
        )
        .route(
            "/tables/{name}/capacity",
            axum::routing::put(tables::update_capacity),
        )
        .route(
            "/tables/{name}/schema",
            get(tables::get_schema).put(tables::put_schema),
        )
        .route("/tables/{name}/partitions", get(tables::partitions))
        .route("/cluster", get(cluster::cluster))
        .route("/clusters/{cluster_id}/nodes", get(cluster::nodes))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(app)
}

async fn healthz(
    axum::extract::State(app): axum::extract::State<AppState>,
) -> axum::response::Response {
    if app.caught_up.load(Ordering::Acquire) {
        (
            StatusCode::OK,
            axum::Json(serde_json::json!({"status": "ok"})),
        )
            .into_response()
    } else {
        ApiError::unavailable("metadata replica is still catching up").into_response()
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found("NotFound", "no such endpoint")
}

/// Parses a JSON body, answering 400 with a JSON error (unknown fields, bad types,
/// malformed JSON) instead of axum's plain-text rejection.
pub fn parse_json<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("InvalidRequest", format!("invalid JSON body: {e}")))
}
