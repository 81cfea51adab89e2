//! Access control, pure part: signed credentials (Ed25519 JWTs), the policy decision,
//! and principal secrets.
//!
//! - [`token`]: sign and verify compact JWTs (RFC 7519) with EdDSA (RFC 8037), the
//!   JWKS document, and the hash that keys a verified-token cache.
//! - [`policy`]: per-table access policies (deny wins, no policy means no access) and
//!   the check every data node runs on every request.
//! - [`secret`]: principal secrets (generated from a caller's RNG, stored only as a
//!   salted hash) and principal ARNs.
//! - [`upkeep`]: what the leader's signing key keeper publishes, rotates, retires and
//!   drops.
//!
//! Nothing here reads the clock or the OS entropy source: `now_secs` and the RNG are
//! arguments. The agent holds the signing key file, the trusted public keys, the
//! revocation list and the cache; this module only decides.

use serde::{Deserialize, Serialize};

pub mod policy;
pub mod secret;
pub mod token;
pub mod upkeep;

pub use policy::{Denied, Effect, Policy, allowed, check_request, grantable};
pub use secret::{SecretHash, hash_secret, new_secret, principal_arn, verify_secret};
pub use token::{Claims, TokenError, jwks, sign, token_id_hash, verify};

/// What a principal may do to a table (serialized lowercase: `"read"`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Get and query items.
    Read,
    /// Put and delete items.
    Write,
    /// Manage the table and its access policies.
    Admin,
}

impl Action {
    /// Every action, in order.
    pub const ALL: [Action; 3] = [Action::Read, Action::Write, Action::Admin];

    /// The wire name (`"read"`, `"write"`, `"admin"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Write => "write",
            Action::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
