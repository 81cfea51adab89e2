//! Partition-key hashing, key ranges and the routing table.
//!
//! Partitions cover contiguous inclusive ranges of a 64-bit hash of the partition key;
//! a lookup is a binary search over the range starts of one table.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use crate::model::{KeyRange, NodeId, PartitionId, TableId};
use crate::state::MetaState;

/// Hashes a partition key into the 64-bit key space (XXH3-64, seed 0).
///
/// This function must NEVER change: every stored row and every committed key range
/// depends on it. XXH3-64's output is frozen by its specification, so upgrading the
/// `xxhash-rust` crate is safe; switching to another hash is not.
pub fn hash_partition_key(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key)
}

/// Splits the key space into `n` contiguous, nearly equal ranges (`n` = 0 is taken as 1).
pub fn even_ranges(n: u32) -> Vec<KeyRange> {
    // u128 arithmetic: the space has 2^64 points, one more than u64 can count.
    let n = u128::from(n.max(1));
    let space: u128 = 1 << 64;
    let start = |i: u128| (i * space / n) as u64;
    (0..n)
        .map(|i| KeyRange {
            low: start(i),
            high: if i + 1 == n {
                u64::MAX
            } else {
                start(i + 1) - 1
            },
        })
        .collect()
}

/// Checks that `ranges`, sorted by `low`, tile `[0, u64::MAX]` with no gap or overlap.
pub fn check_tiling(ranges: &[KeyRange]) -> Result<(), String> {
    let (Some(first), Some(last)) = (ranges.first(), ranges.last()) else {
        return Err("no ranges".to_string());
    };
    if first.low != 0 {
        return Err(format!("first range starts at {}, not 0", first.low));
    }
    if let Some(r) = ranges.iter().find(|r| r.low > r.high) {
        return Err(format!("range [{}, {}] is empty", r.low, r.high));
    }
    for pair in ranges.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        // a.high < u64::MAX here unless b overlaps a, which the comparison catches.
        if a.high == u64::MAX || b.low <= a.high {
            return Err(format!(
                "ranges [{}, {}] and [{}, {}] overlap",
                a.low, a.high, b.low, b.high
            ));
        }
        if b.low != a.high + 1 {
            return Err(format!("gap between {} and {}", a.high, b.low));
        }
    }
    if last.high != u64::MAX {
        return Err(format!(
            "last range ends at {}, not {}",
            last.high,
            u64::MAX
        ));
    }
    Ok(())
}

/// Where one partition of a table lives, as clients route to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEntry {
    /// Partition id.
    pub partition_id: PartitionId,
    /// Hashed key range covered.
    pub range: KeyRange,
    /// Node serving as primary.
    pub primary_node_id: NodeId,
    /// Other replicas.
    pub replica_node_ids: Vec<NodeId>,
    /// Routing epoch of the partition.
    pub epoch: u64,
}

/// Most bits of the hash used to pick a bucket (2^20 buckets of 4 bytes at most).
const MAX_BUCKET_BITS: u32 = 20;

/// The routes of one table: entries sorted by range start, the starts in a contiguous
/// vector of their own, and a radix index over the top bits of the hash.
///
/// `buckets[j]` is the number of starts `<= j << shift` (and `buckets[2^bits]` = n),
/// so the partition of a hash in bucket `j` lies among `starts[buckets[j] ..
/// buckets[j + 1]]`. With about one bucket per partition and near-even ranges that
/// window holds 0–2 starts: a lookup costs ~3 memory accesses instead of the ~14 of a
/// binary search over all starts, and a skewed tiling only widens the window, so it
/// is never worse than the plain binary search.
#[derive(Debug, Clone)]
struct TableRoutes {
    shift: u32,
    buckets: Vec<u32>,
    starts: Vec<u64>,
    entries: Vec<RouteEntry>,
}

impl TableRoutes {
    fn new(mut entries: Vec<RouteEntry>) -> Self {
        entries.sort_by_key(|e| e.range.low);
        let starts: Vec<u64> = entries.iter().map(|e| e.range.low).collect();
        let bits = starts
            .len()
            .next_power_of_two()
            .trailing_zeros()
            .clamp(1, MAX_BUCKET_BITS);
        let shift = 64 - bits;
        let mut buckets = Vec::with_capacity((1 << bits) + 1);
        let mut below = 0usize;
        for j in 0..1u64 << bits {
            let bucket_start = j << shift;
            while starts.get(below).is_some_and(|&s| s <= bucket_start) {
                below += 1;
            }
            buckets.push(below as u32);
        }
        buckets.push(starts.len() as u32);
        TableRoutes {
            shift,
            buckets,
            starts,
            entries,
        }
    }

    #[inline]
    fn lookup(&self, hash: u64) -> Option<&RouteEntry> {
        let j = (hash >> self.shift) as usize;
        let (lo, hi) = (self.buckets[j] as usize, self.buckets[j + 1] as usize);
        // Every start before `lo` is <= hash and every start from `hi` on is > hash.
        let i = lo + self.starts[lo..hi].partition_point(|&s| s <= hash);
        let entry = self.entries.get(i.checked_sub(1)?)?;
        // A gap (never in a committed state) would otherwise route to the wrong range.
        entry.range.contains(hash).then_some(entry)
    }
}

/// Hasher for table ids in the routing map: a multiply and a rotate (as rustc-hash).
/// Table ids are assigned by the state machine, not chosen by clients, so there is no
/// flooding risk, and SipHash would cost more than the rest of a lookup.
#[derive(Debug, Clone, Copy, Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = self.0.wrapping_add(n).wrapping_mul(0xf135_7aea_2e62_a9c5);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0.rotate_left(26)
    }
}

/// A read-only snapshot of all routes, built from a `MetaState`, for fast lookups.
///
/// Tables of every status that have partitions are included (DELETING ones too, until
/// purged); callers that must refuse traffic check the table status themselves.
#[derive(Debug, Clone, Default)]
pub struct RoutingTable {
    tables: HashMap<TableId, TableRoutes, BuildHasherDefault<IdHasher>>,
}

impl RoutingTable {
    /// Builds the routes of every table that has partitions.
    pub fn from_state(state: &MetaState) -> Self {
        let mut by_table: BTreeMap<TableId, Vec<RouteEntry>> = BTreeMap::new();
        for p in state.partitions() {
            by_table.entry(p.table_id).or_default().push(RouteEntry {
                partition_id: p.partition_id,
                range: p.range,
                primary_node_id: p.primary_node_id,
                replica_node_ids: p.replica_node_ids.clone(),
                epoch: p.epoch,
            });
        }
        let tables = by_table
            .into_iter()
            .map(|(id, entries)| (id, TableRoutes::new(entries)))
            .collect();
        RoutingTable { tables }
    }

    /// Replaces the routes of one table (entries in any order; empty removes the table).
    pub fn set_table(&mut self, table_id: TableId, entries: Vec<RouteEntry>) {
        if entries.is_empty() {
            self.tables.remove(&table_id);
        } else {
            self.tables.insert(table_id, TableRoutes::new(entries));
        }
    }

    /// The partition of `table_id` whose range contains `hash`.
    #[inline]
    pub fn lookup(&self, table_id: TableId, hash: u64) -> Option<&RouteEntry> {
        self.tables.get(&table_id)?.lookup(hash)
    }

    /// The partition of `table_id` that holds `partition_key`.
    pub fn lookup_key(&self, table_id: TableId, partition_key: &[u8]) -> Option<&RouteEntry> {
        self.lookup(table_id, hash_partition_key(partition_key))
    }

    /// The routes of one table ordered by range start (empty if the table is unknown).
    pub fn ranges(&self, table_id: TableId) -> &[RouteEntry] {
        self.tables
            .get(&table_id)
            .map_or(&[], |t| t.entries.as_slice())
    }

    /// Number of tables with routes.
    pub fn table_count(&self) -> usize {
        self.tables.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_frozen() {
        // Golden values: if these change, every stored key lands in the wrong partition.
        assert_eq!(hash_partition_key(b""), 0x2d06800538d394c2);
        assert_eq!(hash_partition_key(b"hello"), 0x9555e8555c62dcfd);
    }

    #[test]
    fn even_ranges_small() {
        assert_eq!(even_ranges(1), vec![KeyRange::FULL]);
        assert_eq!(even_ranges(0), vec![KeyRange::FULL]);
        let two = even_ranges(2);
        assert_eq!(
            two[0],
            KeyRange {
                low: 0,
                high: (1 << 63) - 1
            }
        );
        assert_eq!(
            two[1],
            KeyRange {
                low: 1 << 63,
                high: u64::MAX
            }
        );
        for n in [3, 7, 10, 4096, 10_000] {
            let r = even_ranges(n);
            assert_eq!(r.len(), n as usize);
            check_tiling(&r).unwrap();
        }
    }

    #[test]
    fn tiling_errors() {
        let r = |low, high| KeyRange { low, high };
        assert!(check_tiling(&[]).is_err());
        assert!(check_tiling(&[r(1, u64::MAX)]).is_err());
        assert!(check_tiling(&[r(0, 5)]).is_err());
        assert!(check_tiling(&[r(0, 5), r(7, u64::MAX)]).is_err());
        assert!(check_tiling(&[r(0, 5), r(5, u64::MAX)]).is_err());
        assert!(check_tiling(&[r(0, 5), r(6, 4), r(5, u64::MAX)]).is_err());
        assert!(check_tiling(&[KeyRange::FULL, KeyRange::FULL]).is_err());
        assert!(check_tiling(&[r(0, 5), r(6, u64::MAX)]).is_ok());
    }

    fn entry(id: PartitionId, range: KeyRange) -> RouteEntry {
        RouteEntry {
            partition_id: id,
            range,
            primary_node_id: 1,
            replica_node_ids: vec![],
            epoch: 1,
        }
    }

    #[test]
    fn lookup_finds_containing_range() {
        let mut rt = RoutingTable::default();
        let ranges = even_ranges(4);
        // Inserted out of order on purpose: set_table sorts.
        let entries = ranges
            .iter()
            .rev()
            .enumerate()
            .map(|(i, r)| entry(i as u64, *r))
            .collect();
        rt.set_table(7, entries);
        assert_eq!(rt.table_count(), 1);
        for r in &ranges {
            for h in [r.low, r.high, r.low / 2 + r.high / 2] {
                assert_eq!(rt.lookup(7, h).unwrap().range, *r);
            }
        }
        assert!(rt.lookup(8, 0).is_none());
        assert!(rt.ranges(8).is_empty());
        assert_eq!(rt.ranges(7).len(), 4);
        assert!(rt.lookup_key(7, b"some key").is_some());
        rt.set_table(7, vec![]);
        assert_eq!(rt.table_count(), 0);
    }

    #[test]
    fn lookup_at_every_edge() {
        for n in [1, 2, 15, 16, 17, 53] {
            let ranges = even_ranges(n);
            let mut rt = RoutingTable::default();
            let entries = ranges
                .iter()
                .enumerate()
                .map(|(i, r)| entry(i as u64, *r))
                .collect();
            rt.set_table(1, entries);
            for (i, r) in ranges.iter().enumerate() {
                for h in [r.low, r.high] {
                    assert_eq!(
                        rt.lookup(1, h).unwrap().partition_id,
                        i as u64,
                        "n={n} h={h}"
                    );
                }
            }
        }
    }

    #[test]
    fn lookup_refuses_gaps() {
        let mut rt = RoutingTable::default();
        rt.set_table(1, vec![entry(1, KeyRange { low: 10, high: 20 })]);
        assert!(rt.lookup(1, 5).is_none());
        assert!(rt.lookup(1, 21).is_none());
        assert!(rt.lookup(1, u64::MAX).is_none());
        assert!(rt.lookup(1, 15).is_some());
    }
}
