//! Placement balance over many tables on random clusters.
//!
//! Bounds asserted (loads = partitions held per node, spread = max − min):
//! * proven: every partition gets min(rf, nodes) distinct nodes spanning
//!   min(rf, zones) distinct zones; within each zone the load spread is ≤ 1 (each
//!   pick in a zone takes one of its least-loaded nodes); hence with a single zone (or
//!   no zones) the global load spread is ≤ 1.
//! * tested, with slack: with equal-sized zones the global load spread is ≤ rf
//!   (observed ≤ 2 over ~10^4 random clusters); the primaries spread is ≤ 2 with a
//!   single zone or equal-sized zones (observed ≤ 1) and ≤ rf + 1 otherwise
//!   (observed ≤ 2).

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use shared::model::{Capacity, NodeId};
use shared::placement::PlacementConfig;
use shared::state::MetaState;

use crate::fixtures::{create, on_demand, place, provisioned, register, spec};

fn capacity() -> impl Strategy<Value = Capacity> {
    prop_oneof![
        1 => Just(on_demand()),
        4 => (1u64..=30_000, 1u64..=12_000).prop_map(|(r, w)| provisioned(r, w)),
    ]
}

/// Zone of each node: `zones` = 0 means zones are not used ("" everywhere).
fn cluster(zone_of: &[usize], zones: usize, equal: bool) -> MetaState {
    let mut s = MetaState::new();
    for (i, z) in zone_of.iter().enumerate() {
        let zone = match (zones, equal) {
            (0, _) => String::new(),
            (_, true) => format!("z{}", i % zones),
            (_, false) => format!("z{}", z % zones),
        };
        s.apply(&register(i as NodeId + 1, &zone, 1, 0)).unwrap();
    }
    s
}

fn spread<'a>(values: impl Iterator<Item = &'a usize>) -> usize {
    let v: Vec<usize> = values.copied().collect();
    v.iter().max().unwrap() - v.iter().min().unwrap()
}

/// Checks each partition's replica set size and zone spread.
fn check_partitions(s: &MetaState, rf: usize, zone_count: usize) -> Result<(), TestCaseError> {
    for p in s.partitions() {
        let nodes: BTreeSet<NodeId> = p.all_nodes().collect();
        prop_assert_eq!(nodes.len(), rf, "partition {:?}", p);
        let zones: BTreeSet<&str> = nodes
            .iter()
            .map(|n| s.node(*n).unwrap().zone.as_str())
            .collect();
        prop_assert_eq!(zones.len(), rf.min(zone_count), "partition {:?}", p);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn placement_is_balanced(
        zone_of in prop::collection::vec(0usize..5, 1..=30),
        zones in 0usize..=5,
        equal in any::<bool>(),
        replication_factor in 1usize..=5,
        capacities in prop::collection::vec(capacity(), 1..12),
    ) {
        let mut s = cluster(&zone_of, zones, equal);
        let cfg = PlacementConfig { replication_factor, ..PlacementConfig::default() };
        for (i, capacity) in capacities.into_iter().enumerate() {
            let t = create(&mut s, spec(&format!("table{i}"), capacity));
            place(&mut s, t, &cfg);
        }
        let rf = replication_factor.min(zone_of.len());
        let zone_names: BTreeSet<&str> = s.nodes().map(|n| n.zone.as_str()).collect();
        check_partitions(&s, rf, zone_names.len())?;

        let load: BTreeMap<NodeId, usize> = s.nodes().map(|n| (n.node_id, n.partition_ids.len())).collect();
        let mut primaries: BTreeMap<NodeId, usize> = load.keys().map(|n| (*n, 0)).collect();
        for p in s.partitions() {
            *primaries.get_mut(&p.primary_node_id).unwrap() += 1;
        }
        let mut zone_sizes = BTreeSet::new();
        for z in &zone_names {
            let in_zone: Vec<NodeId> = s.nodes().filter(|n| n.zone == *z).map(|n| n.node_id).collect();
            zone_sizes.insert(in_zone.len());
            let zone_spread = spread(in_zone.iter().map(|n| &load[n]));
            prop_assert!(zone_spread <= 1, "zone {} load spread {}", z, zone_spread);
        }
        let balanced_zones = zone_sizes.len() == 1;
        let (load_spread, primary_spread) = (spread(load.values()), spread(primaries.values()));
        if zone_names.len() == 1 {
            prop_assert!(load_spread <= 1, "single zone load spread {}", load_spread);
        }
        if balanced_zones {
            prop_assert!(load_spread <= rf.max(1), "equal zones load spread {}", load_spread);
            prop_assert!(primary_spread <= 2, "primary spread {}", primary_spread);
        } else {
            prop_assert!(primary_spread <= rf + 1, "primary spread {}", primary_spread);
        }
    }
}
