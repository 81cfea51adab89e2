//! Credential issue and signing-key rotation, on the leader.
//!
//! The leader's voter signs credentials with its own key (the private half never leaves
//! its file); any agent takes a credential request, checks who asks, and forwards it to
//! the leader ([`PeerRequest::IssueCredential`]). The leader checks the current policies
//! after a read barrier, so a policy change committed before the request is honoured.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng;
use rand::rngs::StdRng;
use shared::api::auth::{IssueCredentialResponse, RotateKeyResponse};
use shared::api::format_millis;
use shared::auth::{Action, Claims, sign};
use shared::command::{MetaCommand, MetaError};
use tokio::time::Instant;

use crate::auth::keys::{NodeSigningKey, SigningKeySlot};
use crate::config::AuthConfig;
use crate::meta::client::{MetaClient, read_index_on_leader};
use crate::meta::rpc::{IssueRequest, LeaderCallError, PeerRequest, PeerResponse};
use crate::seam::Clock;
use crate::seam::LeaderRoute;

/// Random bytes in a credential id (`jti`).
const TOKEN_ID_BYTES: usize = 16;

/// Pause between attempts to reach a leader.
const LEADER_RETRY: std::time::Duration = std::time::Duration::from_millis(50);

/// Signs credentials and rotates this agent's key when it leads; forwards otherwise.
pub struct CredentialIssuer {
    meta: Arc<MetaClient>,
    slot: Arc<SigningKeySlot>,
    config: AuthConfig,
    clock: Clock,
    data_dir: PathBuf,
    /// Serializes rotations (manual and periodic) on this agent.
    rotating: tokio::sync::Mutex<()>,
}

impl CredentialIssuer {
    /// An issuer signing with the key in `slot` (kept in `data_dir`).
    pub fn new(
        meta: Arc<MetaClient>,
        slot: Arc<SigningKeySlot>,
        config: AuthConfig,
        clock: Clock,
        data_dir: PathBuf,
    ) -> Self {
        CredentialIssuer {
            meta,
            slot,
            config,
            clock,
            data_dir,
            rotating: tokio::sync::Mutex::new(()),
        }
    }

    /// This agent's signing key slot.
    pub fn slot(&self) -> &Arc<SigningKeySlot> {
        &self.slot
    }

    /// The metadata client.
    pub fn meta(&self) -> &Arc<MetaClient> {
        &self.meta
    }

    /// How long a retired key stays trusted: every token it signed expires by then.
    pub fn grace_ms(&self) -> u64 {
        self.config.grace_ms()
    }

    /// Rotation period of the leader's key, in milliseconds.
    pub fn rotation_period_ms(&self) -> u64 {
        self.config.key_rotation_period_secs * 1000
    }

    /// Issues a credential through the leader.
    pub async fn issue(
        &self,
        request: IssueRequest,
    ) -> Result<IssueCredentialResponse, LeaderCallError> {
        let remote = PeerRequest::IssueCredential(request.clone());
        self.via_leader(
            || self.issue_local(request.clone()),
            remote,
            |reply| match reply {
                PeerResponse::IssueCredential(result) => Some(result),
                _ => None,
            },
        )
        .await
    }

    /// Rotates the leader's signing key.
    pub async fn rotate(&self) -> Result<RotateKeyResponse, LeaderCallError> {
        self.via_leader(
            || self.rotate_local(),
            PeerRequest::RotateKey,
            |reply| match reply {
                PeerResponse::RotateKey(result) => Some(result),
                _ => None,
            },
        )
        .await
    }

    /// Runs `local` if this agent leads, else sends `remote` to the leader; retries
    /// while no leader is known or it moves, until `http.leader_wait_ms` has passed.
    /// Both requests are safe to repeat (a second token, a second rotation).
    async fn via_leader<T, Fut>(
        &self,
        local: impl Fn() -> Fut,
        remote: PeerRequest,
        pick: fn(PeerResponse) -> Option<Result<T, LeaderCallError>>,
    ) -> Result<T, LeaderCallError>
    where
        Fut: Future<Output = Result<T, LeaderCallError>>,
    {
        let deadline = Instant::now() + self.meta.leader_wait();
        let mut last = String::from("no leader elected");
        loop {
            let attempt = match self.meta.leader() {
                LeaderRoute::Local => local().await,
                LeaderRoute::Remote(_, addr) => {
                    match self.meta.call_idempotent(&addr, &remote).await {
                        Ok(reply) => pick(reply).unwrap_or_else(|| {
                            Err(LeaderCallError::Unavailable(format!(
                                "unexpected reply from {addr}"
                            )))
                        }),
                        Err(why) => Err(LeaderCallError::Unavailable(why)),
                    }
                }
                LeaderRoute::Unknown => Err(LeaderCallError::Unavailable(last.clone())),
            };
            match attempt {
                Err(LeaderCallError::Forward(e)) => last = e.to_string(),
                Err(LeaderCallError::Unavailable(why)) => last = why,
                done => return done,
            }
            if Instant::now() >= deadline {
                return Err(LeaderCallError::Unavailable(last));
            }
            tokio::time::sleep(LEADER_RETRY).await;
        }
    }

    /// Signs a credential if this agent leads: checks the lifetime bounds, the table
    /// and principal, and grants what the current policies allow of what was asked.
    pub async fn issue_local(
        &self,
        request: IssueRequest,
    ) -> Result<IssueCredentialResponse, LeaderCallError> {
        let ttl = request.ttl_secs.unwrap_or(self.config.default_ttl_secs);
        let (min, max) = (self.config.min_ttl_secs, self.config.max_ttl_secs);
        if !(min..=max).contains(&ttl) {
            return Err(LeaderCallError::Invalid(format!(
                "ttl_seconds must be from {min} to {max}, not {ttl}"
            )));
        }
        let asked: BTreeSet<Action> = match request.actions {
            Some(actions) if actions.is_empty() => {
                return Err(LeaderCallError::Invalid(
                    "actions must name at least one of read, write, admin".into(),
                ));
            }
            Some(actions) => actions,
            None => Action::ALL.into_iter().collect(),
        };
        // Policies committed before this request must be seen: read at the read index.
        self.applied_read_index().await?;
        let key = self.slot.current();
        let now_ms = (self.clock)();
        let granted = self.meta.state().read(|s| {
            if s.table_by_name(&request.table).is_none() {
                return Err(not_found(MetaError::TableNotFound(request.table.clone())));
            }
            if s.principal(&request.principal_arn).is_none() {
                return Err(not_found(MetaError::PrincipalNotFound(
                    request.principal_arn.clone(),
                )));
            }
            if !s.signing_key(key.kid()).is_some_and(|k| k.is_active()) {
                return Err(LeaderCallError::Unavailable(
                    "the leader's signing key is not published yet; retry".into(),
                ));
            }
            Ok(s.grantable_actions(&request.principal_arn, &request.table, &asked))
        })?;
        if granted.is_empty() {
            return Err(LeaderCallError::Forbidden(format!(
                "the access policies of table {} grant {} none of {}",
                request.table,
                request.principal_arn,
                names(&asked)
            )));
        }
        let iat = now_ms / 1000;
        let claims = Claims {
            jti: new_token_id(),
            sub: request.principal_arn,
            tbl: request.table,
            act: granted.iter().copied().collect(),
            iat,
            exp: iat + ttl,
        };
        let token = sign(&claims, key.kid(), key.signing_key());
        self.meta.metrics().credentials_issued.inc();
        Ok(IssueCredentialResponse {
            token,
            expires_at: format_millis(claims.exp * 1000),
            expires_at_unix: claims.exp,
            jti: claims.jti,
            actions: granted,
            kid: key.kid().to_string(),
        })
    }

    /// Replaces this leader's key: the new key is published (trusted everywhere) before
    /// it signs anything, then the old one is retired with a grace period covering
    /// every token it signed.
    pub async fn rotate_local(&self) -> Result<RotateKeyResponse, LeaderCallError> {
        let keys = self.lock_keys().await;
        self.rotate_holding(&keys).await
    }

    /// Serializes changes of this agent's published keys (rotation, the keeper's round):
    /// a round that read the current key while a rotation swaps it would otherwise
    /// retire the new key.
    pub async fn lock_keys(&self) -> KeysGuard<'_> {
        KeysGuard {
            _held: self.rotating.lock().await,
        }
    }

    /// [`CredentialIssuer::rotate_local`] for a caller already holding the keys lock.
    pub async fn rotate_holding(
        &self,
        _keys: &KeysGuard<'_>,
    ) -> Result<RotateKeyResponse, LeaderCallError> {
        if let Some(redirect) = self.meta.leader().redirect() {
            return Err(LeaderCallError::Forward(redirect));
        }
        let node_id = self.meta.node_id();
        let data_dir = self.data_dir.clone();
        let new = tokio::task::spawn_blocking(move || NodeSigningKey::replace(&data_dir, node_id))
            .await
            .map_err(|e| LeaderCallError::Unavailable(e.to_string()))?
            .map_err(|e| LeaderCallError::Unavailable(e.to_string()))?;
        let kid = new.kid().to_string();
        let now_ms = (self.clock)();
        self.commit(MetaCommand::PublishSigningKey {
            kid: kid.clone(),
            public_key: new.public_key(),
            node_id,
            now_ms,
        })
        .await?;
        let old = self.slot.swap(new);
        let retired = self.retire(old.kid(), now_ms).await?;
        tracing::info!(%kid, retired = old.kid(), "rotated the signing key");
        Ok(RotateKeyResponse {
            kid,
            retired_kid: retired.then(|| old.kid().to_string()),
        })
    }

    /// Retires `kid`, trusted for [`CredentialIssuer::grace_ms`] from `now_ms`; whether
    /// it was published.
    pub async fn retire(&self, kid: &str, now_ms: u64) -> Result<bool, LeaderCallError> {
        if self.meta.state().read(|s| s.signing_key(kid).is_none()) {
            return Ok(false);
        }
        self.commit(MetaCommand::RetireSigningKey {
            kid: kid.to_string(),
            now_ms,
            trusted_until_ms: now_ms + self.grace_ms(),
        })
        .await?;
        Ok(true)
    }

    /// Commits `cmd`; a rejection or an unknown outcome is an error.
    pub async fn commit(&self, cmd: MetaCommand) -> Result<(), LeaderCallError> {
        match self.meta.propose_as_leader(cmd).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(LeaderCallError::Invalid(e.to_string())),
            Err(e) => Err(LeaderCallError::Unavailable(e.to_string())),
        }
    }

    /// Waits until the local replica reflects every command committed before now (this
    /// agent leads, so the read index is its own commit index after a quorum check).
    async fn applied_read_index(&self) -> Result<(), LeaderCallError> {
        let index = read_index_on_leader(self.meta.raft())
            .await
            .map_err(LeaderCallError::Forward)?;
        self.meta
            .wait_applied(index)
            .await
            .map_err(|e| LeaderCallError::Unavailable(e.to_string()))
    }
}

/// Proof that the caller holds the lock on this agent's key changes.
pub struct KeysGuard<'a> {
    _held: tokio::sync::MutexGuard<'a, ()>,
}

fn not_found(e: MetaError) -> LeaderCallError {
    LeaderCallError::NotFound {
        code: e.code().to_string(),
        message: e.to_string(),
    }
}

fn names(actions: &BTreeSet<Action>) -> String {
    actions
        .iter()
        .map(|a| a.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A new random credential id.
fn new_token_id() -> String {
    let mut bytes = [0u8; TOKEN_ID_BYTES];
    rand::make_rng::<StdRng>().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

impl crate::seam::SigningKeyRing for CredentialIssuer {
    type Held<'a> = KeysGuard<'a>;

    fn hold(&self) -> crate::seam::BoxFuture<'_, KeysGuard<'_>> {
        Box::pin(self.lock_keys())
    }

    fn current(&self) -> (String, [u8; 32]) {
        let key = self.slot.current();
        (key.kid().to_string(), key.public_key())
    }

    fn rotation_period_ms(&self) -> u64 {
        CredentialIssuer::rotation_period_ms(self)
    }

    fn grace_ms(&self) -> u64 {
        CredentialIssuer::grace_ms(self)
    }

    fn rotate<'a>(
        &'a self,
        held: &'a KeysGuard<'_>,
    ) -> crate::seam::BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.rotate_holding(held)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}
