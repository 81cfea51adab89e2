//! Metadata backups: the whole `MetaState` at one committed index, in a self-checking file
//! (`agentctl snapshot save`, `agent restore`).
//!
//! A backup file is `MAGIC | version (u16 LE) | postcard(MetaBackup) | SHA-256 of all the
//! bytes before it`. The digest catches a file cut short or changed on its way to and from
//! backup storage; the state's invariants are checked too, so a restore never starts a
//! cluster from metadata that breaks them.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::format::{FormatError, check_version};
use crate::state::MetaState;

/// Version of the backup file format (see `shared::format` for the rule).
pub const BACKUP_FORMAT: u16 = 1;

/// First bytes of a backup file.
const BACKUP_MAGIC: [u8; 8] = *b"AGENTBAK";
/// Length of the trailing SHA-256 digest.
const DIGEST_LEN: usize = 32;
/// Magic plus version.
const HEADER_LEN: usize = BACKUP_MAGIC.len() + 2;

/// The metadata of a cluster at one committed index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetaBackup {
    /// The cluster's id (its `cluster_name`), if it was named.
    pub cluster_id: Option<String>,
    /// The Raft log index the state includes every entry up to (committed).
    pub applied_index: u64,
    /// The node that wrote the backup.
    pub taken_by: u64,
    /// When, in Unix milliseconds (that node's clock).
    pub taken_at_ms: u64,
    /// The whole metadata.
    pub state: MetaState,
}

/// What a backup holds, in counts (`agentctl snapshot status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupSummary {
    /// The cluster's id.
    pub cluster_id: Option<String>,
    /// The Raft log index of the state.
    pub applied_index: u64,
    /// The node that wrote it.
    pub taken_by: u64,
    /// When, in Unix milliseconds.
    pub taken_at_ms: u64,
    /// Tables (any status).
    pub tables: usize,
    /// Partitions.
    pub partitions: usize,
    /// Nodes ever registered.
    pub nodes: usize,
    /// Principals.
    pub principals: usize,
    /// Access policies.
    pub policies: usize,
    /// The file's SHA-256, hex.
    pub sha256: String,
}

/// Why bytes are not a usable backup.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Not a backup file at all.
    #[error("not a metadata backup (it does not start with the backup header)")]
    NotABackup,
    /// Cut short or changed since it was written.
    #[error(
        "the backup is damaged: its SHA-256 does not match (cut short or changed since it was written)"
    )]
    Damaged,
    /// A version this agent does not read.
    #[error("{0}")]
    Format(#[from] FormatError),
    /// The digest matched but the payload does not decode.
    #[error("the backup's contents do not decode: {0}")]
    Codec(#[from] postcard::Error),
    /// The metadata in it breaks an invariant.
    #[error("the metadata in the backup breaks an invariant: {0}")]
    Invalid(String),
}

impl MetaBackup {
    /// The file bytes of this backup.
    pub fn encode(&self) -> Result<Vec<u8>, BackupError> {
        let mut bytes = BACKUP_MAGIC.to_vec();
        bytes.extend_from_slice(&BACKUP_FORMAT.to_le_bytes());
        let mut bytes = postcard::to_extend(self, bytes)?;
        let digest = Sha256::digest(&bytes);
        bytes.extend_from_slice(&digest);
        Ok(bytes)
    }

    /// Reads a backup file's bytes, checking digest, version and invariants.
    pub fn decode(bytes: &[u8]) -> Result<MetaBackup, BackupError> {
        let Some(rest) = bytes.strip_prefix(&BACKUP_MAGIC) else {
            return Err(BackupError::NotABackup);
        };
        if bytes.len() < HEADER_LEN + DIGEST_LEN {
            return Err(BackupError::Damaged);
        }
        let (body, digest) = bytes.split_at(bytes.len() - DIGEST_LEN);
        if Sha256::digest(body).as_slice() != digest {
            return Err(BackupError::Damaged);
        }
        let version = u16::from_le_bytes([rest[0], rest[1]]);
        check_version("the metadata backup", version, BACKUP_FORMAT)?;
        let backup: MetaBackup = postcard::from_bytes(&body[HEADER_LEN..])?;
        backup
            .state
            .check_invariants()
            .map_err(BackupError::Invalid)?;
        Ok(backup)
    }

    /// Counts of what the backup holds, with the digest of its file bytes.
    pub fn summary(&self, file_bytes: &[u8]) -> BackupSummary {
        let s = &self.state;
        BackupSummary {
            cluster_id: self.cluster_id.clone(),
            applied_index: self.applied_index,
            taken_by: self.taken_by,
            taken_at_ms: self.taken_at_ms,
            tables: s.table_count(),
            partitions: s.partition_count(),
            nodes: s.nodes().count(),
            principals: s.principals().count(),
            policies: s
                .tables()
                .map(|t| s.policies_of_table(t.table_id).count())
                .sum(),
            sha256: Sha256::digest(file_bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backup() -> MetaBackup {
        MetaBackup {
            cluster_id: Some("prod".into()),
            applied_index: 42,
            taken_by: 1,
            taken_at_ms: 1_700_000_000_000,
            state: MetaState::new(),
        }
    }

    #[test]
    fn a_backup_round_trips_and_starts_with_its_version() {
        let bytes = backup().encode().unwrap();
        assert_eq!(&bytes[..8], b"AGENTBAK");
        assert_eq!(&bytes[8..10], &BACKUP_FORMAT.to_le_bytes());
        assert_eq!(MetaBackup::decode(&bytes).unwrap(), backup());
    }

    #[test]
    fn a_changed_or_cut_backup_is_damaged() {
        let bytes = backup().encode().unwrap();
        for cut in [bytes.len() - 1, bytes.len() - DIGEST_LEN, HEADER_LEN + 1] {
            assert!(
                matches!(MetaBackup::decode(&bytes[..cut]), Err(BackupError::Damaged)),
                "cut at {cut}"
            );
        }
        let mut flipped = bytes.clone();
        flipped[HEADER_LEN + 2] ^= 0x01;
        assert!(matches!(
            MetaBackup::decode(&flipped),
            Err(BackupError::Damaged)
        ));
        assert!(matches!(
            MetaBackup::decode(b"{\"tables\": []}"),
            Err(BackupError::NotABackup)
        ));
    }

    #[test]
    fn a_backup_of_a_newer_format_is_refused_by_name() {
        let mut body = BACKUP_MAGIC.to_vec();
        body.extend_from_slice(&(BACKUP_FORMAT + 1).to_le_bytes());
        let mut body = postcard::to_extend(&backup(), body).unwrap();
        let digest = Sha256::digest(&body);
        body.extend_from_slice(&digest);
        let err = MetaBackup::decode(&body).unwrap_err();
        assert!(matches!(
            err,
            BackupError::Format(FormatError::Newer { .. })
        ));
        assert!(err.to_string().contains("metadata backup"), "{err}");
    }
}
