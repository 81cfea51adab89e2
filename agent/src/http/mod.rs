//! The HTTP API (axum): table lifecycle, items, cluster inspection, health.

pub mod access;
mod cluster;
pub mod error;
pub mod health;
mod items;
mod lag;
mod operations;
mod request_shape;
pub mod serve;
mod tables;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use axum::routing::get;
use serde::de::DeserializeOwned;

use crate::auth::audit::AuditLog;
use crate::auth::issuer::CredentialIssuer;
use crate::auth::verifier::TokenVerifier;
use crate::data::store::PartitionStore;
use crate::http::error::ApiError;
use crate::http::health::HealthView;
use crate::meta::client::MetaClient;
use crate::metrics::{PartitionFigures, RaftView, ScrapeView};
use crate::seam::Clock;
use crate::seam::StateHandle;

/// What every handler needs.
#[derive(Clone)]
pub struct AppState {
    /// Proposals and read barriers.
    pub meta: Arc<MetaClient>,
    /// The local metadata replica.
    pub state: StateHandle,
    /// Set once the local replica has caught up with the leader at start-up.
    pub caught_up: Arc<AtomicBool>,
    /// Set when a graceful stop begins: not ready from then on.
    pub leaving: Arc<AtomicBool>,
    /// Clock seam.
    pub clock: Clock,
    /// Local partition storage (for metrics).
    pub store: Arc<PartitionStore>,
    /// This agent's view of every node's health (gossip, staleness, lag).
    pub health: HealthView,
    /// Replicas a partition should have (primary included), from the placement config.
    pub replication_factor: usize,
    /// The data plane (item calls).
    pub data: Arc<crate::data::plane::DataPlane>,
    /// Largest item value in bytes (`data.max_value_bytes`): item bodies may be this large
    /// even when `http.max_body_bytes` is smaller, so that the data plane answers 413.
    pub max_value_bytes: usize,
    /// Local verification of item requests' credentials.
    pub verifier: Arc<TokenVerifier>,
    /// Credential issue and key rotation (through the leader).
    pub issuer: Arc<CredentialIssuer>,
    /// This agent's audit log of control-plane mutations.
    pub audit: Arc<AuditLog>,
    /// The Scaler's settings (capacity change estimates).
    pub scaler: Arc<shared::scaler::ScalerConfig>,
    /// Whether the Scaler runs (else a capacity change only records the capacity).
    pub scaler_enabled: bool,
}

/// Builds the router: open routes (health, metrics, public keys), item routes (each
/// request carries a credential, checked locally) and control-plane routes (each
/// request authenticates a principal; mutations are audited).
pub fn router(app: AppState, max_body_bytes: usize) -> Router {
    // A route's own body limit overrides the router-wide one.
    let item_body_limit = DefaultBodyLimit::max(max_body_bytes.max(app.max_value_bytes));
    let open = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(healthz))
        .route("/livez", get(livez))
        .route("/metrics", get(metrics))
        .route("/.well-known/jwks.json", get(jwks));
    let items = Router::new().route(
        "/tables/{name}/items/{partition_key}",
        get(items::get)
            .put(items::put)
            .delete(items::delete)
            .layer(item_body_limit),
    );
    open.merge(items)
        .merge(control_routes(app.clone()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            count_requests,
        ))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            close_when_leaving,
        ))
        .layer(axum::middleware::from_fn(
            request_shape::check_request_shape,
        ))
        .with_state(app)
}

/// Once a graceful stop began, every answer closes its connection (`Connection: close`),
/// so clients stop reusing connections this agent is about to close: a request sent on
/// a connection the server closes at that moment gets no answer, and a write without
/// an answer has an unknown outcome (`http::serve` waits for clients to close first).
async fn close_when_leaving(
    axum::extract::State(app): axum::extract::State<AppState>,
    request: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let mut response = next.run(request).await;
    if app.leaving.load(Ordering::Acquire) {
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    response
}

/// The control-plane routes, behind principal authentication and the audit log.
fn control_routes(app: AppState) -> Router<AppState> {
    use axum::routing::{delete, post, put};
    Router::new()
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
        .route("/tables/{name}/access-policies", get(access::list_policies))
        .route(
            "/tables/{name}/access-policies/{*principal_arn}",
            put(access::put_policy).delete(access::delete_policy),
        )
        .route("/tables/{name}/credentials", post(access::issue_credential))
        .route("/credentials/revoke", post(access::revoke_credential))
        .route(
            "/principals",
            get(access::list_principals).post(access::create_principal),
        )
        .route(
            "/principals/{*principal_arn}",
            delete(access::delete_principal),
        )
        .route("/keys", get(access::list_keys))
        .route("/keys/rotate", post(access::rotate_key))
        .route("/audit", get(access::audit))
        .route("/partitions/{id}/split", post(operations::split))
        .route("/partitions/{id}/move", post(operations::relocate))
        .route("/partitions/{id}/merge", post(operations::merge))
        .route("/operations", get(operations::list))
        .route("/operations/{id}", get(operations::get))
        .route("/cluster", get(cluster::cluster))
        .route("/cluster/metadata", get(cluster::metadata))
        .route("/cluster/snapshot", get(cluster::snapshot))
        .route("/clusters/{cluster_id}/nodes", get(cluster::nodes))
        .route(
            "/clusters/{cluster_id}/nodes/{node_id}",
            axum::routing::delete(cluster::remove),
        )
        .route(
            "/clusters/{cluster_id}/nodes/{node_id}/drain",
            axum::routing::post(cluster::drain).delete(cluster::cancel_drain),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            app,
            access::authenticate_principal,
        ))
        .route_layer(axum::middleware::from_fn(require_json))
}

/// Refuses a control-plane change whose body is declared as anything but JSON (415): a
/// browser's cross-site form post (urlencoded, multipart, text/plain) would otherwise
/// carry its cached Basic credentials into creating or deleting tables. A request with no
/// declared type (no body) passes.
async fn require_json(request: Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::http::{Method, header};
    let changes = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let declared = request
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or_default().to_ascii_lowercase());
    if let Some(declared) = declared.filter(|_| changes) {
        let essence = declared.split(';').next().unwrap_or_default().trim();
        if essence != "application/json" {
            return ApiError::rejected(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("content type {declared:?} is not accepted: send application/json"),
            )
            .into_response();
        }
    }
    next.run(request).await
}

/// `GET /livez`: 200 while the process runs and its metadata store has not stopped (an
/// agent that is not live is restarted; one that is only not ready is left to recover).
async fn livez(
    axum::extract::State(app): axum::extract::State<AppState>,
) -> axum::response::Response {
    if let Err(fatal) = &app.meta.raft().metrics().borrow().running_state {
        return ApiError::unavailable(format!("metadata store stopped: {fatal}")).into_response();
    }
    (
        StatusCode::OK,
        axum::Json(serde_json::json!({"status": "live"})),
    )
        .into_response()
}

/// `GET /healthz` and `GET /readyz`: 200 while this agent can serve: its metadata replica
/// caught up and a leader confirmed its leadership within a bound; 503 otherwise.
async fn healthz(
    axum::extract::State(app): axum::extract::State<AppState>,
) -> axum::response::Response {
    if let Err(fatal) = &app.meta.raft().metrics().borrow().running_state {
        return ApiError::unavailable(format!("metadata store stopped: {fatal}")).into_response();
    }
    if app.leaving.load(Ordering::Acquire) {
        return ApiError::unavailable("this agent is stopping").into_response();
    }
    if !app.caught_up.load(Ordering::Acquire) {
        return ApiError::unavailable("metadata replica is still catching up").into_response();
    }
    // Every API call needs a leader this agent can reach (to forward, or for a read
    // index): healthy means one answers now. A deposed, wedged agent once answered 200
    // here while every call failed (issue 14).
    match tokio::time::timeout(HEALTH_LEADER_WAIT, app.meta.read_index()).await {
        Ok(Ok(_)) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({"status": "ok"})),
        )
            .into_response(),
        Ok(Err(e)) => ApiError::unavailable(e.to_string()).into_response(),
        Err(_) => ApiError::unavailable(format!(
            "no metadata leader confirmed within {HEALTH_LEADER_WAIT:?}"
        ))
        .into_response(),
    }
}

/// How long `/healthz` waits for the metadata leader to confirm a read index.
const HEALTH_LEADER_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// `GET /.well-known/jwks.json`: the public keys every agent trusts for credentials
/// (RFC 8037 OKP keys), from the local metadata replica. Open: keys are public.
async fn jwks(
    axum::extract::State(app): axum::extract::State<AppState>,
) -> axum::response::Response {
    let now = (app.clock)();
    let keys: Vec<(String, ed25519_dalek::VerifyingKey)> = app.state.read(|s| {
        s.trusted_keys(now)
            .filter_map(|k| {
                let key = ed25519_dalek::VerifyingKey::from_bytes(&k.public_key).ok()?;
                Some((k.kid.clone(), key))
            })
            .collect()
    });
    axum::Json(shared::auth::jwks(&keys)).into_response()
}

/// `GET /metrics`: Prometheus (OpenMetrics) text.
async fn metrics(
    axum::extract::State(app): axum::extract::State<AppState>,
) -> axum::response::Response {
    let raft = app.meta.raft().metrics().borrow().clone();
    let membership = raft.membership_config.membership();
    let view = RaftView {
        term: raft.current_term,
        applied_index: app.state.applied_index(),
        is_leader: crate::meta::client::leads(&raft),
        voters: membership.voter_ids().count(),
        learners: membership.learner_ids().count(),
    };
    let local_partitions = app.store.list().len();
    let nodes = app.health.samples();
    let applied_lag_entries = app.health.applied_lag_entries();
    let replication_lag_ms = app.health.replication_lag_ms();
    let partitions = partition_figures(&app.data);
    let body = app.state.read(|state| {
        app.meta.metrics().render(&ScrapeView {
            raft: view,
            state,
            local_partitions,
            nodes,
            applied_lag_entries,
            replication_lag_ms,
            partitions,
        })
    });
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(axum::http::header::CONTENT_TYPE, content_type)], body).into_response()
}

/// The data-plane figures of every partition stored or led here.
fn partition_figures(data: &crate::data::plane::DataPlane) -> Vec<PartitionFigures> {
    let mut figures: std::collections::BTreeMap<u64, PartitionFigures> = data
        .activity()
        .samples()
        .into_iter()
        .map(|s| {
            let f = PartitionFigures {
                partition_id: s.partition_id,
                ops_per_sec: s.ops_per_sec,
                items: None,
                bytes: None,
                replica_lag: s.replica_lag,
            };
            (s.partition_id, f)
        })
        .collect();
    for pid in data.store().list() {
        if let Ok(stats) = data.store().stats(pid) {
            let f = figures.entry(pid).or_insert_with(|| PartitionFigures {
                partition_id: pid,
                ..PartitionFigures::default()
            });
            f.items = Some(stats.item_count);
            f.bytes = Some(stats.bytes);
        }
    }
    figures.into_values().collect()
}

/// Counts every HTTP request (`agent_http_requests_total`).
async fn count_requests(
    axum::extract::State(app): axum::extract::State<AppState>,
    request: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    app.meta.metrics().http_requests.inc();
    next.run(request).await
}

async fn method_not_allowed() -> ApiError {
    ApiError::rejected(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this endpoint".into(),
    )
}

async fn not_found() -> ApiError {
    ApiError::not_found("NotFound", "no such endpoint")
}

/// A JSON request body whose every rejection (malformed JSON, unknown fields, bad types,
/// too large) is a JSON error, not axum's plain-text one.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::rejected(e.status(), e.body_text()))?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::bad_request("InvalidRequest", format!("invalid JSON body: {e}")))
    }
}

/// Query parameters whose rejection is a JSON error.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| QueryParams(q))
            .map_err(|e| ApiError::rejected(e.status(), e.body_text()))
    }
}
