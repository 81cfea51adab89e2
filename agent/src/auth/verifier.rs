//! Local verification of credentials on the data path, with no control-plane call.
//!
//! A token's signature is checked once (against the trusted public keys of the local
//! metadata replica), then its claims are cached by the token's SHA-256 until it
//! expires. Every request, cached or not, is then checked against the *current* local
//! metadata: the signing key still trusted, not expired (with the configured skew),
//! table, action, `jti` not revoked, and the current policies still allowing it; so a
//! revocation, a new deny or a deleted principal takes effect within metadata
//! propagation time.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use shared::auth::{Action, Claims, Denied, TokenError, check_request, token_id_hash, verify};
use shared::model::UnixMillis;

use crate::seam::StateHandle;

/// Why a request's credential was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialRefused {
    /// No credential, or one that does not verify (401).
    #[error("{0}")]
    Unauthenticated(String),
    /// Signed by a key this agent does not know (401); it may have been published a
    /// moment ago and not yet reached this agent's metadata.
    #[error("{0}")]
    UnknownKey(String),
    /// A valid credential that does not allow this request (403).
    #[error("{0}")]
    Forbidden(String),
}

impl From<TokenError> for CredentialRefused {
    fn from(e: TokenError) -> Self {
        let message = format!("invalid credential: {e}");
        match e {
            TokenError::UnknownKey(_) => CredentialRefused::UnknownKey(message),
            _ => CredentialRefused::Unauthenticated(message),
        }
    }
}

impl From<Denied> for CredentialRefused {
    fn from(e: Denied) -> Self {
        match e {
            Denied::Expired { .. } => {
                CredentialRefused::Unauthenticated(format!("invalid credential: {e}"))
            }
            other => CredentialRefused::Forbidden(other.to_string()),
        }
    }
}

/// A verified token's claims and the key that signed it.
struct Verified {
    claims: Claims,
    kid: String,
}

/// How a check was answered (for the metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckPath {
    /// The signature was checked now.
    Verified,
    /// The claims came from the cache.
    Cached,
}

/// Verifies credentials against this agent's metadata replica, caching verified claims.
pub struct TokenVerifier {
    state: StateHandle,
    cache: RwLock<HashMap<[u8; 32], Arc<Verified>>>,
    max_entries: usize,
    skew_secs: u64,
}

impl TokenVerifier {
    /// A verifier reading keys, revocations and policies from `state`, caching at most
    /// `max_entries` tokens, tolerating `skew_secs` of clock difference.
    pub fn new(state: StateHandle, max_entries: usize, skew_secs: u64) -> Self {
        TokenVerifier {
            state,
            cache: RwLock::new(HashMap::new()),
            max_entries,
            skew_secs,
        }
    }

    /// Checks that `token` allows `action` on `table` at `now_ms`; returns the claims
    /// and whether the signature was checked now or found in the cache.
    pub fn check(
        &self,
        token: &str,
        table: &str,
        action: Action,
        now_ms: UnixMillis,
    ) -> Result<(Claims, CheckPath), CredentialRefused> {
        self.check_actions(token, Some(table), Some(action), now_ms)
    }

    /// Checks that `token` is a credential still good for some action on `table` (its
    /// own table if `None`): what reading the table's routes needs.
    pub fn check_any_action(
        &self,
        token: &str,
        table: Option<&str>,
        now_ms: UnixMillis,
    ) -> Result<(Claims, CheckPath), CredentialRefused> {
        self.check_actions(token, table, None, now_ms)
    }

    fn check_actions(
        &self,
        token: &str,
        table: Option<&str>,
        action: Option<Action>,
        now_ms: UnixMillis,
    ) -> Result<(Claims, CheckPath), CredentialRefused> {
        let now_secs = now_ms / 1000;
        let hash = token_id_hash(token);
        let cached = self
            .cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&hash)
            .cloned();
        let (verified, path) = match cached {
            Some(v) => (v, CheckPath::Cached),
            None => (
                self.verify_and_cache(token, hash, now_ms)?,
                CheckPath::Verified,
            ),
        };
        self.state.read(|s| {
            // A key dropped after its grace period (or cut off) stops its cached tokens.
            if !s
                .signing_key(&verified.kid)
                .is_some_and(|k| k.is_trusted_at(now_ms))
            {
                return Err(CredentialRefused::Unauthenticated(format!(
                    "invalid credential: its signing key {} is no longer trusted",
                    verified.kid
                )));
            }
            let revoked = |jti: &str| s.is_revoked(jti);
            let allowed_now = |p: &str, t: &str, a| s.access_allowed(p, t, a);
            let claims = &verified.claims;
            let table = table.unwrap_or(&claims.tbl);
            let check = |action| {
                check_request(
                    claims,
                    table,
                    action,
                    &revoked,
                    &allowed_now,
                    now_secs,
                    self.skew_secs,
                )
            };
            match action {
                Some(action) => check(action),
                None => claims
                    .act
                    .iter()
                    .map(|a| check(*a))
                    .find(Result::is_ok)
                    .unwrap_or_else(|| check(claims.act.first().copied().unwrap_or(Action::Read))),
            }
            .map_err(CredentialRefused::from)
        })?;
        Ok((verified.claims.clone(), path))
    }

    fn verify_and_cache(
        &self,
        token: &str,
        hash: [u8; 32],
        now_ms: UnixMillis,
    ) -> Result<Arc<Verified>, CredentialRefused> {
        // `verify` looks the key up by the header's kid exactly once.
        let signed_by = std::cell::RefCell::new(String::new());
        let keys = |kid: &str| {
            signed_by.replace(kid.to_string());
            self.state.read(|s| {
                s.signing_key(kid)
                    .filter(|k| k.is_trusted_at(now_ms))
                    .and_then(|k| ed25519_dalek::VerifyingKey::from_bytes(&k.public_key).ok())
            })
        };
        let claims = verify(token, &keys, now_ms / 1000, self.skew_secs)?;
        let verified = Arc::new(Verified {
            claims,
            kid: signed_by.into_inner(),
        });
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= self.max_entries {
            let horizon = (now_ms / 1000).saturating_sub(self.skew_secs);
            cache.retain(|_, v| v.claims.exp > horizon);
            if cache.len() >= self.max_entries {
                // Every entry is live: start over rather than grow without bound; the
                // tokens still in use are verified again on their next request.
                cache.clear();
            }
        }
        cache.insert(hash, verified.clone());
        Ok(verified)
    }

    /// The clock skew tolerated, in seconds.
    pub fn skew_secs(&self) -> u64 {
        self.skew_secs
    }

    /// Number of cached tokens.
    pub fn cached(&self) -> usize {
        self.cache.read().unwrap_or_else(|e| e.into_inner()).len()
    }
}
