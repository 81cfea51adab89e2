//! The bootstrap administrator: the agent that creates a cluster also creates its first
//! principal, a cluster admin, and writes that principal's secret to a file only the
//! agent's user can read (mode 0600) in its data dir. `agent dev` points `agentctl` at
//! that file; an operator of a real cluster copies it somewhere safe and creates
//! per-person principals with it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use shared::auth::secret::new_salt;
use shared::auth::{hash_secret, new_secret, principal_arn};
use shared::command::{MetaCommand, MetaError};

use crate::durable::write_private;
use crate::meta::client::MetaClient;
use crate::seam::Clock;

/// File of the bootstrap admin's credentials in the bootstrap agent's data dir.
pub const ADMIN_CREDENTIALS_FILE: &str = "admin-credentials.json";

/// Name of the principal created at bootstrap.
pub const BOOTSTRAP_ADMIN_NAME: &str = "admin";

/// A principal's ARN and secret, as kept in a credentials file (JSON).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalCredentials {
    /// `arn:<cluster>:principal/<name>`.
    pub principal_arn: String,
    /// The principal's secret.
    pub secret: String,
}

impl std::fmt::Debug for PrincipalCredentials {
    /// Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrincipalCredentials")
            .field("principal_arn", &self.principal_arn)
            .finish_non_exhaustive()
    }
}

/// Why a credentials file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsFileError {
    /// Reading or writing failed.
    #[error("credentials file {path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not a credentials document.
    #[error("credentials file {path} is not {{\"principal_arn\", \"secret\"}} JSON: {reason}")]
    Corrupt {
        /// File.
        path: PathBuf,
        /// Parser message.
        reason: String,
    },
}

impl PrincipalCredentials {
    /// Reads a credentials file.
    pub fn load(path: &Path) -> Result<Self, CredentialsFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| CredentialsFileError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|e| CredentialsFileError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }

    /// Writes the file readable by this user only, atomically (temporary file, rename).
    pub fn store(&self, path: &Path) -> Result<(), CredentialsFileError> {
        let text = serde_json::to_string_pretty(self).expect("two strings serialize");
        write_private(path, text.as_bytes()).map_err(|source| CredentialsFileError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Makes sure the bootstrap admin exists, retrying until it is committed.
///
/// The secret is written to `data_dir`/[`ADMIN_CREDENTIALS_FILE`] *before* the principal
/// is committed, so a crash in between never leaves a principal whose secret nobody
/// has; a restart commits the principal from the file (a no-op if it exists).
pub async fn ensure_bootstrap_admin(
    meta: &MetaClient,
    data_dir: &Path,
    cluster_id: &str,
    clock: &Clock,
    retry: Duration,
) {
    let path = data_dir.join(ADMIN_CREDENTIALS_FILE);
    let arn = principal_arn(cluster_id, BOOTSTRAP_ADMIN_NAME);
    loop {
        match try_ensure(meta, &path, &arn, clock).await {
            Ok(()) => {
                tracing::info!(
                    principal = %arn,
                    file = %path.display(),
                    "bootstrap admin credentials are in this file (mode 0600)"
                );
                return;
            }
            Err(why) => tracing::debug!(%why, "bootstrap admin not created yet; retrying"),
        }
        tokio::time::sleep(retry).await;
    }
}

async fn try_ensure(
    meta: &MetaClient,
    path: &Path,
    arn: &str,
    clock: &Clock,
) -> Result<(), String> {
    let exists = meta.state().read(|s| s.principal(arn).is_some());
    if exists {
        if !path.exists() {
            tracing::warn!(
                file = %path.display(),
                "the bootstrap admin exists but its credentials file is gone"
            );
        }
        return Ok(());
    }
    let credentials = match PrincipalCredentials::load(path) {
        Ok(c) => c,
        Err(CredentialsFileError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            let mut rng = rand::make_rng::<StdRng>();
            let created = PrincipalCredentials {
                principal_arn: arn.to_string(),
                secret: new_secret(&mut rng),
            };
            created.store(path).map_err(|e| e.to_string())?;
            created
        }
        Err(e) => return Err(e.to_string()),
    };
    let salt = new_salt(&mut rand::make_rng::<StdRng>());
    let cmd = MetaCommand::CreatePrincipal {
        name: BOOTSTRAP_ADMIN_NAME.to_string(),
        secret: hash_secret(&credentials.secret, salt),
        admin: true,
        now_ms: clock(),
    };
    match meta.propose(cmd).await {
        Ok(Ok(_)) | Ok(Err(MetaError::PrincipalExists(_))) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn stored_private_and_reloaded_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ADMIN_CREDENTIALS_FILE);
        let c = PrincipalCredentials {
            principal_arn: "arn:c:principal/admin".into(),
            secret: "s3cr3t-value".into(),
        };
        c.store(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(PrincipalCredentials::load(&path).unwrap(), c);
        assert!(!format!("{c:?}").contains("s3cr3t"));
        std::fs::write(&path, "{}").unwrap();
        assert!(matches!(
            PrincipalCredentials::load(&path),
            Err(CredentialsFileError::Corrupt { .. })
        ));
    }
}
