//! Local partition storage: one redb file per agent, one redb table per partition.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;

use redb::{Database, ReadableDatabase, TableDefinition, TableHandle};
use shared::model::PartitionId;

/// File name of the partition database inside the data dir.
pub const PARTITIONS_FILE: &str = "partitions.redb";
const TABLE_PREFIX: &str = "partition-";

/// Why a storage operation failed. A failed allocation or drop leaves the previous state.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// redb failed.
    #[error("partition storage: {0}")]
    Redb(String),
}

fn redb_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Redb(e.to_string())
}

/// Partition storage of one agent. The set of local partitions is read from disk once
/// and then kept in memory: only this store changes it, and the reconciler asks for it on
/// every applied metadata entry.
pub struct PartitionStore {
    db: Database,
    local: Mutex<BTreeSet<PartitionId>>,
}

fn table_name(pid: PartitionId) -> String {
    format!("{TABLE_PREFIX}{pid}")
}

/// Items of a partition keyed by (partition key, sort key) encoding; values are JSON.
type ItemTable<'a> = TableDefinition<'a, &'static [u8], &'static [u8]>;

impl PartitionStore {
    /// Opens (or creates) the partition database in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let db = Database::create(data_dir.join(PARTITIONS_FILE)).map_err(redb_err)?;
        let local = Mutex::new(read_local(&db)?);
        Ok(PartitionStore { db, local })
    }

    /// Partitions that have storage here.
    pub fn list(&self) -> BTreeSet<PartitionId> {
        self.local_set().clone()
    }

    fn local_set(&self) -> std::sync::MutexGuard<'_, BTreeSet<PartitionId>> {
        self.local.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Allocates storage for the partitions (idempotent), durably, in one transaction.
    pub fn allocate(&self, pids: &[PartitionId]) -> Result<(), StoreError> {
        self.write(|txn| {
            for &pid in pids {
                let name = table_name(pid);
                txn.open_table(ItemTable::new(&name)).map_err(redb_err)?;
            }
            Ok(())
        })?;
        self.local_set().extend(pids);
        Ok(())
    }

    /// Drops the storage of the partitions (idempotent), durably, in one transaction.
    pub fn drop_partitions(&self, pids: &[PartitionId]) -> Result<(), StoreError> {
        self.write(|txn| {
            for &pid in pids {
                let name = table_name(pid);
                txn.delete_table(ItemTable::new(&name)).map_err(redb_err)?;
            }
            Ok(())
        })?;
        self.local_set().retain(|p| !pids.contains(p));
        Ok(())
    }

    fn write(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(redb_err)?;
        txn.set_durability(redb::Durability::Immediate)
            .map_err(redb_err)?;
        f(&txn)?;
        txn.commit().map_err(redb_err)
    }
}

/// The partitions that have a table in `db`.
fn read_local(db: &Database) -> Result<BTreeSet<PartitionId>, StoreError> {
    let txn = db.begin_read().map_err(redb_err)?;
    let tables = txn.list_tables().map_err(redb_err)?;
    Ok(tables
        .filter_map(|t| t.name().strip_prefix(TABLE_PREFIX)?.parse().ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocate_list_drop_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = PartitionStore::open(dir.path()).unwrap();
        store.allocate(&[3, 1, 2]).unwrap();
        store.allocate(&[2]).unwrap();
        assert_eq!(store.list(), BTreeSet::from([1, 2, 3]));
        store.drop_partitions(&[2, 9]).unwrap();
        drop(store);
        let store = PartitionStore::open(dir.path()).unwrap();
        assert_eq!(store.list(), BTreeSet::from([1, 3]));
    }
}
