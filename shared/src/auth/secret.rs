//! Principal secrets and principal ARNs.
//!
//! A principal authenticates with a secret of [`SECRET_BYTES`] uniformly random bytes
//! made by [`new_secret`] from the caller's RNG, shown once, and stored only as a
//! [`SecretHash`]: SHA-256 over a random per-principal salt followed by the secret.
//!
//! Why no slow KDF (bcrypt, scrypt, Argon2): those make guessing a *low-entropy
//! password* expensive after the hashes leak. A 256-bit random secret cannot be
//! guessed at any cost per guess (2^255 expected SHA-256 evaluations), so slowing each
//! guess buys nothing, while a deliberately slow hash on every authentication would
//! hand unauthenticated callers a cheap way to burn CPU. The salt keeps equal secrets
//! from having equal hashes and rules out precomputation across principals. This holds
//! only for secrets from [`new_secret`]: never accept a user-chosen password here.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Random bytes in a secret (base64url: 43 characters).
pub const SECRET_BYTES: usize = 32;
/// Random bytes in a salt.
pub const SALT_BYTES: usize = 16;
/// Longest secret [`verify_secret`] hashes, in bytes; longer ones are refused unhashed.
pub const MAX_SECRET_BYTES: usize = 256;
/// Longest principal name, in characters.
pub const MAX_PRINCIPAL_NAME_CHARS: usize = 64;

/// A new secret: [`SECRET_BYTES`] bytes from `rng`, base64url without padding.
pub fn new_secret<R: CryptoRng + ?Sized>(rng: &mut R) -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    rng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A new salt for [`hash_secret`].
pub fn new_salt<R: CryptoRng + ?Sized>(rng: &mut R) -> [u8; SALT_BYTES] {
    let mut salt = [0u8; SALT_BYTES];
    rng.fill_bytes(&mut salt);
    salt
}

/// What the metadata store keeps of a secret. Equality is constant-time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecretHash {
    salt: [u8; SALT_BYTES],
    hash: [u8; 32],
}

impl PartialEq for SecretHash {
    fn eq(&self, other: &Self) -> bool {
        (self.salt.ct_eq(&other.salt) & self.hash.ct_eq(&other.hash)).into()
    }
}

impl Eq for SecretHash {}

/// The salted hash of `secret`: SHA-256(salt || secret).
pub fn hash_secret(secret: &str, salt: [u8; SALT_BYTES]) -> SecretHash {
    let mut hasher = Sha256::new();
    hasher.update(salt);
    hasher.update(secret.as_bytes());
    SecretHash {
        salt,
        hash: hasher.finalize().into(),
    }
}

/// Whether `secret` is the one `stored` was made from, comparing hashes in constant
/// time.
pub fn verify_secret(secret: &str, stored: &SecretHash) -> bool {
    if secret.len() > MAX_SECRET_BYTES {
        return false;
    }
    let candidate = hash_secret(secret, stored.salt);
    candidate.hash.ct_eq(&stored.hash).into()
}

/// Why a principal name is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrincipalNameError {
    /// Empty name.
    #[error("the principal name must not be empty")]
    Empty,
    /// Longer than [`MAX_PRINCIPAL_NAME_CHARS`].
    #[error("the principal name is {len} characters, at most {max}")]
    TooLong {
        /// Length in characters.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A character outside `[A-Za-z0-9_.-]`.
    #[error("the principal name may hold only A-Z a-z 0-9 _ . - (found {0:?})")]
    BadChar(char),
}

/// Checks a principal name: 1 to [`MAX_PRINCIPAL_NAME_CHARS`] of `[A-Za-z0-9_.-]`.
pub fn validate_principal_name(name: &str) -> Result<(), PrincipalNameError> {
    if name.is_empty() {
        return Err(PrincipalNameError::Empty);
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(PrincipalNameError::BadChar(bad));
    }
    // Only ASCII is left, so bytes are characters.
    if name.len() > MAX_PRINCIPAL_NAME_CHARS {
        return Err(PrincipalNameError::TooLong {
            len: name.len(),
            max: MAX_PRINCIPAL_NAME_CHARS,
        });
    }
    Ok(())
}

/// The ARN of principal `name` in `cluster`: `arn:<cluster>:principal/<name>`.
pub fn principal_arn(cluster: &str, name: &str) -> String {
    format!("arn:{cluster}:principal/{name}")
}

/// The `(cluster, name)` of a principal ARN, if it is one with a valid name and a
/// non-empty cluster.
pub fn parse_principal_arn(arn: &str) -> Option<(&str, &str)> {
    let (cluster, name) = arn.strip_prefix("arn:")?.rsplit_once(":principal/")?;
    if cluster.is_empty() || validate_principal_name(name).is_err() {
        return None;
    }
    Some((cluster, name))
}

#[cfg(test)]
mod tests;
