//! Signing Key Publisher (leader only): the leader's voter signs credentials, so the
//! leader makes sure its own public key is published in the metadata, where every agent
//! finds it to verify tokens locally (and serves it at `/.well-known/jwks.json`).

use std::sync::Arc;

use shared::command::MetaCommand;

use crate::auth::keys::NodeSigningKey;
use crate::meta::state_machine::StateHandle;
use crate::node::Clock;
use crate::node::meta_client::MetaClient;

/// The key publisher of one (leader) node.
pub struct SigningKeyPublisher {
    meta: Arc<MetaClient>,
    state: StateHandle,
    key: Arc<NodeSigningKey>,
    clock: Clock,
}

impl SigningKeyPublisher {
    /// Creates the publisher of `key`.
    pub fn new(
        meta: Arc<MetaClient>,
        state: StateHandle,
        key: Arc<NodeSigningKey>,
        clock: Clock,
    ) -> Self {
        SigningKeyPublisher {
            meta,
            state,
            key,
            clock,
        }
    }

    /// Publishes this leader's public key unless it is already its active key.
    pub async fn step(&self) {
        let me = self.meta.node_id();
        let published = self.state.read(|s| {
            s.node(me).is_none()
                || s.active_signing_key(me)
                    .is_some_and(|k| k.kid == self.key.kid())
        });
        if published {
            return;
        }
        let cmd = MetaCommand::PublishSigningKey {
            kid: self.key.kid().to_string(),
            public_key: self.key.public_key(),
            node_id: me,
            now_ms: (self.clock)(),
        };
        match self.meta.propose(cmd).await {
            Ok(Ok(_)) => {
                tracing::info!(kid = self.key.kid(), "published this leader's signing key")
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "signing key not published"),
            Err(e) => tracing::debug!(error = %e, "signing key not published yet"),
        }
    }
}
