//! Where items lie: after the agents stopped, every host's partition storage is opened
//! and every stored item's partition-key hash is checked against the final routing
//! table. An item in a partition whose range does not hold its key is misrouted: no
//! request would ever find it there.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use agent::data::store::PartitionStore;
use serde::{Deserialize, Serialize};

/// A partition of the final routing table: its key range and the nodes holding it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
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
    /// Copies of a partition lacking keys other copies hold: (partition, host, keys
    /// missing). Every copy of the final routing must hold the same keys once healed.
    pub divergent: Vec<(u64, u16, usize)>,
}

/// One stored copy of a partition.
#[derive(Debug, Clone)]
pub struct Copy {
    /// Host holding it.
    pub host: u16,
    /// Its log position (LSN, epoch).
    pub position: (u64, u64),
    /// Distinct partition-key hashes of its items, sorted.
    pub hashes: Vec<u64>,
}

/// Every partition's stored copies, by partition id.
pub type Copies = BTreeMap<u64, Vec<Copy>>;

/// Every partition stored in `data_dirs` (host, directory), with its copies; and the
/// hosts whose storage could not be read.
pub fn inventory(data_dirs: &[(u16, &Path)]) -> (Copies, Vec<(u16, String)>) {
    let mut copies = Copies::new();
    let mut unreadable = Vec::new();
    for (host, dir) in data_dirs {
        let store = match PartitionStore::open(dir) {
            Ok(s) => s,
            Err(e) => {
                unreadable.push((*host, e.to_string()));
                continue;
            }
        };
        for pid in store.list() {
            match store.key_hashes(pid) {
                Ok((mut hashes, position)) => {
                    hashes.sort_unstable();
                    copies.entry(pid).or_default().push(Copy {
                        host: *host,
                        position: (position.lsn, position.epoch),
                        hashes,
                    });
                }
                Err(e) => unreadable.push((*host, format!("partition {pid}: {e}"))),
            }
        }
    }
    (copies, unreadable)
}

/// Checks the stores in `data_dirs` (host, directory) against `routing` (partition id
/// to owner).
pub fn check(data_dirs: &[(u16, &Path)], routing: &BTreeMap<u64, Owner>) -> StorageReport {
    let (copies, unreadable) = inventory(data_dirs);
    let mut report = StorageReport {
        unreadable,
        ..Default::default()
    };
    for (pid, copies) in &copies {
        for copy in copies {
            report.partitions += 1;
            report.keys += copy.hashes.len();
            judge(copy.host, *pid, &copy.hashes, routing, &mut report);
        }
        let held: Vec<&Copy> = copies
            .iter()
            .filter(|c| {
                routing
                    .get(pid)
                    .is_some_and(|o| o.holders.contains(&u64::from(c.host)))
            })
            .collect();
        report.divergent.extend(divergence(*pid, &held));
    }
    report
}

/// The copies of `pid` that lack keys another copy holds, with how many.
fn divergence(pid: u64, copies: &[&Copy]) -> Vec<(u64, u16, usize)> {
    let all: BTreeSet<u64> = copies
        .iter()
        .flat_map(|c| c.hashes.iter().copied())
        .collect();
    copies
        .iter()
        .filter(|c| c.hashes.len() < all.len())
        .map(|c| (pid, c.host, all.len() - c.hashes.len()))
        .collect()
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
    fn a_copy_lacking_keys_the_others_hold_diverges() {
        let copy = |host, hashes: &[u64]| Copy {
            host,
            position: (1, 1),
            hashes: hashes.to_vec(),
        };
        let (a, b, c) = (copy(1, &[1, 2, 3]), copy(2, &[1, 2, 3]), copy(3, &[1, 3]));
        assert_eq!(divergence(10, &[&a, &b]), vec![]);
        assert_eq!(divergence(10, &[&a, &b, &c]), vec![(10, 3, 1)]);
        assert_eq!(
            divergence(10, &[&c, &copy(4, &[2])]),
            vec![(10, 3, 1), (10, 4, 2)]
        );
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
