//! A blocking client of the item API that sends each call straight to the primary of the
//! key's partition, using a routing cache of its own.
//!
//! Contract:
//! - Every item request carries `?epoch=` of the route it was sent on, so an agent that is
//!   not the key's primary at that epoch refuses it (421 `WrongPartition`) instead of
//!   serving it: a stale route can delay a write, never apply it.
//! - On 421, 503, a connection error or a missing route the client refreshes the table's
//!   routes (through any agent it can reach) and retries, at most
//!   [`RetryPolicy::max_attempts`] times with a capped exponential backoff, then answers
//!   [`DataClientError::Exhausted`].
//! - A write is sent again only when the first attempt certainly did not apply: a 503
//!   (the primary refused it before writing), a 421, or a connection that never opened.
//!   A write sent without an answer back (a timeout, a connection lost after sending)
//!   answers [`DataClientError::OutcomeUnknown`] and is not resent: a copy applied after
//!   another client's write of the same item would undo that write, and the item would
//!   go back in time (the testbed found this under a paused primary). An `Exhausted`
//!   write may or may not have applied too.

mod cache;
mod credentials;

use std::sync::{Mutex, RwLock};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use shared::api::{
    DeleteItemResponse, ErrorBody, ITEM_NOT_FOUND_CODE, ItemResponse, NodesResponse,
    PartitionsResponse, PutItemResponse, QueryResponse, SchemaResponse, TableDescription,
    WRONG_PARTITION_CODE,
};

pub use self::cache::{KeyTypes, RouteCache, RouteTarget, route_entries};
use self::credentials::Credentials;
use crate::api_client::{Authorization, ClientError, Method, encode_component, with_auth};
use shared::api::auth::{IssueCredentialRequest, IssueCredentialResponse};

/// Timeout of one item request (a write waits for every replica to make it durable).
pub const DATA_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Timeout of opening a connection to an agent.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Largest response body read (a query answers at most `MAX_QUERY_LIMIT` items).
pub const MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;
/// Default attempts of one call, the first included.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;
/// Default wait before the second attempt; doubled for each later one.
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(50);
/// Default longest wait between two attempts.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// How a call is retried after a stale route or an unreachable primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts of one call, the first included (at least 1).
    pub max_attempts: u32,
    /// Wait before the second attempt; doubled for each later one.
    pub backoff_base: Duration,
    /// Longest wait between two attempts.
    pub backoff_max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff_base: DEFAULT_BACKOFF_BASE,
            backoff_max: DEFAULT_BACKOFF_MAX,
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` (`attempt` >= 1 failed attempts so far).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(16);
        self.backoff_base
            .saturating_mul(1 << doublings)
            .min(self.backoff_max)
    }
}

/// Why an item call failed. Only `OutcomeUnknown`, `Exhausted` and a 5xx other than 503
/// on a write leave the outcome unknown; every other error changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum DataClientError {
    /// An agent answered with an error status, could not be reached, or answered
    /// something the API does not promise.
    #[error(transparent)]
    Call(#[from] ClientError),
    /// Refused before sending: a key that cannot be encoded, a sort key where the table
    /// has none (or none where it has one). Nothing was sent.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The cached routes have no partition (or no primary endpoint) for the key, e.g. a
    /// table whose partitions are not assigned yet. Nothing was sent.
    #[error("no route to the key's partition in table {table}")]
    NoRoute {
        /// Table.
        table: String,
    },
    /// A write was sent and no answer came back: it may or may not have applied.
    #[error("write outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// Every attempt failed with a retryable error; `last` is the last of them.
    #[error("gave up after {attempts} attempts: {last}")]
    Exhausted {
        /// Attempts made.
        attempts: u32,
        /// The last error.
        last: Box<DataClientError>,
    },
}

impl DataClientError {
    /// The HTTP status of an API error (of the last attempt, for `Exhausted`).
    pub fn status(&self) -> Option<u16> {
        match self {
            DataClientError::Call(e) => e.status(),
            DataClientError::Exhausted { last, .. } => last.status(),
            _ => None,
        }
    }

    /// Whether refreshing the routes and trying again may succeed.
    fn is_retryable(&self) -> bool {
        match self {
            DataClientError::Call(ClientError::Api { status, code, .. }) => {
                *status == 503 || (*status == 421 && code == WRONG_PARTITION_CODE)
            }
            DataClientError::Call(ClientError::Transport { .. })
            | DataClientError::NoRoute { .. } => true,
            _ => false,
        }
    }
}

/// A primary, as one attempt addresses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRouteTarget {
    /// Partition holding the key.
    pub partition_id: u64,
    /// Epoch sent as `?epoch=`.
    pub epoch: u64,
    /// The primary.
    pub primary_node_id: u64,
    /// The primary's HTTP endpoint.
    pub endpoint: String,
}

impl From<RouteTarget<'_>> for OwnedRouteTarget {
    fn from(t: RouteTarget<'_>) -> Self {
        OwnedRouteTarget {
            partition_id: t.partition_id,
            epoch: t.epoch,
            primary_node_id: t.primary_node_id,
            endpoint: t.endpoint.to_string(),
        }
    }
}

/// One item request, before it is routed.
struct ItemRequest<'a> {
    method: Method,
    table: &'a str,
    partition_key: &'a str,
    /// Query parameters other than `epoch`.
    params: Vec<(&'static str, String)>,
    body: Option<String>,
}

/// A status and body as received.
struct Reply {
    endpoint: String,
    status: u16,
    text: String,
}

/// A client of the item API of a cluster, reached first through `seed_endpoints`.
/// Shareable between threads: calls take `&self`.
pub struct DataClient {
    seeds: Vec<String>,
    agent: ureq::Agent,
    retry: RetryPolicy,
    cache: RwLock<RouteCache>,
    hints: Mutex<Hints>,
    credentials: Option<Credentials>,
}

/// What a client remembers besides routes.
#[derive(Debug, Default)]
struct Hints {
    /// Cluster id, for `GET /clusters/{id}/nodes`.
    cluster_id: Option<String>,
    /// The agent that answered the last refresh, tried first next time.
    last_good: Option<String>,
}

impl DataClient {
    /// A client that learns the cluster through `seed_endpoints` (e.g.
    /// `http://127.0.0.1:7070`), with the default [`RetryPolicy`].
    pub fn new(seed_endpoints: Vec<String>) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(DATA_REQUEST_TIMEOUT))
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .build()
            .into();
        let seeds = seed_endpoints
            .into_iter()
            .map(|e| e.trim_end_matches('/').to_string())
            .collect();
        DataClient {
            seeds,
            agent,
            retry: RetryPolicy::default(),
            cache: RwLock::new(RouteCache::default()),
            hints: Mutex::new(Hints::default()),
            credentials: None,
        }
    }

    /// The same client authenticating with `authorization`: with a principal's secret
    /// it obtains a credential per table (and a new one before expiry, or when one is
    /// refused); with a credential it uses that one for its table.
    pub fn with_authorization(mut self, authorization: Authorization) -> Self {
        self.credentials = Some(Credentials::new(authorization));
        self
    }

    /// The same client with another retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = RetryPolicy {
            max_attempts: retry.max_attempts.max(1),
            ..retry
        };
        self
    }

    /// `PUT /tables/{table}/items/{pk}[?sort_key=]`: stores `value`, replacing any item.
    pub fn put(
        &self,
        table: &str,
        partition_key: &str,
        sort_key: Option<&str>,
        value: &serde_json::Value,
    ) -> Result<PutItemResponse, DataClientError> {
        let raw = serde_json::value::to_raw_value(value)
            .map_err(|e| DataClientError::Invalid(e.to_string()))?;
        self.put_raw(table, partition_key, sort_key, &raw)
    }

    /// Like [`DataClient::put`] with the value's JSON text sent as it is (no rounding of
    /// numbers, no reordering of object members).
    pub fn put_raw(
        &self,
        table: &str,
        partition_key: &str,
        sort_key: Option<&str>,
        value: &RawValue,
    ) -> Result<PutItemResponse, DataClientError> {
        let request = ItemRequest {
            method: Method::Put,
            table,
            partition_key,
            params: sort_param(sort_key),
            body: Some(value.get().to_string()),
        };
        self.single_item(&request, sort_key)?
            .ok_or_else(|| decode_error("404 answering a put".into()))
    }

    /// `GET /tables/{table}/items/{pk}[?sort_key=]`: the item's value, `None` if absent.
    pub fn get(
        &self,
        table: &str,
        partition_key: &str,
        sort_key: Option<&str>,
    ) -> Result<Option<serde_json::Value>, DataClientError> {
        let Some(item) = self.get_item(table, partition_key, sort_key)? else {
            return Ok(None);
        };
        serde_json::from_str(item.value.get())
            .map(Some)
            .map_err(|e| decode_error(format!("item value: {e}")))
    }

    /// Like [`DataClient::get`], with the keys in canonical form and the value as stored.
    pub fn get_item(
        &self,
        table: &str,
        partition_key: &str,
        sort_key: Option<&str>,
    ) -> Result<Option<ItemResponse>, DataClientError> {
        let request = ItemRequest {
            method: Method::Get,
            table,
            partition_key,
            params: sort_param(sort_key),
            body: None,
        };
        self.single_item(&request, sort_key)
    }

    /// `DELETE /tables/{table}/items/{pk}[?sort_key=]` (succeeds if the item is absent).
    pub fn delete(
        &self,
        table: &str,
        partition_key: &str,
        sort_key: Option<&str>,
    ) -> Result<DeleteItemResponse, DataClientError> {
        let request = ItemRequest {
            method: Method::Delete,
            table,
            partition_key,
            params: sort_param(sort_key),
            body: None,
        };
        self.single_item(&request, sort_key)?
            .ok_or_else(|| decode_error("404 answering a delete".into()))
    }

    /// `GET /tables/{table}/items/{pk}?sort_from=&sort_to=&limit=`: the items of one
    /// partition key in sort-key order, bounds inclusive (tables with a sort key only).
    pub fn query(
        &self,
        table: &str,
        partition_key: &str,
        sort_from: Option<&str>,
        sort_to: Option<&str>,
        limit: Option<usize>,
    ) -> Result<QueryResponse, DataClientError> {
        let mut params = Vec::new();
        params.extend(sort_from.map(|s| ("sort_from", s.to_string())));
        params.extend(sort_to.map(|s| ("sort_to", s.to_string())));
        params.extend(limit.map(|n| ("limit", n.to_string())));
        let request = ItemRequest {
            method: Method::Get,
            table,
            partition_key,
            params,
            body: None,
        };
        let check = |keys: KeyTypes| {
            if keys.sort.is_none() {
                return Err(format!("table {table} has no sort key: use get"));
            }
            for bound in [sort_from, sort_to].into_iter().flatten() {
                keys.sort_key_bytes(bound).map_err(|e| e.to_string())?;
            }
            Ok(())
        };
        let reply = self.call(&request, &check)?;
        decode(&reply)
    }

    /// The primary and epoch the cache gives for an encoded partition key of `table`
    /// (no IO: `None` until the table's routes are fetched).
    pub fn route(&self, table: &str, partition_key: &[u8]) -> Option<OwnedRouteTarget> {
        self.read_cache()
            .route(table, partition_key)
            .map(Into::into)
    }

    /// A copy of the routing cache (e.g. to measure lookups without the lock).
    pub fn route_cache(&self) -> RouteCache {
        self.read_cache().clone()
    }

    /// Fetches the table's key types and routes and the nodes' endpoints through the
    /// first agent that answers (the last one that did, the seeds, then every known node).
    pub fn refresh(&self, table: &str) -> Result<(), DataClientError> {
        let mut last = None;
        for endpoint in self.refresh_candidates() {
            match self.refresh_through(&endpoint, table) {
                Ok(()) => {
                    self.lock_hints().last_good = Some(endpoint);
                    return Ok(());
                }
                Err(e @ DataClientError::Call(ClientError::Api { status: 404, .. })) => {
                    self.write_cache().remove_table(table);
                    return Err(e);
                }
                Err(e) if e.is_retryable() => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| DataClientError::Invalid("no endpoint to reach".into())))
    }

    /// A single-item call, checking the sort key against the table's keys first.
    fn single_item<T: DeserializeOwned>(
        &self,
        request: &ItemRequest<'_>,
        sort_key: Option<&str>,
    ) -> Result<Option<T>, DataClientError> {
        let check = |keys: KeyTypes| check_sort_key(keys, request.table, sort_key);
        let reply = self.call(request, &check)?;
        if reply.status == 404 {
            return Ok(None);
        }
        decode(&reply).map(Some)
    }

    /// Routes and sends `request`, refreshing and retrying per the retry policy. Answers
    /// a 2xx reply, or a 404 `ItemNotFound` one.
    fn call(
        &self,
        request: &ItemRequest<'_>,
        check: &dyn Fn(KeyTypes) -> Result<(), String>,
    ) -> Result<Reply, DataClientError> {
        let mut refresh = self.read_cache().key_types(request.table).is_none();
        let mut last = None;
        let mut renewed = false;
        // A route gone stale (a hand-over or a move switched the primary): the refreshed
        // route is tried at once, the first time (the switch is done by then).
        let (mut at_once, mut rerouted) = (false, false);
        for attempt in 1..=self.retry.max_attempts {
            if attempt > 1 && !std::mem::take(&mut at_once) {
                std::thread::sleep(self.retry.backoff(attempt - 1));
            }
            match self.attempt(request, check, refresh) {
                Ok(reply) => return Ok(reply),
                // A refused credential (revoked, its key rotated out): one new one.
                Err(e)
                    if e.status() == Some(401)
                        && !renewed
                        && self
                            .credentials
                            .as_ref()
                            .is_some_and(|c| c.forget(request.table)) =>
                {
                    renewed = true;
                    last = Some(e);
                }
                Err(e) if e.is_retryable() => {
                    at_once = e.status() == Some(421) && !rerouted;
                    rerouted |= at_once;
                    last = Some(e);
                    refresh = true;
                }
                Err(e) => return Err(e),
            }
        }
        Err(DataClientError::Exhausted {
            attempts: self.retry.max_attempts,
            last: Box::new(last.unwrap_or(DataClientError::NoRoute {
                table: request.table.to_string(),
            })),
        })
    }

    fn attempt(
        &self,
        request: &ItemRequest<'_>,
        check: &dyn Fn(KeyTypes) -> Result<(), String>,
        refresh: bool,
    ) -> Result<Reply, DataClientError> {
        if refresh {
            self.refresh(request.table)?;
        }
        let target = self.target(request, check)?;
        let url = item_url(&target, request);
        let auth = self.item_authorization(request.table)?;
        let reply = self.send(
            request.method,
            &url,
            &target.endpoint,
            request.body.as_deref(),
            auth.as_deref(),
        );
        let reply = reply.inspect_err(|e| {
            self.forget_hint(&target.endpoint);
            if matches!(e, DataClientError::OutcomeUnknown(_)) {
                // Not retried, but the primary may be gone: the next call routes afresh.
                self.write_cache().remove_table(request.table);
            }
        })?;
        if (200..300).contains(&reply.status) {
            return Ok(reply);
        }
        let error = api_error(&reply);
        match &error {
            DataClientError::Call(ClientError::Api {
                status: 404, code, ..
            }) if code == ITEM_NOT_FOUND_CODE => Ok(reply),
            _ => Err(error),
        }
    }

    /// Encodes the partition key (and checks the rest) with the cached key types, and
    /// looks up the primary.
    fn target(
        &self,
        request: &ItemRequest<'_>,
        check: &dyn Fn(KeyTypes) -> Result<(), String>,
    ) -> Result<OwnedRouteTarget, DataClientError> {
        let cache = self.read_cache();
        let no_route = || DataClientError::NoRoute {
            table: request.table.to_string(),
        };
        let keys = cache.key_types(request.table).ok_or_else(no_route)?;
        check(keys).map_err(DataClientError::Invalid)?;
        let pk = keys
            .partition_key_bytes(request.partition_key)
            .map_err(|e| DataClientError::Invalid(e.to_string()))?;
        cache
            .route(request.table, &pk)
            .map(Into::into)
            .ok_or_else(no_route)
    }

    /// One refresh through one agent: table, schema (when the table is new to the
    /// cache), partitions, then node endpoints.
    fn refresh_through(&self, endpoint: &str, table: &str) -> Result<(), DataClientError> {
        let t = encode_component(table);
        let description: TableDescription = self.get_json(endpoint, &format!("/tables/{t}"))?;
        let cached = self
            .read_cache()
            .key_types_if_created_at(table, &description.created_at);
        let keys = match cached {
            Some(keys) => keys,
            None => {
                let schema: SchemaResponse =
                    self.get_json(endpoint, &format!("/tables/{t}/schema"))?;
                KeyTypes::from_schema(
                    &schema.attributes,
                    &description.partition_key,
                    description.sort_key.as_deref(),
                )
                .ok_or_else(|| decode_error(format!("schema of {table} lacks its keys")))?
            }
        };
        let partitions: PartitionsResponse =
            self.get_json(endpoint, &format!("/tables/{t}/partitions"))?;
        let nodes = self.nodes(endpoint)?;
        let mut cache = self.write_cache();
        cache.set_endpoints(nodes.nodes.into_iter().map(|n| (n.node_id, n.endpoint)));
        cache.set_table(
            table,
            keys,
            &description.created_at,
            route_entries(&partitions),
        );
        Ok(())
    }

    fn nodes(&self, endpoint: &str) -> Result<NodesResponse, DataClientError> {
        let known = self.lock_hints().cluster_id.clone();
        let cluster_id = match known {
            Some(id) => id,
            None => {
                let cluster: shared::api::ClusterResponse = self.get_json(endpoint, "/cluster")?;
                let id = cluster.cluster_id.ok_or_else(|| ClientError::Api {
                    status: 503,
                    code: "ServiceUnavailable".into(),
                    message: "the cluster has no id yet".into(),
                })?;
                self.lock_hints().cluster_id = Some(id.clone());
                id
            }
        };
        let path = format!("/clusters/{}/nodes", encode_component(&cluster_id));
        self.get_json(endpoint, &path)
    }

    fn refresh_candidates(&self) -> Vec<String> {
        let last_good = self.lock_hints().last_good.clone();
        let mut candidates: Vec<String> = last_good.into_iter().collect();
        let known: Vec<String> = self
            .read_cache()
            .endpoints()
            .into_iter()
            .map(|e| e.trim_end_matches('/').to_string())
            .collect();
        for endpoint in self.seeds.iter().cloned().chain(known) {
            if !candidates.contains(&endpoint) {
                candidates.push(endpoint);
            }
        }
        candidates
    }

    fn forget_hint(&self, endpoint: &str) {
        let mut hints = self.lock_hints();
        if hints.last_good.as_deref() == Some(endpoint) {
            hints.last_good = None;
        }
    }

    /// The `Authorization` header of an item request on `table`: the credential held
    /// for it, or (with a principal's secret) a new one.
    fn item_authorization(&self, table: &str) -> Result<Option<String>, DataClientError> {
        let Some(credentials) = &self.credentials else {
            return Ok(None);
        };
        if let Some(header) = credentials.item_header(table) {
            return Ok(Some(header));
        }
        let Some(principal) = credentials.principal() else {
            return Ok(None);
        };
        let request = IssueCredentialRequest {
            principal_arn: principal.principal_arn.clone(),
            ttl_seconds: None,
            actions: None,
        };
        let body = serde_json::to_string(&request).map_err(|e| decode_error(e.to_string()))?;
        let path = format!("/tables/{}/credentials", encode_component(table));
        let mut last = None;
        for endpoint in self.refresh_candidates() {
            let url = format!("{endpoint}{path}");
            let header = credentials.control_header();
            let reply = self.send(Method::Post, &url, &endpoint, Some(&body), Some(&header));
            let error = match reply {
                Ok(reply) if (200..300).contains(&reply.status) => {
                    let issued: IssueCredentialResponse = decode(&reply)?;
                    credentials.hold(table, &issued.token, issued.expires_at_unix);
                    return Ok(Some(format!("Bearer {}", issued.token)));
                }
                Ok(reply) => api_error(&reply),
                Err(e) => e,
            };
            if !error.is_retryable() {
                return Err(error);
            }
            last = Some(error);
        }
        Err(last.unwrap_or_else(|| DataClientError::Invalid("no endpoint to reach".into())))
    }

    fn get_json<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        path: &str,
    ) -> Result<T, DataClientError> {
        let auth = self.credentials.as_ref().map(|c| c.control_header());
        let url = format!("{endpoint}{path}");
        let reply = self.send(Method::Get, &url, endpoint, None, auth.as_deref())?;
        if (200..300).contains(&reply.status) {
            decode(&reply)
        } else {
            Err(api_error(&reply))
        }
    }

    fn send(
        &self,
        method: Method,
        url: &str,
        endpoint: &str,
        body: Option<&str>,
        authorization: Option<&str>,
    ) -> Result<Reply, DataClientError> {
        let auth = authorization;
        let result = match method {
            Method::Get => with_auth(self.agent.get(url), auth).call(),
            Method::Delete => with_auth(self.agent.delete(url), auth).call(),
            Method::Put => with_auth(self.agent.put(url), auth)
                .content_type("application/json")
                .send(body.unwrap_or("")),
            Method::Post => with_auth(self.agent.post(url), auth)
                .content_type("application/json")
                .send(body.unwrap_or("")),
        };
        let transport = |reason: String| {
            DataClientError::from(ClientError::Transport {
                endpoint: endpoint.to_string(),
                reason,
            })
        };
        let write = matches!(method, Method::Put | Method::Delete | Method::Post);
        let unknown =
            |reason: String| DataClientError::OutcomeUnknown(format!("{endpoint}: {reason}"));
        let mut response = result.map_err(|e| {
            if write && !never_sent(&e) {
                unknown(e.to_string())
            } else {
                transport(e.to_string())
            }
        })?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_string()
            .map_err(|e| {
                let reason = format!("reading the response: {e}");
                if write {
                    unknown(reason)
                } else {
                    transport(reason)
                }
            })?;
        Ok(Reply {
            endpoint: endpoint.to_string(),
            status,
            text,
        })
    }

    fn read_cache(&self) -> std::sync::RwLockReadGuard<'_, RouteCache> {
        self.cache.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_cache(&self) -> std::sync::RwLockWriteGuard<'_, RouteCache> {
        self.cache.write().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_hints(&self) -> std::sync::MutexGuard<'_, Hints> {
        self.hints.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn sort_param(sort_key: Option<&str>) -> Vec<(&'static str, String)> {
    sort_key
        .map(|s| ("sort_key", s.to_string()))
        .into_iter()
        .collect()
}

/// A single-item call gives a sort key exactly when the table has one, and it encodes.
fn check_sort_key(keys: KeyTypes, table: &str, sort_key: Option<&str>) -> Result<(), String> {
    match (keys.sort, sort_key) {
        (Some(_), Some(sk)) => keys
            .sort_key_bytes(sk)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        (None, None) => Ok(()),
        (Some(_), None) => Err(format!("table {table} has a sort key: give one")),
        (None, Some(_)) => Err(format!("table {table} has no sort key")),
    }
}

fn decode<T: DeserializeOwned>(reply: &Reply) -> Result<T, DataClientError> {
    serde_json::from_str(&reply.text)
        .map_err(|e| decode_error(format!("from {}: {e}: {}", reply.endpoint, reply.text)))
}

/// An answer the API does not promise.
fn decode_error(message: String) -> DataClientError {
    ClientError::Decode(message).into()
}

fn api_error(reply: &Reply) -> DataClientError {
    match serde_json::from_str::<ErrorBody>(&reply.text) {
        Ok(body) => ClientError::Api {
            status: reply.status,
            code: body.error.code,
            message: body.error.message,
        }
        .into(),
        Err(_) => decode_error(format!(
            "status {} from {}: {}",
            reply.status, reply.endpoint, reply.text
        )),
    }
}

/// The URL of an item request sent to `target`, with the route's epoch.
fn item_url(target: &OwnedRouteTarget, request: &ItemRequest<'_>) -> String {
    let mut url = format!(
        "{}/tables/{}/items/{}?epoch={}",
        target.endpoint.trim_end_matches('/'),
        encode_component(request.table),
        encode_component(request.partition_key),
        target.epoch
    );
    for (name, value) in &request.params {
        url.push('&');
        url.push_str(name);
        url.push('=');
        url.push_str(&encode_component(value));
    }
    url
}

/// Whether a request certainly never reached the agent (no connection was opened), so
/// sending it again cannot apply it twice.
fn never_sent(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => true,
        ureq::Error::Timeout(t) => matches!(t, ureq::Timeout::Resolve | ureq::Timeout::Connect),
        ureq::Error::Io(io) => io.kind() == std::io::ErrorKind::ConnectionRefused,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_connection_never_opened_is_never_sent() {
        assert!(never_sent(&ureq::Error::ConnectionFailed));
        assert!(never_sent(&ureq::Error::Timeout(ureq::Timeout::Connect)));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(never_sent(&ureq::Error::Io(refused)));
        // Sent, then no answer: the write may have applied.
        assert!(!never_sent(&ureq::Error::Timeout(ureq::Timeout::Global)));
        assert!(!never_sent(&ureq::Error::Timeout(
            ureq::Timeout::RecvResponse
        )));
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(!never_sent(&ureq::Error::Io(reset)));
    }

    #[test]
    fn components_are_percent_encoded() {
        assert_eq!(encode_component("abc-._~XYZ09"), "abc-._~XYZ09");
        assert_eq!(encode_component("a/b?c=d&e"), "a%2Fb%3Fc%3Dd%26e");
        assert_eq!(encode_component("1+1 %"), "1%2B1%20%25");
        assert_eq!(encode_component("é"), "%C3%A9");
    }

    #[test]
    fn every_item_url_carries_the_route_epoch() {
        let target = OwnedRouteTarget {
            partition_id: 3,
            epoch: 17,
            primary_node_id: 2,
            endpoint: "http://127.0.0.1:7071".into(),
        };
        let request = ItemRequest {
            method: Method::Put,
            table: "orders",
            partition_key: "a/b",
            params: sort_param(Some("x+y")),
            body: Some("{}".into()),
        };
        assert_eq!(
            item_url(&target, &request),
            "http://127.0.0.1:7071/tables/orders/items/a%2Fb?epoch=17&sort_key=x%2By"
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(1), Duration::from_millis(50));
        assert_eq!(p.backoff(2), Duration::from_millis(100));
        assert_eq!(p.backoff(5), Duration::from_millis(800));
        assert_eq!(p.backoff(6), Duration::from_secs(1));
        assert_eq!(p.backoff(1000), Duration::from_secs(1));
        let client = DataClient::new(vec![]).with_retry(RetryPolicy {
            max_attempts: 0,
            ..p
        });
        assert_eq!(client.retry.max_attempts, 1);
    }

    #[test]
    fn retryable_errors() {
        let api = |status: u16, code: &str| {
            DataClientError::from(ClientError::Api {
                status,
                code: code.into(),
                message: String::new(),
            })
        };
        assert!(api(421, WRONG_PARTITION_CODE).is_retryable());
        assert!(api(503, "PartitionUnavailable").is_retryable());
        assert!(!api(404, "TableNotFound").is_retryable());
        assert!(!api(409, "TableNotWritable").is_retryable());
        assert!(!api(413, "ValueTooLarge").is_retryable());
        assert!(!DataClientError::Invalid("x".into()).is_retryable());
        assert!(DataClientError::NoRoute { table: "t".into() }.is_retryable());
        let exhausted = DataClientError::Exhausted {
            attempts: 3,
            last: Box::new(api(503, "PartitionUnavailable")),
        };
        assert_eq!(exhausted.status(), Some(503));
        assert!(!exhausted.is_retryable());
    }

    #[test]
    fn sort_keys_are_checked_against_the_table() {
        use shared::model::AttributeType;
        let with = KeyTypes {
            partition: AttributeType::S,
            sort: Some(AttributeType::N),
        };
        let without = KeyTypes {
            partition: AttributeType::S,
            sort: None,
        };
        assert!(check_sort_key(with, "t", Some("1.5")).is_ok());
        assert!(check_sort_key(with, "t", Some("x")).is_err());
        assert!(check_sort_key(with, "t", None).is_err());
        assert!(check_sort_key(without, "t", None).is_ok());
        assert!(check_sort_key(without, "t", Some("1")).is_err());
    }

    #[test]
    fn one_client_serves_many_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<DataClient>();
    }

    #[test]
    fn no_seed_means_no_route_and_no_network() {
        let client = DataClient::new(vec![]).with_retry(RetryPolicy {
            max_attempts: 2,
            backoff_base: Duration::ZERO,
            backoff_max: Duration::ZERO,
        });
        assert!(client.route("t", b"k").is_none());
        let e = client.get("t", "k", None).unwrap_err();
        assert!(matches!(e, DataClientError::Invalid(_)), "{e}");
    }
}
