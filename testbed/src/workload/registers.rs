//! Register clients: each worker reads and writes single-item registers of one table,
//! recording invoke and completion of every operation.
//!
//! - Register keys `r<n>` are read and written by every worker (the linearizability
//!   check).
//! - A share of writes go to a key of their own, `u<value>`, written once and read only at
//!   the end (the lost-write check: an acknowledged one must still be there).
//!
//! Half the workers use the routing client (`DataClient`, straight to the primary); the
//! others send plain HTTP to a random agent, which forwards (the forwarding path).

use std::sync::RwLock;
use std::time::{Duration, Instant};

use agent::api_client::encode_component;
use agent::api_client::{ApiClient, Authorization, ClientError, Method};
use agent::data_client::{DataClient, DataClientError};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use shared::api::auth::IssueCredentialRequest;
use shared::api::{ITEM_NOT_FOUND_CODE, ItemResponse};

use super::{Op, Recorder};
use crate::history::{EventType, Function};

/// Prefix of the keys every worker reads and writes.
pub const REGISTER_PREFIX: &str = "r";
/// Prefix of the write-once keys.
pub const UNIQUE_PREFIX: &str = "u";
/// The `via` of the final reads (through the routing client, after the faults).
pub const FINAL_VIA: &str = "final";
/// Share of reads, in percent, that read back an acknowledged write-once key.
const REREAD_PERCENT: u32 = 20;

/// What the register workers do.
#[derive(Debug, Clone)]
pub struct RegisterConfig {
    /// The table holding the registers.
    pub table: String,
    /// Number of register keys.
    pub keys: usize,
    /// Share of operations that read, in percent.
    pub read_percent: u32,
    /// Share of writes that go to a key of their own, in percent.
    pub unique_percent: u32,
    /// Pause between one worker's operations.
    pub think: Duration,
}

/// How a worker reaches the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The routing client.
    Client,
    /// HTTP to a random agent.
    Http,
}

impl Via {
    /// The name in the history's `via` field.
    pub fn name(self) -> &'static str {
        match self {
            Via::Client => "client",
            Via::Http => "http",
        }
    }
}

/// Everything a worker shares with the others.
pub struct Cluster {
    /// Host indices whose agents serve clients (grows when a host joins).
    members: RwLock<Vec<u16>>,
    /// HTTP endpoint of a host.
    pub endpoint: fn(u16) -> String,
    /// How the routing clients authenticate (a principal: they get credentials).
    pub principal: Authorization,
    /// The credential the HTTP workers send.
    token: RwLock<String>,
}

impl Cluster {
    /// A cluster of `members`, reached at `endpoint(host)`.
    pub fn new(
        members: Vec<u16>,
        endpoint: fn(u16) -> String,
        principal: Authorization,
        token: String,
    ) -> Cluster {
        Cluster {
            members: RwLock::new(members),
            endpoint,
            principal,
            token: RwLock::new(token),
        }
    }

    /// Hosts whose agents serve clients now.
    pub fn members(&self) -> Vec<u16> {
        self.members
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Issues the HTTP workers a new credential for `table`: theirs was refused (it
    /// expired, or its signing key was rotated out).
    fn renew_token(&self, table: &str) {
        let Authorization::Principal(principal) = &self.principal else {
            return;
        };
        let request = IssueCredentialRequest {
            principal_arn: principal.principal_arn.clone(),
            ttl_seconds: None,
            actions: None,
        };
        for m in self.members() {
            let client = ApiClient::new(&(self.endpoint)(m)).with_authorization(&self.principal);
            if let Ok(issued) = client.issue_credential(table, &request) {
                *self.token.write().unwrap_or_else(|e| e.into_inner()) = issued.token;
                return;
            }
        }
    }

    /// Adds a host whose agent serves clients.
    pub fn add_member(&self, host: u16) {
        self.members
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(host);
    }

    fn token(&self) -> String {
        self.token.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The outcome of one attempt, as the history records it.
struct Outcome {
    kind: EventType,
    read: Option<i64>,
    error: Option<String>,
}

impl Outcome {
    fn ok(read: Option<i64>) -> Outcome {
        Outcome {
            kind: EventType::Ok,
            read,
            error: None,
        }
    }

    fn failed(kind: EventType, error: impl ToString) -> Outcome {
        Outcome {
            kind,
            read: None,
            error: Some(error.to_string()),
        }
    }
}

/// Runs worker `id` of `workers` until the recorder says stop. After an operation with
/// an unknown outcome the worker continues as a new process (`id + k * workers`).
pub fn run_worker(
    id: u64,
    workers: u64,
    via: Via,
    seed: u64,
    config: &RegisterConfig,
    cluster: &Cluster,
    recorder: &Recorder,
) {
    let mut rng = StdRng::seed_from_u64(seed ^ id.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut process = id;
    let endpoints: Vec<String> = cluster
        .members()
        .iter()
        .map(|i| (cluster.endpoint)(*i))
        .collect();
    let data = DataClient::new(endpoints).with_authorization(cluster.principal.clone());
    while !recorder.stopping() {
        let started = Instant::now();
        let outcome = one_operation(&mut rng, process, via, config, cluster, &data, recorder);
        if outcome == EventType::Info {
            process += workers;
        }
        let rest = config.think.saturating_sub(started.elapsed());
        std::thread::sleep(rest.max(Duration::from_millis(1)));
    }
}

/// Picks, runs and records one operation; returns its completion type.
fn one_operation(
    rng: &mut StdRng,
    process: u64,
    via: Via,
    config: &RegisterConfig,
    cluster: &Cluster,
    data: &DataClient,
    recorder: &Recorder,
) -> EventType {
    let read = rng.random_range(0..100) < config.read_percent;
    let (f, key, value) = if read {
        // Now and then an old write-once key: a loss shows when it happens, not only
        // in the final reads.
        let old = (rng.random_range(0..100) < REREAD_PERCENT)
            .then(|| recorder.acknowledged_unique(rng))
            .flatten();
        let key =
            old.unwrap_or_else(|| format!("{REGISTER_PREFIX}{}", rng.random_range(0..config.keys)));
        (Function::Read, key, None)
    } else {
        let value = recorder.unique_value();
        let key = if rng.random_range(0..100) < config.unique_percent {
            format!("{UNIQUE_PREFIX}{value}")
        } else {
            format!("{REGISTER_PREFIX}{}", rng.random_range(0..config.keys))
        };
        (Function::Write, key, Some(value))
    };
    let node = match via {
        Via::Client => None,
        Via::Http => {
            let members = cluster.members();
            Some(members[rng.random_range(0..members.len())])
        }
    };
    let op = Op::invoke(recorder, process, f, &key, value, node, via.name());
    let outcome = match node {
        None => through_client(data, &config.table, f, &key, value),
        Some(node) => through_http(cluster, node, &config.table, f, &key, value),
    };
    let kind = outcome.kind;
    op.complete(outcome.kind, outcome.read, outcome.error);
    if kind == EventType::Ok && f == Function::Write && key.starts_with(UNIQUE_PREFIX) {
        recorder.note_unique(key);
    }
    kind
}

/// Reads `key` once through the routing client, outside any worker (the final reads).
pub fn final_read(
    data: &DataClient,
    table: &str,
    process: u64,
    key: &str,
    recorder: &Recorder,
) -> EventType {
    let op = Op::invoke(
        recorder,
        process,
        Function::Read,
        key,
        None,
        None,
        FINAL_VIA,
    );
    let outcome = through_client(data, table, Function::Read, key, None);
    let kind = outcome.kind;
    op.complete(outcome.kind, outcome.read, outcome.error);
    kind
}

/// The JSON value a write stores.
fn item_value(value: i64) -> serde_json::Value {
    serde_json::json!({ "v": value })
}

/// The register value in a stored item.
fn register_value(item: &serde_json::Value) -> Result<i64, String> {
    item.get("v")
        .and_then(serde_json::Value::as_i64)
        .ok_or_else(|| format!("not a register value: {item}"))
}

fn through_client(
    data: &DataClient,
    table: &str,
    f: Function,
    key: &str,
    value: Option<i64>,
) -> Outcome {
    match (f, value) {
        (Function::Write, Some(v)) => match data.put(table, key, None, &item_value(v)) {
            Ok(_) => Outcome::ok(None),
            Err(e) => Outcome::failed(client_error_kind(&e), e),
        },
        _ => match data.get(table, key, None) {
            Ok(None) => Outcome::ok(None),
            Ok(Some(item)) => match register_value(&item) {
                Ok(v) => Outcome::ok(Some(v)),
                Err(e) => Outcome::failed(EventType::Fail, e),
            },
            Err(e) => Outcome::failed(EventType::Fail, e),
        },
    }
}

/// How a routing client's error leaves a write: certainly not applied only when the
/// agent refused it (a 4xx, or a 503, which the primary answers before writing) or the
/// client never sent it; anything else may have applied (the testbed does not trust
/// what it checks, so a 5xx is unknown too).
fn client_error_kind(e: &DataClientError) -> EventType {
    match e {
        DataClientError::Call(ClientError::Api { status, .. })
            if *status < 500 || *status == 503 =>
        {
            EventType::Fail
        }
        DataClientError::Invalid(_) | DataClientError::NoRoute { .. } => EventType::Fail,
        _ => EventType::Info,
    }
}

fn through_http(
    cluster: &Cluster,
    node: u16,
    table: &str,
    f: Function,
    key: &str,
    value: Option<i64>,
) -> Outcome {
    let client = ApiClient::new(&(cluster.endpoint)(node))
        .with_authorization(&Authorization::Token(cluster.token()));
    let path = format!(
        "/tables/{}/items/{}",
        encode_component(table),
        encode_component(key)
    );
    let write = f == Function::Write;
    let result = match value.filter(|_| write) {
        Some(v) => client.raw(Method::Put, &path, Some(&item_value(v).to_string())),
        None => client.raw(Method::Get, &path, None),
    };
    if matches!(result, Ok((401, _))) {
        cluster.renew_token(table);
    }
    match result {
        Err(e) if write => Outcome::failed(EventType::Info, e),
        Err(e) => Outcome::failed(EventType::Fail, e),
        Ok((status, body)) => http_outcome(write, status, &body),
    }
}

/// Reads an HTTP answer as the API documents it: a 503 or any 4xx means the write was
/// refused before it applied (trusted, so the checker tests that promise); another 5xx
/// (504 `OutcomeUnknown`) leaves it unknown.
fn http_outcome(write: bool, status: u16, body: &str) -> Outcome {
    let error = || format!("{status}: {}", body.chars().take(200).collect::<String>());
    match status {
        200..=299 if write => Outcome::ok(None),
        200..=299 => match serde_json::from_str::<ItemResponse>(body)
            .map_err(|e| e.to_string())
            .and_then(|item| {
                serde_json::from_str(item.value.get()).map_err(|e: serde_json::Error| e.to_string())
            })
            .and_then(|v| register_value(&v))
        {
            Ok(v) => Outcome::ok(Some(v)),
            Err(e) => Outcome::failed(EventType::Fail, e),
        },
        404 if !write && body.contains(ITEM_NOT_FOUND_CODE) => Outcome::ok(None),
        500..=599 if write && status != 503 => Outcome::failed(EventType::Info, error()),
        _ => Outcome::failed(EventType::Fail, error()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_answers_map_to_history_types() {
        let item = r#"{"partition_key":"r1","sort_key":null,"value":{"v":7}}"#;
        assert_eq!(http_outcome(false, 200, item).read, Some(7));
        assert_eq!(http_outcome(false, 200, item).kind, EventType::Ok);
        let missing = r#"{"error":{"code":"ItemNotFound","message":"no item"}}"#;
        let r = http_outcome(false, 404, missing);
        assert_eq!((r.kind, r.read), (EventType::Ok, None));
        let no_table = r#"{"error":{"code":"TableNotFound","message":"no table"}}"#;
        assert_eq!(http_outcome(false, 404, no_table).kind, EventType::Fail);
        assert_eq!(http_outcome(true, 200, "{}").kind, EventType::Ok);
        assert_eq!(http_outcome(true, 503, "").kind, EventType::Fail);
        assert_eq!(http_outcome(true, 500, "").kind, EventType::Info);
        assert_eq!(http_outcome(true, 504, "").kind, EventType::Info);
        assert_eq!(http_outcome(true, 421, "").kind, EventType::Fail);
        assert_eq!(http_outcome(false, 503, "").kind, EventType::Fail);
        assert_eq!(
            http_outcome(false, 200, r#"{"v":"x"}"#).kind,
            EventType::Fail
        );
    }

    #[test]
    fn only_unknown_client_errors_are_info() {
        let exhausted = DataClientError::Exhausted {
            attempts: 3,
            last: Box::new(DataClientError::NoRoute { table: "t".into() }),
        };
        assert_eq!(client_error_kind(&exhausted), EventType::Info);
        let unanswered = DataClientError::OutcomeUnknown("timed out".into());
        assert_eq!(client_error_kind(&unanswered), EventType::Info);
        let refused = DataClientError::Call(ClientError::Api {
            status: 403,
            code: "Forbidden".into(),
            message: String::new(),
        });
        assert_eq!(client_error_kind(&refused), EventType::Fail);
        assert_eq!(
            client_error_kind(&DataClientError::Invalid("bad".into())),
            EventType::Fail
        );
        let internal = DataClientError::Call(ClientError::Api {
            status: 500,
            code: "Internal".into(),
            message: String::new(),
        });
        assert_eq!(client_error_kind(&internal), EventType::Info);
    }
}
