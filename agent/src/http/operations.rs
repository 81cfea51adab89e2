//! Partition operations: split in place and move a copy (each recorded in the metadata
//! and driven by the partition's primary), and the list of running and recent ones.

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use shared::api::operations::{
    ListOperationsResponse, MergePartitionRequest, MovePartitionRequest, OperationDescription,
    SplitPartitionRequest,
};
use shared::command::{MetaCommand, MetaOutcome};
use shared::model::{Operation, OperationId, OperationKind, PartitionId};
use shared::state::MetaState;

use crate::auth::authn::Caller;
use crate::http::access::{require_table_admin, table_visible};
use crate::http::error::{ApiError, ApiResult};
use crate::http::{AppState, JsonBody, QueryParams};

fn parse_partition(text: &str) -> ApiResult<PartitionId> {
    text.parse().map_err(|_| {
        ApiError::bad_request("InvalidRequest", format!("{text:?} is not a partition id"))
    })
}

/// The table name of a partition (404 if unknown), for the authorization check.
fn table_of(app: &AppState, pid: PartitionId) -> ApiResult<String> {
    app.state
        .read(|s| {
            let p = s.partition(pid)?;
            Some(s.table(p.table_id)?.table_name.clone())
        })
        .ok_or_else(|| ApiError::not_found("PartitionNotFound", format!("no partition {pid}")))
}

fn describe(s: &MetaState, op: &shared::model::Operation, now_ms: u64) -> OperationDescription {
    let table = s.table(op.table_id).map(|t| t.table_name.clone());
    OperationDescription::of(op, table, now_ms)
}

async fn start(
    app: &AppState,
    caller: &Caller,
    pid: PartitionId,
    kind: OperationKind,
) -> ApiResult<(StatusCode, Json<OperationDescription>)> {
    let cmd = MetaCommand::StartOperation {
        partition_id: pid,
        kind,
        requested_by: caller.arn.clone(),
        now_ms: (app.clock)(),
    };
    let id = match app.meta.propose(cmd).await?? {
        MetaOutcome::OperationStarted { operation_id } => operation_id,
        other => return Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
    };
    let now = (app.clock)();
    let description = app
        .state
        .read(|s| s.operation(id).map(|op| describe(s, op, now)))
        .ok_or_else(|| ApiError::internal("the started operation is not recorded"))?;
    Ok((StatusCode::ACCEPTED, Json(description)))
}

/// `POST /partitions/{id}/split` (table admin): splits the partition in place at the
/// given point or the median of its hashed keys. 202 with the operation.
pub async fn split(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(pid): Path<String>,
    JsonBody(request): JsonBody<SplitPartitionRequest>,
) -> ApiResult<(StatusCode, Json<OperationDescription>)> {
    let pid = parse_partition(&pid)?;
    require_table_admin(&app, &caller, &table_of(&app, pid)?)?;
    let kind = OperationKind::Split {
        split_point: request.split_point,
    };
    start(&app, &caller, pid, kind).await
}

/// `POST /partitions/{id}/merge` (table admin): merges the partition with the adjacent
/// one above it (held by the same primary and replicas) in place. 202 with the
/// operation.
pub async fn merge(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(pid): Path<String>,
    JsonBody(request): JsonBody<MergePartitionRequest>,
) -> ApiResult<(StatusCode, Json<OperationDescription>)> {
    let pid = parse_partition(&pid)?;
    require_table_admin(&app, &caller, &table_of(&app, pid)?)?;
    let kind = OperationKind::Merge {
        right: request.right_partition,
    };
    start(&app, &caller, pid, kind).await
}

/// `POST /partitions/{id}/move` (table admin): moves a copy (default: the primary's) to
/// `target_node`. 202 with the operation.
pub async fn relocate(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(pid): Path<String>,
    JsonBody(request): JsonBody<MovePartitionRequest>,
) -> ApiResult<(StatusCode, Json<OperationDescription>)> {
    let pid = parse_partition(&pid)?;
    require_table_admin(&app, &caller, &table_of(&app, pid)?)?;
    let from = match request.source_node {
        Some(node) => node,
        None => app
            .state
            .read(|s| s.partition(pid).map(|p| p.primary_node_id))
            .ok_or_else(|| {
                ApiError::not_found("PartitionNotFound", format!("no partition {pid}"))
            })?,
    };
    let kind = OperationKind::Move {
        from,
        to: request.target_node,
    };
    start(&app, &caller, pid, kind).await
}

/// Query of `GET /operations`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperationsParams {
    /// Only running operations.
    #[serde(default)]
    running: bool,
}

/// `GET /operations[?running=true]`: running and recent operations, oldest first.
pub async fn list(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    QueryParams(params): QueryParams<OperationsParams>,
) -> ApiResult<Json<ListOperationsResponse>> {
    app.meta.linearizable_barrier().await?;
    let now = (app.clock)();
    let operations = app.state.read(|s| {
        s.operations()
            .filter(|op| !params.running || op.is_running())
            .filter(|op| operation_visible(s, &caller, op))
            .map(|op| describe(s, op, now))
            .collect()
    });
    Ok(Json(ListOperationsResponse { operations }))
}

/// Whether the caller may see an operation: it sees the operation's table (a cluster
/// admin sees every operation, those of purged tables too).
fn operation_visible(s: &MetaState, caller: &Caller, op: &Operation) -> bool {
    caller.admin
        || s.table(op.table_id)
            .is_some_and(|t| table_visible(s, caller, &t.table_name))
}

/// `GET /operations/{id}`.
pub async fn get(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<OperationDescription>> {
    let id: OperationId = id.parse().map_err(|_| {
        ApiError::bad_request("InvalidRequest", format!("{id:?} is not an operation id"))
    })?;
    app.meta.linearizable_barrier().await?;
    let now = (app.clock)();
    app.state
        .read(|s| {
            s.operation(id)
                .filter(|op| operation_visible(s, &caller, op))
                .map(|op| describe(s, op, now))
        })
        .map(Json)
        .ok_or_else(|| ApiError::not_found("OperationNotFound", format!("no operation {id}")))
}
