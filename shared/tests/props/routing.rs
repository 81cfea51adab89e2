//! Routing lookups agree with a linear scan, for random tilings; even ranges tile.

use proptest::prelude::*;
use shared::command::{MetaCommand, PartitionAssignment};
use shared::keyspace::{RoutingTable, check_tiling, even_ranges, hash_partition_key};
use shared::model::KeyRange;
use shared::state::MetaState;

use crate::fixtures::{create, on_demand, register, spec};

/// The tiling whose ranges start at 0 and at each cut point.
fn tiling(mut cuts: Vec<u64>) -> Vec<KeyRange> {
    cuts.retain(|&c| c != 0);
    cuts.sort_unstable();
    cuts.dedup();
    let starts: Vec<u64> = std::iter::once(0).chain(cuts).collect();
    starts
        .iter()
        .enumerate()
        .map(|(i, &low)| KeyRange {
            low,
            high: starts.get(i + 1).map_or(u64::MAX, |next| next - 1),
        })
        .collect()
}

/// A state with one table whose partitions cover `ranges` (given in shuffled order).
fn state_with(ranges: &[KeyRange]) -> (MetaState, u64) {
    let mut s = MetaState::new();
    for n in 1..=3 {
        s.apply(&register(n, "", 1, 0)).unwrap();
    }
    let t = create(&mut s, spec("routed", on_demand()));
    let partitions = ranges
        .iter()
        .enumerate()
        .map(|(i, &range)| PartitionAssignment {
            range,
            primary_node_id: 1 + (i as u64 % 3),
            replica_node_ids: vec![1 + ((i as u64 + 1) % 3)],
        })
        .collect();
    s.apply(&MetaCommand::AssignPartitions {
        table_id: t,
        partitions,
    })
    .unwrap();
    (s, t)
}

/// Cut points biased towards the edges of the space, where off-by-one bugs live.
fn cut() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        0u64..4,
        (u64::MAX - 3)..=u64::MAX,
        (0u64..1 << 20).prop_map(|x| x * 4096),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn lookup_returns_the_containing_range(
        cuts in prop::collection::vec(cut(), 0..200),
        hashes in prop::collection::vec(any::<u64>(), 1..64),
        rotate in any::<usize>(),
    ) {
        let ranges = tiling(cuts);
        prop_assert!(check_tiling(&ranges).is_ok());
        let mut shuffled = ranges.clone();
        let len = shuffled.len();
        shuffled.rotate_left(rotate % len);
        let (state, t) = state_with(&shuffled);
        let rt = RoutingTable::from_state(&state);
        prop_assert_eq!(rt.table_count(), 1);
        prop_assert_eq!(rt.ranges(t).len(), ranges.len());
        prop_assert!(rt.ranges(t + 1).is_empty());
        let edges = ranges.iter().flat_map(|r| [r.low, r.high]);
        for h in hashes.into_iter().chain(edges) {
            let want = ranges.iter().find(|r| r.contains(h)).unwrap();
            let got = rt.lookup(t, h).expect("every hash is routed");
            prop_assert_eq!(got.range, *want);
            let p = state.partition(got.partition_id).unwrap();
            prop_assert_eq!(p.range, *want);
            prop_assert_eq!(got.primary_node_id, p.primary_node_id);
            prop_assert_eq!(&got.replica_node_ids, &p.replica_node_ids);
            prop_assert_eq!(got.epoch, p.epoch);
            prop_assert!(rt.lookup(t + 1, h).is_none());
        }
    }

    #[test]
    fn lookup_key_hashes_the_key(key in prop::collection::vec(any::<u8>(), 0..64), n in 1u32..64) {
        let (state, t) = state_with(&even_ranges(n));
        let rt = RoutingTable::from_state(&state);
        let by_key = rt.lookup_key(t, &key).unwrap();
        prop_assert!(by_key.range.contains(hash_partition_key(&key)));
    }

    #[test]
    fn even_ranges_tile_evenly(n in 1u32..20_000) {
        let ranges = even_ranges(n);
        prop_assert_eq!(ranges.len(), n as usize);
        prop_assert!(check_tiling(&ranges).is_ok());
        let widths: Vec<u128> = ranges.iter().map(|r| u128::from(r.high - r.low) + 1).collect();
        let (min, max) = (widths.iter().min().unwrap(), widths.iter().max().unwrap());
        prop_assert!(max - min <= 1, "widths differ by {}", max - min);
    }
}

#[test]
fn routing_table_covers_every_table_with_partitions() {
    let state = crate::fixtures::populated();
    let rt = RoutingTable::from_state(&state);
    let placed: Vec<_> = state
        .tables()
        .filter(|t| !state.partitions_of(t.table_id).is_empty())
        .collect();
    assert_eq!(rt.table_count(), placed.len());
    for t in placed {
        let parts = state.partitions_of(t.table_id);
        let routes = rt.ranges(t.table_id);
        assert_eq!(routes.len(), parts.len());
        for (route, p) in routes.iter().zip(parts) {
            assert_eq!((route.partition_id, route.range), (p.partition_id, p.range));
            assert_eq!(rt.lookup(t.table_id, p.range.low), Some(route));
            assert_eq!(rt.lookup(t.table_id, p.range.high), Some(route));
        }
    }
    let unplaced = state.table_by_name("unplaced").unwrap().table_id;
    assert!(rt.lookup(unplaced, 0).is_none());
}
