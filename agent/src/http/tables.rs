//! Table lifecycle endpoints.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use shared::api::{
    CreateTableRequest, CreateTableResponse, ListTablesResponse, PartitionDescription,
    PartitionsResponse, PutSchemaRequest, SchemaResponse, TableDescription, UpdateCapacityRequest,
    UpdateCapacityResponse, format_millis, table_arn,
};
use shared::command::{MetaCommand, MetaOutcome};
use shared::lifecycle::estimate_scaling_seconds;
use shared::model::{Table, TableStatus};
use shared::recovery::under_replicated;
use shared::scaler::{capacity_completion_seconds, decrease_completion_seconds};
use shared::state::MetaState;
use shared::validate::validate_table_name;

use crate::auth::authn::Caller;
use crate::http::access::{
    require_cluster_admin, require_table_admin, require_table_visible, table_visible,
};
use crate::http::error::{ApiError, ApiResult};
use crate::http::{AppState, JsonBody, QueryParams};

fn cluster_id(s: &MetaState) -> String {
    s.cluster_id().unwrap_or("unknown").to_string()
}

fn describe_table(s: &MetaState, t: &Table) -> TableDescription {
    TableDescription {
        table_arn: table_arn(&cluster_id(s), &t.table_name),
        table_name: t.table_name.clone(),
        status: t.status,
        partition_count: s.partitions_of(t.table_id).len() as u64,
        capacity: t.capacity,
        partition_key: t.partition_key.clone(),
        sort_key: t.sort_key.clone(),
        schema_version: t.schema_version_id,
        created_at: format_millis(t.created_at_ms),
    }
}

/// Validates the name in the path so a bad name is a 400, not a misleading 404.
fn checked_name(name: &str) -> ApiResult<()> {
    validate_table_name(name).map_err(ApiError::from)
}

/// `POST /tables`: records the table as CREATING and returns at once.
pub async fn create(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(request): JsonBody<CreateTableRequest>,
) -> ApiResult<(StatusCode, Json<CreateTableResponse>)> {
    require_cluster_admin(&caller)?;
    let spec = request.into_spec()?;
    let name = spec.table_name.clone();
    let cmd = MetaCommand::CreateTable {
        spec,
        now_ms: (app.clock)(),
    };
    match app.meta.propose(cmd).await?? {
        MetaOutcome::TableCreated { .. } => {}
        other => {
            return Err(ApiError::unavailable(format!(
                "unexpected outcome {other:?}"
            )));
        }
    }
    let arn = app.state.read(|s| table_arn(&cluster_id(s), &name));
    let response = CreateTableResponse {
        table_arn: arn,
        status: TableStatus::Creating,
    };
    Ok((StatusCode::CREATED, Json(response)))
}

/// `GET /tables`: every table, linearizable.
pub async fn list(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<ListTablesResponse>> {
    app.meta.linearizable_barrier().await?;
    let tables = app.state.read(|s| {
        s.tables()
            .filter(|t| table_visible(s, &caller, &t.table_name))
            .map(|t| describe_table(s, t))
            .collect()
    });
    Ok(Json(ListTablesResponse { tables }))
}

/// `GET /tables/{name}`, linearizable.
pub async fn describe(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<Json<TableDescription>> {
    checked_name(&name)?;
    app.meta.linearizable_barrier().await?;
    app.state.read(|s| {
        require_table_visible(s, &caller, &name)?;
        s.table_by_name(&name)
            .map(|t| Json(describe_table(s, t)))
            .ok_or_else(|| ApiError::table_not_found(&name))
    })
}

/// `DELETE /tables/{name}`: 202, the table goes DELETING and is removed once released.
pub async fn delete(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<(StatusCode, Json<TableDescription>)> {
    checked_name(&name)?;
    require_table_admin(&app, &caller, &name)?;
    let cmd = MetaCommand::DeleteTable {
        table_name: name.clone(),
        now_ms: (app.clock)(),
    };
    app.meta.propose(cmd).await??;
    let description = app
        .state
        .read(|s| s.table_by_name(&name).map(|t| describe_table(s, t)))
        .ok_or_else(|| ApiError::table_not_found(&name))?;
    Ok((StatusCode::ACCEPTED, Json(description)))
}

/// `PUT /tables/{name}/capacity`: records the new capacity; the table is SCALING until done.
pub async fn update_capacity(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    JsonBody(request): JsonBody<UpdateCapacityRequest>,
) -> ApiResult<(StatusCode, Json<UpdateCapacityResponse>)> {
    checked_name(&name)?;
    require_table_admin(&app, &caller, &name)?;
    let capacity = request.to_capacity()?;
    let cmd = MetaCommand::UpdateCapacity {
        table_name: name.clone(),
        capacity,
        now_ms: (app.clock)(),
    };
    app.meta.propose(cmd).await??;
    // The Scaler splits until the partition count fits the capacity (at most doubling
    // per planning round, a few splits at a time), or merges cold adjacent pairs, each
    // first brought onto the same nodes (at most one move per copy).
    let current = app.state.read(|s| {
        s.table_by_name(&name)
            .map(|t| s.partitions_of(t.table_id).len())
    });
    let current = current.unwrap_or(0);
    let target = shared::placement::partition_count(&capacity, &app.scaler.placement) as usize;
    let est = app.scaler.op_estimates();
    let merging = app.scaler.merge_cold_partitions && target < current;
    let estimated_completion_seconds = match (app.scaler_enabled, merging) {
        (true, true) => {
            let largest = largest_partition_bytes(&app, &name).await;
            app.state.read(|s| {
                let table_id = s.table_by_name(&name).map_or(0, |t| t.table_id);
                decrease_completion_seconds(s, table_id, target, largest, &est)
            })
        }
        (true, false) if target > current => capacity_completion_seconds(current, target, 0, &est),
        _ => estimate_scaling_seconds(current as u32, current as u32),
    };
    let response = UpdateCapacityResponse {
        status: TableStatus::Scaling,
        estimated_completion_seconds,
    };
    Ok((StatusCode::ACCEPTED, Json(response)))
}

/// The largest partition of table `name`, in bytes, as its primaries report it (0 when
/// none answers).
async fn largest_partition_bytes(app: &AppState, name: &str) -> u64 {
    let (pids, nodes): (BTreeSet<u64>, Vec<u64>) = app.state.read(|s| {
        let parts = s
            .table_by_name(name)
            .map(|t| s.partitions_of(t.table_id))
            .unwrap_or_default();
        let primaries: BTreeSet<u64> = parts.iter().map(|p| p.primary_node_id).collect();
        (
            parts.iter().map(|p| p.partition_id).collect(),
            primaries.into_iter().collect(),
        )
    });
    let reports = app.data.collect_loads(nodes).await;
    reports
        .iter()
        .filter(|r| pids.contains(&r.partition_id))
        .map(|r| r.bytes)
        .max()
        .unwrap_or(0)
}

/// `?version=N` of `GET /tables/{name}/schema`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaQuery {
    version: Option<u32>,
}

/// `GET /tables/{name}/schema[?version=N]`, linearizable.
pub async fn get_schema(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    QueryParams(query): QueryParams<SchemaQuery>,
) -> ApiResult<Json<SchemaResponse>> {
    checked_name(&name)?;
    app.meta.linearizable_barrier().await?;
    app.state.read(|s| {
        require_table_visible(s, &caller, &name)?;
        let table = s
            .table_by_name(&name)
            .ok_or_else(|| ApiError::table_not_found(&name))?;
        let version = query.version.unwrap_or(table.schema_version_id);
        let schema = s.schema(table.table_id, version).ok_or_else(|| {
            ApiError::not_found(
                "SchemaVersionNotFound",
                format!("table {name} has no schema version {version}"),
            )
        })?;
        Ok(Json(SchemaResponse {
            table_name: name.clone(),
            version: schema.version,
            attributes: schema.attributes.clone(),
            created_at: format_millis(schema.created_at_ms),
        }))
    })
}

/// `PUT /tables/{name}/schema`: a new immutable version when compatible.
pub async fn put_schema(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    JsonBody(request): JsonBody<PutSchemaRequest>,
) -> ApiResult<(StatusCode, Json<SchemaResponse>)> {
    checked_name(&name)?;
    require_table_admin(&app, &caller, &name)?;
    let now_ms = (app.clock)();
    let cmd = MetaCommand::AddSchemaVersion {
        table_name: name.clone(),
        attributes: request.attributes.clone(),
        now_ms,
    };
    let version = match app.meta.propose(cmd).await?? {
        MetaOutcome::SchemaVersionAdded { version } => version,
        other => {
            return Err(ApiError::unavailable(format!(
                "unexpected outcome {other:?}"
            )));
        }
    };
    let response = SchemaResponse {
        table_name: name,
        version,
        attributes: request.attributes,
        created_at: format_millis(now_ms),
    };
    Ok((StatusCode::CREATED, Json(response)))
}

/// `GET /tables/{name}/partitions`, linearizable.
pub async fn partitions(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<Json<PartitionsResponse>> {
    checked_name(&name)?;
    app.meta.linearizable_barrier().await?;
    app.state.read(|s| {
        require_table_visible(s, &caller, &name)?;
        let table = s
            .table_by_name(&name)
            .ok_or_else(|| ApiError::table_not_found(&name))?;
        let partitions = s
            .partitions_of(table.table_id)
            .into_iter()
            .map(|p| PartitionDescription {
                partition_id: p.partition_id,
                key_range_low: p.range.low,
                key_range_high: p.range.high,
                primary_node_id: p.primary_node_id,
                replica_node_ids: p.replica_node_ids.clone(),
                epoch: p.epoch,
                status: p.status,
                ready: p.is_ready(),
                under_replicated: under_replicated(s, p, app.replication_factor),
            })
            .collect();
        Ok(Json(PartitionsResponse {
            table_name: name.clone(),
            partitions,
        }))
    })
}
