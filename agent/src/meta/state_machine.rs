//! The metadata state machine: the live `MetaState` in memory, its current snapshot in redb.
//!
//! Applying a command does not write to disk; durability comes from the Raft log plus the
//! persisted snapshot. After a restart the store starts from the last snapshot and openraft
//! re-applies the committed log after it (the log store persists the committed id).

use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use shared::command::{MetaOutcome, MetaResult};
use shared::format::{snapshot_header, split_snapshot};
use shared::state::MetaState;

use crate::seam::StateHandle;

use super::types::{
    Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoreError, StoredMembership, TypeConfig,
    begin_durable_write,
};

/// The current snapshot: "meta" → postcard `SnapshotMeta`, "data" → snapshot bytes.
const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_snapshot");
const KEY_META: &str = "meta";
const KEY_DATA: &str = "data";

/// What a snapshot's data holds (postcard-encoded).
#[derive(Default, Serialize, Deserialize)]
pub(crate) struct SnapshotImage {
    pub(crate) state: MetaState,
    pub(crate) last_applied: Option<LogId>,
    pub(crate) membership: StoredMembership,
}

/// The openraft state machine of the metadata store.
pub struct StateMachineStore {
    db: Arc<Database>,
    replica: StateHandle,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    /// Snapshots built by this process, to make snapshot ids unique.
    snapshots_built: u64,
}

impl StateMachineStore {
    /// Opens the state machine in `db`, starting from the persisted snapshot if there is one.
    pub fn open(db: Arc<Database>) -> Result<(Self, StateHandle), StoreError> {
        let txn = begin_durable_write(&db)?;
        txn.open_table(SNAPSHOT)?;
        txn.commit()?;
        let image = match load_snapshot(&db)? {
            Some((meta, data)) => restore_image(&meta, &data)?,
            None => SnapshotImage::default(),
        };
        let replica = StateHandle::new(image.state, index_of(image.last_applied));
        let store = Self {
            db,
            replica: replica.clone(),
            last_applied: image.last_applied,
            last_membership: image.membership,
            snapshots_built: 0,
        };
        Ok((store, replica))
    }

    /// Applies a batch under one write lock, so readers see whole batches.
    fn apply_batch(&mut self, entries: impl IntoIterator<Item = Entry>) -> Vec<MetaResult> {
        let replica = self.replica.clone();
        replica.write(|state| {
            let mut responses = Vec::new();
            for entry in entries {
                self.last_applied = Some(entry.log_id);
                let response = match entry.payload {
                    EntryPayload::Blank => Ok(MetaOutcome::Done),
                    // A rejected command is a committed no-op: its `Err` is the response.
                    EntryPayload::Normal(cmd) => state.apply(&cmd),
                    EntryPayload::Membership(membership) => {
                        self.last_membership =
                            StoredMembership::new(Some(entry.log_id), membership);
                        Ok(MetaOutcome::Done)
                    }
                };
                responses.push(response);
            }
            responses
        })
    }

    fn publish_applied(&self) {
        self.replica.publish_applied(index_of(self.last_applied));
    }

    fn next_snapshot_id(&mut self) -> String {
        self.snapshots_built += 1;
        match &self.last_applied {
            Some(id) => format!("{}-{}-{}", id.leader_id, id.index, self.snapshots_built),
            None => format!("none-{}", self.snapshots_built),
        }
    }
}

fn index_of(log_id: Option<LogId>) -> u64 {
    log_id.map_or(0, |id| id.index)
}

/// A snapshot's data: the format header, then the postcard image.
pub(crate) fn encode_image(image: &SnapshotImage) -> Result<Vec<u8>, StoreError> {
    Ok(postcard::to_extend(image, snapshot_header().to_vec())?)
}

/// Decodes a snapshot's data; the meta is authoritative for the applied id and membership.
fn restore_image(meta: &SnapshotMeta, data: &[u8]) -> Result<SnapshotImage, StoreError> {
    let (_version, payload) = split_snapshot(data)?;
    let image: SnapshotImage = postcard::from_bytes(payload)?;
    Ok(SnapshotImage {
        state: image.state,
        last_applied: meta.last_log_id,
        membership: meta.last_membership.clone(),
    })
}

pub(crate) fn load_snapshot(db: &Database) -> Result<Option<(SnapshotMeta, Vec<u8>)>, StoreError> {
    let txn = db.begin_read()?;
    let table = txn.open_table(SNAPSHOT)?;
    let (Some(meta), Some(data)) = (table.get(KEY_META)?, table.get(KEY_DATA)?) else {
        return Ok(None);
    };
    let meta: SnapshotMeta = postcard::from_bytes(meta.value())?;
    Ok(Some((meta, data.value().to_vec())))
}

/// Makes `meta`/`data` the current snapshot unless a newer one is already stored (a build
/// can race with an install from the leader).
pub(crate) fn persist_snapshot(
    db: &Database,
    meta: &SnapshotMeta,
    data: &[u8],
) -> Result<(), StoreError> {
    let meta_bytes = postcard::to_allocvec(meta)?;
    let txn = begin_durable_write(db)?;
    {
        let mut table = txn.open_table(SNAPSHOT)?;
        let stored = match table.get(KEY_META)? {
            Some(bytes) => Some(postcard::from_bytes::<SnapshotMeta>(bytes.value())?),
            None => None,
        };
        if stored.is_some_and(|s| s.last_log_id > meta.last_log_id) {
            return Ok(());
        }
        table.insert(KEY_META, meta_bytes.as_slice())?;
        table.insert(KEY_DATA, data)?;
    }
    txn.commit()?;
    Ok(())
}

/// Runs blocking store work (encoding, fsync) off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
}

/// Builds a snapshot from a copy of the state taken when openraft asked for the builder.
pub struct SnapshotBuilder {
    db: Arc<Database>,
    meta: SnapshotMeta,
    image: SnapshotImage,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let (db, meta, image) = (
            self.db.clone(),
            self.meta.clone(),
            std::mem::take(&mut self.image),
        );
        let signature = meta.signature();
        let data = blocking(move || {
            let data = encode_image(&image)?;
            persist_snapshot(&db, &meta, &data)?;
            Ok(data)
        })
        .await
        .map_err(|e| StorageIOError::write_snapshot(Some(signature), &e))?;
        Ok(Snapshot {
            meta: self.meta.clone(),
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.last_applied, self.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<MetaResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let responses = self.apply_batch(entries);
        self.publish_applied();
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.last_membership.clone(),
            snapshot_id: self.next_snapshot_id(),
        };
        let state = self.replica.read(MetaState::clone);
        let image = SnapshotImage {
            state,
            last_applied: self.last_applied,
            membership: self.last_membership.clone(),
        };
        SnapshotBuilder {
            db: self.db.clone(),
            meta,
            image,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let (db, stored_meta, data) = (self.db.clone(), meta.clone(), snapshot.into_inner());
        let image = blocking(move || {
            let image = restore_image(&stored_meta, &data)?;
            persist_snapshot(&db, &stored_meta, &data)?;
            Ok(image)
        })
        .await
        .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        self.replica.write(|state| *state = image.state);
        self.last_applied = image.last_applied;
        self.last_membership = image.membership;
        self.publish_applied();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let db = self.db.clone();
        let stored = blocking(move || load_snapshot(&db))
            .await
            .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(stored.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}
