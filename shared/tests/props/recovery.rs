//! Recovery converges on random clusters: after some nodes fail or drain, a few
//! `plan_repairs` passes (each command accepted; replacements reported ready after some
//! passes, as the data plane fills them) leave every partition without FAILED members
//! (but one whose every member FAILED, and not all removed by an operator: it waits for
//! one to come back, reported under-replicated), with at least `min(rf, healthy nodes)`
//! HEALTHY ones, and on DRAINING nodes only where
//! the drain is reported blocked (no node could take the replacement). A DRAINING copy
//! is never dropped before every other member is ready, and the nodes waiting for
//! removal whose drain went through can be decommissioned.

use std::collections::BTreeSet;

use proptest::prelude::*;
use shared::command::{MetaCommand, MetaError, MetaOutcome};
use shared::model::{NodeId, NodeStatus, Partition};
use shared::placement::PlacementConfig;
use shared::recovery::{
    RecoveryConfig, drain_blockers, nodes_to_decommission, plan_repairs, under_replicated,
};
use shared::state::MetaState;

use crate::fixtures::{
    create, place, promotion_violation, provisioned, ready_all, ready_and_activate, register, spec,
};

/// What happens to one node before recovery runs.
#[derive(Debug, Clone, Copy)]
enum Fate {
    Stays,
    /// Fails; then, when `remove`, an operator removes it while FAILED.
    Fails {
        remove: bool,
    },
    Drains {
        remove: bool,
    },
}

fn fate() -> impl Strategy<Value = Fate> {
    prop_oneof![
        6 => Just(Fate::Stays),
        2 => any::<bool>().prop_map(|remove| Fate::Fails { remove }),
        2 => any::<bool>().prop_map(|remove| Fate::Drains { remove }),
    ]
}

/// Applies one command that must be accepted and keep the invariants.
fn accept(s: &mut MetaState, cmd: &MetaCommand) -> Result<(), TestCaseError> {
    let result = s.apply(cmd);
    prop_assert!(result.is_ok(), "{:?} gave {:?}", cmd, result);
    prop_assert!(s.check_invariants().is_ok(), "{:?}", s.check_invariants());
    Ok(())
}

/// A cluster with one node per fate (zones round-robin) and `tables` ACTIVE tables.
fn populated(fates: &[Fate], zones: usize, tables: &[(u64, usize)]) -> MetaState {
    let mut s = MetaState::new();
    for i in 0..fates.len() {
        let zone = format!("z{}", i % zones);
        s.apply(&register(i as NodeId + 1, &zone, 1, 0)).unwrap();
    }
    for (i, &(write_units, replication_factor)) in tables.iter().enumerate() {
        let t = create(
            &mut s,
            spec(&format!("table{i}"), provisioned(1, write_units)),
        );
        let cfg = PlacementConfig {
            replication_factor,
            ..PlacementConfig::default()
        };
        place(&mut s, t, &cfg);
        ready_and_activate(&mut s, t);
    }
    s
}

fn strike(s: &mut MetaState, fates: &[Fate]) -> Result<(), TestCaseError> {
    for (i, fate) in fates.iter().enumerate() {
        let node_id = i as NodeId + 1;
        let drain = |remove| MetaCommand::DrainNode {
            node_id,
            remove,
            now_ms: 10,
        };
        match *fate {
            Fate::Stays => {}
            Fate::Fails { remove } => {
                let cmd = MetaCommand::NodeFailed {
                    node_id,
                    incarnation: 1,
                    now_ms: 10,
                };
                accept(s, &cmd)?;
                if remove {
                    accept(s, &drain(true))?;
                }
            }
            Fate::Drains { remove } => accept(s, &drain(remove))?,
        }
    }
    Ok(())
}

/// Reports every member of every partition ready (the data plane filled them).
fn fill_all(s: &mut MetaState) -> Result<(), TestCaseError> {
    let tables: Vec<u64> = s.tables().map(|t| t.table_id).collect();
    for t in tables {
        for cmd in ready_all(s, t) {
            accept(s, &cmd)?;
        }
    }
    Ok(())
}

fn status(s: &MetaState, n: NodeId) -> NodeStatus {
    s.node(n).unwrap().status
}

/// A repair drops a DRAINING member only when every member it keeps is ready: the
/// draining copy is never the last full one.
fn check_no_early_drop(s: &MetaState, cmd: &MetaCommand) -> Result<(), TestCaseError> {
    let MetaCommand::RepairPartitions { changes } = cmd else {
        return Ok(());
    };
    for c in changes {
        let p = s.partition(c.partition_id).unwrap();
        let new: Vec<NodeId> = std::iter::once(c.primary_node_id)
            .chain(c.replica_node_ids.iter().copied())
            .collect();
        let drops_draining = p
            .all_nodes()
            .any(|n| !new.contains(&n) && status(s, n) == NodeStatus::Draining);
        if drops_draining {
            prop_assert!(
                new.iter().all(|n| p.ready_node_ids.contains(n)),
                "{:?} drops a draining copy of {:?} before the others are filled",
                c,
                p
            );
        }
    }
    Ok(())
}

/// A partition keeps a DRAINING member only when its drain is blocked: every HEALTHY
/// node already holds it and the others are still fewer than `rf`.
fn check_final(
    s: &MetaState,
    p: &Partition,
    rf: usize,
    blocked: &BTreeSet<u64>,
) -> Result<(), TestCaseError> {
    let healthy = s.live_nodes().count();
    let members: Vec<NodeId> = p.all_nodes().collect();
    let healthy_members = members
        .iter()
        .filter(|n| status(s, **n) == NodeStatus::Healthy)
        .count();
    let draining = members.len() - healthy_members;
    let failed = |n: &NodeId| status(s, *n) == NodeStatus::Failed;
    let may_return = members
        .iter()
        .any(|n| failed(n) && !s.node(*n).unwrap().remove_when_drained);
    if members.iter().all(failed) && may_return {
        // No live copy: left as it is until a holder comes back, and reported.
        prop_assert!(under_replicated(s, p, rf), "{:?}", p);
        return Ok(());
    }
    prop_assert!(!members.iter().any(failed), "{:?}", p);
    prop_assert!(healthy_members >= rf.min(healthy), "{:?}", p);
    if draining > 0 {
        prop_assert!(blocked.contains(&p.partition_id), "{:?} is not reported", p);
        prop_assert!(
            healthy_members == healthy && members.len() - 1 < rf,
            "{:?}",
            p
        );
    } else {
        prop_assert!(!blocked.contains(&p.partition_id), "{:?}", p);
    }
    prop_assert!(p.is_ready());
    // The API's view: short of rf HEALTHY ready copies, even when no better can be done.
    prop_assert_eq!(under_replicated(s, p, rf), healthy_members < rf);
    Ok(())
}

/// Runs `plan_repairs` passes until no plan has a command and every copy is filled;
/// replacements are reported ready only after the passes where `lag` says so. Returns
/// the partitions whose drain is reported blocked at the end.
fn converge(
    s: &mut MetaState,
    cfg: &RecoveryConfig,
    lag: &[bool],
    max_passes: usize,
) -> Result<BTreeSet<u64>, TestCaseError> {
    let lsn = |p: u64, n: NodeId| (p ^ n) % 3;
    let mut passes = 0;
    loop {
        let plans = plan_repairs(s, cfg, &lsn, &BTreeSet::new());
        let cmds: Vec<MetaCommand> = plans.iter().filter_map(|p| p.command.clone()).collect();
        if cmds.is_empty() && s.partitions().all(|p| p.is_ready()) {
            return Ok(plans.iter().flat_map(|p| p.drain_blocked.clone()).collect());
        }
        passes += 1;
        prop_assert!(
            passes <= max_passes,
            "no convergence after {} passes",
            passes
        );
        for cmd in &cmds {
            check_no_early_drop(s, cmd)?;
            accept(s, cmd)?;
        }
        if cmds.is_empty() || !lag[passes % lag.len()] {
            fill_all(s)?;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn recovery_converges(
        fates in prop::collection::vec(fate(), 2..=10),
        zones in 1usize..=3,
        tables in prop::collection::vec((1000u64..=12_000, 1usize..=3), 1..4),
        replication_factor in 1usize..=4,
        lag in prop::collection::vec(any::<bool>(), 1..6),
    ) {
        prop_assume!(fates.iter().any(|f| matches!(f, Fate::Stays)));
        let mut s = populated(&fates, zones, &tables);
        strike(&mut s, &fates)?;
        let cfg = RecoveryConfig { replication_factor };
        let leaving = fates.iter().filter(|f| !matches!(f, Fate::Stays)).count();
        // A drain takes two steps per partition, each possibly one pass late (lag).
        let blocked = converge(&mut s, &cfg, &lag, 4 * (leaving + 1))?;
        for p in s.partitions() {
            check_final(&s, p, replication_factor, &blocked)?;
        }
        for node_id in nodes_to_decommission(&s) {
            let cmd = MetaCommand::DecommissionNode { node_id, now_ms: 20 };
            prop_assert_eq!(s.apply(&cmd), Ok(MetaOutcome::Done));
        }
        for (i, fate) in fates.iter().enumerate() {
            let n = s.node(i as NodeId + 1).unwrap();
            match fate {
                Fate::Fails { remove: true } if n.partition_ids.is_empty() => {
                    prop_assert_eq!(n.status, NodeStatus::Decommissioned);
                }
                // It shares a partition with no live copy: kept until a holder that
                // may come back does.
                Fate::Fails { remove: true } => {
                    prop_assert_eq!(n.status, NodeStatus::Failed);
                    for pid in &n.partition_ids {
                        let p = s.partition(*pid).unwrap();
                        prop_assert!(p.all_nodes().all(|m| status(&s, m) == NodeStatus::Failed));
                    }
                }
                Fate::Drains { remove: true } if n.partition_ids.is_empty() => {
                    prop_assert_eq!(n.status, NodeStatus::Decommissioned);
                }
                Fate::Drains { remove: true } => {
                    prop_assert_eq!(n.status, NodeStatus::Draining);
                    prop_assert!(n.partition_ids.is_subset(&blocked));
                }
                _ => {}
            }
        }
    }
}

/// One event between recovery passes.
#[derive(Debug, Clone)]
enum Event {
    Fail(NodeId),
    Drain {
        node: NodeId,
        remove: bool,
    },
    /// The node restarts: a new incarnation registers.
    Restart(NodeId),
    /// Some copies finish filling: the members picked by `seed` report ready.
    Fill(u64),
    /// One `plan_repairs` pass, with `excluded` taking no replica.
    Recover {
        excluded: Vec<NodeId>,
    },
    /// A hand-made repair of the partition `seed` picks: same set, another member leads.
    Promote(u64),
}

fn event(nodes: u64) -> impl Strategy<Value = Event> {
    let node = 1..=nodes;
    prop_oneof![
        2 => node.clone().prop_map(Event::Fail),
        2 => (node.clone(), any::<bool>()).prop_map(|(node, remove)| Event::Drain { node, remove }),
        1 => node.clone().prop_map(Event::Restart),
        3 => any::<u64>().prop_map(Event::Fill),
        5 => prop::collection::vec(node, 0..2).prop_map(|excluded| Event::Recover { excluded }),
        2 => any::<u64>().prop_map(Event::Promote),
    ]
}

/// The `PartitionsReady` reports of the not-ready members that `seed` picks.
fn partial_fill(s: &MetaState, seed: u64) -> Vec<MetaCommand> {
    let mut cmds = Vec::new();
    for p in s.partitions() {
        for n in p.all_nodes().filter(|n| !p.ready_node_ids.contains(n)) {
            let pick = seed ^ p.partition_id.wrapping_mul(0x9E37) ^ n.wrapping_mul(0x85EB);
            if !pick.is_multiple_of(3) {
                cmds.push(MetaCommand::PartitionsReady {
                    node_id: n,
                    partition_ids: vec![p.partition_id],
                });
            }
        }
    }
    cmds
}

/// The commands an event stands for (node ids taken modulo `nodes`); `None` for a
/// recovery pass, planned separately.
fn event_commands(s: &MetaState, nodes: u64, e: &Event) -> Option<Vec<MetaCommand>> {
    let id = |n: NodeId| (n - 1) % nodes + 1;
    let incarnation = |n: NodeId| s.node(id(n)).map_or(1, |n| n.incarnation);
    Some(match e {
        Event::Fail(n) => vec![MetaCommand::NodeFailed {
            node_id: id(*n),
            incarnation: incarnation(*n),
            now_ms: 30,
        }],
        Event::Drain { node, remove } => vec![MetaCommand::DrainNode {
            node_id: id(*node),
            remove: *remove,
            now_ms: 30,
        }],
        Event::Restart(n) => vec![register(id(*n), "z0", incarnation(*n) + 1, 40)],
        Event::Fill(seed) => partial_fill(s, *seed),
        Event::Promote(seed) => promote(s, *seed).into_iter().collect(),
        Event::Recover { .. } => return None,
    })
}

/// Same replica set, the member `seed` picks as primary (none without partitions).
fn promote(s: &MetaState, seed: u64) -> Option<MetaCommand> {
    let parts: Vec<&Partition> = s.partitions().collect();
    let p = parts.get(seed as usize % parts.len().max(1))?;
    let mut members: Vec<NodeId> = p.all_nodes().collect();
    let shift = (seed >> 32) as usize % members.len();
    members.rotate_left(shift);
    Some(MetaCommand::RepairPartitions {
        changes: vec![shared::command::PartitionChange {
            partition_id: p.partition_id,
            expected_epoch: p.epoch,
            primary_node_id: members[0],
            replica_node_ids: members[1..].to_vec(),
        }],
    })
}

/// Applies an event's command, which may be refused but never breaks anything; a
/// same-set repair is refused as `InvalidPlacement` exactly when it breaks the
/// promotion rule (a FAILED member or a DELETING table is refused first).
fn apply_event(s: &mut MetaState, cmd: &MetaCommand) -> Result<(), TestCaseError> {
    let before = s.clone();
    let result = s.apply(cmd);
    prop_assert!(s.check_invariants().is_ok(), "{:?}", s.check_invariants());
    if result.is_err() {
        prop_assert_eq!(&*s, &before);
    }
    if let MetaCommand::RepairPartitions { changes } = cmd {
        let violation = promotion_violation(&before, &changes[0]);
        match &result {
            Ok(_) => prop_assert!(violation.is_none(), "accepted: {:?}", violation),
            Err(MetaError::InvalidPlacement(e)) => prop_assert!(violation.is_some(), "{}", e),
            Err(_) => {}
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Whatever happens between passes (failures, drains, restarts, copies half
    /// filled), every command the planner makes is accepted by the state it was planned
    /// from, promotes only ready members while one survives, and never drops a
    /// draining copy before the others are filled.
    #[test]
    fn planned_repairs_are_always_accepted(
        nodes in 3u64..=8,
        zones in 1usize..=3,
        tables in prop::collection::vec((1000u64..=8_000, 1usize..=3), 1..3),
        replication_factor in 1usize..=4,
        lsn_salt in 0u64..16,
        events in prop::collection::vec(event(8), 1..40),
    ) {
        let fates = vec![Fate::Stays; nodes as usize];
        let mut s = populated(&fates, zones, &tables);
        let cfg = RecoveryConfig { replication_factor };
        let lsn = |p: u64, n: NodeId| (p * 7 + n * lsn_salt) % 5;
        for e in &events {
            if let Some(cmds) = event_commands(&s, nodes, e) {
                for cmd in cmds {
                    apply_event(&mut s, &cmd)?;
                }
                continue;
            }
            let Event::Recover { excluded } = e else { unreachable!() };
            let excluded: BTreeSet<NodeId> = excluded.iter().copied().collect();
            for plan in plan_repairs(&s, &cfg, &lsn, &excluded) {
                let Some(cmd) = plan.command else { continue };
                check_no_early_drop(&s, &cmd)?;
                if let MetaCommand::RepairPartitions { changes } = &cmd {
                    for c in changes {
                        let violation = promotion_violation(&s, c);
                        prop_assert!(violation.is_none(), "{:?}", violation);
                    }
                }
                accept(&mut s, &cmd)?;
            }
        }
    }
}

#[test]
fn a_drain_with_nowhere_to_go_is_blocked_and_one_with_a_spare_node_is_not() {
    let cfg = RecoveryConfig::default();
    let three = populated(&[Fate::Stays; 3], 3, &[(1000, 3)]);
    let blocked = drain_blockers(&three, 3, &cfg, &BTreeSet::new());
    assert!(!blocked.is_empty(), "3 nodes at replication factor 3");
    assert_eq!(
        status(&three, 3),
        NodeStatus::Healthy,
        "the state is not changed"
    );
    let four = populated(&[Fate::Stays; 4], 3, &[(1000, 3)]);
    let holder = four
        .partitions()
        .next()
        .map(|p| p.primary_node_id)
        .expect("a partition");
    assert_eq!(
        drain_blockers(&four, holder, &cfg, &BTreeSet::new()),
        Vec::<u64>::new()
    );
    // Draining with a spare node, then a node fails: the drain is blocked now, and says so.
    let mut four = four;
    accept(
        &mut four,
        &MetaCommand::DrainNode {
            node_id: holder,
            remove: false,
            now_ms: 0,
        },
    )
    .unwrap();
    assert_eq!(
        drain_blockers(&four, holder, &cfg, &BTreeSet::new()),
        Vec::<u64>::new()
    );
    // Every other node unreachable from the asking agent: blocked for now, and shown.
    let unreachable: BTreeSet<u64> = (1..=4).filter(|&n| n != holder).collect();
    assert!(!drain_blockers(&four, holder, &cfg, &unreachable).is_empty());
    let other = (1..=4).find(|&n| n != holder).unwrap();
    let incarnation = four.node(other).unwrap().incarnation;
    accept(
        &mut four,
        &MetaCommand::NodeFailed {
            node_id: other,
            incarnation,
            now_ms: 0,
        },
    )
    .unwrap();
    assert!(!drain_blockers(&four, holder, &cfg, &BTreeSet::new()).is_empty());
}
