//! Where items lie: after the agents stopped, every host's partition storage is opened
//! and every stored item's partition-key hash is checked against the final routing
//! table. An item in a partition whose range does not hold its key is misrouted: no
//! request would ever find it there.

use std::collections::BTreeMap;
use std::path::Path;

use agent::data::store::PartitionStore;
use serde::Serialize;

/// A partition of the final routing table: its key range and the nodes holding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// Table name.
    pub table: String,
    /// Lowest hash, inclusive.
    pub low: u64,
    /// Highest hash, inclusive.
    pub high: u64,
    /// Primary and replicas.
    pub holders: Vec<u64>,
}

/// What the stores hold, against the final routing.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StorageReport {
    /// Partitions read, over every host.
    pub partitions: usize,
    /// Distinct partition keys seen, over every partition read.
    pub keys: usize,
    /// Items whose key lies outside their partition's range (host, partition, hash).
    pub misrouted: Vec<(u16, u64, u64)>,
    /// Storage a host still keeps for a partition it does not hold in the final
    /// routing (gone, or assigned elsewhere): (host, partition).
    pub orphaned: Vec<(u16, u64)>,
    /// Hosts whose storage could not be read, with why.
    pub unreadable: Vec<(u16, String)>,
}

/// Checks the stores in `data_dirs` (host, directory) against `routing` (partition id
/// to owner).
pub fn check(data_dirs: &[(u16, &Path)], routing: &BTreeMap<u64, Owner>) -> StorageReport {
    let mut report = StorageReport::default();
    for (host, dir) in data_dirs {
        let store = match PartitionStore::open(dir) {
            Ok(s) => s,
            Err(e) => {
                report.unreadable.push((*host, e.to_string()));
                continue;
            }
        };
        for pid in store.list() {
            let hashes = match store.key_hashes(pid) {
                Ok((hashes, _)) => hashes,
                Err(e) => {
                    report
                        .unreadable
                        .push((*host, format!("partition {pid}: {e}")));
                    continue;
                }
            };
            report.partitions += 1;
            report.keys += hashes.len();
            judge(*host, pid, &hashes, routing, &mut report);
        }
    }
    report
}

/// Judges one stored partition's key hashes.
fn judge(
    host: u16,
    pid: u64,
    hashes: &[u64],
    routing: &BTreeMap<u64, Owner>,
    report: &mut StorageReport,
) {
    match routing.get(&pid) {
        Some(owner) if owner.holders.contains(&u64::from(host)) => {
            report.misrouted.extend(
                hashes
                    .iter()
                    .filter(|h| !(owner.low..=owner.high).contains(*h))
                    .map(|h| (host, pid, *h)),
            );
        }
        _ => report.orphaned.push((host, pid)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routing() -> BTreeMap<u64, Owner> {
        let owner = |low, high| Owner {
            table: "t".into(),
            low,
            high,
            holders: vec![1, 2, 3],
        };
        BTreeMap::from([(10, owner(0, 99)), (11, owner(100, u64::MAX))])
    }

    #[test]
    fn keys_inside_their_range_are_fine() {
        let mut report = StorageReport::default();
        judge(1, 10, &[0, 50, 99], &routing(), &mut report);
        judge(2, 11, &[100, u64::MAX], &routing(), &mut report);
        assert!(report.misrouted.is_empty() && report.orphaned.is_empty());
    }

    #[test]
    fn a_key_outside_its_range_is_misrouted() {
        let mut report = StorageReport::default();
        judge(1, 10, &[5, 100], &routing(), &mut report);
        assert_eq!(report.misrouted, vec![(1, 10, 100)]);
    }

    #[test]
    fn storage_of_a_partition_gone_or_held_elsewhere_is_orphaned() {
        let mut report = StorageReport::default();
        judge(1, 12, &[5], &routing(), &mut report);
        judge(4, 10, &[5], &routing(), &mut report);
        assert_eq!(report.orphaned, vec![(1, 12), (4, 10)]);
        assert!(report.misrouted.is_empty());
    }
}
