//! Access control at the HTTP edge: who is calling (principal secrets on the control
//! plane, credentials on items), what they may do, and the endpoints managing
//! principals, access policies, credentials, signing keys and the audit log.

use axum::Json;
use axum::RequestExt;
use axum::extract::{Extension, MatchedPath, Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::rngs::StdRng;
use serde::Deserialize;
use shared::api::auth::{
    AuditResponse, CreatePrincipalRequest, CreatePrincipalResponse, IssueCredentialRequest,
    IssueCredentialResponse, ListKeysResponse, ListPoliciesResponse, ListPrincipalsResponse,
    PolicyDescription, PrincipalDescription, PutPolicyRequest, PutPolicyResponse,
    RevokeCredentialRequest, RevokeCredentialResponse, RotateKeyResponse, SigningKeyDescription,
};
use shared::api::format_millis;
use shared::auth::secret::{new_salt, validate_principal_name};
use shared::auth::{Action, Claims, TokenError, hash_secret, new_secret, principal_arn, verify};
use shared::command::{MetaCommand, MetaOutcome};
use shared::state::MetaState;
use shared::validate::validate_table_name;

use crate::auth::audit::ANONYMOUS;
use crate::auth::authn::{AuthnError, Caller, Presented, authenticate, parse_authorization};
use crate::auth::verifier::{CheckPath, CredentialRefused};
use crate::http::error::{ApiError, ApiResult};
use crate::http::{AppState, JsonBody, QueryParams};
use crate::meta::rpc::IssueRequest;
use crate::metrics::TokenCheckLabels;

/// Most audit entries one `GET /audit` returns.
pub const MAX_AUDIT_ENTRIES_PER_CALL: usize = 1000;

/// Middleware of every control-plane route: authenticates the principal (401 if it
/// cannot), hands it to the handler as an `Extension<Caller>`, and records every
/// mutation (any method but GET and HEAD) in the audit log with its result.
pub async fn authenticate_principal(
    State(app): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let caller = caller_of(&app, &mut request).await;
    let principal = caller
        .as_ref()
        .map_or(ANONYMOUS.to_string(), |c| c.arn.clone());
    let response = match caller {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(e) => e.into_response(),
    };
    if method != Method::GET && method != Method::HEAD {
        let status = response.status().as_u16();
        app.audit
            .record((app.clock)(), &principal, method.as_str(), &path, status);
    }
    response
}

/// Routes a credential may read besides items: what a client needs to route its
/// table's requests (the table, its schema and partitions, the nodes' endpoints).
const ROUTING_READS: [&str; 5] = [
    "/tables/{name}",
    "/tables/{name}/schema",
    "/tables/{name}/partitions",
    "/cluster",
    "/clusters/{cluster_id}/nodes",
];

async fn caller_of(app: &AppState, request: &mut Request) -> Result<Caller, ApiError> {
    let (user, secret) = match presented(request.headers()) {
        Ok(Presented::Secret { principal, secret }) => (principal, secret),
        Ok(Presented::Bearer(token)) => {
            let token = token.to_string();
            return routing_reader(app, request, &token).await;
        }
        Err(e) => return Err(ApiError::unauthenticated(e.to_string())),
    };
    authenticate_secret(app, &user, &secret)
        .await
        .map_err(|e| ApiError::unauthenticated(e.to_string()))
}

/// The caller of a routing read made with a credential: its principal, never an admin.
async fn routing_reader(
    app: &AppState,
    request: &mut Request,
    token: &str,
) -> Result<Caller, ApiError> {
    let matched = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let routing = request.method() == Method::GET
        && matched.is_some_and(|m| ROUTING_READS.contains(&m.as_str()));
    if !routing {
        return Err(ApiError::unauthenticated(
            AuthnError::TokenNotAccepted.to_string(),
        ));
    }
    let table = request
        .extract_parts::<Path<std::collections::HashMap<String, String>>>()
        .await
        .ok()
        .and_then(|Path(params)| params.get("name").cloned());
    let checked = app
        .verifier
        .check_any_action(token, table.as_deref(), (app.clock)());
    match checked {
        Ok((claims, _)) => Ok(Caller {
            arn: claims.sub,
            admin: false,
            via_credential: true,
        }),
        Err(CredentialRefused::Unauthenticated(m) | CredentialRefused::UnknownKey(m)) => {
            Err(ApiError::unauthenticated(m))
        }
        Err(CredentialRefused::Forbidden(m)) => Err(ApiError::forbidden(m)),
    }
}

async fn authenticate_secret(
    app: &AppState,
    user: &str,
    secret: &str,
) -> Result<Caller, AuthnError> {
    let (user, secret) = (user.to_string(), secret.to_string());
    if let Some(result) = app.state.read(|s| authenticate(&user, &secret, s)) {
        return result;
    }
    // Not known here: perhaps created a moment ago and not yet applied locally.
    if app.meta.linearizable_barrier().await.is_ok()
        && let Some(result) = app.state.read(|s| authenticate(&user, &secret, s))
    {
        return result;
    }
    Err(AuthnError::BadSecret)
}

fn presented(headers: &HeaderMap) -> Result<Presented<'_>, AuthnError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(AuthnError::Missing)?
        .to_str()
        .map_err(|_| AuthnError::Malformed("the header is not visible ASCII"))?;
    parse_authorization(value)
}

/// Checks the request's credential (`Authorization: Bearer`) for `action` on `table`,
/// locally: 401 if it does not verify, 403 if it does not allow the request.
pub async fn check_credential(
    app: &AppState,
    headers: &HeaderMap,
    table: &str,
    action: Action,
) -> ApiResult<Claims> {
    let result = match presented(headers) {
        Ok(Presented::Bearer(token)) => {
            let first = app.verifier.check(token, table, action, (app.clock)());
            match first {
                // A key published a moment ago may not be applied here yet.
                Err(CredentialRefused::UnknownKey(m)) => {
                    match app.meta.linearizable_barrier().await {
                        Ok(()) => app.verifier.check(token, table, action, (app.clock)()),
                        Err(_) => Err(CredentialRefused::UnknownKey(m)),
                    }
                }
                other => other,
            }
        }
        Ok(Presented::Secret { .. }) => Err(CredentialRefused::Unauthenticated(
            AuthnError::SecretNotAccepted.to_string(),
        )),
        Err(AuthnError::Missing) => Err(CredentialRefused::Unauthenticated(
            AuthnError::SecretNotAccepted.to_string(),
        )),
        Err(e) => Err(CredentialRefused::Unauthenticated(e.to_string())),
    };
    let outcome = match &result {
        Ok((_, CheckPath::Cached)) => "cached",
        Ok((_, CheckPath::Verified)) => "verified",
        Err(_) => "refused",
    };
    app.meta
        .metrics()
        .token_checks
        .get_or_create(&TokenCheckLabels { outcome })
        .inc();
    match result {
        Ok((claims, _)) => Ok(claims),
        Err(CredentialRefused::Unauthenticated(m) | CredentialRefused::UnknownKey(m)) => {
            Err(ApiError::unauthenticated(m))
        }
        Err(CredentialRefused::Forbidden(m)) => Err(ApiError::forbidden(m)),
    }
}

/// 403 unless the caller is a cluster admin.
pub fn require_cluster_admin(caller: &Caller) -> ApiResult<()> {
    if caller.admin {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "{} is not a cluster admin",
            caller.arn
        )))
    }
}

/// Whether the caller may see table `name`: a cluster admin sees every table, anyone
/// else the tables it holds some action on.
pub fn table_visible(s: &MetaState, caller: &Caller, name: &str) -> bool {
    caller.admin || s.table_visible_to(&caller.arn, name)
}

/// 404, as for a table that does not exist, unless the caller may see table `name`.
pub fn require_table_visible(s: &MetaState, caller: &Caller, name: &str) -> ApiResult<()> {
    if table_visible(s, caller, name) {
        Ok(())
    } else {
        Err(ApiError::table_not_found(name))
    }
}

/// 403 unless the caller is a cluster admin or routes a client's requests with a
/// credential (the nodes' endpoints).
pub fn require_admin_or_credential(caller: &Caller) -> ApiResult<()> {
    if caller.via_credential {
        Ok(())
    } else {
        require_cluster_admin(caller)
    }
}

/// 403 unless the caller is a cluster admin or has `admin` on the table.
pub fn require_table_admin(app: &AppState, caller: &Caller, table: &str) -> ApiResult<()> {
    let allowed = caller.admin
        || app
            .state
            .read(|s| s.access_allowed(&caller.arn, table, Action::Admin));
    if allowed {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "{} may not administer table {table}: it needs admin on the table",
            caller.arn
        )))
    }
}

/// `POST /principals` (cluster admin): creates a principal and returns its secret once.
pub async fn create_principal(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(request): JsonBody<CreatePrincipalRequest>,
) -> ApiResult<(StatusCode, Json<CreatePrincipalResponse>)> {
    require_cluster_admin(&caller)?;
    validate_principal_name(&request.name)
        .map_err(|e| ApiError::bad_request("InvalidRequest", e.to_string()))?;
    let mut rng = rand::make_rng::<StdRng>();
    let secret = new_secret(&mut rng);
    let cmd = MetaCommand::CreatePrincipal {
        name: request.name.clone(),
        secret: hash_secret(&secret, new_salt(&mut rng)),
        admin: request.admin,
        now_ms: (app.clock)(),
    };
    app.meta.propose(cmd).await??;
    let arn = app
        .state
        .read(|s| principal_arn(s.cluster_id().unwrap_or_default(), &request.name));
    let response = CreatePrincipalResponse {
        principal_arn: arn,
        admin: request.admin,
        secret,
    };
    Ok((StatusCode::CREATED, Json(response)))
}

/// `GET /principals` (cluster admin).
pub async fn list_principals(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<ListPrincipalsResponse>> {
    require_cluster_admin(&caller)?;
    app.meta.linearizable_barrier().await?;
    let principals = app.state.read(|s| {
        s.principals()
            .map(|p| PrincipalDescription {
                principal_arn: p.arn.clone(),
                name: p.name.clone(),
                admin: p.admin,
                created_at: format_millis(p.created_at_ms),
            })
            .collect()
    });
    Ok(Json(ListPrincipalsResponse { principals }))
}

/// `DELETE /principals/{arn}` (cluster admin): the principal, its secret and its
/// policies go; its credentials stop working within metadata propagation time.
pub async fn delete_principal(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(arn): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    require_cluster_admin(&caller)?;
    app.meta
        .propose(MetaCommand::DeletePrincipal { arn: arn.clone() })
        .await??;
    Ok(Json(
        serde_json::json!({"principal_arn": arn, "deleted": true}),
    ))
}

/// `PUT /tables/{name}/access-policies/{principal_arn}` (table admin).
pub async fn put_policy(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((table, arn)): Path<(String, String)>,
    JsonBody(request): JsonBody<PutPolicyRequest>,
) -> ApiResult<Json<PutPolicyResponse>> {
    validate_table_name(&table)?;
    require_table_admin(&app, &caller, &table)?;
    let cmd = MetaCommand::PutPolicy {
        table_name: table,
        principal_arn: arn,
        actions: request.actions,
        effect: request.effect,
    };
    match app.meta.propose(cmd).await?? {
        MetaOutcome::PolicyVersion { version } => Ok(Json(PutPolicyResponse {
            policy_version: version,
        })),
        other => Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
    }
}

/// `GET /tables/{name}/access-policies` (table admin).
pub async fn list_policies(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(table): Path<String>,
) -> ApiResult<Json<ListPoliciesResponse>> {
    validate_table_name(&table)?;
    require_table_admin(&app, &caller, &table)?;
    app.meta.linearizable_barrier().await?;
    let policies = app.state.read(|s| {
        let t = s
            .table_by_name(&table)
            .ok_or_else(|| ApiError::table_not_found(&table))?;
        Ok::<_, ApiError>(
            s.policies_of_table(t.table_id)
                .map(|p| PolicyDescription {
                    principal_arn: p.principal.clone(),
                    table_name: p.table.clone(),
                    actions: p.actions.clone(),
                    effect: p.effect,
                    policy_version: p.version,
                })
                .collect(),
        )
    })?;
    Ok(Json(ListPoliciesResponse { policies }))
}

/// `DELETE /tables/{name}/access-policies/{principal_arn}` (table admin).
pub async fn delete_policy(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((table, arn)): Path<(String, String)>,
) -> ApiResult<Json<serde_json::Value>> {
    validate_table_name(&table)?;
    require_table_admin(&app, &caller, &table)?;
    let cmd = MetaCommand::DeletePolicy {
        table_name: table.clone(),
        principal_arn: arn.clone(),
    };
    let outcome = app.meta.propose(cmd).await??;
    let deleted = !matches!(outcome, MetaOutcome::Unchanged);
    Ok(Json(serde_json::json!({
        "table_name": table,
        "principal_arn": arn,
        "deleted": deleted,
    })))
}

/// `POST /tables/{name}/credentials`: a credential for `principal_arn` (the caller, or
/// anyone if the caller is a cluster admin), signed by the leader.
pub async fn issue_credential(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(table): Path<String>,
    JsonBody(request): JsonBody<IssueCredentialRequest>,
) -> ApiResult<(StatusCode, Json<IssueCredentialResponse>)> {
    validate_table_name(&table)?;
    if request.principal_arn != caller.arn && !caller.admin {
        return Err(ApiError::forbidden(format!(
            "{} may ask credentials only for itself, not for {}",
            caller.arn, request.principal_arn
        )));
    }
    let issued = app
        .issuer
        .issue(IssueRequest {
            table,
            principal_arn: request.principal_arn,
            ttl_secs: request.ttl_seconds,
            actions: request.actions,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(issued)))
}

/// `POST /credentials/revoke`: by token (its principal or a cluster admin) or by `jti`
/// (a cluster admin). Remembered until the token would have expired.
pub async fn revoke_credential(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(request): JsonBody<RevokeCredentialRequest>,
) -> ApiResult<Json<RevokeCredentialResponse>> {
    let now_ms = (app.clock)();
    let skew_ms = app.verifier.skew_secs() * 1000;
    let (jti, expires_at_ms) = match (request.jti, request.token) {
        (Some(jti), None) => {
            require_cluster_admin(&caller)?;
            // The token's expiry is unknown: remember it as long as any token can live.
            (jti, now_ms + app.issuer.grace_ms())
        }
        (None, Some(token)) => {
            let claims = verified_claims(&app, &token, now_ms)?;
            if claims.sub != caller.arn && !caller.admin {
                return Err(ApiError::forbidden(format!(
                    "{} may revoke only its own credentials",
                    caller.arn
                )));
            }
            (claims.jti, claims.exp * 1000 + skew_ms)
        }
        _ => {
            return Err(ApiError::bad_request(
                "InvalidRequest",
                "give exactly one of jti and token",
            ));
        }
    };
    let cmd = MetaCommand::RevokeCredential {
        jti: jti.clone(),
        expires_at_ms,
    };
    app.meta.propose(cmd).await??;
    Ok(Json(RevokeCredentialResponse {
        jti,
        remembered_until: format_millis(expires_at_ms),
    }))
}

/// The claims of a token signed by a trusted key (400 if it does not verify).
fn verified_claims(app: &AppState, token: &str, now_ms: u64) -> ApiResult<Claims> {
    let keys = |kid: &str| {
        app.state.read(|s| {
            s.signing_key(kid)
                .filter(|k| k.is_trusted_at(now_ms))
                .and_then(|k| ed25519_dalek::VerifyingKey::from_bytes(&k.public_key).ok())
        })
    };
    verify(token, &keys, now_ms / 1000, app.verifier.skew_secs()).map_err(|e| {
        let hint = match e {
            TokenError::Expired { .. } => "; an expired credential needs no revocation",
            _ => "",
        };
        ApiError::bad_request(
            "InvalidRequest",
            format!("the token does not verify: {e}{hint}"),
        )
    })
}

/// `GET /keys` (cluster admin): the published signing keys and their lifetimes (the
/// public halves alone are open at `/.well-known/jwks.json`).
pub async fn list_keys(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<ListKeysResponse>> {
    require_cluster_admin(&caller)?;
    app.meta.linearizable_barrier().await?;
    let keys = app.state.read(|s| {
        s.signing_keys()
            .map(|k| SigningKeyDescription {
                kid: k.kid.clone(),
                node_id: k.node_id,
                created_at: format_millis(k.created_at_ms),
                active: k.is_active(),
                retired_at: k.retired_at_ms.map(format_millis),
                trusted_until: k.trusted_until_ms.map(format_millis),
            })
            .collect()
    });
    Ok(Json(ListKeysResponse { keys }))
}

/// `POST /keys/rotate` (cluster admin): the leader replaces its signing key now.
pub async fn rotate_key(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<RotateKeyResponse>> {
    require_cluster_admin(&caller)?;
    Ok(Json(app.issuer.rotate().await?))
}

/// Query of `GET /audit`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// Unix milliseconds or an RFC 3339 time; default: everything kept.
    since: Option<String>,
    /// Most entries (default and maximum [`MAX_AUDIT_ENTRIES_PER_CALL`]).
    limit: Option<usize>,
}

/// `GET /audit?since=&limit=` (cluster admin): this agent's recorded mutations.
pub async fn audit(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    QueryParams(params): QueryParams<AuditParams>,
) -> ApiResult<Json<AuditResponse>> {
    require_cluster_admin(&caller)?;
    let since_ms = match params.since.as_deref() {
        None => 0,
        Some(text) => parse_since(text).ok_or_else(|| {
            ApiError::bad_request(
                "InvalidRequest",
                format!("since must be Unix milliseconds or an RFC 3339 time, not {text:?}"),
            )
        })?,
    };
    let limit = params
        .limit
        .unwrap_or(MAX_AUDIT_ENTRIES_PER_CALL)
        .min(MAX_AUDIT_ENTRIES_PER_CALL);
    Ok(Json(AuditResponse {
        entries: app.audit.since(since_ms, limit),
    }))
}

fn parse_since(text: &str) -> Option<u64> {
    if let Ok(ms) = text.parse::<u64>() {
        return Some(ms);
    }
    let t = humantime::parse_rfc3339_weak(text).ok()?;
    let since = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    u64::try_from(since.as_millis()).ok()
}
