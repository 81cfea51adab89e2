//! The partition database handle: redb, reopened after a failed commit.
//!
//! After an I/O error (a full disk, most often) redb fails every later read and write
//! with "previous I/O error" until the file is closed and opened again; opening runs its
//! recovery. A full disk once left an agent's partition storage unusable until it was
//! restarted, long after space had returned (issue 14). A failed commit changed nothing
//! (redb commits are atomic), so reopening loses nothing.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{PoisonError, RwLock};

use redb::{Database, ReadTransaction, ReadableDatabase, WriteTransaction};

use super::{StoreError, redb_err};

/// One redb database, reopened on first use after a failed commit.
pub(super) struct Db {
    path: PathBuf,
    /// `None` only while a reopen has not succeeded yet.
    slot: RwLock<Option<Database>>,
    /// Set by a failed commit: the next transaction reopens the database first.
    failed: AtomicBool,
}

impl Db {
    /// Wraps a database opened (with [`Database::create`]) from `path`.
    pub(super) fn new(path: &Path, db: Database) -> Db {
        Db {
            path: path.to_path_buf(),
            slot: RwLock::new(Some(db)),
            failed: AtomicBool::new(false),
        }
    }

    /// A read transaction.
    pub(super) fn begin_read(&self) -> Result<ReadTransaction, StoreError> {
        self.with(|db| db.begin_read().map_err(redb_err))
    }

    /// A write transaction (commit it with [`Db::commit`]).
    pub(super) fn begin_write(&self) -> Result<WriteTransaction, StoreError> {
        self.with(|db| db.begin_write().map_err(redb_err))
    }

    /// Commits `txn`; a failure marks the database for reopening.
    pub(super) fn commit(&self, txn: WriteTransaction) -> Result<(), StoreError> {
        txn.commit().map_err(|e| {
            self.failed.store(true, Ordering::Release);
            redb_err(e)
        })
    }

    fn with<T>(&self, f: impl FnOnce(&Database) -> Result<T, StoreError>) -> Result<T, StoreError> {
        if self.failed.load(Ordering::Acquire) {
            self.reopen()?;
        }
        let slot = self.slot.read().unwrap_or_else(PoisonError::into_inner);
        let db = slot
            .as_ref()
            .ok_or_else(|| StoreError::Redb("partition storage is being reopened".into()))?;
        f(db)
    }

    /// Closes and opens the database again. Until a write transaction still running
    /// elsewhere ends, the file stays locked and opening fails: the next call retries.
    fn reopen(&self) -> Result<(), StoreError> {
        let mut slot = self.slot.write().unwrap_or_else(PoisonError::into_inner);
        if !self.failed.load(Ordering::Acquire) {
            return Ok(()); // another thread did it
        }
        drop(slot.take());
        let db = Database::create(&self.path).map_err(redb_err)?;
        *slot = Some(db);
        self.failed.store(false, Ordering::Release);
        tracing::warn!(path = %self.path.display(), "partition storage reopened after a failed write");
        Ok(())
    }
}
