//! Item endpoints: put, get, delete and query of a table's items. Each call goes to the
//! data plane, which routes it to the primary of the key's partition.
//!
//! Parameters are checked here (unknown ones, combinations, limits, key encodings) so a
//! bad request is a 400 before any routing; the data plane checks keys again as the
//! authority. Keys in answers are in canonical text form (`decode_key`).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::Deserialize;
use serde_json::value::RawValue;
use shared::api::{DeleteItemResponse, ItemResponse, PutItemResponse, QueryItem, QueryResponse};
use shared::data::{DEFAULT_QUERY_LIMIT, ItemError, ItemReply, MAX_QUERY_LIMIT, decode_key};
use shared::validate::validate_table_name;

use crate::data::plane::{ItemCall, ItemCallKind};
use crate::data_client::KeyTypes;
use crate::http::access::check_credential;
use crate::http::error::{ApiError, ApiResult};
use crate::http::{AppState, QueryParams};
use shared::auth::Action;

/// Query parameters of the item endpoints; any other is a 400.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemParams {
    /// Sort key of a single-item call.
    sort_key: Option<String>,
    /// Lowest sort key of a query (inclusive).
    sort_from: Option<String>,
    /// Highest sort key of a query (inclusive).
    sort_to: Option<String>,
    /// Most items of a query.
    limit: Option<usize>,
    /// Epoch of the caller's route when it addresses the primary directly.
    epoch: Option<u64>,
}

impl ItemParams {
    fn has_query_params(&self) -> bool {
        self.sort_from.is_some() || self.sort_to.is_some() || self.limit.is_some()
    }
}

/// `/tables/{name}/items/{partition_key}`, percent-decoded, with a valid table name.
pub struct ItemPath {
    table: String,
    partition_key: String,
}

/// Extracting the path also checks the request's credential (before the body is read):
/// reads need `read`, puts and deletes `write` on the table.
impl FromRequestParts<AppState> for ItemPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> ApiResult<Self> {
        let Path((table, partition_key)) = Path::<(String, String)>::from_request_parts(parts, app)
            .await
            .map_err(|e| ApiError::rejected(e.status(), e.body_text()))?;
        validate_table_name(&table)?;
        let action = if parts.method == axum::http::Method::GET {
            Action::Read
        } else {
            Action::Write
        };
        check_credential(app, &parts.headers, &table, action).await?;
        Ok(ItemPath {
            table,
            partition_key,
        })
    }
}

/// A PUT body: one JSON value, kept as its text without surrounding whitespace.
pub struct ItemValue(Vec<u8>);

impl<S: Send + Sync> FromRequest<S> for ItemValue {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> ApiResult<Self> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| match e.status() {
                StatusCode::PAYLOAD_TOO_LARGE => ApiError::value_too_large(e.body_text()),
                status => ApiError::rejected(status, e.body_text()),
            })?;
        json_value(&bytes)
            .map(ItemValue)
            .map_err(|m| ApiError::bad_request("InvalidRequest", m))
    }
}

/// The JSON text of a body holding exactly one JSON value (any type), trimmed.
fn json_value(body: &[u8]) -> Result<Vec<u8>, String> {
    serde_json::from_slice::<&RawValue>(body)
        .map(|raw| raw.get().as_bytes().to_vec())
        .map_err(|e| format!("the body must be one JSON value: {e}"))
}

/// The keys of a call in canonical text form, checked against the table's key types.
#[derive(Debug, PartialEq, Eq)]
struct CanonicalKeys {
    partition_key: String,
    sort_key: Option<String>,
}

/// Checks the keys of a call; `sort_key_required` for single-item calls (a GET without
/// a sort key on a table with one is a query).
fn canonical_keys(
    keys: KeyTypes,
    partition_key: &str,
    sort_key: Option<&str>,
    sort_key_required: bool,
) -> Result<CanonicalKeys, String> {
    let pk = keys
        .partition_key_bytes(partition_key)
        .map_err(|e| e.to_string())?;
    let sort_key = match (keys.sort, sort_key) {
        (Some(ty), Some(sk)) => {
            let bytes = keys.sort_key_bytes(sk).map_err(|e| e.to_string())?;
            Some(decode_key(ty, &bytes))
        }
        (None, Some(_)) => return Err("the table has no sort key: omit sort_key".into()),
        (Some(_), None) if sort_key_required => {
            return Err("the table has a sort key: sort_key is required".into());
        }
        (_, None) => None,
    };
    Ok(CanonicalKeys {
        partition_key: decode_key(keys.partition, &pk),
        sort_key,
    })
}

/// PUT and DELETE address one item: no query parameters.
fn single_item_only(params: &ItemParams) -> Result<(), String> {
    if params.has_query_params() {
        return Err("sort_from, sort_to and limit apply to a GET without sort_key only".into());
    }
    Ok(())
}

/// What a GET asks for: one item, or (no `sort_key`, on a table with a sort key) the
/// items of the partition key within the bounds.
fn get_kind(params: &ItemParams, keys: KeyTypes) -> Result<ItemCallKind, String> {
    if params.sort_key.is_some() || keys.sort.is_none() {
        return single_item_only(params).map(|()| ItemCallKind::Get);
    }
    for bound in [&params.sort_from, &params.sort_to].into_iter().flatten() {
        keys.sort_key_bytes(bound).map_err(|e| e.to_string())?;
    }
    Ok(ItemCallKind::Query {
        sort_from: params.sort_from.clone(),
        sort_to: params.sort_to.clone(),
        limit: query_limit(params.limit)?,
    })
}

fn query_limit(limit: Option<usize>) -> Result<usize, String> {
    match limit.unwrap_or(DEFAULT_QUERY_LIMIT) {
        n @ 1..=MAX_QUERY_LIMIT => Ok(n),
        n => Err(format!("limit {n} is not within 1..={MAX_QUERY_LIMIT}")),
    }
}

fn bad(message: String) -> ApiError {
    ApiError::bad_request("InvalidRequest", message)
}

/// The key types of a table as the local metadata replica knows it. A table this replica
/// does not know yet may be a new one it has not applied: a read barrier first, then 404
/// (421 to a client that addressed this agent with an epoch: it routed with newer
/// metadata, and refreshes and retries).
async fn key_types(app: &AppState, table: &str, epoch: Option<u64>) -> ApiResult<KeyTypes> {
    let known = |app: &AppState| app.state.read(|s| s.table_by_name(table).is_some());
    if !known(app) {
        let _ = app.meta.linearizable_barrier().await;
        if !known(app) && epoch.is_some() {
            return Err(ItemError::WrongPartition {
                current_epoch: None,
                primary: None,
            }
            .into());
        }
    }
    app.state.read(|s| {
        let t = s
            .table_by_name(table)
            .ok_or_else(|| ApiError::table_not_found(table))?;
        let schema = s
            .current_schema(t.table_id)
            .ok_or_else(|| ApiError::internal(format!("table {table} has no schema")))?;
        KeyTypes::from_schema(&schema.attributes, &t.partition_key, t.sort_key.as_deref())
            .ok_or_else(|| ApiError::internal(format!("schema of {table} lacks its keys")))
    })
}

fn item_call(path: ItemPath, params: ItemParams, kind: ItemCallKind) -> ItemCall {
    ItemCall {
        table: path.table,
        partition_key: path.partition_key,
        sort_key: params.sort_key,
        kind,
        expected_epoch: params.epoch,
    }
}

fn unexpected(reply: ItemReply) -> ApiError {
    ApiError::internal(format!("unexpected data-plane reply {reply:?}"))
}

/// Stored JSON text as a raw JSON value of an answer.
fn raw_value(bytes: Vec<u8>) -> ApiResult<Box<RawValue>> {
    String::from_utf8(bytes)
        .map_err(|e| e.to_string())
        .and_then(|text| RawValue::from_string(text).map_err(|e| e.to_string()))
        .map_err(|e| ApiError::internal(format!("stored value is not JSON: {e}")))
}

/// `PUT /tables/{name}/items/{partition_key}[?sort_key=][&epoch=]`: stores the body.
pub async fn put(
    State(app): State<AppState>,
    path: ItemPath,
    QueryParams(params): QueryParams<ItemParams>,
    ItemValue(value): ItemValue,
) -> ApiResult<Json<PutItemResponse>> {
    single_item_only(&params).map_err(bad)?;
    let keys = key_types(&app, &path.table, params.epoch).await?;
    canonical_keys(keys, &path.partition_key, params.sort_key.as_deref(), true).map_err(bad)?;
    let call = item_call(path, params, ItemCallKind::Put(value));
    match app.data.call(call).await? {
        ItemReply::Written { lsn, epoch } => Ok(Json(PutItemResponse { epoch, lsn })),
        other => Err(unexpected(other)),
    }
}

/// `DELETE /tables/{name}/items/{partition_key}[?sort_key=][&epoch=]`.
pub async fn delete(
    State(app): State<AppState>,
    path: ItemPath,
    QueryParams(params): QueryParams<ItemParams>,
) -> ApiResult<Json<DeleteItemResponse>> {
    single_item_only(&params).map_err(bad)?;
    let keys = key_types(&app, &path.table, params.epoch).await?;
    canonical_keys(keys, &path.partition_key, params.sort_key.as_deref(), true).map_err(bad)?;
    let call = item_call(path, params, ItemCallKind::Delete);
    match app.data.call(call).await? {
        ItemReply::Written { lsn, epoch } => Ok(Json(DeleteItemResponse { epoch, lsn })),
        other => Err(unexpected(other)),
    }
}

/// `GET /tables/{name}/items/{partition_key}`: one item (`?sort_key=`, or a table without
/// a sort key), else a query (`?sort_from=&sort_to=&limit=`).
pub async fn get(
    State(app): State<AppState>,
    path: ItemPath,
    QueryParams(params): QueryParams<ItemParams>,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let keys = key_types(&app, &path.table, params.epoch).await?;
    let kind = get_kind(&params, keys).map_err(bad)?;
    let canonical = canonical_keys(keys, &path.partition_key, params.sort_key.as_deref(), false)
        .map_err(bad)?;
    let table = path.table.clone();
    match app.data.call(item_call(path, params, kind)).await? {
        ItemReply::Item(Some(value)) => Ok(Json(ItemResponse {
            partition_key: canonical.partition_key,
            sort_key: canonical.sort_key,
            value: raw_value(value)?,
        })
        .into_response()),
        ItemReply::Item(None) => Err(ApiError::item_not_found(not_found_message(
            &table, &canonical,
        ))),
        ItemReply::Items { items, more } => {
            let sort_type = keys.sort.ok_or_else(|| unexpected_items(&table))?;
            let items = items
                .into_iter()
                .map(|(sk, value)| {
                    Ok(QueryItem {
                        sort_key: decode_key(sort_type, &sk),
                        value: raw_value(value)?,
                    })
                })
                .collect::<ApiResult<Vec<_>>>()?;
            let response = QueryResponse {
                partition_key: canonical.partition_key,
                items,
                more,
            };
            Ok(Json(response).into_response())
        }
        other => Err(unexpected(other)),
    }
}

fn unexpected_items(table: &str) -> ApiError {
    ApiError::internal(format!(
        "query items from table {table}, which has no sort key"
    ))
}

fn not_found_message(table: &str, keys: &CanonicalKeys) -> String {
    match &keys.sort_key {
        Some(sk) => format!(
            "no item with partition key {:?} and sort key {sk:?} in table {table}",
            keys.partition_key
        ),
        None => format!(
            "no item with partition key {:?} in table {table}",
            keys.partition_key
        ),
    }
}

#[cfg(test)]
mod tests {
    use axum::extract::Query;
    use axum::http::Uri;
    use shared::model::AttributeType;

    use super::*;

    const WITH_SORT: KeyTypes = KeyTypes {
        partition: AttributeType::S,
        sort: Some(AttributeType::N),
    };
    const NO_SORT: KeyTypes = KeyTypes {
        partition: AttributeType::N,
        sort: None,
    };

    fn params(query: &str) -> Result<ItemParams, String> {
        let uri: Uri = format!("/x?{query}").parse().unwrap();
        Query::<ItemParams>::try_from_uri(&uri)
            .map(|Query(p)| p)
            .map_err(|e| e.body_text())
    }

    #[test]
    fn parameters_parse_and_unknown_ones_are_refused() {
        let p = params("sort_key=a%2Fb&epoch=7").unwrap();
        assert_eq!(p.sort_key.as_deref(), Some("a/b"));
        assert_eq!(p.epoch, Some(7));
        let p = params("sort_from=1&sort_to=9&limit=5").unwrap();
        assert_eq!(
            (p.sort_from.as_deref(), p.sort_to.as_deref(), p.limit),
            (Some("1"), Some("9"), Some(5))
        );
        assert!(params("").unwrap().sort_key.is_none());
        for bad in [
            "bogus=1",
            "epoch=-1",
            "epoch=x",
            "limit=ten",
            "limit=-1",
            "sort_key=a&sort_key=b",
        ] {
            assert!(params(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn get_is_a_query_without_sort_key_on_a_table_with_one() {
        let kind = get_kind(&params("").unwrap(), WITH_SORT).unwrap();
        assert_eq!(
            kind,
            ItemCallKind::Query {
                sort_from: None,
                sort_to: None,
                limit: DEFAULT_QUERY_LIMIT
            }
        );
        let kind = get_kind(
            &params("sort_from=1&sort_to=2.5&limit=1000").unwrap(),
            WITH_SORT,
        );
        assert_eq!(
            kind.unwrap(),
            ItemCallKind::Query {
                sort_from: Some("1".into()),
                sort_to: Some("2.5".into()),
                limit: MAX_QUERY_LIMIT
            }
        );
        let get = |q: &str, keys| get_kind(&params(q).unwrap(), keys);
        assert_eq!(get("sort_key=3", WITH_SORT).unwrap(), ItemCallKind::Get);
        assert_eq!(get("", NO_SORT).unwrap(), ItemCallKind::Get);
        for (q, keys) in [
            ("limit=0", WITH_SORT),
            ("limit=1001", WITH_SORT),
            ("sort_from=abc", WITH_SORT),
            ("sort_to=", WITH_SORT),
            ("sort_key=1&limit=5", WITH_SORT),
            ("sort_key=1&sort_from=0", WITH_SORT),
            ("limit=5", NO_SORT),
            ("sort_to=5", NO_SORT),
        ] {
            assert!(get(q, keys).is_err(), "{q}");
        }
    }

    #[test]
    fn put_and_delete_take_no_query_parameters() {
        assert!(single_item_only(&params("sort_key=1&epoch=2").unwrap()).is_ok());
        for q in ["limit=1", "sort_from=a", "sort_to=b"] {
            assert!(single_item_only(&params(q).unwrap()).is_err(), "{q}");
        }
    }

    #[test]
    fn keys_are_checked_and_canonical() {
        let k = canonical_keys(WITH_SORT, "a/b", Some("1.50"), true).unwrap();
        assert_eq!(
            k,
            CanonicalKeys {
                partition_key: "a/b".into(),
                sort_key: Some("1.5".into())
            }
        );
        let k = canonical_keys(NO_SORT, "007", None, true).unwrap();
        assert_eq!(k.partition_key, "7");
        assert!(canonical_keys(WITH_SORT, "a", None, true).is_err());
        assert!(canonical_keys(WITH_SORT, "a", None, false).is_ok());
        assert!(canonical_keys(NO_SORT, "1", Some("x"), false).is_err());
        assert!(canonical_keys(NO_SORT, "one", None, true).is_err());
        assert!(canonical_keys(WITH_SORT, "", Some("1"), true).is_err());
        let long = "x".repeat(shared::data::MAX_PARTITION_KEY_BYTES + 1);
        assert!(canonical_keys(WITH_SORT, &long, Some("1"), true).is_err());
    }

    #[test]
    fn bodies_must_be_one_json_value() {
        assert_eq!(
            json_value(b" {\"a\": [1, 2]}\n").unwrap(),
            b"{\"a\": [1, 2]}"
        );
        assert_eq!(json_value(b"\"text\"").unwrap(), b"\"text\"");
        assert_eq!(json_value(b"null").unwrap(), b"null");
        assert_eq!(
            json_value(b"123456789012345678901234567890").unwrap(),
            b"123456789012345678901234567890",
            "kept exactly, not rounded through f64"
        );
        for bad in [&b""[..], b"{", b"{} {}", b"nul", b"\"\xff\"", b"{'a': 1}"] {
            assert!(
                json_value(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn stored_values_come_back_verbatim() {
        let raw = raw_value(b"{\"b\":1,\"a\":2}".to_vec()).unwrap();
        assert_eq!(raw.get(), "{\"b\":1,\"a\":2}");
        assert!(raw_value(b"{".to_vec()).is_err());
        assert!(raw_value(vec![0xff]).is_err());
    }
}
