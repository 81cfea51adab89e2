//! A blocking client of the control-plane HTTP API of one agent (tables, cluster,
//! nodes, access, operations): what `agentctl` and the tests use. Items have their own
//! client, `data_client`, which routes each call straight to its partition's primary.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use shared::api::auth::{
    AuditResponse, CreatePrincipalRequest, CreatePrincipalResponse, IssueCredentialRequest,
    IssueCredentialResponse, ListKeysResponse, ListPoliciesResponse, ListPrincipalsResponse,
    PutPolicyRequest, PutPolicyResponse, RevokeCredentialRequest, RevokeCredentialResponse,
    RotateKeyResponse,
};
use shared::api::operations::{
    ListOperationsResponse, MergePartitionRequest, MovePartitionRequest, OperationDescription,
    SplitPartitionRequest,
};
use shared::api::{
    CapacityRequest, ClusterResponse, CreateTableRequest, CreateTableResponse, DrainNodeResponse,
    ErrorBody, ListTablesResponse, MetadataReplicaResponse, NodesResponse, PartitionsResponse,
    SchemaRequest, SchemaResponse, TableDescription, UpdateCapacityResponse,
};

use crate::auth::admin::PrincipalCredentials;
use crate::auth::authn::basic_header;

/// Timeout of one HTTP request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// The largest metadata backup the client reads (10,000 partitions take a few MB).
pub const MAX_SNAPSHOT_BYTES: u64 = 1 << 30;

/// The error of a non-2xx answer: its JSON error body, or the text if it has none.
fn api_error(status: u16, text: &str) -> ClientError {
    match serde_json::from_str::<ErrorBody>(text) {
        Ok(body) => ClientError::Api {
            status,
            code: body.error.code,
            message: body.error.message,
        },
        Err(_) => ClientError::Decode(format!("status {status}: {text}")),
    }
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error status and a JSON error body.
    #[error("{code} ({status}): {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Error code.
        code: String,
        /// Message.
        message: String,
    },
    /// The server could not be reached.
    #[error("cannot reach {endpoint}: {reason}")]
    Transport {
        /// Endpoint.
        endpoint: String,
        /// Cause.
        reason: String,
    },
    /// The server's answer was not what the API promises.
    #[error("unexpected response: {0}")]
    Decode(String),
}

impl ClientError {
    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// How a client authenticates.
#[derive(Clone, Debug)]
pub enum Authorization {
    /// A principal and its secret (HTTP Basic): the control plane, and issuing
    /// credentials.
    Principal(PrincipalCredentials),
    /// A credential (`Bearer` token): item requests of one table.
    Token(String),
}

impl Authorization {
    /// The `Authorization` header value.
    pub fn header_value(&self) -> String {
        match self {
            Authorization::Principal(c) => basic_header(&c.principal_arn, &c.secret),
            Authorization::Token(token) => format!("Bearer {token}"),
        }
    }
}

/// A client of one agent's HTTP API.
#[derive(Clone)]
pub struct ApiClient {
    endpoint: String,
    agent: ureq::Agent,
    authorization: Option<String>,
}

/// HTTP methods the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET.
    Get,
    /// POST.
    Post,
    /// PUT.
    Put,
    /// DELETE.
    Delete,
}

impl ApiClient {
    /// A client of the agent at `endpoint` (e.g. `http://127.0.0.1:7070`).
    pub fn new(endpoint: &str) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(REQUEST_TIMEOUT))
            .build()
            .into();
        ApiClient {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            agent,
            authorization: None,
        }
    }

    /// The same client, sending `authorization` with every request.
    pub fn with_authorization(mut self, authorization: &Authorization) -> Self {
        self.authorization = Some(authorization.header_value());
        self
    }

    /// The same client, authenticating as a principal.
    pub fn with_principal(self, credentials: &PrincipalCredentials) -> Self {
        self.with_authorization(&Authorization::Principal(credentials.clone()))
    }

    /// The endpoint this client talks to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Sends a raw request and returns the status and body text.
    pub fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<&str>,
    ) -> Result<(u16, String), ClientError> {
        let url = format!("{}{}", self.endpoint, path);
        let auth = self.authorization.as_deref();
        let result = match (method, body) {
            (Method::Get, _) => with_auth(self.agent.get(&url), auth).call(),
            (Method::Delete, _) => with_auth(self.agent.delete(&url), auth).call(),
            (Method::Post, b) => with_auth(self.agent.post(&url), auth)
                .content_type("application/json")
                .send(b.unwrap_or("")),
            (Method::Put, b) => with_auth(self.agent.put(&url), auth)
                .content_type("application/json")
                .send(b.unwrap_or("")),
        };
        let mut response = result.map_err(|e| ClientError::Transport {
            endpoint: self.endpoint.clone(),
            reason: e.to_string(),
        })?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        Ok((status, text))
    }

    fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, ClientError> {
        let json = body
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        let (status, text) = self.raw(method, path, json.as_deref())?;
        if (200..300).contains(&status) {
            return serde_json::from_str(&text)
                .map_err(|e| ClientError::Decode(format!("{e}: {text}")));
        }
        Err(api_error(status, &text))
    }

    /// `GET /cluster/snapshot`: a backup file of the metadata (cluster admins).
    pub fn snapshot(&self) -> Result<Vec<u8>, ClientError> {
        let url = format!("{}/cluster/snapshot", self.endpoint);
        let transport = |e: ureq::Error| ClientError::Transport {
            endpoint: self.endpoint.clone(),
            reason: e.to_string(),
        };
        let mut response = with_auth(self.agent.get(&url), self.authorization.as_deref())
            .call()
            .map_err(transport)?;
        let status = response.status().as_u16();
        let body = response.body_mut();
        if !(200..300).contains(&status) {
            let text = body.read_to_string().map_err(transport)?;
            return Err(api_error(status, &text));
        }
        body.with_config()
            .limit(MAX_SNAPSHOT_BYTES)
            .read_to_vec()
            .map_err(transport)
    }

    /// `POST /tables`.
    pub fn create_table(
        &self,
        request: &CreateTableRequest,
    ) -> Result<CreateTableResponse, ClientError> {
        self.call(Method::Post, "/tables", Some(request))
    }

    /// `GET /tables/{name}`.
    pub fn get_table(&self, name: &str) -> Result<TableDescription, ClientError> {
        self.call(Method::Get, &format!("/tables/{name}"), None::<&()>)
    }

    /// `GET /tables`.
    pub fn list_tables(&self) -> Result<ListTablesResponse, ClientError> {
        self.call(Method::Get, "/tables", None::<&()>)
    }

    /// `DELETE /tables/{name}`.
    pub fn delete_table(&self, name: &str) -> Result<TableDescription, ClientError> {
        self.call(Method::Delete, &format!("/tables/{name}"), None::<&()>)
    }

    /// `PUT /tables/{name}/capacity`.
    pub fn update_capacity(
        &self,
        name: &str,
        capacity: &CapacityRequest,
    ) -> Result<UpdateCapacityResponse, ClientError> {
        self.call(
            Method::Put,
            &format!("/tables/{name}/capacity"),
            Some(capacity),
        )
    }

    /// `PUT /tables/{name}/schema`.
    pub fn put_schema(
        &self,
        name: &str,
        schema: &SchemaRequest,
    ) -> Result<SchemaResponse, ClientError> {
        self.call(Method::Put, &format!("/tables/{name}/schema"), Some(schema))
    }

    /// `GET /tables/{name}/schema[?version=N]`.
    pub fn get_schema(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> Result<SchemaResponse, ClientError> {
        let query = version.map(|v| format!("?version={v}")).unwrap_or_default();
        self.call(
            Method::Get,
            &format!("/tables/{name}/schema{query}"),
            None::<&()>,
        )
    }

    /// `GET /tables/{name}/partitions`.
    pub fn partitions(&self, name: &str) -> Result<PartitionsResponse, ClientError> {
        self.call(
            Method::Get,
            &format!("/tables/{name}/partitions"),
            None::<&()>,
        )
    }

    /// `GET /cluster`.
    pub fn cluster(&self) -> Result<ClusterResponse, ClientError> {
        self.call(Method::Get, "/cluster", None::<&()>)
    }

    /// `GET /cluster/metadata`: the agent's own replica of the metadata (cluster admins).
    pub fn metadata_replica(&self) -> Result<MetadataReplicaResponse, ClientError> {
        self.call(Method::Get, "/cluster/metadata", None::<&()>)
    }

    /// `GET /clusters/{id}/nodes`.
    pub fn nodes(&self, cluster_id: &str) -> Result<NodesResponse, ClientError> {
        self.call(
            Method::Get,
            &format!("/clusters/{cluster_id}/nodes"),
            None::<&()>,
        )
    }

    /// `POST /clusters/{id}/nodes/{node}/drain`.
    pub fn drain_node(
        &self,
        cluster_id: &str,
        node_id: u64,
    ) -> Result<DrainNodeResponse, ClientError> {
        self.node_call(Method::Post, cluster_id, node_id, "/drain")
    }

    /// `DELETE /clusters/{id}/nodes/{node}/drain`: cancels a drain or removal.
    pub fn cancel_drain(
        &self,
        cluster_id: &str,
        node_id: u64,
    ) -> Result<DrainNodeResponse, ClientError> {
        self.node_call(Method::Delete, cluster_id, node_id, "/drain")
    }

    /// `DELETE /clusters/{id}/nodes/{node}`: drain, then decommission.
    pub fn remove_node(
        &self,
        cluster_id: &str,
        node_id: u64,
    ) -> Result<DrainNodeResponse, ClientError> {
        self.node_call(Method::Delete, cluster_id, node_id, "")
    }

    /// A call on `/clusters/{id}/nodes/{node}{suffix}` without a body.
    fn node_call(
        &self,
        method: Method,
        cluster_id: &str,
        node_id: u64,
        suffix: &str,
    ) -> Result<DrainNodeResponse, ClientError> {
        let path = format!("/clusters/{cluster_id}/nodes/{node_id}{suffix}");
        self.call(method, &path, None::<&()>)
    }

    /// `POST /principals`.
    pub fn create_principal(
        &self,
        name: &str,
        admin: bool,
    ) -> Result<CreatePrincipalResponse, ClientError> {
        let request = CreatePrincipalRequest {
            name: name.to_string(),
            admin,
        };
        self.call(Method::Post, "/principals", Some(&request))
    }

    /// `GET /principals`.
    pub fn list_principals(&self) -> Result<ListPrincipalsResponse, ClientError> {
        self.call(Method::Get, "/principals", None::<&()>)
    }

    /// `DELETE /principals/{arn}`.
    pub fn delete_principal(&self, arn: &str) -> Result<serde_json::Value, ClientError> {
        let path = format!("/principals/{}", encode_component(arn));
        self.call(Method::Delete, &path, None::<&()>)
    }

    /// `PUT /tables/{name}/access-policies/{principal_arn}`.
    pub fn put_policy(
        &self,
        table: &str,
        principal_arn: &str,
        request: &PutPolicyRequest,
    ) -> Result<PutPolicyResponse, ClientError> {
        let path = policy_path(table, principal_arn);
        self.call(Method::Put, &path, Some(request))
    }

    /// `GET /tables/{name}/access-policies`.
    pub fn list_policies(&self, table: &str) -> Result<ListPoliciesResponse, ClientError> {
        let path = format!("/tables/{}/access-policies", encode_component(table));
        self.call(Method::Get, &path, None::<&()>)
    }

    /// `DELETE /tables/{name}/access-policies/{principal_arn}`.
    pub fn delete_policy(
        &self,
        table: &str,
        principal_arn: &str,
    ) -> Result<serde_json::Value, ClientError> {
        let path = policy_path(table, principal_arn);
        self.call(Method::Delete, &path, None::<&()>)
    }

    /// `POST /tables/{name}/credentials`.
    pub fn issue_credential(
        &self,
        table: &str,
        request: &IssueCredentialRequest,
    ) -> Result<IssueCredentialResponse, ClientError> {
        let path = format!("/tables/{}/credentials", encode_component(table));
        self.call(Method::Post, &path, Some(request))
    }

    /// `POST /credentials/revoke`.
    pub fn revoke_credential(
        &self,
        request: &RevokeCredentialRequest,
    ) -> Result<RevokeCredentialResponse, ClientError> {
        self.call(Method::Post, "/credentials/revoke", Some(request))
    }

    /// `GET /keys`.
    pub fn list_keys(&self) -> Result<ListKeysResponse, ClientError> {
        self.call(Method::Get, "/keys", None::<&()>)
    }

    /// `POST /keys/rotate`.
    pub fn rotate_key(&self) -> Result<RotateKeyResponse, ClientError> {
        self.call(Method::Post, "/keys/rotate", None::<&()>)
    }

    /// `GET /audit[?since=]`.
    pub fn audit(&self, since: Option<&str>) -> Result<AuditResponse, ClientError> {
        let query = since
            .map(|s| format!("?since={}", encode_component(s)))
            .unwrap_or_default();
        self.call(Method::Get, &format!("/audit{query}"), None::<&()>)
    }

    /// `POST /partitions/{id}/split`.
    pub fn split_partition(
        &self,
        partition_id: u64,
        split_point: Option<u64>,
    ) -> Result<OperationDescription, ClientError> {
        let request = SplitPartitionRequest { split_point };
        let path = format!("/partitions/{partition_id}/split");
        self.call(Method::Post, &path, Some(&request))
    }

    /// `POST /partitions/{id}/merge`.
    pub fn merge_partition(
        &self,
        partition_id: u64,
        request: &MergePartitionRequest,
    ) -> Result<OperationDescription, ClientError> {
        let path = format!("/partitions/{partition_id}/merge");
        self.call(Method::Post, &path, Some(request))
    }

    /// `POST /partitions/{id}/move`.
    pub fn move_partition(
        &self,
        partition_id: u64,
        request: &MovePartitionRequest,
    ) -> Result<OperationDescription, ClientError> {
        let path = format!("/partitions/{partition_id}/move");
        self.call(Method::Post, &path, Some(request))
    }

    /// `GET /operations[?running=true]`.
    pub fn operations(&self, running_only: bool) -> Result<ListOperationsResponse, ClientError> {
        let path = if running_only {
            "/operations?running=true"
        } else {
            "/operations"
        };
        self.call(Method::Get, path, None::<&()>)
    }

    /// `GET /operations/{id}`.
    pub fn operation(&self, id: u64) -> Result<OperationDescription, ClientError> {
        self.call(Method::Get, &format!("/operations/{id}"), None::<&()>)
    }

    /// Whether `GET /healthz` answers 200.
    pub fn healthy(&self) -> bool {
        matches!(self.raw(Method::Get, "/healthz", None), Ok((200, _)))
    }
}

fn policy_path(table: &str, principal_arn: &str) -> String {
    format!(
        "/tables/{}/access-policies/{}",
        encode_component(table),
        encode_component(principal_arn)
    )
}

/// `request` with an `Authorization` header, if one is given.
pub(crate) fn with_auth<B>(
    request: ureq::RequestBuilder<B>,
    authorization: Option<&str>,
) -> ureq::RequestBuilder<B> {
    match authorization {
        Some(value) => request.header("authorization", value),
        None => request,
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters, so the text is one
/// path segment or one query value whatever it contains (`/`, `?`, `+`, `%`, spaces...).
pub fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
