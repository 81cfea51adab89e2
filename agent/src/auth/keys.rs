//! This agent's Ed25519 token-signing key. The private half is created once, on this
//! host, in a file only the agent's user can read (mode 0600), and never leaves it: not
//! into the metadata store, the Raft log, a message or a log line. Only the public half
//! is published through the metadata (by the leader, for itself), under a key id.

use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use rand::rngs::StdRng;
use sha2::{Digest, Sha256};
use shared::model::NodeId;

use crate::durable::write_private;

/// File of the private key in the data dir.
pub const SIGNING_KEY_FILE: &str = "signing.key";

/// Bytes of the public key's digest in its key id.
const KID_DIGEST_BYTES: usize = 6;

/// Why the key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Reading or writing the file failed.
    #[error("signing key file {path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file does not hold a key.
    #[error("signing key file {0} is corrupt (expected 64 hex digits)")]
    Corrupt(PathBuf),
}

/// This agent's signing key and its key id.
pub struct NodeSigningKey {
    key: SigningKey,
    kid: String,
}

impl std::fmt::Debug for NodeSigningKey {
    /// Never prints the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeSigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl NodeSigningKey {
    /// Loads the key of `data_dir`, creating it (mode 0600) on first start.
    pub fn load_or_create(data_dir: &Path, node_id: NodeId) -> Result<Self, KeyFileError> {
        let path = data_dir.join(SIGNING_KEY_FILE);
        let io = |source| KeyFileError::Io {
            path: path.clone(),
            source,
        };
        let key = match std::fs::read_to_string(&path) {
            Ok(text) => parse_key(&text).ok_or_else(|| KeyFileError::Corrupt(path.clone()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = SigningKey::generate(&mut rand::make_rng::<StdRng>());
                write_private(&path, hex(&key.to_bytes()).as_bytes()).map_err(io)?;
                key
            }
            Err(e) => return Err(io(e)),
        };
        let kid = key_id(node_id, &key.verifying_key().to_bytes());
        Ok(NodeSigningKey { key, kid })
    }

    /// Replaces the key of `data_dir` with a new one (rotation). The old private half is
    /// gone once this returns: tokens it signed are verified with its published public
    /// half only.
    pub fn replace(data_dir: &Path, node_id: NodeId) -> Result<Self, KeyFileError> {
        let path = data_dir.join(SIGNING_KEY_FILE);
        let key = SigningKey::generate(&mut rand::make_rng::<StdRng>());
        write_private(&path, hex(&key.to_bytes()).as_bytes()).map_err(|source| {
            KeyFileError::Io {
                path: path.clone(),
                source,
            }
        })?;
        let kid = key_id(node_id, &key.verifying_key().to_bytes());
        Ok(NodeSigningKey { key, kid })
    }

    /// The key id published with the public key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public half.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The private half, for signing tokens on this host.
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }
}

/// This agent's current signing key, replaced on rotation while requests use it.
pub struct SigningKeySlot {
    current: std::sync::RwLock<std::sync::Arc<NodeSigningKey>>,
}

impl SigningKeySlot {
    /// A slot holding `key`.
    pub fn new(key: NodeSigningKey) -> Self {
        SigningKeySlot {
            current: std::sync::RwLock::new(std::sync::Arc::new(key)),
        }
    }

    /// The current key.
    pub fn current(&self) -> std::sync::Arc<NodeSigningKey> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Makes `key` the current key and returns the one it replaces.
    pub fn swap(&self, key: NodeSigningKey) -> std::sync::Arc<NodeSigningKey> {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut *current, std::sync::Arc::new(key))
    }
}

/// `node{id}-{first bytes of SHA-256(public key)}`: unique per key, and says whose it is.
fn key_id(node_id: NodeId, public: &[u8; 32]) -> String {
    let digest = Sha256::digest(public);
    format!("node{node_id}-{}", hex(&digest[..KID_DIGEST_BYTES]))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_key(text: &str) -> Option<SigningKey> {
    let text = text.trim();
    if text.len() != 64 {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(SigningKey::from_bytes(&bytes))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn created_once_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let first = NodeSigningKey::load_or_create(dir.path(), 3).unwrap();
        let mode = std::fs::metadata(dir.path().join(SIGNING_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = NodeSigningKey::load_or_create(dir.path(), 3).unwrap();
        assert_eq!(first.public_key(), again.public_key());
        assert_eq!(first.kid(), again.kid());
        assert!(first.kid().starts_with("node3-"));
        assert!(!format!("{first:?}").contains(&hex(&first.signing_key().to_bytes())));
    }

    #[test]
    fn a_replaced_key_is_new_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let first = NodeSigningKey::load_or_create(dir.path(), 2).unwrap();
        let slot = SigningKeySlot::new(first);
        let second = NodeSigningKey::replace(dir.path(), 2).unwrap();
        let (kid, public) = (second.kid().to_string(), second.public_key());
        let old = slot.swap(second);
        assert_ne!(old.kid(), kid);
        assert_eq!(slot.current().kid(), kid);
        let mode = std::fs::metadata(dir.path().join(SIGNING_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let reloaded = NodeSigningKey::load_or_create(dir.path(), 2).unwrap();
        assert_eq!(reloaded.public_key(), public);
    }

    #[test]
    fn a_corrupt_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SIGNING_KEY_FILE), "not a key").unwrap();
        assert!(matches!(
            NodeSigningKey::load_or_create(dir.path(), 1),
            Err(KeyFileError::Corrupt(_))
        ));
    }
}
