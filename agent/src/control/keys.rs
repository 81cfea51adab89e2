//! Signing Key Keeper (leader only): the leader's voter signs credentials, so the leader
//! makes sure its own public key is published (every agent verifies tokens with the
//! published keys and serves them at `/.well-known/jwks.json`), replaces it when it is
//! older than the rotation period, retires the keys of former leaders with a grace
//! period covering the tokens they signed, drops keys past their grace period, and
//! forgets revocations of expired tokens. What to do is decided by
//! `shared::auth::upkeep::plan_key_upkeep`; the keeper is generic over its seams
//! (`MetaLog`, `SigningKeyRing`), so netsim runs it as it is.

use std::sync::Arc;

use shared::auth::upkeep::{OwnKey, plan_key_upkeep};
use shared::command::MetaCommand;

use crate::seam::{Clock, MetaLog, SigningKeyRing, StateHandle};

/// The key keeper of one (leader) node.
pub struct SigningKeyKeeper<M, K> {
    meta: Arc<M>,
    state: StateHandle,
    keys: Arc<K>,
    clock: Clock,
}

impl<M: MetaLog, K: SigningKeyRing> SigningKeyKeeper<M, K> {
    /// A keeper of `keys`, proposing through `meta`, reading `state`.
    pub fn new(meta: Arc<M>, state: StateHandle, keys: Arc<K>, clock: Clock) -> Self {
        SigningKeyKeeper {
            meta,
            state,
            keys,
            clock,
        }
    }

    /// One round: publish or rotate this leader's key, retire the others, drop the
    /// untrusted ones, collect expired revocations. Failures are retried next round.
    pub async fn step(&self) {
        // Held for the round: a rotation that swaps the key while this round read it
        // would otherwise have the new key retired.
        let held = self.keys.hold().await;
        let me = self.meta.node_id();
        let (kid, public_key) = self.keys.current();
        let now = (self.clock)();
        let period = self.keys.rotation_period_ms();
        let Some(plan) = self
            .state
            .read(|s| plan_key_upkeep(s, me, &kid, now, period))
        else {
            return;
        };
        let result = match plan.own {
            OwnKey::Publish => {
                let cmd = MetaCommand::PublishSigningKey {
                    kid: kid.clone(),
                    public_key,
                    node_id: me,
                    now_ms: now,
                };
                let published = self.commit(cmd).await;
                if published.is_ok() {
                    tracing::info!(%kid, "published this leader's signing key");
                }
                published
            }
            // Retired while another agent led (or older than the period): a new key.
            OwnKey::Rotate => self.keys.rotate(&held).await,
            OwnKey::Keep => Ok(()),
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "signing key not published or rotated yet");
            return;
        }
        // Former leaders' keys sign nothing any more, and stay trusted for the grace
        // period. (A rotation just now retired the previous key itself.)
        let current = self.keys.current().0;
        for other in plan.retire.iter().filter(|k| **k != current) {
            let cmd = MetaCommand::RetireSigningKey {
                kid: other.clone(),
                now_ms: now,
                trusted_until_ms: now + self.keys.grace_ms(),
            };
            match self.commit(cmd).await {
                Ok(()) => tracing::info!(kid = %other, "retired a former leader's signing key"),
                Err(e) => tracing::debug!(kid = %other, error = %e, "key not retired yet"),
            }
        }
        if plan.drop_untrusted
            && self
                .commit(MetaCommand::DropExpiredKeys { now_ms: now })
                .await
                .is_ok()
        {
            tracing::info!("dropped signing keys past their grace period");
        }
        if plan.gc_revocations {
            let _ = self
                .commit(MetaCommand::GcRevocations { now_ms: now })
                .await;
        }
    }

    /// Commits `cmd` as the leader; a refusal or an unknown outcome is an error.
    async fn commit(&self, cmd: MetaCommand) -> Result<(), String> {
        match self.meta.propose(cmd).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }
}
