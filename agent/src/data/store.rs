//! Local partition storage: one redb file per agent holding, for each partition, its
//! items, its ordered write log and its metadata.
//!
//! Layout of `partitions.redb`:
//! - `partition-{pid}`: item key ([`item_key`]) → value (JSON bytes);
//! - `log-{pid}`: LSN → postcard-encoded [`WriteRecord`], the records `first_lsn..=position.lsn`;
//! - `positions`: pid → postcard-encoded [`PartitionMeta`] (last position, first LSN still
//!   logged, item count, stored bytes).
//!
//! A partition is allocated when it has a `positions` entry (and its two tables). Every
//! write transaction is committed with [`Durability::Immediate`]: once a call returns
//! `Ok`, its effect survives a crash. A call that returns `Err` changed nothing.

use std::collections::BTreeSet;
use std::ops::Bound;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, Table, TableDefinition,
    TableError, TableHandle, WriteTransaction,
};
use serde::{Deserialize, Serialize};
use shared::data::{LogPosition, WriteOp, WriteRecord, item_key, split_item_key};
use shared::format::PARTITION_STORE_FORMAT;
use shared::keyspace::hash_partition_key;
use shared::model::PartitionId;

use self::db::Db;
use crate::store_format::{StoreFormatError, check_store_format};

/// File name of the partition database inside the data dir.
pub const PARTITIONS_FILE: &str = "partitions.redb";
const TABLE_PREFIX: &str = "partition-";
const LOG_PREFIX: &str = "log-";

/// Items of a partition keyed by [`item_key`]; values are JSON.
type ItemTable<'a> = TableDefinition<'a, &'static [u8], &'static [u8]>;
/// Write log of a partition: LSN → postcard-encoded [`WriteRecord`].
type LogTable<'a> = TableDefinition<'a, u64, &'static [u8]>;
/// Metadata of every partition: pid → postcard-encoded [`PartitionMeta`].
const POSITIONS: TableDefinition<'static, u64, &'static [u8]> = TableDefinition::new("positions");
/// Default size of the chunks a partition copy is sent in (`data.snapshot_chunk_bytes`),
/// so that a partition of any size moves or catches a replica up within the transport's
/// message limit.
pub const SNAPSHOT_CHUNK_BYTES: usize = 4 * 1024 * 1024;

/// Split children or merged partitions being staged (their item tables filled ahead of
/// the fence): new partition → the staging's token. A staged child is not a local partition; a restart
/// discards it. Every batch and the finish check the token, so a staging replaced (by
/// a full derivation, or a new staging) writes nothing more.
const STAGING: TableDefinition<'static, u64, u64> = TableDefinition::new("staging");

/// Why a storage operation failed. Nothing was changed by a call that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// redb failed (IO, full disk, value too large). Nothing changed.
    #[error("partition storage: {0}")]
    Redb(String),
    /// The partition has no storage on this agent. Nothing changed.
    #[error("partition {0} is not allocated on this agent")]
    NotAllocated(PartitionId),
    /// An appended record does not follow the log: `expected` was the next LSN. Nothing
    /// changed; the sender must resend from `expected` (or send a snapshot).
    #[error("partition {pid}: log gap, expected LSN {expected}, got {got}")]
    Gap {
        /// Partition.
        pid: PartitionId,
        /// The LSN the log needed next.
        expected: u64,
        /// The LSN received.
        got: u64,
    },
    /// An appended record at an LSN this replica already holds differs from the held one
    /// (or cannot be compared because it was trimmed). Nothing changed; the replica
    /// needs a snapshot.
    #[error("partition {pid}: log diverged at LSN {lsn}")]
    Diverged {
        /// Partition.
        pid: PartitionId,
        /// The first LSN that differs.
        lsn: u64,
    },
    /// Stored data could not be decoded or breaks an invariant. Nothing changed.
    #[error("partition storage corrupt: {0}")]
    Corrupt(String),
    /// The file holds a format this agent does not read. Nothing was read or changed.
    #[error("{0}")]
    Format(shared::format::FormatError),
}

/// The partition-key hash of a stored item key.
fn item_hash(pid: PartitionId, key: &[u8]) -> Result<u64, StoreError> {
    let (pk, _) = split_item_key(key)
        .ok_or_else(|| StoreError::Corrupt(format!("partition {pid}: bad item key")))?;
    Ok(hash_partition_key(pk))
}

fn redb_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Redb(e.to_string())
}

/// (key, value) pairs: item keys or sort keys with their values, in key order.
pub type KeyValues = Vec<(Vec<u8>, Vec<u8>)>;

/// Counters of one partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionStats {
    /// Number of items.
    pub item_count: u64,
    /// Stored bytes: encoded item keys plus values.
    pub bytes: u64,
}

/// One piece of a consistent copy of a partition (see
/// [`PartitionStore::snapshot_chunks`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotChunk {
    /// The last record the whole copy reflects.
    pub position: LogPosition,
    /// (item key, value), in key order, following the previous chunk's.
    pub items: Vec<(Vec<u8>, Vec<u8>)>,
    /// The copy's first chunk.
    pub first: bool,
    /// The copy's last chunk.
    pub last: bool,
}

/// A consistent copy of one partition: every item and the log position it reflects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionSnapshot {
    /// The last record the items reflect.
    pub position: LogPosition,
    /// (item key, value), in key order.
    pub items: Vec<(Vec<u8>, Vec<u8>)>,
}

/// What `positions` keeps per partition. The log holds exactly `first_lsn..=position.lsn`
/// (empty when `first_lsn == position.lsn + 1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PartitionMeta {
    position: LogPosition,
    first_lsn: u64,
    item_count: u64,
    bytes: u64,
}

impl PartitionMeta {
    /// A record with these figures (golden-bytes samples).
    #[cfg(test)]
    pub(crate) fn sample(
        position: LogPosition,
        first_lsn: u64,
        item_count: u64,
        bytes: u64,
    ) -> Self {
        PartitionMeta {
            position,
            first_lsn,
            item_count,
            bytes,
        }
    }

    /// An empty partition whose next record is `position.lsn + 1`.
    fn at(position: LogPosition) -> Self {
        PartitionMeta {
            position,
            first_lsn: position.lsn + 1,
            item_count: 0,
            bytes: 0,
        }
    }

    fn stats(&self) -> PartitionStats {
        PartitionStats {
            item_count: self.item_count,
            bytes: self.bytes,
        }
    }

    fn add_item(&mut self, bytes: usize) {
        self.item_count += 1;
        self.bytes += bytes as u64;
    }

    fn remove_item(&mut self, pid: PartitionId, bytes: usize) -> Result<(), StoreError> {
        let count = self.item_count.checked_sub(1);
        let left = self.bytes.checked_sub(bytes as u64);
        let (Some(count), Some(left)) = (count, left) else {
            return Err(StoreError::Corrupt(format!(
                "partition {pid}: item stats underflow"
            )));
        };
        (self.item_count, self.bytes) = (count, left);
        Ok(())
    }

    /// Whether the record at `lsn` is still in the log.
    fn logged(&self, lsn: u64) -> bool {
        lsn >= self.first_lsn && lsn <= self.position.lsn
    }
}

/// Partition storage of one agent. The set of local partitions is read from disk once
/// and then kept in memory: only this store changes it, and the reconciler asks for it on
/// every applied metadata entry.
pub struct PartitionStore {
    db: Db,
    local: Mutex<BTreeSet<PartitionId>>,
    /// Held across the transactions that allocate or drop partitions and the update of
    /// `local` that follows, so the set follows the disk's order of commits.
    layout: Mutex<()>,
    /// Times each partition's log was replaced (a snapshot installed, or the partition
    /// dropped) since this process started, bumped under `layout`: a staging whose
    /// sources were not rewritten since knows their logs only grew.
    rewrites: Mutex<std::collections::HashMap<PartitionId, u64>>,
}

fn table_name(pid: PartitionId) -> String {
    format!("{TABLE_PREFIX}{pid}")
}

fn log_name(pid: PartitionId) -> String {
    format!("{LOG_PREFIX}{pid}")
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl PartitionStore {
    /// Opens (or creates) the partition database in `data_dir`. Partitions allocated by an
    /// older version (item table only) get their log and metadata here.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join(PARTITIONS_FILE);
        let db = Database::create(&path).map_err(redb_err)?;
        check_store_format(
            &db,
            "the partition store (partitions.redb)",
            PARTITION_STORE_FORMAT,
        )
        .map_err(|e| match e {
            StoreFormatError::Format(e) => StoreError::Format(e),
            StoreFormatError::Db(e) => redb_err(e),
        })?;
        discard_staged(&db)?;
        let (local, missing_meta) = read_local(&db)?;
        let store = PartitionStore {
            db: Db::new(&path, db),
            local: Mutex::new(local),
            layout: Mutex::new(()),
            rewrites: Mutex::default(),
        };
        if !missing_meta.is_empty() {
            store.allocate(&missing_meta)?;
        }
        Ok(store)
    }

    /// Partitions that have storage here.
    pub fn list(&self) -> BTreeSet<PartitionId> {
        lock(&self.local).clone()
    }

    /// Allocates storage for the partitions (idempotent: an allocated partition keeps its
    /// items and log), durably, in one transaction.
    pub fn allocate(&self, pids: &[PartitionId]) -> Result<(), StoreError> {
        let _layout = lock(&self.layout);
        self.write(|txn| {
            let mut positions = txn.open_table(POSITIONS).map_err(redb_err)?;
            for &pid in pids {
                let items = txn
                    .open_table(ItemTable::new(&table_name(pid)))
                    .map_err(redb_err)?;
                txn.open_table(LogTable::new(&log_name(pid)))
                    .map_err(redb_err)?;
                if positions.get(pid).map_err(redb_err)?.is_none() {
                    // Normally empty; not so only for an item table of an older version.
                    let meta = count_items(&items, PartitionMeta::at(LogPosition::default()))?;
                    store_meta(&mut positions, pid, &meta)?;
                }
            }
            Ok(())
        })?;
        lock(&self.local).extend(pids);
        Ok(())
    }

    /// Drops the storage of the partitions (items, log, metadata; idempotent), durably,
    /// in one transaction.
    pub fn drop_partitions(&self, pids: &[PartitionId]) -> Result<(), StoreError> {
        let _layout = lock(&self.layout);
        self.write(|txn| {
            let mut positions = txn.open_table(POSITIONS).map_err(redb_err)?;
            for &pid in pids {
                txn.delete_table(ItemTable::new(&table_name(pid)))
                    .map_err(redb_err)?;
                txn.delete_table(LogTable::new(&log_name(pid)))
                    .map_err(redb_err)?;
                positions.remove(pid).map_err(redb_err)?;
            }
            Ok(())
        })?;
        self.rewritten(pids);
        lock(&self.local).retain(|p| !pids.contains(p));
        Ok(())
    }

    /// Last durable record; (0,0) when the log is empty.
    pub fn position(&self, pid: PartitionId) -> Result<LogPosition, StoreError> {
        Ok(self.read_meta(pid)?.position)
    }

    /// Item count and stored bytes (encoded item keys plus values).
    pub fn stats(&self, pid: PartitionId) -> Result<PartitionStats, StoreError> {
        Ok(self.read_meta(pid)?.stats())
    }

    /// Appends records in LSN order and applies them to the items, in one durable
    /// transaction, returning the new position. Each new record's LSN must follow the
    /// last one; a record at an LSN already held is skipped if it equals the held one
    /// (redelivery), else the whole call fails with [`StoreError::Diverged`]; a gap fails
    /// with [`StoreError::Gap`]. Nothing is written on error, nor when every record was
    /// already held.
    pub fn append(
        &self,
        pid: PartitionId,
        records: &[WriteRecord],
    ) -> Result<LogPosition, StoreError> {
        let txn = self.begin_write()?;
        let after = {
            let mut positions = txn.open_table(POSITIONS).map_err(redb_err)?;
            let before = load_meta(&positions, pid)?;
            let mut log = txn
                .open_table(LogTable::new(&log_name(pid)))
                .map_err(redb_err)?;
            let mut items = txn
                .open_table(ItemTable::new(&table_name(pid)))
                .map_err(redb_err)?;
            let mut meta = before;
            for record in records {
                append_one(pid, &mut log, &mut items, &mut meta, record)?;
            }
            if meta == before {
                return Ok(before.position); // dropping `txn` aborts it
            }
            store_meta(&mut positions, pid, &meta)?;
            meta
        };
        self.db.commit(txn)?;
        Ok(after.position)
    }

    /// The value stored under (partition key, sort key).
    pub fn get(
        &self,
        pid: PartitionId,
        partition_key: &[u8],
        sort_key: Option<&[u8]>,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read()?;
        let items = open_items(&txn, pid)?;
        let key = item_key(partition_key, sort_key);
        let value = items.get(key.as_slice()).map_err(redb_err)?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    /// Items of one partition key with sort key in `[from, to]` (inclusive, `None` =
    /// unbounded), in sort-key order, at most `limit`: (sort key bytes, value) pairs, and
    /// whether more matched.
    pub fn query(
        &self,
        pid: PartitionId,
        partition_key: &[u8],
        from: Option<&[u8]>,
        to: Option<&[u8]>,
        limit: usize,
    ) -> Result<(KeyValues, bool), StoreError> {
        let txn = self.db.begin_read()?;
        let items = open_items(&txn, pid)?;
        if let (Some(from), Some(to)) = (from, to)
            && from > to
        {
            return Ok((Vec::new(), false));
        }
        let prefix = item_key(partition_key, None);
        let start = item_key(partition_key, Some(from.unwrap_or_default()));
        let end = to.map(|to| item_key(partition_key, Some(to)));
        let end = end.as_deref().map_or(Bound::Unbounded, Bound::Included);
        let range = items
            .range::<&[u8]>((Bound::Included(start.as_slice()), end))
            .map_err(redb_err)?;
        let mut out = Vec::new();
        for entry in range {
            let (key, value) = entry.map_err(redb_err)?;
            let Some(sort_key) = key.value().strip_prefix(prefix.as_slice()) else {
                break; // past the last item of this partition key
            };
            if out.len() == limit {
                return Ok((out, true));
            }
            out.push((sort_key.to_vec(), value.value().to_vec()));
        }
        Ok((out, false))
    }

    /// Records with LSN > `after`, in order, at most `max_records`; `Ok(None)` when some
    /// of them were trimmed from the log (the caller must send a snapshot instead).
    /// Empty when `after >= position.lsn`.
    pub fn log_after(
        &self,
        pid: PartitionId,
        after: u64,
        max_records: usize,
    ) -> Result<Option<Vec<WriteRecord>>, StoreError> {
        let txn = self.db.begin_read()?;
        let meta = load_meta(&open_read(&txn, POSITIONS, pid)?, pid)?;
        if after >= meta.position.lsn {
            return Ok(Some(Vec::new()));
        }
        if after + 1 < meta.first_lsn {
            return Ok(None);
        }
        let log = open_read(&txn, LogTable::new(&log_name(pid)), pid)?;
        let range = log.range(after + 1..=meta.position.lsn).map_err(redb_err)?;
        let mut out = Vec::with_capacity(max_records.min(1024));
        for entry in range.take(max_records) {
            let (lsn, bytes) = entry.map_err(redb_err)?;
            out.push(decode_record(pid, lsn.value(), bytes.value())?);
        }
        Ok(Some(out))
    }

    /// Epoch of the record at `lsn` if it is still in the log (`lsn` 0 → `Some(0)`; the
    /// last record's epoch is known from the position even when trimmed).
    pub fn epoch_at(&self, pid: PartitionId, lsn: u64) -> Result<Option<u64>, StoreError> {
        let txn = self.db.begin_read()?;
        let meta = load_meta(&open_read(&txn, POSITIONS, pid)?, pid)?;
        if lsn == 0 {
            return Ok(Some(0));
        }
        if lsn == meta.position.lsn {
            return Ok(Some(meta.position.epoch));
        }
        if !meta.logged(lsn) {
            return Ok(None);
        }
        let log = open_read(&txn, LogTable::new(&log_name(pid)), pid)?;
        let Some(bytes) = log.get(lsn).map_err(redb_err)? else {
            return Err(missing_record(pid, lsn));
        };
        // A postcard WriteRecord starts with its lsn and epoch: decode only those.
        let ((at, epoch), _) = postcard::take_from_bytes::<(u64, u64)>(bytes.value())
            .map_err(|e| corrupt_record(pid, lsn, e))?;
        if at != lsn {
            return Err(corrupt_record(pid, lsn, format!("holds LSN {at}")));
        }
        Ok(Some(epoch))
    }

    /// A consistent snapshot (one read transaction).
    pub fn snapshot(&self, pid: PartitionId) -> Result<PartitionSnapshot, StoreError> {
        let txn = self.db.begin_read()?;
        let meta = load_meta(&open_read(&txn, POSITIONS, pid)?, pid)?;
        let items = open_read(&txn, ItemTable::new(&table_name(pid)), pid)?;
        let mut out = Vec::with_capacity(usize::try_from(meta.item_count).unwrap_or(0));
        for entry in items.iter().map_err(redb_err)? {
            let (key, value) = entry.map_err(redb_err)?;
            out.push((key.value().to_vec(), value.value().to_vec()));
        }
        Ok(PartitionSnapshot {
            position: meta.position,
            items: out,
        })
    }

    /// Reads a consistent copy of `pid` (one read transaction) and hands it to `sink` in
    /// chunks of about `chunk_bytes` of items, in key order, the first chunk marked
    /// `first` and the last `last` (one chunk for an empty partition). Returns the
    /// position the copy reflects. Stops at the first error of `sink`.
    pub fn snapshot_chunks(
        &self,
        pid: PartitionId,
        chunk_bytes: usize,
        mut sink: impl FnMut(SnapshotChunk) -> Result<(), StoreError>,
    ) -> Result<LogPosition, StoreError> {
        let txn = self.db.begin_read()?;
        let meta = load_meta(&open_read(&txn, POSITIONS, pid)?, pid)?;
        let items = open_read(&txn, ItemTable::new(&table_name(pid)), pid)?;
        let mut chunk = SnapshotChunk {
            position: meta.position,
            items: Vec::new(),
            first: true,
            last: false,
        };
        let mut size = 0;
        for entry in items.iter().map_err(redb_err)? {
            let (key, value) = entry.map_err(redb_err)?;
            if size >= chunk_bytes {
                let next = SnapshotChunk {
                    position: meta.position,
                    items: Vec::new(),
                    first: false,
                    last: false,
                };
                sink(std::mem::replace(&mut chunk, next))?;
                size = 0;
            }
            size += key.value().len() + value.value().len();
            chunk
                .items
                .push((key.value().to_vec(), value.value().to_vec()));
        }
        chunk.last = true;
        sink(chunk)?;
        Ok(meta.position)
    }

    /// Installs one chunk of a snapshot: the first replaces the partition's items and
    /// empties its log, each adds its items, and the last sets the position (the next
    /// append must be `position.lsn + 1`); until then the partition is at position
    /// (0, 0), so that a copy left half-installed is filled anew. Each chunk is one
    /// durable transaction. Allocates the partition if needed.
    pub fn install_snapshot_chunk(
        &self,
        pid: PartitionId,
        chunk: &SnapshotChunk,
    ) -> Result<(), StoreError> {
        let _layout = lock(&self.layout);
        self.write(|txn| {
            let (items_def, log_def) = (table_name(pid), log_name(pid));
            let mut positions = txn.open_table(POSITIONS).map_err(redb_err)?;
            let mut meta = if chunk.first {
                txn.delete_table(ItemTable::new(&items_def))
                    .map_err(redb_err)?;
                txn.delete_table(LogTable::new(&log_def))
                    .map_err(redb_err)?;
                txn.open_table(LogTable::new(&log_def)).map_err(redb_err)?;
                PartitionMeta::at(LogPosition::default())
            } else {
                load_meta(&positions, pid)?
            };
            let mut items = txn
                .open_table(ItemTable::new(&items_def))
                .map_err(redb_err)?;
            for (key, value) in &chunk.items {
                put_item(pid, &mut items, &mut meta, key, value)?;
            }
            if chunk.last {
                meta.position = chunk.position;
                meta.first_lsn = chunk.position.lsn + 1;
            }
            store_meta(&mut positions, pid, &meta)
        })?;
        if chunk.first {
            self.rewritten(&[pid]);
        }
        lock(&self.local).insert(pid);
        Ok(())
    }

    /// Replaces the partition's items with the snapshot's, empties the log and sets the
    /// position (the next append must be `position.lsn + 1`), in one durable transaction.
    /// Allocates the partition if needed.
    pub fn install_snapshot(
        &self,
        pid: PartitionId,
        snapshot: &PartitionSnapshot,
    ) -> Result<(), StoreError> {
        let whole = SnapshotChunk {
            position: snapshot.position,
            items: snapshot.items.clone(),
            first: true,
            last: true,
        };
        self.install_snapshot_chunk(pid, &whole)
    }

    /// Counts a replacement of these partitions' logs (see `rewrites`).
    fn rewritten(&self, pids: &[PartitionId]) {
        let mut rewrites = lock(&self.rewrites);
        for pid in pids {
            *rewrites.entry(*pid).or_default() += 1;
        }
    }

    /// How many times `pid`'s log was replaced since this process started.
    fn rewrites_of(&self, pid: PartitionId) -> u64 {
        lock(&self.rewrites).get(&pid).copied().unwrap_or(0)
    }

    /// The distinct partition-key hashes of a partition's items (what the split point is
    /// chosen from), with the position they reflect (one read transaction).
    pub fn key_hashes(&self, pid: PartitionId) -> Result<(Vec<u64>, LogPosition), StoreError> {
        let txn = self.db.begin_read()?;
        let meta = load_meta(&open_read(&txn, POSITIONS, pid)?, pid)?;
        let items = open_read(&txn, ItemTable::new(&table_name(pid)), pid)?;
        let mut hashes = Vec::new();
        let mut last_key: Option<Vec<u8>> = None;
        for entry in items.iter().map_err(redb_err)? {
            let (key, _) = entry.map_err(redb_err)?;
            let key = key.value();
            let (pk, _) = split_item_key(key)
                .ok_or_else(|| StoreError::Corrupt(format!("partition {pid}: bad item key")))?;
            // Items of one partition key are contiguous: one hash per key.
            if last_key.as_deref() != Some(pk) {
                hashes.push(hash_partition_key(pk));
                last_key = Some(pk.to_vec());
            }
        }
        Ok((hashes, meta.position))
    }

    /// Drops the oldest log records so that at most `keep` remain; items are unaffected.
    pub fn trim_log(&self, pid: PartitionId, keep: u64) -> Result<(), StoreError> {
        let txn = self.begin_write()?;
        {
            let mut positions = txn.open_table(POSITIONS).map_err(redb_err)?;
            let mut meta = load_meta(&positions, pid)?;
            let new_first = (meta.position.lsn + 1).saturating_sub(keep);
            if new_first <= meta.first_lsn {
                return Ok(()); // nothing to trim; dropping `txn` aborts it
            }
            let mut log = txn
                .open_table(LogTable::new(&log_name(pid)))
                .map_err(redb_err)?;
            log.retain_in(meta.first_lsn..new_first, |_, _| false)
                .map_err(redb_err)?;
            meta.first_lsn = new_first;
            store_meta(&mut positions, pid, &meta)?;
        }
        self.db.commit(txn)
    }

    fn read_meta(&self, pid: PartitionId) -> Result<PartitionMeta, StoreError> {
        let txn = self.db.begin_read()?;
        load_meta(&open_read(&txn, POSITIONS, pid)?, pid)
    }

    fn begin_write(&self) -> Result<WriteTransaction, StoreError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)
            .map_err(redb_err)?;
        Ok(txn)
    }

    /// Runs `f` in one durable write transaction, committed only if `f` succeeds.
    fn write(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let txn = self.begin_write()?;
        f(&txn)?;
        self.db.commit(txn)
    }
}

/// Appends one record to the log and applies it, or checks a redelivered one.
fn append_one(
    pid: PartitionId,
    log: &mut Table<u64, &'static [u8]>,
    items: &mut Table<&'static [u8], &'static [u8]>,
    meta: &mut PartitionMeta,
    record: &WriteRecord,
) -> Result<(), StoreError> {
    let encoded = postcard::to_allocvec(record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let expected = meta.position.lsn + 1;
    if record.lsn < expected {
        return check_redelivered(pid, log, meta, record, &encoded);
    }
    if record.lsn > expected {
        return Err(StoreError::Gap {
            pid,
            expected,
            got: record.lsn,
        });
    }
    // Epochs only grow along a log: a record of an older epoch after a newer one comes
    // from a deposed primary (its sender is behind this copy).
    if record.epoch < meta.position.epoch {
        return Err(StoreError::Diverged {
            pid,
            lsn: record.lsn,
        });
    }
    log.insert(record.lsn, encoded.as_slice())
        .map_err(redb_err)?;
    let key = item_key(&record.partition_key, record.sort_key.as_deref());
    match &record.op {
        WriteOp::Put(value) => put_item(pid, items, meta, &key, value)?,
        WriteOp::Delete => {
            let old = items.remove(key.as_slice()).map_err(redb_err)?;
            if let Some(old_len) = old.map(|v| v.value().len()) {
                meta.remove_item(pid, key.len() + old_len)?;
            }
        }
    }
    meta.position = LogPosition {
        lsn: record.lsn,
        epoch: record.epoch,
    };
    Ok(())
}

/// Accepts a record at an LSN already held only if it is the held one. A trimmed record
/// can be compared only at the last position (by epoch: one primary per epoch assigns
/// each LSN once); an older trimmed one counts as diverged.
fn check_redelivered(
    pid: PartitionId,
    log: &Table<u64, &'static [u8]>,
    meta: &PartitionMeta,
    record: &WriteRecord,
    encoded: &[u8],
) -> Result<(), StoreError> {
    let lsn = record.lsn;
    let same = if meta.logged(lsn) {
        let held = log.get(lsn).map_err(redb_err)?;
        let held = held.ok_or_else(|| missing_record(pid, lsn))?;
        held.value() == encoded
    } else {
        lsn != 0 && lsn == meta.position.lsn && record.epoch == meta.position.epoch
    };
    if same {
        Ok(())
    } else {
        Err(StoreError::Diverged { pid, lsn })
    }
}

/// Stores `value` under `key`, keeping the counters exact whether or not it replaces one.
fn put_item(
    pid: PartitionId,
    items: &mut Table<&'static [u8], &'static [u8]>,
    meta: &mut PartitionMeta,
    key: &[u8],
    value: &[u8],
) -> Result<(), StoreError> {
    let old = items.insert(key, value).map_err(redb_err)?;
    if let Some(old_len) = old.map(|v| v.value().len()) {
        meta.remove_item(pid, key.len() + old_len)?;
    }
    meta.add_item(key.len() + value.len());
    Ok(())
}

/// `meta` with the counters of the items already in `items`.
fn count_items(
    items: &impl ReadableTable<&'static [u8], &'static [u8]>,
    mut meta: PartitionMeta,
) -> Result<PartitionMeta, StoreError> {
    for entry in items.iter().map_err(redb_err)? {
        let (key, value) = entry.map_err(redb_err)?;
        meta.add_item(key.value().len() + value.value().len());
    }
    Ok(meta)
}

/// Opens a table for reading; a missing table means the partition is not allocated.
fn open_read<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &ReadTransaction,
    def: TableDefinition<K, V>,
    pid: PartitionId,
) -> Result<redb::ReadOnlyTable<K, V>, StoreError> {
    txn.open_table(def).map_err(|e| match e {
        TableError::TableDoesNotExist(_) => StoreError::NotAllocated(pid),
        e => redb_err(e),
    })
}

/// The items of an allocated partition. A split's or merge's child being staged has an
/// items table but no position until its staging finishes: it reads as not allocated (a
/// primary once served "not found" from a staging a full disk had cut short, issue 14).
fn open_items(
    txn: &ReadTransaction,
    pid: PartitionId,
) -> Result<redb::ReadOnlyTable<&'static [u8], &'static [u8]>, StoreError> {
    load_meta(&open_read(txn, POSITIONS, pid)?, pid)?;
    open_read(txn, ItemTable::new(&table_name(pid)), pid)
}

fn load_meta(
    positions: &impl ReadableTable<u64, &'static [u8]>,
    pid: PartitionId,
) -> Result<PartitionMeta, StoreError> {
    let bytes = positions.get(pid).map_err(redb_err)?;
    let bytes = bytes.ok_or(StoreError::NotAllocated(pid))?;
    postcard::from_bytes(bytes.value())
        .map_err(|e| StoreError::Corrupt(format!("partition {pid} metadata: {e}")))
}

fn store_meta(
    positions: &mut Table<u64, &'static [u8]>,
    pid: PartitionId,
    meta: &PartitionMeta,
) -> Result<(), StoreError> {
    debug_assert!(meta.first_lsn <= meta.position.lsn + 1, "{meta:?}");
    let bytes = postcard::to_allocvec(meta).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    positions.insert(pid, bytes.as_slice()).map_err(redb_err)?;
    Ok(())
}

fn decode_record(pid: PartitionId, lsn: u64, bytes: &[u8]) -> Result<WriteRecord, StoreError> {
    let record: WriteRecord =
        postcard::from_bytes(bytes).map_err(|e| corrupt_record(pid, lsn, e))?;
    if record.lsn != lsn {
        return Err(corrupt_record(
            pid,
            lsn,
            format!("holds LSN {}", record.lsn),
        ));
    }
    Ok(record)
}

fn corrupt_record(pid: PartitionId, lsn: u64, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("partition {pid} log record {lsn}: {e}"))
}

fn missing_record(pid: PartitionId, lsn: u64) -> StoreError {
    corrupt_record(pid, lsn, "missing from the log")
}

/// The partitions that have an item table in `db`, and those of them without metadata
/// (allocated by an older version).
/// Drops the item tables of split children staged before a restart (and the staging
/// records): the split either committed, and the reconciler derives them in full, or not.
fn discard_staged(db: &Database) -> Result<(), StoreError> {
    let any = match db.begin_read().map_err(redb_err)?.open_table(STAGING) {
        Ok(staging) => !redb::ReadableTableMetadata::is_empty(&staging).map_err(redb_err)?,
        Err(TableError::TableDoesNotExist(_)) => false,
        Err(e) => return Err(redb_err(e)),
    };
    if !any {
        return Ok(());
    }
    let mut txn = db.begin_write().map_err(redb_err)?;
    txn.set_durability(Durability::Immediate)
        .map_err(redb_err)?;
    {
        let mut staging = txn.open_table(STAGING).map_err(redb_err)?;
        let staged: Vec<u64> = staging
            .iter()
            .map_err(redb_err)?
            .map(|e| e.map(|(child, _)| child.value()))
            .collect::<Result<_, _>>()
            .map_err(redb_err)?;
        for child in staged {
            txn.delete_table(ItemTable::new(&table_name(child)))
                .map_err(redb_err)?;
            staging.remove(child).map_err(redb_err)?;
        }
    }
    txn.commit().map_err(redb_err)
}

fn read_local(db: &Database) -> Result<(BTreeSet<PartitionId>, Vec<PartitionId>), StoreError> {
    let txn = db.begin_read().map_err(redb_err)?;
    let tables = txn.list_tables().map_err(redb_err)?;
    let local: BTreeSet<PartitionId> = tables
        .filter_map(|t| t.name().strip_prefix(TABLE_PREFIX)?.parse().ok())
        .collect();
    let positions = match txn.open_table(POSITIONS) {
        Ok(t) => Some(t),
        Err(TableError::TableDoesNotExist(_)) => None,
        Err(e) => return Err(redb_err(e)),
    };
    let mut missing = Vec::new();
    for &pid in &local {
        let has_meta = match &positions {
            Some(t) => t.get(pid).map_err(redb_err)?.is_some(),
            None => false,
        };
        if !has_meta {
            missing.push(pid);
        }
    }
    Ok((local, missing))
}

mod db;
mod derive;
#[cfg(test)]
mod tests;

pub use derive::StagedDerivation;
