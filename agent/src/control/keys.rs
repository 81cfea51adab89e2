//! Signing Key Keeper (leader only): the leader's voter signs credentials, so the leader
//! makes sure its own public key is published (every agent verifies tokens with the
//! published keys and serves them at `/.well-known/jwks.json`), replaces it when it is
//! older than the rotation period, retires the keys of former leaders with a grace
//! period covering the tokens they signed, drops keys past their grace period, and
//! forgets revocations of expired tokens.

use std::sync::Arc;

use shared::auth::upkeep::{OwnKey, plan_key_upkeep};
use shared::command::MetaCommand;

use crate::auth::issuer::CredentialIssuer;
use crate::seam::Clock;

/// The key keeper of one (leader) node.
pub struct SigningKeyKeeper {
    issuer: Arc<CredentialIssuer>,
    clock: Clock,
}

impl SigningKeyKeeper {
    /// A keeper of the issuer's key.
    pub fn new(issuer: Arc<CredentialIssuer>, clock: Clock) -> Self {
        SigningKeyKeeper { issuer, clock }
    }

    /// One round: publish or rotate this leader's key, retire the others, drop the
    /// untrusted ones, collect expired revocations (decided by
    /// `shared::auth::upkeep::plan_key_upkeep`). Failures are retried next round.
    pub async fn step(&self) {
        let keys = self.issuer.lock_keys().await;
        let meta = self.issuer.meta();
        let me = meta.node_id();
        let key = self.issuer.slot().current();
        let now = (self.clock)();
        let period = self.issuer.rotation_period_ms();
        let Some(plan) = meta
            .state()
            .read(|s| plan_key_upkeep(s, me, key.kid(), now, period))
        else {
            return;
        };
        let result = match plan.own {
            OwnKey::Publish => {
                let cmd = MetaCommand::PublishSigningKey {
                    kid: key.kid().to_string(),
                    public_key: key.public_key(),
                    node_id: me,
                    now_ms: now,
                };
                let published = self.issuer.commit(cmd).await;
                if published.is_ok() {
                    tracing::info!(kid = key.kid(), "published this leader's signing key");
                }
                published
            }
            // Retired while another agent led (or older than the period): a new key.
            OwnKey::Rotate => self.issuer.rotate_holding(&keys).await.map(|_| ()),
            OwnKey::Keep => Ok(()),
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "signing key not published or rotated yet");
            return;
        }
        // Former leaders' keys sign nothing any more, and stay trusted for the grace
        // period. (A rotation just now retired the previous key itself.)
        let current = self.issuer.slot().current();
        for kid in plan.retire.iter().filter(|k| *k != current.kid()) {
            match self.issuer.retire(kid, now).await {
                Ok(_) => tracing::info!(%kid, "retired a former leader's signing key"),
                Err(e) => tracing::debug!(%kid, error = %e, "key not retired yet"),
            }
        }
        if plan.drop_untrusted {
            let dropped = self
                .issuer
                .commit(MetaCommand::DropExpiredKeys { now_ms: now })
                .await;
            if dropped.is_ok() {
                tracing::info!("dropped signing keys past their grace period");
            }
        }
        if plan.gc_revocations {
            let _ = self
                .issuer
                .commit(MetaCommand::GcRevocations { now_ms: now })
                .await;
        }
    }
}
