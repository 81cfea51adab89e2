//! Openraft type configuration of the metadata store and the aliases used around it.

use std::io::Cursor;

use openraft::BasicNode;
use shared::command::{MetaCommand, MetaResult};

openraft::declare_raft_types!(
    /// Openraft types of the metadata store: commands are `MetaCommand`, responses `MetaResult`.
    pub TypeConfig:
        D = MetaCommand,
        R = MetaResult,
        NodeId = u64,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// Raft node id (the agent's node id).
pub type NodeId = u64;
/// A running Raft node of the metadata store.
pub type Raft = openraft::Raft<TypeConfig>;
/// Id of a log entry (leader id and index).
pub type LogId = openraft::LogId<NodeId>;
/// One Raft log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// A Raft vote (term, candidate, committed).
pub type Vote = openraft::Vote<NodeId>;
/// Storage error reported to openraft.
pub type StorageError = openraft::StorageError<NodeId>;
/// Membership config together with the log id that introduced it.
pub type StoredMembership = openraft::StoredMembership<NodeId, BasicNode>;
/// Metadata of a snapshot.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, BasicNode>;
/// A snapshot with its data.
pub type Snapshot = openraft::Snapshot<TypeConfig>;
/// Last purged and last present log ids.
pub type LogState = openraft::storage::LogState<TypeConfig>;

/// Why the redb-backed store failed outside of openraft's calls (opening, decoding).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("metadata database: {0}")]
    Db(#[from] redb::Error),
    /// A stored record could not be encoded or decoded.
    #[error("metadata record codec: {0}")]
    Codec(#[from] postcard::Error),
    /// A blocking task panicked or was cancelled.
    #[error("metadata store task failed: {0}")]
    Task(String),
    /// The file or a snapshot holds a format this agent does not read.
    #[error("{0}")]
    Format(#[from] crate::store_format::StoreFormatError),
}

impl From<shared::format::FormatError> for StoreError {
    fn from(e: shared::format::FormatError) -> Self {
        StoreError::Format(e.into())
    }
}

/// Converts every redb error type into `StoreError` so `?` works across redb calls.
macro_rules! store_error_from_redb {
    ($($t:ty),* $(,)?) => {
        $(impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.into())
            }
        })*
    };
}

store_error_from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError,
);

/// Opens a write transaction whose commit is durable (fsync) before it returns.
pub(crate) fn begin_durable_write(
    db: &redb::Database,
) -> Result<redb::WriteTransaction, StoreError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(redb::Durability::Immediate)?;
    Ok(txn)
}
