//! This leader's signing keys, as the key keeper sees them: the current key, the
//! periods, and the one change only the key's holder can make (a new key pair, kept
//! here and never in the metadata). The agent's `CredentialIssuer` implements it over
//! its key file; netsim over keys made from its seed.

use super::BoxFuture;

/// The signing keys of the node the keeper runs on.
pub trait SigningKeyRing: Send + Sync + 'static {
    /// Proof that no other change of this node's keys (an operator's rotation) runs.
    type Held<'a>: Send
    where
        Self: 'a;

    /// Waits until this node's keys are free to change, and holds them.
    fn hold(&self) -> BoxFuture<'_, Self::Held<'_>>;

    /// The key this node signs with now: its id and Ed25519 public key.
    fn current(&self) -> (String, [u8; 32]);

    /// How long a key signs before it is replaced, in milliseconds.
    fn rotation_period_ms(&self) -> u64;

    /// How long a retired key still verifies tokens, in milliseconds.
    fn grace_ms(&self) -> u64;

    /// Replaces the current key: the new one is published before it signs, the old
    /// one retired with the grace period.
    fn rotate<'a>(&'a self, held: &'a Self::Held<'_>) -> BoxFuture<'a, Result<(), String>>;
}
