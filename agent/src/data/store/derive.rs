//! Partitions derived in place from local ones: the children of a split from their
//! parent, a merged partition from its two sides. Each new partition gets the sources'
//! items whose partition-key hash is in its range and the log position
//! `shared::data::derived_position` of the sources' positions (its log starts empty
//! after it), either all at once under the fence ([`PartitionStore::derive_local`]) or
//! staged ahead of it while writes go on ([`PartitionStore::stage`]) and finished under
//! it by applying the few records logged since ([`PartitionStore::finish_stage`]).

use redb::{ReadableTable, WriteTransaction};
use shared::data::{LogPosition, WriteOp, WriteRecord, derived_position, item_key};
use shared::keyspace::hash_partition_key;
use shared::model::{KeyRange, PartitionId};

use super::{
    ItemTable, LogTable, POSITIONS, PartitionMeta, PartitionStore, STAGING, StoreError, item_hash,
    load_meta, lock, log_name, missing_record, open_read, put_item, redb_err, store_meta,
    table_name,
};

/// Tokens of stagings (unique within a process; a restart discards every staging).
static STAGING_TOKENS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
/// Items copied per transaction while staging, so that the copy never holds redb's
/// single writer for long (other partitions' writes interleave).
const STAGE_BATCH_ITEMS: usize = 1024;
/// A staging is caught up with its sources (by the records logged since, outside the
/// fence) until at most this many remain for the fenced finish...
const STAGE_SETTLED_RECORDS: u64 = 16;
/// ...or for at most this many rounds (writes may outpace it).
const STAGE_REFRESH_ROUNDS: usize = 4;

/// One source of a staging: where its staged items are, and how many times its log had
/// been replaced then (`PartitionStore::rewrites`).
#[derive(Debug, Clone, Copy)]
struct StagedSource {
    pid: PartitionId,
    position: LogPosition,
    rewrites: u64,
}

/// New partitions staged from their sources' items as of the sources' `positions` (see
/// [`PartitionStore::stage`]), waiting for [`PartitionStore::finish_stage`].
#[derive(Debug, Clone)]
pub struct StagedDerivation {
    /// The sources and the positions the staged items reflect.
    sources: Vec<StagedSource>,
    token: u64,
    children: Vec<(PartitionId, KeyRange, PartitionMeta)>,
}

impl StagedDerivation {
    /// The position the staged items reflect (derived from the sources').
    pub fn position(&self) -> LogPosition {
        let positions: Vec<LogPosition> = self.sources.iter().map(|s| s.position).collect();
        derived_position(&positions)
    }

    /// Whether this staging is of exactly these sources into exactly these children.
    pub fn is_for(&self, sources: &[PartitionId], children: &[(PartitionId, KeyRange)]) -> bool {
        self.sources.iter().map(|s| &s.pid).eq(sources.iter())
            && self.children.len() == children.len()
            && self
                .children
                .iter()
                .zip(children)
                .all(|((c, r, _), (c2, r2))| c == c2 && r == r2)
    }
}

/// Fails unless every child of `staged` is still staged by it (not replaced by a full
/// derivation or by another staging).
fn check_staged(txn: &WriteTransaction, staged: &StagedDerivation) -> Result<(), StoreError> {
    let staging = txn.open_table(STAGING).map_err(redb_err)?;
    for (child, _, _) in &staged.children {
        if staging.get(*child).map_err(redb_err)?.map(|t| t.value()) != Some(staged.token) {
            return Err(StoreError::Corrupt(format!(
                "partition {child} derived from {:?} is not staged by this staging",
                staged.sources
            )));
        }
    }
    Ok(())
}

/// Index of the child whose range holds `hash`, if any.
fn child_of(children: &[(PartitionId, KeyRange)], hash: u64) -> Option<usize> {
    children.iter().position(|(_, r)| r.contains(hash))
}

fn check_sources_local(
    local: &std::collections::BTreeSet<PartitionId>,
    sources: &[PartitionId],
) -> Result<(), StoreError> {
    match sources.iter().find(|s| !local.contains(s)) {
        Some(missing) => Err(StoreError::NotAllocated(*missing)),
        None if sources.is_empty() => {
            Err(StoreError::Corrupt("a derivation needs a source".into()))
        }
        None => Ok(()),
    }
}

impl PartitionStore {
    /// Derives new partitions from local sources, in one durable transaction: each gets
    /// the sources' items whose partition-key hash is in its range and the derived log
    /// position. Idempotent: children already stored are left as they are. The sources
    /// are kept (the reconciler drops them later).
    pub fn derive_local(
        &self,
        sources: &[PartitionId],
        children: &[(PartitionId, KeyRange)],
    ) -> Result<LogPosition, StoreError> {
        let _layout = lock(&self.layout);
        let local = self.list();
        check_sources_local(&local, sources)?;
        let todo: Vec<(PartitionId, KeyRange)> = children
            .iter()
            .filter(|(c, _)| !local.contains(c))
            .copied()
            .collect();
        let positions = sources
            .iter()
            .map(|s| self.position(*s))
            .collect::<Result<Vec<_>, _>>()?;
        let position = derived_position(&positions);
        if todo.is_empty() {
            return Ok(position);
        }
        self.write(|txn| {
            let mut metas: Vec<PartitionMeta> =
                todo.iter().map(|_| PartitionMeta::at(position)).collect();
            let mut tables = Vec::with_capacity(todo.len());
            // A partial staging of the same children is replaced by the full derivation.
            let mut staging = txn.open_table(STAGING).map_err(redb_err)?;
            for (child, _) in &todo {
                staging.remove(*child).map_err(redb_err)?;
                txn.delete_table(ItemTable::new(&table_name(*child)))
                    .map_err(redb_err)?;
            }
            for (child, _) in &todo {
                txn.open_table(LogTable::new(&log_name(*child)))
                    .map_err(redb_err)?;
                tables.push(
                    txn.open_table(ItemTable::new(&table_name(*child)))
                        .map_err(redb_err)?,
                );
            }
            for &source in sources {
                let items = txn
                    .open_table(ItemTable::new(&table_name(source)))
                    .map_err(redb_err)?;
                for entry in items.iter().map_err(redb_err)? {
                    let (key, value) = entry.map_err(redb_err)?;
                    let (key, value) = (key.value(), value.value());
                    let Some(i) = child_of(&todo, item_hash(source, key)?) else {
                        continue;
                    };
                    put_item(todo[i].0, &mut tables[i], &mut metas[i], key, value)?;
                }
            }
            let mut positions = txn.open_table(POSITIONS).map_err(redb_err)?;
            for ((child, _), meta) in todo.iter().zip(&metas) {
                store_meta(&mut positions, *child, meta)?;
            }
            Ok(())
        })?;
        lock(&self.local).extend(todo.iter().map(|(c, _)| *c));
        Ok(position)
    }

    /// Stages new partitions ahead of the fence: copies the sources' items, each as of
    /// one consistent snapshot, into the new partitions' tables, a batch per transaction
    /// (writes to these and other partitions go on meanwhile), then applies the records
    /// logged meanwhile until few are left. The new partitions are
    /// not local until [`PartitionStore::finish_stage`]; a restart discards them.
    pub fn stage(
        &self,
        sources: &[PartitionId],
        children: &[(PartitionId, KeyRange)],
    ) -> Result<StagedDerivation, StoreError> {
        let local = self.list();
        check_sources_local(&local, sources)?;
        if let Some((child, _)) = children.iter().find(|(c, _)| local.contains(c)) {
            return Err(StoreError::Corrupt(format!(
                "partition {child} to derive from {sources:?} is already a local partition"
            )));
        }
        let token = STAGING_TOKENS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        {
            let _layout = lock(&self.layout);
            self.write(|txn| {
                let mut staging = txn.open_table(STAGING).map_err(redb_err)?;
                for &(child, _) in children {
                    txn.delete_table(ItemTable::new(&table_name(child)))
                        .map_err(redb_err)?;
                    txn.open_table(ItemTable::new(&table_name(child)))
                        .map_err(redb_err)?;
                    staging.insert(child, token).map_err(redb_err)?;
                }
                Ok(())
            })?;
        }
        // Each meta counts the items staged; its position is set when the staging ends.
        let mut staged = StagedDerivation {
            sources: Vec::with_capacity(sources.len()),
            token,
            children: children
                .iter()
                .map(|&(c, r)| (c, r, PartitionMeta::at(LogPosition::default())))
                .collect(),
        };
        let mut batch: Vec<(usize, Vec<u8>, Vec<u8>)> = Vec::with_capacity(STAGE_BATCH_ITEMS);
        for &source in sources {
            // Counted before the read: a replacement after it shows at the finish.
            let rewrites = self.rewrites_of(source);
            let read = self.db.begin_read()?;
            let meta = load_meta(&open_read(&read, POSITIONS, source)?, source)?;
            staged.sources.push(StagedSource {
                pid: source,
                position: meta.position,
                rewrites,
            });
            let items = open_read(&read, ItemTable::new(&table_name(source)), source)?;
            for entry in items.iter().map_err(redb_err)? {
                let (key, value) = entry.map_err(redb_err)?;
                let Some(i) = child_of(children, item_hash(source, key.value())?) else {
                    continue;
                };
                batch.push((i, key.value().to_vec(), value.value().to_vec()));
                if batch.len() >= STAGE_BATCH_ITEMS {
                    self.stage_batch(&mut staged, &mut batch)?;
                }
            }
        }
        self.stage_batch(&mut staged, &mut batch)?;
        // The copy took a while and writes went on: catch up before the fence.
        for _ in 0..STAGE_REFRESH_ROUNDS {
            if self.behind(&staged)? <= STAGE_SETTLED_RECORDS {
                break;
            }
            self.refresh_stage(&mut staged)?;
        }
        Ok(staged)
    }

    /// Writes one batch of staged items, durably: a non-durable batch would leave its
    /// pages for the next durable commit to flush, and that may be the fenced one, or
    /// another partition's write.
    fn stage_batch(
        &self,
        staged: &mut StagedDerivation,
        batch: &mut Vec<(usize, Vec<u8>, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let txn = self.begin_write()?;
        {
            check_staged(&txn, staged)?;
            let mut tables = Vec::with_capacity(staged.children.len());
            for (child, _, _) in &staged.children {
                tables.push(
                    txn.open_table(ItemTable::new(&table_name(*child)))
                        .map_err(redb_err)?,
                );
            }
            for (i, key, value) in batch.drain(..) {
                let (child, _, meta) = &mut staged.children[i];
                put_item(*child, &mut tables[i], meta, &key, &value)?;
            }
        }
        self.db.commit(txn)
    }

    /// Brings a staging closer to its sources before the fence, in one durable
    /// transaction: applies the records logged since the staged positions and moves
    /// those on; what is left for [`PartitionStore::finish_stage`] under the fence is
    /// then only what was written meanwhile.
    pub(super) fn refresh_stage(&self, staged: &mut StagedDerivation) -> Result<(), StoreError> {
        let _layout = lock(&self.layout);
        let txn = self.begin_write()?;
        check_staged(&txn, staged)?;
        let (finals, metas) = apply_tail(&txn, staged, |pid| self.rewrites_of(pid))?;
        self.db.commit(txn)?;
        for (source, fin) in staged.sources.iter_mut().zip(finals) {
            source.position = fin;
        }
        for ((_, _, meta), new) in staged.children.iter_mut().zip(metas) {
            *meta = new;
        }
        Ok(())
    }

    /// Records the sources of `staged` logged since its staged positions.
    fn behind(&self, staged: &StagedDerivation) -> Result<u64, StoreError> {
        let mut behind = 0;
        for source in &staged.sources {
            behind += self
                .position(source.pid)?
                .lsn
                .saturating_sub(source.position.lsn);
        }
        Ok(behind)
    }

    /// Completes a staging under the fence, in one durable transaction: applies to the
    /// new partitions the sources' records logged since their staged positions (each by
    /// its key's hash), gives them the derived position of the sources' current ones and
    /// makes them local partitions. Fails (changing nothing) if a source's log no longer
    /// reaches back to its staged position; [`PartitionStore::derive_local`] then
    /// derives them in full.
    pub fn finish_stage(&self, staged: &StagedDerivation) -> Result<LogPosition, StoreError> {
        let _layout = lock(&self.layout);
        let mut position = LogPosition::default();
        self.write(|txn| {
            check_staged(txn, staged)?;
            let (finals, mut metas) = apply_tail(txn, staged, |pid| self.rewrites_of(pid))?;
            position = derived_position(&finals);
            let mut positions = txn.open_table(POSITIONS).map_err(redb_err)?;
            let mut staging = txn.open_table(STAGING).map_err(redb_err)?;
            for ((child, _, _), meta) in staged.children.iter().zip(&mut metas) {
                txn.open_table(LogTable::new(&log_name(*child)))
                    .map_err(redb_err)?;
                meta.position = position;
                meta.first_lsn = position.lsn + 1;
                store_meta(&mut positions, *child, meta)?;
                staging.remove(*child).map_err(redb_err)?;
            }
            Ok(())
        })?;
        lock(&self.local).extend(staged.children.iter().map(|(c, _, _)| *c));
        Ok(position)
    }

    /// Drops the staged partitions of `staged` (the split or merge was abandoned).
    pub fn discard_stage(&self, staged: &StagedDerivation) -> Result<(), StoreError> {
        let _layout = lock(&self.layout);
        let local = self.list();
        self.write(|txn| {
            let mut staging = txn.open_table(STAGING).map_err(redb_err)?;
            for (child, _, _) in &staged.children {
                let ours =
                    staging.get(*child).map_err(redb_err)?.map(|t| t.value()) == Some(staged.token);
                if ours && !local.contains(child) {
                    staging.remove(*child).map_err(redb_err)?;
                    txn.delete_table(ItemTable::new(&table_name(*child)))
                        .map_err(redb_err)?;
                }
            }
            Ok(())
        })
    }
}

/// Applies to the staged partitions (in `txn`) the sources' records logged since their
/// staged positions; the sources' positions now and the new partitions' counters.
/// `rewrites` tells how many times a source's log has been replaced by now (call with
/// `layout` held, so that none is replaced meanwhile).
fn apply_tail(
    txn: &WriteTransaction,
    staged: &StagedDerivation,
    rewrites: impl Fn(PartitionId) -> u64,
) -> Result<(Vec<LogPosition>, Vec<PartitionMeta>), StoreError> {
    let mut tables = Vec::with_capacity(staged.children.len());
    let mut metas: Vec<PartitionMeta> = Vec::with_capacity(staged.children.len());
    for (child, _, meta) in &staged.children {
        tables.push(
            txn.open_table(ItemTable::new(&table_name(*child)))
                .map_err(redb_err)?,
        );
        metas.push(*meta);
    }
    let ranges: Vec<(PartitionId, KeyRange)> =
        staged.children.iter().map(|(c, r, _)| (*c, *r)).collect();
    let positions = txn.open_table(POSITIONS).map_err(redb_err)?;
    let mut finals = Vec::with_capacity(staged.sources.len());
    for s in &staged.sources {
        let (source, snapshot) = (s.pid, s.position);
        if rewrites(source) != s.rewrites {
            return Err(StoreError::Diverged {
                pid: source,
                lsn: snapshot.lsn,
            });
        }
        let meta = load_meta(&positions, source)?;
        let log = txn
            .open_table(LogTable::new(&log_name(source)))
            .map_err(redb_err)?;
        check_continues(&log, source, &meta, snapshot)?;
        for lsn in snapshot.lsn + 1..=meta.position.lsn {
            let bytes = log.get(lsn).map_err(redb_err)?;
            let bytes = bytes.ok_or_else(|| missing_record(source, lsn))?;
            let record: WriteRecord = postcard::from_bytes(bytes.value())
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let Some(i) = child_of(&ranges, hash_partition_key(&record.partition_key)) else {
                continue;
            };
            let key = item_key(&record.partition_key, record.sort_key.as_deref());
            let child = ranges[i].0;
            match &record.op {
                WriteOp::Put(value) => put_item(child, &mut tables[i], &mut metas[i], &key, value)?,
                WriteOp::Delete => {
                    let old = tables[i].remove(key.as_slice()).map_err(redb_err)?;
                    if let Some(old_len) = old.map(|v| v.value().len()) {
                        metas[i].remove_item(child, key.len() + old_len)?;
                    }
                }
            }
        }
        finals.push(meta.position);
    }
    Ok((finals, metas))
}

/// Fails unless the source's log, as it is now, continues the staged snapshot (its log
/// was not replaced since, checked by the caller): every record after it is still
/// logged, and the record at the snapshot, when still logged, is the one staged.
fn check_continues(
    log: &redb::Table<'_, u64, &'static [u8]>,
    source: PartitionId,
    meta: &PartitionMeta,
    snapshot: LogPosition,
) -> Result<(), StoreError> {
    let from = snapshot.lsn + 1;
    if from <= meta.position.lsn && from < meta.first_lsn {
        return Err(StoreError::Gap {
            pid: source,
            expected: from,
            got: meta.first_lsn,
        });
    }
    // Before the log's start (a fresh split child, a trimmed log) nothing more can be
    // compared: the unchanged rewrite count says the log only grew.
    if meta.position != snapshot && snapshot.lsn >= meta.first_lsn {
        let held = log.get(snapshot.lsn).map_err(redb_err)?;
        let held_epoch = held
            .map(|b| postcard::from_bytes::<WriteRecord>(b.value()).map(|r| r.epoch))
            .transpose()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        if held_epoch != Some(snapshot.epoch) {
            return Err(StoreError::Diverged {
                pid: source,
                lsn: snapshot.lsn,
            });
        }
    }
    Ok(())
}
