//! JSON bodies of the access-control endpoints: principals, access policies,
//! credentials, signing keys and the audit log.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::auth::{Action, Effect};
use crate::model::NodeId;

/// HTTP header carrying a principal's secret (`Basic`) or a credential (`Bearer`).
pub const AUTHORIZATION_HEADER: &str = "authorization";

/// Error code of a 401: no credential, or one that does not authenticate.
pub const UNAUTHENTICATED_CODE: &str = "Unauthenticated";

/// Error code of a 403: authenticated, but not allowed.
pub const ACCESS_DENIED_CODE: &str = "AccessDenied";

/// `POST /principals` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreatePrincipalRequest {
    /// Name, unique in the cluster (`[A-Za-z0-9_.-]`, 1 to 64 characters).
    pub name: String,
    /// Whether the principal is a cluster administrator.
    #[serde(default)]
    pub admin: bool,
}

/// `POST /principals` response: the only time the secret is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatePrincipalResponse {
    /// `arn:<cluster>:principal/<name>`.
    pub principal_arn: String,
    /// Whether it is a cluster administrator.
    pub admin: bool,
    /// The secret; only a salted hash is kept, so it cannot be shown again.
    pub secret: String,
}

/// One principal of `GET /principals` (never its secret or hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrincipalDescription {
    /// ARN.
    pub principal_arn: String,
    /// Name.
    pub name: String,
    /// Whether it is a cluster administrator.
    pub admin: bool,
    /// Creation time, RFC 3339.
    pub created_at: String,
}

/// `GET /principals` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListPrincipalsResponse {
    /// Principals ordered by ARN.
    pub principals: Vec<PrincipalDescription>,
}

/// `PUT /tables/{name}/access-policies/{principal_arn}` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutPolicyRequest {
    /// Actions covered (`read`, `write`, `admin`).
    pub actions: BTreeSet<Action>,
    /// `allow` or `deny`.
    pub effect: Effect,
}

/// `PUT /tables/{name}/access-policies/{principal_arn}` response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutPolicyResponse {
    /// Version of the policy now stored (1 for a new one, +1 on each change).
    pub policy_version: u64,
}

/// One access policy of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDescription {
    /// Principal ARN.
    pub principal_arn: String,
    /// Table name.
    pub table_name: String,
    /// Actions covered.
    pub actions: BTreeSet<Action>,
    /// Allow or deny.
    pub effect: Effect,
    /// Version.
    pub policy_version: u64,
}

/// `GET /tables/{name}/access-policies` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListPoliciesResponse {
    /// Policies ordered by principal ARN.
    pub policies: Vec<PolicyDescription>,
}

/// `POST /tables/{name}/credentials` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueCredentialRequest {
    /// The principal the credential is for (the caller, unless a cluster admin).
    pub principal_arn: String,
    /// Lifetime in seconds (default and bounds from the agents' `[auth]` config).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    /// Actions asked for (default: all); the token carries those the policies allow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions: Option<BTreeSet<Action>>,
}

/// `POST /tables/{name}/credentials` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueCredentialResponse {
    /// The signed token (a JWT): send it as `Authorization: Bearer <token>`.
    pub token: String,
    /// Expiry, RFC 3339.
    pub expires_at: String,
    /// Expiry, Unix seconds (the token's `exp`).
    pub expires_at_unix: u64,
    /// The token id, the handle for revocation.
    pub jti: String,
    /// Actions granted.
    pub actions: BTreeSet<Action>,
    /// Id of the key that signed it.
    pub kid: String,
}

/// `POST /credentials/revoke` body: the token itself, or only its id (`jti`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeCredentialRequest {
    /// Token id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// The token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// `POST /credentials/revoke` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeCredentialResponse {
    /// The revoked token id.
    pub jti: String,
    /// Until when the revocation is remembered (RFC 3339): the token expires by then.
    pub remembered_until: String,
}

/// One published signing key (`GET /keys`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKeyDescription {
    /// Key id (the `kid` of the tokens it signs).
    pub kid: String,
    /// The voter holding the private half.
    pub node_id: NodeId,
    /// Publication time, RFC 3339.
    pub created_at: String,
    /// Whether it still signs (not retired).
    pub active: bool,
    /// Retirement time, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<String>,
    /// A retired key verifies tokens until then (RFC 3339), then is dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_until: Option<String>,
}

/// `GET /keys` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListKeysResponse {
    /// Keys ordered by id.
    pub keys: Vec<SigningKeyDescription>,
}

/// `POST /keys/rotate` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotateKeyResponse {
    /// The new signing key.
    pub kid: String,
    /// The key it replaced (now retired, still trusted for its grace period); `null`
    /// when the old key was never published. Always serialized: this answer also
    /// travels between agents in postcard, which cannot skip a field (a skipped `None`
    /// made a forwarded rotation undecodable).
    #[serde(default)]
    pub retired_kid: Option<String>,
}

/// One audited control-plane mutation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Sequence number on the recording agent (grows by one per entry).
    pub seq: u64,
    /// When the request finished, Unix milliseconds.
    pub at_ms: u64,
    /// When the request finished, RFC 3339.
    pub at: String,
    /// The authenticated principal ARN, or `anonymous`.
    pub principal: String,
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// HTTP status of the answer.
    pub status: u16,
    /// The agent that served (and recorded) it.
    pub node_id: NodeId,
}

/// `GET /audit?since=` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditResponse {
    /// Entries at or after `since`, oldest first.
    pub entries: Vec<AuditEntry>,
}
