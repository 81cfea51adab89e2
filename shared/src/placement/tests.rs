//! Unit tests of the planners on small, hand-checked clusters.

use super::*;
use crate::command::MetaCommand;
use crate::keyspace::check_tiling;
use crate::model::NodeStatus;
use crate::testkit::{cluster, create_table as create, provisioned};
use std::collections::BTreeSet;

/// Plans and applies a table; returns the plan.
fn place(s: &mut MetaState, name: &str, capacity: Capacity) -> PlacementPlan {
    let t = create(s, name, capacity);
    let plan = plan_new_table(s, t, &PlacementConfig::default(), &BTreeSet::new()).unwrap();
    let cmd = MetaCommand::AssignPartitions {
        table_id: t,
        partitions: plan.assignments.clone(),
    };
    s.apply(&cmd).unwrap();
    plan
}

#[test]
fn partition_counts() {
    let cfg = PlacementConfig::default();
    assert_eq!(partition_count(&provisioned(1, 1), &cfg), 1);
    assert_eq!(partition_count(&provisioned(3000, 1000), &cfg), 1);
    assert_eq!(partition_count(&provisioned(3001, 1000), &cfg), 2);
    assert_eq!(partition_count(&provisioned(1, 1001), &cfg), 2);
    assert_eq!(partition_count(&provisioned(30_000, 5000), &cfg), 10);
    assert_eq!(partition_count(&provisioned(1, 1_000_000), &cfg), 1000);
    let small_cap = PlacementConfig {
        max_partitions_per_table: 8,
        ..cfg.clone()
    };
    assert_eq!(partition_count(&provisioned(1, 1_000_000), &small_cap), 8);
    let on_demand = Capacity {
        mode: CapacityMode::OnDemand,
        read_units: 0,
        write_units: 0,
    };
    assert_eq!(partition_count(&on_demand, &cfg), 4);
    let zeros = PlacementConfig {
        write_units_per_partition: 0,
        read_units_per_partition: 0,
        on_demand_initial_partitions: 0,
        max_partitions_per_table: 0,
        ..cfg
    };
    assert_eq!(partition_count(&on_demand, &zeros), 1);
    assert_eq!(partition_count(&provisioned(5, 5), &zeros), 1);
}

#[test]
fn plan_errors() {
    let mut s = cluster(&[]);
    let cfg = PlacementConfig::default();
    assert_eq!(
        plan_new_table(&s, 1, &cfg, &BTreeSet::new()),
        Err(PlacementError::TableNotFound(1))
    );
    let t = create(&mut s, "orders", provisioned(1, 1));
    assert_eq!(
        plan_new_table(&s, t, &cfg, &BTreeSet::new()),
        Err(PlacementError::NoLiveNodes)
    );
}

#[test]
fn plan_spreads_zones_and_load() {
    let mut s = cluster(&["a", "a", "b", "b", "c", "c"]);
    let plan = place(&mut s, "orders", provisioned(1, 6000));
    assert_eq!(plan.replication_factor, 3);
    assert!(plan.warnings.is_empty());
    assert_eq!(plan.assignments.len(), 6);
    let ranges: Vec<_> = plan.assignments.iter().map(|a| a.range).collect();
    check_tiling(&ranges).unwrap();
    for a in &plan.assignments {
        let zones: BTreeSet<String> = std::iter::once(a.primary_node_id)
            .chain(a.replica_node_ids.iter().copied())
            .map(|n| s.node(n).unwrap().zone.clone())
            .collect();
        assert_eq!(zones.len(), 3, "{a:?}");
    }
    // 6 partitions x 3 replicas over 6 nodes: 3 each, and 1 primary each.
    assert!(s.nodes().all(|n| n.partition_ids.len() == 3));
    let primaries: BTreeSet<NodeId> = s.partitions().map(|p| p.primary_node_id).collect();
    assert_eq!(primaries.len(), 6);
}

#[test]
fn plan_is_deterministic() {
    let mut s = cluster(&["a", "b", "c", "a", "b"]);
    place(&mut s, "first", provisioned(1, 3000));
    let t = create(&mut s, "second", provisioned(9000, 1));
    let cfg = PlacementConfig::default();
    assert_eq!(
        plan_new_table(&s, t, &cfg, &BTreeSet::new()),
        plan_new_table(&s.clone(), t, &cfg, &BTreeSet::new())
    );
}

#[test]
fn plan_reduces_replication_with_warnings() {
    let mut s = cluster(&["a", "b"]);
    let plan = place(&mut s, "orders", provisioned(1, 1));
    assert_eq!(plan.replication_factor, 2);
    assert_eq!(plan.warnings.len(), 1, "{:?}", plan.warnings);
    let mut s = cluster(&["a", "a", "b", "b"]);
    let plan = place(&mut s, "orders", provisioned(1, 4000));
    assert_eq!(plan.replication_factor, 3);
    assert_eq!(
        plan.warnings.len(),
        1,
        "two zones for three replicas: {:?}",
        plan.warnings
    );
    // Two zones, three replicas: each partition uses both zones.
    for p in s.partitions() {
        let zones: BTreeSet<_> = p
            .all_nodes()
            .map(|n| s.node(n).unwrap().zone.clone())
            .collect();
        assert_eq!(zones.len(), 2);
    }
    let mut s = cluster(&["", "", "", ""]);
    let plan = place(&mut s, "orders", provisioned(1, 1));
    assert!(
        plan.warnings.is_empty(),
        "zones unused: {:?}",
        plan.warnings
    );
    let cfg = PlacementConfig {
        replication_factor: 0,
        ..PlacementConfig::default()
    };
    let t = create(&mut s, "solo", provisioned(1, 1));
    let plan = plan_new_table(&s, t, &cfg, &BTreeSet::new()).unwrap();
    assert_eq!((plan.replication_factor, plan.warnings.len()), (1, 1));
}

#[test]
fn plan_uses_only_healthy_nodes() {
    let mut s = cluster(&["a", "b", "c", "d"]);
    // No command marks a node SUSPECTED yet; set it directly.
    let mut n = s.node(2).unwrap().clone();
    n.status = NodeStatus::Suspected;
    s.nodes_mut_for_tests().insert(2, n);
    let plan = place(&mut s, "orders", provisioned(1, 8000));
    assert!(
        plan.assignments
            .iter()
            .all(|a| a.primary_node_id != 2 && !a.replica_node_ids.contains(&2))
    );
}

#[test]
fn voter_targets() {
    let cfg = VoterConfig::default();
    let got: Vec<usize> = (0..=9).map(|n| voter_target(n, &cfg)).collect();
    assert_eq!(got, [0, 1, 1, 3, 3, 3, 3, 5, 5, 5]);
}

fn cand(node_id: NodeId, zone: &str) -> VoterCandidate {
    VoterCandidate {
        node_id,
        zone: zone.into(),
    }
}

#[test]
fn promotes_new_zones_first() {
    let voters = [cand(1, "a")];
    let learners = [cand(2, "a"), cand(5, "c"), cand(3, "b"), cand(4, "b")];
    assert_eq!(learners_to_promote(&voters, &learners, 3), vec![3, 5]);
    assert_eq!(learners_to_promote(&voters, &learners, 5), vec![3, 5, 2, 4]);
    assert_eq!(learners_to_promote(&voters, &learners, 9), vec![3, 5, 2, 4]);
    assert!(learners_to_promote(&voters, &learners, 1).is_empty());
    assert!(learners_to_promote(&voters, &learners, 0).is_empty());
    // One learner cannot take 1 voter to an odd count below 3: wait for another.
    assert!(learners_to_promote(&voters, &learners[..1], 3).is_empty());
}

#[test]
fn promotion_ignores_duplicates_and_voters() {
    let voters = [cand(1, "a"), cand(2, "b")];
    let learners = [cand(2, "b"), cand(4, "a"), cand(4, "a"), cand(3, "a")];
    // 2 voters + 2 learners cannot reach 5: promote to 3 (odd), not 4.
    assert_eq!(learners_to_promote(&voters, &learners, 5), vec![3]);
    assert_eq!(
        learners_to_promote(&[], &[cand(9, ""), cand(7, "")], 3),
        vec![7]
    );
}

#[test]
fn plan_skips_excluded_nodes() {
    let mut s = cluster(&["a", "b", "c", "d"]);
    let t = create(&mut s, "orders", provisioned(1, 8000));
    let cfg = PlacementConfig::default();
    let plan = plan_new_table(&s, t, &cfg, &BTreeSet::from([1, 3])).unwrap();
    assert_eq!(plan.replication_factor, 2);
    for a in &plan.assignments {
        let mut nodes: Vec<NodeId> = a.replica_node_ids.clone();
        nodes.push(a.primary_node_id);
        nodes.sort_unstable();
        assert_eq!(nodes, vec![2, 4]);
    }
    let all = BTreeSet::from([1, 2, 3, 4]);
    assert_eq!(
        plan_new_table(&s, t, &cfg, &all),
        Err(PlacementError::NoLiveNodes)
    );
}

fn ids(ids: &[NodeId]) -> Option<BTreeSet<NodeId>> {
    Some(ids.iter().copied().collect())
}

#[test]
fn a_dead_voter_is_replaced_by_a_learner_of_another_zone_first() {
    let healthy = [cand(1, "a"), cand(2, "b")];
    let learners = [cand(4, "a"), cand(5, "c"), cand(6, "b")];
    assert_eq!(
        plan_voter_change(&healthy, &[3], &learners, 3),
        ids(&[1, 2, 5])
    );
    // Zone c has no learner: the lowest id of the least-used zones.
    assert_eq!(
        plan_voter_change(&healthy, &[3], &learners[..1], 3),
        ids(&[1, 2, 4])
    );
}

#[test]
fn a_dead_voter_stays_until_a_learner_can_replace_it() {
    let healthy = [cand(1, "a"), cand(2, "b")];
    assert_eq!(plan_voter_change(&healthy, &[3], &[], 3), None);
    // A dead "learner" is no candidate.
    assert_eq!(plan_voter_change(&healthy, &[3], &[cand(3, "c")], 3), None);
    // Nothing left alive: nothing to do.
    assert_eq!(plan_voter_change(&[], &[1, 2, 3], &[], 3), None);
}

#[test]
fn dead_voters_are_removed_when_the_rest_stays_odd() {
    let healthy = [cand(1, "a"), cand(2, "b"), cand(3, "c")];
    // 5 voters, 2 dead, 1 learner: 4 would be even, so 3 (the dead ones removed).
    assert_eq!(
        plan_voter_change(&healthy, &[4, 5], &[cand(6, "a")], 5),
        ids(&[1, 2, 3])
    );
    // With two learners, back to 5.
    let learners = [cand(6, "a"), cand(7, "b")];
    assert_eq!(
        plan_voter_change(&healthy, &[4, 5], &learners, 5),
        ids(&[1, 2, 3, 6, 7])
    );
    // 5 voters, 1 dead, no learner: 4 is even, keep the dead voter.
    let four = [cand(1, "a"), cand(2, "b"), cand(3, "c"), cand(4, "a")];
    assert_eq!(plan_voter_change(&four, &[5], &[], 5), None);
    // An even promotion is cut back to odd: 4 + 2 learners reach 5 with one.
    assert_eq!(
        plan_voter_change(&four, &[5], &learners, 5),
        ids(&[1, 2, 3, 4, 7])
    );
    // A dead voter also listed among the healthy ones counts as dead.
    assert_eq!(plan_voter_change(&four, &[4], &[], 5), ids(&[1, 2, 3]));
}

#[test]
fn without_dead_voters_only_promotions_change_the_set() {
    let voters = [cand(1, "a")];
    let learners = [cand(2, "a"), cand(3, "b")];
    assert_eq!(
        plan_voter_change(&voters, &[], &learners, 3),
        ids(&[1, 2, 3])
    );
    assert_eq!(plan_voter_change(&voters, &[], &learners[..1], 3), None);
    let three = [cand(1, "a"), cand(2, "b"), cand(3, "c")];
    assert_eq!(plan_voter_change(&three, &[], &learners, 3), None);
}
