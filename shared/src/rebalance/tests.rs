//! Unit tests of the rebalancing planner on small, hand-checked clusters.
//!
//! `apply` replays a plan on a copy of the state's replica sets (migrations cannot run
//! here) and checks every rule on the way.

use super::*;
use crate::command::MetaCommand;
use crate::model::TableId;
use crate::placement::{PlacementConfig, plan_new_table};
use crate::testkit::{cluster, create_table, provisioned};

/// Creates an ACTIVE table of `partitions` partitions and `rf` replicas, placed by the
/// placement planner; returns its id.
fn add_table(s: &mut MetaState, name: &str, partitions: u64, rf: usize) -> TableId {
    let t = create_table(s, name, provisioned(1, partitions * 1000));
    let cfg = PlacementConfig {
        replication_factor: rf,
        ..PlacementConfig::default()
    };
    let plan = plan_new_table(s, t, &cfg, &BTreeSet::new()).unwrap();
    s.apply(&MetaCommand::AssignPartitions {
        table_id: t,
        partitions: plan.assignments,
    })
    .unwrap();
    let mut by_node: BTreeMap<NodeId, Vec<PartitionId>> = BTreeMap::new();
    for p in s.partitions_of(t) {
        for n in p.all_nodes() {
            by_node.entry(n).or_default().push(p.partition_id);
        }
    }
    for (node_id, partition_ids) in by_node {
        let cmd = MetaCommand::PartitionsReady {
            node_id,
            partition_ids,
        };
        s.apply(&cmd).unwrap();
    }
    let cmd = MetaCommand::ActivateTable {
        table_id: t,
        now_ms: 1,
    };
    s.apply(&cmd).unwrap();
    t
}

fn join(s: &mut MetaState, node_id: NodeId, zone: &str) {
    let cmd = MetaCommand::RegisterNode {
        node_id,
        endpoint: format!("http://j{node_id}"),
        peer_addr: format!("j{node_id}:7100"),
        zone: zone.into(),
        incarnation: 1,
        now_ms: 0,
    };
    s.apply(&cmd).unwrap();
}

fn cfg(tolerance: usize) -> RebalanceConfig {
    RebalanceConfig {
        tolerance,
        max_moves: 100_000,
    }
}

/// Replica sets and per-node counts after a plan.
struct Applied {
    members: BTreeMap<PartitionId, Vec<NodeId>>,
    replicas: BTreeMap<NodeId, usize>,
    primaries: BTreeMap<NodeId, usize>,
}

fn zone_spread(s: &MetaState, members: &[NodeId]) -> usize {
    let zones: BTreeSet<&str> = members
        .iter()
        .map(|n| s.node(*n).unwrap().zone.as_str())
        .collect();
    zones.len()
}

/// Replays `plan` on the replica sets of `s`, asserting every rule; counts are over the
/// participating nodes.
fn apply(s: &MetaState, plan: &RebalancePlan, excluded: &BTreeSet<NodeId>) -> Applied {
    let receives =
        |n: NodeId| s.node(n).unwrap().status == NodeStatus::Healthy && !excluded.contains(&n);
    let mut members: BTreeMap<PartitionId, Vec<NodeId>> = s
        .partitions()
        .map(|p| (p.partition_id, p.all_nodes().collect()))
        .collect();
    let mut moved = BTreeSet::new();
    for m in &plan.moves {
        let p = s.partition(m.partition_id).unwrap();
        assert!(
            moved.insert(m.partition_id),
            "{m:?} moves a partition twice"
        );
        assert_eq!(m.expected_epoch, p.epoch);
        assert_eq!(s.table(p.table_id).unwrap().status, TableStatus::Active);
        assert!(receives(m.to) && receives(m.from), "{m:?}");
        let set = members.get_mut(&m.partition_id).unwrap();
        assert!(!set.contains(&m.to), "{m:?}: two copies on one node");
        let before = zone_spread(s, set);
        let at = set
            .iter()
            .position(|n| *n == m.from)
            .expect("from is a member");
        set[at] = m.to;
        assert!(
            zone_spread(s, set) >= before,
            "{m:?} reduces the zone spread"
        );
    }
    for m in &plan.primary_moves {
        let p = s.partition(m.partition_id).unwrap();
        assert!(!moved.contains(&m.partition_id), "{m:?} also migrates");
        assert_eq!((m.from, m.expected_epoch), (p.primary_node_id, p.epoch));
        assert!(p.replica_node_ids.contains(&m.to) && p.ready_node_ids.contains(&m.to));
        assert!(receives(m.to), "{m:?}");
        let set = members.get_mut(&m.partition_id).unwrap();
        let at = set.iter().position(|n| *n == m.to).unwrap();
        set.swap(0, at);
        moved.insert(m.partition_id);
    }
    let mut replicas: BTreeMap<NodeId, usize> = BTreeMap::new();
    let mut primaries: BTreeMap<NodeId, usize> = BTreeMap::new();
    for n in s.nodes().filter(|n| receives(n.node_id)) {
        replicas.insert(n.node_id, 0);
        primaries.insert(n.node_id, 0);
    }
    for set in members.values() {
        for (k, n) in set.iter().enumerate() {
            if let Some(c) = replicas.get_mut(n) {
                *c += 1;
                *primaries.get_mut(n).unwrap() += usize::from(k == 0);
            }
        }
    }
    let after = Figures {
        replicas: Balance::of(&values(&replicas), &plan.ideal.replicas),
        primaries: Balance::of(&values(&primaries), &plan.ideal.primaries),
    };
    assert_eq!(after, plan.after, "the plan's own figures");
    Applied {
        members,
        replicas,
        primaries,
    }
}

fn values(m: &BTreeMap<NodeId, usize>) -> Vec<usize> {
    m.values().copied().collect()
}

/// `n` nodes in one zone, one table of `partitions` × `rf`, then one empty node.
fn one_joins(n: usize, partitions: u64, rf: usize) -> MetaState {
    let mut s = cluster(&vec![""; n]);
    add_table(&mut s, "orders", partitions, rf);
    join(&mut s, n as NodeId + 1, "");
    s
}

#[test]
fn one_node_joining_balanced_nodes_takes_the_optimum() {
    for (n, partitions, rf) in [
        (3, 300, 3),
        (4, 300, 3),
        (9, 300, 3),
        (9, 1000, 3),
        (4, 50, 2),
    ] {
        for tolerance in [0, 1] {
            let s = one_joins(n, partitions, rf);
            let plan = plan_rebalance(&s, &cfg(tolerance), &BTreeSet::new());
            let applied = apply(&s, &plan, &BTreeSet::new());
            let total = partitions as usize * rf;
            let share = total as f64 / (n + 1) as f64;
            let moves = plan.moves.len();
            eprintln!(
                "{n} nodes + 1, {partitions} x {rf}, tolerance {tolerance}: {moves} moves, \
                 lower bound {}, R/(N+1) = {share:.1}, {} primary moves, after {:?}",
                plan.optimal_moves(),
                plan.primary_moves.len(),
                plan.after
            );
            assert_eq!(moves, plan.optimal_moves());
            assert!(
                (moves as f64 - share).abs() <= 0.05 * share,
                "{moves} vs {share}"
            );
            assert!(plan.after.replicas.within_tolerance(), "{:?}", plan.after);
            assert!(plan.after.primaries.within_tolerance(), "{:?}", plan.after);
            // Every move went to the new node.
            assert!(plan.moves.iter().all(|m| m.to == n as NodeId + 1));
            let spread =
                |m: &BTreeMap<NodeId, usize>| m.values().max().unwrap() - m.values().min().unwrap();
            assert!(spread(&applied.replicas) <= 1 + 2 * tolerance);
            assert!(spread(&applied.primaries) <= 1 + 2 * tolerance);
            assert!(!plan.truncated);
        }
    }
}

#[test]
fn balanced_cluster_needs_no_move() {
    let mut s = cluster(&["a", "b", "c", "a", "b", "c"]);
    add_table(&mut s, "orders", 120, 3);
    add_table(&mut s, "users", 7, 2);
    let plan = plan_rebalance(&s, &cfg(1), &BTreeSet::new());
    assert!(plan.is_empty(), "{plan:?}");
    assert_eq!(plan.optimal_moves(), 0);
    assert!(plan.before.replicas.within_tolerance());
    // An empty state, or one without participating nodes, plans nothing either.
    assert!(plan_rebalance(&MetaState::new(), &cfg(0), &BTreeSet::new()).is_empty());
    let everyone: BTreeSet<NodeId> = (1..=6).collect();
    let plan = plan_rebalance(&s, &cfg(0), &everyone);
    assert!(plan.is_empty());
    assert_eq!(plan.ideal.replicas.nodes, 0);
}

#[test]
fn zones_locked_by_replication_even_out_within_the_zone() {
    // 3 zones, rf 3: every partition has one copy per zone, so a copy never leaves its
    // zone. The new node in zone a shares zone a's 300 copies with its 3 peers: 75 each.
    let mut s = cluster(&["a", "b", "c", "a", "b", "c", "a", "b", "c"]);
    add_table(&mut s, "orders", 300, 3);
    join(&mut s, 10, "a");
    let plan = plan_rebalance(&s, &cfg(1), &BTreeSet::new());
    let applied = apply(&s, &plan, &BTreeSet::new());
    for set in applied.members.values() {
        assert_eq!(zone_spread(&s, set), 3);
    }
    assert_eq!(plan.moves.len(), 75, "{plan:?}");
    for n in [1, 4, 7, 10] {
        assert_eq!(applied.replicas[&n], 75);
    }
    // Not within the global band: the zones do not allow it, and the plan says so.
    assert!(!plan.after.replicas.within_tolerance());
    assert!(plan.moves.iter().all(|m| m.to == 10));
}

#[test]
fn spare_zones_let_copies_cross_zones() {
    // 3 zones, rf 2: a copy may move to the zone its partition does not use. Placement
    // pairs the nodes (1 a, 2 b), (3 c, 4 a), (5 b, 6 c), 70 partitions per pair.
    let mut s = cluster(&["a", "b", "c", "a", "b", "c"]);
    add_table(&mut s, "orders", 210, 2);
    join(&mut s, 7, "a");
    let plan = plan_rebalance(&s, &cfg(0), &BTreeSet::new());
    let applied = apply(&s, &plan, &BTreeSet::new());
    assert!(plan.after.replicas.within_tolerance(), "{:?}", plan.after);
    assert_eq!(values(&applied.replicas), vec![60; 7]);
    for set in applied.members.values() {
        assert_eq!(zone_spread(&s, set), 2);
    }
    // Zone a must gain 40 copies, which only the (5, 6) partitions can give (the others
    // already use zone a); 5 and 6 then take 10 each back from 2 and 3, which cannot
    // give to zone a: 40 + 20 + 20 (from 1 and 4 to 7) = 80 moves at least, above the
    // unconstrained bound of 60.
    assert_eq!(plan.optimal_moves(), 60);
    assert_eq!(plan.moves.len(), 80);
    let into_zone_a = plan
        .moves
        .iter()
        .filter(|m| [5, 6].contains(&m.from))
        .count();
    assert_eq!(into_zone_a, 40);
}

#[test]
fn moves_never_reduce_zone_spread_even_when_unbalanced() {
    // Zone a holds one node; b two. rf 2 over 2 zones: one copy in each zone, so node 1
    // keeps every partition's zone-a copy whatever its load.
    let mut s = cluster(&["a", "b", "b"]);
    add_table(&mut s, "orders", 40, 2);
    join(&mut s, 4, "b");
    let plan = plan_rebalance(&s, &cfg(0), &BTreeSet::new());
    let applied = apply(&s, &plan, &BTreeSet::new());
    assert_eq!(applied.replicas[&1], 40);
    for n in [2, 3, 4] {
        assert!(
            (13..=14).contains(&applied.replicas[&n]),
            "{:?}",
            applied.replicas
        );
    }
    assert!(plan.moves.iter().all(|m| m.from != 1 && m.to == 4));
}

#[test]
fn excluded_and_unhealthy_nodes_never_receive() {
    let mut s = one_joins(4, 200, 3);
    join(&mut s, 6, "");
    join(&mut s, 7, "");
    join(&mut s, 8, "");
    let drain = MetaCommand::DrainNode {
        node_id: 7,
        remove: false,
        now_ms: 1,
    };
    s.apply(&drain).unwrap();
    let failed = MetaCommand::NodeFailed {
        node_id: 8,
        incarnation: 1,
        now_ms: 1,
    };
    s.apply(&failed).unwrap();
    let excluded = BTreeSet::from([6]);
    let plan = plan_rebalance(&s, &cfg(1), &excluded);
    apply(&s, &plan, &excluded);
    assert!(!plan.moves.is_empty());
    assert!(plan.moves.iter().all(|m| m.to == 5), "{plan:?}");
    assert!(plan.primary_moves.iter().all(|m| m.to <= 5));
    assert_eq!(plan.ideal.replicas.nodes, 5);
    assert_eq!(plan.moves.len(), plan.optimal_moves());
    assert!(plan.after.replicas.within_tolerance());
}

#[test]
fn partitions_with_a_draining_member_or_of_inactive_tables_stay() {
    let mut s = cluster(&["", "", "", ""]);
    add_table(&mut s, "orders", 60, 2);
    // A CREATING table: counted as load, never moved.
    let creating = create_table(&mut s, "creating", provisioned(1, 20_000));
    let plan = plan_new_table(&s, creating, &PlacementConfig::default(), &BTreeSet::new());
    let assign = MetaCommand::AssignPartitions {
        table_id: creating,
        partitions: plan.unwrap().assignments,
    };
    s.apply(&assign).unwrap();
    let drain = MetaCommand::DrainNode {
        node_id: 4,
        remove: false,
        now_ms: 1,
    };
    s.apply(&drain).unwrap();
    join(&mut s, 5, "");
    let plan = plan_rebalance(&s, &cfg(0), &BTreeSet::new());
    apply(&s, &plan, &BTreeSet::new());
    assert!(!plan.moves.is_empty());
    for m in &plan.moves {
        let p = s.partition(m.partition_id).unwrap();
        assert!(
            !p.all_nodes().any(|n| n == 4),
            "{m:?} touches a draining member"
        );
        assert_ne!(p.table_id, creating);
    }
    assert!(plan.primary_moves.iter().all(|m| m.from != 4));
}

#[test]
fn plans_are_deterministic() {
    let mut s = cluster(&["a", "b", "c", "a", "b"]);
    add_table(&mut s, "orders", 97, 3);
    add_table(&mut s, "users", 31, 2);
    join(&mut s, 6, "c");
    join(&mut s, 7, "a");
    let plan = plan_rebalance(&s, &cfg(1), &BTreeSet::new());
    assert!(!plan.moves.is_empty());
    let copy: MetaState = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
    assert_eq!(plan_rebalance(&copy, &cfg(1), &BTreeSet::new()), plan);
    assert_eq!(plan_rebalance(&s, &cfg(1), &BTreeSet::new()), plan);
    apply(&s, &plan, &BTreeSet::new());
}

#[test]
fn max_moves_cuts_the_plan_short_and_the_prefix_is_the_full_plan_s() {
    let s = one_joins(9, 300, 3);
    let full = plan_rebalance(&s, &cfg(1), &BTreeSet::new());
    let cut = RebalanceConfig {
        tolerance: 1,
        max_moves: 10,
    };
    let plan = plan_rebalance(&s, &cut, &BTreeSet::new());
    assert!(plan.truncated);
    assert_eq!(plan.moves, full.moves[..10]);
    assert!(plan.primary_moves.len() <= 10);
    apply(&s, &plan, &BTreeSet::new());
}

#[test]
fn primaries_are_handed_over_to_ready_replicas() {
    // Every partition on all 3 nodes, all primaries on node 1: only handovers are needed.
    let mut s = cluster(&["", "", ""]);
    let t = add_table(&mut s, "orders", 30, 3);
    let changes = s
        .partitions_of(t)
        .iter()
        .map(|p| crate::command::PartitionChange {
            partition_id: p.partition_id,
            expected_epoch: p.epoch,
            primary_node_id: 1,
            replica_node_ids: vec![2, 3],
        })
        .collect();
    s.apply(&MetaCommand::RepairPartitions { changes }).unwrap();
    let plan = plan_rebalance(&s, &cfg(0), &BTreeSet::new());
    let applied = apply(&s, &plan, &BTreeSet::new());
    assert!(plan.moves.is_empty());
    assert_eq!(plan.primary_moves.len(), 20);
    assert_eq!(values(&applied.primaries), vec![10, 10, 10]);
}

#[test]
fn one_node_joining_zoned_nodes_with_a_spare_zone_is_balanced() {
    // rf 2 over 3 zones: a copy may leave for the zone its partition does not use, so
    // the joiner fills up from every zone. With 6 nodes the placement pairs the zones
    // so that only a third of the partitions may enter the joiner's zone: the bound
    // (84) is out of reach, and 110 is the optimum (the relaxed flow oracle of the
    // property tests proves it; see `one_node_joining_a_zoned_cluster_takes_the_optimum`).
    for (n, partitions, expected) in [(3, 300, 149), (6, 300, 110), (9, 300, 59), (9, 999, 198)] {
        let zones: Vec<&str> = (0..n).map(|i| ["a", "b", "c"][i % 3]).collect();
        let mut s = cluster(&zones);
        add_table(&mut s, "orders", partitions, 2);
        join(&mut s, n as NodeId + 1, "a");
        let plan = plan_rebalance(&s, &cfg(1), &BTreeSet::new());
        let applied = apply(&s, &plan, &BTreeSet::new());
        eprintln!(
            "{n} zoned nodes + 1, {partitions} x 2: {} moves, lower bound {}, after {:?}",
            plan.moves.len(),
            plan.optimal_moves(),
            plan.after
        );
        assert_eq!(plan.moves.len(), expected);
        assert!(plan.after.replicas.within_tolerance(), "{:?}", plan.after);
        assert!(plan.after.primaries.within_tolerance(), "{:?}", plan.after);
        for set in applied.members.values() {
            assert_eq!(zone_spread(&s, set), 2);
        }
    }
}
